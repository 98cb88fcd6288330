//! Wildcard patterns: cache-behavior path patterns and viewer host names.

/// A CloudFront-style path pattern: `*` matches any run of characters
/// (including `/`), `?` matches exactly one. Matching is case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
}

impl PathPattern {
    /// Parses a pattern; a pattern without a leading `/` or `*` gets a `/`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("path pattern is empty".into());
        }
        if raw.len() > 255 {
            return Err("path pattern is longer than 255 characters".into());
        }
        if let Some(c) = raw.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!("path pattern contains the character {c:?}"));
        }
        let text = if raw.starts_with('/') || raw.starts_with('*') { raw.to_string() } else { format!("/{raw}") };
        Ok(Self { text })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `path` (the URI path, without the query) matches.
    pub fn matches(&self, path: &str) -> bool {
        wildcard_match(self.text.as_bytes(), path.as_bytes())
    }
}

/// `*` matches any run of characters (none included), `?` exactly one; every
/// other character matches itself. Greedy with backtracking to the last `*`:
/// at worst O(pattern × text), and only run on signed patterns.
pub fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                // `?` stands for one character; UTF-8 continuation bytes go with it.
                p += 1;
                t += 1;
                if c == b'?' {
                    while t < text.len() && text[t] & 0xc0 == 0x80 {
                        t += 1;
                    }
                }
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// A viewer host name a distribution answers for: an exact name, a `*.suffix`
/// wildcard, or `*` for any host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// Stored with its leading dot: `.example.com`.
    Suffix(String),
    Any,
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Suffix(s) => write!(f, "*{s}"),
            HostPattern::Any => f.write_str("*"),
        }
    }
}

impl HostPattern {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let lower = raw.trim().to_ascii_lowercase();
        if lower == "*" {
            return Ok(HostPattern::Any);
        }
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if name.is_empty()
            || name.len() > 253
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':')
        {
            return Err(format!("{raw:?} is not a host name"));
        }
        Ok(if wild { HostPattern::Suffix(format!(".{name}")) } else { HostPattern::Exact(name.to_string()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns() {
        let p = PathPattern::parse("/live/*.m3u8").unwrap();
        assert!(p.matches("/live/a/b.m3u8"));
        assert!(!p.matches("/live/a/b.m3u8x"));
        assert!(!p.matches("/vod/a.m3u8"));
        let p = PathPattern::parse("*.m4s").unwrap();
        assert!(p.matches("/x/y/seg_001.m4s"));
        assert!(!p.matches("/x/y/seg_001.ts"));
        let p = PathPattern::parse("api/v?/*").unwrap();
        assert_eq!(p.as_str(), "/api/v?/*");
        assert!(p.matches("/api/v1/x"));
        assert!(!p.matches("/api/v12/x"));
        assert!(PathPattern::parse("").is_err());
        assert!(PathPattern::parse("/a b").is_err());
        assert!(!wildcard_match(b"*a*a*a*b", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac"));
    }

    #[test]
    fn host_patterns() {
        assert_eq!(HostPattern::parse("*").unwrap(), HostPattern::Any);
        assert_eq!(HostPattern::parse("*.Example.com").unwrap(), HostPattern::Suffix(".example.com".into()));
        assert!(HostPattern::parse("bad host").is_err());
    }
}
