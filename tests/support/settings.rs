//! Settings for an application under test: a SQLite file in `dir`, no simulated delay, no
//! background workers, no Kafka, and short intervals. Included by the test crates that need it.

use std::time::Duration;

use dnsorch::config::{LogFormat, Settings};
use tempfile::TempDir;

/// Test settings over a fresh SQLite file in `dir`.
pub(crate) fn test_settings(dir: &TempDir) -> Settings {
    Settings {
        database_url: format!("sqlite://{}/dnsorch.db?mode=rwc", dir.path().display()),
        celery_broker_url: None,
        redis_url: None,
        task_stream: "dns_tasks".into(),
        kafka_broker_url: None,
        kafka_dns_topic: "dns_requests".into(),
        kafka_group_id: "dnsorch".into(),
        api_url: None,
        forward_retry_max_seconds: Duration::from_secs(5),
        max_body_bytes: 64 * 1024,
        kafka_batch_max: 2000,
        kafka_batch_max_bytes: 4 * 1024 * 1024,
        kafka_prefetch_kbytes: 16 * 1024,
        kafka_concurrent_batches: 4,
        bind_addr: "127.0.0.1:0".parse().unwrap(),
        ops_addr: "127.0.0.1:0".parse().unwrap(),
        token_cache_seconds: Duration::from_millis(200),
        token_cache_entries: 1000,
        token_last_used_interval_seconds: Duration::from_secs(60),
        trusted_proxies: Vec::new(),
        metrics_public: false,
        kafka_trusted_accounts: Vec::new(),
        rate_limit_per_second: 1000,
        rate_limit_burst: 2000,
        max_unfinished_per_name: 100,
        max_extra_config_bytes: 4096,
        insert_writers: 2,
        insert_batch_max: 256,
        api_token_file: None,
        log_format: LogFormat::Json,
        log_level: "warn".into(),
        log_max_input_chars: 1024,
        simulated_delay_seconds: Duration::ZERO,
        simulated_failure_rate: 0.0,
        simulated_panic_name: None,
        max_attempts: 5,
        retry_base_seconds: Duration::ZERO,
        retry_max_seconds: Duration::ZERO,
        lease_seconds: Duration::from_secs(30),
        lease_margin_seconds: None,
        worker_concurrency: 0,
        reconcile_interval_seconds: Duration::from_millis(100),
        requeue_after_seconds: Duration::from_secs(30),
        schema_wait_seconds: Duration::from_secs(10),
        poll_interval_seconds: Duration::from_millis(50),
        db_acquire_timeout_seconds: Duration::from_secs(2),
        max_concurrent_requests: 1024,
        header_read_timeout_seconds: Duration::from_secs(10),
        request_timeout_seconds: Duration::from_secs(30),
        metrics_status_refresh_seconds: Duration::ZERO,
        task_restart_delay_seconds: Duration::from_millis(100),
        shutdown_grace_seconds: Duration::from_secs(5),
        dnsorch_config: None,
        rfc2136_batch_max_bytes: 16384,
        allow_simulated: false,
    }
}
