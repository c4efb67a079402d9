//! Kafka intake: a consumer group on `KAFKA_DNS_TOPIC` turning messages into requests.
//!
//! Delivery is at-least-once and the effect exactly-once. Offsets are stored only after the
//! batch they belong to is committed to the database (`enable.auto.offset.store=false`; the
//! stored offsets are committed in the background and once more at shutdown), and every
//! message carries an idempotency key, so a redelivered message records nothing new. A message
//! that cannot become a request goes to `<topic>.dlq` with headers saying why and where it came
//! from, and its offset is then stored: one bad message never blocks a partition.
//!
//! One task reads messages and hands each to the lane of its partition (`LANES` of them,
//! buffering at most `BUFFERED_MAX` messages in all). A lane takes its messages in batches
//! (up to `BATCH_MAX` or `BATCH_WAIT`) and records a batch in one database transaction, so
//! partitions are recorded concurrently and each in order. In forward mode (`API_URL`) each
//! message is posted to the API instead, with its idempotency key as the `Idempotency-Key`
//! header.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::message::{DeadLetterReason, DecodedMessage, MessageOrigin, decode};
use super::{Intake, IntakeError, Submitted};
use crate::domain::Operation;

/// The most messages recorded in one transaction (2,000 rather than 500: 15,088 against
/// 13,009-13,767 msg/s into PostgreSQL in `scripts/bench.sh`).
const BATCH_MAX: usize = 2000;
/// How long a batch waits for more messages once it has one.
const BATCH_WAIT: Duration = Duration::from_millis(20);
/// The longest pause between retries of a batch the database or the API refused.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How many partitions are recorded at once (a partition always goes to the same lane).
const LANES: usize = 4;
/// The most messages read from the broker and not yet processed, across all lanes.
const BUFFERED_MAX: usize = 4 * LANES * BATCH_MAX;
/// The longest wait for the final offset commit and the client's close at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// The message header that carries an idempotency key.
const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Settings of the Kafka intake.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic: String,
    pub group_id: String,
    /// Forward mode: the API's create URL.
    pub api_url: Option<String>,
}

/// The consumer's view of the broker, for `/readyz`: the last client error, cleared when a
/// message arrives.
#[derive(Debug, Clone, Default)]
pub struct KafkaHealth(Arc<Mutex<Option<String>>>);

impl KafkaHealth {
    /// `Ok` while the broker is reachable as far as we know, else the last error.
    ///
    /// # Errors
    /// The last error the client reported.
    pub fn check(&self) -> Result<(), String> {
        match self.0.lock().expect("not poisoned").clone() {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }

    fn set(&self, error: Option<String>) {
        *self.0.lock().expect("not poisoned") = error;
    }
}

/// Reports client errors (broker down, all brokers unreachable) to the log and `/readyz`.
struct IntakeContext {
    health: KafkaHealth,
}

impl ClientContext for IntakeContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(error.message = %error, reason, "Kafka client error; retrying");
        self.health.set(Some(format!("{error}: {reason}")));
    }
}

impl ConsumerContext for IntakeContext {}

/// Where decoded messages go.
enum Sink {
    /// Recorded through the service layer, a batch per transaction.
    Direct(Intake),
    /// Posted to the API.
    Forward {
        client: reqwest::Client,
        url: String,
    },
}

/// The Kafka intake loop.
pub struct KafkaIntake {
    consumer: Arc<StreamConsumer<IntakeContext>>,
    producer: FutureProducer,
    topic: String,
    sink: Sink,
    health: KafkaHealth,
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
    /// The client configuration is refused.
    pub fn new(config: &KafkaConfig, intake: Intake) -> anyhow::Result<Self> {
        let health = KafkaHealth::default();
        let consumer: StreamConsumer<IntakeContext> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // We store an offset only after its message is recorded or dead-lettered.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create_with_context(IntakeContext {
                health: health.clone(),
            })?;
        consumer.subscribe(&[&config.topic])?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("message.timeout.ms", "10000")
            .create()?;
        let sink = match &config.api_url {
            Some(url) => Sink::Forward {
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()?,
                url: url.clone(),
            },
            None => Sink::Direct(intake),
        };
        Ok(Self {
            consumer: Arc::new(consumer),
            producer,
            topic: config.topic.clone(),
            sink,
            health,
        })
    }

    /// The health handle for `/readyz`.
    pub fn health(&self) -> KafkaHealth {
        self.health.clone()
    }

    /// Consumes until `shutdown`. One task reads from the broker and hands each message to
    /// the lane of its partition; each lane records its messages in batches, so partitions
    /// are recorded concurrently while each partition keeps its order. The reader waits only
    /// when `BUFFERED_MAX` messages are waiting in all lanes together, never for one busy
    /// lane: the broker delivers a partition's messages in runs of thousands, and a reader
    /// blocked on one lane would leave the others idle. A batch in hand is
    /// finished first (or left unstored, to be delivered again), and the stored offsets are
    /// committed at the end; closing the client is bounded, so a dead broker cannot hold the
    /// process.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let lag = tokio::spawn(report_lag(this.consumer.clone(), shutdown.clone()));
        let mut lanes = tokio::task::JoinSet::new();
        let senders: Vec<_> = (0..LANES)
            .map(|_| {
                let (sender, receiver) = mpsc::unbounded_channel();
                lanes.spawn(this.clone().lane(receiver, shutdown.clone()));
                sender
            })
            .collect();
        let buffered = Arc::new(Semaphore::new(BUFFERED_MAX));
        loop {
            let (permit, message) = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = buffered.clone().acquire_owned() => {
                    let permit = permit.expect("the semaphore is never closed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        message = this.receive() => (permit, message),
                    }
                }
            };
            let lane = usize::try_from(message.partition()).unwrap_or_default() % LANES;
            if senders[lane].send((message, permit)).is_err() {
                break; // the lane stopped for shutdown
            }
        }
        drop(senders);
        while lanes.join_next().await.is_some() {}
        let _ = lag.await;
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

    /// The next message, retrying (and reporting) while the broker is unreachable.
    async fn receive(&self) -> OwnedMessage {
        loop {
            match self.consumer.recv().await {
                Ok(message) => {
                    self.health.set(None);
                    return message.detach();
                }
                Err(e) => {
                    tracing::warn!(error.message = %e, "Kafka receive failed; retrying");
                    self.health.set(Some(e.to_string()));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// One lane: waits for a message, takes what else is queued or arrives within
    /// `BATCH_WAIT`, and processes that batch; until `shutdown` or the reader stops.
    async fn lane(
        self: Arc<Self>,
        mut messages: mpsc::UnboundedReceiver<(OwnedMessage, OwnedSemaphorePermit)>,
        shutdown: CancellationToken,
    ) {
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => return,
                message = messages.recv() => match message {
                    Some(message) => message,
                    None => return,
                },
            };
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + BATCH_WAIT;
            while batch.len() < BATCH_MAX {
                match tokio::time::timeout_at(deadline, messages.recv()).await {
                    Ok(Some(message)) => batch.push(message),
                    _ => break,
                }
            }
            // The permits go back (dropped with the batch) once it is processed.
            let (batch, _permits): (Vec<OwnedMessage>, Vec<OwnedSemaphorePermit>) =
                batch.into_iter().unzip();
            if !self.process(&batch, &shutdown).await {
                return;
            }
        }
    }

    /// Records a batch, dead-letters what cannot be recorded, then stores the offsets.
    /// Returns `false` if `shutdown` came first (nothing of the batch is stored then).
    async fn process(&self, batch: &[OwnedMessage], shutdown: &CancellationToken) -> bool {
        metrics::counter!("dnsorch_kafka_messages_consumed_total").increment(batch.len() as u64);
        let decoded: Vec<Result<DecodedMessage, DeadLetterReason>> = batch
            .iter()
            .map(|m| {
                let origin = origin_of(m);
                decode(m.payload(), idempotency_header(m), &origin)
            })
            .collect();
        let Some(fates) = self.record(decoded, shutdown).await else {
            return false;
        };
        for (message, fate) in batch.iter().zip(fates) {
            match fate {
                Fate::Recorded => {
                    metrics::counter!("dnsorch_kafka_requests_recorded_total").increment(1);
                }
                Fate::Duplicate => {
                    tracing::info!(
                        offset = message.offset(),
                        partition = message.partition(),
                        "message already recorded; skipped"
                    );
                }
                Fate::Dead(reason) => {
                    if !self.dead_letter(message, &reason, shutdown).await {
                        return false;
                    }
                }
            }
            if let Err(e) =
                self.consumer
                    .store_offset(message.topic(), message.partition(), message.offset())
            {
                // The partition was revoked meanwhile: its new owner gets the message again,
                // and its idempotency key makes that harmless.
                tracing::debug!(error.message = %e, "offset not stored");
            }
        }
        true
    }

    /// Records the decoded messages, retrying while the database or the API is unavailable.
    async fn record(
        &self,
        decoded: Vec<Result<DecodedMessage, DeadLetterReason>>,
        shutdown: &CancellationToken,
    ) -> Option<Vec<Fate>> {
        match &self.sink {
            Sink::Direct(intake) => record_direct(intake, decoded, shutdown).await,
            Sink::Forward { client, url } => {
                let mut fates = Vec::with_capacity(decoded.len());
                for message in decoded {
                    fates.push(match message {
                        Err(reason) => Fate::Dead(reason),
                        Ok(message) => forward(client, url, &message, shutdown).await?,
                    });
                }
                Some(fates)
            }
        }
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
                    tracing::warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(), reason = %error, "message dead-lettered");
                    metrics::counter!("dnsorch_kafka_dead_letters_total", "kind" => reason.kind())
                        .increment(1);
                    return true;
                }
                Err((e, _)) => {
                    tracing::warn!(error.message = %e, "could not produce a dead letter; retrying");
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
/// the batch while the database is unavailable. `None`: shutdown came first.
async fn record_direct(
    intake: &Intake,
    decoded: Vec<Result<DecodedMessage, DeadLetterReason>>,
    shutdown: &CancellationToken,
) -> Option<Vec<Fate>> {
    let items: Vec<_> = decoded
        .iter()
        .filter_map(|d| d.as_ref().ok())
        .map(|d| (d.body.clone(), d.operation, d.idempotency_key.clone()))
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
                    Err(IntakeError::Store(e)) => {
                        Fate::Dead(DeadLetterReason::Malformed(format!("not recorded: {e}")))
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

/// Posts one message to the API, retrying while it is unreachable or answers 5xx. A 4xx
/// answer makes the message a dead letter with the API's error. `None`: shutdown came first.
async fn forward(
    client: &reqwest::Client,
    url: &str,
    message: &DecodedMessage,
    shutdown: &CancellationToken,
) -> Option<Fate> {
    let url = forward_url(url, message.operation);
    let mut pause = Duration::from_millis(200);
    loop {
        let sent = client
            .post(&url)
            .header("Idempotency-Key", &message.idempotency_key)
            .json(&message.body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                return Some(if response.status() == reqwest::StatusCode::ACCEPTED {
                    Fate::Recorded
                } else {
                    Fate::Duplicate
                });
            }
            Ok(response) if response.status().is_client_error() => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                let reason = format!("the API answered {status}: {body}");
                return Some(Fate::Dead(if status == reqwest::StatusCode::CONFLICT {
                    DeadLetterReason::KeyReused(reason)
                } else {
                    DeadLetterReason::Invalid(crate::domain::ValidationError::field("body", reason))
                }));
            }
            Ok(response) => {
                tracing::warn!(status = %response.status(), "the API is failing; retrying");
            }
            Err(e) => tracing::warn!(error.message = %e, "the API is unreachable; retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_BACKOFF);
    }
}

/// Sets `dnsorch_kafka_consumer_lag{partition}` every few seconds: the high watermark minus
/// the consumer's position, for each assigned partition.
async fn report_lag(consumer: Arc<StreamConsumer<IntakeContext>>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        let consumer = consumer.clone();
        let lags = tokio::task::spawn_blocking(move || {
            let Ok(positions) = consumer.position() else {
                return Vec::new();
            };
            positions
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
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
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
    }
}

fn idempotency_header(message: &OwnedMessage) -> Option<&[u8]> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key.eq_ignore_ascii_case(IDEMPOTENCY_HEADER))
        .and_then(|h| h.value)
}

#[cfg(test)]
mod tests {
    use super::*;

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
