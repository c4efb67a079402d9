//! [`TokenStore`] on PostgreSQL.

use std::time::Duration;

use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres};

use super::PostgresStore;
use crate::domain::{TokenId, TokenSpec};
use crate::store::tokens::{
    ApiToken, TOKEN_COLUMNS, TokenChange, TokenFilter, TokenStore, token_from_row,
};
use crate::store::{StoreError, page_query};

/// The insert of a new token; `$10` is the expiry in seconds (null: never).
fn insert_sql(only_if_empty: bool) -> String {
    let guard = if only_if_empty {
        " where not exists (select 1 from api_tokens)"
    } else {
        ""
    };
    format!(
        "insert into api_tokens (id, account_id, name, digest, policies, allowed_subnets, admin, \
         metrics, forwarder, expires_at, created_at, updated_at) \
         select $1, $2, $3, $4, $5, $6, $7, $8, $9, \
         now() + make_interval(secs => $10), now(), now(){guard} \
         returning {TOKEN_COLUMNS}"
    )
}

impl PostgresStore {
    async fn insert_token(
        &self,
        spec: &TokenSpec,
        digest: &str,
        only_if_empty: bool,
    ) -> Result<Option<ApiToken>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if only_if_empty {
            // Two first runs at once must not both create a token.
            sqlx::query("lock table api_tokens in share row exclusive mode")
                .execute(&mut *tx)
                .await?;
        }
        let row = sqlx::query(AssertSqlSafe(insert_sql(only_if_empty)))
            .bind(TokenId::new().0)
            .bind(&spec.account_id)
            .bind(&spec.name)
            .bind(digest)
            .bind(Json(&spec.policies))
            .bind(Json(&spec.allowed_subnets))
            .bind(spec.admin)
            .bind(spec.metrics)
            .bind(spec.forwarder)
            .bind(spec.expires_in.map(|d| d.as_secs_f64()))
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.map(|r| token_from_row(&r)).transpose()
    }
}

#[async_trait::async_trait]
impl TokenStore for PostgresStore {
    async fn create_token(&self, spec: &TokenSpec, digest: &str) -> Result<ApiToken, StoreError> {
        self.insert_token(spec, digest, false)
            .await?
            .ok_or_else(|| StoreError::Corrupt("the insert returned no row".into()))
    }

    async fn create_first_token(
        &self,
        spec: &TokenSpec,
        digest: &str,
    ) -> Result<Option<ApiToken>, StoreError> {
        self.insert_token(spec, digest, true).await
    }

    async fn token_by_digest(&self, digest: &str) -> Result<Option<ApiToken>, StoreError> {
        let sql = format!("select {TOKEN_COLUMNS} from api_tokens where digest = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| token_from_row(&r)).transpose()
    }

    async fn get_token(&self, id: TokenId) -> Result<Option<ApiToken>, StoreError> {
        let sql = format!("select {TOKEN_COLUMNS} from api_tokens where id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| token_from_row(&r)).transpose()
    }

    async fn list_tokens(&self, filter: &TokenFilter) -> Result<Vec<ApiToken>, StoreError> {
        let select = format!("select {TOKEN_COLUMNS} from api_tokens");
        let mut query =
            page_query::<Postgres>(select, filter.conditions(), filter.before, filter.limit);
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn rotate_token(&self, id: TokenId, digest: &str) -> Result<TokenChange, StoreError> {
        let sql = format!(
            "update api_tokens set digest = $1, rotated_at = now(), updated_at = now() \
             where id = $2 and revoked_at is null returning {TOKEN_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(digest)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(TokenChange::Done(token_from_row(&row)?)),
            None => Ok(match self.get_token(id).await? {
                Some(token) => TokenChange::Revoked(token),
                None => TokenChange::NotFound,
            }),
        }
    }

    async fn revoke_token(&self, id: TokenId) -> Result<TokenChange, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Lock every valid admin token (in id order, so concurrent revocations queue instead
        // of deadlocking): of two revocations at once, the second sees the first's effect.
        let admins: Vec<uuid::Uuid> = sqlx::query_scalar(
            "select id from api_tokens where admin and revoked_at is null \
             and (expires_at is null or expires_at > now()) order by id for update",
        )
        .fetch_all(&mut *tx)
        .await?;
        let sql = format!("select {TOKEN_COLUMNS} from api_tokens where id = $1 for update");
        let Some(row) = sqlx::query(AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(TokenChange::NotFound);
        };
        let token = token_from_row(&row)?;
        if token.revoked_at.is_some() {
            return Ok(TokenChange::Done(token));
        }
        if admins == [id.0] {
            return Ok(TokenChange::LastAdmin);
        }
        let sql = format!(
            "update api_tokens set revoked_at = now(), updated_at = now() where id = $1 \
             returning {TOKEN_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(TokenChange::Done(token_from_row(&row)?))
    }

    async fn touch_token(&self, id: TokenId, interval: Duration) -> Result<(), StoreError> {
        sqlx::query(
            "update api_tokens set last_used_at = now() where id = $1 \
             and (last_used_at is null or last_used_at < now() - make_interval(secs => $2))",
        )
        .bind(id.0)
        .bind(interval.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
