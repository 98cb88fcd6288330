//! The disk tier, with the real binary: objects pushed out of memory served
//! from disk (whole and in ranges), a restart after SIGKILL serving what is
//! on disk, corrupted and torn records refetched, invalidations that hold
//! across restarts (including one recorded while the edge was down), second-
//! hit admission, the size bound, and config errors.

mod common;
#[path = "common/disk_edge.rs"]
mod disk_edge;

use common::{client, TempDir, TestOrigin, ADMIN_TOKEN};
use disk_edge::{catalogue, find_on_disk, segments, write_config, Edge};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Waits until every body is on disk (the writer works behind the fills).
async fn wait_on_disk(dir: &Path, bodies: &[&bytes::Bytes]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !bodies.iter().all(|b| body_on_disk(dir, b).is_some()) {
        assert!(Instant::now() < deadline, "objects did not reach the disk within 30s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where a body's first bytes are on disk: (segment file, offset).
fn body_on_disk(dir: &Path, body: &[u8]) -> Option<(PathBuf, usize)> {
    find_on_disk(dir, &body[..64])
}

#[tokio::test]
async fn objects_pushed_out_of_memory_are_served_from_disk_whole_and_in_ranges() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-tier");
    // 2 MiB of memory (objects up to 256 KiB) under 24 MiB of disk.
    write_config(
        dir.path(),
        &origin.url(),
        "2MiB",
        "size = \"24MiB\"\nsegment_size = \"1MiB\"\nadmission = \"always\"",
    );
    let edge = Edge::start(dir.path()).await;
    let objects = catalogue(&origin, 40, 200 << 10);
    for (path, body) in &objects {
        let (s, b) = edge.get(path, &[]).await;
        assert_eq!((s, b.len()), (200, body.len()));
    }
    wait_on_disk(dir.path(), &objects.iter().map(|(_, b)| b).collect::<Vec<_>>()).await;
    // 8 MB went through 2 MiB of memory: most are on disk only now.
    for (path, body) in &objects {
        let (s, b) = edge.get(path, &[]).await;
        assert_eq!(s, 200);
        assert!(b == *body, "{path}: the body from disk differs");
        assert_eq!(origin.hits(path), 1, "{path} was fetched again");
    }
    let (path, body) = &objects[3];
    let (s, b) = edge.get(path, &[("range", "bytes=150000-180000")]).await;
    assert_eq!(s, 206);
    assert_eq!(&b[..], &body[150000..=180000]);
    assert_eq!(origin.hits(path), 1);
}

#[tokio::test]
async fn a_restart_after_sigkill_serves_what_is_on_disk() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-restart");
    write_config(
        dir.path(),
        &origin.url(),
        "4MiB",
        "size = \"24MiB\"\nsegment_size = \"1MiB\"\nadmission = \"always\"",
    );
    let edge = Edge::start(dir.path()).await;
    let objects = catalogue(&origin, 12, 300 << 10);
    for (path, _) in &objects {
        assert_eq!(edge.get(path, &[]).await.0, 200);
    }
    wait_on_disk(dir.path(), &objects.iter().map(|(_, b)| b).collect::<Vec<_>>()).await;
    edge.kill();
    let edge = Edge::start(dir.path()).await;
    for (path, body) in &objects {
        let (s, b) = edge.get(path, &[]).await;
        assert_eq!(s, 200);
        assert!(b == *body, "{path}: the body after the restart differs");
        assert_eq!(origin.hits(path), 1, "{path} was fetched again after the restart");
    }
}

#[tokio::test]
async fn corrupted_and_torn_records_are_dropped_and_refetched_never_served() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-corrupt");
    write_config(
        dir.path(),
        &origin.url(),
        "4MiB",
        "size = \"24MiB\"\nsegment_size = \"1MiB\"\nadmission = \"always\"",
    );
    let edge = Edge::start(dir.path()).await;
    let objects = catalogue(&origin, 6, 300 << 10);
    for (path, _) in &objects {
        assert_eq!(edge.get(path, &[]).await.0, 200);
    }
    wait_on_disk(dir.path(), &objects.iter().map(|(_, b)| b).collect::<Vec<_>>()).await;
    edge.kill();
    // Flip one byte in the middle of the first object's body...
    let (file, at) = body_on_disk(dir.path(), &objects[0].1).expect("on disk");
    let mut data = std::fs::read(&file).unwrap();
    data[at + 100_000] ^= 0x55;
    std::fs::write(&file, &data).unwrap();
    // ...and cut the segment holding the last object in the middle of its body.
    let (file, at) = body_on_disk(dir.path(), &objects[5].1).expect("on disk");
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len((at + 1000) as u64).unwrap();
    drop(f);
    let edge = Edge::start(dir.path()).await;
    for (i, (path, body)) in objects.iter().enumerate() {
        let (s, b) = edge.get(path, &[]).await;
        assert_eq!(s, 200);
        assert!(b == *body, "{path}: a damaged copy was served");
        let expected = if i == 0 || i == 5 { 2 } else { 1 };
        assert_eq!(origin.hits(path), expected, "{path}: origin requests");
    }
}

#[tokio::test]
async fn invalidations_hold_across_restarts_including_one_recorded_while_down() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-invalidate");
    write_config(
        dir.path(),
        &origin.url(),
        "4MiB",
        "size = \"24MiB\"\nsegment_size = \"1MiB\"\nadmission = \"always\"",
    );
    let edge = Edge::start(dir.path()).await;
    let objects = catalogue(&origin, 3, 100 << 10);
    for (path, _) in &objects {
        assert_eq!(edge.get(path, &[]).await.0, 200);
    }
    wait_on_disk(dir.path(), &objects.iter().map(|(_, b)| b).collect::<Vec<_>>()).await;
    // /v/0.ts is invalidated through the admin API while the edge runs.
    let c = client();
    let r = c
        .post(format!("{}/v1/distributions/ETEST/invalidations", edge.admin))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(r#"{"paths": ["/v/0.ts"], "caller_reference": "live"}"#)
        .send()
        .await
        .expect("invalidation");
    assert_eq!(r.status().as_u16(), 201);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c
            .get(format!("{}/v1/distributions/ETEST/invalidations?max_items=10", edge.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("list");
        if r.text().await.unwrap_or_default().contains("Completed") {
            break;
        }
        assert!(Instant::now() < deadline, "the invalidation did not complete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    edge.kill();
    // /v/1.ts is invalidated while the edge is down (recorded in its state store).
    {
        let store = mediaedge::state::StateStore::open(&dir.path().join("state")).expect("state store");
        let (record, _) = store.create_invalidation("ETEST", "while-down", &["/v/1.ts".to_string()]).expect("record");
        store.complete_invalidation("ETEST", &record.id).expect("completed");
    }
    let edge = Edge::start(dir.path()).await;
    for (i, (path, body)) in objects.iter().enumerate() {
        let (s, b) = edge.get(path, &[]).await;
        assert_eq!(s, 200);
        assert!(b == *body);
        let expected = if i < 2 { 2 } else { 1 };
        assert_eq!(origin.hits(path), expected, "{path}: origin requests after the restart");
    }
}

#[tokio::test]
async fn second_hit_admission_keeps_one_hit_objects_off_the_disk() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-admission");
    // The default admission: second-hit.
    write_config(dir.path(), &origin.url(), "4MiB", "size = \"24MiB\"\nsegment_size = \"1MiB\"");
    let edge = Edge::start(dir.path()).await;
    let objects = catalogue(&origin, 83, 100 << 10);
    let (once, admitted, hot, others) = (&objects[0], &objects[1], &objects[2], &objects[3..]);
    // Requested once: never written. Twice: admitted, and written when memory
    // evicts it (the tiers stay exclusive). Four times (hot in memory):
    // written at once, so that it survives a kill.
    for (object, times) in [(once, 1), (admitted, 2), (hot, 4)] {
        for _ in 0..times {
            assert_eq!(edge.get(&object.0, &[]).await.0, 200);
        }
    }
    wait_on_disk(dir.path(), &[&hot.1]).await;
    assert!(body_on_disk(dir.path(), &admitted.1).is_none(), "written while memory held it, not hot");
    // 8 MB of objects requested once push the others out of memory: the
    // admitted one goes down to disk; none of the one-hit objects does.
    for (path, _) in others {
        assert_eq!(edge.get(path, &[]).await.0, 200);
    }
    wait_on_disk(dir.path(), &[&admitted.1]).await;
    assert!(edge.metric("mediaedge_disk_write_backs_total").await >= 1.0);
    // The writer works in order: what reached the disk did so before now.
    for (path, body) in std::iter::once(once).chain(others) {
        assert!(body_on_disk(dir.path(), body).is_none(), "{path}, requested once, was written to disk");
    }
    edge.kill();
    let edge = Edge::start(dir.path()).await;
    assert_eq!(edge.get(&hot.0, &[]).await.1, hot.1);
    assert_eq!(edge.get(&admitted.0, &[]).await.1, admitted.1);
    assert_eq!(edge.get(&once.0, &[]).await.1, once.1);
    assert_eq!((origin.hits(&hot.0), origin.hits(&admitted.0), origin.hits(&once.0)), (1, 1, 2));
}

#[tokio::test]
async fn the_disk_stays_within_its_size_and_evicts_the_oldest() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-bound");
    write_config(dir.path(), &origin.url(), "2MiB", "size = \"8MiB\"\nsegment_size = \"1MiB\"\nadmission = \"always\"");
    let edge = Edge::start(dir.path()).await;
    // 30 × 200 KiB = 6 MB through a ring of 8 segments, 4 objects each, twice over.
    let objects = catalogue(&origin, 60, 200 << 10);
    for (path, _) in &objects {
        assert_eq!(edge.get(path, &[]).await.0, 200);
    }
    wait_on_disk(dir.path(), &[&objects[59].1]).await;
    let total: u64 = segments(dir.path()).iter().map(|p| std::fs::metadata(p).map_or(0, |m| m.len())).sum();
    assert!(total <= 8 << 20, "the segment files hold {total} bytes, more than 8 MiB");
    assert_eq!(segments(dir.path()).len(), 8);
    // The first objects were evicted (from memory and disk): fetched again.
    assert!(body_on_disk(dir.path(), &objects[0].1).is_none());
    assert_eq!(edge.get(&objects[0].0, &[]).await.1, objects[0].1);
    assert_eq!(origin.hits(&objects[0].0), 2);
    // The last ones are still on disk.
    assert_eq!(edge.get(&objects[57].0, &[]).await.1, objects[57].1);
    assert_eq!(origin.hits(&objects[57].0), 1);
}

#[tokio::test]
async fn an_unusable_cache_directory_leaves_the_edge_serving_from_memory() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-unusable");
    write_config(dir.path(), &origin.url(), "4MiB", "size = \"24MiB\"");
    // The cache path is a file: no directory can be made there.
    std::fs::write(dir.path().join("cache"), b"not a directory").unwrap();
    let edge = Edge::start(dir.path()).await;
    let objects = catalogue(&origin, 2, 10 << 10);
    for _ in 0..2 {
        for (path, body) in &objects {
            assert_eq!(edge.get(path, &[]).await, (200, body.clone()));
        }
    }
    assert_eq!(origin.hits(&objects[0].0), 1, "memory still caches");
}

#[test]
fn disk_settings_are_checked_with_file_line_and_field() {
    let base = "[cache]\nmemory = \"64MiB\"\n\n[cache.disk]\n";
    let cases = [
        ("size = \"20GiB\"\n", "cache.disk.path"),
        ("path = \"/tmp/x\"\n", "cache.disk.size"),
        ("path = \"/tmp/x\"\nsize = \"1MiB\"\n", "cache.disk.size"),
        ("path = \"/tmp/x\"\nsize = \"64MiB\"\nsegment_size = \"32MiB\"\n", "cache.disk.segment_size"),
        ("path = \"/tmp/x\"\nsize = \"64MiB\"\nadmission = \"sometimes\"\n", "cache.disk.admission"),
    ];
    for (text, field) in cases {
        let err =
            mediaedge::Config::parse(&format!("{base}{text}"), Path::new("edge.toml")).expect_err(text).to_string();
        assert!(err.starts_with("edge.toml:"), "{err}");
        assert!(err.contains(field), "{text}: {err}");
    }
    let bad_line = mediaedge::Config::parse(
        &format!("{base}path = \"/tmp/x\"\nsize = \"64MiB\"\nadmission = \"sometimes\"\n"),
        Path::new("edge.toml"),
    )
    .expect_err("bad admission")
    .to_string();
    assert!(bad_line.starts_with("edge.toml:7:"), "{bad_line}");
    let ok = mediaedge::Config::parse(
        &format!("{base}path = \"cache\"\nsize = \"20GiB\"\n"),
        Path::new("/etc/me/edge.toml"),
    )
    .expect("valid");
    let disk = ok.cache.disk.expect("disk");
    assert_eq!(disk.path, Path::new("/etc/me/cache"));
    assert_eq!((disk.size_bytes, disk.segment_bytes), (20 << 30, 256 << 20));
}
