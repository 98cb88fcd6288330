//! Durable control-plane state in an embedded transactional store.
//!
//! One redb database file, `<dir>/state.redb`, holds the distributions, their
//! invalidations and daily usage. Records are JSON values. Every mutating method
//! is one write transaction, committed with redb's default durability (fsync'd
//! before `commit` returns), so a change that was accepted survives a crash.
//! The methods block on disk I/O: call them off the async reactor.

mod clock;
mod records;
mod spool;
#[cfg(test)]
mod tests;

pub use clock::{now_ms, rfc3339, utc_day};
pub use records::{DistributionRecord, InvalidationRecord, InvalidationStatus, SeedMark, SeedOutcome, UsageCounters};
pub use spool::UsageRow;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard};

use redb::{
    Database, DatabaseError, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// CloudFront's limit, per distribution, on paths without `*` in invalidations
/// InProgress plus the new one.
pub const MAX_PATHS_IN_PROGRESS: usize = 3000;
/// CloudFront's limit, per distribution, on paths containing `*` in invalidations
/// InProgress plus the new one.
pub const MAX_WILDCARDS_IN_PROGRESS: usize = 15;

const FILE_NAME: &str = "state.redb";
const SCHEMA_VERSION: u64 = 1;
const SCHEMA_VERSION_KEY: &str = "schema_version";

/// `schema_version` -> the layout version of the tables below.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// distribution id -> [`DistributionRecord`] (JSON).
const DISTRIBUTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("distributions");
/// distribution id -> seed hash of the configuration-file version last seeded.
/// Kept when the distribution is deleted, so the same file text does not bring it back.
const SEEDS: TableDefinition<&str, &str> = TableDefinition::new("seeds");
/// distribution id -> what seeded it last ("the built-in demo", "--origin", a
/// file's path), for messages. Marks made before this table existed have none.
const SEED_SOURCES: TableDefinition<&str, &str> = TableDefinition::new("seed_sources");
/// (distribution id, invalidation id) -> [`InvalidationRecord`] (JSON).
const INVALIDATIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("invalidations");
/// (distribution id, invalidation id) -> (): the invalidations still InProgress.
const IN_PROGRESS: TableDefinition<(&str, &str), ()> = TableDefinition::new("in_progress");
/// (distribution id, caller reference) -> invalidation id.
const CALLER_REFERENCES: TableDefinition<(&str, &str), &str> = TableDefinition::new("caller_references");
/// (distribution id, UTC day "YYYY-MM-DD") -> [`UsageCounters`] (JSON).
const USAGE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("usage");

/// The control-plane state of one edge, in `<dir>/state.redb`.
pub struct StateStore {
    /// `None` while suspended (handed to a new process during an upgrade).
    db: RwLock<Option<Database>>,
    path: PathBuf,
}

#[derive(Debug)]
pub enum StateError {
    /// The database cannot be opened or created (the message names the path and the cause).
    Open(String),
    /// A storage or serialization failure during an operation.
    Storage(String),
    /// No such distribution or invalidation.
    NotFound,
    /// `create_distribution` with an id that exists.
    AlreadyExists,
    /// The If-Match etag is not the current one.
    EtagMismatch { current: String },
    /// The caller reference was used before, for different paths. (Boxed: it
    /// would otherwise make every `Result<_, StateError>` several times larger.)
    CallerReferenceReused { existing: Box<InvalidationRecord> },
    /// The new invalidation would exceed a per-distribution limit on paths in progress.
    TooManyInProgress { wildcard: bool, in_progress: usize, requested: usize, limit: usize },
    /// The store is closed while a new process takes over (an upgrade).
    Suspended,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Open(message) => write!(f, "{message}"),
            StateError::Storage(message) => write!(f, "state storage failed: {message}"),
            StateError::NotFound => write!(f, "no such distribution or invalidation"),
            StateError::Suspended => write!(f, "the state is being handed to a new edge process (an upgrade)"),
            StateError::AlreadyExists => write!(f, "a distribution with this id already exists"),
            StateError::EtagMismatch { current } => {
                write!(f, "the If-Match etag is not the current one (the current etag is {current})")
            }
            StateError::CallerReferenceReused { existing } => write!(
                f,
                "caller reference {:?} was already used by invalidation {} with different paths",
                existing.caller_reference, existing.id
            ),
            StateError::TooManyInProgress { wildcard, in_progress, requested, limit } => {
                let kind = if *wildcard { "wildcard paths" } else { "paths without wildcards" };
                write!(
                    f,
                    "too many invalidation {kind} in progress: {in_progress} in progress and \
                     {requested} requested, but at most {limit} may be in progress per distribution"
                )
            }
        }
    }
}

impl std::error::Error for StateError {}

macro_rules! storage_error_from {
    ($($source:ty),*) => {$(
        impl From<$source> for StateError {
            fn from(err: $source) -> StateError {
                StateError::Storage(err.to_string())
            }
        }
    )*};
}

storage_error_from!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(value).map_err(|err| StateError::Storage(format!("cannot serialize a record: {err}")))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|err| StateError::Storage(format!("a stored record cannot be read: {err}")))
}

/// `prefix` + 13 random upper-case letters and digits.
fn random_id(prefix: char) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut id = String::with_capacity(14);
    id.push(prefix);
    for _ in 0..13 {
        id.push(char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]));
    }
    id
}

fn is_wildcard(path: &str) -> bool {
    path.contains('*')
}

fn check_etag(current: &DistributionRecord, if_match: Option<&str>) -> Result<(), StateError> {
    match if_match {
        Some(etag) if etag != current.etag => Err(StateError::EtagMismatch { current: current.etag.clone() }),
        _ => Ok(()),
    }
}

/// The second key elements of the rows of `distribution_id` in a
/// (distribution id, _) table, in key order.
fn keys_of<V: redb::Value + 'static>(
    table: &impl ReadableTable<(&'static str, &'static str), V>,
    distribution_id: &str,
) -> Result<Vec<String>, StateError> {
    let mut keys = Vec::new();
    for row in table.range((distribution_id, "")..)? {
        let (key, _) = row?;
        let (distribution, second) = key.value();
        if distribution != distribution_id {
            break;
        }
        keys.push(second.to_string());
    }
    Ok(keys)
}

fn get_distribution(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<DistributionRecord>, StateError> {
    match table.get(id)? {
        Some(value) => decode(value.value()).map(Some),
        None => Ok(None),
    }
}

fn get_invalidation(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    distribution_id: &str,
    id: &str,
) -> Result<Option<InvalidationRecord>, StateError> {
    match table.get((distribution_id, id))? {
        Some(value) => decode(value.value()).map(Some),
        None => Ok(None),
    }
}

fn add_usage_row(
    table: &mut redb::Table<(&'static str, &'static str), &'static [u8]>,
    distribution_id: &str,
    day: &str,
    counters: &UsageCounters,
) -> Result<(), StateError> {
    let mut total: UsageCounters = match table.get((distribution_id, day))? {
        Some(value) => decode(value.value())?,
        None => UsageCounters::default(),
    };
    total.add(counters);
    table.insert((distribution_id, day), encode(&total)?.as_slice())?;
    Ok(())
}

impl StateStore {
    /// Creates `dir` (and parents) if needed and opens or creates `dir/state.redb`,
    /// creating all tables.
    pub fn open(dir: &Path) -> Result<StateStore, StateError> {
        std::fs::create_dir_all(dir)
            .map_err(|err| StateError::Open(format!("cannot create the state directory {}: {err}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = Self::open_file(&path, dir)?;
        let store = StateStore { db: RwLock::new(Some(db)), path: path.clone() };
        store.prepare().map_err(|err| match err {
            StateError::Open(message) => StateError::Open(message),
            other => StateError::Open(format!("cannot prepare the state database {}: {other}", path.display())),
        })?;
        Ok(store)
    }

    fn open_file(path: &Path, dir: &Path) -> Result<Database, StateError> {
        Database::create(path).map_err(|err| match err {
            DatabaseError::DatabaseAlreadyOpen => StateError::Open(format!(
                "cannot open the state database {}: another mediaedge running with the state directory {} \
                 holds it (locked). To run a second edge beside it, give it its own state directory \
                 with --state-dir DIR (or [admin] state_dir), its own admin port with --admin-listen ADDR \
                 (or --admin-listen off) and its own viewer port with --listen ADDR",
                path.display(),
                dir.display()
            )),
            other => StateError::Open(format!("cannot open the state database {}: {other}", path.display())),
        })
    }

    /// Closes the database file (its lock goes with it) so that a new
    /// process can open it; every call fails with `Suspended` until `resume`.
    /// Waits for the transactions in progress.
    pub fn suspend(&self) {
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        db.take();
    }

    /// Opens the file again after `suspend` (the new process did not take over).
    pub fn resume(&self) -> Result<(), StateError> {
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        if db.is_none() {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            *db = Some(Self::open_file(&self.path, dir)?);
        }
        Ok(())
    }

    /// The open database (`None` while suspended).
    fn db(&self) -> RwLockReadGuard<'_, Option<Database>> {
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates every table and checks (or records) the schema version.
    fn prepare(&self) -> Result<(), StateError> {
        self.write(|txn| {
            let mut meta = txn.open_table(META)?;
            let version = meta.get(SCHEMA_VERSION_KEY)?.map(|v| v.value());
            match version {
                Some(version) if version > SCHEMA_VERSION => {
                    return Err(StateError::Open(format!(
                        "the state database was written by a newer mediaedge \
                         (schema version {version}; this one knows up to {SCHEMA_VERSION})"
                    )));
                }
                Some(_) => {}
                None => {
                    meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)?;
                }
            }
            txn.open_table(DISTRIBUTIONS)?;
            txn.open_table(SEEDS)?;
            txn.open_table(SEED_SOURCES)?;
            txn.open_table(INVALIDATIONS)?;
            txn.open_table(IN_PROGRESS)?;
            txn.open_table(CALLER_REFERENCES)?;
            txn.open_table(USAGE)?;
            Ok(())
        })
    }

    /// Runs `f` in one write transaction, committed (durably) only if `f` succeeds.
    fn write<T>(&self, f: impl FnOnce(&WriteTransaction) -> Result<T, StateError>) -> Result<T, StateError> {
        let db = self.db();
        let txn = db.as_ref().ok_or(StateError::Suspended)?.begin_write()?;
        // On an error the transaction is dropped, which aborts it.
        let value = f(&txn)?;
        txn.commit()?;
        Ok(value)
    }

    /// Runs `f` in one read transaction (a consistent snapshot).
    fn read<T>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T, StateError>) -> Result<T, StateError> {
        let db = self.db();
        let txn = db.as_ref().ok_or(StateError::Suspended)?.begin_read()?;
        f(&txn)
    }

    /// Every distribution, sorted by id.
    pub fn distributions(&self) -> Result<Vec<DistributionRecord>, StateError> {
        self.read(|txn| {
            let table = txn.open_table(DISTRIBUTIONS)?;
            let mut records = Vec::new();
            for row in table.iter()? {
                let (_, value) = row?;
                records.push(decode(value.value())?);
            }
            Ok(records)
        })
    }

    pub fn distribution(&self, id: &str) -> Result<Option<DistributionRecord>, StateError> {
        self.read(|txn| get_distribution(&txn.open_table(DISTRIBUTIONS)?, id))
    }

    /// Adds a distribution; `AlreadyExists` if the id is taken.
    pub fn create_distribution(&self, id: &str, document: &str) -> Result<DistributionRecord, StateError> {
        self.write(|txn| {
            let mut table = txn.open_table(DISTRIBUTIONS)?;
            if table.get(id)?.is_some() {
                return Err(StateError::AlreadyExists);
            }
            let now = now_ms();
            let record = DistributionRecord {
                id: id.to_string(),
                document: document.to_string(),
                etag: random_id('E'),
                created_ms: now,
                modified_ms: now,
            };
            table.insert(id, encode(&record)?.as_slice())?;
            Ok(record)
        })
    }

    /// Replaces a distribution's document (new etag). `if_match`: None is
    /// unconditional; Some(etag) must be the current etag (else `EtagMismatch`).
    /// `NotFound` if absent.
    pub fn update_distribution(
        &self,
        id: &str,
        document: &str,
        if_match: Option<&str>,
    ) -> Result<DistributionRecord, StateError> {
        self.write(|txn| {
            let mut table = txn.open_table(DISTRIBUTIONS)?;
            let current = get_distribution(&table, id)?.ok_or(StateError::NotFound)?;
            check_etag(&current, if_match)?;
            let record = DistributionRecord {
                document: document.to_string(),
                etag: random_id('E'),
                modified_ms: now_ms().max(current.created_ms),
                ..current
            };
            table.insert(id, encode(&record)?.as_slice())?;
            Ok(record)
        })
    }

    /// Deletes a distribution (same guard as `update_distribution`) with its
    /// invalidations and caller references. Its usage rows are kept (billing
    /// history), and so is its seed mark, so that the same configuration-file
    /// text does not recreate it at the next start.
    pub fn delete_distribution(&self, id: &str, if_match: Option<&str>) -> Result<(), StateError> {
        self.write(|txn| {
            let mut distributions = txn.open_table(DISTRIBUTIONS)?;
            let current = get_distribution(&distributions, id)?.ok_or(StateError::NotFound)?;
            check_etag(&current, if_match)?;
            distributions.remove(id)?;

            let mut invalidations = txn.open_table(INVALIDATIONS)?;
            for key in keys_of(&invalidations, id)? {
                invalidations.remove((id, key.as_str()))?;
            }
            let mut in_progress = txn.open_table(IN_PROGRESS)?;
            for key in keys_of(&in_progress, id)? {
                in_progress.remove((id, key.as_str()))?;
            }
            let mut references = txn.open_table(CALLER_REFERENCES)?;
            for key in keys_of(&references, id)? {
                references.remove((id, key.as_str()))?;
            }
            Ok(())
        })
    }

    /// Seeds a distribution from the configuration at start. `seed_hash`
    /// identifies the configuration's version of this distribution, `source`
    /// names where it came from. If that version was seeded before, the
    /// store's state wins (`Kept`, including a deletion made through the API);
    /// otherwise the distribution is upserted (new etag, creation time kept)
    /// and the hash recorded.
    pub fn seed_distribution(
        &self,
        id: &str,
        document: &str,
        seed_hash: &str,
        source: &str,
    ) -> Result<SeedOutcome, StateError> {
        self.write(|txn| {
            txn.open_table(SEED_SOURCES)?.insert(id, source)?;
            let mut seeds = txn.open_table(SEEDS)?;
            let seeded = seeds.get(id)?.is_some_and(|mark| mark.value() == seed_hash);
            if seeded {
                return Ok(SeedOutcome::Kept);
            }
            let mut distributions = txn.open_table(DISTRIBUTIONS)?;
            let existing = get_distribution(&distributions, id)?;
            let now = now_ms();
            let record = DistributionRecord {
                id: id.to_string(),
                document: document.to_string(),
                etag: random_id('E'),
                created_ms: existing.as_ref().map_or(now, |e| e.created_ms),
                modified_ms: now,
            };
            distributions.insert(id, encode(&record)?.as_slice())?;
            seeds.insert(id, seed_hash)?;
            Ok(if existing.is_some() { SeedOutcome::Updated } else { SeedOutcome::Inserted })
        })
    }

    /// Every seed mark, sorted by distribution id (marks of deleted
    /// distributions included).
    pub fn seed_marks(&self) -> Result<Vec<SeedMark>, StateError> {
        self.read(|txn| {
            let seeds = txn.open_table(SEEDS)?;
            let sources = txn.open_table(SEED_SOURCES)?;
            let mut marks = Vec::new();
            for row in seeds.iter()? {
                let (id, hash) = row?;
                let source = sources.get(id.value())?.map(|s| s.value().to_string());
                marks.push(SeedMark { id: id.value().to_string(), hash: hash.value().to_string(), source });
            }
            Ok(marks)
        })
    }

    /// Records a new InProgress invalidation, or returns the one made earlier
    /// with the same caller reference and paths (`false`: not new). A caller
    /// reference reused with other paths is `CallerReferenceReused`; exceeding
    /// the in-progress limits is `TooManyInProgress` (the wildcard limit is
    /// checked first); an unknown distribution is `NotFound`. The paths are
    /// added to today's (UTC) `invalidation_paths` usage in the same transaction.
    pub fn create_invalidation(
        &self,
        distribution_id: &str,
        caller_reference: &str,
        paths: &[String],
    ) -> Result<(InvalidationRecord, bool), StateError> {
        self.write(|txn| {
            if txn.open_table(DISTRIBUTIONS)?.get(distribution_id)?.is_none() {
                return Err(StateError::NotFound);
            }
            let mut references = txn.open_table(CALLER_REFERENCES)?;
            let mut invalidations = txn.open_table(INVALIDATIONS)?;
            let earlier = references.get((distribution_id, caller_reference))?.map(|id| id.value().to_string());
            if let Some(earlier) = earlier {
                let existing = get_invalidation(&invalidations, distribution_id, &earlier)?.ok_or_else(|| {
                    StateError::Storage(format!(
                        "caller reference {caller_reference:?} names invalidation {earlier}, \
                             which is not stored"
                    ))
                })?;
                return if existing.paths == paths {
                    Ok((existing, false))
                } else {
                    Err(StateError::CallerReferenceReused { existing: Box::new(existing) })
                };
            }

            let mut in_progress = txn.open_table(IN_PROGRESS)?;
            let (mut wildcards, mut plain) = (0usize, 0usize);
            for id in keys_of(&in_progress, distribution_id)? {
                if let Some(record) = get_invalidation(&invalidations, distribution_id, &id)? {
                    let w = record.paths.iter().filter(|p| is_wildcard(p)).count();
                    wildcards += w;
                    plain += record.paths.len() - w;
                }
            }
            let requested_wildcards = paths.iter().filter(|p| is_wildcard(p)).count();
            let requested_plain = paths.len() - requested_wildcards;
            if wildcards + requested_wildcards > MAX_WILDCARDS_IN_PROGRESS {
                return Err(StateError::TooManyInProgress {
                    wildcard: true,
                    in_progress: wildcards,
                    requested: requested_wildcards,
                    limit: MAX_WILDCARDS_IN_PROGRESS,
                });
            }
            if plain + requested_plain > MAX_PATHS_IN_PROGRESS {
                return Err(StateError::TooManyInProgress {
                    wildcard: false,
                    in_progress: plain,
                    requested: requested_plain,
                    limit: MAX_PATHS_IN_PROGRESS,
                });
            }

            let mut id = random_id('I');
            while invalidations.get((distribution_id, id.as_str()))?.is_some() {
                id = random_id('I');
            }
            let now = now_ms();
            let record = InvalidationRecord {
                id,
                distribution_id: distribution_id.to_string(),
                caller_reference: caller_reference.to_string(),
                paths: paths.to_vec(),
                status: InvalidationStatus::InProgress,
                create_ms: now,
                completed_ms: None,
            };
            let key = (distribution_id, record.id.as_str());
            invalidations.insert(key, encode(&record)?.as_slice())?;
            in_progress.insert(key, ())?;
            references.insert((distribution_id, caller_reference), record.id.as_str())?;

            let counted = UsageCounters { invalidation_paths: paths.len() as u64, ..UsageCounters::default() };
            let mut usage = txn.open_table(USAGE)?;
            add_usage_row(&mut usage, distribution_id, &utc_day(now / 1000), &counted)?;
            Ok((record, true))
        })
    }

    /// Marks an invalidation Completed (a completed one is returned unchanged).
    pub fn complete_invalidation(&self, distribution_id: &str, id: &str) -> Result<InvalidationRecord, StateError> {
        self.write(|txn| {
            let mut invalidations = txn.open_table(INVALIDATIONS)?;
            let mut record = get_invalidation(&invalidations, distribution_id, id)?.ok_or(StateError::NotFound)?;
            if record.status == InvalidationStatus::Completed {
                return Ok(record);
            }
            record.status = InvalidationStatus::Completed;
            record.completed_ms = Some(now_ms().max(record.create_ms));
            invalidations.insert((distribution_id, id), encode(&record)?.as_slice())?;
            txn.open_table(IN_PROGRESS)?.remove((distribution_id, id))?;
            Ok(record)
        })
    }

    pub fn invalidation(&self, distribution_id: &str, id: &str) -> Result<Option<InvalidationRecord>, StateError> {
        self.read(|txn| get_invalidation(&txn.open_table(INVALIDATIONS)?, distribution_id, id))
    }

    /// A distribution's invalidations, newest first (by `create_ms`, then id), at most `max`.
    pub fn invalidations(&self, distribution_id: &str, max: usize) -> Result<Vec<InvalidationRecord>, StateError> {
        let mut records = self.read(|txn| {
            let table = txn.open_table(INVALIDATIONS)?;
            let mut records: Vec<InvalidationRecord> = Vec::new();
            for row in table.range((distribution_id, "")..)? {
                let (key, value) = row?;
                if key.value().0 != distribution_id {
                    break;
                }
                records.push(decode(value.value())?);
            }
            Ok(records)
        })?;
        records.sort_by(|a, b| (b.create_ms, &b.id).cmp(&(a.create_ms, &a.id)));
        records.truncate(max);
        Ok(records)
    }

    /// Every invalidation of every distribution (for the disk tier, whose
    /// objects written before an invalidation must not come back at start).
    pub fn all_invalidations(&self) -> Result<Vec<InvalidationRecord>, StateError> {
        self.read(|txn| {
            let table = txn.open_table(INVALIDATIONS)?;
            let mut records: Vec<InvalidationRecord> = Vec::new();
            for row in table.iter()? {
                let (_, value) = row?;
                records.push(decode(value.value())?);
            }
            Ok(records)
        })
    }

    /// Every InProgress invalidation of every distribution, oldest first: the
    /// work to resume after a restart.
    pub fn in_progress_invalidations(&self) -> Result<Vec<InvalidationRecord>, StateError> {
        let mut records = self.read(|txn| {
            let in_progress = txn.open_table(IN_PROGRESS)?;
            let invalidations = txn.open_table(INVALIDATIONS)?;
            let mut records: Vec<InvalidationRecord> = Vec::new();
            for row in in_progress.iter()? {
                let (key, _) = row?;
                let (distribution_id, id) = key.value();
                if let Some(record) = get_invalidation(&invalidations, distribution_id, id)? {
                    records.push(record);
                }
            }
            Ok(records)
        })?;
        records.sort_by(|a, b| (a.create_ms, &a.id).cmp(&(b.create_ms, &b.id)));
        Ok(records)
    }

    /// Adds counters to (distribution, day) rows in one transaction; `day` is
    /// "YYYY-MM-DD" (UTC).
    pub fn add_usage(&self, rows: &[(String, String, UsageCounters)]) -> Result<(), StateError> {
        if rows.iter().all(|(_, _, counters)| counters.is_zero()) {
            return Ok(());
        }
        self.write(|txn| {
            let mut usage = txn.open_table(USAGE)?;
            for (distribution_id, day, counters) in rows {
                if !counters.is_zero() {
                    add_usage_row(&mut usage, distribution_id, day, counters)?;
                }
            }
            Ok(())
        })
    }

    /// Usage rows with `from_day <= day <= to_day` for one distribution or all,
    /// sorted by (distribution, day).
    pub fn usage(
        &self,
        distribution_id: Option<&str>,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<(String, String, UsageCounters)>, StateError> {
        if from_day > to_day {
            return Ok(Vec::new());
        }
        self.read(|txn| {
            let table = txn.open_table(USAGE)?;
            let mut rows = Vec::new();
            let range = match distribution_id {
                Some(id) => table.range((id, from_day)..=(id, to_day))?,
                None => table.iter()?,
            };
            for row in range {
                let (key, value) = row?;
                let (distribution, day) = key.value();
                if day < from_day || day > to_day {
                    continue;
                }
                rows.push((distribution.to_string(), day.to_string(), decode(value.value())?));
            }
            Ok(rows)
        })
    }
}
