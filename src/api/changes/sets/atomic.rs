//! Atomic change sets: all or nothing.

use axum::response::Response;

use super::ParsedItem;
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::domain::Actor;
use crate::store::{NewChangeSet, RefusedChange};

/// Submits an atomic set.
pub(super) async fn submit(
    _state: &AppState,
    _actor: &Actor,
    _set: NewChangeSet,
    _parsed: Vec<ParsedItem>,
    _refused: Vec<RefusedChange>,
) -> Result<Response, ApiError> {
    Err(ApiError::Invalid(crate::domain::ValidationError::field(
        "atomic", "not yet",
    )))
}
