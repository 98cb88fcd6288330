//! Output: aligned tables, key/value details and TOML for people.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::Serialize;
use serde_json::Value;

/// Pretty JSON with a final newline.
pub(super) fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

/// A field as text: strings as they are, numbers and booleans written, null
/// and absent as "".
pub(super) fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

pub(super) fn uint(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

pub(super) fn float(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

pub(super) fn yes_no(v: &Value, key: &str) -> String {
    match v.get(key).and_then(Value::as_bool) {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => String::new(),
    }
}

/// The strings of an array field, joined with ", " ("-" when empty).
pub(super) fn joined(v: &Value, key: &str) -> String {
    let list: Vec<&str> =
        v.get(key).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(", ")
    }
}

/// A column of a plain-text table.
#[derive(Debug, Clone, Copy)]
pub struct Column<'a> {
    pub title: &'a str,
    /// Right-aligned (numbers).
    pub right: bool,
}

pub(super) const fn left(title: &str) -> Column<'_> {
    Column { title, right: false }
}

pub(super) const fn right(title: &str) -> Column<'_> {
    Column { title, right: true }
}

/// An aligned plain-text table: a title row, then the rows; columns two
/// spaces apart, no trailing spaces.
pub fn table(columns: &[Column], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = columns.iter().map(|c| width(c.title)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns.len()) {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let mut out = String::new();
    let titles: Vec<String> = columns.iter().map(|c| c.title.to_string()).collect();
    for row in std::iter::once(&titles).chain(rows) {
        let mut line = String::new();
        for (i, c) in columns.iter().enumerate() {
            let cell = row.get(i).map_or("", String::as_str);
            let pad = " ".repeat(widths[i].saturating_sub(width(cell)));
            if i > 0 {
                line.push_str("  ");
            }
            if c.right {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `key   value` lines, the values aligned; multi-line values continue under
/// the first.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let mut lines = v.lines();
        let first = lines.next().unwrap_or("");
        out.push_str(format!("{k:<w$}  {first}").trim_end());
        out.push('\n');
        for more in lines {
            out.push_str(format!("{:w$}  {more}", "").trim_end());
            out.push('\n');
        }
    }
    out
}

/// `distribution list`.
pub fn distribution_table(list: &Value) -> String {
    let items = list.get("items").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|d| {
            vec![
                text(d, "id"),
                text(d, "domain_name"),
                yes_no(d, "enabled"),
                text(d, "status"),
                joined(d, "aliases"),
                joined(d, "origins"),
                text(d, "comment"),
            ]
        })
        .collect();
    table(
        &[
            left("ID"),
            left("DOMAIN NAME"),
            left("ENABLED"),
            left("STATUS"),
            left("ALIASES"),
            left("ORIGINS"),
            left("COMMENT"),
        ],
        &rows,
    )
}

/// `distribution get`: the state as key/value lines, then the configuration as TOML.
pub fn distribution_details(d: &Value) -> String {
    let mut out = key_values(&[
        ("id", text(d, "id")),
        ("domain name", text(d, "domain_name")),
        ("status", text(d, "status")),
        ("enabled", yes_no(d, "enabled")),
        ("comment", text(d, "comment")),
        ("aliases", joined(d, "aliases")),
        ("etag", text(d, "etag")),
        ("created", text(d, "created_time")),
        ("last modified", text(d, "last_modified_time")),
    ]);
    if let Some(config) = d.get("config") {
        out.push_str("\n# configuration\n");
        out.push_str(&to_toml(config));
    }
    out
}

/// A JSON configuration as TOML, in the order people write it: plain values
/// first (id, enabled, comment, aliases, path, origin, url, folder, then the
/// rest by name), then tables (origins, behaviors, default_behavior,
/// key_groups, ...). Nulls are left out.
pub fn to_toml(config: &Value) -> String {
    match toml::to_string(&TomlOrder(config)) {
        Ok(s) => s,
        // Not representable in TOML (e.g. a top-level array): show the JSON.
        Err(_) => pretty(config),
    }
}

pub(super) struct TomlOrder<'a>(&'a Value);

pub(super) const KEY_ORDER: [&str; 16] = [
    "id",
    "enabled",
    "comment",
    "aliases",
    "path",
    "origin",
    "url",
    "folder",
    "public_key",
    "origins",
    "behaviors",
    "default_behavior",
    "key_groups",
    "cache_key",
    "headers",
    "keys",
];

pub(super) fn is_tableish(v: &Value) -> bool {
    match v {
        Value::Object(_) => true,
        Value::Array(a) => !a.is_empty() && a.iter().all(Value::is_object),
        _ => false,
    }
}

impl Serialize for TomlOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k).collect();
                keys.sort_by_key(|k| {
                    let rank = KEY_ORDER.iter().position(|x| x == k).unwrap_or(KEY_ORDER.len());
                    (is_tableish(&m[k.as_str()]), rank, k.as_str())
                });
                let mut map = s.serialize_map(Some(keys.len()))?;
                for k in keys {
                    map.serialize_entry(k, &TomlOrder(&m[k.as_str()]))?;
                }
                map.end()
            }
            Value::Array(a) => {
                let items: Vec<&Value> = a.iter().filter(|v| !v.is_null()).collect();
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&TomlOrder(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

pub(super) fn invalidation_fields(inv: &Value) -> Vec<(&'static str, String)> {
    let paths = inv.get("paths").and_then(Value::as_array).map_or(0, Vec::len);
    let completed = text(inv, "completed_time");
    vec![
        ("id", text(inv, "id")),
        ("distribution", text(inv, "distribution_id")),
        ("status", text(inv, "status")),
        ("paths", paths.to_string()),
        ("caller reference", text(inv, "caller_reference")),
        ("created", text(inv, "create_time")),
        ("completed", if completed.is_empty() { "-".into() } else { completed }),
    ]
}

/// `invalidation get`: the fields, then every path.
pub fn invalidation_details(inv: &Value) -> String {
    let mut fields = invalidation_fields(inv);
    let paths: Vec<&str> = inv
        .get("paths")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    fields.retain(|(k, _)| *k != "paths");
    fields.push(("paths", if paths.is_empty() { "-".into() } else { paths.join("\n") }));
    key_values(&fields)
}

/// `invalidation list`.
pub fn invalidation_table(list: &Value) -> String {
    let items = list.get("items").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                text(i, "id"),
                text(i, "status"),
                text(i, "create_time"),
                i.get("paths").and_then(Value::as_array).map_or(0, Vec::len).to_string(),
                text(i, "caller_reference"),
            ]
        })
        .collect();
    table(&[left("ID"), left("STATUS"), left("CREATED"), right("PATHS"), left("CALLER REF")], &rows)
}

/// Bytes for people: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `stats`: one row per distribution.
pub fn stats_table(list: &[Value]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            let errors = s.get("errors").cloned().unwrap_or(Value::Null);
            let latency = s.get("origin_latency_ms").cloned().unwrap_or(Value::Null);
            vec![
                text(s, "distribution_id"),
                uint(s, "requests").to_string(),
                format!("{:.1}%", float(s, "hit_ratio") * 100.0),
                human_bytes(uint(s, "bytes_to_viewers")),
                human_bytes(uint(s, "bytes_from_origin")),
                uint(s, "collapsed_requests").to_string(),
                uint(&errors, "4xx").to_string(),
                uint(&errors, "5xx").to_string(),
                if uint(&latency, "count") == 0 { "-".into() } else { format!("{:.1}", float(&latency, "p99")) },
            ]
        })
        .collect();
    table(
        &[
            left("DISTRIBUTION"),
            right("REQUESTS"),
            right("HIT RATIO"),
            right("BYTES OUT"),
            right("BYTES FROM ORIGIN"),
            right("COLLAPSED"),
            right("4XX"),
            right("5XX"),
            right("ORIGIN P99 MS"),
        ],
        &rows,
    )
}

/// `usage`: the range, then one row per distribution and day (exact bytes,
/// as billed), with a total row when there is more than one.
pub fn usage_table(usage: &Value) -> String {
    let items = usage.get("items").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    const FIELDS: [&str; 5] = [
        "data_transfer_out_to_viewers_bytes",
        "data_transfer_out_to_origin_bytes",
        "http_requests",
        "https_requests",
        "invalidation_paths",
    ];
    let mut totals = [0u64; 5];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for item in items {
        let mut row = vec![text(item, "distribution_id"), text(item, "date")];
        for (i, f) in FIELDS.iter().enumerate() {
            let n = uint(item, f);
            totals[i] = totals[i].saturating_add(n);
            row.push(n.to_string());
        }
        rows.push(row);
    }
    if rows.len() > 1 {
        let mut row = vec!["TOTAL".to_string(), String::new()];
        row.extend(totals.iter().map(u64::to_string));
        rows.push(row);
    }
    let mut out = format!("usage from {} to {} (UTC days, bytes)\n", text(usage, "from"), text(usage, "to"));
    if rows.is_empty() {
        out.push_str("no usage in this range\n");
        return out;
    }
    out.push_str(&table(
        &[
            left("DISTRIBUTION"),
            left("DATE"),
            right("OUT TO VIEWERS"),
            right("OUT TO ORIGIN"),
            right("HTTP REQ"),
            right("HTTPS REQ"),
            right("INVALIDATION PATHS"),
        ],
        &rows,
    ));
    out
}
