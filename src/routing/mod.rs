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

/// The routing table, swapped whole when the configuration changes.
pub struct Routes {
    exact: HashMap<String, Arc<DistRuntime>>,
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
        let mut routes = Routes { exact: HashMap::new(), suffix: Vec::new(), any: None };
        for d in &config.distributions {
            let reused = previous.and_then(|p| p.runtime(&d.id)).filter(|rt| Arc::ptr_eq(&rt.config, d));
            let rt = match reused {
                Some(rt) => rt,
                None => {
                    let dist_stats = stats.get_or_create(&d.id);
                    let origins = d
                        .origins
                        .iter()
                        .map(|o| Origin::new(o.clone(), dist_stats.clone()).map(Arc::new))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| format!("distribution {}: {e}", d.id))?;
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
/// `Host` header; lower-cased, port removed.
pub fn request_host<B>(req: &http::Request<B>) -> Option<String> {
    host_of(req.uri(), req.headers())
}

/// `request_host` on a request's parts.
pub fn host_of(uri: &http::Uri, headers: &http::HeaderMap) -> Option<String> {
    let raw = match uri.authority() {
        Some(a) => a.host().to_string(),
        None => {
            let h = headers.get(http::header::HOST)?.to_str().ok()?;
            let h = h.trim();
            if let Some(rest) = h.strip_prefix('[') {
                // [v6]:port
                format!("[{}]", rest.split(']').next()?)
            } else {
                h.rsplit_once(':')
                    .map_or(h, |(host, port)| if port.bytes().all(|b| b.is_ascii_digit()) { host } else { h })
                    .to_string()
            }
        }
    };
    Some(raw.to_ascii_lowercase())
}
