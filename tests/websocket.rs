//! WebSockets through the edge, with a real client library (tokio-tungstenite)
//! against a real WebSocket echo origin started here: ws:// and wss://
//! viewers, HTTP/2 viewers (RFC 8441 extended CONNECT), 1,000 connections at once echoed byte for byte (and the edge's
//! memory per held connection, from /proc), an origin that closes, signed
//! behaviors, behaviors with WebSockets off, the connection cap, the idle
//! timeout, and the access log line.

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{Request as WsRequest, Response as WsResponse};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// A WebSocket echo server: every text and binary message comes back as it
/// was. The text `close-frame` makes it close the connection properly (a
/// close frame, then the socket); `drop-tcp` makes it drop the socket.
struct EchoOrigin {
    addr: SocketAddr,
    /// The handshakes it accepted: the request target and its header fields.
    handshakes: Arc<Mutex<Vec<(String, http::HeaderMap)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoOrigin {
    async fn start() -> EchoOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handshakes: Arc<Mutex<Vec<(String, http::HeaderMap)>>> = Arc::default();
        let seen = handshakes.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let seen = seen.clone();
                tokio::spawn(async move {
                    // tungstenite's callback type fixes the error's size.
                    #[allow(clippy::result_large_err)]
                    let record = |req: &WsRequest, resp: WsResponse| {
                        seen.lock().unwrap().push((req.uri().to_string(), req.headers().clone()));
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, record).await else { return };
                    while let Some(Ok(msg)) = ws.next().await {
                        match msg {
                            Message::Text(t) if t.as_str() == "close-frame" => {
                                let frame = CloseFrame { code: CloseCode::Away, reason: "origin closes".into() };
                                let _ = ws.close(Some(frame)).await;
                                while let Some(Ok(_)) = ws.next().await {}
                                return;
                            }
                            Message::Text(t) if t.as_str() == "drop-tcp" => return,
                            m @ (Message::Text(_) | Message::Binary(_)) => {
                                let sent = ws.send(m).await;
                                if sent.is_err() {
                                    return;
                                }
                            }
                            _ => {}
                        }
                    }
                });
            }
        });
        EchoOrigin { addr, handshakes, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn handshakes(&self) -> Vec<(String, http::HeaderMap)> {
        self.handshakes.lock().unwrap().clone()
    }
}

type Ws<S> = WebSocketStream<S>;

/// Opens a WebSocket to `url` over `stream` (plain or TLS).
async fn open_over<S>(stream: S, url: &str) -> Result<Ws<S>, WsError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio_tungstenite::client_async(url, stream).await.map(|(ws, _)| ws)
}

/// Opens ws://addr/path.
async fn open(addr: SocketAddr, path: &str) -> Result<Ws<TcpStream>, WsError> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    open_over(tcp, &format!("ws://{addr}{path}")).await
}

/// The status the edge answered a handshake with, when it was not 101.
fn refused_status(r: Result<Ws<TcpStream>, WsError>) -> u16 {
    match r {
        Err(WsError::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("handshake failed without an HTTP answer: {e}"),
        Ok(_) => panic!("the handshake was accepted"),
    }
}

/// Sends `msg` and expects it back byte for byte.
async fn echo<S>(ws: &mut Ws<S>, msg: Message)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(msg.clone()).await.expect("send");
    loop {
        match ws.next().await {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(got)) => {
                assert!(got == msg, "echo differs: sent {} bytes, got {} bytes", msg.len(), got.len());
                return;
            }
            other => panic!("no echo: {other:?}"),
        }
    }
}

/// A binary message of `len` bytes that differ from message to message.
fn payload(seed: u64, len: usize) -> Message {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    Message::Binary(bytes.into())
}

/// Reads until the stream ends (`None` or an error): the connection is closed.
async fn until_closed<S>(ws: &mut Ws<S>) -> Vec<Message>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut got = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(Ok(m)) = ws.next().await {
            got.push(m);
        }
    })
    .await;
    assert!(end.is_ok(), "the connection was not closed (got {got:?})");
    got
}

/// Waits until the edge holds `n` WebSocket connections.
async fn wait_open(e: &mediaedge::RunningEdge, n: usize) {
    for _ in 0..600 {
        if e.edge.websockets.open() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the edge holds {} WebSocket connections, not {n}", e.edge.websockets.open());
}

fn temp_dir(tag: &str) -> TempDir {
    TempDir::new(&format!("ws-{tag}"))
}

/// An edge from config text written to `dir/edge.toml` (paths in it are
/// relative to `dir`).
async fn edge_in(dir: &Path, text: &str) -> mediaedge::RunningEdge {
    let path = dir.join("edge.toml");
    std::fs::write(&path, text).expect("write config");
    let mut cfg = mediaedge::Config::load(&path).expect("config");
    cfg.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    mediaedge::start(&cfg).await.expect("edge starts")
}

fn dist(echo: &str, extra: &str) -> String {
    format!(
        "[[distributions]]\nid = \"EWS\"\naliases = [\"*\"]\n\n\
         [[distributions.origins]]\nid = \"echo\"\nurl = \"{echo}\"\nread_timeout = \"5s\"\n\n\
         {extra}\n[distributions.default_behavior]\norigin = \"echo\"\n"
    )
}

#[tokio::test]
async fn echoes_through_the_edge_and_logs_the_connection() {
    let origin = EchoOrigin::start().await;
    let dir = temp_dir("log");
    let log = dir.0.join("access.log");
    let text = format!("[server]\naccess_log = \"{}\"\n\n{}", log.display(), dist(&origin.url(), ""));
    let e = edge_in(&dir.0, &text).await;
    let mut ws = open(e.addr(), "/chat?room=1").await.expect("handshake through the edge");
    wait_open(&e, 1).await;
    let (mut up, mut down) = (0usize, 0usize);
    for (i, m) in
        [Message::Text("hello".into()), payload(1, 1), payload(2, 70_000), payload(3, 9_000)].into_iter().enumerate()
    {
        up += m.len();
        down += m.len();
        echo(&mut ws, m).await;
        assert_eq!(origin.handshakes().len(), 1, "one origin handshake, after message {i}");
    }
    // The handshake reached the origin with its own fields and the path.
    let (target, h) = origin.handshakes()[0].clone();
    assert_eq!(target, "/chat");
    assert_eq!(h.get("sec-websocket-version").unwrap(), "13");
    assert!(h.get("via").is_some_and(|v| v.to_str().unwrap().contains("mediaedge")));
    ws.close(None).await.expect("close");
    until_closed(&mut ws).await;
    drop(ws);
    wait_open(&e, 0).await;
    let line = wait_for_line(&log, "\t101\t").await;
    let f: Vec<&str> = line.split('\t').collect();
    assert_eq!((f[5], f[7], f[8], f[13], f[16]), ("GET", "/chat", "101", "Miss", "http"), "{line}");
    let (sc, cs): (usize, usize) = (f[3].parse().unwrap(), f[17].parse().unwrap());
    assert!(sc > down && sc < down + 2_000, "sc-bytes {sc} for {down} bytes echoed: {line}");
    assert!(cs > up && cs < up + 2_000, "cs-bytes {cs} for {up} bytes sent: {line}");
}

async fn wait_for_line(log: &Path, needle: &str) -> String {
    for _ in 0..600 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains(needle)) {
            return l.to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no log line with {needle:?} in {}", std::fs::read_to_string(log).unwrap_or_default());
}

#[tokio::test]
async fn an_origin_that_closes_closes_the_viewer() {
    let origin = EchoOrigin::start().await;
    let e = edge(&dist(&origin.url(), "")).await;

    // A proper close: the viewer gets the origin's close frame, then the end.
    let mut ws = open(e.addr(), "/a").await.expect("handshake");
    echo(&mut ws, Message::Text("before".into())).await;
    ws.send(Message::Text("close-frame".into())).await.expect("send");
    let got = until_closed(&mut ws).await;
    match got.last() {
        Some(Message::Close(Some(f))) => assert_eq!((f.code, f.reason.as_str()), (CloseCode::Away, "origin closes")),
        other => panic!("no close frame from the origin: {other:?}"),
    }
    drop(ws);

    // The origin drops its socket without a close frame: the viewer's
    // connection ends all the same.
    let mut ws = open(e.addr(), "/b").await.expect("handshake");
    echo(&mut ws, Message::Text("before".into())).await;
    ws.send(Message::Text("drop-tcp".into())).await.expect("send");
    let got = until_closed(&mut ws).await;
    assert!(got.is_empty(), "{got:?}");
    drop(ws);
    wait_open(&e, 0).await;
}

#[tokio::test]
async fn a_thousand_connections_at_once_and_memory_per_connection() {
    mediaedge::server::limits::raise_nofile_limit();
    let origin = EchoOrigin::start().await;
    // The real binary, so that its memory is the edge's alone.
    let edge = binary::EdgeProcess::start("ws-1000", &dist(&origin.url(), "")).await;
    let addr: SocketAddr = edge.addr.parse().expect("addr");
    // Warm up: one connection through and closed.
    let mut ws = open(addr, "/warm").await.expect("handshake");
    echo(&mut ws, payload(0, 100_000)).await;
    ws.close(None).await.expect("close");
    until_closed(&mut ws).await;
    drop(ws);
    let before = edge.rss_kib();

    const N: usize = 1_000;
    let gate = Arc::new(tokio::sync::Semaphore::new(200));
    let mut opening = tokio::task::JoinSet::new();
    for i in 0..N {
        let gate = gate.clone();
        opening.spawn(async move {
            let _g = gate.acquire().await.expect("gate");
            let mut ws = open(addr, &format!("/room/{i}")).await.expect("handshake");
            echo(&mut ws, Message::Text(format!("hello from {i}").into())).await;
            echo(&mut ws, payload(i as u64, 1 + i * 37 % 20_000)).await;
            ws
        });
    }
    let mut held = Vec::with_capacity(N);
    while let Some(ws) = opening.join_next().await {
        held.push(ws.expect("a connection"));
    }
    assert_eq!(held.len(), N);
    assert_eq!(origin.handshakes().len(), N + 1, "one origin connection per viewer connection");
    let during = edge.rss_kib();
    let per = (during.saturating_sub(before)) as f64 / N as f64;
    eprintln!("edge RSS: {before} KiB before, {during} KiB with {N} WebSocket connections held: {per:.1} KiB each");
    assert!(per < 256.0, "{per:.1} KiB per held WebSocket connection");

    // All still open and echoing, all at once.
    let mut rounds = tokio::task::JoinSet::new();
    for (i, mut ws) in held.into_iter().enumerate() {
        rounds.spawn(async move {
            echo(&mut ws, payload(i as u64 + 7, 64)).await;
            ws.close(None).await.expect("close");
            until_closed(&mut ws).await;
        });
    }
    while let Some(r) = rounds.join_next().await {
        r.expect("a connection echoed again and closed");
    }
}

#[tokio::test]
async fn signed_behaviors_refuse_unsigned_upgrades() {
    let origin = EchoOrigin::start().await;
    let dir = temp_dir("signed");
    let key = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(&dir.0).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}");
    };
    key(&["genrsa", "-out", "raw.pem", "2048"]);
    key(&["pkcs8", "-topk8", "-nocrypt", "-in", "raw.pem", "-out", "k1.pem"]);
    key(&["rsa", "-in", "k1.pem", "-pubout", "-out", "k1.pub.pem"]);
    let extra = "[[distributions.key_groups]]\nid = \"kg\"\nkeys = [{ id = \"K1\", public_key = \"k1.pub.pem\" }]\n\n\
                 [[distributions.behaviors]]\npath = \"/private/*\"\norigin = \"echo\"\ntrusted_key_groups = [\"kg\"]\n";
    let e = edge_in(&dir.0, &dist(&origin.url(), extra)).await;

    assert_eq!(refused_status(open(e.addr(), "/private/chat").await), 403);
    assert_eq!(refused_status(open(e.addr(), "/private/chat?Expires=1&Signature=x&Key-Pair-Id=K1").await), 403);
    assert!(origin.handshakes().is_empty(), "no refused upgrade reached the origin");

    let pem = std::fs::read_to_string(dir.0.join("k1.pem")).expect("key");
    let private = mediaedge::security::sign::PrivateKey::from_pem(&pem).expect("private key");
    let expires = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let url = format!("http://{}/private/chat", e.addr());
    let terms = mediaedge::security::sign::Terms::Canned { expires };
    let signed = mediaedge::security::sign::signed_url(&url, "K1", &private, &terms).expect("sign");
    let path = signed.trim_start_matches(&format!("http://{}", e.addr()));
    let mut ws = open(e.addr(), path).await.expect("a signed upgrade is joined");
    echo(&mut ws, Message::Text("signed".into())).await;
    let handshakes = origin.handshakes();
    assert_eq!(handshakes.len(), 1);
    assert_eq!(handshakes[0].0, "/private/chat", "the signing parameters do not reach the origin");
}

#[tokio::test]
async fn a_behavior_with_websockets_off_answers_an_ordinary_get() {
    let echo_origin = EchoOrigin::start().await;
    let plain = TestOrigin::start().await;
    plain.set("/plain/chat", Script::ok("not a socket"));
    plain.set("/on/chat", Script::ok("no switch here"));
    let extra = format!(
        "[[distributions.origins]]\nid = \"plain\"\nurl = \"{}\"\n\n\
         [[distributions.behaviors]]\npath = \"/plain/*\"\norigin = \"plain\"\nwebsocket = false\n\n\
         [[distributions.behaviors]]\npath = \"/on/*\"\norigin = \"plain\"\n",
        plain.url()
    );
    let e = edge(&dist(&echo_origin.url(), &extra)).await;
    // WebSockets on (the default): joined.
    let mut ws = open(e.addr(), "/ws/chat").await.expect("joined");
    echo(&mut ws, Message::Text("on".into())).await;

    // Off: the handshake is an ordinary GET; the origin sees no Upgrade.
    let handshake = [
        ("upgrade", "websocket"),
        ("connection", "upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ];
    let get = |path: &str, fields: &[(&'static str, &'static str)]| {
        let mut r = client().get(url(&e, path));
        for (n, v) in fields {
            r = r.header(*n, *v);
        }
        r.send()
    };
    let r = get("/plain/chat", &handshake).await.expect("answer");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "not a socket");
    let seen = plain.seen_for("/plain/chat");
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.get("upgrade").is_none() && seen[0].headers.get("sec-websocket-key").is_none());

    // On, but the origin does not switch: its answer goes to the viewer, and
    // the handshake is not cached (each one reaches the origin).
    for n in 1..=2 {
        let r = get("/on/chat", &handshake).await.expect("answer");
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "no switch here");
        let seen = plain.seen_for("/on/chat");
        assert_eq!(seen.len(), n, "handshake {n} reached the origin");
        assert_eq!(seen[n - 1].headers.get("upgrade").unwrap(), "websocket");
    }
    // An incomplete handshake (version 8) is an ordinary, cacheable GET.
    let mut v8 = handshake;
    v8[3] = ("sec-websocket-version", "8");
    for _ in 0..2 {
        let r = get("/on/chat", &v8).await.expect("answer");
        assert_eq!(r.status(), 200);
    }
    let seen = plain.seen_for("/on/chat");
    assert_eq!(seen.len(), 3, "the first plain GET fills, the second is a hit");
    assert!(seen[2].headers.get("upgrade").is_none());
}

#[tokio::test]
async fn the_connection_cap_and_the_idle_timeout() {
    let origin = EchoOrigin::start().await;
    let server = "[server]\nwebsocket_max_connections = 2\nwebsocket_idle_timeout = \"3s\"\n\n";
    let e = edge(&format!("{server}{}", dist(&origin.url(), ""))).await;
    let mut a = open(e.addr(), "/a").await.expect("first");
    let mut b = open(e.addr(), "/b").await.expect("second");
    assert_eq!(refused_status(open(e.addr(), "/c").await), 503);
    assert_eq!(origin.handshakes().len(), 2, "the refused upgrade did not reach the origin");
    echo(&mut a, Message::Text("a".into())).await;
    echo(&mut b, Message::Text("b".into())).await;
    // Left idle, both are closed by the edge, and their places come back.
    until_closed(&mut a).await;
    until_closed(&mut b).await;
    wait_open(&e, 0).await;
    let mut c = open(e.addr(), "/c").await.expect("a place again");
    echo(&mut c, Message::Text("c".into())).await;
}

// ---- wss:// ----------------------------------------------------------------

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "mediaedge ws test CA");
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_cert = p.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(p, ca_key);
    let leaf = CertificateParams::new(vec!["ws.example.test".to_string()]).expect("leaf params");
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    Pki { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

async fn tls_to(addr: SocketAddr, ca_pem: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("ca pem")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("ws.example.test").expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.expect("TLS handshake")
}

#[tokio::test]
async fn wss_viewers_are_joined_too() {
    let origin = EchoOrigin::start().await;
    let dir = temp_dir("wss");
    let pki = pki();
    std::fs::write(dir.0.join("c.pem"), &pki.cert_pem).expect("cert");
    std::fs::write(dir.0.join("c.key"), &pki.key_pem).expect("key");
    let log: PathBuf = dir.0.join("access.log");
    let text = format!(
        "[server]\nhttps_listen = [\"127.0.0.1:0\"]\naccess_log = \"{}\"\n\
         certificates = [{{ cert = \"c.pem\", key = \"c.key\", default = true }}]\n\n{}",
        log.display(),
        dist(&origin.url(), "")
    );
    let e = edge_in(&dir.0, &text).await;
    let https = e.https_addrs[0];
    let tls = tls_to(https, &pki.ca_pem).await;
    let url = format!("wss://ws.example.test:{}/secure", https.port());
    let mut ws = open_over(tls, &url).await.expect("a wss handshake through the edge");
    for (i, len) in [0usize, 1, 125, 126, 65_535, 65_536, 200_000].into_iter().enumerate() {
        echo(&mut ws, payload(100 + i as u64, len)).await;
    }
    echo(&mut ws, Message::Text("über TLS ✓".into())).await;
    ws.send(Message::Text("close-frame".into())).await.expect("send");
    until_closed(&mut ws).await;
    drop(ws);
    wait_open(&e, 0).await;
    let line = wait_for_line(&log, "\t101\t").await;
    let f: Vec<&str> = line.split('\t').collect();
    assert_eq!((f[7], f[16]), ("/secure", "https"), "{line}");
}

/// Opens a WebSocket over HTTP/2 (RFC 8441): an extended CONNECT on a new
/// stream of `send`'s connection, then WebSocket frames on that stream.
/// `Err` is the edge's status when it was not 200.
async fn open_h2(
    send: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    authority: &str,
    path: &str,
) -> Result<Ws<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>, u16> {
    use tokio_tungstenite::tungstenite::protocol::Role;
    // The first CONNECT may go out before the edge's SETTINGS (which enable
    // extended CONNECT) have arrived: h2 refuses it locally; try again.
    let mut tries = 0;
    let resp = loop {
        let mut req = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(format!("http://{authority}{path}"))
            .header("sec-websocket-version", "13")
            .body(http_body_util::Empty::new())
            .expect("request");
        req.extensions_mut().insert(hyper::ext::Protocol::from_static("websocket"));
        match send.send_request(req).await {
            Ok(r) => break r,
            Err(_) if tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("extended CONNECT not sent: {e}"),
        }
    };
    if resp.status() != http::StatusCode::OK {
        return Err(resp.status().as_u16());
    }
    assert!(resp.headers().get("sec-websocket-accept").is_none(), "no accept field over HTTP/2");
    let upgraded = hyper::upgrade::on(resp).await.expect("the stream is handed over");
    Ok(WebSocketStream::from_raw_socket(hyper_util::rt::TokioIo::new(upgraded), Role::Client, None).await)
}

/// An HTTP/2 connection (prior knowledge, cleartext) to the edge.
async fn h2_to(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    send
}

#[tokio::test]
async fn http2_viewers_open_websockets_with_extended_connect() {
    let origin = EchoOrigin::start().await;
    let dir = temp_dir("h2");
    let log = dir.0.join("access.log");
    // A short HTTP/2 idle timeout: a stream carrying a WebSocket keeps its
    // connection open past it.
    let text = format!(
        "[server]\naccess_log = \"{}\"\nhttp2_idle_timeout = \"1s\"\n\n{}\n\
         [[distributions.behaviors]]\npath = \"/plain/*\"\norigin = \"echo\"\nwebsocket = false\n",
        log.display(),
        dist(&origin.url(), "")
    );
    let e = edge_in(&dir.0, &text).await;
    let authority = format!("ws.example.test:{}", e.addr().port());
    let mut send = h2_to(e.addr()).await;
    // Two WebSockets on streams of one connection, used in turn.
    let mut a = open_h2(&mut send, &authority, "/chat/a?x=1").await.expect("first WebSocket over HTTP/2");
    let mut b = open_h2(&mut send, &authority, "/chat/b").await.expect("second WebSocket over HTTP/2");
    wait_open(&e, 2).await;
    for (i, len) in [0usize, 1, 125, 126, 65_535, 65_536, 200_000].into_iter().enumerate() {
        echo(&mut a, payload(200 + i as u64, len)).await;
        echo(&mut b, payload(300 + i as u64, len)).await;
    }
    // The origin saw ordinary HTTP/1.1 handshakes with the edge's own key
    // (the edge checked the origin's accept against it: the 200 came).
    let seen = origin.handshakes();
    assert_eq!(seen.len(), 2);
    for (target, h) in &seen {
        // As for HTTP/1.1 viewers: the default policies forward no query.
        assert!(target == "/chat/a" || target == "/chat/b", "{target}");
        let key = h.get("sec-websocket-key").expect("the edge sends a key").to_str().unwrap();
        assert_eq!(key.len(), 24, "a 16-byte nonce in base64: {key}");
        assert_eq!(h.get("sec-websocket-version").unwrap(), "13");
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
    }
    assert_ne!(seen[0].1.get("sec-websocket-key"), seen[1].1.get("sec-websocket-key"), "a key per handshake");
    // Past the connection's idle timeout and the grace that follows it, both
    // still echo, and the connection was not closed (no GOAWAY): a stream
    // carrying a WebSocket is an open stream.
    tokio::time::sleep(Duration::from_millis(7_000)).await;
    echo(&mut a, Message::Text("still here".into())).await;
    echo(&mut b, Message::Text("über h2 ✓".into())).await;
    let mut c = open_h2(&mut send, &authority, "/chat/c").await.expect("a third WebSocket, later");
    echo(&mut c, payload(400, 1_000)).await;
    c.close(None).await.expect("close");
    until_closed(&mut c).await;
    drop(c);
    wait_open(&e, 2).await;
    // An origin that closes closes the viewer's stream; the other goes on.
    a.send(Message::Text("close-frame".into())).await.expect("send");
    until_closed(&mut a).await;
    drop(a);
    wait_open(&e, 1).await;
    echo(&mut b, Message::Text("after a".into())).await;
    b.close(None).await.expect("close");
    until_closed(&mut b).await;
    drop(b);
    wait_open(&e, 0).await;
    // With WebSockets off, the CONNECT is refused (never sent to the origin).
    assert_eq!(open_h2(&mut send, &authority, "/plain/x").await.err(), Some(403));
    assert_eq!(origin.handshakes().len(), 3);
    let line = wait_for_line(&log, "/chat/a").await;
    let f: Vec<&str> = line.split('\t').collect();
    assert_eq!((f[5], f[7], f[8]), ("CONNECT", "/chat/a", "200"), "{line}");
}

#[tokio::test]
async fn an_origin_with_a_wrong_accept_is_refused_to_http2_viewers() {
    // A "WebSocket origin" that switches protocols with an accept value that
    // does not answer the edge's key.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
                )
                .await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    let dir = temp_dir("h2-accept");
    let e = edge_in(&dir.0, &dist(&format!("http://{addr}"), "")).await;
    let mut send = h2_to(e.addr()).await;
    let authority = format!("ws.example.test:{}", e.addr().port());
    assert_eq!(open_h2(&mut send, &authority, "/chat").await.err(), Some(502));
    wait_open(&e, 0).await;
    task.abort();
}
