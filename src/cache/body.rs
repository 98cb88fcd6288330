//! A stored body that can be read while it is still being written.
//!
//! One writer (the fill) appends chunks as they arrive from the origin; any
//! number of readers follow it from any offset, each waking when new bytes
//! land. A writer that is dropped without `finish` fails the body, so a reader
//! never mistakes an abandoned fill for a clean end.

use bytes::{Bytes, BytesMut};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

#[derive(Debug)]
pub struct StoredBody {
    /// Set once the fill has finished: the whole body, contiguous. Readers of a
    /// complete body never take the lock.
    complete: OnceLock<Bytes>,
    state: Mutex<FillState>,
    /// The length the origin announced, if any.
    expected: Option<u64>,
}

#[derive(Debug)]
struct FillState {
    chunks: Vec<Bytes>,
    /// Offset of each chunk's first byte.
    starts: Vec<u64>,
    len: u64,
    end: End,
    wakers: Vec<Waker>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Open,
    Done,
    Failed(Arc<str>),
}

/// Why a body could not be read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillFailed(pub Arc<str>);

impl std::fmt::Display for FillFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "origin fill failed: {}", self.0)
    }
}

impl std::error::Error for FillFailed {}

impl StoredBody {
    /// An empty body waiting for its writer.
    pub fn filling(expected: Option<u64>) -> (Arc<StoredBody>, BodyWriter) {
        let body = Arc::new(StoredBody {
            complete: OnceLock::new(),
            state: Mutex::new(FillState {
                chunks: Vec::new(),
                starts: Vec::new(),
                len: 0,
                end: End::Open,
                wakers: Vec::new(),
            }),
            expected,
        });
        let writer = BodyWriter { body: body.clone(), finished: false };
        (body, writer)
    }

    /// A body that is already whole.
    pub fn complete(bytes: Bytes) -> Arc<StoredBody> {
        let len = bytes.len() as u64;
        let body = StoredBody {
            complete: OnceLock::new(),
            state: Mutex::new(FillState {
                chunks: Vec::new(),
                starts: Vec::new(),
                len,
                end: End::Done,
                wakers: Vec::new(),
            }),
            expected: Some(len),
        };
        let _ = body.complete.set(bytes);
        Arc::new(body)
    }

    fn lock(&self) -> MutexGuard<'_, FillState> {
        // A panic while holding this lock cannot leave the state inconsistent
        // (every update is a single push or assignment), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The whole body, once the fill has finished.
    pub fn bytes(&self) -> Option<&Bytes> {
        self.complete.get()
    }

    /// The total length if known: the finished length, or the announced one.
    pub fn total_len(&self) -> Option<u64> {
        match self.complete.get() {
            Some(b) => Some(b.len() as u64),
            None => self.expected,
        }
    }

    /// Bytes stored so far.
    pub fn available(&self) -> u64 {
        match self.complete.get() {
            Some(b) => b.len() as u64,
            None => self.lock().len,
        }
    }

    pub fn is_failed(&self) -> bool {
        self.complete.get().is_none() && matches!(self.lock().end, End::Failed(_))
    }

    /// Reads the next piece at `pos`, at most up to `end` (exclusive).
    /// `Ready(Ok(None))` is the clean end; a failed fill is an error.
    pub fn poll_read(
        &self,
        pos: u64,
        end: Option<u64>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, FillFailed>> {
        if let Some(all) = self.complete.get() {
            return Poll::Ready(Ok(slice_of(all, pos, end)));
        }
        let mut st = self.lock();
        match &st.end {
            // Finished between the check above and the lock: the chunks moved
            // into `complete`.
            End::Done => {
                drop(st);
                return Poll::Ready(Ok(self.complete.get().and_then(|all| slice_of(all, pos, end))));
            }
            End::Failed(why) => return Poll::Ready(Err(FillFailed(why.clone()))),
            End::Open => {}
        }
        if end.is_some_and(|e| pos >= e) {
            return Poll::Ready(Ok(None));
        }
        if pos < st.len {
            // Binary search the chunk holding `pos`.
            let i = st.starts.partition_point(|&s| s <= pos).saturating_sub(1);
            let (start, chunk) = (st.starts[i], &st.chunks[i]);
            let from = (pos - start) as usize;
            let to = match end {
                Some(e) => (e.saturating_sub(start) as usize).min(chunk.len()),
                None => chunk.len(),
            };
            return Poll::Ready(Ok((from < to).then(|| chunk.slice(from..to))));
        }
        if !st.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            st.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Waits until at least `upto` bytes are stored or the fill ends.
    /// Returns the bytes available then.
    pub async fn wait_for(&self, upto: u64) -> Result<u64, FillFailed> {
        std::future::poll_fn(|cx| {
            if let Some(all) = self.complete.get() {
                return Poll::Ready(Ok(all.len() as u64));
            }
            let mut st = self.lock();
            match &st.end {
                End::Failed(why) => return Poll::Ready(Err(FillFailed(why.clone()))),
                End::Done => return Poll::Ready(Ok(st.len)),
                End::Open if st.len >= upto => return Poll::Ready(Ok(st.len)),
                End::Open => {}
            }
            if !st.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                st.wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Waits for the whole body.
    pub async fn wait_complete(&self) -> Result<Bytes, FillFailed> {
        self.wait_for(u64::MAX).await?;
        match self.complete.get() {
            Some(b) => Ok(b.clone()),
            None => Err(FillFailed("fill ended without a body".into())),
        }
    }
}

fn slice_of(all: &Bytes, pos: u64, end: Option<u64>) -> Option<Bytes> {
    let stop = end.unwrap_or(u64::MAX).min(all.len() as u64);
    (pos < stop).then(|| all.slice(pos as usize..stop as usize))
}

/// The fill's handle: appends, finishes or fails the body.
#[derive(Debug)]
pub struct BodyWriter {
    body: Arc<StoredBody>,
    finished: bool,
}

impl BodyWriter {
    pub fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        let wakers = {
            let mut st = self.body.lock();
            let start = st.len;
            st.len += chunk.len() as u64;
            st.starts.push(start);
            st.chunks.push(chunk);
            std::mem::take(&mut st.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    pub fn len(&self) -> u64 {
        self.body.lock().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends the body cleanly. Chunks are joined into one buffer here, once, so
    /// that every later hit and range is a slice of it.
    pub fn finish(mut self) -> Bytes {
        self.finished = true;
        let (all, wakers) = {
            let mut st = self.body.lock();
            let chunks = std::mem::take(&mut st.chunks);
            st.starts.clear();
            let all = if chunks.len() == 1 {
                chunks.into_iter().next().unwrap_or_default()
            } else {
                let mut joined = BytesMut::with_capacity(st.len as usize);
                for c in &chunks {
                    joined.extend_from_slice(c);
                }
                joined.freeze()
            };
            let _ = self.body.complete.set(all.clone());
            st.end = End::Done;
            (all, std::mem::take(&mut st.wakers))
        };
        wakers.into_iter().for_each(Waker::wake);
        all
    }

    /// Fails the body: every reader's response ends in an error.
    pub fn fail(mut self, why: &str) {
        self.finished = true;
        self.fail_inner(why);
    }

    fn fail_inner(&mut self, why: &str) {
        let wakers = {
            let mut st = self.body.lock();
            st.end = End::Failed(why.into());
            st.chunks.clear();
            st.starts.clear();
            std::mem::take(&mut st.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl Drop for BodyWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.fail_inner("fill abandoned");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    async fn read_all(body: &StoredBody, mut pos: u64, end: Option<u64>) -> Result<Vec<u8>, FillFailed> {
        let mut out = Vec::new();
        loop {
            match poll_fn(|cx| body.poll_read(pos, end, cx)).await? {
                Some(b) => {
                    pos += b.len() as u64;
                    out.extend_from_slice(&b);
                }
                None => return Ok(out),
            }
        }
    }

    #[tokio::test]
    async fn readers_follow_the_writer() {
        let (body, mut w) = StoredBody::filling(None);
        let b2 = body.clone();
        let reader = tokio::spawn(async move { read_all(&b2, 2, None).await });
        tokio::task::yield_now().await;
        w.push(Bytes::from_static(b"hello "));
        tokio::task::yield_now().await;
        w.push(Bytes::from_static(b"world"));
        w.finish();
        assert_eq!(reader.await.unwrap().unwrap(), b"llo world");
        assert_eq!(read_all(&body, 3, Some(8)).await.unwrap(), b"lo wo");
    }

    #[tokio::test]
    async fn dropped_writer_fails_readers() {
        let (body, mut w) = StoredBody::filling(Some(100));
        w.push(Bytes::from_static(b"partial"));
        let b2 = body.clone();
        let reader = tokio::spawn(async move { read_all(&b2, 0, None).await });
        tokio::task::yield_now().await;
        drop(w);
        assert!(reader.await.unwrap().is_err());
        assert!(body.is_failed());
    }

    #[tokio::test]
    async fn bounded_read_before_fill_ends() {
        let (body, mut w) = StoredBody::filling(None);
        w.push(Bytes::from_static(b"0123456789"));
        assert_eq!(read_all(&body, 2, Some(5)).await.unwrap(), b"234");
        assert_eq!(body.wait_for(5).await.unwrap(), 10);
        drop(w);
    }
}
