//! The Prometheus text format 0.0.4 (the names are in the `metrics` module
//! documentation).

use super::histogram::LATENCY_LE;
use super::{load, DistStats, Registry, CLASSES, RESULTS};
use crate::metrics::OriginErrorKind;
use crate::outcome::RESULT_TYPES;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;

/// The `Content-Type` of [`render_prometheus`]'s output.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Process-wide gauges and counters the cache provides at render time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheGauges {
    pub bytes: u64,
    pub entries: u64,
    pub evictions: u64,
    pub fills_in_flight: u64,
    pub capacity_bytes: u64,
    /// The disk tier's counters, if one is configured and opened.
    pub disk: Option<crate::cache::disk::DiskSnapshot>,
}

/// A label value escaped for the text format: `\` → `\\`, `"` → `\"`, newline → `\n`.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Microseconds as decimal seconds, exactly.
pub(super) fn seconds(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

/// Picks one counter of a distribution.
type CounterOf = fn(&DistStats) -> &AtomicU64;

/// Every metric in the Prometheus text exposition format 0.0.4 (see the module
/// documentation for the names).
pub fn render_prometheus(registry: &Registry, cache: &CacheGauges) -> String {
    let all = registry.all();
    let dists: Vec<(String, &DistStats)> = all.iter().map(|s| (escape_label(s.id()), s.as_ref())).collect();
    let mut out = String::with_capacity(4096 + dists.len() * 4096);

    family(&mut out, "mediaedge_requests_total", "counter", "Viewer responses by status class and cache result.");
    for (d, s) in &dists {
        for (ci, class) in CLASSES.iter().enumerate() {
            for (ri, result) in RESULT_TYPES.iter().enumerate() {
                let n = load(&s.responses[ci * RESULTS + ri]);
                let _ = writeln!(
                    out,
                    "mediaedge_requests_total{{distribution=\"{d}\",status_class=\"{class}\",cache_result=\"{result}\"}} {n}"
                );
            }
        }
    }

    family(&mut out, "mediaedge_requests_by_protocol_total", "counter", "Viewer responses by viewer protocol.");
    for (d, s) in &dists {
        for (proto, c) in [("http", &s.http), ("https", &s.https)] {
            let _ = writeln!(
                out,
                "mediaedge_requests_by_protocol_total{{distribution=\"{d}\",protocol=\"{proto}\"}} {}",
                load(c)
            );
        }
    }

    let simple: [(&str, &str, CounterOf); 8] = [
        ("mediaedge_bytes_out_total", "Bytes sent to viewers (headers and bodies).", |s| &s.bytes_out),
        ("mediaedge_origin_bytes_in_total", "Body bytes received from origins.", |s| &s.origin_bytes_in),
        ("mediaedge_origin_bytes_out_total", "Request bytes sent to origins (heads and bodies).", |s| {
            &s.origin_bytes_out
        }),
        ("mediaedge_origin_requests_total", "Requests sent to origins.", |s| &s.origin_requests),
        ("mediaedge_collapsed_requests_total", "Origin fetches saved by request collapsing.", |s| &s.collapsed),
        ("mediaedge_stale_if_error_total", "Expired copies served because the origin failed.", |s| &s.stale_if_error),
        ("mediaedge_origin_failovers_total", "Requests an origin group sent on to its next member.", |s| &s.failovers),
        ("mediaedge_origin_ejections_total", "Members of origin groups ejected after failing.", |s| &s.ejections),
    ];
    for (name, help, counter) in simple {
        family(&mut out, name, "counter", help);
        for (d, s) in &dists {
            let _ = writeln!(out, "{name}{{distribution=\"{d}\"}} {}", load(counter(s)));
        }
    }

    family(&mut out, "mediaedge_origin_errors_total", "counter", "Origin request failures by kind.");
    for (d, s) in &dists {
        for k in OriginErrorKind::ALL {
            let _ = writeln!(
                out,
                "mediaedge_origin_errors_total{{distribution=\"{d}\",kind=\"{}\"}} {}",
                k.as_str(),
                load(&s.origin_errors[k.index()])
            );
        }
    }

    family(
        &mut out,
        "mediaedge_origin_latency_seconds",
        "histogram",
        "Time from sending an origin request to its response head.",
    );
    for (d, s) in &dists {
        let mut cumulative = 0u64;
        for (le, c) in LATENCY_LE.iter().zip(&s.latency_buckets) {
            cumulative += load(c);
            let _ = writeln!(
                out,
                "mediaedge_origin_latency_seconds_bucket{{distribution=\"{d}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = seconds(load(&s.latency_sum_us));
        let _ = writeln!(out, "mediaedge_origin_latency_seconds_sum{{distribution=\"{d}\"}} {sum}");
        let _ = writeln!(out, "mediaedge_origin_latency_seconds_count{{distribution=\"{d}\"}} {cumulative}");
    }

    let process: [(&str, &str, &str, u64); 6] = [
        ("mediaedge_cache_bytes", "gauge", "Bytes held by the cache.", cache.bytes),
        ("mediaedge_cache_capacity_bytes", "gauge", "Capacity of the cache in bytes.", cache.capacity_bytes),
        ("mediaedge_cache_objects", "gauge", "Objects held by the cache.", cache.entries),
        ("mediaedge_fills_in_flight", "gauge", "Origin fills in progress.", cache.fills_in_flight),
        ("mediaedge_cache_evictions_total", "counter", "Objects evicted from the cache.", cache.evictions),
        (
            "mediaedge_manifests_without_tokens_total",
            "counter",
            "Manifests served without the viewer's tokens: adding them would change how they parse.",
            crate::media::rewrite::refused(),
        ),
    ];
    for (name, kind, help, v) in process {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }
    if let Some(d) = &cache.disk {
        super::disk::render(&mut out, cache, d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::EdgeResult;
    use std::time::Duration;

    /// A parsed sample: name, labels, value.
    type Sample = (String, Vec<(String, String)>, f64);

    /// Checks the text format line by line; returns the samples as (name, labels, value).
    fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
        fn name_end(s: &str) -> usize {
            s.char_indices()
                .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())))
                .map_or(s.len(), |(i, _)| i)
        }
        let mut samples = Vec::new();
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (kw, name, tail) = (parts.next(), parts.next(), parts.next());
                let (Some(kw), Some(name), Some(tail)) = (kw, name, tail) else {
                    return Err(format!("bad comment {line:?}"));
                };
                if name.is_empty() || name_end(name) != name.len() || tail.is_empty() {
                    return Err(format!("bad comment {line:?}"));
                }
                match kw {
                    "HELP" => {}
                    "TYPE" if ["counter", "gauge", "histogram"].contains(&tail) => {
                        typed.insert(name.to_owned());
                    }
                    _ => return Err(format!("bad comment {line:?}")),
                }
                continue;
            }
            let n = name_end(line);
            if n == 0 {
                return Err(format!("no name {line:?}"));
            }
            let name = &line[..n];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
                .unwrap_or(name);
            if !typed.contains(family) {
                return Err(format!("sample before its TYPE {line:?}"));
            }
            let mut rest = &line[n..];
            let mut labels = Vec::new();
            if let Some(r) = rest.strip_prefix('{') {
                rest = r;
                loop {
                    if let Some(r) = rest.strip_prefix('}') {
                        rest = r;
                        break;
                    }
                    let k = name_end(rest);
                    let key = &rest[..k];
                    let Some(r) = rest[k..].strip_prefix("=\"") else { return Err(format!("bad label {line:?}")) };
                    let mut value = String::new();
                    let mut chars = r.char_indices();
                    let end = loop {
                        match chars.next() {
                            Some((_, '\\')) => match chars.next() {
                                Some((_, '\\')) => value.push('\\'),
                                Some((_, '"')) => value.push('"'),
                                Some((_, 'n')) => value.push('\n'),
                                _ => return Err(format!("bad escape {line:?}")),
                            },
                            Some((i, '"')) => break i,
                            Some((_, '\n')) | None => return Err(format!("unterminated {line:?}")),
                            Some((_, c)) => value.push(c),
                        }
                    };
                    labels.push((key.to_owned(), value));
                    rest = &r[end + 1..];
                    rest = rest.strip_prefix(',').unwrap_or(rest);
                }
            }
            let Some(v) = rest.strip_prefix(' ') else { return Err(format!("no value {line:?}")) };
            let value = match v {
                "+Inf" => f64::INFINITY,
                v => v.parse::<f64>().map_err(|_| format!("bad value {line:?}"))?,
            };
            samples.push((name.to_owned(), labels, value));
        }
        Ok(samples)
    }

    fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.2)
    }

    #[test]
    fn render_has_families_buckets_and_escapes() {
        let r = Registry::new();
        let odd = "we\"ird\\dist\nname";
        let a = r.get_or_create("EABC");
        r.get_or_create(odd).record_response(200, EdgeResult::Miss, false);
        a.record_response(200, EdgeResult::Hit, true);
        a.record_response(200, EdgeResult::Hit, false);
        a.record_response(503, EdgeResult::OriginError, false);
        a.record_bytes_out(200, 1800);
        a.record_origin_request(300);
        a.record_origin_bytes(5000);
        a.record_origin_error(OriginErrorKind::Protocol);
        a.record_collapsed();
        a.record_origin_latency(Duration::from_micros(800));
        a.record_origin_latency(Duration::from_millis(20));
        a.record_origin_latency(Duration::from_millis(20));
        a.record_origin_latency(Duration::from_secs(12));
        let cache = CacheGauges {
            bytes: 1234,
            entries: 5,
            evictions: 6,
            fills_in_flight: 2,
            capacity_bytes: 1 << 30,
            disk: None,
        };
        let text = render_prometheus(&r, &cache);

        for (name, kind) in [
            ("mediaedge_requests_total", "counter"),
            ("mediaedge_requests_by_protocol_total", "counter"),
            ("mediaedge_bytes_out_total", "counter"),
            ("mediaedge_origin_bytes_in_total", "counter"),
            ("mediaedge_origin_bytes_out_total", "counter"),
            ("mediaedge_origin_requests_total", "counter"),
            ("mediaedge_origin_errors_total", "counter"),
            ("mediaedge_origin_latency_seconds", "histogram"),
            ("mediaedge_collapsed_requests_total", "counter"),
            ("mediaedge_stale_if_error_total", "counter"),
            ("mediaedge_origin_failovers_total", "counter"),
            ("mediaedge_origin_ejections_total", "counter"),
            ("mediaedge_cache_bytes", "gauge"),
            ("mediaedge_cache_capacity_bytes", "gauge"),
            ("mediaedge_cache_objects", "gauge"),
            ("mediaedge_fills_in_flight", "gauge"),
            ("mediaedge_cache_evictions_total", "counter"),
            ("mediaedge_manifests_without_tokens_total", "counter"),
        ] {
            assert_eq!(text.matches(&format!("# TYPE {name} {kind}\n")).count(), 1, "{name}");
            assert_eq!(text.matches(&format!("# HELP {name} ")).count(), 1, "{name}");
        }
        assert!(text.contains("distribution=\"we\\\"ird\\\\dist\\nname\""), "{text}");

        let samples = match parse_exposition(&text) {
            Ok(s) => s,
            Err(e) => panic!("{e}\n{text}"),
        };
        let d = [("distribution", "EABC")];
        let get = |name: &str, extra: &[(&str, &str)]| {
            let labels: Vec<(&str, &str)> = d.iter().chain(extra).copied().collect();
            sample(&samples, name, &labels)
        };
        let req = |class, result| get("mediaedge_requests_total", &[("status_class", class), ("cache_result", result)]);
        assert_eq!(req("2xx", "Hit"), Some(2.0));
        assert_eq!(req("5xx", "Error"), Some(1.0));
        assert_eq!(req("2xx", "Miss"), Some(0.0));
        assert_eq!(
            sample(
                &samples,
                "mediaedge_requests_total",
                &[("distribution", odd), ("status_class", "2xx"), ("cache_result", "Miss")]
            ),
            Some(1.0)
        );
        assert_eq!(samples.iter().filter(|s| s.0 == "mediaedge_requests_total").count(), 50);
        assert_eq!(get("mediaedge_requests_by_protocol_total", &[("protocol", "https")]), Some(1.0));
        assert_eq!(get("mediaedge_requests_by_protocol_total", &[("protocol", "http")]), Some(2.0));
        assert_eq!(get("mediaedge_bytes_out_total", &[]), Some(2000.0));
        assert_eq!(get("mediaedge_origin_bytes_in_total", &[]), Some(5000.0));
        assert_eq!(get("mediaedge_origin_bytes_out_total", &[]), Some(300.0));
        assert_eq!(get("mediaedge_origin_requests_total", &[]), Some(1.0));
        assert_eq!(get("mediaedge_collapsed_requests_total", &[]), Some(1.0));
        assert_eq!(get("mediaedge_origin_errors_total", &[("kind", "protocol")]), Some(1.0));
        assert_eq!(get("mediaedge_origin_errors_total", &[("kind", "connect")]), Some(0.0));

        let bucket = |le| get("mediaedge_origin_latency_seconds_bucket", &[("le", le)]);
        let expected =
            [("0.001", 1.0), ("0.0025", 1.0), ("0.01", 1.0), ("0.025", 3.0), ("0.05", 3.0), ("10", 3.0), ("+Inf", 4.0)];
        for (le, n) in expected {
            assert_eq!(bucket(le), Some(n), "le={le}");
        }
        let buckets: Vec<f64> = samples
            .iter()
            .filter(|s| s.0 == "mediaedge_origin_latency_seconds_bucket" && s.1[0].1 == "EABC")
            .map(|s| s.2)
            .collect();
        assert_eq!(buckets.len(), 14);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "cumulative: {buckets:?}");
        assert_eq!(get("mediaedge_origin_latency_seconds_count", &[]), Some(4.0));
        assert!(text.contains("mediaedge_origin_latency_seconds_sum{distribution=\"EABC\"} 12.040800\n"), "{text}");

        assert_eq!(sample(&samples, "mediaedge_cache_bytes", &[]), Some(1234.0));
        assert_eq!(sample(&samples, "mediaedge_cache_objects", &[]), Some(5.0));
        assert_eq!(sample(&samples, "mediaedge_cache_evictions_total", &[]), Some(6.0));
        assert_eq!(sample(&samples, "mediaedge_fills_in_flight", &[]), Some(2.0));
        assert_eq!(sample(&samples, "mediaedge_cache_capacity_bytes", &[]), Some((1u64 << 30) as f64));

        // The checker rejects what the format forbids.
        assert!(parse_exposition("# TYPE x counter\nx{a=\"b} 1").is_err());
        assert!(parse_exposition("# TYPE x counter\nx{a=\"\\t\"} 1").is_err());
        assert!(parse_exposition("x 1").is_err());
        assert!(parse_exposition("# TYPE x counter\nx one").is_err());
    }

    #[test]
    fn empty_registry_renders_process_gauges() {
        let text = render_prometheus(&Registry::new(), &CacheGauges::default());
        assert!(parse_exposition(&text).is_ok());
        assert!(text.contains("\nmediaedge_cache_bytes 0\n"));
    }
}
