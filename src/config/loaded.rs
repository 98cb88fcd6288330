//! What the parse step leaves for the materialise step: the files a
//! configuration names, the place that names each (for errors), and the slots
//! the materialise step fills with what it read. Nothing here reads a file.

use super::ConfigError;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

/// Where a value is written in a configuration: file, line, column and field
/// path, so the materialise step reports errors as the parse step does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Place {
    pub file: PathBuf,
    /// 1-based; 0 when not known (a document received through the admin API).
    pub line: usize,
    pub column: usize,
    pub field: String,
}

impl Place {
    /// A configuration error at this place.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            field: Some(self.field.clone()),
            message: message.into(),
        }
    }
}

/// A value loaded from a file by the materialise step. Empty after parsing;
/// filled once. Clones of a configuration share their slots.
pub struct Slot<T>(Arc<OnceLock<T>>);

impl<T> Slot<T> {
    pub fn empty() -> Self {
        Slot(Arc::new(OnceLock::new()))
    }

    /// A slot holding a value made without a file (tests, built-in keys).
    pub fn filled(value: T) -> Self {
        let s = Self::empty();
        let _ = s.0.set(value);
        s
    }

    /// The loaded value; `None` before the materialise step ran.
    pub fn get(&self) -> Option<&T> {
        self.0.get()
    }

    /// Stores `value` unless a value is already there; returns what the slot holds.
    pub(crate) fn fill(&self, value: T) -> &T {
        self.0.get_or_init(|| value)
    }
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Slot(self.0.clone())
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<T> fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.get().is_some() { "Slot(loaded)" } else { "Slot(empty)" })
    }
}

/// A certificate chain and its private key, as the materialise step read them.
#[derive(Debug, Clone)]
pub struct LoadedCertificate {
    pub pair: Arc<rustls::sign::CertifiedKey>,
    /// Modification times of the certificate and key files when they were
    /// read (what the reload on change compares against).
    pub modified: (Option<SystemTime>, Option<SystemTime>),
}

/// An origin's CA bundle (`ca_file`).
#[derive(Debug, Clone)]
pub struct CaFile {
    /// Resolved against the configuration file's folder.
    pub path: PathBuf,
    pub at: Place,
    pub roots: Slot<Arc<rustls::RootCertStore>>,
}

/// Where a trusted public key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A PEM file, resolved against the configuration file's folder.
    File(PathBuf),
    /// PEM text written in the configuration itself.
    Inline(String),
}
