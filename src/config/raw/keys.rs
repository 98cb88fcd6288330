//! Trusted key groups and viewer certificates: files read (relative to the
//! config file) and checked at load.

use super::*;

/// Key groups: ids, and public keys read (relative to the config file) and
/// checked at load. One key id names one key across the distribution.
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
            let file = relative_to(cx.file, path.get_ref());
            let text = if is_inline_pem(path.get_ref()) {
                path.get_ref().clone()
            } else {
                std::fs::read_to_string(&file).map_err(|e| {
                    cx.error(path.span(), kf("public_key"), format!("cannot read {}: {e}", file.display()))
                })?
            };
            let public = crate::security::signature::PublicKey::from_pem(&text).map_err(|e| {
                cx.error(path.span(), kf("public_key"), format!("{} is not an RSA public key: {e}", file.display()))
            })?;
            let trusted = match all_keys.iter().find(|x| x.id == *kid.get_ref()) {
                Some(prev) if prev.key.same_key(&public) => prev.clone(),
                Some(_) => {
                    return cx.err(
                        kid.span(),
                        kf("id"),
                        format!("key id {:?} names a different public key in another key group", kid.get_ref()),
                    )
                }
                None => {
                    let t = TrustedKey { id: kid.into_inner(), key: public };
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

/// Viewer certificates: files read (relative to the config file) and checked
/// at load, host names validated, at most one default.
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
        let cert_path = relative_to(cx.file, cert.get_ref());
        let key_path = relative_to(cx.file, key.get_ref());
        if let Err(e) = crate::server::tls::load_pair(&cert_path, &key_path) {
            let s = if e.in_key { key.span() } else { cert.span() };
            return cx.err(s, f(if e.in_key { "key" } else { "cert" }), e.message);
        }
        out.push(CertificateConfig { cert: cert_path, key: key_path, hosts, default: c.default });
    }
    Ok(out)
}
