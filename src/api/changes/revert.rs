//! `POST /api/v1/dns/requests/{id}/revert`: undo a completed change by submitting its inverse,
//! a replace of the RRset with the request's `before` (a delete of the RRset when `before`
//! was absent), expecting the request's `after`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::get::readable_request;
use super::post::{respond, submit};
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::error::{ApiError, ErrorBody};
use crate::domain::plan::{describe_rrset, same_rrset};
use crate::domain::zoneform::{self, RrsetView};
use crate::domain::{
    ChangeBody, ConfigBody, ContextBody, LiveRrset, Operation, RequestStatus, ResourceBody,
    RrsetBody, ValidationError,
};
use crate::store::{DnsRequest, ledger_rrset};

/// Revert a completed request.
///
/// Submits a new request that puts the RRset back as it was before request `id`: a replace
/// with its `before` records and TTL, or a delete of the whole RRset when `before` was
/// absent. The new request carries the reverted request's `after` as its `expect`, so it fails
/// without changing anything if the RRset changed in the meantime. The body is empty or `{}`.
/// It needs the permissions of the new request (create and delete for a replace).
#[utoipa::path(
    post,
    path = "/api/v1/dns/requests/{id}/revert",
    tag = "requests",
    request_body(content = Object, description = "Nothing, or `{}`", content_type = "application/json"),
    params(
        ("id" = String, Path, description = "The request to revert"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe; scoped to the account"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: the new request, PENDING", body = DnsRequest, headers(("Location" = String))),
        (status = 200, description = "Idempotent replay of an earlier revert", body = DnsRequest),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The token may not make the new request", body = ErrorBody),
        (status = 404, description = "No such request, or another account's", body = ErrorBody),
        (status = 409, description = "The ledger's RRset is no longer the request's `after` (the message says what it holds)", body = ErrorBody),
        (status = 422, description = "The request is not COMPLETED, is an adoption, or its `before` is unknown; or the body is not empty or `{}`", body = ErrorBody),
        (status = 429, description = "Over the token's rate limit", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn revert(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let empty = body.iter().all(u8::is_ascii_whitespace)
        || serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body)
            .is_ok_and(|fields| fields.is_empty());
    if !empty {
        return Err(ValidationError::field("body", "must be empty or {}").into());
    }
    let request = readable_request(&state, &caller, &id).await?;
    let (before, after) = revertible(&request)?;
    let (_, rows) = state
        .store
        .rrset(&request.domain, request.record_type)
        .await?;
    let now = ledger_rrset(&rows).unwrap_or_else(LiveRrset::absent);
    if !same_rrset(&now, after) {
        return Err(ApiError::Conflict(format!(
            "the {} {} RRset changed since request {id}: it was {} after it, the ledger now holds {}",
            request.domain,
            request.record_type,
            describe_rrset(after),
            describe_rrset(&now)
        )));
    }
    let (operation, targets) = match before.records.is_empty() {
        true => (Operation::Delete, None),
        false => (
            Operation::Replace,
            Some(before.records.iter().map(zoneform::element).collect()),
        ),
    };
    let expected = RrsetView::of(after);
    let inverse = ChangeBody {
        context: Some(ContextBody {
            account_id: Some(request.account_id.clone()),
            source: None,
        }),
        resource: Some(ResourceBody {
            record_type: Some(request.record_type.as_str().to_owned()),
            domain: Some(request.domain.clone()),
            target: None,
            targets,
            comment: Some(format!("revert of request {id}")),
            config: Some(ConfigBody {
                ttl: Some(i64::from(before.ttl)),
                ..ConfigBody::default()
            }),
        }),
        expect: Some(Some(RrsetBody {
            ttl: i64::from(expected.ttl),
            records: expected.records,
        })),
    };
    let (status, created) = submit(&state, caller, &headers, inverse, operation).await?;
    Ok(respond(status, created))
}

/// The request's `before` and `after`, if it can be reverted: COMPLETED, a change of DNS,
/// both recorded.
fn revertible(request: &DnsRequest) -> Result<(&LiveRrset, &LiveRrset), ApiError> {
    let refuse = |why: String| Err(ValidationError::field("id", why).into());
    match request.status {
        RequestStatus::Completed => {}
        RequestStatus::Pending
        | RequestStatus::Processing
        | RequestStatus::Unknown
        | RequestStatus::Failed => {
            return refuse(format!(
                "request {} is {}; only a COMPLETED request can be reverted",
                request.id,
                request.status.as_str()
            ));
        }
    }
    match request.operation {
        Operation::Create | Operation::Delete | Operation::Replace => {}
        Operation::Adopt => {
            return refuse("an adoption changed no DNS; there is nothing to revert".into());
        }
    }
    match (&request.before, &request.after) {
        (Some(before), Some(after)) => Ok((before, after)),
        _ => refuse(format!(
            "request {} has no recorded before and after (applied by a version of dnsorch that did not record them)",
            request.id
        )),
    }
}
