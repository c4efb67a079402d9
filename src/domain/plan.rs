//! The planner: what a change would do to an RRset, and every reason it cannot. Pure; the
//! callers read the live RRset (a backend) and the ledger (the store) and hand them in, so a
//! dry run and the worker that applies a change judge it by the same rules.
//!
//! The rules:
//! - **Ownership.** An RRset owned by another account cannot be changed.
//! - **Records made outside dnsorch.** A live record the ledger does not hold (for the owning
//!   account) blocks every change but a delete of other records: it must be adopted first.
//!   A live record equal to one being added is not in the way (a retry after a crash
//!   between apply and commit finds its own record).
//! - **CNAME exclusivity** (RFC 1034 3.6.2, RFC 2181 10.1): a name with a CNAME holds
//!   nothing else, and at most one CNAME.
//! - **Absent.** Deleting a record (or an RRset) that is not there.
//! - **Unreadable.** When the server could not be read, nothing is known of `before`; the
//!   plan is made against the ledger's records and says so.

use super::record::{LiveRrset, RecordData, RecordType};
use super::request::Operation;

/// What a change asks of one RRset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent<'a> {
    /// Add these records; the RRset takes `ttl`.
    Add { records: &'a [RecordData], ttl: u32 },
    /// Remove these records.
    Remove { records: &'a [RecordData] },
    /// Remove the whole RRset.
    RemoveAll,
    /// Make the RRset exactly these records, with `ttl`.
    Replace { records: &'a [RecordData], ttl: u32 },
}

impl<'a> Intent<'a> {
    /// What `operation` asks of the RRset with `records` and `ttl`; `None` for an adoption,
    /// which changes no DNS.
    pub fn of(operation: Operation, records: &'a [RecordData], ttl: u32) -> Option<Self> {
        match operation {
            Operation::Create => Some(Self::Add { records, ttl }),
            Operation::Delete if records.is_empty() => Some(Self::RemoveAll),
            Operation::Delete => Some(Self::Remove { records }),
            Operation::Replace => Some(Self::Replace { records, ttl }),
            Operation::Adopt => None,
        }
    }
}

/// What dnsorch's ledger says of the RRset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerView<'a> {
    /// The owning account, if any.
    pub owner: Option<&'a str>,
    /// The records of the RRset the ledger holds.
    pub managed: &'a [RecordData],
}

/// What the server holds at the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveView {
    /// The server answered.
    Read {
        /// The RRset; `None` when there is none.
        rrset: Option<LiveRrset>,
        /// The other types that have data at the name (for CNAME exclusivity).
        other_types: Vec<RecordType>,
    },
    /// The server could not be read; why.
    Unreadable(String),
}

/// Why a change cannot be applied as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// A CNAME would share its name with other data, or a name would get a second CNAME.
    CnameExclusive,
    /// The RRset belongs to another account.
    OwnedByAnotherAccount,
    /// The RRset holds records dnsorch does not manage.
    Unmanaged,
    /// A delete of something that is not there.
    Absent,
    /// The server could not be read.
    Unreadable,
    /// The RRset is not the one the request expects (`expect`).
    Unexpected,
}

/// One conflict, with a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub kind: ConflictKind,
    pub message: String,
}

/// What the change would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The RRset now; `None` when absent or unreadable.
    pub before: Option<LiveRrset>,
    /// The RRset after the change; `None` when it would be empty.
    pub after: Option<LiveRrset>,
    /// Every reason the change cannot be applied; empty when it can.
    pub conflicts: Vec<Conflict>,
}

impl Plan {
    /// Whether the change can be applied as planned.
    pub fn is_clear(&self) -> bool {
        self.conflicts.is_empty()
    }

    /// The plan with a conflict when `before` is not `expect` (the same records, in any order,
    /// and the same TTL; two absent RRsets are the same). Nothing to compare when there is no
    /// expectation or the RRset could not be read.
    #[must_use]
    pub fn expecting(mut self, expect: Option<&LiveRrset>) -> Self {
        let unreadable = self
            .conflicts
            .iter()
            .any(|c| c.kind == ConflictKind::Unreadable);
        let Some(expect) = expect.filter(|_| !unreadable) else {
            return self;
        };
        let absent = LiveRrset::absent();
        let before = self.before.as_ref().unwrap_or(&absent);
        if !same_rrset(expect, before) {
            self.conflicts.push(Conflict {
                kind: ConflictKind::Unexpected,
                message: format!(
                    "the RRset is not the one expected: expected {}, found {}",
                    describe_rrset(expect),
                    describe_rrset(before)
                ),
            });
        }
        self
    }
}

/// Whether two RRsets hold the same records (in any order) with the same TTL.
pub fn same_rrset(a: &LiveRrset, b: &LiveRrset) -> bool {
    match (a.records.is_empty(), b.records.is_empty()) {
        (true, true) => true,
        (false, false) => {
            a.ttl == b.ttl
                && a.records.len() == b.records.len()
                && a.records.iter().all(|r| b.records.contains(r))
        }
        (true, false) | (false, true) => false,
    }
}

/// An RRset for a message: `ttl 300 [192.0.2.1, 192.0.2.2]`, or `nothing`.
pub fn describe_rrset(rrset: &LiveRrset) -> String {
    if rrset.records.is_empty() {
        return "nothing".to_owned();
    }
    let records: Vec<String> = rrset.records.iter().map(super::zoneform::element).collect();
    format!("ttl {} [{}]", rrset.ttl, records.join(", "))
}

/// Plans `intent` on the RRset `name`/`record_type` for `account`.
pub fn plan(
    account: &str,
    name: &str,
    record_type: RecordType,
    intent: Intent<'_>,
    ledger: LedgerView<'_>,
    live: &LiveView,
) -> Plan {
    let mut conflicts = Vec::new();
    if let Some(owner) = ledger.owner.filter(|owner| *owner != account) {
        conflicts.push(Conflict {
            kind: ConflictKind::OwnedByAnotherAccount,
            message: format!("{name} {record_type} belongs to account {owner}"),
        });
    }
    let (before, other_types) = match live {
        LiveView::Read { rrset, other_types } => (rrset.clone(), other_types.as_slice()),
        LiveView::Unreadable(why) => {
            conflicts.push(Conflict {
                kind: ConflictKind::Unreadable,
                message: format!(
                    "{name} {record_type} could not be read ({why}); planned against dnsorch's ledger"
                ),
            });
            (None, &[][..])
        }
    };
    // The records the change starts from: the server's, or without them the ledger's.
    let base: Vec<RecordData> = match live {
        LiveView::Read { rrset, .. } => rrset.as_ref().map_or_else(Vec::new, |r| r.records.clone()),
        LiveView::Unreadable(_) => ledger.managed.to_vec(),
    };
    let base_ttl = before.as_ref().map(|r| r.ttl);
    let unmanaged = |wanted: &[RecordData]| -> Vec<&RecordData> {
        base.iter()
            .filter(|r| !ledger.managed.contains(r) && !wanted.contains(r))
            .collect()
    };
    let after = match intent {
        Intent::Add { records, ttl } => {
            refuse_unmanaged(name, record_type, &unmanaged(records), &mut conflicts);
            check_cname(
                name,
                record_type,
                records,
                &base,
                other_types,
                &mut conflicts,
            );
            let mut after = base.clone();
            for record in records {
                if !after.contains(record) {
                    after.push(record.clone());
                }
            }
            Some(LiveRrset {
                ttl,
                records: after,
            })
        }
        Intent::Replace { records, ttl } => {
            refuse_unmanaged(name, record_type, &unmanaged(records), &mut conflicts);
            check_cname(name, record_type, records, &[], other_types, &mut conflicts);
            Some(LiveRrset {
                ttl,
                records: records.to_vec(),
            })
        }
        Intent::Remove { records } => {
            let outside: Vec<&RecordData> = records
                .iter()
                .filter(|r| base.contains(r) && !ledger.managed.contains(r))
                .collect();
            refuse_unmanaged(name, record_type, &outside, &mut conflicts);
            let missing: Vec<String> = records
                .iter()
                .filter(|r| !base.contains(r))
                .map(super::zoneform::element)
                .collect();
            if !missing.is_empty() {
                conflicts.push(Conflict {
                    kind: ConflictKind::Absent,
                    message: format!("{name} {record_type} does not hold {}", missing.join(", ")),
                });
            }
            let after: Vec<RecordData> = base
                .iter()
                .filter(|r| !records.contains(r))
                .cloned()
                .collect();
            Some(LiveRrset {
                ttl: base_ttl.unwrap_or_default(),
                records: after,
            })
        }
        Intent::RemoveAll => {
            refuse_unmanaged(name, record_type, &unmanaged(&[]), &mut conflicts);
            if base.is_empty() {
                conflicts.push(Conflict {
                    kind: ConflictKind::Absent,
                    message: format!("{name} has no {record_type} records"),
                });
            }
            None
        }
    };
    Plan {
        before,
        after: after.filter(|rrset| !rrset.records.is_empty()),
        conflicts,
    }
}

fn refuse_unmanaged(
    name: &str,
    record_type: RecordType,
    unmanaged: &[&RecordData],
    conflicts: &mut Vec<Conflict>,
) {
    if unmanaged.is_empty() {
        return;
    }
    let held: Vec<String> = unmanaged
        .iter()
        .map(|r| super::zoneform::element(r))
        .collect();
    conflicts.push(Conflict {
        kind: ConflictKind::Unmanaged,
        message: format!(
            "{name} {record_type} holds records dnsorch does not manage ({}); adopt the RRset first",
            held.join(", ")
        ),
    });
}

/// CNAME exclusivity for records being added to (or replacing) `kept`.
fn check_cname(
    name: &str,
    record_type: RecordType,
    records: &[RecordData],
    kept: &[RecordData],
    other_types: &[RecordType],
    conflicts: &mut Vec<Conflict>,
) {
    let conflicting: Vec<&str> = other_types
        .iter()
        .filter(|t| record_type.exclusive_with().contains(t))
        .map(|t| t.as_str())
        .collect();
    let message = if record_type == RecordType::Cname && !conflicting.is_empty() {
        Some(format!(
            "{name} already has {} records; a CNAME must be the only record at its name",
            conflicting.join(", ")
        ))
    } else if !conflicting.is_empty() {
        Some(format!(
            "{name} has a CNAME; no other record can be added at that name"
        ))
    } else if record_type == RecordType::Cname {
        let mut cnames: Vec<&RecordData> = kept.iter().collect();
        cnames.extend(records.iter().filter(|r| !kept.contains(r)));
        (cnames.len() > 1).then(|| format!("{name} can have only one CNAME"))
    } else {
        None
    };
    if let Some(message) = message {
        conflicts.push(Conflict {
            kind: ConflictKind::CnameExclusive,
            message,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::zoneform;

    fn records(record_type: RecordType, elements: &[&str]) -> Vec<RecordData> {
        elements
            .iter()
            .map(|e| zoneform::parse(record_type, e).unwrap())
            .collect()
    }

    fn a(elements: &[&str]) -> Vec<RecordData> {
        records(RecordType::A, elements)
    }

    fn read(ttl: u32, held: Vec<RecordData>, other_types: Vec<RecordType>) -> LiveView {
        LiveView::Read {
            rrset: (!held.is_empty()).then_some(LiveRrset { ttl, records: held }),
            other_types,
        }
    }

    fn kinds(plan: &Plan) -> Vec<ConflictKind> {
        plan.conflicts.iter().map(|c| c.kind).collect()
    }

    const NAME: &str = "www.example.test";

    fn ledger<'a>(owner: Option<&'a str>, managed: &'a [RecordData]) -> LedgerView<'a> {
        LedgerView { owner, managed }
    }

    #[test]
    fn a_replace_of_managed_records_is_clear_and_its_after_is_exactly_the_new_set() {
        let old = a(&["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
        let new = a(&["192.0.2.7", "192.0.2.8"]);
        let live = read(300, old.clone(), vec![]);
        let plan = plan(
            "acct-1",
            NAME,
            RecordType::A,
            Intent::Replace {
                records: &new,
                ttl: 60,
            },
            ledger(Some("acct-1"), &old),
            &live,
        );
        assert!(plan.is_clear(), "{:?}", plan.conflicts);
        assert_eq!(
            plan.before,
            Some(LiveRrset {
                ttl: 300,
                records: old
            })
        );
        assert_eq!(
            plan.after,
            Some(LiveRrset {
                ttl: 60,
                records: new
            })
        );
    }

    #[test]
    fn another_accounts_rrset_and_unmanaged_records_are_conflicts() {
        let managed = a(&["192.0.2.1"]);
        let live = read(300, a(&["192.0.2.1", "192.0.2.99"]), vec![]);
        let new = a(&["192.0.2.5"]);
        let plan = plan(
            "acct-2",
            NAME,
            RecordType::A,
            Intent::Replace {
                records: &new,
                ttl: 300,
            },
            ledger(Some("acct-1"), &managed),
            &live,
        );
        assert_eq!(
            kinds(&plan),
            [ConflictKind::OwnedByAnotherAccount, ConflictKind::Unmanaged]
        );
        assert!(plan.conflicts[1].message.contains("192.0.2.99"));
    }

    #[test]
    fn an_add_of_a_record_already_live_is_a_retry_not_an_unmanaged_record() {
        let wanted = a(&["192.0.2.1"]);
        let live = read(300, wanted.clone(), vec![]);
        let plan = plan(
            "acct-1",
            NAME,
            RecordType::A,
            Intent::Add {
                records: &wanted,
                ttl: 300,
            },
            ledger(None, &[]),
            &live,
        );
        assert!(plan.is_clear(), "{:?}", plan.conflicts);
        assert_eq!(plan.after.unwrap().records, wanted);
    }

    #[test]
    fn cname_exclusivity_both_ways_and_a_second_cname() {
        let cname = records(RecordType::Cname, &["target.example.test"]);
        let other = records(RecordType::Cname, &["other.example.test"]);
        let at_name_with_a = read(0, vec![], vec![RecordType::A]);
        let cname_live = read(300, other.clone(), vec![]);
        let add = |live: &LiveView, t: RecordType, r: &[RecordData], managed: &[RecordData]| {
            kinds(&plan(
                "acct-1",
                NAME,
                t,
                Intent::Add {
                    records: r,
                    ttl: 300,
                },
                ledger(Some("acct-1"), managed),
                live,
            ))
        };
        assert_eq!(
            add(&at_name_with_a, RecordType::Cname, &cname, &[]),
            [ConflictKind::CnameExclusive]
        );
        assert_eq!(
            add(&cname_live, RecordType::Cname, &cname, &other),
            [ConflictKind::CnameExclusive]
        );
        let with_cname = read(0, vec![], vec![RecordType::Cname]);
        assert_eq!(
            add(&with_cname, RecordType::A, &a(&["192.0.2.1"]), &[]),
            [ConflictKind::CnameExclusive]
        );
        // Replacing the one CNAME with another is fine.
        let replaced = plan(
            "acct-1",
            NAME,
            RecordType::Cname,
            Intent::Replace {
                records: &cname,
                ttl: 300,
            },
            ledger(Some("acct-1"), &other),
            &cname_live,
        );
        assert!(replaced.is_clear(), "{:?}", replaced.conflicts);
    }

    #[test]
    fn deletes_of_absent_or_unmanaged_records_are_conflicts() {
        let managed = a(&["192.0.2.1"]);
        let live = read(300, a(&["192.0.2.1", "192.0.2.99"]), vec![]);
        let gone = a(&["192.0.2.1", "192.0.2.50"]);
        let removed = plan(
            "acct-1",
            NAME,
            RecordType::A,
            Intent::Remove { records: &gone },
            ledger(Some("acct-1"), &managed),
            &live,
        );
        assert_eq!(kinds(&removed), [ConflictKind::Absent]);
        assert!(removed.conflicts[0].message.contains("192.0.2.50"));
        assert_eq!(removed.after.unwrap().records, a(&["192.0.2.99"]));
        let outside = a(&["192.0.2.99"]);
        let unmanaged = plan(
            "acct-1",
            NAME,
            RecordType::A,
            Intent::Remove { records: &outside },
            ledger(Some("acct-1"), &managed),
            &live,
        );
        assert_eq!(kinds(&unmanaged), [ConflictKind::Unmanaged]);
        let all = plan(
            "acct-1",
            NAME,
            RecordType::A,
            Intent::RemoveAll,
            ledger(Some("acct-1"), &managed),
            &live,
        );
        assert_eq!(kinds(&all), [ConflictKind::Unmanaged]);
        assert_eq!(all.after, None);
        let nothing = plan(
            "acct-1",
            NAME,
            RecordType::A,
            Intent::RemoveAll,
            ledger(None, &[]),
            &read(0, vec![], vec![]),
        );
        assert_eq!(kinds(&nothing), [ConflictKind::Absent]);
    }

    #[test]
    fn an_unreadable_server_gives_no_before_and_plans_against_the_ledger() {
        let managed = a(&["192.0.2.1"]);
        let added = a(&["192.0.2.2"]);
        let plan = plan(
            "acct-1",
            NAME,
            RecordType::A,
            Intent::Add {
                records: &added,
                ttl: 300,
            },
            ledger(Some("acct-1"), &managed),
            &LiveView::Unreadable("timed out".into()),
        );
        assert_eq!(plan.before, None);
        assert_eq!(kinds(&plan), [ConflictKind::Unreadable]);
        assert_eq!(plan.after.unwrap().records, a(&["192.0.2.1", "192.0.2.2"]));
    }

    #[test]
    fn an_expectation_holds_for_the_same_records_in_any_order_and_the_same_ttl() {
        let held = a(&["192.0.2.1", "192.0.2.2"]);
        let replace = a(&["192.0.2.3"]);
        let planned = || {
            plan(
                "acct-1",
                NAME,
                RecordType::A,
                Intent::Replace {
                    records: &replace,
                    ttl: 300,
                },
                ledger(Some("acct-1"), &held),
                &read(300, held.clone(), vec![]),
            )
        };
        let rrset = |ttl, records: &[&str]| LiveRrset {
            ttl,
            records: a(records),
        };

        let same = planned().expecting(Some(&rrset(300, &["192.0.2.2", "192.0.2.1"])));
        let other_ttl = planned().expecting(Some(&rrset(600, &["192.0.2.1", "192.0.2.2"])));
        let fewer = planned().expecting(Some(&rrset(300, &["192.0.2.1"])));
        let absent = planned().expecting(Some(&LiveRrset::absent()));
        let none = planned().expecting(None);

        assert_eq!(kinds(&same), []);
        assert_eq!(kinds(&other_ttl), [ConflictKind::Unexpected]);
        assert_eq!(kinds(&fewer), [ConflictKind::Unexpected]);
        assert_eq!(kinds(&absent), [ConflictKind::Unexpected]);
        assert!(absent.conflicts[0].message.contains("expected nothing"));
        assert_eq!(kinds(&none), []);
        assert!(same_rrset(&LiveRrset::absent(), &rrset(300, &[])));
    }
}
