//! Signed URLs and signed cookies (CloudFront-compatible) against a real
//! origin. Keys are made with the openssl command line; signatures come from
//! the edge's own signer, from `mediaedge sign`, and from AWS's botocore.

mod common;
use common::*;
use mediaedge::security::policy;
use mediaedge::security::sign::{self, PrivateKey, Terms};
use mediaedge::security::signature;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_mediaedge");

/// Test keys, as PEM text: K1 and K2 are trusted, `other` is not.
struct Keys {
    /// PKCS#8 private key ("BEGIN PRIVATE KEY").
    k1: String,
    /// SubjectPublicKeyInfo ("BEGIN PUBLIC KEY").
    k1_pub: String,
    /// PKCS#1 private key ("BEGIN RSA PRIVATE KEY").
    k2: String,
    /// PKCS#1 public key ("BEGIN RSA PUBLIC KEY").
    k2_pub: String,
    other: String,
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().unwrap_or_else(|e| {
        panic!("these tests make RSA keys with the openssl command line, which could not run ({e}); install openssl (.ci/run does)")
    });
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Made once per test binary, in a folder removed right after.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = TempDir::new("keys");
        let p = |name: &str| dir.0.join(name).display().to_string();
        openssl(&["genrsa", "-out", &p("raw1.pem"), "2048"]);
        openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", &p("raw1.pem"), "-out", &p("k1.pem")]);
        openssl(&["rsa", "-in", &p("k1.pem"), "-pubout", "-out", &p("k1.pub.pem")]);
        openssl(&["genrsa", "-out", &p("raw2.pem"), "2048"]);
        openssl(&["rsa", "-in", &p("raw2.pem"), "-traditional", "-out", &p("k2.pem")]);
        openssl(&["rsa", "-in", &p("k2.pem"), "-RSAPublicKey_out", "-out", &p("k2.pub.pem")]);
        openssl(&["genrsa", "-out", &p("other.pem"), "2048"]);
        let read = |name: &str| std::fs::read_to_string(dir.0.join(name)).expect("read a key");
        let keys = Keys {
            k1: read("k1.pem"),
            k1_pub: read("k1.pub.pem"),
            k2: read("k2.pem"),
            k2_pub: read("k2.pub.pem"),
            other: read("other.pem"),
        };
        assert!(keys.k1.starts_with("-----BEGIN PRIVATE KEY-----"), "{}", keys.k1);
        assert!(keys.k1_pub.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert!(keys.k2.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert!(keys.k2_pub.starts_with("-----BEGIN RSA PUBLIC KEY-----"));
        keys
    })
}

fn private(pem: &str) -> PrivateKey {
    PrivateKey::from_pem(pem).expect("a private key")
}

/// A folder under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let p = std::env::temp_dir().join(format!(
            "mediaedge-signed-{tag}-{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).expect("make a temp dir");
        TempDir(p)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The edge in front of a test origin: the default behavior trusts key group
/// kg1 (K1 and K2) and keys every query parameter and cookie; `/open/*` is
/// public.
struct Setup {
    e: mediaedge::RunningEdge,
    o: TestOrigin,
    dir: TempDir,
    /// `http://127.0.0.1:PORT`, as viewers type it.
    base: String,
}

fn config_text(origin: &str, server: &str, keys_in_group: &str) -> String {
    format!(
        r#"
[server]
{server}

[[distributions]]
id = "ESIGNED"
aliases = ["*"]

[[distributions.origins]]
id = "o"
url = "{origin}"

[[distributions.key_groups]]
id = "kg1"
keys = [{keys_in_group}]

[[distributions.behaviors]]
path = "/open/*"
origin = "o"
origin_request.query = "all"

[distributions.default_behavior]
origin = "o"
trusted_key_groups = ["kg1"]
cache_key.query = "all"
cache_key.cookies = "all"
"#
    )
}

const BOTH_KEYS: &str =
    r#"{ id = "K1", public_key = "keys/k1.pub.pem" }, { id = "K2", public_key = "keys/k2.pub.pem" }"#;

fn load(dir: &TempDir, text: &str) -> mediaedge::Config {
    let path = dir.write("edge.toml", text);
    let mut cfg = mediaedge::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    cfg.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg
}

async fn setup_with(server: &str) -> Setup {
    let k = keys();
    let o = TestOrigin::start().await;
    for p in ["/video/a.ts", "/video/b.ts", "/video/sub/c.m3u8", "/q/seg1.ts", "/open/free.ts", "/live/master.m3u8"] {
        o.set(p, Script::ok(format!("body of {p}")).header("cache-control", "max-age=300"));
    }
    let dir = TempDir::new("edge");
    dir.write("keys/k1.pub.pem", &k.k1_pub);
    dir.write("keys/k2.pub.pem", &k.k2_pub);
    let cfg = load(&dir, &config_text(&o.url(), server, BOTH_KEYS));
    let e = mediaedge::start(&cfg).await.expect("edge starts");
    let base = format!("http://{}", e.addr());
    Setup { e, o, dir, base }
}

async fn setup() -> Setup {
    setup_with("").await
}

fn signed_url(url: &str, key_pem: &str, id: &str, terms: &Terms) -> String {
    sign::signed_url(url, id, &private(key_pem), terms).expect("sign")
}

fn custom(resource: &str, expires: u64) -> Terms {
    Terms::Custom { policy: policy::custom(resource, expires, None, None) }
}

/// The signing parameters of a custom-policy URL, to append to other paths.
fn custom_query(resource: &str, expires: u64, key_pem: &str, id: &str) -> String {
    let url = signed_url("http://x/", key_pem, id, &custom(resource, expires));
    url.split_once('?').unwrap().1.to_string()
}

fn cookie_header(cookies: &[(String, String)]) -> String {
    cookies.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ")
}

async fn get_text(url: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let (s, x, _, b) = get(&client(), url, headers).await;
    (s, x, String::from_utf8_lossy(&b).into_owned())
}

#[tokio::test]
async fn a_valid_canned_url_is_served_and_the_origin_never_sees_the_signature() {
    let k = keys();
    let s = setup().await;
    let url =
        signed_url(&format!("{}/video/a.ts?lang=en", s.base), &k.k1, "K1", &Terms::Canned { expires: now() + 600 });
    let (status, x, body) = get_text(&url, &[]).await;
    assert_eq!((status, x.as_str(), body.as_str()), (200, "Miss", "body of /video/a.ts"));
    let (status, x, _) = get_text(&url, &[]).await;
    assert_eq!((status, x.as_str()), (200, "Hit"));
    let seen = s.o.seen_for("/video/a.ts");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/video/a.ts?lang=en", "the signing parameters are stripped; the others kept");

    // A public path needs nothing, and its query reaches the origin untouched.
    let (status, _, _) = get_text(&format!("{}/open/free.ts?Expires=1&x=2", s.base), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(s.o.seen_for("/open/free.ts")[0].uri, "/open/free.ts?Expires=1&x=2");
}

#[tokio::test]
async fn a_custom_policy_with_wildcards_serves_many_paths() {
    let k = keys();
    let s = setup().await;
    let q = custom_query(&format!("{}/video/*", s.base), now() + 600, &k.k1, "K1");
    for p in ["/video/a.ts", "/video/b.ts", "/video/sub/c.m3u8"] {
        let (status, _, body) = get_text(&format!("{}{p}?{q}", s.base), &[]).await;
        assert_eq!((status, body), (200, format!("body of {p}")), "{p}");
        assert_eq!(s.o.seen_for(p)[0].uri, p, "no signing parameter reaches the origin");
    }
    // Outside the wildcard.
    let (status, _, body) = get_text(&format!("{}/q/seg1.ts?{q}", s.base), &[]).await;
    assert_eq!((status, body.as_str()), (403, "403 Forbidden: resource not allowed by policy\n"));

    // `?` stands for exactly one character; an IP range and a start time that hold.
    let terms = Terms::Custom {
        policy: policy::custom(&format!("{}/q/seg?.ts", s.base), now() + 600, Some("127.0.0.0/8"), Some(now() - 5)),
    };
    let q = signed_url("http://x/", &k.k2, "K2", &terms).split_once('?').unwrap().1.to_string();
    let (status, _, _) = get_text(&format!("{}/q/seg1.ts?{q}", s.base), &[]).await;
    assert_eq!(status, 200);
    let (status, _, body) = get_text(&format!("{}/q/seg10.ts?{q}", s.base), &[]).await;
    assert_eq!((status, body.as_str()), (403, "403 Forbidden: resource not allowed by policy\n"));
}

#[tokio::test]
async fn every_signature_for_a_path_shares_one_cached_copy() {
    let k = keys();
    let s = setup().await;
    let target = format!("{}/video/a.ts?lang=en", s.base);
    let urls = [
        signed_url(&target, &k.k1, "K1", &Terms::Canned { expires: now() + 600 }),
        signed_url(&target, &k.k1, "K1", &Terms::Canned { expires: now() + 700 }),
        signed_url(&target, &k.k2, "K2", &Terms::Canned { expires: now() + 800 }),
        signed_url(&target, &k.k1, "K1", &custom(&format!("{}/video/*", s.base), now() + 900)),
    ];
    let mut results = Vec::new();
    for u in &urls {
        let (status, x, body) = get_text(u, &[]).await;
        assert_eq!((status, body.as_str()), (200, "body of /video/a.ts"));
        results.push(x);
    }
    assert_eq!(results, ["Miss", "Hit", "Hit", "Hit"]);
    assert_eq!(s.o.hits("/video/a.ts"), 1, "one origin request for every viewer's signature");
}

#[tokio::test]
async fn signed_cookies_canned_and_custom_are_accepted_and_never_forwarded() {
    let k = keys();
    let s = setup().await;
    let url = format!("{}/video/a.ts?lang=en", s.base);
    let canned = sign::signed_cookies(Some(&url), "K1", &private(&k.k1), &Terms::Canned { expires: now() + 600 })
        .expect("sign cookies");
    assert_eq!(
        canned.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["CloudFront-Expires", "CloudFront-Signature", "CloudFront-Key-Pair-Id"]
    );
    let cookie = format!("session=abc; {}", cookie_header(&canned));
    let (status, _, body) = get_text(&url, &[("cookie", &cookie)]).await;
    assert_eq!((status, body.as_str()), (200, "body of /video/a.ts"));
    // The canned cookie is for that one URL.
    let (status, _, body) = get_text(&format!("{}/video/b.ts", s.base), &[("cookie", &cookie)]).await;
    assert_eq!((status, body.as_str()), (403, "403 Forbidden: invalid signature\n"));

    let terms = custom(&format!("{}/video/*", s.base), now() + 600);
    let custom_cookies = sign::signed_cookies(None, "K2", &private(&k.k2), &terms).expect("sign cookies");
    assert_eq!(custom_cookies[0].0, "CloudFront-Policy");
    let cookie = format!("{}; session=abc", cookie_header(&custom_cookies));
    for p in ["/video/b.ts", "/video/sub/c.m3u8"] {
        let (status, _, body) = get_text(&format!("{}{p}", s.base), &[("cookie", &cookie)]).await;
        assert_eq!((status, body), (200, format!("body of {p}")), "{p}");
    }
    for p in ["/video/a.ts", "/video/b.ts", "/video/sub/c.m3u8"] {
        let seen = s.o.seen_for(p);
        let forwarded = seen[0].headers.get("cookie").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(forwarded.as_deref(), Some("session=abc"), "{p}: only the viewer's own cookie reaches the origin");
    }

    // Passed requests (Authorization) lose the signing cookies and parameters too.
    let signed = signed_url(&url, &k.k1, "K1", &Terms::Canned { expires: now() + 600 });
    let (status, _, _) = get_text(&signed, &[("authorization", "Bearer x"), ("cookie", &cookie)]).await;
    assert_eq!(status, 200);
    let seen = s.o.seen_for("/video/a.ts");
    let last = seen.last().unwrap();
    assert_eq!(last.uri, "/video/a.ts?lang=en");
    assert_eq!(last.headers.get("cookie").unwrap(), "session=abc");
}

#[tokio::test]
async fn keys_rotate_without_downtime() {
    let k = keys();
    let s = setup().await;
    let target = format!("{}/video/b.ts", s.base);
    let by_k1 = signed_url(&target, &k.k1, "K1", &Terms::Canned { expires: now() + 600 });
    let by_k2 = signed_url(&target, &k.k2, "K2", &Terms::Canned { expires: now() + 600 });
    for u in [&by_k1, &by_k2, &by_k1] {
        assert_eq!(get_text(u, &[]).await.0, 200, "{u}");
    }
    // K1 retired by a reload: its verified signatures are not trusted any more.
    let cfg = load(&s.dir, &config_text(&s.o.url(), "", r#"{ id = "K2", public_key = "keys/k2.pub.pem" }"#));
    s.e.edge.reconfigure(&cfg).expect("reconfigure");
    let (status, _, body) = get_text(&by_k1, &[]).await;
    assert_eq!((status, body.as_str()), (403, "403 Forbidden: unknown key pair id\n"));
    assert_eq!(get_text(&by_k2, &[]).await.0, 200);
}

/// Replaces the value of one query parameter.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let (base, query) = url.split_once('?').unwrap();
    let params: Vec<String> = query
        .split('&')
        .map(|p| if p.split('=').next() == Some(name) { format!("{name}={value}") } else { p.to_string() })
        .collect();
    format!("{base}?{}", params.join("&"))
}

fn without_param(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').unwrap();
    let params: Vec<&str> = query.split('&').filter(|p| p.split('=').next() != Some(name)).collect();
    format!("{base}?{}", params.join("&"))
}

fn param<'a>(url: &'a str, name: &str) -> &'a str {
    url.split_once('?').unwrap().1.split('&').find_map(|p| p.strip_prefix(&format!("{name}="))).unwrap()
}

/// A custom-policy URL for `target` with this exact policy JSON, signed by `key`.
fn with_policy(target: &str, json: &str, key: &str) -> String {
    signed_url(target, key, "K1", &Terms::Custom { policy: json.to_string() })
}

#[tokio::test]
async fn bad_signatures_get_403_with_a_reason_and_never_reach_the_origin() {
    let k = keys();
    let s = setup().await;
    let b = &s.base;
    let t = now();
    let target = format!("{b}/video/a.ts?lang=en");
    let canned = signed_url(&target, &k.k1, "K1", &Terms::Canned { expires: t + 600 });
    let custom_url = signed_url(&target, &k.k1, "K1", &custom(&format!("{b}/video/*"), t + 600));
    let sig = param(&canned, "Signature");
    let mut flipped = signature::decode(sig).unwrap();
    flipped[17] ^= 0x01;
    let flipped = signature::encode(&flipped);
    let dlt = |extra: &str| {
        format!(
            r#"{{"Statement":[{{"Resource":"{b}/video/*","Condition":{{"DateLessThan":{{"AWS:EpochTime":{}}}{extra}}}}}]}}"#,
            t + 600
        )
    };
    let big_policy = dlt("").replace("/video/*", &format!("/video/{}*", "x".repeat(4100)));
    let canned_cookies =
        sign::signed_cookies(Some(&target), "K1", &private(&k.k1), &Terms::Canned { expires: t + 600 }).unwrap();
    let k2_cookies =
        sign::signed_cookies(Some(&target), "K2", &private(&k.k2), &Terms::Canned { expires: t + 600 }).unwrap();
    let cookies_without =
        |name: &str| cookie_header(&canned_cookies.iter().filter(|(n, _)| n != name).cloned().collect::<Vec<_>>());
    let expired_cookies =
        sign::signed_cookies(Some(&target), "K1", &private(&k.k1), &Terms::Canned { expires: t - 5 }).unwrap();
    let other_url_cookies = sign::signed_cookies(
        Some(&format!("{b}/video/b.ts")),
        "K1",
        &private(&k.k1),
        &Terms::Canned { expires: t + 600 },
    )
    .unwrap();
    let wrong_resource_cookies =
        sign::signed_cookies(None, "K1", &private(&k.k1), &custom(&format!("{b}/other/*"), t + 600)).unwrap();
    // The policy JSON changed after signing (another resource), signature kept.
    let tampered_policy = {
        let forged = signature::encode(dlt("").replace("/video/*", "/*").as_bytes());
        with_param(&custom_url, "Policy", &forged)
    };
    let path_only = |u: &str| u.replacen("/video/a.ts?lang=en&", "/video/a.ts?", 1);

    let cases: Vec<(&str, String, Option<String>, &str)> = vec![
        ("no signature at all", target.clone(), None, "missing signed URL or cookies"),
        (
            "lower-case parameter names",
            canned
                .replace("Expires=", "expires=")
                .replace("Signature=", "signature=")
                .replace("Key-Pair-Id=", "key-pair-id="),
            None,
            "missing signed URL or cookies",
        ),
        ("missing Signature", without_param(&canned, "Signature"), None, "missing Signature"),
        ("missing Key-Pair-Id", without_param(&canned, "Key-Pair-Id"), None, "missing Key-Pair-Id"),
        ("missing Expires", without_param(&canned, "Expires"), None, "missing Expires or Policy"),
        ("missing Policy", without_param(&custom_url, "Policy"), None, "missing Expires or Policy"),
        ("both Expires and Policy", format!("{custom_url}&Expires={}", t + 600), None, "both Expires and Policy"),
        ("repeated Signature", format!("{canned}&Signature={sig}"), None, "repeated or empty signing parameter"),
        ("empty Key-Pair-Id", with_param(&canned, "Key-Pair-Id", ""), None, "repeated or empty signing parameter"),
        ("malformed Expires", with_param(&canned, "Expires", "12abc"), None, "malformed Expires"),
        (
            "Expires beyond 64 bits",
            with_param(&canned, "Expires", "99999999999999999999999"),
            None,
            "malformed Expires",
        ),
        ("expired", signed_url(&target, &k.k1, "K1", &Terms::Canned { expires: t - 5 }), None, "signature expired"),
        (
            "expired custom",
            with_policy(&target, &dlt("").replace(&(t + 600).to_string(), &(t - 1).to_string()), &k.k1),
            None,
            "signature expired",
        ),
        (
            "not yet valid",
            signed_url(
                &target,
                &k.k1,
                "K1",
                &Terms::Custom { policy: policy::custom(&format!("{b}/video/*"), t + 7200, None, Some(t + 3600)) },
            ),
            None,
            "signature not yet valid",
        ),
        (
            "wrong IPv4 range",
            signed_url(
                &target,
                &k.k1,
                "K1",
                &Terms::Custom { policy: policy::custom(&format!("{b}/video/*"), t + 600, Some("10.0.0.0/8"), None) },
            ),
            None,
            "source IP not allowed",
        ),
        (
            "IPv6 range for an IPv4 viewer",
            signed_url(
                &target,
                &k.k1,
                "K1",
                &Terms::Custom {
                    policy: policy::custom(&format!("{b}/video/*"), t + 600, Some("2001:db8::/32"), None),
                },
            ),
            None,
            "source IP not allowed",
        ),
        ("unknown key id", with_param(&canned, "Key-Pair-Id", "KUNKNOWN"), None, "unknown key pair id"),
        (
            "bad base64 signature",
            with_param(&canned, "Signature", "!!not*base64!!"),
            None,
            "malformed signature encoding",
        ),
        (
            "signature not UTF-8 once decoded",
            with_param(&canned, "Signature", "%FF%FE"),
            None,
            "malformed signature encoding",
        ),
        ("bad base64 policy", with_param(&custom_url, "Policy", "eyJ!!"), None, "malformed policy encoding"),
        ("bad JSON policy", with_policy(&target, "{\"Statement\":[{", &k.k1), None, "malformed policy JSON"),
        ("oversize policy", with_policy(&target, &big_policy, &k.k1), None, "policy too large"),
        ("oversize signature", with_param(&canned, "Signature", &"A".repeat(2000)), None, "signature too large"),
        (
            "policy without DateLessThan",
            with_policy(
                &target,
                &format!(
                    r#"{{"Statement":[{{"Resource":"{b}/video/*","Condition":{{"DateGreaterThan":{{"AWS:EpochTime":1}}}}}}]}}"#
                ),
                &k.k1,
            ),
            None,
            "policy without DateLessThan",
        ),
        (
            "policy with two statements",
            with_policy(&target, &format!(r#"{{"Statement":[{0},{0}]}}"#, &dlt("")[14..dlt("").len() - 2]), &k.k1),
            None,
            "unsupported policy",
        ),
        (
            "policy with an unknown condition",
            with_policy(&target, &dlt(r#","DateLessThanEquals":{"AWS:EpochTime":1}"#), &k.k1),
            None,
            "unsupported policy",
        ),
        (
            "wrong resource",
            signed_url(&target, &k.k1, "K1", &custom(&format!("{b}/other/*"), t + 600)),
            None,
            "resource not allowed by policy",
        ),
        (
            "resource for another host",
            signed_url(&target, &k.k1, "K1", &custom("http://elsewhere.example/video/*", t + 600)),
            None,
            "resource not allowed by policy",
        ),
        ("tampered URL path", canned.replace("/video/a.ts", "/video/b.ts"), None, "invalid signature"),
        ("tampered query", canned.replace("lang=en", "lang=fr"), None, "invalid signature"),
        ("query parameter dropped", path_only(&canned), None, "invalid signature"),
        ("tampered Expires", with_param(&canned, "Expires", &(t + 100_000).to_string()), None, "invalid signature"),
        ("tampered signature byte", with_param(&canned, "Signature", &flipped), None, "invalid signature"),
        ("tampered policy", tampered_policy, None, "invalid signature"),
        (
            "signed by another key",
            signed_url(&target, &k.other, "K1", &Terms::Canned { expires: t + 600 }),
            None,
            "invalid signature",
        ),
        ("K1's signature named as K2's", with_param(&canned, "Key-Pair-Id", "K2"), None, "invalid signature"),
        (
            "cookies without Key-Pair-Id",
            target.clone(),
            Some(cookies_without("CloudFront-Key-Pair-Id")),
            "missing Key-Pair-Id",
        ),
        (
            "cookies without Signature",
            target.clone(),
            Some(cookies_without("CloudFront-Signature")),
            "missing Signature",
        ),
        (
            "cookies without Expires",
            target.clone(),
            Some(cookies_without("CloudFront-Expires")),
            "missing Expires or Policy",
        ),
        ("expired cookies", target.clone(), Some(cookie_header(&expired_cookies)), "signature expired"),
        ("cookies for another URL", target.clone(), Some(cookie_header(&other_url_cookies)), "invalid signature"),
        (
            "cookies for another resource",
            target.clone(),
            Some(cookie_header(&wrong_resource_cookies)),
            "resource not allowed by policy",
        ),
        (
            "cookie signature with K2's key id",
            target.clone(),
            Some(cookie_header(&[canned_cookies[0].clone(), canned_cookies[1].clone(), k2_cookies[2].clone()])),
            "invalid signature",
        ),
        // URL and cookies never mix: an incomplete URL is not completed by a cookie.
        (
            "URL without key id, key id in a cookie",
            without_param(&canned, "Key-Pair-Id"),
            Some("CloudFront-Key-Pair-Id=K1".into()),
            "missing Key-Pair-Id",
        ),
        (
            "URL signed by K1 named K2, K2's valid cookies",
            with_param(&canned, "Key-Pair-Id", "K2"),
            Some(cookie_header(&k2_cookies)),
            "invalid signature",
        ),
    ];
    assert!(cases.len() >= 25);
    let before = s.o.total();
    let mut failures = Vec::new();
    for (name, url, cookie, reason) in &cases {
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
        let (status, x, body) = get_text(url, &headers).await;
        let want = format!("403 Forbidden: {reason}\n");
        if status != 403 || body != want || x != "Error" {
            failures.push(format!("{name}: got {status} {x} {body:?}, want 403 {want:?}\n  {url}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    assert_eq!(s.o.total(), before, "no bad request reached the origin");

    // A HEAD without a signature is refused as well; a valid one is served.
    let r = client().head(&target).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(s.o.total(), before);
    let r = client().get(&canned).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(s.o.total(), before + 1);
}

#[tokio::test]
async fn the_reason_is_the_access_logs_detailed_result_type() {
    let dir = TempDir::new("log");
    let log = dir.0.join("access.log");
    let s = setup_with(&format!("access_log = {:?}", log.display().to_string())).await;
    let (status, _, _) = get_text(&format!("{}/video/a.ts", s.base), &[]).await;
    assert_eq!(status, 403);
    let line = wait_for_line(&log).await;
    let fields: Vec<&str> = mediaedge::log::FIELDS.split(' ').collect();
    let i = fields.iter().position(|f| *f == "x-edge-detailed-result-type").unwrap();
    let values: Vec<&str> = line.split('\t').collect();
    assert_eq!(values[i], "missing%20signed%20URL%20or%20cookies", "{line}");
    assert_eq!(values[fields.iter().position(|f| *f == "sc-status").unwrap()], "403");
}

async fn wait_for_line(path: &Path) -> String {
    for _ in 0..100 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| !l.starts_with('#') && !l.is_empty()) {
            return line.to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no access log line in 5 s");
}

/// Runs tests/fixtures/sign_with_botocore.py: AWS's own CloudFront signer.
fn botocore(key_file: &Path, url: &str, extra: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sign_with_botocore.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(key_file)
        .arg(url)
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("python3 could not run ({e}); the botocore cross-check needs python3 with botocore and cryptography (.ci/run installs them)"));
    assert!(
        out.status.success(),
        "{} failed: {}\n(the botocore cross-check needs: python3 -m pip install botocore cryptography)",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

fn cookie_from_json(v: &serde_json::Value) -> String {
    v.as_object().unwrap().iter().map(|(n, v)| format!("{n}={}", v.as_str().unwrap())).collect::<Vec<_>>().join("; ")
}

#[tokio::test]
async fn botocore_signed_urls_and_cookies_are_accepted() {
    let k = keys();
    let s = setup().await;
    let key_file = s.dir.write("k1.pem", &k.k1);
    let target = format!("{}/video/a.ts?lang=en", s.base);
    let expires = (now() + 900).to_string();
    let resource = format!("{}/video/*", s.base);
    let aws = botocore(
        &key_file,
        &target,
        &["--key-pair-id", "K1", "--expires", &expires, "--resource", &resource, "--ip", "127.0.0.0/8"],
    );
    let canned_url = aws["canned_url"].as_str().unwrap();
    let custom_url = aws["custom_url"].as_str().unwrap();
    assert!(custom_url.contains("Policy="), "{custom_url}");
    assert!(aws["custom_policy"].as_str().unwrap().contains("127.0.0.0/8"));

    assert_eq!(get_text(canned_url, &[]).await.0, 200, "{canned_url}");
    assert_eq!(get_text(custom_url, &[]).await.0, 200, "{custom_url}");
    // The wildcard policy serves another path with the same parameters.
    let other = custom_url.replace("/video/a.ts?lang=en", "/video/b.ts?lang=en");
    assert_eq!(get_text(&other, &[]).await.0, 200);
    for which in ["canned_cookies", "custom_cookies"] {
        let cookie = cookie_from_json(&aws[which]);
        assert_eq!(get_text(&target, &[("cookie", &cookie)]).await.0, 200, "{which}");
    }
    // Tampered: refused.
    let (status, _, body) = get_text(&canned_url.replace("lang=en", "lang=de"), &[]).await;
    assert_eq!((status, body.as_str()), (403, "403 Forbidden: invalid signature\n"));
    let (status, _, body) = get_text(&custom_url.replace("/video/a.ts", "/audio/a.ts"), &[]).await;
    assert_eq!((status, body.as_str()), (403, "403 Forbidden: resource not allowed by policy\n"));

    // The edge's signer writes what AWS's writes, byte for byte (PKCS#1 v1.5
    // signatures are deterministic).
    let ours = signed_url(&target, &k.k1, "K1", &Terms::Canned { expires: expires.parse().unwrap() });
    assert_eq!(ours, canned_url);
    let ours = signed_url(
        &target,
        &k.k1,
        "K1",
        &Terms::Custom { policy: policy::custom(&resource, expires.parse().unwrap(), Some("127.0.0.0/8"), None) },
    );
    assert_eq!(ours, custom_url);
}

fn mediaedge_sign(args: &[&str]) -> std::process::Output {
    Command::new(BIN).arg("sign").args(args).output().expect("run mediaedge sign")
}

#[tokio::test]
async fn the_sign_command_matches_botocore_and_its_output_is_accepted() {
    let k = keys();
    let s = setup().await;
    let k1 = s.dir.write("k1.pem", &k.k1);
    let k2 = s.dir.write("k2.pem", &k.k2);
    let target = format!("{}/video/a.ts?lang=en", s.base);
    let expires = (now() + 900).to_string();

    let out = mediaedge_sign(&[
        "url",
        "--key-pair-id",
        "K1",
        "--private-key",
        k1.to_str().unwrap(),
        "--url",
        &target,
        "--expires",
        &expires,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli_url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let aws = botocore(&k1, &target, &["--key-pair-id", "K1", "--expires", &expires]);
    assert_eq!(cli_url, aws["canned_url"].as_str().unwrap(), "mediaedge sign url = botocore");
    assert_eq!(get_text(&cli_url, &[]).await.0, 200);

    // Cookies with a wildcard custom policy, from a PKCS#1 private key.
    let out = mediaedge_sign(&[
        "cookies",
        "--key-pair-id",
        "K2",
        "--private-key",
        k2.to_str().unwrap(),
        "--resource",
        &format!("{}/video/*", s.base),
        "--expires",
        &expires,
        "--ip",
        "127.0.0.1",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let cookie = lines
        .iter()
        .map(|l| l.strip_prefix("Set-Cookie: ").unwrap().split(';').next().unwrap())
        .collect::<Vec<_>>()
        .join("; ");
    assert!(cookie.starts_with("CloudFront-Policy="), "{cookie}");
    assert_eq!(get_text(&format!("{}/video/sub/c.m3u8", s.base), &[("cookie", &cookie)]).await.0, 200);

    // A policy file, white space and all.
    let policy_file = s.dir.write(
        "policy.json",
        &format!(
            "{{\n  \"Statement\": [{{\n    \"Resource\": \"{}/video/*\",\n    \"Condition\": {{ \"DateLessThan\": {{ \"AWS:EpochTime\": {expires} }} }}\n  }}]\n}}\n",
            s.base
        ),
    );
    let out = mediaedge_sign(&[
        "url",
        "--key-pair-id",
        "K1",
        "--private-key",
        k1.to_str().unwrap(),
        "--url",
        &format!("{}/video/b.ts", s.base),
        "--policy-file",
        policy_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(get_text(String::from_utf8(out.stdout).unwrap().trim(), &[]).await.0, 200);

    // Mistakes: exit 2 for arguments, 1 for an unreadable or wrong key.
    let bad = mediaedge_sign(&["url", "--key-pair-id", "K1", "--private-key", k1.to_str().unwrap(), "--url", &target]);
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    let public = s.dir.0.join("keys/k1.pub.pem");
    let bad = mediaedge_sign(&[
        "url",
        "--key-pair-id",
        "K1",
        "--private-key",
        public.to_str().unwrap(),
        "--url",
        &target,
        "--expires",
        "1",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("public key"), "{}", String::from_utf8_lossy(&bad.stderr));
}

#[test]
fn key_files_are_checked_at_load_with_file_line_and_field() {
    let k = keys();
    let dir = TempDir::new("config");
    dir.write("keys/k1.pub.pem", &k.k1_pub);
    dir.write("keys/private.pem", &k.k1);
    dir.write("keys/garbage.pem", "not a key\n");
    let text = |keys: &str| config_text("http://127.0.0.1:9", "", keys);
    let path = dir.0.join("edge.toml");
    let parse = |t: &str| mediaedge::Config::parse(t, &path);

    let ok = parse(&text(r#"{ id = "K1", public_key = "keys/k1.pub.pem" }"#)).unwrap();
    let d = &ok.distributions[0];
    assert_eq!(d.default_behavior.trusted_key_groups[0].keys[0].id, "K1");
    assert!(d.behaviors[0].trusted_key_groups.is_empty());

    for (keys, want) in [
        (r#"{ id = "K1", public_key = "keys/missing.pem" }"#, "cannot read"),
        (r#"{ id = "K1", public_key = "keys/private.pem" }"#, "private key"),
        (r#"{ id = "K1", public_key = "keys/garbage.pem" }"#, "is not an RSA public key"),
    ] {
        let e = parse(&text(keys)).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("distributions[0].key_groups[0].keys[0].public_key"), "{e}");
        assert_eq!(e.line, 15, "{e}");
        assert!(e.to_string().starts_with(&format!("{}:15:", path.display())), "{e}");
        assert!(e.message.contains(want), "{e}");
    }
    let e = parse(&text("")).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("distributions[0].key_groups[0].keys"), "{e}");
    let e = parse(&text(r#"{ id = "K 1", public_key = "keys/k1.pub.pem" }"#)).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("distributions[0].key_groups[0].keys[0].id"), "{e}");
    let e = parse(&text(r#"{ id = "K1", public_key = "keys/k1.pub.pem" }"#).replace(r#"["kg1"]"#, r#"["kg2"]"#))
        .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("distributions[0].default_behavior.trusted_key_groups[0]"), "{e}");
    assert!(e.message.contains("kg2"), "{e}");
}

#[tokio::test]
async fn verified_signatures_skip_rsa_but_time_and_ip_are_checked_every_time() {
    let k = keys();
    let s = setup().await;
    let verifier = &s.e.edge.signed;
    let target = format!("{}/video/a.ts", s.base);

    // The same signed URL five times: one RSA verification.
    let url = signed_url(&target, &k.k1, "K1", &Terms::Canned { expires: now() + 600 });
    let before = verifier.rsa_verifications();
    for _ in 0..5 {
        assert_eq!(get_text(&url, &[]).await.0, 200);
    }
    assert_eq!(verifier.rsa_verifications() - before, 1);

    // A verified policy for one address: another viewer address is still refused.
    let terms =
        Terms::Custom { policy: policy::custom(&format!("{}/video/*", s.base), now() + 600, Some("127.0.0.1"), None) };
    let url = signed_url(&target, &k.k1, "K1", &terms);
    assert_eq!(get_text(&url, &[]).await.0, 200);
    let from_other =
        reqwest::Client::builder().no_proxy().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
    let r = from_other.get(&url).send().await.expect("request from 127.0.0.2");
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(r.text().await.unwrap(), "403 Forbidden: source IP not allowed\n");

    // A verified signature that has since expired is refused.
    let url = signed_url(&target, &k.k2, "K2", &Terms::Canned { expires: now() + 2 });
    assert_eq!(get_text(&url, &[]).await.0, 200);
    let rsa = verifier.rsa_verifications();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, _, body) = get_text(&url, &[]).await;
    assert_eq!((status, body.as_str()), (403, "403 Forbidden: signature expired\n"));
    assert_eq!(verifier.rsa_verifications(), rsa, "the expiry was checked on the cached entry, without RSA");
}
