//! Low-latency live delivery through the edge: LL-HLS blocking reloads judged
//! against a fresh playlist and never lengthening the plain playlist's
//! caching, errors for live media kept briefly, LL-DASH segments held until
//! their availability time, open-ended ranges on hinted parts streamed, and
//! fills that belong to the cache rather than to the first viewer.
//!
//! Collapsing and streaming are checked by the order of events (gated
//! origins), not by time.

mod common;

use bytes::Bytes;
use common::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const M3U8: &str = "application/vnd.apple.mpegurl";

/// An LL-HLS media playlist: segments `0..next` complete (two 0.5 s parts
/// each), `pending` parts of segment `next`, and the preload hint after them.
fn playlist(next: u64, pending: u64) -> String {
    let mut s = String::from(
        "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5\n#EXT-X-PART-INF:PART-TARGET=0.5\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-MAP:URI=\"init.mp4\"\n",
    );
    for msn in 0..next {
        for p in 0..2 {
            s.push_str(&format!("#EXT-X-PART:DURATION=0.500,URI=\"part{msn}.{p}.mp4\"\n"));
        }
        s.push_str(&format!("#EXTINF:1.000,\nseg{msn}.mp4\n"));
    }
    for p in 0..pending {
        s.push_str(&format!("#EXT-X-PART:DURATION=0.500,URI=\"part{next}.{p}.mp4\"\n"));
    }
    s.push_str(&format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part{next}.{pending}.mp4\"\n"));
    s
}

fn m3u8(body: String, cache_control: &str) -> Script {
    Script::ok(body).header("content-type", M3U8).header("cache-control", cache_control)
}

async fn all_at_once(c: &reqwest::Client, u: &str, n: usize) -> Vec<(u16, String, http::HeaderMap, Bytes)> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (c, u) = (c.clone(), u.to_string());
            tokio::spawn(async move { get(&c, &u, &[]).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("viewer task"));
    }
    out
}

// ---- 1. blocking reloads judged against a fresh playlist ----

#[tokio::test]
async fn a_blocking_reload_past_a_stored_playlist_that_is_behind_refreshes_it_once_first() {
    let (e, o) = edge_and_origin("").await;
    let c = client();
    // A fresh stored copy that is behind the origin: nobody asked for this
    // rendition while the stream moved on (a level switch back).
    o.set("/live/a.m3u8", m3u8(playlist(4, 0), "max-age=60"));
    assert_eq!(get(&c, &url(&e, "/live/a.m3u8"), &[]).await.0, 200);
    o.set("/live/a.m3u8", m3u8(playlist(10, 0), "max-age=60"));
    for (s, x, _, b) in all_at_once(&c, &url(&e, "/live/a.m3u8?_HLS_msn=9"), 20).await {
        assert_eq!(s, 200, "X-Cache {x}: {}", String::from_utf8_lossy(&b));
        assert!(String::from_utf8_lossy(&b).contains("seg9.mp4"), "the answer holds segment 9");
    }
    assert_eq!(o.hits("/live/a.m3u8"), 2, "the first fill and one refresh for the 20 viewers");
    // Still more than two segments past the fresh playlist: 400, judged
    // after one refresh, and the directive never reaches the origin.
    assert_eq!(get(&c, &url(&e, "/live/a.m3u8?_HLS_msn=20"), &[]).await.0, 400);
    assert_eq!(o.hits("/live/a.m3u8"), 3);
    assert!(o.seen_for("/live/a.m3u8").iter().all(|s| !s.uri.contains("_HLS_")));
}

#[tokio::test]
async fn a_blocking_reload_is_never_judged_against_a_stale_playlist() {
    let (e, o) = edge_and_origin("").await;
    let c = client();
    o.set("/live/s.m3u8", m3u8(playlist(3, 1), "max-age=0"));
    assert_eq!(get(&c, &url(&e, "/live/s.m3u8"), &[]).await.0, 200);
    // The origin has segment 8 complete; the stored copy ends at 2.
    o.set("/live/s.m3u8", m3u8(playlist(9, 0), "max-age=0"));
    let (s, x, _, b) = get(&c, &url(&e, "/live/s.m3u8?_HLS_msn=8"), &[]).await;
    assert_eq!(s, 200, "X-Cache {x}: {}", String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&b).contains("seg8.mp4"));
}

// ---- 2. a blocking reload's answer and the plain playlist ----

#[tokio::test]
async fn a_blocking_reload_answer_refreshes_the_plain_playlist_without_its_longer_caching() {
    let (e, o) = edge_and_origin("").await;
    let c = client();
    o.set("/live/b.m3u8", m3u8(playlist(4, 0), "max-age=1"));
    assert_eq!(get(&c, &url(&e, "/live/b.m3u8"), &[]).await.0, 200);
    // The unique blocking-reload URL: Apple's recommended max-age=6.
    o.set("/live/b.m3u8?_HLS_msn=5&_HLS_part=0", m3u8(playlist(6, 0), "max-age=6"));
    let (s, _, h, _) = get(&c, &url(&e, "/live/b.m3u8?_HLS_msn=5&_HLS_part=0"), &[]).await;
    assert_eq!((s, h["cache-control"].to_str().unwrap()), (200, "max-age=6"));
    // The newer playlist now answers plain polls, with the plain URL's caching.
    let (s, x, h, b) = get(&c, &url(&e, "/live/b.m3u8"), &[]).await;
    assert_eq!((s, x.as_str()), (200, "Hit"));
    assert_eq!(b, playlist(6, 0), "the newer playlist refreshed the plain one");
    assert_eq!(h["cache-control"], "max-age=1", "the plain URL keeps the origin's max-age=1");
    // Past the plain URL's 1 s, a plain poll goes to the origin again.
    let before = o.hits("/live/b.m3u8");
    o.set("/live/b.m3u8", m3u8(playlist(7, 0), "max-age=1"));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (s, _, _, b) = get(&c, &url(&e, "/live/b.m3u8"), &[]).await;
    assert_eq!((s, b), (200, Bytes::from(playlist(7, 0))));
    assert_eq!(o.hits("/live/b.m3u8"), before + 1);
}

#[tokio::test]
async fn an_older_blocking_reload_answer_never_replaces_a_newer_plain_playlist() {
    let (e, o) = edge_and_origin("").await;
    let c = client();
    o.set("/live/o.m3u8", m3u8(playlist(9, 1), "max-age=1"));
    assert_eq!(get(&c, &url(&e, "/live/o.m3u8"), &[]).await.0, 200);
    // The origin holds this blocking reload for 3 s and then answers with
    // segment 9's part 1 and 2: by then the plain playlist is newer.
    let q = "/live/o.m3u8?_HLS_msn=9&_HLS_part=1";
    o.set(q, m3u8(playlist(9, 2), "max-age=6").delay(Duration::from_secs(3)));
    let held = {
        let (c, u) = (c.clone(), url(&e, q));
        tokio::spawn(async move { get(&c, &u, &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(1200)).await;
    o.set("/live/o.m3u8", m3u8(playlist(10, 0), "max-age=1"));
    let (s, _, _, b) = get(&c, &url(&e, "/live/o.m3u8"), &[]).await;
    assert_eq!((s, b), (200, Bytes::from(playlist(10, 0))));
    assert!(!held.is_finished(), "the blocking reload is answered after the plain refresh");
    let (s, _, _, b) = held.await.unwrap();
    assert_eq!((s, b), (200, Bytes::from(playlist(9, 2))));
    let (s, x, _, b) = get(&c, &url(&e, "/live/o.m3u8"), &[]).await;
    assert_eq!(s, 200);
    assert_eq!(b, playlist(10, 0), "X-Cache {x}: the older answer did not replace the newer playlist");
}

// ---- 4. hinted parts, first viewers leaving, the next segment under load ----

/// A raw HTTP/1.1 origin whose answers are held on a gate: `Hold::Head`
/// sends nothing until the gate opens; `Hold::Tail(n)` sends the head and the
/// first `n` bytes (chunked), then the rest once the gate opens.
#[derive(Clone, Copy)]
enum Hold {
    Head,
    Tail(usize),
}

struct GatedOrigin {
    addr: std::net::SocketAddr,
    gate: tokio::sync::watch::Sender<bool>,
    requests: Arc<Mutex<HashMap<String, Vec<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GatedOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GatedOrigin {
    async fn start(body: Bytes, content_type: &'static str, hold: Hold) -> GatedOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (gate, rx) = tokio::sync::watch::channel(false);
        let requests: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else { continue };
                let (body, mut rx, seen) = (body.clone(), rx.clone(), seen.clone());
                tokio::spawn(async move {
                    let Some(head) = read_request_head(&mut s).await else { return };
                    let head = String::from_utf8_lossy(&head).to_string();
                    let target = head.split(' ').nth(1).unwrap_or("").to_string();
                    let path = target.split('?').next().unwrap_or("").to_string();
                    seen.lock().unwrap().entry(path).or_default().push(head);
                    let start = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                    );
                    let chunk = |b: &[u8]| {
                        let mut v = format!("{:x}\r\n", b.len()).into_bytes();
                        v.extend_from_slice(b);
                        v.extend_from_slice(b"\r\n");
                        v
                    };
                    let first = match hold {
                        Hold::Head => 0,
                        Hold::Tail(n) => n.min(body.len()),
                    };
                    if matches!(hold, Hold::Tail(_)) {
                        let mut out = start.clone().into_bytes();
                        out.extend(chunk(&body[..first]));
                        if s.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                    if rx.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    let mut out = if matches!(hold, Hold::Head) { start.into_bytes() } else { Vec::new() };
                    if first < body.len() {
                        out.extend(chunk(&body[first..]));
                    }
                    out.extend_from_slice(b"0\r\n\r\n");
                    let _ = s.write_all(&out).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        GatedOrigin { addr, gate, requests, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn open(&self) {
        self.gate.send_replace(true);
    }

    fn hits(&self, path: &str) -> usize {
        self.requests.lock().unwrap().get(path).map_or(0, Vec::len)
    }
}

#[tokio::test]
async fn an_open_ended_range_on_a_hinted_part_streams_as_the_bytes_arrive() {
    let segment = payload(64 * 1024, 7);
    let o = GatedOrigin::start(segment.clone(), "video/mp4", Hold::Tail(4096)).await;
    let e = edge(&config_for(&o.url(), "")).await;
    let c = client();
    // Apple's players ask for a byte-range preload hint as `bytes=N-`.
    let mut r = c.get(url(&e, "/ll/seg12.mp4")).header("range", "bytes=1000-").send().await.expect("response head");
    assert_eq!(r.status().as_u16(), 206);
    let cr = r.headers()["content-range"].to_str().unwrap().to_string();
    assert!(cr.starts_with("bytes 1000-") && cr.ends_with("/*"), "Content-Range {cr}");
    // The bytes the origin has sent reach the viewer while the origin still
    // holds the rest (it sends it only once the viewer has them).
    let mut got = Vec::new();
    while got.len() < 4096 - 1000 {
        let chunk = tokio::time::timeout(Duration::from_secs(20), r.chunk())
            .await
            .expect("the first bytes arrive before the origin finishes")
            .expect("body")
            .expect("more bytes");
        got.extend_from_slice(&chunk);
    }
    assert_eq!(&got[..], &segment[1000..1000 + got.len()]);
    o.open();
    while let Some(chunk) = r.chunk().await.expect("body") {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(Bytes::from(got), segment.slice(1000..), "the rest of the segment, byte for byte");
    assert_eq!(o.hits("/ll/seg12.mp4"), 1);
}

#[tokio::test]
async fn the_first_viewer_leaving_a_held_part_does_not_restart_its_origin_request() {
    let part = payload(20_000, 3);
    let o = GatedOrigin::start(part.clone(), "video/mp4", Hold::Head).await;
    let e = edge(&config_for(&o.url(), "")).await;
    // The first viewer: raw TCP, so that it can leave mid-wait.
    let mut first = TcpStream::connect(e.addr()).await.expect("connect");
    first.write_all(b"GET /ll/part7.0.mp4 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    until("the origin sees the part request", || o.hits("/ll/part7.0.mp4") == 1).await;
    let second = {
        let (c, u) = (client(), url(&e, "/ll/part7.0.mp4"));
        tokio::spawn(async move { get(&c, &u, &[]).await })
    };
    until("the second viewer waits on the first one's fill", || e.edge.cache.collapsed_waiting() == 1).await;
    drop(first);
    // Give the edge the chance to see the first viewer gone (and, before the
    // fix, to drop the origin request and open a new one for the second).
    tokio::time::sleep(Duration::from_millis(300)).await;
    o.open();
    let (s, _, _, b) = second.await.unwrap();
    assert_eq!((s, b), (200, part));
    assert_eq!(o.hits("/ll/part7.0.mp4"), 1, "one origin request, kept for the viewer still waiting");
}

#[tokio::test]
async fn a_held_part_whose_only_viewer_left_is_still_fetched_once_and_stored() {
    let part = payload(20_000, 5);
    let o = GatedOrigin::start(part.clone(), "video/mp4", Hold::Head).await;
    let e = edge(&config_for(&o.url(), "")).await;
    let mut only = TcpStream::connect(e.addr()).await.expect("connect");
    only.write_all(b"GET /ll/part9.0.mp4 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    until("the origin sees the part request", || o.hits("/ll/part9.0.mp4") == 1).await;
    drop(only);
    // Give the edge the chance to see its only viewer gone (and, before the
    // fix, to drop the origin request with it).
    tokio::time::sleep(Duration::from_millis(300)).await;
    o.open();
    let (s, x, _, b) = get(&client(), &url(&e, "/ll/part9.0.mp4"), &[]).await;
    assert_eq!((s, b), (200, part), "X-Cache {x}");
    assert_eq!(o.hits("/ll/part9.0.mp4"), 1, "the origin request went on without its viewer, for the cache");
}

#[tokio::test]
async fn fifty_viewers_of_the_next_segment_before_it_exists_make_one_origin_request() {
    let segment = payload(300_000, 11);
    let o = GatedOrigin::start(segment.clone(), "video/mp4", Hold::Head).await;
    let e = edge(&config_for(&o.url(), "")).await;
    let c = client();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (c, u) = (c.clone(), url(&e, "/cmaf/seg31.m4s"));
            tokio::spawn(async move { get(&c, &u, &[]).await })
        })
        .collect();
    until("49 viewers wait on the first one's fill", || e.edge.cache.collapsed_waiting() == 49).await;
    o.open();
    for t in tasks {
        let (s, _, _, b) = t.await.unwrap();
        assert_eq!((s, b.len()), (200, segment.len()));
        assert_eq!(b, segment);
    }
    assert_eq!(o.hits("/cmaf/seg31.m4s"), 1);
}

// ---- 3. errors for live media, LL-DASH segments before they exist ----

#[tokio::test]
async fn an_error_for_a_live_part_is_shared_by_a_burst_and_kept_only_part_of_its_duration() {
    let (e, o) = edge_and_origin("").await;
    let c = client();
    o.set("/live/e.m3u8", m3u8(playlist(4, 0), "max-age=60"));
    assert_eq!(get(&c, &url(&e, "/live/e.m3u8"), &[]).await.0, 200);
    // The playlist is parsed when its fill completes, just after its last byte.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The hinted part: the origin does not have it yet (404, no Cache-Control).
    o.set("/live/part4.0.mp4", Script::ok("not yet").status(404).delay(Duration::from_millis(300)));
    for (s, _, _, _) in all_at_once(&c, &url(&e, "/live/part4.0.mp4"), 20).await {
        assert_eq!(s, 404);
    }
    assert_eq!(o.hits("/live/part4.0.mp4"), 1, "one origin request for the burst");
    // A moment later the origin has it: the 404 was kept at most half the
    // 0.5 s part (not the 10 s error-caching minimum).
    o.set("/live/part4.0.mp4", Script::ok(payload(1000, 1)).header("content-type", "video/mp4"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (s, x, _, b) = get(&c, &url(&e, "/live/part4.0.mp4"), &[]).await;
    assert_eq!((s, x.as_str(), b), (200, "Miss", payload(1000, 1)));
    // An object no manifest lists keeps the usual error TTL.
    o.set("/live/other.mp4", Script::ok("no").status(404));
    assert_eq!(get(&c, &url(&e, "/live/other.mp4"), &[]).await.0, 404);
    o.set("/live/other.mp4", Script::ok("yes"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (s, x, _, _) = get(&c, &url(&e, "/live/other.mp4"), &[]).await;
    assert_eq!((s, x.as_str()), (404, "Hit"));
}

/// `YYYY-MM-DDTHH:MM:SSZ` for whole seconds since the epoch.
fn iso8601(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A dynamic LL-DASH MPD (2 s segments, 0.5 s chunks: availabilityTimeOffset
/// 1.5) that started 10 s ago: its availability start and the first segment
/// number whose first chunk is out at least 1.2 s from now.
fn ll_dash_mpd() -> (String, SystemTime, u64) {
    let now = SystemTime::now();
    let ast_secs = now.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() - 10;
    let ast = SystemTime::UNIX_EPOCH + Duration::from_secs(ast_secs);
    let available = |n: u64| ast + Duration::from_millis(2000 * n - 1500);
    let n = (1..).find(|&n| available(n) >= now + Duration::from_millis(1200)).unwrap();
    let mpd = format!(
        r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="{}" minimumUpdatePeriod="PT2S" profiles="urn:mpeg:dash:profile:isoff-live:2011">
<Period id="0" start="PT0S"><AdaptationSet contentType="video" mimeType="video/mp4">
<SegmentTemplate timescale="1000" duration="2000" startNumber="1" availabilityTimeOffset="1.5" availabilityTimeComplete="false" initialization="init-$RepresentationID$.m4s" media="chunk-$RepresentationID$-$Number%05d$.m4s"/>
<Representation id="0" bandwidth="1000000" codecs="avc1.64001f" width="640" height="360"/>
</AdaptationSet></Period></MPD>"#,
        iso8601(ast_secs)
    );
    (mpd, available(n), n)
}

#[tokio::test]
async fn an_ll_dash_segment_asked_for_early_is_held_until_available_then_fetched_once() {
    let (e, o) = edge_and_origin("").await;
    let c = client();
    let (mpd, available, n) = ll_dash_mpd();
    o.set("/dash/live.mpd", Script::ok(mpd).header("content-type", "application/dash+xml"));
    assert_eq!(get(&c, &url(&e, "/dash/live.mpd"), &[]).await.0, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let path = format!("/dash/chunk-0-{n:05}.m4s");
    // Before its availability time the origin does not have it.
    o.set(&path, Script::ok("not yet").status(404));
    let viewers: Vec<_> = (0..10)
        .map(|_| {
            let (c, u) = (c.clone(), url(&e, &path));
            tokio::spawn(async move { get(&c, &u, &[]).await })
        })
        .collect();
    // The origin has it from a little before its availability time.
    let ready = available - Duration::from_millis(300);
    if let Ok(d) = ready.duration_since(SystemTime::now()) {
        tokio::time::sleep(d).await;
    }
    assert_eq!(o.hits(&path), 0, "nobody asked the origin before the segment was available");
    let segment = payload(50_000, n);
    o.set(&path, Script::ok(segment.clone()).header("content-type", "video/mp4"));
    for v in viewers {
        let (s, _, _, b) = v.await.unwrap();
        assert_eq!((s, b), (200, segment.clone()));
    }
    assert_eq!(o.hits(&path), 1, "one origin request for every viewer held");
    // Further ahead than two segment durations: 404 at once, origin untouched.
    let far = format!("/dash/chunk-0-{:05}.m4s", n + 5);
    let (s, _, h, _) = get(&c, &url(&e, &far), &[]).await;
    assert_eq!((s, h["cache-control"].to_str().unwrap()), (404, "no-store"));
    assert_eq!(o.hits(&far), 0);
}

#[allow(dead_code)]
fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

#[allow(dead_code)]
async fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    out
}
