//! Custom error pages (CloudFront's custom error responses with a page path),
//! over real sockets: the pages live on a second origin, behind their own
//! behavior, and are fetched through the distribution itself.

mod common;
use common::*;

/// A public key for the signed behavior, made with the openssl command line.
fn public_key() -> String {
    static KEY: std::sync::OnceLock<(TempDir, String)> = std::sync::OnceLock::new();
    let (_, path) = KEY.get_or_init(|| {
        let dir = TempDir::new("error-pages");
        let private = dir.path().join("k.pem");
        let public = dir.path().join("k.pub.pem");
        for args in [
            vec!["genrsa", "-out", private.to_str().unwrap(), "2048"],
            vec!["rsa", "-in", private.to_str().unwrap(), "-pubout", "-out", public.to_str().unwrap()],
        ] {
            let out =
                std::process::Command::new("openssl").args(&args).output().expect("openssl runs (.ci/run installs it)");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let path = public.to_str().unwrap().to_string();
        (dir, path)
    });
    path.clone()
}

/// A distribution over `site`, whose `/errors/*` behavior goes to `pages`,
/// with `entries` as its custom error responses; `/private/*` needs a signature.
fn config(site: &str, pages: &str, entries: &str) -> String {
    let key = public_key();
    format!(
        "[[distributions]]\nid = \"EPAGES\"\naliases = [\"*\"]\n\n\
         [[distributions.origins]]\nid = \"site\"\nurl = \"{site}\"\nread_timeout = \"5s\"\n\n\
         [[distributions.origins]]\nid = \"pages\"\nurl = \"{pages}\"\nread_timeout = \"5s\"\n\n\
         [distributions.default_behavior]\norigin = \"site\"\n\n\
         [[distributions.behaviors]]\npath = \"/errors/*\"\norigin = \"pages\"\n\n\
         [[distributions.behaviors]]\npath = \"/private/*\"\norigin = \"site\"\n\
         trusted_key_groups = [\"kg\"]\n\n\
         [[distributions.key_groups]]\nid = \"kg\"\nkeys = [{{ id = \"K1\", public_key = \"{key}\" }}]\n\n\
         {entries}"
    )
}

const PAGE_404: &str = "[[distributions.custom_error_responses]]\nerror_code = 404\n\
                        response_page_path = \"/errors/404.html\"\n";

async fn setup(entries: &str) -> (mediaedge::RunningEdge, TestOrigin, TestOrigin) {
    let site = TestOrigin::start().await;
    let pages = TestOrigin::start().await;
    let e = edge(&config(&site.url(), &pages.url(), entries)).await;
    (e, site, pages)
}

fn page() -> Script {
    Script::ok("<h1>not here</h1>").header("content-type", "text/html").header("cache-control", "max-age=300")
}

#[tokio::test]
async fn an_origin_404_gets_the_page_from_another_origin_once() {
    let (e, site, pages) = setup(PAGE_404).await;
    site.set("/a.m3u8", Script::ok("gone").status(404));
    site.set("/b.m3u8", Script::ok("gone").status(404));
    pages.set("/errors/404.html", page());
    let c = client();
    for path in ["/a.m3u8", "/b.m3u8", "/a.m3u8"] {
        let (s, _, h, body) = get(&c, &url(&e, path), &[]).await;
        assert_eq!(s, 404, "{path}: the error's own status");
        assert_eq!(&body[..], b"<h1>not here</h1>", "{path}");
        assert_eq!(h.get("content-type").and_then(|v| v.to_str().ok()), Some("text/html"));
    }
    // The page is cached like any object: one request to its origin.
    assert_eq!(pages.hits("/errors/404.html"), 1);
    // The 404s themselves are kept for the error TTL (10 s): /a once.
    assert_eq!(site.hits("/a.m3u8"), 1);
    // The page itself is served as it is, with a 200.
    let (s, _, _, body) = get(&c, &url(&e, "/errors/404.html"), &[]).await;
    assert_eq!((s, &body[..]), (200, &b"<h1>not here</h1>"[..]));
    // A HEAD gets the page's head and no body.
    let r = c.head(url(&e, "/a.m3u8")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers().get("content-length").and_then(|v| v.to_str().ok()), Some("17"));
    assert!(r.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_single_page_app_answers_missing_paths_with_its_index_and_200() {
    let entries = "[[distributions.custom_error_responses]]\nerror_code = 404\n\
                   response_page_path = \"/errors/index.html\"\nresponse_code = 200\n\
                   error_caching_min_ttl = 0\n";
    let (e, site, pages) = setup(entries).await;
    site.set("/app/settings", Script::ok("no such file").status(404));
    pages.set("/errors/index.html", Script::ok("<div id=app></div>").header("cache-control", "max-age=60"));
    let c = client();
    let (s, _, _, body) = get(&c, &url(&e, "/app/settings"), &[]).await;
    assert_eq!((s, &body[..]), (200, &b"<div id=app></div>"[..]));
    // With error_caching_min_ttl = 0 the 404 is not kept: the origin is asked again.
    let (s, _, _, _) = get(&c, &url(&e, "/app/settings"), &[]).await;
    assert_eq!(s, 200);
    assert_eq!(site.hits("/app/settings"), 2);
    // A path that exists is untouched.
    site.set("/app/main.js", Script::ok("js").header("cache-control", "max-age=60"));
    let (s, _, _, body) = get(&c, &url(&e, "/app/main.js"), &[]).await;
    assert_eq!((s, &body[..]), (200, &b"js"[..]));
}

#[tokio::test]
async fn a_page_that_fails_leaves_the_plain_error() {
    let entries = "[[distributions.custom_error_responses]]\nerror_code = 503\n\
                   response_page_path = \"/errors/503.html\"\n\
                   [[distributions.custom_error_responses]]\nerror_code = 500\n\
                   response_page_path = \"/errors/500.html\"\n";
    let (e, site, pages) = setup(entries).await;
    site.set("/live.m3u8", Script::ok("busy").status(503));
    // The page's own origin answers 404 (no page there): the plain 503.
    let c = client();
    let (s, x, _, body) = get(&c, &url(&e, "/live.m3u8"), &[]).await;
    assert_eq!((s, &body[..]), (503, &b"busy"[..]), "X-Cache {x}");
    assert_eq!(pages.hits("/errors/503.html"), 1);
    // The page's origin down altogether: still the plain error, no hang.
    drop(pages);
    site.set("/other.m3u8", Script::ok("broken").status(500));
    let (s, _, _, body) = get(&c, &url(&e, "/other.m3u8"), &[]).await;
    assert_eq!((s, &body[..]), (500, &b"broken"[..]));
}

#[tokio::test]
async fn the_edges_own_errors_get_pages_too() {
    // The edge's 403 for a missing signature, and its 502 for an origin it cannot reach.
    let entries = "[[distributions.custom_error_responses]]\nerror_code = 403\n\
                   response_page_path = \"/errors/403.html\"\n\
                   [[distributions.custom_error_responses]]\nerror_code = 502\n\
                   response_page_path = \"/errors/502.html\"\n";
    let site = TestOrigin::start().await;
    let pages = TestOrigin::start().await;
    pages.set("/errors/403.html", Script::ok("sign in first").header("cache-control", "max-age=60"));
    pages.set("/errors/502.html", Script::ok("try later").header("cache-control", "max-age=60"));
    let e = edge(&config(&site.url(), &pages.url(), entries)).await;
    let c = client();
    let (s, _, _, body) = get(&c, &url(&e, "/private/film.mp4"), &[]).await;
    assert_eq!((s, &body[..]), (403, &b"sign in first"[..]));
    assert_eq!(site.hits("/private/film.mp4"), 0, "nothing unsigned reaches the origin");
    // The origin unreachable: the edge's own 502, with its page.
    let dead = format!("http://{}", free_local_addr());
    let e = edge(&config(&dead, &pages.url(), entries)).await;
    let (s, _, _, body) = get(&c, &url(&e, "/seg.m4s"), &[]).await;
    assert_eq!((s, &body[..]), (502, &b"try later"[..]));
}

#[tokio::test]
async fn a_page_under_a_signed_behavior_is_never_used() {
    // The viewer's signature (if any) names the URL it asked for, not the page.
    let entries = "[[distributions.custom_error_responses]]\nerror_code = 404\n\
                   response_page_path = \"/private/404.html\"\n";
    let (e, site, _pages) = setup(entries).await;
    site.set("/a.m3u8", Script::ok("gone").status(404));
    site.set("/private/404.html", Script::ok("secret page").header("cache-control", "max-age=60"));
    let (s, _, _, body) = get(&client(), &url(&e, "/a.m3u8"), &[]).await;
    assert_eq!((s, &body[..]), (404, &b"gone"[..]));
    assert_eq!(site.hits("/private/404.html"), 0);
}

#[test]
fn a_response_code_without_a_page_is_refused() {
    let bad = "[[distributions.custom_error_responses]]\nerror_code = 404\nresponse_code = 200\n";
    let err = mediaedge::Config::parse(&config("http://127.0.0.1:1", "http://127.0.0.1:2", bad), "t.toml".as_ref())
        .expect_err("response_code needs a page");
    let err = err.to_string();
    assert!(err.contains("t.toml") && err.contains("response_code") && err.contains("response_page_path"), "{err}");
}

/// An address nothing listens on (bound, then closed).
fn free_local_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}
