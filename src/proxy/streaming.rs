//! Streaming rules on the cache path: manifest TTLs from what manifests say,
//! LL-HLS blocking playlist reloads held at the edge, and segment prefetch.

use super::respond::error;
use super::{Ctx, Edge, EdgeResult, Served, Viewer};
use crate::cache::body::StoredBody;
use crate::cache::inflight::{self, Join, Lead, Outcome};
use crate::cache::key::{self, CacheKey};
use crate::cache::object::{Head, Object, Staleness};
use crate::cache::policy;
use crate::cache::Lookup;
use crate::media::policy::{strip_directives, Directives, Manifest};
use crate::media::{hls, MediaKind};
use crate::routing::Route;
use bytes::BytesMut;
use http::request::Parts;
use http::{Method, Request, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest blocking reload when the playlist's target duration is unknown.
const DEFAULT_BLOCKING_LIMIT: Duration = Duration::from_secs(18);
/// A playlist body larger than this is not a playlist.
const MAX_PLAYLIST_BYTES: usize = 4 << 20;

impl Edge {
    /// Once a manifest's body is whole: its TTL from what it says (when the
    /// origin gave none), then prefetch of the segments it lists.
    pub(super) fn settle_manifest(self: &Arc<Self>, obj: &Arc<Object>, ctx: &Ctx, uri: &http::Uri) {
        let Some(manifest) = obj.manifest() else { return };
        let route = &ctx.route;
        let behavior = route.behavior();
        let head = obj.head();
        if head.freshness.heuristic && behavior.streaming.media_ttls {
            let ttl = manifest
                .default_ttl(&behavior.streaming)
                .clamp(behavior.min_ttl, behavior.max_ttl.max(behavior.min_ttl));
            if ttl != head.freshness.ttl {
                let mut next: Head = (**head).clone();
                next.freshness.ttl = ttl;
                obj.refresh(next);
            }
        }
        if behavior.streaming.prefetch_segments > 0 {
            if let Some(m) = manifest.media_playlist() {
                self.prefetch(m, behavior.streaming.prefetch_segments, route, uri, ctx.viewer.tls);
            }
        }
    }

    /// Fetches up to `n` listed segments that are not cached yet (the newest
    /// for live, the first for VOD) and the preload-hinted part, through the
    /// cache, so viewers asking for them collapse onto these fills.
    /// `viewer_tls`: the protocol of the viewer whose request brought the
    /// playlist, which `match-viewer` origins follow for the prefetches too.
    fn prefetch(self: &Arc<Self>, m: &hls::Media, n: usize, route: &Route, playlist: &http::Uri, viewer_tls: bool) {
        let mut wanted: Vec<&str> = if m.is_live() {
            m.segments.iter().rev().take(n).map(|s| s.uri.as_str()).collect()
        } else {
            m.segments.iter().take(n).map(|s| s.uri.as_str()).collect()
        };
        wanted.extend(
            m.ll.preload_hints
                .iter()
                .filter(|h| h.kind == "PART" && h.byterange_start.is_none())
                .map(|h| h.uri.as_str()),
        );
        for reference in wanted {
            let Some(target) = resolve(playlist, reference) else { continue };
            let Ok(uri) = target.parse::<http::Uri>() else { continue };
            let behavior = route.dist.config.behavior_for(uri.path());
            let k = key::build(
                &route.dist.config.id,
                uri.path(),
                uri.query(),
                &http::HeaderMap::new(),
                &behavior.cache_key,
            );
            if !matches!(self.cache.lookup(&k, &http::HeaderMap::new()), Lookup::Miss) {
                continue;
            }
            let Some(route) = self.route_for_prefetch(route, uri.path()) else { continue };
            let edge = self.clone();
            let permits = self.prefetch_permits.clone();
            // Boxed: a prefetch runs the cache path, which may prefetch again.
            let task: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
                let Ok(_permit) = permits.acquire_owned().await else { return };
                let mut req = Request::new(());
                *req.method_mut() = Method::GET;
                *req.uri_mut() = uri;
                let (parts, ()) = req.into_parts();
                let viewer = Viewer { addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)), tls: viewer_tls };
                // The fill is the cache's: dropping the response leaves it running.
                let served = edge.cached_parts(parts, route, viewer).await;
                drop(served);
            });
            tokio::spawn(task);
        }
    }

    fn route_for_prefetch(&self, route: &Route, path: &str) -> Option<Route> {
        // Same distribution; the behavior for the segment's own path.
        let routes = self.routes.load();
        let host = route.dist.config.domain_name.clone();
        routes.route(&host, path).filter(|r| Arc::ptr_eq(&r.dist, &route.dist))
    }

    /// A request with `_HLS_msn` (and maybe `_HLS_part`): answered at once by a
    /// stored playlist that already holds that segment or part, else held
    /// until one exists, sharing one origin request per (playlist, msn, part),
    /// and ended with 503 after three target durations.
    pub(super) async fn blocking_reload(
        self: &Arc<Self>,
        parts: Parts,
        ctx: Ctx,
        key: CacheKey,
        d: Directives,
    ) -> Served {
        let behavior = ctx.route.behavior();
        let base_query = strip_directives(parts.uri.query());
        let base_key = key::build(
            &ctx.route.dist.config.id,
            parts.uri.path(),
            base_query.as_deref(),
            &parts.headers,
            &behavior.cache_key,
        );
        let base = match self.cache.lookup(&base_key, &parts.headers) {
            Lookup::Found(o) => Some(o),
            _ => None,
        };
        let base_manifest = base.as_ref().and_then(|o| o.manifest());
        let limit = base_manifest.as_ref().and_then(|m| m.blocking_limit()).unwrap_or(DEFAULT_BLOCKING_LIMIT);
        if let (Some(obj), Some(m), Some(msn)) = (&base, base_manifest.as_ref().and_then(|m| m.media_playlist()), d.msn)
        {
            if msn > m.next_msn().saturating_add(2) {
                return error(StatusCode::BAD_REQUEST, "_HLS_msn is more than two segments past the playlist");
            }
            if !d.skip && m.contains(msn, d.part) {
                return self.serve(&parts, &ctx, obj.clone(), EdgeResult::BlockingReloadHit).await;
            }
        }
        let deadline = Instant::now() + limit;
        for _ in 0..4 {
            if let Lookup::Found(o) = self.cache.lookup(&key, &parts.headers) {
                if o.head().staleness(Instant::now()) == Staleness::Fresh {
                    return self.serve(&parts, &ctx, o, EdgeResult::BlockingReloadHit).await;
                }
            }
            let collapse_key = self.cache.collapse_key(&key, &parts.headers);
            match self.cache.join(&collapse_key) {
                Join::Lead(lead) => return self.lead_blocking(lead, key, base_key, parts, ctx, d, deadline).await,
                Join::Wait(rx) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match inflight::wait(rx, left).await {
                        Ok(Some(Outcome::Stored { object, .. })) => {
                            return self.serve(&parts, &ctx, object, EdgeResult::BlockingReloadCollapsed).await
                        }
                        Ok(Some(Outcome::Failed { status, reason })) => return error(status, &reason),
                        Ok(Some(Outcome::Pass)) => {
                            return self.pass_parts(parts, &ctx, EdgeResult::BlockingReloadPass).await
                        }
                        Ok(None) => continue,
                        Err(inflight::Elapsed) => return blocking_timeout(),
                    }
                }
            }
        }
        blocking_timeout()
    }

    /// Asks the origin (with the directives: an LL-HLS origin blocks itself);
    /// an answer that does not hold the segment or part yet is asked again
    /// after half a part target, until the deadline.
    #[allow(clippy::too_many_arguments)]
    async fn lead_blocking(
        self: &Arc<Self>,
        lead: Lead,
        key: CacheKey,
        base_key: CacheKey,
        parts: Parts,
        ctx: Ctx,
        d: Directives,
        deadline: Instant,
    ) -> Served {
        let behavior = ctx.route.behavior();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                lead.publish(Outcome::Failed {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    reason: "blocking reload timed out".into(),
                });
                return blocking_timeout();
            }
            let request = self.fill_request(&parts, &ctx, None);
            let epoch = self.cache.epoch();
            let response = match tokio::time::timeout(left, ctx.route.origin().send(request)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    lead.publish(Outcome::Failed { status: e.status(), reason: e.to_string().into() });
                    return error(e.status(), &e.to_string());
                }
                Err(_) => continue,
            };
            if !response.status.is_success() {
                lead.publish(Outcome::Pass);
                return super::respond::from_origin(response, EdgeResult::Pass, parts.method == Method::HEAD);
            }
            let crate::origin::OriginResponse { status, headers, mut body, request_time, response_time } = response;
            let mut bytes = BytesMut::new();
            let read = tokio::time::timeout(left, async {
                while let Some(chunk) = body.chunk().await {
                    let chunk = chunk?;
                    if bytes.len() + chunk.len() > MAX_PLAYLIST_BYTES {
                        return Err(crate::origin::OriginError::Protocol("playlist too large".into()));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(())
            })
            .await;
            match read {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    lead.publish(Outcome::Failed { status: e.status(), reason: e.to_string().into() });
                    return error(e.status(), &e.to_string());
                }
                Err(_) => continue,
            }
            let bytes = bytes.freeze();
            let parsed = Manifest::parse(MediaKind::HlsPlaylist, &bytes);
            let media = parsed.as_ref().ok().and_then(|m| m.media_playlist());
            // A playlist that does not parse is passed on untouched, not held.
            let satisfied = media.is_none_or(|m| d.msn.is_none_or(|msn| m.contains(msn, d.part)));
            if !satisfied {
                let gap = media
                    .and_then(|m| m.ll.part_target.or(Some(m.target_duration / 4.0)))
                    .map_or(Duration::from_millis(200), |s| Duration::from_secs_f64((s / 2.0).clamp(0.05, 2.0)));
                tokio::time::sleep(gap.min(deadline.saturating_duration_since(Instant::now()))).await;
                continue;
            }
            let decision = policy::storability(
                status,
                &headers,
                behavior,
                &self.cache.config,
                policy::Media::at_headers(MediaKind::HlsPlaylist, &behavior.streaming),
                request_time,
                response_time,
            );
            let freshness = match decision {
                Ok(f) => f,
                Err(_) => {
                    lead.publish(Outcome::Pass);
                    let mut resp = http::Response::new(crate::http::body::EdgeBody::full(bytes));
                    *resp.status_mut() = status;
                    *resp.headers_mut() = headers;
                    crate::http::strip_hop_by_hop(resp.headers_mut());
                    resp.headers_mut().remove(http::header::CONTENT_LENGTH);
                    return Served::new(resp, EdgeResult::Pass);
                }
            };
            let object = self.admit(
                status,
                headers,
                response_time,
                freshness,
                MediaKind::HlsPlaylist,
                StoredBody::complete(bytes),
                &parts,
                &ctx,
            );
            self.cache.insert(&key, object.clone(), epoch);
            if !d.skip {
                // The newest full playlist: regular pollers get it too.
                self.cache.insert(&base_key, object.clone(), epoch);
            }
            self.settle_manifest(&object, &ctx, &parts.uri);
            lead.publish(Outcome::Stored { object: object.clone(), refreshed: false });
            return self.serve(&parts, &ctx, object, EdgeResult::BlockingReload).await;
        }
    }
}

fn blocking_timeout() -> Served {
    error(StatusCode::SERVICE_UNAVAILABLE, "the requested segment or part did not appear within three target durations")
}

/// Resolves a playlist reference against the playlist's path. Only references
/// on the same host: relative ones and absolute paths.
fn resolve(playlist: &http::Uri, reference: &str) -> Option<String> {
    if reference.contains("://") || reference.starts_with("//") {
        return None;
    }
    if reference.starts_with('/') {
        return Some(reference.to_string());
    }
    let dir = playlist.path().rsplit_once('/').map_or("", |(d, _)| d);
    let (ref_path, query) = match reference.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (reference, None),
    };
    let mut segments: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    for part in ref_path.split('/') {
        match part {
            "." | "" => {}
            ".." => {
                segments.pop()?;
            }
            p => segments.push(p),
        }
    }
    let mut out = format!("/{}", segments.join("/"));
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_references() {
        let p: http::Uri = "/live/v1/index.m3u8?t=1".parse().unwrap();
        assert_eq!(resolve(&p, "seg1.ts").as_deref(), Some("/live/v1/seg1.ts"));
        assert_eq!(resolve(&p, "../v2/seg1.ts?x=2").as_deref(), Some("/live/v2/seg1.ts?x=2"));
        assert_eq!(resolve(&p, "/abs/seg.ts").as_deref(), Some("/abs/seg.ts"));
        assert_eq!(resolve(&p, "https://other/seg.ts"), None);
        assert_eq!(resolve(&p, "../../../x.ts"), None);
    }
}
