//! Field-level encryption (CloudFront-compatible) in front of a real origin
//! that records the bodies it receives. The RSA key pair is made with the
//! openssl command line; every encrypted field is decrypted by the AWS
//! Encryption SDK for Python (tests/fixtures/fle_decrypt.py), with the SDK's
//! default client and a raw RSA master key.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

const PROVIDER: &str = "payments";
const KEY_ID: &str = "K2FLE";
const ALL_METHODS: &str = r#"allowed_methods = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]"#;

struct Keys {
    /// The private key (PKCS#8 PEM), for the decrypting side.
    private: String,
    /// The public key's PEM text, for the edge.
    public: String,
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().unwrap_or_else(|e| {
        panic!("these tests make RSA keys with the openssl command line, which could not run ({e}); install openssl (.ci/run does)")
    });
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A folder under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("mediaedge-fle-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).expect("make a temp dir");
        TempDir(p)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.join(name)).expect("read a key")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An RSA key pair of `bits`: (PKCS#8 private key, SubjectPublicKeyInfo public key).
fn key_pair(bits: &str) -> (String, String) {
    let dir = TempDir::new("keys");
    openssl(&["genrsa", "-out", &dir.path("raw.pem"), bits]);
    openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", &dir.path("raw.pem"), "-out", &dir.path("private.pem")]);
    openssl(&["rsa", "-in", &dir.path("private.pem"), "-pubout", "-out", &dir.path("public.pem")]);
    (dir.read("private.pem"), dir.read("public.pem"))
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let (private, public) = key_pair("2048");
        Keys { private, public }
    })
}

fn config(origin: &str, public_pem: &str) -> String {
    format!(
        r#"
[[distributions]]
id = "EFLE"
aliases = ["*"]

[[distributions.origins]]
id = "o"
url = "{origin}"
read_timeout = "5s"

[[distributions.field_level_encryption.public_keys]]
id = "{KEY_ID}"
encoded_key = '''
{public_pem}'''

[[distributions.field_level_encryption.profiles]]
id = "cards"
provider_id = "{PROVIDER}"
public_key = "{KEY_ID}"
fields = ["card*", "cvv", "name"]

[[distributions.field_level_encryption.profiles]]
id = "ids"
provider_id = "{PROVIDER}"
public_key = "{KEY_ID}"
fields = ["ssn"]

[[distributions.field_level_encryption.configs]]
id = "strict"
content_types = [{{ content_type = "application/x-www-form-urlencoded", format = "URLEncoded", profile = "cards" }}]
query_arg_profiles = [{{ query_arg = "ids", profile = "ids" }}]

[[distributions.field_level_encryption.configs]]
id = "lenient"
content_types = [{{ content_type = "application/x-www-form-urlencoded", profile = "cards" }}]
forward_when_content_type_is_unknown = true
query_arg_profiles = [{{ query_arg = "ids", profile = "ids" }}]
forward_when_query_arg_profile_is_unknown = true

[[distributions.behaviors]]
path = "/lenient/*"
origin = "o"
{ALL_METHODS}
field_level_encryption_id = "lenient"

[[distributions.behaviors]]
path = "/plain/*"
origin = "o"
{ALL_METHODS}

[distributions.default_behavior]
origin = "o"
{ALL_METHODS}
field_level_encryption_id = "strict"
"#
    )
}

struct Setup {
    e: mediaedge::RunningEdge,
    o: TestOrigin,
}

async fn setup() -> Setup {
    let o = TestOrigin::start().await;
    for p in ["/submit", "/lenient/submit", "/plain/submit"] {
        o.set(p, Script::ok("stored").header("cache-control", "no-store"));
    }
    let e = edge(&config(&o.url(), &keys().public)).await;
    Setup { e, o }
}

const FORM: &str = "application/x-www-form-urlencoded";

async fn post(url: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let r = client().post(url).header("content-type", content_type).body(body).send().await.expect("POST");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

/// A form component decoded (`+` a space, `%XX` a byte).
fn form_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("percent-escape"));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// The pairs of a form body, as written.
fn pairs(body: &[u8]) -> Vec<(String, String)> {
    let text = std::str::from_utf8(body).expect("the forwarded body is ASCII");
    text.split('&')
        .map(|p| p.split_once('=').map_or((p.into(), String::new()), |(n, v)| (n.into(), v.into())))
        .collect()
}

#[derive(Debug)]
enum Decrypted {
    Plain { bytes: Vec<u8>, algorithm: u64, version: u64 },
    Failed(String),
}

/// Decrypts base64 Encryption SDK messages with the SDK for Python.
fn sdk_decrypt(values: &[String]) -> Vec<Decrypted> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fle_decrypt.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(PROVIDER)
        .arg(KEY_ID)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "python3 could not run ({e}); these tests need python3 with aws-encryption-sdk (.ci/run installs it)"
            )
        });
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        let input = serde_json::json!({ "private_key": keys().private, "values": values });
        stdin.write_all(input.to_string().as_bytes()).expect("write the key and values");
    }
    let out = child.wait_with_output().expect("python3 ran");
    assert!(
        out.status.success(),
        "{} failed: {}\n(it needs: python3 -m pip install aws-encryption-sdk)",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
    v.into_iter()
        .map(|d| match d.get("error") {
            Some(e) => Decrypted::Failed(e.as_str().unwrap_or_default().to_string()),
            None => Decrypted::Plain {
                bytes: b64_decode(d["plaintext"].as_str().expect("plaintext")),
                algorithm: d["algorithm"].as_u64().expect("algorithm"),
                version: d["version"].as_u64().expect("version"),
            },
        })
        .collect()
}

fn b64_decode(s: &str) -> Vec<u8> {
    mediaedge::security::signature::decode(s).expect("base64")
}

fn b64_encode(b: &[u8]) -> String {
    mediaedge::security::signature::encode(b).replace('-', "+").replace('~', "/").replace('_', "=")
}

/// The forwarded body's value for `name`, form-decoded (the base64 text).
fn field(body: &[u8], name: &str) -> String {
    let (_, v) = pairs(body).into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no field {name}"));
    String::from_utf8(form_decode(&v)).expect("base64 text")
}

fn plain(d: &Decrypted) -> &[u8] {
    match d {
        Decrypted::Plain { bytes, algorithm, version } => {
            // Message format 2, AES_256_GCM_HKDF_SHA512_COMMIT_KEY.
            assert_eq!((*version, *algorithm), (2, 0x0478), "{d:?}");
            bytes
        }
        Decrypted::Failed(e) => panic!("the SDK could not decrypt: {e}"),
    }
}

#[tokio::test]
async fn named_fields_reach_the_origin_encrypted_and_the_sdk_decrypts_them() {
    let s = setup().await;
    let big: String = (0..9000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let body = format!(
        "cardnumber=4111+1111%2B1111&card_exp=12%2F29&comment=hello+world&name=J%C3%BCrgen+M%C3%BCller\
         &Card=visible&cvv=987&cvv2=visible2&&card_empty=&card_big={big}&tail"
    );
    let (status, text) = post(&url(&s.e, "/submit"), FORM, body.clone()).await;
    assert_eq!((status, text.as_str()), (200, "stored"));
    let seen = s.o.seen_for("/submit");
    assert_eq!(seen.len(), 1);
    let got = &seen[0].body;
    assert_eq!(seen[0].headers.get("content-length").unwrap().to_str().unwrap(), got.len().to_string());
    assert!(seen[0].headers.get("transfer-encoding").is_none());

    // The origin never sees a plain value of a named field.
    let text = String::from_utf8_lossy(got);
    for secret in ["4111", "12%2F29", "J%C3%BC", "987", "abcdefghij"] {
        assert!(!text.contains(secret), "{secret:?} reached the origin: {text}");
    }
    // Unnamed fields, the empty pair and the valueless one pass unchanged, in order.
    let names: Vec<String> = pairs(got).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["cardnumber", "card_exp", "comment", "name", "Card", "cvv", "cvv2", "", "card_empty", "card_big", "tail"]
    );
    for kept in ["&comment=hello+world&", "&Card=visible&", "&cvv2=visible2&&", "&tail"] {
        assert!(text.contains(kept), "{kept:?} is not in {text}");
    }

    let named = ["cardnumber", "card_exp", "name", "cvv", "card_empty", "card_big"];
    let values: Vec<String> = named.iter().map(|n| field(got, n)).collect();
    let decrypted = sdk_decrypt(&values);
    let want: [&[u8]; 6] = [b"4111 1111+1111", b"12/29", "Jürgen Müller".as_bytes(), b"987", b"", big.as_bytes()];
    for ((name, d), want) in named.iter().zip(&decrypted).zip(want) {
        assert_eq!(plain(d), want, "field {name}");
    }
}

#[tokio::test]
async fn a_ciphertext_with_one_flipped_byte_does_not_decrypt() {
    let s = setup().await;
    let (status, _) = post(&url(&s.e, "/submit"), FORM, "cvv=123").await;
    assert_eq!(status, 200);
    let seen = s.o.seen_for("/submit");
    let message = b64_decode(&field(&seen[0].body, "cvv"));
    // The intact message decrypts; then one flipped byte each in the
    // message id, the wrapped data key, the commitment key, the header tag,
    // the frame's ciphertext and its tag.
    let n = message.len();
    let mut values = vec![b64_encode(&message)];
    for at in [5, 60, n - 80, n - 50, n - 19, n - 1] {
        let mut m = message.clone();
        m[at] ^= 0x01;
        values.push(b64_encode(&m));
    }
    let results = sdk_decrypt(&values);
    assert_eq!(plain(&results[0]), b"123");
    for (i, r) in results.iter().enumerate().skip(1) {
        assert!(matches!(r, Decrypted::Failed(_)), "tampered message {i} decrypted: {r:?}");
    }
}

#[tokio::test]
async fn the_query_argument_chooses_the_profile_and_an_unknown_one_follows_the_configuration() {
    let s = setup().await;
    let body = "ssn=123-45-6789&cardnumber=4111";
    let (status, _) = post(&url(&s.e, "/submit?fle-profile=ids"), FORM, body).await;
    assert_eq!(status, 200);
    let got = s.o.seen_for("/submit")[0].body.clone();
    assert!(String::from_utf8_lossy(&got).ends_with("&cardnumber=4111"), "only ssn is encrypted");
    assert_eq!(plain(&sdk_decrypt(&[field(&got, "ssn")])[0]), b"123-45-6789");

    // Strict: an unknown profile is refused before the origin.
    let (status, text) = post(&url(&s.e, "/submit?fle-profile=nope"), FORM, body).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("fle-profile query argument names no field-level encryption profile"), "{text}");
    assert_eq!(s.o.hits("/submit"), 1);

    // Lenient: forwarded, with the content type's profile.
    let (status, _) = post(&url(&s.e, "/lenient/submit?fle-profile=nope"), FORM, body).await;
    assert_eq!(status, 200);
    let got = s.o.seen_for("/lenient/submit")[0].body.clone();
    assert!(String::from_utf8_lossy(&got).starts_with("ssn=123-45-6789&cardnumber="));
    assert_eq!(plain(&sdk_decrypt(&[field(&got, "cardnumber")])[0]), b"4111");
}

#[tokio::test]
async fn other_content_types_are_refused_or_forwarded_as_configured() {
    let s = setup().await;
    let json = r#"{"cardnumber":"4111"}"#;
    let (status, text) = post(&url(&s.e, "/submit"), "application/json", json).await;
    assert_eq!(status, 415, "{text}");
    assert!(text.contains("application/x-www-form-urlencoded") && text.contains("application/json"), "{text}");
    assert_eq!(s.o.hits("/submit"), 0);

    let (status, _) = post(&url(&s.e, "/lenient/submit"), "application/json", json).await;
    assert_eq!(status, 200);
    assert_eq!(s.o.seen_for("/lenient/submit")[0].body, json.as_bytes());

    // A behavior without field-level encryption forwards forms as they are.
    let (status, _) = post(&url(&s.e, "/plain/submit"), FORM, "cardnumber=4111").await;
    assert_eq!(status, 200);
    assert_eq!(s.o.seen_for("/plain/submit")[0].body, &b"cardnumber=4111"[..]);
}

#[tokio::test]
async fn malformed_and_oversize_bodies_get_clear_errors_and_never_reach_the_origin() {
    let s = setup().await;
    let u = url(&s.e, "/submit");

    let (status, text) = post(&u, FORM, "name=ok&cardnumber=41%G1").await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("the form body is malformed: field 2: \"%G1\" is not a percent-escape"), "{text}");

    let long = format!("cardnumber={}", "1".repeat(16 * 1024 + 1));
    let (status, text) = post(&u, FORM, long).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("field \"cardnumber\" is longer than 16 KB"), "{text}");

    let many: Vec<String> = (0..11).map(|i| format!("card{i}=1")).collect();
    let (status, text) = post(&u, FORM, many.join("&")).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("11 fields of the form are to be encrypted"), "{text}");

    // Over 1 MB, with Content-Length: refused before the body is read.
    let over = format!("comment={}", "x".repeat(1 << 20));
    let (status, text) = post(&u, FORM, over.clone()).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("larger than 1 MB, the most field-level encryption reads"), "{text}");

    // Over 1 MB, chunked: refused once the limit is passed.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        over.into_bytes().chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let (status, text) = post(&u, FORM, reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(s.o.hits("/submit"), 0);

    // Exactly 1 MB is read and forwarded.
    let full = format!("comment={}", "x".repeat((1 << 20) - "comment=".len()));
    let (status, _) = post(&u, FORM, full).await;
    assert_eq!(status, 200);
    assert_eq!(s.o.seen_for("/submit")[0].body.len(), 1 << 20);
}

fn parse_error(text: &str) -> mediaedge::config::ConfigError {
    match mediaedge::Config::parse(text, Path::new("edge.toml")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

/// The line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    text[..text.find(needle).expect("needle")].matches('\n').count() + 1
}

#[test]
fn bad_configurations_are_refused_with_file_line_and_field() {
    let good = config("http://127.0.0.1:9", &keys().public);
    mediaedge::Config::parse(&good, Path::new("edge.toml")).unwrap_or_else(|e| panic!("{e}"));
    let pf = "distributions[0].field_level_encryption";

    // Not a PEM key; a private key; a key of another size.
    let text = good.replace(&keys().public, "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n");
    let e = parse_error(&text);
    assert_eq!(e.field.as_deref(), Some(&*format!("{pf}.public_keys[0].encoded_key")), "{e}");
    assert_eq!(e.line, line_of(&text, "encoded_key"), "{e}");
    assert!(e.to_string().starts_with(&format!("edge.toml:{}:", e.line)), "{e}");
    let e = parse_error(&good.replace(&keys().public, &keys().private));
    assert!(e.message.contains("this is a private key"), "{e}");
    let (_, small_public) = key_pair("1024");
    let e = parse_error(&good.replace(&keys().public, &small_public));
    assert!(e.message.contains("takes an RSA 2048 key; this one has 1024 bits"), "{e}");

    // More than 10 fields in a profile.
    let eleven: Vec<String> = (0..11).map(|i| format!("\"f{i}\"")).collect();
    let text = good.replace(r#"fields = ["ssn"]"#, &format!("fields = [{}]", eleven.join(", ")));
    let e = parse_error(&text);
    assert_eq!(e.field.as_deref(), Some(&*format!("{pf}.profiles[1].fields")), "{e}");
    assert!(e.message.contains("1 to 10 field patterns (got 11)"), "{e}");

    // One pattern in two profiles.
    let text = good.replace(r#"fields = ["ssn"]"#, r#"fields = ["ssn", "cvv"]"#);
    let e = parse_error(&text);
    assert_eq!(e.field.as_deref(), Some(&*format!("{pf}.profiles[1].fields[1]")), "{e}");
    assert_eq!(e.line, line_of(&text, r#""ssn", "cvv""#), "{e}");
    assert!(e.message.contains("\"cvv\" is a field pattern of profile \"cards\" already"), "{e}");

    // A pattern with `*` inside; a profile naming no key; a behavior naming no configuration.
    let e = parse_error(&good.replace(r#""card*""#, r#""ca*rd""#));
    assert!(e.message.contains("`*` may only end a field name pattern"), "{e}");
    let text = good.replacen(
        &format!("public_key = \"{KEY_ID}\"\nfields = [\"ssn\"]"),
        "public_key = \"K9\"\nfields = [\"ssn\"]",
        1,
    );
    let e = parse_error(&text);
    assert_eq!(e.field.as_deref(), Some(&*format!("{pf}.profiles[1].public_key")), "{e}");
    let text = good.replace(r#"field_level_encryption_id = "strict""#, r#"field_level_encryption_id = "nope""#);
    let e = parse_error(&text);
    assert_eq!(e.field.as_deref(), Some("distributions[0].default_behavior.field_level_encryption_id"), "{e}");
    assert_eq!(e.line, line_of(&text, r#""nope""#), "{e}");

    // A behavior that does not allow POST; a content type that is not a form.
    let text = good.replacen(ALL_METHODS, "", 1);
    let e = parse_error(&text);
    assert_eq!(e.field.as_deref(), Some("distributions[0].behaviors[0].field_level_encryption_id"), "{e}");
    assert!(e.message.contains("allowed_methods must include POST"), "{e}");
    let e = parse_error(&good.replacen(
        r#"content_type = "application/x-www-form-urlencoded", format"#,
        r#"content_type = "application/json", format"#,
        1,
    ));
    assert_eq!(e.field.as_deref(), Some(&*format!("{pf}.configs[0].content_types[0].content_type")), "{e}");
}
