//! Origin errors do not multiply load on a failing origin: the requests
//! collapsed on a fill share its error answer, and error answers are kept for
//! the error-caching TTL of their status (CloudFront's custom error responses).

mod common;
use bytes::Bytes;
use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// An origin that counts request heads and holds every answer until the test
/// opens its gate; then it writes `answer` (or, with `None`, closes without
/// answering) and closes the connection.
struct Gated {
    addr: std::net::SocketAddr,
    heads: Arc<AtomicUsize>,
    gate: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gated {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gated {
    async fn start(answer: Option<&'static [u8]>) -> Gated {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("addr");
        let heads = Arc::new(AtomicUsize::new(0));
        let (gate, rx) = tokio::sync::watch::channel(false);
        let counted = heads.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else { continue };
                let (counted, mut rx) = (counted.clone(), rx.clone());
                tokio::spawn(async move {
                    if read_request_head(&mut s).await.is_none() {
                        return;
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    if rx.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    if let Some(answer) = answer {
                        let _ = s.write_all(answer).await;
                    }
                    let _ = s.shutdown().await;
                });
            }
        });
        Gated { addr, heads, gate, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }

    fn set_open(&self, open: bool) {
        self.gate.send_replace(open);
    }
}

const BARE_500: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nboom";

/// `n` simultaneous viewers of `path`: (status, X-Cache, body) each. With a
/// gate, it opens only once all but one of them wait on the first one's fill,
/// so the burst is one collapsed burst however loaded the machine is.
async fn burst(e: &mediaedge::RunningEdge, path: &str, n: usize, gate: Option<&Gated>) -> Vec<(u16, String, Bytes)> {
    let c = client();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (c, u) = (c.clone(), url(e, path));
            tokio::spawn(async move {
                let (s, x, _, b) = get(&c, &u, &[]).await;
                (s, x, b)
            })
        })
        .collect();
    if let Some(g) = gate {
        let waiting = async {
            while e.edge.cache.collapsed_waiting() < n - 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), waiting).await.expect("the viewers collapse on one fill");
        g.set_open(true);
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.expect("viewer task"));
    }
    out
}

fn assert_all(answers: &[(u16, String, Bytes)], status: u16, body: &[u8]) {
    for (s, x, b) in answers {
        assert_eq!((*s, &b[..]), (status, body), "X-Cache {x}");
    }
}

/// The behavior lines plus one `custom_error_responses` entry per (code, TTL).
fn with_error_ttls(ttls: &[(u16, &str)]) -> String {
    ttls.iter()
        .map(|(code, ttl)| {
            format!(
                "[[distributions.custom_error_responses]]\nerror_code = {code}\nerror_caching_min_ttl = \"{ttl}\"\n"
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_viewers_of_a_failing_origin_make_one_request_and_three_bursts_still_one() {
    let o = Gated::start(Some(BARE_500)).await;
    let e = edge(&config_for(&o.url(), "")).await;
    let first = burst(&e, "/popular.m3u8", 100, Some(&o)).await;
    assert_all(&first, 500, b"boom");
    assert_eq!(o.heads(), 1, "the 99 collapsed viewers share the leader's 500");
    assert_eq!(first.iter().filter(|(_, x, _)| x == "Error").count(), 100, "each answer is an error from the origin");
    for _ in 0..2 {
        let again = burst(&e, "/popular.m3u8", 100, None).await;
        assert_all(&again, 500, b"boom");
        assert!(again.iter().all(|(_, x, _)| x == "Hit"), "within the 10 s error TTL the 500 is a hit");
    }
    assert_eq!(o.heads(), 1, "three bursts, one origin request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_error_ttl_of_zero_each_burst_is_collapsed_and_nothing_is_stored() {
    let o = Gated::start(Some(BARE_500)).await;
    let e = edge(&config_for(&o.url(), &with_error_ttls(&[(500, "0s")]))).await;
    for round in 1..=2 {
        o.set_open(false);
        assert_all(&burst(&e, "/p.m3u8", 100, Some(&o)).await, 500, b"boom");
        assert_eq!(o.heads(), round, "one origin request per burst");
    }
    // Nothing was kept: a lone viewer goes to the origin again.
    let (s, x, _, _) = get(&client(), &url(&e, "/p.m3u8"), &[]).await;
    assert_eq!((s, x.as_str(), o.heads()), (500, "Error", 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_from_the_origin_are_shared_and_kept_only_when_configured() {
    let answers: [(u16, &'static [u8]); 3] = [
        (502, b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad"),
        (503, b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad"),
        (504, b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad"),
    ];
    for (status, answer) in answers {
        // By default: one origin request per burst, shared, never kept
        // (RFC 9111 §3: not heuristically cacheable).
        let o = Gated::start(Some(answer)).await;
        let e = edge(&config_for(&o.url(), "")).await;
        for round in 1..=2 {
            o.set_open(false);
            assert_all(&burst(&e, "/seg1.m4s", 100, Some(&o)).await, status, b"bad");
            assert_eq!(o.heads(), round, "{status}: one origin request per burst, none kept");
        }

        // With an error-caching minimum TTL for this status (CloudFront's
        // rule): kept, so the second burst asks nobody.
        let o = Gated::start(Some(answer)).await;
        let e = edge(&config_for(&o.url(), &with_error_ttls(&[(status, "10s")]))).await;
        assert_all(&burst(&e, "/seg1.m4s", 100, Some(&o)).await, status, b"bad");
        assert_all(&burst(&e, "/seg1.m4s", 100, None).await, status, b"bad");
        assert_eq!(o.heads(), 1, "{status} with a TTL: two bursts, one origin request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_breaks_off_gives_one_shared_502_kept_for_the_error_ttl() {
    // The origin reads the request and closes without an answer: the edge's own 502.
    let o = Gated::start(None).await;
    let e = edge(&config_for(&o.url(), "")).await;
    let first = burst(&e, "/v.mp4", 100, Some(&o)).await;
    assert!(first.iter().all(|(s, x, _)| *s == 502 && x == "Error"), "{:?}", first.first());
    let text = &first[0].2;
    assert!(first.iter().all(|(_, _, b)| b == text), "every viewer gets the same 502");
    assert_all(&burst(&e, "/v.mp4", 100, None).await, 502, text);
    assert_eq!(o.heads(), 1);

    // With a zero TTL for 502: collapsed per burst, never kept.
    let o = Gated::start(None).await;
    let e = edge(&config_for(&o.url(), &with_error_ttls(&[(502, "0")]))).await;
    for round in 1..=2 {
        o.set_open(false);
        let answers = burst(&e, "/v.mp4", 100, Some(&o)).await;
        assert!(answers.iter().all(|(s, _, _)| *s == 502));
        assert_eq!(o.heads(), round);
    }
}

fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_gives_a_502_kept_for_the_error_ttl() {
    let c = client();
    for (ttl, kept) in [("", true), ("0", false)] {
        let port = dead_port();
        let extra = if ttl.is_empty() { String::new() } else { with_error_ttls(&[(502, ttl)]) };
        let e = edge(&config_for(&format!("http://127.0.0.1:{port}"), &extra)).await;
        let answers = burst(&e, "/r", 100, None).await;
        assert!(answers.iter().all(|(s, _, _)| *s == 502), "everyone gets the edge's 502");
        // The origin comes up: a kept 502 still answers, an unkept one does not.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("rebind the freed port");
        let served = tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut s, _)) = listener.accept().await {
                if read_request_head(&mut s).await.is_some() {
                    n += 1;
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
                    let _ = s.shutdown().await;
                }
                if n == 1 {
                    break;
                }
            }
            n
        });
        let (s, x, _, b) = get(&c, &url(&e, "/r"), &[]).await;
        if kept {
            assert_eq!((s, x.as_str()), (502, "Hit"), "{}", String::from_utf8_lossy(&b));
            served.abort();
        } else {
            assert_eq!((s, &b[..]), (200, &b"ok"[..]));
            assert_eq!(served.await.unwrap(), 1);
        }
    }
}

#[tokio::test]
async fn explicit_freshness_on_an_error_counts_within_the_behavior() {
    let c = client();
    // max-age=60 over a 1 s minimum: kept past the minimum.
    let (e, o) = edge_and_origin(&with_error_ttls(&[(404, "1s")])).await;
    o.set("/gone", Script::ok("gone").status(404).header("cache-control", "max-age=60"));
    // max-age=1 under the 10 s default minimum: kept for the minimum.
    o.set("/brief", Script::ok("brief").status(503).header("cache-control", "max-age=1"));
    assert_eq!(get(&c, &url(&e, "/gone"), &[]).await.0, 404);
    assert_eq!(get(&c, &url(&e, "/brief"), &[]).await.0, 503);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, x, _, _) = get(&c, &url(&e, "/gone"), &[]).await;
    assert_eq!((s, x.as_str(), o.hits("/gone")), (404, "Hit", 1), "max-age=60 beats the 1 s minimum");
    let (s, x, _, _) = get(&c, &url(&e, "/brief"), &[]).await;
    assert_eq!((s, x.as_str(), o.hits("/brief")), (503, "Hit", 1), "the 10 s minimum beats max-age=1");

    // The behavior's max_ttl bounds both.
    let (e, o) = edge_and_origin("max_ttl = \"1s\"\n").await;
    o.set("/gone", Script::ok("gone").status(404).header("cache-control", "max-age=60"));
    assert_eq!(get(&c, &url(&e, "/gone"), &[]).await.0, 404);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (s, x, _, _) = get(&c, &url(&e, "/gone"), &[]).await;
    assert_eq!((s, x.as_str(), o.hits("/gone")), (404, "Error", 2), "kept no longer than max_ttl");
}

#[tokio::test]
async fn stale_if_error_wins_over_the_error() {
    let (e, o) = edge_and_origin("").await;
    let c = client();
    o.set("/live.m3u8", Script::ok("#EXTM3U\ngood\n").header("cache-control", "max-age=1, stale-if-error=60"));
    assert_eq!(get(&c, &url(&e, "/live.m3u8"), &[]).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    o.set("/live.m3u8", Script::ok("down").status(500));
    for _ in 0..3 {
        let (s, _, _, b) = get(&c, &url(&e, "/live.m3u8"), &[]).await;
        assert_eq!((s, &b[..]), (200, &b"#EXTM3U\ngood\n"[..]), "the stale copy, never the stored 500");
    }
    assert_all(&burst(&e, "/live.m3u8", 20, None).await, 200, b"#EXTM3U\ngood\n");
    assert!(o.hits("/live.m3u8") >= 2, "the origin was asked again");
}

#[tokio::test]
async fn an_invalidation_removes_a_kept_error() {
    let (e, o) = edge_and_origin("").await;
    let c = client();
    o.set("/x.ts", Script::ok("down").status(500));
    assert_eq!(get(&c, &url(&e, "/x.ts"), &[]).await.0, 500);
    o.set("/x.ts", Script::ok("up"));
    let (s, x, _, _) = get(&c, &url(&e, "/x.ts"), &[]).await;
    assert_eq!((s, x.as_str(), o.hits("/x.ts")), (500, "Hit", 1), "the error is kept");
    let paths = [mediaedge::cache::invalidate::PathMatch::parse("/x.ts").unwrap()];
    assert_eq!(e.edge.cache.invalidate("ETEST", &paths), 1);
    let (s, x, _, b) = get(&c, &url(&e, "/x.ts"), &[]).await;
    assert_eq!((s, x.as_str(), &b[..], o.hits("/x.ts")), (200, "Miss", &b"up"[..], 2));
}

/// The `mediaedge_stale_if_error_total` count of a distribution, from `/metrics`.
async fn stale_if_error_count(e: &Controlled, dist: &str) -> u64 {
    metric_sample(e, &format!("mediaedge_stale_if_error_total{{distribution=\"{dist}\"}}")).await
}

// Stale on error (RFC 5861, per behavior): the origin goes away; the expired
// playlist and segment keep being served within the behavior's window, and a
// counter shows it. Without the setting, the viewer gets the edge's 502.
#[tokio::test]
async fn expired_copies_stand_in_for_a_stopped_origin_within_the_behaviors_window() {
    for (window, served) in [("stale_if_error = \"1h\"", true), ("", false)] {
        let origin = TestOrigin::start().await;
        origin.set("/live.m3u8", Script::ok("#EXTM3U\n").header("cache-control", "max-age=1"));
        origin.set("/seg1.m4s", Script::ok("segment-bytes").header("cache-control", "max-age=1"));
        let state = TempDir::new("stale-on-error");
        let e = controlled(&config_for(&origin.url(), window), state.path()).await;
        let c = client();
        for path in ["/live.m3u8", "/seg1.m4s"] {
            assert_eq!(get(&c, &e.url(path), &[]).await.0, 200);
        }
        // Let both expire (past the one more lifetime a playlist may be served
        // while it refreshes), then stop the origin: its port refuses connections.
        tokio::time::sleep(Duration::from_millis(2_200)).await;
        drop(origin);
        for round in 0..2 {
            for (path, body) in [("/live.m3u8", &b"#EXTM3U\n"[..]), ("/seg1.m4s", &b"segment-bytes"[..])] {
                let (s, x, _, b) = get(&c, &e.url(path), &[]).await;
                if served {
                    assert_eq!((s, &b[..]), (200, body), "{path} round {round}: X-Cache {x}");
                } else {
                    assert_eq!(s, 502, "{path} round {round}: no window, no stale copy");
                }
            }
        }
        let expected = if served { 4 } else { 0 };
        assert_eq!(stale_if_error_count(&e, "ETEST").await, expected, "{window:?}");
    }
}

// The origin's own `stale-if-error` wins over the behavior's window.
#[tokio::test]
async fn the_origins_stale_if_error_wins_over_the_behaviors() {
    let origin = TestOrigin::start().await;
    origin.set("/a.ts", Script::ok("a").header("cache-control", "max-age=1, stale-if-error=0"));
    let e = edge(&config_for(&origin.url(), "stale_if_error = \"1h\"")).await;
    let c = client();
    assert_eq!(get(&c, &url(&e, "/a.ts"), &[]).await.0, 200);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    origin.set("/a.ts", Script::ok("down").status(500));
    let (s, _, _, b) = get(&c, &url(&e, "/a.ts"), &[]).await;
    assert_eq!((s, &b[..]), (500, &b"down"[..]), "stale-if-error=0 from the origin: no stale copy");
}
