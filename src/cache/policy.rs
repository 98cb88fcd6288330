//! RFC 9111 policy: which responses may be stored, for how long they are fresh,
//! how old they are, and when stale ones may still be served.

use crate::config::{Behavior, CacheConfig, SetCookiePolicy};
use crate::http::sf;
use crate::media::MediaKind;
use http::header::{self, HeaderMap, HeaderName};
use http::StatusCode;
use std::time::{Duration, SystemTime};

/// The directives of one `Cache-Control`-style field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    /// RFC 9111 §5.2.2.3: store only if the status is understood; `no-store`
    /// is then ignored.
    pub must_understand: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
}

pub static CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
pub static SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");
pub static SURROGATE_CAPABILITY: HeaderName = HeaderName::from_static("surrogate-capability");

/// The device token this edge answers to in `Surrogate-Control` (`max-age=60;mediaedge`),
/// announced on every origin request as `Surrogate-Capability: mediaedge="Surrogate/1.0"`.
pub const SURROGATE_DEVICE: &str = "mediaedge";

impl Directives {
    /// Parses every instance of a field. Returns `None` when the field is absent.
    /// Conflicting duplicates of a delta-seconds directive keep the smallest value;
    /// an invalid one counts as 0 (RFC 9111 §4.2.1: treat as stale).
    pub fn parse(headers: &HeaderMap, name: &HeaderName) -> Option<Directives> {
        Directives::parse_field(headers, name, None).map(|(d, _)| d)
    }

    /// `Surrogate-Control` (the W3C Edge Architecture note): the same
    /// directives, each possibly aimed at one device with `;token`, and
    /// `max-age=N+M` counting `N`. The directives aimed at this edge's
    /// [`SURROGATE_DEVICE`] (announced to origins in `Surrogate-Capability`)
    /// win; without any, the untargeted ones apply; those aimed at other
    /// devices never do. `None` when no directive applies here.
    pub fn parse_surrogate(headers: &HeaderMap) -> Option<Directives> {
        for target in [Some(SURROGATE_DEVICE), Some("")] {
            if let (d, true) = Directives::parse_field(headers, &SURROGATE_CONTROL, target)? {
                return Some(d);
            }
        }
        None
    }

    /// The directives of every line of `name`, and whether any applied.
    /// `surrogate`: the `Surrogate-Control` device whose directives count
    /// (`""` for the untargeted ones); `None` for other fields.
    fn parse_field(headers: &HeaderMap, name: &HeaderName, surrogate: Option<&str>) -> Option<(Directives, bool)> {
        let mut values = headers.get_all(name).iter().peekable();
        values.peek()?;
        let mut d = Directives::default();
        let mut any = false;
        for value in values {
            let Ok(value) = value.to_str() else { continue };
            for item in split_outside_quotes(value) {
                let mut item = item.trim();
                if let Some(device) = surrogate {
                    let (own, target) = item.split_once(';').unwrap_or((item, ""));
                    if !target.trim().eq_ignore_ascii_case(device) {
                        continue;
                    }
                    item = own.trim();
                }
                if item.is_empty() {
                    continue;
                }
                let (key, arg) = match item.split_once('=') {
                    Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
                    None => (item, None),
                };
                let arg = match arg {
                    Some(a) if surrogate.is_some() => a.split_once('+').map_or(Some(a), |(n, _)| Some(n.trim())),
                    a => a,
                };
                let secs = || arg.map_or(0, delta_seconds);
                let min = |slot: &mut Option<u64>, v: u64| *slot = Some(slot.map_or(v, |o: u64| o.min(v)));
                match key.to_ascii_lowercase().as_str() {
                    "no-store" => d.no_store = true,
                    // `no-cache="field"` only forbids reusing those fields; being
                    // conservative, treat it like plain no-cache.
                    "no-cache" => d.no_cache = true,
                    "private" => d.private = true,
                    "public" => d.public = true,
                    "must-revalidate" => d.must_revalidate = true,
                    "proxy-revalidate" => d.proxy_revalidate = true,
                    "must-understand" => d.must_understand = true,
                    "max-age" => min(&mut d.max_age, secs()),
                    "s-maxage" => min(&mut d.s_maxage, secs()),
                    "stale-while-revalidate" => min(&mut d.stale_while_revalidate, secs()),
                    "stale-if-error" => min(&mut d.stale_if_error, secs()),
                    // Extensions (and ESI's `content`) say nothing on storing.
                    _ => continue,
                }
                any = true;
            }
        }
        Some((d, any))
    }

    /// From a parsed Structured Field dictionary (`CDN-Cache-Control`).
    /// `None` when a known directive has a value of the wrong type: the caller
    /// then ignores the whole field, as RFC 9213 §2.1 and RFC 8941 §4.2 say.
    pub fn from_dictionary(dict: &[(String, sf::Value)]) -> Option<Directives> {
        let mut d = Directives::default();
        for (key, value) in dict {
            let bare = value.bare();
            let flag = || match bare {
                Some(sf::Bare::Boolean(b)) => Some(*b),
                _ => None,
            };
            // `no-cache` and `private` may name fields; conservatively, the
            // whole response is then treated as named.
            let flag_or_fields = || match bare {
                Some(sf::Bare::String(_)) => Some(true),
                _ => flag(),
            };
            let secs = || match bare {
                Some(sf::Bare::Integer(n)) if *n >= 0 => Some((*n as u64).min(MAX_DELTA)),
                _ => None,
            };
            match key.as_str() {
                "no-store" => d.no_store = flag()?,
                "no-cache" => d.no_cache = flag_or_fields()?,
                "private" => d.private = flag_or_fields()?,
                "public" => d.public = flag()?,
                "must-revalidate" => d.must_revalidate = flag()?,
                "proxy-revalidate" => d.proxy_revalidate = flag()?,
                "must-understand" => d.must_understand = flag()?,
                "max-age" => d.max_age = Some(secs()?),
                "s-maxage" => d.s_maxage = Some(secs()?),
                "stale-while-revalidate" => d.stale_while_revalidate = Some(secs()?),
                "stale-if-error" => d.stale_if_error = Some(secs()?),
                _ => {}
            }
        }
        Some(d)
    }
}

/// The largest delta-seconds honoured (RFC 9111 §1.2.2: 2^31).
const MAX_DELTA: u64 = 1 << 31;

/// A delta-seconds argument: digits only, capped at 2^31 (a longer run of
/// digits is that cap too); anything else is invalid and counts as 0.
fn delta_seconds(arg: &str) -> u64 {
    if arg.is_empty() || !arg.bytes().all(|c| c.is_ascii_digit()) {
        return 0;
    }
    arg.parse::<u64>().map_or(MAX_DELTA, |n| n.min(MAX_DELTA))
}

fn split_outside_quotes(s: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter()
}

/// The directives this cache obeys: `CDN-Cache-Control` when present (RFC 9213,
/// it targets CDNs and replaces `Cache-Control` for them), else
/// `Surrogate-Control` when a directive of it applies here (it targets
/// surrogates the same way), else `Cache-Control`.
/// `CDN-Cache-Control` is a Structured Field dictionary: one that does not
/// parse, or whose directives have the wrong types, is ignored as a whole.
pub fn effective_directives(headers: &HeaderMap) -> (Directives, bool) {
    if let Some(d) = cdn_directives(headers) {
        return (d, true);
    }
    if let Some(d) = Directives::parse_surrogate(headers) {
        return (d, true);
    }
    (Directives::parse(headers, &header::CACHE_CONTROL).unwrap_or_default(), false)
}

fn cdn_directives(headers: &HeaderMap) -> Option<Directives> {
    let mut lines = headers.get_all(&CDN_CACHE_CONTROL).iter();
    let first = lines.next()?.to_str().ok()?;
    let dict = match lines.next() {
        None => sf::parse_dictionary(first),
        Some(second) => {
            // Field lines combine into one list (RFC 9110 §5.3).
            let mut joined = format!("{first}, {}", second.to_str().ok()?);
            for line in lines {
                joined.push_str(", ");
                joined.push_str(line.to_str().ok()?);
            }
            sf::parse_dictionary(&joined)
        }
    };
    Directives::from_dictionary(&dict.ok()?)
}

/// How a fresh response may be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Freshness lifetime, already clamped by the behavior's min/max TTL.
    pub ttl: Duration,
    /// Age when it arrived (RFC 9111 §4.2.3 corrected_initial_age).
    pub initial_age: Duration,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    /// must-revalidate, proxy-revalidate or s-maxage: never served stale.
    pub must_revalidate: bool,
    /// The origin gave no freshness: `ttl` is this edge's default.
    pub heuristic: bool,
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoStore {
    /// The origin forbids it (no-store, private, Set-Cookie, Vary: *): later
    /// requests skip the collapsing wait for a while (hit-for-pass).
    Forbidden(&'static str),
    /// Nothing says it may be stored (say, a 500 without freshness): no marker,
    /// the next request tries again.
    NotCacheable(&'static str),
}

/// Success and redirect statuses cacheable by default (RFC 9110 §15.1): they
/// get the behavior's default TTL. Errors are decided by [`error_ttl`].
fn heuristic_ttl(status: StatusCode, behavior: &Behavior) -> Option<Duration> {
    match status.as_u16() {
        200 | 203 | 204 | 300 | 301 | 308 => Some(behavior.default_ttl),
        _ => None,
    }
}

/// What the response is, for streaming-aware lifetimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Media {
    pub kind: MediaKind,
    /// Replaces the behavior's default TTL for 2xx responses without explicit
    /// freshness (streaming-aware defaults).
    pub default_ttl: Option<Duration>,
    /// A live part, chunk or segment the edge knows from a manifest it has
    /// parsed: its duration (see [`error_ttl`]).
    pub live: Option<Duration>,
}

impl Media {
    /// A response of `kind` with the behavior's streaming defaults.
    pub fn at_headers(kind: MediaKind, streaming: &crate::config::StreamingPolicy) -> Media {
        Media { kind, default_ttl: crate::media::policy::default_at_headers(kind, streaming), live: None }
    }
}

/// The share of a live part's, chunk's or segment's duration an error answer
/// for it is kept at most: the origin may have it a moment later.
pub const LIVE_ERROR_FRACTION: f64 = 0.5;

/// Error statuses kept without explicit freshness: CloudFront's "always
/// cached" list, plus 410, which RFC 9110 §15.1 makes cacheable by default.
const ERRORS_KEPT_BY_DEFAULT: [u16; 9] = [404, 405, 410, 414, 500, 501, 502, 503, 504];

/// Of those, the gateway statuses: an origin's 502, 503 or 504 without
/// explicit freshness is kept only when the distribution sets an
/// `error_caching_min_ttl` for it (see [`error_ttl`]).
const GATEWAY_ERRORS: [u16; 3] = [502, 503, 504];

/// Who made an error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The origin sent it.
    Origin,
    /// The edge made it: the origin could not be reached, broke off, or timed out.
    Edge,
}

/// Error statuses whose error-caching minimum TTL applies only when the origin
/// gives them explicit freshness (CloudFront's list).
const ERRORS_KEPT_WITH_FRESHNESS: [u16; 4] = [400, 403, 412, 415];

/// How long an error answer (a 4xx or 5xx from the origin, or the edge's own
/// 502/504 for an origin it could not reach) is kept: the one place that
/// decides it. Zero: the answer is shared with the requests collapsed on it
/// and never stored.
///
/// `explicit` is the origin's freshness (`s-maxage`, `max-age` or `Expires`),
/// `None` when it gave none. As CloudFront does,
/// an error is kept for the longer of its explicit freshness and the
/// error-caching minimum TTL of its status, never longer than the behavior's
/// `max_ttl`. Statuses CloudFront never caches keep RFC 9111's rule (explicit
/// freshness only), and a 416 is never kept: it answers a range, which the
/// cache key does not hold.
///
/// One exception to CloudFront's list: a 502, 503 or 504 *the origin sent*
/// without explicit freshness is kept only when the distribution names an
/// `error_caching_min_ttl` for that status. RFC 9111 §3 does not let a cache
/// reuse these (they are not heuristically cacheable), and they say the
/// condition is temporary; the collapsed requests still share it. The edge's
/// own 502/504 (the origin unreachable or silent) keeps the default: that is
/// where every viewer at once would otherwise pile onto a dead origin.
///
/// An error for a live part, chunk or segment (`media.live`: one the edge
/// knows from a live playlist or a dynamic MPD) is kept at most
/// [`LIVE_ERROR_FRACTION`] of its duration, whatever the status rule or the
/// origin says: players ask for these before they exist and retry.
pub fn error_ttl(
    status: StatusCode,
    source: ErrorSource,
    media: Media,
    explicit: Option<Duration>,
    behavior: &Behavior,
    cache: &CacheConfig,
) -> Duration {
    let code = status.as_u16();
    let floor = || behavior.error_responses.min_ttl(status, cache.error_ttl);
    let configured = || behavior.error_responses.configured_min_ttl(status).unwrap_or(Duration::ZERO);
    let ttl = match explicit {
        _ if code == 416 => Duration::ZERO,
        None if source == ErrorSource::Origin && GATEWAY_ERRORS.contains(&code) => configured(),
        None if ERRORS_KEPT_BY_DEFAULT.contains(&code) => floor(),
        None => Duration::ZERO,
        Some(t) if ERRORS_KEPT_BY_DEFAULT.contains(&code) || ERRORS_KEPT_WITH_FRESHNESS.contains(&code) => {
            t.max(floor())
        }
        Some(t) => t,
    };
    let ttl = ttl.min(behavior.max_ttl);
    // A new kind must decide here.
    match (media.kind, media.live) {
        (MediaKind::HlsPlaylist | MediaKind::DashMpd, _) | (_, None) => ttl,
        (MediaKind::InitSegment | MediaKind::Segment | MediaKind::Subtitle | MediaKind::Other, Some(d)) => {
            ttl.min(d.mul_f64(LIVE_ERROR_FRACTION))
        }
    }
}

/// Whether CloudFront's error-caching rules name this status (kept by
/// default, kept only with freshness, or never kept).
fn has_error_rule(status: StatusCode) -> bool {
    let code = status.as_u16();
    code == 416 || ERRORS_KEPT_BY_DEFAULT.contains(&code) || ERRORS_KEPT_WITH_FRESHNESS.contains(&code)
}

/// Whether a status is an error answer, kept by [`error_ttl`]'s rule.
pub fn is_error(status: StatusCode) -> bool {
    status.is_client_error() || status.is_server_error()
}

/// Decides whether a response to a GET may be stored and how fresh it is.
/// An error answer is "stored" with a zero lifetime when it is only to be
/// shared with the requests collapsed on it (see [`error_ttl`]).
pub fn storability(
    status: StatusCode,
    headers: &HeaderMap,
    behavior: &Behavior,
    cache: &CacheConfig,
    media: Media,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Result<Freshness, NoStore> {
    if status.is_informational() || status == StatusCode::PARTIAL_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Err(NoStore::NotCacheable("status"));
    }
    let (mut d, _) = effective_directives(headers);
    if d.must_understand {
        // The statuses HTTP defines are the ones this cache knows the rules
        // of; any other must not be stored, whatever else is said.
        if status.canonical_reason().is_none() {
            return Err(NoStore::Forbidden("must-understand"));
        }
        d.no_store = false;
    }
    let error = is_error(status);
    // An error that must not be stored is still the answer for the requests
    // collapsed on it: each of them would get the same from a failing origin.
    if d.no_store && !error {
        return Err(NoStore::Forbidden("no-store"));
    }
    if d.private {
        return Err(NoStore::Forbidden("private"));
    }
    if behavior.set_cookie == SetCookiePolicy::Pass && headers.contains_key(header::SET_COOKIE) {
        return Err(NoStore::Forbidden("set-cookie"));
    }
    if crate::http::list_contains(headers, &header::VARY, "*") {
        return Err(NoStore::Forbidden("vary-star"));
    }
    let date = crate::http::date_header(headers, &header::DATE);
    let explicit = d.s_maxage.or(d.max_age).map(Duration::from_secs).or_else(|| {
        headers.get(header::EXPIRES).map(|v| {
            // An invalid Expires (such as "0") means already expired (§5.3).
            let expires = v.to_str().ok().and_then(|s| crate::http::date::parse(s, response_time));
            match expires {
                Some(exp) => exp.duration_since(date.unwrap_or(response_time)).unwrap_or(Duration::ZERO),
                None => Duration::ZERO,
            }
        })
    });
    let clamp = |ttl: Duration| ttl.clamp(behavior.min_ttl, behavior.max_ttl.max(behavior.min_ttl));
    // `public` makes any final status heuristically cacheable (RFC 9111 §4.2.2).
    let heuristic = heuristic_ttl(status, behavior).or_else(|| d.public.then_some(behavior.default_ttl).map(clamp));
    let ttl = match explicit {
        // An error the origin forbids reusing is shared with the burst only.
        _ if error && (d.no_store || d.no_cache) => Duration::ZERO,
        // `public` on an error status none of the error rules name: the
        // heuristic any final status gets with `public` (RFC 9111 §4.2.2).
        None if error && d.public && !has_error_rule(status) => heuristic.unwrap_or_default(),
        _ if error => error_ttl(status, ErrorSource::Origin, media, explicit, behavior, cache),
        Some(ttl) => clamp(ttl),
        None => match heuristic {
            Some(_) if status.is_success() && media.default_ttl.is_some() => {
                clamp(media.default_ttl.unwrap_or_default())
            }
            Some(ttl) => match last_modified_heuristic(headers, behavior, date.unwrap_or(response_time)) {
                Some(h) => clamp(h),
                None => ttl,
            },
            None => return Err(NoStore::NotCacheable("status without explicit freshness")),
        },
    };
    // no-cache: may be stored, never reused without revalidation.
    let ttl = if d.no_cache { Duration::ZERO } else { ttl };
    Ok(Freshness {
        ttl,
        initial_age: initial_age(headers, date, request_time, response_time),
        stale_while_revalidate: Duration::from_secs(d.stale_while_revalidate.unwrap_or(0)),
        // The origin's own stale-if-error wins; else the behavior's.
        stale_if_error: d.stale_if_error.map_or(behavior.stale_if_error, Duration::from_secs),
        must_revalidate: d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some(),
        heuristic: explicit.is_none(),
    })
}

/// With `heuristic_freshness`: 10% of the time since `Last-Modified` (RFC 9111
/// §4.2.2), measured at `date`. `None` without a valid `Last-Modified`.
fn last_modified_heuristic(headers: &HeaderMap, behavior: &Behavior, date: SystemTime) -> Option<Duration> {
    if !behavior.heuristic_freshness {
        return None;
    }
    let lm = crate::http::date_header(headers, &header::LAST_MODIFIED)?;
    // Modified at or after its Date: nothing to extrapolate from, no lifetime.
    Some(date.duration_since(lm).unwrap_or(Duration::ZERO) / 10)
}

/// The `Age` an upstream cache reported: the first member of the first field
/// line (RFC 9111 §5.1: a list-valued Age uses its first member); an invalid
/// value is ignored. Capped at 2^31 like every delta-seconds.
pub fn age_value(headers: &HeaderMap) -> Option<u64> {
    let first = headers.get(header::AGE)?.to_str().ok()?;
    let member = first.split(',').next()?.trim_matches(|c| c == ' ' || c == '\t');
    if member.is_empty() || !member.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(member.parse::<u64>().map_or(MAX_DELTA, |n| n.min(MAX_DELTA)))
}

/// The `Set-Cookie` fields a behavior with `set_cookie = "strip"` keeps out of
/// the stored copy: removed from `headers` and returned for the one viewer
/// whose request the response answers. Empty for the other policies.
pub fn take_set_cookie(headers: &mut HeaderMap, behavior: &Behavior) -> Vec<http::HeaderValue> {
    if behavior.set_cookie != SetCookiePolicy::Strip || !headers.contains_key(header::SET_COOKIE) {
        return Vec::new();
    }
    match headers.entry(header::SET_COOKIE) {
        header::Entry::Occupied(e) => e.remove_entry_mult().1.collect(),
        header::Entry::Vacant(_) => Vec::new(),
    }
}

/// corrected_initial_age of RFC 9111 §4.2.3.
pub fn initial_age(
    headers: &HeaderMap,
    date: Option<SystemTime>,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let age_value = age_value(headers).map_or(Duration::ZERO, Duration::from_secs);
    let apparent_age = date.and_then(|d| response_time.duration_since(d).ok()).unwrap_or(Duration::ZERO);
    let response_delay = response_time.duration_since(request_time).unwrap_or(Duration::ZERO);
    apparent_age.max(age_value + response_delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    fn decide(pairs: &[(&'static str, &'static str)]) -> Result<Freshness, NoStore> {
        decide_status(StatusCode::OK, pairs)
    }

    fn decide_status(status: StatusCode, pairs: &[(&'static str, &'static str)]) -> Result<Freshness, NoStore> {
        let now = SystemTime::now();
        let b = Behavior::default_for(0);
        let media = Media { kind: MediaKind::Other, default_ttl: None, live: None };
        storability(status, &h(pairs), &b, &CacheConfig::default(), media, now, now)
    }

    #[test]
    fn directives() {
        let d = Directives::parse(
            &h(&[("cache-control", "max-age=60, s-maxage=\"30\", private=\"a,b\"")]),
            &header::CACHE_CONTROL,
        )
        .unwrap();
        assert_eq!(d.max_age, Some(60));
        assert_eq!(d.s_maxage, Some(30));
        assert!(d.private);
        let d = Directives::parse(
            &h(&[("cache-control", "max-age=60"), ("cache-control", "max-age=10")]),
            &header::CACHE_CONTROL,
        )
        .unwrap();
        assert_eq!(d.max_age, Some(10));
        let d = Directives::parse(&h(&[("cache-control", "max-age=banana")]), &header::CACHE_CONTROL).unwrap();
        assert_eq!(d.max_age, Some(0));
    }

    #[test]
    fn freshness_sources() {
        assert_eq!(decide(&[]).unwrap().ttl, Duration::from_secs(86400));
        assert_eq!(decide(&[("cache-control", "max-age=60")]).unwrap().ttl, Duration::from_secs(60));
        assert_eq!(decide(&[("cache-control", "max-age=60, s-maxage=5")]).unwrap().ttl, Duration::from_secs(5));
        assert_eq!(
            decide(&[("cache-control", "max-age=60"), ("cdn-cache-control", "max-age=600")]).unwrap().ttl,
            Duration::from_secs(600)
        );
        assert!(decide(&[("cache-control", "max-age=60"), ("cdn-cache-control", "no-store")]).is_err());
        assert!(decide(&[("cache-control", "no-store"), ("cdn-cache-control", "max-age=5")]).is_ok());
        assert_eq!(decide(&[("expires", "0")]).unwrap().ttl, Duration::ZERO);
        assert_eq!(decide(&[("cache-control", "no-cache, max-age=60")]).unwrap().ttl, Duration::ZERO);
        assert_eq!(decide(&[("cache-control", "private")]), Err(NoStore::Forbidden("private")));
        assert_eq!(decide(&[("vary", "*")]), Err(NoStore::Forbidden("vary-star")));
        assert!(decide(&[("cache-control", "s-maxage=5")]).unwrap().must_revalidate);
    }

    #[test]
    fn error_lifetimes_follow_cloudfront() {
        let ttl = |code: u16, pairs: &[(&'static str, &'static str)]| {
            decide_status(StatusCode::from_u16(code).unwrap(), pairs).map(|f| f.ttl)
        };
        let (s, zero) = (Duration::from_secs, Duration::ZERO);
        for code in [404, 405, 410, 414, 500, 501] {
            assert_eq!(ttl(code, &[]), Ok(s(10)), "{code}");
        }
        // An origin's gateway errors without freshness: shared, not kept (RFC 9111 §3).
        for code in [502, 503, 504] {
            assert_eq!(ttl(code, &[]), Ok(zero), "{code}");
        }
        // The longer of the origin's freshness and the error-caching minimum.
        assert_eq!(ttl(404, &[("cache-control", "max-age=60")]), Ok(s(60)));
        assert_eq!(ttl(503, &[("cache-control", "max-age=3")]), Ok(s(10)));
        // 400, 403, 412, 415: kept only with explicit freshness.
        assert_eq!(ttl(403, &[]), Ok(zero));
        assert_eq!(ttl(403, &[("cache-control", "s-maxage=30")]), Ok(s(30)));
        assert_eq!(ttl(400, &[("cache-control", "max-age=2")]), Ok(s(10)));
        // Statuses CloudFront never caches: RFC 9111's rule.
        assert_eq!(ttl(429, &[]), Ok(zero));
        assert_eq!(ttl(429, &[("cache-control", "max-age=5")]), Ok(s(5)));
        assert_eq!(ttl(416, &[("cache-control", "max-age=60")]), Ok(zero));
        // Forbidden reuse: shared with the burst, never kept.
        assert_eq!(ttl(500, &[("cache-control", "no-store")]), Ok(zero));
        assert_eq!(ttl(500, &[("cache-control", "no-cache, max-age=60")]), Ok(zero));
        assert_eq!(ttl(500, &[("cache-control", "private")]), Err(NoStore::Forbidden("private")));
    }

    #[test]
    fn error_ttls_come_from_the_distribution_and_stay_within_the_behavior() {
        use crate::config::{ErrorResponse, ErrorResponses};
        let mut b = Behavior::default_for(0);
        let entry = |code: u16, ttl: u64| ErrorResponse {
            error_code: StatusCode::from_u16(code).unwrap(),
            caching_min_ttl: Some(Duration::from_secs(ttl)),
            response_page_path: None,
            response_code: None,
        };
        b.error_responses = std::sync::Arc::new(ErrorResponses(vec![entry(503, 0), entry(404, 300)]));
        let cache = CacheConfig::default();
        let t = |code: u16, explicit: Option<u64>, b: &Behavior| {
            let status = StatusCode::from_u16(code).unwrap();
            let media = Media { kind: MediaKind::Segment, default_ttl: None, live: None };
            error_ttl(status, ErrorSource::Origin, media, explicit.map(Duration::from_secs), b, &cache)
        };
        assert_eq!(t(503, None, &b), Duration::ZERO);
        assert_eq!(t(503, Some(20), &b), Duration::from_secs(20));
        assert_eq!(t(404, None, &b), Duration::from_secs(300));
        assert_eq!(t(500, None, &b), Duration::from_secs(10));
        // An origin's 502/504 without freshness: kept only when configured.
        assert_eq!(t(502, None, &b), Duration::ZERO);
        assert_eq!(t(504, Some(5), &b), Duration::from_secs(10));
        let edge_made = |code: u16| {
            let media = Media { kind: MediaKind::Segment, default_ttl: None, live: None };
            error_ttl(StatusCode::from_u16(code).unwrap(), ErrorSource::Edge, media, None, &b, &cache)
        };
        assert_eq!(edge_made(502), Duration::from_secs(10), "the edge's own 502 keeps the default");
        b.error_responses = std::sync::Arc::new(ErrorResponses(vec![entry(502, 30), entry(404, 300)]));
        assert_eq!(t(502, None, &b), Duration::from_secs(30), "configured: CloudFront's rule");
        b.max_ttl = Duration::from_secs(60);
        assert_eq!(t(404, None, &b), Duration::from_secs(60));
        assert_eq!(t(404, Some(3600), &b), Duration::from_secs(60));
        // The behavior's min_ttl does not lengthen errors.
        b.min_ttl = Duration::from_secs(50);
        assert_eq!(t(500, None, &b), Duration::from_secs(10));
    }

    #[test]
    fn errors_for_live_media_last_a_fraction_of_their_duration() {
        let b = Behavior::default_for(0);
        let cache = CacheConfig::default();
        let part = |kind, live: Option<u64>| Media { kind, default_ttl: None, live: live.map(Duration::from_millis) };
        let ttl = |status: u16, m: Media, explicit: Option<u64>| {
            let status = StatusCode::from_u16(status).unwrap();
            error_ttl(status, ErrorSource::Origin, m, explicit.map(Duration::from_secs), &b, &cache)
        };
        assert_eq!(ttl(404, part(MediaKind::Segment, Some(500)), None), Duration::from_millis(250));
        assert_eq!(ttl(404, part(MediaKind::Segment, Some(500)), Some(60)), Duration::from_millis(250));
        assert_eq!(ttl(500, part(MediaKind::Other, Some(2000)), None), Duration::from_secs(1));
        // Never longer than the status rule; never for manifests or unknown objects.
        assert_eq!(ttl(403, part(MediaKind::Segment, Some(2000)), None), Duration::ZERO);
        assert_eq!(ttl(404, part(MediaKind::HlsPlaylist, Some(500)), None), Duration::from_secs(10));
        assert_eq!(ttl(404, part(MediaKind::Segment, None), None), Duration::from_secs(10));
    }

    #[test]
    fn age_list_and_invalid_values() {
        assert_eq!(age_value(&h(&[("age", "7200, 0")])), Some(7200));
        assert_eq!(age_value(&h(&[("age", "0,7200")])), Some(0));
        assert_eq!(age_value(&h(&[("age", "7200"), ("age", "0")])), Some(7200));
        assert_eq!(age_value(&h(&[("age", "99999999999999999999999")])), Some(1 << 31));
        for bad in ["abc", "-7200", "7200.0", ""] {
            assert_eq!(age_value(&h(&[("age", bad)])), None, "{bad:?}");
        }
    }

    #[test]
    fn cdn_cache_control_is_a_structured_field() {
        let cdn = |v: &'static str| decide(&[("cache-control", "no-store"), ("cdn-cache-control", v)]);
        assert_eq!(cdn("max-age=600").unwrap().ttl, Duration::from_secs(600));
        assert_eq!(cdn("private=\"x\"").unwrap_err(), NoStore::Forbidden("private"));
        assert!(cdn("no-store=?0, max-age=5").is_ok());
        // Invalid: ignored as a whole, so Cache-Control's no-store decides.
        for bad in ["max-age=10000, &&&&&", "max-age=\"10\"", "max-age=1.5", "max-age =5", "no-store=1"] {
            assert_eq!(cdn(bad).unwrap_err(), NoStore::Forbidden("no-store"), "{bad:?}");
        }
        let big = decide(&[("cache-control", "max-age=99999999999999999999")]).unwrap();
        assert_eq!(big.ttl, Behavior::default_for(0).max_ttl);
    }

    #[test]
    fn age_calculation() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let t1 = t0 + Duration::from_secs(2);
        let headers = h(&[("age", "10")]);
        assert_eq!(initial_age(&headers, Some(t0), t0, t1), Duration::from_secs(12));
        let date = t1 - Duration::from_secs(30);
        assert_eq!(initial_age(&HeaderMap::new(), Some(date), t0, t1), Duration::from_secs(30));
    }

    #[test]
    fn the_largest_age_does_not_overflow() {
        // Found by fuzzing: `Age: 18446744073709551615` plus any response
        // delay overflowed the Duration sum and panicked the fill. Past 2^31
        // it counts as 2^31 (RFC 9111 §1.2.2).
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let t1 = t0 + Duration::from_secs(3);
        let headers = h(&[("age", "18446744073709551615")]);
        assert_eq!(initial_age(&headers, None, t0, t1), Duration::from_secs((1 << 31) + 3));
    }

    #[test]
    fn huge_lifetimes_count_as_two_to_the_31() {
        // Found by fuzzing: `stale-while-revalidate=18446744073709551615` was
        // kept as is, and `ttl + stale_while_revalidate` overflowed (a panic on
        // every lookup of the object).
        let big = "max-age=18446744073709551615, stale-while-revalidate=18446744073709551615, stale-if-error=99999999999999999999999";
        let d = Directives::parse(&h(&[("cache-control", big)]), &header::CACHE_CONTROL).unwrap();
        assert_eq!(
            (d.max_age, d.stale_while_revalidate, d.stale_if_error),
            (Some(1 << 31), Some(1 << 31), Some(1 << 31))
        );
        let f = decide(&[("cache-control", big)]).unwrap();
        assert!(f.ttl.checked_add(f.stale_while_revalidate.max(f.stale_if_error)).is_some());
        let d = Directives::parse(&h(&[("cache-control", "max-age=12x")]), &header::CACHE_CONTROL).unwrap();
        assert_eq!(d.max_age, Some(0));
    }
}
