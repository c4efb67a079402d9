//! `GET /api/v1/dns/rrsets/{name}/{type}/history`: the requests that changed an RRset, newest
//! first, with the RRset before and after each and who submitted it.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::query::{ListQuery, Page};
use crate::domain::zoneform::RrsetView;
use crate::domain::{Operation, RecordType, RequestId, RequestStatus, Submitter};
use crate::store::{DnsRequest, RequestFilter};

/// Query parameters of the history.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Admins only; other tokens see their own account's changes.
    pub account_id: Option<String>,
    /// Page size, 1-500 (default 50).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One change of an RRset: a COMPLETED request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub request_id: RequestId,
    pub operation: Operation,
    pub account_id: String,
    /// The request's records in zone-file form (what it added, removed or set).
    #[schema(example = json!(["192.0.2.10"]))]
    pub targets: Vec<String>,
    /// The RRset before the change; `null` when it was not recorded (an adoption, or a
    /// request applied by a version of dnsorch that did not record it).
    pub before: Option<RrsetView>,
    /// The RRset after the change; `null` as for `before`.
    pub after: Option<RrsetView>,
    /// Who submitted the request.
    pub submitted_by: Submitter,
    pub comment: Option<String>,
    pub applied_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl HistoryEntry {
    fn of(request: &DnsRequest) -> Self {
        Self {
            request_id: request.id,
            operation: request.operation,
            account_id: request.account_id.clone(),
            targets: request
                .records
                .iter()
                .map(crate::domain::zoneform::element)
                .collect(),
            before: request.before.as_ref().map(RrsetView::of),
            after: request.after.as_ref().map(RrsetView::of),
            submitted_by: request.submitted_by.clone(),
            comment: request.comment.clone(),
            applied_at: request.applied_at,
            finished_at: request.finished_at,
        }
    }
}

/// A page of an RRset's history, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryPage {
    pub items: Vec<HistoryEntry>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The history of an RRset: every completed request for `name` and `type`, newest first.
///
/// Each entry has the RRset before and after the change and the principal that submitted it.
/// A token sees its own account's changes (admins: every account's).
#[utoipa::path(
    get,
    path = "/api/v1/dns/rrsets/{name}/{type}/history",
    tag = "records",
    params(
        ("name" = String, Path, description = "The owner name (normalised like the body's `domain`)"),
        ("type" = String, Path, description = "The record type, e.g. `A`"),
        HistoryParams,
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token's account only (admins: every account)", body = HistoryPage),
        (status = 401, body = ErrorBody),
        (status = 422, description = "A bad name, type, cursor or limit", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, record_type)): Path<(String, String)>,
    ListQuery(params): ListQuery<HistoryParams>,
) -> Result<Json<HistoryPage>, ApiError> {
    let mut page = Page::default();
    let domain = page.domain("path.name", Some(&name));
    let record_type = page.parse::<RecordType>("path.type", Some(&record_type));
    let (before, limit) = page.window(params.cursor.as_deref(), params.limit.as_deref());
    page.finish()?;
    let Some(account_id) = caller.account_scope(params.account_id) else {
        return Ok(Json(HistoryPage {
            items: Vec::new(),
            next_cursor: None,
        }));
    };
    let filter = RequestFilter {
        status: Some(RequestStatus::Completed),
        account_id,
        domain,
        record_type,
        before,
        limit,
    };
    let requests = state.store.list(&filter).await?;
    let next_cursor = Page::next_cursor(&requests, limit, |r| r.seq);
    Ok(Json(HistoryPage {
        items: requests.iter().map(HistoryEntry::of).collect(),
        next_cursor,
    }))
}
