//! The binary itself: configuration from `.env` files and the environment, bad values, and
//! `migrate`.

use std::path::Path;
use std::process::{Command, Output};

fn dnsorch(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dnsorch"));
    command.args(args).current_dir(dir);
    for key in [
        "DATABASE_URL",
        "APP_ENV",
        "SIMULATED_DELAY_SECONDS",
        "LOG_LEVEL",
        "LOG_FORMAT",
    ] {
        command.env_remove(key);
    }
    command.envs(env.iter().copied());
    command.output().expect("dnsorch runs")
}

#[test]
fn migrate_creates_the_default_database_and_exits_zero() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();

    // Act
    let output = dnsorch(dir.path(), &["migrate"], &[]);

    // Assert
    assert!(output.status.success(), "{output:?}");
    assert!(dir.path().join("dnsorch.db").exists());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap()).expect("logs are JSON lines");
    assert_eq!(line["message"], "migrations applied");
}

#[test]
fn the_app_env_profile_overrides_dot_env_and_the_real_environment_wins() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "DATABASE_URL=sqlite://base.db?mode=rwc\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".env.uta"),
        "DATABASE_URL=sqlite://uta.db?mode=rwc\n",
    )
    .unwrap();

    // Act
    let base = dnsorch(dir.path(), &["migrate"], &[]);
    let profile = dnsorch(dir.path(), &["migrate"], &[("APP_ENV", "uta")]);
    let real = dnsorch(
        dir.path(),
        &["migrate"],
        &[
            ("APP_ENV", "uta"),
            ("DATABASE_URL", "sqlite://real.db?mode=rwc"),
        ],
    );

    // Assert
    assert!(base.status.success() && profile.status.success() && real.status.success());
    for file in ["base.db", "uta.db", "real.db"] {
        assert!(dir.path().join(file).exists(), "{file} was not created");
    }
}

#[test]
fn a_missing_profile_file_fails_at_start_naming_it() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();

    // Act
    let output = dnsorch(dir.path(), &["migrate"], &[("APP_ENV", "prod")]);

    // Assert
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("APP_ENV") && stderr.contains(".env.prod"),
        "{stderr}"
    );
}

#[test]
fn a_bad_setting_fails_at_start_naming_the_variable() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();

    for (key, value) in [
        ("SIMULATED_DELAY_SECONDS", "soon"),
        ("SIMULATED_FAILURE_RATE", "2"),
        ("MAX_ATTEMPTS", "0"),
        ("BIND_ADDR", "localhost"),
        ("LOG_FORMAT", "xml"),
        ("LEASE_SECONDS", "-1"),
    ] {
        // Act
        let output = dnsorch(dir.path(), &["migrate"], &[(key, value)]);

        // Assert
        assert!(!output.status.success(), "{key}={value} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{key}={value}: {stderr}");
    }
}

#[test]
fn an_unsupported_database_url_fails_at_start_naming_the_variable() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();

    // Act
    let output = dnsorch(dir.path(), &["migrate"], &[("DATABASE_URL", "mysql://x")]);

    // Assert
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("DATABASE_URL"));
}

#[tokio::test]
async fn run_serves_completes_a_request_and_exits_zero_on_sigterm() {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;

    // Arrange: the binary on port 0, with a short simulated delay.
    let dir = tempfile::tempdir().unwrap();
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_dnsorch"))
            .arg("run")
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("APP_ENV")
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("SIMULATED_DELAY_SECONDS", "0.3")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let address = loop {
        let line: serde_json::Value =
            serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if line["message"] == "dnsorch is serving" {
            break line["address"].as_str().unwrap().to_owned();
        }
    };
    let client = reqwest::Client::new();
    let body = serde_json::json!({
        "context": {"account_id": "acct-1"},
        "resource": {"record_type": "A", "domain": "www.example.test", "target": "192.0.2.70"}
    });

    // Act: submit, then SIGTERM while the request is being provisioned.
    let accepted: serde_json::Value = client
        .post(format!("http://{address}/api/v1/dns/create"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let status = child.0.wait().unwrap();

    // Assert: a clean exit, and the request in flight was finished, not dropped.
    assert!(killed.success());
    assert!(status.success(), "exit status {status}");
    let url = format!("sqlite://{}/dnsorch.db", dir.path().display());
    let store = dnsorch::store::SqliteStore::open(&url, std::time::Duration::from_secs(2))
        .await
        .unwrap();
    let id = accepted["request_id"].as_str().unwrap().parse().unwrap();
    let request = dnsorch::store::RequestStore::get(&store, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(request.status, dnsorch::domain::RequestStatus::Completed);
}

/// Kills the child if the test ends (or panics) while it still runs, so nothing leaks.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
