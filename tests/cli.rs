//! The `mediaedge` command: `check-config`, and `serve` run as a child process.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mediaedge");

/// A config file under the temp dir, removed on drop.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(text: &str) -> TempConfig {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("mediaedge-cli-{}-{nanos}-{}.toml", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let p = std::env::temp_dir().join(name);
        std::fs::write(&p, text).expect("write the config");
        TempConfig(p)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A child process killed (and reaped) on drop, so a failing test leaves nothing behind.
/// A child `mediaedge serve` and its state directory, both gone on drop.
struct Running(Child, #[allow(dead_code)] TempDir);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The file the unit tests use: the origin is on line 6, the distribution
/// starts on line 1.
const BASE: &str = "[[distributions]]\nid = \"E1\"\naliases = [\"a.example\"]\n[[distributions.origins]]\nid = \"o\"\nurl = \"http://127.0.0.1:9/base/\"\n";

fn check_config(file: &TempConfig) -> Output {
    Command::new(BIN).arg("check-config").arg(&file.0).output().expect("run mediaedge")
}

/// A port free at the time of asking: bound to 127.0.0.1:0, then released.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

/// `mediaedge serve` with its admin API on a free loopback port and its state
/// in a fresh directory (never the working directory's).
fn spawn_serve(args: &[&str]) -> Running {
    let state = TempDir::new("cli-state");
    let child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .arg("--admin-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--state-dir")
        .arg(state.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mediaedge serve");
    Running(child, state)
}

/// Polls `url` until the edge answers (up to 20 s), failing early if the child exits.
async fn wait_until_serving(child: &mut Running, url: &str) {
    let c = client();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.0.try_wait().expect("child status") {
            panic!("mediaedge serve exited early: {status}");
        }
        if c.get(url).timeout(Duration::from_secs(2)).send().await.is_ok() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the edge did not answer {url} within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn check_config_accepts_a_valid_file() {
    let f = TempConfig::new(&format!("{BASE}[distributions.default_behavior]\norigin = \"o\"\ndefault_ttl = \"2s\"\n"));
    let out = check_config(&f);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("valid") && stdout.contains("1 distribution"), "{stdout}");
}

#[test]
fn check_config_names_file_line_and_field_of_a_bad_origin_reference() {
    let f = TempConfig::new(&format!("{BASE}[[distributions.behaviors]]\npath = \"/x/*\"\norigin = \"nope\"\n"));
    let out = check_config(&f);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("{}:9:", f.path())), "{stderr}");
    assert!(stderr.contains("distributions[0].behaviors[0].origin"), "{stderr}");
    assert!(stderr.contains("nope"), "{stderr}");
}

#[test]
fn check_config_names_an_unknown_field() {
    let f = TempConfig::new(&format!("{BASE}[distributions.default_behavior]\norigin = \"o\"\ndefault_tll = 5\n"));
    let out = check_config(&f);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{}:9:", f.path())), "{stderr}");
    assert!(stderr.contains("default_tll") && stderr.contains("unknown field"), "{stderr}");
}

#[test]
fn check_config_names_the_line_of_malformed_toml() {
    let f = TempConfig::new("# an edge\n\n[server\nlisten = \"127.0.0.1:8080\"\n");
    let out = check_config(&f);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{}:3:", f.path())), "{stderr}");
}

#[test]
fn check_config_reports_a_bad_value_and_a_missing_file() {
    let f = TempConfig::new("[server]\nedge_location = \"X\"\nlisten = \"nowhere\"\n");
    let out = check_config(&f);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{}:3:", f.path())) && stderr.contains("server.listen"), "{stderr}");

    let missing = std::env::temp_dir().join(format!("mediaedge-cli-missing-{}.toml", std::process::id()));
    let out = Command::new(BIN).arg("check-config").arg(&missing).output().expect("run mediaedge");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
}

#[test]
fn serve_refuses_an_invalid_config_file() {
    let f = TempConfig::new(&format!("{BASE}[[distributions.behaviors]]\npath = \"/x/*\"\norigin = \"nope\"\n"));
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&f.0)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .stdin(Stdio::null())
        .output()
        .expect("run mediaedge");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{}:9:", f.path())) && stderr.contains("behaviors[0].origin"), "{stderr}");
}

#[tokio::test]
async fn serve_with_an_origin_url_caches() {
    let o = TestOrigin::start().await;
    o.set(
        "/cli/a.m3u8",
        Script::ok("#EXTM3U\n#from-origin\n")
            .header("content-type", "application/vnd.apple.mpegurl")
            .header("cache-control", "max-age=600"),
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = spawn_serve(&["--origin", &o.url(), "--listen", &addr]);
    wait_until_serving(&mut child, &format!("http://{addr}/ready")).await;
    let c = client();
    let u = format!("http://{addr}/cli/a.m3u8");
    let (s1, x1, _, b1) = get(&c, &u, &[]).await;
    let (s2, x2, _, b2) = get(&c, &u, &[]).await;
    assert_eq!((s1, x1.as_str(), s2, x2.as_str()), (200, "Miss", 200, "Hit"));
    assert_eq!((&b1[..], &b2[..]), (&b"#EXTM3U\n#from-origin\n"[..], &b"#EXTM3U\n#from-origin\n"[..]));
    assert_eq!(o.hits("/cli/a.m3u8"), 1);
    // Any host is served.
    let (s, x, _, _) = get(&c, &u, &[("host", "whatever.example")]).await;
    assert_eq!((s, x.as_str()), (200, "Hit"));
    drop(child);
}

#[tokio::test]
async fn serve_with_a_config_file_and_listen_override() {
    let o = TestOrigin::start().await;
    o.set("/f", Script::ok("from-file-config"));
    let f = TempConfig::new(&format!(
        "[server]\nlisten = \"127.0.0.1:1\"\n\n[[distributions]]\nid = \"EFILE\"\naliases = [\"*\"]\n\n\
         [[distributions.origins]]\nid = \"o\"\nurl = \"{}\"\n\n[distributions.default_behavior]\norigin = \"o\"\n",
        o.url()
    ));
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = spawn_serve(&["--config", &f.path(), "--listen", &addr]);
    wait_until_serving(&mut child, &format!("http://{addr}/ready")).await;
    let (s, _, _, b) = get(&client(), &format!("http://{addr}/f"), &[]).await;
    assert_eq!((s, &b[..]), (200, &b"from-file-config"[..]));
}

#[tokio::test]
async fn serve_without_an_origin_runs_the_demo_over_test_media() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = spawn_serve(&["--listen", &addr]);
    wait_until_serving(&mut child, &format!("http://{addr}/ready")).await;
    let c = client();
    let u = format!("http://{addr}/hls-ts/master.m3u8");
    let (s, _, _, b) = get(&c, &u, &[]).await;
    assert_eq!(s, 200);
    assert!(b.starts_with(b"#EXTM3U"), "{:?}", String::from_utf8_lossy(&b[..b.len().min(80)]));
    let (s, x, _, _) = get(&c, &u, &[]).await;
    assert_eq!((s, x.as_str()), (200, "Hit"));
}
