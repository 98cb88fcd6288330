//! The control plane: the admin API (`api`), the durable state behind it
//! (`crate::state`), and live changes to the running edge.
//!
//! ```text
//! admin request → api::handle → ControlPlane (validate → store commit → routes swap)
//!                                     └→ invalidations: store → cache.invalidate → Completed
//! ```
//!
//! At start the configuration (file, demo or `--origin`) seeds the store (a
//! distribution whose text in the configuration changed is updated; one the API
//! changed since is kept), and the edge serves what the store holds, except
//! what was seeded from a source this start does not load (see `deployable`). Every accepted change is committed before
//! the API answers, so a crash loses nothing that was acknowledged.

mod api;
pub mod cli;
mod views;

/// The admin API's JSON body parsers (a distribution document, any JSON
/// body), public for the fuzz targets.
pub use views::{document as json_document, parse_json};

use crate::cache::invalidate::PathMatch;
use crate::config::{Config, ConfigError, Distribution};
use crate::lifecycle::upgrade::{self, Inherited, ListenerKind, Listening};
use crate::metrics::Registry;
use crate::proxy::Edge;
use crate::server::RunningEdge;
use crate::state::{DistributionRecord, InvalidationRecord, StateError, StateStore, UsageCounters};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often usage counters move from memory to the store.
const USAGE_FLUSH: Duration = Duration::from_secs(5);
/// How long an upgrade waits for admin requests in progress before it closes
/// the state store under them.
const ADMIN_SETTLE: Duration = Duration::from_secs(2);

/// The running edge with its control plane.
pub struct ControlledEdge {
    pub running: RunningEdge,
    pub control: Option<Arc<ControlPlane>>,
    /// The admin API's bound address.
    pub admin_addr: Option<SocketAddr>,
    /// The admin API's listening socket (a duplicate), for a handover.
    admin_listening: Option<Listening>,
    tasks: Tasks,
}

/// Background tasks, stopped on drop.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl ControlledEdge {
    /// Copies of every listening socket: viewers' and the admin API's.
    pub fn listening(&self) -> std::io::Result<Vec<Listening>> {
        let mut all = self.running.listening()?;
        if let Some(a) = &self.admin_listening {
            all.push(a.try_clone()?);
        }
        Ok(all)
    }

    /// Before a handover: usage to the store, then the store and the disk
    /// cache directory let go of, for the new process to open.
    pub fn suspend_storage(&self) {
        if let Some(c) = &self.control {
            // New admin connections wait for the next process; the requests
            // already accepted finish first (a bounded wait).
            c.accepting.send_replace(false);
            let settle = std::time::Instant::now() + ADMIN_SETTLE;
            while c.in_flight.load(std::sync::atomic::Ordering::Acquire) > 0 && std::time::Instant::now() < settle {
                std::thread::sleep(Duration::from_millis(5));
            }
            c.flush_usage();
            c.store.suspend();
        }
        if let Some(d) = self.running.edge.cache.disk() {
            d.suspend();
        }
    }

    /// The new process did not take over: the store is opened again, and the
    /// disk cache too when `disk` (nothing else opened it meanwhile).
    pub fn resume_storage(&self, disk: bool) {
        if let Some(c) = &self.control {
            if let Err(e) = c.store.resume() {
                tracing::error!("cannot open the state store again: {e}; the admin API answers 503 until a restart");
            }
            c.accepting.send_replace(true);
        }
        if let Some(d) = self.running.edge.cache.disk() {
            if !disk {
                tracing::warn!(
                    "the disk cache stays off until the next start: the new process may have changed its directory"
                );
            } else if let Err(e) = d.resume() {
                tracing::error!("cannot take the disk cache back: {e}; memory only until the next start");
            }
        }
    }

    /// After a handover: the admin API and the usage flusher stop here (the
    /// new process serves them).
    pub fn stop_control_tasks(&self) {
        for t in &self.tasks.0 {
            t.abort();
        }
    }
}

impl ControlledEdge {
    /// Runs until the listeners stop.
    pub async fn wait(self) {
        self.running.wait().await
    }

    /// Moves usage counters still in memory to the store (at shutdown).
    pub fn flush_usage(&self) {
        if let Some(c) = &self.control {
            c.flush_usage();
        }
    }

    /// Serves the distributions of a configuration loaded again (SIGHUP).
    /// The new routes are built and checked before anything changes: a
    /// configuration that does not build leaves the running one in place.
    /// With the control plane the file seeds the store first, by the same rule
    /// as a start. `[server]`, `[cache]` and `[admin]` changes take effect at
    /// the next start or upgrade.
    pub fn reload(&self, config: Config) -> Result<usize, String> {
        match &self.control {
            Some(c) => c.reload(config).map_err(|f| f.message),
            None => {
                let routes = self.running.edge.prepare(&config)?;
                self.running.edge.install(routes);
                Ok(config.distributions.len())
            }
        }
    }
}

/// Why a control-plane call failed, as the API reports it.
#[derive(Debug)]
pub struct Failure {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl Failure {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Failure {
        Failure { status, code, message: message.into(), field: None }
    }

    fn invalid(e: ConfigError) -> Failure {
        Failure { status: 400, code: "InvalidArgument", message: e.message, field: e.field }
    }

    fn no_distribution(id: &str) -> Failure {
        Failure::new(404, "NoSuchDistribution", format!("no distribution has the id {id:?}"))
    }
}

impl From<StateError> for Failure {
    fn from(e: StateError) -> Failure {
        match e {
            StateError::NotFound => Failure::new(404, "NotFound", "not found"),
            StateError::AlreadyExists => {
                Failure::new(409, "DistributionAlreadyExists", "a distribution with this id exists")
            }
            StateError::EtagMismatch { current } => Failure::new(
                412,
                "PreconditionFailed",
                format!("If-Match does not name the current ETag ({current}): the distribution changed since you read it"),
            ),
            StateError::CallerReferenceReused { existing } => Failure::new(
                409,
                "InvalidationBatchAlreadyExists",
                format!(
                    "the caller reference {:?} was used by invalidation {} with other paths",
                    existing.caller_reference, existing.id
                ),
            ),
            StateError::TooManyInProgress { wildcard, in_progress, requested, limit } => Failure::new(
                400,
                "TooManyInvalidationsInProgress",
                format!(
                    "{requested} {} path(s) requested with {in_progress} in progress: at most {limit} may be in progress per distribution",
                    if wildcard { "wildcard" } else { "individual" }
                ),
            ),
            StateError::Suspended => Failure::new(
                503,
                "ServiceUnavailable",
                "the edge is handing over to a new process (an upgrade); try again in a moment",
            ),
            e @ (StateError::Open(_) | StateError::Storage(_)) => {
                tracing::error!("state store: {e}");
                Failure::new(500, "InternalError", format!("the state store failed: {e}"))
            }
        }
    }
}

/// The control plane of one edge.
pub struct ControlPlane {
    store: StateStore,
    edge: Arc<Edge>,
    /// The live configuration. Held while a change is validated, committed and
    /// installed, so changes apply one at a time and in commit order.
    live: Mutex<Config>,
    token: String,
    /// Whether the admin listener accepts (off while an upgrade hands the
    /// store to a new process: connections wait in the listen queue for it).
    accepting: tokio::sync::watch::Sender<bool>,
    /// Admin requests being answered now.
    in_flight: std::sync::atomic::AtomicUsize,
}

impl ControlPlane {
    pub fn stats(&self) -> &Arc<Registry> {
        &self.edge.stats
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Config> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn edge_domain(&self) -> String {
        self.live().server.edge_domain.clone()
    }

    /// Whether a stored distribution is the one the edge serves.
    pub fn is_deployed(&self, record: &DistributionRecord) -> bool {
        self.live().distributions.iter().any(|d| d.id == record.id && doc_text(&d.document) == record.document)
    }

    pub fn record(&self, id: &str) -> Result<DistributionRecord, Failure> {
        self.store.distribution(id)?.ok_or_else(|| Failure::no_distribution(id))
    }

    pub fn records(&self) -> Result<Vec<DistributionRecord>, Failure> {
        Ok(self.store.distributions()?)
    }

    /// Validates a document and checks it against the other live distributions.
    fn validate(&self, live: &Config, doc: &toml::Table, id: &str) -> Result<(Arc<Distribution>, Config), Failure> {
        let dist = Config::distribution_from_document(doc, &live.server.edge_domain, &format!("distribution {id}"))
            .map_err(Failure::invalid)?;
        let dist = Arc::new(dist);
        let mut next = live.clone();
        next.distributions.retain(|d| d.id != id);
        next.distributions.push(dist.clone());
        next.distributions.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(conflict) = Config::conflicts(&next.distributions) {
            return Err(Failure::new(409, "CNAMEAlreadyExists", conflict));
        }
        Ok((dist, next))
    }

    /// Builds the routes for `next` (this checks origins too), then commits
    /// with `commit`, then swaps the routes in: new requests see the change,
    /// requests in flight finish with what they started with.
    fn apply<T>(
        &self,
        live: &mut Config,
        next: Config,
        commit: impl FnOnce() -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let routes = self.edge.prepare(&next).map_err(|e| Failure::new(400, "InvalidArgument", e))?;
        let out = commit()?;
        self.edge.install(routes);
        *live = next;
        Ok(out)
    }

    pub fn create(&self, mut doc: toml::Table) -> Result<DistributionRecord, Failure> {
        let mut live = self.live();
        let id = match doc.get("id") {
            Some(toml::Value::String(id)) => id.clone(),
            Some(_) => {
                return Err(Failure {
                    field: Some("id".into()),
                    ..Failure::new(400, "InvalidArgument", "must be a string")
                })
            }
            None => {
                let id = crate::config::new_distribution_id();
                doc.insert("id".into(), toml::Value::String(id.clone()));
                id
            }
        };
        if self.store.distribution(&id)?.is_some() {
            return Err(Failure::new(
                409,
                "DistributionAlreadyExists",
                format!("a distribution with the id {id:?} exists"),
            ));
        }
        let (dist, next) = self.validate(&live, &doc, &id)?;
        let text = doc_text(&dist.document);
        self.apply(&mut live, next, || Ok(self.store.create_distribution(&id, &text)?))
    }

    /// Replaces a distribution's configuration; `if_match` guards against lost updates.
    pub fn update(
        &self,
        id: &str,
        mut doc: toml::Table,
        if_match: Option<&str>,
    ) -> Result<DistributionRecord, Failure> {
        let mut live = self.live();
        match doc.get("id") {
            None => {
                doc.insert("id".into(), toml::Value::String(id.to_string()));
            }
            Some(toml::Value::String(s)) if s == id => {}
            Some(_) => {
                return Err(Failure {
                    field: Some("id".into()),
                    ..Failure::new(400, "InvalidArgument", format!("must be absent or {id:?}, the id in the path"))
                })
            }
        }
        let current = self.record(id)?;
        check_etag(&current, if_match)?;
        // A document read from this API shows secrets as `***`: sent back
        // unchanged, they keep their stored values.
        crate::config::s3::restore_secrets(&mut doc, &parse_doc(&current.document)?);
        let (dist, next) = self.validate(&live, &doc, id)?;
        let text = doc_text(&dist.document);
        self.apply(&mut live, next, || Ok(self.store.update_distribution(id, &text, if_match)?))
    }

    /// Enables or disables a distribution (a disabled one answers 403).
    pub fn set_enabled(&self, id: &str, enabled: bool, if_match: Option<&str>) -> Result<DistributionRecord, Failure> {
        let current = self.record(id)?;
        check_etag(&current, if_match)?;
        let mut doc = parse_doc(&current.document)?;
        doc.insert("enabled".into(), toml::Value::Boolean(enabled));
        self.update(id, doc, Some(&current.etag))
    }

    /// Deletes a disabled distribution, or one that is not served (set aside
    /// at start, or not deployed), and drops what the cache holds for it.
    pub fn delete(&self, id: &str, if_match: Option<&str>) -> Result<(), Failure> {
        let mut live = self.live();
        let current = self.record(id)?;
        check_etag(&current, if_match)?;
        let doc = parse_doc(&current.document)?;
        let served = live.distributions.iter().any(|d| d.id == id);
        if served && doc.get("enabled").and_then(toml::Value::as_bool).unwrap_or(true) {
            return Err(Failure::new(
                409,
                "DistributionNotDisabled",
                format!("distribution {id} is enabled: disable it first, then delete it"),
            ));
        }
        let mut next = live.clone();
        next.distributions.retain(|d| d.id != id);
        self.apply(&mut live, next, || Ok(self.store.delete_distribution(id, if_match.or(Some(&current.etag)))?))?;
        self.edge.cache.invalidate(id, &[PathMatch::Prefix("/".into())]);
        self.edge.stats.remove(id);
        Ok(())
    }

    /// See `ControlledEdge::reload`. Returns how many distributions are served.
    fn reload(&self, mut config: Config) -> Result<usize, Failure> {
        config.materialise().map_err(Failure::invalid)?;
        let mut live = self.live();
        // The file's own distributions must build before the store is touched.
        let mut tentative = live.clone();
        tentative.distributions = config.distributions.clone();
        self.edge.prepare(&tentative).map_err(|e| Failure::new(400, "InvalidArgument", e))?;
        let source = &config.admin.seed_source;
        for d in &config.distributions {
            let text = doc_text(&d.document);
            self.store.seed_distribution(&d.id, &text, &seed_hash(&text), source)?;
        }
        let mut next = live.clone();
        next.distributions = deployable(&self.store, &config.distributions, &live.server.edge_domain)
            .map_err(|e| Failure::new(500, "InternalError", e))?;
        let served = next.distributions.len();
        self.apply(&mut live, next, || Ok(()))?;
        Ok(served)
    }

    /// Records an invalidation (or finds the one with this caller reference)
    /// and starts it. Returns the record and whether it is new.
    pub fn invalidate(
        self: &Arc<Self>,
        distribution: &str,
        caller_reference: &str,
        paths: &[String],
    ) -> Result<(InvalidationRecord, bool), Failure> {
        self.record(distribution)?;
        let (record, created) = self.store.create_invalidation(distribution, caller_reference, paths)?;
        if created {
            self.run_invalidation(record.clone());
        }
        Ok((record, created))
    }

    /// Invalidates the cache, then marks the invalidation Completed.
    fn run_invalidation(self: &Arc<Self>, record: InvalidationRecord) {
        let control = self.clone();
        tokio::task::spawn_blocking(move || {
            let matches: Vec<PathMatch> = record.paths.iter().filter_map(|p| PathMatch::parse(p).ok()).collect();
            let n = control.edge.cache.invalidate(&record.distribution_id, &matches);
            match control.store.complete_invalidation(&record.distribution_id, &record.id) {
                Ok(_) => tracing::info!(
                    distribution = %record.distribution_id,
                    invalidation = %record.id,
                    paths = record.paths.len(),
                    objects = n,
                    "invalidation completed"
                ),
                Err(e) => tracing::error!(invalidation = %record.id, "cannot mark the invalidation completed: {e}"),
            }
        });
    }

    pub fn invalidation(&self, distribution: &str, id: &str) -> Result<InvalidationRecord, Failure> {
        self.record(distribution)?;
        self.store.invalidation(distribution, id)?.ok_or_else(|| {
            Failure::new(404, "NoSuchInvalidation", format!("distribution {distribution} has no invalidation {id:?}"))
        })
    }

    pub fn invalidations(&self, distribution: &str, max: usize) -> Result<Vec<InvalidationRecord>, Failure> {
        self.record(distribution)?;
        Ok(self.store.invalidations(distribution, max)?)
    }

    /// Usage rows from the store plus what is still in memory (counted today).
    pub fn usage(
        &self,
        distribution: Option<&str>,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, String, UsageCounters)>, Failure> {
        let mut rows = self.store.usage(distribution, from, to)?;
        let today = crate::state::utc_day(crate::state::now_ms() / 1000);
        if from <= today.as_str() && today.as_str() <= to {
            for s in self.edge.stats.all() {
                if distribution.is_some_and(|d| d != s.id()) {
                    continue;
                }
                let pending = usage_counters(s.pending_usage());
                if pending.is_zero() {
                    continue;
                }
                match rows.iter_mut().find(|(d, day, _)| d == s.id() && *day == today) {
                    Some((_, _, c)) => c.add(&pending),
                    None => rows.push((s.id().to_string(), today.clone(), pending)),
                }
            }
            rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        }
        Ok(rows)
    }

    /// Moves the usage counted in memory to the store, under today's date.
    pub fn flush_usage(&self) {
        // What a process before this one counted during its handover.
        match self.store.take_spooled_usage() {
            Ok(0) | Err(StateError::Suspended) => {}
            Ok(n) => tracing::info!("added {n} file(s) of usage counted by the process before this one"),
            Err(e) => tracing::error!("cannot add spooled usage counters: {e}"),
        }
        let today = crate::state::utc_day(crate::state::now_ms() / 1000);
        let rows: Vec<(String, String, UsageCounters)> = self
            .edge
            .stats
            .all()
            .into_iter()
            .map(|s| (s.id().to_string(), today.clone(), usage_counters(s.take_usage())))
            .filter(|(_, _, c)| !c.is_zero())
            .collect();
        if rows.is_empty() {
            return;
        }
        let stored = match self.store.add_usage(&rows) {
            // Handed to a new process (an upgrade): it adds them.
            Err(StateError::Suspended) => self.store.spool_usage(&rows).map_err(|e| e.to_string()),
            other => other.map_err(|e| e.to_string()),
        };
        if let Err(e) = stored {
            tracing::error!("cannot store usage counters: {e}");
            // Keep them in memory for the next attempt.
            for (id, _, c) in &rows {
                if let Some(s) = self.edge.stats.get(id) {
                    s.restore_usage(&crate::metrics::UsageDelta {
                        bytes_to_viewers: c.bytes_to_viewers,
                        bytes_to_origin: c.bytes_to_origin,
                        http_requests: c.http_requests,
                        https_requests: c.https_requests,
                    });
                }
            }
        }
    }

    /// The live state as a configuration file: the distributions served now
    /// (not those set aside or not deployed, which would not load together).
    pub fn export(&self) -> Result<String, Failure> {
        let live = self.live();
        let docs = live.distributions.iter().map(|d| (*d.document).clone()).collect();
        // The admin token stays out of files made from the export.
        let mut base = live.base_document.clone();
        if let Some(toml::Value::Table(admin)) = base.get_mut("admin") {
            admin.remove("token");
        }
        Ok(crate::config::export_toml(&base, docs))
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn edge(&self) -> &Arc<Edge> {
        &self.edge
    }
}

fn usage_counters(d: crate::metrics::UsageDelta) -> UsageCounters {
    UsageCounters {
        bytes_to_viewers: d.bytes_to_viewers,
        bytes_to_origin: d.bytes_to_origin,
        http_requests: d.http_requests,
        https_requests: d.https_requests,
        invalidation_paths: 0,
    }
}

/// `If-Match` against the current ETag (quoted or bare; `*` matches any).
fn check_etag(current: &DistributionRecord, if_match: Option<&str>) -> Result<(), Failure> {
    match if_match {
        None | Some("*") => Ok(()),
        Some(tag) if tag == current.etag => Ok(()),
        Some(_) => Err(StateError::EtagMismatch { current: current.etag.clone() }.into()),
    }
}

/// A stored document's canonical text.
fn doc_text(doc: &toml::Table) -> String {
    toml::to_string(doc).unwrap_or_default()
}

fn parse_doc(text: &str) -> Result<toml::Table, Failure> {
    toml::from_str(text).map_err(|e| Failure::new(500, "InternalError", format!("a stored document is not TOML: {e}")))
}

/// A seed mark for a document: FNV-1a 64 of its canonical text, in hex.
fn seed_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Starts the edge. With an admin listener: opens the state, seeds it from
/// the configuration, serves what it holds, and starts the admin API.
pub async fn start(config: Config) -> Result<ControlledEdge, String> {
    start_with(config, &mut Inherited::none()).await
}

/// `start`, taking over the listening sockets a previous process handed over
/// (see `lifecycle::upgrade`).
pub async fn start_with(mut config: Config, inherited: &mut Inherited) -> Result<ControlledEdge, String> {
    let Some(admin_listen) = config.admin.listen else {
        let running = crate::server::start_with(&config, inherited).await?;
        return Ok(ControlledEdge {
            running,
            control: None,
            admin_addr: None,
            admin_listening: None,
            tasks: Tasks(Vec::new()),
        });
    };
    // Public keys are inlined into the documents the store keeps: load the
    // files first (nothing is read again if the configuration was loaded).
    config.materialise().map_err(|e| e.to_string())?;
    let state_dir = config.admin.state_dir.clone();
    let store = StateStore::open(&state_dir).map_err(|e| e.to_string())?;
    let source = config.admin.seed_source.clone();
    for d in &config.distributions {
        let text = doc_text(&d.document);
        let outcome = store.seed_distribution(&d.id, &text, &seed_hash(&text), &source).map_err(|e| e.to_string())?;
        tracing::debug!(id = %d.id, ?outcome, "seeded from {source}");
    }
    config.distributions = deployable(&store, &config.distributions, &config.server.edge_domain)?;
    if config.cache.disk.is_some() {
        config.cache.replay = replayed(&store)?;
    }
    let running = crate::server::start_with(&config, inherited).await.map_err(|e| {
        if e.starts_with("cannot listen on") {
            format!("{e}; is another edge listening there? Give this one its own port with --listen ADDR (or [server] listen)")
        } else {
            e
        }
    })?;
    let token = match &config.admin.token {
        Some(t) => t.clone(),
        None => write_token_file(&state_dir)?,
    };
    let (listener, admin_listening) =
        upgrade::bind(inherited, ListenerKind::Admin, admin_listen).await.map_err(|e| {
            format!(
                "cannot listen on {admin_listen} (admin API): {e}; is another edge's admin API there? \
             Give this one its own with --admin-listen ADDR (or [admin] listen), or --admin-listen off"
            )
        })?;
    let admin_addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!("admin API listening on http://{admin_addr}");
    let control = Arc::new(ControlPlane {
        store,
        edge: running.edge.clone(),
        live: Mutex::new(config),
        token,
        accepting: tokio::sync::watch::channel(true).0,
        in_flight: std::sync::atomic::AtomicUsize::new(0),
    });
    for record in control.store.in_progress_invalidations().map_err(|e| e.to_string())? {
        tracing::info!(invalidation = %record.id, "resuming an invalidation that was in progress");
        control.run_invalidation(record);
    }
    let mut tasks = vec![tokio::spawn(api::serve(listener, control.clone()))];
    let flusher = control.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(USAGE_FLUSH);
        tick.tick().await;
        loop {
            tick.tick().await;
            let c = flusher.clone();
            let _ = tokio::task::spawn_blocking(move || c.flush_usage()).await;
        }
    }));
    Ok(ControlledEdge {
        running,
        control: Some(control),
        admin_addr: Some(admin_addr),
        admin_listening: Some(admin_listening),
        tasks: Tasks(tasks),
    })
}

/// Every invalidation the store holds, for the disk tier's index rebuild.
fn replayed(store: &StateStore) -> Result<Vec<crate::config::ReplayedInvalidation>, String> {
    let records = store.all_invalidations().map_err(|e| e.to_string())?;
    Ok(records
        .into_iter()
        .map(|r| crate::config::ReplayedInvalidation {
            distribution: r.distribution_id,
            paths: r.paths,
            create_ms: r.create_ms,
        })
        .collect())
}

/// What a start serves from the store, by the seeding rule (docs/admin-api.md,
/// "What a start serves"):
///
/// 1. the distributions this start's configuration seeded (in the store's
///    version: one the API changed since the same text was seeded is kept);
/// 2. distributions made or changed through the admin API, oldest first;
/// 3. not served: a distribution seeded from a source this start does not
///    load and unchanged since (set aside, kept in the store, served again when
///    its source is), one that does not validate, and one that claims a host
///    an earlier one in this order holds. The last two are logged as warnings;
///    nothing is deleted.
fn deployable(
    store: &StateStore,
    seeded_now: &[Arc<Distribution>],
    edge_domain: &str,
) -> Result<Vec<Arc<Distribution>>, String> {
    let marks: std::collections::HashMap<String, crate::state::SeedMark> =
        store.seed_marks().map_err(|e| e.to_string())?.into_iter().map(|m| (m.id.clone(), m)).collect();
    let (mut ours, mut api_made) = (Vec::new(), Vec::new());
    for r in store.distributions().map_err(|e| e.to_string())? {
        let this_start = seeded_now.iter().find(|d| d.id == r.id);
        // Seeded by this start and unchanged: the configuration's own,
        // already loaded (its files are not read again).
        if let Some(d) = this_start.filter(|d| doc_text(&d.document) == r.document) {
            ours.push(d.clone());
            continue;
        }
        let doc = match toml::from_str::<toml::Table>(&r.document) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(id = %r.id, "stored distribution is not TOML, not deployed: {e}");
                continue;
            }
        };
        let dist = match Config::distribution_from_document(&doc, edge_domain, &format!("stored distribution {}", r.id))
        {
            Ok(d) => Arc::new(d),
            Err(e) => {
                tracing::error!(id = %r.id, "stored distribution is not valid, not deployed: {e}");
                continue;
            }
        };
        if this_start.is_some() {
            ours.push(dist);
            continue;
        }
        match marks.get(&r.id) {
            Some(mark) if mark.hash == seed_hash(&r.document) => {
                let from = mark.source.as_deref().unwrap_or("an earlier configuration");
                tracing::info!(
                    id = %r.id,
                    "distribution {} is set aside: it was seeded from {from}, which this start does not load, \
                     and is unchanged since; it stays in the state (with its invalidations and usage) and is \
                     served again when {from} is",
                    r.id
                );
            }
            _ => api_made.push((r.created_ms, dist)),
        }
    }
    api_made.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
    let mut out: Vec<Arc<Distribution>> = Vec::new();
    for dist in ours.into_iter().chain(api_made.into_iter().map(|(_, d)| d)) {
        out.push(dist);
        if let Some(conflict) = Config::conflicts(&out) {
            let Some(dist) = out.pop() else { continue };
            let holder = out
                .iter()
                .find(|o| o.id == dist.id || o.aliases.iter().any(|a| dist.aliases.contains(a)))
                .map_or_else(String::new, |o| format!(" (distribution {} holds it)", o.id));
            tracing::warn!(
                id = %dist.id,
                "distribution {} is NOT served: {conflict}{holder}. It stays in the state; change its aliases \
                 or delete it through the admin API (it may be deleted without disabling it first), or start \
                 without the configuration that claims the same host",
                dist.id
            );
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Makes a random admin token and writes it where the CLI looks (owner-only).
fn write_token_file(dir: &Path) -> Result<String, String> {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let token: String = (0..40).map(|_| DIGITS[fastrand::usize(..DIGITS.len())] as char).collect();
    let path = dir.join("admin.token");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path).map_err(|e| format!("cannot write the admin token to {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut f, token.as_bytes())
        .map_err(|e| format!("cannot write the admin token to {}: {e}", path.display()))?;
    tracing::info!("admin token written to {}", path.display());
    Ok(token)
}
