//! A behavior's origin request policy: what reaches the origin besides the
//! cache key, without being keyed (see docs/configuration.md).

use super::KeyList;
use http::header::{self, HeaderName};

/// What a behavior forwards to the origin besides its cache key, without
/// keying it (CloudFront's origin request policy). The default forwards
/// nothing un-keyed: a stored response can then depend only on what its key
/// holds.
#[derive(Debug, Clone, Default)]
pub struct OriginRequestPolicy {
    pub headers: ForwardedHeaders,
    pub query: KeyList,
    pub cookies: KeyList,
    /// Headers the edge computes about the viewer and adds.
    pub viewer_headers: Vec<ViewerHeader>,
}

/// Viewer request headers forwarded un-keyed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ForwardedHeaders {
    #[default]
    None,
    /// Every viewer header but the ones the edge owns (see [`reserved`]).
    AllViewer,
    /// The same without `Host`: the origin gets its own (most origins that
    /// serve one site, and object stores, need theirs).
    AllViewerExceptHost,
    /// Lower-case names.
    Allow(Vec<HeaderName>),
}

impl ForwardedHeaders {
    pub fn includes(&self, name: &HeaderName) -> bool {
        match self {
            ForwardedHeaders::None => false,
            ForwardedHeaders::AllViewer => reserved(name).is_none(),
            ForwardedHeaders::AllViewerExceptHost => reserved(name).is_none() && name != header::HOST,
            ForwardedHeaders::Allow(names) => names.contains(name),
        }
    }
}

/// A header the edge computes about the viewer (a viewer's own copy is never
/// forwarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewerHeader {
    /// `ip:port` of the viewer's connection.
    Address,
    /// `http` or `https`.
    ForwardedProto,
    /// `1.0`, `1.1` or `2.0`.
    HttpVersion,
}

impl ViewerHeader {
    pub const ALL: [ViewerHeader; 3] = [ViewerHeader::Address, ViewerHeader::ForwardedProto, ViewerHeader::HttpVersion];

    pub fn name(self) -> HeaderName {
        HeaderName::from_static(match self {
            ViewerHeader::Address => "cloudfront-viewer-address",
            ViewerHeader::ForwardedProto => "cloudfront-forwarded-proto",
            ViewerHeader::HttpVersion => "cloudfront-viewer-http-version",
        })
    }

    /// The computed header with this name.
    pub fn named(name: &HeaderName) -> Option<ViewerHeader> {
        ViewerHeader::ALL.into_iter().find(|h| h.name() == name)
    }
}

/// The edge's request id towards the origin.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-amz-cf-id");

/// Why a viewer header is never forwarded as it came on a request whose answer
/// may be shared (`None`: a policy may name it). The edge sets these itself,
/// or they describe a connection or a body a GET does not have.
pub fn reserved(name: &HeaderName) -> Option<&'static str> {
    let n = name.as_str();
    match n {
        "content-length"
        | "transfer-encoding"
        | "trailer"
        | "te"
        | "connection"
        | "keep-alive"
        | "proxy-connection"
        | "upgrade"
        | "expect"
        | "http2-settings"
        | "proxy-authorization"
        | "proxy-authenticate" => Some("describes the viewer's connection or body: a fill never carries it"),
        "range"
        | "if-range"
        | "if-match"
        | "if-none-match"
        | "if-modified-since"
        | "if-unmodified-since"
        | "cache-control"
        | "pragma" => Some("is the edge's own on a fill (its conditionals and range, none of the viewer's)"),
        "accept-encoding" => Some("is normalised by the edge (see `compress`)"),
        "cookie" => Some("cookies are forwarded by name: use `cookies`"),
        "authorization" => Some(
            "requests with Authorization bypass the cache and reach the origin whole; \
             it is never forwarded on requests whose answers are shared",
        ),
        "via" | "x-amz-cf-id" => Some("is set by the edge"),
        _ if n.starts_with("cloudfront-") => Some("is computed by the edge: name it in `viewer_headers`"),
        _ => None,
    }
}
