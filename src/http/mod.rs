//! HTTP pieces shared by the viewer side and the origin side: hop-by-hop
//! headers, ranges, conditional requests, and the response body type.

pub mod body;
pub mod conditional;
pub mod date;
pub mod path;
pub mod range;
pub mod sf;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1),
/// plus the ones named in `Connection`.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, including every header the `Connection` field names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP.iter() {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Appends `value` to a comma-separated header such as `Via` or `X-Forwarded-For`.
pub fn append_list(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let joined = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {value}"),
        _ => value.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(name, v);
    }
}

/// Whether a comma-separated header contains `token` (case-insensitive).
pub fn list_contains(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Parses an HTTP date header, in any of the three formats recipients must
/// accept (RFC 9110 §5.6.7).
pub fn date_header(headers: &HeaderMap, name: &HeaderName) -> Option<std::time::SystemTime> {
    headers.get(name).and_then(|v| v.to_str().ok()).and_then(|s| date::parse(s, std::time::SystemTime::now()))
}

/// `Age` values below this many seconds are made once and shared.
const SHARED_AGES: usize = 3600;

/// An `Age` header value. Those below an hour come from a table made at the
/// first use, so a hit allocates nothing for its `Age`.
pub fn age_value(secs: u64) -> HeaderValue {
    static AGES: std::sync::OnceLock<Box<[HeaderValue]>> = std::sync::OnceLock::new();
    match usize::try_from(secs) {
        Ok(i) if i < SHARED_AGES => {
            let table = AGES.get_or_init(|| {
                (0..SHARED_AGES).map(|n| HeaderValue::from_static(Box::leak(n.to_string().into_boxed_str()))).collect()
            });
            table[i].clone()
        }
        _ => HeaderValue::from(secs),
    }
}

/// The size of an HTTP/1.1 head: the request or status line (`line_len`
/// bytes plus framing) and the header fields.
pub fn head_size(line_len: usize, headers: &http::HeaderMap) -> u64 {
    let fields: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    (line_len + 12 + fields + 2) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_tokens() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_TYPE));
    }
}
