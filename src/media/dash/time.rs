//! ISO 8601 durations and date-times, as MPD attributes write them.

use std::time::{Duration, SystemTime};

/// Parses an ISO 8601 / `xs:duration` duration: `PT2S`, `PT1M30.5S`,
/// `P1DT2H`, `PT0S`. Years count 365 days, months 30 and weeks 7 (MPDs use
/// days and smaller). Only the last component may have a fraction (`.` or
/// `,`, nanosecond precision). Negative, empty or overflowing durations are
/// `None`.
pub fn parse_iso8601_duration(s: &str) -> Option<Duration> {
    const NANOS: u128 = 1_000_000_000;
    let rest = s.trim().strip_prefix('P')?;
    let bytes = rest.as_bytes();
    let mut total: u128 = 0;
    let mut i = 0;
    let mut in_time = false;
    let mut components = 0;
    let mut time_components = 0;
    let mut last_rank = 0;
    while i < bytes.len() {
        if bytes[i] == b'T' {
            if in_time {
                return None;
            }
            in_time = true;
            i += 1;
            continue;
        }
        let int_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let int_part = &rest[int_start..i];
        let mut frac_part = "";
        if i < bytes.len() && (bytes[i] == b'.' || bytes[i] == b',') {
            i += 1;
            let frac_start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            frac_part = &rest[frac_start..i];
            if frac_part.is_empty() {
                return None;
            }
        }
        if int_part.is_empty() {
            return None;
        }
        let unit = *bytes.get(i)?;
        i += 1;
        let (rank, unit_secs): (u8, u128) = match (in_time, unit) {
            (false, b'Y') => (1, 365 * 86_400),
            (false, b'M') => (2, 30 * 86_400),
            (false, b'W') => (3, 7 * 86_400),
            (false, b'D') => (4, 86_400),
            (true, b'H') => (5, 3_600),
            (true, b'M') => (6, 60),
            (true, b'S') => (7, 1),
            _ => return None,
        };
        if rank <= last_rank || (!frac_part.is_empty() && i != bytes.len()) {
            return None;
        }
        last_rank = rank;
        let int: u128 = int_part.parse().ok()?;
        let frac_nanos: u128 = if frac_part.is_empty() {
            0
        } else {
            let digits = &frac_part[..frac_part.len().min(9)];
            let scale = 10u128.pow(9 - u32::try_from(digits.len()).ok()?);
            digits.parse::<u128>().ok()? * scale
        };
        let nanos = int.checked_mul(unit_secs * NANOS)?.checked_add(frac_nanos.checked_mul(unit_secs)?)?;
        total = total.checked_add(nanos)?;
        components += 1;
        if in_time {
            time_components += 1;
        }
    }
    if components == 0 || (in_time && time_components == 0) {
        return None;
    }
    let secs = u64::try_from(total / NANOS).ok()?;
    let nanos = u32::try_from(total % NANOS).ok()?;
    Some(Duration::new(secs, nanos))
}

/// Parses an `xs:dateTime` such as `2024-01-01T00:00:00Z` or
/// `2024-01-01T00:00:00.250+01:00`. Without a zone designator, UTC is assumed.
pub fn parse_iso8601_datetime(s: &str) -> Option<SystemTime> {
    let b = s.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        digits.iter().try_fold(0i64, |acc, d| acc.checked_mul(10)?.checked_add(i64::from(d - b'0')))
    };
    let sep = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if sep(i, b".,") {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &b[start..i.min(start + 9)];
        let mut value: u32 = 0;
        for d in digits {
            value = value * 10 + u32::from(d - b'0');
        }
        nanos = value * 10u32.pow(9 - u32::try_from(digits.len()).ok()?);
    }
    let offset_secs: i64 = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let hours = num(i + 1..i + 3)?;
            let minutes = match b.len() - (i + 3) {
                0 => 0,
                2 => num(i + 3..i + 5)?,
                3 if b[i + 3] == b':' => num(i + 4..i + 6)?,
                _ => return None,
            };
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if sign == b'+' {
                offset
            } else {
                -offset
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    let since_epoch = Duration::new(secs.unsigned_abs(), 0);
    let whole = if secs >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(since_epoch)?
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(since_epoch)?
    };
    whole.checked_add(Duration::from_nanos(u64::from(nanos)))
}

pub(super) fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(super) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
