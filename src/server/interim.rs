//! Interim (1xx) responses from the origin, forwarded to an HTTP/1.1 viewer
//! (RFC 9110 §15.2: a proxy forwards 1xx responses it did not ask for).
//!
//! hyper's server has no API to send a 1xx, so the connection's IO is wrapped:
//! the request path queues the serialized interim response in the
//! connection's [`Slot`], and [`InterimIo`] writes it to the socket ahead of
//! anything hyper writes next. hyper serves one HTTP/1.1 request at a time, so
//! while a request is in flight hyper writes nothing but (perhaps) its own
//! `100 Continue`; the queue is written whole between hyper's messages, never
//! inside one:
//! - before each of hyper's writes, the queue is written out first;
//! - while hyper waits on the service it polls the socket for reads (to see a
//!   viewer leave); the queue is written out then too, but only when hyper has
//!   nothing half-written (no write since its last completed flush).
//!
//! A request's [`Sink`] accepts interim responses only until the request's
//! final response is handed to hyper ([`Slot::end`]); later ones are dropped.
//! Nothing here is touched per request beyond two atomics, unless a 1xx comes.

use http::header::{self, HeaderMap, HeaderName};
use http::StatusCode;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// At most this many interim responses are forwarded per request.
pub const MAX_PER_REQUEST: u32 = 8;
/// An interim response longer than this (status line and fields) is dropped.
pub const MAX_BYTES: usize = 4096;
/// An interim response with more fields than this is dropped.
pub const MAX_FIELDS: usize = 32;

/// The interim responses waiting for one connection's socket.
#[derive(Default)]
pub struct Slot {
    /// The generation of the request whose sink is open; 0 when none is.
    open: AtomicU64,
    next: AtomicU64,
    /// Bytes are queued (checked before every write, without the lock).
    pending: AtomicBool,
    inner: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    written: usize,
    /// Interim responses queued for the open generation.
    count: u32,
    gen: u64,
    waker: Option<Waker>,
}

impl Slot {
    /// A request begins: its sink accepts interim responses until [`Slot::end`].
    pub fn begin(self: &Arc<Self>) -> Sink {
        let gen = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.open.store(gen, Ordering::SeqCst);
        Sink { slot: self.clone(), gen }
    }

    /// The request's final response goes to hyper: its sink closes. What was
    /// queued before is written ahead of that response's head.
    pub fn end(&self, sink_gen: u64) {
        let _ = self.open.compare_exchange(sink_gen, 0, Ordering::SeqCst, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One request's way to the viewer's connection (in the request's extensions).
#[derive(Clone)]
pub struct Sink {
    slot: Arc<Slot>,
    gen: u64,
}

impl Sink {
    /// The generation [`Slot::end`] closes.
    pub fn generation(&self) -> u64 {
        self.gen
    }

    /// Queues an interim response from the origin for the viewer. Dropped when
    /// the request's final response is already on its way, when it is `100`
    /// or `101` (hop-by-hop: the edge and hyper handle those themselves), or
    /// when it breaks the bounds above. Returns whether it was queued.
    pub fn push(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        let Some(bytes) = serialize(status, headers) else { return false };
        let slot = &*self.slot;
        let mut q = slot.lock();
        // Announce first, then look: either `end` + the writer's check of
        // `pending` sees this push (and waits on the lock), or this push sees
        // the sink closed.
        slot.pending.store(true, Ordering::SeqCst);
        if slot.open.load(Ordering::SeqCst) != self.gen {
            slot.pending.store(q.written < q.bytes.len(), Ordering::SeqCst);
            return false;
        }
        if q.gen != self.gen {
            q.gen = self.gen;
            q.count = 0;
        }
        if q.count >= MAX_PER_REQUEST {
            slot.pending.store(q.written < q.bytes.len(), Ordering::SeqCst);
            return false;
        }
        q.count += 1;
        q.bytes.extend_from_slice(&bytes);
        if let Some(w) = q.waker.take() {
            w.wake();
        }
        true
    }
}

/// `HTTP/1.1 1xx Reason` and the fields that may cross the hop, or `None`.
pub fn serialize(status: StatusCode, headers: &HeaderMap) -> Option<Vec<u8>> {
    let code = status.as_u16();
    if !(102..200).contains(&code) || headers.len() > MAX_FIELDS {
        return None;
    }
    // Fields the origin's `Connection` names are for its hop alone.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Informational").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if is_hop_by_hop(name) || named.contains(name) {
            continue;
        }
        let v = value.as_bytes();
        if v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            return None;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
        if out.len() > MAX_BYTES {
            return None;
        }
    }
    out.extend_from_slice(b"\r\n");
    (out.len() <= MAX_BYTES).then_some(out)
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "proxy-authenticate"
            | "proxy-authorization"
    )
}

/// The viewer connection's IO, with the queued interim responses written
/// ahead of hyper's bytes. Costs one atomic load per read and per write when
/// nothing is queued.
pub struct InterimIo<T> {
    io: T,
    slot: Arc<Slot>,
    /// hyper wrote since its last completed flush: it may have a message
    /// half-written, so nothing is put between its bytes.
    dirty: bool,
}

impl<T> InterimIo<T> {
    pub fn new(io: T, slot: Arc<Slot>) -> InterimIo<T> {
        InterimIo { io, slot, dirty: false }
    }
}

impl<T: AsyncWrite + Unpin> InterimIo<T> {
    /// Writes the queue out (and flushes, for TLS). Ready when it is empty.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.slot.pending.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        let mut q = self.slot.lock();
        while q.written < q.bytes.len() {
            let start = q.written;
            match Pin::new(&mut self.io).poll_write(cx, &q.bytes[start..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => q.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        q.bytes.clear();
        q.written = 0;
        self.slot.pending.store(false, Ordering::SeqCst);
        drop(q);
        Pin::new(&mut self.io).poll_flush(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for InterimIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.slot.open.load(Ordering::Relaxed) != 0 {
            // A request is in flight: hyper polls here while it waits, so
            // this task is the one to wake when an interim response comes.
            {
                let mut q = this.slot.lock();
                if !q.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    q.waker = Some(cx.waker().clone());
                }
            }
            if !this.dirty {
                if let Poll::Ready(Err(e)) = this.drain(cx) {
                    return Poll::Ready(Err(e));
                }
            }
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for InterimIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !this.dirty {
            std::task::ready!(this.drain(cx))?;
        }
        this.dirty = true;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !this.dirty {
            std::task::ready!(this.drain(cx))?;
        }
        this.dirty = true;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let r = std::task::ready!(Pin::new(&mut this.io).poll_flush(cx));
        if r.is_ok() {
            this.dirty = false;
        }
        Poll::Ready(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn only_end_to_end_fields_of_a_1xx_cross_the_hop() {
        let mut h = HeaderMap::new();
        h.insert("link", HeaderValue::from_static("</s.css>; rel=preload; as=style"));
        h.insert("connection", HeaderValue::from_static("x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("content-length", HeaderValue::from_static("5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        let out = serialize(StatusCode::from_u16(103).unwrap(), &h).unwrap();
        assert_eq!(out, b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload; as=style\r\n\r\n");
        assert!(serialize(StatusCode::CONTINUE, &HeaderMap::new()).is_none());
        assert!(serialize(StatusCode::SWITCHING_PROTOCOLS, &HeaderMap::new()).is_none());
        assert!(serialize(StatusCode::OK, &HeaderMap::new()).is_none());
    }

    #[test]
    fn an_oversized_1xx_is_dropped() {
        let mut h = HeaderMap::new();
        h.insert("x-big", HeaderValue::from_str(&"a".repeat(MAX_BYTES)).unwrap());
        assert!(serialize(StatusCode::PROCESSING, &h).is_none());
        let mut h = HeaderMap::new();
        for i in 0..=MAX_FIELDS {
            h.insert(HeaderName::from_bytes(format!("x-f{i}").as_bytes()).unwrap(), HeaderValue::from_static("1"));
        }
        assert!(serialize(StatusCode::PROCESSING, &h).is_none());
    }

    #[test]
    fn a_closed_sink_queues_nothing_and_the_count_is_bounded() {
        let slot = Arc::new(Slot::default());
        let sink = slot.begin();
        let h = HeaderMap::new();
        for _ in 0..MAX_PER_REQUEST {
            assert!(sink.push(StatusCode::PROCESSING, &h));
        }
        assert!(!sink.push(StatusCode::PROCESSING, &h), "bounded per request");
        slot.end(sink.generation());
        let next = slot.begin();
        assert!(!sink.push(StatusCode::PROCESSING, &h), "the old request's sink is closed");
        assert!(next.push(StatusCode::PROCESSING, &h), "the next request has its own count");
    }
}
