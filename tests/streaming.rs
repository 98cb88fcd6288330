//! Streaming rules: media-aware TTLs, manifest bursts, LL-HLS blocking reloads
//! and preload hints, segment prefetch, malformed manifests.

mod common;
#[path = "common/llhls_origin.rs"]
mod llhls_origin;

use common::*;
use llhls_origin::{expected_part, LlOrigin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

fn live(td: u64) -> String {
    format!(
        "#EXTM3U\n#EXT-X-TARGETDURATION:{td}\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:{td}.0,\na.ts\n#EXTINF:{td}.0,\nb.ts\n"
    )
}

#[tokio::test]
async fn manifests_and_segments_get_streaming_ttls_when_the_origin_is_silent() {
    let (e, o) = edge_and_origin("").await;
    let c = client();
    o.set("/live/index.m3u8", Script::ok(live(6)).no_revalidate());
    o.set("/vod/index.m3u8", Script::ok(format!("{}#EXT-X-ENDLIST\n", live(6))).no_revalidate());
    o.set("/master.m3u8", Script::ok("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=100000\nlive/index.m3u8\n").no_revalidate());
    o.set("/headers/index.m3u8", Script::ok(live(6)).header("cache-control", "max-age=30").no_revalidate());
    o.set(
        "/dash/live.mpd",
        Script::ok(r#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" minimumUpdatePeriod="PT3S" availabilityStartTime="2026-01-01T00:00:00Z"><Period id="1"/></MPD>"#)
            .no_revalidate(),
    );
    o.set(
        "/dash/vod.mpd",
        Script::ok(r#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT20S"><Period id="1"/></MPD>"#)
            .no_revalidate(),
    );
    o.set("/live/a.ts", Script::ok(payload(1000, 1)).no_revalidate());
    let paths = [
        "/live/index.m3u8",
        "/vod/index.m3u8",
        "/master.m3u8",
        "/headers/index.m3u8",
        "/dash/live.mpd",
        "/dash/vod.mpd",
        "/live/a.ts",
    ];
    for p in paths {
        assert_eq!(get(&c, &url(&e, p), &[]).await.1, "Miss", "{p}");
    }
    for p in paths {
        assert_eq!(get(&c, &url(&e, p), &[]).await.1, "Hit", "{p}");
    }
    // Live playlist (target 6 s) lives 3 s; the dynamic MPD its 3 s update period.
    tokio::time::sleep(Duration::from_millis(3300)).await;
    for (p, expect) in [
        ("/live/index.m3u8", "Miss"),
        ("/dash/live.mpd", "Miss"),
        ("/vod/index.m3u8", "Hit"),
        ("/master.m3u8", "Hit"),
        ("/headers/index.m3u8", "Hit"),
        ("/dash/vod.mpd", "Hit"),
        ("/live/a.ts", "Hit"),
    ] {
        assert_eq!(get(&c, &url(&e, p), &[]).await.1, expect, "{p}");
    }
    // An explicit default_ttl on the behavior turns media TTLs off.
    let (e, o) = edge_and_origin("default_ttl = 60").await;
    o.set("/live/index.m3u8", Script::ok(live(6)).no_revalidate());
    get(&c, &url(&e, "/live/index.m3u8"), &[]).await;
    tokio::time::sleep(Duration::from_millis(3300)).await;
    assert_eq!(get(&c, &url(&e, "/live/index.m3u8"), &[]).await.1, "Hit");
    // And live_manifest_ttl overrides the computed one.
    let (e, o) = edge_and_origin("live_manifest_ttl = 30").await;
    o.set("/live/index.m3u8", Script::ok(live(6)).no_revalidate());
    get(&c, &url(&e, "/live/index.m3u8"), &[]).await;
    tokio::time::sleep(Duration::from_millis(3300)).await;
    assert_eq!(get(&c, &url(&e, "/live/index.m3u8"), &[]).await.1, "Hit");
}

#[tokio::test]
async fn manifests_that_do_not_parse_pass_through_untouched() {
    let (e, o) = edge_and_origin("compress = true").await;
    let c = client();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/malformed");
    let mut n = 0;
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        let body = bytes::Bytes::from(std::fs::read(&path).unwrap());
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let ct = if name.ends_with(".mpd") { "application/dash+xml" } else { "application/vnd.apple.mpegurl" };
        o.set(&format!("/m/{name}"), Script::ok(body.clone()).header("content-type", ct));
        let (s, x, _, b) = get(&c, &url(&e, &format!("/m/{name}")), &[]).await;
        assert_eq!((s, x.as_str()), (200, "Miss"), "{name}");
        assert_eq!(b, body, "{name} is passed through byte for byte");
        // Blocking-reload directives on a broken playlist are not held either.
        let (s, _, _, _) = get(&c, &url(&e, &format!("/m/{name}?_HLS_msn=1")), &[]).await;
        assert!(s == 200 || s == 400, "{name}: {s}");
        n += 1;
    }
    assert!(n >= 5);
}

/// An origin for a live playlist that says when it made each copy.
async fn stamping_origin(latency: Duration) -> (String, Arc<AtomicUsize>) {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else { continue };
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(latency).await;
                        let ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis();
                        let body = format!("{}#made-at-ms:{ms}\n", live(2));
                        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(body),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_players_polling_a_live_playlist_cause_one_origin_request_per_ttl() {
    const PLAYERS: usize = 500;
    const RUN: Duration = Duration::from_secs(6);
    let rtt = Duration::from_millis(50);
    let (origin, origin_requests) = stamping_origin(rtt).await;
    let e = edge(&config_for(&origin, "")).await;
    let c = client();
    let u = url(&e, "/live/index.m3u8");
    get(&c, &u, &[]).await;
    let start_count = origin_requests.load(Ordering::SeqCst);
    let oldest = Arc::new(AtomicU64::new(0));
    let oldest_age = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut players = Vec::new();
    for i in 0..PLAYERS {
        let (c, u, oldest, oldest_age) = (c.clone(), u.clone(), oldest.clone(), oldest_age.clone());
        players.push(tokio::spawn(async move {
            // Spread the players over the first polling interval.
            tokio::time::sleep(Duration::from_millis((i as u64 * 500) / PLAYERS as u64)).await;
            let mut n = 0;
            while start.elapsed() < RUN {
                let (s, _, h, b) = get(&c, &u, &[]).await;
                assert_eq!(s, 200);
                let age =
                    h.get("age").and_then(|v| v.to_str().ok()).map_or(0, |v| v.parse::<u64>().unwrap_or(u64::MAX));
                oldest_age.fetch_max(age, Ordering::SeqCst);
                let text = String::from_utf8_lossy(&b);
                let made: u128 = text.split("#made-at-ms:").nth(1).unwrap().trim().parse().unwrap();
                let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis();
                oldest.fetch_max(now.saturating_sub(made) as u64, Ordering::SeqCst);
                n += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            n
        }));
    }
    let mut polls = 0;
    for p in players {
        polls += p.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let fetched = origin_requests.load(Ordering::SeqCst) - start_count;
    let rate = fetched as f64 / elapsed;
    eprintln!(
        "{polls} playlist polls in {elapsed:.1} s: {fetched} origin requests ({rate:.2}/s), oldest copy served {} ms",
        oldest.load(Ordering::SeqCst)
    );
    // TTL is 1 s (half the 2 s target duration): at most one origin request per
    // TTL window (plus the window in progress at each end).
    assert!(fetched as f64 <= elapsed.ceil() + 2.0, "{fetched} origin requests in {elapsed:.1} s");
    assert!(fetched >= 3, "the playlist was refreshed ({fetched})");
    // The edge never served a copy older than one refresh past its 1 s TTL,
    // by its own Age (whole seconds; the wall-clock age above also counts the
    // client's scheduling on a loaded machine, so it is reported, not asserted).
    let oldest_age = oldest_age.load(Ordering::SeqCst);
    assert!(oldest_age <= 2, "the edge served a playlist with Age: {oldest_age}");
}

async fn ll_edge(blocking: bool) -> (mediaedge::RunningEdge, LlOrigin) {
    let o = LlOrigin::start(Duration::from_millis(200), 4, blocking).await;
    let e = edge(&config_for(&o.url(), "")).await;
    (e, o)
}

/// The (msn, part) after the newest part the playlist lists.
fn next_part(playlist: &str) -> (u64, u64) {
    let Ok(mediaedge::media::hls::Playlist::Media(m)) = mediaedge::media::hls::parse(playlist.as_bytes()) else {
        panic!("a media playlist: {playlist}");
    };
    (m.next_msn(), m.ll.pending_parts.len() as u64)
}

/// An edge before an LL-HLS origin that has produced a few parts, with the
/// playlist the edge serves now and the (msn, part) after its newest part.
async fn ll_live(blocking: bool) -> (mediaedge::RunningEdge, LlOrigin, reqwest::Client, String, (u64, u64)) {
    let (e, o) = ll_edge(blocking).await;
    while o.produced() < 5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = client();
    let (_, _, _, b) = get(&c, &url(&e, "/ll/index.m3u8"), &[]).await;
    let text = String::from_utf8_lossy(&b).to_string();
    let next = next_part(&text);
    (e, o, c, text, next)
}

#[tokio::test]
async fn a_blocking_reload_is_held_until_the_part_exists_and_shared_by_every_viewer() {
    let (e, o, c, _, (msn, part)) = ll_live(true).await;
    let q = format!("/ll/index.m3u8?_HLS_msn={msn}&_HLS_part={part}");
    let mut viewers = Vec::new();
    for _ in 0..30 {
        let (c, u) = (c.clone(), url(&e, &q));
        viewers.push(tokio::spawn(async move { get(&c, &u, &[]).await }));
    }
    for v in viewers {
        let (s, _, _, b) = v.await.unwrap();
        assert_eq!(s, 200);
        let text = String::from_utf8_lossy(&b).to_string();
        assert!(text.contains(&format!("part{msn}.{part}.mp4")), "the answer lists the awaited part:\n{text}");
        assert!(text.contains("#EXT-X-RENDITION-REPORT:") && text.contains("CAN-BLOCK-RELOAD=YES"), "tags kept intact");
    }
    assert_eq!(o.requests(&q), 1, "one origin request for the whole group");
    // A second group for the same part is answered from the cache.
    let (s, x, _, _) = get(&c, &url(&e, &q), &[]).await;
    assert_eq!((s, x.as_str()), (200, "Hit"));
    assert_eq!(o.requests(&q), 1);
}

#[tokio::test]
async fn an_msn_without_a_part_waits_for_the_whole_segment() {
    let (e, _o, c, _, (msn, _)) = ll_live(true).await;
    let (s, _, _, b) = get(&c, &url(&e, &format!("/ll/index.m3u8?_HLS_msn={msn}")), &[]).await;
    assert_eq!(s, 200);
    let text = String::from_utf8_lossy(&b);
    assert!(text.contains(&format!("seg{msn}.mp4")), "segment {msn} is complete in the answer:\n{text}");
}

#[tokio::test]
async fn the_edge_holds_blocking_reloads_itself_when_the_origin_cannot() {
    let (e, o, c, _, (msn, part)) = ll_live(false).await;
    let q = format!("/ll/index.m3u8?_HLS_msn={msn}&_HLS_part={part}");
    let mut viewers = Vec::new();
    for _ in 0..10 {
        let (c, u) = (c.clone(), url(&e, &q));
        viewers.push(tokio::spawn(async move { get(&c, &u, &[]).await }));
    }
    for v in viewers {
        let (s, _, _, b) = v.await.unwrap();
        assert_eq!(s, 200);
        assert!(String::from_utf8_lossy(&b).contains(&format!("part{msn}.{part}.mp4")));
    }
    // The one leader polled the origin until the part appeared.
    assert!(o.requests(&q) >= 1);
    assert!(o.requests(&q) <= 10, "polled at half a part target, not in a loop: {}", o.requests(&q));
}

#[tokio::test]
async fn an_unsatisfied_blocking_reload_ends_in_503_after_three_target_durations() {
    let (e, o, c, _, (msn, part)) = ll_live(false).await;
    o.freeze();
    let started = Instant::now();
    let (s, x, _, _) = get(&c, &url(&e, &format!("/ll/index.m3u8?_HLS_msn={msn}&_HLS_part={}", part + 1)), &[]).await;
    let waited = started.elapsed();
    assert_eq!((s, x.as_str()), (503, "Error"));
    // Target duration 1 s: three of them.
    assert!(waited >= Duration::from_millis(2800) && waited < Duration::from_secs(10), "waited {waited:?}");
}

#[tokio::test]
async fn bad_delivery_directives_get_400() {
    let (e, o, c, _, (msn, _)) = ll_live(true).await;
    assert_eq!(get(&c, &url(&e, "/ll/index.m3u8?_HLS_part=1"), &[]).await.0, 400);
    assert_eq!(get(&c, &url(&e, "/ll/index.m3u8?_HLS_msn=abc"), &[]).await.0, 400);
    assert_eq!(get(&c, &url(&e, &format!("/ll/index.m3u8?_HLS_msn={}", msn + 10)), &[]).await.0, 400);
    // The msn past the stored playlist is judged after one refresh of the
    // plain playlist; no directive reached the origin.
    assert_eq!(o.requests("/ll/index.m3u8"), 2);
    assert_eq!(o.requests_for_path("/ll/index.m3u8"), 2, "none of them reached the origin");
}

#[tokio::test]
async fn skip_requests_are_keyed_apart_from_full_playlists() {
    let (e, o, c, _, (msn, part)) = ll_live(true).await;
    let full = format!("/ll/index.m3u8?_HLS_msn={msn}&_HLS_part={part}");
    let delta = format!("{full}&_HLS_skip=YES");
    assert_eq!(get(&c, &url(&e, &full), &[]).await.0, 200);
    assert_eq!(get(&c, &url(&e, &delta), &[]).await.0, 200);
    assert_eq!(o.requests(&full), 1);
    assert_eq!(o.requests(&delta), 1, "the delta request reached the origin with its directive");
}

#[tokio::test]
async fn a_preload_hinted_part_streams_to_every_viewer_from_one_origin_request() {
    let (e, o, c, text, (msn, part)) = ll_live(true).await;
    let hint =
        text.split("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    assert_eq!(hint, format!("part{msn}.{part}.mp4"));
    let path = format!("/ll/{hint}");
    let mut viewers = Vec::new();
    for _ in 0..20 {
        let (c, u) = (c.clone(), url(&e, &path));
        viewers.push(tokio::spawn(async move { get(&c, &u, &[]).await }));
    }
    for v in viewers {
        let (s, _, _, b) = v.await.unwrap();
        assert_eq!(s, 200);
        assert_eq!(b, expected_part(msn, part));
    }
    assert_eq!(o.requests(&path), 1);
}

#[tokio::test]
async fn prefetch_fetches_listed_segments_once_ahead_of_viewers() {
    let (e, o) = edge_and_origin("prefetch_segments = 3").await;
    let c = client();
    let mut pl = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n");
    for i in 0..6 {
        pl.push_str(&format!("#EXTINF:2.0,\nseg{i}.ts\n"));
        o.set(&format!("/vod/seg{i}.ts"), Script::ok(payload(50_000, i)).delay(Duration::from_millis(200)));
    }
    pl.push_str("#EXT-X-ENDLIST\n");
    o.set("/vod/index.m3u8", Script::ok(pl));
    get(&c, &url(&e, "/vod/index.m3u8"), &[]).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while (0..3).any(|i| o.hits(&format!("/vod/seg{i}.ts")) == 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..3 {
        assert_eq!(o.hits(&format!("/vod/seg{i}.ts")), 1, "seg{i} prefetched");
    }
    assert_eq!(o.hits("/vod/seg3.ts"), 0, "only the next 3");
    // Viewers collapse onto the prefetch (or hit it): no second origin request.
    for i in 0..3u64 {
        let (s, _, _, b) = get(&c, &url(&e, &format!("/vod/seg{i}.ts")), &[]).await;
        assert_eq!((s, b), (200, payload(50_000, i)));
        assert_eq!(o.hits(&format!("/vod/seg{i}.ts")), 1);
    }
    // A segment outside the prefetch window is a viewer's own miss. (How much
    // sooner a prefetched segment arrives is measured by the players bench,
    // not asserted here.)
    let (_, x, _, _) = get(&c, &url(&e, "/vod/seg4.ts"), &[]).await;
    assert_eq!(x, "Miss");
    assert_eq!(o.hits("/vod/seg4.ts"), 1);
}
