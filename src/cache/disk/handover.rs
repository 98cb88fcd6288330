//! Handing the disk tier's directory to a new process (an upgrade) and, if
//! the new process does not take over, taking it back.
//!
//! The directory is held with an exclusive `flock` on its `lock` file. To
//! hand it over, this process stops reading and writing it, lets the writer
//! finish what was queued, and lets go of the lock; the new process then
//! opens the directory as at any start (its index rebuilt from the segments).

use super::{DiskStore, Job};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::sync_channel;
use std::time::Duration;

/// The longest `suspend` waits for queued writes.
const WRITES_WAIT: Duration = Duration::from_secs(10);

/// Opens and locks `dir/lock`; fails if another edge holds it.
pub(super) fn lock(dir: &Path) -> Result<std::fs::File, String> {
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("lock"))
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(std::os::unix::io::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!("{} is in use by another running edge", dir.display()));
    }
    Ok(lock)
}

impl DiskStore {
    /// Stops using the directory and lets go of its lock: lookups miss from
    /// now on, writes still queued are dropped, and the one in progress (if
    /// any) is finished first (waiting up to 10 s).
    pub fn suspend(&self) {
        self.suspended.store(true, Ordering::Release);
        let (done, finished) = sync_channel(1);
        if self.tx.send(Job::Barrier(done)).is_ok() && finished.recv_timeout(WRITES_WAIT).is_err() {
            tracing::warn!("the disk cache's writer did not stop within {WRITES_WAIT:?}");
        }
        let mut lock = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        lock.take();
    }

    /// Takes the directory back after `suspend`, if no other process holds
    /// it. Only when nothing else wrote it meanwhile: this process's index is
    /// what it was.
    pub fn resume(&self) -> Result<(), String> {
        let mut lock = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if lock.is_none() {
            *lock = Some(self::lock(&self.config.path)?);
        }
        self.suspended.store(false, Ordering::Release);
        Ok(())
    }

    /// Whether the directory is handed over.
    pub fn is_suspended(&self) -> bool {
        self.suspended.load(Ordering::Relaxed)
    }
}
