//! Test harness: a scriptable origin on 127.0.0.1 (port 0), the edge started
//! in-process on 127.0.0.1 (port 0), and a real HTTP client.
#![allow(dead_code)]
pub mod binary;
pub mod openapi;

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// What the origin answers for one path.
#[derive(Clone, Debug)]
pub struct Script {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Wait before sending the response head.
    pub delay: Duration,
    /// Send the body in this many pieces...
    pub pieces: usize,
    /// ...this far apart.
    pub interval: Duration,
    /// Abort the connection after this many body bytes.
    pub fail_after: Option<usize>,
    /// Announce this Content-Length instead of the true one.
    pub content_length: Option<usize>,
    /// Send no Content-Length (chunked).
    pub chunked: bool,
    /// Answer `If-None-Match` matching this script's ETag with 304.
    pub revalidate: bool,
}

impl Script {
    pub fn ok(body: impl Into<Bytes>) -> Script {
        Script {
            status: 200,
            headers: vec![],
            body: body.into(),
            delay: Duration::ZERO,
            pieces: 1,
            interval: Duration::ZERO,
            fail_after: None,
            content_length: None,
            chunked: false,
            revalidate: true,
        }
    }

    pub fn status(mut self, s: u16) -> Script {
        self.status = s;
        self
    }

    pub fn header(mut self, k: &str, v: &str) -> Script {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    pub fn delay(mut self, d: Duration) -> Script {
        self.delay = d;
        self
    }

    pub fn pieces(mut self, n: usize, interval: Duration) -> Script {
        self.pieces = n.max(1);
        self.interval = interval;
        self
    }

    pub fn fail_after(mut self, n: usize) -> Script {
        self.fail_after = Some(n);
        self
    }

    pub fn content_length(mut self, n: usize) -> Script {
        self.content_length = Some(n);
        self
    }

    pub fn chunked(mut self) -> Script {
        self.chunked = true;
        self
    }

    pub fn no_revalidate(mut self) -> Script {
        self.revalidate = false;
        self
    }

    fn etag(&self) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("etag")).map(|(_, v)| v.as_str())
    }
}

/// A request as the origin saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct OriginState {
    scripts: Mutex<HashMap<String, Script>>,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
}

/// A real HTTP/1.1 origin server on 127.0.0.1.
pub struct TestOrigin {
    pub addr: SocketAddr,
    state: Arc<OriginState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestOrigin {
    pub async fn start() -> TestOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let state = Arc::new(OriginState::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            // The connections live in this task's set: dropping the origin
            // (aborting this task) closes them too, as a stopped server would.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                while connections.try_join_next().is_some() {}
                let st = st.clone();
                connections.spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        TestOrigin { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Scripts a path (with or without its query string).
    pub fn set(&self, path: &str, script: Script) {
        self.state.scripts.lock().unwrap().insert(path.to_string(), script);
    }

    /// Requests whose path (without query) is `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.seen_for(path).len()
    }

    pub fn seen_for(&self, path: &str) -> Vec<Seen> {
        self.state.seen.lock().unwrap().iter().filter(|s| s.uri.split('?').next() == Some(path)).cloned().collect()
    }

    pub fn total(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    /// Most requests the origin was answering at one time.
    pub fn peak_concurrency(&self) -> usize {
        self.state.peak_in_flight.load(Ordering::SeqCst)
    }

    pub fn reset_peak(&self) {
        self.state.peak_in_flight.store(0, Ordering::SeqCst);
    }
}

struct InFlightGuard(Arc<OriginState>);
impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

type OriginBody = StreamBody<tokio_stream_shim::Receiver>;

async fn handle(
    st: Arc<OriginState>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<OriginBody>, Infallible> {
    use http_body_util::BodyExt;
    let n = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.peak_in_flight.fetch_max(n, Ordering::SeqCst);
    let guard = InFlightGuard(st.clone());
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let uri = parts.uri.to_string();
    st.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: uri.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let script = {
        let scripts = st.scripts.lock().unwrap();
        scripts.get(&uri).or_else(|| scripts.get(uri.split('?').next().unwrap_or(""))).cloned()
    };
    let script = match script {
        Some(s) => s,
        None if parts.uri.path() == "/echo" => {
            // Echoes the method and request body: for pass-through tests.
            let mut s = Script::ok(Bytes::from(format!("{} {}", parts.method, String::from_utf8_lossy(&body))));
            s.headers.push(("cache-control".into(), "no-store".into()));
            s
        }
        None => Script::ok("no script for this path").status(404),
    };
    if !script.delay.is_zero() {
        tokio::time::sleep(script.delay).await;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(64);
    let mut resp = http::Response::builder().status(script.status);
    for (k, v) in &script.headers {
        resp = resp.header(k, v);
    }
    let inm = parts.headers.get("if-none-match").and_then(|v| v.to_str().ok());
    if script.revalidate && inm.is_some() && inm == script.etag() {
        drop(tx);
        drop(guard);
        return Ok(resp.status(304).body(StreamBody::new(tokio_stream_shim::Receiver(rx))).unwrap());
    }
    if parts.method == http::Method::HEAD {
        drop(tx);
    } else {
        if !script.chunked {
            resp = resp.header("content-length", script.content_length.unwrap_or(script.body.len()));
        }
        let body = script.body.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let limit = script.fail_after.unwrap_or(usize::MAX).min(body.len());
            let piece = body.len().div_ceil(script.pieces).max(1);
            let mut sent = 0;
            while sent < limit {
                let end = (sent + piece).min(limit);
                if tx.send(Ok(Frame::data(body.slice(sent..end)))).await.is_err() {
                    return;
                }
                sent = end;
                if sent < body.len() && !script.interval.is_zero() {
                    tokio::time::sleep(script.interval).await;
                }
            }
            if script.fail_after.is_some() {
                let _ = tx.send(Err(std::io::Error::other("scripted failure"))).await;
            }
        });
    }
    Ok(resp.body(StreamBody::new(tokio_stream_shim::Receiver(rx))).unwrap())
}

/// A minimal Stream over an mpsc receiver (avoids a tokio-stream dependency).
pub mod tokio_stream_shim {
    use bytes::Bytes;
    use hyper::body::Frame;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub struct Receiver(pub tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>);

    impl futures_core::Stream for Receiver {
        type Item = Result<Frame<Bytes>, std::io::Error>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }
}

/// Reads one request head (through its blank line); `None` if the peer closed first.
pub async fn read_request_head(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 8192];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    Some(got)
}

/// An origin that answers every connection with fixed raw bytes, then closes.
pub async fn raw_origin(response: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind raw origin");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                if read_request_head(&mut s).await.is_none() {
                    return;
                }
                let _ = s.write_all(response).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// Starts the edge from config text (its listen address is replaced by 127.0.0.1:0).
pub async fn edge(config: &str) -> mediaedge::RunningEdge {
    let mut cfg = mediaedge::Config::parse(config, std::path::Path::new("test.toml")).expect("test config");
    cfg.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    mediaedge::start(&cfg).await.expect("edge starts")
}

/// One distribution answering every host, in front of `origin`, with `behavior`
/// lines added to its default behavior.
pub fn config_for(origin: &str, default_behavior: &str) -> String {
    format!(
        "[[distributions]]\nid = \"ETEST\"\naliases = [\"*\"]\n\n[[distributions.origins]]\nid = \"o\"\nurl = \"{origin}\"\nread_timeout = \"5s\"\n\n[distributions.default_behavior]\norigin = \"o\"\n{default_behavior}\n"
    )
}

/// The edge in front of a fresh test origin, with default behavior options.
pub async fn edge_and_origin(default_behavior: &str) -> (mediaedge::RunningEdge, TestOrigin) {
    let origin = TestOrigin::start().await;
    let e = edge(&config_for(&origin.url(), default_behavior)).await;
    (e, origin)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

pub fn url(e: &mediaedge::RunningEdge, path: &str) -> String {
    format!("http://{}{}", e.addr(), path)
}

pub fn x_cache(r: &reqwest::Response) -> String {
    r.headers().get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or("").split(' ').next().unwrap_or("").to_string()
}

/// GET through the edge: status, X-Cache result, body.
pub async fn get(c: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> (u16, String, http::HeaderMap, Bytes) {
    let mut rb = c.get(url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    let xc = x_cache(&r);
    let headers = r.headers().clone();
    let body = r.bytes().await.expect("body");
    (status, xc, headers, body)
}

pub fn now() -> Instant {
    Instant::now()
}

/// Deterministic pseudo-random bytes.
pub fn payload(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// A unique scratch directory under the system temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "mediaedge-{tag}-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The admin token the controlled test edges use.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// An edge with its control plane (admin API on 127.0.0.1:0, state in `state`).
pub struct Controlled {
    pub edge: mediaedge::admin::ControlledEdge,
    pub admin: String,
}

impl Controlled {
    /// The viewer-facing URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.edge.running.addr(), path)
    }

    /// An admin API URL.
    pub fn api(&self, path: &str) -> String {
        format!("{}{}", self.admin, path)
    }
}

/// Starts an edge with its admin API from config text, keeping state in `state`.
pub async fn controlled(config: &str, state: &std::path::Path) -> Controlled {
    let mut cfg = mediaedge::Config::parse(config, std::path::Path::new("test.toml")).expect("test config");
    cfg.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.admin.token = Some(ADMIN_TOKEN.into());
    cfg.admin.state_dir = state.to_path_buf();
    let edge = mediaedge::admin::start(cfg).await.expect("edge with admin API starts");
    let admin = format!("http://{}", edge.admin_addr.expect("admin address"));
    Controlled { edge, admin }
}

/// One sample of the edge's `/metrics` (`name{labels}` as written), as an integer.
pub async fn metric_sample(e: &Controlled, sample: &str) -> u64 {
    let r = client()
        .get(e.api("/metrics"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .expect("metrics");
    let text = r.text().await.expect("metrics text");
    let prefix = format!("{sample} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no sample {sample} in /metrics"))
}

/// An admin API call with the test token: status, headers, JSON body (Null when empty or not JSON).
pub async fn admin_call(
    c: &reqwest::Client,
    method: &str,
    url: &str,
    body: Option<&serde_json::Value>,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, serde_json::Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut rb = c.request(method, url).header("authorization", format!("Bearer {ADMIN_TOKEN}"));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.header("content-type", "application/json").body(b.to_string());
    }
    let r = rb.send().await.expect("admin request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.expect("admin body");
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

/// A port free on 127.0.0.1 a moment ago (for a child process to bind).
pub fn free_port_here() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Waits until `cond` holds, checking every 5 ms; panics naming `what` after
/// 30 s (a bound that only means "it hung").
pub async fn until(what: &str, cond: impl Fn() -> bool) {
    let wait = async {
        while !cond() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("hung waiting: {what}"));
}
