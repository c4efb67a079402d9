//! The command line: `dnsorch [run | serve | worker | consume | webhook | migrate | token …]`, settings
//! from flags or the environment.

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
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
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
    /// Kafka intake only (KAFKA_BROKER_URL), with /healthz, /readyz and /metrics on OPS_ADDR.
    Consume,
    /// The external-dns webhook provider on WEBHOOK_ADDR (and /healthz, /readyz, /metrics
    /// on WEBHOOK_OPS_ADDR), acting under WEBHOOK_TOKEN_FILE's token; runs no workers.
    Webhook,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage API tokens in the configured database.
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
}

/// `dnsorch token …`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum TokenCommand {
    /// Create a token; prints its secret alone on standard output (details on standard error).
    Create {
        /// The account the token acts for.
        #[arg(long)]
        account: String,
        /// A name for people, recorded with every request the token submits.
        #[arg(long)]
        name: String,
        /// `SUFFIX[:TYPE,TYPE…]=PERM,PERM…`, e.g. `example.com=read,create,delete` or
        /// `_acme-challenge.example.com:TXT=create`; repeat for more.
        #[arg(long = "policy", value_name = "POLICY")]
        policies: Vec<String>,
        /// When it stops working: `3600`, `45m`, `12h`, `90d`, `1h30m`; default never.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// A client network it may be used from (CIDR); repeat for more; default any.
        #[arg(long = "allowed-subnet", value_name = "CIDR")]
        allowed_subnets: Vec<String>,
        /// May manage tokens and act for any account.
        #[arg(long)]
        admin: bool,
        /// May read /metrics.
        #[arg(long)]
        metrics: bool,
        /// May forward Kafka messages for KAFKA_TRUSTED_ACCOUNTS (forward mode's API_TOKEN_FILE).
        #[arg(long)]
        forwarder: bool,
    },
    /// List tokens, newest first (never their secrets).
    List {
        /// Only this account's.
        #[arg(long)]
        account: Option<String>,
    },
    /// Show one token as JSON.
    Show { id: String },
    /// Give a token a new secret (printed alone on standard output); the old one stops working.
    Rotate { id: String },
    /// Revoke a token. The last valid admin token cannot be revoked.
    Revoke { id: String },
}
