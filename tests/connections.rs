//! Viewer connections are held to their deadlines and capped: silent, slow and
//! idle connections are closed, the cap is never exceeded, and oversized heads
//! get 431 on HTTP/1.1 and HTTP/2 alike. Over real sockets; time bounds here only
//! mean "it hung".

mod common;
use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longer than any deadline configured below: past it, the edge hung.
const HUNG: Duration = Duration::from_secs(20);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The edge with short connection deadlines in front of a fresh origin.
async fn edge_with(server: &str) -> (mediaedge::RunningEdge, TestOrigin) {
    let origin = TestOrigin::start().await;
    let cfg = format!(
        "[server]\nheader_read_timeout = \"60s\"\nhttp2_ping_interval = \"0s\"\n{server}\n{}",
        config_for(&origin.url(), "")
    );
    (edge(&cfg).await, origin)
}

/// Reads until the edge closes the connection; returns what it sent.
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(HUNG, s.read(&mut buf)).await {
            Err(_) => panic!("the edge kept the connection open; it sent {} bytes", got.len()),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// HTTP/2 frames (type, flags, stream, payload) in `bytes`.
fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 9 {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        if bytes.len() < 9 + len {
            break;
        }
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        out.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
        bytes = &bytes[9 + len..];
    }
    out
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A GET for `path` on stream 1: HPACK static-table method, scheme, and
/// literal :path and :authority.
fn h2_get(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 9]);
    block.extend_from_slice(b"localhost");
    // END_STREAM | END_HEADERS
    frame(0x1, 0x5, 1, &block)
}

const GOAWAY: u8 = 0x7;

/// Waits until the edge counts no open connection (its count drops just after the socket closes).
async fn all_closed(e: &mediaedge::RunningEdge) {
    let t = tokio::time::Instant::now();
    while e.connections.open() > 0 {
        assert!(t.elapsed() < HUNG, "the edge still counts {} open connections", e.connections.open());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_silent_connection_is_closed_by_the_head_deadline() {
    let (e, _o) = edge_with("request_head_timeout = \"1s\"").await;
    let mut s = TcpStream::connect(e.addr()).await.unwrap();
    let got = until_closed(&mut s).await;
    assert!(got.is_empty(), "nothing is owed to a silent connection: {:?}", String::from_utf8_lossy(&got));
    all_closed(&e).await;
}

#[tokio::test]
async fn half_an_http2_preface_is_closed_by_the_head_deadline() {
    let (e, _o) = edge_with("request_head_timeout = \"1s\"").await;
    let mut s = TcpStream::connect(e.addr()).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let got = until_closed(&mut s).await;
    assert!(got.is_empty(), "{got:?}");
}

#[tokio::test]
async fn a_full_http2_preface_without_headers_is_closed_by_the_head_deadline() {
    let (e, _o) = edge_with("request_head_timeout = \"1s\"").await;
    let mut s = TcpStream::connect(e.addr()).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    let got = until_closed(&mut s).await;
    // The edge spoke HTTP/2 (its SETTINGS) but served nothing.
    let f = frames(&got);
    assert_eq!(f.first().map(|f| f.0), Some(0x4), "SETTINGS first: {f:?}");
    assert!(f.iter().all(|f| f.0 != 0x1), "no HEADERS were owed: {f:?}");
}

#[tokio::test]
async fn a_slow_loris_head_is_closed_at_the_deadline_from_accept() {
    // hyper's own header timeout is 60 s here: only the edge's deadline can close it.
    let (e, o) = edge_with("request_head_timeout = \"1s\"").await;
    o.set("/x", Script::ok("x"));
    let mut head = b"GET /x HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    head.extend(std::iter::repeat_n(b'a', 400));
    let mut s = TcpStream::connect(e.addr()).await.unwrap();
    let mut sent = 0;
    let mut buf = [0u8; 1024];
    let closed = loop {
        if sent == head.len() {
            break false;
        }
        if s.write_all(&head[sent..sent + 1]).await.is_err() {
            break true;
        }
        sent += 1;
        // A byte every 50 ms: the whole head would take 20 s.
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => panic!("the edge answered a head never finished: {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
    };
    assert!(closed, "the head was sent to its end ({sent} bytes) without the edge closing");
    assert_eq!(o.hits("/x"), 0);
}

#[tokio::test]
async fn an_idle_http2_connection_gets_goaway_after_its_response() {
    let (e, o) = edge_with("request_head_timeout = \"5s\"\nhttp2_idle_timeout = \"1s\"").await;
    o.set("/a", Script::ok("hello"));
    let mut s = TcpStream::connect(e.addr()).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    s.write_all(&h2_get("/a")).await.unwrap();
    let got = until_closed(&mut s).await;
    let f = frames(&got);
    let headers = f.iter().position(|f| f.0 == 0x1 && f.2 == 1).expect("response HEADERS");
    let data_end = f.iter().position(|f| f.0 == 0x0 && f.2 == 1 && f.1 & 1 == 1).expect("response DATA end");
    let goaway = f.iter().position(|f| f.0 == GOAWAY).expect("GOAWAY before close");
    assert!(headers < data_end && data_end < goaway, "{f:?}");
    // Every GOAWAY says NO_ERROR: a graceful close.
    for g in f.iter().filter(|f| f.0 == GOAWAY) {
        assert_eq!(&g.3[4..8], &[0, 0, 0, 0], "{g:?}");
    }
    assert_eq!(o.hits("/a"), 1);
}

#[tokio::test]
async fn an_idle_keepalive_connection_is_closed_after_its_response() {
    let (e, o) = edge_with("keepalive_timeout = \"1s\"").await;
    o.set("/k", Script::ok("kept"));
    let mut s = TcpStream::connect(e.addr()).await.unwrap();
    s.write_all(b"GET /k HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let got = String::from_utf8(until_closed(&mut s).await).unwrap();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.ends_with("kept"), "the whole response, then the close: {got}");
    all_closed(&e).await;
}

#[tokio::test]
async fn a_request_in_progress_is_not_cut_by_the_idle_timeouts() {
    let (e, o) =
        edge_with("keepalive_timeout = \"1s\"\nhttp2_idle_timeout = \"1s\"\nrequest_head_timeout = \"1s\"").await;
    o.set("/slow", Script::ok("late").delay(Duration::from_millis(2500)));
    o.set("/slow2", Script::ok("late2").delay(Duration::from_millis(2500)));
    let (s, _, _, b) = get(&client(), &url(&e, "/slow"), &[]).await;
    assert_eq!((s, &b[..]), (200, &b"late"[..]));
    let h2 = reqwest::Client::builder().no_proxy().http2_prior_knowledge().timeout(HUNG).build().unwrap();
    let r = h2.get(url(&e, "/slow2")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!((r.status().as_u16(), r.bytes().await.unwrap()), (200, bytes::Bytes::from_static(b"late2")));
}

#[tokio::test]
async fn silent_connections_beyond_the_cap_wait_and_never_exceed_it() {
    let (e, o) = edge_with("request_head_timeout = \"1s\"\nmax_connections = 2").await;
    assert_eq!(e.connections.limit(), 2);
    o.set("/fresh", Script::ok("served"));
    // N + k silent sockets: the kernel completes their handshakes; the edge
    // takes N at a time.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(e.addr()).await.unwrap());
    }
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut watchers = Vec::new();
    for mut s in silent {
        let closed = closed.clone();
        watchers.push(tokio::spawn(async move {
            let got = until_closed(&mut s).await;
            closed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            got
        }));
    }
    let (s, _, _, b) = get(&client(), &url(&e, "/fresh"), &[]).await;
    assert_eq!((s, &b[..]), (200, &b"served"[..]));
    // The fresh client was queued behind the silent ones: it was accepted only
    // when the second pair freed a place.
    assert!(closed.load(std::sync::atomic::Ordering::SeqCst) >= 3, "served before the silent sockets were closed");
    for w in watchers {
        assert!(w.await.unwrap().is_empty());
    }
    assert_eq!(e.connections.peak(), 2, "the edge held more than its cap");
}

#[tokio::test]
async fn a_70kb_header_gets_431_on_http1_and_http2() {
    let (e, o) = edge_with("").await;
    o.set("/big", Script::ok("never"));
    let big = "v".repeat(70 * 1024);
    let (s, _, _, _) = get(&client(), &url(&e, "/big"), &[("x-big", &big)]).await;
    assert_eq!(s, 431, "HTTP/1.1");
    let h2 = reqwest::Client::builder().no_proxy().http2_prior_knowledge().timeout(HUNG).build().unwrap();
    let r = h2.get(url(&e, "/big")).header("x-big", &big).send().await.expect("an answer, not REFUSED_STREAM");
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status().as_u16(), 431, "HTTP/2");
    // The connection stays usable, and a normal request reaches the origin.
    let r = h2.get(url(&e, "/big")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(o.hits("/big"), 1);
}

#[test]
fn connection_limits_are_checked_in_the_file() {
    let e = mediaedge::Config::parse("[server]\nmax_connections = 0\n", std::path::Path::new("e.toml")).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("server.max_connections"), "{e}");
    let e =
        mediaedge::Config::parse("[server]\nkeepalive_timeout = \"0s\"\n", std::path::Path::new("e.toml")).unwrap_err();
    assert_eq!((e.line, e.field.as_deref()), (2, Some("server.keepalive_timeout")), "{e}");
    let c = mediaedge::Config::parse("", std::path::Path::new("e.toml")).unwrap();
    assert_eq!(c.server.request_head_timeout, Duration::from_secs(10));
    assert_eq!(c.server.max_connections, None);
}
