//! `/api/v1/dns/create`, `/delete`, `/replace`, `/adopt`, `/api/v1/dns/requests` and a
//! request's `/revert`: submitting change requests, reading them and reverting them;
//! `/api/v1/dns/changes`: change sets.

pub mod get;
pub mod post;
pub mod revert;
pub mod sets;

use axum::http::HeaderValue;

use crate::domain::RequestId;

/// The URL of a request's status.
pub fn location_of(id: RequestId) -> HeaderValue {
    HeaderValue::from_str(&format!("/api/v1/dns/requests/{id}"))
        .expect("a UUID path is a valid header value")
}
