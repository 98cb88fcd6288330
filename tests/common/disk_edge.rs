//! The disk-tier tests' harness: the real binary as a child process on a
//! config in a temp dir, and helpers to read its cache files.
//!
//! Include it with `#[path = "common/disk_edge.rs"] mod disk_edge;` beside `mod common;`.
#![allow(dead_code)]

use crate::common::{client, free_port_here, payload, Script, TestOrigin, ADMIN_TOKEN};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A `mediaedge serve` child process, its log in `dir/edge.log`; SIGKILLed on drop.
pub struct Edge {
    child: std::process::Child,
    pub addr: String,
    pub admin: String,
    pub log: PathBuf,
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Edge {
    pub async fn start(dir: &Path) -> Edge {
        // A port picked free can be taken by another test before the edge
        // binds it: then the edge exits at once, and is started again on
        // other ports.
        for attempt in 0..3 {
            let mut edge = Edge::spawn(dir);
            match edge.ready().await {
                Ok(()) => return edge,
                Err(log) if attempt < 2 && log.contains("in use") => continue,
                Err(log) => panic!("the edge exited at start:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(dir: &Path) -> Edge {
        let (port, admin_port) = (free_port_here(), free_port_here());
        let log = dir.join("edge.log");
        let err = std::fs::File::create(&log).expect("log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_mediaedge"))
            .arg("serve")
            .arg("--config")
            .arg(dir.join("edge.toml"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin_port}"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(err)
            .spawn()
            .expect("the edge binary starts");
        Edge { child, addr: format!("127.0.0.1:{port}"), admin: format!("http://127.0.0.1:{admin_port}"), log }
    }

    /// Waits until the edge answers (Err with its log if it exited first).
    async fn ready(&mut self) -> Result<(), String> {
        let c = client();
        let deadline = Instant::now() + Duration::from_secs(60);
        while c.get(format!("http://{}/ready-probe", self.addr)).send().await.is_err() {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(self.log_text());
            }
            assert!(Instant::now() < deadline, "the edge did not answer within 60s:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal (SIGTERM, SIGHUP, SIGUSR2...).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on this test's own child process.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "signal {sig}");
    }

    /// Waits (up to `limit`) for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to 30 s) until the log has a line containing `needle`.
    pub async fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.log_text();
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            assert!(Instant::now() < deadline, "no {needle:?} in the log after 30s:\n{text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, bytes::Bytes) {
        let mut rb = client().get(format!("http://{}{path}", self.addr));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.send().await.expect("request");
        let s = r.status().as_u16();
        (s, r.bytes().await.expect("body"))
    }

    pub async fn admin_text(&self, path: &str) -> String {
        let r = client().get(format!("{}{path}", self.admin)).bearer_auth(ADMIN_TOKEN).send().await.expect("admin");
        assert_eq!(r.status().as_u16(), 200, "{path}");
        r.text().await.expect("admin body")
    }

    /// One sample of `/metrics` (name with its labels, as written).
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.admin_text("/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no sample {sample} in /metrics:\n{text}"))
    }

    /// Waits (up to 30 s) until a counter reaches at least `want`.
    pub async fn wait_at_least(&self, sample: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.metric(sample).await;
            if v >= want {
                return;
            }
            assert!(Instant::now() < deadline, "{sample} is {v}, not {want}, after 30s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until a metric reaches a value (the writer works behind requests).
    pub async fn wait_metric(&self, sample: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.metric(sample).await;
            if v == want {
                return;
            }
            assert!(Instant::now() < deadline, "{sample} is {v}, not {want}, after 30s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub fn write_config(dir: &Path, origin: &str, memory: &str, disk: &str) {
    let text = format!(
        "[cache]\nmemory = \"{memory}\"\n\n[cache.disk]\npath = \"{}\"\n{disk}\n\n[admin]\ntoken = \"{ADMIN_TOKEN}\"\n\n{}",
        dir.join("cache").display(),
        crate::common::config_for(origin, "")
    );
    std::fs::write(dir.join("edge.toml"), text).expect("config");
}

pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("cache"))
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "dat"));
    v.sort();
    v
}

pub fn find_on_disk(dir: &Path, needle: &[u8]) -> Option<(PathBuf, usize)> {
    segments(dir).into_iter().find_map(|p| {
        let data = std::fs::read(&p).ok()?;
        data.windows(needle.len()).position(|w| w == needle).map(|at| (p, at))
    })
}

pub fn catalogue(origin: &TestOrigin, n: usize, len: usize) -> Vec<(String, bytes::Bytes)> {
    (0..n)
        .map(|i| {
            let path = format!("/v/{i}.ts");
            let body = payload(len, i as u64 + 1);
            origin.set(&path, Script::ok(body.clone()));
            (path, body)
        })
        .collect()
}
