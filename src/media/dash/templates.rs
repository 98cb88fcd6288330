//! Segment templates: `$...$` identifiers and the segments a
//! `SegmentTimeline` lists.

use super::*;
use std::fmt::Write as _;

impl SegmentTemplate {
    /// The template with `$RepresentationID$`, `$Number$`, `$Time$` and
    /// `$Bandwidth$` substituted; `$$` becomes `$`.
    ///
    /// `$Number$`, `$Time$` and `$Bandwidth$` take a `%0Nd` format tag
    /// (`$Number%05d$` → `00042`; `%Nd` and `%d` are accepted too).
    /// An identifier whose value is not given (`number`/`time` `None`), an
    /// unknown identifier, a malformed format tag or a lone `$` is left as it
    /// was written.
    pub fn expand(pattern: &str, rep_id: &str, bandwidth: u64, number: Option<u64>, time: Option<u64>) -> String {
        let mut out = String::with_capacity(pattern.len() + 16);
        let mut rest = pattern;
        while let Some(open) = rest.find('$') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let Some(close) = after.find('$') else {
                out.push_str(&rest[open..]);
                return out;
            };
            let token = &after[..close];
            if !substitute(&mut out, token, rep_id, bandwidth, number, time) {
                out.push('$');
                out.push_str(token);
                out.push('$');
            }
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The segments a `SegmentTimeline` lists, in order, numbered from
    /// `start_number`. Lazy: a huge `r` costs nothing until iterated.
    /// An entry with `d="0"` is skipped. `r="-1"` repeats until the next
    /// entry's `t`; on the last entry (whose end depends on the Period's end
    /// or the next MPD update) it yields one segment. Iteration stops if time
    /// or number would overflow. Empty without a timeline.
    pub fn timeline_segments(&self) -> TimelineSegments<'_> {
        TimelineSegments {
            entries: &self.timeline,
            next_entry: 0,
            remaining: 0,
            duration: 0,
            time: 0,
            number: self.start_number,
            done: false,
        }
    }
}

/// Iterator returned by [`SegmentTemplate::timeline_segments`].
#[derive(Debug, Clone)]
pub struct TimelineSegments<'a> {
    entries: &'a [TimelineEntry],
    next_entry: usize,
    remaining: u64,
    duration: u64,
    time: u64,
    number: u64,
    done: bool,
}

impl Iterator for TimelineSegments<'_> {
    type Item = TimelineSegment;

    fn next(&mut self) -> Option<TimelineSegment> {
        if self.done {
            return None;
        }
        while self.remaining == 0 {
            let Some(entry) = self.entries.get(self.next_entry) else {
                self.done = true;
                return None;
            };
            self.next_entry += 1;
            if entry.d == 0 {
                continue;
            }
            if let Some(t) = entry.t {
                self.time = t;
            }
            self.duration = entry.d;
            self.remaining = match u64::try_from(entry.r) {
                Ok(r) => r.saturating_add(1),
                Err(_) if entry.r == -1 => match self.entries.get(self.next_entry).and_then(|next| next.t) {
                    Some(next_t) if next_t > self.time => (next_t - self.time).div_ceil(entry.d),
                    _ => 1,
                },
                Err(_) => 1,
            };
        }
        let segment = TimelineSegment { number: self.number, time: self.time, duration: self.duration };
        self.remaining -= 1;
        match (self.time.checked_add(self.duration), self.number.checked_add(1)) {
            (Some(time), Some(number)) => {
                self.time = time;
                self.number = number;
            }
            _ => self.done = true,
        }
        Some(segment)
    }
}

/// Expands one `$...$` token into `out`; `false` if it is left as written.
pub(super) fn substitute(
    out: &mut String,
    token: &str,
    rep_id: &str,
    bandwidth: u64,
    number: Option<u64>,
    time: Option<u64>,
) -> bool {
    if token.is_empty() {
        out.push('$');
        return true;
    }
    let (ident, format) = match token.find('%') {
        Some(at) => (&token[..at], Some(&token[at..])),
        None => (token, None),
    };
    let value = match ident {
        "RepresentationID" if format.is_none() => {
            out.push_str(rep_id);
            return true;
        }
        "Number" => number,
        "Time" => time,
        "Bandwidth" => Some(bandwidth),
        _ => None,
    };
    let Some(value) = value else { return false };
    let width = match format {
        None => 0,
        Some(format) => match format_width(format) {
            Some(width) => width,
            None => return false,
        },
    };
    // Writing to a String cannot fail.
    let _ = write!(out, "{value:0width$}");
    true
}

/// The width of a `%0Nd` (or `%Nd`, `%d`) format tag.
pub(crate) fn format_width(format: &str) -> Option<usize> {
    let body = format.strip_prefix('%')?.strip_suffix('d')?;
    if body.is_empty() {
        return Some(0);
    }
    if !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let width: usize = body.parse().ok()?;
    (width <= MAX_FORMAT_WIDTH).then_some(width)
}
