//! Settings: environment variables with the original design's names, loaded after `.env` and
//! `.env.<APP_ENV>`.
//!
//! The real environment wins over both files, and `.env.<APP_ENV>` wins over `.env`. Every
//! setting is also a command-line flag (clap's `env`), and a bad value stops the process at
//! start with a message naming the variable.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use crate::domain::Subnet;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Pretty,
}

/// Everything the service reads from its environment.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// `sqlite://…` (embedded) or `postgres://…`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://dnsorch.db?mode=rwc",
        hide_env_values = true,
        global = true
    )]
    pub database_url: String,

    /// Redis URL of the task channel (`redis://host:port/db`); unset: the in-process channel
    /// in `run`, the database alone in `serve` and `worker`.
    #[arg(long, env = "CELERY_BROKER_URL", hide_env_values = true, global = true)]
    pub celery_broker_url: Option<String>,

    /// Another name for `CELERY_BROKER_URL`, used when that is unset.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, global = true)]
    pub redis_url: Option<String>,

    /// For a `rediss://` URL: the CA file (PEM) that signed Redis's certificate (unset: the
    /// system's roots).
    #[arg(long, env = "REDIS_CA_FILE", global = true)]
    pub redis_ca_file: Option<std::path::PathBuf>,

    /// For a `rediss://` URL to a server that requires client certificates: the certificate
    /// (PEM), with `REDIS_CLIENT_KEY_FILE`.
    #[arg(long, env = "REDIS_CLIENT_CERT_FILE", global = true)]
    pub redis_client_cert_file: Option<std::path::PathBuf>,

    /// The key (PEM) of `REDIS_CLIENT_CERT_FILE`.
    #[arg(long, env = "REDIS_CLIENT_KEY_FILE", global = true)]
    pub redis_client_key_file: Option<std::path::PathBuf>,

    /// The Redis stream that carries task ids.
    #[arg(long, env = "TASK_STREAM", default_value = "dns_tasks", global = true)]
    pub task_stream: String,

    /// Kafka bootstrap servers (`host:port,...`); unset: no Kafka intake.
    #[arg(long, env = "KAFKA_BROKER_URL", global = true)]
    pub kafka_broker_url: Option<String>,

    /// The intake topic; dead letters go to `<topic>.dlq`.
    #[arg(
        long,
        env = "KAFKA_DNS_TOPIC",
        default_value = "dns_requests",
        global = true
    )]
    pub kafka_dns_topic: String,

    /// The consumer group of the intake.
    #[arg(long, env = "KAFKA_GROUP_ID", default_value = "dnsorch", global = true)]
    pub kafka_group_id: String,

    /// Forward mode: the consumer posts each message to this create URL
    /// (`http://api:8000/api/v1/dns/create`; deletes go to `.../delete`) instead of writing
    /// to the database itself.
    #[arg(long, env = "API_URL", hide_env_values = true, global = true)]
    pub api_url: Option<String>,

    /// Forward mode, for an `https://` `API_URL`: the CA file (PEM) that signed the API's
    /// certificate (unset: the system's roots).
    #[arg(long, env = "API_CA_FILE", global = true)]
    pub api_ca_file: Option<std::path::PathBuf>,

    /// Forward mode: the longest wait after the API answers 408 or 429 before the message is
    /// posted again (its `Retry-After`, capped at this; without one, a backoff). Such a
    /// message is retried, never dead-lettered.
    #[arg(long, env = "FORWARD_RETRY_MAX_SECONDS", default_value = "60", value_parser = positive_seconds, global = true)]
    pub forward_retry_max_seconds: Duration,

    /// The largest HTTP request body, and the largest Kafka message payload, in bytes: a
    /// larger body is answered 413, a larger message is a dead letter (`too_large`) that is
    /// never parsed.
    #[arg(long, env = "MAX_BODY_BYTES", default_value = "65536", value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub max_body_bytes: u32,

    /// The largest body of `POST /api/v1/dns/changes` (a change set), in bytes: larger is 413.
    #[arg(long, env = "MAX_CHANGE_SET_BYTES", default_value = "1048576", value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub max_change_set_bytes: u32,

    /// The most changes in one change set: more is a 422 naming `changes`.
    #[arg(long, env = "MAX_CHANGE_SET_ITEMS", default_value = "1000", value_parser = clap::value_parser!(u32).range(1..=100_000), global = true)]
    pub max_change_set_items: u32,

    // 2,000 rather than 500: 15,088 against 13,009-13,767 msg/s into PostgreSQL in
    // scripts/bench.sh.
    /// The most messages in one Kafka batch (recorded in one transaction). The client also
    /// prefetches up to ten batches of messages per partition (`queued.min.messages`).
    #[arg(long, env = "KAFKA_BATCH_MAX", default_value = "2000", value_parser = clap::value_parser!(u32).range(1..=100_000), global = true)]
    pub kafka_batch_max: u32,

    /// The most payload bytes in one Kafka batch (recorded in one transaction; a batch also
    /// holds at most `KAFKA_BATCH_MAX` messages). A message alone over it still makes a batch
    /// of one.
    #[arg(long, env = "KAFKA_BATCH_MAX_BYTES", default_value = "4194304", value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub kafka_batch_max_bytes: u32,

    /// The most kilobytes of messages the Kafka client prefetches for each partition
    /// (`queued.max.messages.kbytes`), and the most one fetch from the broker returns
    /// (`fetch.max.bytes`; the broker may exceed it by one message, so that a message larger
    /// than it still gets through).
    #[arg(long, env = "KAFKA_PREFETCH_KBYTES", default_value = "16384", value_parser = clap::value_parser!(u32).range(1024..=2_097_151), global = true)]
    pub kafka_prefetch_kbytes: u32,

    /// How many Kafka batches (of different partitions) are recorded at once.
    #[arg(long, env = "KAFKA_CONCURRENT_BATCHES", default_value = "4", value_parser = clap::value_parser!(u32).range(1..=64), global = true)]
    pub kafka_concurrent_batches: u32,

    /// A file of librdkafka client properties for every Kafka client (`name=value` lines, `#`
    /// comments), e.g. `security.protocol`, `sasl.mechanism`, `ssl.ca.location`. Each
    /// `KAFKA_PROPERTY_<NAME>` environment variable (NAME upper case, `_` for `.`) sets one too,
    /// and wins over the file; no flag takes a property. Properties dnsorch sets itself are
    /// refused.
    #[arg(long, env = "KAFKA_PROPERTIES", global = true)]
    pub kafka_properties: Option<std::path::PathBuf>,

    /// The `KAFKA_PROPERTY_*` environment variables (values from the environment only).
    #[arg(skip = crate::intake::kafka_properties::PropertyVariables::from_env())]
    pub kafka_property_variables: crate::intake::kafka_properties::PropertyVariables,

    /// Where the HTTP API listens.
    #[arg(
        long,
        env = "BIND_ADDR",
        default_value = "127.0.0.1:8000",
        global = true
    )]
    pub bind_addr: SocketAddr,

    /// Where `worker` and `consume` serve `/healthz`, `/readyz` and `/metrics` (port 0: any
    /// free port, logged at start). They never bind `BIND_ADDR`, so every role starts on one
    /// host with one environment.
    #[arg(long, env = "OPS_ADDR", default_value = "127.0.0.1:0", global = true)]
    pub ops_addr: SocketAddr,

    /// Where `dnsorch webhook` serves external-dns's provider API. external-dns's default; a
    /// sidecar's loopback: never expose it beyond the pod or host.
    #[arg(
        long,
        env = "WEBHOOK_ADDR",
        default_value = "127.0.0.1:8888",
        global = true
    )]
    pub webhook_addr: SocketAddr,

    /// Where `dnsorch webhook` serves /healthz, /readyz and /metrics (where external-dns
    /// deployments probe).
    #[arg(
        long,
        env = "WEBHOOK_OPS_ADDR",
        default_value = "0.0.0.0:8080",
        global = true
    )]
    pub webhook_ops_addr: SocketAddr,

    /// The file holding the token `dnsorch webhook` acts under (trimmed of surrounding
    /// whitespace); without it, the `WEBHOOK_TOKEN` environment variable (never a flag).
    #[arg(long, env = "WEBHOOK_TOKEN_FILE", global = true)]
    pub webhook_token_file: Option<std::path::PathBuf>,

    /// The token `dnsorch webhook` acts under, when there is no WEBHOOK_TOKEN_FILE: from the
    /// environment only (a flag, readable by every user of the host, is refused).
    #[arg(long, env = "WEBHOOK_TOKEN", hide_env_values = true, value_parser = secret, global = true)]
    pub webhook_token: Option<crate::domain::Secret>,

    /// HTTPS: the certificate chain (PEM, the server's certificate first) of the API on
    /// `BIND_ADDR`, and of `/healthz`, `/readyz` and `/metrics` on `OPS_ADDR`; with
    /// `TLS_KEY_FILE`. Unset: plain HTTP.
    #[arg(long, env = "TLS_CERT_FILE", global = true)]
    pub tls_cert_file: Option<std::path::PathBuf>,

    /// The private key (PEM) of `TLS_CERT_FILE`.
    #[arg(long, env = "TLS_KEY_FILE", global = true)]
    pub tls_key_file: Option<std::path::PathBuf>,

    /// HTTPS only: every client must present a certificate signed by this CA (PEM), on top
    /// of its token.
    #[arg(long, env = "TLS_CLIENT_CA_FILE", global = true)]
    pub tls_client_ca_file: Option<std::path::PathBuf>,

    /// How often the TLS files are read again (also on SIGHUP); changed files make the
    /// configuration of new connections.
    #[arg(long, env = "TLS_RELOAD_INTERVAL_SECONDS", default_value = "10", value_parser = positive_seconds, global = true)]
    pub tls_reload_interval_seconds: Duration,

    /// How long each process reuses a token lookup (found or not): a revocation or rotation
    /// takes effect everywhere within this time.
    #[arg(long, env = "TOKEN_CACHE_SECONDS", default_value = "5", value_parser = seconds, global = true)]
    pub token_cache_seconds: Duration,

    /// The most token lookups each process caches.
    #[arg(long, env = "TOKEN_CACHE_ENTRIES", default_value = "10000", value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub token_cache_entries: u32,

    /// The shortest time between two writes of a token's `last_used_at` by one process.
    #[arg(long, env = "TOKEN_LAST_USED_INTERVAL_SECONDS", default_value = "60", value_parser = seconds, global = true)]
    pub token_last_used_interval_seconds: Duration,

    /// Proxies (CIDRs, comma-separated) whose `X-Forwarded-For` names the client; unset:
    /// the client is the socket's peer.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', global = true)]
    pub trusted_proxies: Vec<Subnet>,

    /// Serve `/metrics` without a token (by default it needs an admin or `metrics` token).
    #[arg(long, env = "METRICS_PUBLIC", default_value = "false", value_parser = clap::builder::BoolishValueParser::new(), global = true)]
    pub metrics_public: bool,

    /// Change requests per second each non-admin token may make, per process (a token
    /// bucket; admin tokens and trusted Kafka messages are exempt).
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", default_value = "1000", value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub rate_limit_per_second: u32,

    /// How many change requests a non-admin token may make at once before the rate applies.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value = "2000", value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub rate_limit_burst: u32,

    /// The most unfinished (PENDING or PROCESSING) requests one account may have for one owner
    /// name; more are refused with 429, so one account's flood cannot block a name for long.
    #[arg(long, env = "MAX_UNFINISHED_PER_NAME", default_value = "100", value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub max_unfinished_per_name: u32,

    /// The most bytes a request's `resource.config.extra_config` may take as compact JSON;
    /// a larger one is refused with 422.
    #[arg(long, env = "MAX_EXTRA_CONFIG_BYTES", default_value = "4096", value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub max_extra_config_bytes: u32,

    /// PostgreSQL: insert statements in flight at once per process; the requests that arrive
    /// meanwhile wait and go in together, in one statement and one commit.
    #[arg(long, env = "INSERT_WRITERS", default_value = "2", value_parser = clap::value_parser!(u32).range(1..=64), global = true)]
    pub insert_writers: u32,

    /// PostgreSQL: the most requests one insert statement takes.
    #[arg(long, env = "INSERT_BATCH_MAX", default_value = "256", value_parser = clap::value_parser!(u32).range(1..=10000), global = true)]
    pub insert_batch_max: u32,

    /// Accounts (comma-separated) whose Kafka messages need no token: only for a topic whose
    /// producers the broker's ACLs control. Such requests are recorded as `kafka-trusted`.
    #[arg(
        long,
        env = "KAFKA_TRUSTED_ACCOUNTS",
        value_delimiter = ',',
        global = true
    )]
    pub kafka_trusted_accounts: Vec<String>,

    /// Forward mode: a file holding the token sent with messages that carry none (create it
    /// with `--forwarder` to forward the trusted accounts' messages).
    #[arg(long, env = "API_TOKEN_FILE", global = true)]
    pub api_token_file: Option<std::path::PathBuf>,

    /// `json` (one object per line) or `pretty`.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "json",
        global = true
    )]
    pub log_format: LogFormat,

    /// A level (`info`) or filter directives (`info,dnsorch=debug`).
    #[arg(long, env = "LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: String,

    /// The most characters of one piece of client input (a dead letter's reason) a log line
    /// shows; control characters in it are always escaped.
    #[arg(long, env = "LOG_MAX_INPUT_CHARS", default_value = "1024", value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub log_max_input_chars: u32,

    /// How long the simulated backend works on each request.
    #[arg(long, env = "SIMULATED_DELAY_SECONDS", default_value = "10", value_parser = seconds, global = true)]
    pub simulated_delay_seconds: Duration,

    /// The share of simulated attempts that fail (transiently), 0 to 1.
    #[arg(long, env = "SIMULATED_FAILURE_RATE", default_value = "0", value_parser = rate, global = true)]
    pub simulated_failure_rate: f64,

    /// Fault injection for tests: the simulated backend panics on a request for exactly this
    /// name (the worker's panic is then supervised like any other). Unset in production.
    #[arg(long, env = "SIMULATED_PANIC_NAME", global = true)]
    pub simulated_panic_name: Option<String>,

    /// Attempts per request before a transient error becomes FAILED.
    #[arg(long, env = "MAX_ATTEMPTS", default_value = "5", value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub max_attempts: u32,

    /// The first retry's backoff; it doubles with each attempt.
    #[arg(long, env = "RETRY_BASE_SECONDS", default_value = "1", value_parser = seconds, global = true)]
    pub retry_base_seconds: Duration,

    /// The longest backoff.
    #[arg(long, env = "RETRY_MAX_SECONDS", default_value = "300", value_parser = seconds, global = true)]
    pub retry_max_seconds: Duration,

    /// How long a worker's claim holds without renewal (it renews every third of this).
    #[arg(long, env = "LEASE_SECONDS", default_value = "60", value_parser = positive_seconds, global = true)]
    pub lease_seconds: Duration,

    /// A worker starts no DNS write once its claim's last successful renewal is older than
    /// `LEASE_SECONDS` minus this (default: a quarter of the lease); less than the lease.
    #[arg(long, env = "LEASE_MARGIN_SECONDS", value_parser = seconds, global = true)]
    pub lease_margin_seconds: Option<Duration>,

    /// Requests processed at once by this process's workers (0: no workers).
    #[arg(long, env = "WORKER_CONCURRENCY", default_value = "16", value_parser = clap::value_parser!(u16), global = true)]
    pub worker_concurrency: u16,

    /// How often the reconciler looks for expired leases.
    #[arg(long, env = "RECONCILE_INTERVAL_SECONDS", default_value = "5", value_parser = positive_seconds, global = true)]
    pub reconcile_interval_seconds: Duration,

    /// How long a PENDING request may sit after it was queued before the reconciler queues it
    /// again (its delivery may have been lost).
    #[arg(long, env = "REQUEUE_AFTER_SECONDS", default_value = "30", value_parser = positive_seconds, global = true)]
    pub requeue_after_seconds: Duration,

    /// How long `serve` and `worker` wait at start for the database and its schema.
    #[arg(long, env = "SCHEMA_WAIT_SECONDS", default_value = "60", value_parser = seconds, global = true)]
    pub schema_wait_seconds: Duration,

    /// How long an idle worker waits on the task channel before sweeping the database.
    #[arg(long, env = "POLL_INTERVAL_SECONDS", default_value = "1", value_parser = positive_seconds, global = true)]
    pub poll_interval_seconds: Duration,

    /// The most API requests served at once by this process; past it a request is answered
    /// 503 `overloaded` with `Retry-After` at once instead of waiting.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value = "1024", value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub max_concurrent_requests: u32,

    /// How long a client has to send a whole request head (request line and headers) from
    /// the moment the server waits for it; past it the connection is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECONDS", default_value = "10", value_parser = positive_seconds, global = true)]
    pub header_read_timeout_seconds: Duration,

    /// The longest an API request may take, its body included, before it is answered 503
    /// `timeout`.
    #[arg(long, env = "REQUEST_TIMEOUT_SECONDS", default_value = "30", value_parser = positive_seconds, global = true)]
    pub request_timeout_seconds: Duration,

    /// How long `/metrics` reuses its count of requests by status (0: count at every scrape).
    #[arg(long, env = "METRICS_STATUS_REFRESH_SECONDS", default_value = "5", value_parser = seconds, global = true)]
    pub metrics_status_refresh_seconds: Duration,

    /// How long a request waits for a database connection before it is answered 503.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_SECONDS", default_value = "2", value_parser = positive_seconds, global = true)]
    pub db_acquire_timeout_seconds: Duration,

    /// The zones file (TOML): which backend serves which zone. Unset: `dnsorch.toml` in the
    /// working directory when present, else every name goes to the simulated backend (which
    /// only `run`, or `ALLOW_SIMULATED=true`, accepts).
    #[arg(long, env = "DNSORCH_CONFIG", global = true)]
    pub dnsorch_config: Option<std::path::PathBuf>,

    /// rfc2136 zones: the most bytes of records one UPDATE message packs. Changes waiting
    /// together join a message while their records, encoded, fit; a larger change goes alone.
    #[arg(long, env = "RFC2136_BATCH_MAX_BYTES", default_value = "16384", value_parser = clap::value_parser!(u32).range(512..=60000), global = true)]
    pub rfc2136_batch_max_bytes: u32,

    /// Let `serve`, `worker` and direct-mode `consume` start without zones (no zones file, or
    /// one that declares none), sending every name to the simulated backend, which changes no
    /// DNS. Without it they refuse to start; `run` always may, with a warning.
    #[arg(long, env = "ALLOW_SIMULATED", default_value = "false", value_parser = clap::builder::BoolishValueParser::new(), global = true)]
    pub allow_simulated: bool,

    /// How long a worker or the reconciler that panicked stays down before it is started
    /// again (`/readyz` is 503 meanwhile).
    #[arg(long, env = "TASK_RESTART_DELAY_SECONDS", default_value = "5", value_parser = seconds, global = true)]
    pub task_restart_delay_seconds: Duration,

    /// How long work in flight may run on after SIGINT/SIGTERM before it is released.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value = "30", value_parser = seconds, global = true)]
    pub shutdown_grace_seconds: Duration,
}

impl Settings {
    /// The task channel's Redis URL: `CELERY_BROKER_URL`, else `REDIS_URL`.
    pub fn broker_url(&self) -> Option<&str> {
        self.celery_broker_url
            .as_deref()
            .or(self.redis_url.as_deref())
            .filter(|url| !url.is_empty())
    }

    /// Whether `DATABASE_URL` names SQLite.
    pub fn uses_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// The trusted Kafka accounts, without empty entries.
    pub fn trusted_accounts(&self) -> Vec<String> {
        self.kafka_trusted_accounts
            .iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect()
    }
}

/// The settings whose URLs may carry a password, by their argument ids and variables.
const URL_SETTINGS: [(&str, &str); 4] = [
    ("database_url", "DATABASE_URL"),
    ("celery_broker_url", "CELERY_BROKER_URL"),
    ("redis_url", "REDIS_URL"),
    ("api_url", "API_URL"),
];

/// Refuses a URL with a password given as a command-line flag, where every user of the host
/// can read it (`ps`, `/proc/<pid>/cmdline`): secrets come from the environment, `.env` files
/// or files (`PGPASSFILE`, `API_TOKEN_FILE`, `KAFKA_PROPERTIES`).
///
/// # Errors
/// Such a flag was given.
pub fn refuse_secrets_on_command_line(matches: &clap::ArgMatches) -> anyhow::Result<()> {
    if matches.value_source("webhook_token") == Some(clap::parser::ValueSource::CommandLine) {
        anyhow::bail!(
            "--webhook-token is a secret, which any user of this host can read on a command line: \
             set WEBHOOK_TOKEN in the environment or use WEBHOOK_TOKEN_FILE"
        );
    }
    for (id, variable) in URL_SETTINGS {
        let from_command_line =
            matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        let url = matches.get_one::<String>(id).map(String::as_str);
        if from_command_line && url.is_some_and(has_password) {
            let flag = id.replace('_', "-");
            anyhow::bail!(
                "--{flag} carries a password, which any user of this host can read on a command \
                 line: set {variable} in the environment or an .env file instead"
            );
        }
    }
    Ok(())
}

/// A secret setting's value, trimmed of surrounding whitespace.
fn secret(text: &str) -> Result<crate::domain::Secret, String> {
    match text.trim() {
        "" => Err("is empty".into()),
        text => Ok(crate::domain::Secret::presented(text)),
    }
}

/// Whether `url` carries a password (`scheme://user:password@host`).
pub fn has_password(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|url| url.password().is_some())
}

/// Loads `.env.<APP_ENV>` and then `.env` from `dir`, neither overriding what is already set,
/// so the real environment wins, then the profile, then `.env`. Call before any thread starts.
///
/// # Errors
/// `APP_ENV` names a profile whose file is missing or unreadable, or a file does not parse.
pub fn load_env_files(dir: &Path) -> anyhow::Result<()> {
    let base = dir.join(".env");
    let app_env = match std::env::var("APP_ENV") {
        Ok(value) => Some(value),
        Err(_) if base.exists() => dotenvy::from_path_iter(&base)
            .with_context(|| format!("Failed to read {}", base.display()))?
            .filter_map(Result::ok)
            .find_map(|(key, value)| (key == "APP_ENV").then_some(value)),
        Err(_) => None,
    };
    if let Some(app_env) = app_env.filter(|v| !v.is_empty()) {
        if !app_env
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            anyhow::bail!("APP_ENV '{app_env}' is not a profile name (letters, digits, '-', '_')");
        }
        let profile = dir.join(format!(".env.{app_env}"));
        dotenvy::from_path(&profile).with_context(|| {
            format!(
                "APP_ENV is '{app_env}' but {} could not be loaded",
                profile.display()
            )
        })?;
    }
    if base.exists() {
        dotenvy::from_path(&base).with_context(|| format!("Failed to load {}", base.display()))?;
    }
    Ok(())
}

fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("'{text}' is not a non-negative, finite number of seconds"))
}

fn positive_seconds(text: &str) -> Result<Duration, String> {
    let value = seconds(text)?;
    if value.is_zero() {
        return Err("must be greater than 0".into());
    }
    Ok(value)
}

fn rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("'{text}' is not a number from 0 to 1")),
    }
}
