//! The documented configuration examples are valid, and the front door holds:
//! the README's test command is the one CI runs.

use std::path::Path;

#[test]
fn documented_examples_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("docs/examples exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("toml") {
            let cfg = mediaedge::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!cfg.distributions.is_empty(), "{}", path.display());
            n += 1;
        }
    }
    assert!(n > 0, "no examples found");
}

/// Every complete configuration shown in the docs (a ```toml block with a
/// distribution) is valid.
#[test]
fn configurations_in_the_docs_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for block in text.split("```toml\n").skip(1) {
            let block = block.split("```").next().unwrap_or("");
            if !block.contains("[[distributions]]") {
                continue;
            }
            // The text itself is valid: parsing reads no file.
            let mut cfg = mediaedge::Config::from_text(block, &path).unwrap_or_else(|e| panic!("{e}\n{block}"));
            assert!(!cfg.distributions.is_empty());
            match cfg.materialise() {
                Ok(_) => {}
                // Examples name key files the reader creates.
                Err(e)
                    if e.field.as_deref().is_some_and(|f| f.ends_with(".public_key"))
                        && e.message.starts_with("cannot read") => {}
                Err(e) => panic!("{e}\n{block}"),
            }
            n += 1;
        }
    }
    assert!(n >= 3, "found {n} configurations in docs/");
}

#[test]
fn the_demo_config_builds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-media");
    let cfg = mediaedge::Config::demo(&root, None).expect("demo config");
    assert_eq!(cfg.server.listen[0].to_string(), "127.0.0.1:8080");
    assert!(root.join("hls-ts/master.m3u8").is_file());
}

#[test]
fn ci_runs_the_readme_test_command() {
    // The README's test command is a script that installs the real peers and
    // runs the tests; CI runs that same script, and the script runs them all.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    let script = std::fs::read_to_string(root.join("scripts/test.sh")).unwrap();
    let cmd = "bash scripts/test.sh";
    assert!(readme.lines().any(|l| l.trim() == cmd), "README names `{cmd}`");
    assert!(ci.lines().any(|l| l.trim().starts_with(&format!("exec {cmd}"))), ".ci/run runs `{cmd}`");
    assert!(script.lines().any(|l| l.trim() == "cargo test --all-targets"), "the script runs every test");
}
