//! S3 origins: the bucket, its region, and the credentials the edge signs
//! with (docs/s3-origins.md). Secrets are held in [`Secret`], which never
//! prints its value; configuration documents shown or exported have them
//! replaced by `***` ([`redact_document`]).

use super::{ConfigError, Distribution, HttpOriginConfig, Place, Slot};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What redacted documents show in place of a secret.
pub const REDACTED: &str = "***";

/// A secret value: its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// An access key: its id (not secret: S3 names it in its errors), the
/// secret key, an optional session token, and where they were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// "the configuration", "the environment", or a file and profile.
    pub source: String,
}

/// `[[distributions.origins]]` with an `s3` table.
#[derive(Debug, Clone)]
pub struct S3OriginConfig {
    /// The endpoint as an HTTP origin: path-style (`/bucket` as the path
    /// prefix) when an endpoint is given, virtual-hosted otherwise.
    pub http: HttpOriginConfig,
    pub bucket: String,
    pub region: String,
    /// Credentials written in the configuration.
    pub inline: Option<S3Credentials>,
    /// `credentials_file` as written (made absolute).
    pub credentials_file: Option<PathBuf>,
    /// The profile in a credentials file (default: `AWS_PROFILE`, else `default`).
    pub profile: Option<String>,
    /// Where the `s3` table is written (for errors).
    pub at: Place,
    /// The credentials found, filled by the materialise step.
    pub credentials: Slot<Arc<S3Credentials>>,
}

/// Reads a file (the materialise step's reader, or the file system).
pub type ReadFile<'a> = dyn FnMut(&Path) -> Result<Arc<[u8]>, String> + 'a;

/// The credentials of an S3 origin: in the configuration, else in
/// `credentials_file`, else in the environment (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), else in the shared
/// credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`).
pub fn find_credentials(
    o: &S3OriginConfig,
    env: &dyn Fn(&str) -> Option<String>,
    read: &mut ReadFile,
) -> Result<S3Credentials, ConfigError> {
    if let Some(c) = &o.inline {
        return Ok(c.clone());
    }
    let profile = o.profile.clone().or_else(|| env("AWS_PROFILE")).unwrap_or_else(|| "default".into());
    if let Some(path) = &o.credentials_file {
        return from_file(o, path, &profile, read);
    }
    let id = env("AWS_ACCESS_KEY_ID").filter(|s| !s.is_empty());
    let secret = env("AWS_SECRET_ACCESS_KEY").filter(|s| !s.is_empty());
    match (id, secret) {
        (Some(id), Some(secret)) => {
            return Ok(S3Credentials {
                access_key_id: id,
                secret_access_key: Secret::new(secret),
                session_token: env("AWS_SESSION_TOKEN").filter(|s| !s.is_empty()).map(Secret::new),
                source: "the environment".into(),
            })
        }
        (Some(_), None) => return Err(o.at.error("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")),
        (None, Some(_)) => return Err(o.at.error("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not")),
        (None, None) => {}
    }
    let path =
        match (env("AWS_SHARED_CREDENTIALS_FILE"), env("HOME")) {
            (Some(p), _) if !p.is_empty() => PathBuf::from(p),
            (_, Some(home)) if !home.is_empty() => Path::new(&home).join(".aws").join("credentials"),
            _ => return Err(o.at.error(
                "no credentials: none in the configuration, the environment or a credentials file (HOME is not set)",
            )),
        };
    from_file(o, &path, &profile, read)
        .map_err(|e| o.at.error(format!("no credentials in the configuration or the environment, and {}", e.message)))
}

fn from_file(
    o: &S3OriginConfig,
    path: &Path,
    profile: &str,
    read: &mut ReadFile,
) -> Result<S3Credentials, ConfigError> {
    let bytes = read(path).map_err(|e| o.at.error(e))?;
    let text = String::from_utf8_lossy(&bytes);
    let found = credentials_in(&text, profile);
    match (found.access_key_id, found.secret_access_key) {
        (Some(id), Some(secret)) => Ok(S3Credentials {
            access_key_id: id,
            secret_access_key: Secret::new(secret),
            session_token: found.session_token.map(Secret::new),
            source: format!("{} [{profile}]", path.display()),
        }),
        (_, _) if !found.seen => Err(o.at.error(format!("{} has no profile [{profile}]", path.display()))),
        _ => {
            Err(o.at.error(format!("{} [{profile}] needs aws_access_key_id and aws_secret_access_key", path.display())))
        }
    }
}

#[derive(Default)]
struct FileProfile {
    seen: bool,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
}

/// One profile of an AWS shared credentials file (INI: `[name]` sections,
/// `key = value` lines, `#` and `;` comments).
fn credentials_in(text: &str, profile: &str) -> FileProfile {
    let mut out = FileProfile::default();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            inside = name == profile || name.strip_prefix("profile ").is_some_and(|n| n.trim() == profile);
            out.seen |= inside;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        if !inside {
            continue;
        }
        let value = Some(value.trim().to_string()).filter(|v| !v.is_empty());
        match key.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => out.access_key_id = value,
            "aws_secret_access_key" => out.secret_access_key = value,
            "aws_session_token" | "aws_security_token" => out.session_token = value,
            _ => {}
        }
    }
    out
}

/// The credentials of an S3 origin: those the materialise step found, else
/// found now (a configuration made in code).
pub fn credentials(o: &S3OriginConfig) -> Result<Arc<S3Credentials>, ConfigError> {
    if let Some(c) = o.credentials.get() {
        return Ok(c.clone());
    }
    let env = |k: &str| std::env::var(k).ok();
    let mut read = |p: &Path| std::fs::read(p).map(Arc::from).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let found = find_credentials(o, &env, &mut read)?;
    Ok(o.credentials.fill(Arc::new(found)).clone())
}

/// The fields of an origin's `s3` table that hold secrets.
const SECRET_FIELDS: [&str; 2] = ["secret_access_key", "session_token"];

fn s3_tables(doc: &mut toml::Table) -> impl Iterator<Item = (Option<String>, &mut toml::Table)> {
    let origins = match doc.get_mut("origins") {
        Some(toml::Value::Array(a)) => a.as_mut_slice(),
        _ => &mut [],
    };
    origins.iter_mut().filter_map(toml::Value::as_table_mut).filter_map(|o| {
        let id = o.get("id").and_then(toml::Value::as_str).map(str::to_string);
        match o.get_mut("s3") {
            Some(toml::Value::Table(s3)) => Some((id, s3)),
            _ => None,
        }
    })
}

/// A distribution document as it may be shown or exported: every secret of
/// its S3 origins replaced by `***`.
pub fn redact_document(doc: &mut toml::Table) {
    for (_, s3) in s3_tables(doc) {
        for field in SECRET_FIELDS {
            if let Some(v) = s3.get_mut(field) {
                *v = toml::Value::String(REDACTED.into());
            }
        }
    }
}

/// A document sent back as it was shown: each secret still `***` takes its
/// value from the origin with the same id in `previous` (the document it
/// replaces), so a read-modify-write through the admin API keeps it.
pub fn restore_secrets(doc: &mut toml::Table, previous: &toml::Table) {
    let mut previous = previous.clone();
    let old: Vec<(Option<String>, toml::Table)> = s3_tables(&mut previous).map(|(id, t)| (id, t.clone())).collect();
    for (id, s3) in s3_tables(doc) {
        let Some((_, before)) = old.iter().find(|(i, _)| i.is_some() && *i == id) else { continue };
        for field in SECRET_FIELDS {
            if s3.get(field).and_then(toml::Value::as_str) == Some(REDACTED) {
                match before.get(field) {
                    Some(v) => s3.insert(field.into(), v.clone()),
                    None => s3.remove(field),
                };
            }
        }
    }
}

/// A distribution's `Debug`: its document with the secrets redacted.
impl fmt::Debug for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut document = (*self.document).clone();
        redact_document(&mut document);
        f.debug_struct("Distribution")
            .field("id", &self.id)
            .field("enabled", &self.enabled)
            .field("comment", &self.comment)
            .field("domain_name", &self.domain_name)
            .field("aliases", &self.aliases)
            .field("origins", &self.origins)
            .field("behaviors", &self.behaviors)
            .field("default_behavior", &self.default_behavior)
            .field("key_groups", &self.key_groups)
            .field("document", &document)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("wJalrXUtnFEMI");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        let c = S3Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: s,
            session_token: Some(Secret::new("tok3n")),
            source: "the configuration".into(),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("wJalr") && !shown.contains("tok3n"), "{shown}");
    }

    #[test]
    fn credentials_files() {
        let text = "# comment\n[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s1\n\n[profile media]\n\
                    aws_access_key_id=AKIA2\naws_secret_access_key=s2\naws_session_token = t2\n[other]\nx = 1\n";
        let d = credentials_in(text, "default");
        assert_eq!((d.access_key_id.as_deref(), d.secret_access_key.as_deref()), (Some("AKIA1"), Some("s1")));
        assert_eq!(d.session_token, None);
        let m = credentials_in(text, "media");
        assert_eq!(m.session_token.as_deref(), Some("t2"));
        let o = credentials_in(text, "other");
        assert!(o.seen && o.access_key_id.is_none());
        assert!(!credentials_in(text, "nope").seen);
    }

    fn origin(inline: bool, file: Option<&str>) -> S3OriginConfig {
        S3OriginConfig {
            http: crate::config::Config::single_origin("http://127.0.0.1:9", None)
                .ok()
                .and_then(|c| match &c.distributions[0].origins[0].kind {
                    crate::config::OriginKind::Http(h) => Some(h.clone()),
                    _ => None,
                })
                .expect("an http origin"),
            bucket: "b".into(),
            region: "r".into(),
            inline: inline.then(|| S3Credentials {
                access_key_id: "INLINE".into(),
                secret_access_key: Secret::new("s"),
                session_token: None,
                source: "the configuration".into(),
            }),
            credentials_file: file.map(PathBuf::from),
            profile: None,
            at: Place::default(),
            credentials: Slot::empty(),
        }
    }

    #[test]
    fn where_credentials_come_from() {
        let files = |p: &Path| {
            match p.to_str() {
            Some("/explicit") => Ok(Arc::from(&b"[default]\naws_access_key_id=FILE\naws_secret_access_key=f\n"[..])),
            Some("/home/u/.aws/credentials") => {
                Ok(Arc::from(&b"[default]\naws_access_key_id=HOME\naws_secret_access_key=h\n[p]\naws_access_key_id=P\naws_secret_access_key=p\n"[..]))
            }
            _ => Err(format!("cannot read {}", p.display())),
        }
        };
        let full = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("ENV".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("e".to_string()),
            "AWS_SESSION_TOKEN" => Some("t".to_string()),
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        let id = |o: &S3OriginConfig, env: &dyn Fn(&str) -> Option<String>| {
            find_credentials(o, env, &mut |p| files(p)).map(|c| c.access_key_id).map_err(|e| e.message)
        };
        assert_eq!(id(&origin(true, Some("/explicit")), &full).unwrap(), "INLINE");
        assert_eq!(id(&origin(false, Some("/explicit")), &full).unwrap(), "FILE");
        assert_eq!(id(&origin(false, None), &full).unwrap(), "ENV");
        let env = find_credentials(&origin(false, None), &full, &mut |p| files(p)).unwrap();
        assert_eq!(env.session_token, Some(Secret::new("t")));
        let home_only = |k: &str| (k == "HOME").then(|| "/home/u".to_string());
        assert_eq!(id(&origin(false, None), &home_only).unwrap(), "HOME");
        let profile = |k: &str| match k {
            "HOME" => Some("/home/u".to_string()),
            "AWS_PROFILE" => Some("p".to_string()),
            _ => None,
        };
        assert_eq!(id(&origin(false, None), &profile).unwrap(), "P");
        let half = |k: &str| (k == "AWS_ACCESS_KEY_ID").then(|| "X".to_string());
        assert!(id(&origin(false, None), &half).unwrap_err().contains("AWS_SECRET_ACCESS_KEY is not"));
        let nothing = |_: &str| None;
        assert!(id(&origin(false, None), &nothing).unwrap_err().contains("HOME is not set"));
        let missing = |k: &str| (k == "AWS_SHARED_CREDENTIALS_FILE").then(|| "/none".to_string());
        assert!(id(&origin(false, None), &missing).unwrap_err().contains("cannot read /none"));
    }

    #[test]
    fn redaction_and_restore() {
        let text = "id = \"E\"\n[[origins]]\nid = \"b\"\n[origins.s3]\nbucket = \"x\"\nregion = \"r\"\n\
                    access_key_id = \"AKIA\"\nsecret_access_key = \"s3cr3t\"\nsession_token = \"t0k\"\n";
        let original: toml::Table = toml::from_str(text).unwrap();
        let mut shown = original.clone();
        redact_document(&mut shown);
        let out = toml::to_string(&shown).unwrap();
        assert!(!out.contains("s3cr3t") && !out.contains("t0k") && out.contains("AKIA"), "{out}");
        let mut back = shown.clone();
        restore_secrets(&mut back, &original);
        assert_eq!(back, original);
        // A new secret is kept as sent.
        let mut changed = shown;
        changed["origins"][0]["s3"].as_table_mut().unwrap().insert("secret_access_key".into(), "new".into());
        restore_secrets(&mut changed, &original);
        assert_eq!(changed["origins"][0]["s3"]["secret_access_key"].as_str(), Some("new"));
    }
}
