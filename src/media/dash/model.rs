//! The presentation as the edge sees it: periods, adaptation sets,
//! representations and their effective segment templates.

use std::time::{Duration, SystemTime};

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
    /// `availabilityTimeOffset` (LL-DASH: how long before its end a segment's
    /// first chunk is out); `Duration::MAX` for `INF`.
    pub availability_time_offset: Option<Duration>,
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
            availability_time_offset: None,
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
