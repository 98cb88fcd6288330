//! The canonical form of a request path, computed once per request before
//! routing, so that routing, signature checks, the cache key, invalidations,
//! the origin request and the folder origin all see one spelling of a path.
//!
//! RFC 3986 §6.2.2, applied to the path:
//! - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded;
//! - the other escapes keep their encoding, with upper-case hex (`%3a` → `%3A`);
//!   they are never decoded twice: `%252e` stays `%252e`;
//! - bytes that may not appear literally in a path (non-ASCII, `"`, `{`, ...)
//!   are percent-encoded;
//! - dot segments are removed (§5.2.4) and repeated slashes merged.
//!
//! Refused (the request gets 400): a path that is not absolute, an encoded `/`
//! or `\`, a literal `\`, an encoded control character (NUL included), a `%`
//! not followed by two hex digits, escapes that do not decode to UTF-8
//! (overlong forms included), a dot segment with parameters (`..;x`), and a
//! path that climbs above the root.

use std::borrow::Cow;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    EncodedSlash,
    Backslash,
    ControlCharacter,
    BadEscape,
    NotUtf8,
    DotSegmentParameters,
    AboveRoot,
}

impl PathError {
    /// What the viewer reads after "400 Bad Request: ".
    pub fn reason(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "the request target is not a path",
            PathError::EncodedSlash => "the path contains an encoded slash (%2F)",
            PathError::Backslash => "the path contains a backslash",
            PathError::ControlCharacter => "the path contains an encoded control character",
            PathError::BadEscape => "the path contains a % not followed by two hex digits",
            PathError::NotUtf8 => "the path's escapes do not decode to UTF-8",
            PathError::DotSegmentParameters => "the path contains a dot segment with parameters",
            PathError::AboveRoot => "the path climbs above the root",
        }
    }
}

/// The canonical form of `path` (borrowed when `path` already is canonical).
pub fn canonical(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_canonical(path.as_bytes()) {
        check_utf8(path)?;
        return Ok(Cow::Borrowed(path));
    }
    let bytes = path.as_bytes();
    // Pass 1: escapes and literal bytes, segment by segment.
    let mut segments: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    for raw in bytes[1..].split(|&b| b == b'/') {
        let seg = segment(raw)?;
        if seg.is_empty() {
            // Repeated or trailing slash.
            trailing_slash = true;
            continue;
        }
        trailing_slash = false;
        match seg.as_str() {
            "." => trailing_slash = true,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = true;
            }
            _ => {
                let name = seg.split(';').next().unwrap_or("");
                if name == "." || name == ".." {
                    return Err(PathError::DotSegmentParameters);
                }
                segments.push(seg);
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    check_utf8(&out)?;
    if out == path {
        return Ok(Cow::Borrowed(path));
    }
    Ok(Cow::Owned(out))
}

/// The bytes a canonical path holds literally: `pchar` literals and `/`
/// (one table lookup per byte on the hit path).
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = is_pchar_literal(c as u8) || c as u8 == b'/';
        c += 1;
    }
    t
};

/// The fast path: no byte to encode, escapes only where needed and in upper
/// case, no empty or dot segment.
fn is_canonical(b: &[u8]) -> bool {
    let mut prev = b'/';
    let mut i = 1;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let upper = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
            let (Some(&h), Some(&l)) = (b.get(i + 1), b.get(i + 2)) else { return false };
            if !upper(h) || !upper(l) {
                return false;
            }
            let v = (hex(h).unwrap_or(0) << 4) | hex(l).unwrap_or(0);
            if is_unreserved(v) || matches!(v, 0..=0x1f | 0x7f | b'/' | b'\\') {
                return false;
            }
            prev = c;
            i += 3;
            continue;
        }
        if !PLAIN[c as usize] {
            return false;
        }
        if prev == b'/' {
            // An empty segment, or one that starts with a dot (checked the slow way).
            if c == b'/' || c == b'.' {
                return false;
            }
        }
        prev = c;
        i += 1;
    }
    true
}

/// One segment with its escapes normalised; `.`/`..` come back as such.
fn segment(raw: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c == b'%' {
            let (Some(h), Some(l)) = (raw.get(i + 1).and_then(|&h| hex(h)), raw.get(i + 2).and_then(|&l| hex(l)))
            else {
                return Err(PathError::BadEscape);
            };
            let v = h << 4 | l;
            match v {
                b'/' => return Err(PathError::EncodedSlash),
                b'\\' => return Err(PathError::Backslash),
                0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                _ if is_unreserved(v) => out.push(v as char),
                _ => push_escape(&mut out, v),
            }
            i += 3;
            continue;
        }
        match c {
            b'\\' => return Err(PathError::Backslash),
            0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            _ if is_pchar_literal(c) => out.push(c as char),
            _ => push_escape(&mut out, c),
        }
        i += 1;
    }
    Ok(out)
}

/// Whether the bytes the escapes stand for, with the literal ASCII around
/// them, are UTF-8 (overlong forms such as `%C0%AE` are not).
fn check_utf8(path: &str) -> Result<(), PathError> {
    if !path.contains('%') {
        return Ok(());
    }
    match percent_encoding::percent_decode_str(path).decode_utf8() {
        Ok(_) => Ok(()),
        Err(_) => Err(PathError::NotUtf8),
    }
}

fn push_escape(out: &mut String, v: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[(v >> 4) as usize] as char);
    out.push(HEX[(v & 15) as usize] as char);
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3.
const fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `pchar` without `pct-encoded`: what a segment may hold literally.
const fn is_pchar_literal(c: u8) -> bool {
    is_unreserved(c)
        || matches!(c, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'@')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> String {
        canonical(p).unwrap_or_else(|e| panic!("{p}: {e:?}")).into_owned()
    }

    fn err(p: &str) -> PathError {
        canonical(p).expect_err(p)
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for p in [
            "/",
            "/a",
            "/a/b.m3u8",
            "/a/",
            "/a%20b",
            "/%C3%A9/%25",
            "/a%3A",
            "/a.b/c..d",
            "/x;v=1/y",
            "/a-b_c~d/e!f$g&h'i(j)k*l+m,n;o=p:q@r",
            "/.../b",
            "/.hidden",
            "/a/..b",
        ] {
            assert!(matches!(canonical(p), Ok(Cow::Borrowed(q)) if q == p), "{p}");
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_uppercased() {
        assert_eq!(ok("/%70rivate/x"), "/private/x");
        assert_eq!(ok("/pr%69vate/x"), "/private/x");
        assert_eq!(ok("/%7e%2D%5f%2E%41"), "/~-_.A");
        assert_eq!(ok("/a%3ab"), "/a%3Ab");
        assert_eq!(ok("/a%20b"), "/a%20b");
        assert_eq!(ok("/a%c3%a9"), "/a%C3%A9");
        // Literal bytes that may not appear in a path are encoded.
        assert_eq!(ok("/a\"b{c}"), "/a%22b%7Bc%7D");
        assert_eq!(ok("/é"), "/%C3%A9");
    }

    #[test]
    fn refusals_on_the_fast_path() {
        assert_eq!(err("/%C3"), PathError::NotUtf8);
        assert_eq!(err("/%C0%AE"), PathError::NotUtf8);
    }

    #[test]
    fn escapes_are_decoded_once() {
        assert_eq!(ok("/a/%252e%252e/b"), "/a/%252e%252e/b");
        assert_eq!(ok("/%25"), "/%25");
        assert_eq!(ok("/%252F"), "/%252F");
    }

    #[test]
    fn dot_segments_and_repeated_slashes() {
        assert_eq!(ok("//private/x"), "/private/x");
        assert_eq!(ok("///private/x"), "/private/x");
        assert_eq!(ok("/./private/x"), "/private/x");
        assert_eq!(ok("/pub/../private/x"), "/private/x");
        assert_eq!(ok("/pub/%2e%2e/private/x"), "/private/x");
        assert_eq!(ok("/pub/%2e%2E/private/x"), "/private/x");
        assert_eq!(ok("/pub/.%2e/private/x"), "/private/x");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/a/b/."), "/a/b/");
        assert_eq!(ok("/a//"), "/a/");
        assert_eq!(ok("/a/.."), "/");
        assert_eq!(ok("/."), "/");
        assert_eq!(ok("/..."), "/...");
        assert_eq!(ok("/a/.b/..c"), "/a/.b/..c");
    }

    #[test]
    fn refusals() {
        assert_eq!(err("pub"), PathError::NotAbsolute);
        assert_eq!(err("*"), PathError::NotAbsolute);
        assert_eq!(err("/pub%2f..%2fprivate/x"), PathError::EncodedSlash);
        assert_eq!(err("/pub/..%2fprivate/x"), PathError::EncodedSlash);
        assert_eq!(err("/private%2Fx"), PathError::EncodedSlash);
        assert_eq!(err("/%2fprivate/x"), PathError::EncodedSlash);
        assert_eq!(err("/a%5cb"), PathError::Backslash);
        assert_eq!(err("/a\\b"), PathError::Backslash);
        assert_eq!(err("/a%00b"), PathError::ControlCharacter);
        assert_eq!(err("/a%0d%0aX: y"), PathError::ControlCharacter);
        assert_eq!(err("/a%"), PathError::BadEscape);
        assert_eq!(err("/a%g1"), PathError::BadEscape);
        assert_eq!(err("/a%1"), PathError::BadEscape);
        assert_eq!(err("/%c0%ae%c0%ae/x"), PathError::NotUtf8);
        assert_eq!(err("/%ff"), PathError::NotUtf8);
        assert_eq!(err("/%c3"), PathError::NotUtf8);
        assert_eq!(err("/pub/..;/private/x"), PathError::DotSegmentParameters);
        assert_eq!(err("/pub/%2e%2e;x=1/private/x"), PathError::DotSegmentParameters);
        assert_eq!(err("/.;/x"), PathError::DotSegmentParameters);
        assert_eq!(err("/.."), PathError::AboveRoot);
        assert_eq!(err("/../x"), PathError::AboveRoot);
        assert_eq!(err("/a/../../x"), PathError::AboveRoot);
        assert_eq!(err("/%2e%2e/x"), PathError::AboveRoot);
    }

    #[test]
    fn canonical_is_idempotent() {
        for p in ["/%70rivate/x", "/a//b/../c/./d/", "/a%3ab%c3%a9", "/é/\"x\"", "/a/%252e/", "/.../b"] {
            let once = ok(p);
            assert!(matches!(canonical(&once), Ok(Cow::Borrowed(_))), "{p} → {once}");
        }
    }
}
