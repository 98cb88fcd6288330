//! What the origin receives, for fills and passes alike.
//!
//! A request whose answer the cache may share (GET or HEAD without
//! `Authorization`) reaches the origin with only what the behavior's two
//! policies name: the cache key (query parameters, headers, cookies) and the
//! origin request policy (what else is forwarded, un-keyed). Everything else
//! the viewer sent is dropped, so a stored answer depends only on its key.
//! The edge adds its own headers: `Via`, `X-Forwarded-For`, a request id
//! (`X-Amz-Cf-Id`) and the viewer headers it computes when asked. Requests
//! the cache never answers (other methods, `Authorization`) go whole.

use super::respond::error;
use super::{Ctx, Edge, Served, Viewer};
use crate::cache::key;
use crate::cache::object::Object;
use crate::config::origin_request::REQUEST_ID;
use crate::config::{Behavior, ForwardedHeaders, KeyList, ViewerHeader};
use crate::origin::{OriginRequest, RequestBody};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, StatusCode, Version};
use hyper::body::{Body, Incoming};
use std::sync::Arc;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// This edge's entry in `Surrogate-Capability` (see `cache::policy::SURROGATE_DEVICE`).
const SURROGATE_CAPABILITY: &str = "mediaedge=\"Surrogate/1.0\"";

/// The viewer's conditionals and range: the edge sends its own on a fill,
/// and the viewer's on a pass (whose answer goes to that viewer alone).
const VIEWER_CONDITIONALS: [HeaderName; 6] = [
    header::RANGE,
    header::IF_RANGE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
];

/// Copies the viewer's `If-None-Match` and `If-Modified-Since` into a fill's
/// request (RFC 9111 §4.3.2: with no stored response to validate, a cache may
/// pass the viewer's own validators on). The other preconditions are always
/// evaluated here, against what is stored. Returns whether any was copied.
pub(super) fn viewer_validators(viewer: &HeaderMap, to: &mut HeaderMap) -> bool {
    let mut any = false;
    for name in [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE] {
        if viewer.contains_key(&name) {
            copy(viewer, to, &name);
            any = true;
        }
    }
    any
}

/// Whether the cache may answer this request and share the answer: then the
/// origin request follows the behavior's policies.
pub(super) fn shared(method: &Method, headers: &HeaderMap) -> bool {
    (*method == Method::GET || *method == Method::HEAD) && !headers.contains_key(header::AUTHORIZATION)
}

/// A GET or HEAD that carries a body: a `Content-Length` above 0, any
/// `Transfer-Encoding` (even a chunked body that turns out empty), or HTTP/2
/// DATA after the headers without `content-length: 0`.
pub(super) fn carries_body(req: &Request<Incoming>) -> bool {
    let body = req.body();
    (req.method() == Method::GET || req.method() == Method::HEAD)
        && !body.is_end_stream()
        && body.size_hint().exact() != Some(0)
}

/// The answer to a GET or HEAD with a body: 400, and on HTTP/1 the
/// connection closes (its unread body is never taken for the next request).
pub(super) fn body_refused(version: Version) -> Served {
    let mut served = error(StatusCode::BAD_REQUEST, "a GET or HEAD request cannot carry a body");
    if version < Version::HTTP_2 {
        served.response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    served
}

/// Computed viewer headers in the cache key take the edge's values before the
/// key is built: a viewer cannot choose them.
pub(super) fn set_keyed_viewer_headers(req: &mut Request<Incoming>, behavior: &Behavior, viewer: Viewer) {
    for name in &behavior.cache_key.headers {
        if let Some(h) = ViewerHeader::named(name) {
            let value = viewer_header(h, viewer, req.version());
            req.headers_mut().insert(name.clone(), value);
        }
    }
}

fn viewer_header(h: ViewerHeader, viewer: Viewer, version: Version) -> HeaderValue {
    match h {
        ViewerHeader::Address => {
            HeaderValue::from_str(&viewer.addr.to_string()).unwrap_or_else(|_| HeaderValue::from_static("0.0.0.0:0"))
        }
        ViewerHeader::ForwardedProto => HeaderValue::from_static(if viewer.tls { "https" } else { "http" }),
        ViewerHeader::HttpVersion => HeaderValue::from_static(match version {
            Version::HTTP_09 => "0.9",
            Version::HTTP_10 => "1.0",
            Version::HTTP_2 => "2.0",
            Version::HTTP_3 => "3.0",
            _ => "1.1",
        }),
    }
}

/// The viewer's way to receive the origin's interim (1xx) responses, when its
/// connection can take them (HTTP/1.1; see `server::interim`).
fn interim_sink(parts: &Parts) -> Option<crate::origin::InterimSink> {
    let sink = parts.extensions.get::<crate::server::interim::Sink>()?.clone();
    Some(Arc::new(move |status, headers: &HeaderMap| {
        sink.push(status, headers);
    }))
}

impl Edge {
    /// The origin request for a fill: what the policies name, `Accept-Encoding`
    /// normalized (or none where the edge compresses itself, so that one
    /// identity copy serves every viewer), and the edge's own conditionals
    /// when it revalidates a stale object.
    pub(super) fn fill_request(&self, parts: &Parts, ctx: &Ctx, stale: Option<&Arc<Object>>) -> OriginRequest {
        let behavior = ctx.route.behavior();
        let mut h = self.policy_headers(parts, ctx);
        let accept = crate::compress::normalized_accept_encoding(&parts.headers);
        if !behavior.compress && accept != "identity" {
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(accept));
        }
        if let Some(obj) = stale {
            let head = obj.head();
            if let Some(etag) = &head.etag {
                h.insert(header::IF_NONE_MATCH, etag.clone());
            }
            if let Some(lm) = head.headers.get(header::LAST_MODIFIED) {
                h.insert(header::IF_MODIFIED_SINCE, lm.clone());
            }
        }
        OriginRequest {
            method: Method::GET,
            path_and_query: policy_target(parts, behavior),
            headers: h,
            body: RequestBody::Empty,
            viewer_tls: ctx.viewer.tls,
            interim: interim_sink(parts),
        }
    }

    /// The origin request for a pass. A request the cache could have shared
    /// goes as a fill would, but with the viewer's method, conditionals, range
    /// and codings (the answer is this viewer's alone). Any other request goes
    /// whole, body and all, with the edge's headers added.
    pub(super) fn pass_request(&self, parts: &Parts, ctx: &Ctx, body: RequestBody) -> OriginRequest {
        let behavior = ctx.route.behavior();
        if shared(&parts.method, &parts.headers) {
            let mut h = self.policy_headers(parts, ctx);
            for name in VIEWER_CONDITIONALS {
                copy(&parts.headers, &mut h, &name);
            }
            let accept = crate::compress::normalized_accept_encoding(&parts.headers);
            if accept != "identity" {
                h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(accept));
            }
            return OriginRequest {
                method: parts.method.clone(),
                path_and_query: policy_target(parts, behavior),
                headers: h,
                body: RequestBody::Empty,
                viewer_tls: ctx.viewer.tls,
                interim: interim_sink(parts),
            };
        }
        let mut h = parts.headers.clone();
        crate::http::strip_hop_by_hop(&mut h);
        h.remove(header::EXPECT);
        let edge_owned: Vec<HeaderName> =
            h.keys().filter(|n| *n == REQUEST_ID || n.as_str().starts_with("cloudfront-")).cloned().collect();
        for name in edge_owned {
            h.remove(name);
        }
        if !forwards_host(behavior) {
            h.remove(header::HOST);
        }
        self.add_edge_headers(&mut h, parts, ctx);
        OriginRequest {
            method: parts.method.clone(),
            path_and_query: parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
            headers: h,
            body,
            viewer_tls: ctx.viewer.tls,
            interim: interim_sink(parts),
        }
    }

    /// The origin request for a WebSocket opening handshake: as a pass would
    /// send the GET (the behavior's policies, or the whole request when it
    /// carries `Authorization`), with the handshake's own fields always, and
    /// `Upgrade`/`Connection` made anew for the edge's hop to the origin.
    pub(super) fn websocket_request(&self, parts: &Parts, ctx: &Ctx) -> OriginRequest {
        let mut req = self.pass_request(parts, ctx, RequestBody::Empty);
        for name in super::websocket::HANDSHAKE_FIELDS {
            req.headers.remove(&name);
            copy(&parts.headers, &mut req.headers, &name);
        }
        req.headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        req.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        req.interim = None;
        req
    }

    /// The headers the two policies name, then the edge's own.
    fn policy_headers(&self, parts: &Parts, ctx: &Ctx) -> HeaderMap {
        let behavior = ctx.route.behavior();
        let policy = &behavior.origin_request;
        // Headers the viewer's `Connection` names belong to its hop alone.
        let cleaned;
        let viewer = if parts.headers.contains_key(header::CONNECTION) {
            let mut c = parts.headers.clone();
            crate::http::strip_hop_by_hop(&mut c);
            cleaned = c;
            &cleaned
        } else {
            &parts.headers
        };
        let mut h = HeaderMap::new();
        match &policy.headers {
            ForwardedHeaders::None => {}
            all @ (ForwardedHeaders::AllViewer | ForwardedHeaders::AllViewerExceptHost) => {
                for (name, value) in viewer.iter().filter(|(n, _)| all.includes(n)) {
                    h.append(name.clone(), value.clone());
                }
            }
            ForwardedHeaders::Allow(names) => {
                for name in names {
                    copy(viewer, &mut h, name);
                }
            }
        }
        for name in &behavior.cache_key.headers {
            if !h.contains_key(name) && ViewerHeader::named(name).is_none() {
                copy(viewer, &mut h, name);
            }
        }
        if forwards_host(behavior) && !h.contains_key(header::HOST) {
            // HTTP/2 viewers name the host in `:authority`.
            if let Some(v) = parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
                h.insert(header::HOST, v);
            }
        }
        let (keyed, forwarded) = (&behavior.cache_key.cookies, &policy.cookies);
        if *keyed != KeyList::None || *forwarded != KeyList::None {
            let kept: Vec<&str> = key::cookie_pairs(viewer)
                .filter(|(n, _)| keyed.includes(n) || forwarded.includes(n))
                .map(|(_, p)| p)
                .collect();
            if let (false, Ok(v)) = (kept.is_empty(), HeaderValue::from_str(&kept.join("; "))) {
                h.insert(header::COOKIE, v);
            }
        }
        // The proxies before the edge, as RFC 9110 §7.6.3 asks a proxy to keep them.
        copy(viewer, &mut h, &header::VIA);
        self.add_edge_headers(&mut h, parts, ctx);
        h
    }

    /// `Via` and `X-Forwarded-For` appended to what `h` holds, a request id of
    /// the edge's own, and the computed viewer headers the behavior asks for.
    fn add_edge_headers(&self, h: &mut HeaderMap, parts: &Parts, ctx: &Ctx) {
        crate::http::append_list(h, header::VIA, &self.via);
        crate::http::append_list(h, X_FORWARDED_FOR, &ctx.viewer.addr.ip().to_string());
        // The Edge Architecture note: surrogates add their capabilities to
        // those of the ones before them.
        crate::http::append_list(h, crate::cache::policy::SURROGATE_CAPABILITY.clone(), SURROGATE_CAPABILITY);
        if let Ok(id) = HeaderValue::from_str(&crate::log::request_id()) {
            h.insert(REQUEST_ID, id);
        }
        let behavior = ctx.route.behavior();
        let keyed = behavior.cache_key.headers.iter().filter_map(ViewerHeader::named);
        for v in behavior.origin_request.viewer_headers.iter().copied().chain(keyed) {
            h.insert(v.name(), viewer_header(v, ctx.viewer, parts.version));
        }
    }
}

/// Appends every value of `name` the viewer sent.
fn copy(from: &HeaderMap, to: &mut HeaderMap, name: &HeaderName) {
    for v in from.get_all(name) {
        to.append(name.clone(), v.clone());
    }
}

/// Whether the viewer's `Host` reaches the origin (else the origin's own).
fn forwards_host(behavior: &Behavior) -> bool {
    behavior.cache_key.headers.contains(&header::HOST) || behavior.origin_request.headers.includes(&header::HOST)
}

/// The path and the query parameters the policies name (the keyed ones, and
/// the origin request policy's), in the viewer's order and spelling.
fn policy_target(parts: &Parts, behavior: &Behavior) -> String {
    let path = parts.uri.path();
    let Some(query) = parts.uri.query().filter(|q| !q.is_empty()) else {
        return path.to_string();
    };
    let (keyed, forwarded) = (&behavior.cache_key.query, &behavior.origin_request.query);
    if *keyed == KeyList::All || *forwarded == KeyList::All {
        return format!("{path}?{query}");
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && (key::keyed_param(p, keyed) || forwarded.includes(key::param_name(p))))
        .collect();
    if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}
