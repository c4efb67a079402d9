//! [`AuditStore`] on SQLite. Entries are written by the one writer (`writer.rs`), so they are
//! committed with whatever else is waiting; the log is read from the reader pool.

use futures::FutureExt as _;
use sqlx::{AssertSqlSafe, Sqlite};

use super::SqliteStore;
use crate::store::audit::{
    AUDIT_COLUMNS, AuditEntry, AuditFilter, AuditStore, NewAuditEntry, audit_from_row, details_json,
};
use crate::store::{StoreError, page_query};

/// The database's clock, as RFC 3339 text with milliseconds.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

#[async_trait::async_trait]
impl AuditStore for SqliteStore {
    async fn record_audit(&self, entry: &NewAuditEntry) -> Result<AuditEntry, StoreError> {
        let entry = entry.clone();
        self.writer
            .write(move |c| {
                async move {
                    let sql = format!(
                        "insert into dns_audit (id, at, action, subject, actor_token_id, \
                         actor_name, actor_account, client_addr, details) \
                         values (?, {NOW}, ?, ?, ?, ?, ?, ?, ?) returning {AUDIT_COLUMNS}"
                    );
                    let row = sqlx::query(AssertSqlSafe(sql))
                        .bind(uuid::Uuid::now_v7().to_string())
                        .bind(entry.action.as_str())
                        .bind(&entry.subject)
                        .bind(entry.actor.token_id.map(|id| id.to_string()))
                        .bind(&entry.actor.token_name)
                        .bind(&entry.actor.account_id)
                        .bind(&entry.actor.client_addr)
                        .bind(details_json(&entry.details))
                        .fetch_one(&mut *c)
                        .await?;
                    audit_from_row(&row)
                }
                .boxed()
            })
            .await
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let select = format!("select {AUDIT_COLUMNS} from dns_audit");
        let mut query =
            page_query::<Sqlite>(select, filter.conditions(), filter.before, filter.limit);
        let rows = query.build().fetch_all(&self.reader).await?;
        rows.iter().map(audit_from_row).collect()
    }
}
