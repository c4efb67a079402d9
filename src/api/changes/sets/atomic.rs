//! `POST /api/v1/dns/changes` with `"atomic": true`: all or nothing. Any change that is
//! refused, or a set that cannot be applied as one, is a 422 naming `atomic`, and nothing is
//! stored (see `intake::atomic`).

use axum::http::StatusCode;
use axum::response::Response;

use super::{ParsedItem, item_key, show};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::domain::{Actor, FieldError};
use crate::intake::Submission;
use crate::store::{NewChangeSet, RefusedChange, StoreError};

/// Submits an atomic set: every change valid, or a 422 with each refused one.
pub(super) async fn submit(
    state: &AppState,
    actor: &Actor,
    set: NewChangeSet,
    parsed: Vec<ParsedItem>,
    mut refused: Vec<RefusedChange>,
) -> Result<Response, ApiError> {
    if !refused.is_empty() {
        return Err(refuse(
            refused,
            Vec::new(),
            "a change of the atomic set does not parse",
        ));
    }
    let items = parsed
        .into_iter()
        .map(|item| {
            let submission = Submission {
                actor: actor.clone(),
                body: item.body,
                operation: item.operation,
                idempotency_key: Some(item_key(set.id, item.index)),
                set: None,
            };
            (item.index, submission)
        })
        .collect();
    match state.intake.submit_atomic(items, &set).await? {
        Ok(_lead) => {
            let stored = state.sets.change_set(set.id).await?.ok_or_else(|| {
                ApiError::from(StoreError::Corrupt(format!(
                    "change set {} was recorded but is not there",
                    set.id
                )))
            })?;
            show(state, &stored, StatusCode::ACCEPTED).await
        }
        Err(refusal) => {
            refused.extend(refusal.changes.into_iter().map(|(index, e)| RefusedChange {
                index,
                error: ApiError::from(e).into_item(),
            }));
            Err(refuse(
                refused,
                refusal.whole,
                "the atomic set cannot be applied as one; nothing was stored",
            ))
        }
    }
}

/// The 422 of a refused atomic set: `atomic` named first, then what is at fault.
fn refuse(refused: Vec<RefusedChange>, whole: Vec<FieldError>, message: &str) -> ApiError {
    let mut fields = Vec::with_capacity(whole.len() + 1);
    if !whole.iter().any(|f| f.field == "atomic") {
        fields.push(FieldError {
            field: "atomic".into(),
            message: format!(
                "every change of an atomic set must be accepted; {} {} not",
                refused.len() + whole.len(),
                if refused.len() + whole.len() == 1 {
                    "is"
                } else {
                    "are"
                }
            ),
        });
    }
    fields.extend(whole);
    ApiError::SetRefused {
        message: message.to_owned(),
        extra: fields,
        refused,
    }
}
