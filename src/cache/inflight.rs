//! Request collapsing: while one fill for a key is under way, other requests
//! for that key wait for its outcome instead of asking the origin.
//!
//! The leader holds a `Lead` guard. Publishing an outcome wakes every waiter;
//! dropping the guard without publishing (the leader was cancelled) also wakes
//! them, with `Abandoned`, so a waiter is never left blocked.

use super::object::Object;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What waiters learn when the leader's origin response arrives.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A cacheable response, stored (or refreshed); its body may still be filling.
    Stored { object: Arc<Object>, refreshed: bool },
    /// Uncacheable: go to the origin on your own, now.
    Pass,
    /// The leader answered without an object to share: a stale copy under
    /// `stale-if-error` stood in for an origin failure (waiters serve theirs),
    /// or a held LL-HLS reload gave up. An error answer from the origin, or
    /// the edge's own 502/504, comes as `Stored` instead (kept or not), so
    /// that every waiter gets the same status, headers and body.
    Failed { status: http::StatusCode, reason: Arc<str> },
    /// The object is shared through the cache rather than through this map
    /// (a fill too large for memory, streaming to disk: it is read there as
    /// it is written): look it up again.
    LookAgain,
}

type Slot = watch::Receiver<Option<Outcome>>;
type Shard = Mutex<HashMap<Box<str>, (u64, Slot)>>;

const SHARDS: usize = 32;

pub struct InFlight {
    shards: Box<[Shard]>,
    hasher: std::collections::hash_map::RandomState,
    /// Requests waiting on a leader right now, over all keys.
    waiting: AtomicUsize,
}

pub enum Join {
    Lead(Lead),
    Wait(Waiter),
}

/// A request waiting on a leader's outcome (counted while it waits).
pub struct Waiter {
    rx: watch::Receiver<Option<Outcome>>,
    inflight: Arc<InFlight>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.inflight.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl InFlight {
    pub fn new() -> Arc<InFlight> {
        Arc::new(InFlight {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            waiting: AtomicUsize::new(0),
        })
    }

    fn shard(&self, key: &str) -> &Shard {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// Becomes the leader for `key`, or a waiter on the current leader.
    pub fn join(self: &Arc<Self>, key: &str) -> Join {
        let mut map = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, rx)) = map.get(key) {
            // A leader that published already is gone from the map; one whose
            // sender is dropped is stale and is replaced below.
            if rx.has_changed().is_ok() {
                self.waiting.fetch_add(1, Ordering::Relaxed);
                return Join::Wait(Waiter { rx: rx.clone(), inflight: self.clone() });
            }
        }
        let (tx, rx) = watch::channel(None);
        let id = fastrand::u64(..);
        map.insert(key.into(), (id, rx));
        Join::Lead(Lead { inflight: self.clone(), key: key.into(), id, tx })
    }

    /// Forgets the leaders of matching keys: later requests lead a new fill
    /// (the forgotten leaders still answer the requests already waiting).
    pub fn forget(&self, matches: impl Fn(&str) -> bool) {
        for shard in self.shards.iter() {
            shard.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| !matches(k));
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|m| m.len()).unwrap_or(0)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests waiting on a leader right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// The leader's guard for one key.
pub struct Lead {
    inflight: Arc<InFlight>,
    key: Box<str>,
    id: u64,
    tx: watch::Sender<Option<Outcome>>,
}

impl Lead {
    /// Tells every waiter the outcome and frees the key for new leaders.
    pub fn publish(self, outcome: Outcome) {
        self.tx.send_replace(Some(outcome));
        // Drop removes the map entry.
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        let mut map = self.inflight.shard(&self.key).lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            map.remove(&self.key);
        }
        // Dropping `tx` wakes waiters that saw no outcome: they retry.
    }
}

/// Waits for the leader's outcome. `None`: the leader gave up (retry), or
/// `timeout` passed (go to the origin on your own).
pub async fn wait(mut waiter: Waiter, timeout: std::time::Duration) -> Result<Option<Outcome>, Elapsed> {
    match tokio::time::timeout(timeout, waiter.rx.wait_for(|o| o.is_some())).await {
        Ok(Ok(v)) => Ok(v.clone()),
        Ok(Err(_)) => Ok(None),
        Err(_) => Err(Elapsed),
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Elapsed;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn cancelled_leader_releases_waiters() {
        let f = InFlight::new();
        let lead = match f.join("k") {
            Join::Lead(l) => l,
            Join::Wait(_) => panic!("first joiner must lead"),
        };
        let rx = match f.join("k") {
            Join::Wait(rx) => rx,
            Join::Lead(_) => panic!("second joiner must wait"),
        };
        assert_eq!(f.waiting(), 1);
        let waiter = tokio::spawn(wait(rx, Duration::from_secs(5)));
        drop(lead);
        assert!(matches!(waiter.await.unwrap(), Ok(None)));
        assert!(f.is_empty());
        assert_eq!(f.waiting(), 0);
        assert!(matches!(f.join("k"), Join::Lead(_)));
    }

    #[tokio::test]
    async fn published_outcome_reaches_waiters() {
        let f = InFlight::new();
        let Join::Lead(lead) = f.join("k") else { panic!("lead") };
        let Join::Wait(rx) = f.join("k") else { panic!("wait") };
        lead.publish(Outcome::Pass);
        assert!(matches!(wait(rx, Duration::from_secs(1)).await, Ok(Some(Outcome::Pass))));
    }

    #[tokio::test]
    async fn waiter_times_out() {
        let f = InFlight::new();
        let Join::Lead(_lead) = f.join("k") else { panic!("lead") };
        let Join::Wait(rx) = f.join("k") else { panic!("wait") };
        assert!(wait(rx, Duration::from_millis(20)).await.is_err());
    }
}
