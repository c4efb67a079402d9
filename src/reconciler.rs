//! The reconciler: the database's recovery path for requests whose worker died.
//!
//! Every `RECONCILE_INTERVAL_SECONDS` it returns requests whose lease expired to PENDING (or
//! FAILED once their attempts are used up, so a request that kills its worker cannot loop
//! forever), then queues due PENDING requests that were never queued (a retry whose backoff
//! ended, a released request) or were queued longer than `REQUEUE_AFTER_SECONDS` ago (their
//! delivery may be lost), stamping `enqueued_at` so a backlog is not queued twice. The updates
//! are conditional and take disjoint rows, so any number of processes may run it at once.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::queue::TaskChannel;
use crate::store::RequestStore;

/// Re-queues requests whose worker stopped holding them.
#[derive(Clone)]
pub struct Reconciler {
    store: Arc<dyn RequestStore>,
    channel: Arc<dyn TaskChannel>,
    max_attempts: u32,
    interval: Duration,
    requeue_after: Duration,
}

/// The most requests one pass queues again.
const REQUEUE_BATCH: u32 = 1000;

impl Reconciler {
    /// A reconciler over these parts.
    pub fn new(
        store: Arc<dyn RequestStore>,
        channel: Arc<dyn TaskChannel>,
        max_attempts: u32,
        interval: Duration,
        requeue_after: Duration,
    ) -> Self {
        Self {
            store,
            channel,
            max_attempts,
            interval,
            requeue_after,
        }
    }

    /// One pass. Returns how many requests had an expired lease.
    ///
    /// # Errors
    /// The store failed.
    pub async fn reconcile_once(&self) -> anyhow::Result<usize> {
        let released = self.store.release_expired_leases(self.max_attempts).await?;
        for id in &released {
            tracing::warn!(request_id = %id, "lease expired; request released for another attempt");
        }
        // While the channel is down we stamp nothing: idle workers sweep the database, and the
        // requests are queued at the first pass after the channel is back.
        let reachable = self.channel.ping().await;
        if let Err(e) = &reachable {
            tracing::warn!(error.message = %e, channel = self.channel.kind(), "task channel unreachable; workers sweep the database meanwhile");
        }
        if reachable.is_ok() {
            let due = self
                .store
                .requeue_due(self.requeue_after, REQUEUE_BATCH)
                .await?;
            for id in due {
                if let Err(e) = self.channel.enqueue(id).await {
                    tracing::debug!(request_id = %id, error.message = %e, "not queued; the database sweep will find it");
                    break;
                }
            }
        }
        Ok(released.len())
    }

    /// Runs a pass every interval until `shutdown`.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.reconcile_once().await {
                tracing::error!(error.message = %e, error.cause_chain = ?e, "reconciler pass failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}
