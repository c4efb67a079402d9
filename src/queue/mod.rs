//! The task channel: it carries request ids from intake to workers, and nothing else.
//!
//! The database holds every request's state, so a delivery only says "look at request X": a
//! duplicate or stale one finds nothing to claim and is acknowledged. A lost one costs only
//! latency, because idle workers also sweep the database for due requests and the reconciler
//! re-queues requests whose lease expired or whose delivery went missing. `local.rs` holds the
//! in-process channel of the all-in-one `run` and the database-only stand-in for separate
//! processes without Redis; `redis.rs` is the Redis Streams channel.

mod local;
mod redis;
pub mod retry;

use std::time::Duration;

use crate::domain::RequestId;

pub use local::{DatabaseOnly, LocalChannel};
pub use redis::{RedisChannel, RedisTls};

/// One message from the channel.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub request_id: RequestId,
    /// The channel's own id for the message, where it needs one to acknowledge it.
    pub entry_id: Option<String>,
}

/// Errors of a task channel. Intake treats them as "enqueue later", never as a lost request.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The channel is full or closed.
    #[error("the task channel is unavailable: {0}")]
    Unavailable(String),
}

/// Hands request ids from intake to workers.
#[async_trait::async_trait]
pub trait TaskChannel: Send + Sync {
    /// The channel's name, for logs and `/readyz`.
    fn kind(&self) -> &'static str;

    /// Asks a worker to look at request `id`.
    ///
    /// # Errors
    /// The channel cannot take the id now; the request stays PENDING and is swept up later.
    async fn enqueue(&self, id: RequestId) -> Result<(), QueueError>;

    /// Asks workers to look at each of `ids`; a channel that can send them in one round trip
    /// does so.
    ///
    /// # Errors
    /// As [`TaskChannel::enqueue`]; some of the ids may have been sent.
    async fn enqueue_many(&self, ids: &[RequestId]) -> Result<(), QueueError> {
        for id in ids {
            self.enqueue(*id).await?;
        }
        Ok(())
    }

    /// Waits up to `wait` for the next delivery.
    ///
    /// # Errors
    /// The channel is unreachable.
    async fn next(&self, wait: Duration) -> Result<Option<Delivery>, QueueError>;

    /// Says the delivery was handled (its outcome committed, or nothing to do).
    ///
    /// # Errors
    /// The channel is unreachable; the delivery may come again, which is harmless.
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError>;

    /// Checks that the channel answers (for `/readyz`).
    ///
    /// # Errors
    /// The channel is unreachable.
    async fn ping(&self) -> Result<(), QueueError>;
}
