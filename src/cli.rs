//! The command line: `dnsorch [run | serve | worker | consume | migrate]`, settings from flags or the
//! environment.

use clap::{Parser, Subcommand};

use crate::config::Settings;

/// dnsorch: a DNS change-request orchestrator.
#[derive(Debug, Parser)]
#[command(name = "dnsorch", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub settings: Settings,
}

/// What to run; `run` when none is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// API, workers and reconciler in one process (the default); applies migrations.
    Run,
    /// The HTTP API (and the reconciler) only; needs PostgreSQL.
    Serve,
    /// Task workers (and the reconciler) only; needs PostgreSQL.
    Worker {
        /// Requests processed at once (default: WORKER_CONCURRENCY).
        #[arg(long)]
        concurrency: Option<u16>,
    },
    /// Kafka intake only (KAFKA_BROKER_URL), with /healthz, /readyz and /metrics on BIND_ADDR.
    Consume,
    /// Apply database migrations and exit.
    Migrate,
}
