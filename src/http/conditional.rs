//! Conditional requests (RFC 9110 §13): entity-tag comparison and the order in
//! which preconditions are evaluated for a response served from the cache.

use http::header::{self, HeaderMap, HeaderValue};
use std::time::SystemTime;

/// What the preconditions of a GET/HEAD say about a stored response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Serve the response.
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

fn opaque(tag: &str) -> (bool, &str) {
    let tag = tag.trim();
    match tag.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, tag),
    }
}

/// Whether the list in an `If-None-Match`/`If-Match` value contains `etag`.
/// Weak comparison ignores the `W/` prefix; strong comparison needs both strong.
pub fn etag_in_list(list: &HeaderMap, name: header::HeaderName, etag: Option<&HeaderValue>, weak: bool) -> bool {
    let etag = etag.and_then(|e| e.to_str().ok()).map(opaque);
    for value in list.get_all(name).iter() {
        let Ok(value) = value.to_str() else { continue };
        for candidate in value.split(',') {
            let candidate = candidate.trim();
            if candidate == "*" {
                return etag.is_some() || weak;
            }
            let (cw, ctag) = opaque(candidate);
            if let Some((ew, etag)) = etag {
                if ctag == etag && (weak || (!cw && !ew)) {
                    return true;
                }
            }
        }
    }
    false
}

/// Evaluates If-Match, If-Unmodified-Since, If-None-Match and If-Modified-Since
/// in the order of RFC 9110 §13.2.2 against a stored 200 response.
pub fn evaluate(req: &HeaderMap, etag: Option<&HeaderValue>, last_modified: Option<SystemTime>) -> Precondition {
    if req.contains_key(header::IF_MATCH) {
        if !etag_in_list(req, header::IF_MATCH, etag, false) {
            return Precondition::Failed;
        }
    } else if let (Some(since), Some(lm)) = (super::date_header(req, &header::IF_UNMODIFIED_SINCE), last_modified) {
        if lm > since {
            return Precondition::Failed;
        }
    }
    if req.contains_key(header::IF_NONE_MATCH) {
        if etag_in_list(req, header::IF_NONE_MATCH, etag, true) {
            return Precondition::NotModified;
        }
    } else if let (Some(since), Some(lm)) = (super::date_header(req, &header::IF_MODIFIED_SINCE), last_modified) {
        if lm <= since {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// Whether an `If-Range` precondition holds, so the `Range` header applies
/// (strong comparison for entity tags; an exact, strong Last-Modified for dates).
pub fn if_range_holds(
    req: &HeaderMap,
    etag: Option<&HeaderValue>,
    last_modified: Option<SystemTime>,
    date: Option<SystemTime>,
) -> bool {
    let Some(value) = req.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        let (vw, vtag) = opaque(value);
        return match etag.and_then(|e| e.to_str().ok()).map(opaque) {
            Some((ew, etag)) => !vw && !ew && vtag == etag,
            None => false,
        };
    }
    match (super::date::parse(value, SystemTime::now()), last_modified) {
        // The validator is strong only when the response's Date is at least a
        // second after Last-Modified (RFC 9110 §8.8.2.2).
        (Some(since), Some(lm)) => {
            since == lm && date.is_some_and(|d| d.duration_since(lm).is_ok_and(|g| g.as_secs() >= 1))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &'static str, v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn none_match_uses_weak_comparison() {
        let etag = HeaderValue::from_static("\"abc\"");
        assert_eq!(evaluate(&req("if-none-match", "W/\"abc\""), Some(&etag), None), Precondition::NotModified);
        assert_eq!(evaluate(&req("if-none-match", "\"x\", \"abc\""), Some(&etag), None), Precondition::NotModified);
        assert_eq!(evaluate(&req("if-none-match", "\"x\""), Some(&etag), None), Precondition::Proceed);
        assert_eq!(evaluate(&req("if-none-match", "*"), Some(&etag), None), Precondition::NotModified);
        assert_eq!(evaluate(&req("if-match", "\"x\""), Some(&etag), None), Precondition::Failed);
    }

    #[test]
    fn modified_since() {
        let lm = httpdate::parse_http_date("Sat, 01 Jan 2022 00:00:00 GMT").unwrap();
        assert_eq!(
            evaluate(&req("if-modified-since", "Sat, 01 Jan 2022 00:00:00 GMT"), None, Some(lm)),
            Precondition::NotModified
        );
        assert_eq!(
            evaluate(&req("if-modified-since", "Fri, 31 Dec 2021 00:00:00 GMT"), None, Some(lm)),
            Precondition::Proceed
        );
        assert_eq!(evaluate(&req("if-modified-since", "garbage"), None, Some(lm)), Precondition::Proceed);
    }

    #[test]
    fn if_range() {
        let etag = HeaderValue::from_static("\"abc\"");
        assert!(if_range_holds(&req("if-range", "\"abc\""), Some(&etag), None, None));
        assert!(!if_range_holds(&req("if-range", "W/\"abc\""), Some(&etag), None, None));
        assert!(!if_range_holds(&req("if-range", "\"zzz\""), Some(&etag), None, None));
    }
}
