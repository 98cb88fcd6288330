//! The hit path, in pieces and whole.
//!
//! - `lookup`: cache key + store lookup + variant selection + freshness check.
//! - `respond_headers`: what a hit adds on top (head clone, Age, body slice).
//! - `edge_hit/*`: a full request over loopback HTTP/1.1 keep-alive to an
//!   in-process edge, for a 1.5 KB playlist and a 1 MiB segment, next to a
//!   bare hyper server answering the same bytes from memory (the stack's
//!   ceiling), so the ratio says what the edge adds.
//! - `edge_hit/playlist_1500B/signed_edge`: the same playlist hit through a
//!   behavior with a trusted key group, by a canned signed URL (the signature
//!   is verified once, then found in the verified-signature cache). Needs
//!   the openssl command (which makes the key); fails without it.
//! - `signed_check/canned_hit`: the signature check alone for that URL, a
//!   repeat (found in the verified-signature cache, no RSA).
//!
//! Run: `cargo bench --bench hit_path`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::header::{HeaderMap, HeaderValue};
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use mediaedge::cache::body::StoredBody;
use mediaedge::cache::object::{Head, Object, Staleness};
use mediaedge::cache::policy::Freshness;
use mediaedge::cache::{key, Cache, Lookup};
use mediaedge::config::KeyGroup;
use mediaedge::config::{CacheConfig, CacheKeyPolicy};
use mediaedge::security::{sign, SignedRequest};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn object(len: usize) -> std::sync::Arc<Object> {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/vnd.apple.mpegurl"));
    headers.insert("etag", HeaderValue::from_static("\"abc\""));
    headers.insert("cache-control", HeaderValue::from_static("max-age=3600"));
    headers.insert("date", HeaderValue::from_static("Sat, 21 Nov 2026 00:00:00 GMT"));
    let head = Head {
        status: StatusCode::OK,
        headers,
        etag: Some(HeaderValue::from_static("\"abc\"")),
        last_modified: None,
        date: None,
        freshness: Freshness {
            ttl: Duration::from_secs(3600),
            initial_age: Duration::ZERO,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            must_revalidate: false,
            heuristic: false,
        },
        stored_at: Instant::now(),
        hit: Default::default(),
    };
    Object::new(
        head,
        StoredBody::complete(Bytes::from(vec![b'#'; len])),
        None,
        false,
        mediaedge::media::MediaKind::HlsPlaylist,
    )
}

fn pieces(c: &mut Criterion) {
    let cache = Cache::new(CacheConfig::default());
    let policy = CacheKeyPolicy::default();
    let req = HeaderMap::new();
    for i in 0..10_000 {
        let k = key::build("EBENCH", &format!("/live/{i}.m3u8"), None, &req, &policy);
        cache.insert(&k, object(1500), cache.epoch());
    }
    c.bench_function("lookup", |b| {
        b.iter(|| {
            let k = key::build("EBENCH", "/live/42.m3u8", Some("token=abc"), &req, &policy);
            match cache.lookup(&k, &req) {
                Lookup::Found(o) => o.head().staleness(Instant::now()) == Staleness::Fresh,
                _ => false,
            }
        })
    });
    let obj = object(1500);
    c.bench_function("respond_headers", |b| {
        b.iter(|| {
            let head = obj.head();
            let mut h = head.headers.clone();
            h.insert(http::header::AGE, HeaderValue::from(head.age(Instant::now()).as_secs()));
            let body = obj.body.bytes().map(|b| b.slice(..));
            (h, body)
        })
    });
}

/// A bare hyper server answering fixed bytes: the reference.
async fn bare_server(body: Bytes) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else { continue };
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(http::Response::new(Full::new(body))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// An edge over the same folder whose default behavior trusts a key group,
/// and a signed URL for the playlist on it (the key is made with openssl).
async fn signed_edge(folder: &std::path::Path) -> Option<(mediaedge::RunningEdge, String, Vec<Arc<KeyGroup>>)> {
    let key = folder.join("bench-key.pem");
    let public = folder.join("bench-key.pub.pem");
    let openssl =
        |args: &[&str]| std::process::Command::new("openssl").args(args).output().is_ok_and(|o| o.status.success());
    if !openssl(&["genrsa", "-out", key.to_str()?, "2048"])
        || !openssl(&["rsa", "-in", key.to_str()?, "-pubout", "-out", public.to_str()?])
    {
        // Never skipped silently: `cargo test --all-targets` runs this bench once.
        panic!("edge_hit/playlist_1500B/signed_edge needs the openssl command to make its key");
    }
    let text = r#"
[[distributions]]
id = "EBENCH"
aliases = ["*"]

[[distributions.origins]]
id = "o"
folder = "."

[[distributions.key_groups]]
id = "kg"
keys = [{ id = "KBENCH", public_key = "bench-key.pub.pem" }]

[distributions.default_behavior]
origin = "o"
trusted_key_groups = ["kg"]
"#;
    let mut cfg = mediaedge::Config::parse(text, &folder.join("bench.toml")).unwrap();
    cfg.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.server.access_log = None;
    let edge = mediaedge::start(&cfg).await.unwrap();
    let key = sign::PrivateKey::from_pem(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let expires = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 86_400;
    let url = format!("http://{}/p.m3u8", edge.addr());
    let url = sign::signed_url(&url, "KBENCH", &key, &sign::Terms::Canned { expires }).unwrap();
    Some((edge, url, cfg.distributions[0].default_behavior.trusted_key_groups.clone()))
}

fn end_to_end(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let folder = std::env::temp_dir().join(format!("mediaedge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    let playlist = Bytes::from(vec![b'#'; 1500]);
    let segment = Bytes::from(vec![7u8; 1 << 20]);
    std::fs::write(folder.join("p.m3u8"), &playlist).unwrap();
    std::fs::write(folder.join("s.m4s"), &segment).unwrap();
    let (edge, bare_p, bare_s, signed) = rt.block_on(async {
        let mut cfg =
            mediaedge::Config::single_origin(folder.to_str().unwrap(), Some("127.0.0.1:0".parse().unwrap())).unwrap();
        cfg.server.access_log = None;
        let edge = mediaedge::start(&cfg).await.unwrap();
        (edge, bare_server(playlist.clone()).await, bare_server(segment.clone()).await, signed_edge(&folder).await)
    });
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let fetch = |url: String| {
        let client = client.clone();
        let uri: http::Uri = url.parse().unwrap();
        move || {
            let client = client.clone();
            let uri = uri.clone();
            async move {
                let r = client.get(uri).await.unwrap();
                r.into_body().collect().await.unwrap().to_bytes().len()
            }
        }
    };
    let mut g = c.benchmark_group("edge_hit");
    let mut cases = vec![
        ("playlist_1500B/edge", format!("http://{}/p.m3u8", edge.addr()), playlist.len()),
        ("playlist_1500B/bare_hyper", format!("http://{bare_p}/p.m3u8"), playlist.len()),
    ];
    if let Some((_, url, _)) = &signed {
        cases.push(("playlist_1500B/signed_edge", url.clone(), playlist.len()));
    }
    cases.push(("segment_1MiB/edge", format!("http://{}/s.m4s", edge.addr()), segment.len()));
    cases.push(("segment_1MiB/bare_hyper", format!("http://{bare_s}/s.m4s"), segment.len()));
    for (name, url, len) in cases {
        let f = fetch(url);
        assert_eq!(rt.block_on(f()), len);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(name, |b| b.iter(|| rt.block_on(f())));
    }
    g.finish();
    if let Some((signed_edge, url, groups)) = &signed {
        let uri: http::Uri = url.parse().unwrap();
        let headers = HeaderMap::new();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let req = SignedRequest {
            scheme: "http",
            authority: uri.authority().unwrap().as_str(),
            path: uri.path(),
            query: uri.query(),
            headers: &headers,
            client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            now,
        };
        assert_eq!(signed_edge.edge.signed.check(groups, &req), Ok(()));
        c.bench_function("signed_check/canned_hit", |b| b.iter(|| signed_edge.edge.signed.check(groups, &req)));
    }
    drop(edge);
    drop(signed);
    let _ = std::fs::remove_dir_all(folder);
}

criterion_group!(benches, pieces, end_to_end);
criterion_main!(benches);
