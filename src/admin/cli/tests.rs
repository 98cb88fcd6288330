use super::*;
use bytes::Bytes;
use clap::{CommandFactory, Parser};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Parser, Debug)]
#[command(name = "mediaedge")]
struct TestCli {
    #[command(subcommand)]
    command: AdminCommand,
}

fn parse(args: &[&str]) -> AdminCommand {
    let mut all = vec!["mediaedge"];
    all.extend_from_slice(args);
    match TestCli::try_parse_from(all) {
        Ok(c) => c.command,
        Err(e) => panic!("{args:?}: {e}"),
    }
}

/// A fresh empty folder under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mediaedge-cli-{name}-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn the_commands_are_well_formed() {
    TestCli::command().debug_assert();
    let help = TestCli::command().find_subcommand_mut("distribution").expect("distribution").render_long_help();
    assert!(help.to_string().contains("7  invalidate --wait timed out"), "{help}");
}

#[test]
fn arguments_parse() {
    match parse(&["invalidate", "--distribution", "E1", "--paths", "/a/*", "/b", "--wait", "--json"]) {
        AdminCommand::Invalidate { options, distribution, paths, wait, timeout, caller_reference } => {
            assert_eq!(distribution, "E1");
            assert_eq!(paths, ["/a/*", "/b"]);
            assert!(wait && options.json);
            assert_eq!(timeout, 60.0);
            assert!(caller_reference.is_none());
            assert_eq!(options.state_dir, Path::new(".mediaedge"));
        }
        other => panic!("{other:?}"),
    }
    // Common options go before or after the subcommand.
    match parse(&["distribution", "--admin", "http://h:1", "list", "--token", "t"]) {
        AdminCommand::Distribution { options, command: DistributionCommand::List } => {
            assert_eq!(options.admin.as_deref(), Some("http://h:1"));
            assert_eq!(options.token.as_deref(), Some("t"));
        }
        other => panic!("{other:?}"),
    }
    let cmd = parse(&["distribution", "update", "E1", "--add-alias", "a.example", "--add-alias", "b.example"]);
    assert_eq!(cmd.name(), "distribution update");
    assert!(TestCli::try_parse_from(["mediaedge", "distribution", "create"]).is_err(), "needs --config or --origin");
    assert!(TestCli::try_parse_from([
        "mediaedge",
        "distribution",
        "create",
        "--config",
        "a.toml",
        "--origin",
        "http://o"
    ])
    .is_err());
    assert!(TestCli::try_parse_from(["mediaedge", "invalidate", "--distribution", "E1"]).is_err(), "needs paths");
    assert_eq!(parse(&["export-config", "-o", "x.toml"]).name(), "export-config");
    assert_eq!(parse(&["invalidation", "get", "--distribution", "E1", "I1"]).name(), "invalidation get");
}

#[test]
fn exit_codes_follow_the_status() {
    assert_eq!(Exit::for_status(400).code(), 1);
    assert_eq!(Exit::for_status(401).code(), 6);
    assert_eq!(Exit::for_status(404).code(), 4);
    for s in [409, 412, 428] {
        assert_eq!(Exit::for_status(s).code(), 5);
    }
    assert_eq!(Exit::for_status(413).code(), 1);
    assert_eq!(Exit::for_status(500).code(), 1);
    assert_eq!((Exit::Usage.code(), Exit::Unreachable.code(), Exit::WaitTimeout.code()), (2, 3, 7));
}

#[test]
fn failures_render_message_code_and_hints() {
    let f = Failure { exit: Exit::Conflict, message: "it is enabled".into(), api_code: Some("X".into()) };
    assert_eq!(f.render(), "it is enabled (X)");
    assert_eq!(f.hint("disable it").render(), "it is enabled (X)\n  disable it");
    assert_eq!(Failure::usage("bad").render(), "bad");
}

#[test]
fn tables_align_and_do_not_trail() {
    let t = table(
        &[left("ID"), right("N"), left("NOTE")],
        &[vec!["E1".into(), "5".into(), "".into()], vec!["E22222".into(), "1234".into(), "café".into()]],
    );
    assert_eq!(t, "ID         N  NOTE\nE1         5\nE22222  1234  café\n");
    assert_eq!(table(&[left("A"), left("B")], &[]), "A  B\n");
    assert_eq!(
        key_values(&[("id", "E1".into()), ("domain name", "d.x".into()), ("paths", "/a\n/b".into())]),
        "id           E1\ndomain name  d.x\npaths        /a\n             /b\n"
    );
}

fn distribution_json() -> Value {
    json!({
        "id": "E2QWRUHAPOMQZL", "domain_name": "dabcdefghijklm.edge.mediaedge.invalid", "status": "Deployed",
        "enabled": true, "comment": "live", "aliases": ["video.example.com", "*.cdn.example.com"],
        "etag": "ETAG1", "created_time": "2026-11-22T02:50:00Z", "last_modified_time": "2026-11-22T02:51:00Z",
        "config": {
            "id": "E2QWRUHAPOMQZL", "enabled": true, "comment": "live",
            "aliases": ["video.example.com", "*.cdn.example.com"],
            "origins": [{"id": "o", "url": "http://127.0.0.1:9000", "read_timeout": "5s", "headers": {"X-A": "1"}}],
            "behaviors": [{"path": "*.m3u8", "origin": "o", "cache_key": {"query": ["a"]}, "min_ttl": 1}],
            "default_behavior": {"origin": "o", "compress": true}
        }
    })
}

#[test]
fn human_output() {
    let list = json!({"quantity": 2, "items": [
        {"id": "E1", "domain_name": "d1.x", "status": "Deployed", "enabled": true, "comment": "",
         "aliases": [], "origins": ["o"], "etag": "A", "created_time": "t", "last_modified_time": "t"},
        {"id": "E2", "domain_name": "d2.x", "status": "Deployed", "enabled": false, "comment": "two words",
         "aliases": ["a.x", "b.x"], "origins": ["o", "p"], "etag": "B", "created_time": "t", "last_modified_time": "t"}
    ]});
    assert_eq!(
        distribution_table(&list),
        "ID  DOMAIN NAME  ENABLED  STATUS    ALIASES   ORIGINS  COMMENT\n\
         E1  d1.x         yes      Deployed  -         o\n\
         E2  d2.x         no       Deployed  a.x, b.x  o, p     two words\n"
    );
    let details = distribution_details(&distribution_json());
    assert!(details.starts_with("id             E2QWRUHAPOMQZL\ndomain name    dabcdefghijklm"), "{details}");
    assert!(details.contains("\naliases        video.example.com, *.cdn.example.com\n"), "{details}");
    // The configuration part is TOML a config file would hold, in the usual order.
    let toml_part = details.split("# configuration\n").nth(1).expect("config part");
    let back: toml::Table = toml::from_str(toml_part).unwrap_or_else(|e| panic!("{e}\n{toml_part}"));
    assert_eq!(toml_to_json(toml::Value::Table(back)), distribution_json()["config"]);
    let pos = |s: &str| toml_part.find(s).unwrap_or_else(|| panic!("{s} missing in\n{toml_part}"));
    assert!(pos("id = ") < pos("enabled = ") && pos("enabled = ") < pos("comment = "), "{toml_part}");
    assert!(pos("[[origins]]") < pos("[[behaviors]]") && pos("[[behaviors]]") < pos("[default_behavior]"));

    let stats = stats_table(&[json!({
        "distribution_id": "E1", "requests": 1000, "hit_ratio": 0.9345, "bytes_to_viewers": 3_221_225_472u64,
        "bytes_from_origin": 512, "collapsed_requests": 7, "errors": {"4xx": 3, "5xx": 1},
        "origin_latency_ms": {"count": 10, "mean": 5.0, "p50": 4.0, "p90": 9.0, "p99": 12.25}
    })]);
    assert_eq!(
        stats,
        "DISTRIBUTION  REQUESTS  HIT RATIO  BYTES OUT  BYTES FROM ORIGIN  COLLAPSED  4XX  5XX  ORIGIN P99 MS\n\
         E1                1000      93.5%    3.0 GiB              512 B          7    3    1           12.2\n"
    );
    let usage = usage_table(&json!({"from": "2026-11-01", "to": "2026-11-22", "items": [
        {"distribution_id": "E1", "date": "2026-11-21", "data_transfer_out_to_viewers_bytes": 100,
         "data_transfer_out_to_origin_bytes": 0, "http_requests": 3, "https_requests": 1, "invalidation_paths": 2},
        {"distribution_id": "E1", "date": "2026-11-22", "data_transfer_out_to_viewers_bytes": 50,
         "data_transfer_out_to_origin_bytes": 10, "http_requests": 1, "https_requests": 0, "invalidation_paths": 0}
    ]}));
    assert_eq!(
        usage,
        "usage from 2026-11-01 to 2026-11-22 (UTC days, bytes)\n\
         DISTRIBUTION  DATE        OUT TO VIEWERS  OUT TO ORIGIN  HTTP REQ  HTTPS REQ  INVALIDATION PATHS\n\
         E1            2026-11-21             100              0         3          1                   2\n\
         E1            2026-11-22              50             10         1          0                   0\n\
         TOTAL                                150             10         4          1                   2\n"
    );
    assert!(usage_table(&json!({"from": "a", "to": "b", "items": []})).contains("no usage"));

    let invs = invalidation_table(&json!({"quantity": 1, "items": [{"id": "I1", "distribution_id": "E1",
        "status": "InProgress", "caller_reference": "r", "paths": ["/a", "/b*"], "create_time": "2026-11-22T02:50:00Z",
        "completed_time": null}]}));
    assert_eq!(
        invs,
        "ID  STATUS      CREATED               PATHS  CALLER REF\nI1  InProgress  2026-11-22T02:50:00Z      2  r\n"
    );
    assert_eq!(human_bytes(1023), "1023 B");
    assert_eq!(human_bytes(1536), "1.5 KiB");
}

#[test]
fn distribution_files_in_three_forms() {
    let dir = temp_dir("files");
    std::fs::create_dir_all(dir.join("media")).unwrap();
    std::fs::write(dir.join("k.pem"), "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").unwrap();
    let bare = "id = \"E1\"\naliases = [\"a.example\"]\n\n[[origins]]\nid = \"o\"\nfolder = \"media\"\n\n\
                [default_behavior]\norigin = \"o\"\ndefault_ttl = \"10s\"\n\n[[key_groups]]\nid = \"g\"\n\
                keys = [{ id = \"K1\", public_key = \"k.pem\" }, { id = \"K2\", public_key = \"missing.pem\" }]\n";
    std::fs::write(dir.join("bare.toml"), bare).unwrap();
    let full = "[server]\nlisten = \"127.0.0.1:8080\"\n\n[[distributions]]\nid = \"E1\"\n\n\
                [[distributions.origins]]\nid = \"o\"\nurl = \"http://127.0.0.1:9000\"\n\n\
                [distributions.default_behavior]\norigin = \"o\"\n";
    std::fs::write(dir.join("full.toml"), full).unwrap();
    std::fs::write(
        dir.join("d.json"),
        r#"{"origins": [{"id": "o", "url": "http://127.0.0.1:9000"}], "default_behavior": {"origin": "o"}}"#,
    )
    .unwrap();

    let v = read_distribution_file(&dir.join("bare.toml")).expect("bare table");
    assert_eq!(v["id"], "E1");
    assert_eq!(v["default_behavior"]["default_ttl"], "10s");
    let folder = v["origins"][0]["folder"].as_str().unwrap();
    assert!(Path::new(folder).is_absolute() && Path::new(folder).ends_with("media"), "{folder}");
    assert!(v["key_groups"][0]["keys"][0]["public_key"].as_str().unwrap().starts_with("-----BEGIN PUBLIC KEY"));
    let missing = v["key_groups"][0]["keys"][1]["public_key"].as_str().unwrap();
    assert!(Path::new(missing).is_absolute() && missing.ends_with("missing.pem"), "{missing}");

    let v = read_distribution_file(&dir.join("full.toml")).expect("full config");
    assert_eq!(
        v,
        json!({"id": "E1", "origins": [{"id": "o", "url": "http://127.0.0.1:9000"}], "default_behavior": {"origin": "o"}})
    );
    let v = read_distribution_file(&dir.join("d.json")).expect("json");
    assert_eq!(v["origins"][0]["url"], "http://127.0.0.1:9000");

    // Errors are bad input (exit 2) and name the file.
    std::fs::write(dir.join("two.toml"), format!("{full}\n[[distributions]]\nid = \"E2\"\n")).unwrap();
    std::fs::write(dir.join("bad.toml"), "id = \n").unwrap();
    std::fs::write(dir.join("bad.json"), "[1, 2]").unwrap();
    for (file, needle) in [
        ("two.toml", "exactly one"),
        ("bad.toml", "not valid TOML"),
        ("bad.json", "JSON object"),
        ("nope.toml", "cannot read"),
    ] {
        let e = read_distribution_file(&dir.join(file)).expect_err(file);
        assert_eq!(e.exit, Exit::Usage, "{file}");
        assert!(e.message.contains(needle) && e.message.contains(file), "{file}: {}", e.message);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_quick_form() {
    let v = quick_config("http://127.0.0.1:9000/base", &["a.example".into()], Some("demo"), Some("E1")).unwrap();
    assert_eq!(
        v,
        json!({"id": "E1", "comment": "demo", "aliases": ["a.example"],
               "origins": [{"id": "origin", "url": "http://127.0.0.1:9000/base"}],
               "default_behavior": {"origin": "origin"}})
    );
    let dir = temp_dir("quick");
    let v = quick_config(dir.to_str().unwrap(), &[], None, None).unwrap();
    assert_eq!(v["origins"][0]["folder"], dir.to_str().unwrap());
    assert_eq!(v["aliases"], json!([]));
    assert!(v.get("id").is_none() && v.get("comment").is_none());
    let e = quick_config("example.com:9000", &[], None, None).unwrap_err();
    assert_eq!(e.exit, Exit::Usage);
    assert!(e.message.contains("neither"), "{}", e.message);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn edits_apply_to_the_stored_configuration() {
    let mut config = distribution_json()["config"].clone();
    let edits = Edits {
        origin: Some("https://origin.example/v2".into()),
        comment: Some("new".into()),
        add_aliases: vec!["new.example".into(), "VIDEO.example.com".into()],
        remove_aliases: vec!["*.cdn.example.com".into()],
    };
    apply_edits(&mut config, &edits).unwrap();
    assert_eq!(config["origins"][0]["url"], "https://origin.example/v2");
    assert_eq!(config["origins"][0]["read_timeout"], "5s", "other origin settings are kept");
    assert_eq!(config["comment"], "new");
    assert_eq!(config["aliases"], json!(["video.example.com", "new.example"]));
    let e =
        apply_edits(&mut config, &Edits { remove_aliases: vec!["x.example".into()], ..Edits::default() }).unwrap_err();
    assert_eq!(e.exit, Exit::Usage);
}

#[test]
fn urls_tokens_and_dates() {
    assert_eq!(normalize_base_url("http://127.0.0.1:8081/").unwrap(), "http://127.0.0.1:8081");
    assert_eq!(normalize_base_url("127.0.0.1:9").unwrap(), "http://127.0.0.1:9");
    assert_eq!(normalize_base_url("http://h/admin/").unwrap(), "http://h/admin");
    assert_eq!(normalize_base_url("https://h").unwrap_err().exit, Exit::Usage);
    assert_eq!(normalize_base_url("http://h/?x=1").unwrap_err().exit, Exit::Usage);

    let dir = temp_dir("token");
    let (t, src) = find_token(None, None, &dir);
    assert!(t.is_none());
    assert!(matches!(&src, TokenSource::Missing { why, .. } if why == "does not exist"), "{src:?}");
    assert!(src.explain("http://x").contains("admin.token does not exist"));
    std::fs::write(dir.join("admin.token"), "file-token\n").unwrap();
    assert_eq!(find_token(None, None, &dir), (Some("file-token".into()), TokenSource::File(dir.join("admin.token"))));
    assert_eq!(find_token(None, Some("env-token".into()), &dir), (Some("env-token".into()), TokenSource::Env));
    assert_eq!(find_token(Some("flag"), Some("env".into()), &dir), (Some("flag".into()), TokenSource::Flag));
    let _ = std::fs::remove_dir_all(&dir);

    assert!(is_date("2026-11-01"));
    for bad in ["2026-13-01", "2026-1-01", "20261101", "2026-11-0x", "2026-11-00"] {
        assert!(!is_date(bad), "{bad}");
    }
    let (a, b) = (fresh_caller_reference(), fresh_caller_reference());
    assert_ne!(a, b);
}

// -----------------------------------------------------------------------
// Against a scripted admin API on 127.0.0.1.

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    if_match: Option<String>,
    authorization: Option<String>,
    body: String,
}

type Script = dyn Fn(&str, &str, usize) -> (u16, String) + Send + Sync;

struct MockApi {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockApi {
    /// `script(method, path, n)` answers the n-th request (from 0).
    async fn start(script: Box<Script>) -> MockApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Arc<Script> = Arc::from(script);
        let (seen2, script2) = (seen.clone(), script.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (seen, script) = (seen2.clone(), script2.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (seen, script) = (seen.clone(), script.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                            let header = |n: http::header::HeaderName| {
                                parts.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string)
                            };
                            let n = {
                                let mut seen = seen.lock().unwrap();
                                seen.push(Seen {
                                    method: parts.method.to_string(),
                                    uri: parts.uri.to_string(),
                                    if_match: header(http::header::IF_MATCH),
                                    authorization: header(http::header::AUTHORIZATION),
                                    body: String::from_utf8_lossy(&body).into_owned(),
                                });
                                seen.len() - 1
                            };
                            let (status, body) = script(parts.method.as_str(), parts.uri.path(), n);
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        MockApi { url, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn run(&self, args: &[&str]) -> Result<String, Failure> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["--admin", &self.url, "--token", "secret"]);
        execute(parse(&all)).await
    }
}

fn api_error(code: &str, message: &str) -> String {
    json!({"error": {"code": code, "message": message, "field": null}}).to_string()
}

#[tokio::test]
async fn update_sends_the_etag_it_read() {
    let api = MockApi::start(Box::new(|method, _path, _n| match method {
        "GET" => (200, distribution_json().to_string()),
        _ => {
            let mut d = distribution_json();
            d["etag"] = json!("ETAG2");
            (200, d.to_string())
        }
    }))
    .await;
    let out = api.run(&["distribution", "update", "E2QWRUHAPOMQZL", "--comment", "changed"]).await.unwrap();
    assert!(out.contains("etag         ETAG2"), "{out}");
    let seen = api.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!((seen[0].method.as_str(), seen[0].uri.as_str()), ("GET", "/v1/distributions/E2QWRUHAPOMQZL"));
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer secret"));
    assert_eq!(seen[1].method, "PUT");
    assert_eq!(seen[1].if_match.as_deref(), Some("\"ETAG1\""));
    let sent: Value = serde_json::from_str(&seen[1].body).unwrap();
    let mut expected = distribution_json()["config"].clone();
    expected["comment"] = json!("changed");
    assert_eq!(sent, expected);

    // --if-match wins over the ETag read.
    api.run(&["distribution", "update", "E2QWRUHAPOMQZL", "--comment", "x", "--if-match", "\"OLD\""]).await.unwrap();
    assert_eq!(api.seen()[3].if_match.as_deref(), Some("\"OLD\""));
}

#[tokio::test]
async fn api_errors_map_to_exit_codes_and_advice() {
    let api = MockApi::start(Box::new(|method, path, _n| match (method, path) {
        ("GET", "/v1/distributions/E1") => (200, distribution_json().to_string()),
        ("DELETE", _) => (409, api_error("DistributionNotDisabled", "disable the distribution first")),
        ("GET", "/v1/stats") => (401, api_error("Unauthorized", "a valid bearer token is required")),
        ("GET", "/v1/usage") => (502, "<html>bad gateway</html>".into()),
        _ => (404, api_error("NoSuchDistribution", "no distribution E9")),
    }))
    .await;
    let e = api.run(&["distribution", "delete", "E1"]).await.unwrap_err();
    assert_eq!(e.exit.code(), 5);
    assert_eq!(
        e.render(),
        "disable the distribution first (DistributionNotDisabled)\n  disable it first: mediaedge distribution disable E1"
    );
    assert_eq!(api.seen()[1].if_match.as_deref(), Some("\"ETAG1\""));

    let e = api.run(&["stats"]).await.unwrap_err();
    assert_eq!(e.exit.code(), 6);
    assert!(e.render().contains("the token given with --token was refused"), "{}", e.render());

    let e = api.run(&["distribution", "get", "E9"]).await.unwrap_err();
    assert_eq!((e.exit.code(), e.render().as_str()), (4, "no distribution E9 (NoSuchDistribution)"));

    let e = api.run(&["usage", "--from", "2026-11-01"]).await.unwrap_err();
    assert_eq!(e.exit.code(), 1);
    assert!(e.message.starts_with("HTTP 502 from http://127.0.0.1:") && e.message.contains("not an answer"));
    assert_eq!(api.seen().last().unwrap().uri, "/v1/usage?from=2026-11-01");

    let e = api.run(&["usage", "--to", "yesterday"]).await.unwrap_err();
    assert_eq!(e.exit, Exit::Usage);
}

#[tokio::test]
async fn invalidate_waits_for_completion() {
    let inv = |status: &str| {
        json!({"id": "I1", "distribution_id": "E1", "status": status, "caller_reference": "ref-1",
               "paths": ["/a/*"], "create_time": "2026-11-22T02:50:00Z",
               "completed_time": if status == "Completed" { json!("2026-11-22T02:50:01Z") } else { Value::Null }})
        .to_string()
    };
    let api = MockApi::start(Box::new(move |method, _path, n| match (method, n) {
        ("POST", _) => (201, inv("InProgress")),
        (_, 1) => (200, inv("InProgress")),
        _ => (200, inv("Completed")),
    }))
    .await;
    let out = api
        .run(&["invalidate", "--distribution", "E1", "--paths", "/a/*", "--caller-reference", "ref-1", "--wait"])
        .await
        .unwrap();
    assert!(out.contains("status            Completed"), "{out}");
    let seen = api.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].uri, "/v1/distributions/E1/invalidations");
    assert_eq!(
        serde_json::from_str::<Value>(&seen[0].body).unwrap(),
        json!({"paths": ["/a/*"], "caller_reference": "ref-1"})
    );
    assert_eq!(seen[2].uri, "/v1/distributions/E1/invalidations/I1");

    let slow = MockApi::start(Box::new(move |method, _path, _n| match method {
        "POST" => (201, inv("InProgress")),
        _ => (200, inv("InProgress")),
    }))
    .await;
    let e = slow
        .run(&["invalidate", "--distribution", "E1", "--paths", "/a", "--wait", "--timeout", "0.5"])
        .await
        .unwrap_err();
    assert_eq!(e.exit.code(), 7, "{e:?}");
    let body: Value = serde_json::from_str(&slow.seen()[0].body).unwrap();
    assert!(body["caller_reference"].as_str().is_some_and(|r| !r.is_empty()), "a fresh caller reference");
}

#[tokio::test]
async fn an_absent_api_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let e = execute(parse(&["distribution", "list", "--admin", &url, "--token", "t"])).await.unwrap_err();
    assert_eq!(e.exit.code(), 3);
    assert!(e.message.contains(&url) && e.message.contains("mediaedge serve"), "{}", e.message);
}
