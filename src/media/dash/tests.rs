use super::*;
use std::time::{Duration, SystemTime};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn at(unix: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
}

#[test]
fn bundled_test_media_manifest() {
    let mpd = parse(include_bytes!("../../../test-media/dash/manifest.mpd")).expect("parse");
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
    let mpd = parse(include_bytes!("../../../manifests/dash/static.mpd")).expect("parse");
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
    let mpd = parse(include_bytes!("../../../manifests/dash/dynamic.mpd")).expect("parse");
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
    let mpd = parse(include_bytes!("../../../manifests/dash/low-latency.mpd")).expect("parse");
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

    let huge =
        SegmentTemplate { timeline: vec![TimelineEntry { t: None, d: 1, r: i64::MAX }], ..SegmentTemplate::default() };
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
    let truncated = parse(include_bytes!("../../../manifests/malformed/truncated.mpd"));
    assert!(truncated.is_err(), "{truncated:?}");
    let not_xml = parse(include_bytes!("../../../manifests/malformed/not-xml.mpd"));
    assert!(not_xml.is_err(), "{not_xml:?}");
    // HLS playlists, an HTML page and binary junk are not MPDs either.
    for input in [
        &include_bytes!("../../../manifests/malformed/not-a-playlist.m3u8")[..],
        &include_bytes!("../../../manifests/malformed/binary.m3u8")[..],
        &include_bytes!("../../../manifests/hls/master.m3u8")[..],
        &include_bytes!("../../../manifests/hls/ll-hls.m3u8")[..],
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
    assert!(parse(b"<MPD><ProgramInformation><Title lang=\"\xe9\">Caf\xe9</Title></ProgramInformation></MPD>").is_ok());
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
