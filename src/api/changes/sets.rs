//! `POST /api/v1/dns/changes`, `GET /api/v1/dns/changes/{id}` and `GET /api/v1/dns/changes`:
//! change sets, each change with its own outcome.
//!
//! A set that is not atomic is checked change by change: each is parsed, validated and
//! authorized as it would be alone (`Intake::submit_batch`), the valid ones are recorded and
//! queued, and each refused one is answered in its item with the status it would have got
//! alone. An atomic set is all or nothing (see `atomic.rs`). Either way the answer is the set as
//! `GET /api/v1/dns/changes/{id}` shows it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::post::idempotency_key;
use crate::api::AppState;
use crate::api::auth::{Caller, forwarded_source};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::json::SetBody;
use crate::api::query::{ListQuery, Page};
use crate::domain::changeset::{ChangeItemBody, action};
use crate::domain::zoneform::RrsetView;
use crate::domain::{
    Actor, ChangeBody, ChangeSetBody, ChangeSetId, FieldError, Operation, RecordType, RequestId,
    RequestStatus, SetPlace, SetRole, SetStatus, Submitter, ValidationError,
};
use crate::intake::Submission;
use crate::planner::DryRun;
use crate::store::sets::SetCount;
use crate::store::{ChangeSet, DnsRequest, ItemError, NewChangeSet, RefusedChange, SetFilter};

mod atomic;

/// The limits of a change set.
#[derive(Debug, Clone, Copy)]
pub struct SetLimits {
    /// `MAX_CHANGE_SET_BYTES`: the largest body of a set.
    pub max_bytes: usize,
    /// `MAX_CHANGE_SET_ITEMS`: the most changes in a set.
    pub max_items: usize,
}

/// `?dry_run=true`: plan the set instead of submitting it.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SetSubmission {
    /// Plan every change against the live RRsets and answer 200 with each plan; nothing is
    /// stored, queued or written to any server. An atomic set is planned as one: each change
    /// sees the RRsets as the changes before it leave them.
    pub dry_run: Option<bool>,
}

/// One change of a set, as the set shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SetItem {
    /// The change's position in `changes`, from 0.
    pub index: u32,
    /// The change's request (accepted changes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    /// The request's status (accepted changes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<RequestStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_type: Option<RecordType>,
    /// Why the request failed, or why its last attempt did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The RRset before and after the change, once applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<RrsetView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<RrsetView>,
    /// Why intake refused the change: the status and body it would have got alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
}

impl SetItem {
    fn accepted(request: &DnsRequest, index: u32) -> Self {
        Self {
            index,
            request_id: Some(request.id),
            status: Some(request.status),
            operation: Some(request.operation),
            domain: Some(request.domain.clone()),
            record_type: Some(request.record_type),
            last_error: request.last_error.clone(),
            before: request.before.as_ref().map(RrsetView::of),
            after: request.after.as_ref().map(RrsetView::of),
            error: None,
        }
    }

    fn refused(index: u32, error: ItemError) -> Self {
        Self {
            index,
            request_id: None,
            status: None,
            operation: None,
            domain: None,
            record_type: None,
            last_error: None,
            before: None,
            after: None,
            error: Some(error),
        }
    }
}

/// A change set: its status from its requests', and (in the single view) every change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChangeSetView {
    pub change_set_id: ChangeSetId,
    pub status: SetStatus,
    pub atomic: bool,
    pub account_id: String,
    /// How many changes the set had.
    pub item_count: u32,
    /// How many intake accepted (the others are refused, each with its answer).
    pub accepted: u32,
    /// The accepted changes' requests by status.
    #[schema(value_type = Object, example = json!({"COMPLETED": 47}))]
    pub counts: BTreeMap<&'static str, i64>,
    pub submitted_by: Submitter,
    pub created_at: DateTime<Utc>,
    /// Every change, in order (the single view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<SetItem>>,
}

impl ChangeSetView {
    /// The set with its requests' statuses counted.
    fn of(set: &ChangeSet, counts: &[(RequestStatus, i64)]) -> Self {
        let mut statuses = Vec::new();
        for (status, n) in counts {
            statuses.extend(std::iter::repeat_n(
                *status,
                usize::try_from(*n).unwrap_or(0),
            ));
        }
        Self {
            change_set_id: set.id,
            status: SetStatus::of(&statuses, set.refused.len()),
            atomic: set.atomic,
            account_id: set.account_id.clone(),
            item_count: set.item_count,
            accepted: u32::try_from(statuses.len()).unwrap_or(u32::MAX),
            counts: counts.iter().map(|(s, n)| (s.as_str(), *n)).collect(),
            submitted_by: set.submitted_by.clone(),
            created_at: set.created_at,
            items: None,
        }
    }

    /// The set with every change: its requests and its refused changes, by index.
    fn with_items(set: &ChangeSet, requests: &[DnsRequest]) -> Self {
        let counts: Vec<(RequestStatus, i64)> = RequestStatus::ALL
            .into_iter()
            .map(|status| {
                let n = requests.iter().filter(|r| r.status == status).count();
                (status, i64::try_from(n).unwrap_or(i64::MAX))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        let mut items: Vec<SetItem> = requests
            .iter()
            .filter_map(|r| r.change_set.map(|place| SetItem::accepted(r, place.index)))
            .chain(
                set.refused
                    .iter()
                    .map(|refused| SetItem::refused(refused.index, refused.error.clone())),
            )
            .collect();
        items.sort_by_key(|item| item.index);
        Self {
            items: Some(items),
            ..Self::of(set, &counts)
        }
    }
}

/// The answer when no change of a set was accepted (or an atomic set was refused): nothing was
/// stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SetRefused {
    /// `validation_failed`.
    pub error: &'static str,
    pub message: String,
    /// `atomic` (an atomic set), and each refused change's fields as `changes[i].<field>`.
    pub fields: Vec<FieldError>,
    /// The refused changes, each with the answer it would have got alone.
    pub items: Vec<SetItem>,
}

/// Plans of a set (`?dry_run=true`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SetPlan {
    /// Always `true`: nothing was stored, queued or written to any server.
    pub dry_run: bool,
    pub atomic: bool,
    pub items: Vec<PlannedItem>,
}

/// One change's plan, or why it cannot be made.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlannedItem {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<DryRun>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
}

/// A change of the body, parsed on its own.
pub(super) struct ParsedItem {
    pub index: u32,
    pub operation: Operation,
    pub body: ChangeBody,
}

/// Submit a change set.
///
/// Up to `MAX_CHANGE_SET_ITEMS` (1000) changes in one body of up to `MAX_CHANGE_SET_BYTES`
/// (1 MiB). Not atomic (the default): each change is parsed, validated and authorized on its
/// own, exactly as it would be alone; the valid ones are recorded and queued, each refused one
/// is answered in its item with the status and error it would have got alone. 202 when at
/// least one change was accepted, 422 (nothing stored) when none was. Atomic: every change
/// must be valid and in one zone whose backend applies them at once (rfc2136: one UPDATE of at
/// most 64 KiB; simulated), or the whole set is a 422 naming `atomic`; the set is then one
/// claim, one lease, one outcome. With an `Idempotency-Key`, a retry with the same body
/// returns the set (200) and another body is a 409.
#[utoipa::path(
    post,
    path = "/api/v1/dns/changes",
    tag = "requests",
    request_body = ChangeSetBody,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe; scoped to the account. Each change's request gets a key derived from the set's id and its index"),
        SetSubmission,
    ),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "At least one change accepted: the set, every change in its item", body = ChangeSetView, headers(("Location" = String))),
        (status = 200, description = "An idempotent replay (a `ChangeSetView`), or with `dry_run=true` each change's plan (a `SetPlan`)", body = SetPlan),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 409, description = "Idempotency key reused with another body", body = ErrorBody),
        (status = 413, description = "Body over MAX_CHANGE_SET_BYTES (1 MiB by default)", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "No change accepted, or an atomic set that cannot be applied as one: nothing was stored", body = SetRefused),
        (status = 503, description = "Database unavailable (with an Idempotency-Key, retrying is safe)", body = ErrorBody),
    )
)]
pub async fn submit(
    State(state): State<AppState>,
    Caller(mut actor): Caller,
    Query(submission): Query<SetSubmission>,
    headers: HeaderMap,
    SetBody(body): SetBody<ChangeSetBody>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    if let Some(key) = key {
        crate::domain::validation::check_key(key)?;
    }
    actor.source = forwarded_source(&state, &headers, actor.client_addr).await?;
    let atomic = body.atomic.unwrap_or(false);
    let fingerprint = fingerprint(&body);
    let (parsed, mut refused) = parse_items(&body, state.change_sets.max_items)?;
    if submission.dry_run == Some(true) {
        return dry_run(&state, &actor, atomic, parsed, refused).await;
    }
    let account_id = body
        .context
        .as_ref()
        .and_then(|c| c.account_id.clone())
        .unwrap_or_else(|| actor.principal.account_id.clone());
    let set_id = ChangeSetId::for_submission(&account_id, key);
    if key.is_some()
        && let Some(existing) = state.sets.change_set(set_id).await?
    {
        if existing.fingerprint != fingerprint {
            return Err(ApiError::Conflict(format!(
                "Idempotency-Key already used for change set {set_id} with a different body"
            )));
        }
        return show(&state, &existing, StatusCode::OK).await;
    }
    let new_set = NewChangeSet {
        id: set_id,
        account_id,
        atomic,
        item_count: u32::try_from(body.changes.as_ref().map_or(0, Vec::len)).unwrap_or(u32::MAX),
        refused: Vec::new(),
        idempotency_key: key.map(str::to_owned),
        fingerprint,
        source: actor.source.as_str().to_owned(),
        submitter: Submitter::of(&actor),
    };
    if atomic {
        return atomic::submit(&state, &actor, new_set, parsed, refused).await;
    }
    let submissions = parsed
        .iter()
        .map(|item| Submission {
            actor: actor.clone(),
            body: item.body.clone(),
            operation: item.operation,
            idempotency_key: Some(item_key(set_id, item.index)),
            set: Some(SetPlace {
                id: set_id,
                index: item.index,
                role: SetRole::Item,
            }),
        })
        .collect();
    let answers = state
        .intake
        .submit_batch(submissions)
        .await
        .map_err(ApiError::from)?;
    let mut accepted = 0;
    for (item, answer) in parsed.iter().zip(answers) {
        match answer {
            Ok(_) => accepted += 1,
            Err(e) => refused.push(RefusedChange {
                index: item.index,
                error: ApiError::from(e).into_item(),
            }),
        }
    }
    refused.sort_by_key(|r| r.index);
    if accepted == 0 {
        return Err(nothing_accepted(
            refused,
            "no change of the set was accepted",
        ));
    }
    let set = state
        .sets
        .record_change_set(&NewChangeSet { refused, ..new_set })
        .await?;
    show(&state, &set, StatusCode::ACCEPTED).await
}

/// The set's answer: the set with every change, and where to follow it.
async fn show(state: &AppState, set: &ChangeSet, status: StatusCode) -> Result<Response, ApiError> {
    let requests = state.sets.change_set_requests(set.id).await?;
    let view = ChangeSetView::with_items(set, &requests);
    let location = HeaderValue::from_str(&format!("/api/v1/dns/changes/{}", set.id))
        .expect("a UUID path is a valid header value");
    Ok((status, [(header::LOCATION, location)], Json(view)).into_response())
}

/// The key of a change's request: the set's id (itself derived from the set's key) and the
/// change's index, so a retry of the set finds the requests an earlier attempt recorded.
pub(super) fn item_key(set: ChangeSetId, index: u32) -> String {
    format!("changeset:{set}:{index}")
}

/// A digest of the body as parsed: a retry under the same key must send the same set.
fn fingerprint(body: &ChangeSetBody) -> String {
    let canonical = serde_json::json!({
        "context": body.context,
        "atomic": body.atomic.unwrap_or(false),
        "changes": body.changes,
    });
    crate::domain::token::hex(&Sha256::digest(canonical.to_string().as_bytes()))
}

/// The changes, each parsed on its own: a change that does not parse is refused in its item
/// (422 naming its field), the others go on. The list itself must hold 1 to `max_items`.
fn parse_items(
    body: &ChangeSetBody,
    max_items: usize,
) -> Result<(Vec<ParsedItem>, Vec<RefusedChange>), ApiError> {
    let changes = match &body.changes {
        None => return Err(ValidationError::field("changes", "is required").into()),
        Some(changes) if changes.is_empty() || changes.len() > max_items => {
            return Err(ValidationError::field(
                "changes",
                format!(
                    "must hold 1 to {max_items} changes (MAX_CHANGE_SET_ITEMS), not {}",
                    changes.len()
                ),
            )
            .into());
        }
        Some(changes) => changes,
    };
    let mut parsed = Vec::with_capacity(changes.len());
    let mut refused = Vec::new();
    for (index, value) in changes.iter().enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        match parse_item(body, value) {
            Ok((operation, body)) => parsed.push(ParsedItem {
                index,
                operation,
                body,
            }),
            Err(e) => refused.push(RefusedChange {
                index,
                error: ApiError::Invalid(e).into_item(),
            }),
        }
    }
    Ok((parsed, refused))
}

fn parse_item(
    set: &ChangeSetBody,
    value: &serde_json::Value,
) -> Result<(Operation, ChangeBody), ValidationError> {
    let item: ChangeItemBody = serde_path_to_error::deserialize(value).map_err(|e| {
        let field = match e.path().to_string() {
            path if path == "." => "change".to_owned(),
            path => path,
        };
        ValidationError::field(field, e.into_inner().to_string())
    })?;
    let operation =
        action(item.action.as_deref()).map_err(|why| ValidationError::field("action", why))?;
    Ok((
        operation,
        ChangeBody {
            context: set.context.clone(),
            resource: item.resource,
            expect: item.expect,
        },
    ))
}

/// The 422 of a set of which nothing was stored: every refused change's fields, named by the
/// change's index, and every change in its item.
pub(super) fn nothing_accepted(refused: Vec<RefusedChange>, message: &str) -> ApiError {
    ApiError::SetRefused {
        message: message.to_owned(),
        extra: Vec::new(),
        refused,
    }
}

/// The body of [`ApiError::SetRefused`].
pub(crate) fn refused_body(
    message: String,
    extra: Vec<FieldError>,
    refused: Vec<RefusedChange>,
) -> SetRefused {
    let mut fields = extra;
    for change in &refused {
        if change.error.fields.is_empty() {
            fields.push(FieldError {
                field: format!("changes[{}]", change.index),
                message: change.error.message.clone(),
            });
        }
        for field in &change.error.fields {
            fields.push(FieldError {
                field: format!("changes[{}].{}", change.index, field.field),
                message: field.message.clone(),
            });
        }
    }
    SetRefused {
        error: "validation_failed",
        message,
        fields,
        items: refused
            .into_iter()
            .map(|r| SetItem::refused(r.index, r.error))
            .collect(),
    }
}

/// Plans each change (`?dry_run=true`); nothing is stored.
async fn dry_run(
    state: &AppState,
    actor: &Actor,
    atomic: bool,
    parsed: Vec<ParsedItem>,
    refused: Vec<RefusedChange>,
) -> Result<Response, ApiError> {
    let mut items: Vec<PlannedItem> = refused
        .into_iter()
        .map(|r| PlannedItem {
            index: r.index,
            plan: None,
            error: Some(r.error),
        })
        .collect();
    let indexes: Vec<u32> = parsed.iter().map(|item| item.index).collect();
    let plans = if atomic {
        let items = parsed.into_iter().map(|i| (i.operation, i.body)).collect();
        state.planner.plan_set(actor, items).await
    } else {
        let mut plans = Vec::with_capacity(parsed.len());
        for item in parsed {
            plans.push(state.planner.plan(actor, item.body, item.operation).await);
        }
        plans
    };
    for (index, planned) in indexes.into_iter().zip(plans) {
        items.push(match planned {
            Ok(plan) => PlannedItem {
                index,
                plan: Some(plan),
                error: None,
            },
            Err(e) if matches!(&e, crate::planner::PlanError::Store(s) if s.is_unavailable()) => {
                return Err(e.into());
            }
            Err(e) => PlannedItem {
                index,
                plan: None,
                error: Some(ApiError::from(e).into_item()),
            },
        });
    }
    items.sort_by_key(|item| item.index);
    let plan = SetPlan {
        dry_run: true,
        atomic,
        items,
    };
    Ok((StatusCode::OK, Json(plan)).into_response())
}

/// Get a change set: its status and every change's outcome.
///
/// The status is derived from the changes' requests: PENDING until one starts, PROCESSING
/// while any is unfinished, then COMPLETED (every change accepted and completed),
/// PARTIALLY_FAILED or FAILED (none completed).
#[utoipa::path(
    get,
    path = "/api/v1/dns/changes/{id}",
    tag = "requests",
    params(("id" = String, Path, description = "The change set's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ChangeSetView),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such set, or another account's", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn get_set(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound(format!("no change set with id '{id}'"));
    let set_id: ChangeSetId = id.parse().map_err(|_| not_found())?;
    let set = state.sets.change_set(set_id).await?.ok_or_else(not_found)?;
    if !caller.0.principal.may_read(&set.account_id) {
        return Err(not_found());
    }
    let requests = state.sets.change_set_requests(set.id).await?;
    Ok(Json(ChangeSetView::with_items(&set, &requests)).into_response())
}

/// Query parameters of `GET /api/v1/dns/changes`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListSetsParams {
    /// Admins only; other tokens see their own account.
    pub account_id: Option<String>,
    /// Page size, 1-500 (default 50).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of change sets, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChangeSetPage {
    /// Each set without its items (see `GET /api/v1/dns/changes/{id}`).
    pub items: Vec<ChangeSetView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List change sets, newest first, with their status and counts.
#[utoipa::path(
    get,
    path = "/api/v1/dns/changes",
    tag = "requests",
    params(ListSetsParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token's account only (admins: every account)", body = ChangeSetPage),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn list_sets(
    State(state): State<AppState>,
    caller: Caller,
    ListQuery(params): ListQuery<ListSetsParams>,
) -> Result<Json<ChangeSetPage>, ApiError> {
    let mut page = Page::default();
    let (before, limit) = page.window(params.cursor.as_deref(), params.limit.as_deref());
    page.finish()?;
    let Some(account_id) = caller.account_scope(params.account_id) else {
        return Ok(Json(ChangeSetPage {
            items: Vec::new(),
            next_cursor: None,
        }));
    };
    let filter = SetFilter {
        account_id,
        before,
        limit,
    };
    let sets = state.sets.list_change_sets(&filter).await?;
    let ids: Vec<ChangeSetId> = sets.iter().map(|s| s.id).collect();
    let counts = state.sets.set_counts(&ids).await?;
    let next_cursor = Page::next_cursor(&sets, limit, |s| s.seq);
    let items = sets
        .iter()
        .map(|set| ChangeSetView::of(set, &counts_of(&counts, set.id)))
        .collect();
    Ok(Json(ChangeSetPage { items, next_cursor }))
}

fn counts_of(counts: &[SetCount], set: ChangeSetId) -> Vec<(RequestStatus, i64)> {
    counts
        .iter()
        .filter(|c| c.set == set)
        .map(|c| (c.status, c.count))
        .collect()
}
