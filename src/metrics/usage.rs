//! Usage: counters taken (and reset) for the stored daily usage reports.

use super::{add, load, DistStats};
use std::sync::atomic::{AtomicU64, Ordering};

impl DistStats {
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

/// Usage counted since the last [`DistStats::take_usage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageDelta {
    pub bytes_to_viewers: u64,
    pub bytes_to_origin: u64,
    pub http_requests: u64,
    pub https_requests: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::EdgeResult;

    #[test]
    fn take_usage_resets_and_pending_does_not() {
        let s = DistStats::new("E1");
        s.record_response(200, EdgeResult::Hit, false);
        s.record_response(200, EdgeResult::Hit, true);
        s.record_response(200, EdgeResult::Miss, true);
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
        s.record_response(200, EdgeResult::Hit, false);
        assert_eq!(s.take_usage(), UsageDelta { http_requests: 2, ..want });
        // The cumulative counters are not reset by taking usage.
        let snap = s.snapshot();
        assert_eq!((snap.bytes_to_viewers, snap.bytes_to_origin, snap.requests), (103, 40, 4));
    }
}
