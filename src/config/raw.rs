//! The file as written, with spans, and its resolution into the model.

use super::units::{ByteSize, Secs};
use super::*;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use toml::Spanned;

mod behavior;
mod disk;
mod errors;
mod fle;
mod forwarding;
mod groups;
mod keys;
mod origins;
mod response_headers;

use behavior::{resolve_behavior, resolve_list};
use keys::{resolve_certificates, resolve_key_groups};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    distributions: Vec<Spanned<RawDistribution>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    /// An address, or "off".
    listen: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    /// The environment variable holding the token (default MEDIAEDGE_ADMIN_TOKEN).
    token_env: Option<Spanned<String>>,
    state_dir: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<OneOrMany>>,
    edge_location: Option<String>,
    edge_domain: Option<Spanned<String>>,
    access_log: Option<String>,
    access_log_max_size: Option<Spanned<ByteSize>>,
    access_log_rotate_every: Option<Spanned<Secs>>,
    access_log_keep: Option<usize>,
    log_cookies: Option<bool>,
    header_read_timeout: Option<Secs>,
    max_header_bytes: Option<ByteSize>,
    request_head_timeout: Option<Spanned<Secs>>,
    keepalive_timeout: Option<Spanned<Secs>>,
    http2_idle_timeout: Option<Spanned<Secs>>,
    http2_ping_interval: Option<Secs>,
    http2_ping_timeout: Option<Spanned<Secs>>,
    max_connections: Option<Spanned<usize>>,
    websocket_max_connections: Option<Spanned<usize>>,
    websocket_idle_timeout: Option<Spanned<Secs>>,
    shutdown_timeout: Option<Spanned<Secs>>,
    https_listen: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    certificates: Vec<Spanned<RawCertificate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertificate {
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    default: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCache {
    memory: Option<Spanned<ByteSize>>,
    max_object_size: Option<Spanned<ByteSize>>,
    lock_timeout: Option<Secs>,
    hit_for_pass_ttl: Option<Secs>,
    error_ttl: Option<Secs>,
    disk: Option<Spanned<disk::RawDisk>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDistribution {
    id: Option<Spanned<String>>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    aliases: Vec<Spanned<String>>,
    #[serde(default)]
    origins: Vec<Spanned<origins::RawOrigin>>,
    #[serde(default)]
    behaviors: Vec<Spanned<RawBehavior>>,
    default_behavior: Option<Spanned<RawBehavior>>,
    #[serde(default)]
    key_groups: Vec<Spanned<RawKeyGroup>>,
    #[serde(default)]
    custom_error_responses: Vec<Spanned<errors::RawErrorResponse>>,
    #[serde(default)]
    origin_groups: Vec<Spanned<groups::RawOriginGroup>>,
    field_level_encryption: Option<Spanned<fle::RawFle>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyGroup {
    id: Option<Spanned<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    comment: String,
    #[serde(default)]
    keys: Vec<Spanned<RawTrustedKey>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrustedKey {
    id: Option<Spanned<String>>,
    public_key: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBehavior {
    path: Option<Spanned<String>>,
    origin: Option<Spanned<String>>,
    allowed_methods: Option<Spanned<Vec<String>>>,
    min_ttl: Option<Spanned<Secs>>,
    default_ttl: Option<Spanned<Secs>>,
    max_ttl: Option<Spanned<Secs>>,
    #[serde(default)]
    compress: bool,
    #[serde(default)]
    cache_key: RawKey,
    #[serde(default)]
    origin_request: forwarding::RawOriginRequest,
    media_ttls: Option<bool>,
    master_playlist_ttl: Option<Secs>,
    vod_manifest_ttl: Option<Secs>,
    live_manifest_ttl: Option<Secs>,
    segment_ttl: Option<Secs>,
    blocking_reload: Option<bool>,
    set_cookie: Option<Spanned<String>>,
    heuristic_freshness: Option<bool>,
    stale_if_error: Option<Spanned<Secs>>,
    websocket: Option<bool>,
    slice_size: Option<Spanned<ByteSize>>,
    prefetch_segments: Option<Spanned<usize>>,
    #[serde(default)]
    trusted_key_groups: Vec<Spanned<String>>,
    propagate_tokens: Option<Spanned<bool>>,
    viewer_protocol_policy: Option<Spanned<String>>,
    field_level_encryption_id: Option<Spanned<String>>,
    response_headers: Option<Spanned<response_headers::RawResponseHeaders>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKey {
    query: Option<Spanned<RawList>>,
    #[serde(default)]
    headers: Vec<Spanned<String>>,
    cookies: Option<Spanned<RawList>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawList {
    Word(String),
    Names(Vec<String>),
}

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    /// Set when the text wraps one distribution document (the admin API):
    /// places then name the document's source and its own field paths.
    document: Option<&'a toml::Table>,
}

impl Ctx<'_> {
    fn err<T>(&self, span: std::ops::Range<usize>, field: String, msg: impl Into<String>) -> Result<T, ConfigError> {
        Err(self.error(span, field, msg))
    }

    fn error(&self, span: std::ops::Range<usize>, field: String, msg: impl Into<String>) -> ConfigError {
        ConfigError::at(self.file, self.text, span.start, Some(field), msg)
    }

    /// Where a value the materialise step reads is written.
    fn place(&self, span: std::ops::Range<usize>, field: String) -> Place {
        let e = self.error(span, field, "");
        let e = match self.document {
            Some(doc) => in_document(e, doc),
            None => e,
        };
        Place { file: e.file, line: e.line, column: e.column, field: e.field.unwrap_or_default() }
    }
}

pub(super) fn resolve(text: &str, file: &Path) -> Result<Config, ConfigError> {
    resolve_with(text, file, None)
}

/// Resolves `text`, which wraps the distribution document `doc`; errors (and
/// places) name `file` (the document's source) and the document's own fields.
pub(super) fn resolve_document(text: &str, file: &Path, doc: &toml::Table) -> Result<Config, ConfigError> {
    resolve_with(text, file, Some(doc)).map_err(|e| in_document(e, doc))
}

/// An error in a wrapped document, as the document's sender sees it: no line,
/// and the field path within the document.
fn in_document(mut e: ConfigError, doc: &toml::Table) -> ConfigError {
    e.line = 0;
    e.column = 0;
    e.field = e.field.map(|f| match f.strip_prefix("distributions[0].") {
        Some(inner) => inner.to_string(),
        // A type error names only the key on its line: find where it is.
        None => unique_path(doc, &f).unwrap_or(f),
    });
    e
}

fn resolve_with(text: &str, file: &Path, document: Option<&toml::Table>) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
    let cx = Ctx { file, text, document };

    let mut server = ServerConfig::default();
    if let Some(listen) = raw.server.listen {
        let span = listen.span();
        let list = match listen.into_inner() {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        if list.is_empty() {
            return cx.err(span, "server.listen".into(), "needs at least one address");
        }
        server.listen.clear();
        for a in list {
            match a.parse::<SocketAddr>() {
                Ok(addr) => server.listen.push(addr),
                Err(_) => {
                    return cx.err(
                        span,
                        "server.listen".into(),
                        format!("{a:?} is not an address such as \"127.0.0.1:8080\" or \"[::1]:8080\""),
                    )
                }
            }
        }
    }
    if let Some(loc) = raw.server.edge_location {
        server.edge_location = loc;
    }
    if let Some(listen) = raw.server.https_listen {
        let span = listen.span();
        let list = match listen.into_inner() {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        for a in list {
            match a.parse::<SocketAddr>() {
                Ok(addr) => server.https_listen.push(addr),
                Err(_) => {
                    return cx.err(
                        span,
                        "server.https_listen".into(),
                        format!("{a:?} is not an address such as \"127.0.0.1:8443\" or \"[::1]:8443\""),
                    )
                }
            }
        }
        if server.https_listen.is_empty() {
            return cx.err(span, "server.https_listen".into(), "needs at least one address");
        }
        if raw.server.certificates.is_empty() {
            return cx.err(span, "server.certificates".into(), "HTTPS listeners need at least one certificate");
        }
    }
    server.certificates = resolve_certificates(&cx, raw.server.certificates)?;
    if let Some(dom) = raw.server.edge_domain {
        if HostPattern::parse(dom.get_ref()).is_err() || dom.get_ref().starts_with('*') {
            return cx.err(dom.span(), "server.edge_domain".into(), "is not a domain name");
        }
        server.edge_domain = dom.into_inner().to_ascii_lowercase();
    }
    server.access_log = raw.server.access_log.map(|s| {
        if s == "-" || s == "stdout" {
            LogTarget::Stdout
        } else {
            LogTarget::File(relative_to(file, &s))
        }
    });
    server.log_cookies = raw.server.log_cookies.unwrap_or(false);
    if let Some(m) = raw.server.access_log_max_size {
        if m.get_ref().0 < 4096 {
            return cx.err(m.span(), "server.access_log_max_size".into(), "must be at least 4KiB");
        }
        server.access_log_rotation.max_bytes = Some(m.get_ref().0);
    }
    if let Some(t) = raw.server.access_log_rotate_every {
        if t.get_ref().0 < Duration::from_secs(1) {
            return cx.err(t.span(), "server.access_log_rotate_every".into(), "must be at least 1s");
        }
        server.access_log_rotation.interval = Some(t.get_ref().0);
    }
    server.access_log_rotation.keep = raw.server.access_log_keep.unwrap_or(0);
    if let Some(t) = raw.server.header_read_timeout {
        server.header_read_timeout = t.0;
    }
    if let Some(b) = raw.server.max_header_bytes {
        server.max_header_bytes = b.0.clamp(1024, 1 << 20) as usize;
    }
    for (raw, field, name) in [
        (raw.server.request_head_timeout, &mut server.request_head_timeout, "request_head_timeout"),
        (raw.server.keepalive_timeout, &mut server.keepalive_timeout, "keepalive_timeout"),
        (raw.server.http2_idle_timeout, &mut server.http2_idle_timeout, "http2_idle_timeout"),
        (raw.server.http2_ping_timeout, &mut server.http2_ping_timeout, "http2_ping_timeout"),
        (raw.server.websocket_idle_timeout, &mut server.websocket_idle_timeout, "websocket_idle_timeout"),
        (raw.server.shutdown_timeout, &mut server.shutdown_timeout, "shutdown_timeout"),
    ] {
        if let Some(t) = raw {
            if t.get_ref().0.is_zero() {
                return cx.err(t.span(), format!("server.{name}"), "must be more than 0s");
            }
            *field = t.into_inner().0;
        }
    }
    if let Some(t) = raw.server.http2_ping_interval {
        // 0s turns pings off.
        server.http2_ping_interval = Some(t.0).filter(|d| !d.is_zero());
    }
    let counts = [(&raw.server.max_connections, "max"), (&raw.server.websocket_max_connections, "websocket_max")];
    if let Some((n, name)) =
        counts.into_iter().find_map(|(n, name)| Some((n.as_ref()?, name)).filter(|(n, _)| *n.get_ref() == 0))
    {
        return cx.err(n.span(), format!("server.{name}_connections"), "must be at least 1");
    }
    server.max_connections = raw.server.max_connections.map(Spanned::into_inner);
    let ws_max = raw.server.websocket_max_connections.map(Spanned::into_inner);
    server.websocket_max_connections = ws_max.unwrap_or(server.websocket_max_connections);

    let mut cache = CacheConfig::default();
    if let Some(m) = raw.cache.memory {
        if m.get_ref().0 < (1 << 20) {
            return cx.err(m.span(), "cache.memory".into(), "must be at least 1MiB");
        }
        cache.memory_bytes = m.get_ref().0;
    }
    if let Some(m) = raw.cache.max_object_size {
        cache.max_object_bytes = m.get_ref().0;
    }
    if let Some(t) = raw.cache.lock_timeout {
        cache.lock_timeout = t.0;
    }
    if let Some(t) = raw.cache.hit_for_pass_ttl {
        cache.hit_for_pass_ttl = t.0;
    }
    if let Some(t) = raw.cache.error_ttl {
        cache.error_ttl = t.0;
    }
    if let Some(d) = raw.cache.disk {
        cache.disk = Some(disk::resolve(&cx, d)?);
    }

    let admin = resolve_admin(&cx, raw.admin)?;

    // The documents: each distribution's table as written (paths made
    // absolute, keys inlined), and the rest of the file.
    let mut base_document: toml::Table = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
    let tables = match base_document.remove("distributions") {
        Some(toml::Value::Array(a)) => a,
        _ => Vec::new(),
    };
    let mut distributions = Vec::new();
    for (i, (d, table)) in raw.distributions.into_iter().zip(tables).enumerate() {
        let mut dist = resolve_distribution(&cx, i, d, &server.edge_domain)?;
        let mut document = match table {
            toml::Value::Table(t) => t,
            _ => toml::Table::new(),
        };
        normalize_document(&mut document, file);
        dist.document = Arc::new(document);
        distributions.push(Arc::new(dist));
    }
    if let Some(conflict) = conflicts(&distributions) {
        return Err(ConfigError::whole_file(file, conflict));
    }
    Ok(Config { server, cache, admin, distributions, base_document })
}

/// Two distributions with one id, or one alternate domain name claimed twice.
pub(super) fn conflicts(distributions: &[Arc<Distribution>]) -> Option<String> {
    let mut ids = HashSet::new();
    let mut hosts: HashSet<String> = HashSet::new();
    for dist in distributions {
        if !ids.insert(dist.id.as_str()) {
            return Some(format!("two distributions have the id {:?}", dist.id));
        }
        for a in &dist.aliases {
            if !hosts.insert(format!("{a:?}")) {
                return Some(format!("the alternate domain name {a} belongs to two distributions"));
            }
        }
    }
    None
}

/// Makes a distribution document stand on its own: folder and CA paths
/// absolute. (Public keys are inlined as PEM text by the materialise step,
/// which reads them.)
fn normalize_document(doc: &mut toml::Table, file: &Path) {
    let absolute = |p: &str| {
        let path = relative_to(file, p);
        std::path::absolute(&path).unwrap_or(path).to_string_lossy().into_owned()
    };
    if let Some(toml::Value::Array(origins)) = doc.get_mut("origins") {
        for o in origins.iter_mut().filter_map(toml::Value::as_table_mut) {
            for field in ["folder", "ca_file"] {
                if let Some(toml::Value::String(p)) = o.get_mut(field) {
                    *p = absolute(p);
                }
            }
            if let Some(toml::Value::String(p)) = o.get_mut("s3").and_then(|s| s.get_mut("credentials_file")) {
                *p = absolute(p);
            }
        }
    }
}

fn is_inline_pem(s: &str) -> bool {
    s.trim_start().starts_with("-----BEGIN")
}

fn resolve_admin(cx: &Ctx, raw: RawAdmin) -> Result<AdminConfig, ConfigError> {
    let mut admin = AdminConfig::default();
    if let Some(listen) = &raw.listen {
        let l = listen.get_ref().trim();
        admin.listen = if l == "off" {
            None
        } else {
            Some(l.parse::<SocketAddr>().or_else(|_| {
                cx.err(
                    listen.span(),
                    "admin.listen".into(),
                    format!("{l:?} is not an address such as \"127.0.0.1:8081\", or \"off\""),
                )
            })?)
        };
    }
    if let Some(dir) = raw.state_dir {
        admin.state_dir = relative_to(cx.file, &dir);
    }
    let token = match (&raw.token, &raw.token_env) {
        (Some(t), Some(_)) => return cx.err(t.span(), "admin.token".into(), "give `token` or `token_env`, not both"),
        (Some(t), None) => Some((t.get_ref().clone(), t.span(), "admin.token")),
        (None, Some(var)) => match std::env::var(var.get_ref()) {
            Ok(v) => Some((v, var.span(), "admin.token_env")),
            Err(_) => {
                return cx.err(
                    var.span(),
                    "admin.token_env".into(),
                    format!("the environment variable {:?} is not set", var.get_ref()),
                )
            }
        },
        (None, None) => std::env::var(ADMIN_TOKEN_ENV).ok().filter(|t| !t.is_empty()).map(|t| (t, 0..0, "admin.token")),
    };
    if let Some((t, span, field)) = token {
        if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return cx.err(span, field.into(), "the admin token must be at least 16 visible ASCII characters");
        }
        admin.token = Some(t);
    }
    if let (Some(addr), None) = (admin.listen, &admin.token) {
        if !addr.ip().is_loopback() {
            let span = raw.listen.as_ref().map_or(0..0, |l| l.span());
            return cx.err(
                span,
                "admin.listen".into(),
                format!(
                    "the admin API would listen on {addr}, which is not a loopback address, without a token: \
                     set admin.token or the {ADMIN_TOKEN_ENV} environment variable"
                ),
            );
        }
    }
    Ok(admin)
}

fn resolve_distribution(
    cx: &Ctx,
    i: usize,
    d: Spanned<RawDistribution>,
    edge_domain: &str,
) -> Result<Distribution, ConfigError> {
    let dspan = d.span();
    let d = d.into_inner();
    let f = |name: &str| format!("distributions[{i}].{name}");
    let id = match d.id {
        Some(id) => {
            let ok = !id.get_ref().is_empty()
                && id.get_ref().len() <= 64
                && id.get_ref().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return cx.err(id.span(), f("id"), "must be 1 to 64 letters, digits, '-' or '_'");
            }
            id.into_inner()
        }
        None => return cx.err(dspan, f("id"), "is missing"),
    };
    let mut aliases = Vec::new();
    for (j, a) in d.aliases.iter().enumerate() {
        match HostPattern::parse(a.get_ref()) {
            Ok(p) => aliases.push(p),
            Err(e) => return cx.err(a.span(), f(&format!("aliases[{j}]")), e),
        }
    }
    let domain_name = domain_name_for(&id, edge_domain);
    aliases.push(HostPattern::Exact(domain_name.clone()));

    if d.origins.is_empty() {
        return cx.err(dspan, f("origins"), "a distribution needs at least one origin");
    }
    let mut origins = origins::resolve_origins(cx, i, d.origins)?;
    groups::resolve_origin_groups(cx, i, d.origin_groups, &mut origins)?;

    let key_groups = resolve_key_groups(cx, i, d.key_groups)?;
    let error_responses = Arc::new(errors::resolve_error_responses(cx, i, d.custom_error_responses)?);
    let fle_configs = fle::resolve(cx, i, d.field_level_encryption)?;
    let mut behaviors = Vec::new();
    for (j, b) in d.behaviors.into_iter().enumerate() {
        let bf = f(&format!("behaviors[{j}]"));
        let span = b.span();
        let mut b = b.into_inner();
        let fle_id = b.field_level_encryption_id.take();
        let Some(path) = &b.path else {
            return cx.err(span, format!("{bf}.path"), "a cache behavior needs a path pattern");
        };
        let pattern = PathPattern::parse(path.get_ref()).or_else(|e| cx.err(path.span(), format!("{bf}.path"), e))?;
        let mut behavior = resolve_behavior(cx, &bf, span, b, Some(pattern), &origins, &key_groups)?;
        fle::attach(cx, &bf, fle_id, &fle_configs, &mut behavior)?;
        behaviors.push(behavior);
    }
    let mut default_behavior = match d.default_behavior {
        Some(b) => {
            let span = b.span();
            let mut b = b.into_inner();
            let fle_id = b.field_level_encryption_id.take();
            if let Some(p) = &b.path {
                return cx.err(
                    p.span(),
                    f("default_behavior.path"),
                    "the default behavior matches every path and takes no pattern",
                );
            }
            let mut behavior = resolve_behavior(cx, &f("default_behavior"), span, b, None, &origins, &key_groups)?;
            fle::attach(cx, &f("default_behavior"), fle_id, &fle_configs, &mut behavior)?;
            behavior
        }
        None => Behavior::default_for(0),
    };
    for b in behaviors.iter_mut().chain([&mut default_behavior]) {
        b.error_responses = error_responses.clone();
    }
    Ok(Distribution {
        id,
        enabled: d.enabled,
        comment: d.comment,
        domain_name,
        aliases,
        origins,
        behaviors,
        default_behavior,
        key_groups,
        document: Arc::default(),
    })
}

fn valid_id(s: &str, max: usize, extra: &[u8]) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

fn relative_to(config_file: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match config_file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

/// A TOML syntax or type error, with its line and the key written on that line.
fn toml_error(file: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().to_string();
    match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let line_start = text[..start].rfind('\n').map_or(0, |p| p + 1);
            let line_end = text[start..].find('\n').map_or(text.len(), |p| start + p);
            let line = text[line_start..line_end].trim();
            let field = if line.starts_with('[') {
                Some(line.trim_matches(|c| c == '[' || c == ']').trim().to_string())
            } else {
                line.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_string())
            };
            ConfigError::at(file, text, start, field.filter(|f| !f.is_empty()), message)
        }
        None => ConfigError::whole_file(file, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        resolve(text, Path::new("edge.toml"))
    }

    pub(super) const BASE: &str = "[[distributions]]\nid = \"E1\"\naliases = [\"a.example\"]\n[[distributions.origins]]\nid = \"o\"\nurl = \"http://127.0.0.1:9/base/\"\n";

    #[test]
    fn minimal_distribution() {
        let c = parse(BASE).unwrap();
        let d = &c.distributions[0];
        assert_eq!(d.id, "E1");
        assert!(d.domain_name.starts_with('d') && d.domain_name.ends_with(".edge.mediaedge.invalid"));
        match &d.origins[0].kind {
            OriginKind::Http(h) => {
                assert_eq!(h.path_prefix, "/base");
                assert_eq!(h.authority, "127.0.0.1:9");
            }
            _ => panic!("expected an http origin"),
        }
        assert_eq!(d.default_behavior.default_ttl, DEFAULT_TTL);
    }

    #[test]
    fn errors_name_line_and_field() {
        let e = parse(&format!("{BASE}[[distributions.behaviors]]\npath = \"/x/*\"\norigin = \"nope\"\n")).unwrap_err();
        assert_eq!(e.line, 9, "{e}");
        assert_eq!(e.field.as_deref(), Some("distributions[0].behaviors[0].origin"));
        assert!(e.to_string().starts_with("edge.toml:9:"), "{e}");

        let e = parse(&format!(
            "{BASE}[distributions.default_behavior]\norigin = \"o\"\nmin_ttl = \"10s\"\nmax_ttl = \"5s\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, 9, "{e}");
        assert_eq!(e.field.as_deref(), Some("distributions[0].default_behavior.min_ttl"));

        let e =
            parse(&format!("{BASE}[distributions.default_behavior]\norigin = \"o\"\ndefault_tll = 5\n")).unwrap_err();
        assert_eq!(e.line, 9, "{e}");
        assert_eq!(e.field.as_deref(), Some("default_tll"));
        assert!(e.message.contains("unknown field"), "{e}");

        let e = parse("[server]\nlisten = \"nowhere\"\n").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (2, Some("server.listen")), "{e}");

        let e =
            parse(&format!("{BASE}[distributions.default_behavior]\norigin = \"o\"\ndefault_ttl = \"3 fortnights\"\n"))
                .unwrap_err();
        assert_eq!(e.line, 9, "{e}");

        let e = parse("[server\n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");

        let q: String = (0..11).map(|i| format!("\"q{i}\",")).collect();
        let e = parse(&format!("{BASE}[distributions.default_behavior]\norigin = \"o\"\ncache_key.query = [{q}]\n"))
            .unwrap_err();
        assert!(e.message.contains("at most 10"), "{e}");
    }

    #[test]
    fn key_group_errors_name_line_and_field() {
        let text = format!(
            "{BASE}[[distributions.key_groups]]\nid = \"kg1\"\nkeys = [{{ id = \"K1\", public_key = \"no/such.pem\" }}]\n"
        );
        // Parsing reads no file; the materialise step names the field.
        let mut cfg = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let e = cfg.materialise().unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (9, Some("distributions[0].key_groups[0].keys[0].public_key")), "{e}");
        assert!(e.message.contains("cannot read") && e.message.contains("such.pem"), "{e}");

        let e = parse(&format!("{BASE}[[distributions.key_groups]]\nid = \"kg1\"\n")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("distributions[0].key_groups[0].keys"), "{e}");

        let e =
            parse(&format!("{BASE}[distributions.default_behavior]\norigin = \"o\"\ntrusted_key_groups = [\"kg9\"]\n"))
                .unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (9, Some("distributions[0].default_behavior.trusted_key_groups[0]")),
            "{e}"
        );
    }
}
