//! The request path: route the viewer's request, then answer it from the cache
//! (`fill`, `respond`) or pass it to the origin (`pass`).
//!
//! ```text
//! viewer → Edge::handle → routing → cache lookup ─hit→ respond
//!                                        └miss→ collapse → origin → store → respond
//! ```

mod error_page;
mod fill;
mod forward;
mod headers_policy;
mod live;
mod pass;
mod respond;
mod slice;
mod streaming;
mod websocket;

pub use websocket::WebSockets;

use crate::cache::Cache;
use crate::config::{Config, ServerConfig};
use crate::http::body::EdgeBody;
use crate::log::{AccessLog, Pending};
use crate::metrics::{DistStats, Registry};
pub use crate::outcome::EdgeResult;
use crate::routing::{request_host, Route, Routes};
use crate::server::interim::Sink;
use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// A response on its way out, with how it was produced.
pub struct Served {
    pub response: Response<EdgeBody>,
    /// For `X-Cache`, the access log and the metrics.
    pub result: EdgeResult,
    pub range: Option<(u64, u64)>,
    /// Set when the head is complete already (`X-Cache` and `Via` in it): its
    /// size on the wire.
    pub head_bytes: Option<u64>,
    /// The static part of the behavior's response headers policy is in the
    /// head already (a hit's prebuilt head, a preflight answered here).
    pub policy_done: bool,
}

impl Served {
    fn new(response: Response<EdgeBody>, result: EdgeResult) -> Served {
        Served { response, result, range: None, head_bytes: None, policy_done: false }
    }

    /// Adds a field to the response, keeping a precomputed head size right.
    fn append(&mut self, name: header::HeaderName, value: HeaderValue) {
        if let Some(b) = &mut self.head_bytes {
            *b += (name.as_str().len() + value.len() + 4) as u64;
        }
        self.response.headers_mut().append(name, value);
    }
}

/// `X-Cache`, named once.
pub(crate) static X_CACHE: header::HeaderName = header::HeaderName::from_static("x-cache");

/// Where routing left a request.
enum Step {
    /// Answered already (an error the edge makes, a redirect).
    Done(Served),
    /// For the cache: the request head (a GET or HEAD has no body).
    Cached(http::request::Parts, Route),
    /// For the origin, body and all.
    Pass(Request<Incoming>, Route),
    /// A WebSocket opening handshake, to be joined to the origin.
    WebSocket(Request<Incoming>, Route),
}

/// A cache-path answer: made now, or still to come.
// The large variant is the common one (a hit): boxing it would allocate per hit.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Now {
    Served(Served),
    Later(Pin<Box<dyn Future<Output = Served> + Send>>),
}

/// The answer to one viewer request, as a future: ready at once for hits.
// The large variant is the common one (a hit): boxing it would allocate per hit.
#[allow(clippy::large_enum_variant)]
pub enum Handled {
    Ready(Option<Response<EdgeBody>>),
    Pending(Pin<Box<dyn Future<Output = Response<EdgeBody>> + Send>>),
}

impl Future for Handled {
    type Output = Response<EdgeBody>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response<EdgeBody>> {
        match self.get_mut() {
            Handled::Ready(r) => match r.take() {
                Some(r) => Poll::Ready(r),
                None => Poll::Pending,
            },
            Handled::Pending(f) => f.as_mut().poll(cx),
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Viewer {
    pub addr: SocketAddr,
    pub tls: bool,
}

pub struct Edge {
    routes: ArcSwap<Routes>,
    pub cache: Cache,
    log: Option<Arc<AccessLog>>,
    /// `1.1 <edge location> (mediaedge)`, added to `Via` both ways.
    via: String,
    via_value: HeaderValue,
    /// This node's token in `Via` (`<edge location>-<node>`), for loop checks.
    via_token: String,
    /// Bounds the segment prefetches running at once.
    prefetch_permits: Arc<tokio::sync::Semaphore>,
    /// Signed URLs and cookies, with the verified signatures it remembers.
    pub signed: crate::security::Verifier,
    /// Where `redirect-to-https` sends plain-HTTP viewers (the first HTTPS listener).
    https_port: std::sync::atomic::AtomicU16,
    /// Per-distribution statistics (each route holds its distribution's).
    pub stats: Arc<Registry>,
    /// Live parts and segments known from the manifests the edge has parsed.
    live: crate::media::live::LiveIndex,
    /// The joined WebSocket connections and their bounds.
    pub websockets: WebSockets,
    /// The edge location as `Server-Timing` names it (`cdn-pop`).
    pop: String,
}

impl Edge {
    pub fn new(config: &Config) -> Result<Arc<Edge>, String> {
        let stats = Arc::new(Registry::new());
        let routes = Routes::build(config, &stats, None)?;
        let log = match &config.server.access_log {
            Some(target) => Some(
                AccessLog::open(
                    target,
                    config.server.edge_location.clone(),
                    config.server.log_cookies,
                    &config.server.access_log_rotation,
                )
                .map_err(|e| format!("access log: {e}"))?,
            ),
            None => None,
        };
        let via = via_for(&config.server);
        Ok(Arc::new(Edge {
            routes: ArcSwap::from_pointee(routes),
            cache: Cache::new(config.cache.clone()),
            log,
            via_value: HeaderValue::from_str(&via).unwrap_or(HeaderValue::from_static("1.1 mediaedge")),
            via_token: via.split(' ').nth(1).unwrap_or("").to_string(),
            via,
            prefetch_permits: Arc::new(tokio::sync::Semaphore::new(8)),
            signed: crate::security::Verifier::default(),
            https_port: std::sync::atomic::AtomicU16::new(config.server.https_listen.first().map_or(443, |a| a.port())),
            stats,
            live: Default::default(),
            websockets: WebSockets::new(config.server.websocket_max_connections, config.server.websocket_idle_timeout),
            pop: config
                .server
                .edge_location
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                .collect(),
        }))
    }

    /// Writes out every access-log line queued so far (blocking, up to
    /// `limit`); false if the log did not confirm in time. At shutdown.
    pub fn flush_access_log(&self, limit: std::time::Duration) -> bool {
        self.log.as_ref().is_none_or(|l| l.flush(limit))
    }

    /// The port `redirect-to-https` names (set once the HTTPS listener is bound).
    pub fn set_https_port(&self, port: u16) {
        self.https_port.store(port, std::sync::atomic::Ordering::Relaxed);
    }

    /// Replaces the routing table; requests in flight keep the one they started with.
    pub fn reconfigure(&self, config: &Config) -> Result<(), String> {
        let routes = self.prepare(config)?;
        self.install(routes);
        Ok(())
    }

    /// Builds the routing table for a configuration (origins are checked
    /// here) without installing it.
    pub fn prepare(&self, config: &Config) -> Result<Routes, String> {
        Routes::build(config, &self.stats, Some(&self.routes.load()))
    }

    /// Installs a routing table: new requests use it at once.
    pub fn install(&self, routes: Routes) {
        self.routes.store(Arc::new(routes));
    }

    /// The origin groups of a distribution and their members' state.
    pub fn origin_groups(&self, id: &str) -> Vec<(String, Vec<crate::origin::MemberState>)> {
        self.routes.load().origin_groups(id)
    }

    /// The distributions the edge serves now.
    pub fn distributions(&self) -> Vec<Arc<crate::config::Distribution>> {
        self.routes.load().distributions()
    }

    /// Answers one viewer request: at once when the answer needs no wait (a
    /// fresh hit, or an error the edge makes itself), else as a boxed future,
    /// so that a hit never builds, boxes or moves the future of a fill.
    ///
    /// `interim` is the viewer's way to take the origin's 1xx responses (an
    /// HTTP/1.1 connection); it joins the request only when the request goes
    /// on past the hit path, so a hit does not carry it.
    pub fn handle(self: &Arc<Self>, req: Request<Incoming>, viewer: Viewer, interim: Option<Sink>) -> Handled {
        let start = Instant::now();
        let pending = self.log.as_ref().map(|l| self.begin_log(l, &req, viewer, start));
        let mut stats = None;
        let mut page = None;
        let mut policy = None;
        let later = match self.route(req, viewer, &mut stats, &mut page, &mut policy) {
            Step::Done(mut served) => match page.as_ref().filter(|p| p.wants(&served)) {
                None => {
                    self.with_policy(&mut served, policy.as_ref(), start);
                    return Handled::Ready(Some(self.finish(served, pending, stats, viewer)));
                }
                Some(_) => Box::pin(std::future::ready(served)),
            },
            // The request's arrival is the hit's "now" (one clock read).
            Step::Cached(parts, route) => match self.cached_now(parts, route, viewer, interim, start) {
                Now::Served(mut served) => match page.as_ref().filter(|p| p.wants(&served)) {
                    None => {
                        self.with_policy(&mut served, policy.as_ref(), start);
                        return Handled::Ready(Some(self.finish(served, pending, stats, viewer)));
                    }
                    Some(_) => Box::pin(std::future::ready(served)),
                },
                Now::Later(later) => later,
            },
            Step::Pass(mut req, route) => {
                if let Some(sink) = interim {
                    req.extensions_mut().insert(sink);
                }
                let edge = self.clone();
                Box::pin(async move { edge.pass(req, &route, viewer, EdgeResult::Pass).await })
            }
            Step::WebSocket(req, route) => {
                // Finished (and logged) by the handshake itself.
                let edge = self.clone();
                return Handled::Pending(Box::pin(edge.websocket(req, route, viewer, pending, stats)));
            }
        };
        let edge = self.clone();
        Handled::Pending(Box::pin(async move {
            let mut served = later.await;
            if let Some(page) = page {
                served = edge.with_error_page(served, &page, viewer).await;
            }
            edge.with_policy(&mut served, policy.as_ref(), start);
            edge.finish(served, pending, stats, viewer)
        }))
    }

    /// Everything before the cache or the origin: host, path, loop check,
    /// routing, viewer protocol, method, signatures, the request's body.
    ///
    /// `page` is set when the distribution answers some errors with a custom
    /// error page (every answer from here on may be one of them), `policy`
    /// when the behavior has a response headers policy (every answer from
    /// here on gets its headers).
    fn route(
        &self,
        mut req: Request<Incoming>,
        viewer: Viewer,
        stats: &mut Option<Arc<DistStats>>,
        page: &mut Option<Box<error_page::PageRequest>>,
        policy: &mut Option<headers_policy::PolicyRequest>,
    ) -> Step {
        let host = match crate::routing::viewer_host(&mut req) {
            Ok(h) => h,
            Err(reason) => return Step::Done(respond::error(StatusCode::BAD_REQUEST, reason)),
        };
        // One spelling of the path from here on: routing, signatures, the
        // cache key, invalidations and the origin all see the canonical one.
        if let Err(reason) = canonicalise(&mut req) {
            return Step::Done(respond::error(StatusCode::BAD_REQUEST, reason));
        }
        if self.looped(req.headers()) {
            return Step::Done(respond::error(
                StatusCode::LOOP_DETECTED,
                "this edge is its own origin (its Via token came back)",
            ));
        }
        let route = match self.routes.load().route(&host, req.uri().path()) {
            Some(r) => r,
            None => {
                return Step::Done(respond::error(
                    StatusCode::MISDIRECTED_REQUEST,
                    &format!("no distribution serves the host {host:?}"),
                ))
            }
        };
        *stats = Some(route.dist.stats.clone());
        let pages = &route.behavior().error_responses;
        if pages.has_pages() {
            *page = Some(Box::new(error_page::PageRequest {
                pages: pages.clone(),
                host: host.clone(),
                head: req.method() == http::Method::HEAD,
                accept_encoding: req.headers().get(header::ACCEPT_ENCODING).cloned(),
            }));
        }
        if let Some(p) = &route.behavior().response_headers {
            *policy = Some(headers_policy::PolicyRequest {
                policy: p.clone(),
                origin: req.headers().get(header::ORIGIN).cloned(),
            });
        }
        if !route.dist.config.enabled {
            return Step::Done(respond::error(StatusCode::FORBIDDEN, "this distribution is disabled"));
        }
        if !viewer.tls {
            match route.behavior().viewer_protocol_policy {
                crate::config::ViewerProtocolPolicy::AllowAll => {}
                crate::config::ViewerProtocolPolicy::HttpsOnly => {
                    return Step::Done(respond::error(StatusCode::FORBIDDEN, "this path is served over HTTPS only"))
                }
                crate::config::ViewerProtocolPolicy::RedirectToHttps => {
                    let port = self.https_port.load(std::sync::atomic::Ordering::Relaxed);
                    let port = if port == 443 { String::new() } else { format!(":{port}") };
                    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    let mut served = respond::error(StatusCode::MOVED_PERMANENTLY, "this path is served over HTTPS");
                    served.result = EdgeResult::Redirect;
                    if let Ok(v) = HeaderValue::from_str(&format!("https://{host}{port}{target}")) {
                        served.response.headers_mut().insert(header::LOCATION, v);
                    }
                    return Step::Done(served);
                }
            }
        }
        let method = req.method().clone();
        // A CORS preflight the policy answers: here, never at the origin.
        if let Some(p) = &route.behavior().response_headers {
            let forwards = route.behavior().allows(&Method::OPTIONS);
            if headers_policy::answers_preflight(p, &method, req.headers(), forwards) {
                return Step::Done(headers_policy::preflight(p, req.headers()));
            }
        }
        // An HTTP/2 WebSocket's CONNECT stands for the handshake's GET.
        let websocket_connect =
            method == Method::CONNECT && route.behavior().websocket && websocket::is_extended_connect(&req);
        if !route.behavior().allows(&method) && !websocket_connect {
            return Step::Done(respond::error(
                StatusCode::FORBIDDEN,
                &format!("method {method} is not allowed for this path"),
            ));
        }
        // Private content: a valid signed URL or signed cookies, else 403 before
        // the cache and the origin. Then the signing parameters and cookies go,
        // so that neither the cache key nor the origin request sees them.
        let groups = &route.behavior().trusted_key_groups;
        if !groups.is_empty() {
            if let Err(denied) = self.check_signed(&req, viewer, groups) {
                let mut served = respond::error(StatusCode::FORBIDDEN, denied.reason());
                served.result = EdgeResult::Denied(denied);
                return Step::Done(served);
            }
            if route.behavior().propagate_tokens {
                if let Some(tokens) = crate::security::signing_params(req.uri().query()) {
                    req.extensions_mut().insert(crate::security::ViewerTokens(tokens));
                }
            }
            if crate::security::has_signing_params(req.uri().query()) {
                let uri = req.uri();
                let query = crate::security::query_without_signing(uri.query().unwrap_or(""));
                let target = if query.is_empty() { uri.path().to_string() } else { format!("{}?{query}", uri.path()) };
                let mut parts = uri.clone().into_parts();
                parts.path_and_query = target.parse().ok();
                match http::Uri::from_parts(parts) {
                    Ok(u) => *req.uri_mut() = u,
                    Err(_) => {
                        return Step::Done(respond::error(StatusCode::BAD_REQUEST, "the request target is not valid"))
                    }
                }
            }
            crate::security::remove_signing_cookies(req.headers_mut());
        }
        // A GET or HEAD with a body: 400 before it can lead a fill that the
        // origin would hold open waiting for that body.
        if forward::carries_body(&req) {
            return Step::Done(forward::body_refused(req.version()));
        }
        forward::set_keyed_viewer_headers(&mut req, route.behavior(), viewer);
        // hyper marks a request that may switch protocols (an `Upgrade`
        // field, a CONNECT) with its upgrade handle: other requests skip the
        // handshake checks without a header lookup.
        if req.extensions().get::<hyper::upgrade::OnUpgrade>().is_some()
            && websocket::is_handshake(&req)
            && route.behavior().websocket
        {
            return Step::WebSocket(req, route);
        }
        let cacheable_request = forward::shared(&method, req.headers());
        if cacheable_request {
            // The body of a GET or HEAD is empty (checked above).
            Step::Cached(req.into_parts().0, route)
        } else {
            Step::Pass(req, route)
        }
    }

    /// Checks a request to a behavior with trusted key groups.
    fn check_signed<B>(
        &self,
        req: &Request<B>,
        viewer: Viewer,
        groups: &[Arc<crate::config::KeyGroup>],
    ) -> Result<(), crate::security::Denial> {
        let authority = match req.uri().authority() {
            Some(a) => a.as_str(),
            None => req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map_or("", str::trim),
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let signed = crate::security::SignedRequest {
            scheme: if viewer.tls { "https" } else { "http" },
            authority,
            path: req.uri().path(),
            query: req.uri().query(),
            headers: req.headers(),
            client_ip: viewer.addr.ip(),
            now,
        };
        match self.signed.check(groups, &signed) {
            Err(crate::security::Denial::Invalid) => match req.extensions().get::<crate::security::SentPath>() {
                Some(sent) => self.signed.check(groups, &crate::security::SignedRequest { path: &sent.0, ..signed }),
                None => Err(crate::security::Denial::Invalid),
            },
            other => other,
        }
    }

    /// Applies the behavior's response headers policy, when it has one (before `finish`).
    #[inline]
    fn with_policy(&self, served: &mut Served, policy: Option<&headers_policy::PolicyRequest>, start: Instant) {
        if let Some(p) = policy {
            self.apply_policy(served, p, start);
        }
    }

    #[inline(never)]
    fn apply_policy(&self, served: &mut Served, p: &headers_policy::PolicyRequest, start: Instant) {
        if !served.policy_done {
            headers_policy::apply_static(&p.policy, served.response.headers_mut());
            if served.head_bytes.is_some() {
                let reason = served.response.status().canonical_reason().map_or(0, str::len);
                served.head_bytes = Some(crate::http::head_size(reason + 4, served.response.headers()));
            }
        }
        headers_policy::apply_request(p, served, start, &self.pop);
    }

    /// Adds the headers every response carries, counts the response, and
    /// attaches the log line.
    fn finish(
        &self,
        served: Served,
        pending: Option<Box<Pending>>,
        stats: Option<Arc<DistStats>>,
        viewer: Viewer,
    ) -> Response<EdgeBody> {
        let Served { mut response, result, range, head_bytes, .. } = served;
        let head_bytes = match head_bytes {
            Some(b) => b,
            None => {
                let h = response.headers_mut();
                h.insert(X_CACHE.clone(), result.x_cache_header());
                if h.contains_key(header::VIA) {
                    crate::http::append_list(h, header::VIA, &self.via);
                } else {
                    h.insert(header::VIA, self.via_value.clone());
                }
                let reason = response.status().canonical_reason().map_or(0, str::len);
                crate::http::head_size(reason + 4, response.headers())
            }
        };
        if let Some(stats) = stats {
            stats.record_response(response.status().as_u16(), result, viewer.tls);
            if result.collapsed() {
                stats.record_collapsed();
            }
            if result == EdgeResult::StaleIfError {
                stats.record_stale_if_error();
            }
            response.body_mut().attach_meter(stats, head_bytes);
        }
        if let Some(mut p) = pending {
            p.status = response.status().as_u16();
            p.result = result;
            p.range = range;
            let h = response.headers();
            p.content_type = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            p.content_len = h.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let expected = if p.method == "HEAD" { Some(0) } else { p.content_len.parse().ok() };
            response.body_mut().attach_log(p, expected);
        }
        response
    }

    fn begin_log(&self, log: &Arc<AccessLog>, req: &Request<Incoming>, viewer: Viewer, start: Instant) -> Box<Pending> {
        let h = req.headers();
        let s = |n: header::HeaderName| {
            h.get(n).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).unwrap_or_default()
        };
        let request_bytes: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>()
            + req.uri().to_string().len()
            + 16
            + h.get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
        Box::new(Pending {
            log: log.clone(),
            start,
            ttfb: None,
            client: viewer.addr,
            method: req.method().to_string(),
            host: request_host(req).unwrap_or_default(),
            uri_stem: req.uri().path().to_string(),
            query: req.uri().query().unwrap_or("").to_string(),
            referer: s(header::REFERER),
            user_agent: s(header::USER_AGENT),
            cookie: if log.log_cookies { s(header::COOKIE) } else { String::new() },
            forwarded_for: s(header::HeaderName::from_static("x-forwarded-for")),
            protocol_version: match req.version() {
                http::Version::HTTP_2 => "HTTP/2.0",
                http::Version::HTTP_10 => "HTTP/1.0",
                _ => "HTTP/1.1",
            },
            tls: viewer.tls,
            request_bytes: request_bytes as u64,
            request_id: crate::log::request_id(),
            status: 0,
            // Set when the response is finished.
            result: EdgeResult::OriginError,
            content_type: String::new(),
            content_len: String::new(),
            range: None,
        })
    }

    /// Whether this node's own `Via` token is on the request: it went out to
    /// an origin that is (or leads back to) this edge. Other edges' tokens,
    /// including tiers with the same location name, do not count.
    fn looped(&self, headers: &http::HeaderMap) -> bool {
        headers
            .get_all(header::VIA)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|member| member.split_whitespace().nth(1) == Some(self.via_token.as_str()))
    }
}

/// `1.1 <edge location>-<node> (mediaedge)`: the node part is random per
/// process, so that edges sharing a location name (tiers of one network) never
/// take each other's token for their own.
fn via_for(server: &ServerConfig) -> String {
    let loc: String =
        server.edge_location.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.').collect();
    let node: String = (0..8).map(|_| char::from(b"0123456789abcdef"[fastrand::usize(..16)])).collect();
    format!("1.1 {}-{node} (mediaedge)", if loc.is_empty() { "edge" } else { &loc })
}

/// Replaces the request's path with its canonical form (the query kept).
fn canonicalise<B>(req: &mut Request<B>) -> Result<(), &'static str> {
    let path = match crate::http::path::canonical(req.uri().path()) {
        Ok(Cow::Borrowed(_)) => return Ok(()),
        Ok(Cow::Owned(p)) => p,
        Err(e) => return Err(e.reason()),
    };
    let original = req.uri().path().to_string();
    let target = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(target.parse().map_err(|_| "the request target is not valid")?);
    *req.uri_mut() = http::Uri::from_parts(parts).map_err(|_| "the request target is not valid")?;
    req.extensions_mut().insert(crate::security::SentPath(original));
    Ok(())
}

/// Shared by the hit path and the fill: what a request needs after routing.
pub(crate) struct Ctx {
    pub route: Route,
    pub viewer: Viewer,
}
