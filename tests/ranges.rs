//! `Range` requests (RFC 9110 §14), always answered from the cache: the edge
//! fetches whole objects and cuts ranges itself, also while a fill is running.

mod common;
use bytes::Bytes;
use common::*;
use std::time::Duration;

/// A 1 MiB body sent in 10 pieces 200 ms apart: the fill takes about 1.8 s.
const SLOW_LEN: usize = 1 << 20;

fn slow_script(seed: u64) -> Script {
    Script::ok(payload(SLOW_LEN, seed)).header("content-type", "video/mp4").pieces(10, Duration::from_millis(200))
}

type Got = ((u16, String, http::HeaderMap, Bytes), std::time::Instant);

/// Awaits a spawned request, bounded in time.
async fn wait(t: tokio::task::JoinHandle<Got>) -> Got {
    tokio::time::timeout(Duration::from_secs(20), t).await.expect("the fill ends").expect("the request task")
}

fn h<'a>(headers: &'a http::HeaderMap, name: &str) -> &'a str {
    headers.get(name).map(|v| v.to_str().expect("ASCII header")).unwrap_or("")
}

/// One part of a `multipart/byteranges` body.
#[derive(Debug)]
struct Part {
    content_type: String,
    content_range: String,
    body: Bytes,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses a `multipart/byteranges` response body, checking its framing.
fn multipart(content_type: &str, body: &Bytes) -> Vec<Part> {
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("not multipart/byteranges: {content_type}"));
    assert!(!boundary.is_empty());
    let delim = format!("--{boundary}").into_bytes();
    let next_delim = [&b"\r\n"[..], &delim].concat();
    assert!(body.starts_with(&delim), "the body opens with the boundary");
    let mut pos = delim.len();
    let mut parts = Vec::new();
    loop {
        if body[pos..].starts_with(b"--") {
            assert_eq!(&body[pos..], b"--\r\n", "the close delimiter ends the body");
            return parts;
        }
        assert!(body[pos..].starts_with(b"\r\n"), "a CRLF follows each boundary");
        pos += 2;
        let head_len = find(&body[pos..], b"\r\n\r\n").expect("part headers end");
        let head = std::str::from_utf8(&body[pos..pos + head_len]).expect("ASCII part headers");
        let mut part = Part { content_type: String::new(), content_range: String::new(), body: Bytes::new() };
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(':').expect("a header line");
            match k.trim().to_ascii_lowercase().as_str() {
                "content-type" => part.content_type = v.trim().to_string(),
                "content-range" => part.content_range = v.trim().to_string(),
                other => panic!("unexpected part header {other}"),
            }
        }
        let start = pos + head_len + 4;
        let len = find(&body[start..], &next_delim).expect("the next boundary");
        part.body = body.slice(start..start + len);
        parts.push(part);
        pos = start + len + next_delim.len();
    }
}

#[tokio::test]
async fn single_suffix_and_open_ranges_are_cut_from_the_cached_object() {
    let (e, o) = edge_and_origin("").await;
    let p = payload(10_000, 1);
    o.set("/v.mp4", Script::ok(p.clone()).header("content-type", "video/mp4").header("etag", "\"r1\""));
    let c = client();
    let u = url(&e, "/v.mp4");
    let (s, x, hd, b) = get(&c, &u, &[]).await;
    assert_eq!((s, x.as_str(), b.len()), (200, "Miss", 10_000));
    assert_eq!(h(&hd, "accept-ranges"), "bytes", "a 200 advertises byte ranges");
    let (s, x, hd, _) = get(&c, &u, &[]).await;
    assert_eq!((s, x.as_str(), h(&hd, "accept-ranges")), (200, "Hit", "bytes"));

    let cases: &[(&str, usize, usize)] = &[
        ("bytes=0-99", 0, 99),
        ("bytes=1000-1999", 1000, 1999),
        ("bytes=5000-5000", 5000, 5000),
        ("bytes=-500", 9500, 9999),
        ("bytes=9990-", 9990, 9999),
        ("bytes=0-", 0, 9999),
        // A last position past the end is clamped; so is a suffix longer than the body.
        ("bytes=9000-20000", 9000, 9999),
        ("bytes=-20000", 0, 9999),
        (" bytes = 10 - 19 ", 10, 19),
    ];
    for &(range, first, last) in cases {
        let (s, x, hd, b) = get(&c, &u, &[("range", range)]).await;
        assert_eq!((s, x.as_str()), (206, "Hit"), "{range}");
        assert_eq!(h(&hd, "content-range"), format!("bytes {first}-{last}/10000"), "{range}");
        assert_eq!(h(&hd, "content-length"), (last - first + 1).to_string(), "{range}");
        assert_eq!(h(&hd, "content-type"), "video/mp4", "{range}");
        assert_eq!(h(&hd, "etag"), "\"r1\"", "{range}");
        assert_eq!(&b[..], &p[first..=last], "{range}");
    }
    let seen = o.seen_for("/v.mp4");
    assert_eq!(seen.len(), 1, "every range came from the cache");
    assert!(!seen[0].headers.contains_key("range"));
}

#[tokio::test]
async fn multiple_ranges_are_multipart_and_overlapping_ones_merge() {
    let (e, o) = edge_and_origin("").await;
    let p = payload(10_000, 2);
    o.set("/m.mp4", Script::ok(p.clone()).header("content-type", "video/mp4"));
    let c = client();
    let u = url(&e, "/m.mp4");
    get(&c, &u, &[]).await;

    // Three disjoint ranges: three parts, in request order.
    let (s, x, hd, b) = get(&c, &u, &[("range", "bytes=0-9,100-199,-50")]).await;
    assert_eq!((s, x.as_str()), (206, "Hit"));
    assert!(!hd.contains_key("content-range"), "a multipart 206 has Content-Range only in its parts");
    assert_eq!(h(&hd, "content-length"), b.len().to_string());
    let parts = multipart(h(&hd, "content-type"), &b);
    let want = [(0, 9), (100, 199), (9950, 9999)];
    assert_eq!(parts.len(), want.len());
    for (part, (first, last)) in parts.iter().zip(want) {
        assert_eq!(part.content_type, "video/mp4");
        assert_eq!(part.content_range, format!("bytes {first}-{last}/10000"));
        assert_eq!(&part.body[..], &p[first..=last]);
    }

    // Overlapping ranges merge into one: a plain 206, not multipart.
    let (s, _, hd, b) = get(&c, &u, &[("range", "bytes=0-10,5-20")]).await;
    assert_eq!((s, h(&hd, "content-range"), h(&hd, "content-type")), (206, "bytes 0-20/10000", "video/mp4"));
    assert_eq!(&b[..], &p[0..=20]);
    // So do adjacent ones, and repeats of the same range.
    let (s, _, hd, b) = get(&c, &u, &[("range", "bytes=0-9,10-19")]).await;
    assert_eq!((s, h(&hd, "content-range")), (206, "bytes 0-19/10000"));
    assert_eq!(&b[..], &p[0..=19]);
    let (s, _, hd, b) = get(&c, &u, &[("range", "bytes=0-,0-,0-,0-")]).await;
    assert_eq!((s, h(&hd, "content-range"), b.len()), (206, "bytes 0-9999/10000", 10_000));

    // Merging leaves the disjoint ones as parts.
    let (s, _, hd, b) = get(&c, &u, &[("range", "bytes=0-10,5-20,100-110")]).await;
    assert_eq!(s, 206);
    let parts = multipart(h(&hd, "content-type"), &b);
    let got: Vec<&str> = parts.iter().map(|p| p.content_range.as_str()).collect();
    assert_eq!(got, ["bytes 0-20/10000", "bytes 100-110/10000"]);
    assert_eq!(&parts[0].body[..], &p[0..=20]);
    assert_eq!(&parts[1].body[..], &p[100..=110]);

    // An unsatisfiable spec among satisfiable ones is dropped.
    let (s, _, hd, b) = get(&c, &u, &[("range", "bytes=20000-30000,0-9")]).await;
    assert_eq!((s, h(&hd, "content-range")), (206, "bytes 0-9/10000"));
    assert_eq!(&b[..], &p[0..=9]);

    // 32 ranges is the most honoured: 32 one-byte parts.
    let many: Vec<String> = (0..32).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
    let (s, _, hd, b) = get(&c, &u, &[("range", &format!("bytes={}", many.join(",")))]).await;
    assert_eq!(s, 206);
    let parts = multipart(h(&hd, "content-type"), &b);
    assert_eq!(parts.len(), 32);
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(part.content_range, format!("bytes {0}-{0}/10000", i * 2));
        assert_eq!(&part.body[..], &p[i * 2..=i * 2]);
    }
    assert_eq!(o.hits("/m.mp4"), 1);
}

#[tokio::test]
async fn if_range_applies_the_range_only_for_a_matching_strong_validator() {
    let (e, o) = edge_and_origin("").await;
    let p = payload(5000, 3);
    let lm = "Sat, 01 Jan 2022 00:00:00 GMT";
    o.set("/ir", Script::ok(p.clone()).header("etag", "\"strong1\"").header("last-modified", lm));
    o.set("/weak", Script::ok(p.clone()).header("etag", "W/\"w1\""));
    let c = client();
    let (u, weak) = (url(&e, "/ir"), url(&e, "/weak"));
    get(&c, &u, &[]).await;
    get(&c, &weak, &[]).await;

    let (s, x, hd, b) = get(&c, &u, &[("range", "bytes=0-99"), ("if-range", "\"strong1\"")]).await;
    assert_eq!((s, x.as_str(), h(&hd, "content-range")), (206, "Hit", "bytes 0-99/5000"));
    assert_eq!(&b[..], &p[..100]);
    // A changed representation, or a weak validator: the whole body.
    for if_range in ["\"other\"", "W/\"strong1\""] {
        let (s, _, hd, b) = get(&c, &u, &[("range", "bytes=0-99"), ("if-range", if_range)]).await;
        assert_eq!((s, b.len()), (200, 5000), "{if_range}");
        assert!(!hd.contains_key("content-range"), "{if_range}");
        assert_eq!(b, p, "{if_range}");
    }
    // A stored weak ETag never satisfies If-Range.
    let (s, _, _, b) = get(&c, &weak, &[("range", "bytes=0-99"), ("if-range", "W/\"w1\"")]).await;
    assert_eq!((s, b.len()), (200, 5000));
    // A date: only the exact Last-Modified (strong, since Date is much later).
    let (s, _, hd, _) = get(&c, &u, &[("range", "bytes=0-99"), ("if-range", lm)]).await;
    assert_eq!((s, h(&hd, "content-range")), (206, "bytes 0-99/5000"));
    let (s, _, _, b) = get(&c, &u, &[("range", "bytes=0-99"), ("if-range", "Sun, 02 Jan 2022 00:00:00 GMT")]).await;
    assert_eq!((s, b.len()), (200, 5000));
    assert_eq!((o.hits("/ir"), o.hits("/weak")), (1, 1));
}

#[tokio::test]
async fn unsatisfiable_ranges_get_416_with_the_length() {
    let (e, o) = edge_and_origin("").await;
    o.set("/small", Script::ok(payload(1000, 4)));
    let c = client();
    let u = url(&e, "/small");
    // Even on a miss: the 416 comes from the object being stored.
    let (s, x, hd, _) = get(&c, &u, &[("range", "bytes=99999-")]).await;
    assert_eq!((s, x.as_str(), h(&hd, "content-range")), (416, "Miss", "bytes */1000"));
    for range in ["bytes=99999-", "bytes=1000-1000", "bytes=-0", "bytes=5000-6000,7000-"] {
        let (s, x, hd, b) = get(&c, &u, &[("range", range)]).await;
        assert_eq!((s, x.as_str(), h(&hd, "content-range")), (416, "Hit", "bytes */1000"), "{range}");
        assert_eq!(h(&hd, "content-length"), b.len().to_string(), "{range}");
    }
    let (s, x, _, b) = get(&c, &u, &[]).await;
    assert_eq!((s, x.as_str(), b.len()), (200, "Hit", 1000));
    assert_eq!(o.hits("/small"), 1);
}

#[tokio::test]
async fn invalid_range_headers_are_ignored() {
    let (e, o) = edge_and_origin("").await;
    let p = payload(2000, 5);
    o.set("/inv", Script::ok(p.clone()));
    let c = client();
    let u = url(&e, "/inv");
    get(&c, &u, &[]).await;
    let too_many = format!("bytes={}", (0..33).map(|i| format!("{}-{}", i * 2, i * 2)).collect::<Vec<_>>().join(","));
    for range in [
        "bytes=5-2",
        "items=0-1",
        "bytes=abc",
        "bytes=",
        "bytes=-",
        "bytes=1-2-3",
        "0-99",
        "bytes=99999999999999999999-",
        &too_many,
    ] {
        let (s, x, hd, b) = get(&c, &u, &[("range", range)]).await;
        assert_eq!((s, x.as_str()), (200, "Hit"), "{range}");
        assert!(!hd.contains_key("content-range"), "{range}");
        assert_eq!(b, p, "{range}");
    }
    assert_eq!(o.hits("/inv"), 1);
}

#[tokio::test]
async fn a_range_on_a_miss_fetches_the_whole_object_once() {
    let (e, o) = edge_and_origin("").await;
    let p = payload(50_000, 6);
    o.set("/miss.mp4", Script::ok(p.clone()).header("content-type", "video/mp4"));
    let c = client();
    let u = url(&e, "/miss.mp4");
    let (s, x, hd, b) = get(&c, &u, &[("range", "bytes=100-199"), ("if-range", "\"x\"")]).await;
    // If-Range never reaches the origin; against the stored object "x" does not
    // match (no ETag), so this one is a 200.
    assert_eq!((s, x.as_str(), b.len()), (200, "Miss", 50_000));
    assert!(!hd.contains_key("content-range"));
    let seen = o.seen_for("/miss.mp4");
    assert_eq!(seen.len(), 1);
    for name in ["range", "if-range"] {
        assert!(!seen[0].headers.contains_key(name), "{name} is not sent to the origin");
    }

    o.set("/miss2.mp4", Script::ok(p.clone()).header("content-type", "video/mp4"));
    let u = url(&e, "/miss2.mp4");
    let (s, x, hd, b) = get(&c, &u, &[("range", "bytes=100-199")]).await;
    assert_eq!((s, x.as_str(), h(&hd, "content-range")), (206, "Miss", "bytes 100-199/50000"));
    assert_eq!(&b[..], &p[100..200]);
    let seen = o.seen_for("/miss2.mp4");
    assert_eq!((seen.len(), seen[0].method.as_str()), (1, "GET"));
    assert!(!seen[0].headers.contains_key("range"), "the edge fetches the whole object");
    let (s, x, _, b) = get(&c, &u, &[]).await;
    assert_eq!((s, x.as_str()), (200, "Hit"));
    assert_eq!(b, p);
    assert_eq!(o.hits("/miss2.mp4"), 1);

    // `bytes=0-` on a miss is still a 206.
    o.set("/miss3.mp4", Script::ok(p.clone()).header("content-type", "video/mp4"));
    let (s, x, hd, b) = get(&c, &url(&e, "/miss3.mp4"), &[("range", "bytes=0-")]).await;
    assert_eq!((s, x.as_str(), h(&hd, "content-range")), (206, "Miss", "bytes 0-49999/50000"));
    assert_eq!(b, p);

    // A range on a slow miss returns early; the fill goes on without the viewer.
    o.set("/slow.mp4", slow_script(7));
    let u = url(&e, "/slow.mp4");
    let (s, x, hd, b) = get(&c, &u, &[("range", "bytes=0-99")]).await;
    assert_eq!((s, x.as_str(), h(&hd, "content-range")), (206, "Miss", "bytes 0-99/1048576"));
    assert_eq!(&b[..], &payload(SLOW_LEN, 7)[..100]);
    let (s, _, _, b) = get(&c, &u, &[]).await;
    assert_eq!((s, b.len()), (200, SLOW_LEN));
    assert_eq!(b, payload(SLOW_LEN, 7));
    assert_eq!(get(&c, &u, &[]).await.1, "Hit");
    assert_eq!(o.hits("/slow.mp4"), 1);
}

#[tokio::test]
async fn a_range_inside_a_filling_object_is_served_before_the_fill_ends() {
    let (e, o) = edge_and_origin("").await;
    o.set("/fill.mp4", slow_script(8));
    let p = payload(SLOW_LEN, 8);
    let c = client();
    let u = url(&e, "/fill.mp4");
    let full = {
        let (c, u) = (c.clone(), u.clone());
        tokio::spawn(async move {
            let r = get(&c, &u, &[]).await;
            (r, now())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (s, _, hd, b) = get(&c, &u, &[("range", "bytes=0-99")]).await;
    let range_done = now();
    assert_eq!((s, h(&hd, "content-range"), h(&hd, "content-length")), (206, "bytes 0-99/1048576", "100"));
    assert_eq!(&b[..], &p[..100]);
    let ((s, _, _, b), full_done) =
        tokio::time::timeout(Duration::from_secs(20), full).await.expect("the fill ends").unwrap();
    assert_eq!(s, 200);
    assert_eq!(b, p);
    assert!(
        full_done >= range_done + Duration::from_secs(1),
        "the range completed {:?} before the full body",
        full_done.saturating_duration_since(range_done)
    );
    assert_eq!(o.hits("/fill.mp4"), 1, "the range joined the running fill");
}

#[tokio::test]
async fn a_closed_range_on_a_filling_chunked_object_has_an_unknown_length() {
    let (e, o) = edge_and_origin("").await;
    o.set("/chunked.mp4", slow_script(9).chunked());
    let p = payload(SLOW_LEN, 9);
    let c = client();
    let u = url(&e, "/chunked.mp4");
    let spawn_get = |range: Option<&'static str>| {
        let (c, u) = (c.clone(), u.clone());
        tokio::spawn(async move {
            let headers: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
            let r = get(&c, &u, &headers).await;
            (r, now())
        })
    };
    let full = spawn_get(None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // These need the whole body (a suffix, a range past the end, several
    // ranges), so they wait for its length.
    let suffix = spawn_get(Some("bytes=-100"));
    let past_end = spawn_get(Some("bytes=1048000-2000000"));
    let multi = spawn_get(Some("bytes=0-9,20-29"));
    let (s, _, hd, b) = get(&c, &u, &[("range", "bytes=0-99")]).await;
    let range_done = now();
    assert_eq!((s, h(&hd, "content-range"), h(&hd, "content-length")), (206, "bytes 0-99/*", "100"));
    assert_eq!(&b[..], &p[..100]);

    let ((s, _, hd, b), full_done) = wait(full).await;
    assert_eq!((s, b.len()), (200, SLOW_LEN));
    assert!(!hd.contains_key("content-length"), "the length was unknown when the response started");
    assert_eq!(b, p);
    assert!(
        full_done >= range_done + Duration::from_secs(1),
        "the range completed {:?} before the full body",
        full_done.saturating_duration_since(range_done)
    );
    let ((s, _, hd, b), _) = wait(suffix).await;
    assert_eq!((s, h(&hd, "content-range")), (206, "bytes 1048476-1048575/1048576"));
    assert_eq!(&b[..], &p[SLOW_LEN - 100..]);
    let ((s, _, hd, b), _) = wait(past_end).await;
    assert_eq!((s, h(&hd, "content-range")), (206, "bytes 1048000-1048575/1048576"));
    assert_eq!(&b[..], &p[1_048_000..]);
    let ((s, _, hd, b), _) = wait(multi).await;
    assert_eq!(s, 206);
    let parts = multipart(h(&hd, "content-type"), &b);
    let got: Vec<&str> = parts.iter().map(|p| p.content_range.as_str()).collect();
    assert_eq!(got, ["bytes 0-9/1048576", "bytes 20-29/1048576"]);
    assert_eq!((&parts[0].body[..], &parts[1].body[..]), (&p[0..10], &p[20..30]));

    // Once stored, the same range names the length.
    let (s, x, hd, b) = get(&c, &u, &[("range", "bytes=0-99")]).await;
    assert_eq!((s, x.as_str(), h(&hd, "content-range")), (206, "Hit", "bytes 0-99/1048576"));
    assert_eq!(&b[..], &p[..100]);
    assert_eq!(o.hits("/chunked.mp4"), 1);
}

#[tokio::test]
async fn uncacheable_responses_pass_the_range_through() {
    let (e, o) = edge_and_origin("").await;
    let p = payload(3000, 10);
    o.set("/ns", Script::ok(p.clone()).header("cache-control", "no-store"));
    let c = client();
    let u = url(&e, "/ns");
    for _ in 0..2 {
        // The test origin ignores Range: its full 200 is what the viewer gets.
        let (s, x, hd, b) = get(&c, &u, &[("range", "bytes=0-9")]).await;
        assert_eq!((s, x.as_str()), (200, "Miss"));
        assert!(!hd.contains_key("content-range"));
        assert_eq!(b, p);
    }
    let seen = o.seen_for("/ns");
    assert_eq!(seen.len(), 2, "nothing was stored");
    // Once the edge knows the response is uncacheable, the Range goes along.
    assert_eq!(seen[1].headers.get("range").map(|v| v.to_str().unwrap()), Some("bytes=0-9"));

    // A cached non-200 ignores Range too.
    o.set("/gone", Script::ok("not here").status(404));
    get(&c, &url(&e, "/gone"), &[]).await;
    let (s, x, _, b) = get(&c, &url(&e, "/gone"), &[("range", "bytes=0-2")]).await;
    assert_eq!((s, x.as_str(), &b[..]), (404, "Hit", &b"not here"[..]));
}

#[tokio::test]
async fn head_with_range_sends_headers_only() {
    let (e, o) = edge_and_origin("").await;
    o.set("/hd.mp4", Script::ok(payload(4000, 11)).header("content-type", "video/mp4"));
    let c = client();
    let u = url(&e, "/hd.mp4");
    // A HEAD miss with a range: the fill is a whole GET.
    let r = c.head(&u).header("range", "bytes=0-99").send().await.unwrap();
    assert_eq!((r.status().as_u16(), x_cache(&r).as_str()), (206, "Miss"));
    assert_eq!(r.headers().get("content-range").unwrap(), "bytes 0-99/4000");
    assert!(r.bytes().await.unwrap().is_empty());
    let seen = o.seen_for("/hd.mp4");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert!(!seen[0].headers.contains_key("range"));

    let r = c.head(&u).header("range", "bytes=-1000").send().await.unwrap();
    assert_eq!((r.status().as_u16(), x_cache(&r).as_str()), (206, "Hit"));
    assert_eq!(r.headers().get("content-range").unwrap(), "bytes 3000-3999/4000");
    assert_eq!(r.headers().get("content-length").unwrap(), "1000");
    assert!(r.bytes().await.unwrap().is_empty());

    let r = c.head(&u).header("range", "bytes=0-9,100-109").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 206);
    let ct = r.headers().get("content-type").unwrap().to_str().unwrap().to_string();
    assert!(ct.starts_with("multipart/byteranges; boundary="), "{ct}");
    assert!(r.bytes().await.unwrap().is_empty());

    let r = c.head(&u).header("range", "bytes=5000-").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 416);
    assert_eq!(r.headers().get("content-range").unwrap(), "bytes */4000");
    assert!(r.bytes().await.unwrap().is_empty());
    assert_eq!(o.hits("/hd.mp4"), 1);
}
