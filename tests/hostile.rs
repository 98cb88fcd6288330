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
        assert!(line.starts_with("HTTP/1.1 400"), "{junk:?} → {line:?}");
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
    assert!(line.starts_with("HTTP/1.1 431"), "{line:?}");
    // Many headers that add up past the limit.
    let many: String = (0..2000).map(|i| format!("X-H{i}: {}\r\n", "b".repeat(40))).collect();
    let req = format!("GET /ok HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let line = status_line(&raw_exchange(e.addr(), req.as_bytes()).await);
    assert!(line.starts_with("HTTP/1.1 431"), "{line:?}");
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
    // Each case, the status it gets, and for a 206 its Content-Range: 200
    // when the Range is ignored as invalid (RFC 9110 §14.2 allows it; numbers
    // past 2^64 - 1 are taken as invalid), 206, or 416 when no range starts
    // inside the body (§14.1.2, §15.5.17), however large its first position.
    let cases = [
        ("bytes=18446744073709551615-", 416, ""),
        ("bytes=18446744073709551614-18446744073709551615", 416, ""),
        ("bytes=-99999999999999999999", 200, ""),
        ("bytes=-18446744073709551615", 206, "bytes 0-999/1000"),
        ("bytes=0-18446744073709551615", 206, "bytes 0-999/1000"),
        ("bytes=99999999999999999999-1", 200, ""),
        ("bytes=18446744073709551616-", 200, ""),
        ("bytes=5-2", 200, ""),
        ("bytes=--1", 200, ""),
        ("bytes=0-0,-0", 206, "bytes 0-0/1000"),
        ("bytes=-0", 416, ""),
        ("bytes=", 200, ""),
        ("bytes=,,,,", 200, ""),
        ("items=0-10", 200, ""),
        (thousand.as_str(), 200, ""),
    ];
    for (range, expected, content_range) in cases {
        let (s, _, h, b) = get(&c, &url(&e, "/r.mp4"), &[("range", range)]).await;
        let shown = &range[..range.len().min(60)];
        assert_eq!(s, expected, "{shown}");
        match s {
            200 => assert_eq!(b, body, "{shown}"),
            206 => {
                assert_eq!(h.get("content-range").unwrap(), content_range, "{shown}");
                assert_eq!(h.get("content-length").unwrap().to_str().unwrap(), b.len().to_string(), "{shown}");
                let first = content_range["bytes 0-".len()..].split('/').next().unwrap().parse::<usize>().unwrap();
                assert_eq!(b[..], body[..=first], "{shown}");
            }
            _ => assert_eq!(h.get("content-range").unwrap(), "bytes */1000", "{shown}"),
        }
    }
    // A suffix longer than the body is the whole body.
    let (s, _, h, b) = get(&c, &url(&e, "/r.mp4"), &[("range", "bytes=-5000")]).await;
    assert_eq!(s, 206);
    assert_eq!((h.get("content-range").unwrap().to_str().unwrap(), b), ("bytes 0-999/1000", body.clone()));
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
    // The second answer is the first one, kept for the error-caching TTL.
    for expected in ["Error", "Hit"] {
        let (s, x, _, _) = get(&c, &url(&e, "/g"), &[]).await;
        assert_eq!((s, x.as_str()), (502, expected));
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

/// Sends one raw request and returns the status line of the answer (the
/// connection may stay open: reads until the head is in, or 5 s pass).
async fn raw_status(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect to the edge");
    let _ = s.write_all(request).await;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !got.windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    status_line(&got)
}

#[tokio::test]
async fn a_viewers_bad_chunk_framing_is_a_400_not_a_502() {
    let (e, o) =
        edge_and_origin("allowed_methods = [\"GET\", \"HEAD\", \"OPTIONS\", \"PUT\", \"POST\", \"PATCH\", \"DELETE\"]")
            .await;
    o.set("/upload", Script::ok("stored"));
    for body in [
        // A chunk size past u64.
        &b"fffffffffffffffffffffff\r\nx\r\n0\r\n\r\n"[..],
        // A chunk extension ended by a bare LF.
        b"5;ext=1\nhello\r\n0\r\n\r\n",
        // Not hex at all.
        b"zz\r\nhello\r\n0\r\n\r\n",
    ] {
        let mut req = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        req.extend_from_slice(body);
        let line = raw_status(e.addr(), &req).await;
        assert!(line.starts_with("HTTP/1.1 400"), "{:?} → {line:?}", String::from_utf8_lossy(body));
    }
    // A good chunked body still goes through.
    let line = raw_status(
        e.addr(),
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 200"), "{line:?}");
}

#[tokio::test]
async fn host_headers_are_checked() {
    let (e, o) = edge_and_origin("").await;
    o.set("/h", Script::ok("h"));
    for (req, why) in [
        (&b"GET /h HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"[..], "two different Host headers"),
        (b"GET /h HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n\r\n", "two Host field lines"),
        (b"GET /h HTTP/1.1\r\nHost: a.example:65536\r\n\r\n", "a port above 65535"),
        (b"GET /h HTTP/1.1\r\nHost: a.example:99999999999999999999\r\n\r\n", "a port past u64"),
        (b"GET /h HTTP/1.1\r\nHost: a.example:http\r\n\r\n", "a port that is not a number"),
        (b"GET /h HTTP/1.1\r\nHost: a.example:80:80\r\n\r\n", "two ports"),
        (b"GET /h HTTP/1.1\r\nHost: a/b\r\n\r\n", "a slash in the host"),
        (b"GET /h HTTP/1.1\r\n\r\n", "no Host at all"),
        (b"GET http://u@a.example/h HTTP/1.1\r\nHost: a.example\r\n\r\n", "user information"),
    ] {
        let line = raw_status(e.addr(), req).await;
        assert!(line.starts_with("HTTP/1.1 400"), "{why}: {line:?}");
    }
    assert_eq!(o.hits("/h"), 0, "a refused request reached the origin");
    let line = raw_status(e.addr(), b"GET /h HTTP/1.1\r\nHost: a.example:8080\r\n\r\n").await;
    assert!(line.starts_with("HTTP/1.1 200"), "{line:?}");
}

/// RFC 9112 §3.2.2: with an absolute-form target the target names the host; a
/// `Host` that disagrees is ignored, and what goes on carries the target's.
#[tokio::test]
async fn an_absolute_form_target_names_the_host_and_replaces_a_disagreeing_one() {
    let a = TestOrigin::start().await;
    let b = TestOrigin::start().await;
    a.set("/which", Script::ok("a").header("cache-control", "no-store"));
    b.set("/which", Script::ok("b").header("cache-control", "no-store"));
    let cfg = format!(
        "[[distributions]]\nid = \"EA\"\naliases = [\"a.example\"]\n\n[[distributions.origins]]\nid = \"o\"\nurl = \"{}\"\n\n\
         [distributions.default_behavior]\norigin = \"o\"\ncache_key = {{ headers = [\"host\"] }}\n\n\
         [[distributions]]\nid = \"EB\"\naliases = [\"b.example\"]\n\n[[distributions.origins]]\nid = \"o\"\nurl = \"{}\"\n\n\
         [distributions.default_behavior]\norigin = \"o\"\n",
        a.url(),
        b.url()
    );
    let e = edge(&cfg).await;
    let resp =
        raw_exchange(e.addr(), b"GET http://a.example/which HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n")
            .await;
    assert!(status_line(&resp).starts_with("HTTP/1.1 200"), "{:?}", status_line(&resp));
    assert!(resp.ends_with(b"\r\n\r\na"), "{}", String::from_utf8_lossy(&resp));
    assert_eq!((a.hits("/which"), b.hits("/which")), (1, 0));
    assert_eq!(a.seen_for("/which")[0].headers.get("host").unwrap(), "a.example");
}

#[tokio::test]
async fn an_edge_that_is_its_own_origin_answers_508() {
    let (e, _o) = edge_and_origin("").await;
    let own = format!("http://{}", e.addr());
    let cfg = mediaedge::Config::parse(&config_for(&own, ""), std::path::Path::new("test.toml")).unwrap();
    e.edge.reconfigure(&cfg).unwrap();
    let (s, _, _, b) = get(&client(), &url(&e, "/loop"), &[]).await;
    assert_eq!(s, 508, "{}", String::from_utf8_lossy(&b));
}

/// Two tiers with the same location name: the second is not a loop, a way back
/// to the first is.
#[tokio::test]
async fn a_second_tier_with_the_same_location_is_not_a_loop_and_a_way_back_is() {
    let o = TestOrigin::start().await;
    o.set("/tiered", Script::ok("t"));
    let regional = edge(&config_for(&o.url(), "")).await;
    let front = edge(&config_for(&format!("http://{}", regional.addr()), "")).await;
    let (s, _, _, b) = get(&client(), &url(&front, "/tiered"), &[]).await;
    assert_eq!((s, &b[..]), (200, &b"t"[..]));
    let via = o.seen_for("/tiered")[0].headers.get("via").unwrap().to_str().unwrap().to_string();
    assert_eq!(via.matches("(mediaedge)").count(), 2, "{via}");
    // Now the regional tier sends back to the front: a loop through two nodes.
    let back = format!("http://{}", front.addr());
    let cfg = mediaedge::Config::parse(&config_for(&back, ""), std::path::Path::new("test.toml")).unwrap();
    regional.edge.reconfigure(&cfg).unwrap();
    let (s, _, _, _) = get(&client(), &url(&front, "/other"), &[]).await;
    assert_eq!(s, 508);
}
