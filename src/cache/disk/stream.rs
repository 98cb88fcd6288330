//! Fills too large for memory, streamed to disk as they arrive.
//!
//! When a fill grows past the memory tier's largest object, its body turns
//! into a pass-through (`BodyWriter::start_passing`). With a disk tier that
//! admits it, a stream joins that body as one more registered reader: it takes
//! room for the whole record in the ring (`Job::Reserve`, a `Pending` record),
//! writes the body there as it arrives, and makes the record an `Object` when
//! the last byte and the per-piece checksums are written. The fill belongs to
//! the cache: it runs to its end while the stream reads, whoever else leaves.
//!
//! Viewers who ask for the object meanwhile read it from disk as it is
//! written (`Growing`): up to the bytes written so far, then waiting for more,
//! as readers of a memory fill do.

use super::index::IndexEntry;
use super::log::{Location, Segment};
use super::record::{self, Kind, RecordHeader, PIECE};
use super::{DiskStore, Job, Stats};
use crate::cache::body::{BodyReader, Extent};
use crate::cache::object::Object;
use bytes::Bytes;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

/// At most this many fills stream to disk at once (each holds at most the
/// pass-through window of its body in memory).
pub const MAX_STREAMS: usize = 64;
/// Streams together reserve at most `size / RESERVE_SHARE` of the disk.
pub const RESERVE_SHARE: u64 = 4;
/// What a stream gathers before one positional write.
const BATCH: u64 = 256 << 10;

/// How far a stream to disk has got: shared by the stream and the viewers
/// reading it as it grows.
#[derive(Debug)]
pub struct Progress {
    len: u64,
    /// The record's segment and body location, once room was taken.
    placed: OnceLock<(Arc<Segment>, Location)>,
    /// Body bytes written so far.
    written: AtomicU64,
    state: Mutex<Waiting>,
    stats: Arc<Stats>,
}

#[derive(Debug, Default)]
struct Waiting {
    /// Some(true): complete; Some(false): failed.
    ended: Option<bool>,
    wakers: Vec<Waker>,
}

impl Progress {
    pub fn new(len: u64, stats: Arc<Stats>) -> Progress {
        Progress { len, placed: OnceLock::new(), written: AtomicU64::new(0), state: Mutex::default(), stats }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // Every update is a single assignment or push: a poisoned lock is sound.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn advance(&self, to: u64) {
        self.written.store(to, Ordering::Release);
        let wakers = std::mem::take(&mut self.lock().wakers);
        wakers.into_iter().for_each(Waker::wake);
    }

    fn end(&self, ok: bool) {
        let wakers = {
            let mut st = self.lock();
            st.ended = Some(ok);
            std::mem::take(&mut st.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    fn failed(&self) -> bool {
        self.lock().ended == Some(false)
    }
}

/// A body being streamed to disk, read as it grows.
#[derive(Debug)]
pub struct Growing(pub Arc<Progress>);

impl Extent for Growing {
    fn len(&self) -> u64 {
        self.0.len
    }

    fn is_valid(&self) -> bool {
        !self.0.failed()
            && self.0.placed.get().is_none_or(|(seg, loc)| seg.generation.load(Ordering::Acquire) == loc.generation)
    }

    fn read_at(&self, pos: u64, max: usize) -> std::io::Result<Bytes> {
        let gone = || std::io::Error::other("the disk copy being written was dropped");
        let written = self.0.written.load(Ordering::Acquire);
        let (Some((seg, loc)), true) = (self.0.placed.get(), self.is_valid()) else {
            return Err(gone());
        };
        let end = written.min(pos.saturating_add(max as u64));
        if pos >= end {
            return Ok(Bytes::new());
        }
        let started = std::time::Instant::now();
        let r = super::log::read_bytes(&seg.file, loc.body_at + pos, (end - pos) as usize, false);
        self.0.stats.read_latency.record(started.elapsed());
        self.0.stats.reads.fetch_add(1, Ordering::Relaxed);
        let buf = match r {
            Ok(b) => b,
            Err(e) => {
                self.0.stats.read_errors.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        if !self.is_valid() {
            return Err(gone());
        }
        self.0.stats.read_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf)
    }

    fn poll_available(&self, pos: u64, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        let ready = |p: &Progress| {
            let w = p.written.load(Ordering::Acquire);
            (w > pos || w >= p.len).then_some(w)
        };
        if let Some(w) = ready(&self.0) {
            return Poll::Ready(Ok(w));
        }
        let mut st = self.0.lock();
        // Checked again under the lock: an advance in between wakes no one.
        if let Some(w) = ready(&self.0) {
            return Poll::Ready(Ok(w));
        }
        if st.ended.is_some() {
            return Poll::Ready(Err(std::io::Error::other("the stream to disk ended early")));
        }
        if !st.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            st.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// One fill streaming to disk.
pub(super) struct Stream {
    pub disk: Arc<DiskStore>,
    pub primary: Box<str>,
    pub secondary: Box<str>,
    pub obj: Arc<Object>,
    pub progress: Arc<Progress>,
    pub reader: BodyReader,
}

impl Stream {
    pub async fn run(self) {
        let ok = match self.write().await {
            Ok(ok) => ok,
            Err(e) => {
                self.disk.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                self.disk.stop_writing(&format!(
                    "disk cache write failed, writing stops until a retry succeeds (memory only meanwhile): {e}"
                ));
                false
            }
        };
        drop(self.reader);
        if !ok {
            self.disk.stats.refused_stream.fetch_add(1, Ordering::Relaxed);
        }
        self.disk.stream_ended(&self.primary, &self.secondary, &self.progress);
        self.progress.end(ok);
    }

    /// Writes the record; Ok(false) when it was given up (no room, the fill
    /// failed, the segment was reused, an invalidation).
    async fn write(&self) -> std::io::Result<bool> {
        let len = self.progress.len;
        let meta = record::encode_object(&self.primary, &self.secondary, &self.obj);
        let stored_ms = record::unix_ms(record::wall_time(self.obj.head().stored_at));
        let (reply, placed) = tokio::sync::oneshot::channel();
        let job = Job::Reserve { meta: meta.clone(), body_len: len, stored_ms, reply };
        if self.disk.tx.try_send(job).is_err() {
            return Ok(false);
        }
        let Ok(Some((seg, start, loc))) = placed.await else { return Ok(false) };
        let _ = self.progress.placed.set((seg.clone(), loc));
        let started = std::time::Instant::now();
        let mut sums = Sums::new(&meta, len);
        let mut pos = 0u64;
        loop {
            // One chunk (waiting for it), then what else is there at once.
            let mut batch: Vec<Bytes> = Vec::new();
            let mut batch_len = 0u64;
            let mut ended = false;
            loop {
                let at = pos + batch_len;
                let wait = batch.is_empty();
                let next = std::future::poll_fn(|cx| match self.reader.poll_read(at, None, cx) {
                    Poll::Pending if !wait => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(r) => Poll::Ready(Some(r)),
                })
                .await;
                match next {
                    None => break,
                    Some(Ok(Some(b))) => {
                        batch_len += b.len() as u64;
                        batch.push(b);
                        if batch_len >= BATCH {
                            break;
                        }
                    }
                    Some(Ok(None)) => {
                        ended = true;
                        break;
                    }
                    // The fill failed: nothing is kept.
                    Some(Err(_)) => return Ok(false),
                }
            }
            if pos + batch_len > len || (ended && pos + batch_len != len) || self.obj.is_invalidated() {
                return Ok(false);
            }
            batch.iter().for_each(|b| sums.update(b));
            if !batch.is_empty() {
                let (seg, at) = (seg.clone(), loc.body_at + pos);
                let generation = loc.generation;
                let wrote = tokio::task::spawn_blocking(move || write_in_place(&seg, generation, at, &batch))
                    .await
                    .map_err(std::io::Error::other)??;
                if !wrote {
                    return Ok(false);
                }
                pos += batch_len;
                self.progress.advance(pos);
            }
            if ended {
                break;
            }
        }
        // The trailer, then the header that makes the record an object.
        let (crc, pieces) = sums.finish();
        let header = RecordHeader {
            kind: Kind::Object,
            meta_len: meta.len() as u32,
            body_len: len,
            stored_ms,
            crc,
            pieces: pieces.as_ref().map_or(0, |p| p.len() as u32),
        };
        let mut tail = Vec::new();
        if let Some(p) = &pieces {
            tail.push(Bytes::from(record::encode_trailer(p)));
        }
        let (seg2, generation, body_end) = (seg.clone(), loc.generation, loc.body_at + len);
        let head = Bytes::copy_from_slice(&header.encode());
        let done = tokio::task::spawn_blocking(move || {
            Ok::<_, std::io::Error>(
                write_in_place(&seg2, generation, body_end, &tail)?
                    && write_in_place(&seg2, generation, start, &[head])?,
            )
        })
        .await
        .map_err(std::io::Error::other)??;
        if !done || self.obj.is_invalidated() {
            return Ok(false);
        }
        let loc = Location { crc, ..loc };
        let entry = IndexEntry {
            secondary: self.secondary.clone(),
            vary: self.obj.vary.clone(),
            loc,
            stored_ms,
            hits: 0,
            meta: meta.into(),
            memory: std::sync::Weak::new(),
            pieces: pieces.map(Into::into),
        };
        self.disk.add_streamed(&self.primary, entry, started.elapsed());
        Ok(true)
    }
}

/// Writes these bytes at `at` if the segment was not reused (false if it was).
fn write_in_place(seg: &Segment, generation: u64, at: u64, parts: &[Bytes]) -> std::io::Result<bool> {
    let _reuse = seg.reuse.read().unwrap_or_else(|e| e.into_inner());
    if seg.generation.load(Ordering::Acquire) != generation {
        return Ok(false);
    }
    let mut at = at;
    for p in parts {
        seg.file.write_all_at(p, at)?;
        at += p.len() as u64;
    }
    Ok(true)
}

/// The record's CRC-32 and per-piece checksums, computed as the body passes.
struct Sums {
    all: crc32fast::Hasher,
    /// None when the body is small enough to carry no per-piece checksums.
    pieces: Option<(Vec<u32>, crc32fast::Hasher, u64)>,
}

impl Sums {
    fn new(meta: &[u8], len: u64) -> Sums {
        let mut all = crc32fast::Hasher::new();
        all.update(meta);
        let pieces = (record::pieces_for(len) > 0).then(|| (Vec::new(), crc32fast::Hasher::new(), 0));
        Sums { all, pieces }
    }

    fn update(&mut self, mut b: &[u8]) {
        self.all.update(b);
        let Some((done, piece, filled)) = &mut self.pieces else { return };
        while !b.is_empty() {
            let n = ((PIECE - *filled) as usize).min(b.len());
            piece.update(&b[..n]);
            *filled += n as u64;
            b = &b[n..];
            if *filled == PIECE {
                done.push(std::mem::replace(piece, crc32fast::Hasher::new()).finalize());
                *filled = 0;
            }
        }
    }

    fn finish(self) -> (u32, Option<Vec<u32>>) {
        let pieces = self.pieces.map(|(mut done, piece, filled)| {
            if filled > 0 {
                done.push(piece.finalize());
            }
            done
        });
        (self.all.finalize(), pieces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_match_the_whole_body_computation() {
        let body: Vec<u8> = (0..(17 * PIECE + 123)).map(|i| (i * 7 % 251) as u8).collect();
        let meta = b"meta";
        let mut s = Sums::new(meta, body.len() as u64);
        for chunk in body.chunks(10_007) {
            s.update(chunk);
        }
        let (crc, pieces) = s.finish();
        let mut whole = crc32fast::Hasher::new();
        whole.update(meta);
        whole.update(&body);
        assert_eq!(crc, whole.finalize());
        assert_eq!(pieces, Some(record::piece_crcs(&body)));
    }
}
