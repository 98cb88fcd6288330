//! The real `mediaedge` binary as a child process, for measuring its memory.

use super::{client, free_port_here, TempDir};
use std::time::Duration;

/// A running `mediaedge serve` (killed on drop), its state in a temp directory.
pub struct EdgeProcess {
    child: std::process::Child,
    pub addr: String,
    _dir: TempDir,
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EdgeProcess {
    /// Starts the binary with this config file text and waits until it
    /// answers. A port picked free can be taken by another test before the
    /// edge binds it: then the edge exits at once, and is started again on
    /// another port.
    pub async fn start(tag: &str, config_text: &str) -> EdgeProcess {
        let dir = TempDir::new(tag);
        let config = dir.path().join("edge.toml");
        std::fs::write(&config, config_text).expect("config");
        let log = dir.path().join("edge.log");
        for attempt in 0..3 {
            let port = free_port_here();
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mediaedge"))
                .arg("serve")
                .arg("--config")
                .arg(&config)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--admin-listen")
                .arg("off")
                .arg("--state-dir")
                .arg(dir.path().join("state"))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file"))
                .spawn()
                .expect("the edge binary starts");
            let addr = format!("127.0.0.1:{port}");
            let c = client();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            // Ready (it answers), exited, or out of time (then killed).
            let (mut ready, mut exited) = (false, false);
            loop {
                if c.get(format!("http://{addr}/ready-probe")).send().await.is_ok() {
                    ready = true;
                    break;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    exited = true;
                    break;
                }
                if std::time::Instant::now() >= deadline {
                    let _ = child.kill();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if ready {
                return EdgeProcess { child, addr, _dir: dir };
            }
            let _ = child.wait();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(exited, "the edge did not answer within 30s:\n{text}");
            assert!(attempt < 2 && text.contains("in use"), "the edge exited at start:\n{text}");
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The process's resident memory now, in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}
