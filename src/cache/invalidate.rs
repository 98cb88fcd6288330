//! Invalidation by path, as CloudFront defines it: an exact path (`/a/b.m3u8`,
//! every keyed query of it; or `/a/b.m3u8?x=1`, that query only) or a path
//! ending in `*` (`/live/*`, `/*`: everything that starts with what precedes it,
//! queries included).
//!
//! An invalidation makes every covered object unusable at once, whatever
//! variant it is stored under, and takes covered fills out of the collapsing
//! map so the next request goes to the origin. A fill that was already on its
//! way when the invalidation ran is not stored (see `Cache::insert`).

use super::key;
use crate::config::KeyList;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest invalidation path accepted.
pub const MAX_PATH_LEN: usize = 4096;

/// One invalidation path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// A path (and keyed query, normalized like a cache key) without `*`.
    Exact { path: String, query: Option<String> },
    /// What precedes a trailing `*`.
    Prefix(String),
}

impl PathMatch {
    pub fn parse(p: &str) -> Result<PathMatch, String> {
        if !p.starts_with('/') {
            return Err(format!("{p:?} does not start with '/'"));
        }
        if p.len() > MAX_PATH_LEN {
            return Err(format!("a path is longer than {MAX_PATH_LEN} characters"));
        }
        if p.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!("{p:?} holds spaces or control characters (percent-encode them)"));
        }
        if let Some(star) = p.find('*') {
            if star != p.len() - 1 {
                return Err(format!("{p:?}: '*' may only be the last character"));
            }
            return Ok(PathMatch::Prefix(p[..star].to_string()));
        }
        Ok(match p.split_once('?') {
            None => PathMatch::Exact { path: p.to_string(), query: None },
            Some((path, q)) => {
                // The same order a cache key gives the parameters.
                let normalized = key::primary("", path, Some(q), &KeyList::All);
                let query = normalized.split_once('?').map(|(_, q)| q.to_string());
                PathMatch::Exact { path: path.to_string(), query }
            }
        })
    }

    pub fn is_wildcard(&self) -> bool {
        matches!(self, PathMatch::Prefix(_))
    }

    /// Whether a stored path-and-keyed-query is covered.
    pub fn covers(&self, target: &str) -> bool {
        match self {
            PathMatch::Prefix(p) => target.starts_with(p.as_str()),
            PathMatch::Exact { path, query } => {
                let (tpath, tquery) = match target.split_once('?') {
                    Some((p, q)) => (p, Some(q)),
                    None => (target, None),
                };
                tpath == path && (query.is_none() || query.as_deref() == tquery)
            }
        }
    }
}

/// An invalidation as the cache remembers it, for fills that started before it.
pub(super) struct Recent {
    pub epoch: u64,
    pub distribution: String,
    pub paths: Arc<[PathMatch]>,
    pub at: Instant,
}

/// How long an invalidation is checked against fills that started before it:
/// longer than any fill waits for its origin's response head.
pub(super) const REMEMBER: Duration = Duration::from_secs(3600);

/// Whether a primary key (`dist \x1f path?query`) or a collapse key (a primary
/// key followed by `\x1d` and the variant) is covered by these paths.
pub(super) fn covers(distribution: &str, paths: &[PathMatch], key: &str) -> bool {
    let Some(rest) = key.strip_prefix(distribution).and_then(|r| r.strip_prefix('\u{1f}')) else {
        return false;
    };
    let target = rest.split('\u{1d}').next().unwrap_or(rest);
    paths.iter().any(|p| p.covers(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(PathMatch::parse("/live/*").unwrap(), PathMatch::Prefix("/live/".into()));
        assert!(PathMatch::parse("live/a").is_err());
        assert!(PathMatch::parse("/a/*/b").is_err());
        assert!(PathMatch::parse("/a b").is_err());
        let exact = PathMatch::parse("/a/b.m3u8").unwrap();
        assert!(exact.covers("/a/b.m3u8"));
        assert!(exact.covers("/a/b.m3u8?_HLS_msn=3"));
        assert!(!exact.covers("/a/b.m3u8x"));
        let q = PathMatch::parse("/a?y=2&x=1").unwrap();
        assert!(q.covers("/a?x=1&y=2"));
        assert!(!q.covers("/a?x=1"));
        assert!(!q.covers("/a"));
        let all = PathMatch::parse("/*").unwrap();
        assert!(all.covers("/anything?at=all"));
    }

    #[test]
    fn keys() {
        let p = [PathMatch::parse("/live/*").unwrap()];
        assert!(covers("E1", &p, "E1\u{1f}/live/a.ts"));
        assert!(covers("E1", &p, "E1\u{1f}/live/a.ts\u{1d}cookie=x"));
        assert!(!covers("E1", &p, "E12\u{1f}/live/a.ts"));
        assert!(!covers("E1", &p, "E1\u{1f}/vod/a.ts"));
    }
}
