//! The `dnsorch` binary: load the environment, parse the command line, start telemetry and
//! hand over to the library.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _};
use dnsorch::cli::{Cli, Command};
use dnsorch::config;
use dnsorch::startup::{Application, Role, open_store};
use dnsorch::telemetry::{self, LogSink};
use dnsorch::tokens;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    // The env files are loaded before the runtime starts any thread.
    if let Err(e) = config::load_env_files(Path::new(".")) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let matches = Cli::command().get_matches();
    if let Err(e) = config::refuse_secrets_on_command_line(&matches) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let sink = match cli.command {
        Some(Command::Token { .. }) => LogSink::Stderr,
        _ => LogSink::Stdout,
    };
    let logs = telemetry::init_logs(
        cli.settings.log_format,
        &cli.settings.log_level,
        cli.settings.log_max_input_chars as usize,
        sink,
    );
    if let Err(e) = logs {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let result = tokio::runtime::Runtime::new()
        .context("Failed to start the async runtime")
        .and_then(|runtime| {
            let result = runtime.block_on(run(cli));
            // A blocking call stuck in a client library (a Kafka client closing against a
            // dead broker) must not keep the process from exiting.
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            result
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error.message = %format!("{e:#}"), error.cause_chain = ?e, "dnsorch stopped with an error");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let role = match cli.command.unwrap_or(Command::Run) {
        Command::Migrate => {
            open_store(&cli.settings, true).await?;
            tracing::info!("migrations applied");
            return Ok(());
        }
        Command::Token { action } => return tokens::run_command(&cli.settings, action).await,
        Command::Run => Role::Run,
        Command::Serve => Role::Serve,
        Command::Consume => Role::Consume,
        Command::Webhook => Role::Webhook,
        Command::Worker { concurrency } => {
            Role::Worker(concurrency.unwrap_or(cli.settings.worker_concurrency))
        }
    };
    let app = Application::build_for(cli.settings, role).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    app.run_until_stopped(shutdown).await
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received; shutting down"),
        () = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
    shutdown.cancel();
}
