//! An atomic change set in one UPDATE: every change's prerequisite that its RRset is still
//! what the worker read, CNAME exclusivity for each name as the set leaves it, then every
//! deletion and every addition, in a message of its own. The server applies all of it or
//! nothing (RFC 2136 3.2: a failed prerequisite, or any error, changes nothing).
//!
//! Exclusivity is the set's, not each change's: at a name where the set leaves a CNAME, each
//! type the set does not change must be absent (the ones it changes are held as read and end
//! empty, or the worker's plan refused the set); at a name where it leaves other data and does
//! not change the CNAME, there must be no CNAME. Deletions go first, so an A removed and a
//! CNAME added at one name is applied in that order.

use chrono::Utc;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType as DnsType};
use tokio::sync::oneshot;

use super::sender::{Job, Update};
use super::{Rfc2136Provisioner, additions, as_read, deletions, retimed, rrset_deletion};
use crate::domain::{Operation, RecordType};
use crate::provision::dns::{Expect, dns_type, live_rrset, none_class, permanent_rcode};
use crate::provision::{Applied, PlannedChange, ProvisionError};

/// The most bytes one DNS message over TCP takes.
const MAX_MESSAGE_BYTES: usize = 65_535;
/// What the header, zone section and TSIG record may take besides the records.
const MESSAGE_OVERHEAD: usize = 512;

/// One change as the UPDATE carries it: where it is, and what verification must see.
struct Part {
    name: Name,
    dns_type: DnsType,
    expect: Expect,
}

impl Rfc2136Provisioner {
    /// Applies an atomic set in one UPDATE, then verifies every change at the primary.
    pub(super) async fn apply_atomic(
        &self,
        changes: &[PlannedChange],
    ) -> Result<Applied, ProvisionError> {
        let Some(first) = changes.first() else {
            return Err(ProvisionError::Rejected("an empty change set".into()));
        };
        let mut update = Update::default();
        let mut deletions = Vec::new();
        let mut added = Vec::new();
        let mut parts = Vec::with_capacity(changes.len());
        for change in changes {
            let (name, dns_type, rdatas) = self.records_of(change)?;
            let before = change.before()?;
            let ttl = change.config.ttl;
            update
                .prerequisites
                .extend(as_read(&name, dns_type, before)?);
            let expect = match change.operation {
                Operation::Create => {
                    deletions.extend(retimed(&name, ttl, &rdatas, before)?);
                    added.extend(additions(&name, ttl, &rdatas));
                    Expect::Present { rdatas, ttl }
                }
                Operation::Delete if rdatas.is_empty() => {
                    if !before.records.is_empty() {
                        deletions.push(rrset_deletion(&name, dns_type));
                    }
                    Expect::Absent { rdatas }
                }
                Operation::Delete => {
                    deletions.extend(self::deletions(&name, &rdatas));
                    Expect::Absent { rdatas }
                }
                Operation::Replace => {
                    deletions.push(rrset_deletion(&name, dns_type));
                    added.extend(additions(&name, ttl, &rdatas));
                    Expect::Exactly { rdatas, ttl }
                }
                Operation::Adopt => {
                    return Err(ProvisionError::Rejected(
                        "an adoption cannot be part of a change set".into(),
                    ));
                }
            };
            parts.push(Part {
                name,
                dns_type,
                expect,
            });
        }
        update.prerequisites.extend(exclusivity(changes, &parts));
        update.updates = deletions;
        update.updates.extend(added);
        let bytes = update.encoded_len().saturating_add(MESSAGE_OVERHEAD);
        if bytes > MAX_MESSAGE_BYTES {
            return Err(ProvisionError::Rejected(format!(
                "the set's UPDATE takes {bytes} bytes and one DNS message at most {MAX_MESSAGE_BYTES}: split the set"
            )));
        }
        let mut notes = Vec::new();
        match self.send_alone(update, first, &mut notes).await? {
            ResponseCode::NoError => {}
            ResponseCode::NXRRSet | ResponseCode::YXRRSet | ResponseCode::YXDomain => {
                return Err(self.why_refused(changes).await);
            }
            other => return Err(permanent_rcode(other, "update")),
        }
        let applied_at = Utc::now();
        let mut verified_at = applied_at;
        for part in &parts {
            verified_at = self
                .verify(&part.name, part.dns_type, &part.expect, &mut notes)
                .await?;
        }
        Ok(Applied {
            applied_at,
            verified_at: Some(verified_at),
            notes,
        })
    }

    /// Sends the set's UPDATE in a message of its own, under the lead's fence.
    async fn send_alone(
        &self,
        update: Update,
        lead: &PlannedChange,
        notes: &mut Vec<String>,
    ) -> Result<ResponseCode, ProvisionError> {
        lead.fence.check()?;
        let jobs = self.jobs().await;
        let (reply, answer) = oneshot::channel();
        jobs.send(Job::alone(update, lead.fence.clone(), reply))
            .await
            .map_err(|_| ProvisionError::Transient("the update sender stopped".into()))?;
        let (rcode, note) = answer
            .await
            .map_err(|_| ProvisionError::Transient("the update sender stopped".into()))??;
        notes.push(note);
        Ok(rcode)
    }

    /// Why the server refused the set's prerequisites: an RRset changed since the worker read
    /// it (transient: the next attempt reads and plans again), or, when every RRset is as
    /// read, CNAME exclusivity at one of its names (permanent).
    async fn why_refused(&self, changes: &[PlannedChange]) -> ProvisionError {
        for change in changes {
            let live = match self.read_live(change).await {
                Ok(live) => live,
                Err(e) => return e,
            };
            let Ok(before) = change.before() else {
                continue;
            };
            if !crate::domain::plan::same_rrset(&live, before) {
                return ProvisionError::Transient(format!(
                    "the {} {} RRset changed since it was read; the set is read and planned again",
                    change.domain,
                    change.record_type.as_str()
                ));
            }
        }
        ProvisionError::PrerequisiteFailed(
            "a name of the set holds data the set does not change that conflicts with a CNAME (other records at a CNAME's name, or a CNAME where other records are added)".into(),
        )
    }

    async fn read_live(
        &self,
        change: &PlannedChange,
    ) -> Result<crate::domain::LiveRrset, ProvisionError> {
        let (name, dns_type, _) = self.records_of(change)?;
        let live = self.query(&self.config.server, &name, dns_type).await?;
        live_rrset(change.record_type, &live)
    }
}

/// The set's CNAME prerequisites, name by name (see the module's documentation).
fn exclusivity(changes: &[PlannedChange], parts: &[Part]) -> Vec<Record> {
    let mut prerequisites = Vec::new();
    let mut names: Vec<&Name> = Vec::new();
    for part in parts {
        if !names.contains(&&part.name) {
            names.push(&part.name);
        }
    }
    for name in names {
        let here: Vec<&PlannedChange> = changes
            .iter()
            .zip(parts)
            .filter(|(_, part)| &part.name == name)
            .map(|(change, _)| change)
            .collect();
        let changed: Vec<RecordType> = here.iter().map(|c| c.record_type).collect();
        let leaves = |t: RecordType| {
            here.iter().any(|c| {
                c.record_type == t
                    && c.rrsets
                        .as_ref()
                        .is_some_and(|r| !r.after.records.is_empty())
            })
        };
        let leaves_data = RecordType::ALL
            .into_iter()
            .any(|t| t != RecordType::Cname && leaves(t));
        if leaves(RecordType::Cname) {
            for other in RecordType::Cname.exclusive_with() {
                if !changed.contains(&other) {
                    prerequisites.push(none_class(Record::update0(
                        name.clone(),
                        0,
                        dns_type(other),
                    )));
                }
            }
        } else if leaves_data && !changed.contains(&RecordType::Cname) {
            prerequisites.push(none_class(Record::update0(name.clone(), 0, DnsType::CNAME)));
        }
    }
    prerequisites
}
