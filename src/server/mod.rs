//! The viewer-facing listeners: HTTP/1.1 and HTTP/2 (prior knowledge) on plain
//! TCP, and HTTPS (TLS 1.2/1.3, HTTP/2 or HTTP/1.1 by ALPN; see `tls`), served
//! by hyper-util's auto connection builder.

pub mod tls;

use crate::config::Config;
use crate::proxy::{Edge, Viewer};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A running edge: its bound addresses, and its tasks (stopped on drop).
pub struct RunningEdge {
    pub edge: Arc<Edge>,
    pub addrs: Vec<SocketAddr>,
    /// The bound HTTPS listeners, if any.
    pub https_addrs: Vec<SocketAddr>,
    /// The viewer certificates (reloaded when their files change).
    pub certificates: Option<Arc<tls::CertResolver>>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningEdge {
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Runs until every listener stops (they do not, short of an error).
    pub async fn wait(mut self) {
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }

    /// Waits until a listener stops, without taking the edge.
    pub async fn wait_ref(&self) {
        loop {
            if self.tasks.iter().any(|t| t.is_finished()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
}

impl Drop for RunningEdge {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Binds the configured listeners and starts serving.
pub async fn start(config: &Config) -> Result<RunningEdge, String> {
    let edge = Edge::new(config)?;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.server.header_read_timeout)
        .max_buf_size(config.server.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024)
        .max_header_list_size(config.server.max_header_bytes as u32);
    let builder = Arc::new(builder);
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for addr in &config.server.listen {
        let listener = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        addrs.push(local);
        tracing::info!("listening on http://{local}");
        tasks.push(tokio::spawn(accept_loop(listener, edge.clone(), builder.clone(), None)));
    }
    let mut https_addrs = Vec::new();
    let mut certificates = None;
    if !config.server.https_listen.is_empty() {
        let resolver = Arc::new(tls::CertResolver::new(&config.server.certificates)?);
        let acceptor = TlsAcceptor::from(Arc::new(tls::server_config(resolver.clone())?));
        for addr in &config.server.https_listen {
            let listener =
                TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr} (https): {e}"))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            https_addrs.push(local);
            tracing::info!("listening on https://{local}");
            let tls = Some((acceptor.clone(), config.server.header_read_timeout));
            tasks.push(tokio::spawn(accept_loop(listener, edge.clone(), builder.clone(), tls)));
        }
        if let Some(first) = https_addrs.first() {
            edge.set_https_port(first.port());
        }
        tasks.push(tokio::spawn(resolver.clone().watch(std::time::Duration::from_secs(1))));
        certificates = Some(resolver);
    }
    Ok(RunningEdge { edge, addrs, https_addrs, certificates, tasks })
}

/// Accepts connections; with `tls`, each completes a TLS handshake (within the
/// given time) before HTTP is served on it.
async fn accept_loop(
    listener: TcpListener,
    edge: Arc<Edge>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<(TlsAcceptor, std::time::Duration)>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let edge = edge.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let viewer = Viewer { addr: peer, tls: tls.is_some() };
            let service = service_fn(move |req| {
                let edge = edge.clone();
                // match-viewer origins read the viewer's protocol from the task.
                crate::origin::VIEWER_TLS
                    .scope(viewer.tls, async move { Ok::<_, Infallible>(edge.handle(req, viewer).await) })
            });
            let served = match tls {
                None => builder.serve_connection(TokioIo::new(stream), service).await,
                Some((acceptor, limit)) => {
                    let stream = match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    builder.serve_connection(TokioIo::new(stream), service).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}
