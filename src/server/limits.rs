//! Bounds on viewer connections: the open-file limit raised at start, a cap on
//! open connections fitted to it, and an accept loop that waits for a free
//! place instead of spinning when the process is out of descriptors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Descriptors kept back from viewer connections (listeners, the state store,
/// logs, stored files, the admin API).
const RESERVED_FDS: u64 = 256;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limit now in force.
pub fn raise_nofile_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return 1024;
            }
            if lim.rlim_cur < lim.rlim_max {
                let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                    lim.rlim_cur = lim.rlim_max;
                } else {
                    tracing::warn!("cannot raise the open-file limit from {} to {}", lim.rlim_cur, lim.rlim_max);
                }
            }
        }
        // rlim_t is u64 on Linux, not on every unix.
        #[allow(clippy::unnecessary_cast)]
        let cur = lim.rlim_cur as u64;
        cur
    }
    #[cfg(not(unix))]
    {
        1024
    }
}

/// The default cap on viewer connections for an open-file limit: half of what
/// is left after the reserve, so that each viewer connection can have an
/// origin connection (or an open file) of its own.
pub fn default_max_connections(nofile: u64) -> usize {
    (nofile.saturating_sub(RESERVED_FDS) / 2).clamp(16, 1 << 20) as usize
}

/// The open viewer connections, over all listeners of one edge.
#[derive(Debug)]
pub struct Connections {
    places: Arc<Semaphore>,
    limit: usize,
    open: AtomicUsize,
    peak: AtomicUsize,
    /// The highest `open` since the trimmer last looked.
    recent_high: AtomicUsize,
}

/// One connection's place; given back when the connection ends.
pub struct Permit {
    _place: OwnedSemaphorePermit,
    count: Arc<Connections>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.count.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connections {
    pub fn new(limit: usize) -> Arc<Connections> {
        Arc::new(Connections {
            places: Arc::new(Semaphore::new(limit)),
            limit,
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            recent_high: AtomicUsize::new(0),
        })
    }

    /// The cap.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The most connections that were ever open at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Waits for a free place.
    async fn place(&self) -> OwnedSemaphorePermit {
        match self.places.clone().acquire_owned().await {
            Ok(p) => p,
            // The semaphore is never closed; should it be, stop accepting.
            Err(_) => std::future::pending().await,
        }
    }

    /// Counts an accepted connection in its place.
    fn admit(self: &Arc<Self>, place: OwnedSemaphorePermit) -> Permit {
        let now = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        self.recent_high.fetch_max(now, Ordering::Relaxed);
        Permit { _place: place, count: self.clone() }
    }
}

/// Accepts connections, one per free place: when every place is taken, new
/// connections wait in the listen backlog. A failing `accept` (out of
/// descriptors and the like) backs off, up to a second, and is logged once per
/// run of failures. Returns (closing this process's hold on the listener) once
/// `stop` is cancelled.
pub async fn accept(
    listener: TcpListener,
    conns: Arc<Connections>,
    stop: CancellationToken,
    mut serve: impl FnMut(TcpStream, std::net::SocketAddr, Permit),
) {
    let mut failures: u64 = 0;
    loop {
        let place = tokio::select! {
            p = conns.place() => p,
            _ = stop.cancelled() => return,
        };
        let (stream, peer) = loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.cancelled() => return,
            };
            match accepted {
                Ok(x) => break x,
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(
                            "accept failed: {e} ({} viewer connections open, cap {}); backing off",
                            conns.open(),
                            conns.limit()
                        );
                    }
                    let pause = Duration::from_millis(10u64 << failures.min(7)).min(Duration::from_secs(1));
                    tokio::time::sleep(pause).await;
                }
            }
        };
        if failures > 0 {
            tracing::warn!("accepting again after {failures} failed attempts");
            failures = 0;
        }
        let _ = stream.set_nodelay(true);
        serve(stream, peer, conns.admit(place));
    }
}

/// Gives freed connection memory back to the operating system after many
/// connections closed: glibc's allocator keeps freed memory in its per-thread
/// arenas, so without this the edge's RSS stays at its peak after a burst of
/// connections (an attack, a reconnect storm) has gone. Checks every `every`;
/// trims when at least `closed` connections closed since the highest count seen.
pub async fn trim_after_closes(conns: Arc<Connections>, every: Duration, closed: usize) {
    let mut high = 0;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let open = conns.open();
        // The highest count since the last look (reset to what is open now).
        high = high.max(conns.recent_high.swap(open, Ordering::Relaxed));
        if high.saturating_sub(open) >= closed {
            high = open;
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    }
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory held by the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}
