//! HTTPS: certificates by SNI (exact, wildcard, default), ALPN h2, TLS 1.2+
//! only, certificate reload, session resumption, viewer protocol policies, and HTTPS origins
//! (a CA file, system roots, match-viewer). Certificates are made here with rcgen.

mod common;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca() -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "mediaedge test CA");
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().expect("ca key");
    let cert = p.self_signed(&key).expect("ca cert");
    Ca { pem: cert.pem(), issuer: Issuer::new(p, key) }
}

/// A leaf for `names`, signed by the CA: (certificate PEM, key PEM, certificate DER).
fn leaf(ca: &Ca, names: &[&str], cn: &str) -> (String, String, Vec<u8>) {
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, &ca.issuer).expect("leaf");
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "mediaedge-tls-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

/// The test set-up: a CA, certificates A, B and a default, an origin, and
/// an edge with HTTP and HTTPS listeners.
struct Setup {
    dir: PathBuf,
    ca: Ca,
    a: Vec<u8>,
    b: Vec<u8>,
    default: Vec<u8>,
    edge: mediaedge::RunningEdge,
    _origin: TestOrigin,
}

impl Setup {
    fn https(&self) -> SocketAddr {
        self.edge.https_addrs[0]
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn setup(tag: &str) -> Setup {
    let dir = temp_dir(tag);
    let ca = ca();
    write(&dir, "ca.pem", &ca.pem);
    let (ac, ak, a) = leaf(&ca, &["a.example.test"], "leaf A");
    let (bc, bk, b) = leaf(&ca, &["b.example.test", "x.wild.test"], "leaf B");
    let (dc, dk, default) = leaf(&ca, &["*.example.test", "127.0.0.1"], "leaf default");
    for (n, t) in [("a.pem", &ac), ("a.key", &ak), ("b.pem", &bc), ("b.key", &bk), ("d.pem", &dc), ("d.key", &dk)] {
        write(&dir, n, t);
    }
    let origin = TestOrigin::start().await;
    for p in ["/x", "/r/a", "/s/a", "/s/b"] {
        origin.set(p, Script::ok(format!("body of {p}")));
    }
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nhttps_listen = [\"127.0.0.1:0\"]\n\
         certificates = [\n  {{ cert = \"a.pem\", key = \"a.key\", hosts = [\"a.example.test\"] }},\n  \
         {{ cert = \"b.pem\", key = \"b.key\", hosts = [\"b.example.test\", \"*.wild.test\"] }},\n  \
         {{ cert = \"d.pem\", key = \"d.key\", default = true }},\n]\n\n\
         [[distributions]]\nid = \"ETLS\"\naliases = [\"*\"]\n\n\
         [[distributions.origins]]\nid = \"o\"\nurl = \"{}\"\n\n\
         [[distributions.behaviors]]\npath = \"/r/*\"\norigin = \"o\"\nviewer_protocol_policy = \"redirect-to-https\"\n\n\
         [[distributions.behaviors]]\npath = \"/s/*\"\norigin = \"o\"\nviewer_protocol_policy = \"https-only\"\n\n\
         [distributions.default_behavior]\norigin = \"o\"\n",
        origin.url()
    );
    write(&dir, "edge.toml", &config);
    let cfg = mediaedge::Config::load(&dir.join("edge.toml")).expect("config");
    let edge = mediaedge::start(&cfg).await.expect("edge starts");
    Setup { dir, ca, a, b, default, edge, _origin: origin }
}

fn roots(ca_pem: &str) -> rustls::RootCertStore {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("ca pem")).expect("root");
    }
    roots
}

/// Connects with `sni` (a host name, or an IP address: no SNI), and returns
/// the certificate the edge presented and the ALPN protocol chosen.
async fn handshake(addr: SocketAddr, sni: &str, ca_pem: &str) -> (Vec<u8>, Option<Vec<u8>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots(ca_pem))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).expect("server name");
    let tls = connector.connect(name, tcp).await.expect("handshake");
    let (_, conn) = tls.get_ref();
    let cert = conn.peer_certificates().expect("peer certificates")[0].to_vec();
    (cert, conn.alpn_protocol().map(|p| p.to_vec()))
}

/// Runs curl against the HTTPS listener with `host` resolved to it: (success, stdout, stderr).
async fn curl(s: &Setup, host: &str, path: &str, extra: &[&str]) -> (bool, String, String) {
    let port = s.https().port();
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-v", "--max-time", "10", "--cacert"])
        .arg(s.dir.join("ca.pem"))
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .await
        .expect("curl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn certificate_chosen_by_sni() {
    let s = setup("sni").await;
    let addr = s.https();
    assert!(handshake(addr, "a.example.test", &s.ca.pem).await.0 == s.a, "a.example.test gets certificate A");
    assert!(handshake(addr, "b.example.test", &s.ca.pem).await.0 == s.b, "b.example.test gets certificate B");
    assert!(handshake(addr, "x.wild.test", &s.ca.pem).await.0 == s.b, "*.wild.test gets certificate B");
    assert!(handshake(addr, "zz.example.test", &s.ca.pem).await.0 == s.default, "unknown SNI gets the default");
    assert!(handshake(addr, "127.0.0.1", &s.ca.pem).await.0 == s.default, "no SNI gets the default");

    // A real client: curl verifies against the test CA and sees leaf A.
    let (ok, body, err) = curl(&s, "a.example.test", "/x", &[]).await;
    assert!(ok, "{err}");
    assert_eq!(body, "body of /x");
    assert!(err.contains("CN=leaf A"), "{err}");
    let (ok, _, err) = curl(&s, "b.example.test", "/x", &[]).await;
    assert!(ok && err.contains("CN=leaf B"), "{err}");
}

#[tokio::test]
async fn http2_by_alpn_and_no_tls_1_1() {
    let s = setup("alpn").await;
    let (_, alpn) = handshake(s.https(), "a.example.test", &s.ca.pem).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let (ok, out, err) =
        curl(&s, "a.example.test", "/x", &["--http2", "-o", "/dev/null", "-w", "%{http_version}"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "2", "{err}");
    let (ok, out, err) =
        curl(&s, "a.example.test", "/x", &["--http1.1", "-o", "/dev/null", "-w", "%{http_version}"]).await;
    assert!(ok && out == "1.1", "{out} {err}");
    let (ok, _, err) = curl(&s, "a.example.test", "/x", &["--tlsv1.0", "--tls-max", "1.1"]).await;
    assert!(!ok, "TLS 1.1 must be refused: {err}");

    // A client that speaks garbage instead of a ClientHello does not hurt the listener.
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(s.https()).await.expect("connect");
    let _ = tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    drop(tcp);
    let (ok, _, err) = curl(&s, "a.example.test", "/x", &[]).await;
    assert!(ok, "{err}");
}

#[tokio::test]
async fn certificates_reload_when_their_files_change() {
    let s = setup("reload").await;
    let addr = s.https();
    assert!(handshake(addr, "a.example.test", &s.ca.pem).await.0 == s.a);

    // A bad new file keeps the old certificate.
    write(&s.dir, "b.pem", "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(handshake(addr, "b.example.test", &s.ca.pem).await.0 == s.b, "a broken file keeps the old certificate");

    // A new leaf for A is picked up without a restart.
    let (c, k, new_a) = leaf(&s.ca, &["a.example.test"], "leaf A2");
    assert!(new_a != s.a);
    write(&s.dir, "a.key", &k);
    write(&s.dir, "a.pem", &c);
    let deadline = now() + Duration::from_secs(5);
    loop {
        if handshake(addr, "a.example.test", &s.ca.pem).await.0 == new_a {
            break;
        }
        assert!(now() < deadline, "the new certificate was not served within 5 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, _, err) = curl(&s, "a.example.test", "/x", &[]).await;
    assert!(ok && err.contains("CN=leaf A2"), "{err}");
    // B still has its old certificate.
    assert!(handshake(addr, "b.example.test", &s.ca.pem).await.0 == s.b);
}

#[tokio::test]
async fn viewer_protocol_policies() {
    let s = setup("policy").await;
    let c = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let plain = s.edge.addr();
    let port = s.https().port();

    let r = c
        .get(format!("http://{plain}/r/a?x=1&y=2"))
        .header("host", "media.example.test")
        .send()
        .await
        .expect("redirect");
    assert_eq!(r.status().as_u16(), 301);
    assert_eq!(
        r.headers().get("location").and_then(|v| v.to_str().ok()),
        Some(format!("https://media.example.test:{port}/r/a?x=1&y=2").as_str())
    );
    assert_eq!(x_cache(&r), "Redirect", "the edge's own redirect says so, as CloudFront's does");
    let r = c.get(format!("http://{plain}/s/a")).header("host", "media.example.test").send().await.expect("403");
    assert_eq!(r.status().as_u16(), 403);
    let r = c.get(format!("http://{plain}/x")).header("host", "media.example.test").send().await.expect("allow");
    assert_eq!(r.status().as_u16(), 200);

    // Over HTTPS the same paths are served.
    for path in ["/s/a", "/r/a"] {
        let (ok, body, err) = curl(&s, "a.example.test", path, &["--fail"]).await;
        assert!(ok, "{err}");
        assert_eq!(body, format!("body of {path}"));
    }
}

/// An HTTPS origin: a certificate for 127.0.0.1 from `ca`, answering
/// `secure <path>` to everything (paths under `/swr` with one second of
/// freshness and a minute of stale-while-revalidate), and counting requests.
async fn tls_origin(ca: &Ca) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>, tokio::task::JoinHandle<()>) {
    use rustls::pki_types::pem::PemObject;
    let (c, k, _) = leaf(ca, &["127.0.0.1", "localhost"], "origin");
    let certs = vec![rustls::pki_types::CertificateDer::from_pem_slice(c.as_bytes()).expect("cert")];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(k.as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("origin cert");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move {
                        let body = format!("secure {}", req.uri().path());
                        let mut res = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
                        if req.uri().path().starts_with("/swr") {
                            res.headers_mut().insert(
                                http::header::CACHE_CONTROL,
                                http::HeaderValue::from_static("max-age=1, stale-while-revalidate=60"),
                            );
                        }
                        Ok::<_, std::convert::Infallible>(res)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, count, task)
}

#[tokio::test]
async fn https_origins() {
    let s = setup("origin").await;
    let (secure, secure_count, task) = tls_origin(&s.ca).await;
    let plain = TestOrigin::start().await;
    plain.set("/mv/plain", Script::ok("plain origin"));
    let config = format!(
        "[[distributions]]\nid = \"EWITHCA\"\naliases = [\"with-ca.test\"]\n\
         [[distributions.origins]]\nid = \"o\"\nurl = \"https://{secure}\"\nca_file = \"ca.pem\"\n\
         [distributions.default_behavior]\norigin = \"o\"\n\n\
         [[distributions]]\nid = \"ESYSTEM\"\naliases = [\"system-roots.test\"]\n\
         [[distributions.origins]]\nid = \"o\"\nurl = \"https://{secure}\"\n\
         [distributions.default_behavior]\norigin = \"o\"\n\n\
         [[distributions]]\nid = \"EMATCH\"\naliases = [\"*\"]\n\
         [[distributions.origins]]\nid = \"o\"\nurl = \"http://{}\"\nprotocol_policy = \"match-viewer\"\n\
         https_port = {}\nca_file = \"ca.pem\"\n\
         [distributions.default_behavior]\norigin = \"o\"\n\n\
         [server]\nhttps_listen = \"127.0.0.1:0\"\n\
         certificates = [{{ cert = \"d.pem\", key = \"d.key\", default = true }}]\n",
        plain.addr,
        secure.port()
    );
    write(&s.dir, "origins.toml", &config);
    let mut cfg = mediaedge::Config::load(&s.dir.join("origins.toml")).expect("config");
    cfg.server.listen = vec!["127.0.0.1:0".parse().expect("addr")];
    let e = mediaedge::start(&cfg).await.expect("edge");
    let c = client();

    let (status, _, _, body) = get(&c, &url(&e, "/ok"), &[("host", "with-ca.test")]).await;
    assert_eq!((status, &body[..]), (200, &b"secure /ok"[..]));

    let (status, _, _, body) = get(&c, &url(&e, "/ok"), &[("host", "system-roots.test")]).await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("certificate"), "{body}");

    // match-viewer: plain viewers reach the plain origin, TLS viewers the HTTPS one.
    let (status, _, _, body) = get(&c, &url(&e, "/mv/plain"), &[("host", "m.example.test")]).await;
    assert_eq!((status, &body[..]), (200, &b"plain origin"[..]));
    let port = e.https_addrs[0].port();
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
        .arg(s.dir.join("ca.pem"))
        .args(["--resolve", &format!("m.example.test:{port}:127.0.0.1")])
        .arg(format!("https://m.example.test:{port}/mv/tls"))
        .output()
        .await
        .expect("curl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "secure /mv/tls");

    // A background revalidation started by a TLS viewer goes to the HTTPS
    // origin too: the edge-made request carries that viewer's protocol.
    let tls_get = |path: &'static str| {
        let ca = s.dir.join("ca.pem");
        async move {
            let out = tokio::process::Command::new("curl")
                .args(["-sS", "--fail", "--max-time", "10", "-D", "-", "--cacert"])
                .arg(ca)
                .args(["--resolve", &format!("m.example.test:{port}:127.0.0.1")])
                .arg(format!("https://m.example.test:{port}{path}"))
                .output()
                .await
                .expect("curl");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
        }
    };
    let before = secure_count.load(std::sync::atomic::Ordering::SeqCst);
    let first = tls_get("/swr").await;
    assert!(first.contains("x-cache: miss"), "{first}");
    assert_eq!(secure_count.load(std::sync::atomic::Ordering::SeqCst), before + 1);
    // Past its second of freshness, a viewer gets the stale copy and starts
    // a revalidation in the background; poll until one reaches an origin.
    let secure_now = || secure_count.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..300 {
        if secure_now() > before + 1 || plain.hits("/swr") > 0 {
            break;
        }
        let again = tls_get("/swr").await;
        assert!(again.contains("x-cache: hit"), "{again}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(plain.hits("/swr"), 0, "a background revalidation went to the plain origin");
    assert!(secure_now() >= before + 2, "no background revalidation reached the HTTPS origin");
    task.abort();
}

#[test]
fn certificate_config_errors_name_file_line_and_field() {
    let dir = temp_dir("errors");
    let ca = ca();
    let (c, k, _) = leaf(&ca, &["a.example.test"], "leaf A");
    write(&dir, "a.pem", &c);
    write(&dir, "a.key", &k);
    write(&dir, "bad.pem", "not a certificate\n");
    let base = "[[distributions]]\nid = \"E1\"\n[[distributions.origins]]\nid = \"o\"\nurl = \"http://127.0.0.1:9\"\n";
    let load = |server: &str, extra: &str| {
        let path = dir.join("edge.toml");
        std::fs::write(&path, format!("{server}{base}{extra}")).expect("write");
        mediaedge::Config::load(&path)
    };
    let e = load(
        "[server]\nhttps_listen = \"127.0.0.1:0\"\n\
         certificates = [{ cert = \"a.pem\", key = \"a.key\", hosts = [\"a.example.test\"] },\n\
         { cert = \"bad.pem\", key = \"a.key\", hosts = [\"b.example.test\"] }]\n",
        "",
    )
    .unwrap_err();
    assert_eq!((e.line, e.field.as_deref()), (4, Some("server.certificates[1].cert")), "{e}");
    assert!(e.to_string().contains("edge.toml:4") && e.message.contains("bad.pem"), "{e}");

    let e = load("[server]\nhttps_listen = \"127.0.0.1:0\"\n", "").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("server.certificates"), "{e}");

    let e = load(
        "[server]\ncertificates = [{ cert = \"a.pem\", key = \"missing.key\", hosts = [\"a.example.test\"] }]\n",
        "",
    )
    .unwrap_err();
    assert_eq!((e.line, e.field.as_deref()), (2, Some("server.certificates[0].key")), "{e}");

    let e = load("", "viewer_protocol_policy = \"sometimes\"\n").unwrap_err();
    assert!(e.message.contains("unknown field") || e.message.contains("sometimes"), "{e}");
    let e = load("", "[distributions.default_behavior]\norigin = \"o\"\nviewer_protocol_policy = \"sometimes\"\n")
        .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("distributions[0].default_behavior.viewer_protocol_policy"), "{e}");
    let e = load("", "ca_file = \"nope.pem\"\n").unwrap_err();
    assert_eq!((e.line, e.field.as_deref()), (6, Some("distributions[0].origins[0].ca_file")), "{e}");
    let e = load("", "protocol_policy = \"ftp\"\n").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("distributions[0].origins[0].protocol_policy"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A client speaking only `version`, HTTP/1.1 by ALPN, with its own session cache.
fn resuming_client(ca_pem: &str, version: &'static rustls::SupportedProtocolVersion) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .expect("versions")
        .with_root_certificates(roots(ca_pem))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // The default: sessions kept in memory, shared by every connection made with this config.
    cfg.resumption = rustls::client::Resumption::in_memory_sessions(16);
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// One connection, one request read to its end (TLS 1.3 tickets arrive after
/// the handshake, with the response); returns how the handshake went.
async fn fetch_once(connector: &tokio_rustls::TlsConnector, addr: SocketAddr) -> rustls::HandshakeKind {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("a.example.test").expect("server name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    let kind = tls.get_ref().1.handshake_kind().expect("handshake done");
    tls.write_all(b"GET /x HTTP/1.1\r\nHost: a.example.test\r\n\r\n").await.expect("request");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"body of /x") {
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
            .await
            .expect("the response came (10 s is a hang)")
            .expect("read");
        assert!(n > 0, "the edge closed before the response ended: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    kind
}

#[tokio::test]
async fn sessions_resume_on_tls_1_3_and_1_2_after_many_other_clients() {
    use rustls::HandshakeKind::{Full, Resumed};
    let s = setup("resume").await;
    let addr = s.https();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let viewer = resuming_client(&s.ca.pem, version);
        assert_eq!(fetch_once(&viewer, addr).await, Full, "{version:?}: the first connection");
        assert_eq!(fetch_once(&viewer, addr).await, Resumed, "{version:?}: the second connection resumes");
        // Many other viewers come and go; each had a full handshake and holds
        // its own session. The first viewer's session still resumes: the edge
        // does not forget it because others arrived (a fixed-size server-side
        // session cache would).
        for _ in 0..300 {
            let other = resuming_client(&s.ca.pem, version);
            assert_eq!(fetch_once(&other, addr).await, Full);
        }
        assert_eq!(fetch_once(&viewer, addr).await, Resumed, "{version:?}: resumed after 300 other viewers");
    }
}
