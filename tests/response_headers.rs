//! Response headers policies over real sockets: CORS preflights answered at
//! the edge (and never forwarded), allowed and disallowed origins, credentials,
//! origin override on and off, security and custom headers, removed headers,
//! `Server-Timing`, and hits carrying the same headers as misses.

mod common;

use common::{client, config_for, edge, url, Script, TestOrigin};
use reqwest::Method;

const PLAYER: &str = "https://player.example.com";
const OTHER: &str = "https://evil.example.net";

/// The edge in front of a fresh origin, with `policy` (TOML tables under the
/// default behavior's `response_headers`) and `behavior` lines.
async fn edge_with(behavior: &str, policy: &str) -> (mediaedge::RunningEdge, TestOrigin) {
    let origin = TestOrigin::start().await;
    let text = format!("{}{}", config_for(&origin.url(), behavior), policy);
    (edge(&text).await, origin)
}

fn h<'a>(r: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    r.get(name).and_then(|v| v.to_str().ok())
}

fn vary_has(r: &http::HeaderMap, token: &str) -> bool {
    r.get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

async fn send(method: Method, u: &str, headers: &[(&str, &str)]) -> (u16, String, http::HeaderMap) {
    let mut rb = client().request(method, u);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.expect("request");
    let xc = common::x_cache(&r);
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let _ = r.bytes().await;
    (status, xc, headers)
}

const LISTED: &str = r#"
[distributions.default_behavior.response_headers.cors]
allow_origins = ["https://player.example.com", "https://*.example.org"]
allow_methods = ["GET", "HEAD"]
allow_headers = ["Range", "X-Token"]
expose_headers = ["Content-Range", "X-Served-By"]
max_age = "600s"
"#;

#[tokio::test]
async fn a_preflight_is_answered_at_the_edge_and_never_forwarded() {
    // OPTIONS is allowed, so the behavior could forward it: the policy
    // (origin override on) answers it all the same.
    let (e, origin) = edge_with("allowed_methods = [\"GET\", \"HEAD\", \"OPTIONS\"]", LISTED).await;
    origin.set("/v.m3u8", Script::ok("#EXTM3U\n"));
    let ask =
        [("origin", PLAYER), ("access-control-request-method", "GET"), ("access-control-request-headers", "range")];
    let (status, _, r) = send(Method::OPTIONS, &url(&e, "/v.m3u8"), &ask).await;
    assert_eq!(status, 204, "{r:?}");
    assert_eq!(h(&r, "access-control-allow-origin"), Some(PLAYER));
    assert_eq!(h(&r, "access-control-allow-methods"), Some("GET, HEAD"));
    assert_eq!(h(&r, "access-control-allow-headers"), Some("Range, X-Token"));
    assert_eq!(h(&r, "access-control-max-age"), Some("600"));
    assert_eq!(h(&r, "access-control-allow-credentials"), None);
    assert!(vary_has(&r, "origin"), "{r:?}");

    // A subdomain of the wildcard entry.
    let ask = [("origin", "https://tv.example.org"), ("access-control-request-method", "GET")];
    let (status, _, r) = send(Method::OPTIONS, &url(&e, "/v.m3u8"), &ask).await;
    assert_eq!((status, h(&r, "access-control-allow-origin")), (204, Some("https://tv.example.org")));

    // An origin not in the list: refused, with no CORS header at all.
    let ask = [("origin", OTHER), ("access-control-request-method", "GET")];
    let (status, _, r) = send(Method::OPTIONS, &url(&e, "/v.m3u8"), &ask).await;
    assert_eq!(status, 403);
    assert!(r.keys().all(|k| !k.as_str().starts_with("access-control-")), "{r:?}");
    assert_eq!(origin.total(), 0, "a preflight reached the origin");

    // A plain OPTIONS (no Access-Control-Request-Method) is no preflight: it
    // goes to the origin like any other allowed method.
    let (_, _, _) = send(Method::OPTIONS, &url(&e, "/v.m3u8"), &[("origin", PLAYER)]).await;
    assert_eq!(origin.hits("/v.m3u8"), 1);
}

#[tokio::test]
async fn allowed_origins_are_echoed_and_others_get_no_cors_headers() {
    let (e, origin) = edge_with("", LISTED).await;
    origin.set("/seg.m4s", Script::ok(vec![7u8; 1000]).header("cache-control", "max-age=60"));
    let u = url(&e, "/seg.m4s");
    for want in ["Miss", "Hit"] {
        let (status, xc, r) = send(Method::GET, &u, &[("origin", PLAYER)]).await;
        assert_eq!((status, xc.as_str()), (200, want));
        assert_eq!(h(&r, "access-control-allow-origin"), Some(PLAYER), "{want}: {r:?}");
        assert_eq!(h(&r, "access-control-expose-headers"), Some("Content-Range, X-Served-By"), "{want}");
        assert_eq!(h(&r, "access-control-allow-credentials"), None);
        // Preflight-only headers stay off ordinary responses.
        assert_eq!(h(&r, "access-control-allow-methods"), None);
        assert!(vary_has(&r, "origin"), "{want}: {r:?}");
    }
    let (_, xc, r) = send(Method::GET, &u, &[("origin", OTHER)]).await;
    assert_eq!(xc, "Hit");
    assert!(r.keys().all(|k| !k.as_str().starts_with("access-control-")), "{r:?}");
    assert!(vary_has(&r, "origin"));
    // No Origin: no CORS headers, and still `Vary: Origin` (the answer depends on it).
    let (_, _, r) = send(Method::GET, &u, &[]).await;
    assert_eq!(h(&r, "access-control-allow-origin"), None);
    assert!(vary_has(&r, "origin"));
    assert_eq!(origin.hits("/seg.m4s"), 1);
}

#[tokio::test]
async fn credentials_are_allowed_and_requested_headers_echoed() {
    let policy = r#"
[distributions.default_behavior.response_headers.cors]
allow_origins = ["https://player.example.com"]
allow_headers = ["*"]
allow_credentials = true
"#;
    let (e, origin) = edge_with("", policy).await;
    origin.set("/k.key", Script::ok("key").header("cache-control", "max-age=60"));
    let ask = [
        ("origin", PLAYER),
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "authorization, x-drm"),
    ];
    let (status, _, r) = send(Method::OPTIONS, &url(&e, "/k.key"), &ask).await;
    assert_eq!(status, 204);
    assert_eq!(h(&r, "access-control-allow-credentials"), Some("true"));
    // `*` is no wildcard for a request with credentials: the asked headers come back.
    assert_eq!(h(&r, "access-control-allow-headers"), Some("authorization, x-drm"));
    assert_eq!(h(&r, "access-control-allow-methods"), Some("GET, HEAD, OPTIONS"));
    for want in ["Miss", "Hit"] {
        let (_, xc, r) = send(Method::GET, &url(&e, "/k.key"), &[("origin", PLAYER)]).await;
        assert_eq!(xc, want);
        assert_eq!(h(&r, "access-control-allow-origin"), Some(PLAYER));
        assert_eq!(h(&r, "access-control-allow-credentials"), Some("true"), "{want}");
    }
}

#[tokio::test]
async fn every_origin_allowed_answers_star_to_every_viewer() {
    let policy = r#"
[distributions.default_behavior.response_headers.cors]
allow_origins = ["*"]
expose_headers = ["*"]
"#;
    let (e, origin) = edge_with("", policy).await;
    origin.set("/m.mpd", Script::ok("<MPD/>").header("cache-control", "max-age=60"));
    for (want, asking) in [("Miss", Some(OTHER)), ("Hit", Some(PLAYER)), ("Hit", None)] {
        let hs: Vec<(&str, &str)> = asking.map(|o| ("origin", o)).into_iter().collect();
        let (_, xc, r) = send(Method::GET, &url(&e, "/m.mpd"), &hs).await;
        assert_eq!(xc, want);
        assert_eq!(h(&r, "access-control-allow-origin"), Some("*"), "{asking:?}");
        assert_eq!(h(&r, "access-control-expose-headers"), Some("*"));
        assert!(!vary_has(&r, "origin"), "the same answer for every origin needs no Vary: {r:?}");
    }
    let ask = [("origin", OTHER), ("access-control-request-method", "GET")];
    let (status, _, r) = send(Method::OPTIONS, &url(&e, "/m.mpd"), &ask).await;
    assert_eq!((status, h(&r, "access-control-allow-origin")), (204, Some("*")));
    assert_eq!(origin.hits("/m.mpd"), 1);
}

#[tokio::test]
async fn origin_override_decides_whose_cors_headers_win() {
    for override_on in [true, false] {
        let policy = format!("{LISTED}origin_override = {override_on}\n");
        let (e, origin) = edge_with("allowed_methods = [\"GET\", \"HEAD\", \"OPTIONS\"]", &policy).await;
        let own = "https://origins-own.example.com";
        origin.set(
            "/o.m3u8",
            Script::ok("#EXTM3U\n")
                .header("cache-control", "max-age=60")
                .header("access-control-allow-origin", own)
                .header("access-control-expose-headers", "X-Origin"),
        );
        origin.set("/plain.m3u8", Script::ok("#EXTM3U\n").header("cache-control", "max-age=60"));
        for want in ["Miss", "Hit"] {
            let (_, xc, r) = send(Method::GET, &url(&e, "/o.m3u8"), &[("origin", PLAYER)]).await;
            assert_eq!(xc, want);
            let (acao, aceh) = if override_on { (PLAYER, "Content-Range, X-Served-By") } else { (own, "X-Origin") };
            assert_eq!(h(&r, "access-control-allow-origin"), Some(acao), "override {override_on} {want}");
            assert_eq!(h(&r, "access-control-expose-headers"), Some(aceh), "override {override_on} {want}");
            assert_eq!(r.get_all("access-control-allow-origin").iter().count(), 1);
        }
        // Where the origin says nothing about CORS, the policy answers either way.
        let (_, _, r) = send(Method::GET, &url(&e, "/plain.m3u8"), &[("origin", PLAYER)]).await;
        assert_eq!(h(&r, "access-control-allow-origin"), Some(PLAYER), "override {override_on}");
        // A preflight: answered here with override on; with it off, a
        // behavior that allows OPTIONS forwards it to the origin.
        let ask = [("origin", PLAYER), ("access-control-request-method", "GET")];
        let (status, _, _) = send(Method::OPTIONS, &url(&e, "/o.m3u8"), &ask).await;
        let forwarded = origin.seen_for("/o.m3u8").iter().filter(|s| s.method == "OPTIONS").count();
        if override_on {
            assert_eq!((status, forwarded), (204, 0));
        } else {
            assert_eq!(forwarded, 1, "the preflight did not reach the origin");
        }
    }
    // Override off, but the behavior cannot forward OPTIONS: the edge answers.
    let (e, origin) = edge_with("", &format!("{LISTED}origin_override = false\n")).await;
    let ask = [("origin", PLAYER), ("access-control-request-method", "GET")];
    let (status, _, r) = send(Method::OPTIONS, &url(&e, "/x"), &ask).await;
    assert_eq!((status, h(&r, "access-control-allow-origin")), (204, Some(PLAYER)));
    assert_eq!(origin.total(), 0);
}

const SECURITY: &str = r#"
[distributions.default_behavior.response_headers]
remove = ["X-Powered-By", "server"]

[distributions.default_behavior.response_headers.security]
strict_transport_security = { max_age = "1y", include_subdomains = true, preload = true }
content_type_options = {}
frame_options = { value = "sameorigin" }
referrer_policy = { value = "strict-origin-when-cross-origin", override = false }
content_security_policy = { value = "default-src 'self'; media-src *" }

[[distributions.default_behavior.response_headers.custom]]
name = "X-Served-By"
value = "edge"

[[distributions.default_behavior.response_headers.custom]]
name = "Cache-Control"
value = "public, max-age=5"
override = false
"#;

/// The policy's part of a response head, for comparing hits with misses.
fn policy_part(r: &http::HeaderMap) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r
        .iter()
        .filter(|(k, _)| !["age", "x-cache", "date", "via", "server-timing"].contains(&k.as_str()))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn security_and_custom_headers_are_added_and_origin_headers_removed() {
    let (e, origin) = edge_with("", SECURITY).await;
    origin.set(
        "/s.m4s",
        Script::ok(vec![1u8; 500])
            .header("cache-control", "max-age=60")
            .header("x-powered-by", "php")
            .header("server", "origin-httpd")
            .header("x-frame-options", "ALLOW-FROM https://a")
            .header("referrer-policy", "no-referrer")
            .header("x-served-by", "origin"),
    );
    let mut heads = Vec::new();
    for want in ["Miss", "Hit", "Hit"] {
        let (status, xc, r) = send(Method::GET, &url(&e, "/s.m4s"), &[]).await;
        assert_eq!((status, xc.as_str()), (200, want));
        assert_eq!(h(&r, "strict-transport-security"), Some("max-age=31536000; includeSubDomains; preload"));
        assert_eq!(h(&r, "x-content-type-options"), Some("nosniff"));
        // Override on (the default): the policy's value replaces the origin's.
        assert_eq!(h(&r, "x-frame-options"), Some("SAMEORIGIN"));
        assert_eq!(h(&r, "x-served-by"), Some("edge"));
        // Override off: the origin's own wins.
        assert_eq!(h(&r, "referrer-policy"), Some("no-referrer"));
        assert_eq!(h(&r, "cache-control"), Some("max-age=60"));
        assert_eq!(h(&r, "content-security-policy"), Some("default-src 'self'; media-src *"));
        assert_eq!((h(&r, "x-powered-by"), h(&r, "server")), (None, None), "{r:?}");
        assert_eq!(r.get_all("x-frame-options").iter().count(), 1);
        heads.push(policy_part(&r));
    }
    assert_eq!(heads[0], heads[1], "a hit's head differs from the miss's");
    assert_eq!(heads[1], heads[2]);
    // Where the origin sends none, an override-off header is added.
    origin.set("/bare", Script::ok("x").header("cache-control", "no-store"));
    let (_, xc, r) = send(Method::GET, &url(&e, "/bare"), &[]).await;
    assert_eq!(h(&r, "referrer-policy"), Some("strict-origin-when-cross-origin"), "{xc}");
    assert_eq!(h(&r, "cache-control"), Some("no-store"));
    assert_eq!(h(&r, "x-served-by"), Some("edge"));
    // The origin still sees its own headers stored as sent: a range (not the
    // prebuilt hit head) answered from the same copy gets the policy too.
    let (status, _, r) = send(Method::GET, &url(&e, "/s.m4s"), &[("range", "bytes=0-9")]).await;
    assert_eq!(status, 206);
    assert_eq!((h(&r, "x-powered-by"), h(&r, "x-served-by")), (None, Some("edge")));
    assert_eq!(origin.hits("/s.m4s"), 1);
}

#[tokio::test]
async fn errors_the_edge_makes_carry_the_policy_too() {
    let (e, origin) = edge_with("", &format!("{LISTED}{SECURITY}")).await;
    // POST is not allowed on this behavior: a 403 made here, readable by the page.
    let (status, _, r) = send(Method::POST, &url(&e, "/v.m3u8"), &[("origin", PLAYER)]).await;
    assert_eq!(status, 403);
    assert_eq!(h(&r, "access-control-allow-origin"), Some(PLAYER));
    assert_eq!(h(&r, "x-content-type-options"), Some("nosniff"));
    assert_eq!(origin.total(), 0);
}

#[tokio::test]
async fn server_timing_says_hit_or_miss_and_where() {
    let policy = r#"
[distributions.default_behavior.response_headers.server_timing]
sampling_rate = 100
"#;
    let (e, origin) = edge_with("", policy).await;
    origin.set("/t.ts", Script::ok(vec![0u8; 188]).header("cache-control", "max-age=60"));
    for want in ["miss", "hit"] {
        let (_, _, r) = send(Method::GET, &url(&e, "/t.ts"), &[]).await;
        let st = h(&r, "server-timing").unwrap_or_default().to_string();
        assert!(st.starts_with(&format!("cdn-cache-{want}, ")), "{st}");
        assert!(st.contains("cdn-pop;desc=\"EDGE1\""), "{st}");
        assert!(st.contains("cdn-edge;dur="), "{st}");
    }
    // Sampling rate 0: never.
    let policy = "[distributions.default_behavior.response_headers.server_timing]\nsampling_rate = 0\n";
    let (e, origin) = edge_with("", policy).await;
    origin.set("/t.ts", Script::ok("x"));
    let (_, _, r) = send(Method::GET, &url(&e, "/t.ts"), &[]).await;
    assert_eq!(h(&r, "server-timing"), None);
    // No policy: no Server-Timing, no CORS.
    let (e, origin) = edge_with("", "").await;
    origin.set("/t.ts", Script::ok("x"));
    let (_, _, r) = send(Method::GET, &url(&e, "/t.ts"), &[("origin", PLAYER)]).await;
    assert_eq!((h(&r, "server-timing"), h(&r, "access-control-allow-origin")), (None, None));
}

#[test]
fn config_errors_name_the_line_and_the_field() {
    let base = config_for("http://127.0.0.1:9", "");
    let base_lines = base.lines().count();
    let cases = [
        (
            "[distributions.default_behavior.response_headers.cors]\nallow_origins = [\"player.example.com\"]\n",
            2,
            "distributions[0].default_behavior.response_headers.cors.allow_origins[0]",
        ),
        (
            "[distributions.default_behavior.response_headers.cors]\nallow_origins = [\"*\"]\nallow_credentials = true\n",
            2,
            "distributions[0].default_behavior.response_headers.cors.allow_origins",
        ),
        (
            "[distributions.default_behavior.response_headers]\nremove = [\"x-a\", \"Content-Length\"]\n",
            2,
            "distributions[0].default_behavior.response_headers.remove[1]",
        ),
        (
            "[distributions.default_behavior.response_headers.security]\nframe_options = { value = \"ALLOWALL\" }\n",
            2,
            "distributions[0].default_behavior.response_headers.security.frame_options.value",
        ),
        (
            "[distributions.default_behavior.response_headers.server_timing]\n\nsampling_rate = 101\n",
            3,
            "distributions[0].default_behavior.response_headers.server_timing.sampling_rate",
        ),
        (
            "[[distributions.default_behavior.response_headers.custom]]\nname = \"Access-Control-Allow-Origin\"\nvalue = \"*\"\n",
            2,
            "distributions[0].default_behavior.response_headers.custom[0].name",
        ),
    ];
    for (text, line, field) in cases {
        let e = mediaedge::Config::parse(&format!("{base}{text}"), std::path::Path::new("edge.toml")).expect_err(text);
        let shown = e.to_string();
        assert_eq!((e.line, e.field.as_deref()), (base_lines + line, Some(field)), "{shown}");
        assert!(shown.starts_with("edge.toml:"), "{shown}");
    }
}

#[test]
fn the_demo_opens_cors_to_every_origin() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-media");
    let cfg = mediaedge::Config::demo(&root, None).expect("demo config");
    let policy = cfg.distributions[0].default_behavior.response_headers.clone().expect("the demo has a policy");
    let cors = policy.cors.as_ref().expect("the demo answers CORS");
    assert_eq!(cors.allow_origins, mediaedge::config::response_headers::AllowOrigins::Any);
}
