//! [`ChangeSetStore`] on PostgreSQL.

use sqlx::{AssertSqlSafe, PgConnection, Postgres};
use uuid::Uuid;

use super::PostgresStore;
use crate::domain::ChangeSetId;
use crate::store::sets::{
    ChangeSet, ChangeSetStore, NewChangeSet, SET_COLUMNS, SetCount, SetFilter, count_from_row,
    refused_json, set_from_row,
};
use crate::store::{DnsRequest, REQUEST_COLUMNS, StoreError, page_query, rows};

#[async_trait::async_trait]
impl ChangeSetStore for PostgresStore {
    async fn record_change_set(&self, set: &NewChangeSet) -> Result<ChangeSet, StoreError> {
        let mut tx = self.pool.begin().await?;
        let stored = insert_set(&mut tx, set).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn change_set(&self, id: ChangeSetId) -> Result<Option<ChangeSet>, StoreError> {
        let sql = format!("select {SET_COLUMNS} from dns_change_sets where id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| set_from_row(&r)).transpose()
    }

    async fn change_set_requests(&self, id: ChangeSetId) -> Result<Vec<DnsRequest>, StoreError> {
        let sql = format!(
            "select {REQUEST_COLUMNS} from dns_requests where change_set_id = $1 \
             order by change_set_index"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| rows::request(r, false)).collect()
    }

    async fn list_change_sets(&self, filter: &SetFilter) -> Result<Vec<ChangeSet>, StoreError> {
        let select = format!("select {SET_COLUMNS} from dns_change_sets");
        let mut query =
            page_query::<Postgres>(select, filter.conditions(), filter.before, filter.limit);
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(set_from_row).collect()
    }

    async fn set_counts(&self, sets: &[ChangeSetId]) -> Result<Vec<SetCount>, StoreError> {
        let ids: Vec<Uuid> = sets.iter().map(|set| set.0).collect();
        let rows = sqlx::query(
            "select change_set_id, status, count(*) as n from dns_requests \
             where change_set_id = any($1) group by change_set_id, status",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(count_from_row).collect()
    }
}

/// Writes a set's row (a set with its id already there stays as it was) and reads it back.
pub(super) async fn insert_set(
    connection: &mut PgConnection,
    set: &NewChangeSet,
) -> Result<ChangeSet, StoreError> {
    sqlx::query(
        "insert into dns_change_sets (id, account_id, atomic, item_count, refused, \
         idempotency_key, fingerprint, source, principal_token_id, principal_name, \
         principal_account, client_addr, created_at) \
         values ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11, $12, now()) \
         on conflict do nothing",
    )
    .bind(set.id.0)
    .bind(&set.account_id)
    .bind(set.atomic)
    .bind(i32::try_from(set.item_count).unwrap_or(i32::MAX))
    .bind(refused_json(&set.refused))
    .bind(&set.idempotency_key)
    .bind(&set.fingerprint)
    .bind(&set.source)
    .bind(set.submitter.token_id.map(|t| t.0))
    .bind(&set.submitter.token_name)
    .bind(&set.submitter.account_id)
    .bind(&set.submitter.client_addr)
    .execute(&mut *connection)
    .await?;
    let sql = format!("select {SET_COLUMNS} from dns_change_sets where id = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(set.id.0)
        .fetch_one(&mut *connection)
        .await?;
    set_from_row(&row)
}
