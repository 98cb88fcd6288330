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
//! | `mediaedge_cache_bytes` | gauge | |
//! | `mediaedge_cache_capacity_bytes` | gauge | |
//! | `mediaedge_cache_objects` | gauge | |
//! | `mediaedge_fills_in_flight` | gauge | |
//! | `mediaedge_cache_evictions_total` | counter | |
//! | `mediaedge_manifests_without_tokens_total` | counter | (manifests served as stored: tokens would have changed how they parse) |
//!
//! Latency buckets (seconds): 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5
//! 1 2.5 5 10 +Inf.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The `Content-Type` of [`render_prometheus`]'s output.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The cache result of a response, as in X-Cache / access logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    RefreshHit,
    Miss,
    Error,
    /// The edge redirected the viewer (a behavior's `redirect-to-https`).
    Redirect,
}

impl CacheResult {
    pub const ALL: [CacheResult; 5] =
        [CacheResult::Hit, CacheResult::RefreshHit, CacheResult::Miss, CacheResult::Error, CacheResult::Redirect];

    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "Hit",
            CacheResult::RefreshHit => "RefreshHit",
            CacheResult::Miss => "Miss",
            CacheResult::Error => "Error",
            CacheResult::Redirect => "Redirect",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why an origin request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OriginErrorKind {
    Connect,
    Timeout,
    Protocol,
}

impl OriginErrorKind {
    pub const ALL: [OriginErrorKind; 3] =
        [OriginErrorKind::Connect, OriginErrorKind::Timeout, OriginErrorKind::Protocol];

    pub fn as_str(self) -> &'static str {
        match self {
            OriginErrorKind::Connect => "connect",
            OriginErrorKind::Timeout => "timeout",
            OriginErrorKind::Protocol => "protocol",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const RESULTS: usize = 5;

/// The status class index (0 for 1xx .. 4 for 5xx); codes outside 100..=599
/// are clamped to the nearest class.
fn class_index(status: u16) -> usize {
    (usize::from(status / 100)).clamp(1, 5) - 1
}

/// Upper bounds of the finite latency buckets, in microseconds.
const LATENCY_BOUNDS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
/// The `le` labels of the buckets, the last one `+Inf`.
const LATENCY_LE: [&str; 14] =
    ["0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];
const BUCKETS: usize = LATENCY_LE.len();

/// One distribution's counters. All recording is relaxed atomic adds.
#[derive(Debug)]
pub struct DistStats {
    id: String,
    /// Responses by (status class × cache result): `class * 4 + result`.
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

impl DistStats {
    pub fn new(id: &str) -> DistStats {
        DistStats {
            id: id.to_owned(),
            responses: Default::default(),
            http: AtomicU64::new(0),
            https: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            origin_bytes_in: AtomicU64::new(0),
            origin_bytes_out: AtomicU64::new(0),
            origin_requests: AtomicU64::new(0),
            origin_errors: Default::default(),
            latency_buckets: Default::default(),
            latency_sum_us: AtomicU64::new(0),
            latency_max_us: AtomicU64::new(0),
            collapsed: AtomicU64::new(0),
            usage_bytes_to_viewers: AtomicU64::new(0),
            usage_bytes_to_origin: AtomicU64::new(0),
            usage_http: AtomicU64::new(0),
            usage_https: AtomicU64::new(0),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// One viewer response, counted when its head is sent. `status` is the HTTP status code.
    pub fn record_response(&self, status: u16, result: CacheResult, https: bool) {
        add(&self.responses[class_index(status) * RESULTS + result.index()], 1);
        if https {
            add(&self.https, 1);
            add(&self.usage_https, 1);
        } else {
            add(&self.http, 1);
            add(&self.usage_http, 1);
        }
    }

    /// Bytes sent to a viewer for one response: header bytes + body bytes
    /// (counted when the body ends or is dropped).
    pub fn record_bytes_out(&self, header_bytes: u64, body_bytes: u64) {
        let n = header_bytes.saturating_add(body_bytes);
        add(&self.bytes_out, n);
        add(&self.usage_bytes_to_viewers, n);
    }

    /// One origin request sent: `request_bytes` = request head + body bytes sent to the origin.
    pub fn record_origin_request(&self, request_bytes: u64) {
        add(&self.origin_requests, 1);
        add(&self.origin_bytes_out, request_bytes);
        add(&self.usage_bytes_to_origin, request_bytes);
    }

    /// Request body bytes streamed to the origin (after `record_origin_request`
    /// counted the head).
    pub fn record_origin_body_bytes(&self, bytes: u64) {
        add(&self.origin_bytes_out, bytes);
        add(&self.usage_bytes_to_origin, bytes);
    }

    /// Origin answered with headers after `latency` (time from sending to response head).
    pub fn record_origin_latency(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US.iter().position(|&b| us <= b).unwrap_or(BUCKETS - 1);
        add(&self.latency_buckets[bucket], 1);
        add(&self.latency_sum_us, us);
        self.latency_max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Body bytes received from the origin.
    pub fn record_origin_bytes(&self, bytes: u64) {
        add(&self.origin_bytes_in, bytes);
    }

    /// An origin failure by kind.
    pub fn record_origin_error(&self, kind: OriginErrorKind) {
        add(&self.origin_errors[kind.index()], 1);
    }

    /// A request served by another request's origin fetch (collapsing saved one origin fetch).
    pub fn record_collapsed(&self) {
        add(&self.collapsed, 1);
    }

    /// The current values. Counters are read one by one, so a snapshot taken
    /// under load may mix values from slightly different instants.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut by_result = [0u64; RESULTS];
        let mut by_class = [0u64; 5];
        for (i, c) in self.responses.iter().enumerate() {
            let n = load(c);
            by_class[i / RESULTS] += n;
            by_result[i % RESULTS] += n;
        }
        let requests: u64 = by_class.iter().sum();
        let hits = by_result[CacheResult::Hit.index()] + by_result[CacheResult::RefreshHit.index()];
        let lookups = hits + by_result[CacheResult::Miss.index()];
        let hit_ratio = if lookups == 0 { 0.0 } else { hits as f64 / lookups as f64 };
        let buckets: [u64; BUCKETS] = std::array::from_fn(|i| load(&self.latency_buckets[i]));
        StatsSnapshot {
            distribution_id: self.id.clone(),
            requests,
            requests_by_result: ByResult {
                hit: by_result[0],
                refresh_hit: by_result[1],
                miss: by_result[2],
                error: by_result[3],
                redirect: by_result[4],
            },
            requests_by_status_class: ByClass {
                class_1xx: by_class[0],
                class_2xx: by_class[1],
                class_3xx: by_class[2],
                class_4xx: by_class[3],
                class_5xx: by_class[4],
            },
            http_requests: load(&self.http),
            https_requests: load(&self.https),
            bytes_to_viewers: load(&self.bytes_out),
            bytes_from_origin: load(&self.origin_bytes_in),
            bytes_to_origin: load(&self.origin_bytes_out),
            origin_requests: load(&self.origin_requests),
            hit_ratio,
            collapsed_requests: load(&self.collapsed),
            errors: ErrorCounts {
                status_4xx: by_class[3],
                status_5xx: by_class[4],
                origin_connect: load(&self.origin_errors[OriginErrorKind::Connect.index()]),
                origin_timeout: load(&self.origin_errors[OriginErrorKind::Timeout.index()]),
                origin_protocol: load(&self.origin_errors[OriginErrorKind::Protocol.index()]),
            },
            origin_latency_ms: latency_summary(&buckets, load(&self.latency_sum_us), load(&self.latency_max_us)),
        }
    }

    /// Usage since the last take, each counter reset to zero atomically
    /// (`swap(0)`): viewer bytes (headers + bodies), bytes to origin, HTTP and
    /// HTTPS requests. Invalidation paths are counted by the store, not here.
    pub fn take_usage(&self) -> UsageDelta {
        let take = |c: &AtomicU64| c.swap(0, Ordering::Relaxed);
        UsageDelta {
            bytes_to_viewers: take(&self.usage_bytes_to_viewers),
            bytes_to_origin: take(&self.usage_bytes_to_origin),
            http_requests: take(&self.usage_http),
            https_requests: take(&self.usage_https),
        }
    }

    /// Puts taken usage back (when it could not be stored), to be taken again
    /// with what has been counted since. The cumulative counters are untouched.
    pub fn restore_usage(&self, usage: &UsageDelta) {
        add(&self.usage_bytes_to_viewers, usage.bytes_to_viewers);
        add(&self.usage_bytes_to_origin, usage.bytes_to_origin);
        add(&self.usage_http, usage.http_requests);
        add(&self.usage_https, usage.https_requests);
    }

    /// Usage not yet taken (read-only; for reports that add the in-memory part to stored rows).
    pub fn pending_usage(&self) -> UsageDelta {
        UsageDelta {
            bytes_to_viewers: load(&self.usage_bytes_to_viewers),
            bytes_to_origin: load(&self.usage_bytes_to_origin),
            http_requests: load(&self.usage_http),
            https_requests: load(&self.usage_https),
        }
    }
}

/// Latency in milliseconds from bucket counts: the mean from the exact sum,
/// each quantile as the upper bound of the bucket holding it (the largest
/// latency seen when that is the unbounded bucket).
fn latency_summary(buckets: &[u64; BUCKETS], sum_us: u64, max_us: u64) -> LatencySummary {
    let count: u64 = buckets.iter().sum();
    if count == 0 {
        return LatencySummary::default();
    }
    let quantile = |q: f64| {
        let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (i, n) in buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let us = LATENCY_BOUNDS_US.get(i).copied().unwrap_or(max_us);
                return us as f64 / 1000.0;
            }
        }
        max_us as f64 / 1000.0
    };
    LatencySummary {
        count,
        mean: sum_us as f64 / count as f64 / 1000.0,
        p50: quantile(0.50),
        p90: quantile(0.90),
        p99: quantile(0.99),
    }
}

/// Usage counted since the last [`DistStats::take_usage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageDelta {
    pub bytes_to_viewers: u64,
    pub bytes_to_origin: u64,
    pub http_requests: u64,
    pub https_requests: u64,
}

/// One distribution's stats; this JSON shape is part of the admin API (`GET /v1/stats`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StatsSnapshot {
    pub distribution_id: String,
    pub requests: u64,
    pub requests_by_result: ByResult,
    pub requests_by_status_class: ByClass,
    pub http_requests: u64,
    pub https_requests: u64,
    /// Headers + bodies.
    pub bytes_to_viewers: u64,
    /// Origin body bytes.
    pub bytes_from_origin: u64,
    pub bytes_to_origin: u64,
    pub origin_requests: u64,
    /// (Hit + RefreshHit) / requests whose result is Hit, RefreshHit or Miss; 0 when none.
    pub hit_ratio: f64,
    /// Origin fetches saved by collapsing.
    pub collapsed_requests: u64,
    pub errors: ErrorCounts,
    pub origin_latency_ms: LatencySummary,
}

/// Requests by cache result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ByResult {
    #[serde(rename = "Hit")]
    pub hit: u64,
    #[serde(rename = "RefreshHit")]
    pub refresh_hit: u64,
    #[serde(rename = "Miss")]
    pub miss: u64,
    #[serde(rename = "Error")]
    pub error: u64,
    #[serde(rename = "Redirect")]
    pub redirect: u64,
}

/// Requests by status class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ByClass {
    #[serde(rename = "1xx")]
    pub class_1xx: u64,
    #[serde(rename = "2xx")]
    pub class_2xx: u64,
    #[serde(rename = "3xx")]
    pub class_3xx: u64,
    #[serde(rename = "4xx")]
    pub class_4xx: u64,
    #[serde(rename = "5xx")]
    pub class_5xx: u64,
}

/// Error responses and origin failures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ErrorCounts {
    #[serde(rename = "4xx")]
    pub status_4xx: u64,
    #[serde(rename = "5xx")]
    pub status_5xx: u64,
    pub origin_connect: u64,
    pub origin_timeout: u64,
    pub origin_protocol: u64,
}

/// Origin latency in milliseconds, estimated from the histogram; zeros when `count` is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

/// Every distribution's stats, shared by the data plane (which asks for the
/// `Arc` when it builds routes) and the admin API.
#[derive(Debug, Default)]
pub struct Registry {
    stats: RwLock<BTreeMap<String, Arc<DistStats>>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The stats for an id, created on first use; the same `Arc` for the same
    /// id, so stats survive configuration changes.
    pub fn get_or_create(&self, id: &str) -> Arc<DistStats> {
        if let Some(s) = self.get(id) {
            return s;
        }
        let mut map = self.stats.write().unwrap_or_else(|e| e.into_inner());
        map.entry(id.to_owned()).or_insert_with(|| Arc::new(DistStats::new(id))).clone()
    }

    pub fn get(&self, id: &str) -> Option<Arc<DistStats>> {
        self.stats.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    /// All stats, sorted by id.
    pub fn all(&self) -> Vec<Arc<DistStats>> {
        self.stats.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    pub fn remove(&self, id: &str) {
        self.stats.write().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

/// Process-wide gauges and counters the cache provides at render time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheGauges {
    pub bytes: u64,
    pub entries: u64,
    pub evictions: u64,
    pub fills_in_flight: u64,
    pub capacity_bytes: u64,
}

/// A label value escaped for the text format: `\` → `\\`, `"` → `\"`, newline → `\n`.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Microseconds as decimal seconds, exactly.
fn seconds(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

/// Picks one counter of a distribution.
type CounterOf = fn(&DistStats) -> &AtomicU64;

/// Every metric in the Prometheus text exposition format 0.0.4 (see the module
/// documentation for the names).
pub fn render_prometheus(registry: &Registry, cache: &CacheGauges) -> String {
    let all = registry.all();
    let dists: Vec<(String, &DistStats)> = all.iter().map(|s| (escape_label(s.id()), s.as_ref())).collect();
    let mut out = String::with_capacity(4096 + dists.len() * 4096);

    family(&mut out, "mediaedge_requests_total", "counter", "Viewer responses by status class and cache result.");
    for (d, s) in &dists {
        for (ci, class) in CLASSES.iter().enumerate() {
            for r in CacheResult::ALL {
                let n = load(&s.responses[ci * RESULTS + r.index()]);
                let _ = writeln!(
                    out,
                    "mediaedge_requests_total{{distribution=\"{d}\",status_class=\"{class}\",cache_result=\"{}\"}} {n}",
                    r.as_str()
                );
            }
        }
    }

    family(&mut out, "mediaedge_requests_by_protocol_total", "counter", "Viewer responses by viewer protocol.");
    for (d, s) in &dists {
        for (proto, c) in [("http", &s.http), ("https", &s.https)] {
            let _ = writeln!(
                out,
                "mediaedge_requests_by_protocol_total{{distribution=\"{d}\",protocol=\"{proto}\"}} {}",
                load(c)
            );
        }
    }

    let simple: [(&str, &str, CounterOf); 5] = [
        ("mediaedge_bytes_out_total", "Bytes sent to viewers (headers and bodies).", |s| &s.bytes_out),
        ("mediaedge_origin_bytes_in_total", "Body bytes received from origins.", |s| &s.origin_bytes_in),
        ("mediaedge_origin_bytes_out_total", "Request bytes sent to origins (heads and bodies).", |s| {
            &s.origin_bytes_out
        }),
        ("mediaedge_origin_requests_total", "Requests sent to origins.", |s| &s.origin_requests),
        ("mediaedge_collapsed_requests_total", "Origin fetches saved by request collapsing.", |s| &s.collapsed),
    ];
    for (name, help, counter) in simple {
        family(&mut out, name, "counter", help);
        for (d, s) in &dists {
            let _ = writeln!(out, "{name}{{distribution=\"{d}\"}} {}", load(counter(s)));
        }
    }

    family(&mut out, "mediaedge_origin_errors_total", "counter", "Origin request failures by kind.");
    for (d, s) in &dists {
        for k in OriginErrorKind::ALL {
            let _ = writeln!(
                out,
                "mediaedge_origin_errors_total{{distribution=\"{d}\",kind=\"{}\"}} {}",
                k.as_str(),
                load(&s.origin_errors[k.index()])
            );
        }
    }

    family(
        &mut out,
        "mediaedge_origin_latency_seconds",
        "histogram",
        "Time from sending an origin request to its response head.",
    );
    for (d, s) in &dists {
        let mut cumulative = 0u64;
        for (le, c) in LATENCY_LE.iter().zip(&s.latency_buckets) {
            cumulative += load(c);
            let _ = writeln!(
                out,
                "mediaedge_origin_latency_seconds_bucket{{distribution=\"{d}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = seconds(load(&s.latency_sum_us));
        let _ = writeln!(out, "mediaedge_origin_latency_seconds_sum{{distribution=\"{d}\"}} {sum}");
        let _ = writeln!(out, "mediaedge_origin_latency_seconds_count{{distribution=\"{d}\"}} {cumulative}");
    }

    let process: [(&str, &str, &str, u64); 6] = [
        ("mediaedge_cache_bytes", "gauge", "Bytes held by the cache.", cache.bytes),
        ("mediaedge_cache_capacity_bytes", "gauge", "Capacity of the cache in bytes.", cache.capacity_bytes),
        ("mediaedge_cache_objects", "gauge", "Objects held by the cache.", cache.entries),
        ("mediaedge_fills_in_flight", "gauge", "Origin fills in progress.", cache.fills_in_flight),
        ("mediaedge_cache_evictions_total", "counter", "Objects evicted from the cache.", cache.evictions),
        (
            "mediaedge_manifests_without_tokens_total",
            "counter",
            "Manifests served without the viewer's tokens: adding them would change how they parse.",
            crate::media::rewrite::refused(),
        ),
    ];
    for (name, kind, help, v) in process {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_counts_results_classes_and_ratio() {
        let s = DistStats::new("E1");
        s.record_response(200, CacheResult::Hit, true);
        s.record_response(206, CacheResult::RefreshHit, false);
        s.record_response(200, CacheResult::Miss, false);
        s.record_response(304, CacheResult::Hit, true);
        s.record_response(404, CacheResult::Error, false);
        s.record_response(502, CacheResult::Error, true);
        s.record_response(101, CacheResult::Miss, false);
        s.record_bytes_out(100, 900);
        s.record_origin_request(250);
        s.record_origin_bytes(4000);
        s.record_origin_error(OriginErrorKind::Timeout);
        s.record_origin_error(OriginErrorKind::Connect);
        s.record_origin_error(OriginErrorKind::Connect);
        s.record_collapsed();
        let snap = s.snapshot();
        assert_eq!(snap.distribution_id, "E1");
        assert_eq!(snap.requests, 7);
        assert_eq!(snap.requests_by_result, ByResult { hit: 2, refresh_hit: 1, miss: 2, error: 2, redirect: 0 });
        assert_eq!(
            snap.requests_by_status_class,
            ByClass { class_1xx: 1, class_2xx: 3, class_3xx: 1, class_4xx: 1, class_5xx: 1 }
        );
        assert_eq!((snap.http_requests, snap.https_requests), (4, 3));
        assert!((snap.hit_ratio - 3.0 / 5.0).abs() < 1e-12);
        assert_eq!(snap.bytes_to_viewers, 1000);
        assert_eq!(snap.bytes_to_origin, 250);
        assert_eq!(snap.bytes_from_origin, 4000);
        assert_eq!(snap.origin_requests, 1);
        assert_eq!(snap.collapsed_requests, 1);
        assert_eq!(
            snap.errors,
            ErrorCounts { status_4xx: 1, status_5xx: 1, origin_connect: 2, origin_timeout: 1, origin_protocol: 0 }
        );
        assert_eq!(snap.origin_latency_ms, LatencySummary::default());
        assert_eq!(DistStats::new("x").snapshot().hit_ratio, 0.0);
    }

    #[test]
    fn snapshot_json_shape() {
        let s = DistStats::new("E1");
        s.record_response(200, CacheResult::Hit, false);
        let v = serde_json::to_value(s.snapshot()).unwrap_or_default();
        assert_eq!(v["requests_by_result"]["RefreshHit"], 0);
        assert_eq!(v["requests_by_result"]["Hit"], 1);
        assert_eq!(v["requests_by_status_class"]["2xx"], 1);
        assert_eq!(v["errors"]["origin_protocol"], 0);
        assert_eq!(v["errors"]["5xx"], 0);
        assert_eq!(v["origin_latency_ms"]["p99"], 0.0);
        assert_eq!(v["hit_ratio"], 1.0);
    }

    #[test]
    fn latency_quantiles_from_buckets() {
        let s = DistStats::new("E1");
        // 80 at 3 ms (bucket 5 ms), 15 at 40 ms (bucket 50 ms), 5 at 700 ms (bucket 1 s).
        for _ in 0..80 {
            s.record_origin_latency(Duration::from_millis(3));
        }
        for _ in 0..15 {
            s.record_origin_latency(Duration::from_millis(40));
        }
        for _ in 0..5 {
            s.record_origin_latency(Duration::from_millis(700));
        }
        let l = s.snapshot().origin_latency_ms;
        assert_eq!(l.count, 100);
        assert!((l.mean - (80.0 * 3.0 + 15.0 * 40.0 + 5.0 * 700.0) / 100.0).abs() < 1e-9);
        assert_eq!((l.p50, l.p90, l.p99), (5.0, 50.0, 1000.0));
        // Exactly on a bound stays in that bucket; beyond the last bound reports the largest seen.
        let t = DistStats::new("E2");
        t.record_origin_latency(Duration::from_millis(1));
        assert_eq!(t.snapshot().origin_latency_ms.p50, 1.0);
        t.record_origin_latency(Duration::from_secs(30));
        t.record_origin_latency(Duration::from_secs(20));
        let l = t.snapshot().origin_latency_ms;
        assert_eq!((l.count, l.p50, l.p99), (3, 30_000.0, 30_000.0));
    }

    #[test]
    fn take_usage_resets_and_pending_does_not() {
        let s = DistStats::new("E1");
        s.record_response(200, CacheResult::Hit, false);
        s.record_response(200, CacheResult::Hit, true);
        s.record_response(200, CacheResult::Miss, true);
        s.record_bytes_out(10, 90);
        s.record_origin_request(40);
        let want = UsageDelta { bytes_to_viewers: 100, bytes_to_origin: 40, http_requests: 1, https_requests: 2 };
        assert_eq!(s.pending_usage(), want);
        assert_eq!(s.pending_usage(), want);
        assert_eq!(s.take_usage(), want);
        assert_eq!(s.pending_usage(), UsageDelta::default());
        assert_eq!(s.take_usage(), UsageDelta::default());
        s.record_bytes_out(1, 2);
        assert_eq!(s.take_usage(), UsageDelta { bytes_to_viewers: 3, ..Default::default() });
        // Usage put back is taken again, with what was counted since.
        s.restore_usage(&want);
        s.record_response(200, CacheResult::Hit, false);
        assert_eq!(s.take_usage(), UsageDelta { http_requests: 2, ..want });
        // The cumulative counters are not reset by taking usage.
        let snap = s.snapshot();
        assert_eq!((snap.bytes_to_viewers, snap.bytes_to_origin, snap.requests), (103, 40, 4));
    }

    #[test]
    fn registry_shares_and_sorts() {
        let r = Registry::new();
        let a = r.get_or_create("b");
        let b = r.get_or_create("b");
        assert!(Arc::ptr_eq(&a, &b));
        r.get_or_create("a");
        assert_eq!(r.all().iter().map(|s| s.id().to_owned()).collect::<Vec<_>>(), ["a", "b"]);
        assert!(r.get("c").is_none());
        r.remove("b");
        assert!(r.get("b").is_none());
        assert_eq!(r.all().len(), 1);
    }

    /// A parsed sample: name, labels, value.
    type Sample = (String, Vec<(String, String)>, f64);

    /// Checks the text format line by line; returns the samples as (name, labels, value).
    fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
        fn name_end(s: &str) -> usize {
            s.char_indices()
                .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())))
                .map_or(s.len(), |(i, _)| i)
        }
        let mut samples = Vec::new();
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (kw, name, tail) = (parts.next(), parts.next(), parts.next());
                let (Some(kw), Some(name), Some(tail)) = (kw, name, tail) else {
                    return Err(format!("bad comment {line:?}"));
                };
                if name.is_empty() || name_end(name) != name.len() || tail.is_empty() {
                    return Err(format!("bad comment {line:?}"));
                }
                match kw {
                    "HELP" => {}
                    "TYPE" if ["counter", "gauge", "histogram"].contains(&tail) => {
                        typed.insert(name.to_owned());
                    }
                    _ => return Err(format!("bad comment {line:?}")),
                }
                continue;
            }
            let n = name_end(line);
            if n == 0 {
                return Err(format!("no name {line:?}"));
            }
            let name = &line[..n];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
                .unwrap_or(name);
            if !typed.contains(family) {
                return Err(format!("sample before its TYPE {line:?}"));
            }
            let mut rest = &line[n..];
            let mut labels = Vec::new();
            if let Some(r) = rest.strip_prefix('{') {
                rest = r;
                loop {
                    if let Some(r) = rest.strip_prefix('}') {
                        rest = r;
                        break;
                    }
                    let k = name_end(rest);
                    let key = &rest[..k];
                    let Some(r) = rest[k..].strip_prefix("=\"") else { return Err(format!("bad label {line:?}")) };
                    let mut value = String::new();
                    let mut chars = r.char_indices();
                    let end = loop {
                        match chars.next() {
                            Some((_, '\\')) => match chars.next() {
                                Some((_, '\\')) => value.push('\\'),
                                Some((_, '"')) => value.push('"'),
                                Some((_, 'n')) => value.push('\n'),
                                _ => return Err(format!("bad escape {line:?}")),
                            },
                            Some((i, '"')) => break i,
                            Some((_, '\n')) | None => return Err(format!("unterminated {line:?}")),
                            Some((_, c)) => value.push(c),
                        }
                    };
                    labels.push((key.to_owned(), value));
                    rest = &r[end + 1..];
                    rest = rest.strip_prefix(',').unwrap_or(rest);
                }
            }
            let Some(v) = rest.strip_prefix(' ') else { return Err(format!("no value {line:?}")) };
            let value = match v {
                "+Inf" => f64::INFINITY,
                v => v.parse::<f64>().map_err(|_| format!("bad value {line:?}"))?,
            };
            samples.push((name.to_owned(), labels, value));
        }
        Ok(samples)
    }

    fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.2)
    }

    #[test]
    fn render_has_families_buckets_and_escapes() {
        let r = Registry::new();
        let odd = "we\"ird\\dist\nname";
        let a = r.get_or_create("EABC");
        r.get_or_create(odd).record_response(200, CacheResult::Miss, false);
        a.record_response(200, CacheResult::Hit, true);
        a.record_response(200, CacheResult::Hit, false);
        a.record_response(503, CacheResult::Error, false);
        a.record_bytes_out(200, 1800);
        a.record_origin_request(300);
        a.record_origin_bytes(5000);
        a.record_origin_error(OriginErrorKind::Protocol);
        a.record_collapsed();
        a.record_origin_latency(Duration::from_micros(800));
        a.record_origin_latency(Duration::from_millis(20));
        a.record_origin_latency(Duration::from_millis(20));
        a.record_origin_latency(Duration::from_secs(12));
        let cache = CacheGauges { bytes: 1234, entries: 5, evictions: 6, fills_in_flight: 2, capacity_bytes: 1 << 30 };
        let text = render_prometheus(&r, &cache);

        for (name, kind) in [
            ("mediaedge_requests_total", "counter"),
            ("mediaedge_requests_by_protocol_total", "counter"),
            ("mediaedge_bytes_out_total", "counter"),
            ("mediaedge_origin_bytes_in_total", "counter"),
            ("mediaedge_origin_bytes_out_total", "counter"),
            ("mediaedge_origin_requests_total", "counter"),
            ("mediaedge_origin_errors_total", "counter"),
            ("mediaedge_origin_latency_seconds", "histogram"),
            ("mediaedge_collapsed_requests_total", "counter"),
            ("mediaedge_cache_bytes", "gauge"),
            ("mediaedge_cache_capacity_bytes", "gauge"),
            ("mediaedge_cache_objects", "gauge"),
            ("mediaedge_fills_in_flight", "gauge"),
            ("mediaedge_cache_evictions_total", "counter"),
            ("mediaedge_manifests_without_tokens_total", "counter"),
        ] {
            assert_eq!(text.matches(&format!("# TYPE {name} {kind}\n")).count(), 1, "{name}");
            assert_eq!(text.matches(&format!("# HELP {name} ")).count(), 1, "{name}");
        }
        assert!(text.contains("distribution=\"we\\\"ird\\\\dist\\nname\""), "{text}");

        let samples = match parse_exposition(&text) {
            Ok(s) => s,
            Err(e) => panic!("{e}\n{text}"),
        };
        let d = [("distribution", "EABC")];
        let get = |name: &str, extra: &[(&str, &str)]| {
            let labels: Vec<(&str, &str)> = d.iter().chain(extra).copied().collect();
            sample(&samples, name, &labels)
        };
        let req = |class, result| get("mediaedge_requests_total", &[("status_class", class), ("cache_result", result)]);
        assert_eq!(req("2xx", "Hit"), Some(2.0));
        assert_eq!(req("5xx", "Error"), Some(1.0));
        assert_eq!(req("2xx", "Miss"), Some(0.0));
        assert_eq!(
            sample(
                &samples,
                "mediaedge_requests_total",
                &[("distribution", odd), ("status_class", "2xx"), ("cache_result", "Miss")]
            ),
            Some(1.0)
        );
        assert_eq!(samples.iter().filter(|s| s.0 == "mediaedge_requests_total").count(), 50);
        assert_eq!(get("mediaedge_requests_by_protocol_total", &[("protocol", "https")]), Some(1.0));
        assert_eq!(get("mediaedge_requests_by_protocol_total", &[("protocol", "http")]), Some(2.0));
        assert_eq!(get("mediaedge_bytes_out_total", &[]), Some(2000.0));
        assert_eq!(get("mediaedge_origin_bytes_in_total", &[]), Some(5000.0));
        assert_eq!(get("mediaedge_origin_bytes_out_total", &[]), Some(300.0));
        assert_eq!(get("mediaedge_origin_requests_total", &[]), Some(1.0));
        assert_eq!(get("mediaedge_collapsed_requests_total", &[]), Some(1.0));
        assert_eq!(get("mediaedge_origin_errors_total", &[("kind", "protocol")]), Some(1.0));
        assert_eq!(get("mediaedge_origin_errors_total", &[("kind", "connect")]), Some(0.0));

        let bucket = |le| get("mediaedge_origin_latency_seconds_bucket", &[("le", le)]);
        let expected =
            [("0.001", 1.0), ("0.0025", 1.0), ("0.01", 1.0), ("0.025", 3.0), ("0.05", 3.0), ("10", 3.0), ("+Inf", 4.0)];
        for (le, n) in expected {
            assert_eq!(bucket(le), Some(n), "le={le}");
        }
        let buckets: Vec<f64> = samples
            .iter()
            .filter(|s| s.0 == "mediaedge_origin_latency_seconds_bucket" && s.1[0].1 == "EABC")
            .map(|s| s.2)
            .collect();
        assert_eq!(buckets.len(), 14);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "cumulative: {buckets:?}");
        assert_eq!(get("mediaedge_origin_latency_seconds_count", &[]), Some(4.0));
        assert!(text.contains("mediaedge_origin_latency_seconds_sum{distribution=\"EABC\"} 12.040800\n"), "{text}");

        assert_eq!(sample(&samples, "mediaedge_cache_bytes", &[]), Some(1234.0));
        assert_eq!(sample(&samples, "mediaedge_cache_objects", &[]), Some(5.0));
        assert_eq!(sample(&samples, "mediaedge_cache_evictions_total", &[]), Some(6.0));
        assert_eq!(sample(&samples, "mediaedge_fills_in_flight", &[]), Some(2.0));
        assert_eq!(sample(&samples, "mediaedge_cache_capacity_bytes", &[]), Some((1u64 << 30) as f64));

        // The checker rejects what the format forbids.
        assert!(parse_exposition("# TYPE x counter\nx{a=\"b} 1").is_err());
        assert!(parse_exposition("# TYPE x counter\nx{a=\"\\t\"} 1").is_err());
        assert!(parse_exposition("x 1").is_err());
        assert!(parse_exposition("# TYPE x counter\nx one").is_err());
    }

    #[test]
    fn empty_registry_renders_process_gauges() {
        let text = render_prometheus(&Registry::new(), &CacheGauges::default());
        assert!(parse_exposition(&text).is_ok());
        assert!(text.contains("\nmediaedge_cache_bytes 0\n"));
    }
}
