//! The task channels that need no server: the in-process channel of `dnsorch run` (a bounded
//! channel shared by the workers), and `DatabaseOnly` for separate processes without Redis.
//!
//! Nothing here is durable, and nothing needs to be: a request id lost with the process is
//! still PENDING in the database, where the workers' sweep finds it at the next start.

use std::time::Duration;

use tokio::sync::{Mutex, mpsc};

use super::{Delivery, QueueError, TaskChannel};
use crate::domain::RequestId;

/// How many ids may wait in memory; past that, the database sweep takes over.
const CAPACITY: usize = 65_536;

/// A channel of request ids inside one process.
#[derive(Debug)]
pub struct LocalChannel {
    sender: mpsc::Sender<RequestId>,
    /// Workers take turns waiting on the receiver.
    receiver: Mutex<mpsc::Receiver<RequestId>>,
}

impl LocalChannel {
    /// An empty channel.
    pub fn new() -> Self {
        let (sender, receiver) = mpsc::channel(CAPACITY);
        Self {
            sender,
            receiver: Mutex::new(receiver),
        }
    }
}

impl Default for LocalChannel {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl TaskChannel for LocalChannel {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn enqueue(&self, id: RequestId) -> Result<(), QueueError> {
        self.sender
            .try_send(id)
            .map_err(|e| QueueError::Unavailable(e.to_string()))
    }

    async fn next(&self, wait: Duration) -> Result<Option<Delivery>, QueueError> {
        let received =
            tokio::time::timeout(wait, async { self.receiver.lock().await.recv().await }).await;
        Ok(received.ok().flatten().map(|request_id| Delivery {
            request_id,
            entry_id: None,
        }))
    }

    async fn ack(&self, _delivery: &Delivery) -> Result<(), QueueError> {
        // An in-memory delivery is gone once received; there is nothing to acknowledge.
        Ok(())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }
}

/// No channel at all: separate `serve` and `worker` processes without Redis. Enqueueing does
/// nothing and workers find due requests by sweeping the shared database.
#[derive(Debug, Default)]
pub struct DatabaseOnly;

#[async_trait::async_trait]
impl TaskChannel for DatabaseOnly {
    fn kind(&self) -> &'static str {
        "database"
    }

    async fn enqueue(&self, _id: RequestId) -> Result<(), QueueError> {
        Ok(())
    }

    async fn next(&self, wait: Duration) -> Result<Option<Delivery>, QueueError> {
        tokio::time::sleep(wait).await;
        Ok(None)
    }

    async fn ack(&self, _delivery: &Delivery) -> Result<(), QueueError> {
        Ok(())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }
}
