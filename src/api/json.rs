//! `JsonBody`: a JSON extractor whose every failure is a clear JSON error.
//!
//! axum's own `Json` answers in plain text. We read the body ourselves (within the router's
//! `MAX_BODY_BYTES` limit, 64 KiB by default), check the content type, and deserialise with
//! `serde_path_to_error`, so an unknown field or a wrong type names its path
//! (`resource.config.ttl`).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::domain::body::{JsonError, from_json};

/// A JSON body, deserialised.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T> FromRequest<AppState> for JsonBody<T>
where
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        read(req, state, state.max_body_bytes).await.map(JsonBody)
    }
}

/// A change set's JSON body, within `MAX_CHANGE_SET_BYTES` (the route's own body limit).
#[derive(Debug)]
pub struct SetBody<T>(pub T);

impl<T> FromRequest<AppState> for SetBody<T>
where
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        read(req, state, state.change_sets.max_bytes)
            .await
            .map(SetBody)
    }
}

/// Reads a JSON body under the route's limit (`limit`, for the 413's message).
async fn read<T: DeserializeOwned>(
    req: Request,
    state: &AppState,
    limit: usize,
) -> Result<T, ApiError> {
    if !is_json(req.headers().get(header::CONTENT_TYPE)) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::BadRequest {
                code: "unreadable_body",
                message: rejection.body_text(),
            }
        }
    })?;
    parse(&bytes)
}

fn is_json(content_type: Option<&axum::http::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Deserialises `bytes`; syntax errors are 400, shape errors name the field and are 422.
///
/// # Errors
/// `ApiError::BadRequest` for malformed JSON, `ApiError::Invalid` for a wrong shape.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    from_json(bytes).map_err(|error| match error {
        JsonError::Malformed(message) => ApiError::BadRequest {
            code: "malformed_json",
            message,
        },
        JsonError::Invalid(fields) => ApiError::Invalid(fields),
    })
}
