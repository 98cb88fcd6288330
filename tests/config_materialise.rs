//! Config → materialise → runtime: parsing reads no file; the materialise
//! step reads each certificate, key, CA bundle and public key once, and its
//! errors name the file, line and field; the running edge never reads them again.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const BIN: &str = env!("CARGO_BIN_EXE_mediaedge");

const PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsjxIPsj1ltPkKnkP+Vow
Mees3FrH1xl/GFBT8OohHEuFxbILR/XVTH+JEb7GcTgEaJDWkC2SKwuLPc4PP4bt
5JVaLODkNVJJlVg6bmbq1lJYwl8bHrxkE5NCvINFnwnrm+Ol5MH8fwOdUE5MH83K
lvtHPiDqFqU1SorfMThaNY/ny0mWRfAK1rlIOojIHZtBuKu28DljAkdm4KOQGEur
l6FlTDxkJ02+QQ3d2pVLoJtUXa0raGYynkyDvlCPSh+WBNe5OI649dDEaL97dB1K
JFHXIoUO8DXkMkN2p8icbUwRHVyt8ZPka2t7giZwwiYvisovIu/mFAWcopKoN5zJ
PwIDAQAB
-----END PUBLIC KEY-----
";

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!(
            "mediaedge-materialise-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&d).expect("temp dir");
        Dir(d)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA (PEM) and a leaf for `name` it signed: (CA PEM, leaf PEM, leaf key PEM, leaf DER).
fn certificates(name: &str) -> (String, String, String, Vec<u8>) {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "materialise test CA");
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().expect("ca key");
    let ca = p.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(p, ca_key);
    let mut lp = CertificateParams::new(vec![name.to_string()]).expect("leaf params");
    lp.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("leaf key");
    let leaf = lp.signed_by(&key, &issuer).expect("leaf");
    (ca.pem(), leaf.pem(), key.serialize_pem(), leaf.der().to_vec())
}

/// HTTPS with a certificate, an origin with a CA bundle (twice: two origins
/// name the same file), and one public key file named by two key groups.
fn config_text(ca: &str, cert: &str, key: &str, public: &str) -> String {
    format!(
        "[server]\n\
         listen = \"127.0.0.1:0\"\n\
         https_listen = \"127.0.0.1:0\"\n\
         certificates = [{{ cert = \"{cert}\", key = \"{key}\", hosts = [\"m.example.test\"], default = true }}]\n\
         \n\
         [admin]\n\
         listen = \"off\"\n\
         \n\
         [[distributions]]\n\
         id = \"EMAT\"\n\
         aliases = [\"*\"]\n\
         \n\
         [[distributions.origins]]\n\
         id = \"a\"\n\
         url = \"https://127.0.0.1:9\"\n\
         ca_file = \"{ca}\"\n\
         \n\
         [[distributions.origins]]\n\
         id = \"b\"\n\
         url = \"https://127.0.0.1:9\"\n\
         ca_file = \"{ca}\"\n\
         \n\
         [[distributions.key_groups]]\n\
         id = \"g1\"\n\
         keys = [{{ id = \"K1\", public_key = \"{public}\" }}]\n\
         \n\
         [[distributions.key_groups]]\n\
         id = \"g2\"\n\
         keys = [{{ id = \"K1\", public_key = \"{public}\" }}]\n\
         \n\
         [distributions.default_behavior]\n\
         origin = \"a\"\n\
         trusted_key_groups = [\"g1\", \"g2\"]\n"
    )
}

/// Line numbers of `config_text`'s fields.
const CERT_LINE: usize = 4;
const CA_LINE: usize = 16;
const PUBLIC_KEY_LINE: usize = 25;

#[test]
fn parsing_reads_no_file_and_materialise_fills_every_slot() {
    let dir = Dir::new("pure");
    let path = dir.0.join("edge.toml");
    // None of these files exists: parsing must not notice.
    let cfg = mediaedge::Config::from_text(&config_text("ca.pem", "c.pem", "c.key", "k.pem"), &path)
        .unwrap_or_else(|e| panic!("parsing read a file: {e}"));
    let d = &cfg.distributions[0];
    assert!(cfg.server.certificates[0].loaded.get().is_none());
    assert!(d.key_groups.iter().all(|g| g.keys.iter().all(|k| k.key.get().is_none())));
    for o in &d.origins {
        let mediaedge::config::OriginKind::Http(h) = &o.kind else { panic!("an HTTP origin") };
        assert!(h.ca_file.as_ref().is_some_and(|ca| ca.roots.get().is_none()));
    }

    let (ca, cert, key, _) = certificates("m.example.test");
    dir.write("ca.pem", &ca);
    dir.write("c.pem", &cert);
    dir.write("c.key", &key);
    dir.write("k.pem", PUBLIC_KEY);
    let mut cfg = cfg;
    cfg.materialise().unwrap_or_else(|e| panic!("{e}"));
    let d = &cfg.distributions[0];
    assert!(cfg.server.certificates[0].loaded.get().is_some());
    assert!(d.key_groups.iter().all(|g| g.keys.iter().all(|k| k.key.get().is_some())));
    for o in &d.origins {
        let mediaedge::config::OriginKind::Http(h) = &o.kind else { panic!("an HTTP origin") };
        assert!(h.ca_file.as_ref().is_some_and(|ca| ca.roots.get().is_some()));
    }
    // The stored document stands on its own: the key's PEM text, not its path.
    let doc = toml::to_string(&*d.document).expect("document");
    assert!(doc.contains("BEGIN PUBLIC KEY") && !doc.contains("k.pem"), "{doc}");
}

#[tokio::test]
async fn each_file_is_read_once_and_the_running_edge_reads_none_again() {
    let dir = Dir::new("once");
    let (ca, cert, key, leaf_der) = certificates("m.example.test");
    let files =
        [dir.write("c.pem", &cert), dir.write("c.key", &key), dir.write("ca.pem", &ca), dir.write("k.pem", PUBLIC_KEY)];
    let path = dir.write("edge.toml", &config_text("ca.pem", "c.pem", "c.key", "k.pem"));
    let mut cfg = mediaedge::Config::read(&path).unwrap_or_else(|e| panic!("{e}"));
    let report = cfg.materialise().unwrap_or_else(|e| panic!("{e}"));
    // Two origins name ca.pem and two key groups name k.pem: four files, four reads.
    let mut read = report.files_read.clone();
    read.sort();
    let mut want = files.to_vec();
    want.sort();
    assert_eq!(read, want, "each named file read exactly once");
    assert!(cfg.materialise().unwrap_or_else(|e| panic!("{e}")).files_read.is_empty(), "a second run reads nothing");

    // With every file gone, the edge still starts (TLS listener, origin
    // clients with the CA bundle) and serves the certificate it was given.
    for f in &files {
        std::fs::remove_file(f).expect("remove");
    }
    let edge = mediaedge::start(&cfg).await.unwrap_or_else(|e| panic!("the edge read a file again: {e}"));
    let presented = handshake(edge.https_addrs[0], &ca).await;
    assert_eq!(presented, leaf_der);
    // A clone shares what was loaded.
    let mut again = cfg.clone();
    assert!(again.materialise().unwrap_or_else(|e| panic!("{e}")).files_read.is_empty());
}

/// The certificate the edge presents to a client that trusts `ca_pem`.
async fn handshake(addr: std::net::SocketAddr, ca_pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("ca pem")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let run = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("m.example.test").expect("name");
        let tls = connector.connect(name, tcp).await.expect("handshake");
        let (_, conn) = tls.get_ref();
        conn.peer_certificates().expect("a certificate")[0].to_vec()
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), run).await.expect("the handshake hung")
}

/// Writes the config with `ca`, `cert`, `key` and `public` as the file names
/// (the good files exist as ca.pem, c.pem, c.key, k.pem), and loads it.
fn load_error(dir: &Dir, ca: &str, cert: &str, key: &str, public: &str) -> mediaedge::config::ConfigError {
    let path = dir.write("edge.toml", &config_text(ca, cert, key, public));
    mediaedge::Config::load(&path).expect_err("the configuration must not load")
}

fn check(e: &mediaedge::config::ConfigError, dir: &Dir, line: usize, field: &str, message: &[&str]) {
    let shown = e.to_string();
    let head = format!("{}:{line}:", dir.0.join("edge.toml").display());
    assert!(shown.starts_with(&head), "{shown}\n(expected it to start with {head})");
    assert_eq!((e.line, e.field.as_deref()), (line, Some(field)), "{shown}");
    assert!(shown.contains(&format!("field `{field}`")), "{shown}");
    for m in message {
        assert!(e.message.contains(m), "{shown}\n(expected {m:?})");
    }
}

#[test]
fn materialise_errors_name_file_line_and_field() {
    let dir = Dir::new("errors");
    let (ca, cert, key, _) = certificates("m.example.test");
    dir.write("ca.pem", &ca);
    dir.write("c.pem", &cert);
    dir.write("c.key", &key);
    dir.write("k.pem", PUBLIC_KEY);
    dir.write("garbage.pem", "not PEM at all\n");
    let missing = |name: &str| dir.0.join(name).display().to_string();

    let e = load_error(&dir, "ca.pem", "missing.pem", "c.key", "k.pem");
    check(&e, &dir, CERT_LINE, "server.certificates[0].cert", &["cannot read", &missing("missing.pem")]);

    let e = load_error(&dir, "ca.pem", "c.pem", "garbage.pem", "k.pem");
    check(&e, &dir, CERT_LINE, "server.certificates[0].key", &["private key", "garbage.pem"]);
    // A key that is a real key, but not the certificate's.
    let (_, _, other_key, _) = certificates("m.example.test");
    dir.write("other.key", &other_key);
    let e = load_error(&dir, "ca.pem", "c.pem", "other.key", "k.pem");
    check(&e, &dir, CERT_LINE, "server.certificates[0].key", &["does not match"]);

    let e = load_error(&dir, "missing-ca.pem", "c.pem", "c.key", "k.pem");
    check(&e, &dir, CA_LINE, "distributions[0].origins[0].ca_file", &["cannot read", &missing("missing-ca.pem")]);

    let e = load_error(&dir, "ca.pem", "c.pem", "c.key", "garbage.pem");
    check(
        &e,
        &dir,
        PUBLIC_KEY_LINE,
        "distributions[0].key_groups[0].keys[0].public_key",
        &["is not an RSA public key", "garbage.pem"],
    );
    // The certificate's key is a private key, not a public one.
    let e = load_error(&dir, "ca.pem", "c.pem", "c.key", "c.key");
    check(&e, &dir, PUBLIC_KEY_LINE, "distributions[0].key_groups[0].keys[0].public_key", &["private key"]);

    // `mediaedge check-config` goes through the same steps and says the same.
    let path = dir.write("edge.toml", &config_text("missing-ca.pem", "c.pem", "c.key", "k.pem"));
    let out = std::process::Command::new(BIN).arg("check-config").arg(&path).output().expect("run mediaedge");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:{CA_LINE}:", path.display()))
            && stderr.contains("field `distributions[0].origins[0].ca_file`")
            && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[test]
fn admin_documents_go_through_the_same_steps() {
    let dir = Dir::new("document");
    dir.write("k.pem", PUBLIC_KEY);
    let doc = |ca: &Path, public: &Path| -> toml::Table {
        toml::from_str(&format!(
            "id = \"EDOC\"\n\
             [[origins]]\nid = \"a\"\nurl = \"https://127.0.0.1:9\"\nca_file = \"{}\"\n\
             [[key_groups]]\nid = \"g\"\nkeys = [{{ id = \"K1\", public_key = \"{}\" }}]\n\
             [default_behavior]\norigin = \"a\"\n",
            ca.display(),
            public.display()
        ))
        .expect("document")
    };
    let source = "distribution EDOC";
    // Valid without reading anything.
    let d = mediaedge::Config::document(&doc(&dir.0.join("nope.pem"), &dir.0.join("k.pem")), "edge.test", source)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(d.key_groups[0].keys[0].key.get().is_none());

    let e = mediaedge::Config::distribution_from_document(
        &doc(&dir.0.join("nope.pem"), &dir.0.join("k.pem")),
        "edge.test",
        source,
    )
    .expect_err("a missing CA bundle");
    assert_eq!((e.file.as_path(), e.line, e.field.as_deref()), (Path::new(source), 0, Some("origins[0].ca_file")));
    assert!(e.message.contains("cannot read"), "{e}");

    dir.write("ca.pem", &certificates("x.test").0);
    let e = mediaedge::Config::distribution_from_document(
        &doc(&dir.0.join("ca.pem"), &dir.0.join("ca.pem")),
        "edge.test",
        source,
    )
    .expect_err("a certificate is not a public key");
    assert_eq!(e.field.as_deref(), Some("key_groups[0].keys[0].public_key"), "{e}");

    let d = mediaedge::Config::distribution_from_document(
        &doc(&dir.0.join("ca.pem"), &dir.0.join("k.pem")),
        "edge.test",
        source,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(d.key_groups[0].keys[0].key.get().is_some());
    let text = toml::to_string(&*d.document).expect("document");
    assert!(text.contains("BEGIN PUBLIC KEY"), "{text}");
}
