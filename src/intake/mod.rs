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

/// What `submit` did.
#[derive(Debug)]
pub enum Submitted {
    /// A new request.
    Created(DnsRequest),
    /// The idempotency key named an earlier request for the same change.
    Replayed(DnsRequest),
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
        let submitted = Self::settle(self.store.insert(&change).await?)?;
        if let Submitted::Created(request) = &submitted {
            self.enqueue(&[request.id]).await;
        }
        Ok(submitted)
    }

    /// Validates a batch, records the valid requests in one transaction and queues them. The
    /// answers are in the order of `items`.
    ///
    /// # Errors
    /// The database is unavailable: nothing of the batch was recorded.
    pub async fn submit_batch(
        &self,
        items: Vec<(ChangeBody, Operation, String)>,
    ) -> Result<Vec<Result<Submitted, IntakeError>>, StoreError> {
        let mut answers: Vec<Option<Result<Submitted, IntakeError>>> = Vec::new();
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
        let mut inserted = self.store.insert_many(&valid).await?.into_iter();
        let mut settled = Vec::with_capacity(answers.len());
        let mut created = Vec::new();
        for answer in answers {
            let answer = answer.unwrap_or_else(|| {
                Self::settle(inserted.next().expect("one answer per valid change"))
            });
            if let Ok(Submitted::Created(request)) = &answer {
                created.push(request.id);
            }
            settled.push(answer);
        }
        self.enqueue(&created).await;
        Ok(settled)
    }

    /// What an insert means for the caller; a new request is logged and counted.
    fn settle(inserted: Inserted) -> Result<Submitted, IntakeError> {
        let request = match inserted {
            Inserted::Created(request) => request,
            Inserted::Existing(request) => return Ok(Submitted::Replayed(request)),
            Inserted::KeyReused(id) => return Err(IntakeError::KeyReused(id)),
        };
        tracing::info!(
            request_id = %request.id,
            account_id = %request.account_id,
            source = %request.source,
            record_type = request.record_type.as_str(),
            domain = %request.domain,
            "request accepted"
        );
        RequestAccepted {
            record_type: request.record_type,
            source: request.source.clone(),
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
