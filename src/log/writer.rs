//! The access log's background writer: a thread that drains queued lines,
//! writes them to stdout or to a file, and rotates the file by size and age.
//!
//! A rotated file is renamed to `<file>.<UTC timestamp YYYYMMDDTHHMMSSZ>`
//! (`-1`, `-2`... added when several rotations share a second), a fresh
//! `<file>` starts with the header lines, and the oldest rotated files beyond
//! `keep` are deleted. A rotation that fails is logged and the writer carries
//! on with the file it has.

use super::{civil, Msg, FIELDS};
use crate::config::LogRotation;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// How often an idle writer wakes to check the age of its file.
const TICK: Duration = Duration::from_secs(1);
/// After a failed rotation, the next attempt waits this long.
const RETRY_AFTER: Duration = Duration::from_secs(10);
const BUFFER: usize = 64 * 1024;

fn header() -> String {
    format!("#Version: 1.0\n#Fields: {FIELDS}\n")
}

/// Where lines go.
pub(super) enum Sink {
    Stdout(BufWriter<std::io::Stdout>),
    File(Box<RotatingFile>),
}

impl Sink {
    pub(super) fn stdout() -> Sink {
        Sink::Stdout(BufWriter::with_capacity(BUFFER, std::io::stdout()))
    }

    pub(super) fn file(path: &Path, rotation: &LogRotation) -> std::io::Result<Sink> {
        Ok(Sink::File(Box::new(RotatingFile::open(path, rotation.clone())?)))
    }

    fn write(&mut self, line: &str) {
        match self {
            Sink::Stdout(w) => {
                let _ = w.write_all(line.as_bytes());
            }
            Sink::File(f) => f.write(line),
        }
    }

    fn flush(&mut self) {
        let _ = match self {
            Sink::Stdout(w) => w.flush(),
            Sink::File(f) => f.w.flush(),
        };
    }

    fn tick(&mut self) {
        if let Sink::File(f) = self {
            f.rotate_if_old();
        }
    }

    fn take(&mut self, msg: Msg, waiting: &mut Vec<mpsc::SyncSender<()>>) {
        match msg {
            Msg::Line(line) => self.write(&line),
            Msg::Flush(done) => waiting.push(done),
        }
    }

    /// The thread's loop: write what is queued, flush once the queue is
    /// drained, wake at least every second for age-based rotation, and end
    /// when every sender is gone.
    pub(super) fn run(mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            match rx.recv_timeout(TICK) {
                Ok(msg) => {
                    let mut waiting = Vec::new();
                    self.take(msg, &mut waiting);
                    while let Ok(msg) = rx.try_recv() {
                        self.take(msg, &mut waiting);
                    }
                    self.flush();
                    for w in waiting {
                        let _ = w.try_send(());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
            }
            self.tick();
        }
    }
}

/// A log file that rotates itself.
pub(super) struct RotatingFile {
    path: PathBuf,
    rotation: LogRotation,
    w: BufWriter<File>,
    /// Bytes in the file, buffered ones included.
    size: u64,
    /// Whether the file holds any line besides the header.
    has_lines: bool,
    opened: Instant,
    /// No rotation is tried before this (set after a failure).
    retry_at: Option<Instant>,
}

impl RotatingFile {
    /// Opens (appends to) `path`, writing the header when the file is new or empty.
    fn open(path: &Path, rotation: LogRotation) -> std::io::Result<RotatingFile> {
        let (w, size) = open_file(path)?;
        Ok(RotatingFile {
            path: path.to_owned(),
            rotation,
            w,
            size,
            has_lines: size > header().len() as u64,
            opened: Instant::now(),
            retry_at: None,
        })
    }

    fn write(&mut self, line: &str) {
        self.rotate_if_old();
        let len = line.len() as u64;
        if let Some(max) = self.rotation.max_bytes {
            // A line larger than the limit still goes, alone, into a fresh file.
            if self.has_lines && self.size.saturating_add(len) > max {
                self.rotate();
            }
        }
        let _ = self.w.write_all(line.as_bytes());
        self.size = self.size.saturating_add(len);
        self.has_lines = true;
    }

    fn rotate_if_old(&mut self) {
        let Some(interval) = self.rotation.interval else { return };
        if self.opened.elapsed() < interval {
            return;
        }
        if self.has_lines {
            self.rotate();
        } else {
            // Nothing to rotate: the period starts again rather than leaving empty files.
            self.opened = Instant::now();
        }
    }

    fn rotate(&mut self) {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        match self.try_rotate() {
            Ok(()) => self.retry_at = None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "access log rotation failed; writing on to the current file");
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
            }
        }
    }

    fn try_rotate(&mut self) -> std::io::Result<()> {
        self.w.flush()?;
        let dir = parent_dir(&self.path);
        let name = file_name(&self.path)?;
        let stamp = timestamp(SystemTime::now());
        // After the newest file of this second, so that name order stays age order.
        let suffix = rotated_files(&dir, &name)?
            .into_iter()
            .filter(|r| r.stamp == stamp)
            .map(|r| r.suffix + 1)
            .max()
            .unwrap_or(0);
        let mut target = dir.join(rotated_name(&name, &stamp, suffix));
        let mut suffix = suffix;
        while target.exists() {
            suffix += 1;
            target = dir.join(rotated_name(&name, &stamp, suffix));
        }
        std::fs::rename(&self.path, &target)?;
        // From here the old handle writes to the renamed file; should the new
        // one fail to open, the writer goes on with it.
        let (w, size) = open_file(&self.path)?;
        self.w = w;
        self.size = size;
        self.has_lines = size > header().len() as u64;
        self.opened = Instant::now();
        if self.rotation.keep > 0 {
            self.prune(&dir, &name);
        }
        Ok(())
    }

    /// Deletes the oldest rotated files beyond `keep`.
    fn prune(&self, dir: &Path, name: &str) {
        let mut files = match rotated_files(dir, name) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "access log rotation: listing rotated files failed");
                return;
            }
        };
        files.sort_by(|a, b| (&a.stamp, a.suffix).cmp(&(&b.stamp, b.suffix)));
        let excess = files.len().saturating_sub(self.rotation.keep);
        for f in &files[..excess] {
            if let Err(e) = std::fs::remove_file(&f.path) {
                tracing::warn!(path = %f.path.display(), error = %e, "access log rotation: deleting an old file failed");
            }
        }
    }
}

/// Opens `path` for appending; writes the header when it is new or empty.
/// Returns the writer and the file's size.
fn open_file(path: &Path) -> std::io::Result<(BufWriter<File>, u64)> {
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    let mut size = f.metadata()?.len();
    if size == 0 {
        let h = header();
        f.write_all(h.as_bytes())?;
        size = h.len() as u64;
    }
    Ok((BufWriter::with_capacity(BUFFER, f), size))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn file_name(path: &Path) -> std::io::Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "the log path has no UTF-8 file name"))
}

/// `YYYYMMDDTHHMMSSZ` in UTC.
fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z")
}

fn rotated_name(name: &str, stamp: &str, suffix: u32) -> String {
    if suffix == 0 {
        format!("{name}.{stamp}")
    } else {
        format!("{name}.{stamp}-{suffix}")
    }
}

struct Rotated {
    path: PathBuf,
    stamp: String,
    suffix: u32,
}

/// The rotated files of `name` in `dir`: `<name>.<timestamp>` or `<name>.<timestamp>-<n>`.
fn rotated_files(dir: &Path, name: &str) -> std::io::Result<Vec<Rotated>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(name)).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        if let Some((stamp, suffix)) = parse_rotated_suffix(rest) {
            out.push(Rotated { path: entry.path(), stamp: stamp.to_owned(), suffix });
        }
    }
    Ok(out)
}

/// Splits `YYYYMMDDTHHMMSSZ[-n]` into the timestamp and `n` (0 when absent).
fn parse_rotated_suffix(s: &str) -> Option<(&str, u32)> {
    let stamp = s.get(..16)?;
    let b = stamp.as_bytes();
    let shape = b.iter().enumerate().all(|(i, &c)| match i {
        8 => c == b'T',
        15 => c == b'Z',
        _ => c.is_ascii_digit(),
    });
    if !shape {
        return None;
    }
    match &s[16..] {
        "" => Some((stamp, 0)),
        rest => {
            let n = rest.strip_prefix('-')?;
            if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            Some((stamp, n.parse().ok()?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogTarget;
    use crate::log::AccessLog;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            let p = std::env::temp_dir().join(format!("mediaedge-log-{tag}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&p).expect("temp dir");
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The current file and the rotated ones, oldest first.
    fn log_files(dir: &Path, name: &str) -> Vec<PathBuf> {
        let mut rotated = rotated_files(dir, name).expect("list");
        rotated.sort_by(|a, b| (&a.stamp, a.suffix).cmp(&(&b.stamp, b.suffix)));
        let mut out: Vec<PathBuf> = rotated.into_iter().map(|r| r.path).collect();
        let current = dir.join(name);
        if current.exists() {
            out.push(current);
        }
        out
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).expect("read")
    }

    fn lines_in(files: &[PathBuf]) -> Vec<String> {
        files
            .iter()
            .flat_map(|f| read(f).lines().filter(|l| !l.starts_with('#')).map(str::to_owned).collect::<Vec<_>>())
            .collect()
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn suffixes_parse() {
        assert_eq!(parse_rotated_suffix("20240102T030405Z"), Some(("20240102T030405Z", 0)));
        assert_eq!(parse_rotated_suffix("20240102T030405Z-12"), Some(("20240102T030405Z", 12)));
        for bad in ["20240102T030405", "20240102T030405Z-", "20240102T030405Z-x", "20240102X030405Z", "gz", ""] {
            assert_eq!(parse_rotated_suffix(bad), None, "{bad}");
        }
        assert_eq!(timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)), "20231114T221320Z");
    }

    #[test]
    fn rotates_by_size() {
        let dir = TempDir::new("size");
        let path = dir.0.join("access.log");
        let header_len = header().len() as u64;
        let max = header_len + 200;
        let rotation = LogRotation { max_bytes: Some(max), interval: None, keep: 0 };
        let log = AccessLog::open(&LogTarget::File(path.clone()), "TST1".into(), false, &rotation).expect("open");
        let mut sent = Vec::new();
        for i in 0..40 {
            let line = format!("line {i:03} {}\n", "x".repeat(20 + i % 7));
            log.send(line.clone());
            sent.push(line.trim_end().to_owned());
        }
        // One line larger than the whole limit, then a few more.
        let big = format!("big {}", "y".repeat(400));
        log.send(format!("{big}\n"));
        sent.push(big.clone());
        for i in 0..3 {
            let line = format!("after {i}");
            log.send(format!("{line}\n"));
            sent.push(line);
        }
        wait_for("every line", || lines_in(&log_files(&dir.0, "access.log")).len() == sent.len());

        let files = log_files(&dir.0, "access.log");
        assert!(files.len() >= 5, "{files:?}");
        assert_eq!(lines_in(&files), sent, "each line once, in order");
        for f in &files {
            let text = read(f);
            assert!(text.starts_with(&header()), "{f:?} starts with the header");
            let oversized = text.contains(&big);
            assert!(text.len() as u64 <= max || oversized, "{f:?} is {} bytes", text.len());
            if oversized {
                assert_eq!(text.lines().count(), 3, "the oversized line is alone in {f:?}");
            }
        }
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn keeps_the_newest_rotated_files() {
        let dir = TempDir::new("keep");
        let path = dir.0.join("edge.log");
        // An unrelated file with a similar name is left alone.
        std::fs::write(dir.0.join("edge.log.notes"), "x").expect("write");
        let rotation = LogRotation { max_bytes: Some(header().len() as u64 + 10), interval: None, keep: 2 };
        let mut f = RotatingFile::open(&path, rotation).expect("open");
        for i in 0..6 {
            f.write(&format!("line {i} 12345\n"));
        }
        f.w.flush().expect("flush");
        let files = log_files(&dir.0, "edge.log");
        assert_eq!(files.len(), 3, "two rotated and the current: {files:?}");
        assert_eq!(lines_in(&files), ["line 3 12345", "line 4 12345", "line 5 12345"]);
        assert!(dir.0.join("edge.log.notes").exists());
    }

    #[test]
    fn reopening_appends_without_a_second_header() {
        let dir = TempDir::new("reopen");
        let path = dir.0.join("a.log");
        for i in 0..2 {
            let mut f = RotatingFile::open(&path, LogRotation::default()).expect("open");
            f.write(&format!("line {i}\n"));
            f.w.flush().expect("flush");
        }
        assert_eq!(read(&path), format!("{}line 0\nline 1\n", header()));
    }

    #[test]
    fn rotates_by_age_when_idle() {
        let dir = TempDir::new("age");
        let path = dir.0.join("access.log");
        let rotation = LogRotation { max_bytes: None, interval: Some(Duration::from_secs(1)), keep: 0 };
        let log = AccessLog::open(&LogTarget::File(path.clone()), "TST1".into(), false, &rotation).expect("open");
        log.send("first\n".into());
        // No further line: the writer's own wake-up rotates the file.
        let d = dir.0.as_path();
        let rotated = |n: usize| move || rotated_files(d, "access.log").is_ok_and(|r| r.len() == n);
        wait_for("an age rotation", rotated(1));
        log.send("second\n".into());
        wait_for("a second age rotation", rotated(2));
        let files = log_files(&dir.0, "access.log");
        assert_eq!(files.len(), 3, "{files:?}");
        assert_eq!(read(&files[0]), format!("{}first\n", header()));
        assert_eq!(read(&files[1]), format!("{}second\n", header()));
        assert_eq!(read(&files[2]), header());
    }

    #[test]
    fn no_age_rotation_without_lines() {
        let dir = TempDir::new("idle");
        let path = dir.0.join("access.log");
        let rotation = LogRotation { max_bytes: None, interval: Some(Duration::from_millis(30)), keep: 0 };
        let mut f = RotatingFile::open(&path, rotation).expect("open");
        std::thread::sleep(Duration::from_millis(40));
        f.rotate_if_old();
        assert!(rotated_files(&dir.0, "access.log").expect("list").is_empty());
        f.write("one\n");
        std::thread::sleep(Duration::from_millis(40));
        f.rotate_if_old();
        std::thread::sleep(Duration::from_millis(40));
        f.rotate_if_old();
        f.w.flush().expect("flush");
        let files = log_files(&dir.0, "access.log");
        assert_eq!(files.len(), 2, "{files:?}");
        assert_eq!(read(&files[1]), header());
    }
}
