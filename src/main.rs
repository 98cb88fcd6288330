//! The `mediaedge` command.

use clap::{Parser, Subcommand};
use mediaedge::config::{Config, LogTarget};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "mediaedge", version, about = "A streaming-focused media delivery edge (HLS, DASH, HTTP caching)")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge. Without --config or --origin it serves the built-in demo
    /// (the bundled test-media/ folder) on 127.0.0.1:8080.
    Serve {
        /// A TOML configuration file.
        #[arg(long, conflicts_with = "origin")]
        config: Option<PathBuf>,
        /// One origin (http://host:port[/prefix] or a folder) behind one
        /// distribution that answers every host.
        #[arg(long)]
        origin: Option<String>,
        /// Listen address, overriding the configuration.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Access log: a file, or - for standard output.
        #[arg(long)]
        access_log: Option<String>,
        /// Admin API listener (default 127.0.0.1:8081), or `off`.
        #[arg(long, value_name = "ADDR|off")]
        admin_listen: Option<String>,
        /// Directory of the durable state: distributions, keys, invalidations,
        /// usage (default .mediaedge in the working directory).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Validate a configuration file and exit (0 valid, 1 invalid).
    CheckConfig { file: PathBuf },
    /// Sign a URL or cookies for a behavior with trusted key groups
    /// (CloudFront-compatible; see docs/private-content.md).
    Sign {
        #[command(subcommand)]
        command: mediaedge::security::sign::SignCommand,
    },
    #[command(flatten)]
    Admin(mediaedge::admin::cli::AdminCommand),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Behave like N HLS or DASH players and measure what they wait for:
    /// playlist and segment TTFB and download time (p50/p95/p99/max), bytes,
    /// errors and stalls. Exit code 0 when the run completes (errors are
    /// reported), 1 when nothing could be fetched, 2 for bad arguments.
    /// See docs/bench-players.md.
    Players {
        /// A master or media playlist (.m3u8), or an MPD (.mpd): http:// or https://.
        url: String,
        /// Simulated players, started over the first second.
        #[arg(long, default_value_t = 10)]
        players: usize,
        /// Run length in seconds (VOD runs end sooner when every player is done).
        #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
        duration: f64,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Which variant (HLS) or video representation (DASH) players pick:
        /// lowest or highest bandwidth, or an index (from 0) in manifest order.
        #[arg(long, default_value = "lowest", value_name = "lowest|highest|N")]
        rendition: mediaedge::bench::Rendition,
        /// Most requests in flight at once, over all players (default: no limit).
        #[arg(long, value_name = "N")]
        concurrency_limit: Option<usize>,
        /// Per-request timeout in seconds, headers and body (blocking playlist
        /// reloads get three target durations more).
        #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
        timeout: f64,
        /// Requests one player may make in the whole run.
        #[arg(long, default_value_t = 50_000, value_name = "N")]
        max_requests: u64,
        /// VOD: start over at the end instead of stopping, until --duration.
        #[arg(long = "loop")]
        loop_vod: bool,
        /// No progress line on stderr.
        #[arg(long, short)]
        quiet: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command.unwrap_or(Command::Serve {
        config: None,
        origin: None,
        listen: None,
        access_log: None,
        admin_listen: None,
        state_dir: None,
    }) {
        Command::Sign { command } => match mediaedge::security::sign::run(&command) {
            Ok(out) => {
                println!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mediaedge sign: {}", e.message);
                ExitCode::from(e.code)
            }
        },
        Command::Admin(command) => mediaedge::admin::cli::run(command),
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(c) => {
                println!("{}: valid ({} distribution(s))", file.display(), c.distributions.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Bench {
            command:
                BenchCommand::Players {
                    url,
                    players,
                    duration,
                    json,
                    rendition,
                    concurrency_limit,
                    timeout,
                    max_requests,
                    loop_vod,
                    quiet,
                },
        } => {
            let (Some(duration), Some(timeout)) = (seconds(duration), seconds(timeout)) else {
                eprintln!("mediaedge bench players: --duration and --timeout must be positive numbers of seconds");
                return ExitCode::from(2);
            };
            mediaedge::bench::players(mediaedge::bench::PlayersOptions {
                url,
                players,
                duration,
                json,
                rendition,
                concurrency_limit,
                timeout,
                max_requests,
                loop_vod,
                quiet,
            })
        }
        Command::Serve { config, origin, listen, access_log, admin_listen, state_dir } => {
            let loaded = match (&config, &origin) {
                (Some(file), _) => Config::load(file).map(|mut c| {
                    if let Some(l) = listen {
                        c.server.listen = vec![l];
                    }
                    c
                }),
                (None, Some(origin)) => Config::single_origin(origin, listen),
                (None, None) => Config::demo(&demo_media_root(), listen),
            };
            let mut cfg = match loaded {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            if let Some(a) = access_log {
                cfg.server.access_log = Some(if a == "-" { LogTarget::Stdout } else { LogTarget::File(a.into()) });
            }
            if let Some(dir) = state_dir {
                cfg.admin.state_dir = dir;
            }
            match admin_listen.as_deref() {
                None => {}
                Some("off") => cfg.admin.listen = None,
                Some(a) => match a.parse::<SocketAddr>() {
                    Ok(addr) if addr.ip().is_loopback() || cfg.admin.token.is_some() => cfg.admin.listen = Some(addr),
                    Ok(addr) => {
                        eprintln!(
                            "--admin-listen {addr}: not a loopback address, and no admin token is configured \
                             (set [admin] token or MEDIAEDGE_ADMIN_TOKEN)"
                        );
                        return ExitCode::from(2);
                    }
                    Err(_) => {
                        eprintln!("--admin-listen {a:?}: not an address such as 127.0.0.1:8081, or off");
                        return ExitCode::from(2);
                    }
                },
            }
            serve(cfg, config.map(|file| mediaedge::lifecycle::ReloadSource { file }))
        }
    }
}

fn serve(cfg: Config, reload: Option<mediaedge::lifecycle::ReloadSource>) -> ExitCode {
    use mediaedge::lifecycle::{self, upgrade};
    // Started by an upgrade: the sockets and the report pipe of the process
    // this one replaces (see docs/resilience.md, "Graceful restarts").
    let mut inherited = upgrade::Inherited::from_env();
    let mut notify = upgrade::Notify::from_env();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // Signals are taken over before anything starts, so that an early
        // SIGTERM drains rather than kills.
        let signals = lifecycle::Signals::new();
        notify.send("locking");
        let edge = match mediaedge::admin::start_with(cfg, &mut inherited).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        for addr in inherited.leftover() {
            tracing::info!("closing the inherited listener on {addr}: the configuration no longer listens there");
        }
        drop(inherited);
        for d in edge.running.edge.distributions() {
            tracing::info!(id = %d.id, domain = %d.domain_name, enabled = d.enabled, "distribution ready");
        }
        notify.send("ready");
        lifecycle::run(edge, reload, signals).await
    })
}

/// A positive, finite number of seconds (at most a year).
fn seconds(s: f64) -> Option<std::time::Duration> {
    (s.is_finite() && s > 0.0 && s <= 31_536_000.0).then(|| std::time::Duration::from_secs_f64(s))
}

/// `test-media/` in the working directory, else next to the sources.
fn demo_media_root() -> PathBuf {
    let here = PathBuf::from("test-media");
    if here.is_dir() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-media")
}

fn init_tracing() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let filter: Targets = std::env::var("MEDIAEDGE_LOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
}
