//! Wiring: builds the store, channel, provisioner, intake, workers, reconciler and router from
//! `Settings` for a role (`run`, `serve`, `worker`, `consume`; the last three refuse to start
//! without zones unless `ALLOW_SIMULATED=true`), and runs them until a shutdown token fires or
//! a supervised task that cannot be restarted panics (see [`crate::supervise`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::{self, Access, AppParts, AppState};
use crate::auth::{AuthConfig, Authenticator};
use crate::config::Settings;
use crate::domain::{Secret, TokenSpec};
use crate::intake::Intake;
use crate::provision::{Provisioner, SimulatedProvisioner, ZoneRouter};
use crate::queue::retry::RetryPolicy;
use crate::queue::{DatabaseOnly, LocalChannel, RedisChannel, RedisTls, TaskChannel};
use crate::reconciler::Reconciler;
use crate::store::{
    AuditStore, ChangeSetStore, PostgresStore, RequestStore, Schema, SqliteStore, TokenStore,
};
use crate::supervise::Supervisor;
use crate::telemetry;
use crate::worker::{Worker, WorkerConfig};
use crate::zones::Zones;

/// How long released work gets to write "released" after the grace period.
const RELEASE_BOUND: Duration = Duration::from_secs(5);

/// What a process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// API, workers and reconciler; applies migrations.
    Run,
    /// API and reconciler.
    Serve,
    /// Workers and reconciler, with this many workers.
    Worker(u16),
    /// Kafka intake, with the operations endpoints.
    Consume,
    /// The external-dns webhook provider, with the operations endpoints on `WEBHOOK_OPS_ADDR`.
    Webhook,
}

impl Role {
    /// Whether the process serves the whole API on `BIND_ADDR`; the others serve only
    /// `/healthz`, `/readyz` and `/metrics` on `OPS_ADDR`.
    fn serves_api(self) -> bool {
        matches!(self, Self::Run | Self::Serve)
    }

    fn workers(self, settings: &Settings) -> u16 {
        match self {
            Self::Run => settings.worker_concurrency,
            Self::Serve | Self::Consume | Self::Webhook => 0,
            Self::Worker(n) => n,
        }
    }

    #[cfg(feature = "kafka")]
    fn consumes_kafka(self) -> bool {
        matches!(self, Self::Run | Self::Consume)
    }

    /// The subcommand, for messages.
    fn command(self) -> &'static str {
        match self {
            Self::Run => "dnsorch run",
            Self::Serve => "dnsorch serve",
            Self::Worker(_) => "dnsorch worker",
            Self::Consume => "dnsorch consume",
            Self::Webhook => "dnsorch webhook",
        }
    }

    /// Whether the role refuses to start without zones unless `ALLOW_SIMULATED` is set: every
    /// role that records a backend with a request (`serve`, direct-mode `consume`) or applies
    /// one (`worker`). `run` keeps the simulated default, and forward-mode `consume` records
    /// nothing (the API it posts to does).
    fn fails_closed(self, settings: &Settings) -> bool {
        match self {
            Self::Run => false,
            Self::Serve | Self::Worker(_) | Self::Webhook => true,
            Self::Consume => settings.api_url.is_none(),
        }
    }
}

/// Without zones every name goes to the simulated backend, which changes no DNS: refused for
/// the roles that fail closed unless `ALLOW_SIMULATED` is set, and logged as a warning
/// otherwise.
///
/// # Errors
/// No zones, a role that fails closed, and no `ALLOW_SIMULATED=true`.
fn check_simulated(settings: &Settings, role: Role, zones: &Zones) -> anyhow::Result<()> {
    if !zones.is_empty() {
        return Ok(());
    }
    if role.fails_closed(settings) && !settings.allow_simulated {
        anyhow::bail!(
            "`{}` refuses to start without zones: set DNSORCH_CONFIG to a zones file that declares \
             the zones and their backends (see dnsorch.example.toml; `backend = \"simulated\"` \
             zones are allowed), or set ALLOW_SIMULATED=true to send every name to the simulated \
             backend, which changes no DNS",
            role.command()
        );
    }
    tracing::warn!(
        role = role.command(),
        "no zones are configured (DNSORCH_CONFIG): every name goes to the simulated backend, \
         which changes no DNS"
    );
    Ok(())
}

/// The database, seen through its three traits.
#[derive(Clone)]
pub struct Stores {
    pub requests: Arc<dyn RequestStore>,
    pub tokens: Arc<dyn TokenStore>,
    pub audit: Arc<dyn AuditStore>,
    pub sets: Arc<dyn ChangeSetStore>,
    /// SQLite: fires when the writer task panicked (the process must stop).
    pub writer_stopped: Option<CancellationToken>,
}

impl Stores {
    fn of<S: RequestStore + TokenStore + AuditStore + ChangeSetStore + 'static>(
        store: S,
        writer_stopped: Option<CancellationToken>,
    ) -> Self {
        let store = Arc::new(store);
        Self {
            requests: store.clone(),
            tokens: store.clone(),
            audit: store.clone(),
            sets: store,
            writer_stopped,
        }
    }
}

/// Opens the database named by `DATABASE_URL`: with `migrate`, applies its migrations;
/// otherwise waits (bounded) until another process has.
///
/// # Errors
/// The URL names an unsupported database, or the database cannot be opened or migrated.
pub async fn open_store(settings: &Settings, migrate: bool) -> anyhow::Result<Stores> {
    let url = settings.database_url.as_str();
    if settings.uses_sqlite() {
        let store = SqliteStore::open(url, settings.db_acquire_timeout_seconds)
            .await
            .context("Failed to open the SQLite database named by DATABASE_URL")?;
        let stopped = store.writer_stopped();
        return Ok(Stores::of(store, Some(stopped)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let schema = if migrate {
            Schema::Migrate
        } else {
            Schema::Await
        };
        let store = PostgresStore::open(
            url,
            settings.db_acquire_timeout_seconds,
            schema,
            settings.schema_wait_seconds,
            insert_batching(settings),
        )
        .await
        .context("Failed to open the PostgreSQL database named by DATABASE_URL")?;
        return Ok(Stores::of(store, None));
    }
    anyhow::bail!("DATABASE_URL must start with sqlite://, postgres:// or postgresql://")
}

/// The task channel: Redis when `CELERY_BROKER_URL` (or `REDIS_URL`) is set, else the
/// in-process channel for `run`, else the database alone.
///
/// # Errors
/// The broker URL does not parse.
pub fn open_channel(settings: &Settings, role: Role) -> anyhow::Result<Arc<dyn TaskChannel>> {
    if let Some(url) = settings.broker_url() {
        let tls = RedisTls {
            ca_file: settings.redis_ca_file.clone(),
            client_cert_file: settings.redis_client_cert_file.clone(),
            client_key_file: settings.redis_client_key_file.clone(),
        };
        let channel =
            RedisChannel::with_tls(url, &settings.task_stream, settings.lease_seconds, &tls)
                .context("CELERY_BROKER_URL (or REDIS_URL) is not a valid Redis URL")?;
        return Ok(Arc::new(channel));
    }
    Ok(match role {
        Role::Run => Arc::new(LocalChannel::new()),
        Role::Serve | Role::Worker(_) | Role::Consume | Role::Webhook => Arc::new(DatabaseOnly),
    })
}

/// A dnsorch process.
pub struct Application {
    role: Role,
    #[cfg(feature = "kafka")]
    kafka: Option<crate::intake::kafka::KafkaIntake>,
    listener: TcpListener,
    /// HTTPS: the listener's TLS side.
    tls: Option<api::tls::Acceptor>,
    state: AppState,
    worker: Worker,
    reconciler: Reconciler,
    supervisor: Supervisor,
    /// SQLite: fires when the writer task panicked.
    writer_stopped: Option<CancellationToken>,
    /// `webhook`: the provider and its listener on `WEBHOOK_ADDR`.
    webhook: Option<(TcpListener, Arc<crate::webhook::Webhook>)>,
    settings: Settings,
}

impl Application {
    /// The all-in-one process (`run`).
    ///
    /// # Errors
    /// As [`Application::build_for`].
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_for(settings, Role::Run).await
    }

    /// Opens the database (migrating it for `run`), binds the listener (the API for `run`
    /// and `serve`, health and metrics for the others), and wires the parts.
    ///
    /// # Errors
    /// `serve` or `worker` on SQLite, `serve`, `worker` or direct-mode `consume` without zones
    /// and without `ALLOW_SIMULATED=true`, or the database cannot be opened, or the address
    /// cannot be bound.
    pub async fn build_for(settings: Settings, role: Role) -> anyhow::Result<Self> {
        crate::tls::install_default_provider();
        if role == Role::Consume && settings.kafka_broker_url.is_none() {
            anyhow::bail!("`dnsorch consume` needs KAFKA_BROKER_URL");
        }
        // The webhook may record into the SQLite file of a `run` on the same host.
        if !matches!(role, Role::Run | Role::Webhook) && settings.uses_sqlite() {
            anyhow::bail!(
                "DATABASE_URL is SQLite, which only the all-in-one `dnsorch run` can use: \
                 separate serve and worker processes must share a PostgreSQL database"
            );
        }
        let zones = Arc::new(
            Zones::load(settings.dnsorch_config.as_deref())
                .context("Failed to load the zones file (DNSORCH_CONFIG)")?,
        );
        check_simulated(&settings, role, &zones)?;
        let worker_config = worker_config(&settings)?;
        let channel = open_channel(&settings, role)?;
        let stores = open_store(&settings, role == Role::Run).await?;
        if role == Role::Run && settings.uses_sqlite() {
            first_admin_token(&settings, stores.tokens.as_ref()).await?;
        }
        let store = stores.requests.clone();
        let simulated: Arc<dyn Provisioner> = Arc::new(
            SimulatedProvisioner::new(
                settings.simulated_delay_seconds,
                settings.simulated_failure_rate,
            )
            .panicking_on(settings.simulated_panic_name.clone()),
        );
        let router = Arc::new(
            ZoneRouter::new(&zones, simulated, settings.rfc2136_batch_max_bytes as usize)
                .context("Failed to set up the zones' backends")?,
        );
        let worker = Worker::new(
            store.clone(),
            channel.clone(),
            router.clone(),
            worker_config,
        );
        let reconciler = Reconciler::new(
            store.clone(),
            channel.clone(),
            settings.max_attempts,
            settings.reconcile_interval_seconds,
            settings.requeue_after_seconds,
        );
        // Every role listens: `run` and `serve` for the API on BIND_ADDR, the others for
        // /healthz, /readyz and /metrics on OPS_ADDR (so that all of them start on one host
        // with one environment).
        let (name, address) = match role {
            Role::Run | Role::Serve => ("BIND_ADDR", settings.bind_addr),
            Role::Webhook => ("WEBHOOK_OPS_ADDR", settings.webhook_ops_addr),
            Role::Worker(_) | Role::Consume => ("OPS_ADDR", settings.ops_addr),
        };
        let tls = crate::tls::ServerTls::from_settings(
            settings.tls_cert_file.as_deref(),
            settings.tls_key_file.as_deref(),
            settings.tls_client_ca_file.as_deref(),
        )?
        .map(api::tls::Acceptor::new)
        .transpose()
        .context("HTTPS (TLS_CERT_FILE) cannot be set up")?;
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("Failed to bind {name} {address}"))?;
        let intake = Intake::new(
            store.clone(),
            channel.clone(),
            zones.clone(),
            settings.trusted_accounts(),
            intake_limits(&settings),
        );
        let access = Access {
            auth: Authenticator::new(stores.tokens.clone(), auth_config(&settings)),
            trusted_proxies: settings.trusted_proxies.clone().into(),
            metrics_public: settings.metrics_public,
        };
        #[cfg(feature = "kafka")]
        let kafka = kafka_intake(&settings, role, &intake, &access)?;
        let webhook = match role {
            Role::Webhook => Some(webhook(&settings, &access, &intake, &store, &zones).await?),
            Role::Run | Role::Serve | Role::Worker(_) | Role::Consume => None,
        };
        let supervisor = Supervisor::new(settings.task_restart_delay_seconds);
        let state = AppState::new(AppParts {
            planner: crate::planner::Planner::new(intake.clone(), store.clone(), router),
            intake,
            access,
            store,
            audit: stores.audit.clone(),
            sets: stores.sets.clone(),
            channel,
            metrics: telemetry::metrics_handle(),
            status_counts: api::health::StatusCounts::new(settings.metrics_status_refresh_seconds),
            max_body_bytes: settings.max_body_bytes as usize,
            change_sets: api::changes::sets::SetLimits {
                max_bytes: settings.max_change_set_bytes as usize,
                max_items: settings.max_change_set_items as usize,
            },
            #[cfg(feature = "kafka")]
            kafka: kafka.as_ref().map(|k| k.health()),
            supervisor: supervisor.clone(),
        });
        Ok(Self {
            role,
            #[cfg(feature = "kafka")]
            kafka,
            listener,
            tls,
            state,
            worker,
            reconciler,
            supervisor,
            writer_stopped: stores.writer_stopped.clone(),
            webhook,
            settings,
        })
    }

    /// `webhook`: the port of the provider API (useful with port 0).
    pub fn webhook_port(&self) -> Option<u16> {
        self.webhook
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
            .map(|a| a.port())
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.local_addr().map_or(0, |a| a.port())
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
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

    /// The registry of supervised tasks (tests).
    pub fn supervisor(&self) -> Supervisor {
        self.supervisor.clone()
    }

    /// Runs until `shutdown` fires (or a task that cannot be restarted panics), then stops
    /// accepting, lets work in flight finish within `SHUTDOWN_GRACE_SECONDS`, releases what is
    /// still running, and returns.
    ///
    /// Workers and the reconciler are restarted after a panic; a panic in the Kafka intake or
    /// the SQLite writer stops the process (see [`crate::supervise`]).
    ///
    /// # Errors
    /// A task that cannot be restarted panicked. An error accepting or serving a connection
    /// is logged and ends only that connection.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let address = self.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let supervisor = self.supervisor.clone();
        // Every loop stops on `stop`: the caller's shutdown, or a failed task.
        let stop = shutdown.child_token();
        let abort = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(stop_on_failure(supervisor.clone(), stop.clone()));
        if let Some(stopped) = self.writer_stopped.clone() {
            tasks.spawn(watch_writer(supervisor.clone(), stopped, stop.clone()));
        }
        let workers = self.role.workers(&self.settings);
        for n in 0..workers {
            let (worker, run_stop, abort) = (self.worker.clone(), stop.clone(), abort.clone());
            tasks.spawn(supervisor.clone().restarting(
                format!("worker {n}"),
                stop.clone(),
                move || {
                    worker
                        .clone()
                        .run_until_stopped(run_stop.clone(), abort.clone())
                },
            ));
        }
        if !matches!(self.role, Role::Consume | Role::Webhook) {
            let (reconciler, run_stop) = (self.reconciler.clone(), stop.clone());
            tasks.spawn(supervisor.clone().restarting(
                "reconciler".into(),
                stop.clone(),
                move || reconciler.clone().run_until_stopped(run_stop.clone()),
            ));
        }
        #[cfg(feature = "kafka")]
        if let Some(kafka) = self.kafka {
            tasks.spawn(supervisor.clone().fatal(
                "kafka intake".into(),
                kafka.run_until_stopped(stop.clone(), supervisor.clone()),
            ));
        }
        if let Some(tls) = self.tls.clone() {
            tasks.spawn(tls.watch(self.settings.tls_reload_interval_seconds, stop.clone()));
        }
        if let Some((listener, webhook)) = self.webhook {
            let address = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            tracing::info!(address = %address, "external-dns webhook provider listening");
            let router =
                crate::webhook::router(webhook, self.settings.max_change_set_bytes as usize);
            tasks.spawn(api::server::serve(
                listener,
                router,
                None,
                self.settings.header_read_timeout_seconds,
                stop.clone(),
            ));
        }
        tracing::info!(
            role = ?self.role,
            address = %address,
            scheme = if self.tls.is_some() { "https" } else { "http" },
            workers,
            task_channel = self.state.channel.kind(),
            "dnsorch is serving"
        );
        let router = if self.role.serves_api() {
            let admission = api::admission::Admission::new(
                self.settings.max_concurrent_requests,
                self.settings.request_timeout_seconds,
            );
            api::router(self.state, admission)
        } else {
            api::operations_router(self.state)
        };
        api::server::serve(
            self.listener,
            router,
            self.tls,
            self.settings.header_read_timeout_seconds,
            stop.clone(),
        )
        .await;
        stop.cancel();
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
        match supervisor.failure() {
            Some(failure) => Err(anyhow::anyhow!(failure)),
            None => Ok(()),
        }
    }
}

/// Stops every loop once a task that cannot be restarted has failed.
async fn stop_on_failure(supervisor: Supervisor, stop: CancellationToken) {
    let failed = supervisor.failed();
    tokio::select! {
        () = stop.cancelled() => {}
        () = failed.cancelled() => stop.cancel(),
    }
}

/// Reports the SQLite writer's panic to the supervisor, which stops the process.
async fn watch_writer(supervisor: Supervisor, stopped: CancellationToken, stop: CancellationToken) {
    supervisor
        .clone()
        .fatal("sqlite writer".into(), async {
            tokio::select! {
                () = stop.cancelled() => {}
                () = stopped.cancelled() => {
                    supervisor.fail("sqlite writer", "the writer task panicked (logged above)");
                }
            }
        })
        .await;
}

/// The Kafka intake, for roles that consume when `KAFKA_BROKER_URL` is set.
#[cfg(feature = "kafka")]
fn kafka_intake(
    settings: &Settings,
    role: Role,
    intake: &Intake,
    access: &Access,
) -> anyhow::Result<Option<crate::intake::kafka::KafkaIntake>> {
    let Some(brokers) = settings
        .kafka_broker_url
        .clone()
        .filter(|_| role.consumes_kafka())
    else {
        return Ok(None);
    };
    let config = crate::intake::kafka::KafkaConfig {
        brokers,
        topic: settings.kafka_dns_topic.clone(),
        group_id: settings.kafka_group_id.clone(),
        api_url: settings.api_url.clone(),
        api_token_file: forward_token_file(settings)?,
        api_ca_file: settings.api_ca_file.clone(),
        trusted_accounts: settings.trusted_accounts(),
        max_message_bytes: settings.max_body_bytes as usize,
        batch_max: settings.kafka_batch_max as usize,
        batch_max_bytes: settings.kafka_batch_max_bytes as usize,
        prefetch_kbytes: settings.kafka_prefetch_kbytes as usize,
        concurrent_batches: settings.kafka_concurrent_batches as usize,
        forward_retry_max: settings.forward_retry_max_seconds,
        properties: crate::intake::kafka_properties::ClientProperties::load(
            settings.kafka_properties.as_deref(),
            &settings.kafka_property_variables,
        )?,
    };
    let kafka = crate::intake::kafka::KafkaIntake::new(
        &config,
        intake.clone(),
        access.auth.clone(),
    )
    .context(
        "could not set up the Kafka clients (KAFKA_BROKER_URL, KAFKA_PROPERTIES, KAFKA_PROPERTY_*)",
    )?;
    Ok(Some(kafka))
}

/// `webhook`: the provider under `WEBHOOK_TOKEN_FILE`'s (or `WEBHOOK_TOKEN`'s) token, checked
/// now, and its listener on `WEBHOOK_ADDR`.
///
/// # Errors
/// No token, a token that is not valid or may change nothing, or the address cannot be bound.
async fn webhook(
    settings: &Settings,
    access: &Access,
    intake: &Intake,
    store: &Arc<dyn RequestStore>,
    zones: &Zones,
) -> anyhow::Result<(TcpListener, Arc<crate::webhook::Webhook>)> {
    let secret = match (&settings.webhook_token_file, &settings.webhook_token) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("WEBHOOK_TOKEN_FILE: cannot read {}", path.display()))?;
            match text.trim() {
                "" => anyhow::bail!("WEBHOOK_TOKEN_FILE {} is empty", path.display()),
                text => Secret::presented(text),
            }
        }
        (None, Some(secret)) => secret.clone(),
        (None, None) => {
            anyhow::bail!("`dnsorch webhook` needs a token: WEBHOOK_TOKEN_FILE (or WEBHOOK_TOKEN)")
        }
    };
    let provider = crate::webhook::Webhook::new(
        secret,
        access.auth.clone(),
        intake.clone(),
        store.clone(),
        zones,
    )
    .await?;
    let listener = TcpListener::bind(settings.webhook_addr)
        .await
        .with_context(|| format!("Failed to bind WEBHOOK_ADDR {}", settings.webhook_addr))?;
    Ok((listener, Arc::new(provider)))
}

/// Forward mode's token file (`API_TOKEN_FILE`), checked once at start (it is read again for
/// every batch, so it can be replaced in place). Without forward mode it is not used.
#[cfg(feature = "kafka")]
fn forward_token_file(settings: &Settings) -> anyhow::Result<Option<std::path::PathBuf>> {
    let Some(path) = settings
        .api_token_file
        .clone()
        .filter(|_| settings.api_url.is_some())
    else {
        return Ok(None);
    };
    crate::intake::kafka::read_token_file(&path).context("API_TOKEN_FILE")?;
    Ok(Some(path))
}

/// The name of the first run's admin token file, beside the SQLite database.
pub const ADMIN_TOKEN_FILE: &str = "dnsorch-admin.token";

/// On a fresh embedded database (no token in it), creates an admin token for the account
/// `admin` and writes its secret to `dnsorch-admin.token` beside the database file (mode
/// 0600), before anything listens. Only the file's path is logged.
///
/// # Errors
/// The token or the file cannot be written.
async fn first_admin_token(settings: &Settings, tokens: &dyn TokenStore) -> anyhow::Result<()> {
    let options: sqlx::sqlite::SqliteConnectOptions = settings.database_url.parse()?;
    let database = options.get_filename();
    if database.as_os_str().is_empty() || database.to_string_lossy().contains(":memory:") {
        tracing::warn!(
            "an in-memory database gets no admin token; create one with `dnsorch token create --admin`"
        );
        return Ok(());
    }
    let spec = TokenSpec {
        account_id: "admin".into(),
        name: "first-run admin".into(),
        policies: Vec::new(),
        expires_in: None,
        allowed_subnets: Vec::new(),
        admin: true,
        metrics: true,
        forwarder: false,
    };
    let secret = Secret::generate();
    let dir = database
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    // The log names the file by its absolute path, so the operator finds it.
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let path = dir.join(ADMIN_TOKEN_FILE);
    // The secret goes to a new file first, which replaces the real one only once the token
    // is stored: a restart (tokens exist) leaves an earlier file alone, and a crash in
    // between leaves no file naming a secret that matches nothing.
    let partial = path.with_extension("token.partial");
    write_secret_file(&partial, &secret)
        .with_context(|| format!("Failed to write the admin token to {}", partial.display()))?;
    match tokens.create_first_token(&spec, &secret.digest()).await {
        Ok(Some(token)) => {
            std::fs::rename(&partial, &path).with_context(|| {
                format!("Failed to write the admin token to {}", path.display())
            })?;
            tracing::info!(path = %path.display(), token_id = %token.id, "created the first admin token; its secret is in this file (send it as 'Authorization: Bearer <secret>')");
        }
        Ok(None) => {
            let _ = std::fs::remove_file(&partial);
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    }
    Ok(())
}

/// Writes a secret to a new file readable by its owner only.
fn write_secret_file(path: &std::path::Path, secret: &Secret) -> std::io::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{}", secret.expose())?;
    file.sync_all()
}

async fn drain(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}

// The parts of the settings each component takes (here, so `config` depends on none of them).

/// The authenticator's part of the settings.
fn auth_config(settings: &Settings) -> AuthConfig {
    AuthConfig {
        cache_for: settings.token_cache_seconds,
        cache_entries: settings.token_cache_entries as usize,
        last_used_every: settings.token_last_used_interval_seconds,
    }
}

/// What intake enforces per token and per name.
fn intake_limits(settings: &Settings) -> crate::intake::IntakeLimits {
    crate::intake::IntakeLimits {
        buckets: crate::ratelimit::TokenBuckets::new(
            settings.rate_limit_per_second,
            settings.rate_limit_burst,
            settings.token_cache_entries as usize,
        ),
        max_unfinished_per_name: settings.max_unfinished_per_name,
        max_extra_config_bytes: settings.max_extra_config_bytes as usize,
    }
}

/// How the PostgreSQL store groups inserts.
fn insert_batching(settings: &Settings) -> crate::store::InsertBatching {
    crate::store::InsertBatching {
        writers: settings.insert_writers as usize,
        batch_max: settings.insert_batch_max as usize,
    }
}

/// The worker's part of the settings; `LEASE_MARGIN_SECONDS` defaults to a quarter of the
/// lease.
///
/// # Errors
/// The margin is not less than the lease.
fn worker_config(settings: &Settings) -> anyhow::Result<WorkerConfig> {
    let lease_margin = settings
        .lease_margin_seconds
        .unwrap_or(settings.lease_seconds / 4);
    if lease_margin >= settings.lease_seconds {
        anyhow::bail!(
            "LEASE_MARGIN_SECONDS ({lease_margin:?}) must be less than LEASE_SECONDS ({:?})",
            settings.lease_seconds
        );
    }
    Ok(WorkerConfig {
        lease: settings.lease_seconds,
        lease_margin,
        max_attempts: settings.max_attempts,
        retry: RetryPolicy {
            base: settings.retry_base_seconds,
            max: settings.retry_max_seconds.max(settings.retry_base_seconds),
        },
        poll_interval: settings.poll_interval_seconds,
    })
}
