//! Proxying rules: host routing, behaviors, methods, the headers the edge adds
//! and removes, origin failures and timeouts, and HTTP/2 viewers.

mod common;
use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One distribution with exact and wildcard aliases, in front of `origin`.
fn hosts_config(origin: &str) -> String {
    format!(
        "[[distributions]]\nid = \"EHOSTS\"\naliases = [\"media.example\", \"*.example.com\"]\n\n\
         [[distributions.origins]]\nid = \"o\"\nurl = \"{origin}\"\n\n\
         [distributions.default_behavior]\norigin = \"o\"\n"
    )
}

async fn hosts_edge() -> (mediaedge::RunningEdge, TestOrigin) {
    let o = TestOrigin::start().await;
    o.set("/h", Script::ok("routed"));
    let e = edge(&hosts_config(&o.url())).await;
    (e, o)
}

/// A port nothing listens on: bound, then released.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

/// An origin that counts its TCP connections and requests; every answer is
/// `ok` and cacheable.
struct CountingOrigin {
    addr: std::net::SocketAddr,
    conns: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CountingOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn counting_origin(listener: tokio::net::TcpListener) -> CountingOrigin {
    use hyper_util::rt::TokioIo;
    let addr = listener.local_addr().expect("addr");
    let conns = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (c, r) = (conns.clone(), requests.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                    r.fetch_add(1, Ordering::SeqCst);
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("cache-control", "max-age=60")
                                .body(http_body_util::Full::new(bytes::Bytes::from_static(b"ok")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    CountingOrigin { addr, conns, requests, task }
}

#[tokio::test]
async fn unknown_host_is_misdirected_with_a_clear_message() {
    let (e, o) = hosts_edge().await;
    let c = client();
    for host in ["other.example", "example.com", "media.example.org"] {
        let (s, x, h, b) = get(&c, &url(&e, "/h"), &[("host", host)]).await;
        assert_eq!((s, x.as_str()), (421, "Error"), "{host}");
        assert!(h.get("content-type").unwrap().to_str().unwrap().starts_with("text/plain"), "{host}");
        let text = String::from_utf8_lossy(&b);
        assert!(text.contains("421") && text.contains(host), "{host}: {text}");
    }
    // The edge's own address is no alias either.
    assert_eq!(get(&c, &url(&e, "/h"), &[]).await.0, 421);
    assert_eq!(o.total(), 0, "a misdirected request never reaches an origin");
}

#[tokio::test]
async fn an_exact_alias_routes_whatever_its_case_and_port() {
    let (e, o) = hosts_edge().await;
    let c = client();
    for host in ["media.example", "Media.Example:8080"] {
        let (s, _, _, b) = get(&c, &url(&e, "/h"), &[("host", host)]).await;
        assert_eq!((s, &b[..]), (200, &b"routed"[..]), "{host}");
    }
    assert_eq!(o.hits("/h"), 1);
}

#[tokio::test]
async fn the_generated_domain_name_routes() {
    let (e, o) = hosts_edge().await;
    let domain = mediaedge::config::domain_name_for("EHOSTS", "edge.mediaedge.invalid");
    assert!(domain.starts_with('d') && domain.ends_with(".edge.mediaedge.invalid"), "{domain}");
    let (s, x, _, b) = get(&client(), &url(&e, "/h"), &[("host", &domain)]).await;
    assert_eq!((s, x.as_str(), &b[..]), (200, "Miss", &b"routed"[..]));
    assert_eq!(o.hits("/h"), 1);
}

#[tokio::test]
async fn wildcard_aliases_match_subdomains_only() {
    let (e, o) = hosts_edge().await;
    let c = client();
    for host in ["cdn.example.com", "a.b.example.com", "CDN2.EXAMPLE.COM"] {
        let (s, _, _, b) = get(&c, &url(&e, "/h"), &[("host", host)]).await;
        assert_eq!((s, &b[..]), (200, &b"routed"[..]), "{host}");
    }
    assert_eq!(get(&c, &url(&e, "/h"), &[("host", "example.com")]).await.0, 421, "the apex is not a subdomain");
    assert_eq!(get(&c, &url(&e, "/h"), &[("host", "badexample.com")]).await.0, 421);
    assert_eq!(o.hits("/h"), 1);
}

#[tokio::test]
async fn a_disabled_distribution_answers_403() {
    let o = TestOrigin::start().await;
    o.set("/d", Script::ok("on"));
    let cfg = format!(
        "[[distributions]]\nid = \"EON\"\naliases = [\"on.example\"]\n\n\
         [[distributions.origins]]\nid = \"o\"\nurl = \"{u}\"\n\n\
         [[distributions]]\nid = \"EOFF\"\nenabled = false\naliases = [\"off.example\"]\n\n\
         [[distributions.origins]]\nid = \"o\"\nurl = \"{u}\"\n",
        u = o.url()
    );
    let e = edge(&cfg).await;
    let c = client();
    let (s, x, _, b) = get(&c, &url(&e, "/d"), &[("host", "off.example")]).await;
    assert_eq!((s, x.as_str()), (403, "Error"));
    assert!(String::from_utf8_lossy(&b).contains("disabled"), "{b:?}");
    assert_eq!(o.hits("/d"), 0);
    let (s, _, _, b) = get(&c, &url(&e, "/d"), &[("host", "on.example")]).await;
    assert_eq!((s, &b[..]), (200, &b"on"[..]));
}

#[tokio::test]
async fn ordered_behaviors_choose_the_origin_and_the_default_takes_the_rest() {
    let a = TestOrigin::start().await;
    let b = TestOrigin::start().await;
    for p in ["/live/x.m3u8", "/live/seg.ts", "/vod/seg.ts", "/vod/x.m3u8"] {
        a.set(p, Script::ok("from-a"));
        b.set(p, Script::ok("from-b"));
    }
    let cfg = format!(
        "[[distributions]]\nid = \"EBEH\"\naliases = [\"*\"]\n\n\
         [[distributions.origins]]\nid = \"a\"\nurl = \"{}\"\n\n\
         [[distributions.origins]]\nid = \"b\"\nurl = \"{}\"\n\n\
         [[distributions.behaviors]]\npath = \"/live/*.m3u8\"\norigin = \"b\"\n\n\
         [[distributions.behaviors]]\npath = \"/live/*\"\norigin = \"a\"\n\n\
         [distributions.default_behavior]\norigin = \"b\"\n",
        a.url(),
        b.url()
    );
    let e = edge(&cfg).await;
    let c = client();
    let expect = [
        // Matches both patterns: the first one wins.
        ("/live/x.m3u8", "from-b"),
        ("/live/seg.ts", "from-a"),
        ("/vod/seg.ts", "from-b"),
        ("/vod/x.m3u8", "from-b"),
    ];
    for (path, body) in expect {
        let (s, _, _, got) = get(&c, &url(&e, path), &[]).await;
        assert_eq!((s, &got[..]), (200, body.as_bytes()), "{path}");
    }
    assert_eq!((a.hits("/live/seg.ts"), a.total()), (1, 1));
    assert_eq!(b.total(), 3);
    assert_eq!((b.hits("/live/x.m3u8"), b.hits("/vod/seg.ts"), b.hits("/vod/x.m3u8")), (1, 1, 1));
}

#[tokio::test]
async fn methods_outside_allowed_methods_are_refused_without_an_origin_request() {
    let (e, o) = edge_and_origin("").await;
    let c = client();
    for m in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
        let r = c.request(method, url(&e, "/echo")).body("data").send().await.unwrap();
        assert_eq!((r.status().as_u16(), x_cache(&r).as_str()), (403, "Error"), "{m}");
        let text = r.text().await.unwrap();
        assert!(text.contains(m), "{m}: {text}");
    }
    assert_eq!(o.total(), 0);
}

#[tokio::test]
async fn allowed_unsafe_methods_pass_with_their_body_streamed() {
    let (e, o) =
        edge_and_origin("allowed_methods = [\"GET\", \"HEAD\", \"OPTIONS\", \"PUT\", \"POST\", \"PATCH\", \"DELETE\"]")
            .await;
    let c = client();
    // A body sent in pieces (chunked), 1 MiB in all.
    let piece = "0123456789abcdef".repeat(4096);
    let whole = piece.repeat(16);
    for m in ["POST", "PUT", "DELETE"] {
        let pieces: Vec<Result<String, std::io::Error>> = (0..16).map(|_| Ok(piece.clone())).collect();
        let body = reqwest::Body::wrap_stream(futures_util_shim::iter(pieces));
        let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
        let r = c.request(method, url(&e, "/echo")).body(body).send().await.unwrap();
        assert_eq!((r.status().as_u16(), x_cache(&r).as_str()), (200, "Miss"), "{m}");
        let text = r.text().await.unwrap();
        assert_eq!(text.len(), m.len() + 1 + whole.len(), "{m}");
        assert!(text == format!("{m} {whole}"), "{m}: the echoed body differs");
    }
    // A small fixed-length body too, checked where the origin saw it.
    let r = c.post(url(&e, "/echo")).body("small-body").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "POST small-body");
    let seen = o.seen_for("/echo");
    assert_eq!(seen.iter().map(|s| s.method.as_str()).collect::<Vec<_>>(), ["POST", "PUT", "DELETE", "POST"]);
    assert_eq!(&seen[3].body[..], b"small-body");
    assert_eq!(seen[0].body.len(), whole.len());
}

/// `reqwest::Body::wrap_stream` wants a `Stream`; a tiny one over a Vec.
mod futures_util_shim {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub struct Iter<T>(std::vec::IntoIter<T>);

    impl<T: Unpin> futures_core::Stream for Iter<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<T>> {
            Poll::Ready(self.0.next())
        }
    }

    pub fn iter<T>(v: Vec<T>) -> Iter<T> {
        Iter(v.into_iter())
    }
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_both_ways() {
    // Forwarded by the policy, yet x-secret is the viewer's hop's own (Connection names it).
    let (e, o) = edge_and_origin("origin_request.headers = [\"x-viewer\", \"x-secret\"]").await;
    o.set(
        "/hop",
        Script::ok("hop")
            .header("connection", "x-o")
            .header("x-o", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic")
            .header("x-end-to-end", "kept"),
    );
    let c = client();
    let (s, _, h, b) = get(
        &c,
        &url(&e, "/hop"),
        &[
            ("connection", "x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("x-viewer", "kept"),
        ],
    )
    .await;
    assert_eq!((s, &b[..]), (200, &b"hop"[..]));
    let seen = &o.seen_for("/hop")[0];
    for name in ["x-secret", "keep-alive", "te", "proxy-authorization"] {
        assert!(!seen.headers.contains_key(name), "{name} reached the origin");
    }
    if let Some(conn) = seen.headers.get("connection") {
        assert!(!conn.to_str().unwrap().to_ascii_lowercase().contains("x-secret"), "{conn:?}");
    }
    assert_eq!(seen.headers.get("x-viewer").unwrap(), "kept");
    for name in ["x-o", "keep-alive", "proxy-authenticate"] {
        assert!(!h.contains_key(name), "{name} reached the viewer");
    }
    if let Some(conn) = h.get("connection") {
        assert!(!conn.to_str().unwrap().to_ascii_lowercase().contains("x-o"), "{conn:?}");
    }
    assert_eq!(h.get("x-end-to-end").unwrap(), "kept");
    // The stored copy is clean too.
    let (_, x, h, _) = get(&c, &url(&e, "/hop"), &[]).await;
    assert_eq!(x, "Hit");
    assert!(!h.contains_key("x-o") && !h.contains_key("keep-alive"));
}

#[tokio::test]
async fn via_and_x_forwarded_for_are_appended() {
    // The viewer's X-Forwarded-For chain is kept only where the behavior forwards it.
    let (e, o) = edge_and_origin("origin_request.headers = [\"x-forwarded-for\"]").await;
    o.set("/via", Script::ok("v").header("via", "1.1 upstream"));
    let c = client();
    let (_, _, h, _) = get(&c, &url(&e, "/via"), &[("x-forwarded-for", "1.2.3.4"), ("via", "1.0 viewer-proxy")]).await;
    let seen = &o.seen_for("/via")[0];
    assert_eq!(seen.headers.get("x-forwarded-for").unwrap(), "1.2.3.4, 127.0.0.1");
    let via = seen.headers.get("via").unwrap().to_str().unwrap();
    assert!(via.starts_with("1.0 viewer-proxy, ") && via.contains("mediaedge"), "{via}");
    let via = h.get("via").unwrap().to_str().unwrap();
    assert!(via.starts_with("1.1 upstream, ") && via.contains("mediaedge"), "{via}");
    // Edge-made answers carry it as well.
    let (s, _, h, _) = get(&c, &url(&e, "/via"), &[("x-forwarded-for", "9.9.9.9")]).await;
    assert_eq!(s, 200);
    assert!(h.get("via").unwrap().to_str().unwrap().contains("mediaedge"));
}

#[tokio::test]
async fn origin_custom_headers_are_added_and_override_the_viewer() {
    let o = TestOrigin::start().await;
    o.set("/secret", Script::ok("s"));
    o.set("/secret2", Script::ok("s"));
    let cfg = format!(
        "[[distributions]]\nid = \"ECUSTOM\"\naliases = [\"*\"]\n\n\
         [[distributions.origins]]\nid = \"o\"\nurl = \"{}\"\n\n\
         [distributions.origins.headers]\nX-Origin-Secret = \"s3cr3t\"\n\n\
         [distributions.default_behavior]\norigin = \"o\"\n",
        o.url()
    );
    let e = edge(&cfg).await;
    let c = client();
    get(&c, &url(&e, "/secret"), &[]).await;
    get(&c, &url(&e, "/secret2"), &[("x-origin-secret", "forged")]).await;
    for p in ["/secret", "/secret2"] {
        let seen = &o.seen_for(p)[0];
        let values: Vec<_> = seen.headers.get_all("x-origin-secret").iter().collect();
        assert_eq!(values, ["s3cr3t"], "{p}");
    }
}

#[tokio::test]
async fn the_origin_path_prefix_is_prepended() {
    let o = TestOrigin::start().await;
    o.set("/base/v/a.m3u8", Script::ok("prefixed"));
    let e = edge(&config_for(&format!("{}/base", o.url()), "origin_request.query = \"all\"")).await;
    let (s, _, _, b) = get(&client(), &url(&e, "/v/a.m3u8?x=1"), &[]).await;
    assert_eq!((s, &b[..]), (200, &b"prefixed"[..]));
    assert_eq!(o.seen_for("/base/v/a.m3u8")[0].uri, "/base/v/a.m3u8?x=1");
    assert_eq!(o.total(), 1);
}

#[tokio::test]
async fn an_unreachable_origin_gives_502_error() {
    let e = edge(&config_for(&format!("http://127.0.0.1:{}", dead_port()), "")).await;
    let (s, x, h, b) = get(&client(), &url(&e, "/down"), &[]).await;
    assert_eq!((s, x.as_str()), (502, "Error"));
    assert_eq!(h.get("cache-control").unwrap(), "no-store");
    assert!(String::from_utf8_lossy(&b).contains("502"));
}

#[tokio::test]
async fn slow_origin_headers_beyond_read_timeout_give_504() {
    let o = TestOrigin::start().await;
    o.set("/slow", Script::ok("late").delay(Duration::from_secs(2)));
    o.set("/fast", Script::ok("fast"));
    let cfg = format!(
        "[[distributions]]\nid = \"ESLOW\"\naliases = [\"*\"]\n\n\
         [[distributions.origins]]\nid = \"o\"\nurl = \"{}\"\nread_timeout = \"300ms\"\nconnect_timeout = \"1s\"\n\n\
         [distributions.default_behavior]\norigin = \"o\"\n",
        o.url()
    );
    let e = edge(&cfg).await;
    let c = client();
    let (s, x, _, _) = get(&c, &url(&e, "/slow"), &[]).await;
    assert_eq!((s, x.as_str()), (504, "Error"));
    let (s, _, _, b) = get(&c, &url(&e, "/fast"), &[]).await;
    assert_eq!((s, &b[..]), (200, &b"fast"[..]));
}

#[tokio::test]
async fn connect_timeout_bounds_a_connect_that_hangs() {
    // A listener that never accepts, its backlog filled: further SYNs are
    // dropped, so a connect hangs until connect_timeout ends it. That is a 502
    // connection failure, never the 504 the 5 s read_timeout would give.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    let mut hung = false;
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => {
                hung = true;
                break;
            }
        }
    }
    assert!(hung, "could not fill the listen backlog");
    let cfg = format!(
        "[[distributions]]\nid = \"EHANG\"\naliases = [\"*\"]\n\n\
         [[distributions.origins]]\nid = \"o\"\nurl = \"http://{addr}\"\nconnect_timeout = \"300ms\"\nread_timeout = \"5s\"\n\n\
         [distributions.default_behavior]\norigin = \"o\"\n"
    );
    let e = edge(&cfg).await;
    let (s, x, _, b) = get(&client(), &url(&e, "/x"), &[]).await;
    assert_eq!((s, x.as_str()), (502, "Error"), "{}", String::from_utf8_lossy(&b));
    drop((listener, fillers));
}

#[tokio::test]
async fn origin_connections_are_kept_alive_across_misses() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = counting_origin(listener);
    let e = edge(&config_for(&format!("http://{}", origin.addr), "")).await;
    let c = client();
    for i in 0..20 {
        let (s, x, _, _) = get(&c, &url(&e, &format!("/ka/{i}")), &[]).await;
        assert_eq!((s, x.as_str()), (200, "Miss"), "{i}");
    }
    assert_eq!(origin.requests.load(Ordering::SeqCst), 20);
    let conns = origin.conns.load(Ordering::SeqCst);
    assert!(conns <= 2, "20 sequential misses used {conns} origin connections");
}

#[tokio::test]
async fn http2_viewers_get_the_same_cached_responses() {
    let (e, o) = edge_and_origin("").await;
    let body = payload(70_000, 7);
    o.set("/h2/seg.m4s", Script::ok(body.clone()).header("content-type", "video/iso.segment"));
    let h2 =
        reqwest::Client::builder().no_proxy().http2_prior_knowledge().timeout(Duration::from_secs(30)).build().unwrap();
    let r = h2.get(url(&e, "/h2/seg.m4s")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!((r.status().as_u16(), x_cache(&r).as_str()), (200, "Miss"));
    assert_eq!(r.bytes().await.unwrap(), body);
    let (s, x, _, b) = get(&h2, &url(&e, "/h2/seg.m4s"), &[]).await;
    assert_eq!((s, x.as_str()), (200, "Hit"));
    assert_eq!(b, body);
    // An HTTP/1.1 viewer shares the entry.
    let (s, x, _, b) = get(&client(), &url(&e, "/h2/seg.m4s"), &[]).await;
    assert_eq!((s, x.as_str(), b.len()), (200, "Hit", body.len()));
    assert_eq!(o.hits("/h2/seg.m4s"), 1);
}

#[tokio::test]
async fn gateway_errors_with_a_zero_error_ttl_are_not_cached() {
    // 504: the origin is slow once, then answers.
    let o = TestOrigin::start().await;
    o.set("/t", Script::ok("late").delay(Duration::from_secs(2)));
    let cfg = format!(
        "[[distributions]]\nid = \"ENOCACHE\"\naliases = [\"*\"]\n\n\
         [[distributions.origins]]\nid = \"o\"\nurl = \"{}\"\nread_timeout = \"300ms\"\n\n\
         [distributions.default_behavior]\norigin = \"o\"\n\n\
         [[distributions.custom_error_responses]]\nerror_code = 504\nerror_caching_min_ttl = 0\n",
        o.url()
    );
    let e = edge(&cfg).await;
    let c = client();
    assert_eq!(get(&c, &url(&e, "/t"), &[]).await.0, 504);
    o.set("/t", Script::ok("now"));
    let (s, x, _, b) = get(&c, &url(&e, "/t"), &[]).await;
    assert_eq!((s, x.as_str(), &b[..]), (200, "Miss", &b"now"[..]));
    assert_eq!(o.hits("/t"), 2);

    // 502: nothing listens, then an origin comes up on that port.
    let port = dead_port();
    let zero = "[[distributions.custom_error_responses]]\nerror_code = 502\nerror_caching_min_ttl = 0\n";
    let e = edge(&config_for(&format!("http://127.0.0.1:{port}"), zero)).await;
    let (s, x, _, _) = get(&c, &url(&e, "/g"), &[]).await;
    assert_eq!((s, x.as_str()), (502, "Error"));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("rebind the freed port");
    let origin = counting_origin(listener);
    let (s, x, _, b) = get(&c, &url(&e, "/g"), &[]).await;
    assert_eq!((s, x.as_str(), &b[..]), (200, "Miss", &b"ok"[..]));
    assert_eq!(origin.requests.load(Ordering::SeqCst), 1);
}
