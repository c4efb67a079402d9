//! Intake: the one path by which a change request enters dnsorch, whatever carried it.
//!
//! HTTP handlers (and the Kafka consumer) call [`Intake::submit`]: validate, record the request
//! durably as PENDING, then hand its id to the task channel. The row is committed before
//! `submit` returns, so an accepted request is never lost; a failed enqueue only delays it
//! (workers sweep the database).

#[cfg(feature = "kafka")]
pub mod kafka;
pub mod message;

use std::sync::Arc;

use crate::domain::{ChangeBody, ChangeRequest, Operation, RequestId, ValidationError, validate};
use crate::queue::TaskChannel;
use crate::store::{DnsRequest, Inserted, RequestStore, StoreError};
use crate::telemetry::RequestAccepted;
use crate::zones::Zones;

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
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Records change requests and queues them.
#[derive(Clone)]
pub struct Intake {
    store: Arc<dyn RequestStore>,
    channel: Arc<dyn TaskChannel>,
    zones: Arc<Zones>,
}

impl Intake {
    /// Intake over a store and a channel, accepting names in `zones` (any name when there
    /// are none).
    pub fn new(
        store: Arc<dyn RequestStore>,
        channel: Arc<dyn TaskChannel>,
        zones: Arc<Zones>,
    ) -> Self {
        Self {
            store,
            channel,
            zones,
        }
    }

    /// Validates a body, checks that its name is in a configured zone, and notes the zone
    /// and backend that will apply it.
    fn check(
        &self,
        body: ChangeBody,
        operation: Operation,
        idempotency_key: Option<&str>,
    ) -> Result<ChangeRequest, ValidationError> {
        let mut change = validate(body, operation, idempotency_key)?;
        if self.zones.is_empty() {
            change.backend = Some("simulated".into());
            return Ok(change);
        }
        let Some(zone) = self.zones.route(change.domain.as_str()) else {
            let served: Vec<&str> = self.zones.iter().map(|z| z.name.as_str()).collect();
            return Err(ValidationError::field(
                "resource.domain",
                format!(
                    "is in no zone dnsorch manages (zones: {})",
                    served.join(", ")
                ),
            ));
        };
        change.zone = Some(zone.name.clone());
        change.backend = Some(zone.backend.kind().to_owned());
        Ok(change)
    }

    /// Validates, records and queues one request.
    ///
    /// # Errors
    /// Invalid input, a reused idempotency key, or the database is unavailable.
    pub async fn submit(
        &self,
        body: ChangeBody,
        operation: Operation,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted, IntakeError> {
        let change = self.check(body, operation, idempotency_key)?;
        let submitted = Self::settle(self.store.insert(&change).await?, &change, |r| r.id)?;
        if let Submitted::Created(request) = &submitted {
            self.enqueue(&[request.id]).await;
        }
        Ok(submitted)
    }

    /// Validates a batch, records the valid requests in one transaction and queues them. The
    /// answers are in the order of `items`, naming requests by id.
    ///
    /// # Errors
    /// The database is unavailable: nothing of the batch was recorded.
    pub async fn submit_batch(
        &self,
        items: Vec<(ChangeBody, Operation, String)>,
    ) -> Result<Vec<Result<Submitted<RequestId>, IntakeError>>, StoreError> {
        let mut answers: Vec<Option<Result<Submitted<RequestId>, IntakeError>>> = Vec::new();
        let mut valid = Vec::new();
        for (body, operation, key) in items {
            match self.check(body, operation, Some(&key)) {
                Ok(change) => {
                    valid.push(change);
                    answers.push(None);
                }
                Err(e) => answers.push(Some(Err(e.into()))),
            }
        }
        let mut inserted = valid.iter().zip(self.store.insert_many(&valid).await?);
        let mut settled = Vec::with_capacity(answers.len());
        let mut created = Vec::new();
        for answer in answers {
            let answer = answer.unwrap_or_else(|| {
                let (change, inserted) = inserted.next().expect("one answer per valid change");
                Self::settle(inserted, change, |id| *id)
            });
            if let Ok(Submitted::Created(id)) = &answer {
                created.push(*id);
            }
            settled.push(answer);
        }
        self.enqueue(&created).await;
        Ok(settled)
    }

    /// What an insert of `change` means for the caller; a new request is logged and counted.
    fn settle<T>(
        inserted: Inserted<T>,
        change: &ChangeRequest,
        id: impl Fn(&T) -> RequestId,
    ) -> Result<Submitted<T>, IntakeError> {
        let request = match inserted {
            Inserted::Created(request) => request,
            Inserted::Existing(request) => return Ok(Submitted::Replayed(request)),
            Inserted::KeyReused(id) => return Err(IntakeError::KeyReused(id)),
        };
        tracing::info!(
            request_id = %id(&request),
            account_id = %change.account_id,
            source = %change.source,
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
