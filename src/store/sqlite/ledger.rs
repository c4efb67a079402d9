//! The ledger and RRset ownership on SQLite: why an admission refused, and the SQL of each
//! ledger write ([`Ledger`]; which writes an outcome needs is `store::ledger`'s). Everything
//! here runs on the writer's connection, inside the unit (savepoint) of the insert or the
//! finish it belongs to, so the checks and the writes are one step.

use sqlx::{SqliteConnection, SqlitePool};
use uuid::Uuid;

use crate::domain::{ChangeRequest, RecordType};
use crate::store::ledger::{Held, Ledger};
use crate::store::{
    DnsRecord, DnsRequest, Refused, SELECT_ADMISSION, SELECT_RRSET, StoreError, rows,
};

/// Why the insert's admission refused a request: the RRset's owner, or the account's
/// unfinished requests for the name (`None`: neither; adoptions always pass). The insert and
/// this read are in one writer job, so nothing changed in between.
pub(super) async fn refusal(
    connection: &mut SqliteConnection,
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

impl Ledger for SqliteConnection {
    async fn insert_record(
        &mut self,
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
        .execute(self)
        .await?;
        Ok(())
    }

    async fn set_ttl(&mut self, request: &DnsRequest, ttl: u32) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "update dns_records set ttl = ?1, updated_at = ",
            now!(),
            " where domain = ?2 and record_type = ?3 and ttl != ?1"
        ))
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
            "delete from dns_records where domain = ? and record_type = ? and account_id = ? \
             and (? = '' or (target = ? and coalesce(priority, -1) = coalesce(?, -1)))",
        )
        .bind(&request.domain)
        .bind(request.record_type.as_str())
        .bind(&request.account_id)
        .bind(target)
        .bind(target)
        .bind(priority.map(i64::from))
        .execute(self)
        .await?;
        Ok(())
    }

    async fn clear_rrset(&mut self, request: &DnsRequest) -> Result<(), StoreError> {
        sqlx::query("delete from dns_records where domain = ? and record_type = ?")
            .bind(&request.domain)
            .bind(request.record_type.as_str())
            .execute(self)
            .await?;
        Ok(())
    }

    async fn give_rows(&mut self, request: &DnsRequest) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "update dns_records set account_id = ?, updated_at = ",
            now!(),
            " where domain = ? and record_type = ?"
        ))
        .bind(&request.account_id)
        .bind(&request.domain)
        .bind(request.record_type.as_str())
        .execute(self)
        .await?;
        Ok(())
    }

    async fn take_over(&mut self, request: &DnsRequest) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "insert into dns_rrsets (domain, record_type, account_id, created_at, updated_at) \
             values (?, ?, ?, ",
            now!(),
            ", ",
            now!(),
            ") on conflict (domain, record_type) do update set account_id = excluded.account_id, \
             updated_at = excluded.updated_at"
        ))
        .bind(&request.domain)
        .bind(request.record_type.as_str())
        .bind(&request.account_id)
        .execute(self)
        .await?;
        Ok(())
    }

    async fn release_if_idle(&mut self, held: &Held) -> Result<(), StoreError> {
        sqlx::query(
            "delete from dns_rrsets where domain = ?1 and record_type = ?2 and account_id = ?3 \
             and not exists (select 1 from dns_records r where r.domain = ?1 \
               and r.record_type = ?2) \
             and not exists (select 1 from dns_requests q where q.domain = ?1 \
               and q.account_id = ?3 and q.record_type = ?2 \
               and q.status in ('PENDING', 'PROCESSING', 'UNKNOWN') and q.id <> ?4)",
        )
        .bind(&held.domain)
        .bind(held.record_type.as_str())
        .bind(&held.account_id)
        .bind(held.id.to_string())
        .execute(self)
        .await?;
        Ok(())
    }
}
