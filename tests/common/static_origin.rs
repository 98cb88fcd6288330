//! A static-file HTTP origin for the player tests: serves one folder on
//! 127.0.0.1 (port 0) over HTTP/1.1, sends a Content-Type by extension and a
//! Content-Length, and NO caching headers (no Cache-Control, Expires, ETag or
//! Last-Modified), so the edge's own defaults decide freshness. Every request is
//! recorded with the status it got, so tests can count origin fetches per path.
//!
//! Include it with `#[path = "common/static_origin.rs"] mod static_origin;`.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// One request as the origin saw it: the path (without query) and the status sent.
#[derive(Clone, Debug)]
pub struct Fetch {
    pub method: String,
    pub path: String,
    pub status: u16,
}

/// A running static-file server; stops accepting on drop.
pub struct StaticOrigin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Fetch>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StaticOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StaticOrigin {
    /// Serves `root` (files are read at request time, so a folder being written
    /// to, like a live encoder's, is served as it is at that moment).
    pub async fn start(root: impl Into<PathBuf>) -> StaticOrigin {
        let root = Arc::new(root.into());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind static origin");
        let addr = listener.local_addr().expect("static origin addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let st = seen.clone();
        let task = tokio::spawn(async move {
            // The connections live in this task's set: dropping the origin
            // (aborting this task) closes them too, as a stopped server would.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                while connections.try_join_next().is_some() {}
                let (root, seen) = (root.clone(), st.clone());
                connections.spawn(async move {
                    let svc = service_fn(move |req| serve(root.clone(), seen.clone(), req));
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        StaticOrigin { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests for `path` so far.
    pub fn hits(&self, path: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|f| f.path == path).count()
    }

    /// All requests so far, in arrival order.
    pub fn fetches(&self) -> Vec<Fetch> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests per path so far, with the status of the latest one.
    pub fn counts(&self) -> BTreeMap<String, (usize, u16)> {
        let mut m: BTreeMap<String, (usize, u16)> = BTreeMap::new();
        for f in self.seen.lock().unwrap().iter() {
            let e = m.entry(f.path.clone()).or_insert((0, f.status));
            e.0 += 1;
            e.1 = f.status;
        }
        m
    }

    pub fn total(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn serve(
    root: Arc<PathBuf>,
    seen: Arc<Mutex<Vec<Fetch>>>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let (status, content_type, body) = if method != http::Method::GET && method != http::Method::HEAD {
        (405, "text/plain", Bytes::from_static(b"method not allowed\n"))
    } else {
        match resolve(&root, &path) {
            Some(file) => match tokio::fs::read(&file).await {
                Ok(bytes) => (200, content_type(&file), Bytes::from(bytes)),
                Err(_) => (404, "text/plain", Bytes::from_static(b"not found\n")),
            },
            None => (404, "text/plain", Bytes::from_static(b"not found\n")),
        }
    };
    seen.lock().unwrap().push(Fetch { method: method.to_string(), path, status });
    let len = body.len();
    let body = if method == http::Method::HEAD { Bytes::new() } else { body };
    let resp = http::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", len)
        .body(Full::new(body))
        .expect("static origin response");
    Ok(resp)
}

/// Maps a URI path into `root`; `None` for anything that would leave it.
fn resolve(root: &Path, uri_path: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for c in Path::new(uri_path.trim_start_matches('/')).components() {
        match c {
            Component::Normal(part) => out.push(part),
            _ => return None,
        }
    }
    (out != root).then_some(out)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "m3u8" => "application/vnd.apple.mpegurl",
        "mpd" => "application/dash+xml",
        "ts" => "video/mp2t",
        "m4s" => "video/iso.segment",
        "mp4" => "video/mp4",
        "html" => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}
