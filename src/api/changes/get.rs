//! `GET /api/v1/dns/requests/{id}` and `GET /api/v1/dns/requests`.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::query::{ListQuery, Page};
use crate::domain::{RecordType, RequestId, RequestStatus};
use crate::store::{DnsRequest, RequestFilter};

/// Get one request with its status, phase timestamps, attempts and log.
#[utoipa::path(
    get,
    path = "/api/v1/dns/requests/{id}",
    tag = "requests",
    params(("id" = String, Path, description = "The request id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = DnsRequest),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such request, or another account's", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn get_request(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DnsRequest>, ApiError> {
    readable_request(&state, &caller, &id).await.map(Json)
}

/// The request `id` names, if the caller may read it. Another account's request is answered
/// exactly as a missing one (404), as is an id that is not a UUID.
pub(super) async fn readable_request(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<DnsRequest, ApiError> {
    let not_found = || ApiError::NotFound(format!("no request with id '{id}'"));
    let request_id: RequestId = id.parse().map_err(|_| not_found())?;
    let request = state.store.get(request_id).await?.ok_or_else(not_found)?;
    if !caller.0.principal.may_read(&request.account_id) {
        return Err(not_found());
    }
    Ok(request)
}

/// Query parameters of `GET /api/v1/dns/requests`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListRequestsParams {
    /// PENDING, PROCESSING, COMPLETED or FAILED.
    pub status: Option<String>,
    /// Admins only; other tokens see their own account.
    pub account_id: Option<String>,
    /// The owner name (normalised like the body's `domain`).
    pub domain: Option<String>,
    pub record_type: Option<String>,
    /// Page size, 1-500 (default 50).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of requests, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestPage {
    pub items: Vec<DnsRequest>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List requests, newest first, with filters and cursor pagination.
#[utoipa::path(
    get,
    path = "/api/v1/dns/requests",
    tag = "requests",
    params(ListRequestsParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token's account only (admins: every account)", body = RequestPage),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub async fn list_requests(
    State(state): State<AppState>,
    caller: Caller,
    ListQuery(params): ListQuery<ListRequestsParams>,
) -> Result<Json<RequestPage>, ApiError> {
    let mut page = Page::default();
    let status = page.parse::<RequestStatus>("query.status", params.status.as_deref());
    let record_type = page.parse::<RecordType>("query.record_type", params.record_type.as_deref());
    let domain = page.domain("query.domain", params.domain.as_deref());
    let (before, limit) = page.window(params.cursor.as_deref(), params.limit.as_deref());
    page.finish()?;
    let Some(account_id) = caller.account_scope(params.account_id) else {
        return Ok(Json(RequestPage {
            items: Vec::new(),
            next_cursor: None,
        }));
    };
    let filter = RequestFilter {
        status,
        account_id,
        domain,
        record_type,
        before,
        limit,
    };
    let items = state.store.list(&filter).await?;
    let next_cursor = Page::next_cursor(&items, limit, |r| r.seq);
    Ok(Json(RequestPage { items, next_cursor }))
}
