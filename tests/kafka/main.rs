//! Kafka intake against a real Kafka-protocol broker (tansu, started by `scripts/test.sh`,
//! which exports `TEST_KAFKA_URL` and `TEST_TANSU`). Each test uses a topic and a group of its
//! own. Messages for `acct-k` need no token (it is in `KAFKA_TRUSTED_ACCOUNTS`); the others
//! carry `authorization: Bearer <token>` headers with tokens made over the admin API or with
//! `dnsorch token create`.

#![cfg(feature = "kafka")]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dnsorch::config::Settings;
use dnsorch::domain::RequestStatus;
use dnsorch::startup::Application;
use dnsorch::store::{RequestFilter, RequestStore, SqliteStore};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

fn broker() -> String {
    std::env::var("TEST_KAFKA_URL")
        .expect("TEST_KAFKA_URL is not set: run the tests with scripts/test.sh")
}

/// A fresh topic with `partitions` partitions, and its dead-letter topic.
fn create_topic(partitions: u32) -> String {
    let topic = format!("dns_requests_{}", uuid::Uuid::new_v4().simple());
    create_topic_on(&broker(), &topic, partitions);
    topic
}

/// Creates `topic` with `partitions` partitions, and its dead-letter topic, on `brokers`.
fn create_topic_on(brokers: &str, topic: &str, partitions: u32) {
    let tansu = std::env::var("TEST_TANSU")
        .expect("TEST_TANSU is not set: run the tests with scripts/test.sh");
    for (name, n) in [(topic.to_owned(), partitions), (format!("{topic}.dlq"), 1)] {
        let status = Command::new(&tansu)
            .args(["topic", "create", &name, "--partitions", &n.to_string()])
            .args(["--broker", &format!("tcp://{brokers}")])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "could not create topic {name}");
    }
}

fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap()
}

async fn produce(
    producer: &FutureProducer,
    topic: &str,
    payload: &str,
    idempotency_key: Option<&str>,
) {
    let headers: Vec<(&str, &str)> = idempotency_key
        .map(|key| ("idempotency-key", key))
        .into_iter()
        .collect();
    produce_with(producer, topic, payload, &headers).await;
}

/// Produces `payload` with `headers` (name, value), all on one partition.
async fn produce_with(
    producer: &FutureProducer,
    topic: &str,
    payload: &str,
    headers: &[(&str, &str)],
) {
    let mut record = FutureRecord::to(topic)
        .payload(payload)
        .key("same-partition-key");
    if !headers.is_empty() {
        let headers = headers
            .iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(*value),
                })
            });
        record = record.headers(headers);
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

/// Produces `payload` with `authorization: Bearer <token>`.
async fn produce_with_token(producer: &FutureProducer, topic: &str, payload: &str, token: &str) {
    let bearer = format!("Bearer {token}");
    produce_with(producer, topic, payload, &[("authorization", &bearer)]).await;
}

/// `n` A-record messages for `<prefix>0.example.test` and on, one after another.
async fn produce_a_records(producer: &FutureProducer, topic: &str, prefix: &str, n: u32) {
    for i in 0..n {
        let domain = format!("{prefix}{i}.example.test");
        produce(producer, topic, &a_record(&domain), None).await;
    }
}

/// A message for the trusted account `acct-k`.
fn a_record(domain: &str) -> String {
    a_record_for(Some("acct-k"), domain)
}

/// A message for `account` (`None`: no `account_id`, the token's account).
fn a_record_for(account: Option<&str>, domain: &str) -> String {
    message_for(account, "A", domain, "192.0.2.90")
}

/// A message for a record of any type, for `account` (`None`: the token's account).
fn message_for(account: Option<&str>, record_type: &str, domain: &str, target: &str) -> String {
    let mut message = json!({
        "context": {},
        "resource": {"record_type": record_type, "domain": domain, "target": target}
    });
    if let Some(account) = account {
        message["context"]["account_id"] = json!(account);
    }
    message.to_string()
}

#[allow(dead_code)]
#[path = "../support/certs.rs"]
mod certs;
#[path = "../support/client.rs"]
mod client;
mod forward_tls;
#[path = "../support/settings.rs"]
mod support_settings;
mod tls;
mod validation;

use client::{client_with, first_run_admin_token};

/// The account whose messages need no token in these tests (`KAFKA_TRUSTED_ACCOUNTS`).
const TRUSTED: &str = "acct-k";

/// Test settings consuming `topic` in a group of its own, with two workers; `acct-k` is a
/// trusted account, whose messages need no token.
fn settings(dir: &TempDir, topic: &str) -> Settings {
    Settings {
        kafka_trusted_accounts: vec![TRUSTED.to_owned()],
        kafka_broker_url: Some(broker()),
        kafka_dns_topic: topic.to_owned(),
        kafka_group_id: format!("group_{}", uuid::Uuid::new_v4().simple()),
        worker_concurrency: 2,
        reconcile_interval_seconds: Duration::from_millis(200),
        poll_interval_seconds: Duration::from_millis(100),
        ..support_settings::test_settings(dir)
    }
}

/// The all-in-one app consuming `topic`, in this process.
struct App {
    store: Arc<dyn RequestStore>,
    address: String,
    /// Sends the first run's admin token, when the run wrote one.
    admin: reqwest::Client,
    shutdown: CancellationToken,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The app over the database in `dir`.
async fn spawn_app(dir: &TempDir, settings: Settings) -> App {
    spawn_app_after(dir, settings, None).await
}

/// The app over the database in `dir`, which runs `sql` on its SQLite file once it is
/// migrated and before the app starts.
async fn spawn_app_after(dir: &TempDir, settings: Settings, sql: Option<&str>) -> App {
    let database_url = settings.database_url.clone();
    let app = Application::build(settings).await.unwrap();
    if let Some(sql) = sql {
        use sqlx::Connection as _;
        let mut connection = sqlx::SqliteConnection::connect(&database_url)
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();
    }
    let store = app.store();
    let address = format!("http://127.0.0.1:{}", app.port());
    // A database that already held tokens gets no admin token file.
    let admin = first_run_admin_token(dir.path())
        .map(|token| client_with(&token))
        .unwrap_or_else(client::plain_client);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    App {
        store,
        address,
        admin,
        shutdown,
        running: Some(running),
    }
}

impl App {
    /// Stops the app and waits until it has (its Kafka offsets committed).
    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.await.unwrap().unwrap();
        }
    }

    /// Creates a token for `account` over the API that may read, create and delete every
    /// type under example.test and other.test: its id and secret.
    async fn create_token(&self, account: &str, name: &str) -> (String, String) {
        let all = ["read", "create", "delete"];
        let policies = json!([
            {"suffix": "example.test", "permissions": all},
            {"suffix": "other.test", "permissions": all},
        ]);
        self.create_token_with(json!({"account": account, "name": name, "policies": policies}))
            .await
    }

    /// Creates a token from `body` over the API: its id and secret.
    async fn create_token_with(&self, body: serde_json::Value) -> (String, String) {
        let response = self
            .admin
            .post(format!("{}/api/v1/tokens", self.address))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let token: serde_json::Value = response.json().await.unwrap();
        (
            token["id"].as_str().unwrap().to_owned(),
            token["secret"].as_str().unwrap().to_owned(),
        )
    }

    /// Revokes a token over the API.
    async fn revoke_token(&self, id: &str) {
        let response = self
            .admin
            .delete(format!("{}/api/v1/tokens/{id}", self.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    /// `GET path` with the admin token, as JSON.
    async fn get(&self, path: &str) -> serde_json::Value {
        self.admin
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The value of the counter `name` with `labels` in `/metrics` (0 when absent).
    async fn counter(&self, name: &str, labels: &[&str]) -> f64 {
        let text = self
            .admin
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter(|l| labels.iter().all(|label| l.contains(label)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn requests(store: &dyn RequestStore) -> Vec<dnsorch::store::DnsRequest> {
    store
        .list(&RequestFilter {
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap()
}

/// Waits (up to 30 s) until the store holds `n` requests, and gives them, newest first.
async fn requests_when(store: &dyn RequestStore, n: usize) -> Vec<dnsorch::store::DnsRequest> {
    wait_for(
        &format!("{n} recorded requests"),
        Duration::from_secs(30),
        async || requests(store).await.len() == n,
    )
    .await;
    requests(store).await
}

async fn wait_for(what: &str, bound: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads `n` messages from the dead-letter topic: (payload, headers as key=value pairs). The
/// reading blocks, so it runs off the test's runtime, where the app runs.
async fn read_dead_letters(topic: &str, n: usize) -> Vec<(String, Vec<(String, String)>)> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_dead_letters_blocking(&topic, n))
        .await
        .unwrap()
}

fn read_dead_letters_blocking(topic: &str, n: usize) -> Vec<(String, Vec<(String, String)>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set(
            "group.id",
            format!("dlq_reader_{}", uuid::Uuid::new_v4().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&format!("{topic}.dlq")]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut letters = Vec::new();
    while letters.len() < n && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let payload =
                String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            letters.push((payload, headers));
        }
    }
    letters
}

fn header<'a>(headers: &'a [(String, String)], key: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

#[tokio::test]
async fn valid_messages_become_kafka_requests_that_complete() {
    // Arrange
    let topic = create_topic(2);
    let dir = TempDir::new().unwrap();
    let app = spawn_app(&dir, settings(&dir, &topic)).await;
    let producer = producer();

    // Act
    produce_a_records(&producer, &topic, "k", 5).await;

    // Assert
    wait_for(
        "five completed requests",
        Duration::from_secs(60),
        async || {
            let all = requests(&*app.store).await;
            all.len() == 5 && all.iter().all(|r| r.status == RequestStatus::Completed)
        },
    )
    .await;
    let all = requests(&*app.store).await;
    assert!(all.iter().all(|r| r.source == "kafka"));
    assert!(all.iter().all(|r| {
        r.idempotency_key
            .as_deref()
            .is_some_and(|k| k.starts_with(&format!("kafka:{topic}:")))
    }));
}

#[tokio::test]
async fn malformed_and_invalid_messages_go_to_the_dead_letter_topic_and_are_not_stored() {
    // Arrange
    let topic = create_topic(1);
    let dir = TempDir::new().unwrap();
    let app = spawn_app(&dir, settings(&dir, &topic)).await;
    let producer = producer();
    let invalid = json!({"context": {"account_id": "acct-k"},
        "resource": {"record_type": "A", "domain": "bad..name", "target": "300.0.0.1"}});
    let unknown_action = a_record("x.example.test").replacen('{', r#"{"action": "rename", "#, 1);

    // Act: three bad messages between two good ones.
    produce(&producer, &topic, &a_record("first.example.test"), None).await;
    produce(&producer, &topic, "this is not json", None).await;
    produce(&producer, &topic, &invalid.to_string(), None).await;
    produce(&producer, &topic, &unknown_action, None).await;
    produce(&producer, &topic, &a_record("last.example.test"), None).await;

    // Assert
    let letters = read_dead_letters(&topic, 3).await;
    assert_eq!(letters.len(), 3, "{letters:?}");
    assert_eq!(letters[0].0, "this is not json");
    assert_eq!(header(&letters[0].1, "dnsorch-error-kind"), "malformed");
    assert_eq!(header(&letters[1].1, "dnsorch-error-kind"), "invalid");
    assert!(
        header(&letters[1].1, "dnsorch-error").contains("resource.domain"),
        "{:?}",
        letters[1]
    );
    assert!(
        header(&letters[1].1, "dnsorch-error").contains("resource.target"),
        "{:?}",
        letters[1]
    );
    assert!(
        header(&letters[2].1, "dnsorch-error").contains("action"),
        "{:?}",
        letters[2]
    );
    assert_eq!(header(&letters[0].1, "dnsorch-original-topic"), topic);
    assert_eq!(header(&letters[0].1, "dnsorch-original-partition"), "0");
    assert_eq!(header(&letters[0].1, "dnsorch-original-offset"), "1");
    let domains: Vec<String> = requests_when(&*app.store, 2)
        .await
        .into_iter()
        .map(|r| r.domain)
        .collect();
    assert_eq!(domains, ["last.example.test", "first.example.test"]);
}

#[tokio::test]
async fn the_same_message_twice_records_one_request_and_a_reused_key_is_a_dead_letter() {
    // Arrange
    let topic = create_topic(1);
    let dir = TempDir::new().unwrap();
    let app = spawn_app(&dir, settings(&dir, &topic)).await;
    let producer = producer();

    // Act
    produce(
        &producer,
        &topic,
        &a_record("once.example.test"),
        Some("change-1"),
    )
    .await;
    produce(
        &producer,
        &topic,
        &a_record("once.example.test"),
        Some("change-1"),
    )
    .await;
    produce(
        &producer,
        &topic,
        &a_record("other.example.test"),
        Some("change-1"),
    )
    .await;
    produce(&producer, &topic, &a_record("after.example.test"), None).await;

    // Assert
    let letters = read_dead_letters(&topic, 1).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(header(&letters[0].1, "dnsorch-error-kind"), "key_reused");
    wait_for("the later message", Duration::from_secs(30), async || {
        requests(&*app.store).await.len() == 2
    })
    .await;
    let all = requests(&*app.store).await;
    assert_eq!(
        all.iter()
            .filter(|r| r.domain == "once.example.test")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_message_the_database_refuses_is_a_dead_letter_and_the_rest_of_its_batch_is_recorded() {
    // Arrange: a trigger in this test's database refuses one name; the messages are produced
    // before the app starts, so that they arrive in one batch.
    let topic = create_topic(1);
    let dir = TempDir::new().unwrap();
    let producer = producer();
    let names = ["good0", "good1", "poison", "good2", "good3"];
    for name in names {
        produce(
            &producer,
            &topic,
            &a_record(&format!("{name}.example.test")),
            None,
        )
        .await;
    }
    let refuse = "create trigger refuse_poison before insert on dns_requests \
        when new.domain like 'poison.%' \
        begin select raise(abort, 'refused by the test trigger'); end";

    // Act
    let app = spawn_app_after(&dir, settings(&dir, &topic), Some(refuse)).await;
    produce(&producer, &topic, &a_record("later.example.test"), None).await;

    // Assert: the refused message is a dead letter; the others, and the next one, are
    // recorded in order.
    let letters = read_dead_letters(&topic, 1).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        header(&letters[0].1, "dnsorch-error-kind"),
        "store_rejected"
    );
    assert_eq!(header(&letters[0].1, "dnsorch-original-offset"), "2");
    assert!(
        header(&letters[0].1, "dnsorch-error").contains("refused by the test trigger"),
        "{letters:?}"
    );
    assert!(letters[0].0.contains("poison.example.test"));
    let domains: Vec<String> = requests_when(&*app.store, 5)
        .await
        .into_iter()
        .rev()
        .map(|r| r.domain)
        .collect();
    assert_eq!(
        domains,
        [
            "good0.example.test",
            "good1.example.test",
            "good2.example.test",
            "good3.example.test",
            "later.example.test"
        ]
    );
}

#[tokio::test]
async fn a_payload_over_max_body_bytes_is_a_too_large_dead_letter_and_small_batches_lose_nothing() {
    // Arrange: batches of at most 400 payload bytes, about four messages each.
    let topic = create_topic(1);
    let dir = TempDir::new().unwrap();
    let producer = producer();
    let oversized = "x".repeat(64 * 1024 + 1);
    produce(&producer, &topic, &a_record("before.example.test"), None).await;
    produce(&producer, &topic, &oversized, None).await;
    produce_a_records(&producer, &topic, "small", 10).await;
    let mut small_batches = settings(&dir, &topic);
    small_batches.kafka_batch_max_bytes = 400;

    // Act
    let app = spawn_app(&dir, small_batches).await;

    // Assert: the oversized payload (not JSON: parsed, it would be malformed) is a dead letter
    // as it was; every other message is recorded, in order.
    let letters = read_dead_letters(&topic, 1).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(header(&letters[0].1, "dnsorch-error-kind"), "too_large");
    assert_eq!(header(&letters[0].1, "dnsorch-original-offset"), "1");
    assert!(
        header(&letters[0].1, "dnsorch-error").contains("MAX_BODY_BYTES"),
        "{:?}",
        letters[0].1
    );
    assert_eq!(letters[0].0, oversized);
    let domains: Vec<String> = requests_when(&*app.store, 11)
        .await
        .into_iter()
        .rev()
        .map(|r| r.domain)
        .collect();
    let expected: Vec<String> = std::iter::once("before.example.test".to_owned())
        .chain((0..10).map(|i| format!("small{i}.example.test")))
        .collect();
    assert_eq!(domains, expected);
}

#[tokio::test]
async fn a_payload_over_a_million_bytes_is_dead_lettered_and_its_partition_moves_on() {
    // Arrange: a payload over librdkafka's default message.max.bytes (1,000,000 bytes), from a
    // producer allowed to send it, then a valid message.
    let topic = create_topic(1);
    let dir = TempDir::new().unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("message.timeout.ms", "10000")
        .set("message.max.bytes", (2 * 1024 * 1024).to_string())
        .create()
        .unwrap();
    let oversized = "x".repeat(1024 * 1024 + 1);
    produce(&producer, &topic, &oversized, None).await;
    produce(&producer, &topic, &a_record("after.example.test"), None).await;

    // Act
    let app = spawn_app(&dir, settings(&dir, &topic)).await;

    // Assert: the payload is a too_large dead letter, whole, and the next message is recorded.
    let letters = read_dead_letters(&topic, 1).await;
    assert_eq!(letters.len(), 1, "no dead letter");
    assert_eq!(header(&letters[0].1, "dnsorch-error-kind"), "too_large");
    assert_eq!(header(&letters[0].1, "dnsorch-original-offset"), "0");
    assert!(
        letters[0].0 == oversized,
        "the dead letter's payload is not the message's"
    );
    let domains: Vec<String> = requests_when(&*app.store, 1)
        .await
        .into_iter()
        .map(|r| r.domain)
        .collect();
    assert_eq!(domains, ["after.example.test"]);
}

#[tokio::test]
async fn a_batch_holds_at_most_kafka_batch_max_messages() {
    // Arrange: 10 messages waiting on one partition, and a `dnsorch run` process with
    // KAFKA_BATCH_MAX=3 that logs each batch it takes (at debug level).
    let topic = create_topic(1);
    let group = format!("group_{}", uuid::Uuid::new_v4().simple());
    let dir = TempDir::new().unwrap();
    let store = store_in(&dir).await;
    let producer = producer();
    produce_a_records(&producer, &topic, "b", 10).await;
    let log_path = dir.path().join("dnsorch.log");

    // Act
    let mut child = Reaped(
        run_command(&broker(), 0, &dir, &topic, &group)
            .env("KAFKA_BATCH_MAX", "3")
            .env("LOG_LEVEL", "warn,dnsorch::intake::kafka=debug")
            .stdout(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_exactly(&store, 10).await;
    child.kill().unwrap();
    child.wait().unwrap();

    // Assert: the batches, in order, hold every message once and at most 3 each (with the
    // setting ignored, the 10 messages at hand would make one batch).
    let log = std::fs::read_to_string(&log_path).unwrap();
    let batches: Vec<(i64, i64)> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["message"] == "Kafka batch taken")
        .map(|line| {
            (
                line["first_offset"].as_i64().unwrap(),
                line["messages"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(
        batches
            .iter()
            .all(|&(_, messages)| (1..=3).contains(&messages)),
        "{batches:?}"
    );
    let mut next = 0;
    for &(first, messages) in &batches {
        assert_eq!(first, next, "batches in order, none repeated: {batches:?}");
        next += messages;
    }
    assert_eq!(next, 10, "{batches:?}");
    let domains: Vec<String> = requests(&store)
        .await
        .into_iter()
        .rev()
        .map(|r| r.domain)
        .collect();
    let expected: Vec<String> = (0..10).map(|i| format!("b{i}.example.test")).collect();
    assert_eq!(domains, expected);
}

/// A child process that is killed when the test ends, also when it panics.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// `dnsorch run` as a process consuming `topic` into a SQLite file in `dir`.
fn spawn_run(dir: &TempDir, topic: &str, group: &str) -> Reaped {
    spawn_run_on(&broker(), 0, dir, topic, group)
}

/// `dnsorch run` consuming `topic` from `brokers`, its API on `port` (0: any).
fn spawn_run_on(brokers: &str, port: u16, dir: &TempDir, topic: &str, group: &str) -> Reaped {
    let child = run_command(brokers, port, dir, topic, group)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Reaped(child)
}

/// The command of `spawn_run_on`, with warnings logged, before its output is directed.
fn run_command(brokers: &str, port: u16, dir: &TempDir, topic: &str, group: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dnsorch"));
    command
        .arg("run")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/dnsorch.db?mode=rwc", dir.path().display()),
        )
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("KAFKA_BROKER_URL", brokers)
        .env("KAFKA_DNS_TOPIC", topic)
        .env("KAFKA_GROUP_ID", group)
        .env("KAFKA_TRUSTED_ACCOUNTS", TRUSTED)
        .env("WORKER_CONCURRENCY", "0")
        .env("LOG_LEVEL", "warn");
    command
}

async fn produce_many(producer: &FutureProducer, topic: &str, range: std::ops::Range<u32>) {
    let sends = range.map(|i| {
        let record = a_record(&format!("m{i}.example.test"));
        async move {
            let key = format!("key-{}", i % 7);
            producer
                .send(
                    FutureRecord::to(topic).payload(&record).key(&key),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    });
    futures::future::join_all(sends).await;
}

async fn recorded(store: &SqliteStore) -> i64 {
    store
        .count_by_status()
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test]
async fn a_consumer_killed_mid_stream_records_every_message_exactly_once() {
    // Arrange: the database exists before the consumer starts; 1,000 messages on three
    // partitions are waiting.
    let topic = create_topic(3);
    let group = format!("group_{}", uuid::Uuid::new_v4().simple());
    let dir = TempDir::new().unwrap();
    let url = format!("sqlite://{}/dnsorch.db?mode=rwc", dir.path().display());
    let store = SqliteStore::open(&url, Duration::from_secs(2))
        .await
        .unwrap();
    let producer = producer();
    produce_many(&producer, &topic, 0..1000).await;

    // Act: kill -9 the consumer as soon as it has recorded something, produce 1,000 more,
    // and start it again.
    let mut first = spawn_run(&dir, &topic, &group);
    let deadline = Instant::now() + Duration::from_secs(60);
    while recorded(&store).await == 0 {
        assert!(Instant::now() < deadline, "the consumer recorded nothing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Command::new("kill")
        .args(["-KILL", &first.id().to_string()])
        .status()
        .unwrap();
    first.wait().unwrap();
    let before_restart = recorded(&store).await;
    produce_many(&producer, &topic, 1000..2000).await;
    let mut second = spawn_run(&dir, &topic, &group);

    // Assert: every message exactly once (a redelivered one finds its idempotency key).
    wait_for("all 2,000 recorded", Duration::from_secs(120), async || {
        recorded(&store).await >= 2000
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status();
    second.wait().unwrap();
    assert_eq!(
        recorded(&store).await,
        2000,
        "{before_restart} were recorded before the kill"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `dnsorch token create <args>` against the SQLite database in `dir`, as an operator makes
/// tokens: the secret.
fn cli_token(dir: &TempDir, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_dnsorch"))
        .args(["token", "create"])
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/dnsorch.db?mode=rwc", dir.path().display()),
        )
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "token create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn forward_mode_with_the_api_down_then_up_loses_nothing() {
    // Arrange: the API's database gets a forwarder token (the consumer's API_TOKEN_FILE) and
    // a producer's token before the API runs; a consumer forwards to that API, which is not
    // up yet. Both trust acct-k.
    let topic = create_topic(1);
    let api_port = free_port();
    let api_dir = TempDir::new().unwrap();
    let forwarder = cli_token(
        &api_dir,
        &["--account", "bridge", "--name", "bridge", "--forwarder"],
    );
    let producer_token = cli_token(
        &api_dir,
        &[
            "--account",
            "acct-m",
            "--name",
            "producer-m",
            "--policy",
            "example.test=read,create,delete",
        ],
    );
    let consumer_dir = TempDir::new().unwrap();
    let token_file = consumer_dir.path().join("api.token");
    std::fs::write(&token_file, format!("{forwarder}\n")).unwrap();
    let mut forwarding = settings(&consumer_dir, &topic);
    forwarding.api_url = Some(format!("http://127.0.0.1:{api_port}/api/v1/dns/create"));
    forwarding.api_token_file = Some(token_file);
    forwarding.worker_concurrency = 0;
    let consumer = spawn_app(&consumer_dir, forwarding).await;
    let producer = producer();
    // Five for the trusted account without a token (posted with the forwarder's), two with
    // the producer's own token (posted with it, the forwarder's vouching for Kafka); an
    // invalid one, one for an untrusted account without a token, and one with a made-up
    // token.
    produce_a_records(&producer, &topic, "f", 5).await;
    for i in 0..2 {
        let message = a_record_for(None, &format!("t{i}.example.test"));
        produce_with_token(&producer, &topic, &message, &producer_token).await;
    }
    produce(&producer, &topic, &a_record("bad..name"), None).await;
    let untrusted = a_record_for(Some("acct-x"), "untrusted.example.test");
    produce(&producer, &topic, &untrusted, None).await;
    let made_up = format!("dnsorch_{}", "0".repeat(48));
    produce_with_token(
        &producer,
        &topic,
        &a_record("made-up.example.test"),
        &made_up,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Act: the API comes up; it trusts the same accounts as the consumer.
    let mut api_settings = settings(&api_dir, "unused");
    api_settings.kafka_broker_url = None;
    api_settings.bind_addr = format!("127.0.0.1:{api_port}").parse().unwrap();
    let api = spawn_app(&api_dir, api_settings).await;

    // Assert: every good message reached the API once, recorded as from Kafka, by its own
    // token or else by the forwarder's for the trusted account; the invalid and the made-up
    // ones are dead letters with the API's answer, the untrusted one without a token is one
    // at once; and the consumer wrote nothing to its own database.
    wait_for(
        "seven forwarded requests",
        Duration::from_secs(60),
        async || requests(&*api.store).await.len() == 7,
    )
    .await;
    let letters = read_dead_letters(&topic, 3).await;
    let kinds: Vec<(&str, bool)> = letters
        .iter()
        .zip(["422", "KAFKA_TRUSTED_ACCOUNTS", "401"])
        .map(|((_, h), status)| {
            (
                header(h, "dnsorch-error-kind"),
                header(h, "dnsorch-error").contains(status),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("invalid", true),
            ("unauthorized", true),
            ("unauthorized", true)
        ],
        "{letters:?}"
    );
    let forwarded = requests(&*api.store).await;
    let (bridged, own): (Vec<_>, Vec<_>) = forwarded
        .iter()
        .partition(|r| r.submitted_by.token_name.as_deref() == Some("bridge"));
    assert_eq!((bridged.len(), own.len()), (5, 2));
    assert!(forwarded.iter().all(|r| r.source == "kafka"));
    assert!(
        bridged
            .iter()
            .all(|r| r.account_id == TRUSTED
                && r.submitted_by.account_id.as_deref() == Some("bridge"))
    );
    assert!(
        own.iter().all(|r| r.account_id == "acct-m"
            && r.submitted_by.token_name.as_deref() == Some("producer-m"))
    );
    assert!(requests(&*consumer.store).await.is_empty());
}

#[tokio::test]
async fn forward_mode_waits_out_a_429_with_retry_after_and_posts_the_message_again() {
    // Arrange: an API that answers the first post 429 with `Retry-After: 1`, and every later
    // one 202, noting each post's idempotency key and its answer.
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let topic = create_topic(1);
    let posts: Arc<std::sync::Mutex<Vec<(String, u16)>>> = Arc::default();
    let answer = {
        let posts = posts.clone();
        move |headers: HeaderMap| {
            let posts = posts.clone();
            async move {
                let key = headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let mut posts = posts.lock().unwrap();
                let first = posts.is_empty();
                posts.push((key, if first { 429 } else { 202 }));
                if first {
                    (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "{}").into_response()
                } else {
                    (StatusCode::ACCEPTED, "{}").into_response()
                }
            }
        }
    };
    let api = axum::Router::new().route("/api/v1/dns/create", axum::routing::post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, api).await.unwrap() });
    let dir = TempDir::new().unwrap();
    let mut forwarding = settings(&dir, &topic);
    forwarding.api_url = Some(format!("http://127.0.0.1:{port}/api/v1/dns/create"));
    forwarding.worker_concurrency = 0;
    let _consumer = spawn_app(&dir, forwarding).await;
    let producer = producer();

    // Act: two messages (this API checks no token).
    for name in ["first", "second"] {
        let message = a_record_for(None, &format!("{name}.example.test"));
        produce_with_token(&producer, &topic, &message, "dnsorch_any").await;
    }

    // Assert: the first message is posted again after the 429 (not dead-lettered), then the
    // second.
    wait_for("three posts", Duration::from_secs(30), async || {
        posts.lock().unwrap().len() >= 3
    })
    .await;
    let posts = posts.lock().unwrap().clone();
    let answers: Vec<u16> = posts.iter().map(|(_, status)| *status).collect();
    assert_eq!(answers, [429, 202, 202], "{posts:?}");
    assert_eq!(posts[0].0, posts[1].0, "{posts:?}");
    assert_ne!(posts[1].0, posts[2].0, "{posts:?}");
}

#[tokio::test]
async fn a_message_with_a_valid_token_is_recorded_with_its_principal_and_source_kafka() {
    // Arrange
    let topic = create_topic(1);
    let dir = TempDir::new().unwrap();
    let app = spawn_app(&dir, settings(&dir, &topic)).await;
    let (token_id, token) = app.create_token("acct-t", "producer-t").await;
    let producer = producer();

    // Act: one message names the token's account, one leaves it to the token.
    let named = a_record_for(Some("acct-t"), "named.example.test");
    let implied = a_record_for(None, "implied.example.test");
    produce_with_token(&producer, &topic, &named, &token).await;
    produce_with_token(&producer, &topic, &implied, &token).await;

    // Assert
    let all = requests_when(&*app.store, 2).await;
    for request in &all {
        assert_eq!(
            (request.source.as_str(), request.account_id.as_str()),
            ("kafka", "acct-t")
        );
        let by = &request.submitted_by;
        assert_eq!(by.token_id.map(|t| t.to_string()), Some(token_id.clone()));
        assert_eq!(by.token_name.as_deref(), Some("producer-t"));
        assert_eq!(by.account_id.as_deref(), Some("acct-t"));
        assert_eq!(by.client_addr, None);
    }
    let one = app
        .get(&format!("/api/v1/dns/requests/{}", all[0].id))
        .await;
    assert_eq!(one["submitted_by"]["token_name"], "producer-t", "{one}");
    let first_line = one["log_messages"][0]["message"].as_str().unwrap();
    assert!(
        first_line.contains(&format!("token producer-t ({token_id})")),
        "{first_line}"
    );
}

#[tokio::test]
async fn made_up_and_revoked_tokens_are_unauthorized_dead_letters_and_nothing_is_stored() {
    // Arrange: a token that worked before it was revoked.
    let topic = create_topic(1);
    let dir = TempDir::new().unwrap();
    let app = spawn_app(&dir, settings(&dir, &topic)).await;
    let (revoked_id, revoked) = app.create_token("acct-r", "to-revoke").await;
    let producer = producer();
    let before = a_record_for(Some("acct-r"), "before.example.test");
    produce_with_token(&producer, &topic, &before, &revoked).await;
    wait_for("the message before", Duration::from_secs(30), async || {
        requests(&*app.store).await.len() == 1
    })
    .await;
    app.revoke_token(&revoked_id).await;

    // Act: a made-up token (for the trusted account: a token that fails is not excused by
    // trust), the revoked token, then a trusted message without a token.
    let made_up = format!("dnsorch_{}", "0".repeat(48));
    produce_with_token(
        &producer,
        &topic,
        &a_record("made-up.example.test"),
        &made_up,
    )
    .await;
    let after = a_record_for(Some("acct-r"), "after.example.test");
    produce_with_token(&producer, &topic, &after, &revoked).await;
    produce(&producer, &topic, &a_record("last.example.test"), None).await;

    // Assert
    let letters = read_dead_letters(&topic, 2).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    for ((_, headers), why) in letters.iter().zip(["not known", "revoked"]) {
        assert_eq!(header(headers, "dnsorch-error-kind"), "unauthorized");
        assert!(
            header(headers, "dnsorch-error").contains(why),
            "{headers:?}"
        );
    }
    wait_for("the last message", Duration::from_secs(30), async || {
        requests(&*app.store).await.len() == 2
    })
    .await;
    let domains: Vec<String> = requests(&*app.store)
        .await
        .into_iter()
        .map(|r| r.domain)
        .collect();
    assert_eq!(domains, ["last.example.test", "before.example.test"]);
    let failures = [r#"reason="unknown""#, r#"reason="revoked""#];
    for reason in failures {
        let counted = app
            .counter("dnsorch_auth_failures_total", &[reason, r#"via="kafka""#])
            .await;
        assert_eq!(counted, 1.0, "{reason}");
    }
}

#[tokio::test]
async fn a_trusted_account_needs_no_token_and_an_untrusted_one_is_unauthorized() {
    // Arrange
    let topic = create_topic(1);
    let dir = TempDir::new().unwrap();
    let app = spawn_app(&dir, settings(&dir, &topic)).await;
    let producer = producer();

    // Act: no token, first for an account that is not trusted, then for one that is.
    let untrusted = a_record_for(Some("acct-u"), "untrusted.example.test");
    produce(&producer, &topic, &untrusted, None).await;
    produce(&producer, &topic, &a_record("trusted.example.test"), None).await;

    // Assert
    let letters = read_dead_letters(&topic, 1).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].0, untrusted);
    assert_eq!(header(&letters[0].1, "dnsorch-error-kind"), "unauthorized");
    assert!(
        header(&letters[0].1, "dnsorch-error").contains("KAFKA_TRUSTED_ACCOUNTS"),
        "{letters:?}"
    );
    wait_for("the trusted message", Duration::from_secs(30), async || {
        !requests(&*app.store).await.is_empty()
    })
    .await;
    let all = requests(&*app.store).await;
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].domain.as_str(), all[0].account_id.as_str()),
        ("trusted.example.test", TRUSTED)
    );
    assert_eq!(all[0].source, "kafka");
    assert_eq!(
        all[0].submitted_by.token_name.as_deref(),
        Some("kafka-trusted")
    );
    assert_eq!(all[0].submitted_by.token_id, None);
}

#[tokio::test]
async fn a_spoofed_context_source_is_recorded_as_kafka() {
    // Arrange
    let topic = create_topic(1);
    let dir = TempDir::new().unwrap();
    let app = spawn_app(&dir, settings(&dir, &topic)).await;
    let (_, token) = app.create_token("acct-t", "producer-t").await;
    let producer = producer();
    let spoofed = |account: &str, domain: &str| {
        let mut message: serde_json::Value =
            serde_json::from_str(&a_record_for(Some(account), domain)).unwrap();
        message["context"]["source"] = json!("api");
        message.to_string()
    };

    // Act: both say they came from the API, one trusted without a token, one with a token.
    let trusted = spoofed(TRUSTED, "trusted.example.test");
    produce(&producer, &topic, &trusted, None).await;
    let tokened = spoofed("acct-t", "tokened.example.test");
    produce_with_token(&producer, &topic, &tokened, &token).await;

    // Assert
    let sources: Vec<String> = requests_when(&*app.store, 2)
        .await
        .into_iter()
        .map(|r| r.source)
        .collect();
    assert_eq!(sources, ["kafka", "kafka"]);
}

#[tokio::test]
async fn a_message_for_another_account_than_its_tokens_is_a_dead_letter() {
    // Arrange: an ordinary token (not an admin, not a forwarder) of acct-t.
    let topic = create_topic(1);
    let dir = TempDir::new().unwrap();
    let app = spawn_app(&dir, settings(&dir, &topic)).await;
    let (_, token) = app.create_token("acct-t", "producer-t").await;
    let producer = producer();

    // Act: for another account, for the trusted account, then for its own.
    for (account, domain) in [
        ("acct-other", "other.example.test"),
        (TRUSTED, "trusted.example.test"),
        ("acct-t", "own.example.test"),
    ] {
        let message = a_record_for(Some(account), domain);
        produce_with_token(&producer, &topic, &message, &token).await;
    }

    // Assert
    let letters = read_dead_letters(&topic, 2).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    for (payload, headers) in &letters {
        // The token is valid but may not do this: forbidden, not unauthorized.
        assert_eq!(header(headers, "dnsorch-error-kind"), "forbidden");
        assert!(
            header(headers, "dnsorch-error").contains("may not act for"),
            "{payload}: {headers:?}"
        );
    }
    wait_for(
        "the message for its own account",
        Duration::from_secs(30),
        async || !requests(&*app.store).await.is_empty(),
    )
    .await;
    let all = requests(&*app.store).await;
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].domain.as_str(), all[0].account_id.as_str()),
        ("own.example.test", "acct-t")
    );
}

#[tokio::test]
async fn a_message_whose_tokens_policies_do_not_cover_the_name_is_a_forbidden_dead_letter() {
    // Arrange: a token that may change only names under dev.example.test.
    let topic = create_topic(1);
    let dir = TempDir::new().unwrap();
    let app = spawn_app(&dir, settings(&dir, &topic)).await;
    let (_, token) = app
        .create_token_with(json!({"account": "acct-t", "name": "dev-only",
            "policies": [{"suffix": "dev.example.test", "permissions": ["create", "delete"]}]}))
        .await;
    let producer = producer();

    // Act: a name outside its policy (on a label boundary), then one inside.
    let outside = a_record_for(None, "evildev.example.test");
    produce_with_token(&producer, &topic, &outside, &token).await;
    let inside = a_record_for(None, "www.dev.example.test");
    produce_with_token(&producer, &topic, &inside, &token).await;

    // Assert
    let letters = read_dead_letters(&topic, 1).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].0, outside);
    let headers = &letters[0].1;
    assert_eq!(header(headers, "dnsorch-error-kind"), "forbidden");
    let why = header(headers, "dnsorch-error");
    for part in ["evildev.example.test", "A records", "create"] {
        assert!(why.contains(part), "{part} not in {why:?}");
    }
    let all = requests_when(&*app.store, 1).await;
    assert_eq!(
        (all[0].domain.as_str(), all[0].account_id.as_str()),
        ("www.dev.example.test", "acct-t")
    );
}

#[tokio::test]
async fn a_trusted_message_for_a_sensitive_record_is_a_forbidden_dead_letter() {
    // Arrange: trusted messages act as a broad grant over every name.
    let topic = create_topic(1);
    let dir = TempDir::new().unwrap();
    let app = spawn_app(&dir, settings(&dir, &topic)).await;
    let producer = producer();
    let acme = message_for(
        Some(TRUSTED),
        "TXT",
        "_acme-challenge.www.example.test",
        "challenge",
    );
    let ns = message_for(Some(TRUSTED), "NS", "sub.example.test", "ns1.example.test");
    let ordinary = message_for(Some(TRUSTED), "TXT", "www.example.test", "ordinary");

    // Act
    for message in [&acme, &ns, &ordinary] {
        produce(&producer, &topic, message, None).await;
    }

    // Assert
    let letters = read_dead_letters(&topic, 2).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    for ((payload, headers), (expected, name)) in letters.iter().zip([
        (&acme, "_acme-challenge.www.example.test"),
        (&ns, "sub.example.test"),
    ]) {
        assert_eq!(payload, expected);
        assert_eq!(header(headers, "dnsorch-error-kind"), "forbidden");
        assert!(
            header(headers, "dnsorch-error").contains(name),
            "{headers:?}"
        );
    }
    let all = requests_when(&*app.store, 1).await;
    assert_eq!(
        (all[0].domain.as_str(), all[0].account_id.as_str()),
        ("www.example.test", TRUSTED)
    );
    assert_eq!(all[0].record_type.as_str(), "TXT");
}

#[tokio::test]
async fn messages_over_the_tokens_rate_limit_are_rate_limited_dead_letters() {
    // Arrange: a token made before the app starts, and four of its messages waiting, so the
    // consumer takes them well inside a second; the bucket holds two and refills at one a
    // second.
    let topic = create_topic(1);
    let dir = TempDir::new().unwrap();
    let token = cli_token(
        &dir,
        &[
            "--account",
            "acct-t",
            "--name",
            "bursty",
            "--policy",
            "example.test=create",
        ],
    );
    let producer = producer();
    for i in 0..4 {
        let message = a_record_for(None, &format!("burst{i}.example.test"));
        produce_with_token(&producer, &topic, &message, &token).await;
    }
    let mut limited = settings(&dir, &topic);
    limited.rate_limit_burst = 2;
    limited.rate_limit_per_second = 1;

    // Act
    let app = spawn_app(&dir, limited).await;

    // Assert: the first two are recorded, the others are dead letters.
    let letters = read_dead_letters(&topic, 2).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    for ((payload, headers), i) in letters.iter().zip(2..) {
        assert_eq!(
            *payload,
            a_record_for(None, &format!("burst{i}.example.test"))
        );
        assert_eq!(header(headers, "dnsorch-error-kind"), "rate_limited");
        assert!(
            header(headers, "dnsorch-error").contains("rate limit"),
            "{headers:?}"
        );
    }
    let domains: Vec<String> = requests_when(&*app.store, 2)
        .await
        .into_iter()
        .map(|r| r.domain)
        .collect();
    assert_eq!(domains, ["burst1.example.test", "burst0.example.test"]);
}

/// A private tansu broker on `port`, storing in `dir` (so a restart keeps its topics), and
/// waits until it accepts connections.
async fn start_private_broker(dir: &std::path::Path, port: u16) -> Reaped {
    start_broker(dir, port, &format!("tcp://127.0.0.1:{port}"), &[]).await
}

/// A private tansu broker on 127.0.0.1:`port` advertising `advertised`, with the extra
/// arguments `args`, storing in `dir`; waits until it accepts connections.
async fn start_broker(dir: &std::path::Path, port: u16, advertised: &str, args: &[&str]) -> Reaped {
    let tansu = std::env::var("TEST_TANSU")
        .expect("TEST_TANSU is not set: run the tests with scripts/test.sh");
    let listener = format!("tcp://127.0.0.1:{port}");
    let broker = Command::new(tansu)
        .arg("broker")
        .args(["--listener-url", &listener])
        .args(["--advertised-listener-url", advertised])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .args(args)
        .current_dir(dir)
        .env_remove("LISTENER_URL")
        .env_remove("ADVERTISED_LISTENER_URL")
        .env_remove("STORAGE_ENGINE")
        .env_remove("CLUSTER_ID")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut broker = Reaped(broker);
    wait_for(
        "the private broker to listen",
        Duration::from_secs(30),
        async || {
            assert!(broker.try_wait().unwrap().is_none(), "tansu exited");
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        },
    )
    .await;
    broker
}

/// Stops a child process with a signal and waits for it, failing the test if it lingers.
async fn stop(child: &mut Child, signal: &str, bound: Duration) {
    Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    wait_for("the process to exit", bound, async || {
        child.try_wait().unwrap().is_some()
    })
    .await;
}

/// Produces `range` to a private broker with a producer of its own, flushed and closed
/// before returning (off the runtime: closing an rdkafka client blocks).
async fn produce_to(brokers: &str, topic: &str, range: std::ops::Range<u32>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "20000")
        .create()
        .unwrap();
    produce_many(&producer, topic, range).await;
    tokio::task::spawn_blocking(move || drop(producer))
        .await
        .unwrap();
}

/// The SQLite store of a `dnsorch run` process working in `dir`.
async fn store_in(dir: &TempDir) -> SqliteStore {
    SqliteStore::open(
        &format!("sqlite://{}/dnsorch.db?mode=rwc", dir.path().display()),
        Duration::from_secs(2),
    )
    .await
    .unwrap()
}

/// Waits until `store` holds `n` requests, then checks that no more arrive.
async fn wait_for_exactly(store: &SqliteStore, n: i64) {
    wait_for(
        &format!("{n} recorded"),
        Duration::from_secs(120),
        async || recorded(store).await >= n,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(recorded(store).await, n, "recorded exactly once");
}

/// Waits until `/readyz` on `port` says the process is degraded by Kafka (`what` names why).
async fn wait_for_kafka_degraded(port: u16, what: &str) {
    wait_for(
        &format!("/readyz to report {what}"),
        Duration::from_secs(60),
        async || {
            let ready = readiness(port).await;
            ready["kafka"].as_str().is_some_and(|k| k != "ok") && ready["status"] == "degraded"
        },
    )
    .await;
}

/// Waits until `/readyz` on `port` reports Kafka as ok again.
async fn wait_for_kafka_ok(port: u16) {
    wait_for("/readyz to recover", Duration::from_secs(60), async || {
        readiness(port).await["kafka"] == "ok"
    })
    .await;
}

async fn readiness(port: u16) -> serde_json::Value {
    let Ok(response) = client::plain_client()
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
    else {
        return serde_json::Value::Null;
    };
    response.json().await.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_is_survived_and_loses_nothing() {
    // Arrange: a private broker with a topic of 2 partitions, 200 messages, and a consuming
    // `dnsorch run` process that has recorded them.
    let broker_dir = TempDir::new().unwrap();
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let mut broker = start_private_broker(broker_dir.path(), port).await;
    let topic = format!("dns_requests_{}", uuid::Uuid::new_v4().simple());
    create_topic_on(&brokers, &topic, 2);
    produce_to(&brokers, &topic, 0..200).await;
    let dir = TempDir::new().unwrap();
    let store = store_in(&dir).await;
    let api_port = free_port();
    let group = format!("group_{}", uuid::Uuid::new_v4().simple());
    let mut consumer = spawn_run_on(&brokers, api_port, &dir, &topic, &group);
    wait_for("200 recorded", Duration::from_secs(60), async || {
        recorded(&store).await == 200
    })
    .await;

    // Act: the broker dies; the consumer says so in /readyz; the broker comes back on the
    // same port and storage, and 200 more messages arrive.
    stop(&mut broker, "-KILL", Duration::from_secs(10)).await;
    wait_for_kafka_degraded(api_port, "the broker down").await;
    let mut broker = start_private_broker(broker_dir.path(), port).await;
    produce_to(&brokers, &topic, 200..400).await;

    // Assert: every message recorded exactly once, readiness recovers, and the consumer
    // stops on SIGTERM.
    wait_for_exactly(&store, 400).await;
    wait_for_kafka_ok(api_port).await;
    stop(&mut consumer, "-TERM", Duration::from_secs(30)).await;
    stop(&mut broker, "-KILL", Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_at_a_recorded_position_of_a_new_incarnation_of_the_topic_is_a_new_request() {
    // Arrange: a private broker's message at offset 0 is recorded; then the broker is gone
    // with its log, and a new one holds the topic again (as after a topic is deleted and
    // created again, or a broker lost its log): its offsets start at 0 again.
    let topic = format!("dns_requests_{}", uuid::Uuid::new_v4().simple());
    let dir = TempDir::new().unwrap();
    let mut incarnations = Vec::new();
    for _ in 0..2 {
        let broker_dir = TempDir::new().unwrap();
        let port = free_port();
        let brokers = format!("127.0.0.1:{port}");
        let mut broker = start_private_broker(broker_dir.path(), port).await;
        create_topic_on(&brokers, &topic, 1);

        // Act: the same payload at offset 0 each time, consumed into the same database by a
        // consumer group of its own.
        produce_to(&brokers, &topic, 0..1).await;
        let mut consuming = settings(&dir, &topic);
        consuming.kafka_broker_url = Some(brokers);
        let app = spawn_app(&dir, consuming).await;
        // Waiting without a panic: the app must stop while its broker lives (a consumer
        // dropped after its broker is killed can hold the test's runtime at its end).
        let expected = incarnations.len() + 1;
        let deadline = Instant::now() + Duration::from_secs(30);
        while requests(&*app.store).await.len() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        incarnations.push(requests(&*app.store).await);
        app.stop().await;
        stop(&mut broker, "-KILL", Duration::from_secs(10)).await;
    }

    // Assert: two requests, keyed by the same position and different timestamps.
    let counts: Vec<usize> = incarnations.iter().map(Vec::len).collect();
    assert_eq!(counts, [1, 2]);
    let keys: Vec<String> = incarnations[1]
        .iter()
        .map(|r| r.idempotency_key.clone().unwrap())
        .collect();
    let position = format!("kafka:{topic}:0:0:");
    assert!(keys.iter().all(|k| k.starts_with(&position)), "{keys:?}");
    assert_ne!(keys[0], keys[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_at_start_and_a_topic_created_late_are_waited_for() {
    // Arrange: a consuming `dnsorch run` process whose broker is not running yet.
    let broker_dir = TempDir::new().unwrap();
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let topic = format!("dns_requests_{}", uuid::Uuid::new_v4().simple());
    let dir = TempDir::new().unwrap();
    let store = store_in(&dir).await;
    let api_port = free_port();
    let group = format!("group_{}", uuid::Uuid::new_v4().simple());
    let mut consumer = spawn_run_on(&brokers, api_port, &dir, &topic, &group);
    wait_for_kafka_degraded(api_port, "the broker down").await;

    // Act: the broker starts without the topic, which the consumer reports; then the topic
    // is created with 3 partitions and 300 messages arrive.
    let mut broker = start_private_broker(broker_dir.path(), port).await;
    wait_for(
        "/readyz to report the missing topic",
        Duration::from_secs(60),
        async || {
            readiness(api_port).await["kafka"]
                .as_str()
                .is_some_and(|k| k.contains(&topic))
        },
    )
    .await;
    create_topic_on(&brokers, &topic, 3);
    produce_to(&brokers, &topic, 0..300).await;

    // Assert: every message recorded once, from all three partitions, and readiness is back.
    wait_for_exactly(&store, 300).await;
    wait_for_kafka_ok(api_port).await;
    let partitions: std::collections::BTreeSet<String> = requests(&store)
        .await
        .iter()
        .filter_map(|r| {
            let key = r.idempotency_key.as_deref()?;
            // kafka:<topic>:<partition>:<offset>:<timestamp>
            Some(key.split(':').nth(2)?.to_owned())
        })
        .collect();
    assert_eq!(partitions.len(), 3, "partitions seen: {partitions:?}");
    stop(&mut consumer, "-TERM", Duration::from_secs(30)).await;
    stop(&mut broker, "-KILL", Duration::from_secs(10)).await;
}
