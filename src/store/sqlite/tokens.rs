//! [`TokenStore`] on SQLite. Writes are jobs of the one writer (`writer.rs`), so the check
//! and the write of a revocation are never interleaved with another write.

use std::time::Duration;

use futures::FutureExt as _;
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Sqlite};

use super::{SqliteStore, sqlite_offset};
use crate::domain::{TokenId, TokenSpec};
use crate::store::tokens::{
    ApiToken, TOKEN_COLUMNS, TokenChange, TokenFilter, TokenStore, token_from_row, token_json,
};
use crate::store::{StoreError, page_query};

/// The database's clock, as RFC 3339 text with milliseconds.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

async fn insert_token(
    connection: &mut SqliteConnection,
    spec: &TokenSpec,
    digest: &str,
    only_if_empty: bool,
) -> Result<Option<ApiToken>, StoreError> {
    let guard = if only_if_empty {
        " where not exists (select 1 from api_tokens)"
    } else {
        ""
    };
    let sql = format!(
        "insert into api_tokens (id, account_id, name, digest, policies, allowed_subnets, admin, \
         metrics, forwarder, expires_at, created_at, updated_at) \
         select ?, ?, ?, ?, ?, ?, ?, ?, ?, \
         case when ? is null then null else strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) end, \
         {NOW}, {NOW}{guard} returning {TOKEN_COLUMNS}"
    );
    let expiry = spec.expires_in.map(sqlite_offset);
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(TokenId::new().to_string())
        .bind(&spec.account_id)
        .bind(&spec.name)
        .bind(digest)
        .bind(token_json(&spec.policies))
        .bind(token_json(&spec.allowed_subnets))
        .bind(spec.admin)
        .bind(spec.metrics)
        .bind(spec.forwarder)
        .bind(expiry.clone())
        .bind(expiry)
        .fetch_optional(&mut *connection)
        .await?;
    row.map(|r| token_from_row(&r)).transpose()
}

async fn token_on(
    connection: &mut SqliteConnection,
    id: TokenId,
) -> Result<Option<ApiToken>, StoreError> {
    let sql = format!("select {TOKEN_COLUMNS} from api_tokens where id = ?");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(&mut *connection)
        .await?;
    row.map(|r| token_from_row(&r)).transpose()
}

async fn revoke(connection: &mut SqliteConnection, id: TokenId) -> Result<TokenChange, StoreError> {
    let Some(token) = token_on(connection, id).await? else {
        return Ok(TokenChange::NotFound);
    };
    if token.revoked_at.is_some() {
        return Ok(TokenChange::Done(token));
    }
    let sql = format!(
        "select id from api_tokens where admin = 1 and revoked_at is null \
         and (expires_at is null or expires_at > {NOW})"
    );
    let admins: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_all(&mut *connection)
        .await?;
    if admins == [id.to_string()] {
        return Ok(TokenChange::LastAdmin);
    }
    let sql = format!(
        "update api_tokens set revoked_at = {NOW}, updated_at = {NOW} where id = ? \
         returning {TOKEN_COLUMNS}"
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_one(&mut *connection)
        .await?;
    Ok(TokenChange::Done(token_from_row(&row)?))
}

#[async_trait::async_trait]
impl TokenStore for SqliteStore {
    async fn create_token(&self, spec: &TokenSpec, digest: &str) -> Result<ApiToken, StoreError> {
        let (spec, digest) = (spec.clone(), digest.to_owned());
        self.writer
            .write(move |c| {
                async move {
                    insert_token(c, &spec, &digest, false)
                        .await?
                        .ok_or_else(|| StoreError::Corrupt("the insert returned no row".into()))
                }
                .boxed()
            })
            .await
    }

    async fn create_first_token(
        &self,
        spec: &TokenSpec,
        digest: &str,
    ) -> Result<Option<ApiToken>, StoreError> {
        let (spec, digest) = (spec.clone(), digest.to_owned());
        self.writer
            .write(move |c| async move { insert_token(c, &spec, &digest, true).await }.boxed())
            .await
    }

    async fn token_by_digest(&self, digest: &str) -> Result<Option<ApiToken>, StoreError> {
        let sql = format!("select {TOKEN_COLUMNS} from api_tokens where digest = ?");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(digest)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| token_from_row(&r)).transpose()
    }

    async fn get_token(&self, id: TokenId) -> Result<Option<ApiToken>, StoreError> {
        let sql = format!("select {TOKEN_COLUMNS} from api_tokens where id = ?");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| token_from_row(&r)).transpose()
    }

    async fn list_tokens(&self, filter: &TokenFilter) -> Result<Vec<ApiToken>, StoreError> {
        let select = format!("select {TOKEN_COLUMNS} from api_tokens");
        let mut query =
            page_query::<Sqlite>(select, filter.conditions(), filter.before, filter.limit);
        let rows = query.build().fetch_all(&self.reader).await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn rotate_token(&self, id: TokenId, digest: &str) -> Result<TokenChange, StoreError> {
        let digest = digest.to_owned();
        self.writer
            .write(move |c| {
                async move {
                    let sql = format!(
                        "update api_tokens set digest = ?, rotated_at = {NOW}, updated_at = {NOW} \
                         where id = ? and revoked_at is null returning {TOKEN_COLUMNS}"
                    );
                    let row = sqlx::query(AssertSqlSafe(sql))
                        .bind(&digest)
                        .bind(id.to_string())
                        .fetch_optional(&mut *c)
                        .await?;
                    match row {
                        Some(row) => Ok(TokenChange::Done(token_from_row(&row)?)),
                        None => Ok(match token_on(c, id).await? {
                            Some(token) => TokenChange::Revoked(token),
                            None => TokenChange::NotFound,
                        }),
                    }
                }
                .boxed()
            })
            .await
    }

    async fn revoke_token(&self, id: TokenId) -> Result<TokenChange, StoreError> {
        self.writer
            .write(move |c| async move { revoke(c, id).await }.boxed())
            .await
    }

    async fn touch_token(&self, id: TokenId, interval: Duration) -> Result<(), StoreError> {
        self.writer
            .write(move |c| {
                async move {
                    let sql = format!(
                        "update api_tokens set last_used_at = {NOW} where id = ? and \
                         (last_used_at is null or last_used_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?))"
                    );
                    sqlx::query(AssertSqlSafe(sql))
                        .bind(id.to_string())
                        .bind(format!("-{:.3} seconds", interval.as_secs_f64()))
                        .execute(&mut *c)
                        .await?;
                    Ok(())
                }
                .boxed()
            })
            .await
    }
}
