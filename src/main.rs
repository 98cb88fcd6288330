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
    },
    /// Validate a configuration file and exit (0 valid, 1 invalid).
    CheckConfig { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command.unwrap_or(Command::Serve { config: None, origin: None, listen: None, access_log: None }) {
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
        Command::Serve { config, origin, listen, access_log } => {
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
            serve(cfg)
        }
    }
}

fn serve(cfg: Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let running = match mediaedge::start(&cfg).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        for d in &cfg.distributions {
            tracing::info!(id = %d.id, domain = %d.domain_name, "distribution ready");
        }
        tokio::select! {
            _ = running.wait() => ExitCode::FAILURE,
            _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
        }
    })
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
