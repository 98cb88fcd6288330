//! The admin API's command-line client: `mediaedge distribution …`,
//! `invalidate`, `invalidation …`, `stats`, `usage` and `export-config`.
//!
//! Every command is one or a few HTTP calls to the admin listener (see
//! docs/admin-api.md and docs/openapi.json), printed as aligned tables for
//! people or, with `--json`, as the API's own JSON for scripts. Failures map
//! to documented exit codes (`EXIT_CODES`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

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

/// The `--help` heading of the options every admin command takes.
const OPTIONS_HEADING: &str = "Admin API options";

/// Options every admin command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct AdminOptions {
    /// The admin API's base URL. Default: the MEDIAEDGE_ADMIN_URL environment
    /// variable, else http://127.0.0.1:8081.
    #[arg(long, global = true, value_name = "URL", help_heading = OPTIONS_HEADING)]
    pub admin: Option<String>,
    /// The admin API's bearer token. Default: the MEDIAEDGE_ADMIN_TOKEN
    /// environment variable, else the token file the edge wrote,
    /// <state-dir>/admin.token. (A token given here is visible to other users
    /// in the process list: prefer the variable or the file.)
    #[arg(long, global = true, value_name = "TOKEN", help_heading = OPTIONS_HEADING)]
    pub token: Option<String>,
    /// The edge's state directory, where it writes admin.token when no token
    /// is configured.
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_STATE_DIR, help_heading = OPTIONS_HEADING)]
    pub state_dir: PathBuf,
    /// Print the API's JSON answer (pretty) instead of tables, for scripts.
    #[arg(long, global = true, help_heading = OPTIONS_HEADING)]
    pub json: bool,
}

/// The admin commands (flattened into the top-level `mediaedge` command).
#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// Manage distributions through the admin API of a running edge.
    ///
    /// Create, read, change, enable, disable and delete distributions. Changes
    /// take effect at once; writes are guarded by ETags, so a change made by
    /// someone else in between fails (exit 5) instead of being overwritten.
    #[command(after_help = EXIT_CODES)]
    Distribution {
        #[command(flatten)]
        options: AdminOptions,
        #[command(subcommand)]
        command: DistributionCommand,
    },
    /// Remove paths from a distribution's cache (create an invalidation).
    ///
    /// Paths start with /; a * is allowed only as the last character
    /// ('/videos/*'). Quote them so the shell does not expand the *. The next
    /// request for an invalidated path goes to the origin.
    #[command(after_help = EXIT_CODES)]
    Invalidate {
        #[command(flatten)]
        options: AdminOptions,
        /// The distribution id.
        #[arg(long, value_name = "ID")]
        distribution: String,
        /// The paths to invalidate: one or more, e.g. --paths '/live/*' /index.html
        #[arg(long, value_name = "PATH", num_args = 1.., required = true)]
        paths: Vec<String>,
        /// Makes the request idempotent: repeating it with the same reference
        /// and paths returns the first invalidation instead of making another.
        /// Default: a fresh unique value.
        #[arg(long, value_name = "REF")]
        caller_reference: Option<String>,
        /// Wait until the invalidation is Completed (polling every 200 ms).
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds (exit code 7).
        #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
        timeout: f64,
    },
    /// List a distribution's invalidations, or show one.
    #[command(after_help = EXIT_CODES)]
    Invalidation {
        #[command(flatten)]
        options: AdminOptions,
        #[command(subcommand)]
        command: InvalidationCommand,
    },
    /// Traffic counters per distribution, since the edge started.
    ///
    /// Requests, hit ratio, bytes to viewers and from origins, collapsed
    /// requests, 4xx and 5xx answers, and the origin's p99 latency.
    #[command(after_help = EXIT_CODES)]
    Stats {
        #[command(flatten)]
        options: AdminOptions,
        /// Only this distribution.
        #[arg(long, value_name = "ID")]
        distribution: Option<String>,
    },
    /// Billing usage per distribution and UTC day.
    ///
    /// CloudFront's dimensions: data transfer out to viewers and to origins
    /// (exact bytes), HTTP and HTTPS requests, invalidation paths. Without
    /// --from and --to: the current UTC month up to today.
    #[command(after_help = EXIT_CODES)]
    Usage {
        #[command(flatten)]
        options: AdminOptions,
        /// Only this distribution.
        #[arg(long, value_name = "ID")]
        distribution: Option<String>,
        /// First UTC day, inclusive.
        #[arg(long, value_name = "YYYY-MM-DD")]
        from: Option<String>,
        /// Last UTC day, inclusive.
        #[arg(long, value_name = "YYYY-MM-DD")]
        to: Option<String>,
    },
    /// Print the edge's live state as a configuration file (TOML).
    ///
    /// Its server settings and every distribution as stored, in the form
    /// `mediaedge serve --config` reads. --json does not apply.
    #[command(after_help = EXIT_CODES)]
    ExportConfig {
        #[command(flatten)]
        options: AdminOptions,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// `mediaedge distribution …`.
#[derive(clap::Subcommand, Debug)]
pub enum DistributionCommand {
    /// List every distribution: id, domain name, state, aliases, origins.
    List,
    /// Show one distribution: its state, then its configuration as TOML.
    Get {
        /// The distribution id.
        id: String,
    },
    /// Create a distribution, from a file (--config) or from one origin (--origin).
    ///
    /// Prints the new distribution's id, domain name and ETag.
    Create(CreateArgs),
    /// Change a distribution, from a file or in place.
    ///
    /// --config FILE replaces the whole configuration; --origin, --comment,
    /// --add-alias and --remove-alias edit the current one. The change is made against the version read first (or the one given
    /// with --if-match): if someone changes the distribution in between, the
    /// update fails with exit code 5 instead of overwriting their change.
    Update(UpdateArgs),
    /// Enable a distribution: it answers viewers again.
    Enable(StateArgs),
    /// Disable a distribution: viewers get 403; its configuration is kept.
    Disable(StateArgs),
    /// Delete a distribution. It must be disabled first.
    Delete(StateArgs),
}

/// `mediaedge distribution create`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// A file holding one distribution: TOML (a bare distribution table, or a
    /// configuration file with exactly one [[distributions]] entry) or JSON
    /// (a .json file). Relative paths in it (folder, ca_file, public_key) are
    /// relative to the file, as in a configuration file.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["origin", "aliases", "comment", "id"],
        required_unless_present = "origin"
    )]
    pub config: Option<PathBuf>,
    /// The quick form: one origin, an http(s):// URL or a local folder,
    /// behind a default behavior.
    #[arg(long, value_name = "URL|FOLDER")]
    pub origin: Option<String>,
    /// With --origin: a host name the distribution answers for (repeatable).
    #[arg(long = "alias", value_name = "HOST")]
    pub aliases: Vec<String>,
    /// With --origin: free text describing the distribution.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// With --origin: the id (default: generated, E + 13 letters and digits).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
}

/// `mediaedge distribution update`.
#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// The distribution id.
    pub id: String,
    /// Replace the whole configuration with this file (same forms as create).
    /// A file without `enabled` keeps the distribution's current state.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["origin", "comment", "add_alias", "remove_alias"])]
    pub config: Option<PathBuf>,
    /// Only if the distribution is still at this ETag (default: the ETag read
    /// just before the change).
    #[arg(long, value_name = "ETAG")]
    pub if_match: Option<String>,
    /// Point the default behavior's origin at this http(s):// URL or local
    /// folder, keeping its other settings.
    #[arg(long, value_name = "URL|FOLDER")]
    pub origin: Option<String>,
    /// Replace the comment.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// Add an alternate domain name (repeatable).
    #[arg(long, value_name = "HOST")]
    pub add_alias: Vec<String>,
    /// Remove an alternate domain name (repeatable).
    #[arg(long, value_name = "HOST")]
    pub remove_alias: Vec<String>,
}

/// `enable`, `disable`, `delete`.
#[derive(clap::Args, Debug)]
pub struct StateArgs {
    /// The distribution id.
    pub id: String,
    /// Only if the distribution is still at this ETag (delete: default the
    /// ETag read just before).
    #[arg(long, value_name = "ETAG")]
    pub if_match: Option<String>,
}

/// `mediaedge invalidation …`.
#[derive(clap::Subcommand, Debug)]
pub enum InvalidationCommand {
    /// A distribution's invalidations, newest first.
    List {
        /// The distribution id.
        #[arg(long, value_name = "ID")]
        distribution: String,
        /// At most this many (the API's default is 100).
        #[arg(long, value_name = "N")]
        max_items: Option<u32>,
    },
    /// One invalidation, with its paths.
    Get {
        /// The distribution id.
        #[arg(long, value_name = "ID")]
        distribution: String,
        /// The invalidation id (I…).
        id: String,
    },
}

impl AdminCommand {
    /// The command's words, for messages: `distribution create`.
    pub fn name(&self) -> String {
        match self {
            AdminCommand::Distribution { command, .. } => format!(
                "distribution {}",
                match command {
                    DistributionCommand::List => "list",
                    DistributionCommand::Get { .. } => "get",
                    DistributionCommand::Create(_) => "create",
                    DistributionCommand::Update(_) => "update",
                    DistributionCommand::Enable(_) => "enable",
                    DistributionCommand::Disable(_) => "disable",
                    DistributionCommand::Delete(_) => "delete",
                }
            ),
            AdminCommand::Invalidate { .. } => "invalidate".into(),
            AdminCommand::Invalidation { command: InvalidationCommand::List { .. }, .. } => "invalidation list".into(),
            AdminCommand::Invalidation { command: InvalidationCommand::Get { .. }, .. } => "invalidation get".into(),
            AdminCommand::Stats { .. } => "stats".into(),
            AdminCommand::Usage { .. } => "usage".into(),
            AdminCommand::ExportConfig { .. } => "export-config".into(),
        }
    }

    fn options(&self) -> &AdminOptions {
        match self {
            AdminCommand::Distribution { options, .. }
            | AdminCommand::Invalidate { options, .. }
            | AdminCommand::Invalidation { options, .. }
            | AdminCommand::Stats { options, .. }
            | AdminCommand::Usage { options, .. }
            | AdminCommand::ExportConfig { options, .. } => options,
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

/// Runs one admin command; returns what it prints on stdout.
pub async fn execute(cmd: AdminCommand) -> Result<String, Failure> {
    let api = Api::new(cmd.options())?;
    let json_out = cmd.options().json;
    match cmd {
        AdminCommand::Distribution { command, .. } => distribution(&api, command, json_out).await,
        AdminCommand::Invalidate { distribution, paths, caller_reference, wait, timeout, .. } => {
            let timeout = seconds(timeout)
                .ok_or_else(|| Failure::usage("--timeout must be a positive number of seconds (at most a year)"))?;
            let reference = caller_reference.unwrap_or_else(fresh_caller_reference);
            invalidate(&api, &distribution, paths, reference, wait.then_some(timeout), json_out).await
        }
        AdminCommand::Invalidation { command, .. } => match command {
            InvalidationCommand::List { distribution, max_items } => {
                let mut path = format!("/v1/distributions/{}/invalidations", seg(&distribution));
                if let Some(n) = max_items {
                    path.push_str(&format!("?max_items={n}"));
                }
                let body = api.get_json(&path).await?;
                Ok(if json_out { pretty(&body) } else { invalidation_table(&body) })
            }
            InvalidationCommand::Get { distribution, id } => {
                let path = format!("/v1/distributions/{}/invalidations/{}", seg(&distribution), seg(&id));
                let body = api.get_json(&path).await?;
                Ok(if json_out { pretty(&body) } else { invalidation_details(&body) })
            }
        },
        AdminCommand::Stats { distribution, .. } => {
            let body = match &distribution {
                Some(id) => api.get_json(&format!("/v1/distributions/{}/stats", seg(id))).await?,
                None => api.get_json("/v1/stats").await?,
            };
            if json_out {
                return Ok(pretty(&body));
            }
            let list = match distribution {
                Some(_) => vec![body],
                None => body.get("distributions").and_then(Value::as_array).cloned().unwrap_or_default(),
            };
            Ok(stats_table(&list))
        }
        AdminCommand::Usage { distribution, from, to, .. } => {
            let mut query = Vec::new();
            if let Some(d) = &distribution {
                query.push(format!("distribution={}", utf8_percent_encode(d, COMPONENT)));
            }
            for (name, value) in [("from", &from), ("to", &to)] {
                if let Some(v) = value {
                    if !is_date(v) {
                        return Err(Failure::usage(format!("--{name} {v:?} is not a date such as 2026-11-01")));
                    }
                    query.push(format!("{name}={v}"));
                }
            }
            let mut path = "/v1/usage".to_string();
            if !query.is_empty() {
                path.push('?');
                path.push_str(&query.join("&"));
            }
            let body = api.get_json(&path).await?;
            Ok(if json_out { pretty(&body) } else { usage_table(&body) })
        }
        AdminCommand::ExportConfig { output, .. } => {
            let reply = api.call(http::Method::GET, "/v1/config", None, None).await?;
            let text = String::from_utf8_lossy(&reply.body).into_owned();
            match output {
                Some(file) => {
                    std::fs::write(&file, text.as_bytes())
                        .map_err(|e| Failure::usage(format!("cannot write {}: {e}", file.display())))?;
                    Ok(String::new())
                }
                None => Ok(text),
            }
        }
    }
}

async fn distribution(api: &Api, command: DistributionCommand, json_out: bool) -> Result<String, Failure> {
    match command {
        DistributionCommand::List => {
            let body = api.get_json("/v1/distributions").await?;
            Ok(if json_out { pretty(&body) } else { distribution_table(&body) })
        }
        DistributionCommand::Get { id } => {
            let body = api.get_json(&dist_path(&id)).await?;
            Ok(if json_out { pretty(&body) } else { distribution_details(&body) })
        }
        DistributionCommand::Create(args) => {
            let config = match (&args.config, &args.origin) {
                (Some(file), _) => read_distribution_file(file)?,
                (None, Some(origin)) => {
                    quick_config(origin, &args.aliases, args.comment.as_deref(), args.id.as_deref())?
                }
                (None, None) => return Err(Failure::usage("give --config FILE or --origin URL|FOLDER")),
            };
            let reply = api.call(http::Method::POST, "/v1/distributions", Some(&config), None).await?;
            let body = reply.json()?;
            Ok(if json_out {
                pretty(&body)
            } else {
                key_values(&[
                    ("id", text(&body, "id")),
                    ("domain name", text(&body, "domain_name")),
                    ("etag", text(&body, "etag")),
                ])
            })
        }
        DistributionCommand::Update(args) => {
            let edits = Edits {
                origin: args.origin.clone(),
                comment: args.comment.clone(),
                add_aliases: args.add_alias.clone(),
                remove_aliases: args.remove_alias.clone(),
            };
            if args.config.is_none() && edits.is_empty() {
                return Err(Failure::usage(
                    "nothing to change: give --config FILE, or --origin, --comment, --add-alias or --remove-alias",
                ));
            }
            // Read the file before any call, so a bad file fails fast.
            let file_config = match &args.config {
                Some(file) => Some(read_distribution_file(file)?),
                None => None,
            };
            let current = api.get_json(&dist_path(&args.id)).await?;
            let etag = match &args.if_match {
                Some(e) => e.clone(),
                None => current_etag(&current)?,
            };
            let body = match file_config {
                Some(mut config) => {
                    let Some(obj) = config.as_object_mut() else {
                        return Err(Failure::usage("the file does not hold a distribution table"));
                    };
                    match obj.get("id") {
                        Some(Value::String(id)) if *id != args.id => {
                            return Err(Failure::usage(format!(
                                "the file is for distribution {id}, not {}; remove its id or use the right one",
                                args.id
                            )))
                        }
                        _ => {}
                    }
                    if !obj.contains_key("enabled") {
                        if let Some(enabled) = current.get("enabled").and_then(Value::as_bool) {
                            obj.insert("enabled".into(), Value::Bool(enabled));
                        }
                    }
                    config
                }
                None => {
                    let mut config =
                        current.get("config").cloned().filter(Value::is_object).ok_or_else(|| {
                            Failure::new(Exit::Refused, "the admin API's answer has no config object")
                        })?;
                    apply_edits(&mut config, &edits)?;
                    config
                }
            };
            let reply = api.call(http::Method::PUT, &dist_path(&args.id), Some(&body), Some(&etag)).await.map_err(
                |f| match f.api_code.as_deref() {
                    Some("PreconditionFailed") => f.hint(format!(
                        "the distribution changed since it was read; run `mediaedge distribution get {}` and retry",
                        args.id
                    )),
                    _ => f,
                },
            )?;
            let body = reply.json()?;
            Ok(if json_out {
                pretty(&body)
            } else {
                key_values(&[
                    ("id", text(&body, "id")),
                    ("domain name", text(&body, "domain_name")),
                    ("etag", text(&body, "etag")),
                ])
            })
        }
        DistributionCommand::Enable(args) => set_enabled(api, &args, true, json_out).await,
        DistributionCommand::Disable(args) => set_enabled(api, &args, false, json_out).await,
        DistributionCommand::Delete(args) => {
            let etag = match &args.if_match {
                Some(e) => e.clone(),
                None => current_etag(&api.get_json(&dist_path(&args.id)).await?)?,
            };
            api.call(http::Method::DELETE, &dist_path(&args.id), None, Some(&etag)).await.map_err(|f| {
                match f.api_code.as_deref() {
                    Some("DistributionNotDisabled") => {
                        f.hint(format!("disable it first: mediaedge distribution disable {}", args.id))
                    }
                    _ => f,
                }
            })?;
            Ok(if json_out { String::new() } else { format!("deleted {}\n", args.id) })
        }
    }
}

async fn set_enabled(api: &Api, args: &StateArgs, enabled: bool, json_out: bool) -> Result<String, Failure> {
    let action = if enabled { "enable" } else { "disable" };
    let path = format!("{}/{action}", dist_path(&args.id));
    let body = api.call(http::Method::POST, &path, None, args.if_match.as_deref()).await?.json()?;
    Ok(if json_out {
        pretty(&body)
    } else {
        key_values(&[("id", text(&body, "id")), ("enabled", yes_no(&body, "enabled")), ("etag", text(&body, "etag"))])
    })
}

async fn invalidate(
    api: &Api,
    distribution: &str,
    paths: Vec<String>,
    caller_reference: String,
    wait: Option<Duration>,
    json_out: bool,
) -> Result<String, Failure> {
    let path = format!("/v1/distributions/{}/invalidations", seg(distribution));
    let request = json!({ "paths": paths, "caller_reference": caller_reference });
    let reply = api.call(http::Method::POST, &path, Some(&request), None).await?;
    let repeat = reply.status == 200;
    let mut inv = reply.json()?;
    if let Some(timeout) = wait {
        let id = text(&inv, "id");
        let started = Instant::now();
        let deadline = started + timeout;
        let inv_path = format!("{path}/{}", seg(&id));
        if text(&inv, "status") != "Completed" && !json_out {
            eprintln!("waiting for invalidation {id} to complete...");
        }
        while text(&inv, "status") != "Completed" {
            let now = Instant::now();
            if now >= deadline {
                return Err(Failure::new(
                    Exit::WaitTimeout,
                    format!(
                        "invalidation {id} is still {} after {}s",
                        text(&inv, "status"),
                        timeout.as_secs_f64().round()
                    ),
                )
                .hint(format!("check on it with: mediaedge invalidation get --distribution {distribution} {id}")));
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
            inv = api.get_json(&inv_path).await?;
        }
    }
    if json_out {
        return Ok(pretty(&inv));
    }
    let mut out = key_values(&invalidation_fields(&inv));
    if repeat {
        out.push_str("(an earlier request with this caller reference: no new invalidation was made)\n");
    }
    Ok(out)
}

/// The ETag a distribution answer carries in its body.
fn current_etag(distribution: &Value) -> Result<String, Failure> {
    distribution
        .get("etag")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Failure::new(Exit::Refused, "the admin API's answer has no etag"))
}

fn dist_path(id: &str) -> String {
    format!("/v1/distributions/{}", seg(id))
}

/// A path segment, percent-encoded.
fn seg(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// A caller reference unique enough for one user: the time and 32 random bits.
pub fn fresh_caller_reference() -> String {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("cli-{millis}-{:08x}", fastrand::u32(..))
}

/// A positive, finite number of seconds, at most a year.
fn seconds(s: f64) -> Option<Duration> {
    (s.is_finite() && s > 0.0 && s <= 31_536_000.0).then(|| Duration::from_secs_f64(s))
}

/// `YYYY-MM-DD`.
pub fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && matches!(s[5..7].parse::<u32>(), Ok(1..=12))
        && matches!(s[8..10].parse::<u32>(), Ok(1..=31))
}

// ---------------------------------------------------------------------------
// The HTTP client

/// Where the token came from, for the 401 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Flag,
    Env,
    File(PathBuf),
    /// No token anywhere: the file that was tried, and why it gave none.
    Missing {
        file: PathBuf,
        why: String,
    },
}

impl TokenSource {
    fn explain(&self, base: &str) -> String {
        match self {
            TokenSource::Flag => "the token given with --token was refused".into(),
            TokenSource::Env => "the token in MEDIAEDGE_ADMIN_TOKEN was refused".into(),
            TokenSource::File(p) => format!(
                "the token read from {} was refused: is that the state directory of the edge at {base}? \
                 (set --state-dir, or give the token with --token or MEDIAEDGE_ADMIN_TOKEN)",
                p.display()
            ),
            TokenSource::Missing { file, why } => format!(
                "no token: none given with --token, MEDIAEDGE_ADMIN_TOKEN is not set, and {} {why} \
                 (run the command where the edge runs, or set --state-dir)",
                file.display()
            ),
        }
    }
}

/// Finds the token: `--token`, else `MEDIAEDGE_ADMIN_TOKEN`, else the token file.
pub fn find_token(flag: Option<&str>, env: Option<String>, state_dir: &Path) -> (Option<String>, TokenSource) {
    if let Some(t) = flag.map(str::trim).filter(|t| !t.is_empty()) {
        return (Some(t.to_string()), TokenSource::Flag);
    }
    if let Some(t) = env.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        return (Some(t.to_string()), TokenSource::Env);
    }
    let file = state_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) if !text.trim().is_empty() => (Some(text.trim().to_string()), TokenSource::File(file)),
        Ok(_) => (None, TokenSource::Missing { file, why: "is empty".into() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (None, TokenSource::Missing { file, why: "does not exist".into() })
        }
        Err(e) => (None, TokenSource::Missing { file, why: format!("cannot be read ({e})") }),
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The admin API base URL: scheme `http`, host, optional port and path prefix,
/// without a trailing slash. A bare `host:port` gets `http://`.
pub fn normalize_base_url(url: &str) -> Result<String, Failure> {
    let url = url.trim();
    let with_scheme = if url.contains("://") { url.to_string() } else { format!("http://{url}") };
    let uri: http::Uri = with_scheme
        .parse()
        .map_err(|e| Failure::usage(format!("the admin URL {url:?} is not a URL ({e}); e.g. {DEFAULT_ADMIN_URL}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(Failure::usage(format!(
                "the admin URL {url:?} is {other}://: the admin API speaks plain http:// (keep it on loopback, or \
                 put a TLS proxy in front and run the command beside it)"
            )))
        }
        None => return Err(Failure::usage(format!("the admin URL {url:?} has no scheme"))),
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) {
        return Err(Failure::usage(format!("the admin URL {url:?} has no host")));
    }
    if uri.query().is_some() {
        return Err(Failure::usage(format!("the admin URL {url:?} cannot carry a query string")));
    }
    Ok(with_scheme.trim_end_matches('/').to_string())
}

/// One answer of the API.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value, Failure> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Failure::new(
                Exit::Refused,
                format!("the admin API answered {} with a body that is not JSON ({e})", self.status),
            )
        })
    }
}

struct Api {
    base: String,
    token: Option<String>,
    token_source: TokenSource,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Api {
    fn new(options: &AdminOptions) -> Result<Api, Failure> {
        let url = options.admin.clone().or_else(|| env_var("MEDIAEDGE_ADMIN_URL"));
        let base = normalize_base_url(url.as_deref().unwrap_or(DEFAULT_ADMIN_URL))?;
        let (token, token_source) =
            find_token(options.token.as_deref(), env_var("MEDIAEDGE_ADMIN_TOKEN"), &options.state_dir);
        if let Some(t) = &token {
            if http::HeaderValue::from_str(&format!("Bearer {t}")).is_err() {
                return Err(Failure::usage("the admin token holds characters an HTTP header cannot carry"));
            }
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1).build(connector);
        Ok(Api { base, token, token_source, client })
    }

    /// A GET whose answer is JSON.
    async fn get_json(&self, path: &str) -> Result<Value, Failure> {
        self.call(http::Method::GET, path, None, None).await?.json()
    }

    /// One call; API errors (4xx, 5xx) become failures with their exit code.
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Reply, Failure> {
        let reply = self.send(method, path, body, if_match).await?;
        if reply.status >= 400 {
            return Err(self.api_failure(&reply));
        }
        Ok(reply)
    }

    async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Reply, Failure> {
        let url = format!("{}{path}", self.base);
        let mut req = http::Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::ACCEPT, if path == "/v1/config" { "application/toml" } else { "application/json" })
            .header(http::header::USER_AGENT, concat!("mediaedge/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(etag) = if_match {
            let etag = etag.trim();
            let quoted = if etag.starts_with('"') || etag.starts_with("W/") || etag == "*" {
                etag.to_string()
            } else {
                format!("\"{etag}\"")
            };
            req = req.header(http::header::IF_MATCH, quoted);
        }
        let payload = match body {
            Some(v) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v).unwrap_or_default())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| Failure::usage(format!("cannot make a request for {url}: {e}")))?;
        let exchange = async {
            let resp = self.client.request(req).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(Into::<Box<dyn std::error::Error + Send + Sync>>::into);
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((parts, body))
        };
        let (parts, body) = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Err(_) => {
                return Err(Failure::new(
                    Exit::Unreachable,
                    format!("the admin API at {} did not answer within {}s", self.base, REQUEST_TIMEOUT.as_secs()),
                ))
            }
            Ok(Err(e)) => return Err(self.unreachable(e.as_ref())),
            Ok(Ok(x)) => x,
        };
        let body = body.map_err(|e| self.unreachable(e.as_ref()))?.to_bytes();
        Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body })
    }

    fn unreachable(&self, e: &(dyn std::error::Error + 'static)) -> Failure {
        Failure::new(Exit::Unreachable, format!("cannot reach the admin API at {}: {}", self.base, error_chain(e)))
            .hint("is the edge running (mediaedge serve)? Point --admin (or MEDIAEDGE_ADMIN_URL) at its admin listener")
    }

    /// The failure for an error answer, from the API's error body when it has one.
    fn api_failure(&self, reply: &Reply) -> Failure {
        let exit = Exit::for_status(reply.status);
        let error = serde_json::from_slice::<Value>(&reply.body).ok().and_then(|v| v.get("error").cloned());
        let mut f = match error.as_ref().and_then(|e| Some((e, e.get("code")?.as_str()?))) {
            Some((e, code)) => {
                let message = e.get("message").and_then(Value::as_str).unwrap_or("(no message)");
                let message = match e.get("field").and_then(Value::as_str) {
                    Some(field) => format!("field `{field}`: {message}"),
                    None => message.to_string(),
                };
                Failure { exit, message, api_code: Some(code.to_string()) }
            }
            None => {
                let text = String::from_utf8_lossy(&reply.body);
                let text = text.trim();
                let snippet: String = text.chars().take(200).collect();
                let message = if snippet.is_empty() {
                    format!("HTTP {} from {}", reply.status, self.base)
                } else {
                    format!("HTTP {} from {}: {snippet}", reply.status, self.base)
                };
                Failure::new(exit, message).hint(format!(
                    "that is not an answer of the mediaedge admin API: is {} its admin listener (default port 8081)?",
                    self.base
                ))
            }
        };
        if reply.status == 401 {
            f = f.hint(self.token_source.explain(&self.base));
        }
        f
    }
}

/// An error with its sources, `outer: inner: ...`, without repeats.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

// ---------------------------------------------------------------------------
// Distribution files and the quick form

/// Reads a distribution from a file: JSON (`.json`) holding a
/// DistributionConfig, or TOML holding either one bare distribution table or
/// a configuration file with exactly one `[[distributions]]` entry (its other
/// tables are ignored). Paths in it are relative to the file (see
/// `absolutize_paths`).
pub fn read_distribution_file(path: &Path) -> Result<Value, Failure> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let mut config = if is_json {
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Failure::usage(format!("{}: not valid JSON: {e}", path.display())))?;
        if !v.is_object() {
            return Err(Failure::usage(format!("{}: expected a JSON object (a distribution)", path.display())));
        }
        v
    } else {
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| Failure::usage(format!("{}: not valid TOML: {e}", path.display())))?;
        match table.remove("distributions") {
            None => toml_to_json(toml::Value::Table(table)),
            Some(toml::Value::Array(mut list)) if list.len() == 1 && list[0].is_table() => toml_to_json(list.remove(0)),
            Some(toml::Value::Array(list)) => {
                return Err(Failure::usage(format!(
                    "{}: has {} [[distributions]] entries; give a file with exactly one",
                    path.display(),
                    list.len()
                )))
            }
            Some(_) => {
                return Err(Failure::usage(format!(
                    "{}: `distributions` must be an array of tables ([[distributions]])",
                    path.display()
                )))
            }
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
    let base = std::path::absolute(&base).unwrap_or(base);
    absolutize_paths(&mut config, &base);
    Ok(config)
}

/// Makes a distribution from a file stand on its own, as the edge does with
/// its configuration file: relative `origins[].folder` and `origins[].ca_file`
/// paths become absolute against `base` (the file's folder), and
/// `key_groups[].keys[].public_key` files that can be read here are inlined
/// as PEM text (so the edge need not see the file), others made absolute.
fn absolutize_paths(config: &mut Value, base: &Path) {
    let absolute = |s: &str| -> String {
        let p = Path::new(s);
        if p.is_relative() {
            base.join(p).to_string_lossy().into_owned()
        } else {
            s.to_string()
        }
    };
    if let Some(origins) = config.get_mut("origins").and_then(Value::as_array_mut) {
        for o in origins {
            for field in ["folder", "ca_file"] {
                if let Some(Value::String(s)) = o.get_mut(field) {
                    if !s.is_empty() {
                        *s = absolute(s);
                    }
                }
            }
        }
    }
    if let Some(groups) = config.get_mut("key_groups").and_then(Value::as_array_mut) {
        for g in groups {
            if let Some(keys) = g.get_mut("keys").and_then(Value::as_array_mut) {
                for k in keys {
                    if let Some(Value::String(s)) = k.get_mut("public_key") {
                        if s.is_empty() || s.trim_start().starts_with("-----BEGIN") {
                            continue;
                        }
                        let path = absolute(s);
                        *s = match std::fs::read_to_string(&path) {
                            Ok(pem) if pem.trim_start().starts_with("-----BEGIN") => pem,
                            _ => path,
                        };
                    }
                }
            }
        }
    }
}

/// TOML to JSON (dates and times become strings).
pub fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect()),
    }
}

/// The origin entry of `--origin`: `url` for http(s):// URLs, else `folder`
/// (made absolute; it must exist).
fn origin_location(origin: &str) -> Result<(&'static str, String), Failure> {
    let lower = origin.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(("url", origin.to_string()));
    }
    let path = Path::new(origin);
    if !path.is_dir() {
        return Err(Failure::usage(format!("--origin {origin:?} is neither an http:// or https:// URL nor a folder")));
    }
    let abs = std::path::absolute(path)
        .map_err(|e| Failure::usage(format!("--origin {origin:?}: cannot make the path absolute: {e}")))?;
    let abs = abs.to_str().ok_or_else(|| Failure::usage(format!("--origin {origin:?}: the path is not UTF-8")))?;
    Ok(("folder", abs.to_string()))
}

/// The DistributionConfig of `create --origin`: one origin `origin` behind the
/// default behavior.
pub fn quick_config(
    origin: &str,
    aliases: &[String],
    comment: Option<&str>,
    id: Option<&str>,
) -> Result<Value, Failure> {
    let (kind, location) = origin_location(origin)?;
    let mut origin_entry = Map::new();
    origin_entry.insert("id".into(), json!("origin"));
    origin_entry.insert(kind.into(), Value::String(location));
    let mut config = Map::new();
    if let Some(id) = id {
        config.insert("id".into(), json!(id));
    }
    if let Some(c) = comment {
        config.insert("comment".into(), json!(c));
    }
    config.insert("aliases".into(), json!(aliases));
    config.insert("origins".into(), Value::Array(vec![Value::Object(origin_entry)]));
    config.insert("default_behavior".into(), json!({ "origin": "origin" }));
    Ok(Value::Object(config))
}

/// The in-place edits of `distribution update`.
#[derive(Debug, Clone, Default)]
pub struct Edits {
    pub origin: Option<String>,
    pub comment: Option<String>,
    pub add_aliases: Vec<String>,
    pub remove_aliases: Vec<String>,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        self.origin.is_none() && self.comment.is_none() && self.add_aliases.is_empty() && self.remove_aliases.is_empty()
    }
}

/// Applies edits to a stored DistributionConfig.
pub fn apply_edits(config: &mut Value, edits: &Edits) -> Result<(), Failure> {
    let obj = config.as_object_mut().ok_or_else(|| Failure::usage("the configuration is not an object"))?;
    if let Some(origin) = &edits.origin {
        let (kind, location) = origin_location(origin)?;
        let origin_id = obj
            .get("default_behavior")
            .and_then(|b| b.get("origin"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Failure::new(Exit::Refused, "the stored configuration has no default_behavior.origin"))?;
        let entry = obj
            .get_mut("origins")
            .and_then(Value::as_array_mut)
            .and_then(|list| list.iter_mut().find(|o| o.get("id").and_then(Value::as_str) == Some(&origin_id)))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| {
                Failure::new(Exit::Refused, format!("the stored configuration has no origin {origin_id:?}"))
            })?;
        entry.remove("url");
        entry.remove("folder");
        entry.insert(kind.into(), Value::String(location));
    }
    if let Some(c) = &edits.comment {
        obj.insert("comment".into(), Value::String(c.clone()));
    }
    if !edits.add_aliases.is_empty() || !edits.remove_aliases.is_empty() {
        let mut aliases: Vec<String> = obj
            .get("aliases")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        for r in &edits.remove_aliases {
            let before = aliases.len();
            aliases.retain(|a| !a.eq_ignore_ascii_case(r));
            if aliases.len() == before {
                return Err(Failure::usage(format!("--remove-alias {r}: the distribution has no such alias")));
            }
        }
        for a in &edits.add_aliases {
            if !aliases.iter().any(|x| x.eq_ignore_ascii_case(a)) {
                aliases.push(a.clone());
            }
        }
        obj.insert("aliases".into(), json!(aliases));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Output

/// Pretty JSON with a final newline.
fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

/// A field as text: strings as they are, numbers and booleans written, null
/// and absent as "".
fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn uint(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn float(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn yes_no(v: &Value, key: &str) -> String {
    match v.get(key).and_then(Value::as_bool) {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => String::new(),
    }
}

/// The strings of an array field, joined with ", " ("-" when empty).
fn joined(v: &Value, key: &str) -> String {
    let list: Vec<&str> =
        v.get(key).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(", ")
    }
}

/// A column of a plain-text table.
#[derive(Debug, Clone, Copy)]
pub struct Column<'a> {
    pub title: &'a str,
    /// Right-aligned (numbers).
    pub right: bool,
}

const fn left(title: &str) -> Column<'_> {
    Column { title, right: false }
}

const fn right(title: &str) -> Column<'_> {
    Column { title, right: true }
}

/// An aligned plain-text table: a title row, then the rows; columns two
/// spaces apart, no trailing spaces.
pub fn table(columns: &[Column], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = columns.iter().map(|c| width(c.title)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns.len()) {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let mut out = String::new();
    let titles: Vec<String> = columns.iter().map(|c| c.title.to_string()).collect();
    for row in std::iter::once(&titles).chain(rows) {
        let mut line = String::new();
        for (i, c) in columns.iter().enumerate() {
            let cell = row.get(i).map_or("", String::as_str);
            let pad = " ".repeat(widths[i].saturating_sub(width(cell)));
            if i > 0 {
                line.push_str("  ");
            }
            if c.right {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `key   value` lines, the values aligned; multi-line values continue under
/// the first.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let mut lines = v.lines();
        let first = lines.next().unwrap_or("");
        out.push_str(format!("{k:<w$}  {first}").trim_end());
        out.push('\n');
        for more in lines {
            out.push_str(format!("{:w$}  {more}", "").trim_end());
            out.push('\n');
        }
    }
    out
}

/// `distribution list`.
pub fn distribution_table(list: &Value) -> String {
    let items = list.get("items").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|d| {
            vec![
                text(d, "id"),
                text(d, "domain_name"),
                yes_no(d, "enabled"),
                text(d, "status"),
                joined(d, "aliases"),
                joined(d, "origins"),
                text(d, "comment"),
            ]
        })
        .collect();
    table(
        &[
            left("ID"),
            left("DOMAIN NAME"),
            left("ENABLED"),
            left("STATUS"),
            left("ALIASES"),
            left("ORIGINS"),
            left("COMMENT"),
        ],
        &rows,
    )
}

/// `distribution get`: the state as key/value lines, then the configuration as TOML.
pub fn distribution_details(d: &Value) -> String {
    let mut out = key_values(&[
        ("id", text(d, "id")),
        ("domain name", text(d, "domain_name")),
        ("status", text(d, "status")),
        ("enabled", yes_no(d, "enabled")),
        ("comment", text(d, "comment")),
        ("aliases", joined(d, "aliases")),
        ("etag", text(d, "etag")),
        ("created", text(d, "created_time")),
        ("last modified", text(d, "last_modified_time")),
    ]);
    if let Some(config) = d.get("config") {
        out.push_str("\n# configuration\n");
        out.push_str(&to_toml(config));
    }
    out
}

/// A JSON configuration as TOML, in the order people write it: plain values
/// first (id, enabled, comment, aliases, path, origin, url, folder, then the
/// rest by name), then tables (origins, behaviors, default_behavior,
/// key_groups, ...). Nulls are left out.
pub fn to_toml(config: &Value) -> String {
    match toml::to_string(&TomlOrder(config)) {
        Ok(s) => s,
        // Not representable in TOML (e.g. a top-level array): show the JSON.
        Err(_) => pretty(config),
    }
}

struct TomlOrder<'a>(&'a Value);

const KEY_ORDER: [&str; 16] = [
    "id",
    "enabled",
    "comment",
    "aliases",
    "path",
    "origin",
    "url",
    "folder",
    "public_key",
    "origins",
    "behaviors",
    "default_behavior",
    "key_groups",
    "cache_key",
    "headers",
    "keys",
];

fn is_tableish(v: &Value) -> bool {
    match v {
        Value::Object(_) => true,
        Value::Array(a) => !a.is_empty() && a.iter().all(Value::is_object),
        _ => false,
    }
}

impl Serialize for TomlOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k).collect();
                keys.sort_by_key(|k| {
                    let rank = KEY_ORDER.iter().position(|x| x == k).unwrap_or(KEY_ORDER.len());
                    (is_tableish(&m[k.as_str()]), rank, k.as_str())
                });
                let mut map = s.serialize_map(Some(keys.len()))?;
                for k in keys {
                    map.serialize_entry(k, &TomlOrder(&m[k.as_str()]))?;
                }
                map.end()
            }
            Value::Array(a) => {
                let items: Vec<&Value> = a.iter().filter(|v| !v.is_null()).collect();
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&TomlOrder(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

fn invalidation_fields(inv: &Value) -> Vec<(&'static str, String)> {
    let paths = inv.get("paths").and_then(Value::as_array).map_or(0, Vec::len);
    let completed = text(inv, "completed_time");
    vec![
        ("id", text(inv, "id")),
        ("distribution", text(inv, "distribution_id")),
        ("status", text(inv, "status")),
        ("paths", paths.to_string()),
        ("caller reference", text(inv, "caller_reference")),
        ("created", text(inv, "create_time")),
        ("completed", if completed.is_empty() { "-".into() } else { completed }),
    ]
}

/// `invalidation get`: the fields, then every path.
pub fn invalidation_details(inv: &Value) -> String {
    let mut fields = invalidation_fields(inv);
    let paths: Vec<&str> = inv
        .get("paths")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    fields.retain(|(k, _)| *k != "paths");
    fields.push(("paths", if paths.is_empty() { "-".into() } else { paths.join("\n") }));
    key_values(&fields)
}

/// `invalidation list`.
pub fn invalidation_table(list: &Value) -> String {
    let items = list.get("items").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                text(i, "id"),
                text(i, "status"),
                text(i, "create_time"),
                i.get("paths").and_then(Value::as_array).map_or(0, Vec::len).to_string(),
                text(i, "caller_reference"),
            ]
        })
        .collect();
    table(&[left("ID"), left("STATUS"), left("CREATED"), right("PATHS"), left("CALLER REF")], &rows)
}

/// Bytes for people: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `stats`: one row per distribution.
pub fn stats_table(list: &[Value]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            let errors = s.get("errors").cloned().unwrap_or(Value::Null);
            let latency = s.get("origin_latency_ms").cloned().unwrap_or(Value::Null);
            vec![
                text(s, "distribution_id"),
                uint(s, "requests").to_string(),
                format!("{:.1}%", float(s, "hit_ratio") * 100.0),
                human_bytes(uint(s, "bytes_to_viewers")),
                human_bytes(uint(s, "bytes_from_origin")),
                uint(s, "collapsed_requests").to_string(),
                uint(&errors, "4xx").to_string(),
                uint(&errors, "5xx").to_string(),
                if uint(&latency, "count") == 0 { "-".into() } else { format!("{:.1}", float(&latency, "p99")) },
            ]
        })
        .collect();
    table(
        &[
            left("DISTRIBUTION"),
            right("REQUESTS"),
            right("HIT RATIO"),
            right("BYTES OUT"),
            right("BYTES FROM ORIGIN"),
            right("COLLAPSED"),
            right("4XX"),
            right("5XX"),
            right("ORIGIN P99 MS"),
        ],
        &rows,
    )
}

/// `usage`: the range, then one row per distribution and day (exact bytes,
/// as billed), with a total row when there is more than one.
pub fn usage_table(usage: &Value) -> String {
    let items = usage.get("items").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    const FIELDS: [&str; 5] = [
        "data_transfer_out_to_viewers_bytes",
        "data_transfer_out_to_origin_bytes",
        "http_requests",
        "https_requests",
        "invalidation_paths",
    ];
    let mut totals = [0u64; 5];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for item in items {
        let mut row = vec![text(item, "distribution_id"), text(item, "date")];
        for (i, f) in FIELDS.iter().enumerate() {
            let n = uint(item, f);
            totals[i] = totals[i].saturating_add(n);
            row.push(n.to_string());
        }
        rows.push(row);
    }
    if rows.len() > 1 {
        let mut row = vec!["TOTAL".to_string(), String::new()];
        row.extend(totals.iter().map(u64::to_string));
        rows.push(row);
    }
    let mut out = format!("usage from {} to {} (UTC days, bytes)\n", text(usage, "from"), text(usage, "to"));
    if rows.is_empty() {
        out.push_str("no usage in this range\n");
        return out;
    }
    out.push_str(&table(
        &[
            left("DISTRIBUTION"),
            left("DATE"),
            right("OUT TO VIEWERS"),
            right("OUT TO ORIGIN"),
            right("HTTP REQ"),
            right("HTTPS REQ"),
            right("INVALIDATION PATHS"),
        ],
        &rows,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};
    use std::sync::{Arc, Mutex};

    #[derive(Parser, Debug)]
    #[command(name = "mediaedge")]
    struct TestCli {
        #[command(subcommand)]
        command: AdminCommand,
    }

    fn parse(args: &[&str]) -> AdminCommand {
        let mut all = vec!["mediaedge"];
        all.extend_from_slice(args);
        match TestCli::try_parse_from(all) {
            Ok(c) => c.command,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    /// A fresh empty folder under the system temp dir.
    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("mediaedge-cli-{name}-{}-{}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn the_commands_are_well_formed() {
        TestCli::command().debug_assert();
        let help = TestCli::command().find_subcommand_mut("distribution").expect("distribution").render_long_help();
        assert!(help.to_string().contains("7  invalidate --wait timed out"), "{help}");
    }

    #[test]
    fn arguments_parse() {
        match parse(&["invalidate", "--distribution", "E1", "--paths", "/a/*", "/b", "--wait", "--json"]) {
            AdminCommand::Invalidate { options, distribution, paths, wait, timeout, caller_reference } => {
                assert_eq!(distribution, "E1");
                assert_eq!(paths, ["/a/*", "/b"]);
                assert!(wait && options.json);
                assert_eq!(timeout, 60.0);
                assert!(caller_reference.is_none());
                assert_eq!(options.state_dir, Path::new(".mediaedge"));
            }
            other => panic!("{other:?}"),
        }
        // Common options go before or after the subcommand.
        match parse(&["distribution", "--admin", "http://h:1", "list", "--token", "t"]) {
            AdminCommand::Distribution { options, command: DistributionCommand::List } => {
                assert_eq!(options.admin.as_deref(), Some("http://h:1"));
                assert_eq!(options.token.as_deref(), Some("t"));
            }
            other => panic!("{other:?}"),
        }
        let cmd = parse(&["distribution", "update", "E1", "--add-alias", "a.example", "--add-alias", "b.example"]);
        assert_eq!(cmd.name(), "distribution update");
        assert!(
            TestCli::try_parse_from(["mediaedge", "distribution", "create"]).is_err(),
            "needs --config or --origin"
        );
        assert!(TestCli::try_parse_from([
            "mediaedge",
            "distribution",
            "create",
            "--config",
            "a.toml",
            "--origin",
            "http://o"
        ])
        .is_err());
        assert!(TestCli::try_parse_from(["mediaedge", "invalidate", "--distribution", "E1"]).is_err(), "needs paths");
        assert_eq!(parse(&["export-config", "-o", "x.toml"]).name(), "export-config");
        assert_eq!(parse(&["invalidation", "get", "--distribution", "E1", "I1"]).name(), "invalidation get");
    }

    #[test]
    fn exit_codes_follow_the_status() {
        assert_eq!(Exit::for_status(400).code(), 1);
        assert_eq!(Exit::for_status(401).code(), 6);
        assert_eq!(Exit::for_status(404).code(), 4);
        for s in [409, 412, 428] {
            assert_eq!(Exit::for_status(s).code(), 5);
        }
        assert_eq!(Exit::for_status(413).code(), 1);
        assert_eq!(Exit::for_status(500).code(), 1);
        assert_eq!((Exit::Usage.code(), Exit::Unreachable.code(), Exit::WaitTimeout.code()), (2, 3, 7));
    }

    #[test]
    fn failures_render_message_code_and_hints() {
        let f = Failure { exit: Exit::Conflict, message: "it is enabled".into(), api_code: Some("X".into()) };
        assert_eq!(f.render(), "it is enabled (X)");
        assert_eq!(f.hint("disable it").render(), "it is enabled (X)\n  disable it");
        assert_eq!(Failure::usage("bad").render(), "bad");
    }

    #[test]
    fn tables_align_and_do_not_trail() {
        let t = table(
            &[left("ID"), right("N"), left("NOTE")],
            &[vec!["E1".into(), "5".into(), "".into()], vec!["E22222".into(), "1234".into(), "café".into()]],
        );
        assert_eq!(t, "ID         N  NOTE\nE1         5\nE22222  1234  café\n");
        assert_eq!(table(&[left("A"), left("B")], &[]), "A  B\n");
        assert_eq!(
            key_values(&[("id", "E1".into()), ("domain name", "d.x".into()), ("paths", "/a\n/b".into())]),
            "id           E1\ndomain name  d.x\npaths        /a\n             /b\n"
        );
    }

    fn distribution_json() -> Value {
        json!({
            "id": "E2QWRUHAPOMQZL", "domain_name": "dabcdefghijklm.edge.mediaedge.invalid", "status": "Deployed",
            "enabled": true, "comment": "live", "aliases": ["video.example.com", "*.cdn.example.com"],
            "etag": "ETAG1", "created_time": "2026-11-22T02:50:00Z", "last_modified_time": "2026-11-22T02:51:00Z",
            "config": {
                "id": "E2QWRUHAPOMQZL", "enabled": true, "comment": "live",
                "aliases": ["video.example.com", "*.cdn.example.com"],
                "origins": [{"id": "o", "url": "http://127.0.0.1:9000", "read_timeout": "5s", "headers": {"X-A": "1"}}],
                "behaviors": [{"path": "*.m3u8", "origin": "o", "cache_key": {"query": ["a"]}, "min_ttl": 1}],
                "default_behavior": {"origin": "o", "compress": true}
            }
        })
    }

    #[test]
    fn human_output() {
        let list = json!({"quantity": 2, "items": [
            {"id": "E1", "domain_name": "d1.x", "status": "Deployed", "enabled": true, "comment": "",
             "aliases": [], "origins": ["o"], "etag": "A", "created_time": "t", "last_modified_time": "t"},
            {"id": "E2", "domain_name": "d2.x", "status": "Deployed", "enabled": false, "comment": "two words",
             "aliases": ["a.x", "b.x"], "origins": ["o", "p"], "etag": "B", "created_time": "t", "last_modified_time": "t"}
        ]});
        assert_eq!(
            distribution_table(&list),
            "ID  DOMAIN NAME  ENABLED  STATUS    ALIASES   ORIGINS  COMMENT\n\
             E1  d1.x         yes      Deployed  -         o\n\
             E2  d2.x         no       Deployed  a.x, b.x  o, p     two words\n"
        );
        let details = distribution_details(&distribution_json());
        assert!(details.starts_with("id             E2QWRUHAPOMQZL\ndomain name    dabcdefghijklm"), "{details}");
        assert!(details.contains("\naliases        video.example.com, *.cdn.example.com\n"), "{details}");
        // The configuration part is TOML a config file would hold, in the usual order.
        let toml_part = details.split("# configuration\n").nth(1).expect("config part");
        let back: toml::Table = toml::from_str(toml_part).unwrap_or_else(|e| panic!("{e}\n{toml_part}"));
        assert_eq!(toml_to_json(toml::Value::Table(back)), distribution_json()["config"]);
        let pos = |s: &str| toml_part.find(s).unwrap_or_else(|| panic!("{s} missing in\n{toml_part}"));
        assert!(pos("id = ") < pos("enabled = ") && pos("enabled = ") < pos("comment = "), "{toml_part}");
        assert!(pos("[[origins]]") < pos("[[behaviors]]") && pos("[[behaviors]]") < pos("[default_behavior]"));

        let stats = stats_table(&[json!({
            "distribution_id": "E1", "requests": 1000, "hit_ratio": 0.9345, "bytes_to_viewers": 3_221_225_472u64,
            "bytes_from_origin": 512, "collapsed_requests": 7, "errors": {"4xx": 3, "5xx": 1},
            "origin_latency_ms": {"count": 10, "mean": 5.0, "p50": 4.0, "p90": 9.0, "p99": 12.25}
        })]);
        assert_eq!(
            stats,
            "DISTRIBUTION  REQUESTS  HIT RATIO  BYTES OUT  BYTES FROM ORIGIN  COLLAPSED  4XX  5XX  ORIGIN P99 MS\n\
             E1                1000      93.5%    3.0 GiB              512 B          7    3    1           12.2\n"
        );
        let usage = usage_table(&json!({"from": "2026-11-01", "to": "2026-11-22", "items": [
            {"distribution_id": "E1", "date": "2026-11-21", "data_transfer_out_to_viewers_bytes": 100,
             "data_transfer_out_to_origin_bytes": 0, "http_requests": 3, "https_requests": 1, "invalidation_paths": 2},
            {"distribution_id": "E1", "date": "2026-11-22", "data_transfer_out_to_viewers_bytes": 50,
             "data_transfer_out_to_origin_bytes": 10, "http_requests": 1, "https_requests": 0, "invalidation_paths": 0}
        ]}));
        assert_eq!(
            usage,
            "usage from 2026-11-01 to 2026-11-22 (UTC days, bytes)\n\
             DISTRIBUTION  DATE        OUT TO VIEWERS  OUT TO ORIGIN  HTTP REQ  HTTPS REQ  INVALIDATION PATHS\n\
             E1            2026-11-21             100              0         3          1                   2\n\
             E1            2026-11-22              50             10         1          0                   0\n\
             TOTAL                                150             10         4          1                   2\n"
        );
        assert!(usage_table(&json!({"from": "a", "to": "b", "items": []})).contains("no usage"));

        let invs = invalidation_table(&json!({"quantity": 1, "items": [{"id": "I1", "distribution_id": "E1",
            "status": "InProgress", "caller_reference": "r", "paths": ["/a", "/b*"], "create_time": "2026-11-22T02:50:00Z",
            "completed_time": null}]}));
        assert_eq!(
            invs,
            "ID  STATUS      CREATED               PATHS  CALLER REF\nI1  InProgress  2026-11-22T02:50:00Z      2  r\n"
        );
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }

    #[test]
    fn distribution_files_in_three_forms() {
        let dir = temp_dir("files");
        std::fs::create_dir_all(dir.join("media")).unwrap();
        std::fs::write(dir.join("k.pem"), "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").unwrap();
        let bare = "id = \"E1\"\naliases = [\"a.example\"]\n\n[[origins]]\nid = \"o\"\nfolder = \"media\"\n\n\
                    [default_behavior]\norigin = \"o\"\ndefault_ttl = \"10s\"\n\n[[key_groups]]\nid = \"g\"\n\
                    keys = [{ id = \"K1\", public_key = \"k.pem\" }, { id = \"K2\", public_key = \"missing.pem\" }]\n";
        std::fs::write(dir.join("bare.toml"), bare).unwrap();
        let full = "[server]\nlisten = \"127.0.0.1:8080\"\n\n[[distributions]]\nid = \"E1\"\n\n\
                    [[distributions.origins]]\nid = \"o\"\nurl = \"http://127.0.0.1:9000\"\n\n\
                    [distributions.default_behavior]\norigin = \"o\"\n";
        std::fs::write(dir.join("full.toml"), full).unwrap();
        std::fs::write(
            dir.join("d.json"),
            r#"{"origins": [{"id": "o", "url": "http://127.0.0.1:9000"}], "default_behavior": {"origin": "o"}}"#,
        )
        .unwrap();

        let v = read_distribution_file(&dir.join("bare.toml")).expect("bare table");
        assert_eq!(v["id"], "E1");
        assert_eq!(v["default_behavior"]["default_ttl"], "10s");
        let folder = v["origins"][0]["folder"].as_str().unwrap();
        assert!(Path::new(folder).is_absolute() && Path::new(folder).ends_with("media"), "{folder}");
        assert!(v["key_groups"][0]["keys"][0]["public_key"].as_str().unwrap().starts_with("-----BEGIN PUBLIC KEY"));
        let missing = v["key_groups"][0]["keys"][1]["public_key"].as_str().unwrap();
        assert!(Path::new(missing).is_absolute() && missing.ends_with("missing.pem"), "{missing}");

        let v = read_distribution_file(&dir.join("full.toml")).expect("full config");
        assert_eq!(
            v,
            json!({"id": "E1", "origins": [{"id": "o", "url": "http://127.0.0.1:9000"}], "default_behavior": {"origin": "o"}})
        );
        let v = read_distribution_file(&dir.join("d.json")).expect("json");
        assert_eq!(v["origins"][0]["url"], "http://127.0.0.1:9000");

        // Errors are bad input (exit 2) and name the file.
        std::fs::write(dir.join("two.toml"), format!("{full}\n[[distributions]]\nid = \"E2\"\n")).unwrap();
        std::fs::write(dir.join("bad.toml"), "id = \n").unwrap();
        std::fs::write(dir.join("bad.json"), "[1, 2]").unwrap();
        for (file, needle) in [
            ("two.toml", "exactly one"),
            ("bad.toml", "not valid TOML"),
            ("bad.json", "JSON object"),
            ("nope.toml", "cannot read"),
        ] {
            let e = read_distribution_file(&dir.join(file)).expect_err(file);
            assert_eq!(e.exit, Exit::Usage, "{file}");
            assert!(e.message.contains(needle) && e.message.contains(file), "{file}: {}", e.message);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_quick_form() {
        let v = quick_config("http://127.0.0.1:9000/base", &["a.example".into()], Some("demo"), Some("E1")).unwrap();
        assert_eq!(
            v,
            json!({"id": "E1", "comment": "demo", "aliases": ["a.example"],
                   "origins": [{"id": "origin", "url": "http://127.0.0.1:9000/base"}],
                   "default_behavior": {"origin": "origin"}})
        );
        let dir = temp_dir("quick");
        let v = quick_config(dir.to_str().unwrap(), &[], None, None).unwrap();
        assert_eq!(v["origins"][0]["folder"], dir.to_str().unwrap());
        assert_eq!(v["aliases"], json!([]));
        assert!(v.get("id").is_none() && v.get("comment").is_none());
        let e = quick_config("example.com:9000", &[], None, None).unwrap_err();
        assert_eq!(e.exit, Exit::Usage);
        assert!(e.message.contains("neither"), "{}", e.message);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn edits_apply_to_the_stored_configuration() {
        let mut config = distribution_json()["config"].clone();
        let edits = Edits {
            origin: Some("https://origin.example/v2".into()),
            comment: Some("new".into()),
            add_aliases: vec!["new.example".into(), "VIDEO.example.com".into()],
            remove_aliases: vec!["*.cdn.example.com".into()],
        };
        apply_edits(&mut config, &edits).unwrap();
        assert_eq!(config["origins"][0]["url"], "https://origin.example/v2");
        assert_eq!(config["origins"][0]["read_timeout"], "5s", "other origin settings are kept");
        assert_eq!(config["comment"], "new");
        assert_eq!(config["aliases"], json!(["video.example.com", "new.example"]));
        let e = apply_edits(&mut config, &Edits { remove_aliases: vec!["x.example".into()], ..Edits::default() })
            .unwrap_err();
        assert_eq!(e.exit, Exit::Usage);
    }

    #[test]
    fn urls_tokens_and_dates() {
        assert_eq!(normalize_base_url("http://127.0.0.1:8081/").unwrap(), "http://127.0.0.1:8081");
        assert_eq!(normalize_base_url("127.0.0.1:9").unwrap(), "http://127.0.0.1:9");
        assert_eq!(normalize_base_url("http://h/admin/").unwrap(), "http://h/admin");
        assert_eq!(normalize_base_url("https://h").unwrap_err().exit, Exit::Usage);
        assert_eq!(normalize_base_url("http://h/?x=1").unwrap_err().exit, Exit::Usage);

        let dir = temp_dir("token");
        let (t, src) = find_token(None, None, &dir);
        assert!(t.is_none());
        assert!(matches!(&src, TokenSource::Missing { why, .. } if why == "does not exist"), "{src:?}");
        assert!(src.explain("http://x").contains("admin.token does not exist"));
        std::fs::write(dir.join("admin.token"), "file-token\n").unwrap();
        assert_eq!(
            find_token(None, None, &dir),
            (Some("file-token".into()), TokenSource::File(dir.join("admin.token")))
        );
        assert_eq!(find_token(None, Some("env-token".into()), &dir), (Some("env-token".into()), TokenSource::Env));
        assert_eq!(find_token(Some("flag"), Some("env".into()), &dir), (Some("flag".into()), TokenSource::Flag));
        let _ = std::fs::remove_dir_all(&dir);

        assert!(is_date("2026-11-01"));
        for bad in ["2026-13-01", "2026-1-01", "20261101", "2026-11-0x", "2026-11-00"] {
            assert!(!is_date(bad), "{bad}");
        }
        let (a, b) = (fresh_caller_reference(), fresh_caller_reference());
        assert_ne!(a, b);
    }

    // -----------------------------------------------------------------------
    // Against a scripted admin API on 127.0.0.1.

    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        uri: String,
        if_match: Option<String>,
        authorization: Option<String>,
        body: String,
    }

    type Script = dyn Fn(&str, &str, usize) -> (u16, String) + Send + Sync;

    struct MockApi {
        url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for MockApi {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl MockApi {
        /// `script(method, path, n)` answers the n-th request (from 0).
        async fn start(script: Box<Script>) -> MockApi {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
            let script: Arc<Script> = Arc::from(script);
            let (seen2, script2) = (seen.clone(), script.clone());
            let task = tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let (seen, script) = (seen2.clone(), script2.clone());
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                            let (seen, script) = (seen.clone(), script.clone());
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                                let header = |n: http::header::HeaderName| {
                                    parts.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string)
                                };
                                let n = {
                                    let mut seen = seen.lock().unwrap();
                                    seen.push(Seen {
                                        method: parts.method.to_string(),
                                        uri: parts.uri.to_string(),
                                        if_match: header(http::header::IF_MATCH),
                                        authorization: header(http::header::AUTHORIZATION),
                                        body: String::from_utf8_lossy(&body).into_owned(),
                                    });
                                    seen.len() - 1
                                };
                                let (status, body) = script(parts.method.as_str(), parts.uri.path(), n);
                                Ok::<_, std::convert::Infallible>(
                                    http::Response::builder()
                                        .status(status)
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(body)))
                                        .unwrap(),
                                )
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
            MockApi { url, seen, task }
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }

        async fn run(&self, args: &[&str]) -> Result<String, Failure> {
            let mut all: Vec<&str> = args.to_vec();
            all.extend_from_slice(&["--admin", &self.url, "--token", "secret"]);
            execute(parse(&all)).await
        }
    }

    fn api_error(code: &str, message: &str) -> String {
        json!({"error": {"code": code, "message": message, "field": null}}).to_string()
    }

    #[tokio::test]
    async fn update_sends_the_etag_it_read() {
        let api = MockApi::start(Box::new(|method, _path, _n| match method {
            "GET" => (200, distribution_json().to_string()),
            _ => {
                let mut d = distribution_json();
                d["etag"] = json!("ETAG2");
                (200, d.to_string())
            }
        }))
        .await;
        let out = api.run(&["distribution", "update", "E2QWRUHAPOMQZL", "--comment", "changed"]).await.unwrap();
        assert!(out.contains("etag         ETAG2"), "{out}");
        let seen = api.seen();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!((seen[0].method.as_str(), seen[0].uri.as_str()), ("GET", "/v1/distributions/E2QWRUHAPOMQZL"));
        assert_eq!(seen[0].authorization.as_deref(), Some("Bearer secret"));
        assert_eq!(seen[1].method, "PUT");
        assert_eq!(seen[1].if_match.as_deref(), Some("\"ETAG1\""));
        let sent: Value = serde_json::from_str(&seen[1].body).unwrap();
        let mut expected = distribution_json()["config"].clone();
        expected["comment"] = json!("changed");
        assert_eq!(sent, expected);

        // --if-match wins over the ETag read.
        api.run(&["distribution", "update", "E2QWRUHAPOMQZL", "--comment", "x", "--if-match", "\"OLD\""])
            .await
            .unwrap();
        assert_eq!(api.seen()[3].if_match.as_deref(), Some("\"OLD\""));
    }

    #[tokio::test]
    async fn api_errors_map_to_exit_codes_and_advice() {
        let api = MockApi::start(Box::new(|method, path, _n| match (method, path) {
            ("GET", "/v1/distributions/E1") => (200, distribution_json().to_string()),
            ("DELETE", _) => (409, api_error("DistributionNotDisabled", "disable the distribution first")),
            ("GET", "/v1/stats") => (401, api_error("Unauthorized", "a valid bearer token is required")),
            ("GET", "/v1/usage") => (502, "<html>bad gateway</html>".into()),
            _ => (404, api_error("NoSuchDistribution", "no distribution E9")),
        }))
        .await;
        let e = api.run(&["distribution", "delete", "E1"]).await.unwrap_err();
        assert_eq!(e.exit.code(), 5);
        assert_eq!(
            e.render(),
            "disable the distribution first (DistributionNotDisabled)\n  disable it first: mediaedge distribution disable E1"
        );
        assert_eq!(api.seen()[1].if_match.as_deref(), Some("\"ETAG1\""));

        let e = api.run(&["stats"]).await.unwrap_err();
        assert_eq!(e.exit.code(), 6);
        assert!(e.render().contains("the token given with --token was refused"), "{}", e.render());

        let e = api.run(&["distribution", "get", "E9"]).await.unwrap_err();
        assert_eq!((e.exit.code(), e.render().as_str()), (4, "no distribution E9 (NoSuchDistribution)"));

        let e = api.run(&["usage", "--from", "2026-11-01"]).await.unwrap_err();
        assert_eq!(e.exit.code(), 1);
        assert!(e.message.starts_with("HTTP 502 from http://127.0.0.1:") && e.message.contains("not an answer"));
        assert_eq!(api.seen().last().unwrap().uri, "/v1/usage?from=2026-11-01");

        let e = api.run(&["usage", "--to", "yesterday"]).await.unwrap_err();
        assert_eq!(e.exit, Exit::Usage);
    }

    #[tokio::test]
    async fn invalidate_waits_for_completion() {
        let inv = |status: &str| {
            json!({"id": "I1", "distribution_id": "E1", "status": status, "caller_reference": "ref-1",
                   "paths": ["/a/*"], "create_time": "2026-11-22T02:50:00Z",
                   "completed_time": if status == "Completed" { json!("2026-11-22T02:50:01Z") } else { Value::Null }})
            .to_string()
        };
        let api = MockApi::start(Box::new(move |method, _path, n| match (method, n) {
            ("POST", _) => (201, inv("InProgress")),
            (_, 1) => (200, inv("InProgress")),
            _ => (200, inv("Completed")),
        }))
        .await;
        let out = api
            .run(&["invalidate", "--distribution", "E1", "--paths", "/a/*", "--caller-reference", "ref-1", "--wait"])
            .await
            .unwrap();
        assert!(out.contains("status            Completed"), "{out}");
        let seen = api.seen();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].uri, "/v1/distributions/E1/invalidations");
        assert_eq!(
            serde_json::from_str::<Value>(&seen[0].body).unwrap(),
            json!({"paths": ["/a/*"], "caller_reference": "ref-1"})
        );
        assert_eq!(seen[2].uri, "/v1/distributions/E1/invalidations/I1");

        let slow = MockApi::start(Box::new(move |method, _path, _n| match method {
            "POST" => (201, inv("InProgress")),
            _ => (200, inv("InProgress")),
        }))
        .await;
        let e = slow
            .run(&["invalidate", "--distribution", "E1", "--paths", "/a", "--wait", "--timeout", "0.5"])
            .await
            .unwrap_err();
        assert_eq!(e.exit.code(), 7, "{e:?}");
        let body: Value = serde_json::from_str(&slow.seen()[0].body).unwrap();
        assert!(body["caller_reference"].as_str().is_some_and(|r| !r.is_empty()), "a fresh caller reference");
    }

    #[tokio::test]
    async fn an_absent_api_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let e = execute(parse(&["distribution", "list", "--admin", &url, "--token", "t"])).await.unwrap_err();
        assert_eq!(e.exit.code(), 3);
        assert!(e.message.contains(&url) && e.message.contains("mediaedge serve"), "{}", e.message);
    }
}
