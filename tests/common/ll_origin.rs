//! A low-latency live origin over real encoder output, for the browser player
//! tests. A background ffmpeg (libx264 `-tune zerolatency`, two video
//! renditions, testsrc) writes ffmpeg's low-latency DASH output: progressive
//! CMAF segments, each growing in a `.tmp` file fragment by fragment
//! (`-frag_duration`) and renamed when complete. Over those files this origin
//! serves:
//!
//! - LL-HLS of its own (ffmpeg cannot write it): every complete `moof`+`mdat`
//!   pair of a growing segment is published as an `EXT-X-PART` byte range, with
//!   `EXT-X-PRELOAD-HINT`, `EXT-X-SERVER-CONTROL`, blocking reloads
//!   (`_HLS_msn`/`_HLS_part` held until available), `EXT-X-RENDITION-REPORT`s
//!   and a multivariant playlist (`/master.m3u8`);
//! - ffmpeg's own LL-DASH MPD (`/manifest.mpd`) and a clock (`/time`);
//! - segments as they grow: a request for a segment being written streams its
//!   bytes as ffmpeg writes them (chunked 200, or 206 `bytes a-b/*` for a
//!   closed range); a finished one is served whole or by range;
//! - the player pages and player libraries (`/player/...`), so pages and media
//!   share one origin (no CORS preflights for `Range`).
//!
//! It records when each part became available (wall clock, ms since the Unix
//! epoch, so the browser's `Date.now()` compares with it) and every request,
//! marked as coming through the edge when it carries `Via`.
#![allow(dead_code)]

use crate::common::tokio_stream_shim;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::watch;

type Body = BoxBody<Bytes, std::io::Error>;

/// Frames per second of the encoded test signal.
pub const FPS: u32 = 30;
/// Seconds per segment and per part (fragment).
pub const SEGMENT_S: f64 = 2.0;
pub const PART_S: f64 = 0.5;
/// The renditions: (width, height, video bitrate).
pub type Renditions = [(u32, u32, &'static str); 2];
pub const RENDITIONS: Renditions = [(384, 216, "300k"), (640, 360, "600k")];
/// Smaller renditions, a quarter of the pixels to decode, for runs with many
/// players in one browser: the same timing (frame rate, parts, segments).
pub const SMALL_RENDITIONS: Renditions = [(192, 108, "100k"), (320, 180, "200k")];
/// Playlists list this many complete segments before the one being written.
const WINDOW: u64 = 6;

/// What the origin does with a request for a segment not started yet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Early {
    /// Hold the next segment until ffmpeg starts it, then stream it (an LL-HLS
    /// packager, which answers a preload hint this way).
    Hold,
    /// 404 without Cache-Control, as a plain web server in front of ffmpeg's
    /// LL-DASH output does.
    NotFound,
}

/// One published part: a complete `moof`+`mdat` (the first also carries the
/// segment's `styp`).
#[derive(Clone, Debug)]
pub struct Part {
    pub offset: u64,
    pub len: u64,
    pub frames: u32,
    /// When the origin saw it complete, ms since the Unix epoch.
    pub available_ms: f64,
}

#[derive(Default, Debug, Clone)]
struct Segment {
    parts: Vec<Part>,
    /// Bytes parsed into parts so far.
    parsed: u64,
    complete: bool,
}

impl Segment {
    fn duration(&self) -> f64 {
        self.parts.iter().map(|p| p.frames as f64).sum::<f64>() / FPS as f64
    }
}

/// One request the origin answered.
#[derive(Clone, Debug)]
pub struct Logged {
    pub path: String,
    pub query: String,
    pub range: Option<String>,
    pub status: u16,
    pub via_edge: bool,
}

struct State {
    renditions: Renditions,
    dir: PathBuf,
    pages: PathBuf,
    early: Early,
    /// Per rendition, segments by number.
    reps: Mutex<Vec<BTreeMap<u64, Segment>>>,
    changed: watch::Sender<u64>,
    log: Mutex<Vec<Logged>>,
    /// Every part ever published, kept after its segment has left the
    /// playlists: (rendition, segment, part) → part.
    history: Mutex<BTreeMap<(usize, u64, usize), Part>>,
}

pub struct LlLive {
    pub addr: SocketAddr,
    state: Arc<State>,
    ffmpeg: tokio::process::Child,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: crate::common::TempDir,
}

impl Drop for LlLive {
    fn drop(&mut self) {
        let _ = self.ffmpeg.start_kill();
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub const FFMPEG_MISSING: &str = "ffmpeg is not installed or not on PATH: the low-latency origin encodes its live \
     stream with ffmpeg and libx264 (Debian: `apt-get install -y ffmpeg`; scripts/test.sh installs it)";

impl LlLive {
    /// Starts ffmpeg and the origin. `pages` is the folder with the player pages
    /// and `node_modules` (tests/players).
    pub async fn start(early: Early, pages: &Path) -> LlLive {
        Self::start_with(early, pages, RENDITIONS).await
    }

    /// The same with other picture sizes and bitrates.
    pub async fn start_with(early: Early, pages: &Path, renditions: Renditions) -> LlLive {
        let dir = crate::common::TempDir::new("ll-origin");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let (changed, _) = watch::channel(0u64);
        let state = Arc::new(State {
            renditions,
            dir: dir.path().to_path_buf(),
            pages: pages.to_path_buf(),
            early,
            reps: Mutex::new(vec![BTreeMap::new(); RENDITIONS.len()]),
            changed,
            log: Mutex::new(Vec::new()),
            history: Mutex::new(BTreeMap::new()),
        });
        let ffmpeg = spawn_ffmpeg(dir.path(), &format!("http://{addr}/time"), &renditions);
        let st = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else { continue };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
                });
            }
        });
        let st = state.clone();
        let scanner = tokio::spawn(async move {
            loop {
                scan(&st);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        LlLive { addr, state, ffmpeg, tasks: vec![server, scanner], _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until every rendition has `n` complete segments (the stream is live).
    pub async fn wait_segments(&mut self, n: usize, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let ready = self.state.reps.lock().unwrap().iter().all(|r| r.values().filter(|s| s.complete).count() >= n);
            if ready {
                return;
            }
            if let Ok(Some(status)) = self.ffmpeg.try_wait() {
                panic!("the live encoder (ffmpeg) exited with {status} before the stream was live");
            }
            assert!(tokio::time::Instant::now() < deadline, "the live encoder made no {n} segments in {limit:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// When each part became available: (rendition, segment number, part
    /// index) → part, for every part published since the start (also those
    /// that have left the playlists).
    pub fn parts(&self) -> BTreeMap<(usize, u64, usize), Part> {
        self.state.history.lock().unwrap().clone()
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }

    /// ffmpeg still encoding?
    pub fn encoder_alive(&mut self) -> bool {
        matches!(self.ffmpeg.try_wait(), Ok(None))
    }
}

fn spawn_ffmpeg(dir: &Path, utc_url: &str, renditions: &Renditions) -> tokio::process::Child {
    let (w0, h0, b0) = renditions[0];
    let (w1, h1, b1) = renditions[1];
    let filter = format!("[0:v]split=2[a][b];[a]scale={w0}:{h0},setsar=1[v0];[b]scale={w1}:{h1},setsar=1[v1]");
    let gop = (SEGMENT_S * FPS as f64) as u32;
    let mut c = tokio::process::Command::new("ffmpeg");
    #[rustfmt::skip]
    c.args(["-nostdin", "-hide_banner", "-v", "error", "-re",
        "-f", "lavfi", "-i", &format!("testsrc=size={w1}x{h1}:rate={FPS}"),
        "-filter_complex", &filter, "-map", "[v0]", "-map", "[v1]",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
        "-g", &gop.to_string(), "-keyint_min", &gop.to_string(), "-sc_threshold", "0",
        "-b:v:0", b0, "-b:v:1", b1,
        "-f", "dash", "-streaming", "1", "-ldash", "1",
        "-seg_duration", &SEGMENT_S.to_string(), "-frag_type", "duration", "-frag_duration", &PART_S.to_string(),
        "-use_template", "1", "-use_timeline", "0", "-target_latency", "3",
        "-adaptation_sets", "id=0,streams=v",
        "-format_options", "movflags=+cmaf", "-window_size", "6", "-utc_timing_url", utc_url,
        "manifest.mpd"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    match c.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{FFMPEG_MISSING}"),
        Err(e) => panic!("cannot start ffmpeg: {e}"),
    }
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1000.0
}

pub fn seg_name(rep: usize, n: u64) -> String {
    format!("chunk-stream{rep}-{n:05}.m4s")
}

/// (rendition, number) of a segment file name.
fn parse_seg_name(name: &str) -> Option<(usize, u64)> {
    let rest = name.strip_prefix("chunk-stream")?.strip_suffix(".m4s")?;
    let (r, n) = rest.split_once('-')?;
    Some((r.parse().ok()?, n.parse().ok()?))
}

// ------------------------------------------------------------------ scanning

/// Looks at the segment files ffmpeg is writing and publishes new parts.
fn scan(st: &State) {
    let mut changed = false;
    for rep in 0..RENDITIONS.len() {
        let mut n = {
            let reps = st.reps.lock().unwrap();
            reps[rep]
                .iter()
                .find(|(_, s)| !s.complete)
                .map(|(n, _)| *n)
                .or_else(|| reps[rep].keys().last().map(|n| n + 1))
                .unwrap_or(1)
        };
        loop {
            let done = st.dir.join(seg_name(rep, n));
            let tmp = st.dir.join(format!("{}.tmp", seg_name(rep, n)));
            // Read the final name first: after a rename the .tmp is gone.
            let (bytes, complete) = match std::fs::read(&done) {
                Ok(b) => (b, true),
                Err(_) => match std::fs::read(&tmp) {
                    Ok(b) => (b, false),
                    Err(_) => match std::fs::read(&done) {
                        Ok(b) => (b, true),
                        Err(_) => break,
                    },
                },
            };
            let mut reps = st.reps.lock().unwrap();
            let seg = reps[rep].entry(n).or_default();
            let before = (seg.parts.len(), seg.complete);
            publish_parts(seg, &bytes);
            seg.complete = complete;
            changed |= before != (seg.parts.len(), seg.complete);
            if seg.parts.len() > before.0 {
                let mut history = st.history.lock().unwrap();
                for (i, p) in seg.parts.iter().enumerate().skip(before.0) {
                    history.insert((rep, n, i), p.clone());
                }
            }
            // Drop what has left every playlist.
            while reps[rep].len() as u64 > WINDOW + 4 {
                let first = *reps[rep].keys().next().unwrap();
                reps[rep].remove(&first);
            }
            if !complete {
                break;
            }
            n += 1;
        }
    }
    if changed {
        st.changed.send_modify(|v| *v += 1);
    }
}

/// Top-level box at `at`: (type, total size), if its header is there.
fn box_at(b: &[u8], at: usize) -> Option<([u8; 4], u64)> {
    let h = b.get(at..at + 8)?;
    let size = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as u64;
    let kind = [h[4], h[5], h[6], h[7]];
    let size = if size == 1 {
        let l = b.get(at + 8..at + 16)?;
        u64::from_be_bytes(l.try_into().ok()?)
    } else {
        size
    };
    (size >= 8).then_some((kind, size))
}

/// Adds a part for every complete `moof`+`mdat` pair past `seg.parsed`.
fn publish_parts(seg: &mut Segment, b: &[u8]) {
    let mut at = seg.parsed as usize;
    let mut frames = 0;
    while let Some((kind, size)) = box_at(b, at) {
        let end = at as u64 + size;
        if end > b.len() as u64 {
            break;
        }
        if &kind == b"moof" {
            frames = sample_count(&b[at + 8..end as usize]);
        }
        at = end as usize;
        if &kind == b"mdat" {
            let offset = seg.parsed;
            seg.parts.push(Part { offset, len: end - offset, frames, available_ms: now_ms() });
            seg.parsed = end;
        }
    }
}

/// Samples in a `moof` (the sum of its `trun` sample counts).
fn sample_count(moof: &[u8]) -> u32 {
    let mut total = 0;
    let mut at = 0;
    while let Some((kind, size)) = box_at(moof, at) {
        let end = (at as u64 + size).min(moof.len() as u64) as usize;
        if &kind == b"traf" {
            let traf = &moof[at + 8..end];
            let mut t = 0;
            while let Some((k, s)) = box_at(traf, t) {
                if &k == b"trun" {
                    if let Some(c) = traf.get(t + 12..t + 16) {
                        total += u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                    }
                }
                t += s as usize;
            }
        }
        at = end;
    }
    total
}

// ------------------------------------------------------------------ playlists

fn multivariant(renditions: &Renditions) -> String {
    let mut s = String::from("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for (i, (w, h, b)) in renditions.iter().enumerate() {
        let bw = b.trim_end_matches('k').parse::<u64>().unwrap_or(500) * 1100;
        s.push_str(&format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={bw},RESOLUTION={w}x{h},CODECS=\"avc1.42c01e\",FRAME-RATE={FPS}\nv{i}.m3u8\n"
        ));
    }
    s
}

/// (last segment number with a part, parts in it) of a rendition.
fn last_part(segs: &BTreeMap<u64, Segment>) -> Option<(u64, usize)> {
    segs.iter().rev().find(|(_, s)| !s.parts.is_empty()).map(|(n, s)| (*n, s.parts.len()))
}

fn media_playlist(reps: &[BTreeMap<u64, Segment>], rep: usize) -> Option<String> {
    let segs = &reps[rep];
    let (last_n, _) = last_part(segs)?;
    let complete: Vec<u64> = segs.iter().filter(|(_, s)| s.complete).map(|(n, _)| *n).collect();
    let first = complete.len().saturating_sub(WINDOW as usize);
    let listed: Vec<u64> =
        complete[first..].iter().copied().chain(segs.get(&last_n).filter(|s| !s.complete).map(|_| last_n)).collect();
    let first_n = *listed.first()?;
    let mut s = format!(
        "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{}\n#EXT-X-PART-INF:PART-TARGET={PART_S:.3}\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}\n#EXT-X-MEDIA-SEQUENCE:{first_n}\n\
         #EXT-X-MAP:URI=\"init-stream{rep}.m4s\"\n",
        SEGMENT_S.ceil() as u64,
        PART_S * 3.0,
    );
    for n in &listed {
        let seg = &segs[n];
        let name = seg_name(rep, *n);
        // Parts for the last three segments (the specification's minimum is
        // those within three target durations of the end).
        if *n + 3 > last_n {
            for (i, p) in seg.parts.iter().enumerate() {
                let ind = if i == 0 { ",INDEPENDENT=YES" } else { "" };
                s.push_str(&format!(
                    "#EXT-X-PART:DURATION={:.3},URI=\"{name}\",BYTERANGE=\"{}@{}\"{ind}\n",
                    p.frames as f64 / FPS as f64,
                    p.len,
                    p.offset
                ));
            }
        }
        if seg.complete {
            s.push_str(&format!("#EXTINF:{:.3},\n{name}\n", seg.duration()));
        }
    }
    // The next part: the rest of the growing segment, or the next segment.
    let last = &segs[&last_n];
    let (hint_name, hint_start) =
        if last.complete { (seg_name(rep, last_n + 1), 0) } else { (seg_name(rep, last_n), last.parsed) };
    s.push_str(&format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{hint_name}\",BYTERANGE-START={hint_start}\n"));
    for (other, segs) in reps.iter().enumerate() {
        if other != rep {
            if let Some((n, parts)) = last_part(segs) {
                s.push_str(&format!(
                    "#EXT-X-RENDITION-REPORT:URI=\"v{other}.m3u8\",LAST-MSN={n},LAST-PART={}\n",
                    parts - 1
                ));
            }
        }
    }
    Some(s)
}

/// Has the playlist of `rep` got part `part` of segment `msn` (or anything later)?
fn has_part(segs: &BTreeMap<u64, Segment>, msn: u64, part: Option<usize>) -> bool {
    match segs.get(&msn) {
        Some(s) if s.complete => true,
        Some(s) => part.is_some_and(|p| s.parts.len() > p),
        None => segs.keys().any(|n| *n > msn),
    }
}

// ------------------------------------------------------------------ serving

fn full(status: u16, ctype: &str, cache: Option<&str>, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::builder().status(status).header("content-type", ctype);
    if let Some(c) = cache {
        r = r.header("cache-control", c);
    }
    r.body(Full::new(body.into()).map_err(|never| match never {}).boxed()).unwrap()
}

async fn handle(st: Arc<State>, req: Request<hyper::body::Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let range = req.headers().get("range").and_then(|v| v.to_str().ok()).map(str::to_string);
    let via_edge = req.headers().contains_key("via");
    let mut resp = route(&st, &path, &query, range.as_deref()).await;
    resp.headers_mut().insert("access-control-allow-origin", "*".parse().unwrap());
    let status = resp.status().as_u16();
    st.log.lock().unwrap().push(Logged { path, query, range, status, via_edge });
    Ok(resp)
}

async fn route(st: &Arc<State>, path: &str, query: &str, range: Option<&str>) -> Response<Body> {
    let name = path.trim_start_matches('/');
    match name {
        "master.m3u8" => full(200, "application/vnd.apple.mpegurl", Some("max-age=5"), multivariant(&st.renditions)),
        "time" => full(200, "text/plain", Some("no-store"), iso_now()),
        "manifest.mpd" => match tokio::fs::read(st.dir.join(name)).await {
            Ok(b) => full(200, "application/dash+xml", Some("max-age=1"), b),
            Err(_) => full(404, "text/plain", None, "no manifest yet"),
        },
        _ if name.starts_with("player/") => page(st, &name["player/".len()..]).await,
        _ if name.ends_with(".m3u8") => playlist(st, name, query).await,
        _ if name.starts_with("init-stream") => match tokio::fs::read(st.dir.join(name)).await {
            Ok(b) => full(200, "video/mp4", Some("max-age=60"), b),
            Err(_) => full(404, "text/plain", None, "not found"),
        },
        _ => match parse_seg_name(name) {
            Some((rep, n)) if rep < RENDITIONS.len() => segment(st, rep, n, range).await,
            _ => full(404, "text/plain", None, "not found"),
        },
    }
}

async fn page(st: &State, name: &str) -> Response<Body> {
    let (file, ctype) = match name {
        "hls.js" => (st.pages.join("node_modules/hls.js/dist/hls.min.js"), "text/javascript"),
        "dash.js" => (st.pages.join("node_modules/dashjs/dist/modern/umd/dash.all.min.js"), "text/javascript"),
        "hls.html" | "dash.html" => (st.pages.join(name), "text/html"),
        _ => return full(404, "text/plain", None, "not found"),
    };
    match tokio::fs::read(&file).await {
        Ok(b) => full(200, ctype, Some("max-age=600"), b),
        Err(e) => full(
            500,
            "text/plain",
            None,
            format!("cannot read {}: {e} (run `npm ci` in tests/players)", file.display()),
        ),
    }
}

async fn playlist(st: &Arc<State>, name: &str, query: &str) -> Response<Body> {
    let Some(rep) = name.strip_prefix('v').and_then(|r| r.strip_suffix(".m3u8")).and_then(|r| r.parse::<usize>().ok())
    else {
        return full(404, "text/plain", None, "not found");
    };
    if rep >= RENDITIONS.len() {
        return full(404, "text/plain", None, "not found");
    }
    let arg = |k: &str| {
        query.split('&').find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('='))).map(str::to_string)
    };
    let msn = arg("_HLS_msn").and_then(|v| v.parse::<u64>().ok());
    let part = arg("_HLS_part").and_then(|v| v.parse::<usize>().ok());
    if let Some(msn) = msn {
        let last = last_part(&st.reps.lock().unwrap()[rep]).map(|(n, _)| n).unwrap_or(0);
        if msn > last + 2 {
            return full(400, "text/plain", None, "_HLS_msn is more than two segments ahead");
        }
        let mut rx = st.changed.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(SEGMENT_S * 3.0);
        while !has_part(&st.reps.lock().unwrap()[rep], msn, part) {
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return full(503, "text/plain", None, "not produced within three target durations");
            }
        }
    }
    let cache = if msn.is_some() { "max-age=6" } else { "max-age=1" };
    match media_playlist(&st.reps.lock().unwrap(), rep) {
        Some(p) => full(200, "application/vnd.apple.mpegurl", Some(cache), p),
        None => full(404, "text/plain", None, "not live yet"),
    }
}

/// `bytes=a-b` or `bytes=a-`.
fn parse_range(r: &str) -> Option<(u64, Option<u64>)> {
    let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
    let a = a.trim().parse().ok()?;
    let b = if b.trim().is_empty() { None } else { Some(b.trim().parse().ok()?) };
    Some((a, b))
}

async fn segment(st: &Arc<State>, rep: usize, n: u64, range: Option<&str>) -> Response<Body> {
    let done = st.dir.join(seg_name(rep, n));
    let tmp = st.dir.join(format!("{}.tmp", seg_name(rep, n)));
    let range = range.and_then(parse_range);
    // Not started yet: hold the next one (LL-HLS) or 404 (a plain server).
    if !done.exists() && !tmp.exists() {
        let next = {
            let reps = st.reps.lock().unwrap();
            reps[rep].keys().last().is_some_and(|last| n <= last + 1)
        };
        if st.early == Early::NotFound || !next {
            return full(404, "text/plain", None, "not found");
        }
        let mut rx = st.changed.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(SEGMENT_S * 3.0);
        while !done.exists() && !tmp.exists() {
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return full(404, "text/plain", None, "not produced");
            }
        }
    }
    if let Ok(b) = std::fs::read(&done) {
        return whole(b, range);
    }
    // Growing: stream the bytes as ffmpeg writes them. An open-ended range
    // waits for the end (its length is unknown until then).
    let file = match std::fs::File::open(&tmp) {
        Ok(f) => f,
        Err(_) => match std::fs::read(&done) {
            Ok(b) => return whole(b, range),
            Err(_) => return full(404, "text/plain", None, "not found"),
        },
    };
    let (start, end, status) = match range {
        None => (0, None, 200),
        Some((a, Some(b))) if b >= a => (a, Some(b + 1), 206),
        Some(_) => {
            let mut rx = st.changed.subscribe();
            while !done.exists() {
                if tokio::time::timeout(Duration::from_secs(10), rx.changed()).await.is_err() {
                    return full(503, "text/plain", None, "segment never finished");
                }
            }
            return match std::fs::read(&done) {
                Ok(b) => whole(b, range),
                Err(_) => full(404, "text/plain", None, "not found"),
            };
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    std::thread::spawn(move || follow(file, done, start, end, tx));
    let mut r = Response::builder().status(status).header("content-type", "video/mp4");
    if let Some(e) = end {
        r = r.header("content-range", format!("bytes {start}-{}/*", e - 1)).header("content-length", e - start);
    }
    r.body(StreamBody::new(tokio_stream_shim::Receiver(rx)).boxed()).unwrap()
}

/// Sends the bytes of a growing file from `start` up to `end` (or its end, once
/// `done` exists), as they are written.
fn follow(
    mut f: std::fs::File,
    done: PathBuf,
    start: u64,
    end: Option<u64>,
    tx: tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
) {
    let mut at = start;
    let mut buf = vec![0u8; 64 * 1024];
    let waited = std::time::Instant::now();
    loop {
        if end.is_some_and(|e| at >= e) {
            return;
        }
        let finished = done.exists();
        let want = end.map(|e| (e - at) as usize).unwrap_or(buf.len()).min(buf.len());
        let got = f.seek(SeekFrom::Start(at)).and_then(|_| f.read(&mut buf[..want])).unwrap_or(0);
        if got > 0 {
            at += got as u64;
            if tx.blocking_send(Ok(Frame::data(Bytes::copy_from_slice(&buf[..got])))).is_err() {
                return;
            }
            continue;
        }
        if finished {
            if end.is_some_and(|e| at < e) {
                let _ = tx.blocking_send(Err(std::io::Error::other("segment ended before the range")));
            }
            return;
        }
        if waited.elapsed() > Duration::from_secs(30) {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn whole(b: Vec<u8>, range: Option<(u64, Option<u64>)>) -> Response<Body> {
    let len = b.len() as u64;
    let Some((a, e)) = range else {
        return full(200, "video/mp4", Some("max-age=60"), b);
    };
    let e = e.unwrap_or(len.saturating_sub(1)).min(len.saturating_sub(1));
    if a > e || a >= len {
        return Response::builder()
            .status(416)
            .header("content-range", format!("bytes */{len}"))
            .body(Full::new(Bytes::new()).map_err(|never| match never {}).boxed())
            .unwrap();
    }
    let body = Bytes::from(b).slice(a as usize..=e as usize);
    let mut r = full(206, "video/mp4", Some("max-age=60"), body);
    r.headers_mut().insert("content-range", format!("bytes {a}-{e}/{len}").parse().unwrap());
    r
}

/// The time as `2026-01-02T03:04:05.678Z` (DASH `http-xsdate`).
fn iso_now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
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
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}
