//! Custom error pages (CloudFront's custom error responses with a
//! `ResponsePagePath`): an error answer whose status the distribution names
//! is replaced by a page, fetched through the distribution itself — routed,
//! cached and collapsed like any request, so it may live on another origin —
//! and sent with the configured status (404 → 200 for single-page apps).
//!
//! The page request is the edge's own: a GET (a HEAD for a HEAD) of the page
//! path on the viewer's host, with the viewer's `Accept-Encoding` and nothing
//! else of the viewer's. A page that cannot be had (an error of its own, a
//! page under a behavior that needs a signature, a path no behavior of the
//! distribution serves) leaves the plain error answer in place: an error page
//! never makes an error worse, and never loops.

use super::{Edge, Now, Served, Viewer, X_CACHE};
use crate::config::ErrorResponses;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode};
use std::sync::Arc;

/// What an error page needs from the viewer's request. Made only for a
/// distribution that configures a page, so other requests carry nothing.
pub(super) struct PageRequest {
    pub pages: Arc<ErrorResponses>,
    pub host: String,
    pub head: bool,
    pub accept_encoding: Option<HeaderValue>,
}

impl PageRequest {
    /// Whether this answer is to be replaced by a page.
    pub fn wants(&self, served: &Served) -> bool {
        self.pages.page_for(served.response.status()).is_some()
    }
}

impl Edge {
    /// The configured page for an error answer, or the answer itself when
    /// there is none or the page cannot be had. The answer keeps its own
    /// result (`X-Cache`, the log and the metrics say what happened to the
    /// viewer's request) and gets the page's head and body.
    pub(super) async fn with_error_page(self: &Arc<Self>, served: Served, req: &PageRequest, viewer: Viewer) -> Served {
        let Some((path, status)) = req.pages.page_for(served.response.status()) else {
            return served;
        };
        let Some(page) = self.fetch_page(path, req, viewer).await else {
            tracing::debug!(path, "custom error page not available; answering the plain error");
            return served;
        };
        let Served { mut response, head_bytes, .. } = page;
        *response.status_mut() = status;
        let head_bytes = head_bytes.map(|_| {
            // A complete head (a hit's) says how the page was had: it now
            // says how the viewer's request was answered.
            response.headers_mut().insert(X_CACHE.clone(), served.result.x_cache_header());
            let reason = status.canonical_reason().map_or(0, str::len);
            crate::http::head_size(reason + 4, response.headers())
        });
        Served { response, result: served.result, range: None, head_bytes, policy_done: false }
    }

    /// The page, through the cache path of the behavior that serves `path`;
    /// `None` unless the answer is a 200.
    async fn fetch_page(self: &Arc<Self>, path: &str, req: &PageRequest, viewer: Viewer) -> Option<Served> {
        let route = self.routes.load().route(&req.host, path)?;
        if !route.behavior().trusted_key_groups.is_empty() {
            // The viewer's signature names the URL it asked for, not the page.
            return None;
        }
        let method = if req.head { Method::HEAD } else { Method::GET };
        let mut builder = Request::builder().method(method).uri(path).header(header::HOST, req.host.as_str());
        if let Some(ae) = &req.accept_encoding {
            builder = builder.header(header::ACCEPT_ENCODING, ae.clone());
        }
        let (parts, ()) = builder.body(()).ok()?.into_parts();
        let served = match self.cached_now(parts, route, viewer, None, std::time::Instant::now()) {
            Now::Served(s) => s,
            Now::Later(later) => later.await,
        };
        (served.response.status() == StatusCode::OK).then_some(served)
    }
}
