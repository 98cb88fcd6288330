//! Upgrades without a refused connection: the running process hands its
//! listening sockets to a new one (a new binary, or the same one with a new
//! configuration file), as nginx's binary upgrade and Pingora's graceful
//! upgrade do.
//!
//! On `SIGUSR2` the running ("old") process:
//! 1. flushes its usage counters, closes its state store and lets go of its
//!    disk cache directory (both are locked by one process at a time);
//! 2. starts its own executable again, with the same arguments, passing the
//!    listening sockets as inherited descriptors (`MEDIAEDGE_LISTEN_FDS`) and
//!    a pipe on which the new process reports (`MEDIAEDGE_UPGRADE_NOTIFY`);
//! 3. keeps accepting meanwhile. The new process loads and checks its
//!    configuration, reports `locking`, opens the store and the disk cache,
//!    starts serving on the inherited sockets (both processes now accept from
//!    the same sockets), and reports `ready`;
//! 4. on `ready`, the old process stops accepting and drains as for SIGTERM.
//!    A connection waiting in a listen queue is never refused: the socket
//!    stays open in the new process the whole time.
//!
//! If the new process exits or says nothing for `READY_WAIT`, the old one
//! kills it, opens its store again and goes on serving (its disk cache too,
//! unless the new process had begun to open it: then it stays off until the
//! next start, since the new process may have changed the directory).

use crate::admin::ControlledEdge;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The inherited listening sockets: `FD:KIND:ADDR` entries, comma-separated.
pub const LISTEN_FDS: &str = "MEDIAEDGE_LISTEN_FDS";
/// The descriptor of the pipe the new process reports on.
pub const NOTIFY_FD: &str = "MEDIAEDGE_UPGRADE_NOTIFY";
/// How long the new process may take to report `ready`.
const READY_WAIT: Duration = Duration::from_secs(60);

/// What a listening socket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    Http,
    Https,
    Admin,
}

impl ListenerKind {
    fn name(self) -> &'static str {
        match self {
            ListenerKind::Http => "http",
            ListenerKind::Https => "https",
            ListenerKind::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<ListenerKind> {
        match s {
            "http" => Some(ListenerKind::Http),
            "https" => Some(ListenerKind::Https),
            "admin" => Some(ListenerKind::Admin),
            _ => None,
        }
    }
}

/// A bound listening socket, kept (a duplicate descriptor) so that it can be
/// handed to a new process.
#[derive(Debug)]
pub struct Listening {
    pub kind: ListenerKind,
    pub addr: SocketAddr,
    pub fd: OwnedFd,
}

impl Listening {
    pub fn try_clone(&self) -> std::io::Result<Listening> {
        Ok(Listening { kind: self.kind, addr: self.addr, fd: self.fd.try_clone()? })
    }
}

/// Listening sockets inherited from the process this one replaces.
#[derive(Debug, Default)]
pub struct Inherited {
    sockets: HashMap<(ListenerKind, SocketAddr), std::net::TcpListener>,
}

impl Inherited {
    /// None: every listener is bound afresh.
    pub fn none() -> Inherited {
        Inherited::default()
    }

    /// The sockets named in `MEDIAEDGE_LISTEN_FDS`. Each descriptor is checked
    /// to be a listening TCP socket bound to the address named; anything else
    /// is ignored with a warning (and not closed: it is not known to be ours).
    pub fn from_env() -> Inherited {
        let mut out = Inherited::default();
        let Ok(spec) = std::env::var(LISTEN_FDS) else { return out };
        for entry in spec.split(',').filter(|e| !e.is_empty()) {
            let mut parts = entry.splitn(3, ':');
            let (Some(fd), Some(kind), Some(addr)) = (parts.next(), parts.next(), parts.next()) else {
                tracing::warn!("{LISTEN_FDS}: {entry:?} is not FD:KIND:ADDR; ignored");
                continue;
            };
            let (Ok(fd), Some(kind), Ok(addr)) =
                (fd.parse::<RawFd>(), ListenerKind::parse(kind), addr.parse::<SocketAddr>())
            else {
                tracing::warn!("{LISTEN_FDS}: {entry:?} is not FD:KIND:ADDR; ignored");
                continue;
            };
            if fd < 3 || !is_listening_socket(fd) {
                tracing::warn!("{LISTEN_FDS}: descriptor {fd} is not a listening TCP socket; ignored");
                continue;
            }
            // SAFETY: the descriptor is an open listening socket (checked
            // above) that the process before this one passed to it to own.
            let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
            match listener.local_addr() {
                Ok(local) if local == addr => {
                    set_cloexec(fd);
                    out.sockets.insert((kind, addr), listener);
                }
                _ => {
                    tracing::warn!("{LISTEN_FDS}: descriptor {fd} is not bound to {addr}; ignored");
                    std::mem::forget(listener);
                }
            }
        }
        out
    }

    /// The inherited socket for this address, if there is one.
    fn take(&mut self, kind: ListenerKind, addr: SocketAddr) -> Option<std::net::TcpListener> {
        if let Some(l) = self.sockets.remove(&(kind, addr)) {
            return Some(l);
        }
        // A configured port 0 takes any inherited socket of that kind and IP.
        if addr.port() == 0 {
            let key = self.sockets.keys().find(|(k, a)| *k == kind && a.ip() == addr.ip()).copied()?;
            return self.sockets.remove(&key);
        }
        None
    }

    /// Sockets the configuration no longer listens on: closed.
    pub fn leftover(&self) -> Vec<SocketAddr> {
        self.sockets.keys().map(|(_, a)| *a).collect()
    }
}

/// Binds a listener, or takes the inherited one for the same address; and
/// keeps a duplicate of its descriptor for a later handover.
pub async fn bind(
    inherited: &mut Inherited,
    kind: ListenerKind,
    addr: SocketAddr,
) -> std::io::Result<(tokio::net::TcpListener, Listening)> {
    let listener = match inherited.take(kind, addr) {
        Some(std) => {
            std.set_nonblocking(true)?;
            let l = tokio::net::TcpListener::from_std(std)?;
            tracing::info!("took over the {} listener on {addr} from the previous process", kind.name());
            l
        }
        None => tokio::net::TcpListener::bind(addr).await?,
    };
    let fd = std::os::fd::AsFd::as_fd(&listener).try_clone_to_owned()?;
    let addr = listener.local_addr()?;
    Ok((listener, Listening { kind, addr, fd }))
}

/// The new process's reports to the old one.
pub struct Notify {
    pipe: Option<std::fs::File>,
}

impl Notify {
    /// The pipe named in `MEDIAEDGE_UPGRADE_NOTIFY`, if this process was
    /// started by an upgrade.
    pub fn from_env() -> Notify {
        let fd = std::env::var(NOTIFY_FD).ok().and_then(|v| v.parse::<RawFd>().ok()).filter(|fd| *fd > 2);
        let pipe = fd.filter(|fd| is_pipe(*fd)).map(|fd| {
            set_cloexec(fd);
            // SAFETY: the descriptor is an open pipe the old process passed to
            // this one to own.
            unsafe { std::fs::File::from_raw_fd(fd) }
        });
        Notify { pipe }
    }

    /// Whether this process is the new one of an upgrade.
    pub fn is_upgrade(&self) -> bool {
        self.pipe.is_some()
    }

    /// Sends one word (`locking`, `ready`); `ready` closes the pipe.
    pub fn send(&mut self, word: &str) {
        if let Some(p) = &mut self.pipe {
            let _ = writeln!(p, "{word}");
        }
        if word == "ready" {
            self.pipe = None;
        }
    }
}

/// What the new process got to, as the old one saw it.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    locking: bool,
    ready: bool,
}

/// SIGUSR2 in the old process. Returns true once the new process serves
/// (this one should then drain and exit); false if it did not take over.
pub async fn hand_over(edge: &ControlledEdge) -> bool {
    if edge.running.draining() {
        return false;
    }
    let listening = match edge.listening() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("upgrade: cannot copy the listening sockets: {e}");
            return false;
        }
    };
    if listening.is_empty() {
        tracing::warn!("SIGUSR2: no listening sockets to hand over");
        return false;
    }
    tracing::info!("upgrade: starting a new process and handing it {} listening socket(s)", listening.len());
    tokio::task::block_in_place(|| edge.suspend_storage());
    let (mut child, reports) = match spawn_successor(&listening) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("upgrade: cannot start the new process: {e}; this one goes on serving");
            tokio::task::block_in_place(|| edge.resume_storage(true));
            return false;
        }
    };
    let pid = child.id();
    let watch = tokio::task::spawn_blocking(move || read_reports(reports));
    let progress = match tokio::time::timeout(READY_WAIT, watch).await {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => Progress::default(),
        Err(_) => {
            tracing::error!("upgrade: the new process (pid {pid}) was not ready within {READY_WAIT:?}");
            Progress { locking: true, ready: false }
        }
    };
    if progress.ready {
        tracing::info!("upgrade: the new process (pid {pid}) serves; this one stops accepting and drains");
        edge.stop_control_tasks();
        // The new process goes on without us; it is not waited for.
        std::mem::forget(child);
        return true;
    }
    let _ = child.kill();
    let status = tokio::task::block_in_place(|| child.wait());
    tracing::error!(
        "upgrade: the new process (pid {pid}) did not take over ({}); this one goes on serving",
        status.map_or_else(|e| e.to_string(), |s| s.to_string())
    );
    tokio::task::block_in_place(|| edge.resume_storage(!progress.locking));
    false
}

/// Reads the new process's reports until `ready` or the end of the pipe.
fn read_reports(pipe: std::fs::File) -> Progress {
    let mut p = Progress::default();
    for line in std::io::BufReader::new(pipe).lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "locking" => p.locking = true,
            "ready" => {
                p.ready = true;
                break;
            }
            _ => {}
        }
    }
    p
}

/// Starts this executable again with the same arguments, the listening
/// sockets and a report pipe inherited.
fn spawn_successor(listening: &[Listening]) -> std::io::Result<(std::process::Child, std::fs::File)> {
    let exe = current_exe()?;
    let (read_end, write_end) = pipe()?;
    let spec: Vec<String> =
        listening.iter().map(|l| format!("{}:{}:{}", l.fd.as_raw_fd(), l.kind.name(), l.addr)).collect();
    let mut keep: Vec<RawFd> = listening.iter().map(|l| l.fd.as_raw_fd()).collect();
    keep.push(write_end.as_raw_fd());
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(std::env::args_os().skip(1))
        .env(LISTEN_FDS, spec.join(","))
        .env(NOTIFY_FD, write_end.as_raw_fd().to_string())
        .stdin(std::process::Stdio::null());
    // SAFETY: between fork and exec only fcntl (async-signal-safe) runs: the
    // inherited descriptors lose FD_CLOEXEC so that they survive exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            for fd in &keep {
                let flags = libc::fcntl(*fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(*fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // Only the child writes: the pipe ends when it exits.
    drop(write_end);
    Ok((child, std::fs::File::from(read_end)))
}

/// The running executable; after the file was replaced (the usual way to
/// install a new version), the path it was started from.
fn current_exe() -> std::io::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let s = exe.to_string_lossy();
    Ok(match s.strip_suffix(" (deleted)") {
        Some(p) => std::path::PathBuf::from(p),
        None => exe,
    })
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_cloexec(fd: RawFd) {
    // SAFETY: fcntl on a descriptor this process owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
}

fn is_listening_socket(fd: RawFd) -> bool {
    let mut accepting: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let mut kind: libc::c_int = 0;
    let mut klen = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the ints given.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut accepting as *mut libc::c_int).cast(),
            &mut len,
        ) == 0
            && libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_TYPE, (&mut kind as *mut libc::c_int).cast(), &mut klen)
                == 0
            && accepting == 1
            && kind == libc::SOCK_STREAM
    }
}

fn is_pipe(fd: RawFd) -> bool {
    // SAFETY: fstat writes into the struct given.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFIFO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in [ListenerKind::Http, ListenerKind::Https, ListenerKind::Admin] {
            assert_eq!(ListenerKind::parse(k.name()), Some(k));
        }
        assert_eq!(ListenerKind::parse("ftp"), None);
    }

    #[test]
    fn a_bound_socket_is_inherited_and_anything_else_is_not() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        assert!(is_listening_socket(l.as_raw_fd()));
        let (r, _w) = pipe().expect("pipe");
        assert!(!is_listening_socket(r.as_raw_fd()));
        assert!(is_pipe(r.as_raw_fd()));
        let mut inh = Inherited::default();
        inh.sockets.insert((ListenerKind::Http, addr), l);
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        assert!(inh.take(ListenerKind::Https, any).is_none());
        assert!(inh.take(ListenerKind::Http, any).is_some());
        assert!(inh.leftover().is_empty());
    }
}
