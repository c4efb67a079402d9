//! Atomic change sets at intake: every change checked as it would be alone, then the set as a
//! whole (one zone, a backend that applies changes together, each RRset once, one UPDATE's
//! size), then all its requests recorded in one transaction or none.
//!
//! The requests are recorded in the order of their owner names (the inserts of concurrent
//! sets and batches take their per-name locks in one order); the first is the set's lead, the
//! one request that is queued, claimed, leased and finished, for all of them.

use super::{Intake, IntakeError, Submission};
use crate::domain::changeset::estimated_update_bytes;
use crate::domain::{ChangeRequest, FieldError, RequestId, SetPlace, SetRole};
use crate::store::{Inserted, NewChangeSet, StoreError};
use crate::zones::Backend;

/// The most bytes one DNS message over TCP can take.
const MAX_MESSAGE_BYTES: usize = 65_535;

/// Why an atomic set was refused: each change at fault (by index), and what is wrong with the
/// set as a whole (fields such as `atomic`). Nothing was stored.
#[derive(Debug, Default)]
pub struct AtomicRefusal {
    pub changes: Vec<(u32, IntakeError)>,
    pub whole: Vec<FieldError>,
}

impl Intake {
    /// Checks, records and queues an atomic set: `items` by their index in the set.
    ///
    /// # Errors
    /// The database is unavailable (nothing was stored: the set is one transaction).
    pub async fn submit_atomic(
        &self,
        items: Vec<(u32, Submission)>,
        set: &NewChangeSet,
    ) -> Result<Result<RequestId, AtomicRefusal>, StoreError> {
        let mut refusal = AtomicRefusal::default();
        let mut changes = Vec::with_capacity(items.len());
        for (index, item) in items {
            match self.check(
                &item.actor,
                item.body,
                item.operation,
                item.idempotency_key.as_deref(),
            ) {
                Ok(change) => changes.push((index, change)),
                Err(e) => refusal.changes.push((index, e)),
            }
        }
        if !refusal.changes.is_empty() {
            return Ok(Err(refusal));
        }
        refusal.whole = self.as_one(&changes);
        if !refusal.whole.is_empty() {
            return Ok(Err(refusal));
        }
        changes.sort_by(|(_, a), (_, b)| a.domain.as_str().cmp(b.domain.as_str()));
        for (position, (index, change)) in changes.iter_mut().enumerate() {
            change.change_set = Some(SetPlace {
                id: set.id,
                index: *index,
                role: if position == 0 {
                    SetRole::Lead
                } else {
                    SetRole::Member
                },
            });
        }
        let (indexes, changes): (Vec<u32>, Vec<ChangeRequest>) = changes.into_iter().unzip();
        let answers = self
            .store
            .insert_atomic(&changes, self.limits.max_unfinished_per_name, set)
            .await?;
        if answers.iter().all(|a| matches!(a, Inserted::Created(_))) {
            let mut lead = None;
            for (answer, change) in answers.into_iter().zip(&changes) {
                if let Ok(super::Submitted::Created(id)) = self.settle(answer, change, |id| *id) {
                    lead.get_or_insert(id);
                }
            }
            let lead = lead.expect("an atomic set has at least one change");
            self.enqueue(&[lead]).await;
            return Ok(Ok(lead));
        }
        for ((answer, change), index) in answers.into_iter().zip(&changes).zip(indexes) {
            let refused = match answer {
                Inserted::Created(_) => continue,
                Inserted::Existing(id) => IntakeError::KeyReused(id),
                other => match self.settle(other, change, |id| *id) {
                    Ok(_) => continue,
                    Err(e) => e,
                },
            };
            refusal.changes.push((index, refused));
        }
        refusal.changes.sort_by_key(|(index, _)| *index);
        Ok(Err(refusal))
    }

    /// What keeps valid changes from being applied as one: several zones, a backend that
    /// applies one change at a time, an RRset changed twice, an UPDATE over 64 KiB.
    fn as_one(&self, changes: &[(u32, ChangeRequest)]) -> Vec<FieldError> {
        let mut problems = Vec::new();
        let mut zones: Vec<&str> = changes
            .iter()
            .filter_map(|(_, c)| c.zone.as_deref())
            .collect();
        zones.sort_unstable();
        zones.dedup();
        if zones.len() > 1 {
            problems.push(FieldError {
                field: "atomic".into(),
                message: format!(
                    "the changes are in zones {}; an atomic set is in one zone",
                    zones.join(", ")
                ),
            });
            return problems;
        }
        let zone = zones
            .first()
            .and_then(|name| self.zones.iter().find(|z| z.name == *name));
        let rfc2136 = match zone.map(|z| &z.backend) {
            None | Some(Backend::Simulated) => false,
            Some(Backend::Rfc2136(_)) => true,
            Some(backend @ (Backend::Ansible(_) | Backend::PowerDns(_))) => {
                problems.push(FieldError {
                    field: "atomic".into(),
                    message: format!(
                        "zone {} is applied by {}, which applies one change at a time; send the set with \"atomic\": false",
                        zones[0],
                        backend.kind()
                    ),
                });
                return problems;
            }
        };
        for (position, (index, change)) in changes.iter().enumerate() {
            let earlier = changes[..position].iter().find(|(_, other)| {
                other.domain == change.domain && other.record_type == change.record_type
            });
            if let Some((first, _)) = earlier {
                problems.push(FieldError {
                    field: format!("changes[{index}]"),
                    message: format!(
                        "changes the {} {} RRset, as changes[{first}] does; an atomic set changes each RRset once",
                        change.domain, change.record_type
                    ),
                });
            }
        }
        let bytes = estimated_update_bytes(changes.iter().map(|(_, c)| c));
        if rfc2136 && bytes > MAX_MESSAGE_BYTES {
            problems.push(FieldError {
                field: "atomic".into(),
                message: format!(
                    "the set's UPDATE would take about {bytes} bytes and one DNS message takes at most {MAX_MESSAGE_BYTES}: split the set"
                ),
            });
        }
        problems
    }
}
