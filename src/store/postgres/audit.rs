//! [`AuditStore`] on PostgreSQL.

use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres};
use uuid::Uuid;

use super::PostgresStore;
use crate::store::audit::{
    AUDIT_COLUMNS, AuditEntry, AuditFilter, AuditStore, NewAuditEntry, audit_from_row,
};
use crate::store::{StoreError, page_query};

#[async_trait::async_trait]
impl AuditStore for PostgresStore {
    async fn record_audit(&self, entry: &NewAuditEntry) -> Result<AuditEntry, StoreError> {
        let sql = format!(
            "insert into dns_audit (id, at, action, subject, actor_token_id, actor_name, \
             actor_account, client_addr, details) \
             values ($1, now(), $2, $3, $4, $5, $6, $7, $8) returning {AUDIT_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(Uuid::now_v7())
            .bind(entry.action.as_str())
            .bind(&entry.subject)
            .bind(entry.actor.token_id.map(|id| id.0))
            .bind(&entry.actor.token_name)
            .bind(&entry.actor.account_id)
            .bind(&entry.actor.client_addr)
            .bind(Json(&entry.details))
            .fetch_one(&self.pool)
            .await?;
        audit_from_row(&row)
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let select = format!("select {AUDIT_COLUMNS} from dns_audit");
        let mut query =
            page_query::<Postgres>(select, filter.conditions(), filter.before, filter.limit);
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }
}
