//! `POST /api/v1/dns/create`, `/delete`, `/replace` and `/adopt`: validate, authorize,
//! record, queue; answer 202 with the request (or, with `?dry_run=true`, 200 with the plan).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::location_of;
use crate::api::AppState;
use crate::api::auth::{Caller, forwarded_source};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::json::JsonBody;
use crate::domain::{ChangeBody, Operation, Submitter, ValidationError};
use crate::intake::Submitted;
use crate::planner::DryRun;
use crate::store::DnsRequest;
use crate::store::audit::{self, AuditAction, NewAuditEntry};

/// `?dry_run=true`: plan the change instead of submitting it.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Submission {
    /// Check and plan the change against the live RRset and answer 200 with the plan;
    /// nothing is stored, queued or written to any server.
    pub dry_run: Option<bool>,
}

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
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe; scoped to the account"),
        Submission,
    ),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: PENDING", body = DnsRequest, headers(("Location" = String))),
        (status = 200, description = "Idempotent replay of an earlier request (a `DnsRequest`), or with `dry_run=true` the plan (a `DryRun`): before, after and every conflict", body = DryRun),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token (missing, unknown, revoked, expired, or used from outside its subnets)", body = ErrorBody),
        (status = 403, description = "The token may not do this: `context.account_id` names an account it may not act for, no policy grants the permission for the name and type (the message names the name, type and permission), or the RRset belongs to another account", body = ErrorBody),
        (status = 409, description = "Idempotency key reused with another body", body = ErrorBody),
        (status = 413, description = "Body over MAX_BODY_BYTES (64 KiB by default)", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
        (status = 429, description = "Over the token's rate limit, or the account has MAX_UNFINISHED_PER_NAME unfinished requests for the name; nothing was stored (see `Retry-After`)", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Query(submission): Query<Submission>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ChangeBody>,
) -> Result<Response, ApiError> {
    if submission.dry_run == Some(true) {
        return dry_run(&state, caller, &headers, body, Operation::Create).await;
    }
    let (status, request) = submit(&state, caller, &headers, body, Operation::Create).await?;
    Ok(respond(status, request))
}

/// Submit a DNS record delete request.
///
/// The same body as a create. With a `target` (or `targets`), those records are removed;
/// without, the whole RRset (every record of `record_type` at `domain`). dnsorch deletes only
/// records its ledger holds for the requesting account: a delete of anything else ends FAILED
/// with the reason in its log.
#[utoipa::path(
    post,
    path = "/api/v1/dns/delete",
    tag = "requests",
    request_body = ChangeBody,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe; scoped to the account"),
        Submission,
    ),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: PENDING", body = DnsRequest, headers(("Location" = String))),
        (status = 200, description = "Idempotent replay of an earlier request (a `DnsRequest`), or with `dry_run=true` the plan (a `DryRun`): before, after and every conflict", body = DryRun),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token (missing, unknown, revoked, expired, or used from outside its subnets)", body = ErrorBody),
        (status = 403, description = "The token may not do this: `context.account_id` names an account it may not act for, no policy grants the permission for the name and type (the message names the name, type and permission), or the RRset belongs to another account", body = ErrorBody),
        (status = 409, description = "Idempotency key reused with another body", body = ErrorBody),
        (status = 413, description = "Body over MAX_BODY_BYTES (64 KiB by default)", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
        (status = 429, description = "Over the token's rate limit, or the account has MAX_UNFINISHED_PER_NAME unfinished requests for the name; nothing was stored (see `Retry-After`)", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Query(submission): Query<Submission>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ChangeBody>,
) -> Result<Response, ApiError> {
    if submission.dry_run == Some(true) {
        return dry_run(&state, caller, &headers, body, Operation::Delete).await;
    }
    let (status, request) = submit(&state, caller, &headers, body, Operation::Delete).await?;
    Ok(respond(status, request))
}

/// Replace an RRset.
///
/// Sets the RRset of `record_type` at `domain` to exactly `resource.targets` (or the one
/// `target`) with `config.ttl`. The token needs both create and delete permission. As for a
/// create, the RRset must be the account's or unowned (it becomes the account's), and records
/// dnsorch does not manage in it make the request fail (adopt the RRset first). On rfc2136 it
/// is one UPDATE under prerequisites (the RRset is still what the worker read), so the server
/// applies all of it or none.
#[utoipa::path(
    post,
    path = "/api/v1/dns/replace",
    tag = "requests",
    request_body = ChangeBody,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe; scoped to the account"),
        Submission,
    ),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: PENDING", body = DnsRequest, headers(("Location" = String))),
        (status = 200, description = "Idempotent replay of an earlier request (a `DnsRequest`), or with `dry_run=true` the plan (a `DryRun`): before, after and every conflict", body = DryRun),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token (missing, unknown, revoked, expired, or used from outside its subnets)", body = ErrorBody),
        (status = 403, description = "The token may not do this: `context.account_id` names an account it may not act for, no policy grants both create and delete for the name and type (the message names the permission missing), or the RRset belongs to another account", body = ErrorBody),
        (status = 409, description = "Idempotency key reused with another body", body = ErrorBody),
        (status = 413, description = "Body over MAX_BODY_BYTES (64 KiB by default)", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields (no records: a replace needs at least one; use a delete to remove the RRset)", body = ErrorBody),
        (status = 429, description = "Over the token's rate limit, or the account has MAX_UNFINISHED_PER_NAME unfinished requests for the name; nothing was stored (see `Retry-After`)", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Query(submission): Query<Submission>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ChangeBody>,
) -> Result<Response, ApiError> {
    if submission.dry_run == Some(true) {
        return dry_run(&state, caller, &headers, body, Operation::Replace).await;
    }
    let (status, request) = submit(&state, caller, &headers, body, Operation::Replace).await?;
    Ok(respond(status, request))
}

/// Adopt an RRset (admins only).
///
/// Takes the RRset at `resource.domain` of `resource.record_type` as the zone's server holds
/// it into dnsorch's ledger, for `context.account_id` (default: the token's account), and
/// gives the account the RRset, whoever owned it. A worker reads the RRset: rfc2136 from the
/// zone's primary, powerdns over its HTTP API, ansible from the zone's `verify_server` (a zone without one is a 422);
/// on the simulated backend the ledger is the live state, so adoption transfers ownership.
/// Records made outside dnsorch stop creates into their RRset until it is adopted.
#[utoipa::path(
    post,
    path = "/api/v1/dns/adopt",
    tag = "requests",
    request_body = ChangeBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe; scoped to the account")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: PENDING", body = DnsRequest, headers(("Location" = String))),
        (status = 200, description = "Idempotent replay of an earlier request", body = DnsRequest),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "Idempotency key reused with another body", body = ErrorBody),
        (status = 413, description = "Body over MAX_BODY_BYTES (64 KiB by default)", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields (a target, or a zone whose RRsets cannot be read)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn adopt(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ChangeBody>,
) -> Result<Response, ApiError> {
    let actor = Submitter::of(&caller.0);
    let (status, request) = submit(&state, caller, &headers, body, Operation::Adopt).await?;
    if status == StatusCode::ACCEPTED {
        let entry = NewAuditEntry {
            action: AuditAction::RrsetAdopt,
            subject: format!("{} {}", request.domain, request.record_type),
            actor,
            details: serde_json::json!({
                "request_id": request.id,
                "account_id": request.account_id,
                "zone": request.zone,
            }),
        };
        audit::record(state.audit.as_ref(), entry).await;
    }
    Ok(respond(status, request))
}

pub(super) async fn submit(
    state: &AppState,
    Caller(mut actor): Caller,
    headers: &HeaderMap,
    body: ChangeBody,
    operation: Operation,
) -> Result<(StatusCode, DnsRequest), ApiError> {
    let key = idempotency_key(headers)?;
    actor.source = forwarded_source(state, headers, actor.client_addr).await?;
    let submitted = state.intake.submit(&actor, body, operation, key).await?;
    Ok(match submitted {
        Submitted::Created(request) => (StatusCode::ACCEPTED, request),
        Submitted::Replayed(request) => (StatusCode::OK, request),
    })
}

/// Plans the change (`?dry_run=true`): 200 with the plan; nothing stored or sent.
async fn dry_run(
    state: &AppState,
    Caller(mut actor): Caller,
    headers: &HeaderMap,
    body: ChangeBody,
    operation: Operation,
) -> Result<Response, ApiError> {
    actor.source = forwarded_source(state, headers, actor.client_addr).await?;
    let plan = state.planner.plan(&actor, body, operation).await?;
    Ok((StatusCode::OK, Json(plan)).into_response())
}

pub(super) fn respond(status: StatusCode, request: DnsRequest) -> Response {
    let location = location_of(request.id);
    (status, [(header::LOCATION, location)], Json(request)).into_response()
}

pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
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
