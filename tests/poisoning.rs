//! Cache poisoning through what is forwarded but not keyed, and GET requests
//! with a body: an origin that reflects its whole request into a cacheable
//! body, and raw TCP for the hostile bytes.

mod common;

use common::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Headers that poisoned the cache when they were forwarded without being keyed.
const UNKEYED: [(&str, &str); 14] = [
    ("x-forwarded-host", "evil.example"),
    ("x-original-url", "/evil"),
    ("x-rewrite-url", "/evil"),
    ("x-forwarded-proto", "evil"),
    ("x-forwarded-scheme", "evil"),
    ("x-host", "evil.example"),
    ("forwarded", "host=evil.example;proto=evil"),
    ("x-http-method-override", "EVIL"),
    ("accept-language", "evil"),
    ("user-agent", "evil-agent"),
    ("origin", "https://evil.example"),
    ("referer", "https://evil.example/"),
    ("x-amz-cf-id", "evil-request-id"),
    ("cloudfront-viewer-address", "6.6.6.6:666"),
];

/// An origin that answers every request with its request line and headers
/// in a body cacheable for a minute, and remembers each request.
struct Reflector {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, http::HeaderMap)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reflector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Reflector {
    async fn start() -> Reflector {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<(String, http::HeaderMap)>>> = Arc::default();
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let mut body = format!("{} {}\n", req.method(), req.uri());
                            for (k, v) in req.headers() {
                                body.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
                            }
                            log.lock().unwrap().push((req.uri().to_string(), req.headers().clone()));
                            let resp = http::Response::builder()
                                .header("cache-control", "max-age=60")
                                .header("content-type", "text/html")
                                .body(Full::new(bytes::Bytes::from(body)))
                                .unwrap();
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Reflector { addr, seen, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests for `path` (without query), as the origin saw them.
    fn seen_for(&self, path: &str) -> Vec<(String, http::HeaderMap)> {
        self.seen.lock().unwrap().iter().filter(|(u, _)| u.split('?').next() == Some(path)).cloned().collect()
    }
}

async fn text(c: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let (s, x, _, b) = get(c, url, headers).await;
    (s, x, String::from_utf8_lossy(&b).into_owned())
}

#[tokio::test]
async fn by_default_nothing_unkeyed_reaches_the_origin_so_nothing_poisons_the_cache() {
    let o = Reflector::start().await;
    let e = edge(&config_for(&o.url(), "")).await;
    let c = client();
    for (i, (name, value)) in UNKEYED.iter().enumerate() {
        let path = format!("/page{i}.html");
        let (s, x, poisoned) = text(&c, &url(&e, &path), &[(name, value)]).await;
        assert_eq!((s, x.as_str()), (200, "Miss"), "{name}");
        let (s, x, clean) = text(&c, &url(&e, &path), &[]).await;
        assert_eq!((s, x.as_str()), (200, "Hit"), "{name}");
        assert!(!poisoned.contains(value) && !clean.contains(value), "{name} reached the origin:\n{poisoned}");
        let seen = o.seen_for(&path);
        assert_eq!(seen.len(), 1, "{name}");
        let headers = &seen[0].1;
        match *name {
            // The edge's own request id, never the viewer's.
            "x-amz-cf-id" => assert!(headers.get(*name).is_some_and(|v| v != value), "{name}: {headers:?}"),
            _ => assert!(!headers.contains_key(*name), "the origin saw {name}: {headers:?}"),
        }
    }

    // A query string outside the key (the default keys none) stays at the edge.
    let (_, x, poisoned) = text(&c, &url(&e, "/search.html?q=evil&utm_source=evil"), &[]).await;
    let (_, x2, clean) = text(&c, &url(&e, "/search.html"), &[]).await;
    assert_eq!((x.as_str(), x2.as_str()), ("Miss", "Hit"));
    assert!(!poisoned.contains("evil") && !clean.contains("evil"), "{poisoned}");
    assert_eq!(o.seen_for("/search.html")[0].0, "/search.html");

    // X-Forwarded-For carries the address the edge sees, not a viewer's chain.
    get(&c, &url(&e, "/xff.html"), &[("x-forwarded-for", "6.6.6.6")]).await;
    let seen = o.seen_for("/xff.html");
    assert_eq!(seen[0].1.get("x-forwarded-for").unwrap(), "127.0.0.1");
    let via = seen[0].1.get("via").unwrap().to_str().unwrap();
    assert!(via.contains("mediaedge"), "{via}");
}

#[tokio::test]
async fn what_the_policies_name_reaches_the_origin_keyed_or_not() {
    let o = Reflector::start().await;
    let e = edge(&config_for(
        &o.url(),
        "cache_key.headers = [\"x-device\"]\ncache_key.query = [\"v\"]\n\
         origin_request.headers = [\"x-tenant\", \"x-forwarded-for\"]\norigin_request.query = [\"lang\"]\n\
         origin_request.cookies = [\"session\"]\n\
         origin_request.viewer_headers = [\"cloudfront-viewer-address\", \"cloudfront-forwarded-proto\"]",
    ))
    .await;
    let c = client();
    let viewer = [
        ("x-device", "tv"),
        ("x-tenant", "a"),
        ("x-forwarded-for", "1.2.3.4"),
        ("cookie", "other=2; session=s1"),
        ("cloudfront-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
    ];
    let (_, x, body) = text(&c, &url(&e, "/n.html?utm=evil&v=1&lang=fr"), &viewer).await;
    assert_eq!(x, "Miss");
    assert!(!body.contains("evil"), "{body}");
    let (uri, h) = o.seen_for("/n.html").remove(0);
    assert_eq!(uri, "/n.html?v=1&lang=fr", "keyed and forwarded parameters, in the viewer's order");
    assert_eq!(h.get("x-device").unwrap(), "tv", "keyed: forwarded");
    assert_eq!(h.get("x-tenant").unwrap(), "a", "named in the origin request policy: forwarded");
    assert_eq!(h.get("x-forwarded-for").unwrap(), "1.2.3.4, 127.0.0.1", "a forwarded chain is appended to");
    assert_eq!(h.get("cookie").unwrap(), "session=s1");
    assert_eq!(h.get("cloudfront-forwarded-proto").unwrap(), "http", "computed by the edge, not the viewer's");
    let address = h.get("cloudfront-viewer-address").unwrap().to_str().unwrap();
    assert!(address.starts_with("127.0.0.1:") && address.len() > 10, "{address}");

    // The origin request policy forwards without keying; the cache key does both.
    let tenant_b = [("x-device", "tv"), ("x-tenant", "b")];
    assert_eq!(text(&c, &url(&e, "/n.html?v=1&lang=de"), &tenant_b).await.1, "Hit");
    assert_eq!(text(&c, &url(&e, "/n.html?v=1"), &[("x-device", "phone")]).await.1, "Miss");
    let seen = o.seen_for("/n.html");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].1.get("x-device").unwrap(), "phone");
    assert_eq!(text(&c, &url(&e, "/n.html?v=2"), &[("x-device", "tv")]).await.1, "Miss");
}

#[tokio::test]
async fn all_viewer_forwards_the_viewers_headers_but_not_the_edges_own() {
    let o = Reflector::start().await;
    let e = edge(&config_for(&o.url(), "origin_request.headers = \"all-viewer\"")).await;
    let c = client();
    let viewer = [
        ("x-forwarded-host", "a.example"),
        ("accept-language", "fr"),
        ("x-amz-cf-id", "forged"),
        ("cloudfront-viewer-address", "6.6.6.6:666"),
        ("range", "bytes=0-1"),
        ("cache-control", "no-cache"),
    ];
    get(&c, &url(&e, "/all.html"), &viewer).await;
    let h = &o.seen_for("/all.html")[0].1;
    assert_eq!(h.get("x-forwarded-host").unwrap(), "a.example");
    assert_eq!(h.get("accept-language").unwrap(), "fr");
    assert_ne!(h.get("x-amz-cf-id").unwrap(), "forged");
    for name in ["cloudfront-viewer-address", "range", "cache-control"] {
        assert!(!h.contains_key(name), "{name}: {h:?}");
    }
    assert_eq!(h.get("host").unwrap().to_str().unwrap(), e.addr().to_string(), "all-viewer: the viewer's Host");

    let e = edge(&config_for(&o.url(), "origin_request.headers = \"all-viewer-except-host\"")).await;
    get(&c, &url(&e, "/own-host.html"), &viewer).await;
    let h = &o.seen_for("/own-host.html")[0].1;
    assert_eq!(h.get("x-forwarded-host").unwrap(), "a.example");
    assert_eq!(h.get("host").unwrap().to_str().unwrap(), o.addr.to_string(), "the origin's own Host");
}

#[tokio::test]
async fn requests_the_cache_never_answers_go_whole_but_without_forged_edge_headers() {
    let o = Reflector::start().await;
    let e = edge(&config_for(&o.url(), "allowed_methods = [\"GET\", \"HEAD\", \"POST\"]")).await;
    let c = client();
    let r = c
        .post(url(&e, "/form?a=1"))
        .header("x-forwarded-host", "a.example")
        .header("x-forwarded-for", "1.2.3.4")
        .header("x-amz-cf-id", "forged")
        .header("cloudfront-viewer-address", "6.6.6.6:666")
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (uri, h) = o.seen_for("/form").remove(0);
    assert_eq!(uri, "/form?a=1");
    assert_eq!(h.get("x-forwarded-host").unwrap(), "a.example");
    assert_eq!(h.get("x-forwarded-for").unwrap(), "1.2.3.4, 127.0.0.1");
    assert_ne!(h.get("x-amz-cf-id").unwrap(), "forged");
    assert!(!h.contains_key("cloudfront-viewer-address"));
    // A GET with Authorization is never shared: it goes whole too.
    get(&c, &url(&e, "/private.html?a=1"), &[("authorization", "Bearer x"), ("x-forwarded-host", "a.example")]).await;
    let (uri, h) = o.seen_for("/private.html").remove(0);
    assert_eq!(uri, "/private.html?a=1");
    assert_eq!(h.get("x-forwarded-host").unwrap(), "a.example");
}

/// Sends raw bytes and reads one response head; returns its status and head.
async fn raw_head(s: &mut TcpStream, bytes: &[u8]) -> (u16, String) {
    s.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no answer: the edge hung"),
        }
    }
    let head = String::from_utf8_lossy(&got).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head)
}

#[tokio::test]
async fn a_get_with_a_body_is_refused_and_stalls_no_viewer() {
    let o = TestOrigin::start().await;
    o.set(
        "/popular.m3u8",
        Script::ok("#EXTM3U\n#EXT-X-TARGETDURATION:2\n")
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(100)),
    );
    // Waiters would wait for a stalled fill far longer than the test allows.
    let e = edge(&format!("[cache]\nlock_timeout = \"600s\"\n{}", config_for(&o.url(), ""))).await;

    // The abusive request announces a body it never sends: the edge answers
    // at once, without waiting for it, and keeps nothing of it.
    let mut abuser = TcpStream::connect(e.addr()).await.unwrap();
    let (status, head) =
        raw_head(&mut abuser, b"GET /popular.m3u8 HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\n\r\n").await;
    assert_eq!(status, 400, "{head}");
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
    assert_eq!(o.hits("/popular.m3u8"), 0, "a refused request makes no fill");

    // While that connection still holds its unsent body, viewers are served
    // together from one origin request.
    let c = client();
    let viewers: Vec<_> = (0..8)
        .map(|_| {
            let (c, u) = (c.clone(), url(&e, "/popular.m3u8"));
            tokio::spawn(async move { get(&c, &u, &[]).await.0 })
        })
        .collect();
    for v in viewers {
        assert_eq!(v.await.unwrap(), 200);
    }
    assert_eq!(o.hits("/popular.m3u8"), 1);
    let seen = &o.seen_for("/popular.m3u8")[0];
    for name in ["content-length", "transfer-encoding", "expect"] {
        assert!(!seen.headers.contains_key(name), "the fill carried {name}");
    }
    // Only now does the abuser send its body: the edge closed that connection.
    let _ = abuser.write_all(&[b'x'; 40]).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), abuser.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the refused connection stayed open");
    assert!(!String::from_utf8_lossy(&rest).contains("HTTP/1.1 200"), "the body was read as a request");
}

#[tokio::test]
async fn what_counts_as_a_body_on_get_and_head() {
    let o = TestOrigin::start().await;
    o.set("/p.m3u8", Script::ok("#EXTM3U\n").header("cache-control", "max-age=60"));
    let e = edge(&config_for(&o.url(), "")).await;
    let cases: [(&[u8], u16); 5] = [
        (b"GET /p.m3u8 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 200),
        (b"GET /p.m3u8 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", 400),
        (b"GET /p.m3u8 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET /p.m3u8 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
        (b"HEAD /p.m3u8 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", 400),
    ];
    for (request, expected) in cases {
        let mut s = TcpStream::connect(e.addr()).await.unwrap();
        let (status, head) = raw_head(&mut s, request).await;
        assert_eq!(status, expected, "{}\n{head}", String::from_utf8_lossy(request));
    }
    assert_eq!(o.hits("/p.m3u8"), 1, "only the clean request reached the origin");

    // HTTP/2: DATA after a GET's headers.
    let h2 = reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap();
    let r = h2.get(url(&e, "/p.m3u8")).body("abc").send().await.unwrap();
    assert_eq!((r.version(), r.status().as_u16()), (reqwest::Version::HTTP_2, 400));
    let r = h2.get(url(&e, "/p.m3u8")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(o.hits("/p.m3u8"), 1);
}

#[tokio::test]
async fn a_computed_viewer_header_in_the_key_is_keyed_on_the_edges_value() {
    let o = Reflector::start().await;
    let e = edge(&config_for(&o.url(), "cache_key.headers = [\"cloudfront-forwarded-proto\"]")).await;
    let c = client();
    let (_, x, body) = text(&c, &url(&e, "/proto.html"), &[("cloudfront-forwarded-proto", "https")]).await;
    assert_eq!(x, "Miss");
    assert!(body.contains("cloudfront-forwarded-proto: http\n"), "{body}");
    // A viewer's forged value neither reaches the origin nor splits the key.
    assert_eq!(text(&c, &url(&e, "/proto.html"), &[]).await.1, "Hit");
    assert_eq!(text(&c, &url(&e, "/proto.html"), &[("cloudfront-forwarded-proto", "evil")]).await.1, "Hit");
    assert_eq!(o.seen_for("/proto.html").len(), 1);
}
