//! Access logs in CloudFront's standard-log layout (tab-separated, one line a
//! request), written by a background thread so requests never wait on disk.
//! A file log rotates by size and age (see `writer`).

mod writer;

use crate::config::{LogRotation, LogTarget};
use crate::outcome::EdgeResult;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use writer::Sink;

/// What the writer thread is sent.
enum Msg {
    Line(String),
    /// Write and flush everything before this, then answer.
    Flush(mpsc::SyncSender<()>),
}

pub const FIELDS: &str = "date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end";

pub struct AccessLog {
    tx: mpsc::SyncSender<Msg>,
    pub edge_location: String,
    pub log_cookies: bool,
    dropped: AtomicU64,
}

impl AccessLog {
    /// Starts the writer thread. A file target is appended to (with the header
    /// lines when it is new) and rotated as `rotation` says; stdout never rotates.
    pub fn open(
        target: &LogTarget,
        edge_location: String,
        log_cookies: bool,
        rotation: &LogRotation,
    ) -> std::io::Result<Arc<AccessLog>> {
        let sink = match target {
            LogTarget::Stdout => Sink::stdout(),
            LogTarget::File(p) => Sink::file(p, rotation)?,
        };
        let (tx, rx) = mpsc::sync_channel::<Msg>(65_536);
        std::thread::Builder::new().name("access-log".into()).spawn(move || sink.run(rx))?;
        Ok(Arc::new(AccessLog { tx, edge_location, log_cookies, dropped: AtomicU64::new(0) }))
    }

    /// Queues a line (ending in a newline) without waiting; counts it as
    /// dropped when the writer has fallen behind.
    fn send(&self, line: String) {
        if self.tx.try_send(Msg::Line(line)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits (blocking, up to `limit`) until every line queued so far is
    /// written and flushed: at shutdown, before the process exits.
    pub fn flush(&self, limit: Duration) -> bool {
        let (done, wait) = mpsc::sync_channel(1);
        if self.tx.send(Msg::Flush(done)).is_err() {
            return false;
        }
        wait.recv_timeout(limit).is_ok()
    }

    /// Lines lost because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A request's log line, completed when its response body ends.
pub struct Pending {
    pub log: Arc<AccessLog>,
    pub start: Instant,
    pub ttfb: Option<Duration>,
    pub client: SocketAddr,
    pub method: String,
    pub host: String,
    pub uri_stem: String,
    pub query: String,
    pub referer: String,
    pub user_agent: String,
    pub cookie: String,
    pub forwarded_for: String,
    pub protocol_version: &'static str,
    pub tls: bool,
    pub request_bytes: u64,
    pub request_id: String,
    pub status: u16,
    /// How the response was produced (its result types).
    pub result: EdgeResult,
    pub content_type: String,
    pub content_len: String,
    pub range: Option<(u64, u64)>,
}

impl Pending {
    pub fn first_byte(&mut self) {
        if self.ttfb.is_none() {
            self.ttfb = Some(self.start.elapsed());
        }
    }

    /// Writes the line. `complete` is false when the viewer went away or the
    /// body failed before its end.
    pub fn finish(self: Box<Self>, sent: u64, complete: bool) {
        let taken = self.start.elapsed().as_secs_f64();
        let ttfb = self.ttfb.map_or(taken, |d| d.as_secs_f64());
        let now = httpdate::fmt_http_date(SystemTime::now());
        let (date, time) = iso_date_time(SystemTime::now()).unwrap_or_else(|| (now.clone(), String::new()));
        // A response cut short is an Error for the request, and keeps how the
        // edge classified the response it started to send.
        let request_result = if complete { self.result } else { EdgeResult::ClientCommError };
        let (rs, re) = match self.range {
            Some((s, e)) => (s.to_string(), e.to_string()),
            None => ("-".into(), "-".into()),
        };
        let f = [
            date,
            time,
            field(&self.log.edge_location),
            sent.to_string(),
            self.client.ip().to_string(),
            field(&self.method),
            field(&self.host),
            field(&self.uri_stem),
            self.status.to_string(),
            field(&self.referer),
            field(&self.user_agent),
            field(&self.query),
            field(&self.cookie),
            request_result.log_result().into(),
            field(&self.request_id),
            field(&self.host),
            if self.tls { "https".into() } else { "http".into() },
            self.request_bytes.to_string(),
            format!("{taken:.3}"),
            field(&self.forwarded_for),
            "-".into(),
            "-".into(),
            self.result.log_result().into(),
            self.protocol_version.into(),
            "-".into(),
            "-".into(),
            self.client.port().to_string(),
            format!("{ttfb:.3}"),
            request_result.detailed().into(),
            field(&self.content_type),
            field(&self.content_len),
            rs,
            re,
        ];
        let mut line = f.join("\t");
        line.push('\n');
        self.log.send(line);
    }
}

/// A log field: `-` when empty; white space, tabs and controls percent-encoded.
fn field(s: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ' ' => out.push_str("%20"),
            '\t' => out.push_str("%09"),
            '%' => out.push_str("%25"),
            c if c.is_control() => out.push_str(&format!("%{:02X}", c as u32 & 0xff)),
            c => out.push(c),
        }
    }
    out
}

/// `YYYY-MM-DD` and `HH:MM:SS` in UTC.
fn iso_date_time(t: SystemTime) -> Option<(String, String)> {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    let (y, m, d, hh, mm, ss) = civil(secs);
    Some((format!("{y:04}-{m:02}-{d:02}"), format!("{hh:02}:{mm:02}:{ss:02}")))
}

/// Year, month, day, hour, minute and second (UTC) of seconds since the epoch.
pub(crate) fn civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A short unique request id (base-62).
pub fn request_id() -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..20).map(|_| DIGITS[fastrand::usize(..62)] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_fields() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(iso_date_time(t).unwrap(), ("2023-11-14".into(), "22:13:20".into()));
        assert_eq!(field("Mozilla/5.0 (X11)\tx"), "Mozilla/5.0%20(X11)%09x");
        assert_eq!(field(""), "-");
        assert_eq!(FIELDS.split(' ').count(), 33);
    }
}
