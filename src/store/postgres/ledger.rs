//! The ledger and RRset ownership on PostgreSQL: why an admission refused, and what each
//! outcome writes. Admission itself is part of the insert statement (`insert_request`), so a
//! request and its claim on the RRset are one statement; the writes here run in the finish's
//! transaction.

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::domain::{ChangeRequest, LiveRrset, Operation, RecordType};
use crate::store::{
    DnsRecord, DnsRequest, Outcome, Refused, SELECT_ADMISSION, SELECT_RRSET, StoreError, rows,
};

/// Why the admission in the insert statement stored nothing, read after it (the key was
/// checked first): another account owns the RRset, or the account has `max_unfinished`
/// unfinished requests for the name. `None`: neither is true now (the statement lost a race
/// that has since been decided; try it again).
pub(super) async fn refusal(
    connection: &mut PgConnection,
    change: &ChangeRequest,
    max_unfinished: u32,
) -> Result<Option<Refused>, StoreError> {
    let (owner, unfinished): (Option<String>, i64) = sqlx::query_as(SELECT_ADMISSION)
        .bind(change.domain.as_str())
        .bind(change.record_type.as_str())
        .bind(&change.account_id)
        .bind(i64::from(max_unfinished))
        .fetch_one(&mut *connection)
        .await?;
    Ok(Refused::judge(change, owner, unfinished, max_unfinished))
}

/// Every ledger row of an RRset, oldest first, and its owner (`SELECT_RRSET`).
pub(super) async fn rrset(
    pool: &PgPool,
    domain: &str,
    record_type: RecordType,
) -> Result<(Option<String>, Vec<DnsRecord>), StoreError> {
    let rows = sqlx::query(SELECT_RRSET)
        .bind(domain)
        .bind(record_type.as_str())
        .fetch_all(pool)
        .await?;
    rows::rrset(&rows)
}

/// What an outcome does to the ledger and to ownership, in the finish's transaction.
pub(super) async fn settle(
    tx: &mut Transaction<'_, Postgres>,
    request: &DnsRequest,
    outcome: &Outcome,
) -> Result<(), StoreError> {
    match (outcome, request.operation) {
        (Outcome::Completed { .. }, Operation::Create) => add_record(tx, request).await,
        (Outcome::Completed { .. }, Operation::Delete) => {
            remove_records(tx, request).await?;
            release_if_idle(tx, &Held::of(request)).await
        }
        (Outcome::Completed { .. }, Operation::Adopt) => adopt(tx, request, None).await,
        (Outcome::Adopted { live, .. }, _) => adopt(tx, request, live.as_ref()).await,
        (Outcome::Failed { .. }, _) => release_if_idle(tx, &Held::of(request)).await,
        (Outcome::Retry { .. } | Outcome::Released, _) => Ok(()),
    }
}

/// What a finished request held: its RRset, account and id.
pub(super) struct Held {
    pub domain: String,
    pub record_type: String,
    pub account_id: String,
    pub id: Uuid,
}

impl Held {
    fn of(request: &DnsRequest) -> Self {
        Self {
            domain: request.domain.clone(),
            record_type: request.record_type.as_str().to_owned(),
            account_id: request.account_id.clone(),
            id: request.id.0,
        }
    }
}

/// Ends the account's ownership of the request's RRset if nothing holds it: no ledger row
/// and no other unfinished request of the account for the RRset.
pub(super) async fn release_if_idle(
    connection: &mut PgConnection,
    held: &Held,
) -> Result<(), StoreError> {
    // The owner row first, locked: a create of the account that claimed it concurrently holds
    // that lock until it commits, and the delete below is a new statement, so its snapshot
    // sees that create's request and keeps the RRset.
    let owned: Option<i32> = sqlx::query_scalar(
        "select 1 from dns_rrsets where domain = $1 and record_type = $2 and account_id = $3 \
         for update",
    )
    .bind(&held.domain)
    .bind(&held.record_type)
    .bind(&held.account_id)
    .fetch_optional(&mut *connection)
    .await?;
    if owned.is_none() {
        return Ok(());
    }
    sqlx::query(
        "delete from dns_rrsets where domain = $1 and record_type = $2 and account_id = $3 \
         and not exists (select 1 from dns_records r where r.domain = $1 and r.record_type = $2) \
         and not exists (select 1 from dns_requests q where q.domain = $1 and q.account_id = $3 \
           and q.record_type = $2 and q.status in ('PENDING', 'PROCESSING') and q.id <> $4)",
    )
    .bind(&held.domain)
    .bind(&held.record_type)
    .bind(&held.account_id)
    .bind(held.id)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// A completed create: the record once (a record already held is left as it is) and the TTL of
/// the RRset brought in line (TTL belongs to the RRset and the latest change sets it). The
/// RRset is the account's already: claimed by the create's insert, and the worker checked it.
async fn add_record(
    tx: &mut Transaction<'_, Postgres>,
    request: &DnsRequest,
) -> Result<(), StoreError> {
    insert_record(
        tx,
        request,
        &request.target,
        request.config.priority,
        request.config.ttl,
    )
    .await?;
    sqlx::query(
        "update dns_records set ttl = $1, updated_at = now() \
         where domain = $2 and record_type = $3 and ttl != $1",
    )
    .bind(i64::from(request.config.ttl))
    .bind(&request.domain)
    .bind(request.record_type.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A completed delete: the account's row, or without a target all its rows of the RRset.
async fn remove_records(
    tx: &mut Transaction<'_, Postgres>,
    request: &DnsRequest,
) -> Result<(), StoreError> {
    sqlx::query(
        "delete from dns_records where domain = $1 and record_type = $2 and account_id = $3 \
         and ($4 = '' or (target = $4 and priority is not distinct from $5))",
    )
    .bind(&request.domain)
    .bind(request.record_type.as_str())
    .bind(&request.account_id)
    .bind(&request.target)
    .bind(request.config.priority.map(i32::from))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A completed adoption: the RRset becomes the account's, and the ledger holds `live` (or,
/// where the ledger is the live state, keeps its rows for the new owner).
async fn adopt(
    tx: &mut Transaction<'_, Postgres>,
    request: &DnsRequest,
    live: Option<&LiveRrset>,
) -> Result<(), StoreError> {
    let (domain, record_type) = (&request.domain, request.record_type.as_str());
    match live {
        Some(live) => {
            sqlx::query("delete from dns_records where domain = $1 and record_type = $2")
                .bind(domain)
                .bind(record_type)
                .execute(&mut **tx)
                .await?;
            for record in &live.records {
                insert_record(tx, request, &record.target(), record.priority(), live.ttl).await?;
            }
        }
        None => {
            sqlx::query(
                "update dns_records set account_id = $1, updated_at = now() \
                 where domain = $2 and record_type = $3",
            )
            .bind(&request.account_id)
            .bind(domain)
            .bind(record_type)
            .execute(&mut **tx)
            .await?;
        }
    }
    take_over(tx, request).await
}

/// Gives the request's RRset to the request's account, whoever owned it (an adoption).
async fn take_over(
    tx: &mut Transaction<'_, Postgres>,
    request: &DnsRequest,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into dns_rrsets (domain, record_type, account_id, created_at, updated_at) \
         values ($1, $2, $3, now(), now()) on conflict (domain, record_type) \
         do update set account_id = excluded.account_id, updated_at = now()",
    )
    .bind(&request.domain)
    .bind(request.record_type.as_str())
    .bind(&request.account_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One ledger row for `request`'s RRset, unless the record is there already.
async fn insert_record(
    tx: &mut Transaction<'_, Postgres>,
    request: &DnsRequest,
    target: &str,
    priority: Option<u16>,
    ttl: u32,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into dns_records (id, request_id, account_id, record_type, domain, target, \
         comment, ttl, priority, zone, provisioned_at, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now(), now(), now()) \
         on conflict do nothing",
    )
    .bind(Uuid::now_v7())
    .bind(request.id.0)
    .bind(&request.account_id)
    .bind(request.record_type.as_str())
    .bind(&request.domain)
    .bind(target)
    .bind(&request.comment)
    .bind(i64::from(ttl))
    .bind(priority.map(i32::from))
    .bind(&request.zone)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
