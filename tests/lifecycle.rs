//! Graceful restarts with the real binary: SIGTERM drains (a download in
//! progress completes, new connections are refused, the access log is
//! written out), the drain deadline holds, SIGHUP reloads the configuration
//! file (an invalid one is refused and the running one kept), and SIGUSR2
//! hands the listening sockets, the state store and the disk cache to a new
//! process under constant load without one failed request, and every
//! request is counted once in the usage that survives the handover.

mod common;
#[path = "common/disk_edge.rs"]
mod disk_edge;

use common::{client, payload, Script, TempDir, TestOrigin, ADMIN_TOKEN};
use disk_edge::Edge;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A config with one distribution in front of `origin`, `server` lines added
/// to `[server]`, the admin API and a disk cache in `dir`.
fn write_config(dir: &Path, origin: &str, server: &str) {
    let text = format!(
        "[server]\n{server}\n\n[cache]\nmemory = \"64MiB\"\n\n[cache.disk]\npath = \"{}\"\nsize = \"64MiB\"\n\n\
         [admin]\ntoken = \"{ADMIN_TOKEN}\"\n\n{}",
        dir.join("cache").display(),
        common::config_for(origin, "")
    );
    std::fs::write(dir.join("edge.toml"), text).expect("config");
}

/// Kills a process by pid on drop (the new process of an upgrade is not the
/// test's child).
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process this test's edge started.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

async fn refused(addr: &str) -> bool {
    matches!(tokio::net::TcpStream::connect(addr).await, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_a_download_in_progress_and_writes_its_log_line() {
    let dir = TempDir::new("life-term");
    let origin = TestOrigin::start().await;
    let body = payload(50 << 20, 7);
    origin.set("/big.bin", Script::ok(body.clone()).pieces(50, Duration::from_millis(40)));
    let log = dir.path().join("access.log");
    write_config(dir.path(), &origin.url(), &format!("shutdown_timeout = \"60s\"\naccess_log = \"{}\"", log.display()));
    let mut edge = Edge::start(dir.path()).await;

    let mut res = client().get(format!("http://{}/big.bin", edge.addr)).send().await.expect("request");
    assert_eq!(res.status().as_u16(), 200);
    let mut got = Vec::with_capacity(body.len());
    while got.len() < (1 << 20) {
        got.extend_from_slice(&res.chunk().await.expect("chunk").expect("more body"));
    }
    if std::env::var("NOSIG").is_err() {
        edge.signal(libc::SIGTERM);
        edge.wait_log("stopping: no new connections").await;
    }
    // The listener is closed at once: a new viewer is refused...
    let deadline = Instant::now() + Duration::from_secs(10);
    while !refused(&edge.addr).await {
        assert!(Instant::now() < deadline, "the edge still accepts 10 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...while the download in progress goes on to its last byte.
    loop {
        match res.chunk().await {
            Ok(Some(chunk)) => got.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => panic!("the download was cut after {} bytes: {e}\n{}", got.len(), edge.log_text()),
        }
    }
    assert_eq!(got.len(), body.len());
    assert!(got == body[..], "the download's bytes differ from the origin's");
    let status = edge.wait_exit(Duration::from_secs(30)).await.expect("the edge exits once drained");
    assert!(status.success(), "exit status {status}");
    assert!(edge.log_text().contains("every connection finished"), "{}", edge.log_text());
    let lines = std::fs::read_to_string(&log).expect("access log");
    let line = lines.lines().find(|l| l.contains("/big.bin")).expect("the download's access log line");
    assert!(line.contains(&format!("\t{}\t", body.len())), "sc-bytes in {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_drain_deadline_ends_what_does_not_finish() {
    let dir = TempDir::new("life-deadline");
    let origin = TestOrigin::start().await;
    // 40 s of body; the deadline is 1 s.
    origin.set("/slow.bin", Script::ok(payload(4 << 20, 3)).pieces(400, Duration::from_millis(100)));
    write_config(dir.path(), &origin.url(), "shutdown_timeout = \"1s\"");
    let mut edge = Edge::start(dir.path()).await;
    let mut res = client().get(format!("http://{}/slow.bin", edge.addr)).send().await.expect("request");
    res.chunk().await.expect("chunk").expect("a first piece");
    edge.signal(libc::SIGTERM);
    let status = edge.wait_exit(Duration::from_secs(20)).await.expect("the edge exits at its drain deadline");
    assert!(status.success(), "exit status {status}");
    assert!(edge.log_text().contains("shutdown deadline passed with 1 connection"), "{}", edge.log_text());
    let mut cut = false;
    loop {
        match res.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    assert!(cut, "the unfinished response must end short, not look complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_reloads_the_file_and_keeps_the_running_config_when_it_is_invalid() {
    let dir = TempDir::new("life-hup");
    let (a, b) = (TestOrigin::start().await, TestOrigin::start().await);
    for (o, who) in [(&a, "A"), (&b, "B")] {
        o.set("/who", Script::ok(who).header("Cache-Control", "no-store"));
    }
    write_config(dir.path(), &a.url(), "");
    let edge = Edge::start(dir.path()).await;
    assert_eq!(edge.get("/who", &[]).await.1, "A");

    write_config(dir.path(), &b.url(), "");
    edge.signal(libc::SIGHUP);
    edge.wait_log("configuration reloaded").await;
    assert_eq!(edge.get("/who", &[]).await.1, "B");
    // The admin API serves the reloaded distribution too.
    let doc = edge.admin_text("/v1/distributions/ETEST").await;
    assert!(doc.contains(&b.url()), "{doc}");

    // An invalid file: named with its line and field, and nothing changes.
    let text = std::fs::read_to_string(dir.path().join("edge.toml")).expect("config");
    std::fs::write(dir.path().join("edge.toml"), text.replace("read_timeout = \"5s\"", "read_timeout = \"soon\""))
        .expect("config");
    edge.signal(libc::SIGHUP);
    let line = edge.wait_log("the running configuration is kept").await;
    assert!(line.contains("edge.toml") && line.contains("read_timeout"), "{line}");
    assert_eq!(edge.get("/who", &[]).await.1, "B");
    assert_eq!(a.hits("/who"), 1);
}

/// Requests without pause, each on a new connection or on kept-alive ones,
/// until `stop`: (successes, failures with their reasons).
fn load(addr: String, stop: Arc<AtomicBool>, keepalive: bool) -> tokio::task::JoinHandle<(u64, Vec<String>)> {
    tokio::spawn(async move {
        let mut b = reqwest::Client::builder().timeout(Duration::from_secs(20));
        if !keepalive {
            b = b.pool_max_idle_per_host(0);
        }
        let c = b.build().expect("client");
        let (mut ok, mut failed) = (0u64, Vec::new());
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let path = format!("/seg/{}.ts", i % 50);
            match c.get(format!("http://{addr}{path}")).send().await {
                Ok(r) if r.status().as_u16() == 200 => match r.bytes().await {
                    Ok(b) if b.len() == 2048 => ok += 1,
                    Ok(b) => failed.push(format!("{path}: {} bytes", b.len())),
                    Err(e) => failed.push(format!("{path}: body: {e}")),
                },
                Ok(r) => failed.push(format!("{path}: status {}", r.status())),
                Err(e) => failed.push(format!("{path}: {e:?}")),
            }
        }
        (ok, failed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigusr2_hands_over_to_a_new_process_without_a_failed_request() {
    let dir = TempDir::new("life-upgrade");
    let (a, b) = (TestOrigin::start().await, TestOrigin::start().await);
    for (o, who) in [(&a, "A"), (&b, "B")] {
        o.set("/who", Script::ok(who).header("Cache-Control", "no-store"));
        for i in 0..50 {
            o.set(&format!("/seg/{i}.ts"), Script::ok(payload(2048, i)).header("Cache-Control", "max-age=3600"));
        }
    }
    write_config(dir.path(), &a.url(), "shutdown_timeout = \"10s\"");
    let mut edge = Edge::start(dir.path()).await;
    assert_eq!(edge.get("/who", &[]).await.1, "A");

    let stop = Arc::new(AtomicBool::new(false));
    let mut loads = Vec::new();
    for i in 0..6 {
        loads.push(load(edge.addr.clone(), stop.clone(), i % 2 == 0));
    }
    // Admin calls on new connections all along: during the handover they
    // wait for the new process rather than get 503 from the old one.
    let admin = {
        let (url, stop) = (format!("{}/v1/distributions", edge.admin), stop.clone());
        tokio::spawn(async move {
            let c = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = c.get(&url).bearer_auth(ADMIN_TOKEN).timeout(Duration::from_secs(20)).send().await;
                statuses.push(r.map_or(0, |r| r.status().as_u16()));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The new process reads the file again: a new origin shows it serves.
    write_config(dir.path(), &b.url(), "shutdown_timeout = \"10s\"");
    edge.signal(libc::SIGUSR2);
    let line = edge.wait_log("serves; this one stops accepting").await;
    let pid: i32 = line
        .split("(pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    let _new = KillOnDrop(pid);
    let status = edge.wait_exit(Duration::from_secs(30)).await.expect("the old process exits once drained");
    assert!(status.success(), "old process exit status {status}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for l in loads {
        let (o, f) = l.await.expect("load task");
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "{} of {} requests failed across the upgrade: {:?}",
        failed.len(),
        ok,
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 100, "only {ok} requests were made");
    let statuses = admin.await.expect("admin poller");
    let bad: Vec<u16> = statuses.iter().copied().filter(|s| *s != 200).collect();
    assert!(
        bad.is_empty() && statuses.len() > 50,
        "admin calls across the upgrade: {} made, not 200: {bad:?}",
        statuses.len()
    );
    println!("upgrade under load: {ok} requests, {} failed", failed.len());

    // The new process serves with the new file, its admin API and its disk cache.
    assert_eq!(edge.get("/who", &[]).await.1, "B");
    let metrics = edge.admin_text("/metrics").await;
    assert!(metrics.contains("mediaedge_disk_writable 1"), "{metrics}");
    let stats = edge.admin_text("/v1/distributions/ETEST").await;
    assert!(stats.contains(&b.url()), "{stats}");
    let log = edge.log_text();
    assert!(log.contains("took over the http listener"), "{log}");
    assert!(log.contains("took over the admin listener"), "{log}");

    // Usage: every request is counted once, including those the old process
    // answered after it had handed the state store over (it spools them; the
    // new process adds them at its next flush).
    // The load, the two requests for /who and the harness's ready probe.
    let sent = ok + 3;
    let mut counted = 0;
    for _ in 0..100 {
        let usage: serde_json::Value = serde_json::from_str(&edge.admin_text("/v1/usage").await).expect("usage JSON");
        counted = usage["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["http_requests"].as_u64().unwrap_or(0))
            .sum::<u64>();
        if counted == sent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(counted, sent, "HTTP requests in /v1/usage against requests sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_that_fails_leaves_the_old_process_serving_with_its_state() {
    let dir = TempDir::new("life-upgrade-fail");
    let origin = TestOrigin::start().await;
    origin.set("/x", Script::ok("x").header("Cache-Control", "max-age=3600"));
    write_config(dir.path(), &origin.url(), "");
    let edge = Edge::start(dir.path()).await;
    std::fs::write(dir.path().join("edge.toml"), "[server]\nlisten = 12\n").expect("config");
    edge.signal(libc::SIGUSR2);
    edge.wait_log("did not take over").await;
    assert!(edge.log_text().contains("listen"), "the new process's error names the field: {}", edge.log_text());
    let (status, body) = edge.get("/x", &[]).await;
    assert_eq!((status, &body[..]), (200, &b"x"[..]));
    // The store is open again (the admin API answers) and the disk cache writes again.
    origin.set("/y", Script::ok("y").header("Cache-Control", "max-age=3600"));
    let before = edge.metric("mediaedge_disk_writes_total").await;
    // Second-hit admission: the fourth request (a third memory hit) writes it.
    for _ in 0..4 {
        edge.get("/y", &[]).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while edge.metric("mediaedge_disk_writes_total").await <= before {
        assert!(Instant::now() < deadline, "the disk cache does not write after the failed upgrade");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
