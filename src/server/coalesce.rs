//! HTTP/2 writes gathered into one write per turn of the connection.
//!
//! The h2 codec flushes after every DATA frame it sends by reference (any
//! payload over 256 bytes), so a connection answering 16 streams at once made
//! 16 `writev`s, and over TLS 16 records, one per response. [`Coalesce`] sits
//! between hyper and the socket (or TLS stream) and, on an HTTP/2 connection,
//! keeps small writes in a buffer of up to [`CAP`] bytes; a flush asked for
//! while the connection task is still working through its turn is put off
//! to the next turn, which [`poll_paced`] runs at once, so everything the
//! turn wrote goes out in one write (one TLS record per 16 KiB).
//!
//! A turn is one poll of the connection future; the [`Pacer`] counts them.
//! Data held over from an earlier turn is written before anything else the
//! next turn does with the socket (read, write, flush or shutdown), so bytes
//! never reorder and a flush is owed for at most one turn. HTTP/1.1
//! connections pass straight through (hyper writes each response whole).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes gathered before they are written regardless: one TLS record's worth.
pub const CAP: usize = 16 * 1024;

/// Turns a connection task may run back to back to write out what it owes
/// before it yields to the scheduler (and is woken to go on).
const MAX_TURNS: usize = 4;

/// What one connection's writer and its task share.
#[derive(Default)]
pub struct Pacer {
    /// The connection's turn (poll) count.
    turn: AtomicU32,
    /// A flush was put off during this turn.
    owed: AtomicBool,
    /// The connection speaks HTTP/2 (gathering applies).
    h2: AtomicBool,
}

impl Pacer {
    /// The connection turned out to speak HTTP/2.
    pub fn set_h2(&self) {
        self.h2.store(true, Ordering::Relaxed);
    }
}

/// Polls a connection future, running it again at once while a turn left a
/// flush owed, so that owed bytes are written before the task sleeps.
pub fn poll_paced<F: Future>(mut conn: Pin<&mut F>, pacer: &Pacer, cx: &mut Context<'_>) -> Poll<F::Output> {
    for _ in 0..MAX_TURNS {
        pacer.turn.fetch_add(1, Ordering::Relaxed);
        pacer.owed.store(false, Ordering::Relaxed);
        if let Poll::Ready(out) = conn.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        if !pacer.owed.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
    }
    // Still owing after several turns (new frames kept coming): let other
    // tasks run, and come back.
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// The connection's IO with HTTP/2 writes gathered (see the module comment).
pub struct Coalesce<T> {
    io: T,
    pacer: Arc<Pacer>,
    buf: Vec<u8>,
    written: usize,
    /// The turn whose flush was put off, if one was.
    owed_turn: Option<u32>,
}

impl<T> Coalesce<T> {
    pub fn new(io: T, pacer: Arc<Pacer>) -> Coalesce<T> {
        Coalesce { io, pacer, buf: Vec::new(), written: 0, owed_turn: None }
    }

    fn gathering(&self) -> bool {
        self.pacer.h2.load(Ordering::Relaxed)
    }

    /// A flush was put off in an earlier turn: the bytes go out now.
    fn due(&self) -> bool {
        self.owed_turn.is_some_and(|t| t != self.pacer.turn.load(Ordering::Relaxed))
    }
}

impl<T: AsyncWrite + Unpin> Coalesce<T> {
    /// Writes the gathered bytes and flushes the IO under them.
    fn write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.buf[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        // Dropped rather than kept: an idle connection holds no buffer.
        self.buf = Vec::new();
        self.written = 0;
        self.owed_turn = None;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Gathers `len` bytes (from `parts`) when they fit; `None` when they do
    /// not, after writing out what was gathered before.
    fn gather(&mut self, cx: &mut Context<'_>, len: usize, parts: &[&[u8]]) -> Poll<io::Result<Option<usize>>> {
        if self.due() {
            std::task::ready!(self.write_out(cx))?;
        }
        if self.buf.len() + len <= CAP {
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(CAP);
            }
            for p in parts {
                self.buf.extend_from_slice(p);
            }
            return Poll::Ready(Ok(Some(len)));
        }
        if !self.buf.is_empty() {
            std::task::ready!(self.write_out(cx))?;
        }
        Poll::Ready(Ok(None))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.due() {
            // If the socket is full, the write is tried again when it drains
            // (the task is woken then, and reads again).
            if let Poll::Ready(Err(e)) = this.write_out(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.gathering() {
            if let Some(n) = std::task::ready!(this.gather(cx, buf.len(), &[buf]))? {
                return Poll::Ready(Ok(n));
            }
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.gathering() {
            let len = bufs.iter().map(|b| b.len()).sum();
            let mut parts: [&[u8]; 4] = [&[]; 4];
            if len <= CAP && bufs.len() <= parts.len() {
                for (p, b) in parts.iter_mut().zip(bufs) {
                    *p = b;
                }
                if let Some(n) = std::task::ready!(this.gather(cx, len, &parts[..bufs.len()]))? {
                    return Poll::Ready(Ok(n));
                }
            } else if !this.buf.is_empty() {
                std::task::ready!(this.write_out(cx))?;
            }
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.buf.is_empty() {
            if !this.due() {
                // Put off to the next turn, which `poll_paced` runs at once.
                if this.owed_turn.is_none() {
                    this.owed_turn = Some(this.pacer.turn.load(Ordering::Relaxed));
                }
                this.pacer.owed.store(true, Ordering::Relaxed);
                return Poll::Ready(Ok(()));
            }
            return this.write_out(cx);
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.buf.is_empty() {
            std::task::ready!(this.write_out(cx))?;
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
