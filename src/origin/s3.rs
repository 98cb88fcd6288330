//! S3 origins: an HTTP origin whose requests are signed with SigV4, and
//! whose refusals of the edge's credentials become 502s that name S3's
//! error code (docs/s3-origins.md).

use super::sigv4::Signer;
use super::{OriginBody, OriginError, OriginResponse};
use crate::config::S3OriginConfig;
use bytes::{Bytes, BytesMut};

/// How much of an error body is read for its code.
const ERROR_BODY_LIMIT: usize = 8 * 1024;

/// S3 error codes that say the edge's credentials or signature are wrong:
/// the viewer gets a 502 (the edge is misconfigured), not S3's answer.
const CREDENTIAL_ERRORS: [&str; 8] = [
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
    "RequestTimeTooSkewed",
    "InvalidSecurity",
];

/// The signer of one S3 origin, and where its credentials came from.
pub(super) struct S3Auth {
    pub signer: Signer,
    source: String,
}

impl S3Auth {
    pub fn new(config: &S3OriginConfig) -> Result<S3Auth, String> {
        let c = crate::config::s3::credentials(config).map_err(|e| e.to_string())?;
        let signer =
            Signer::new(&c.access_key_id, c.secret_access_key.clone(), c.session_token.clone(), &config.region, "s3");
        Ok(S3Auth { signer, source: c.source.clone() })
    }

    /// A 400 or 403 from S3: its error body is read (up to a few KiB) for its
    /// code. A refusal of the credentials is an origin error that names the
    /// code; any other answer (`AccessDenied`, `NoSuchKey`...) goes on to the
    /// viewer, its body whole.
    pub async fn check(&self, mut resp: OriginResponse) -> Result<OriginResponse, OriginError> {
        let mut body = std::mem::replace(&mut resp.body, OriginBody::Empty);
        let mut prefix = BytesMut::new();
        let mut ended = false;
        while prefix.len() < ERROR_BODY_LIMIT {
            match body.chunk().await {
                Some(Ok(b)) => prefix.extend_from_slice(&b),
                Some(Err(e)) => return Err(e),
                None => {
                    ended = true;
                    break;
                }
            }
        }
        let prefix = prefix.freeze();
        if let Some(code) = element(&prefix, "Code").filter(|c| CREDENTIAL_ERRORS.contains(&c.as_str())) {
            let message = element(&prefix, "Message").map(|m| format!(": {m}")).unwrap_or_default();
            // Which key, and from where, for the operator only: the reason
            // below is also the body of the viewer's 502.
            tracing::warn!(
                access_key_id = %self.signer.access_key_id,
                credentials = %self.source,
                region = %self.signer.region,
                "S3 refused the edge's request: {code}"
            );
            return Err(OriginError::Refused(format!("S3 answered {} {code}{message}", resp.status.as_u16())));
        }
        resp.body =
            if ended { OriginBody::Full(Some(prefix)) } else { OriginBody::Prefixed(Some(prefix), Box::new(body)) };
        Ok(resp)
    }
}

/// The text of the first `<name>` element of an XML error body, made safe
/// for a log line (printable, at most 200 characters).
fn element(body: &Bytes, name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&format!("</{name}>"))?;
    let value: String = text[start..end].chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect();
    Some(value.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes() {
        let body = Bytes::from_static(
            b"<?xml version=\"1.0\"?>\n<Error><Code>SignatureDoesNotMatch</Code>\
              <Message>The request signature we calculated does not match\nthe signature you provided.</Message></Error>",
        );
        assert_eq!(element(&body, "Code").as_deref(), Some("SignatureDoesNotMatch"));
        assert_eq!(
            element(&body, "Message").as_deref(),
            Some("The request signature we calculated does not match the signature you provided.")
        );
        assert_eq!(element(&Bytes::from_static(b"<Code>open"), "Code"), None);
        assert_eq!(element(&Bytes::from_static(b"\xff\xfe"), "Code"), None);
    }
}
