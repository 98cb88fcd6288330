//! The bytes of the disk tier: segment headers and records.
//!
//! A segment file starts with a 64-byte header (magic, version, generation);
//! records follow back to back. A record is a 48-byte header (magic, kind,
//! lengths, the time its response arrived, a CRC-32 of its metadata and body
//! and a CRC-32 of the header itself), its metadata, its body and, for bodies
//! above `PIECES_ABOVE`, a trailer: the CRC-32 of each `PIECE` of the body
//! and a CRC-32 of that list, so that a body streamed from disk is checked
//! piece by piece as it is read. A record being streamed to disk is written
//! first as `Pending` (its length known, its contents not yet), and becomes
//! an `Object` when its last byte and its trailer are written. Everything is
//! little-endian. Whatever does not decode or check is dropped: a scan stops
//! at the first header that does not check, and skips a record whose
//! contents do not.

use crate::cache::invalidate::PathMatch;
use crate::cache::object::{Head, Object, VaryKey};
use crate::cache::policy::Freshness;
use crate::media::MediaKind;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const SEGMENT_HEADER: u64 = 64;
pub const RECORD_HEADER: usize = 48;
const SEGMENT_MAGIC: u32 = 0x4753_454d; // "MESG"
const RECORD_MAGIC: u32 = 0x4452_454d; // "MERD"
const VERSION: u16 = 1;
/// The unit of the per-piece checksums (and of reads of a body on disk).
pub const PIECE: u64 = 256 << 10;
/// Bodies larger than this carry per-piece checksums; smaller ones are read
/// whole and checked against the record's CRC.
pub const PIECES_ABOVE: u64 = 4 << 20;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A stored response: metadata (keys, head) and body.
    Object = 1,
    /// Everything stored before under one primary key is gone (a purge).
    PurgeKey = 2,
    /// Everything stored before under these paths of a distribution is gone.
    Invalidation = 3,
    /// An object being streamed to disk: its room is taken, its contents are
    /// not complete (a scan skips it).
    Pending = 4,
}

pub fn segment_header(generation: u64) -> [u8; SEGMENT_HEADER as usize] {
    let mut h = [0u8; SEGMENT_HEADER as usize];
    h[0..4].copy_from_slice(&SEGMENT_MAGIC.to_le_bytes());
    h[4..6].copy_from_slice(&VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&h[0..16]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The generation a segment header names, if it checks.
pub fn parse_segment_header(h: &[u8]) -> Option<u64> {
    if h.len() < 20 || u32_at(h, 0) != SEGMENT_MAGIC || u16_at(h, 4) != VERSION {
        return None;
    }
    (crc32fast::hash(&h[0..16]) == u32_at(h, 16)).then(|| u64_at(h, 8))
}

/// A record header, as read back.
#[derive(Debug, Clone, Copy)]
pub struct RecordHeader {
    pub kind: Kind,
    pub meta_len: u32,
    pub body_len: u64,
    pub stored_ms: u64,
    pub crc: u32,
    /// Per-piece checksums in the trailer (0: no trailer).
    pub pieces: u32,
}

impl RecordHeader {
    pub fn total(&self) -> u64 {
        RECORD_HEADER as u64 + self.meta_len as u64 + self.body_len + trailer_len(self.pieces)
    }

    pub fn encode(&self) -> [u8; RECORD_HEADER] {
        let mut h = [0u8; RECORD_HEADER];
        h[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        h[4..6].copy_from_slice(&VERSION.to_le_bytes());
        h[6..8].copy_from_slice(&(self.kind as u16).to_le_bytes());
        h[8..12].copy_from_slice(&self.meta_len.to_le_bytes());
        h[12..16].copy_from_slice(&self.pieces.to_le_bytes());
        h[16..24].copy_from_slice(&self.body_len.to_le_bytes());
        h[24..32].copy_from_slice(&self.stored_ms.to_le_bytes());
        h[32..36].copy_from_slice(&self.crc.to_le_bytes());
        let hc = crc32fast::hash(&h[0..44]);
        h[44..48].copy_from_slice(&hc.to_le_bytes());
        h
    }

    pub fn decode(h: &[u8]) -> Option<RecordHeader> {
        if h.len() < RECORD_HEADER || u32_at(h, 0) != RECORD_MAGIC || u16_at(h, 4) != VERSION {
            return None;
        }
        if crc32fast::hash(&h[0..44]) != u32_at(h, 44) {
            return None;
        }
        let kind = match u16_at(h, 6) {
            1 => Kind::Object,
            2 => Kind::PurgeKey,
            3 => Kind::Invalidation,
            4 => Kind::Pending,
            _ => return None,
        };
        Some(RecordHeader {
            kind,
            meta_len: u32_at(h, 8),
            body_len: u64_at(h, 16),
            stored_ms: u64_at(h, 24),
            crc: u32_at(h, 32),
            pieces: u32_at(h, 12),
        })
    }
}

/// How many per-piece checksums a body of this length gets (0: none).
pub fn pieces_for(body_len: u64) -> u32 {
    if body_len > PIECES_ABOVE {
        body_len.div_ceil(PIECE) as u32
    } else {
        0
    }
}

/// The trailer's length for this many pieces: their CRCs and the list's own.
pub fn trailer_len(pieces: u32) -> u64 {
    if pieces == 0 {
        0
    } else {
        4 * (pieces as u64 + 1)
    }
}

/// The CRC-32 of each piece of a body.
pub fn piece_crcs(body: &[u8]) -> Vec<u32> {
    body.chunks(PIECE as usize).map(crc32fast::hash).collect()
}

/// The trailer for these piece checksums.
pub fn encode_trailer(crcs: &[u32]) -> Vec<u8> {
    let mut t = Vec::with_capacity(4 * (crcs.len() + 1));
    for c in crcs {
        t.extend_from_slice(&c.to_le_bytes());
    }
    let own = crc32fast::hash(&t);
    t.extend_from_slice(&own.to_le_bytes());
    t
}

/// The piece checksums of a trailer, if it checks.
pub fn decode_trailer(t: &[u8], pieces: u32) -> Option<Vec<u32>> {
    if pieces == 0 || t.len() as u64 != trailer_len(pieces) {
        return None;
    }
    let (list, own) = t.split_at(t.len() - 4);
    if crc32fast::hash(list) != u32_at(own, 0) {
        return None;
    }
    Some(list.chunks_exact(4).map(|c| u32_at(c, 0)).collect())
}

/// Whether a whole record (header, metadata, body) reads back as written.
pub fn record_checks(raw: &[u8]) -> bool {
    let Some(h) = RecordHeader::decode(raw) else { return false };
    if raw.len() as u64 != h.total() {
        return false;
    }
    let trailer = trailer_len(h.pieces) as usize;
    let (contents, t) = raw[RECORD_HEADER..].split_at(raw.len() - RECORD_HEADER - trailer);
    crc32fast::hash(contents) == h.crc && (h.pieces == 0 || decode_trailer(t, h.pieces).is_some())
}

/// Whether metadata and body are the ones a record's CRC-32 was made of.
pub fn body_checks(meta: &[u8], body: &[u8], crc: u32) -> bool {
    let mut h = crc32fast::Hasher::new();
    h.update(meta);
    h.update(body);
    h.finalize() == crc
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The wall-clock time of an `Instant` in the past.
pub fn wall_time(at: Instant) -> SystemTime {
    SystemTime::now().checked_sub(at.elapsed()).unwrap_or(UNIX_EPOCH)
}

/// The `Instant` of a wall-clock time in the past (now, if it is not past).
fn instant_of(ms: u64) -> Instant {
    let since = unix_ms(SystemTime::now()).saturating_sub(ms);
    Instant::now().checked_sub(Duration::from_millis(since)).unwrap_or_else(Instant::now)
}

struct Writer(Vec<u8>);

impl Writer {
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(&(b.len() as u32).to_le_bytes());
        self.0.extend_from_slice(b);
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn duration(&mut self, d: Duration) {
        self.u64(d.as_nanos().min(u64::MAX as u128) as u64);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = u32_at(self.take(4)?, 0) as usize;
        self.take(n)
    }
    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16_at(self.take(2)?, 0))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64_at(self.take(8)?, 0))
    }
    fn duration(&mut self) -> Option<Duration> {
        Some(Duration::from_nanos(self.u64()?))
    }
}

fn media_code(m: MediaKind) -> u8 {
    match m {
        MediaKind::HlsPlaylist => 1,
        MediaKind::DashMpd => 2,
        MediaKind::InitSegment => 3,
        MediaKind::Segment => 4,
        MediaKind::Subtitle => 5,
        MediaKind::Other => 0,
    }
}

fn media_of(c: u8) -> MediaKind {
    match c {
        1 => MediaKind::HlsPlaylist,
        2 => MediaKind::DashMpd,
        3 => MediaKind::InitSegment,
        4 => MediaKind::Segment,
        5 => MediaKind::Subtitle,
        _ => MediaKind::Other,
    }
}

const NO_VARY: u16 = u16::MAX;

/// The metadata of an object record: its keys and everything but the body.
pub fn encode_object(primary: &str, secondary: &str, obj: &Object) -> Vec<u8> {
    let head = obj.head();
    let mut w = Writer(Vec::with_capacity(512));
    w.bytes(primary.as_bytes());
    w.bytes(secondary.as_bytes());
    w.u16(head.status.as_u16());
    let f = &head.freshness;
    for d in [f.ttl, f.initial_age, f.stale_while_revalidate, f.stale_if_error] {
        w.duration(d);
    }
    w.u8(f.must_revalidate as u8 | (f.heuristic as u8) << 1 | (obj.compressible as u8) << 2);
    w.u8(media_code(obj.media));
    match &obj.vary {
        None => w.u16(NO_VARY),
        Some(v) => {
            w.u16(v.names.len() as u16);
            for (n, val) in v.names.iter().zip(&v.values) {
                w.bytes(n.as_str().as_bytes());
                w.u8(val.is_some() as u8);
                w.bytes(val.as_deref().unwrap_or("").as_bytes());
            }
        }
    }
    w.u16(head.headers.len().min(u16::MAX as usize) as u16);
    for (n, v) in head.headers.iter().take(u16::MAX as usize) {
        w.bytes(n.as_str().as_bytes());
        w.bytes(v.as_bytes());
    }
    w.0
}

/// An object record's keys, read without the rest (for the index).
pub fn object_keys(meta: &[u8]) -> Option<(&str, &str)> {
    let mut r = Reader(meta);
    Some((r.str()?, r.str()?))
}

/// What an object record's metadata says, the body aside.
pub struct Decoded {
    pub head: Head,
    pub vary: Option<VaryKey>,
    pub compressible: bool,
    pub media: MediaKind,
}

pub fn decode_object(meta: &[u8], stored_ms: u64) -> Option<Decoded> {
    let mut r = Reader(meta);
    r.str()?;
    r.str()?;
    let status = StatusCode::from_u16(r.u16()?).ok()?;
    let (ttl, initial_age, swr, sie) = (r.duration()?, r.duration()?, r.duration()?, r.duration()?);
    let flags = r.u8()?;
    let media = media_of(r.u8()?);
    let vary = match r.u16()? {
        NO_VARY => None,
        n => {
            let mut v = VaryKey::default();
            for _ in 0..n {
                v.names.push(HeaderName::from_bytes(r.bytes()?).ok()?);
                let has = r.u8()? == 1;
                let val = r.str()?;
                v.values.push(has.then(|| val.to_string()));
            }
            Some(v)
        }
    };
    let mut headers = HeaderMap::new();
    for _ in 0..r.u16()? {
        let name = HeaderName::from_bytes(r.bytes()?).ok()?;
        headers.append(name, HeaderValue::from_bytes(r.bytes()?).ok()?);
    }
    let freshness = Freshness {
        ttl,
        initial_age,
        stale_while_revalidate: swr,
        stale_if_error: sie,
        must_revalidate: flags & 1 != 0,
        heuristic: flags & 2 != 0,
    };
    let mut head = Head::new(status, headers, freshness);
    head.stored_at = instant_of(stored_ms);
    Some(Decoded { head, vary, compressible: flags & 4 != 0, media })
}

pub fn encode_purge(primary: &str) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    w.bytes(primary.as_bytes());
    w.0
}

pub fn decode_purge(meta: &[u8]) -> Option<&str> {
    Reader(meta).str()
}

/// A path as an invalidation names it (`/a/b`, `/a?x=1`, `/live/*`).
pub fn path_text(p: &PathMatch) -> String {
    match p {
        PathMatch::Prefix(s) => format!("{s}*"),
        PathMatch::Exact { path, query: None } => path.clone(),
        PathMatch::Exact { path, query: Some(q) } => format!("{path}?{q}"),
    }
}

pub fn encode_invalidation(distribution: &str, paths: &[PathMatch]) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    w.bytes(distribution.as_bytes());
    w.u16(paths.len().min(u16::MAX as usize) as u16);
    for p in paths.iter().take(u16::MAX as usize) {
        w.bytes(path_text(p).as_bytes());
    }
    w.0
}

pub fn decode_invalidation(meta: &[u8]) -> Option<(String, Vec<PathMatch>)> {
    let mut r = Reader(meta);
    let dist = r.str()?.to_string();
    let mut paths = Vec::new();
    for _ in 0..r.u16()? {
        paths.push(PathMatch::parse(r.str()?).ok()?);
    }
    Some((dist, paths))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_bad_ones_are_refused() {
        let h = RecordHeader { kind: Kind::Object, meta_len: 10, body_len: 1 << 33, stored_ms: 7, crc: 99, pieces: 3 };
        let b = h.encode();
        let back = RecordHeader::decode(&b).unwrap();
        assert_eq!((back.meta_len, back.body_len, back.stored_ms, back.crc), (10, 1 << 33, 7, 99));
        let mut bad = b;
        bad[17] ^= 1;
        assert!(RecordHeader::decode(&bad).is_none());
        assert_eq!(parse_segment_header(&segment_header(42)), Some(42));
        let mut s = segment_header(42);
        s[9] ^= 1;
        assert_eq!(parse_segment_header(&s), None);
    }

    #[test]
    fn invalidations_round_trip() {
        let paths = vec![PathMatch::parse("/live/*").unwrap(), PathMatch::parse("/a?y=2&x=1").unwrap()];
        let (d, back) = decode_invalidation(&encode_invalidation("E1", &paths)).unwrap();
        assert_eq!((d.as_str(), back), ("E1", paths));
        assert!(decode_invalidation(&[1, 2]).is_none());
    }
}
