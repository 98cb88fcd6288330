//! Per-distribution statistics, Prometheus metrics and usage counters.
//!
//! Each distribution has one [`DistStats`], created by the [`Registry`] on
//! first use and kept across configuration changes. The data plane holds the
//! `Arc<DistStats>` of a route, so recording a request is a handful of relaxed
//! atomic adds: no lock, no allocation. The registry's lock is taken only when
//! routes are rebuilt and when stats are read.
//!
//! # Metric names (Prometheus text format 0.0.4)
//!
//! | name | type | labels |
//! |---|---|---|
//! | `mediaedge_requests_total` | counter | `distribution`, `status_class` (`1xx`..`5xx`), `cache_result` (`Hit`, `RefreshHit`, `Miss`, `Error`, `Redirect`) |
//! | `mediaedge_requests_by_protocol_total` | counter | `distribution`, `protocol` (`http`, `https`) |
//! | `mediaedge_bytes_out_total` | counter | `distribution` (header and body bytes sent to viewers) |
//! | `mediaedge_origin_bytes_in_total` | counter | `distribution` (body bytes received from origins) |
//! | `mediaedge_origin_bytes_out_total` | counter | `distribution` (request bytes sent to origins) |
//! | `mediaedge_origin_requests_total` | counter | `distribution` |
//! | `mediaedge_origin_errors_total` | counter | `distribution`, `kind` (`connect`, `timeout`, `protocol`) |
//! | `mediaedge_origin_latency_seconds` | histogram | `distribution` (`_bucket{le}`, `_sum`, `_count`; time to the origin's response head) |
//! | `mediaedge_collapsed_requests_total` | counter | `distribution` (origin fetches saved by collapsing) |
//! | `mediaedge_stale_if_error_total` | counter | `distribution` (expired copies served because the origin failed) |
//! | `mediaedge_origin_failovers_total` | counter | `distribution` (requests an origin group sent on to its next member) |
//! | `mediaedge_origin_ejections_total` | counter | `distribution` (members of origin groups ejected after failing) |
//! | `mediaedge_cache_bytes` | gauge | |
//! | `mediaedge_cache_capacity_bytes` | gauge | |
//! | `mediaedge_cache_objects` | gauge | |
//! | `mediaedge_fills_in_flight` | gauge | |
//! | `mediaedge_cache_evictions_total` | counter | |
//! | `mediaedge_manifests_without_tokens_total` | counter | (manifests served as stored: tokens would have changed how they parse) |
//!
//! With a disk tier, the tiers' and the disk's own families follow
//! (`mediaedge_cache_tier_*{tier}`, `mediaedge_disk_*`; `disk`, and
//! docs/disk-cache.md for the list).
//!
//! Latency buckets (seconds): 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5
//! 1 2.5 5 10 +Inf.
//!
//! The parts: `counters` records (the request path's side), `histogram` the
//! origin latency buckets, `snapshot` the stats JSON, `usage` the counters
//! taken for the stored daily usage, `registry` the stats of every
//! distribution, `prometheus` the text format.

mod counters;
mod disk;
mod histogram;
mod prometheus;
mod registry;
mod snapshot;
mod usage;

pub use counters::OriginErrorKind;
pub use histogram::LatencySummary;
pub use prometheus::{render_prometheus, CacheGauges, PROMETHEUS_CONTENT_TYPE};
pub use registry::Registry;
pub use snapshot::{ByClass, ByResult, ErrorCounts, StatsSnapshot};
pub use usage::UsageDelta;

use crate::outcome::RESULT_TYPES;
use histogram::BUCKETS;
use std::sync::atomic::{AtomicU64, Ordering};

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const RESULTS: usize = RESULT_TYPES.len();

/// The status class index (0 for 1xx .. 4 for 5xx); codes outside 100..=599
/// are clamped to the nearest class.
fn class_index(status: u16) -> usize {
    (usize::from(status / 100)).clamp(1, 5) - 1
}

/// One distribution's counters. All recording is relaxed atomic adds.
#[derive(Debug)]
pub struct DistStats {
    id: String,
    /// Responses by (status class × result type): `class * RESULTS + result.class()`.
    responses: [AtomicU64; 5 * RESULTS],
    http: AtomicU64,
    https: AtomicU64,
    bytes_out: AtomicU64,
    origin_bytes_in: AtomicU64,
    origin_bytes_out: AtomicU64,
    origin_requests: AtomicU64,
    origin_errors: [AtomicU64; 3],
    /// Non-cumulative counts per latency bucket (the last is beyond 10 s).
    latency_buckets: [AtomicU64; BUCKETS],
    latency_sum_us: AtomicU64,
    latency_max_us: AtomicU64,
    collapsed: AtomicU64,
    stale_if_error: AtomicU64,
    failovers: AtomicU64,
    ejections: AtomicU64,
    // Usage not yet taken (reset by `take_usage`).
    usage_bytes_to_viewers: AtomicU64,
    usage_bytes_to_origin: AtomicU64,
    usage_http: AtomicU64,
    usage_https: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}
