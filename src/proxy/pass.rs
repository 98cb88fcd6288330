//! Passing requests straight to the origin: other methods, authorized requests,
//! hit-for-pass and waiters released from a fill. Bodies stream both ways,
//! except POST bodies under field-level encryption, read (bounded) and rewritten.

use super::respond::{error, from_origin};
use super::{Ctx, Edge, EdgeResult, Served, Viewer};
use crate::cache::key;
use crate::origin::RequestBody;
use crate::routing::Route;
use crate::security::fle::{FleConfig, Selection};
use crate::security::fle_form::{self, FormError};
use bytes::Bytes;
use http::header;
use http::request::Parts;
use http::{Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use std::sync::Arc;

impl Edge {
    pub(super) async fn pass(
        self: &Arc<Self>,
        req: Request<Incoming>,
        route: &Route,
        viewer: Viewer,
        result: EdgeResult,
    ) -> Served {
        let (mut parts, body) = req.into_parts();
        let ctx = Ctx { route: route.clone(), viewer };
        // A request that has no body says so: an origin group may then send
        // it to its next member too.
        let body = if http_body::Body::is_end_stream(&body) { RequestBody::Empty } else { RequestBody::Viewer(body) };
        let body = match (&route.behavior().field_level_encryption, body) {
            (Some(fle), RequestBody::Viewer(b)) if parts.method == Method::POST => {
                match encrypt_fields(fle, &mut parts, b).await {
                    Ok(body) => body,
                    Err(refused) => return refused,
                }
            }
            (_, body) => body,
        };
        self.pass_with_body(parts, &ctx, body, result).await
    }

    pub(super) async fn pass_parts(self: &Arc<Self>, parts: Parts, ctx: &Ctx, result: EdgeResult) -> Served {
        self.pass_with_body(parts, ctx, RequestBody::Empty, result).await
    }

    async fn pass_with_body(
        self: &Arc<Self>,
        parts: Parts,
        ctx: &Ctx,
        body: RequestBody,
        result: EdgeResult,
    ) -> Served {
        let viewer_body = matches!(body, RequestBody::Viewer(_));
        let request = self.pass_request(&parts, ctx, body);
        let response = match ctx.route.origin().send(request).await {
            Ok(r) => r,
            // The viewer's body could not be read (bad chunk framing, cut
            // short): the viewer's fault, not the origin's.
            Err(e) if viewer_body && e.to_string().contains(VIEWER_BODY_FAILED) => {
                return error(http::StatusCode::BAD_REQUEST, "the request body is malformed or incomplete");
            }
            Err(e) => {
                tracing::warn!(origin = %ctx.route.origin().config.id, path = parts.uri.path(), "{e}");
                return error(e.status(), &e.to_string());
            }
        };
        if is_unsafe(&parts.method) && (response.status.is_success() || response.status.is_redirection()) {
            self.invalidate_after_unsafe(&parts, &ctx.route, &response.headers);
        }
        from_origin(response, result, parts.method == Method::HEAD)
    }

    /// RFC 9111 §4.4: a successful unsafe request invalidates the target URI,
    /// and the `Location` and `Content-Location` URIs on the same host.
    fn invalidate_after_unsafe(&self, parts: &Parts, route: &Route, resp: &http::HeaderMap) {
        let dist = &route.dist.config;
        let own_host = crate::routing::host_of(&parts.uri, &parts.headers);
        let mut targets = vec![(parts.uri.path().to_string(), parts.uri.query().map(str::to_string))];
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            let Some(v) = resp.get(name).and_then(|v| v.to_str().ok()) else { continue };
            let Ok(uri) = v.parse::<http::Uri>() else { continue };
            let same_host = match uri.host() {
                None => true,
                Some(h) => {
                    own_host.as_deref() == Some(h.to_ascii_lowercase().as_str())
                        || h.eq_ignore_ascii_case(&dist.domain_name)
                }
            };
            if same_host && uri.path().starts_with('/') {
                targets.push((uri.path().to_string(), uri.query().map(str::to_string)));
            }
        }
        for (path, query) in targets {
            let behavior = dist.behavior_for(&path);
            let primary = key::primary(&dist.id, &path, query.as_deref(), &behavior.cache_key.query);
            self.cache.purge(&primary);
        }
    }
}

/// Field-level encryption of a POST body (docs/field-level-encryption.md):
/// the configuration picks a profile, the body is read up to the limit (never
/// further), the profile's fields are encrypted and the body goes on with its
/// new length. Requests the configuration refuses get the reason.
async fn encrypt_fields(fle: &FleConfig, parts: &mut Parts, body: Incoming) -> Result<RequestBody, Served> {
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let profile = match fle.select(parts.uri.query(), content_type) {
        Selection::Forward => return Ok(RequestBody::Viewer(body)),
        Selection::Refuse(status, why) => return Err(refused_unread(status, &why, parts.version)),
        Selection::Encrypt(p) => p,
    };
    let too_large = || {
        let why = format!(
            "the request body is larger than {} MB, the most field-level encryption reads",
            fle_form::MAX_BODY_BYTES >> 20
        );
        refused_unread(StatusCode::PAYLOAD_TOO_LARGE, &why, parts.version)
    };
    // A declared length over the limit is refused before any byte is read.
    if http_body::Body::size_hint(&body).lower() > fle_form::MAX_BODY_BYTES as u64 {
        return Err(too_large());
    }
    let bytes = match Limited::new(body, fle_form::MAX_BODY_BYTES).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(too_large()),
        Err(_) => return Err(error(StatusCode::BAD_REQUEST, "the request body is malformed or incomplete")),
    };
    let body = match fle_form::encrypt_form(&bytes, profile) {
        Ok(Some(encrypted)) => Bytes::from(encrypted),
        Ok(None) => bytes,
        Err(e @ FormError::Internal(_)) => {
            tracing::error!(profile = %profile.id, "{e}");
            return Err(error(StatusCode::INTERNAL_SERVER_ERROR, "field-level encryption failed"));
        }
        Err(e) => return Err(error(StatusCode::BAD_REQUEST, &e.to_string())),
    };
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(body.len()));
    Ok(RequestBody::Full(Some(body)))
}

/// A refusal sent before the body was read: on HTTP/1 the connection closes
/// (its unread body is never taken for the next request).
fn refused_unread(status: StatusCode, why: &str, version: Version) -> Served {
    let mut served = error(status, why);
    if version < Version::HTTP_2 {
        served.response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    }
    served
}

/// How the origin client reports a failure of the request body it was
/// sending (hyper's text for its `User(Body)` error).
const VIEWER_BODY_FAILED: &str = "error from user's Body stream";

fn is_unsafe(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}
