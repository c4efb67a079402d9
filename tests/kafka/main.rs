//! Kafka intake against a real Kafka-protocol broker (tansu, started by `scripts/test.sh`,
//! which exports `TEST_KAFKA_URL` and `TEST_TANSU`). Each test uses a topic and a group of its
//! own.

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
    let mut record = FutureRecord::to(topic)
        .payload(payload)
        .key("same-partition-key");
    if let Some(key) = idempotency_key {
        record = record.headers(OwnedHeaders::new().insert(Header {
            key: "idempotency-key",
            value: Some(key),
        }));
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

/// `n` A-record messages for `<prefix>0.example.test` and on, one after another.
async fn produce_a_records(producer: &FutureProducer, topic: &str, prefix: &str, n: u32) {
    for i in 0..n {
        let domain = format!("{prefix}{i}.example.test");
        produce(producer, topic, &a_record(&domain), None).await;
    }
}

fn a_record(domain: &str) -> String {
    json!({
        "context": {"account_id": "acct-k"},
        "resource": {"record_type": "A", "domain": domain, "target": "192.0.2.90"}
    })
    .to_string()
}

#[path = "../support/settings.rs"]
mod support_settings;

/// Test settings consuming `topic` in a group of its own, with two workers.
fn settings(dir: &TempDir, topic: &str) -> Settings {
    Settings {
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
    shutdown: CancellationToken,
}

async fn spawn_app(settings: Settings) -> App {
    let app = Application::build(settings).await.unwrap();
    let store = app.store();
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    App { store, shutdown }
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
    let app = spawn_app(settings(&dir, &topic)).await;
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
    let app = spawn_app(settings(&dir, &topic)).await;
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
    wait_for(
        "the two good messages",
        Duration::from_secs(30),
        async || requests(&*app.store).await.len() == 2,
    )
    .await;
    let domains: Vec<String> = requests(&*app.store)
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
    let app = spawn_app(settings(&dir, &topic)).await;
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
    let child = Command::new(env!("CARGO_BIN_EXE_dnsorch"))
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
        .env("WORKER_CONCURRENCY", "0")
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Reaped(child)
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

#[tokio::test]
async fn forward_mode_with_the_api_down_then_up_loses_nothing() {
    // Arrange: a consumer forwarding to an API that is not there yet.
    let topic = create_topic(1);
    let api_port = free_port();
    let consumer_dir = TempDir::new().unwrap();
    let mut forwarding = settings(&consumer_dir, &topic);
    forwarding.api_url = Some(format!("http://127.0.0.1:{api_port}/api/v1/dns/create"));
    forwarding.worker_concurrency = 0;
    let consumer = spawn_app(forwarding).await;
    let producer = producer();
    produce_a_records(&producer, &topic, "f", 5).await;
    produce(&producer, &topic, &a_record("bad..name"), None).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Act: the API comes up.
    let api_dir = TempDir::new().unwrap();
    let mut api_settings = settings(&api_dir, "unused");
    api_settings.kafka_broker_url = None;
    api_settings.bind_addr = format!("127.0.0.1:{api_port}").parse().unwrap();
    let api = spawn_app(api_settings).await;

    // Assert: every message reached the API once, the invalid one is a dead letter with the
    // API's answer, and the consumer wrote nothing to its own database.
    wait_for(
        "five forwarded requests",
        Duration::from_secs(60),
        async || requests(&*api.store).await.len() == 5,
    )
    .await;
    let letters = read_dead_letters(&topic, 1).await;
    assert_eq!(letters.len(), 1);
    assert!(
        header(&letters[0].1, "dnsorch-error").contains("422"),
        "{:?}",
        letters[0]
    );
    let forwarded = requests(&*api.store).await;
    assert!(forwarded.iter().all(|r| r.source == "kafka"));
    assert!(requests(&*consumer.store).await.is_empty());
}

/// A private tansu broker on `port`, storing in `dir` (so a restart keeps its topics), and
/// waits until it accepts connections.
async fn start_private_broker(dir: &std::path::Path, port: u16) -> Reaped {
    let tansu = std::env::var("TEST_TANSU")
        .expect("TEST_TANSU is not set: run the tests with scripts/test.sh");
    let listener = format!("tcp://127.0.0.1:{port}");
    let broker = Command::new(tansu)
        .arg("broker")
        .args(["--listener-url", &listener])
        .args(["--advertised-listener-url", &listener])
        .args(["--storage-engine", "sqlite://tansu.db"])
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
    let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await else {
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
            Some(key.rsplit(':').nth(1)?.to_owned())
        })
        .collect();
    assert_eq!(partitions.len(), 3, "partitions seen: {partitions:?}");
    stop(&mut consumer, "-TERM", Duration::from_secs(30)).await;
    stop(&mut broker, "-KILL", Duration::from_secs(10)).await;
}
