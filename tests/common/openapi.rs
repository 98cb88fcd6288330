//! A small OpenAPI 3.0 response checker for the admin API tests: loads
//! `docs/openapi.json` and checks real response bodies against the schema of
//! the operation and status they answer.
//!
//! Schemas may use only `type`, `properties`, `required`, `items`, `enum`,
//! `$ref`, `additionalProperties`, `nullable`, `oneOf`, `format` and
//! `description`; any other keyword is reported as an error rather than
//! silently ignored. `format` is checked for `date` (YYYY-MM-DD) and
//! `date-time` (RFC 3339); other formats are not checked.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeSet;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

const SCHEMA_KEYWORDS: [&str; 11] = [
    "type",
    "properties",
    "required",
    "items",
    "enum",
    "$ref",
    "additionalProperties",
    "nullable",
    "oneOf",
    "format",
    "description",
];

/// Deepest `$ref` / nesting followed before giving up (a cycle).
const MAX_DEPTH: usize = 64;

/// The admin API's OpenAPI document.
pub struct OpenApi {
    doc: Value,
}

impl OpenApi {
    /// `docs/openapi.json` of this crate. Panics when it is missing or not JSON
    /// (a test-setup failure).
    pub fn load() -> OpenApi {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        OpenApi::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A document from its text.
    pub fn parse(text: &str) -> Result<OpenApi, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        if !doc.get("paths").is_some_and(Value::is_object) {
            return Err("no `paths` object".into());
        }
        Ok(OpenApi { doc })
    }

    /// The document itself (e.g. to compare with what the server serves).
    pub fn document(&self) -> &Value {
        &self.doc
    }

    /// Every operation: (upper-case method, path template), sorted by path then method.
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(paths) = self.doc.get("paths").and_then(Value::as_object) {
            for (path, item) in paths {
                for m in METHODS {
                    if item.get(m).is_some() {
                        out.push((m.to_ascii_uppercase(), path.clone()));
                    }
                }
            }
        }
        out.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        out
    }

    /// The statuses an operation documents (e.g. `["200", "401", "404", "500"]`).
    pub fn statuses(&self, method: &str, path_template: &str) -> Result<Vec<String>, String> {
        let op = self.operation(method, path_template)?;
        Ok(op.get("responses").and_then(Value::as_object).map(|r| r.keys().cloned().collect()).unwrap_or_default())
    }

    /// Checks `body` against the schema the document gives for this
    /// operation's `status` response (falling back to `4XX`/`5XX`, then
    /// `default`). The body is the parsed JSON for JSON responses, a JSON
    /// string holding the text for other media types (`application/toml`,
    /// `text/plain`), and `null` for responses without content (204).
    ///
    /// A method the path does not document answered with 405 is checked
    /// against the `Error` schema: that is the one response such requests get.
    pub fn validate_response(
        &self,
        method: &str,
        path_template: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), String> {
        let here = format!("{} {} {status}", method.to_ascii_uppercase(), path_template);
        let op = match self.operation(method, path_template) {
            Ok(op) => op,
            Err(_) if status == 405 && self.path_item(path_template).is_ok() => {
                return self
                    .check(&serde_json::json!({ "$ref": "#/components/schemas/Error" }), body, "$", 0)
                    .map_err(|e| format!("{here}: {e}"));
            }
            Err(e) => return Err(e),
        };
        let responses = op.get("responses").and_then(Value::as_object).ok_or(format!("{here}: no responses"))?;
        let code = status.to_string();
        let range = format!("{}XX", status / 100);
        let response =
            responses.get(&code).or_else(|| responses.get(&range)).or_else(|| responses.get("default")).ok_or_else(
                || {
                    format!(
                        "{here}: status {status} is not documented (documented: {})",
                        responses.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                },
            )?;
        let response = self.resolve(response, 0).map_err(|e| format!("{here}: {e}"))?;
        let content = response.get("content").and_then(Value::as_object);
        let Some(content) = content.filter(|c| !c.is_empty()) else {
            return match body {
                Value::Null => Ok(()),
                Value::String(s) if s.is_empty() => Ok(()),
                other => Err(format!("{here}: the document gives no content, but the body is {}", short(other))),
            };
        };
        let media = content
            .get("application/json")
            .map(|m| ("application/json", m))
            .or_else(|| content.iter().next().map(|(k, v)| (k.as_str(), v)))
            .ok_or_else(|| format!("{here}: no media type"))?;
        if media.0 != "application/json" && !body.is_string() {
            return Err(format!("{here}: the {} body is passed as a JSON string, got {}", media.0, kind(body)));
        }
        let Some(schema) = media.1.get("schema") else {
            return Ok(());
        };
        self.check(schema, body, "$", 0).map_err(|e| format!("{here}: {e}"))
    }

    /// Checks `value` against a named schema of `components/schemas`.
    pub fn validate_schema(&self, name: &str, value: &Value) -> Result<(), String> {
        let schema = serde_json::json!({ "$ref": format!("#/components/schemas/{name}") });
        self.check(&schema, value, "$", 0).map_err(|e| format!("schema {name}: {e}"))
    }

    fn path_item(&self, path_template: &str) -> Result<&Value, String> {
        self.doc
            .get("paths")
            .and_then(|p| p.get(path_template))
            .ok_or_else(|| format!("the document has no path {path_template}"))
    }

    fn operation(&self, method: &str, path_template: &str) -> Result<&Value, String> {
        let item = self.path_item(path_template)?;
        item.get(method.to_ascii_lowercase())
            .ok_or_else(|| format!("the document has no {} {path_template}", method.to_ascii_uppercase()))
    }

    /// Follows `$ref` (local references only) until an object without one.
    fn resolve<'a>(&'a self, mut v: &'a Value, depth: usize) -> Result<&'a Value, String> {
        let mut hops = depth;
        while let Some(r) = v.get("$ref") {
            let r = r.as_str().ok_or("a $ref that is not a string")?;
            let pointer = r.strip_prefix('#').ok_or_else(|| format!("only local references are supported: {r}"))?;
            v = self.doc.pointer(pointer).ok_or_else(|| format!("{r} does not exist in the document"))?;
            hops += 1;
            if hops > MAX_DEPTH {
                return Err(format!("$ref cycle at {r}"));
            }
        }
        Ok(v)
    }

    fn check(&self, schema: &Value, v: &Value, at: &str, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("{at}: schema nested too deeply"));
        }
        let schema = self.resolve(schema, depth)?;
        let Some(s) = schema.as_object() else {
            return match schema {
                Value::Bool(true) => Ok(()),
                Value::Bool(false) => Err(format!("{at}: not allowed here")),
                other => Err(format!("{at}: the schema is not an object: {other}")),
            };
        };
        if let Some(k) = s.keys().find(|k| !SCHEMA_KEYWORDS.contains(&k.as_str())) {
            return Err(format!("{at}: the schema uses `{k}`, which this checker does not support"));
        }
        if v.is_null() {
            // Null passes `nullable: true`, and a schema that constrains nothing.
            let nullable = s.get("nullable").and_then(Value::as_bool) == Some(true);
            let unconstrained = s.keys().all(|k| k == "description");
            return if nullable || unconstrained {
                Ok(())
            } else {
                Err(format!("{at}: null where the schema does not allow it{}", describe(s)))
            };
        }
        if let Some(branches) = s.get("oneOf") {
            let branches = branches.as_array().ok_or_else(|| format!("{at}: oneOf is not an array"))?;
            let mut failures = Vec::new();
            let mut matched = 0;
            for (i, b) in branches.iter().enumerate() {
                match self.check(b, v, at, depth + 1) {
                    Ok(()) => matched += 1,
                    Err(e) => failures.push(format!("[{i}] {e}")),
                }
            }
            match matched {
                1 => {}
                0 => return Err(format!("{at}: matches no branch of oneOf: {}", failures.join("; "))),
                n => return Err(format!("{at}: matches {n} branches of oneOf (exactly one must match)")),
            }
        }
        if let Some(t) = s.get("type") {
            let t = t.as_str().ok_or_else(|| format!("{at}: type is not a string"))?;
            let ok = match t {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "boolean" => v.is_boolean(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                other => return Err(format!("{at}: unknown type {other:?} in the schema")),
            };
            if !ok {
                return Err(format!("{at}: expected {t}, got {}", short(v)));
            }
        }
        if let Some(allowed) = s.get("enum") {
            let allowed = allowed.as_array().ok_or_else(|| format!("{at}: enum is not an array"))?;
            if !allowed.contains(v) {
                let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
                return Err(format!("{at}: {} is not one of {}", short(v), list.join(", ")));
            }
        }
        if let (Some(f), Some(text)) = (s.get("format").and_then(Value::as_str), v.as_str()) {
            let ok = match f {
                "date" => is_date(text),
                "date-time" => is_date_time(text),
                _ => true,
            };
            if !ok {
                return Err(format!("{at}: {text:?} is not a {f}"));
            }
        }
        if let Some(items) = s.get("items") {
            if let Some(list) = v.as_array() {
                for (i, item) in list.iter().enumerate() {
                    self.check(items, item, &format!("{at}[{i}]"), depth + 1)?;
                }
            }
        }
        if let Some(obj) = v.as_object() {
            let props = s.get("properties").and_then(Value::as_object);
            if let Some(required) = s.get("required") {
                let required = required.as_array().ok_or_else(|| format!("{at}: required is not an array"))?;
                for r in required {
                    let name = r.as_str().ok_or_else(|| format!("{at}: a required name is not a string"))?;
                    if !obj.contains_key(name) {
                        return Err(format!("{at}: the required property `{name}` is missing"));
                    }
                }
            }
            let mut extra = BTreeSet::new();
            for (k, value) in obj {
                let path = format!("{at}.{k}");
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => self.check(ps, value, &path, depth + 1)?,
                    None => match s.get("additionalProperties") {
                        None | Some(Value::Bool(true)) => {}
                        Some(Value::Bool(false)) => {
                            extra.insert(k.clone());
                        }
                        Some(ap) => self.check(ap, value, &path, depth + 1)?,
                    },
                }
            }
            if !extra.is_empty() {
                let known: Vec<&str> = props.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
                return Err(format!(
                    "{at}: properties the schema does not allow: {} (allowed: {})",
                    extra.into_iter().collect::<Vec<_>>().join(", "),
                    known.join(", ")
                ));
            }
        }
        Ok(())
    }
}

fn describe(s: &serde_json::Map<String, Value>) -> String {
    match s.get("type").and_then(Value::as_str) {
        Some(t) => format!(" (expected {t})"),
        None => String::new(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The kind of a value and a short rendering of it, for messages.
fn short(v: &Value) -> String {
    let mut text = v.to_string();
    if text.len() > 80 {
        let mut cut = 77;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    format!("{} {text}", kind(v))
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// YYYY-MM-DD with a month 01-12 and a day 01-31.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (y, m, d) = (&s[0..4], &s[5..7], &s[8..10]);
    if !(digits(y) && digits(m) && digits(d)) {
        return false;
    }
    let (m, d): (u32, u32) = (m.parse().unwrap_or(0), d.parse().unwrap_or(0));
    (1..=12).contains(&m) && (1..=31).contains(&d)
}

/// RFC 3339: `2026-11-22T02:50:00Z`, with optional fractional seconds and a
/// `Z` or `±hh:mm` offset.
fn is_date_time(s: &str) -> bool {
    let Some((date, time)) = s.split_once(['T', 't']) else {
        return false;
    };
    if !is_date(date) {
        return false;
    }
    let (clock, offset) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, None)
    } else {
        match time.rfind(['+', '-']) {
            Some(i) => (&time[..i], Some(&time[i + 1..])),
            None => return false,
        }
    };
    if let Some(o) = offset {
        let ob = o.as_bytes();
        if ob.len() != 5 || ob[2] != b':' || !digits(&o[0..2]) || !digits(&o[3..5]) {
            return false;
        }
    }
    let (hms, frac) = match clock.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (clock, None),
    };
    if frac.is_some_and(|f| !digits(f)) {
        return false;
    }
    let parts: Vec<&str> = hms.split(':').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.len() != 2 || !digits(p)) {
        return false;
    }
    let n = |p: &str| p.parse::<u32>().unwrap_or(99);
    n(parts[0]) <= 23 && n(parts[1]) <= 59 && n(parts[2]) <= 60
}
