//! Field-level encryption of an `application/x-www-form-urlencoded` body:
//! each field a profile names gets, in place of its value, the base64 of an
//! Encryption SDK message whose plaintext is the value as the viewer meant it
//! (percent-escapes and `+` decoded, as a form parser would). Every other
//! byte of the body, unnamed fields included, reaches the origin unchanged.

use super::fle::{encrypt_message, FleProfile};

/// The largest body field-level encryption reads (CloudFront's quota: 1 MB).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// The longest field value it encrypts (CloudFront's quota: 16 KB).
pub const MAX_FIELD_BYTES: usize = 16 << 10;
/// The most fields one request has encrypted (CloudFront: up to 10).
pub const MAX_ENCRYPTED_FIELDS: usize = 10;

/// Why a body could not be encrypted. All but `Internal` are the viewer's.
#[derive(Debug, PartialEq, Eq)]
pub enum FormError {
    /// Not a form body: a bad percent-escape, with where.
    Malformed(String),
    /// A named field's value is over `MAX_FIELD_BYTES`.
    FieldTooLong(String),
    /// More than `MAX_ENCRYPTED_FIELDS` fields matched.
    TooManyFields(usize),
    /// Encryption itself failed.
    Internal(String),
}

impl std::fmt::Display for FormError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormError::Malformed(m) => write!(f, "the form body is malformed: {m}"),
            FormError::FieldTooLong(name) => write!(
                f,
                "the value of field {name:?} is longer than {} KB, the most field-level encryption encrypts",
                MAX_FIELD_BYTES >> 10
            ),
            FormError::TooManyFields(n) => write!(
                f,
                "{n} fields of the form are to be encrypted; field-level encryption encrypts at most \
                 {MAX_ENCRYPTED_FIELDS} in a request"
            ),
            FormError::Internal(m) => write!(f, "field-level encryption failed: {m}"),
        }
    }
}

/// The body with each field `profile` names encrypted; `None` when no field
/// matched (the body goes as it came).
pub fn encrypt_form(body: &[u8], profile: &FleProfile) -> Result<Option<Vec<u8>>, FormError> {
    // Check everything before the first (costly) encryption.
    let mut named = Vec::new();
    for (i, pair) in body.split(|&b| b == b'&').enumerate() {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &[][..]),
        };
        let name = decode(name).map_err(|m| FormError::Malformed(format!("field {}: {m}", i + 1)))?;
        let value = decode(value).map_err(|m| FormError::Malformed(format!("field {}: {m}", i + 1)))?;
        if !pair.is_empty() && profile.encrypts(&name) {
            if value.len() > MAX_FIELD_BYTES {
                return Err(FormError::FieldTooLong(String::from_utf8_lossy(&name).into_owned()));
            }
            named.push((i, value));
        }
    }
    if named.is_empty() {
        return Ok(None);
    }
    if named.len() > MAX_ENCRYPTED_FIELDS {
        return Err(FormError::TooManyFields(named.len()));
    }
    let mut out = Vec::with_capacity(body.len() + named.len() * 700);
    let mut next = named.into_iter().peekable();
    for (i, pair) in body.split(|&b| b == b'&').enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        match next.next_if(|(j, _)| *j == i) {
            Some((_, value)) => {
                let eq = pair.iter().position(|&b| b == b'=').unwrap_or(pair.len());
                out.extend_from_slice(&pair[..eq]);
                out.push(b'=');
                let message =
                    encrypt_message(&profile.key, &profile.provider_id, &value).map_err(FormError::Internal)?;
                push_form_base64(&mut out, &message);
            }
            None => out.extend_from_slice(pair),
        }
    }
    Ok(Some(out))
}

/// A form component decoded: `+` is a space, `%XX` a byte.
fn decode(s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
                match (hex(s.get(i + 1)), hex(s.get(i + 2))) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => {
                        let shown = String::from_utf8_lossy(&s[i..s.len().min(i + 3)]).into_owned();
                        return Err(format!("{shown:?} is not a percent-escape (%XX)"));
                    }
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

/// Standard base64, with the three characters a form decoder would alter
/// (`+`, `/`, `=`) percent-escaped.
fn push_form_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    for c in super::signature::encode(bytes).bytes() {
        match c {
            b'-' => out.extend_from_slice(b"%2B"),
            b'~' => out.extend_from_slice(b"%2F"),
            b'_' => out.extend_from_slice(b"%3D"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_form_components() {
        assert_eq!(decode(b"a+b%2Bc%C3%A9").unwrap(), "a b+cé".as_bytes());
        assert!(decode(b"100%").is_err());
        assert!(decode(b"%zz").is_err());
        assert!(decode(b"%4").is_err());
    }

    #[test]
    fn base64_in_a_form_survives_decoding() {
        let mut out = Vec::new();
        push_form_base64(&mut out, &[0xfb, 0xff, 0xbf, 0x00]);
        // "+/+/AA==" in standard base64.
        assert_eq!(out, b"%2B%2F%2B%2FAA%3D%3D");
        assert_eq!(decode(&out).unwrap(), b"+/+/AA==");
    }
}
