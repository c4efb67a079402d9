//! The HTTP API: routes, shared state, the OpenAPI document and cross-cutting layers.
//!
//! Handlers live one concern per file (`changes/post.rs` submits, `changes/get.rs` reads,
//! `records.rs` lists the ledger, `tokens.rs` manages API tokens, `audit.rs` lists the audit
//! log, `health.rs` serves probes and metrics). Every `/api/v1/…` route is behind the token
//! layer (`auth.rs`). Every answer, including errors, 401s, 404s and 405s, is JSON; every
//! request is counted and timed in `/metrics`, by a layer outside the others, so the answers of
//! the concurrency limit (503 `overloaded`), the timeout (503 `timeout`) and a panic (500) are
//! counted too. `admission.rs` holds those two limits; `server.rs` is the HTTP server and
//! `tls.rs` its HTTPS side.

pub mod admission;
pub mod audit;
pub mod auth;
pub mod changes;
pub mod error;
pub mod health;
pub mod json;
pub mod query;
pub mod records;
pub mod rrsets;
pub mod server;
pub mod tls;
pub mod tokens;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::Authenticator;
use crate::domain::Subnet;
use crate::intake::Intake;
use crate::queue::TaskChannel;
use crate::store::{AuditStore, ChangeSetStore, RequestStore};
use crate::telemetry::HttpRequestServed;
use admission::Admission;
use error::ApiError;

/// Who may call: the authenticator and the settings around it.
#[derive(Clone)]
pub struct Access {
    pub auth: Authenticator,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<[Subnet]>,
    /// `/metrics` without a token.
    pub metrics_public: bool,
}

/// What every handler can reach: shared behind one `Arc`, so that the per-request copy each
/// handler and layer takes costs one reference count.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    /// The state over its parts.
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct AppParts {
    pub intake: Intake,
    /// Dry runs (`?dry_run=true`).
    pub planner: crate::planner::Planner,
    pub access: Access,
    pub store: Arc<dyn RequestStore>,
    /// The audit log of token changes and adoptions.
    pub audit: Arc<dyn AuditStore>,
    /// Change sets (`/api/v1/dns/changes`).
    pub sets: Arc<dyn ChangeSetStore>,
    pub channel: Arc<dyn TaskChannel>,
    /// The Kafka intake's health, in processes that consume.
    #[cfg(feature = "kafka")]
    pub kafka: Option<crate::intake::kafka::KafkaHealth>,
    pub metrics: PrometheusHandle,
    /// The count of requests by status that `/metrics` reports, refreshed at most so often.
    pub status_counts: health::StatusCounts,
    /// The largest body read (`MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// The limits of a change set (`MAX_CHANGE_SET_BYTES`, `MAX_CHANGE_SET_ITEMS`).
    pub change_sets: changes::sets::SetLimits,
    /// The supervised loops, for `/healthz` and `/readyz`.
    pub supervisor: crate::supervise::Supervisor,
}

/// The OpenAPI document served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "dnsorch", description = "DNS change-request orchestrator"),
    paths(
        changes::post::create,
        changes::post::delete,
        changes::post::replace,
        changes::post::adopt,
        changes::get::get_request,
        changes::get::list_requests,
        changes::revert::revert,
        changes::sets::submit,
        changes::sets::get_set,
        changes::sets::list_sets,
        records::list_records,
        rrsets::history,
        tokens::create_token,
        tokens::list_tokens,
        tokens::get_token,
        tokens::rotate_token,
        tokens::revoke_token,
        audit::list_audit,
        health::healthz,
        health::readyz,
        health::metrics,
    ),
    tags(
        (name = "requests", description = "Submit change requests and follow them"),
        (name = "records", description = "The ledger of provisioned records"),
        (name = "tokens", description = "API tokens (admins only)"),
        (name = "audit", description = "Who changed tokens and ownership, and when (admins only)"),
        (name = "operations", description = "Probes and metrics"),
    ),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme that every `/api/v1/…` operation names.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("dnsorch_…")
            .description(Some(
                "An API token: `dnsorch token create …`, or `dnsorch-admin.token` after the first `dnsorch run`",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The application's router. Layers, from the outside in: sensitive headers, trace, metrics,
/// panics (500), then, for every route but the operations endpoints, the concurrency limit
/// (503 `overloaded`) and the request timeout (503 `timeout`), and the body limit.
pub fn router(state: AppState, admission: Admission) -> Router {
    // Token management and the audit log are for admins: refused before a body is even read.
    let admin = Router::new()
        .route(
            "/api/v1/tokens",
            post(tokens::create_token).get(tokens::list_tokens),
        )
        .route(
            "/api/v1/tokens/{id}",
            get(tokens::get_token).delete(tokens::revoke_token),
        )
        .route("/api/v1/tokens/{id}/rotate", post(tokens::rotate_token))
        .route("/api/v1/audit", get(audit::list_audit))
        .route("/api/v1/dns/adopt", post(changes::post::adopt))
        .route_layer(middleware::from_fn(auth::require_admin));
    let protected = Router::new()
        .route("/api/v1/dns/create", post(changes::post::create))
        .route("/api/v1/dns/delete", post(changes::post::delete))
        .route("/api/v1/dns/replace", post(changes::post::replace))
        // A change set's body may be larger than the others (MAX_CHANGE_SET_BYTES): the
        // route's own limit, inside the router's.
        .route(
            "/api/v1/dns/changes",
            post(changes::sets::submit)
                .layer(DefaultBodyLimit::max(state.change_sets.max_bytes))
                .get(changes::sets::list_sets),
        )
        .route("/api/v1/dns/changes/{id}", get(changes::sets::get_set))
        .route("/api/v1/dns/requests", get(changes::get::list_requests))
        .route("/api/v1/dns/requests/{id}", get(changes::get::get_request))
        .route(
            "/api/v1/dns/requests/{id}/revert",
            post(changes::revert::revert),
        )
        .route("/api/v1/dns/records", get(records::list_records))
        .route(
            "/api/v1/dns/rrsets/{name}/{type}/history",
            get(rrsets::history),
        )
        .merge(admin)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .with_state(state.clone());
    let max_body_bytes = state.max_body_bytes;
    // Probes and metrics stay outside the concurrency limit: an overloaded process still says
    // that it is alive, and its metrics show the 503s.
    let limited = Router::new()
        .merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .merge(protected)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            admission.clone(),
            admission::deadline,
        ))
        .layer(middleware::from_fn_with_state(admission, admission::admit));
    let operations = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .with_state(state);
    Router::new()
        .merge(limited)
        .merge(operations)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal(anyhow::anyhow!("a handler panicked")).into_response()
        }))
        .layer(middleware::from_fn(track_http))
        .layer(TraceLayer::new_for_http())
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]))
}

/// The operations endpoints alone (`/healthz`, `/readyz`, `/metrics`), for `dnsorch consume`.
pub fn operations_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .with_state(state)
        .fallback(not_found)
        .layer(middleware::from_fn(track_http))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Counts and times every request by method, route template and status.
async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    HttpRequestServed {
        method,
        route,
        status: response.status().as_u16(),
        duration: started.elapsed(),
    }
    .emit();
    response
}
