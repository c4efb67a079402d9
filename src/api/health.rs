//! `/healthz`, `/readyz` and `/metrics`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;

use super::AppState;
use crate::domain::RequestStatus;

/// How long `/readyz` waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, `ready`, `degraded` or `unavailable`.
    pub status: &'static str,
    /// `ok` or why not (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        database: None,
    })
}

/// The process can take requests: 200 when the database answers, 503 otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health))
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", READY_TIMEOUT.as_secs())),
    };
    let (code, status, database) = match database {
        Ok(()) => (StatusCode::OK, "ready", "ok".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", why),
    };
    (
        code,
        Json(Health {
            status,
            database: Some(database),
        }),
    )
}

/// Prometheus metrics. Request counts by status and the queue depth are read from the
/// database at each scrape, so they are true across processes.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.count_by_status().await {
        Ok(counts) => {
            for status in [
                RequestStatus::Pending,
                RequestStatus::Processing,
                RequestStatus::Completed,
                RequestStatus::Failed,
            ] {
                let n = counts
                    .iter()
                    .find_map(|(s, n)| (*s == status).then_some(*n))
                    .unwrap_or(0);
                metrics::gauge!("dnsorch_requests", "status" => status.as_str()).set(n as f64);
                if status == RequestStatus::Pending {
                    metrics::gauge!("dnsorch_queue_depth").set(n as f64);
                }
            }
        }
        Err(e) => tracing::warn!(error.message = %e, "could not count requests for /metrics"),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
