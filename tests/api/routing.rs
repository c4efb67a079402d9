//! A worker applies a request with the zone and backend recorded at intake, never by routing
//! its name again: a zones file changed since intake cannot send a change to another backend,
//! and a request whose recorded backend the worker does not have configured is FAILED, with
//! the reason in its log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dnsorch::domain::RequestStatus;
use dnsorch::worker::ExecutionOutcome;
use serde_json::Value;

use crate::helpers::*;

/// A zones file `name` in `dir` with `text`.
fn zones_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// example.test on rfc2136 (a server nothing listens on: no change may reach it here).
fn rfc2136_zone(dir: &Path) -> PathBuf {
    let secret = dir.join("tsig.secret");
    std::fs::write(&secret, "c2VjcmV0IG9mIHRoZSB0ZXN0\n").unwrap();
    zones_file(
        dir,
        "rfc2136.toml",
        &format!(
            "[zones.\"example.test\"]\nbackend = \"rfc2136\"\nserver = \"127.0.0.1:9\"\nkey_name = \"k\"\nkey_secret_file = \"{}\"\n",
            secret.display()
        ),
    )
}

/// The app with `zones` on the database of `dir` (a restart with another zones file).
async fn app_with_zones(dir: Arc<tempfile::TempDir>, zones: PathBuf) -> TestApp {
    let mut settings = test_settings(&dir);
    settings.dnsorch_config = Some(zones);
    spawn_app_on(dir, settings).await
}

/// Records a create for `domain` through an app with `intake_zones`, then processes it with
/// an app on the same database with `worker_zones`: the request as the second app's worker
/// left it.
async fn recorded_then_processed(
    domain: &str,
    intake_zones: PathBuf,
    worker_zones: PathBuf,
) -> Value {
    let dir = Arc::new(tempfile::TempDir::new().unwrap());
    let intake = app_with_zones(dir.clone(), intake_zones).await;
    let id = intake.create(&a_record(domain, "192.0.2.90")).await;
    let dir = intake.stop().await;
    let worker = app_with_zones(dir, worker_zones).await;
    let outcomes = worker.run_queued_tasks().await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert!(
        matches!(outcomes[0], ExecutionOutcome::Processed(_, _)),
        "{outcomes:?}"
    );
    worker.request(&id).await
}

#[tokio::test]
async fn a_request_recorded_for_a_backend_the_worker_lacks_is_failed_with_the_reason() {
    // Arrange: intake records example.test with backend rfc2136; one worker's zones file
    // serves example.test with the simulated backend instead, another's lacks it.
    let config = tempfile::TempDir::new().unwrap();
    let recorded = rfc2136_zone(config.path());
    let other_backend = zones_file(
        config.path(),
        "simulated.toml",
        "[zones.\"example.test\"]\nbackend = \"simulated\"\n",
    );
    let other_zone = zones_file(
        config.path(),
        "other.toml",
        "[zones.\"other.test\"]\nbackend = \"simulated\"\n",
    );

    // Act
    let mismatched =
        recorded_then_processed("a.example.test", recorded.clone(), other_backend).await;
    let missing = recorded_then_processed("b.example.test", recorded, other_zone).await;

    // Assert: both FAILED at their first attempt, saying what was recorded and what the
    // worker has; nothing was applied, and no ledger row written.
    for (request, why) in [
        (
            &mismatched,
            "recorded for zone example.test with backend rfc2136, but this process's zones file (DNSORCH_CONFIG) configures zone example.test with backend simulated",
        ),
        (
            &missing,
            "recorded for zone example.test with backend rfc2136, which this process's zones file (DNSORCH_CONFIG) does not configure",
        ),
    ] {
        assert_eq!(
            request["status"],
            RequestStatus::Failed.as_str(),
            "{request:#}"
        );
        assert_eq!(request["zone"], "example.test");
        assert_eq!(request["backend"], "rfc2136");
        assert_eq!(request["attempts"], 1);
        assert!(request["applied_at"].is_null(), "{request:#}");
        assert_eq!(request["last_error"], format!("rejected: {why}"));
        let log = log_messages(request);
        assert!(
            log.iter()
                .any(|m| m == "provisioning started: backend rfc2136 (zone example.test)"),
            "{log:#?}"
        );
        assert!(
            log.iter()
                .any(|m| m.contains(why) && m.ends_with("status FAILED")),
            "{log:#?}"
        );
    }
}

#[tokio::test]
async fn a_worker_applies_the_recorded_zone_not_the_longest_match_of_its_own_zones_file() {
    // Arrange: intake records a.sub.example.test in zone example.test (simulated); the
    // worker's zones file adds sub.example.test on ansible with a program that always fails,
    // so routing the name again would send the change there.
    let config = tempfile::TempDir::new().unwrap();
    let recorded = zones_file(
        config.path(),
        "intake.toml",
        "[zones.\"example.test\"]\nbackend = \"simulated\"\n",
    );
    let worker = zones_file(
        config.path(),
        "worker.toml",
        "[zones.\"example.test\"]\nbackend = \"simulated\"\n\
         [zones.\"sub.example.test\"]\nbackend = \"ansible\"\nplaybook = \"/nonexistent.yml\"\nansible_playbook = \"/bin/false\"\n",
    );

    // Act
    let request = recorded_then_processed("a.sub.example.test", recorded, worker).await;

    // Assert
    assert_eq!(
        request["status"],
        RequestStatus::Completed.as_str(),
        "{request:#}"
    );
    assert_eq!(request["zone"], "example.test");
    assert_eq!(request["backend"], "simulated");
    assert_eq!(request["attempts"], 1);
    let log = log_messages(&request);
    assert!(
        log.iter()
            .any(|m| m == "provisioning started: backend simulated (zone example.test)"),
        "{log:#?}"
    );
}
