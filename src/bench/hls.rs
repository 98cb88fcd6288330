//! An HLS player, as RFC 8216 §6.3 describes one (and the LL-HLS additions of
//! its second edition): it loads the master playlist, picks one variant,
//! then
//!
//! - VOD: fetches the segments in order, back to back (a player downloading
//!   ahead);
//! - live: starts at the last three segments and reloads the playlist one
//!   target duration after the previous load began when it changed, half a
//!   target duration when it did not (§6.3.4), fetching each new segment once;
//! - LL-HLS (`CAN-BLOCK-RELOAD=YES` and `EXT-X-PART-INF`): starts at the last
//!   complete segment and the parts of the one being produced, then asks for
//!   the next part with blocking reloads (`_HLS_msn`/`_HLS_part`) and fetches
//!   each new part once.
//!
//! Playlists are parsed by `crate::media::hls`. `EXT-X-MAP` initialization
//! sections and keys are not fetched; alternate renditions are not played.

use super::client::{resolve, with_query};
use super::stats::Class;
use super::{secs, sleep_until, Done, Player, Rendition};
use crate::media::hls::{self, ByteRange, Master, Media, Playlist, VariantStream};
use http::Uri;
use std::time::{Duration, Instant};

/// Chooses the variant players play.
pub(super) fn choose(master: &Master, rendition: Rendition) -> Result<&VariantStream, String> {
    let bandwidths: Vec<u64> = master.variants.iter().map(|v| v.bandwidth).collect();
    match rendition.pick(&bandwidths) {
        Some(i) => Ok(&master.variants[i]),
        None if master.variants.is_empty() => Err("the master playlist lists no variant streams".into()),
        None => Err(format!(
            "--rendition {rendition}: the master playlist lists {} variant(s), numbered from 0",
            master.variants.len()
        )),
    }
}

/// Played with blocking reloads and parts.
pub(super) fn low_latency(m: &Media) -> bool {
    m.ll.can_block_reload && m.ll.part_target.is_some_and(|t| t > 0.0)
}

pub(super) async fn play(p: &mut Player, url: Uri) -> Result<(), Done> {
    let (uri, media, began) = start(p, &url).await?;
    if !media.is_live() {
        vod(p, &uri, media).await
    } else if low_latency(&media) {
        low_latency_live(p, &uri, media).await
    } else {
        live(p, &uri, media, began).await
    }
}

/// Loads the URL (and the chosen variant) until a media playlist is in hand,
/// trying again each second. Returns its URI, the playlist and when its load began.
async fn start(p: &mut Player, url: &Uri) -> Result<(Uri, Media, Instant), Done> {
    loop {
        let began = Instant::now();
        if let Some(found) = try_start(p, url).await? {
            return Ok(found);
        }
        sleep_until(began + Duration::from_secs(1)).await;
    }
}

async fn try_start(p: &mut Player, url: &Uri) -> Result<Option<(Uri, Media, Instant)>, Done> {
    let began = Instant::now();
    let Some(first) = p.manifest(url, Class::Playlist, Duration::ZERO).await? else { return Ok(None) };
    let master = match hls::parse(&first.body) {
        Ok(Playlist::Media(m)) => return Ok(Some((url.clone(), m, began))),
        Ok(Playlist::Master(m)) => m,
        Err(_) => {
            p.error(Class::Playlist, "parse");
            return Ok(None);
        }
    };
    let Ok(variant) = choose(&master, p.opts().rendition) else {
        p.error(Class::Playlist, "rendition");
        return Ok(None);
    };
    let Some(uri) = resolve(url, &variant.uri) else {
        p.error(Class::Playlist, "bad-uri");
        return Ok(None);
    };
    let began = Instant::now();
    Ok(reload(p, &uri, Class::Playlist, Duration::ZERO).await?.map(|m| (uri, m, began)))
}

/// Loads a media playlist; `None` (counted) when it fails or is not one.
async fn reload(p: &mut Player, uri: &Uri, class: Class, extra_timeout: Duration) -> Result<Option<Media>, Done> {
    let Some(r) = p.manifest(uri, class, extra_timeout).await? else { return Ok(None) };
    match hls::parse(&r.body) {
        Ok(Playlist::Media(m)) => Ok(Some(m)),
        _ => {
            p.error(class, "parse");
            Ok(None)
        }
    }
}

/// One thing to fetch: a whole segment (`part: None`) or a part.
#[derive(Debug, Clone, PartialEq)]
struct Unit<'a> {
    msn: u64,
    part: Option<u64>,
    uri: &'a str,
    duration: f64,
    range: Option<(u64, u64)>,
    gap: bool,
}

/// Byte ranges without an offset follow the previous range of the same URI.
#[derive(Default)]
struct Ranges(Option<(String, u64)>);

impl Ranges {
    fn next(&mut self, uri: &str, range: Option<ByteRange>) -> Option<(u64, u64)> {
        let Some(range) = range else {
            self.0 = None;
            return None;
        };
        let follows = self.0.as_ref().filter(|(u, _)| u == uri).map(|(_, end)| *end);
        let offset = range.offset.or(follows).unwrap_or(0);
        self.0 = Some((uri.to_string(), offset.saturating_add(range.length)));
        Some((offset, range.length))
    }
}

/// The playlist's segments, in order.
fn segments(m: &Media) -> Vec<Unit<'_>> {
    let mut ranges = Ranges::default();
    m.segments
        .iter()
        .map(|s| Unit {
            msn: s.msn,
            part: None,
            uri: &s.uri,
            duration: s.duration,
            range: ranges.next(&s.uri, s.byte_range),
            gap: false,
        })
        .collect()
}

/// What an LL-HLS player fetches: each segment's parts where they are
/// listed, else the segment, then the parts of the segment being produced.
fn low_latency_units(m: &Media) -> Vec<Unit<'_>> {
    let mut parts = Ranges::default();
    let mut out = Vec::new();
    let whole = segments(m);
    for (s, unit) in m.segments.iter().zip(whole) {
        if s.parts.is_empty() {
            out.push(unit);
            continue;
        }
        for (i, part) in s.parts.iter().enumerate() {
            out.push(Unit {
                msn: s.msn,
                part: Some(i as u64),
                uri: &part.uri,
                duration: part.duration,
                range: parts.next(&part.uri, part.byte_range),
                gap: part.gap,
            });
        }
    }
    let next = m.next_msn();
    for (i, part) in m.ll.pending_parts.iter().enumerate() {
        out.push(Unit {
            msn: next,
            part: Some(i as u64),
            uri: &part.uri,
            duration: part.duration,
            range: parts.next(&part.uri, part.byte_range),
            gap: part.gap,
        });
    }
    out
}

fn class_of(unit: &Unit<'_>) -> Class {
    if unit.part.is_some() {
        Class::Part
    } else {
        Class::Segment
    }
}

/// Fetches one segment or part (once), counting a stall if it was missing
/// or slower than its duration.
async fn fetch(p: &mut Player, playlist: &Uri, unit: &Unit<'_>) -> Result<(), Done> {
    if unit.gap {
        return Ok(());
    }
    let class = class_of(unit);
    match resolve(playlist, unit.uri) {
        Some(uri) => p.media(&uri, class, unit.range, unit.duration).await,
        None => {
            p.error(class, "bad-uri");
            Ok(())
        }
    }
}

/// The target duration, bounded to something a loop can sleep on.
fn target(m: &Media) -> Duration {
    let td = secs(m.target_duration);
    if td.is_zero() {
        Duration::from_secs(1)
    } else {
        td.clamp(Duration::from_millis(100), Duration::from_secs(60))
    }
}

async fn vod(p: &mut Player, uri: &Uri, media: Media) -> Result<(), Done> {
    let units = segments(&media);
    if units.is_empty() {
        return Ok(());
    }
    loop {
        for unit in &units {
            fetch(p, uri, unit).await?;
        }
        if !p.opts().loop_vod {
            return Ok(());
        }
    }
}

/// Segments played from the window's start when the player fell behind it:
/// the ones it skipped are lost (a stall).
fn catch_up(p: &Player, cursor: &mut u64, first: Option<u64>) {
    if let Some(first) = first {
        if *cursor < first {
            p.ctx.shared.stall(Class::Segment);
            *cursor = first;
        }
    }
}

async fn live(p: &mut Player, uri: &Uri, mut media: Media, mut began: Instant) -> Result<(), Done> {
    // The live edge: the last three segments.
    let mut cursor = media.next_msn().saturating_sub(3);
    let mut changed = true;
    loop {
        catch_up(p, &mut cursor, media.segments.first().map(|s| s.msn));
        if cursor > media.next_msn() {
            // The playlist went back (a restarted packager): start over at its edge.
            cursor = media.next_msn().saturating_sub(3);
        }
        for unit in segments(&media) {
            if unit.msn < cursor {
                continue;
            }
            fetch(p, uri, &unit).await?;
            cursor = unit.msn.saturating_add(1);
        }
        if !media.is_live() {
            return Ok(());
        }
        // RFC 8216 §6.3.4: one target duration after the last load began if
        // it changed, half of one if it did not.
        let td = target(&media);
        sleep_until(began + if changed { td } else { td / 2 }).await;
        began = Instant::now();
        match reload(p, uri, Class::Playlist, Duration::ZERO).await? {
            Some(next) => {
                changed = next.next_msn() != media.next_msn() || next.end_list != media.end_list;
                media = next;
            }
            None => changed = false,
        }
    }
}

/// The next part (or segment) an LL-HLS player wants: segment `msn`, part `part`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Cursor {
    msn: u64,
    part: u64,
}

/// Where an LL-HLS player starts: the last complete segment, then the parts
/// of the one being produced.
fn low_latency_start(m: &Media) -> Cursor {
    let next = m.next_msn();
    match m.segments.last() {
        Some(last) => Cursor { msn: last.msn, part: 0 },
        None => Cursor { msn: next, part: 0 },
    }
}

/// Past the end of a complete segment: the next segment's first part.
fn normalize(m: &Media, mut c: Cursor) -> Cursor {
    let next = m.next_msn();
    while c.msn < next && c.part > 0 {
        let listed = m.segments.iter().find(|s| s.msn == c.msn).map_or(0, |s| s.parts.len() as u64);
        if c.part < listed {
            break;
        }
        c = Cursor { msn: c.msn.saturating_add(1), part: 0 };
    }
    c
}

/// Fetches every listed unit at or after the cursor, each once, and moves
/// the cursor past them.
async fn fetch_new_units(p: &mut Player, uri: &Uri, media: &Media, cursor: &mut Cursor) -> Result<(), Done> {
    if cursor.msn > media.next_msn() {
        *cursor = low_latency_start(media);
    }
    let units = low_latency_units(media);
    if let Some(first) = units.first() {
        let at = Cursor { msn: first.msn, part: first.part.unwrap_or(0) };
        if *cursor < at {
            p.ctx.shared.stall(class_of(first));
            *cursor = at;
        }
    }
    for unit in &units {
        let fresh = match unit.part {
            Some(i) => Cursor { msn: unit.msn, part: i } >= *cursor,
            // A whole segment, unless the player already has some of its parts.
            None => unit.msn > cursor.msn || (unit.msn == cursor.msn && cursor.part == 0),
        };
        if !fresh {
            continue;
        }
        fetch(p, uri, unit).await?;
        *cursor = match unit.part {
            Some(i) => Cursor { msn: unit.msn, part: i.saturating_add(1) },
            None => Cursor { msn: unit.msn.saturating_add(1), part: 0 },
        };
    }
    *cursor = normalize(media, *cursor);
    Ok(())
}

async fn low_latency_live(p: &mut Player, uri: &Uri, mut media: Media) -> Result<(), Done> {
    let mut cursor = low_latency_start(&media);
    loop {
        fetch_new_units(p, uri, &media, &mut cursor).await?;
        if !media.is_live() {
            return Ok(());
        }
        let part_target =
            secs(media.ll.part_target.unwrap_or(0.0)).clamp(Duration::from_millis(20), Duration::from_secs(10));
        // The server holds the request for up to three target durations.
        let hold = target(&media) * 3;
        let directives = [("_HLS_msn", cursor.msn.to_string()), ("_HLS_part", cursor.part.to_string())];
        let began = Instant::now();
        let Some(ask) = with_query(uri, &directives) else {
            p.error(Class::Blocking, "bad-uri");
            return Ok(());
        };
        match reload(p, &ask, Class::Blocking, hold).await? {
            Some(next) => {
                let delivered = next.contains(cursor.msn, Some(cursor.part));
                media = next;
                if !delivered {
                    // The server did not block: poll no faster than half a part.
                    sleep_until(began + part_target / 2).await;
                }
            }
            None => {
                // A failed blocking reload: back off a part, then resync with
                // a plain reload.
                sleep_until(began + part_target).await;
                if let Some(next) = reload(p, uri, Class::Playlist, Duration::ZERO).await? {
                    media = next;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(text: &str) -> Media {
        match hls::parse(text.as_bytes()) {
            Ok(Playlist::Media(m)) => m,
            other => panic!("not a media playlist: {other:?}"),
        }
    }

    const LL: &str = "#EXTM3U
#EXT-X-TARGETDURATION:1
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-MEDIA-SEQUENCE:10
#EXTINF:0.8,
seg10.mp4
#EXT-X-PART:DURATION=0.2,URI=\"part11.0.mp4\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.2,URI=\"part11.1.mp4\"
#EXT-X-PART:DURATION=0.2,URI=\"part11.2.mp4\"
#EXT-X-PART:DURATION=0.2,URI=\"part11.3.mp4\"
#EXTINF:0.8,
seg11.mp4
#EXT-X-PART:DURATION=0.2,URI=\"part12.0.mp4\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part12.1.mp4\"
";

    #[test]
    fn low_latency_units_and_cursor() {
        let m = media(LL);
        assert!(low_latency(&m));
        let units = low_latency_units(&m);
        let names: Vec<&str> = units.iter().map(|u| u.uri).collect();
        assert_eq!(
            names,
            ["seg10.mp4", "part11.0.mp4", "part11.1.mp4", "part11.2.mp4", "part11.3.mp4", "part12.0.mp4"]
        );
        assert_eq!((units[5].msn, units[5].part), (12, Some(0)));
        // Start at the last complete segment.
        assert_eq!(low_latency_start(&m), Cursor { msn: 11, part: 0 });
        // After part 11.3 the next wanted is 12.0; mid-segment stays.
        assert_eq!(normalize(&m, Cursor { msn: 11, part: 4 }), Cursor { msn: 12, part: 0 });
        assert_eq!(normalize(&m, Cursor { msn: 11, part: 2 }), Cursor { msn: 11, part: 2 });
        assert_eq!(normalize(&m, Cursor { msn: 12, part: 1 }), Cursor { msn: 12, part: 1 });
        // Segment 10 lists no parts: past it, segment 11 from its first part.
        assert_eq!(normalize(&m, Cursor { msn: 10, part: 1 }), Cursor { msn: 11, part: 0 });
        assert!(!low_latency(&media("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n")));
    }

    #[test]
    fn byte_ranges_follow_each_other() {
        let m = media(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:2,\n#EXT-X-BYTERANGE:100@0\nall.ts\n#EXTINF:2,\n#EXT-X-BYTERANGE:50\nall.ts\n#EXTINF:2,\n#EXT-X-BYTERANGE:10@500\nall.ts\n#EXTINF:2,\nb.ts\n#EXT-X-ENDLIST\n",
        );
        let ranges: Vec<_> = segments(&m).iter().map(|u| u.range).collect();
        assert_eq!(ranges, [Some((0, 100)), Some((100, 50)), Some((500, 10)), None]);
    }

    #[test]
    fn variant_choice() {
        let master = Master {
            variants: vec![
                VariantStream { uri: "hi.m3u8".into(), bandwidth: 900, ..VariantStream::default() },
                VariantStream { uri: "lo.m3u8".into(), bandwidth: 100, ..VariantStream::default() },
            ],
            renditions: vec![],
        };
        assert_eq!(choose(&master, Rendition::Lowest).map(|v| v.uri.as_str()), Ok("lo.m3u8"));
        assert_eq!(choose(&master, Rendition::Highest).map(|v| v.uri.as_str()), Ok("hi.m3u8"));
        assert_eq!(choose(&master, Rendition::Index(0)).map(|v| v.uri.as_str()), Ok("hi.m3u8"));
        assert!(choose(&master, Rendition::Index(2)).is_err());
        assert!(choose(&Master::default(), Rendition::Lowest).is_err());
    }
}
