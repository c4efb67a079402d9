//! `POST /api/v1/dns/create` and `POST /api/v1/dns/delete`: validate, record, queue; answer
//! 202 with the request.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::location_of;
use crate::api::AppState;
use crate::api::auth::{Caller, forwarded_source};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::json::JsonBody;
use crate::domain::{ChangeBody, Operation, ValidationError};
use crate::intake::Submitted;
use crate::store::DnsRequest;

/// The header that makes a submission safe to retry.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Submit a DNS record change request.
///
/// The request's account is the token's: `context.account_id` may be omitted, and may name
/// another account only for an admin token. `context.source` is ignored (`api`). The request
/// is committed before the answer. With an `Idempotency-Key`, a retry with the
/// same body returns the original request (200) and a different body is a 409.
#[utoipa::path(
    post,
    path = "/api/v1/dns/create",
    tag = "requests",
    request_body = ChangeBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe; scoped to the account")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: PENDING", body = DnsRequest, headers(("Location" = String))),
        (status = 200, description = "Idempotent replay of an earlier request", body = DnsRequest),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token (missing, unknown, revoked, expired, or used from outside its subnets)", body = ErrorBody),
        (status = 403, description = "`context.account_id` names an account this token may not act for", body = ErrorBody),
        (status = 409, description = "Idempotency key reused with another body", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ChangeBody>,
) -> Result<Response, ApiError> {
    submit(&state, caller, &headers, body, Operation::Create).await
}

/// Submit a DNS record delete request.
///
/// The same body as a create. With a `target`, that one record is removed; without one, the
/// whole RRset (every record of `record_type` at `domain`). dnsorch deletes only records its
/// ledger holds for the requesting account: a delete of anything else ends FAILED with the
/// reason in its log.
#[utoipa::path(
    post,
    path = "/api/v1/dns/delete",
    tag = "requests",
    request_body = ChangeBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe; scoped to the account")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: PENDING", body = DnsRequest, headers(("Location" = String))),
        (status = 200, description = "Idempotent replay of an earlier request", body = DnsRequest),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token (missing, unknown, revoked, expired, or used from outside its subnets)", body = ErrorBody),
        (status = 403, description = "`context.account_id` names an account this token may not act for", body = ErrorBody),
        (status = 409, description = "Idempotency key reused with another body", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ChangeBody>,
) -> Result<Response, ApiError> {
    submit(&state, caller, &headers, body, Operation::Delete).await
}

async fn submit(
    state: &AppState,
    Caller(mut actor): Caller,
    headers: &HeaderMap,
    body: ChangeBody,
    operation: Operation,
) -> Result<Response, ApiError> {
    let key = idempotency_key(headers)?;
    actor.source = forwarded_source(state, headers, actor.client_addr).await?;
    let submitted = state.intake.submit(&actor, body, operation, key).await?;
    let (status, request) = match submitted {
        Submitted::Created(request) => (StatusCode::ACCEPTED, request),
        Submitted::Replayed(request) => (StatusCode::OK, request),
    };
    let location = location_of(request.id);
    Ok((status, [(header::LOCATION, location)], Json(request)).into_response())
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    headers
        .get(IDEMPOTENCY_KEY)
        .map(|value| {
            value.to_str().map_err(|_| {
                ValidationError::field(
                    "header.Idempotency-Key",
                    "must be 1-255 visible ASCII characters",
                )
                .into()
            })
        })
        .transpose()
}
