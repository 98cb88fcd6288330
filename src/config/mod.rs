//! Configuration: the TOML file, the built-in demo, and `serve --origin URL`.
//!
//! The file is read into `raw` structures (with spans, for error messages), then
//! resolved and validated into the model below: plain data, with the paths of
//! the files it names and empty slots for their contents. No other file is
//! read there; `materialise` then reads each named file once and fills the
//! slots. Every error, from either step, names the file, the line and the field.

mod error;
pub mod error_responses;
mod loaded;
pub mod materialise;
pub mod origin_request;
pub mod pattern;
mod raw;
pub mod response_headers;
pub mod s3;
mod server;
pub mod units;

pub use error::ConfigError;
pub use error_responses::{ErrorResponse, ErrorResponses};
pub use loaded::{CaFile, KeySource, LoadedCertificate, Place, Slot};
pub use materialise::Materialised;
pub use origin_request::{ForwardedHeaders, OriginRequestPolicy, ViewerHeader};
pub use pattern::{HostPattern, PathPattern};
pub use response_headers::ResponseHeadersPolicy;
pub use s3::{S3Credentials, S3OriginConfig, Secret};
pub use server::{
    AdminConfig, CertificateConfig, LogRotation, LogTarget, ServerConfig, ADMIN_TOKEN_ENV, DEFAULT_STATE_DIR,
};

use http::header::{HeaderName, HeaderValue};
use http::Method;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The whole resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub cache: CacheConfig,
    pub admin: AdminConfig,
    pub distributions: Vec<Arc<Distribution>>,
    /// The file's tables other than `distributions` (for `export-config`).
    pub base_document: toml::Table,
}

/// How a behavior treats viewers on plain HTTP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ViewerProtocolPolicy {
    #[default]
    AllowAll,
    /// 301 to the same URL on HTTPS.
    RedirectToHttps,
    /// 403.
    HttpsOnly,
}

/// Which protocol the edge uses towards an HTTP origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginProtocolPolicy {
    HttpOnly,
    HttpsOnly,
    /// HTTPS when the viewer came over TLS, HTTP otherwise.
    MatchViewer,
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Byte budget of the in-memory store.
    pub memory_bytes: u64,
    /// Larger responses are passed through, not stored.
    pub max_object_bytes: u64,
    /// How long a request waits for another request's fill to produce headers
    /// before it goes to the origin on its own.
    pub lock_timeout: Duration,
    /// How long an uncacheable answer makes later requests skip the wait.
    pub hit_for_pass_ttl: Duration,
    /// The error-caching minimum TTL of every error status a distribution's
    /// `custom_error_responses` does not name (docs/caching.md, "Origin errors").
    pub error_ttl: Duration,
    /// The disk tier under the memory cache (`[cache.disk]`), if configured.
    pub disk: Option<DiskConfig>,
    /// Invalidations from the state store, applied to the disk tier as its
    /// index is rebuilt at start (filled at start, never from the file).
    pub replay: Vec<ReplayedInvalidation>,
}

/// `[cache.disk]`: see docs/disk-cache.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub size_bytes: u64,
    /// The unit of eviction: the oldest segment is emptied when room is needed.
    pub segment_bytes: u64,
    pub admission: DiskAdmission,
    /// After a write fault, how long until writing is tried again.
    pub write_retry: std::time::Duration,
}

/// Which objects are written to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskAdmission {
    /// Every storable object, when its fill finishes.
    Always,
    /// Objects requested a second time (a hit, or a second fill of the key),
    /// written when memory evicts them, or at once when hot in memory (a
    /// third memory hit): a one-pass crawl does not wash the disk, and the
    /// tiers hold different objects.
    SecondHit,
}

/// An invalidation as the state store recorded it.
#[derive(Debug, Clone)]
pub struct ReplayedInvalidation {
    pub distribution: String,
    pub paths: Vec<String>,
    pub create_ms: u64,
}

/// `Debug` is written by hand (in `s3`): the document without its secrets.
#[derive(Clone)]
pub struct Distribution {
    pub id: String,
    pub enabled: bool,
    pub comment: String,
    /// `d<13 chars>.<edge_domain>`, stable for a given id.
    pub domain_name: String,
    pub aliases: Vec<HostPattern>,
    pub origins: Vec<Arc<OriginConfig>>,
    /// Ordered; the first match wins.
    pub behaviors: Vec<Behavior>,
    pub default_behavior: Behavior,
    /// Public keys for signed URLs and cookies, named by behaviors.
    pub key_groups: Vec<Arc<KeyGroup>>,
    /// The `[[distributions]]` table this was made from, standing on its own
    /// (absolute paths, inline keys): what the store keeps and the API shows.
    pub document: Arc<toml::Table>,
}

/// A trusted key group: public keys whose signatures a behavior accepts.
/// Several keys let a key be replaced without downtime.
#[derive(Debug, Clone)]
pub struct KeyGroup {
    pub id: String,
    pub keys: Vec<TrustedKey>,
}

/// A public key and its id (the `Key-Pair-Id` that signed URLs name).
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub id: String,
    pub source: KeySource,
    /// Where `public_key` and `id` are written (for errors).
    pub at: Place,
    pub id_at: Place,
    /// The key, filled by the materialise step; a key not loaded verifies nothing.
    pub key: Slot<crate::security::signature::PublicKey>,
}

impl TrustedKey {
    /// A key made in code rather than read from a configuration.
    pub fn new(id: impl Into<String>, key: crate::security::signature::PublicKey) -> TrustedKey {
        TrustedKey {
            id: id.into(),
            source: KeySource::Inline(String::new()),
            at: Place::default(),
            id_at: Place::default(),
            key: Slot::filled(key),
        }
    }
}

impl Distribution {
    /// The behavior for a URI path: the first pattern that matches, else the default.
    pub fn behavior_for(&self, path: &str) -> &Behavior {
        self.behaviors
            .iter()
            .find(|b| b.pattern.as_ref().is_some_and(|p| p.matches(path)))
            .unwrap_or(&self.default_behavior)
    }
}

#[derive(Debug, Clone)]
pub struct OriginConfig {
    pub id: String,
    pub kind: OriginKind,
    /// Added to (or replacing) headers of every request sent to this origin.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Debug, Clone)]
pub enum OriginKind {
    Http(HttpOriginConfig),
    Folder(FolderOriginConfig),
    /// A private S3 bucket, requests signed with SigV4 (docs/s3-origins.md).
    S3(Box<S3OriginConfig>),
    /// An origin group: its members tried in order (docs/resilience.md).
    Group(OriginGroupConfig),
}

/// `[[distributions.origin_groups]]`: a primary and its fallbacks.
#[derive(Debug, Clone)]
pub struct OriginGroupConfig {
    /// Indices of the member origins in the distribution's `origins`, in
    /// order (the primary first); never groups themselves.
    pub members: Vec<usize>,
    /// Answers that send the request on to the next member (besides a failed
    /// connection and a timeout, which always do).
    pub failover_status: Vec<http::StatusCode>,
    /// After this many failures in a row a member is skipped ...
    pub eject_after: u32,
    /// ... for this long, then tried again by one request.
    pub eject_for: Duration,
}

#[derive(Debug, Clone)]
pub struct HttpOriginConfig {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]` as written.
    pub authority: String,
    /// Prefix added before every request path (no trailing slash).
    pub path_prefix: String,
    pub connect_timeout: Duration,
    /// How many times a connection is tried before the origin counts as
    /// unreachable (1-3, CloudFront's `ConnectionAttempts`).
    pub connection_attempts: u8,
    /// Longest wait for response headers, and for each piece of the body.
    pub read_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub keepalive_timeout: Duration,
    pub max_idle_per_host: usize,
    /// Verify the origin's certificate against this PEM bundle instead of the system roots.
    pub ca_file: Option<CaFile>,
    /// The URL's scheme unless `protocol_policy` says otherwise.
    pub protocol_policy: OriginProtocolPolicy,
    /// Ports for match-viewer (default: the URL's port).
    pub http_port: Option<u16>,
    pub https_port: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct FolderOriginConfig {
    pub root: PathBuf,
    /// Where `folder` is written (the materialise step checks it is a folder).
    pub at: Place,
}

#[derive(Debug, Clone)]
pub struct Behavior {
    /// `None` for the default behavior.
    pub pattern: Option<PathPattern>,
    /// Index into `Distribution::origins`.
    pub origin: usize,
    pub allowed_methods: Vec<Method>,
    pub min_ttl: Duration,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    pub compress: bool,
    pub cache_key: CacheKeyPolicy,
    /// What else reaches the origin, un-keyed (docs/configuration.md).
    pub origin_request: OriginRequestPolicy,
    pub streaming: StreamingPolicy,
    /// Non-empty: every request needs a valid signed URL or signed cookies by
    /// a key of one of these groups (see docs/private-content.md).
    pub trusted_key_groups: Vec<Arc<KeyGroup>>,
    /// Carry the viewer's signing query parameters into the URIs of the
    /// manifests this behavior serves (see docs/private-content.md).
    pub propagate_tokens: bool,
    pub viewer_protocol_policy: ViewerProtocolPolicy,
    /// What becomes of a cacheable response that carries `Set-Cookie`.
    pub set_cookie: SetCookiePolicy,
    /// Without explicit freshness, a response with `Last-Modified` is fresh for
    /// 10% of its age at arrival (RFC 9111 §4.2.2) instead of `default_ttl`.
    pub heuristic_freshness: bool,
    /// How long past its lifetime a copy may stand in for an origin that
    /// fails (5xx, unreachable, timed out) when the origin gave no
    /// `stale-if-error` of its own (RFC 5861). Zero: never.
    pub stale_if_error: Duration,
    /// The distribution's custom error responses (the same for all its
    /// behaviors): how long error answers are kept.
    pub error_responses: Arc<ErrorResponses>,
    /// Fetch and store objects in slices of this many bytes, each its own
    /// cache entry fetched with a `Range` request (see docs/caching.md).
    /// `None`: whole objects.
    pub slice_size: Option<u64>,
    /// An `Upgrade: websocket` request is joined to the origin (see docs/websockets.md).
    pub websocket: bool,
    /// Form fields of POST bodies encrypted before they reach the origin
    /// (CloudFront's `FieldLevelEncryptionId`; docs/field-level-encryption.md).
    pub field_level_encryption: Option<Arc<crate::security::fle::FleConfig>>,
    /// Headers added to and removed from the responses to viewers, CORS
    /// answered at the edge (see docs/response-headers.md).
    pub response_headers: Option<Arc<ResponseHeadersPolicy>>,
}

/// What a behavior does with a cacheable response that carries `Set-Cookie`
/// (see docs/caching.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCookiePolicy {
    /// Never stored: the response goes to its viewer, later requests go to the
    /// origin (hit-for-pass).
    Pass,
    /// Stored without its `Set-Cookie`: the viewer whose request filled it gets
    /// the cookie, every other viewer gets the response without one.
    Strip,
    /// Stored with its `Set-Cookie`, which every viewer of the copy receives
    /// (CloudFront's behaviour when it forwards cookies). Only for cookies that
    /// are not private to one viewer.
    Store,
}

/// Streaming defaults of a behavior (see docs/streaming.md).
#[derive(Debug, Clone)]
pub struct StreamingPolicy {
    /// Media-aware TTLs when the origin sends no freshness. On by default,
    /// off when the behavior sets `default_ttl` (unless `media_ttls = true`).
    pub media_ttls: bool,
    pub master_playlist_ttl: Duration,
    /// VOD media playlists and static MPDs.
    pub vod_manifest_ttl: Duration,
    /// Live media playlists; `None`: half the target duration (half the part
    /// target for LL-HLS); dynamic MPDs use their minimumUpdatePeriod.
    pub live_manifest_ttl: Option<Duration>,
    /// Media and init segments.
    pub segment_ttl: Duration,
    /// Hold LL-HLS `_HLS_msn`/`_HLS_part` requests at the edge.
    pub blocking_reload: bool,
    /// Segments fetched ahead when a media playlist is filled.
    pub prefetch_segments: usize,
}

impl Default for StreamingPolicy {
    fn default() -> Self {
        StreamingPolicy {
            media_ttls: true,
            master_playlist_ttl: Duration::from_secs(5),
            vod_manifest_ttl: Duration::from_secs(86_400),
            live_manifest_ttl: None,
            segment_ttl: Duration::from_secs(31_536_000),
            blocking_reload: true,
            prefetch_segments: 0,
        }
    }
}

impl Behavior {
    pub fn allows(&self, method: &Method) -> bool {
        self.allowed_methods.iter().any(|m| m == method)
    }
}

#[derive(Debug, Clone, Default)]
pub struct CacheKeyPolicy {
    pub query: KeyList,
    /// Lower-case header names whose values are part of the key.
    pub headers: Vec<HeaderName>,
    pub cookies: KeyList,
}

/// Which query parameters (or cookies) are part of the cache key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KeyList {
    #[default]
    None,
    All,
    Allow(Vec<String>),
}

impl KeyList {
    pub fn includes(&self, name: &str) -> bool {
        match self {
            KeyList::None => false,
            KeyList::All => true,
            KeyList::Allow(names) => names.iter().any(|n| n == name),
        }
    }
}

pub const DEFAULT_TTL: Duration = Duration::from_secs(86_400);
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(31_536_000);

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory_bytes: 1 << 30,
            max_object_bytes: 256 << 20,
            lock_timeout: Duration::from_secs(10),
            hit_for_pass_ttl: Duration::from_secs(60),
            error_ttl: Duration::from_secs(10),
            disk: None,
            replay: Vec::new(),
        }
    }
}

impl Behavior {
    /// The behavior CloudFront gives a new distribution: GET and HEAD, TTLs
    /// 0 / 24 h / 1 year, no compression, no query strings, headers or cookies in the key.
    pub fn default_for(origin: usize) -> Self {
        Behavior {
            pattern: None,
            origin,
            allowed_methods: vec![Method::GET, Method::HEAD],
            min_ttl: Duration::ZERO,
            default_ttl: DEFAULT_TTL,
            max_ttl: DEFAULT_MAX_TTL,
            compress: false,
            cache_key: CacheKeyPolicy::default(),
            origin_request: OriginRequestPolicy::default(),
            streaming: StreamingPolicy::default(),
            trusted_key_groups: Vec::new(),
            propagate_tokens: false,
            viewer_protocol_policy: ViewerProtocolPolicy::AllowAll,
            set_cookie: SetCookiePolicy::Pass,
            heuristic_freshness: false,
            stale_if_error: Duration::ZERO,
            error_responses: Arc::default(),
            slice_size: None,
            websocket: true,
            field_level_encryption: None,
            response_headers: None,
        }
    }
}

/// The full path (`default_behavior.default_ttl`, `origins[1].url`) of the one
/// place a key is used in a document; `None` when it is used in several or none.
fn unique_path(doc: &toml::Table, key: &str) -> Option<String> {
    fn walk(v: &toml::Value, at: String, key: &str, found: &mut Vec<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, x) in t {
                    let here = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                    if k == key {
                        found.push(here.clone());
                    }
                    walk(x, here, key, found);
                }
            }
            toml::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, format!("{at}[{i}]"), key, found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(&toml::Value::Table(doc.clone()), String::new(), key, &mut found);
    (found.len() == 1).then(|| found.remove(0))
}

/// A configuration file: the base settings and these distribution documents.
pub fn export_toml(base: &toml::Table, mut distributions: Vec<toml::Table>) -> String {
    // Secrets stay out of files made from an export.
    distributions.iter_mut().for_each(s3::redact_document);
    // The settings first, then the distributions (TOML allows either order;
    // people read this one).
    let none = distributions.is_empty();
    let mut dists = toml::Table::new();
    dists.insert(
        "distributions".into(),
        toml::Value::Array(distributions.into_iter().map(toml::Value::Table).collect()),
    );
    match (toml::to_string_pretty(base), toml::to_string_pretty(&dists)) {
        (Ok(a), Ok(b)) if a.is_empty() => b,
        // `distributions = []` after a table would land inside that table.
        (Ok(a), Ok(_)) if none => a,
        (Ok(a), Ok(b)) => format!("{a}\n{b}"),
        (Err(e), _) | (_, Err(e)) => format!("# cannot write the configuration as TOML: {e}\n"),
    }
}

/// `d` + 13 lower-case characters derived from the id + the edge domain.
pub fn domain_name_for(id: &str, edge_domain: &str) -> String {
    // FNV-1a over the id, then base-36: stable across restarts for a given id.
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in id.bytes() {
        h ^= b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(16 + edge_domain.len());
    out.push('d');
    for _ in 0..13 {
        out.push(DIGITS[(h % 36) as usize] as char);
        h /= 36;
    }
    out.push('.');
    out.push_str(edge_domain);
    out
}

/// A new random distribution id in CloudFront's shape: `E` + 13 upper-case characters.
pub fn new_distribution_id() -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut id = String::from("E");
    for _ in 0..13 {
        id.push(DIGITS[fastrand::usize(..DIGITS.len())] as char);
    }
    id
}

impl Config {
    /// Reads a config file and loads the files it names: [`Config::read`]
    /// then [`Config::materialise`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut cfg = Self::read(path)?;
        cfg.materialise()?;
        Ok(cfg)
    }

    /// Reads a config file and checks it, without reading the files it names.
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::whole_file(path, format!("cannot read the file: {e}")))?;
        let mut cfg = Self::from_text(&text, path)?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        cfg.admin.seed_source = format!("the configuration file {}", absolute.display());
        Ok(cfg)
    }

    /// Parses config text and loads the files it names; `path` is used for
    /// error messages and to resolve relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg = Self::from_text(text, path)?;
        cfg.materialise()?;
        Ok(cfg)
    }

    /// Parses and checks config text: the model with paths, places and empty
    /// slots. No file is read; [`Config::materialise`] reads them.
    pub fn from_text(text: &str, path: &Path) -> Result<Config, ConfigError> {
        raw::resolve(text, path)
    }

    /// Resolves one distribution document (a `[[distributions]]` table, as the
    /// admin API receives it) with the same checks as the file, and loads the
    /// files it names. Errors name the field within the distribution
    /// (`behaviors[0].origin`); `source` names where it came from in messages.
    pub fn distribution_from_document(
        doc: &toml::Table,
        edge_domain: &str,
        source: &str,
    ) -> Result<Distribution, ConfigError> {
        let mut dist = Arc::new(Self::document(doc, edge_domain, source)?);
        materialise::distribution(&mut dist, &mut materialise::Reader::default())?;
        Ok(Arc::unwrap_or_clone(dist))
    }

    /// [`Config::distribution_from_document`] without reading any file.
    pub fn document(doc: &toml::Table, edge_domain: &str, source: &str) -> Result<Distribution, ConfigError> {
        let mut server = toml::Table::new();
        server.insert("edge_domain".into(), toml::Value::String(edge_domain.into()));
        let mut whole = toml::Table::new();
        whole.insert("server".into(), toml::Value::Table(server));
        whole.insert("distributions".into(), toml::Value::Array(vec![toml::Value::Table(doc.clone())]));
        let text = toml::to_string(&whole)
            .map_err(|e| ConfigError::whole_file(Path::new(source), format!("cannot be written as TOML: {e}")))?;
        let mut cfg = raw::resolve_document(&text, Path::new(source), doc)?;
        match cfg.distributions.pop() {
            Some(d) if cfg.distributions.is_empty() => Ok(Arc::unwrap_or_clone(d)),
            _ => Err(ConfigError::whole_file(Path::new(source), "holds no distribution")),
        }
    }

    /// Two distributions with one id, or an alternate domain name claimed twice.
    pub fn conflicts(distributions: &[Arc<Distribution>]) -> Option<String> {
        raw::conflicts(distributions)
    }

    /// The configuration as a TOML file: the base settings and these distributions.
    pub fn export_toml(&self) -> String {
        export_toml(&self.base_document, self.distributions.iter().map(|d| (*d.document).clone()).collect())
    }

    /// One distribution answering every host, in front of one origin URL or folder.
    pub fn single_origin(origin: &str, listen: Option<SocketAddr>) -> Result<Config, ConfigError> {
        let mut text = String::from(
            "[[distributions]]\nid = \"EDEFAULT\"\naliases = [\"*\"]\n\n[[distributions.origins]]\nid = \"origin\"\n",
        );
        if origin.starts_with("http://") || origin.starts_with("https://") {
            text.push_str(&format!("url = {}\n", toml_string(origin)));
        } else {
            text.push_str(&format!("folder = {}\n", toml_string(origin)));
        }
        text.push_str("\n[distributions.default_behavior]\norigin = \"origin\"\n");
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let mut cfg = raw::resolve(&text, &cwd.join("--origin"))?;
        cfg.materialise()?;
        cfg.admin.seed_source = "--origin".to_string();
        if let Some(addr) = listen {
            cfg.server.listen = vec![addr];
        }
        Ok(cfg)
    }

    /// The built-in demo: the bundled `test-media/` folder behind one distribution
    /// on 127.0.0.1:8080, with streaming-friendly behaviors, and CORS open to
    /// pages on every origin.
    pub fn demo(media_root: &Path, listen: Option<SocketAddr>) -> Result<Config, ConfigError> {
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:8080"
access_log = "-"

[[distributions]]
id = "EDEMO"
comment = "built-in demo over test-media/"
aliases = ["*"]

[[distributions.origins]]
id = "test-media"
folder = {root}

# Manifests and segments get streaming TTLs from what they are (docs/streaming.md).
[distributions.default_behavior]
origin = "test-media"
compress = true

# A page on any origin may play the bundled streams (docs/response-headers.md).
[distributions.default_behavior.response_headers.cors]
allow_origins = ["*"]
allow_methods = ["GET", "HEAD", "OPTIONS"]
allow_headers = ["*"]
expose_headers = ["*"]
max_age = "10m"
"#,
            root = toml_string(&media_root.to_string_lossy())
        );
        let mut cfg = raw::resolve(&text, Path::new("<built-in demo>"))?;
        cfg.materialise()?;
        cfg.admin.seed_source = "the built-in demo".to_string();
        if let Some(addr) = listen {
            cfg.server.listen = vec![addr];
        }
        Ok(cfg)
    }
}

fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_without_distributions_exports_to_one_that_parses() {
        // Found by fuzzing: the export put `distributions = []` after the
        // `[server]` table, inside it, and the exported file did not parse.
        let path = Path::new("edge.toml");
        let cfg = Config::parse("[server]\nedge_location = \"FRA1\"\n", path).unwrap();
        let exported = cfg.export_toml();
        let again = Config::parse(&exported, path).unwrap_or_else(|e| panic!("{e}\n{exported}"));
        assert!(again.distributions.is_empty());
        assert_eq!(again.export_toml(), exported);
    }
}
