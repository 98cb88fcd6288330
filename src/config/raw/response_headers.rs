//! `[distributions.behaviors.response_headers]` (and the default behavior's):
//! the behavior's response headers policy (CloudFront's response headers
//! policies; see docs/response-headers.md).

use super::*;
use crate::config::response_headers::{AddedHeader, AllowOrigins, CorsPolicy, OriginPattern, ResponseHeadersPolicy};

/// The longest `Access-Control-Max-Age` accepted: one year.
const MAX_AGE_LIMIT: Duration = Duration::from_secs(31_536_000);

/// Headers a policy may neither add nor remove: framing, hop-by-hop, and the
/// ones the edge itself answers for (CloudFront refuses the same kinds).
const PROTECTED: [&str; 16] = [
    "connection",
    "content-encoding",
    "content-length",
    "content-range",
    "expect",
    "host",
    "keep-alive",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "via",
    "x-cache",
    "age",
];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResponseHeaders {
    cors: Option<Spanned<RawCors>>,
    #[serde(default)]
    security: RawSecurity,
    #[serde(default)]
    custom: Vec<Spanned<RawCustom>>,
    #[serde(default)]
    remove: Vec<Spanned<String>>,
    server_timing: Option<Spanned<RawServerTiming>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCors {
    #[serde(default)]
    allow_origins: Vec<Spanned<String>>,
    allow_methods: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    allow_headers: Vec<Spanned<String>>,
    #[serde(default)]
    expose_headers: Vec<Spanned<String>>,
    max_age: Option<Spanned<Secs>>,
    #[serde(default)]
    allow_credentials: bool,
    #[serde(default = "yes")]
    origin_override: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSecurity {
    strict_transport_security: Option<Spanned<RawHsts>>,
    content_type_options: Option<Spanned<RawValue>>,
    frame_options: Option<Spanned<RawValue>>,
    referrer_policy: Option<Spanned<RawValue>>,
    content_security_policy: Option<Spanned<RawValue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHsts {
    max_age: Option<Spanned<Secs>>,
    #[serde(default)]
    include_subdomains: bool,
    #[serde(default)]
    preload: bool,
    #[serde(default = "yes", rename = "override")]
    override_origin: bool,
}

/// A security header's value (some have a fixed one) and its override flag.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValue {
    value: Option<Spanned<String>>,
    #[serde(default = "yes", rename = "override")]
    override_origin: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCustom {
    name: Option<Spanned<String>>,
    value: Option<Spanned<String>>,
    #[serde(default = "yes", rename = "override")]
    override_origin: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServerTiming {
    #[serde(default = "yes")]
    enabled: bool,
    sampling_rate: Option<Spanned<f64>>,
}

const REFERRER_POLICIES: [&str; 8] = [
    "no-referrer",
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
    "unsafe-url",
];

/// Resolves a behavior's `response_headers` table; `field` is the behavior's path.
pub(super) fn resolve(
    cx: &Ctx,
    field: &str,
    raw: Option<&Spanned<RawResponseHeaders>>,
) -> Result<Option<Arc<ResponseHeadersPolicy>>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let f = |name: &str| format!("{field}.response_headers.{name}");
    let r = raw.get_ref();
    let mut policy = ResponseHeadersPolicy::default();
    if let Some(c) = &r.cors {
        policy.cors = Some(resolve_cors(cx, &f("cors"), c)?);
    }
    let s = &r.security;
    if let Some(h) = &s.strict_transport_security {
        let hsts = h.get_ref();
        let Some(age) = &hsts.max_age else {
            return cx.err(h.span(), f("security.strict_transport_security.max_age"), "is missing (such as \"1y\")");
        };
        let mut v = format!("max-age={}", age.get_ref().0.as_secs());
        if hsts.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if hsts.preload {
            v.push_str("; preload");
        }
        push(&mut policy, "strict-transport-security", HeaderValue::from_str(&v).ok(), hsts.override_origin);
    }
    if let Some(h) = &s.content_type_options {
        if let Some(v) = h.get_ref().value.as_ref().filter(|v| !v.get_ref().eq_ignore_ascii_case("nosniff")) {
            return cx.err(v.span(), f("security.content_type_options.value"), "can only be \"nosniff\"");
        }
        let nosniff = Some(HeaderValue::from_static("nosniff"));
        push(&mut policy, "x-content-type-options", nosniff, h.get_ref().override_origin);
    }
    if let Some(h) = &s.frame_options {
        let v = security_value(cx, &f("security.frame_options"), h, &["DENY", "SAMEORIGIN"])?;
        push(&mut policy, "x-frame-options", Some(v), h.get_ref().override_origin);
    }
    if let Some(h) = &s.referrer_policy {
        let v = security_value(cx, &f("security.referrer_policy"), h, &REFERRER_POLICIES)?;
        push(&mut policy, "referrer-policy", Some(v), h.get_ref().override_origin);
    }
    if let Some(h) = &s.content_security_policy {
        let v = security_value(cx, &f("security.content_security_policy"), h, &[])?;
        push(&mut policy, "content-security-policy", Some(v), h.get_ref().override_origin);
    }
    for (k, c) in r.custom.iter().enumerate() {
        let at = |name: &str| f(&format!("custom[{k}].{name}"));
        let c_ref = c.get_ref();
        let Some(name) = &c_ref.name else { return cx.err(c.span(), at("name"), "is missing") };
        let Some(value) = &c_ref.value else { return cx.err(c.span(), at("value"), "is missing") };
        let n = header_name(cx, &at("name"), name)?;
        if n.as_str().starts_with("access-control-") {
            return cx.err(name.span(), at("name"), "CORS headers are set with response_headers.cors");
        }
        if policy.add.iter().any(|a| a.name == n) {
            return cx.err(name.span(), at("name"), format!("{:?} is added twice", n.as_str()));
        }
        let Ok(v) = HeaderValue::from_str(value.get_ref()) else {
            return cx.err(value.span(), at("value"), "is not a valid header value (visible ASCII, spaces, tabs)");
        };
        policy.add.push(AddedHeader { name: n, value: v, override_origin: c_ref.override_origin });
    }
    for (k, name) in r.remove.iter().enumerate() {
        let at = f(&format!("remove[{k}]"));
        let n = header_name(cx, &at, name)?;
        if policy.add.iter().any(|a| a.name == n) {
            return cx.err(name.span(), at, format!("{:?} is also added by this policy", n.as_str()));
        }
        if policy.cors.is_some() && n.as_str().starts_with("access-control-") {
            return cx.err(name.span(), at, "the CORS headers are this policy's own (see response_headers.cors)");
        }
        if !policy.remove.contains(&n) {
            policy.remove.push(n);
        }
    }
    if let Some(t) = &r.server_timing {
        let t_ref = t.get_ref();
        let rate = match &t_ref.sampling_rate {
            Some(r) if !(0.0..=100.0).contains(r.get_ref()) => {
                return cx.err(r.span(), f("server_timing.sampling_rate"), "must lie between 0 and 100 (a percentage)")
            }
            Some(r) => *r.get_ref(),
            None => 100.0,
        };
        policy.server_timing = t_ref.enabled.then_some(rate);
    }
    Ok(Some(Arc::new(policy)))
}

fn push(policy: &mut ResponseHeadersPolicy, name: &'static str, value: Option<HeaderValue>, override_origin: bool) {
    if let Some(value) = value {
        policy.add.push(AddedHeader { name: HeaderName::from_static(name), value, override_origin });
    }
}

/// A security header's `value`: one of `allowed` (any case, written as
/// listed), or any valid header value when `allowed` is empty.
fn security_value(
    cx: &Ctx,
    field: &str,
    h: &Spanned<RawValue>,
    allowed: &[&'static str],
) -> Result<HeaderValue, ConfigError> {
    let Some(v) = &h.get_ref().value else {
        return cx.err(h.span(), format!("{field}.value"), "is missing");
    };
    if allowed.is_empty() {
        return match HeaderValue::from_str(v.get_ref()) {
            Ok(x) if !v.get_ref().trim().is_empty() => Ok(x),
            _ => cx.err(v.span(), format!("{field}.value"), "is not a valid header value"),
        };
    }
    match allowed.iter().find(|a| a.eq_ignore_ascii_case(v.get_ref())) {
        Some(a) => Ok(HeaderValue::from_static(a)),
        None => cx.err(
            v.span(),
            format!("{field}.value"),
            format!("{:?}: expected one of {}", v.get_ref(), allowed.join(", ")),
        ),
    }
}

fn header_name(cx: &Ctx, field: &str, name: &Spanned<String>) -> Result<HeaderName, ConfigError> {
    let Ok(n) = HeaderName::from_bytes(name.get_ref().as_bytes()) else {
        return cx.err(name.span(), field.into(), format!("{:?} is not a header name", name.get_ref()));
    };
    if PROTECTED.contains(&n.as_str()) {
        return cx.err(name.span(), field.into(), format!("{:?} is the edge's own to set", n.as_str()));
    }
    Ok(n)
}

/// A list of names joined for a header value: `Spanned` entries, each checked.
fn names(
    cx: &Ctx,
    field: &str,
    list: &[Spanned<String>],
    wildcard: bool,
) -> Result<(Option<HeaderValue>, bool), ConfigError> {
    let mut out: Vec<String> = Vec::new();
    let mut any = false;
    for (k, n) in list.iter().enumerate() {
        let s = n.get_ref().trim();
        if s == "*" && wildcard {
            any = true;
        } else if HeaderName::from_bytes(s.as_bytes()).is_err() {
            return cx.err(n.span(), format!("{field}[{k}]"), format!("{s:?} is not a header name (or \"*\")"));
        }
        if !out.iter().any(|o| o.eq_ignore_ascii_case(s)) {
            out.push(s.to_string());
        }
    }
    if out.is_empty() {
        return Ok((None, any));
    }
    match HeaderValue::from_str(&out.join(", ")) {
        Ok(v) => Ok((Some(v), any)),
        Err(_) => cx.err(list[0].span(), field.into(), "does not make a valid header value"),
    }
}

fn resolve_cors(cx: &Ctx, field: &str, c: &Spanned<RawCors>) -> Result<CorsPolicy, ConfigError> {
    let r = c.get_ref();
    let f = |name: &str| format!("{field}.{name}");
    if r.allow_origins.is_empty() {
        return cx.err(c.span(), f("allow_origins"), "lists the origins allowed (\"*\" for all)");
    }
    let allow_origins = if r.allow_origins.iter().any(|o| o.get_ref().trim() == "*") {
        if r.allow_origins.len() > 1 {
            return cx.err(r.allow_origins[0].span(), f("allow_origins"), "\"*\" allows every origin: list it alone");
        }
        if r.allow_credentials {
            return cx.err(
                r.allow_origins[0].span(),
                f("allow_origins"),
                "\"*\" cannot go with allow_credentials = true (browsers refuse it): list the origins",
            );
        }
        AllowOrigins::Any
    } else {
        let mut list = Vec::new();
        for (k, o) in r.allow_origins.iter().enumerate() {
            match OriginPattern::parse(o.get_ref().trim()) {
                Ok(p) => list.push(p),
                Err(why) => {
                    return cx.err(o.span(), f(&format!("allow_origins[{k}]")), format!("{:?} {why}", o.get_ref()))
                }
            }
        }
        AllowOrigins::List(list)
    };
    let methods = match &r.allow_methods {
        None => vec!["GET".to_string(), "HEAD".to_string(), "OPTIONS".to_string()],
        Some(list) if list.is_empty() => {
            return cx.err(c.span(), f("allow_methods"), "lists at least one method (or \"ALL\")");
        }
        Some(list) if list.iter().any(|m| m.get_ref().eq_ignore_ascii_case("ALL")) => {
            ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"].map(String::from).to_vec()
        }
        Some(list) => {
            let mut out: Vec<String> = Vec::new();
            for (k, m) in list.iter().enumerate() {
                let up = m.get_ref().trim().to_ascii_uppercase();
                if Method::from_bytes(up.as_bytes()).is_err() || up.is_empty() {
                    return cx.err(
                        m.span(),
                        f(&format!("allow_methods[{k}]")),
                        format!("{:?} is not a method", m.get_ref()),
                    );
                }
                if !out.contains(&up) {
                    out.push(up);
                }
            }
            out
        }
    };
    let allow_methods = HeaderValue::from_str(&methods.join(", ")).unwrap_or(HeaderValue::from_static("GET, HEAD"));
    let (allow_headers, allow_any_header) = names(cx, &f("allow_headers"), &r.allow_headers, true)?;
    let (expose_headers, _) = names(cx, &f("expose_headers"), &r.expose_headers, true)?;
    let max_age = match &r.max_age {
        Some(a) if a.get_ref().0 > MAX_AGE_LIMIT => {
            return cx.err(a.span(), f("max_age"), "must be at most one year (31536000 seconds)");
        }
        Some(a) => Some(HeaderValue::from(a.get_ref().0.as_secs())),
        None => None,
    };
    Ok(CorsPolicy {
        allow_origins,
        allow_methods,
        allow_headers,
        allow_any_header,
        expose_headers,
        max_age,
        allow_credentials: r.allow_credentials,
        origin_override: r.origin_override,
    })
}
