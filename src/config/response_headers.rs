//! Response headers policies: the headers a behavior adds to (or removes
//! from) every response it sends to viewers: CORS, security headers, custom
//! headers, `Server-Timing` (CloudFront's response headers policies; see
//! docs/response-headers.md). Plain data: the values are made into header
//! values once, when the configuration is read.

use http::header::{HeaderName, HeaderValue};

/// One behavior's response headers policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseHeadersPolicy {
    pub cors: Option<CorsPolicy>,
    /// Security headers, then custom headers: each added to every response,
    /// or only where the origin's response lacks it (`override` off).
    pub add: Vec<AddedHeader>,
    /// Removed from every response (the origin's and the policy's own are
    /// never the same name: the configuration refuses it).
    pub remove: Vec<HeaderName>,
    /// `Server-Timing` on this percentage (0–100) of responses; `None`: never.
    pub server_timing: Option<f64>,
}

/// A header the policy adds.
#[derive(Debug, Clone, PartialEq)]
pub struct AddedHeader {
    pub name: HeaderName,
    pub value: HeaderValue,
    /// Replace the origin's header of the same name (else the origin's wins).
    pub override_origin: bool,
}

/// The CORS part of a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct CorsPolicy {
    pub allow_origins: AllowOrigins,
    /// `Access-Control-Allow-Methods` (preflights only).
    pub allow_methods: HeaderValue,
    /// `Access-Control-Allow-Headers` (preflights only); `None`: not sent.
    pub allow_headers: Option<HeaderValue>,
    /// `*` among the allowed headers: with credentials (where a browser does
    /// not read `*` as a wildcard) the preflight's requested headers are echoed.
    pub allow_any_header: bool,
    /// `Access-Control-Expose-Headers`; `None`: not sent.
    pub expose_headers: Option<HeaderValue>,
    /// `Access-Control-Max-Age` (preflights only); `None`: not sent.
    pub max_age: Option<HeaderValue>,
    pub allow_credentials: bool,
    /// The policy's CORS headers replace the origin's; off: an origin
    /// response with `Access-Control-Allow-Origin` keeps its own, and a
    /// preflight the behavior may forward (it allows `OPTIONS`) goes to the origin.
    pub origin_override: bool,
}

/// Which viewer origins (the `Origin` request header) CORS allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowOrigins {
    /// Every origin: `Access-Control-Allow-Origin: *` on every response (the
    /// same for all viewers, so nothing varies on `Origin`).
    Any,
    /// These origins only: the viewer's `Origin` is echoed when it is one of
    /// them (`Vary: Origin` on every response).
    List(Vec<OriginPattern>),
}

/// One allowed origin: `scheme://host[:port]`, or `scheme://*.domain[:port]`
/// for every subdomain of `domain`. Lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    /// `scheme://` for a wildcard (the part before `*.`), or the whole origin.
    pub prefix: String,
    /// `.domain[:port]` for a wildcard; `None`: an exact origin.
    pub suffix: Option<String>,
}

impl OriginPattern {
    /// Parses one configured origin; `Err` says what is wrong.
    pub fn parse(s: &str) -> Result<OriginPattern, &'static str> {
        let s = s.to_ascii_lowercase();
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err("is not an origin such as \"https://player.example.com\" (scheme://host[:port])");
        };
        if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) {
            return Err("has no valid scheme (such as https://)");
        }
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return Err("must be scheme://host[:port], with no path, query or user");
        }
        let host_ok = |h: &str| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        match rest.strip_prefix("*.") {
            Some(domain) if host_ok(domain) => {
                Ok(OriginPattern { prefix: format!("{scheme}://"), suffix: Some(format!(".{domain}")) })
            }
            None if host_ok(rest) => Ok(OriginPattern { prefix: s.clone(), suffix: None }),
            _ => Err("has characters no host name has (a wildcard is written scheme://*.domain)"),
        }
    }

    /// Whether a viewer's `Origin` is this one (ASCII case ignored).
    pub fn matches(&self, origin: &[u8]) -> bool {
        let eq = |a: &[u8], b: &str| a.eq_ignore_ascii_case(b.as_bytes());
        match &self.suffix {
            None => eq(origin, &self.prefix),
            Some(suffix) => {
                let (p, s) = (self.prefix.len(), suffix.len());
                // At least one character of subdomain between the two.
                origin.len() > p + s
                    && eq(&origin[..p], &self.prefix)
                    && eq(&origin[origin.len() - s..], suffix)
                    && !origin[p..origin.len() - s].iter().any(|b| b"/:@".contains(b))
            }
        }
    }
}

impl CorsPolicy {
    /// Whether a viewer's `Origin` is allowed.
    pub fn allows(&self, origin: &[u8]) -> bool {
        match &self.allow_origins {
            AllowOrigins::Any => true,
            AllowOrigins::List(list) => list.iter().any(|p| p.matches(origin)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_by_subdomain() {
        let exact = OriginPattern::parse("https://Player.Example.com").unwrap();
        assert!(exact.matches(b"https://player.example.com"));
        assert!(!exact.matches(b"http://player.example.com"));
        assert!(!exact.matches(b"https://player.example.com:8443"));
        let wild = OriginPattern::parse("https://*.example.com").unwrap();
        assert!(wild.matches(b"https://a.example.com"));
        assert!(wild.matches(b"https://a.b.example.com"));
        assert!(!wild.matches(b"https://example.com"));
        assert!(!wild.matches(b"https://.example.com"));
        assert!(!wild.matches(b"https://evil.com/.example.com"));
        assert!(!wild.matches(b"https://a.example.com.evil.com"));
        for bad in ["example.com", "https://", "https://a.com/path", "://a.com", "https://a b.com"] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
