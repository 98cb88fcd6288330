//! Custom error responses: per error status, how long the edge keeps an error
//! answer from the origin (CloudFront's `CustomErrorResponses`; see
//! docs/caching.md, "Origin errors").

use http::StatusCode;
use std::time::Duration;

/// The error statuses a distribution may configure (CloudFront's list).
pub const CONFIGURABLE_ERROR_CODES: [u16; 11] = [400, 403, 404, 405, 414, 416, 500, 501, 502, 503, 504];

/// One `[[distributions.custom_error_responses]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub error_code: StatusCode,
    /// How long an answer with this status is kept at least (0: shared with
    /// the requests waiting for it, never stored). `None`: `cache.error_ttl`.
    pub caching_min_ttl: Option<Duration>,
    /// Reserved for custom error pages (a later release): the path of the page
    /// answered instead, fetched through the distribution. Always `None` today;
    /// the config refuses the field rather than ignore it.
    pub response_page_path: Option<String>,
    /// Reserved with `response_page_path`: the status the viewer gets with the page.
    pub response_code: Option<StatusCode>,
}

/// A distribution's custom error responses, shared by all its behaviors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorResponses(pub Vec<ErrorResponse>);

impl ErrorResponses {
    /// The entry for a status, if the distribution configures one.
    pub fn for_status(&self, status: StatusCode) -> Option<&ErrorResponse> {
        self.0.iter().find(|e| e.error_code == status)
    }

    /// The error-caching minimum TTL for a status: the distribution's entry,
    /// else `default` (`cache.error_ttl`, 10 s unless set).
    pub fn min_ttl(&self, status: StatusCode, default: Duration) -> Duration {
        self.for_status(status).and_then(|e| e.caching_min_ttl).unwrap_or(default)
    }
}
