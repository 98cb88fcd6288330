//! Building viewer responses: from a stored object (conditionals, ranges,
//! compressed variants, HEAD), from an origin response, and for errors.

use super::{Ctx, Edge, EdgeResult, Served, X_CACHE};
use crate::cache::object::{Head, HitHead, Object};
use crate::compress::Encoding;
use crate::config::ResponseHeadersPolicy;
use crate::http::body::EdgeBody;
use crate::http::conditional::{self, Precondition};
use crate::http::range::{self, ByteRange, Resolved, Spec};
use crate::origin::OriginResponse;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use std::sync::Arc;
use std::time::Instant;

static ACCEPT_ENCODING: HeaderValue = HeaderValue::from_static("Accept-Encoding");

impl Edge {
    /// Answers a request from a stored object, which may still be filling.
    pub(super) async fn serve(&self, parts: &Parts, ctx: &Ctx, obj: Arc<Object>, result: EdgeResult) -> Served {
        let next = self.serve_now(parts, &obj, result, Instant::now(), ctx.route.behavior().response_headers.as_ref());
        self.serve_rest(next, parts, ctx, &obj, result).await
    }

    /// What `serve_now` left for later: a token rewrite or a range that may
    /// have to wait for the body.
    pub(super) async fn serve_rest(
        &self,
        next: Next,
        parts: &Parts,
        ctx: &Ctx,
        obj: &Arc<Object>,
        result: EdgeResult,
    ) -> Served {
        let is_head = parts.method == Method::HEAD;
        match next {
            Next::Done(served) => served,
            Next::Tokens(headers) => {
                let tokens = parts.extensions.get::<crate::security::ViewerTokens>().map_or("", |t| t.0.as_str());
                Served::new(Box::pin(with_tokens(obj, headers, tokens, is_head)).await, result)
            }
            Next::Range(headers, specs) => {
                match Box::pin(self.serve_range(obj, headers, &specs, is_head, result)).await {
                    Some(s) => s,
                    // The object turned out too large to store while this
                    // range waited for it: the range goes to the origin.
                    None => self.relay_range(parts, ctx).await,
                }
            }
        }
    }

    /// Answers from a stored object as far as that is possible without waiting:
    /// the whole hit path of a fresh object. `policy`: the behavior's response
    /// headers policy, whose static part a plain hit's head carries.
    pub(super) fn serve_now(
        &self,
        parts: &Parts,
        obj: &Arc<Object>,
        result: EdgeResult,
        now: Instant,
        policy: Option<&Arc<ResponseHeadersPolicy>>,
    ) -> Next {
        let head = obj.head();
        let tokens = obj.is_manifest() && parts.extensions.get::<crate::security::ViewerTokens>().is_some();
        if head.status == StatusCode::OK && !tokens && plain_request(&parts.headers, obj.compressible) {
            if let Some(len) = obj.body.total_len() {
                let is_head = parts.method == Method::HEAD;
                let made;
                let mut hit = head.hit.0.get_or_init(|| self.hit_head(&head, obj.compressible, len, policy));
                if !same_policy(hit.policy.as_ref(), policy) {
                    // Made under the policy before a reload: this hit makes its own.
                    made = self.hit_head(&head, obj.compressible, len, policy);
                    hit = &made;
                }
                // A viewer whose `Origin` the policy allows gets the head
                // with the CORS headers in: the map never grows.
                let allowed = hit.cors.as_ref().and_then(|(h, b)| {
                    let origin = parts.headers.get(header::ORIGIN)?;
                    let cors = hit.policy.as_ref()?.cors.as_ref()?;
                    cors.allows(origin.as_bytes()).then_some((h, *b, origin))
                });
                let (source, mut bytes) = match allowed {
                    Some((h, b, origin)) => (h, b + origin.len() as u64),
                    None => (&hit.headers, hit.bytes),
                };
                let mut headers = source.clone();
                if let Some((_, _, origin)) = allowed {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                }
                let age_secs = head.age(now).as_secs();
                let x_cache = result.x_cache_header();
                bytes += x_cache.len() as u64;
                headers.insert(X_CACHE.clone(), x_cache);
                if result == EdgeResult::Miss && age_secs == 0 {
                    // The placeholder's name and framing go with it.
                    headers.remove(header::AGE);
                    bytes -= (header::AGE.as_str().len() + 4) as u64;
                } else {
                    let age = crate::http::age_value(age_secs);
                    bytes += age.len() as u64;
                    headers.insert(header::AGE, age);
                }
                let body = if is_head {
                    EdgeBody::empty()
                } else if let Some(all) = obj.body.bytes() {
                    EdgeBody::full(all.clone())
                } else {
                    EdgeBody::stored(obj.body.clone(), 0, None)
                };
                let mut served = Served::new(with(StatusCode::OK, headers, body), result);
                served.head_bytes = Some(bytes);
                served.policy_done = true;
                return Next::Done(served);
            }
        }
        let mut headers = head.headers.clone();
        let age = head.age(now).as_secs();
        if result != EdgeResult::Miss || age > 0 {
            headers.insert(header::AGE, crate::http::age_value(age));
        }
        if obj.compressible && !crate::http::list_contains(&headers, &header::VARY, "accept-encoding") {
            headers.append(header::VARY, ACCEPT_ENCODING.clone());
        }
        let is_head = parts.method == Method::HEAD;
        let served = |resp: Response<EdgeBody>| Next::Done(Served::new(resp, result));
        if tokens && head.status == StatusCode::OK {
            return Next::Tokens(headers);
        }
        if head.status != StatusCode::OK {
            let len = obj.body.total_len();
            return served(body_response(head.status, headers, obj, 0, len, is_head));
        }
        match conditional::evaluate(&parts.headers, head.etag.as_ref(), head.last_modified) {
            Precondition::NotModified => return served(not_modified(&headers)),
            // Answered from the stored validators, as a 304 is.
            Precondition::Failed => {
                return Next::Done(Served { result, ..error(StatusCode::PRECONDITION_FAILED, "a precondition failed") })
            }
            Precondition::Proceed => {}
        }
        // A viewer holding the compressed variant this request would get
        // revalidates with that variant's own (weak) ETag.
        if obj.compressible && parts.headers.contains_key(header::IF_NONE_MATCH) {
            let enc = Encoding::preferred(&parts.headers);
            let variant = head.etag.as_ref().filter(|_| enc != Encoding::Identity).and_then(|e| weak_etag(e, enc));
            if let Some(etag) =
                variant.filter(|v| conditional::etag_in_list(&parts.headers, header::IF_NONE_MATCH, Some(v), true))
            {
                if obj.encoded(enc).is_some() {
                    headers.insert(header::ETAG, etag);
                    return served(not_modified(&headers));
                }
            }
        }
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some(specs) = parts.headers.get(header::RANGE).and_then(|v| range::parse(v.as_bytes())) {
            if conditional::if_range_holds(&parts.headers, head.etag.as_ref(), head.last_modified, head.date) {
                return Next::Range(headers, specs);
            }
        }
        if obj.compressible {
            let enc = Encoding::preferred(&parts.headers);
            if enc != Encoding::Identity {
                if let Some(encoded) = obj.encoded(enc) {
                    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(enc.token()));
                    if let Some(etag) = head.etag.as_ref().and_then(|e| weak_etag(e, enc)) {
                        headers.insert(header::ETAG, etag);
                    }
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(encoded.len()));
                    let body = if is_head { EdgeBody::empty() } else { EdgeBody::full(encoded) };
                    return served(with(StatusCode::OK, headers, body));
                }
            }
        }
        let len = obj.body.total_len();
        served(body_response(StatusCode::OK, headers, obj, 0, len, is_head))
    }

    /// Makes the head every plain hit on this stored head starts from.
    fn hit_head(
        &self,
        head: &Head,
        compressible: bool,
        len: u64,
        policy: Option<&Arc<ResponseHeadersPolicy>>,
    ) -> HitHead {
        let mut h = head.headers.clone();
        if compressible && !crate::http::list_contains(&h, &header::VARY, "accept-encoding") {
            h.append(header::VARY, ACCEPT_ENCODING.clone());
        }
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if h.contains_key(header::VIA) {
            crate::http::append_list(&mut h, header::VIA, &self.via);
        } else {
            h.insert(header::VIA, self.via_value.clone());
        }
        if let Some(p) = policy {
            super::headers_policy::apply_static(p, &mut h);
        }
        // Placeholders, replaced in place by each hit.
        h.insert(header::AGE, HeaderValue::from_static(""));
        h.insert(X_CACHE.clone(), HeaderValue::from_static(""));
        let reason = StatusCode::OK.canonical_reason().map_or(0, str::len);
        let cors = policy.and_then(|p| super::headers_policy::allowed_head(p, &h)).map(|c| {
            let bytes = crate::http::head_size(reason + 4, &c);
            (c, bytes)
        });
        HitHead { bytes: crate::http::head_size(reason + 4, &h), headers: h, policy: policy.cloned(), cors }
    }

    async fn serve_range(
        &self,
        obj: &Arc<Object>,
        mut headers: HeaderMap,
        specs: &[Spec],
        is_head: bool,
        result: EdgeResult,
    ) -> Option<Served> {
        let body = &obj.body;
        let mut total = body.total_len();
        if total.is_none() {
            // Length unknown while filling: a closed range needs only its own
            // bytes (answered `bytes a-b/*`), an open-ended one its first byte
            // (then it streams as the rest arrives); anything else needs the
            // whole body.
            let need = match specs {
                [Spec::Closed(_, last)] => last.saturating_add(1),
                [Spec::From(first)] => first.saturating_add(1),
                _ => u64::MAX,
            };
            match body.wait_for(need).await {
                Ok(_) => total = body.total_len(),
                Err(_) if body.is_passing() => return None,
                Err(e) => return Some(error(StatusCode::BAD_GATEWAY, &e.to_string())),
            }
            if total.is_none() {
                if let [Spec::Closed(first, last)] = specs {
                    let r = ByteRange { start: *first, end: last + 1 };
                    return Some(ranged(headers, obj, r, None, is_head, result));
                }
                if let [Spec::From(first)] = specs {
                    return Some(open_ended(headers, obj, *first, is_head, result));
                }
            }
        }
        let total = total.unwrap_or(0);
        Some(match range::resolve(specs, total) {
            Resolved::Unsatisfiable => unsatisfiable(total, is_head, result),
            Resolved::Ranges(ranges) if ranges.len() == 1 => {
                ranged(headers, obj, ranges[0], Some(total), is_head, result)
            }
            Resolved::Ranges(ranges) => {
                let all = match body.wait_complete().await {
                    Ok(b) => b,
                    Err(_) if body.is_passing() => return None,
                    Err(e) => return Some(error(StatusCode::BAD_GATEWAY, &e.to_string())),
                };
                let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
                let (boundary, pieces) = range::multipart(&all, &ranges, ct.as_deref());
                if let Ok(v) = HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}")) {
                    headers.insert(header::CONTENT_TYPE, v);
                }
                let len: usize = pieces.iter().map(Bytes::len).sum();
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                let body = if is_head { EdgeBody::empty() } else { EdgeBody::pieces(pieces) };
                Served::new(with(StatusCode::PARTIAL_CONTENT, headers, body), result)
            }
        })
    }

    /// The viewer's range (whatever its shape) asked of the origin, its answer
    /// relayed as it streams: for objects the cache does not hold whole.
    async fn relay_range(&self, parts: &Parts, ctx: &Ctx) -> Served {
        let request = self.pass_request(parts, ctx, crate::origin::RequestBody::Empty);
        match ctx.route.origin().send(request).await {
            Ok(r) => from_origin(r, EdgeResult::Pass, parts.method == Method::HEAD),
            Err(e) => error(e.status(), &e.to_string()),
        }
    }
}

fn same_policy(a: Option<&Arc<ResponseHeadersPolicy>>, b: Option<&Arc<ResponseHeadersPolicy>>) -> bool {
    match (a, b) {
        (None, None) => true,
        // A reload makes new policies: an unchanged one still fits the head.
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        _ => false,
    }
}

/// What answering from a stored object needs after `serve_now`.
// The large variant is the common one (a hit): boxing it would allocate per hit.
#[allow(clippy::large_enum_variant)]
pub(super) enum Next {
    /// Answered without waiting: most hits.
    Done(Served),
    /// A manifest to rewrite with the viewer's signing parameters.
    Tokens(HeaderMap),
    /// A range, which may need bytes that are still arriving.
    Range(HeaderMap, Vec<Spec>),
}

/// Whether a request asks for the stored response as it is: no conditional,
/// no range, and (for an object that may be compressed) no compression.
/// One pass over the request's fields.
fn plain_request(req: &HeaderMap, compressible: bool) -> bool {
    !req.keys().any(|name| {
        name == header::IF_NONE_MATCH
            || name == header::IF_MODIFIED_SINCE
            || name == header::IF_MATCH
            || name == header::IF_UNMODIFIED_SINCE
            || name == header::IF_RANGE
            || name == header::RANGE
            || (compressible && name == header::ACCEPT_ENCODING)
    })
}

/// 416 with the length the range was resolved against.
pub(super) fn unsatisfiable(total: u64, is_head: bool, result: EdgeResult) -> Served {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
        h.insert(header::CONTENT_RANGE, v);
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    let msg = Bytes::from(format!("416 Range Not Satisfiable: the object has {total} bytes\n"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(msg.len()));
    let body = if is_head { EdgeBody::empty() } else { EdgeBody::full(msg) };
    Served::new(with(StatusCode::RANGE_NOT_SATISFIABLE, h, body), result)
}

fn ranged(
    mut headers: HeaderMap,
    obj: &Arc<Object>,
    r: ByteRange,
    total: Option<u64>,
    is_head: bool,
    result: EdgeResult,
) -> Served {
    if let Ok(v) = HeaderValue::from_str(&range::content_range(r, total)) {
        headers.insert(header::CONTENT_RANGE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(r.len()));
    let body = if is_head { EdgeBody::empty() } else { EdgeBody::stored(obj.body.clone(), r.start, Some(r.end)) };
    let mut s = Served::new(with(StatusCode::PARTIAL_CONTENT, headers, body), result);
    s.range = Some((r.start, r.end - 1));
    s
}

/// The last position an open-ended range of a body still arriving is
/// answered with (2^53 − 1, RFC 8673's "very large" end): its end is not
/// known yet, and the body stops where the origin's does.
pub const OPEN_RANGE_END: u64 = (1 << 53) - 1;

/// `bytes=N-` on a body still arriving whose length is unknown (a segment
/// whose preload-hinted part is being produced): 206 at once, streaming from
/// N as the bytes arrive, `Content-Range: bytes N-9007199254740991/*`.
fn open_ended(mut headers: HeaderMap, obj: &Arc<Object>, first: u64, is_head: bool, result: EdgeResult) -> Served {
    if let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{OPEN_RANGE_END}/*")) {
        headers.insert(header::CONTENT_RANGE, v);
    }
    headers.remove(header::CONTENT_LENGTH);
    let body = if is_head { EdgeBody::empty() } else { EdgeBody::stored(obj.body.clone(), first, None) };
    let mut s = Served::new(with(StatusCode::PARTIAL_CONTENT, headers, body), result);
    s.range = Some((first, OPEN_RANGE_END));
    s
}

fn body_response(
    status: StatusCode,
    mut headers: HeaderMap,
    obj: &Arc<Object>,
    start: u64,
    len: Option<u64>,
    is_head: bool,
) -> Response<EdgeBody> {
    if let Some(len) = len {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len - start));
    }
    let body = if is_head {
        EdgeBody::empty()
    } else if let Some(all) = obj.body.bytes() {
        EdgeBody::full(all.slice(start as usize..))
    } else {
        EdgeBody::stored(obj.body.clone(), start, None)
    };
    with(status, headers, body)
}

/// A manifest whose URIs carry this viewer's signing parameters, made from the
/// stored copy (which stays as the origin sent it). Private to the viewer.
async fn with_tokens(obj: &Arc<Object>, mut headers: HeaderMap, tokens: &str, is_head: bool) -> Response<EdgeBody> {
    let body = match obj.body.wait_complete().await {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_GATEWAY, &e.to_string()).response,
    };
    let rewritten = crate::media::rewrite::propagate(obj.media, &body, tokens);
    // A manifest the rewrite cannot keep intact goes as stored (and is counted).
    let rewritten = rewritten.map_or(body, Bytes::from);
    for name in [header::ETAG, header::LAST_MODIFIED, header::ACCEPT_RANGES, header::CONTENT_ENCODING] {
        headers.remove(name);
    }
    headers.remove(header::VARY);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
    with(StatusCode::OK, headers, if is_head { EdgeBody::empty() } else { EdgeBody::full(rewritten) })
}

/// 304: only the headers RFC 9110 §15.4.5 lists.
pub(super) fn not_modified(stored: &HeaderMap) -> Response<EdgeBody> {
    let mut h = HeaderMap::new();
    for name in [
        header::CACHE_CONTROL,
        header::CONTENT_LOCATION,
        header::DATE,
        header::ETAG,
        header::EXPIRES,
        header::VARY,
        header::LAST_MODIFIED,
        header::AGE,
    ] {
        for v in stored.get_all(&name) {
            h.append(name.clone(), v.clone());
        }
    }
    h.extend(
        stored
            .get(&crate::cache::policy::CDN_CACHE_CONTROL)
            .map(|v| (crate::cache::policy::CDN_CACHE_CONTROL.clone(), v.clone())),
    );
    with(StatusCode::NOT_MODIFIED, h, EdgeBody::empty())
}

/// A compressed variant's entity tag: weak, and distinct from the identity one.
fn weak_etag(etag: &HeaderValue, enc: Encoding) -> Option<HeaderValue> {
    let s = etag.to_str().ok()?;
    let opaque = s.strip_prefix("W/").unwrap_or(s);
    let inner = opaque.strip_suffix('"')?;
    HeaderValue::from_str(&format!("W/{inner}-{}\"", enc.token())).ok()
}

pub(super) fn with(status: StatusCode, headers: HeaderMap, body: EdgeBody) -> Response<EdgeBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// Streams an origin response to the viewer as it arrives.
pub(super) fn from_origin(resp: OriginResponse, result: EdgeResult, is_head: bool) -> Served {
    let OriginResponse { status, mut headers, body, .. } = resp;
    crate::http::strip_hop_by_hop(&mut headers);
    let body = if is_head { EdgeBody::empty() } else { EdgeBody::origin(body) };
    Served::new(with(status, headers, body), result)
}

/// Whether the viewer asked for a stored response only
/// (`Cache-Control: only-if-cached`, RFC 9111 §5.2.1.7).
pub(super) fn only_if_cached(req: &HeaderMap) -> bool {
    req.get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("only-if-cached"))
}

/// The answer to `only-if-cached` when nothing fresh is stored: 504.
pub(super) fn not_stored() -> Served {
    error(StatusCode::GATEWAY_TIMEOUT, "only-if-cached, and no fresh response is stored")
}

/// The headers and body of an error the edge produces itself: a short text
/// body that caches downstream must not store.
pub(super) fn error_parts(status: StatusCode, message: &str) -> (HeaderMap, Bytes) {
    let body =
        Bytes::from(format!("{} {}: {message}\n", status.as_u16(), status.canonical_reason().unwrap_or("Error")));
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    (h, body)
}

/// An error the edge produces itself, answered now: a short text body.
pub(super) fn error(status: StatusCode, message: &str) -> Served {
    let (h, body) = error_parts(status, message);
    Served::new(with(status, h, EdgeBody::full(body)), EdgeResult::edge_error(status.as_u16()))
}
