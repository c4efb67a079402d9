//! Admission control: at most `MAX_CONCURRENT_REQUESTS` API requests at once per process (the
//! next is answered 503 `overloaded` with `Retry-After` at once, never queued), and each of them
//! answered 503 `timeout` once it has run for `REQUEST_TIMEOUT_SECONDS`, its body included.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::error::ApiError;

/// The limits, shared by every request of a process.
#[derive(Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
    max: u32,
    timeout: Duration,
}

impl Admission {
    /// At most `max` requests at once, each answered within `timeout`.
    pub fn new(max: u32, timeout: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
            timeout,
        }
    }
}

/// Serves the request if fewer than the limit are being served, else answers 503 at once.
pub async fn admit(State(admission): State<Admission>, request: Request, next: Next) -> Response {
    match admission.permits.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::Overloaded(admission.max).into_response(),
    }
}

/// Answers 503 `timeout` when the request is not answered within the timeout.
pub async fn deadline(
    State(admission): State<Admission>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(admission.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(admission.timeout).into_response(),
    }
}
