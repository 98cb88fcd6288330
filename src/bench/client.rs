//! The players' HTTP client (hyper-util's pooled legacy client, HTTP/1.1) and
//! URL reference resolution.

use bytes::{Bytes, BytesMut};
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as Legacy;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A manifest larger than this is refused (`too-large`).
pub const MAX_MANIFEST_BYTES: usize = 32 << 20;

const USER_AGENT: &str = concat!("mediaedge-bench/", env!("CARGO_PKG_VERSION"));

/// A successful (2xx) response.
#[derive(Debug)]
pub struct Response {
    /// The body, when asked for; otherwise empty.
    pub body: Bytes,
    /// Body bytes received.
    pub bytes: u64,
    /// Request sent → first body byte (→ end of the response for an empty body).
    pub ttfb: Duration,
    /// Request sent → last body byte.
    pub total: Duration,
}

/// Why a request failed.
#[derive(Debug)]
pub enum Failure {
    /// A non-2xx status (its body was read and dropped).
    Status { status: StatusCode, bytes: u64 },
    /// The connection could not be made.
    Connect(String),
    /// No complete response within the request timeout.
    Timeout { bytes: u64 },
    /// The connection failed or closed mid-request or mid-body.
    Io { message: String, bytes: u64 },
    /// A manifest over [`MAX_MANIFEST_BYTES`].
    TooLarge { bytes: u64 },
}

impl Failure {
    /// The key errors are counted under.
    pub fn kind(&self) -> String {
        match self {
            Failure::Status { status, .. } => status.as_u16().to_string(),
            Failure::Connect(_) => "connect".into(),
            Failure::Timeout { .. } => "timeout".into(),
            Failure::Io { .. } => "io".into(),
            Failure::TooLarge { .. } => "too-large".into(),
        }
    }

    pub fn bytes(&self) -> u64 {
        match self {
            Failure::Status { bytes, .. }
            | Failure::Timeout { bytes }
            | Failure::Io { bytes, .. }
            | Failure::TooLarge { bytes } => *bytes,
            Failure::Connect(_) => 0,
        }
    }

    pub fn is_status(&self, code: u16) -> bool {
        matches!(self, Failure::Status { status, .. } if status.as_u16() == code)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status { status, .. } => write!(f, "HTTP {status}"),
            Failure::Connect(m) => write!(f, "cannot connect: {m}"),
            Failure::Timeout { .. } => f.write_str("timed out"),
            Failure::Io { message, .. } => write!(f, "connection failed: {message}"),
            Failure::TooLarge { .. } => write!(f, "response larger than {MAX_MANIFEST_BYTES} bytes"),
        }
    }
}

/// What to ask for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Want {
    /// Keep the body (manifests).
    pub keep_body: bool,
    /// `Range: bytes=offset-(offset+length-1)`.
    pub range: Option<(u64, u64)>,
}

pub struct Client {
    http: Legacy<Connector, Empty<Bytes>>,
    limit: Option<Arc<Semaphore>>,
}

impl Client {
    /// `concurrency_limit`: most requests in flight at once, over all players.
    pub fn new(concurrency_limit: Option<usize>, idle_per_host: usize) -> Client {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let connector = crate::origin::system_roots().https_or_http().enable_http1().wrap_connector(http);
        let http = Legacy::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(idle_per_host.max(1))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Client { http, limit: concurrency_limit.map(|n| Arc::new(Semaphore::new(n.max(1)))) }
    }

    /// GET `uri`, the body read to its end, all within `timeout`.
    pub async fn get(&self, uri: &Uri, want: Want, timeout: Duration) -> Result<Response, Failure> {
        let _permit = match &self.limit {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        };
        let mut request = Request::get(uri.clone()).header(header::USER_AGENT, USER_AGENT);
        if let Some((offset, length)) = want.range {
            let last = offset.saturating_add(length.max(1) - 1);
            request = request.header(header::RANGE, format!("bytes={offset}-{last}"));
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| Failure::Io { message: format!("cannot build the request: {e}"), bytes: 0 })?;
        let start = Instant::now();
        let mut bytes = 0u64;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                let message = crate::origin::error_chain(&e);
                if e.is_connect() {
                    Failure::Connect(message)
                } else {
                    Failure::Io { message, bytes: 0 }
                }
            })?;
            let (parts, mut body) = response.into_parts();
            let ok = parts.status.is_success();
            let mut kept = BytesMut::new();
            let mut ttfb = None;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| Failure::Io { message: crate::origin::error_chain(&e), bytes })?;
                let Ok(data) = frame.into_data() else { continue };
                if data.is_empty() {
                    continue;
                }
                ttfb.get_or_insert_with(|| start.elapsed());
                bytes += data.len() as u64;
                if ok && want.keep_body {
                    if kept.len() + data.len() > MAX_MANIFEST_BYTES {
                        return Err(Failure::TooLarge { bytes });
                    }
                    kept.extend_from_slice(&data);
                }
            }
            let total = start.elapsed();
            if !ok {
                return Err(Failure::Status { status: parts.status, bytes });
            }
            Ok(Response { body: kept.freeze(), bytes, ttfb: ttfb.unwrap_or(total), total })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Timeout { bytes }),
        }
    }
}

/// Characters a manifest may write in a URI that `http::Uri` refuses.
const ENCODE: &AsciiSet =
    &CONTROLS.add(b' ').add(b'"').add(b'<').add(b'>').add(b'\\').add(b'^').add(b'`').add(b'{').add(b'|').add(b'}');

/// Resolves `reference` against `base` (RFC 3986 §5.2): absolute URLs,
/// network-path (`//host/..`), absolute-path and relative references, with
/// dot segments removed; the fragment dropped. Only http and https results.
pub fn resolve(base: &Uri, reference: &str) -> Option<Uri> {
    let reference = reference.trim();
    let reference = reference.split('#').next().unwrap_or("");
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    let has_scheme = reference
        .split_once(':')
        .is_some_and(|(s, _)| s.starts_with(|c: char| c.is_ascii_alphabetic()) && s.chars().all(is_scheme_char));
    let target = if has_scheme {
        reference.to_string()
    } else if let Some(rest) = reference.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else {
        let (ref_path, ref_query) = match reference.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (reference, None),
        };
        let (path, query) = if ref_path.is_empty() {
            (base.path().to_string(), ref_query.or(base.query()))
        } else if ref_path.starts_with('/') {
            (remove_dot_segments(ref_path), ref_query)
        } else {
            let dir = base.path().rsplit_once('/').map_or("", |(d, _)| d);
            (remove_dot_segments(&format!("{dir}/{ref_path}")), ref_query)
        };
        match query {
            Some(q) => format!("{scheme}://{authority}{path}?{q}"),
            None => format!("{scheme}://{authority}{path}"),
        }
    };
    let encoded = utf8_percent_encode(&target, ENCODE).to_string();
    let uri: Uri = encoded.parse().ok()?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Some(uri),
        _ => None,
    }
}

fn is_scheme_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, s) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *s {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// `uri` with `name=value` query parameters replaced or added.
pub fn with_query(uri: &Uri, params: &[(&str, String)]) -> Option<Uri> {
    let mut kept: Vec<String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !params.iter().any(|(n, _)| p.split('=').next() == Some(*n)))
        .map(str::to_string)
        .collect();
    kept.extend(params.iter().map(|(n, v)| format!("{n}={v}")));
    let mut parts = uri.clone().into_parts();
    let path = uri.path();
    parts.path_and_query = Some(format!("{path}?{}", kept.join("&")).parse().ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(base: &str, reference: &str) -> Option<String> {
        let base: Uri = base.parse().expect("base");
        resolve(&base, reference).map(|u| u.to_string())
    }

    #[test]
    fn rfc3986_examples() {
        // RFC 3986 §5.4.1, with an http base.
        let b = "http://a/b/c/d;p?q";
        for (reference, want) in [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            (";x", "http://a/b/c/;x"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
        ] {
            assert_eq!(r(b, reference).as_deref(), Some(want), "{reference:?}");
        }
    }

    #[test]
    fn media_references() {
        let master = "http://127.0.0.1:8080/hls-ts/master.m3u8?token=1";
        assert_eq!(r(master, "v0/index.m3u8").as_deref(), Some("http://127.0.0.1:8080/hls-ts/v0/index.m3u8"));
        assert_eq!(r(master, "https://cdn.example/x.ts").as_deref(), Some("https://cdn.example/x.ts"));
        assert_eq!(r(master, "seg 1.ts").as_deref(), Some("http://127.0.0.1:8080/hls-ts/seg%201.ts"));
        assert_eq!(r(master, "ftp://x/y"), None);
        assert_eq!(r(master, "data:text/plain,x"), None);
    }

    #[test]
    fn query_parameters() {
        let u: Uri = "http://h/ll/index.m3u8?a=1&_HLS_msn=3".parse().expect("uri");
        let q = with_query(&u, &[("_HLS_msn", "5".into()), ("_HLS_part", "2".into())]).expect("uri");
        assert_eq!(q.to_string(), "http://h/ll/index.m3u8?a=1&_HLS_msn=5&_HLS_part=2");
        let u: Uri = "http://h/index.m3u8".parse().expect("uri");
        let q = with_query(&u, &[("_HLS_msn", "0".into())]).expect("uri");
        assert_eq!(q.to_string(), "http://h/index.m3u8?_HLS_msn=0");
    }
}
