//! Routing: viewer host name → distribution → cache behavior → origin.

use crate::config::{Behavior, Config, Distribution, HostPattern};
use crate::metrics::{DistStats, Registry};
use crate::origin::Origin;
use std::collections::HashMap;
use std::sync::Arc;

/// A distribution with its live origin clients and its statistics.
pub struct DistRuntime {
    pub config: Arc<Distribution>,
    pub origins: Vec<Arc<Origin>>,
    pub stats: Arc<DistStats>,
}

/// FNV-1a, for the host table: its keys come from the configuration, so a
/// viewer's host name can only miss them, never pile them into one bucket;
/// SipHash's protection is not needed, and FNV hashes a short name in a
/// fraction of its instructions (every request looks its host up).
#[derive(Default, Clone, Copy)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type HostMap<V> = HashMap<String, V, std::hash::BuildHasherDefault<Fnv>>;

/// The routing table, swapped whole when the configuration changes.
pub struct Routes {
    exact: HostMap<Arc<DistRuntime>>,
    suffix: Vec<(String, Arc<DistRuntime>)>,
    any: Option<Arc<DistRuntime>>,
}

/// A request's place in the configuration.
#[derive(Clone)]
pub struct Route {
    pub dist: Arc<DistRuntime>,
    /// Index of the behavior, `None` for the default behavior.
    behavior: Option<usize>,
}

impl Route {
    pub fn behavior(&self) -> &Behavior {
        match self.behavior {
            Some(i) => &self.dist.config.behaviors[i],
            None => &self.dist.config.default_behavior,
        }
    }

    pub fn origin(&self) -> &Arc<Origin> {
        &self.dist.origins[self.behavior().origin]
    }
}

impl Routes {
    /// The table for a configuration. A distribution unchanged since
    /// `previous` keeps its runtime (and its origins' warm connection pools).
    pub fn build(config: &Config, stats: &Registry, previous: Option<&Routes>) -> Result<Routes, String> {
        let mut routes = Routes { exact: HostMap::default(), suffix: Vec::new(), any: None };
        for d in &config.distributions {
            let reused = previous.and_then(|p| p.runtime(&d.id)).filter(|rt| Arc::ptr_eq(&rt.config, d));
            let rt = match reused {
                Some(rt) => rt,
                None => {
                    let dist_stats = stats.get_or_create(&d.id);
                    let mut origins: Vec<Arc<Origin>> = Vec::with_capacity(d.origins.len());
                    for o in &d.origins {
                        let origin = Origin::new(o.clone(), dist_stats.clone(), &origins)
                            .map_err(|e| format!("distribution {}: {e}", d.id))?;
                        origins.push(Arc::new(origin));
                    }
                    Arc::new(DistRuntime { config: d.clone(), origins, stats: dist_stats })
                }
            };
            for a in &d.aliases {
                match a {
                    HostPattern::Exact(h) => {
                        routes.exact.insert(h.clone(), rt.clone());
                    }
                    HostPattern::Suffix(s) => routes.suffix.push((s.clone(), rt.clone())),
                    HostPattern::Any => routes.any = Some(rt.clone()),
                }
            }
        }
        // Longest suffix first, so `*.a.example.com` wins over `*.example.com`.
        routes.suffix.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        Ok(routes)
    }

    /// Every distribution in the table, by id.
    pub fn distributions(&self) -> Vec<Arc<Distribution>> {
        let mut all: Vec<Arc<Distribution>> = self.runtimes().map(|d| d.config.clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all.dedup_by(|a, b| a.id == b.id);
        all
    }

    /// The origin groups of a distribution, with their members' state
    /// (ejected or not, failures in a row), for the stats API.
    pub fn origin_groups(&self, id: &str) -> Vec<(String, Vec<crate::origin::MemberState>)> {
        let Some(d) = self.runtime(id) else { return Vec::new() };
        d.origins.iter().map(|o| (o.config.id.clone(), o.members())).filter(|(_, m)| !m.is_empty()).collect()
    }

    /// A distribution's runtime by id.
    fn runtime(&self, id: &str) -> Option<Arc<DistRuntime>> {
        self.runtimes().find(|d| d.config.id == id).cloned()
    }

    /// Every entry of the table (a distribution once per host pattern).
    fn runtimes(&self) -> impl Iterator<Item = &Arc<DistRuntime>> {
        self.exact.values().chain(self.suffix.iter().map(|(_, d)| d)).chain(self.any.iter())
    }

    /// The distribution for a host (lower-case, without port).
    pub fn distribution(&self, host: &str) -> Option<&Arc<DistRuntime>> {
        if let Some(d) = self.exact.get(host) {
            return Some(d);
        }
        self.suffix.iter().find(|(s, _)| host.ends_with(s.as_str())).map(|(_, d)| d).or(self.any.as_ref())
    }

    /// The route for a host and path.
    pub fn route(&self, host: &str, path: &str) -> Option<Route> {
        let dist = self.distribution(host)?.clone();
        let behavior = dist.config.behaviors.iter().position(|b| b.pattern.as_ref().is_some_and(|p| p.matches(path)));
        Some(Route { dist, behavior })
    }
}

/// The host a request names: the URI's authority (HTTP/2, absolute-form) or the
/// `Host` header; lower-cased, port removed. `None` when it names none or an
/// invalid one (`viewer_host` says which).
pub fn request_host<B>(req: &http::Request<B>) -> Option<String> {
    host_of(req.uri(), req.headers())
}

/// `request_host` on a request's parts.
pub fn host_of(uri: &http::Uri, headers: &http::HeaderMap) -> Option<String> {
    match uri.authority() {
        Some(a) => parse_host(a.as_str()).ok(),
        None => parse_host(headers.get(http::header::HOST)?.to_str().ok()?).ok(),
    }
}

/// The host a viewer's request is for, after the checks of RFC 9112 §3.2 and
/// RFC 9113 §8.3.1; `Err` is the reason for a 400.
///
/// - More than one `Host` field line, or a `Host` that is not `host[:port]`
///   (a port above 65535 or not numeric included): refused.
/// - An absolute-form target (HTTP/1.1) names the host: a `Host` header that
///   disagrees is ignored (RFC 9112 §3.2.2) and replaced by the target's
///   authority, so that nothing after routing sees the other name.
/// - HTTP/2: a `Host` header naming another host than `:authority` is refused.
pub fn viewer_host<B>(req: &mut http::Request<B>) -> Result<String, &'static str> {
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let header = hosts.next();
    if hosts.next().is_some() {
        return Err("the request has more than one Host header");
    }
    let header = match header {
        Some(v) => Some(parse_host(v.to_str().map_err(|_| "the Host header is not a valid host")?)?),
        None => None,
    };
    let Some(authority) = req.uri().authority() else {
        return header.ok_or("the request names no host");
    };
    if authority.as_str().contains('@') {
        return Err("the request target carries user information");
    }
    let host = parse_host(authority.as_str())?;
    if req.version() == http::Version::HTTP_2 {
        if header.as_ref().is_some_and(|h| *h != host) {
            return Err("the Host header and :authority name different hosts");
        }
    } else if header.is_some() {
        if let Ok(v) = http::HeaderValue::from_str(authority.as_str()) {
            req.headers_mut().insert(http::header::HOST, v);
        }
    }
    Ok(host)
}

/// `host[:port]` (RFC 3986 `authority` without user information, the host a
/// DNS name, an IPv4 address or a bracketed IPv6 address): the host,
/// lower-cased, without the port.
pub fn parse_host(s: &str) -> Result<String, &'static str> {
    const BAD_HOST: &str = "the Host is not a valid host name";
    let s = s.trim_matches([' ', '\t']);
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or(BAD_HOST)?;
        v6.parse::<std::net::Ipv6Addr>().map_err(|_| BAD_HOST)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(BAD_HOST)?),
        };
        (&s[..v6.len() + 2], port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(BAD_HOST);
    }
    if !host.starts_with('[')
        && !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    {
        return Err(BAD_HOST);
    }
    if let Some(p) = port.filter(|p| !p.is_empty()) {
        let valid = p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u32>().is_ok_and(|n| n <= 65535);
        if !valid {
            return Err("the port in Host is not a number from 0 to 65535");
        }
    }
    Ok(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports() {
        assert_eq!(parse_host("Media.Example.com").unwrap(), "media.example.com");
        assert_eq!(parse_host(" a.b:8080 ").unwrap(), "a.b");
        assert_eq!(parse_host("a.b:").unwrap(), "a.b");
        assert_eq!(parse_host("a.b:65535").unwrap(), "a.b");
        assert_eq!(parse_host("127.0.0.1:1").unwrap(), "127.0.0.1");
        assert_eq!(parse_host("[::1]:80").unwrap(), "[::1]");
        assert_eq!(parse_host("[::1]").unwrap(), "[::1]");
        for bad in [
            "",
            ":80",
            "a.b:65536",
            "a.b:99999999999",
            "a.b:x",
            "a.b:80:80",
            "a b",
            "a/b",
            "[::1",
            "[zz]:1",
            "[::1]x",
            "a@b",
        ] {
            assert!(parse_host(bad).is_err(), "{bad:?}");
        }
    }

    fn req(version: http::Version, target: &str, hosts: &[&str]) -> http::Request<()> {
        let mut b = http::Request::builder().version(version).uri(target);
        for h in hosts {
            b = b.header(http::header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn host_header_checks() {
        const HTTP_11: http::Version = http::Version::HTTP_11;
        const HTTP_2: http::Version = http::Version::HTTP_2;
        assert_eq!(viewer_host(&mut req(HTTP_11, "/x", &["a.example"])).unwrap(), "a.example");
        assert!(viewer_host(&mut req(HTTP_11, "/x", &["a.example", "b.example"])).is_err());
        assert!(viewer_host(&mut req(HTTP_11, "/x", &["a.example", "a.example"])).is_err());
        assert!(viewer_host(&mut req(HTTP_11, "/x", &[])).is_err());
        assert!(viewer_host(&mut req(HTTP_11, "/x", &["a.example:70000"])).is_err());
        // Absolute form: the target's authority wins and replaces Host.
        let mut r = req(HTTP_11, "http://a.example:81/x", &["b.example"]);
        assert_eq!(viewer_host(&mut r).unwrap(), "a.example");
        assert_eq!(r.headers()[http::header::HOST], "a.example:81");
        assert!(viewer_host(&mut req(HTTP_11, "http://u@a.example/x", &["a.example"])).is_err());
        // HTTP/2: :authority and a disagreeing Host are refused.
        assert_eq!(viewer_host(&mut req(HTTP_2, "https://a.example/x", &["A.example:443"])).unwrap(), "a.example");
        assert!(viewer_host(&mut req(HTTP_2, "https://a.example/x", &["b.example"])).is_err());
    }
}
