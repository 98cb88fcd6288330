//! Wall-clock helpers: epoch milliseconds, UTC days and RFC 3339 timestamps
//! (the calendar arithmetic is the access log's, `crate::log::civil`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix epoch milliseconds now (0 if the clock is set before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// "YYYY-MM-DD" (UTC) for a unix time in seconds.
pub fn utc_day(unix_secs: u64) -> String {
    let (year, month, day, ..) = crate::log::civil(unix_secs);
    format!("{year:04}-{month:02}-{day:02}")
}

/// RFC 3339 UTC with seconds, e.g. "2026-11-22T02:50:00Z", for unix milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let (year, month, day, h, m, s) = crate::log::civil(ms / 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}
