//! `ApiError`: every way a request can fail, as a status code and a JSON body.
//!
//! Bodies are `{"error": "<code>", "message": "<why>"}`, plus `fields` for validation and
//! `request_id` for conflicts. Internal causes are logged here and never sent to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthFailure;
use crate::domain::{FieldError, RequestId, ValidationError};
use crate::intake::IntakeError;
use crate::store::{ItemError, StoreError};

/// An error answer of the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422: the request is well-formed but its values are not acceptable.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// 400: the body is not JSON, or a parameter cannot be read.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 415: the body is not declared as JSON.
    #[error("the body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// 413: the body is over the limit.
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 401: no token, or one that is not (or no longer) valid here.
    #[error("authentication required: {0}")]
    Unauthorized(AuthFailure),
    /// 403: the token is valid but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: the change conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 429: over a rate limit; nothing was stored. `Retry-After` says when to try again.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: std::time::Duration,
    },
    /// 409: an idempotency key reused with another body.
    #[error("Idempotency-Key already used for request {0} with a different body")]
    KeyReused(RequestId),
    /// 503: the database is unavailable; retry.
    #[error("the service is temporarily unavailable; retry later")]
    Unavailable(#[source] StoreError),
    /// 503: this process is already serving `MAX_CONCURRENT_REQUESTS` requests; retry.
    #[error("the service is serving its limit of {0} requests at once; retry later")]
    Overloaded(u32),
    /// 503: the request was not answered within `REQUEST_TIMEOUT_SECONDS` (its body
    /// included); nothing more of it is done.
    #[error("the request was not answered within {}s; retry later", .0.as_secs_f64())]
    Timeout(std::time::Duration),
    /// 422: a change set of which nothing was stored (no change accepted, or an atomic set
    /// that cannot be applied as one): `extra` fields (such as `atomic`) and each refused
    /// change, answered in the body's `items`.
    #[error("{message}")]
    SetRefused {
        message: String,
        extra: Vec<FieldError>,
        refused: Vec<crate::store::RefusedChange>,
    },
    /// 500: a bug or an unexpected fault.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The JSON body of an error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code: `validation_failed`, `malformed_json`, `not_found`, `conflict`, …
    pub error: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// Each bad field and why (validation errors only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
    /// The request an idempotency key already names (conflicts only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Invalid(_) | Self::SetRefused { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
            }
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::KeyReused(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Overloaded(_) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            Self::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl ApiError {
    /// The answer's body.
    fn into_body(self, code: &'static str) -> ErrorBody {
        ErrorBody {
            error: code,
            message: self.to_string(),
            request_id: match &self {
                Self::KeyReused(id) => Some(*id),
                _ => None,
            },
            fields: match self {
                Self::Invalid(e) => e.fields,
                _ => Vec::new(),
            },
        }
    }

    /// The answer a change of a set gets in its item: the status and body it would have got
    /// alone. (Causes of a 500 are logged, as for an answer.)
    pub fn into_item(self) -> ItemError {
        let (status, code) = self.status_and_code();
        if let Self::Internal(e) = &self {
            tracing::error!(error.message = %e, error.cause_chain = ?e, "internal error in a change set's item");
        }
        let body = self.into_body(code);
        ItemError {
            status: status.as_u16(),
            error: body.error.to_owned(),
            message: body.message,
            fields: body.fields,
            request_id: body.request_id,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) | StoreError::WriteFailed(_) => Self::Unavailable(error),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<IntakeError> for ApiError {
    fn from(error: IntakeError) -> Self {
        match error {
            IntakeError::Invalid(e) => Self::Invalid(e),
            IntakeError::KeyReused(id) => Self::KeyReused(id),
            IntakeError::Forbidden(why) => Self::Forbidden(why),
            IntakeError::RateLimited {
                message,
                retry_after,
            } => Self::TooManyRequests {
                message,
                retry_after,
            },
            IntakeError::Store(e) => e.into(),
        }
    }
}

impl From<crate::planner::PlanError> for ApiError {
    fn from(error: crate::planner::PlanError) -> Self {
        match error {
            crate::planner::PlanError::Intake(e) => e.into(),
            crate::planner::PlanError::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let challenge = match &self {
            Self::Unauthorized(failure) => Some(super::auth::challenge(*failure)),
            _ => None,
        };
        // Whole seconds, rounded up: a client that waits this long finds room.
        let retry_after = match &self {
            Self::TooManyRequests { retry_after, .. } => {
                Some(retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0))
            }
            Self::Unavailable(_) | Self::Overloaded(_) | Self::Timeout(_) => Some(1),
            _ => None,
        };
        match &self {
            Self::Internal(e) => {
                tracing::error!(error.message = %e, error.cause_chain = ?e, "internal error");
            }
            Self::Unavailable(e) => {
                tracing::warn!(error.message = %e, "database unavailable; answered 503");
            }
            Self::Timeout(_) => tracing::warn!("request timed out; answered 503"),
            _ => {}
        }
        if let Self::SetRefused {
            message,
            extra,
            refused,
        } = self
        {
            let body = super::changes::sets::refused_body(message, extra, refused);
            return (status, Json(body)).into_response();
        }
        let body = self.into_body(code);
        let mut response = (status, Json(body)).into_response();
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(challenge),
            );
        }
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds.max(1)),
            );
        }
        response
    }
}
