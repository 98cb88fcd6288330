//! Streaming-aware defaults: TTLs from what an object is (and, for manifests,
//! what it says), and the LL-HLS delivery directives of a request.

use super::{dash, hls, MediaKind};
use crate::config::StreamingPolicy;
use std::time::Duration;

/// A manifest's TTL before its body is read; replaced once the fill ends.
pub const PROVISIONAL_MANIFEST_TTL: Duration = Duration::from_secs(1);

/// The default TTL known from the response head alone, when the origin gives none.
pub fn default_at_headers(kind: MediaKind, st: &StreamingPolicy) -> Option<Duration> {
    if !st.media_ttls {
        return None;
    }
    match kind {
        MediaKind::Segment | MediaKind::InitSegment | MediaKind::Subtitle => Some(st.segment_ttl),
        MediaKind::HlsPlaylist | MediaKind::DashMpd => Some(PROVISIONAL_MANIFEST_TTL),
        MediaKind::Other => None,
    }
}

/// A parsed manifest, kept with the stored object.
#[derive(Debug)]
pub enum Manifest {
    Hls(hls::Playlist),
    Dash(dash::Mpd),
}

impl Manifest {
    pub fn parse(kind: MediaKind, body: &[u8]) -> Result<Manifest, super::MediaError> {
        match kind {
            MediaKind::HlsPlaylist => hls::parse(body).map(Manifest::Hls),
            MediaKind::DashMpd => dash::parse(body).map(Manifest::Dash),
            _ => Err(super::MediaError("not a manifest".into())),
        }
    }

    pub fn media_playlist(&self) -> Option<&hls::Media> {
        match self {
            Manifest::Hls(hls::Playlist::Media(m)) => Some(m),
            _ => None,
        }
    }

    /// The default TTL for this manifest when the origin gives none.
    pub fn default_ttl(&self, st: &StreamingPolicy) -> Duration {
        match self {
            Manifest::Hls(hls::Playlist::Master(_)) => st.master_playlist_ttl,
            Manifest::Hls(hls::Playlist::Media(m)) if m.is_live() => st.live_manifest_ttl.unwrap_or_else(|| {
                // Half a part target for LL-HLS, else half the target duration.
                let base = m.ll.part_target.filter(|p| *p > 0.0).unwrap_or(m.target_duration);
                if base > 0.0 {
                    secs((base / 2.0).clamp(0.1, 30.0))
                } else {
                    // No target duration: not a valid live playlist; be brief.
                    PROVISIONAL_MANIFEST_TTL
                }
            }),
            Manifest::Hls(hls::Playlist::Media(_)) => st.vod_manifest_ttl,
            Manifest::Dash(mpd) if mpd.dynamic => st.live_manifest_ttl.unwrap_or_else(|| {
                mpd.minimum_update_period
                    .filter(|d| !d.is_zero())
                    .unwrap_or(Duration::from_secs(2))
                    .min(Duration::from_secs(30))
            }),
            Manifest::Dash(_) => st.vod_manifest_ttl,
        }
    }

    /// How long a blocking reload may be held: three target durations.
    pub fn blocking_limit(&self) -> Option<Duration> {
        self.media_playlist().map(|m| secs((m.target_duration * 3.0).clamp(1.0, 60.0)))
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() { s.max(0.0) } else { 1.0 })
}

/// LL-HLS delivery directives (`_HLS_msn`, `_HLS_part`, `_HLS_skip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Directives {
    pub msn: Option<u64>,
    pub part: Option<u64>,
    pub skip: bool,
}

impl Directives {
    /// `Ok(None)` when the query has no directive; `Err` for malformed ones
    /// (RFC 8216bis: a server answers 400).
    pub fn from_query(query: Option<&str>) -> Result<Option<Directives>, &'static str> {
        let Some(q) = query else { return Ok(None) };
        let mut d = Directives::default();
        let mut any = false;
        for pair in q.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "_HLS_msn" => d.msn = Some(v.parse().map_err(|_| "_HLS_msn is not a number")?),
                "_HLS_part" => d.part = Some(v.parse().map_err(|_| "_HLS_part is not a number")?),
                "_HLS_skip" => d.skip = v == "YES" || v == "v2",
                _ => continue,
            }
            any = true;
        }
        if d.part.is_some() && d.msn.is_none() {
            return Err("_HLS_part without _HLS_msn");
        }
        Ok(any.then_some(d))
    }

    pub fn blocks(&self) -> bool {
        self.msn.is_some()
    }
}

/// The query without delivery directives.
pub fn strip_directives(query: Option<&str>) -> Option<String> {
    let q = query?;
    let kept: Vec<&str> = q.split('&').filter(|p| !p.starts_with("_HLS_")).collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives() {
        assert_eq!(Directives::from_query(Some("a=1")), Ok(None));
        assert_eq!(
            Directives::from_query(Some("_HLS_msn=5&_HLS_part=2")),
            Ok(Some(Directives { msn: Some(5), part: Some(2), skip: false }))
        );
        assert!(Directives::from_query(Some("_HLS_part=2")).is_err());
        assert!(Directives::from_query(Some("_HLS_msn=x")).is_err());
        assert_eq!(strip_directives(Some("_HLS_msn=5&t=1")), Some("t=1".into()));
        assert_eq!(strip_directives(Some("_HLS_msn=5")), None);
    }

    #[test]
    fn manifest_ttls() {
        let st = StreamingPolicy::default();
        let live = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n";
        let m = Manifest::parse(MediaKind::HlsPlaylist, live.as_bytes()).unwrap();
        assert_eq!(m.default_ttl(&st), Duration::from_secs(2));
        assert_eq!(m.blocking_limit(), Some(Duration::from_secs(12)));
        let ll = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-PART-INF:PART-TARGET=1.0\n#EXTINF:4,\na.ts\n";
        let m = Manifest::parse(MediaKind::HlsPlaylist, ll.as_bytes()).unwrap();
        assert_eq!(m.default_ttl(&st), Duration::from_millis(500));
        let vod = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n#EXT-X-ENDLIST\n";
        let m = Manifest::parse(MediaKind::HlsPlaylist, vod.as_bytes()).unwrap();
        assert_eq!(m.default_ttl(&st), st.vod_manifest_ttl);
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n";
        let m = Manifest::parse(MediaKind::HlsPlaylist, master.as_bytes()).unwrap();
        assert_eq!(m.default_ttl(&st), st.master_playlist_ttl);
    }
}
