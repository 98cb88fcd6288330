//! The admin API's command-line client: `mediaedge distribution …`,
//! `invalidate`, `invalidation …`, `stats`, `usage` and `export-config`.
//!
//! Every command is one or a few HTTP calls to the admin listener (see
//! docs/admin-api.md and docs/openapi.json), printed as aligned tables for
//! people or, with `--json`, as the API's own JSON for scripts. Failures map
//! to documented exit codes (`EXIT_CODES`).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

mod args;
mod client;
mod commands;
mod render;
#[cfg(test)]
mod tests;

pub use args::*;
pub use client::*;
pub use commands::*;
pub use render::*;

/// Where the admin API listens unless `--admin` or `MEDIAEDGE_ADMIN_URL` says otherwise.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:8081";
/// The state directory the edge uses unless configured otherwise.
pub use crate::config::DEFAULT_STATE_DIR;
/// The file in the state directory holding the generated admin token.
pub const TOKEN_FILE: &str = "admin.token";
/// Each request (and its whole answer) must finish within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `invalidate --wait` polls this often.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The exit codes, as `--help` shows them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the admin API refused the request (a 4xx or 5xx not listed below)
  2  bad arguments, or an input file that cannot be read (or output file written)
  3  the admin API cannot be reached (connection refused, timeout)
  4  not found (404)
  5  conflict or failed precondition (409, 412, 428)
  6  unauthorized (401): no token, or not the edge's token
  7  invalidate --wait timed out";

/// Characters left as they are in a path segment or query value.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The process exit codes of the admin commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    /// The API refused the request (a 4xx or 5xx without a code of its own).
    Refused = 1,
    /// Bad arguments, or an input file that cannot be read.
    Usage = 2,
    /// The admin API cannot be reached.
    Unreachable = 3,
    /// 404.
    NotFound = 4,
    /// 409, 412, 428.
    Conflict = 5,
    /// 401.
    Unauthorized = 6,
    /// `invalidate --wait` ran out of time.
    WaitTimeout = 7,
}

impl Exit {
    /// The exit code for an HTTP error status of the API.
    pub fn for_status(status: u16) -> Exit {
        match status {
            401 => Exit::Unauthorized,
            404 => Exit::NotFound,
            409 | 412 | 428 => Exit::Conflict,
            _ => Exit::Refused,
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Why a command failed: its exit code and the message for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
    /// The API's error code, when the API gave one.
    pub api_code: Option<String>,
}

impl Failure {
    fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure { exit, message: message.into(), api_code: None }
    }

    fn usage(message: impl Into<String>) -> Failure {
        Failure::new(Exit::Usage, message)
    }

    /// Adds an indented line of advice under the message.
    fn hint(mut self, hint: impl AsRef<str>) -> Failure {
        self.message.push_str("\n  ");
        self.message.push_str(hint.as_ref());
        self
    }

    /// The stderr text: `<message> (<code>)` then any hint lines.
    pub fn render(&self) -> String {
        match &self.api_code {
            Some(code) => match self.message.split_once('\n') {
                Some((first, rest)) => format!("{first} ({code})\n{rest}"),
                None => format!("{} ({code})", self.message),
            },
            None => self.message.clone(),
        }
    }
}

/// Runs one admin command on its own current-thread runtime, printing its
/// output to stdout and any failure to stderr.
pub fn run(cmd: AdminCommand) -> ExitCode {
    let name = cmd.name();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mediaedge {name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cmd)) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error of the command.
            let _ = stdout.write_all(out.as_bytes());
            let _ = stdout.flush();
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("mediaedge {name}: {}", f.render());
            ExitCode::from(f.exit.code())
        }
    }
}
