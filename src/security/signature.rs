//! CloudFront's URL-safe base64, RSA public keys from PEM, and RSA-SHA1
//! (PKCS#1 v1.5) verification with ring.
//!
//! ring verifies with the PKCS#1 `RSAPublicKey` DER. OpenSSL writes public keys
//! as SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`) by default, so the RSAPublicKey
//! is taken out of the SPKI by a small, bounds-checked DER walk.

use ring::signature::{UnparsedPublicKey, RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Encodes in CloudFront's alphabet: standard base64 with `+`→`-`, `=`→`_`, `/`→`~`.
pub fn encode(bytes: &[u8]) -> String {
    encode_with(bytes, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-~", '_')
}

/// Standard base64 (RFC 4648 §4), padded.
pub fn encode_standard(bytes: &[u8]) -> String {
    encode_with(bytes, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", '=')
}

fn encode_with(bytes: &[u8], alphabet: &[u8; 64], pad: char) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push(pad);
            }
        }
    }
    out
}

/// Decodes CloudFront's base64. The standard alphabet's `+`, `/` and `=` are
/// accepted too; padding may be left out. `None` for anything else, including
/// non-zero trailing bits (every value has one encoding).
pub fn decode(s: &str) -> Option<Vec<u8>> {
    decode_bytes(s.bytes(), true)
}

/// Standard base64 (PEM bodies); ASCII white space is skipped.
fn decode_standard(s: &str) -> Option<Vec<u8>> {
    decode_bytes(s.bytes().filter(|b| !b.is_ascii_whitespace()), false)
}

fn decode_bytes(input: impl Iterator<Item = u8>, cloudfront: bool) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits, mut data, mut padding) = (0u32, 0u32, 0usize, 0usize);
    for c in input {
        if c == b'=' || (cloudfront && c == b'_') {
            padding += 1;
            continue;
        }
        if padding > 0 {
            return None; // data after padding
        }
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'-' if cloudfront => 62,
            b'~' if cloudfront => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        data += 1;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    let want_padding = (4 - data % 4) % 4;
    if bits == 6 || acc != 0 || (padding != 0 && padding != want_padding) {
        return None;
    }
    Some(out)
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The first PEM block of `text`: its label (`PUBLIC KEY`, ...) and DER bytes.
pub fn pem_block(text: &str) -> Result<(String, Vec<u8>), String> {
    let start = text.find("-----BEGIN ").ok_or("no PEM block (-----BEGIN ...-----)")?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----").ok_or("a PEM header line is not closed")?;
    let label = rest[..label_end].trim().to_string();
    let body_and_end = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let body_end = body_and_end.find(&end_marker).ok_or_else(|| format!("no {end_marker} line"))?;
    let body = &body_and_end[..body_end];
    if body.contains(':') {
        return Err("the PEM block has headers (an encrypted key?); give an unencrypted key".into());
    }
    let der = decode_standard(body).ok_or("the PEM body is not valid base64")?;
    Ok((label, der))
}

/// One DER element: tag, contents, and what follows it.
fn tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers are not used in keys
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None; // indefinite or absurd lengths
        }
        let len = rest[..n].iter().fold(0usize, |l, &b| (l << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if len > rest.len() {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
const NULL: u8 = 0x05;
/// 1.2.840.113549.1.1.1
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// The RSAPublicKey inside a SubjectPublicKeyInfo.
pub fn rsa_public_key_from_spki(spki: &[u8]) -> Result<&[u8], &'static str> {
    let bad = "not a SubjectPublicKeyInfo";
    let (tag, body, trailing) = tlv(spki).ok_or(bad)?;
    if tag != SEQUENCE || !trailing.is_empty() {
        return Err(bad);
    }
    let (tag, alg, rest) = tlv(body).ok_or(bad)?;
    if tag != SEQUENCE {
        return Err(bad);
    }
    let (tag, oid, params) = tlv(alg).ok_or(bad)?;
    if tag != OID || oid != RSA_ENCRYPTION {
        return Err("not an RSA key");
    }
    if !params.is_empty() {
        match tlv(params) {
            Some((NULL, [], [])) => {}
            _ => return Err(bad),
        }
    }
    let (tag, bits, trailing) = tlv(rest).ok_or(bad)?;
    if tag != BIT_STRING || !trailing.is_empty() {
        return Err(bad);
    }
    match bits.split_first() {
        Some((0, key)) => Ok(key),
        _ => Err(bad),
    }
}

/// Checks an RSAPublicKey (`SEQUENCE { modulus, publicExponent }`) and returns
/// the modulus size in bits. The limits are ring's for RSA-SHA1 verification.
fn check_rsa_public_key(der: &[u8]) -> Result<usize, &'static str> {
    let bad = "not an RSAPublicKey";
    let (tag, body, trailing) = tlv(der).ok_or(bad)?;
    if tag != SEQUENCE || !trailing.is_empty() {
        return Err(bad);
    }
    let (tag, n, rest) = tlv(body).ok_or(bad)?;
    let (tag2, e, trailing) = tlv(rest).ok_or(bad)?;
    if tag != INTEGER || tag2 != INTEGER || !trailing.is_empty() {
        return Err(bad);
    }
    let n = positive_integer(n).ok_or(bad)?;
    let e = positive_integer(e).ok_or(bad)?;
    let n_bits = bit_len(n);
    if !(1024..=8192).contains(&n_bits) {
        return Err("the RSA modulus must be 1024 to 8192 bits");
    }
    let e_value = if e.len() <= 8 { e.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)) } else { u64::MAX };
    if e_value < 3 || e_value % 2 == 0 || bit_len(e) > 33 {
        return Err("unsupported RSA public exponent");
    }
    Ok(n_bits)
}

/// The magnitude of a DER INTEGER, without leading zero bytes; `None` when it is
/// negative or zero.
fn positive_integer(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        return None;
    }
    let start = bytes.iter().position(|&b| b != 0)?;
    Some(&bytes[start..])
}

fn bit_len(magnitude: &[u8]) -> usize {
    match magnitude.first() {
        Some(&b) => (magnitude.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
        None => 0,
    }
}

static SERIAL: AtomicU64 = AtomicU64::new(1);

/// An RSA public key, ready for RSA-SHA1 verification.
#[derive(Clone)]
pub struct PublicKey {
    /// PKCS#1 RSAPublicKey DER.
    der: Arc<[u8]>,
    bits: usize,
    /// Unique within the process for each key loaded: names the key in the
    /// verified-signature cache, so a key removed by a reload is never trusted
    /// through an old entry.
    serial: u64,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(RSA {} bits)", self.bits)
    }
}

impl PublicKey {
    /// A PEM public key: `BEGIN PUBLIC KEY` (SubjectPublicKeyInfo, what
    /// `openssl rsa -pubout` writes) or `BEGIN RSA PUBLIC KEY` (PKCS#1).
    pub fn from_pem(text: &str) -> Result<PublicKey, String> {
        let (label, der) = pem_block(text)?;
        match label.as_str() {
            "PUBLIC KEY" => Ok(Self::from_pkcs1_der(rsa_public_key_from_spki(&der)?)?),
            "RSA PUBLIC KEY" => Ok(Self::from_pkcs1_der(&der)?),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => {
                Err("this is a private key; give the public key (openssl rsa -in key.pem -pubout)".into())
            }
            other => Err(format!("a {other:?} PEM block is not an RSA public key")),
        }
    }

    /// A PKCS#1 RSAPublicKey in DER.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<PublicKey, &'static str> {
        let bits = check_rsa_public_key(der)?;
        Ok(PublicKey { der: der.into(), bits, serial: SERIAL.fetch_add(1, Ordering::Relaxed) })
    }

    pub fn bits(&self) -> usize {
        self.bits
    }

    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// The same key material (whatever the serial).
    pub fn same_key(&self, other: &PublicKey) -> bool {
        self.der == other.der
    }

    /// RSA PKCS#1 v1.5 with SHA-1 over `message`, as CloudFront signs.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY, &self.der[..])
            .verify(message, signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_in_cloudfront_alphabet() {
        for len in 0..70 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 251) as u8).collect();
            let enc = encode(&data);
            assert!(!enc.contains(['+', '/', '=']), "{enc}");
            assert_eq!(decode(&enc).as_deref(), Some(&data[..]), "{enc}");
            // Without padding, and in the standard alphabet.
            assert_eq!(decode(enc.trim_end_matches('_')).as_deref(), Some(&data[..]));
            let std = enc.replace('-', "+").replace('~', "/").replace('_', "=");
            assert_eq!(decode(&std).as_deref(), Some(&data[..]));
        }
        assert_eq!(encode(b"\xfb\xff"), "-~8_");
        assert_eq!(encode(b"foob"), "Zm9vYg__");
        assert_eq!(encode_standard(b"\xfb\xff"), "+/8=");
        assert_eq!(encode_standard(b"foob"), "Zm9vYg==");
    }

    #[test]
    fn base64_rejects_garbage() {
        for bad in ["a", "Zm9vYg_", "Zm9vYg___", "Zm9v!", "Zm 9v", "Zm9vYh__", "_Zm9v", "Zm_9v", "é"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 128 {
            out.push(content.len() as u8);
        } else if content.len() < 256 {
            out.extend([0x81, content.len() as u8]);
        } else {
            out.extend([0x82, (content.len() >> 8) as u8, content.len() as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    fn synthetic_keys() -> (Vec<u8>, Vec<u8>) {
        let mut n = vec![0u8];
        n.extend(std::iter::repeat_n(0xc5u8, 256));
        let pkcs1 = der(SEQUENCE, &[der(INTEGER, &n), der(INTEGER, &[1, 0, 1])].concat());
        let alg = der(SEQUENCE, &[der(OID, RSA_ENCRYPTION), der(NULL, &[])].concat());
        let bits = [&[0u8][..], &pkcs1].concat();
        let spki = der(SEQUENCE, &[alg, der(BIT_STRING, &bits)].concat());
        (pkcs1, spki)
    }

    #[test]
    fn spki_walk_finds_the_rsa_key() {
        let (pkcs1, spki) = synthetic_keys();
        assert_eq!(rsa_public_key_from_spki(&spki), Ok(&pkcs1[..]));
        let key = PublicKey::from_pkcs1_der(&pkcs1).unwrap();
        assert_eq!(key.bits(), 2048);
        assert!(!key.verify(b"message", &[0u8; 256]));
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        let (pkcs1, spki) = synthetic_keys();
        for input in [&spki, &pkcs1] {
            for cut in 0..input.len() {
                assert!(rsa_public_key_from_spki(&input[..cut]).is_err());
                assert!(PublicKey::from_pkcs1_der(&input[..cut]).is_err());
            }
            for i in 0..input.len() {
                for x in [0x00u8, 0x80, 0xff, 0x1f] {
                    let mut v = input.clone();
                    v[i] ^= x;
                    let _ = rsa_public_key_from_spki(&v);
                    let _ = PublicKey::from_pkcs1_der(&v);
                }
            }
        }
        // Lengths that point past the end, indefinite lengths, huge lengths.
        for bad in [&[0x30u8, 0x85, 1, 0, 0, 0, 0][..], &[0x30, 0x80, 0, 0], &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]] {
            assert!(rsa_public_key_from_spki(bad).is_err());
        }
    }

    #[test]
    fn small_or_even_exponents_and_small_moduli_are_refused() {
        let n = [&[0u8][..], &[0xc5; 64]].concat();
        let small = der(SEQUENCE, &[der(INTEGER, &n), der(INTEGER, &[1, 0, 1])].concat());
        assert!(PublicKey::from_pkcs1_der(&small).unwrap_err().contains("1024"));
        let n = [&[0u8][..], &[0xc5; 256]].concat();
        let even = der(SEQUENCE, &[der(INTEGER, &n), der(INTEGER, &[1, 0, 0])].concat());
        assert!(PublicKey::from_pkcs1_der(&even).is_err());
    }

    #[test]
    fn pem_blocks() {
        let (pkcs1, spki) = synthetic_keys();
        let pem = |label: &str, der: &[u8]| {
            let b = encode(der).replace('-', "+").replace('~', "/").replace('_', "=");
            let lines: Vec<&str> = b.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
            format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
        };
        assert_eq!(PublicKey::from_pem(&pem("PUBLIC KEY", &spki)).unwrap().bits(), 2048);
        assert_eq!(PublicKey::from_pem(&pem("RSA PUBLIC KEY", &pkcs1)).unwrap().bits(), 2048);
        assert!(PublicKey::from_pem(&pem("PRIVATE KEY", &pkcs1)).unwrap_err().contains("private key"));
        assert!(PublicKey::from_pem(&pem("CERTIFICATE", &pkcs1)).is_err());
        assert!(PublicKey::from_pem("hello").is_err());
        assert!(PublicKey::from_pem("-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----").is_err());
        assert!(PublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n").is_err());
    }
}
