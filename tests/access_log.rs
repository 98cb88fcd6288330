//! The access log: CloudFront's standard-log layout, one tab-separated line a
//! request, written in the background.

mod common;
use common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A fresh, unique log path under the temp dir, removed on drop.
struct TempLog(PathBuf);

impl TempLog {
    fn new(tag: &str) -> TempLog {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("mediaedge-{tag}-{}-{nanos}-{}.log", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let p = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&p);
        TempLog(p)
    }

    fn toml_path(&self) -> String {
        self.0.display().to_string().replace('\\', "\\\\")
    }
}

impl Drop for TempLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn logged_config(origin: &str, log: &TempLog, server_extra: &str) -> String {
    format!(
        "[server]\naccess_log = \"{}\"\n{server_extra}\n\n\
         [[distributions]]\nid = \"ELOG\"\naliases = [\"media.example\"]\n\n\
         [[distributions.origins]]\nid = \"o\"\nurl = \"{origin}\"\n\n\
         [distributions.default_behavior]\norigin = \"o\"\n",
        log.toml_path()
    )
}

/// The file's header lines and its data lines, once it has `want` data lines
/// (polled for up to 5 s).
async fn wait_for_lines(path: &Path, want: usize) -> (Vec<String>, Vec<String>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let (headers, lines): (Vec<String>, Vec<String>) =
            text.lines().filter(|l| !l.is_empty()).map(str::to_string).partition(|l| l.starts_with('#'));
        if lines.len() >= want || std::time::Instant::now() > deadline {
            assert!(lines.len() >= want, "{} of {want} log lines after 5 s:\n{text}", lines.len());
            return (headers, lines);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A data line as field name → value, using the `#Fields:` header.
fn parse_line<'a>(fields: &'a [&'a str], line: &'a str) -> HashMap<&'a str, &'a str> {
    let values: Vec<&str> = line.split('\t').collect();
    assert_eq!(values.len(), 33, "{line:?}");
    fields.iter().copied().zip(values).collect()
}

fn fields_of(headers: &[String]) -> Vec<&str> {
    assert_eq!(headers.first().map(String::as_str), Some("#Version: 1.0"), "{headers:?}");
    let f = headers.iter().find_map(|h| h.strip_prefix("#Fields: ")).expect("a #Fields: line");
    f.split(' ').collect()
}

#[tokio::test]
async fn lines_record_misses_hits_ranges_and_edge_errors() {
    let o = TestOrigin::start().await;
    let body = payload(5000, 11);
    o.set("/v/seg.ts", Script::ok(body.clone()).header("content-type", "video/mp2t"));
    let log = TempLog::new("access");
    let e = edge(&logged_config(&o.url(), &log, "edge_location = \"TST1\"")).await;
    let c = client();
    let ua = "Test Agent/1.0 (mediaedge tests)";
    let host = [("host", "media.example"), ("user-agent", ua)];

    let (s, x, _, b) = get(&c, &url(&e, "/v/seg.ts?a=1&b=2"), &host).await;
    assert_eq!((s, x.as_str(), b.len()), (200, "Miss", 5000));
    wait_for_lines(&log.0, 1).await;
    let (s, x, _, _) = get(&c, &url(&e, "/v/seg.ts"), &host).await;
    assert_eq!((s, x.as_str()), (200, "Hit"));
    wait_for_lines(&log.0, 2).await;
    let (s, _, _, b) = get(&c, &url(&e, "/v/seg.ts"), &[host[0], host[1], ("range", "bytes=100-199")]).await;
    assert_eq!((s, b.len()), (206, 100));
    wait_for_lines(&log.0, 3).await;
    let (s, _, _, b421) = get(&c, &url(&e, "/nowhere"), &[("host", "unknown.example"), ("user-agent", ua)]).await;
    assert_eq!(s, 421);

    let (headers, lines) = wait_for_lines(&log.0, 4).await;
    let fields = fields_of(&headers);
    assert_eq!(fields.len(), 33, "{fields:?}");
    assert_eq!(&fields[..4], ["date", "time", "x-edge-location", "sc-bytes"]);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let rows: Vec<_> = lines.iter().map(|l| parse_line(&fields, l)).collect();

    for r in &rows {
        assert_eq!(r["cs-method"], "GET");
        assert_eq!(r["cs-protocol"], "http");
        assert_eq!(r["cs-protocol-version"], "HTTP/1.1");
        assert_eq!(r["c-ip"], "127.0.0.1");
        assert_eq!(r["x-edge-location"], "TST1");
        assert_eq!(r["cs(User-Agent)"], "Test%20Agent/1.0%20(mediaedge%20tests)");
        assert_eq!(r["cs(Cookie)"], "-");
        assert_eq!(r["x-forwarded-for"], "-");
        assert_eq!(r["x-edge-result-type"], r["x-edge-response-result-type"]);
        let date = r["date"];
        assert!(date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-', "{date}");
        assert_eq!(r["time"].len(), 8, "{}", r["time"]);
        assert!(r["time-taken"].parse::<f64>().is_ok() && r["time-to-first-byte"].parse::<f64>().is_ok());
        assert!(r["c-port"].parse::<u16>().is_ok_and(|p| p > 0));
        assert!(r["cs-bytes"].parse::<u64>().is_ok_and(|n| n > 0));
        assert_eq!(r["x-edge-request-id"].len(), 20);
    }
    let ids: std::collections::HashSet<_> = rows.iter().map(|r| r["x-edge-request-id"]).collect();
    assert_eq!(ids.len(), 4, "request ids are unique");

    let (miss, hit, range, misdirected) = (&rows[0], &rows[1], &rows[2], &rows[3]);
    assert_eq!(
        (miss["cs-uri-stem"], miss["cs-uri-query"], miss["sc-status"], miss["x-edge-result-type"]),
        ("/v/seg.ts", "a=1&b=2", "200", "Miss")
    );
    assert_eq!((miss["sc-bytes"], miss["sc-content-len"], miss["sc-content-type"]), ("5000", "5000", "video/mp2t"));
    assert_eq!((miss["cs(Host)"], miss["x-host-header"]), ("media.example", "media.example"));
    assert_eq!((miss["sc-range-start"], miss["sc-range-end"]), ("-", "-"));

    assert_eq!(
        (hit["cs-uri-query"], hit["sc-status"], hit["x-edge-result-type"], hit["sc-bytes"]),
        ("-", "200", "Hit", "5000")
    );
    assert_eq!(hit["x-edge-detailed-result-type"], "Hit");
    assert_eq!(miss["x-edge-detailed-result-type"], "Miss");

    assert_eq!((range["sc-status"], range["sc-bytes"], range["sc-content-len"]), ("206", "100", "100"));
    assert_eq!((range["sc-range-start"], range["sc-range-end"]), ("100", "199"));
    assert_eq!(range["x-edge-result-type"], "Hit");

    assert_eq!(
        (misdirected["cs-uri-stem"], misdirected["sc-status"], misdirected["x-edge-result-type"]),
        ("/nowhere", "421", "Error")
    );
    assert_eq!(misdirected["x-edge-detailed-result-type"], "InvalidRequest");
    assert_eq!(misdirected["cs(Host)"], "unknown.example");
    assert_eq!(misdirected["sc-bytes"], b421.len().to_string());
    assert_eq!(o.hits("/v/seg.ts"), 1);
}

/// A viewer that leaves mid-body: the request is an Error (`ClientCommError`),
/// the response keeps the result it began with, as at CloudFront.
#[tokio::test]
async fn a_response_cut_short_is_a_client_comm_error_that_keeps_its_response_result() {
    let o = TestOrigin::start().await;
    o.set("/slow.ts", Script::ok(payload(200_000, 3)).pieces(20, Duration::from_millis(100)));
    let log = TempLog::new("cut");
    let e = edge(&logged_config(&o.url(), &log, "")).await;
    let c = client();
    let mut r = c.get(url(&e, "/slow.ts")).header("host", "media.example").send().await.expect("request");
    assert_eq!((r.status().as_u16(), x_cache(&r).as_str()), (200, "Miss"));
    let first = r.chunk().await.expect("a first chunk");
    assert!(first.is_some_and(|b| !b.is_empty() && b.len() < 200_000));
    drop(r);

    let (headers, lines) = wait_for_lines(&log.0, 1).await;
    let fields = fields_of(&headers);
    let row = parse_line(&fields, &lines[0]);
    assert_eq!(
        (row["x-edge-result-type"], row["x-edge-response-result-type"], row["x-edge-detailed-result-type"]),
        ("Error", "Miss", "ClientCommError"),
        "{row:?}"
    );
    assert!(row["sc-bytes"].parse::<u64>().is_ok_and(|n| n < 200_000), "{row:?}");
}

#[tokio::test]
async fn cookies_are_logged_only_when_asked() {
    let o = TestOrigin::start().await;
    o.set("/c", Script::ok("c"));
    let c = client();
    let headers = [("host", "media.example"), ("cookie", "session=abc; tier=gold")];

    let quiet = TempLog::new("nocookies");
    let e = edge(&logged_config(&o.url(), &quiet, "")).await;
    assert_eq!(get(&c, &url(&e, "/c"), &headers).await.0, 200);
    let (h, lines) = wait_for_lines(&quiet.0, 1).await;
    let fields = fields_of(&h);
    assert_eq!(parse_line(&fields, &lines[0])["cs(Cookie)"], "-");

    let loud = TempLog::new("cookies");
    let e = edge(&logged_config(&o.url(), &loud, "log_cookies = true")).await;
    assert_eq!(get(&c, &url(&e, "/c"), &headers).await.0, 200);
    let (h, lines) = wait_for_lines(&loud.0, 1).await;
    let fields = fields_of(&h);
    assert_eq!(parse_line(&fields, &lines[0])["cs(Cookie)"], "session=abc;%20tier=gold");
}

#[tokio::test]
async fn an_existing_log_is_appended_to_without_a_second_header() {
    let o = TestOrigin::start().await;
    o.set("/a", Script::ok("a"));
    let log = TempLog::new("append");
    let c = client();
    for round in 1..=2 {
        let e = edge(&logged_config(&o.url(), &log, "")).await;
        assert_eq!(get(&c, &url(&e, "/a"), &[("host", "media.example")]).await.0, 200);
        let (headers, lines) = wait_for_lines(&log.0, round).await;
        assert_eq!(headers.len(), 2, "{headers:?}");
        assert_eq!(lines.len(), round);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_rotates_by_size_keeps_the_newest_and_loses_no_line() {
    let o = TestOrigin::start().await;
    o.set("/r.ts", Script::ok("x").header("cache-control", "max-age=600"));
    let dir = TempDir::new("rotate");
    let log = TempLog(dir.path().join("access.log"));
    let e = edge(&logged_config(&o.url(), &log, "access_log_max_size = \"4KiB\"\naccess_log_keep = 3")).await;
    let c = client();
    // About 200 bytes a line: 150 requests make ~30 KiB, eight files of 4 KiB.
    for i in 0..150 {
        let (s, _, _, _) = get(&c, &url(&e, &format!("/r.ts?n={i}")), &[("host", "media.example")]).await;
        assert_eq!(s, 200);
    }
    // Wait until the writer has written every line somewhere.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let files = loop {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .expect("log dir")
            .filter_map(|d| d.ok().map(|d| d.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("access.log")))
            .collect();
        files.sort();
        let last_line = files.iter().any(|f| std::fs::read_to_string(f).unwrap_or_default().contains("n=149"));
        // Old files are pruned just after a rotation: a listing taken in
        // between shows one more, so wait for the pruning too.
        let pruned = files.iter().filter(|f| f.as_path() != log.0.as_path()).count() <= 3;
        if (last_line && pruned) || std::time::Instant::now() > deadline {
            break files;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let rotated: Vec<&PathBuf> = files.iter().filter(|f| f.as_path() != log.0.as_path()).collect();
    assert_eq!(rotated.len(), 3, "the three newest rotated files are kept: {files:?}");
    let mut seen = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("log file");
        assert!(text.starts_with("#Version: 1.0\n#Fields: "), "{} starts with the header", f.display());
        assert!(text.len() <= 4096, "{} is {} bytes, over the limit", f.display(), text.len());
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let q = line.split('\t').nth(11).expect("cs-uri-query");
            seen.push(q.trim_start_matches("n=").parse::<u32>().expect("query number"));
        }
    }
    seen.sort_unstable();
    let newest: Vec<u32> = (150 - seen.len() as u32..150).collect();
    assert_eq!(seen, newest, "the kept files hold the newest lines, each once, none lost in between");
    assert!(seen.len() >= 60, "{} lines kept", seen.len());
}
