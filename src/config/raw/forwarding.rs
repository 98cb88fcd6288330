//! `origin_request`: what a behavior forwards to the origin without keying
//! it, checked against its cache key.

use super::{resolve_list, Ctx, RawBehavior, RawList};
use crate::config::origin_request::reserved;
use crate::config::{CacheKeyPolicy, ConfigError, ForwardedHeaders, KeyList, OriginRequestPolicy, ViewerHeader};
use http::header::HeaderName;
use serde::Deserialize;
use toml::Spanned;

/// Names a list may hold (CloudFront's limit per origin request policy).
const MAX_NAMES: usize = 10;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOriginRequest {
    headers: Option<Spanned<RawList>>,
    query: Option<Spanned<RawList>>,
    cookies: Option<Spanned<RawList>>,
    #[serde(default)]
    viewer_headers: Vec<Spanned<String>>,
}

/// The origin request policy of a behavior whose cache key is `key`. A name
/// cannot be both keyed and forwarded un-keyed, nor name a header the edge
/// owns; the cache key cannot name one either.
pub(super) fn resolve(
    cx: &Ctx,
    field: &str,
    b: &RawBehavior,
    key: &CacheKeyPolicy,
) -> Result<OriginRequestPolicy, ConfigError> {
    for (k, h) in b.cache_key.headers.iter().enumerate() {
        let Ok(name) = HeaderName::from_bytes(h.get_ref().as_bytes()) else { continue };
        if let Some(why) = reserved(&name).filter(|_| ViewerHeader::named(&name).is_none()) {
            return cx.err(h.span(), format!("{field}.cache_key.headers[{k}]"), format!("{:?} {why}", h.get_ref()));
        }
    }
    let raw = &b.origin_request;
    let f = |name: &str| format!("{field}.origin_request.{name}");
    let headers = headers(cx, &f("headers"), raw.headers.as_ref(), key)?;
    let query = names(cx, &f("query"), raw.query.as_ref(), &key.query, "query", "parameter")?;
    let cookies = names(cx, &f("cookies"), raw.cookies.as_ref(), &key.cookies, "cookies", "cookie")?;
    let mut viewer_headers = Vec::new();
    for (k, v) in raw.viewer_headers.iter().enumerate() {
        let at = format!("{}[{k}]", f("viewer_headers"));
        let named = HeaderName::from_bytes(v.get_ref().as_bytes()).ok();
        let Some(h) = named.as_ref().and_then(ViewerHeader::named) else {
            let known: Vec<String> = ViewerHeader::ALL.iter().map(|h| format!("{:?}", h.name().as_str())).collect();
            return cx.err(
                v.span(),
                at,
                format!("{:?} is not a header the edge computes: expected {}", v.get_ref(), known.join(", ")),
            );
        };
        if key.headers.contains(&h.name()) {
            return cx.err(v.span(), at, format!("{:?} is in the cache key, which forwards it", v.get_ref()));
        }
        if viewer_headers.contains(&h) {
            return cx.err(v.span(), at, format!("{:?} is named twice", v.get_ref()));
        }
        viewer_headers.push(h);
    }
    Ok(OriginRequestPolicy { headers, query, cookies, viewer_headers })
}

fn headers(
    cx: &Ctx,
    field: &str,
    raw: Option<&Spanned<RawList>>,
    key: &CacheKeyPolicy,
) -> Result<ForwardedHeaders, ConfigError> {
    let Some(list) = raw else {
        return Ok(ForwardedHeaders::None);
    };
    let names = match list.get_ref() {
        RawList::Word(w) if w == "none" => return Ok(ForwardedHeaders::None),
        RawList::Word(w) if w == "all-viewer" => return Ok(ForwardedHeaders::AllViewer),
        RawList::Word(w) if w == "all-viewer-except-host" => return Ok(ForwardedHeaders::AllViewerExceptHost),
        RawList::Word(w) => {
            return cx.err(
                list.span(),
                field.into(),
                format!(
                    "{w:?}: expected \"none\", \"all-viewer\", \"all-viewer-except-host\" or a list of header names"
                ),
            )
        }
        RawList::Names(names) if names.len() > MAX_NAMES => {
            return cx.err(list.span(), field.into(), format!("at most {MAX_NAMES} names (got {})", names.len()))
        }
        RawList::Names(names) => names,
    };
    let mut out: Vec<HeaderName> = Vec::new();
    for (k, n) in names.iter().enumerate() {
        let at = format!("{field}[{k}]");
        let Ok(name) = HeaderName::from_bytes(n.as_bytes()) else {
            return cx.err(list.span(), at, format!("{n:?} is not a header name"));
        };
        if let Some(why) = reserved(&name) {
            return cx.err(list.span(), at, format!("{n:?} {why}"));
        }
        if key.headers.contains(&name) {
            return cx.err(
                list.span(),
                at,
                format!("{n:?} is in the cache key (cache_key.headers), which forwards it: name it in one place"),
            );
        }
        if out.contains(&name) {
            return cx.err(list.span(), at, format!("{n:?} is named twice"));
        }
        out.push(name);
    }
    Ok(ForwardedHeaders::Allow(out))
}

/// A query-parameter or cookie list, which cannot repeat what the cache key
/// (`cache_key.<what>`) already forwards.
fn names(
    cx: &Ctx,
    field: &str,
    raw: Option<&Spanned<RawList>>,
    keyed: &KeyList,
    what: &str,
    noun: &str,
) -> Result<KeyList, ConfigError> {
    let list = resolve_list(cx, field, raw, MAX_NAMES)?;
    let (KeyList::Allow(names), Some(raw)) = (&list, raw) else {
        return Ok(list);
    };
    if *keyed == KeyList::All {
        return cx.err(
            raw.span(),
            field.into(),
            format!("cache_key.{what} is \"all\": every {noun} is keyed, and forwarded, already"),
        );
    }
    for (k, n) in names.iter().enumerate() {
        if keyed.includes(n) {
            return cx.err(
                raw.span(),
                format!("{field}[{k}]"),
                format!("{n:?} is in the cache key (cache_key.{what}), which forwards it: name it in one place"),
            );
        }
        if names[..k].contains(n) {
            return cx.err(raw.span(), format!("{field}[{k}]"), format!("{n:?} is named twice"));
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError, ForwardedHeaders, KeyList, ViewerHeader};
    use std::path::Path;

    const BASE: &str = "[[distributions]]\nid = \"E1\"\naliases = [\"a.example\"]\n[[distributions.origins]]\nid = \"o\"\nurl = \"http://127.0.0.1:9/\"\n[distributions.default_behavior]\norigin = \"o\"\n";

    fn parse(lines: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{BASE}{lines}\n"), Path::new("edge.toml"))
    }

    fn error(lines: &str) -> (usize, String, String) {
        let e = parse(lines).unwrap_err();
        (e.line, e.field.clone().unwrap_or_default(), e.message.clone())
    }

    #[test]
    fn defaults_forward_nothing_unkeyed() {
        let c = parse("").unwrap();
        let p = &c.distributions[0].default_behavior.origin_request;
        assert_eq!(p.headers, ForwardedHeaders::None);
        assert_eq!((&p.query, &p.cookies), (&KeyList::None, &KeyList::None));
        assert!(p.viewer_headers.is_empty());
    }

    #[test]
    fn policies_parse() {
        let c = parse(
            "origin_request.headers = [\"X-Device\", \"accept-language\"]\norigin_request.query = \"all\"\n\
             origin_request.cookies = [\"session\"]\norigin_request.viewer_headers = [\"CloudFront-Viewer-Address\"]",
        )
        .unwrap();
        let p = &c.distributions[0].default_behavior.origin_request;
        let names: Vec<&str> = match &p.headers {
            ForwardedHeaders::Allow(n) => n.iter().map(|n| n.as_str()).collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(names, ["x-device", "accept-language"]);
        assert_eq!(p.query, KeyList::All);
        assert_eq!(p.cookies, KeyList::Allow(vec!["session".into()]));
        assert_eq!(p.viewer_headers, [ViewerHeader::Address]);
        let c = parse("origin_request = { headers = \"all-viewer\" }").unwrap();
        assert_eq!(c.distributions[0].default_behavior.origin_request.headers, ForwardedHeaders::AllViewer);
        let c = parse("origin_request.headers = \"all-viewer-except-host\"").unwrap();
        let p = &c.distributions[0].default_behavior.origin_request;
        assert_eq!(p.headers, ForwardedHeaders::AllViewerExceptHost);
        assert!(p.headers.includes(&http::header::ORIGIN) && !p.headers.includes(&http::header::HOST));
    }

    #[test]
    fn contradictions_name_line_and_field() {
        let at = |k: &str| format!("distributions[0].default_behavior.{k}");
        let cases: [(&str, &str, &str); 11] = [
            ("origin_request.headers = [\"Content-Length\"]", "origin_request.headers[0]", "never carries it"),
            ("origin_request.headers = [\"x-a\", \"Range\"]", "origin_request.headers[1]", "the edge's own"),
            ("origin_request.headers = [\"x-amz-cf-id\"]", "origin_request.headers[0]", "set by the edge"),
            ("origin_request.headers = [\"cookie\"]", "origin_request.headers[0]", "use `cookies`"),
            ("origin_request.headers = [\"authorization\"]", "origin_request.headers[0]", "bypass the cache"),
            ("origin_request.headers = [\"CloudFront-Viewer-Address\"]", "origin_request.headers[0]", "viewer_headers"),
            (
                "cache_key.headers = [\"x-d\"]\norigin_request.headers = [\"X-D\"]",
                "origin_request.headers[0]",
                "in one place",
            ),
            (
                "cache_key.query = \"all\"\norigin_request.query = [\"a\"]",
                "origin_request.query",
                "keyed, and forwarded",
            ),
            (
                "cache_key.cookies = [\"s\"]\norigin_request.cookies = [\"t\", \"s\"]",
                "origin_request.cookies[1]",
                "cache_key.cookies",
            ),
            (
                "origin_request.viewer_headers = [\"cloudfront-viewer-country\"]",
                "origin_request.viewer_headers[0]",
                "not a header the edge computes",
            ),
            ("cache_key.headers = [\"X-Amz-Cf-Id\"]", "cache_key.headers[0]", "set by the edge"),
        ];
        for (lines, field, message) in cases {
            let (line, f, m) = error(lines);
            assert_eq!(f, at(field), "{lines}: {m}");
            assert!(m.contains(message), "{lines}: {m}");
            assert_eq!(line, 9 + lines.matches('\n').count(), "{lines}: {m}");
        }
        let (_, f, m) = error("origin_request.headers = \"all\"");
        assert_eq!((f.as_str(), m.contains("all-viewer")), (at("origin_request.headers").as_str(), true), "{m}");
        let (_, f, _) = error("origin_request.forward = \"all\"");
        assert!(f.contains("forward"), "{f}");
    }
}
