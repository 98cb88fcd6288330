//! The records kept by the state store, stored as JSON values.

use serde::{Deserialize, Serialize};

/// A distribution as the control plane knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistributionRecord {
    pub id: String,
    /// The distribution's configuration as TOML text (opaque to the store).
    pub document: String,
    /// Changes on every write: `E` + 13 random upper-case letters/digits (CloudFront-style).
    pub etag: String,
    /// Unix epoch milliseconds.
    pub created_ms: u64,
    /// Unix epoch milliseconds.
    pub modified_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvalidationStatus {
    InProgress,
    Completed,
}

/// One invalidation request: a batch of paths purged from a distribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidationRecord {
    /// `I` + 13 random upper-case letters/digits.
    pub id: String,
    pub distribution_id: String,
    pub caller_reference: String,
    pub paths: Vec<String>,
    pub status: InvalidationStatus,
    /// Unix epoch milliseconds.
    pub create_ms: u64,
    /// Unix epoch milliseconds, once completed.
    pub completed_ms: Option<u64>,
}

/// Usage of one distribution over one UTC day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageCounters {
    pub bytes_to_viewers: u64,
    pub bytes_to_origin: u64,
    pub http_requests: u64,
    pub https_requests: u64,
    pub invalidation_paths: u64,
}

impl UsageCounters {
    /// Adds `other` to these counters (saturating: a counter never wraps).
    pub fn add(&mut self, other: &UsageCounters) {
        self.bytes_to_viewers = self.bytes_to_viewers.saturating_add(other.bytes_to_viewers);
        self.bytes_to_origin = self.bytes_to_origin.saturating_add(other.bytes_to_origin);
        self.http_requests = self.http_requests.saturating_add(other.http_requests);
        self.https_requests = self.https_requests.saturating_add(other.https_requests);
        self.invalidation_paths = self.invalidation_paths.saturating_add(other.invalidation_paths);
    }

    pub fn is_zero(&self) -> bool {
        *self == UsageCounters::default()
    }
}

/// What seeding a distribution from the configuration file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedOutcome {
    /// The distribution was not in the store; it was added.
    Inserted,
    /// The file's version changed since the last seeding; the store now holds it.
    Updated,
    /// The file's version was already seeded; the store's state was kept.
    Kept,
}

/// What the configuration last seeded for one distribution id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedMark {
    pub id: String,
    /// The seed hash of the version seeded last.
    pub hash: String,
    /// Where it came from ("the built-in demo", "--origin", a file's path);
    /// `None` for marks older than this record.
    pub source: Option<String>,
}
