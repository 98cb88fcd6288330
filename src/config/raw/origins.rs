//! `[[distributions.origins]]`: HTTP(S) servers, S3 buckets and local folders.

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
    s3: Option<Spanned<RawS3>>,
}

/// An origin's `s3` table (docs/s3-origins.md).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawS3 {
    bucket: Spanned<String>,
    region: Spanned<String>,
    endpoint: Option<Spanned<String>>,
    access_key_id: Option<Spanned<String>>,
    secret_access_key: Option<Spanned<String>>,
    session_token: Option<Spanned<String>>,
    credentials_file: Option<Spanned<String>>,
    profile: Option<Spanned<String>>,
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
        let kind = match (o.url.as_ref(), o.folder.as_ref(), o.s3.as_ref()) {
            (Some(url), None, None) => {
                OriginKind::Http(parse_origin_url(cx, url.get_ref(), url.span(), of("url"), &of, &o)?)
            }
            (None, Some(folder), None) => {
                let root = relative_to(cx.file, folder.get_ref());
                OriginKind::Folder(FolderOriginConfig { root, at: cx.place(folder.span(), of("folder")) })
            }
            (None, None, Some(s3)) => OriginKind::S3(Box::new(parse_s3(cx, s3, &of, &o)?)),
            _ => return cx.err(ospan, of("url"), "an origin needs exactly one of `url`, `s3` or `folder`"),
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
    url: &str,
    span: std::ops::Range<usize>,
    field: String,
    sibling: &dyn Fn(&str) -> String,
    o: &RawOrigin,
) -> Result<HttpOriginConfig, ConfigError> {
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return cx.err(span, field, format!("{url:?} is not a URL: {e}")),
    };
    let scheme = match uri.scheme_str() {
        Some(s @ ("http" | "https")) => s.to_string(),
        _ => return cx.err(span, field, "an origin URL starts with http:// or https://"),
    };
    let Some(authority) = uri.authority() else {
        return cx.err(span, field, "an origin URL needs a host");
    };
    if uri.query().is_some() {
        return cx.err(span, field, "an origin URL cannot carry a query string");
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
                    sibling("protocol_policy"),
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
                let f = sibling("connection_attempts");
                return cx.err(n.span(), f, "must be 1, 2 or 3");
            }
        },
    };
    let ca_file = o.ca_file.as_ref().map(|ca| CaFile {
        path: relative_to(cx.file, ca.get_ref()),
        at: cx.place(ca.span(), sibling("ca_file")),
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

/// An `s3` table: the bucket behind its endpoint, as an HTTP origin whose
/// requests are signed.
fn parse_s3(
    cx: &Ctx,
    s3: &Spanned<RawS3>,
    of: &dyn Fn(&str) -> String,
    o: &RawOrigin,
) -> Result<S3OriginConfig, ConfigError> {
    let f = |name: &str| of(&format!("s3.{name}"));
    let raw = s3.get_ref();
    let bucket = raw.bucket.get_ref();
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !bucket.starts_with(['.', '-'])
        && !bucket.ends_with(['.', '-']);
    if !bucket_ok {
        return cx.err(
            raw.bucket.span(),
            f("bucket"),
            format!("{bucket:?} is not a bucket name (3-63 lower-case letters, digits, dots and hyphens)"),
        );
    }
    let region = raw.region.get_ref();
    if region.is_empty() || !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return cx.err(raw.region.span(), f("region"), format!("{region:?} is not a region name (e.g. \"eu-west-1\")"));
    }
    if o.protocol_policy.is_some() {
        return cx.err(
            s3.span(),
            of("protocol_policy"),
            "an S3 origin uses its endpoint's protocol (no `protocol_policy`)",
        );
    }
    // Path-style against a given endpoint; virtual-hosted on AWS (path-style
    // when the bucket name has dots, which a certificate for
    // `*.s3.REGION.amazonaws.com` does not cover).
    let (url, span, url_field) = match &raw.endpoint {
        Some(e) => {
            let base = e.get_ref().trim_end_matches('/');
            (format!("{base}/{bucket}"), e.span(), f("endpoint"))
        }
        None if bucket.contains('.') => {
            (format!("https://s3.{region}.amazonaws.com/{bucket}"), raw.region.span(), f("region"))
        }
        None => (format!("https://{bucket}.s3.{region}.amazonaws.com"), raw.region.span(), f("region")),
    };
    let http = parse_origin_url(cx, &url, span, url_field, of, o)?;
    let secret = |v: &Option<Spanned<String>>, name: &str| match v {
        Some(s) if s.get_ref().is_empty() || s.get_ref() == crate::config::s3::REDACTED => {
            cx.err(s.span(), f(name), "is empty (or still `***`, as a redacted copy shows it)")
        }
        Some(s) => Ok(Some(Secret::new(s.get_ref().clone()))),
        None => Ok(None),
    };
    let secret_access_key = secret(&raw.secret_access_key, "secret_access_key")?;
    let session_token = secret(&raw.session_token, "session_token")?;
    let inline = match (&raw.access_key_id, secret_access_key) {
        (Some(id), Some(secret)) => Some(S3Credentials {
            access_key_id: id.get_ref().clone(),
            secret_access_key: secret,
            session_token,
            source: "the configuration".into(),
        }),
        (None, None) if session_token.is_none() => None,
        (Some(id), None) => {
            return cx.err(id.span(), f("secret_access_key"), "`access_key_id` needs `secret_access_key`")
        }
        _ => {
            return cx.err(
                s3.span(),
                f("access_key_id"),
                "`secret_access_key` and `session_token` need `access_key_id`",
            )
        }
    };
    if let (Some(_), Some(file)) = (&inline, &raw.credentials_file) {
        return cx.err(file.span(), f("credentials_file"), "credentials are given in the configuration already");
    }
    Ok(S3OriginConfig {
        http,
        bucket: bucket.clone(),
        region: region.clone(),
        inline,
        credentials_file: raw.credentials_file.as_ref().map(|p| relative_to(cx.file, p.get_ref())),
        profile: raw.profile.as_ref().map(|p| p.get_ref().clone()),
        at: cx.place(s3.span(), of("s3")),
        credentials: Slot::empty(),
    })
}
