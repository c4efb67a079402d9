//! Wiring: builds the store, channel, provisioner, intake, workers, reconciler and router from
//! `Settings`, and runs them until a shutdown token fires.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::Settings;
use crate::intake::Intake;
use crate::provision::{Provisioner, SimulatedProvisioner};
use crate::queue::{LocalChannel, TaskChannel};
use crate::reconciler::Reconciler;
use crate::store::{PostgresStore, RequestStore, SqliteStore};
use crate::telemetry;
use crate::worker::Worker;

/// How long released work gets to write "released" after the grace period.
const RELEASE_BOUND: Duration = Duration::from_secs(5);

/// Opens the database named by `DATABASE_URL` and applies its migrations.
///
/// # Errors
/// The URL names an unsupported database, or the database cannot be opened or migrated.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn RequestStore>> {
    let url = settings.database_url.as_str();
    if url.starts_with("sqlite:") {
        let store = SqliteStore::open(url, settings.db_acquire_timeout_seconds)
            .await
            .context("Failed to open the SQLite database named by DATABASE_URL")?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PostgresStore::open(url, settings.db_acquire_timeout_seconds)
            .await
            .context("Failed to open the PostgreSQL database named by DATABASE_URL")?;
        return Ok(Arc::new(store));
    }
    anyhow::bail!("DATABASE_URL must start with sqlite://, postgres:// or postgresql://")
}

/// The all-in-one process: API, workers and reconciler.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    worker: Worker,
    reconciler: Reconciler,
    settings: Settings,
}

impl Application {
    /// Opens the database (migrating it), binds the listener and wires the parts.
    ///
    /// # Errors
    /// The database cannot be opened or the address cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = open_store(&settings).await?;
        let channel: Arc<dyn TaskChannel> = Arc::new(LocalChannel::new());
        let provisioner: Arc<dyn Provisioner> = Arc::new(SimulatedProvisioner::new(
            settings.simulated_delay_seconds,
            settings.simulated_failure_rate,
        ));
        let worker = Worker::new(
            store.clone(),
            channel.clone(),
            provisioner,
            settings.worker_config(),
        );
        let reconciler = Reconciler::new(
            store.clone(),
            channel.clone(),
            settings.max_attempts,
            settings.reconcile_interval_seconds,
        );
        let listener = TcpListener::bind(settings.bind_addr)
            .await
            .with_context(|| format!("Failed to bind BIND_ADDR {}", settings.bind_addr))?;
        let state = AppState {
            intake: Intake::new(store.clone(), channel),
            store,
            metrics: telemetry::metrics_handle(),
        };
        Ok(Self {
            listener,
            state,
            worker,
            reconciler,
            settings,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// A worker over this application's parts, for driving work by hand (tests).
    pub fn worker(&self) -> Worker {
        self.worker.clone()
    }

    /// The reconciler, for running a pass by hand (tests).
    pub fn reconciler(&self) -> Reconciler {
        self.reconciler.clone()
    }

    /// The store.
    pub fn store(&self) -> Arc<dyn RequestStore> {
        self.state.store.clone()
    }

    /// Serves until `shutdown` fires, then stops accepting, lets work in flight finish within
    /// `SHUTDOWN_GRACE_SECONDS`, releases what is still running, and returns.
    ///
    /// # Errors
    /// The server failed.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let abort = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for _ in 0..self.settings.worker_concurrency {
            tasks.spawn(
                self.worker
                    .clone()
                    .run_until_stopped(shutdown.clone(), abort.clone()),
            );
        }
        tasks.spawn(self.reconciler.run_until_stopped(shutdown.clone()));
        tracing::info!(
            address = %self.listener.local_addr()?,
            workers = self.settings.worker_concurrency,
            "dnsorch is serving"
        );
        let router = api::router(self.state);
        axum::serve(self.listener, router.into_make_service())
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
            .context("The HTTP server failed")?;
        tracing::info!("no longer accepting requests; waiting for work in flight");
        let grace = self.settings.shutdown_grace_seconds;
        if tokio::time::timeout(grace, drain(&mut tasks))
            .await
            .is_err()
        {
            tracing::warn!("work still running after the grace period; releasing it");
            abort.cancel();
            if tokio::time::timeout(RELEASE_BOUND, drain(&mut tasks))
                .await
                .is_err()
            {
                tasks.abort_all();
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

async fn drain(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}
