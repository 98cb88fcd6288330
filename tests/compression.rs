//! Compression of text responses (`compress = true`): one brotli or gzip
//! variant per object, made from the complete stored body.

mod common;
use bytes::Bytes;
use common::*;
use std::io::Read;
use std::time::Duration;

const ON: &str = "compress = true";

fn h<'a>(headers: &'a http::HeaderMap, name: &str) -> &'a str {
    headers.get(name).map(|v| v.to_str().expect("ASCII header")).unwrap_or("")
}

fn varies_on_accept_encoding(headers: &http::HeaderMap) -> bool {
    headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding"))
}

/// A VOD HLS playlist of about `segments` * 40 bytes (a day's TTL, so these
/// tests are about compression, not expiry).
fn playlist(segments: usize) -> Bytes {
    let mut s = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1000\n");
    for i in 0..segments {
        s.push_str(&format!("#EXTINF:2.000,\nsegment_{:06}.ts\n", 1000 + i));
    }
    s.push_str("#EXT-X-ENDLIST\n");
    s.into()
}

/// Text of exactly `len` bytes.
fn text(len: usize) -> Bytes {
    let line = "WEBVTT cue text: the quick brown fox jumps over the lazy dog.\n";
    line.repeat(len / line.len() + 1)[..len].to_string().into()
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b).read_to_end(&mut out).expect("valid gzip");
    out
}

fn unbrotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::BrotliDecompress(&mut &b[..], &mut out).expect("valid brotli");
    out
}

/// The body a response decodes to, by its Content-Encoding.
fn decoded(headers: &http::HeaderMap, body: &[u8]) -> Vec<u8> {
    match h(headers, "content-encoding") {
        "" => body.to_vec(),
        "br" => unbrotli(body),
        "gzip" => gunzip(body),
        other => panic!("unexpected Content-Encoding {other}"),
    }
}

/// Fills the cache for `path` and gives the fill a moment to finish storing.
async fn fill(c: &reqwest::Client, e: &mediaedge::RunningEdge, path: &str, want: &[u8]) {
    let (s, x, hd, b) = get(c, &url(e, path), &[("accept-encoding", "br, gzip")]).await;
    assert_eq!((s, x.as_str()), (200, "Miss"), "{path}");
    // The miss may be served identity while the body is still arriving; either
    // way it decodes to the origin's bytes.
    assert_eq!(decoded(&hd, &b), want, "{path}");
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn hits_are_served_brotli_gzip_or_identity_by_accept_encoding() {
    let (e, o) = edge_and_origin(ON).await;
    let body = playlist(200);
    o.set(
        "/live.m3u8",
        Script::ok(body.clone()).header("content-type", "application/vnd.apple.mpegurl").header("etag", "\"pl1\""),
    );
    let c = client();
    let u = url(&e, "/live.m3u8");
    fill(&c, &e, "/live.m3u8", &body).await;

    let (s, x, hd, br) = get(&c, &u, &[("accept-encoding", "br")]).await;
    assert_eq!((s, x.as_str(), h(&hd, "content-encoding")), (200, "Hit", "br"));
    assert!(varies_on_accept_encoding(&hd));
    assert_eq!(h(&hd, "content-length"), br.len().to_string());
    assert!(br.len() < body.len() / 2, "a playlist compresses well");
    assert_eq!(unbrotli(&br), body);
    let br_etag = h(&hd, "etag").to_string();
    assert!(br_etag.starts_with("W/"), "a compressed variant has a weak ETag: {br_etag}");
    assert_ne!(br_etag, "\"pl1\"");
    assert_eq!(h(&hd, "content-type"), "application/vnd.apple.mpegurl");

    let (s, x, hd, gz) = get(&c, &u, &[("accept-encoding", "gzip")]).await;
    assert_eq!((s, x.as_str(), h(&hd, "content-encoding")), (200, "Hit", "gzip"));
    assert!(varies_on_accept_encoding(&hd));
    assert_eq!(h(&hd, "content-length"), gz.len().to_string());
    assert_eq!(gunzip(&gz), body);
    let gz_etag = h(&hd, "etag").to_string();
    assert!(gz_etag.starts_with("W/"), "{gz_etag}");
    assert_ne!(gz_etag, "\"pl1\"");
    assert_ne!(gz_etag, br_etag, "each coding has its own ETag");

    let (s, x, hd, b) = get(&c, &u, &[]).await;
    assert_eq!((s, x.as_str(), h(&hd, "content-encoding")), (200, "Hit", ""));
    assert!(varies_on_accept_encoding(&hd), "identity varies on Accept-Encoding too");
    assert_eq!(h(&hd, "etag"), "\"pl1\"");
    assert_eq!(b, body);

    for (ae, want) in [
        ("br;q=0, gzip", "gzip"),
        ("gzip;q=0, br", "br"),
        ("gzip, deflate, br", "br"),
        ("x-gzip", "gzip"),
        ("*", "br"),
        ("identity", ""),
        ("deflate", ""),
        ("br;q=0, gzip;q=0", ""),
    ] {
        let (s, _, hd, b) = get(&c, &u, &[("accept-encoding", ae)]).await;
        assert_eq!((s, h(&hd, "content-encoding")), (200, want), "Accept-Encoding: {ae}");
        assert_eq!(decoded(&hd, &b), body, "Accept-Encoding: {ae}");
    }
    // The stored variants are reused: the same bytes each time.
    assert_eq!(get(&c, &u, &[("accept-encoding", "br")]).await.3, br);
    assert_eq!(get(&c, &u, &[("accept-encoding", "gzip")]).await.3, gz);

    // HEAD describes the variant it would send.
    let r = c.head(&u).header("accept-encoding", "br").send().await.unwrap();
    assert_eq!(r.headers().get("content-encoding").unwrap(), "br");
    assert_eq!(r.headers().get("content-length").unwrap(), &br.len().to_string());
    assert!(r.bytes().await.unwrap().is_empty());

    // One origin request for every coding, without Accept-Encoding.
    let seen = o.seen_for("/live.m3u8");
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].headers.contains_key("accept-encoding"), "the edge compresses, not the origin");
}

#[tokio::test]
async fn every_text_type_is_compressed() {
    let (e, o) = edge_and_origin(ON).await;
    let c = client();
    let types = [
        ("/a.m3u8", "application/vnd.apple.mpegurl"),
        ("/b.m3u8", "application/x-mpegURL"),
        ("/c.mpd", "application/dash+xml"),
        ("/d.vtt", "text/vtt"),
        ("/e.txt", "text/plain; charset=utf-8"),
        ("/f.css", "text/css"),
        ("/g.html", "text/html"),
        ("/h.json", "application/json"),
        ("/i.js", "application/javascript"),
        ("/j.xml", "application/xml"),
        ("/k.svg", "image/svg+xml"),
    ];
    for (path, ct) in types {
        let body = text(5000);
        o.set(path, Script::ok(body.clone()).header("content-type", ct).header("cache-control", "max-age=3600"));
        fill(&c, &e, path, &body).await;
        let (s, x, hd, b) = get(&c, &url(&e, path), &[("accept-encoding", "gzip")]).await;
        assert_eq!((s, x.as_str(), h(&hd, "content-encoding")), (200, "Hit", "gzip"), "{ct}");
        assert!(varies_on_accept_encoding(&hd), "{ct}");
        assert_eq!(gunzip(&b), body, "{ct}");
        let (_, _, hd, b) = get(&c, &url(&e, path), &[("accept-encoding", "br")]).await;
        assert_eq!(h(&hd, "content-encoding"), "br", "{ct}");
        assert_eq!(unbrotli(&b), body, "{ct}");
        assert_eq!(o.hits(path), 1, "{ct}");
    }
}

#[tokio::test]
async fn media_segments_and_other_binary_types_are_never_compressed() {
    let (e, o) = edge_and_origin(ON).await;
    let c = client();
    // Highly compressible bytes, so only the type keeps them identity.
    let body = text(20_000);
    for (path, ct) in [
        ("/s.ts", "video/mp2t"),
        ("/s.m4s", "video/iso.segment"),
        ("/s.mp4", "video/mp4"),
        ("/s.aac", "audio/aac"),
        ("/bin", "application/octet-stream"),
    ] {
        o.set(path, Script::ok(body.clone()).header("content-type", ct).header("cache-control", "max-age=3600"));
        fill(&c, &e, path, &body).await;
        let (s, x, hd, b) = get(&c, &url(&e, path), &[("accept-encoding", "br, gzip")]).await;
        assert_eq!((s, x.as_str(), h(&hd, "content-encoding")), (200, "Hit", ""), "{ct}");
        assert!(!varies_on_accept_encoding(&hd), "{ct}");
        assert_eq!(h(&hd, "content-length"), "20000", "{ct}");
        assert_eq!(b, body, "{ct}");
    }
    // No Content-Type at all: nothing to go on, so identity.
    o.set("/untyped", Script::ok(body.clone()));
    fill(&c, &e, "/untyped", &body).await;
    let (_, _, hd, b) = get(&c, &url(&e, "/untyped"), &[("accept-encoding", "br")]).await;
    assert_eq!((h(&hd, "content-encoding"), b.len()), ("", 20_000));
}

#[tokio::test]
async fn only_bodies_between_1000_and_10_000_000_bytes_are_compressed() {
    let (e, o) = edge_and_origin(ON).await;
    let c = client();
    for (len, want) in [(10, ""), (999, ""), (1000, "br"), (200_000, "br"), (10_000_000, "br"), (10_000_001, "")] {
        let path = format!("/len{len}.vtt");
        let body = text(len);
        o.set(&path, Script::ok(body.clone()).header("content-type", "text/vtt"));
        fill(&c, &e, &path, &body).await;
        let (s, x, hd, b) = get(&c, &url(&e, &path), &[("accept-encoding", "br")]).await;
        assert_eq!((s, x.as_str(), h(&hd, "content-encoding")), (200, "Hit", want), "{len} bytes");
        assert_eq!(decoded(&hd, &b), body, "{len} bytes");
    }
}

#[tokio::test]
async fn an_already_encoded_origin_response_is_served_as_stored() {
    let (e, o) = edge_and_origin(ON).await;
    let c = client();
    let plain = text(8000);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &plain).unwrap();
    let gz = Bytes::from(enc.finish().unwrap());
    o.set(
        "/pre.json",
        Script::ok(gz.clone()).header("content-type", "application/json").header("content-encoding", "gzip"),
    );
    let (s, _, hd, b) = get(&c, &url(&e, "/pre.json"), &[("accept-encoding", "gzip")]).await;
    assert_eq!((s, h(&hd, "content-encoding")), (200, "gzip"));
    assert_eq!(b, gz);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for ae in ["gzip", "gzip, deflate", "x-gzip"] {
        let (s, x, hd, b) = get(&c, &url(&e, "/pre.json"), &[("accept-encoding", ae)]).await;
        assert_eq!((s, x.as_str(), h(&hd, "content-encoding")), (200, "Hit", "gzip"), "{ae}");
        assert_eq!(h(&hd, "content-length"), gz.len().to_string(), "{ae}");
        assert_eq!(b, gz, "the stored bytes, never recompressed ({ae})");
    }
    assert_eq!(gunzip(&gz), plain);
    assert_eq!(o.hits("/pre.json"), 1);
    // The encoded response varies on Accept-Encoding (added by the edge), so a
    // viewer accepting other codings is not handed the gzip variant from cache.
    assert_eq!(get(&c, &url(&e, "/pre.json"), &[("accept-encoding", "br")]).await.1, "Miss");
    assert_eq!(o.hits("/pre.json"), 2);
}

#[tokio::test]
async fn range_requests_get_identity_bytes() {
    let (e, o) = edge_and_origin(ON).await;
    let c = client();
    let body = playlist(300);
    o.set("/r.m3u8", Script::ok(body.clone()).header("content-type", "application/vnd.apple.mpegurl"));
    fill(&c, &e, "/r.m3u8", &body).await;
    let (s, x, hd, b) = get(&c, &url(&e, "/r.m3u8"), &[("accept-encoding", "br"), ("range", "bytes=0-99")]).await;
    assert_eq!((s, x.as_str(), h(&hd, "content-encoding")), (206, "Hit", ""));
    assert_eq!(h(&hd, "content-range"), format!("bytes 0-99/{}", body.len()));
    assert_eq!(&b[..], &body[..100]);
    let (s, _, hd, b) = get(&c, &url(&e, "/r.m3u8"), &[("accept-encoding", "gzip"), ("range", "bytes=0-9,-10")]).await;
    assert_eq!((s, h(&hd, "content-encoding")), (206, ""));
    assert!(h(&hd, "content-type").starts_with("multipart/byteranges"));
    assert!(b.windows(10).any(|w| w == &body[..10]) && b.windows(10).any(|w| w == &body[body.len() - 10..]));
    assert_eq!(o.hits("/r.m3u8"), 1);
}

#[tokio::test]
async fn nothing_is_compressed_by_default() {
    let (e, o) = edge_and_origin("").await;
    let c = client();
    let body = playlist(200);
    o.set("/off.m3u8", Script::ok(body.clone()).header("content-type", "application/vnd.apple.mpegurl"));
    fill(&c, &e, "/off.m3u8", &body).await;
    for ae in ["br", "gzip", "br, gzip, deflate", "*"] {
        let (s, x, hd, b) = get(&c, &url(&e, "/off.m3u8"), &[("accept-encoding", ae)]).await;
        assert_eq!((s, x.as_str(), h(&hd, "content-encoding")), (200, "Hit", ""), "{ae}");
        assert!(!varies_on_accept_encoding(&hd), "{ae}");
        assert_eq!(b, body, "{ae}");
    }
    assert_eq!(o.hits("/off.m3u8"), 1);
    // Without edge compression the viewer's codings reach the origin, normalized.
    let ae = o.seen_for("/off.m3u8")[0].headers.get("accept-encoding").cloned();
    assert!(
        ae.is_none() || ae.as_ref().is_some_and(|v| ["br, gzip", "br", "gzip"].contains(&v.to_str().unwrap())),
        "{ae:?}"
    );
}

#[tokio::test]
async fn conditional_requests_on_compressed_variants() {
    let (e, o) = edge_and_origin(ON).await;
    let c = client();
    let body = playlist(200);
    o.set(
        "/cond.m3u8",
        Script::ok(body.clone()).header("content-type", "application/vnd.apple.mpegurl").header("etag", "\"c1\""),
    );
    fill(&c, &e, "/cond.m3u8", &body).await;
    let u = url(&e, "/cond.m3u8");
    let (_, _, hd, _) = get(&c, &u, &[("accept-encoding", "br")]).await;
    let br_etag = h(&hd, "etag").to_string();
    // A viewer holding the identity representation revalidates with its ETag.
    let (s, x, _, b) = get(&c, &u, &[("if-none-match", "\"c1\"")]).await;
    assert_eq!((s, x.as_str(), b.len()), (304, "Hit", 0));
    // A viewer holding the brotli variant revalidates with the variant's ETag.
    let (s, _, hd, b) = get(&c, &u, &[("accept-encoding", "br"), ("if-none-match", &br_etag)]).await;
    assert_eq!((s, b.len()), (304, 0), "the brotli variant's own ETag validates it");
    assert_eq!(h(&hd, "etag"), br_etag);
    assert!(varies_on_accept_encoding(&hd));
    // The gzip variant's ETag does not validate the brotli one this request selects.
    let (_, _, hd, _) = get(&c, &u, &[("accept-encoding", "gzip")]).await;
    let gz_etag = h(&hd, "etag").to_string();
    let (s, _, hd, b) = get(&c, &u, &[("accept-encoding", "br"), ("if-none-match", &gz_etag)]).await;
    assert_eq!((s, h(&hd, "content-encoding")), (200, "br"));
    assert_eq!(unbrotli(&b), body);
    let (s, _, hd, _) = get(&c, &u, &[("accept-encoding", "gzip"), ("if-none-match", &gz_etag)]).await;
    assert_eq!((s, h(&hd, "etag")), (304, gz_etag.as_str()));
    // A different ETag: the full compressed variant.
    let (s, _, hd, b) = get(&c, &u, &[("accept-encoding", "br"), ("if-none-match", "\"old\"")]).await;
    assert_eq!((s, h(&hd, "content-encoding")), (200, "br"));
    assert_eq!(unbrotli(&b), body);
    assert_eq!(o.hits("/cond.m3u8"), 1);
}

#[tokio::test]
async fn origin_encoded_variants_reach_only_viewers_that_accept_them() {
    // Edge compression off: the viewer's codings go to the origin, normalized.
    let (e, o) = edge_and_origin("").await;
    let c = client();
    let text = playlist(200);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &text).unwrap();
    let gz = bytes::Bytes::from(gz.finish().unwrap());
    // A careless origin: gzip, and no Vary.
    o.set(
        "/pre.m3u8",
        Script::ok(gz.clone())
            .header("content-type", "application/vnd.apple.mpegurl")
            .header("content-encoding", "gzip"),
    );
    let u = url(&e, "/pre.m3u8");
    let (s, x, hd, b) = get(&c, &u, &[("accept-encoding", "gzip, deflate")]).await;
    assert_eq!((s, x.as_str(), h(&hd, "content-encoding")), (200, "Miss", "gzip"));
    assert_eq!(b, gz);
    assert_eq!(o.seen_for("/pre.m3u8")[0].headers.get("accept-encoding").unwrap(), "gzip");
    assert!(varies_on_accept_encoding(&hd), "the edge adds the Vary the origin forgot");
    // Same codings, other spelling: the same variant.
    assert_eq!(get(&c, &u, &[("accept-encoding", "deflate, gzip;q=0.8")]).await.1, "Hit");
    // A viewer that accepts no gzip is never served the stored gzip variant.
    let (_, x, _, _) = get(&c, &u, &[]).await;
    assert_eq!(x, "Miss");
    assert!(!o.seen_for("/pre.m3u8")[1].headers.contains_key("accept-encoding"));
    assert_eq!(o.hits("/pre.m3u8"), 2);
}
