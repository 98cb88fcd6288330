//! `[distributions.field_level_encryption]`: public keys, profiles and
//! configurations, as CloudFront has them, and a behavior's
//! `field_level_encryption_id`. Keys are PEM text in the file (CloudFront's
//! `EncodedKey`), so they are checked here and a distribution document
//! stands on its own. See docs/field-level-encryption.md.

use super::*;
use crate::security::fle::{FieldPattern, FleConfig, FleProfile, FlePublicKey, FORM_CONTENT_TYPE, MAX_FIELD_PATTERNS};

/// CloudFront's quotas on keys, profiles and configurations.
const MAX_KEYS: usize = 10;
const MAX_PROFILES: usize = 10;
const MAX_CONFIGS: usize = 10;
const MAX_QUERY_ARGS: usize = 5;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFle {
    #[serde(default)]
    public_keys: Vec<Spanned<RawFleKey>>,
    #[serde(default)]
    profiles: Vec<Spanned<RawFleProfile>>,
    #[serde(default)]
    configs: Vec<Spanned<RawFleConfig>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleKey {
    id: Option<Spanned<String>>,
    encoded_key: Option<Spanned<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    comment: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleProfile {
    id: Option<Spanned<String>>,
    provider_id: Option<Spanned<String>>,
    public_key: Option<Spanned<String>>,
    fields: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    #[allow(dead_code)]
    comment: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleConfig {
    id: Option<Spanned<String>>,
    #[serde(default)]
    content_types: Vec<Spanned<RawContentType>>,
    #[serde(default)]
    forward_when_content_type_is_unknown: bool,
    #[serde(default)]
    query_arg_profiles: Vec<Spanned<RawQueryArg>>,
    #[serde(default)]
    forward_when_query_arg_profile_is_unknown: bool,
    #[serde(default)]
    #[allow(dead_code)]
    comment: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContentType {
    content_type: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    profile: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueryArg {
    query_arg: Option<Spanned<String>>,
    profile: Option<Spanned<String>>,
}

/// The distribution's field-level encryption configurations.
pub(super) fn resolve(cx: &Ctx, i: usize, raw: Option<Spanned<RawFle>>) -> Result<Vec<Arc<FleConfig>>, ConfigError> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    let span = raw.span();
    let raw = raw.into_inner();
    let f = |name: &str| format!("distributions[{i}].field_level_encryption.{name}");
    for (count, max, name) in [
        (raw.public_keys.len(), MAX_KEYS, "public_keys"),
        (raw.profiles.len(), MAX_PROFILES, "profiles"),
        (raw.configs.len(), MAX_CONFIGS, "configs"),
    ] {
        if count > max {
            return cx.err(span.clone(), f(name), format!("at most {max} (got {count})"));
        }
    }

    let mut keys: Vec<Arc<FlePublicKey>> = Vec::new();
    for (j, k) in raw.public_keys.into_iter().enumerate() {
        let (kspan, k) = (k.span(), k.into_inner());
        let kf = |name: &str| f(&format!("public_keys[{j}].{name}"));
        let Some(id) = k.id else { return cx.err(kspan, kf("id"), "is missing") };
        if !valid_id(id.get_ref(), 128, b"-_.") {
            return cx.err(id.span(), kf("id"), "must be 1 to 128 letters, digits, '-', '_' or '.'");
        }
        if keys.iter().any(|x| x.id == *id.get_ref()) {
            return cx.err(id.span(), kf("id"), format!("public key id {:?} is used twice", id.get_ref()));
        }
        let Some(pem) = k.encoded_key else {
            return cx.err(kspan, kf("encoded_key"), "is missing (the PEM text of an RSA 2048 public key)");
        };
        let key = FlePublicKey::from_pem(id.get_ref(), pem.get_ref())
            .or_else(|e| cx.err(pem.span(), kf("encoded_key"), format!("is not a usable public key: {e}")))?;
        keys.push(Arc::new(key));
    }

    let mut profiles: Vec<Arc<FleProfile>> = Vec::new();
    for (j, p) in raw.profiles.into_iter().enumerate() {
        let (pspan, p) = (p.span(), p.into_inner());
        let pf = |name: &str| f(&format!("profiles[{j}].{name}"));
        let Some(id) = p.id else { return cx.err(pspan, pf("id"), "is missing") };
        if !valid_id(id.get_ref(), 128, b"-_.") {
            return cx.err(id.span(), pf("id"), "must be 1 to 128 letters, digits, '-', '_' or '.'");
        }
        if profiles.iter().any(|x| x.id == *id.get_ref()) {
            return cx.err(id.span(), pf("id"), format!("profile id {:?} is used twice", id.get_ref()));
        }
        let Some(provider) = p.provider_id else {
            return cx.err(pspan, pf("provider_id"), "is missing (the master key provider id origins decrypt with)");
        };
        let pv = provider.get_ref();
        if pv.is_empty() || pv.len() > 128 || pv.bytes().any(|b| !b.is_ascii_graphic()) {
            return cx.err(provider.span(), pf("provider_id"), "must be 1 to 128 visible ASCII characters");
        }
        let Some(key_name) = p.public_key else {
            return cx.err(pspan, pf("public_key"), "is missing (the id of one of public_keys)");
        };
        let Some(key) = keys.iter().find(|k| k.id == *key_name.get_ref()) else {
            return cx.err(
                key_name.span(),
                pf("public_key"),
                format!("no public key has the id {:?}", key_name.get_ref()),
            );
        };
        let Some(fields) = p.fields else {
            return cx.err(pspan, pf("fields"), "is missing (the form field names to encrypt)");
        };
        let fspan = fields.span();
        let fields = fields.into_inner();
        if fields.is_empty() || fields.len() > MAX_FIELD_PATTERNS {
            let n = fields.len();
            return cx.err(fspan, pf("fields"), format!("names 1 to {MAX_FIELD_PATTERNS} field patterns (got {n})"));
        }
        let mut patterns = Vec::new();
        for (k, field) in fields.iter().enumerate() {
            let here = pf(&format!("fields[{k}]"));
            let pattern = FieldPattern::parse(field.get_ref()).or_else(|e| cx.err(field.span(), here.clone(), e))?;
            if patterns.contains(&pattern) {
                return cx.err(field.span(), here, format!("{:?} is in this profile twice", field.get_ref()));
            }
            if let Some(other) = profiles.iter().find(|o| o.fields.contains(&pattern)) {
                return cx.err(
                    field.span(),
                    here,
                    format!(
                        "{:?} is a field pattern of profile {:?} already; a pattern belongs to one profile",
                        field.get_ref(),
                        other.id
                    ),
                );
            }
            patterns.push(pattern);
        }
        profiles.push(Arc::new(FleProfile {
            id: id.into_inner(),
            provider_id: provider.into_inner(),
            key: key.clone(),
            fields: patterns,
        }));
    }

    let profile = |name: &Spanned<String>, field: String| match profiles.iter().find(|p| p.id == *name.get_ref()) {
        Some(p) => Ok(p.clone()),
        None => {
            cx.err(name.span(), field, format!("no field-level encryption profile has the id {:?}", name.get_ref()))
        }
    };
    let mut configs: Vec<Arc<FleConfig>> = Vec::new();
    for (j, c) in raw.configs.into_iter().enumerate() {
        let (cspan, c) = (c.span(), c.into_inner());
        let cf = |name: &str| f(&format!("configs[{j}].{name}"));
        let Some(id) = c.id else { return cx.err(cspan, cf("id"), "is missing") };
        if !valid_id(id.get_ref(), 128, b"-_.") {
            return cx.err(id.span(), cf("id"), "must be 1 to 128 letters, digits, '-', '_' or '.'");
        }
        if configs.iter().any(|x| x.id == *id.get_ref()) {
            return cx.err(id.span(), cf("id"), format!("configuration id {:?} is used twice", id.get_ref()));
        }
        if c.content_types.is_empty() && c.query_arg_profiles.is_empty() {
            return cx.err(cspan, cf("content_types"), "a configuration needs content_types or query_arg_profiles");
        }
        if c.content_types.len() > 1 {
            return cx.err(
                c.content_types[1].span(),
                cf("content_types[1]"),
                format!("field-level encryption reads one content type, {FORM_CONTENT_TYPE}, listed once"),
            );
        }
        let mut form_profile = None;
        for (k, t) in c.content_types.iter().enumerate() {
            let tf = |name: &str| cf(&format!("content_types[{k}].{name}"));
            let t = t.get_ref();
            match &t.content_type {
                Some(ct) if ct.get_ref().eq_ignore_ascii_case(FORM_CONTENT_TYPE) => {}
                Some(ct) => {
                    return cx.err(
                        ct.span(),
                        tf("content_type"),
                        format!("{:?}: field-level encryption reads {FORM_CONTENT_TYPE} bodies only", ct.get_ref()),
                    )
                }
                None => return cx.err(cspan.clone(), tf("content_type"), format!("is missing ({FORM_CONTENT_TYPE})")),
            }
            if let Some(fmt) = t.format.as_ref().filter(|x| x.get_ref() != "URLEncoded") {
                return cx.err(
                    fmt.span(),
                    tf("format"),
                    format!("{:?}: the one format is \"URLEncoded\"", fmt.get_ref()),
                );
            }
            if let Some(p) = &t.profile {
                form_profile = Some(profile(p, tf("profile"))?);
            }
        }
        if c.query_arg_profiles.len() > MAX_QUERY_ARGS {
            return cx.err(
                cspan,
                cf("query_arg_profiles"),
                format!("at most {MAX_QUERY_ARGS} query argument profiles"),
            );
        }
        let mut query_arg_profiles: Vec<(String, Arc<FleProfile>)> = Vec::new();
        for (k, q) in c.query_arg_profiles.iter().enumerate() {
            let qf = |name: &str| cf(&format!("query_arg_profiles[{k}].{name}"));
            let (qspan, q) = (q.span(), q.get_ref());
            let Some(arg) = &q.query_arg else { return cx.err(qspan, qf("query_arg"), "is missing") };
            if !valid_id(arg.get_ref(), 128, b"-_.") {
                return cx.err(arg.span(), qf("query_arg"), "must be 1 to 128 letters, digits, '-', '_' or '.'");
            }
            if query_arg_profiles.iter().any(|(a, _)| a == arg.get_ref()) {
                return cx.err(arg.span(), qf("query_arg"), format!("{:?} is listed twice", arg.get_ref()));
            }
            let Some(p) = &q.profile else { return cx.err(qspan, qf("profile"), "is missing") };
            query_arg_profiles.push((arg.get_ref().clone(), profile(p, qf("profile"))?));
        }
        configs.push(Arc::new(FleConfig {
            id: id.into_inner(),
            form_listed: !c.content_types.is_empty(),
            form_profile,
            forward_when_content_type_is_unknown: c.forward_when_content_type_is_unknown,
            query_arg_profiles,
            forward_when_query_arg_profile_is_unknown: c.forward_when_query_arg_profile_is_unknown,
        }));
    }
    Ok(configs)
}

/// A behavior's `field_level_encryption_id`: it names a configuration, and
/// the behavior allows POST (the requests whose bodies are encrypted).
pub(super) fn attach(
    cx: &Ctx,
    field: &str,
    id: Option<Spanned<String>>,
    configs: &[Arc<FleConfig>],
    behavior: &mut Behavior,
) -> Result<(), ConfigError> {
    let Some(id) = id else { return Ok(()) };
    let here = format!("{field}.field_level_encryption_id");
    let Some(c) = configs.iter().find(|c| c.id == *id.get_ref()) else {
        return cx.err(
            id.span(),
            here,
            format!("no field-level encryption configuration has the id {:?}", id.get_ref()),
        );
    };
    if !behavior.allowed_methods.contains(&Method::POST) {
        return cx.err(
            id.span(),
            here,
            "field-level encryption encrypts POST bodies: the behavior's allowed_methods must include POST",
        );
    }
    behavior.field_level_encryption = Some(c.clone());
    Ok(())
}
