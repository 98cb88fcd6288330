//! The body of every response the edge sends: whole bytes, pieces, a stored
//! body read as it fills, or an origin body passed through. It counts the bytes
//! it sends and completes the access-log line when it ends or is dropped.

use crate::cache::body::{BodyReader, StoredBody};
use crate::log::Pending;
use crate::metrics::DistStats;
use crate::origin::OriginBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct EdgeBody {
    kind: Kind,
    sent: u64,
    /// The length the response announced, to tell a finished body from a cut one
    /// when the connection stops polling right after the last byte.
    expected: Option<u64>,
    log: Option<Box<Pending>>,
    /// The distribution's statistics and this response's head size: bytes to
    /// viewers are counted when the body ends (or is dropped).
    meter: Option<(Arc<DistStats>, u64)>,
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Pieces(VecDeque<Bytes>),
    Stored {
        reader: BodyReader,
        pos: u64,
        end: Option<u64>,
    },
    Origin(OriginBody),
    /// Chunks a producer task sends (a sliced object).
    Channel(tokio::sync::mpsc::Receiver<Result<Bytes, BoxError>>),
    /// The body broke: the error, held back for one turn (see `poll_frame`).
    Failed(Option<BoxError>),
}

impl EdgeBody {
    fn of(kind: Kind) -> EdgeBody {
        EdgeBody { kind, sent: 0, expected: None, log: None, meter: None }
    }

    pub fn empty() -> EdgeBody {
        Self::of(Kind::Empty)
    }

    pub fn full(b: Bytes) -> EdgeBody {
        Self::of(Kind::Full(Some(b)))
    }

    pub fn pieces(p: Vec<Bytes>) -> EdgeBody {
        Self::of(Kind::Pieces(p.into()))
    }

    /// Bytes `start..end` of a stored body (to its end if `end` is `None`),
    /// following the fill if it is still arriving (as a registered reader, so a
    /// fill too large to store streams at this viewer's pace).
    pub fn stored(body: Arc<StoredBody>, start: u64, end: Option<u64>) -> EdgeBody {
        let end = end.or_else(|| body.total_len());
        Self::of(Kind::Stored { reader: body.reader(start), pos: start, end })
    }

    pub fn origin(b: OriginBody) -> EdgeBody {
        Self::of(Kind::Origin(b))
    }

    /// Chunks sent on a channel by a producer; an error ends the body cut.
    pub fn channel(rx: tokio::sync::mpsc::Receiver<Result<Bytes, BoxError>>) -> EdgeBody {
        Self::of(Kind::Channel(rx))
    }

    pub fn attach_log(&mut self, log: Box<Pending>, expected: Option<u64>) {
        self.log = Some(log);
        self.expected = expected;
    }

    pub fn attach_meter(&mut self, stats: Arc<DistStats>, head_bytes: u64) {
        self.meter = Some((stats, head_bytes));
    }

    fn finish_log(&mut self, complete: bool) {
        if let Some(log) = self.log.take() {
            log.finish(self.sent, complete);
        }
        if let Some((stats, head)) = self.meter.take() {
            stats.record_bytes_out(head, self.sent);
        }
    }
}

impl Drop for EdgeBody {
    fn drop(&mut self) {
        let complete = self.is_end_stream() || self.expected == Some(self.sent);
        self.finish_log(complete);
    }
}

impl Body for EdgeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(log) = this.log.as_mut() {
            log.first_byte();
        }
        let next: Poll<Option<Result<Bytes, BoxError>>> = match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(b) => Poll::Ready(b.take().map(Ok)),
            Kind::Pieces(p) => Poll::Ready(p.pop_front().map(Ok)),
            Kind::Stored { reader, pos, end } => match reader.poll_read(*pos, *end, cx) {
                Poll::Ready(Ok(Some(b))) => {
                    *pos += b.len() as u64;
                    Poll::Ready(Some(Ok(b)))
                }
                Poll::Ready(Ok(None)) => {
                    *end = Some(*pos);
                    Poll::Ready(None)
                }
                Poll::Ready(Err(e)) => Poll::Ready(Some(Err(Box::new(e) as BoxError))),
                Poll::Pending => Poll::Pending,
            },
            Kind::Origin(o) => match o.poll_chunk(cx) {
                Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(b))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e) as BoxError))),
                Poll::Ready(None) => {
                    this.kind = Kind::Empty;
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
            Kind::Channel(rx) => match rx.poll_recv(cx) {
                Poll::Ready(None) => {
                    this.kind = Kind::Empty;
                    Poll::Ready(None)
                }
                other => other,
            },
            Kind::Failed(e) => Poll::Ready(e.take().map(Err)),
        };
        match next {
            Poll::Ready(Some(Ok(b))) => {
                this.sent += b.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            Poll::Ready(Some(Err(e))) if !matches!(this.kind, Kind::Failed(_)) => {
                // An error is reported one turn late: HTTP/1.1 connections drop
                // a response whose body errors before its head (and the bytes
                // that came before the error) went out, and a fill that broke
                // early (a short body, say) must still reach the viewer as a
                // 200 cut short, not as a connection closed without an answer.
                this.kind = Kind::Failed(Some(e));
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish_log(false);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish_log(true);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(b) => b.is_none(),
            Kind::Pieces(p) => p.is_empty(),
            Kind::Stored { pos, end, .. } => end.is_some_and(|e| *pos >= e),
            Kind::Origin(_) | Kind::Channel(_) | Kind::Failed(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Pieces(p) => SizeHint::with_exact(p.iter().map(|b| b.len() as u64).sum()),
            Kind::Stored { pos, end: Some(e), .. } => SizeHint::with_exact(e.saturating_sub(*pos)),
            _ => SizeHint::default(),
        }
    }
}
