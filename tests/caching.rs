//! RFC 9111 behaviour of the cache, against a real origin over real sockets.

mod common;
use common::*;
use std::time::Duration;

#[tokio::test]
async fn miss_then_hit_with_one_origin_request() {
    let (e, o) = edge_and_origin("").await;
    o.set("/a.m3u8", Script::ok("#EXTM3U\n").header("content-type", "application/vnd.apple.mpegurl"));
    let c = client();
    let (s1, x1, h1, b1) = get(&c, &url(&e, "/a.m3u8"), &[]).await;
    let (s2, x2, h2, b2) = get(&c, &url(&e, "/a.m3u8"), &[]).await;
    assert_eq!((s1, x1.as_str(), s2, x2.as_str()), (200, "Miss", 200, "Hit"));
    assert_eq!((&b1[..], &b2[..]), (&b"#EXTM3U\n"[..], &b"#EXTM3U\n"[..]));
    assert_eq!(o.hits("/a.m3u8"), 1);
    assert!(h2.contains_key("age"), "a hit carries Age");
    assert!(h1.get("via").unwrap().to_str().unwrap().contains("mediaedge"));
    assert!(h2.contains_key("date"), "the stored Date is served");
    // The origin saw Via and X-Forwarded-For.
    let seen = &o.seen_for("/a.m3u8")[0];
    assert!(seen.headers.get("via").unwrap().to_str().unwrap().contains("mediaedge"));
    assert_eq!(seen.headers.get("x-forwarded-for").unwrap(), "127.0.0.1");
}

#[tokio::test]
async fn default_ttl_applies_when_the_origin_is_silent_and_max_ttl_clamps() {
    // Origin says nothing: stored for the default TTL (24 h), so a later request hits.
    let (e, o) = edge_and_origin("").await;
    o.set("/silent", Script::ok("x").no_revalidate());
    let c = client();
    get(&c, &url(&e, "/silent"), &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, x, h, _) = get(&c, &url(&e, "/silent"), &[]).await;
    assert_eq!(x, "Hit");
    assert!(h.get("age").unwrap().to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(o.hits("/silent"), 1);

    // max_ttl = 1s clamps the origin's max-age=3600.
    let (e, o) = edge_and_origin("max_ttl = 1").await;
    o.set("/long", Script::ok("x").header("cache-control", "max-age=3600").no_revalidate());
    get(&c, &url(&e, "/long"), &[]).await;
    assert_eq!(get(&c, &url(&e, "/long"), &[]).await.1, "Hit");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&c, &url(&e, "/long"), &[]).await.1, "Miss");
    assert_eq!(o.hits("/long"), 2);

    // min_ttl = 60 raises max-age=0.
    let (e, o) = edge_and_origin("min_ttl = 60\ndefault_ttl = 60").await;
    o.set("/short", Script::ok("x").header("cache-control", "max-age=0").no_revalidate());
    get(&c, &url(&e, "/short"), &[]).await;
    assert_eq!(get(&c, &url(&e, "/short"), &[]).await.1, "Hit");
    assert_eq!(o.hits("/short"), 1);
}

#[tokio::test]
async fn expiry_revalidates_with_validators_and_304_refreshes() {
    let (e, o) = edge_and_origin("").await;
    o.set(
        "/v",
        Script::ok("body-v1").header("cache-control", "max-age=1").header("etag", "\"v1\"").header("x-version", "1"),
    );
    let c = client();
    get(&c, &url(&e, "/v"), &[]).await;
    // A hit before expiry: the response head of hits on this stored head is made.
    let (_, x, h, _) = get(&c, &url(&e, "/v"), &[]).await;
    assert_eq!((x.as_str(), h.get("x-version").unwrap().to_str().unwrap()), ("Hit", "1"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The origin now answers 304 with a new header value.
    o.set("/v", Script::ok("").header("cache-control", "max-age=60").header("etag", "\"v1\"").header("x-version", "2"));
    let (s, x, h, b) = get(&c, &url(&e, "/v"), &[]).await;
    assert_eq!((s, x.as_str(), &b[..]), (200, "RefreshHit", &b"body-v1"[..]));
    assert_eq!(h.get("x-version").unwrap(), "2", "304 headers update the stored response");
    let seen = o.seen_for("/v");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].headers.get("if-none-match").unwrap(), "\"v1\"");
    // Fresh again for 60 s, and hits carry the refreshed head, not the one
    // made for hits before the 304.
    let (_, x, h, b) = get(&c, &url(&e, "/v"), &[]).await;
    assert_eq!((x.as_str(), h.get("x-version").unwrap().to_str().unwrap(), &b[..]), ("Hit", "2", &b"body-v1"[..]));
    assert_eq!(h.get("cache-control").unwrap(), "max-age=60");
    assert_eq!(o.hits("/v"), 2);
}

#[tokio::test]
async fn hits_carry_one_complete_head() {
    let (e, o) = edge_and_origin("").await;
    o.set(
        "/h.m3u8",
        Script::ok("#EXTM3U\n#EXT-X-ENDLIST\n")
            .header("content-type", "application/vnd.apple.mpegurl")
            .header("cache-control", "max-age=600")
            .header("via", "1.1 upstream"),
    );
    let c = client();
    let (_, x, miss, _) = get(&c, &url(&e, "/h.m3u8"), &[]).await;
    assert_eq!(x, "Miss");
    assert!(miss.get("age").is_none_or(|a| !a.is_empty()), "no empty Age on a miss");
    for _ in 0..2 {
        let (s, x, h, b) = get(&c, &url(&e, "/h.m3u8"), &[]).await;
        assert_eq!((s, x.as_str(), &b[..]), (200, "Hit", &b"#EXTM3U\n#EXT-X-ENDLIST\n"[..]));
        let via: Vec<_> = h.get_all("via").iter().map(|v| v.to_str().unwrap().to_string()).collect();
        assert_eq!(via.len(), 1, "one Via field: {via:?}");
        assert!(via[0].starts_with("1.1 upstream, 1.1 ") && via[0].ends_with("(mediaedge)"), "{via:?}");
        assert_eq!(h.get_all("x-cache").iter().count(), 1);
        assert_eq!(h.get_all("age").iter().count(), 1);
        assert!(h.get("age").unwrap().to_str().unwrap().parse::<u64>().is_ok());
        assert_eq!(h.get("content-length").unwrap(), &b.len().to_string());
        assert_eq!(h.get("accept-ranges").unwrap(), "bytes");
        assert_eq!(h.get("cache-control").unwrap(), "max-age=600");
    }
    // HEAD: the same head, no body.
    let r = c.head(url(&e, "/h.m3u8")).send().await.expect("head");
    assert_eq!(r.headers().get("content-length").unwrap(), "23");
    assert_eq!(r.headers().get("x-cache").unwrap(), "Hit from mediaedge");
    assert!(r.bytes().await.expect("body").is_empty());
    // A conditional or ranged request takes the full path and is still right.
    let (s, _, _, b) = get(&c, &url(&e, "/h.m3u8"), &[("range", "bytes=0-6")]).await;
    assert_eq!((s, &b[..]), (206, &b"#EXTM3U"[..]));
    assert_eq!(o.hits("/h.m3u8"), 1);
}

#[tokio::test]
async fn no_store_private_and_set_cookie_are_never_stored() {
    let (e, o) = edge_and_origin("").await;
    o.set("/ns", Script::ok("a").header("cache-control", "no-store"));
    o.set("/pv", Script::ok("b").header("cache-control", "private, max-age=60"));
    o.set("/sc", Script::ok("c").header("set-cookie", "id=1"));
    let c = client();
    for p in ["/ns", "/pv", "/sc"] {
        for _ in 0..3 {
            let (s, x, _, _) = get(&c, &url(&e, p), &[]).await;
            assert_eq!((s, x.as_str()), (200, "Miss"), "{p}");
        }
        assert_eq!(o.hits(p), 3, "{p}");
    }
}

#[tokio::test]
async fn no_cache_revalidates_every_time() {
    let (e, o) = edge_and_origin("").await;
    o.set("/nc", Script::ok("nc-body").header("cache-control", "no-cache").header("etag", "\"n\""));
    let c = client();
    assert_eq!(get(&c, &url(&e, "/nc"), &[]).await.1, "Miss");
    let (s, x, _, b) = get(&c, &url(&e, "/nc"), &[]).await;
    assert_eq!((s, x.as_str(), &b[..]), (200, "RefreshHit", &b"nc-body"[..]));
    assert_eq!(o.hits("/nc"), 2);
    assert_eq!(o.seen_for("/nc")[1].headers.get("if-none-match").unwrap(), "\"n\"");
}

#[tokio::test]
async fn s_maxage_and_cdn_cache_control_take_precedence() {
    let (e, o) = edge_and_origin("").await;
    // s-maxage=1 wins over max-age=3600 for a shared cache.
    o.set("/s", Script::ok("s").header("cache-control", "max-age=3600, s-maxage=1").no_revalidate());
    // CDN-Cache-Control: max-age=3600 wins over Cache-Control: no-store.
    o.set("/cdn", Script::ok("c").header("cache-control", "no-store").header("cdn-cache-control", "max-age=3600"));
    // CDN-Cache-Control: no-store wins over Cache-Control: max-age.
    o.set("/cdn-ns", Script::ok("c").header("cache-control", "max-age=3600").header("cdn-cache-control", "no-store"));
    let c = client();
    for p in ["/s", "/cdn", "/cdn-ns"] {
        get(&c, &url(&e, p), &[]).await;
    }
    assert_eq!(get(&c, &url(&e, "/cdn"), &[]).await.1, "Hit");
    assert_eq!(get(&c, &url(&e, "/cdn-ns"), &[]).await.1, "Miss");
    let (_, _, h, _) = get(&c, &url(&e, "/cdn"), &[]).await;
    assert_eq!(h.get("cache-control").unwrap(), "no-store", "viewers still see the origin's Cache-Control");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&c, &url(&e, "/s"), &[]).await.1, "Miss");
    assert_eq!(o.hits("/s"), 2);
}

#[tokio::test]
async fn expires_gives_freshness_and_invalid_expires_is_stale() {
    let (e, o) = edge_and_origin("").await;
    let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3600));
    o.set("/exp", Script::ok("e").header("expires", &later).no_revalidate());
    o.set("/exp0", Script::ok("e").header("expires", "0").no_revalidate());
    let c = client();
    get(&c, &url(&e, "/exp"), &[]).await;
    get(&c, &url(&e, "/exp0"), &[]).await;
    assert_eq!(get(&c, &url(&e, "/exp"), &[]).await.1, "Hit");
    assert_eq!(get(&c, &url(&e, "/exp0"), &[]).await.1, "Miss");
}

#[tokio::test]
async fn vary_selects_variants_and_vary_star_never_matches() {
    // The origin sees Accept-Language only when the behavior forwards it.
    let (e, o) = edge_and_origin("origin_request.headers = [\"accept-language\"]").await;
    o.set("/lang", Script::ok("hello").header("vary", "Accept-Language").header("cache-control", "max-age=60"));
    o.set("/star", Script::ok("x").header("vary", "*").header("cache-control", "max-age=60"));
    let c = client();
    assert_eq!(get(&c, &url(&e, "/lang"), &[("accept-language", "en")]).await.1, "Miss");
    assert_eq!(get(&c, &url(&e, "/lang"), &[("accept-language", "fr")]).await.1, "Miss");
    assert_eq!(get(&c, &url(&e, "/lang"), &[("accept-language", "en")]).await.1, "Hit");
    assert_eq!(get(&c, &url(&e, "/lang"), &[("accept-language", "fr")]).await.1, "Hit");
    assert_eq!(o.hits("/lang"), 2);
    let fr = &o.seen_for("/lang")[1];
    assert_eq!(fr.headers.get("accept-language").unwrap(), "fr");
    get(&c, &url(&e, "/star"), &[]).await;
    assert_eq!(get(&c, &url(&e, "/star"), &[]).await.1, "Miss");
    assert_eq!(o.hits("/star"), 2);
}

#[tokio::test]
async fn head_is_answered_from_a_cached_get() {
    let (e, o) = edge_and_origin("").await;
    o.set("/seg.ts", Script::ok(payload(5000, 1)).header("content-type", "video/mp2t"));
    let c = client();
    get(&c, &url(&e, "/seg.ts"), &[]).await;
    let r = c.head(url(&e, "/seg.ts")).send().await.unwrap();
    assert_eq!(x_cache(&r), "Hit");
    assert_eq!(r.headers().get("content-length").unwrap(), "5000");
    assert!(r.bytes().await.unwrap().is_empty());
    assert_eq!(o.hits("/seg.ts"), 1);
    // A HEAD miss fills with a GET, so the next GET hits.
    o.set("/h2.ts", Script::ok(payload(100, 2)));
    let r = c.head(url(&e, "/h2.ts")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), x_cache(&r).as_str()), (200, "Miss"));
    assert_eq!(o.seen_for("/h2.ts")[0].method, "GET");
    let (_, x, _, b) = get(&c, &url(&e, "/h2.ts"), &[]).await;
    assert_eq!((x.as_str(), b.len()), ("Hit", 100));
}

#[tokio::test]
async fn conditional_viewer_requests_get_304_from_the_cache() {
    let (e, o) = edge_and_origin("").await;
    let lm = "Sat, 01 Jan 2022 00:00:00 GMT";
    o.set("/c", Script::ok("cond").header("etag", "\"e1\"").header("last-modified", lm));
    let c = client();
    get(&c, &url(&e, "/c"), &[]).await;
    let (s, x, h, b) = get(&c, &url(&e, "/c"), &[("if-none-match", "\"e1\"")]).await;
    assert_eq!((s, x.as_str(), b.len()), (304, "Hit", 0));
    assert_eq!(h.get("etag").unwrap(), "\"e1\"");
    assert_eq!(get(&c, &url(&e, "/c"), &[("if-none-match", "W/\"e1\", \"zz\"")]).await.0, 304);
    assert_eq!(get(&c, &url(&e, "/c"), &[("if-none-match", "\"other\"")]).await.0, 200);
    assert_eq!(get(&c, &url(&e, "/c"), &[("if-modified-since", lm)]).await.0, 304);
    assert_eq!(get(&c, &url(&e, "/c"), &[("if-modified-since", "Fri, 01 Jan 2021 00:00:00 GMT")]).await.0, 200);
    assert_eq!(get(&c, &url(&e, "/c"), &[("if-match", "\"nope\"")]).await.0, 412);
    assert_eq!(o.hits("/c"), 1, "every conditional was answered from the cache");
}

#[tokio::test]
async fn successful_unsafe_requests_invalidate_the_target_uri() {
    let (e, o) =
        edge_and_origin("allowed_methods = [\"GET\", \"HEAD\", \"OPTIONS\", \"PUT\", \"POST\", \"PATCH\", \"DELETE\"]")
            .await;
    o.set("/doc", Script::ok("v1").header("cache-control", "max-age=600"));
    o.set("/other", Script::ok("o").header("cache-control", "max-age=600"));
    let c = client();
    get(&c, &url(&e, "/doc"), &[]).await;
    get(&c, &url(&e, "/other"), &[]).await;
    assert_eq!(get(&c, &url(&e, "/doc"), &[]).await.1, "Hit");
    // A failed POST invalidates nothing.
    o.set("/doc", Script::ok("no").status(500));
    let r = c.post(url(&e, "/doc")).body("x").send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(get(&c, &url(&e, "/doc"), &[]).await.1, "Hit");
    // A successful one does, and the body reached the origin.
    o.set("/doc", Script::ok("v2").header("cache-control", "max-age=600").header("content-location", "/other"));
    let r = c.post(url(&e, "/doc")).body("payload").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let posted = o.seen_for("/doc").into_iter().rfind(|s| s.method == "POST").unwrap();
    assert_eq!(&posted.body[..], b"payload");
    let (_, x, _, b) = get(&c, &url(&e, "/doc"), &[]).await;
    assert_eq!((x.as_str(), &b[..]), ("Miss", &b"v2"[..]));
    assert_eq!(
        get(&c, &url(&e, "/other"), &[]).await.1,
        "Miss",
        "Content-Location on the same host is invalidated too"
    );
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once_in_background() {
    let (e, o) = edge_and_origin("").await;
    o.set(
        "/live.m3u8",
        Script::ok("v1").header("cache-control", "max-age=1, stale-while-revalidate=30").no_revalidate(),
    );
    let c = client();
    get(&c, &url(&e, "/live.m3u8"), &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    o.set(
        "/live.m3u8",
        Script::ok("v2").header("cache-control", "max-age=60").delay(Duration::from_millis(300)).no_revalidate(),
    );
    // A burst of stale requests: all answered at once with v1, one origin request.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let c = c.clone();
        let u = url(&e, "/live.m3u8");
        tasks.push(tokio::spawn(async move { get(&c, &u, &[]).await }));
    }
    for t in tasks {
        let (s, x, _, b) = t.await.unwrap();
        assert_eq!((s, x.as_str(), &b[..]), (200, "Hit", &b"v1"[..]));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(o.hits("/live.m3u8"), 2, "exactly one background revalidation");
    let (_, x, _, b) = get(&c, &url(&e, "/live.m3u8"), &[]).await;
    assert_eq!((x.as_str(), &b[..]), ("Hit", &b"v2"[..]));
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_the_origin_fails() {
    let (e, o) = edge_and_origin("").await;
    o.set("/sie", Script::ok("good").header("cache-control", "max-age=1, stale-if-error=60").no_revalidate());
    o.set("/strict", Script::ok("good").header("cache-control", "max-age=1, must-revalidate").no_revalidate());
    let c = client();
    get(&c, &url(&e, "/sie"), &[]).await;
    get(&c, &url(&e, "/strict"), &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    o.set("/sie", Script::ok("bad").status(503));
    o.set("/strict", Script::ok("bad").status(503));
    let (s, _, _, b) = get(&c, &url(&e, "/sie"), &[]).await;
    assert_eq!((s, &b[..]), (200, &b"good"[..]));
    let (s, _, _, _) = get(&c, &url(&e, "/strict"), &[]).await;
    assert_eq!(s, 503, "must-revalidate forbids serving stale");
}

#[tokio::test]
async fn age_counts_the_origin_age_and_time_in_cache() {
    let (e, o) = edge_and_origin("").await;
    o.set("/aged", Script::ok("a").header("cache-control", "max-age=100").header("age", "30"));
    let c = client();
    let (_, _, h, _) = get(&c, &url(&e, "/aged"), &[]).await;
    assert!(h.get("age").unwrap().to_str().unwrap().parse::<u64>().unwrap() >= 30);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, x, h, _) = get(&c, &url(&e, "/aged"), &[]).await;
    assert_eq!(x, "Hit");
    assert!(h.get("age").unwrap().to_str().unwrap().parse::<u64>().unwrap() >= 31);
    // Older than its lifetime on arrival: stale at once.
    o.set("/old", Script::ok("a").header("cache-control", "max-age=10").header("age", "20").no_revalidate());
    get(&c, &url(&e, "/old"), &[]).await;
    assert_eq!(get(&c, &url(&e, "/old"), &[]).await.1, "Miss");
}

#[tokio::test]
async fn query_strings_in_the_key_follow_the_policy_and_only_keyed_ones_reach_the_origin() {
    let c = client();
    let (e, o) = edge_and_origin("").await;
    o.set("/q", Script::ok("q"));
    get(&c, &url(&e, "/q?a=1&token=x"), &[]).await;
    assert_eq!(get(&c, &url(&e, "/q?a=2"), &[]).await.1, "Hit", "none: queries are not in the key");
    assert_eq!(o.seen_for("/q")[0].uri, "/q", "an un-keyed query stays at the edge");

    let (e, o) = edge_and_origin("cache_key.query = [\"v\"]").await;
    o.set("/q", Script::ok("q"));
    get(&c, &url(&e, "/q?v=1&junk=1"), &[]).await;
    assert_eq!(get(&c, &url(&e, "/q?junk=2&v=1"), &[]).await.1, "Hit");
    assert_eq!(get(&c, &url(&e, "/q?v=2"), &[]).await.1, "Miss");
    assert_eq!(o.seen_for("/q")[0].uri, "/q?v=1");

    let (e, o) = edge_and_origin("cache_key.query = \"all\"").await;
    o.set("/q", Script::ok("q"));
    get(&c, &url(&e, "/q?a=1&b=2"), &[]).await;
    assert_eq!(get(&c, &url(&e, "/q?b=2&a=1"), &[]).await.1, "Hit", "order does not matter");
    assert_eq!(get(&c, &url(&e, "/q?a=1"), &[]).await.1, "Miss");
}

#[tokio::test]
async fn headers_and_cookies_in_the_key() {
    let c = client();
    let (e, o) = edge_and_origin("cache_key.headers = [\"x-device\"]\ncache_key.cookies = [\"tier\"]").await;
    o.set("/k", Script::ok("k"));
    get(&c, &url(&e, "/k"), &[("x-device", "tv"), ("cookie", "tier=gold; session=1")]).await;
    assert_eq!(get(&c, &url(&e, "/k"), &[("x-device", "tv"), ("cookie", "session=2; tier=gold")]).await.1, "Hit");
    assert_eq!(get(&c, &url(&e, "/k"), &[("x-device", "phone"), ("cookie", "tier=gold")]).await.1, "Miss");
    assert_eq!(get(&c, &url(&e, "/k"), &[("x-device", "tv"), ("cookie", "tier=free")]).await.1, "Miss");
    let first = &o.seen_for("/k")[0];
    assert_eq!(first.headers.get("cookie").unwrap(), "tier=gold", "only keyed cookies reach the origin");
}

#[tokio::test]
async fn authorization_requests_bypass_the_cache() {
    let (e, o) = edge_and_origin("").await;
    o.set("/auth", Script::ok("secret").header("cache-control", "max-age=60"));
    let c = client();
    get(&c, &url(&e, "/auth"), &[("authorization", "Bearer a")]).await;
    get(&c, &url(&e, "/auth"), &[("authorization", "Bearer b")]).await;
    assert_eq!(o.hits("/auth"), 2);
    assert_eq!(o.seen_for("/auth")[1].headers.get("authorization").unwrap(), "Bearer b");
}

#[tokio::test]
async fn error_statuses_are_cached_briefly() {
    let (e, o) = edge_and_origin("").await;
    o.set("/missing", Script::ok("nope").status(404));
    o.set("/broken", Script::ok("oops").status(500));
    let c = client();
    get(&c, &url(&e, "/missing"), &[]).await;
    assert_eq!(get(&c, &url(&e, "/missing"), &[]).await.1, "Hit");
    // A 500 too, for the error-caching TTL (10 s), as CloudFront does.
    get(&c, &url(&e, "/broken"), &[]).await;
    assert_eq!(get(&c, &url(&e, "/broken"), &[]).await.0, 500);
    assert_eq!(o.hits("/broken"), 1);
}

/// RFC 9110 §6.6.1 and RFC 9111 §4.3.4: a 304 without a Date refreshes the
/// stored response as of the time it arrived. Keeping the old Date would leave
/// the refreshed object as old as before, so every later request would go to
/// the origin again.
#[tokio::test]
async fn a_304_without_date_makes_the_object_fresh_again() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (full, revalidated) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (f, r) = (full.clone(), revalidated.clone());
    let origin = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { continue };
            let (f, r) = (f.clone(), r.clone());
            tokio::spawn(async move {
                while let Some(head) = read_request_head(&mut s).await {
                    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    let answer: &[u8] = if head.contains("if-none-match: \"v1\"") {
                        r.fetch_add(1, Ordering::SeqCst);
                        // No Date: the edge must take the arrival time as the new one.
                        b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ncache-control: max-age=600\r\n\r\n"
                    } else {
                        f.fetch_add(1, Ordering::SeqCst);
                        // Ten minutes old on arrival, so stale at once.
                        b"HTTP/1.1 200 OK\r\ndate: Thu, 01 Jan 2015 00:00:00 GMT\r\netag: \"v1\"\r\n\
                          cache-control: max-age=1\r\ncontent-length: 5\r\n\r\nhello"
                    };
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let e = edge(&config_for(&format!("http://{addr}"), "")).await;
    let c = client();
    let (s1, x1, _, b1) = get(&c, &url(&e, "/old"), &[]).await;
    assert_eq!((s1, x1.as_str(), &b1[..]), (200, "Miss", &b"hello"[..]));
    let (s2, x2, _, b2) = get(&c, &url(&e, "/old"), &[]).await;
    assert_eq!((s2, x2.as_str(), &b2[..]), (200, "RefreshHit", &b"hello"[..]));
    assert_eq!(revalidated.load(Ordering::SeqCst), 1);
    let (s3, x3, h3, b3) = get(&c, &url(&e, "/old"), &[]).await;
    assert_eq!((s3, x3.as_str(), &b3[..]), (200, "Hit", &b"hello"[..]), "{h3:?}");
    assert_eq!((full.load(Ordering::SeqCst), revalidated.load(Ordering::SeqCst)), (1, 1));
    origin.abort();
}
