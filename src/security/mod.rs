//! Private content: CloudFront-compatible signed URLs and signed cookies.
//!
//! A cache behavior with trusted key groups serves a request only when it
//! carries a valid signature, in its query string (`Expires` or `Policy`,
//! `Signature`, `Key-Pair-Id`) or in cookies (`CloudFront-Expires` or
//! `CloudFront-Policy`, `CloudFront-Signature`, `CloudFront-Key-Pair-Id`).
//! Anything else is answered 403 with a short reason, before the cache and the
//! origin. See docs/private-content.md.
//!
//! RSA verification costs tens of microseconds, so verified signatures are
//! remembered in a bounded map keyed by (key, policy, signature); time, IP and
//! resource conditions are still evaluated on every request.

pub mod fle;
pub mod fle_form;
pub mod policy;
pub mod sign;
pub mod signature;

use crate::config::KeyGroup;
use http::header::{self, HeaderMap, HeaderValue};
use policy::Policy;
use quick_cache::Equivalent as _;
use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The query parameters of a signed URL.
pub const SIGNING_PARAMS: [&str; 4] = ["Expires", "Policy", "Signature", "Key-Pair-Id"];
/// The cookies of signed cookies.
pub const SIGNING_COOKIES: [&str; 4] =
    ["CloudFront-Expires", "CloudFront-Policy", "CloudFront-Signature", "CloudFront-Key-Pair-Id"];

/// Longest encoded `Policy` accepted: 4 KiB of policy JSON.
pub const MAX_POLICY_BYTES: usize = 4096;
/// Longest signature accepted: 1 KiB (an 8192-bit RSA key).
pub const MAX_SIGNATURE_BYTES: usize = 1024;
const MAX_KEY_PAIR_ID: usize = 128;

/// Why a request was refused. `reason()` is what the viewer reads after
/// "403 Forbidden: " and what the access log records as the detailed result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No signing parameter or cookie at all.
    MissingSignature,
    MissingSignatureValue,
    MissingKeyPairId,
    /// Neither `Expires` nor `Policy`.
    MissingPolicy,
    /// Both `Expires` and `Policy`.
    CannedAndCustom,
    /// A signing parameter given twice, or empty.
    Ambiguous,
    MalformedExpires,
    MalformedPolicy,
    PolicyTooLarge,
    PolicyJson,
    PolicyUnsupported,
    PolicyNoDateLessThan,
    MalformedSignature,
    SignatureTooLarge,
    UnknownKey,
    Invalid,
    Expired,
    NotYetValid,
    SourceIp,
    Resource,
    /// The request names no host, so no URL can be rebuilt.
    NoHost,
}

impl Denial {
    /// What the viewer reads after "403 Forbidden: ".
    pub fn reason(self) -> &'static str {
        self.reasons().0
    }

    /// The same reason as the access log's `x-edge-detailed-result-type`,
    /// spaces percent-encoded as the log encodes every other field.
    pub fn log_reason(self) -> &'static str {
        self.reasons().1
    }

    fn reasons(self) -> (&'static str, &'static str) {
        match self {
            Denial::MissingSignature => ("missing signed URL or cookies", "missing%20signed%20URL%20or%20cookies"),
            Denial::MissingSignatureValue => ("missing Signature", "missing%20Signature"),
            Denial::MissingKeyPairId => ("missing Key-Pair-Id", "missing%20Key-Pair-Id"),
            Denial::MissingPolicy => ("missing Expires or Policy", "missing%20Expires%20or%20Policy"),
            Denial::CannedAndCustom => ("both Expires and Policy", "both%20Expires%20and%20Policy"),
            Denial::Ambiguous => ("repeated or empty signing parameter", "repeated%20or%20empty%20signing%20parameter"),
            Denial::MalformedExpires => ("malformed Expires", "malformed%20Expires"),
            Denial::MalformedPolicy => ("malformed policy encoding", "malformed%20policy%20encoding"),
            Denial::PolicyTooLarge => ("policy too large", "policy%20too%20large"),
            Denial::PolicyJson => ("malformed policy JSON", "malformed%20policy%20JSON"),
            Denial::PolicyUnsupported => ("unsupported policy", "unsupported%20policy"),
            Denial::PolicyNoDateLessThan => ("policy without DateLessThan", "policy%20without%20DateLessThan"),
            Denial::MalformedSignature => ("malformed signature encoding", "malformed%20signature%20encoding"),
            Denial::SignatureTooLarge => ("signature too large", "signature%20too%20large"),
            Denial::UnknownKey => ("unknown key pair id", "unknown%20key%20pair%20id"),
            Denial::Invalid => ("invalid signature", "invalid%20signature"),
            Denial::Expired => ("signature expired", "signature%20expired"),
            Denial::NotYetValid => ("signature not yet valid", "signature%20not%20yet%20valid"),
            Denial::SourceIp => ("source IP not allowed", "source%20IP%20not%20allowed"),
            Denial::Resource => ("resource not allowed by policy", "resource%20not%20allowed%20by%20policy"),
            Denial::NoHost => ("no host to sign against", "no%20host%20to%20sign%20against"),
        }
    }
}

/// The parts of a request the check reads.
pub struct SignedRequest<'a> {
    /// `https` when the viewer connected with TLS, else `http`.
    pub scheme: &'a str,
    /// The host as the viewer sent it (`Host`, or the URI's authority), port included.
    pub authority: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub client_ip: IpAddr,
    /// Epoch seconds.
    pub now: u64,
}

/// Checks signatures; one per edge, shared by every distribution.
pub struct Verifier {
    verified: quick_cache::sync::Cache<VerifiedKey, Arc<Policy>, Weight>,
    /// RSA operations done (cache misses that got as far as the signature).
    rsa_verifications: AtomicU64,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::new(8 << 20)
    }
}

impl Verifier {
    /// `budget`: bytes of (policy + signature) remembered as verified.
    pub fn new(budget: u64) -> Verifier {
        Verifier {
            verified: quick_cache::sync::Cache::with_weighter((budget / 512) as usize, budget, Weight),
            rsa_verifications: AtomicU64::new(0),
        }
    }

    /// How many RSA verifications were run: repeats of a verified signature run none.
    pub fn rsa_verifications(&self) -> u64 {
        self.rsa_verifications.load(Ordering::Relaxed)
    }

    /// Whether the request carries a valid signature by a key of `groups`.
    pub fn check(&self, groups: &[Arc<KeyGroup>], req: &SignedRequest) -> Result<(), Denial> {
        let params = Params::from_request(req)?;
        let key_pair_id = params.key_pair_id.as_deref().ok_or(Denial::MissingKeyPairId)?;
        let signature = params.signature.as_deref().ok_or(Denial::MissingSignatureValue)?;
        if signature.len() > MAX_SIGNATURE_BYTES.div_ceil(3) * 4 {
            return Err(Denial::SignatureTooLarge);
        }
        if params.policy.as_ref().is_some_and(|p| p.len() > MAX_POLICY_BYTES.div_ceil(3) * 4) {
            return Err(Denial::PolicyTooLarge);
        }
        if key_pair_id.len() > MAX_KEY_PAIR_ID {
            return Err(Denial::UnknownKey);
        }
        let key = groups
            .iter()
            .flat_map(|g| g.keys.iter())
            .find(|k| k.id == key_pair_id)
            // A key the configuration's materialise step did not load verifies nothing.
            .and_then(|k| k.key.get())
            .ok_or(Denial::UnknownKey)?;

        let host_url = || resource_url(req);
        // The signed bytes: for a canned policy, the policy rebuilt from this
        // request's URL; for a custom policy, the Policy parameter (decoded on
        // a cache miss only).
        let (signed, canned_expires) = match (params.expires.as_deref(), params.policy.as_deref()) {
            (Some(_), Some(_)) => return Err(Denial::CannedAndCustom),
            (None, None) => return Err(Denial::MissingPolicy),
            (Some(e), None) => {
                let expires = parse_epoch(e).ok_or(Denial::MalformedExpires)?;
                (Cow::Owned(policy::canned(&host_url()?, expires)), Some(expires))
            }
            (None, Some(p)) => (Cow::Borrowed(p), None),
        };
        let lookup = VerifiedRef { key: key.serial(), policy: &signed, signature };
        let policy = match self.verified.get(&lookup) {
            Some(p) => p,
            None => {
                let sig = signature::decode(signature).ok_or(Denial::MalformedSignature)?;
                if sig.len() > MAX_SIGNATURE_BYTES {
                    return Err(Denial::SignatureTooLarge);
                }
                let (policy, message): (Policy, Cow<[u8]>) = match canned_expires {
                    Some(expires) => (Policy::canned(expires), Cow::Borrowed(signed.as_bytes())),
                    None => {
                        let json = signature::decode(&signed).ok_or(Denial::MalformedPolicy)?;
                        if json.len() > MAX_POLICY_BYTES {
                            return Err(Denial::PolicyTooLarge);
                        }
                        (Policy::parse_custom(&json)?, Cow::Owned(json))
                    }
                };
                // Cheap conditions first: an expired or misaddressed policy
                // costs no RSA operation.
                policy.check_time(req.now)?;
                policy.check_ip(req.client_ip)?;
                self.rsa_verifications.fetch_add(1, Ordering::Relaxed);
                if !key.verify(&message, &sig) {
                    return Err(Denial::Invalid);
                }
                let policy = Arc::new(policy);
                self.verified.insert(
                    VerifiedKey { key: key.serial(), policy: signed.as_ref().into(), signature: signature.into() },
                    policy.clone(),
                );
                policy
            }
        };
        policy.check_time(req.now)?;
        policy.check_ip(req.client_ip)?;
        if policy.resource.is_some() {
            policy.check_resource(&host_url()?)?;
        }
        Ok(())
    }
}

/// The URL the viewer asked for, as it would have been signed:
/// `scheme://host/path?query` without the signing parameters.
pub fn resource_url(req: &SignedRequest) -> Result<String, Denial> {
    if req.authority.is_empty() {
        return Err(Denial::NoHost);
    }
    let mut url = String::with_capacity(req.scheme.len() + 3 + req.authority.len() + req.path.len() + 64);
    url.push_str(req.scheme);
    url.push_str("://");
    url.push_str(req.authority);
    url.push_str(req.path);
    if let Some(q) = req.query.map(query_without_signing).filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(&q);
    }
    Ok(url)
}

/// A query string without the signing parameters, the others in their order.
pub fn query_without_signing(query: &str) -> Cow<'_, str> {
    if !query.split('&').any(is_signing_param) {
        return Cow::Borrowed(query);
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !p.is_empty() && !is_signing_param(p)).collect();
    Cow::Owned(kept.join("&"))
}

fn is_signing_param(pair: &str) -> bool {
    let name = pair.split_once('=').map_or(pair, |(n, _)| n);
    SIGNING_PARAMS.contains(&name)
}

/// The signing parameters of a query string, in their order (`None` if none).
pub fn signing_params(query: Option<&str>) -> Option<String> {
    let kept: Vec<&str> = query?.split('&').filter(|p| is_signing_param(p)).collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// The path as the viewer sent it, kept (in the request's extensions) when it
/// was not canonical. Resource matching runs on the canonical path; a canned
/// policy, which signs one exact URL, is also accepted for the spelling that
/// was signed (the signature then covers exactly what the viewer sent, and the
/// edge serves what that spelling means). A custom policy's resource, which
/// may hold wildcards, is matched against the canonical URL only.
#[derive(Debug, Clone)]
pub struct SentPath(pub String);

/// The signing parameters a viewer's request carried, kept (in the request's
/// extensions) after they are stripped, for manifests that pass them on.
#[derive(Debug, Clone)]
pub struct ViewerTokens(pub String);

/// Whether the query string carries any signing parameter.
pub fn has_signing_params(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(is_signing_param))
}

/// Removes the signing cookies from the request's `Cookie` headers (and the
/// headers themselves when nothing else is left).
pub fn remove_signing_cookies(headers: &mut HeaderMap) {
    let has_signing = headers
        .get_all(header::COOKIE)
        .iter()
        .any(|v| v.to_str().map_or(true, |s| s.split(';').any(|c| is_signing_cookie(c.trim()))));
    if !has_signing {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !is_signing_cookie(c))
        .map(str::to_string)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(header::COOKIE, v);
        }
    }
}

fn is_signing_cookie(pair: &str) -> bool {
    let name = pair.split_once('=').map_or(pair, |(n, _)| n.trim());
    SIGNING_COOKIES.contains(&name)
}

/// The four signing values, from the query string or else from cookies.
struct Params<'a> {
    expires: Option<Cow<'a, str>>,
    policy: Option<Cow<'a, str>>,
    signature: Option<Cow<'a, str>>,
    key_pair_id: Option<Cow<'a, str>>,
}

impl<'a> Params<'a> {
    /// A URL with any signing parameter is checked on its parameters alone;
    /// cookies are read only when the URL has none (never a mix of both).
    fn from_request(req: &SignedRequest<'a>) -> Result<Params<'a>, Denial> {
        let mut p = Params { expires: None, policy: None, signature: None, key_pair_id: None };
        if let Some(q) = req.query.filter(|q| has_signing_params(Some(q))) {
            for pair in q.split('&') {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                let (slot, malformed) = match name {
                    "Expires" => (&mut p.expires, Denial::MalformedExpires),
                    "Policy" => (&mut p.policy, Denial::MalformedPolicy),
                    "Signature" => (&mut p.signature, Denial::MalformedSignature),
                    "Key-Pair-Id" => (&mut p.key_pair_id, Denial::UnknownKey),
                    _ => continue,
                };
                // One value per parameter, never empty: an ambiguous URL is refused.
                if slot.is_some() || value.is_empty() {
                    return Err(Denial::Ambiguous);
                }
                *slot = Some(percent_encoding::percent_decode_str(value).decode_utf8().map_err(|_| malformed)?);
            }
            return Ok(p);
        }
        let mut any = false;
        for (name, pair) in crate::cache::key::cookie_pairs(req.headers) {
            let slot = match name {
                "CloudFront-Expires" => &mut p.expires,
                "CloudFront-Policy" => &mut p.policy,
                "CloudFront-Signature" => &mut p.signature,
                "CloudFront-Key-Pair-Id" => &mut p.key_pair_id,
                _ => continue,
            };
            any = true;
            // Browsers send the most specific path's cookie first: it wins.
            if slot.is_none() {
                let value = pair.split_once('=').map_or("", |(_, v)| v.trim().trim_matches('"'));
                if !value.is_empty() {
                    *slot = Some(Cow::Borrowed(value));
                }
            }
        }
        if !any {
            return Err(Denial::MissingSignature);
        }
        Ok(p)
    }
}

/// Epoch seconds: 1 to 20 ASCII digits.
fn parse_epoch(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A verified (key, policy, signature). Equality is constant-time in the
/// contents (the map compares a candidate only after its hash matched).
struct VerifiedKey {
    key: u64,
    policy: Box<str>,
    signature: Box<str>,
}

struct VerifiedRef<'a> {
    key: u64,
    policy: &'a str,
    signature: &'a str,
}

impl Hash for VerifiedKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        VerifiedRef { key: self.key, policy: &self.policy, signature: &self.signature }.hash(state)
    }
}

impl Hash for VerifiedRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
        self.policy.hash(state);
        self.signature.hash(state);
    }
}

impl PartialEq for VerifiedKey {
    fn eq(&self, other: &Self) -> bool {
        VerifiedRef { key: other.key, policy: &other.policy, signature: &other.signature }.equivalent(self)
    }
}

impl Eq for VerifiedKey {}

impl quick_cache::Equivalent<VerifiedKey> for VerifiedRef<'_> {
    fn equivalent(&self, key: &VerifiedKey) -> bool {
        // Evaluate all three, whatever the first says.
        let same_key = self.key == key.key;
        let same_policy = signature::constant_time_eq(self.policy.as_bytes(), key.policy.as_bytes());
        let same_sig = signature::constant_time_eq(self.signature.as_bytes(), key.signature.as_bytes());
        same_key & same_policy & same_sig
    }
}

#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<VerifiedKey, Arc<Policy>> for Weight {
    fn weight(&self, key: &VerifiedKey, _: &Arc<Policy>) -> u64 {
        (key.policy.len() + key.signature.len() + 96) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_params_are_removed_and_others_kept_in_order() {
        assert_eq!(query_without_signing("b=2&Expires=1&a=1&Signature=x&Key-Pair-Id=K"), "b=2&a=1");
        assert_eq!(query_without_signing("Policy=p&Signature=x&Key-Pair-Id=K"), "");
        assert!(matches!(query_without_signing("a=1&expires=2"), Cow::Borrowed("a=1&expires=2")));
        assert!(has_signing_params(Some("a=1&Signature=")));
        assert!(!has_signing_params(Some("a=1&signature=x")));
    }

    #[test]
    fn signing_cookies_are_removed() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; CloudFront-Policy=p"));
        h.append(header::COOKIE, HeaderValue::from_static("CloudFront-Signature=s; b=2; CloudFront-Key-Pair-Id=K"));
        remove_signing_cookies(&mut h);
        assert_eq!(h.get_all(header::COOKIE).iter().collect::<Vec<_>>(), ["a=1; b=2"]);
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("CloudFront-Expires=1"));
        remove_signing_cookies(&mut h);
        assert!(!h.contains_key(header::COOKIE));
    }

    #[test]
    fn resource_url_rebuilds_what_was_signed() {
        let h = HeaderMap::new();
        let req = SignedRequest {
            scheme: "https",
            authority: "media.example:8443",
            path: "/a/b.m3u8",
            query: Some("x=1&Expires=5&Signature=s&Key-Pair-Id=K&y=2"),
            headers: &h,
            client_ip: "127.0.0.1".parse().unwrap(),
            now: 0,
        };
        assert_eq!(resource_url(&req).unwrap(), "https://media.example:8443/a/b.m3u8?x=1&y=2");
    }

    #[test]
    fn denials_have_distinct_reasons() {
        use Denial::*;
        let all = [
            MissingSignature,
            MissingSignatureValue,
            MissingKeyPairId,
            MissingPolicy,
            CannedAndCustom,
            Ambiguous,
            MalformedExpires,
            MalformedPolicy,
            PolicyTooLarge,
            PolicyJson,
            PolicyUnsupported,
            PolicyNoDateLessThan,
            MalformedSignature,
            SignatureTooLarge,
            UnknownKey,
            Invalid,
            Expired,
            NotYetValid,
            SourceIp,
            Resource,
            NoHost,
        ];
        let reasons: std::collections::HashSet<&str> = all.iter().map(|d| d.reason()).collect();
        assert_eq!(reasons.len(), all.len());
        for d in all {
            assert_eq!(d.log_reason().replace("%20", " "), d.reason());
            assert!(!d.log_reason().contains(char::is_whitespace));
        }
    }
}
