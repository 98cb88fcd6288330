//! Building viewer responses: from a stored object (conditionals, ranges,
//! compressed variants, HEAD), from an origin response, and for errors.

use super::{Ctx, Edge, ResultType, Served};
use crate::cache::object::Object;
use crate::compress::Encoding;
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
    pub(super) async fn serve(
        &self,
        parts: &Parts,
        _ctx: &Ctx,
        obj: Arc<Object>,
        result: ResultType,
        detail: &'static str,
    ) -> Served {
        let head = obj.head();
        let now = Instant::now();
        let mut headers = head.headers.clone();
        let age = head.age(now).as_secs();
        if result != ResultType::Miss || age > 0 {
            headers.insert(header::AGE, HeaderValue::from(age));
        }
        if obj.compressible && !crate::http::list_contains(&headers, &header::VARY, "accept-encoding") {
            headers.append(header::VARY, ACCEPT_ENCODING.clone());
        }
        let is_head = parts.method == Method::HEAD;
        let served = |resp: Response<EdgeBody>| Served::new(resp, result, detail);
        if let Some(tokens) = parts.extensions.get::<crate::security::ViewerTokens>() {
            if obj.is_manifest() && head.status == StatusCode::OK {
                drop(head);
                return served(Box::pin(with_tokens(&obj, headers, &tokens.0, is_head)).await);
            }
        }
        if head.status != StatusCode::OK {
            let len = obj.body.total_len();
            return served(body_response(head.status, headers, &obj, 0, len, is_head));
        }
        match conditional::evaluate(&parts.headers, head.etag.as_ref(), head.last_modified) {
            Precondition::NotModified => return served(not_modified(&headers)),
            Precondition::Failed => {
                return error_with(StatusCode::PRECONDITION_FAILED, "a precondition failed", result)
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
                drop(head);
                let mut s = Box::pin(self.serve_range(&obj, headers, &specs, is_head, result, detail)).await;
                s.detail = detail;
                return s;
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
        served(body_response(StatusCode::OK, headers, &obj, 0, len, is_head))
    }

    async fn serve_range(
        &self,
        obj: &Arc<Object>,
        mut headers: HeaderMap,
        specs: &[Spec],
        is_head: bool,
        result: ResultType,
        detail: &'static str,
    ) -> Served {
        let body = &obj.body;
        let mut total = body.total_len();
        if total.is_none() {
            // Length unknown while filling: a closed range needs only its own
            // bytes (answered `bytes a-b/*`); anything else needs the whole body.
            let need = match specs {
                [Spec::Closed(_, last)] => last.saturating_add(1),
                _ => u64::MAX,
            };
            match body.wait_for(need).await {
                Ok(_) => total = body.total_len(),
                Err(e) => return error_with(StatusCode::BAD_GATEWAY, &e.to_string(), ResultType::Error),
            }
            if total.is_none() {
                if let [Spec::Closed(first, last)] = specs {
                    let r = ByteRange { start: *first, end: last + 1 };
                    return ranged(headers, obj, r, None, is_head, result, detail);
                }
            }
        }
        let total = total.unwrap_or(0);
        match range::resolve(specs, total) {
            Resolved::Unsatisfiable => {
                let mut h = HeaderMap::new();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                    h.insert(header::CONTENT_RANGE, v);
                }
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
                let msg = Bytes::from(format!("416 Range Not Satisfiable: the object has {total} bytes\n"));
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(msg.len()));
                Served::new(
                    with(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        h,
                        if is_head { EdgeBody::empty() } else { EdgeBody::full(msg) },
                    ),
                    result,
                    detail,
                )
            }
            Resolved::Ranges(ranges) if ranges.len() == 1 => {
                ranged(headers, obj, ranges[0], Some(total), is_head, result, detail)
            }
            Resolved::Ranges(ranges) => {
                let all = match body.wait_complete().await {
                    Ok(b) => b,
                    Err(e) => return error_with(StatusCode::BAD_GATEWAY, &e.to_string(), ResultType::Error),
                };
                let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
                let (boundary, pieces) = range::multipart(&all, &ranges, ct.as_deref());
                if let Ok(v) = HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}")) {
                    headers.insert(header::CONTENT_TYPE, v);
                }
                let len: usize = pieces.iter().map(Bytes::len).sum();
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                let body = if is_head { EdgeBody::empty() } else { EdgeBody::pieces(pieces) };
                Served::new(with(StatusCode::PARTIAL_CONTENT, headers, body), result, detail)
            }
        }
    }
}

fn ranged(
    mut headers: HeaderMap,
    obj: &Arc<Object>,
    r: ByteRange,
    total: Option<u64>,
    is_head: bool,
    result: ResultType,
    detail: &'static str,
) -> Served {
    if let Ok(v) = HeaderValue::from_str(&range::content_range(r, total)) {
        headers.insert(header::CONTENT_RANGE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(r.len()));
    let body = if is_head { EdgeBody::empty() } else { EdgeBody::stored(obj.body.clone(), r.start, Some(r.end)) };
    let mut s = Served::new(with(StatusCode::PARTIAL_CONTENT, headers, body), result, detail);
    s.range = Some((r.start, r.end - 1));
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
    let text = String::from_utf8_lossy(&body);
    let rewritten = match obj.media {
        crate::media::MediaKind::DashMpd => crate::media::rewrite::dash(&text, tokens),
        _ => crate::media::rewrite::hls(&text, tokens),
    };
    let rewritten = Bytes::from(rewritten);
    for name in [header::ETAG, header::LAST_MODIFIED, header::ACCEPT_RANGES, header::CONTENT_ENCODING] {
        headers.remove(name);
    }
    headers.remove(header::VARY);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
    with(StatusCode::OK, headers, if is_head { EdgeBody::empty() } else { EdgeBody::full(rewritten) })
}

/// 304: only the headers RFC 9110 §15.4.5 lists.
fn not_modified(stored: &HeaderMap) -> Response<EdgeBody> {
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

fn with(status: StatusCode, headers: HeaderMap, body: EdgeBody) -> Response<EdgeBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// Streams an origin response to the viewer as it arrives.
pub(super) fn from_origin(resp: OriginResponse, result: ResultType, detail: &'static str, is_head: bool) -> Served {
    let OriginResponse { status, mut headers, body, .. } = resp;
    crate::http::strip_hop_by_hop(&mut headers);
    let body = if is_head { EdgeBody::empty() } else { EdgeBody::origin(body) };
    Served::new(with(status, headers, body), result, detail)
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

/// An error the edge produces itself: a short text body, never cached.
pub(super) fn error(status: StatusCode, message: &str) -> Served {
    error_with(status, message, ResultType::Error)
}

fn error_with(status: StatusCode, message: &str, result: ResultType) -> Served {
    let body =
        Bytes::from(format!("{} {}: {message}\n", status.as_u16(), status.canonical_reason().unwrap_or("Error")));
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let detail = if status.is_server_error() { "OriginError" } else { "ClientError" };
    Served::new(with(status, h, EdgeBody::full(body)), result, detail)
}
