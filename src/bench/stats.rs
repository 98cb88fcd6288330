//! What the players measured: latency histograms with percentiles, counters
//! per request class, and the report printed at the end (a table, or JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Values below this are counted exactly; above, each power of two is split
/// into this many buckets, so a reported value is within 1/128 (0.8 %) of
/// the true one.
const SUB_BUCKETS: u64 = 64;
const SUB_BITS: u32 = 6;
/// Enough buckets for any `u64`.
const BUCKETS: usize = (SUB_BUCKETS + (64 - SUB_BITS as u64) * SUB_BUCKETS) as usize;

/// A log-linear histogram of `u64` values (microseconds here): constant
/// memory, constant-time recording, mergeable.
#[derive(Clone)]
pub struct Histogram {
    buckets: Box<[u64]>,
    count: u64,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: vec![0; BUCKETS].into_boxed_slice(), count: 0, min: u64::MAX, max: 0 }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram").field("count", &self.count).field("min", &self.min).field("max", &self.max).finish()
    }
}

fn bucket_of(v: u64) -> usize {
    if v < SUB_BUCKETS {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = exp - SUB_BITS;
    let sub = (v >> shift) - SUB_BUCKETS; // v >> shift is in [64, 128)
    (SUB_BUCKETS + u64::from(shift) * SUB_BUCKETS + sub) as usize
}

/// The smallest and largest value bucket `i` holds.
fn bucket_bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB_BUCKETS {
        return (i, i);
    }
    let shift = (i - SUB_BUCKETS) / SUB_BUCKETS;
    let sub = (i - SUB_BUCKETS) % SUB_BUCKETS;
    let low = (SUB_BUCKETS + sub) << shift;
    (low, low + ((1u64 << shift) - 1))
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.buckets[bucket_of(v)] += 1;
        self.count += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub fn record_duration(&mut self, d: Duration) {
        self.record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// The nearest-rank percentile `p` (0 < p ≤ 100): the smallest recorded
    /// value that at least `p` % of the values are less than or equal to,
    /// to within the bucket's precision. `p` = 100 is the exact maximum.
    /// `None` when nothing was recorded.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let p = if p.is_nan() { 100.0 } else { p.clamp(0.0, 100.0) };
        let rank = ((p / 100.0 * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, high) = bucket_bounds(i);
                let mid = low + (high - low) / 2;
                return Some(mid.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// The kinds of request a player makes; each is counted on its own, and the
/// report's rows are built from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A playlist or MPD load (master, media playlist, MPD refresh).
    Playlist = 0,
    /// An LL-HLS blocking playlist reload (`_HLS_msn`/`_HLS_part`).
    Blocking = 1,
    /// A media segment (or an init segment).
    Segment = 2,
    /// An LL-HLS partial segment.
    Part = 3,
}

/// Counters and latencies for one kind of request.
#[derive(Debug, Clone, Default)]
pub struct RowStats {
    /// Requests that completed (any outcome) within the run.
    pub requests: u64,
    /// Requests answered 2xx with the whole body read.
    pub ok: u64,
    /// Body bytes received (all responses).
    pub bytes: u64,
    pub stalls: u64,
    /// Errors by kind: a status code (`"404"`), `connect`, `timeout`, `io`,
    /// `parse`, `too-large`.
    pub errors: BTreeMap<String, u64>,
    /// Request sent → first body byte, successful requests only.
    pub ttfb: Histogram,
    /// Request sent → last body byte, successful requests only.
    pub download: Histogram,
}

impl RowStats {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn merge(&mut self, other: &RowStats) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.bytes += other.bytes;
        self.stalls += other.stalls;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.ttfb.merge(&other.ttfb);
        self.download.merge(&other.download);
    }
}

/// The players' shared counters (one short lock per request).
#[derive(Default)]
pub struct Shared {
    rows: Mutex<[RowStats; 4]>,
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut [RowStats; 4]) -> R) -> R {
        let mut rows = match self.rows.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut rows)
    }

    pub fn success(&self, class: Class, bytes: u64, ttfb: Duration, total: Duration) {
        self.with(|rows| {
            let row = &mut rows[class as usize];
            row.requests += 1;
            row.ok += 1;
            row.bytes += bytes;
            row.ttfb.record_duration(ttfb);
            row.download.record_duration(total);
        });
    }

    /// A request that failed (it counts as a request).
    pub fn failure(&self, class: Class, bytes: u64, kind: &str) {
        self.with(|rows| {
            let row = &mut rows[class as usize];
            row.requests += 1;
            row.bytes += bytes;
            *row.errors.entry(kind.to_string()).or_default() += 1;
        });
    }

    /// An error found after a successful request (a playlist that does not parse).
    pub fn error(&self, class: Class, kind: &str) {
        self.with(|rows| *rows[class as usize].errors.entry(kind.to_string()).or_default() += 1);
    }

    pub fn stall(&self, class: Class) {
        self.with(|rows| rows[class as usize].stalls += 1);
    }

    /// Requests, errors, and the p50 media (segment and part) TTFB so far.
    pub fn progress(&self) -> (u64, u64, Option<u64>) {
        self.with(|rows| {
            let requests = rows.iter().map(|r| r.requests).sum();
            let errors = rows.iter().map(RowStats::error_count).sum();
            let mut media = rows[Class::Segment as usize].ttfb.clone();
            media.merge(&rows[Class::Part as usize].ttfb);
            (requests, errors, media.percentile(50.0))
        })
    }

    pub fn rows(&self) -> Rows {
        self.with(|rows| {
            let mut playlist = rows[Class::Playlist as usize].clone();
            playlist.merge(&rows[Class::Blocking as usize]);
            let mut segment = rows[Class::Segment as usize].clone();
            segment.merge(&rows[Class::Part as usize]);
            Rows {
                playlist,
                segment,
                blocking: rows[Class::Blocking as usize].clone(),
                part: rows[Class::Part as usize].clone(),
            }
        })
    }
}

/// The report's rows. `playlist` includes `blocking`, `segment` includes `part`.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub playlist: RowStats,
    pub segment: RowStats,
    pub blocking: RowStats,
    pub part: RowStats,
}

impl Rows {
    pub fn requests(&self) -> u64 {
        self.playlist.requests + self.segment.requests
    }

    pub fn ok(&self) -> u64 {
        self.playlist.ok + self.segment.ok
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        let mut all = self.playlist.errors.clone();
        for (k, v) in &self.segment.errors {
            *all.entry(k.clone()).or_default() += v;
        }
        all
    }
}

/// Everything printed at the end of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub url: String,
    /// `hls-vod`, `hls-live`, `ll-hls`, `dash-static` or `dash-dynamic`.
    pub stream: String,
    /// The rendition the players chose, as the manifest names it.
    pub rendition: String,
    pub players: usize,
    pub duration: Duration,
    pub elapsed: Duration,
    /// Every player was done before `duration` (VOD played to the end).
    pub finished_early: bool,
    pub rows: Rows,
}

const PERCENTILES: [f64; 3] = [50.0, 95.0, 99.0];

/// Microseconds as milliseconds with three decimals (`"1.234"`), or `"-"`.
fn ms(v: Option<u64>) -> String {
    match v {
        Some(us) => format!("{}.{:03}", us / 1000, us % 1000),
        None => "-".to_string(),
    }
}

fn quantiles(h: &Histogram) -> [Option<u64>; 4] {
    [h.percentile(PERCENTILES[0]), h.percentile(PERCENTILES[1]), h.percentile(PERCENTILES[2]), h.max()]
}

/// `"404 ×3, timeout ×1"`.
pub fn error_summary(errors: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = errors.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
    parts.join(", ")
}

impl Report {
    /// The human table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let rows = &self.rows;
        let _ = writeln!(out, "mediaedge bench players: {}", self.url);
        let _ = writeln!(
            out,
            "stream {}, rendition {}; {} players for {:.1} s{}; {} requests, {} errors",
            self.stream,
            self.rendition,
            self.players,
            self.elapsed.as_secs_f64(),
            if self.finished_early { " (all players finished)" } else { "" },
            rows.requests(),
            rows.errors().values().sum::<u64>(),
        );
        let _ = writeln!(out);
        let groups = format!("{:<12} {:^37}  {:^37}", "", "TTFB (ms)", "download (ms)");
        let _ = writeln!(out, "{}", groups.trim_end());
        let _ = writeln!(
            out,
            "{:<12} {:>8} {:>8} {:>8} {:>9}   {:>8} {:>8} {:>8} {:>9} {:>8} {:>12} {:>7} {:>7}",
            "", "p50", "p95", "p99", "max", "p50", "p95", "p99", "max", "count", "bytes", "errors", "stalls"
        );
        let mut line = |name: &str, r: &RowStats| {
            let t = quantiles(&r.ttfb).map(ms);
            let d = quantiles(&r.download).map(ms);
            let _ = writeln!(
                out,
                "{:<12} {:>8} {:>8} {:>8} {:>9}   {:>8} {:>8} {:>8} {:>9} {:>8} {:>12} {:>7} {:>7}",
                name,
                t[0],
                t[1],
                t[2],
                t[3],
                d[0],
                d[1],
                d[2],
                d[3],
                r.requests,
                r.bytes,
                r.error_count(),
                r.stalls
            );
        };
        line("playlist", &rows.playlist);
        if rows.blocking.requests > 0 {
            line("  blocking", &rows.blocking);
        }
        line("segment", &rows.segment);
        if rows.part.requests > 0 {
            line("  part", &rows.part);
        }
        let errors = rows.errors();
        if !errors.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "errors: {}", error_summary(&errors));
        }
        out
    }

    /// The same as JSON (one object; times in milliseconds).
    pub fn json(&self) -> String {
        let rows = &self.rows;
        let mut out = String::from("{");
        let _ = write!(
            out,
            "\"url\":{},\"stream\":{},\"rendition\":{},\"players\":{},\"duration_s\":{},\"elapsed_s\":{},\"finished_early\":{},\"requests\":{},\"errors\":{},\"errors_by_kind\":{}",
            json_str(&self.url),
            json_str(&self.stream),
            json_str(&self.rendition),
            self.players,
            json_f64(self.duration.as_secs_f64()),
            json_f64(self.elapsed.as_secs_f64()),
            self.finished_early,
            rows.requests(),
            rows.errors().values().sum::<u64>(),
            json_counts(&rows.errors()),
        );
        for (name, r) in [
            ("playlist", &rows.playlist),
            ("segment", &rows.segment),
            ("blocking", &rows.blocking),
            ("part", &rows.part),
        ] {
            let _ = write!(out, ",{}:{}", json_str(name), row_json(r));
        }
        out.push('}');
        out
    }
}

fn row_json(r: &RowStats) -> String {
    let lat = |h: &Histogram| {
        let q = quantiles(h);
        format!(
            "{{\"p50\":{},\"p95\":{},\"p99\":{},\"max\":{}}}",
            json_ms(q[0]),
            json_ms(q[1]),
            json_ms(q[2]),
            json_ms(q[3])
        )
    };
    format!(
        "{{\"count\":{},\"ok\":{},\"bytes\":{},\"errors\":{},\"stalls\":{},\"errors_by_kind\":{},\"ttfb_ms\":{},\"download_ms\":{}}}",
        r.requests,
        r.ok,
        r.bytes,
        r.error_count(),
        r.stalls,
        json_counts(&r.errors),
        lat(&r.ttfb),
        lat(&r.download)
    )
}

fn json_counts(m: &BTreeMap<String, u64>) -> String {
    let fields: Vec<String> = m.iter().map(|(k, v)| format!("{}:{v}", json_str(k))).collect();
    format!("{{{}}}", fields.join(","))
}

fn json_ms(v: Option<u64>) -> String {
    match v {
        Some(us) => format!("{}.{:03}", us / 1000, us % 1000),
        None => "null".to_string(),
    }
}

fn json_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".to_string()
    }
}

/// A JSON string literal (RFC 8259): quotes, backslashes and control
/// characters escaped; everything else, including non-ASCII, as is.
pub fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Milliseconds for the progress line (`"1.2 ms"`).
pub fn short_ms(us: Option<u64>) -> String {
    match us {
        Some(us) => format!("{:.1} ms", us as f64 / 1000.0),
        None => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact nearest-rank percentile of sorted values.
    fn exact(sorted: &[u64], p: f64) -> u64 {
        let rank = ((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for i in 0..BUCKETS {
            let (low, high) = bucket_bounds(i);
            assert!(low <= high);
            if i > 0 {
                assert_eq!(low, last + 1, "bucket {i} starts where {} ended", i - 1);
            }
            assert_eq!(bucket_of(low), i);
            assert_eq!(bucket_of(high), i);
            last = high;
        }
        assert_eq!(last, u64::MAX);
        for v in [0, 1, 63, 64, 65, 127, 128, 129, 1000, 123_456_789, u64::MAX - 1, u64::MAX] {
            let (low, high) = bucket_bounds(bucket_of(v));
            assert!(low <= v && v <= high, "{v} in [{low}, {high}]");
        }
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::default();
        for v in 1..=50 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), Some(25));
        assert_eq!(h.percentile(95.0), Some(48));
        assert_eq!(h.percentile(99.0), Some(50));
        assert_eq!(h.percentile(100.0), Some(50));
        assert_eq!(h.percentile(0.0), Some(1));
        assert_eq!(h.max(), Some(50));
        assert_eq!(h.count(), 50);
    }

    #[test]
    fn empty_and_single() {
        let h = Histogram::default();
        assert_eq!(h.percentile(50.0), None);
        assert_eq!(h.max(), None);
        let mut h = Histogram::default();
        h.record(1_234_567);
        for p in [0.0, 50.0, 99.0, 100.0, f64::NAN] {
            assert_eq!(h.percentile(p), Some(1_234_567), "p{p}");
        }
    }

    #[test]
    fn large_values_within_one_percent() {
        // A skewed spread: mostly ~1 ms, a tail up to seconds.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut values = Vec::new();
        let mut h = Histogram::default();
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = if i % 100 == 0 { 100_000 + x % 5_000_000 } else { 500 + x % 1_500 };
            values.push(v);
            h.record(v);
        }
        values.sort_unstable();
        for p in [1.0, 10.0, 50.0, 90.0, 95.0, 99.0, 99.9] {
            let want = exact(&values, p) as f64;
            let got = h.percentile(p).expect("samples") as f64;
            assert!((got - want).abs() / want <= 0.01, "p{p}: {got} vs {want}");
        }
        assert_eq!(h.percentile(100.0), values.last().copied());
        assert_eq!(h.max(), values.last().copied());
    }

    #[test]
    fn merge_is_the_union() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        let mut all = Histogram::default();
        for v in 0..1000u64 {
            let v = v * 37;
            if v % 3 == 0 {
                a.record(v);
            } else {
                b.record(v);
            }
            all.record(v);
        }
        a.merge(&b);
        assert_eq!(a.count(), all.count());
        for p in [50.0, 95.0, 99.0, 100.0] {
            assert_eq!(a.percentile(p), all.percentile(p));
        }
        let mut empty = Histogram::default();
        empty.merge(&Histogram::default());
        assert_eq!(empty.percentile(50.0), None);
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("plain"), "\"plain\"");
        assert_eq!(json_str("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(json_str("l1\nl2\r\t"), "\"l1\\nl2\\r\\t\"");
        assert_eq!(json_str("\u{0}\u{1f}"), "\"\\u0000\\u001f\"");
        assert_eq!(json_str("ünï €"), "\"ünï €\"");
        assert_eq!(json_str("</script>"), "\"</script>\"");
    }

    #[test]
    fn report_json_and_table() {
        let shared = Shared::default();
        shared.success(Class::Playlist, 100, Duration::from_micros(1500), Duration::from_micros(2000));
        shared.success(Class::Blocking, 100, Duration::from_millis(150), Duration::from_millis(151));
        shared.success(Class::Part, 20_000, Duration::from_micros(800), Duration::from_micros(1200));
        shared.success(Class::Segment, 50_000, Duration::from_micros(900), Duration::from_micros(3000));
        shared.failure(Class::Segment, 9, "404");
        shared.stall(Class::Segment);
        shared.error(Class::Playlist, "parse");
        let report = Report {
            url: "http://x/\"q\".m3u8".into(),
            stream: "ll-hls".into(),
            rendition: "index.m3u8".into(),
            players: 2,
            duration: Duration::from_secs(4),
            elapsed: Duration::from_secs(4),
            finished_early: false,
            rows: shared.rows(),
        };
        let json = report.json();
        assert!(json.starts_with("{\"url\":\"http://x/\\\"q\\\".m3u8\""), "{json}");
        assert!(json.contains("\"requests\":5,\"errors\":2,\"errors_by_kind\":{\"404\":1,\"parse\":1}"), "{json}");
        assert!(json.contains("\"segment\":{\"count\":3,\"ok\":2,\"bytes\":70009,\"errors\":1,\"stalls\":1"), "{json}");
        assert!(json.contains("\"part\":{\"count\":1,"), "{json}");
        assert!(json.contains("\"ttfb_ms\":{\"p50\":1.500,\"p95\":150."), "{json}");
        let table = report.table();
        assert!(table.contains("  blocking"), "{table}");
        assert!(table.contains("  part"), "{table}");
        assert!(table.contains("errors: 404 ×1, parse ×1"), "{table}");
        let (requests, errors, p50) = shared.progress();
        assert_eq!((requests, errors), (5, 2));
        // 800 µs, to the bucket's precision (8 µs wide there).
        assert!(p50.is_some_and(|v| (800..808).contains(&v)), "{p50:?}");
    }
}
