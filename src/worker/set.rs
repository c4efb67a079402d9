//! An atomic change set, processed by its lead's claim: every change read and planned, the
//! set refused as a whole if any change conflicts, then applied by the backend as one unit
//! (`Provisioner::apply_set`) under the lead's lease and fence, and every request's outcome
//! written in one transaction (`RequestStore::finish_set`).
//!
//! Each change is planned as the single path plans it, with one difference: CNAME exclusivity
//! is judged on the name as the whole set leaves it (the ledger's types at the name that the
//! set does not change, and the types the set leaves with records), so a set may delete a
//! name's A and create a CNAME there.

use std::time::Instant;

use super::{
    Done, Held, Worker, check_owner, check_rows, outcome_label, planned_change, refuse_conflicts,
    unreadable_ledger,
};
use crate::domain::plan::{self, Intent, LedgerView, LiveView};
use crate::domain::{BeforeAfter, LiveRrset, RecordType};
use crate::provision::{Fence, PlannedChange, ProvisionError, Provisioner};
use crate::store::{Claim, DnsRequest, SetMember, ledger_rrset};
use crate::telemetry::ProvisioningAttempt;
use crate::worker::ExecutionOutcome;

/// One change of the set as read: its RRset's owner and the live RRset.
struct Read {
    owner: Option<String>,
    live: Option<LiveRrset>,
}

impl Worker {
    /// The members of `lead`'s set.
    pub(super) async fn members(&self, lead: &DnsRequest) -> anyhow::Result<Vec<DnsRequest>> {
        let Some(place) = lead.change_set else {
            return Ok(Vec::new());
        };
        Ok(self.store.set_members(place.id).await?)
    }

    /// Processes the atomic set whose lead `claim` holds.
    pub(super) async fn process_set(
        &self,
        claim: Claim,
        fence: Fence,
        abort: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<ExecutionOutcome> {
        let request = &claim.request;
        let id = request.id;
        let members = self.members(request).await?;
        tracing::info!(request_id = %id, attempt = request.attempts, changes = members.len() + 1, "processing an atomic change set");
        let mut changes: Vec<PlannedChange> = std::iter::once(request)
            .chain(&members)
            .map(|r| planned_change(r, fence.clone()))
            .collect();
        let backend = self
            .router
            .backend(request.zone.as_deref(), request.backend.as_deref());
        let started = Instant::now();
        let work = self.plan_set_and_apply(backend.clone(), &mut changes);
        let result = match self.holding(&claim, &fence, abort, work).await {
            Held::Done(result) => result,
            Held::Lost => return Ok(self.lost(id)),
            Held::Aborted => {
                return self
                    .release(
                        &claim,
                        "the worker stopped before the change set was provisioned; it will be retried",
                    )
                    .await;
            }
        };
        let elapsed = started.elapsed();
        let mut rrsets = changes.iter_mut().map(|c| c.rrsets.take());
        let lead_rrsets = rrsets.next().flatten();
        let members: Vec<SetMember> = members
            .into_iter()
            .zip(rrsets)
            .map(|(request, rrsets)| SetMember { request, rrsets })
            .collect();
        let (outcome, entries) = self.judge(&claim, result, lead_rrsets, elapsed);
        ProvisioningAttempt {
            backend: backend.as_ref().map_or("none", |b| b.kind()),
            outcome: outcome_label(&outcome),
            duration: elapsed,
        }
        .emit();
        self.settle(&claim, outcome, &entries, &members).await
    }

    /// Reads and plans every change, refuses the set on any conflict (naming the change), and
    /// applies it as one.
    async fn plan_set_and_apply(
        &self,
        backend: Result<std::sync::Arc<dyn Provisioner>, ProvisionError>,
        changes: &mut [PlannedChange],
    ) -> Result<Done, ProvisionError> {
        let backend = backend?;
        let mut reads = Vec::with_capacity(changes.len());
        for change in changes.iter_mut() {
            reads.push(self.read(backend.as_ref(), change).await?);
        }
        // First the afters without exclusivity, then each change against the name as the set
        // leaves it.
        let mut afters = Vec::with_capacity(changes.len());
        for (change, read) in changes.iter().zip(&reads) {
            let planned = plan_one(change, read, Vec::new())?;
            afters.push(planned.after.is_some());
        }
        let mut plans = Vec::with_capacity(changes.len());
        for (position, (change, read)) in changes.iter().zip(&reads).enumerate() {
            let held = self.types_left(changes, &afters, position).await?;
            let planned = plan_one(change, read, change.record_type.exclusive_among(&held))?;
            let intent = intent(change)?;
            refuse_conflicts(change, intent, &planned).map_err(|e| {
                e.map_text(|why| {
                    format!(
                        "the set's {} {} change cannot be applied: {why}",
                        change.domain,
                        change.record_type.as_str()
                    )
                })
            })?;
            plans.push(planned);
        }
        for (change, planned) in changes.iter_mut().zip(plans) {
            change.rrsets = Some(BeforeAfter {
                before: planned.before.unwrap_or_else(LiveRrset::absent),
                after: planned.after.unwrap_or_else(LiveRrset::absent),
            });
        }
        backend.apply_set(changes).await.map(Done::Applied)
    }

    /// The change's RRset: owner and ledger rows (checked as for a single change), and the
    /// live RRset (the ledger's where that is the live state).
    async fn read(
        &self,
        backend: &dyn Provisioner,
        change: &mut PlannedChange,
    ) -> Result<Read, ProvisionError> {
        let (owner, ledger) = self
            .store
            .rrset(&change.domain, change.record_type)
            .await
            .map_err(unreadable_ledger)?;
        change.managed = ledger.iter().map(|record| record.data.clone()).collect();
        intent(change)?;
        check_owner(change, owner.as_deref())?;
        check_rows(change, &ledger)?;
        let live = match backend
            .read_rrset(&change.domain, change.record_type)
            .await?
        {
            Some(live) => Some(live),
            None => ledger_rrset(&ledger),
        };
        Ok(Read {
            owner,
            live: live.filter(|r| !r.records.is_empty()),
        })
    }

    /// The types with records at the name of `changes[position]` once the set is applied,
    /// apart from its own: the ledger's that the set does not change there, and those the set
    /// leaves with records (`afters`).
    async fn types_left(
        &self,
        changes: &[PlannedChange],
        afters: &[bool],
        position: usize,
    ) -> Result<Vec<RecordType>, ProvisionError> {
        let change = &changes[position];
        let here: Vec<(RecordType, bool)> = changes
            .iter()
            .zip(afters)
            .filter(|(c, _)| c.domain == change.domain)
            .map(|(c, after)| (c.record_type, *after))
            .collect();
        let held = self
            .store
            .record_types(&change.domain)
            .await
            .map_err(unreadable_ledger)?;
        let mut left: Vec<RecordType> = held
            .into_iter()
            .filter(|t| !here.iter().any(|(changed, _)| changed == t))
            .collect();
        left.extend(
            here.iter()
                .filter(|(_, after)| *after)
                .map(|(record_type, _)| *record_type),
        );
        left.retain(|t| *t != change.record_type);
        Ok(left)
    }
}

/// The change's intent; an adoption has none (and is never part of a set).
fn intent(change: &PlannedChange) -> Result<Intent<'_>, ProvisionError> {
    Intent::of(change.operation, &change.records, change.config.ttl).ok_or_else(|| {
        ProvisionError::Rejected("an adoption cannot be part of a change set".into())
    })
}

/// The change planned against what was read, with `other_types` at its name.
fn plan_one(
    change: &PlannedChange,
    read: &Read,
    other_types: Vec<RecordType>,
) -> Result<plan::Plan, ProvisionError> {
    let live = LiveView::Read {
        rrset: read.live.clone(),
        other_types,
    };
    Ok(plan::plan(
        &change.account_id,
        &change.domain,
        change.record_type,
        intent(change)?,
        LedgerView {
            owner: read.owner.as_deref(),
            managed: &change.managed,
        },
        &live,
    )
    .expecting(change.expect.as_ref()))
}
