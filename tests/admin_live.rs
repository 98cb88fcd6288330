//! The control plane acting on the running edge: invalidations across every
//! stored variant, a live origin switch under steady traffic, and usage
//! counting (304s included) that survives a restart.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PLAYLIST: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
#EXTINF:2.0,\nseg0.ts\n#EXTINF:2.0,\nseg1.ts\n#EXTINF:2.0,\nseg2.ts\n#EXTINF:2.0,\nseg3.ts\n#EXT-X-ENDLIST\n";

fn config(origin: &str) -> String {
    format!(
        "[[distributions]]\nid = \"EINV\"\naliases = [\"*\"]\n\n[[distributions.origins]]\nid = \"o\"\nurl = \"{origin}\"\n\n\
         [distributions.default_behavior]\norigin = \"o\"\ncompress = true\ndefault_ttl = \"1h\"\n\n\
         [[distributions.behaviors]]\npath = \"/q/*\"\norigin = \"o\"\ndefault_ttl = \"1h\"\ncache_key = {{ query = \"all\" }}\n"
    )
}

/// Creates an invalidation and waits until it is Completed.
async fn invalidate(c: &reqwest::Client, e: &Controlled, dist: &str, paths: &[&str]) {
    let (status, _, inv) = admin_call(
        c,
        "POST",
        &e.api(&format!("/v1/distributions/{dist}/invalidations")),
        Some(&json!({ "paths": paths })),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{inv}");
    let id = inv["id"].as_str().expect("invalidation id").to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, v) =
            admin_call(c, "GET", &e.api(&format!("/v1/distributions/{dist}/invalidations/{id}")), None, &[]).await;
        if v["status"] == "Completed" {
            return;
        }
        assert!(Instant::now() < deadline, "invalidation {id} did not complete: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A body with its Content-Encoding undone.
fn decoded(headers: &http::HeaderMap, body: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match headers.get("content-encoding").and_then(|v| v.to_str().ok()) {
        Some("br") => {
            brotli::BrotliDecompress(&mut &body[..], &mut out).expect("valid brotli");
        }
        Some("gzip") => {
            flate2::read::GzDecoder::new(body).read_to_end(&mut out).expect("valid gzip");
        }
        _ => out = body.to_vec(),
    }
    out
}

/// One request's view: (status, X-Cache result).
async fn fetch(c: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, xc, _, _) = get(c, url, headers).await;
    (status, xc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_reaches_every_variant_and_only_what_it_names() {
    let origin = TestOrigin::start().await;
    origin.set("/v/a.m3u8", Script::ok(PLAYLIST).header("content-type", "application/vnd.apple.mpegurl"));
    origin.set("/vary/x", Script::ok("hello").header("content-type", "text/plain").header("vary", "Accept-Language"));
    origin.set("/seg/1.m4s", Script::ok(payload(200_000, 1)).header("content-type", "video/iso.segment"));
    origin.set("/q/p", Script::ok("query").header("content-type", "text/plain"));
    origin.set("/live/1.ts", Script::ok(payload(1000, 2)).header("content-type", "video/mp2t"));
    origin.set("/live/2.ts", Script::ok(payload(1000, 3)).header("content-type", "video/mp2t"));
    origin.set("/keep/k.ts", Script::ok(payload(1000, 4)).header("content-type", "video/mp2t"));
    let state = TempDir::new("inv");
    let e = controlled(&config(&origin.url()), state.path()).await;
    let c = client();

    // Every variant the cache can hold: identity, brotli and gzip copies; two
    // Vary selections; a range; two keyed queries; wildcard targets; a bystander.
    let requests: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/v/a.m3u8", vec![]),
        ("/v/a.m3u8", vec![("accept-encoding", "br")]),
        ("/v/a.m3u8", vec![("accept-encoding", "gzip")]),
        ("/vary/x", vec![("accept-language", "en")]),
        ("/vary/x", vec![("accept-language", "fr")]),
        ("/seg/1.m4s", vec![("range", "bytes=0-99")]),
        ("/seg/1.m4s", vec![]),
        ("/q/p?x=1", vec![]),
        ("/q/p?x=2", vec![]),
        ("/live/1.ts", vec![]),
        ("/live/2.ts", vec![]),
        ("/keep/k.ts", vec![]),
    ];
    for (path, h) in &requests {
        fetch(&c, &e.url(path), h).await;
    }
    for (path, h) in &requests {
        let (status, xc) = fetch(&c, &e.url(path), h).await;
        assert!(status == 200 || status == 206, "{path}: {status}");
        assert_eq!(xc, "Hit", "{path} {h:?} is cached before any invalidation");
    }
    let before = |p: &str| origin.hits(p);
    let counts: Vec<usize> =
        ["/v/a.m3u8", "/vary/x", "/seg/1.m4s", "/q/p", "/live/1.ts", "/keep/k.ts"].iter().map(|p| before(p)).collect();
    assert_eq!(counts, vec![1, 2, 1, 2, 1, 1], "hits never reached the origin");

    // The origin now has new versions. After an exact-path invalidation every
    // variant of each object answers with the new version, never the old.
    let playlist2 = PLAYLIST.replace("#EXT-X-VERSION:3", "#EXT-X-VERSION:4");
    let seg2 = payload(200_000, 11);
    origin.set("/v/a.m3u8", Script::ok(playlist2.clone()).header("content-type", "application/vnd.apple.mpegurl"));
    origin.set("/vary/x", Script::ok("hello2").header("content-type", "text/plain").header("vary", "Accept-Language"));
    origin.set("/seg/1.m4s", Script::ok(seg2.clone()).header("content-type", "video/iso.segment"));
    origin.set("/q/p", Script::ok("query2").header("content-type", "text/plain"));
    invalidate(&c, &e, "EINV", &["/v/a.m3u8", "/vary/x", "/seg/1.m4s", "/q/p"]).await;
    let expected: Vec<Vec<u8>> = vec![
        playlist2.clone().into(),
        playlist2.clone().into(),
        playlist2.clone().into(),
        b"hello2".to_vec(),
        b"hello2".to_vec(),
        seg2[..100].to_vec(),
        seg2.to_vec(),
        b"query2".to_vec(),
        b"query2".to_vec(),
    ];
    for ((path, h), want) in requests[..9].iter().zip(&expected) {
        let (status, _, headers, body) = get(&c, &e.url(path), h).await;
        assert!(status == 200 || status == 206, "{path}: {status}");
        let body = decoded(&headers, &body);
        assert!(body == *want, "{path} {h:?} answered with the old version after its invalidation completed");
    }
    assert_eq!(origin.hits("/v/a.m3u8"), 2, "one new fill serves every encoding");
    assert_eq!(origin.hits("/vary/x"), 4, "each Vary selection was fetched again");
    assert_eq!(origin.hits("/seg/1.m4s"), 2, "the range request refilled the segment once");
    assert_eq!(origin.hits("/q/p"), 4, "both keyed queries went back to the origin");
    for p in ["/live/1.ts", "/live/2.ts", "/keep/k.ts"] {
        assert_eq!(fetch(&c, &e.url(p), &[]).await.1, "Hit", "{p} was not named and stays cached");
    }

    // A wildcard: what it covers goes, the rest stays.
    invalidate(&c, &e, "EINV", &["/live/*"]).await;
    assert_eq!(fetch(&c, &e.url("/live/1.ts"), &[]).await.1, "Miss");
    assert_eq!(fetch(&c, &e.url("/live/2.ts"), &[]).await.1, "Miss");
    assert_eq!(fetch(&c, &e.url("/keep/k.ts"), &[]).await.1, "Hit");
    assert_eq!(origin.hits("/live/1.ts"), 2);
    assert_eq!(origin.hits("/keep/k.ts"), 1);

    // `/*`: everything.
    invalidate(&c, &e, "EINV", &["/*"]).await;
    assert_eq!(fetch(&c, &e.url("/keep/k.ts"), &[]).await.1, "Miss");
    assert_eq!(origin.hits("/keep/k.ts"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_after_completed_does_not_join_a_fill_that_started_before() {
    let origin = TestOrigin::start().await;
    origin.set(
        "/slow.ts",
        Script::ok(payload(1000, 9)).header("content-type", "video/mp2t").delay(Duration::from_millis(600)),
    );
    let state = TempDir::new("inv-race");
    let e = controlled(&config(&origin.url()), state.path()).await;
    let c = client();
    // A fill starts (the origin is slow to answer)...
    let url = e.url("/slow.ts");
    let first = tokio::spawn({
        let c = c.clone();
        async move { fetch(&c, &url, &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    // ...the object is invalidated while the origin has not answered yet...
    invalidate(&c, &e, "EINV", &["/slow.ts"]).await;
    // ...a request after Completed does not wait for that older fill...
    let (status, xc) = fetch(&c, &e.url("/slow.ts"), &[]).await;
    assert_eq!((status, xc.as_str()), (200, "Miss"));
    assert_eq!(first.await.expect("first request").0, 200, "the request before the invalidation is answered");
    assert_eq!(origin.hits("/slow.ts"), 2, "the request after Completed made its own origin fetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_whose_origin_answers_after_the_invalidation_is_not_stored() {
    let origin = TestOrigin::start().await;
    origin.set("/late.ts", Script::ok("old").header("content-type", "video/mp2t").delay(Duration::from_millis(500)));
    let state = TempDir::new("inv-late");
    let e = controlled(&config(&origin.url()), state.path()).await;
    let c = client();
    let url = e.url("/late.ts");
    let first = tokio::spawn({
        let (c, url) = (c.clone(), url.clone());
        async move { get(&c, &url, &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    invalidate(&c, &e, "EINV", &["/late.ts"]).await;
    origin.set("/late.ts", Script::ok("new").header("content-type", "video/mp2t"));
    // The older fill's origin answers only now, after Completed: its viewer
    // gets it, the cache does not keep it.
    let (status, _, _, body) = first.await.expect("first request");
    assert_eq!((status, &body[..]), (200, &b"old"[..]));
    let (status, xc, _, body) = get(&c, &url, &[]).await;
    assert_eq!((status, xc.as_str(), &body[..]), (200, "Miss", &b"new"[..]));
    assert_eq!(origin.hits("/late.ts"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_change_under_steady_traffic_fails_no_request_and_shows_within_a_second() {
    let a = TestOrigin::start().await;
    let b = TestOrigin::start().await;
    // Uncacheable answers, so every request shows which origin serves it.
    a.set("/now", Script::ok("A").header("cache-control", "no-store"));
    b.set("/now", Script::ok("B").header("cache-control", "no-store"));
    // Slow requests in flight across the switch finish from the old origin.
    a.set("/slow", Script::ok("A-slow").header("cache-control", "no-store").delay(Duration::from_millis(700)));
    let state = TempDir::new("reload");
    let e = controlled(&config_for(&a.url(), ""), state.path()).await;
    let c = client();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    let t0 = Instant::now();
    for _ in 0..4 {
        let (c, url, stop) = (c.clone(), e.url("/now"), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            // About 100 requests a second per worker, for at most 30 s.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(30) {
                let started = t0.elapsed();
                let outcome = match c.get(&url).send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        (status, r.text().await.unwrap_or_else(|e| format!("body error: {e}")))
                    }
                    Err(err) => (0, format!("request error: {err}")),
                };
                seen.push((started, t0.elapsed(), outcome));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            seen
        }));
    }
    let slow = tokio::spawn({
        let (c, url) = (c.clone(), e.url("/slow"));
        async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            let r = c.get(&url).send().await.expect("slow request");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Switch the distribution's origin to B.
    let (_, headers, current) = admin_call(&c, "GET", &e.api("/v1/distributions/ETEST"), None, &[]).await;
    let etag = headers.get("etag").and_then(|v| v.to_str().ok()).expect("etag").to_string();
    let mut cfg = current["config"].clone();
    cfg["origins"][0]["url"] = Value::String(b.url());
    let put_started = t0.elapsed();
    let (status, _, body) =
        admin_call(&c, "PUT", &e.api("/v1/distributions/ETEST"), Some(&cfg), &[("if-match", &etag)]).await;
    let put_done = t0.elapsed();
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    assert!(all.len() > 100, "steady traffic: {} requests", all.len());
    let failed: Vec<_> = all.iter().filter(|(_, _, (s, _))| *s != 200).collect();
    assert!(failed.is_empty(), "no request fails across the change: {failed:?}");
    let first_b = all.iter().filter(|(_, _, (_, b))| b == "B").map(|(_, done, _)| *done).min().expect("B appears");
    assert!(
        first_b < put_started + Duration::from_secs(1),
        "the new origin shows within a second: first B answer at {first_b:?}, change sent at {put_started:?}"
    );
    eprintln!(
        "{} requests, change sent at {put_started:?} and acknowledged at {put_done:?}, first answer from the new origin at {first_b:?}",
        all.len()
    );
    let late_a: Vec<_> = all.iter().filter(|(started, _, (_, b))| *started > put_done && b == "A").collect();
    assert!(late_a.is_empty(), "a request started after the change was answered by the old origin: {late_a:?}");
    assert!(all.iter().any(|(_, _, (_, b))| b == "A"), "the old origin served before the change");
    assert_eq!(slow.await.expect("slow"), (200, "A-slow".to_string()), "a request in flight finishes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counts_requests_transfer_and_304s_and_survives_a_restart() {
    let origin = TestOrigin::start().await;
    origin.set("/u.ts", Script::ok(payload(10_000, 5)).header("content-type", "video/mp2t").header("etag", "\"u1\""));
    let state = TempDir::new("usage");
    let e = controlled(&config_for(&origin.url(), ""), state.path()).await;
    let c = client();
    let usage = |e: &Controlled| e.api("/v1/usage?distribution=ETEST");
    let row = |v: &Value| v["items"].as_array().and_then(|a| a.first()).cloned().unwrap_or(Value::Null);

    for _ in 0..3 {
        assert_eq!(get(&c, &e.url("/u.ts"), &[]).await.0, 200);
    }
    let (_, _, v) = admin_call(&c, "GET", &usage(&e), None, &[]).await;
    let r = row(&v);
    assert_eq!(r["http_requests"], 3, "{v}");
    assert_eq!(r["https_requests"], 0);
    let out = r["data_transfer_out_to_viewers_bytes"].as_u64().expect("bytes out");
    assert!(out > 30_000 && out < 32_000, "three bodies of 10,000 bytes and their heads: {out}");
    assert!(r["data_transfer_out_to_origin_bytes"].as_u64().expect("to origin") > 0, "one origin request");

    // A 304: one more request, and only its head as transfer.
    let (status, _, _, body) = get(&c, &e.url("/u.ts"), &[("if-none-match", "\"u1\"")]).await;
    assert_eq!((status, body.len()), (304, 0));
    let (_, _, v) = admin_call(&c, "GET", &usage(&e), None, &[]).await;
    let r = row(&v);
    assert_eq!(r["http_requests"], 4, "a 304 counts as a request");
    let head = r["data_transfer_out_to_viewers_bytes"].as_u64().expect("bytes") - out;
    assert!(head > 50 && head < 2000, "a 304 counts its header bytes: {head}");

    invalidate(&c, &e, "ETEST", &["/u.ts", "/x/*"]).await;
    let (_, _, v) = admin_call(&c, "GET", &usage(&e), None, &[]).await;
    assert_eq!(row(&v)["invalidation_paths"], 2);

    // The same figures after a restart on the same state.
    e.edge.flush_usage();
    let before = row(&v);
    drop(e);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = controlled(&config_for(&origin.url(), ""), state.path()).await;
    let (_, _, v) = admin_call(&c, "GET", &usage(&e), None, &[]).await;
    assert_eq!(row(&v), before, "usage is kept across a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exported_configuration_leaves_the_admin_token_out() {
    let origin = TestOrigin::start().await;
    let state = TempDir::new("export");
    let text = format!("[admin]\ntoken = \"{ADMIN_TOKEN}\"\n\n{}", config_for(&origin.url(), ""));
    let e = controlled(&text, state.path()).await;
    let r = client()
        .get(e.api("/v1/config"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .expect("export");
    assert_eq!(r.status().as_u16(), 200);
    let exported = r.text().await.expect("text");
    assert!(!exported.contains(ADMIN_TOKEN), "{exported}");
    assert!(exported.contains("[admin]") && exported.contains("id = \"ETEST\""), "{exported}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_admin_input_gets_a_clear_error_and_changes_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = TestOrigin::start().await;
    let state = TempDir::new("hostile-admin");
    let e = controlled(&config_for(&origin.url(), ""), state.path()).await;
    let c = client();
    let (_, _, before) = admin_call(&c, "GET", &e.api("/v1/distributions"), None, &[]).await;

    // Bodies that are not distributions.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (deep.into_bytes(), "MalformedJson"),
        (b"\xff\xfe{\"id\": 1}".to_vec(), "MalformedJson"),
        (br#"{"origins":[{"id":"o","url":"http://127.0.0.1:9"}],"default_behavior":{"origin":"o","default_ttl":123456789012345678901234567890}}"#.to_vec(), "InvalidArgument"),
        (br#"{"origins":[{"id":"o","url":"http://127.0.0.1:9"}],"default_behavior":{"origin":"o"},"aliases":["a\u0000b"]}"#.to_vec(), "InvalidArgument"),
        (br#"{"origins":[{"id":"o","url":"http://127.0.0.1:9"}],"default_behavior":{"origin":"o"},"surprise":true}"#.to_vec(), "InvalidArgument"),
        (br#"{"origins":[],"default_behavior":{"origin":"o"}}"#.to_vec(), "InvalidArgument"),
        (br#""just a string""#.to_vec(), "InvalidArgument"),
    ];
    for (body, want) in cases {
        let r = c
            .post(e.api("/v1/distributions"))
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(body.clone())
            .send()
            .await
            .expect("answered");
        let status = r.status().as_u16();
        let v: Value = serde_json::from_slice(&r.bytes().await.expect("body")).expect("a JSON error");
        assert_eq!((status, v["error"]["code"].as_str()), (400, Some(want)), "{v}");
        assert!(!v["error"]["message"].as_str().unwrap_or("").is_empty());
        if body.windows(11).any(|w| w == b"default_ttl") {
            assert_eq!(v["error"]["field"], "default_behavior.default_ttl", "the whole path of the field");
        }
    }

    // Raw garbage on the admin socket: an error or a closed connection, never a hang.
    let addr = e.admin.trim_start_matches("http://").to_string();
    for junk in [
        &b"\x16\x03\x01\x00\xa5garbage\r\n\r\n"[..],
        b"GET /v1/stats HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    ] {
        let mut s = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        s.write_all(junk).await.expect("write");
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the admin API answered or closed within 5 s");
        assert!(buf.is_empty() || buf.starts_with(b"HTTP/1.1 4"), "{:?}", String::from_utf8_lossy(&buf));
    }

    let (status, _, after) = admin_call(&c, "GET", &e.api("/v1/distributions"), None, &[]).await;
    assert_eq!(status, 200, "the API still answers");
    assert_eq!(before, after, "nothing was created or changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_count_as_transfer_to_the_origin_even_when_chunked() {
    let origin = TestOrigin::start().await;
    origin.set("/upload", Script::ok("stored").header("cache-control", "no-store"));
    let state = TempDir::new("upload");
    let methods = "allowed_methods = [\"GET\", \"HEAD\", \"OPTIONS\", \"PUT\", \"POST\", \"PATCH\", \"DELETE\"]";
    let e = controlled(&config_for(&origin.url(), methods), state.path()).await;
    let c = client();
    let to_origin = |v: &Value| v["items"][0]["data_transfer_out_to_origin_bytes"].as_u64().unwrap_or(0);
    let (_, _, v0) = admin_call(&c, "GET", &e.api("/v1/usage?distribution=ETEST"), None, &[]).await;
    // 100 pieces of 1,000 bytes, sent without a Content-Length.
    let pieces = (0..100).map(|i| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'a' + (i % 26) as u8; 1000])));
    let r = c
        .post(e.url("/upload"))
        .body(reqwest::Body::wrap_stream(ready_stream(pieces.collect())))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(origin.seen_for("/upload")[0].body.len(), 100_000, "the origin got the whole body");
    let (_, _, v1) = admin_call(&c, "GET", &e.api("/v1/usage?distribution=ETEST"), None, &[]).await;
    let sent = to_origin(&v1) - to_origin(&v0);
    assert!((100_000..102_000).contains(&sent), "the body and the head count: {sent}");
}

/// A stream of ready items (reqwest takes any `TryStream`).
fn ready_stream(
    items: Vec<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    struct Items(std::collections::VecDeque<Result<bytes::Bytes, std::io::Error>>);
    impl futures_core::Stream for Items {
        type Item = Result<bytes::Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.pop_front())
        }
    }
    Items(items.into())
}
