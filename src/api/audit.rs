//! `GET /api/v1/audit`: admins read who created, rotated and revoked tokens and who adopted
//! RRsets, newest first (the router's `require_admin` layer refuses everyone else).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::query::{ListQuery, Page};
use crate::store::{AuditAction, AuditEntry, AuditFilter};

/// Query parameters of `GET /api/v1/audit`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListAuditParams {
    /// Only this action: `token.create`, `token.rotate`, `token.revoke`, `rrset.adopt` or
    /// `rrset.merged`.
    pub action: Option<String>,
    /// Page size, 1-500 (default 50).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of the audit log, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List the audit log, newest first (admins only).
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(ListAuditParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = AuditPage),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 422, description = "Invalid parameters (each named)", body = ErrorBody),
    )
)]
pub async fn list_audit(
    State(state): State<AppState>,
    ListQuery(params): ListQuery<ListAuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let mut page = Page::default();
    let action = page.parse::<AuditAction>("query.action", params.action.as_deref());
    let (before, limit) = page.window(params.cursor.as_deref(), params.limit.as_deref());
    page.finish()?;
    let filter = AuditFilter {
        action,
        before,
        limit,
    };
    let items = state.audit.list_audit(&filter).await?;
    let next_cursor = Page::next_cursor(&items, limit, |e| e.seq);
    Ok(Json(AuditPage { items, next_cursor }))
}
