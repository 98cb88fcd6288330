//! The cache: storage, freshness policy and request collapsing.
//!
//! `Cache::lookup` answers from storage; on a miss (or a stale object) callers
//! `join` the in-flight map and either lead a fill or wait for the leader.
//! Fills are driven by `crate::proxy::fill`; this module owns the state.

pub mod body;
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
    store: Box<dyn Storage>,
    inflight: Arc<InFlight>,
    pub config: CacheConfig,
    max_object_bytes: u64,
    /// Bumped by every invalidation; fills note it when they start.
    epoch: AtomicU64,
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

impl Cache {
    pub fn new(config: CacheConfig) -> Cache {
        const SHARDS: usize = 8;
        let max_object_bytes = config.max_object_bytes.min(config.memory_bytes / SHARDS as u64);
        Cache {
            store: Box::new(MemoryStore::new(config.memory_bytes, SHARDS)),
            inflight: InFlight::new(),
            config,
            max_object_bytes,
            epoch: AtomicU64::new(0),
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
        let Some(slot) = self.store.get(&key.primary) else {
            return Lookup::Miss;
        };
        match slot.select(&key.secondary, req) {
            Some(Entry::Object(o)) if !o.is_invalidated() && !o.body.is_failed() => Lookup::Found(o),
            Some(Entry::Pass { until }) if Instant::now() < until => Lookup::Pass,
            _ => Lookup::Miss,
        }
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
            if invalidate::covers(distribution, &paths, &k) && self.purge(&k) {
                n += 1;
            }
        }
        n
    }

    /// Re-weighs an object whose fill finished, unless it was dropped meanwhile.
    pub fn fill_finished(&self, key: &CacheKey, obj: &Arc<Object>) {
        if obj.is_invalidated() {
            return;
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
        if let Some(slot) = self.store.get(&key.primary) {
            if slot.remove_object(obj) {
                self.store.remove(&key.primary);
            } else {
                self.store.put(&key.primary, slot);
            }
        }
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
}
