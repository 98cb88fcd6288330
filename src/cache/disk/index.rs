//! The in-memory index of the disk tier: primary key → the variants on disk.
//! Rebuilt from the segment files at start; sharded so that disk lookups do
//! not share one lock.

use super::log::Location;
use crate::cache::invalidate;
use crate::cache::object::VaryKey;
use http::HeaderMap;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

const SHARDS: usize = 16;

#[derive(Debug, Clone)]
pub struct IndexEntry {
    pub secondary: Box<str>,
    pub vary: Option<VaryKey>,
    pub loc: Location,
    pub stored_ms: u64,
    /// The record's metadata (keys and head), decoded on each disk hit.
    pub meta: Arc<[u8]>,
    /// Disk hits since it was written, loaded or copied forward.
    pub hits: u32,
    /// The memory copy it was written from or promoted to, if any: its hits
    /// keep the record hot (`TOUCHED`).
    pub memory: std::sync::Weak<crate::cache::object::Object>,
    /// The body's per-piece checksums (bodies above `PIECES_ABOVE`).
    pub pieces: Option<Arc<[u32]>>,
}

impl IndexEntry {
    fn supersedes(&self, other: &IndexEntry) -> bool {
        self.secondary == other.secondary && (self.vary == other.vary || self.vary.is_none() || other.vary.is_none())
    }
}

#[derive(Default)]
pub struct Index {
    shards: [Mutex<HashMap<Box<str>, Vec<IndexEntry>>>; SHARDS],
    hasher: std::collections::hash_map::RandomState,
}

/// What leaving the index freed.
#[derive(Default, Debug, Clone, Copy)]
pub struct Freed {
    pub entries: u64,
    pub bytes: u64,
}

impl Freed {
    fn add(&mut self, e: &IndexEntry) {
        self.entries += 1;
        self.bytes += e.loc.body_len;
    }
}

impl Index {
    fn shard(&self, primary: &str) -> MutexGuard<'_, HashMap<Box<str>, Vec<IndexEntry>>> {
        let i = self.hasher.hash_one(primary) as usize % SHARDS;
        // Every update is a single insert or removal: a poisoned shard is sound.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an entry; returns what the variant it replaces held.
    pub fn insert(&self, primary: &str, entry: IndexEntry) -> Freed {
        let mut freed = Freed::default();
        let mut shard = self.shard(primary);
        let list = shard.entry(primary.into()).or_default();
        list.retain(|e| {
            let old = entry.supersedes(e);
            if old {
                freed.add(e);
            }
            !old
        });
        list.push(entry);
        freed
    }

    /// The entry for this request, counting the hit.
    pub fn select(&self, primary: &str, secondary: &str, req: &HeaderMap) -> Option<IndexEntry> {
        let mut shard = self.shard(primary);
        let e = shard
            .get_mut(primary)?
            .iter_mut()
            .find(|e| &*e.secondary == secondary && e.vary.as_ref().is_none_or(|v| v.matches(req)))?;
        e.hits = e.hits.saturating_add(1);
        Some(e.clone())
    }

    /// Drops one entry if it is still at `loc`.
    pub fn remove_at(&self, primary: &str, loc: Location) -> Freed {
        self.remove_where(primary, |e| e.loc == loc)
    }

    pub fn remove_key(&self, primary: &str) -> Freed {
        self.remove_where(primary, |_| true)
    }

    fn remove_where(&self, primary: &str, f: impl Fn(&IndexEntry) -> bool) -> Freed {
        let mut freed = Freed::default();
        let mut shard = self.shard(primary);
        if let Some(list) = shard.get_mut(primary) {
            list.retain(|e| {
                let gone = f(e);
                if gone {
                    freed.add(e);
                }
                !gone
            });
            if list.is_empty() {
                shard.remove(primary);
            }
        }
        freed
    }

    /// Calls `f` on every entry (the writer's walk before it empties a segment).
    pub fn for_each(&self, mut f: impl FnMut(&str, &IndexEntry)) {
        for s in &self.shards {
            let shard = s.lock().unwrap_or_else(|e| e.into_inner());
            for (k, list) in shard.iter() {
                list.iter().for_each(|e| f(k, e));
            }
        }
    }

    /// Notes the memory copy of the entry at `loc` (a promotion).
    pub fn set_memory(&self, primary: &str, loc: Location, obj: &std::sync::Arc<crate::cache::object::Object>) {
        let mut shard = self.shard(primary);
        if let Some(e) = shard.get_mut(primary).and_then(|l| l.iter_mut().find(|e| e.loc == loc)) {
            e.memory = std::sync::Arc::downgrade(obj);
        }
    }

    /// Drops every entry matching `f` (a walk of the whole index: for
    /// invalidations and segment reuse, never for requests).
    pub fn retain(&self, f: impl Fn(&str, &IndexEntry) -> bool) -> Freed {
        let mut freed = Freed::default();
        for s in &self.shards {
            let mut shard = s.lock().unwrap_or_else(|e| e.into_inner());
            shard.retain(|k, list| {
                list.retain(|e| {
                    let keep = f(k, e);
                    if !keep {
                        freed.add(e);
                    }
                    keep
                });
                !list.is_empty()
            });
        }
        freed
    }

    /// Drops what these invalidation paths cover (stored before `before_ms`, if given).
    pub fn invalidate(&self, distribution: &str, paths: &[invalidate::PathMatch], before_ms: Option<u64>) -> Freed {
        self.retain(|k, e| !(before_ms.is_none_or(|t| e.stored_ms < t) && invalidate::covers(distribution, paths, k)))
    }
}
