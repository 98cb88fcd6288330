//! Origins: where the edge fetches from. An HTTP(S) server through a pooled
//! client, a private S3 bucket (the same client, requests signed), or a local
//! folder. Both answer an `OriginRequest` with a streamed
//! `OriginResponse`; faults come back as `OriginError`, which knows its status.

mod folder;
mod group;
mod http_origin;
mod s3;
pub mod sigv4;

pub use group::MemberState;
pub use http_origin::{error_chain, system_roots};

use crate::config::{OriginConfig, OriginKind};
use crate::metrics::{DistStats, OriginErrorKind};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

pub struct Origin {
    pub config: Arc<OriginConfig>,
    kind: Kind,
    /// The distribution's statistics: requests, latency, bytes, failures.
    stats: Arc<DistStats>,
}

enum Kind {
    Http(Box<http_origin::HttpOrigin>),
    Folder(folder::FolderOrigin),
    Group(group::OriginGroup),
}

pub struct OriginRequest {
    pub method: Method,
    /// Path and query as the viewer sent them (the origin adds its prefix).
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: RequestBody,
    /// The viewer came over TLS (`match-viewer` origins then use HTTPS). An
    /// edge-made request (revalidation, prefetch) carries the protocol of the
    /// viewer whose request started it.
    pub viewer_tls: bool,
    /// Where the origin's interim (1xx) responses go: the viewer whose request
    /// this is, when it can take them. `None` for edge-made requests.
    pub interim: Option<InterimSink>,
}

/// Receives an origin's interim responses (status and fields).
pub type InterimSink = Arc<dyn Fn(StatusCode, &HeaderMap) + Send + Sync>;

/// A request body going to the origin: none, or the viewer's, streamed (and
/// counted, once `Origin::send` has it, as bytes to the origin).
pub enum RequestBody {
    Empty,
    Viewer(Incoming),
    Counted(Incoming, Arc<DistStats>),
    /// A body the edge read whole and rewrote (field-level encryption).
    Full(Option<Bytes>),
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            RequestBody::Viewer(b) => Pin::new(b).poll_frame(cx),
            RequestBody::Counted(b, stats) => {
                let next = Pin::new(b).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &next {
                    if let Some(data) = frame.data_ref() {
                        stats.record_origin_body_bytes(data.len() as u64);
                    }
                }
                next
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Full(b) => b.is_none(),
            RequestBody::Viewer(b) | RequestBody::Counted(b, _) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            RequestBody::Viewer(b) | RequestBody::Counted(b, _) => b.size_hint(),
        }
    }
}

pub struct OriginResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: OriginBody,
    pub request_time: SystemTime,
    pub response_time: SystemTime,
}

/// An origin fault, by kind: it decides the status the viewer sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginError {
    /// Could not connect, or the connection failed before a response: 502.
    Connect(String),
    /// No response (or no next body piece) within the read timeout: 504.
    Timeout(String),
    /// A malformed response or a body cut short: 502.
    Protocol(String),
    /// The origin refused the edge's credentials (an S3 signature or key it
    /// does not accept): 502.
    Refused(String),
}

impl OriginError {
    pub fn status(&self) -> StatusCode {
        match self {
            OriginError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

impl std::fmt::Display for OriginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OriginError::Connect(m) => write!(f, "origin connection failed: {m}"),
            OriginError::Timeout(m) => write!(f, "origin timed out: {m}"),
            OriginError::Protocol(m) => write!(f, "origin response broken: {m}"),
            OriginError::Refused(m) => write!(f, "origin refused the edge's credentials: {m}"),
        }
    }
}

impl std::error::Error for OriginError {}

/// A response body from an origin, read piece by piece.
pub enum OriginBody {
    Empty,
    Full(Option<Bytes>),
    Http {
        inner: Incoming,
        read_timeout: Duration,
        timer: Pin<Box<tokio::time::Sleep>>,
    },
    File(tokio_util::io::ReaderStream<tokio::fs::File>),
    /// The first bytes of a body, already read, then the rest of it.
    Prefixed(Option<Bytes>, Box<OriginBody>),
    /// A body whose bytes are counted as they arrive; a failure mid-body is
    /// counted as a protocol or timeout error.
    Metered(Box<OriginBody>, Arc<DistStats>),
}

impl OriginBody {
    pub(crate) fn http(inner: Incoming, read_timeout: Duration) -> OriginBody {
        OriginBody::Http { inner, read_timeout, timer: Box::pin(tokio::time::sleep(read_timeout)) }
    }

    /// The next piece of the body; `None` at its clean end.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, OriginError>>> {
        match self {
            OriginBody::Empty => Poll::Ready(None),
            OriginBody::Full(b) => Poll::Ready(b.take().map(Ok)),
            OriginBody::Prefixed(first, rest) => match first.take() {
                Some(b) => Poll::Ready(Some(Ok(b))),
                None => rest.poll_chunk(cx),
            },
            OriginBody::Http { inner, read_timeout, timer } => loop {
                match Pin::new(&mut *inner).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        timer.as_mut().reset(tokio::time::Instant::now() + *read_timeout);
                        match frame.into_data() {
                            Ok(data) if data.is_empty() => continue,
                            Ok(data) => return Poll::Ready(Some(Ok(data))),
                            Err(_trailers) => continue,
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        return Poll::Ready(Some(Err(OriginError::Protocol(format!("body: {e}")))))
                    }
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => {
                        if timer.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Some(Err(OriginError::Timeout(format!(
                                "no body data for {} ms",
                                read_timeout.as_millis()
                            )))));
                        }
                        return Poll::Pending;
                    }
                }
            },
            OriginBody::Metered(inner, stats) => {
                let next = inner.poll_chunk(cx);
                match &next {
                    Poll::Ready(Some(Ok(b))) => stats.record_origin_bytes(b.len() as u64),
                    Poll::Ready(Some(Err(OriginError::Timeout(_)))) => {
                        stats.record_origin_error(OriginErrorKind::Timeout)
                    }
                    Poll::Ready(Some(Err(_))) => stats.record_origin_error(OriginErrorKind::Protocol),
                    _ => {}
                }
                next
            }
            OriginBody::File(stream) => match futures_core::Stream::poll_next(Pin::new(stream), cx) {
                Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(b))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(OriginError::Protocol(format!("file read: {e}"))))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    pub async fn chunk(&mut self) -> Option<Result<Bytes, OriginError>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }
}

use std::future::Future;

impl Origin {
    /// An origin. A group's members are taken from `built`, the
    /// distribution's origins made before it (groups come last).
    pub fn new(config: Arc<OriginConfig>, stats: Arc<DistStats>, built: &[Arc<Origin>]) -> Result<Origin, String> {
        let kind = match &config.kind {
            OriginKind::Http(h) => Kind::Http(Box::new(http_origin::HttpOrigin::new(h.clone(), None)?)),
            OriginKind::S3(s) => {
                let auth = s3::S3Auth::new(s)?;
                Kind::Http(Box::new(http_origin::HttpOrigin::new(s.http.clone(), Some(auth))?))
            }
            OriginKind::Folder(f) => Kind::Folder(folder::FolderOrigin::new(f.root.clone())),
            OriginKind::Group(g) => {
                let members = g
                    .members
                    .iter()
                    .map(|&i| built.get(i).cloned().ok_or_else(|| format!("origin group {}: no member {i}", config.id)))
                    .collect::<Result<Vec<_>, _>>()?;
                Kind::Group(group::OriginGroup::new(g, members))
            }
        };
        Ok(Origin { config, kind, stats })
    }

    /// The state of a group's members (empty for a single origin).
    pub fn members(&self) -> Vec<MemberState> {
        match &self.kind {
            Kind::Group(g) => g.states(),
            _ => Vec::new(),
        }
    }

    /// Sends a request. The origin's custom headers are added here, and the
    /// exchange is counted in the distribution's statistics (for a group, by
    /// the member that is asked).
    pub async fn send(&self, req: OriginRequest) -> Result<OriginResponse, OriginError> {
        if let Kind::Group(g) = &self.kind {
            return g.send(req, &self.stats).await;
        }
        self.send_single(req).await
    }

    /// `send` for an origin that is not a group (a group's members never are).
    async fn send_single(&self, req: OriginRequest) -> Result<OriginResponse, OriginError> {
        Ok(self.exchange(req, false).await?.0)
    }

    /// Sends an `Upgrade` request (a WebSocket handshake): on `101` the way to
    /// the upgraded connection comes with the response. A folder origin
    /// answers as to any request, never with `101`. A group sends it to its
    /// primary (an upgrade is not failed over, as other requests with a
    /// connection of their own are not).
    pub async fn upgrade(
        &self,
        req: OriginRequest,
    ) -> Result<(OriginResponse, Option<hyper::upgrade::OnUpgrade>), OriginError> {
        match &self.kind {
            Kind::Group(g) => g.primary().exchange(req, true).await,
            _ => self.exchange(req, true).await,
        }
    }

    async fn exchange(
        &self,
        mut req: OriginRequest,
        upgrade: bool,
    ) -> Result<(OriginResponse, Option<hyper::upgrade::OnUpgrade>), OriginError> {
        for (name, value) in &self.config.headers {
            req.headers.insert(name.clone(), value.clone());
        }
        let head_bytes = crate::http::head_size(req.method.as_str().len() + req.path_and_query.len(), &req.headers);
        // The head now; body bytes as they are sent.
        self.stats.record_origin_request(head_bytes);
        req.body = match std::mem::replace(&mut req.body, RequestBody::Empty) {
            RequestBody::Viewer(b) => RequestBody::Counted(b, self.stats.clone()),
            RequestBody::Full(Some(b)) => {
                self.stats.record_origin_body_bytes(b.len() as u64);
                RequestBody::Full(Some(b))
            }
            other => other,
        };
        let sent = std::time::Instant::now();
        let result = match &self.kind {
            Kind::Http(h) if upgrade => h.upgrade(req).await,
            Kind::Http(h) => h.send(req).await.map(|r| (r, None)),
            Kind::Folder(f) => f.send(req).await.map(|r| (r, None)),
            Kind::Group(_) => Err(OriginError::Connect("an origin group is asked through its members".into())),
        };
        match result {
            Ok((mut resp, upgraded)) => {
                self.stats.record_origin_latency(sent.elapsed());
                let body = std::mem::replace(&mut resp.body, OriginBody::Empty);
                resp.body = OriginBody::Metered(Box::new(body), self.stats.clone());
                Ok((resp, upgraded))
            }
            Err(e) => {
                self.stats.record_origin_error(match e {
                    OriginError::Connect(_) => OriginErrorKind::Connect,
                    OriginError::Timeout(_) => OriginErrorKind::Timeout,
                    OriginError::Protocol(_) | OriginError::Refused(_) => OriginErrorKind::Protocol,
                });
                Err(e)
            }
        }
    }
}
