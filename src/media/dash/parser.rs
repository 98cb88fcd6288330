//! The streaming parser: quick-xml events over an explicit element stack.

use super::MediaError;
use super::*;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Decoder, Reader};
use std::time::Duration;

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
/// What an open element is, for the events inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ctx {
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
pub(super) enum Owner {
    Mpd,
    Period,
    Set,
    Rep,
}

/// A `SegmentTemplate` as written: `None` where an attribute is absent, so
/// that inheritance can merge attribute by attribute.
#[derive(Debug, Clone, Default)]
pub(super) struct RawTemplate {
    media: Option<String>,
    initialization: Option<String>,
    start_number: Option<u64>,
    timescale: Option<u64>,
    duration: Option<u64>,
    presentation_time_offset: Option<u64>,
    availability_time_offset: Option<Duration>,
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
                availability_time_offset: child.availability_time_offset.or(parent.availability_time_offset),
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
            availability_time_offset: self.availability_time_offset,
            timeline: self.timeline.unwrap_or_default(),
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct RawPeriod {
    period: Period,
    template: Option<RawTemplate>,
    sets: Vec<RawSet>,
}

#[derive(Debug, Default)]
pub(super) struct RawSet {
    set: AdaptationSet,
    codecs: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    template: Option<RawTemplate>,
    reps: Vec<RawRep>,
}

#[derive(Debug, Default)]
pub(super) struct RawRep {
    rep: Representation,
    template: Option<RawTemplate>,
}

#[derive(Debug, Default)]
pub(super) struct Builder {
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
        let [media, initialization, start_number, timescale, duration, pto, ato] = attributes(
            e,
            dec,
            [
                "media",
                "initialization",
                "startNumber",
                "timescale",
                "duration",
                "presentationTimeOffset",
                "availabilityTimeOffset",
            ],
        )?;
        let template = RawTemplate {
            media,
            initialization,
            start_number: start_number.as_deref().and_then(parse_number),
            timescale: timescale.as_deref().and_then(parse_number).filter(|&t| t > 0),
            duration: duration.as_deref().and_then(parse_number),
            presentation_time_offset: pto.as_deref().and_then(parse_number),
            availability_time_offset: ato.as_deref().and_then(parse_time_offset),
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
pub(super) fn attributes<const N: usize>(
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

/// `availabilityTimeOffset`: seconds (a double), or `INF` (always available).
fn parse_time_offset(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "INF" {
        return Some(Duration::MAX);
    }
    let v: f64 = s.parse().ok()?;
    Duration::try_from_secs_f64(v).ok()
}

pub(super) fn parse_number<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.trim().parse().ok()
}
