//! The memory and disk tiers hold different objects, with the real binary:
//! an object whose disk record was let go while memory held it (its segment
//! was reused) is written back to disk when memory evicts it, and is served
//! from disk afterwards without an origin request.

mod common;
#[path = "common/disk_edge.rs"]
mod disk_edge;

use common::{payload, Script, TempDir, TestOrigin};
use disk_edge::{catalogue, write_config, Edge};

#[tokio::test]
async fn objects_memory_evicts_after_their_disk_record_went_are_written_back_and_hit_on_disk() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-exclusive");
    // 16 MiB of memory over a ring of 8 segments of 1 MiB (7 objects of
    // 128 KiB each: 56 in all).
    write_config(
        dir.path(),
        &origin.url(),
        "16MiB",
        "size = \"8MiB\"\nsegment_size = \"1MiB\"\nadmission = \"second-hit\"",
    );
    let edge = Edge::start(dir.path()).await;
    let a = catalogue(&origin, 60, 128 << 10);
    // A: 60 objects requested four times; the fourth request (a third memory
    // hit: hot in memory) writes each to disk. 60 records go round the ring
    // of 56: the first segment is reused while memory holds its objects, not
    // hit twice there since (not hot), so their records are let go rather
    // than copied forward.
    for _ in 0..4 {
        for (path, body) in &a {
            let (s, got) = edge.get(path, &[]).await;
            assert_eq!(s, 200);
            assert!(got == *body, "{path}: wrong bytes");
        }
    }
    edge.wait_at_least("mediaedge_disk_writes_total", a.len() as f64).await;
    let released = edge.metric("mediaedge_disk_released_total").await;
    assert!(released >= 1.0, "no record of an object in memory was let go: {released}");
    // C: 40 objects of 1 MiB, larger than a segment (never written), each
    // requested twice (a one-hit object never leaves memory's small queue,
    // so it would not push A out of the main one). They push A out of
    // memory; memory writes back the objects whose records went.
    for i in 0..40u64 {
        let path = format!("/c/{i}.ts");
        origin.set(&path, Script::ok(payload(1 << 20, 1000 + i)));
        for _ in 0..2 {
            assert_eq!(edge.get(&path, &[]).await.0, 200);
        }
    }
    edge.wait_at_least("mediaedge_disk_write_backs_total", 1.0).await;
    let disk_hits_before = edge.metric("mediaedge_cache_tier_hits_total{tier=\"disk\"}").await;
    // The first segment's objects are held by one tier: none is fetched again.
    for (path, body) in &a[..7] {
        let (s, got) = edge.get(path, &[]).await;
        assert_eq!(s, 200);
        assert!(got == *body, "{path}: wrong bytes");
        assert_eq!(origin.hits(path), 1, "{path} was fetched again: neither tier held it");
    }
    let disk_hits = edge.metric("mediaedge_cache_tier_hits_total{tier=\"disk\"}").await - disk_hits_before;
    assert!(disk_hits >= 1.0, "none of them came from disk");
}
