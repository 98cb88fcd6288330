//! The disk tier's counters, and the snapshot `/metrics` and the stats API
//! read (docs/disk-cache.md, "Metrics").

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the disk latency buckets, in microseconds (the last
/// bucket, past 1 s, is `+Inf`).
pub const LATENCY_LE_US: [u64; 12] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];
/// The same bounds as Prometheus `le` labels (seconds).
pub const LATENCY_LE: [&str; 13] =
    ["0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "1", "+Inf"];
const BUCKETS: usize = LATENCY_LE.len();

/// A latency histogram: non-cumulative counts per bucket, and the sum.
#[derive(Debug, Default)]
pub struct Latency {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Latency {
    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let i = LATENCY_LE_US.iter().position(|&le| us <= le).unwrap_or(BUCKETS - 1);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn snapshot(&self) -> LatencySnapshot {
        let mut cumulative = 0;
        let buckets = std::array::from_fn(|i| {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            cumulative
        });
        LatencySnapshot { buckets, sum_us: self.sum_us.load(Ordering::Relaxed) }
    }
}

/// Counters of the disk tier.
#[derive(Debug, Default)]
pub struct Stats {
    pub objects: AtomicU64,
    pub bytes: AtomicU64,
    /// Memory hits (counted only with a disk tier: its `note_hit`).
    pub memory_hits: AtomicU64,
    /// Memory misses looked up on disk.
    pub lookups: AtomicU64,
    pub hits: AtomicU64,
    /// Body bytes of the disk hits (what the disk saved the origin).
    pub hit_bytes: AtomicU64,
    pub promotions: AtomicU64,
    pub writes: AtomicU64,
    pub write_bytes: AtomicU64,
    pub reads: AtomicU64,
    pub read_bytes: AtomicU64,
    /// Writes not made because the queue was full.
    pub refused_queue: AtomicU64,
    /// Writes not made because the object is larger than a segment allows.
    pub refused_size: AtomicU64,
    /// Writes not made because the tier stopped writing (a fault).
    pub refused_failing: AtomicU64,
    /// Objects dropped when their segment was reused.
    pub evictions: AtomicU64,
    /// Hot records copied forward from a segment about to be reused.
    pub copied_forward: AtomicU64,
    /// Objects written when memory evicted them (they were not on disk).
    pub write_backs: AtomicU64,
    /// Objects too large for memory streamed to disk as their fill arrived
    /// (completed records).
    pub streamed: AtomicU64,
    /// Streams to disk given up (no room, the fill failed or was cut, an
    /// invalidation, the segment reused under it).
    pub refused_stream: AtomicU64,
    /// Records of objects held in memory, let go when their segment was
    /// reused (memory writes them back when it evicts them).
    pub released: AtomicU64,
    /// Records dropped at start: torn or failing their checksum.
    pub dropped: AtomicU64,
    /// Records whose checksum failed when read while the edge ran.
    pub checksum_failures: AtomicU64,
    pub read_errors: AtomicU64,
    pub write_errors: AtomicU64,
    pub read_latency: Latency,
    pub write_latency: Latency,
}

/// The disk latency histogram at one instant: cumulative bucket counts
/// (bounds [`LATENCY_LE`]) and the sum in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySnapshot {
    pub buckets: [u64; BUCKETS],
    pub sum_us: u64,
}

impl LatencySnapshot {
    pub fn count(&self) -> u64 {
        self.buckets[BUCKETS - 1]
    }

    pub fn mean_ms(&self) -> f64 {
        match self.count() {
            0 => 0.0,
            n => self.sum_us as f64 / n as f64 / 1000.0,
        }
    }
}

/// The disk tier's counters read at once (see `DiskStore::snapshot`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskSnapshot {
    /// False once a fault stopped writes (memory only from then on).
    pub writable: bool,
    pub capacity_bytes: u64,
    pub bytes: u64,
    pub objects: u64,
    pub memory_hits: u64,
    pub lookups: u64,
    pub hits: u64,
    pub hit_bytes: u64,
    pub promotions: u64,
    pub writes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub read_bytes: u64,
    pub refused_queue: u64,
    pub refused_size: u64,
    pub refused_failing: u64,
    pub evictions: u64,
    pub copied_forward: u64,
    pub write_backs: u64,
    pub streamed: u64,
    pub refused_stream: u64,
    pub released: u64,
    pub dropped: u64,
    pub checksum_failures: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub read_latency: LatencySnapshot,
    pub write_latency: LatencySnapshot,
}

impl Stats {
    pub fn snapshot(&self, writable: bool, capacity_bytes: u64) -> DiskSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DiskSnapshot {
            writable,
            capacity_bytes,
            bytes: l(&self.bytes),
            objects: l(&self.objects),
            memory_hits: l(&self.memory_hits),
            lookups: l(&self.lookups),
            hits: l(&self.hits),
            hit_bytes: l(&self.hit_bytes),
            promotions: l(&self.promotions),
            writes: l(&self.writes),
            write_bytes: l(&self.write_bytes),
            reads: l(&self.reads),
            read_bytes: l(&self.read_bytes),
            refused_queue: l(&self.refused_queue),
            refused_size: l(&self.refused_size),
            refused_failing: l(&self.refused_failing),
            evictions: l(&self.evictions),
            copied_forward: l(&self.copied_forward),
            write_backs: l(&self.write_backs),
            streamed: l(&self.streamed),
            refused_stream: l(&self.refused_stream),
            released: l(&self.released),
            dropped: l(&self.dropped),
            checksum_failures: l(&self.checksum_failures),
            read_errors: l(&self.read_errors),
            write_errors: l(&self.write_errors),
            read_latency: self.read_latency.snapshot(),
            write_latency: self.write_latency.snapshot(),
        }
    }
}

impl DiskSnapshot {
    /// Memory hits over memory lookups (every lookup, with a disk tier).
    pub fn memory_hit_ratio(&self) -> f64 {
        ratio(self.memory_hits, self.memory_hits + self.lookups)
    }

    /// Disk hits over the memory misses looked up on disk.
    pub fn disk_hit_ratio(&self) -> f64 {
        ratio(self.hits, self.lookups)
    }

    /// The stats API's `cache.disk` object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "writable": self.writable,
            "capacity_bytes": self.capacity_bytes,
            "bytes": self.bytes,
            "objects": self.objects,
            "lookups": self.lookups,
            "hits": self.hits,
            "hit_ratio": self.disk_hit_ratio(),
            "hit_bytes": self.hit_bytes,
            "promotions": self.promotions,
            "writes": self.writes,
            "write_bytes": self.write_bytes,
            "reads": self.reads,
            "read_bytes": self.read_bytes,
            "admissions_refused": {
                "queue_full": self.refused_queue,
                "too_large": self.refused_size,
                "not_writing": self.refused_failing,
                "stream_given_up": self.refused_stream,
            },
            "streamed": self.streamed,
            "evictions": self.evictions,
            "copied_forward": self.copied_forward,
            "write_backs": self.write_backs,
            "released_to_memory": self.released,
            "dropped_at_start": self.dropped,
            "checksum_failures": self.checksum_failures,
            "read_errors": self.read_errors,
            "write_errors": self.write_errors,
            "read_latency_ms_mean": self.read_latency.mean_ms(),
            "write_latency_ms_mean": self.write_latency.mean_ms(),
        })
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_cumulative_and_the_last_is_everything() {
        let l = Latency::default();
        for us in [50, 100, 101, 3_000, 2_000_000] {
            l.record(Duration::from_micros(us));
        }
        let s = l.snapshot();
        assert_eq!(&s.buckets[..4], &[2, 3, 3, 3]);
        assert_eq!(s.buckets[5], 4, "3 ms is under 5 ms");
        assert_eq!(s.count(), 5);
        assert_eq!(s.sum_us, 2_003_251);
    }
}
