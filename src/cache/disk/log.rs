//! The segment files: a ring written append-only, one segment at a time.
//!
//! When the segment being written is full, the next one in the ring (the
//! oldest) is emptied: its entries leave the index, its generation is bumped
//! (readers of its old records see the change and stop), and writing starts
//! at its beginning. Nothing live is ever moved or rewritten.

use super::record::{self, Kind, RecordHeader, RECORD_HEADER, SEGMENT_HEADER};
use crate::cache::body::Extent;
use bytes::Bytes;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub struct Segment {
    pub id: u32,
    pub file: File,
    /// 0: never written. Bumped before a segment is reused.
    pub generation: AtomicU64,
    /// Held (shared) by a stream writing into its record, with the
    /// generation checked; taken (exclusive) to bump the generation: a stream
    /// never writes into a segment after it was reused.
    pub reuse: std::sync::RwLock<()>,
}

impl Segment {
    pub fn open(dir: &Path, id: u32) -> io::Result<Segment> {
        let path = super::segment_path(dir, id);
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        Ok(Segment { id, file, generation: AtomicU64::new(0), reuse: std::sync::RwLock::new(()) })
    }
}

/// Where a record's body lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub seg: u32,
    pub generation: u64,
    /// Offset of the body's first byte in the segment file.
    pub body_at: u64,
    pub body_len: u64,
    /// The record's CRC-32 of metadata and body, checked at each whole read.
    pub crc: u32,
}

/// A body on disk, read in place; it stops being readable when its segment
/// is reused.
#[derive(Debug)]
pub struct DiskExtent {
    pub seg: Arc<Segment>,
    pub loc: Location,
    pub stats: Arc<super::Stats>,
    /// The body's per-piece checksums (bodies above `PIECES_ABOVE`).
    pub pieces: Option<Arc<[u32]>>,
    /// Told when a piece fails its checksum: the record leaves the index.
    pub on_bad: Option<super::Forget>,
}

impl Extent for DiskExtent {
    fn len(&self) -> u64 {
        self.loc.body_len
    }

    fn is_valid(&self) -> bool {
        self.seg.generation.load(Ordering::Acquire) == self.loc.generation
    }

    fn read_at(&self, pos: u64, max: usize) -> io::Result<Bytes> {
        self.read(pos, max, false)
    }

    fn read_cached(&self, pos: u64, max: usize) -> io::Result<Bytes> {
        self.read(pos, max, true)
    }
}

impl DiskExtent {
    fn read(&self, pos: u64, max: usize, cached_only: bool) -> io::Result<Bytes> {
        let gone = || io::Error::other("the disk copy was evicted");
        if !self.is_valid() {
            return Err(gone());
        }
        let end = self.loc.body_len.min(pos.saturating_add(max as u64));
        if pos >= end {
            return Ok(Bytes::new());
        }
        // With per-piece checksums, whole pieces are read and checked, and
        // the asked part of them handed out.
        let (from, to) = match &self.pieces {
            Some(_) => ((pos / record::PIECE) * record::PIECE, end.div_ceil(record::PIECE) * record::PIECE),
            None => (pos, end),
        };
        let to = to.min(self.loc.body_len);
        let started = std::time::Instant::now();
        let r = read_bytes(&self.seg.file, self.loc.body_at + from, (to - from) as usize, cached_only);
        let buf = match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
            Ok(b) => {
                self.stats.read_latency.record(started.elapsed());
                self.stats.reads.fetch_add(1, Ordering::Relaxed);
                b
            }
            Err(e) => {
                self.stats.read_errors.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        // Reused while it was read: what was read may be the new records.
        if !self.is_valid() {
            return Err(gone());
        }
        if let Some(pieces) = &self.pieces {
            let first = (from / record::PIECE) as usize;
            for (i, piece) in buf.chunks(record::PIECE as usize).enumerate() {
                if pieces.get(first + i) != Some(&crc32fast::hash(piece)) {
                    self.stats.checksum_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        piece = first + i,
                        "disk cache record failed its checksum when read: dropped, the response is cut short"
                    );
                    if let Some(forget) = &self.on_bad {
                        forget.run(self.loc);
                    }
                    return Err(io::Error::other("a piece of the disk copy failed its checksum"));
                }
            }
        }
        self.stats.read_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.slice((pos - from) as usize..(end - from) as usize))
    }
}

/// Reads `n` bytes at `pos` into a new buffer (not zeroed first: pread
/// fills it). With `cached_only`, only from the page cache
/// (`preadv2(RWF_NOWAIT)`): `WouldBlock` if any of the bytes would need the
/// disk (or the filesystem cannot say), and the caller reads again, blocking,
/// off the async workers.
pub fn read_bytes(file: &File, pos: u64, n: usize, cached_only: bool) -> io::Result<Bytes> {
    use std::os::fd::AsRawFd;
    if cached_only && NOWAIT_UNSUPPORTED.load(Ordering::Relaxed) {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    let mut buf: Vec<u8> = Vec::with_capacity(n);
    let mut done = 0usize;
    while done < n {
        let spare = buf.spare_capacity_mut();
        let off = i64::try_from(pos + done as u64).map_err(|_| io::Error::other("offset out of range"))?;
        let (ptr, len) = (spare.as_mut_ptr().cast::<libc::c_void>(), n - done);
        // SAFETY: pread(2) and preadv2(2) write at most `n - done` bytes into
        // the spare capacity they are given (allocated, not yet initialised),
        // and report how many; only those are then counted as initialised.
        let r = unsafe {
            if cached_only {
                let iov = libc::iovec { iov_base: ptr, iov_len: len };
                libc::preadv2(file.as_raw_fd(), &iov, 1, off, libc::RWF_NOWAIT)
            } else {
                libc::pread(file.as_raw_fd(), ptr, len, off)
            }
        };
        match r {
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            r if r < 0 => {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EAGAIN) if cached_only => return Err(io::ErrorKind::WouldBlock.into()),
                    Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) if cached_only => {
                        NOWAIT_UNSUPPORTED.store(true, Ordering::Relaxed);
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    _ => return Err(e),
                }
            }
            r => {
                done += r as usize;
                // SAFETY: the first `done` bytes were written by the read above.
                unsafe { buf.set_len(done) };
            }
        }
    }
    Ok(Bytes::from(buf))
}

/// Set once a filesystem refused `RWF_NOWAIT`: every read then goes off the
/// async workers.
static NOWAIT_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// A record read back by the scan.
pub enum Scanned {
    Object { meta: Vec<u8>, header: RecordHeader, loc: Location, pieces: Option<Arc<[u32]>> },
    Purge(String),
    Invalidation(String, Vec<crate::cache::invalidate::PathMatch>),
}

/// Reads a segment's records in order, checking each whole (header, metadata
/// and body CRC). Returns the records, where the valid part ends and how many
/// records were dropped. A record failing its CRC is skipped; a header that
/// does not check, or a record running past the end of the file (a torn
/// write), ends the scan.
pub fn scan(seg: &Segment, generation: u64) -> io::Result<(Vec<Scanned>, u64, usize)> {
    let file_len = seg.file.metadata()?.len();
    let mut pos = SEGMENT_HEADER;
    let mut out = Vec::new();
    let mut dropped = 0;
    let mut buf = vec![0u8; 1 << 20];
    while pos + RECORD_HEADER as u64 <= file_len {
        let mut h = [0u8; RECORD_HEADER];
        seg.file.read_exact_at(&mut h, pos)?;
        let Some(header) = RecordHeader::decode(&h) else {
            // Zeros after the last record are the normal end; anything else is torn.
            if h.iter().any(|&b| b != 0) {
                dropped += 1;
            }
            break;
        };
        if pos + header.total() > file_len || header.meta_len > (1 << 20) {
            dropped += 1;
            break;
        }
        if header.kind == Kind::Pending {
            // A stream to disk that never finished (the edge stopped during
            // it): its room is known, its contents are not.
            dropped += 1;
            pos += header.total();
            continue;
        }
        let mut meta = vec![0u8; header.meta_len as usize];
        seg.file.read_exact_at(&mut meta, pos + RECORD_HEADER as u64)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&meta);
        let body_at = pos + RECORD_HEADER as u64 + header.meta_len as u64;
        let mut at = 0;
        while at < header.body_len {
            let n = (header.body_len - at).min(buf.len() as u64) as usize;
            seg.file.read_exact_at(&mut buf[..n], body_at + at)?;
            crc.update(&buf[..n]);
            at += n as u64;
        }
        // A record whose header checks but whose contents do not is dropped;
        // its length is known, so the scan goes on after it.
        let pieces = match header.pieces {
            0 => Some(None),
            n => {
                let mut t = vec![0u8; record::trailer_len(n) as usize];
                seg.file.read_exact_at(&mut t, body_at + header.body_len)?;
                record::decode_trailer(&t, n).map(|c| Some(c.into()))
            }
        };
        let (true, Some(pieces)) = (crc.finalize() == header.crc, pieces) else {
            dropped += 1;
            pos += header.total();
            continue;
        };
        let loc = Location { seg: seg.id, generation, body_at, body_len: header.body_len, crc: header.crc };
        match header.kind {
            Kind::Object => out.push(Scanned::Object { meta, header, loc, pieces }),
            Kind::Pending => {}
            Kind::PurgeKey => {
                if let Some(k) = record::decode_purge(&meta) {
                    out.push(Scanned::Purge(k.to_string()));
                }
            }
            Kind::Invalidation => {
                if let Some((d, paths)) = record::decode_invalidation(&meta) {
                    out.push(Scanned::Invalidation(d, paths));
                }
            }
        }
        pos += header.total();
    }
    Ok((out, pos, dropped))
}

/// Writes records at the end of the active segment (the writer thread's own).
pub struct Appender {
    pub segments: Vec<Arc<Segment>>,
    pub seg_bytes: u64,
    pub active: usize,
    pub pos: u64,
    pub next_generation: u64,
}

impl Appender {
    /// Whether a record this large fits in a segment at all.
    pub fn fits(&self, total: u64) -> bool {
        total <= self.seg_bytes - SEGMENT_HEADER
    }

    /// The segment the next roll empties, if this record does not fit.
    pub fn next_to_empty(&self, total: u64) -> Option<usize> {
        (self.pos + total > self.seg_bytes).then(|| (self.active + 1) % self.segments.len())
    }

    /// Starts writing the next segment (whose entries the caller dropped).
    pub fn roll(&mut self) -> io::Result<()> {
        let next = (self.active + 1) % self.segments.len();
        let seg = &self.segments[next];
        let generation = self.next_generation;
        self.next_generation += 1;
        {
            let _reuse = seg.reuse.write().unwrap_or_else(|e| e.into_inner());
            seg.generation.store(generation, Ordering::Release);
        }
        // The old header is cleared first: a segment cut short by a crash
        // reads as empty, and a full disk fails here, before anything else.
        seg.file.write_all_at(&[0u8; SEGMENT_HEADER as usize], 0)?;
        seg.file.set_len(0)?;
        seg.file.write_all_at(&record::segment_header(generation), 0)?;
        self.active = next;
        self.pos = SEGMENT_HEADER;
        Ok(())
    }

    /// Appends a record (the caller checked `fits` and rolled if needed).
    /// Bodies above `PIECES_ABOVE` get their per-piece checksums (returned).
    pub fn append(
        &mut self,
        kind: Kind,
        meta: &[u8],
        body: &[u8],
        stored_ms: u64,
    ) -> io::Result<(Location, Option<Arc<[u32]>>)> {
        let mut crc = crc32fast::Hasher::new();
        crc.update(meta);
        crc.update(body);
        let pieces = (record::pieces_for(body.len() as u64) > 0).then(|| record::piece_crcs(body));
        let header = RecordHeader {
            kind,
            meta_len: meta.len() as u32,
            body_len: body.len() as u64,
            stored_ms,
            crc: crc.finalize(),
            pieces: pieces.as_ref().map_or(0, |p| p.len() as u32),
        };
        let seg = &self.segments[self.active];
        let at = self.pos;
        seg.file.write_all_at(&header.encode(), at)?;
        seg.file.write_all_at(meta, at + RECORD_HEADER as u64)?;
        let body_at = at + RECORD_HEADER as u64 + meta.len() as u64;
        seg.file.write_all_at(body, body_at)?;
        if let Some(p) = &pieces {
            seg.file.write_all_at(&record::encode_trailer(p), body_at + body.len() as u64)?;
        }
        self.pos += header.total();
        Ok((
            Location {
                seg: self.active as u32,
                generation: seg.generation.load(Ordering::Acquire),
                body_at,
                body_len: body.len() as u64,
                crc: header.crc,
            },
            pieces.map(Into::into),
        ))
    }

    /// Takes room for a record streamed to disk later (`Stream`): writes its
    /// header as `Pending` (so that a scan skips it until it is complete)
    /// and its metadata; the body and trailer are written by the stream.
    pub fn reserve(&mut self, meta: &[u8], body_len: u64, stored_ms: u64) -> io::Result<(Arc<Segment>, u64, Location)> {
        let header = RecordHeader {
            kind: Kind::Pending,
            meta_len: meta.len() as u32,
            body_len,
            stored_ms,
            crc: 0,
            pieces: record::pieces_for(body_len),
        };
        let seg = &self.segments[self.active];
        let at = self.pos;
        seg.file.write_all_at(&header.encode(), at)?;
        seg.file.write_all_at(meta, at + RECORD_HEADER as u64)?;
        self.pos += header.total();
        let loc = Location {
            seg: self.active as u32,
            generation: seg.generation.load(Ordering::Acquire),
            body_at: at + RECORD_HEADER as u64 + meta.len() as u64,
            body_len,
            crc: 0,
        };
        Ok((seg.clone(), at, loc))
    }

    /// Appends a record read whole from another segment (header, metadata
    /// and body as they were; the caller checked it and that it fits).
    pub fn append_raw(&mut self, raw: &[u8], meta_len: usize) -> io::Result<Location> {
        let header = RecordHeader::decode(raw).ok_or_else(|| io::Error::other("a copied record does not decode"))?;
        let seg = &self.segments[self.active];
        let at = self.pos;
        seg.file.write_all_at(raw, at)?;
        self.pos += raw.len() as u64;
        Ok(Location {
            seg: self.active as u32,
            generation: seg.generation.load(Ordering::Acquire),
            body_at: at + (RECORD_HEADER + meta_len) as u64,
            body_len: header.body_len,
            crc: header.crc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{read_bytes, NOWAIT_UNSUPPORTED};
    use std::io::Write;
    use std::sync::atomic::Ordering;

    #[test]
    fn reads_from_the_page_cache_give_the_bytes_or_would_block_never_others() {
        let path = std::env::temp_dir().join(format!("mediaedge-nowait-{}", std::process::id()));
        let body: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::File::create(&path).and_then(|mut f| f.write_all(&body)).expect("write");
        let file = std::fs::File::open(&path).expect("open");
        // Just written: in the page cache, unless the filesystem cannot say.
        match read_bytes(&file, 1000, 300_000, true) {
            Ok(b) => assert!(b[..] == body[1000..301_000], "other bytes from the page cache"),
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
                assert!(NOWAIT_UNSUPPORTED.load(Ordering::Relaxed), "would block on bytes just written");
            }
        }
        assert!(read_bytes(&file, 1000, 300_000, false).expect("read")[..] == body[1000..301_000]);
        // Past the end: an error, not a short read.
        assert!(read_bytes(&file, 500_000, 200_000, false).is_err());
        let _ = std::fs::remove_file(&path);
    }
}
