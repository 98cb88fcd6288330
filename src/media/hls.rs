//! HLS playlists: m3u8-rs for the RFC 8216 structure, and one scanner here for
//! the Low-Latency HLS tags m3u8-rs does not model (it keeps them as unknown
//! tags, and drops the ones after the last segment URI).

use super::MediaError;

#[derive(Debug, Clone, PartialEq)]
pub enum Playlist {
    Master(Master),
    Media(Media),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Master {
    pub variants: Vec<VariantStream>,
    /// URIs of alternate renditions (`EXT-X-MEDIA`) and I-frame playlists.
    pub renditions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct VariantStream {
    pub uri: String,
    pub bandwidth: u64,
    pub resolution: Option<(u64, u64)>,
    pub codecs: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistType {
    Vod,
    Event,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Media {
    pub target_duration: f64,
    pub media_sequence: u64,
    pub end_list: bool,
    pub playlist_type: Option<PlaylistType>,
    pub segments: Vec<Segment>,
    pub ll: LowLatency,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    pub uri: String,
    pub duration: f64,
    pub byte_range: Option<ByteRange>,
    pub map_uri: Option<String>,
    pub key_uri: Option<String>,
    /// `EXT-X-PART`s of this segment, in order.
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Part {
    pub uri: String,
    pub duration: f64,
    pub independent: bool,
    pub gap: bool,
    pub byte_range: Option<ByteRange>,
}

/// `length[@offset]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub length: u64,
    pub offset: Option<u64>,
}

/// What the LL-HLS tags say.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LowLatency {
    pub can_block_reload: bool,
    pub can_skip_until: Option<f64>,
    pub hold_back: Option<f64>,
    pub part_hold_back: Option<f64>,
    /// `EXT-X-PART-INF:PART-TARGET`.
    pub part_target: Option<f64>,
    /// `EXT-X-SKIP:SKIPPED-SEGMENTS` (a delta update).
    pub skipped_segments: u64,
    /// Parts of the segment still being produced (its msn is `Media::next_msn`).
    pub pending_parts: Vec<Part>,
    pub preload_hints: Vec<PreloadHint>,
    pub rendition_reports: Vec<RenditionReport>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PreloadHint {
    /// `PART` or `MAP`.
    pub kind: String,
    pub uri: String,
    pub byterange_start: Option<u64>,
    pub byterange_length: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RenditionReport {
    pub uri: String,
    pub last_msn: Option<u64>,
    pub last_part: Option<u64>,
}

impl Media {
    /// A live playlist: more segments will come.
    pub fn is_live(&self) -> bool {
        !self.end_list && self.playlist_type != Some(PlaylistType::Vod)
    }

    /// The msn after the last complete segment: the one being produced.
    pub fn next_msn(&self) -> u64 {
        self.segments
            .last()
            .map_or(self.media_sequence.saturating_add(self.ll.skipped_segments), |s| s.msn.saturating_add(1))
    }

    /// Whether this playlist satisfies a blocking reload for `msn` (and `part`):
    /// the segment is complete, or (with `part`) that part of it is listed.
    pub fn contains(&self, msn: u64, part: Option<u64>) -> bool {
        let next = self.next_msn();
        let pending = self.ll.pending_parts.len() as u64;
        match part {
            None => msn < next,
            // Segment `msn` is complete: part `p` is listed, or (past its last
            // part, or with old parts trimmed) a later part already exists.
            Some(p) if msn < next => {
                let listed = self.segments.iter().find(|s| s.msn == msn).map_or(0, |s| s.parts.len() as u64);
                p < listed || listed == 0 || msn.saturating_add(1) < next || pending > 0
            }
            Some(p) => msn == next && p < pending,
        }
    }

    /// Every URI the playlist references, each once, in order.
    pub fn uris(&self) -> Vec<&str> {
        let mut all: Vec<&str> = Vec::new();
        for s in &self.segments {
            all.extend(s.map_uri.as_deref());
            all.extend(s.key_uri.as_deref());
            all.extend(s.parts.iter().map(|p| p.uri.as_str()));
            all.push(&s.uri);
        }
        all.extend(self.ll.pending_parts.iter().map(|p| p.uri.as_str()));
        all.extend(self.ll.preload_hints.iter().map(|h| h.uri.as_str()));
        all.extend(self.ll.rendition_reports.iter().map(|r| r.uri.as_str()));
        let mut out: Vec<&str> = Vec::with_capacity(all.len());
        for u in all {
            if !u.is_empty() && !out.contains(&u) {
                out.push(u);
            }
        }
        out
    }
}

/// Parses a playlist. Never panics; anything that is not a playlist is an error.
pub fn parse(bytes: &[u8]) -> Result<Playlist, MediaError> {
    let text = std::str::from_utf8(bytes).map_err(|_| MediaError("playlist is not UTF-8".into()))?;
    if !text.trim_start_matches('\u{feff}').starts_with("#EXTM3U") {
        return Err(MediaError("playlist does not start with #EXTM3U".into()));
    }
    let parsed = std::panic::catch_unwind(|| m3u8_rs::parse_playlist_res(bytes))
        .map_err(|_| MediaError("playlist parser failed".into()))?
        .map_err(|e| MediaError(format!("playlist does not parse: {}", short(&format!("{e:?}")))))?;
    match parsed {
        m3u8_rs::Playlist::MasterPlaylist(m) => {
            let master = master(m);
            let listed = text.lines().filter(|l| l.trim().starts_with("#EXT-X-STREAM-INF:")).count();
            if listed != master.variants.len() {
                return Err(MediaError(format!(
                    "playlist lists {listed} variant streams but {} parse as variants",
                    master.variants.len()
                )));
            }
            Ok(Playlist::Master(master))
        }
        m3u8_rs::Playlist::MediaPlaylist(m) => media(m, text).map(Playlist::Media),
    }
}

fn short(s: &str) -> &str {
    &s[..s.char_indices().nth(120).map_or(s.len(), |(i, _)| i)]
}

fn master(m: m3u8_rs::MasterPlaylist) -> Master {
    let mut renditions: Vec<String> = m.alternatives.iter().filter_map(|a| a.uri.clone()).collect();
    let mut variants = Vec::new();
    for v in m.variants {
        if v.is_i_frame {
            renditions.push(v.uri);
            continue;
        }
        variants.push(VariantStream {
            bandwidth: v.bandwidth,
            resolution: v.resolution.map(|r| (r.width, r.height)),
            codecs: v.codecs,
            uri: v.uri,
        });
    }
    Master { variants, renditions }
}

fn media(m: m3u8_rs::MediaPlaylist, text: &str) -> Result<Media, MediaError> {
    let ll = scan_low_latency(text);
    let first = m.media_sequence.saturating_add(ll.tags.skipped_segments);
    let mut segments = Vec::with_capacity(m.segments.len());
    let mut map_uri = None;
    let mut key_uri = None;
    for (i, s) in m.segments.into_iter().enumerate() {
        // EXT-X-MAP and EXT-X-KEY apply to every following segment.
        if let Some(map) = &s.map {
            map_uri = Some(map.uri.clone());
        }
        if let Some(key) = &s.key {
            key_uri = key.uri.clone();
        }
        segments.push(Segment {
            msn: first.saturating_add(i as u64),
            duration: f64::from(s.duration),
            byte_range: s.byte_range.as_ref().map(|b| ByteRange { length: b.length, offset: b.offset }),
            map_uri: map_uri.clone(),
            key_uri: key_uri.clone(),
            parts: ll.parts_by_segment.get(i).cloned().unwrap_or_default(),
            uri: s.uri,
        });
    }
    if ll.uri_lines != segments.len() {
        return Err(MediaError(format!(
            "playlist lists {} segment URIs but {} parse as segments",
            ll.uri_lines,
            segments.len()
        )));
    }
    let mut tags = ll.tags;
    tags.pending_parts = ll.parts_by_segment.get(segments.len()).cloned().unwrap_or_default();
    Ok(Media {
        target_duration: m.target_duration as f64,
        media_sequence: m.media_sequence,
        end_list: m.end_list,
        playlist_type: match m.playlist_type {
            Some(m3u8_rs::MediaPlaylistType::Vod) => Some(PlaylistType::Vod),
            Some(m3u8_rs::MediaPlaylistType::Event) => Some(PlaylistType::Event),
            _ => None,
        },
        segments,
        ll: tags,
    })
}

struct Scan {
    tags: LowLatency,
    /// Parts listed before each segment URI; the last entry holds the pending parts.
    parts_by_segment: Vec<Vec<Part>>,
    uri_lines: usize,
}

/// The one place LL-HLS tags are read.
fn scan_low_latency(text: &str) -> Scan {
    let mut tags = LowLatency::default();
    let mut parts_by_segment: Vec<Vec<Part>> = vec![Vec::new()];
    let mut uri_lines = 0;
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            uri_lines += 1;
            parts_by_segment.push(Vec::new());
            continue;
        }
        let Some((tag, value)) = line.split_once(':') else { continue };
        let attrs = || attributes(value);
        match tag {
            "#EXT-X-SERVER-CONTROL" => {
                for (k, v) in attrs() {
                    match k {
                        "CAN-BLOCK-RELOAD" => tags.can_block_reload = v == "YES",
                        "CAN-SKIP-UNTIL" => tags.can_skip_until = v.parse().ok(),
                        "HOLD-BACK" => tags.hold_back = v.parse().ok(),
                        "PART-HOLD-BACK" => tags.part_hold_back = v.parse().ok(),
                        _ => {}
                    }
                }
            }
            "#EXT-X-PART-INF" => {
                tags.part_target = attrs().find(|(k, _)| *k == "PART-TARGET").and_then(|(_, v)| v.parse().ok());
            }
            "#EXT-X-SKIP" => {
                tags.skipped_segments =
                    attrs().find(|(k, _)| *k == "SKIPPED-SEGMENTS").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
            }
            "#EXT-X-PART" => {
                let mut part = Part::default();
                for (k, v) in attrs() {
                    match k {
                        "URI" => part.uri = v.to_string(),
                        "DURATION" => part.duration = v.parse().unwrap_or(0.0),
                        "INDEPENDENT" => part.independent = v == "YES",
                        "GAP" => part.gap = v == "YES",
                        "BYTERANGE" => part.byte_range = byte_range(v),
                        _ => {}
                    }
                }
                if !part.uri.is_empty() {
                    if let Some(current) = parts_by_segment.last_mut() {
                        current.push(part);
                    }
                }
            }
            "#EXT-X-PRELOAD-HINT" => {
                let mut hint = PreloadHint::default();
                for (k, v) in attrs() {
                    match k {
                        "TYPE" => hint.kind = v.to_string(),
                        "URI" => hint.uri = v.to_string(),
                        "BYTERANGE-START" => hint.byterange_start = v.parse().ok(),
                        "BYTERANGE-LENGTH" => hint.byterange_length = v.parse().ok(),
                        _ => {}
                    }
                }
                if !hint.uri.is_empty() {
                    tags.preload_hints.push(hint);
                }
            }
            "#EXT-X-RENDITION-REPORT" => {
                let mut r = RenditionReport::default();
                for (k, v) in attrs() {
                    match k {
                        "URI" => r.uri = v.to_string(),
                        "LAST-MSN" => r.last_msn = v.parse().ok(),
                        "LAST-PART" => r.last_part = v.parse().ok(),
                        _ => {}
                    }
                }
                tags.rendition_reports.push(r);
            }
            _ => {}
        }
    }
    Scan { tags, parts_by_segment, uri_lines }
}

/// An attribute list (`KEY=VALUE,KEY="quoted, value"`), quotes removed.
pub fn attributes(s: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = s;
    std::iter::from_fn(move || loop {
        rest = rest.trim_start_matches([',', ' ']);
        if rest.is_empty() {
            return None;
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        rest = next;
        if !key.is_empty() {
            return Some((key, value.trim()));
        }
    })
}

fn byte_range(v: &str) -> Option<ByteRange> {
    let (len, off) = match v.split_once('@') {
        Some((l, o)) => (l, Some(o.parse().ok()?)),
        None => (v, None),
    };
    Some(ByteRange { length: len.parse().ok()?, offset: off })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LL: &str = "#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-VERSION:6
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.0,CAN-SKIP-UNTIL=24.0
#EXT-X-PART-INF:PART-TARGET=0.33334
#EXT-X-MEDIA-SEQUENCE:266
#EXT-X-MAP:URI=\"init.mp4\"
#EXTINF:4.00008,
fileSequence266.mp4
#EXT-X-PART:DURATION=0.33334,URI=\"filePart267.0.mp4\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.33334,URI=\"filePart267.1.mp4\"
#EXTINF:4.00008,
fileSequence267.mp4
#EXT-X-PART:DURATION=0.33334,URI=\"filePart268.0.mp4\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.33334,URI=\"filePart268.1.mp4\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"filePart268.2.mp4\"
#EXT-X-RENDITION-REPORT:URI=\"../1M/waitForMSN.php\",LAST-MSN=268,LAST-PART=1
";

    #[test]
    fn low_latency_playlist() {
        let Playlist::Media(m) = parse(LL.as_bytes()).unwrap() else { panic!("media playlist") };
        assert_eq!(m.segments.len(), 2);
        assert_eq!((m.segments[0].msn, m.segments[1].msn), (266, 267));
        assert_eq!(m.segments[1].parts.len(), 2);
        assert_eq!(m.segments[0].map_uri.as_deref(), Some("init.mp4"));
        assert_eq!(m.segments[1].map_uri.as_deref(), Some("init.mp4"));
        assert!(m.ll.can_block_reload);
        assert_eq!(m.ll.part_target, Some(0.33334));
        assert_eq!(m.ll.pending_parts.len(), 2);
        assert_eq!(m.ll.preload_hints[0].uri, "filePart268.2.mp4");
        assert_eq!(m.ll.rendition_reports[0].last_msn, Some(268));
        assert_eq!(m.next_msn(), 268);
        assert!(m.is_live());
        assert!(m.contains(267, None));
        assert!(!m.contains(268, None));
        assert!(m.contains(268, Some(1)));
        assert!(!m.contains(268, Some(2)));
        assert!(m.contains(267, Some(1)));
        assert!(!m.contains(269, Some(0)));
        assert!(m.uris().contains(&"filePart268.2.mp4"));
    }

    #[test]
    fn master_and_vod() {
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1280000,RESOLUTION=640x360,CODECS=\"avc1.4d401e,mp4a.40.2\"\nv1/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2560000\nv2/index.m3u8\n";
        let Playlist::Master(m) = parse(master.as_bytes()).unwrap() else { panic!("master") };
        assert_eq!(m.variants.len(), 2);
        assert_eq!(m.variants[0].resolution, Some((640, 360)));
        let vod = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:2.0,\na.ts\n#EXTINF:2.0,\nb.ts\n#EXT-X-ENDLIST\n";
        let Playlist::Media(v) = parse(vod.as_bytes()).unwrap() else { panic!("media") };
        assert!(!v.is_live());
        assert_eq!(v.segments.len(), 2);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            &b"<html>502</html>"[..],
            b"",
            b"#EXTM3U\n#EXTINF:abc\n",
            b"\xff\xfe#EXTM3U",
            b"#EXTM3U\n#EXT-X-PART:URI=\"x",
        ] {
            let _ = parse(bad);
        }
        assert!(parse(b"<html>").is_err());
        let huge = format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXTINF:2,\na.ts\n#EXTINF:2,\nb.ts\n",
            u64::MAX
        );
        if let Ok(Playlist::Media(m)) = parse(huge.as_bytes()) {
            assert_eq!(m.next_msn(), u64::MAX);
            assert!(!m.contains(u64::MAX, Some(0)));
        }
        let attrs: Vec<_> = attributes("A=1,B=\"x,y\",C=YES").collect();
        assert_eq!(attrs, vec![("A", "1"), ("B", "x,y"), ("C", "YES")]);
    }

    #[test]
    fn a_master_whose_variants_do_not_all_parse_is_an_error() {
        // Found by fuzzing: a broken attribute list (a name without `=`,
        // control characters) made the parser merge two variant streams into
        // one, with the first's bandwidth and the second's URI.
        let text = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1328000,RESOLUTION=640x360,CLOSED-C\u{11}\0NONE\nlow.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=3528000,RESOLUTION=1280x720\nhigh.m3u8\n";
        let e = parse(text.as_bytes()).unwrap_err();
        assert!(e.0.contains("2 variant streams"), "{e}");
        let ok =
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1328000\nlow.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=3528000\nhigh.m3u8\n";
        assert!(matches!(parse(ok.as_bytes()), Ok(Playlist::Master(m)) if m.variants.len() == 2));
    }
}
