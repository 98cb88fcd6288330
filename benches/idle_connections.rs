//! Memory per idle viewer connection: starts the edge binary, opens N idle
//! keep-alive connections over HTTP/1.1 and then over HTTP/2 (each has served
//! one request), and reads the edge's RSS from /proc before, while they are
//! open, and after they are closed.
//!
//! Run: `cargo bench --bench idle_connections` (a release build; N = 4000, or
//! `IDLE_CONNECTIONS=N`). Under `cargo test` it runs with N = 20 as a smoke test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A loopback origin answering every request with a small cacheable body.
fn origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let r = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncache-control: max-age=600\r\n\r\nok";
                    if s.write_all(r).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_edge(origin: SocketAddr, dir: &std::path::Path) -> (Child, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_mediaedge"))
        .args(["serve", "--origin", &format!("http://{origin}"), "--listen", &addr.to_string()])
        .args(["--admin-listen", "off"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the edge binary starts");
    let t = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(t.elapsed() < Duration::from_secs(30), "the edge did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, addr)
}

/// Reads until `done` says the response is complete.
fn read_response(s: &mut TcpStream, done: impl Fn(&[u8]) -> bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&got) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => panic!("the edge closed a connection before answering"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn open_h1(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /idle HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    read_response(&mut s, |b| b.ends_with(b"ok"));
    s
}

/// Whether `b` holds a DATA frame ending stream 1.
fn h2_response_done(mut b: &[u8]) -> bool {
    while b.len() >= 9 {
        let len = u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize;
        if b.len() < 9 + len {
            return false;
        }
        if b[3] == 0 && b[4] & 1 == 1 {
            return true;
        }
        b = &b[9 + len..];
    }
    false
}

fn open_h2(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut out = PREFACE.to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // SETTINGS
    out.extend_from_slice(&[0, 0, 0, 4, 1, 0, 0, 0, 0]); // SETTINGS ACK
    let block: &[u8] = b"\x82\x86\x04\x05/idle\x01\x09localhost";
    out.extend_from_slice(&[0, 0, block.len() as u8, 1, 5, 0, 0, 0, 1]); // HEADERS, END_STREAM|END_HEADERS
    out.extend_from_slice(block);
    s.write_all(&out).unwrap();
    read_response(&mut s, h2_response_done);
    s
}

fn raise_nofile() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain struct in/out calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn measure(name: &str, n: usize, open: fn(SocketAddr) -> TcpStream) {
    let dir = std::env::temp_dir().join(format!("mediaedge-idle-bench-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut edge, addr) = start_edge(origin(), &dir);
    let pid = edge.id();
    // Warm: the object cached, the runtime's threads started.
    drop(open(addr));
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kb(pid);
    let conns: Vec<TcpStream> = (0..n).map(|_| open(addr)).collect();
    std::thread::sleep(Duration::from_secs(1));
    let during = rss_kb(pid);
    drop(conns);
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_kb(pid);
    let per = (during.saturating_sub(before)) as f64 / n as f64;
    println!(
        "{name}: {n} idle connections: RSS before {before} KB, open {during} KB ({per:.1} KB per connection), after close {after} KB ({:+} KB)",
        after as i64 - before as i64
    );
    let _ = edge.kill();
    let _ = edge.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let n =
        if benching { std::env::var("IDLE_CONNECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(4000) } else { 20 };
    raise_nofile();
    measure("HTTP/1.1", n, open_h1);
    measure("HTTP/2", n, open_h2);
}
