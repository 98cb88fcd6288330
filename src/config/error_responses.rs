//! Custom error responses: per error status, how long the edge keeps an error
//! answer from the origin, and the page it answers instead (CloudFront's
//! `CustomErrorResponses`; see docs/caching.md, "Origin errors", and
//! docs/resilience.md, "Custom error pages").

use http::StatusCode;
use std::time::Duration;

/// The error statuses a distribution may configure (CloudFront's list).
pub const CONFIGURABLE_ERROR_CODES: [u16; 11] = [400, 403, 404, 405, 414, 416, 500, 501, 502, 503, 504];

/// The statuses a custom error page may be answered with (CloudFront's list).
pub const PAGE_RESPONSE_CODES: [u16; 12] = [200, 400, 403, 404, 405, 414, 416, 500, 501, 502, 503, 504];

/// One `[[distributions.custom_error_responses]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub error_code: StatusCode,
    /// How long an answer with this status is kept at least (0: shared with
    /// the requests waiting for it, never stored). `None`: `cache.error_ttl`.
    pub caching_min_ttl: Option<Duration>,
    /// The path of the page answered instead of an error with this status,
    /// fetched through the distribution itself (canonical, starting with `/`).
    pub response_page_path: Option<String>,
    /// The status the viewer gets with the page (`None`: the error's own).
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
        self.configured_min_ttl(status).unwrap_or(default)
    }

    /// Whether any entry names a page (checked once per request).
    pub fn has_pages(&self) -> bool {
        self.0.iter().any(|e| e.response_page_path.is_some())
    }

    /// The page and the status to answer an error with, if one is configured.
    pub fn page_for(&self, status: StatusCode) -> Option<(&str, StatusCode)> {
        let e = self.for_status(status)?;
        Some((e.response_page_path.as_deref()?, e.response_code.unwrap_or(status)))
    }

    /// The `error_caching_min_ttl` set for `status`, if one is.
    pub fn configured_min_ttl(&self, status: StatusCode) -> Option<Duration> {
        self.for_status(status).and_then(|e| e.caching_min_ttl)
    }
}
