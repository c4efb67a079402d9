//! `spawn_app` and `TestApp`: the real application on port 0 with its own SQLite file.
//!
//! By default the app runs no background workers, so a test drives the queue itself with
//! `run_queued_tasks` and never sleeps; tests of the background loops ask for workers.

use std::sync::Arc;
use std::time::Duration;

use dnsorch::config::Settings;
use dnsorch::domain::RequestStatus;
use dnsorch::startup::Application;
use dnsorch::store::RequestStore;
use dnsorch::worker::{ExecutionOutcome, Worker};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) use crate::client::{client_with, first_run_admin_token};
pub(crate) use crate::settings::test_settings;

/// A running application.
pub(crate) struct TestApp {
    pub(crate) address: String,
    /// A client that sends the first run's admin token.
    pub(crate) client: reqwest::Client,
    pub(crate) store: Arc<dyn RequestStore>,
    pub(crate) worker: Worker,
    pub(crate) app_reconciler: dnsorch::reconciler::Reconciler,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// Keeps the database file alive for the test (and across restarts).
    pub(crate) dir: Arc<TempDir>,
}

/// The app with test settings.
pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The app with test settings changed by `configure`.
pub(crate) async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = Arc::new(TempDir::new().unwrap());
    let mut settings = test_settings(&dir);
    configure(&mut settings);
    spawn_app_on(dir, settings).await
}

/// The app over an existing directory (a restart keeps the database).
pub(crate) async fn spawn_app_on(dir: Arc<TempDir>, settings: Settings) -> TestApp {
    let app = Application::build(settings).await.expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let admin_token =
        first_run_admin_token(dir.path()).expect("the first run wrote dnsorch-admin.token");
    let store = app.store();
    let worker = app.worker();
    let app_reconciler = app.reconciler();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        address,
        client: client_with(&admin_token),
        store,
        worker,
        app_reconciler,
        shutdown,
        server: Some(server),
        dir,
    }
}

impl TestApp {
    pub(crate) async fn post_create(&self, body: &Value) -> reqwest::Response {
        self.post_json("/api/v1/dns/create", body, None).await
    }

    pub(crate) async fn post_create_with_key(&self, body: &Value, key: &str) -> reqwest::Response {
        self.post_json("/api/v1/dns/create", body, Some(key)).await
    }

    async fn post_json(&self, path: &str, body: &Value, key: Option<&str>) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}{path}", self.address))
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("the request is sent")
    }

    /// POSTs raw bytes with a content type.
    pub(crate) async fn post_raw(
        &self,
        body: impl Into<reqwest::Body>,
        content_type: &str,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/dns/create", self.address))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("the request is sent")
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("the request is sent")
    }

    /// `GET /api/v1/dns/requests/{id}` as JSON, asserting 200.
    pub(crate) async fn request(&self, id: &str) -> Value {
        let response = self.get(&format!("/api/v1/dns/requests/{id}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Creates a request and returns its id, asserting 202.
    pub(crate) async fn create(&self, body: &Value) -> String {
        let response = self.post_create(body).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: Value = response.json().await.unwrap();
        body["request_id"].as_str().unwrap().to_owned()
    }

    /// Creates a token over the API as the admin, asserting 201: its id and secret.
    pub(crate) async fn token(&self, body: &Value) -> (String, String) {
        let response = self
            .client
            .post(format!("{}/api/v1/tokens", self.address))
            .json(body)
            .send()
            .await
            .expect("the request is sent");
        assert_eq!(response.status(), StatusCode::CREATED, "token {body}");
        let created: Value = response.json().await.unwrap();
        (
            created["id"].as_str().unwrap().to_owned(),
            created["secret"].as_str().unwrap().to_owned(),
        )
    }

    /// POSTs `body` to `path` with the bearer token `secret`.
    pub(crate) async fn post_as(
        &self,
        secret: &str,
        path: &str,
        body: &Value,
    ) -> reqwest::Response {
        client_with(secret)
            .post(format!("{}{path}", self.address))
            .json(body)
            .send()
            .await
            .expect("the request is sent")
    }

    /// The ledger's records at `domain` as (TTL, target), sorted.
    pub(crate) async fn ledger_at(&self, domain: &str) -> Vec<(u64, String)> {
        let page: Value = self
            .get(&format!("/api/v1/dns/records?domain={domain}&limit=500"))
            .await
            .json()
            .await
            .unwrap();
        let mut rows: Vec<(u64, String)> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let target = r["target"].as_str().unwrap().to_owned();
                (r["ttl"].as_u64().unwrap(), target)
            })
            .collect();
        rows.sort();
        rows
    }

    /// How many requests exist, of every account (as the admin sees them).
    pub(crate) async fn stored_requests(&self) -> usize {
        let response = self.get("/api/v1/dns/requests?limit=500").await;
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap();
        page["items"].as_array().unwrap().len()
    }

    /// Processes due requests until none is left.
    pub(crate) async fn run_queued_tasks(&self) -> Vec<ExecutionOutcome> {
        let mut outcomes = Vec::new();
        loop {
            match self
                .worker
                .try_execute_next()
                .await
                .expect("the worker step runs")
            {
                ExecutionOutcome::Idle => return outcomes,
                outcome => outcomes.push(outcome),
            }
        }
    }

    /// Polls the request until it reaches `status` (for tests of the background workers).
    pub(crate) async fn wait_for_status(&self, id: &str, status: RequestStatus) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let request = self.request(id).await;
            if request["status"] == status.as_str() {
                return request;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "request {id} did not reach {status:?}: {request:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the app as SIGTERM would and waits until it has stopped.
    pub(crate) async fn stop(mut self) -> Arc<TempDir> {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.unwrap().expect("the app stops cleanly");
        }
        self.dir.clone()
    }
}

/// A create body for an A record.
pub(crate) fn a_record(domain: &str, ip: &str) -> Value {
    change("A", domain, ip)
}

/// A body for A records at `domain` with these `targets` and `ttl`, account `acct-1`.
pub(crate) fn a_set(domain: &str, targets: &[&str], ttl: u32) -> Value {
    json!({
        "context": {"account_id": "acct-1"},
        "resource": {"record_type": "A", "domain": domain, "targets": targets,
                     "config": {"ttl": ttl}}
    })
}

/// A create body for any record type, account `acct-1`.
pub(crate) fn change(record_type: &str, domain: &str, target: &str) -> Value {
    json!({
        "context": {"account_id": "acct-1"},
        "resource": {"record_type": record_type, "domain": domain, "target": target}
    })
}

/// The log messages of a request.
pub(crate) fn log_messages(request: &Value) -> Vec<String> {
    request["log_messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["message"].as_str().unwrap().to_owned())
        .collect()
}
