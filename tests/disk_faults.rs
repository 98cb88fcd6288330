//! The disk tier under faults and its counters, with the real binary: the
//! `/metrics` and stats API figures after real disk hits; a disk that fills
//! (segment files on /dev/full, and a real 3 MiB tmpfs: ENOSPC), files removed or cut under the
//! running edge, files made immutable (writes fail even as root); a byte
//! flipped on disk while the edge runs; a 304 refreshing the disk copy.
//! In each fault, viewers keep getting 200s with the right bytes, and the
//! log and the metrics say what happened.

mod common;
#[path = "common/disk_edge.rs"]
mod disk_edge;

use common::{client, payload, Script, TempDir, TestOrigin};
use disk_edge::{catalogue, find_on_disk, segments, write_config, Edge};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Every object answers 200 with its own bytes.
async fn all_served(edge: &Edge, objects: &[(String, bytes::Bytes)]) {
    for (path, body) in objects {
        let (s, b) = edge.get(path, &[]).await;
        assert_eq!(s, 200, "{path}");
        assert!(b == *body, "{path}: wrong bytes");
    }
}

/// Serves `objects` (4 MB) through a disk that fills: writing stops with one
/// log line naming ENOSPC and the metrics, and every viewer gets its bytes,
/// then and twice more (what reached the disk before it filled still serves;
/// the rest is fetched again).
async fn fills_up(edge: &Edge, objects: &[(String, bytes::Bytes)]) {
    all_served(edge, objects).await;
    edge.wait_metric("mediaedge_disk_writable", 0.0).await;
    let log = edge.log_text();
    assert!(log.contains("disk cache write failed"), "{log}");
    assert!(log.contains("No space left on device"), "{log}");
    assert_eq!(log.matches("disk cache write failed").count(), 1, "logged once: {log}");
    assert!(edge.metric("mediaedge_disk_errors_total{op=\"write\"}").await >= 1.0);
    all_served(edge, objects).await;
    all_served(edge, objects).await;
}

#[tokio::test]
async fn metrics_and_stats_count_the_tiers_after_real_disk_hits() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-metrics");
    write_config(
        dir.path(),
        &origin.url(),
        "2MiB",
        "size = \"24MiB\"\nsegment_size = \"1MiB\"\nadmission = \"always\"",
    );
    let edge = Edge::start(dir.path()).await;
    let objects = catalogue(&origin, 20, 200 << 10);
    all_served(&edge, &objects).await;
    edge.wait_metric("mediaedge_disk_writes_total", 20.0).await;
    assert_eq!(edge.metric("mediaedge_disk_writable").await, 1.0);
    assert_eq!(edge.metric("mediaedge_cache_tier_objects{tier=\"disk\"}").await, 20.0);
    assert_eq!(edge.metric("mediaedge_cache_tier_bytes{tier=\"disk\"}").await, (20 * (200 << 10)) as f64);
    assert_eq!(edge.metric("mediaedge_disk_write_bytes_total").await, (20 * (200 << 10)) as f64);
    assert_eq!(edge.metric("mediaedge_cache_tier_capacity_bytes{tier=\"disk\"}").await, (24 << 20) as f64);
    let lookups_before = edge.metric("mediaedge_cache_tier_lookups_total{tier=\"disk\"}").await;
    // A miss is looked up before it joins the collapsing map and again as
    // the fill's leader: at least once per fill.
    assert!(lookups_before >= 20.0, "each fill looked on disk first: {lookups_before}");
    assert_eq!(edge.metric("mediaedge_cache_tier_hits_total{tier=\"disk\"}").await, 0.0);
    // 4 MB went through 2 MiB of memory: the second pass finds most on disk.
    all_served(&edge, &objects).await;
    for (path, _) in &objects {
        assert_eq!(origin.hits(path), 1, "{path} was fetched again");
    }
    let disk_hits = edge.metric("mediaedge_cache_tier_hits_total{tier=\"disk\"}").await;
    let memory_hits = edge.metric("mediaedge_cache_tier_hits_total{tier=\"memory\"}").await;
    assert!(disk_hits >= 1.0, "no disk hit");
    assert_eq!(disk_hits + memory_hits, 20.0, "every second request hit one tier");
    let lookups = edge.metric("mediaedge_cache_tier_lookups_total{tier=\"disk\"}").await;
    assert_eq!(lookups, lookups_before + disk_hits, "a hit is one lookup");
    assert_eq!(edge.metric("mediaedge_cache_tier_lookups_total{tier=\"memory\"}").await, memory_hits + lookups);
    assert_eq!(edge.metric("mediaedge_disk_hit_bytes_total").await, disk_hits * (200 << 10) as f64);
    // A record hit once is served from disk without displacing memory.
    assert_eq!(edge.metric("mediaedge_disk_promotions_total").await, 0.0);
    assert!(edge.metric("mediaedge_disk_read_seconds_count").await >= disk_hits);
    assert!(edge.metric("mediaedge_disk_write_seconds_count").await >= 20.0);
    assert_eq!(edge.metric("mediaedge_disk_admissions_refused_total{reason=\"too_large\"}").await, 0.0);
    assert_eq!(edge.metric("mediaedge_disk_errors_total{op=\"write\"}").await, 0.0);

    let stats: serde_json::Value = serde_json::from_str(&edge.admin_text("/v1/stats").await).expect("stats JSON");
    let disk = &stats["cache"]["disk"];
    assert_eq!(disk["hits"].as_f64(), Some(disk_hits), "{stats}");
    assert_eq!(disk["objects"], 20);
    assert_eq!(disk["writable"], true);
    assert_eq!(disk["admissions_refused"]["queue_full"], 0);
    assert_eq!(stats["cache"]["memory"]["hits"].as_f64(), Some(memory_hits));
    let ratio = disk["hit_ratio"].as_f64().unwrap_or(-1.0);
    assert!((ratio - disk_hits / lookups).abs() < 1e-9, "{stats}");
    // Its second disk hit promotes it into memory.
    all_served(&edge, &objects).await;
    assert!(edge.metric("mediaedge_disk_promotions_total").await >= 1.0, "a record hit twice was not promoted");
}

#[tokio::test]
async fn a_disk_that_fills_stops_writes_and_viewers_never_notice() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-full");
    write_config(dir.path(), &origin.url(), "2MiB", "size = \"8MiB\"\nsegment_size = \"1MiB\"\nadmission = \"always\"");
    // Segments 2 to 7 are /dev/full: once 0 and 1 are full, every write
    // fails with ENOSPC, as on a filesystem that filled up.
    std::fs::create_dir_all(dir.path().join("cache")).unwrap();
    for id in 2..8 {
        std::os::unix::fs::symlink("/dev/full", dir.path().join(format!("cache/seg-{id:05}.dat"))).unwrap();
    }
    let edge = Edge::start(dir.path()).await;
    let objects = catalogue(&origin, 20, 200 << 10);
    fills_up(&edge, &objects).await;
    for (path, _) in &objects[..4] {
        assert_eq!(origin.hits(path), 1, "{path}: written before the disk filled, it serves from disk or memory");
    }
    assert!(edge.metric("mediaedge_cache_tier_hits_total{tier=\"disk\"}").await >= 1.0);
    assert!(edge.metric("mediaedge_disk_admissions_refused_total{reason=\"not_writing\"}").await >= 1.0);
}

/// A tmpfs mounted for a test, unmounted when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn tmpfs(at: PathBuf, size: &str) -> Mounted {
        std::fs::create_dir_all(&at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root (CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mounted(at)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_real_filesystem_that_fills_stops_writes_and_viewers_never_notice() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-tmpfs-full");
    // The configured size (8 MiB) is more than the filesystem holds (3 MiB):
    // writes fail with ENOSPC once it is full.
    let _fs = Mounted::tmpfs(dir.path().join("cache"), "3m");
    write_config(dir.path(), &origin.url(), "2MiB", "size = \"8MiB\"\nsegment_size = \"1MiB\"\nadmission = \"always\"");
    let edge = Edge::start(dir.path()).await;
    let objects = catalogue(&origin, 20, 200 << 10);
    fills_up(&edge, &objects).await;
    let written = edge.metric("mediaedge_disk_writes_total").await;
    assert!((1.0..20.0).contains(&written), "{written} objects written to a 3 MiB filesystem");
    assert!(edge.metric("mediaedge_cache_tier_hits_total{tier=\"disk\"}").await >= 1.0);
    assert!(edge.metric("mediaedge_disk_admissions_refused_total{reason=\"not_writing\"}").await >= 1.0);
    drop(edge);
}

#[tokio::test]
async fn a_cache_directory_removed_under_the_edge_leaves_it_memory_only() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-removed");
    write_config(
        dir.path(),
        &origin.url(),
        "2MiB",
        "size = \"24MiB\"\nsegment_size = \"1MiB\"\nadmission = \"always\"",
    );
    let edge = Edge::start(dir.path()).await;
    let objects = catalogue(&origin, 20, 200 << 10);
    all_served(&edge, &objects[..10]).await;
    edge.wait_metric("mediaedge_disk_writes_total", 10.0).await;
    std::fs::remove_dir_all(dir.path().join("cache")).unwrap();
    // The next write finds the files gone.
    all_served(&edge, &objects[10..]).await;
    edge.wait_metric("mediaedge_disk_writable", 0.0).await;
    let log = edge.log_text();
    assert!(log.contains("disk cache files removed under the edge"), "{log}");
    assert_eq!(edge.metric("mediaedge_cache_tier_objects{tier=\"disk\"}").await, 0.0);
    all_served(&edge, &objects).await;
    all_served(&edge, &objects).await;
    assert!(!dir.path().join("cache").exists(), "nothing was written where the directory was");
}

#[tokio::test]
async fn segment_files_cut_under_the_edge_are_refetched_not_failed() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-cut");
    write_config(
        dir.path(),
        &origin.url(),
        "2MiB",
        "size = \"24MiB\"\nsegment_size = \"1MiB\"\nadmission = \"always\"",
    );
    let edge = Edge::start(dir.path()).await;
    let objects = catalogue(&origin, 20, 200 << 10);
    all_served(&edge, &objects).await;
    edge.wait_metric("mediaedge_disk_writes_total", 20.0).await;
    for p in segments(dir.path()) {
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(100).unwrap();
    }
    all_served(&edge, &objects).await;
    let refetched = objects.iter().filter(|(p, _)| origin.hits(p) == 2).count();
    assert!(refetched >= 1, "no object was looked for on disk");
    assert_eq!(edge.metric("mediaedge_disk_errors_total{op=\"read\"}").await, refetched as f64);
    assert_eq!(edge.metric("mediaedge_cache_tier_hits_total{tier=\"disk\"}").await, 0.0);
    assert!(edge.log_text().contains("disk cache read failed"));
}

/// Clears the immutable flag again, whatever the test did.
struct Immutable(Vec<PathBuf>);

impl Drop for Immutable {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::process::Command::new("chattr").arg("-i").arg(p).status();
        }
    }
}

#[tokio::test]
async fn files_made_read_only_stop_writes_and_viewers_never_notice_and_writes_resume_once_fixed() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-readonly");
    write_config(
        dir.path(),
        &origin.url(),
        "2MiB",
        "size = \"24MiB\"\nsegment_size = \"1MiB\"\nadmission = \"always\"\nwrite_retry = \"1s\"",
    );
    let edge = Edge::start(dir.path()).await;
    let objects = catalogue(&origin, 20, 200 << 10);
    all_served(&edge, &objects[..4]).await;
    edge.wait_metric("mediaedge_disk_writes_total", 4.0).await;
    // As root, permission bits do not stop writes; the immutable flag does,
    // even through descriptors already open.
    let mut files = segments(dir.path());
    files.push(dir.path().join("cache"));
    let guard = Immutable(files.clone());
    for p in &files {
        let ok = std::process::Command::new("chattr").arg("+i").arg(p).status().is_ok_and(|s| s.success());
        assert!(ok, "chattr +i {} failed: this test needs a filesystem with the immutable flag", p.display());
    }
    all_served(&edge, &objects[4..]).await;
    edge.wait_metric("mediaedge_disk_writable", 0.0).await;
    let log = edge.log_text();
    assert!(log.contains("disk cache write failed"), "{log}");
    assert!(log.contains("Operation not permitted"), "{log}");
    all_served(&edge, &objects).await;
    for (path, _) in &objects[..4] {
        assert_eq!(origin.hits(path), 1, "{path}: written before, it still serves");
    }
    // The flag cleared: within `write_retry`, writing resumes and new
    // objects are written again.
    drop(guard);
    edge.wait_metric("mediaedge_disk_writable", 1.0).await;
    assert!(edge.log_text().contains("disk cache writes resume"));
    let written = edge.metric("mediaedge_disk_writes_total").await;
    let more: Vec<(String, bytes::Bytes)> = (0..2)
        .map(|i| {
            let (path, body) = (format!("/after/{i}.ts"), payload(200 << 10, 900 + i));
            origin.set(&path, Script::ok(body.clone()));
            (path, body)
        })
        .collect();
    all_served(&edge, &more).await;
    edge.wait_metric("mediaedge_disk_writes_total", written + 2.0).await;
}

#[tokio::test]
async fn a_byte_flipped_on_disk_while_the_edge_runs_is_never_served() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-flip");
    write_config(
        dir.path(),
        &origin.url(),
        "2MiB",
        "size = \"24MiB\"\nsegment_size = \"1MiB\"\nadmission = \"always\"",
    );
    let edge = Edge::start(dir.path()).await;
    let objects = catalogue(&origin, 40, 200 << 10);
    all_served(&edge, &objects).await;
    edge.wait_metric("mediaedge_disk_writes_total", 40.0).await;
    // One byte of each of the first ten bodies, changed in place.
    for (_, body) in &objects[..10] {
        let (file, at) = find_on_disk(dir.path(), &body[..64]).expect("on disk");
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&file).unwrap();
        let mut b = [0u8; 1];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut b, (at + 150_000) as u64).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[b[0] ^ 0x20], (at + 150_000) as u64).unwrap();
    }
    all_served(&edge, &objects[..10]).await;
    let refetched = objects[..10].iter().filter(|(p, _)| origin.hits(p) == 2).count();
    assert!(refetched >= 1, "every damaged object was still in memory");
    assert_eq!(edge.metric("mediaedge_disk_checksum_failures_total").await, refetched as f64);
    assert!(edge.log_text().contains("failed its checksum"));
    // The copy fetched again is good.
    all_served(&edge, &objects[..10]).await;
}

#[tokio::test]
async fn a_304_refreshes_the_disk_copy_not_only_the_memory_one() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-304");
    write_config(
        dir.path(),
        &origin.url(),
        "4MiB",
        "size = \"24MiB\"\nsegment_size = \"1MiB\"\nadmission = \"always\"",
    );
    let body = payload(100 << 10, 7);
    let short = Script::ok(body.clone())
        .header("etag", "\"v1\"")
        .header("cache-control", "max-age=1, stale-while-revalidate=60");
    origin.set("/v/a.ts", short);
    let edge = Edge::start(dir.path()).await;
    assert_eq!(edge.get("/v/a.ts", &[]).await, (200, body.clone()));
    edge.wait_metric("mediaedge_disk_writes_total", 1.0).await;
    // Stale now; the origin's 304 gives it an hour.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    origin.set("/v/a.ts", Script::ok(body.clone()).header("etag", "\"v1\"").header("cache-control", "max-age=3600"));
    assert_eq!(edge.get("/v/a.ts", &[]).await, (200, body.clone()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while origin.hits("/v/a.ts") < 2 {
        assert!(Instant::now() < deadline, "the stale copy was not revalidated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    edge.wait_metric("mediaedge_disk_writes_total", 2.0).await;
    assert!(find_on_disk(dir.path(), b"max-age=3600").is_some(), "the disk copy kept its old head");
    edge.kill();
    let edge = Edge::start(dir.path()).await;
    let r = client().get(format!("http://{}/v/a.ts", edge.addr)).send().await.expect("request");
    assert_eq!(r.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("max-age=3600"));
    assert!(r.bytes().await.expect("body") == body);
    assert_eq!(origin.hits("/v/a.ts"), 2, "the disk copy was fresh after the restart");
}
