//! Streaming media formats: telling manifests from segments, and parsing them.
//!
//! `classify` sorts a request path (and the origin's `Content-Type`) into the
//! kinds the edge treats differently: manifests change, segments do not. `dash`
//! parses MPDs. Parsers never panic on hostile input; they return `MediaError`.

use std::fmt;

pub mod dash;
pub mod hls;
pub mod live;
pub mod policy;
pub mod rewrite;

/// A manifest could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaError(pub String);

impl fmt::Display for MediaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MediaError {}

/// What a URL holds, as far as caching is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// An HLS multivariant or media playlist.
    HlsPlaylist,
    /// A DASH Media Presentation Description.
    DashMpd,
    /// An initialization segment (fMP4/CMAF header: `ftyp` + `moov`).
    InitSegment,
    /// A media segment (or a whole progressive file).
    Segment,
    /// A subtitle file or subtitle segment.
    Subtitle,
    /// Anything else.
    Other,
}

/// Classifies a request by its path extension and the response's `Content-Type`.
///
/// Manifest signals win from either source: a playlist served from a path
/// without `.m3u8` but as `application/vnd.apple.mpegurl` is a playlist, and a
/// `.m3u8` path is a playlist whatever its type says (mistaking a segment for
/// a manifest costs a little caching; the reverse stalls live players).
/// Otherwise the extension decides, and the `Content-Type` only when the
/// extension is unknown. The query string and fragment are ignored; extensions
/// are compared case-insensitively.
pub fn classify(path: &str, content_type: Option<&str>) -> MediaKind {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let name = path.rsplit('/').next().unwrap_or("").to_ascii_lowercase();
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) => (stem, ext),
        None => (name.as_str(), ""),
    };
    let mime =
        content_type.map(|ct| ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase()).unwrap_or_default();

    match (ext, mime.as_str()) {
        ("m3u8", _)
        | (_, "application/vnd.apple.mpegurl" | "application/x-mpegurl" | "audio/mpegurl" | "audio/x-mpegurl") => {
            return MediaKind::HlsPlaylist
        }
        ("mpd", _) | (_, "application/dash+xml") => return MediaKind::DashMpd,
        _ => {}
    }

    match ext {
        "cmfi" => MediaKind::InitSegment,
        "mp4" | "m4s" | "m4v" | "m4a" if stem.contains("init") => MediaKind::InitSegment,
        "ts" | "m4s" | "mp4" | "m4v" | "m4a" | "aac" | "ac3" | "ec3" | "cmfv" | "cmfa" | "mp3" => MediaKind::Segment,
        "vtt" | "webvtt" | "cmft" | "ttml" => MediaKind::Subtitle,
        _ => match mime.as_str() {
            "text/vtt" | "application/ttml+xml" => MediaKind::Subtitle,
            "video/mp2t" | "video/mp4" | "audio/mp4" | "video/iso.segment" | "audio/aac" | "audio/mpeg"
            | "audio/ac3" | "audio/eac3" => MediaKind::Segment,
            _ => MediaKind::Other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_by_extension_and_type() {
        assert_eq!(classify("/live/master.m3u8", None), MediaKind::HlsPlaylist);
        assert_eq!(classify("/live/INDEX.M3U8?token=abc", None), MediaKind::HlsPlaylist);
        assert_eq!(classify("/live/index", Some("application/vnd.apple.mpegurl")), MediaKind::HlsPlaylist);
        assert_eq!(classify("/live/index", Some("Application/X-MPEGURL; charset=utf-8")), MediaKind::HlsPlaylist);
        assert_eq!(classify("/live/index", Some("audio/mpegurl")), MediaKind::HlsPlaylist);
        assert_eq!(classify("/live/index.m3u8", Some("text/plain")), MediaKind::HlsPlaylist);
        assert_eq!(classify("/dash/manifest.mpd", None), MediaKind::DashMpd);
        assert_eq!(classify("/dash/manifest", Some("application/dash+xml")), MediaKind::DashMpd);
        // A manifest type wins over a segment extension.
        assert_eq!(classify("/odd/name.ts", Some("application/vnd.apple.mpegurl")), MediaKind::HlsPlaylist);
    }

    #[test]
    fn init_segments_by_name() {
        for path in [
            "/v/init.mp4",
            "/v/init-0.m4s",
            "/v/video_init.mp4",
            "/v/INIT.M4S",
            "/v/audio-init-eng.m4a",
            "/v/init.m4v",
            "/v/header.cmfi",
            "/dash/init-1.m4s?x=1",
        ] {
            assert_eq!(classify(path, None), MediaKind::InitSegment, "{path}");
        }
    }

    #[test]
    fn segments_and_subtitles() {
        for path in [
            "/v/seg-1.ts",
            "/v/chunk-0-00001.m4s",
            "/v/movie.mp4",
            "/a/seg.m4a",
            "/a/seg.aac",
            "/a/seg.ac3",
            "/a/seg.ec3",
            "/a/seg.mp3",
            "/v/seg.cmfv",
            "/a/seg.cmfa",
            "/v/seg.m4v",
        ] {
            assert_eq!(classify(path, None), MediaKind::Segment, "{path}");
        }
        assert_eq!(classify("/s/en/seg-3.vtt", None), MediaKind::Subtitle);
        assert_eq!(classify("/s/en/seg-3.webvtt", None), MediaKind::Subtitle);
        assert_eq!(classify("/s/en/seg-3", Some("text/vtt")), MediaKind::Subtitle);
        assert_eq!(classify("/v/seg-3", Some("video/mp2t")), MediaKind::Segment);
    }

    #[test]
    fn other() {
        assert_eq!(classify("/index.html", Some("text/html")), MediaKind::Other);
        assert_eq!(classify("/", None), MediaKind::Other);
        assert_eq!(classify("", None), MediaKind::Other);
        assert_eq!(classify("/noext", None), MediaKind::Other);
        assert_eq!(classify("/dir.m3u8/file", None), MediaKind::Other);
        assert_eq!(classify("/a.b/c.d.e", Some("")), MediaKind::Other);
        assert_eq!(classify("/ünï/cödé.json", Some("application/json")), MediaKind::Other);
    }
}
