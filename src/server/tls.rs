//! HTTPS for viewers: certificates chosen by SNI (exact host, then wildcard,
//! then the default), as the configuration's materialise step loaded them,
//! and read again by the same loader when their files change.

use crate::config::materialise;
use crate::config::CertificateConfig;
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

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

impl CertResolver {
    pub fn new(entries: &[CertificateConfig]) -> Result<CertResolver, String> {
        let mut keys = Vec::new();
        let mut seen = Vec::new();
        for e in entries {
            // Loaded by the configuration's materialise step (or now, if it did not run).
            let loaded = materialise::certificate(e).map_err(|err| err.to_string())?;
            keys.push(loaded.pair);
            seen.push(loaded.modified);
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
            let now = materialise::certificate_stamps(e);
            if now == seen[i] {
                continue;
            }
            seen[i] = now;
            match materialise::read_certificate(e) {
                Ok(loaded) => {
                    keys[i] = loaded.pair;
                    replaced += 1;
                    tracing::info!("reloaded the certificate {}", e.cert.display());
                }
                Err(err) => tracing::warn!("keeping the old certificate for {}: {err}", e.cert.display()),
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
