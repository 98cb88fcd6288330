//! What each admin command does: its API calls, and the distribution files
//! and quick forms it reads.

use super::*;
use percent_encoding::utf8_percent_encode;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Runs one admin command; returns what it prints on stdout.
pub async fn execute(cmd: AdminCommand) -> Result<String, Failure> {
    let api = Api::new(cmd.options())?;
    let json_out = cmd.options().json;
    match cmd {
        AdminCommand::Distribution { command, .. } => distribution(&api, command, json_out).await,
        AdminCommand::Invalidate { distribution, paths, caller_reference, wait, timeout, .. } => {
            let timeout = seconds(timeout)
                .ok_or_else(|| Failure::usage("--timeout must be a positive number of seconds (at most a year)"))?;
            let reference = caller_reference.unwrap_or_else(fresh_caller_reference);
            invalidate(&api, &distribution, paths, reference, wait.then_some(timeout), json_out).await
        }
        AdminCommand::Invalidation { command, .. } => match command {
            InvalidationCommand::List { distribution, max_items } => {
                let mut path = format!("/v1/distributions/{}/invalidations", seg(&distribution));
                if let Some(n) = max_items {
                    path.push_str(&format!("?max_items={n}"));
                }
                let body = api.get_json(&path).await?;
                Ok(if json_out { pretty(&body) } else { invalidation_table(&body) })
            }
            InvalidationCommand::Get { distribution, id } => {
                let path = format!("/v1/distributions/{}/invalidations/{}", seg(&distribution), seg(&id));
                let body = api.get_json(&path).await?;
                Ok(if json_out { pretty(&body) } else { invalidation_details(&body) })
            }
        },
        AdminCommand::Stats { distribution, .. } => {
            let body = match &distribution {
                Some(id) => api.get_json(&format!("/v1/distributions/{}/stats", seg(id))).await?,
                None => api.get_json("/v1/stats").await?,
            };
            if json_out {
                return Ok(pretty(&body));
            }
            let list = match distribution {
                Some(_) => vec![body],
                None => body.get("distributions").and_then(Value::as_array).cloned().unwrap_or_default(),
            };
            Ok(stats_table(&list))
        }
        AdminCommand::Usage { distribution, from, to, .. } => {
            let mut query = Vec::new();
            if let Some(d) = &distribution {
                query.push(format!("distribution={}", utf8_percent_encode(d, COMPONENT)));
            }
            for (name, value) in [("from", &from), ("to", &to)] {
                if let Some(v) = value {
                    if !is_date(v) {
                        return Err(Failure::usage(format!("--{name} {v:?} is not a date such as 2026-11-01")));
                    }
                    query.push(format!("{name}={v}"));
                }
            }
            let mut path = "/v1/usage".to_string();
            if !query.is_empty() {
                path.push('?');
                path.push_str(&query.join("&"));
            }
            let body = api.get_json(&path).await?;
            Ok(if json_out { pretty(&body) } else { usage_table(&body) })
        }
        AdminCommand::ExportConfig { output, .. } => {
            let reply = api.call(http::Method::GET, "/v1/config", None, None).await?;
            let text = String::from_utf8_lossy(&reply.body).into_owned();
            match output {
                Some(file) => {
                    std::fs::write(&file, text.as_bytes())
                        .map_err(|e| Failure::usage(format!("cannot write {}: {e}", file.display())))?;
                    Ok(String::new())
                }
                None => Ok(text),
            }
        }
    }
}

async fn distribution(api: &Api, command: DistributionCommand, json_out: bool) -> Result<String, Failure> {
    match command {
        DistributionCommand::List => {
            let body = api.get_json("/v1/distributions").await?;
            Ok(if json_out { pretty(&body) } else { distribution_table(&body) })
        }
        DistributionCommand::Get { id } => {
            let body = api.get_json(&dist_path(&id)).await?;
            Ok(if json_out { pretty(&body) } else { distribution_details(&body) })
        }
        DistributionCommand::Create(args) => {
            let config = match (&args.config, &args.origin) {
                (Some(file), _) => read_distribution_file(file)?,
                (None, Some(origin)) => {
                    quick_config(origin, &args.aliases, args.comment.as_deref(), args.id.as_deref())?
                }
                (None, None) => return Err(Failure::usage("give --config FILE or --origin URL|FOLDER")),
            };
            let reply = api.call(http::Method::POST, "/v1/distributions", Some(&config), None).await?;
            let body = reply.json()?;
            Ok(if json_out {
                pretty(&body)
            } else {
                key_values(&[
                    ("id", text(&body, "id")),
                    ("domain name", text(&body, "domain_name")),
                    ("etag", text(&body, "etag")),
                ])
            })
        }
        DistributionCommand::Update(args) => {
            let edits = Edits {
                origin: args.origin.clone(),
                comment: args.comment.clone(),
                add_aliases: args.add_alias.clone(),
                remove_aliases: args.remove_alias.clone(),
            };
            if args.config.is_none() && edits.is_empty() {
                return Err(Failure::usage(
                    "nothing to change: give --config FILE, or --origin, --comment, --add-alias or --remove-alias",
                ));
            }
            // Read the file before any call, so a bad file fails fast.
            let file_config = match &args.config {
                Some(file) => Some(read_distribution_file(file)?),
                None => None,
            };
            let current = api.get_json(&dist_path(&args.id)).await?;
            let etag = match &args.if_match {
                Some(e) => e.clone(),
                None => current_etag(&current)?,
            };
            let body = match file_config {
                Some(mut config) => {
                    let Some(obj) = config.as_object_mut() else {
                        return Err(Failure::usage("the file does not hold a distribution table"));
                    };
                    match obj.get("id") {
                        Some(Value::String(id)) if *id != args.id => {
                            return Err(Failure::usage(format!(
                                "the file is for distribution {id}, not {}; remove its id or use the right one",
                                args.id
                            )))
                        }
                        _ => {}
                    }
                    if !obj.contains_key("enabled") {
                        if let Some(enabled) = current.get("enabled").and_then(Value::as_bool) {
                            obj.insert("enabled".into(), Value::Bool(enabled));
                        }
                    }
                    config
                }
                None => {
                    let mut config =
                        current.get("config").cloned().filter(Value::is_object).ok_or_else(|| {
                            Failure::new(Exit::Refused, "the admin API's answer has no config object")
                        })?;
                    apply_edits(&mut config, &edits)?;
                    config
                }
            };
            let reply = api.call(http::Method::PUT, &dist_path(&args.id), Some(&body), Some(&etag)).await.map_err(
                |f| match f.api_code.as_deref() {
                    Some("PreconditionFailed") => f.hint(format!(
                        "the distribution changed since it was read; run `mediaedge distribution get {}` and retry",
                        args.id
                    )),
                    _ => f,
                },
            )?;
            let body = reply.json()?;
            Ok(if json_out {
                pretty(&body)
            } else {
                key_values(&[
                    ("id", text(&body, "id")),
                    ("domain name", text(&body, "domain_name")),
                    ("etag", text(&body, "etag")),
                ])
            })
        }
        DistributionCommand::Enable(args) => set_enabled(api, &args, true, json_out).await,
        DistributionCommand::Disable(args) => set_enabled(api, &args, false, json_out).await,
        DistributionCommand::Delete(args) => {
            let etag = match &args.if_match {
                Some(e) => e.clone(),
                None => current_etag(&api.get_json(&dist_path(&args.id)).await?)?,
            };
            api.call(http::Method::DELETE, &dist_path(&args.id), None, Some(&etag)).await.map_err(|f| {
                match f.api_code.as_deref() {
                    Some("DistributionNotDisabled") => {
                        f.hint(format!("disable it first: mediaedge distribution disable {}", args.id))
                    }
                    _ => f,
                }
            })?;
            Ok(if json_out { String::new() } else { format!("deleted {}\n", args.id) })
        }
    }
}

async fn set_enabled(api: &Api, args: &StateArgs, enabled: bool, json_out: bool) -> Result<String, Failure> {
    let action = if enabled { "enable" } else { "disable" };
    let path = format!("{}/{action}", dist_path(&args.id));
    let body = api.call(http::Method::POST, &path, None, args.if_match.as_deref()).await?.json()?;
    Ok(if json_out {
        pretty(&body)
    } else {
        key_values(&[("id", text(&body, "id")), ("enabled", yes_no(&body, "enabled")), ("etag", text(&body, "etag"))])
    })
}

async fn invalidate(
    api: &Api,
    distribution: &str,
    paths: Vec<String>,
    caller_reference: String,
    wait: Option<Duration>,
    json_out: bool,
) -> Result<String, Failure> {
    let path = format!("/v1/distributions/{}/invalidations", seg(distribution));
    let request = json!({ "paths": paths, "caller_reference": caller_reference });
    let reply = api.call(http::Method::POST, &path, Some(&request), None).await?;
    let repeat = reply.status == 200;
    let mut inv = reply.json()?;
    if let Some(timeout) = wait {
        let id = text(&inv, "id");
        let started = Instant::now();
        let deadline = started + timeout;
        let inv_path = format!("{path}/{}", seg(&id));
        if text(&inv, "status") != "Completed" && !json_out {
            eprintln!("waiting for invalidation {id} to complete...");
        }
        while text(&inv, "status") != "Completed" {
            let now = Instant::now();
            if now >= deadline {
                return Err(Failure::new(
                    Exit::WaitTimeout,
                    format!(
                        "invalidation {id} is still {} after {}s",
                        text(&inv, "status"),
                        timeout.as_secs_f64().round()
                    ),
                )
                .hint(format!("check on it with: mediaedge invalidation get --distribution {distribution} {id}")));
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
            inv = api.get_json(&inv_path).await?;
        }
    }
    if json_out {
        return Ok(pretty(&inv));
    }
    let mut out = key_values(&invalidation_fields(&inv));
    if repeat {
        out.push_str("(an earlier request with this caller reference: no new invalidation was made)\n");
    }
    Ok(out)
}

/// The ETag a distribution answer carries in its body.
pub(super) fn current_etag(distribution: &Value) -> Result<String, Failure> {
    distribution
        .get("etag")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Failure::new(Exit::Refused, "the admin API's answer has no etag"))
}

pub(super) fn dist_path(id: &str) -> String {
    format!("/v1/distributions/{}", seg(id))
}

/// A path segment, percent-encoded.
pub(super) fn seg(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// A caller reference unique enough for one user: the time and 32 random bits.
pub fn fresh_caller_reference() -> String {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("cli-{millis}-{:08x}", fastrand::u32(..))
}

/// A positive, finite number of seconds, at most a year.
pub(super) fn seconds(s: f64) -> Option<Duration> {
    (s.is_finite() && s > 0.0 && s <= 31_536_000.0).then(|| Duration::from_secs_f64(s))
}

/// `YYYY-MM-DD`.
pub fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && matches!(s[5..7].parse::<u32>(), Ok(1..=12))
        && matches!(s[8..10].parse::<u32>(), Ok(1..=31))
}

// ---------------------------------------------------------------------------
// Distribution files and the quick form

/// Reads a distribution from a file: JSON (`.json`) holding a
/// DistributionConfig, or TOML holding either one bare distribution table or
/// a configuration file with exactly one `[[distributions]]` entry (its other
/// tables are ignored). Paths in it are relative to the file (see
/// `absolutize_paths`).
pub fn read_distribution_file(path: &Path) -> Result<Value, Failure> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let mut config = if is_json {
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Failure::usage(format!("{}: not valid JSON: {e}", path.display())))?;
        if !v.is_object() {
            return Err(Failure::usage(format!("{}: expected a JSON object (a distribution)", path.display())));
        }
        v
    } else {
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| Failure::usage(format!("{}: not valid TOML: {e}", path.display())))?;
        match table.remove("distributions") {
            None => toml_to_json(toml::Value::Table(table)),
            Some(toml::Value::Array(mut list)) if list.len() == 1 && list[0].is_table() => toml_to_json(list.remove(0)),
            Some(toml::Value::Array(list)) => {
                return Err(Failure::usage(format!(
                    "{}: has {} [[distributions]] entries; give a file with exactly one",
                    path.display(),
                    list.len()
                )))
            }
            Some(_) => {
                return Err(Failure::usage(format!(
                    "{}: `distributions` must be an array of tables ([[distributions]])",
                    path.display()
                )))
            }
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
    let base = std::path::absolute(&base).unwrap_or(base);
    absolutize_paths(&mut config, &base);
    Ok(config)
}

/// Makes a distribution from a file stand on its own, as the edge does with
/// its configuration file: relative `origins[].folder` and `origins[].ca_file`
/// paths become absolute against `base` (the file's folder), and
/// `key_groups[].keys[].public_key` files that can be read here are inlined
/// as PEM text (so the edge need not see the file), others made absolute.
pub(super) fn absolutize_paths(config: &mut Value, base: &Path) {
    let absolute = |s: &str| -> String {
        let p = Path::new(s);
        if p.is_relative() {
            base.join(p).to_string_lossy().into_owned()
        } else {
            s.to_string()
        }
    };
    if let Some(origins) = config.get_mut("origins").and_then(Value::as_array_mut) {
        for o in origins {
            for field in ["folder", "ca_file"] {
                if let Some(Value::String(s)) = o.get_mut(field) {
                    if !s.is_empty() {
                        *s = absolute(s);
                    }
                }
            }
        }
    }
    if let Some(groups) = config.get_mut("key_groups").and_then(Value::as_array_mut) {
        for g in groups {
            if let Some(keys) = g.get_mut("keys").and_then(Value::as_array_mut) {
                for k in keys {
                    if let Some(Value::String(s)) = k.get_mut("public_key") {
                        if s.is_empty() || s.trim_start().starts_with("-----BEGIN") {
                            continue;
                        }
                        let path = absolute(s);
                        *s = match std::fs::read_to_string(&path) {
                            Ok(pem) if pem.trim_start().starts_with("-----BEGIN") => pem,
                            _ => path,
                        };
                    }
                }
            }
        }
    }
}

/// TOML to JSON (dates and times become strings).
pub fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect()),
    }
}

/// The origin entry of `--origin`: `url` for http(s):// URLs, else `folder`
/// (made absolute; it must exist).
pub(super) fn origin_location(origin: &str) -> Result<(&'static str, String), Failure> {
    let lower = origin.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(("url", origin.to_string()));
    }
    let path = Path::new(origin);
    if !path.is_dir() {
        return Err(Failure::usage(format!("--origin {origin:?} is neither an http:// or https:// URL nor a folder")));
    }
    let abs = std::path::absolute(path)
        .map_err(|e| Failure::usage(format!("--origin {origin:?}: cannot make the path absolute: {e}")))?;
    let abs = abs.to_str().ok_or_else(|| Failure::usage(format!("--origin {origin:?}: the path is not UTF-8")))?;
    Ok(("folder", abs.to_string()))
}

/// The DistributionConfig of `create --origin`: one origin `origin` behind the
/// default behavior.
pub fn quick_config(
    origin: &str,
    aliases: &[String],
    comment: Option<&str>,
    id: Option<&str>,
) -> Result<Value, Failure> {
    let (kind, location) = origin_location(origin)?;
    let mut origin_entry = Map::new();
    origin_entry.insert("id".into(), json!("origin"));
    origin_entry.insert(kind.into(), Value::String(location));
    let mut config = Map::new();
    if let Some(id) = id {
        config.insert("id".into(), json!(id));
    }
    if let Some(c) = comment {
        config.insert("comment".into(), json!(c));
    }
    config.insert("aliases".into(), json!(aliases));
    config.insert("origins".into(), Value::Array(vec![Value::Object(origin_entry)]));
    config.insert("default_behavior".into(), json!({ "origin": "origin" }));
    Ok(Value::Object(config))
}

/// The in-place edits of `distribution update`.
#[derive(Debug, Clone, Default)]
pub struct Edits {
    pub origin: Option<String>,
    pub comment: Option<String>,
    pub add_aliases: Vec<String>,
    pub remove_aliases: Vec<String>,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        self.origin.is_none() && self.comment.is_none() && self.add_aliases.is_empty() && self.remove_aliases.is_empty()
    }
}

/// Applies edits to a stored DistributionConfig.
pub fn apply_edits(config: &mut Value, edits: &Edits) -> Result<(), Failure> {
    let obj = config.as_object_mut().ok_or_else(|| Failure::usage("the configuration is not an object"))?;
    if let Some(origin) = &edits.origin {
        let (kind, location) = origin_location(origin)?;
        let origin_id = obj
            .get("default_behavior")
            .and_then(|b| b.get("origin"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Failure::new(Exit::Refused, "the stored configuration has no default_behavior.origin"))?;
        let entry = obj
            .get_mut("origins")
            .and_then(Value::as_array_mut)
            .and_then(|list| list.iter_mut().find(|o| o.get("id").and_then(Value::as_str) == Some(&origin_id)))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| {
                Failure::new(Exit::Refused, format!("the stored configuration has no origin {origin_id:?}"))
            })?;
        entry.remove("url");
        entry.remove("folder");
        entry.insert(kind.into(), Value::String(location));
    }
    if let Some(c) = &edits.comment {
        obj.insert("comment".into(), Value::String(c.clone()));
    }
    if !edits.add_aliases.is_empty() || !edits.remove_aliases.is_empty() {
        let mut aliases: Vec<String> = obj
            .get("aliases")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        for r in &edits.remove_aliases {
            let before = aliases.len();
            aliases.retain(|a| !a.eq_ignore_ascii_case(r));
            if aliases.len() == before {
                return Err(Failure::usage(format!("--remove-alias {r}: the distribution has no such alias")));
            }
        }
        for a in &edits.add_aliases {
            if !aliases.iter().any(|x| x.eq_ignore_ascii_case(a)) {
                aliases.push(a.clone());
            }
        }
        obj.insert("aliases".into(), json!(aliases));
    }
    Ok(())
}
