//! DASH Media Presentation Description (MPD, ISO/IEC 23009-1) parsing.
//!
//! Only what an edge needs is kept: whether the presentation is live and how
//! often it changes (`type`, `minimumUpdatePeriod`, `availabilityStartTime`,
//! ...), and every URI it references (`BaseURL` at each level,
//! `SegmentTemplate` `initialization`/`media`, `SegmentTimeline`), so that
//! manifests can be rewritten and segments prefetched.
//!
//! The parser is a streaming pass over quick-xml events with an explicit
//! element stack (no recursion). Unknown elements and attributes are skipped,
//! whatever their content; malformed XML, a root other than `MPD`, a document
//! cut short or nested more than [`MAX_DEPTH`] deep is an error. Invalid
//! attribute values (a bad number or duration) are treated as absent.
//!
//! `SegmentTemplate` is inherited Period → AdaptationSet → Representation
//! attribute by attribute: after parsing, `AdaptationSet::segment_template` and
//! `Representation::segment_template` hold the *effective* template, with
//! every attribute the element's own template sets overriding its parent's.
//! A Representation without `mimeType`, `codecs`, `width` or `height` takes
//! the AdaptationSet's. `SegmentBase` and `SegmentList` are not modelled.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Decoder, Reader};

use super::MediaError;

/// Deepest element nesting accepted. Real MPDs are under 10 deep.
pub const MAX_DEPTH: usize = 256;

/// Widest `%0Nd` format tag honoured in a template (a `u64` has 20 digits);
/// a wider one is left unexpanded.
const MAX_FORMAT_WIDTH: usize = 64;

/// Bytes a parse may materialize beyond its input when templates are inherited
/// (each Representation gets its own copy of an inherited timeline): at least
/// this much, or `TEMPLATE_AMPLIFICATION` times the input.
const TEMPLATE_BUDGET_MIN: usize = 64 << 20;
const TEMPLATE_AMPLIFICATION: usize = 16;

/// A parsed MPD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mpd {
    /// `type="dynamic"` (live); `false` for `static` or no `type`.
    pub dynamic: bool,
    pub minimum_update_period: Option<Duration>,
    pub availability_start_time: Option<SystemTime>,
    pub media_presentation_duration: Option<Duration>,
    pub time_shift_buffer_depth: Option<Duration>,
    pub suggested_presentation_delay: Option<Duration>,
    pub max_segment_duration: Option<Duration>,
    /// MPD-level `BaseURL`s, in document order.
    pub base_urls: Vec<String>,
    pub periods: Vec<Period>,
}

/// A `Period`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Period {
    pub id: Option<String>,
    pub start: Option<Duration>,
    pub base_urls: Vec<String>,
    pub adaptation_sets: Vec<AdaptationSet>,
}

/// An `AdaptationSet`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdaptationSet {
    pub content_type: Option<String>,
    pub mime_type: Option<String>,
    pub base_urls: Vec<String>,
    /// The set's effective template: its own, merged over the Period's.
    pub segment_template: Option<SegmentTemplate>,
    pub representations: Vec<Representation>,
}

/// A `Representation`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Representation {
    /// `id` (empty if missing).
    pub id: String,
    /// `bandwidth` in bits per second (0 if missing or invalid).
    pub bandwidth: u64,
    /// Own `mimeType`, else the AdaptationSet's.
    pub mime_type: Option<String>,
    /// Own `codecs`, else the AdaptationSet's.
    pub codecs: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub base_urls: Vec<String>,
    /// The effective template: own attributes merged over the inherited
    /// template, else the inherited one.
    pub segment_template: Option<SegmentTemplate>,
}

/// A `SegmentTemplate` (after inheritance, see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentTemplate {
    pub media: Option<String>,
    pub initialization: Option<String>,
    /// `startNumber`, default 1.
    pub start_number: u64,
    /// `timescale` in units per second, default 1 (never 0).
    pub timescale: u64,
    /// `duration` in `timescale` units (number-based addressing).
    pub duration: Option<u64>,
    /// `presentationTimeOffset`, default 0.
    pub presentation_time_offset: u64,
    /// `SegmentTimeline` `S` entries (empty without a timeline).
    pub timeline: Vec<TimelineEntry>,
}

impl Default for SegmentTemplate {
    fn default() -> Self {
        SegmentTemplate {
            media: None,
            initialization: None,
            start_number: 1,
            timescale: 1,
            duration: None,
            presentation_time_offset: 0,
            timeline: Vec::new(),
        }
    }
}

/// One `S` element of a `SegmentTimeline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineEntry {
    /// `t`: start time in timescale units, if given.
    pub t: Option<u64>,
    /// `d`: duration in timescale units.
    pub d: u64,
    /// `r`: repeat count (0 = one segment); -1 repeats up to the next `t`.
    pub r: i64,
}

/// One segment addressed by a `SegmentTimeline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineSegment {
    /// `$Number$`.
    pub number: u64,
    /// `$Time$`, in timescale units.
    pub time: u64,
    /// Duration in timescale units.
    pub duration: u64,
}

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

impl Representation {
    /// The effective template: the Representation's own (which, after
    /// [`parse`], already has the set's attributes merged in), else the
    /// AdaptationSet's.
    pub fn effective_template<'a>(&'a self, set: &'a AdaptationSet) -> Option<&'a SegmentTemplate> {
        self.segment_template.as_ref().or(set.segment_template.as_ref())
    }

    /// The initialization segment URI (relative to the BaseURLs), expanded.
    pub fn initialization_uri(&self) -> Option<String> {
        let pattern = self.segment_template.as_ref()?.initialization.as_deref()?;
        Some(SegmentTemplate::expand(pattern, &self.id, self.bandwidth, None, None))
    }

    /// A media segment URI (relative to the BaseURLs), expanded with the given
    /// `$Number$` and/or `$Time$`.
    pub fn media_uri(&self, number: Option<u64>, time: Option<u64>) -> Option<String> {
        let pattern = self.segment_template.as_ref()?.media.as_deref()?;
        Some(SegmentTemplate::expand(pattern, &self.id, self.bandwidth, number, time))
    }
}

impl Mpd {
    /// Every URI the manifest references, as written (templates unexpanded):
    /// `BaseURL`s at every level and each template's `initialization` and
    /// `media`, in document order, without duplicates.
    pub fn template_uris(&self) -> Vec<String> {
        fn template(t: &Option<SegmentTemplate>) -> impl Iterator<Item = &String> {
            t.iter().flat_map(|t| [&t.initialization, &t.media]).flatten()
        }
        let mut uris: Vec<&String> = self.base_urls.iter().collect();
        for period in &self.periods {
            uris.extend(&period.base_urls);
            for set in &period.adaptation_sets {
                uris.extend(&set.base_urls);
                uris.extend(template(&set.segment_template));
                for rep in &set.representations {
                    uris.extend(&rep.base_urls);
                    uris.extend(template(&rep.segment_template));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        uris.into_iter().filter(|uri| seen.insert(uri.as_str())).cloned().collect()
    }
}

/// Parses an MPD document.
pub fn parse(xml: &[u8]) -> Result<Mpd, MediaError> {
    let mut reader = Reader::from_reader(xml);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;
    let decoder = reader.decoder();

    let mut builder = Builder {
        budget: TEMPLATE_BUDGET_MIN.max(xml.len().saturating_mul(TEMPLATE_AMPLIFICATION)),
        ..Builder::default()
    };
    let mut stack: Vec<Ctx> = Vec::new();
    let mut root_seen = false;

    loop {
        let event = reader
            .read_event()
            .map_err(|e| MediaError(format!("malformed MPD XML at byte {}: {e}", reader.error_position())))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let parent = stack.last().copied();
                if parent.is_none() {
                    if root_seen {
                        return Err(MediaError("MPD: content after the root element".into()));
                    }
                    root_seen = true;
                }
                let ctx = builder.open(parent, e, decoder)?;
                if matches!(event, Event::Start(_)) {
                    if stack.len() >= MAX_DEPTH {
                        return Err(MediaError(format!("MPD nested deeper than {MAX_DEPTH} elements")));
                    }
                    stack.push(ctx);
                } else {
                    builder.close(ctx)?;
                }
            }
            Event::End(_) => {
                let ctx = stack.pop().ok_or_else(|| MediaError("MPD: unmatched end tag".into()))?;
                builder.close(ctx)?;
            }
            Event::Text(ref text) if stack.is_empty() && text.iter().any(|b| !b.is_ascii_whitespace()) => {
                return Err(MediaError("not an MPD: text outside the root element".into()));
            }
            Event::CData(_) | Event::GeneralRef(_) if stack.is_empty() => {
                return Err(MediaError("not an MPD: text outside the root element".into()));
            }
            Event::Text(text) => {
                if let Some(Ctx::BaseUrl(_)) = stack.last() {
                    builder.text.push_str(&text.decode().map_err(|e| MediaError(format!("MPD BaseURL: {e}")))?);
                }
            }
            Event::CData(text) => {
                if let Some(Ctx::BaseUrl(_)) = stack.last() {
                    builder.text.push_str(&text.decode().map_err(|e| MediaError(format!("MPD BaseURL: {e}")))?);
                }
            }
            Event::GeneralRef(reference) => {
                if let Some(Ctx::BaseUrl(_)) = stack.last() {
                    let resolved = reference.resolve_char_ref().map_err(|e| MediaError(format!("MPD BaseURL: {e}")))?;
                    match resolved {
                        Some(c) => builder.text.push(c),
                        None => {
                            let name = reference.decode().map_err(|e| MediaError(format!("MPD BaseURL: {e}")))?;
                            let value = resolve_predefined_entity(&name)
                                .ok_or_else(|| MediaError(format!("MPD BaseURL: unknown entity &{name};")))?;
                            builder.text.push_str(value);
                        }
                    }
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(MediaError("MPD truncated: elements left open at end of input".into()));
    }
    if !root_seen {
        return Err(MediaError("not an MPD: no root element".into()));
    }
    Ok(builder.mpd)
}

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

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Expands one `$...$` token into `out`; `false` if it is left as written.
fn substitute(
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
fn format_width(format: &str) -> Option<usize> {
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

/// What an open element is, for the events inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Mpd,
    Period,
    Set,
    Rep,
    Template(Owner),
    Timeline(Owner),
    BaseUrl(Owner),
    Ignored,
}

/// The element a `BaseURL` or `SegmentTemplate` belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Mpd,
    Period,
    Set,
    Rep,
}

/// A `SegmentTemplate` as written: `None` where an attribute is absent, so
/// that inheritance can merge attribute by attribute.
#[derive(Debug, Clone, Default)]
struct RawTemplate {
    media: Option<String>,
    initialization: Option<String>,
    start_number: Option<u64>,
    timescale: Option<u64>,
    duration: Option<u64>,
    presentation_time_offset: Option<u64>,
    timeline: Option<Vec<TimelineEntry>>,
}

impl RawTemplate {
    /// `child`'s attributes over `parent`'s.
    fn merge(child: Option<&RawTemplate>, parent: Option<&RawTemplate>) -> Option<RawTemplate> {
        match (child, parent) {
            (None, None) => None,
            (Some(one), None) | (None, Some(one)) => Some(one.clone()),
            (Some(child), Some(parent)) => Some(RawTemplate {
                media: child.media.clone().or_else(|| parent.media.clone()),
                initialization: child.initialization.clone().or_else(|| parent.initialization.clone()),
                start_number: child.start_number.or(parent.start_number),
                timescale: child.timescale.or(parent.timescale),
                duration: child.duration.or(parent.duration),
                presentation_time_offset: child.presentation_time_offset.or(parent.presentation_time_offset),
                timeline: child.timeline.clone().or_else(|| parent.timeline.clone()),
            }),
        }
    }

    fn cost(&self) -> usize {
        let strings = self.media.as_ref().map_or(0, String::len) + self.initialization.as_ref().map_or(0, String::len);
        let timeline = self.timeline.as_ref().map_or(0, Vec::len) * std::mem::size_of::<TimelineEntry>();
        std::mem::size_of::<SegmentTemplate>() + strings + timeline
    }

    fn finish(self) -> SegmentTemplate {
        SegmentTemplate {
            media: self.media,
            initialization: self.initialization,
            start_number: self.start_number.unwrap_or(1),
            timescale: self.timescale.unwrap_or(1),
            duration: self.duration,
            presentation_time_offset: self.presentation_time_offset.unwrap_or(0),
            timeline: self.timeline.unwrap_or_default(),
        }
    }
}

#[derive(Debug, Default)]
struct RawPeriod {
    period: Period,
    template: Option<RawTemplate>,
    sets: Vec<RawSet>,
}

#[derive(Debug, Default)]
struct RawSet {
    set: AdaptationSet,
    codecs: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    template: Option<RawTemplate>,
    reps: Vec<RawRep>,
}

#[derive(Debug, Default)]
struct RawRep {
    rep: Representation,
    template: Option<RawTemplate>,
}

#[derive(Debug, Default)]
struct Builder {
    mpd: Mpd,
    period: Option<RawPeriod>,
    /// Text of the `BaseURL` being read.
    text: String,
    /// Bytes left for inherited template copies.
    budget: usize,
}

impl Builder {
    fn open(&mut self, parent: Option<Ctx>, e: &BytesStart<'_>, dec: Decoder) -> Result<Ctx, MediaError> {
        let local = e.local_name();
        let name = local.as_ref();
        let ctx = match parent {
            None if name == b"MPD" => {
                self.mpd_attributes(e, dec)?;
                Ctx::Mpd
            }
            None => {
                let shown = String::from_utf8_lossy(&name[..name.len().min(64)]).into_owned();
                return Err(MediaError(format!("not an MPD: root element is <{shown}>")));
            }
            Some(Ctx::Mpd) => match name {
                b"Period" => {
                    let [id, start] = attributes(e, dec, ["id", "start"])?;
                    let period =
                        Period { id, start: start.as_deref().and_then(parse_iso8601_duration), ..Period::default() };
                    self.period = Some(RawPeriod { period, ..RawPeriod::default() });
                    Ctx::Period
                }
                b"BaseURL" => self.base_url(Owner::Mpd),
                _ => Ctx::Ignored,
            },
            Some(Ctx::Period) => match name {
                b"AdaptationSet" => {
                    let [content_type, mime_type, codecs, width, height] =
                        attributes(e, dec, ["contentType", "mimeType", "codecs", "width", "height"])?;
                    let set = RawSet {
                        set: AdaptationSet { content_type, mime_type, ..AdaptationSet::default() },
                        codecs,
                        width: width.as_deref().and_then(parse_number),
                        height: height.as_deref().and_then(parse_number),
                        ..RawSet::default()
                    };
                    if let Some(period) = self.period.as_mut() {
                        period.sets.push(set);
                    }
                    Ctx::Set
                }
                b"BaseURL" => self.base_url(Owner::Period),
                b"SegmentTemplate" => self.template(Owner::Period, e, dec)?,
                _ => Ctx::Ignored,
            },
            Some(Ctx::Set) => match name {
                b"Representation" => {
                    let [id, bandwidth, mime_type, codecs, width, height] =
                        attributes(e, dec, ["id", "bandwidth", "mimeType", "codecs", "width", "height"])?;
                    let rep = Representation {
                        id: id.unwrap_or_default(),
                        bandwidth: bandwidth.as_deref().and_then(parse_number).unwrap_or(0),
                        mime_type,
                        codecs,
                        width: width.as_deref().and_then(parse_number),
                        height: height.as_deref().and_then(parse_number),
                        ..Representation::default()
                    };
                    if let Some(set) = self.period.as_mut().and_then(|p| p.sets.last_mut()) {
                        set.reps.push(RawRep { rep, template: None });
                    }
                    Ctx::Rep
                }
                b"BaseURL" => self.base_url(Owner::Set),
                b"SegmentTemplate" => self.template(Owner::Set, e, dec)?,
                _ => Ctx::Ignored,
            },
            Some(Ctx::Rep) => match name {
                b"BaseURL" => self.base_url(Owner::Rep),
                b"SegmentTemplate" => self.template(Owner::Rep, e, dec)?,
                _ => Ctx::Ignored,
            },
            Some(Ctx::Template(owner)) => match name {
                b"SegmentTimeline" => {
                    if let Some(template) = self.template_mut(owner) {
                        template.timeline = Some(Vec::new());
                    }
                    Ctx::Timeline(owner)
                }
                _ => Ctx::Ignored,
            },
            Some(Ctx::Timeline(owner)) => {
                if name == b"S" {
                    let [t, d, r] = attributes(e, dec, ["t", "d", "r"])?;
                    // `d` is required; an entry without a usable one is dropped.
                    if let Some(d) = d.as_deref().and_then(parse_number) {
                        let entry = TimelineEntry {
                            t: t.as_deref().and_then(parse_number),
                            d,
                            r: r.as_deref().and_then(parse_number).unwrap_or(0),
                        };
                        if let Some(timeline) = self.template_mut(owner).and_then(|t| t.timeline.as_mut()) {
                            timeline.push(entry);
                        }
                    }
                }
                Ctx::Ignored
            }
            Some(Ctx::BaseUrl(_) | Ctx::Ignored) => Ctx::Ignored,
        };
        Ok(ctx)
    }

    fn close(&mut self, ctx: Ctx) -> Result<(), MediaError> {
        match ctx {
            Ctx::BaseUrl(owner) => {
                let text = std::mem::take(&mut self.text);
                let url = text.trim();
                if !url.is_empty() {
                    if let Some(urls) = self.base_urls_mut(owner) {
                        urls.push(url.to_owned());
                    }
                }
            }
            Ctx::Period => {
                if let Some(raw) = self.period.take() {
                    let period = self.finish_period(raw)?;
                    self.mpd.periods.push(period);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn mpd_attributes(&mut self, e: &BytesStart<'_>, dec: Decoder) -> Result<(), MediaError> {
        let [kind, mup, ast, mpd_duration, tsbd, spd, msd] = attributes(
            e,
            dec,
            [
                "type",
                "minimumUpdatePeriod",
                "availabilityStartTime",
                "mediaPresentationDuration",
                "timeShiftBufferDepth",
                "suggestedPresentationDelay",
                "maxSegmentDuration",
            ],
        )?;
        let duration = |v: Option<String>| v.as_deref().and_then(parse_iso8601_duration);
        self.mpd.dynamic = kind.as_deref().map(str::trim) == Some("dynamic");
        self.mpd.minimum_update_period = duration(mup);
        self.mpd.availability_start_time = ast.as_deref().and_then(parse_iso8601_datetime);
        self.mpd.media_presentation_duration = duration(mpd_duration);
        self.mpd.time_shift_buffer_depth = duration(tsbd);
        self.mpd.suggested_presentation_delay = duration(spd);
        self.mpd.max_segment_duration = duration(msd);
        Ok(())
    }

    fn base_url(&mut self, owner: Owner) -> Ctx {
        self.text.clear();
        Ctx::BaseUrl(owner)
    }

    fn template(&mut self, owner: Owner, e: &BytesStart<'_>, dec: Decoder) -> Result<Ctx, MediaError> {
        let [media, initialization, start_number, timescale, duration, pto] = attributes(
            e,
            dec,
            ["media", "initialization", "startNumber", "timescale", "duration", "presentationTimeOffset"],
        )?;
        let template = RawTemplate {
            media,
            initialization,
            start_number: start_number.as_deref().and_then(parse_number),
            timescale: timescale.as_deref().and_then(parse_number).filter(|&t| t > 0),
            duration: duration.as_deref().and_then(parse_number),
            presentation_time_offset: pto.as_deref().and_then(parse_number),
            timeline: None,
        };
        let slot = match owner {
            Owner::Mpd => None,
            Owner::Period => self.period.as_mut().map(|p| &mut p.template),
            Owner::Set => self.period.as_mut().and_then(|p| p.sets.last_mut()).map(|s| &mut s.template),
            Owner::Rep => self
                .period
                .as_mut()
                .and_then(|p| p.sets.last_mut())
                .and_then(|s| s.reps.last_mut())
                .map(|r| &mut r.template),
        };
        if let Some(slot) = slot {
            *slot = Some(template);
        }
        Ok(Ctx::Template(owner))
    }

    fn template_mut(&mut self, owner: Owner) -> Option<&mut RawTemplate> {
        let period = self.period.as_mut()?;
        match owner {
            Owner::Mpd => None,
            Owner::Period => period.template.as_mut(),
            Owner::Set => period.sets.last_mut()?.template.as_mut(),
            Owner::Rep => period.sets.last_mut()?.reps.last_mut()?.template.as_mut(),
        }
    }

    fn base_urls_mut(&mut self, owner: Owner) -> Option<&mut Vec<String>> {
        if owner == Owner::Mpd {
            return Some(&mut self.mpd.base_urls);
        }
        let period = self.period.as_mut()?;
        match owner {
            Owner::Mpd => None,
            Owner::Period => Some(&mut period.period.base_urls),
            Owner::Set => Some(&mut period.sets.last_mut()?.set.base_urls),
            Owner::Rep => Some(&mut period.sets.last_mut()?.reps.last_mut()?.rep.base_urls),
        }
    }

    /// Resolves template inheritance and common attributes for a finished Period.
    fn finish_period(&mut self, raw: RawPeriod) -> Result<Period, MediaError> {
        let mut period = raw.period;
        for raw_set in raw.sets {
            let set_template = RawTemplate::merge(raw_set.template.as_ref(), raw.template.as_ref());
            self.charge(set_template.as_ref())?;
            let mut set = raw_set.set;
            for raw_rep in raw_set.reps {
                let mut rep = raw_rep.rep;
                let template = RawTemplate::merge(raw_rep.template.as_ref(), set_template.as_ref());
                self.charge(template.as_ref())?;
                rep.segment_template = template.map(RawTemplate::finish);
                if rep.mime_type.is_none() {
                    rep.mime_type.clone_from(&set.mime_type);
                }
                if rep.codecs.is_none() {
                    rep.codecs.clone_from(&raw_set.codecs);
                }
                rep.width = rep.width.or(raw_set.width);
                rep.height = rep.height.or(raw_set.height);
                set.representations.push(rep);
            }
            set.segment_template = set_template.map(RawTemplate::finish);
            period.adaptation_sets.push(set);
        }
        Ok(period)
    }

    fn charge(&mut self, template: Option<&RawTemplate>) -> Result<(), MediaError> {
        let cost = template.map_or(0, RawTemplate::cost);
        self.budget = self
            .budget
            .checked_sub(cost)
            .ok_or_else(|| MediaError("MPD too large: inherited SegmentTemplates exceed the size budget".into()))?;
        Ok(())
    }
}

/// The values of the named (unprefixed) attributes, decoded and unescaped.
/// Attributes not asked for are not decoded.
fn attributes<const N: usize>(
    e: &BytesStart<'_>,
    dec: Decoder,
    names: [&str; N],
) -> Result<[Option<String>; N], MediaError> {
    let mut values: [Option<String>; N] = std::array::from_fn(|_| None);
    for attribute in e.attributes() {
        let attribute = attribute.map_err(|err| MediaError(format!("malformed MPD attribute: {err}")))?;
        let key = attribute.key.as_ref();
        if let Some(slot) = names.iter().position(|n| n.as_bytes() == key).and_then(|i| values.get_mut(i)) {
            let value = attribute
                .decode_and_unescape_value(dec)
                .map_err(|err| MediaError(format!("malformed MPD attribute value: {err}")))?;
            *slot = Some(value.into_owned());
        }
    }
    Ok(values)
}

fn parse_number<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn at(unix: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
    }

    #[test]
    fn bundled_test_media_manifest() {
        let mpd = parse(include_bytes!("../../test-media/dash/manifest.mpd")).expect("parse");
        assert!(!mpd.dynamic);
        assert_eq!(mpd.media_presentation_duration, Some(secs(20)));
        assert_eq!(mpd.max_segment_duration, Some(secs(2)));
        assert_eq!(mpd.minimum_update_period, None);
        assert_eq!(mpd.availability_start_time, None);
        assert_eq!(mpd.periods.len(), 1);
        let period = &mpd.periods[0];
        assert_eq!(period.id.as_deref(), Some("0"));
        assert_eq!(period.start, Some(secs(0)));
        assert_eq!(period.adaptation_sets.len(), 2);

        let video = &period.adaptation_sets[0];
        assert_eq!(video.content_type.as_deref(), Some("video"));
        assert!(video.segment_template.is_none());
        let ids: Vec<_> = video.representations.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["0", "1"]);
        let rep = &video.representations[1];
        assert_eq!(rep.bandwidth, 172_442);
        assert_eq!(rep.mime_type.as_deref(), Some("video/mp4"));
        assert_eq!(rep.codecs.as_deref(), Some("avc1.4d4015"));
        assert_eq!((rep.width, rep.height), (Some(480), Some(270)));
        let template = rep.effective_template(video).expect("template");
        assert_eq!(template.timescale, 1_000_000);
        assert_eq!(template.duration, Some(2_000_000));
        assert_eq!(template.start_number, 1);
        assert!(template.timeline.is_empty());
        assert_eq!(rep.initialization_uri().as_deref(), Some("init-1.m4s"));
        assert_eq!(rep.media_uri(Some(7), None).as_deref(), Some("chunk-1-00007.m4s"));

        let audio = &period.adaptation_sets[1];
        assert_eq!(audio.content_type.as_deref(), Some("audio"));
        assert_eq!(audio.representations[0].id, "2");
        assert_eq!(audio.representations[0].media_uri(Some(10), None).as_deref(), Some("chunk-2-00010.m4s"));

        assert_eq!(mpd.template_uris(), ["init-$RepresentationID$.m4s", "chunk-$RepresentationID$-$Number%05d$.m4s"]);

        // Every segment the manifest addresses is one of the bundled files.
        for set in &period.adaptation_sets {
            for rep in &set.representations {
                let init = rep.initialization_uri().expect("init");
                assert!(std::path::Path::new("test-media/dash").join(&init).exists(), "{init}");
                for n in 1..=10 {
                    let media = rep.media_uri(Some(n), None).expect("media");
                    assert!(std::path::Path::new("test-media/dash").join(&media).exists(), "{media}");
                }
            }
        }
    }

    #[test]
    fn static_sample_with_inherited_templates() {
        let mpd = parse(include_bytes!("../../manifests/dash/static.mpd")).expect("parse");
        assert!(!mpd.dynamic);
        assert_eq!(mpd.media_presentation_duration, Some(Duration::from_millis(30_720)));
        assert_eq!(mpd.max_segment_duration, Some(Duration::from_millis(3_840)));
        assert_eq!(mpd.base_urls, ["https://vod-origin.example.com/films/sample/"]);
        let period = &mpd.periods[0];
        assert_eq!(period.adaptation_sets.len(), 2);

        let video = &period.adaptation_sets[0];
        assert_eq!(video.mime_type.as_deref(), Some("video/mp4"));
        let set_template = video.segment_template.as_ref().expect("set template");
        assert_eq!(set_template.timescale, 12_800);
        assert_eq!(set_template.duration, Some(49_152));
        assert_eq!(video.representations.len(), 2);
        let low = &video.representations[0];
        assert_eq!(low.id, "v360");
        // Inherited from the AdaptationSet.
        assert_eq!(low.mime_type.as_deref(), Some("video/mp4"));
        assert_eq!(low.segment_template.as_ref(), Some(set_template));
        assert_eq!(low.initialization_uri().as_deref(), Some("video/v360/init.mp4"));
        assert_eq!(low.media_uri(Some(3), None).as_deref(), Some("video/v360/seg-00003.m4s"));
        let high = &video.representations[1];
        assert_eq!((high.width, high.height, high.bandwidth), (Some(1280), Some(720), 2_400_000));
        assert_eq!(high.codecs.as_deref(), Some("avc1.64001f"));
        assert_eq!(high.base_urls, ["hd/"]);
        // The representation's own template overrides startNumber only.
        let own = high.effective_template(video).expect("template");
        assert_eq!(own.start_number, 0);
        assert_eq!(own.timescale, 12_800);
        assert_eq!(own.media, set_template.media);
        assert_eq!(high.media_uri(Some(0), None).as_deref(), Some("video/v720/seg-00000.m4s"));

        let audio = &period.adaptation_sets[1];
        assert_eq!(audio.content_type.as_deref(), Some("audio"));
        let rep = &audio.representations[0];
        assert_eq!(rep.codecs.as_deref(), Some("mp4a.40.2"));
        assert_eq!(rep.media_uri(Some(8), None).as_deref(), Some("audio/en/128000/seg-8.m4s"));

        assert_eq!(
            mpd.template_uris(),
            [
                "https://vod-origin.example.com/films/sample/",
                "video/$RepresentationID$/init.mp4",
                "video/$RepresentationID$/seg-$Number%05d$.m4s",
                "hd/",
                "audio/en/$Bandwidth$/init.mp4",
                "audio/en/$Bandwidth$/seg-$Number$.m4s",
            ]
        );
    }

    #[test]
    fn dynamic_sample_with_segment_timeline() {
        let mpd = parse(include_bytes!("../../manifests/dash/dynamic.mpd")).expect("parse");
        assert!(mpd.dynamic);
        assert_eq!(mpd.minimum_update_period, Some(secs(2)));
        // 2024-01-01T00:00:00Z
        assert_eq!(mpd.availability_start_time, Some(at(1_704_067_200)));
        assert_eq!(mpd.time_shift_buffer_depth, Some(secs(30)));
        assert_eq!(mpd.suggested_presentation_delay, Some(secs(6)));
        assert_eq!(mpd.max_segment_duration, Some(Duration::from_millis(2_010)));
        assert_eq!(mpd.media_presentation_duration, None);
        let period = &mpd.periods[0];
        assert_eq!(period.start, Some(secs(0)));

        let video = &period.adaptation_sets[0];
        let template = video.segment_template.as_ref().expect("template");
        assert_eq!(template.timescale, 90_000);
        assert_eq!(template.duration, None);
        assert_eq!(
            template.timeline,
            [
                TimelineEntry { t: Some(321_300_000), d: 180_000, r: 9 },
                TimelineEntry { t: None, d: 179_100, r: 0 },
                TimelineEntry { t: None, d: 180_900, r: 0 },
                TimelineEntry { t: None, d: 180_000, r: 2 },
            ]
        );
        let segments: Vec<_> = template.timeline_segments().collect();
        assert_eq!(segments.len(), 15);
        assert_eq!(segments[0], TimelineSegment { number: 1, time: 321_300_000, duration: 180_000 });
        assert_eq!(segments[10], TimelineSegment { number: 11, time: 323_100_000, duration: 179_100 });
        assert_eq!(segments[14], TimelineSegment { number: 15, time: 323_820_000, duration: 180_000 });
        let total: u64 = segments.iter().map(|s| s.duration).sum();
        assert_eq!(total, 30 * 90_000);
        for rep in &video.representations {
            assert_eq!(rep.segment_template.as_ref(), Some(template));
        }
        let rep = &video.representations[0];
        assert_eq!(rep.media_uri(None, Some(321_300_000)).as_deref(), Some("video/v540/t321300000.m4s"));

        let audio = &period.adaptation_sets[1];
        let template = audio.representations[0].segment_template.as_ref().expect("template");
        assert_eq!(template.timescale, 48_000);
        let segments: Vec<_> = template.timeline_segments().collect();
        assert_eq!(segments.len(), 15);
        assert_eq!(segments[0].time, 171_360_000);
        let end = segments[14].time + segments[14].duration;
        assert_eq!(end, 171_360_000 + 1_440_768);
    }

    #[test]
    fn low_latency_sample() {
        let mpd = parse(include_bytes!("../../manifests/dash/low-latency.mpd")).expect("parse");
        assert!(mpd.dynamic);
        assert_eq!(mpd.availability_start_time, Some(at(1_704_067_200) + Duration::from_millis(500)));
        assert_eq!(mpd.minimum_update_period, Some(secs(500)));
        let video = &mpd.periods[0].adaptation_sets[0];
        let rep = &video.representations[0];
        let template = rep.segment_template.as_ref().expect("template");
        assert_eq!((template.timescale, template.duration, template.start_number), (1_000, Some(2_000), 1));
        assert_eq!(rep.media_uri(Some(42), None).as_deref(), Some("video/v720/42.m4s"));
        assert!(mpd.template_uris().contains(&"audio/$RepresentationID$/$Number$.m4s".to_owned()));
    }

    #[test]
    fn inline_dynamic_mpd_with_namespaces_and_inheritance() {
        let xml = br#"<?xml version="1.0"?>
            <!-- a comment -->
            <mpd:MPD xmlns:mpd="urn:mpeg:dash:schema:mpd:2011" type="dynamic"
                minimumUpdatePeriod="PT1M30.5S" availabilityStartTime="2024-02-29T12:34:56.789+01:00">
              <mpd:BaseURL> https://a.example/live/?x=1&amp;y=&#50; </mpd:BaseURL>
              <mpd:Period id="p1" start="P1DT2H">
                <mpd:BaseURL><![CDATA[p1/]]></mpd:BaseURL>
                <mpd:SegmentTemplate timescale="1000" media="$RepresentationID$/$Time$.m4s" initialization="$RepresentationID$/init.m4s">
                  <mpd:SegmentTimeline><mpd:S t="5000" d="2000" r="-1"/><mpd:S t="11000" d="1000"/></mpd:SegmentTimeline>
                </mpd:SegmentTemplate>
                <mpd:AdaptationSet mimeType="video/mp4" codecs="hvc1.1.6.L93.B0">
                  <mpd:SegmentTemplate presentationTimeOffset="5000"/>
                  <mpd:Representation id="a" bandwidth="1000"><mpd:SegmentTemplate timescale="0" media="x/$Number$"/></mpd:Representation>
                  <mpd:Representation id="b" bandwidth="99999999999999999999999"/>
                  <mpd:Unknown><mpd:Representation id="ghost"/></mpd:Unknown>
                </mpd:AdaptationSet>
              </mpd:Period>
            </mpd:MPD>"#;
        let mpd = parse(xml).expect("parse");
        assert!(mpd.dynamic);
        assert_eq!(mpd.minimum_update_period, Some(Duration::from_millis(90_500)));
        // 2024-02-29T11:34:56.789Z
        assert_eq!(mpd.availability_start_time, Some(at(1_709_206_496) + Duration::from_millis(789)));
        assert_eq!(mpd.base_urls, ["https://a.example/live/?x=1&y=2"]);
        let period = &mpd.periods[0];
        assert_eq!(period.id.as_deref(), Some("p1"));
        assert_eq!(period.start, Some(secs(26 * 3600)));
        assert_eq!(period.base_urls, ["p1/"]);
        let set = &period.adaptation_sets[0];
        let set_template = set.segment_template.as_ref().expect("set template");
        assert_eq!(set_template.presentation_time_offset, 5000);
        assert_eq!(set_template.timescale, 1000);
        assert_eq!(set_template.timeline.len(), 2);
        let times: Vec<_> = set_template.timeline_segments().map(|s| (s.number, s.time, s.duration)).collect();
        assert_eq!(times, [(1, 5000, 2000), (2, 7000, 2000), (3, 9000, 2000), (4, 11000, 1000)]);
        assert_eq!(set.representations.len(), 2);
        let a = &set.representations[0];
        let template = a.segment_template.as_ref().expect("template");
        // Own media; timescale="0" is invalid so the inherited 1000 stays.
        assert_eq!(template.media.as_deref(), Some("x/$Number$"));
        assert_eq!(template.timescale, 1000);
        assert_eq!(template.presentation_time_offset, 5000);
        assert_eq!(template.initialization.as_deref(), Some("$RepresentationID$/init.m4s"));
        assert_eq!(a.codecs.as_deref(), Some("hvc1.1.6.L93.B0"));
        assert_eq!(a.mime_type.as_deref(), Some("video/mp4"));
        let b = &set.representations[1];
        assert_eq!(b.bandwidth, 0);
        assert_eq!(b.media_uri(None, Some(7000)).as_deref(), Some("b/7000.m4s"));
    }

    #[test]
    fn template_expansion() {
        let expand = SegmentTemplate::expand;
        assert_eq!(expand("$RepresentationID$/$Number$.m4s", "v1", 0, Some(42), None), "v1/42.m4s");
        assert_eq!(expand("seg-$Number%05d$.m4s", "v", 0, Some(42), None), "seg-00042.m4s");
        assert_eq!(expand("seg-$Number%03d$.m4s", "v", 0, Some(123_456), None), "seg-123456.m4s");
        assert_eq!(expand("seg-$Number%5d$.m4s", "v", 0, Some(7), None), "seg-00007.m4s");
        assert_eq!(expand("seg-$Number%d$.m4s", "v", 0, Some(7), None), "seg-7.m4s");
        assert_eq!(expand("$Time$.m4s", "v", 0, None, Some(u64::MAX)), "18446744073709551615.m4s");
        assert_eq!(expand("$Time%012d$.m4s", "v", 0, None, Some(90_000)), "000000090000.m4s");
        assert_eq!(expand("$Bandwidth$/$Bandwidth%09d$", "v", 128_000, None, None), "128000/000128000");
        assert_eq!(expand("a$$b$$$Number$", "v", 0, Some(1), None), "a$b$1");
        // Missing values, unknown identifiers and bad formats are left as written.
        assert_eq!(expand("$Number$-$Time$", "v", 0, None, None), "$Number$-$Time$");
        assert_eq!(expand("$SubNumber$/$Foo$", "v", 0, Some(1), Some(1)), "$SubNumber$/$Foo$");
        assert_eq!(expand("$Number%05x$", "v", 0, Some(1), None), "$Number%05x$");
        assert_eq!(expand("$Number%0999999999999d$", "v", 0, Some(1), None), "$Number%0999999999999d$");
        assert_eq!(expand("$RepresentationID%05d$", "v", 0, None, None), "$RepresentationID%05d$");
        assert_eq!(expand("trailing$Number", "v", 0, Some(1), None), "trailing$Number");
        assert_eq!(expand("$", "v", 0, None, None), "$");
        assert_eq!(expand("", "v", 0, None, None), "");
        assert_eq!(expand("ünï/$RepresentationID$/çödé", "ид", 0, None, None), "ünï/ид/çödé");
    }

    #[test]
    fn iso8601_durations() {
        let d = parse_iso8601_duration;
        assert_eq!(d("PT2S"), Some(secs(2)));
        assert_eq!(d("PT1M30.5S"), Some(Duration::from_millis(90_500)));
        assert_eq!(d("P1DT2H"), Some(secs(26 * 3600)));
        assert_eq!(d("PT0S"), Some(secs(0)));
        assert_eq!(d("PT20.0S"), Some(secs(20)));
        assert_eq!(d("PT0.000000001S"), Some(Duration::from_nanos(1)));
        assert_eq!(d("PT1.1234567891S"), Some(Duration::new(1, 123_456_789)));
        assert_eq!(d(" PT4,5S "), Some(Duration::from_millis(4_500)));
        assert_eq!(d("P0Y0M0DT0H0M20.000S"), Some(secs(20)));
        assert_eq!(d("P1W"), Some(secs(7 * 86_400)));
        assert_eq!(d("P1Y2M"), Some(secs(365 * 86_400 + 60 * 86_400)));
        assert_eq!(d("PT36H"), Some(secs(36 * 3600)));
        for bad in [
            "",
            "P",
            "PT",
            "2S",
            "-PT2S",
            "PT-2S",
            "PT2",
            "PTS",
            "PT.5S",
            "PT5.S",
            "PT1S2M",
            "P1H",
            "PT1D",
            "P1DT",
            "PT1.5M2S",
            "PT1S1S",
            "P1TT1S",
            "PT1SX",
            "pt2s",
            "PT 2S",
            "PT99999999999999999999999999999999999999999S",
            "P18446744073709551616D",
        ] {
            assert_eq!(d(bad), None, "{bad:?}");
        }
        assert_eq!(d("PT18446744073709551615S"), Some(secs(u64::MAX)));
        assert_eq!(d("PT18446744073709551616S"), None);
    }

    #[test]
    fn iso8601_datetimes() {
        let t = parse_iso8601_datetime;
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(at(0)));
        assert_eq!(t("2024-01-01T00:00:00Z"), Some(at(1_704_067_200)));
        assert_eq!(t("2024-01-01T00:00:00.25Z"), Some(at(1_704_067_200) + Duration::from_millis(250)));
        assert_eq!(t("2024-01-01T00:00:00"), Some(at(1_704_067_200)));
        assert_eq!(t("2024-01-01T01:30:00+01:30"), Some(at(1_704_067_200)));
        assert_eq!(t("2023-12-31T22:00:00-0200"), Some(at(1_704_067_200)));
        assert_eq!(t("2024-02-29T00:00:00Z"), Some(at(1_709_164_800)));
        assert_eq!(t("1969-12-31T23:59:59Z"), SystemTime::UNIX_EPOCH.checked_sub(secs(1)));
        for bad in [
            "",
            "2024-01-01",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00ZZ",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+25:00",
            "2024-01-01 00:00:00Z",
            "２０２４-01-01T00:00:00Z",
            "2024-01-01T00:00:00+01:0",
        ] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn timeline_iteration_is_lazy_and_overflow_safe() {
        let template = SegmentTemplate {
            start_number: u64::MAX - 1,
            timeline: vec![
                TimelineEntry { t: Some(u64::MAX - 10), d: 4, r: i64::MAX },
                TimelineEntry { t: None, d: 0, r: 5 },
            ],
            ..SegmentTemplate::default()
        };
        let segments: Vec<_> = template.timeline_segments().take(10).collect();
        assert_eq!(segments.len(), 2);
        assert_eq!(segments[1].number, u64::MAX);

        let huge = SegmentTemplate {
            timeline: vec![TimelineEntry { t: None, d: 1, r: i64::MAX }],
            ..SegmentTemplate::default()
        };
        assert_eq!(huge.timeline_segments().nth(1_000_000).map(|s| s.time), Some(1_000_000));

        let zero = SegmentTemplate {
            timeline: vec![TimelineEntry { t: None, d: 0, r: -1 }, TimelineEntry { t: Some(5), d: 2, r: -7 }],
            ..SegmentTemplate::default()
        };
        assert_eq!(zero.timeline_segments().count(), 1);
        assert_eq!(SegmentTemplate::default().timeline_segments().count(), 0);
    }

    #[test]
    fn malformed_samples_are_errors() {
        let truncated = parse(include_bytes!("../../manifests/malformed/truncated.mpd"));
        assert!(truncated.is_err(), "{truncated:?}");
        let not_xml = parse(include_bytes!("../../manifests/malformed/not-xml.mpd"));
        assert!(not_xml.is_err(), "{not_xml:?}");
        // HLS playlists, an HTML page and binary junk are not MPDs either.
        for input in [
            &include_bytes!("../../manifests/malformed/not-a-playlist.m3u8")[..],
            &include_bytes!("../../manifests/malformed/binary.m3u8")[..],
            &include_bytes!("../../manifests/hls/master.m3u8")[..],
            &include_bytes!("../../manifests/hls/ll-hls.m3u8")[..],
        ] {
            assert!(parse(input).is_err());
        }
    }

    #[test]
    fn malformed_inputs_are_errors() {
        for xml in [
            &b""[..],
            b"   ",
            b"<?xml version=\"1.0\"?>",
            b"<MPD>",
            b"<MPD><Period></MPD>",
            b"<MPD></Period>",
            b"<MPD type=\"static\" type=\"dynamic\"/>",
            b"<MPD type=dynamic/>",
            b"<MPD type=\"&bogus;\"/>",
            b"<MPD/><MPD/>",
            b"<MPD/><Other/>",
            b"<Other/>",
            b"<html><body>404</body></html>",
            b"<MPD><BaseURL>a&bogus;b</BaseURL></MPD>",
            b"<MPD><BaseURL>\xff\xfe</BaseURL></MPD>",
            b"<MPD type=\"\xff\"/>",
            b"<MPD><Period><AdaptationSet><Representation id=\"1\"",
            b"<MPD><!-- unterminated",
            b"{\"error\": \"not found\"}",
            b"junk<MPD/>",
            b"<MPD/>junk",
            b"<![CDATA[x]]><MPD/>",
            b"&amp;<MPD/>",
        ] {
            assert!(parse(xml).is_err(), "{:?}", String::from_utf8_lossy(xml));
        }
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        // Deep nesting, in a known and in an unknown element.
        let deep = |depth: usize, name: &str| {
            let mut xml = String::from("<MPD>");
            xml.push_str(&format!("<{name}>").repeat(depth));
            xml.push_str(&format!("</{name}>").repeat(depth));
            xml.push_str("</MPD>");
            xml
        };
        assert!(parse(deep(100, "Foo").as_bytes()).is_ok());
        assert!(parse(deep(100_000, "Foo").as_bytes()).is_err());
        assert!(parse(deep(100_000, "Period").as_bytes()).is_err());
        assert!(parse(&b"<".repeat(100_000)).is_err());

        // Huge and negative numbers, missing attributes, unknown elements.
        let xml = br#"<MPD type="dynamic" minimumUpdatePeriod="PT99999999999999999999999S" availabilityStartTime="99999-01-01T00:00:00Z"
            mediaPresentationDuration="garbage">
            <Period><AdaptationSet><Representation width="-1" height="4294967296" bandwidth="-5">
              <SegmentTemplate startNumber="18446744073709551616" duration="-1" timescale="99999999999999999999">
                <SegmentTimeline><S/><S d="x"/><S d="5" r="-99999999999999999999"/><S t="-1" d="1" r="9223372036854775807"/></SegmentTimeline>
              </SegmentTemplate></Representation>
            <Representation/><Label>x</Label><SegmentTimeline><S d="1"/></SegmentTimeline></AdaptationSet></Period>
            <Period/><UnknownThing a="1"><Period id="nested-ignored"/></UnknownThing></MPD>"#;
        let mpd = parse(xml).expect("parse");
        assert_eq!(mpd.minimum_update_period, None);
        assert_eq!(mpd.availability_start_time, None);
        assert_eq!(mpd.media_presentation_duration, None);
        assert_eq!(mpd.periods.len(), 2);
        let reps = &mpd.periods[0].adaptation_sets[0].representations;
        assert_eq!(reps.len(), 2);
        assert_eq!((reps[0].width, reps[0].height, reps[0].bandwidth), (None, None, 0));
        let template = reps[0].segment_template.as_ref().expect("template");
        assert_eq!((template.start_number, template.timescale, template.duration), (1, 1, None));
        assert_eq!(
            template.timeline,
            [TimelineEntry { t: None, d: 5, r: 0 }, TimelineEntry { t: None, d: 1, r: i64::MAX }]
        );
        assert_eq!(template.timeline_segments().take(3).count(), 3);
        assert_eq!(reps[1].id, "");
        assert!(reps[1].segment_template.is_none());

        // A byte-order mark, whitespace around the root, and a Latin-1 byte in an
        // element that is not read.
        assert!(parse(b"\xef\xbb\xbf<MPD type=\"dynamic\"/>").expect("bom").dynamic);
        assert!(parse(b"<?xml version=\"1.0\"?>\r\n\t<MPD/>\n\n").is_ok());
        assert!(
            parse(b"<MPD><ProgramInformation><Title lang=\"\xe9\">Caf\xe9</Title></ProgramInformation></MPD>").is_ok()
        );
    }

    #[test]
    fn inherited_template_copies_are_budgeted() {
        // A large timeline inherited by many representations would be copied
        // into each: the parse is refused rather than allowed to balloon.
        let mut xml = String::from("<MPD><Period><AdaptationSet><SegmentTemplate><SegmentTimeline>");
        xml.push_str(&"<S d=\"1\"/>".repeat(20_000));
        xml.push_str("</SegmentTimeline></SegmentTemplate>");
        xml.push_str(&"<Representation/>".repeat(20_000));
        xml.push_str("</AdaptationSet></Period></MPD>");
        let err = parse(xml.as_bytes()).expect_err("over budget");
        assert!(err.0.contains("budget"), "{err}");

        // Realistic sizes are fine.
        let mut xml = String::from("<MPD><Period><AdaptationSet><SegmentTemplate><SegmentTimeline>");
        xml.push_str(&"<S d=\"96256\"/><S d=\"95232\"/>".repeat(20_000));
        xml.push_str("</SegmentTimeline></SegmentTemplate>");
        xml.push_str(&"<Representation/>".repeat(8));
        xml.push_str("</AdaptationSet></Period></MPD>");
        let mpd = parse(xml.as_bytes()).expect("parse");
        assert_eq!(
            mpd.periods[0].adaptation_sets[0].representations[7].segment_template.as_ref().map(|t| t.timeline.len()),
            Some(40_000)
        );
    }
}
