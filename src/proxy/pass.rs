//! Passing requests straight to the origin: other methods, authorized requests,
//! hit-for-pass and waiters released from a fill. Bodies stream both ways.

use super::respond::{error, from_origin};
use super::{Ctx, Edge, EdgeResult, Served, Viewer};
use crate::cache::key;
use crate::origin::RequestBody;
use crate::routing::Route;
use http::header;
use http::request::Parts;
use http::{Method, Request};
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
        let (parts, body) = req.into_parts();
        let ctx = Ctx { route: route.clone(), viewer };
        // A request that has no body says so: an origin group may then send
        // it to its next member too.
        let body = if http_body::Body::is_end_stream(&body) { RequestBody::Empty } else { RequestBody::Viewer(body) };
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

/// How the origin client reports a failure of the request body it was
/// sending (hyper's text for its `User(Body)` error).
const VIEWER_BODY_FAILED: &str = "error from user's Body stream";

fn is_unsafe(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}
