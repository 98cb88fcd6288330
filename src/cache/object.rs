//! A stored response: its head (replaced whole when a 304 refreshes it), its
//! body, the request headers it varies on, and its compressed variants.

use super::body::StoredBody;
use super::policy::Freshness;
use crate::compress::Encoding;
use crate::media::policy::Manifest;
use crate::media::MediaKind;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone)]
pub struct Head {
    pub status: StatusCode,
    /// End-to-end headers as they go to viewers (no hop-by-hop, no `Age`).
    pub headers: HeaderMap,
    pub etag: Option<HeaderValue>,
    pub last_modified: Option<SystemTime>,
    pub date: Option<SystemTime>,
    pub freshness: Freshness,
    /// When the response (or the 304 that last refreshed it) arrived.
    pub stored_at: Instant,
    /// The response head of a plain hit, made at the first one (empty again
    /// in a clone, which is how a refreshed head starts).
    pub hit: HitSlot,
}

/// The response head of a plain hit on a stored head: status 200, the whole
/// body, no conditionals, no range, no compression. Made once; each hit
/// clones it and sets `Age` and `X-Cache` in place, so the map never grows.
#[derive(Debug)]
pub struct HitHead {
    pub headers: HeaderMap,
    /// The response headers policy whose static headers are in `headers`
    /// (a head made under another policy, before a reload, is not used).
    pub policy: Option<Arc<crate::config::ResponseHeadersPolicy>>,
    /// With a policy allowing listed origins: the head for a viewer whose
    /// `Origin` is allowed (its CORS headers in, `Access-Control-Allow-Origin`
    /// a placeholder for the viewer's origin), and its size less that origin.
    pub cors: Option<(HeaderMap, u64)>,
    /// The head's size on the wire, less the digits of `Age`.
    pub bytes: u64,
}

/// Holds a head's `HitHead` once made.
#[derive(Debug, Default)]
pub struct HitSlot(pub OnceLock<HitHead>);

impl Clone for HitSlot {
    /// A copy of a head is edited (a 304 refresh): its hit head is made anew.
    fn clone(&self) -> HitSlot {
        HitSlot::default()
    }
}

/// Where a stored response stands in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    Fresh,
    /// Stale, but `stale-while-revalidate` still allows serving it while one
    /// background revalidation runs.
    StaleWhileRevalidate,
    /// Stale: revalidate before use (it may still serve under `stale-if-error`).
    Stale,
}

impl Head {
    /// A head stored now, its validators read from `headers`.
    pub fn new(status: StatusCode, headers: HeaderMap, freshness: Freshness) -> Head {
        Head {
            status,
            etag: headers.get(header::ETAG).cloned(),
            last_modified: crate::http::date_header(&headers, &header::LAST_MODIFIED),
            date: crate::http::date_header(&headers, &header::DATE),
            headers,
            freshness,
            stored_at: Instant::now(),
            hit: HitSlot::default(),
        }
    }

    /// current_age of RFC 9111 §4.2.3.
    pub fn age(&self, now: Instant) -> Duration {
        self.freshness.initial_age + now.saturating_duration_since(self.stored_at)
    }

    pub fn staleness(&self, now: Instant) -> Staleness {
        let age = self.age(now);
        let f = &self.freshness;
        if age < f.ttl {
            Staleness::Fresh
        } else if !f.must_revalidate && age < f.ttl + f.stale_while_revalidate {
            Staleness::StaleWhileRevalidate
        } else {
            Staleness::Stale
        }
    }

    /// Whether `stale-if-error` lets this response stand in for an origin error.
    pub fn usable_on_error(&self, now: Instant) -> bool {
        let f = &self.freshness;
        !f.must_revalidate && self.age(now) < f.ttl + f.stale_if_error.max(f.stale_while_revalidate)
    }

    pub fn content_type(&self) -> Option<&str> {
        self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
    }
}

/// The request-header values a response was selected by (RFC 9111 §4.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VaryKey {
    pub names: Vec<HeaderName>,
    pub values: Vec<Option<String>>,
}

impl VaryKey {
    /// From the response's `Vary` and the request that produced it.
    pub fn from_response(resp: &HeaderMap, req: &HeaderMap) -> Option<VaryKey> {
        let mut names: Vec<HeaderName> = resp
            .get_all(header::VARY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        if names.is_empty() {
            return None;
        }
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        names.dedup();
        let values = names.iter().map(|n| normalized(req, n)).collect();
        Some(VaryKey { names, values })
    }

    pub fn matches(&self, req: &HeaderMap) -> bool {
        self.names.iter().zip(&self.values).all(|(n, v)| normalized(req, n) == *v)
    }

    /// The request's values for these names, as a key suffix.
    pub fn suffix_for(names: &[HeaderName], req: &HeaderMap) -> String {
        let mut s = String::new();
        for n in names {
            s.push('\u{1e}');
            if let Some(v) = normalized(req, n) {
                s.push_str(&v);
            }
        }
        s
    }
}

/// A request header's value for variant selection: all field lines joined as
/// one comma-separated list, white space folded and trimmed around each member,
/// empty members dropped (RFC 9111 §4.1 lets a cache normalise this way, so
/// `1,2`, ` 1, 2 ` and two lines `1` and `2` select the same variant);
/// `Accept-Encoding` reduced to the codings that matter, so `gzip, br` and
/// `br;q=1, gzip, deflate` select the same variant. Language tags are
/// case-insensitive (RFC 4647 §2), so `Accept-Language` is compared in lower
/// case (`eN, De` selects the variant of `en, de`).
fn normalized(req: &HeaderMap, name: &HeaderName) -> Option<String> {
    if name == header::ACCEPT_ENCODING {
        return Some(crate::compress::normalized_accept_encoding(req).to_string());
    }
    let mut out: Option<String> = None;
    for v in req.get_all(name) {
        let o = out.get_or_insert_with(String::new);
        for member in String::from_utf8_lossy(v.as_bytes()).split(',') {
            let mut words = member.split_whitespace().peekable();
            if words.peek().is_none() {
                continue;
            }
            if !o.is_empty() {
                o.push_str(", ");
            }
            for (i, w) in words.enumerate() {
                if i > 0 {
                    o.push(' ');
                }
                o.push_str(w);
            }
        }
    }
    if name == header::ACCEPT_LANGUAGE {
        if let Some(o) = out.as_mut() {
            o.make_ascii_lowercase();
        }
    }
    out
}

#[derive(Debug)]
pub struct Object {
    head: ArcSwap<Head>,
    pub body: Arc<StoredBody>,
    pub vary: Option<VaryKey>,
    /// Whether this behavior compresses this response's content type.
    pub compressible: bool,
    /// What the object is, for streaming rules.
    pub media: MediaKind,
    /// The parsed manifest (for playlists and MPDs), once the body is whole.
    manifest: OnceLock<Option<Arc<Manifest>>>,
    invalidated: AtomicBool,
    /// Where it stands with the disk tier (`cache::disk::NOT_YET`, ...).
    pub disk_state: crate::cache::disk::DiskState,
    brotli: OnceLock<Option<Bytes>>,
    gzip: OnceLock<Option<Bytes>>,
}

impl Object {
    pub fn new(
        head: Head,
        body: Arc<StoredBody>,
        vary: Option<VaryKey>,
        compressible: bool,
        media: MediaKind,
    ) -> Arc<Object> {
        Arc::new(Object {
            head: ArcSwap::from_pointee(head),
            body,
            vary,
            compressible,
            media,
            manifest: OnceLock::new(),
            invalidated: AtomicBool::new(false),
            disk_state: Default::default(),
            brotli: OnceLock::new(),
            gzip: OnceLock::new(),
        })
    }

    pub fn head(&self) -> arc_swap::Guard<Arc<Head>> {
        self.head.load()
    }

    /// Replaces the head after a 304 (RFC 9111 §4.3.4).
    pub fn refresh(&self, head: Head) {
        self.head.store(Arc::new(head));
    }

    /// Whether this is a playlist or an MPD.
    pub fn is_manifest(&self) -> bool {
        matches!(self.media, MediaKind::HlsPlaylist | MediaKind::DashMpd)
    }

    /// The manifest, parsed once from the complete body. A manifest that does
    /// not parse is served untouched; the failure is logged once.
    pub fn manifest(&self) -> Option<Arc<Manifest>> {
        if !self.is_manifest() {
            return None;
        }
        let body = self.body.bytes()?;
        self.manifest
            .get_or_init(|| match Manifest::parse(self.media, body) {
                Ok(m) => Some(Arc::new(m)),
                Err(e) => {
                    tracing::warn!("manifest passed through unparsed: {e}");
                    None
                }
            })
            .clone()
    }

    pub fn invalidate(&self) {
        self.invalidated.store(true, Ordering::Release);
    }

    pub fn is_invalidated(&self) -> bool {
        self.invalidated.load(Ordering::Acquire)
    }

    /// Bytes this object holds, for the store's budget.
    pub fn weight(&self) -> u64 {
        let head = self.head.load();
        let headers: usize = head.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 32).sum();
        let body = self.body.total_len().unwrap_or_else(|| self.body.available());
        let encoded: usize =
            [&self.brotli, &self.gzip].iter().filter_map(|c| c.get().and_then(|b| b.as_ref()).map(|b| b.len())).sum();
        body + (headers + encoded + 256) as u64
    }

    /// The body compressed with `enc`, made once from the complete body.
    /// `None` when the body is not complete, or compression does not pay.
    pub fn encoded(&self, enc: Encoding) -> Option<Bytes> {
        let body = self.body.bytes()?;
        let cell = match enc {
            Encoding::Brotli => &self.brotli,
            Encoding::Gzip => &self.gzip,
            Encoding::Identity => return None,
        };
        cell.get_or_init(|| crate::compress::compress(enc, body)).clone()
    }
}
