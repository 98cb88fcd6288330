//! `[cache.disk]`: the disk tier's settings (docs/disk-cache.md).

use super::{relative_to, Ctx};
use crate::config::units::{ByteSize, Secs};
use crate::config::{ConfigError, DiskAdmission, DiskConfig};
use serde::Deserialize;
use toml::Spanned;

/// The smallest disk tier accepted.
const MIN_SIZE: u64 = 8 << 20;
const MIN_SEGMENT: u64 = 1 << 20;
const MAX_SEGMENT: u64 = 1 << 30;
/// Segments in the ring, at least: each is the unit of eviction.
const MIN_SEGMENTS: u64 = 4;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDisk {
    path: Option<Spanned<String>>,
    size: Option<Spanned<ByteSize>>,
    segment_size: Option<Spanned<ByteSize>>,
    admission: Option<Spanned<String>>,
    write_retry: Option<Spanned<Secs>>,
}

pub(super) fn resolve(cx: &Ctx, raw: Spanned<RawDisk>) -> Result<DiskConfig, ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let Some(path) = raw.path.filter(|p| !p.get_ref().trim().is_empty()) else {
        return cx.err(
            span,
            "cache.disk.path".into(),
            "a disk cache needs a directory (path = \"/var/cache/mediaedge\")",
        );
    };
    let Some(size) = raw.size else {
        return cx.err(span, "cache.disk.size".into(), "a disk cache needs a size (size = \"20GiB\")");
    };
    let size_bytes = size.get_ref().0;
    if size_bytes < MIN_SIZE {
        return cx.err(size.span(), "cache.disk.size".into(), "must be at least 8MiB");
    }
    let segment_bytes = match raw.segment_size {
        Some(s) => {
            let v = s.get_ref().0;
            if !(MIN_SEGMENT..=MAX_SEGMENT).contains(&v) {
                return cx.err(s.span(), "cache.disk.segment_size".into(), "must be between 1MiB and 1GiB");
            }
            if v.saturating_mul(MIN_SEGMENTS) > size_bytes {
                return cx.err(
                    s.span(),
                    "cache.disk.segment_size".into(),
                    format!("must be at most a quarter of size ({} bytes)", size_bytes / MIN_SEGMENTS),
                );
            }
            v
        }
        // An eighth of the disk (at most 256 MiB): a segment's unused tail
        // (less than one record) is small beside it, where size / 64 left a
        // sixth of a small disk unused with objects of 256 KiB.
        None => (size_bytes / 8).clamp(MIN_SEGMENT, 256 << 20).min(size_bytes / MIN_SEGMENTS),
    };
    let admission = match raw.admission {
        None => DiskAdmission::SecondHit,
        Some(a) => match a.get_ref().as_str() {
            "always" => DiskAdmission::Always,
            "second-hit" => DiskAdmission::SecondHit,
            other => {
                return cx.err(
                    a.span(),
                    "cache.disk.admission".into(),
                    format!("{other:?} is not an admission policy: use \"second-hit\" or \"always\""),
                )
            }
        },
    };
    let write_retry = match raw.write_retry {
        None => std::time::Duration::from_secs(60),
        Some(r) if r.get_ref().0 < std::time::Duration::from_secs(1) => {
            return cx.err(r.span(), "cache.disk.write_retry".into(), "must be at least 1s");
        }
        Some(r) => r.get_ref().0,
    };
    Ok(DiskConfig { path: relative_to(cx.file, path.get_ref()), size_bytes, segment_bytes, admission, write_retry })
}
