//! Streaming rules on the cache path: manifest TTLs from what manifests say,
//! LL-HLS blocking playlist reloads held at the edge, and segment prefetch.

use super::respond::error;
use super::{Ctx, Edge, EdgeResult, Served, Viewer};
use crate::cache::body::StoredBody;
use crate::cache::inflight::{self, Join, Lead, Outcome};
use crate::cache::key::{self, CacheKey};
use crate::cache::object::{Head, Object, Staleness};
use crate::cache::policy;
use crate::cache::{Epoch, Lookup};
use crate::media::policy::{strip_directives, Directives, Manifest};
use crate::media::{hls, MediaKind};
use crate::routing::Route;
use bytes::BytesMut;
use http::request::Parts;
use http::{header, Method, Request, StatusCode};
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
        self.register_live(ctx, uri, &manifest);
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
            let Some(target) = crate::media::live::resolve(playlist.path(), reference) else { continue };
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
        let mut base = match self.cache.lookup(&base_key, &parts.headers) {
            Lookup::Found(o) => Some(o),
            _ => None,
        };
        let limit =
            base.as_ref().and_then(|o| o.manifest()).and_then(|m| m.blocking_limit()).unwrap_or(DEFAULT_BLOCKING_LIMIT);
        if let (Some(msn), Some(stored)) = (d.msn, base.clone()) {
            // "More than two segments past the playlist" is judged against a
            // fresh playlist: a stored one that is behind the request (stale,
            // or not refreshed since the viewer last saw a newer one) is
            // refreshed first, with one origin request for every waiter.
            if too_far_ahead(&stored, msn) {
                match Box::pin(self.refreshed_playlist(&parts, &ctx, &base_key, stored)).await {
                    Some(fresh) if too_far_ahead(&fresh, msn) => {
                        return error(StatusCode::BAD_REQUEST, "_HLS_msn is more than two segments past the playlist")
                    }
                    Some(fresh) => base = Some(fresh),
                    // No fresh playlist to judge by: the origin judges.
                    None => base = None,
                }
            }
        }
        if let (Some(obj), Some(msn)) = (&base, d.msn) {
            let holds = obj.manifest().is_some_and(|m| m.media_playlist().is_some_and(|m| m.contains(msn, d.part)));
            if !d.skip && holds {
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
                Join::Lead(lead) => {
                    // The origin request belongs to the cache: a viewer that
                    // leaves does not take it away from the others waiting.
                    let edge = self.clone();
                    let task =
                        tokio::spawn(
                            async move { edge.lead_blocking(lead, key, base_key, parts, ctx, d, deadline).await },
                        );
                    return match task.await {
                        Ok(served) => served,
                        Err(e) => error(StatusCode::BAD_GATEWAY, &format!("blocking reload task failed: {e}")),
                    };
                }
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
                        Ok(Some(Outcome::LookAgain) | None) => continue,
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
                self.offer_plain(&base_key, &parts.headers, &object, epoch);
            }
            self.settle_manifest(&object, &ctx, &parts.uri);
            lead.publish(Outcome::Stored { object: object.clone(), refreshed: false });
            return self.serve(&parts, &ctx, object, EdgeResult::BlockingReload).await;
        }
    }
}

impl Edge {
    /// The plain playlist refreshed from the origin (collapsed with every
    /// other request refreshing it) and whole, or `None` when the origin's
    /// answer is not a playlist to judge by.
    async fn refreshed_playlist(
        self: &Arc<Self>,
        parts: &Parts,
        ctx: &Ctx,
        base_key: &CacheKey,
        stored: Arc<Object>,
    ) -> Option<Arc<Object>> {
        let plain = || -> Option<Parts> {
            let mut p = super::fill::fill_parts(parts);
            let target = match strip_directives(parts.uri.query()) {
                Some(q) => format!("{}?{q}", parts.uri.path()),
                None => parts.uri.path().to_string(),
            };
            p.uri = target.parse().ok()?;
            Some(p)
        };
        for _ in 0..4 {
            let collapse_key = self.cache.collapse_key(base_key, &parts.headers);
            let object = match self.cache.join(&collapse_key) {
                Join::Lead(lead) => {
                    let ctx = Ctx { route: ctx.route.clone(), viewer: ctx.viewer };
                    let served = self.lead_detached(lead, base_key.clone(), plain()?, ctx, Some(stored.clone())).await;
                    drop(served);
                    match self.cache.lookup(base_key, &parts.headers) {
                        Lookup::Found(o) => o,
                        _ => return None,
                    }
                }
                Join::Wait(rx) => match inflight::wait(rx, self.cache.config.lock_timeout).await {
                    Ok(Some(Outcome::Stored { object, .. })) => object,
                    Ok(None) => continue,
                    _ => return None,
                },
            };
            if policy::is_error(object.head().status) || object.body.wait_complete().await.is_err() {
                return None;
            }
            return Some(object);
        }
        None
    }

    /// A blocking reload's answer offered as the plain playlist: it replaces
    /// the stored plain copy only when it is newer (a later segment or more
    /// parts), and keeps that copy's caching: the freshness and the
    /// `Cache-Control`/`Expires` the origin gives the plain URL, never the
    /// longer ones of the unique blocking-reload URL.
    fn offer_plain(&self, base_key: &CacheKey, req: &http::HeaderMap, answer: &Arc<Object>, epoch: Epoch) {
        let Lookup::Found(plain) = self.cache.lookup(base_key, req) else { return };
        let (Some(new), Some(old)) = (answer.manifest(), plain.manifest()) else { return };
        let (Some(new), Some(old)) = (new.media_playlist(), old.media_playlist()) else { return };
        if position(new) <= position(old) {
            return;
        }
        let (old_head, new_head) = (plain.head(), answer.head());
        let mut headers = new_head.headers.clone();
        for name in [header::CACHE_CONTROL, header::EXPIRES, policy::CDN_CACHE_CONTROL.clone()] {
            headers.remove(&name);
            for v in old_head.headers.get_all(&name) {
                headers.append(name.clone(), v.clone());
            }
        }
        let freshness = policy::Freshness { initial_age: new_head.freshness.initial_age, ..old_head.freshness };
        let copy = Object::new(
            Head::new(new_head.status, headers, freshness),
            answer.body.clone(),
            answer.vary.clone(),
            answer.compressible,
            answer.media,
        );
        self.cache.insert(base_key, copy, epoch);
    }
}

/// Where a media playlist has got to: the segment being produced and its parts.
fn position(m: &hls::Media) -> (u64, u64) {
    (m.next_msn(), m.ll.pending_parts.len() as u64)
}

/// Whether `msn` is more than two segments past a stored media playlist.
fn too_far_ahead(obj: &Object, msn: u64) -> bool {
    obj.manifest().is_some_and(|m| m.media_playlist().is_some_and(|m| msn > m.next_msn().saturating_add(2)))
}

fn blocking_timeout() -> Served {
    error(StatusCode::SERVICE_UNAVAILABLE, "the requested segment or part did not appear within three target durations")
}
