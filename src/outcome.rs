//! How a response was produced, named once for everything that reports it:
//! the `X-Cache` header, the access log's `x-edge-result-type`,
//! `x-edge-response-result-type` and `x-edge-detailed-result-type`, and the
//! metrics' `cache_result` label and stats JSON.
//!
//! [`EdgeResult`] is `Copy` and every name is a `&'static str`, so carrying
//! and reporting it costs nothing on the hit path.

use crate::security::Denial;
use http::HeaderValue;

/// The result types (CloudFront's `x-edge-result-type` values) this edge
/// produces, in the order the metrics count them. [`EdgeResult::class`]
/// indexes this table.
pub const RESULT_TYPES: [&str; 5] = ["Hit", "RefreshHit", "Miss", "Error", "Redirect"];

/// The `X-Cache` header for each entry of [`RESULT_TYPES`].
const X_CACHE: [&str; 5] = [
    "Hit from mediaedge",
    "RefreshHit from mediaedge",
    "Miss from mediaedge",
    "Error from mediaedge",
    "Redirect from mediaedge",
];

/// [`X_CACHE`] as header values, made at compile time.
static X_CACHE_VALUES: [HeaderValue; 5] = [
    HeaderValue::from_static(X_CACHE[0]),
    HeaderValue::from_static(X_CACHE[1]),
    HeaderValue::from_static(X_CACHE[2]),
    HeaderValue::from_static(X_CACHE[3]),
    HeaderValue::from_static(X_CACHE[4]),
];

const HIT: usize = 0;
const REFRESH_HIT: usize = 1;
const MISS: usize = 2;
const ERROR: usize = 3;
const REDIRECT: usize = 4;

/// The one typed result of a viewer request.
///
/// Each variant belongs to one result type (Hit, RefreshHit, Miss, Error or
/// Redirect); the variant's own name is the detailed result type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeResult {
    // Hit: answered from a stored object without asking the origin.
    /// A fresh stored object.
    Hit,
    /// A stale object within `stale-while-revalidate`, served while one
    /// background request revalidates it.
    StaleHit,
    /// A stale manifest served (at most one refresh late) while another
    /// request's refresh is under way.
    StaleWhileRefresh,
    /// A stale object served because the origin failed (`stale-if-error`).
    StaleIfError,
    /// A blocking playlist reload (LL-HLS `_HLS_msn`) answered from the cache.
    BlockingReloadHit,

    // RefreshHit: a stored object the origin confirmed (304).
    /// This request revalidated the stored object.
    RefreshHit,
    /// Another request's revalidation, waited for.
    CollapsedRefreshHit,

    // Miss: the origin answered this request, or a fill it joined.
    /// This request led the fill.
    Miss,
    /// Another request's fill, joined.
    CollapsedMiss,
    /// A blocking playlist reload that fetched the new playlist.
    BlockingReload,
    /// A blocking playlist reload that joined another request's fetch.
    BlockingReloadCollapsed,
    /// Sent to the origin uncached: another method, `Authorization`, or a
    /// response that turned out uncacheable.
    Pass,
    /// The key is remembered as uncacheable (hit-for-pass).
    HitForPass,
    /// The fill this request joined turned out uncacheable.
    CollapsedPass,
    /// The fill this request waited for did not answer within `lock_timeout`.
    LockTimeout,
    /// A blocking playlist reload whose fetch turned out uncacheable.
    BlockingReloadPass,

    // Error: the edge answered with an error of its own.
    /// A 5xx the edge produced: the origin failed, or a loop was detected.
    OriginError,
    /// A 4xx the edge produced: the request is malformed or not allowed.
    InvalidRequest,
    /// 403 for a signed URL or signed cookies; the detailed result type is the reason.
    Denied(Denial),
    /// The viewer went away, or the response failed, before its end. Only
    /// the access log records it, once the body is done.
    ClientCommError,

    // Redirect.
    /// `redirect-to-https`.
    Redirect,
}

impl EdgeResult {
    /// Every variant (one denial standing for all of them), for tests and docs.
    pub const ALL: [EdgeResult; 21] = [
        EdgeResult::Hit,
        EdgeResult::StaleHit,
        EdgeResult::StaleWhileRefresh,
        EdgeResult::StaleIfError,
        EdgeResult::BlockingReloadHit,
        EdgeResult::RefreshHit,
        EdgeResult::CollapsedRefreshHit,
        EdgeResult::Miss,
        EdgeResult::CollapsedMiss,
        EdgeResult::BlockingReload,
        EdgeResult::BlockingReloadCollapsed,
        EdgeResult::Pass,
        EdgeResult::HitForPass,
        EdgeResult::CollapsedPass,
        EdgeResult::LockTimeout,
        EdgeResult::BlockingReloadPass,
        EdgeResult::OriginError,
        EdgeResult::InvalidRequest,
        EdgeResult::Denied(Denial::Invalid),
        EdgeResult::ClientCommError,
        EdgeResult::Redirect,
    ];

    /// The index of this result's type in [`RESULT_TYPES`] (the metrics' slot).
    pub const fn class(self) -> usize {
        match self {
            EdgeResult::Hit
            | EdgeResult::StaleHit
            | EdgeResult::StaleWhileRefresh
            | EdgeResult::StaleIfError
            | EdgeResult::BlockingReloadHit => HIT,
            EdgeResult::RefreshHit | EdgeResult::CollapsedRefreshHit => REFRESH_HIT,
            EdgeResult::Miss
            | EdgeResult::CollapsedMiss
            | EdgeResult::BlockingReload
            | EdgeResult::BlockingReloadCollapsed
            | EdgeResult::Pass
            | EdgeResult::HitForPass
            | EdgeResult::CollapsedPass
            | EdgeResult::LockTimeout
            | EdgeResult::BlockingReloadPass => MISS,
            EdgeResult::OriginError
            | EdgeResult::InvalidRequest
            | EdgeResult::Denied(_)
            | EdgeResult::ClientCommError => ERROR,
            EdgeResult::Redirect => REDIRECT,
        }
    }

    /// `x-edge-result-type` and `x-edge-response-result-type`, and the
    /// metrics' `cache_result` label: one of [`RESULT_TYPES`].
    pub const fn log_result(self) -> &'static str {
        RESULT_TYPES[self.class()]
    }

    /// `x-edge-detailed-result-type`: the variant's name, or the denial's
    /// reason for [`EdgeResult::Denied`].
    pub fn detailed(self) -> &'static str {
        match self {
            EdgeResult::Hit => "Hit",
            EdgeResult::StaleHit => "StaleHit",
            EdgeResult::StaleWhileRefresh => "StaleWhileRefresh",
            EdgeResult::StaleIfError => "StaleIfError",
            EdgeResult::BlockingReloadHit => "BlockingReloadHit",
            EdgeResult::RefreshHit => "RefreshHit",
            EdgeResult::CollapsedRefreshHit => "CollapsedRefreshHit",
            EdgeResult::Miss => "Miss",
            EdgeResult::CollapsedMiss => "CollapsedMiss",
            EdgeResult::BlockingReload => "BlockingReload",
            EdgeResult::BlockingReloadCollapsed => "BlockingReloadCollapsed",
            EdgeResult::Pass => "Pass",
            EdgeResult::HitForPass => "HitForPass",
            EdgeResult::CollapsedPass => "CollapsedPass",
            EdgeResult::LockTimeout => "LockTimeout",
            EdgeResult::BlockingReloadPass => "BlockingReloadPass",
            EdgeResult::OriginError => "OriginError",
            EdgeResult::InvalidRequest => "InvalidRequest",
            EdgeResult::Denied(d) => d.log_reason(),
            EdgeResult::ClientCommError => "ClientCommError",
            EdgeResult::Redirect => "Redirect",
        }
    }

    /// The `X-Cache` header: `<result type> from mediaedge`.
    pub const fn x_cache(self) -> &'static str {
        X_CACHE[self.class()]
    }

    /// [`EdgeResult::x_cache`] as a header value (no allocation).
    pub fn x_cache_header(self) -> HeaderValue {
        X_CACHE_VALUES[self.class()].clone()
    }

    /// Whether another request's origin fetch served this one (counted as
    /// an origin fetch saved by collapsing).
    pub const fn collapsed(self) -> bool {
        matches!(
            self,
            EdgeResult::CollapsedMiss
                | EdgeResult::CollapsedRefreshHit
                | EdgeResult::StaleWhileRefresh
                | EdgeResult::BlockingReloadCollapsed
        )
    }

    /// The answer to an error the edge produces itself, by its status.
    pub const fn edge_error(status: u16) -> EdgeResult {
        if status >= 500 {
            EdgeResult::OriginError
        } else {
            EdgeResult::InvalidRequest
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CloudFront's `x-edge-result-type` / `x-edge-response-result-type` values.
    const CLOUDFRONT_RESULT_TYPES: [&str; 7] =
        ["Hit", "RefreshHit", "Miss", "LimitExceeded", "CapacityExceeded", "Error", "Redirect"];

    /// CloudFront's documented `x-edge-detailed-result-type` values for an
    /// Error result.
    const CLOUDFRONT_ERROR_DETAILS: [&str; 22] = [
        "AbortedOrigin",
        "ClientCommError",
        "ClientGeoBlocked",
        "ClientHungUpRequest",
        "Error",
        "InvalidRequest",
        "InvalidRequestBlocked",
        "InvalidRequestCertificate",
        "InvalidRequestHeader",
        "InvalidRequestMethod",
        "OriginCommError",
        "OriginConnectError",
        "OriginContentRangeLengthError",
        "OriginDnsError",
        "OriginError",
        "OriginHeaderTooBigError",
        "OriginInvalidResponseBlocked",
        "OriginInvalidResponseError",
        "OriginReadError",
        "OriginWriteError",
        "OriginZeroSizeObjectError",
        "SlowReaderOriginError",
    ];

    /// The detailed result types this edge adds where CloudFront repeats the
    /// result type: refinements of Hit, RefreshHit and Miss.
    const REFINEMENTS: [(&str, &str); 13] = [
        ("StaleHit", "Hit"),
        ("StaleWhileRefresh", "Hit"),
        ("StaleIfError", "Hit"),
        ("BlockingReloadHit", "Hit"),
        ("CollapsedRefreshHit", "RefreshHit"),
        ("CollapsedMiss", "Miss"),
        ("BlockingReload", "Miss"),
        ("BlockingReloadCollapsed", "Miss"),
        ("Pass", "Miss"),
        ("HitForPass", "Miss"),
        ("CollapsedPass", "Miss"),
        ("LockTimeout", "Miss"),
        ("BlockingReloadPass", "Miss"),
    ];

    #[test]
    fn every_result_type_is_cloudfronts() {
        for r in EdgeResult::ALL {
            assert!(CLOUDFRONT_RESULT_TYPES.contains(&r.log_result()), "{r:?}");
            assert_eq!(r.x_cache(), format!("{} from mediaedge", r.log_result()), "{r:?}");
            assert_eq!(r.x_cache_header(), r.x_cache(), "{r:?}");
        }
        for (i, name) in RESULT_TYPES.iter().enumerate() {
            assert!(CLOUDFRONT_RESULT_TYPES.contains(name));
            assert!(EdgeResult::ALL.iter().any(|r| r.class() == i), "{name} is never produced");
        }
    }

    #[test]
    fn detailed_names_follow_cloudfront_or_refine_it() {
        let mut seen = std::collections::HashSet::new();
        for r in EdgeResult::ALL {
            let d = r.detailed();
            assert!(seen.insert(d), "{d} named twice");
            assert!(!d.is_empty() && !d.contains(char::is_whitespace), "{r:?}: {d:?}");
            match r.log_result() {
                // CloudFront repeats the result type, or names the error.
                "Error" => match r {
                    EdgeResult::Denied(_) => {}
                    _ => assert!(CLOUDFRONT_ERROR_DETAILS.contains(&d), "{r:?}: {d}"),
                },
                "RefreshHit" | "Redirect" | "Miss" | "Hit" if d == r.log_result() => {}
                t => assert!(REFINEMENTS.contains(&(d, t)), "{r:?}: {d} is not a refinement of {t}"),
            }
        }
        // The named ones, exactly.
        let pairs = [
            (EdgeResult::Hit, "Hit", "Hit"),
            (EdgeResult::RefreshHit, "RefreshHit", "RefreshHit"),
            (EdgeResult::Miss, "Miss", "Miss"),
            (EdgeResult::Redirect, "Redirect", "Redirect"),
            (EdgeResult::OriginError, "Error", "OriginError"),
            (EdgeResult::InvalidRequest, "Error", "InvalidRequest"),
            (EdgeResult::ClientCommError, "Error", "ClientCommError"),
            (EdgeResult::Denied(Denial::Expired), "Error", "signature%20expired"),
            (EdgeResult::StaleIfError, "Hit", "StaleIfError"),
            (EdgeResult::LockTimeout, "Miss", "LockTimeout"),
        ];
        for (r, t, d) in pairs {
            assert_eq!((r.log_result(), r.detailed()), (t, d), "{r:?}");
        }
    }

    #[test]
    fn edge_errors_and_collapsing() {
        assert_eq!(EdgeResult::edge_error(502), EdgeResult::OriginError);
        assert_eq!(EdgeResult::edge_error(508), EdgeResult::OriginError);
        assert_eq!(EdgeResult::edge_error(400), EdgeResult::InvalidRequest);
        assert_eq!(EdgeResult::edge_error(421), EdgeResult::InvalidRequest);
        let collapsed: Vec<_> =
            EdgeResult::ALL.into_iter().filter(|r| r.collapsed()).map(EdgeResult::detailed).collect();
        assert_eq!(collapsed, ["StaleWhileRefresh", "CollapsedRefreshHit", "CollapsedMiss", "BlockingReloadCollapsed"]);
    }

    /// Every detailed name is in the user documentation.
    #[test]
    fn the_docs_list_every_name() {
        let doc = include_str!("../docs/access-log.md");
        for r in EdgeResult::ALL {
            if let EdgeResult::Denied(_) = r {
                continue;
            }
            assert!(doc.contains(&format!("`{}`", r.detailed())), "docs/access-log.md lacks {}", r.detailed());
        }
    }
}
