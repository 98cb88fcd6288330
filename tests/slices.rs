//! Large objects in slices (`slice_size`), and ranges of objects too large to
//! store. The origin here serves *virtual* objects: every byte is computed from
//! its offset and the object's version, so a 2 GiB progressive MP4 costs no
//! memory. It honours single ranges (or, when told, ignores them) and counts
//! the body bytes it hands out, per request.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Byte `i` of version `v` of the virtual object.
fn byte_at(i: u64, v: u64) -> u8 {
    ((i ^ (i >> 11) ^ (i >> 23)) as u8).wrapping_add((v as u8).wrapping_mul(37))
}

fn expected(start: u64, end_incl: u64, v: u64) -> Vec<u8> {
    (start..=end_incl).map(|i| byte_at(i, v)).collect()
}

#[derive(Default)]
struct State {
    total: AtomicU64,
    version: AtomicU64,
    /// Answer 200 with the whole object whatever the request's `Range`.
    ignore_ranges: AtomicBool,
    /// Send 200s chunked (no `Content-Length`).
    chunked: AtomicBool,
    /// Body bytes handed out, all requests together.
    bytes: AtomicU64,
    /// Response bodies dropped before their end (the edge closed them).
    dropped: AtomicUsize,
    /// Each request's `Range` (or `None`) and the body bytes it was sent.
    requests: Mutex<Vec<(Option<String>, Arc<AtomicU64>)>>,
    /// Milliseconds before each response head.
    head_delay_ms: AtomicU64,
    /// `max-age` of every answer (0: 3600).
    max_age: AtomicU64,
    /// 304s answered to `If-None-Match` with the current version's tag.
    not_modified: AtomicUsize,
}

/// A body generated from the offset, in 64 KiB frames, counted as handed out.
struct Gen {
    pos: u64,
    end: u64,
    version: u64,
    st: Arc<State>,
    mine: Arc<AtomicU64>,
}

impl futures_core::Stream for Gen {
    type Item = Result<Frame<Bytes>, Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.pos >= self.end {
            return Poll::Ready(None);
        }
        let n = (self.end - self.pos).min(64 * 1024);
        let chunk: Vec<u8> = (self.pos..self.pos + n).map(|i| byte_at(i, self.version)).collect();
        self.pos += n;
        self.st.bytes.fetch_add(n, Ordering::SeqCst);
        self.mine.fetch_add(n, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

impl Drop for Gen {
    fn drop(&mut self) {
        if self.pos < self.end {
            self.st.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

struct RangeOrigin {
    addr: std::net::SocketAddr,
    st: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RangeOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RangeOrigin {
    async fn start(total: u64) -> RangeOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let st = Arc::new(State::default());
        st.total.store(total, Ordering::SeqCst);
        st.version.store(1, Ordering::SeqCst);
        let s2 = st.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let st = s2.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(st.clone(), req));
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        RangeOrigin { addr, st, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn bytes(&self) -> u64 {
        self.st.bytes.load(Ordering::SeqCst)
    }

    fn ranges(&self) -> Vec<Option<String>> {
        self.st.requests.lock().unwrap().iter().map(|(r, _)| r.clone()).collect()
    }

    fn requests(&self) -> usize {
        self.st.requests.lock().unwrap().len()
    }

    /// Body bytes sent for request `n` (in arrival order).
    fn bytes_of(&self, n: usize) -> u64 {
        self.st.requests.lock().unwrap()[n].1.load(Ordering::SeqCst)
    }

    fn set_version(&self, v: u64) {
        self.st.version.store(v, Ordering::SeqCst);
    }
}

/// A single `first-last`, `first-` or `-suffix` range against `total`.
fn one_range(v: &str, total: u64) -> Option<(u64, u64)> {
    let spec = v.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (first, last) = match (a.is_empty(), b.is_empty()) {
        (true, false) => (total.saturating_sub(b.parse().ok()?), total - 1),
        (false, true) => (a.parse().ok()?, total - 1),
        (false, false) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(total - 1)),
        (true, true) => return None,
    };
    (first <= last && first < total).then_some((first, last))
}

async fn answer(
    st: Arc<State>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<StreamBody<Gen>>, Infallible> {
    let total = st.total.load(Ordering::SeqCst);
    let version = st.version.load(Ordering::SeqCst);
    let range = req.headers().get("range").and_then(|v| v.to_str().ok()).map(str::to_string);
    let mine = Arc::new(AtomicU64::new(0));
    st.requests.lock().unwrap().push((range.clone(), mine.clone()));
    let delay = st.head_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let max_age = match st.max_age.load(Ordering::SeqCst) {
        0 => 3600,
        n => n,
    };
    let etag = format!("\"v{version}\"");
    if req.headers().get("if-none-match").is_some_and(|v| v.as_bytes() == etag.as_bytes()) {
        st.not_modified.fetch_add(1, Ordering::SeqCst);
        let body = Gen { pos: 0, end: 0, version, st: st.clone(), mine };
        let resp = http::Response::builder()
            .status(304)
            .header("cache-control", format!("max-age={max_age}"))
            .header("etag", etag);
        return Ok(resp.body(StreamBody::new(body)).unwrap());
    }
    let mut resp = http::Response::builder()
        .header("content-type", "video/mp4")
        .header("cache-control", format!("max-age={max_age}"))
        .header("etag", etag)
        .header("last-modified", "Tue, 01 Dec 2026 10:00:00 GMT")
        .header("accept-ranges", "bytes");
    let honoured =
        range.as_deref().filter(|_| !st.ignore_ranges.load(Ordering::SeqCst)).and_then(|r| one_range(r, total));
    let (start, end) = match honoured {
        Some((first, last)) => {
            resp = resp
                .status(206)
                .header("content-range", format!("bytes {first}-{last}/{total}"))
                .header("content-length", last - first + 1);
            (first, last + 1)
        }
        None => {
            if !st.chunked.load(Ordering::SeqCst) {
                resp = resp.header("content-length", total);
            }
            (0, total)
        }
    };
    let end = if req.method() == http::Method::HEAD { start } else { end };
    let body = Gen { pos: start, end, version, st: st.clone(), mine };
    Ok(resp.body(StreamBody::new(body)).unwrap())
}

fn config(origin: &RangeOrigin, cache: &str, behavior: &str) -> String {
    format!("[cache]\nmemory = \"64MiB\"\n{cache}\n\n{}", config_for(&origin.url(), behavior))
}

async fn ranged(e: &mediaedge::RunningEdge, path: &str, range: &str) -> (u16, String, http::HeaderMap, Bytes) {
    get(&client(), &url(e, path), &[("range", range)]).await
}

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn a_seek_in_a_2gib_object_fetches_only_the_slices_it_touches() {
    let origin = RangeOrigin::start(2 * GIB).await;
    let e = edge(&config(&origin, "max_object_size = \"4MiB\"", "slice_size = \"1MiB\"")).await;
    // A range across the boundary of slices 1023 and 1024.
    let (first, last) = (GIB - 1000, GIB + 999);
    let (s, xc, h, body) = ranged(&e, "/movie.mp4", &format!("bytes={first}-{last}")).await;
    assert_eq!(s, 206);
    assert_eq!(xc, "Miss");
    assert_eq!(header(&h, "content-range"), format!("bytes {first}-{last}/{}", 2 * GIB));
    assert_eq!(header(&h, "content-length"), "2000");
    assert_eq!(header(&h, "etag"), "\"v1\"");
    assert!(body[..] == expected(first, last, 1)[..], "the bytes across the slice boundary are exact");
    // The first slice (length and validators), then the two the range touches.
    assert_eq!(
        origin.ranges(),
        vec![
            Some(format!("bytes=0-{}", MIB - 1)),
            Some(format!("bytes={}-{}", GIB - MIB, GIB - 1)),
            Some(format!("bytes={}-{}", GIB, GIB + MIB - 1)),
        ]
    );
    assert_eq!(settled_bytes(&origin, 3 * MIB).await, 3 * MIB, "only three slices came from the origin");

    // The same range, and another inside the same slices: hits, no origin byte.
    let (s, xc, _, again) = ranged(&e, "/movie.mp4", &format!("bytes={first}-{last}")).await;
    assert_eq!((s, xc.as_str()), (206, "Hit"));
    assert_eq!(again, body);
    let (s, xc, _, inner) = ranged(&e, "/movie.mp4", "bytes=1073741824-1073741923").await;
    assert_eq!((s, xc.as_str()), (206, "Hit"));
    assert!(inner[..] == expected(GIB, GIB + 99, 1)[..]);
    assert_eq!(origin.requests(), 3);
    assert_eq!(origin.bytes(), 3 * MIB);

    // A suffix range: the last slice is short (the object ends inside it).
    let (s, _, h, tail) = ranged(&e, "/movie.mp4", "bytes=-10").await;
    assert_eq!(s, 206);
    assert_eq!(header(&h, "content-range"), format!("bytes {}-{}/{}", 2 * GIB - 10, 2 * GIB - 1, 2 * GIB));
    assert!(tail[..] == expected(2 * GIB - 10, 2 * GIB - 1, 1)[..]);
    assert_eq!(origin.ranges().last().cloned().flatten(), Some(format!("bytes={}-{}", 2 * GIB - MIB, 2 * GIB - 1)));
}

#[tokio::test]
async fn a_206_from_the_origin_is_stored_and_the_same_range_again_is_a_hit() {
    // RFC 9111 §3.3/§3.4: a cache may store partial content and combine it.
    // The origin answers every request of the edge with a 206.
    let origin = RangeOrigin::start(3 * MIB + 5).await;
    let e = edge(&config(&origin, "", "slice_size = \"1MiB\"")).await;
    let (s, xc, _, a) = ranged(&e, "/clip.mp4", "bytes=100-199").await;
    assert_eq!((s, xc.as_str()), (206, "Miss"));
    let (s, xc, _, b) = ranged(&e, "/clip.mp4", "bytes=100-199").await;
    assert_eq!((s, xc.as_str()), (206, "Hit"));
    assert_eq!(a, b);
    assert!(a[..] == expected(100, 199, 1)[..]);
    assert_eq!(origin.requests(), 1, "the stored 206 answered the second request");
}

#[tokio::test]
async fn whole_gets_heads_and_multipart_ranges_are_read_from_the_slices() {
    let total = 5 * MIB + 12345;
    let origin = RangeOrigin::start(total).await;
    let e = edge(&config(&origin, "", "slice_size = \"1MiB\"")).await;
    let (s, xc, h, body) = get(&client(), &url(&e, "/film.mp4"), &[]).await;
    assert_eq!((s, xc.as_str()), (200, "Miss"));
    assert_eq!(header(&h, "content-length"), total.to_string());
    assert!(header(&h, "content-range").is_empty());
    assert_eq!(body.len() as u64, total);
    assert!(body[..] == expected(0, total - 1, 1)[..], "every slice in order, byte-exact");
    assert_eq!(origin.requests(), 6);
    assert_eq!(origin.bytes(), total);

    let (s, xc, h, body) = get(&client(), &url(&e, "/film.mp4"), &[]).await;
    assert_eq!((s, xc.as_str(), body.len() as u64), (200, "Hit", total));
    assert_eq!(header(&h, "content-length"), total.to_string());
    let r = client().head(url(&e, "/film.mp4")).send().await.expect("head");
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "content-length"), total.to_string());
    assert_eq!(r.bytes().await.expect("head body").len(), 0);

    // Two ranges in different slices: multipart, each part exact.
    let (s, _, h, body) = ranged(&e, "/film.mp4", "bytes=0-9,2097150-2097160").await;
    assert_eq!(s, 206);
    assert!(header(&h, "content-type").starts_with("multipart/byteranges; boundary="));
    assert_eq!(header(&h, "content-length"), body.len().to_string());
    let text = body.to_vec();
    let find = |needle: &[u8]| text.windows(needle.len()).position(|w| w == needle);
    let first = format!("Content-Range: bytes 0-9/{total}\r\n\r\n");
    let second = format!("Content-Range: bytes 2097150-2097160/{total}\r\n\r\n");
    let at = find(first.as_bytes()).expect("first part") + first.len();
    assert!(text[at..at + 10] == expected(0, 9, 1)[..]);
    let at = find(second.as_bytes()).expect("second part") + second.len();
    assert!(text[at..at + 11] == expected(2097150, 2097160, 1)[..]);

    // Conditionals use the first slice's validators; If-Range too.
    let (s, _, _, _) = get(&client(), &url(&e, "/film.mp4"), &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(s, 304);
    let (s, _, _, body) =
        get(&client(), &url(&e, "/film.mp4"), &[("range", "bytes=5-9"), ("if-range", "\"v0\"")]).await;
    assert_eq!((s, body.len() as u64), (200, total), "If-Range with another tag: the whole object");
    let (s, _, _, _) = ranged(&e, "/film.mp4", &format!("bytes={total}-")).await;
    assert_eq!(s, 416);
    assert_eq!(origin.requests(), 6, "all of it answered from the slices");
}

/// Reads a response until its end or until it is cut; `true` if it was cut.
async fn read_until_cut(r: reqwest::Response) -> (Vec<u8>, bool) {
    let mut r = r;
    let mut got = Vec::new();
    loop {
        match r.chunk().await {
            Ok(Some(b)) => got.extend_from_slice(&b),
            Ok(None) => return (got, false),
            Err(_) => return (got, true),
        }
    }
}

#[tokio::test]
async fn an_object_that_changes_between_slices_is_fetched_again_never_mixed() {
    let total = 3 * MIB;
    let origin = RangeOrigin::start(total).await;
    let e = edge(&config(&origin, "", "slice_size = \"1MiB\"")).await;
    let (_, _, _, a) = ranged(&e, "/v.mp4", "bytes=0-99").await;
    assert!(a[..] == expected(0, 99, 1)[..]);

    // The object changes. A seek into slice 1 finds the new version there:
    // the stored first slice is dropped and fetched again, and the answer is
    // wholly the new version.
    origin.set_version(2);
    let (s, _, h, b) = ranged(&e, "/v.mp4", "bytes=1048580-1048599").await;
    assert_eq!(s, 206);
    assert_eq!(header(&h, "etag"), "\"v2\"");
    assert!(b[..] == expected(1048580, 1048599, 2)[..], "all bytes from version 2");
    let firsts = origin.ranges().iter().filter(|r| r.as_deref() == Some("bytes=0-1048575")).count();
    assert_eq!(firsts, 2, "the first slice was fetched again");

    // Slices 0 and 1 now hold version 2; the object changes again. A whole
    // GET reads slices 0 and 1 from the cache and meets version 3 in slice 2:
    // the response is cut rather than finished with another version's bytes.
    origin.set_version(3);
    let r = client().get(url(&e, "/v.mp4")).send().await.expect("request");
    assert_eq!(r.status(), 200);
    let (got, cut) = read_until_cut(r).await;
    assert!(cut, "a response that met two versions is cut");
    assert!(got.len() as u64 <= 2 * MIB, "nothing past the last slice of the old version");
    assert!(got[..] == expected(0, got.len() as u64 - 1, 2)[..], "only version 2 bytes were sent");

    // The next viewer gets version 3, whole: the stale slices are refetched.
    let (s, _, h, body) = get(&client(), &url(&e, "/v.mp4"), &[]).await;
    assert_eq!((s, header(&h, "etag")), (200, "\"v3\""));
    assert!(body[..] == expected(0, total - 1, 3)[..]);
}

#[tokio::test]
async fn an_origin_that_ignores_ranges_is_relayed_and_nothing_is_held() {
    let origin = RangeOrigin::start(2 * GIB).await;
    origin.st.ignore_ranges.store(true, Ordering::SeqCst);
    let e = edge(&config(&origin, "max_object_size = \"4MiB\"", "slice_size = \"1MiB\"")).await;
    let r = client().get(url(&e, "/big.mp4")).header("range", "bytes=100-199").send().await.expect("request");
    // The origin's answer to the slice request: a 200 with the whole object,
    // streamed to the viewer (a server may ignore Range).
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "content-length"), (2 * GIB).to_string());
    let mut r = r;
    let mut got = Vec::new();
    while (got.len() as u64) < MIB {
        got.extend_from_slice(&r.chunk().await.expect("chunk").expect("more"));
    }
    assert!(got[..] == expected(0, got.len() as u64 - 1, 1)[..]);
    drop(r);
    // The viewer left: the origin's body is dropped long before its end.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while origin.st.dropped.load(Ordering::SeqCst) < 1 {
        assert!(std::time::Instant::now() < deadline, "the origin response was never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(origin.bytes() < 64 * MIB, "the origin sent {} bytes", origin.bytes());
    assert!(e.edge.cache.used_bytes() < MIB, "nothing of it is stored");

    // Hit-for-pass: the next viewer's own request (and range) goes to the origin.
    let r = client().get(url(&e, "/big.mp4")).header("range", "bytes=100-199").send().await.expect("request");
    assert_eq!(r.status(), 200);
    drop(r);
    let ranges = origin.ranges();
    assert_eq!(ranges[0].as_deref(), Some("bytes=0-1048575"), "the edge asked for the first slice");
    assert_eq!(ranges.last().cloned().flatten().as_deref(), Some("bytes=100-199"), "then passed the viewer's range");
}

#[tokio::test]
async fn an_unsliced_range_of_an_object_too_large_to_store_is_relayed_exactly() {
    let origin = RangeOrigin::start(2 * GIB).await;
    let e = edge(&config(&origin, "max_object_size = \"4MiB\"", "")).await;
    let (s, xc, h, body) = ranged(&e, "/movie.mp4", "bytes=5000-5999").await;
    assert_eq!((s, xc.as_str()), (206, "Miss"));
    assert_eq!(header(&h, "content-range"), format!("bytes 5000-5999/{}", 2 * GIB));
    assert!(body[..] == expected(5000, 5999, 1)[..]);
    // The fill asked for the whole object and dropped it at its head (the
    // announced length is over the limit); the relayed request carried the
    // viewer's range, and the origin sent exactly those bytes for it.
    let ranges = origin.ranges();
    assert_eq!(ranges, vec![None, Some("bytes=5000-5999".to_string())]);
    assert_eq!(origin.bytes_of(1), 1000);
    assert!(origin.bytes_of(0) < 64 * MIB, "the dropped whole response sent {} bytes", origin.bytes_of(0));
}

#[tokio::test]
async fn open_and_multipart_ranges_on_a_fill_gone_pass_through_go_to_the_origin() {
    // A chunked 8 MiB answer: the fill learns it is too large only past 1 MiB.
    let origin = RangeOrigin::start(8 * MIB).await;
    origin.st.chunked.store(true, Ordering::SeqCst);
    let e = edge(&config(&origin, "max_object_size = \"1MiB\"", "")).await;
    let (s, _, h, body) = ranged(&e, "/chunked.mp4", "bytes=7340032-").await;
    assert_eq!(s, 206, "not 502");
    assert_eq!(header(&h, "content-range"), format!("bytes 7340032-{}/{}", 8 * MIB - 1, 8 * MIB));
    assert!(body[..] == expected(7 * MIB, 8 * MIB - 1, 1)[..]);
    assert_eq!(origin.ranges(), vec![None, Some("bytes=7340032-".to_string())]);
    assert_eq!(origin.bytes_of(1), MIB);

    // A viewer arriving after the fill went pass-through goes to the origin on
    // its own with its range (hit-for-pass), not through another whole fill.
    let (s, xc, _, body) = ranged(&e, "/chunked.mp4", "bytes=10-19").await;
    assert_eq!((s, xc.as_str()), (206, "Miss"));
    assert!(body[..] == expected(10, 19, 1)[..]);
    assert_eq!(origin.ranges().last().cloned().flatten().as_deref(), Some("bytes=10-19"));
    assert_eq!(origin.requests(), 3);

    // Multipart on a fresh fill that goes pass-through: asked of the origin
    // (which answers it whole, as a server may).
    let r = client().get(url(&e, "/other.mp4")).header("range", "bytes=0-9,2000000-2000009").send().await.unwrap();
    assert_eq!(r.status(), 200, "the origin's answer, not 502");
    drop(r);
    assert_eq!(origin.ranges().last().cloned().flatten().as_deref(), Some("bytes=0-9,2000000-2000009"));
}

/// Waits until the origin has sent nothing new for a while (fills the viewers
/// left behind finish on their own), up to a bound that means "it never did".
async fn settled(origin: &RangeOrigin) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = origin.bytes();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = origin.bytes();
        if now == last {
            return now;
        }
        assert!(std::time::Instant::now() < deadline, "the origin never stopped sending");
        last = now;
    }
}

/// Player seeks in a 2 GiB object against the real binary: three viewers
/// seek to 1 GiB, one to 1.5 GiB, each reads 8 MiB and leaves. Returns the
/// origin bytes each seek cost, and the edge's RSS at start and at its peak.
async fn seeks(slice: &str, open_ended: bool) -> (Vec<u64>, u64, u64) {
    let origin = RangeOrigin::start(2 * GIB).await;
    let text =
        format!("[cache]\nmemory = \"256MiB\"\nmax_object_size = \"4MiB\"\n\n{}", config_for(&origin.url(), slice));
    let edge = binary::EdgeProcess::start("slices-rss", &text).await;
    let baseline = edge.rss_kib();
    let (mut peak, mut costs) = (baseline, Vec::new());
    for at in [GIB, GIB, GIB, GIB + GIB / 2] {
        let before = settled(&origin).await;
        let range = if open_ended { format!("bytes={at}-") } else { format!("bytes={at}-{}", at + 8 * MIB - 1) };
        let r = client().get(format!("http://{}/movie.mp4", edge.addr)).header("range", range).send().await.unwrap();
        assert_eq!(r.status(), 206);
        let mut r = r;
        let mut got = Vec::new();
        while (got.len() as u64) < 8 * MIB {
            got.extend_from_slice(&r.chunk().await.expect("chunk").expect("more"));
            peak = peak.max(edge.rss_kib());
        }
        assert!(got[..] == expected(at, at + got.len() as u64 - 1, 1)[..], "exact bytes after the seek");
        drop(r);
        costs.push(settled(&origin).await - before);
        peak = peak.max(edge.rss_kib());
    }
    println!(
        "slices {:>4}, {}: origin MiB per seek {:?} (requests {}), edge RSS baseline {baseline} KiB, peak {peak} KiB",
        if slice.is_empty() { "off" } else { "1MiB" },
        if open_ended { "bytes=N-  " } else { "bytes=N-M " },
        costs.iter().map(|c| *c as f64 / MIB as f64).collect::<Vec<_>>(),
        origin.requests(),
    );
    // The slices stored (a few seeks' worth) plus what is in flight.
    assert!(peak < baseline + 96 * 1024, "edge RSS grew from {baseline} KiB to {peak} KiB");
    (costs, baseline, peak)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeks_in_a_2gib_object_cost_the_slices_they_read_measured_on_the_binary() {
    let (sliced, _, _) = seeks("slice_size = \"1MiB\"", false).await;
    // The first seek: slice 0 and the 8 slices read; the same seek again is
    // answered from the slices; another seek costs its own 8.
    assert_eq!(sliced, vec![9 * MIB, 0, 0, 8 * MIB]);
    let (whole, _, _) = seeks("", false).await;
    // Without slices every seek goes to the origin again (and the first one
    // also started the whole object, dropped at its head).
    assert!(whole.iter().all(|&c| c >= 8 * MIB), "{whole:?}");
    // Players ask `bytes=N-` and leave: what the socket buffers held ahead of
    // the player is fetched too (printed for docs/caching.md).
    seeks("slice_size = \"1MiB\"", true).await;
    seeks("", true).await;
}

#[test]
fn a_slice_size_out_of_bounds_is_a_config_error_naming_its_field() {
    let text = config_for("http://127.0.0.1:9", "slice_size = \"1KiB\"");
    let Err(err) = mediaedge::Config::parse(&text, std::path::Path::new("edge.toml")) else {
        panic!("a 1 KiB slice size was accepted")
    };
    let err = err.to_string();
    assert!(err.contains("edge.toml"), "{err}");
    assert!(err.contains("default_behavior.slice_size"), "{err}");
    assert!(err.contains("64KiB"), "{err}");
    let text = config_for("http://127.0.0.1:9", "slice_size = \"4MiB\"");
    assert!(mediaedge::Config::parse(&text, std::path::Path::new("edge.toml")).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_viewers_of_the_same_slices_make_one_origin_request_each() {
    let origin = RangeOrigin::start(2 * GIB).await;
    let e = edge(&config(&origin, "max_object_size = \"4MiB\"", "slice_size = \"1MiB\"")).await;
    let range = format!("bytes={}-{}", GIB - 1000, GIB + 999);
    let mut viewers = Vec::new();
    for _ in 0..16 {
        let u = url(&e, "/movie.mp4");
        let range = range.clone();
        viewers.push(tokio::spawn(async move { get(&client(), &u, &[("range", range.as_str())]).await }));
    }
    for v in viewers {
        let (s, _, _, body) = v.await.expect("viewer");
        assert_eq!(s, 206);
        assert!(body[..] == expected(GIB - 1000, GIB + 999, 1)[..]);
    }
    assert_eq!(origin.requests(), 3, "slice 0 and the two slices read, each once: {:?}", origin.ranges());
    // Slice 0 is read for the object's length and validators; its fill may
    // still be arriving after the viewers finished. Wait for it (a generous
    // bound that only means "it hung"), then count: each slice exactly once.
    assert_eq!(settled_bytes(&origin, 3 * MIB).await, 3 * MIB);
    assert_eq!(origin.requests(), 3);
}

/// The origin's byte count once it reaches `want` (slice fills still arriving
/// after the viewers finished), or what it is after 30 s, a bound that only
/// means "it hung". The caller asserts the exact figure.
async fn settled_bytes(origin: &RangeOrigin, want: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while origin.bytes() < want && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    origin.bytes()
}

#[tokio::test]
async fn the_first_viewer_leaving_a_slice_fill_does_not_restart_its_origin_request() {
    use tokio::io::AsyncWriteExt;
    let origin = RangeOrigin::start(64 * MIB).await;
    origin.st.head_delay_ms.store(500, Ordering::SeqCst);
    let e = edge(&config(&origin, "max_object_size = \"4MiB\"", "slice_size = \"1MiB\"")).await;
    // The first viewer: raw TCP, so that it can leave while slice 0's origin
    // request waits for its head.
    let mut first = tokio::net::TcpStream::connect(e.addr()).await.expect("connect");
    first.write_all(b"GET /film.mp4 HTTP/1.1\r\nHost: x\r\nRange: bytes=0-999\r\n\r\n").await.unwrap();
    until("the origin sees slice 0's request", || origin.requests() == 1).await;
    let second = {
        let u = url(&e, "/film.mp4");
        tokio::spawn(async move { get(&client(), &u, &[("range", "bytes=0-999")]).await })
    };
    until("the second viewer waits on the first one's fill", || e.edge.cache.collapsed_waiting() == 1).await;
    drop(first);
    let (s, _, _, body) = second.await.expect("second viewer");
    assert_eq!(s, 206);
    assert!(body[..] == expected(0, 999, 1)[..]);
    assert_eq!(origin.requests(), 1, "slice 0 fetched once, for the viewer still waiting: {:?}", origin.ranges());
    // And it was stored: a third viewer is a hit.
    let (s, x, _, _) = ranged(&e, "/film.mp4", "bytes=1000-1999").await;
    assert_eq!((s, x.as_str()), (206, "Hit"));
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn a_stale_slice_is_revalidated_and_a_304_keeps_its_bytes() {
    let origin = RangeOrigin::start(8 * MIB).await;
    origin.st.max_age.store(1, Ordering::SeqCst);
    let e = edge(&config(&origin, "max_object_size = \"4MiB\"", "slice_size = \"1MiB\"")).await;
    let (s, _, _, body) = ranged(&e, "/vod.mp4", "bytes=100-199").await;
    assert_eq!(s, 206);
    assert!(body[..] == expected(100, 199, 1)[..]);
    let fetched = settled_bytes(&origin, MIB).await;
    assert_eq!((origin.requests(), fetched), (1, MIB));
    // Past its one-second lifetime the slice is stale: the edge asks with
    // its validator, the origin answers 304, the stored bytes serve again.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (s, x, h, body) = ranged(&e, "/vod.mp4", "bytes=100-199").await;
    assert_eq!((s, x.as_str()), (206, "RefreshHit"), "{h:?}");
    assert!(body[..] == expected(100, 199, 1)[..]);
    assert_eq!(origin.st.not_modified.load(Ordering::SeqCst), 1);
    assert_eq!(origin.requests(), 2);
    assert_eq!(origin.bytes(), MIB, "no slice bytes sent again");
    // Refreshed: fresh again, a hit.
    let (s, x, _, _) = ranged(&e, "/vod.mp4", "bytes=0-9").await;
    assert_eq!((s, x.as_str()), (206, "Hit"));
    // A new version: the validator no longer matches, the slice comes whole.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    origin.set_version(2);
    let (s, _, _, body) = ranged(&e, "/vod.mp4", "bytes=100-199").await;
    assert_eq!(s, 206);
    assert!(body[..] == expected(100, 199, 2)[..], "the new version's bytes, never the old ones");
    assert_eq!(origin.st.not_modified.load(Ordering::SeqCst), 1);
}
