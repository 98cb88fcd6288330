//! The disk tier: a log-structured store under the memory cache.
//!
//! Objects are written once, whole, as records appended to a ring of segment
//! files (`log.rs`, `record.rs`); the oldest segment is emptied when room is
//! needed, so eviction never moves live data. An in-memory index (`index.rs`)
//! maps keys to records; it is rebuilt at start from the segments themselves,
//! checking every record's CRC, applying the purge and invalidation records
//! found in the log and the invalidations the state store holds.
//!
//! A disk hit up to `WHOLE_MAX` is read whole, checked against its record's
//! CRC-32 (a record damaged while the edge runs is dropped and fetched again,
//! never served). Larger bodies are read in pieces (`StoredBody::on_disk`).
//! Reads come from the page cache on the async worker (`RWF_NOWAIT`), else
//! off it. Either is promoted into memory on its record's second disk hit, if
//! it fits the memory tier's object size. Under second-hit admission, objects
//! reach the disk mostly when memory evicts them (the tiers stay mostly
//! exclusive); hot ones are written while memory holds them, so that they
//! survive a kill. One writer thread
//! (`writer.rs`) does all writes, fed by a bounded queue: a full queue, a
//! full disk or an I/O error refuses the write (counted), never a request.

mod handover;
mod index;
mod log;
pub mod record;
mod stats;
mod stream;
mod writer;

use crate::cache::body::StoredBody;
use crate::cache::invalidate::PathMatch;
use crate::cache::object::Object;
use crate::cache::CacheKey;
use crate::config::{DiskAdmission, DiskConfig, ReplayedInvalidation};
use http::{HeaderMap, StatusCode};
use index::{Index, IndexEntry};
use log::{Appender, DiskExtent, Location, Scanned, Segment};
pub use stats::{DiskSnapshot, LatencySnapshot, Stats, LATENCY_LE};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bodies up to this size are read whole at lookup, checked and promoted.
const WHOLE_MAX: u64 = 4 << 20;
/// Disk hits (since a record was written, loaded or copied) before its
/// object is promoted into memory: a record hit once is served from disk
/// without displacing what memory holds.
const PROMOTE_AFTER: u32 = 2;
/// Responses fresh (or usable stale) for less than this are not written.
const MIN_LIFETIME: Duration = Duration::from_secs(10);
/// Writes waiting for the writer thread, at most (objects and bytes).
const QUEUE: usize = 256;
const QUEUE_BYTES: u64 = 64 << 20;
/// The longest an invalidation waits for its record to be written.
const INVALIDATION_WAIT: Duration = Duration::from_secs(5);

/// Where an object stands with the disk tier (`Object::disk_state`).
pub const NOT_YET: u8 = 0;
/// Admitted (requested twice, under second-hit admission), not on disk:
/// written when memory evicts it.
pub const WANTED: u8 = 1;
/// Queued, written, refused, or read from disk: nothing more to do.
pub const DONE: u8 = 2;
/// With `DONE`: hit in memory since the writer last looked. Without it (not
/// on disk): hit in memory twice, and written at the next hit.
pub const TOUCHED: u8 = 4;
/// With `TOUCHED`: hit in memory at least twice since the writer last
/// looked. Such a record is copied forward when its segment is reused (so the
/// hottest objects stay on disk across a kill); a record whose memory copy
/// was hit less is let go (`RELEASED`), as memory holds the object.
pub const TWICE: u8 = 8;
/// Its disk record was let go while memory held it: memory writes it back
/// when it evicts it (whatever the admission policy: it was admitted once).
pub const RELEASED: u8 = 16;

fn segment_path(dir: &std::path::Path, id: u32) -> std::path::PathBuf {
    dir.join(format!("seg-{id:05}.dat"))
}

enum Job {
    Object {
        primary: Box<str>,
        secondary: Box<str>,
        obj: Arc<Object>,
    },
    Purge(Box<str>),
    /// With a channel told once the record is written.
    Invalidate(String, Vec<PathMatch>, SyncSender<()>),
    /// Told once every job queued before it is done.
    Barrier(SyncSender<()>),
    /// Room for a record a fill streams to disk (`stream.rs`).
    Reserve {
        meta: Vec<u8>,
        body_len: u64,
        stored_ms: u64,
        reply: tokio::sync::oneshot::Sender<Option<Reserved>>,
    },
}

/// A stream's room in the ring: its segment, the record's first byte and
/// the body's location.
pub(crate) type Reserved = (Arc<Segment>, u64, Location);

/// Drops a record from the index when a read finds it damaged.
#[derive(Clone)]
pub struct Forget {
    index: Arc<Index>,
    stats: Arc<Stats>,
    primary: Arc<str>,
}

impl std::fmt::Debug for Forget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forget").field("primary", &self.primary).finish()
    }
}

impl Forget {
    pub fn run(&self, loc: Location) {
        let freed = self.index.remove_at(&self.primary, loc);
        self.stats.objects.fetch_sub(freed.entries, Ordering::Relaxed);
        self.stats.bytes.fetch_sub(freed.bytes, Ordering::Relaxed);
    }
}

/// A fill streaming to disk, found by viewers who ask for it meanwhile.
struct Streaming {
    primary: Box<str>,
    secondary: Box<str>,
    obj: Arc<Object>,
    progress: Arc<stream::Progress>,
}

/// What the disk tier does with a fill too large for memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    /// Streamed to disk as it arrives.
    Streaming,
    /// Not this fill, but a later one may be (second-hit admission, another
    /// fill of the key is streaming already, or too many are): no
    /// hit-for-pass, so that the next request finds the disk copy or fills
    /// again.
    Later,
    /// Never (too large for a segment, not storable, no room): pass.
    No,
}

pub struct DiskStore {
    pub config: DiskConfig,
    segments: Vec<Arc<Segment>>,
    index: Arc<Index>,
    tx: SyncSender<Job>,
    queued_bytes: Arc<AtomicU64>,
    /// False after a write failed: the tier serves what it holds, writes nothing.
    writable: Arc<AtomicBool>,
    pub stats: Arc<Stats>,
    doorkeeper: Doorkeeper,
    /// True while another process holds the directory (an upgrade): nothing
    /// is read from or written to it.
    suspended: Arc<AtomicBool>,
    /// The lock file, held (flock) while this edge uses the directory.
    lock: std::sync::Mutex<Option<std::fs::File>>,
    /// Fills streaming to disk now (at most `stream::MAX_STREAMS`), and how
    /// many (lookups skip the lock when there are none).
    streams: std::sync::Mutex<Vec<Streaming>>,
    streaming: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore").field("path", &self.config.path).finish()
    }
}

impl DiskStore {
    /// Opens (or creates) the directory and rebuilds the index from it.
    pub fn open(config: &DiskConfig, replay: &[ReplayedInvalidation]) -> Result<DiskStore, String> {
        let dir = &config.path;
        let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", dir.display());
        std::fs::create_dir_all(dir).map_err(|e| fail("cannot create", e))?;
        let lock = handover::lock(dir)?;
        let count = (config.size_bytes / config.segment_bytes).max(2) as u32;
        let mut segments = Vec::new();
        for id in 0..count {
            segments.push(Arc::new(Segment::open(dir, id).map_err(|e| fail("cannot open a segment in", e))?));
        }
        // Segments past the ring (the size was lowered) are removed.
        for id in count.. {
            if std::fs::remove_file(segment_path(dir, id)).is_err() {
                break;
            }
        }
        let stats = Arc::new(Stats::default());
        let index = Arc::new(Index::default());
        let started = Instant::now();
        let appender = rebuild(&segments, config.segment_bytes, &index, &stats, replay)
            .map_err(|e| fail("cannot read the disk cache in", e))?;
        tracing::info!(
            path = %dir.display(),
            objects = stats.objects.load(Ordering::Relaxed),
            bytes = stats.bytes.load(Ordering::Relaxed),
            dropped = stats.dropped.load(Ordering::Relaxed),
            ms = started.elapsed().as_millis() as u64,
            "disk cache index rebuilt"
        );
        let (tx, rx) = sync_channel(QUEUE);
        let queued_bytes = Arc::new(AtomicU64::new(0));
        let writable = Arc::new(AtomicBool::new(true));
        let suspended = Arc::new(AtomicBool::new(false));
        let writer = writer::Writer {
            suspended: suspended.clone(),
            appender,
            index: index.clone(),
            stats: stats.clone(),
            queued_bytes: queued_bytes.clone(),
            writable: writable.clone(),
            path: dir.clone(),
            retry: config.write_retry,
            stopped_at: None,
            removed: false,
        };
        std::thread::Builder::new()
            .name("disk-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| format!("cannot start the disk writer: {e}"))?;
        Ok(DiskStore {
            config: config.clone(),
            segments,
            index,
            tx,
            queued_bytes,
            writable,
            stats,
            doorkeeper: Doorkeeper::new(),
            suspended,
            lock: std::sync::Mutex::new(Some(lock)),
            streams: std::sync::Mutex::new(Vec::new()),
            streaming: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The object on disk for this request, with a body read from disk; and
    /// whether to promote it into memory. Whole reads are checked against the
    /// record's CRC-32: a record that fails (changed on disk, or cut or gone
    /// under the edge) is dropped and the request goes to the origin.
    pub fn lookup(&self, key: &CacheKey, req: &HeaderMap) -> Option<(Arc<Object>, bool)> {
        if self.suspended.load(Ordering::Relaxed) {
            return None;
        }
        self.stats.lookups.fetch_add(1, Ordering::Relaxed);
        if let Some(obj) = self.growing(key, req) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Some((obj, false));
        }
        let e = self.index.select(&key.primary, &key.secondary, req)?;
        let seg = self.segments.get(e.loc.seg as usize)?.clone();
        let on_bad = e.pieces.is_some().then(|| Forget {
            index: self.index.clone(),
            stats: self.stats.clone(),
            primary: key.primary.as_str().into(),
        });
        let extent =
            Arc::new(DiskExtent { seg, loc: e.loc, stats: self.stats.clone(), pieces: e.pieces.clone(), on_bad });
        if !crate::cache::body::Extent::is_valid(&*extent) {
            self.forget(&key.primary, e.loc);
            return None;
        }
        let Some(d) = record::decode_object(&e.meta, e.stored_ms) else {
            self.forget(&key.primary, e.loc);
            return None;
        };
        let len = e.loc.body_len;
        let whole = len <= WHOLE_MAX;
        let body = if whole {
            let read = || crate::cache::body::Extent::read_at(&*extent, 0, len as usize);
            // From the page cache at once; else a read of up to 4 MiB on this
            // worker, which hands its other tasks to the rest of the runtime
            // meanwhile (multi-threaded runtime only).
            let r = crate::cache::body::read_now(&*extent, 0, len as usize).unwrap_or_else(|| {
                match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
                    Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(read),
                    _ => read(),
                }
            });
            match r {
                Ok(b) if b.len() as u64 == len && record::body_checks(&e.meta, &b, e.loc.crc) => {
                    StoredBody::complete(b)
                }
                Ok(b) if b.len() as u64 == len => {
                    self.stats.checksum_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        key = %key.primary,
                        "disk cache record failed its checksum when read: dropped, fetched again from the origin"
                    );
                    self.forget(&key.primary, e.loc);
                    return None;
                }
                r => {
                    if r.is_ok() {
                        self.stats.read_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::warn!(key = %key.primary, "disk cache read failed: dropped, fetched again from the origin");
                    self.forget(&key.primary, e.loc);
                    return None;
                }
            }
        } else {
            StoredBody::on_disk(extent)
        };
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        self.stats.hit_bytes.fetch_add(len, Ordering::Relaxed);
        let obj = Object::new(d.head, body, d.vary, d.compressible, d.media);
        obj.disk_state.store(DONE, Ordering::Relaxed);
        if whole {
            self.index.set_memory(&key.primary, e.loc, &obj);
        }
        Some((obj, e.hits >= PROMOTE_AFTER))
    }

    /// A fill streaming to disk for this request: an object whose body reads
    /// the record as it is written.
    fn growing(&self, key: &CacheKey, req: &HeaderMap) -> Option<Arc<Object>> {
        if self.streaming.load(Ordering::Acquire) == 0 {
            return None;
        }
        let streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let s = streams.iter().find(|s| {
            *s.primary == *key.primary
                && *s.secondary == *key.secondary
                && s.obj.vary.as_ref().is_none_or(|v| v.matches(req))
                && !s.obj.is_invalidated()
        })?;
        let body = StoredBody::on_disk(Arc::new(stream::Growing(s.progress.clone())));
        let obj = Object::new((**s.obj.head()).clone(), body, s.obj.vary.clone(), s.obj.compressible, s.obj.media);
        obj.disk_state.store(DONE, Ordering::Relaxed);
        Some(obj)
    }

    /// A fill grew past memory's largest object: streams it to disk as it
    /// arrives, if the disk takes it. Call before the body starts passing
    /// (the stream reads it from its first byte).
    pub fn stream(self: &Arc<Self>, key: &CacheKey, obj: &Arc<Object>) -> Oversize {
        let Some(len) = obj.body.total_len() else { return Oversize::No };
        let total = record::RECORD_HEADER as u64 + 4096 + len + record::trailer_len(record::pieces_for(len));
        if !self.worth_keeping(obj) || total > self.config.segment_bytes - record::SEGMENT_HEADER {
            if total > self.config.segment_bytes - record::SEGMENT_HEADER {
                self.stats.refused_size.fetch_add(1, Ordering::Relaxed);
            }
            return Oversize::No;
        }
        let seen = self.doorkeeper.seen_then_insert(&key.primary, &key.secondary);
        if self.config.admission != DiskAdmission::Always && !seen {
            return Oversize::Later;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return Oversize::No };
        let progress = Arc::new(stream::Progress::new(len, self.stats.clone()));
        {
            let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            let underway = streams.iter().any(|s| *s.primary == *key.primary && *s.secondary == *key.secondary);
            // Another fill of the key is streaming already (this one lost a
            // race to it), or too many are: this fill passes through, and
            // no hit-for-pass mark is left, so later requests find the disk
            // copy (or fill again).
            if underway {
                return Oversize::Later;
            }
            // Each stream holds room for its whole announced length until it
            // ends (an origin that announces much and sends slowly holds it
            // until its read timeout): streams together hold at most a
            // quarter of the disk, so that they cannot wash it.
            let reserved: u64 = streams.iter().filter_map(|s| s.obj.body.total_len()).sum();
            if streams.len() >= stream::MAX_STREAMS || reserved + len > self.config.size_bytes / stream::RESERVE_SHARE {
                self.stats.refused_queue.fetch_add(1, Ordering::Relaxed);
                return Oversize::Later;
            }
            streams.push(Streaming {
                primary: key.primary.as_str().into(),
                secondary: key.secondary.as_str().into(),
                obj: obj.clone(),
                progress: progress.clone(),
            });
            self.streaming.store(streams.len(), Ordering::Release);
        }
        let s = stream::Stream {
            disk: self.clone(),
            primary: key.primary.as_str().into(),
            secondary: key.secondary.as_str().into(),
            obj: obj.clone(),
            progress,
            reader: obj.body.reader(0),
        };
        rt.spawn(s.run());
        Oversize::Streaming
    }

    /// A stream ended (complete or not): viewers no longer find it as such.
    fn stream_ended(&self, primary: &str, secondary: &str, progress: &Arc<stream::Progress>) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams
            .retain(|s| !(*s.primary == *primary && *s.secondary == *secondary && Arc::ptr_eq(&s.progress, progress)));
        self.streaming.store(streams.len(), Ordering::Release);
    }

    /// A stream's record is complete: it joins the index.
    fn add_streamed(&self, primary: &str, entry: IndexEntry, took: Duration) {
        let len = entry.loc.body_len;
        add_entry(&self.index, &self.stats, primary, entry);
        self.stats.write_latency.record(took);
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        self.stats.streamed.fetch_add(1, Ordering::Relaxed);
        self.stats.write_bytes.fetch_add(len, Ordering::Relaxed);
    }

    /// Stops writing, once, with one log line (a fault).
    fn stop_writing(&self, why: &str) {
        if self.writable.swap(false, Ordering::Relaxed) {
            tracing::error!(path = %self.config.path.display(), "{why}");
        }
    }

    /// Invalidated streams stop being found and are not kept.
    fn drop_streams(&self, covered: impl Fn(&str) -> bool) {
        if self.streaming.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain(|s| {
            let hit = covered(&s.primary);
            if hit {
                s.obj.invalidate();
            }
            !hit
        });
        self.streaming.store(streams.len(), Ordering::Release);
    }

    /// Whether a response may be kept on disk: a 200/203/206 fresh (or
    /// usable stale) for at least `MIN_LIFETIME`, not invalidated.
    fn worth_keeping(&self, obj: &Object) -> bool {
        let head = obj.head();
        let f = &head.freshness;
        matches!(head.status, StatusCode::OK | StatusCode::NON_AUTHORITATIVE_INFORMATION | StatusCode::PARTIAL_CONTENT)
            && f.ttl.saturating_sub(f.initial_age) + f.stale_while_revalidate >= MIN_LIFETIME
            && !obj.is_invalidated()
    }

    fn forget(&self, primary: &str, loc: Location) {
        let freed = self.index.remove_at(primary, loc);
        self.stats.objects.fetch_sub(freed.entries, Ordering::Relaxed);
        self.stats.bytes.fetch_sub(freed.bytes, Ordering::Relaxed);
    }

    /// A memory hit. An object not on disk is admitted by its first hit
    /// (memory writes it down when it evicts it: the tiers stay exclusive),
    /// and written at once on its second hit after that (hot in memory: the
    /// hottest objects are on disk too, so that they survive a kill).
    pub fn note_hit(&self, key: &CacheKey, obj: &Arc<Object>) {
        self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
        let state = obj.disk_state.load(Ordering::Relaxed);
        if state & DONE != 0 {
            if state & TWICE == 0 {
                obj.disk_state.fetch_or(if state & TOUCHED == 0 { TOUCHED } else { TWICE }, Ordering::Relaxed);
            }
            return;
        }
        if state & TOUCHED != 0 {
            if obj.body.bytes().is_some() {
                self.offer(key, obj);
            }
            return;
        }
        obj.disk_state.fetch_or(if state & (WANTED | RELEASED) == 0 { WANTED } else { TOUCHED }, Ordering::Relaxed);
    }

    /// A fill finished: written at once with `always`, or if it was hot
    /// during the fill; admitted (written when memory evicts it) if the key
    /// was filled before (its second request).
    pub fn fill_finished(&self, key: &CacheKey, obj: &Arc<Object>) {
        let seen = self.doorkeeper.seen_then_insert(&key.primary, &key.secondary);
        let state = obj.disk_state.load(Ordering::Relaxed);
        if self.config.admission == DiskAdmission::Always || state & TOUCHED != 0 {
            self.offer(key, obj);
        } else if seen {
            obj.disk_state.fetch_or(WANTED, Ordering::Relaxed);
        }
    }

    /// Queues an object for writing, once, if it is worth keeping on disk.
    fn offer(&self, key: &CacheKey, obj: &Arc<Object>) {
        if obj.disk_state.fetch_or(DONE, Ordering::Relaxed) & DONE != 0 {
            return;
        }
        self.queue(&key.primary, &key.secondary, obj);
    }

    /// Memory evicted a slot (on the inserting thread, without blocking):
    /// its objects not on disk are queued for writing, if admitted (`always`,
    /// hit in memory, or let go from disk while memory held them), so that
    /// the tiers hold different objects rather than the same ones twice.
    pub fn evicted_from_memory(&self, primary: &str, slot: &Arc<crate::cache::store::Slot>) {
        if !self.writable.load(Ordering::Relaxed) || self.suspended.load(Ordering::Relaxed) {
            return;
        }
        for (secondary, obj) in slot.objects() {
            let state = obj.disk_state.load(Ordering::Relaxed);
            if state & DONE != 0 || obj.is_invalidated() || obj.body.bytes().is_none() {
                continue;
            }
            let admitted = self.config.admission == DiskAdmission::Always || state & (WANTED | RELEASED) != 0;
            if !admitted || obj.disk_state.fetch_or(DONE, Ordering::Relaxed) & DONE != 0 {
                continue;
            }
            if self.queue(primary, &secondary, &obj) {
                self.stats.write_backs.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A 304 refreshed an object's head: if it came from disk or was written
    /// there, it is written again with its new head and freshness (the new
    /// record supersedes the old one, across restarts too).
    pub fn refreshed(&self, key: &CacheKey, obj: &Arc<Object>) {
        if obj.disk_state.load(Ordering::Relaxed) & DONE != 0 {
            self.queue(&key.primary, &key.secondary, obj);
        }
    }

    /// Queues a write; returns whether it was queued.
    fn queue(&self, primary: &str, secondary: &str, obj: &Arc<Object>) -> bool {
        let Some(body) = obj.body.bytes() else { return false };
        if !self.worth_keeping(obj) {
            return false;
        }
        let size = body.len() as u64;
        if !self.writable.load(Ordering::Relaxed) || self.suspended.load(Ordering::Relaxed) {
            self.stats.refused_failing.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if size + 8192 > self.config.segment_bytes {
            self.stats.refused_size.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if self.queued_bytes.fetch_add(size, Ordering::Relaxed) + size > QUEUE_BYTES {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            self.stats.refused_queue.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let job = Job::Object { primary: primary.into(), secondary: secondary.into(), obj: obj.clone() };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(job) {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            self.stats.refused_queue.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Drops what these paths cover, and records it in the log so that a
    /// restart does not bring it back.
    pub fn invalidate(&self, distribution: &str, paths: &[PathMatch]) {
        self.drop_streams(|primary| crate::cache::invalidate::covers(distribution, paths, primary));
        let freed = self.index.invalidate(distribution, paths, None);
        self.stats.objects.fetch_sub(freed.entries, Ordering::Relaxed);
        self.stats.bytes.fetch_sub(freed.bytes, Ordering::Relaxed);
        // Waits (on the caller's blocking thread) until the record is written,
        // so that an invalidation reported complete holds across a kill.
        let (done, written) = sync_channel(1);
        self.send(Job::Invalidate(distribution.to_string(), paths.to_vec(), done));
        if written.recv_timeout(INVALIDATION_WAIT).is_err() {
            tracing::warn!("the disk cache's invalidation record was not written within {INVALIDATION_WAIT:?}");
        }
    }

    /// Drops every variant stored under a primary key (and logs the purge).
    pub fn purge(&self, primary: &str) {
        self.drop_streams(|p| p == primary);
        let freed = self.index.remove_key(primary);
        if freed.entries > 0 {
            self.stats.objects.fetch_sub(freed.entries, Ordering::Relaxed);
            self.stats.bytes.fetch_sub(freed.bytes, Ordering::Relaxed);
            self.send(Job::Purge(primary.into()));
        }
    }

    /// Tombstones wait for room rather than being dropped: losing one would
    /// bring invalidated objects back after a restart.
    fn send(&self, job: Job) {
        if self.tx.send(job).is_err() {
            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn capacity(&self) -> u64 {
        self.segments.len() as u64 * self.config.segment_bytes
    }

    /// The counters, read at once.
    pub fn snapshot(&self) -> DiskSnapshot {
        self.stats.snapshot(self.writable.load(Ordering::Relaxed), self.capacity())
    }

    /// Counts an object promoted from disk into memory.
    pub fn promoted(&self) {
        self.stats.promotions.fetch_add(1, Ordering::Relaxed);
    }
}

/// Puts a record's entry into the index, counting it (and what it replaces).
fn add_entry(index: &Index, stats: &Stats, primary: &str, entry: IndexEntry) {
    let len = entry.loc.body_len;
    let freed = index.insert(primary, entry);
    stats.objects.fetch_add(1, Ordering::Relaxed);
    stats.objects.fetch_sub(freed.entries, Ordering::Relaxed);
    stats.bytes.fetch_add(len, Ordering::Relaxed);
    stats.bytes.fetch_sub(freed.bytes, Ordering::Relaxed);
}

/// Reads every segment, oldest first, into the index; returns where writing resumes.
fn rebuild(
    segments: &[Arc<Segment>],
    seg_bytes: u64,
    index: &Index,
    stats: &Stats,
    replay: &[ReplayedInvalidation],
) -> std::io::Result<Appender> {
    let replay: Vec<(&str, Vec<PathMatch>, u64)> = replay
        .iter()
        .map(|r| {
            (r.distribution.as_str(), r.paths.iter().filter_map(|p| PathMatch::parse(p).ok()).collect(), r.create_ms)
        })
        .collect();
    let mut order = Vec::new();
    for seg in segments {
        let mut h = [0u8; record::SEGMENT_HEADER as usize];
        let generation = match seg.file.read_exact_at_opt(&mut h) {
            true => record::parse_segment_header(&h).unwrap_or(0),
            false => 0,
        };
        seg.generation.store(generation, Ordering::Release);
        if generation > 0 {
            order.push((generation, seg.clone()));
        }
    }
    order.sort_by_key(|(g, _)| *g);
    let mut appender = Appender {
        segments: segments.to_vec(),
        seg_bytes,
        // Nothing written yet: the first write starts segment 0.
        active: segments.len() - 1,
        pos: seg_bytes,
        next_generation: order.last().map_or(1, |(g, _)| g + 1),
    };
    for (generation, seg) in &order {
        let (records, end, dropped) = log::scan(seg, *generation)?;
        stats.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        for r in records {
            match r {
                Scanned::Object { meta, header, loc, pieces } => {
                    let Some((primary, secondary)) = record::object_keys(&meta) else { continue };
                    let replayed = replay.iter().any(|(d, paths, at)| {
                        header.stored_ms < *at && crate::cache::invalidate::covers(d, paths, primary)
                    });
                    let Some(decoded) = record::decode_object(&meta, header.stored_ms) else { continue };
                    if replayed {
                        continue;
                    }
                    let entry = IndexEntry {
                        secondary: secondary.into(),
                        vary: decoded.vary,
                        loc,
                        stored_ms: header.stored_ms,
                        hits: 0,
                        meta: meta.as_slice().into(),
                        memory: std::sync::Weak::new(),
                        pieces,
                    };
                    let primary = primary.to_string();
                    let freed = index.insert(&primary, entry);
                    stats.objects.fetch_add(1, Ordering::Relaxed);
                    stats.objects.fetch_sub(freed.entries, Ordering::Relaxed);
                    stats.bytes.fetch_add(loc.body_len, Ordering::Relaxed);
                    stats.bytes.fetch_sub(freed.bytes, Ordering::Relaxed);
                }
                Scanned::Purge(k) => {
                    let freed = index.remove_key(&k);
                    stats.objects.fetch_sub(freed.entries, Ordering::Relaxed);
                    stats.bytes.fetch_sub(freed.bytes, Ordering::Relaxed);
                }
                Scanned::Invalidation(d, paths) => {
                    let freed = index.invalidate(&d, &paths, None);
                    stats.objects.fetch_sub(freed.entries, Ordering::Relaxed);
                    stats.bytes.fetch_sub(freed.bytes, Ordering::Relaxed);
                }
            }
        }
        // Writing resumes after the last good record of the newest segment;
        // a torn tail is cut off.
        appender.active = seg.id as usize;
        appender.pos = end;
        seg.file.set_len(end)?;
    }
    Ok(appender)
}

trait ReadHeader {
    fn read_exact_at_opt(&self, buf: &mut [u8]) -> bool;
}

impl ReadHeader for std::fs::File {
    fn read_exact_at_opt(&self, buf: &mut [u8]) -> bool {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, 0).is_ok()
    }
}

/// Which keys were filled recently (second-hit admission): a bit set with
/// two hash positions per key, emptied after `RESET` insertions.
struct Doorkeeper {
    bits: Box<[AtomicU64]>,
    inserted: AtomicU64,
    hasher: std::collections::hash_map::RandomState,
}

const DOOR_BITS: u64 = 1 << 20;
const RESET: u64 = 100_000;

impl Doorkeeper {
    fn new() -> Doorkeeper {
        Doorkeeper {
            bits: (0..DOOR_BITS / 64).map(|_| AtomicU64::new(0)).collect(),
            inserted: AtomicU64::new(0),
            hasher: Default::default(),
        }
    }

    fn seen_then_insert(&self, primary: &str, secondary: &str) -> bool {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one((primary, secondary));
        let mut seen = true;
        for b in [h % DOOR_BITS, (h >> 32 ^ h.rotate_left(17)) % DOOR_BITS] {
            let (word, bit) = ((b / 64) as usize, 1u64 << (b % 64));
            seen &= self.bits[word].fetch_or(bit, Ordering::Relaxed) & bit != 0;
        }
        if self.inserted.fetch_add(1, Ordering::Relaxed) >= RESET {
            self.inserted.store(0, Ordering::Relaxed);
            self.bits.iter().for_each(|w| w.store(0, Ordering::Relaxed));
        }
        seen
    }
}

pub(crate) type DiskState = AtomicU8;
