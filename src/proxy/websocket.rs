//! WebSockets through the edge (RFC 6455 over HTTP/1.1, and RFC 8441's
//! extended CONNECT over HTTP/2): the viewer's opening handshake goes to the
//! origin (never cached, never collapsed; always as HTTP/1.1); when the
//! origin answers `101 Switching Protocols` the viewer gets it (`200` on
//! HTTP/2), and the two upgraded streams are joined byte for byte until
//! either side closes or no byte moves either way for the idle timeout. The edge does not parse
//! frames: extensions and subprotocols are the two ends' business.
//!
//! The access log line is written when the joined connection ends, with the
//! bytes each way (`cs-bytes`, `sc-bytes`) and its duration (`time-taken`).

use super::respond::{error, from_origin};
use super::{Ctx, Edge, EdgeResult, Served, Viewer};
use crate::http::body::EdgeBody;
use crate::log::Pending;
use crate::metrics::DistStats;
use crate::routing::Route;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub(super) const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
pub(super) const SEC_WEBSOCKET_VERSION: HeaderName = HeaderName::from_static("sec-websocket-version");
const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// The handshake's own request fields: they reach the origin whatever the
/// behavior's origin request policy says.
pub(super) const HANDSHAKE_FIELDS: [HeaderName; 4] = [
    SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION,
    HeaderName::from_static("sec-websocket-protocol"),
    HeaderName::from_static("sec-websocket-extensions"),
];

/// Bytes read at a time, each way.
const BUFFER: usize = 8 * 1024;

/// Once one side has closed, how long the other has to finish (its close
/// frame, its FIN) before both are dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The joined WebSocket connections of one edge, and their bounds.
pub struct WebSockets {
    places: Arc<Semaphore>,
    limit: usize,
    idle: Duration,
}

impl WebSockets {
    pub(super) fn new(limit: usize, idle: Duration) -> WebSockets {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        WebSockets { places: Arc::new(Semaphore::new(limit)), limit, idle }
    }

    /// WebSocket connections open now (joined, or with their `101` on the way).
    pub fn open(&self) -> usize {
        self.limit - self.places.available_permits()
    }

    /// The most that may be open at once.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// Whether the request is a WebSocket opening handshake the edge honours: a
/// GET over HTTP/1.1 with `Upgrade: websocket`, `Connection: upgrade`, a
/// `Sec-WebSocket-Key` and `Sec-WebSocket-Version: 13` (RFC 6455 §4.1), or
/// an HTTP/2 extended CONNECT (`is_extended_connect`). Anything else is an
/// ordinary request (its `Upgrade` is dropped as hop-by-hop). The router asks
/// only for requests hyper marked as upgradable.
#[inline]
pub(super) fn is_handshake<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    let Some(upgrade) = h.get(header::UPGRADE) else {
        return req.method() == Method::CONNECT && is_extended_connect(req);
    };
    req.method() == Method::GET
        && req.version() == Version::HTTP_11
        && has_token(upgrade, "websocket")
        && h.get_all(header::CONNECTION).iter().any(|v| has_token(v, "upgrade"))
        && h.get(SEC_WEBSOCKET_KEY).is_some_and(|k| !k.is_empty())
        && h.get(SEC_WEBSOCKET_VERSION).is_some_and(|v| v.as_bytes().trim_ascii() == b"13")
}

/// A WebSocket over HTTP/2 (RFC 8441 §4–5): a `CONNECT` with the
/// `:protocol` pseudo-header `websocket` and `Sec-WebSocket-Version: 13`
/// (the edge announces `SETTINGS_ENABLE_CONNECT_PROTOCOL`). The origin gets
/// an ordinary HTTP/1.1 opening handshake; the viewer gets `200` on success.
pub(super) fn is_extended_connect<B>(req: &Request<B>) -> bool {
    req.method() == Method::CONNECT
        && req.version() == Version::HTTP_2
        && req.extensions().get::<hyper::ext::Protocol>().is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
        && req.headers().get(SEC_WEBSOCKET_VERSION).is_some_and(|v| v.as_bytes().trim_ascii() == b"13")
}

/// A fresh `Sec-WebSocket-Key` for the edge's handshake with the origin (the
/// HTTP/2 viewer sends none) and the `Sec-WebSocket-Accept` it must answer
/// (RFC 6455 §4.2.2).
fn key_and_accept() -> (String, String) {
    let mut nonce = [0u8; 16];
    // ring's system random; a failure leaves a still-valid (if predictable)
    // key, which only the origin sees.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce);
    let key = crate::security::signature::encode_standard(&nonce);
    (key.clone(), accept_for(&key))
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + the RFC's GUID)).
fn accept_for(key: &str) -> String {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    crate::security::signature::encode_standard(&h.finalize())
}

/// A comma-separated field holds `token` (ASCII case-insensitive).
fn has_token(v: &HeaderValue, token: &str) -> bool {
    v.as_bytes().split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

impl Edge {
    /// Answers a WebSocket handshake: the origin's `101` (and the joined
    /// connections in a task of their own), or whatever else it answered.
    pub(super) async fn websocket(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        route: Route,
        viewer: Viewer,
        pending: Option<Box<Pending>>,
        stats: Option<Arc<DistStats>>,
    ) -> Response<EdgeBody> {
        let Ok(place) = self.websockets.places.clone().try_acquire_owned() else {
            let mut served = error(StatusCode::SERVICE_UNAVAILABLE, "too many WebSocket connections at this edge");
            served.response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            return self.finish(served, pending, stats, viewer);
        };
        let viewer_side = hyper::upgrade::on(&mut req);
        let (mut parts, _) = req.into_parts();
        let h2 = parts.method == Method::CONNECT;
        if h2 {
            // The origin gets the GET this CONNECT stands for, under the
            // same policies as an HTTP/1.1 handshake.
            parts.method = Method::GET;
        }
        let ctx = Ctx { route, viewer };
        let mut request = self.websocket_request(&parts, &ctx);
        let expected_accept = h2.then(|| {
            let (key, accept) = key_and_accept();
            if let Ok(v) = HeaderValue::from_str(&key) {
                request.headers.insert(SEC_WEBSOCKET_KEY, v);
            }
            accept
        });
        let (response, origin_side) = match ctx.route.origin().upgrade(request).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(origin = %ctx.route.origin().config.id, path = parts.uri.path(), "WebSocket: {e}");
                return self.finish(error(e.status(), &e.to_string()), pending, stats, viewer);
            }
        };
        let Some(origin_side) = origin_side else {
            // The origin did not switch: its answer goes to the viewer as is.
            return self.finish(from_origin(response, EdgeResult::Pass, false), pending, stats, viewer);
        };
        let mut headers = response.headers;
        crate::http::strip_hop_by_hop(&mut headers);
        headers.remove(header::CONTENT_LENGTH);
        let status = match &expected_accept {
            // HTTP/2: the edge checks the origin's answer to its own key (the
            // viewer has no key to check it with), and the viewer gets 200.
            Some(accept) => {
                let got = headers.remove(SEC_WEBSOCKET_ACCEPT);
                if got.as_ref().map(HeaderValue::as_bytes) != Some(accept.as_bytes()) {
                    tracing::warn!(origin = %ctx.route.origin().config.id, "WebSocket: wrong Sec-WebSocket-Accept");
                    let served = error(StatusCode::BAD_GATEWAY, "the origin's WebSocket handshake is not valid");
                    return self.finish(served, pending, stats, viewer);
                }
                StatusCode::OK
            }
            None => {
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                StatusCode::SWITCHING_PROTOCOLS
            }
        };
        let mut switching = Response::new(EdgeBody::empty());
        *switching.status_mut() = status;
        *switching.headers_mut() = headers;
        let response = self.finish(Served::new(switching, EdgeResult::Pass), None, stats.clone(), viewer);
        let head = crate::http::head_size(status.canonical_reason().map_or(0, str::len) + 4, response.headers());
        let pending = pending.map(|mut p| {
            p.status = status.as_u16();
            p.result = EdgeResult::Pass;
            p.first_byte();
            p
        });
        let idle = self.websockets.idle;
        tokio::spawn(async move {
            let _place: OwnedSemaphorePermit = place;
            let (viewer_io, origin_io) = match tokio::join!(viewer_side, origin_side) {
                (Ok(v), Ok(o)) => (TokioIo::new(v), TokioIo::new(o)),
                (v, o) => {
                    let e = v.err().or(o.err()).map_or_else(String::new, |e| e.to_string());
                    tracing::debug!(client = %viewer.addr, "WebSocket upgrade did not complete: {e}");
                    if let Some(p) = pending {
                        p.finish(head, false);
                    }
                    return;
                }
            };
            let joined = join(viewer_io, origin_io, idle).await;
            if let Some(stats) = &stats {
                stats.record_bytes_out(0, joined.to_viewer);
            }
            if let Some(mut p) = pending {
                p.request_bytes += joined.from_viewer;
                p.finish(head + joined.to_viewer, joined.end != End::Failed);
            }
        });
        response
    }
}

/// How a joined connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed (or one did, and the other did not finish within the grace).
    Closed,
    /// No byte either way for the idle timeout.
    Idle,
    /// A read or write failed on either side.
    Failed,
}

/// What went through a joined connection.
#[derive(Debug, Clone, Copy)]
pub struct Joined {
    pub from_viewer: u64,
    pub to_viewer: u64,
    pub end: End,
}

/// Copies bytes both ways between `viewer` and `origin` until both have
/// closed, one fails, or nothing moves for `idle`. A side that closes has its
/// peer's write half shut down, so an origin that goes away closes the viewer.
pub async fn join<V, O>(viewer: V, origin: O, idle: Duration) -> Joined
where
    V: AsyncRead + AsyncWrite + Unpin,
    O: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    // Milliseconds since `start` of the last byte either way.
    let last = AtomicU64::new(0);
    let (from_viewer, to_viewer) = (AtomicU64::new(0), AtomicU64::new(0));
    let (mut vr, mut vw) = tokio::io::split(viewer);
    let (mut or, mut ow) = tokio::io::split(origin);
    let up = pump(&mut vr, &mut ow, &from_viewer, &last, start);
    let down = pump(&mut or, &mut vw, &to_viewer, &last, start);
    let (mut up, mut down) = (std::pin::pin!(up), std::pin::pin!(down));
    let (mut up_done, mut down_done) = (false, false);
    let timer = std::pin::pin!(tokio::time::sleep(idle));
    let mut timer = timer;
    let mut grace_until: Option<Instant> = None;
    let end = loop {
        let finished = tokio::select! {
            r = &mut up, if !up_done => { up_done = true; r }
            r = &mut down, if !down_done => { down_done = true; r }
            _ = timer.as_mut() => {
                let now = Instant::now();
                let due = start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
                if grace_until.is_some_and(|g| g <= now) {
                    break End::Closed;
                }
                if due <= now {
                    break End::Idle;
                }
                timer.as_mut().reset(grace_until.map_or(due, |g| g.min(due)));
                continue;
            }
        };
        if finished.is_err() {
            break End::Failed;
        }
        if up_done && down_done {
            break End::Closed;
        }
        if grace_until.is_none() {
            let g = Instant::now() + CLOSE_GRACE;
            grace_until = Some(g);
            if g < timer.deadline() {
                timer.as_mut().reset(g);
            }
        }
    };
    Joined { from_viewer: from_viewer.load(Ordering::Relaxed), to_viewer: to_viewer.load(Ordering::Relaxed), end }
}

/// One direction: read, write on, count; at the reader's end, shut the
/// writer down.
async fn pump<R, W>(r: &mut R, w: &mut W, count: &AtomicU64, last: &AtomicU64, start: Instant) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            // The peer may be gone already: its write half needs no FIN then.
            let _ = w.shutdown().await;
            return Ok(());
        }
        w.write_all(&buf[..n]).await?;
        w.flush().await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, fields: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri("/chat").version(Version::HTTP_11);
        for (n, v) in fields {
            b = b.header(*n, *v);
        }
        b.body(()).expect("request")
    }

    const GOOD: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ];

    #[test]
    fn only_a_complete_handshake_is_honoured() {
        assert!(is_handshake(&req(Method::GET, &GOOD)));
        assert!(!is_handshake(&req(Method::POST, &GOOD)), "POST");
        for (skip, (name, _)) in GOOD.iter().enumerate() {
            let fields: Vec<_> = GOOD.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, f)| *f).collect();
            assert!(!is_handshake(&req(Method::GET, &fields)), "without {name}");
        }
        let mut v8 = GOOD;
        v8[3] = ("sec-websocket-version", "8");
        assert!(!is_handshake(&req(Method::GET, &v8)), "version 8");
        let mut h2c = GOOD;
        h2c[0] = ("upgrade", "h2c");
        assert!(!is_handshake(&req(Method::GET, &h2c)), "h2c");
        let mut http10 = req(Method::GET, &GOOD);
        *http10.version_mut() = Version::HTTP_10;
        assert!(!is_handshake(&http10), "HTTP/1.0");
    }

    #[tokio::test]
    async fn joins_both_ways_and_closes_the_viewer_when_the_origin_goes() {
        let (viewer_edge, mut viewer) = tokio::io::duplex(64);
        let (origin_edge, mut origin) = tokio::io::duplex(64);
        let joined = tokio::spawn(join(viewer_edge, origin_edge, Duration::from_secs(60)));
        viewer.write_all(b"hello origin").await.expect("write");
        let mut got = [0u8; 12];
        origin.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello origin");
        origin.write_all(b"hi").await.expect("write");
        drop(origin);
        let mut rest = Vec::new();
        viewer.read_to_end(&mut rest).await.expect("the viewer sees the end");
        assert_eq!(rest, b"hi");
        drop(viewer);
        let j = joined.await.expect("join");
        assert_eq!((j.from_viewer, j.to_viewer), (12, 2));
    }
}
