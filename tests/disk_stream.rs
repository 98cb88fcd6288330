//! Objects too large for the memory tier are streamed to disk as their fill
//! arrives, with the real binary: one origin request, viewers who arrive
//! during the fill read the record as it is written, later viewers (and a
//! restart after SIGKILL) are served from disk, ranges read only their
//! pieces, and a piece changed on disk under the edge is never served.

mod common;
#[path = "common/disk_edge.rs"]
mod disk_edge;

use common::{client, payload, Script, TempDir, TestOrigin};
use disk_edge::{find_on_disk, write_config, Edge};
use std::os::unix::fs::FileExt;
use std::time::Duration;

/// 8 MiB of memory: its largest object is 1 MiB. The disk's segments take
/// objects up to 16 MiB.
const MEMORY: &str = "8MiB";
const LEN: usize = 6 << 20;

fn disk(admission: &str) -> String {
    format!("size = \"64MiB\"\nsegment_size = \"16MiB\"\nadmission = \"{admission}\"")
}

/// An origin sending `LEN` bytes in 24 pieces 40 ms apart (about 1 s).
fn slow_object(origin: &TestOrigin, path: &str, seed: u64) -> bytes::Bytes {
    let body = payload(LEN, seed);
    origin.set(path, Script::ok(body.clone()).pieces(24, Duration::from_millis(40)));
    body
}

#[tokio::test]
async fn a_fill_too_large_for_memory_streams_to_disk_and_is_read_while_written() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-stream");
    write_config(dir.path(), &origin.url(), MEMORY, &disk("always"));
    let edge = Edge::start(dir.path()).await;
    let body = slow_object(&origin, "/big.mp4", 7);

    // A starts the fill; B arrives while it is still arriving (about a
    // quarter in) and is served from the record being written.
    let first = tokio::spawn({
        let addr = edge.addr.clone();
        async move { client().get(format!("http://{addr}/big.mp4")).send().await.expect("A").bytes().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, late) = edge.get("/big.mp4", &[]).await;
    assert_eq!(s, 200);
    assert!(late == body, "the viewer who came during the fill got other bytes ({} of {})", late.len(), body.len());
    let early = first.await.expect("task").expect("A's body");
    assert!(early == body, "the first viewer got other bytes");
    assert_eq!(origin.hits("/big.mp4"), 1, "the late viewer went to the origin");

    edge.wait_at_least("mediaedge_disk_streamed_total", 1.0).await;
    // Later viewers: from disk, whole or a range across pieces.
    let (s, again) = edge.get("/big.mp4", &[]).await;
    assert_eq!(s, 200);
    assert!(again == body, "the disk copy differs");
    let (from, to) = (5_000_000usize, 5_300_000usize);
    let (s, part) = edge.get("/big.mp4", &[("range", &format!("bytes={from}-{to}"))]).await;
    assert_eq!(s, 206);
    assert!(part == body.slice(from..=to), "the range differs");
    assert_eq!(origin.hits("/big.mp4"), 1);

    // A restart after SIGKILL serves it from disk.
    edge.kill();
    let edge = Edge::start(dir.path()).await;
    let (s, after) = edge.get("/big.mp4", &[]).await;
    assert_eq!(s, 200);
    assert!(after == body, "the disk copy differs after a restart");
    assert_eq!(origin.hits("/big.mp4"), 1, "refetched after the restart");

    // A byte changed on disk while the edge runs: never served.
    damaged_piece_is_never_served(&edge, dir.path(), &origin, "/big.mp4", &body, 2).await;
}

/// Changes a byte of the body on disk 3 MiB in while the edge runs: the
/// viewer who reads that piece never gets it (the response is cut), the
/// record is dropped, and the next viewer gets the origin's bytes (the
/// origin's `hits` for the path becomes `then`).
async fn damaged_piece_is_never_served(
    edge: &Edge,
    dir: &std::path::Path,
    origin: &TestOrigin,
    path: &str,
    body: &bytes::Bytes,
    then: usize,
) {
    let at = 3 << 20;
    let (file, pos) = find_on_disk(dir, &body[at..at + 64]).expect("the body is on disk");
    let f = std::fs::OpenOptions::new().write(true).open(&file).expect("segment");
    f.write_all_at(&[body[at] ^ 0xff], pos as u64).expect("write");
    drop(f);
    let cut = client().get(format!("http://{}{path}", edge.addr)).send().await.expect("request");
    if let Ok(got) = cut.bytes().await {
        assert!(got == *body, "a damaged piece was served");
    }
    assert!(edge.metric("mediaedge_disk_checksum_failures_total").await >= 1.0, "the damage was not seen");
    let (s, fresh) = edge.get(path, &[]).await;
    assert_eq!(s, 200);
    assert!(fresh == *body, "wrong bytes after the damaged record was dropped");
    assert_eq!(origin.hits(path), then, "the damaged record was not fetched again");
}

#[tokio::test]
async fn a_large_object_written_whole_is_checked_piece_by_piece() {
    // 64 MiB of memory holds it (8 MiB objects): written whole at its fill;
    // after a restart it is streamed from disk, piece by piece.
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-pieces");
    write_config(dir.path(), &origin.url(), "64MiB", &disk("always"));
    let edge = Edge::start(dir.path()).await;
    let body = payload(LEN, 5);
    origin.set("/whole.mp4", Script::ok(body.clone()));
    assert_eq!(edge.get("/whole.mp4", &[]).await.0, 200);
    edge.wait_at_least("mediaedge_disk_writes_total", 1.0).await;
    edge.kill();
    let edge = Edge::start(dir.path()).await;
    let (s, got) = edge.get("/whole.mp4", &[]).await;
    assert_eq!(s, 200);
    assert!(got == body);
    assert_eq!(origin.hits("/whole.mp4"), 1);
    damaged_piece_is_never_served(&edge, dir.path(), &origin, "/whole.mp4", &body, 2).await;
}

#[tokio::test]
async fn the_stream_to_disk_outlives_the_viewer_who_started_it() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-stream-leave");
    write_config(dir.path(), &origin.url(), MEMORY, &disk("always"));
    let edge = Edge::start(dir.path()).await;
    let body = slow_object(&origin, "/leave.mp4", 11);
    // The viewer reads 100 KB and hangs up.
    let mut r = client().get(format!("http://{}/leave.mp4", edge.addr)).send().await.expect("request");
    let mut got = 0;
    while got < 100_000 {
        got += r.chunk().await.expect("chunk").expect("more").len();
    }
    drop(r);
    edge.wait_at_least("mediaedge_disk_streamed_total", 1.0).await;
    let (s, again) = edge.get("/leave.mp4", &[]).await;
    assert_eq!(s, 200);
    assert!(again == body, "the disk copy differs");
    assert_eq!(origin.hits("/leave.mp4"), 1, "the fill stopped with its first viewer");
}

#[tokio::test]
async fn with_second_hit_admission_the_second_fill_is_streamed() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-stream-second");
    write_config(dir.path(), &origin.url(), MEMORY, &disk("second-hit"));
    let edge = Edge::start(dir.path()).await;
    let body = payload(LEN, 3);
    origin.set("/twice.mp4", Script::ok(body.clone()));
    for n in 1..=2 {
        let (s, got) = edge.get("/twice.mp4", &[]).await;
        assert_eq!(s, 200);
        assert!(got == body);
        assert_eq!(origin.hits("/twice.mp4"), n);
    }
    edge.wait_at_least("mediaedge_disk_streamed_total", 1.0).await;
    let (s, got) = edge.get("/twice.mp4", &[]).await;
    assert_eq!(s, 200);
    assert!(got == body);
    assert_eq!(origin.hits("/twice.mp4"), 2, "the third request was not a disk hit");
    // A crawl: one request each, none written.
    for i in 0..3 {
        let path = format!("/once/{i}.mp4");
        origin.set(&path, Script::ok(payload(2 << 20, 100 + i)));
        assert_eq!(edge.get(&path, &[]).await.0, 200);
    }
    assert_eq!(edge.metric("mediaedge_disk_streamed_total").await, 1.0, "a one-hit object was streamed");
}

/// Four viewers at once for `path`; each must get `body` whole.
async fn burst(edge: &Edge, path: &str, body: &bytes::Bytes) {
    let viewers: Vec<_> = (0..4)
        .map(|_| {
            let url = format!("http://{}{path}", edge.addr);
            tokio::spawn(async move {
                let r = client().get(url).send().await.map_err(|e| e.to_string())?;
                let x = format!("{:?}", r.headers().get("x-cache"));
                r.bytes().await.map_err(|e| format!("{e} (X-Cache {x})"))
            })
        })
        .collect();
    for v in viewers {
        match v.await.expect("task") {
            Ok(got) => assert!(got == *body, "{path}: a viewer of the burst got other bytes ({} bytes)", got.len()),
            Err(e) => panic!("{path}: a viewer of the burst got an error: {e}\n{}", edge.log_text()),
        }
    }
}

#[tokio::test]
async fn a_burst_for_objects_too_large_for_memory_is_one_fill_and_one_stream_each() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-stream-burst");
    write_config(dir.path(), &origin.url(), MEMORY, &disk("always"));
    let edge = Edge::start(dir.path()).await;
    // 16 objects of 1.5 MiB (above memory's 1 MiB), each asked for by four
    // viewers at once, one object after another.
    const OBJECTS: u64 = 16;
    for i in 0..OBJECTS {
        let (path, body) = (format!("/burst/{i}.mp4"), payload(3 << 19, 500 + i));
        origin.set(&path, Script::ok(body.clone()));
        burst(&edge, &path, &body).await;
        assert_eq!(origin.hits(&path), 1, "{path}: the burst reached the origin more than once");
    }
    edge.wait_at_least("mediaedge_disk_streamed_total", OBJECTS as f64).await;
    assert_eq!(edge.metric("mediaedge_disk_streamed_total").await, OBJECTS as f64, "a burst was streamed twice");
}

#[tokio::test]
async fn with_second_hit_admission_a_first_burst_passes_whole_and_the_second_streams_once() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-stream-burst-second");
    write_config(dir.path(), &origin.url(), MEMORY, &disk("second-hit"));
    let edge = Edge::start(dir.path()).await;
    for i in 0..8u64 {
        let (path, body) = (format!("/burst/{i}.mp4"), payload(3 << 19, 700 + i));
        origin.set(&path, Script::ok(body.clone()));
        // The first burst: not admitted yet, passed through (each viewer
        // whole, the waiters on their own requests).
        burst(&edge, &path, &body).await;
        let first = origin.hits(&path);
        assert!((1..=4).contains(&first), "{path}: {first} origin requests for a burst of 4");
        // The second (or a late viewer of the first, which made a second
        // fill): one fill, streamed to disk, read there by all four.
        burst(&edge, &path, &body).await;
        let second = origin.hits(&path);
        assert!(second <= first + 1, "{path}: the second burst reached the origin {} times", second - first);
        edge.wait_at_least("mediaedge_disk_streamed_total", (i + 1) as f64).await;
        assert_eq!(edge.get(&path, &[]).await.1, body);
        assert_eq!(origin.hits(&path), second, "{path}: not served from disk after two bursts");
    }
    assert_eq!(edge.metric("mediaedge_disk_streamed_total").await, 8.0, "an object was streamed twice");
}

#[tokio::test]
async fn streams_hold_at_most_a_quarter_of_the_disk_and_the_rest_pass_through_whole() {
    let origin = TestOrigin::start().await;
    let dir = TempDir::new("disk-stream-reserve");
    // 64 MiB of disk: streams may hold 16 MiB of it, two of the 6 MiB objects.
    write_config(dir.path(), &origin.url(), MEMORY, &disk("always"));
    let edge = Edge::start(dir.path()).await;
    let bodies: Vec<_> = (0..3).map(|i| slow_object(&origin, &format!("/slow/{i}.mp4"), 40 + i)).collect();
    let viewers: Vec<_> = (0..3)
        .map(|i| {
            let url = format!("http://{}/slow/{i}.mp4", edge.addr);
            tokio::spawn(async move { client().get(url).send().await.expect("get").bytes().await })
        })
        .collect();
    for (i, v) in viewers.into_iter().enumerate() {
        let got = v.await.expect("task").expect("body");
        assert!(got == bodies[i], "/slow/{i}.mp4: other bytes ({} of {})", got.len(), bodies[i].len());
    }
    edge.wait_at_least("mediaedge_disk_streamed_total", 2.0).await;
    assert_eq!(edge.metric("mediaedge_disk_streamed_total").await, 2.0, "more than a quarter of the disk was held");
    assert!(edge.metric("mediaedge_disk_admissions_refused_total{reason=\"queue_full\"}").await >= 1.0);
    // The one passed through is streamed at its next request, the others
    // are disk hits.
    for (i, body) in bodies.iter().enumerate() {
        assert!(edge.get(&format!("/slow/{i}.mp4"), &[]).await.1 == body);
    }
    let hits: usize = (0..3).map(|i| origin.hits(&format!("/slow/{i}.mp4"))).sum();
    assert_eq!(hits, 4, "one object fetched twice, the others once");
    edge.wait_at_least("mediaedge_disk_streamed_total", 3.0).await;
}
