//! The admin API over real HTTP, against a running edge with real origins:
//! every call and every error answers as docs/openapi.json says, changes apply
//! to the running edge at once, acknowledged changes survive a crash of the
//! real binary, and the token is generated (owner-only) when none is given.

mod common;
use common::openapi::OpenApi;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The admin API of one edge, checking every answer against the contract and
/// recording which documented operations answered with a success.
struct Api {
    client: reqwest::Client,
    base: String,
    spec: OpenApi,
    succeeded: Mutex<BTreeSet<(String, String)>>,
}

/// `/v1/distributions/{id}` with its `{...}` parts replaced by `args`, in order.
fn fill(template: &str, args: &[&str]) -> String {
    let mut out = String::new();
    let mut rest = template;
    let mut args = args.iter();
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("a closed template parameter") + open;
        out.push_str(&rest[..open]);
        out.push_str(args.next().expect("an argument for every template parameter"));
        rest = &rest[close + 1..];
    }
    assert!(args.next().is_none(), "more arguments than parameters in {template}");
    out.push_str(rest);
    out
}

impl Api {
    fn new(base: &str) -> Api {
        Api { client: client(), base: base.to_string(), spec: OpenApi::load(), succeeded: Mutex::new(BTreeSet::new()) }
    }

    /// Checks one answer against the contract (an undocumented path's answer
    /// against the `Error` schema), and records the operation when it succeeded.
    fn check(&self, method: &str, template: &str, status: u16, body: &Value) {
        let documented = self.spec.operations().iter().any(|(m, p)| p == template && m == method)
            || (status == 405 && self.spec.operations().iter().any(|(_, p)| p == template));
        let result = if documented {
            self.spec.validate_response(method, template, status, body)
        } else {
            self.spec.validate_schema("Error", body)
        };
        if let Err(e) = result {
            panic!("{method} {template} answered {status}, which the contract does not allow: {e}\nbody: {body:#}");
        }
        if (200..300).contains(&status) {
            self.succeeded.lock().unwrap().insert((method.to_string(), template.to_string()));
        }
    }

    /// A JSON call with the admin token; `query` is appended as is (`?a=b` or "").
    async fn call(
        &self,
        method: &str,
        template: &str,
        args: &[&str],
        query: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> (u16, http::HeaderMap, Value) {
        let url = format!("{}{}{query}", self.base, fill(template, args));
        let (status, h, json) = admin_call(&self.client, method, &url, body, headers).await;
        self.check(method, template, status, &json);
        (status, h, json)
    }

    async fn get(&self, template: &str, args: &[&str]) -> (u16, http::HeaderMap, Value) {
        self.call("GET", template, args, "", None, &[]).await
    }

    /// A call with a raw body and an optional token (`None`: no Authorization
    /// header); the answer is JSON (Null when empty) or, when `text`, a JSON string.
    #[allow(clippy::too_many_arguments)]
    async fn raw(
        &self,
        method: &str,
        template: &str,
        args: &[&str],
        body: Option<Vec<u8>>,
        token: Option<&str>,
        headers: &[(&str, &str)],
        text: bool,
    ) -> (u16, http::HeaderMap, Value) {
        let url = format!("{}{}", self.base, fill(template, args));
        let mut rb = self.client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), &url);
        if let Some(t) = token {
            rb = rb.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b);
        }
        let r = rb.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = r.status().as_u16();
        let h = r.headers().clone();
        let bytes = r.bytes().await.expect("admin body");
        let json = if text && status == 200 {
            Value::String(String::from_utf8(bytes.to_vec()).expect("UTF-8 text"))
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        self.check(method, template, status, &json);
        (status, h, json)
    }

    /// A text answer (`/metrics`, `/v1/config`) with the admin token.
    async fn text(&self, template: &str) -> (http::HeaderMap, String) {
        let (status, h, v) = self.raw("GET", template, &[], None, Some(ADMIN_TOKEN), &[], true).await;
        assert_eq!(status, 200, "GET {template}: {v}");
        (h, v.as_str().unwrap().to_string())
    }

    fn succeeded(&self) -> BTreeSet<(String, String)> {
        self.succeeded.lock().unwrap().clone()
    }
}

/// The error code and field of an error answer.
fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error body: {v}"))
}

fn field(v: &Value) -> Option<&str> {
    v["error"]["field"].as_str()
}

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// A distribution configuration as the API takes it.
fn dist(aliases: &[&str], origin: &str, comment: &str) -> Value {
    json!({
        "comment": comment,
        "aliases": aliases,
        "origins": [{ "id": "o", "url": origin, "read_timeout": "5s" }],
        "default_behavior": { "origin": "o" },
    })
}

/// One `[[distributions]]` table of a configuration file.
fn dist_toml(id: &str, alias: &str, origin: &str, comment: &str) -> String {
    format!(
        "[[distributions]]\nid = \"{id}\"\ncomment = \"{comment}\"\naliases = [\"{alias}\"]\n\n\
         [[distributions.origins]]\nid = \"o\"\nurl = \"{origin}\"\nread_timeout = \"5s\"\n\n\
         [distributions.default_behavior]\norigin = \"o\"\n\n"
    )
}

/// Polls `probe` until it returns true or `within` has passed.
async fn eventually<F, Fut>(within: Duration, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if probe().await {
            return;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GET through the edge for `host`: status and body.
async fn view(c: &reqwest::Client, e: &Controlled, host: &str, path: &str) -> (u16, String, bytes::Bytes) {
    let (s, x, _, b) = get(c, &e.url(path), &[("host", host)]).await;
    (s, x, b)
}

/// Waits until an invalidation is Completed.
async fn completed(api: &Api, dist_id: &str, inv: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (s, _, v) = api.get("/v1/distributions/{id}/invalidations/{inv_id}", &[dist_id, inv]).await;
        assert_eq!(s, 200, "{v}");
        if v["status"] == "Completed" {
            assert!(v["completed_time"].is_string(), "{v}");
            return v;
        }
        assert_eq!(v["status"], "InProgress", "{v}");
        assert!(Instant::now() < deadline, "invalidation {inv} still in progress: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The sum of `mediaedge_requests_total` for a distribution, and the Hit lines' sum.
fn requests_in_metrics(text: &str, id: &str) -> (u64, u64) {
    let prefix = format!("mediaedge_requests_total{{distribution=\"{id}\",");
    let (mut all, mut hits) = (0, 0);
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let (labels, n) = line.rsplit_once(' ').expect("a sample line");
        let n: u64 = n.parse().unwrap_or_else(|_| panic!("not a count: {line}"));
        all += n;
        if labels.contains("cache_result=\"Hit\"") {
            hits += n;
        }
    }
    (all, hits)
}

/// The generated domain of a distribution on the default edge domain.
fn created_domain(id: &str) -> String {
    mediaedge::config::domain_name_for(id, "edge.mediaedge.invalid")
}

fn today() -> String {
    mediaedge::state::utc_day(mediaedge::state::now_ms() / 1000)
}

// ---------------------------------------------------------------------------
// 1. Every call, validated against the contract
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_call_answers_as_the_contract_says() {
    let o = TestOrigin::start().await;
    for p in ["/a.ts", "/b.ts", "/x.ts"] {
        o.set(p, Script::ok(format!("segment {p}")).header("cache-control", "max-age=600"));
    }
    let state = TempDir::new("admin-tour");
    let e = controlled(&dist_toml("ETEST", "tour.test", &o.url(), "from the file"), state.path()).await;
    let api = Api::new(&e.admin);
    let c = client();

    // The document it serves is the file.
    let (s, _, served) = api.get("/openapi.json", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(&served, api.spec.document(), "GET /openapi.json is docs/openapi.json");

    // The list holds the distribution of the file.
    let (s, _, list) = api.get("/v1/distributions", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(list["quantity"], 1, "{list}");
    assert_eq!(list["items"][0]["id"], "ETEST");
    assert_eq!(list["items"][0]["status"], "Deployed");
    assert_eq!(list["items"][0]["origins"], json!(["o"]));
    assert_eq!(list["items"][0]["domain_name"], created_domain("ETEST"));

    // Create: generated id, ETag and Location.
    let body = dist(&["new.test"], &o.url(), "made by the API");
    let (s, h, created) = api.call("POST", "/v1/distributions", &[], "", Some(&body), &[]).await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.len() == 14 && id.starts_with('E'), "generated id {id}");
    let etag = created["etag"].as_str().unwrap().to_string();
    assert_eq!(header(&h, "etag"), format!("\"{etag}\""));
    assert_eq!(header(&h, "location"), format!("/v1/distributions/{id}"));
    assert_eq!(created["config"]["comment"], "made by the API");
    assert_eq!(created["config"]["id"], id.as_str());
    assert_eq!(created["status"], "Deployed");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["aliases"], json!(["new.test"]));

    // Read it back.
    let (s, h, got) = api.get("/v1/distributions/{id}", &[&id]).await;
    assert_eq!(s, 200);
    assert_eq!(header(&h, "etag"), format!("\"{etag}\""));
    assert_eq!(got["config"], created["config"]);
    let (_, _, list) = api.get("/v1/distributions", &[]).await;
    assert_eq!(list["quantity"], 2);
    let ids: Vec<&str> = list["items"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "the list is sorted by id");

    // Viewer traffic: a miss and a hit on the new one, a miss on the file's.
    assert_eq!(view(&c, &e, "new.test", "/a.ts").await.1, "Miss");
    let (s, x, b) = view(&c, &e, "new.test", "/a.ts").await;
    assert_eq!((s, x.as_str(), &b[..]), (200, "Hit", &b"segment /a.ts"[..]));
    assert_eq!(view(&c, &e, "new.test", "/b.ts").await.0, 200);
    assert_eq!(view(&c, &e, "tour.test", "/x.ts").await.0, 200);

    let (s, _, st) = api.get("/v1/distributions/{id}/stats", &[&id]).await;
    assert_eq!(s, 200);
    assert_eq!(st["distribution_id"], id.as_str());
    assert_eq!(st["requests"], 3, "{st}");
    assert_eq!(st["requests_by_result"]["Hit"], 1);
    assert_eq!(st["requests_by_result"]["Miss"], 2);
    assert_eq!(st["requests_by_status_class"]["2xx"], 3);
    assert_eq!(st["origin_requests"], 2);
    let (s, _, all) = api.get("/v1/stats", &[]).await;
    assert_eq!(s, 200);
    let ids: BTreeSet<&str> =
        all["distributions"].as_array().unwrap().iter().map(|d| d["distribution_id"].as_str().unwrap()).collect();
    assert_eq!(ids, BTreeSet::from(["ETEST", id.as_str()]));

    // Prometheus: the counts of the requests made above.
    let (h, metrics) = api.text("/metrics").await;
    assert!(header(&h, "content-type").starts_with("text/plain"), "{h:?}");
    assert_eq!(requests_in_metrics(&metrics, &id), (3, 1), "{metrics}");
    assert_eq!(requests_in_metrics(&metrics, "ETEST"), (1, 0));

    // Usage: today's requests (still in memory or already stored).
    let day = today();
    let deadline = Instant::now() + Duration::from_secs(2);
    let usage = loop {
        let (s, _, u) = api.get("/v1/usage", &[]).await;
        assert_eq!(s, 200, "{u}");
        let row = u["items"].as_array().unwrap().iter().find(|r| r["distribution_id"] == id.as_str()).cloned();
        if row.is_some_and(|r| r["http_requests"] == 3 && r["date"] == day.as_str()) {
            break u;
        }
        assert!(Instant::now() < deadline, "usage does not show the 3 requests: {u}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(usage["to"], day.as_str());
    assert_eq!(usage["from"].as_str().unwrap(), format!("{}01", &day[..8]));
    let q = format!("?distribution={id}&from={day}&to={day}");
    let (s, _, u) = api.call("GET", "/v1/usage", &[], &q, None, &[]).await;
    assert_eq!(s, 200);
    let items = u["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{u}");
    assert_eq!(items[0]["distribution_id"], id.as_str());
    assert_eq!(items[0]["http_requests"], 3);
    assert!(items[0]["data_transfer_out_to_viewers_bytes"].as_u64().unwrap() > 0);
    let (s, _, u) = api.call("GET", "/v1/usage", &[], "?from=2001-01-01&to=2001-01-31", None, &[]).await;
    assert_eq!(s, 200);
    assert_eq!((u["from"].as_str(), u["items"].as_array().map(Vec::len)), (Some("2001-01-01"), Some(0)));

    // Update: a new ETag and the new configuration.
    let mut changed = body.clone();
    changed["comment"] = json!("updated by the API");
    let quoted = format!("\"{etag}\"");
    let (s, h, updated) =
        api.call("PUT", "/v1/distributions/{id}", &[&id], "", Some(&changed), &[("if-match", &quoted)]).await;
    assert_eq!(s, 200, "{updated}");
    let etag2 = updated["etag"].as_str().unwrap().to_string();
    assert_ne!(etag2, etag);
    assert_eq!(header(&h, "etag"), format!("\"{etag2}\""));
    assert_eq!(updated["comment"], "updated by the API");
    assert_eq!(updated["config"]["comment"], "updated by the API");

    // Disable (without If-Match), enable (with a bare one).
    let (s, h, d) = api.call("POST", "/v1/distributions/{id}/disable", &[&id], "", None, &[]).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["enabled"], false);
    assert_eq!(d["config"]["enabled"], false);
    let etag3 = d["etag"].as_str().unwrap().to_string();
    assert_eq!(header(&h, "etag"), format!("\"{etag3}\""));
    let (s, _, en) = api.call("POST", "/v1/distributions/{id}/enable", &[&id], "", None, &[("if-match", &etag3)]).await;
    assert_eq!(s, 200, "{en}");
    assert_eq!(en["enabled"], true);
    assert_eq!(view(&c, &e, "new.test", "/a.ts").await.1, "Hit", "enable keeps what the cache holds");

    // Invalidate /a.ts: Location, then Completed, then a miss.
    let req = json!({ "paths": ["/a.ts"], "caller_reference": "tour-1" });
    let (s, h, inv) = api.call("POST", "/v1/distributions/{id}/invalidations", &[&id], "", Some(&req), &[]).await;
    assert_eq!(s, 201, "{inv}");
    let inv_id = inv["id"].as_str().unwrap().to_string();
    assert!(inv_id.starts_with('I'), "{inv_id}");
    assert_eq!(header(&h, "location"), format!("/v1/distributions/{id}/invalidations/{inv_id}"));
    assert_eq!(inv["paths"], json!(["/a.ts"]));
    assert_eq!(inv["distribution_id"], id.as_str());
    let done = completed(&api, &id, &inv_id).await;
    assert_eq!(done["caller_reference"], "tour-1");
    assert_eq!(view(&c, &e, "new.test", "/a.ts").await.1, "Miss", "the invalidated path is fetched again");
    assert_eq!(view(&c, &e, "new.test", "/b.ts").await.1, "Hit", "other paths stay cached");
    let (s, _, invs) = api.get("/v1/distributions/{id}/invalidations", &[&id]).await;
    assert_eq!(s, 200);
    assert_eq!(invs["quantity"], 1);
    assert_eq!(invs["items"][0]["id"], inv_id.as_str());
    let req2 = json!({ "paths": ["/b.ts", "/c/*"] });
    let (s, _, inv2) = api.call("POST", "/v1/distributions/{id}/invalidations", &[&id], "", Some(&req2), &[]).await;
    assert_eq!(s, 201, "{inv2}");
    let (s, _, invs) = api.call("GET", "/v1/distributions/{id}/invalidations", &[&id], "?max_items=1", None, &[]).await;
    assert_eq!(s, 200);
    assert_eq!(invs["quantity"], 1, "max_items=1: {invs}");
    assert_eq!(invs["items"][0]["id"], inv2["id"], "newest first");
    let (_, _, u) = api.call("GET", "/v1/usage", &[], &format!("?distribution={id}"), None, &[]).await;
    assert_eq!(u["items"][0]["invalidation_paths"], 3, "invalidation paths are billed: {u}");

    // The live configuration as a file.
    let (h, toml_text) = api.text("/v1/config").await;
    assert!(header(&h, "content-type").contains("toml"), "{h:?}");
    let table: toml::Table = toml::from_str(&toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
    let dists = table["distributions"].as_array().expect("distributions in the export");
    let exported: BTreeSet<&str> = dists.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(exported, BTreeSet::from(["ETEST", id.as_str()]));
    let mine = dists.iter().find(|d| d["id"].as_str() == Some(id.as_str())).unwrap();
    assert_eq!(mine["comment"].as_str(), Some("updated by the API"));
    let parsed = mediaedge::Config::parse(&toml_text, Path::new("exported.toml"))
        .unwrap_or_else(|e| panic!("the export is not a valid configuration: {e}\n{toml_text}"));
    assert_eq!(parsed.distributions.len(), 2);

    // Delete: disable first, then DELETE with the current ETag.
    let (_, _, d) = api.call("POST", "/v1/distributions/{id}/disable", &[&id], "", None, &[]).await;
    let tag = d["etag"].as_str().unwrap().to_string();
    let (s, _, gone) = api.call("DELETE", "/v1/distributions/{id}", &[&id], "", None, &[("if-match", &tag)]).await;
    assert_eq!((s, &gone), (204, &Value::Null));
    let (s, _, v) = api.get("/v1/distributions/{id}", &[&id]).await;
    assert_eq!((s, code(&v)), (404, "NoSuchDistribution"));
    let (_, _, list) = api.get("/v1/distributions", &[]).await;
    assert_eq!(list["quantity"], 1);

    // Every documented operation answered with a success above.
    let documented: BTreeSet<(String, String)> = api.spec.operations().into_iter().collect();
    let succeeded = api.succeeded();
    let missing: Vec<_> = documented.difference(&succeeded).collect();
    assert!(missing.is_empty(), "operations the suite does not exercise: {missing:?}");
    let undocumented: Vec<_> = succeeded.iter().filter(|op| !documented.contains(op)).collect();
    assert!(undocumented.is_empty(), "successful calls the contract does not list: {undocumented:?}");
}

// ---------------------------------------------------------------------------
// 2. Every error
// ---------------------------------------------------------------------------

#[tokio::test]
async fn tokens_are_required_on_every_route() {
    let o = TestOrigin::start().await;
    let state = TempDir::new("admin-auth");
    let e = controlled(&dist_toml("EAUTH", "auth.test", &o.url(), ""), state.path()).await;
    let api = Api::new(&e.admin);
    let routes: [(&str, &str, &[&str]); 7] = [
        ("GET", "/openapi.json", &[]),
        ("GET", "/metrics", &[]),
        ("GET", "/v1/distributions", &[]),
        ("POST", "/v1/distributions", &[]),
        ("GET", "/v1/distributions/{id}", &["EAUTH"]),
        ("PUT", "/v1/distributions/{id}", &["EAUTH"]),
        ("GET", "/v1/config", &[]),
    ];
    for (method, template, args) in routes {
        let body = (method != "GET").then(|| dist(&["x.test"], &o.url(), "").to_string().into_bytes());
        for token in [None, Some("not-the-admin-token-at-all"), Some("")] {
            let (s, h, v) = api.raw(method, template, args, body.clone(), token, &[("if-match", "*")], false).await;
            assert_eq!((s, code(&v)), (401, "Unauthorized"), "{method} {template} with {token:?}");
            assert!(header(&h, "www-authenticate").starts_with("Bearer"), "{method} {template}: {h:?}");
        }
        // Another scheme with the right token is not accepted either.
        let url = format!("{}{}", e.admin, fill(template, args));
        let r = api
            .client
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), &url)
            .header("authorization", format!("Basic {ADMIN_TOKEN}"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null);
        api.check(method, template, status, &v);
        assert_eq!((status, code(&v)), (401, "Unauthorized"), "{method} {template} with Basic");
    }
    // Nothing changed.
    let (s, _, v) = api.get("/v1/distributions/{id}", &["EAUTH"]).await;
    assert_eq!(s, 200);
    assert_eq!(v["comment"], "");
    let (_, _, list) = api.get("/v1/distributions", &[]).await;
    assert_eq!(list["quantity"], 1);
}

#[tokio::test]
async fn bad_requests_name_what_is_wrong() {
    let o = TestOrigin::start().await;
    let state = TempDir::new("admin-errors");
    let e = controlled(&dist_toml("EBASE", "base.test", &o.url(), "base"), state.path()).await;
    let api = Api::new(&e.admin);
    let post = |body: Vec<u8>| api.raw("POST", "/v1/distributions", &[], Some(body), Some(ADMIN_TOKEN), &[], false);

    // Not JSON, or no body.
    for bad in [&b"{\"origins\": ["[..], b"not json", b""] {
        let (s, _, v) = post(bad.to_vec()).await;
        assert_eq!((s, code(&v)), (400, "MalformedJson"), "{:?}", String::from_utf8_lossy(bad));
    }
    // JSON, but not an object.
    let (s, _, v) = post(b"[1, 2]".to_vec()).await;
    assert_eq!((s, code(&v)), (400, "InvalidArgument"));

    // A null field: refused, naming it.
    let mut with_null = dist(&["n.test"], &o.url(), "");
    with_null["comment"] = Value::Null;
    let (s, _, v) = api.call("POST", "/v1/distributions", &[], "", Some(&with_null), &[]).await;
    assert_eq!((s, code(&v), field(&v)), (400, "InvalidArgument", Some("comment")), "{v}");
    let mut nested_null = dist(&["n.test"], &o.url(), "");
    nested_null["origins"][0]["read_timeout"] = Value::Null;
    let (s, _, v) = api.call("POST", "/v1/distributions", &[], "", Some(&nested_null), &[]).await;
    assert_eq!((s, code(&v), field(&v)), (400, "InvalidArgument", Some("origins[0].read_timeout")), "{v}");

    // Validation errors name the field.
    let mut unknown_origin = dist(&["n.test"], &o.url(), "");
    unknown_origin["default_behavior"]["origin"] = json!("nope");
    let (s, _, v) = api.call("POST", "/v1/distributions", &[], "", Some(&unknown_origin), &[]).await;
    assert_eq!((s, code(&v), field(&v)), (400, "InvalidArgument", Some("default_behavior.origin")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("nope"), "{v}");
    let mut unknown_field = dist(&["n.test"], &o.url(), "");
    unknown_field["colour"] = json!("blue");
    let (s, _, v) = api.call("POST", "/v1/distributions", &[], "", Some(&unknown_field), &[]).await;
    assert_eq!((s, code(&v)), (400, "InvalidArgument"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("colour") || field(&v) == Some("colour"), "{v}");
    let no_origins = json!({ "default_behavior": { "origin": "o" } });
    let (s, _, v) = api.call("POST", "/v1/distributions", &[], "", Some(&no_origins), &[]).await;
    assert_eq!((s, code(&v)), (400, "InvalidArgument"), "{v}");
    let bad_id = json!({ "id": 7, "origins": [{ "id": "o", "url": o.url() }], "default_behavior": { "origin": "o" } });
    let (s, _, v) = api.call("POST", "/v1/distributions", &[], "", Some(&bad_id), &[]).await;
    assert_eq!((s, code(&v), field(&v)), (400, "InvalidArgument", Some("id")), "{v}");

    // Over 1 MiB.
    let mut big = dist(&["big.test"], &o.url(), "");
    big["comment"] = json!("x".repeat((1 << 20) + 1024));
    let (s, _, v) = post(big.to_string().into_bytes()).await;
    assert_eq!((s, code(&v)), (413, "PayloadTooLarge"), "{v}");

    // Usage: bad dates, unknown distribution.
    let (s, _, v) = api.call("GET", "/v1/usage", &[], "?from=yesterday", None, &[]).await;
    assert_eq!((s, code(&v), field(&v)), (400, "InvalidArgument", Some("from")), "{v}");
    let (s, _, v) = api.call("GET", "/v1/usage", &[], "?to=2026-1-1", None, &[]).await;
    assert_eq!((s, code(&v), field(&v)), (400, "InvalidArgument", Some("to")), "{v}");
    let (s, _, v) = api.call("GET", "/v1/usage", &[], "?distribution=ENOPE", None, &[]).await;
    assert_eq!((s, code(&v)), (404, "NoSuchDistribution"), "{v}");
    let (s, _, v) =
        api.call("GET", "/v1/distributions/{id}/invalidations", &["EBASE"], "?max_items=lots", None, &[]).await;
    assert_eq!((s, code(&v), field(&v)), (400, "InvalidArgument", Some("max_items")), "{v}");

    // Nothing was created by any of this.
    let (_, _, list) = api.get("/v1/distributions", &[]).await;
    assert_eq!(list["quantity"], 1, "{list}");
}

#[tokio::test]
async fn unknown_things_and_wrong_methods() {
    let o = TestOrigin::start().await;
    let state = TempDir::new("admin-404");
    let e = controlled(&dist_toml("EBASE", "base.test", &o.url(), "base"), state.path()).await;
    let api = Api::new(&e.admin);
    let body = dist(&["nope.test"], &o.url(), "");
    let inv = json!({ "paths": ["/a"] });
    let calls: [(&str, &str, &[&str], Option<&Value>); 10] = [
        ("GET", "/v1/distributions/{id}", &["ENOPE"], None),
        ("PUT", "/v1/distributions/{id}", &["ENOPE"], Some(&body)),
        ("DELETE", "/v1/distributions/{id}", &["ENOPE"], None),
        ("POST", "/v1/distributions/{id}/enable", &["ENOPE"], None),
        ("POST", "/v1/distributions/{id}/disable", &["ENOPE"], None),
        ("GET", "/v1/distributions/{id}/stats", &["ENOPE"], None),
        ("GET", "/v1/distributions/{id}/invalidations", &["ENOPE"], None),
        ("POST", "/v1/distributions/{id}/invalidations", &["ENOPE"], Some(&inv)),
        ("GET", "/v1/distributions/{id}/invalidations/{inv_id}", &["ENOPE", "INOPE"], None),
        ("GET", "/v1/distributions/{id}/invalidations/{inv_id}", &["ENOPE", "I1"], None),
    ];
    for (method, template, args, b) in calls {
        let (s, _, v) = api.call(method, template, args, "", b, &[("if-match", "EANY")]).await;
        assert_eq!((s, code(&v)), (404, "NoSuchDistribution"), "{method} {template}: {v}");
    }
    let (s, _, v) = api.get("/v1/distributions/{id}/invalidations/{inv_id}", &["EBASE", "INOPE"]).await;
    assert_eq!((s, code(&v)), (404, "NoSuchInvalidation"), "{v}");

    // Unknown routes.
    for path in
        ["/", "/v2/distributions", "/v1/distributions/EBASE/nothing", "/v1/distributions/EBASE/invalidations/I/x"]
    {
        let (s, _, v) = api.get(path, &[]).await;
        assert_eq!((s, code(&v)), (404, "NotFound"), "{path}: {v}");
    }

    // Wrong methods: 405 with Allow.
    let wrong: [(&str, &str, &[&str], &str); 8] = [
        ("PATCH", "/v1/distributions", &[], "GET, POST"),
        ("DELETE", "/v1/distributions", &[], "GET, POST"),
        ("POST", "/v1/distributions/{id}", &["EBASE"], "GET, PUT, DELETE"),
        ("GET", "/v1/distributions/{id}/enable", &["EBASE"], "POST"),
        ("DELETE", "/v1/distributions/{id}/invalidations", &["EBASE"], "GET, POST"),
        ("POST", "/v1/stats", &[], "GET"),
        ("PUT", "/metrics", &[], "GET"),
        ("POST", "/openapi.json", &[], "GET"),
    ];
    for (method, template, args, allow) in wrong {
        let (s, h, v) = api.call(method, template, args, "", None, &[]).await;
        assert_eq!((s, code(&v)), (405, "MethodNotAllowed"), "{method} {template}: {v}");
        assert_eq!(header(&h, "allow"), allow, "{method} {template}");
    }
    let (s, _, _) = api.get("/v1/distributions/{id}", &["EBASE"]).await;
    assert_eq!(s, 200, "EBASE is still there");
}

#[tokio::test]
async fn preconditions_guard_against_lost_updates() {
    let o = TestOrigin::start().await;
    let state = TempDir::new("admin-etag");
    let e = controlled(&dist_toml("EBASE", "base.test", &o.url(), "base"), state.path()).await;
    let api = Api::new(&e.admin);
    let (_, _, base) = api.get("/v1/distributions/{id}", &["EBASE"]).await;
    let etag = base["etag"].as_str().unwrap().to_string();
    let body = dist(&["base.test"], &o.url(), "changed");

    // No If-Match: 428, on PUT and DELETE.
    let (s, _, v) = api.call("PUT", "/v1/distributions/{id}", &["EBASE"], "", Some(&body), &[]).await;
    assert_eq!((s, code(&v)), (428, "PreconditionRequired"), "{v}");
    let (s, _, v) = api.call("DELETE", "/v1/distributions/{id}", &["EBASE"], "", None, &[]).await;
    assert_eq!((s, code(&v)), (428, "PreconditionRequired"), "{v}");
    // Not one ETag: 400.
    let (s, _, v) =
        api.call("PUT", "/v1/distributions/{id}", &["EBASE"], "", Some(&body), &[("if-match", "\"a\", \"b\"")]).await;
    assert_eq!((s, code(&v)), (400, "InvalidIfMatchVersion"), "{v}");
    // A wrong ETag: 412, on PUT, DELETE, enable and disable, and nothing changes.
    let wrong = [("if-match", "\"EWRONGWRONGWRO\"")];
    let (s, _, v) = api.call("PUT", "/v1/distributions/{id}", &["EBASE"], "", Some(&body), &wrong).await;
    assert_eq!((s, code(&v)), (412, "PreconditionFailed"), "{v}");
    let (s, _, v) = api.call("DELETE", "/v1/distributions/{id}", &["EBASE"], "", None, &wrong).await;
    assert_eq!((s, code(&v)), (412, "PreconditionFailed"), "{v}");
    for action in ["/v1/distributions/{id}/disable", "/v1/distributions/{id}/enable"] {
        let (s, _, v) = api.call("POST", action, &["EBASE"], "", None, &wrong).await;
        assert_eq!((s, code(&v)), (412, "PreconditionFailed"), "{action}: {v}");
    }
    let (_, h, now) = api.get("/v1/distributions/{id}", &["EBASE"]).await;
    assert_eq!(now["etag"], etag.as_str(), "unchanged");
    assert_eq!(header(&h, "etag"), format!("\"{etag}\""));
    assert_eq!(now["config"], base["config"], "unchanged");
    assert_eq!(now["enabled"], true);

    // The id in the body must be the path's.
    let mut other_id = body.clone();
    other_id["id"] = json!("EOTHER");
    let (s, _, v) =
        api.call("PUT", "/v1/distributions/{id}", &["EBASE"], "", Some(&other_id), &[("if-match", &etag)]).await;
    assert_eq!((s, code(&v), field(&v)), (400, "InvalidArgument", Some("id")), "{v}");

    // Two clients read, both write: the second is refused.
    let (a, b) = (Api::new(&e.admin), Api::new(&e.admin));
    let (_, _, read_a) = a.get("/v1/distributions/{id}", &["EBASE"]).await;
    let (_, _, read_b) = b.get("/v1/distributions/{id}", &["EBASE"]).await;
    let (tag_a, tag_b) = (format!("\"{}\"", read_a["etag"].as_str().unwrap()), read_b["etag"].as_str().unwrap());
    let first = dist(&["base.test"], &o.url(), "written by A");
    let second = dist(&["base.test"], &o.url(), "written by B");
    let (s, _, v) =
        a.call("PUT", "/v1/distributions/{id}", &["EBASE"], "", Some(&first), &[("if-match", &tag_a)]).await;
    assert_eq!(s, 200, "{v}");
    let (s, _, v) =
        b.call("PUT", "/v1/distributions/{id}", &["EBASE"], "", Some(&second), &[("if-match", tag_b)]).await;
    assert_eq!((s, code(&v)), (412, "PreconditionFailed"), "{v}");
    let (_, _, now) = api.get("/v1/distributions/{id}", &["EBASE"]).await;
    assert_eq!(now["comment"], "written by A", "B's write did not replace A's");

    // A stale ETag on delete, after another change.
    let stale = now["etag"].as_str().unwrap().to_string();
    let (s, _, d) = api.call("POST", "/v1/distributions/{id}/disable", &["EBASE"], "", None, &[]).await;
    assert_eq!(s, 200);
    let (s, _, v) = api.call("DELETE", "/v1/distributions/{id}", &["EBASE"], "", None, &[("if-match", &stale)]).await;
    assert_eq!((s, code(&v)), (412, "PreconditionFailed"), "{v}");
    // `*` matches any version.
    let (s, _, v) = api.call("POST", "/v1/distributions/{id}/enable", &["EBASE"], "", None, &[("if-match", "*")]).await;
    assert_eq!(s, 200, "{v}");
    assert_ne!(v["etag"], d["etag"]);
}

#[tokio::test]
async fn conflicts_are_409() {
    let o = TestOrigin::start().await;
    let state = TempDir::new("admin-409");
    let text = format!(
        "{}{}",
        dist_toml("EBASE", "base.test", &o.url(), "base"),
        dist_toml("EOTHER", "other.test", &o.url(), "other")
    );
    let e = controlled(&text, state.path()).await;
    let api = Api::new(&e.admin);

    // Delete while enabled.
    let (_, _, base) = api.get("/v1/distributions/{id}", &["EBASE"]).await;
    let etag = base["etag"].as_str().unwrap().to_string();
    let (s, _, v) = api.call("DELETE", "/v1/distributions/{id}", &["EBASE"], "", None, &[("if-match", &etag)]).await;
    assert_eq!((s, code(&v)), (409, "DistributionNotDisabled"), "{v}");
    let (s, _, _) = api.get("/v1/distributions/{id}", &["EBASE"]).await;
    assert_eq!(s, 200, "still there");

    // Create with an id that exists.
    let mut dup = dist(&["dup.test"], &o.url(), "");
    dup["id"] = json!("EBASE");
    let (s, _, v) = api.call("POST", "/v1/distributions", &[], "", Some(&dup), &[]).await;
    assert_eq!((s, code(&v)), (409, "DistributionAlreadyExists"), "{v}");

    // An alias another distribution has, on create and on update.
    let taken = dist(&["fresh.test", "other.test"], &o.url(), "");
    let (s, _, v) = api.call("POST", "/v1/distributions", &[], "", Some(&taken), &[]).await;
    assert_eq!((s, code(&v)), (409, "CNAMEAlreadyExists"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("other.test"), "{v}");
    let (s, _, v) =
        api.call("PUT", "/v1/distributions/{id}", &["EBASE"], "", Some(&taken), &[("if-match", &etag)]).await;
    assert_eq!((s, code(&v)), (409, "CNAMEAlreadyExists"), "{v}");
    let (_, _, now) = api.get("/v1/distributions/{id}", &["EBASE"]).await;
    assert_eq!(now["etag"], etag.as_str(), "a refused update changes nothing");
    let (_, _, list) = api.get("/v1/distributions", &[]).await;
    assert_eq!(list["quantity"], 2);
}

#[tokio::test]
async fn invalidation_requests_are_checked() {
    let o = TestOrigin::start().await;
    let state = TempDir::new("admin-inv");
    let e = controlled(&dist_toml("EBASE", "base.test", &o.url(), "base"), state.path()).await;
    let api = Api::new(&e.admin);
    let t = "/v1/distributions/{id}/invalidations";
    let api_ref = &api;
    let post = |body: Value| async move { api_ref.call("POST", t, &["EBASE"], "", Some(&body), &[]).await };

    let (s, _, v) = post(json!({ "paths": [] })).await;
    assert_eq!((s, code(&v), field(&v)), (400, "InvalidArgument", Some("paths")), "{v}");
    let (s, _, v) = post(json!({})).await;
    assert_eq!((s, code(&v), field(&v)), (400, "InvalidArgument", Some("paths")), "{v}");
    let (s, _, v) = post(json!({ "paths": ["/ok", "no-slash"] })).await;
    assert_eq!((s, code(&v), field(&v)), (400, "InvalidArgument", Some("paths[1]")), "{v}");
    let (s, _, v) = post(json!({ "paths": ["/a*b"] })).await;
    assert_eq!((s, code(&v), field(&v)), (400, "InvalidArgument", Some("paths[0]")), "{v}");
    let (s, _, v) = post(json!({ "paths": ["/a", "/b", 3] })).await;
    assert_eq!((s, code(&v), field(&v)), (400, "InvalidArgument", Some("paths[2]")), "{v}");
    let (s, _, v) = post(json!({ "paths": ["/a"], "extra": true })).await;
    assert_eq!((s, code(&v), field(&v)), (400, "InvalidArgument", Some("extra")), "{v}");
    let (s, _, v) = post(json!({ "paths": ["/a"], "caller_reference": "" })).await;
    assert_eq!((s, code(&v), field(&v)), (400, "InvalidArgument", Some("caller_reference")), "{v}");
    let many: Vec<String> = (0..3001).map(|i| format!("/p/{i}.ts")).collect();
    let (s, _, v) = post(json!({ "paths": many })).await;
    assert_eq!((s, code(&v), field(&v)), (400, "InvalidArgument", Some("paths")), "{v}");
    let (s, _, v) =
        api.raw("POST", t, &["EBASE"], Some(b"{\"paths\": [\"/a\"".to_vec()), Some(ADMIN_TOKEN), &[], false).await;
    assert_eq!((s, code(&v)), (400, "MalformedJson"), "{v}");
    let (_, _, list) = api.get(t, &["EBASE"]).await;
    assert_eq!(list["quantity"], 0, "no invalidation was recorded: {list}");

    // Wildcards: 16 in one call are over the limit of 15 in progress; 15 are not.
    let wild = |n: usize| (0..n).map(|i| format!("/w{i}/*")).collect::<Vec<_>>();
    let (s, _, v) = post(json!({ "paths": wild(16) })).await;
    assert_eq!((s, code(&v)), (400, "TooManyInvalidationsInProgress"), "{v}");
    let (s, _, v) = post(json!({ "paths": wild(15) })).await;
    assert_eq!(s, 201, "{v}");
    completed(&api, "EBASE", v["id"].as_str().unwrap()).await;
    // And 3,000 individual paths are accepted.
    let most: Vec<String> = (0..3000).map(|i| format!("/p/{i}.ts")).collect();
    let (s, _, v) = post(json!({ "paths": most })).await;
    assert_eq!(s, 201, "{}", code(&v));
    completed(&api, "EBASE", v["id"].as_str().unwrap()).await;

    // The caller reference makes the call idempotent.
    let first = json!({ "paths": ["/x.m3u8", "/y/*"], "caller_reference": "deploy-42" });
    let (s, _, a) = post(first.clone()).await;
    assert_eq!(s, 201, "{a}");
    let (s, _, b) = post(first.clone()).await;
    assert_eq!(s, 200, "a repeat: {b}");
    assert_eq!(a["id"], b["id"]);
    let (s, _, v) = post(json!({ "paths": ["/z.m3u8"], "caller_reference": "deploy-42" })).await;
    assert_eq!((s, code(&v)), (409, "InvalidationBatchAlreadyExists"), "{v}");
    completed(&api, "EBASE", a["id"].as_str().unwrap()).await;
    let (s, _, c) = post(first).await;
    assert_eq!((s, &c["id"]), (200, &a["id"]), "a repeat after completion is still the same one");
    let (_, _, list) = api.get(t, &["EBASE"]).await;
    assert_eq!(list["quantity"], 3, "{list}");
}

// ---------------------------------------------------------------------------
// 3. Changes apply to the running edge
// ---------------------------------------------------------------------------

#[tokio::test]
async fn changes_apply_to_the_running_edge_at_once() {
    let (o1, o2) = (TestOrigin::start().await, TestOrigin::start().await);
    for (o, name) in [(&o1, "one"), (&o2, "two")] {
        for p in ["/seg1.ts", "/seg2.ts"] {
            o.set(p, Script::ok(format!("{name} {p}")).header("cache-control", "max-age=600"));
        }
    }
    let state = TempDir::new("admin-live");
    let e = controlled(&dist_toml("EBASE", "base.test", &o1.url(), "base"), state.path()).await;
    let api = Api::new(&e.admin);
    let client = client();
    let (c, e) = (&client, &e);
    let second = Duration::from_secs(1);
    assert_eq!(view(c, e, "live.test", "/seg1.ts").await.0, 421, "no distribution serves live.test yet");

    // Created: it serves.
    let (s, _, d) =
        api.call("POST", "/v1/distributions", &[], "", Some(&dist(&["live.test"], &o1.url(), "")), &[]).await;
    assert_eq!(s, 201, "{d}");
    let id = d["id"].as_str().unwrap().to_string();
    let domain = d["domain_name"].as_str().unwrap().to_string();
    eventually(
        second,
        "the new distribution serves",
        || async move { view(c, e, "live.test", "/seg1.ts").await.0 == 200 },
    )
    .await;
    let (s, _, b) = view(c, e, "live.test", "/seg1.ts").await;
    assert_eq!((s, &b[..]), (200, &b"one /seg1.ts"[..]));
    assert_eq!(view(c, e, &domain, "/seg1.ts").await.0, 200, "its generated domain serves too");

    // Disabled: 403; enabled: 200.
    let (s, _, _) = api.call("POST", "/v1/distributions/{id}/disable", &[&id], "", None, &[]).await;
    assert_eq!(s, 200);
    eventually(second, "a disabled distribution answers 403", || async move {
        view(c, e, "live.test", "/seg1.ts").await.0 == 403
    })
    .await;
    let (s, _, d) = api.call("POST", "/v1/distributions/{id}/enable", &[&id], "", None, &[]).await;
    assert_eq!(s, 200);
    eventually(second, "an enabled distribution answers again", || async move {
        view(c, e, "live.test", "/seg1.ts").await.0 == 200
    })
    .await;

    // Another origin: a path not yet cached comes from it.
    let etag = d["etag"].as_str().unwrap().to_string();
    let moved = dist(&["live.test"], &o2.url(), "moved");
    let (s, _, d) = api.call("PUT", "/v1/distributions/{id}", &[&id], "", Some(&moved), &[("if-match", &etag)]).await;
    assert_eq!(s, 200, "{d}");
    eventually(second, "the new origin answers", || async move {
        let (s, _, b) = view(c, e, "live.test", "/seg2.ts").await;
        s == 200 && &b[..] == b"two /seg2.ts"
    })
    .await;
    assert_eq!(o2.hits("/seg2.ts"), 1);
    assert_eq!(o1.hits("/seg2.ts"), 0, "the old origin is not asked");

    // Disabled and deleted: no distribution serves the host.
    let (s, _, d) = api.call("POST", "/v1/distributions/{id}/disable", &[&id], "", None, &[]).await;
    assert_eq!(s, 200);
    let tag = d["etag"].as_str().unwrap().to_string();
    let (s, _, _) = api.call("DELETE", "/v1/distributions/{id}", &[&id], "", None, &[("if-match", &tag)]).await;
    assert_eq!(s, 204);
    eventually(second, "a deleted distribution's host answers 421", || async move {
        view(c, e, "live.test", "/seg1.ts").await.0 == 421
    })
    .await;
    assert_eq!(view(c, e, &domain, "/seg1.ts").await.0, 421);
    // The alias is free again.
    let (s, _, v) =
        api.call("POST", "/v1/distributions", &[], "", Some(&dist(&["live.test"], &o1.url(), "")), &[]).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(view(c, e, "base.test", "/seg1.ts").await.0, 200, "the file's distribution served throughout");
}

// ---------------------------------------------------------------------------
// 4 and 5. The real binary: crashes and the token file
// ---------------------------------------------------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The edge binary as a child process, killed when dropped.
struct ChildEdge {
    child: std::process::Child,
    admin: String,
    viewer: String,
    log: PathBuf,
}

impl Drop for ChildEdge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildEdge {
    /// `mediaedge serve` on free loopback ports; `token` goes in the
    /// environment (none: the variable is removed).
    fn spawn(config: &Path, state: &Path, token: Option<&str>, log: PathBuf) -> ChildEdge {
        let (listen, admin) = (free_port(), free_port());
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mediaedge"));
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{listen}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin}"))
            .arg("--state-dir")
            .arg(state)
            .env_remove("MEDIAEDGE_ADMIN_TOKEN")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        if let Some(t) = token {
            cmd.env("MEDIAEDGE_ADMIN_TOKEN", t);
        }
        let child = cmd.spawn().expect("the edge binary starts");
        ChildEdge {
            child,
            admin: format!("http://127.0.0.1:{admin}"),
            viewer: format!("http://127.0.0.1:{listen}"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the admin API answers (any status: 401 without a token).
    async fn ready(&mut self, c: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(r) = c.get(format!("{}/v1/distributions", self.admin)).send().await {
                if matches!(r.status().as_u16(), 200 | 401) {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the edge exited ({status}) before its admin API answered:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "the admin API did not answer within 15s:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILL (on unix): no shutdown code runs.
    fn crash(&mut self) {
        self.child.kill().expect("kill the edge");
        self.child.wait().expect("reap the edge");
    }
}

#[tokio::test]
async fn acknowledged_changes_survive_a_crash_and_the_file_seeds_without_overriding() {
    let o = TestOrigin::start().await;
    o.set("/seg.ts", Script::ok("segment").header("cache-control", "max-age=600"));
    let dir = TempDir::new("admin-crash");
    let state = dir.path().join("state");
    let file = dir.path().join("edge.toml");
    let write_file = |b_comment: &str| {
        let text = format!(
            "{}{}",
            dist_toml("EFILEA", "a.test", &o.url(), "file A"),
            dist_toml("EFILEB", "b.test", &o.url(), b_comment)
        );
        std::fs::write(&file, text).unwrap();
    };
    write_file("file B, first version");
    let c = client();

    // First run: create one, update another, invalidate; crash right after.
    let mut edge = ChildEdge::spawn(&file, &state, Some(ADMIN_TOKEN), dir.path().join("run1.log"));
    edge.ready(&c).await;
    let api = Api::new(&edge.admin);
    let (s, _, list) = api.get("/v1/distributions", &[]).await;
    assert_eq!((s, &list["quantity"]), (200, &json!(2)), "seeded from the file: {list}");
    let new_config = dist(&["new.test"], &o.url(), "created before the crash");
    let (s, _, created) = api.call("POST", "/v1/distributions", &[], "", Some(&new_config), &[]).await;
    assert_eq!(s, 201, "{created}");
    let new_id = created["id"].as_str().unwrap().to_string();
    let (_, _, b) = api.get("/v1/distributions/{id}", &["EFILEB"]).await;
    let b_etag = b["etag"].as_str().unwrap().to_string();
    let b_config = dist(&["b.test"], &o.url(), "updated before the crash");
    let (s, _, updated) =
        api.call("PUT", "/v1/distributions/{id}", &["EFILEB"], "", Some(&b_config), &[("if-match", &b_etag)]).await;
    assert_eq!(s, 200, "{updated}");
    let inv_body = json!({ "paths": ["/seg.ts", "/live/*"], "caller_reference": "before-crash" });
    let (s, _, inv) =
        api.call("POST", "/v1/distributions/{id}/invalidations", &["EFILEA"], "", Some(&inv_body), &[]).await;
    assert_eq!(s, 201, "{inv}");
    edge.crash();
    drop(edge);

    // Second run, same state: every acknowledged change is there.
    let mut edge = ChildEdge::spawn(&file, &state, Some(ADMIN_TOKEN), dir.path().join("run2.log"));
    edge.ready(&c).await;
    let api = Api::new(&edge.admin);
    let (s, _, got) = api.get("/v1/distributions/{id}", &[&new_id]).await;
    assert_eq!(s, 200, "the created distribution survived: {got}\n{}", edge.log());
    assert_eq!(got["config"], created["config"]);
    assert_eq!(got["etag"], created["etag"]);
    assert_eq!(got["status"], "Deployed");
    let (s, _, got_b) = api.get("/v1/distributions/{id}", &["EFILEB"]).await;
    assert_eq!(s, 200);
    assert_eq!(got_b["etag"], updated["etag"], "the update's ETag survived");
    assert_eq!(got_b["config"], updated["config"], "the API's version is kept over the unchanged file");
    assert_eq!(got_b["comment"], "updated before the crash");
    let inv_id = inv["id"].as_str().unwrap();
    let done = completed(&api, "EFILEA", inv_id).await;
    assert_eq!(done["paths"], inv["paths"]);
    assert_eq!(done["caller_reference"], "before-crash");
    let (s, _, again) =
        api.call("POST", "/v1/distributions/{id}/invalidations", &["EFILEA"], "", Some(&inv_body), &[]).await;
    assert_eq!((s, &again["id"]), (200, &inv["id"]), "the caller reference survived");
    let (s, _, _, body) = get(&c, &format!("{}/seg.ts", edge.viewer), &[("host", "new.test")]).await;
    assert_eq!((s, &body[..]), (200, &b"segment"[..]), "the created distribution serves after the restart");
    let (s, _, _, _) = get(&c, &format!("{}/seg.ts", edge.viewer), &[("host", "b.test")]).await;
    assert_eq!(s, 200);
    drop(edge);

    // The file's own new version of EFILEB wins over the API's.
    write_file("file B, second version");
    let mut edge = ChildEdge::spawn(&file, &state, Some(ADMIN_TOKEN), dir.path().join("run3.log"));
    edge.ready(&c).await;
    let api = Api::new(&edge.admin);
    let (_, _, b3) = api.get("/v1/distributions/{id}", &["EFILEB"]).await;
    assert_eq!(b3["comment"], "file B, second version", "{b3}\n{}", edge.log());
    assert_ne!(b3["etag"], updated["etag"]);
    let (_, _, a3) = api.get("/v1/distributions/{id}", &["EFILEA"]).await;
    assert_eq!(a3["comment"], "file A");
    let (s, _, n3) = api.get("/v1/distributions/{id}", &[&new_id]).await;
    assert_eq!((s, &n3["etag"]), (200, &created["etag"]), "the API's distribution is still there");
    let (_, _, list) = api.get("/v1/distributions", &[]).await;
    assert_eq!(list["quantity"], 3);
}

#[tokio::test]
async fn without_a_token_the_edge_writes_one_for_its_owner() {
    let o = TestOrigin::start().await;
    let dir = TempDir::new("admin-token");
    let state = dir.path().join("state");
    let file = dir.path().join("edge.toml");
    std::fs::write(&file, dist_toml("ETOK", "t.test", &o.url(), "")).unwrap();
    let c = client();

    let mut edge = ChildEdge::spawn(&file, &state, None, dir.path().join("run.log"));
    edge.ready(&c).await;
    let token_file = state.join("admin.token");
    let token = std::fs::read_to_string(&token_file).expect("the token file");
    let token = token.trim();
    assert!(token.len() >= 16, "a token of {} characters", token.len());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the token file is the owner's only: {mode:o}");
    }
    let api = Api::new(&edge.admin);
    let (s, _, v) = api.raw("GET", "/v1/distributions", &[], None, Some(token), &[], false).await;
    assert_eq!((s, &v["items"][0]["id"]), (200, &json!("ETOK")), "{v}");
    let (s, _, v) = api.raw("GET", "/v1/distributions", &[], None, Some(ADMIN_TOKEN), &[], false).await;
    assert_eq!((s, code(&v)), (401, "Unauthorized"));
    let (s, _, _) = api.raw("GET", "/v1/distributions", &[], None, None, &[], false).await;
    assert_eq!(s, 401);
    drop(edge);

    // An admin API on a non-loopback address without a token is refused.
    let open = dir.path().join("open.toml");
    std::fs::write(
        &open,
        format!("[admin]\nlisten = \"0.0.0.0:{}\"\n\n{}", free_port(), dist_toml("ETOK", "t.test", &o.url(), "")),
    )
    .unwrap();
    let check = |token: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mediaedge"));
        cmd.arg("check-config").arg(&open).env_remove("MEDIAEDGE_ADMIN_TOKEN");
        if let Some(t) = token {
            cmd.env("MEDIAEDGE_ADMIN_TOKEN", t);
        }
        cmd.output().expect("check-config runs")
    };
    let out = check(None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "check-config accepted an open admin API without a token");
    assert!(stderr.contains("admin.listen"), "the error names admin.listen: {stderr}");
    let out = check(Some(ADMIN_TOKEN));
    assert!(out.status.success(), "with a token it is valid: {}", String::from_utf8_lossy(&out.stderr));
}
