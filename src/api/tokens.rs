//! `/api/v1/tokens`: admins create, list, show, rotate and revoke API tokens (the router's
//! `require_admin` layer refuses everyone else before a handler runs).
//!
//! A secret appears in exactly one answer: the one that created or rotated it. Revoking the
//! last valid admin token is refused with 409, so an installation can never lock out its
//! admins. Changes made here are seen at once by this process and by the others within
//! `TOKEN_CACHE_SECONDS`. Every creation, rotation and revocation is recorded in the audit
//! log with its caller (`GET /api/v1/audit`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::json::JsonBody;
use super::query::{ListQuery, Page};
use crate::auth;
use crate::domain::token::TokenBody;
use crate::domain::{Submitter, TokenId, TokenSpec};
use crate::store::audit::{self, NewAuditEntry};
use crate::store::tokens::LAST_ADMIN;
use crate::store::{ApiToken, TokenChange, TokenFilter};

/// A token with its secret: the answer of a create or a rotation, and the only time the
/// secret is shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    /// The bearer secret (`Authorization: Bearer <secret>`); shown only now.
    pub secret: String,
    #[serde(flatten)]
    pub token: ApiToken,
}

/// Query parameters of `GET /api/v1/tokens`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListTokensParams {
    pub account: Option<String>,
    /// Page size, 1-500 (default 50).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of tokens, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenPage {
    pub items: Vec<ApiToken>,
    pub next_cursor: Option<String>,
}

/// Create a token (admins only).
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body = TokenBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; the secret is shown only in this answer", body = IssuedToken),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 422, description = "Invalid fields (each named)", body = ErrorBody),
    )
)]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<TokenBody>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let spec = TokenSpec::parse(body)?;
    let (token, secret) = auth::issue(state.access.auth.store().as_ref(), &spec).await?;
    tracing::info!(token_id = %token.id, token_name = %token.name, account_id = %token.account, admin = token.admin, by = %caller.0.principal.name, "token created");
    let entry = NewAuditEntry::token_created(&token, Submitter::of(&caller.0));
    audit::record(state.audit.as_ref(), entry).await;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            secret: secret.expose().to_owned(),
            token,
        }),
    ))
}

/// List tokens, newest first (admins only; never their secrets).
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    params(ListTokensParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TokenPage),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    )
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    ListQuery(params): ListQuery<ListTokensParams>,
) -> Result<Json<TokenPage>, ApiError> {
    let mut page = Page::default();
    let (before, limit) = page.window(params.cursor.as_deref(), params.limit.as_deref());
    page.finish()?;
    let filter = TokenFilter {
        account_id: params.account,
        before,
        limit,
    };
    let items = state.access.auth.store().list_tokens(&filter).await?;
    let next_cursor = Page::next_cursor(&items, limit, |t| t.seq);
    Ok(Json(TokenPage { items, next_cursor }))
}

/// Show one token (admins only; never its secret).
#[utoipa::path(
    get,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    params(("id" = String, Path, description = "The token id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ApiToken),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn get_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ApiToken>, ApiError> {
    let id = parse_id(&id)?;
    let token = state.access.auth.store().get_token(id).await?;
    token.map(Json).ok_or_else(|| not_found(id))
}

/// Give a token a new secret; the old one stops working (admins only).
#[utoipa::path(
    post,
    path = "/api/v1/tokens/{id}/rotate",
    tag = "tokens",
    params(("id" = String, Path, description = "The token id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new secret, shown only in this answer", body = IssuedToken),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The token is revoked", body = ErrorBody),
    )
)]
pub async fn rotate_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<IssuedToken>, ApiError> {
    let id = parse_id(&id)?;
    let (change, secret) = auth::rotate(state.access.auth.store().as_ref(), id).await?;
    state.access.auth.forget();
    match change {
        TokenChange::Done(token) => {
            tracing::info!(token_id = %token.id, token_name = %token.name, by = %caller.0.principal.name, "token rotated");
            let entry = NewAuditEntry::token_rotated(&token, Submitter::of(&caller.0));
            audit::record(state.audit.as_ref(), entry).await;
            Ok(Json(IssuedToken {
                secret: secret.expose().to_owned(),
                token,
            }))
        }
        TokenChange::NotFound => Err(not_found(id)),
        TokenChange::Revoked(_) => Err(ApiError::Conflict(format!(
            "token {id} is revoked; create a new one"
        ))),
        TokenChange::LastAdmin => Err(ApiError::Internal(anyhow::anyhow!(
            "a rotation answered LastAdmin"
        ))),
    }
}

/// Revoke a token: it stops working in every process within `TOKEN_CACHE_SECONDS` (admins
/// only). The last valid admin token cannot be revoked (409): create another admin token
/// first.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    params(("id" = String, Path, description = "The token id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked (or already revoked)", body = ApiToken),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The last valid admin token", body = ErrorBody),
    )
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ApiToken>, ApiError> {
    let id = parse_id(&id)?;
    let change = state.access.auth.store().revoke_token(id).await?;
    state.access.auth.forget();
    match change {
        TokenChange::Done(token) => {
            tracing::info!(token_id = %token.id, token_name = %token.name, by = %caller.0.principal.name, "token revoked");
            let entry = NewAuditEntry::token_revoked(&token, Submitter::of(&caller.0));
            audit::record(state.audit.as_ref(), entry).await;
            Ok(Json(token))
        }
        TokenChange::NotFound => Err(not_found(id)),
        TokenChange::LastAdmin => Err(ApiError::Conflict(LAST_ADMIN.into())),
        TokenChange::Revoked(token) => Ok(Json(token)),
    }
}

fn parse_id(id: &str) -> Result<TokenId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::NotFound(format!("no token with id '{id}'")))
}

fn not_found(id: TokenId) -> ApiError {
    ApiError::NotFound(format!("no token with id '{id}'"))
}
