//! Fills of objects larger than the storable size: bounded memory, backpressure
//! from the viewers, the origin connection closed when the last viewer leaves.

mod common;

use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An origin that answers every request with an endless chunked
/// `max-age=60` body, as fast as the edge reads it. It counts the connections
/// it accepted and those the edge closed (a write failed).
struct EndlessOrigin {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EndlessOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn endless_origin() -> EndlessOrigin {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (accepted, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, c) = (accepted.clone(), closed.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { continue };
            a.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                if read_request_head(&mut s).await.is_none() {
                    return;
                }
                let head = b"HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\ncache-control: max-age=60\r\ntransfer-encoding: chunked\r\n\r\n";
                let chunk = payload(64 * 1024, 7);
                let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
                frame.extend_from_slice(&chunk);
                frame.extend_from_slice(b"\r\n");
                let mut ok = s.write_all(head).await.is_ok();
                while ok {
                    ok = s.write_all(&frame).await.is_ok();
                }
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    EndlessOrigin { addr, accepted, closed, task }
}

/// Reads the response head and about `n` body bytes, then drops the connection.
async fn read_then_leave(addr: &str, path: &str, n: usize) -> usize {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < n {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(k) => got += k,
        }
    }
    got
}

/// The bound below holds the edge's baseline, the 1 MiB the fill stores before
/// it knows it is too large, `PASS_WINDOW` (1 MiB) per fill, read buffers and
/// allocator slack; the bug (each fill buffering everything the origin sends,
/// at loopback speed) passes it within a second or two.
const RSS_GROWTH_BOUND_KIB: u64 = 48 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_fill_past_the_limit_is_bounded_and_stops_when_viewers_leave() {
    let origin = endless_origin().await;
    let edge = binary::EdgeProcess::start(
        "fill-limits",
        &format!(
            "[cache]\nmemory = \"64MiB\"\nmax_object_size = \"1MiB\"\n\n{}",
            config_for(&format!("http://{}", origin.addr), "")
        ),
    )
    .await;
    let addr = edge.addr.clone();
    let baseline = edge.rss_kib();

    // Four fills (four objects); two viewers on each, leaving after 512 KiB
    // and 4 MiB: both past the 1 MiB limit for the second.
    let mut viewers = Vec::new();
    for i in 0..4 {
        for n in [512 * 1024, 4 << 20] {
            let addr = addr.clone();
            viewers.push(tokio::spawn(async move { read_then_leave(&addr, &format!("/endless/{i}.mp4"), n).await }));
        }
    }
    let mut peak = 0;
    for v in viewers {
        let got = v.await.expect("viewer");
        assert!(got >= 512 * 1024, "a viewer got only {got} bytes");
        peak = peak.max(edge.rss_kib());
    }
    // Every origin connection closes once its viewers are gone (an upper bound
    // meaning "it never did"); memory is sampled all along.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while origin.closed.load(Ordering::SeqCst) < origin.accepted.load(Ordering::SeqCst) {
        peak = peak.max(edge.rss_kib());
        assert!(
            peak < baseline + RSS_GROWTH_BOUND_KIB,
            "edge RSS grew from {baseline} KiB to {peak} KiB with no viewer left"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} origin connections still open 30 s after the last viewer left (RSS {peak} KiB)",
            origin.accepted.load(Ordering::SeqCst) - origin.closed.load(Ordering::SeqCst),
            origin.accepted.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And stays bounded afterwards.
    for _ in 0..10 {
        peak = peak.max(edge.rss_kib());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "edge RSS: baseline {baseline} KiB, peak {peak} KiB; origin connections {}",
        origin.accepted.load(Ordering::SeqCst)
    );
    // The readiness probe is a fill too; a viewer arriving after its object's
    // fill went pass-through starts another.
    assert!((5..=9).contains(&origin.accepted.load(Ordering::SeqCst)));
    assert!(peak < baseline + RSS_GROWTH_BOUND_KIB, "edge RSS grew from {baseline} KiB to {peak} KiB");
}

/// A slow and a fast viewer of one fill past the limit get the exact bytes.
async fn slow_and_fast(script: Script, expect_origin_requests: usize) {
    let (e, origin) = edge_and_origin_with("[cache]\nmemory = \"64MiB\"\nmax_object_size = \"1MiB\"\n").await;
    let body = script.body.clone();
    origin.set("/big.mp4", script);
    let u = url(&e, "/big.mp4");
    let fast = {
        let u = u.clone();
        tokio::spawn(async move { client().get(u).send().await.expect("fast").bytes().await.expect("fast body") })
    };
    let slow = tokio::spawn(async move {
        let mut r = client().get(u).send().await.expect("slow");
        let mut got = Vec::new();
        while let Some(c) = r.chunk().await.expect("slow body") {
            got.extend_from_slice(&c);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        got
    });
    let fast = fast.await.expect("fast viewer");
    let slow = slow.await.expect("slow viewer");
    assert_eq!(fast.len(), body.len());
    assert!(fast == body, "the fast viewer's body differs");
    assert_eq!(slow.len(), body.len());
    assert!(slow == body, "the slow viewer's body differs");
    assert_eq!(origin.hits("/big.mp4"), expect_origin_requests);
    // Not stored: the next request goes to the origin again.
    let (s, xc, _, again) = get(&client(), &url(&e, "/big.mp4"), &[]).await;
    assert_eq!((s, xc.as_str()), (200, "Miss"));
    assert!(again == body);
}

async fn edge_and_origin_with(prefix: &str) -> (mediaedge::RunningEdge, TestOrigin) {
    let origin = TestOrigin::start().await;
    let e = edge(&format!("{prefix}\n{}", config_for(&origin.url(), ""))).await;
    (e, origin)
}

#[tokio::test]
async fn slow_and_fast_viewer_of_a_chunked_fill_past_the_limit_get_exact_bodies() {
    let script = Script::ok(payload(6 << 20, 11))
        .header("cache-control", "max-age=60")
        .chunked()
        .delay(Duration::from_millis(300))
        .pieces(96, Duration::from_millis(2));
    // One fill, shared.
    slow_and_fast(script, 1).await;
}

#[tokio::test]
async fn slow_and_fast_viewer_of_an_announced_too_large_object_get_exact_bodies() {
    let script = Script::ok(payload(6 << 20, 12))
        .header("cache-control", "max-age=60")
        .delay(Duration::from_millis(300))
        .pieces(96, Duration::from_millis(2));
    // Announced too large: each viewer is passed to the origin.
    slow_and_fast(script, 2).await;
}

/// An object announced larger than the storable size: the first viewer's
/// range goes to the origin and its 206 is relayed, and later ones (hit-for-pass)
/// too; the origin is never asked to send the whole object to completion.
#[tokio::test]
async fn range_of_an_object_too_large_to_store_is_asked_of_the_origin() {
    let (e, origin) = edge_and_origin_with("[cache]\nmemory = \"64MiB\"\nmax_object_size = \"4MiB\"\n").await;
    let body = payload(24 << 20, 13);
    origin.set("/movie.mp4", Script::ok(body.clone()).header("cache-control", "max-age=60"));
    for _ in 0..3 {
        let r = client().get(url(&e, "/movie.mp4")).header("range", "bytes=0-99").send().await.expect("request");
        // The test origin ignores Range and answers 200: relayed as it is, the
        // viewer sees what the origin sent for its ranged request.
        let seen = origin.seen_for("/movie.mp4");
        assert_eq!(seen.last().and_then(|s| s.headers.get("range")).map(|v| v.to_str().unwrap()), Some("bytes=0-99"));
        drop(r);
    }
}
