//! `/api/v1/dns/create`, `/api/v1/dns/delete` and `/api/v1/dns/requests`: submitting change requests and reading them.

pub mod get;
pub mod post;

use axum::http::HeaderValue;

use crate::domain::RequestId;

/// The URL of a request's status.
pub fn location_of(id: RequestId) -> HeaderValue {
    HeaderValue::from_str(&format!("/api/v1/dns/requests/{id}"))
        .expect("a UUID path is a valid header value")
}
