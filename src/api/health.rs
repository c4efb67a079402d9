//! `/healthz`, `/readyz` and `/metrics`.
//!
//! Both probes report the supervised loops (workers, reconciler, Kafka intake, SQLite writer):
//! `/readyz` is 503 while any of them is down, `/healthz` while one has failed for good.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::auth::authorize_metrics;
use super::error::{ApiError, ErrorBody};
use crate::domain::RequestStatus;
use crate::store::RequestStore;
use crate::supervise::{Supervisor, TaskReport};

/// How long `/readyz` waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, `ready`, `degraded` or `unavailable`.
    pub status: &'static str,
    /// `ok`, `unavailable` or `no answer within 2s` (readiness only; the cause is logged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The task channel's kind and `ok` or why not (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_channel: Option<String>,
    /// `ok` or the Kafka client's last error, where this process consumes (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<String>,
    /// Each supervised loop of this process: `running`, `restarting` (it panicked) or
    /// `failed` (it panicked and the process is stopping), and its restarts.
    pub tasks: BTreeMap<String, TaskReport>,
}

/// The process is up and its loops are alive: 200 `ok` while every loop runs (`degraded`
/// while one that panicked waits to be restarted), 503 once one has failed for good.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health))
)]
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let supervisor = &state.supervisor;
    let (code, status) = if !supervisor.none_failed() {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    } else if supervisor.all_running() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::OK, "degraded")
    };
    (
        code,
        Json(Health {
            status,
            database: None,
            task_channel: None,
            kafka: None,
            tasks: supervisor.report(),
        }),
    )
}

/// The process can take requests: 200 when the database answers and every supervised loop
/// runs (`degraded` in the body when the task channel does not: intake goes on and workers
/// sweep the database), 503 otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health))
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    // The probe is open to anyone: it says whether each part answers, never the error's
    // text (which may name hosts, users or databases); the log has that.
    let (database, channel) = tokio::join!(
        within(READY_TIMEOUT, async {
            state.store.ping().await.map_err(|e| {
                tracing::warn!(error.message = %e, "readiness: the database does not answer");
                "unavailable".to_owned()
            })
        }),
        within(READY_TIMEOUT, async {
            state.channel.ping().await.map_err(|e| {
                tracing::warn!(error.message = %e, "readiness: the task channel does not answer");
                "unavailable".to_owned()
            })
        }),
    );
    let kind = state.channel.kind();
    let kafka = kafka_health(&state);
    let tasks_running = tasks_running(&state.supervisor);
    let (code, status) = match (&database, &channel) {
        (Err(_), _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (Ok(()), _) if !tasks_running => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
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
            tasks: state.supervisor.report(),
        }),
    )
}

/// Whether every supervised loop runs; logs the ones that do not.
fn tasks_running(supervisor: &Supervisor) -> bool {
    let running = supervisor.all_running();
    if !running {
        tracing::warn!(tasks = ?supervisor.report(), "readiness: a supervised task is down");
    }
    running
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

/// The count of requests by status, taken from the database at most once per
/// `METRICS_STATUS_REFRESH_SECONDS` however often `/metrics` is scraped (scrapes that arrive
/// while it is being taken wait for it).
pub struct StatusCounts {
    every: Duration,
    last: tokio::sync::Mutex<Option<Counted>>,
}

/// One count: when it was taken, and what it found (nothing when the database failed).
struct Counted {
    at: Instant,
    counts: Option<Vec<(RequestStatus, i64)>>,
}

impl StatusCounts {
    /// Counts taken at most once per `every` (zero: at every call).
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The latest count, taken now if the last one is older than the interval; `None` when
    /// the database failed to answer it (the failure is logged, and not retried within the
    /// interval either).
    async fn get(&self, store: &dyn RequestStore) -> Option<Vec<(RequestStatus, i64)>> {
        let mut last = self.last.lock().await;
        if let Some(counted) = last.as_ref().filter(|c| c.at.elapsed() < self.every) {
            return counted.counts.clone();
        }
        let counts = store
            .count_by_status()
            .await
            .map_err(
                |e| tracing::warn!(error.message = %e, "could not count requests for /metrics"),
            )
            .ok();
        *last = Some(Counted {
            at: Instant::now(),
            counts: counts.clone(),
        });
        counts
    }
}

/// Prometheus metrics. Request counts by status and the queue depth are read from the
/// database (at most once per `METRICS_STATUS_REFRESH_SECONDS`), so they are true across
/// processes.
///
/// Needs an admin token or one created with `--metrics`, unless `METRICS_PUBLIC=true`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(("bearer" = []), ()),
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 401, description = "No valid token (and METRICS_PUBLIC is not set)", body = ErrorBody),
        (status = 403, description = "The token is neither admin nor metrics", body = ErrorBody),
    )
)]
pub async fn metrics(
    State(state): State<AppState>,
    extensions: Extensions,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    authorize_metrics(&state, &headers, peer).await?;
    if let Some(counts) = state.status_counts.get(state.store.as_ref()).await {
        for status in RequestStatus::ALL {
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
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response())
}
