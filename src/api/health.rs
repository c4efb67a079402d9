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
    /// The task channel's kind and `ok` or why not (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_channel: Option<String>,
    /// `ok` or the Kafka client's last error, where this process consumes (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        database: None,
        task_channel: None,
        kafka: None,
    })
}

/// The process can take requests: 200 when the database answers (`degraded` in the body when
/// the task channel does not: intake goes on and workers sweep the database), 503 otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health))
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let (database, channel) = tokio::join!(
        within(READY_TIMEOUT, async {
            state.store.ping().await.map_err(|e| e.to_string())
        }),
        within(READY_TIMEOUT, async {
            state.channel.ping().await.map_err(|e| e.to_string())
        }),
    );
    let kind = state.channel.kind();
    let kafka = kafka_health(&state);
    let (code, status) = match (&database, &channel) {
        (Err(_), _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (Ok(()), Err(_)) => (StatusCode::OK, "degraded"),
        (Ok(()), Ok(())) if matches!(kafka, Some(Err(_))) => (StatusCode::OK, "degraded"),
        (Ok(()), Ok(())) => (StatusCode::OK, "ready"),
    };
    let describe = |r: Result<(), String>| r.map_or_else(|why| why, |()| "ok".to_owned());
    (
        code,
        Json(Health {
            status,
            database: Some(describe(database)),
            task_channel: Some(format!("{kind}: {}", describe(channel))),
            kafka: kafka.map(describe),
        }),
    )
}

/// The Kafka intake's state, where this process consumes.
fn kafka_health(state: &AppState) -> Option<Result<(), String>> {
    #[cfg(feature = "kafka")]
    {
        state
            .kafka
            .as_ref()
            .map(crate::intake::kafka::KafkaHealth::check)
    }
    #[cfg(not(feature = "kafka"))]
    {
        let _ = state;
        None
    }
}

async fn within(
    bound: Duration,
    check: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(bound, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", bound.as_secs())))
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
