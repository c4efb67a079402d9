//! The Redis task channel: a stream (`TASK_STREAM`, default `dns_tasks`) read by the consumer
//! group `dnsorch`.
//!
//! Entries carry only a request id. A worker acknowledges an entry after the outcome of its
//! attempt is committed, or at once when its claim finds nothing to do, so an entry whose
//! worker died stays pending in the group; we take such entries over with `XAUTOCLAIM` once
//! they have been idle for a lease, and the claim then finds out whether anything is left to
//! do. The database stays the one recovery path: if Redis loses entries, the reconciler
//! queues the requests again.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamMaxlen, StreamReadOptions, StreamReadReply,
};
use redis::{ClientTlsConfig, TlsCertificates};
use tokio::sync::Mutex;

use super::{Delivery, QueueError, TaskChannel};
use crate::domain::RequestId;

/// The consumer group every dnsorch worker reads in.
const GROUP: &str = "dnsorch";
/// How many entries one read takes.
const READ_COUNT: usize = 16;
/// Roughly how many entries the stream keeps; older, long-acknowledged ones are trimmed.
const MAX_STREAM_LEN: usize = 1_000_000;
/// How often this process looks for entries abandoned by dead consumers.
const AUTOCLAIM_EVERY: Duration = Duration::from_secs(15);

/// A task channel on a Redis stream.
pub struct RedisChannel {
    stream: String,
    consumer: String,
    /// Short commands (XADD, XACK, XAUTOCLAIM, PING).
    commands: ConnectionManager,
    /// Blocking reads get a connection of their own, so they never hold up the commands.
    reader: Mutex<Reader>,
    /// How long an entry must be idle before another consumer takes it over.
    claim_idle: Duration,
}

struct Reader {
    connection: ConnectionManager,
    buffered: VecDeque<Delivery>,
    group_ready: bool,
    last_autoclaim: Option<Instant>,
}

/// The files a `rediss://` connection uses beyond the URL: the CA that signed the server's
/// certificate (`REDIS_CA_FILE`; without it the system's roots) and a client certificate and
/// key for servers that require one (`REDIS_CLIENT_CERT_FILE`, `REDIS_CLIENT_KEY_FILE`).
#[derive(Debug, Clone, Default)]
pub struct RedisTls {
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

impl RedisTls {
    /// The client for `url`: with these files for a `rediss://` URL that needs them.
    fn client(&self, url: &str) -> anyhow::Result<redis::Client> {
        let read = crate::tls::read;
        let client_tls = match (&self.client_cert_file, &self.client_key_file) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read(cert, "REDIS_CLIENT_CERT_FILE")?,
                client_key: read(key, "REDIS_CLIENT_KEY_FILE")?,
            }),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => anyhow::bail!(
                "REDIS_CLIENT_CERT_FILE and REDIS_CLIENT_KEY_FILE go together: set both or neither"
            ),
        };
        let root_cert = self
            .ca_file
            .as_ref()
            .map(|path| read(path, "REDIS_CA_FILE"))
            .transpose()?;
        if client_tls.is_none() && root_cert.is_none() {
            return Ok(redis::Client::open(url)?);
        }
        if !url.starts_with("rediss://") {
            anyhow::bail!(
                "REDIS_CA_FILE and REDIS_CLIENT_CERT_FILE apply to rediss:// URLs only; CELERY_BROKER_URL is not one"
            );
        }
        Ok(redis::Client::build_with_tls(
            url,
            TlsCertificates {
                client_tls,
                root_cert,
            },
        )?)
    }
}

impl RedisChannel {
    /// A channel on `url`. Nothing is contacted yet: the process starts (and intake keeps
    /// working) while Redis is unreachable.
    ///
    /// # Errors
    /// The URL does not parse.
    pub fn new(url: &str, stream: &str, claim_idle: Duration) -> anyhow::Result<Self> {
        Self::with_tls(url, stream, claim_idle, &RedisTls::default())
    }

    /// [`RedisChannel::new`], with the CA and client certificate of `tls` for a `rediss://`
    /// URL (verified: the server's certificate must carry the URL's host name).
    ///
    /// # Errors
    /// The URL does not parse, a file cannot be read, or files are given for a `redis://` URL.
    pub fn with_tls(
        url: &str,
        stream: &str,
        claim_idle: Duration,
        tls: &RedisTls,
    ) -> anyhow::Result<Self> {
        let client = tls.client(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        // A blocking read may take the whole poll interval, so its answer may come late.
        let reader_config = config.set_response_timeout(Some(Duration::from_secs(60)));
        let connection = ConnectionManager::new_lazy_with_config(client, reader_config)?;
        let consumer = format!(
            "{}-{}-{}",
            hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Ok(Self {
            stream: stream.to_owned(),
            consumer,
            commands,
            reader: Mutex::new(Reader {
                connection,
                buffered: VecDeque::new(),
                group_ready: false,
                last_autoclaim: None,
            }),
            claim_idle,
        })
    }

    async fn ensure_group(&self, reader: &mut Reader) -> Result<(), QueueError> {
        if reader.group_ready {
            return Ok(());
        }
        let created: redis::RedisResult<()> = reader
            .connection
            .xgroup_create_mkstream(&self.stream, GROUP, "0")
            .await;
        match created {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(unavailable(e)),
        }
        reader.group_ready = true;
        Ok(())
    }

    async fn drop_unreadable(&self, entry_ids: Vec<String>) -> Result<(), QueueError> {
        if entry_ids.is_empty() {
            return Ok(());
        }
        tracing::warn!(entries = ?entry_ids, "acknowledging stream entries without a request id");
        let mut connection = self.commands.clone();
        let _: i64 = connection
            .xack(&self.stream, GROUP, &entry_ids)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Takes over entries other consumers left pending for longer than a lease.
    async fn autoclaim(&self, reader: &mut Reader) -> Result<(), QueueError> {
        let due = reader
            .last_autoclaim
            .is_none_or(|at| at.elapsed() >= AUTOCLAIM_EVERY);
        if !due {
            return Ok(());
        }
        reader.last_autoclaim = Some(Instant::now());
        let idle_ms = u64::try_from(self.claim_idle.as_millis()).unwrap_or(u64::MAX);
        let reply: StreamAutoClaimReply = reader
            .connection
            .xautoclaim_options(
                &self.stream,
                GROUP,
                &self.consumer,
                idle_ms,
                "0-0",
                StreamAutoClaimOptions::default().count(READ_COUNT * 4),
            )
            .await
            .map_err(unavailable)?;
        let unreadable: Vec<String> = reply
            .claimed
            .iter()
            .filter_map(|entry| push_entry(&mut reader.buffered, entry))
            .collect();
        self.drop_unreadable(unreadable).await
    }
}

#[async_trait::async_trait]
impl TaskChannel for RedisChannel {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn enqueue(&self, id: RequestId) -> Result<(), QueueError> {
        let mut connection = self.commands.clone();
        let _: String = connection
            .xadd_maxlen(
                &self.stream,
                StreamMaxlen::Approx(MAX_STREAM_LEN),
                "*",
                &[("request_id", id.to_string())],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn enqueue_many(&self, ids: &[RequestId]) -> Result<(), QueueError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut pipeline = redis::pipe();
        for id in ids {
            pipeline
                .xadd_maxlen(
                    &self.stream,
                    StreamMaxlen::Approx(MAX_STREAM_LEN),
                    "*",
                    &[("request_id", id.to_string())],
                )
                .ignore();
        }
        let mut connection = self.commands.clone();
        let () = pipeline
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn next(&self, wait: Duration) -> Result<Option<Delivery>, QueueError> {
        let mut reader = self.reader.lock().await;
        if let Some(delivery) = reader.buffered.pop_front() {
            return Ok(Some(delivery));
        }
        self.ensure_group(&mut reader).await?;
        self.autoclaim(&mut reader).await?;
        if let Some(delivery) = reader.buffered.pop_front() {
            return Ok(Some(delivery));
        }
        let block_ms = usize::try_from(wait.as_millis())
            .unwrap_or(usize::MAX)
            .max(1);
        let options = StreamReadOptions::default()
            .group(GROUP, &self.consumer)
            .count(READ_COUNT)
            .block(block_ms);
        let read: redis::RedisResult<Option<StreamReadReply>> = reader
            .connection
            .xread_options(&[&self.stream], &[">"], &options)
            .await;
        let reply = match read {
            Ok(reply) => reply,
            Err(e) => {
                if e.code() == Some("NOGROUP") {
                    // The stream was deleted (or Redis restarted empty): make the group again.
                    reader.group_ready = false;
                }
                return Err(unavailable(e));
            }
        };
        let mut unreadable = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in &key.ids {
                unreadable.extend(push_entry(&mut reader.buffered, entry));
            }
        }
        self.drop_unreadable(unreadable).await?;
        Ok(reader.buffered.pop_front())
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let Some(entry_id) = &delivery.entry_id else {
            return Ok(());
        };
        let mut connection = self.commands.clone();
        let _: i64 = connection
            .xack(&self.stream, GROUP, &[entry_id])
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let mut connection = self.commands.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// Buffers an entry's delivery, or returns the entry's id if it holds no request id (we
/// acknowledge such an entry at once, so it does not come back forever).
fn push_entry(buffer: &mut VecDeque<Delivery>, entry: &redis::streams::StreamId) -> Option<String> {
    let parsed = entry
        .get::<String>("request_id")
        .and_then(|id| id.parse::<RequestId>().ok());
    match parsed {
        Some(request_id) => {
            buffer.push_back(Delivery {
                request_id,
                entry_id: Some(entry.id.clone()),
            });
            None
        }
        None => Some(entry.id.clone()),
    }
}

fn unavailable(error: redis::RedisError) -> QueueError {
    QueueError::Unavailable(error.to_string())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "dnsorch".to_owned())
}
