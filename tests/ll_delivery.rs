//! Low-latency delivery measured without a browser: the requests an LL-HLS
//! player makes, made by a client here, through the edge and direct from the
//! origin at the same time, over the live origin of the browser tests (ffmpeg's
//! progressive CMAF output, parts published as byte ranges).
//!
//! Per rendition and side, two loops run for the whole stream:
//!
//! - **parts**: each next segment is asked for before it exists (as a
//!   player's preload hint for a segment's first part is) and streamed as it
//!   grows; the arrival of each part's last byte is compared with the moment
//!   the origin had the part complete, and, part by part, with its arrival on
//!   the other side (the origin here streams a growing segment to a request
//!   without `Range`; an open-ended range it answers only once the segment is
//!   complete, so both sides ask without one);
//! - **blocking reloads**: `?_HLS_msn=M&_HLS_part=P` for the part after the
//!   last one listed, again and again; the answer's arrival is compared with
//!   the moment that part existed.
//!
//! Without a browser decoding video on the same cores, what is left is
//! delivery: the figures show what the edge adds to a part's way to the player.
//! The test checks that the bytes through the edge are the origin's, that each
//! segment reached the origin once through the edge, and that every blocking
//! reload was answered; it prints the delays (`--nocapture`) and asserts none
//! of them (benches/ll_delivery.sh runs it on a release build, longer).
//! Knob: LL_DELIVERY_SECONDS (default 12). Needs ffmpeg with libx264.

mod common;
#[path = "common/ll_origin.rs"]
mod ll_origin;

use ll_origin::{seg_name, Early, LlLive, RENDITIONS};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1000.0
}

/// One streamed segment: its bytes and when each chunk arrived.
struct Streamed {
    rep: usize,
    n: u64,
    status: u16,
    body: Vec<u8>,
    /// (arrival, bytes received so far) per chunk.
    marks: Vec<(f64, u64)>,
}

impl Streamed {
    /// When the byte just before offset `end` arrived.
    fn arrival_of(&self, end: u64) -> Option<f64> {
        self.marks.iter().find(|(_, got)| *got >= end).map(|(t, _)| *t)
    }
}

async fn stream_segment(c: &reqwest::Client, base: &str, rep: usize, n: u64) -> Streamed {
    let url = format!("{base}/{}", seg_name(rep, n));
    let mut marks = Vec::new();
    let mut body = Vec::new();
    let mut status = 0;
    if let Ok(mut r) = c.get(&url).send().await {
        status = r.status().as_u16();
        while let Ok(Some(chunk)) = r.chunk().await {
            body.extend_from_slice(&chunk);
            marks.push((now_ms(), body.len() as u64));
        }
    }
    Streamed { rep, n, status, body, marks }
}

/// The next blocking-reload directive after the playlist `text`: the part
/// after the last one it lists (`_HLS_part=0` of the next segment when the
/// last segment listed is complete).
fn next_directive(text: &str) -> Option<(u64, usize)> {
    let mut msn: u64 = text.lines().find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))?.trim().parse().ok()?;
    let mut parts = 0;
    for l in text.lines() {
        if l.starts_with("#EXT-X-PART:") {
            parts += 1;
        } else if l.starts_with("#EXTINF:") {
            msn += 1;
            parts = 0;
        }
    }
    Some((msn, parts))
}

/// Blocking reloads of rendition `rep` until `until_ms`: (directive, arrival).
async fn reloads(c: reqwest::Client, base: String, rep: usize, until_ms: f64) -> Vec<((u64, usize), f64, u16)> {
    let mut out = Vec::new();
    let Ok(first) = c.get(format!("{base}/v{rep}.m3u8")).send().await else { return out };
    let Some(mut next) = next_directive(&first.text().await.unwrap_or_default()) else { return out };
    while now_ms() < until_ms {
        let (msn, part) = next;
        let url = format!("{base}/v{rep}.m3u8?_HLS_msn={msn}&_HLS_part={part}");
        let Ok(r) = c.get(&url).send().await else {
            out.push((next, now_ms(), 0));
            break;
        };
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        out.push((next, now_ms(), status));
        match next_directive(&text) {
            Some(d) if d > next => next = d,
            _ => break,
        }
    }
    out
}

/// A blocking reload: rendition, (msn, part), arrival, status.
type Reloaded = (usize, (u64, usize), f64, u16);

fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[((s.len() - 1) as f64 * q).round() as usize]
}

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parts_and_blocking_reloads_through_the_edge_beside_direct() {
    let seconds = knob("LL_DELIVERY_SECONDS", 12);
    let pages = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/players");
    let mut origin = LlLive::start(Early::Hold, &pages).await;
    origin.wait_segments(2, Duration::from_secs(30)).await;
    let edge =
        common::edge(&common::config_for(&origin.url(), "").replace("read_timeout = \"5s\"", "read_timeout = \"15s\""))
            .await;
    let sides = [("edge", format!("http://{}", edge.addr())), ("direct", origin.url())];
    let until = now_ms() + seconds as f64 * 1000.0;
    // Parts: the same segments on both sides, from the one after the segment
    // being written (each next one asked for before it exists).
    let count = (seconds as f64 / ll_origin::SEGMENT_S).ceil() as u64;
    let starts: Vec<u64> = (0..RENDITIONS.len())
        .map(|rep| origin.parts().keys().filter(|(r, _, _)| *r == rep).map(|(_, n, _)| *n).max().unwrap_or(0) + 1)
        .collect();

    let mut tasks = Vec::new();
    for (side, base) in &sides {
        for (rep, start) in starts.iter().copied().enumerate() {
            let (c, b) = (common::client(), base.clone());
            let side = *side;
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for n in start..start + count {
                    got.push(stream_segment(&c, &b, rep, n).await);
                }
                (side, rep, got, Vec::new())
            }));
            let (c, b) = (common::client(), base.clone());
            tasks.push(tokio::spawn(async move { (side, rep, Vec::new(), reloads(c, b, rep, until).await) }));
        }
    }
    let mut streamed: BTreeMap<&str, Vec<Streamed>> = BTreeMap::new();
    let mut reloaded: BTreeMap<&str, Vec<Reloaded>> = BTreeMap::new();
    for t in tasks {
        let (side, rep, s, r) = t.await.expect("client task");
        streamed.entry(side).or_default().extend(s);
        reloaded.entry(side).or_default().extend(r.into_iter().map(|(d, t, s)| (rep, d, t, s)));
    }
    let parts = origin.parts();

    // Correctness: the same bytes both ways, one origin request per segment
    // through the edge, every blocking reload answered 200.
    let edge_segments = &streamed["edge"];
    let direct: BTreeMap<(usize, u64), &Streamed> = streamed["direct"].iter().map(|s| ((s.rep, s.n), s)).collect();
    assert!(edge_segments.len() >= 2 * RENDITIONS.len(), "too few segments streamed: {}", edge_segments.len());
    for s in edge_segments {
        assert!(s.status == 206 || s.status == 200, "segment {}/{} through the edge: {}", s.rep, s.n, s.status);
        let d = direct.get(&(s.rep, s.n)).unwrap_or_else(|| panic!("segment {}/{} not streamed direct", s.rep, s.n));
        assert!(!s.body.is_empty() && s.body == d.body, "segment {}/{} differs from the origin's", s.rep, s.n);
        let name = seg_name(s.rep, s.n);
        let via_edge = origin.requests().iter().filter(|l| l.via_edge && l.path.ends_with(&name)).count();
        assert_eq!(via_edge, 1, "origin requests for {name} through the edge");
    }
    for (side, rs) in &reloaded {
        assert!(rs.len() >= 4, "{side}: only {} blocking reloads", rs.len());
        assert!(rs.iter().all(|r| r.3 == 200), "{side}: blocking reloads not all 200: {rs:?}");
    }

    // The figures. Part by part: the edge's arrival minus direct's.
    let mut paired = Vec::new();
    for s in edge_segments {
        let d = direct[&(s.rep, s.n)];
        for (_, p) in parts.range((s.rep, s.n, 0)..=(s.rep, s.n, usize::MAX)) {
            if let (Some(e), Some(o)) = (s.arrival_of(p.offset + p.len), d.arrival_of(p.offset + p.len)) {
                paired.push(e - o);
            }
        }
    }
    println!(
        "edge minus direct, per part: p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms ({} parts)",
        percentile(&paired, 0.5),
        percentile(&paired, 0.95),
        percentile(&paired, 1.0),
        paired.len()
    );
    for side in ["edge", "direct"] {
        let mut part_delay = Vec::new();
        for s in &streamed[side] {
            for ((r, n, _), p) in parts.range((s.rep, s.n, 0)..=(s.rep, s.n, usize::MAX)) {
                debug_assert_eq!((*r, *n), (s.rep, s.n));
                if let Some(t) = s.arrival_of(p.offset + p.len) {
                    part_delay.push(t - p.available_ms);
                }
            }
        }
        let reload_delay: Vec<f64> = reloaded[side]
            .iter()
            .filter_map(|(rep, (msn, part), t, _)| parts.get(&(*rep, *msn, *part)).map(|p| t - p.available_ms))
            .collect();
        println!(
            "{side}: part delay p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} parts); \
             blocking reload delay p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} reloads)",
            percentile(&part_delay, 0.5),
            percentile(&part_delay, 0.95),
            percentile(&part_delay, 1.0),
            part_delay.len(),
            percentile(&reload_delay, 0.5),
            percentile(&reload_delay, 0.95),
            percentile(&reload_delay, 1.0),
            reload_delay.len(),
        );
    }
}
