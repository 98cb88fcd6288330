//! Request collapsing with streaming fill: one origin request per burst, every
//! viewer fed while the fill arrives, failures never look like clean ends.

mod common;
use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reads a response body, comparing it with `expected` as it arrives.
/// Returns (first-byte time, end time, whether it matched completely).
async fn stream_compare(r: reqwest::Response, expected: &[u8]) -> Result<(Instant, Instant, bool), String> {
    let mut r = r;
    let mut pos = 0usize;
    let mut first = None;
    let mut same = true;
    loop {
        match r.chunk().await {
            Ok(Some(c)) => {
                first.get_or_insert_with(Instant::now);
                same &= expected.get(pos..pos + c.len()) == Some(&c[..]);
                pos += c.len();
            }
            Ok(None) => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    let end = Instant::now();
    Ok((first.unwrap_or(end), end, same && pos == expected.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_viewers_make_one_origin_request_and_stream_as_it_arrives() {
    const VIEWERS: usize = 1000;
    let (e, o) = edge_and_origin("").await;
    let body = payload(4 << 20, 7);
    // 4 MiB sent over ~2 s in 20 pieces.
    o.set(
        "/seg.m4s",
        Script::ok(body.clone()).header("content-type", "video/iso.segment").pieces(20, Duration::from_millis(100)),
    );
    let c = client();
    let start = Instant::now();
    let expected = Arc::new(body);
    let mut tasks = Vec::with_capacity(VIEWERS);
    for _ in 0..VIEWERS {
        let c = c.clone();
        let u = url(&e, "/seg.m4s");
        let expected = expected.clone();
        tasks.push(tokio::spawn(async move {
            let r = c.get(&u).send().await.map_err(|e| e.to_string())?;
            if r.status() != 200 {
                return Err(format!("status {}", r.status()));
            }
            stream_compare(r, &expected).await
        }));
    }
    let mut firsts = Vec::with_capacity(VIEWERS);
    let mut last_end = start;
    for t in tasks {
        let (first, end, same) = t.await.unwrap().expect("every viewer gets the object");
        assert!(same, "every body is byte-identical to the origin's");
        firsts.push(first - start);
        last_end = last_end.max(end);
    }
    assert_eq!(o.hits("/seg.m4s"), 1, "exactly one origin request");
    firsts.sort();
    let median_first = firsts[VIEWERS / 2];
    let fill_time = last_end - start;
    // The origin needs ~1.9 s to send the body; viewers must see bytes long before.
    assert!(fill_time >= Duration::from_millis(1800), "fill took {fill_time:?}");
    assert!(
        median_first + Duration::from_millis(1000) < fill_time,
        "first byte (median {median_first:?}) must come long before the fill ends ({fill_time:?})"
    );
    // And it is cached now.
    assert_eq!(get(&c, &url(&e, "/seg.m4s"), &[]).await.1, "Hit");
    assert_eq!(o.hits("/seg.m4s"), 1);
}

#[tokio::test]
async fn a_late_viewer_joins_the_fill_and_gets_bytes_at_once() {
    let (e, o) = edge_and_origin("").await;
    let body = payload(1 << 20, 3);
    o.set("/slow.ts", Script::ok(body.clone()).pieces(10, Duration::from_millis(200)));
    let c = client();
    let start = Instant::now();
    let first = {
        let c = c.clone();
        let u = url(&e, "/slow.ts");
        let b = body.clone();
        tokio::spawn(async move { stream_compare(c.get(&u).send().await.unwrap(), &b).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let joined = Instant::now();
    let r = c.get(url(&e, "/slow.ts")).send().await.unwrap();
    let (late_first, late_end, same) = stream_compare(r, &body).await.unwrap();
    assert!(same);
    let (_, first_end, first_same) = first.await.unwrap().unwrap();
    assert!(first_same);
    assert_eq!(o.hits("/slow.ts"), 1);
    // The late viewer got what was already there at once, not after the fill:
    // its first byte came before the first viewer's body ended.
    assert!(
        late_first < first_end,
        "late first byte after {:?}, fill ended at {:?}",
        late_first - joined,
        first_end - start
    );
    assert!(late_end - start >= Duration::from_millis(1500));
    assert!(first_end - start >= Duration::from_millis(1500));
}

#[tokio::test]
async fn a_failed_fill_ends_every_reader_in_error_and_stores_nothing() {
    let (e, o) = edge_and_origin("").await;
    let body = payload(512 * 1024, 9);
    o.set("/broken.ts", Script::ok(body.clone()).pieces(8, Duration::from_millis(100)).fail_after(300 * 1024));
    let c = client();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let c = c.clone();
        let u = url(&e, "/broken.ts");
        let b = body.clone();
        tasks.push(tokio::spawn(async move {
            match c.get(&u).send().await {
                Ok(r) => stream_compare(r, &b).await.map(|(_, _, same)| same),
                Err(e) => Err(e.to_string()),
            }
        }));
    }
    for t in tasks {
        let outcome = t.await.unwrap();
        assert!(!matches!(outcome, Ok(true)), "no reader may see a complete body");
        assert!(outcome.is_err(), "the body must end in an error, not a clean short end");
    }
    assert_eq!(o.hits("/broken.ts"), 1);
    // Nothing partial was stored: the next request goes to the origin.
    o.set("/broken.ts", Script::ok(body.clone()));
    let (s, x, _, b) = get(&c, &url(&e, "/broken.ts"), &[]).await;
    assert_eq!((s, x.as_str()), (200, "Miss"));
    assert_eq!(b, body);
    assert_eq!(o.hits("/broken.ts"), 2);
}

#[tokio::test]
async fn uncacheable_answers_release_waiters_in_parallel_then_skip_the_wait() {
    let (e, o) = edge_and_origin("").await;
    o.set("/api/now", Script::ok("now").header("cache-control", "no-store").delay(Duration::from_millis(300)));
    let c = client();
    let burst = |n: usize| {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let c = c.clone();
            let u = url(&e, "/api/now");
            tasks.push(tokio::spawn(async move { get(&c, &u, &[]).await }));
        }
        tasks
    };
    for t in burst(20) {
        let (s, _, _, b) = t.await.unwrap();
        assert_eq!((s, &b[..]), (200, &b"now"[..]));
    }
    assert_eq!(o.hits("/api/now"), 20, "every waiter fetched on its own");
    // Released waiters go at once, together: at least the 19 waiters overlap.
    assert!(o.peak_concurrency() >= 19, "peak origin concurrency {}", o.peak_concurrency());
    // Hit-for-pass: later requests do not queue at all.
    o.reset_peak();
    for t in burst(20) {
        assert_eq!(t.await.unwrap().0, 200);
    }
    assert_eq!(o.hits("/api/now"), 40);
    assert!(o.peak_concurrency() >= 20, "peak origin concurrency {}", o.peak_concurrency());
}

#[tokio::test]
async fn the_fill_goes_on_when_the_viewer_who_started_it_leaves() {
    let (e, o) = edge_and_origin("").await;
    let body = payload(800 * 1024, 5);
    o.set(
        "/leave.ts",
        Script::ok(body.clone()).delay(Duration::from_millis(200)).pieces(8, Duration::from_millis(100)),
    );
    let c = client();
    let leader = {
        let c = c.clone();
        let u = url(&e, "/leave.ts");
        tokio::spawn(async move {
            let mut r = c.get(&u).send().await.unwrap();
            let first = r.chunk().await.unwrap();
            assert!(first.is_some());
            // Leave mid-body.
            drop(r);
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiter = {
        let c = c.clone();
        let u = url(&e, "/leave.ts");
        let b = body.clone();
        tokio::spawn(async move { stream_compare(c.get(&u).send().await.unwrap(), &b).await })
    };
    leader.await.unwrap();
    let (_, _, same) = waiter.await.unwrap().unwrap();
    assert!(same, "the waiter gets the whole body");
    assert_eq!(o.hits("/leave.ts"), 1);
    let (_, x, _, b) = get(&c, &url(&e, "/leave.ts"), &[]).await;
    assert_eq!((x.as_str(), b.len()), ("Hit", body.len()), "the fill completed and was stored");
}

#[tokio::test]
async fn a_cancelled_leader_never_leaves_waiters_blocked() {
    // Lock timeout far beyond the test's patience: waiters must be released by
    // the leader's cancellation, not by the timeout.
    let origin = TestOrigin::start().await;
    let cfg = format!("[cache]\nlock_timeout = \"60s\"\n{}", config_for(&origin.url(), ""));
    let e = edge(&cfg).await;
    origin.set("/hang", Script::ok("late").delay(Duration::from_millis(700)));
    let impatient = reqwest::Client::builder().no_proxy().timeout(Duration::from_millis(200)).build().unwrap();
    let u = url(&e, "/hang");
    let leader = tokio::spawn({
        let u = u.clone();
        async move { impatient.get(&u).send().await.is_err() }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let c = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    let started = Instant::now();
    let r = c.get(&u).send().await.expect("the waiter is answered");
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes().await.unwrap()[..], b"late");
    assert!(leader.await.unwrap(), "the leader gave up");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(origin.hits("/hang") <= 2);
}

#[tokio::test]
async fn a_stalled_fill_releases_waiters_after_the_lock_timeout() {
    let origin = TestOrigin::start().await;
    let cfg = format!("[cache]\nlock_timeout = \"200ms\"\n{}", config_for(&origin.url(), ""));
    let e = edge(&cfg).await;
    origin.set("/stall", Script::ok("s").delay(Duration::from_millis(1500)));
    let c = client();
    let first = tokio::spawn({
        let c = c.clone();
        let u = url(&e, "/stall");
        async move { get(&c, &u, &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (s, _, _, b) = get(&c, &url(&e, "/stall"), &[]).await;
    assert_eq!((s, &b[..]), (200, &b"s"[..]));
    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(origin.hits("/stall"), 2, "the waiter went to the origin on its own");
    assert!(origin.peak_concurrency() >= 2);
}

#[tokio::test]
async fn a_burst_on_a_stale_manifest_revalidates_once() {
    let (e, o) = edge_and_origin("").await;
    o.set(
        "/live/index.m3u8",
        Script::ok("#EXTM3U\n#v1\n").header("cache-control", "max-age=1").header("etag", "\"p1\""),
    );
    let c = client();
    get(&c, &url(&e, "/live/index.m3u8"), &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    o.set(
        "/live/index.m3u8",
        Script::ok("#EXTM3U\n#v2\n")
            .header("cache-control", "max-age=1")
            .header("etag", "\"p2\"")
            .delay(Duration::from_millis(200)),
    );
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let c = c.clone();
        let u = url(&e, "/live/index.m3u8");
        tasks.push(tokio::spawn(async move { get(&c, &u, &[]).await }));
    }
    let mut fresh = 0;
    for t in tasks {
        let (s, x, _, b) = t.await.unwrap();
        assert_eq!(s, 200);
        // Waiters get the copy that expired a moment ago (a manifest may be
        // served stale for one refresh while it runs); the leader gets v2.
        match &b[..] {
            b"#EXTM3U\n#v2\n" => fresh += 1,
            b"#EXTM3U\n#v1\n" => assert_eq!(x, "Hit"),
            other => panic!("unexpected body {other:?}"),
        }
    }
    assert!(fresh >= 1);
    assert_eq!(o.hits("/live/index.m3u8"), 2, "one fill, one revalidation for the whole burst");
    assert_eq!(get(&c, &url(&e, "/live/index.m3u8"), &[]).await.3, &b"#EXTM3U\n#v2\n"[..]);
}
