//! A newcomer's commands, run as the real `mediaedge` binary in one scratch
//! working directory: the demo, `--origin`, the demo again, `--config`, in
//! that order, each serving, with what was made through the admin API kept
//! across the switches; and two edges at once told the flag that separates them.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mediaedge");

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A `mediaedge serve` child in `dir`, with its stderr in a file; stopped
/// with SIGTERM (as Ctrl-C would) and reaped on drop.
struct Edge {
    child: Child,
    viewer: String,
    admin: String,
    log: PathBuf,
}

impl Edge {
    /// Starts `mediaedge serve <args> --listen <viewer> --admin-listen <admin>` in `dir`.
    fn spawn(dir: &Path, args: &[&str], viewer: &str, admin: &str, name: &str) -> Edge {
        let log = dir.join(format!("{name}.stderr"));
        let child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .args(["--listen", viewer, "--admin-listen", admin])
            .current_dir(dir)
            .env("MEDIAEDGE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env_remove("MEDIAEDGE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn mediaedge serve");
        Edge { child, viewer: format!("http://{viewer}"), admin: format!("http://{admin}"), log }
    }

    /// Starts an edge on fresh free ports and waits until both listeners answer.
    async fn serving(dir: &Path, args: &[&str], name: &str) -> Edge {
        let (viewer, admin) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
        let mut e = Edge::spawn(dir, args, &viewer, &admin, name);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&admin).is_err() || std::net::TcpStream::connect(&viewer).is_err() {
            if let Some(status) = e.child.try_wait().expect("child") {
                panic!("`mediaedge serve {}` exited ({status}):\n{}", args.join(" "), e.stderr());
            }
            assert!(Instant::now() < deadline, "the edge did not start within 20 s:\n{}", e.stderr());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        e
    }

    /// Waits (up to 20 s) for an edge that must refuse to start; its stderr.
    fn refused(mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("child") {
                assert!(!status.success(), "the edge exited with success:\n{}", self.stderr());
                return self.stderr();
            }
            assert!(Instant::now() < deadline, "the edge started instead of refusing:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get(&self, path: &str, host: Option<&str>) -> (u16, String) {
        let headers: Vec<(&str, &str)> = host.map(|h| ("host", h)).into_iter().collect();
        let (s, _, _, body) = get(&client(), &format!("{}{path}", self.viewer), &headers).await;
        (s, String::from_utf8_lossy(&body).into_owned())
    }

    async fn api(&self, method: &str, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> (u16, Value) {
        let (s, _, v) = admin_call(&client(), method, &format!("{}{path}", self.admin), body, headers).await;
        (s, v)
    }

    /// Stops the edge as Ctrl-C would, and waits for it to exit.
    fn stop(mut self) -> String {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().expect("child").is_none() {
            assert!(Instant::now() < deadline, "the edge did not stop on SIGTERM within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stderr()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn api_dist(alias: &str, origin: &str) -> Value {
    json!({
        "comment": "made through the admin API",
        "aliases": [alias],
        "origins": [{ "id": "o", "url": origin }],
        "default_behavior": { "origin": "o" },
    })
}

#[tokio::test]
async fn the_readme_commands_work_in_any_order_in_one_directory() {
    let o = TestOrigin::start().await;
    o.set("/hello.txt", Script::ok("hello from --origin").header("cache-control", "max-age=60"));
    o.set("/file/hello.txt", Script::ok("hello from the file").header("cache-control", "max-age=60"));
    let dir = TempDir::new("newcomer");
    let origin = o.url();
    let demo_probe = "/hls-ts/master.m3u8";

    // 1. The demo. Through the API: a distribution of its own, a change to
    //    the demo's distribution, an invalidation.
    let e = Edge::serving(dir.path(), &[], "1-demo").await;
    let (s, body) = e.get(demo_probe, None).await;
    assert_eq!(s, 200, "the demo serves:\n{}", e.stderr());
    assert!(body.contains("#EXTM3U"), "{body}");
    let (s, created) = e.api("POST", "/v1/distributions", Some(&api_dist("api.test", &origin)), &[]).await;
    assert_eq!(s, 201, "{created}");
    let api_id = created["id"].as_str().expect("an id").to_string();
    let (s, demo) = e.api("GET", "/v1/distributions/EDEMO", None, &[]).await;
    assert_eq!(s, 200, "{demo}");
    let mut changed = demo["config"].clone();
    changed["comment"] = json!("the demo, changed through the API");
    let etag = demo["etag"].as_str().expect("etag").to_string();
    let (s, changed_demo) =
        e.api("PUT", "/v1/distributions/EDEMO", Some(&changed), &[("if-match", etag.as_str())]).await;
    assert_eq!(s, 200, "{changed_demo}");
    let inv = json!({ "paths": ["/hls-ts/*"], "caller_reference": "newcomer-1" });
    let (s, invalidation) = e.api("POST", "/v1/distributions/EDEMO/invalidations", Some(&inv), &[]).await;
    assert_eq!(s, 201, "{invalidation}");
    assert_eq!(e.get("/hello.txt", Some("api.test")).await, (200, "hello from --origin".to_string()));
    e.stop();

    // 2. The second command of the README: one origin, no config file.
    let e = Edge::serving(dir.path(), &["--origin", &origin], "2-origin").await;
    assert_eq!(e.get("/hello.txt", None).await, (200, "hello from --origin".to_string()), "{}", e.stderr());
    assert_eq!(e.get("/hello.txt", Some("api.test")).await.0, 200, "the API's distribution is served");
    let (s, d) = e.api("GET", "/v1/distributions/EDEMO", None, &[]).await;
    assert_eq!(s, 200, "the changed demo distribution is kept: {d}");
    assert_eq!((&d["status"], &d["comment"]), (&json!("NotDeployed"), &json!("the demo, changed through the API")));
    let log = e.stop();
    assert!(log.contains("EDEMO is NOT served") && log.contains("holds it"), "said loudly:\n{log}");

    // 3. The demo again: it serves, with the API's version of its distribution
    //    and its invalidation; the --origin distribution is set aside.
    let e = Edge::serving(dir.path(), &[], "3-demo").await;
    assert_eq!(e.get(demo_probe, None).await.0, 200, "the demo serves again:\n{}", e.stderr());
    assert_eq!(e.get("/hello.txt", Some("api.test")).await.0, 200);
    let (_, d) = e.api("GET", "/v1/distributions/EDEMO", None, &[]).await;
    assert_eq!((&d["status"], &d["etag"]), (&json!("Deployed"), &changed_demo["etag"]), "{d}");
    let (s, got) = e
        .api(
            "GET",
            &format!("/v1/distributions/EDEMO/invalidations/{}", invalidation["id"].as_str().unwrap()),
            None,
            &[],
        )
        .await;
    assert_eq!((s, &got["caller_reference"]), (200, &json!("newcomer-1")), "{got}");
    let (_, d) = e.api("GET", "/v1/distributions/EDEFAULT", None, &[]).await;
    assert_eq!(d["status"], "NotDeployed", "{d}");
    let log = e.stop();
    assert!(log.contains("EDEFAULT is set aside") && log.contains("--origin"), "{log}");

    // 4. A configuration file in the same directory, claiming every host too.
    let file = dir.path().join("edge.toml");
    std::fs::write(
        &file,
        format!(
            "[[distributions]]\nid = \"EFILE\"\naliases = [\"*\"]\n\n[[distributions.origins]]\nid = \"o\"\n\
             url = \"{origin}/file\"\n\n[distributions.default_behavior]\norigin = \"o\"\n"
        ),
    )
    .unwrap();
    let e = Edge::serving(dir.path(), &["--config", "edge.toml"], "4-config").await;
    assert_eq!(e.get("/hello.txt", None).await, (200, "hello from the file".to_string()), "{}", e.stderr());
    assert_eq!(e.get("/hello.txt", Some("api.test")).await.0, 200);
    let (_, list) = e.api("GET", "/v1/distributions", None, &[]).await;
    let mut ids: Vec<&str> = list["items"].as_array().expect("items").iter().filter_map(|d| d["id"].as_str()).collect();
    ids.sort();
    let mut want = vec!["EDEFAULT", "EDEMO", "EFILE", api_id.as_str()];
    want.sort();
    assert_eq!(ids, want, "nothing was lost: {list}");
    e.stop();

    // 5. And back to --origin: the set-aside distribution serves again.
    let e = Edge::serving(dir.path(), &["--origin", &origin], "5-origin").await;
    assert_eq!(e.get("/hello.txt", None).await, (200, "hello from --origin".to_string()), "{}", e.stderr());
    let (_, d) = e.api("GET", "/v1/distributions/EDEFAULT", None, &[]).await;
    assert_eq!(d["status"], "Deployed", "{d}");
    // A served, enabled distribution must be disabled before it is deleted;
    // one that is not served (the API's demo, whose host --origin holds) need not.
    let etag = d["etag"].as_str().expect("etag").to_string();
    let (s, err) = e.api("DELETE", "/v1/distributions/EDEFAULT", None, &[("if-match", etag.as_str())]).await;
    assert_eq!((s, &err["error"]["code"]), (409, &json!("DistributionNotDisabled")), "{err}");
    let (_, d) = e.api("GET", "/v1/distributions/EDEMO", None, &[]).await;
    assert_eq!(d["status"], "NotDeployed", "{d}");
    let etag = d["etag"].as_str().expect("etag").to_string();
    let (s, body) = e.api("DELETE", "/v1/distributions/EDEMO", None, &[("if-match", etag.as_str())]).await;
    assert_eq!(s, 204, "{body}");
    assert_eq!(e.api("GET", "/v1/distributions/EDEMO", None, &[]).await.0, 404);
    assert_eq!(e.get("/hello.txt", None).await.0, 200, "the served one is untouched");
    e.stop();
}

#[tokio::test]
async fn two_edges_in_one_directory_are_told_the_flag_that_separates_them() {
    let o = TestOrigin::start().await;
    o.set("/hello.txt", Script::ok("hello").header("cache-control", "max-age=60"));
    let dir = TempDir::new("newcomer-two");
    let origin = o.url();
    let first = Edge::serving(dir.path(), &[], "first").await;
    let first_viewer = first.viewer.trim_start_matches("http://").to_string();
    let first_admin = first.admin.trim_start_matches("http://").to_string();
    let (viewer, admin) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));

    // The same state directory.
    let err = Edge::spawn(dir.path(), &["--origin", &origin], &viewer, &admin, "same-state").refused();
    assert!(err.contains("--state-dir"), "{err}");
    // Its own state, the same admin port.
    let own = ["--origin", origin.as_str(), "--state-dir", "second"];
    let err = Edge::spawn(dir.path(), &own, &viewer, &first_admin, "same-admin").refused();
    assert!(err.contains("--admin-listen"), "{err}");
    // Its own state and admin port, the same viewer port.
    let err = Edge::spawn(dir.path(), &own, &first_viewer, &admin, "same-viewer").refused();
    assert!(err.contains("--listen"), "{err}");

    // With all three its own, both serve at once.
    let second = Edge::serving(dir.path(), &own, "second").await;
    assert_eq!(second.get("/hello.txt", None).await, (200, "hello".to_string()));
    assert_eq!(first.get("/hls-ts/master.m3u8", None).await.0, 200);
    assert!(dir.path().join("second/state.redb").exists());
}
