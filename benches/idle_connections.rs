//! Memory per idle viewer connection: starts the edge binary, opens N idle
//! keep-alive connections over HTTP/1.1 and then over HTTP/2 (each has served
//! one request), and reads the edge's RSS from /proc before, while they are
//! open, and after they are closed.
//!
//! With nginx on the PATH, the same is measured for nginx (one worker, no
//! master process, answering the same request from its own `return`) in the
//! same run, as the reference.
//!
//! Run: `cargo bench --bench idle_connections` (a release build; N = 4000, or
//! `IDLE_CONNECTIONS=N`; `IDLE_NGINX=0` skips nginx; `MEDIAEDGE_BIN=path`
//! measures another build of the edge). Under `cargo test` it
//! runs with N = 20 as a smoke test, without nginx.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
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

fn wait_listening(addr: SocketAddr) {
    let t = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(t.elapsed() < Duration::from_secs(30), "the server did not start listening on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The edge binary in front of `origin`; the same address serves HTTP/1.1 and
/// HTTP/2 with prior knowledge.
fn start_edge(dir: &Path) -> (Child, SocketAddr, SocketAddr) {
    let origin = origin();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let bin = std::env::var("MEDIAEDGE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mediaedge").to_string());
    let child = Command::new(bin)
        .args(["serve", "--origin", &format!("http://{origin}"), "--listen", &addr.to_string()])
        .args(["--admin-listen", "off"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the edge binary starts");
    wait_listening(addr);
    (child, addr, addr)
}

/// nginx, one worker process and no master (so its RSS is the one process'),
/// with an HTTP/1.1 and an HTTP/2 (prior knowledge) listener.
fn start_nginx(dir: &Path) -> (Child, SocketAddr, SocketAddr) {
    let h1: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let h2: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\nworker_rlimit_nofile 65536;\n\
         error_log {d}/error.log warn;\npid {d}/nginx.pid;\nevents {{ worker_connections 32768; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n\
         fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n\
         keepalive_timeout 600s;\n  keepalive_requests 100000;\n\
         server {{\n    listen {h1};\n    listen {h2} http2;\n\
         location / {{ add_header Cache-Control \"max-age=600\"; return 200 \"ok\"; }}\n  }}\n}}\n"
    );
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    wait_listening(h1);
    wait_listening(h2);
    (child, h1, h2)
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

type Start = fn(&Path) -> (Child, SocketAddr, SocketAddr);

/// One server, one protocol: RSS before, with `n` idle connections, and after they closed.
fn measure(server: &str, start: Start, name: &str, n: usize, h2: bool) {
    let dir = std::env::temp_dir().join(format!("mediaedge-idle-bench-{}-{server}-{}", std::process::id(), h2));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut child, h1_addr, h2_addr) = start(&dir);
    let (addr, open): (SocketAddr, fn(SocketAddr) -> TcpStream) =
        if h2 { (h2_addr, open_h2) } else { (h1_addr, open_h1) };
    let pid = child.id();
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
        "{server} {name}: {n} idle connections: RSS before {before} KB, open {during} KB ({per:.1} KB per connection), after close {after} KB ({:+} KB)",
        after as i64 - before as i64
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let n =
        if benching { std::env::var("IDLE_CONNECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(4000) } else { 20 };
    raise_nofile();
    let nginx = benching
        && std::env::var("IDLE_NGINX").map_or(true, |v| v != "0")
        && Command::new("nginx").arg("-v").stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    for (name, h2) in [("HTTP/1.1", false), ("HTTP/2", true)] {
        measure("mediaedge", start_edge, name, n, h2);
        if nginx {
            measure("nginx", start_nginx, name, n, h2);
        }
    }
}
