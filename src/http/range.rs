//! `Range` requests (RFC 9110 §14): parsing, resolving against a length, and
//! `multipart/byteranges` framing.

use bytes::{BufMut, Bytes, BytesMut};

/// One range-spec as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// `first-last`, both inclusive.
    Closed(u64, u64),
    /// `first-`
    From(u64),
    /// `-suffix`
    Suffix(u64),
}

/// More range-specs than this and the header is ignored (a full 200 is sent).
pub const MAX_RANGES: usize = 32;

/// Parses a `Range` value. `None` means "ignore it": another unit, bad syntax,
/// or too many ranges (RFC 9110 lets a server ignore any of these).
pub fn parse(value: &[u8]) -> Option<Vec<Spec>> {
    let s = std::str::from_utf8(value).ok()?.trim();
    let (unit, set) = s.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    for part in set.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if specs.len() == MAX_RANGES {
            return None;
        }
        let (a, b) = part.split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        let spec = match (a.is_empty(), b.is_empty()) {
            (true, true) => return None,
            (true, false) => Spec::Suffix(digits(b)?),
            (false, true) => Spec::From(digits(a)?),
            (false, false) => {
                let (first, last) = (digits(a)?, digits(b)?);
                if last < first {
                    return None;
                }
                Spec::Closed(first, last)
            }
        };
        specs.push(spec);
    }
    if specs.is_empty() {
        None
    } else {
        Some(specs)
    }
}

/// A byte position: any run of digits whose value fits in 64 bits (leading
/// zeros allowed). Larger values are taken as invalid syntax, so the whole
/// header is ignored (RFC 9110 §14.2 lets a server ignore a Range it cannot
/// parse); values that fit are positions like any other, and one past the end
/// makes the range unsatisfiable (416).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = s.trim_start_matches('0');
    if significant.len() > 20 {
        return None;
    }
    if significant.is_empty() {
        return Some(0);
    }
    significant.parse().ok()
}

/// A satisfiable range: `start..end` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Satisfiable ranges, in request order, overlapping ones merged.
    Ranges(Vec<ByteRange>),
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Resolves specs against a representation of `len` bytes.
pub fn resolve(specs: &[Spec], len: u64) -> Resolved {
    let mut out: Vec<ByteRange> = Vec::with_capacity(specs.len());
    for spec in specs {
        let r = match *spec {
            Spec::Closed(a, b) if a < len => ByteRange { start: a, end: b.saturating_add(1).min(len) },
            Spec::From(a) if a < len => ByteRange { start: a, end: len },
            Spec::Suffix(n) if n > 0 && len > 0 => ByteRange { start: len - n.min(len), end: len },
            _ => continue,
        };
        out.push(r);
    }
    if out.is_empty() {
        return Resolved::Unsatisfiable;
    }
    if out.len() > 1 {
        // Merge overlapping or adjacent ranges (RFC 9110 §14.2 allows it), so a
        // hostile "0-,0-,0-..." cannot multiply the response.
        let mut sorted = out.clone();
        sorted.sort_by_key(|r| r.start);
        let mut merged: Vec<ByteRange> = Vec::with_capacity(sorted.len());
        for r in sorted {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        if merged.len() < out.len() {
            out = merged;
        }
    }
    Resolved::Ranges(out)
}

/// The `Content-Range` value for one range; `len` `None` writes `*`.
pub fn content_range(r: ByteRange, len: Option<u64>) -> String {
    match len {
        Some(len) => format!("bytes {}-{}/{}", r.start, r.end - 1, len),
        None => format!("bytes {}-{}/*", r.start, r.end - 1),
    }
}

/// A `multipart/byteranges` body: the parts framed around slices of `body`.
/// Returns the boundary and the pieces to send, in order (no body bytes copied).
pub fn multipart(body: &Bytes, ranges: &[ByteRange], content_type: Option<&str>) -> (String, Vec<Bytes>) {
    let frame = Multipart::new(ranges, body.len() as u64, content_type);
    let mut pieces = Vec::with_capacity(ranges.len() * 2 + 1);
    for (head, r) in frame.heads.into_iter().zip(ranges) {
        pieces.push(head);
        pieces.push(body.slice(r.start as usize..r.end as usize));
    }
    pieces.push(frame.tail);
    (frame.boundary, pieces)
}

/// The framing of a `multipart/byteranges` body over a representation of
/// `len` bytes: each range's part head goes before its bytes, `tail` after
/// the last part.
pub struct Multipart {
    pub boundary: String,
    pub heads: Vec<Bytes>,
    pub tail: Bytes,
}

impl Multipart {
    pub fn new(ranges: &[ByteRange], len: u64, content_type: Option<&str>) -> Multipart {
        let boundary = format!("mediaedge-{:016x}", fastrand::u64(..));
        let heads = ranges
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut head = BytesMut::with_capacity(128);
                if i > 0 {
                    head.put_slice(b"\r\n");
                }
                head.put_slice(format!("--{boundary}\r\n").as_bytes());
                if let Some(ct) = content_type {
                    head.put_slice(format!("Content-Type: {ct}\r\n").as_bytes());
                }
                head.put_slice(format!("Content-Range: {}\r\n\r\n", content_range(*r, Some(len))).as_bytes());
                head.freeze()
            })
            .collect();
        let tail = Bytes::from(format!("\r\n--{boundary}--\r\n"));
        Multipart { boundary, heads, tail }
    }

    /// The body's length: the framing plus the ranges' bytes.
    pub fn body_len(&self, ranges: &[ByteRange]) -> u64 {
        let framing: usize = self.heads.iter().map(Bytes::len).sum::<usize>() + self.tail.len();
        framing as u64 + ranges.iter().map(ByteRange::len).sum::<u64>()
    }
}

/// A `Content-Range` value as an origin sends it on a 206: `bytes a-b/len`
/// (the complete length must be known). Returns the range and the length.
pub fn parse_content_range(value: &[u8]) -> Option<(ByteRange, u64)> {
    let s = std::str::from_utf8(value).ok()?.trim();
    let (unit, rest) = s.split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (span, len) = rest.trim().split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let (first, last, len) = (digits(a)?, digits(b)?, digits(len)?);
    if last < first || last >= len {
        return None;
    }
    Some((ByteRange { start: first, end: last + 1 }, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves() {
        let s = parse(b"bytes=0-99").unwrap();
        assert_eq!(resolve(&s, 1000), Resolved::Ranges(vec![ByteRange { start: 0, end: 100 }]));
        let s = parse(b"bytes=-100").unwrap();
        assert_eq!(resolve(&s, 1000), Resolved::Ranges(vec![ByteRange { start: 900, end: 1000 }]));
        let s = parse(b"bytes=990-").unwrap();
        assert_eq!(resolve(&s, 1000), Resolved::Ranges(vec![ByteRange { start: 990, end: 1000 }]));
        let s = parse(b"bytes=0-5000").unwrap();
        assert_eq!(resolve(&s, 1000), Resolved::Ranges(vec![ByteRange { start: 0, end: 1000 }]));
        let s = parse(b"bytes=2000-3000").unwrap();
        assert_eq!(resolve(&s, 1000), Resolved::Unsatisfiable);
        let s = parse(b"bytes=-0").unwrap();
        assert_eq!(resolve(&s, 1000), Resolved::Unsatisfiable);
        assert_eq!(parse(b"bytes=5-2"), None);
        assert_eq!(parse(b"items=0-1"), None);
        assert_eq!(parse(b"bytes=abc"), None);
        assert_eq!(parse(b"bytes=99999999999999999999-"), None);
        let many = format!("bytes={}", vec!["0-1"; 33].join(","));
        assert_eq!(parse(many.as_bytes()), None);
    }

    #[test]
    fn positions_up_to_2_pow_64_are_numbers() {
        // RFC 9110 §14.1.2: a first-byte-pos at or past the length is
        // unsatisfiable, however large, as long as it is a number we can hold.
        let s = parse(b"bytes=18446744073709551615-").unwrap();
        assert_eq!(s, vec![Spec::From(u64::MAX)]);
        assert_eq!(resolve(&s, 1000), Resolved::Unsatisfiable);
        let s = parse(b"bytes=18446744073709551614-18446744073709551615").unwrap();
        assert_eq!(resolve(&s, 1000), Resolved::Unsatisfiable);
        let s = parse(b"bytes=0-18446744073709551615").unwrap();
        assert_eq!(resolve(&s, 1000), Resolved::Ranges(vec![ByteRange { start: 0, end: 1000 }]));
        let s = parse(b"bytes=-18446744073709551615").unwrap();
        assert_eq!(resolve(&s, 1000), Resolved::Ranges(vec![ByteRange { start: 0, end: 1000 }]));
        assert_eq!(parse(b"bytes=00000000000000000000000010-"), Some(vec![Spec::From(10)]));
        // Past 2^64 - 1: not a number we take, so the Range is ignored.
        assert_eq!(parse(b"bytes=18446744073709551616-"), None);
        assert_eq!(parse(b"bytes=-99999999999999999999"), None);
    }

    #[test]
    fn overlapping_ranges_merge() {
        let s = parse(b"bytes=0-10,5-20,100-110").unwrap();
        assert_eq!(
            resolve(&s, 1000),
            Resolved::Ranges(vec![ByteRange { start: 0, end: 21 }, ByteRange { start: 100, end: 111 }])
        );
        let s = parse(b"bytes=0-,0-,0-").unwrap();
        assert_eq!(resolve(&s, 10), Resolved::Ranges(vec![ByteRange { start: 0, end: 10 }]));
    }

    #[test]
    fn content_ranges_from_an_origin() {
        assert_eq!(parse_content_range(b"bytes 0-99/1000"), Some((ByteRange { start: 0, end: 100 }, 1000)));
        assert_eq!(parse_content_range(b"BYTES 10-10/11"), Some((ByteRange { start: 10, end: 11 }, 11)));
        assert_eq!(parse_content_range(b"bytes 0-99/*"), None);
        assert_eq!(parse_content_range(b"bytes 0-1000/1000"), None);
        assert_eq!(parse_content_range(b"bytes 9-2/10"), None);
        assert_eq!(parse_content_range(b"bytes */1000"), None);
        assert_eq!(parse_content_range(b"items 0-1/2"), None);
    }

    #[test]
    fn multipart_length_matches_its_pieces() {
        let body = Bytes::from_static(b"0123456789abcdef");
        let ranges = [ByteRange { start: 0, end: 3 }, ByteRange { start: 10, end: 16 }];
        let (boundary, pieces) = multipart(&body, &ranges, Some("video/mp4"));
        let sent: usize = pieces.iter().map(Bytes::len).sum();
        let frame = Multipart::new(&ranges, 16, Some("video/mp4"));
        assert_eq!(frame.body_len(&ranges), sent as u64);
        assert!(pieces.last().unwrap().ends_with(format!("--{boundary}--\r\n").as_bytes()));
    }
}
