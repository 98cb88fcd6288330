//! A local folder as an origin: files by path, with validators, so the edge can
//! revalidate against it like any HTTP origin.

use super::{OriginBody, OriginError, OriginRequest, OriginResponse};
use crate::http::conditional::{self, Precondition};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

pub struct FolderOrigin {
    root: PathBuf,
}

/// Files up to this size are read whole; larger ones are streamed.
const READ_WHOLE: u64 = 1 << 20;

impl FolderOrigin {
    pub fn new(root: PathBuf) -> FolderOrigin {
        FolderOrigin { root }
    }

    pub async fn send(&self, req: OriginRequest) -> Result<OriginResponse, OriginError> {
        let request_time = SystemTime::now();
        let respond = |status: StatusCode, headers: HeaderMap, body: OriginBody| OriginResponse {
            status,
            headers,
            body,
            request_time,
            response_time: SystemTime::now(),
        };
        if req.method != Method::GET && req.method != Method::HEAD {
            let mut h = HeaderMap::new();
            h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Ok(respond(StatusCode::METHOD_NOT_ALLOWED, h, OriginBody::Empty));
        }
        let path = req.path_and_query.split('?').next().unwrap_or("/");
        let resolved = match self.resolve(path) {
            Some(file) => self.confine(&file).await.map(|real| (file, real)),
            None => None,
        };
        let Some((named, file)) = resolved else {
            return Ok(respond(
                StatusCode::NOT_FOUND,
                text_headers(),
                OriginBody::Full(Some(Bytes::from_static(b"not found\n"))),
            ));
        };
        let meta = match tokio::fs::metadata(&file).await {
            Ok(m) if m.is_file() => m,
            _ => {
                return Ok(respond(
                    StatusCode::NOT_FOUND,
                    text_headers(),
                    OriginBody::Full(Some(Bytes::from_static(b"not found\n"))),
                ))
            }
        };
        let len = meta.len();
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let mtime = modified.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let mut headers = HeaderMap::new();
        let etag = HeaderValue::from_str(&format!("\"{:x}-{:x}\"", len, mtime.as_nanos())).ok();
        if let Some(e) = &etag {
            headers.insert(header::ETAG, e.clone());
        }
        // Whole seconds, as HTTP dates are.
        let lm = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(mtime.as_secs());
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(lm)) {
            headers.insert(header::LAST_MODIFIED, v);
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&named)));
        if conditional::evaluate(&req.headers, etag.as_ref(), Some(lm)) == Precondition::NotModified {
            return Ok(respond(StatusCode::NOT_MODIFIED, headers, OriginBody::Empty));
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if req.method == Method::HEAD {
            return Ok(respond(StatusCode::OK, headers, OriginBody::Empty));
        }
        let body = if len <= READ_WHOLE {
            let bytes = tokio::fs::read(&file)
                .await
                .map_err(|e| OriginError::Protocol(format!("reading {}: {e}", file.display())))?;
            OriginBody::Full(Some(Bytes::from(bytes)))
        } else {
            let f = tokio::fs::File::open(&file)
                .await
                .map_err(|e| OriginError::Protocol(format!("opening {}: {e}", file.display())))?;
            OriginBody::File(tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024))
        };
        Ok(respond(StatusCode::OK, headers, body))
    }

    /// Maps a canonical URI path (see `http::path`) into the folder; `None`
    /// for a path that is not canonical (the edge canonicalises every path
    /// before it gets here: anything else is refused, never repaired) or whose
    /// segments are not plain file names.
    fn resolve(&self, uri_path: &str) -> Option<PathBuf> {
        if !matches!(crate::http::path::canonical(uri_path), Ok(std::borrow::Cow::Borrowed(_))) {
            return None;
        }
        // Each escape is decoded exactly once: `%252e` names a file `%2e`.
        let decoded = percent_encoding::percent_decode_str(uri_path).decode_utf8().ok()?;
        let mut out = self.root.clone();
        let mut segments = decoded[1..].split('/').peekable();
        while let Some(seg) = segments.next() {
            if seg.is_empty() && segments.peek().is_none() {
                break; // the trailing slash of a folder
            }
            let mut parts = Path::new(seg).components();
            match (parts.next(), parts.next()) {
                (Some(Component::Normal(name)), None) if name == seg && !seg.contains(['\\', '\0']) => out.push(name),
                _ => return None,
            }
        }
        if out == self.root || decoded.ends_with('/') {
            out.push("index.html");
        }
        Some(out)
    }

    /// The file a resolved path names, symbolic links followed, if it is
    /// inside the root (which may itself be reached through a link).
    /// A link that leads outside the root is treated as absent.
    async fn confine(&self, file: &Path) -> Option<PathBuf> {
        let root = tokio::fs::canonicalize(&self.root).await.ok()?;
        let real = tokio::fs::canonicalize(file).await.ok()?;
        real.starts_with(&root).then_some(real)
    }
}

fn text_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h
}

/// The content type for a file name, with the streaming types first.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "m3u8" => "application/vnd.apple.mpegurl",
        "mpd" => "application/dash+xml",
        "ts" => "video/mp2t",
        "m4s" => "video/iso.segment",
        "mp4" | "m4v" | "cmfv" => "video/mp4",
        "m4a" | "cmfa" => "audio/mp4",
        "aac" => "audio/aac",
        "vtt" => "text/vtt",
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css",
        "js" | "mjs" => "application/javascript",
        "json" => "application/json",
        "xml" => "application/xml",
        "txt" => "text/plain; charset=utf-8",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "webm" => "video/webm",
        "key" => "application/octet-stream",
        _ => "application/octet-stream",
    }
}
