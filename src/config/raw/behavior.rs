//! One cache behavior: TTLs, cache key, streaming, signing, forwarding.

use super::*;

/// The smallest and largest `slice_size`: below, the origin requests cost more
/// than the bytes; above, one seek pulls too much.
const MIN_SLICE: u64 = 64 << 10;
const MAX_SLICE: u64 = 256 << 20;

pub(super) fn resolve_behavior(
    cx: &Ctx,
    field: &str,
    span: std::ops::Range<usize>,
    b: RawBehavior,
    pattern: Option<PathPattern>,
    origins: &[Arc<OriginConfig>],
    key_groups: &[Arc<KeyGroup>],
) -> Result<Behavior, ConfigError> {
    let origin = match &b.origin {
        Some(name) => match origins.iter().position(|o| o.id == *name.get_ref()) {
            Some(i) => i,
            None => {
                return cx.err(
                    name.span(),
                    format!("{field}.origin"),
                    format!("no origin has the id {:?}", name.get_ref()),
                )
            }
        },
        None => return cx.err(span, format!("{field}.origin"), "a behavior names its origin"),
    };
    let mut behavior = Behavior::default_for(origin);
    behavior.pattern = pattern;
    behavior.compress = b.compress;
    let st = &mut behavior.streaming;
    st.media_ttls = b.media_ttls.unwrap_or(b.default_ttl.is_none());
    if let Some(t) = b.master_playlist_ttl {
        st.master_playlist_ttl = t.0;
    }
    if let Some(t) = b.vod_manifest_ttl {
        st.vod_manifest_ttl = t.0;
    }
    st.live_manifest_ttl = b.live_manifest_ttl.map(|t| t.0);
    if let Some(t) = b.segment_ttl {
        st.segment_ttl = t.0;
    }
    st.blocking_reload = b.blocking_reload.unwrap_or(true);
    behavior.heuristic_freshness = b.heuristic_freshness.unwrap_or(false);
    if let Some(t) = &b.stale_if_error {
        if t.get_ref().0 > Duration::from_secs(31_536_000) {
            return cx.err(t.span(), format!("{field}.stale_if_error"), "must be at most one year (31536000 seconds)");
        }
        behavior.stale_if_error = t.get_ref().0;
    }
    behavior.websocket = b.websocket.unwrap_or(true);
    if let Some(n) = &b.slice_size {
        let n_bytes = n.get_ref().0;
        if !(MIN_SLICE..=MAX_SLICE).contains(&n_bytes) {
            return cx.err(n.span(), format!("{field}.slice_size"), "must lie between 64KiB and 256MiB");
        }
        behavior.slice_size = Some(n_bytes);
    }
    if let Some(p) = &b.set_cookie {
        behavior.set_cookie = match p.get_ref().as_str() {
            "pass" => SetCookiePolicy::Pass,
            "strip" => SetCookiePolicy::Strip,
            "store" => SetCookiePolicy::Store,
            other => {
                let msg = format!("{other:?}: expected \"pass\", \"strip\" or \"store\"");
                return cx.err(p.span(), format!("{field}.set_cookie"), msg);
            }
        };
    }
    if let Some(n) = &b.prefetch_segments {
        if *n.get_ref() > 32 {
            return cx.err(n.span(), format!("{field}.prefetch_segments"), "at most 32 segments");
        }
        st.prefetch_segments = *n.get_ref();
    }
    if let Some(methods) = &b.allowed_methods {
        let mut list = Vec::new();
        for m in methods.get_ref() {
            match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(m) => list.push(m),
                Err(_) => {
                    return cx.err(methods.span(), format!("{field}.allowed_methods"), format!("{m:?} is not a method"))
                }
            }
        }
        if !list.contains(&Method::GET) || !list.contains(&Method::HEAD) {
            return cx.err(methods.span(), format!("{field}.allowed_methods"), "must include GET and HEAD");
        }
        behavior.allowed_methods = list;
    }
    if let Some(t) = &b.min_ttl {
        behavior.min_ttl = t.get_ref().0;
    }
    if let Some(t) = &b.max_ttl {
        behavior.max_ttl = t.get_ref().0;
    }
    if let Some(t) = &b.default_ttl {
        behavior.default_ttl = t.get_ref().0;
    } else {
        behavior.default_ttl = behavior.default_ttl.clamp(behavior.min_ttl, behavior.max_ttl.max(behavior.min_ttl));
    }
    if behavior.min_ttl > behavior.max_ttl {
        let s = b.min_ttl.as_ref().map_or(span.clone(), |t| t.span());
        return cx.err(s, format!("{field}.min_ttl"), "is greater than max_ttl");
    }
    if behavior.default_ttl < behavior.min_ttl || behavior.default_ttl > behavior.max_ttl {
        let s = b.default_ttl.as_ref().map_or(span.clone(), |t| t.span());
        return cx.err(s, format!("{field}.default_ttl"), "must lie between min_ttl and max_ttl");
    }
    behavior.cache_key.query = resolve_list(cx, &format!("{field}.cache_key.query"), b.cache_key.query.as_ref(), 10)?;
    behavior.cache_key.cookies =
        resolve_list(cx, &format!("{field}.cache_key.cookies"), b.cache_key.cookies.as_ref(), 10)?;
    for (k, h) in b.cache_key.headers.iter().enumerate() {
        match HeaderName::from_bytes(h.get_ref().as_bytes()) {
            Ok(n) => behavior.cache_key.headers.push(n),
            Err(_) => {
                return cx.err(
                    h.span(),
                    format!("{field}.cache_key.headers[{k}]"),
                    format!("{:?} is not a header name", h.get_ref()),
                )
            }
        }
    }
    behavior.origin_request = forwarding::resolve(cx, field, &b, &behavior.cache_key)?;
    if let Some(p) = &b.viewer_protocol_policy {
        behavior.viewer_protocol_policy = match p.get_ref().as_str() {
            "allow-all" => ViewerProtocolPolicy::AllowAll,
            "redirect-to-https" => ViewerProtocolPolicy::RedirectToHttps,
            "https-only" => ViewerProtocolPolicy::HttpsOnly,
            other => {
                return cx.err(
                    p.span(),
                    format!("{field}.viewer_protocol_policy"),
                    format!("{other:?}: expected \"allow-all\", \"redirect-to-https\" or \"https-only\""),
                )
            }
        };
    }
    for (k, name) in b.trusted_key_groups.iter().enumerate() {
        match key_groups.iter().find(|g| g.id == *name.get_ref()) {
            Some(g) if behavior.trusted_key_groups.iter().any(|x| Arc::ptr_eq(x, g)) => {}
            Some(g) => behavior.trusted_key_groups.push(g.clone()),
            None => {
                return cx.err(
                    name.span(),
                    format!("{field}.trusted_key_groups[{k}]"),
                    format!("no key group has the id {:?}", name.get_ref()),
                )
            }
        }
    }
    if let Some(p) = &b.propagate_tokens {
        if *p.get_ref() && behavior.trusted_key_groups.is_empty() {
            return cx.err(
                p.span(),
                format!("{field}.propagate_tokens"),
                "needs trusted_key_groups on the same behavior",
            );
        }
        behavior.propagate_tokens = *p.get_ref();
    }
    behavior.response_headers = super::response_headers::resolve(cx, field, b.response_headers.as_ref())?;
    Ok(behavior)
}

pub(super) fn resolve_list(
    cx: &Ctx,
    field: &str,
    list: Option<&Spanned<RawList>>,
    max: usize,
) -> Result<KeyList, ConfigError> {
    let Some(list) = list else {
        return Ok(KeyList::None);
    };
    match list.get_ref() {
        RawList::Word(w) if w == "none" => Ok(KeyList::None),
        RawList::Word(w) if w == "all" => Ok(KeyList::All),
        RawList::Word(w) => {
            cx.err(list.span(), field.into(), format!("{w:?}: expected \"none\", \"all\" or a list of names"))
        }
        RawList::Names(names) if names.len() > max => {
            cx.err(list.span(), field.into(), format!("at most {max} names (got {})", names.len()))
        }
        RawList::Names(names) if names.iter().any(|n| n.is_empty()) => {
            cx.err(list.span(), field.into(), "names cannot be empty")
        }
        RawList::Names(names) => Ok(KeyList::Allow(names.clone())),
    }
}
