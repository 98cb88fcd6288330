//! Field-level encryption: the configuration model (public keys, profiles,
//! configurations) and the AWS Encryption SDK message each encrypted field
//! value becomes. `fle_form` applies a profile to a form body.
//!
//! The message is format version 2 with the committing algorithm suite 0x0478
//! (AES-256-GCM, HKDF-SHA512 key derivation, key commitment, no signature),
//! which the Encryption SDKs decrypt under their default commitment policy.
//! Its one data key is wrapped with RSA-OAEP (SHA-256, MGF1 with SHA-256) for
//! a raw RSA master key whose provider id is the profile's provider id and
//! whose key id is the public key's id. The body is framed (4096-byte
//! frames, deterministic IVs) as the SDKs frame it. See
//! docs/field-level-encryption.md.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::hkdf;
use rsa::rand_core::{OsRng, RngCore};
use rsa::sha2::Sha256;
use rsa::{Oaep, RsaPublicKey};
use std::fmt;
use std::sync::Arc;

/// `AES_256_GCM_HKDF_SHA512_COMMIT_KEY`.
pub const ALGORITHM_ID: u16 = 0x0478;
const VERSION: u8 = 2;
const CONTENT_FRAMED: u8 = 2;
/// The SDKs' default frame length.
pub const FRAME_LENGTH: usize = 4096;
const KEY_LEN: usize = 32;
const IV_LEN: usize = 12;
const FRAME_AAD: &[u8] = b"AWSKMSEncryptionClient Frame";
const FINAL_FRAME_AAD: &[u8] = b"AWSKMSEncryptionClient Final Frame";

/// The most fields a profile names (CloudFront's quota).
pub const MAX_FIELD_PATTERNS: usize = 10;
/// The longest field name pattern (CloudFront's quota).
pub const MAX_PATTERN_LEN: usize = 128;
/// The only body format field-level encryption reads.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
/// The query argument that chooses a profile for one request.
pub const PROFILE_QUERY_ARG: &str = "fle-profile";

/// A public key that profiles encrypt with (CloudFront's `PublicKey`):
/// RSA 2048, named by its id.
pub struct FlePublicKey {
    pub id: String,
    pub key: RsaPublicKey,
}

impl fmt::Debug for FlePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlePublicKey({:?})", self.id)
    }
}

impl FlePublicKey {
    /// A PEM public key (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`) of
    /// 2048 bits, as CloudFront requires for field-level encryption.
    pub fn from_pem(id: &str, text: &str) -> Result<FlePublicKey, String> {
        use rsa::pkcs1::DecodeRsaPublicKey;
        use rsa::traits::PublicKeyParts;
        let (label, der) = super::signature::pem_block(text)?;
        let pkcs1 = match label.as_str() {
            "PUBLIC KEY" => super::signature::rsa_public_key_from_spki(&der)?,
            "RSA PUBLIC KEY" => &der[..],
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => {
                return Err("this is a private key; give the public key (openssl rsa -in key.pem -pubout)".into())
            }
            other => return Err(format!("a {other:?} PEM block is not an RSA public key")),
        };
        let key = RsaPublicKey::from_pkcs1_der(pkcs1).map_err(|e| format!("not an RSA public key: {e}"))?;
        let bits = key.n().bits();
        if bits != 2048 {
            return Err(format!("field-level encryption takes an RSA 2048 key; this one has {bits} bits"));
        }
        Ok(FlePublicKey { id: id.to_string(), key })
    }
}

/// A field name pattern: an exact name, or a prefix followed by `*`.
/// Case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldPattern {
    Exact(String),
    Prefix(String),
}

impl FieldPattern {
    /// `name`, or `prefix*`; `*` nowhere else.
    pub fn parse(s: &str) -> Result<FieldPattern, String> {
        if s.is_empty() {
            return Err("a field name pattern cannot be empty".into());
        }
        if s.len() > MAX_PATTERN_LEN {
            return Err(format!("a field name pattern has at most {MAX_PATTERN_LEN} characters"));
        }
        let (body, prefix) = match s.strip_suffix('*') {
            Some(p) => (p, true),
            None => (s, false),
        };
        if prefix && body.is_empty() {
            return Err("a field name pattern names at least one character before `*`".into());
        }
        if body.contains('*') {
            return Err(format!("{s:?}: `*` may only end a field name pattern"));
        }
        if body.bytes().any(|b| b.is_ascii_control()) {
            return Err(format!("{s:?}: a field name pattern has no control characters"));
        }
        Ok(if prefix { FieldPattern::Prefix(body.to_string()) } else { FieldPattern::Exact(body.to_string()) })
    }

    pub fn matches(&self, name: &[u8]) -> bool {
        match self {
            FieldPattern::Exact(n) => name == n.as_bytes(),
            FieldPattern::Prefix(p) => name.starts_with(p.as_bytes()),
        }
    }

    /// As written.
    pub fn text(&self) -> String {
        match self {
            FieldPattern::Exact(n) => n.clone(),
            FieldPattern::Prefix(p) => format!("{p}*"),
        }
    }
}

/// A field-level encryption profile: which form fields are encrypted, with
/// which key, for which master key provider.
#[derive(Debug)]
pub struct FleProfile {
    pub id: String,
    /// The master key provider id an origin names when it decrypts.
    pub provider_id: String,
    pub key: Arc<FlePublicKey>,
    pub fields: Vec<FieldPattern>,
}

impl FleProfile {
    pub fn encrypts(&self, name: &[u8]) -> bool {
        self.fields.iter().any(|p| p.matches(name))
    }
}

/// A field-level encryption configuration (what a cache behavior's
/// `field_level_encryption_id` names): which profile a request uses.
#[derive(Debug)]
pub struct FleConfig {
    pub id: String,
    /// `application/x-www-form-urlencoded` is listed (the one content type
    /// field-level encryption reads).
    pub form_listed: bool,
    /// The profile for form bodies when the request names none.
    pub form_profile: Option<Arc<FleProfile>>,
    pub forward_when_content_type_is_unknown: bool,
    /// `fle-profile` query argument values and the profiles they choose.
    pub query_arg_profiles: Vec<(String, Arc<FleProfile>)>,
    pub forward_when_query_arg_profile_is_unknown: bool,
}

/// What becomes of one request under a configuration.
#[derive(Debug)]
pub enum Selection<'a> {
    /// Encrypt the form's fields with this profile.
    Encrypt(&'a FleProfile),
    /// Forward the body as it came.
    Forward,
    /// Refuse the request: 400 (or 415 for the content type), with why.
    Refuse(http::StatusCode, String),
}

impl FleConfig {
    /// The profile for a request with this query string and `Content-Type`.
    pub fn select(&self, query: Option<&str>, content_type: Option<&str>) -> Selection<'_> {
        let media = content_type.map(|c| c.split(';').next().unwrap_or("").trim());
        let is_form = media.is_some_and(|m| m.eq_ignore_ascii_case(FORM_CONTENT_TYPE));
        if !(is_form && self.form_listed) {
            if self.forward_when_content_type_is_unknown {
                return Selection::Forward;
            }
            let shown = media.filter(|m| !m.is_empty()).unwrap_or("none");
            return Selection::Refuse(
                http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "field-level encryption is configured for {FORM_CONTENT_TYPE} request bodies; \
                     this one's content type is {shown}"
                ),
            );
        }
        let asked = query.and_then(|q| {
            q.split('&').find_map(|p| {
                let (n, v) = p.split_once('=').unwrap_or((p, ""));
                (n == PROFILE_QUERY_ARG).then_some(v)
            })
        });
        if let Some(value) = asked {
            if let Some((_, p)) = self.query_arg_profiles.iter().find(|(v, _)| v == value) {
                return Selection::Encrypt(p);
            }
            if !self.forward_when_query_arg_profile_is_unknown {
                return Selection::Refuse(
                    http::StatusCode::BAD_REQUEST,
                    format!("the {PROFILE_QUERY_ARG} query argument names no field-level encryption profile"),
                );
            }
        }
        match &self.form_profile {
            Some(p) => Selection::Encrypt(p),
            None => Selection::Forward,
        }
    }
}

/// Encrypts `plaintext` into one Encryption SDK message for `key`, wrapped
/// for the raw RSA master key (`provider_id`, `key.id`).
pub fn encrypt_message(key: &FlePublicKey, provider_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, String> {
    let mut rng = OsRng;
    let mut data_key = [0u8; KEY_LEN];
    let mut message_id = [0u8; 32];
    rng.try_fill_bytes(&mut data_key).map_err(|e| format!("no random numbers: {e}"))?;
    rng.try_fill_bytes(&mut message_id).map_err(|e| format!("no random numbers: {e}"))?;
    let wrapped = key
        .key
        .encrypt(&mut rng, Oaep::new::<Sha256>(), &data_key)
        .map_err(|e| format!("cannot wrap the data key: {e}"))?;

    let mut info = ALGORITHM_ID.to_be_bytes().to_vec();
    info.extend_from_slice(b"DERIVEKEY");
    let encryption_key = hkdf_sha512(&data_key, &message_id, &info)?;
    let commitment = hkdf_sha512(&data_key, &message_id, b"COMMITKEY")?;
    let aead = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &encryption_key).map_err(|_| "cannot make the AES-256-GCM key".to_string())?,
    );

    let frames = plaintext.len().div_ceil(FRAME_LENGTH).max(1);
    let mut out = Vec::with_capacity(200 + wrapped.len() + plaintext.len() + frames * (IV_LEN + 24));
    // Header: version, suite, message id, no encryption context, one data key.
    out.push(VERSION);
    out.extend_from_slice(&ALGORITHM_ID.to_be_bytes());
    out.extend_from_slice(&message_id);
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    for field in [provider_id.as_bytes(), key.id.as_bytes(), &wrapped[..]] {
        let len = u16::try_from(field.len()).map_err(|_| "a data key field is longer than 65535 bytes".to_string())?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(field);
    }
    out.push(CONTENT_FRAMED);
    out.extend_from_slice(&(FRAME_LENGTH as u32).to_be_bytes());
    out.extend_from_slice(&commitment);
    // Header authentication: the tag over the header, IV all zeros.
    let tag = seal(&aead, [0u8; IV_LEN], &out, &mut [])?;
    out.extend_from_slice(&tag);

    // Frames: full frames, then a final frame with the rest (maybe empty).
    let mut rest = plaintext;
    let mut seq: u32 = 1;
    loop {
        let last = rest.len() <= FRAME_LENGTH;
        let (chunk, tail) = rest.split_at(rest.len().min(FRAME_LENGTH));
        let mut iv = [0u8; IV_LEN];
        iv[IV_LEN - 4..].copy_from_slice(&seq.to_be_bytes());
        let mut aad = Vec::with_capacity(32 + FINAL_FRAME_AAD.len() + 12);
        aad.extend_from_slice(&message_id);
        aad.extend_from_slice(if last { FINAL_FRAME_AAD } else { FRAME_AAD });
        aad.extend_from_slice(&seq.to_be_bytes());
        aad.extend_from_slice(&(chunk.len() as u64).to_be_bytes());
        let mut sealed = chunk.to_vec();
        let tag = seal(&aead, iv, &aad, &mut sealed)?;
        if last {
            out.extend_from_slice(&u32::MAX.to_be_bytes());
        }
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&iv);
        if last {
            out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        }
        out.extend_from_slice(&sealed);
        out.extend_from_slice(&tag);
        if last {
            return Ok(out);
        }
        rest = tail;
        seq = seq.checked_add(1).ok_or_else(|| "too many frames".to_string())?;
    }
}

fn seal(key: &LessSafeKey, iv: [u8; IV_LEN], aad: &[u8], in_out: &mut [u8]) -> Result<[u8; 16], String> {
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad), in_out)
        .map_err(|_| "AES-256-GCM sealing failed".to_string())?;
    let mut t = [0u8; 16];
    t.copy_from_slice(tag.as_ref());
    Ok(t)
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA512 (RFC 5869) of `ikm`, 32 bytes.
fn hkdf_sha512(ikm: &[u8], salt: &[u8], info: &[u8]) -> Result<[u8; KEY_LEN], String> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA512, salt).extract(ikm);
    let infos = [info];
    let okm = prk.expand(&infos, Len(KEY_LEN)).map_err(|_| "HKDF expansion failed".to_string())?;
    let mut out = [0u8; KEY_LEN];
    okm.fill(&mut out).map_err(|_| "HKDF expansion failed".to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = FieldPattern::parse("card*").unwrap();
        assert!(p.matches(b"card") && p.matches(b"cardnumber") && !p.matches(b"Card"));
        let e = FieldPattern::parse("cvv").unwrap();
        assert!(e.matches(b"cvv") && !e.matches(b"cvv2"));
        assert!(FieldPattern::parse("a*b").is_err());
        assert!(FieldPattern::parse("").is_err());
        assert!(FieldPattern::parse("*").is_err());
        assert!(FieldPattern::parse(&"x".repeat(129)).is_err());
        assert_eq!(FieldPattern::parse("card*").unwrap().text(), "card*");
    }

    #[test]
    fn hkdf_sha512_matches_a_reference_implementation() {
        // Computed with the Python cryptography package's HKDF (SHA-512).
        let hex = |b: [u8; 32]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let derive = hkdf_sha512(b"ikm", b"salt", b"\x04\x78DERIVEKEY").unwrap();
        assert_eq!(hex(derive), "771bdec4a9c298b98dd5d01a8a88bab77747f0073faeb6b9c39c3606d803eeb7");
        let commit = hkdf_sha512(b"ikm", b"salt", b"COMMITKEY").unwrap();
        assert_eq!(hex(commit), "7e959e52fe78b7e2d422f5e2a9b3ebf998e51275c0475e43157caa0a534a03f6");
    }

    /// Reads a message back as the SDKs do: data key unwrapped, keys derived,
    /// commitment compared, header tag and every frame verified.
    fn decrypt(m: &[u8], private: &rsa::RsaPrivateKey) -> Result<Vec<u8>, &'static str> {
        use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey};
        struct Reader<'a>(&'a [u8], usize);
        impl<'a> Reader<'a> {
            fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
                let s = self.0.get(self.1..self.1.saturating_add(n)).ok_or("short")?;
                self.1 += n;
                Ok(s)
            }
            fn len16(&mut self) -> Result<usize, &'static str> {
                let b = self.take(2)?;
                Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
            }
        }
        let mut r = Reader(m, 0);
        let u32_at = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if r.take(1)? != [2] {
            return Err("version");
        }
        if r.take(2)? != ALGORITHM_ID.to_be_bytes() {
            return Err("suite");
        }
        let message_id = r.take(32)?.to_vec();
        if r.take(2)? != [0, 0] {
            return Err("encryption context");
        }
        if r.take(2)? != [0, 1] {
            return Err("data key count");
        }
        let n = r.len16()?;
        let provider = r.take(n)?.to_vec();
        let n = r.len16()?;
        let key_id = r.take(n)?.to_vec();
        let n = r.len16()?;
        let wrapped = r.take(n)?.to_vec();
        if (&provider[..], &key_id[..]) != (&b"prov"[..], &b"K1"[..]) {
            return Err("master key");
        }
        if r.take(1)? != [CONTENT_FRAMED] {
            return Err("content type");
        }
        let frame_len = u32_at(r.take(4)?) as usize;
        let commitment = r.take(32)?.to_vec();
        let header_end = r.1;
        let header_tag = r.take(16)?.to_vec();
        let data_key = private.decrypt(Oaep::new::<Sha256>(), &wrapped).map_err(|_| "unwrap")?;
        let mut info = ALGORITHM_ID.to_be_bytes().to_vec();
        info.extend_from_slice(b"DERIVEKEY");
        let key = hkdf_sha512(&data_key, &message_id, &info).unwrap();
        if hkdf_sha512(&data_key, &message_id, b"COMMITKEY").unwrap()[..] != commitment[..] {
            return Err("commitment");
        }
        let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap());
        let open = |iv: &[u8], aad: &[u8], ct: &[u8], tag: &[u8]| -> Result<Vec<u8>, &'static str> {
            let mut buf = [ct, tag].concat();
            let n = Nonce::try_assume_unique_for_key(iv).map_err(|_| "iv")?;
            let out = aead.open_in_place(n, Aad::from(aad), &mut buf).map_err(|_| "tag")?;
            Ok(out.to_vec())
        };
        open(&[0; IV_LEN], &m[..header_end], &[], &header_tag)?;
        let mut plain = Vec::new();
        loop {
            let mut seq = r.take(4)?.to_vec();
            let last = seq == [0xff; 4];
            if last {
                seq = r.take(4)?.to_vec();
            }
            let iv = r.take(IV_LEN)?.to_vec();
            let len = if last { u32_at(r.take(4)?) as usize } else { frame_len };
            let ct = r.take(len)?.to_vec();
            let tag = r.take(16)?.to_vec();
            let aad =
                [&message_id[..], if last { FINAL_FRAME_AAD } else { FRAME_AAD }, &seq, &(len as u64).to_be_bytes()]
                    .concat();
            plain.extend(open(&iv, &aad, &ct, &tag)?);
            if last {
                return if r.1 == m.len() { Ok(plain) } else { Err("trailing bytes") };
            }
        }
    }

    #[test]
    fn messages_decrypt_frame_by_frame_and_any_flipped_byte_is_caught() {
        use rsa::traits::PublicKeyParts;
        let private = rsa::RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        let key = FlePublicKey { id: "K1".into(), key: private.to_public_key() };
        assert_eq!(key.key.n().bits(), 2048);
        for len in [0, 1, FRAME_LENGTH - 1, FRAME_LENGTH, FRAME_LENGTH + 1, 3 * FRAME_LENGTH + 7] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let m = encrypt_message(&key, "prov", &plain).unwrap();
            assert_eq!(decrypt(&m, &private).unwrap(), plain, "{len} bytes");
            // Two messages of one value differ (own data key and message id).
            assert_ne!(encrypt_message(&key, "prov", &plain).unwrap(), m);
        }
        let m = encrypt_message(&key, "prov", b"4111 1111").unwrap();
        for at in [3, 40, m.len() - 80, m.len() - 50, m.len() - 20, m.len() - 1] {
            let mut bad = m.clone();
            bad[at] ^= 0x80;
            assert!(decrypt(&bad, &private).is_err(), "byte {at} flipped");
        }
    }
}
