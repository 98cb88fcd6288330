//! The disk tier under faults and its counters, with the real binary: the
//! `/metrics` and stats API figures after real disk hits; a disk that fills
//! (segment files on /dev/full: ENOSPC), files removed or cut under the
//! running edge, files made immutable (writes fail even as root); a byte
//! flipped on disk while the edge runs; a 304 refreshing the disk copy.
//! In each fault, viewers keep getting 200s with the right bytes, and the
//! log and the metrics say what happened.

mod common;

use common::{client, free_port_here, payload, Script, TempDir, TestOrigin, ADMIN_TOKEN};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A `mediaedge serve` child process, its log in `dir/edge.log`; SIGKILLed on drop.
struct Edge {
    child: std::process::Child,
    addr: String,
    admin: String,
    log: PathBuf,
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Edge {
    async fn start(dir: &Path) -> Edge {
        let (port, admin_port) = (free_port_here(), free_port_here());
        let log = dir.join("edge.log");
        let err = std::fs::File::create(&log).expect("log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_mediaedge"))
            .arg("serve")
            .arg("--config")
            .arg(dir.join("edge.toml"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin_port}"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(err)
            .spawn()
            .expect("the edge binary starts");
        let edge =
            Edge { child, addr: format!("127.0.0.1:{port}"), admin: format!("http://127.0.0.1:{admin_port}"), log };
        let c = client();
        let deadline = Instant::now() + Duration::from_secs(60);
        while c.get(format!("http://{}/ready-probe", edge.addr)).send().await.is_err() {
            assert!(Instant::now() < deadline, "the edge did not answer within 60s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        edge
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn get(&self, path: &str) -> (u16, bytes::Bytes) {
        let r = client().get(format!("http://{}{path}", self.addr)).send().await.expect("request");
        let s = r.status().as_u16();
        (s, r.bytes().await.expect("body"))
    }

    async fn admin_text(&self, path: &str) -> String {
        let r = client().get(format!("{}{path}", self.admin)).bearer_auth(ADMIN_TOKEN).send().await.expect("admin");
        assert_eq!(r.status().as_u16(), 200, "{path}");
        r.text().await.expect("admin body")
    }

    /// One sample of `/metrics` (name with its labels, as written).
    async fn metric(&self, sample: &str) -> f64 {
        let text = self.admin_text("/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no sample {sample} in /metrics:\n{text}"))
    }

    /// Waits until a metric reaches a value (the writer works behind requests).
    async fn wait_metric(&self, sample: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.metric(sample).await;
            if v == want {
                return;
            }
            assert!(Instant::now() < deadline, "{sample} is {v}, not {want}, after 30s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn write_config(dir: &Path, origin: &str, memory: &str, disk: &str) {
    let text = format!(
        "[cache]\nmemory = \"{memory}\"\n\n[cache.disk]\npath = \"{}\"\n{disk}\n\n[admin]\ntoken = \"{ADMIN_TOKEN}\"\n\n{}",
        dir.join("cache").display(),
        common::config_for(origin, "")
    );
    std::fs::write(dir.join("edge.toml"), text).expect("config");
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("cache"))
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "dat"));
    v.sort();
    v
}

fn find_on_disk(dir: &Path, needle: &[u8]) -> Option<(PathBuf, usize)> {
    segments(dir).into_iter().find_map(|p| {
        let data = std::fs::read(&p).ok()?;
        data.windows(needle.len()).position(|w| w == needle).map(|at| (p, at))
    })
}

fn catalogue(origin: &TestOrigin, n: usize, len: usize) -> Vec<(String, bytes::Bytes)> {
    (0..n)
        .map(|i| {
            let path = format!("/v/{i}.ts");
            let body = payload(len, i as u64 + 1);
            origin.set(&path, Script::ok(body.clone()));
            (path, body)
        })
        .collect()
}

/// Every object answers 200 with its own bytes.
async fn all_served(edge: &Edge, objects: &[(String, bytes::Bytes)]) {
    for (path, body) in objects {
        let (s, b) = edge.get(path).await;
        assert_eq!(s, 200, "{path}");
        assert!(b == *body, "{path}: wrong bytes");
    }
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
    assert_eq!(edge.metric("mediaedge_disk_promotions_total").await, disk_hits);
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
    all_served(&edge, &objects).await;
    edge.wait_metric("mediaedge_disk_writable", 0.0).await;
    let log = edge.log_text();
    assert!(log.contains("disk cache write failed"), "{log}");
    assert!(log.contains("No space left on device"), "{log}");
    assert_eq!(log.matches("disk cache write failed").count(), 1, "logged once: {log}");
    assert!(edge.metric("mediaedge_disk_errors_total{op=\"write\"}").await >= 1.0);
    // What reached the disk before it filled still serves; the rest is
    // fetched again; every viewer gets its bytes.
    all_served(&edge, &objects).await;
    all_served(&edge, &objects).await;
    for (path, _) in &objects[..4] {
        assert_eq!(origin.hits(path), 1, "{path}: written before the disk filled, it serves from disk or memory");
    }
    assert!(edge.metric("mediaedge_cache_tier_hits_total{tier=\"disk\"}").await >= 1.0);
    assert!(edge.metric("mediaedge_disk_admissions_refused_total{reason=\"not_writing\"}").await >= 1.0);
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
async fn files_made_read_only_stop_writes_and_viewers_never_notice() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-readonly");
    write_config(
        dir.path(),
        &origin.url(),
        "2MiB",
        "size = \"24MiB\"\nsegment_size = \"1MiB\"\nadmission = \"always\"",
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
    drop(guard);
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
    assert_eq!(edge.get("/v/a.ts").await, (200, body.clone()));
    edge.wait_metric("mediaedge_disk_writes_total", 1.0).await;
    // Stale now; the origin's 304 gives it an hour.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    origin.set("/v/a.ts", Script::ok(body.clone()).header("etag", "\"v1\"").header("cache-control", "max-age=3600"));
    assert_eq!(edge.get("/v/a.ts").await, (200, body.clone()));
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
