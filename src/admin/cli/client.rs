//! The HTTP client of the admin API: the token, the base URL, calls and their errors.

use super::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Where the token came from, for the 401 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Flag,
    Env,
    File(PathBuf),
    /// No token anywhere: the file that was tried, and why it gave none.
    Missing {
        file: PathBuf,
        why: String,
    },
}

impl TokenSource {
    pub(super) fn explain(&self, base: &str) -> String {
        match self {
            TokenSource::Flag => "the token given with --token was refused".into(),
            TokenSource::Env => "the token in MEDIAEDGE_ADMIN_TOKEN was refused".into(),
            TokenSource::File(p) => format!(
                "the token read from {} was refused: is that the state directory of the edge at {base}? \
                 (set --state-dir, or give the token with --token or MEDIAEDGE_ADMIN_TOKEN)",
                p.display()
            ),
            TokenSource::Missing { file, why } => format!(
                "no token: none given with --token, MEDIAEDGE_ADMIN_TOKEN is not set, and {} {why} \
                 (run the command where the edge runs, or set --state-dir)",
                file.display()
            ),
        }
    }
}

/// Finds the token: `--token`, else `MEDIAEDGE_ADMIN_TOKEN`, else the token file.
pub fn find_token(flag: Option<&str>, env: Option<String>, state_dir: &Path) -> (Option<String>, TokenSource) {
    if let Some(t) = flag.map(str::trim).filter(|t| !t.is_empty()) {
        return (Some(t.to_string()), TokenSource::Flag);
    }
    if let Some(t) = env.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        return (Some(t.to_string()), TokenSource::Env);
    }
    let file = state_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) if !text.trim().is_empty() => (Some(text.trim().to_string()), TokenSource::File(file)),
        Ok(_) => (None, TokenSource::Missing { file, why: "is empty".into() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (None, TokenSource::Missing { file, why: "does not exist".into() })
        }
        Err(e) => (None, TokenSource::Missing { file, why: format!("cannot be read ({e})") }),
    }
}

pub(super) fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The admin API base URL: scheme `http`, host, optional port and path prefix,
/// without a trailing slash. A bare `host:port` gets `http://`.
pub fn normalize_base_url(url: &str) -> Result<String, Failure> {
    let url = url.trim();
    let with_scheme = if url.contains("://") { url.to_string() } else { format!("http://{url}") };
    let uri: http::Uri = with_scheme
        .parse()
        .map_err(|e| Failure::usage(format!("the admin URL {url:?} is not a URL ({e}); e.g. {DEFAULT_ADMIN_URL}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(Failure::usage(format!(
                "the admin URL {url:?} is {other}://: the admin API speaks plain http:// (keep it on loopback, or \
                 put a TLS proxy in front and run the command beside it)"
            )))
        }
        None => return Err(Failure::usage(format!("the admin URL {url:?} has no scheme"))),
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) {
        return Err(Failure::usage(format!("the admin URL {url:?} has no host")));
    }
    if uri.query().is_some() {
        return Err(Failure::usage(format!("the admin URL {url:?} cannot carry a query string")));
    }
    Ok(with_scheme.trim_end_matches('/').to_string())
}

/// One answer of the API.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value, Failure> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Failure::new(
                Exit::Refused,
                format!("the admin API answered {} with a body that is not JSON ({e})", self.status),
            )
        })
    }
}

pub(super) struct Api {
    base: String,
    token: Option<String>,
    token_source: TokenSource,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Api {
    pub(super) fn new(options: &AdminOptions) -> Result<Api, Failure> {
        let url = options.admin.clone().or_else(|| env_var("MEDIAEDGE_ADMIN_URL"));
        let base = normalize_base_url(url.as_deref().unwrap_or(DEFAULT_ADMIN_URL))?;
        let (token, token_source) =
            find_token(options.token.as_deref(), env_var("MEDIAEDGE_ADMIN_TOKEN"), &options.state_dir);
        if let Some(t) = &token {
            if http::HeaderValue::from_str(&format!("Bearer {t}")).is_err() {
                return Err(Failure::usage("the admin token holds characters an HTTP header cannot carry"));
            }
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1).build(connector);
        Ok(Api { base, token, token_source, client })
    }

    /// A GET whose answer is JSON.
    pub(super) async fn get_json(&self, path: &str) -> Result<Value, Failure> {
        self.call(http::Method::GET, path, None, None).await?.json()
    }

    /// One call; API errors (4xx, 5xx) become failures with their exit code.
    pub(super) async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Reply, Failure> {
        let reply = self.send(method, path, body, if_match).await?;
        if reply.status >= 400 {
            return Err(self.api_failure(&reply));
        }
        Ok(reply)
    }

    async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Reply, Failure> {
        let url = format!("{}{path}", self.base);
        let mut req = http::Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::ACCEPT, if path == "/v1/config" { "application/toml" } else { "application/json" })
            .header(http::header::USER_AGENT, concat!("mediaedge/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(etag) = if_match {
            let etag = etag.trim();
            let quoted = if etag.starts_with('"') || etag.starts_with("W/") || etag == "*" {
                etag.to_string()
            } else {
                format!("\"{etag}\"")
            };
            req = req.header(http::header::IF_MATCH, quoted);
        }
        let payload = match body {
            Some(v) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v).unwrap_or_default())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| Failure::usage(format!("cannot make a request for {url}: {e}")))?;
        let exchange = async {
            let resp = self.client.request(req).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(Into::<Box<dyn std::error::Error + Send + Sync>>::into);
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((parts, body))
        };
        let (parts, body) = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Err(_) => {
                return Err(Failure::new(
                    Exit::Unreachable,
                    format!("the admin API at {} did not answer within {}s", self.base, REQUEST_TIMEOUT.as_secs()),
                ))
            }
            Ok(Err(e)) => return Err(self.unreachable(e.as_ref())),
            Ok(Ok(x)) => x,
        };
        let body = body.map_err(|e| self.unreachable(e.as_ref()))?.to_bytes();
        Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body })
    }

    fn unreachable(&self, e: &(dyn std::error::Error + 'static)) -> Failure {
        Failure::new(Exit::Unreachable, format!("cannot reach the admin API at {}: {}", self.base, error_chain(e)))
            .hint("is the edge running (mediaedge serve)? Point --admin (or MEDIAEDGE_ADMIN_URL) at its admin listener")
    }

    /// The failure for an error answer, from the API's error body when it has one.
    fn api_failure(&self, reply: &Reply) -> Failure {
        let exit = Exit::for_status(reply.status);
        let error = serde_json::from_slice::<Value>(&reply.body).ok().and_then(|v| v.get("error").cloned());
        let mut f = match error.as_ref().and_then(|e| Some((e, e.get("code")?.as_str()?))) {
            Some((e, code)) => {
                let message = e.get("message").and_then(Value::as_str).unwrap_or("(no message)");
                let message = match e.get("field").and_then(Value::as_str) {
                    Some(field) => format!("field `{field}`: {message}"),
                    None => message.to_string(),
                };
                Failure { exit, message, api_code: Some(code.to_string()) }
            }
            None => {
                let text = String::from_utf8_lossy(&reply.body);
                let text = text.trim();
                let snippet: String = text.chars().take(200).collect();
                let message = if snippet.is_empty() {
                    format!("HTTP {} from {}", reply.status, self.base)
                } else {
                    format!("HTTP {} from {}: {snippet}", reply.status, self.base)
                };
                Failure::new(exit, message).hint(format!(
                    "that is not an answer of the mediaedge admin API: is {} its admin listener (default port 8081)?",
                    self.base
                ))
            }
        };
        if reply.status == 401 {
            f = f.hint(self.token_source.explain(&self.base));
        }
        f
    }
}

/// An error with its sources, `outer: inner: ...`, without repeats.
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}
