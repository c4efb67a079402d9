//! Kafka intake: a consumer group on `KAFKA_DNS_TOPIC` turning messages into requests.
//!
//! Delivery is at-least-once and the effect exactly-once. Offsets are stored only after the
//! batch they belong to is committed to the database (`enable.auto.offset.store=false`; the
//! stored offsets are committed in the background and once more at shutdown), and every
//! message carries an idempotency key, so a redelivered message records nothing new. A message
//! that cannot become a request goes to `<topic>.dlq` with headers saying why and where it came
//! from, and its offset is then stored: one bad message never blocks a partition. A payload
//! over `MAX_BODY_BYTES` is such a message (`too_large`), never parsed; a message the database
//! refuses is split from its batch (see `Intake::submit_batch`) and is one (`store_rejected`).
//!
//! Each partition of the topic has a queue of its own at the client (split from the consumer's
//! queue before the first assignment) and a task that reads it in batches (up to
//! `KAFKA_BATCH_MAX` messages, `KAFKA_BATCH_MAX_BYTES` of payloads, or `BATCH_WAIT`) and records
//! a batch in one database transaction, at most `KAFKA_CONCURRENT_BATCHES` at a time.
//! Partitions are recorded concurrently and each in order; a partition that falls behind holds
//! back only itself, its backlog left at the broker (the client prefetches at most
//! `PREFETCH_BATCHES` batches of messages and `KAFKA_PREFETCH_KBYTES` per partition, and one
//! fetch returns at most `KAFKA_PREFETCH_KBYTES`, or one larger message). Partitions added to
//! the topic later arrive on the consumer's own queue and get a task of their own there. In
//! forward mode (`API_URL`) each message is posted to the API instead, with its idempotency
//! key as the `Idempotency-Key` header and its token (else `API_TOKEN_FILE`'s) as the bearer
//! token; an answer of 408 or 429 is retried after its `Retry-After` (at most
//! `FORWARD_RETRY_MAX_SECONDS`), never dead-lettered.
//!
//! A panic in a partition task (or the broker watch) is never followed by a restart: it is
//! logged and the process stops with an error (`crate::supervise`), so the batch in hand is
//! delivered again at the next start instead of being skipped.
//!
//! Both clients take the client properties of `KAFKA_PROPERTIES` and `KAFKA_PROPERTY_*` (TLS,
//! SASL: see `super::kafka_properties`), then the properties dnsorch sets itself. Every text
//! from librdkafka (its log lines, client errors, the errors shown by `/readyz`) has the secret
//! values of those properties replaced before it is logged or shown.
//!
//! Every message is authenticated like an HTTP request: its `authorization` header carries
//! `Bearer <token>`. A message without one is accepted only for the accounts of
//! `KAFKA_TRUSTED_ACCOUNTS` (principal `kafka-trusted`); any other goes to the dead-letter
//! topic with kind `unauthorized`. A dead letter's reason quotes the client's input: it is
//! logged escaped (`telemetry::Escaped`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::kafka_properties::{ClientProperties, Redactor};
use super::message::{DeadLetterReason, DecodedMessage, MessageOrigin, check_size, decode};
use super::{Intake, IntakeError, Submission, Submitted};
use crate::auth::{AuthError, AuthFailure, Authenticator};
use crate::domain::{Actor, Operation, Principal, Secret, Source as RequestSource};
use crate::supervise::Supervisor;
use crate::telemetry::Escaped;

/// How long a batch waits for more messages once it has one.
const BATCH_WAIT: Duration = Duration::from_millis(20);
/// The longest pause between retries of a batch the database or the API refused.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How many batches of messages (`KAFKA_BATCH_MAX` each) the client prefetches for one
/// partition (`queued.min.messages`), so the next batches are at hand while one is recorded:
/// with batches of 2,000, 10 recorded 18,700-21,100 msg/s into PostgreSQL against
/// 17,300-17,800 with 2 (3 runs each), and 25 no better. `KAFKA_PREFETCH_KBYTES` bounds the
/// same queue in bytes, and wins.
const PREFETCH_BATCHES: usize = 10;
/// The largest dead letter the producer takes (`message.max.bytes`; librdkafka's most, where
/// its default is 1,000,000 bytes), so that a message over a million bytes is dead-lettered
/// like any other instead of being refused by the client and retried for ever, which held its
/// partition. Dead letters are produced one at a time per partition, so this bounds no buffer;
/// the broker's limit for the dead-letter topic still applies.
const DEAD_LETTER_MAX_BYTES: usize = 1_000_000_000;
/// The longest wait for the final offset commit and the client's close at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// While the broker stays unreachable, its errors are logged as warnings this often (and at
/// debug level in between).
const WARN_EVERY: Duration = Duration::from_secs(30);
/// The message header that carries an idempotency key.
const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// The message header that carries the token.
const AUTHORIZATION_HEADER: &str = "authorization";
/// Why a message without a token is refused.
const NO_TOKEN: &str = "no 'authorization: Bearer <token>' header, and context.account_id is not one of KAFKA_TRUSTED_ACCOUNTS";

/// Settings of the Kafka intake.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic: String,
    pub group_id: String,
    /// Forward mode: the API's create URL.
    pub api_url: Option<String>,
    /// Forward mode: the file holding the token sent with trusted accounts' messages that
    /// carry none (read again for every batch, so it can be replaced in place).
    pub api_token_file: Option<std::path::PathBuf>,
    /// Forward mode: the CA that signed an `https://` API's certificate (`API_CA_FILE`).
    pub api_ca_file: Option<std::path::PathBuf>,
    /// Accounts whose messages need no token.
    pub trusted_accounts: Vec<String>,
    /// The largest payload parsed (`MAX_BODY_BYTES`); larger ones are dead letters.
    pub max_message_bytes: usize,
    /// The most messages in one batch (`KAFKA_BATCH_MAX`).
    pub batch_max: usize,
    /// The most payload bytes in one batch (`KAFKA_BATCH_MAX_BYTES`).
    pub batch_max_bytes: usize,
    /// The most kilobytes prefetched per partition, and fetched at once
    /// (`KAFKA_PREFETCH_KBYTES`).
    pub prefetch_kbytes: usize,
    /// How many batches are recorded at once (`KAFKA_CONCURRENT_BATCHES`).
    pub concurrent_batches: usize,
    /// Forward mode: the longest wait honoured from a 408 or 429's `Retry-After`
    /// (`FORWARD_RETRY_MAX_SECONDS`).
    pub forward_retry_max: Duration,
    /// The client properties given (`KAFKA_PROPERTIES`, `KAFKA_PROPERTY_*`), for both clients.
    pub properties: ClientProperties,
}

/// How big a batch may grow: `KAFKA_BATCH_MAX` messages and `KAFKA_BATCH_MAX_BYTES` of
/// payloads.
#[derive(Debug, Clone, Copy)]
struct BatchBound {
    max_messages: usize,
    max_bytes: usize,
}

impl BatchBound {
    /// Whether a batch of `messages` holding `bytes` may take a message of `next` bytes. A
    /// batch's first message is always taken, whatever its size.
    fn admits(self, messages: usize, bytes: usize, next: usize) -> bool {
        messages == 0 || (messages < self.max_messages && bytes + next <= self.max_bytes)
    }
}

/// The bytes a message counts for in its batch: its payload's.
fn payload_len(message: &OwnedMessage) -> usize {
    message.payload().map_or(0, <[u8]>::len)
}

/// The consumer's view of the broker, for `/readyz`: the last client error, with the last
/// error a broker connection reported (a refused connection, a TLS handshake or SASL
/// authentication that failed) when that was another, which the summaries that follow it
/// (all brokers down, a metadata request that failed) do not say; secret property values
/// redacted. Cleared when a message arrives or the broker answers.
#[derive(Debug, Clone, Default)]
pub struct KafkaHealth {
    state: Arc<Mutex<HealthState>>,
    redactor: Redactor,
}

#[derive(Debug, Default)]
struct HealthState {
    error: Option<String>,
    /// The last error of a broker connection since the broker last answered.
    broker_error: Option<String>,
    /// When an error was last logged as a warning.
    warned_at: Option<Instant>,
}

impl KafkaHealth {
    /// `Ok` while the broker is reachable as far as we know, else the last error.
    ///
    /// # Errors
    /// The last error the client reported.
    pub fn check(&self) -> Result<(), String> {
        let state = self.state.lock().expect("not poisoned");
        match (&state.error, &state.broker_error) {
            (None, _) => Ok(()),
            (Some(error), Some(broker)) if broker != error => {
                Err(format!("{error} (last broker error: {broker})"))
            }
            (Some(error), _) => Err(error.clone()),
        }
    }

    fn clear(&self) {
        let mut state = self.state.lock().expect("not poisoned");
        state.error = None;
        state.broker_error = None;
    }

    /// Notes an error a broker connection reported, and logs it as `fail` does.
    fn broker_failed(&self, message: &str, error: String) {
        self.note_broker_error(&error);
        self.fail(message, error);
    }

    /// Notes why a broker connection failed, for the next error `/readyz` shows.
    fn note_broker_error(&self, error: &str) {
        let error = self.redactor.redact(error).into_owned();
        self.state.lock().expect("not poisoned").broker_error = Some(error);
    }

    /// Notes an error and logs it: as a warning when the client was healthy before or no
    /// warning was logged for `WARN_EVERY`, else at debug level. A broker that is down makes
    /// the client report several errors a second.
    fn fail(&self, message: &str, error: String) {
        let error = self.redactor.redact(&error).into_owned();
        let warn = {
            let mut state = self.state.lock().expect("not poisoned");
            let warn = state.error.is_none()
                || state.warned_at.is_none_or(|at| at.elapsed() >= WARN_EVERY);
            if warn {
                state.warned_at = Some(Instant::now());
            }
            state.error = Some(error.clone());
            warn
        };
        if warn {
            tracing::warn!(error.message = %error, "{message}");
        } else {
            tracing::debug!(error.message = %error, "{message}");
        }
    }
}

/// The consumer's context: reports client errors (broker down, all brokers unreachable, a
/// TLS handshake or SASL authentication that fails) to the log and `/readyz`, and logs
/// librdkafka's lines, secrets redacted. A broker connection that fails without an error
/// event (a connection setup that timed out, in a TLS handshake say) is only logged by
/// librdkafka, as a warning of facility `FAIL`: that line is noted for `/readyz` too.
struct IntakeContext {
    health: KafkaHealth,
}

impl ClientContext for IntakeContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if fac == "FAIL" && (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            self.health.note_broker_error(log_message);
        }
        log_redacted(&self.health.redactor, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let message = "Kafka client error; retrying";
        let text = format!("{error}: {reason}");
        match error.rdkafka_error_code() {
            // A summary of the broker errors reported before it.
            Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) => {
                self.health.fail(message, text);
            }
            _ => self.health.broker_failed(message, text),
        }
    }
}

impl ConsumerContext for IntakeContext {}

/// The dead-letter producer's context: its log lines and client errors, secrets redacted.
struct ProducerContext {
    redactor: Redactor,
}

impl ClientContext for ProducerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_redacted(&self.redactor, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let error = format!("{error}: {reason}");
        tracing::warn!(error.message = %self.redactor.redact(&error), "Kafka dead-letter producer error; retrying");
    }
}

/// A librdkafka log line, at its level (target `librdkafka`), secrets redacted.
fn log_redacted(redactor: &Redactor, level: RDKafkaLogLevel, fac: &str, message: &str) {
    let message = redactor.redact(message);
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility = fac, "{message}");
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", facility = fac, "{message}");
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility = fac, "{message}");
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", facility = fac, "{message}");
        }
    }
}

/// The consumer's configuration: the client properties given, then the ones dnsorch sets
/// itself (`kafka_properties::RESERVED` refuses them from the properties).
fn consumer_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    config.properties.apply(&mut client);
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        // We store an offset only after its message is recorded or dead-lettered.
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("enable.partition.eof", "false")
        // The client's own buffers, bounded by the settings: the prefetched messages of
        // each partition (split queues: the bounds apply per partition), and one fetch.
        .set(
            "queued.min.messages",
            (PREFETCH_BATCHES * config.batch_max).to_string(),
        )
        .set(
            "queued.max.messages.kbytes",
            config.prefetch_kbytes.to_string(),
        )
        .set(
            "fetch.max.bytes",
            (config.prefetch_kbytes * 1024).to_string(),
        );
    // librdkafka's warnings at least (the log's filter still applies), so that a broker
    // connection's failure reaches `IntakeContext::log` for `/readyz`.
    if (client.log_level as i32) < (RDKafkaLogLevel::Warning as i32) {
        client.set_log_level(RDKafkaLogLevel::Warning);
    }
    client
}

/// The dead-letter producer's configuration: the client properties given, then dnsorch's.
fn producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    config.properties.apply(&mut client);
    client
        .set("bootstrap.servers", &config.brokers)
        // A dead letter's offset is stored once the broker has it on all in-sync replicas.
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .set("message.max.bytes", DEAD_LETTER_MAX_BYTES.to_string());
    client
}

/// Where decoded messages go.
enum Sink {
    /// Recorded through the service layer, a batch per transaction.
    Direct(Intake),
    /// Posted to the API.
    Forward {
        client: reqwest::Client,
        url: String,
        token_file: Option<std::path::PathBuf>,
        /// The longest wait after a 408 or 429 (`FORWARD_RETRY_MAX_SECONDS`).
        retry_max: Duration,
    },
}

/// The Kafka intake loop.
pub struct KafkaIntake {
    consumer: Arc<StreamConsumer<IntakeContext>>,
    producer: FutureProducer<ProducerContext>,
    topic: String,
    sink: Sink,
    health: KafkaHealth,
    auth: Authenticator,
    trusted_accounts: Arc<[String]>,
    max_message_bytes: usize,
    batch: BatchBound,
    /// `KAFKA_CONCURRENT_BATCHES`.
    concurrent_batches: usize,
}

/// Where a partition's task reads its messages.
enum Source {
    /// The partition's own queue at the client.
    Split(StreamPartitionQueue<IntakeContext>),
    /// Messages the consumer's own queue delivered for a partition added after the start.
    Handed(mpsc::Receiver<OwnedMessage>),
}

/// What happened to one message.
enum Fate {
    Recorded,
    Duplicate,
    Dead(DeadLetterReason),
}

impl KafkaIntake {
    /// Builds the consumer and the dead-letter producer; nothing is contacted yet.
    ///
    /// # Errors
    /// The client configuration is refused (the error's text has secret property values
    /// redacted).
    pub fn new(config: &KafkaConfig, intake: Intake, auth: Authenticator) -> anyhow::Result<Self> {
        let redactor = config.properties.redactor();
        let refused = |client: &str, e: KafkaError| {
            anyhow::anyhow!("{client}: {}", redactor.redact(&e.to_string()))
        };
        let health = KafkaHealth {
            redactor: redactor.clone(),
            ..KafkaHealth::default()
        };
        let consumer: StreamConsumer<IntakeContext> = consumer_config(config)
            .create_with_context(IntakeContext {
                health: health.clone(),
            })
            .map_err(|e| refused("the consumer", e))?;
        let producer: FutureProducer<ProducerContext> = producer_config(config)
            .create_with_context(ProducerContext {
                redactor: redactor.clone(),
            })
            .map_err(|e| refused("the dead-letter producer", e))?;
        let sink = match &config.api_url {
            Some(url) => Sink::Forward {
                client: super::forward::client(url, config.api_ca_file.as_deref())?,
                url: url.clone(),
                token_file: config.api_token_file.clone(),
                retry_max: config.forward_retry_max,
            },
            None => Sink::Direct(intake),
        };
        Ok(Self {
            consumer: Arc::new(consumer),
            producer,
            topic: config.topic.clone(),
            sink,
            health,
            auth,
            trusted_accounts: config.trusted_accounts.clone().into(),
            max_message_bytes: config.max_message_bytes,
            batch: BatchBound {
                max_messages: config.batch_max,
                max_bytes: config.batch_max_bytes,
            },
            concurrent_batches: config.concurrent_batches,
        })
    }

    /// The health handle for `/readyz`.
    pub fn health(&self) -> KafkaHealth {
        self.health.clone()
    }

    /// Consumes until `shutdown`. Waits for the topic's partitions (retrying while the
    /// broker is unreachable or the topic missing), splits each partition's queue from the
    /// consumer's, subscribes, and runs a task per partition, while the calling task keeps
    /// polling the consumer's own queue, which serves rebalances and client errors and
    /// delivers messages of partitions added later. A batch in hand is finished first (or
    /// left unstored, to be delivered again), and the stored offsets are committed at the
    /// end; closing the client is bounded, so a dead broker cannot hold the process.
    ///
    /// A partition task is never restarted: a panic loses its batch in hand, whose offsets
    /// are not stored, and a new task would store later offsets past it. So a panic there
    /// (or in the broker watch) is reported to `supervisor`, which stops the process; the
    /// batch is delivered again at the next start.
    pub async fn run_until_stopped(self, shutdown: CancellationToken, supervisor: Supervisor) {
        let this = Arc::new(self);
        let watch = tokio::spawn(supervisor.clone().fatal(
            "kafka broker watch".into(),
            watch_broker(
                this.consumer.clone(),
                this.topic.clone(),
                this.health.clone(),
                shutdown.clone(),
            ),
        ));
        let recording = Arc::new(Semaphore::new(this.concurrent_batches));
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(partitions) = this.partitions(&shutdown).await {
            for partition in partitions {
                // The queue is split before subscribing, so before the partition can be
                // assigned and fetched: none of its messages reach the consumer's queue, and
                // its order holds.
                let Some(queue) = this.consumer.split_partition_queue(&this.topic, partition)
                else {
                    continue;
                };
                tasks.spawn(supervisor.clone().fatal(
                    format!("kafka partition {partition}"),
                    this.clone().partition_task(
                        Source::Split(queue),
                        recording.clone(),
                        shutdown.clone(),
                    ),
                ));
            }
            // Subscribing once the topic exists: a subscription to a missing topic is
            // noticed by the client's periodic metadata refresh only, minutes later.
            if let Err(e) = this.consumer.subscribe(&[&this.topic]) {
                this.health
                    .fail("cannot subscribe to the Kafka topic", e.to_string());
                shutdown.cancelled().await;
            }
            let mut handed: HashMap<i32, mpsc::Sender<OwnedMessage>> = HashMap::new();
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => break,
                    message = this.consumer.recv() => match this.received(message) {
                        Some(message) => message,
                        None => continue,
                    },
                };
                let partition = message.partition();
                let sender = handed.entry(partition).or_insert_with(|| {
                    let (sender, receiver) = mpsc::channel(this.batch.max_messages);
                    tasks.spawn(supervisor.clone().fatal(
                        format!("kafka partition {partition}"),
                        this.clone().partition_task(
                            Source::Handed(receiver),
                            recording.clone(),
                            shutdown.clone(),
                        ),
                    ));
                    sender
                });
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    sent = sender.send(message) => if sent.is_err() {
                        break; // the task stopped for shutdown
                    },
                }
            }
        }
        while tasks.join_next().await.is_some() {}
        let _ = watch.await;
        let close = tokio::task::spawn_blocking(move || {
            if let Err(e) = this.consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(error.message = %e, "no final offset commit");
            }
            drop(this);
        });
        if tokio::time::timeout(CLOSE_TIMEOUT, close).await.is_err() {
            tracing::warn!(
                timeout_s = CLOSE_TIMEOUT.as_secs(),
                "the Kafka client did not close in time; stored offsets may be committed late, and their messages are delivered again harmlessly"
            );
        }
        tracing::info!("Kafka intake stopped");
    }

    /// The topic's partitions, asked of the broker until it names some. `None`: shutdown
    /// came first.
    async fn partitions(&self, shutdown: &CancellationToken) -> Option<Vec<i32>> {
        loop {
            let consumer = self.consumer.clone();
            let topic = self.topic.clone();
            let answer = tokio::task::spawn_blocking(move || {
                let metadata = consumer
                    .fetch_metadata(Some(&topic), Duration::from_secs(5))
                    .map_err(|e| e.to_string())?;
                let topic = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .ok_or_else(|| format!("topic {topic} is not in the broker's answer"))?;
                if let Some(error) = topic.error() {
                    let error = rdkafka::types::RDKafkaErrorCode::from(error);
                    return Err(format!("topic {}: {error}", topic.name()));
                }
                Ok(topic
                    .partitions()
                    .iter()
                    .map(|p| p.id())
                    .collect::<Vec<_>>())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            match answer {
                Ok(partitions) if !partitions.is_empty() => {
                    self.health.clear();
                    return Some(partitions);
                }
                Ok(_) => self.health.fail(
                    "waiting for the Kafka topic; retrying",
                    format!("topic {} has no partitions yet", self.topic),
                ),
                Err(e) => self.health.fail("waiting for the Kafka topic; retrying", e),
            }
            // Not subscribed yet, the consumer's queue holds only client errors: serving them
            // meanwhile keeps them from piling up.
            let pause = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = &mut pause => break,
                    event = self.consumer.recv() => drop(self.received(event)),
                }
            }
        }
    }

    /// A message as received, or `None` after a client error (reported). No pause follows an
    /// error: each is an event the client queued (at most a few a second while the broker is
    /// down), and events queued while the topic was waited for are served at once after.
    fn received(&self, received: Result<BorrowedMessage<'_>, KafkaError>) -> Option<OwnedMessage> {
        match received {
            Ok(message) => {
                self.health.clear();
                Some(message.detach())
            }
            Err(e) => {
                self.health
                    .fail("Kafka receive failed; retrying", e.to_string());
                None
            }
        }
    }

    /// The next message of a partition's source; `None` once the source is closed.
    async fn next(&self, source: &mut Source) -> Option<OwnedMessage> {
        loop {
            let message = match source {
                Source::Split(queue) => self.received(queue.recv().await),
                Source::Handed(messages) => return messages.recv().await,
            };
            if message.is_some() {
                return message;
            }
        }
    }

    /// One partition: waits for a message, takes what else is at hand or arrives within
    /// `BATCH_WAIT` while the batch stays within its bound (messages and bytes; a message
    /// that does not fit starts the next batch), and processes that batch once one of the
    /// `KAFKA_CONCURRENT_BATCHES` turns is free; until `shutdown` or the source closes.
    async fn partition_task(
        self: Arc<Self>,
        mut source: Source,
        recording: Arc<Semaphore>,
        shutdown: CancellationToken,
    ) {
        let mut held = None;
        loop {
            let first = match held.take() {
                Some(message) => message,
                None => tokio::select! {
                    () = shutdown.cancelled() => return,
                    message = self.next(&mut source) => match message {
                        Some(message) => message,
                        None => return,
                    },
                },
            };
            let mut bytes = payload_len(&first);
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + BATCH_WAIT;
            while self.batch.admits(batch.len(), bytes, 0) {
                match tokio::time::timeout_at(deadline, self.next(&mut source)).await {
                    Ok(Some(message))
                        if self.batch.admits(batch.len(), bytes, payload_len(&message)) =>
                    {
                        bytes += payload_len(&message);
                        batch.push(message);
                    }
                    Ok(Some(message)) => {
                        held = Some(message);
                        break;
                    }
                    _ => break,
                }
            }
            let _turn = tokio::select! {
                () = shutdown.cancelled() => return,
                turn = recording.acquire() => turn.expect("the semaphore is never closed"),
            };
            if !self.process(&batch, &shutdown).await {
                return;
            }
        }
    }

    /// Records a batch, dead-letters what cannot be recorded, then stores the offset of the
    /// last message settled. Returns `false` if `shutdown` came first (the messages not yet
    /// settled are delivered again).
    async fn process(&self, batch: &[OwnedMessage], shutdown: &CancellationToken) -> bool {
        if let Some(first) = batch.first() {
            tracing::debug!(
                partition = first.partition(),
                first_offset = first.offset(),
                messages = batch.len(),
                bytes = batch.iter().map(payload_len).sum::<usize>(),
                "Kafka batch taken"
            );
        }
        metrics::counter!("dnsorch_kafka_messages_consumed_total").increment(batch.len() as u64);
        let decoded: Vec<Result<DecodedMessage, DeadLetterReason>> = batch
            .iter()
            .map(|m| {
                check_size(m.payload(), self.max_message_bytes)?;
                let origin = origin_of(m);
                decode(
                    m.payload(),
                    header_value(m, IDEMPOTENCY_HEADER),
                    header_value(m, AUTHORIZATION_HEADER),
                    &origin,
                )
            })
            .collect();
        let Some(fates) = self.record(decoded, shutdown).await else {
            return false;
        };
        // A batch holds one partition's messages in order: storing the offset of the last
        // one settled stores them all.
        let mut settled = None;
        let mut recorded = 0;
        let mut finished = true;
        for (message, fate) in batch.iter().zip(fates) {
            match fate {
                Fate::Recorded => recorded += 1,
                Fate::Duplicate => {
                    tracing::info!(
                        offset = message.offset(),
                        partition = message.partition(),
                        "message already recorded; skipped"
                    );
                }
                Fate::Dead(reason) => {
                    if !self.dead_letter(message, &reason, shutdown).await {
                        finished = false;
                        break;
                    }
                }
            }
            settled = Some(message);
        }
        metrics::counter!("dnsorch_kafka_requests_recorded_total").increment(recorded);
        if let Some(last) = settled
            && let Err(e) =
                self.consumer
                    .store_offset(last.topic(), last.partition(), last.offset())
        {
            // The partition was revoked meanwhile: its new owner gets the messages again,
            // and their idempotency keys make that harmless.
            tracing::debug!(error.message = %e, "offset not stored");
        }
        finished
    }

    /// Records the decoded messages, retrying while the database or the API is unavailable.
    async fn record(
        &self,
        decoded: Vec<Result<DecodedMessage, DeadLetterReason>>,
        shutdown: &CancellationToken,
    ) -> Option<Vec<Fate>> {
        match &self.sink {
            Sink::Direct(intake) => {
                let mut authorized = Vec::with_capacity(decoded.len());
                for message in decoded {
                    authorized.push(match message {
                        Err(reason) => Err(reason),
                        Ok(message) => self.authorize(message, shutdown).await?,
                    });
                }
                record_direct(intake, authorized, shutdown).await
            }
            Sink::Forward {
                client,
                url,
                token_file,
                retry_max,
            } => {
                // The forwarder token is read once per batch: a file replaced in place is
                // seen by the next batch.
                let own = token_file.as_deref().map(read_token_file);
                let mut fates = Vec::with_capacity(decoded.len());
                for message in decoded {
                    let sent = match message {
                        Err(reason) => Err(reason),
                        Ok(message) => self
                            .forward_tokens(&message, own.as_ref())
                            .map(|t| (message, t)),
                    };
                    fates.push(match sent {
                        Err(reason) => Fate::Dead(reason),
                        Ok((message, (token, vouch))) => {
                            forward(
                                client,
                                url,
                                *retry_max,
                                &token,
                                vouch.as_ref(),
                                &message,
                                shutdown,
                            )
                            .await?
                        }
                    });
                }
                Some(fates)
            }
        }
    }

    /// The tokens a message is forwarded with: its own, vouched for as Kafka's by our
    /// forwarder token (`API_TOKEN_FILE`) when there is one, so the API records it as
    /// `kafka`; or, for a trusted account's message without a token, the forwarder token
    /// itself. The API authenticates them; here we only refuse what cannot be sent.
    fn forward_tokens(
        &self,
        message: &DecodedMessage,
        own: Option<&anyhow::Result<Secret>>,
    ) -> Result<(Secret, Option<Secret>), DeadLetterReason> {
        let own_token = own.and_then(|t| t.as_ref().ok()).cloned();
        match (&message.token, own) {
            (Ok(token), _) => Ok((token.clone(), own_token)),
            (Err(AuthFailure::Missing), _) if self.trusted_account(message).is_none() => {
                Err(unauthorized(AuthFailure::Missing))
            }
            (Err(AuthFailure::Missing), Some(Ok(token))) => Ok((token.clone(), None)),
            (Err(AuthFailure::Missing), Some(Err(e))) => Err(unauthorized_because(
                AuthFailure::Missing,
                format!("no token, and API_TOKEN_FILE: {e:#}"),
            )),
            (Err(AuthFailure::Missing), None) => Err(unauthorized_because(
                AuthFailure::Missing,
                "no token, and API_TOKEN_FILE is not set".to_owned(),
            )),
            (Err(failure), _) => Err(unauthorized(*failure)),
        }
    }

    /// The message's `context.account_id` when it is one of `KAFKA_TRUSTED_ACCOUNTS`.
    fn trusted_account<'m>(&self, message: &'m DecodedMessage) -> Option<&'m str> {
        message
            .body
            .context
            .as_ref()
            .and_then(|c| c.account_id.as_deref())
            .filter(|a| self.trusted_accounts.iter().any(|t| t == a))
    }

    /// The message with its actor: its token's principal, or `kafka-trusted` for a trusted
    /// account's message without a token; else why it is refused. Retries while the
    /// database cannot look the token up. `None`: shutdown came first.
    async fn authorize(
        &self,
        message: DecodedMessage,
        shutdown: &CancellationToken,
    ) -> Option<Result<Submission, DeadLetterReason>> {
        let principal = match &message.token {
            Ok(secret) => {
                let mut pause = Duration::from_millis(200);
                loop {
                    match self.auth.authenticate(secret, None).await {
                        Ok(principal) => break Ok(principal),
                        Err(AuthError::Refused(failure)) => break Err(failure),
                        Err(AuthError::Store(e)) => {
                            tracing::warn!(error.message = %e, "could not look a Kafka message's token up; retrying");
                            tokio::select! {
                                () = shutdown.cancelled() => return None,
                                () = tokio::time::sleep(pause) => {}
                            }
                            pause = (pause * 2).min(MAX_BACKOFF);
                        }
                    }
                }
            }
            Err(AuthFailure::Missing) => match self.trusted_account(&message) {
                Some(account) => Ok(Principal::kafka_trusted(account)),
                None => Err(AuthFailure::Missing),
            },
            Err(failure) => Err(*failure),
        };
        Some(match principal {
            Ok(principal) => Ok(Submission {
                actor: Actor {
                    principal,
                    source: RequestSource::Kafka,
                    client_addr: None,
                },
                body: message.body,
                operation: message.operation,
                idempotency_key: Some(message.idempotency_key),
                set: None,
            }),
            Err(failure) => Err(unauthorized(failure)),
        })
    }

    /// Produces the message to `<topic>.dlq` with the reason in its headers; retries until
    /// the broker takes it. Returns `false` if `shutdown` came first.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: &DeadLetterReason,
        shutdown: &CancellationToken,
    ) -> bool {
        let dlq = format!("{}.dlq", self.topic);
        let error = reason.to_string();
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let headers = [
            ("dnsorch-error", error.as_str()),
            ("dnsorch-error-kind", reason.kind()),
            ("dnsorch-original-topic", message.topic()),
            ("dnsorch-original-partition", partition.as_str()),
            ("dnsorch-original-offset", offset.as_str()),
        ]
        .into_iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value),
            })
        });
        let payload = message.payload().unwrap_or_default();
        let key = message.key().unwrap_or_default();
        loop {
            let record = FutureRecord::to(&dlq)
                .payload(payload)
                .key(key)
                .headers(headers.clone());
            match self.producer.send(record, Duration::from_secs(5)).await {
                Ok(_) => {
                    tracing::warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(), reason = %Escaped(&error), "message dead-lettered");
                    metrics::counter!("dnsorch_kafka_dead_letters_total", "kind" => reason.kind())
                        .increment(1);
                    return true;
                }
                Err((e, _)) => {
                    let error = e.to_string();
                    tracing::warn!(error.message = %self.health.redactor.redact(&error), "could not produce a dead letter; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return false,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }
}

/// Records decoded messages through the service layer, one transaction per batch, retrying
/// the batch while the database is unavailable (and only then: a message the database refuses
/// for another reason is split from the others and dead-lettered as `store_rejected`).
/// `None`: shutdown came first.
async fn record_direct(
    intake: &Intake,
    decoded: Vec<Result<Submission, DeadLetterReason>>,
    shutdown: &CancellationToken,
) -> Option<Vec<Fate>> {
    let items: Vec<Submission> = decoded
        .iter()
        .filter_map(|d| d.as_ref().ok())
        .cloned()
        .collect();
    let mut pause = Duration::from_millis(200);
    let mut answers = loop {
        match intake.submit_batch(items.clone()).await {
            Ok(answers) => break answers.into_iter(),
            Err(e) => {
                tracing::warn!(error.message = %e, "could not record a Kafka batch; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(MAX_BACKOFF);
            }
        }
    };
    Some(
        decoded
            .into_iter()
            .map(|d| match d {
                Err(reason) => Fate::Dead(reason),
                Ok(_) => match answers.next().expect("one answer per item") {
                    Ok(Submitted::Created(_)) => Fate::Recorded,
                    Ok(Submitted::Replayed(_)) => Fate::Duplicate,
                    Err(IntakeError::Invalid(fields)) => {
                        Fate::Dead(DeadLetterReason::Invalid(fields))
                    }
                    Err(IntakeError::KeyReused(id)) => {
                        Fate::Dead(DeadLetterReason::KeyReused(id.to_string()))
                    }
                    Err(IntakeError::Forbidden(why)) => {
                        Fate::Dead(DeadLetterReason::Forbidden(why))
                    }
                    Err(IntakeError::RateLimited { message, .. }) => {
                        Fate::Dead(DeadLetterReason::RateLimited(message))
                    }
                    Err(IntakeError::Store(e)) => {
                        Fate::Dead(DeadLetterReason::StoreRejected(e.to_string()))
                    }
                },
            })
            .collect(),
    )
}

/// Where a message of `operation` is posted: `API_URL` is the create URL (as in the original
/// design), whose last segment becomes `delete` for deletes; a base URL gets the API's path.
fn forward_url(api_url: &str, operation: Operation) -> String {
    let base = api_url.trim_end_matches('/');
    let base = base
        .strip_suffix("/create")
        .map_or_else(|| format!("{base}/api/v1/dns"), str::to_owned);
    format!("{base}/{}", operation.as_str())
}

/// Posts one message to the API, retrying while it is unreachable, answers 5xx, or answers
/// 408 or 429 (after its `Retry-After` when it sends one, at most `retry_max`, else with
/// backoff). Any other 4xx answer makes the message a dead letter with the API's error.
/// `None`: shutdown came first.
async fn forward(
    client: &reqwest::Client,
    url: &str,
    retry_max: Duration,
    token: &Secret,
    forwarder: Option<&Secret>,
    message: &DecodedMessage,
    shutdown: &CancellationToken,
) -> Option<Fate> {
    use reqwest::StatusCode;
    let url = forward_url(url, message.operation);
    let mut pause = Duration::from_millis(200);
    loop {
        let mut post = client
            .post(&url)
            .header("Idempotency-Key", &message.idempotency_key)
            .header(reqwest::header::AUTHORIZATION, bearer_value(token));
        if let Some(forwarder) = forwarder {
            post = post.header(crate::auth::FORWARDED_BY, bearer_value(forwarder));
        }
        let sent = post.json(&message.body).send().await;
        let wait = match sent {
            Ok(response) if response.status().is_success() => {
                return Some(if response.status() == StatusCode::ACCEPTED {
                    Fate::Recorded
                } else {
                    Fate::Duplicate
                });
            }
            Ok(response)
                if matches!(
                    response.status(),
                    StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS
                ) =>
            {
                let wait = retry_after(response.headers())
                    .unwrap_or(pause)
                    .min(retry_max);
                tracing::info!(status = %response.status(), wait_ms = wait.as_millis() as u64, "the API asks to try again later; waiting");
                wait
            }
            Ok(response) if response.status().is_client_error() => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                let reason = format!("the API answered {status}: {body}");
                return Some(Fate::Dead(match status {
                    StatusCode::CONFLICT => DeadLetterReason::KeyReused(reason),
                    StatusCode::UNAUTHORIZED => DeadLetterReason::Unauthorized(reason),
                    StatusCode::FORBIDDEN => DeadLetterReason::Forbidden(reason),
                    _ => DeadLetterReason::Invalid(crate::domain::ValidationError::field(
                        "body", reason,
                    )),
                }));
            }
            Ok(response) => {
                metrics::counter!("dnsorch_kafka_forward_failures_total", "kind" => "failing")
                    .increment(1);
                tracing::warn!(status = %response.status(), "the API is failing; retrying");
                pause
            }
            Err(e) => {
                metrics::counter!("dnsorch_kafka_forward_failures_total", "kind" => "unreachable")
                    .increment(1);
                tracing::warn!(error.message = %super::forward::describe(e), "the API is unreachable; retrying");
                pause
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(wait) => {}
        }
        pause = (pause * 2).min(MAX_BACKOFF);
    }
}

/// A `Retry-After` header in seconds (the form the API sends); `None` when absent or a date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse().ok().map(Duration::from_secs)
}

/// Every few seconds asks the broker for the topic's metadata, which sets the health (an
/// answer clears an error the client reported earlier, which may have been served after
/// the last message), and sets `dnsorch_kafka_consumer_lag{partition}`: the high
/// watermark minus the consumer's position, for each assigned partition.
async fn watch_broker(
    consumer: Arc<StreamConsumer<IntakeContext>>,
    topic: String,
    health: KafkaHealth,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        let consumer = consumer.clone();
        let topic = topic.clone();
        let Ok((answer, lags)) = tokio::task::spawn_blocking(move || {
            let answer = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(2))
                .map(drop)
                .map_err(|e| e.to_string());
            let Ok(positions) = consumer.position() else {
                return (answer, Vec::new());
            };
            let lags = positions
                .elements()
                .iter()
                .filter_map(|p| {
                    let (_, high) = consumer
                        .fetch_watermarks(p.topic(), p.partition(), Duration::from_secs(1))
                        .ok()?;
                    let Offset::Offset(position) = p.offset() else {
                        return None;
                    };
                    Some((p.partition(), (high - position).max(0)))
                })
                .collect::<Vec<_>>();
            (answer, lags)
        })
        .await
        else {
            continue;
        };
        match answer {
            Ok(()) => health.clear(),
            Err(e) => health.fail("the Kafka broker does not answer", e),
        }
        for (partition, lag) in lags {
            metrics::gauge!("dnsorch_kafka_consumer_lag", "partition" => partition.to_string())
                .set(lag as f64);
        }
    }
}

fn origin_of(message: &OwnedMessage) -> MessageOrigin {
    MessageOrigin {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
    }
}

/// Counts a refused message and says why, in the words a Kafka producer needs.
fn unauthorized(failure: AuthFailure) -> DeadLetterReason {
    let why = match failure {
        AuthFailure::Missing => NO_TOKEN.to_owned(),
        AuthFailure::Subnet => {
            "the token is limited to subnets, which a Kafka message cannot show".to_owned()
        }
        other => other.to_string(),
    };
    unauthorized_because(failure, why)
}

/// Counts a refused message, with the reason given.
fn unauthorized_because(failure: AuthFailure, why: String) -> DeadLetterReason {
    failure.emit("kafka");
    DeadLetterReason::Unauthorized(why)
}

/// `Bearer <secret>`, marked sensitive so that no log prints it.
fn bearer_value(secret: &Secret) -> reqwest::header::HeaderValue {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", secret.expose()))
        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("Bearer -"));
    value.set_sensitive(true);
    value
}

/// Reads a token file (`API_TOKEN_FILE`): the secret, trimmed.
///
/// # Errors
/// The file cannot be read or is empty.
pub fn read_token_file(path: &std::path::Path) -> anyhow::Result<Secret> {
    use anyhow::Context as _;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = text.trim();
    if text.is_empty() {
        anyhow::bail!("{} is empty", path.display());
    }
    Ok(Secret::presented(text))
}

fn header_value<'m>(message: &'m OwnedMessage, name: &str) -> Option<&'m [u8]> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key.eq_ignore_ascii_case(name))
        .and_then(|h| h.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_bounded_by_messages_and_by_bytes_and_always_takes_its_first_message() {
        let bound = BatchBound {
            max_messages: 3,
            max_bytes: 1000,
        };
        assert!(bound.admits(0, 0, 5000), "the first message, however large");
        assert!(bound.admits(1, 400, 400));
        assert!(bound.admits(2, 800, 200), "exactly at the byte bound");
        assert!(!bound.admits(2, 800, 201), "over the byte bound");
        assert!(!bound.admits(3, 300, 0), "at the message bound");
        assert!(
            !bound.admits(1, 5000, 0),
            "a large first message fills its batch"
        );
    }

    #[test]
    fn every_property_dnsorch_sets_is_refused_from_the_client_properties() {
        let config = KafkaConfig {
            brokers: "k:9092".into(),
            topic: "t".into(),
            group_id: "g".into(),
            api_url: None,
            api_token_file: None,
            api_ca_file: None,
            trusted_accounts: Vec::new(),
            max_message_bytes: 1,
            batch_max: 1,
            batch_max_bytes: 1,
            prefetch_kbytes: 1024,
            concurrent_batches: 1,
            forward_retry_max: Duration::ZERO,
            properties: ClientProperties::default(),
        };
        for client in [consumer_config(&config), producer_config(&config)] {
            for name in client.config_map().keys() {
                assert!(
                    crate::intake::kafka_properties::reserved(name).is_some(),
                    "{name} is set by dnsorch but not reserved"
                );
            }
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_a_date_or_nothing_is_none() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn deletes_are_forwarded_to_the_delete_path() {
        let create = "http://api:8000/api/v1/dns/create";
        assert_eq!(forward_url(create, Operation::Create), create);
        assert_eq!(
            forward_url(create, Operation::Delete),
            "http://api:8000/api/v1/dns/delete"
        );
        assert_eq!(
            forward_url("http://api:8000/", Operation::Delete),
            "http://api:8000/api/v1/dns/delete"
        );
    }
}
