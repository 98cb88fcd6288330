//! Compression of text responses (manifests, subtitles, HTML/CSS/JS/JSON/XML).
//!
//! A variant is compressed once, from the complete stored body, and kept with
//! the object; hits serve the stored variant without compressing again.

use bytes::Bytes;
use http::header::{self, HeaderMap};
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Brotli,
    Gzip,
    Identity,
}

/// CloudFront's bounds: smaller bodies do not pay, larger ones cost too much.
pub const MIN_BYTES: usize = 1_000;
pub const MAX_BYTES: usize = 10_000_000;

impl Encoding {
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
            Encoding::Identity => "identity",
        }
    }

    /// The coding this edge sends for a request's `Accept-Encoding`: brotli if
    /// acceptable, else gzip, else identity (q=0 excludes a coding).
    pub fn preferred(req: &HeaderMap) -> Encoding {
        match accepted(req) {
            (true, _) => Encoding::Brotli,
            (false, true) => Encoding::Gzip,
            _ => Encoding::Identity,
        }
    }
}

/// The request's `Accept-Encoding` reduced to what matters here, as the value
/// forwarded to origins and compared for `Vary`: `br, gzip`, `br`, `gzip`, or
/// `identity`. Requests that accept the same codings share a variant.
pub fn normalized_accept_encoding(req: &HeaderMap) -> &'static str {
    match accepted(req) {
        (true, true) => "br, gzip",
        (true, false) => "br",
        (false, true) => "gzip",
        (false, false) => "identity",
    }
}

/// Whether brotli and gzip are acceptable (q=0 excludes a coding, `*` covers the rest).
fn accepted(req: &HeaderMap) -> (bool, bool) {
    {
        let (mut br, mut gzip, mut star) = (None, None, None);
        for value in req.get_all(header::ACCEPT_ENCODING) {
            let Ok(value) = value.to_str() else { continue };
            for item in value.split(',') {
                let mut parts = item.split(';');
                let coding = parts.next().unwrap_or("").trim();
                let q = parts
                    .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                let ok = q > 0.0;
                if coding.eq_ignore_ascii_case("br") {
                    br = Some(ok);
                } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                    gzip = Some(ok);
                } else if coding == "*" {
                    star = Some(ok);
                }
            }
        }
        (br.or(star) == Some(true), gzip.or(star) == Some(true))
    }
}

/// Whether a content type is text worth compressing.
pub fn is_compressible_type(content_type: &str) -> bool {
    let ct = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    ct.starts_with("text/")
        || ct.ends_with("+xml")
        || ct.ends_with("+json")
        || matches!(
            ct.as_str(),
            "application/javascript"
                | "application/x-javascript"
                | "application/ecmascript"
                | "application/json"
                | "application/xml"
                | "application/vnd.apple.mpegurl"
                | "application/x-mpegurl"
                | "audio/mpegurl"
                | "audio/x-mpegurl"
                | "application/dash+xml"
                | "image/svg+xml"
        )
}

/// Compresses `body`; `None` when it is outside the size bounds or does not shrink.
pub fn compress(enc: Encoding, body: &[u8]) -> Option<Bytes> {
    if !(MIN_BYTES..=MAX_BYTES).contains(&body.len()) {
        return None;
    }
    let out = match enc {
        Encoding::Brotli => {
            let mut out = Vec::with_capacity(body.len() / 3);
            let params = brotli::enc::BrotliEncoderParams { quality: 5, lgwin: 20, ..Default::default() };
            let mut input = body;
            brotli::BrotliCompress(&mut input, &mut out, &params).ok()?;
            out
        }
        Encoding::Gzip => {
            let mut enc =
                flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 3), flate2::Compression::new(6));
            enc.write_all(body).ok()?;
            enc.finish().ok()?
        }
        Encoding::Identity => return None,
    };
    (out.len() < body.len()).then(|| Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ae(v: &'static str) -> Encoding {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
        Encoding::preferred(&h)
    }

    #[test]
    fn negotiation() {
        assert_eq!(ae("gzip, deflate, br"), Encoding::Brotli);
        assert_eq!(ae("gzip"), Encoding::Gzip);
        assert_eq!(ae("br;q=0, gzip"), Encoding::Gzip);
        assert_eq!(ae("identity"), Encoding::Identity);
        assert_eq!(ae("*"), Encoding::Brotli);
        assert_eq!(Encoding::preferred(&HeaderMap::new()), Encoding::Identity);
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip;q=0.5, deflate, br"));
        assert_eq!(normalized_accept_encoding(&h), "br, gzip");
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip, br;q=0"));
        assert_eq!(normalized_accept_encoding(&h), "gzip");
    }

    #[test]
    fn compresses_text_round_trip() {
        let text = "#EXTINF:2.0,\nseg.ts\n".repeat(200);
        let gz = compress(Encoding::Gzip, text.as_bytes()).unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
        assert_eq!(out, text);
        let br = compress(Encoding::Brotli, text.as_bytes()).unwrap();
        let mut out = Vec::new();
        brotli::BrotliDecompress(&mut &br[..], &mut out).unwrap();
        assert_eq!(out, text.as_bytes());
        assert!(compress(Encoding::Gzip, b"tiny").is_none());
        assert!(is_compressible_type("application/vnd.apple.mpegurl"));
        assert!(!is_compressible_type("video/mp2t"));
    }
}
