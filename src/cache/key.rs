//! Cache keys from a request and a behavior's cache-key policy.
//!
//! The primary key is the distribution, the path and the keyed query string;
//! the secondary key holds the keyed headers and cookies. Stored responses are
//! grouped under their primary key, so a URI can be invalidated as a whole.

use crate::config::{CacheKeyPolicy, KeyList};
use http::header::{self, HeaderMap};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    pub primary: String,
    pub secondary: String,
}

/// The primary key of `path` + `query` in a distribution.
pub fn primary(dist_id: &str, path: &str, query: Option<&str>, policy: &KeyList) -> String {
    let mut key = String::with_capacity(dist_id.len() + path.len() + 2 + query.map_or(0, str::len));
    key.push_str(dist_id);
    key.push('\u{1f}');
    key.push_str(path);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        let mut params: Vec<&str> = q.split('&').filter(|p| !p.is_empty() && keyed_param(p, policy)).collect();
        // Order-insensitive (stable for repeated names).
        params.sort_by(|a, b| param_name(a).cmp(param_name(b)));
        if !params.is_empty() {
            key.push('?');
            key.push_str(&params.join("&"));
        }
    }
    key
}

/// Whether a query parameter (`name=value`) is in the key under `policy`.
pub fn keyed_param(p: &str, policy: &KeyList) -> bool {
    // LL-HLS delivery directives select another response: always keyed.
    p.starts_with("_HLS_") || policy.includes(param_name(p))
}

/// The name of a query parameter (`name=value`), as written.
pub fn param_name(p: &str) -> &str {
    p.split_once('=').map_or(p, |(n, _)| n)
}

/// Builds the key for a request.
pub fn build(dist_id: &str, path: &str, query: Option<&str>, headers: &HeaderMap, policy: &CacheKeyPolicy) -> CacheKey {
    let primary = primary(dist_id, path, query, &policy.query);
    let mut secondary = String::new();
    for name in &policy.headers {
        secondary.push_str(name.as_str());
        secondary.push('=');
        for (i, v) in headers.get_all(name).iter().enumerate() {
            if i > 0 {
                secondary.push(',');
            }
            secondary.push_str(&String::from_utf8_lossy(v.as_bytes()));
        }
        secondary.push('\u{1f}');
    }
    if policy.cookies != KeyList::None {
        let mut cookies: Vec<&str> =
            cookie_pairs(headers).filter(|(n, _)| policy.cookies.includes(n)).map(|(_, pair)| pair).collect();
        cookies.sort_unstable();
        secondary.push_str("cookie=");
        secondary.push_str(&cookies.join("; "));
    }
    CacheKey { primary, secondary }
}

/// `(name, "name=value")` for each cookie in the request.
pub fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| (p.split_once('=').map_or(p, |(n, _)| n.trim()), p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn query_policies() {
        assert_eq!(primary("E", "/a", Some("x=1&y=2"), &KeyList::None), "E\u{1f}/a");
        assert_eq!(primary("E", "/a", Some("x=1&_HLS_msn=3"), &KeyList::None), "E\u{1f}/a?_HLS_msn=3");
        assert_eq!(primary("E", "/a", Some("y=2&x=1"), &KeyList::All), "E\u{1f}/a?x=1&y=2");
        assert_eq!(
            primary("E", "/a", Some("y=2&x=1&z"), &KeyList::Allow(vec!["z".into(), "y".into()])),
            "E\u{1f}/a?y=2&z"
        );
    }

    #[test]
    fn headers_and_cookies() {
        let mut h = HeaderMap::new();
        h.insert("origin", HeaderValue::from_static("https://a"));
        h.insert(header::COOKIE, HeaderValue::from_static("b=2; a=1; c=3"));
        let policy = CacheKeyPolicy {
            query: KeyList::None,
            headers: vec![header::ORIGIN],
            cookies: KeyList::Allow(vec!["a".into(), "b".into()]),
        };
        let k = build("E", "/p", None, &h, &policy);
        assert_eq!(k.secondary, "origin=https://a\u{1f}cookie=a=1; b=2");
    }
}
