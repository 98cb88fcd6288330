//! Signing: CloudFront signed URLs and signed cookies with an RSA private key,
//! for `mediaedge sign` (and the tests).
//!
//! ring does not sign with SHA-1, which CloudFront's scheme requires; the `rsa`
//! crate does (see docs/dependencies.md). PKCS#1 v1.5 signatures are
//! deterministic: the same key and policy always give the same signature.

use super::policy::{self, Policy};
use super::signature;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use sha1::{Digest, Sha1};
use std::path::PathBuf;

/// An RSA private key for signing.
pub struct PrivateKey(rsa::RsaPrivateKey);

impl PrivateKey {
    /// PEM: `BEGIN RSA PRIVATE KEY` (PKCS#1) or `BEGIN PRIVATE KEY` (PKCS#8).
    pub fn from_pem(text: &str) -> Result<PrivateKey, String> {
        let (label, der) = signature::pem_block(text)?;
        let key = match label.as_str() {
            "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_der(&der).map_err(|e| e.to_string()),
            "PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs8_der(&der).map_err(|e| e.to_string()),
            "ENCRYPTED PRIVATE KEY" => {
                return Err("the key is encrypted; decrypt it first (openssl rsa -in key.pem -out plain.pem)".into())
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" => return Err("this is a public key; signing needs the private key".into()),
            other => return Err(format!("a {other:?} PEM block is not an RSA private key")),
        };
        key.map(PrivateKey).map_err(|e| format!("not an RSA private key: {e}"))
    }

    /// RSA PKCS#1 v1.5 with SHA-1.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let digest = Sha1::digest(message);
        self.0.sign(rsa::Pkcs1v15Sign::new::<Sha1>(), &digest).map_err(|e| format!("signing failed: {e}"))
    }
}

/// What a signature allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Terms {
    /// A canned policy: one URL until `expires` (epoch seconds).
    Canned { expires: u64 },
    /// A custom policy document (JSON), signed byte for byte.
    Custom { policy: String },
}

/// The signing values in CloudFront's order, without the `CloudFront-` prefix:
/// `Expires` or `Policy`, then `Signature`, then `Key-Pair-Id`.
pub fn sign_values(
    key: &PrivateKey,
    key_pair_id: &str,
    resource: Option<&str>,
    terms: &Terms,
) -> Result<Vec<(&'static str, String)>, String> {
    let (first, signed) = match terms {
        Terms::Canned { expires } => {
            let resource = resource.ok_or("a canned policy needs the URL it is for")?;
            (("Expires", expires.to_string()), policy::canned(resource, *expires))
        }
        Terms::Custom { policy } => (("Policy", signature::encode(policy.as_bytes())), policy.clone()),
    };
    let sig = key.sign(signed.as_bytes())?;
    Ok(vec![first, ("Signature", signature::encode(&sig)), ("Key-Pair-Id", key_pair_id.to_string())])
}

/// `url` with the signing parameters appended, as AWS's signers write it.
pub fn signed_url(url: &str, key_pair_id: &str, key: &PrivateKey, terms: &Terms) -> Result<String, String> {
    let values = sign_values(key, key_pair_id, Some(url), terms)?;
    let params: Vec<String> = values.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{separator}{}", params.join("&")))
}

/// The signed cookies (name, value): `resource` is the URL of a canned policy.
pub fn signed_cookies(
    resource: Option<&str>,
    key_pair_id: &str,
    key: &PrivateKey,
    terms: &Terms,
) -> Result<Vec<(String, String)>, String> {
    Ok(sign_values(key, key_pair_id, resource, terms)?
        .into_iter()
        .map(|(n, v)| (format!("CloudFront-{n}"), v))
        .collect())
}

/// A policy document without the white space outside its strings, as
/// CloudFront asks policies to be signed.
pub fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

/// `mediaedge sign`.
#[derive(clap::Subcommand)]
pub enum SignCommand {
    /// Print a signed URL.
    Url(SignArgs),
    /// Print signed cookies, as three Set-Cookie lines.
    Cookies(SignArgs),
}

/// A canned policy: --expires alone. A custom policy: --expires with any of
/// --ip, --not-before, --resource; or a whole policy with --policy-file.
#[derive(clap::Args)]
pub struct SignArgs {
    /// The public key's id in the trusted key group (the Key-Pair-Id).
    #[arg(long, value_name = "ID")]
    pub key_pair_id: String,
    /// The RSA private key, PEM ("BEGIN RSA PRIVATE KEY" or "BEGIN PRIVATE KEY").
    #[arg(long, value_name = "FILE")]
    pub private_key: PathBuf,
    /// The URL viewers request (scheme, host as they type it, path, query).
    /// Cookies: the URL of a canned policy, or the default resource of a custom one.
    #[arg(long)]
    pub url: Option<String>,
    /// Expiry in epoch seconds.
    #[arg(long, value_name = "EPOCH")]
    pub expires: Option<u64>,
    /// A custom policy document (JSON); white space outside strings is removed.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["expires", "ip", "not_before", "resource"])]
    pub policy_file: Option<PathBuf>,
    /// Custom policy: only viewers from this range (CIDR, or one address).
    #[arg(long, value_name = "CIDR", requires = "expires")]
    pub ip: Option<String>,
    /// Custom policy: not valid before this time (epoch seconds).
    #[arg(long, value_name = "EPOCH", requires = "expires")]
    pub not_before: Option<u64>,
    /// Custom policy: the Resource, with `*` and `?` wildcards (default: --url).
    #[arg(long, value_name = "PATTERN", requires = "expires")]
    pub resource: Option<String>,
}

/// A failed `mediaedge sign`: the exit code (2 bad arguments, 1 otherwise) and why.
#[derive(Debug)]
pub struct SignError {
    pub code: u8,
    pub message: String,
}

fn usage(message: impl Into<String>) -> SignError {
    SignError { code: 2, message: message.into() }
}

fn failure(message: impl Into<String>) -> SignError {
    SignError { code: 1, message: message.into() }
}

impl SignArgs {
    fn terms(&self) -> Result<Terms, SignError> {
        if let Some(file) = &self.policy_file {
            let text =
                std::fs::read_to_string(file).map_err(|e| failure(format!("cannot read {}: {e}", file.display())))?;
            let policy = compact_json(&text);
            Policy::parse_custom(policy.as_bytes())
                .map_err(|d| usage(format!("{}: {}", file.display(), d.reason())))?;
            if policy.len() > super::MAX_POLICY_BYTES {
                return Err(usage(format!("{}: the policy is over {} bytes", file.display(), super::MAX_POLICY_BYTES)));
            }
            return Ok(Terms::Custom { policy });
        }
        let Some(expires) = self.expires else {
            return Err(usage("give --expires EPOCH (with --ip, --not-before or --resource for a custom policy), or --policy-file FILE"));
        };
        if self.ip.is_none() && self.not_before.is_none() && self.resource.is_none() {
            return Ok(Terms::Canned { expires });
        }
        let resource = self
            .resource
            .as_deref()
            .or(self.url.as_deref())
            .ok_or_else(|| usage("a custom policy needs --resource or --url"))?;
        if let Some(ip) = &self.ip {
            if policy::Cidr::parse(ip).is_none() {
                return Err(usage(format!("--ip {ip:?} is not an address or a CIDR range")));
            }
        }
        if self.not_before.is_some_and(|t| t >= expires) {
            return Err(usage("--not-before must be earlier than --expires"));
        }
        Ok(Terms::Custom { policy: policy::custom(resource, expires, self.ip.as_deref(), self.not_before) })
    }

    fn key(&self) -> Result<PrivateKey, SignError> {
        let text = std::fs::read_to_string(&self.private_key)
            .map_err(|e| failure(format!("cannot read {}: {e}", self.private_key.display())))?;
        PrivateKey::from_pem(&text).map_err(|e| failure(format!("{}: {e}", self.private_key.display())))
    }

    fn check_key_pair_id(&self) -> Result<(), SignError> {
        let id = &self.key_pair_id;
        let ok =
            !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if ok {
            Ok(())
        } else {
            Err(usage("--key-pair-id must be 1 to 128 letters, digits, '-', '_' or '.'"))
        }
    }
}

/// Runs `mediaedge sign url|cookies`: what to print, or why not.
pub fn run(command: &SignCommand) -> Result<String, SignError> {
    match command {
        SignCommand::Url(args) => {
            args.check_key_pair_id()?;
            let url = args.url.as_deref().ok_or_else(|| usage("sign url needs --url"))?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(usage("--url must start with http:// or https://"));
            }
            let terms = args.terms()?;
            let key = args.key()?;
            signed_url(url, &args.key_pair_id, &key, &terms).map_err(failure)
        }
        SignCommand::Cookies(args) => {
            args.check_key_pair_id()?;
            let terms = args.terms()?;
            let resource = args.url.as_deref();
            if matches!(terms, Terms::Canned { .. }) && resource.is_none() {
                return Err(usage("canned cookies need --url (the one URL they allow)"));
            }
            let key = args.key()?;
            let secure = args.resource.as_deref().or(resource).is_some_and(|u| u.starts_with("https"));
            let attributes = if secure { "; Path=/; Secure; HttpOnly" } else { "; Path=/; HttpOnly" };
            let cookies = signed_cookies(resource, &args.key_pair_id, &key, &terms).map_err(failure)?;
            Ok(cookies.iter().map(|(n, v)| format!("Set-Cookie: {n}={v}{attributes}")).collect::<Vec<_>>().join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_json_keeps_strings() {
        assert_eq!(
            compact_json("{\n  \"Statement\": [ { \"Resource\" : \"http://h/a b\\\" c\" } ]\n}\n"),
            "{\"Statement\":[{\"Resource\":\"http://h/a b\\\" c\"}]}"
        );
    }

    #[test]
    fn private_key_errors_are_clear() {
        assert!(PrivateKey::from_pem("nothing").is_err());
        let e = PrivateKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").err().unwrap();
        assert!(e.contains("public key"), "{e}");
        let e = PrivateKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").err().unwrap();
        assert!(e.contains("not an RSA private key"), "{e}");
    }
}
