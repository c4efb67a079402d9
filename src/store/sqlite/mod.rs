//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! All writes go to one connection owned by the writer task (`writer.rs`), which commits
//! whatever writes are waiting in one transaction (group commit), so writers queue in the
//! process instead of meeting "database is locked" and share the cost of each flush to disk.
//! Reads use their own pool and, in WAL mode, never wait for the writer. A busy timeout covers
//! other processes that open the same file.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Sqlite};
use uuid::Uuid;

use super::ledger::{release_failed, settle};
use super::rows::{self, Columns as _};
use super::{
    Claim, DnsRecord, DnsRequest, Inserted, NewChangeSet, OpeningLog, Outcome, OutcomeColumns,
    REFUSAL_CONFIG, REQUEST_COLUMNS, RecordFilter, Refusal, RequestFilter, RequestStore,
    SELECT_RECORD_TYPES, SELECT_RECORDS, SetMember, StoreError, page_query,
};
use crate::domain::zoneform::RrsetView;
use crate::domain::{
    ChangeRequest, ChangeSetId, LogEntry, Operation, RecordType, RequestId, RequestStatus,
};
use writer::Writer;

/// The database's clock, as RFC 3339 text with milliseconds.
macro_rules! now {
    () => {
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    };
}

/// The head of an insert of new requests (`insert_request`, `insert_requests`).
macro_rules! insert_into {
    () => {
        "insert into dns_requests (id, account_id, source, operation, record_type, domain, \
         target, comment, config, status, log_messages, idempotency_key, fingerprint, zone, \
         backend, principal_token_id, principal_name, principal_account, client_addr, \
         next_attempt_at, enqueued_at, created_at, updated_at, targets, expect, \
         change_set_id, change_set_index, set_role) "
    };
}

mod audit;
mod columns;
mod ledger;
mod sets;
mod tokens;
mod writer;

/// How long a write waits for another process holding the file's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQLite implementation of [`RequestStore`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The one write connection, behind the group-commit task.
    writer: Writer,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if the URL says `mode=rwc`) the database and applies migrations.
    ///
    /// # Errors
    /// The URL does not parse, the file cannot be opened, or a migration fails.
    pub async fn open(url: &str, acquire_timeout: Duration) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let mut connection = options.connect().await?;
        let applied: Vec<i64> = sqlx::query_scalar("select version from _sqlx_migrations")
            .fetch_all(&mut connection)
            .await
            .unwrap_or_default();
        sqlx::migrate!("migrations/sqlite")
            .run(&mut connection)
            .await?;
        if !applied.contains(&super::OWNERSHIP_MIGRATION) {
            let merged: Vec<(String, String)> = sqlx::query_as(
                "select subject, details from dns_audit where action = 'rrset.merged' order by seq",
            )
            .fetch_all(&mut connection)
            .await?;
            super::log_merged(&merged);
        }
        let writer = Writer::start(connection, acquire_timeout);
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(Self { writer, reader })
    }

    /// Fires when the writer task panicked: the store takes no more writes and the process
    /// must stop.
    pub fn writer_stopped(&self) -> tokio_util::sync::CancellationToken {
        self.writer.stopped()
    }
}

#[async_trait::async_trait]
impl RequestStore for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        if self.writer.stopped().is_cancelled() {
            return Err(StoreError::WriteFailed(
                "the SQLite writer stopped after a panic".into(),
            ));
        }
        sqlx::query("select 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn insert(
        &self,
        change: &ChangeRequest,
        max_unfinished: u32,
    ) -> Result<Inserted, StoreError> {
        let change = change.clone();
        self.writer
            .write(move |c| async move { insert_request(c, &change, max_unfinished).await }.boxed())
            .await
    }

    async fn insert_many(
        &self,
        changes: &[ChangeRequest],
        max_unfinished: u32,
    ) -> Result<Vec<Inserted<RequestId>>, StoreError> {
        let changes = changes.to_vec();
        self.writer
            .write(move |c| {
                async move {
                    let mut inserted = Vec::with_capacity(changes.len());
                    for change in &changes {
                        inserted.push(insert_request(c, change, max_unfinished).await?.id_only());
                    }
                    Ok(inserted)
                }
                .boxed()
            })
            .await
    }

    async fn insert_atomic(
        &self,
        changes: &[ChangeRequest],
        max_unfinished: u32,
        set: &NewChangeSet,
    ) -> Result<Vec<Inserted<RequestId>>, StoreError> {
        let (changes, set) = (changes.to_vec(), set.clone());
        self.writer
            .write(move |c| {
                async move {
                    // A savepoint of its own inside the writer's: undone unless all is new.
                    sqlx::raw_sql("savepoint atomic_set")
                        .execute(&mut *c)
                        .await?;
                    let mut inserted = Vec::with_capacity(changes.len());
                    for change in &changes {
                        inserted.push(insert_request(c, change, max_unfinished).await?.id_only());
                    }
                    if inserted.iter().all(|i| matches!(i, Inserted::Created(_))) {
                        sets::insert_set(c, &set).await?;
                        sqlx::raw_sql("release savepoint atomic_set")
                            .execute(&mut *c)
                            .await?;
                    } else {
                        sqlx::raw_sql(
                            "rollback to savepoint atomic_set; release savepoint atomic_set",
                        )
                        .execute(&mut *c)
                        .await?;
                    }
                    Ok(inserted)
                }
                .boxed()
            })
            .await
    }

    async fn record_refusal(&self, refusal: &Refusal) -> Result<bool, StoreError> {
        let refusal = refusal.clone();
        self.writer
            .write(move |c| {
                async move {
                    let done = sqlx::query(concat!(
                        "insert into dns_requests (id, account_id, source, operation, \
                         record_type, domain, target, comment, config, status, log_messages, \
                         idempotency_key, fingerprint, last_error, principal_token_id, \
                         principal_name, principal_account, client_addr, next_attempt_at, \
                         finished_at, created_at, updated_at) \
                         values (?1, ?2, ?3, ?4, ?5, ?6, '', 'external-dns', ?7, 'FAILED', ?8, \
                         ?9, ?9, ?10, ?11, ?12, ?13, ?14, ",
                        now!(),
                        ", ",
                        now!(),
                        ", ",
                        now!(),
                        ", ",
                        now!(),
                        ") on conflict (account_id, idempotency_key) \
                         where idempotency_key is not null do nothing"
                    ))
                    .bind(RequestId::new().to_string())
                    .bind(&refusal.account_id)
                    .bind(&refusal.source)
                    .bind(refusal.operation.as_str())
                    .bind(refusal.record_type.as_str())
                    .bind(refusal.stored_domain())
                    .bind(REFUSAL_CONFIG)
                    .bind(refusal.log())
                    .bind(&refusal.idempotency_key)
                    .bind(&refusal.reason)
                    .bind(refusal.submitter.token_id.map(|t| t.to_string()))
                    .bind(&refusal.submitter.token_name)
                    .bind(&refusal.submitter.account_id)
                    .bind(&refusal.submitter.client_addr)
                    .execute(&mut *c)
                    .await?;
                    Ok(done.rows_affected() == 1)
                }
                .boxed()
            })
            .await
    }

    async fn set_members(&self, set: ChangeSetId) -> Result<Vec<DnsRequest>, StoreError> {
        let sql = format!(
            "select {REQUEST_COLUMNS}, log_messages from dns_requests \
             where change_set_id = ? and set_role = 'member' order by change_set_index"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(set.to_string())
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(|r| rows::request(r, true)).collect()
    }

    async fn get(&self, id: RequestId) -> Result<Option<DnsRequest>, StoreError> {
        let sql = format!("select {REQUEST_COLUMNS}, log_messages from dns_requests where id = ?");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| rows::request(&r, true)).transpose()
    }

    async fn list(&self, filter: &RequestFilter) -> Result<Vec<DnsRequest>, StoreError> {
        let select = format!("select {REQUEST_COLUMNS} from dns_requests");
        let mut query =
            page_query::<Sqlite>(select, filter.conditions(), filter.before, filter.limit);
        let rows = query.build().fetch_all(&self.reader).await?;
        rows.iter().map(|r| rows::request(r, false)).collect()
    }

    async fn list_records(&self, filter: &RecordFilter) -> Result<Vec<DnsRecord>, StoreError> {
        let mut query = page_query::<Sqlite>(
            SELECT_RECORDS,
            filter.conditions(),
            filter.before,
            filter.limit,
        );
        let rows = query.build().fetch_all(&self.reader).await?;
        rows.iter().map(rows::record).collect()
    }

    async fn rrset(
        &self,
        domain: &str,
        record_type: RecordType,
    ) -> Result<(Option<String>, Vec<DnsRecord>), StoreError> {
        ledger::rrset(&self.reader, domain, record_type).await
    }

    async fn record_types(&self, domain: &str) -> Result<Vec<RecordType>, StoreError> {
        let rows = sqlx::query(SELECT_RECORD_TYPES)
            .bind(domain)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(|row| row.get("record_type")).collect()
    }

    async fn claim(
        &self,
        id: Option<RequestId>,
        lease: Duration,
        opening: OpeningLog,
    ) -> Result<Option<Claim>, StoreError> {
        self.writer
            .write(move |c| {
                async move {
                    let Some(claim) = claim_request(c, id, lease).await? else {
                        return Ok(None);
                    };
                    append_log(c, &claim, &opening(&claim.request)).await?;
                    Ok(Some(claim))
                }
                .boxed()
            })
            .await
    }

    async fn append_log(&self, claim: &Claim, entries: &[LogEntry]) -> Result<bool, StoreError> {
        let (claim, entries) = (claim.clone(), entries.to_vec());
        self.writer
            .write(move |c| async move { append_log(c, &claim, &entries).await }.boxed())
            .await
    }

    async fn renew_lease(&self, claim: &Claim, lease: Duration) -> Result<bool, StoreError> {
        let claim = claim.clone();
        self.writer
            .write(move |c| async move { renew_lease(c, &claim, lease).await }.boxed())
            .await
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
        let (claim, outcome, entries) = (claim.clone(), outcome.clone(), entries.to_vec());
        let members = members.to_vec();
        self.writer
            .write(move |c| {
                async move { finish(c, &claim, &outcome, &entries, &members).await }.boxed()
            })
            .await
    }

    async fn release_expired_leases(
        &self,
        max_attempts: u32,
    ) -> Result<Vec<RequestId>, StoreError> {
        self.writer
            .write(move |c| async move { release_expired_leases(c, max_attempts).await }.boxed())
            .await
    }

    async fn requeue_due(
        &self,
        older_than: Duration,
        limit: u32,
    ) -> Result<Vec<RequestId>, StoreError> {
        self.writer
            .write(move |c| {
                async move {
                    let rows = sqlx::query(concat!(
                        "update dns_requests set enqueued_at = ",
                        now!(),
                        " where id in (select id from dns_requests where status in ('PENDING', 'UNKNOWN') \
                         and next_attempt_at <= ",
                        now!(),
                        " and set_role is not 'member' and (enqueued_at is null or enqueued_at < \
                         strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)) order by seq limit ?) \
                         returning id"
                    ))
                    .bind(format!("-{:.3} seconds", older_than.as_secs_f64()))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *c)
                    .await?;
                    rows.iter().map(|row| row.get("id")).collect()
                }
                .boxed()
            })
            .await
    }

    async fn count_by_status(&self) -> Result<Vec<(RequestStatus, i64)>, StoreError> {
        let rows = sqlx::query("select status, count(*) as n from dns_requests group by status")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(rows::status_count).collect()
    }
}

/// Inserts a PENDING request, or finds the one its idempotency key names, with admission
/// (ownership and the unfinished-requests limit) as the insert's condition.
async fn insert_request(
    connection: &mut SqliteConnection,
    change: &ChangeRequest,
    max_unfinished: u32,
) -> Result<Inserted, StoreError> {
    let accepted = LogEntry::accepted(change);
    // One statement: admission (no other account owns the RRset, and the account has fewer
    // than ?19 unfinished requests for the name; adoptions pass) is the insert's condition,
    // and the trigger dns_requests_claim_rrset claims an unowned RRset for a create. The
    // condition is chosen here, not by a parameter: SQLite prepares a statement again on every
    // execution when a bound value can change its plan.
    // (So is a LIMIT: it is written into the text, a number from the settings.)
    let admission = match change.operation {
        Operation::Adopt => "?19 > 0".to_owned(),
        Operation::Create | Operation::Delete | Operation::Replace => format!(
            "not exists (select 1 from dns_rrsets where domain = ?6 and record_type = ?5 \
               and account_id <> ?2) \
             and (select count(*) from (select 1 from dns_requests where domain = ?6 \
               and account_id = ?2 and status in ('PENDING', 'PROCESSING', 'UNKNOWN') \
               limit {max_unfinished})) < ?19"
        ),
    };
    let sql = format!(
        concat!(
            insert_into!(),
            "select ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'PENDING', json_array(json(?10)), ?11, \
             ?12, ?13, ?14, ?15, ?16, ?17, ?18, ",
            now!(),
            ", ",
            now!(),
            ", ",
            now!(),
            ", ",
            now!(),
            ", ?20, ?21, ?22, ?23, ?24 where {} \
             on conflict (account_id, idempotency_key) where idempotency_key is not null \
             do nothing returning {}, log_messages"
        ),
        admission, REQUEST_COLUMNS
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(RequestId::new().to_string())
        .bind(&change.account_id)
        .bind(&change.source)
        .bind(change.operation.as_str())
        .bind(change.record_type.as_str())
        .bind(change.domain.as_str())
        .bind(change.target())
        .bind(&change.comment)
        .bind(to_json(&change.config()))
        .bind(to_json(&accepted))
        .bind(&change.idempotency_key)
        .bind(change.fingerprint())
        .bind(&change.zone)
        .bind(&change.backend)
        .bind(change.submitter.token_id.map(|t| t.to_string()))
        .bind(&change.submitter.token_name)
        .bind(&change.submitter.account_id)
        .bind(&change.submitter.client_addr)
        .bind(i64::from(max_unfinished))
        .bind(change.targets().map(|targets| to_json(&targets)))
        .bind(change.expect.as_ref().map(|e| to_json(&RrsetView::of(e))))
        .bind(change.change_set.map(|place| place.id.to_string()))
        .bind(change.change_set.map(|place| i64::from(place.index)))
        .bind(change.change_set.map(|place| place.role.as_str()))
        .fetch_optional(&mut *connection)
        .await?;
    if let Some(row) = row {
        return Ok(Inserted::Created(rows::request(&row, true)?));
    }
    // Nothing was stored: the key was taken (the unique index decided), or admission refused.
    if change.idempotency_key.is_some()
        && let Some(existing) = existing_for_key(connection, change).await?
    {
        return Ok(existing);
    }
    match ledger::refusal(connection, change, max_unfinished).await? {
        Some(refused) => Ok(refused.into()),
        None => Err(StoreError::Corrupt(
            "the insert did nothing although admission and the idempotency key allowed it".into(),
        )),
    }
}

/// The request that holds `change`'s idempotency key, if any: the same change, or another.
async fn existing_for_key(
    connection: &mut SqliteConnection,
    change: &ChangeRequest,
) -> Result<Option<Inserted>, StoreError> {
    let sql = format!(
        "select {REQUEST_COLUMNS}, log_messages from dns_requests \
         where account_id = ? and idempotency_key = ?"
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(&change.account_id)
        .bind(&change.idempotency_key)
        .fetch_optional(&mut *connection)
        .await?;
    row.map(|row| Ok(Inserted::for_key(rows::request(&row, true)?, change)))
        .transpose()
}

/// Claims request `id`, or the oldest due one, if it is claimable.
async fn claim_request(
    connection: &mut SqliteConnection,
    id: Option<RequestId>,
    lease: Duration,
) -> Result<Option<Claim>, StoreError> {
    // A request is claimable when it is PENDING, due, and no older request for the same
    // owner name is unfinished; or UNKNOWN, due, and not leased (a claim of it keeps it
    // UNKNOWN and is no attempt: the worker only queries the server). A sweep takes only
    // PENDING requests; UNKNOWN ones come by delivery (the reconciler queues them when due).
    // A member of an atomic set is never claimed by itself; its set's lead is claimable only
    // when no older request is unfinished at any member's name either, its own set aside.
    const CLAIMABLE: &str = concat!(
        "r.status = 'PENDING' and r.next_attempt_at <= ",
        now!(),
        " and r.set_role is not 'member' \
         and not exists (select 1 from dns_requests o where o.domain = r.domain \
         and o.seq < r.seq and o.status in ('PENDING', 'PROCESSING', 'UNKNOWN')) \
         and (r.set_role is not 'lead' or not exists (select 1 from dns_requests m \
           join dns_requests o on o.domain = m.domain and o.seq < m.seq \
           where m.change_set_id = r.change_set_id and m.set_role = 'member' \
           and o.change_set_id is not r.change_set_id \
           and o.status in ('PENDING', 'PROCESSING', 'UNKNOWN')))"
    );
    const RESOLVABLE: &str = concat!(
        "r.status = 'UNKNOWN' and r.next_attempt_at <= ",
        now!(),
        " and r.set_role is not 'member' and (r.lease_expires_at is null or r.lease_expires_at < ",
        now!(),
        ")"
    );
    let target = match id {
        Some(_) => format!(
            "select r.id from dns_requests r where r.id = ? and (({CLAIMABLE}) or ({RESOLVABLE}))"
        ),
        None => {
            format!("select r.id from dns_requests r where {CLAIMABLE} order by r.seq limit 1")
        }
    };
    let sql = format!(
        concat!(
            "update dns_requests set \
             status = case when status = 'UNKNOWN' then 'UNKNOWN' else 'PROCESSING' end, \
             lease_token = ?, lease_expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?), \
             attempts = attempts + case when status = 'UNKNOWN' then 0 else 1 end, \
             started_at = coalesce(started_at, ",
            now!(),
            "), updated_at = ",
            now!(),
            " where id = ({}) returning {}, log_messages"
        ),
        target, REQUEST_COLUMNS
    );
    let token = Uuid::new_v4();
    let mut query = sqlx::query(AssertSqlSafe(sql))
        .bind(token.to_string())
        .bind(sqlite_offset(lease));
    if let Some(id) = id {
        query = query.bind(id.to_string());
    }
    let row = query.fetch_optional(&mut *connection).await?;
    row.map(|row| {
        Ok(Claim {
            request: rows::request(&row, true)?,
            token,
        })
    })
    .transpose()
}

async fn append_log(
    connection: &mut SqliteConnection,
    claim: &Claim,
    entries: &[LogEntry],
) -> Result<bool, StoreError> {
    let sql = format!(
        concat!(
            "update dns_requests set log_messages = {}, updated_at = ",
            now!(),
            " where id = ? and lease_token = ?"
        ),
        append_log_expr(entries.len())
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for entry in entries {
        query = query.bind(to_json(entry));
    }
    let done = query
        .bind(claim.request.id.to_string())
        .bind(claim.token.to_string())
        .execute(&mut *connection)
        .await?;
    Ok(done.rows_affected() == 1)
}

async fn renew_lease(
    connection: &mut SqliteConnection,
    claim: &Claim,
    lease: Duration,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "update dns_requests \
         set lease_expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) \
         where id = ? and lease_token = ? and status in ('PROCESSING', 'UNKNOWN')",
    )
    .bind(sqlite_offset(lease))
    .bind(claim.request.id.to_string())
    .bind(claim.token.to_string())
    .execute(&mut *connection)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whose finish a write is: the claimed request's (under its lease token), or a member's of
/// the claimed lead's atomic set (in the lead's unit, after the lead's write).
#[derive(Debug, Clone, Copy)]
enum Finished {
    Leased(Uuid),
    Member,
}

/// Writes an attempt's outcome under the claim's token, then each member's share of it; the
/// writer's savepoint makes the status changes and the ledger rows one unit.
async fn finish(
    connection: &mut SqliteConnection,
    claim: &Claim,
    outcome: &Outcome,
    entries: &[LogEntry],
    members: &[SetMember],
) -> Result<bool, StoreError> {
    let lead = Finished::Leased(claim.token);
    if !finish_on(connection, &claim.request, lead, outcome, entries).await? {
        return Ok(false);
    }
    settle(connection, &claim.request, outcome).await?;
    for member in members {
        let (outcome, entries) = member.outcome(&claim.request, outcome, entries);
        if finish_on(
            connection,
            &member.request,
            Finished::Member,
            &outcome,
            &entries,
        )
        .await?
        {
            settle(connection, &member.request, &outcome).await?;
        }
    }
    Ok(true)
}

/// Writes `outcome` to `request`'s row; `false` when the row is not (or no longer) the one
/// `finished` names.
async fn finish_on(
    connection: &mut SqliteConnection,
    request: &DnsRequest,
    finished: Finished,
    outcome: &Outcome,
    entries: &[LogEntry],
) -> Result<bool, StoreError> {
    let log = append_log_expr(entries.len());
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
        Finished::Leased(_) => "lease_token = ?",
        Finished::Member => "set_role = 'member' and status in ('PENDING', 'UNKNOWN')",
    };
    let sql = format!(
        concat!(
            "update dns_requests set status = ?, log_messages = {}, \
             last_error = coalesce(?, last_error), lease_token = null, lease_expires_at = null, \
             next_attempt_at = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?), next_attempt_at), \
             enqueued_at = case when ? is null then enqueued_at else null end, \
             applied_at = coalesce(?, applied_at), verified_at = coalesce(?, verified_at), \
             finished_at = case when ? in ('COMPLETED', 'FAILED') then ",
            now!(),
            " end, rrset_before = coalesce(?, rrset_before), \
             rrset_after = coalesce(?, rrset_after), updated_at = ",
            now!(),
            " where id = ? and {}"
        ),
        log, whose
    );
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(state);
    for entry in entries {
        query = query.bind(to_json(entry));
    }
    let offset = delay.map(sqlite_offset);
    query = query
        .bind(error)
        .bind(offset.clone())
        .bind(offset)
        .bind(applied_at.map(rfc3339))
        .bind(verified_at.map(rfc3339))
        .bind(state)
        .bind(before)
        .bind(after)
        .bind(request.id.to_string());
    if let Finished::Leased(token) = finished {
        query = query.bind(token.to_string());
    }
    let done = query.execute(&mut *connection).await?;
    Ok(done.rows_affected() == 1)
}

/// Returns expired leases to PENDING, or FAILED once the attempts are used up.
async fn release_expired_leases(
    connection: &mut SqliteConnection,
    max_attempts: u32,
) -> Result<Vec<RequestId>, StoreError> {
    let rows = sqlx::query(concat!(
            "update dns_requests set \
             status = case when attempts >= ?1 then 'FAILED' else 'PENDING' end, \
             last_error = 'lease expired: the worker stopped without reporting an outcome', \
             lease_token = null, lease_expires_at = null, enqueued_at = null, \
             next_attempt_at = ", now!(), ", \
             finished_at = case when attempts >= ?1 then ", now!(), " end, \
             log_messages = json_insert(log_messages, '$[#]', json_object('at', ", now!(), ", \
               'level', case when attempts >= ?1 then 'error' else 'warning' end, \
               'message', case when attempts >= ?1 \
                 then 'lease expired after attempt ' || attempts || ' of ' || ?1 || '; giving up' \
                 else 'lease expired after attempt ' || attempts || '; the worker stopped without reporting, so another will retry' end)), \
             updated_at = ", now!(), " \
             where status = 'PROCESSING' and lease_expires_at < ", now!(), " \
             returning id, status, domain, record_type, account_id"
        ))
        .bind(i64::from(max_attempts))
        .fetch_all(&mut *connection)
        .await?;
    let mut released = release_failed(&mut *connection, &rows).await?;
    // The members of an atomic set whose lead FAILED fail with it.
    for row in &rows {
        if row.get::<RequestStatus>("status")? != RequestStatus::Failed {
            continue;
        }
        let lead = row.get::<RequestId>("id")?.to_string();
        let members = sqlx::query(concat!(
            "update dns_requests set status = 'FAILED', \
             last_error = 'its atomic change set failed: the lease of its lead request expired', \
             finished_at = ", now!(), ", updated_at = ", now!(), ", \
             log_messages = json_insert(log_messages, '$[#]', json_object('at', ", now!(), ", \
               'level', 'error', 'message', 'the lead request ' || ? || \
               ' of its atomic change set failed: its lease expired and its attempts are used up')) \
             where set_role = 'member' and status in ('PENDING', 'UNKNOWN') \
             and change_set_id = (select change_set_id from dns_requests \
               where id = ? and set_role = 'lead') \
             returning id, status, domain, record_type, account_id"
        ))
        .bind(&lead)
        .bind(&lead)
        .fetch_all(&mut *connection)
        .await?;
        released.extend(release_failed(&mut *connection, &members).await?);
    }
    Ok(released)
}

/// `json_insert(log_messages, '$[#]', json(?), ...)`: SQLite applies the edits left to right,
/// so each `$[#]` appends after the previous one.
fn append_log_expr(entries: usize) -> String {
    let mut expr = String::from("json_insert(log_messages");
    for _ in 0..entries {
        expr.push_str(", '$[#]', json(?)");
    }
    expr.push(')');
    expr
}

/// A strftime modifier: `+12.500 seconds`.
fn sqlite_offset(duration: Duration) -> String {
    format!("+{:.3} seconds", duration.as_secs_f64())
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serialises")
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::*;

    #[tokio::test]
    async fn the_store_does_not_answer_once_its_writer_panicked() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/s.db?mode=rwc", dir.path().display());
        let store = SqliteStore::open(&url, Duration::from_secs(1))
            .await
            .unwrap();
        assert!(store.ping().await.is_ok());

        // Act
        let panicked = store
            .writer
            .write::<(), _>(|_| async { panic!("a job panicked") }.boxed())
            .await;
        let mut ping = store.ping().await;
        for _ in 0..100 {
            if ping.is_err() {
                break;
            }
            tokio::task::yield_now().await;
            ping = store.ping().await;
        }

        // Assert
        assert!(panicked.is_err());
        assert!(ping.is_err(), "ping answers after the writer panicked");
    }
}
