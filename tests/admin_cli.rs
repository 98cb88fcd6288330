//! The admin CLI against a real `mediaedge serve` (the built-in demo) run as a
//! child process in a scratch working directory: the CLI finds the edge's token
//! file there without flags, prints tables and JSON, and exits with codes that
//! mean something.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mediaedge");

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The demo edge, started in `dir` with its default state directory.
struct Demo {
    child: Child,
    viewer: String,
    admin: String,
    dir: TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn demo() -> Demo {
    let dir = TempDir::new("cli-demo");
    let (viewer, admin) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let child = Command::new(BIN)
        .args(["serve", "--listen", &viewer, "--admin-listen", &admin])
        .current_dir(dir.path())
        .env_remove("MEDIAEDGE_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the demo");
    let mut d = Demo { child, viewer: format!("http://{viewer}"), admin: format!("http://{admin}"), dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d.dir.path().join(".mediaedge/admin.token").exists()
        || std::net::TcpStream::connect(&admin).is_err()
        || std::net::TcpStream::connect(&viewer).is_err()
    {
        if let Some(status) = d.child.try_wait().expect("child") {
            panic!("the demo exited: {status}");
        }
        assert!(Instant::now() < deadline, "the demo did not start within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d
}

/// Runs the CLI in `dir` with only the admin URL in its environment.
fn cli(d: &Demo, args: &[&str]) -> Output {
    cli_in(d.dir.path(), &d.admin, args)
}

fn cli_in(dir: &Path, admin: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("MEDIAEDGE_ADMIN_URL", admin)
        .env_remove("MEDIAEDGE_ADMIN_TOKEN")
        .output()
        .expect("run the CLI")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).expect("--json prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_the_whole_control_plane() {
    let d = demo().await;
    let c = client();

    // The demo's distribution, found through the token file without flags.
    let table = ok(&cli(&d, &["distribution", "list"]));
    assert!(table.starts_with("ID") && table.contains("EDEMO") && table.contains("Deployed"), "{table}");
    let list = json(&cli(&d, &["distribution", "list", "--json"]));
    assert_eq!(list["quantity"], 1);

    // Create from a TOML file holding one distribution.
    let origin = TestOrigin::start().await;
    origin.set("/v.m3u8", Script::ok("#EXTM3U\n#one\n").header("content-type", "application/vnd.apple.mpegurl"));
    let file = d.dir.path().join("dist.toml");
    std::fs::write(
        &file,
        format!(
            "id = \"ECLI\"\ncomment = \"from a file\"\naliases = [\"cli.example\"]\n\n[[origins]]\nid = \"o\"\nurl = \"{}\"\n\n\
             [default_behavior]\norigin = \"o\"\ndefault_ttl = \"1h\"\n",
            origin.url()
        ),
    )
    .expect("write");
    let created = json(&cli(&d, &["distribution", "create", "--config", "dist.toml", "--json"]));
    assert_eq!(created["id"], "ECLI");
    let got = get(&c, &format!("{}/v.m3u8", d.viewer), &[("host", "cli.example")]).await;
    assert_eq!((got.0, &got.3[..]), (200, &b"#EXTM3U\n#one\n"[..]));

    // Update in place: a new alias; the old ETag no longer applies.
    let old_etag = created["etag"].as_str().expect("etag").to_string();
    ok(&cli(&d, &["distribution", "update", "ECLI", "--add-alias", "cli2.example"]));
    let shown = json(&cli(&d, &["distribution", "get", "ECLI", "--json"]));
    assert_eq!(shown["aliases"], serde_json::json!(["cli.example", "cli2.example"]));
    let stale = cli(&d, &["distribution", "update", "ECLI", "--comment", "x", "--if-match", &old_etag]);
    assert_eq!(stale.status.code(), Some(5), "a stale ETag is a precondition failure");
    assert_eq!(json(&cli(&d, &["distribution", "get", "ECLI", "--json"]))["comment"], "from a file");

    // Invalidate and wait; the next request goes to the origin.
    get(&c, &format!("{}/v.m3u8", d.viewer), &[("host", "cli.example")]).await;
    assert_eq!(origin.hits("/v.m3u8"), 1);
    origin.set("/v.m3u8", Script::ok("#EXTM3U\n#two\n").header("content-type", "application/vnd.apple.mpegurl"));
    let inv = json(&cli(&d, &["invalidate", "--distribution", "ECLI", "--paths", "/v.m3u8", "--wait", "--json"]));
    assert_eq!(inv["status"], "Completed");
    let got = get(&c, &format!("{}/v.m3u8", d.viewer), &[("host", "cli.example")]).await;
    assert_eq!(&got.3[..], b"#EXTM3U\n#two\n");
    let invs = json(&cli(&d, &["invalidation", "list", "--distribution", "ECLI", "--json"]));
    assert_eq!(invs["items"][0]["id"], inv["id"]);
    let one = ok(&cli(&d, &["invalidation", "get", "--distribution", "ECLI", inv["id"].as_str().expect("id")]));
    assert!(one.contains("Completed") && one.contains("/v.m3u8"), "{one}");

    // Stats, usage, the live configuration.
    let stats = json(&cli(&d, &["stats", "--distribution", "ECLI", "--json"]));
    assert_eq!(stats["requests"], 3, "{stats}");
    let usage = ok(&cli(&d, &["usage"]));
    assert!(usage.contains("ECLI") && usage.contains("INVALIDATION PATHS"), "{usage}");
    let exported = ok(&cli(&d, &["export-config"]));
    let cfg = mediaedge::Config::parse(&exported, Path::new("exported.toml")).expect("the export is a valid config");
    assert!(cfg.distributions.iter().any(|x| x.id == "ECLI" && x.aliases.len() == 3), "{exported}");

    // Disable, delete (which needs disabled); the demo's catch-all alias then
    // answers the host (test-media has no /v.m3u8), and the origin hears nothing.
    assert_eq!(cli(&d, &["distribution", "delete", "ECLI"]).status.code(), Some(5), "delete while enabled");
    ok(&cli(&d, &["distribution", "disable", "ECLI"]));
    assert_eq!(get(&c, &format!("{}/v.m3u8", d.viewer), &[("host", "cli.example")]).await.0, 403);
    ok(&cli(&d, &["distribution", "delete", "ECLI"]));
    let hits = origin.hits("/v.m3u8");
    assert_eq!(get(&c, &format!("{}/v.m3u8", d.viewer), &[("host", "cli.example")]).await.0, 404);
    assert_eq!(origin.hits("/v.m3u8"), hits);
    assert_eq!(cli(&d, &["distribution", "get", "ECLI"]).status.code(), Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_mean_something() {
    let d = demo().await;
    assert_eq!(cli(&d, &["distribution", "get", "ENOSUCH"]).status.code(), Some(4), "not found");
    let out = cli(&d, &["stats", "--token", "not-the-edge-token-at-all"]);
    assert_eq!(out.status.code(), Some(6), "unauthorized");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unauthorized"));
    let nowhere = cli_in(d.dir.path(), &format!("http://127.0.0.1:{}", free_port()), &["stats"]);
    assert_eq!(nowhere.status.code(), Some(3), "unreachable");
    assert_eq!(cli(&d, &["invalidate", "--distribution", "EDEMO", "--paths", "no-slash"]).status.code(), Some(1));
    assert_eq!(cli(&d, &["distribution", "create", "--config", "missing.toml"]).status.code(), Some(2));
    // Elsewhere, without the token file or a token, the edge refuses the call.
    let elsewhere = TempDir::new("cli-elsewhere");
    assert_eq!(cli_in(elsewhere.path(), &d.admin, &["distribution", "list"]).status.code(), Some(6));
}

#[test]
fn help_texts_name_the_exit_codes_and_the_default_listener() {
    for cmd in ["distribution", "invalidate", "invalidation", "stats", "usage", "export-config"] {
        let out = Command::new(BIN).args([cmd, "--help"]).output().expect("help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("Exit codes:") && text.contains("--json"), "{cmd}: {text}");
    }
    let default_listen = mediaedge::config::AdminConfig::default().listen.expect("an admin listener by default");
    assert_eq!(mediaedge::admin::cli::DEFAULT_ADMIN_URL, format!("http://{default_listen}"));
    assert_eq!(mediaedge::admin::cli::DEFAULT_STATE_DIR, mediaedge::config::DEFAULT_STATE_DIR);
}
