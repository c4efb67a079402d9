//! Group commit for SQLite: one task owns the only write connection and commits queued writes
//! together.
//!
//! With `synchronous=FULL` every commit waits for the disk, so one commit per write caps the
//! whole service at the disk's flush rate. Instead each write is a job sent to this task; the
//! task takes every job waiting (up to `MAX_BATCH`), runs each inside its own savepoint (so a
//! failing job undoes only itself), commits once, and only then answers each caller. A caller
//! is never told "done" before its write is durable.
//!
//! The writer cannot be restarted safely: a panic loses the batch in hand and its callers'
//! answers. It is logged, every later write is refused, and [`Writer::stopped`] fires so that
//! the store's ping fails (`/readyz` is 503) and the process stops with an error.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use sqlx::{Connection as _, SqliteConnection};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::store::StoreError;

/// The most jobs committed together.
const MAX_BATCH: usize = 256;
/// How many jobs may wait for the writer.
const QUEUE_CAPACITY: usize = 4096;

/// A job's work, run on the write connection inside a savepoint.
type Work = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Done> + Send>;

/// What a job left to do after the commit: answer its caller with the commit's result.
type Done = (bool, Answer);

/// The handle through which the store sends writes.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Work>,
    /// How long a write may wait for room in the queue before it is refused as unavailable.
    enqueue_timeout: Duration,
    /// Fires when the writer task panicked.
    stopped: CancellationToken,
}

impl Writer {
    /// Starts the writer task on `connection`.
    pub(super) fn start(connection: SqliteConnection, enqueue_timeout: Duration) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE_CAPACITY);
        let stopped = CancellationToken::new();
        let fired = stopped.clone();
        tokio::spawn(async move {
            let mut task = Box::pin(AssertUnwindSafe(run(connection, queue)).catch_unwind());
            if let Err(panic) = task.as_mut().await {
                tracing::error!(
                    task = "sqlite writer",
                    panic = %crate::supervise::panic_message(panic.as_ref()),
                    "the SQLite writer panicked; writes are refused and the process stops"
                );
                fired.cancel();
            }
            // Only now is the queue closed: a write waiting in it learns that the writer
            // stopped.
            drop(task);
        });
        Self {
            jobs,
            enqueue_timeout,
            stopped,
        }
    }

    /// Fires when the writer task panicked (it is never restarted).
    pub(super) fn stopped(&self) -> CancellationToken {
        self.stopped.clone()
    }

    /// Runs `work` in the next batch and returns its result once the batch is committed.
    ///
    /// # Errors
    /// The work's own error, or `Unavailable` if the queue stays full or the commit fails.
    pub(super) async fn write<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<R, StoreError>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Work = Box::new(move |connection| {
            Box::pin(async move {
                let result = work(connection).await;
                let ok = result.is_ok();
                let answer: Answer = Box::new(move |commit| {
                    let outcome = match commit {
                        Ok(()) => result,
                        Err(why) => result.and(Err(StoreError::WriteFailed(why))),
                    };
                    let _ = reply.send(outcome);
                });
                (ok, answer)
            })
        });
        if self.stopped.is_cancelled() {
            return Err(self.stopped_error());
        }
        self.jobs
            .send_timeout(job, self.enqueue_timeout)
            .await
            .map_err(|e| match e {
                mpsc::error::SendTimeoutError::Timeout(_) => {
                    StoreError::WriteFailed("the write queue is full".into())
                }
                mpsc::error::SendTimeoutError::Closed(_) => self.stopped_error(),
            })?;
        answer.await.map_err(|_| {
            if self.stopped.is_cancelled() {
                self.stopped_error()
            } else {
                StoreError::WriteFailed("the write was not committed".into())
            }
        })?
    }

    fn stopped_error(&self) -> StoreError {
        StoreError::WriteFailed("the SQLite writer stopped after a panic".into())
    }
}

async fn run(mut connection: SqliteConnection, mut queue: mpsc::Receiver<Work>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (answers, commit) = commit_batch(&mut connection, batch.drain(..)).await;
        for answer in answers {
            answer(commit.clone());
        }
    }
    let _ = connection.close().await;
}

type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Runs the jobs in one transaction, each in a savepoint, and commits.
async fn commit_batch(
    connection: &mut SqliteConnection,
    jobs: impl Iterator<Item = Work>,
) -> (Vec<Answer>, Result<(), String>) {
    if let Err(e) = sqlx::raw_sql("begin immediate")
        .execute(&mut *connection)
        .await
    {
        // Nothing runs; dropping the jobs tells each caller its write was not committed.
        tracing::error!(error.message = %e, "could not begin a write transaction");
        return (Vec::new(), Err(e.to_string()));
    }
    let mut answers = Vec::new();
    for work in jobs {
        let savepoint = sqlx::raw_sql("savepoint job")
            .execute(&mut *connection)
            .await;
        let (ok, answer) = work(connection).await;
        let end = if ok && savepoint.is_ok() {
            "release job"
        } else {
            "rollback to job; release job"
        };
        if let Err(e) = sqlx::raw_sql(end).execute(&mut *connection).await {
            tracing::error!(error.message = %e, "failed to end a savepoint");
        }
        answers.push(answer);
    }
    let commit = sqlx::raw_sql("commit").execute(&mut *connection).await;
    if let Err(e) = commit {
        tracing::error!(error.message = %e, "a write transaction failed to commit");
        let _ = sqlx::raw_sql("rollback").execute(&mut *connection).await;
        return (answers, Err(format!("commit failed: {e}")));
    }
    (answers, Ok(()))
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;
    use sqlx::ConnectOptions as _;
    use sqlx::sqlite::SqliteConnectOptions;

    use super::*;

    async fn writer_over_a_fresh_table() -> (tempfile::TempDir, Writer, SqliteConnectOptions) {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("w.db"))
            .create_if_missing(true);
        let mut connection = options.connect().await.unwrap();
        sqlx::raw_sql("create table t (v text not null)")
            .execute(&mut connection)
            .await
            .unwrap();
        (
            dir,
            Writer::start(connection, Duration::from_secs(1)),
            options,
        )
    }

    fn insert(
        value: &'static str,
        fail_after: bool,
    ) -> impl for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<(), StoreError>>
    + Send
    + 'static {
        move |c| {
            async move {
                sqlx::query("insert into t (v) values (?)")
                    .bind(value)
                    .execute(&mut *c)
                    .await?;
                if fail_after {
                    return Err(StoreError::Corrupt("this job fails after writing".into()));
                }
                Ok(())
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn a_panicking_job_stops_the_writer_for_good_and_says_so() {
        // Arrange
        let (_dir, writer, _options) = writer_over_a_fresh_table().await;

        // Act
        let panicked = writer
            .write::<(), _>(|_| async { panic!("a job panicked") }.boxed())
            .await;
        let later = writer.write(insert("later", false)).await;

        // Assert
        assert!(panicked.is_err());
        match later {
            Err(StoreError::WriteFailed(why)) => assert!(why.contains("stopped"), "{why}"),
            other => panic!("a write after the panic: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_failing_job_undoes_only_its_own_writes_in_a_shared_commit() {
        // Arrange
        let (_dir, writer, options) = writer_over_a_fresh_table().await;

        // Act: sent together, so they share a batch.
        let (a, b, c) = tokio::join!(
            writer.write(insert("a", false)),
            writer.write(insert("b", true)),
            writer.write(insert("c", false)),
        );

        // Assert
        assert!(a.is_ok() && c.is_ok());
        assert!(matches!(b, Err(StoreError::Corrupt(_))));
        let mut reader = options.connect().await.unwrap();
        let rows: Vec<String> = sqlx::query_scalar("select v from t order by v")
            .fetch_all(&mut reader)
            .await
            .unwrap();
        assert_eq!(rows, ["a", "c"]);
    }
}
