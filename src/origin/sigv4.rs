//! AWS Signature Version 4, as S3 checks it: the canonical request, the
//! string to sign, and the signing key derived with HMAC-SHA256 over the
//! date, the region and the service (docs/s3-origins.md).

use crate::config::Secret;
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, HOST};
use percent_encoding::{percent_decode_str, percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ring::{digest, hmac};
use std::time::{SystemTime, UNIX_EPOCH};

/// The payload hash of a request whose body is not signed (S3 accepts it).
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// The SHA-256 of an empty body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Besides `host` and `x-amz-*`, the request fields that are signed: those
/// that change what S3 answers.
const SIGNED_FIELDS: [&str; 7] =
    ["content-md5", "content-type", "if-match", "if-modified-since", "if-none-match", "if-unmodified-since", "range"];

/// Everything but the unreserved characters `A-Z a-z 0-9 - . _ ~`.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Signs requests for one access key, region and service.
pub struct Signer {
    pub access_key_id: String,
    secret_access_key: Secret,
    session_token: Option<Secret>,
    pub region: String,
    pub service: String,
}

/// A signed request's parts, as sent and as signed.
#[derive(Debug)]
pub struct Signed {
    /// The path and query to send (each part encoded as it was signed).
    pub path_and_query: String,
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signature: String,
}

impl Signer {
    pub fn new(
        access_key_id: &str,
        secret_access_key: Secret,
        session_token: Option<Secret>,
        region: &str,
        service: &str,
    ) -> Signer {
        Signer {
            access_key_id: access_key_id.to_string(),
            secret_access_key,
            session_token,
            region: region.to_string(),
            service: service.to_string(),
        }
    }

    /// Signs a request. `headers` must hold `host`; any `authorization` and
    /// `x-amz-*` fields in it (a viewer's) are replaced. Adds `x-amz-date`,
    /// `x-amz-content-sha256`, `x-amz-security-token` (with a session token)
    /// and `authorization`; returns the path and query to send.
    pub fn sign(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &mut HeaderMap,
        now: SystemTime,
        payload_sha256: &str,
    ) -> Result<Signed, String> {
        headers.remove(AUTHORIZATION);
        let viewer_amz: Vec<HeaderName> =
            headers.keys().filter(|n| n.as_str().starts_with("x-amz-")).cloned().collect();
        for name in viewer_amz {
            headers.remove(name);
        }
        let amz_date = amz_date(now);
        let value = |v: &str| HeaderValue::from_str(v).map_err(|_| "a value that cannot be a header".to_string());
        headers.insert("x-amz-date", value(&amz_date)?);
        headers.insert("x-amz-content-sha256", value(payload_sha256)?);
        if let Some(token) = &self.session_token {
            let mut v = value(token.expose()).map_err(|_| "the session token cannot be a header value".to_string())?;
            v.set_sensitive(true);
            headers.insert("x-amz-security-token", v);
        }
        if !headers.contains_key(HOST) {
            return Err("no host to sign".into());
        }
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, q),
            None => (path_and_query, ""),
        };
        let path = canonical_path(path);
        let query = canonical_query(query);
        let signed = canonical_request(method, &path, &query, headers, payload_sha256);
        let scope = format!("{}/{}/{}/aws4_request", &amz_date[..8], self.region, self.service);
        let string_to_sign =
            format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(sha256(signed.0.as_bytes()).as_ref()));
        let key = signing_key(&self.secret_access_key, &amz_date[..8], &self.region, &self.service);
        let signature = hex(hmac::sign(&key, string_to_sign.as_bytes()).as_ref());
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
            self.access_key_id, signed.1
        );
        let mut auth = value(&authorization).map_err(|_| "the access key id cannot be a header value".to_string())?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        let path_and_query = if query.is_empty() { path } else { format!("{path}?{query}") };
        Ok(Signed { path_and_query, canonical_request: signed.0, string_to_sign, signature })
    }
}

/// `YYYYMMDDTHHMMSSZ` in UTC.
pub fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day, h, m, s) = crate::log::civil(secs);
    format!("{year:04}{month:02}{day:02}T{h:02}{m:02}{s:02}Z")
}

/// The path as S3 signs it: each segment decoded, then encoded once
/// (everything but `A-Z a-z 0-9 - . _ ~`); slashes kept, nothing normalised.
pub fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut out = String::with_capacity(path.len() + 16);
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let bytes: Vec<u8> = percent_decode_str(segment).collect();
        out.extend(percent_encode(&bytes, ENCODE));
    }
    out
}

/// The query: each name and value decoded, then encoded once, sorted by name
/// and then value (`+` is a plus sign, as S3 reads it).
pub fn canonical_query(query: &str) -> String {
    let enc = |s: &str| {
        let bytes: Vec<u8> = percent_decode_str(s).collect();
        percent_encode(&bytes, ENCODE).to_string()
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (enc(k), enc(v))
        })
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The canonical request and its signed header names (`a;b;c`).
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    payload_sha256: &str,
) -> (String, String) {
    let mut names: Vec<&HeaderName> = headers
        .keys()
        .filter(|n| *n == HOST || n.as_str().starts_with("x-amz-") || SIGNED_FIELDS.contains(&n.as_str()))
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut canonical = format!("{method}\n{path}\n{query}\n");
    for name in &names {
        canonical.push_str(name.as_str());
        canonical.push(':');
        for (i, v) in headers.get_all(*name).iter().enumerate() {
            if i > 0 {
                canonical.push(',');
            }
            // Trimmed, with runs of spaces made one.
            let text = String::from_utf8_lossy(v.as_bytes());
            let mut words = text.split(' ').filter(|w| !w.is_empty());
            if let Some(first) = words.next() {
                canonical.push_str(first);
                for w in words {
                    canonical.push(' ');
                    canonical.push_str(w);
                }
            }
        }
        canonical.push('\n');
    }
    let signed = names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(";");
    canonical.push('\n');
    canonical.push_str(&signed);
    canonical.push('\n');
    canonical.push_str(payload_sha256);
    (canonical, signed)
}

/// HMAC-SHA256 over `AWS4` + secret, then the date, region, service and `aws4_request`.
fn signing_key(secret: &Secret, date: &str, region: &str, service: &str) -> hmac::Key {
    let mut k =
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, format!("AWS4{}", secret.expose()).as_bytes()), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        k = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, k.as_ref()), part.as_bytes());
    }
    hmac::Key::new(hmac::HMAC_SHA256, k.as_ref())
}

fn sha256(data: &[u8]) -> digest::Digest {
    digest::digest(&digest::SHA256, data)
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(amz: &str) -> SystemTime {
        // Only the dates these tests use.
        let secs = match amz {
            "20130524T000000Z" => 1_369_353_600,
            "20150830T123600Z" => 1_440_938_160,
            _ => panic!("no such test date"),
        };
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn dates() {
        assert_eq!(amz_date(at("20130524T000000Z")), "20130524T000000Z");
        assert_eq!(amz_date(at("20150830T123600Z")), "20150830T123600Z");
        assert_eq!(amz_date(UNIX_EPOCH + Duration::from_secs(951_782_400)), "20000229T000000Z");
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
    }

    /// AWS's S3 example: "GET Object" with a range (Signature Version 4,
    /// header-based authentication), signed as its documentation shows.
    #[test]
    fn s3_documentation_example() {
        let signer = Signer::new(
            "AKIAIOSFODNN7EXAMPLE",
            Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            None,
            "us-east-1",
            "s3",
        );
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("examplebucket.s3.amazonaws.com"));
        h.insert("range", HeaderValue::from_static("bytes=0-9"));
        h.insert("user-agent", HeaderValue::from_static("not signed"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic a viewer's"));
        let s = signer.sign("GET", "/test.txt", &mut h, at("20130524T000000Z"), EMPTY_SHA256).unwrap();
        assert_eq!(
            s.canonical_request,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
             x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(s.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
        assert_eq!(
            h.get(AUTHORIZATION).unwrap(),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// Vectors of AWS's SigV4 test suite (service `service`, us-east-1,
    /// 20150830T123600Z). Its requests carry no `x-amz-content-sha256`, so
    /// the canonical request is built without the signer adding one.
    #[test]
    fn test_suite_vectors() {
        let vectors = [
            ("/", "", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"), // get-vanilla
            ("/", "Param2=value2&Param1=value1", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
            ("/", "Param1=value2&Param1=value1", "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694"),
            (
                "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                "",
                "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
            ),
        ];
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("example.amazonaws.com"));
        h.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        let key =
            signing_key(&Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), "20150830", "us-east-1", "service");
        for (path, query, want) in vectors {
            let (cr, signed) =
                canonical_request("GET", &canonical_path(path), &canonical_query(query), &h, EMPTY_SHA256);
            assert_eq!(signed, "host;x-amz-date");
            let sts = format!(
                "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n{}",
                hex(sha256(cr.as_bytes()).as_ref())
            );
            assert_eq!(hex(hmac::sign(&key, sts.as_bytes()).as_ref()), want, "{path}?{query}");
        }
    }

    #[test]
    fn paths_and_queries_encode_once() {
        assert_eq!(canonical_path("/b/a b/c%20d/e+f/ü/%2F/~x"), "/b/a%20b/c%20d/e%2Bf/%C3%BC/%2F/~x");
        assert_eq!(canonical_path(""), "/");
        assert_eq!(canonical_path("/a//b/"), "/a//b/");
        assert_eq!(canonical_query("b=2&a=x y&a=%41&flag"), "a=A&a=x%20y&b=2&flag=");
        assert_eq!(canonical_query("k=a+b"), "k=a%2Bb");
    }

    #[test]
    fn viewer_credentials_are_replaced_and_token_sent() {
        let signer = Signer::new("AKID", Secret::new("s"), Some(Secret::new("tok")), "eu-west-1", "s3");
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("b.s3.eu-west-1.amazonaws.com"));
        h.insert("x-amz-security-token", HeaderValue::from_static("viewer's"));
        h.insert("x-amz-meta-x", HeaderValue::from_static("viewer's"));
        let s = signer.sign("GET", "/k?x=1", &mut h, UNIX_EPOCH, UNSIGNED_PAYLOAD).unwrap();
        assert_eq!(h.get("x-amz-security-token").unwrap(), "tok");
        assert!(h.get("x-amz-meta-x").is_none());
        assert!(s.canonical_request.contains("x-amz-security-token:tok\n"));
        assert_eq!(s.path_and_query, "/k?x=1");
        assert!(h.get(AUTHORIZATION).unwrap().to_str().unwrap().contains("Credential=AKID/19700101/eu-west-1/s3/"));
    }
}
