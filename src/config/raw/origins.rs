//! `[[distributions.origins]]`: HTTP(S) servers and local folders.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrigin {
    id: Spanned<String>,
    url: Option<Spanned<String>>,
    folder: Option<Spanned<String>>,
    connect_timeout: Option<Secs>,
    connection_attempts: Option<Spanned<i64>>,
    read_timeout: Option<Secs>,
    keepalive_timeout: Option<Secs>,
    max_idle: Option<usize>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    protocol_policy: Option<Spanned<String>>,
    http_port: Option<u16>,
    https_port: Option<u16>,
}

/// The distribution's origins, in order (groups are appended after them).
pub(super) fn resolve_origins(
    cx: &Ctx,
    i: usize,
    raw: Vec<Spanned<RawOrigin>>,
) -> Result<Vec<Arc<OriginConfig>>, ConfigError> {
    let f = |name: &str| format!("distributions[{i}].{name}");
    let mut origins: Vec<Arc<OriginConfig>> = Vec::new();
    for (j, o) in raw.into_iter().enumerate() {
        let ospan = o.span();
        let o = o.into_inner();
        let of = |name: &str| f(&format!("origins[{j}].{name}"));
        if origins.iter().any(|x| x.id == *o.id.get_ref()) {
            return cx.err(o.id.span(), of("id"), format!("origin id {:?} is used twice", o.id.get_ref()));
        }
        let kind = match (o.url.as_ref(), o.folder.as_ref()) {
            (Some(url), None) => OriginKind::Http(parse_origin_url(cx, url, of("url"), &o)?),
            (None, Some(folder)) => {
                let root = relative_to(cx.file, folder.get_ref());
                OriginKind::Folder(FolderOriginConfig { root, at: cx.place(folder.span(), of("folder")) })
            }
            _ => return cx.err(ospan, of("url"), "an origin needs exactly one of `url` or `folder`"),
        };
        let mut headers = Vec::new();
        for (name, value) in &o.headers {
            let n = HeaderName::from_bytes(name.as_bytes());
            let v = HeaderValue::from_str(value.get_ref());
            match (n, v) {
                (Ok(n), Ok(v)) => headers.push((n, v)),
                _ => {
                    return cx.err(value.span(), of(&format!("headers.{name}")), "is not a valid header name and value")
                }
            }
        }
        origins.push(Arc::new(OriginConfig { id: o.id.into_inner(), kind, headers }));
    }
    Ok(origins)
}

fn parse_origin_url(
    cx: &Ctx,
    url: &Spanned<String>,
    field: String,
    o: &RawOrigin,
) -> Result<HttpOriginConfig, ConfigError> {
    let uri: http::Uri = match url.get_ref().parse() {
        Ok(u) => u,
        Err(e) => return cx.err(url.span(), field, format!("{:?} is not a URL: {e}", url.get_ref())),
    };
    let scheme = match uri.scheme_str() {
        Some(s @ ("http" | "https")) => s.to_string(),
        _ => return cx.err(url.span(), field, "an origin URL starts with http:// or https://"),
    };
    let Some(authority) = uri.authority() else {
        return cx.err(url.span(), field, "an origin URL needs a host");
    };
    if uri.query().is_some() {
        return cx.err(url.span(), field, "an origin URL cannot carry a query string");
    }
    let path_prefix = uri.path().trim_end_matches('/').to_string();
    let protocol_policy = match &o.protocol_policy {
        None if scheme == "https" => OriginProtocolPolicy::HttpsOnly,
        None => OriginProtocolPolicy::HttpOnly,
        Some(p) => match p.get_ref().as_str() {
            "http-only" => OriginProtocolPolicy::HttpOnly,
            "https-only" => OriginProtocolPolicy::HttpsOnly,
            "match-viewer" => OriginProtocolPolicy::MatchViewer,
            other => {
                return cx.err(
                    p.span(),
                    field.replace(".url", ".protocol_policy"),
                    format!("{other:?}: expected \"http-only\", \"https-only\" or \"match-viewer\""),
                )
            }
        },
    };
    let connection_attempts = match &o.connection_attempts {
        None => 3,
        Some(n) => match u8::try_from(*n.get_ref()) {
            Ok(n @ 1..=3) => n,
            _ => {
                let f = field.replace(".url", ".connection_attempts");
                return cx.err(n.span(), f, "must be 1, 2 or 3");
            }
        },
    };
    let ca_file = o.ca_file.as_ref().map(|ca| CaFile {
        path: relative_to(cx.file, ca.get_ref()),
        at: cx.place(ca.span(), field.replace(".url", ".ca_file")),
        roots: Slot::empty(),
    });
    Ok(HttpOriginConfig {
        scheme,
        authority: authority.as_str().to_string(),
        ca_file,
        protocol_policy,
        http_port: o.http_port,
        https_port: o.https_port,
        path_prefix,
        connect_timeout: o.connect_timeout.map_or(Duration::from_secs(10), |s| s.0),
        connection_attempts,
        read_timeout: o.read_timeout.map_or(Duration::from_secs(30), |s| s.0),
        keepalive_timeout: o.keepalive_timeout.map_or(Duration::from_secs(60), |s| s.0),
        max_idle_per_host: o.max_idle.unwrap_or(256),
    })
}
