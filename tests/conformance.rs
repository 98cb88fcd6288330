//! Conformance points of RFC 9111 (and RFC 9213, RFC 9110's HTTP-date and 1xx
//! rules), each written from the RFC text, against a real origin over real
//! sockets. "Stored and fresh" is seen as a second request answered `Hit`
//! with the origin asked once; "not reused" as the origin asked twice.

mod common;
use common::*;
use std::time::{Duration, SystemTime};

/// Two GETs of `path`; returns both X-Cache results and the origin's count.
async fn twice(e: &mediaedge::RunningEdge, o: &TestOrigin, path: &str) -> (String, String, usize) {
    let c = client();
    let (s1, x1, _, _) = get(&c, &url(e, path), &[]).await;
    let (s2, x2, _, _) = get(&c, &url(e, path), &[]).await;
    assert_eq!((s1, s2), (200, 200), "{path}");
    (x1, x2, o.hits(path))
}

fn age_of(h: &http::HeaderMap) -> u64 {
    h.get("age").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

// RFC 9111 §5.1: "a cache encountering a message with a list-based Age field
// value SHOULD use the first member of the field value, discarding subsequent
// ones"; an invalid value is ignored.
#[tokio::test]
async fn a_list_valued_age_uses_its_first_member() {
    let (e, o) = edge_and_origin("").await;
    let c = client();
    // 7200 first: older than max-age=3600, so never reused.
    for (path, ages) in
        [("/old-comma", &["7200, 0"][..]), ("/old-nospace", &["7200,0"]), ("/old-lines", &["7200", "0"])]
    {
        let mut script = Script::ok("x").header("cache-control", "max-age=3600");
        for a in ages {
            script = script.header("age", a);
        }
        o.set(path, script);
        let (s, x, h, _) = get(&c, &url(&e, path), &[]).await;
        assert_eq!((s, x.as_str()), (200, "Miss"), "{path}");
        // The miss response carries the origin's Age (RFC 9111 §4.2.3: it counts).
        assert!(age_of(&h) >= 7200, "{path}: the origin's Age is kept on the miss, got {:?}", h.get("age"));
        let (_, x, _, _) = get(&c, &url(&e, path), &[]).await;
        assert_ne!(x, "Hit", "{path}: an Age of 7200 is past max-age=3600");
        assert_eq!(o.hits(path), 2, "{path}");
    }
    // 0 first: fresh for the hour.
    for (path, ages) in [("/young-comma", &["0,7200"][..]), ("/young-lines", &["0", "7200"])] {
        let mut script = Script::ok("x").header("cache-control", "max-age=3600");
        for a in ages {
            script = script.header("age", a);
        }
        o.set(path, script);
        let (x1, x2, hits) = twice(&e, &o, path).await;
        assert_eq!((x1.as_str(), x2.as_str(), hits), ("Miss", "Hit", 1), "{path}");
    }
    // Invalid: ignored, so the response is as young as its Date says.
    o.set("/bad-age", Script::ok("x").header("cache-control", "max-age=3600").header("age", "abc"));
    let (x1, x2, hits) = twice(&e, &o, "/bad-age").await;
    assert_eq!((x1.as_str(), x2.as_str(), hits), ("Miss", "Hit", 1));
}

// RFC 9111 §4.2.3 / §5.1: the origin's Age is part of the age of every hit.
#[tokio::test]
async fn a_hit_counts_the_origins_age() {
    let (e, o) = edge_and_origin("").await;
    o.set("/aged", Script::ok("x").header("cache-control", "max-age=600").header("age", "30"));
    let c = client();
    get(&c, &url(&e, "/aged"), &[]).await;
    let (_, x, h, _) = get(&c, &url(&e, "/aged"), &[]).await;
    assert_eq!(x, "Hit");
    assert!(age_of(&h) >= 30, "Age {:?}", h.get("age"));
}

// RFC 9213 §2.1: CDN-Cache-Control is a Structured Field dictionary; RFC 8941
// §4.2: a field that fails to parse is ignored as a whole. Then Cache-Control
// (here `no-store`) decides.
#[tokio::test]
async fn an_invalid_cdn_cache_control_is_ignored_as_a_whole() {
    let (e, o) = edge_and_origin("").await;
    let cases = [
        ("/unknown-type", "max-age=10000, &&&&&"),
        ("/wrong-type", "max-age=\"10000\""),
        ("/space-before", "max-age =10000"),
        ("/space-after", "max-age= 10000"),
        ("/upper-case-key", "MaX-aGe=10000"),
        ("/negative", "max-age=-1"),
        ("/trailing-comma", "max-age=10000,"),
    ];
    for (path, cdn) in cases {
        o.set(path, Script::ok("x").header("cache-control", "no-store").header("cdn-cache-control", cdn));
        let (x1, x2, hits) = twice(&e, &o, path).await;
        assert_eq!((x1.as_str(), x2.as_str(), hits), ("Miss", "Miss", 2), "{path}: {cdn:?} must be ignored");
    }
    // Valid dictionaries still win over Cache-Control.
    for (path, cdn) in
        [("/valid", "max-age=10000"), ("/extension", "foobar, max-age=10000"), ("/huge", "max-age=99999999999")]
    {
        o.set(path, Script::ok("x").header("cache-control", "no-store").header("cdn-cache-control", cdn));
        let (x1, x2, hits) = twice(&e, &o, path).await;
        assert_eq!((x1.as_str(), x2.as_str(), hits), ("Miss", "Hit", 1), "{path}: {cdn:?}");
    }
    // A short CDN max-age beats a long Cache-Control one.
    o.set("/short", Script::ok("x").header("cache-control", "max-age=3600").header("cdn-cache-control", "max-age=0"));
    let (_, x2, hits) = twice(&e, &o, "/short").await;
    assert_ne!(x2, "Hit");
    assert_eq!(hits, 2);
}

// RFC 9110 §5.6.7: "Recipients of timestamp values are encouraged to be robust
// in parsing timestamps" and MUST accept the obsolete formats; RFC 9111 §5.3:
// an invalid Expires means already expired.
#[tokio::test]
async fn expires_in_every_http_date_format() {
    let (e, o) = edge_and_origin("").await;
    let fresh = [
        ("/imf", "Thu, 18 Aug 2050 02:01:18 GMT"),
        ("/asctime", "Thu Aug  8 02:01:18 2050"),
        ("/asctime-two-digit-day", "Thu Aug 18 02:01:18 2050"),
        ("/rfc850", "Thursday, 18-Aug-50 02:01:18 GMT"),
        ("/case-weekday", "THU, 18 Aug 2050 02:01:18 GMT"),
        ("/case-month", "Thu, 18 AUG 2050 02:01:18 GMT"),
        ("/case-zone", "Thu, 18 Aug 2050 02:01:18 gMT"),
    ];
    for (path, expires) in fresh {
        o.set(path, Script::ok("x").header("expires", expires).no_revalidate());
        let (x1, x2, hits) = twice(&e, &o, path).await;
        assert_eq!((x1.as_str(), x2.as_str(), hits), ("Miss", "Hit", 1), "{path}: {expires:?} is a future date");
    }
    let invalid = [
        ("/zero", "0"),
        ("/utc", "Thu, 18 Aug 2050 02:01:18 UTC"),
        ("/two-digit-year", "Thu, 18 Aug 50 02:01:18 GMT"),
        ("/no-comma", "Thu 18 Aug 2050 02:01:18 GMT"),
        ("/double-spaces", "Thu, 18  Aug  2050 02:01:18 GMT"),
        ("/dashes", "Thu, 18-Aug-2050 02:01:18 GMT"),
        ("/periods", "Thu, 18 Aug 2050 02.01.18 GMT"),
        ("/one-digit-hour", "Thu, 18 Aug 2050 2:01:18 GMT"),
    ];
    for (path, expires) in invalid {
        o.set(path, Script::ok("x").header("expires", expires).no_revalidate());
        let (_, x2, hits) = twice(&e, &o, path).await;
        assert_ne!(x2, "Hit", "{path}: {expires:?} is invalid, so already expired");
        assert_eq!(hits, 2, "{path}");
    }
}

// RFC 9110 §15.2: a client (here the edge) must be able to parse 1xx interim
// responses before the final one; RFC 9111 §3: only final responses are stored.
#[tokio::test]
async fn interim_responses_never_break_or_get_stored() {
    static RAW: &[u8] = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n\
HTTP/1.1 102 Processing\r\n\r\n\
HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nfinal";
    let (addr, task) = raw_origin(RAW).await;
    let e = edge(&config_for(&format!("http://{addr}"), "")).await;
    let c = client();
    let (s1, x1, h1, b1) = get(&c, &url(&e, "/early"), &[]).await;
    assert_eq!((s1, x1.as_str(), &b1[..]), (200, "Miss", &b"final"[..]));
    assert!(!h1.contains_key("link"), "the 103's fields are not merged into the final response");
    // The final response was stored, not the interim one.
    let (s2, x2, _, b2) = get(&c, &url(&e, "/early"), &[]).await;
    assert_eq!((s2, x2.as_str(), &b2[..]), (200, "Hit", &b"final"[..]));
    task.abort();
}

// RFC 9111 §3 lets a shared cache store a response with Set-Cookie; §7.3 and
// RFC 6265 §8 warn that one viewer's cookie must not reach another.
#[tokio::test]
async fn set_cookie_is_a_per_behavior_choice() {
    // Default: never stored.
    let (e, o) = edge_and_origin("").await;
    o.set("/sc", Script::ok("x").header("cache-control", "max-age=3600").header("set-cookie", "id=1"));
    let c = client();
    for _ in 0..2 {
        let (_, x, h, _) = get(&c, &url(&e, "/sc"), &[]).await;
        assert_eq!(x, "Miss");
        assert_eq!(h.get("set-cookie").unwrap(), "id=1");
    }
    assert_eq!(o.hits("/sc"), 2);

    // strip: stored without the cookie; only the filling viewer receives it.
    let (e, o) = edge_and_origin("set_cookie = \"strip\"").await;
    o.set(
        "/sc",
        Script::ok("x")
            .header("cache-control", "max-age=3600")
            .header("set-cookie", "id=1")
            .header("set-cookie", "b=2"),
    );
    let (_, x1, h1, _) = get(&c, &url(&e, "/sc"), &[]).await;
    let (_, x2, h2, b2) = get(&c, &url(&e, "/sc"), &[]).await;
    assert_eq!((x1.as_str(), x2.as_str(), &b2[..]), ("Miss", "Hit", &b"x"[..]));
    let cookies: Vec<_> = h1.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert_eq!(cookies, ["id=1", "b=2"], "the viewer whose request filled it gets its cookies");
    assert!(!h2.contains_key("set-cookie"), "no other viewer receives them");
    assert_eq!(o.hits("/sc"), 1);

    // strip, through a revalidation: the 304's cookie goes to the viewer whose
    // request revalidated, and is not merged into the stored copy.
    o.set("/sc304", Script::ok("y").header("cache-control", "max-age=0").header("etag", "\"e\""));
    get(&c, &url(&e, "/sc304"), &[]).await;
    o.set(
        "/sc304",
        Script::ok("y").header("cache-control", "max-age=600").header("etag", "\"e\"").header("set-cookie", "r=1"),
    );
    let (_, x1, h1, _) = get(&c, &url(&e, "/sc304"), &[]).await;
    let (_, x2, h2, _) = get(&c, &url(&e, "/sc304"), &[]).await;
    assert_eq!((x1.as_str(), x2.as_str(), o.hits("/sc304")), ("RefreshHit", "Hit", 2));
    assert_eq!(h1.get("set-cookie").unwrap(), "r=1");
    assert!(!h2.contains_key("set-cookie"), "the refreshed copy holds no cookie");

    // store: the stored copy keeps it (CloudFront's behaviour when cookies are forwarded).
    let (e, o) = edge_and_origin("set_cookie = \"store\"").await;
    o.set("/sc", Script::ok("x").header("cache-control", "max-age=3600").header("set-cookie", "theme=dark"));
    let (_, x1, _, _) = get(&c, &url(&e, "/sc"), &[]).await;
    let (_, x2, h2, _) = get(&c, &url(&e, "/sc"), &[]).await;
    assert_eq!((x1.as_str(), x2.as_str()), ("Miss", "Hit"));
    assert_eq!(h2.get("set-cookie").unwrap(), "theme=dark");
    assert_eq!(o.hits("/sc"), 1);
}

#[tokio::test]
async fn set_cookie_rejects_an_unknown_policy() {
    let cfg = config_for("http://127.0.0.1:9", "set_cookie = \"sometimes\"");
    let Err(err) = mediaedge::Config::parse(&cfg, std::path::Path::new("t.toml")) else {
        panic!("an unknown set_cookie value is refused");
    };
    let err = err.to_string();
    assert!(err.contains("set_cookie") && err.contains("sometimes"), "{err}");
}

// RFC 9111 §4.2.2: with no explicit freshness, a cache may use 10% of the time
// since Last-Modified.
#[tokio::test]
async fn heuristic_freshness_from_last_modified() {
    let long_ago = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(100_000));
    let just_now = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(5));
    let (e, o) = edge_and_origin("heuristic_freshness = true").await;
    // Modified 100,000 s ago: fresh for about 10,000 s.
    o.set("/old", Script::ok("x").header("last-modified", &long_ago));
    let (x1, x2, hits) = twice(&e, &o, "/old").await;
    assert_eq!((x1.as_str(), x2.as_str(), hits), ("Miss", "Hit", 1));
    // Modified at (or after) its Date: no heuristic lifetime at all.
    o.set("/new", Script::ok("x").header("last-modified", &just_now));
    let (_, x2, hits) = twice(&e, &o, "/new").await;
    assert_ne!(x2, "Hit");
    assert_eq!(hits, 2);
    // Without the option, default_ttl applies as before.
    let (e, o) = edge_and_origin("").await;
    o.set("/new", Script::ok("x").header("last-modified", &just_now));
    let (_, x2, hits) = twice(&e, &o, "/new").await;
    assert_eq!((x2.as_str(), hits), ("Hit", 1));
}

// RFC 9111 §4.2.2 / §5.2.2.9: `public` makes a response heuristically
// cacheable whatever its status.
#[tokio::test]
async fn public_makes_an_unknown_status_cacheable() {
    let (e, o) = edge_and_origin("").await;
    o.set("/599-public", Script::ok("x").status(599).header("cache-control", "public"));
    o.set("/599", Script::ok("x").status(599));
    let c = client();
    let (s, x1, _, _) = get(&c, &url(&e, "/599-public"), &[]).await;
    let (_, x2, _, _) = get(&c, &url(&e, "/599-public"), &[]).await;
    // An error status: the first answer is logged and marked as an Error
    // (as CloudFront does), the stored one is a Hit.
    assert_eq!((s, x1.as_str(), x2.as_str(), o.hits("/599-public")), (599, "Error", "Hit", 1));
    get(&c, &url(&e, "/599"), &[]).await;
    get(&c, &url(&e, "/599"), &[]).await;
    assert_eq!(o.hits("/599"), 2, "without public a 599 is not stored");
}

// RFC 9111 §5.2.1.7: only-if-cached gets a stored response or 504.
#[tokio::test]
async fn only_if_cached_answers_504_without_asking_the_origin() {
    let (e, o) = edge_and_origin("").await;
    o.set("/oic", Script::ok("stored").header("cache-control", "max-age=600"));
    o.set("/oic-stale", Script::ok("stale").header("cache-control", "max-age=0").header("etag", "\"s\""));
    let c = client();
    let only = [("cache-control", "only-if-cached")];
    let (s, _, _, _) = get(&c, &url(&e, "/oic"), &only).await;
    assert_eq!((s, o.hits("/oic")), (504, 0), "nothing stored: 504, the origin is not asked");
    get(&c, &url(&e, "/oic"), &[]).await;
    let (s, x, _, b) = get(&c, &url(&e, "/oic"), &[("cache-control", "max-age=0, only-if-cached")]).await;
    assert_eq!((s, x.as_str(), &b[..], o.hits("/oic")), (200, "Hit", &b"stored"[..], 1));
    // Stored but stale: not usable without revalidation, so 504 too.
    get(&c, &url(&e, "/oic-stale"), &[]).await;
    let (s, _, _, _) = get(&c, &url(&e, "/oic-stale"), &only).await;
    assert_eq!((s, o.hits("/oic-stale")), (504, 1));
}

// RFC 9111 §4.3.2: with no stored response, a cache may forward the viewer's
// own validators; the origin's 304 then answers that viewer, and is never
// stored in place of the object.
#[tokio::test]
async fn with_nothing_stored_the_viewers_validators_reach_the_origin() {
    let (e, o) = edge_and_origin("").await;
    o.set("/v", Script::ok("version one").header("cache-control", "max-age=600").header("etag", "\"v1\""));
    let c = client();
    let (s, _, h, b) = get(&c, &url(&e, "/v"), &[("if-none-match", "\"v1\"")]).await;
    assert_eq!((s, b.len()), (304, 0));
    assert_eq!(h.get("etag").unwrap(), "\"v1\"");
    let seen = o.seen_for("/v");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers.get("if-none-match").unwrap(), "\"v1\"");
    // The 304 was not stored: a plain GET fills, without the validator.
    let (s, x, _, b) = get(&c, &url(&e, "/v"), &[]).await;
    assert_eq!((s, x.as_str(), &b[..]), (200, "Miss", &b"version one"[..]));
    let seen = o.seen_for("/v");
    assert_eq!(seen.len(), 2);
    assert!(seen[1].headers.get("if-none-match").is_none());
    // Now stored: the viewer's conditional is answered here.
    let (s, x, _, _) = get(&c, &url(&e, "/v"), &[("if-none-match", "\"v1\"")]).await;
    assert_eq!((s, x.as_str(), o.hits("/v")), (304, "Hit", 2));
    // A validator that does not match: the origin's 200 is stored and served.
    o.set("/w", Script::ok("w body").header("cache-control", "max-age=600").header("etag", "\"w2\""));
    let (s, x, _, b) = get(&c, &url(&e, "/w"), &[("if-none-match", "\"w1\"")]).await;
    assert_eq!((s, x.as_str(), &b[..]), (200, "Miss", &b"w body"[..]));
    assert_eq!(o.seen_for("/w")[0].headers.get("if-none-match").unwrap(), "\"w1\"");
    let (s, x, _, _) = get(&c, &url(&e, "/w"), &[]).await;
    assert_eq!((s, x.as_str(), o.hits("/w")), (200, "Hit", 1));
    // If-Modified-Since goes along the same way.
    let lm = "Sat, 01 Jan 2022 00:00:00 GMT";
    o.set("/m", Script::ok("m body").header("cache-control", "max-age=600").header("last-modified", lm));
    let (s, _, _, _) = get(&c, &url(&e, "/m"), &[("if-modified-since", lm)]).await;
    assert_eq!(o.seen_for("/m")[0].headers.get("if-modified-since").unwrap(), lm);
    // This origin ignores If-Modified-Since: its 200 is stored, and the
    // viewer's condition is evaluated against it.
    assert_eq!(s, 304);
    let (s, x, _, _) = get(&c, &url(&e, "/m"), &[]).await;
    assert_eq!((s, x.as_str(), o.hits("/m")), (200, "Hit", 1));
}

// RFC 9111 §4.3.5: a HEAD response may update a stored response's header
// fields when its validators match; a HEAD on a stale copy is sent as a HEAD,
// and its answer never becomes the stored body.
#[tokio::test]
async fn a_head_on_a_stale_copy_is_revalidated_with_a_head() {
    let (e, o) = edge_and_origin("").await;
    let c = client();
    let head = |path: &'static str| {
        let c = c.clone();
        let u = url(&e, path);
        async move {
            let r = c.head(&u).send().await.expect("HEAD");
            let x = x_cache(&r);
            (r.status().as_u16(), x, r.headers().clone())
        }
    };
    // Stored, and stale at once.
    o.set(
        "/h",
        Script::ok("the body").header("cache-control", "max-age=0").header("etag", "\"h1\"").header("x-a", "1"),
    );
    let (s, _, _, b) = get(&c, &url(&e, "/h"), &[]).await;
    assert_eq!((s, &b[..]), (200, &b"the body"[..]));
    // 304 to the HEAD: the copy is refreshed.
    let (s, x, _) = head("/h").await;
    assert_eq!((s, x.as_str()), (200, "RefreshHit"));
    let seen = o.seen_for("/h");
    assert_eq!((seen.len(), seen[1].method.as_str()), (2, "HEAD"));
    assert_eq!(seen[1].headers.get("if-none-match").unwrap(), "\"h1\"");
    // 200 to the HEAD, same validator: its fields and lifetime update the copy.
    o.set(
        "/h",
        Script::ok("the body")
            .header("cache-control", "max-age=600")
            .header("etag", "\"h1\"")
            .header("x-a", "2")
            .no_revalidate(),
    );
    let (s, _, h) = head("/h").await;
    assert_eq!((s, h.get("x-a").unwrap().to_str().unwrap()), (200, "2"));
    assert_eq!(o.seen_for("/h")[2].method, "HEAD");
    let (s, x, h, b) = get(&c, &url(&e, "/h"), &[]).await;
    assert_eq!((s, x.as_str(), &b[..]), (200, "Hit", &b"the body"[..]));
    assert_eq!(h.get("x-a").unwrap(), "2");
    assert_eq!(o.hits("/h"), 3);

    // 200 to the HEAD with another validator: the stored body is outdated and
    // dropped; the next GET fills anew.
    o.set("/g", Script::ok("old").header("cache-control", "max-age=0").header("etag", "\"g1\""));
    get(&c, &url(&e, "/g"), &[]).await;
    o.set("/g", Script::ok("new!").header("cache-control", "max-age=600").header("etag", "\"g2\"").no_revalidate());
    let (s, _, h) = head("/g").await;
    assert_eq!((s, h.get("etag").unwrap().to_str().unwrap()), (200, "\"g2\""));
    let (s, x, h, b) = get(&c, &url(&e, "/g"), &[]).await;
    assert_eq!((s, x.as_str(), &b[..]), (200, "Miss", &b"new!"[..]));
    assert_eq!(h.get("etag").unwrap(), "\"g2\"");
    let methods: Vec<String> = o.seen_for("/g").into_iter().map(|s| s.method).collect();
    assert_eq!(methods, ["GET", "HEAD", "GET"]);
}

// RFC 9111 §4.1: selecting header fields may be normalised before they are
// compared: white space around list members, and several field lines combined
// into one list, select the same variant.
#[tokio::test]
async fn vary_compares_normalised_field_values() {
    let (e, o) = edge_and_origin("").await;
    o.set("/vn", Script::ok("x").header("cache-control", "max-age=600").header("vary", "Foo"));
    let c = client();
    let u = url(&e, "/vn");
    let (_, x, _, _) = get(&c, &u, &[("foo", "1,2")]).await;
    assert_eq!(x, "Miss");
    let (_, x, _, _) = get(&c, &u, &[("foo", "1 ,  2")]).await;
    assert_eq!(x, "Hit", "white space around members");
    let (_, x, _, _) = get(&c, &u, &[("foo", "1"), ("foo", "2")]).await;
    assert_eq!(x, "Hit", "two field lines");
    let (_, x, _, _) = get(&c, &u, &[("foo", "1,,2,")]).await;
    assert_eq!(x, "Hit", "empty members");
    assert_eq!(o.hits("/vn"), 1);
    // Different members are a different variant.
    let (_, x, _, _) = get(&c, &u, &[("foo", "1, 3")]).await;
    assert_eq!(x, "Miss");
    let (_, x, _, _) = get(&c, &u, &[("foo", "12")]).await;
    assert_eq!(x, "Miss");
    assert_eq!(o.hits("/vn"), 3);
}

// RFC 9110 §15.2: "A proxy MUST forward 1xx responses unless the proxy itself
// requested the generation of the 1xx response", and "a server MUST NOT send
// a 1xx response to an HTTP/1.0 client". RFC 9111 §3: only the final
// response is stored. Hop-by-hop fields of the 1xx stay on the origin's hop.
static EARLY: &[u8] =
    b"HTTP/1.1 103 Early Hints\r\nLink: </styles.css>; rel=preload; as=style\r\nX-My-Header: test\r\n\
Connection: x-hop\r\nX-Hop: 1\r\n\r\n\
HTTP/1.1 102 Processing\r\n\r\n\
HTTP/1.1 200 OK\r\nCache-Control: max-age=100000\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nfinal";

/// Sends raw request bytes and reads until `responses` final bodies `final` arrived.
async fn raw_exchange(e: &mediaedge::RunningEdge, request: &str, finals: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(e.addr()).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while String::from_utf8_lossy(&got).matches("final").count() < finals {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read).await.expect("the edge answered (it hung)");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn interim_responses_are_forwarded_to_http11_viewers_and_never_stored() {
    let (addr, task) = raw_origin(EARLY).await;
    let e = edge(&config_for(&format!("http://{addr}"), "")).await;
    let text = raw_exchange(&e, "GET /early HTTP/1.1\r\nHost: a.example\r\n\r\n", 1).await;
    let (i103, i102, i200) =
        (text.find("HTTP/1.1 103 Early Hints\r\n"), text.find("HTTP/1.1 102"), text.find("HTTP/1.1 200"));
    assert!(i103.is_some() && i102.is_some() && i200.is_some(), "103, 102 and 200 reach the viewer:\n{text}");
    assert!(i103 < i102 && i102 < i200, "in the origin's order, before the final response:\n{text}");
    let interim = &text[..i200.unwrap_or(0)].to_ascii_lowercase();
    assert!(interim.contains("link: </styles.css>; rel=preload; as=style\r\n"), "{text}");
    assert!(interim.contains("x-my-header: test\r\n"), "{text}");
    assert!(!interim.contains("x-hop") && !interim.contains("connection"), "hop-by-hop fields stay:\n{text}");
    let fin = &text[i200.unwrap_or(0)..].to_ascii_lowercase();
    assert!(fin.contains("x-cache: miss") && fin.ends_with("final"), "{text}");
    assert!(!fin.contains("link:"), "the 103's fields are not merged into the final response:\n{text}");

    // The final response was stored; a hit has no interim response.
    let text = raw_exchange(&e, "GET /early HTTP/1.1\r\nHost: a.example\r\n\r\n", 1).await;
    assert!(text.starts_with("HTTP/1.1 200"), "a hit starts with its final response:\n{text}");
    assert!(text.to_ascii_lowercase().contains("x-cache: hit"), "{text}");

    // HTTP/1.0: the origin's 1xx are not forwarded.
    let text = raw_exchange(&e, "GET /early10 HTTP/1.0\r\nHost: a.example\r\n\r\n", 1).await;
    assert!(text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"), "no 1xx to HTTP/1.0:\n{text}");
    task.abort();
}

// Pipelined requests: each request's interim responses come right before its
// own final response, never inside or after another response.
#[tokio::test]
async fn interim_responses_keep_their_place_in_a_pipeline() {
    let (addr, task) = raw_origin(EARLY).await;
    let e = edge(&config_for(&format!("http://{addr}"), "")).await;
    let req = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: a.example\r\n\r\n");
    let text = raw_exchange(&e, &(req("/p1") + &req("/p2") + &req("/p1")), 3).await;
    let starts: Vec<&str> = text.match_indices("HTTP/1.1 ").map(|(i, _)| &text[i + 9..i + 12]).collect();
    assert_eq!(
        starts,
        ["103", "102", "200", "103", "102", "200", "200"],
        "two misses with their interim responses, then a hit without:\n{text}"
    );
    task.abort();
}

// A real client: curl shows the interim response it received (-v).
#[tokio::test]
async fn curl_sees_the_early_hints() {
    let (addr, task) = raw_origin(EARLY).await;
    let e = edge(&config_for(&format!("http://{addr}"), "")).await;
    let out = tokio::process::Command::new("curl")
        .args(["-sv", "--http1.1", "--max-time", "20", &url(&e, "/curl")])
        .output()
        .await
        .expect("curl runs (scripts/test.sh installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("< HTTP/1.1 103 Early Hints"), "{err}");
    assert!(err.to_ascii_lowercase().contains("< link: </styles.css>; rel=preload; as=style"), "{err}");
    assert!(err.contains("< HTTP/1.1 200 OK"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "final");
    task.abort();
}

// RFC 9111 §5.2.2.3: with `must-understand`, a cache that understands the
// status may store the response and ignores `no-store`; one that does not
// understand the status must not store it.
#[tokio::test]
async fn must_understand_overrides_no_store_for_known_statuses_only() {
    let (e, o) = edge_and_origin("").await;
    let cc = "max-age=3600, no-store, must-understand";
    o.set("/mu-200", Script::ok("x").header("cache-control", cc));
    let (x1, x2, hits) = twice(&e, &o, "/mu-200").await;
    assert_eq!((x1.as_str(), x2.as_str(), hits), ("Miss", "Hit", 1), "a 200 is understood: stored");
    let c = client();
    o.set("/mu-599", Script::ok("x").status(599).header("cache-control", cc));
    for _ in 0..2 {
        let (s, x, _, _) = get(&c, &url(&e, "/mu-599"), &[]).await;
        assert_eq!(s, 599);
        assert_ne!(x, "Hit");
    }
    assert_eq!(o.hits("/mu-599"), 2, "an unknown status with must-understand is never stored");
    // Without must-understand, no-store still wins for a 200.
    o.set("/ns-200", Script::ok("x").header("cache-control", "max-age=3600, no-store"));
    let (_, x2, hits) = twice(&e, &o, "/ns-200").await;
    assert_eq!((x2.as_str(), hits), ("Miss", 2));
}

/// A path, the origin's fields, and how many origin requests two GETs make.
type SurrogateCase = (&'static str, &'static [(&'static str, &'static str)], usize);

// Surrogate-Control (W3C Edge Architecture note, as Fastly and Akamai read it):
// directives for surrogates replace Cache-Control here, except those aimed at
// another device (`;token`); `max-age=N+M` counts N.
#[tokio::test]
async fn surrogate_control_targets_the_edge() {
    let (e, o) = edge_and_origin("").await;
    let cases: &[SurrogateCase] = &[
        ("/sc-max", &[("surrogate-control", "max-age=3600")], 1),
        ("/sc-case", &[("surrogate-control", "MaX-aGe=3600")], 1),
        ("/sc-ext", &[("surrogate-control", "foobar, max-age=3600")], 1),
        ("/sc-esi", &[("surrogate-control", "content=\"ESI/1.0\", max-age=3600+600")], 1),
        ("/sc-over-cc", &[("cache-control", "max-age=0"), ("surrogate-control", "max-age=3600")], 1),
        ("/sc-over-expires", &[("surrogate-control", "max-age=3600"), ("expires", "0")], 1),
        ("/sc-zero", &[("cache-control", "max-age=3600"), ("surrogate-control", "max-age=0")], 2),
        ("/sc-no-store", &[("cache-control", "max-age=3600"), ("surrogate-control", "no-store")], 2),
        ("/sc-aged", &[("surrogate-control", "max-age=3600"), ("age", "7200")], 2),
        // Aimed at another device: Cache-Control decides.
        ("/sc-other", &[("cache-control", "no-store"), ("surrogate-control", "max-age=3600;not-for-you")], 2),
        // Aimed at this edge (the token it announces): wins over Cache-Control.
        ("/sc-me", &[("cache-control", "no-store"), ("surrogate-control", "max-age=10000;mediaedge")], 1),
        ("/sc-me-case", &[("cache-control", "no-store"), ("surrogate-control", "max-age=10000;MediaEdge")], 1),
        // ... and over the untargeted directives.
        ("/sc-me-first", &[("surrogate-control", "max-age=0, max-age=3600;mediaedge")], 1),
        ("/sc-me-zero", &[("surrogate-control", "max-age=3600, max-age=0;mediaedge")], 2),
        ("/sc-me-no-store", &[("cache-control", "max-age=3600"), ("surrogate-control", "no-store;mediaedge")], 2),
        // Only directives that say nothing on storing: Cache-Control decides.
        ("/sc-esi-only", &[("cache-control", "no-store"), ("surrogate-control", "content=\"ESI/1.0\"")], 2),
    ];
    for (path, headers, expected) in cases {
        let mut script = Script::ok("x").no_revalidate();
        for (k, v) in *headers {
            script = script.header(k, v);
        }
        o.set(path, script);
        let (_, x2, hits) = twice(&e, &o, path).await;
        assert_eq!(hits, *expected, "{path}: {headers:?} (second answer {x2})");
    }
    // The edge announces its device token to the origin.
    let seen = o.seen_for("/sc-max");
    let announced = seen[0].headers.get("surrogate-capability").and_then(|v| v.to_str().ok());
    assert_eq!(announced, Some("mediaedge=\"Surrogate/1.0\""));
}

// RFC 9111 §3 and §4.2.2: a response without explicit freshness is reused
// only when its status is heuristically cacheable (RFC 9110 §15.1); 502, 503
// and 504 are not, whatever their `Last-Modified` says. They are still shared
// with the requests collapsed on them (tests/origin_errors.rs).
#[tokio::test]
async fn gateway_errors_are_not_reused_without_freshness() {
    let (e, o) = edge_and_origin("").await;
    let modified = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(86_400));
    let c = client();
    for (status, reused) in [(502, false), (503, false), (504, false), (404, true), (501, true)] {
        let path = format!("/heuristic-{status}");
        o.set(&path, Script::ok("x").status(status).header("last-modified", &modified));
        let (s1, _, _, _) = get(&c, &url(&e, &path), &[]).await;
        let (s2, x2, _, _) = get(&c, &url(&e, &path), &[]).await;
        assert_eq!((s1, s2), (status, status));
        let expected = if reused { 1 } else { 2 };
        assert_eq!(o.hits(&path), expected, "{status}: second answer {x2}");
    }
}

// RFC 9111 §4.1 lets a cache normalise selecting fields it knows; language
// tags are case-insensitive (RFC 4647 §2). Their order is kept (an origin may
// weigh the first one most).
#[tokio::test]
async fn accept_language_variants_ignore_case() {
    let (e, o) = edge_and_origin("").await;
    o.set("/lang", Script::ok("x").header("cache-control", "max-age=5000").header("vary", "Accept-Language"));
    let c = client();
    let (_, x1, _, _) = get(&c, &url(&e, "/lang"), &[("accept-language", "en, de")]).await;
    let (_, x2, _, _) = get(&c, &url(&e, "/lang"), &[("accept-language", "eN,   De")]).await;
    assert_eq!((x1.as_str(), x2.as_str(), o.hits("/lang")), ("Miss", "Hit", 1));
    let (_, x3, _, _) = get(&c, &url(&e, "/lang"), &[("accept-language", "de, en")]).await;
    assert_ne!(x3, "Hit", "another order is another variant");
}
