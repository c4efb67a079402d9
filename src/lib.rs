//! dnsorch: a DNS change-request orchestrator.
//!
//! Clients ask for a DNS record change over HTTP or Kafka; dnsorch validates it, records it durably,
//! queues it, and a worker applies it through a provisioning backend, then reports the
//! outcome. Every request has a status and a log that can be queried at any time.
//!
//! # Layout
//!
//! - [`cli`]: the command line (`run`, `serve`, `worker`, `consume`, `migrate`, `token`).
//! - [`config`]: settings from the environment, `.env` and `.env.<APP_ENV>`.
//! - [`telemetry`]: JSON logs and Prometheus metrics.
//! - [`tls`]: rustls configurations from PEM files, for the API and forward mode.
//! - [`auth`]: API tokens to verified principals, with a per-process cache.
//! - [`startup`]: wires the parts of a role from settings and runs them until shutdown.
//! - [`domain`]: names, record data, requests and their validation; no I/O.
//! - [`api`]: the HTTP API (axum), its errors and OpenAPI document.
//! - [`intake`]: the one path by which a request enters: validate, store, enqueue; and the
//!   Kafka consumer that feeds it.
//! - [`store`]: the `RequestStore` trait and its SQLite and PostgreSQL implementations.
//! - [`queue`]: the `TaskChannel` trait, the in-process and Redis Streams channels, and the
//!   retry policy.
//! - [`supervise`]: supervised loops: a panic is logged, the loop restarted or the process
//!   stopped, and `/readyz` is 503 meanwhile.
//! - [`worker`]: claim, provision, write the outcome under the lease token.
//! - [`planner`]: dry runs: a change checked as intake checks it, then planned against the
//!   live RRset and the ledger, with nothing stored.
//! - [`reconciler`]: releases expired leases and queues requests that were never queued or
//!   whose delivery may be lost.
//! - [`provision`]: the `Provisioner` trait, the zone router, and the `simulated`,
//!   `rfc2136` and `ansible` backends.
//! - [`tokens`]: the `dnsorch token` commands (create, list, show, rotate, revoke).
//! - [`zones`]: the zones file: which backend (server, key, playbook) serves which zone.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod domain;
pub mod intake;
pub mod planner;
pub mod provision;
pub mod queue;
pub mod ratelimit;
pub mod reconciler;
pub mod startup;
pub mod store;
pub mod supervise;
pub mod telemetry;
pub mod tls;
pub mod tokens;
pub mod webhook;
pub mod worker;
pub mod zones;
