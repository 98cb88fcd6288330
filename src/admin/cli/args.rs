//! The command line of the admin commands: options and subcommands (clap).

use super::*;
use std::path::PathBuf;

/// The `--help` heading of the options every admin command takes.
pub(super) const OPTIONS_HEADING: &str = "Admin API options";

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

    pub(super) fn options(&self) -> &AdminOptions {
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
