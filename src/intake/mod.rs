//! Intake: the one path by which a change request enters dnsorch, whatever carried it.
//!
//! HTTP handlers (and the Kafka consumer) call [`Intake::submit`] with the verified actor:
//! decide the account from the principal, validate, route to a zone, authorize by the token's
//! policies (see `domain::policy`) and its rate limit, record the request durably as PENDING
//! with who submitted it (the store checks RRset ownership and the unfinished requests per
//! name in the same statement), then hand its id to the task channel. The row is committed
//! before `submit` returns, so an accepted request is never lost; a failed enqueue only
//! delays it (workers sweep the database).

pub mod atomic;
#[cfg(feature = "kafka")]
pub mod forward;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod kafka_properties;
pub mod message;

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{
    Actor, ChangeBody, ChangeRequest, Operation, Permission, Policy, Principal, RequestId,
    SetPlace, Source, Submitter, ValidationError, authorize, validate,
};
use crate::queue::TaskChannel;
use crate::ratelimit::TokenBuckets;
use crate::store::{DnsRequest, Inserted, RequestStore, StoreError};
use crate::telemetry::RequestAccepted;
use crate::zones::{Backend, Zones};

/// What `submit` did: the request as a row (`DnsRequest`), or by its id in batches.
#[derive(Debug)]
pub enum Submitted<T = DnsRequest> {
    /// A new request.
    Created(T),
    /// The idempotency key named an earlier request for the same change.
    Replayed(T),
}

/// Why `submit` refused.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The idempotency key was used before, for another change.
    #[error("idempotency key already used for request {0} with a different body")]
    KeyReused(RequestId),
    /// The principal may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// Over a rate limit (429): nothing was stored; try again after `retry_after`.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Duration,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One request of a batch: who submits what.
#[derive(Debug, Clone)]
pub struct Submission {
    pub actor: Actor,
    pub body: ChangeBody,
    pub operation: Operation,
    pub idempotency_key: Option<String>,
    /// The change set it is a change of.
    pub set: Option<SetPlace>,
}

/// Records change requests and queues them.
#[derive(Clone)]
pub struct Intake {
    store: Arc<dyn RequestStore>,
    channel: Arc<dyn TaskChannel>,
    zones: Arc<Zones>,
    /// The accounts `--forwarder` tokens may act for (`KAFKA_TRUSTED_ACCOUNTS`).
    trusted_accounts: Arc<[String]>,
    limits: Arc<IntakeLimits>,
}

/// The limits intake enforces.
#[derive(Debug)]
pub struct IntakeLimits {
    /// Per non-admin token (`RATE_LIMIT_PER_SECOND`, `RATE_LIMIT_BURST`).
    pub buckets: TokenBuckets,
    /// Unfinished requests per account and owner name (`MAX_UNFINISHED_PER_NAME`).
    pub max_unfinished_per_name: u32,
    /// The most bytes `resource.config.extra_config` may take as JSON (`MAX_EXTRA_CONFIG_BYTES`).
    pub max_extra_config_bytes: usize,
}

/// When to try again after the unfinished-requests limit: some of them will have finished.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Intake {
    /// Intake over a store and a channel, accepting names in `zones` (any name when there
    /// are none).
    pub fn new(
        store: Arc<dyn RequestStore>,
        channel: Arc<dyn TaskChannel>,
        zones: Arc<Zones>,
        trusted_accounts: Vec<String>,
        limits: IntakeLimits,
    ) -> Self {
        Self {
            store,
            channel,
            zones,
            trusted_accounts: trusted_accounts.into(),
            limits: Arc::new(limits),
        }
    }

    /// Decides the request's account and source from the actor, writing both into the body:
    /// the body's `account_id` is the principal's when omitted, and may name another account
    /// only for an admin (or a forwarder, for a trusted Kafka account, recorded as `kafka`).
    /// The body's `source` is ignored. An empty `account_id`, or one with control characters,
    /// is left for validation to refuse (a 422 naming the field, not a 403 echoing it).
    fn decide_account(&self, actor: &Actor, body: &mut ChangeBody) -> Result<(), IntakeError> {
        let principal = &actor.principal;
        let context = body.context.get_or_insert_with(Default::default);
        let account = context
            .account_id
            .get_or_insert_with(|| principal.account_id.clone());
        let trusted = self.trusted_accounts.iter().any(|a| a == account);
        // A forwarder acting for a trusted account forwards a Kafka message, whichever
        // account the forwarder's own is.
        let source = if principal.forwarder && trusted {
            Source::Kafka
        } else {
            actor.source
        };
        match account.as_str() {
            account
                if account == principal.account_id
                    || account.trim().is_empty()
                    || account.chars().any(char::is_control) => {}
            _ if principal.admin || (principal.forwarder && trusted) => {}
            account => {
                return Err(IntakeError::Forbidden(format!(
                    "context.account_id: this token acts for account '{}' and may not act for '{account}'",
                    principal.account_id
                )));
            }
        }
        context.source = Some(source.as_str().to_owned());
        Ok(())
    }

    /// Decides the account, validates the body, checks that its name is in a configured zone,
    /// authorizes it, and notes the zone and backend that will apply it and who submitted it.
    pub(crate) fn check(
        &self,
        actor: &Actor,
        mut body: ChangeBody,
        operation: Operation,
        idempotency_key: Option<&str>,
    ) -> Result<ChangeRequest, IntakeError> {
        self.decide_account(actor, &mut body)?;
        let mut change = validate(
            body,
            operation,
            idempotency_key,
            self.limits.max_extra_config_bytes,
        )?;
        change.submitter = Submitter::of(actor);
        let apex = if self.zones.is_empty() {
            change.backend = Some("simulated".into());
            None
        } else {
            let Some(zone) = self.zones.route(change.domain.as_str()) else {
                let served: Vec<&str> = self.zones.iter().map(|z| z.name.as_str()).collect();
                return Err(ValidationError::field(
                    "resource.domain",
                    format!(
                        "is in no zone dnsorch manages (zones: {})",
                        served.join(", ")
                    ),
                )
                .into());
            };
            // An adoption reads the live RRset; the other operations can fall back on the
            // ledger where there is no server to read.
            let reads_live = match operation {
                Operation::Adopt => true,
                Operation::Create | Operation::Delete | Operation::Replace => false,
            };
            if reads_live
                && let Backend::Ansible(config) = &zone.backend
                && config.verify_server.is_none()
            {
                return Err(ValidationError::field(
                    "resource.domain",
                    format!(
                        "zone {} is applied by ansible without a verify_server, so dnsorch cannot read the RRset to adopt it",
                        zone.name
                    ),
                )
                .into());
            }
            change.zone = Some(zone.name.clone());
            change.backend = Some(zone.backend.kind().to_owned());
            Some(zone.name.as_str())
        };
        self.authorize(&actor.principal, &change, apex)?;
        Ok(change)
    }

    /// The token's policies (or, for a forwarded Kafka message of a trusted account, the
    /// trusted channel's) must allow the change, and the token's rate limit must have room
    /// (trusted messages are exempt, as they are when consumed directly). Admins are limited
    /// by neither; adoptions are theirs alone.
    fn authorize(
        &self,
        principal: &Principal,
        change: &ChangeRequest,
        apex: Option<&str>,
    ) -> Result<(), IntakeError> {
        if principal.admin {
            return Ok(());
        }
        // A replace removes what is there and adds what is given: it needs both.
        let permissions: &[Permission] = match change.operation {
            Operation::Create => &[Permission::Create],
            Operation::Delete => &[Permission::Delete],
            Operation::Replace => &[Permission::Create, Permission::Delete],
            Operation::Adopt => {
                return Err(IntakeError::Forbidden(
                    "only admin tokens may adopt an RRset".into(),
                ));
            }
        };
        // A forwarder carries trusted Kafka messages: the channel's grant applies to those,
        // and to nothing else the forwarder sends.
        let forwarded_trusted =
            principal.forwarder && self.trusted_accounts.contains(&change.account_id);
        let trusted;
        let policies: &[Policy] = if forwarded_trusted {
            trusted = Principal::kafka_trusted(&change.account_id);
            &trusted.policies
        } else {
            &principal.policies
        };
        for permission in permissions {
            authorize(
                policies,
                change.domain.as_str(),
                change.record_type,
                *permission,
                apex,
            )
            .map_err(|denial| IntakeError::Forbidden(denial.to_string()))?;
        }
        if let Some(token) = principal.token_id
            && !forwarded_trusted
            && let Err(retry_after) = self.limits.buckets.take(token)
        {
            return Err(IntakeError::RateLimited {
                message: format!(
                    "token {} is over its rate limit (RATE_LIMIT_PER_SECOND, RATE_LIMIT_BURST)",
                    principal.name
                ),
                retry_after,
            });
        }
        Ok(())
    }

    /// Validates, records and queues one request.
    ///
    /// # Errors
    /// Invalid input, a reused idempotency key, or the database is unavailable.
    pub async fn submit(
        &self,
        actor: &Actor,
        body: ChangeBody,
        operation: Operation,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted, IntakeError> {
        let change = self.check(actor, body, operation, idempotency_key)?;
        let submitted = self.settle(
            self.store
                .insert(&change, self.limits.max_unfinished_per_name)
                .await?,
            &change,
            |r| r.id,
        )?;
        if let Submitted::Created(request) = &submitted {
            self.enqueue(&[request.id]).await;
        }
        Ok(submitted)
    }

    /// Validates a batch, records the valid requests in one transaction and queues them. The
    /// answers are in the order of `items`, naming requests by id. A transaction the database
    /// refuses for any reason but being unavailable is split (see `insert_splitting`), so a
    /// request the database refuses is answered with the store's error and the others are
    /// recorded.
    ///
    /// # Errors
    /// The database is unavailable: the batch may be partly recorded, and a retry finds those
    /// requests by their idempotency keys.
    pub async fn submit_batch(
        &self,
        items: Vec<Submission>,
    ) -> Result<Vec<Result<Submitted<RequestId>, IntakeError>>, StoreError> {
        let mut answers: Vec<Option<Result<Submitted<RequestId>, IntakeError>>> = Vec::new();
        let mut valid = Vec::new();
        for item in items {
            let checked = self.check(
                &item.actor,
                item.body,
                item.operation,
                item.idempotency_key.as_deref(),
            );
            match checked {
                Ok(mut change) => {
                    change.change_set = item.set;
                    valid.push(change);
                    answers.push(None);
                }
                Err(e) => answers.push(Some(Err(e))),
            }
        }
        let mut inserted = valid.iter().zip(self.insert_splitting(&valid).await?);
        let mut settled = Vec::with_capacity(answers.len());
        let mut created = Vec::new();
        for answer in answers {
            let answer = answer.unwrap_or_else(|| {
                let (change, inserted) = inserted.next().expect("one answer per valid change");
                self.settle(inserted?, change, |id| *id)
            });
            if let Ok(Submitted::Created(id)) = &answer {
                created.push(*id);
            }
            settled.push(answer);
        }
        self.enqueue(&created).await;
        Ok(settled)
    }

    /// Inserts `changes` in one transaction. When the database refuses it for a reason other
    /// than being unavailable (a constraint, a trigger, a value it cannot store), the changes
    /// are split in halves, each inserted the same way, in order, until the change at fault is
    /// alone: its answer is the store's error, and the others are recorded as they would have
    /// been (each admission still sees the requests before it). One bad change among `n` costs
    /// about `2 log2 n` transactions.
    ///
    /// # Errors
    /// The database is unavailable. The parts inserted before stay recorded.
    async fn insert_splitting(
        &self,
        changes: &[ChangeRequest],
    ) -> Result<Vec<Result<Inserted<RequestId>, StoreError>>, StoreError> {
        let mut answers = Vec::with_capacity(changes.len());
        // The parts still to insert, the next one last.
        let mut parts = Vec::new();
        parts.push(0..changes.len());
        while let Some(part) = parts.pop() {
            if part.is_empty() {
                continue;
            }
            match self
                .store
                .insert_many(&changes[part.clone()], self.limits.max_unfinished_per_name)
                .await
            {
                Ok(inserted) => answers.extend(inserted.into_iter().map(Ok)),
                Err(e) if e.is_unavailable() => return Err(e),
                Err(e) if part.len() == 1 => {
                    let change = &changes[part.start];
                    tracing::warn!(
                        account_id = %change.account_id,
                        domain = %change.domain,
                        record_type = change.record_type.as_str(),
                        error.message = %e,
                        "the database refused a request"
                    );
                    answers.push(Err(e));
                }
                Err(_) => {
                    let middle = part.start + part.len() / 2;
                    parts.push(middle..part.end);
                    parts.push(part.start..middle);
                }
            }
        }
        Ok(answers)
    }

    /// What an insert of `change` means for the caller; a new request is logged and counted.
    fn settle<T>(
        &self,
        inserted: Inserted<T>,
        change: &ChangeRequest,
        id: impl Fn(&T) -> RequestId,
    ) -> Result<Submitted<T>, IntakeError> {
        let request = match inserted {
            Inserted::Created(request) => request,
            Inserted::Existing(request) => return Ok(Submitted::Replayed(request)),
            Inserted::KeyReused(id) => return Err(IntakeError::KeyReused(id)),
            Inserted::NotOwner => {
                return Err(IntakeError::Forbidden(format!(
                    "the {} {} RRset belongs to another account",
                    change.domain, change.record_type
                )));
            }
            Inserted::Busy => {
                return Err(IntakeError::RateLimited {
                    message: format!(
                        "account {} has {} unfinished requests for {} (MAX_UNFINISHED_PER_NAME); try again when some have finished",
                        change.account_id, self.limits.max_unfinished_per_name, change.domain
                    ),
                    retry_after: BUSY_RETRY_AFTER,
                });
            }
        };
        tracing::info!(
            request_id = %id(&request),
            account_id = %change.account_id,
            source = %change.source,
            token_name = change.submitter.token_name.as_deref().unwrap_or_default(),
            record_type = change.record_type.as_str(),
            domain = %change.domain,
            "request accepted"
        );
        RequestAccepted {
            record_type: change.record_type,
            source: change.source.clone(),
        }
        .emit();
        Ok(Submitted::Created(request))
    }

    /// Hands new requests to the task channel, in one round trip where the channel allows.
    /// A failure only delays them: workers sweep the database.
    async fn enqueue(&self, ids: &[RequestId]) {
        if ids.is_empty() {
            return;
        }
        if let Err(e) = self.channel.enqueue_many(ids).await {
            // Debug, not warn: while the channel is down or full this would be one line per
            // batch, and the reconciler and /readyz already report the channel.
            tracing::debug!(requests = ids.len(), error.message = %e, "not enqueued; a worker will find them in the database");
        }
    }
}
