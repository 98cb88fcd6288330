//! Live media the edge knows from the manifests it has parsed: the parts,
//! segments and preload hints of live HLS media playlists, and the segments a
//! dynamic MPD's `SegmentTemplate`s address, with their durations and, for
//! DASH, the time each segment becomes available.
//!
//! The index is filled when a manifest's fill completes and asked only on the
//! miss path (an error answer's lifetime, a segment requested before it
//! exists); the hit path never touches it. It is bounded: at most
//! [`MAX_MANIFESTS`] manifests, each with at most [`MAX_OBJECTS_PER_PLAYLIST`]
//! objects and [`MAX_TEMPLATES_PER_MPD`] templates; the oldest manifest goes
//! first.

use super::dash::{Mpd, SegmentTemplate};
use super::hls;
use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

/// Manifests remembered at once (per edge, all distributions together).
pub const MAX_MANIFESTS: usize = 1024;
/// Objects remembered per live playlist (the newest ones).
pub const MAX_OBJECTS_PER_PLAYLIST: usize = 2048;
/// Segment templates remembered per dynamic MPD.
pub const MAX_TEMPLATES_PER_MPD: usize = 64;
/// Timeline entries searched for one segment.
const MAX_TIMELINE_SCAN: usize = 100_000;

/// What the edge knows about a live media object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveObject {
    /// The part's, chunk's or segment's duration (for an LL-DASH segment, its
    /// first chunk's: the segment duration less `availabilityTimeOffset`).
    pub duration: Duration,
    /// A DASH segment's full duration (the hold window is counted in these).
    pub segment: Duration,
    /// When a DASH segment becomes available (`None` for HLS objects, which
    /// the playlist lists only once they exist or are hinted).
    pub available_at: Option<SystemTime>,
}

#[derive(Default)]
pub struct LiveIndex {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    /// `dist \u{1f} path` → the object and the manifest that listed it.
    objects: HashMap<Box<str>, (LiveObject, u64)>,
    /// `dist \u{1f} manifest path` → what it registered.
    manifests: HashMap<Box<str>, Registered>,
    /// Manifest keys, oldest registration first.
    order: VecDeque<Box<str>>,
    next_id: u64,
}

struct Registered {
    id: u64,
    objects: Vec<Box<str>>,
    templates: Vec<Template>,
}

/// A `SegmentTemplate` `media` pattern resolved to a path, split at its one
/// `$Number$` or `$Time$` identifier, with the timing to place a segment.
#[derive(Debug, Clone)]
struct Template {
    dist: Box<str>,
    prefix: String,
    suffix: String,
    /// Digits at least this wide (`%0Nd`).
    width: usize,
    by_time: bool,
    timing: Timing,
}

#[derive(Debug, Clone)]
struct Timing {
    availability_start: SystemTime,
    period_start: Duration,
    template: SegmentTemplate,
    offset: Duration,
}

impl LiveIndex {
    /// Records (or, for a manifest that is not live, forgets) what a manifest
    /// at `path` of distribution `dist` lists.
    pub fn register(&self, dist: &str, path: &str, manifest: &super::policy::Manifest) {
        let (objects, templates) = match manifest {
            super::policy::Manifest::Hls(hls::Playlist::Media(m)) if m.is_live() => {
                (playlist_objects(dist, path, m), Vec::new())
            }
            super::policy::Manifest::Dash(mpd) if mpd.dynamic => (Vec::new(), mpd_templates(dist, path, mpd)),
            _ => (Vec::new(), Vec::new()),
        };
        let key: Box<str> = format!("{dist}\u{1f}{path}").into();
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.forget(&key);
        if objects.is_empty() && templates.is_empty() {
            return;
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let mut keys = Vec::with_capacity(objects.len());
        for (k, o) in objects {
            inner.objects.insert(k.clone(), (o, id));
            keys.push(k);
        }
        inner.manifests.insert(key.clone(), Registered { id, objects: keys, templates });
        inner.order.push_back(key);
        while inner.manifests.len() > MAX_MANIFESTS {
            let Some(oldest) = inner.order.pop_front() else { break };
            inner.forget(&oldest);
        }
    }

    /// What the edge knows about the object at `path` of distribution `dist`.
    pub fn lookup(&self, dist: &str, path: &str) -> Option<LiveObject> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if inner.manifests.is_empty() {
            return None;
        }
        let key = format!("{dist}\u{1f}{path}");
        if let Some((o, _)) = inner.objects.get(key.as_str()) {
            return Some(*o);
        }
        inner
            .manifests
            .values()
            .flat_map(|r| r.templates.iter())
            .filter(|t| &*t.dist == dist)
            .find_map(|t| t.place(path))
    }
}

impl Inner {
    fn forget(&mut self, key: &str) {
        if let Some(old) = self.manifests.remove(key) {
            for k in old.objects {
                // Another playlist may have listed it since: keep its entry.
                if self.objects.get(&k).is_some_and(|(_, id)| *id == old.id) {
                    self.objects.remove(&k);
                }
            }
            self.order.retain(|k| &**k != key);
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

/// The newest parts, segments and hinted parts of a live playlist.
fn playlist_objects(dist: &str, path: &str, m: &hls::Media) -> Vec<(Box<str>, LiveObject)> {
    let part_target = m.ll.part_target.map_or(Duration::ZERO, secs);
    let mut out: Vec<(&str, Duration)> = Vec::new();
    for s in m.segments.iter().rev() {
        out.push((&s.uri, secs(s.duration)));
        out.extend(s.parts.iter().map(|p| (p.uri.as_str(), secs(p.duration))));
        if out.len() >= MAX_OBJECTS_PER_PLAYLIST {
            break;
        }
    }
    out.extend(m.ll.pending_parts.iter().map(|p| (p.uri.as_str(), secs(p.duration))));
    out.extend(m.ll.preload_hints.iter().filter(|h| h.kind == "PART").map(|h| (h.uri.as_str(), part_target)));
    out.into_iter()
        .rev()
        .take(MAX_OBJECTS_PER_PLAYLIST)
        .filter_map(|(uri, d)| {
            let target = resolve(path, uri)?;
            let p = target.split('?').next().unwrap_or("");
            let o = LiveObject { duration: d, segment: d, available_at: None };
            Some((format!("{dist}\u{1f}{p}").into_boxed_str(), o))
        })
        .collect()
}

/// The media templates of a dynamic MPD, one per representation.
fn mpd_templates(dist: &str, path: &str, mpd: &Mpd) -> Vec<Template> {
    let Some(ast) = mpd.availability_start_time else { return Vec::new() };
    let mut out = Vec::new();
    for period in &mpd.periods {
        for set in &period.adaptation_sets {
            for rep in &set.representations {
                let Some(t) = rep.effective_template(set) else { continue };
                let Some(media) = t.media.as_deref() else { continue };
                if t.duration.is_none() && t.timeline.is_empty() {
                    continue;
                }
                let base = [&mpd.base_urls, &period.base_urls, &set.base_urls, &rep.base_urls]
                    .iter()
                    .filter_map(|urls| urls.first())
                    .try_fold(path.to_string(), |base, url| resolve(&base, &with_slash(url)));
                let Some(base) = base else { continue };
                let pattern = SegmentTemplate::expand(media, &rep.id, rep.bandwidth, None, None);
                let Some(full) = resolve(&base, &pattern) else { continue };
                let full = full.split('?').next().unwrap_or("").to_string();
                let Some(mut template) = Template::split(dist, &full) else { continue };
                template.timing = Timing {
                    availability_start: ast,
                    period_start: period.start.unwrap_or_default(),
                    template: t.clone(),
                    offset: t.availability_time_offset.unwrap_or_default(),
                };
                out.push(template);
                if out.len() >= MAX_TEMPLATES_PER_MPD {
                    return out;
                }
            }
        }
    }
    out
}

/// A BaseURL names a directory: `video` resolves like `video/`.
fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

impl Template {
    /// Splits a resolved pattern at its one `$Number$`/`$Time$` identifier.
    fn split(dist: &str, pattern: &str) -> Option<Template> {
        let open = pattern.find('$')?;
        let rest = &pattern[open + 1..];
        let close = rest.find('$')?;
        let token = &rest[..close];
        let suffix = &rest[close + 1..];
        if suffix.contains('$') {
            return None;
        }
        let (ident, format) = match token.find('%') {
            Some(at) => (&token[..at], Some(&token[at..])),
            None => (token, None),
        };
        let by_time = match ident {
            "Number" => false,
            "Time" => true,
            _ => return None,
        };
        let width = match format {
            None => 0,
            Some(f) => super::dash::format_width(f)?,
        };
        Some(Template {
            dist: dist.into(),
            prefix: pattern[..open].to_string(),
            suffix: suffix.to_string(),
            width,
            by_time,
            timing: Timing {
                availability_start: SystemTime::UNIX_EPOCH,
                period_start: Duration::ZERO,
                template: SegmentTemplate::default(),
                offset: Duration::ZERO,
            },
        })
    }

    /// The segment at `path`, if this template addresses it.
    fn place(&self, path: &str) -> Option<LiveObject> {
        let digits = path.strip_prefix(&self.prefix)?.strip_suffix(&self.suffix)?;
        if digits.is_empty() || digits.len() < self.width || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value: u64 = digits.parse().ok()?;
        self.timing.segment(value, self.by_time)
    }
}

impl Timing {
    /// A segment by its `$Number$` or `$Time$`: its duration and the time it
    /// becomes available (ISO/IEC 23009-1 §5.3.9.5.3: availabilityStartTime
    /// + Period start + the segment's end − availabilityTimeOffset).
    fn segment(&self, value: u64, by_time: bool) -> Option<LiveObject> {
        let t = &self.template;
        let scale = t.timescale.max(1) as f64;
        // (start in timescale units relative to presentationTimeOffset, duration)
        let (start, d) = if !t.timeline.is_empty() {
            let s = t.timeline_segments().take(MAX_TIMELINE_SCAN).find(|s| {
                if by_time {
                    s.time == value
                } else {
                    s.number == value
                }
            })?;
            (s.time.checked_sub(t.presentation_time_offset)?, s.duration)
        } else {
            let d = t.duration.filter(|d| *d > 0)?;
            if by_time {
                (value.checked_sub(t.presentation_time_offset)?, d)
            } else {
                (value.checked_sub(t.start_number)?.checked_mul(d)?, d)
            }
        };
        let segment = secs(d as f64 / scale);
        let end = secs((start as f64 + d as f64) / scale);
        let available = (self.availability_start + self.period_start + end).checked_sub(self.offset.min(end))?;
        let first_chunk =
            if self.offset > Duration::ZERO && self.offset < segment { segment - self.offset } else { segment };
        Some(LiveObject { duration: first_chunk, segment, available_at: Some(available) })
    }
}

/// Resolves a manifest reference against the manifest's path. Only
/// references on the same host: relative ones and absolute paths.
pub fn resolve(manifest_path: &str, reference: &str) -> Option<String> {
    if reference.contains("://") || reference.starts_with("//") {
        return None;
    }
    if reference.starts_with('/') {
        return Some(reference.to_string());
    }
    let path = manifest_path.split('?').next().unwrap_or("");
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    let (ref_path, query) = match reference.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (reference, None),
    };
    let mut segments: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    let trailing = ref_path.ends_with('/');
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
    if trailing && out.len() > 1 {
        out.push('/');
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::policy::Manifest;
    use crate::media::MediaKind;

    #[test]
    fn resolves_references() {
        let p = "/live/v1/index.m3u8?t=1";
        assert_eq!(resolve(p, "seg1.ts").as_deref(), Some("/live/v1/seg1.ts"));
        assert_eq!(resolve(p, "../v2/seg1.ts?x=2").as_deref(), Some("/live/v2/seg1.ts?x=2"));
        assert_eq!(resolve(p, "/abs/seg.ts").as_deref(), Some("/abs/seg.ts"));
        assert_eq!(resolve(p, "https://other/seg.ts"), None);
        assert_eq!(resolve(p, "../../../x.ts"), None);
        assert_eq!(resolve(p, "video/").as_deref(), Some("/live/v1/video/"));
    }

    #[test]
    fn live_playlists_list_their_parts_and_hints() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART-INF:PART-TARGET=0.5\n#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-PART:DURATION=0.5,URI=\"p3.0.mp4\"\n#EXTINF:2.0,\ns3.mp4\n#EXT-X-PART:DURATION=0.4,URI=\"p4.0.mp4\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p4.1.mp4\"\n";
        let m = Manifest::parse(MediaKind::HlsPlaylist, text.as_bytes()).unwrap();
        let index = LiveIndex::default();
        index.register("D", "/a/index.m3u8", &m);
        let d = |p: &str| index.lookup("D", p).map(|o| o.duration);
        assert_eq!(d("/a/s3.mp4"), Some(Duration::from_secs(2)));
        assert_eq!(d("/a/p3.0.mp4"), Some(Duration::from_millis(500)));
        assert_eq!(d("/a/p4.0.mp4"), Some(Duration::from_millis(400)));
        assert_eq!(d("/a/p4.1.mp4"), Some(Duration::from_millis(500)));
        assert_eq!(d("/a/other.mp4"), None);
        assert_eq!(index.lookup("E", "/a/s3.mp4"), None, "per distribution");
        // The stream ends: nothing of it is live any more.
        let ended = Manifest::parse(MediaKind::HlsPlaylist, format!("{text}#EXT-X-ENDLIST\n").as_bytes()).unwrap();
        index.register("D", "/a/index.m3u8", &ended);
        assert_eq!(d("/a/s3.mp4"), None);
    }

    #[test]
    fn dynamic_mpd_segments_are_placed_in_time() {
        let mpd = r#"<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="2026-01-01T00:00:00Z" minimumUpdatePeriod="PT2S">
<Period start="PT0S"><AdaptationSet mimeType="video/mp4">
<SegmentTemplate timescale="1000" duration="2000" startNumber="1" availabilityTimeOffset="1.5" media="chunk-$RepresentationID$-$Number%05d$.m4s" initialization="init-$RepresentationID$.m4s"/>
<Representation id="0" bandwidth="1000"/></AdaptationSet></Period></MPD>"#;
        let m = Manifest::parse(MediaKind::DashMpd, mpd.as_bytes()).unwrap();
        let index = LiveIndex::default();
        index.register("D", "/dash/live.mpd", &m);
        let o = index.lookup("D", "/dash/chunk-0-00003.m4s").expect("segment 3");
        let ast = crate::media::dash::parse_iso8601_datetime("2026-01-01T00:00:00Z").unwrap();
        // Segment 3 spans 4..6 s; its first chunk is out at 6 − 1.5 s.
        assert_eq!(o.available_at, Some(ast + Duration::from_millis(4500)));
        assert_eq!((o.duration, o.segment), (Duration::from_millis(500), Duration::from_secs(2)));
        assert_eq!(index.lookup("D", "/dash/chunk-0-3.m4s"), None, "narrower than %05d");
        assert_eq!(index.lookup("D", "/dash/init-0.m4s"), None);
        assert_eq!(index.lookup("D", "/dash/chunk-0-00000.m4s"), None, "before startNumber");
    }

    #[test]
    fn the_index_is_bounded() {
        let index = LiveIndex::default();
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\ns.ts\n";
        let m = Manifest::parse(MediaKind::HlsPlaylist, text.as_bytes()).unwrap();
        for i in 0..MAX_MANIFESTS + 10 {
            index.register("D", &format!("/{i}/index.m3u8"), &m);
        }
        let inner = index.inner.read().unwrap();
        assert_eq!((inner.manifests.len(), inner.objects.len()), (MAX_MANIFESTS, MAX_MANIFESTS));
        assert!(!inner.objects.contains_key("D\u{1f}/0/s.ts"), "the oldest went first");
    }
}
