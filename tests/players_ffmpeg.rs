//! Real players through the edge: ffmpeg plays the bundled VOD streams (HLS with
//! MPEG-TS, HLS with fMP4, DASH, progressive MP4 over byte ranges) and a live HLS
//! stream that a background ffmpeg encodes, and every decoded frame is counted
//! (`-f framecrc`: one line per decoded frame, per stream).
//!
//! These tests need ffmpeg (with libx264, for the live encoder) on PATH. Without
//! it they FAIL, they never skip; `.ci/run` installs it.
//!
//! Never point ffmpeg's DASH demuxer at a live (dynamic) MPD: it loops on future
//! segments. Only the static MPD is played here.

mod common;
#[path = "common/static_origin.rs"]
mod static_origin;

use common::edge;
use static_origin::StaticOrigin;
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::process::{Child, Command};

// ---------------------------------------------------------------- ffmpeg runs

const FFMPEG_MISSING: &str = "ffmpeg is not installed or not on PATH: tests/players_ffmpeg.rs plays real streams \
     with it and needs ffmpeg with libx264 (Debian: `apt-get install -y ffmpeg`; .ci/run installs it)";

/// An ffmpeg command with stdin closed and the child killed if dropped.
fn ffmpeg(args: &[&str]) -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(["-nostdin", "-hide_banner"]).args(args).stdin(Stdio::null()).kill_on_drop(true);
    c
}

fn spawn(mut cmd: Command) -> Child {
    match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{FFMPEG_MISSING}"),
        Err(e) => panic!("cannot start ffmpeg: {e}"),
    }
}

/// A finished (or timed-out, then killed) ffmpeg run.
struct Run {
    /// `None`: it did not finish in time and was killed.
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn describe(&self) -> String {
        let how = match self.status {
            Some(s) => format!("exited with {s}"),
            None => "did not finish in time and was killed".to_string(),
        };
        let mut err = self.stderr.trim().to_string();
        if err.len() > 3000 {
            err.truncate(3000);
            err.push_str(" [...]");
        }
        format!("ffmpeg {how} after {:.1} s; stderr: {:?}", self.took.as_secs_f64(), err)
    }
}

/// Runs ffmpeg with `args`, capturing stdout and stderr, killing it after `limit`.
async fn run_ffmpeg(args: &[&str], limit: Duration) -> Run {
    let mut cmd = ffmpeg(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = spawn(cmd);
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out_task = tokio::spawn(async move {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v).await;
        v
    });
    let err_task = tokio::spawn(async move {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v).await;
        v
    });
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => Some(status.expect("waiting for ffmpeg")),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out_task.await.unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_task.await.unwrap_or_default()).into_owned();
    Run { status, stdout, stderr, took }
}

/// Plays `url` to the end (or as `after_input` limits), every stream decoded, one
/// framecrc line per decoded frame on stdout.
async fn play(url: &str, before_input: &[&str], after_input: &[&str], limit: Duration) -> Run {
    let mut args = vec!["-v", "error"];
    args.extend_from_slice(before_input);
    args.extend_from_slice(&["-i", url, "-map", "0"]);
    args.extend_from_slice(after_input);
    args.extend_from_slice(&["-f", "framecrc", "-"]);
    run_ffmpeg(&args, limit).await
}

/// One output stream of a framecrc listing.
#[derive(Clone, Debug, Default)]
struct Decoded {
    media: String,
    /// `WxH` for video.
    dims: String,
    frames: usize,
}

/// Streams by index, from framecrc output (`#media_type 0: video`,
/// `#dimensions 0: 320x180`, then `0,  0,  0, 1, 86400, 0x...` per frame).
fn decoded_streams(framecrc: &str) -> BTreeMap<usize, Decoded> {
    let mut m: BTreeMap<usize, Decoded> = BTreeMap::new();
    for line in framecrc.lines() {
        if let Some(rest) = line.strip_prefix('#') {
            let Some((key, value)) = rest.split_once(": ") else { continue };
            let Some((name, idx)) = key.rsplit_once(' ') else { continue };
            let Ok(idx) = idx.parse::<usize>() else { continue };
            match name {
                "media_type" => m.entry(idx).or_default().media = value.trim().to_string(),
                "dimensions" => m.entry(idx).or_default().dims = value.trim().to_string(),
                _ => {}
            }
        } else if let Some(Ok(idx)) = line.split(',').next().map(|s| s.trim().parse::<usize>()) {
            m.entry(idx).or_default().frames += 1;
        }
    }
    m
}

fn video(streams: &BTreeMap<usize, Decoded>) -> Vec<(String, usize)> {
    let mut v: Vec<(String, usize)> =
        streams.values().filter(|s| s.media == "video").map(|s| (s.dims.clone(), s.frames)).collect();
    v.sort();
    v
}

fn audio(streams: &BTreeMap<usize, Decoded>) -> Vec<usize> {
    streams.values().filter(|s| s.media == "audio").map(|s| s.frames).collect()
}

/// What a complete play of a stream decodes.
struct Expect {
    /// Video streams by `WxH` (sorted) and their frame counts.
    video: &'static [(&'static str, RangeInclusive<usize>)],
    /// Audio streams (AAC, 1024 samples a frame: 20 s at 48 kHz is 937.5 frames).
    audio_streams: usize,
    audio_frames: RangeInclusive<usize>,
    /// Distinct objects (200s) the whole play fetches.
    objects: usize,
    /// stderr lines tolerated (ffmpeg 5.1's DASH reader quirk); none otherwise.
    tolerated_stderr: &'static [&'static str],
}

const HLS_TS: Expect = Expect {
    video: &[("320x180", 500..=500), ("480x270", 500..=500)],
    audio_streams: 2,
    audio_frames: 930..=940,
    // master + 2 media playlists + 2 x 10 segments
    objects: 23,
    tolerated_stderr: &[],
};

const HLS_FMP4: Expect = Expect {
    video: &[("320x180", 500..=500), ("480x270", 500..=500)],
    audio_streams: 2,
    audio_frames: 930..=940,
    // master + 2 media playlists + 2 init + 2 x 10 segments
    objects: 25,
    tolerated_stderr: &[],
};

const DASH: Expect = Expect {
    video: &[("320x180", 499..=500), ("480x270", 499..=500)],
    audio_streams: 1,
    audio_frames: 930..=940,
    // MPD + 3 init + 3 x 10 segments
    objects: 34,
    // ffmpeg 5.1 asks for chunk-<id>-00011.m4s, one past the end (test-media/README.md).
    tolerated_stderr: &[
        "Error when loading first fragment of playlist",
        "Last message repeated",
        "Invalid data found when processing input",
    ],
};

/// Asserts a run finished cleanly and decoded what `want` says; returns a summary.
fn check_play(what: &str, run: &Run, want: &Expect) -> String {
    assert!(run.status.is_some_and(|s| s.success()), "{what}: {}", run.describe());
    let unexpected: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !want.tolerated_stderr.iter().any(|t| l.contains(t)))
        .collect();
    assert!(unexpected.is_empty(), "{what}: error output {unexpected:#?}");
    let streams = decoded_streams(&run.stdout);
    let v = video(&streams);
    let a = audio(&streams);
    let dims: Vec<&str> = v.iter().map(|(d, _)| d.as_str()).collect();
    let want_dims: Vec<&str> = want.video.iter().map(|(d, _)| *d).collect();
    assert_eq!(dims, want_dims, "{what}: video renditions decoded: {streams:?}");
    for ((d, n), (_, range)) in v.iter().zip(want.video) {
        assert!(range.contains(n), "{what}: {n} video frames decoded for {d}, want {range:?} ({streams:?})");
    }
    assert_eq!(a.len(), want.audio_streams, "{what}: audio streams decoded: {streams:?}");
    for n in &a {
        assert!(want.audio_frames.contains(n), "{what}: {n} audio frames, want {:?}", want.audio_frames);
    }
    format!("video {v:?}, audio frames {a:?}, {:.1} s", run.took.as_secs_f64())
}

// ---------------------------------------------------------------- edges

fn media_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test-media")
}

fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One distribution for every host, one origin (`origin_line`: a `url = ` or
/// `folder = ` line), and `server` (a `[server]` table or nothing) first.
fn config(origin_line: &str, server: &str) -> String {
    format!(
        "{server}\n[[distributions]]\nid = \"EPLAYERS\"\naliases = [\"*\"]\n\n\
         [[distributions.origins]]\nid = \"media\"\n{origin_line}\n\n\
         [distributions.default_behavior]\norigin = \"media\"\n"
    )
}

fn folder_origin() -> String {
    format!("folder = {}", toml_str(&media_dir().display().to_string()))
}

fn http_origin(o: &StaticOrigin) -> String {
    format!("url = {}", toml_str(&o.url()))
}

fn edge_url(e: &mediaedge::RunningEdge, path: &str) -> String {
    format!("http://{}{}", e.addr(), path)
}

/// A fresh folder under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let p = std::env::temp_dir().join(format!("mediaedge-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // A killed encoder may still be finishing a write: retry briefly.
        for _ in 0..5 {
            if std::fs::remove_dir_all(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

// ---------------------------------------------------------------- VOD

const VOD_LIMIT: Duration = Duration::from_secs(30);

/// Plays a bundled VOD stream through an edge on a folder origin, then through
/// an edge on an HTTP origin twice: the first play fetches every object from the
/// origin exactly once, the second is served wholly from the cache.
async fn vod(path: &str, want: &Expect) {
    let e = edge(&config(&folder_origin(), "")).await;
    let run = play(&edge_url(&e, path), &[], &[], VOD_LIMIT).await;
    let summary = check_play(&format!("{path} (folder origin)"), &run, want);
    println!("{path} via a folder origin: {summary}");

    let o = StaticOrigin::start(media_dir()).await;
    let e = edge(&config(&http_origin(&o), "")).await;
    let url = edge_url(&e, path);
    let run = play(&url, &[], &[], VOD_LIMIT).await;
    let summary = check_play(&format!("{path} (HTTP origin, cold)"), &run, want);
    let cold = o.counts();
    let ok: Vec<(&String, usize)> = cold.iter().filter(|(_, (_, s))| *s == 200).map(|(p, (n, _))| (p, *n)).collect();
    assert_eq!(ok.len(), want.objects, "{path}: distinct objects fetched from the origin: {cold:#?}");
    assert!(ok.iter().all(|(_, n)| *n == 1), "{path}: the origin saw an object more than once: {cold:#?}");
    assert!(cold.contains_key(path), "{path}: not fetched from the origin? {cold:#?}");
    println!("{path} via an HTTP origin, cold: {summary}; {} origin requests for {} objects", o.total(), ok.len());

    let before = o.total();
    let run = play(&url, &[], &[], VOD_LIMIT).await;
    let summary = check_play(&format!("{path} (HTTP origin, warm)"), &run, want);
    let warm = o.counts();
    let refetched: Vec<(&String, &(usize, u16))> =
        warm.iter().filter(|(p, (n, _))| cold.get(*p).map(|c| c.0) != Some(*n)).collect();
    // Only answers that were not media may have been asked again (a 404 is kept
    // for error_ttl, 10 s); every object the first play got must be a hit.
    assert!(
        refetched.iter().all(|(_, (_, s))| *s != 200),
        "{path}: the second play fetched objects from the origin again: {refetched:#?}"
    );
    println!("{path} via an HTTP origin, warm: {summary}; {} new origin requests", o.total() - before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vod_hls_mpeg_ts_plays_every_frame_and_replays_from_the_cache() {
    vod("/hls-ts/master.m3u8", &HLS_TS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vod_hls_fmp4_plays_every_frame_and_replays_from_the_cache() {
    vod("/hls-fmp4/master.m3u8", &HLS_FMP4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vod_dash_plays_every_representation_and_replays_from_the_cache() {
    vod("/dash/manifest.mpd", &DASH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progressive_mp4_plays_and_seeks_over_byte_ranges() {
    let dir = TempDir::new("players-log");
    let log = dir.0.join("access.log");
    let server = format!("[server]\naccess_log = {}\n", toml_str(&log.display().to_string()));
    let e = edge(&config(&folder_origin(), &server)).await;
    let url = edge_url(&e, "/progressive.mp4");
    let want = Expect {
        video: &[("480x270", 500..=500)],
        audio_streams: 1,
        audio_frames: 930..=940,
        objects: 1,
        tolerated_stderr: &[],
    };
    let run = play(&url, &[], &[], VOD_LIMIT).await;
    println!("progressive.mp4: {}", check_play("progressive.mp4", &run, &want));

    // Start at 10 s: ffmpeg seeks in the file (a Range request from the offset
    // in the moov index) and decodes the second half only.
    let half = Expect { video: &[("480x270", 250..=250)], audio_frames: 460..=475, ..want };
    let run = play(&url, &["-ss", "10"], &[], VOD_LIMIT).await;
    println!("progressive.mp4 from 10 s: {}", check_play("progressive.mp4 -ss 10", &run, &half));

    // The access log (written in the background) shows ffmpeg asked for ranges
    // and the edge answered them with 206, the later ones from the cache.
    let (fields, lines) = wait_for_log(&log, 2).await;
    let col = |name: &str| fields.iter().position(|f| f == name).unwrap_or_else(|| panic!("no {name} in {fields:?}"));
    let (stem, status, result, start) =
        (col("cs-uri-stem"), col("sc-status"), col("x-edge-result-type"), col("sc-range-start"));
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect::<Vec<_>>()).collect();
    let rows: Vec<&Vec<&str>> = rows.iter().filter(|r| r.get(stem) == Some(&"/progressive.mp4")).collect();
    let ranged: Vec<&&Vec<&str>> = rows.iter().filter(|r| r[status] == "206").collect();
    assert!(!ranged.is_empty(), "no 206 answers in the access log: {lines:#?}");
    assert!(
        ranged.iter().any(|r| r[start].parse::<u64>().is_ok_and(|s| s > 0)),
        "no range request from past the start of the file (the seek): {lines:#?}"
    );
    assert!(rows.iter().skip(1).all(|r| r[result] == "Hit"), "later requests not answered from the cache: {lines:#?}");
    println!(
        "progressive.mp4: {} requests, {} answered 206, range starts {:?}",
        rows.len(),
        ranged.len(),
        ranged.iter().map(|r| r[start]).collect::<Vec<_>>()
    );
}

/// The access log's field names and data lines once it has `want` lines (up to 5 s).
async fn wait_for_log(path: &Path, want: usize) -> (Vec<String>, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let fields: Vec<String> = text
            .lines()
            .find_map(|l| l.strip_prefix("#Fields: "))
            .map(|f| f.split(' ').map(str::to_string).collect())
            .unwrap_or_default();
        let lines: Vec<String> =
            text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect();
        if lines.len() >= want || Instant::now() > deadline {
            assert!(lines.len() >= want, "{} of {want} access-log lines after 5 s:\n{text}", lines.len());
            return (fields, lines);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- live

/// ffmpeg encodes a live HLS stream (1 s segments, a 6-segment window, old
/// segments deleted, no ENDLIST) into a folder served by a plain HTTP origin
/// that sends no caching headers; a second ffmpeg plays 20 s of it through the
/// edge. The edge must refresh the live playlist (a TTL of half its
/// EXT-X-TARGETDURATION when the origin is silent), not keep it for the 24 h
/// default, and fetch each segment once.
/// A live HLS encoder: ffmpeg writing 1 s segments of a 6-segment window (old
/// segments deleted, no ENDLIST) into `dir/live/index.m3u8` for `seconds`,
/// returned once its first playlist exists, with a way to read its stderr.
async fn live_encoder(dir: &TempDir, seconds: &str) -> (Child, impl Fn() -> String) {
    let live = dir.0.join("live");
    std::fs::create_dir_all(&live).expect("create live dir");
    let encoder_log_path = dir.0.join("encoder.log");
    let encoder_log = std::fs::File::create(&encoder_log_path).expect("encoder log");
    let segments = live.join("seg_%05d.ts").display().to_string();
    let playlist = live.join("index.m3u8");
    let playlist_arg = playlist.display().to_string();
    let mut cmd = ffmpeg(&[
        "-v",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=25",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        seconds,
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "25",
        "-keyint_min",
        "25",
        "-sc_threshold",
        "0",
        "-c:a",
        "aac",
        "-b:a",
        "64k",
        "-f",
        "hls",
        "-hls_time",
        "1",
        "-hls_list_size",
        "6",
        "-hls_flags",
        "delete_segments+omit_endlist+temp_file",
        "-hls_segment_filename",
        &segments,
        &playlist_arg,
    ]);
    cmd.stdout(Stdio::null()).stderr(encoder_log);
    let mut encoder = spawn(cmd);
    let encoder_says = move || std::fs::read_to_string(&encoder_log_path).unwrap_or_default();

    // The first playlist appears after the first 1 s segment.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !playlist.exists() {
        if let Ok(Some(status)) = encoder.try_wait() {
            panic!("the live encoder exited ({status}) before writing a playlist: {:?}", encoder_says());
        }
        assert!(Instant::now() < deadline, "no live playlist after 15 s; encoder: {:?}", encoder_says());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    (encoder, encoder_says)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_hls_from_an_ffmpeg_encoder_plays_through_the_edge() {
    let dir = TempDir::new("players-live");
    let (mut encoder, encoder_says) = live_encoder(&dir, "40").await;
    let o = StaticOrigin::start(&dir.0).await;
    let e = edge(&config(&http_origin(&o), "")).await;
    let run = play(&edge_url(&e, "/live/index.m3u8"), &[], &["-t", "20"], Duration::from_secs(35)).await;

    let streams = decoded_streams(&run.stdout);
    let v = video(&streams);
    let a = audio(&streams);
    let playlist_fetches = o.hits("/live/index.m3u8");
    let counts = o.counts();
    let segs: Vec<(&String, &(usize, u16))> = counts.iter().filter(|(p, _)| p.ends_with(".ts")).collect();
    let seg_max = segs.iter().map(|(_, (n, _))| *n).max().unwrap_or(0);
    let seg_again: Vec<_> = segs.iter().filter(|(_, (n, _))| *n > 1).collect();
    let diag = format!(
        "video {v:?}, audio frames {a:?}; the origin saw the playlist {playlist_fetches} time(s), {} segment(s) \
         (at most {seg_max} time(s) each; fetched again: {seg_again:?}); encoder stderr: {:?}",
        segs.len(),
        encoder_says()
    );
    if run.status.is_none() {
        panic!(
            "live play through the edge did not reach 20 s within 35 s (a live playlist the edge keeps for the \
             24 h default never advances): {}; {diag}",
            run.describe()
        );
    }
    assert!(run.status.is_some_and(|s| s.success()), "live play: {}; {diag}", run.describe());
    assert!(run.stderr.trim().is_empty(), "live play: error output {:?}; {diag}", run.stderr);
    assert_eq!(v.len(), 1, "live play: one video stream: {diag}");
    assert!(v[0].1 >= 475, "live play: {} video frames, want at least 475 (19 s at 25 fps): {diag}", v[0].1);
    assert!(a.len() == 1 && a[0] >= 850, "live play: audio missing or short: {diag}");
    assert!(playlist_fetches > 1, "the edge never refreshed the live playlist from the origin: {diag}");
    assert!(seg_max <= 2, "a live segment was fetched from the origin 3+ times: {diag}");
    assert!(segs.len() >= 15, "too few segments reached the origin for 20 s of play: {diag}");
    println!("live HLS: {diag}; played in {:.1} s", run.took.as_secs_f64());

    let _ = encoder.kill().await;
}

/// The live stream served by two origins over one folder, through an origin
/// group; ffmpeg plays 30 s through the edge and the primary is stopped at
/// 10 s. Playback goes on without an error, every frame decoded, and the
/// longest wait between two decoded frames (read as ffmpeg writes each one)
/// stays under three 1 s segments: the edge fails over at once on the refused
/// connections, then ejects the dead primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_hls_plays_on_when_the_primary_origin_dies() {
    let dir = TempDir::new("players-failover");
    let (mut encoder, encoder_says) = live_encoder(&dir, "50").await;
    let primary = StaticOrigin::start(&dir.0).await;
    let secondary = StaticOrigin::start(&dir.0).await;
    let cfg = format!(
        "[[distributions]]\nid = \"EFAILOVER\"\naliases = [\"*\"]\n\n\
         [[distributions.origins]]\nid = \"a\"\nurl = {}\nconnection_attempts = 1\nread_timeout = \"2s\"\n\n\
         [[distributions.origins]]\nid = \"b\"\nurl = {}\n\n\
         [[distributions.origin_groups]]\nid = \"ab\"\nmembers = [\"a\", \"b\"]\neject_after = 2\n\n\
         [distributions.default_behavior]\norigin = \"ab\"\n",
        toml_str(&primary.url()),
        toml_str(&secondary.url())
    );
    let e = edge(&cfg).await;
    let url = edge_url(&e, "/live/index.m3u8");
    let args = ["-v", "error", "-i", &url, "-map", "0:v", "-t", "30", "-flush_packets", "1", "-f", "framecrc", "-"];
    let mut cmd = ffmpeg(&args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut player = spawn(cmd);
    let stdout = player.stdout.take().expect("player stdout");
    let mut stderr = player.stderr.take().expect("player stderr");
    let err_task = tokio::spawn(async move {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v).await;
        String::from_utf8_lossy(&v).into_owned()
    });
    // Each decoded frame's arrival, as ffmpeg writes its framecrc line.
    let frames_task = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut arrivals = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if !line.starts_with('#') {
                arrivals.push(Instant::now());
            }
        }
        arrivals
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before_kill = primary.fetches().len();
    drop(primary);
    let killed_at = start.elapsed();
    let status = tokio::time::timeout(Duration::from_secs(50), player.wait()).await;
    let stderr = err_task.await.unwrap_or_default();
    let arrivals = frames_task.await.unwrap_or_default();
    let _ = encoder.kill().await;
    let status = match status {
        Ok(s) => s.expect("waiting for the player"),
        Err(_) => panic!("the player did not finish 30 s of live play within 50 s; stderr {stderr:?}"),
    };
    // The longest wait between two frames once playing (the first second is start-up).
    let max_gap = arrivals
        .windows(2)
        .filter(|w| w[0].duration_since(start) > Duration::from_secs(1))
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .unwrap_or_default();
    let after = secondary.fetches().len();
    let diag = format!(
        "{} frames; longest wait between frames {} ms; primary stopped at {:.1} s after {before_kill} requests; \
         the secondary served {after}; player stderr {stderr:?}; encoder {:?}",
        arrivals.len(),
        max_gap.as_millis(),
        killed_at.as_secs_f64(),
        encoder_says()
    );
    assert!(status.success(), "player exited with {status}: {diag}");
    assert!(stderr.trim().is_empty(), "player errors: {diag}");
    assert!(arrivals.len() >= 725, "at least 29 s of 25 fps video: {diag}");
    assert!(before_kill > 0 && after > 0, "both origins served part of the stream: {diag}");
    assert!(max_gap < Duration::from_secs(3), "a stall of {} ms: {diag}", max_gap.as_millis());
    println!("live failover: {diag}");
}
