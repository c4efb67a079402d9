//! The reconciler: the database's recovery path for requests whose worker died.
//!
//! Every `RECONCILE_INTERVAL_SECONDS` it returns requests whose lease expired to PENDING (or
//! FAILED once their attempts are used up, so a request that kills its worker cannot loop
//! forever) and hands them to the task channel. The update is conditional, so any number of
//! processes may run it at once.

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
}

impl Reconciler {
    /// A reconciler over these parts.
    pub fn new(
        store: Arc<dyn RequestStore>,
        channel: Arc<dyn TaskChannel>,
        max_attempts: u32,
        interval: Duration,
    ) -> Self {
        Self {
            store,
            channel,
            max_attempts,
            interval,
        }
    }

    /// One pass. Returns how many requests were released.
    ///
    /// # Errors
    /// The store failed.
    pub async fn reconcile_once(&self) -> anyhow::Result<usize> {
        let released = self.store.release_expired_leases(self.max_attempts).await?;
        for id in &released {
            tracing::warn!(request_id = %id, "lease expired; request released for another attempt");
            if let Err(e) = self.channel.enqueue(*id).await {
                tracing::debug!(request_id = %id, error.message = %e, "not enqueued; the database sweep will find it");
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
