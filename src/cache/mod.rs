//! The cache: storage, freshness policy and request collapsing.
//!
//! `Cache::lookup` answers from storage; on a miss (or a stale object) callers
//! `join` the in-flight map and either lead a fill or wait for the leader.
//! Fills are driven by `crate::proxy::fill`; this module owns the state.

pub mod body;
pub mod disk;
pub mod inflight;
pub mod invalidate;
pub mod key;
pub mod object;
pub mod policy;
pub mod store;

use crate::config::CacheConfig;
use http::HeaderMap;
use inflight::InFlight;
use object::Object;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use store::{Entry, MemoryStore, Slot, Storage};

pub use key::CacheKey;

pub struct Cache {
    store: Arc<dyn Storage>,
    /// The disk tier, if configured and usable.
    disk: Option<Arc<disk::DiskStore>>,
    inflight: Arc<InFlight>,
    pub config: CacheConfig,
    max_object_bytes: u64,
    /// Bumped by every invalidation; fills note it when they start.
    epoch: Arc<AtomicU64>,
    /// Invalidations of the last hour, for fills that started before them.
    recent: Mutex<Vec<invalidate::Recent>>,
}

/// The invalidation epoch a fill started in (see `Cache::insert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(u64);

/// What storage holds for a request.
pub enum Lookup {
    Found(Arc<Object>),
    /// Hit-for-pass: go to the origin without waiting.
    Pass,
    /// Nothing usable. `collapse_key` is the key to collapse on: it includes the
    /// request's values for the `Vary` names known for this key.
    Miss,
}

/// How many shards memory is split into: up to 8 (a hit takes only its
/// shard's read lock), but none smaller than 16 MiB. Each shard runs its own
/// S3-FIFO over `memory / shards`: a shard of a few objects has a small queue
/// smaller than one object, and its policy degenerates to FIFO.
fn memory_shards(memory_bytes: u64) -> usize {
    const MIN_SHARD: u64 = 16 << 20;
    let n = (memory_bytes / MIN_SHARD).clamp(1, 8);
    1 << (63 - n.leading_zeros())
}

impl Cache {
    pub fn new(config: CacheConfig) -> Cache {
        // The largest object memory takes: an eighth of it.
        const MAX_OBJECT_FRACTION: u64 = 8;
        let max_object_bytes = config.max_object_bytes.min(config.memory_bytes / MAX_OBJECT_FRACTION);
        let disk = config.disk.as_ref().and_then(|d| match disk::DiskStore::open(d, &config.replay) {
            Ok(store) => Some(Arc::new(store)),
            Err(e) => {
                tracing::error!("disk cache unusable, running memory-only: {e}");
                None
            }
        });
        // What memory evicts goes to disk if it is not there (exclusive tiers).
        let sink = disk.clone().map(|d| -> store::EvictSink {
            Arc::new(move |primary: &str, slot: &Arc<Slot>| d.evicted_from_memory(primary, slot))
        });
        Cache {
            store: Arc::new(MemoryStore::new(config.memory_bytes, memory_shards(config.memory_bytes), sink)),
            disk,
            inflight: InFlight::new(),
            config,
            max_object_bytes,
            epoch: Arc::new(AtomicU64::new(0)),
            recent: Mutex::new(Vec::new()),
        }
    }

    /// Noted by a fill before it asks the origin.
    pub fn epoch(&self) -> Epoch {
        Epoch(self.epoch.load(Ordering::SeqCst))
    }

    /// Objects larger than this are passed through, never stored.
    pub fn max_object_bytes(&self) -> u64 {
        self.max_object_bytes
    }

    pub fn lookup(&self, key: &CacheKey, req: &HeaderMap) -> Lookup {
        let found = self.store.get(&key.primary).and_then(|slot| match slot.select(&key.secondary, req) {
            Some(Entry::Object(o)) if !o.is_invalidated() && !o.body.is_failed() => Some(Lookup::Found(o)),
            Some(Entry::Pass { until }) if Instant::now() < until => Some(Lookup::Pass),
            _ => None,
        });
        match (found, &self.disk) {
            (Some(Lookup::Found(o)), Some(disk)) => {
                disk.note_hit(key, &o);
                Lookup::Found(o)
            }
            (Some(l), _) => l,
            (None, Some(disk)) => match disk.lookup(key, req) {
                Some((o, promote)) => {
                    if promote {
                        self.promote(key, &o);
                    }
                    Lookup::Found(o)
                }
                None => Lookup::Miss,
            },
            (None, None) => Lookup::Miss,
        }
    }

    /// Puts an object found on disk into memory: at once if its body was read
    /// whole, else read whole on the blocking pool (if memory takes objects
    /// that large). An invalidation meanwhile wins.
    fn promote(&self, key: &CacheKey, obj: &Arc<Object>) {
        let since = self.epoch();
        if obj.body.total_len().is_some_and(|n| n > self.max_object_bytes) {
            // Larger than memory takes: it stays on disk.
            return;
        }
        if obj.body.bytes().is_some() {
            self.insert(key, obj.clone(), since);
            if let Some(d) = &self.disk {
                d.promoted();
            }
            return;
        }
        let (Some(extent), Ok(rt)) = (obj.body.extent().cloned(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let (store, key, old) = (self.store.clone(), key.clone(), obj.clone());
        let stats = self.disk.as_ref().map(|d| d.stats.clone());
        let epoch = self.epoch.clone();
        rt.spawn_blocking(move || {
            let Ok(bytes) = extent.read_at(0, extent.len() as usize) else { return };
            let moved = || epoch.load(Ordering::SeqCst) != since.0;
            if bytes.len() as u64 != extent.len() || moved() {
                return;
            }
            let promoted = Object::new(
                (**old.head()).clone(),
                body::StoredBody::complete(bytes),
                old.vary.clone(),
                old.compressible,
                old.media,
            );
            promoted.disk_state.store(disk::DONE, Ordering::Relaxed);
            let slot = match store.get(&key.primary) {
                Some(s) => s,
                None => Arc::new(Slot::default()),
            };
            slot.upsert(key.secondary.as_str().into(), Entry::Object(promoted.clone()));
            store.put(&key.primary, slot.clone());
            // An invalidation ran meanwhile (it bumps the epoch before it
            // walks the store): this copy is not kept.
            if moved() {
                promoted.invalidate();
                slot.remove_object(&promoted);
                return;
            }
            if let Some(s) = stats {
                s.promotions.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    /// The key a miss for this request collapses on.
    pub fn collapse_key(&self, key: &CacheKey, req: &HeaderMap) -> String {
        let mut k = String::with_capacity(key.primary.len() + key.secondary.len() + 8);
        k.push_str(&key.primary);
        k.push('\u{1d}');
        k.push_str(&key.secondary);
        if let Some(names) = self.store.get(&key.primary).and_then(|s| s.vary_names(&key.secondary)) {
            k.push_str(&object::VaryKey::suffix_for(&names, req));
        }
        k
    }

    pub fn join(&self, collapse_key: &str) -> inflight::Join {
        self.inflight.join(collapse_key)
    }

    fn slot(&self, primary: &str) -> Arc<Slot> {
        match self.store.get(primary) {
            Some(s) => s,
            None => {
                let s = Arc::new(Slot::default());
                self.store.put(primary, s.clone());
                s
            }
        }
    }

    /// Stores an object (possibly still filling) whose fill started in `since`.
    /// An invalidation that ran since then and covers the key wins: the object
    /// serves the requests already waiting for it and is not kept. (Stored
    /// first, checked after: an invalidation bumps the epoch before it walks
    /// the store, so one of the two always sees the other.)
    pub fn insert(&self, key: &CacheKey, obj: Arc<Object>, since: Epoch) {
        let slot = self.slot(&key.primary);
        slot.upsert(key.secondary.as_str().into(), Entry::Object(obj.clone()));
        self.store.put(&key.primary, slot);
        if self.epoch.load(Ordering::SeqCst) != since.0 && self.invalidated_since(&key.primary, since) {
            self.remove_object(key, &obj);
        }
    }

    fn invalidated_since(&self, primary: &str, since: Epoch) -> bool {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().filter(|r| r.epoch > since.0).any(|r| invalidate::covers(&r.distribution, &r.paths, primary))
    }

    /// Invalidates every object of a distribution these paths cover, in every
    /// variant, and frees covered keys from the collapsing map, so the next
    /// request for them goes to the origin. Returns the keys invalidated.
    pub fn invalidate(&self, distribution: &str, paths: &[invalidate::PathMatch]) -> usize {
        let paths: Arc<[invalidate::PathMatch]> = paths.into();
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            recent.retain(|r| r.at.elapsed() < invalidate::REMEMBER);
            recent.push(invalidate::Recent {
                epoch,
                distribution: distribution.to_string(),
                paths: paths.clone(),
                at: Instant::now(),
            });
        }
        self.inflight.forget(|k| invalidate::covers(distribution, &paths, k));
        let prefix = format!("{distribution}\u{1f}");
        let mut n = 0;
        for k in self.store.keys_with_prefix(&prefix) {
            if invalidate::covers(distribution, &paths, &k) && self.purge_memory(&k) {
                n += 1;
            }
        }
        if let Some(disk) = &self.disk {
            disk.invalidate(distribution, &paths);
        }
        n
    }

    /// A 304 refreshed a stored object's head: the disk copy is rewritten too.
    pub fn refreshed(&self, key: &CacheKey, obj: &Arc<Object>) {
        if let Some(disk) = &self.disk {
            disk.refreshed(key, obj);
        }
    }

    /// Re-weighs an object whose fill finished, unless it was dropped meanwhile.
    pub fn fill_finished(&self, key: &CacheKey, obj: &Arc<Object>) {
        if obj.is_invalidated() {
            return;
        }
        if let Some(disk) = &self.disk {
            disk.fill_finished(key, obj);
        }
        if let Some(slot) = self.store.get(&key.primary) {
            if matches!(slot.select(&key.secondary, &HeaderMap::new()), Some(Entry::Object(ref o)) if Arc::ptr_eq(o, obj))
                || obj.vary.is_some()
            {
                self.store.put(&key.primary, slot);
            }
        }
    }

    /// Removes an object whose fill failed or which grew too large.
    pub fn remove_object(&self, key: &CacheKey, obj: &Arc<Object>) {
        obj.invalidate();
        self.leave_memory(key, obj);
    }

    /// Takes an object out of memory without invalidating it (it lives on
    /// elsewhere: a fill streaming to disk).
    pub fn leave_memory(&self, key: &CacheKey, obj: &Arc<Object>) {
        if let Some(slot) = self.store.get(&key.primary) {
            if slot.remove_object(obj) {
                self.store.remove(&key.primary);
            } else {
                self.store.put(&key.primary, slot);
            }
        }
    }

    /// A fill grew past memory's largest object: the disk tier may stream it
    /// (see `DiskStore::stream`). Call before the body starts passing.
    pub fn oversize(&self, key: &CacheKey, obj: &Arc<Object>) -> disk::Oversize {
        match &self.disk {
            Some(d) if obj.body.total_len().is_some_and(|n| self.may_stream(n)) => d.stream(key, obj),
            _ => disk::Oversize::No,
        }
    }

    /// Whether an object of this length, too large for memory, may be
    /// streamed to the disk tier: there is one, and it is within
    /// `max_object_size`.
    pub fn may_stream(&self, len: u64) -> bool {
        self.disk.is_some() && len <= self.config.max_object_bytes
    }

    /// Records hit-for-pass for this variant.
    pub fn insert_pass(&self, key: &CacheKey) {
        if self.config.hit_for_pass_ttl.is_zero() {
            return;
        }
        let slot = self.slot(&key.primary);
        slot.upsert(
            key.secondary.as_str().into(),
            Entry::Pass { until: Instant::now() + self.config.hit_for_pass_ttl },
        );
        self.store.put(&key.primary, slot);
    }

    /// Invalidates every response stored under a primary key (all variants).
    pub fn purge(&self, primary: &str) -> bool {
        if let Some(disk) = &self.disk {
            disk.purge(primary);
        }
        self.purge_memory(primary)
    }

    fn purge_memory(&self, primary: &str) -> bool {
        match self.store.remove(primary) {
            Some(slot) => {
                slot.invalidate_all();
                true
            }
            None => false,
        }
    }

    pub fn used_bytes(&self) -> u64 {
        self.store.used_bytes()
    }

    pub fn entry_count(&self) -> usize {
        self.store.entry_count()
    }

    pub fn fills_in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Requests waiting on another request's fill right now (collapsed).
    pub fn collapsed_waiting(&self) -> usize {
        self.inflight.waiting()
    }

    /// Slots evicted to make room, since start.
    pub fn evictions(&self) -> u64 {
        self.store.evictions()
    }

    /// The disk tier, if one is configured and usable.
    pub fn disk(&self) -> Option<&disk::DiskStore> {
        self.disk.as_deref()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_is_split_into_shards_of_at_least_16_mib_and_at_most_eight() {
        let mib = |n: u64| n << 20;
        for (memory, shards) in [(1, 1), (31, 1), (32, 2), (63, 2), (64, 4), (127, 4), (128, 8), (4096, 8)] {
            assert_eq!(super::memory_shards(mib(memory)), shards, "{memory} MiB");
        }
    }
}
