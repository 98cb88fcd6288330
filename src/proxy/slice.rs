//! Large objects in fixed-size slices (a behavior's `slice_size`), as nginx's
//! slice module and CloudFront do for big files.
//!
//! Slice `i` holds bytes `i * size ..= (i + 1) * size - 1` of the object. Each
//! slice is its own cache entry (the object's key plus the slice), filled with
//! `Range: bytes=a-b` and collapsed like any fill; the origin's 206 is what is
//! stored. The first slice tells the object's length (its `Content-Range`) and
//! validators. A viewer's request, a range or the whole object, is answered by
//! streaming the slices it touches, in order, one at a time, so a seek costs
//! only the slices it reads.
//!
//! Two versions are never stitched together: a slice whose validators or
//! length differ from the first slice's belongs to another version, and both
//! are dropped. Before the response head goes out the request starts again
//! (the first slice it touches is fetched before the head); after, the
//! response is cut. An origin that ignores `Range` (answers 200) gets
//! hit-for-pass: its answer streams to the viewer and nothing is held.

use super::respond::{self, error, with};
use super::{Ctx, Edge, Served};
use crate::cache::body::StoredBody;
use crate::cache::inflight::{self, Join, Lead, Outcome};
use crate::cache::key::CacheKey;
use crate::cache::object::{Object, Staleness};
use crate::cache::{policy, Lookup};
use crate::http::body::{BoxError, EdgeBody};
use crate::http::conditional::{self, Precondition};
use crate::http::range::{self, ByteRange, Multipart, Resolved};
use crate::media::{self, MediaKind};
use crate::origin::OriginResponse;
use crate::outcome::EdgeResult;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode};
use std::sync::Arc;
use std::time::Instant;

/// Times a request starts again after meeting two versions of an object.
const ATTEMPTS: usize = 3;
/// Rounds of the lookup/collapse loop for one slice.
const ROUNDS: usize = 4;
/// Chunks a slice producer may have sent ahead of the viewer (each a slice of
/// a stored body: no copies).
const AHEAD: usize = 2;

/// What the first slice says about the whole object.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    total: u64,
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
}

impl Version {
    fn of(headers: &HeaderMap) -> Option<Version> {
        let (_, total) = range::parse_content_range(headers.get(header::CONTENT_RANGE)?.as_bytes())?;
        Some(Version {
            total,
            etag: headers.get(header::ETAG).cloned(),
            last_modified: headers.get(header::LAST_MODIFIED).cloned(),
        })
    }
}

/// One slice, as the cache path found or filled it.
enum Got {
    Slice(Arc<Object>, EdgeResult),
    /// The origin answered the first slice's request with something else than
    /// a slice (a 200 that ignores `Range`, an error): this is the answer.
    Answer(Box<OriginResponse>),
    /// Not sliceable after all: the viewer's own request goes to the origin.
    Pass,
    Failed(StatusCode, String),
    /// The slice belongs to another version of the object than expected.
    Changed,
}

/// The slices of one object.
#[derive(Clone)]
struct Slicer {
    size: u64,
    key: CacheKey,
}

impl Slicer {
    /// Slice `i`'s key: the object's primary key (so invalidations of the
    /// object's path cover it), then the slice size and index.
    fn key(&self, i: u64) -> CacheKey {
        CacheKey {
            primary: format!("{}\u{1d}slice {} {i}", self.key.primary, self.size),
            secondary: self.key.secondary.clone(),
        }
    }

    /// The first byte of slice `i`.
    fn start(&self, i: u64) -> u64 {
        i.saturating_mul(self.size)
    }
}

/// A piece of a sliced response body: framing the edge writes, or object bytes.
enum Piece {
    Frame(Bytes),
    Bytes(ByteRange),
}

impl Edge {
    /// The slice size for this request, if its behavior slices and the object
    /// is not a manifest (manifests are small and change: always whole).
    pub(super) fn slice_size(&self, parts: &Parts, ctx: &Ctx) -> Option<u64> {
        let size = ctx.route.behavior().slice_size?;
        if matches!(media::classify(parts.uri.path(), None), MediaKind::HlsPlaylist | MediaKind::DashMpd) {
            return None;
        }
        Some(size.min(self.cache.max_object_bytes()).max(1))
    }

    /// Answers a GET or HEAD from the object's slices.
    pub(super) async fn sliced(self: &Arc<Self>, parts: Parts, ctx: Ctx, key: CacheKey, size: u64) -> Served {
        if matches!(self.cache.lookup(&key, &parts.headers), Lookup::Pass) {
            return self.pass_parts(parts, &ctx, EdgeResult::HitForPass).await;
        }
        let slicer = Slicer { size, key };
        let is_head = parts.method == Method::HEAD;
        for _ in 0..ATTEMPTS {
            let (first, mut result) = match self.slice(&parts, &ctx, &slicer, 0, None).await {
                Got::Slice(o, r) => (o, r),
                Got::Answer(resp) => return respond::from_origin(*resp, EdgeResult::Pass, is_head),
                Got::Pass => return self.pass_parts(parts, &ctx, EdgeResult::Pass).await,
                Got::Failed(status, why) => return error(status, &why),
                Got::Changed => continue,
            };
            let head = first.head();
            let Some(version) = Version::of(&head.headers) else {
                return error(StatusCode::BAD_GATEWAY, "the origin's slice has no complete length");
            };
            let mut headers = head.headers.clone();
            headers.remove(header::CONTENT_RANGE);
            headers.insert(header::AGE, HeaderValue::from(head.age(Instant::now()).as_secs()));
            match conditional::evaluate(&parts.headers, head.etag.as_ref(), head.last_modified) {
                Precondition::NotModified => return Served::new(respond::not_modified(&headers), result),
                Precondition::Failed => {
                    return Served {
                        result,
                        ..respond::error(StatusCode::PRECONDITION_FAILED, "a precondition failed")
                    }
                }
                Precondition::Proceed => {}
            }
            headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            let total = version.total;
            let asked = parts.headers.get(header::RANGE).and_then(|v| range::parse(v.as_bytes())).filter(|_| {
                conditional::if_range_holds(&parts.headers, head.etag.as_ref(), head.last_modified, head.date)
            });
            drop(head);
            let (status, pieces, logged) = match asked.map(|specs| range::resolve(&specs, total)) {
                None => (StatusCode::OK, vec![Piece::Bytes(ByteRange { start: 0, end: total })], None),
                Some(Resolved::Unsatisfiable) => return respond::unsatisfiable(total, is_head, result),
                Some(Resolved::Ranges(ranges)) if ranges.len() == 1 => {
                    let r = ranges[0];
                    if let Ok(v) = HeaderValue::from_str(&range::content_range(r, Some(total))) {
                        headers.insert(header::CONTENT_RANGE, v);
                    }
                    (StatusCode::PARTIAL_CONTENT, vec![Piece::Bytes(r)], Some((r.start, r.end - 1)))
                }
                Some(Resolved::Ranges(ranges)) => {
                    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
                    let frame = Multipart::new(&ranges, total, ct);
                    if let Ok(v) = HeaderValue::from_str(&format!("multipart/byteranges; boundary={}", frame.boundary))
                    {
                        headers.insert(header::CONTENT_TYPE, v);
                    }
                    let mut pieces = Vec::with_capacity(ranges.len() * 2 + 1);
                    for (h, r) in frame.heads.into_iter().zip(&ranges) {
                        pieces.push(Piece::Frame(h));
                        pieces.push(Piece::Bytes(*r));
                    }
                    pieces.push(Piece::Frame(frame.tail));
                    (StatusCode::PARTIAL_CONTENT, pieces, None)
                }
            };
            let len: u64 = pieces
                .iter()
                .map(|p| match p {
                    Piece::Frame(b) => b.len() as u64,
                    Piece::Bytes(r) => r.len(),
                })
                .sum();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            let mut known = vec![(0, first)];
            // The first slice the answer reads is fetched before the head goes
            // out: a seek that meets another version starts again cleanly.
            let first_byte = pieces.iter().find_map(|p| match p {
                Piece::Bytes(r) if !r.is_empty() => Some(r.start),
                _ => None,
            });
            if let Some(i) = first_byte.map(|b| b / size).filter(|&i| i > 0 && !is_head) {
                match self.slice(&parts, &ctx, &slicer, i, Some(&version)).await {
                    Got::Slice(o, r) => {
                        result = r;
                        known.push((i, o));
                    }
                    Got::Changed => {
                        self.drop_slice(&slicer, 0, &known[0].1);
                        continue;
                    }
                    Got::Answer(_) | Got::Pass => return self.pass_parts(parts, &ctx, EdgeResult::Pass).await,
                    Got::Failed(status, why) => return error(status, &why),
                }
            }
            let body = if is_head {
                EdgeBody::empty()
            } else {
                let (tx, rx) = tokio::sync::mpsc::channel(AHEAD);
                let job = Producer {
                    edge: self.clone(),
                    parts: super::fill::fill_parts(&parts),
                    ctx,
                    slicer,
                    version,
                    known,
                };
                tokio::spawn(job.run(pieces, tx));
                EdgeBody::channel(rx)
            };
            let mut served = Served::new(with(status, headers, body), result);
            served.range = logged;
            return served;
        }
        error(StatusCode::BAD_GATEWAY, "the object kept changing while its slices were read")
    }

    /// Slice `i`, from the cache or filled from the origin (collapsed with
    /// other requests for it). `expect`: the version the first slice holds.
    async fn slice(
        self: &Arc<Self>,
        parts: &Parts,
        ctx: &Ctx,
        slicer: &Slicer,
        i: u64,
        expect: Option<&Version>,
    ) -> Got {
        let key = slicer.key(i);
        let mut stale = None;
        for _ in 0..ROUNDS {
            if let Lookup::Found(obj) = self.cache.lookup(&key, &parts.headers) {
                // A stale slice is revalidated (a 304 keeps its bytes); a
                // stored slice of another version is dropped and fetched
                // again: only a fresh answer of the origin proves that the
                // object changed.
                if obj.head().staleness(Instant::now()) == Staleness::Fresh {
                    match self.checked(&key, obj, EdgeResult::Hit, expect) {
                        Got::Changed => {}
                        got => return got,
                    }
                } else {
                    stale = Some(obj);
                }
            }
            if respond::only_if_cached(&parts.headers) {
                return Got::Failed(StatusCode::GATEWAY_TIMEOUT, "only-if-cached, and the slice is not stored".into());
            }
            let collapse_key = self.cache.collapse_key(&key, &parts.headers);
            match self.cache.join(&collapse_key) {
                Join::Lead(lead) => {
                    // Filled and published between this request's lookup and
                    // its join: the stored slice answers, not a second fetch.
                    if let Lookup::Found(obj) = self.cache.lookup(&key, &parts.headers) {
                        if obj.head().staleness(Instant::now()) == Staleness::Fresh {
                            lead.publish(Outcome::Stored { object: obj.clone(), refreshed: false });
                            return self.checked(&key, obj, EdgeResult::Hit, expect);
                        }
                    }
                    // The fill belongs to the cache, not to this viewer: it
                    // runs in a task of its own, so a viewer who leaves
                    // neither stops it nor makes a waiter start it again.
                    let edge = self.clone();
                    let (key, parts) = (key.clone(), super::fill::fill_parts(parts));
                    let ctx = Ctx { route: ctx.route.clone(), viewer: ctx.viewer };
                    let (slicer, expect, stale) = (slicer.clone(), expect.cloned(), stale.take());
                    let fill = tokio::spawn(async move {
                        edge.fill_slice(Some(lead), &key, &parts, &ctx, &slicer, i, expect.as_ref(), stale).await
                    });
                    return fill.await.unwrap_or_else(|e| {
                        Got::Failed(StatusCode::BAD_GATEWAY, format!("slice {i}'s fill ended: {e}"))
                    });
                }
                Join::Wait(rx) => match inflight::wait(rx, self.cache.config.lock_timeout).await {
                    Ok(Some(Outcome::Stored { object, .. })) => {
                        return self.checked(&key, object, EdgeResult::Miss, expect)
                    }
                    Ok(Some(Outcome::Pass)) => return Got::Pass,
                    Ok(Some(Outcome::Failed { status, reason })) => return Got::Failed(status, reason.to_string()),
                    Ok(Some(Outcome::LookAgain) | None) => continue,
                    Err(inflight::Elapsed) => break,
                },
            }
        }
        self.fill_slice(None, &key, parts, ctx, slicer, i, expect, None).await
    }

    /// A stored slice, if it belongs to the expected version (else it is dropped).
    fn checked(&self, key: &CacheKey, obj: Arc<Object>, result: EdgeResult, expect: Option<&Version>) -> Got {
        match expect {
            Some(v) if Version::of(&obj.head().headers).as_ref() != Some(v) => {
                self.cache.remove_object(key, &obj);
                Got::Changed
            }
            _ => Got::Slice(obj, result),
        }
    }

    /// Drops a slice from the cache (its version no longer holds).
    fn drop_slice(&self, slicer: &Slicer, i: u64, obj: &Arc<Object>) {
        self.cache.remove_object(&slicer.key(i), obj);
    }

    /// Fills slice `i` from the origin with a `Range` request, conditional
    /// on the `stale` copy's validators when there is one. Without a `lead`
    /// (the collapsing wait timed out) the slice is fetched all the same.
    #[allow(clippy::too_many_arguments)]
    async fn fill_slice(
        self: &Arc<Self>,
        lead: Option<Lead>,
        key: &CacheKey,
        parts: &Parts,
        ctx: &Ctx,
        slicer: &Slicer,
        i: u64,
        expect: Option<&Version>,
        stale: Option<Arc<Object>>,
    ) -> Got {
        let publish = |lead: Option<Lead>, outcome: Outcome| {
            if let Some(l) = lead {
                l.publish(outcome);
            }
        };
        let first = slicer.start(i);
        let mut last = first.saturating_add(slicer.size - 1);
        if let Some(v) = expect {
            last = last.min(v.total.saturating_sub(1));
        }
        let mut request = self.fill_request(parts, ctx, None);
        for name in [header::IF_RANGE, header::IF_MATCH, header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE] {
            request.headers.remove(name);
        }
        if let Some(obj) = &stale {
            let head = obj.head();
            if let Some(etag) = &head.etag {
                request.headers.insert(header::IF_NONE_MATCH, etag.clone());
            }
            if let Some(lm) = head.headers.get(header::LAST_MODIFIED) {
                request.headers.insert(header::IF_MODIFIED_SINCE, lm.clone());
            }
        }
        // Byte offsets must be those of the identity representation.
        request.headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        if let Ok(v) = HeaderValue::from_str(&format!("bytes={first}-{last}")) {
            request.headers.insert(header::RANGE, v);
        }
        let epoch = self.cache.epoch();
        let response = match ctx.route.origin().send(request).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(origin = %ctx.route.origin().config.id, path = parts.uri.path(), "slice {i}: {e}");
                let (status, reason) = (e.status(), e.to_string());
                publish(lead, Outcome::Failed { status, reason: reason.as_str().into() });
                return Got::Failed(status, reason);
            }
        };
        if response.status == StatusCode::NOT_MODIFIED {
            if let Some(obj) = stale {
                return self.slice_refreshed(lead, key, ctx, obj, response, expect);
            }
        }
        if response.status != StatusCode::PARTIAL_CONTENT {
            if response.status == StatusCode::OK {
                // The origin ignores ranges: the object is not sliced, and its
                // answers stream to each viewer (hit-for-pass).
                self.cache.insert_pass(&slicer.key);
            }
            publish(lead, Outcome::Pass);
            return if i == 0 { Got::Answer(Box::new(response)) } else { Got::Pass };
        }
        let version = Version::of(&response.headers);
        let asked = |r: &ByteRange, total: u64| r.start == first && r.end == last.saturating_add(1).min(total);
        let fits = response
            .headers
            .get(header::CONTENT_RANGE)
            .and_then(|v| range::parse_content_range(v.as_bytes()))
            .filter(|(r, total)| asked(r, *total));
        let Some((got, _)) = fits else {
            let reason = format!("the origin answered another range than slice {i}'s bytes={first}-{last}");
            publish(lead, Outcome::Failed { status: StatusCode::BAD_GATEWAY, reason: reason.as_str().into() });
            return Got::Failed(StatusCode::BAD_GATEWAY, reason);
        };
        if expect.is_some_and(|v| version.as_ref() != Some(v)) {
            // Another version: nothing is stored, and waiters (dropped lead)
            // look again and find the same.
            return Got::Changed;
        }
        let behavior = ctx.route.behavior();
        let content_type = response.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let kind = media::classify(parts.uri.path(), content_type);
        let encoded = response
            .headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        // A slice is a part of a 200 response: it is as storable as the 200.
        let decision = policy::storability(
            StatusCode::OK,
            &response.headers,
            behavior,
            &self.cache.config,
            policy::Media::at_headers(kind, &behavior.streaming),
            response.request_time,
            response.response_time,
        );
        let freshness = match decision {
            Ok(f) if !encoded => f,
            _ => {
                self.cache.insert_pass(&slicer.key);
                publish(lead, Outcome::Pass);
                return Got::Pass;
            }
        };
        let OriginResponse { headers, body, response_time, .. } = response;
        let (stored, writer) = StoredBody::filling(Some(got.len()));
        let status = StatusCode::PARTIAL_CONTENT;
        let object = self.admit(status, headers, response_time, freshness, kind, stored, parts, ctx);
        self.cache.insert(key, object.clone(), epoch);
        let uri = parts.uri.clone();
        tokio::spawn(super::fill::pump(
            self.clone(),
            key.clone(),
            Some(object.clone()),
            body,
            writer,
            Some(got.len()),
            Ctx { route: ctx.route.clone(), viewer: ctx.viewer },
            uri,
        ));
        publish(lead, Outcome::Stored { object: object.clone(), refreshed: false });
        Got::Slice(object, EdgeResult::Miss)
    }
}

impl Edge {
    /// A 304 for a stale slice: its stored fields are updated and its bytes
    /// kept (RFC 9111 §4.3.4), judged storable as a 200 of the object would be.
    fn slice_refreshed(
        &self,
        lead: Option<Lead>,
        key: &CacheKey,
        ctx: &Ctx,
        obj: Arc<Object>,
        response: OriginResponse,
        expect: Option<&Version>,
    ) -> Got {
        let behavior = ctx.route.behavior();
        let old = obj.head();
        let headers = super::fill::merged_304(&old.headers, response.headers, response.response_time);
        drop(old);
        let decision = policy::storability(
            StatusCode::OK,
            &headers,
            behavior,
            &self.cache.config,
            policy::Media::at_headers(obj.media, &behavior.streaming),
            response.request_time,
            response.response_time,
        );
        match decision {
            Ok(freshness) => {
                obj.refresh(crate::cache::object::Head::new(StatusCode::PARTIAL_CONTENT, headers, freshness));
                self.cache.refreshed(key, &obj);
                if let Some(l) = lead {
                    l.publish(Outcome::Stored { object: obj.clone(), refreshed: true });
                }
                self.checked(key, obj, EdgeResult::RefreshHit, expect)
            }
            Err(_) => {
                // The origin now forbids storing it: the object is not sliced.
                self.cache.remove_object(key, &obj);
                if let Some(l) = lead {
                    l.publish(Outcome::Pass);
                }
                Got::Pass
            }
        }
    }
}

/// Streams a sliced response's pieces to the viewer, fetching each slice as
/// it is reached. It stops when the viewer leaves (the channel closes).
struct Producer {
    edge: Arc<Edge>,
    parts: Parts,
    ctx: Ctx,
    slicer: Slicer,
    version: Version,
    /// Slices already at hand, by index.
    known: Vec<(u64, Arc<Object>)>,
}

type Tx = tokio::sync::mpsc::Sender<Result<Bytes, BoxError>>;

impl Producer {
    async fn run(mut self, pieces: Vec<Piece>, tx: Tx) {
        for piece in pieces {
            let sent = match piece {
                Piece::Frame(b) => tx.send(Ok(b)).await.is_ok(),
                Piece::Bytes(r) => self.send_range(r, &tx).await,
            };
            if !sent {
                return;
            }
        }
    }

    /// Sends bytes `r` of the object. `false`: stop (the viewer left, or the
    /// response was cut).
    async fn send_range(&mut self, r: ByteRange, tx: &Tx) -> bool {
        let size = self.slicer.size;
        let mut pos = r.start;
        while pos < r.end {
            let i = pos / size;
            let obj = match self.known.iter().position(|(j, _)| *j == i) {
                Some(k) => self.known.swap_remove(k).1,
                None => match self.edge.slice(&self.parts, &self.ctx, &self.slicer, i, Some(&self.version)).await {
                    Got::Slice(o, _) => o,
                    Got::Changed => {
                        // The first slice's version no longer holds either.
                        let first = self.slicer.key(0);
                        self.edge.cache.purge(&first.primary);
                        return cut(tx, "the object changed while it was sent").await;
                    }
                    Got::Failed(_, why) => return cut(tx, &why).await,
                    Got::Answer(_) | Got::Pass => return cut(tx, "the origin stopped honouring ranges").await,
                },
            };
            let base = self.slicer.start(i);
            let stop = r.end.min(base.saturating_add(size)) - base;
            let mut at = pos - base;
            while at < stop {
                match std::future::poll_fn(|cx| obj.body.poll_read(at, Some(stop), cx)).await {
                    Ok(Some(b)) => {
                        at += b.len() as u64;
                        if tx.send(Ok(b)).await.is_err() {
                            return false;
                        }
                    }
                    Ok(None) => return cut(tx, "a slice ended before its range").await,
                    Err(e) => return cut(tx, &e.to_string()).await,
                }
            }
            pos = base + stop;
        }
        true
    }
}

/// Ends the viewer's response with an error: the connection is cut, so the
/// viewer never takes a short body for a whole one.
async fn cut(tx: &Tx, why: &str) -> bool {
    tracing::warn!("sliced response cut: {why}");
    let _ = tx.send(Err(why.to_string().into())).await;
    false
}
