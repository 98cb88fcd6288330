//! Low-latency live streams played by real players in headless Chromium, through
//! the edge and direct from the origin at the same time:
//!
//! - LL-HLS (an origin of the project's own over ffmpeg's progressive CMAF
//!   output, two renditions) played by hls.js in low-latency mode, with level
//!   switches down and back up at fixed times;
//! - LL-DASH (ffmpeg's own output, segments streamed while they grow) played
//!   by dash.js in low-latency mode.
//!
//! Each run checks: no fatal player error, no stall, and through the edge one
//! origin request per part or segment. It prints the figures (part delay from
//! the origin publishing a part to the player having it, live latency, origin
//! requests) for the edge and direct side by side.
//!
//! And the built-in demo's VOD streams (HLS through hls.js, DASH through
//! dash.js) played by pages served from another origin than the edge's (a
//! second local port): the edge answers CORS itself, so the players play with
//! no CORS error; a page on an origin the edge's policy does not allow is
//! refused.
//!
//! Needs Debian's Chromium (/usr/bin/chromium, or $CHROMIUM), Node.js with
//! `npm ci` done in tests/players, and ffmpeg with libx264. Without them the
//! tests FAIL with a message saying what is missing; scripts/test.sh installs
//! them. Knobs: LL_PLAYER_SECONDS (play time per run, default 40),
//! LL_EDGE_PLAYERS and LL_DIRECT_PLAYERS (players through the edge and direct,
//! default 1 each; benches/ll_players.sh runs 1, 3 and 20 on both sides),
//! LL_SIDES=apart (the edge's players, then the direct ones, one run after
//! the other against the same origin, instead of all at once), LL_VIDEO=small
//! (192x108 and 320x180 renditions instead of 384x216 and 640x360: a quarter
//! of the decoding, the same frame rate, parts and segments), LL_VIDEO_WIDTH
//! (the players' width on the page, default 160), LL_PLAYER_REPORT=FILE
//! (hls.js: the players' whole report and the origin's part times, as JSON).

mod common;
#[path = "common/ll_origin.rs"]
mod ll_origin;

use ll_origin::{Early, LlLive, Logged};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// One browser run at a time: two at once would starve each other's players.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Who plays in a run, from the knobs: players through the edge and direct,
/// whether both sides play at once or one after the other (edge first, then
/// direct, against the same origin and encoder), the picture sizes, and the
/// players' width on the page.
struct Audience {
    edge: u64,
    direct: u64,
    apart: bool,
    renditions: ll_origin::Renditions,
    video_width: u64,
}

fn audience() -> Audience {
    let small = std::env::var("LL_VIDEO").is_ok_and(|v| v == "small");
    Audience {
        edge: knob("LL_EDGE_PLAYERS", 1).max(1),
        direct: knob("LL_DIRECT_PLAYERS", 1).max(1),
        apart: std::env::var("LL_SIDES").is_ok_and(|v| v == "apart"),
        renditions: if small { ll_origin::SMALL_RENDITIONS } else { ll_origin::RENDITIONS },
        video_width: knob("LL_VIDEO_WIDTH", 160),
    }
}

impl Audience {
    /// The run's targets: each side's players in pages of at most five.
    fn targets(&self, edge_base: &str, direct_base: &str) -> Vec<Value> {
        [("edge", edge_base, self.edge), ("direct", direct_base, self.direct)]
            .into_iter()
            .map(|(label, base, n)| {
                let pages = n.div_ceil(5);
                serde_json::json!({ "label": label, "base": base, "pages": pages, "players": n.div_ceil(pages) })
            })
            .collect()
    }

    /// Plays `cfg` with the targets, at once or one side after the other, and
    /// returns one report holding both sides' results.
    async fn play(&self, mut cfg: Value, targets: Vec<Value>, seconds: u64) -> Value {
        cfg["videoWidth"] = self.video_width.into();
        if !self.apart {
            cfg["targets"] = targets.into();
            return play(cfg, seconds).await;
        }
        let (mut results, mut console) = (Vec::new(), Vec::new());
        for t in targets {
            cfg["targets"] = vec![t].into();
            let r = play(cfg.clone(), seconds).await;
            results.extend(r["results"].as_array().cloned().unwrap_or_default());
            console.extend(r["consoleErrors"].as_array().cloned().unwrap_or_default());
        }
        serde_json::json!({ "results": results, "consoleErrors": console })
    }
}

fn players_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/players")
}

/// Fails (never skips) when the browser side is not installed.
fn check_browser_side() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: these tests play streams in headless Chromium \
         (Debian: `apt-get install -y chromium`; scripts/test.sh installs it)"
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "Node.js is not installed or not on PATH: it drives Chromium for these tests \
         (Debian: `apt-get install -y nodejs npm`; scripts/test.sh installs it)"
    );
    assert!(
        players_dir().join("node_modules/playwright-core").exists()
            && players_dir().join("node_modules/hls.js").exists()
            && players_dir().join("node_modules/dashjs").exists(),
        "tests/players/node_modules is missing: run `npm ci` in tests/players (scripts/test.sh does)"
    );
}

/// Runs tests/players/run.js and returns its report.
async fn play(cfg: Value, seconds: u64) -> Value {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("run.js")
        .arg(cfg.to_string())
        .current_dir(players_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("start node (Node.js must be on PATH)");
    let out = tokio::time::timeout(Duration::from_secs(seconds + 120), child.wait_with_output())
        .await
        .expect("the browser run hung")
        .expect("node ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser run failed ({}): {stderr}", out.status);
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("bad report from run.js ({e}): {stdout} {stderr}"))
}

/// With LL_PLAYER_REPORT=FILE, writes the players' whole report and when the
/// origin published each part (`[rendition, segment, part, ms]`) there.
fn keep_report(report: &Value, published: &BTreeMap<(usize, u64, usize), ll_origin::Part>) {
    let Ok(file) = std::env::var("LL_PLAYER_REPORT") else { return };
    let parts: Vec<Value> =
        published.iter().map(|((r, n, i), p)| serde_json::json!([r, n, i, p.available_ms])).collect();
    let all = serde_json::json!({ "report": report, "parts": parts });
    if let Err(e) = std::fs::write(&file, all.to_string()) {
        eprintln!("cannot write {file}: {e}");
    }
}

fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[((s.len() - 1) as f64 * p).round() as usize]
}

/// What the players of one target (edge or direct) saw.
#[derive(Default, Debug)]
struct Seen {
    players: usize,
    playing: usize,
    fatal: Vec<Value>,
    errors: Vec<Value>,
    waiting: u64,
    stalls: u64,
    latency: Vec<f64>,
    part_delay: Vec<f64>,
    /// The same for parts loaded at the live edge: no later part of that
    /// rendition existed when the player asked for it (catching up after a
    /// start or a level switch loads older parts, whose delay is the player's
    /// choice, not delivery).
    edge_part_delay: Vec<f64>,
    /// (rendition, segment, part) loaded by any player.
    parts: BTreeSet<(usize, u64, usize)>,
    /// Level sequences, per player.
    levels: Vec<Vec<i64>>,
    segments: usize,
    /// Latency against the origin's clock (s): the time since the origin had
    /// the media at the playhead, sampled once a second (hls.js only).
    real_latency: Vec<f64>,
    /// How each player tuned in (hls.js only).
    tune_ins: Vec<TuneIn>,
}

/// What one hls.js player decided at tune-in, and why. hls.js starts at
/// `targetLatency` (PART-HOLD-BACK) behind the end of the first media playlist
/// it gets, counting that playlist's age from its arrival: the time its newest
/// part had already spent at the origin is not seen, and adds to the latency
/// for as long as it plays (hls.js has no catch-up by default), as does the
/// time from that choice to playback.
#[derive(Default, Debug, Clone)]
struct TuneIn {
    /// The media playlist it tuned in from (the newest it had when it chose):
    /// plain or a blocking reload's answer, its `X-Cache` and `Age`, the
    /// multivariant playlist's and its own time from asking to the first byte
    /// (ms), and from the player's creation to its arrival (ms).
    first_kind: &'static str,
    first_x_cache: String,
    first_age: String,
    master_wait_ms: f64,
    first_wait_ms: f64,
    first_at_ms: f64,
    /// How long the origin had had the newest part it lists when it arrived (ms).
    listed_age_ms: f64,
    /// hls.js's target latency (s), and how far behind the origin's live
    /// point the position it chose was (s, origin clock).
    target_latency: f64,
    chosen_behind: f64,
    /// From that choice to the first `playing` (ms), and the latency then (s,
    /// origin clock).
    start_delay_ms: f64,
    first_play_latency: f64,
}

/// When the origin had the media up to `off` seconds into segment `sn` of
/// rendition `rep`: the moment the part holding it was complete, less the
/// rest of that part (ms since the epoch).
fn live_at(published: &BTreeMap<(usize, u64, usize), ll_origin::Part>, rep: usize, sn: u64, off: f64) -> Option<f64> {
    let mut start = 0.0;
    for i in 0.. {
        let p = published.get(&(rep, sn, i))?;
        let end = start + p.frames as f64 / f64::from(ll_origin::FPS);
        if off < end + 0.001 {
            return Some(p.available_ms - (end - off) * 1000.0);
        }
        start = end;
    }
    None
}

/// A `[segment, offset]` pair from the page.
fn place(v: &Value) -> Option<(u64, f64)> {
    Some((v.get(0)?.as_u64()?, v.get(1)?.as_f64()?))
}

/// Latency against the origin's clock at wall time `t` (ms) for a playhead at
/// `place` of rendition `level` (s).
fn real_latency(
    published: &BTreeMap<(usize, u64, usize), ll_origin::Part>,
    level: &Value,
    pl: &Value,
    t: &Value,
) -> Option<f64> {
    let (sn, off) = place(pl)?;
    let live = live_at(published, level.as_u64()? as usize, sn, off)?;
    Some((t.as_f64()? - live) / 1000.0)
}

fn tune_in(p: &Value, published: &BTreeMap<(usize, u64, usize), ll_origin::Part>) -> Option<TuneIn> {
    let (ti, fp, m) = (&p["tuneIn"], &p["firstPlay"], &p["manifest"]);
    // The playlist it tuned in from: the newest it had when it chose.
    let from = ti["loadsBefore"].as_u64().unwrap_or(1).max(1) as usize - 1;
    let first = p["loads"].as_array()?.get(from)?;
    let level = first["level"].as_u64()? as usize;
    let got = first["first"].as_f64()?;
    let last = (level, first["lastSn"].as_u64()?, first["lastPart"].as_u64()? as usize);
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let chosen = place(&ti["startPlace"]).and_then(|(sn, off)| live_at(published, level, sn, off));
    let diff = |a: &Value, b: &Value| a.as_f64().zip(b.as_f64()).map_or(f64::NAN, |(a, b)| a - b);
    Some(TuneIn {
        first_kind: if first["msn"].is_null() { "plain" } else { "blocking" },
        first_x_cache: text(&first["xCache"]).replace(" from mediaedge", ""),
        first_age: text(&first["age"]),
        master_wait_ms: diff(&m["first"], &m["asked"]),
        first_wait_ms: diff(&first["first"], &first["asked"]),
        first_at_ms: diff(&first["first"], &p["created"]),
        listed_age_ms: published.get(&last).map_or(f64::NAN, |l| got - l.available_ms),
        target_latency: ti["targetLatency"].as_f64().unwrap_or(f64::NAN),
        chosen_behind: chosen.map_or(f64::NAN, |c| diff(&ti["t"], &Value::from(c)) / 1000.0),
        start_delay_ms: diff(&fp["t"], &ti["t"]),
        first_play_latency: real_latency(published, &fp["level"], &fp["place"], &fp["t"]).unwrap_or(f64::NAN),
    })
}

fn median(v: impl Iterator<Item = f64>) -> f64 {
    percentile(&v.filter(|x| x.is_finite()).collect::<Vec<_>>(), 0.5)
}

/// The tune-in of one side's players: each player's when there are few,
/// medians when there are many. `sum` is what hls.js's rule predicts for the
/// latency: target latency + the first playlist's newest part's age at its
/// arrival + the time from choosing the start to playing.
fn tune_in_summary(label: &str, s: &Seen) -> String {
    let sum = |t: &TuneIn| t.target_latency + (t.listed_age_ms + t.start_delay_ms) / 1000.0;
    let line = |t: &TuneIn| {
        format!(
            "tuned in from a {} playlist ({}, Age {}) that arrived at +{:.0} ms (multivariant {:.1} ms, that \
             playlist {:.1} ms to first byte), its newest part {:.0} ms old then; start chosen {:.3} s behind live (targetLatency {:.2} s); playing {:.0} ms \
             later, at {:.3} s latency (target + part age + start delay = {:.3} s)",
            t.first_kind,
            t.first_x_cache,
            t.first_age,
            t.first_at_ms,
            t.master_wait_ms,
            t.first_wait_ms,
            t.listed_age_ms,
            t.chosen_behind,
            t.target_latency,
            t.start_delay_ms,
            t.first_play_latency,
            sum(t),
        )
    };
    if s.tune_ins.len() <= 3 {
        return s.tune_ins.iter().map(|t| format!("{label} tune-in: {}", line(t))).collect::<Vec<_>>().join("\n");
    }
    let m = |f: &dyn Fn(&TuneIn) -> f64| median(s.tune_ins.iter().map(f));
    let plain = s.tune_ins.iter().filter(|t| t.first_kind == "plain").count();
    let hits = s.tune_ins.iter().filter(|t| t.first_x_cache.starts_with("Hit")).count();
    format!(
        "{label} tune-in ({} players, medians): tuned in from a plain playlist {plain}, from a cache hit {hits}, \
         that arrived at +{:.0} ms (multivariant {:.1} ms, that playlist {:.1} ms to first byte), its newest part \
         {:.0} ms old then; start chosen \
         {:.3} s behind live; playing {:.0} ms later, at {:.3} s latency (predicted {:.3} s)",
        s.tune_ins.len(),
        m(&|t| t.first_at_ms),
        m(&|t| t.master_wait_ms),
        m(&|t| t.first_wait_ms),
        m(&|t| t.listed_age_ms),
        m(&|t| t.chosen_behind),
        m(&|t| t.start_delay_ms),
        m(&|t| t.first_play_latency),
        m(&sum),
    )
}

fn seen(report: &Value, label: &str, published: &BTreeMap<(usize, u64, usize), ll_origin::Part>) -> Seen {
    let mut s = Seen::default();
    for page in report["results"].as_array().into_iter().flatten().filter(|r| r["label"] == label) {
        for p in page["players"].as_array().into_iter().flatten() {
            s.players += 1;
            s.playing += usize::from(p["playing"].as_bool() == Some(true));
            s.fatal.extend(p["fatal"].as_array().cloned().unwrap_or_default());
            s.errors.extend(p["errors"].as_array().cloned().unwrap_or_default());
            s.waiting += p["waiting"].as_u64().unwrap_or(0);
            s.stalls += p["stalls"].as_u64().unwrap_or(0);
            s.latency.extend(p["latency"].as_array().into_iter().flatten().filter_map(Value::as_f64));
            s.segments += p["segments"].as_array().map_or(0, Vec::len);
            for x in p["samples"].as_array().into_iter().flatten() {
                s.real_latency.extend(real_latency(published, &x["level"], &x["place"], &x["t"]));
            }
            s.tune_ins.extend(tune_in(p, published));
            for part in p["parts"].as_array().into_iter().flatten() {
                let key = (
                    part["level"].as_u64().unwrap_or(99) as usize,
                    part["sn"].as_u64().unwrap_or(0),
                    part["part"].as_u64().unwrap_or(0) as usize,
                );
                if let (Some(at), Some(t)) = (published.get(&key), part["t"].as_f64()) {
                    s.part_delay.push(t - at.available_ms);
                    let asked = part["start"].as_f64().unwrap_or(t);
                    let next = published.range((key.0, key.1, key.2 + 1)..(key.0 + 1, 0, 0)).next();
                    if next.is_none_or(|(_, n)| n.available_ms > asked) {
                        s.edge_part_delay.push(t - at.available_ms);
                    }
                }
                s.parts.insert(key);
            }
            let mut levels = Vec::new();
            for sw in p["switches"].as_array().into_iter().flatten() {
                let l = sw["level"].as_i64().unwrap_or(-1);
                if levels.last() != Some(&l) {
                    levels.push(l);
                }
            }
            s.levels.push(levels);
        }
    }
    s
}

/// Origin requests through the edge for media objects, by (path, range):
/// (successful answers, other answers).
fn edge_media_requests(log: &[Logged]) -> BTreeMap<(String, Option<String>), (usize, usize)> {
    let mut m: BTreeMap<(String, Option<String>), (usize, usize)> = BTreeMap::new();
    for r in log.iter().filter(|r| r.via_edge && r.path.starts_with("/chunk-stream")) {
        let e = m.entry((r.path.clone(), r.range.clone())).or_default();
        if r.status < 300 {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    m
}

fn edge_config(origin: &str) -> String {
    common::config_for(origin, "").replace("read_timeout = \"5s\"", "read_timeout = \"15s\"")
}

fn summary(label: &str, s: &Seen) -> String {
    format!(
        "{label}: players {} (playing {}), fatal {}, waiting {}, stalls {}, parts {}, part delay at the live edge \
         p50 {:.1} ms p95 {:.1} ms ({} parts), all parts p95 {:.1} ms, latency p50 {:.2} s p95 {:.2} s \
         (origin clock p50 {:.2} s p95 {:.2} s), levels {:?}, non-fatal errors {}",
        s.players,
        s.playing,
        s.fatal.len(),
        s.waiting,
        s.stalls,
        s.parts.len(),
        percentile(&s.edge_part_delay, 0.5),
        percentile(&s.edge_part_delay, 0.95),
        s.edge_part_delay.len(),
        percentile(&s.part_delay, 0.95),
        percentile(&s.latency, 0.5),
        percentile(&s.latency, 0.95),
        percentile(&s.real_latency, 0.5),
        percentile(&s.real_latency, 0.95),
        s.levels,
        s.errors.len(),
    )
}

fn assert_played(label: &str, s: &Seen, report: &Value) {
    let detail = || format!("{}; console: {}", summary(label, s), report["consoleErrors"]);
    assert!(s.players > 0 && s.playing == s.players, "{label}: not every player started playing: {}", detail());
    assert!(s.fatal.is_empty(), "{label}: fatal player errors {:?}: {}", s.fatal, detail());
    assert_eq!((s.waiting, s.stalls), (0, 0), "{label}: players stalled: {}", detail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hls_js_low_latency_through_the_edge_and_direct() {
    let _one = ONE_AT_A_TIME.lock().await;
    check_browser_side();
    let seconds = knob("LL_PLAYER_SECONDS", 40);
    let who = audience();
    let mut origin = LlLive::start_with(Early::Hold, &players_dir(), who.renditions).await;
    origin.wait_segments(2, Duration::from_secs(30)).await;
    let edge = common::edge(&edge_config(&origin.url())).await;
    let edge_base = format!("http://{}", edge.addr());

    // Start on the high rendition, switch down at 30% of the run and back up
    // at 65% (14 s later in a 40 s run: the edge's copy of the high playlist is
    // then long stale).
    let switches = serde_json::json!([
        { "at": seconds as f64 * 0.30, "level": 0 },
        { "at": seconds as f64 * 0.65, "level": 1 },
    ]);
    let cfg = serde_json::json!({ "kind": "hls", "duration": seconds, "startLevel": 1, "switches": switches });
    let report = who.play(cfg, who.targets(&edge_base, &origin.url()), seconds).await;
    assert!(origin.encoder_alive(), "the live encoder stopped during the run");
    let published = origin.parts();
    let log = origin.requests();
    keep_report(&report, &published);
    let edge_seen = seen(&report, "edge", &published);
    let direct_seen = seen(&report, "direct", &published);
    let media = edge_media_requests(&log);
    let media_ok: usize = media.values().map(|v| v.0).sum();
    let playlist_reqs = log.iter().filter(|r| r.via_edge && r.path.ends_with(".m3u8")).count();
    let blocking = log.iter().filter(|r| r.via_edge && r.query.contains("_HLS_msn")).count();
    let blocking_keys: BTreeSet<_> = log
        .iter()
        .filter(|r| r.via_edge && r.query.contains("_HLS_msn"))
        .map(|r| (r.path.clone(), r.query.clone()))
        .collect();
    let edge_errors: Vec<_> =
        log.iter().filter(|r| r.via_edge && r.status >= 400).map(|r| (&r.path, &r.query, r.status)).collect();
    eprintln!("{}", summary("edge", &edge_seen));
    eprintln!("{}", summary("direct", &direct_seen));
    eprintln!("{}", tune_in_summary("edge", &edge_seen));
    eprintln!("{}", tune_in_summary("direct", &direct_seen));
    eprintln!(
        "origin requests through the edge: media {} ({} successful) for {} parts the edge players loaded \
         ({:.2} per part); playlists {} ({} blocking reloads for {} distinct directives); origin errors to the edge {:?}",
        media.values().map(|v| v.0 + v.1).sum::<usize>(),
        media_ok,
        edge_seen.parts.len(),
        media_ok as f64 / edge_seen.parts.len().max(1) as f64,
        playlist_reqs,
        blocking,
        blocking_keys.len(),
        edge_errors,
    );
    eprintln!("non-fatal errors through the edge: {:?}", edge_seen.errors);

    assert_played("direct", &direct_seen, &report);
    assert_played("edge", &edge_seen, &report);
    // Parts, not whole segments, at the live edge.
    assert!(!edge_seen.parts.is_empty() && !edge_seen.part_delay.is_empty(), "edge players loaded no parts");
    // Both switches happened, for every player: high, low, high again.
    for (label, s) in [("edge", &edge_seen), ("direct", &direct_seen)] {
        for levels in &s.levels {
            let down_up = levels.windows(3).any(|w| w == [1, 0, 1]);
            assert!(down_up, "{label}: a player did not switch down and back up (levels {levels:?})");
        }
    }
    // One origin request per media object (segment or part range), whatever
    // the number of players.
    for ((path, range), (ok, _)) in &media {
        assert!(*ok <= 1, "{path} {range:?} was fetched {ok} times from the origin through the edge");
    }
    assert!(media_ok > 0, "no media went through the edge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dash_js_low_latency_through_the_edge_and_direct() {
    let _one = ONE_AT_A_TIME.lock().await;
    check_browser_side();
    let seconds = knob("LL_PLAYER_SECONDS", 40);
    let who = audience();
    let mut origin = LlLive::start_with(Early::NotFound, &players_dir(), who.renditions).await;
    origin.wait_segments(2, Duration::from_secs(30)).await;
    let edge = common::edge(&edge_config(&origin.url())).await;
    let edge_base = format!("http://{}", edge.addr());
    let cfg = serde_json::json!({ "kind": "dash", "duration": seconds, "liveDelay": 3 });
    let report = who.play(cfg, who.targets(&edge_base, &origin.url()), seconds).await;
    assert!(origin.encoder_alive(), "the live encoder stopped during the run");
    let published = origin.parts();
    let log = origin.requests();
    let edge_seen = seen(&report, "edge", &published);
    let direct_seen = seen(&report, "direct", &published);
    let media = edge_media_requests(&log);
    let ok: usize = media.values().map(|v| v.0).sum();
    let early: usize = media.values().map(|v| v.1).sum();
    let direct_early =
        log.iter().filter(|r| !r.via_edge && r.path.starts_with("/chunk-stream") && r.status == 404).count();
    let chunks =
        published.keys().filter(|(_, n, _)| media.keys().any(|(p, _)| p.ends_with(&format!("-{n:05}.m4s")))).count();
    eprintln!("{}", summary("edge", &edge_seen));
    eprintln!("{}", summary("direct", &direct_seen));
    eprintln!(
        "origin requests through the edge: {ok} successful for {} segments ({chunks} chunks) the edge players loaded, \
         {early} early (404) requests; direct player's early requests {direct_early}; low-latency mode {:?}",
        media.len(),
        report["results"]
            .as_array()
            .map(|r| r.iter().map(|p| p["players"][0]["lowLatency"].clone()).collect::<Vec<_>>()),
    );
    assert_played("direct", &direct_seen, &report);
    assert_played("edge", &edge_seen, &report);
    assert!(edge_seen.segments > 0, "edge players loaded no segments");
    for ((path, range), (ok, _)) in &media {
        assert!(*ok <= 1, "{path} {range:?} was fetched {ok} times from the origin through the edge");
    }
    assert!(ok > 0, "no media went through the edge");
}

/// A server of the player pages and libraries only (`/player/...`), on a port
/// of its own: another origin than the edge's.
async fn page_origin() -> (String, tokio::task::JoinHandle<()>) {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the page origin");
    let base = format!("http://{}", listener.local_addr().expect("page origin address"));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let dir = players_dir();
                    let (file, ctype) = match req.uri().path() {
                        "/player/hls.js" => (dir.join("node_modules/hls.js/dist/hls.min.js"), "text/javascript"),
                        "/player/dash.js" => {
                            (dir.join("node_modules/dashjs/dist/modern/umd/dash.all.min.js"), "text/javascript")
                        }
                        "/player/hls.html" => (dir.join("hls.html"), "text/html"),
                        "/player/dash.html" => (dir.join("dash.html"), "text/html"),
                        _ => (PathBuf::new(), ""),
                    };
                    let (status, ctype, body) = match tokio::fs::read(&file).await {
                        Ok(b) if !ctype.is_empty() => (200, ctype, b),
                        _ => (404, "text/plain", b"not found".to_vec()),
                    };
                    http::Response::builder()
                        .status(status)
                        .header("content-type", ctype)
                        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    (base, task)
}

fn test_media() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-media")
}

/// The built-in demo's distribution, on a port of its own.
async fn demo_edge() -> mediaedge::RunningEdge {
    let mut cfg = mediaedge::Config::demo(&test_media(), Some("127.0.0.1:0".parse().expect("address")))
        .expect("the demo configuration");
    cfg.server.access_log = None;
    mediaedge::start(&cfg).await.expect("the demo edge starts")
}

/// What one page of a cross-origin run saw: (players, playing, fatal errors,
/// frames played by its least advanced player).
fn page_summary(report: &Value, label: &str) -> (usize, usize, Vec<Value>, u64) {
    let page = report["results"].as_array().into_iter().flatten().find(|r| r["label"] == label);
    let players: Vec<Value> = page.and_then(|p| p["players"].as_array().cloned()).unwrap_or_default();
    let playing = players.iter().filter(|p| p["playing"].as_bool() == Some(true)).count();
    let fatal = players.iter().flat_map(|p| p["fatal"].as_array().cloned().unwrap_or_default()).collect();
    let frames = players.iter().map(|p| p["frames"].as_u64().unwrap_or(0)).min().unwrap_or(0);
    (players.len(), playing, fatal, frames)
}

fn cors_errors(report: &Value) -> Vec<String> {
    report["consoleErrors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|e| e.contains("CORS") || e.contains("Access-Control") || e.contains("blocked"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_plays_in_pages_on_another_origin() {
    let _one = ONE_AT_A_TIME.lock().await;
    check_browser_side();
    let seconds = knob("CORS_PLAYER_SECONDS", 8);
    let edge = demo_edge().await;
    let edge_base = format!("http://{}", edge.addr());
    let (page, _pages) = page_origin().await;
    assert_ne!(page, edge_base);
    for (kind, streams) in
        [("hls", vec!["hls-fmp4/master.m3u8", "hls-ts/master.m3u8"]), ("dash", vec!["dash/manifest.mpd"])]
    {
        let targets: Vec<Value> = streams
            .iter()
            .map(|s| serde_json::json!({ "label": s, "page": page, "base": edge_base, "src": format!("{edge_base}/{s}") }))
            .collect();
        let cfg = serde_json::json!({ "kind": kind, "duration": seconds, "startLevel": 0, "liveDelay": 3, "targets": targets });
        let report = play(cfg, seconds).await;
        let blocked = cors_errors(&report);
        assert!(blocked.is_empty(), "{kind}: CORS errors in the console: {blocked:?}");
        for s in &streams {
            let (players, playing, fatal, frames) = page_summary(&report, s);
            eprintln!(
                "{kind} {s} from {page} through {edge_base}: players {players}, playing {playing}, frames {frames}"
            );
            assert!(players > 0 && playing == players, "{s}: not every player played: {report}");
            assert!(fatal.is_empty(), "{s}: fatal player errors {fatal:?}");
            assert!(frames > 0, "{s}: no frame was played: {report}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_on_a_disallowed_origin_is_refused() {
    let _one = ONE_AT_A_TIME.lock().await;
    check_browser_side();
    let (allowed, _a) = page_origin().await;
    let (other, _b) = page_origin().await;
    let config = format!(
        "[[distributions]]\nid = \"ECORS\"\naliases = [\"*\"]\n\n[[distributions.origins]]\nid = \"media\"\nfolder = {:?}\n\n\
         [distributions.default_behavior]\norigin = \"media\"\n\n\
         [distributions.default_behavior.response_headers.cors]\nallow_origins = [{allowed:?}]\n",
        test_media().to_string_lossy()
    );
    let edge = common::edge(&config).await;
    let probe = format!("http://{}/hls-fmp4/master.m3u8", edge.addr());
    let cfg = serde_json::json!({
        "kind": "hls", "duration": 1,
        "targets": [
            { "label": "allowed", "page": allowed, "base": allowed, "players": 0, "probe": probe },
            { "label": "other", "page": other, "base": other, "players": 0, "probe": probe },
        ],
    });
    let report = play(cfg, 1).await;
    let probe_of = |label: &str| {
        report["results"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["label"] == label)
            .and_then(|r| r["probe"].as_str())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(probe_of("allowed"), "ok:200", "{report}");
    assert!(probe_of("other").starts_with("error:"), "the browser let a disallowed origin read the answer: {report}");
    assert!(!cors_errors(&report).is_empty(), "the browser reported no CORS refusal: {report}");
}
