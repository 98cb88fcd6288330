//! CloudFront policies: the canned policy string, custom policy JSON, resource
//! wildcards and source-IP ranges.

use super::Denial;
use serde::Deserialize;
use std::net::IpAddr;

/// CloudFront's canned policy for `resource`, byte for byte as AWS's signers
/// write it (`json.dumps(..., separators=(',', ':'))`, no white space).
pub fn canned(resource: &str, expires: u64) -> String {
    let mut s = String::with_capacity(resource.len() + 96);
    s.push_str(r#"{"Statement":[{"Resource":"#);
    push_json_string(&mut s, resource);
    s.push_str(r#","Condition":{"DateLessThan":{"AWS:EpochTime":"#);
    s.push_str(&expires.to_string());
    s.push_str("}}}]}");
    s
}

/// A custom policy as AWS's botocore builds it: the conditions in the order
/// DateLessThan, IpAddress, DateGreaterThan (a bare IPv4 address gets `/32`,
/// an IPv6 one `/128`).
pub fn custom(resource: &str, date_less_than: u64, ip: Option<&str>, date_greater_than: Option<u64>) -> String {
    let mut s = String::with_capacity(resource.len() + 160);
    s.push_str(r#"{"Statement":[{"Resource":"#);
    push_json_string(&mut s, resource);
    s.push_str(r#","Condition":{"DateLessThan":{"AWS:EpochTime":"#);
    s.push_str(&date_less_than.to_string());
    s.push('}');
    if let Some(ip) = ip {
        s.push_str(r#","IpAddress":{"AWS:SourceIp":"#);
        if ip.contains('/') {
            push_json_string(&mut s, ip);
        } else if ip.contains(':') {
            push_json_string(&mut s, &format!("{ip}/128"));
        } else {
            push_json_string(&mut s, &format!("{ip}/32"));
        }
        s.push('}');
    }
    if let Some(t) = date_greater_than {
        s.push_str(r#","DateGreaterThan":{"AWS:EpochTime":"#);
        s.push_str(&t.to_string());
        s.push('}');
    }
    s.push_str("}}]}");
    s
}

/// A JSON string as Python's `json.dumps` writes it (ASCII only: everything
/// else as `\uXXXX`, astral characters as surrogate pairs).
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{:04x}", u));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// What a policy allows, once its signature is known to be good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `None`: any resource (a canned policy binds its URL through the
    /// signature; a custom policy without `Resource` allows every URL).
    pub resource: Option<Box<str>>,
    /// Epoch seconds; the request must come before.
    pub date_less_than: u64,
    /// Epoch seconds; the request must not come before.
    pub date_greater_than: Option<u64>,
    pub source_ip: Option<Cidr>,
}

impl Policy {
    pub fn canned(expires: u64) -> Policy {
        Policy { resource: None, date_less_than: expires, date_greater_than: None, source_ip: None }
    }

    /// A custom policy document: one statement; `Condition.DateLessThan` is
    /// required; unknown fields are refused (a condition this edge does not
    /// understand must not be ignored).
    pub fn parse_custom(json: &[u8]) -> Result<Policy, Denial> {
        let raw: RawPolicy = serde_json::from_slice(json).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                Denial::PolicyJson
            } else {
                Denial::PolicyUnsupported
            }
        })?;
        let [statement] = <[RawStatement; 1]>::try_from(raw.statement).map_err(|_| Denial::PolicyUnsupported)?;
        let condition = statement.condition.ok_or(Denial::PolicyNoDateLessThan)?;
        let date_less_than = condition.date_less_than.ok_or(Denial::PolicyNoDateLessThan)?.epoch;
        let source_ip = match condition.ip_address {
            Some(ip) => Some(Cidr::parse(&ip.source_ip).ok_or(Denial::PolicyUnsupported)?),
            None => None,
        };
        Ok(Policy {
            resource: statement.resource.map(String::into_boxed_str),
            date_less_than,
            date_greater_than: condition.date_greater_than.map(|d| d.epoch),
            source_ip,
        })
    }

    /// The time conditions at `now` (epoch seconds).
    pub fn check_time(&self, now: u64) -> Result<(), Denial> {
        if now >= self.date_less_than {
            return Err(Denial::Expired);
        }
        if self.date_greater_than.is_some_and(|t| now < t) {
            return Err(Denial::NotYetValid);
        }
        Ok(())
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Denial> {
        match &self.source_ip {
            Some(cidr) if !cidr.contains(ip) => Err(Denial::SourceIp),
            _ => Ok(()),
        }
    }

    pub fn check_resource(&self, url: &str) -> Result<(), Denial> {
        match &self.resource {
            Some(pattern) if !wildcard_match(pattern.as_bytes(), url.as_bytes()) => Err(Denial::Resource),
            _ => Ok(()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(rename = "Statement")]
    statement: Vec<RawStatement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatement {
    #[serde(rename = "Resource")]
    resource: Option<String>,
    #[serde(rename = "Condition")]
    condition: Option<RawCondition>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    #[serde(rename = "DateLessThan")]
    date_less_than: Option<RawEpoch>,
    #[serde(rename = "DateGreaterThan")]
    date_greater_than: Option<RawEpoch>,
    #[serde(rename = "IpAddress")]
    ip_address: Option<RawIp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEpoch {
    #[serde(rename = "AWS:EpochTime")]
    epoch: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIp {
    #[serde(rename = "AWS:SourceIp")]
    source_ip: String,
}

pub use crate::config::pattern::wildcard_match;

/// An address range: `192.0.2.0/24`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?))
            }
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` is in the range (IPv4-mapped IPv6 viewers count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_policy_is_byte_exact() {
        assert_eq!(
            canned("https://d111111abcdef8.cloudfront.net/horizon.jpg?size=large&license=yes", 1357034400),
            r#"{"Statement":[{"Resource":"https://d111111abcdef8.cloudfront.net/horizon.jpg?size=large&license=yes","Condition":{"DateLessThan":{"AWS:EpochTime":1357034400}}}]}"#
        );
        assert_eq!(
            canned("http://h/a\"b\\c/é😀", 1),
            r#"{"Statement":[{"Resource":"http://h/a\"b\\c/\u00e9\ud83d\ude00","Condition":{"DateLessThan":{"AWS:EpochTime":1}}}]}"#
        );
    }

    #[test]
    fn custom_policy_matches_botocore_order() {
        assert_eq!(
            custom("http://h/*", 20, Some("10.0.0.1"), Some(10)),
            r#"{"Statement":[{"Resource":"http://h/*","Condition":{"DateLessThan":{"AWS:EpochTime":20},"IpAddress":{"AWS:SourceIp":"10.0.0.1/32"},"DateGreaterThan":{"AWS:EpochTime":10}}}]}"#
        );
        let p = Policy::parse_custom(custom("http://h/*", 20, Some("::1"), None).as_bytes()).unwrap();
        assert_eq!(p.source_ip, Cidr::parse("::1/128"));
        assert_eq!(p.date_less_than, 20);
    }

    #[test]
    fn custom_policy_parsing() {
        let p = Policy::parse_custom(
            br#"{"Statement":[{"Resource":"http://h/v/*","Condition":{"IpAddress":{"AWS:SourceIp":"192.0.2.0/24"},"DateGreaterThan":{"AWS:EpochTime":5},"DateLessThan":{"AWS:EpochTime":9}}}]}"#,
        )
        .unwrap();
        assert_eq!(p.resource.as_deref(), Some("http://h/v/*"));
        assert_eq!((p.date_greater_than, p.date_less_than), (Some(5), 9));
        assert_eq!(p.check_time(4), Err(Denial::NotYetValid));
        assert_eq!(p.check_time(5), Ok(()));
        assert_eq!(p.check_time(9), Err(Denial::Expired));
        assert_eq!(p.check_ip("192.0.2.77".parse().unwrap()), Ok(()));
        assert_eq!(p.check_ip("::ffff:192.0.2.77".parse().unwrap()), Ok(()));
        assert_eq!(p.check_ip("192.0.3.1".parse().unwrap()), Err(Denial::SourceIp));

        let cases: &[(&[u8], Denial)] = &[
            (b"", Denial::PolicyJson),
            (b"{", Denial::PolicyJson),
            (b"not json", Denial::PolicyJson),
            (br#"{"Statement":[]}"#, Denial::PolicyUnsupported),
            (br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":1}}},{"Condition":{"DateLessThan":{"AWS:EpochTime":1}}}]}"#, Denial::PolicyUnsupported),
            (br#"{"Statement":[{"Resource":"x"}]}"#, Denial::PolicyNoDateLessThan),
            (br#"{"Statement":[{"Resource":"x","Condition":{}}]}"#, Denial::PolicyNoDateLessThan),
            (br#"{"Statement":[{"Resource":"x","Condition":{"DateLessThan":{"AWS:EpochTime":"1"}}}]}"#, Denial::PolicyUnsupported),
            (br#"{"Statement":[{"Resource":"x","Condition":{"DateLessThan":{"AWS:EpochTime":-1}}}]}"#, Denial::PolicyUnsupported),
            (br#"{"Statement":[{"Resource":"x","Condition":{"DateLessThan":{"AWS:EpochTime":1},"Other":{}}}]}"#, Denial::PolicyUnsupported),
            (br#"{"Statement":[{"Resource":"x","Condition":{"DateLessThan":{"AWS:EpochTime":1},"IpAddress":{"AWS:SourceIp":"10.0.0.0/33"}}}]}"#, Denial::PolicyUnsupported),
            (br#"{"Statement":[{"Resource":"x","Resource":"y","Condition":{"DateLessThan":{"AWS:EpochTime":1}}}]}"#, Denial::PolicyUnsupported),
            (br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":1}}}],"Extra":1}"#, Denial::PolicyUnsupported),
        ];
        for (json, want) in cases {
            assert_eq!(Policy::parse_custom(json), Err(*want), "{}", String::from_utf8_lossy(json));
        }
    }

    #[test]
    fn wildcards() {
        let m = |p: &str, t: &str| wildcard_match(p.as_bytes(), t.as_bytes());
        assert!(m("http://h/live/*", "http://h/live/v1/seg1.ts"));
        assert!(m("http://h/live/*", "http://h/live/"));
        assert!(!m("http://h/live/*", "http://h/vod/a.ts"));
        assert!(m("http*://h/*.ts", "https://h/a/b.ts"));
        assert!(!m("http*://h/*.ts", "https://h/a/b.m3u8"));
        assert!(m("http://h/seg?.ts", "http://h/seg1.ts"));
        assert!(m("http://h/seg?.ts", "http://h/segé.ts"));
        assert!(!m("http://h/seg?.ts", "http://h/seg10.ts"));
        assert!(!m("http://h/seg?.ts", "http://h/seg.ts"));
        assert!(m("*", ""));
        assert!(m("**a**", "bab"));
        assert!(!m("", "a"));
        assert!(m("a*b*c", "a-b-b-c"));
        assert!(!m("a*b*c", "a-b-b-d"));
        // Pathological shapes end quickly.
        let text = "a".repeat(5000);
        assert!(!m(&format!("{}b", "*a".repeat(50)), &text));
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("203.0.113.9".parse().unwrap()));
        assert!(Cidr::parse("2001:db8::/32").unwrap().contains("2001:db8:1::5".parse().unwrap()));
        assert!(!Cidr::parse("2001:db8::/32").unwrap().contains("2001:db9::5".parse().unwrap()));
        assert!(Cidr::parse("::/0").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
        for bad in ["", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/+8", "x/8", "::/129", "10.0.0.0/0008"] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }
}
