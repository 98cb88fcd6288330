//! The storage interface and the in-memory store.
//!
//! A store maps a primary key (distribution, path, keyed query) to a `Slot`:
//! the variants stored under that key (by keyed headers/cookies and by `Vary`).
//! Bodies are `StoredBody`s: written as a stream by the fill, read as streams
//! from any offset, so a disk tier can implement the same shapes.

use super::object::Object;
use arc_swap::ArcSwap;
use http::HeaderMap;
use quick_cache::sync::Cache as QuickCache;
use quick_cache::Weighter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What a variant holds.
#[derive(Debug, Clone)]
pub enum Entry {
    Object(Arc<Object>),
    /// Hit-for-pass: the last answer was uncacheable; until `until`, requests
    /// for this variant go to the origin at once without waiting on each other.
    Pass {
        until: Instant,
    },
}

#[derive(Debug, Clone)]
pub struct Variant {
    /// Key-policy headers and cookies.
    pub secondary: Arc<str>,
    pub entry: Entry,
}

impl Variant {
    fn selects(&self, secondary: &str, req: &HeaderMap) -> bool {
        if &*self.secondary != secondary {
            return false;
        }
        match &self.entry {
            Entry::Object(o) => o.vary.as_ref().is_none_or(|v| v.matches(req)),
            Entry::Pass { .. } => true,
        }
    }

    fn weight(&self) -> u64 {
        match &self.entry {
            Entry::Object(o) => o.weight(),
            Entry::Pass { .. } => 128,
        }
    }
}

/// All variants under one primary key. Readers load the list without locking.
#[derive(Debug, Default)]
pub struct Slot {
    variants: ArcSwap<Vec<Variant>>,
}

impl Slot {
    /// The variant for this request, if stored.
    pub fn select(&self, secondary: &str, req: &HeaderMap) -> Option<Entry> {
        self.variants.load().iter().find(|v| v.selects(secondary, req)).map(|v| v.entry.clone())
    }

    /// The `Vary` names of stored responses with this secondary key, so a miss
    /// can collapse on the right variant key.
    pub fn vary_names(&self, secondary: &str) -> Option<Vec<http::HeaderName>> {
        self.variants.load().iter().find_map(|v| match &v.entry {
            Entry::Object(o) if &*v.secondary == secondary => o.vary.as_ref().map(|k| k.names.clone()),
            _ => None,
        })
    }

    /// Adds a variant, replacing the one it supersedes: the same secondary key
    /// and, for objects, the same `Vary` selection.
    pub fn upsert(&self, secondary: Arc<str>, entry: Entry) {
        self.variants.rcu(|list| {
            let mut next: Vec<Variant> = list
                .iter()
                .filter(|v| {
                    if v.secondary != secondary {
                        return true;
                    }
                    match (&v.entry, &entry) {
                        (Entry::Object(old), Entry::Object(new)) => {
                            old.vary != new.vary && old.vary.is_some() && new.vary.is_some()
                        }
                        _ => false,
                    }
                })
                .cloned()
                .collect();
            next.push(Variant { secondary: secondary.clone(), entry: entry.clone() });
            next
        });
    }

    /// Removes one object (a failed fill); returns whether the slot is now empty.
    pub fn remove_object(&self, obj: &Arc<Object>) -> bool {
        let after = self.variants.rcu(|list| {
            list.iter()
                .filter(|v| !matches!(&v.entry, Entry::Object(o) if Arc::ptr_eq(o, obj)))
                .cloned()
                .collect::<Vec<_>>()
        });
        after.len() <= 1 && after.iter().all(|v| matches!(&v.entry, Entry::Object(o) if Arc::ptr_eq(o, obj)))
    }

    /// The stored objects with their secondary keys.
    pub fn objects(&self) -> Vec<(Arc<str>, Arc<Object>)> {
        self.variants
            .load()
            .iter()
            .filter_map(|v| match &v.entry {
                Entry::Object(o) => Some((v.secondary.clone(), o.clone())),
                Entry::Pass { .. } => None,
            })
            .collect()
    }

    /// Marks every stored object invalid (readers already holding one finish).
    pub fn invalidate_all(&self) {
        for v in self.variants.load().iter() {
            if let Entry::Object(o) = &v.entry {
                o.invalidate();
            }
        }
    }

    pub fn weight(&self) -> u64 {
        self.variants.load().iter().map(Variant::weight).sum::<u64>() + 64
    }
}

/// Storage for slots. The in-memory store implements it; a disk tier would too.
pub trait Storage: Send + Sync + 'static {
    fn get(&self, primary: &str) -> Option<Arc<Slot>>;
    /// Inserts or re-inserts (re-weighs) a slot.
    fn put(&self, primary: &str, slot: Arc<Slot>);
    fn remove(&self, primary: &str) -> Option<Arc<Slot>>;
    /// Bytes held.
    fn used_bytes(&self) -> u64;
    fn entry_count(&self) -> usize;
    /// The primary keys starting with `prefix` (a walk of the store: for
    /// invalidations, never for requests).
    fn keys_with_prefix(&self, prefix: &str) -> Vec<Box<str>>;
    /// Slots pushed out to make room, since start.
    fn evictions(&self) -> u64;
}

/// Told about each slot pushed out of memory (the disk tier writes back what
/// it does not hold). Called on the inserting thread after the shard's lock
/// is released; it must not block.
pub type EvictSink = Arc<dyn Fn(&str, &Arc<Slot>) + Send + Sync>;

/// Counts evictions and hands each evicted slot to the sink. quick_cache
/// also reports a value replaced under the same key (a re-weigh) as evicted:
/// `MemoryStore::put` leaves those out.
#[derive(Clone, Default)]
struct Evictions {
    count: Arc<AtomicU64>,
    sink: Option<EvictSink>,
}

impl Evictions {
    fn handle(&self, evicted: Vec<(Box<str>, Weighed)>, inserted: Option<&str>) {
        for (key, w) in evicted {
            if inserted == Some(&*key) {
                continue;
            }
            self.count.fetch_add(1, Ordering::Relaxed);
            if let Some(sink) = &self.sink {
                sink(&key, &w.slot);
            }
        }
    }
}

impl quick_cache::Lifecycle<Box<str>, Weighed> for Evictions {
    type RequestState = Vec<(Box<str>, Weighed)>;

    fn begin_request(&self) -> Self::RequestState {
        Vec::new()
    }

    fn on_evict(&self, state: &mut Self::RequestState, key: Box<str>, val: Weighed) {
        state.push((key, val));
    }

    fn end_request(&self, state: Self::RequestState) {
        self.handle(state, None);
    }
}

#[derive(Clone)]
struct SlotWeighter;

/// A slot with its weight as of insertion: quick_cache needs an item's weight
/// to stay the same while it is stored, so a changed slot is re-inserted.
#[derive(Clone)]
struct Weighed {
    slot: Arc<Slot>,
    weight: u64,
}

impl Weighter<Box<str>, Weighed> for SlotWeighter {
    fn weight(&self, key: &Box<str>, v: &Weighed) -> u64 {
        v.weight + key.len() as u64
    }
}

/// The in-memory store: quick_cache's S3-FIFO, sharded, weighed in bytes.
/// One-off objects (a scan of segments) pass through its small queue without
/// pushing out objects that are hit again; reads take only a shard's read lock.
pub struct MemoryStore {
    inner: QuickCache<Box<str>, Weighed, SlotWeighter, quick_cache::DefaultHashBuilder, Evictions>,
    evictions: Evictions,
}

impl MemoryStore {
    /// `shards` bounds the largest object: each shard holds `budget / shards`.
    /// `sink` is told about each slot evicted to make room.
    pub fn new(budget_bytes: u64, shards: usize, sink: Option<EvictSink>) -> MemoryStore {
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity((budget_bytes / 65_536).clamp(1024, 1 << 20) as usize)
            .weight_capacity(budget_bytes)
            .shards(shards.max(1).next_power_of_two())
            .build()
            .unwrap_or_else(|_| unreachable!("valid quick_cache options"));
        let evictions = Evictions { count: Default::default(), sink };
        MemoryStore {
            inner: QuickCache::with_options(options, SlotWeighter, Default::default(), evictions.clone()),
            evictions,
        }
    }
}

impl Storage for MemoryStore {
    fn get(&self, primary: &str) -> Option<Arc<Slot>> {
        self.inner.get(primary).map(|w| w.slot)
    }

    fn put(&self, primary: &str, slot: Arc<Slot>) {
        let weight = slot.weight();
        let evicted = self.inner.insert_with_lifecycle(primary.into(), Weighed { slot, weight });
        self.evictions.handle(evicted, Some(primary));
    }

    fn remove(&self, primary: &str) -> Option<Arc<Slot>> {
        self.inner.remove(primary).map(|(_, v)| v.slot)
    }

    fn used_bytes(&self) -> u64 {
        self.inner.weight()
    }

    fn entry_count(&self) -> usize {
        self.inner.len()
    }

    fn keys_with_prefix(&self, prefix: &str) -> Vec<Box<str>> {
        self.inner.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, _)| k).collect()
    }

    fn evictions(&self) -> u64 {
        self.evictions.count.load(Ordering::Relaxed)
    }
}
