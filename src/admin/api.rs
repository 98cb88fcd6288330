//! The admin API over HTTP: bearer-token check, routing, and one handler per
//! call. Handlers touch the store (each write is an fsync'd commit), so they
//! run on the blocking pool, never on the workers that serve viewers.
//! The contract is docs/openapi.json (served at `/openapi.json`).

use super::{views, ControlPlane, Failure};
use crate::cache::invalidate::PathMatch;
use crate::metrics::CacheGauges;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const OPENAPI: &str = include_str!("../../docs/openapi.json");
/// Largest request body accepted.
const MAX_BODY: usize = 1 << 20;
/// Most paths in one invalidation (CloudFront's limit).
const MAX_PATHS: usize = 3000;

type Reply = Response<Full<Bytes>>;

/// Counts an admin request in progress (see `ControlledEdge::suspend_storage`).
struct InFlight(Arc<ControlPlane>);

impl InFlight {
    fn new(c: &Arc<ControlPlane>) -> InFlight {
        c.in_flight.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        InFlight(c.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

pub(super) async fn serve(listener: TcpListener, control: Arc<ControlPlane>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    let mut accepting = control.accepting.subscribe();
    loop {
        // While an upgrade hands the state store over, new connections stay
        // in the listen queue, which the next process goes on from.
        if !*accepting.borrow_and_update() {
            if accepting.changed().await.is_err() {
                return;
            }
            continue;
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = accepting.changed() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("admin accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Connections hold the control plane weakly: once the edge is
        // dropped, its store closes even while clients keep connections open.
        let control = Arc::downgrade(&control);
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let control = control.upgrade();
                async move {
                    Ok::<_, Infallible>(match control {
                        Some(c) => {
                            let _busy = InFlight::new(&c);
                            handle(c.clone(), req).await
                        }
                        None => failure(&Failure::new(503, "ShuttingDown", "the edge is shutting down")),
                    })
                }
            });
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%peer, "admin connection ended: {e}");
            }
        });
    }
}

async fn handle(control: Arc<ControlPlane>, req: http::Request<Incoming>) -> Reply {
    if !authorized(req.headers(), control.token()) {
        let mut r =
            failure(&Failure::new(401, "Unauthorized", "a valid `Authorization: Bearer <token>` header is required"));
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"mediaedge-admin\""));
        return r;
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return failure(&Failure::new(413, "PayloadTooLarge", format!("the body is larger than {MAX_BODY} bytes")))
        }
        Err(e) => return failure(&Failure::new(400, "MalformedJson", format!("the body could not be read: {e}"))),
    };
    let c = control.clone();
    match tokio::task::spawn_blocking(move || route(&c, &parts, &body)).await {
        Ok(Ok(r)) => r,
        Ok(Err(f)) => failure(&f),
        Err(_) => failure(&Failure::new(500, "InternalError", "the request handler failed")),
    }
}

/// Constant-time comparison of the bearer token.
fn authorized(h: &http::HeaderMap, token: &str) -> bool {
    let Some(given) = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn route(c: &Arc<ControlPlane>, parts: &Parts, body: &[u8]) -> Result<Reply, Failure> {
    let path = parts.uri.path();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let m = &parts.method;
    match segs.as_slice() {
        ["openapi.json"] => {
            allow(m, &[Method::GET])?;
            Ok(text(StatusCode::OK, "application/json", OPENAPI.to_string()))
        }
        ["metrics"] => {
            allow(m, &[Method::GET])?;
            Ok(text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", metrics(c)))
        }
        ["v1", "config"] => {
            allow(m, &[Method::GET])?;
            Ok(text(StatusCode::OK, "application/toml", c.export()?))
        }
        ["v1", "stats"] => {
            allow(m, &[Method::GET])?;
            let all: Vec<Value> = c.records()?.iter().map(|r| stats(c, &r.id)).collect();
            Ok(reply(StatusCode::OK, &json!({ "distributions": all, "cache": cache_stats(c) })))
        }
        ["v1", "usage"] => {
            allow(m, &[Method::GET])?;
            usage(c, parts.uri.query())
        }
        ["v1", "distributions"] => match *m {
            Method::GET => {
                let items: Vec<Value> = c.records()?.iter().map(|r| views::summary(c, r)).collect();
                Ok(reply(StatusCode::OK, &json!({ "quantity": items.len(), "items": items })))
            }
            Method::POST => {
                let record = c.create(views::document(body)?)?;
                let mut r = with_etag(reply(StatusCode::CREATED, &views::distribution(c, &record)), &record.etag);
                set(&mut r, header::LOCATION, &format!("/v1/distributions/{}", record.id));
                Ok(r)
            }
            _ => Err(not_allowed(&[Method::GET, Method::POST])),
        },
        ["v1", "distributions", id] => match *m {
            Method::GET => {
                let record = c.record(id)?;
                Ok(with_etag(reply(StatusCode::OK, &views::distribution(c, &record)), &record.etag))
            }
            Method::PUT => {
                let tag = required_if_match(parts)?;
                let record = c.update(id, views::document(body)?, Some(&tag))?;
                Ok(with_etag(reply(StatusCode::OK, &views::distribution(c, &record)), &record.etag))
            }
            Method::DELETE => {
                let tag = required_if_match(parts)?;
                c.delete(id, Some(&tag))?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            _ => Err(not_allowed(&[Method::GET, Method::PUT, Method::DELETE])),
        },
        ["v1", "distributions", id, action @ ("enable" | "disable")] => {
            allow(m, &[Method::POST])?;
            let tag = if_match(parts)?;
            let record = c.set_enabled(id, *action == "enable", tag.as_deref())?;
            Ok(with_etag(reply(StatusCode::OK, &views::distribution(c, &record)), &record.etag))
        }
        ["v1", "distributions", id, "stats"] => {
            allow(m, &[Method::GET])?;
            c.record(id)?;
            Ok(reply(StatusCode::OK, &stats(c, id)))
        }
        ["v1", "distributions", id, "invalidations"] => match *m {
            Method::GET => {
                let max = query_param(parts.uri.query(), "max_items")
                    .map(|v| v.parse::<usize>().map_err(|_| bad_query("max_items", "must be a whole number")))
                    .transpose()?
                    .unwrap_or(100)
                    .clamp(1, 1000);
                let items: Vec<Value> = c.invalidations(id, max)?.iter().map(views::invalidation).collect();
                Ok(reply(StatusCode::OK, &json!({ "quantity": items.len(), "items": items })))
            }
            Method::POST => create_invalidation(c, id, body),
            _ => Err(not_allowed(&[Method::GET, Method::POST])),
        },
        ["v1", "distributions", id, "invalidations", inv] => {
            allow(m, &[Method::GET])?;
            Ok(reply(StatusCode::OK, &views::invalidation(&c.invalidation(id, inv)?)))
        }
        _ => Err(Failure::new(404, "NotFound", format!("no admin API call at {path} (see /openapi.json)"))),
    }
}

fn create_invalidation(c: &Arc<ControlPlane>, id: &str, body: &[u8]) -> Result<Reply, Failure> {
    let field = |f: String, msg: &str| Failure { field: Some(f), ..Failure::new(400, "InvalidArgument", msg) };
    let Value::Object(obj) = views::parse_json(body)? else {
        return Err(Failure::new(400, "InvalidArgument", "the body must be a JSON object with `paths`"));
    };
    if let Some(k) = obj.keys().find(|k| *k != "paths" && *k != "caller_reference") {
        return Err(field(k.clone(), "unknown field (expected `paths` and `caller_reference`)"));
    }
    let Some(Value::Array(list)) = obj.get("paths") else {
        return Err(field("paths".into(), "must be a list of paths such as [\"/index.m3u8\", \"/live/*\"]"));
    };
    if list.is_empty() || list.len() > MAX_PATHS {
        return Err(field("paths".into(), &format!("must hold 1 to {MAX_PATHS} paths (it holds {})", list.len())));
    }
    let mut paths = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let Some(p) = p.as_str() else {
            return Err(field(format!("paths[{i}]"), "must be a string"));
        };
        PathMatch::parse(p).map_err(|e| field(format!("paths[{i}]"), &e))?;
        paths.push(p.to_string());
    }
    let reference = match obj.get("caller_reference") {
        None => format!("{}-{:08x}", crate::state::now_ms(), fastrand::u32(..)),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => s.clone(),
        Some(_) => return Err(field("caller_reference".into(), "must be a string of 1 to 128 characters")),
    };
    let (record, created) = c.invalidate(id, &reference, &paths)?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let mut r = reply(status, &views::invalidation(&record));
    set(&mut r, header::LOCATION, &format!("/v1/distributions/{id}/invalidations/{}", record.id));
    Ok(r)
}

fn stats(c: &ControlPlane, id: &str) -> Value {
    let snapshot = match c.stats().get(id) {
        Some(s) => s.snapshot(),
        None => crate::metrics::DistStats::new(id).snapshot(),
    };
    let mut v = serde_json::to_value(snapshot).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        let groups: Vec<Value> = c
            .edge()
            .origin_groups(id)
            .into_iter()
            .map(|(group, members)| serde_json::json!({ "id": group, "members": members }))
            .collect();
        map.insert("origin_groups".into(), Value::Array(groups));
    }
    v
}

fn gauges(c: &ControlPlane) -> CacheGauges {
    let cache = &c.edge().cache;
    CacheGauges {
        bytes: cache.used_bytes(),
        entries: cache.entry_count() as u64,
        evictions: cache.evictions(),
        fills_in_flight: cache.fills_in_flight() as u64,
        capacity_bytes: cache.config.memory_bytes,
        disk: cache.disk().map(|d| d.snapshot()),
    }
}

fn metrics(c: &ControlPlane) -> String {
    crate::metrics::render_prometheus(c.stats(), &gauges(c))
}

/// The stats API's `cache` object: each tier's bytes, objects and hits
/// (hits per tier are counted only with a disk tier).
fn cache_stats(c: &ControlPlane) -> Value {
    let g = gauges(c);
    let mut memory = json!({
        "bytes": g.bytes,
        "capacity_bytes": g.capacity_bytes,
        "objects": g.entries,
        "evictions": g.evictions,
    });
    if let (Some(d), Some(m)) = (&g.disk, memory.as_object_mut()) {
        m.insert("lookups".into(), json!(d.memory_hits + d.lookups));
        m.insert("hits".into(), json!(d.memory_hits));
        m.insert("hit_ratio".into(), json!(d.memory_hit_ratio()));
    }
    json!({ "memory": memory, "disk": g.disk.map(|d| d.to_json()) })
}

/// `GET /v1/usage?distribution=&from=&to=` (default: this month to today, UTC).
fn usage(c: &ControlPlane, query: Option<&str>) -> Result<Reply, Failure> {
    let today = crate::state::utc_day(crate::state::now_ms() / 1000);
    let day = |name: &str, default: String| -> Result<String, Failure> {
        match query_param(query, name) {
            None => Ok(default),
            Some(d) if is_day(&d) => Ok(d),
            Some(_) => Err(bad_query(name, "must be a date such as 2026-11-22")),
        }
    };
    let from = day("from", format!("{}01", &today[..8]))?;
    let to = day("to", today.clone())?;
    let dist = query_param(query, "distribution");
    if let Some(d) = &dist {
        c.record(d)?;
    }
    let rows = c.usage(dist.as_deref(), &from, &to)?;
    let items: Vec<Value> = rows.iter().map(|(d, day, u)| views::usage_row(d, day, u)).collect();
    Ok(reply(StatusCode::OK, &json!({ "from": from, "to": to, "items": items })))
}

fn is_day(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (k == name).then(|| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
    })
}

fn bad_query(name: &str, msg: &str) -> Failure {
    Failure { field: Some(name.to_string()), ..Failure::new(400, "InvalidArgument", msg) }
}

/// The `If-Match` value, bare (quotes removed).
fn if_match(parts: &Parts) -> Result<Option<String>, Failure> {
    let Some(v) = parts.headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| Failure::new(400, "InvalidIfMatchVersion", "If-Match is not visible ASCII"))?.trim();
    let bare = v.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(v);
    if bare.is_empty() || bare.contains(['"', ',']) {
        return Err(Failure::new(400, "InvalidIfMatchVersion", "If-Match must name one ETag"));
    }
    Ok(Some(bare.to_string()))
}

fn required_if_match(parts: &Parts) -> Result<String, Failure> {
    if_match(parts)?.ok_or_else(|| {
        Failure::new(
            428,
            "PreconditionRequired",
            "send If-Match with the distribution's current ETag (from GET), so a concurrent change is not lost",
        )
    })
}

fn allow(m: &Method, allowed: &[Method]) -> Result<(), Failure> {
    if allowed.contains(m) {
        Ok(())
    } else {
        Err(not_allowed(allowed))
    }
}

fn not_allowed(allowed: &[Method]) -> Failure {
    let list: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    Failure::new(405, "MethodNotAllowed", format!("allowed here: {}", list.join(", ")))
}

fn reply(status: StatusCode, body: &Value) -> Reply {
    let mut text = serde_json::to_string_pretty(body).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn empty(status: StatusCode) -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

fn failure(f: &Failure) -> Reply {
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = reply(status, &views::error(f));
    if f.status == 405 {
        if let Some(list) = f.message.strip_prefix("allowed here: ") {
            set(&mut r, header::ALLOW, list);
        }
    }
    r
}

fn with_etag(mut r: Reply, etag: &str) -> Reply {
    set(&mut r, header::ETAG, &format!("\"{etag}\""));
    r
}

fn set(r: &mut Reply, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}
