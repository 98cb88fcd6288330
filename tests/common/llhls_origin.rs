//! A scripted LL-HLS origin: it publishes one part every `part` interval,
//! `parts_per_segment` parts to a segment, and answers blocking playlist
//! reloads itself (or, in `blocking = false` mode, ignores the directives, like
//! an origin that cannot block). Parts that are not produced yet are held and
//! then streamed, as a preload-hinted part would be.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

pub struct LlOrigin {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    start: Instant,
    part: Duration,
    parts_per_segment: u64,
    blocking: bool,
    frozen_at: Mutex<Option<u64>>,
    requests: Mutex<HashMap<String, usize>>,
    dropped_directives: AtomicBool,
}

impl Drop for LlOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub const PART_BYTES: usize = 20_000;

impl LlOrigin {
    pub async fn start(part: Duration, parts_per_segment: u64, blocking: bool) -> LlOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            start: Instant::now(),
            part,
            parts_per_segment,
            blocking,
            frozen_at: Mutex::new(None),
            requests: Mutex::new(HashMap::new()),
            dropped_directives: AtomicBool::new(false),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else { continue };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
                });
            }
        });
        LlOrigin { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Parts produced so far.
    pub fn produced(&self) -> u64 {
        self.state.produced()
    }

    /// Stops producing parts.
    pub fn freeze(&self) {
        let n = self.state.produced();
        *self.state.frozen_at.lock().unwrap() = Some(n);
    }

    /// Requests for an exact path and query.
    pub fn requests(&self, path_and_query: &str) -> usize {
        self.state.requests.lock().unwrap().get(path_and_query).copied().unwrap_or(0)
    }

    /// Requests for a path, whatever the query.
    pub fn requests_for_path(&self, path: &str) -> usize {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.split('?').next() == Some(path))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn part_duration(&self) -> Duration {
        self.state.part
    }

    pub fn parts_per_segment(&self) -> u64 {
        self.state.parts_per_segment
    }
}

impl State {
    fn produced(&self) -> u64 {
        let n = (self.start.elapsed().as_millis() / self.part.as_millis().max(1)) as u64;
        match *self.frozen_at.lock().unwrap() {
            Some(f) => n.min(f),
            None => n,
        }
    }

    fn target_duration(&self) -> u64 {
        (self.part.as_secs_f64() * self.parts_per_segment as f64).ceil() as u64
    }

    fn contains(&self, produced: u64, msn: u64, part: Option<u64>) -> bool {
        let pps = self.parts_per_segment;
        match part {
            None => produced >= (msn + 1) * pps,
            Some(p) => produced > msn * pps + p.min(pps - 1) || (p >= pps && produced > (msn + 1) * pps),
        }
    }

    fn playlist(&self, produced: u64) -> String {
        let pps = self.parts_per_segment;
        let pd = self.part.as_secs_f64();
        let complete = produced / pps;
        let pending = produced % pps;
        let mut s = format!(
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{}\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}\n#EXT-X-PART-INF:PART-TARGET={:.3}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-MAP:URI=\"init.mp4\"\n",
            self.target_duration(),
            pd * 3.0,
            pd
        );
        for msn in 0..complete {
            for p in 0..pps {
                s.push_str(&format!(
                    "#EXT-X-PART:DURATION={pd:.3},URI=\"part{msn}.{p}.mp4\"{}\n",
                    if p == 0 { ",INDEPENDENT=YES" } else { "" }
                ));
            }
            s.push_str(&format!("#EXTINF:{:.3},\nseg{msn}.mp4\n", pd * pps as f64));
        }
        for p in 0..pending {
            s.push_str(&format!("#EXT-X-PART:DURATION={pd:.3},URI=\"part{complete}.{p}.mp4\"\n"));
        }
        s.push_str(&format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part{complete}.{pending}.mp4\"\n"));
        s.push_str(&format!(
            "#EXT-X-RENDITION-REPORT:URI=\"../alt/index.m3u8\",LAST-MSN={complete},LAST-PART={}\n",
            pending.saturating_sub(1)
        ));
        s.push_str(&format!("#generated-ms:{}\n", self.start.elapsed().as_millis()));
        s
    }

    /// When part `index` (counting all parts) is produced.
    fn part_ready_at(&self, index: u64) -> Instant {
        self.start + self.part * (index as u32 + 1)
    }
}

fn query_param(q: &str, name: &str) -> Option<u64> {
    q.split('&').find_map(|p| p.strip_prefix(name).and_then(|v| v.strip_prefix('='))).and_then(|v| v.parse().ok())
}

fn part_bytes(msn: u64, p: u64) -> Bytes {
    Bytes::from(vec![((msn * 7 + p) % 251) as u8; PART_BYTES])
}

async fn handle(
    st: Arc<State>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let pq = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    *st.requests.lock().unwrap().entry(pq.clone()).or_default() += 1;
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let respond = |status: u16, ct: &str, body: Bytes| {
        http::Response::builder().status(status).header("content-type", ct).body(Full::new(body)).unwrap()
    };
    if path == "/ll/index.m3u8" {
        let msn = query_param(&query, "_HLS_msn");
        let part = query_param(&query, "_HLS_part");
        if let (Some(msn), true) = (msn, st.blocking) {
            let limit = Instant::now() + Duration::from_secs(3 * st.target_duration());
            while !st.contains(st.produced(), msn, part) {
                if Instant::now() > limit {
                    return Ok(respond(503, "text/plain", Bytes::from_static(b"timeout")));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        } else if msn.is_some() {
            st.dropped_directives.store(true, Ordering::SeqCst);
        }
        return Ok(respond(200, "application/vnd.apple.mpegurl", Bytes::from(st.playlist(st.produced()))));
    }
    if let Some(name) = path.strip_prefix("/ll/part").and_then(|n| n.strip_suffix(".mp4")) {
        let Some((msn, p)) =
            name.split_once('.').and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        else {
            return Ok(respond(404, "text/plain", Bytes::new()));
        };
        let index = msn * st.parts_per_segment + p;
        // A part not produced yet (the preload hint): held until it is.
        if index > st.produced() + 1 {
            return Ok(respond(404, "text/plain", Bytes::from_static(b"not yet hinted")));
        }
        let ready = st.part_ready_at(index);
        tokio::time::sleep_until(ready.into()).await;
        return Ok(respond(200, "video/iso.segment", part_bytes(msn, p)));
    }
    Ok(respond(404, "text/plain", Bytes::new()))
}

/// The bytes the origin sends for a part.
pub fn expected_part(msn: u64, p: u64) -> Bytes {
    part_bytes(msn, p)
}
