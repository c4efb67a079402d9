//! dnsorch: a DNS change-request orchestrator.
//!
//! Clients ask for a DNS record change over HTTP; dnsorch validates it, records it durably,
//! queues it, and a worker applies it through a provisioning backend, then reports the
//! outcome. Every request has a status and a log that can be queried at any time.
//!
//! # Layout
//!
//! - [`cli`]: the command line (`run`, `migrate`).
//! - [`config`]: settings from the environment, `.env` and `.env.<APP_ENV>`.
//! - [`telemetry`]: JSON logs and Prometheus metrics.
//! - [`startup`]: wires the parts from settings and runs them until shutdown.
//! - [`domain`]: names, record data, requests and their validation; no I/O.
//! - [`api`]: the HTTP API (axum), its errors and OpenAPI document.
//! - [`intake`]: the one path by which a request enters: validate, store, enqueue.
//! - [`store`]: the `RequestStore` trait and its SQLite implementation.
//! - [`queue`]: the `TaskChannel` trait, the in-process channel, and the retry policy.
//! - [`worker`]: claim, provision, write the outcome under the lease token.
//! - [`reconciler`]: returns requests whose lease expired to the queue.
//! - [`provision`]: the `Provisioner` trait and the simulated backend.

pub mod api;
pub mod cli;
pub mod config;
pub mod domain;
pub mod intake;
pub mod provision;
pub mod queue;
pub mod reconciler;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod worker;
