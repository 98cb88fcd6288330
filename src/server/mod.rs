//! The viewer-facing listeners: HTTP/1.1 and HTTP/2 (prior knowledge) on plain
//! TCP, and HTTPS (TLS 1.2/1.3, HTTP/2 or HTTP/1.1 by ALPN; see `tls`), served
//! by hyper-util's auto connection builder. `limits` caps the open connections;
//! `conn` holds each one to its deadlines.

mod coalesce;
mod conn;
pub mod interim;
pub mod limits;
pub mod tls;

use crate::config::Config;
use crate::lifecycle::upgrade::{self, Inherited, ListenerKind, Listening};
use crate::proxy::Edge;
use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// A running edge: its bound addresses, and its tasks (stopped on drop).
pub struct RunningEdge {
    pub edge: Arc<Edge>,
    pub addrs: Vec<SocketAddr>,
    /// The bound HTTPS listeners, if any.
    pub https_addrs: Vec<SocketAddr>,
    /// The viewer certificates (reloaded when their files change).
    pub certificates: Option<Arc<tls::CertResolver>>,
    /// The open viewer connections and their cap.
    pub connections: Arc<limits::Connections>,
    /// Cancelled when the edge drains: listeners stop, connections finish.
    drain: CancellationToken,
    drain_timeout: Duration,
    /// The listening sockets (duplicates), for a handover to a new process;
    /// closed when the edge drains.
    listening: std::sync::Mutex<Vec<Listening>>,
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

impl RunningEdge {
    /// Stops accepting (this process lets go of its listeners) and lets every
    /// connection finish what it has started: HTTP/1.1 ends after the
    /// response in progress, HTTP/2 sends GOAWAY and ends after its open
    /// streams. Returns once no HTTP connection is left, or after the drain
    /// deadline (`[server] shutdown_timeout`), with how many were left (joined
    /// WebSockets do not hold the drain; they close when the process ends).
    pub async fn drain(&self) -> usize {
        self.drain.cancel();
        // The accept loops let go of their listeners; these copies go too,
        // so that a new connection is refused rather than left in a backlog.
        self.listening.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        loop {
            let left = self.connections.open().saturating_sub(self.edge.websockets.open());
            if left == 0 || tokio::time::Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Copies of the listening sockets (for a handover to a new process).
    pub fn listening(&self) -> std::io::Result<Vec<Listening>> {
        let held = self.listening.lock().unwrap_or_else(|e| e.into_inner());
        held.iter().map(Listening::try_clone).collect()
    }

    /// Whether `drain` has begun.
    pub fn draining(&self) -> bool {
        self.drain.is_cancelled()
    }
}

impl Drop for RunningEdge {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Runs hyper's HTTP/2 stream futures: each is polled once where hyper
/// hands it over (inside the connection's task), and only one that is not
/// finished by then gets a task of its own. A hit's stream queues its whole
/// response in that one poll, so it costs no task spawn, and its frames go
/// out with the connection's next write.
#[derive(Clone, Copy, Debug)]
pub struct StreamExec;

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: std::future::Future<Output = ()> + Send + Unpin + 'static,
{
    fn execute(&self, mut fut: F) {
        // A waker that does nothing is enough: a future left pending is
        // polled again by its own task at once, which registers the real one.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if std::pin::Pin::new(&mut fut).poll(&mut cx).is_pending() {
            tokio::spawn(fut);
        }
    }
}

/// HTTP/2 header lists are accepted up to this many times the configured head
/// limit, so that one over the limit gets 431 from the edge rather than
/// `REFUSED_STREAM` from the protocol layer.
const H2_HEADER_LIST_SLACK: usize = 4;

/// Binds the configured listeners and starts serving.
pub async fn start(config: &Config) -> Result<RunningEdge, String> {
    start_with(config, &mut Inherited::none()).await
}

/// `start`, taking the listening sockets a previous process handed over
/// where their addresses match (an upgrade; see `lifecycle::upgrade`).
pub async fn start_with(config: &Config, inherited: &mut Inherited) -> Result<RunningEdge, String> {
    let edge = Edge::new(config)?;
    let sc = &config.server;
    let nofile = limits::raise_nofile_limit();
    let cap = sc.max_connections.unwrap_or_else(|| limits::default_max_connections(nofile));
    if cap as u64 > nofile {
        tracing::warn!("server.max_connections ({cap}) is above the open-file limit ({nofile})");
    }
    let connections = limits::Connections::new(cap);
    let mut builder = auto::Builder::new(StreamExec);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(sc.header_read_timeout)
        .max_buf_size(sc.max_header_bytes.max(8192))
        .keep_alive(true);
    let h2_list = sc.max_header_bytes.saturating_mul(H2_HEADER_LIST_SLACK).min(u32::MAX as usize) as u32;
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024)
        .max_header_list_size(h2_list)
        // RFC 8441: WebSockets over HTTP/2 (see proxy/websocket.rs).
        .enable_connect_protocol()
        .keep_alive_interval(sc.http2_ping_interval)
        .keep_alive_timeout(sc.http2_ping_timeout);
    let builder = Arc::new(builder);
    let deadlines = conn::Deadlines {
        head: sc.request_head_timeout,
        keepalive: sc.keepalive_timeout,
        http2_idle: sc.http2_idle_timeout,
        max_header_bytes: sc.max_header_bytes,
        drain: sc.shutdown_timeout,
    };
    let drain = CancellationToken::new();
    let mut addrs = Vec::new();
    let mut listening = Vec::new();
    let mut tasks = Vec::new();
    let listen = |listener: TcpListener, tls: Option<TlsAcceptor>| {
        let (edge, builder, drain) = (edge.clone(), builder.clone(), drain.clone());
        limits::accept(listener, connections.clone(), drain.clone(), move |stream, peer, permit| {
            let work =
                conn::serve(stream, peer, edge.clone(), builder.clone(), tls.clone(), deadlines, permit, drain.clone());
            tokio::spawn(work);
        })
    };
    for addr in &sc.listen {
        let (listener, kept) = upgrade::bind(inherited, ListenerKind::Http, *addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local = kept.addr;
        listening.push(kept);
        addrs.push(local);
        tracing::info!("listening on http://{local}");
        tasks.push(tokio::spawn(listen(listener, None)));
    }
    tasks.push(tokio::spawn(limits::trim_after_closes(connections.clone(), Duration::from_secs(2), 256)));
    let mut https_addrs = Vec::new();
    let mut certificates = None;
    if !sc.https_listen.is_empty() {
        let resolver = Arc::new(tls::CertResolver::new(&sc.certificates)?);
        let acceptor = TlsAcceptor::from(Arc::new(tls::server_config(resolver.clone())?));
        for addr in &sc.https_listen {
            let (listener, kept) = upgrade::bind(inherited, ListenerKind::Https, *addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} (https): {e}"))?;
            let local = kept.addr;
            listening.push(kept);
            https_addrs.push(local);
            tracing::info!("listening on https://{local}");
            tasks.push(tokio::spawn(listen(listener, Some(acceptor.clone()))));
        }
        if let Some(first) = https_addrs.first() {
            edge.set_https_port(first.port());
        }
        tasks.push(tokio::spawn(resolver.clone().watch(Duration::from_secs(1))));
        certificates = Some(resolver);
    }
    Ok(RunningEdge {
        edge,
        addrs,
        https_addrs,
        certificates,
        connections,
        drain,
        drain_timeout: sc.shutdown_timeout,
        listening: std::sync::Mutex::new(listening),
        tasks,
    })
}
