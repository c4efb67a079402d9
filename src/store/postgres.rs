//! The production store: PostgreSQL, shared by any number of API and worker processes.
//!
//! Claims pick the row with `for update skip locked`, so concurrent workers never claim the
//! same request and never wait on each other's rows. Each write is one statement or one
//! transaction, conditional on the lease token where a claim is involved; the inserts of
//! concurrent API requests share statements (`batch`). Migrations take sqlx's advisory lock, so
//! several processes may start at once.

use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres};
use uuid::Uuid;

use super::ledger::{release_failed, settle};
use super::rows::{self, Columns as _};
use super::{
    Claim, DnsRecord, DnsRequest, Inserted, NewChangeSet, OpeningLog, Outcome, OutcomeColumns,
    REFUSAL_CONFIG, REQUEST_COLUMNS, RecordFilter, Refusal, RequestFilter, RequestStore,
    SELECT_RECORD_TYPES, SELECT_RECORDS, SetMember, StoreError, page_query,
};
use crate::domain::{ChangeRequest, ChangeSetId, LogEntry, RecordType, RequestId, RequestStatus};

mod audit;
mod batch;
mod columns;
mod ledger;
mod sets;
mod tokens;

pub use batch::InsertBatching;

/// A claimable request: PENDING, due, no older request for its owner name unfinished and none
/// of the name's PROCESSING (the unique index `dns_requests_one_processing_per_name` holds that
/// even for a claim that raced another). A member of an atomic set is never claimed by itself;
/// its set's lead is claimable only when the same holds at each member's name, its own set
/// aside (`SET_READY`).
const CLAIMABLE: &str = "r.status = 'PENDING' and r.next_attempt_at <= now() \
     and r.set_role is distinct from 'member' \
     and not exists (select 1 from dns_requests o where o.domain = r.domain \
     and o.seq < r.seq and o.status in ('PENDING', 'PROCESSING', 'UNKNOWN')) \
     and not exists (select 1 from dns_requests p where p.domain = r.domain \
     and p.status = 'PROCESSING') \
     and (r.set_role is distinct from 'lead' or not exists (select 1 from dns_requests m \
       join dns_requests o on o.domain = m.domain \
       where m.change_set_id = r.change_set_id and m.set_role = 'member' \
       and o.change_set_id is distinct from r.change_set_id \
       and (o.status = 'PROCESSING' \
         or (o.seq < m.seq and o.status in ('PENDING', 'UNKNOWN')))))";

/// A request whose outcome is UNKNOWN, due to be checked and not leased: a claim of it keeps it
/// UNKNOWN and is no attempt (the worker only queries the server). Sweeps take only PENDING
/// requests; UNKNOWN ones come by delivery (the reconciler queues them when due). An atomic
/// set's members are checked with their lead.
const RESOLVABLE: &str = "r.status = 'UNKNOWN' and r.next_attempt_at <= now() \
     and r.set_role is distinct from 'member' \
     and (r.lease_expires_at is null or r.lease_expires_at < now())";

/// The index that keeps one request per owner name PROCESSING.
const ONE_PROCESSING_PER_NAME: &str = "dns_requests_one_processing_per_name";

/// The PostgreSQL implementation of [`RequestStore`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Where `insert` goes: the group-insert writers.
    batcher: batch::Batcher,
}

/// What `open` does about the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Apply pending migrations (`run`, `migrate`).
    Migrate,
    /// Wait until the schema is at least this binary's version; a newer one is fine
    /// (`serve`, `worker` during a rolling deploy).
    Await,
}

impl PostgresStore {
    /// Connects, waiting up to `wait` for the server, then migrates or waits for the schema.
    /// The pool reconnects by itself later, so the process outlives database restarts.
    ///
    /// # Errors
    /// The URL does not parse, the server or schema is not there within `wait`, or a
    /// migration fails.
    pub async fn open(
        url: &str,
        acquire_timeout: Duration,
        schema: Schema,
        wait: Duration,
        batching: InsertBatching,
    ) -> anyhow::Result<Self> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(options);
        let batcher = batch::Batcher::start(pool.clone(), batching);
        let store = Self { pool, batcher };
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(200);
        loop {
            let ready = match schema {
                Schema::Migrate => store.migrate().await,
                Schema::Await => store.check_schema().await,
            };
            match ready {
                Ok(()) => return Ok(store),
                // The migrations themselves are wrong (changed, missing, dirty): waiting will
                // not help. Database errors (unreachable, starting up) are waited out.
                Err(e)
                    if e.downcast_ref::<sqlx::migrate::MigrateError>()
                        .is_some_and(|m| !matches!(m, sqlx::migrate::MigrateError::Execute(_))) =>
                {
                    return Err(e.context("the migration failed"));
                }
                Err(e) if Instant::now() + pause < deadline => {
                    tracing::info!(error.message = %format!("{e:#}"), retry_in_ms = pause.as_millis() as u64, "waiting for PostgreSQL");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    return Err(
                        e.context(format!("PostgreSQL not ready within {}s", wait.as_secs()))
                    );
                }
            }
        }
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let mut migrator = sqlx::migrate!("migrations/postgres");
        // A newer binary may have applied migrations this one does not know: tolerate them.
        migrator.set_ignore_missing(true);
        let applied: Vec<i64> = sqlx::query_scalar("select version from _sqlx_migrations")
            .fetch_all(&self.pool)
            .await
            .unwrap_or_default();
        migrator.run(&self.pool).await?;
        if !applied.contains(&super::OWNERSHIP_MIGRATION) {
            let merged: Vec<(String, String)> = sqlx::query_as(
                "select subject, details::text from dns_audit where action = 'rrset.merged' order by seq",
            )
            .fetch_all(&self.pool)
            .await?;
            super::log_merged(&merged);
        }
        Ok(())
    }

    async fn check_schema(&self) -> anyhow::Result<()> {
        let expected = sqlx::migrate!("migrations/postgres")
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or_default();
        let applied: Option<i64> =
            sqlx::query_scalar("select max(version) from _sqlx_migrations where success")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| anyhow::anyhow!("no schema yet (run `dnsorch migrate`): {e}"))?;
        match applied {
            Some(version) if version >= expected => Ok(()),
            other => anyhow::bail!(
                "the schema is at version {} and this binary needs {expected}; run `dnsorch migrate`",
                other.unwrap_or_default()
            ),
        }
    }
}

#[async_trait::async_trait]
impl RequestStore for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn insert(
        &self,
        change: &ChangeRequest,
        max_unfinished: u32,
    ) -> Result<Inserted, StoreError> {
        self.batcher.insert(change, max_unfinished).await
    }

    async fn insert_many(
        &self,
        changes: &[ChangeRequest],
        max_unfinished: u32,
    ) -> Result<Vec<Inserted<RequestId>>, StoreError> {
        // One transaction, one statement per request: each admission must see the claims and
        // requests of the ones before it in the batch.
        let mut tx = self.pool.begin().await?;
        let mut answers = Vec::with_capacity(changes.len());
        for change in changes {
            answers.push(
                insert_request(&mut tx, change, max_unfinished)
                    .await?
                    .id_only(),
            );
        }
        tx.commit().await?;
        Ok(answers)
    }

    async fn insert_atomic(
        &self,
        changes: &[ChangeRequest],
        max_unfinished: u32,
        set: &NewChangeSet,
    ) -> Result<Vec<Inserted<RequestId>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut answers = Vec::with_capacity(changes.len());
        for change in changes {
            answers.push(
                insert_request(&mut tx, change, max_unfinished)
                    .await?
                    .id_only(),
            );
        }
        if answers.iter().all(|a| matches!(a, Inserted::Created(_))) {
            sets::insert_set(&mut tx, set).await?;
            tx.commit().await?;
        }
        // Otherwise the transaction is dropped: rolled back, nothing stored.
        Ok(answers)
    }

    async fn record_refusal(&self, refusal: &Refusal) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "insert into dns_requests (id, account_id, source, operation, record_type, domain, \
             target, comment, config, status, log_messages, idempotency_key, fingerprint, \
             last_error, principal_token_id, principal_name, principal_account, client_addr, \
             next_attempt_at, finished_at, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, '', 'external-dns', $7::jsonb, 'FAILED', $8::jsonb, \
             $9, $9, $10, $11, $12, $13, $14, now(), now(), now(), now()) \
             on conflict (account_id, idempotency_key) where idempotency_key is not null \
             do nothing",
        )
        .bind(RequestId::new().0)
        .bind(&refusal.account_id)
        .bind(&refusal.source)
        .bind(refusal.operation.as_str())
        .bind(refusal.record_type.as_str())
        .bind(refusal.stored_domain())
        .bind(REFUSAL_CONFIG)
        .bind(refusal.log())
        .bind(&refusal.idempotency_key)
        .bind(&refusal.reason)
        .bind(refusal.submitter.token_id.map(|t| t.0))
        .bind(&refusal.submitter.token_name)
        .bind(&refusal.submitter.account_id)
        .bind(&refusal.submitter.client_addr)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_members(&self, set: ChangeSetId) -> Result<Vec<DnsRequest>, StoreError> {
        let sql = format!(
            "select {REQUEST_COLUMNS}, log_messages from dns_requests \
             where change_set_id = $1 and set_role = 'member' order by change_set_index"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(set.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| rows::request(r, true)).collect()
    }

    async fn get(&self, id: RequestId) -> Result<Option<DnsRequest>, StoreError> {
        let sql = format!("select {REQUEST_COLUMNS}, log_messages from dns_requests where id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| rows::request(&r, true)).transpose()
    }

    async fn list(&self, filter: &RequestFilter) -> Result<Vec<DnsRequest>, StoreError> {
        let select = format!("select {REQUEST_COLUMNS} from dns_requests");
        let mut query =
            page_query::<Postgres>(select, filter.conditions(), filter.before, filter.limit);
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(|r| rows::request(r, false)).collect()
    }

    async fn list_records(&self, filter: &RecordFilter) -> Result<Vec<DnsRecord>, StoreError> {
        let mut query = page_query::<Postgres>(
            SELECT_RECORDS,
            filter.conditions(),
            filter.before,
            filter.limit,
        );
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(rows::record).collect()
    }

    async fn rrset(
        &self,
        domain: &str,
        record_type: RecordType,
    ) -> Result<(Option<String>, Vec<DnsRecord>), StoreError> {
        ledger::rrset(&self.pool, domain, record_type).await
    }

    async fn record_types(&self, domain: &str) -> Result<Vec<RecordType>, StoreError> {
        let rows = sqlx::query(SELECT_RECORD_TYPES)
            .bind(domain)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| row.get("record_type")).collect()
    }

    async fn claim(
        &self,
        id: Option<RequestId>,
        lease: Duration,
        opening: OpeningLog,
    ) -> Result<Option<Claim>, StoreError> {
        let target = match id {
            Some(_) => format!(
                "select r.id from dns_requests r where r.id = $3 \
                 and (({CLAIMABLE}) or ({RESOLVABLE})) for update skip locked"
            ),
            None => format!(
                "select r.id from dns_requests r where {CLAIMABLE} \
                 order by r.seq limit 1 for update skip locked"
            ),
        };
        let sql = format!(
            "update dns_requests set \
             status = case when status = 'UNKNOWN' then 'UNKNOWN' else 'PROCESSING' end, \
             lease_token = $1, lease_expires_at = now() + make_interval(secs => $2), \
             attempts = attempts + case when status = 'UNKNOWN' then 0 else 1 end, \
             started_at = coalesce(started_at, now()), updated_at = now() \
             where id = ({target}) returning {REQUEST_COLUMNS}, log_messages"
        );
        let token = Uuid::new_v4();
        let mut tx = self.pool.begin().await?;
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(token)
            .bind(lease.as_secs_f64());
        if let Some(id) = id {
            query = query.bind(id.0);
        }
        let row = match query.fetch_optional(&mut *tx).await {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(None),
            // Another claim of the same name committed first: nothing to claim now.
            Err(sqlx::Error::Database(e)) if e.constraint() == Some(ONE_PROCESSING_PER_NAME) => {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let claim = Claim {
            request: rows::request(&row, true)?,
            token,
        };
        append_log_on(&mut *tx, &claim, &opening(&claim.request)).await?;
        tx.commit().await?;
        Ok(Some(claim))
    }

    async fn append_log(&self, claim: &Claim, entries: &[LogEntry]) -> Result<bool, StoreError> {
        append_log_on(&self.pool, claim, entries).await
    }

    async fn renew_lease(&self, claim: &Claim, lease: Duration) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "update dns_requests set lease_expires_at = now() + make_interval(secs => $1) \
             where id = $2 and lease_token = $3 and status in ('PROCESSING', 'UNKNOWN')",
        )
        .bind(lease.as_secs_f64())
        .bind(claim.request.id.0)
        .bind(claim.token)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish(
        &self,
        claim: &Claim,
        outcome: &Outcome,
        entries: &[LogEntry],
    ) -> Result<bool, StoreError> {
        self.finish_set(claim, outcome, entries, &[]).await
    }

    async fn finish_set(
        &self,
        claim: &Claim,
        outcome: &Outcome,
        entries: &[LogEntry],
        members: &[SetMember],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let lead = Finished::Leased(claim.token);
        if !finish_on(&mut tx, &claim.request, lead, outcome, entries).await? {
            return Ok(false);
        }
        settle(&mut *tx, &claim.request, outcome).await?;
        for member in members {
            let (outcome, entries) = member.outcome(&claim.request, outcome, entries);
            if finish_on(
                &mut tx,
                &member.request,
                Finished::Member,
                &outcome,
                &entries,
            )
            .await?
            {
                settle(&mut *tx, &member.request, &outcome).await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn release_expired_leases(
        &self,
        max_attempts: u32,
    ) -> Result<Vec<RequestId>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "update dns_requests set \
             status = case when attempts >= $1 then 'FAILED' else 'PENDING' end, \
             last_error = 'lease expired: the worker stopped without reporting an outcome', \
             lease_token = null, lease_expires_at = null, enqueued_at = null, \
             next_attempt_at = now(), \
             finished_at = case when attempts >= $1 then now() end, \
             log_messages = log_messages || jsonb_build_array(jsonb_build_object( \
               'at', now(), \
               'level', case when attempts >= $1 then 'error' else 'warning' end, \
               'message', case when attempts >= $1 \
                 then 'lease expired after attempt ' || attempts || ' of ' || $1 || '; giving up' \
                 else 'lease expired after attempt ' || attempts || '; the worker stopped without reporting, so another will retry' end)), \
             updated_at = now() \
             where id in (select id from dns_requests where status = 'PROCESSING' \
               and lease_expires_at < now() for update skip locked) \
             returning id, status, domain, record_type, account_id",
        )
        .bind(i32::try_from(max_attempts).unwrap_or(i32::MAX))
        .fetch_all(&mut *tx)
        .await?;
        let mut released = release_failed(&mut *tx, &rows).await?;
        // The members of an atomic set whose lead FAILED fail with it.
        let mut failed: Vec<Uuid> = Vec::new();
        for row in &rows {
            if row.get::<RequestStatus>("status")? == RequestStatus::Failed {
                failed.push(row.get::<RequestId>("id")?.0);
            }
        }
        if !failed.is_empty() {
            let members = sqlx::query(
                "update dns_requests m set status = 'FAILED', \
                 last_error = 'its atomic change set failed: ' || l.last_error, \
                 finished_at = now(), updated_at = now(), \
                 log_messages = m.log_messages || jsonb_build_array(jsonb_build_object( \
                   'at', now(), 'level', 'error', 'message', \
                   'the lead request ' || l.id || ' of its atomic change set failed: ' \
                   || l.last_error)) \
                 from dns_requests l where l.id = any($1) and l.set_role = 'lead' \
                 and m.change_set_id = l.change_set_id and m.set_role = 'member' \
                 and m.status in ('PENDING', 'UNKNOWN') \
                 returning m.id, m.status, m.domain, m.record_type, m.account_id",
            )
            .bind(failed)
            .fetch_all(&mut *tx)
            .await?;
            released.extend(release_failed(&mut *tx, &members).await?);
        }
        tx.commit().await?;
        Ok(released)
    }

    async fn requeue_due(
        &self,
        older_than: Duration,
        limit: u32,
    ) -> Result<Vec<RequestId>, StoreError> {
        let rows = sqlx::query(
            "update dns_requests set enqueued_at = now() \
             where id in (select id from dns_requests where status in ('PENDING', 'UNKNOWN') \
               and next_attempt_at <= now() and set_role is distinct from 'member' \
               and (enqueued_at is null or enqueued_at < now() - make_interval(secs => $1)) \
               order by seq limit $2 for update skip locked) \
             returning id",
        )
        .bind(older_than.as_secs_f64())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| row.get("id")).collect()
    }

    async fn count_by_status(&self) -> Result<Vec<(RequestStatus, i64)>, StoreError> {
        let rows = sqlx::query("select status, count(*) as n from dns_requests group by status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::status_count).collect()
    }
}

/// Whose finish a write is: the claimed request's (under its lease token), or a member's of
/// the claimed lead's atomic set (in the lead's transaction, after the lead's write).
#[derive(Debug, Clone, Copy)]
enum Finished {
    Leased(Uuid),
    Member,
}

/// Writes `outcome` to `request`'s row; `false` when the row is not (or no longer) the one
/// `finished` names.
async fn finish_on(
    connection: &mut PgConnection,
    request: &DnsRequest,
    finished: Finished,
    outcome: &Outcome,
    entries: &[LogEntry],
) -> Result<bool, StoreError> {
    let OutcomeColumns {
        status: state,
        last_error: error,
        retry_in: delay,
        applied_at,
        verified_at,
        rrsets,
    } = outcome.columns();
    let (before, after) = rrsets.unzip();
    let whose = match finished {
        Finished::Leased(_) => "lease_token = $8",
        Finished::Member => {
            "set_role = 'member' and status in ('PENDING', 'UNKNOWN') and $8::uuid is null"
        }
    };
    let sql = format!(
        "update dns_requests set status = $1, log_messages = log_messages || $2, \
         last_error = coalesce($3, last_error), lease_token = null, lease_expires_at = null, \
         next_attempt_at = coalesce(now() + make_interval(secs => $4), next_attempt_at), \
         enqueued_at = case when $4::float8 is null then enqueued_at end, \
         applied_at = coalesce($5, applied_at), verified_at = coalesce($6, verified_at), \
         finished_at = case when $1 in ('COMPLETED', 'FAILED') then now() end, \
         rrset_before = coalesce($9::jsonb, rrset_before), \
         rrset_after = coalesce($10::jsonb, rrset_after), updated_at = now() \
         where id = $7 and {whose}"
    );
    let token = match finished {
        Finished::Leased(token) => Some(token),
        Finished::Member => None,
    };
    let done = sqlx::query(AssertSqlSafe(sql))
        .bind(state)
        .bind(Json(entries))
        .bind(error)
        .bind(delay.map(|d| d.as_secs_f64()))
        .bind(applied_at)
        .bind(verified_at)
        .bind(request.id.0)
        .bind(token)
        .bind(before)
        .bind(after)
        .execute(connection)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Inserts a PENDING request, or finds the one its idempotency key names: the batch statement
/// (`batch::insert_rows`) with one row, so admission is in the same statement. Not stored, it
/// says why: the key's request, or the refusal; refused twice with no reason visible
/// afterwards (a race decided in between), it is `Busy`.
async fn insert_request(
    connection: &mut PgConnection,
    change: &ChangeRequest,
    max_unfinished: u32,
) -> Result<Inserted, StoreError> {
    for _ in 0..2 {
        let ids = [RequestId::new().0];
        let stored = batch::insert_rows(connection, &[(change, max_unfinished)], &ids).await?;
        if let Some(request) = stored.into_iter().next() {
            return Ok(Inserted::Created(request));
        }
        // Nothing was stored: the key was taken (the unique index decided), or admission refused.
        if change.idempotency_key.is_some()
            && let Some(existing) = existing_for_key(connection, change).await?
        {
            return Ok(existing);
        }
        if let Some(refused) = ledger::refusal(connection, change, max_unfinished).await? {
            return Ok(refused.into());
        }
    }
    // Refused twice with no reason left to see: the RRset or the name is contended; try later.
    Ok(Inserted::Busy)
}

/// The request that holds `change`'s idempotency key: the same change, or another.
async fn existing_for_key(
    connection: &mut PgConnection,
    change: &ChangeRequest,
) -> Result<Option<Inserted>, StoreError> {
    let sql = format!(
        "select {REQUEST_COLUMNS}, log_messages from dns_requests \
         where account_id = $1 and idempotency_key = $2"
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(&change.account_id)
        .bind(&change.idempotency_key)
        .fetch_optional(&mut *connection)
        .await?;
    row.map(|row| Ok(Inserted::for_key(rows::request(&row, true)?, change)))
        .transpose()
}

async fn append_log_on<'e, E>(
    executor: E,
    claim: &Claim,
    entries: &[LogEntry],
) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let done = sqlx::query(
        "update dns_requests set log_messages = log_messages || $1, updated_at = now() \
         where id = $2 and lease_token = $3",
    )
    .bind(Json(entries))
    .bind(claim.request.id.0)
    .bind(claim.token)
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}
