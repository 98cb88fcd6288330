//! Recording: what the request path and the origin client add to a
//! distribution's counters.

use super::histogram::{BUCKETS, LATENCY_BOUNDS_US};
use super::{add, class_index, DistStats, RESULTS};
use crate::outcome::EdgeResult;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

    pub(super) fn index(self) -> usize {
        self as usize
    }
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
            stale_if_error: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
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
    pub fn record_response(&self, status: u16, result: EdgeResult, https: bool) {
        add(&self.responses[class_index(status) * RESULTS + result.class()], 1);
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

    /// A request an origin group sent on to its next member.
    pub fn record_failover(&self) {
        add(&self.failovers, 1);
    }

    /// A member of an origin group ejected after failing.
    pub fn record_ejection(&self) {
        add(&self.ejections, 1);
    }

    /// An expired copy served because its origin failed (stale-if-error).
    pub fn record_stale_if_error(&self) {
        add(&self.stale_if_error, 1);
    }
}
