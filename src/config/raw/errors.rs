//! `[[distributions.custom_error_responses]]`: per error status, the
//! error-caching minimum TTL and the custom error page (CloudFront's custom
//! error responses).

use super::*;
use crate::config::error_responses::{CONFIGURABLE_ERROR_CODES, PAGE_RESPONSE_CODES};
use http::StatusCode;

/// The longest error-caching minimum TTL accepted (CloudFront's limit: one year).
const MAX_ERROR_TTL: Duration = Duration::from_secs(31_536_000);

/// The longest page path accepted (CloudFront's limit).
const MAX_PAGE_PATH: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawErrorResponse {
    error_code: Option<Spanned<i64>>,
    error_caching_min_ttl: Option<Spanned<Secs>>,
    response_page_path: Option<Spanned<String>>,
    response_code: Option<Spanned<toml::Value>>,
}

pub(super) fn resolve_error_responses(
    cx: &Ctx,
    i: usize,
    raw: Vec<Spanned<RawErrorResponse>>,
) -> Result<ErrorResponses, ConfigError> {
    let mut out: Vec<ErrorResponse> = Vec::new();
    for (j, e) in raw.into_iter().enumerate() {
        let espan = e.span();
        let e = e.into_inner();
        let f = |name: &str| format!("distributions[{i}].custom_error_responses[{j}].{name}");
        let Some(code) = e.error_code else {
            return cx.err(espan, f("error_code"), "is missing (the error status this entry is for, such as 503)");
        };
        let status = u16::try_from(*code.get_ref())
            .ok()
            .filter(|c| CONFIGURABLE_ERROR_CODES.contains(c))
            .and_then(|c| StatusCode::from_u16(c).ok());
        let Some(status) = status else {
            let list: Vec<String> = CONFIGURABLE_ERROR_CODES.iter().map(u16::to_string).collect();
            return cx.err(
                code.span(),
                f("error_code"),
                format!("{} is not one of the error codes the edge caches: {}", code.get_ref(), list.join(", ")),
            );
        };
        if out.iter().any(|x| x.error_code == status) {
            return cx.err(code.span(), f("error_code"), format!("{} has two entries", status.as_u16()));
        }
        let response_page_path = match e.response_page_path {
            Some(p) => {
                let path = p.get_ref();
                let canonical = crate::http::path::canonical(path).ok().filter(|c| c == path);
                if !path.starts_with('/') || path.len() > MAX_PAGE_PATH || path.contains(['?', '#']) {
                    return cx.err(
                        p.span(),
                        f("response_page_path"),
                        "must be a path that starts with / (at most 4096 bytes, no query)",
                    );
                }
                if canonical.is_none() {
                    return cx.err(
                        p.span(),
                        f("response_page_path"),
                        "must be written in its canonical form (no dot segments, repeated slashes or needless escapes)",
                    );
                }
                Some(path.clone())
            }
            None => None,
        };
        let response_code = match &e.response_code {
            Some(c) => {
                let code = c.get_ref().as_integer().and_then(|c| u16::try_from(c).ok());
                let Some(code) = code.filter(|c| PAGE_RESPONSE_CODES.contains(c)) else {
                    let list: Vec<String> = PAGE_RESPONSE_CODES.iter().map(u16::to_string).collect();
                    return cx.err(c.span(), f("response_code"), format!("must be one of {}", list.join(", ")));
                };
                if response_page_path.is_none() {
                    return cx.err(c.span(), f("response_code"), "needs a response_page_path (the page sent with it)");
                }
                StatusCode::from_u16(code).ok()
            }
            None => None,
        };
        let caching_min_ttl = match e.error_caching_min_ttl {
            Some(t) if t.get_ref().0 > MAX_ERROR_TTL => {
                return cx.err(t.span(), f("error_caching_min_ttl"), "must be at most one year (31536000 seconds)")
            }
            Some(t) => Some(t.into_inner().0),
            None => None,
        };
        out.push(ErrorResponse { error_code: status, caching_min_ttl, response_page_path, response_code });
    }
    Ok(ErrorResponses(out))
}

#[cfg(test)]
mod tests {
    use super::super::tests::BASE;
    use super::*;

    fn parse(entries: &str) -> Result<Config, ConfigError> {
        resolve(&format!("{BASE}{entries}"), Path::new("edge.toml"))
    }

    #[test]
    fn entries_reach_every_behavior() {
        let c = parse(
            "[[distributions.behaviors]]\npath = \"/a/*\"\norigin = \"o\"\n\
             [[distributions.custom_error_responses]]\nerror_code = 503\nerror_caching_min_ttl = 0\n\
             [[distributions.custom_error_responses]]\nerror_code = 404\nerror_caching_min_ttl = \"1m\"\n\
             [[distributions.custom_error_responses]]\nerror_code = 500\n",
        )
        .unwrap();
        let d = &c.distributions[0];
        for b in [&d.behaviors[0], &d.default_behavior] {
            let e = &b.error_responses;
            assert_eq!(e.min_ttl(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(10)), Duration::ZERO);
            assert_eq!(e.min_ttl(StatusCode::NOT_FOUND, Duration::from_secs(10)), Duration::from_secs(60));
            assert_eq!(e.min_ttl(StatusCode::INTERNAL_SERVER_ERROR, Duration::from_secs(10)), Duration::from_secs(10));
            assert_eq!(e.min_ttl(StatusCode::BAD_GATEWAY, Duration::from_secs(7)), Duration::from_secs(7));
        }
    }

    #[test]
    fn errors_name_line_and_field() {
        let cases = [
            ("error_code = 418\n", 8, "error_code", "418 is not one of"),
            ("error_code = -1\n", 8, "error_code", "is not one of"),
            ("error_caching_min_ttl = 5\n", 7, "error_code", "is missing"),
            ("error_code = 503\nerror_caching_min_ttl = \"2y\"\n", 9, "error_caching_min_ttl", "at most one year"),
            ("error_code = 503\nresponse_page_path = \"503.html\"\n", 9, "response_page_path", "starts with /"),
            ("error_code = 503\nresponse_page_path = \"/a/../503.html\"\n", 9, "response_page_path", "canonical"),
            ("error_code = 503\nresponse_page_path = \"/503.html?x\"\n", 9, "response_page_path", "no query"),
            ("error_code = 503\nresponse_code = 200\n", 9, "response_code", "needs a response_page_path"),
            (
                "error_code = 404\nresponse_page_path = \"/e.html\"\nresponse_code = 302\n",
                10,
                "response_code",
                "must be one of",
            ),
            (
                "error_code = 404\nresponse_page_path = \"/e.html\"\nresponse_code = \"200\"\n",
                10,
                "response_code",
                "must be one of",
            ),
        ];
        for (entry, line, field, message) in cases {
            let e = parse(&format!("[[distributions.custom_error_responses]]\n{entry}")).unwrap_err();
            assert_eq!(e.line, line, "{entry}: {e}");
            assert_eq!(
                e.field.as_deref(),
                Some(&*format!("distributions[0].custom_error_responses[0].{field}")),
                "{e}"
            );
            assert!(e.message.contains(message), "{e}");
        }
        let e = parse(
            "[[distributions.custom_error_responses]]\nerror_code = 503\n\
             [[distributions.custom_error_responses]]\nerror_code = 503\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 10, "{e}");
        assert_eq!(e.field.as_deref(), Some("distributions[0].custom_error_responses[1].error_code"));
        let e = parse("[[distributions.custom_error_responses]]\nerror_code = 503\nerror_ttl = 5\n").unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
    }
}
