//! The `api_tokens` table behind one trait, implemented by both stores.
//!
//! Tokens are looked up by the digest of their secret; the secret itself is never stored.
//! Tokens are revoked, never deleted, so every request keeps naming the token that submitted
//! it. Revoking the last valid admin token is refused, atomically (PostgreSQL locks the
//! valid admin tokens first; SQLite has one writer).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreError;
use super::rows::Columns;
use crate::domain::{Policy, Subnet, TokenId, TokenSpec};

/// The columns every store reads into an [`ApiToken`] (never the digest).
pub(super) const TOKEN_COLUMNS: &str = "seq, id, account_id, name, policies, allowed_subnets, \
     admin, metrics, forwarder, expires_at, revoked_at, rotated_at, last_used_at, created_at, \
     updated_at";

/// A token as stored (without its digest), and as admins see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: TokenId,
    /// The account it acts for.
    pub account: String,
    pub name: String,
    pub policies: Vec<Policy>,
    pub allowed_subnets: Vec<Subnet>,
    pub admin: bool,
    pub metrics: bool,
    pub forwarder: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// When the secret was last replaced.
    pub rotated_at: Option<DateTime<Utc>>,
    /// Written at most once per `TOKEN_LAST_USED_INTERVAL_SECONDS` per process.
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip)]
    pub seq: i64,
}

/// What a rotation or revocation did.
#[derive(Debug, Clone)]
pub enum TokenChange {
    /// Done; the token as it is now.
    Done(ApiToken),
    /// No token with that id.
    NotFound,
    /// The token is revoked: it cannot be rotated.
    Revoked(ApiToken),
    /// It is the last valid admin token: revoking it would lock every admin out.
    LastAdmin,
}

/// Why the last valid admin token is not revoked.
pub const LAST_ADMIN: &str =
    "this is the last valid admin token; create another admin token before revoking it";

/// Filters for listing tokens, newest first.
#[derive(Debug, Clone, Default)]
pub struct TokenFilter {
    pub account_id: Option<String>,
    pub before: Option<i64>,
    pub limit: u32,
}

impl TokenFilter {
    /// The equality conditions as (column, value) pairs.
    pub fn conditions(&self) -> Vec<(&'static str, String)> {
        self.account_id
            .iter()
            .map(|a| ("account_id", a.clone()))
            .collect()
    }
}

/// The durable state of API tokens.
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a new token under the digest of its secret.
    async fn create_token(&self, spec: &TokenSpec, digest: &str) -> Result<ApiToken, StoreError>;

    /// Stores a new token only if the table holds none at all (the first run's admin token);
    /// `None` when there was one.
    async fn create_first_token(
        &self,
        spec: &TokenSpec,
        digest: &str,
    ) -> Result<Option<ApiToken>, StoreError>;

    /// The token whose secret has this digest, valid or not.
    async fn token_by_digest(&self, digest: &str) -> Result<Option<ApiToken>, StoreError>;

    /// One token.
    async fn get_token(&self, id: TokenId) -> Result<Option<ApiToken>, StoreError>;

    /// Tokens, newest first.
    async fn list_tokens(&self, filter: &TokenFilter) -> Result<Vec<ApiToken>, StoreError>;

    /// Replaces the digest (a new secret; the old one stops matching at once).
    async fn rotate_token(&self, id: TokenId, digest: &str) -> Result<TokenChange, StoreError>;

    /// Revokes a token, unless it is the last valid admin token. Revoking a revoked token
    /// changes nothing and answers `Done`.
    async fn revoke_token(&self, id: TokenId) -> Result<TokenChange, StoreError>;

    /// Sets `last_used_at` to now unless it was set less than `interval` ago.
    async fn touch_token(&self, id: TokenId, interval: Duration) -> Result<(), StoreError>;
}

/// A token of `TOKEN_COLUMNS`.
pub(super) fn token_from_row<R: Columns>(row: &R) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        seq: row.get("seq")?,
        id: row.get("id")?,
        account: row.get("account_id")?,
        name: row.get("name")?,
        policies: row.json("policies")?,
        allowed_subnets: row.json("allowed_subnets")?,
        admin: row.get("admin")?,
        metrics: row.get("metrics")?,
        forwarder: row.get("forwarder")?,
        expires_at: row.get("expires_at")?,
        revoked_at: row.get("revoked_at")?,
        rotated_at: row.get("rotated_at")?,
        last_used_at: row.get("last_used_at")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

/// The JSON text of a token's policies or subnets.
pub(super) fn token_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serialises")
}
