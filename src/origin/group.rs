//! Origin groups: a primary origin and its fallbacks (CloudFront's origin
//! failover), with passive ejection of a member that keeps failing.
//!
//! A GET, HEAD or OPTIONS without a body goes to the first member that is
//! not ejected; a failed connection (after the member's own connection
//! attempts), a timeout, or an answer whose status is in the group's
//! failover list sends it on to the next member. The last member's answer,
//! whatever it is, is the group's. Other methods go to the primary alone
//! (their bodies cannot be sent twice), as at CloudFront.
//!
//! Ejection: after `eject_after` failures in a row a member is skipped for
//! `eject_for`; then one request at a time probes it (the others keep
//! skipping it) until one succeeds, which restores it. A dead primary so
//! costs one connect timeout per cool-down, not one per viewer. When every
//! member but the last is ejected the last is asked anyway, so there is
//! always an answer.

use super::{Origin, OriginError, OriginRequest, OriginResponse, RequestBody};
use crate::config::OriginGroupConfig;
use crate::metrics::DistStats;
use http::{Method, StatusCode};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) struct OriginGroup {
    members: Vec<Member>,
    failover_status: Vec<StatusCode>,
    eject_after: u32,
    eject_for: Duration,
    /// Times are kept as milliseconds since this instant, in atomics.
    epoch: Instant,
}

struct Member {
    origin: Arc<Origin>,
    /// Failures in a row.
    failures: AtomicU32,
    /// Ejected until this time (ms since the group's epoch); 0: not ejected.
    ejected_until: AtomicU64,
    /// A request is probing this ejected member now.
    probing: AtomicBool,
}

/// One member's state, for the metrics and the stats API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberState {
    pub origin: String,
    pub ejected: bool,
    pub consecutive_failures: u32,
}

impl OriginGroup {
    pub(super) fn new(config: &OriginGroupConfig, members: Vec<Arc<Origin>>) -> OriginGroup {
        OriginGroup {
            members: members
                .into_iter()
                .map(|origin| Member {
                    origin,
                    failures: AtomicU32::new(0),
                    ejected_until: AtomicU64::new(0),
                    probing: AtomicBool::new(false),
                })
                .collect(),
            failover_status: config.failover_status.clone(),
            eject_after: config.eject_after.max(1),
            eject_for: config.eject_for,
            epoch: Instant::now(),
        }
    }

    /// The primary member (the group has at least two).
    pub(super) fn primary(&self) -> &Arc<Origin> {
        &self.members[0].origin
    }

    fn now_ms(&self) -> u64 {
        // +1 so that 0 keeps meaning "not ejected".
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub(super) fn states(&self) -> Vec<MemberState> {
        let now = self.now_ms();
        self.members
            .iter()
            .map(|m| {
                let until = m.ejected_until.load(Ordering::Relaxed);
                MemberState {
                    origin: m.origin.config.id.clone(),
                    ejected: until != 0 && now < until,
                    consecutive_failures: m.failures.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Sends `req` to the members in turn, as the module documentation says.
    pub(super) async fn send(&self, req: OriginRequest, stats: &DistStats) -> Result<OriginResponse, OriginError> {
        let retryable = matches!(req.method, Method::GET | Method::HEAD | Method::OPTIONS)
            && matches!(req.body, RequestBody::Empty);
        let Some((first, rest)) = self.members.split_first() else {
            return Err(OriginError::Connect("the origin group has no members".into()));
        };
        if !retryable {
            return first.origin.send_single(req).await;
        }
        let last = self.members.len() - 1;
        let mut req = Some(req);
        let mut outcome = None;
        for (i, m) in std::iter::once(first).chain(rest).enumerate() {
            let is_last = i == last;
            if !is_last && !self.admits(m) {
                continue;
            }
            let Some(this) = (if is_last { req.take() } else { req.as_ref().map(copy) }) else {
                break;
            };
            if outcome.is_some() {
                stats.record_failover();
            }
            let answer = m.origin.send_single(this).await;
            let failed = match &answer {
                Ok(r) => self.failover_status.contains(&r.status),
                Err(_) => true,
            };
            if failed {
                self.failed(m, stats);
            } else {
                self.succeeded(m);
            }
            if !failed || is_last {
                return answer;
            }
            // The failed answer is dropped (its connection closed) once the
            // next member has answered.
            outcome = Some(answer);
        }
        outcome.unwrap_or_else(|| Err(OriginError::Connect("no member of the origin group could be asked".into())))
    }

    /// Whether a request may go to `m` now: not ejected, or ejected but due
    /// for its probe and no other request probing it.
    fn admits(&self, m: &Member) -> bool {
        let until = m.ejected_until.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        self.now_ms() >= until && m.probing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }

    fn failed(&self, m: &Member, stats: &DistStats) {
        let n = m.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let probe_failed = m.probing.swap(false, Ordering::AcqRel);
        if probe_failed || n >= self.eject_after {
            let until = self.now_ms() + self.eject_for.as_millis() as u64;
            if m.ejected_until.swap(until, Ordering::Relaxed) == 0 {
                stats.record_ejection();
                tracing::warn!(
                    origin = %m.origin.config.id,
                    failures = n,
                    cool_down_ms = self.eject_for.as_millis() as u64,
                    "origin ejected from its group after failing"
                );
            }
        }
    }

    fn succeeded(&self, m: &Member) {
        m.failures.store(0, Ordering::Relaxed);
        if m.ejected_until.swap(0, Ordering::Relaxed) != 0 {
            tracing::info!(origin = %m.origin.config.id, "origin restored to its group");
        }
        m.probing.store(false, Ordering::Release);
    }
}

/// A copy of a request without a body, for one more member.
fn copy(req: &OriginRequest) -> OriginRequest {
    OriginRequest {
        method: req.method.clone(),
        path_and_query: req.path_and_query.clone(),
        headers: req.headers.clone(),
        body: RequestBody::Empty,
        viewer_tls: req.viewer_tls,
        interim: req.interim.clone(),
    }
}
