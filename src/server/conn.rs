//! One viewer connection from accept to close: the TLS handshake and the first
//! request head within one deadline, then idle timeouts between requests
//! (HTTP/1.1 keep-alive) and while no stream is open (HTTP/2, closed with GOAWAY).

use super::coalesce::{self, Coalesce, Pacer};
use super::interim;
use super::limits::Permit;
use super::StreamExec;
use crate::http::body::EdgeBody;
use crate::proxy::{Edge, Handled, Viewer};
use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

/// The time limits every connection is held to (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Accept → complete first request head (TLS handshake included).
    pub head: Duration,
    /// HTTP/1.1: no request in progress for this long → closed.
    pub keepalive: Duration,
    /// HTTP/2: no open stream for this long → GOAWAY.
    pub http2_idle: Duration,
    /// Largest request head (HTTP/2 header lists are checked against it here).
    pub max_header_bytes: usize,
    /// Once the edge drains: how long a connection may take to finish what it
    /// has started.
    pub drain: Duration,
}

/// After a graceful close is asked for, how long the connection may take to finish.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// While draining, how often an HTTP/1.1 connection looks whether its
/// response is done.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// While draining, an idle HTTP/1.1 connection is kept this long for a
/// request the viewer may already be sending.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// What the connection's watchdog knows of its requests.
struct State {
    epoch: Instant,
    /// Requests whose response has not been sent (or dropped) yet.
    active: AtomicU32,
    /// A request head arrived (the head deadline no longer applies).
    spoke: AtomicBool,
    /// The connection speaks HTTP/2.
    h2: AtomicBool,
    /// When `active` last fell to 0, in milliseconds since `epoch`.
    idle_since_ms: AtomicU64,
    /// Interim (1xx) responses on their way to this HTTP/1.1 viewer.
    interim: Arc<interim::Slot>,
    /// The connection's write gathering (HTTP/2).
    pacer: Arc<Pacer>,
}

impl State {
    fn begin(self: &Arc<Self>, version: Version) -> Active {
        if !self.spoke.load(Ordering::Relaxed) {
            self.h2.store(version == Version::HTTP_2, Ordering::Relaxed);
            if version == Version::HTTP_2 {
                self.pacer.set_h2();
            }
            self.spoke.store(true, Ordering::Relaxed);
        }
        self.active.fetch_add(1, Ordering::Relaxed);
        Active(self.clone())
    }

    fn idle_since(&self) -> Instant {
        self.epoch + Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed))
    }
}

/// Held by a request until its response body is finished or dropped.
struct Active(Arc<State>);

impl Drop for Active {
    fn drop(&mut self) {
        let ms = self.0.epoch.elapsed().as_millis() as u64;
        self.0.idle_since_ms.store(ms, Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The response body, holding its request's place in `State::active`.
pub struct ConnBody {
    inner: EdgeBody,
    _active: Option<Active>,
}

/// The future hyper polls for one request.
struct Reply {
    handled: Handled,
    active: Option<Active>,
    /// The request's interim-response generation (0: none), closed once the
    /// final response goes to hyper.
    interim_gen: u64,
    /// The edge drains: an HTTP/1.x response says `Connection: close`.
    close: bool,
}

impl Future for Reply {
    type Output = Result<Response<ConnBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let res = std::task::ready!(Pin::new(&mut this.handled).poll(cx));
        let active = this.active.take();
        if this.interim_gen != 0 {
            if let Some(a) = &active {
                a.0.interim.end(this.interim_gen);
            }
        }
        let mut res = res.map(|inner| ConnBody { inner, _active: active });
        if this.close {
            res.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(res))
    }
}

impl Body for ConnBody {
    type Data = <EdgeBody as Body>::Data;
    type Error = <EdgeBody as Body>::Error;

    #[inline]
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The size of an HTTP/2 header list as RFC 9113 §6.5.2 counts it (name +
/// value + 32 per field), pseudo-headers included. Allocates nothing.
fn header_list_size<B>(req: &Request<B>) -> usize {
    let fields: usize = req.headers().iter().map(|(n, v)| n.as_str().len() + v.len() + 32).sum();
    let uri = req.uri();
    let pseudo = req.method().as_str().len()
        + uri.scheme_str().map_or(0, str::len)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(1, |p| p.as_str().len());
    // :method, :scheme, :authority, :path: each name and its 32
    fields + pseudo + 4 * 40
}

fn too_large() -> Response<EdgeBody> {
    let mut res = Response::new(EdgeBody::full(Bytes::from_static(b"request header fields too large\n")));
    *res.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    res.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    res
}

/// The viewer's socket with its place among the open connections: the place
/// is given back when the socket closes, also when a WebSocket has taken the
/// socket over from hyper.
struct Held<T> {
    io: T,
    _permit: Permit,
}

impl<T: AsyncRead + Unpin> AsyncRead for Held<T> {
    #[inline]
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Held<T> {
    #[inline]
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    #[inline]
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    #[inline]
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    #[inline]
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves one accepted connection until it closes or a deadline closes it.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    edge: Arc<Edge>,
    builder: Arc<auto::Builder<StreamExec>>,
    tls: Option<TlsAcceptor>,
    limits: Deadlines,
    permit: Permit,
    drain: CancellationToken,
) {
    let epoch = Instant::now();
    let head_deadline = epoch + limits.head;
    let io = match tls {
        None => Either::Left(stream),
        Some(acceptor) => match tokio::time::timeout_at(head_deadline, acceptor.accept(stream)).await {
            Ok(Ok(s)) => Either::Right(s),
            Ok(Err(e)) => {
                tracing::debug!(%peer, "TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake not done by the request head deadline");
                return;
            }
        },
    };
    let viewer = Viewer { addr: peer, tls: matches!(io, Either::Right(_)) };
    let state = Arc::new(State {
        epoch,
        active: AtomicU32::new(0),
        spoke: AtomicBool::new(false),
        h2: AtomicBool::new(false),
        idle_since_ms: AtomicU64::new(0),
        interim: Arc::default(),
        pacer: Arc::default(),
    });
    let st = state.clone();
    let drain_seen = drain.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let active = st.begin(req.version());
        // RFC 9110 §15.2: never a 1xx to an HTTP/1.0 client; HTTP/2: see interim.rs.
        let sink = match req.version() {
            Version::HTTP_11 => Some(st.interim.begin()),
            _ => None,
        };
        let interim_gen = sink.as_ref().map_or(0, interim::Sink::generation);
        // HTTP/2 accepts a larger header list than the limit (see `start`) so
        // that an oversized one is answered 431 here, as on HTTP/1.1.
        let oversize = req.version() == Version::HTTP_2 && header_list_size(&req) > limits.max_header_bytes;
        // A hit is answered here, inside the call; anything that waits comes
        // back boxed, so hyper only ever moves a small future.
        let close = req.version() != Version::HTTP_2 && drain_seen.is_cancelled();
        let handled = if oversize { Handled::Ready(Some(too_large())) } else { edge.handle(req, viewer, sink) };
        Reply { handled, active: Some(active), interim_gen, close }
    });
    let io = interim::InterimIo::new(Held { io, _permit: permit }, state.interim.clone());
    let io = Coalesce::new(io, state.pacer.clone());
    // With upgrades: a WebSocket takes the connection over (with its place,
    // which goes with the socket) once its `101` is sent.
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let timer = tokio::time::sleep_until(head_deadline);
    let mut timer = std::pin::pin!(timer);
    let mut closing = false;
    let mut draining = false;
    let mut drain_deadline = Instant::now();
    let mut idle_until = Instant::now();
    loop {
        tokio::select! {
            served = std::future::poll_fn(|cx| coalesce::poll_paced(conn.as_mut(), &state.pacer, cx)) => {
                if let Err(e) = served {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                return;
            }
            _ = timer.as_mut() => {}
            _ = drain.cancelled(), if !draining => {
                // The edge stops. HTTP/2 sends GOAWAY and finishes its open
                // streams. HTTP/1.1 finishes the response in progress (with
                // `Connection: close` on any it starts from now on), then
                // closes; an idle one closes at once. Whatever is left at the
                // process's drain deadline is dropped.
                draining = true;
                let now = Instant::now();
                drain_deadline = now + limits.drain + CLOSE_GRACE;
                if state.h2.load(Ordering::Relaxed) || !state.spoke.load(Ordering::Relaxed) {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                    let busy = state.active.load(Ordering::Relaxed) > 0;
                    timer.as_mut().reset(now + if busy { limits.drain + CLOSE_GRACE } else { CLOSE_GRACE });
                } else {
                    idle_until = now + DRAIN_IDLE;
                    timer.as_mut().reset(now + DRAIN_POLL);
                }
                continue;
            }
        }
        if draining && !closing {
            // HTTP/1.1 is not closed under a viewer that may be sending its
            // next request (it would see the connection reset): the response
            // in progress and any request that comes within `DRAIN_IDLE` are
            // answered with `Connection: close` (hyper closes after them); a
            // connection idle for `DRAIN_IDLE` is closed then. (hyper's own
            // graceful shutdown mid-response would also stop the body.)
            let now = Instant::now();
            if state.active.load(Ordering::Relaxed) == 0 && now >= idle_until.max(state.idle_since()) {
                conn.as_mut().graceful_shutdown();
                closing = true;
                timer.as_mut().reset(now + CLOSE_GRACE);
            } else if now >= drain_deadline {
                tracing::debug!(%peer, "response not finished by the drain deadline; dropped");
                return;
            } else {
                timer.as_mut().reset(now + DRAIN_POLL);
            }
            continue;
        }
        if closing {
            tracing::debug!(%peer, "connection did not finish closing; dropped");
            return;
        }
        if !state.spoke.load(Ordering::Relaxed) {
            // No complete request head since accept: an attacker or a stalled
            // client; nothing is owed to it, close at once.
            tracing::debug!(%peer, "no request head within the deadline; closed");
            return;
        }
        let idle = if state.h2.load(Ordering::Relaxed) { limits.http2_idle } else { limits.keepalive };
        let now = Instant::now();
        if state.active.load(Ordering::Relaxed) > 0 {
            timer.as_mut().reset(now + idle);
            continue;
        }
        let due = state.idle_since() + idle;
        if due > now {
            timer.as_mut().reset(due);
            continue;
        }
        // Idle: HTTP/1.1 closes, HTTP/2 sends GOAWAY and closes.
        conn.as_mut().graceful_shutdown();
        closing = true;
        timer.as_mut().reset(now + CLOSE_GRACE);
    }
}
