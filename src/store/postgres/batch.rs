//! Group insert: the requests that arrive while a statement is in flight are inserted together
//! in one multi-row statement and one commit, so the commit and the executor's start-up are
//! paid once per batch instead of once per request.
//!
//! `writers` tasks share one queue. Each takes what is queued (at least one, at most
//! `batch_max`) and inserts it with `INSERT … SELECT … FROM unnest(…)`, whose rows are admitted
//! one by one by `dnsorch_admit` in the order given: each call runs after the rows before it
//! were inserted, and a volatile function sees them, so a batch keeps the per-name limit and
//! the one-owner rule exactly as single inserts do. A request alone waits for nothing: a writer
//! that is free takes it at once. Items are ordered by owner name and account before the
//! statement (stable, so one name's requests keep their order): batches then take their
//! per-name locks in one order. A request the statement did not store (its key was taken, or
//! admission refused it) is tried again on its own, which says why; so is every request of a
//! batch whose statement failed (a deadlock between batches, say), so one cannot fail another.
//! A writer that panics answers its batch with an error and goes on with the next.

use std::sync::{Arc, LazyLock};

use futures::FutureExt as _;
use sqlx::{AssertSqlSafe, PgConnection, PgPool};
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use super::insert_request;
use crate::domain::zoneform::RrsetView;
use crate::domain::{ChangeRequest, LogEntry, RequestId};
use crate::store::{DnsRequest, Inserted, REQUEST_COLUMNS, StoreError, rows};

/// How inserts are grouped (`INSERT_WRITERS`, `INSERT_BATCH_MAX`).
#[derive(Debug, Clone, Copy)]
pub struct InsertBatching {
    /// Statements in flight at once.
    pub writers: usize,
    /// Requests in one statement at most.
    pub batch_max: usize,
}

impl Default for InsertBatching {
    fn default() -> Self {
        Self {
            writers: 2,
            batch_max: 256,
        }
    }
}

type Reply = oneshot::Sender<Result<Inserted, StoreError>>;

/// One request waiting for a writer.
struct Job {
    change: ChangeRequest,
    max_unfinished: u32,
    reply: Reply,
}

/// The queue in front of the writers. Dropping the last sender ends them.
#[derive(Debug, Clone)]
pub(super) struct Batcher {
    queue: mpsc::UnboundedSender<Job>,
}

impl Batcher {
    /// Starts `batching.writers` writer tasks on `pool`.
    pub(super) fn start(pool: PgPool, batching: InsertBatching) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..batching.writers.max(1) {
            tokio::spawn(write(pool.clone(), jobs.clone(), batching.batch_max.max(1)));
        }
        Self { queue }
    }

    /// Inserts `change` with the next batch.
    pub(super) async fn insert(
        &self,
        change: &ChangeRequest,
        max_unfinished: u32,
    ) -> Result<Inserted, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            change: change.clone(),
            max_unfinished,
            reply,
        };
        self.queue
            .send(job)
            .map_err(|_| StoreError::WriteFailed("the insert writers have stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::WriteFailed("an insert writer stopped".into()))?
    }
}

/// One writer: takes what is queued, inserts it, answers, until the queue closes.
async fn write(pool: PgPool, jobs: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>, batch_max: usize) {
    loop {
        let mut batch = Vec::new();
        {
            let mut jobs = jobs.lock().await;
            if jobs.recv_many(&mut batch, batch_max).await == 0 {
                return;
            }
        }
        // A panic answers the batch's requests with an error (their reply channels drop) and
        // leaves the writer running: the queue must not stop being drained.
        if std::panic::AssertUnwindSafe(insert_batch(&pool, batch))
            .catch_unwind()
            .await
            .is_err()
        {
            tracing::error!(
                "an insert writer panicked; its batch's requests were answered with an error"
            );
        }
    }
}

/// Inserts `batch` in one statement and answers every job.
async fn insert_batch(pool: &PgPool, mut batch: Vec<Job>) {
    batch.sort_by(|a, b| {
        (a.change.domain.as_str(), &a.change.account_id)
            .cmp(&(b.change.domain.as_str(), &b.change.account_id))
    });
    let ids: Vec<Uuid> = batch.iter().map(|_| RequestId::new().0).collect();
    let items: Vec<(&ChangeRequest, u32)> = batch
        .iter()
        .map(|j| (&j.change, j.max_unfinished))
        .collect();
    let inserted = match pool.acquire().await {
        Ok(mut connection) => insert_rows(&mut connection, &items, &ids).await,
        Err(e) => Err(e.into()),
    };
    drop(items);
    let stored = match inserted {
        Ok(stored) => stored,
        // The database is not there: each request alone would wait for it again. (A deadlock
        // with another batch, also "unavailable", is worth trying alone: below.)
        Err(StoreError::Unavailable(
            error @ (sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)),
        )) => {
            for job in batch {
                let _ = job.reply.send(Err(StoreError::Unavailable(copy(&error))));
            }
            return;
        }
        Err(error) => {
            tracing::debug!(error.message = %error, size = batch.len(), "a batch insert failed; inserting its requests one by one");
            Vec::new()
        }
    };
    let mut stored: std::collections::HashMap<Uuid, _> =
        stored.into_iter().map(|r| (r.id.0, r)).collect();
    for (job, id) in batch.into_iter().zip(ids) {
        let answer = match stored.remove(&id) {
            Some(request) => Ok(Inserted::Created(request)),
            None => insert_alone(pool, &job).await,
        };
        // The caller may have gone (its connection closed): the request stands regardless.
        let _ = job.reply.send(answer);
    }
}

/// The same unavailability for another caller (`sqlx::Error` is not `Clone`).
fn copy(error: &sqlx::Error) -> sqlx::Error {
    match error {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        other => sqlx::Error::Io(std::io::Error::other(other.to_string())),
    }
}

async fn insert_alone(pool: &PgPool, job: &Job) -> Result<Inserted, StoreError> {
    let mut connection = pool.acquire().await?;
    insert_request(&mut connection, &job.change, job.max_unfinished).await
}

/// The insert statement: every item's row (`ids[i]` for `items[i]`), admitted one by one in
/// the order given by `dnsorch_admit` (see its migration: the name's lock, the per-name limit,
/// the RRset's claim or owner). A request whose key is taken already is not admitted again
/// (the `case` decides that first), so its replay claims nothing; two concurrent requests with
/// one key are decided by the unique index. The rows it stored.
pub(super) async fn insert_rows(
    connection: &mut PgConnection,
    items: &[(&ChangeRequest, u32)],
    ids: &[Uuid],
) -> Result<Vec<DnsRequest>, StoreError> {
    let changes = || items.iter().map(|(change, _)| *change);
    let text = |f: fn(&ChangeRequest) -> String| changes().map(f).collect::<Vec<String>>();
    let json = |value: serde_json::Result<String>| {
        value.map_err(|e| StoreError::WriteFailed(format!("could not encode a request: {e}")))
    };
    let configs = changes()
        .map(|c| json(serde_json::to_string(&c.config())))
        .collect::<Result<Vec<_>, _>>()?;
    let logs = changes()
        .map(|c| json(serde_json::to_string(&[LogEntry::accepted(c)])))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = sqlx::query(AssertSqlSafe(INSERT_ROWS.as_str()))
        .bind(ids)
        .bind(text(|c| c.account_id.clone()))
        .bind(text(|c| c.source.clone()))
        .bind(text(|c| c.operation.as_str().to_owned()))
        .bind(text(|c| c.record_type.as_str().to_owned()))
        .bind(text(|c| c.domain.as_str().to_owned()))
        .bind(text(ChangeRequest::target))
        .bind(changes().map(|c| c.comment.clone()).collect::<Vec<_>>())
        .bind(configs)
        .bind(logs)
        .bind(
            changes()
                .map(|c| c.idempotency_key.clone())
                .collect::<Vec<_>>(),
        )
        .bind(text(ChangeRequest::fingerprint))
        .bind(changes().map(|c| c.zone.clone()).collect::<Vec<_>>())
        .bind(changes().map(|c| c.backend.clone()).collect::<Vec<_>>())
        .bind(
            changes()
                .map(|c| c.submitter.token_id.map(|t| t.0))
                .collect::<Vec<_>>(),
        )
        .bind(
            changes()
                .map(|c| c.submitter.token_name.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            changes()
                .map(|c| c.submitter.account_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            changes()
                .map(|c| c.submitter.client_addr.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            items
                .iter()
                .map(|(_, max)| i64::from(*max))
                .collect::<Vec<_>>(),
        )
        .bind(
            changes()
                .map(|c| {
                    c.targets()
                        .map(|t| json(serde_json::to_string(&t)))
                        .transpose()
                })
                .collect::<Result<Vec<_>, _>>()?,
        )
        .bind(
            changes()
                .map(|c| {
                    c.expect
                        .as_ref()
                        .map(|e| json(serde_json::to_string(&RrsetView::of(e))))
                        .transpose()
                })
                .collect::<Result<Vec<_>, _>>()?,
        )
        .bind(
            changes()
                .map(|c| c.change_set.map(|place| place.id.0))
                .collect::<Vec<_>>(),
        )
        .bind(
            changes()
                .map(|c| c.change_set.map(|place| i64::from(place.index)))
                .collect::<Vec<_>>(),
        )
        .bind(
            changes()
                .map(|c| c.change_set.map(|place| place.role.as_str()))
                .collect::<Vec<_>>(),
        )
        .fetch_all(connection)
        .await?;
    rows.iter().map(|row| rows::request(row, true)).collect()
}

/// The text of `insert_rows`, built once.
static INSERT_ROWS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "insert into dns_requests (id, account_id, source, operation, record_type, domain, \
         target, comment, config, status, log_messages, idempotency_key, fingerprint, zone, \
         backend, principal_token_id, principal_name, principal_account, client_addr, \
         next_attempt_at, enqueued_at, created_at, updated_at, targets, expect, \
         change_set_id, change_set_index, set_role) \
         select b.id, b.account_id, b.source, b.operation, b.record_type, b.domain, b.target, \
         b.comment, b.config::jsonb, 'PENDING', b.log::jsonb, b.key, b.fingerprint, b.zone, \
         b.backend, b.token_id, b.token_name, b.principal_account, b.client_addr, \
         now(), now(), now(), now(), b.targets::jsonb, b.expect::jsonb, b.set_id, \
         b.set_index::int4, b.set_role \
         from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
           $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
           $13::text[], $14::text[], $15::uuid[], $16::text[], $17::text[], $18::text[], \
           $19::int8[], $20::text[], $21::text[], $22::uuid[], $23::int8[], $24::text[]) \
           as b(id, account_id, source, operation, record_type, domain, target, comment, \
             config, log, key, fingerprint, zone, backend, token_id, token_name, \
             principal_account, client_addr, max_unfinished, targets, expect, set_id, \
             set_index, set_role) \
         where case when b.key is not null and exists (select 1 from dns_requests k \
             where k.account_id = b.account_id and k.idempotency_key = b.key) then false \
           else dnsorch_admit(b.operation, b.domain, b.record_type, b.account_id, \
             b.max_unfinished) end \
         on conflict (account_id, idempotency_key) where idempotency_key is not null \
         do nothing returning {REQUEST_COLUMNS}, log_messages"
    )
});
