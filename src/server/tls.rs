//! HTTPS for viewers: certificates chosen by SNI (exact host, then wildcard,
//! then the default), read from PEM files and reloaded when they change.

use crate::config::CertificateConfig;
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Why a certificate and key pair could not be used.
#[derive(Debug)]
pub struct PairError {
    /// The fault is in the key file (else in the certificate file).
    pub in_key: bool,
    pub message: String,
}

/// Reads a PEM certificate chain and its private key, and checks they match.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, PairError> {
    let cert_err = |message: String| PairError { in_key: false, message };
    let key_err = |message: String| PairError { in_key: true, message };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(format!("cannot read {}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(format!("{} is not a PEM certificate chain: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(cert_err(format!("{} holds no PEM certificate", cert.display())));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| key_err(format!("cannot read a PEM private key from {}: {e}", key.display())))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&private)
        .map_err(|e| key_err(format!("{} is not a usable private key: {e}", key.display())))?;
    let pair = CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        Ok(()) => Ok(pair),
        // The key's public half could not be computed: nothing to compare.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(pair),
        Err(e) => Err(key_err(format!("{} does not match the certificate in {}: {e}", key.display(), cert.display()))),
    }
}

/// Who serves which name, built from the loaded pairs.
#[derive(Default)]
struct Table {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by what follows `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl Table {
    fn build(entries: &[CertificateConfig], keys: &[Arc<CertifiedKey>]) -> Table {
        let mut t = Table::default();
        for (e, k) in entries.iter().zip(keys) {
            for h in &e.hosts {
                match h.strip_prefix("*.") {
                    Some(rest) => t.wildcard.entry(rest.to_string()).or_insert_with(|| k.clone()),
                    None => t.exact.entry(h.clone()).or_insert_with(|| k.clone()),
                };
            }
            if e.default {
                t.default = Some(k.clone());
            }
        }
        t
    }

    fn find(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(k) = self.exact.get(&name) {
                return Some(k.clone());
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(k) = self.wildcard.get(parent) {
                    return Some(k.clone());
                }
            }
        }
        self.default.clone()
    }
}

/// File modification times of one pair, as last seen.
type Stamps = (Option<SystemTime>, Option<SystemTime>);

/// The SNI certificate resolver; `reload` swaps in changed files.
pub struct CertResolver {
    entries: Vec<CertificateConfig>,
    table: ArcSwap<Table>,
    /// The pairs in use and the file times they were read at.
    loaded: Mutex<(Vec<Arc<CertifiedKey>>, Vec<Stamps>)>,
}

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertResolver").field("certificates", &self.entries.len()).finish()
    }
}

fn stamps(e: &CertificateConfig) -> Stamps {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(&e.cert), m(&e.key))
}

impl CertResolver {
    pub fn new(entries: &[CertificateConfig]) -> Result<CertResolver, String> {
        let mut keys = Vec::new();
        let mut seen = Vec::new();
        for e in entries {
            let st = stamps(e);
            let pair = load_pair(&e.cert, &e.key).map_err(|err| err.message)?;
            keys.push(Arc::new(pair));
            seen.push(st);
        }
        Ok(CertResolver {
            entries: entries.to_vec(),
            table: ArcSwap::from_pointee(Table::build(entries, &keys)),
            loaded: Mutex::new((keys, seen)),
        })
    }

    /// Re-reads the pairs whose files changed since they were last read. A pair
    /// that does not load keeps the old certificate (and is tried again when
    /// its files change again). Returns how many pairs were replaced.
    pub fn reload(&self) -> usize {
        let Ok(mut guard) = self.loaded.lock() else {
            return 0;
        };
        let (keys, seen) = &mut *guard;
        let mut replaced = 0;
        for (i, e) in self.entries.iter().enumerate() {
            let now = stamps(e);
            if now == seen[i] {
                continue;
            }
            seen[i] = now;
            match load_pair(&e.cert, &e.key) {
                Ok(pair) => {
                    keys[i] = Arc::new(pair);
                    replaced += 1;
                    tracing::info!("reloaded the certificate {}", e.cert.display());
                }
                Err(err) => tracing::warn!("keeping the old certificate for {}: {}", e.cert.display(), err.message),
            }
        }
        if replaced > 0 {
            self.table.store(Arc::new(Table::build(&self.entries, keys)));
        }
        replaced
    }

    /// Polls the files every `every` and reloads what changed; runs until aborted.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.reload()).await;
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.table.load().find(hello.server_name())
    }
}

/// TLS 1.2 sessions of clients that take no tickets, kept for resumption by
/// session id (about 1 KB each; the oldest are dropped).
const SESSION_CACHE_ENTRIES: usize = 4096;

/// The rustls server configuration for viewers: TLS 1.2 and 1.3, ALPN h2 and
/// http/1.1, and session resumption.
///
/// Resumption uses stateless tickets (TLS 1.3 and 1.2): the session is sealed
/// with a key only this process knows (rotated every 6 hours, the previous key
/// still accepted), so the edge holds nothing per viewer and any number of
/// viewers can resume. TLS 1.2 clients without ticket support resume by
/// session id from a bounded in-memory cache.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| format!("TLS session tickets: {e}"))?;
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    Ok(cfg)
}
