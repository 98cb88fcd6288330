//! Usage counted while the database is handed to a new process.
//!
//! During an upgrade the old process closes the database (`suspend`) and goes
//! on serving the responses it had started. What those count cannot go into
//! the database, which the new process now holds, so it is written beside it,
//! one small file per flush (`usage-spool/*.json`, written under another name
//! and renamed, so a reader never sees half a file). Whichever process holds
//! the database next adds the files to it at its next flush and removes them.

use super::records::UsageCounters;
use super::{StateError, StateStore};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const SPOOL_DIR: &str = "usage-spool";
/// More than this many bytes in one file is not usage this edge wrote.
const MAX_FILE: u64 = 16 << 20;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// One row: distribution, UTC day, counters.
pub type UsageRow = (String, String, UsageCounters);

impl StateStore {
    fn spool_dir(&self) -> PathBuf {
        self.path.parent().unwrap_or(Path::new(".")).join(SPOOL_DIR)
    }

    /// Writes rows for the next holder of the database to add (works while
    /// the database is suspended: it only writes a file).
    pub fn spool_usage(&self, rows: &[UsageRow]) -> Result<(), String> {
        let dir = self.spool_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let name = format!("{}-{}-{}", std::process::id(), super::now_ms(), SEQ.fetch_add(1, Ordering::Relaxed));
        let part = dir.join(format!("{name}.part"));
        let done = dir.join(format!("{name}.json"));
        let text = serde_json::to_vec(rows).map_err(|e| e.to_string())?;
        std::fs::write(&part, text).map_err(|e| format!("cannot write {}: {e}", part.display()))?;
        std::fs::rename(&part, &done).map_err(|e| format!("cannot rename {}: {e}", part.display()))
    }

    /// Adds every spooled file to the database and removes it; returns how
    /// many files were taken. Each file is renamed before it is read, so two
    /// processes never both add it; a file that cannot be read as usage is
    /// set aside (renamed `.bad`) with a log line, never added.
    pub fn take_spooled_usage(&self) -> Result<usize, StateError> {
        if self.db().is_none() {
            return Err(StateError::Suspended);
        }
        let Ok(entries) = std::fs::read_dir(self.spool_dir()) else { return Ok(0) };
        let mut taken = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let taking = path.with_extension("taking");
            if std::fs::rename(&path, &taking).is_err() {
                continue; // another process took it
            }
            let rows = match read_rows(&taking) {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!("spooled usage {} set aside: {e}", path.display());
                    let _ = std::fs::rename(&taking, path.with_extension("bad"));
                    continue;
                }
            };
            if let Err(e) = self.add_usage(&rows) {
                let _ = std::fs::rename(&taking, &path);
                return Err(e);
            }
            if let Err(e) = std::fs::remove_file(&taking) {
                tracing::warn!("spooled usage {} was added; cannot remove it: {e}", taking.display());
            }
            taken += 1;
        }
        Ok(taken)
    }
}

fn read_rows(path: &Path) -> Result<Vec<UsageRow>, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_FILE {
        return Err(format!("{len} bytes"));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}
