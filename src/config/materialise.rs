//! The materialise step: reads the files a parsed configuration names, each
//! once, and fills the configuration's slots with what they hold:
//! certificate chains and private keys for HTTPS listeners, CA bundles for
//! origins, public keys for key groups (also inlined into the distribution
//! documents, so a stored document stands on its own), and S3 origins'
//! credentials (the configuration, a credentials file or the environment).
//! It also checks that folder origins are folders.
//!
//! Errors name the configuration file, the line and the field that names the
//! file, like the parse step's. The edge's runtime (TLS listeners and their
//! reload on change, origin clients, signature checks) takes what is loaded
//! here and reads none of these files itself.

use super::*;
use crate::security::signature::PublicKey;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;

/// What one materialise run did.
#[derive(Debug, Clone, Default)]
pub struct Materialised {
    /// Every file read, in order; each at most once.
    pub files_read: Vec<PathBuf>,
}

/// Reads files for one run, each at most once.
#[derive(Default)]
pub struct Reader {
    files: HashMap<PathBuf, Result<Arc<[u8]>, String>>,
    read: Vec<PathBuf>,
}

impl Reader {
    fn read(&mut self, path: &Path) -> Result<Arc<[u8]>, String> {
        if let Some(r) = self.files.get(path) {
            return r.clone();
        }
        let r = std::fs::read(path).map(Arc::from).map_err(|e| format!("cannot read {}: {e}", path.display()));
        self.read.push(path.to_path_buf());
        self.files.insert(path.to_path_buf(), r.clone());
        r
    }
}

impl Config {
    /// Reads the files this configuration names (those not loaded yet) and
    /// fills its slots. Running it again reads nothing.
    pub fn materialise(&mut self) -> Result<Materialised, ConfigError> {
        let mut reader = Reader::default();
        for c in &self.server.certificates {
            if c.loaded.get().is_none() {
                c.loaded.fill(load_certificate(c, &mut reader)?);
            }
        }
        for d in &mut self.distributions {
            distribution(d, &mut reader)?;
        }
        Ok(Materialised { files_read: reader.read })
    }
}

/// Materialises one distribution: folders checked, CA bundles and public keys
/// loaded, public keys inlined into its document.
pub(super) fn distribution(d: &mut Arc<Distribution>, reader: &mut Reader) -> Result<(), ConfigError> {
    for o in &d.origins {
        match &o.kind {
            OriginKind::Folder(f) => {
                if !f.root.is_dir() {
                    return Err(f.at.error(format!("{} is not a folder", f.root.display())));
                }
            }
            OriginKind::Group(_) => {}
            OriginKind::Http(h) => {
                if let Some(ca) = &h.ca_file {
                    if ca.roots.get().is_none() {
                        ca.roots.fill(Arc::new(load_roots(ca, reader)?));
                    }
                }
            }
            OriginKind::S3(s) => {
                if let Some(ca) = &s.http.ca_file {
                    if ca.roots.get().is_none() {
                        ca.roots.fill(Arc::new(load_roots(ca, reader)?));
                    }
                }
                if s.credentials.get().is_none() {
                    let env = |k: &str| std::env::var(k).ok();
                    let found = super::s3::find_credentials(s, &env, &mut |p| reader.read(p))?;
                    s.credentials.fill(Arc::new(found));
                }
            }
        }
    }
    // Public keys: loaded, checked against other keys with the same id, and
    // the PEM text of each key file put in the document in place of its path.
    let mut inline: Vec<(usize, usize, String)> = Vec::new();
    let mut seen: Vec<(&TrustedKey, &PublicKey)> = Vec::new();
    for (j, g) in d.key_groups.iter().enumerate() {
        for (k, key) in g.keys.iter().enumerate() {
            let needs_text = matches!(key.source, KeySource::File(_)) && !document_key_is_pem(&d.document, j, k);
            let public = match key.key.get() {
                Some(p) if !needs_text => p,
                _ => {
                    let (public, text) = load_public_key(key, reader)?;
                    if let (true, Some(text)) = (needs_text, text) {
                        inline.push((j, k, text));
                    }
                    key.key.fill(public)
                }
            };
            if let Some((_, prev)) = seen.iter().find(|(x, _)| x.id == key.id) {
                if !prev.same_key(public) {
                    return Err(key
                        .id_at
                        .error(format!("key id {:?} names a different public key in another key group", key.id)));
                }
            }
            seen.push((key, public));
        }
    }
    if !inline.is_empty() {
        let doc = Arc::make_mut(&mut Arc::make_mut(d).document);
        for (j, k, text) in inline {
            if let Some(v) = document_key(doc, j, k) {
                *v = toml::Value::String(text);
            }
        }
    }
    Ok(())
}

/// `key_groups[j].keys[k].public_key` of a distribution document.
fn document_key(doc: &mut toml::Table, j: usize, k: usize) -> Option<&mut toml::Value> {
    doc.get_mut("key_groups")?
        .as_array_mut()?
        .get_mut(j)?
        .as_table_mut()?
        .get_mut("keys")?
        .as_array_mut()?
        .get_mut(k)?
        .as_table_mut()?
        .get_mut("public_key")
}

fn document_key_is_pem(doc: &toml::Table, j: usize, k: usize) -> bool {
    let key = doc
        .get("key_groups")
        .and_then(|v| v.as_array()?.get(j)?.get("keys")?.as_array()?.get(k)?.get("public_key")?.as_str());
    key.is_some_and(|s| s.trim_start().starts_with("-----BEGIN"))
}

/// A public key, and the PEM text when it came from a file.
fn load_public_key(key: &TrustedKey, reader: &mut Reader) -> Result<(PublicKey, Option<String>), ConfigError> {
    let (text, name) = match &key.source {
        KeySource::Inline(text) => (text.clone(), "the inline key".to_string()),
        KeySource::File(path) => {
            let bytes = reader.read(path).map_err(|m| key.at.error(m))?;
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| key.at.error(format!("{} is not an RSA public key: not PEM text", path.display())))?;
            (text, path.display().to_string())
        }
    };
    let public =
        PublicKey::from_pem(&text).map_err(|e| key.at.error(format!("{name} is not an RSA public key: {e}")))?;
    let from_file = matches!(key.source, KeySource::File(_)).then_some(text);
    Ok((public, from_file))
}

/// An origin's CA bundle, loaded by the materialise step; loads it now if the
/// configuration was not materialised.
pub fn ca_roots(ca: &CaFile) -> Result<Arc<rustls::RootCertStore>, ConfigError> {
    match ca.roots.get() {
        Some(r) => Ok(r.clone()),
        None => Ok(ca.roots.fill(Arc::new(load_roots(ca, &mut Reader::default())?)).clone()),
    }
}

fn load_roots(ca: &CaFile, reader: &mut Reader) -> Result<rustls::RootCertStore, ConfigError> {
    let path = &ca.path;
    let pem = reader.read(path).map_err(|m| ca.at.error(m))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        let c = c.map_err(|e| ca.at.error(format!("{} is not a PEM certificate bundle: {e}", path.display())))?;
        roots
            .add(c)
            .map_err(|e| ca.at.error(format!("{}: a certificate cannot be a trust anchor: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(ca.at.error(format!("{} holds no PEM certificate", path.display())));
    }
    Ok(roots)
}

/// A viewer certificate loaded by the materialise step; loads it now if the
/// configuration was not materialised.
pub fn certificate(c: &CertificateConfig) -> Result<LoadedCertificate, ConfigError> {
    match c.loaded.get() {
        Some(l) => Ok(l.clone()),
        None => Ok(c.loaded.fill(read_certificate(c)?).clone()),
    }
}

/// Reads a certificate pair afresh (the reload when its files change).
pub fn read_certificate(c: &CertificateConfig) -> Result<LoadedCertificate, ConfigError> {
    load_certificate(c, &mut Reader::default())
}

/// Modification times of a certificate's two files, as they are now.
pub fn certificate_stamps(c: &CertificateConfig) -> (Option<std::time::SystemTime>, Option<std::time::SystemTime>) {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(&c.cert), m(&c.key))
}

/// Reads a PEM certificate chain and its private key, and checks they match.
fn load_certificate(c: &CertificateConfig, reader: &mut Reader) -> Result<LoadedCertificate, ConfigError> {
    let (cert, key) = (&c.cert, &c.key);
    let cert_err = |m: String| c.cert_at.error(m);
    let key_err = |m: String| c.key_at.error(m);
    let modified = certificate_stamps(c);
    let cert_pem = reader.read(cert).map_err(cert_err)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(format!("{} is not a PEM certificate chain: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(cert_err(format!("{} holds no PEM certificate", cert.display())));
    }
    let key_pem = reader.read(key).map_err(key_err)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| key_err(format!("cannot read a PEM private key from {}: {e}", key.display())))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&private)
        .map_err(|e| key_err(format!("{} is not a usable private key: {e}", key.display())))?;
    let pair = rustls::sign::CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        Ok(()) => {}
        // The key's public half could not be computed: nothing to compare.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(key_err(format!("{} does not match the certificate in {}: {e}", key.display(), cert.display())))
        }
    }
    Ok(LoadedCertificate { pair: Arc::new(pair), modified })
}
