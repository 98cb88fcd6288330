//! `mediaedge bench players`: the built binary run against an in-process edge
//! (VOD HLS and DASH over the bundled test-media/, live LL-HLS from the
//! scripted origin), against live HLS and dynamic DASH origins written here,
//! and against nothing at all.

mod common;
#[path = "common/llhls_origin.rs"]
mod llhls_origin;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use llhls_origin::LlOrigin;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_mediaedge");

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `mediaedge bench players ARGS`, killed if it outlives `limit`.
async fn bench(args: &[&str], limit: Duration) -> Run {
    let child = tokio::process::Command::new(BIN)
        .arg("bench")
        .arg("players")
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, child).await.expect("the bench ends in time").expect("run mediaedge");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs with `--json` and parses the report.
async fn bench_json(args: &[&str], limit: Duration) -> Json {
    let mut all = args.to_vec();
    all.push("--json");
    let run = bench(&all, limit).await;
    assert_eq!(run.code, Some(0), "exit code; stderr:\n{}\nstdout:\n{}", run.stderr, run.stdout);
    parse_json(run.stdout.trim()).unwrap_or_else(|e| panic!("the report is not JSON ({e}):\n{}", run.stdout))
}

fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An edge over the bundled test-media/ folder.
async fn media_edge() -> mediaedge::RunningEdge {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-media");
    let config = format!(
        "[[distributions]]\nid = \"E1\"\naliases = [\"*\"]\n[[distributions.origins]]\nid = \"m\"\nfolder = {}\n[distributions.default_behavior]\norigin = \"m\"\n",
        toml_str(&folder.display().to_string())
    );
    edge(&config).await
}

fn count(report: &Json, row: &str) -> f64 {
    report.num(&[row, "count"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vod_hls_through_the_edge() {
    let e = media_edge().await;
    let report =
        bench_json(&[&url(&e, "/hls-ts/master.m3u8"), "--players", "5", "--duration", "5"], Duration::from_secs(30))
            .await;
    assert_eq!(report.str(&["stream"]), "hls-vod");
    // Five players, each the master, the lowest variant's playlist and its ten segments.
    assert_eq!(count(&report, "segment"), 50.0, "{report:?}");
    assert_eq!(count(&report, "playlist"), 10.0);
    assert_eq!(report.num(&["errors"]), 0.0);
    assert_eq!(report.num(&["segment", "errors"]), 0.0);
    assert!(report.num(&["segment", "bytes"]) > 0.0);
    assert!(report.str(&["rendition"]).starts_with("v0/index.m3u8"));
    let p50 = report.num(&["segment", "ttfb_ms", "p50"]);
    let max = report.num(&["segment", "download_ms", "max"]);
    assert!(p50 > 0.0 && p50 <= max, "p50 {p50}, max {max}");
    assert_eq!(report.get(&["finished_early"]), Some(&Json::Bool(true)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vod_dash_through_the_edge() {
    let e = media_edge().await;
    let report = bench_json(
        &[&url(&e, "/dash/manifest.mpd"), "--players", "5", "--duration", "5", "--rendition", "highest"],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(report.str(&["stream"]), "dash-static");
    // Init + ten media segments of the highest video representation, per player.
    assert_eq!(count(&report, "segment"), 55.0, "{report:?}");
    assert_eq!(count(&report, "playlist"), 5.0);
    assert_eq!(report.num(&["errors"]), 0.0);
    assert!(report.str(&["rendition"]).starts_with("representation 1 "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_output() {
    let e = media_edge().await;
    let run =
        bench(&[&url(&e, "/hls-fmp4/master.m3u8"), "--players", "2", "--duration", "3"], Duration::from_secs(30)).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("mediaedge bench players: http://"), "{}", run.stdout);
    let header = lines.iter().find(|l| l.contains("p50")).expect("a header line");
    for column in ["p95", "p99", "max", "count", "bytes", "errors", "stalls"] {
        assert!(header.contains(column), "{header}");
    }
    let segment = lines.iter().find(|l| l.starts_with("segment ")).expect("a segment row");
    let fields: Vec<&str> = segment.split_whitespace().collect();
    assert_eq!(fields.len(), 13, "{segment}");
    assert_eq!(fields[9], "20", "{segment}");
    assert!(lines.iter().any(|l| l.starts_with("playlist ")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_low_latency_hls_through_the_edge() {
    let origin = LlOrigin::start(Duration::from_millis(200), 4, true).await;
    let e = edge(&config_for(&origin.url(), "")).await;
    let report =
        bench_json(&[&url(&e, "/ll/index.m3u8"), "--players", "10", "--duration", "4"], Duration::from_secs(30)).await;
    let produced = origin.produced() as f64;
    println!(
        "ll-hls: {produced} parts produced; players fetched {} parts, made {} blocking reloads (p50 TTFB {} ms), {} stalls; origin saw {} playlist requests ({} plain)",
        count(&report, "part"),
        count(&report, "blocking"),
        report.num(&["blocking", "ttfb_ms", "p50"]),
        report.num(&["segment", "stalls"]),
        origin.requests_for_path("/ll/index.m3u8"),
        origin.requests("/ll/index.m3u8"),
    );
    assert_eq!(report.str(&["stream"]), "ll-hls");
    assert_eq!(report.num(&["errors"]), 0.0, "{report:?}");
    let parts = count(&report, "part");
    assert!(parts > 0.0, "{report:?}");
    // Each player fetches each part once: at most every part produced, for each of ten players.
    assert!(parts <= 10.0 * (produced + 1.0), "{parts} parts fetched, {produced} produced");
    // And keeps up: a part every 200 ms for the 3 s at least that every player runs, less two.
    assert!(parts >= 10.0 * 13.0, "{parts} parts fetched, {produced} produced: players kept up");
    // Parts only: the origin does not serve whole segments.
    assert_eq!(count(&report, "segment"), parts);
    // Blocking reloads, by the players and at the origin (the edge forwards its own).
    let blocking = count(&report, "blocking");
    assert!(blocking > 0.0);
    assert!(blocking <= 10.0 * (produced + 2.0), "{blocking} blocking reloads for {produced} parts");
    let at_origin = origin.requests_for_path("/ll/index.m3u8");
    let plain = origin.requests("/ll/index.m3u8");
    assert!(at_origin > plain, "{at_origin} playlist requests at the origin, {plain} without directives");
    // Blocked reloads keep playlist TTFB near the part duration, not near zero.
    let ttfb = report.num(&["blocking", "ttfb_ms", "p50"]);
    assert!(ttfb > 20.0, "blocking reload p50 TTFB {ttfb} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_url_exits_1() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let target = format!("http://127.0.0.1:{port}/live/index.m3u8");
    let started = Instant::now();
    let run = bench(&[&target, "--players", "3", "--duration", "5"], Duration::from_secs(30)).await;
    assert_eq!(run.code, Some(1), "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains(&target), "{}", run.stderr);
    assert!(run.stderr.contains("cannot connect"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(5), "gave up at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_exit_2() {
    for args in [
        &["http://127.0.0.1:1/a.m3u8", "--players", "0"][..],
        &["http://127.0.0.1:1/a.m3u8", "--duration", "0"],
        &["http://127.0.0.1:1/a.m3u8", "--rendition", "best"],
        &["ftp://127.0.0.1:1/a.m3u8"],
        &["--players", "3"],
    ] {
        let run = bench(args, Duration::from_secs(10)).await;
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
    }
    // A rendition the master playlist does not have.
    let e = media_edge().await;
    let run = bench(&[&url(&e, "/hls-ts/master.m3u8"), "--rendition", "5"], Duration::from_secs(10)).await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("2 variant"), "{}", run.stderr);
}

// ---- live HLS and dynamic DASH origins ----

/// Segment length of the live origin.
const SEGMENT: Duration = Duration::from_millis(500);

/// A live origin: one 500 ms segment more every 500 ms, as a sliding-window
/// HLS playlist (`/hls/live.m3u8`, target duration 1) and a dynamic MPD
/// (`/dash/live.mpd`, `$Number$` template). A segment asked for before it
/// exists is answered 404 and counted as early.
struct LiveOrigin {
    addr: SocketAddr,
    state: Arc<LiveState>,
    task: tokio::task::JoinHandle<()>,
}

struct LiveState {
    /// availabilityStartTime, to the millisecond.
    ast: SystemTime,
    early: AtomicUsize,
    hits: Mutex<HashMap<String, usize>>,
}

impl Drop for LiveOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LiveOrigin {
    async fn start() -> LiveOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
        let ast = UNIX_EPOCH + Duration::from_millis(now.as_millis() as u64);
        let state = Arc::new(LiveState { ast, early: AtomicUsize::new(0), hits: Mutex::new(HashMap::new()) });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else { continue };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| live_handle(st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
                });
            }
        });
        LiveOrigin { addr, state, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn early(&self) -> usize {
        self.state.early.load(Ordering::SeqCst)
    }

    /// Requests for each path.
    fn hits(&self) -> HashMap<String, usize> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Segments complete so far.
    fn ready(&self) -> u64 {
        self.state.ready()
    }
}

impl LiveState {
    fn ready(&self) -> u64 {
        (SystemTime::now().duration_since(self.ast).unwrap_or_default().as_millis() / SEGMENT.as_millis()) as u64
    }

    fn playlist(&self) -> String {
        let ready = self.ready();
        let first = ready.saturating_sub(6);
        let mut s = format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:{first}\n");
        for n in first..ready {
            s.push_str(&format!("#EXTINF:0.500,\nseg{n}.ts\n"));
        }
        s
    }

    fn mpd(&self) -> String {
        format!(
            r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="{}" minimumUpdatePeriod="PT1S" timeShiftBufferDepth="PT10S" profiles="urn:mpeg:dash:profile:isoff-live:2011">
  <Period id="p0" start="PT0S">
    <AdaptationSet contentType="video" mimeType="video/mp4">
      <SegmentTemplate timescale="1000" duration="500" startNumber="1" media="seg-$Number$.m4s" initialization="init.m4s"/>
      <Representation id="v" bandwidth="100000" width="320" height="180"/>
    </AdaptationSet>
  </Period>
</MPD>
"#,
            iso8601(self.ast)
        )
    }
}

async fn live_handle(
    st: Arc<LiveState>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    *st.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let respond = |status: u16, ct: &str, body: Bytes| {
        http::Response::builder().status(status).header("content-type", ct).body(Full::new(body)).unwrap()
    };
    let segment = || Bytes::from(vec![0x47u8; 10_000]);
    if path == "/hls/live.m3u8" {
        return Ok(respond(200, "application/vnd.apple.mpegurl", Bytes::from(st.playlist())));
    }
    if path == "/dash/live.mpd" {
        return Ok(respond(200, "application/dash+xml", Bytes::from(st.mpd())));
    }
    if path == "/dash/init.m4s" {
        return Ok(respond(200, "video/mp4", Bytes::from_static(b"init")));
    }
    // HLS segment n (from 0) and DASH segment number n (from 1) both end at (n + 1) and n segments.
    let number = path
        .strip_prefix("/hls/seg")
        .and_then(|n| n.strip_suffix(".ts"))
        .and_then(|n| n.parse::<u64>().ok())
        .map(|n| n + 1)
        .or_else(|| path.strip_prefix("/dash/seg-").and_then(|n| n.strip_suffix(".m4s")).and_then(|n| n.parse().ok()));
    match number {
        Some(n) if n <= st.ready() => Ok(respond(200, "video/mp2t", segment())),
        Some(_) => {
            st.early.fetch_add(1, Ordering::SeqCst);
            Ok(respond(404, "text/plain", Bytes::from_static(b"not yet")))
        }
        None => Ok(respond(404, "text/plain", Bytes::new())),
    }
}

/// `2024-01-01T00:00:00.000Z`.
fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).expect("after 1970");
    let secs = d.as_secs();
    let (days, sod) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since the epoch (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        d.subsec_millis()
    )
}

#[test]
fn iso8601_dates() {
    assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso8601(UNIX_EPOCH + Duration::from_millis(1_709_164_800_250)), "2024-02-29T00:00:00.250Z");
    assert_eq!(iso8601(UNIX_EPOCH + Duration::from_secs(1_704_067_199)), "2023-12-31T23:59:59.000Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_hls_polls_and_fetches_each_segment_once() {
    let origin = LiveOrigin::start().await;
    // Let a window of segments exist.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let before = origin.ready();
    let report =
        bench_json(&[&origin.url("/hls/live.m3u8"), "--players", "4", "--duration", "3"], Duration::from_secs(30))
            .await;
    let after = origin.ready();
    println!(
        "hls-live: segments {before}..{after} ready; players fetched {} segments, {} playlists, {} stalls",
        count(&report, "segment"),
        count(&report, "playlist"),
        report.num(&["segment", "stalls"])
    );
    assert_eq!(report.str(&["stream"]), "hls-live");
    assert_eq!(report.num(&["errors"]), 0.0, "{report:?}");
    assert_eq!(origin.early(), 0);
    let hits = origin.hits();
    // Each player starts three segments back from the edge, then takes each new one once.
    let segments = count(&report, "segment");
    assert!(segments >= 4.0 * 3.0, "{report:?}");
    assert!(segments <= 4.0 * (after - before + 3) as f64 + 4.0, "{segments} segments, {before}..{after} ready");
    for (path, n) in &hits {
        if path.ends_with(".ts") {
            assert!(*n <= 4, "{path} fetched {n} times by 4 players");
        }
    }
    // Reloads every target duration (1 s), half of it when unchanged: about three
    // per player in three seconds, never more than six.
    let playlist = count(&report, "playlist");
    assert!((4.0..=4.0 * 7.0).contains(&playlist), "{playlist} playlist loads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_dash_fetches_segments_as_they_become_available() {
    let origin = LiveOrigin::start().await;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let report =
        bench_json(&[&origin.url("/dash/live.mpd"), "--players", "4", "--duration", "3"], Duration::from_secs(30))
            .await;
    println!(
        "dash-dynamic: {} segments ready at the end; players fetched {} segments (with 4 inits), {} MPDs, {} stalls",
        origin.ready(),
        count(&report, "segment"),
        count(&report, "playlist"),
        report.num(&["segment", "stalls"])
    );
    assert_eq!(report.str(&["stream"]), "dash-dynamic");
    assert_eq!(report.num(&["errors"]), 0.0, "{report:?}");
    assert_eq!(origin.early(), 0, "no segment requested before its availability time");
    let hits = origin.hits();
    assert_eq!(hits.get("/dash/init.m4s"), Some(&4));
    for (path, n) in &hits {
        if path.starts_with("/dash/seg-") {
            assert!(*n <= 4, "{path} fetched {n} times by 4 players");
        }
    }
    // Three segments back at the start, then one every 500 ms: about 3 + 6 each.
    let segments = count(&report, "segment") - 4.0;
    assert!((4.0 * 5.0..=4.0 * 11.0).contains(&segments), "{segments} media segments");
    // The MPD every minimumUpdatePeriod (1 s): the first load and two or three refreshes.
    let playlist = count(&report, "playlist");
    assert!((4.0 * 2.0..=4.0 * 5.0).contains(&playlist), "{playlist} MPD loads");
}

// ---- a tiny JSON reader for the report ----

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, path: &[&str]) -> Option<&Json> {
        let mut at = self;
        for key in path {
            match at {
                Json::Obj(fields) => at = fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)?,
                _ => return None,
            }
        }
        Some(at)
    }

    fn num(&self, path: &[&str]) -> f64 {
        match self.get(path) {
            Some(Json::Num(n)) => *n,
            other => panic!("{path:?} is not a number: {other:?}"),
        }
    }

    fn str(&self, path: &[&str]) -> &str {
        match self.get(path) {
            Some(Json::Str(s)) => s,
            other => panic!("{path:?} is not a string: {other:?}"),
        }
    }
}

fn parse_json(text: &str) -> Result<Json, String> {
    let mut p = JsonParser { s: text.as_bytes(), i: 0 };
    let v = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("trailing input at {}", p.i));
    }
    Ok(v)
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\n' | b'\r' | b'\t') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", c as char, self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    let Json::Str(k) = self.string()? else { unreachable!() };
                    self.eat(b':')?;
                    fields.push((k, self.value()?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(fields));
                        }
                        _ => return Err(format!("bad object at {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("bad array at {}", self.i)),
                    }
                }
            }
            Some(b'"') => self.string(),
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Json::Bool(true))
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Json::Bool(false))
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Json::Null)
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len() && matches!(self.s[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
                text.parse().map(Json::Num).map_err(|_| format!("bad number {text:?} at {start}"))
            }
            None => Err("unexpected end".into()),
        }
    }

    fn string(&mut self) -> Result<Json, String> {
        if self.s.get(self.i) != Some(&b'"') {
            return Err(format!("expected a string at {}", self.i));
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.i) {
                None => return Err("unterminated string".into()),
                Some(b'"') => {
                    self.i += 1;
                    return String::from_utf8(out).map(Json::Str).map_err(|e| e.to_string());
                }
                Some(b'\\') => {
                    let esc = *self.s.get(self.i + 1).ok_or("bad escape")?;
                    self.i += 2;
                    match esc {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self.s.get(self.i..self.i + 4).ok_or("short \\u escape")?;
                            let code = u32::from_str_radix(std::str::from_utf8(hex).map_err(|e| e.to_string())?, 16)
                                .map_err(|e| e.to_string())?;
                            self.i += 4;
                            let c = char::from_u32(code).ok_or("surrogate escape")?;
                            out.extend_from_slice(c.to_string().as_bytes());
                        }
                        _ => return Err(format!("bad escape at {}", self.i)),
                    }
                }
                Some(&c) if c < 0x20 => return Err(format!("raw control character at {}", self.i)),
                Some(&c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }
}

#[test]
fn json_reader() {
    let v = parse_json(r#"{"a":[1,-2.5e1,true,null],"b":{"c":"x\"\\\u00e9\n"},"d":{}}"#).expect("json");
    assert_eq!(v.get(&["b", "c"]), Some(&Json::Str("x\"\\é\n".into())));
    assert_eq!(v.get(&["a"]), Some(&Json::Arr(vec![Json::Num(1.0), Json::Num(-25.0), Json::Bool(true), Json::Null])));
    assert!(parse_json("{\"a\":1,}").is_err());
    assert!(parse_json("{\"a\":1} x").is_err());
    assert!(parse_json("\"raw\ncontrol\"").is_err());
}
