//! Runs every fuzz target's body (`fuzz/src/checks.rs`) over its committed
//! seed corpus (`fuzz/seeds/<target>/`), so the targets keep compiling and
//! their properties keep holding in the ordinary test run, without nightly
//! or cargo-fuzz. The fuzzers themselves run with `cargo +nightly fuzz run`
//! (see docs/fuzzing.md).

#[allow(dead_code)]
#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::path::Path;

fn run_seeds(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{target}: only {} seeds in {}", files.len(), dir.display());
    for file in files {
        let data = std::fs::read(&file).expect("seed");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target}: seed {} fails its check", file.display());
    }
}

#[test]
fn hls_seeds() {
    run_seeds("hls", checks::hls);
}

#[test]
fn dash_seeds() {
    run_seeds("dash", checks::dash);
}

#[test]
fn range_seeds() {
    run_seeds("range", checks::range);
}

#[test]
fn cache_control_seeds() {
    run_seeds("cache_control", checks::cache_control);
}

#[test]
fn signed_seeds() {
    run_seeds("signed", checks::signed);
}

#[test]
fn config_seeds() {
    run_seeds("config", checks::config);
}

#[test]
fn admin_json_seeds() {
    run_seeds("admin_json", checks::admin_json);
}

/// Inputs the fuzzer found where adding tokens to a malformed manifest, as
/// text, changed how it parses (entries merged, split or moved). Each is now
/// served as the origin sent it; the well-formed samples still get tokens.
#[test]
fn manifests_that_tokens_would_change_are_left_alone() {
    use mediaedge::media::{dash, hls, rewrite, MediaKind};
    const PARAMS: &str = "Policy=eyJ9&Signature=abc~-_&Key-Pair-Id=K1";
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let found = [
        ("hls/found-hls-rewrite-59d8397f.m3u8", MediaKind::HlsPlaylist),
        ("hls/found-hls-rewrite-5cdf5c5c.m3u8", MediaKind::HlsPlaylist),
        ("hls/found-hls-rewrite-6117392e.m3u8", MediaKind::HlsPlaylist),
        ("hls/found-hls-rewrite-a09cd8f4.m3u8", MediaKind::HlsPlaylist),
        ("hls/found-hls-rewrite-e9ac64be.m3u8", MediaKind::HlsPlaylist),
        ("dash/found-dash-rewrite-9f445020.mpd", MediaKind::DashMpd),
    ];
    for (name, kind) in found {
        let data = std::fs::read(seeds.join(name)).expect("finding");
        let before = rewrite::refused();
        let out = rewrite::propagate(kind, &data, PARAMS);
        // Where a rewrite is made, it parses exactly as the original did,
        // URIs aside (`propagate` checks that itself; this checks the shape
        // independently).
        if let Some(out) = &out {
            match kind {
                MediaKind::DashMpd => {
                    let (a, b) = (dash::parse(&data).unwrap(), dash::parse(out.as_bytes()).unwrap());
                    assert_eq!(a.periods.len(), b.periods.len(), "{name}");
                    assert_eq!(a.template_uris().len(), b.template_uris().len(), "{name}");
                }
                _ => match (hls::parse(&data).unwrap(), hls::parse(out.as_bytes()).unwrap()) {
                    (hls::Playlist::Media(a), hls::Playlist::Media(b)) => {
                        assert_eq!(a.segments.len(), b.segments.len(), "{name}");
                        assert_eq!(a.uris().len(), b.uris().len(), "{name}");
                    }
                    (hls::Playlist::Master(a), hls::Playlist::Master(b)) => {
                        assert_eq!(a.variants.len(), b.variants.len(), "{name}")
                    }
                    _ => panic!("{name}: the rewrite changed the playlist's kind"),
                },
            }
        } else {
            assert!(rewrite::refused() > before, "{name}: a refusal is counted");
        }
    }
    // The well-formed samples are rewritten.
    for (name, kind) in [
        ("hls/ll-hls.m3u8", MediaKind::HlsPlaylist),
        ("hls/master.m3u8", MediaKind::HlsPlaylist),
        ("hls/vod.m3u8", MediaKind::HlsPlaylist),
        ("dash/static.mpd", MediaKind::DashMpd),
        ("dash/dynamic.mpd", MediaKind::DashMpd),
        ("dash/low-latency.mpd", MediaKind::DashMpd),
    ] {
        let data = std::fs::read(seeds.join(name)).expect("seed");
        let out = rewrite::propagate(kind, &data, PARAMS).unwrap_or_else(|| panic!("{name} was not rewritten"));
        assert!(out.contains("Signature=abc"), "{name}");
    }
}
