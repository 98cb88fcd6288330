//! `mediaedge bench players`: N simulated HLS or DASH players against a URL,
//! measuring what a viewer waits for.
//!
//! Each player behaves as a real one would (see `hls.rs` and `dash.rs`):
//! it loads the manifest, picks one rendition, and fetches each segment (or
//! LL-HLS part) once, VOD back to back, live as it becomes available. Every
//! request is timed (time to first body byte, time to last byte) and counted
//! by class; `stats.rs` holds the histograms and prints the report. See
//! docs/bench-players.md.

pub mod client;
mod dash;
mod hls;
pub mod stats;

use client::{Client, Failure, Response, Want};
use http::Uri;
use stats::{Class, Report, Shared};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::Instant as TokioInstant;

/// Which rendition (HLS variant, DASH video representation) players pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rendition {
    /// The lowest `BANDWIDTH` (the default).
    #[default]
    Lowest,
    /// The highest `BANDWIDTH`.
    Highest,
    /// The N-th, counting from 0 in manifest order.
    Index(usize),
}

impl FromStr for Rendition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "lowest" => Ok(Rendition::Lowest),
            "highest" => Ok(Rendition::Highest),
            n => n
                .parse()
                .map(Rendition::Index)
                .map_err(|_| format!("expected lowest, highest or an index (0, 1, ...), not {s:?}")),
        }
    }
}

impl std::fmt::Display for Rendition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rendition::Lowest => f.write_str("lowest"),
            Rendition::Highest => f.write_str("highest"),
            Rendition::Index(n) => write!(f, "{n}"),
        }
    }
}

impl Rendition {
    /// The index chosen among `bandwidths` (manifest order).
    pub fn pick(self, bandwidths: &[u64]) -> Option<usize> {
        let indexed = bandwidths.iter().copied().enumerate();
        match self {
            // The first of equals, in manifest order.
            Rendition::Lowest => indexed.min_by_key(|&(i, b)| (b, i)).map(|(i, _)| i),
            Rendition::Highest => indexed.max_by_key(|&(i, b)| (b, std::cmp::Reverse(i))).map(|(i, _)| i),
            Rendition::Index(n) => (n < bandwidths.len()).then_some(n),
        }
    }
}

/// `bench players` options.
#[derive(Debug, Clone)]
pub struct PlayersOptions {
    /// Master or media playlist, or MPD.
    pub url: String,
    pub players: usize,
    pub duration: Duration,
    pub json: bool,
    pub rendition: Rendition,
    /// Most requests in flight at once over all players (`None`: no limit).
    pub concurrency_limit: Option<usize>,
    /// Per request, headers and body (blocking reloads get three target
    /// durations more).
    pub timeout: Duration,
    /// Requests one player may make in the whole run.
    pub max_requests: u64,
    /// VOD players start over at the end instead of stopping.
    pub loop_vod: bool,
    /// No progress line on stderr.
    pub quiet: bool,
}

impl Default for PlayersOptions {
    fn default() -> Self {
        PlayersOptions {
            url: String::new(),
            players: 10,
            duration: Duration::from_secs(30),
            json: false,
            rendition: Rendition::Lowest,
            concurrency_limit: None,
            timeout: Duration::from_secs(10),
            max_requests: 50_000,
            loop_vod: false,
            quiet: false,
        }
    }
}

/// Why a run did not produce a report worth exit code 0.
#[derive(Debug)]
pub enum BenchError {
    /// Bad options or a rendition the manifest does not have (exit code 2).
    Usage(String),
    /// Nothing could be fetched (exit code 1); the report, if the players ran.
    Unreachable(String, Option<Box<Report>>),
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchError::Usage(m) | BenchError::Unreachable(m, _) => f.write_str(m),
        }
    }
}

/// The command: runs, prints the report (stdout) and returns the exit code:
/// 0 the run completed (errors are in the report), 1 nothing could be
/// fetched, 2 bad arguments.
pub fn players(opts: PlayersOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mediaedge bench players: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(&opts));
    let print = |report: &Report| {
        let text = if opts.json { report.json() } else { report.table() };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", text.trim_end());
        let _ = out.flush();
    };
    match result {
        Ok(report) => {
            print(&report);
            ExitCode::SUCCESS
        }
        Err(BenchError::Usage(m)) => {
            eprintln!("mediaedge bench players: {m}");
            ExitCode::from(2)
        }
        Err(BenchError::Unreachable(m, report)) => {
            if let Some(r) = report {
                print(&r);
            }
            eprintln!("mediaedge bench players: {m}");
            ExitCode::FAILURE
        }
    }
}

/// What the URL turned out to be, from one unmeasured load before the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Hls,
    Dash,
}

/// Runs the players and returns the report.
pub async fn run(opts: &PlayersOptions) -> Result<Report, BenchError> {
    let url = check(opts)?;
    let client = Client::new(opts.concurrency_limit, opts.players);
    let (stream, kind, rendition) = probe(&client, &url, opts).await?;

    let shared = Arc::new(Shared::default());
    let start = Instant::now();
    let deadline = TokioInstant::from_std(start + opts.duration);
    let ctx = Arc::new(Ctx { client, shared: shared.clone(), timeout: opts.timeout, opts: opts.clone() });

    let progress = (!opts.quiet).then(|| tokio::spawn(progress(shared.clone(), start)));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..opts.players {
        let ctx = ctx.clone();
        let url = url.clone();
        // Staggered over the first second.
        let offset = Duration::from_secs(1).mul_f64(i as f64 / opts.players as f64);
        set.spawn(async move {
            let play = async {
                tokio::time::sleep(offset).await;
                let left = ctx.opts.max_requests;
                let mut player = Player { ctx, left };
                let _ = match stream {
                    Stream::Hls => hls::play(&mut player, url).await,
                    Stream::Dash => dash::play(&mut player, url).await,
                };
            };
            tokio::time::timeout_at(deadline, play).await.is_ok()
        });
    }
    let mut all_finished = true;
    while let Some(done) = set.join_next().await {
        all_finished &= done.unwrap_or(false);
    }
    let elapsed = start.elapsed().min(opts.duration);
    if let Some(p) = progress {
        p.abort();
        let _ = p.await;
        end_progress();
    }
    let report = Report {
        url: opts.url.clone(),
        stream: kind.to_string(),
        rendition,
        players: opts.players,
        duration: opts.duration,
        elapsed,
        finished_early: all_finished && elapsed < opts.duration,
        rows: shared.rows(),
    };
    if report.rows.ok() == 0 {
        let errors = stats::error_summary(&report.rows.errors());
        return Err(BenchError::Unreachable(
            format!(
                "nothing could be fetched from {} (errors: {})",
                opts.url,
                if errors.is_empty() { "none" } else { &errors }
            ),
            Some(Box::new(report)),
        ));
    }
    Ok(report)
}

fn check(opts: &PlayersOptions) -> Result<Uri, BenchError> {
    let usage = |m: String| Err(BenchError::Usage(m));
    if opts.players == 0 {
        return usage("--players must be at least 1".into());
    }
    if opts.players > 100_000 {
        return usage("--players must be at most 100000".into());
    }
    const YEAR: Duration = Duration::from_secs(365 * 86_400);
    if opts.duration.is_zero() || opts.duration > YEAR {
        return usage("--duration must be more than 0 seconds and at most a year".into());
    }
    if opts.timeout.is_zero() || opts.timeout > YEAR {
        return usage("--timeout must be more than 0 seconds and at most a year".into());
    }
    if opts.max_requests == 0 {
        return usage("--max-requests must be at least 1".into());
    }
    if opts.concurrency_limit == Some(0) {
        return usage("--concurrency-limit must be at least 1".into());
    }
    let url: Uri = match opts.url.parse() {
        Ok(u) => u,
        Err(e) => return usage(format!("{:?} is not a URL: {e}", opts.url)),
    };
    match (url.scheme_str(), url.authority()) {
        (Some("http" | "https"), Some(_)) => Ok(url),
        _ => usage(format!("{:?} is not an http:// or https:// URL", opts.url)),
    }
}

/// Loads the URL once (not measured): HLS or DASH, live or not, and the
/// rendition players will pick, so that an unreachable URL or a missing
/// rendition ends the run at once.
async fn probe(
    client: &Client,
    url: &Uri,
    opts: &PlayersOptions,
) -> Result<(Stream, &'static str, String), BenchError> {
    let unreachable = |m: String| BenchError::Unreachable(m, None);
    let load = |uri: Uri| async move {
        client
            .get(&uri, Want { keep_body: true, range: None }, opts.timeout)
            .await
            .map_err(|f| unreachable(format!("cannot load {uri}: {f}")))
    };
    let first = load(url.clone()).await?;
    let path = url.path().to_ascii_lowercase();
    let looks_xml = first.body.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|&b| b == b'<')
        || first.body.starts_with(b"\xef\xbb\xbf<");
    if path.ends_with(".mpd") || (!path.ends_with(".m3u8") && looks_xml) {
        let mpd =
            crate::media::dash::parse(&first.body).map_err(|e| unreachable(format!("{url} is not an MPD: {e}")))?;
        let kind = if mpd.dynamic { "dash-dynamic" } else { "dash-static" };
        if mpd.dynamic && mpd.availability_start_time.is_none() {
            return Err(unreachable(format!("{url}: a dynamic MPD without availabilityStartTime cannot be played")));
        }
        let rendition = dash::describe(&mpd, opts.rendition).map_err(BenchError::Usage)?;
        return Ok((Stream::Dash, kind, rendition));
    }
    let playlist = crate::media::hls::parse(&first.body)
        .map_err(|e| unreachable(format!("{url} is neither an HLS playlist nor an MPD: {e}")))?;
    let (media, rendition) = match playlist {
        crate::media::hls::Playlist::Media(m) => (m, "the media playlist given".to_string()),
        crate::media::hls::Playlist::Master(m) => {
            let variant = hls::choose(&m, opts.rendition).map_err(BenchError::Usage)?;
            let uri = client::resolve(url, &variant.uri)
                .ok_or_else(|| unreachable(format!("{url}: variant URI {:?} is not usable", variant.uri)))?;
            let body = load(uri.clone()).await?.body;
            let media = match crate::media::hls::parse(&body) {
                Ok(crate::media::hls::Playlist::Media(m)) => m,
                Ok(_) => return Err(unreachable(format!("{uri} is a master playlist, not a media playlist"))),
                Err(e) => return Err(unreachable(format!("{uri} does not parse: {e}"))),
            };
            (media, format!("{} ({} bit/s)", variant.uri, variant.bandwidth))
        }
    };
    let kind = if !media.is_live() {
        "hls-vod"
    } else if hls::low_latency(&media) {
        "ll-hls"
    } else {
        "hls-live"
    };
    Ok((Stream::Hls, kind, rendition))
}

/// What every player shares.
struct Ctx {
    client: Client,
    shared: Arc<Shared>,
    timeout: Duration,
    opts: PlayersOptions,
}

/// The player ran out of its request budget.
#[derive(Debug)]
struct Done;

/// One simulated player's handle on the client, its budget and the counters.
struct Player {
    ctx: Arc<Ctx>,
    /// Requests the player may still make.
    left: u64,
}

impl Player {
    fn opts(&self) -> &PlayersOptions {
        &self.ctx.opts
    }

    /// One request, counted under `class`. `Err(Done)` once the player's
    /// request budget is spent.
    async fn get(
        &mut self,
        uri: &Uri,
        class: Class,
        want: Want,
        extra_timeout: Duration,
    ) -> Result<Result<Response, Failure>, Done> {
        if self.left == 0 {
            return Err(Done);
        }
        self.left -= 1;
        let result = self.ctx.client.get(uri, want, self.ctx.timeout + extra_timeout).await;
        match &result {
            Ok(r) => self.ctx.shared.success(class, r.bytes, r.ttfb, r.total),
            Err(f) => self.ctx.shared.failure(class, f.bytes(), &f.kind()),
        }
        Ok(result)
    }

    /// A manifest: the body, or `None` (the failure is counted).
    async fn manifest(&mut self, uri: &Uri, class: Class, extra_timeout: Duration) -> Result<Option<Response>, Done> {
        Ok(self.get(uri, class, Want { keep_body: true, range: None }, extra_timeout).await?.ok())
    }

    /// A segment or part of `duration` seconds, once. A stall when it was
    /// missing (404) or took longer than its duration to download (live: the
    /// player waited past the media it has; VOD: it downloads slower than it
    /// plays).
    async fn media(&mut self, uri: &Uri, class: Class, range: Option<(u64, u64)>, duration: f64) -> Result<(), Done> {
        let result = self.get(uri, class, Want { keep_body: false, range }, Duration::ZERO).await?;
        let stalled = match &result {
            Ok(r) => duration > 0.0 && r.total.as_secs_f64() > duration,
            Err(f) => f.is_status(404),
        };
        if stalled {
            self.ctx.shared.stall(class);
        }
        Ok(())
    }

    fn error(&self, class: Class, kind: &str) {
        self.ctx.shared.error(class, kind);
    }
}

/// A progress line on stderr every second: `\r`-rewritten on a terminal,
/// one line each otherwise.
async fn progress(shared: Arc<Shared>, start: Instant) {
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval_at(TokioInstant::now() + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        tick.tick().await;
        let (requests, errors, p50) = shared.progress();
        let line = format!(
            "{:>6.1} s  requests {requests}  errors {errors}  segment TTFB p50 {}",
            start.elapsed().as_secs_f64(),
            stats::short_ms(p50)
        );
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
}

fn end_progress() {
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = writeln!(err);
    }
}

/// Seconds from a manifest as a duration: zero for negative or not-a-number
/// values, at most a day.
fn secs(s: f64) -> Duration {
    if s.is_finite() && s > 0.0 {
        Duration::from_secs_f64(s.min(86_400.0))
    } else {
        Duration::ZERO
    }
}

/// Sleeps until `at` (the run's deadline cancels the player anyway).
async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(TokioInstant::from_std(at)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renditions() {
        assert_eq!("lowest".parse::<Rendition>(), Ok(Rendition::Lowest));
        assert_eq!("HIGHEST".parse::<Rendition>(), Ok(Rendition::Highest));
        assert_eq!("2".parse::<Rendition>(), Ok(Rendition::Index(2)));
        assert!("-1".parse::<Rendition>().is_err());
        assert!("best".parse::<Rendition>().is_err());
        let b = [300, 100, 200, 100, 300];
        assert_eq!(Rendition::Lowest.pick(&b), Some(1));
        assert_eq!(Rendition::Highest.pick(&b), Some(0));
        assert_eq!(Rendition::Index(4).pick(&b), Some(4));
        assert_eq!(Rendition::Index(5).pick(&b), None);
        assert_eq!(Rendition::Lowest.pick(&[]), None);
    }

    #[test]
    fn options_are_checked() {
        let ok = PlayersOptions { url: "http://127.0.0.1:1/a.m3u8".into(), ..PlayersOptions::default() };
        assert!(check(&ok).is_ok());
        for bad in [
            PlayersOptions { players: 0, ..ok.clone() },
            PlayersOptions { duration: Duration::ZERO, ..ok.clone() },
            PlayersOptions { concurrency_limit: Some(0), ..ok.clone() },
            PlayersOptions { url: "127.0.0.1/a.m3u8".into(), ..ok.clone() },
            PlayersOptions { url: "ftp://h/a.m3u8".into(), ..ok.clone() },
            PlayersOptions { url: "not a url".into(), ..ok.clone() },
        ] {
            assert!(matches!(check(&bad), Err(BenchError::Usage(_))), "{bad:?}");
        }
    }
}
