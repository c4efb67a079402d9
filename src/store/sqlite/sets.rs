//! [`ChangeSetStore`] on SQLite: the set's row written by the one writer, reads from the
//! reader pool.

use futures::FutureExt as _;
use sqlx::{AssertSqlSafe, Sqlite, SqliteConnection};

use super::SqliteStore;
use crate::domain::ChangeSetId;
use crate::store::sets::{
    ChangeSet, ChangeSetStore, NewChangeSet, SET_COLUMNS, SetCount, SetFilter, count_from_row,
    refused_json, set_from_row,
};
use crate::store::{DnsRequest, REQUEST_COLUMNS, StoreError, page_query, rows};

#[async_trait::async_trait]
impl ChangeSetStore for SqliteStore {
    async fn record_change_set(&self, set: &NewChangeSet) -> Result<ChangeSet, StoreError> {
        let set = set.clone();
        self.writer
            .write(move |c| async move { insert_set(c, &set).await }.boxed())
            .await
    }

    async fn change_set(&self, id: ChangeSetId) -> Result<Option<ChangeSet>, StoreError> {
        let sql = format!("select {SET_COLUMNS} from dns_change_sets where id = ?");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| set_from_row(&r)).transpose()
    }

    async fn change_set_requests(&self, id: ChangeSetId) -> Result<Vec<DnsRequest>, StoreError> {
        let sql = format!(
            "select {REQUEST_COLUMNS} from dns_requests where change_set_id = ? \
             order by change_set_index"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(|r| rows::request(r, false)).collect()
    }

    async fn list_change_sets(&self, filter: &SetFilter) -> Result<Vec<ChangeSet>, StoreError> {
        let select = format!("select {SET_COLUMNS} from dns_change_sets");
        let mut query =
            page_query::<Sqlite>(select, filter.conditions(), filter.before, filter.limit);
        let rows = query.build().fetch_all(&self.reader).await?;
        rows.iter().map(set_from_row).collect()
    }

    async fn set_counts(&self, sets: &[ChangeSetId]) -> Result<Vec<SetCount>, StoreError> {
        if sets.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "select change_set_id, status, count(*) as n from dns_requests \
             where change_set_id in (",
        );
        let mut ids = query.separated(", ");
        for set in sets {
            ids.push_bind(set.to_string());
        }
        query.push(") group by change_set_id, status");
        let rows = query.build().fetch_all(&self.reader).await?;
        rows.iter().map(count_from_row).collect()
    }
}

/// Writes a set's row (a set with its id already there stays as it was) and reads it back.
pub(super) async fn insert_set(
    connection: &mut SqliteConnection,
    set: &NewChangeSet,
) -> Result<ChangeSet, StoreError> {
    sqlx::query(concat!(
        "insert into dns_change_sets (id, account_id, atomic, item_count, refused, \
         idempotency_key, fingerprint, source, principal_token_id, principal_name, \
         principal_account, client_addr, created_at) \
         values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ",
        now!(),
        ") on conflict do nothing"
    ))
    .bind(set.id.to_string())
    .bind(&set.account_id)
    .bind(set.atomic)
    .bind(i64::from(set.item_count))
    .bind(refused_json(&set.refused))
    .bind(&set.idempotency_key)
    .bind(&set.fingerprint)
    .bind(&set.source)
    .bind(set.submitter.token_id.map(|t| t.to_string()))
    .bind(&set.submitter.token_name)
    .bind(&set.submitter.account_id)
    .bind(&set.submitter.client_addr)
    .execute(&mut *connection)
    .await?;
    let sql = format!("select {SET_COLUMNS} from dns_change_sets where id = ?");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(set.id.to_string())
        .fetch_one(&mut *connection)
        .await?;
    set_from_row(&row)
}
