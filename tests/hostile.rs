//! Hostile viewers and broken origins: the edge answers with an error or cuts
//! the response, never stores a broken object, and keeps serving.

mod common;
use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Writes raw bytes to the edge and reads until it closes the connection (or
/// 5 s pass). A reset counts as the end; whatever arrived before it is kept.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect to the edge");
    // The edge may close while the request is still being written.
    let _ = s.write_all(request).await;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

fn status_line(resp: &[u8]) -> String {
    let end = resp.windows(2).position(|w| w == b"\r\n").unwrap_or(resp.len());
    String::from_utf8_lossy(&resp[..end]).into_owned()
}

/// A distribution with a well-behaved origin for `/ok*` and `hostile` for the rest.
async fn edge_over(hostile: &str) -> (mediaedge::RunningEdge, TestOrigin) {
    let good = TestOrigin::start().await;
    good.set("/ok", Script::ok("fine").header("cache-control", "no-store"));
    let cfg = format!(
        "[[distributions]]\nid = \"EHOSTILE\"\naliases = [\"*\"]\n\n\
         [[distributions.origins]]\nid = \"hostile\"\nurl = \"{hostile}\"\nread_timeout = \"5s\"\n\n\
         [[distributions.origins]]\nid = \"good\"\nurl = \"{}\"\n\n\
         [[distributions.behaviors]]\npath = \"/ok*\"\norigin = \"good\"\n\n\
         [distributions.default_behavior]\norigin = \"hostile\"\n",
        good.url()
    );
    (edge(&cfg).await, good)
}

/// A normal request still gets a normal answer.
async fn still_serving(e: &mediaedge::RunningEdge) {
    let (s, _, _, b) = get(&client(), &url(e, "/ok"), &[]).await;
    assert_eq!((s, &b[..]), (200, &b"fine"[..]), "the edge stopped serving");
}

#[tokio::test]
async fn a_malformed_request_line_gets_400_and_the_edge_keeps_serving() {
    let (e, good) = edge_over("http://127.0.0.1:9").await;
    for junk in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /ok HTTP/9.9.9\r\nHost: x\r\n\r\n",
        b"GET /ok\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"GET /ok HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
    ] {
        let resp = raw_exchange(e.addr(), junk).await;
        let line = status_line(&resp);
        assert!(line.is_empty() || line.starts_with("HTTP/1.1 400"), "{junk:?} → {line:?}");
        still_serving(&e).await;
    }
    // The plainest of them is answered, not just dropped.
    assert!(status_line(&raw_exchange(e.addr(), b"GARBAGE\r\n\r\n").await).starts_with("HTTP/1.1 400"));
    assert_eq!(good.hits("/ok"), 5, "no junk reached an origin");
}

#[tokio::test]
async fn a_request_head_over_max_header_bytes_is_refused() {
    let (e, good) = edge_over("http://127.0.0.1:9").await;
    let big = "a".repeat(100 * 1024);
    let req = format!("GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let resp = raw_exchange(e.addr(), req.as_bytes()).await;
    let line = status_line(&resp);
    assert!(line.is_empty() || line.starts_with("HTTP/1.1 431"), "{line:?}");
    // Many headers that add up past the limit.
    let many: String = (0..2000).map(|i| format!("X-H{i}: {}\r\n", "b".repeat(40))).collect();
    let req = format!("GET /ok HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let line = status_line(&raw_exchange(e.addr(), req.as_bytes()).await);
    assert!(line.is_empty() || line.starts_with("HTTP/1.1 431"), "{line:?}");
    assert_eq!(good.hits("/ok"), 0);
    still_serving(&e).await;
    // A head just under the limit is fine.
    let (s, _, _, _) = get(&client(), &url(&e, "/ok"), &[("x-big", &"c".repeat(30 * 1024))]).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn absurd_ranges_are_answered_without_error() {
    let (e, o) = edge_and_origin("").await;
    let body = payload(1000, 3);
    o.set("/r.mp4", Script::ok(body.clone()).header("content-type", "video/mp4"));
    let c = client();
    let (s, _, _, b) = get(&c, &url(&e, "/r.mp4"), &[]).await;
    assert_eq!((s, b.len()), (200, 1000));
    let thousand: String = (0..1000).map(|i| format!("{i}-{i}")).collect::<Vec<_>>().join(",");
    let thousand = format!("bytes={thousand}");
    let cases = [
        "bytes=18446744073709551615-",
        "bytes=18446744073709551614-18446744073709551615",
        "bytes=-99999999999999999999",
        "bytes=-18446744073709551615",
        "bytes=0-18446744073709551615",
        "bytes=99999999999999999999-1",
        "bytes=5-2",
        "bytes=--1",
        "bytes=0-0,-0",
        "bytes=-0",
        "bytes=",
        "bytes=,,,,",
        "items=0-10",
        thousand.as_str(),
    ];
    for range in cases {
        let (s, _, h, b) = get(&c, &url(&e, "/r.mp4"), &[("range", range)]).await;
        let shown = &range[..range.len().min(60)];
        match s {
            200 => assert_eq!(b, body, "{shown}"),
            206 => {
                let cr = h.get("content-range").map(|v| v.to_str().unwrap().to_string());
                let ct = h.get("content-type").unwrap().to_str().unwrap();
                assert!(cr.is_some() || ct.starts_with("multipart/byteranges"), "{shown}");
                assert_eq!(h.get("content-length").unwrap().to_str().unwrap(), b.len().to_string(), "{shown}");
                assert!(b.len() < 1000 * 200, "{shown}: {} bytes", b.len());
            }
            416 => assert_eq!(h.get("content-range").unwrap(), "bytes */1000", "{shown}"),
            other => panic!("{shown}: status {other}"),
        }
    }
    // A suffix longer than the body is the whole body.
    let (s, _, h, b) = get(&c, &url(&e, "/r.mp4"), &[("range", "bytes=-18446744073709551615")]).await;
    if s == 206 {
        assert_eq!((h.get("content-range").unwrap().to_str().unwrap(), b.len()), ("bytes 0-999/1000", 1000));
    }
    // A start past the end is unsatisfiable.
    let (s, _, _, _) = get(&c, &url(&e, "/r.mp4"), &[("range", "bytes=1000-")]).await;
    assert_eq!(s, 416);
    assert_eq!(o.hits("/r.mp4"), 1);
    let (s, x, _, b) = get(&c, &url(&e, "/r.mp4"), &[]).await;
    assert_eq!((s, x.as_str(), b), (200, "Hit", body));
}

/// Reads a response through the edge; `Ok(body)` only if the body arrived whole
/// (as long as its Content-Length, when there is one).
async fn fetch_whole(url: &str) -> (u16, Result<bytes::Bytes, String>) {
    let r = client().get(url).send().await.expect("response head");
    let status = r.status().as_u16();
    let announced = r.content_length();
    let body = match r.bytes().await {
        Ok(b) if announced.is_some_and(|n| n != b.len() as u64) => Err(format!("{} of {:?} bytes", b.len(), announced)),
        Ok(b) => Ok(b),
        Err(e) => Err(e.to_string()),
    };
    (status, body)
}

#[tokio::test]
async fn a_content_length_larger_than_the_body_is_not_a_clean_response_and_not_stored() {
    let (e, o) = edge_and_origin("").await;
    o.set("/short", Script::ok(payload(1000, 4)).content_length(5000));
    let (_, body) = fetch_whole(&url(&e, "/short")).await;
    assert!(body.is_err(), "a short body was passed off as complete");
    let (_, body) = fetch_whole(&url(&e, "/short")).await;
    assert!(body.is_err(), "a short body was passed off as complete");
    assert_eq!(o.hits("/short"), 2, "the broken object was stored");
    o.set("/short", Script::ok("repaired"));
    let (s, _, _, b) = get(&client(), &url(&e, "/short"), &[]).await;
    assert_eq!((s, &b[..]), (200, &b"repaired"[..]));
}

#[tokio::test]
async fn an_origin_closing_mid_body_is_not_a_clean_response_and_not_stored() {
    let (e, o) = edge_and_origin("").await;
    o.set("/cut", Script::ok(payload(200_000, 5)).pieces(4, Duration::from_millis(20)).fail_after(100_000));
    o.set("/cut-chunked", Script::ok(payload(200_000, 6)).chunked().fail_after(50_000));
    for p in ["/cut", "/cut-chunked"] {
        for _ in 0..2 {
            let (s, body) = fetch_whole(&url(&e, p)).await;
            assert_eq!(s, 200, "{p}");
            assert!(body.is_err(), "{p}: a cut body was passed off as complete");
        }
        assert_eq!(o.hits(p), 2, "{p}: the broken object was stored");
    }
    o.set("/ok-now", Script::ok("fine"));
    let (s, _, _, b) = get(&client(), &url(&e, "/ok-now"), &[]).await;
    assert_eq!((s, &b[..]), (200, &b"fine"[..]));
}

#[tokio::test]
async fn an_origin_speaking_garbage_gives_502() {
    let (addr, _task) = raw_origin(b"garbage\r\n\r\n").await;
    let (e, _good) = edge_over(&format!("http://{addr}")).await;
    let c = client();
    for _ in 0..2 {
        let (s, x, _, _) = get(&c, &url(&e, "/g"), &[]).await;
        assert_eq!((s, x.as_str()), (502, "Error"));
    }
    still_serving(&e).await;
}

#[tokio::test]
async fn bytes_after_the_announced_length_are_ignored() {
    let (addr, _task) =
        raw_origin(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCache-Control: max-age=60\r\n\r\nhelloEXTRA").await;
    let (e, _good) = edge_over(&format!("http://{addr}")).await;
    let c = client();
    let (s, x, h, b) = get(&c, &url(&e, "/extra"), &[]).await;
    assert_eq!((s, x.as_str(), &b[..]), (200, "Miss", &b"hello"[..]));
    assert_eq!(h.get("content-length").unwrap(), "5");
    let (s, x, _, b) = get(&c, &url(&e, "/extra"), &[]).await;
    assert_eq!((s, x.as_str(), &b[..]), (200, "Hit", &b"hello"[..]));
    still_serving(&e).await;
}

#[tokio::test]
async fn an_origin_closing_before_any_answer_gives_502() {
    let (addr, _task) = raw_origin(b"").await;
    let (e, _good) = edge_over(&format!("http://{addr}")).await;
    let (s, x, _, _) = get(&client(), &url(&e, "/empty"), &[]).await;
    assert_eq!((s, x.as_str()), (502, "Error"));
    still_serving(&e).await;
}

#[tokio::test]
async fn a_viewer_leaving_mid_body_does_not_disturb_the_fill() {
    let (e, o) = edge_and_origin("").await;
    let body = payload(300_000, 8);
    o.set("/leave.ts", Script::ok(body.clone()).pieces(10, Duration::from_millis(30)));
    let mut s = tokio::net::TcpStream::connect(e.addr()).await.unwrap();
    s.write_all(b"GET /leave.ts HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(status_line(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(s);
    let (st, _, _, b) = get(&client(), &url(&e, "/leave.ts"), &[]).await;
    assert_eq!((st, b.len()), (200, body.len()));
    assert_eq!(b, body);
    assert_eq!(o.hits("/leave.ts"), 1, "the fill went on without its first viewer");
}
