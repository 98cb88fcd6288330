//! A DASH player for `SegmentTemplate` streams (`$Number$` with `duration`,
//! or a `SegmentTimeline`), over MPDs parsed by `crate::media::dash`. It plays
//! one video representation:
//!
//! - static MPD: the initialization segment, then every media segment of
//!   every period, in order, back to back;
//! - dynamic MPD: the live edge computed from `availabilityStartTime`, the
//!   period start and the segment durations; it starts three segments back,
//!   then fetches each segment once, at the time it becomes available (the
//!   end of the segment: ISO/IEC 23009-1 §5.3.9.5), never earlier, and
//!   reloads the MPD every `minimumUpdatePeriod`.

use super::client::{resolve, Want};
use super::stats::Class;
use super::{sleep_until, Done, Player, Rendition};
use crate::media::dash::{self, AdaptationSet, Mpd, Period, Representation, SegmentTemplate};
use http::Uri;
use std::time::{Duration, Instant, SystemTime};

/// Most timeline entries walked to find a segment (a hostile `r` is huge).
const TIMELINE_WALK: usize = 1_000_000;

/// Shortest and longest MPD refresh interval honoured.
const MIN_REFRESH: Duration = Duration::from_millis(500);
const MAX_REFRESH: Duration = Duration::from_secs(3600);

/// The representation players play, with where it lives.
pub(super) struct Chosen<'a> {
    pub set: &'a AdaptationSet,
    pub rep: &'a Representation,
}

fn is_video(mime: Option<&str>) -> bool {
    mime.is_some_and(|m| m.starts_with("video/"))
}

/// The video adaptation set of a period (else the first with representations),
/// and the representation `rendition` picks in it.
pub(super) fn choose(mpd: &Mpd, period: usize, rendition: Rendition) -> Result<Chosen<'_>, String> {
    let period = mpd.periods.get(period).ok_or("the MPD has no Period")?;
    let sets = period.adaptation_sets.iter().filter(|s| !s.representations.is_empty());
    let set = sets
        .clone()
        .find(|s| {
            s.content_type.as_deref() == Some("video")
                || is_video(s.mime_type.as_deref())
                || s.representations.iter().any(|r| is_video(r.mime_type.as_deref()))
        })
        .or_else(|| sets.clone().next())
        .ok_or("the period has no representations")?;
    let bandwidths: Vec<u64> = set.representations.iter().map(|r| r.bandwidth).collect();
    match rendition.pick(&bandwidths) {
        Some(i) => Ok(Chosen { set, rep: &set.representations[i] }),
        None => Err(format!(
            "--rendition {rendition}: the video adaptation set has {} representation(s), numbered from 0",
            set.representations.len()
        )),
    }
}

/// The representation players will pick, for the report.
pub(super) fn describe(mpd: &Mpd, rendition: Rendition) -> Result<String, String> {
    let period = if mpd.dynamic { live_period(mpd, SystemTime::now()).unwrap_or(0) } else { 0 };
    let chosen = choose(mpd, period, rendition)?;
    Ok(format!("representation {} ({} bit/s)", chosen.rep.id, chosen.rep.bandwidth))
}

/// The representation's base: the MPD URL with each level's first BaseURL
/// resolved in turn.
fn base_of(url: &Uri, mpd: &Mpd, period: &Period, c: &Chosen<'_>) -> Option<Uri> {
    let mut base = url.clone();
    for list in [&mpd.base_urls, &period.base_urls, &c.set.base_urls, &c.rep.base_urls] {
        if let Some(b) = list.first() {
            base = resolve(&base, b)?;
        }
    }
    Some(base)
}

fn period_start(mpd: &Mpd, i: usize) -> Duration {
    mpd.periods.get(i).and_then(|p| p.start).unwrap_or(Duration::ZERO)
}

/// Where period `i` ends (the next period's start, else the presentation's
/// duration), relative to the presentation's start.
fn period_end(mpd: &Mpd, i: usize) -> Option<Duration> {
    mpd.periods.get(i + 1).and_then(|p| p.start).or(mpd.media_presentation_duration)
}

/// `units` of `timescale` as a duration (saturating).
fn units(units: u128, timescale: u64) -> Duration {
    let nanos = units.saturating_mul(1_000_000_000) / u128::from(timescale.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// A media segment's address and duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Address {
    number: u64,
    time: u64,
    /// Start and end, relative to the period's start.
    start: Duration,
    end: Duration,
}

impl Address {
    fn seconds(&self) -> f64 {
        self.end.saturating_sub(self.start).as_secs_f64()
    }
}

/// Segment `k` (from `startNumber`) of a `duration` template.
fn numbered(t: &SegmentTemplate, d: u64, k: u64) -> Address {
    let start = u128::from(k) * u128::from(d);
    Address {
        number: t.start_number.saturating_add(k),
        time: u64::try_from(start).unwrap_or(u64::MAX).saturating_add(t.presentation_time_offset),
        start: units(start, t.timescale),
        end: units(start + u128::from(d), t.timescale),
    }
}

/// The segments a timeline lists, at most `cap`.
fn timeline(t: &SegmentTemplate, cap: usize) -> impl Iterator<Item = Address> + '_ {
    t.timeline_segments().take(cap).map(move |s| {
        let from = u128::from(s.time.saturating_sub(t.presentation_time_offset));
        Address {
            number: s.number,
            time: s.time,
            start: units(from, t.timescale),
            end: units(from + u128::from(s.duration), t.timescale),
        }
    })
}

/// Every segment of a static period, at most `cap`.
fn static_segments(t: &SegmentTemplate, length: Option<Duration>, cap: usize) -> Result<Vec<Address>, String> {
    if !t.timeline.is_empty() {
        return Ok(timeline(t, cap).collect());
    }
    let d = t.duration.filter(|d| *d > 0).ok_or("the SegmentTemplate has neither duration nor SegmentTimeline")?;
    let length = length.ok_or("the period's length is unknown (no mediaPresentationDuration)")?;
    let count = (length.as_nanos().saturating_mul(u128::from(t.timescale)))
        .div_ceil(u128::from(d).saturating_mul(1_000_000_000));
    let count = u64::try_from(count).unwrap_or(u64::MAX).min(cap as u64);
    Ok((0..count).map(|k| numbered(t, d, k)).collect())
}

pub(super) async fn play(p: &mut Player, url: Uri) -> Result<(), Done> {
    let (mpd, loaded) = loop {
        let began = Instant::now();
        if let Some(mpd) = load(p, &url).await? {
            break (mpd, began);
        }
        sleep_until(began + Duration::from_secs(1)).await;
    };
    if mpd.dynamic {
        live(p, &url, mpd, loaded).await
    } else {
        vod(p, &url, &mpd).await
    }
}

async fn load(p: &mut Player, url: &Uri) -> Result<Option<Mpd>, Done> {
    let Some(r) = p.manifest(url, Class::Playlist, Duration::ZERO).await? else { return Ok(None) };
    match dash::parse(&r.body) {
        Ok(mpd) => Ok(Some(mpd)),
        Err(_) => {
            p.error(Class::Playlist, "parse");
            Ok(None)
        }
    }
}

/// The initialization segment (counted as a segment; no stall rule).
async fn init(p: &mut Player, base: &Uri, rep: &Representation) -> Result<(), Done> {
    if let Some(init) = rep.initialization_uri() {
        match resolve(base, &init) {
            Some(uri) => {
                let _ = p.get(&uri, Class::Segment, Want::default(), Duration::ZERO).await?;
            }
            None => p.error(Class::Segment, "bad-uri"),
        }
    }
    Ok(())
}

async fn segment(p: &mut Player, base: &Uri, rep: &Representation, a: &Address) -> Result<(), Done> {
    let target = match rep.media_uri(Some(a.number), Some(a.time)) {
        Some(media) => resolve(base, &media),
        // No template: the BaseURL is the whole media.
        None => Some(base.clone()),
    };
    match target {
        Some(uri) => p.media(&uri, Class::Segment, None, a.seconds()).await,
        None => {
            p.error(Class::Segment, "bad-uri");
            Ok(())
        }
    }
}

async fn vod(p: &mut Player, url: &Uri, mpd: &Mpd) -> Result<(), Done> {
    let cap = usize::try_from(p.opts().max_requests).unwrap_or(usize::MAX);
    let mut playable = false;
    loop {
        for (i, period) in mpd.periods.iter().enumerate() {
            let Ok(chosen) = choose(mpd, i, p.opts().rendition) else { continue };
            let Some(base) = base_of(url, mpd, period, &chosen) else {
                p.error(Class::Segment, "bad-uri");
                continue;
            };
            let length = period_end(mpd, i).map(|end| end.saturating_sub(period_start(mpd, i)));
            let addresses = match &chosen.rep.segment_template {
                Some(t) => match static_segments(t, length, cap) {
                    Ok(a) => a,
                    Err(_) => {
                        p.error(Class::Playlist, "unplayable");
                        continue;
                    }
                },
                None => vec![Address { number: 0, time: 0, start: Duration::ZERO, end: length.unwrap_or_default() }],
            };
            playable |= !addresses.is_empty();
            init(p, &base, chosen.rep).await?;
            for a in &addresses {
                segment(p, &base, chosen.rep, a).await?;
            }
        }
        if !playable || !p.opts().loop_vod {
            return Ok(());
        }
    }
}

/// The period playing at `now`: the last one started.
fn live_period(mpd: &Mpd, now: SystemTime) -> Option<usize> {
    let ast = mpd.availability_start_time?;
    let elapsed = now.duration_since(ast).unwrap_or(Duration::ZERO);
    if mpd.periods.is_empty() {
        return None;
    }
    Some((0..mpd.periods.len()).rev().find(|&i| period_start(mpd, i) <= elapsed).unwrap_or(0))
}

/// Where a live player is in its representation: the next segment it wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// `$Number$` addressing (a `duration` template): segment `k` from `startNumber`.
    Index(u64),
    /// A timeline: the first segment starting at or after this time.
    Time(u64),
}

/// What a live representation offers next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The segment, available at this time.
    Segment(Address, SystemTime),
    /// Nothing listed yet: wait for an MPD update.
    Nothing,
}

/// A live period's segments, as the live clock sees them.
struct Live<'a> {
    template: &'a SegmentTemplate,
    /// availabilityStartTime + period start.
    zero: SystemTime,
    /// The period's length, if it ends.
    length: Option<Duration>,
}

impl Live<'_> {
    fn available_at(&self, a: &Address) -> SystemTime {
        self.zero.checked_add(a.end).unwrap_or(self.zero)
    }

    fn is_available(&self, a: &Address, now: SystemTime) -> bool {
        self.available_at(a) <= now
    }

    /// Three segments back from the newest available one (or the first one
    /// to come, when none is).
    fn start(&self, now: SystemTime) -> Option<Position> {
        let elapsed = now.duration_since(self.zero).unwrap_or(Duration::ZERO);
        let elapsed = self.length.map_or(elapsed, |l| elapsed.min(l));
        if !self.template.timeline.is_empty() {
            // The timeline is in time order: keep the last three available.
            let mut first = None;
            let mut last = std::collections::VecDeque::with_capacity(3);
            for a in timeline(self.template, TIMELINE_WALK) {
                first.get_or_insert(a.time);
                if a.end > elapsed {
                    break;
                }
                if last.len() == 3 {
                    last.pop_front();
                }
                last.push_back(a.time);
            }
            return last.front().copied().or(first).map(Position::Time);
        }
        let d = self.template.duration.filter(|d| *d > 0)?;
        let available = elapsed.as_nanos().saturating_mul(u128::from(self.template.timescale))
            / u128::from(d).saturating_mul(1_000_000_000);
        Some(Position::Index(u64::try_from(available).unwrap_or(u64::MAX).saturating_sub(3)))
    }

    fn next(&self, at: Position) -> Next {
        let found = match at {
            Position::Index(k) => self.template.duration.filter(|d| *d > 0).map(|d| numbered(self.template, d, k)),
            Position::Time(t) => timeline(self.template, TIMELINE_WALK).find(|a| a.time >= t),
        };
        match found {
            Some(a) if self.length.is_none_or(|l| a.start < l) => Next::Segment(a, self.available_at(&a)),
            _ => Next::Nothing,
        }
    }

    fn after(&self, at: Position, a: &Address) -> Position {
        match at {
            Position::Index(k) => Position::Index(k.saturating_add(1)),
            Position::Time(_) => Position::Time(a.time.saturating_add(1)),
        }
    }
}

/// When `at` (wall clock) falls on the monotonic clock (at most a day ahead:
/// the player looks again then).
fn instant_of(at: SystemTime) -> Instant {
    let ahead = at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
    Instant::now() + ahead.min(Duration::from_secs(86_400))
}

async fn live(p: &mut Player, url: &Uri, mut mpd: Mpd, mut loaded: Instant) -> Result<(), Done> {
    // (period index, period id, representation id) being played, and the position in it.
    let mut playing: Option<(usize, Option<String>, String)> = None;
    let mut position: Option<Position> = None;
    loop {
        let refresh_at = mpd.minimum_update_period.map(|m| loaded + m.clamp(MIN_REFRESH, MAX_REFRESH));
        if refresh_at.is_some_and(|r| Instant::now() >= r) {
            loaded = Instant::now();
            if let Some(next) = load(p, url).await? {
                if !next.dynamic {
                    // The live presentation ended.
                    return Ok(());
                }
                mpd = next;
            }
            continue;
        }
        let now = SystemTime::now();
        let mut wake: Option<Instant> = None;
        let chosen = live_period(&mpd, now).and_then(|i| Some((i, choose(&mpd, i, p.opts().rendition).ok()?)));
        if let (Some((i, chosen)), Some(ast)) = (chosen, mpd.availability_start_time) {
            let period = &mpd.periods[i];
            let key = (i, period.id.clone(), chosen.rep.id.clone());
            let base = base_of(url, &mpd, period, &chosen);
            match (chosen.rep.segment_template.as_ref(), base) {
                (Some(template), Some(base)) => {
                    let live = Live {
                        template,
                        zero: ast.checked_add(period_start(&mpd, i)).unwrap_or(ast),
                        length: period_end(&mpd, i).map(|e| e.saturating_sub(period_start(&mpd, i))),
                    };
                    if playing.as_ref() != Some(&key) {
                        init(p, &base, chosen.rep).await?;
                        playing = Some(key);
                        position = live.start(now);
                    }
                    if let Some(at) = position {
                        match live.next(at) {
                            Next::Segment(a, _) if live.is_available(&a, SystemTime::now()) => {
                                position = Some(live.after(at, &a));
                                segment(p, &base, chosen.rep, &a).await?;
                                continue;
                            }
                            Next::Segment(_, when) => wake = Some(instant_of(when)),
                            Next::Nothing => {}
                        }
                    }
                }
                _ => {
                    if playing.as_ref() != Some(&key) {
                        p.error(Class::Playlist, "unplayable");
                        playing = Some(key);
                    }
                }
            }
        }
        let until = match (wake, refresh_at) {
            (Some(w), Some(r)) => w.min(r),
            (Some(w), None) => w,
            (None, Some(r)) => r,
            // No segment to wait for and the MPD will not change: done.
            (None, None) => return Ok(()),
        };
        sleep_until(until).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(duration: Option<u64>, timescale: u64) -> SegmentTemplate {
        SegmentTemplate {
            media: Some("seg-$Number$.m4s".into()),
            initialization: Some("init.m4s".into()),
            start_number: 1,
            timescale,
            duration,
            ..SegmentTemplate::default()
        }
    }

    #[test]
    fn static_counts() {
        let t = template(Some(2_000_000), 1_000_000);
        let all = static_segments(&t, Some(Duration::from_secs(20)), 1000).expect("segments");
        assert_eq!(all.len(), 10);
        assert_eq!((all[0].number, all[9].number), (1, 10));
        assert_eq!(all[9].start, Duration::from_secs(18));
        // A last, shorter segment.
        assert_eq!(static_segments(&t, Some(Duration::from_millis(20_500)), 1000).map(|a| a.len()), Ok(11));
        assert_eq!(static_segments(&t, Some(Duration::from_secs(20)), 4).map(|a| a.len()), Ok(4));
        assert!(static_segments(&t, None, 10).is_err());
        assert!(static_segments(&template(None, 1), Some(Duration::from_secs(1)), 10).is_err());
    }

    #[test]
    fn live_edge_by_number() {
        let t = template(Some(2000), 1000);
        let zero = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let live = Live { template: &t, zero, length: None };
        // 9.5 s in: segments 1..=4 (ending at 2, 4, 6, 8 s) are available.
        let now = zero + Duration::from_millis(9_500);
        let start = live.start(now).expect("start");
        assert_eq!(start, Position::Index(1));
        let Next::Segment(a, when) = live.next(start) else { panic!("a segment") };
        assert_eq!(a.number, 2);
        assert!(live.is_available(&a, now));
        assert_eq!(when, zero + Duration::from_secs(4));
        // Segment 5 ends at 10 s: not available at 9.5 s.
        let Next::Segment(b, when) = live.next(Position::Index(4)) else { panic!("a segment") };
        assert_eq!(b.number, 5);
        assert!(!live.is_available(&b, now));
        assert_eq!(when, zero + Duration::from_secs(10));
        // Before anything is available: wait for the first segment.
        assert_eq!(live.start(zero), Some(Position::Index(0)));
        // A period that ends.
        let ending = Live { template: &t, zero, length: Some(Duration::from_secs(4)) };
        assert_eq!(ending.next(Position::Index(2)), Next::Nothing);
        assert_eq!(ending.start(now + Duration::from_secs(100)), Some(Position::Index(0)));
    }

    #[test]
    fn live_edge_by_timeline() {
        let mut t = template(None, 10);
        t.presentation_time_offset = 100;
        t.timeline = vec![dash::TimelineEntry { t: Some(100), d: 20, r: 4 }];
        // Segments at 0-2, 2-4, 4-6, 6-8, 8-10 s of the period.
        let zero = SystemTime::UNIX_EPOCH + Duration::from_secs(5_000);
        let live = Live { template: &t, zero, length: None };
        let now = zero + Duration::from_millis(8_100);
        // Available: four; start three back, at the second (time 120).
        assert_eq!(live.start(now), Some(Position::Time(120)));
        let Next::Segment(a, _) = live.next(Position::Time(120)) else { panic!("a segment") };
        assert_eq!((a.number, a.time), (2, 120));
        let after = live.after(Position::Time(120), &a);
        let Next::Segment(b, when) = live.next(after) else { panic!("a segment") };
        assert_eq!(b.time, 140);
        assert_eq!(when, zero + Duration::from_secs(6));
        let Next::Segment(last, when) = live.next(Position::Time(180)) else { panic!("a segment") };
        assert!(!live.is_available(&last, now));
        assert_eq!(when, zero + Duration::from_secs(10));
        assert_eq!(live.next(Position::Time(181)), Next::Nothing);
    }

    #[test]
    fn choice_prefers_video() {
        let mpd = dash::parse(include_bytes!("../../test-media/dash/manifest.mpd")).expect("mpd");
        let lowest = choose(&mpd, 0, Rendition::Lowest).expect("lowest");
        assert_eq!(lowest.rep.id, "0");
        assert_eq!(choose(&mpd, 0, Rendition::Highest).expect("highest").rep.id, "1");
        assert!(choose(&mpd, 0, Rendition::Index(2)).is_err());
        assert!(choose(&mpd, 1, Rendition::Lowest).is_err());
        let base =
            base_of(&"http://e/dash/manifest.mpd".parse().expect("uri"), &mpd, &mpd.periods[0], &lowest).expect("base");
        let uri = lowest.rep.media_uri(Some(3), None).and_then(|m| resolve(&base, &m)).expect("uri");
        assert_eq!(uri.to_string(), "http://e/dash/chunk-0-00003.m4s");
        let length = period_end(&mpd, 0).map(|e| e.saturating_sub(period_start(&mpd, 0)));
        let t = lowest.rep.segment_template.as_ref().expect("template");
        assert_eq!(static_segments(t, length, 100).map(|a| a.len()), Ok(10));
    }
}
