//! `[[distributions.origin_groups]]`: a primary origin and its fallbacks
//! (CloudFront's origin groups), resolved into origins of their own that
//! behaviors name like any origin.

use super::*;
use http::StatusCode;

/// The answers a group may fail over on (CloudFront's list).
const FAILOVER_CODES: [u16; 6] = [403, 404, 500, 502, 503, 504];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOriginGroup {
    id: Option<Spanned<String>>,
    members: Option<Spanned<Vec<Spanned<String>>>>,
    failover_status_codes: Option<Spanned<Vec<Spanned<i64>>>>,
    eject_after: Option<Spanned<i64>>,
    eject_for: Option<Spanned<Secs>>,
}

/// Appends one origin per group to `origins` (after the plain origins, which
/// its members name).
pub(super) fn resolve_origin_groups(
    cx: &Ctx,
    i: usize,
    raw: Vec<Spanned<RawOriginGroup>>,
    origins: &mut Vec<Arc<OriginConfig>>,
) -> Result<(), ConfigError> {
    let plain = origins.len();
    for (j, g) in raw.into_iter().enumerate() {
        let gspan = g.span();
        let g = g.into_inner();
        let f = |name: &str| format!("distributions[{i}].origin_groups[{j}].{name}");
        let Some(id) = g.id else {
            return cx.err(gspan, f("id"), "is missing (behaviors name the group by it)");
        };
        if origins.iter().any(|o| o.id == *id.get_ref()) {
            return cx.err(id.span(), f("id"), format!("{:?} is already the id of an origin or group", id.get_ref()));
        }
        let Some(names) = g.members else {
            return cx.err(gspan, f("members"), "is missing (the primary origin's id, then its fallbacks)");
        };
        let nspan = names.span();
        let names = names.into_inner();
        if !(2..=3).contains(&names.len()) {
            return cx.err(nspan, f("members"), "names two or three origins: the primary first");
        }
        let mut members = Vec::new();
        for (k, name) in names.iter().enumerate() {
            let Some(m) = origins[..plain].iter().position(|o| o.id == *name.get_ref()) else {
                let msg =
                    format!("no origin has the id {:?} (a group's members are origins, not groups)", name.get_ref());
                return cx.err(name.span(), f(&format!("members[{k}]")), msg);
            };
            if members.contains(&m) {
                return cx.err(name.span(), f(&format!("members[{k}]")), "names an origin twice");
            }
            members.push(m);
        }
        let mut failover_status = Vec::new();
        match g.failover_status_codes {
            None => {
                failover_status.extend([500, 502, 503, 504].map(|c| StatusCode::from_u16(c).ok()).into_iter().flatten())
            }
            Some(codes) => {
                for (k, c) in codes.into_inner().iter().enumerate() {
                    let code = u16::try_from(*c.get_ref()).ok().filter(|c| FAILOVER_CODES.contains(c));
                    let Some(status) = code.and_then(|c| StatusCode::from_u16(c).ok()) else {
                        let list: Vec<String> = FAILOVER_CODES.iter().map(u16::to_string).collect();
                        let msg = format!("{} is not one of {}", c.get_ref(), list.join(", "));
                        return cx.err(c.span(), f(&format!("failover_status_codes[{k}]")), msg);
                    };
                    failover_status.push(status);
                }
            }
        }
        let eject_after = match g.eject_after {
            None => 5,
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(n @ 1..=1000) => n,
                _ => return cx.err(n.span(), f("eject_after"), "must lie between 1 and 1000 failures"),
            },
        };
        let eject_for = match g.eject_for {
            None => Duration::from_secs(10),
            Some(t) if t.get_ref().0 > Duration::from_secs(3600) || t.get_ref().0.is_zero() => {
                return cx.err(t.span(), f("eject_for"), "must lie between 1 ms and one hour")
            }
            Some(t) => t.into_inner().0,
        };
        let kind = OriginKind::Group(OriginGroupConfig { members, failover_status, eject_after, eject_for });
        origins.push(Arc::new(OriginConfig { id: id.into_inner(), kind, headers: Vec::new() }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::BASE;
    use super::*;

    const SECOND: &str = "[[distributions.origins]]\nid = \"b\"\nurl = \"http://127.0.0.1:10\"\n";

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        resolve(&format!("{BASE}{SECOND}{extra}"), Path::new("edge.toml"))
    }

    #[test]
    fn a_group_is_an_origin_behaviors_name() {
        let c = parse(
            "[[distributions.origin_groups]]\nid = \"g\"\nmembers = [\"o\", \"b\"]\n\
             failover_status_codes = [503, 404]\neject_after = 2\neject_for = \"30s\"\n\
             [[distributions.behaviors]]\npath = \"/live/*\"\norigin = \"g\"\n",
        )
        .unwrap();
        let d = &c.distributions[0];
        let g = &d.origins[d.behaviors[0].origin];
        let OriginKind::Group(g) = &g.kind else { panic!("a group") };
        assert_eq!(g.members, vec![0, 1]);
        assert_eq!(g.failover_status, vec![StatusCode::SERVICE_UNAVAILABLE, StatusCode::NOT_FOUND]);
        assert_eq!((g.eject_after, g.eject_for), (2, Duration::from_secs(30)));
    }

    #[test]
    fn errors_name_line_and_field() {
        let g = "[[distributions.origin_groups]]\nid = \"g\"\n";
        for (extra, line, field, msg) in [
            (format!("{g}members = [\"o\"]\n"), 12, "members", "two or three"),
            (format!("{g}members = [\"o\", \"zz\"]\n"), 12, "members[1]", "no origin has the id"),
            (format!("{g}members = [\"o\", \"o\"]\n"), 12, "members[1]", "twice"),
            (
                format!("{g}members = [\"o\", \"b\"]\nfailover_status_codes = [418]\n"),
                13,
                "failover_status_codes[0]",
                "not one of",
            ),
            (format!("{g}members = [\"o\", \"b\"]\neject_after = 0\n"), 13, "eject_after", "between 1 and 1000"),
            (
                "[[distributions.origin_groups]]\nid = \"b\"\nmembers = [\"o\", \"b\"]\n".to_string(),
                11,
                "id",
                "already",
            ),
            ("[[distributions.origin_groups]]\nmembers = [\"o\", \"b\"]\n".to_string(), 10, "id", "is missing"),
        ] {
            let e = parse(&extra).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(&*format!("distributions[0].origin_groups[0].{field}")), "{e}");
            assert_eq!(e.line, line, "{extra}: {e}");
            assert!(e.message.contains(msg), "{e}");
        }
    }
}
