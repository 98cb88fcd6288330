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
