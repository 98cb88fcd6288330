//! The disk tier: a log-structured store under the memory cache.
//!
//! Objects are written once, whole, as records appended to a ring of segment
//! files (`log.rs`, `record.rs`); the oldest segment is emptied when room is
//! needed, so eviction never moves live data. An in-memory index (`index.rs`)
//! maps keys to records; it is rebuilt at start from the segments themselves,
//! checking every record's CRC, applying the purge and invalidation records
//! found in the log and the invalidations the state store holds.
//!
//! Bodies are read in pieces on the blocking pool (`StoredBody::on_disk`),
//! never whole, except small ones, manifests and compressible ones, which are
//! read whole and go to memory. A body hit a second time from disk is
//! promoted: read whole into memory, if it fits the memory tier's object size.
//! One writer thread does all writes, fed by a bounded queue: a full queue, a
//! full disk or an I/O error refuses the write (counted), never a request.

mod index;
mod log;
pub mod record;

use crate::cache::body::StoredBody;
use crate::cache::invalidate::PathMatch;
use crate::cache::object::Object;
use crate::cache::CacheKey;
use crate::config::{DiskAdmission, DiskConfig, ReplayedInvalidation};
use http::{HeaderMap, StatusCode};
use index::{Index, IndexEntry};
use log::{Appender, DiskExtent, Location, Scanned, Segment};
use record::Kind;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bodies up to this size are read whole at lookup and kept in memory.
const SMALL: u64 = 64 << 10;
/// Manifests and compressible bodies up to this size are read whole too.
const WHOLE_MAX: u64 = 4 << 20;
/// Responses fresh (or usable stale) for less than this are not written.
const MIN_LIFETIME: Duration = Duration::from_secs(10);
/// Writes waiting for the writer thread, at most (objects and bytes).
const QUEUE: usize = 256;
const QUEUE_BYTES: u64 = 64 << 20;
/// The longest an invalidation waits for its record to be written.
const INVALIDATION_WAIT: Duration = Duration::from_secs(5);

/// Where an object stands with the disk tier (`Object::disk_state`).
pub const NOT_YET: u8 = 0;
/// Hit once (second-hit admission): written when complete.
pub const WANTED: u8 = 1;
/// Queued, written, refused, or read from disk: nothing more to do.
pub const DONE: u8 = 2;

/// Counters of the disk tier.
#[derive(Debug, Default)]
pub struct Stats {
    pub objects: AtomicU64,
    pub bytes: AtomicU64,
    pub hits: AtomicU64,
    pub promotions: AtomicU64,
    pub writes: AtomicU64,
    pub write_bytes: AtomicU64,
    pub write_ns: AtomicU64,
    pub reads: AtomicU64,
    pub read_bytes: AtomicU64,
    pub read_ns: AtomicU64,
    /// Writes not made: the queue was full, the object too large, the disk failing.
    pub refused: AtomicU64,
    /// Objects dropped when their segment was reused.
    pub evictions: AtomicU64,
    /// Records dropped at start: torn or failing their checksum.
    pub dropped: AtomicU64,
    pub errors: AtomicU64,
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
    /// The lock file, held (flock) while this edge uses the directory.
    _lock: std::fs::File,
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
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("lock"))
            .map_err(|e| fail("cannot write in", e))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(std::os::unix::io::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(format!("{} is in use by another running edge", dir.display()));
        }
        let count = (config.size_bytes / config.segment_bytes).max(2) as u32;
        let mut segments = Vec::new();
        for id in 0..count {
            segments.push(Arc::new(Segment::open(dir, id).map_err(|e| fail("cannot open a segment in", e))?));
        }
        // Segments past the ring (the size was lowered) are removed.
        for id in count.. {
            if std::fs::remove_file(dir.join(format!("seg-{id:05}.dat"))).is_err() {
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
        let writer = Writer {
            appender,
            index: index.clone(),
            stats: stats.clone(),
            queued_bytes: queued_bytes.clone(),
            writable: writable.clone(),
            path: dir.clone(),
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
            _lock: lock,
        })
    }

    /// The object on disk for this request, with a body read from disk; and
    /// whether it is hot enough to promote into memory.
    pub fn lookup(&self, key: &CacheKey, req: &HeaderMap) -> Option<(Arc<Object>, bool)> {
        let e = self.index.select(&key.primary, &key.secondary, req)?;
        let seg = self.segments.get(e.loc.seg as usize)?.clone();
        let extent = Arc::new(DiskExtent { seg, loc: e.loc, stats: self.stats.clone() });
        if !crate::cache::body::Extent::is_valid(&*extent) {
            self.forget(&key.primary, e.loc);
            return None;
        }
        let Some(d) = record::decode_object(&e.meta, e.stored_ms) else {
            self.forget(&key.primary, e.loc);
            return None;
        };
        let manifest = matches!(d.media, crate::media::MediaKind::HlsPlaylist | crate::media::MediaKind::DashMpd);
        let len = e.loc.body_len;
        let whole = len <= SMALL || ((manifest || d.compressible) && len <= WHOLE_MAX);
        let body = if whole {
            match crate::cache::body::Extent::read_at(&*extent, 0, len as usize) {
                Ok(b) if b.len() as u64 == len => StoredBody::complete(b),
                _ => {
                    self.forget(&key.primary, e.loc);
                    return None;
                }
            }
        } else {
            StoredBody::on_disk(extent)
        };
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        let obj = Object::new(d.head, body, d.vary, d.compressible, d.media);
        obj.disk_state.store(DONE, Ordering::Relaxed);
        Some((obj, whole || e.hits >= 2))
    }

    fn forget(&self, primary: &str, loc: Location) {
        let freed = self.index.remove_at(primary, loc);
        self.stats.objects.fetch_sub(freed.entries, Ordering::Relaxed);
        self.stats.bytes.fetch_sub(freed.bytes, Ordering::Relaxed);
    }

    /// A memory hit: with second-hit admission, the object is written on its
    /// first hit after the fill (once its body is complete).
    pub fn note_hit(&self, key: &CacheKey, obj: &Arc<Object>) {
        if obj.disk_state.load(Ordering::Relaxed) == DONE {
            return;
        }
        let _ = obj.disk_state.compare_exchange(NOT_YET, WANTED, Ordering::Relaxed, Ordering::Relaxed);
        if obj.body.bytes().is_some() {
            self.offer(key, obj);
        }
    }

    /// A fill finished: written at once (`always`, or the key was filled
    /// before: its second request), or on its first hit.
    pub fn fill_finished(&self, key: &CacheKey, obj: &Arc<Object>) {
        let seen = self.doorkeeper.seen_then_insert(&key.primary, &key.secondary);
        if self.config.admission == DiskAdmission::Always || seen || obj.disk_state.load(Ordering::Relaxed) == WANTED {
            self.offer(key, obj);
        }
    }

    /// Queues an object for writing, once, if it is worth keeping on disk.
    fn offer(&self, key: &CacheKey, obj: &Arc<Object>) {
        if obj.disk_state.swap(DONE, Ordering::Relaxed) == DONE {
            return;
        }
        let Some(body) = obj.body.bytes() else { return };
        let head = obj.head();
        let f = &head.freshness;
        let keep = matches!(
            head.status,
            StatusCode::OK | StatusCode::NON_AUTHORITATIVE_INFORMATION | StatusCode::PARTIAL_CONTENT
        ) && f.ttl.saturating_sub(f.initial_age) + f.stale_while_revalidate >= MIN_LIFETIME
            && !obj.is_invalidated();
        if !keep {
            return;
        }
        let size = body.len() as u64;
        if !self.writable.load(Ordering::Relaxed) || size + 8192 > self.config.segment_bytes {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.queued_bytes.fetch_add(size, Ordering::Relaxed) + size > QUEUE_BYTES {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let job = Job::Object {
            primary: key.primary.as_str().into(),
            secondary: key.secondary.as_str().into(),
            obj: obj.clone(),
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(job) {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops what these paths cover, and records it in the log so that a
    /// restart does not bring it back.
    pub fn invalidate(&self, distribution: &str, paths: &[PathMatch]) {
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
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn capacity(&self) -> u64 {
        self.segments.len() as u64 * self.config.segment_bytes
    }
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
                Scanned::Object { meta, header, loc } => {
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

/// The writer thread: all writes, in the order they were queued.
struct Writer {
    appender: Appender,
    index: Arc<Index>,
    stats: Arc<Stats>,
    queued_bytes: Arc<AtomicU64>,
    writable: Arc<AtomicBool>,
    path: std::path::PathBuf,
}

impl Writer {
    fn run(mut self, rx: std::sync::mpsc::Receiver<Job>) {
        while let Ok(job) = rx.recv() {
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
            };
            if let Err(e) = r {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                if self.writable.swap(false, Ordering::Relaxed) {
                    tracing::error!(
                        path = %self.path.display(),
                        "disk cache write failed, writing stops (memory only; what is on disk still serves): {e}"
                    );
                }
            }
        }
    }

    fn object(&mut self, primary: &str, secondary: &str, obj: &Arc<Object>) -> std::io::Result<()> {
        let Some(body) = obj.body.bytes() else { return Ok(()) };
        if obj.is_invalidated() || !self.writable.load(Ordering::Relaxed) {
            return Ok(());
        }
        let meta = record::encode_object(primary, secondary, obj);
        let stored_ms = record::unix_ms(record::wall_time(obj.head().stored_at));
        let started = Instant::now();
        let Some(loc) = self.write(Kind::Object, &meta, body, stored_ms)? else {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        self.stats.write_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        self.stats.write_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        let entry = IndexEntry {
            secondary: secondary.into(),
            vary: obj.vary.clone(),
            loc,
            stored_ms,
            hits: 0,
            meta: meta.into(),
        };
        let freed = self.index.insert(primary, entry);
        self.stats.objects.fetch_add(1, Ordering::Relaxed);
        self.stats.objects.fetch_sub(freed.entries, Ordering::Relaxed);
        self.stats.bytes.fetch_add(loc.body_len, Ordering::Relaxed);
        self.stats.bytes.fetch_sub(freed.bytes, Ordering::Relaxed);
        // Invalidated while it was written: the live index drops it (the
        // invalidation's own record, queued after this one, covers restarts).
        if obj.is_invalidated() {
            let freed = self.index.remove_at(primary, loc);
            self.stats.objects.fetch_sub(freed.entries, Ordering::Relaxed);
            self.stats.bytes.fetch_sub(freed.bytes, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Appends a record, emptying the oldest segment first if needed.
    fn write(&mut self, kind: Kind, meta: &[u8], body: &[u8], stored_ms: u64) -> std::io::Result<Option<Location>> {
        let total = (record::RECORD_HEADER + meta.len() + body.len()) as u64;
        if !self.appender.fits(total) {
            return Ok(None);
        }
        if let Some(next) = self.appender.next_to_empty(total) {
            let freed = self.index.retain(|_, e| e.loc.seg as usize != next);
            self.stats.objects.fetch_sub(freed.entries, Ordering::Relaxed);
            self.stats.bytes.fetch_sub(freed.bytes, Ordering::Relaxed);
            self.stats.evictions.fetch_add(freed.entries, Ordering::Relaxed);
            self.appender.roll()?;
        }
        self.appender.append(kind, meta, body, stored_ms).map(Some)
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
