//! Carrying a viewer's signing parameters into the URIs a manifest lists, so a
//! stream protected by one signed URL plays in players that keep no cookies
//! and drop query strings. The cached manifest is never changed: each viewer's
//! copy is made from it.

use super::{dash as mpd, hls as m3u8, MediaKind};
use std::sync::atomic::{AtomicU64, Ordering};

/// Manifests served without the viewer's tokens since the process started.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// How many manifests were served unchanged because adding tokens would have
/// changed how they parse (or they did not parse to begin with).
pub fn refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// A viewer's copy of a manifest with `params` on every URI it lists, or
/// `None` (counted in [`refused`]) when the rewrite cannot be shown to keep the
/// manifest's meaning: the copy is parsed again and must equal the original's
/// parse with only the URIs changed, each by exactly `params`. A malformed
/// manifest where the text rewrite would merge, split or move entries is
/// served as the origin sent it instead of as something else.
pub fn propagate(kind: MediaKind, manifest: &[u8], params: &str) -> Option<String> {
    let text = std::str::from_utf8(manifest).ok();
    let out = text.and_then(|text| match kind {
        MediaKind::DashMpd => checked_dash(text, params),
        _ => checked_hls(text, params),
    });
    if out.is_none() {
        REFUSED.fetch_add(1, Ordering::Relaxed);
    }
    out
}

fn checked_hls(text: &str, params: &str) -> Option<String> {
    let mut expected = m3u8::parse(text.as_bytes()).ok()?;
    let out = hls(text, params);
    let got = m3u8::parse(out.as_bytes()).ok()?;
    let add = |u: &mut String| *u = with_params(u, params);
    match &mut expected {
        m3u8::Playlist::Master(m) => {
            m.variants.iter_mut().for_each(|v| add(&mut v.uri));
            m.renditions.iter_mut().for_each(add);
        }
        m3u8::Playlist::Media(m) => {
            for s in &mut m.segments {
                add(&mut s.uri);
                s.map_uri.iter_mut().chain(s.key_uri.iter_mut()).for_each(add);
                s.parts.iter_mut().for_each(|p| add(&mut p.uri));
            }
            m.ll.pending_parts.iter_mut().for_each(|p| add(&mut p.uri));
            m.ll.preload_hints.iter_mut().for_each(|h| add(&mut h.uri));
            m.ll.rendition_reports.iter_mut().for_each(|r| add(&mut r.uri));
        }
    }
    (got == expected).then_some(out)
}

fn checked_dash(text: &str, params: &str) -> Option<String> {
    let mut expected = mpd::parse(text.as_bytes()).ok()?;
    let out = dash(text, params);
    let got = mpd::parse(out.as_bytes()).ok()?;
    let base = |u: &mut String| {
        let t = u.trim();
        if !t.is_empty() && !t.ends_with('/') {
            *u = with_params(t, params);
        }
    };
    let template = |t: &mut Option<mpd::SegmentTemplate>| {
        if let Some(t) = t {
            t.media.iter_mut().chain(t.initialization.iter_mut()).for_each(|u| *u = with_params(u, params));
        }
    };
    expected.base_urls.iter_mut().for_each(base);
    for p in &mut expected.periods {
        p.base_urls.iter_mut().for_each(base);
        for set in &mut p.adaptation_sets {
            set.base_urls.iter_mut().for_each(base);
            template(&mut set.segment_template);
            for r in &mut set.representations {
                r.base_urls.iter_mut().for_each(base);
                template(&mut r.segment_template);
            }
        }
    }
    (got == expected).then_some(out)
}

/// Appends `params` (already `name=value&...`) to a URI's query, before any
/// fragment. `data:` URIs and empty ones are left alone.
pub fn with_params(uri: &str, params: &str) -> String {
    append_params(uri, params, "&")
}

/// `with_params` with `amp` between parameters (`&amp;` inside XML).
fn append_params(uri: &str, params: &str, amp: &str) -> String {
    if uri.is_empty() || params.is_empty() || uri.starts_with("data:") {
        return uri.to_string();
    }
    let (base, fragment) = match uri.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (uri, None),
    };
    let sep = if base.contains('?') {
        if base.ends_with('?') || base.ends_with(amp) {
            ""
        } else {
            amp
        }
    } else {
        "?"
    };
    let mut out = format!("{base}{sep}{params}");
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// An HLS playlist with every URI carrying `params`: segment and variant URI
/// lines, and the `URI="..."` attribute of every tag (keys, maps, parts,
/// preload hints, rendition reports, alternate renditions, I-frame playlists).
pub fn hls(playlist: &str, params: &str) -> String {
    let mut out = String::with_capacity(playlist.len() + 64);
    for line in playlist.split_inclusive('\n') {
        let (text, end) = match line.strip_suffix('\n') {
            Some(t) => (t.strip_suffix('\r').unwrap_or(t), &line[t.strip_suffix('\r').unwrap_or(t).len()..]),
            None => (line, ""),
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            out.push_str(line);
        } else if !trimmed.starts_with('#') {
            out.push_str(&with_params(trimmed, params));
            out.push_str(end);
        } else {
            out.push_str(&rewrite_attr(text, "URI=\"", '"', params, "&"));
            out.push_str(end);
        }
    }
    out
}

/// A DASH MPD with `params` on every `SegmentTemplate` `media` and
/// `initialization` pattern and every file `BaseURL` (a directory BaseURL,
/// ending in `/`, is left alone: URLs resolved against it would lose a query).
/// The ampersands are written as `&amp;`, as XML attributes need.
pub fn dash(mpd: &str, params: &str) -> String {
    let escaped = params.replace('&', "&amp;");
    let mut s = rewrite_attr(mpd, "media=\"", '"', &escaped, "&amp;");
    s = rewrite_attr(&s, "initialization=\"", '"', &escaped, "&amp;");
    s = rewrite_attr(&s, "sourceURL=\"", '"', &escaped, "&amp;");
    let mut out = String::with_capacity(s.len() + 64);
    let mut rest = s.as_str();
    while let Some(open) = rest.find("<BaseURL") {
        let Some(gt) = rest[open..].find('>') else { break };
        let content_start = open + gt + 1;
        let Some(close) = rest[content_start..].find("</BaseURL>") else { break };
        let url = &rest[content_start..content_start + close];
        out.push_str(&rest[..content_start]);
        if url.trim().ends_with('/') || url.trim().is_empty() {
            out.push_str(url);
        } else {
            out.push_str(&append_params(url.trim(), &escaped, "&amp;"));
        }
        rest = &rest[content_start + close..];
    }
    out.push_str(rest);
    out
}

/// Rewrites every `key...quote` value in `text` (a value starting with `$`
/// inside a template is still a URI pattern and is rewritten too).
fn rewrite_attr(text: &str, key: &str, quote: char, params: &str, amp: &str) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while let Some(at) = rest.find(key) {
        // Only a whole attribute name: preceded by a separator.
        let ok = at == 0 || matches!(rest.as_bytes()[at - 1], b',' | b' ' | b':' | b'\t' | b'\n');
        let start = at + key.len();
        let Some(len) = rest[start..].find(quote) else { break };
        out.push_str(&rest[..start]);
        let value = &rest[start..start + len];
        if ok {
            out.push_str(&append_params(value, params, amp));
        } else {
            out.push_str(value);
        }
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "Policy=abc&Signature=def&Key-Pair-Id=K1";

    #[test]
    fn uris() {
        assert_eq!(with_params("a.ts", P), format!("a.ts?{P}"));
        assert_eq!(with_params("a.ts?x=1", P), format!("a.ts?x=1&{P}"));
        assert_eq!(with_params("a.ts#t=1", P), format!("a.ts?{P}#t=1"));
        assert_eq!(with_params("data:text/plain,x", P), "data:text/plain,x");
    }

    #[test]
    fn hls_playlists() {
        let pl = "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-KEY:METHOD=AES-128,URI=\"k.key\",IV=0x1\n#EXTINF:2,\nseg1.ts\n#EXT-X-PART:DURATION=0.5,URI=\"p.0.mp4\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p.1.mp4\"\n#EXT-X-RENDITION-REPORT:URI=\"../b/index.m3u8\",LAST-MSN=3\r\n";
        let out = hls(pl, P);
        for u in ["init.mp4", "k.key", "seg1.ts", "p.0.mp4", "p.1.mp4", "../b/index.m3u8"] {
            assert!(out.contains(&format!("{u}?{P}")), "{u} in\n{out}");
        }
        assert!(out.ends_with("LAST-MSN=3\r\n"));
        assert!(out.contains("IV=0x1"));
        let master = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/en.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv0/index.m3u8\n";
        let out = hls(master, P);
        assert!(out.contains(&format!("audio/en.m3u8?{P}")) && out.contains(&format!("v0/index.m3u8?{P}")));
    }

    #[test]
    fn dash_manifests() {
        let mpd = r#"<MPD><BaseURL>https://cdn/a/</BaseURL><Period><AdaptationSet><SegmentTemplate media="c-$Number$.m4s" initialization="init.m4s"/><Representation id="1"><BaseURL>file.mp4</BaseURL></Representation></AdaptationSet></Period></MPD>"#;
        let out = dash(mpd, P);
        let e = P.replace('&', "&amp;");
        assert!(out.contains(&format!("media=\"c-$Number$.m4s?{e}\"")), "{out}");
        assert!(out.contains(&format!("initialization=\"init.m4s?{e}\"")));
        assert!(out.contains(&format!("<BaseURL>file.mp4?{e}</BaseURL>")));
        assert!(out.contains("<BaseURL>https://cdn/a/</BaseURL>"));
    }

    #[test]
    fn a_template_with_a_query_stays_well_formed_xml() {
        // Found by fuzzing: a `media` template that already had a query got
        // its parameters after a bare `&`, which is not XML, and the MPD
        // served to the viewer no longer parsed.
        let mpd = r#"<MPD><Period><AdaptationSet><SegmentTemplate media="s-$Number$.m4s?v=1" initialization="i.mp4?a=1&amp;"/><BaseURL>f.mp4?x=2</BaseURL></AdaptationSet></Period></MPD>"#;
        let out = dash(mpd, P);
        let e = P.replace('&', "&amp;");
        assert!(out.contains(&format!("media=\"s-$Number$.m4s?v=1&amp;{e}\"")), "{out}");
        assert!(out.contains(&format!("initialization=\"i.mp4?a=1&amp;{e}\"")), "{out}");
        assert!(out.contains(&format!("<BaseURL>f.mp4?x=2&amp;{e}</BaseURL>")), "{out}");
        assert!(crate::media::dash::parse(out.as_bytes()).is_ok(), "{out}");
    }
}
