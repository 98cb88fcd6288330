//! HTTP-date (RFC 9110 §5.6.7) as recipients must read it: IMF-fixdate, and
//! the obsolete RFC 850 and asctime formats. Names of days, months and `GMT`
//! are matched without regard to case, and the day name is not checked against
//! the date (origins with a wrong weekday exist; the numbers decide). Anything
//! else, including a two-digit year outside RFC 850, extra spaces, other
//! separators or another zone, is invalid.

use std::time::{Duration, SystemTime};

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const LONG_DAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/// Parses an HTTP-date. `now` places an RFC 850 two-digit year: a date that
/// would be more than 50 years in the future is taken from the past century.
pub fn parse(s: &str, now: SystemTime) -> Option<SystemTime> {
    let s = s.trim_matches(|c| c == ' ' || c == '\t');
    if !s.is_ascii() {
        return None;
    }
    let (day_name, rest) = match s.split_once(", ") {
        Some((d, rest)) => (d, Some(rest)),
        None => (s.get(..3)?, None),
    };
    let lower = day_name.to_ascii_lowercase();
    match rest {
        Some(rest) if DAYS.contains(&lower.as_str()) => imf_fixdate(rest),
        Some(rest) if LONG_DAYS.contains(&lower.as_str()) => rfc850(rest, now),
        Some(_) => None,
        None if DAYS.contains(&lower.as_str()) => asctime(s.get(3..)?),
        None => None,
    }
}

/// `DD Mon YYYY HH:MM:SS GMT`
fn imf_fixdate(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 24 || b[2] != b' ' || b[6] != b' ' || b[11] != b' ' || b[20] != b' ' {
        return None;
    }
    if !s[21..].eq_ignore_ascii_case("gmt") {
        return None;
    }
    let day = digits(&s[0..2])?;
    let month = month(&s[3..6])?;
    let year = digits(&s[7..11])?;
    let (h, m, sec) = time(&s[12..20])?;
    at(year, month, day, h, m, sec)
}

/// `DD-Mon-YY HH:MM:SS GMT`
fn rfc850(s: &str, now: SystemTime) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 22 || b[2] != b'-' || b[6] != b'-' || b[9] != b' ' || b[18] != b' ' {
        return None;
    }
    if !s[19..].eq_ignore_ascii_case("gmt") {
        return None;
    }
    let day = digits(&s[0..2])?;
    let month = month(&s[3..6])?;
    let yy = digits(&s[7..9])?;
    let (h, m, sec) = time(&s[10..18])?;
    let this_year = year_of(now);
    let mut year = this_year - this_year % 100 + yy;
    if year > this_year + 50 {
        year -= 100;
    }
    at(year, month, day, h, m, sec)
}

/// ` Mon _D HH:MM:SS YYYY` (after the day name; `_D` is a space-padded day)
fn asctime(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 21 || b[0] != b' ' || b[4] != b' ' || b[7] != b' ' || b[16] != b' ' {
        return None;
    }
    let month = month(&s[1..4])?;
    let day = match b[5] {
        b' ' => digits(&s[6..7])?,
        _ => digits(&s[5..7])?,
    };
    let (h, m, sec) = time(&s[8..16])?;
    let year = digits(&s[17..21])?;
    at(year, month, day, h, m, sec)
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn month(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    MONTHS.iter().position(|m| *m == lower).map(|i| i as u64 + 1)
}

/// `HH:MM:SS`, two digits each.
fn time(s: &str) -> Option<(u64, u64, u64)> {
    let b = s.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, sec) = (digits(&s[0..2])?, digits(&s[3..5])?, digits(&s[6..8])?);
    // 60 is a leap second; it is read as the next second.
    (h < 24 && m < 60 && sec <= 60).then_some((h, m, sec))
}

/// Days from 1970-01-01 to the civil date (proleptic Gregorian, H. Hinnant's
/// algorithm); the date is checked by converting back.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn at(year: u64, month: u64, day: u64, h: u64, m: u64, s: u64) -> Option<SystemTime> {
    if !(1970..=9999).contains(&year) || !(1..=31).contains(&day) {
        return None;
    }
    let midnight = days_from_civil(year, month, day) * 86_400;
    // 31 Feb comes back as 3 Mar: not a date.
    let (y, mo, d, ..) = crate::log::civil(midnight);
    if (y, mo, d) != (year as i64, month as i64, day as i64) {
        return None;
    }
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(midnight + h * 3600 + m * 60 + s))
}

fn year_of(t: SystemTime) -> u64 {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    crate::log::civil(secs).0.max(1970) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<SystemTime> {
        // 2026-12-04
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_342_400);
        parse(s, now)
    }

    fn secs(s: &str) -> Option<u64> {
        p(s).map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs())
    }

    #[test]
    fn three_formats_agree() {
        let want = Some(784_111_777);
        assert_eq!(secs("Sun, 06 Nov 1994 08:49:37 GMT"), want);
        assert_eq!(secs("Sunday, 06-Nov-94 08:49:37 GMT"), want);
        assert_eq!(secs("Sun Nov  6 08:49:37 1994"), want);
        assert_eq!(p("Sun, 06 Nov 1994 08:49:37 GMT"), httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").ok());
    }

    #[test]
    fn lenient_where_recipients_should_be() {
        let want = secs("Thu, 18 Aug 2050 02:01:18 GMT");
        assert!(want.is_some());
        assert_eq!(secs("THU, 18 Aug 2050 02:01:18 GMT"), want);
        assert_eq!(secs("Thu, 18 AUG 2050 02:01:18 GMT"), want);
        assert_eq!(secs("Thu, 18 Aug 2050 02:01:18 gMT"), want);
        // The weekday is wrong (18 Aug 2050 is a Thursday; this says Monday).
        assert_eq!(secs("Mon, 18 Aug 2050 02:01:18 GMT"), want);
        // RFC 850: within 50 years ahead stays in this century.
        assert_eq!(secs("Thursday, 18-Aug-50 02:01:18 GMT"), want);
        assert_eq!(secs("THURSDAY, 18-aug-50 02:01:18 gmt"), want);
        // asctime, with a wrong weekday too (8 Aug 2050 is a Monday).
        assert_eq!(secs("Thu Aug  8 02:01:18 2050"), secs("Mon, 08 Aug 2050 02:01:18 GMT"));
        assert_eq!(secs("Thu Aug 18 02:01:18 2050"), want);
        // RFC 850 more than 50 years ahead is the last century.
        assert_eq!(secs("Friday, 01-Jan-99 00:00:00 GMT"), secs("Fri, 01 Jan 1999 00:00:00 GMT"));
    }

    #[test]
    fn invalid_dates() {
        for bad in [
            "0",
            "",
            "-1",
            "Thu, 18 Aug 2050 02:01:18 UTC",
            "Thu, 18 Aug 50 02:01:18 GMT",
            "Thu 18 Aug 2050 02:01:18 GMT",
            "Thu, 18  Aug  2050 02:01:18 GMT",
            "Thu, 18-Aug-2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02.01.18 GMT",
            "Thu, 18 Aug 2050 2:01:18 GMT",
            "Thu, 31 Feb 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 24:01:18 GMT",
            "Xyz, 18 Aug 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02:01:18 GMT junk",
            "Thu Aug  8 02:01:18 2050 GMT",
            "Thu Aug 8 02:01:18 2050",
            "Thursday, 18-Aug-2050 02:01:18 GMT",
            "2050-08-18T02:01:18Z",
            "Thu, 18 Aug 2050 02:01:18 GMT\u{e9}",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }
}
