//! What a token's policies allow, decided without I/O.
//!
//! The model follows deSEC's token policies. A policy covers a name suffix on label
//! boundaries (`dev.example.com` covers `a.dev.example.com` but not `evildev.example.com`;
//! the empty suffix is the DNS root and covers every name), optionally only some record types,
//! and grants permissions (read, create, delete).
//!
//! Of the policies covering a name and type, the most specific one decides: the one with the
//! most suffix labels, and at the same suffix one that lists types over one that lists none.
//! Permissions never add up across policies; only the deciding policy's count.
//!
//! A deciding policy that lists no types is a broad grant. A broad grant may read anything,
//! but it never creates or deletes sensitive records: NS, DS and CAA records, records at the
//! zone apex, and records at or under an `_acme-challenge` label. Those need a deciding policy
//! that lists the record's type.

use std::fmt;

use super::record::RecordType;
use super::token::{Permission, Policy};

/// The label under which ACME DNS-01 challenges are published.
const ACME_CHALLENGE: &str = "_acme-challenge";

/// Why a policy that lists no types is not enough for a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sensitive {
    /// A delegation or issuance type (NS, CAA; DS too, though dnsorch does not manage it).
    Type(RecordType),
    /// The record is at the zone apex.
    Apex,
    /// A label of the name is `_acme-challenge`.
    AcmeChallenge,
}

impl fmt::Display for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Type(_) => "NS, DS and CAA records",
            Self::Apex => "records at the zone apex",
            Self::AcmeChallenge => "records at or under an _acme-challenge label",
        })
    }
}

/// Why a token may not do something; the message suits a 403 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// No policy covers the name and type.
    #[error(
        "this token may not {} {record_type} records at {name}: no policy covers that name and type",
        verb(*.permission)
    )]
    NoPolicy {
        name: String,
        record_type: RecordType,
        permission: Permission,
    },
    /// The deciding policy lacks the permission.
    #[error(
        "this token may not {} {record_type} records at {name}: the policy for {} does not grant {}",
        verb(*.permission),
        scope(.suffix),
        verb(*.permission)
    )]
    MissingPermission {
        name: String,
        record_type: RecordType,
        permission: Permission,
        /// The deciding policy's suffix.
        suffix: String,
    },
    /// The deciding policy lists no types and the record is sensitive.
    #[error(
        "this token may not {} {record_type} records at {name}: the policy for {} grants every type, and {why} need a policy that lists {record_type}",
        verb(*.permission),
        scope(.suffix)
    )]
    BroadGrant {
        name: String,
        record_type: RecordType,
        permission: Permission,
        /// The deciding policy's suffix.
        suffix: String,
        why: Sensitive,
    },
}

/// Whether `policies` let a token use `permission` on `record_type` records at `name`.
///
/// `apex` is the zone's name from the zones file, if known; without it the deciding policy's
/// suffix counts as the apex.
///
/// # Errors
/// Why not: no policy decides, the deciding one lacks the permission, or it is a broad grant
/// and the record is sensitive (reads excepted).
pub fn authorize(
    policies: &[Policy],
    name: &str,
    record_type: RecordType,
    permission: Permission,
    apex: Option<&str>,
) -> Result<(), Denial> {
    let Some(policy) = deciding(policies, name, record_type) else {
        return Err(Denial::NoPolicy {
            name: name.to_owned(),
            record_type,
            permission,
        });
    };
    if !policy.permissions.contains(&permission) {
        return Err(Denial::MissingPermission {
            name: name.to_owned(),
            record_type,
            permission,
            suffix: policy.suffix.clone(),
        });
    }
    if permission != Permission::Read && policy.types.is_empty() {
        let apex = apex.unwrap_or(&policy.suffix);
        if let Some(why) = sensitive(name, record_type, apex) {
            return Err(Denial::BroadGrant {
                name: name.to_owned(),
                record_type,
                permission,
                suffix: policy.suffix.clone(),
                why,
            });
        }
    }
    Ok(())
}

/// The policy that decides for `record_type` records at `name`: of those covering both, the
/// one with the most suffix labels; at equal depth one that lists types; then the first.
pub fn deciding<'a>(
    policies: &'a [Policy],
    name: &str,
    record_type: RecordType,
) -> Option<&'a Policy> {
    let rank = |p: &Policy| (labels(&p.suffix), !p.types.is_empty());
    let mut best: Option<&Policy> = None;
    for policy in policies.iter().filter(|p| matches(p, name, record_type)) {
        if best.is_none_or(|b| rank(policy) > rank(b)) {
            best = Some(policy);
        }
    }
    best
}

/// Whether `policy` covers `name` (on label boundaries) and `record_type`.
fn matches(policy: &Policy, name: &str, record_type: RecordType) -> bool {
    covers(&policy.suffix, name) && (policy.types.is_empty() || policy.types.contains(&record_type))
}

/// Whether `name` is `suffix` or under it; the empty suffix (the root) covers every name.
fn covers(suffix: &str, name: &str) -> bool {
    if suffix.is_empty() || name == suffix {
        return true;
    }
    name.strip_suffix(suffix)
        .is_some_and(|head| head.ends_with('.'))
}

/// Labels in a suffix; the root has none.
fn labels(suffix: &str) -> usize {
    if suffix.is_empty() {
        0
    } else {
        suffix.split('.').count()
    }
}

/// Why a record needs a policy that lists its type, if it does. A root apex ("") never
/// equals a real name, so a root policy's suffix makes no record an apex.
fn sensitive(name: &str, record_type: RecordType, apex: &str) -> Option<Sensitive> {
    if matches!(record_type, RecordType::Ns | RecordType::Caa) {
        Some(Sensitive::Type(record_type))
    } else if name == apex {
        Some(Sensitive::Apex)
    } else if name.split('.').any(|label| label == ACME_CHALLENGE) {
        Some(Sensitive::AcmeChallenge)
    } else {
        None
    }
}

/// A permission as messages name it.
fn verb(permission: Permission) -> &'static str {
    match permission {
        Permission::Read => "read",
        Permission::Create => "create",
        Permission::Delete => "delete",
    }
}

/// A suffix as messages name it.
fn scope(suffix: &str) -> &str {
    if suffix.is_empty() {
        "the DNS root"
    } else {
        suffix
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::{Create, Delete, Read};
    use RecordType::{A, Aaaa, Caa, Cname, Mx, Ns, Txt};

    fn policy(suffix: &str, types: &[RecordType], permissions: &[Permission]) -> Policy {
        Policy {
            suffix: suffix.to_owned(),
            types: types.to_vec(),
            permissions: permissions.to_vec(),
        }
    }

    fn no_policy(name: &str, record_type: RecordType, permission: Permission) -> Denial {
        Denial::NoPolicy {
            name: name.to_owned(),
            record_type,
            permission,
        }
    }

    fn missing(
        name: &str,
        record_type: RecordType,
        permission: Permission,
        suffix: &str,
    ) -> Denial {
        Denial::MissingPermission {
            name: name.to_owned(),
            record_type,
            permission,
            suffix: suffix.to_owned(),
        }
    }

    fn broad(
        name: &str,
        record_type: RecordType,
        permission: Permission,
        suffix: &str,
        why: Sensitive,
    ) -> Denial {
        Denial::BroadGrant {
            name: name.to_owned(),
            record_type,
            permission,
            suffix: suffix.to_owned(),
            why,
        }
    }

    const ALL: [Permission; 3] = [Read, Create, Delete];

    #[test]
    fn a_suffix_covers_itself_and_names_under_it() {
        let p = [policy("dev.example.com", &[], &ALL)];
        for name in [
            "dev.example.com",
            "a.dev.example.com",
            "x.y.dev.example.com",
        ] {
            assert_eq!(authorize(&p, name, A, Create, Some("example.com")), Ok(()));
        }
    }

    #[test]
    fn a_suffix_covers_only_on_label_boundaries() {
        let p = [policy("dev.example.com", &[], &ALL)];
        for name in [
            "evildev.example.com",
            "a.evildev.example.com",
            "example.com",
            "ev.example.com",
            "dev.example.com.evil.net",
            "dev.example.co",
        ] {
            assert_eq!(
                authorize(&p, name, A, Create, Some("example.com")),
                Err(no_policy(name, A, Create)),
                "{name}"
            );
            assert_eq!(deciding(&p, name, A), None, "{name}");
        }
    }

    #[test]
    fn no_policies_refuse_everything() {
        for permission in ALL {
            for record_type in RecordType::ALL {
                assert_eq!(
                    authorize(&[], "a.example.com", record_type, permission, None),
                    Err(no_policy("a.example.com", record_type, permission))
                );
            }
        }
        assert_eq!(deciding(&[], "a.example.com", A), None);
    }

    #[test]
    fn the_root_suffix_covers_every_name() {
        let p = [policy("", &[], &[Read, Create])];
        for name in ["com", "example.com", "a.b.example.org"] {
            assert_eq!(authorize(&p, name, A, Create, None), Ok(()), "{name}");
            assert_eq!(authorize(&p, name, Txt, Read, None), Ok(()), "{name}");
        }
        assert_eq!(
            authorize(&p, "example.com", A, Delete, None),
            Err(missing("example.com", A, Delete, ""))
        );
    }

    #[test]
    fn the_root_suffix_is_not_an_apex_without_a_zones_file() {
        let p = [policy("", &[], &[Create])];
        assert_eq!(authorize(&p, "www.example.com", A, Create, None), Ok(()));
        // With the zone known, its apex stays sensitive under a root grant.
        assert_eq!(
            authorize(&p, "example.com", A, Create, Some("example.com")),
            Err(broad("example.com", A, Create, "", Sensitive::Apex))
        );
    }

    #[test]
    fn any_deeper_policy_beats_the_root() {
        let p = [policy("", &[], &ALL), policy("example.com", &[], &[Read])];
        assert_eq!(
            authorize(&p, "a.example.com", A, Create, None),
            Err(missing("a.example.com", A, Create, "example.com"))
        );
        assert_eq!(authorize(&p, "a.example.org", A, Create, None), Ok(()));
    }

    #[test]
    fn the_deepest_covering_policy_decides() {
        let p = [
            policy("example.com", &[], &ALL),
            policy("a.example.com", &[], &[Read]),
            policy("b.a.example.com", &[], &[Read, Delete]),
        ];
        assert_eq!(
            deciding(&p, "x.a.example.com", A).map(|p| p.suffix.as_str()),
            Some("a.example.com")
        );
        assert_eq!(
            deciding(&p, "x.b.a.example.com", A).map(|p| p.suffix.as_str()),
            Some("b.a.example.com")
        );
        assert_eq!(
            deciding(&p, "x.example.com", A).map(|p| p.suffix.as_str()),
            Some("example.com")
        );
        // The deeper policy refuses even though the shallower one grants create.
        assert_eq!(
            authorize(&p, "x.a.example.com", A, Create, None),
            Err(missing("x.a.example.com", A, Create, "a.example.com"))
        );
        assert_eq!(
            authorize(&p, "x.b.a.example.com", A, Create, None),
            Err(missing("x.b.a.example.com", A, Create, "b.a.example.com"))
        );
        assert_eq!(authorize(&p, "x.b.a.example.com", A, Delete, None), Ok(()));
        assert_eq!(authorize(&p, "x.example.com", A, Create, None), Ok(()));
    }

    #[test]
    fn the_order_of_policies_does_not_matter() {
        let mut p = vec![
            policy("a.example.com", &[], &[Read]),
            policy("example.com", &[], &ALL),
        ];
        for _ in 0..2 {
            assert_eq!(
                authorize(&p, "x.a.example.com", A, Create, None),
                Err(missing("x.a.example.com", A, Create, "a.example.com"))
            );
            p.reverse();
        }
    }

    #[test]
    fn a_policy_that_does_not_cover_the_type_does_not_decide() {
        // The deeper policy covers only TXT, so the shallower one decides for A.
        let p = [
            policy("example.com", &[], &[Read]),
            policy("a.example.com", &[Txt], &ALL),
        ];
        assert_eq!(
            deciding(&p, "x.a.example.com", A).map(|p| p.suffix.as_str()),
            Some("example.com")
        );
        assert_eq!(
            authorize(&p, "x.a.example.com", A, Create, None),
            Err(missing("x.a.example.com", A, Create, "example.com"))
        );
        assert_eq!(authorize(&p, "x.a.example.com", Txt, Create, None), Ok(()));
    }

    #[test]
    fn at_the_same_suffix_a_typed_policy_beats_an_untyped_one() {
        for p in [
            [
                policy("example.com", &[], &ALL),
                policy("example.com", &[Txt], &[Read]),
            ],
            [
                policy("example.com", &[Txt], &[Read]),
                policy("example.com", &[], &ALL),
            ],
        ] {
            assert_eq!(
                deciding(&p, "a.example.com", Txt).map(|p| p.types.as_slice()),
                Some(&[Txt][..])
            );
            assert_eq!(
                authorize(&p, "a.example.com", Txt, Create, None),
                Err(missing("a.example.com", Txt, Create, "example.com"))
            );
            // For other types only the untyped policy covers the name.
            assert_eq!(authorize(&p, "a.example.com", A, Create, None), Ok(()));
        }
    }

    #[test]
    fn on_a_remaining_tie_the_first_policy_decides() {
        // Token creation refuses such pairs; the choice is still deterministic.
        let p = [
            policy("example.com", &[], &[Read]),
            policy("example.com", &[], &[Create]),
        ];
        assert_eq!(deciding(&p, "a.example.com", A), Some(&p[0]));
        assert_eq!(
            authorize(&p, "a.example.com", A, Create, None),
            Err(missing("a.example.com", A, Create, "example.com"))
        );
    }

    #[test]
    fn a_deeper_untyped_policy_beats_a_shallower_typed_one() {
        let p = [
            policy("example.com", &[Txt], &ALL),
            policy("a.example.com", &[], &[Read]),
        ];
        assert_eq!(
            authorize(&p, "a.example.com", Txt, Create, None),
            Err(missing("a.example.com", Txt, Create, "a.example.com"))
        );
    }

    #[test]
    fn covering_the_name_but_not_the_type_refuses() {
        let p = [policy("example.com", &[Txt, Cname], &ALL)];
        assert_eq!(
            authorize(&p, "a.example.com", A, Create, None),
            Err(no_policy("a.example.com", A, Create))
        );
        assert_eq!(
            authorize(&p, "a.example.com", Mx, Read, None),
            Err(no_policy("a.example.com", Mx, Read))
        );
        assert_eq!(authorize(&p, "a.example.com", Cname, Create, None), Ok(()));
    }

    #[test]
    fn covering_name_and_type_but_not_the_permission_refuses() {
        let p = [policy("example.com", &[A, Aaaa], &[Read, Delete])];
        assert_eq!(
            authorize(&p, "a.example.com", Aaaa, Create, None),
            Err(missing("a.example.com", Aaaa, Create, "example.com"))
        );
        assert_eq!(authorize(&p, "a.example.com", Aaaa, Delete, None), Ok(()));
        assert_eq!(authorize(&p, "a.example.com", A, Read, None), Ok(()));

        let p = [policy("example.com", &[], &[Create])];
        assert_eq!(
            authorize(&p, "a.example.com", A, Read, None),
            Err(missing("a.example.com", A, Read, "example.com"))
        );
    }

    #[test]
    fn a_broad_grant_refuses_ns_and_caa() {
        let p = [policy("example.com", &[], &ALL)];
        for record_type in [Ns, Caa] {
            for permission in [Create, Delete] {
                assert_eq!(
                    authorize(
                        &p,
                        "sub.example.com",
                        record_type,
                        permission,
                        Some("example.com")
                    ),
                    Err(broad(
                        "sub.example.com",
                        record_type,
                        permission,
                        "example.com",
                        Sensitive::Type(record_type)
                    ))
                );
            }
            assert_eq!(
                authorize(
                    &p,
                    "sub.example.com",
                    record_type,
                    Read,
                    Some("example.com")
                ),
                Ok(())
            );
        }
    }

    #[test]
    fn a_typed_policy_allows_ns_and_caa() {
        for record_type in [Ns, Caa] {
            let p = [policy("example.com", &[record_type], &ALL)];
            for permission in ALL {
                assert_eq!(
                    authorize(
                        &p,
                        "sub.example.com",
                        record_type,
                        permission,
                        Some("example.com")
                    ),
                    Ok(())
                );
            }
        }
    }

    #[test]
    fn a_broad_grant_refuses_the_zones_apex() {
        // The zone is known, and the policy is shallower than it.
        let p = [policy("com", &[], &ALL)];
        assert_eq!(
            authorize(&p, "example.com", A, Create, Some("example.com")),
            Err(broad("example.com", A, Create, "com", Sensitive::Apex))
        );
        assert_eq!(
            authorize(&p, "www.example.com", A, Create, Some("example.com")),
            Ok(())
        );
        assert_eq!(
            authorize(&p, "example.com", A, Read, Some("example.com")),
            Ok(())
        );
        // The zones file's apex counts, not the policy's suffix.
        let p = [policy("example.com", &[], &ALL)];
        assert_eq!(authorize(&p, "example.com", A, Delete, Some("com")), Ok(()));

        let p = [policy("com", &[A], &ALL)];
        assert_eq!(
            authorize(&p, "example.com", A, Create, Some("example.com")),
            Ok(())
        );
    }

    #[test]
    fn without_a_zones_file_the_policys_suffix_is_the_apex() {
        let p = [policy("example.com", &[], &ALL)];
        assert_eq!(
            authorize(&p, "example.com", Mx, Delete, None),
            Err(broad(
                "example.com",
                Mx,
                Delete,
                "example.com",
                Sensitive::Apex
            ))
        );
        assert_eq!(authorize(&p, "www.example.com", Mx, Delete, None), Ok(()));
        assert_eq!(authorize(&p, "example.com", Mx, Read, None), Ok(()));

        let p = [policy("example.com", &[Mx], &ALL)];
        assert_eq!(authorize(&p, "example.com", Mx, Delete, None), Ok(()));
    }

    #[test]
    fn a_broad_grant_refuses_acme_challenge_records_at_and_under_the_label() {
        let p = [policy("a.example.com", &[], &ALL)];
        for name in [
            "_acme-challenge.a.example.com",
            "x._acme-challenge.a.example.com",
            "_acme-challenge._acme-challenge.a.example.com",
        ] {
            for record_type in [Txt, Cname] {
                assert_eq!(
                    authorize(&p, name, record_type, Create, Some("example.com")),
                    Err(broad(
                        name,
                        record_type,
                        Create,
                        "a.example.com",
                        Sensitive::AcmeChallenge
                    )),
                    "{name}"
                );
                assert_eq!(
                    authorize(&p, name, record_type, Read, Some("example.com")),
                    Ok(()),
                    "{name}"
                );
            }
        }
        // Only a whole label counts.
        for name in [
            "_acme-challenge-x.a.example.com",
            "x_acme-challenge.a.example.com",
            "acme-challenge.a.example.com",
        ] {
            assert_eq!(
                authorize(&p, name, Txt, Create, Some("example.com")),
                Ok(()),
                "{name}"
            );
        }
    }

    #[test]
    fn a_typed_policy_allows_acme_challenge_records() {
        let p = [
            policy("a.example.com", &[], &ALL),
            policy("_acme-challenge.a.example.com", &[Txt], &[Create, Delete]),
        ];
        assert_eq!(
            authorize(&p, "_acme-challenge.a.example.com", Txt, Create, None),
            Ok(())
        );
        assert_eq!(
            authorize(&p, "x._acme-challenge.a.example.com", Txt, Delete, None),
            Ok(())
        );
        // A typed policy at a shallower suffix does as well.
        let p = [policy("example.com", &[Txt], &[Create])];
        assert_eq!(
            authorize(&p, "_acme-challenge.a.example.com", Txt, Create, None),
            Ok(())
        );
        // But the typed policy must be the deciding one.
        let p = [
            policy("example.com", &[Txt], &[Create]),
            policy("a.example.com", &[], &ALL),
        ];
        assert_eq!(
            authorize(&p, "_acme-challenge.a.example.com", Txt, Create, None),
            Err(broad(
                "_acme-challenge.a.example.com",
                Txt,
                Create,
                "a.example.com",
                Sensitive::AcmeChallenge
            ))
        );
    }

    #[test]
    fn permissions_do_not_combine_across_policies() {
        let p = [
            policy("example.com", &[Txt], &[Create]),
            policy("example.com", &[], &[Delete]),
        ];
        assert_eq!(
            authorize(&p, "a.example.com", Txt, Delete, None),
            Err(missing("a.example.com", Txt, Delete, "example.com"))
        );
        assert_eq!(authorize(&p, "a.example.com", Txt, Create, None), Ok(()));
    }

    #[test]
    fn a_missing_permission_is_reported_before_sensitivity() {
        let p = [policy("example.com", &[], &[Read])];
        assert_eq!(
            authorize(&p, "example.com", Ns, Create, None),
            Err(missing("example.com", Ns, Create, "example.com"))
        );
    }

    #[test]
    fn messages_name_the_name_type_and_permission() {
        let p = [policy("a.example.com", &[], &ALL)];
        let denial = authorize(&p, "_acme-challenge.a.example.com", Txt, Create, None).unwrap_err();
        assert_eq!(
            denial.to_string(),
            "this token may not create TXT records at _acme-challenge.a.example.com: the policy \
             for a.example.com grants every type, and records at or under an _acme-challenge \
             label need a policy that lists TXT"
        );
        assert_eq!(
            no_policy("x.example.com", A, Delete).to_string(),
            "this token may not delete A records at x.example.com: no policy covers that name \
             and type"
        );
        assert_eq!(
            missing("x.example.com", Aaaa, Read, "").to_string(),
            "this token may not read AAAA records at x.example.com: the policy for the DNS root \
             does not grant read"
        );
        assert_eq!(
            broad(
                "example.com",
                Ns,
                Delete,
                "example.com",
                Sensitive::Type(Ns)
            )
            .to_string(),
            "this token may not delete NS records at example.com: the policy for example.com \
             grants every type, and NS, DS and CAA records need a policy that lists NS"
        );
        assert_eq!(
            broad("example.com", A, Create, "com", Sensitive::Apex).to_string(),
            "this token may not create A records at example.com: the policy for com grants \
             every type, and records at the zone apex need a policy that lists A"
        );
    }
}
