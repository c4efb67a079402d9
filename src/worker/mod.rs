//! Workers: claim a request, provision it, write the outcome under the claim's token.
//!
//! A worker waits on the task channel; when the channel is quiet it sweeps the database for
//! the oldest due request, which is how retries after backoff, requests whose delivery was
//! lost, and requests left PENDING by a stopped process are found. While a backend works the
//! worker renews its lease; if the lease is lost, the attempt is dropped and its outcome is
//! never written (the token no longer matches). The token cannot fence DNS itself, so each
//! attempt carries a [`Fence`] that the backend checks before it writes: it closes once the
//! last successful renewal is older than the lease minus `LEASE_MARGIN_SECONDS`. The backend is the one recorded with the
//! request at intake (zone and backend, see [`ZoneRouter`]); a request whose recorded backend
//! this process does not have configured is FAILED, saying so. A change sent whose outcome is
//! not known makes the request UNKNOWN; a claim of an UNKNOWN request (it stays UNKNOWN and
//! counts no attempt) asks the server instead of applying anything.
//!
//! Before a change is applied it is planned with [`crate::domain::plan`], the rules a dry run
//! reports by: the ledger's rows and owner, the live RRset as the backend reads it (the ledger
//! where that is the live state), and for an addition the types the ledger holds at the name.
//! A conflict fails the request with the planner's reason; the RRset read and the one planned
//! are written with the outcome as the request's `before` and `after`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::domain::plan::{self, ConflictKind, Intent, LedgerView, LiveView};
use crate::domain::{
    BeforeAfter, LiveRrset, LogEntry, Operation, RecordData, RequestId, RequestStatus, SetPlace,
    SetRole,
};
use crate::provision::{
    Applied, Fence, Observed, PlannedChange, ProvisionError, Provisioner, ZoneRouter,
};
use crate::queue::TaskChannel;
use crate::queue::retry::RetryPolicy;
use crate::store::{
    Claim, DnsRecord, DnsRequest, OpeningLog, Outcome, RequestStore, SetMember, ledger_rrset,
};
use crate::telemetry::{ProvisioningAttempt, RequestFinished};

mod set;

/// The settings a worker needs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How long a claim holds before another worker may take the request over.
    pub lease: Duration,
    /// Backend writes start only until `lease - lease_margin` after the last successful
    /// renewal (see [`Fence`]).
    pub lease_margin: Duration,
    /// Claims per request before a transient error becomes FAILED.
    pub max_attempts: u32,
    pub retry: RetryPolicy,
    /// How long to wait on the channel before sweeping the database.
    pub poll_interval: Duration,
}

/// What one step of a worker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionOutcome {
    /// A request was claimed and its attempt ended in this status.
    Processed(RequestId, RequestStatus),
    /// A request was claimed but the claim was lost before the outcome was written.
    LostClaim(RequestId),
    /// Nothing was claimable.
    Idle,
}

/// Claims and processes requests.
#[derive(Clone)]
pub struct Worker {
    store: Arc<dyn RequestStore>,
    channel: Arc<dyn TaskChannel>,
    router: Arc<ZoneRouter>,
    config: WorkerConfig,
}

impl Worker {
    /// A worker over these parts.
    pub fn new(
        store: Arc<dyn RequestStore>,
        channel: Arc<dyn TaskChannel>,
        router: Arc<ZoneRouter>,
        config: WorkerConfig,
    ) -> Self {
        Self {
            store,
            channel,
            router,
            config,
        }
    }

    /// Claims the oldest due request, if any, and processes it to the end of this attempt.
    ///
    /// # Errors
    /// The store failed.
    pub async fn try_execute_next(&self) -> anyhow::Result<ExecutionOutcome> {
        self.execute(None, &CancellationToken::new()).await
    }

    /// Loops until `shutdown`: waits for deliveries, sweeps when idle. Work in flight when
    /// `shutdown` fires runs on; when `abort` fires it is released back to PENDING.
    pub async fn run_until_stopped(self, shutdown: CancellationToken, abort: CancellationToken) {
        while !shutdown.is_cancelled() {
            let delivery = tokio::select! {
                () = shutdown.cancelled() => break,
                delivery = self.channel.next(self.config.poll_interval) => delivery,
            };
            let (delivery, channel_down) = match delivery {
                Ok(delivery) => (delivery, false),
                Err(e) => {
                    tracing::debug!(error.message = %e, "task channel unavailable; sweeping the database");
                    (None, true)
                }
            };
            let id = delivery.as_ref().map(|d| d.request_id);
            let mut result = self.execute(id, &abort).await;
            if matches!(result, Ok(ExecutionOutcome::Idle)) && id.is_some() {
                // The delivered request was not claimable (done, leased, or waiting its
                // turn); something else may be due.
                result = self.execute(None, &abort).await;
            }
            if let Err(e) = &result {
                tracing::error!(error.message = %e, error.cause_chain = ?e, "worker step failed");
            }
            // A failed step or an idle sweep while the channel is down would otherwise spin.
            if result.is_err() || (channel_down && matches!(result, Ok(ExecutionOutcome::Idle))) {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                }
            }
            if let Some(delivery) = &delivery
                && let Err(e) = self.channel.ack(delivery).await
            {
                tracing::warn!(request_id = %delivery.request_id, error.message = %e, "failed to acknowledge a delivery");
            }
        }
    }

    async fn execute(
        &self,
        id: Option<RequestId>,
        abort: &CancellationToken,
    ) -> anyhow::Result<ExecutionOutcome> {
        let asked = Instant::now();
        let claim = self
            .store
            .claim(id, self.config.lease, self.opening_log())
            .await
            .context("Failed to claim a request")?;
        let Some(claim) = claim else {
            return Ok(ExecutionOutcome::Idle);
        };
        let request_id = claim.request.id;
        let span = tracing::info_span!("process", request_id = %request_id);
        let fence = Fence::new(asked, self.config.lease, self.config.lease_margin);
        self.process(claim, fence, abort).instrument(span).await
    }

    async fn process(
        &self,
        claim: Claim,
        fence: Fence,
        abort: &CancellationToken,
    ) -> anyhow::Result<ExecutionOutcome> {
        let request = &claim.request;
        let id = request.id;
        if request.status == RequestStatus::Unknown {
            return self.resolve(claim, fence, abort).await;
        }
        if is_lead(request) {
            return self.process_set(claim, fence, abort).await;
        }
        tracing::info!(request_id = %id, attempt = request.attempts, "processing started");
        let mut change = planned_change(request, fence.clone());
        let backend = self
            .router
            .backend(request.zone.as_deref(), request.backend.as_deref());
        let started = Instant::now();
        let work = self.plan_and_apply(backend.clone(), &mut change);
        let result = match self.holding(&claim, &fence, abort, work).await {
            Held::Done(result) => result,
            Held::Lost => return Ok(self.lost(id)),
            Held::Aborted => {
                // An apply cut short may have sent its change: retried, its read, plan and
                // idempotent apply settle that.
                return self
                    .release(
                        &claim,
                        "the worker stopped before provisioning finished; the request will be retried",
                    )
                    .await;
            }
        };
        let elapsed = started.elapsed();
        let (outcome, entries) = self.judge(&claim, result, change.rrsets.take(), elapsed);
        ProvisioningAttempt {
            backend: backend.as_ref().map_or("none", |b| b.kind()),
            outcome: outcome_label(&outcome),
            duration: elapsed,
        }
        .emit();
        self.settle(&claim, outcome, &entries, &[]).await
    }

    /// Writes an outcome under the claim (and, for an atomic set's lead, its members' shares
    /// of it in the same transaction); what the step did.
    async fn settle(
        &self,
        claim: &Claim,
        outcome: Outcome,
        entries: &[LogEntry],
        members: &[SetMember],
    ) -> anyhow::Result<ExecutionOutcome> {
        let request = &claim.request;
        let id = request.id;
        let written = if members.is_empty() {
            self.store.finish(claim, &outcome, entries).await?
        } else {
            self.store
                .finish_set(claim, &outcome, entries, members)
                .await?
        };
        if !written {
            return Ok(self.lost(id));
        }
        let status = match outcome {
            Outcome::Completed { .. } | Outcome::Adopted { .. } => RequestStatus::Completed,
            Outcome::Failed { .. } => RequestStatus::Failed,
            Outcome::Retry { .. } => RequestStatus::Pending,
            Outcome::Unknown { .. } => RequestStatus::Unknown,
        };
        if status.is_terminal() {
            for finished in std::iter::once(request).chain(members.iter().map(|m| &m.request)) {
                RequestFinished {
                    record_type: finished.record_type,
                    source: finished.source.clone(),
                    completed: status == RequestStatus::Completed,
                }
                .emit();
            }
        }
        tracing::info!(request_id = %id, status = status.as_str(), "attempt finished");
        Ok(ExecutionOutcome::Processed(id, status))
    }

    /// Settles a request whose outcome is UNKNOWN by asking the server: COMPLETED (with its
    /// ledger row) when the change is in place; when it is not, PENDING for another attempt
    /// while attempts are left, else FAILED; still UNKNOWN, checked again later, when the
    /// server cannot be read. Nothing is written to DNS.
    async fn resolve(
        &self,
        claim: Claim,
        fence: Fence,
        abort: &CancellationToken,
    ) -> anyhow::Result<ExecutionOutcome> {
        let request = &claim.request;
        let id = request.id;
        tracing::info!(request_id = %id, "checking an unknown outcome");
        // An atomic set's lead answers for the whole set: in place when every change is.
        let members = if is_lead(request) {
            self.members(request).await?
        } else {
            Vec::new()
        };
        let changes: Vec<PlannedChange> = std::iter::once(request)
            .chain(&members)
            .map(|r| planned_change(r, fence.clone()))
            .collect();
        let observe = async {
            let backend = self
                .router
                .backend(request.zone.as_deref(), request.backend.as_deref())?;
            let mut all = Observed {
                in_place: true,
                note: String::new(),
            };
            for change in &changes {
                let observed = backend.observe(change).await?;
                all.in_place &= observed.in_place;
                if !all.note.is_empty() {
                    all.note.push_str("; ");
                }
                all.note.push_str(&observed.note);
            }
            Ok::<_, ProvisionError>(all)
        };
        let observed = match self.holding(&claim, &fence, abort, observe).await {
            Held::Done(observed) => Some(observed),
            Held::Lost => return Ok(self.lost(id)),
            Held::Aborted => None,
        };
        let attempt = request.attempts;
        let check_again = self.config.retry.delay_after(attempt);
        let (outcome, entries) = match observed {
            None => {
                let why =
                    "the worker stopped before the check finished; the outcome is still unknown";
                let outcome = Outcome::Unknown {
                    error: why.into(),
                    retry_in: Duration::ZERO,
                    rrsets: None,
                };
                (outcome, vec![LogEntry::warning(why)])
            }
            Some(Ok(observed)) if observed.in_place => {
                let now = chrono::Utc::now();
                let entries = vec![
                    LogEntry::info(format!("outcome checked: {}", observed.note)),
                    LogEntry::info("the change is in place; status COMPLETED"),
                ];
                let outcome = Outcome::Completed {
                    applied_at: request.applied_at.unwrap_or(now),
                    verified_at: Some(now),
                    rrsets: None,
                };
                (outcome, entries)
            }
            Some(Ok(observed)) if attempt < self.config.max_attempts => {
                let entries = vec![
                    LogEntry::info(format!("outcome checked: {}", observed.note)),
                    LogEntry::warning(format!(
                        "the change is not in place; applying it again (attempt {} of {})",
                        attempt + 1,
                        self.config.max_attempts
                    )),
                ];
                let outcome = Outcome::Retry {
                    error: format!("the change was not in place: {}", observed.note),
                    retry_in: Duration::ZERO,
                };
                (outcome, entries)
            }
            Some(Ok(observed)) => {
                let why = format!(
                    "the change is not in place ({}); no attempts left; status FAILED",
                    observed.note
                );
                let outcome = Outcome::Failed {
                    error: format!("the change was not in place: {}", observed.note),
                };
                (outcome, vec![LogEntry::error(why)])
            }
            Some(Err(error)) => {
                let entries = vec![LogEntry::warning(format!(
                    "could not check the outcome: {error}; still UNKNOWN, checking again in {:.3}s",
                    check_again.as_secs_f64()
                ))];
                let outcome = Outcome::Unknown {
                    error: error.to_string(),
                    retry_in: check_again,
                    rrsets: None,
                };
                (outcome, entries)
            }
        };
        let members: Vec<SetMember> = members
            .into_iter()
            .map(|request| SetMember {
                request,
                rrsets: None,
            })
            .collect();
        self.settle(&claim, outcome, &entries, &members).await
    }

    /// With the request's recorded backend: reads the RRset's ledger rows and owner and the
    /// live RRset, plans the change with [`plan::plan`] (the rules a dry run reports by),
    /// refuses it on a conflict, then applies it with the plan's before and after. An
    /// adoption reads the live RRset instead.
    async fn plan_and_apply(
        &self,
        backend: Result<Arc<dyn Provisioner>, ProvisionError>,
        change: &mut PlannedChange,
    ) -> Result<Done, ProvisionError> {
        let backend = backend?;
        let (owner, ledger) = self
            .store
            .rrset(&change.domain, change.record_type)
            .await
            .map_err(unreadable_ledger)?;
        change.managed = ledger.iter().map(|record| record.data.clone()).collect();
        let Some(intent) = Intent::of(change.operation, &change.records, change.config.ttl) else {
            let live = backend
                .read_rrset(&change.domain, change.record_type)
                .await?;
            return adoption(change, owner.as_deref(), &ledger, live);
        };
        check_owner(change, owner.as_deref())?;
        check_rows(change, &ledger)?;
        let live = self.live(backend.as_ref(), change, &ledger, intent).await?;
        let planned = plan::plan(
            &change.account_id,
            &change.domain,
            change.record_type,
            intent,
            LedgerView {
                owner: owner.as_deref(),
                managed: &change.managed,
            },
            &live,
        )
        .expecting(change.expect.as_ref());
        refuse_conflicts(change, intent, &planned)?;
        change.rrsets = Some(BeforeAfter {
            before: planned.before.unwrap_or_else(LiveRrset::absent),
            after: planned.after.unwrap_or_else(LiveRrset::absent),
        });
        backend.apply(change).await.map(Done::Applied)
    }

    /// The RRset as the backend reads it, or the ledger's where the ledger is the live state;
    /// the other types at the name from the ledger (only an addition needs them: the server
    /// enforces CNAME exclusivity too, rfc2136 by prerequisites).
    async fn live(
        &self,
        backend: &dyn Provisioner,
        change: &PlannedChange,
        ledger: &[DnsRecord],
        intent: Intent<'_>,
    ) -> Result<LiveView, ProvisionError> {
        let other_types = match intent {
            Intent::Add { .. } | Intent::Replace { .. } => {
                let held = self
                    .store
                    .record_types(&change.domain)
                    .await
                    .map_err(unreadable_ledger)?;
                change.record_type.exclusive_among(&held)
            }
            Intent::Remove { .. } | Intent::RemoveAll => Vec::new(),
        };
        let rrset = match backend
            .read_rrset(&change.domain, change.record_type)
            .await?
        {
            Some(live) => Some(live),
            None => ledger_rrset(ledger),
        };
        Ok(LiveView::Read {
            rrset: rrset.filter(|r| !r.records.is_empty()),
            other_types,
        })
    }

    /// The log lines written with each claim: attempt, config, the backend recorded at intake.
    fn opening_log(&self) -> OpeningLog {
        let max_attempts = self.config.max_attempts;
        Arc::new(move |request| {
            if request.status == RequestStatus::Unknown {
                return vec![LogEntry::info(format!(
                    "checking the outcome of attempt {} at the server",
                    request.attempts
                ))];
            }
            let backend = request.backend.as_deref().unwrap_or("none recorded");
            let zone = request
                .zone
                .as_deref()
                .map(|zone| format!(" (zone {zone})"))
                .unwrap_or_default();
            vec![
                LogEntry::info(format!(
                    "processing started (attempt {} of {max_attempts})",
                    request.attempts
                )),
                LogEntry::info(format!(
                    "config: {}",
                    serde_json::to_string(&request.config).unwrap_or_default()
                )),
                LogEntry::info(format!("provisioning started: backend {backend}{zone}")),
            ]
        })
    }

    /// Decides the outcome of an attempt and the log lines that explain it.
    fn judge(
        &self,
        claim: &Claim,
        result: Result<Done, ProvisionError>,
        rrsets: Option<BeforeAfter>,
        elapsed: Duration,
    ) -> (Outcome, Vec<LogEntry>) {
        let attempt = claim.request.attempts;
        match result {
            Ok(Done::Adopted { live, notes }) => {
                let mut entries: Vec<LogEntry> = notes.into_iter().map(LogEntry::info).collect();
                entries.push(LogEntry::info("RRset adopted; status COMPLETED"));
                let outcome = Outcome::Adopted {
                    at: chrono::Utc::now(),
                    live,
                };
                (outcome, entries)
            }
            Ok(Done::Applied(applied)) => {
                let mut entries: Vec<LogEntry> =
                    applied.notes.into_iter().map(LogEntry::info).collect();
                entries.push(LogEntry::info(format!(
                    "provisioning finished in {:.3}s",
                    elapsed.as_secs_f64()
                )));
                entries.push(LogEntry::info("record provisioned; status COMPLETED"));
                let outcome = Outcome::Completed {
                    applied_at: applied.applied_at,
                    verified_at: applied.verified_at,
                    rrsets,
                };
                (outcome, entries)
            }
            Err(ProvisionError::Uncertain(why)) => {
                let check_in = self.config.retry.delay_after(attempt);
                let entries = vec![LogEntry::warning(format!(
                    "attempt {attempt}: outcome unknown: {why}; status UNKNOWN until the server is checked (in {:.3}s)",
                    check_in.as_secs_f64()
                ))];
                let outcome = Outcome::Unknown {
                    error: format!("outcome unknown: {why}"),
                    retry_in: check_in,
                    rrsets,
                };
                (outcome, entries)
            }
            Err(error) if error.is_transient() && attempt < self.config.max_attempts => {
                let retry_in = self.config.retry.delay_after(attempt);
                let entries = vec![LogEntry::warning(format!(
                    "attempt {attempt} failed: {error}; retrying in {:.3}s",
                    retry_in.as_secs_f64()
                ))];
                let outcome = Outcome::Retry {
                    error: error.to_string(),
                    retry_in,
                };
                (outcome, entries)
            }
            Err(error) => {
                let why = if error.is_transient() {
                    format!("attempt {attempt} failed: {error}; no attempts left; status FAILED")
                } else {
                    format!("attempt {attempt} failed: {error}; not retried; status FAILED")
                };
                let outcome = Outcome::Failed {
                    error: error.to_string(),
                };
                (outcome, vec![LogEntry::error(why)])
            }
        }
    }

    /// Runs `work` while holding the claim's lease, until it ends, the lease is lost or `abort`
    /// fires (the work is then dropped).
    async fn holding<T>(
        &self,
        claim: &Claim,
        fence: &Fence,
        abort: &CancellationToken,
        work: impl Future<Output = T>,
    ) -> Held<T> {
        tokio::select! {
            done = work => Held::Done(done),
            () = self.hold_lease(claim, fence) => Held::Lost,
            () = abort.cancelled() => Held::Aborted,
        }
    }

    /// Renews the lease every third of its length, moving the fence on at each success;
    /// returns only when the lease is lost.
    async fn hold_lease(&self, claim: &Claim, fence: &Fence) {
        let every = self.config.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            let asked = Instant::now();
            match self.store.renew_lease(claim, self.config.lease).await {
                Ok(true) => fence.renewed(asked),
                Ok(false) => return,
                Err(e) => {
                    // We keep working, but the fence closes: no backend write starts once
                    // the last renewal is older than the lease minus the margin. If the
                    // database stays away past the lease, the outcome write is refused
                    // and another worker retries.
                    tracing::warn!(request_id = %claim.request.id, error.message = %e, "failed to renew a lease");
                }
            }
        }
    }

    /// Puts a claimed request back to PENDING, due now, at shutdown past the grace period.
    async fn release(&self, claim: &Claim, why: &str) -> anyhow::Result<ExecutionOutcome> {
        let id = claim.request.id;
        let outcome = Outcome::Retry {
            error: why.into(),
            retry_in: Duration::ZERO,
        };
        self.store
            .finish(claim, &outcome, &[LogEntry::warning(why)])
            .await?;
        tracing::warn!(request_id = %id, "released an unfinished request at shutdown");
        Ok(ExecutionOutcome::Processed(id, RequestStatus::Pending))
    }

    fn lost(&self, id: RequestId) -> ExecutionOutcome {
        tracing::warn!(request_id = %id, "lease lost to another worker; this attempt's outcome is dropped");
        ExecutionOutcome::LostClaim(id)
    }
}

/// How work under a claim ended ([`Worker::holding`]).
enum Held<T> {
    Done(T),
    /// The lease was taken over: the work's outcome must not be written.
    Lost,
    /// The process is stopping past its grace period.
    Aborted,
}

/// What an attempt did when it succeeded.
#[derive(Debug)]
enum Done {
    Applied(Applied),
    /// The RRset read for an adoption (`None`: the ledger is the live state).
    Adopted {
        live: Option<LiveRrset>,
        notes: Vec<String>,
    },
}

fn planned_change(request: &DnsRequest, fence: Fence) -> PlannedChange {
    PlannedChange {
        request_id: request.id,
        account_id: request.account_id.clone(),
        operation: request.operation,
        record_type: request.record_type,
        domain: request.domain.clone(),
        records: request.records.clone(),
        config: request.config.clone(),
        managed: Vec::new(),
        expect: request.expect.clone(),
        rrsets: None,
        fence,
    }
}

/// Whether `request` is the lead of an atomic set (claimed and finished for the whole set).
fn is_lead(request: &DnsRequest) -> bool {
    matches!(
        request.change_set,
        Some(SetPlace {
            role: SetRole::Lead,
            ..
        })
    )
}

/// Intake refused changes in another account's RRset, and a create claimed its RRset there;
/// this holds for requests accepted before RRsets had owners, and for an adoption that moved
/// the RRset since. A create needs the RRset to be its account's; a delete, no one else's.
fn check_owner(change: &PlannedChange, owner: Option<&str>) -> Result<(), ProvisionError> {
    let what = format!(
        "the {} {} RRset",
        change.domain,
        change.record_type.as_str()
    );
    match (owner, change.operation) {
        (Some(owner), _) if owner != change.account_id => Err(ProvisionError::Rejected(format!(
            "{what} belongs to another account"
        ))),
        (None, Operation::Create | Operation::Replace) => Err(ProvisionError::Rejected(format!(
            "{what} has no owner, so this {} (accepted before RRsets had owners) cannot claim it now; submit it again",
            change.operation.as_str()
        ))),
        (_, Operation::Create | Operation::Delete | Operation::Replace | Operation::Adopt) => {
            Ok(())
        }
    }
}

/// dnsorch changes an RRset only while every ledger row of it is the requesting account's
/// (rows of another account are left from before RRsets had one owner).
fn check_rows(change: &PlannedChange, ledger: &[DnsRecord]) -> Result<(), ProvisionError> {
    let theirs = ledger
        .iter()
        .filter(|r| r.account_id != change.account_id)
        .count();
    if theirs == 0 {
        return Ok(());
    }
    Err(ProvisionError::Rejected(format!(
        "the {} {} RRset holds {theirs} record(s) of another account; dnsorch changes only the requesting account's records",
        change.domain,
        change.record_type.as_str()
    )))
}

/// A plan with conflicts is not applied. A delete of records that are gone from the server but
/// still in the ledger is not a conflict here: it is in place already (a retry after a crash,
/// or a removal at the server), and completing it brings the ledger up to date.
fn refuse_conflicts(
    change: &PlannedChange,
    intent: Intent<'_>,
    planned: &plan::Plan,
) -> Result<(), ProvisionError> {
    let gone_but_held = match intent {
        Intent::Remove { records } => records.iter().all(|r| change.managed.contains(r)),
        Intent::RemoveAll => !change.managed.is_empty(),
        Intent::Add { .. } | Intent::Replace { .. } => false,
    };
    let mut messages = Vec::new();
    let mut only_cname = true;
    for conflict in &planned.conflicts {
        match conflict.kind {
            ConflictKind::Absent if gone_but_held => continue,
            ConflictKind::CnameExclusive => {}
            ConflictKind::Absent
            | ConflictKind::OwnedByAnotherAccount
            | ConflictKind::Unmanaged
            | ConflictKind::Unreadable
            | ConflictKind::Unexpected => only_cname = false,
        }
        messages.push(conflict.message.clone());
    }
    if messages.is_empty() {
        return Ok(());
    }
    let why = messages.join("; ");
    if only_cname {
        Err(ProvisionError::PrerequisiteFailed(why))
    } else {
        Err(ProvisionError::Rejected(why))
    }
}

fn unreadable_ledger(e: crate::store::StoreError) -> ProvisionError {
    ProvisionError::Transient(format!("could not read the ledger: {e}"))
}

/// The outcome of an adoption: the live RRset (or, where the ledger is the live state, the
/// ledger's rows) for the request's account. Nothing to adopt is a failure.
fn adoption(
    change: &PlannedChange,
    owner: Option<&str>,
    ledger: &[DnsRecord],
    live: Option<LiveRrset>,
) -> Result<Done, ProvisionError> {
    let what = format!("{} {}", change.domain, change.record_type.as_str());
    let count = live.as_ref().map_or(ledger.len(), |l| l.records.len());
    if count == 0 {
        return Err(ProvisionError::Rejected(format!(
            "there is no {what} RRset to adopt"
        )));
    }
    let from = match owner {
        Some(owner) if owner == change.account_id => "already owned by this account".to_owned(),
        Some(_) => "owned by another account until now".to_owned(),
        None => "unowned until now".to_owned(),
    };
    let mut notes = vec![format!(
        "{what}: {count} record(s) adopted for account {} ({from})",
        change.account_id
    )];
    if let Some(live) = &live {
        let records: Vec<String> = live.records.iter().map(RecordData::presentation).collect();
        notes.push(format!(
            "live RRset (TTL {}): {}",
            live.ttl,
            records.join(", ")
        ));
    }
    Ok(Done::Adopted { live, notes })
}

fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Completed { .. } | Outcome::Adopted { .. } => "completed",
        Outcome::Retry { .. } => "retry",
        Outcome::Failed { .. } => "failed",
        Outcome::Unknown { .. } => "unknown",
    }
}
