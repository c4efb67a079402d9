//! Dry runs (`?dry_run=true`): a change checked as intake checks it (account, validation,
//! zone, policies), then planned against the live RRset and the ledger by
//! [`crate::domain::plan`], with nothing stored, queued or written to any server.
//!
//! The live RRset is read by the zone's backend, from the process that answers the dry run
//! (so `serve` queries primaries): rfc2136 from the primary, powerdns over its HTTP API,
//! ansible from the zone's `verify_server`. The simulated backend has no live state apart from the ledger, and an
//! ansible zone without a `verify_server` cannot be read: both are planned against the
//! ledger, and the answer says so (`read_from: "ledger"`). A server that does not answer gives
//! `before: null` and an `unreadable` conflict.

use std::sync::Arc;

use serde::Serialize;

use crate::domain::plan::{self, ConflictKind, Intent, LedgerView, LiveView};
use crate::domain::zoneform::RrsetView;
use crate::domain::{
    Actor, ChangeBody, ChangeRequest, LiveRrset, Operation, RecordData, RecordType,
};
use crate::intake::{Intake, IntakeError};
use crate::provision::{ProvisionError, Provisioner, ZoneRouter};
use crate::store::{RequestStore, StoreError, ledger_rrset};

/// The answer to a dry run.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DryRun {
    /// Always `true`: nothing was stored, queued or written to any server.
    pub dry_run: bool,
    /// One entry per RRset the change touches.
    pub plan: Vec<PlannedRrset>,
}

/// What a change would do to one RRset.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PlannedRrset {
    pub domain: String,
    pub record_type: RecordType,
    /// The RRset now; `null` when it is absent or could not be read.
    pub before: Option<RrsetView>,
    /// The RRset after the change; `null` when it would be empty.
    pub after: Option<RrsetView>,
    /// Every reason the change would fail; empty when it would apply.
    pub conflicts: Vec<ConflictView>,
    /// Where `before` comes from: the zone's server, or dnsorch's ledger (simulated zones,
    /// ansible zones without a `verify_server`).
    pub read_from: ReadFrom,
}

/// A conflict: its kind and a message for people.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConflictView {
    pub kind: ConflictKind,
    pub message: String,
}

/// Where the plan's `before` was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    Server,
    Ledger,
}

/// Why a dry run has no plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// As intake would refuse the change (422, 403, 429).
    #[error(transparent)]
    Intake(#[from] IntakeError),
    /// The ledger could not be read (503).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Plans changes without making them.
#[derive(Clone)]
pub struct Planner {
    intake: Intake,
    store: Arc<dyn RequestStore>,
    router: Arc<ZoneRouter>,
}

impl Planner {
    pub fn new(intake: Intake, store: Arc<dyn RequestStore>, router: Arc<ZoneRouter>) -> Self {
        Self {
            intake,
            store,
            router,
        }
    }

    /// Checks `body` as a submission of `operation` by `actor`, then plans it.
    ///
    /// # Errors
    /// What intake would answer for the change, or the ledger cannot be read.
    pub async fn plan(
        &self,
        actor: &Actor,
        body: ChangeBody,
        operation: Operation,
    ) -> Result<DryRun, PlanError> {
        self.plan_in(actor, body, operation, None).await
    }

    /// Plans the changes of an atomic set as one: each against its name as the whole set
    /// leaves it (the types the set changes there count as the set leaves them), as the worker
    /// will plan them. The answers are in the order of `items`.
    pub async fn plan_set(
        &self,
        actor: &Actor,
        items: Vec<(Operation, ChangeBody)>,
    ) -> Vec<Result<DryRun, PlanError>> {
        let mut alone = Vec::with_capacity(items.len());
        for (operation, body) in &items {
            alone.push(self.plan_in(actor, body.clone(), *operation, None).await);
        }
        // What each planned change leaves at its name.
        let left: Vec<(String, RecordType, bool)> = alone
            .iter()
            .filter_map(|planned| planned.as_ref().ok())
            .flat_map(|dry| &dry.plan)
            .map(|p| (p.domain.clone(), p.record_type, p.after.is_some()))
            .collect();
        let mut planned = Vec::with_capacity(items.len());
        for ((operation, body), first) in items.into_iter().zip(alone) {
            let Ok(first) = first else {
                planned.push(first);
                continue;
            };
            let Some(own) = first.plan.first() else {
                planned.push(Ok(first));
                continue;
            };
            let here = SetAdjust {
                changed: left
                    .iter()
                    .filter(|(d, t, _)| *d == own.domain && *t != own.record_type)
                    .map(|(_, t, _)| *t)
                    .collect(),
                left: left
                    .iter()
                    .filter(|(d, t, after)| *d == own.domain && *t != own.record_type && *after)
                    .map(|(_, t, _)| *t)
                    .collect(),
            };
            planned.push(self.plan_in(actor, body, operation, Some(&here)).await);
        }
        planned
    }

    async fn plan_in(
        &self,
        actor: &Actor,
        body: ChangeBody,
        operation: Operation,
        set: Option<&SetAdjust>,
    ) -> Result<DryRun, PlanError> {
        let change = self.intake.check(actor, body, operation, None)?;
        let Some(intent) = Intent::of(change.operation, &change.records, change.ttl) else {
            return Err(PlanError::Intake(IntakeError::Invalid(
                crate::domain::ValidationError::field(
                    "dry_run",
                    "applies to create, delete and replace; an adoption changes no DNS",
                ),
            )));
        };
        let domain = change.domain.as_str();
        let (owner, ledger) = self.store.rrset(domain, change.record_type).await?;
        let managed: Vec<RecordData> = ledger.iter().map(|r| r.data.clone()).collect();
        let (live, read_from) = match self.backend(&change) {
            Ok(backend) => match read(backend.as_ref(), domain, change.record_type).await {
                Ok(Some(rrset)) => {
                    let others = self.other_types(backend.as_ref(), &change).await;
                    let others = others.map(|o| adjusted(o, change.record_type, set));
                    (live_view(rrset, others), ReadFrom::Server)
                }
                // No live state apart from the ledger (simulated, ansible without a server
                // to read).
                Ok(None) => {
                    let others =
                        adjusted(self.ledger_types(&change).await?, change.record_type, set);
                    (
                        live_view(ledger_rrset(&ledger), Ok(others)),
                        ReadFrom::Ledger,
                    )
                }
                Err(e) => (LiveView::Unreadable(e.to_string()), ReadFrom::Server),
            },
            Err(e) => (LiveView::Unreadable(e.to_string()), ReadFrom::Server),
        };
        let planned = plan::plan(
            &change.account_id,
            domain,
            change.record_type,
            intent,
            LedgerView {
                owner: owner.as_deref(),
                managed: &managed,
            },
            &live,
        )
        .expecting(change.expect.as_ref());
        Ok(DryRun {
            dry_run: true,
            plan: vec![PlannedRrset {
                domain: domain.to_owned(),
                record_type: change.record_type,
                before: planned.before.as_ref().map(RrsetView::of),
                after: planned.after.as_ref().map(RrsetView::of),
                conflicts: planned
                    .conflicts
                    .into_iter()
                    .map(|c| ConflictView {
                        kind: c.kind,
                        message: c.message,
                    })
                    .collect(),
                read_from,
            }],
        })
    }

    fn backend(&self, change: &ChangeRequest) -> Result<Arc<dyn Provisioner>, ProvisionError> {
        self.router
            .backend(change.zone.as_deref(), change.backend.as_deref())
    }

    /// The other types with records at the name, as the server holds them: for a CNAME,
    /// every other supported type; for any other type, the CNAME.
    async fn other_types(
        &self,
        backend: &dyn Provisioner,
        change: &ChangeRequest,
    ) -> Result<Vec<RecordType>, String> {
        let mut found = Vec::new();
        for other in change.record_type.exclusive_with() {
            match read(backend, change.domain.as_str(), other).await {
                Ok(Some(Some(_))) => found.push(other),
                Ok(Some(None) | None) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(found)
    }

    /// The other types with records at the name in the ledger.
    async fn ledger_types(&self, change: &ChangeRequest) -> Result<Vec<RecordType>, StoreError> {
        let held = self.store.record_types(change.domain.as_str()).await?;
        Ok(change.record_type.exclusive_among(&held))
    }
}

/// The other changes of an atomic set at a change's name: the types they change, and those
/// they leave with records.
struct SetAdjust {
    changed: Vec<RecordType>,
    left: Vec<RecordType>,
}

/// The other types at the name once the set is applied: those found that the set does not
/// change, and those it leaves with records.
fn adjusted(found: Vec<RecordType>, own: RecordType, set: Option<&SetAdjust>) -> Vec<RecordType> {
    let Some(set) = set else {
        return found;
    };
    let mut others: Vec<RecordType> = found
        .into_iter()
        .filter(|t| !set.changed.contains(t))
        .collect();
    others.extend(own.exclusive_among(&set.left));
    others
}

/// The server's RRset; `Ok(None)` when the backend has no live state apart from the ledger.
/// An empty RRset is `Some` with no records.
async fn read(
    backend: &dyn Provisioner,
    domain: &str,
    record_type: RecordType,
) -> Result<Option<Option<LiveRrset>>, ProvisionError> {
    let read = backend.read_rrset(domain, record_type).await?;
    Ok(read.map(|rrset| Some(rrset).filter(|r| !r.records.is_empty())))
}

fn live_view(rrset: Option<LiveRrset>, others: Result<Vec<RecordType>, String>) -> LiveView {
    match others {
        Ok(other_types) => LiveView::Read { rrset, other_types },
        Err(why) => LiveView::Unreadable(why),
    }
}
