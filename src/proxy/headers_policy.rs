//! Response headers policies at work: CORS (preflights answered here, the
//! `Access-Control-*` headers of other responses), security and custom
//! headers, removed headers and `Server-Timing` (see docs/response-headers.md).
//!
//! A policy's headers come in two parts. The static part is the same for every
//! viewer of a response (security and custom headers, removals, `*` CORS
//! answers, `Vary: Origin`): a hit gets it from its prebuilt head
//! (`respond::hit_head`), made once per stored head; every other response
//! gets it in `Edge::finish`. The per-request part depends on the viewer's
//! `Origin` (an allowed origin echoed) and is added only to requests that
//! carry one; `Server-Timing` is per request too.

use super::respond::{error, with};
use super::{EdgeResult, Served};
use crate::config::response_headers::{AllowOrigins, CorsPolicy, ResponseHeadersPolicy};
use crate::http::body::EdgeBody;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use std::sync::Arc;
use std::time::Instant;

static ANY: HeaderValue = HeaderValue::from_static("*");
static TRUE: HeaderValue = HeaderValue::from_static("true");
static ORIGIN: HeaderValue = HeaderValue::from_static("Origin");
static SERVER_TIMING: header::HeaderName = header::HeaderName::from_static("server-timing");

/// What a request to a behavior with a policy carries to the end of its
/// answer: the policy, and the viewer's `Origin` when it sent one.
pub(super) struct PolicyRequest {
    pub policy: Arc<ResponseHeadersPolicy>,
    pub origin: Option<HeaderValue>,
}

/// The static part of a policy, applied to a response head: removals, added
/// headers (where `override` or the origin has none), and the CORS headers
/// every viewer gets.
pub(crate) fn apply_static(policy: &ResponseHeadersPolicy, h: &mut HeaderMap) {
    apply_added(policy, h);
    if let Some(cors) = &policy.cors {
        apply_cors_static(cors, h);
    }
}

/// Removals and added headers (not CORS).
fn apply_added(policy: &ResponseHeadersPolicy, h: &mut HeaderMap) {
    for name in &policy.remove {
        h.remove(name);
    }
    for a in &policy.add {
        if a.override_origin || !h.contains_key(&a.name) {
            h.insert(a.name.clone(), a.value.clone());
        }
    }
}

/// The origin answered CORS itself and its headers win, or the policy's
/// replace them (the origin's `Access-Control-*` go).
fn apply_cors_static(cors: &CorsPolicy, h: &mut HeaderMap) {
    if h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        if !cors.origin_override {
            return;
        }
        for name in [
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            header::ACCESS_CONTROL_ALLOW_METHODS,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            header::ACCESS_CONTROL_MAX_AGE,
        ] {
            h.remove(name);
        }
    }
    match cors.allow_origins {
        AllowOrigins::Any => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY.clone());
            if let Some(v) = &cors.expose_headers {
                h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
            }
        }
        AllowOrigins::List(_) => {
            if !crate::http::list_contains(h, &header::VARY, "origin") {
                h.append(header::VARY, ORIGIN.clone());
            }
        }
    }
}

/// For a policy allowing listed origins, a hit head (static part in) as an
/// allowed viewer gets it: the CORS headers in, `Access-Control-Allow-Origin`
/// empty (the viewer's origin goes there). `None` when the origin's own CORS
/// headers win, or the policy has none to echo.
pub(super) fn allowed_head(policy: &ResponseHeadersPolicy, h: &HeaderMap) -> Option<HeaderMap> {
    let cors = policy.cors.as_ref().filter(|c| matches!(c.allow_origins, AllowOrigins::List(_)))?;
    if h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        return None;
    }
    let mut c = h.clone();
    c.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static(""));
    if cors.allow_credentials {
        c.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
    }
    if let Some(v) = &cors.expose_headers {
        c.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
    }
    Some(c)
}

/// The per-request part: the allowed origin echoed (with credentials and
/// exposed headers), then `Server-Timing`. `served` has the static part already.
pub(super) fn apply_request(p: &PolicyRequest, served: &mut Served, start: Instant, pop: &str) {
    if let (Some(cors), Some(origin)) = (&p.policy.cors, &p.origin) {
        if matches!(cors.allow_origins, AllowOrigins::List(_))
            // Present: the origin's own, which win (override off), or a preflight's.
            && !served.response.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            && cors.allows(origin.as_bytes())
        {
            served.append(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            if cors.allow_credentials {
                served.append(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
            }
            if let Some(v) = &cors.expose_headers {
                served.append(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
            }
        }
    }
    if let Some(rate) = p.policy.server_timing {
        if rate >= 100.0 || fastrand::f64() * 100.0 < rate {
            if let Some(v) = server_timing(served.result, start, pop) {
                served.append(SERVER_TIMING.clone(), v);
            }
        }
    }
}

/// `Server-Timing`: how the cache answered, where, and the time from the
/// request's arrival to its response head, in milliseconds.
fn server_timing(result: EdgeResult, start: Instant, pop: &str) -> Option<HeaderValue> {
    let cache = match result.log_result() {
        "Hit" => "cdn-cache-hit, ",
        "RefreshHit" => "cdn-cache-refresh, ",
        "Miss" => "cdn-cache-miss, ",
        _ => "",
    };
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    HeaderValue::from_str(&format!("{cache}cdn-pop;desc=\"{pop}\", cdn-edge;dur={ms:.3}")).ok()
}

/// Whether a request is a CORS preflight this policy answers at the edge:
/// `OPTIONS` with `Origin` and `Access-Control-Request-Method`, on a behavior
/// whose policy overrides the origin's CORS or that cannot forward `OPTIONS`.
pub(super) fn answers_preflight(
    policy: &ResponseHeadersPolicy,
    method: &Method,
    req: &HeaderMap,
    forwards: bool,
) -> bool {
    method == Method::OPTIONS
        && policy.cors.as_ref().is_some_and(|c| c.origin_override || !forwards)
        && req.contains_key(header::ORIGIN)
        && req.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The edge's answer to a preflight: 204 with the policy's CORS headers for
/// an allowed origin, 403 without any for another (the browser then refuses
/// the request it was asking about). The rest of the policy is applied here.
pub(super) fn preflight(policy: &ResponseHeadersPolicy, req: &HeaderMap) -> Served {
    let origin = req.get(header::ORIGIN);
    let Some((cors, origin)) = policy.cors.as_ref().zip(origin).filter(|(c, o)| c.allows(o.as_bytes())) else {
        let mut served = error(StatusCode::FORBIDDEN, "CORS: this origin is not allowed");
        apply_added(policy, served.response.headers_mut());
        if policy.cors.as_ref().is_some_and(|c| matches!(c.allow_origins, AllowOrigins::List(_))) {
            served.response.headers_mut().append(header::VARY, ORIGIN.clone());
        }
        served.policy_done = true;
        return served;
    };
    let mut h = HeaderMap::new();
    match cors.allow_origins {
        AllowOrigins::Any => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY.clone());
        }
        AllowOrigins::List(_) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(header::VARY, ORIGIN.clone());
        }
    }
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, cors.allow_methods.clone());
    let asked = req.get(header::ACCESS_CONTROL_REQUEST_HEADERS).filter(|_| cors.allow_any_header);
    if let Some(v) = asked.or(cors.allow_headers.as_ref()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
    }
    if let Some(v) = &cors.max_age {
        h.insert(header::ACCESS_CONTROL_MAX_AGE, v.clone());
    }
    if cors.allow_credentials {
        h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
    }
    apply_added(policy, &mut h);
    // Answered here, without the origin: counted as a hit.
    let mut served = Served::new(with(StatusCode::NO_CONTENT, h, EdgeBody::empty()), EdgeResult::Hit);
    served.policy_done = true;
    served
}
