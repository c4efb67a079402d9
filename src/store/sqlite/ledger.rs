//! The ledger and RRset ownership on SQLite: why an admission refused, and what each outcome
//! writes. Everything here runs on the writer's connection, inside the unit (savepoint) of
//! the insert or the finish it belongs to, so the checks and the writes are one step.

use sqlx::{SqliteConnection, SqlitePool};
use uuid::Uuid;

use crate::domain::{ChangeRequest, LiveRrset, Operation, RecordType};
use crate::store::{
    DnsRecord, DnsRequest, Outcome, Refused, SELECT_ADMISSION, SELECT_RRSET, StoreError, rows,
};

/// Why the insert's admission refused a request: the RRset's owner, or the account's
/// unfinished requests for the name (`None`: neither; adoptions always pass). The insert and
/// this read are in one writer job, so nothing changed in between.
pub(super) async fn refusal(
    connection: &mut SqliteConnection,
    change: &ChangeRequest,
    max_unfinished: u32,
) -> Result<Option<Refused>, StoreError> {
    match change.operation {
        Operation::Adopt => return Ok(None),
        Operation::Create | Operation::Delete => {}
    }
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
    reader: &SqlitePool,
    domain: &str,
    record_type: RecordType,
) -> Result<(Option<String>, Vec<DnsRecord>), StoreError> {
    let rows = sqlx::query(SELECT_RRSET)
        .bind(domain)
        .bind(record_type.as_str())
        .fetch_all(reader)
        .await?;
    rows::rrset(&rows)
}

/// What an outcome does to the ledger and to ownership, in the finish's unit.
pub(super) async fn settle(
    connection: &mut SqliteConnection,
    request: &DnsRequest,
    outcome: &Outcome,
) -> Result<(), StoreError> {
    match (outcome, request.operation) {
        (Outcome::Completed { .. }, Operation::Create) => add_record(connection, request).await,
        (Outcome::Completed { .. }, Operation::Delete) => {
            remove_records(connection, request).await?;
            release_if_idle(connection, &Held::of(request)).await
        }
        (Outcome::Completed { .. }, Operation::Adopt) => adopt(connection, request, None).await,
        (Outcome::Adopted { live, .. }, _) => adopt(connection, request, live.as_ref()).await,
        (Outcome::Failed { .. }, _) => release_if_idle(connection, &Held::of(request)).await,
        (Outcome::Retry { .. } | Outcome::Released, _) => Ok(()),
    }
}

/// What a finished request held: its RRset, account and id.
pub(super) struct Held {
    pub domain: String,
    pub record_type: String,
    pub account_id: String,
    pub id: String,
}

impl Held {
    fn of(request: &DnsRequest) -> Self {
        Self {
            domain: request.domain.clone(),
            record_type: request.record_type.as_str().to_owned(),
            account_id: request.account_id.clone(),
            id: request.id.to_string(),
        }
    }
}

/// Ends the account's ownership of the request's RRset if nothing holds it: no ledger row
/// and no other unfinished request of the account for the RRset.
pub(super) async fn release_if_idle(
    connection: &mut SqliteConnection,
    request: &Held,
) -> Result<(), StoreError> {
    sqlx::query(
        "delete from dns_rrsets where domain = ?1 and record_type = ?2 and account_id = ?3 \
         and not exists (select 1 from dns_records r where r.domain = ?1 and r.record_type = ?2) \
         and not exists (select 1 from dns_requests q where q.domain = ?1 and q.account_id = ?3 \
           and q.record_type = ?2 and q.status in ('PENDING', 'PROCESSING') and q.id <> ?4)",
    )
    .bind(&request.domain)
    .bind(&request.record_type)
    .bind(&request.account_id)
    .bind(&request.id)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Gives the RRset to `account_id`, whoever owned it (an adoption).
async fn take_over(
    connection: &mut SqliteConnection,
    domain: &str,
    record_type: &str,
    account_id: &str,
) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "insert into dns_rrsets (domain, record_type, account_id, created_at, updated_at) \
         values (?, ?, ?, ",
        now!(),
        ", ",
        now!(),
        ") on conflict (domain, record_type) do update set account_id = excluded.account_id, \
         updated_at = excluded.updated_at"
    ))
    .bind(domain)
    .bind(record_type)
    .bind(account_id)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// A completed create: the record once (a record already held is left as it is) and the TTL of
/// the RRset brought in line (TTL belongs to the RRset and the latest change sets it). The
/// RRset is the account's already: claimed when the create was inserted (the trigger
/// `dns_requests_claim_rrset`), and the worker checked it.
async fn add_record(
    connection: &mut SqliteConnection,
    request: &DnsRequest,
) -> Result<(), StoreError> {
    insert_record(
        connection,
        request,
        &request.target,
        request.config.priority,
        request.config.ttl,
    )
    .await?;
    set_ttl(connection, request, request.config.ttl).await
}

/// A completed delete: the account's row, or without a target all its rows of the RRset.
async fn remove_records(
    connection: &mut SqliteConnection,
    request: &DnsRequest,
) -> Result<(), StoreError> {
    sqlx::query(
        "delete from dns_records where domain = ? and record_type = ? and account_id = ? \
         and (? = '' or (target = ? and coalesce(priority, -1) = coalesce(?, -1)))",
    )
    .bind(&request.domain)
    .bind(request.record_type.as_str())
    .bind(&request.account_id)
    .bind(&request.target)
    .bind(&request.target)
    .bind(request.config.priority.map(i64::from))
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// A completed adoption: the RRset becomes the account's, and the ledger holds `live` (or,
/// where the ledger is the live state, keeps its rows for the new owner).
async fn adopt(
    connection: &mut SqliteConnection,
    request: &DnsRequest,
    live: Option<&LiveRrset>,
) -> Result<(), StoreError> {
    let (domain, record_type) = (&request.domain, request.record_type.as_str());
    match live {
        Some(live) => {
            sqlx::query("delete from dns_records where domain = ? and record_type = ?")
                .bind(domain)
                .bind(record_type)
                .execute(&mut *connection)
                .await?;
            for record in &live.records {
                insert_record(
                    connection,
                    request,
                    &record.target(),
                    record.priority(),
                    live.ttl,
                )
                .await?;
            }
        }
        None => {
            sqlx::query(concat!(
                "update dns_records set account_id = ?, updated_at = ",
                now!(),
                " where domain = ? and record_type = ?"
            ))
            .bind(&request.account_id)
            .bind(domain)
            .bind(record_type)
            .execute(&mut *connection)
            .await?;
        }
    }
    take_over(connection, domain, record_type, &request.account_id).await
}

/// One ledger row for `request`'s RRset, unless the record is there already.
async fn insert_record(
    connection: &mut SqliteConnection,
    request: &DnsRequest,
    target: &str,
    priority: Option<u16>,
    ttl: u32,
) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "insert into dns_records (id, request_id, account_id, record_type, domain, target, \
         comment, ttl, priority, zone, provisioned_at, created_at, updated_at) \
         values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ",
        now!(),
        ", ",
        now!(),
        ", ",
        now!(),
        ") on conflict do nothing"
    ))
    .bind(Uuid::now_v7().to_string())
    .bind(request.id.to_string())
    .bind(&request.account_id)
    .bind(request.record_type.as_str())
    .bind(&request.domain)
    .bind(target)
    .bind(&request.comment)
    .bind(i64::from(ttl))
    .bind(priority.map(i64::from))
    .bind(&request.zone)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

async fn set_ttl(
    connection: &mut SqliteConnection,
    request: &DnsRequest,
    ttl: u32,
) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "update dns_records set ttl = ?1, updated_at = ",
        now!(),
        " where domain = ?2 and record_type = ?3 and ttl != ?1"
    ))
    .bind(i64::from(ttl))
    .bind(&request.domain)
    .bind(request.record_type.as_str())
    .execute(&mut *connection)
    .await?;
    Ok(())
}
