//! The process around the edge: signals and what they do.
//!
//! - `SIGTERM` / `SIGINT`: drain (stop accepting, finish what was started, up
//!   to `[server] shutdown_timeout`), flush usage and the access log, exit.
//! - `SIGHUP`: load the configuration file again and serve its distributions;
//!   an invalid file keeps the running configuration and logs why.
//! - `SIGUSR2`: hand the listening sockets to a new process (`upgrade`), then
//!   drain and exit as for `SIGTERM`, without refusing a connection.

pub mod upgrade;

use crate::admin::ControlledEdge;
use crate::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How long the access log may take to write out its queue at exit.
const LOG_FLUSH: Duration = Duration::from_secs(5);

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Stop,
    Reload,
    Upgrade,
}

/// The process's signal streams, registered once.
pub struct Signals {
    #[cfg(unix)]
    unix: Option<UnixSignals>,
}

#[cfg(unix)]
struct UnixSignals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let unix = (|| {
                Some(UnixSignals {
                    term: signal(SignalKind::terminate()).ok()?,
                    hup: signal(SignalKind::hangup()).ok()?,
                    usr2: signal(SignalKind::user_defined2()).ok()?,
                })
            })();
            if unix.is_none() {
                tracing::warn!("cannot listen for SIGTERM, SIGHUP and SIGUSR2; only Ctrl-C stops the edge");
            }
            Signals { unix }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next signal.
    pub async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        if let Some(u) = &mut self.unix {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => Signal::Stop,
                _ = u.term.recv() => Signal::Stop,
                _ = u.hup.recv() => Signal::Reload,
                _ = u.usr2.recv() => Signal::Upgrade,
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        Signal::Stop
    }
}

impl Default for Signals {
    fn default() -> Self {
        Signals::new()
    }
}

/// Where a reload reads the configuration from: the file given at start
/// (the demo and `--origin` have none).
pub struct ReloadSource {
    pub file: PathBuf,
}

/// Runs the started edge until a signal stops it (or a listener fails), then
/// drains and flushes. Returns the process's exit code.
pub async fn run(edge: ControlledEdge, reload: Option<ReloadSource>, mut signals: Signals) -> ExitCode {
    let code = loop {
        let signal = tokio::select! {
            _ = edge.running.wait_ref() => break ExitCode::FAILURE,
            s = signals.next() => s,
        };
        match signal {
            Signal::Stop => {
                tracing::info!("stopping: no new connections; finishing the responses in progress");
                break ExitCode::SUCCESS;
            }
            Signal::Reload => reload_now(&edge, reload.as_ref()).await,
            Signal::Upgrade => {
                if upgrade::hand_over(&edge).await {
                    break ExitCode::SUCCESS;
                }
            }
        }
    };
    let left = edge.running.drain().await;
    if left > 0 {
        tracing::warn!("shutdown deadline passed with {left} connection(s) still open; closing them");
    } else {
        tracing::info!("every connection finished");
    }
    // Usage counted since the last flush goes to the store before exit (after
    // a handover the store is the new process's: the old one flushed before).
    edge.flush_usage();
    if !edge.running.edge.flush_access_log(LOG_FLUSH) {
        tracing::warn!("the access log did not write out its last lines in time");
    }
    code
}

/// SIGHUP: the file again, checked as `check-config` checks it.
async fn reload_now(edge: &ControlledEdge, source: Option<&ReloadSource>) {
    let Some(source) = source else {
        tracing::warn!("SIGHUP: this edge was not started from a configuration file; nothing to reload");
        return;
    };
    let file = source.file.clone();
    let loaded = match tokio::task::spawn_blocking(move || Config::load(&file)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("reload failed: {e}");
            return;
        }
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload: {e}; the running configuration is kept");
            return;
        }
    };
    match tokio::task::block_in_place(|| edge.reload(config)) {
        Ok(n) => tracing::info!(file = %source.file.display(), distributions = n, "configuration reloaded"),
        Err(e) => tracing::error!("reload of {}: {e}; the running configuration is kept", source.file.display()),
    }
}
