//! Trusted key groups and viewer certificates: ids, host names and the files
//! they name (relative to the config file). The materialise step reads the files.

use super::*;

/// Key groups: ids, and where their public keys are. One key id names one
/// key across the distribution (the same source here; the same key once the
/// materialise step has read them).
pub(super) fn resolve_key_groups(
    cx: &Ctx,
    i: usize,
    raw: Vec<Spanned<RawKeyGroup>>,
) -> Result<Vec<Arc<KeyGroup>>, ConfigError> {
    let mut groups: Vec<Arc<KeyGroup>> = Vec::new();
    let mut all_keys: Vec<TrustedKey> = Vec::new();
    for (j, g) in raw.into_iter().enumerate() {
        let gspan = g.span();
        let g = g.into_inner();
        let gf = |name: &str| format!("distributions[{i}].key_groups[{j}].{name}");
        let Some(id) = g.id else {
            return cx.err(gspan, gf("id"), "is missing");
        };
        if !valid_id(id.get_ref(), 64, b"-_") {
            return cx.err(id.span(), gf("id"), "must be 1 to 64 letters, digits, '-' or '_'");
        }
        if groups.iter().any(|x| x.id == *id.get_ref()) {
            return cx.err(id.span(), gf("id"), format!("key group id {:?} is used twice", id.get_ref()));
        }
        if g.keys.is_empty() {
            return cx.err(gspan, gf("keys"), "a key group needs at least one public key");
        }
        let mut keys: Vec<TrustedKey> = Vec::new();
        for (k, key) in g.keys.into_iter().enumerate() {
            let kspan = key.span();
            let key = key.into_inner();
            let kf = |name: &str| gf(&format!("keys[{k}].{name}"));
            let Some(kid) = key.id else {
                return cx.err(kspan, kf("id"), "is missing");
            };
            if !valid_id(kid.get_ref(), 128, b"-_.") {
                return cx.err(kid.span(), kf("id"), "must be 1 to 128 letters, digits, '-', '_' or '.'");
            }
            if keys.iter().any(|x| x.id == *kid.get_ref()) {
                return cx.err(kid.span(), kf("id"), format!("key id {:?} is in this group twice", kid.get_ref()));
            }
            let Some(path) = key.public_key else {
                return cx.err(kspan, kf("public_key"), "is missing (the path of a PEM public key)");
            };
            let source = if is_inline_pem(path.get_ref()) {
                KeySource::Inline(path.get_ref().clone())
            } else {
                KeySource::File(relative_to(cx.file, path.get_ref()))
            };
            let trusted = match all_keys.iter().find(|x| x.id == *kid.get_ref() && x.source == source) {
                // The same key named again: one key, loaded once.
                Some(prev) => prev.clone(),
                None => {
                    let t = TrustedKey {
                        at: cx.place(path.span(), kf("public_key")),
                        id_at: cx.place(kid.span(), kf("id")),
                        id: kid.into_inner(),
                        source,
                        key: Slot::empty(),
                    };
                    all_keys.push(t.clone());
                    t
                }
            };
            keys.push(trusted);
        }
        groups.push(Arc::new(KeyGroup { id: id.into_inner(), keys }));
    }
    Ok(groups)
}

/// Viewer certificates: host names validated, at most one default, and where
/// the files are.
pub(super) fn resolve_certificates(
    cx: &Ctx,
    raw: Vec<Spanned<RawCertificate>>,
) -> Result<Vec<CertificateConfig>, ConfigError> {
    let mut out: Vec<CertificateConfig> = Vec::new();
    for (i, c) in raw.into_iter().enumerate() {
        let span = c.span();
        let c = c.into_inner();
        let f = |name: &str| format!("server.certificates[{i}].{name}");
        let Some(cert) = c.cert else {
            return cx.err(span, f("cert"), "is missing (the path of a PEM certificate chain)");
        };
        let Some(key) = c.key else {
            return cx.err(span, f("key"), "is missing (the path of a PEM private key)");
        };
        let mut hosts = Vec::new();
        for (j, h) in c.hosts.iter().enumerate() {
            let name = h.get_ref().to_ascii_lowercase();
            let bare = name.strip_prefix("*.").unwrap_or(&name);
            let ok = !bare.is_empty()
                && bare.len() <= 253
                && bare.split('.').all(|l| {
                    !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                return cx.err(
                    h.span(),
                    f(&format!("hosts[{j}]")),
                    format!("{:?} is not a host name such as \"a.example.com\" or \"*.example.com\"", h.get_ref()),
                );
            }
            hosts.push(name);
        }
        if hosts.is_empty() && !c.default {
            return cx.err(span, f("hosts"), "a certificate needs host names, or `default = true`");
        }
        if c.default && out.iter().any(|x| x.default) {
            return cx.err(span, f("default"), "only one certificate can be the default");
        }
        out.push(CertificateConfig {
            cert: relative_to(cx.file, cert.get_ref()),
            key: relative_to(cx.file, key.get_ref()),
            cert_at: cx.place(cert.span(), f("cert")),
            key_at: cx.place(key.span(), f("key")),
            loaded: Slot::empty(),
            hosts,
            default: c.default,
        });
    }
    Ok(out)
}
