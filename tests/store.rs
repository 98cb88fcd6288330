//! The in-memory store: its byte budget, its resistance to scans, and the
//! largest object it keeps.

mod common;
use common::*;

fn config(origin: &str, cache: &str) -> String {
    format!("[cache]\n{cache}\n{}", config_for(origin, ""))
}

#[tokio::test]
async fn the_store_stays_within_its_byte_budget_and_keeps_hot_objects_under_a_scan() {
    let o = TestOrigin::start().await;
    let e = edge(&config(&o.url(), "memory = \"4MiB\"")).await;
    let c = client();
    let seg = payload(64 * 1024, 11);
    o.set("/hot/index.m3u8", Script::ok("#EXTM3U\n").header("cache-control", "max-age=3600"));
    for i in 0..400 {
        o.set(&format!("/vod/seg{i}.ts"), Script::ok(seg.clone()));
    }
    // A hot playlist, hit between every one-off segment of a 25 MiB scan.
    get(&c, &url(&e, "/hot/index.m3u8"), &[]).await;
    let mut hot_hits = 0;
    for i in 0..400 {
        let (s, _, _, b) = get(&c, &url(&e, &format!("/vod/seg{i}.ts")), &[]).await;
        assert_eq!((s, b.len()), (200, seg.len()));
        if get(&c, &url(&e, "/hot/index.m3u8"), &[]).await.1 == "Hit" {
            hot_hits += 1;
        }
        let used = e.edge.cache.used_bytes();
        assert!(used <= 4 << 20, "store holds {used} bytes, over its 4 MiB budget");
    }
    assert!(hot_hits >= 398, "the hot playlist survived the scan ({hot_hits}/400 hits)");
    assert!(o.hits("/hot/index.m3u8") <= 2);
    // The scan was evicted, not kept beyond the budget: early segments are gone.
    assert_eq!(get(&c, &url(&e, "/vod/seg0.ts"), &[]).await.1, "Miss");
}

#[tokio::test]
async fn objects_over_the_size_limit_pass_through_unstored() {
    let o = TestOrigin::start().await;
    let e = edge(&config(&o.url(), "max_object_size = \"100KiB\"")).await;
    let c = client();
    let big = payload(300 * 1024, 12);
    o.set("/big.mp4", Script::ok(big.clone()));
    o.set("/big-chunked.mp4", Script::ok(big.clone()).chunked());
    for p in ["/big.mp4", "/big-chunked.mp4"] {
        for _ in 0..2 {
            let (s, x, _, b) = get(&c, &url(&e, p), &[]).await;
            assert_eq!((s, x.as_str()), (200, "Miss"), "{p}");
            assert_eq!(b, big, "{p}: the viewer still gets every byte");
        }
        assert_eq!(o.hits(p), 2, "{p}");
    }
    assert!(e.edge.cache.used_bytes() < 100 * 1024);
}
