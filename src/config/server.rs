//! The node's own settings: `[server]` (listeners, timeouts, bounds, the
//! access log, certificates) and `[admin]` (the control plane).

use super::{LoadedCertificate, Place, Slot};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The control plane: admin API listener, its token, and the durable state.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// The admin API listener; `None`: no admin API.
    pub listen: Option<SocketAddr>,
    /// Bearer token every admin call must carry. `None`: a random token is made
    /// at start and written to `<state_dir>/admin.token` (loopback listeners only).
    pub token: Option<String>,
    /// Where the durable state lives (`state.redb`, `admin.token`).
    pub state_dir: PathBuf,
    /// What the distributions of this configuration are seeded from, as
    /// messages name it: "the built-in demo", "--origin", a file's path.
    pub seed_source: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 8081))),
            token: None,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            seed_source: "the configuration".to_string(),
        }
    }
}

/// The environment variable read for the admin token when the file sets none.
pub const ADMIN_TOKEN_ENV: &str = "MEDIAEDGE_ADMIN_TOKEN";

/// The state directory when the configuration names none (in the working directory).
pub const DEFAULT_STATE_DIR: &str = ".mediaedge";

/// When the access log file is rotated: by size, by age, or both; rotated
/// files are named `<file>.<UTC timestamp>` and the newest `keep` are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogRotation {
    /// Rotate once the file reaches this many bytes.
    pub max_bytes: Option<u64>,
    /// Rotate when the file is this old (wall clock, from its opening).
    pub interval: Option<Duration>,
    /// Rotated files kept (older ones are deleted); 0 keeps all.
    pub keep: usize,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    /// `x-edge-location` in access logs; also names this node in `Via`.
    pub edge_location: String,
    /// Generated distribution domains are `d<id>.<edge_domain>`.
    pub edge_domain: String,
    pub access_log: Option<LogTarget>,
    /// Rotation of a file access log.
    pub access_log_rotation: LogRotation,
    /// Whether the access log records the `Cookie` header.
    pub log_cookies: bool,
    /// A viewer must send its request head within this time.
    pub header_read_timeout: Duration,
    /// Largest request head accepted (431 beyond).
    pub max_header_bytes: usize,
    /// From accept to a complete first request head (TLS handshake, HTTP/2
    /// preface and first HEADERS included); a connection that takes longer is closed.
    pub request_head_timeout: Duration,
    /// An HTTP/1.1 keep-alive connection with no request in progress is closed after this.
    pub keepalive_timeout: Duration,
    /// An HTTP/2 connection with no open stream is closed (GOAWAY) after this.
    pub http2_idle_timeout: Duration,
    /// HTTP/2 PING interval on a connection; `None`: no pings.
    pub http2_ping_interval: Option<Duration>,
    /// An HTTP/2 connection whose PING is not answered within this is closed.
    pub http2_ping_timeout: Duration,
    /// Most viewer connections open at once (over all listeners); `None`: fitted
    /// to the open-file limit at start. Beyond it, new connections wait in the backlog.
    pub max_connections: Option<usize>,
    /// Most WebSocket connections joined at once; beyond it an upgrade gets 503.
    pub websocket_max_connections: usize,
    /// A WebSocket connection with no bytes either way for this long is closed.
    pub websocket_idle_timeout: Duration,
    /// At shutdown (SIGTERM) or upgrade: how long connections may take to
    /// finish the responses they have started before the process exits.
    pub shutdown_timeout: Duration,
    /// HTTPS listeners (TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by ALPN).
    pub https_listen: Vec<SocketAddr>,
    /// Certificates for the HTTPS listeners, chosen by SNI.
    pub certificates: Vec<CertificateConfig>,
}

/// One certificate and key (PEM files), and the host names it serves.
#[derive(Debug, Clone)]
pub struct CertificateConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Where `cert` and `key` are written (for errors).
    pub cert_at: Place,
    pub key_at: Place,
    /// The pair, filled by the materialise step.
    pub loaded: Slot<LoadedCertificate>,
    /// Lower-case names; `*.example.com` covers one label under example.com.
    pub hosts: Vec<String>,
    /// Used when SNI matches no host or is absent.
    pub default: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            edge_location: "EDGE1".into(),
            edge_domain: "edge.mediaedge.invalid".into(),
            access_log: None,
            access_log_rotation: LogRotation::default(),
            log_cookies: false,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            request_head_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            http2_idle_timeout: Duration::from_secs(120),
            http2_ping_interval: Some(Duration::from_secs(30)),
            http2_ping_timeout: Duration::from_secs(20),
            max_connections: None,
            websocket_max_connections: 10_000,
            websocket_idle_timeout: Duration::from_secs(600),
            shutdown_timeout: Duration::from_secs(30),
            https_listen: Vec::new(),
            certificates: Vec::new(),
        }
    }
}
