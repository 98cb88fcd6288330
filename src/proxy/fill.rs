//! The cache path: look up, collapse, fill from the origin, store.

use super::respond::{self, error};
use super::{Ctx, Edge, EdgeResult, Now, Served, Viewer};
use crate::cache::body::{BodyWriter, Room, StoredBody};
use crate::cache::disk::Oversize;
use crate::cache::inflight::{self, Join, Lead, Outcome};
use crate::cache::key::{self, CacheKey};
use crate::cache::object::{Head, Object, Staleness, VaryKey};
use crate::cache::policy::{self, NoStore};
use crate::cache::Lookup;
use crate::media::policy::Directives;
use crate::media::{self, MediaKind};
use crate::origin::{OriginBody, OriginError, OriginResponse};
use crate::routing::Route;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Request, StatusCode};
use std::sync::Arc;
use std::time::Instant;

/// Attempts at the lookup/collapse loop before going to the origin alone.
const MAX_ROUNDS: usize = 4;

impl Edge {
    /// The cache path without an await: a fresh (or stale-while-revalidate)
    /// stored answer is made here and now, so a hit never builds, boxes or
    /// moves the future of a fill. Anything else goes on as a boxed future.
    pub(super) fn cached_now(
        self: &Arc<Self>,
        mut parts: Parts,
        route: Route,
        viewer: Viewer,
        interim: Option<crate::server::interim::Sink>,
        now: Instant,
    ) -> Now {
        let ctx = Ctx { route, viewer };
        let simple = self.slice_size(&parts, &ctx).is_none()
            && !(ctx.route.behavior().streaming.blocking_reload
                && parts.uri.query().is_some()
                && media::classify(parts.uri.path(), None) == MediaKind::HlsPlaylist
                && !matches!(Directives::from_query(parts.uri.query()), Ok(None)));
        if simple {
            let key = key::build(
                &ctx.route.dist.config.id,
                parts.uri.path(),
                parts.uri.query(),
                &parts.headers,
                &ctx.route.behavior().cache_key,
            );
            if let Lookup::Found(obj) = self.cache.lookup(&key, &parts.headers) {
                let result = match obj.head().staleness(now) {
                    Staleness::Fresh => Some(EdgeResult::Hit),
                    Staleness::StaleWhileRevalidate => {
                        self.revalidate_in_background(&key, &parts, &ctx, obj.clone());
                        Some(EdgeResult::StaleHit)
                    }
                    Staleness::Stale => None,
                };
                if let Some(result) = result {
                    return match self.serve_now(
                        &parts,
                        &obj,
                        result,
                        now,
                        ctx.route.behavior().response_headers.as_ref(),
                    ) {
                        respond::Next::Done(served) => Now::Served(served),
                        next => {
                            if let Some(sink) = interim {
                                parts.extensions.insert(sink);
                            }
                            let edge = self.clone();
                            Now::Later(Box::pin(async move { edge.serve_rest(next, &parts, &ctx, &obj, result).await }))
                        }
                    };
                }
            }
        }
        if let Some(sink) = interim {
            parts.extensions.insert(sink);
        }
        let edge = self.clone();
        Now::Later(Box::pin(async move { edge.cached_parts(parts, ctx.route, viewer).await }))
    }

    /// The cache path for a request head (a viewer's, or the edge's own prefetch).
    pub(super) async fn cached_parts(self: &Arc<Self>, parts: Parts, route: Route, viewer: Viewer) -> Served {
        let key = key::build(
            &route.dist.config.id,
            parts.uri.path(),
            parts.uri.query(),
            &parts.headers,
            &route.behavior().cache_key,
        );
        let ctx = Ctx { route, viewer };
        if let Some(size) = self.slice_size(&parts, &ctx) {
            return self.sliced(parts, ctx, key, size).await;
        }
        if ctx.route.behavior().streaming.blocking_reload
            && media::classify(parts.uri.path(), None) == MediaKind::HlsPlaylist
        {
            match Directives::from_query(parts.uri.query()) {
                Err(why) => return error(StatusCode::BAD_REQUEST, why),
                Ok(Some(d)) if d.blocks() => return Box::pin(self.blocking_reload(parts, ctx, key, d)).await,
                Ok(_) => {}
            }
        }
        // The hit path stays inline; the rest (fills, passes, waits, blocking
        // reloads) is boxed so that the future of every request, which is moved
        // at each await level, stays small.
        let mut stale: Option<Arc<Object>> = None;
        for _ in 0..MAX_ROUNDS {
            match self.cache.lookup(&key, &parts.headers) {
                Lookup::Found(obj) => {
                    let state = obj.head().staleness(Instant::now());
                    match state {
                        Staleness::Fresh => return self.serve(&parts, &ctx, obj, EdgeResult::Hit).await,
                        Staleness::StaleWhileRevalidate => {
                            self.revalidate_in_background(&key, &parts, &ctx, obj.clone());
                            return self.serve(&parts, &ctx, obj, EdgeResult::StaleHit).await;
                        }
                        Staleness::Stale => stale = Some(obj),
                    }
                }
                Lookup::Pass | Lookup::Miss if respond::only_if_cached(&parts.headers) => return respond::not_stored(),
                Lookup::Pass => return Box::pin(self.pass_parts(parts, &ctx, EdgeResult::HitForPass)).await,
                Lookup::Miss => {}
            }
            if respond::only_if_cached(&parts.headers) {
                return respond::not_stored();
            }
            if stale.is_none() {
                // A DASH segment asked for before it exists: held until it
                // does (then every viewer held shares one fill), or 404.
                match self.live_wait(&parts, &ctx) {
                    super::live::Wait::Now => {}
                    super::live::Wait::Hold(d) => Box::pin(tokio::time::sleep(d)).await,
                    super::live::Wait::TooEarly(d) => return super::live::too_early(d),
                }
            }
            let collapse_key = self.cache.collapse_key(&key, &parts.headers);
            match self.cache.join(&collapse_key) {
                Join::Lead(lead) => {
                    // Another fill of the key may have been published and
                    // left the collapsing map between the lookup above and
                    // this join: then it is served, not fetched again.
                    if stale.is_none() {
                        if let Lookup::Found(obj) = self.cache.lookup(&key, &parts.headers) {
                            if matches!(obj.head().staleness(Instant::now()), Staleness::Fresh) {
                                lead.publish(Outcome::Stored { object: obj.clone(), refreshed: false });
                                return self.serve(&parts, &ctx, obj, EdgeResult::Hit).await;
                            }
                        }
                    }
                    return Box::pin(self.lead_detached(lead, key, parts, ctx, stale)).await;
                }
                // A manifest may be served stale for at most one refresh while
                // that refresh is under way: a burst never waits on the origin.
                Join::Wait(_) if stale.as_ref().is_some_and(|o| within_one_refresh(o)) => {
                    let obj = stale.take().unwrap_or_else(|| unreachable!("checked above"));
                    return self.serve(&parts, &ctx, obj, EdgeResult::StaleWhileRefresh).await;
                }
                Join::Wait(rx) => match Box::pin(inflight::wait(rx, self.cache.config.lock_timeout)).await {
                    Ok(Some(Outcome::Stored { object, refreshed })) => {
                        if object.vary.as_ref().is_some_and(|v| !v.matches(&parts.headers)) {
                            continue;
                        }
                        let result = if refreshed {
                            EdgeResult::CollapsedRefreshHit
                        } else if policy::is_error(object.head().status) {
                            EdgeResult::OriginError
                        } else {
                            EdgeResult::CollapsedMiss
                        };
                        return self.serve(&parts, &ctx, object, result).await;
                    }
                    Ok(Some(Outcome::Pass)) => {
                        return Box::pin(self.pass_parts(parts, &ctx, EdgeResult::CollapsedPass)).await
                    }
                    Ok(Some(Outcome::Failed { status, reason })) => {
                        if let Some(obj) = stale.filter(|o| o.head().usable_on_error(Instant::now())) {
                            return self.serve(&parts, &ctx, obj, EdgeResult::StaleIfError).await;
                        }
                        return error(status, &reason);
                    }
                    // The leader went away before an answer, or its object
                    // is found through the cache: look again.
                    Ok(Some(Outcome::LookAgain) | None) => continue,
                    // The fill stalled: go on alone, without storing.
                    Err(inflight::Elapsed) => {
                        return Box::pin(self.pass_parts(parts, &ctx, EdgeResult::LockTimeout)).await
                    }
                },
            }
        }
        Box::pin(self.pass_parts(parts, &ctx, EdgeResult::Pass)).await
    }

    /// Starts one background revalidation of a stale object, unless one runs.
    fn revalidate_in_background(self: &Arc<Self>, key: &CacheKey, parts: &Parts, ctx: &Ctx, obj: Arc<Object>) {
        let collapse_key = self.cache.collapse_key(key, &parts.headers);
        if let Join::Lead(lead) = self.cache.join(&collapse_key) {
            let edge = self.clone();
            let key = key.clone();
            let bg_parts = fill_parts(parts);
            let ctx = Ctx { route: ctx.route.clone(), viewer: ctx.viewer };
            tokio::spawn(async move {
                let served = edge.lead(lead, key, bg_parts, ctx, Some(obj)).await;
                drop(served);
            });
        }
    }

    /// Leads a fill in a task of its own, the viewer awaiting its outcome: the
    /// origin request belongs to the cache, not to the viewer whose request
    /// started it, so that viewer leaving while the origin holds its answer
    /// (an LL-HLS part not produced yet) neither drops the request nor sends
    /// the viewers collapsed on it to open a new one. A fill nobody waits for
    /// any more still ends: the origin's read timeout bounds its head and each
    /// read of its body, and the object limit its size.
    pub(super) async fn lead_detached(
        self: &Arc<Self>,
        lead: Lead,
        key: CacheKey,
        parts: Parts,
        ctx: Ctx,
        stale: Option<Arc<Object>>,
    ) -> Served {
        let edge = self.clone();
        let task = tokio::spawn(async move { edge.lead(lead, key, parts, ctx, stale).await });
        match task.await {
            Ok(served) => served,
            Err(e) => error(StatusCode::BAD_GATEWAY, &format!("fill task failed: {e}")),
        }
    }

    /// The leader's side of a miss: one origin request, whose outcome every
    /// waiter shares.
    async fn lead(
        self: &Arc<Self>,
        lead: Lead,
        key: CacheKey,
        parts: Parts,
        ctx: Ctx,
        stale: Option<Arc<Object>>,
    ) -> Served {
        let mut request = self.fill_request(&parts, &ctx, stale.as_ref());
        // Nothing stored: the viewer's own validators may go along (RFC 9111
        // §4.3.2), and a 304 answers this viewer alone.
        let conditional = stale.is_none() && super::forward::viewer_validators(&parts.headers, &mut request.headers);
        // A HEAD on a stale copy is revalidated with a HEAD (§4.3.5).
        let head_only = stale.is_some() && parts.method == Method::HEAD;
        if head_only {
            request.method = Method::HEAD;
        }
        let epoch = self.cache.epoch();
        let now = Instant::now;
        let response = match ctx.route.origin().send(request).await {
            Ok(r) => r,
            Err(e) => return self.origin_failed(lead, &key, &parts, &ctx, stale, epoch, &e).await,
        };
        if response.status == StatusCode::NOT_MODIFIED {
            if let Some(obj) = stale {
                return self.refreshed(lead, &key, &parts, &ctx, obj, response).await;
            }
            if conditional {
                // Never stored; the waiters, if any, look again and fill.
                drop(lead);
                return respond::from_origin(response, EdgeResult::Miss, parts.method == Method::HEAD);
            }
        }
        if response.status.is_server_error() {
            if let Some(obj) = stale.as_ref().filter(|o| o.head().usable_on_error(now())) {
                lead.publish(Outcome::Failed { status: response.status, reason: "origin error".into() });
                return self.serve(&parts, &ctx, obj.clone(), EdgeResult::StaleIfError).await;
            }
        }
        if head_only {
            return self.head_revalidated(lead, &key, &parts, &ctx, stale, response).await;
        }
        let behavior = ctx.route.behavior();
        let content_type = response.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let kind = media::classify(parts.uri.path(), content_type);
        let mut media = policy::Media::at_headers(kind, &behavior.streaming);
        if policy::is_error(response.status) {
            media.live = self.live_duration(&parts, &ctx);
        }
        let mut decision = policy::storability(
            response.status,
            &response.headers,
            behavior,
            &self.cache.config,
            media,
            response.request_time,
            response.response_time,
        );
        let announced = content_length(&response.headers);
        let oversize = decision.is_ok() && announced.is_some_and(|l| l > self.cache.max_object_bytes());
        if oversize && !self.to_disk(&parts, announced) {
            decision = Err(NoStore::Forbidden("too large"));
        }
        let freshness = match decision {
            Ok(f) => f,
            Err(reason) => {
                if matches!(reason, NoStore::Forbidden(_)) {
                    self.cache.insert_pass(&key);
                }
                lead.publish(Outcome::Pass);
                if reason == NoStore::Forbidden("too large") && parts.headers.contains_key(header::RANGE) {
                    // The whole object would not be stored: drop this response
                    // (closing its connection) and ask for the viewer's range.
                    drop(response);
                    return self.pass_parts(parts, &ctx, EdgeResult::Pass).await;
                }
                return respond::from_origin(response, EdgeResult::Pass, parts.method == Method::HEAD);
            }
        };
        let OriginResponse { status, mut headers, body, response_time, request_time: _ } = response;
        let cookies = policy::take_set_cookie(&mut headers, behavior);
        let (stored, mut writer) = StoredBody::filling(announced);
        // An error page is no manifest or segment, whatever its path says.
        let stored_kind = if policy::is_error(status) { MediaKind::Other } else { kind };
        let object = self.admit(status, headers, response_time, freshness, stored_kind, stored, &parts, &ctx);
        let fill_ctx = Ctx { route: ctx.route.clone(), viewer: ctx.viewer };
        let mut served = if oversize {
            // Announced too large for memory: never kept there. Whether it
            // streams to disk is settled before anyone reads the body, which
            // passes through from its first byte.
            let how = self.cache.oversize(&key, &object);
            writer.start_passing();
            if how == Oversize::No {
                self.cache.insert_pass(&key);
            }
            // Passed through to this viewer alone: its first byte is held
            // until this viewer's answer has a reader of its own.
            let first = (how != Oversize::Streaming).then(|| object.body.reader(0));
            tokio::spawn(pump(self.clone(), key.clone(), None, body, writer, announced, fill_ctx, parts.uri.clone()));
            if how == Oversize::Streaming {
                // Its readers read the record as it is written, from its
                // first byte: the waiters and this viewer find it on disk.
                lead.publish(Outcome::LookAgain);
                match self.cache.lookup(&key, &parts.headers) {
                    Lookup::Found(obj) => self.serve(&parts, &ctx, obj, EdgeResult::Miss).await,
                    // The stream failed at once: this viewer goes on alone.
                    _ => return self.pass_parts(parts, &ctx, EdgeResult::Pass).await,
                }
            } else {
                // The waiters go to the origin on their own.
                lead.publish(Outcome::Pass);
                let served = self.serve(&parts, &ctx, object, EdgeResult::Pass).await;
                drop(first);
                served
            }
        } else {
            self.keep(&key, &object, epoch);
            // The fill belongs to the cache: it runs on even if this viewer leaves.
            tokio::spawn(pump(
                self.clone(),
                key,
                Some(object.clone()),
                body,
                writer,
                announced,
                fill_ctx,
                parts.uri.clone(),
            ));
            lead.publish(Outcome::Stored { object: object.clone(), refreshed: false });
            let result = if policy::is_error(status) { EdgeResult::OriginError } else { EdgeResult::Miss };
            self.serve(&parts, &ctx, object, result).await
        };
        // `set_cookie = "strip"`: only this viewer's answer carries the cookie.
        for v in cookies {
            served.append(header::SET_COOKIE, v);
        }
        served
    }

    /// Makes the stored object for a cacheable origin response head.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn admit(
        &self,
        status: StatusCode,
        mut headers: HeaderMap,
        response_time: std::time::SystemTime,
        freshness: policy::Freshness,
        kind: MediaKind,
        body: Arc<StoredBody>,
        parts: &Parts,
        ctx: &Ctx,
    ) -> Arc<Object> {
        let behavior = ctx.route.behavior();
        if !headers.contains_key(header::DATE) {
            // RFC 9110 §6.6.1: a cache adds the Date the origin left out.
            if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(response_time)) {
                headers.insert(header::DATE, v);
            }
        }
        let encoded =
            headers.get(header::CONTENT_ENCODING).is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if encoded && !crate::http::list_contains(&headers, &header::VARY, "accept-encoding") {
            // An encoded body chosen by our Accept-Encoding must never reach a
            // viewer that did not accept it, whatever the origin forgot to say.
            headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        let vary = VaryKey::from_response(&headers, &parts.headers);
        crate::http::strip_hop_by_hop(&mut headers);
        // Whoever fills (a viewer's miss, a prefetch), a stripped cookie is never stored.
        policy::take_set_cookie(&mut headers, behavior);
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::AGE);
        let compressible = behavior.compress
            && !headers.contains_key(header::CONTENT_ENCODING)
            && headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(crate::compress::is_compressible_type);
        Object::new(Head::new(status, headers, freshness), body, vary, compressible, kind)
    }

    /// A 304 for a stale object: its stored headers are updated (RFC 9111 §4.3.4).
    async fn refreshed(
        &self,
        lead: Lead,
        key: &CacheKey,
        parts: &Parts,
        ctx: &Ctx,
        obj: Arc<Object>,
        resp: OriginResponse,
    ) -> Served {
        let old = obj.head();
        let mut headers = merged_304(&old.headers, resp.headers, resp.response_time);
        let behavior = ctx.route.behavior();
        let cookies = policy::take_set_cookie(&mut headers, behavior);
        let default_ttl = if behavior.streaming.media_ttls {
            obj.manifest().map(|m| m.default_ttl(&behavior.streaming)).or_else(|| {
                media::policy::default_at_headers(obj.media, &behavior.streaming).filter(|_| !obj.is_manifest())
            })
        } else {
            None
        };
        match policy::storability(
            old.status,
            &headers,
            behavior,
            &self.cache.config,
            policy::Media { kind: obj.media, default_ttl, live: None },
            resp.request_time,
            resp.response_time,
        ) {
            Ok(freshness) => {
                obj.refresh(Head::new(old.status, headers, freshness));
                drop(old);
                self.cache.refreshed(key, &obj);
                lead.publish(Outcome::Stored { object: obj.clone(), refreshed: true });
            }
            Err(_) => {
                // The origin now forbids storing it: this answer stands, once.
                drop(old);
                self.cache.remove_object(key, &obj);
                lead.publish(Outcome::Pass);
            }
        }
        let mut served = self.serve(parts, ctx, obj, EdgeResult::RefreshHit).await;
        for v in cookies {
            served.append(header::SET_COOKIE, v);
        }
        served
    }

    /// The origin's answer to a HEAD that revalidates a stale copy. A 200 whose
    /// validators and length agree with the copy updates its head as a 304
    /// would (RFC 9111 §4.3.5); one that disagrees means the stored body is
    /// outdated, so the copy is dropped. Any other answer goes to this viewer
    /// alone. A HEAD response is never stored as the object.
    async fn head_revalidated(
        &self,
        lead: Lead,
        key: &CacheKey,
        parts: &Parts,
        ctx: &Ctx,
        stale: Option<Arc<Object>>,
        response: OriginResponse,
    ) -> Served {
        let Some(obj) = stale else {
            return respond::from_origin(response, EdgeResult::Miss, true);
        };
        if response.status == StatusCode::OK {
            if same_representation(&obj, &response.headers) {
                return self.refreshed(lead, key, parts, ctx, obj, response).await;
            }
            self.cache.remove_object(key, &obj);
        }
        // The waiters look again (and fill with a GET).
        drop(lead);
        respond::from_origin(response, EdgeResult::Miss, true)
    }

    /// Stores a cacheable answer, unless it is an error to be shared with the
    /// requests collapsed on it only (an error-caching TTL of 0).
    fn keep(&self, key: &CacheKey, object: &Arc<Object>, epoch: crate::cache::Epoch) {
        let head = object.head();
        if policy::is_error(head.status) && head.freshness.ttl.is_zero() {
            return;
        }
        drop(head);
        self.cache.insert(key, object.clone(), epoch);
    }

    /// The origin could not be reached or broke off: a stale copy under
    /// `stale-if-error` answers, else the edge's own 502/504, which the
    /// requests collapsed on this one share and which is kept for the error
    /// TTL of its status, as an error answer from the origin would be.
    #[allow(clippy::too_many_arguments)]
    async fn origin_failed(
        &self,
        lead: Lead,
        key: &CacheKey,
        parts: &Parts,
        ctx: &Ctx,
        stale: Option<Arc<Object>>,
        epoch: crate::cache::Epoch,
        e: &OriginError,
    ) -> Served {
        let (status, reason) = (e.status(), e.to_string());
        tracing::warn!(origin = %ctx.route.origin().config.id, path = parts.uri.path(), "{reason}");
        if let Some(obj) = stale.filter(|o| o.head().usable_on_error(Instant::now())) {
            lead.publish(Outcome::Failed { status, reason: reason.into() });
            return self.serve(parts, ctx, obj, EdgeResult::StaleIfError).await;
        }
        let kind = media::classify(parts.uri.path(), None);
        let media = policy::Media { kind, default_ttl: None, live: self.live_duration(parts, ctx) };
        let ttl =
            policy::error_ttl(status, policy::ErrorSource::Edge, media, None, ctx.route.behavior(), &self.cache.config);
        let object = edge_error(status, &reason, ttl);
        self.keep(key, &object, epoch);
        lead.publish(Outcome::Stored { object: object.clone(), refreshed: false });
        self.serve(parts, ctx, object, EdgeResult::OriginError).await
    }
}

impl Edge {
    /// Whether a response too large for memory may be streamed to the disk
    /// tier (`pump`): a disk is configured, the object is within
    /// `max_object_size`, and the viewer's range (if any) starts within what
    /// memory would hold (a viewer seeking far into a file it does not have
    /// is sent its range on its own rather than made to wait for the fill).
    fn to_disk(&self, parts: &Parts, announced: Option<u64>) -> bool {
        if !announced.is_some_and(|len| self.cache.may_stream(len)) {
            return false;
        }
        let Some(range) = parts.headers.get(header::RANGE) else { return true };
        match crate::http::range::parse(range.as_bytes()).as_deref() {
            Some([crate::http::range::Spec::From(first) | crate::http::range::Spec::Closed(first, _)]) => {
                *first < self.cache.max_object_bytes()
            }
            _ => false,
        }
    }
}

/// The edge's own error answer as a stored object, kept for `ttl`: the same
/// text a viewer gets for any error the edge makes (`respond::error`).
fn edge_error(status: StatusCode, reason: &str, ttl: std::time::Duration) -> Arc<Object> {
    let (mut headers, body) = respond::error_parts(status, reason);
    headers.remove(header::CONTENT_LENGTH);
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now())) {
        headers.insert(header::DATE, v);
    }
    let freshness = policy::Freshness {
        ttl,
        initial_age: std::time::Duration::ZERO,
        stale_while_revalidate: std::time::Duration::ZERO,
        stale_if_error: std::time::Duration::ZERO,
        must_revalidate: true,
        heuristic: true,
    };
    Object::new(Head::new(status, headers, freshness), StoredBody::complete(body), None, false, MediaKind::Other)
}

/// A stale manifest no older than one refresh past its lifetime.
fn within_one_refresh(obj: &Object) -> bool {
    let head = obj.head();
    let f = &head.freshness;
    obj.is_manifest() && !f.must_revalidate && !f.ttl.is_zero() && head.age(Instant::now()) < f.ttl * 2
}

/// Whether a HEAD response describes the stored copy: each validator and the
/// length it sends equal the stored ones (RFC 9111 §4.3.5).
fn same_representation(obj: &Object, fresh: &HeaderMap) -> bool {
    let head = obj.head();
    let same = |name: header::HeaderName| match (fresh.get(&name), head.headers.get(&name)) {
        (Some(new), Some(old)) => new == old,
        (Some(_), None) => false,
        (None, _) => true,
    };
    let length = content_length(fresh).is_none_or(|n| obj.body.total_len().is_none_or(|stored| stored == n));
    same(header::ETAG) && same(header::LAST_MODIFIED) && length
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Moves the origin body into the stored body. A failure, a short body or a
/// body longer than announced fails every reader and stores nothing.
///
/// A body that grows past the largest storable size is dropped from the
/// memory cache and becomes a pass-through: it streams to the readers already
/// on it at the pace of the slowest (within `PASS_WINDOW`), releases what they
/// have all read, and stops, closing the origin connection, when nobody can
/// read it. With a disk tier that takes it, the disk is one of those readers:
/// the body is streamed to disk to its end, and viewers arriving meanwhile
/// read it there as it is written. Otherwise viewers arriving after that are
/// sent to the origin on their own (hit-for-pass), each with its own request
/// and range, nothing held.
#[allow(clippy::too_many_arguments)]
pub(super) async fn pump(
    edge: Arc<Edge>,
    key: CacheKey,
    mut stored: Option<Arc<Object>>,
    mut body: OriginBody,
    mut writer: BodyWriter,
    announced: Option<u64>,
    ctx: Ctx,
    uri: http::Uri,
) {
    // `stored`: held while the object is stored; dropped when it turns
    // pass-through, so that the body's holders are its readers alone (None:
    // announced too large for memory, passing through from the start).
    let limit = edge.cache.max_object_bytes();
    loop {
        if writer.room().await == Room::Nobody {
            tracing::debug!(key = %key.primary.replace('\u{1f}', " "), "pass-through fill stopped: no viewer left");
            writer.finish();
            return;
        }
        match body.chunk().await {
            Some(Ok(chunk)) => {
                writer.push(chunk);
                if writer.len() > limit {
                    pass_oversize(&edge, &key, &mut stored, &mut writer);
                }
            }
            Some(Err(e)) => {
                fail(&edge, &key, stored.as_ref(), writer, &e);
                return;
            }
            None => {
                if let Some(expected) = announced.filter(|&n| n != writer.len()) {
                    let e = OriginError::Protocol(format!(
                        "body has {} bytes, Content-Length said {expected}",
                        writer.len()
                    ));
                    fail(&edge, &key, stored.as_ref(), writer, &e);
                    return;
                }
                writer.finish();
                if let Some(object) = stored {
                    edge.cache.fill_finished(&key, &object);
                    if object.is_manifest() {
                        edge.settle_manifest(&object, &ctx, &uri);
                    }
                }
                return;
            }
        }
    }
}

/// The fill is too large for memory: the object leaves memory and its body
/// turns pass-through. It is streamed to disk if the disk tier takes it
/// (readable there as it is written); else later viewers pass, unless a later
/// fill may be taken (second-hit admission).
fn pass_oversize(edge: &Edge, key: &CacheKey, stored: &mut Option<Arc<Object>>, writer: &mut BodyWriter) {
    if let Some(object) = stored.take() {
        match edge.cache.oversize(key, &object) {
            Oversize::Streaming => edge.cache.leave_memory(key, &object),
            Oversize::Later => edge.cache.remove_object(key, &object),
            Oversize::No => {
                edge.cache.remove_object(key, &object);
                edge.cache.insert_pass(key);
            }
        }
        writer.start_passing();
    }
}

fn fail(edge: &Edge, key: &CacheKey, object: Option<&Arc<Object>>, writer: BodyWriter, e: &OriginError) {
    tracing::warn!(key = %key.primary.replace('\u{1f}', " "), "fill failed: {e}");
    if let Some(object) = object {
        edge.cache.remove_object(key, object);
    }
    writer.fail(&e.to_string());
}

/// The request head a fill the edge starts on its own is made from (a
/// background revalidation, a slice): the viewer's, as a GET, without its
/// range and conditionals (the edge sends its own).
pub(super) fn fill_parts(parts: &Parts) -> Parts {
    let mut req = Request::new(());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    for name in [
        header::RANGE,
        header::IF_RANGE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
    ] {
        req.headers_mut().remove(name);
    }
    req.into_parts().0
}

/// A stored response's fields updated by a 304 (RFC 9111 §4.3.4): each field
/// the 304 carries replaces the stored one, except those that describe the
/// stored body (length, coding, range) and `Age`.
pub(super) fn merged_304(stored: &HeaderMap, mut update: HeaderMap, response_time: std::time::SystemTime) -> HeaderMap {
    let mut headers = stored.clone();
    crate::http::strip_hop_by_hop(&mut update);
    for name in [header::CONTENT_LENGTH, header::CONTENT_ENCODING, header::CONTENT_RANGE, header::AGE] {
        update.remove(name);
    }
    if !update.contains_key(header::DATE) {
        // RFC 9110 §6.6.1: the 304 left out its Date, so the time it came
        // is the stored response's new Date; keeping the old one would age
        // the refreshed object past its lifetime at once.
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(response_time)) {
            update.insert(header::DATE, v);
        }
    }
    let mut last = None;
    for (name, value) in update {
        if let Some(n) = name {
            headers.remove(&n);
            last = Some(n);
        }
        if let Some(n) = &last {
            headers.append(n.clone(), value);
        }
    }
    headers
}
