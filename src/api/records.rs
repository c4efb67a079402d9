//! `GET /api/v1/dns/records`: the ledger of records dnsorch provisioned and still owns.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::query::{ListQuery, Page};
use crate::domain::RecordType;
use crate::store::{DnsRecord, RecordFilter};

/// Query parameters of `GET /api/v1/dns/records`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListRecordsParams {
    /// Admins only; other tokens see their own account.
    pub account_id: Option<String>,
    /// The owner name.
    pub domain: Option<String>,
    pub record_type: Option<String>,
    pub zone: Option<String>,
    /// Page size, 1-500 (default 50).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of ledger rows, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordPage {
    pub items: Vec<DnsRecord>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List provisioned records, newest first, with filters and cursor pagination.
#[utoipa::path(
    get,
    path = "/api/v1/dns/records",
    tag = "records",
    params(ListRecordsParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token's account only (admins: every account)", body = RecordPage),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub async fn list_records(
    State(state): State<AppState>,
    caller: Caller,
    ListQuery(params): ListQuery<ListRecordsParams>,
) -> Result<Json<RecordPage>, ApiError> {
    let mut page = Page::default();
    let record_type = page.parse::<RecordType>("query.record_type", params.record_type.as_deref());
    let domain = page.domain("query.domain", params.domain.as_deref());
    let zone = page.domain("query.zone", params.zone.as_deref());
    let (before, limit) = page.window(params.cursor.as_deref(), params.limit.as_deref());
    page.finish()?;
    let Some(account_id) = caller.account_scope(params.account_id) else {
        return Ok(Json(RecordPage {
            items: Vec::new(),
            next_cursor: None,
        }));
    };
    let filter = RecordFilter {
        account_id,
        domain,
        record_type,
        zone,
        before,
        limit,
    };
    let items = state.store.list_records(&filter).await?;
    let next_cursor = Page::next_cursor(&items, limit, |r| r.seq);
    Ok(Json(RecordPage { items, next_cursor }))
}
