//! HTTP and HTTPS origins through hyper-util's pooled client.

use super::{OriginBody, OriginError, OriginRequest, OriginResponse, RequestBody};
use crate::config::HttpOriginConfig;
use http::header::{self, HeaderValue};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::SystemTime;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

pub struct HttpOrigin {
    client: Client<Connector, RequestBody>,
    config: HttpOriginConfig,
    host: HeaderValue,
}

impl HttpOrigin {
    pub fn new(config: HttpOriginConfig) -> Result<HttpOrigin, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_keepalive(Some(std::time::Duration::from_secs(30)));
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_native_roots() {
            Ok(b) => b,
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            ),
        };
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.keepalive_timeout)
            .pool_max_idle_per_host(config.max_idle_per_host)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        let host = HeaderValue::from_str(&config.authority).map_err(|e| format!("origin host: {e}"))?;
        Ok(HttpOrigin { client, config, host })
    }

    pub async fn send(&self, req: OriginRequest) -> Result<OriginResponse, OriginError> {
        let c = &self.config;
        let uri = format!("{}://{}{}{}", c.scheme, c.authority, c.path_prefix, req.path_and_query);
        let mut builder = http::Request::builder().method(req.method).uri(uri);
        if let Some(h) = builder.headers_mut() {
            *h = req.headers;
            if !h.contains_key(header::HOST) {
                h.insert(header::HOST, self.host.clone());
            }
        }
        let request = builder
            .body(req.body)
            .map_err(|e| OriginError::Protocol(format!("cannot build the origin request: {e}")))?;
        let request_time = SystemTime::now();
        let response = match tokio::time::timeout(c.read_timeout, self.client.request(request)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let msg = error_chain(&e);
                return Err(if e.is_connect() { OriginError::Connect(msg) } else { OriginError::Protocol(msg) });
            }
            Err(_) => {
                return Err(OriginError::Timeout(format!(
                    "no response headers within {} ms",
                    c.read_timeout.as_millis()
                )))
            }
        };
        let response_time = SystemTime::now();
        let (parts, body) = response.into_parts();
        Ok(OriginResponse {
            status: parts.status,
            headers: parts.headers,
            body: OriginBody::http(body, c.read_timeout),
            request_time,
            response_time,
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}
