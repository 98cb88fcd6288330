//! HTTP and HTTPS origins through hyper-util's pooled client; S3 origins
//! are these, their requests signed just before they are sent.

use super::s3::S3Auth;
use super::{OriginBody, OriginError, OriginRequest, OriginResponse, RequestBody};
use crate::config::{HttpOriginConfig, OriginProtocolPolicy};
use http::header::{self, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::SystemTime;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

pub struct HttpOrigin {
    client: Client<Connector, RequestBody>,
    config: HttpOriginConfig,
    /// `http://authority` and its `Host`, then the same for https.
    plain: (String, HeaderValue),
    secure: (String, HeaderValue),
    /// An S3 origin's signer.
    s3: Option<S3Auth>,
}

/// `scheme://host[:port]` for one protocol, and the `Host` header that goes with it.
fn base(config: &HttpOriginConfig, scheme: &str, port: Option<u16>) -> Result<(String, HeaderValue), String> {
    let authority = match port {
        None => config.authority.clone(),
        Some(p) => {
            let a: http::uri::Authority = config.authority.parse().map_err(|e| format!("origin host: {e}"))?;
            format!("{}:{p}", a.host())
        }
    };
    let host = HeaderValue::from_str(&authority).map_err(|e| format!("origin host: {e}"))?;
    Ok((format!("{scheme}://{authority}"), host))
}

impl HttpOrigin {
    pub fn new(config: HttpOriginConfig, s3: Option<S3Auth>) -> Result<HttpOrigin, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_keepalive(Some(std::time::Duration::from_secs(30)));
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match &config.ca_file {
            Some(ca) => {
                // Loaded by the configuration's materialise step (or now, if it did not run).
                let roots = crate::config::materialise::ca_roots(ca).map_err(|e| e.to_string())?;
                let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
                let tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("origin TLS configuration: {e}"))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                builder.with_tls_config(tls)
            }
            None => system_roots(),
        };
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.keepalive_timeout)
            .pool_max_idle_per_host(config.max_idle_per_host)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        let plain = base(&config, "http", config.http_port)?;
        let secure = base(&config, "https", config.https_port)?;
        Ok(HttpOrigin { client, config, plain, secure, s3 })
    }

    pub async fn send(&self, req: OriginRequest) -> Result<OriginResponse, OriginError> {
        let head = req.method == http::Method::HEAD;
        let (response, request_time) = self.exchange(req).await?;
        let response = self.response(response, request_time);
        match &self.s3 {
            Some(s3) if !head && matches!(response.status.as_u16(), 400 | 403) => s3.check(response).await,
            _ => Ok(response),
        }
    }

    /// Sends an `Upgrade` request: a `101` comes back with the way to the
    /// upgraded connection; any other answer as `send` returns it.
    pub async fn upgrade(&self, req: OriginRequest) -> Result<(OriginResponse, Option<OnUpgrade>), OriginError> {
        let (mut response, request_time) = self.exchange(req).await?;
        let upgrade =
            (response.status() == http::StatusCode::SWITCHING_PROTOCOLS).then(|| hyper::upgrade::on(&mut response));
        Ok((self.response(response, request_time), upgrade))
    }

    async fn exchange(
        &self,
        req: OriginRequest,
    ) -> Result<(http::Response<hyper::body::Incoming>, SystemTime), OriginError> {
        let c = &self.config;
        let https = match c.protocol_policy {
            OriginProtocolPolicy::HttpOnly => false,
            OriginProtocolPolicy::HttpsOnly => true,
            OriginProtocolPolicy::MatchViewer => req.viewer_tls,
        };
        let (base, host) = if https { &self.secure } else { &self.plain };
        let mut headers = req.headers;
        let uri = match &self.s3 {
            None => {
                if !headers.contains_key(header::HOST) {
                    headers.insert(header::HOST, host.clone());
                }
                format!("{base}{}{}", c.path_prefix, req.path_and_query)
            }
            Some(s3) => {
                // Signed for the bucket's host, whatever the viewer sent.
                headers.insert(header::HOST, host.clone());
                let path = format!("{}{}", c.path_prefix, req.path_and_query);
                let signed = s3
                    .signer
                    .sign(req.method.as_str(), &path, &mut headers, SystemTime::now(), super::sigv4::UNSIGNED_PAYLOAD)
                    .map_err(|e| OriginError::Protocol(format!("cannot sign the S3 request: {e}")))?;
                format!("{base}{}", signed.path_and_query)
            }
        };
        // A failed connection is tried again (`connection_attempts`), for a
        // request without a body: nothing of it has reached the origin.
        let attempts = if matches!(req.body, RequestBody::Empty) { c.connection_attempts.max(1) } else { 1 };
        let mut body = Some(req.body);
        let mut attempt = 1;
        let request_time = SystemTime::now();
        let response = loop {
            let last = attempt >= attempts;
            let this_body = if last { body.take().unwrap_or(RequestBody::Empty) } else { RequestBody::Empty };
            let mut builder = http::Request::builder().method(req.method.clone()).uri(uri.as_str());
            if let Some(h) = builder.headers_mut() {
                *h = if last { std::mem::take(&mut headers) } else { headers.clone() };
            }
            let mut request = builder
                .body(this_body)
                .map_err(|e| OriginError::Protocol(format!("cannot build the origin request: {e}")))?;
            if let Some(sink) = &req.interim {
                // 1xx responses go on to the viewer (RFC 9110 §15.2); the final
                // response is what this returns and what may be stored.
                let sink = sink.clone();
                hyper::ext::on_informational(&mut request, move |res| sink(res.status(), res.headers()));
            }
            match tokio::time::timeout(c.read_timeout, self.client.request(request)).await {
                Ok(Ok(r)) => break r,
                Ok(Err(e)) if e.is_connect() && !last => attempt += 1,
                Ok(Err(e)) => {
                    let mut msg = error_chain(&e);
                    if https && msg.contains("certificate") {
                        msg = format!("the origin's TLS certificate did not verify: {msg}");
                    }
                    if attempt > 1 {
                        msg = format!("{msg} ({attempt} attempts)");
                    }
                    return Err(if e.is_connect() { OriginError::Connect(msg) } else { OriginError::Protocol(msg) });
                }
                Err(_) => {
                    return Err(OriginError::Timeout(format!(
                        "no response headers within {} ms",
                        c.read_timeout.as_millis()
                    )))
                }
            }
        };
        Ok((response, request_time))
    }

    fn response(&self, response: http::Response<hyper::body::Incoming>, request_time: SystemTime) -> OriginResponse {
        let response_time = SystemTime::now();
        let (parts, body) = response.into_parts();
        OriginResponse {
            status: parts.status,
            headers: parts.headers,
            body: OriginBody::http(body, self.config.read_timeout),
            request_time,
            response_time,
        }
    }
}

/// A TLS connector builder that trusts the system's roots (none, when they
/// cannot be read: every HTTPS connection then fails verification, clearly).
pub fn system_roots() -> hyper_rustls::HttpsConnectorBuilder<hyper_rustls::builderstates::WantsSchemes> {
    match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b,
        Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ),
    }
}

/// An error with its sources, `outer: inner: ...`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}
