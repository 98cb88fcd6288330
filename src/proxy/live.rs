//! Live media on the miss path: the parts, chunks and segments the edge knows
//! from the live playlists and dynamic MPDs it has parsed (`media::live`).
//! Their error answers are kept only a fraction of their duration (see
//! `cache::policy::error_ttl`), and a DASH segment asked for before its
//! availability time is held at the edge until then, so that every viewer
//! waiting for it shares the one origin request made when it exists.

use super::respond::error;
use super::{Ctx, Edge, Served};
use crate::media::live::LiveObject;
use crate::media::policy::Manifest;
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};
use std::time::{Duration, SystemTime};

/// A request is held for a DASH segment at most this many segment durations
/// before its availability time; earlier, it gets 404 at once.
pub const HOLD_SEGMENTS: u32 = 2;
/// And never longer than this, whatever the segment duration.
pub const MAX_HOLD: Duration = Duration::from_secs(20);

/// What to do with a miss for a live object.
pub(super) enum Wait {
    /// Ask the origin now.
    Now,
    /// Hold the request this long, then ask.
    Hold(Duration),
    /// Too early to hold: 404 at once.
    TooEarly(Duration),
}

impl Edge {
    /// Records what a manifest lists (or that it is not live any more).
    pub(super) fn register_live(&self, ctx: &Ctx, uri: &http::Uri, manifest: &Manifest) {
        self.live.register(&ctx.route.dist.config.id, uri.path(), manifest);
    }

    fn live_object(&self, parts: &Parts, ctx: &Ctx) -> Option<LiveObject> {
        self.live.lookup(&ctx.route.dist.config.id, parts.uri.path())
    }

    /// The duration of the live part, chunk or segment a request is for.
    pub(super) fn live_duration(&self, parts: &Parts, ctx: &Ctx) -> Option<Duration> {
        self.live_object(parts, ctx).map(|o| o.duration)
    }

    /// Whether a miss for this request waits for a DASH segment's availability.
    pub(super) fn live_wait(&self, parts: &Parts, ctx: &Ctx) -> Wait {
        let Some(at) = self.live_object(parts, ctx).and_then(|o| o.available_at.map(|at| (at, o.segment))) else {
            return Wait::Now;
        };
        hold_for(at.0, at.1, SystemTime::now())
    }
}

/// How long to hold a request for a segment available at `at`, `segment` long.
fn hold_for(at: SystemTime, segment: Duration, now: SystemTime) -> Wait {
    let Ok(early) = at.duration_since(now) else { return Wait::Now };
    if early.is_zero() {
        return Wait::Now;
    }
    if early > (segment * HOLD_SEGMENTS).min(MAX_HOLD) {
        return Wait::TooEarly(early);
    }
    Wait::Hold(early)
}

/// The answer for a segment requested too long before it exists.
pub(super) fn too_early(early: Duration) -> Served {
    let mut served =
        error(StatusCode::NOT_FOUND, &format!("this segment becomes available in {} ms", early.as_millis()));
    served.response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_only_within_the_window() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let seg = Duration::from_secs(2);
        assert!(matches!(hold_for(now - Duration::from_secs(1), seg, now), Wait::Now));
        assert!(matches!(hold_for(now, seg, now), Wait::Now));
        assert!(
            matches!(hold_for(now + Duration::from_millis(1500), seg, now), Wait::Hold(d) if d == Duration::from_millis(1500))
        );
        assert!(matches!(hold_for(now + Duration::from_secs(4), seg, now), Wait::Hold(_)));
        assert!(matches!(hold_for(now + Duration::from_millis(4001), seg, now), Wait::TooEarly(_)));
        assert!(matches!(hold_for(now + Duration::from_secs(21), Duration::from_secs(30), now), Wait::TooEarly(_)));
    }
}
