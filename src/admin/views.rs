//! The JSON the admin API speaks: distributions, invalidations, usage rows and
//! errors out; distribution documents in (JSON ⇄ the TOML table the file uses).

use super::{ControlPlane, Failure};
use crate::state::{rfc3339, DistributionRecord, InvalidationRecord, InvalidationStatus, UsageCounters};
use serde_json::{json, Map, Value};

/// A distribution as `GET /v1/distributions/{id}` shows it.
pub fn distribution(c: &ControlPlane, r: &DistributionRecord) -> Value {
    let mut doc = toml::from_str::<toml::Table>(&r.document).unwrap_or_default();
    // Secrets (an S3 origin's keys) are shown as `***`.
    crate::config::s3::redact_document(&mut doc);
    let mut v = summary_fields(c, r, &doc);
    v.insert("config".into(), serde_json::to_value(&doc).unwrap_or(Value::Null));
    Value::Object(v)
}

/// A distribution as lists show it: without its configuration, with its origin ids.
pub fn summary(c: &ControlPlane, r: &DistributionRecord) -> Value {
    let doc = toml::from_str::<toml::Table>(&r.document).unwrap_or_default();
    let mut v = summary_fields(c, r, &doc);
    let origins: Vec<Value> = doc
        .get("origins")
        .and_then(|o| o.as_array())
        .map(|a| a.iter().filter_map(|o| o.get("id").and_then(|i| i.as_str())).map(|s| json!(s)).collect())
        .unwrap_or_default();
    v.insert("origins".into(), Value::Array(origins));
    Value::Object(v)
}

fn summary_fields(c: &ControlPlane, r: &DistributionRecord, doc: &toml::Table) -> Map<String, Value> {
    let enabled = doc.get("enabled").and_then(|v| v.as_bool()).unwrap_or(true);
    let comment = doc.get("comment").and_then(|v| v.as_str()).unwrap_or("");
    let aliases: Vec<Value> = doc
        .get("aliases")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str()).map(|s| Value::String(s.to_string())).collect())
        .unwrap_or_default();
    let status = if c.is_deployed(r) { "Deployed" } else { "NotDeployed" };
    let mut m = Map::new();
    m.insert("id".into(), json!(r.id));
    m.insert("domain_name".into(), json!(crate::config::domain_name_for(&r.id, &c.edge_domain())));
    m.insert("status".into(), json!(status));
    m.insert("enabled".into(), json!(enabled));
    m.insert("comment".into(), json!(comment));
    m.insert("aliases".into(), Value::Array(aliases));
    m.insert("etag".into(), json!(r.etag));
    m.insert("created_time".into(), json!(rfc3339(r.created_ms)));
    m.insert("last_modified_time".into(), json!(rfc3339(r.modified_ms)));
    m
}

pub fn invalidation(r: &InvalidationRecord) -> Value {
    json!({
        "id": r.id,
        "distribution_id": r.distribution_id,
        "status": match r.status {
            InvalidationStatus::InProgress => "InProgress",
            InvalidationStatus::Completed => "Completed",
        },
        "caller_reference": r.caller_reference,
        "paths": r.paths,
        "create_time": rfc3339(r.create_ms),
        "completed_time": r.completed_ms.map(rfc3339),
    })
}

pub fn usage_row(distribution: &str, day: &str, c: &UsageCounters) -> Value {
    json!({
        "distribution_id": distribution,
        "date": day,
        "data_transfer_out_to_viewers_bytes": c.bytes_to_viewers,
        "data_transfer_out_to_origin_bytes": c.bytes_to_origin,
        "http_requests": c.http_requests,
        "https_requests": c.https_requests,
        "invalidation_paths": c.invalidation_paths,
    })
}

pub fn error(f: &Failure) -> Value {
    json!({ "error": { "code": f.code, "message": f.message, "field": f.field } })
}

/// A JSON request body as a distribution document (the TOML table the
/// configuration file would hold). JSON null has no TOML form: it is refused
/// with the field that holds it.
pub fn document(body: &[u8]) -> Result<toml::Table, Failure> {
    let value = parse_json(body)?;
    let Value::Object(_) = value else {
        return Err(Failure::new(
            400,
            "InvalidArgument",
            "the body must be a JSON object (a distribution configuration)",
        ));
    };
    match to_toml(&value, "")? {
        toml::Value::Table(t) => Ok(t),
        _ => Err(Failure::new(400, "InvalidArgument", "the body must be a JSON object")),
    }
}

pub fn parse_json(body: &[u8]) -> Result<Value, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Failure::new(400, "MalformedJson", "the request needs a JSON body"));
    }
    serde_json::from_slice(body)
        .map_err(|e| Failure::new(400, "MalformedJson", format!("the body is not valid JSON: {e}")))
}

fn to_toml(v: &Value, field: &str) -> Result<toml::Value, Failure> {
    let at = |f: &str, msg: &str| Failure { field: Some(f.to_string()), ..Failure::new(400, "InvalidArgument", msg) };
    Ok(match v {
        Value::Null => return Err(at(field, "null is not a value here: leave the field out instead")),
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) if n.is_f64() => toml::Value::Float(f),
            _ => return Err(at(field, "the number is out of range")),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(a) => toml::Value::Array(
            a.iter().enumerate().map(|(i, x)| to_toml(x, &format!("{field}[{i}]"))).collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => {
            let mut t = toml::Table::new();
            for (k, x) in o {
                let f = if field.is_empty() { k.clone() } else { format!("{field}.{k}") };
                t.insert(k.clone(), to_toml(x, &f)?);
            }
            toml::Value::Table(t)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_documents() {
        let d = document(
            br#"{"origins":[{"id":"o","url":"http://127.0.0.1:1"}],"default_behavior":{"origin":"o","default_ttl":2}}"#,
        )
        .unwrap();
        assert_eq!(d["default_behavior"]["default_ttl"].as_integer(), Some(2));
        let e = document(br#"{"origins":[{"id":null}]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("origins[0].id"));
        assert_eq!(document(b"{").unwrap_err().code, "MalformedJson");
        assert_eq!(document(b"[1]").unwrap_err().code, "InvalidArgument");
        assert_eq!(document(b"  ").unwrap_err().code, "MalformedJson");
    }
}
