//! `dnsorch webhook`: the external-dns webhook provider.
//!
//! external-dns (the Kubernetes controller) asks a provider over HTTP what records exist and
//! sends it the changes it wants. This role answers on `WEBHOOK_ADDR` (127.0.0.1:8888, a
//! sidecar's loopback: it must never be exposed beyond the pod or host) under one token
//! (`WEBHOOK_TOKEN_FILE`, or `WEBHOOK_TOKEN`), and records every change through the same
//! intake as the API (validation, policies, ownership, rate limit, then the database; workers
//! elsewhere apply them). It runs no workers. Every answer carries external-dns's media type.
//!
//! external-dns retries a 5xx at its next sync and exits on any other non-2xx. So anything
//! transient (the database, the rate limit) is a 503, and a change dnsorch refuses
//! (validation, policy, ownership) is answered 204 and recorded once as a FAILED request
//! under a key derived from the token and the change: the sync that repeats it every minute
//! finds that request instead of adding rows (`dnsorch_webhook_refused_total{reason}`). This
//! is the one place dnsorch stores a refusal.

pub mod endpoint;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};

use self::endpoint::{Changes, DomainFilter, Endpoint, MEDIA_TYPE};
use crate::auth::{AuthError, Authenticator};
use crate::domain::{
    Actor, Operation, Permission, Principal, RecordData, RecordType, RequestStatus, Secret, Source,
    Submitter,
};
use crate::intake::{Intake, IntakeError, Submission};
use crate::store::{RecordFilter, Refusal, RequestFilter, RequestStore, StoreError};
use crate::telemetry::WebhookRefused;
use crate::zones::Zones;

/// A page of the lists `GET /records` reads.
const PAGE: u32 = 500;

/// The provider: the token it acts under and what it records through.
pub struct Webhook {
    secret: Secret,
    auth: Authenticator,
    intake: Intake,
    store: Arc<dyn RequestStore>,
    filter: DomainFilter,
}

impl Webhook {
    /// The provider for the token `secret`, checked now: it must be valid and may change
    /// something (external-dns reads an empty domain filter as every name).
    ///
    /// # Errors
    /// The token is not valid, or its filter would be empty.
    pub async fn new(
        secret: Secret,
        auth: Authenticator,
        intake: Intake,
        store: Arc<dyn RequestStore>,
        zones: &Zones,
    ) -> anyhow::Result<Self> {
        let principal = auth.authenticate(&secret, None).await.map_err(|e| {
            anyhow::anyhow!("the webhook's token (WEBHOOK_TOKEN_FILE) is not usable: {e}")
        })?;
        let filter = domain_filter(&principal, zones);
        if filter.include.is_empty() {
            anyhow::bail!(
                "the webhook's token ({}) may change no name: external-dns reads an empty domain filter as every name, so the webhook refuses to start; give the token a policy with create or delete",
                principal.name
            );
        }
        tracing::info!(token_name = %principal.name, account_id = %principal.account_id, include = ?filter.include, "external-dns webhook ready");
        Ok(Self {
            secret,
            auth,
            intake,
            store,
            filter,
        })
    }

    /// The token's principal now (revoked or expired since the start: a 401, on which
    /// external-dns stops; the database away: a 503).
    async fn principal(&self) -> Result<Principal, Response> {
        self.auth
            .authenticate(&self.secret, None)
            .await
            .map_err(|e| match e {
                AuthError::Store(_) => answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &error_body("the database is unavailable"),
                ),
                AuthError::Refused(failure) => answer(
                    StatusCode::UNAUTHORIZED,
                    &error_body(&format!("the webhook's token is not valid: {failure:?}")),
                ),
            })
    }
}

/// The provider's routes, on `WEBHOOK_ADDR`.
pub fn router(webhook: Arc<Webhook>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/", get(negotiate))
        .route("/records", get(records).post(apply))
        .route("/adjustendpoints", post(adjust_endpoints))
        .fallback(|| async { answer(StatusCode::NOT_FOUND, &error_body("no such endpoint")) })
        .method_not_allowed_fallback(|| async {
            answer(
                StatusCode::METHOD_NOT_ALLOWED,
                &error_body("method not allowed"),
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(webhook)
}

/// The names the token may change: its policies' suffixes with create or delete (an admin's:
/// every configured zone).
fn domain_filter(principal: &Principal, zones: &Zones) -> DomainFilter {
    let mut include: Vec<String> = if principal.admin {
        zones.iter().map(|z| z.name.clone()).collect()
    } else {
        principal
            .policies
            .iter()
            .filter(|p| {
                p.permissions
                    .iter()
                    .any(|perm| matches!(perm, Permission::Create | Permission::Delete))
            })
            .map(|p| p.suffix.clone())
            .collect()
    };
    include.sort();
    include.dedup();
    DomainFilter {
        include,
        exclude: Vec::new(),
    }
}

/// An answer with external-dns's media type.
fn answer<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).expect("plain data serialises");
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE))],
        bytes,
    )
        .into_response()
}

fn no_content() -> Response {
    (
        StatusCode::NO_CONTENT,
        [(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE))],
    )
        .into_response()
}

fn error_body(message: &str) -> serde_json::Value {
    serde_json::json!({ "error": message })
}

fn unavailable(e: &StoreError) -> Response {
    tracing::warn!(error.message = %e, "the database is unavailable; answered 503 to external-dns");
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        &error_body("the database is unavailable; retry"),
    )
}

/// `GET /`: negotiation; the domain filter.
async fn negotiate(State(webhook): State<Arc<Webhook>>) -> Response {
    answer(StatusCode::OK, &webhook.filter)
}

/// `POST /adjustendpoints`: the endpoints as `GET /records` will show them.
async fn adjust_endpoints(body: Bytes) -> Response {
    match serde_json::from_slice::<Vec<Endpoint>>(&body) {
        Ok(endpoints) => answer(StatusCode::OK, &endpoint::adjust(endpoints)),
        Err(e) => answer(
            StatusCode::BAD_REQUEST,
            &error_body(&format!("not a list of endpoints: {e}")),
        ),
    }
}

/// `GET /records`: the account's RRsets: its ledger, with its unfinished requests applied in
/// order (pending creates shown, pending deletes hidden).
async fn records(State(webhook): State<Arc<Webhook>>) -> Response {
    let principal = match webhook.principal().await {
        Ok(p) => p,
        Err(response) => return response,
    };
    match endpoints_of(webhook.store.as_ref(), &principal.account_id).await {
        Ok(endpoints) => answer(StatusCode::OK, &endpoints),
        Err(e) => unavailable(&e),
    }
}

/// The account's RRsets as endpoints.
async fn endpoints_of(
    store: &dyn RequestStore,
    account: &str,
) -> Result<Vec<Endpoint>, StoreError> {
    // By name and type (its text: types have no order of their own).
    let mut rrsets: BTreeMap<(String, &'static str), (RecordType, u32, Vec<RecordData>)> =
        BTreeMap::new();
    let mut before = None;
    loop {
        let filter = RecordFilter {
            account_id: Some(account.to_owned()),
            before,
            limit: PAGE,
            ..Default::default()
        };
        let page = store.list_records(&filter).await?;
        for row in &page {
            let entry = rrsets
                .entry((row.domain.clone(), row.record_type.as_str()))
                .or_insert((row.record_type, row.ttl, Vec::new()));
            entry.2.push(row.data.clone());
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => before = Some(last.seq),
            _ => break,
        }
    }
    let mut unfinished = Vec::new();
    for status in [
        RequestStatus::Pending,
        RequestStatus::Processing,
        RequestStatus::Unknown,
    ] {
        let mut before = None;
        loop {
            let filter = RequestFilter {
                status: Some(status),
                account_id: Some(account.to_owned()),
                before,
                limit: PAGE,
                ..Default::default()
            };
            let page = store.list(&filter).await?;
            let full = page.len() == PAGE as usize;
            before = page.last().map(|r| r.seq);
            unfinished.extend(page);
            if !full {
                break;
            }
        }
    }
    unfinished.sort_by_key(|r| r.seq);
    for request in &unfinished {
        let key = (request.domain.clone(), request.record_type.as_str());
        let (_, ttl, records) =
            rrsets
                .entry(key)
                .or_insert((request.record_type, request.config.ttl, Vec::new()));
        match request.operation {
            Operation::Create => {
                *ttl = request.config.ttl;
                for record in &request.records {
                    if !records.contains(record) {
                        records.push(record.clone());
                    }
                }
            }
            Operation::Replace => {
                *ttl = request.config.ttl;
                records.clone_from(&request.records);
            }
            Operation::Delete if request.records.is_empty() => records.clear(),
            Operation::Delete => records.retain(|r| !request.records.contains(r)),
            Operation::Adopt => {}
        }
    }
    Ok(rrsets
        .into_iter()
        .filter(|(_, (_, _, records))| !records.is_empty())
        .map(|((domain, _), (record_type, ttl, records))| {
            endpoint::endpoint_of(&domain, record_type, ttl, &records)
        })
        .collect())
}

/// `POST /records`: every change recorded (204), a refused one recorded once as FAILED (204),
/// anything transient a 503 (external-dns sends the batch again at its next sync).
async fn apply(State(webhook): State<Arc<Webhook>>, body: Bytes) -> Response {
    let changes: Changes = match serde_json::from_slice(&body) {
        Ok(changes) => changes,
        Err(e) => {
            return answer(
                StatusCode::BAD_REQUEST,
                &error_body(&format!("not a Changes object: {e}")),
            );
        }
    };
    let principal = match webhook.principal().await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let actor = Actor {
        principal,
        source: Source::Webhook,
        client_addr: None,
    };
    let mut submitted = Vec::new();
    let mut submissions = Vec::new();
    for (operation, endpoint) in changes.operations() {
        let Some(record_type) = endpoint::record_type(endpoint) else {
            tracing::warn!(dns_name = %crate::telemetry::Escaped(&endpoint.dns_name), record_type = %crate::telemetry::Escaped(&endpoint.record_type), "external-dns sent a record type dnsorch does not manage; ignored");
            WebhookRefused {
                reason: "unsupported_type",
            }
            .emit();
            continue;
        };
        submissions.push(Submission {
            actor: actor.clone(),
            body: endpoint::change_body(endpoint),
            operation,
            idempotency_key: None,
            set: None,
        });
        submitted.push((operation, record_type, endpoint));
    }
    let answers = match webhook.intake.submit_batch(submissions).await {
        Ok(answers) => answers,
        Err(e) => return unavailable(&e),
    };
    let mut transient = None;
    for ((operation, record_type, endpoint), answer) in submitted.into_iter().zip(answers) {
        let (reason, why) = match answer {
            Ok(_) => continue,
            Err(IntakeError::Invalid(e)) => ("invalid", e.to_string()),
            Err(IntakeError::Forbidden(why)) => ("forbidden", why),
            Err(IntakeError::KeyReused(id)) => ("invalid", format!("conflicts with request {id}")),
            Err(IntakeError::RateLimited { message, .. }) => {
                transient = Some(message);
                continue;
            }
            Err(IntakeError::Store(e)) if e.is_unavailable() => return unavailable(&e),
            Err(IntakeError::Store(e)) => ("invalid", e.to_string()),
        };
        WebhookRefused { reason }.emit();
        let refusal = Refusal {
            account_id: actor.principal.account_id.clone(),
            source: Source::Webhook.as_str().to_owned(),
            operation,
            record_type,
            domain: endpoint.dns_name.clone(),
            reason: format!(
                "{why} (external-dns {} of {} {} {:?})",
                operation.as_str(),
                endpoint.dns_name,
                endpoint.record_type,
                endpoint.targets
            ),
            idempotency_key: refusal_key(&actor.principal, operation, endpoint),
            submitter: Submitter::of(&actor),
        };
        match webhook.store.record_refusal(&refusal).await {
            Ok(true) => {
                tracing::warn!(dns_name = %crate::telemetry::Escaped(&endpoint.dns_name), reason, "refused a change from external-dns; recorded FAILED")
            }
            Ok(false) => {}
            Err(e) if e.is_unavailable() => return unavailable(&e),
            Err(e) => tracing::error!(error.message = %e, "could not record a refused change"),
        }
    }
    match transient {
        Some(why) => answer(StatusCode::SERVICE_UNAVAILABLE, &error_body(&why)),
        None => no_content(),
    }
}

/// The key a refused change is recorded under: the token and the change, so external-dns's
/// next sync sending it again finds the same request.
fn refusal_key(principal: &Principal, operation: Operation, endpoint: &Endpoint) -> String {
    let canonical = serde_json::json!({
        "token": principal.token_id.map(|t| t.to_string()),
        "operation": operation.as_str(),
        "dnsName": endpoint.dns_name,
        "recordType": endpoint.record_type,
        "targets": endpoint.targets,
        "recordTTL": endpoint.record_ttl,
    });
    let digest = crate::domain::token::hex(&Sha256::digest(canonical.to_string().as_bytes()));
    format!("webhook:{}", &digest[..40])
}
