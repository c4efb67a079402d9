//! The ledger and RRset ownership on PostgreSQL: why an admission refused, and the SQL of
//! each ledger write ([`Ledger`]; which writes an outcome needs is `store::ledger`'s).
//! Admission itself is part of the insert statement (`insert_request`), so a request and its
//! claim on the RRset are one statement; the writes here run in the finish's transaction.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{ChangeRequest, RecordType};
use crate::store::ledger::{Held, Ledger};
use crate::store::{
    DnsRecord, DnsRequest, Refused, SELECT_ADMISSION, SELECT_RRSET, StoreError, rows,
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

impl Ledger for PgConnection {
    async fn insert_record(
        &mut self,
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
        .execute(self)
        .await?;
        Ok(())
    }

    async fn set_ttl(&mut self, request: &DnsRequest, ttl: u32) -> Result<(), StoreError> {
        sqlx::query(
            "update dns_records set ttl = $1, updated_at = now() \
             where domain = $2 and record_type = $3 and ttl != $1",
        )
        .bind(i64::from(ttl))
        .bind(&request.domain)
        .bind(request.record_type.as_str())
        .execute(self)
        .await?;
        Ok(())
    }

    async fn remove_records(
        &mut self,
        request: &DnsRequest,
        target: &str,
        priority: Option<u16>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "delete from dns_records where domain = $1 and record_type = $2 and account_id = $3 \
             and ($4 = '' or (target = $4 and priority is not distinct from $5))",
        )
        .bind(&request.domain)
        .bind(request.record_type.as_str())
        .bind(&request.account_id)
        .bind(target)
        .bind(priority.map(i32::from))
        .execute(self)
        .await?;
        Ok(())
    }

    async fn clear_rrset(&mut self, request: &DnsRequest) -> Result<(), StoreError> {
        sqlx::query("delete from dns_records where domain = $1 and record_type = $2")
            .bind(&request.domain)
            .bind(request.record_type.as_str())
            .execute(self)
            .await?;
        Ok(())
    }

    async fn give_rows(&mut self, request: &DnsRequest) -> Result<(), StoreError> {
        sqlx::query(
            "update dns_records set account_id = $1, updated_at = now() \
             where domain = $2 and record_type = $3",
        )
        .bind(&request.account_id)
        .bind(&request.domain)
        .bind(request.record_type.as_str())
        .execute(self)
        .await?;
        Ok(())
    }

    async fn take_over(&mut self, request: &DnsRequest) -> Result<(), StoreError> {
        sqlx::query(
            "insert into dns_rrsets (domain, record_type, account_id, created_at, updated_at) \
             values ($1, $2, $3, now(), now()) on conflict (domain, record_type) \
             do update set account_id = excluded.account_id, updated_at = now()",
        )
        .bind(&request.domain)
        .bind(request.record_type.as_str())
        .bind(&request.account_id)
        .execute(self)
        .await?;
        Ok(())
    }

    async fn release_if_idle(&mut self, held: &Held) -> Result<(), StoreError> {
        // The owner row first, locked: a create of the account that claimed it concurrently
        // holds that lock until it commits, and the delete below is a new statement, so its
        // snapshot sees that create's request and keeps the RRset.
        let owned: Option<i32> = sqlx::query_scalar(
            "select 1 from dns_rrsets where domain = $1 and record_type = $2 \
             and account_id = $3 for update",
        )
        .bind(&held.domain)
        .bind(held.record_type.as_str())
        .bind(&held.account_id)
        .fetch_optional(&mut *self)
        .await?;
        if owned.is_none() {
            return Ok(());
        }
        sqlx::query(
            "delete from dns_rrsets where domain = $1 and record_type = $2 and account_id = $3 \
             and not exists (select 1 from dns_records r where r.domain = $1 \
               and r.record_type = $2) \
             and not exists (select 1 from dns_requests q where q.domain = $1 \
               and q.account_id = $3 and q.record_type = $2 \
               and q.status in ('PENDING', 'PROCESSING', 'UNKNOWN') and q.id <> $4)",
        )
        .bind(&held.domain)
        .bind(held.record_type.as_str())
        .bind(&held.account_id)
        .bind(held.id.0)
        .execute(self)
        .await?;
        Ok(())
    }
}
