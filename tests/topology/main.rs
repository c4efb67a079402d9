//! The production topology with real processes: `dnsorch migrate`, `serve` and `worker`
//! against a real PostgreSQL and Redis, and the faults they must survive: a worker killed
//! with SIGKILL, Redis stopped, PostgreSQL stopped. Clients send an admin token made with
//! `dnsorch token create` after the migration; a token revoked or rotated through one
//! `serve` stops working at another within `TOKEN_CACHE_SECONDS`, and `serve` and `worker`
//! start side by side with one environment (the worker listens on `OPS_ADDR`).

// The processes here are `serve`, never a first `run`: no admin token file to read.
#[allow(dead_code)]
#[path = "../support/client.rs"]
mod client;
mod servers;
#[path = "../support/postgres.rs"]
mod support;
mod tls;

use client::client_with;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use servers::{
    Dnsorch, PrivatePostgres, PrivateRedis, free_port, shared_postgres_database, shared_redis_url,
};
use sqlx::PgPool;
use tempfile::TempDir;

/// A topology: the settings every process gets, the API's address, and an admin token made
/// with `dnsorch token create` after the migration.
struct Topology {
    dir: TempDir,
    env: Vec<(&'static str, String)>,
    api: String,
    /// Sends the admin token.
    client: reqwest::Client,
    admin_token: String,
    db: PgPool,
}

/// The API's base URL in `env` (its `BIND_ADDR`).
fn api_of(env: &[(&'static str, String)]) -> String {
    let (_, address) = env.iter().find(|(k, _)| *k == "BIND_ADDR").unwrap();
    format!("http://{address}")
}

/// `env` with `key` set to `value`.
fn with(
    env: &[(&'static str, String)],
    key: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    let mut env: Vec<_> = env.iter().filter(|(k, _)| *k != key).cloned().collect();
    env.push((key, value.to_owned()));
    env
}

impl Topology {
    async fn new(database_url: String, broker_url: Option<String>) -> Self {
        let port = free_port();
        let mut env = vec![
            ("DATABASE_URL", database_url.clone()),
            (
                "TASK_STREAM",
                format!("tasks_{}", uuid::Uuid::new_v4().simple()),
            ),
            ("BIND_ADDR", format!("127.0.0.1:{port}")),
            ("SIMULATED_DELAY_SECONDS", "0".into()),
            ("LOG_LEVEL", "info".into()),
            ("LEASE_SECONDS", "3".into()),
            ("RECONCILE_INTERVAL_SECONDS", "0.2".into()),
            ("POLL_INTERVAL_SECONDS", "0.2".into()),
            ("RETRY_BASE_SECONDS", "0.1".into()),
            ("RETRY_MAX_SECONDS", "0.5".into()),
            ("REQUEUE_AFTER_SECONDS", "2".into()),
            ("SCHEMA_WAIT_SECONDS", "30".into()),
            ("DB_ACQUIRE_TIMEOUT_SECONDS", "1".into()),
            // No zones file: every name goes to the simulated backend.
            ("ALLOW_SIMULATED", "true".into()),
        ];
        if let Some(url) = broker_url {
            env.push(("CELERY_BROKER_URL", url));
        }
        let dir = TempDir::new().unwrap();
        assert!(
            Dnsorch::run_to_end(dir.path(), &["migrate"], &env),
            "migrate failed"
        );
        // On PostgreSQL no process makes a first admin token: the operator does, as here.
        let admin_token = Dnsorch::create_token(
            dir.path(),
            &env,
            &["--account", "admin", "--name", "topology-admin", "--admin"],
        );
        let db = PgPool::connect(&database_url).await.unwrap();
        Self {
            dir,
            env,
            api: format!("http://127.0.0.1:{port}"),
            client: client_with(&admin_token),
            admin_token,
            db,
        }
    }

    fn with(&self, key: &'static str, value: &str) -> Vec<(&'static str, String)> {
        with(&self.env, key, value)
    }

    async fn serve(&self) -> Dnsorch {
        self.serve_with(&self.env).await
    }

    /// A `serve` process with `env`; returns once its `/healthz` (on its `BIND_ADDR`) answers.
    async fn serve_with(&self, env: &[(&'static str, String)]) -> Dnsorch {
        let api = api_of(env);
        let process = Dnsorch::spawn(self.dir.path(), &["serve"], env);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self.client.get(format!("{api}/healthz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return process;
            }
            assert!(
                Instant::now() < deadline,
                "serve not up: {}",
                std::fs::read_to_string(&process.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A worker process with `env` as it is: its health and metrics listener is on
    /// `OPS_ADDR` (by default any free port), never on `BIND_ADDR`.
    fn worker(&self, env: &[(&'static str, String)], concurrency: u16) -> Dnsorch {
        let concurrency = concurrency.to_string();
        Dnsorch::spawn(
            self.dir.path(),
            &["worker", "--concurrency", &concurrency],
            env,
        )
    }

    async fn post(&self, domain: &str) -> reqwest::Result<reqwest::Response> {
        let body = json!({
            "context": {"account_id": "acct-1"},
            "resource": {"record_type": "A", "domain": domain, "target": "192.0.2.80"}
        });
        self.client
            .post(format!("{}/api/v1/dns/create", self.api))
            .json(&body)
            .send()
            .await
    }

    async fn post_accepted(&self, domain: &str) -> String {
        let response = self.post(domain).await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: Value = response.json().await.unwrap();
        body["request_id"].as_str().unwrap().to_owned()
    }

    /// Creates a token for `account` through the API at `api` (with the admin token): its id
    /// and secret. Its policies let it read, create and delete under `example.test` and
    /// `other.test` (a token without policies may change nothing; a grant that lists no types
    /// never covers a zone's apex, NS, CAA or `_acme-challenge` names).
    async fn create_token_at(&self, api: &str, account: &str, name: &str) -> (String, String) {
        let all = ["read", "create", "delete"];
        let policies = json!([
            {"suffix": "example.test", "permissions": all},
            {"suffix": "other.test", "permissions": all},
        ]);
        let response = self
            .client
            .post(format!("{api}/api/v1/tokens"))
            .json(&json!({"account": account, "name": name, "policies": policies}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let token: Value = response.json().await.unwrap();
        (
            token["id"].as_str().unwrap().to_owned(),
            token["secret"].as_str().unwrap().to_owned(),
        )
    }

    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.db).await.unwrap()
    }

    async fn wait_for_completed(&self, expected: i64, bound: Duration) {
        let deadline = Instant::now() + bound;
        loop {
            let done = self
                .count("select count(*) from dns_requests where status = 'COMPLETED'")
                .await;
            if done == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{done} of {expected} COMPLETED after {bound:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn readyz(&self) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}/readyz", self.api))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }
}

#[tokio::test]
async fn two_worker_processes_complete_1000_requests_with_one_attempt_each() {
    // Arrange
    let topology = Topology::new(shared_postgres_database().await, Some(shared_redis_url())).await;
    let _api = topology.serve().await;
    let _a = topology.worker(&topology.env, 8);
    let _b = topology.worker(&topology.env, 8);

    // Act: 1,000 requests, 32 at a time.
    let domains: Vec<String> = (0..1000).map(|i| format!("h{i}.example.test")).collect();
    for chunk in domains.chunks(32) {
        let posts = chunk.iter().map(|d| topology.post_accepted(d));
        futures::future::join_all(posts).await;
    }
    topology
        .wait_for_completed(1000, Duration::from_secs(120))
        .await;

    // Assert
    assert_eq!(
        topology
            .count("select count(*) from dns_requests where attempts <> 1")
            .await,
        0
    );
    let one_provisioning_each = topology
        .count(
            "select count(*) from dns_requests where (select count(*) from jsonb_array_elements(log_messages) e \
             where e->>'message' like 'provisioning started%') = 1",
        )
        .await;
    assert_eq!(one_provisioning_each, 1000);
    assert_eq!(
        topology.count("select count(*) from dns_records").await,
        1000
    );
    assert_eq!(
        topology
            .count("select count(distinct request_id) from dns_records")
            .await,
        1000
    );
}

#[tokio::test]
async fn a_worker_killed_while_holding_claims_is_taken_over_after_its_lease() {
    // Arrange: a slow worker claims five requests.
    let topology = Topology::new(shared_postgres_database().await, Some(shared_redis_url())).await;
    let _api = topology.serve().await;
    let mut doomed = topology.worker(&topology.with("SIMULATED_DELAY_SECONDS", "60"), 5);
    for i in 0..5 {
        topology.post_accepted(&format!("k{i}.example.test")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while topology
        .count("select count(*) from dns_requests where status = 'PROCESSING'")
        .await
        < 5
    {
        assert!(
            Instant::now() < deadline,
            "the first worker never claimed all five"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Act: SIGKILL, then a healthy worker.
    doomed.kill_hard();
    let _healthy = topology.worker(&topology.env, 4);
    topology
        .wait_for_completed(5, Duration::from_secs(60))
        .await;

    // Assert
    assert_eq!(
        topology
            .count("select count(*) from dns_requests where status <> 'COMPLETED'")
            .await,
        0
    );
    assert_eq!(
        topology
            .count("select count(*) from dns_requests where attempts <> 2")
            .await,
        0
    );
    assert_eq!(topology.count("select count(*) from dns_records").await, 5);
    assert_eq!(
        topology
            .count("select count(distinct request_id) from dns_records")
            .await,
        5
    );
}

#[tokio::test]
async fn requests_accepted_while_redis_is_down_all_complete_once_it_is_back() {
    // Arrange
    let mut redis = PrivateRedis::start();
    let topology = Topology::new(shared_postgres_database().await, Some(redis.url())).await;
    let _api = topology.serve().await;
    let _worker = topology.worker(&topology.env, 4);
    topology.post_accepted("before.example.test").await;
    topology
        .wait_for_completed(1, Duration::from_secs(30))
        .await;

    // Act: Redis goes away while clients keep submitting.
    redis.stop();
    let mut accepted = Vec::new();
    for i in 0..20 {
        accepted.push(topology.post_accepted(&format!("d{i}.example.test")).await);
    }
    let (status, degraded) = topology.readyz().await;
    redis.start_again();

    // Assert: accepted while down, reported as degraded, and all done with Redis back,
    // without restarting any dnsorch process.
    assert_eq!(accepted.len(), 20);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(degraded["status"], "degraded", "{degraded}");
    topology
        .wait_for_completed(21, Duration::from_secs(60))
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while topology.readyz().await.1["status"] != "ready" {
        assert!(Instant::now() < deadline, "readiness never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(topology.count("select count(*) from dns_records").await, 21);
}

#[tokio::test]
async fn with_postgresql_down_the_api_answers_503_fast_and_recovers_by_itself() {
    // Arrange
    let mut postgres = PrivatePostgres::start();
    let topology = Topology::new(postgres.database().await, Some(shared_redis_url())).await;
    let _api = topology.serve().await;
    let _worker = topology.worker(&topology.env, 4);
    let before = topology.post_accepted("before.example.test").await;
    topology.db.close().await;

    // Act
    postgres.stop();
    let started = Instant::now();
    let refused = topology.post("during.example.test").await.unwrap();
    let took = started.elapsed();
    let refused_status = refused.status();
    let refused_body: Value = refused.json().await.unwrap();
    let (ready_status, _) = topology.readyz().await;
    postgres.start_again();

    // Assert: a quick JSON 503 while down; then intake and the accepted request recover.
    assert_eq!(refused_status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused_body["error"], "unavailable");
    assert!(took < Duration::from_secs(2), "the 503 took {took:?}");
    assert_eq!(ready_status, StatusCode::SERVICE_UNAVAILABLE);
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        match topology.post("after.example.test").await {
            Ok(r) if r.status() == StatusCode::ACCEPTED => break r.json::<Value>().await.unwrap(),
            _ => {}
        }
        assert!(Instant::now() < deadline, "the API never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(after["request_id"].is_string());
    assert_eq!(topology.readyz().await.0, StatusCode::OK);
    let db = PgPool::connect(&topology.env[0].1).await.unwrap();
    let reopened = Topology { db, ..topology };
    reopened
        .wait_for_completed(2, Duration::from_secs(60))
        .await;
    let status: String = sqlx::query_scalar("select status from dns_requests where id = $1::uuid")
        .bind(&before)
        .fetch_one(&reopened.db)
        .await
        .unwrap();
    assert_eq!(status, "COMPLETED");
}

#[tokio::test]
async fn serve_and_worker_without_redis_share_work_through_postgresql() {
    // Arrange
    let topology = Topology::new(shared_postgres_database().await, None).await;
    let _api = topology.serve().await;
    let _worker = topology.worker(&topology.env, 4);

    // Act
    for i in 0..10 {
        topology.post_accepted(&format!("n{i}.example.test")).await;
    }

    // Assert
    topology
        .wait_for_completed(10, Duration::from_secs(30))
        .await;
    let (_, ready) = topology.readyz().await;
    assert_eq!(ready["task_channel"], "database: ok");
}

#[tokio::test]
async fn serve_waits_for_the_schema_and_starts_once_migrate_has_run() {
    // Arrange: a database with no schema yet.
    let database_url = shared_postgres_database().await;
    let dir = TempDir::new().unwrap();
    let port = free_port();
    let env = vec![
        ("DATABASE_URL", database_url),
        ("BIND_ADDR", format!("127.0.0.1:{port}")),
        ("SCHEMA_WAIT_SECONDS", "30".into()),
        ("ALLOW_SIMULATED", "true".into()),
    ];
    let _api = Dnsorch::spawn(dir.path(), &["serve"], &env);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = client::plain_client();
    let early = client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;

    // Act: three migrations at once, as several processes starting together would.
    let migrations = (0..3).map(|_| {
        let (dir, env) = (dir.path().to_owned(), env.clone());
        std::thread::spawn(move || Dnsorch::run_to_end(&dir, &["migrate"], &env))
    });
    let migrated: Vec<bool> = migrations.map(|m| m.join().unwrap()).collect();

    // Assert
    assert!(
        early.is_err(),
        "serve must not listen before the schema exists"
    );
    assert_eq!(migrated, [true, true, true]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "serve never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn three_migrate_processes_started_at_once_all_exit_zero_and_apply_each_migration_once() {
    // Arrange: a fresh database, as a compose deploy with several migrating replicas meets it.
    let database_url = shared_postgres_database().await;
    let dir = TempDir::new().unwrap();
    let env = vec![
        ("DATABASE_URL", database_url.clone()),
        ("SCHEMA_WAIT_SECONDS", "30".into()),
    ];

    // Act: all three are started before any is waited for.
    let mut processes: Vec<Dnsorch> = (0..3)
        .map(|_| Dnsorch::spawn(dir.path(), &["migrate"], &env))
        .collect();
    let statuses: Vec<_> = processes.iter_mut().map(Dnsorch::wait).collect();

    // Assert
    for (process, status) in processes.iter().zip(&statuses) {
        assert!(
            status.success(),
            "migrate exited {status}: {}",
            std::fs::read_to_string(&process.log).unwrap_or_default()
        );
    }
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("sql".as_ref()))
        .count() as i64;
    let db = PgPool::connect(&database_url).await.unwrap();
    let (applied, distinct, failed): (i64, i64, i64) = sqlx::query_as(
        "select count(*), count(distinct version), count(*) filter (where not success) \
         from _sqlx_migrations",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((applied, distinct, failed), (migrations, migrations, 0));
    let tables: Vec<String> = sqlx::query_scalar(
        "select table_name::text from information_schema.tables \
         where table_schema = 'public' and table_name in ('dns_requests', 'dns_records') \
         order by table_name",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(tables, ["dns_records", "dns_requests"]);
}

#[test]
fn serve_and_worker_refuse_a_sqlite_database() {
    let dir = TempDir::new().unwrap();
    let env = [("DATABASE_URL", "sqlite://x.db?mode=rwc".to_owned())];
    for role in ["serve", "worker"] {
        let mut process = Dnsorch::spawn(dir.path(), &[role], &env);
        let status = process.wait();
        let log = std::fs::read_to_string(&process.log).unwrap();
        assert!(!status.success(), "{role} started on SQLite");
        assert!(
            log.contains("only the all-in-one `dnsorch run`"),
            "{role}: {log}"
        );
    }
}

#[tokio::test]
async fn serve_worker_and_migrate_run_on_a_schema_newer_than_theirs() {
    // Arrange: a later release has applied a migration this binary does not know.
    let topology = Topology::new(shared_postgres_database().await, Some(shared_redis_url())).await;
    sqlx::query(
        "insert into _sqlx_migrations (version, description, success, checksum, execution_time) \
         values (99991231000000, 'from a newer release', true, '\\x00', 0)",
    )
    .execute(&topology.db)
    .await
    .unwrap();

    // Act
    let migrated = Dnsorch::run_to_end(topology.dir.path(), &["migrate"], &topology.env);
    let _api = topology.serve().await;
    let _worker = topology.worker(&topology.env, 2);
    topology.post_accepted("newer.example.test").await;

    // Assert
    assert!(migrated, "migrate must accept migrations it does not know");
    topology
        .wait_for_completed(1, Duration::from_secs(30))
        .await;
}

/// Submits an A record for `domain` to `api` with `token`, for the token's own account.
async fn submit_with(api: &str, token: &str, domain: &str) -> StatusCode {
    let body = json!({
        "resource": {"record_type": "A", "domain": domain, "target": "192.0.2.81"}
    });
    client_with(token)
        .post(format!("{api}/api/v1/dns/create"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
}

/// Lists requests at `api` with `token`: the status, and the `WWW-Authenticate` challenge.
async fn list_with(api: &str, token: &str) -> (StatusCode, String) {
    let response = client_with(token)
        .get(format!("{api}/api/v1/dns/requests"))
        .send()
        .await
        .unwrap();
    let challenge = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status(), challenge)
}

/// Polls `api` with `token` until it answers 401 (failing after `bound`); the challenge.
async fn wait_for_refusal(api: &str, token: &str, bound: Duration) -> String {
    let deadline = Instant::now() + bound;
    loop {
        let (status, challenge) = list_with(api, token).await;
        if status == StatusCode::UNAUTHORIZED {
            return challenge;
        }
        assert_eq!(status, StatusCode::OK, "neither accepted nor refused");
        assert!(
            Instant::now() < deadline,
            "{api} still accepts the token after {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_token_revoked_or_rotated_through_one_serve_process_stops_working_at_the_other() {
    // Arrange: two serve processes on one database, each caching token lookups for 1 s; two
    // tokens of acct-1, made through the first and used at the second (which caches them).
    let topology = Topology::new(shared_postgres_database().await, None).await;
    let cached = topology.with("TOKEN_CACHE_SECONDS", "1");
    let other = with(&cached, "BIND_ADDR", &format!("127.0.0.1:{}", free_port()));
    let (a, b) = (api_of(&cached), api_of(&other));
    let _a = topology.serve_with(&cached).await;
    let _b = topology.serve_with(&other).await;
    let (revoked_id, revoked) = topology.create_token_at(&a, "acct-1", "to-revoke").await;
    let (rotated_id, rotated) = topology.create_token_at(&a, "acct-1", "to-rotate").await;
    let accepted_before = [
        submit_with(&b, &revoked, "revoked-before.example.test").await,
        submit_with(&b, &rotated, "rotated-before.example.test").await,
    ];

    // Act: one is revoked and the other rotated, both through the first process.
    let revocation = topology
        .client
        .delete(format!("{a}/api/v1/tokens/{revoked_id}"))
        .send()
        .await
        .unwrap();
    let rotation = topology
        .client
        .post(format!("{a}/api/v1/tokens/{rotated_id}/rotate"))
        .send()
        .await
        .unwrap();
    let revocation_status = revocation.status();
    let rotation_status = rotation.status();
    let fresh: Value = rotation.json().await.unwrap();
    let fresh = fresh["secret"].as_str().unwrap().to_owned();

    // Assert: accepted before; refused at once by the process that made the change, and by
    // the other one once its cache entry is older than TOKEN_CACHE_SECONDS (polled with a
    // deadline); the new secret works at both, and nothing was recorded for the old ones.
    assert_eq!(
        accepted_before,
        [StatusCode::ACCEPTED, StatusCode::ACCEPTED]
    );
    assert_eq!(
        (revocation_status, rotation_status),
        (StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(list_with(&a, &revoked).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(list_with(&a, &rotated).await.0, StatusCode::UNAUTHORIZED);
    let bound = Duration::from_secs(15);
    for old in [&revoked, &rotated] {
        let challenge = wait_for_refusal(&b, old, bound).await;
        assert!(challenge.contains("invalid_token"), "{challenge}");
        assert_eq!(
            submit_with(&b, old, "after.example.test").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        submit_with(&a, &fresh, "fresh-a.example.test").await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        submit_with(&b, &fresh, "fresh-b.example.test").await,
        StatusCode::ACCEPTED
    );
    let by_token: Vec<(String, i64)> = sqlx::query_as(
        "select principal_name, count(*) from dns_requests group by principal_name \
         order by principal_name",
    )
    .fetch_all(&topology.db)
    .await
    .unwrap();
    assert_eq!(
        by_token,
        [("to-revoke".to_owned(), 1), ("to-rotate".to_owned(), 3)]
    );
}

/// Waits until `process` logs where it serves; panics if it exits first.
async fn started(process: &mut Dnsorch, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while process.serving_address().is_none() {
        assert!(
            !process.has_exited() && Instant::now() < deadline,
            "{what} did not start: {}",
            std::fs::read_to_string(&process.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn serve_worker_and_consume_start_with_a_zones_file_of_simulated_zones_or_allow_simulated() {
    // Arrange: the topology's environment sets ALLOW_SIMULATED=true; a second one sets no
    // ALLOW_SIMULATED but names a zones file whose one zone is simulated.
    let topology = Topology::new(shared_postgres_database().await, None).await;
    let zones = topology.dir.path().join("zones.toml");
    std::fs::write(
        &zones,
        "[zones.\"example.test\"]\nbackend = \"simulated\"\n",
    )
    .unwrap();
    let zoned: Vec<_> = with(&topology.env, "DNSORCH_CONFIG", zones.to_str().unwrap())
        .into_iter()
        .filter(|(k, _)| *k != "ALLOW_SIMULATED")
        .collect();
    let kafka = std::env::var("TEST_KAFKA_URL")
        .expect("TEST_KAFKA_URL is not set: run the tests with scripts/test.sh");
    let topic = format!("failclosed_{}", uuid::Uuid::new_v4().simple());

    // Act
    let _api = topology.serve_with(&zoned).await;
    let mut worker = topology.worker(&zoned, 2);
    let mut consumers = Vec::new();
    for env in [&topology.env, &zoned] {
        let env = with(
            &with(env, "KAFKA_BROKER_URL", &kafka),
            "KAFKA_DNS_TOPIC",
            &topic,
        );
        consumers.push(Dnsorch::spawn(topology.dir.path(), &["consume"], &env));
    }
    started(&mut worker, "the worker with a zones file").await;
    for consumer in &mut consumers {
        started(consumer, "consume").await;
    }
    let id = topology.post_accepted("zoned.example.test").await;

    // Assert: the request is recorded in the zones file's zone and completed by the worker.
    topology
        .wait_for_completed(1, Duration::from_secs(30))
        .await;
    let (zone, backend): (Option<String>, Option<String>) =
        sqlx::query_as("select zone, backend from dns_requests where id = $1")
            .bind(uuid::Uuid::parse_str(&id).unwrap())
            .fetch_one(&topology.db)
            .await
            .unwrap();
    assert_eq!(
        (zone.as_deref(), backend.as_deref()),
        (Some("example.test"), Some("simulated"))
    );
}

#[tokio::test]
async fn serve_and_worker_started_with_one_environment_on_one_host_both_start_and_work() {
    // Arrange: one environment for both roles, naming the API's and the operations' ports.
    let topology = Topology::new(shared_postgres_database().await, Some(shared_redis_url())).await;
    let ops = format!("127.0.0.1:{}", free_port());
    let env = topology.with("OPS_ADDR", &ops);

    // Act
    let api = topology.serve_with(&env).await;
    let mut worker = topology.worker(&env, 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    let worker_address = loop {
        if let Some(address) = worker.serving_address() {
            break address;
        }
        assert!(
            !worker.has_exited() && Instant::now() < deadline,
            "the worker did not start: {}",
            std::fs::read_to_string(&worker.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let health = topology
        .client
        .get(format!("http://{ops}/healthz"))
        .send()
        .await
        .unwrap()
        .status();
    let anonymous_metrics = client::plain_client()
        .get(format!("http://{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .status();
    let admin_metrics = topology
        .client
        .get(format!("http://{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .status();
    topology.post_accepted("one-env.example.test").await;

    // Assert: each listens where its role says, both run, and the request completes.
    topology
        .wait_for_completed(1, Duration::from_secs(30))
        .await;
    assert_eq!(
        api.serving_address().as_deref(),
        api_of(&env).strip_prefix("http://")
    );
    assert_eq!(worker_address, ops);
    assert_eq!(health, StatusCode::OK);
    assert_eq!(
        (anonymous_metrics, admin_metrics),
        (StatusCode::UNAUTHORIZED, StatusCode::OK)
    );
    assert!(!worker.has_exited());
    for process in [&api, &worker] {
        let log = std::fs::read_to_string(&process.log).unwrap();
        assert!(
            !log.contains("Failed to bind") && !log.to_lowercase().contains("address in use"),
            "{log}"
        );
    }
}

/// `dnsorch webhook` as a process: external-dns's calls answer 503 while PostgreSQL is down
/// (it retries them at its next sync), and 204 once it is back; the token file may carry
/// surrounding whitespace; a token that may change nothing stops the process at start.
#[tokio::test]
async fn the_webhook_answers_503_while_postgresql_is_down_and_recovers() {
    // Arrange: a token for example.test, in a file with a trailing newline.
    let mut postgres = PrivatePostgres::start();
    let topology = Topology::new(postgres.database().await, None).await;
    let secret = Dnsorch::create_token(
        topology.dir.path(),
        &topology.env,
        &[
            "--account",
            "k8s",
            "--name",
            "external-dns",
            "--policy",
            "example.test=read,create,delete",
        ],
    );
    let idle = Dnsorch::create_token(
        topology.dir.path(),
        &topology.env,
        &[
            "--account",
            "k8s",
            "--name",
            "reader",
            "--policy",
            "example.test=read",
        ],
    );
    let token_file = topology.dir.path().join("webhook.token");
    std::fs::write(&token_file, format!("  {secret}\n")).unwrap();
    let idle_file = topology.dir.path().join("idle.token");
    std::fs::write(&idle_file, &idle).unwrap();
    let port = free_port();
    let mut env = topology.with("WEBHOOK_TOKEN_FILE", token_file.to_str().unwrap());
    env.push(("WEBHOOK_ADDR", format!("127.0.0.1:{port}")));
    env.push(("WEBHOOK_OPS_ADDR", format!("127.0.0.1:{}", free_port())));
    let _webhook = Dnsorch::spawn(topology.dir.path(), &["webhook"], &env);
    let mut refused_env = topology.with("WEBHOOK_TOKEN_FILE", idle_file.to_str().unwrap());
    refused_env.push(("WEBHOOK_ADDR", format!("127.0.0.1:{}", free_port())));
    refused_env.push(("WEBHOOK_OPS_ADDR", format!("127.0.0.1:{}", free_port())));
    let refused_start = Dnsorch::output(topology.dir.path(), &["webhook"], &refused_env);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the webhook did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let changes = |name: &str| {
        json!({"create": [{"dnsName": name, "recordType": "A", "targets": ["192.0.2.1"]}]})
            .to_string()
    };
    let post = |body: String| {
        client
            .post(format!("{base}/records"))
            .header(
                "Content-Type",
                "application/external.dns.webhook+json;version=1",
            )
            .body(body)
            .send()
    };

    // Act
    let before = post(changes("before.example.test")).await.unwrap().status();
    topology.db.close().await;
    postgres.stop();
    let during = post(changes("during.example.test")).await.unwrap().status();
    postgres.start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let status = post(changes("after.example.test")).await.unwrap().status();
        if status == StatusCode::NO_CONTENT || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Assert
    assert!(!refused_start.status.success());
    assert!(
        String::from_utf8_lossy(&refused_start.stdout).contains("may change no name"),
        "{}",
        String::from_utf8_lossy(&refused_start.stdout)
    );
    assert_eq!(before, StatusCode::NO_CONTENT);
    assert!(during.is_server_error(), "{during}");
    assert_eq!(after, StatusCode::NO_CONTENT);
    let db = PgPool::connect(&topology.env[0].1).await.unwrap();
    let names: Vec<String> =
        sqlx::query_scalar("select domain from dns_requests where source = 'webhook' order by seq")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(names, ["before.example.test", "after.example.test"]);
}
