//! The viewer-facing listener: HTTP/1.1 and HTTP/2 (prior knowledge) on plain
//! TCP, served by hyper-util's auto connection builder.

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

/// A running edge: its bound addresses, and its tasks (stopped on drop).
pub struct RunningEdge {
    pub edge: Arc<Edge>,
    pub addrs: Vec<SocketAddr>,
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
        tasks.push(tokio::spawn(accept_loop(listener, edge.clone(), builder.clone())));
    }
    Ok(RunningEdge { edge, addrs, tasks })
}

async fn accept_loop(listener: TcpListener, edge: Arc<Edge>, builder: Arc<auto::Builder<TokioExecutor>>) {
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
        tokio::spawn(async move {
            let viewer = Viewer { addr: peer, tls: false };
            let service = service_fn(move |req| {
                let edge = edge.clone();
                async move { Ok::<_, Infallible>(edge.handle(req, viewer).await) }
            });
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}
