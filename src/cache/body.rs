//! A stored body that can be read while it is still being written.
//!
//! One writer (the fill) appends chunks as they arrive from the origin; any
//! number of readers follow it from any offset, each waking when new bytes
//! land. A writer that is dropped without `finish` fails the body, so a reader
//! never mistakes an abandoned fill for a clean end.
//!
//! Readers that stream the body register (`StoredBody::reader`), so the body
//! knows where each one is. A fill that grows past the largest storable size
//! turns the body into a *pass-through* (`BodyWriter::start_passing`): chunks
//! every reader has passed are released, the writer waits while the slowest
//! reader is more than `PASS_WINDOW` behind it (backpressure up to the origin),
//! and it learns when nobody can read the body any more, so the fill stops.

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How far the writer of a pass-through body may run ahead of its slowest
/// reader: the most a fill past the size limit holds beyond what it held when
/// it passed the limit.
pub const PASS_WINDOW: u64 = 1 << 20;

/// How often a waiting pass-through writer looks whether anyone can still read
/// the body (the last holder of a response that never started reading leaves
/// no wake-up behind).
const HOLDER_CHECK: Duration = Duration::from_millis(100);

/// The bytes of a body that lives on disk (a record of the disk tier).
#[allow(clippy::len_without_is_empty)]
pub trait Extent: Send + Sync + std::fmt::Debug {
    fn len(&self) -> u64;
    /// Whether the bytes are still there (not evicted or dropped).
    fn is_valid(&self) -> bool;
    /// Reads up to `max` bytes at `pos`. Blocking: call it from a blocking thread.
    fn read_at(&self, pos: u64, max: usize) -> std::io::Result<Bytes>;
    /// As `read_at`, if the bytes can be had without waiting for the disk
    /// (they are in the page cache): callable on an async worker. Else
    /// `WouldBlock`, and the caller uses `read_at` off the workers.
    fn read_cached(&self, _pos: u64, _max: usize) -> std::io::Result<Bytes> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
    /// How many bytes can be read now: ready once more than `pos` are (or
    /// all are). A body still being written to disk waits here for more.
    fn poll_available(&self, _pos: u64, _cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        Poll::Ready(Ok(self.len()))
    }
}

/// `Extent::read_cached`, with "the bytes are not in the page cache" as None.
pub fn read_now(d: &dyn Extent, pos: u64, max: usize) -> Option<std::io::Result<Bytes>> {
    match d.read_cached(pos, max) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        r => Some(r),
    }
}

/// The most a disk read hands out at once.
pub const DISK_CHUNK: usize = 512 << 10;

#[derive(Debug)]
pub struct StoredBody {
    /// Set once the fill has finished: the whole body, contiguous. Readers of a
    /// complete body never take the lock.
    complete: OnceLock<Bytes>,
    /// A whole body on disk, read in `DISK_CHUNK` pieces (never held whole).
    disk: Option<Arc<dyn Extent>>,
    state: Mutex<FillState>,
    /// The length the origin announced, if any.
    expected: Option<u64>,
}

#[derive(Debug)]
struct FillState {
    chunks: VecDeque<Bytes>,
    /// Offset of each chunk's first byte.
    starts: VecDeque<u64>,
    len: u64,
    end: End,
    wakers: Vec<Waker>,
    /// Past the size limit: not stored, read chunks are released, and `finish`
    /// leaves the chunks as they are.
    passing: bool,
    /// Registered readers: id and the offset of the next byte each needs.
    readers: Vec<(u64, u64)>,
    next_reader: u64,
    /// The pass-through writer waiting for room.
    writer_waker: Option<Waker>,
}

impl FillState {
    fn new(len: u64, end: End) -> FillState {
        FillState {
            chunks: VecDeque::new(),
            starts: VecDeque::new(),
            len,
            end,
            wakers: Vec::new(),
            passing: false,
            readers: Vec::new(),
            next_reader: 0,
            writer_waker: None,
        }
    }

    /// Offset of the first byte still held.
    fn base(&self) -> u64 {
        self.starts.front().copied().unwrap_or(self.len)
    }

    /// The slowest registered reader's position.
    fn slowest(&self) -> Option<u64> {
        self.readers.iter().map(|&(_, pos)| pos).min()
    }

    /// Releases (pass-through only) the chunks every registered reader has
    /// passed, and wakes a writer waiting for room.
    fn release(&mut self) {
        if !self.passing {
            return;
        }
        if let Some(min) = self.slowest() {
            while let (Some(&start), Some(chunk)) = (self.starts.front(), self.chunks.front()) {
                if start + chunk.len() as u64 > min {
                    break;
                }
                self.starts.pop_front();
                self.chunks.pop_front();
            }
        }
        if let Some(w) = self.writer_waker.take() {
            w.wake();
        }
    }

    /// Bytes the writer is ahead of the slowest reader (of what it holds, when
    /// no reader is registered).
    fn ahead(&self) -> u64 {
        self.len - self.slowest().unwrap_or_else(|| self.base()).min(self.len)
    }
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
            state: Mutex::new(FillState::new(0, End::Open)),
            expected,
            disk: None,
        });
        let writer = BodyWriter { body: body.clone(), finished: false };
        (body, writer)
    }

    /// A body that is already whole.
    pub fn complete(bytes: Bytes) -> Arc<StoredBody> {
        let len = bytes.len() as u64;
        let body = StoredBody {
            complete: OnceLock::new(),
            state: Mutex::new(FillState::new(len, End::Done)),
            expected: Some(len),
            disk: None,
        };
        let _ = body.complete.set(bytes);
        Arc::new(body)
    }

    /// A whole body that stays on disk: readers read it in pieces.
    pub fn on_disk(extent: Arc<dyn Extent>) -> Arc<StoredBody> {
        let len = extent.len();
        Arc::new(StoredBody {
            complete: OnceLock::new(),
            state: Mutex::new(FillState::new(len, End::Done)),
            expected: Some(len),
            disk: Some(extent),
        })
    }

    /// The disk extent, for a body that stays on disk.
    pub fn extent(&self) -> Option<&Arc<dyn Extent>> {
        self.disk.as_ref()
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

    /// Whether the fill went past the largest storable size: the body is a
    /// pass-through that no longer holds what its readers have passed.
    pub fn is_passing(&self) -> bool {
        self.complete.get().is_none() && self.lock().passing
    }

    pub fn is_failed(&self) -> bool {
        if let Some(d) = &self.disk {
            return !d.is_valid();
        }
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
        self.poll_read_as(None, pos, end, cx)
    }

    fn poll_read_as(
        &self,
        reader: Option<u64>,
        pos: u64,
        end: Option<u64>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, FillFailed>> {
        if let Some(all) = self.complete.get() {
            return Poll::Ready(Ok(slice_of(all, pos, end)));
        }
        if let Some(d) = &self.disk {
            // Without a reader to hold a pending read: read in place.
            let available = match available(d, pos, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(n)) => n,
            };
            return Poll::Ready(disk_read(d, pos, Some(end.unwrap_or(u64::MAX).min(available))));
        }
        let mut st = self.lock();
        match &st.end {
            // Finished between the check above and the lock: the chunks moved
            // into `complete`.
            End::Done if !st.passing => {
                drop(st);
                return Poll::Ready(Ok(self.complete.get().and_then(|all| slice_of(all, pos, end))));
            }
            End::Failed(why) => return Poll::Ready(Err(FillFailed(why.clone()))),
            End::Done | End::Open => {}
        }
        if end.is_some_and(|e| pos >= e) {
            return Poll::Ready(Ok(None));
        }
        if pos < st.len {
            if pos < st.base() {
                return Poll::Ready(Err(FillFailed(
                    "the object is too large to store and this part was already sent".into(),
                )));
            }
            // Binary search the chunk holding `pos`.
            let i = st.starts.partition_point(|&s| s <= pos).saturating_sub(1);
            let (start, chunk) = (st.starts[i], &st.chunks[i]);
            let from = (pos - start) as usize;
            let to = match end {
                Some(e) => (e.saturating_sub(start) as usize).min(chunk.len()),
                None => chunk.len(),
            };
            let piece = (from < to).then(|| chunk.slice(from..to));
            if let Some(id) = reader {
                let next = pos + piece.as_ref().map_or(0, |p| p.len() as u64);
                st.moved(id, next);
            }
            return Poll::Ready(Ok(piece));
        }
        if st.end == End::Done {
            return Poll::Ready(Ok(None));
        }
        if let Some(id) = reader {
            st.moved(id, pos);
        }
        if !st.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            st.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// A registered reader from `pos`: the writer of a pass-through body keeps
    /// the bytes it still needs and waits for it. Bodies already whole need no
    /// registration.
    pub fn reader(self: &Arc<Self>, pos: u64) -> BodyReader {
        let id = if self.complete.get().is_some() || self.disk.is_some() {
            None
        } else {
            let mut st = self.lock();
            let id = st.next_reader;
            st.next_reader += 1;
            st.readers.push((id, pos));
            Some(id)
        };
        BodyReader { body: self.clone(), id, pending: Mutex::new(None) }
    }

    /// Waits until at least `upto` bytes are stored or the fill ends.
    /// Returns the bytes available then. A pass-through body that does not
    /// hold `upto` bytes yet fails: waiting for its end would hold it all.
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
                End::Open if st.passing => {
                    return Poll::Ready(Err(FillFailed("the object is too large to store".into())))
                }
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
        if let Some(d) = &self.disk {
            // The whole body is read into memory (multipart ranges, token
            // rewriting): bounded by the largest object the disk holds.
            let d = d.clone();
            let len = d.len() as usize;
            // A body still being written to disk: all of it first.
            std::future::poll_fn(|cx| d.poll_available(d.len().saturating_sub(1), cx))
                .await
                .map_err(|e| FillFailed(format!("disk read: {e}").into()))?;
            let read = match read_now(&*d, 0, len) {
                Some(r) => Ok(r),
                None => tokio::task::spawn_blocking(move || d.read_at(0, len)).await,
            };
            return match read {
                Ok(Ok(b)) if b.len() == len => Ok(b),
                Ok(Ok(_)) => Err(FillFailed("the disk copy is shorter than its record".into())),
                Ok(Err(e)) => Err(FillFailed(format!("disk read: {e}").into())),
                Err(e) => Err(FillFailed(format!("disk read: {e}").into())),
            };
        }
        self.wait_for(u64::MAX).await?;
        match self.complete.get() {
            Some(b) => Ok(b.clone()),
            None => Err(FillFailed("fill ended without a body".into())),
        }
    }

    /// Bytes held in memory for this body.
    pub fn held(&self) -> u64 {
        if self.disk.is_some() {
            return 0;
        }
        match self.complete.get() {
            Some(b) => b.len() as u64,
            None => self.lock().chunks.iter().map(|c| c.len() as u64).sum(),
        }
    }
}

impl FillState {
    fn moved(&mut self, id: u64, pos: u64) {
        if let Some(r) = self.readers.iter_mut().find(|(i, _)| *i == id) {
            if r.1 != pos {
                r.1 = pos;
                self.release();
            }
        }
    }
}

/// A registered reader of a body (see `StoredBody::reader`); leaving (drop)
/// unregisters it.
#[derive(Debug)]
pub struct BodyReader {
    body: Arc<StoredBody>,
    id: Option<u64>,
    /// A disk read under way on the blocking pool, and the offset it reads.
    pending: Mutex<Option<(u64, tokio::task::JoinHandle<std::io::Result<Bytes>>)>>,
}

impl BodyReader {
    pub fn body(&self) -> &Arc<StoredBody> {
        &self.body
    }

    /// `StoredBody::poll_read`, recording this reader's position.
    pub fn poll_read(
        &self,
        pos: u64,
        end: Option<u64>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, FillFailed>> {
        let Some(d) = &self.body.disk else {
            return self.body.poll_read_as(self.id, pos, end, cx);
        };
        let stop = end.unwrap_or(u64::MAX).min(d.len());
        if pos >= stop {
            return Poll::Ready(Ok(None));
        }
        let available = match available(d, pos, cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(n)) => n,
        };
        let stop = stop.min(available);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.as_ref().is_some_and(|(at, _)| *at != pos) {
            if let Some((_, h)) = pending.take() {
                h.abort();
            }
        }
        let done = match pending.as_mut() {
            Some((_, handle)) => match std::pin::Pin::new(handle).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r,
            },
            None => {
                // Reads end on a `DISK_CHUNK` boundary, so that a range
                // starting mid-piece reads each checked piece once. From the
                // page cache, here; else on the blocking pool.
                let room = DISK_CHUNK as u64 - pos % DISK_CHUNK as u64;
                let max = (stop - pos).min(room) as usize;
                match read_now(&**d, pos, max) {
                    Some(r) => Ok(r),
                    None => {
                        let d = d.clone();
                        let mut handle = tokio::task::spawn_blocking(move || d.read_at(pos, max));
                        match std::pin::Pin::new(&mut handle).poll(cx) {
                            Poll::Pending => {
                                *pending = Some((pos, handle));
                                return Poll::Pending;
                            }
                            Poll::Ready(r) => r,
                        }
                    }
                }
            }
        };
        *pending = None;
        Poll::Ready(match done {
            Ok(Ok(b)) if b.is_empty() => Err(FillFailed("the disk copy ended early".into())),
            Ok(Ok(b)) => Ok(Some(b)),
            Ok(Err(e)) => Err(FillFailed(format!("disk read: {e}").into())),
            Err(e) => Err(FillFailed(format!("disk read: {e}").into())),
        })
    }
}

/// How much of a disk body can be read now (`Extent::poll_available`).
fn available(d: &Arc<dyn Extent>, pos: u64, cx: &mut Context<'_>) -> Poll<Result<u64, FillFailed>> {
    d.poll_available(pos, cx).map_err(|e| FillFailed(format!("disk read: {e}").into()))
}

/// Reads the next piece of a disk body in place (no reader to hold a pending
/// read): for the few callers that read without one.
fn disk_read(d: &Arc<dyn Extent>, pos: u64, end: Option<u64>) -> Result<Option<Bytes>, FillFailed> {
    let stop = end.unwrap_or(u64::MAX).min(d.len());
    if pos >= stop {
        return Ok(None);
    }
    match d.read_at(pos, (stop - pos).min(DISK_CHUNK as u64) as usize) {
        Ok(b) if b.is_empty() => Err(FillFailed("the disk copy ended early".into())),
        Ok(b) => Ok(Some(b)),
        Err(e) => Err(FillFailed(format!("disk read: {e}").into())),
    }
}

impl Drop for BodyReader {
    fn drop(&mut self) {
        if let Some((_, h)) = self.pending.get_mut().ok().and_then(Option::take) {
            h.abort();
        }
        if let Some(id) = self.id {
            let mut st = self.body.lock();
            st.readers.retain(|(i, _)| *i != id);
            st.release();
        }
    }
}

fn slice_of(all: &Bytes, pos: u64, end: Option<u64>) -> Option<Bytes> {
    let stop = end.unwrap_or(u64::MAX).min(all.len() as u64);
    (pos < stop).then(|| all.slice(pos as usize..stop as usize))
}

/// What a pass-through writer may do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// Read the next chunk from the origin.
    Go,
    /// Nobody can read this body any more: stop the fill.
    Nobody,
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
            st.starts.push_back(start);
            st.chunks.push_back(chunk);
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

    /// The body will not be stored: from now on chunks every reader has
    /// passed are released, and `room` applies backpressure.
    pub fn start_passing(&mut self) {
        let mut st = self.body.lock();
        st.passing = true;
        st.release();
    }

    /// Nobody holds the body but this writer: no reader, and no response or
    /// stored object that could still make one.
    fn alone(&self) -> bool {
        Arc::strong_count(&self.body) == 1
    }

    /// For a pass-through body: waits until the slowest reader is less than
    /// `PASS_WINDOW` behind, or says that nobody can read the body any more.
    /// A stored body always has room (its size is bounded by the limit).
    pub async fn room(&self) -> Room {
        loop {
            let wait = std::future::poll_fn(|cx| {
                let mut st = self.body.lock();
                if !st.passing {
                    return Poll::Ready(Room::Go);
                }
                if st.readers.is_empty() && self.alone() {
                    return Poll::Ready(Room::Nobody);
                }
                if st.ahead() < PASS_WINDOW {
                    return Poll::Ready(Room::Go);
                }
                st.writer_waker = Some(cx.waker().clone());
                Poll::Pending
            });
            if let Ok(room) = tokio::time::timeout(HOLDER_CHECK, wait).await {
                return room;
            }
        }
    }

    /// Ends the body cleanly. Chunks are joined into one buffer here, once, so
    /// that every later hit and range is a slice of it. A pass-through body is
    /// not joined: its readers read the chunks that are left.
    pub fn finish(mut self) {
        self.finished = true;
        let wakers = {
            let mut st = self.body.lock();
            if !st.passing {
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
                let _ = self.body.complete.set(all);
            }
            st.end = End::Done;
            std::mem::take(&mut st.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
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
