//! One function per fuzz target. Each takes arbitrary bytes, feeds them to a
//! parser that reads outside input, and asserts properties of the result
//! beyond "no panic": bounds on what was parsed relative to the input, and
//! parse → serialise → parse stability where the code serialises.
//!
//! Included as a module by the fuzz crate and by the main crate's
//! `tests/fuzz_seeds.rs`, so it only uses `mediaedge` and crates the main
//! crate depends on.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use mediaedge::media::{dash, hls, rewrite, MediaKind};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// Splits a fuzz input into `n` pieces at `\n` (the last piece takes the rest).
fn pieces(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |&b| b == b'\n').collect();
    out.resize(n, b"");
    out
}

fn text(data: &[u8]) -> &str {
    std::str::from_utf8(data).unwrap_or("")
}

/// A signing query string the rewriters append.
const PARAMS: &str = "Policy=eyJ9&Signature=abc~-_&Key-Pair-Id=K1";

// ---------------------------------------------------------------- HLS

/// `hls::parse` (m3u8-rs plus the LL-HLS tag scanner), the LL-HLS delivery
/// directives of a query string, and token propagation into playlists.
pub fn hls(data: &[u8]) {
    let lines = data.split(|&b| b == b'\n' || b == b'\r').filter(|l| !l.is_empty()).count();
    if let Ok(playlist) = hls::parse(data) {
        match &playlist {
            hls::Playlist::Media(m) => {
                // Every segment, part, hint and report needs its own line.
                let parts: usize = m.segments.iter().map(|s| s.parts.len()).sum::<usize>() + m.ll.pending_parts.len();
                assert!(m.segments.len() <= lines, "{} segments from {lines} lines", m.segments.len());
                assert!(parts <= lines, "{parts} parts from {lines} lines");
                assert!(m.ll.preload_hints.len() <= lines);
                assert!(m.ll.rendition_reports.len() <= lines);
                // Media sequence numbers are consecutive and start after the skipped ones.
                let first = m.media_sequence.saturating_add(m.ll.skipped_segments);
                for (i, s) in m.segments.iter().enumerate() {
                    assert_eq!(s.msn, first.saturating_add(i as u64));
                }
                assert!(m.segments.iter().all(|s| s.parts.iter().all(|p| !p.uri.is_empty())));
                let next = m.next_msn();
                assert!(m.segments.last().is_none_or(|s| s.msn < next || s.msn == u64::MAX));
                // A blocking reload for a completed segment is satisfied, for the next one not.
                if let Some(last) = m.segments.last() {
                    assert!(m.contains(last.msn, None));
                }
                if next < u64::MAX && m.ll.pending_parts.is_empty() {
                    assert!(!m.contains(next, None));
                    assert!(!m.contains(next, Some(0)));
                }
                let uris = m.uris();
                assert!(uris.iter().all(|u| !u.is_empty()));
                let unique: std::collections::HashSet<&&str> = uris.iter().collect();
                assert_eq!(unique.len(), uris.len(), "uris() repeats a URI");
            }
            hls::Playlist::Master(master) => {
                assert!(master.variants.len() + master.renditions.len() <= lines);
            }
        }
        // Propagating tokens keeps the playlist a playlist of the same shape,
        // or leaves it alone.
        if let Some(rewritten) = rewrite::propagate(MediaKind::HlsPlaylist, data, PARAMS) {
            match (&playlist, hls::parse(rewritten.as_bytes())) {
                (hls::Playlist::Media(a), Ok(hls::Playlist::Media(b))) => {
                    assert_eq!(a.segments.len(), b.segments.len(), "rewrite changed the segment count");
                    assert_eq!(a.ll.pending_parts.len(), b.ll.pending_parts.len());
                }
                (hls::Playlist::Master(a), Ok(hls::Playlist::Master(b))) => {
                    assert_eq!(a.variants.len(), b.variants.len(), "rewrite changed the variant count");
                }
                (_, other) => panic!("a parsed playlist rewritten no longer parses alike: {other:?}"),
            }
        }
    }
    // Attribute lists and the `_HLS_msn` / `_HLS_part` query directives.
    let s = text(data);
    for (k, v) in hls::attributes(s) {
        assert!(!k.is_empty() && k.len() <= s.len() && v.len() <= s.len());
    }
    if let Ok(Some(d)) = mediaedge::media::policy::Directives::from_query(Some(s)) {
        assert!(d.part.is_none() || d.msn.is_some());
    }
    let stripped = mediaedge::media::policy::strip_directives(Some(s));
    if let Some(q) = &stripped {
        assert!(!q.split('&').any(|p| p.starts_with("_HLS_")), "{q:?} still has a directive");
    }
}

// ---------------------------------------------------------------- DASH

/// `dash::parse` and the template, duration and date helpers it uses.
pub fn dash(data: &[u8]) {
    let elements = data.iter().filter(|&&b| b == b'<').count();
    if let Ok(mpd) = dash::parse(data) {
        let mut representations = 0usize;
        for p in &mpd.periods {
            for set in &p.adaptation_sets {
                representations += set.representations.len();
                for rep in &set.representations {
                    let _ = rep.initialization_uri();
                    let _ = rep.media_uri(Some(1), Some(0));
                    let Some(t) = rep.effective_template(set) else { continue };
                    assert!(t.timescale > 0, "a timescale of 0 survived");
                    // Timeline segments are in order and never overlap.
                    let mut prev: Option<dash::TimelineSegment> = None;
                    for seg in t.timeline_segments().take(4096) {
                        assert!(seg.duration > 0);
                        if let Some(p) = prev {
                            assert_eq!(seg.number, p.number + 1);
                        }
                        prev = Some(seg);
                    }
                }
            }
        }
        // Every Period, AdaptationSet and Representation is an element of the input.
        let sets: usize = mpd.periods.iter().map(|p| p.adaptation_sets.len()).sum();
        assert!(mpd.periods.len() + sets + representations <= elements);
        let uris = mpd.template_uris();
        let unique: std::collections::HashSet<&String> = uris.iter().collect();
        assert_eq!(unique.len(), uris.len(), "template_uris() repeats a URI");
        // Propagating tokens keeps the MPD an MPD of the same shape, or leaves it alone.
        if let Some(s) = rewrite::propagate(MediaKind::DashMpd, data, PARAMS) {
            let again =
                dash::parse(s.as_bytes()).unwrap_or_else(|e| panic!("a parsed MPD rewritten no longer parses: {e}"));
            assert_eq!(again.periods.len(), mpd.periods.len());
            assert_eq!(again.dynamic, mpd.dynamic);
            assert_eq!(again.minimum_update_period, mpd.minimum_update_period);
        }
    }
    let [pattern, rest] = <[&[u8]; 2]>::try_from(pieces(data, 2)).unwrap_or([b"", b""]);
    let pattern = text(pattern);
    let expanded = dash::SegmentTemplate::expand(pattern, "v1", 800_000, Some(42), Some(1_000));
    assert!(expanded.len() <= pattern.len().saturating_mul(64).max(64), "expansion grew too much");
    let rest = text(rest);
    if let Some(d) = dash::parse_iso8601_duration(rest) {
        assert!(d.as_secs() < u64::MAX);
    }
    let _ = dash::parse_iso8601_datetime(rest);
}

// ---------------------------------------------------------------- Range

/// `Range` parsing and resolution against a length, and the multipart framing.
pub fn range(data: &[u8]) {
    use mediaedge::http::range::{self, Resolved, Spec};
    // First 8 bytes: the representation's length (small, so multipart can run).
    let (len, value) = match data.split_first_chunk::<2>() {
        Some((l, rest)) => (u64::from(u16::from_le_bytes(*l)), rest),
        None => (0, data),
    };
    let Some(specs) = range::parse(value) else { return };
    assert!(!specs.is_empty() && specs.len() <= range::MAX_RANGES);
    for s in &specs {
        if let Spec::Closed(a, b) = s {
            assert!(a <= b);
        }
    }
    for len in [len, 0, 1, u64::MAX] {
        match range::resolve(&specs, len) {
            Resolved::Unsatisfiable => {}
            Resolved::Ranges(rs) => {
                assert!(!rs.is_empty() && rs.len() <= specs.len());
                for r in &rs {
                    assert!(r.start < r.end && r.end <= len, "{r:?} outside 0..{len}");
                    let cr = range::content_range(*r, Some(len));
                    assert_eq!(cr, format!("bytes {}-{}/{len}", r.start, r.end - 1));
                }
                // Several ranges: merged ones do not overlap.
                let mut sorted = rs.clone();
                sorted.sort_by_key(|r| r.start);
                let overlaps = sorted.windows(2).any(|w| w[1].start < w[0].end);
                let total: u64 = rs.iter().map(|r| r.len()).sum::<u64>();
                assert!(!overlaps || total <= len.saturating_mul(specs.len() as u64));
                if len <= u64::from(u16::MAX) {
                    let body = bytes::Bytes::from(vec![7u8; len as usize]);
                    let (boundary, parts) = range::multipart(&body, &rs, Some("video/mp4"));
                    assert_eq!(parts.len(), rs.len() * 2 + 1);
                    for (i, r) in rs.iter().enumerate() {
                        assert_eq!(parts[i * 2 + 1].len() as u64, r.len());
                    }
                    assert!(parts.last().is_some_and(|p| p.ends_with(format!("--{boundary}--\r\n").as_bytes())));
                }
            }
        }
    }
}

// ---------------------------------------------------------------- Cache-Control

struct PolicyFixture {
    behavior: mediaedge::config::Behavior,
    cache: mediaedge::config::CacheConfig,
}

fn policy_fixture() -> &'static PolicyFixture {
    static F: OnceLock<PolicyFixture> = OnceLock::new();
    F.get_or_init(|| {
        let cfg = mediaedge::Config::single_origin("http://127.0.0.1:9", None).expect("fixture config");
        PolicyFixture { behavior: cfg.distributions[0].default_behavior.clone(), cache: cfg.cache }
    })
}

/// The directives written back as a field value.
fn serialise(d: &mediaedge::cache::policy::Directives) -> String {
    let mut out: Vec<String> = Vec::new();
    for (on, name) in [
        (d.no_store, "no-store"),
        (d.no_cache, "no-cache"),
        (d.private, "private"),
        (d.public, "public"),
        (d.must_revalidate, "must-revalidate"),
        (d.proxy_revalidate, "proxy-revalidate"),
    ] {
        if on {
            out.push(name.into());
        }
    }
    for (v, name) in [
        (d.max_age, "max-age"),
        (d.s_maxage, "s-maxage"),
        (d.stale_while_revalidate, "stale-while-revalidate"),
        (d.stale_if_error, "stale-if-error"),
    ] {
        if let Some(v) = v {
            out.push(format!("{name}={v}"));
        }
    }
    out.join(", ")
}

/// `Cache-Control` / `CDN-Cache-Control` parsing, and the storability and
/// age decisions made from them and `Age`, `Expires` and `Date`.
pub fn cache_control(data: &[u8]) {
    use mediaedge::cache::policy::{self, Directives, NoStore, CDN_CACHE_CONTROL};
    let [cc, cdn, age, expires, date] = <[&[u8]; 5]>::try_from(pieces(data, 5)).unwrap_or([b""; 5]);
    let mut headers = HeaderMap::new();
    let fields: [(HeaderName, &[u8]); 5] = [
        (http::header::CACHE_CONTROL, cc),
        (CDN_CACHE_CONTROL.clone(), cdn),
        (http::header::AGE, age),
        (http::header::EXPIRES, expires),
        (http::header::DATE, date),
    ];
    for (name, value) in fields {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            if !value.is_empty() {
                headers.append(name, v);
            }
        }
    }
    let parsed = Directives::parse(&headers, &http::header::CACHE_CONTROL);
    if let Some(d) = &parsed {
        // parse → serialise → parse is stable.
        let mut again = HeaderMap::new();
        again.insert(http::header::CACHE_CONTROL, HeaderValue::from_str(&serialise(d)).expect("serialised value"));
        let d2 = Directives::parse(&again, &http::header::CACHE_CONTROL).expect("present");
        assert_eq!(&d2, d, "Cache-Control {:?} did not survive a round trip", serialise(d));
    }
    let (effective, from_cdn) = policy::effective_directives(&headers);
    assert_eq!(from_cdn, headers.contains_key(&CDN_CACHE_CONTROL));
    if !from_cdn {
        assert_eq!(effective, parsed.unwrap_or_default());
    }
    let f = policy_fixture();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for status in [200u16, 404, 500] {
        let status = http::StatusCode::from_u16(status).expect("status");
        let media = policy::Media { kind: mediaedge::media::MediaKind::Other, default_ttl: None, live: None };
        match policy::storability(status, &headers, &f.behavior, &f.cache, media, now, now + Duration::from_secs(1)) {
            Ok(fresh) => {
                assert!(!effective.private);
                // An error that says no-store is shared with the burst, never kept.
                assert!(!effective.no_store || (policy::is_error(status) && fresh.ttl.is_zero()));
                assert!(fresh.ttl <= f.behavior.max_ttl.max(f.behavior.min_ttl));
                if effective.no_cache {
                    assert_eq!(fresh.ttl, Duration::ZERO);
                }
            }
            Err(NoStore::Forbidden(_)) => assert!(effective.no_store || effective.private),
            Err(NoStore::NotCacheable(_)) => {}
        }
    }
    let date = mediaedge::http::date_header(&headers, &http::header::DATE);
    let _ = policy::initial_age(&headers, date, now, now + Duration::from_secs(3));
}

// ---------------------------------------------------------------- signed URLs and cookies

/// A 2048-bit RSA public key; its private half is not kept anywhere, so no
/// input can carry a valid signature.
const PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAiIhGbSa/Nz1bHTNV6DHG
YNC78WF5QOS1F+Ju/2+G1c1ddpICaU0HNoY0JkM70fCGckQ0os3fYdLFpy2XbPUV
oi2b3NwcSQ1U7VsXpPp1ijU6xkOXlNc+xzNX/pXa62p3y1zLwfxXMqbs3bs01OHO
eZu1skvIvi1a3062naWrTNh6Ge9x91eTmTaQwR7y4iJ96KklEPCdRWg72BGy57X4
6gPL5bsDQ9n9bf0GvdLFkgsHm2gKLQpr6wy65TRQ1Q7zdTsAMkfMYnh7pspyfb18
O82Dzm5wMuOT/+Gbrdl8HPVgwL6W8DYhzsEryBDY/IdmagS2Rb/geqASGq8obH/0
nwIDAQAB
-----END PUBLIC KEY-----
";

fn key_groups() -> &'static [Arc<mediaedge::config::KeyGroup>] {
    static G: OnceLock<Vec<Arc<mediaedge::config::KeyGroup>>> = OnceLock::new();
    G.get_or_init(|| {
        let key = mediaedge::security::signature::PublicKey::from_pem(PUBLIC_KEY).expect("fixture key");
        let keys = vec![mediaedge::config::TrustedKey::new("K2JCJMDEHXQW5F", key)];
        vec![Arc::new(mediaedge::config::KeyGroup { id: "g".into(), keys })]
    })
}

/// Signed URL and cookie checks (query parameters, cookies, custom policy
/// JSON, CloudFront base64), and the helpers that strip signing parameters.
pub fn signed(data: &[u8]) {
    use mediaedge::security::{self, policy::Cidr, policy::Policy, signature, SignedRequest, Verifier};
    let [path, query, cookie, json] = <[&[u8]; 4]>::try_from(pieces(data, 4)).unwrap_or([b""; 4]);
    let (path, query, json) = (text(path), text(query), json);
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(cookie) {
        headers.insert(http::header::COOKIE, v);
    }
    let req = SignedRequest {
        scheme: "https",
        authority: "d111111abcdef8.cloudfront.net",
        path,
        query: (!query.is_empty()).then_some(query),
        headers: &headers,
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        now: 1_700_000_000,
    };
    // Nobody holds the private key: nothing is ever accepted, and a second
    // check (which may hit the cache of verified signatures) agrees.
    let verifier = Verifier::new(1 << 16);
    let first = verifier.check(key_groups(), &req);
    assert!(first.is_err(), "accepted without a valid signature");
    assert_eq!(verifier.check(key_groups(), &req), first);

    // Stripping the signing parameters and cookies leaves none behind.
    let kept = security::query_without_signing(query);
    assert!(!security::has_signing_params(Some(&kept)), "{kept:?} still signs");
    if let Ok(url) = security::resource_url(&req) {
        assert!(url.starts_with("https://d111111abcdef8.cloudfront.net"));
    }
    let mut stripped = headers.clone();
    security::remove_signing_cookies(&mut stripped);
    for (name, _) in mediaedge::cache::key::cookie_pairs(&stripped) {
        let signing = ["CloudFront-Expires", "CloudFront-Policy", "CloudFront-Signature", "CloudFront-Key-Pair-Id"];
        assert!(!signing.contains(&name), "signing cookie {name} kept");
    }

    // Custom policy JSON: a parsed policy is consistent with itself.
    if let Ok(p) = Policy::parse_custom(json) {
        assert!(p.check_time(p.date_less_than).is_err());
        if let Some(resource) = &p.resource {
            if !resource.contains(['*', '?']) {
                assert!(p.check_resource(resource).is_ok());
            }
        }
    }
    let json_text = text(json);
    if let Some(c) = Cidr::parse(json_text.trim()) {
        if let Ok(ip) = json_text.trim().split('/').next().unwrap_or("").parse::<IpAddr>() {
            assert!(c.contains(ip), "{json_text:?} does not contain its own address");
        }
    }
    // CloudFront base64: decode → encode → decode is stable.
    if let Some(bytes) = signature::decode(json_text) {
        let again = signature::decode(&signature::encode(&bytes)).expect("own encoding decodes");
        assert_eq!(again, bytes);
    }
}

// ---------------------------------------------------------------- config file

/// `Config::parse`: an accepted file exports to TOML that parses to the same
/// export (parse → serialise → parse is stable).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Relative files resolve under a directory that does not exist.
    let path = Path::new("/nonexistent-fuzz-dir/mediaedge.toml");
    let Ok(cfg) = mediaedge::Config::parse(text, path) else { return };
    let exported = cfg.export_toml();
    let again = mediaedge::Config::parse(&exported, path)
        .unwrap_or_else(|e| panic!("exported config does not parse: {e}\n{exported}"));
    assert_eq!(again.distributions.len(), cfg.distributions.len());
    assert_eq!(again.export_toml(), exported, "export is not stable");
}

// ---------------------------------------------------------------- admin API

/// The admin API's JSON bodies: distribution documents (JSON → TOML table →
/// the same resolver as the config file) and invalidation paths.
pub fn admin_json(data: &[u8]) {
    use mediaedge::cache::invalidate::PathMatch;
    if let Ok(doc) = mediaedge::admin::json_document(data) {
        // The TOML table holds what the JSON held, field for field.
        let json: serde_json::Value = serde_json::from_slice(data).expect("accepted JSON parses");
        assert_eq!(json.as_object().map(|o| o.len()), Some(doc.len()));
        if let Ok(d) = mediaedge::Config::distribution_from_document(&doc, "edge.example", "api") {
            // The stored document resolves again to the same distribution.
            let again = mediaedge::Config::distribution_from_document(&d.document, "edge.example", "api")
                .unwrap_or_else(|e| panic!("a stored document does not resolve: {e}"));
            assert_eq!(again.id, d.id);
            assert_eq!(again.document, d.document, "the stored document is not stable");
        }
    }
    // Invalidation paths (the `paths` of an invalidation body).
    if let Ok(serde_json::Value::Array(list)) = mediaedge::admin::parse_json(data) {
        for p in list.iter().filter_map(|v| v.as_str()) {
            if let Ok(m) = PathMatch::parse(p) {
                let written = match &m {
                    PathMatch::Prefix(prefix) => format!("{prefix}*"),
                    PathMatch::Exact { path, query: Some(q) } => format!("{path}?{q}"),
                    PathMatch::Exact { path, query: None } => path.clone(),
                };
                assert_eq!(PathMatch::parse(&written).as_ref(), Ok(&m), "{p:?} → {written:?}");
            }
        }
    }
}
