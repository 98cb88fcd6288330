//! The writer thread: all writes of the disk tier, in the order they were
//! queued. Before the oldest segment is emptied, its hot records (hit since
//! they were written or last copied) are copied forward to the new head of
//! the ring, as log-structured caches do, so that a hot object is not lost
//! just because it was written long ago. A write that fails, or files found
//! gone from the directory, stop the tier (memory only from then on), with
//! one log line and the `writable` gauge at 0.

use super::index::{Index, IndexEntry};
use super::log::{Appender, Location};
use super::record::{self, Kind, RECORD_HEADER};
use super::{Job, Stats, DONE, RELEASED, TOUCHED, TWICE};
use crate::cache::object::Object;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub(super) struct Writer {
    pub appender: Appender,
    pub index: Arc<Index>,
    pub stats: Arc<Stats>,
    pub queued_bytes: Arc<AtomicU64>,
    pub writable: Arc<AtomicBool>,
    /// Set while another process holds the directory: jobs are dropped.
    pub suspended: Arc<AtomicBool>,
    pub path: std::path::PathBuf,
    /// After a write fault, how long until writing is tried again.
    pub retry: std::time::Duration,
    /// When writing last stopped (a fault), while it is stopped.
    pub stopped_at: Option<Instant>,
    /// The files were removed under the edge: writing never resumes.
    pub removed: bool,
}

impl Writer {
    pub fn run(mut self, rx: std::sync::mpsc::Receiver<Job>) {
        loop {
            let job = match rx.recv_timeout(self.retry) {
                Ok(job) => job,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    self.try_resume();
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            };
            if !self.writable.load(Ordering::Relaxed) && self.stopped_at.is_some_and(|t| t.elapsed() >= self.retry) {
                self.try_resume();
            }
            if self.suspended.load(Ordering::Acquire) {
                // Another process writes the directory now: nothing more from
                // this one (a waiter is still told).
                match job {
                    Job::Object { obj, .. } => {
                        let size = obj.body.bytes().map_or(0, |b| b.len() as u64);
                        self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                    }
                    Job::Invalidate(_, _, done) | Job::Barrier(done) => {
                        let _ = done.try_send(());
                    }
                    Job::Purge(_) | Job::Reserve { .. } => {}
                }
                continue;
            }
            let r = match job {
                Job::Object { primary, secondary, obj } => {
                    let size = obj.body.bytes().map_or(0, |b| b.len() as u64);
                    let r = self.object(&primary, &secondary, &obj);
                    self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                    r
                }
                Job::Purge(k) => {
                    let meta = record::encode_purge(&k);
                    self.write(Kind::PurgeKey, &meta, &[], record::unix_ms(std::time::SystemTime::now())).map(|_| ())
                }
                Job::Invalidate(d, paths, done) => {
                    let meta = record::encode_invalidation(&d, &paths);
                    let r = self
                        .write(Kind::Invalidation, &meta, &[], record::unix_ms(std::time::SystemTime::now()))
                        .map(|_| ());
                    let _ = done.try_send(());
                    r
                }
                Job::Barrier(done) => {
                    let _ = done.try_send(());
                    Ok(())
                }
                Job::Reserve { meta, body_len, stored_ms, reply } => {
                    let r = self.reserve(&meta, body_len, stored_ms);
                    let _ = reply.send(r.as_ref().ok().cloned().flatten());
                    r.map(|_| ())
                }
            };
            if let Err(e) = r {
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                self.stop(&format!(
                    "disk cache write failed, writing stops until a retry succeeds (memory only meanwhile): {e}"
                ));
            }
        }
    }

    /// Stops writing, with one log line (until writing resumes).
    fn stop(&mut self, why: &str) {
        self.stopped_at = Some(Instant::now());
        if self.writable.swap(false, Ordering::Relaxed) {
            tracing::error!(path = %self.path.display(), retry_in_s = self.retry.as_secs(), "{why}");
        }
    }

    /// `write_retry` after a write fault: if the files are still the ones
    /// this edge opened and the active segment's header can be written
    /// again, writing resumes (a disk that had filled up was freed, a
    /// read-only flag was cleared). Files removed under the edge never
    /// resume: what they held was dropped from the index.
    fn try_resume(&mut self) {
        if self.writable.load(Ordering::Relaxed) || self.suspended.load(Ordering::Acquire) || self.removed {
            return;
        }
        // Stopped elsewhere (a stream's write failed): the wait starts now.
        let Some(at) = self.stopped_at else {
            self.stopped_at = Some(Instant::now());
            return;
        };
        if at.elapsed() < self.retry {
            return;
        }
        self.stopped_at = Some(Instant::now());
        let seg = &self.appender.segments[self.appender.active];
        let generation = seg.generation.load(Ordering::Acquire);
        let probe = if generation == 0 {
            Ok(())
        } else {
            seg.file.write_all_at(&record::segment_header(generation), 0).and_then(|_| seg.file.sync_data())
        };
        match probe {
            Ok(()) if self.files_in_place() => {
                self.writable.store(true, Ordering::Relaxed);
                self.stopped_at = None;
                tracing::warn!(path = %self.path.display(), "disk cache writes resume");
            }
            _ => {}
        }
    }

    /// Whether the active segment's file is still the one this edge opened
    /// (it was not removed, nor the directory moved or replaced).
    fn files_in_place(&self) -> bool {
        let seg = &self.appender.segments[self.appender.active];
        let (Ok(open), Ok(named)) = (seg.file.metadata(), std::fs::metadata(super::segment_path(&self.path, seg.id)))
        else {
            return false;
        };
        open.nlink() > 0 && open.ino() == named.ino() && open.dev() == named.dev()
    }

    fn object(&mut self, primary: &str, secondary: &str, obj: &Arc<Object>) -> std::io::Result<()> {
        let Some(body) = obj.body.bytes() else { return Ok(()) };
        if obj.is_invalidated() || !self.writable.load(Ordering::Relaxed) {
            return Ok(());
        }
        if !self.files_in_place() {
            // The cache directory was removed, moved or replaced under the
            // edge: what it held is gone for a restart; the index forgets it
            // so that nothing is served from files no longer named there.
            self.removed = true;
            self.stop("disk cache files removed under the edge, the disk tier stops (memory only from now on)");
            let freed = self.index.retain(|_, _| false);
            self.stats.objects.fetch_sub(freed.entries, Ordering::Relaxed);
            self.stats.bytes.fetch_sub(freed.bytes, Ordering::Relaxed);
            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let meta = record::encode_object(primary, secondary, obj);
        let stored_ms = record::unix_ms(record::wall_time(obj.head().stored_at));
        let started = Instant::now();
        let Some((loc, pieces)) = self.write(Kind::Object, &meta, body, stored_ms)? else {
            self.stats.refused_size.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        self.stats.write_latency.record(started.elapsed());
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        self.stats.write_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        let entry = IndexEntry {
            secondary: secondary.into(),
            vary: obj.vary.clone(),
            loc,
            stored_ms,
            hits: 0,
            meta: meta.into(),
            memory: Arc::downgrade(obj),
            pieces,
        };
        self.add(primary, entry);
        // Invalidated while it was written: the live index drops it (the
        // invalidation's own record, queued after this one, covers restarts).
        if obj.is_invalidated() {
            let freed = self.index.remove_at(primary, loc);
            self.stats.objects.fetch_sub(freed.entries, Ordering::Relaxed);
            self.stats.bytes.fetch_sub(freed.bytes, Ordering::Relaxed);
        }
        Ok(())
    }

    fn add(&self, primary: &str, entry: IndexEntry) {
        super::add_entry(&self.index, &self.stats, primary, entry);
    }

    /// Appends a record, emptying the oldest segment first if needed.
    #[allow(clippy::type_complexity)]
    fn write(
        &mut self,
        kind: Kind,
        meta: &[u8],
        body: &[u8],
        stored_ms: u64,
    ) -> std::io::Result<Option<(Location, Option<Arc<[u32]>>)>> {
        let len = body.len() as u64;
        let total = RECORD_HEADER as u64 + meta.len() as u64 + len + record::trailer_len(record::pieces_for(len));
        if !self.make_room(total)? {
            return Ok(None);
        }
        let started = Instant::now();
        let written = self.appender.append(kind, meta, body, stored_ms)?;
        if kind != Kind::Object {
            self.stats.write_latency.record(started.elapsed());
        }
        Ok(Some(written))
    }

    /// Takes room for a record streamed to disk by a fill (`stream.rs`).
    fn reserve(&mut self, meta: &[u8], body_len: u64, stored_ms: u64) -> std::io::Result<Option<super::Reserved>> {
        if !self.writable.load(Ordering::Relaxed) || !self.files_in_place() {
            return Ok(None);
        }
        let total =
            RECORD_HEADER as u64 + meta.len() as u64 + body_len + record::trailer_len(record::pieces_for(body_len));
        if !self.make_room(total)? {
            return Ok(None);
        }
        self.appender.reserve(meta, body_len, stored_ms).map(Some)
    }

    /// Makes room for a record of `total` bytes at the head of the ring,
    /// emptying the oldest segment (copying its hot records forward) if
    /// needed. False if no segment can hold such a record.
    fn make_room(&mut self, total: u64) -> std::io::Result<bool> {
        if !self.appender.fits(total) {
            return Ok(false);
        }
        if let Some(next) = self.appender.next_to_empty(total) {
            let hot = self.take_hot(next, total);
            let freed = self.index.retain(|_, e| e.loc.seg as usize != next);
            self.stats.objects.fetch_sub(freed.entries, Ordering::Relaxed);
            self.stats.bytes.fetch_sub(freed.bytes, Ordering::Relaxed);
            self.appender.roll()?;
            let mut kept = 0;
            for (primary, mut entry, raw) in hot {
                entry.loc = self.appender.append_raw(&raw, entry.meta.len())?;
                self.add(&primary, entry);
                kept += 1;
            }
            self.stats.copied_forward.fetch_add(kept, Ordering::Relaxed);
            self.stats.evictions.fetch_add(freed.entries.saturating_sub(kept), Ordering::Relaxed);
        }
        Ok(true)
    }

    /// The hot records of a segment about to be emptied, read whole (at most
    /// half a segment, 64 MiB, and what leaves room for the next record):
    /// hit on disk since they were written or last copied, or, when memory
    /// holds the object, hit there at least twice. Their marks are cleared (a
    /// second chance, as a CLOCK gives). The records of objects memory holds
    /// that are not kept are released: memory writes them back on eviction.
    fn take_hot(&self, seg: usize, then: u64) -> Vec<(String, IndexEntry, Vec<u8>)> {
        // Room is left for the record that made the roll.
        let room = self.appender.seg_bytes.saturating_sub(record::SEGMENT_HEADER + then);
        let budget = (self.appender.seg_bytes / 2).min(64 << 20).min(room);
        let mut candidates = Vec::new();
        let mut released = Vec::new();
        self.index.for_each(|primary, e| {
            if e.loc.seg as usize != seg {
                return;
            }
            let held = e.memory.upgrade().filter(|o| !o.is_invalidated());
            let keep = match &held {
                // Memory holds it: kept on disk only if hot there (so that it
                // survives a kill); else let go, and written back when memory
                // evicts it, so the tiers do not hold the same objects twice.
                Some(o) => {
                    let state = o.disk_state.fetch_and(!(TOUCHED | TWICE), Ordering::Relaxed);
                    if state & TWICE == 0 {
                        released.push(o.clone());
                    }
                    state & TWICE != 0
                }
                None => e.hits > 0,
            };
            if keep {
                let mut entry = e.clone();
                entry.hits = 0;
                candidates.push((held.is_some(), primary.to_string(), entry));
            }
        });
        // Within the budget, the records only the disk holds go first: one
        // left out is lost, while one whose object memory holds is only a
        // copy (kept for a kill), which memory writes back when it evicts it.
        candidates.sort_by_key(|c| c.0);
        let segment = &self.appender.segments[seg];
        let mut used = 0u64;
        let mut out = Vec::new();
        for (_, primary, entry) in candidates {
            let start = entry.loc.body_at - entry.meta.len() as u64 - RECORD_HEADER as u64;
            let trailer = record::trailer_len(entry.pieces.as_ref().map_or(0, |p| p.len() as u32));
            let len = entry.loc.body_at + entry.loc.body_len + trailer - start;
            let fits = used + len <= budget;
            let mut raw = if fits { vec![0u8; len as usize] } else { Vec::new() };
            if !fits || segment.file.read_exact_at(&mut raw, start).is_err() || !record::record_checks(&raw) {
                // Not kept after all: memory, if it holds it, writes it back.
                released.extend(entry.memory.upgrade());
                continue;
            }
            used += len;
            out.push((primary, entry, raw));
        }
        // Marked after the walk (the index's locks are released).
        for o in &released {
            o.disk_state.fetch_and(!DONE, Ordering::Relaxed);
            o.disk_state.fetch_or(RELEASED, Ordering::Relaxed);
        }
        self.stats.released.fetch_add(released.len() as u64, Ordering::Relaxed);
        out
    }
}
