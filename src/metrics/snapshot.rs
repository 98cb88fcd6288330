//! The stats JSON (`GET /v1/stats`): a distribution's counters read at once.

use super::histogram::{latency_summary, LatencySummary, BUCKETS};
use super::{load, DistStats, RESULTS};
use crate::metrics::OriginErrorKind;
use crate::outcome::EdgeResult;

impl DistStats {
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
        let hits = by_result[EdgeResult::Hit.class()] + by_result[EdgeResult::RefreshHit.class()];
        let lookups = hits + by_result[EdgeResult::Miss.class()];
        let hit_ratio = if lookups == 0 { 0.0 } else { hits as f64 / lookups as f64 };
        let buckets: [u64; BUCKETS] = std::array::from_fn(|i| load(&self.latency_buckets[i]));
        StatsSnapshot {
            distribution_id: self.id.clone(),
            requests,
            requests_by_result: ByResult {
                hit: by_result[EdgeResult::Hit.class()],
                refresh_hit: by_result[EdgeResult::RefreshHit.class()],
                miss: by_result[EdgeResult::Miss.class()],
                error: by_result[EdgeResult::OriginError.class()],
                redirect: by_result[EdgeResult::Redirect.class()],
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
            stale_if_error: load(&self.stale_if_error),
            origin_failovers: load(&self.failovers),
            origin_ejections: load(&self.ejections),
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
    /// Expired copies served because the origin failed.
    pub stale_if_error: u64,
    /// Requests an origin group sent on to its next member.
    pub origin_failovers: u64,
    /// Members of origin groups ejected after failing.
    pub origin_ejections: u64,
    pub errors: ErrorCounts,
    pub origin_latency_ms: LatencySummary,
}

/// Requests by result type (the keys are [`RESULT_TYPES`]).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{LatencySummary, OriginErrorKind};
    use crate::outcome::RESULT_TYPES;

    #[test]
    fn snapshot_counts_results_classes_and_ratio() {
        let s = DistStats::new("E1");
        s.record_response(200, EdgeResult::Hit, true);
        s.record_response(206, EdgeResult::RefreshHit, false);
        s.record_response(200, EdgeResult::Miss, false);
        s.record_response(304, EdgeResult::Hit, true);
        s.record_response(404, EdgeResult::OriginError, false);
        s.record_response(502, EdgeResult::OriginError, true);
        s.record_response(101, EdgeResult::Miss, false);
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
        s.record_response(200, EdgeResult::Hit, false);
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
    fn every_result_counts_under_its_type_and_the_json_names_them() {
        let s = DistStats::new("E1");
        for r in EdgeResult::ALL {
            s.record_response(200, r, false);
        }
        let v = serde_json::to_value(s.snapshot().requests_by_result).unwrap_or_default();
        let keys: Vec<&str> = v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        let mut want = RESULT_TYPES.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want, "the stats JSON names the result types");
        for (i, name) in RESULT_TYPES.iter().enumerate() {
            let n = EdgeResult::ALL.iter().filter(|r| r.class() == i).count();
            assert_eq!(v[name], n, "{name}");
        }
    }
}
