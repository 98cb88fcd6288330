//! Path spellings: every spelling of a protected path is refused or checked as
//! that path, none leaves a folder origin's root, none splits the cache, and an
//! invalidation of the canonical path covers every spelling. Requests are sent
//! byte-exact over raw TCP (no client normalises them on the way).

mod common;
use common::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsjxIPsj1ltPkKnkP+Vow
Mees3FrH1xl/GFBT8OohHEuFxbILR/XVTH+JEb7GcTgEaJDWkC2SKwuLPc4PP4bt
5JVaLODkNVJJlVg6bmbq1lJYwl8bHrxkE5NCvINFnwnrm+Ol5MH8fwOdUE5MH83K
lvtHPiDqFqU1SorfMThaNY/ny0mWRfAK1rlIOojIHZtBuKu28DljAkdm4KOQGEur
l6FlTDxkJ02+QQ3d2pVLoJtUXa0raGYynkyDvlCPSh+WBNe5OI649dDEaL97dB1K
JFHXIoUO8DXkMkN2p8icbUwRHVyt8ZPka2t7giZwwiYvisovIu/mFAWcopKoN5zJ
PwIDAQAB
-----END PUBLIC KEY-----";

/// What the edge does with a spelling.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Refused as malformed.
    Bad,
    /// The canonical path is under `/private/`: 403 unsigned.
    Denied,
    /// A public path: the origin is asked for exactly this canonical path.
    Public(&'static str),
}
use Expect::*;

const SPELLINGS: &[(&str, Expect)] = &[
    // The list.
    ("/%70rivate/x", Denied),
    ("/pr%69vate/x", Denied),
    ("/pub/../private/x", Denied),
    ("/pub/%2e%2e/private/x", Denied),
    ("/pub%2f..%2fprivate/x", Bad),
    ("/pub/..%2fprivate/x", Bad),
    ("//private/x", Denied),
    ("///private/x", Denied),
    ("/./private/x", Denied),
    ("/private%2fx", Bad),
    ("/%2fprivate/x", Bad),
    // More of the same family.
    ("/private/x", Denied),
    ("/priv%61te/x", Denied),
    ("/%70%72%69%76%61%74%65/x", Denied),
    ("/pub/%2E%2E/private/x", Denied),
    ("/pub/%2e%2E/private/x", Denied),
    ("/pub/.%2e/private/x", Denied),
    ("/pub/%2e./private/x", Denied),
    ("/private/./x", Denied),
    ("/private//x", Denied),
    ("/private/%2e/x", Denied),
    ("/a/b/../../private/x", Denied),
    ("/private%2Fx", Bad),
    ("/pub/..;/private/x", Bad),
    ("/pub/%2e%2e;x=1/private/x", Bad),
    ("/pub/%5c../private/x", Bad),
    ("/pub/..%5cprivate/x", Bad),
    ("/pub\\..\\private\\x", Bad),
    ("/private%00/x", Bad),
    ("/private/x%00.txt", Bad),
    ("/../private/x", Bad),
    ("/pub/../../private/x", Bad),
    ("/%2e%2e/private/x", Bad),
    ("/pub/%c0%ae%c0%ae/private/x", Bad),
    ("/pub/%ff/x", Bad),
    ("/pub/%zz/x", Bad),
    ("/pub/%", Bad),
    ("/pub/%g1", Bad),
    // Double encoding is decoded once, never twice.
    ("/pub/%252e%252e/private/x", Public("/pub/%252e%252e/private/x")),
    ("/%2570rivate/x", Public("/%2570rivate/x")),
    // Public spellings of one public object.
    ("/pub/a.txt", Public("/pub/a.txt")),
    ("/pub/./a.txt", Public("/pub/a.txt")),
    ("/pub//a.txt", Public("/pub/a.txt")),
    ("/pub/%61.txt", Public("/pub/a.txt")),
    ("/%70ub/a%2Etxt", Public("/pub/a.txt")),
    ("/pub/x/../a.txt", Public("/pub/a.txt")),
    ("//pub///a.txt", Public("/pub/a.txt")),
];

fn config(origin_line: &str) -> String {
    format!(
        "[[distributions]]\nid = \"EPATHS\"\naliases = [\"*\"]\n\n\
         [[distributions.origins]]\nid = \"o\"\n{origin_line}\n\n\
         [[distributions.key_groups]]\nid = \"kg\"\nkeys = [{{ id = \"K1\", public_key = \"\"\"{PUBLIC_KEY}\"\"\" }}]\n\n\
         [[distributions.behaviors]]\npath = \"/private/*\"\norigin = \"o\"\ntrusted_key_groups = [\"kg\"]\n\n\
         [distributions.default_behavior]\norigin = \"o\"\n"
    )
}

/// Sends `target` byte-exact; returns the status and the body.
async fn raw_get(addr: SocketAddr, target: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {target} HTTP/1.1\r\nHost: paths.test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "{target}: the edge did not answer");
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

/// What a lax origin makes of a target: every escape decoded (`%2F` and
/// `%5C` included), `\` taken as `/`, `;` parameters dropped, dot segments
/// resolved (clamped at the root), empty segments dropped.
fn lax(target: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(target).decode_utf8_lossy().replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg.split(';').next().unwrap_or("") {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// An origin that normalises paths as many do (see `lax`), answering
/// `/private/x` and `/pub/a.txt`; it records every target it is sent.
async fn lax_origin() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut got = Vec::new();
                loop {
                    // One request per connection at a time; keep-alive.
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let head = String::from_utf8_lossy(&got[..end]).into_owned();
                    got.drain(..end);
                    let target = head.split(' ').nth(1).unwrap_or("/").to_string();
                    log.lock().unwrap().push(target.clone());
                    let path = lax(target.split('?').next().unwrap_or("/"));
                    let (status, body) = match path.as_str() {
                        "/private/x" => ("200 OK", "SECRET"),
                        "/pub/a.txt" => ("200 OK", "PUBLIC"),
                        _ => ("404 Not Found", "nothing"),
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nCache-Control: max-age=600\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn seen_count(seen: &Mutex<Vec<String>>, path: &str) -> usize {
    seen.lock().unwrap().iter().filter(|t| t.as_str() == path).count()
}

#[tokio::test]
async fn no_spelling_reaches_a_protected_object_through_a_normalising_origin() {
    assert!(SPELLINGS.len() >= 30);
    let (addr, seen) = lax_origin().await;
    let e = edge(&config(&format!("url = \"http://{addr}\""))).await;
    for &(target, expect) in SPELLINGS {
        let (status, body) = raw_get(e.addr(), target).await;
        assert!(!body.contains("SECRET"), "{target}: the protected object was served");
        match expect {
            Bad => assert_eq!(status, 400, "{target}: {body}"),
            Denied => assert_eq!(status, 403, "{target}: {body}"),
            Public(canonical) => {
                assert!(status == 200 || status == 404, "{target}: {status} {body}");
                let last = seen.lock().unwrap().last().cloned();
                // A hit asks nothing; a miss asks for the canonical path only.
                assert!(seen_count(&seen, canonical) >= 1, "{target}: the origin never saw {canonical}");
                if let Some(last) = last {
                    assert!(!lax(&last).starts_with("/private"), "{target}: the origin was asked {last}");
                }
            }
        }
    }
    for target in seen.lock().unwrap().iter() {
        assert!(!lax(target).starts_with("/private"), "the origin was asked for {target}");
        assert_eq!(mediaedge::http::path::canonical(target).as_deref(), Ok(target.as_str()), "not canonical");
    }
}

#[tokio::test]
async fn spellings_of_one_object_share_one_cache_entry_and_one_invalidation() {
    let (addr, seen) = lax_origin().await;
    let e = edge(&config(&format!("url = \"http://{addr}\""))).await;
    let spellings: Vec<&str> =
        SPELLINGS.iter().filter(|(_, x)| matches!(x, Public("/pub/a.txt"))).map(|(t, _)| *t).collect();
    assert!(spellings.len() >= 6);
    for t in &spellings {
        assert_eq!(raw_get(e.addr(), t).await, (200, "PUBLIC".to_string()), "{t}");
    }
    assert_eq!(seen_count(&seen, "/pub/a.txt"), 1, "the spellings split the cache");
    assert_eq!(seen.lock().unwrap().len(), 1);
    let covered = mediaedge::cache::invalidate::PathMatch::parse("/pub/a.txt").unwrap();
    e.edge.cache.invalidate("EPATHS", &[covered]);
    for t in &spellings {
        assert_eq!(raw_get(e.addr(), t).await, (200, "PUBLIC".to_string()), "{t}");
    }
    assert_eq!(seen_count(&seen, "/pub/a.txt"), 2, "the invalidation missed a spelling");
}

#[tokio::test]
async fn a_folder_origin_serves_only_canonical_paths_inside_its_root() {
    let dir = TempDir::new("paths");
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("private")).unwrap();
    std::fs::create_dir_all(root.join("pub/x")).unwrap();
    std::fs::write(root.join("private/x"), "SECRET").unwrap();
    std::fs::write(root.join("pub/a.txt"), "PUBLIC").unwrap();
    std::fs::write(root.join("pub/%2e%2e"), "LITERAL").unwrap();
    std::fs::write(dir.path().join("outside.txt"), "OUTSIDE").unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside.txt"), root.join("pub/link.txt")).unwrap();
    std::os::unix::fs::symlink(root.join("pub/a.txt"), root.join("pub/inside.txt")).unwrap();
    let e = edge(&config(&format!("folder = {:?}", root.display().to_string()))).await;
    for &(target, expect) in SPELLINGS {
        let (status, body) = raw_get(e.addr(), target).await;
        assert!(!body.contains("SECRET"), "{target}: the protected file was served");
        match expect {
            Bad => assert_eq!(status, 400, "{target}: {body}"),
            Denied => assert_eq!(status, 403, "{target}: {body}"),
            Public("/pub/a.txt") => assert_eq!((status, body.as_str()), (200, "PUBLIC"), "{target}"),
            Public(_) => assert_ne!(status, 200, "{target}: {body}"),
        }
    }
    for (target, status, body) in [
        ("/../outside.txt", 400, None),
        ("/pub/../../outside.txt", 400, None),
        ("/%2e%2e/outside.txt", 400, None),
        ("/pub/%2e%2e%2foutside.txt", 400, None),
        ("/pub/..%5c..%5coutside.txt", 400, None),
        ("/pub/link.txt", 404, None),
        ("/pub/inside.txt", 200, Some("PUBLIC")),
        ("/pub/%252e%252e", 200, Some("LITERAL")),
    ] {
        let (s, b) = raw_get(e.addr(), target).await;
        assert!(!b.contains("OUTSIDE"), "{target}: a file outside the root was served");
        assert_eq!(s, status, "{target}: {b}");
        if let Some(expected) = body {
            assert_eq!(b, expected, "{target}");
        }
    }
}
