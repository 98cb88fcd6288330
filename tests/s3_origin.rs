//! S3 origins against a real S3-compatible server: moto's server mode,
//! started by each test on 127.0.0.1 (and killed when the test ends, passing
//! or not). A bucket is made private with an IAM user's key; from then on
//! moto checks every request's SigV4 signature. Requires python3 with
//! moto[server] and botocore (scripts/test.sh installs them): without them
//! these tests fail.

mod common;

use common::{client, free_port_here, get, TempDir};
use mediaedge::config::Secret;
use mediaedge::origin::sigv4::{Signer, UNSIGNED_PAYLOAD};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto server, killed on drop; its request log (werkzeug's, on stderr) in a file.
struct Moto {
    child: Child,
    port: u16,
    dir: TempDir,
    probes: std::sync::atomic::AtomicUsize,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Credentials moto made for the bucket's IAM user.
struct Key {
    id: String,
    secret: String,
}

impl Moto {
    async fn start() -> Moto {
        let dir = TempDir::new("moto");
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("moto log");
        let port = free_port_here();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("python3 runs (moto's server is needed: pip install 'moto[server]')");
        let mut moto = Moto { child, port, dir, probes: Default::default() };
        let c = client();
        let deadline = Instant::now() + Duration::from_secs(60);
        while c.get(format!("{}/moto-api/", moto.endpoint())).send().await.is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto's server exited ({status}); is moto[server] installed?\n{}", moto.log());
            }
            assert!(Instant::now() < deadline, "moto did not answer within 60s:\n{}", moto.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        moto
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// Makes an IAM user allowed `s3:*`, its access key, the bucket and its
    /// objects (`key`, body, Cache-Control); then, with `enforce`, turns on
    /// moto's authentication: every later request needs a valid signature.
    fn setup(&self, bucket: &str, objects: &[(&str, &[u8], &str)], enforce: bool) -> Key {
        let mut list = Vec::new();
        for (i, (key, body, cache_control)) in objects.iter().enumerate() {
            let file = self.dir.path().join(format!("object-{i}"));
            std::fs::write(&file, body).expect("object file");
            list.push(serde_json::json!({"key": key, "file": file, "cache_control": cache_control}));
        }
        let out = python(
            SETUP,
            &[&self.endpoint(), bucket, if enforce { "enforce" } else { "open" }],
            &serde_json::to_string(&list).unwrap(),
        );
        let v: serde_json::Value = serde_json::from_str(&out).expect("setup output");
        Key { id: v["access_key_id"].as_str().unwrap().into(), secret: v["secret_access_key"].as_str().unwrap().into() }
    }

    /// How many requests moto logged whose line holds `needle` (e.g.
    /// `"GET /media/a.ts HTTP/1.1" 200`). A probe request is made first and
    /// waited for: werkzeug logs each request after answering it, and
    /// requests answered before the probe are logged before it.
    async fn count(&self, needle: &str) -> usize {
        let n = self.probes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let probe = format!("/probe-{n}-{}", fastrand::u32(..));
        let _ = client().get(format!("{}{probe}", self.endpoint())).send().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log();
            if log.contains(&format!("GET {probe} ")) {
                return log.lines().filter(|l| l.contains(needle)).count();
            }
            assert!(Instant::now() < deadline, "moto never logged {probe}:\n{log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs a Python snippet; its stdout.
fn python(code: &str, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(code)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

const SETUP: &str = r#"
import json, sys, urllib.request
import botocore.session
from botocore.config import Config
endpoint, bucket, mode = sys.argv[1], sys.argv[2], sys.argv[3]
objects = json.loads(sys.stdin.read())
s = botocore.session.get_session()
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="AKIASETUPSETUPSETUP0", aws_secret_access_key="setup")
iam = s.create_client("iam", **kw)
iam.create_user(UserName="edge")
iam.put_user_policy(UserName="edge", PolicyName="all-s3", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="edge")["AccessKey"]
s3 = s.create_client("s3", config=Config(s3={"addressing_style": "path"}), **kw)
s3.create_bucket(Bucket=bucket)
for o in objects:
    extra = {"CacheControl": o["cache_control"]} if o["cache_control"] else {}
    with open(o["file"], "rb") as f:
        s3.put_object(Bucket=bucket, Key=o["key"], Body=f.read(), **extra)
if mode == "enforce":
    urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0",
        method="POST", headers={"Content-Type": "text/plain"})).read()
print(json.dumps({"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}))
"#;

/// An edge in front of the bucket `media` on moto, credentials written in
/// the configuration; `behavior` lines added to the default behavior.
fn s3_config(moto: &Moto, key: &Key, behavior: &str) -> String {
    format!(
        "[[distributions]]\nid = \"ES3\"\naliases = [\"*\"]\n\n[[distributions.origins]]\nid = \"bucket\"\n\
         read_timeout = \"10s\"\n[distributions.origins.s3]\nbucket = \"media\"\nregion = \"us-east-1\"\n\
         endpoint = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n\n\
         [distributions.default_behavior]\norigin = \"bucket\"\n{behavior}\n",
        moto.endpoint(),
        key.id,
        key.secret
    )
}

fn url(e: &mediaedge::RunningEdge, path: &str) -> String {
    common::url(e, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_bucket_through_the_edge() {
    let moto = Moto::start().await;
    let seg = common::payload(200_000, 1);
    let big = common::payload(300_000, 2);
    let fresh = common::payload(5_000, 3);
    let key = moto.setup(
        "media",
        &[("dir/seg 1.ts", &seg, ""), ("big.mp4", &big, ""), ("fresh.ts", &fresh, "max-age=1")],
        true,
    );
    let c = client();

    // The bucket is private: the object straight from moto without a signature is refused.
    let direct = c.get(format!("{}/media/big.mp4", moto.endpoint())).send().await.unwrap();
    assert_eq!(direct.status().as_u16(), 403);

    let edge = common::edge(&s3_config(&moto, &key, "")).await;

    // Served byte-exact, then from the cache: moto is asked once.
    let (status, xc, _, body) = get(&c, &url(&edge, "/dir/seg%201.ts"), &[]).await;
    assert_eq!((status, xc.as_str()), (200, "Miss"));
    assert!(body == seg, "body differs");
    let (status, xc, _, body) = get(&c, &url(&edge, "/dir/seg%201.ts"), &[]).await;
    assert_eq!((status, xc.as_str(), body == seg), (200, "Hit", true));
    assert_eq!(moto.count("\"GET /media/dir/seg%201.ts HTTP/1.1\" 200").await, 1, "{}", moto.log());

    // A range on a miss, then from the cache.
    for want in ["Miss", "Hit"] {
        let (status, xc, h, body) = get(&c, &url(&edge, "/big.mp4"), &[("range", "bytes=1000-1999")]).await;
        assert_eq!((status, xc.as_str()), (206, want));
        assert_eq!(h["content-range"], "bytes 1000-1999/300000");
        assert!(body == big.slice(1000..2000), "range bytes differ");
    }

    // If-None-Match with the ETag S3 gave: 304 from the edge.
    let (_, _, h, _) = get(&c, &url(&edge, "/big.mp4"), &[]).await;
    let etag = h["etag"].to_str().unwrap().to_string();
    let (status, _, _, body) = get(&c, &url(&edge, "/big.mp4"), &[("if-none-match", &etag)]).await;
    assert_eq!((status, body.len()), (304, 0));
    assert_eq!(moto.count("\"GET /media/big.mp4 HTTP/1.1\" 200").await, 1, "{}", moto.log());

    // An expired copy is revalidated with its ETag (signed If-None-Match): moto answers 304.
    let (status, xc, _, _) = get(&c, &url(&edge, "/fresh.ts"), &[]).await;
    assert_eq!((status, xc.as_str()), (200, "Miss"));
    tokio::time::sleep(Duration::from_millis(2100)).await; // past max-age=1
    let (status, xc, _, body) = get(&c, &url(&edge, "/fresh.ts"), &[]).await;
    assert_eq!((status, xc.as_str(), body == fresh), (200, "RefreshHit", true));
    assert_eq!(moto.count("\"GET /media/fresh.ts HTTP/1.1\" 304").await, 1, "{}", moto.log());

    // A missing key: S3 answers 404 (the edge's key may list the bucket), passed on.
    let (status, _, _, _) = get(&c, &url(&edge, "/nothing-here.ts"), &[]).await;
    assert_eq!(status, 404);
}

/// Slices are filled with `Range` requests: the range is signed, and moto
/// (checking each signature) answers 206.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliced_ranges_are_signed() {
    let moto = Moto::start().await;
    let big = common::payload(300_000, 4);
    let key = moto.setup("media", &[("big.mp4", &big, "")], true);
    let edge = common::edge(&s3_config(&moto, &key, "slice_size = \"64KiB\"")).await;
    let c = client();
    for want in ["Miss", "Hit"] {
        let (status, xc, _, body) = get(&c, &url(&edge, "/big.mp4"), &[("range", "bytes=70000-140000")]).await;
        assert_eq!((status, xc.as_str()), (206, want));
        assert!(body == big.slice(70000..140001), "range bytes differ");
    }
    // Slice 0 (always first: it gives the length and validators), then
    // slices 1 and 2 (64 KiB each): each a signed range request.
    assert_eq!(moto.count("\"GET /media/big.mp4 HTTP/1.1\" 206").await, 3, "{}", moto.log());
    let (status, _, _, body) = get(&c, &url(&edge, "/big.mp4"), &[]).await;
    assert_eq!((status, body == big), (200, true));
}

/// Keys with a slash, a space, a plus sign and non-ASCII letters. moto's own
/// signature check cannot verify such paths (it re-quotes them before
/// checking, and refuses botocore's own requests for these keys too), so
/// this bucket stays without enforced authentication; the signing of these
/// paths is checked against botocore in `signer_agrees_with_botocore`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_reserved_characters() {
    let moto = Moto::start().await;
    let (a, b, d) = (common::payload(3_000, 5), common::payload(3_000, 6), common::payload(3_000, 7));
    let key = moto.setup("media", &[("dir/sub/a b+c ü.ts", &a, ""), ("x y.ts", &b, ""), ("x+y.ts", &d, "")], false);
    let c = client();
    let direct = c.get(format!("{}/media/x+y.ts", moto.endpoint())).send().await.unwrap();
    assert_eq!(direct.status().as_u16(), 403, "objects are private");
    let edge = common::edge(&s3_config(&moto, &key, "")).await;
    for (path, want) in [
        ("/dir/sub/a%20b+c%20%C3%BC.ts", &a),
        ("/dir/sub/a%20b%2Bc%20%C3%bc.ts", &a),
        // `+` in a path is a plus sign, not a space.
        ("/x+y.ts", &d),
        ("/x%20y.ts", &b),
    ] {
        let (status, _, _, body) = get(&c, &url(&edge, path), &[]).await;
        assert_eq!(status, 200, "{path}");
        assert!(body == *want, "{path}: wrong object");
    }
}

/// The signer's canonical request and signature for fixed inputs (a key with
/// reserved characters, a query, a range, a conditional, a session token)
/// are botocore's (`S3SigV4Auth`, as boto3 signs S3 requests).
#[test]
fn signer_agrees_with_botocore() {
    const BOTOCORE: &str = r#"
import json, sys
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
i = json.loads(sys.stdin.read())
auth = S3SigV4Auth(Credentials(i["id"], i["secret"], i["token"]), "s3", i["region"])
req = AWSRequest(method="GET", url=i["url"], headers=i["headers"])
req.context["timestamp"] = i["headers"]["X-Amz-Date"]
cr = auth.canonical_request(req)
print(json.dumps({"canonical_request": cr, "signature": auth.signature(auth.string_to_sign(req, cr), req)}))
"#;
    let signer = Signer::new(
        "AKIAIOSFODNN7EXAMPLE",
        Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        Some(Secret::new("FwoGZXIvYXdzEJr//token+/=")),
        "eu-west-1",
        "s3",
    );
    let mut headers = http::HeaderMap::new();
    headers.insert("host", "127.0.0.1:9000".parse().unwrap());
    headers.insert("range", "bytes=0-1023".parse().unwrap());
    headers.insert("if-none-match", "\"abc\"".parse().unwrap());
    headers.insert("user-agent", "not signed".parse().unwrap());
    // 2024-02-29T23:59:58Z.
    let now = std::time::UNIX_EPOCH + Duration::from_secs(1_709_251_198);
    let signed = signer
        .sign("GET", "/media/dir/a%20b+c%20%C3%BC.ts?x-id=GetObject&a=1&b=x%2By", &mut headers, now, UNSIGNED_PAYLOAD)
        .unwrap();
    assert_eq!(signed.path_and_query, "/media/dir/a%20b%2Bc%20%C3%BC.ts?a=1&b=x%2By&x-id=GetObject");
    let mut sent: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
    for name in ["host", "range", "if-none-match", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"] {
        let h = headers.get(name).unwrap_or_else(|| panic!("{name} sent")).to_str().unwrap();
        // botocore looks up X-Amz-Date by this spelling.
        let name = if name == "x-amz-date" { "X-Amz-Date".to_string() } else { name.to_string() };
        sent.insert(name, h.into());
    }
    assert_eq!(sent["X-Amz-Date"], "20240229T235958Z");
    let input = serde_json::json!({
        "id": "AKIAIOSFODNN7EXAMPLE",
        "secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "token": "FwoGZXIvYXdzEJr//token+/=",
        "region": "eu-west-1",
        "url": format!("http://127.0.0.1:9000{}", signed.path_and_query),
        "headers": sent,
    });
    let out: serde_json::Value = serde_json::from_str(&python(BOTOCORE, &[], &input.to_string())).unwrap();
    assert_eq!(out["canonical_request"].as_str().unwrap(), signed.canonical_request);
    assert_eq!(out["signature"].as_str().unwrap(), signed.signature);
    let authorization = headers["authorization"].to_str().unwrap();
    assert!(authorization.ends_with(&format!("Signature={}", signed.signature)), "{authorization}");
    assert!(authorization.contains(
        "Credential=AKIAIOSFODNN7EXAMPLE/20240229/eu-west-1/s3/aws4_request, \
         SignedHeaders=host;if-none-match;range;x-amz-content-sha256;x-amz-date;x-amz-security-token,"
    ));
}

/// Credentials from a shared credentials file and a named profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_a_file() {
    let moto = Moto::start().await;
    let seg = common::payload(10_000, 8);
    let key = moto.setup("media", &[("seg.ts", &seg, "")], true);
    let dir = TempDir::new("s3-credentials");
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        format!(
            "[default]\naws_access_key_id = AKIAWRONGWRONGWRONG0\naws_secret_access_key = nope\n\n\
             [profile media]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            key.id, key.secret
        ),
    )
    .unwrap();
    let config = format!(
        "[[distributions]]\nid = \"ES3\"\naliases = [\"*\"]\n[[distributions.origins]]\nid = \"bucket\"\n\
         [distributions.origins.s3]\nbucket = \"media\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\n\
         credentials_file = {:?}\nprofile = \"media\"\n[distributions.default_behavior]\norigin = \"bucket\"\n",
        moto.endpoint(),
        file.display().to_string()
    );
    let mut cfg = mediaedge::Config::parse(&config, std::path::Path::new("test.toml")).expect("credentials found");
    let mediaedge::config::OriginKind::S3(s3) = &cfg.distributions[0].origins[0].kind else { panic!("an S3 origin") };
    let found = s3.credentials.get().expect("filled");
    assert_eq!(found.access_key_id, key.id);
    assert!(found.source.contains("[media]"), "{}", found.source);
    cfg.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    let edge = mediaedge::start(&cfg).await.unwrap();
    let (status, _, _, body) = get(&client(), &url(&edge, "/seg.ts"), &[]).await;
    assert_eq!((status, body == seg), (200, true));

    // A profile that is not there: the error names the file and the profile.
    let bad = config.replace("profile = \"media\"", "profile = \"absent\"");
    // (Parsing a configuration from text materialises it.)
    let e = mediaedge::Config::parse(&bad, std::path::Path::new("test.toml")).unwrap_err();
    assert!(e.to_string().contains("has no profile [absent]"), "{e}");
    assert_eq!(e.field.as_deref(), Some("distributions[0].origins[0].s3"));
}

#[test]
fn configuration_errors_name_line_and_field() {
    let base = "[[distributions]]\nid = \"E\"\naliases = [\"*\"]\n[[distributions.origins]]\nid = \"b\"\n";
    let tail = "[distributions.default_behavior]\norigin = \"b\"\n";
    for (s3, line, field, message) in [
        ("bucket = \"My_Bucket\"\nregion = \"us-east-1\"\n", 7, "s3.bucket", "is not a bucket name"),
        ("bucket = \"media\"\nregion = \"us east\"\n", 8, "s3.region", "is not a region name"),
        ("bucket = \"media\"\nregion = \"r\"\nendpoint = \"ftp://x\"\n", 9, "s3.endpoint", "http:// or https://"),
        (
            "bucket = \"media\"\nregion = \"r\"\naccess_key_id = \"AKIA\"\n",
            9,
            "s3.secret_access_key",
            "needs `secret_access_key`",
        ),
        (
            "bucket = \"media\"\nregion = \"r\"\naccess_key_id = \"AKIA\"\nsecret_access_key = \"***\"\n",
            10,
            "s3.secret_access_key",
            "still `***`",
        ),
    ] {
        let text = format!("{base}[distributions.origins.s3]\n{s3}{tail}");
        let e = mediaedge::Config::parse(&text, std::path::Path::new("edge.toml")).unwrap_err();
        assert_eq!(e.line, line, "{e}");
        assert_eq!(e.field.as_deref(), Some(format!("distributions[0].origins[0].{field}").as_str()), "{e}");
        assert!(e.message.contains(message), "{e}");
        assert!(e.to_string().starts_with(&format!("edge.toml:{line}:")), "{e}");
    }
    let both =
        format!("{base}url = \"http://x\"\n[distributions.origins.s3]\nbucket = \"media\"\nregion = \"r\"\n{tail}");
    let e = mediaedge::Config::parse(&both, std::path::Path::new("edge.toml")).unwrap_err();
    assert!(e.message.contains("exactly one of `url`, `s3` or `folder`"), "{e}");

    // Virtual-hosted on AWS by default; path-style for a bucket with dots.
    for (bucket, authority, prefix) in [
        ("media", "media.s3.eu-west-1.amazonaws.com", ""),
        ("media.example", "s3.eu-west-1.amazonaws.com", "/media.example"),
    ] {
        let text = format!(
            "{base}[distributions.origins.s3]\nbucket = \"{bucket}\"\nregion = \"eu-west-1\"\n\
             access_key_id = \"AKIA\"\nsecret_access_key = \"s3cr3t-value\"\n{tail}"
        );
        let cfg = mediaedge::Config::parse(&text, std::path::Path::new("edge.toml")).unwrap();
        let mediaedge::config::OriginKind::S3(s3) = &cfg.distributions[0].origins[0].kind else { panic!("S3") };
        assert_eq!((s3.http.scheme.as_str(), s3.http.authority.as_str()), ("https", authority));
        assert_eq!(s3.http.path_prefix, prefix);
        // Secrets print as ***, in the configuration's Debug output too.
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cr3t-value") && shown.contains("***"), "secret in Debug output");
        assert!(!cfg.export_toml().contains("s3cr3t-value"), "secret in an export");
    }
}

/// The edge binary: credentials from the environment for one origin; a wrong
/// secret and an unknown key for two others give 502s whose reasons (S3's
/// error codes) are in the edge's log. No secret reaches the log, the admin
/// API's views or `check-config`; a document read from the admin API and
/// sent back unchanged keeps its secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_a_502_with_the_reason_logged() {
    let moto = Moto::start().await;
    let seg = common::payload(10_000, 9);
    let key = moto.setup("media", &[("ok.ts", &seg, ""), ("wrong/x.ts", &seg, ""), ("inline/y.ts", &seg, "")], true);
    let dir = TempDir::new("s3-binary");
    let token = "admin-token-0123456789abcdef";
    let ep = moto.endpoint();
    let origin = |id: &str, creds: &str| {
        format!(
            "[[distributions.origins]]\nid = \"{id}\"\n[distributions.origins.s3]\nbucket = \"media\"\n\
             region = \"us-east-1\"\nendpoint = \"{ep}\"\n{creds}\n"
        )
    };
    let behavior =
        |path: &str, origin: &str| format!("[[distributions.behaviors]]\npath = \"{path}\"\norigin = \"{origin}\"\n");
    let config = [
        format!("[admin]\ntoken = \"{token}\"\n\n[[distributions]]\nid = \"ES3\"\naliases = [\"*\"]\n"),
        origin("env", ""),
        origin("wrong", &format!("access_key_id = \"{}\"\nsecret_access_key = \"wrong-secret-value\"\n", key.id)),
        origin(
            "unknown",
            "access_key_id = \"AKIAUNKNOWNUNKNOWN00\"\nsecret_access_key = \"unknown-secret-value\"\n\
             session_token = \"session-token-value\"\n",
        ),
        origin("inline", &format!("access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n", key.id, key.secret)),
        behavior("/wrong/*", "wrong"),
        behavior("/unknown/*", "unknown"),
        behavior("/inline/*", "inline"),
        "[distributions.default_behavior]\norigin = \"env\"\n".to_string(),
    ]
    .concat();
    let file = dir.path().join("edge.toml");
    std::fs::write(&file, &config).unwrap();
    let secrets = [key.secret.as_str(), "wrong-secret-value", "unknown-secret-value", "session-token-value"];

    let check_config = |file: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_mediaedge"))
            .arg("check-config")
            .arg(file)
            .env("AWS_ACCESS_KEY_ID", &key.id)
            .env("AWS_SECRET_ACCESS_KEY", &key.secret)
            .output()
            .unwrap()
    };
    let check = check_config(&file);
    let shown = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    assert!(check.status.success(), "{shown}");
    // A configuration error in the same file, with the secrets in it, does not show them either.
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, config.replace("region = \"us-east-1\"", "region = \"us east\"")).unwrap();
    let check = check_config(&broken);
    let shown_broken = String::from_utf8_lossy(&check.stderr).to_string();
    assert!(!check.status.success() && shown_broken.contains("region"), "{shown_broken}");

    let (port, admin_port) = (free_port_here(), free_port_here());
    let stderr = std::fs::File::create(dir.path().join("edge.err")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mediaedge"))
        .args(["serve", "--config"])
        .arg(&file)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("AWS_ACCESS_KEY_ID", &key.id)
        .env("AWS_SECRET_ACCESS_KEY", &key.secret)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("the edge binary starts");
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut child);
    let c = client();
    let edge = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.get(format!("{edge}/ready-probe")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the edge did not answer within 30s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = || std::fs::read_to_string(dir.path().join("edge.err")).unwrap_or_default();

    let (status, _, _, body) = get(&c, &format!("{edge}/ok.ts"), &[]).await;
    assert_eq!((status, body == seg), (200, true), "credentials from the environment: {}", log());
    let (status, _, _, wrong_body) = get(&c, &format!("{edge}/wrong/x.ts"), &[]).await;
    assert_eq!(status, 502);
    let wrong_body = String::from_utf8_lossy(&wrong_body).to_string();
    assert!(wrong_body.contains("SignatureDoesNotMatch"), "{wrong_body}");
    let (status, _, _, unknown_body) = get(&c, &format!("{edge}/unknown/x.ts"), &[]).await;
    assert_eq!(status, 502);
    // The viewer is not told which key the edge uses, or where it keeps it.
    let unknown_body = String::from_utf8_lossy(&unknown_body).to_string();
    assert!(unknown_body.contains("InvalidAccessKeyId"), "{unknown_body}");
    assert!(!unknown_body.contains("AKIA") && !unknown_body.contains("configuration"), "{unknown_body}");
    // The log lines are written before the response goes out.
    let text = log();
    let line = |needles: &[&str]| {
        text.lines()
            .find(|l| l.contains("WARN") && needles.iter().all(|n| l.contains(n)))
            .unwrap_or_else(|| panic!("no log line with {needles:?}:\n{text}"))
            .to_string()
    };
    line(&["/wrong/x.ts", "SignatureDoesNotMatch"]);
    line(&["/unknown/x.ts", "InvalidAccessKeyId"]);
    line(&["SignatureDoesNotMatch", &key.id, "the configuration"]);
    line(&["InvalidAccessKeyId", "AKIAUNKNOWNUNKNOWN00"]);

    // The admin API: the distribution's configuration and the export.
    let admin = format!("http://127.0.0.1:{admin_port}");
    let auth = format!("Bearer {token}");
    let r = c.get(format!("{admin}/v1/distributions/ES3")).header("authorization", &auth).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let view: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let view_text = view.to_string();
    assert!(view_text.contains("\"secret_access_key\":\"***\""), "{view_text}");
    let export = c.get(format!("{admin}/v1/config")).header("authorization", &auth).send().await.unwrap();
    let export = export.text().await.unwrap();
    assert!(export.contains("secret_access_key = \"***\""), "{export}");

    // Sent back as shown (with a new comment): the secrets are kept, and the
    // origin with its key in the configuration still signs correctly.
    let mut doc = view["config"].clone();
    doc["comment"] = "changed".into();
    let r = c
        .put(format!("{admin}/v1/distributions/ES3"))
        .header("authorization", &auth)
        .header("if-match", &etag)
        .body(doc.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(status, 200, "{}", r.text().await.unwrap());
    let (status, _, _, body) = get(&c, &format!("{edge}/inline/y.ts"), &[]).await;
    assert_eq!((status, body == seg), (200, true), "{}", log());

    for s in secrets {
        for (what, text) in [("log", &log()), ("view", &view_text), ("export", &export), ("check-config", &shown)] {
            assert!(!text.contains(s), "a secret in the {what}");
        }
        assert!(!shown_broken.contains(s), "a secret in check-config's error");
    }
}
