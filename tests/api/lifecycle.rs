//! A request's life: PENDING → PROCESSING → COMPLETED or FAILED, retries, leases, fencing,
//! order per name, restarts and shutdown.

use std::time::Duration;

use dnsorch::domain::{RequestId, RequestStatus};
use dnsorch::store::{Outcome, RecordFilter, no_opening_log};
use dnsorch::worker::ExecutionOutcome;
use serde_json::{Value, json};

use crate::helpers::*;

async fn ledger_rows(app: &TestApp, request_id: &str) -> usize {
    let filter = RecordFilter {
        limit: 500,
        ..RecordFilter::default()
    };
    let rows = app.store.list_records(&filter).await.unwrap();
    rows.iter()
        .filter(|r| r.request_id.to_string() == request_id)
        .count()
}

#[tokio::test]
async fn a_request_reaches_completed_with_its_record_and_log() {
    // Arrange
    let app = spawn_app().await;
    let id = app
        .create(&a_record("www.example.test.", "192.0.2.10"))
        .await;

    // Act
    let outcomes = app.run_queued_tasks().await;

    // Assert
    assert_eq!(outcomes.len(), 1);
    let request = app.request(&id).await;
    assert_eq!(request["status"], "COMPLETED");
    // Without a zones file every name goes to the simulated backend, in no zone.
    assert_eq!(request["backend"], "simulated");
    assert!(request["zone"].is_null());
    assert_eq!(request["attempts"], 1);
    for phase in ["started_at", "applied_at", "verified_at", "finished_at"] {
        assert!(
            request[phase].is_string(),
            "{phase} is not set: {request:#}"
        );
    }
    assert!(request["lease_expires_at"].is_null());
    let log = log_messages(&request);
    let expected = [
        "request accepted",
        "processing started (attempt 1 of 5)",
        "config: ",
        "provisioning started: backend simulated",
        "provisioning finished",
        "record provisioned; status COMPLETED",
    ];
    assert_eq!(log.len(), expected.len() + 1, "{log:#?}");
    for prefix in expected {
        assert!(
            log.iter().any(|m| m.starts_with(prefix)),
            "no '{prefix}' in {log:#?}"
        );
    }
    let records: Value = app.get("/api/v1/dns/records").await.json().await.unwrap();
    let items = records["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["request_id"], id.as_str());
    assert_eq!(items[0]["domain"], "www.example.test");
    assert_eq!(items[0]["target"], "192.0.2.10");
    assert_eq!(items[0]["ttl"], 300);
}

#[tokio::test]
async fn background_workers_complete_a_request_after_the_simulated_delay() {
    // Arrange
    let app = spawn_app_with(|s| {
        s.worker_concurrency = 2;
        s.simulated_delay_seconds = Duration::from_millis(200);
    })
    .await;

    // Act
    let id = app
        .create(&a_record("www.example.test", "192.0.2.11"))
        .await;

    // Assert
    let processing = app.wait_for_status(&id, RequestStatus::Processing).await;
    assert_eq!(processing["attempts"], 1);
    assert!(processing["lease_expires_at"].is_string());
    let done = app.wait_for_status(&id, RequestStatus::Completed).await;
    assert_eq!(ledger_rows(&app, &id).await, 1);
    assert!(
        log_messages(&done)
            .iter()
            .any(|m| m.starts_with("simulated Ansible job finished after 0.200s"))
    );
}

#[tokio::test]
async fn transient_failures_are_retried_and_then_the_request_fails_with_the_last_error() {
    // Arrange
    let app = spawn_app_with(|s| {
        s.simulated_failure_rate = 1.0;
        s.max_attempts = 3;
    })
    .await;
    let id = app
        .create(&a_record("www.example.test", "192.0.2.12"))
        .await;

    // Act
    let outcomes = app.run_queued_tasks().await;

    // Assert
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    let request = app.request(&id).await;
    assert_eq!(request["status"], "FAILED");
    assert_eq!(request["attempts"], 3);
    assert!(
        request["last_error"]
            .as_str()
            .unwrap()
            .contains("simulated Ansible job failed")
    );
    let log = log_messages(&request);
    assert_eq!(
        log.iter().filter(|m| m.contains("retrying in")).count(),
        2,
        "{log:#?}"
    );
    assert!(
        log.last()
            .unwrap()
            .contains("no attempts left; status FAILED"),
        "{log:#?}"
    );
    assert_eq!(ledger_rows(&app, &id).await, 0);
    assert!(request["finished_at"].is_string());
}

#[tokio::test]
async fn a_retry_waits_for_its_backoff() {
    // Arrange
    let app = spawn_app_with(|s| {
        s.simulated_failure_rate = 1.0;
        s.retry_base_seconds = Duration::from_secs(60);
        s.retry_max_seconds = Duration::from_secs(60);
    })
    .await;
    let id = app
        .create(&a_record("www.example.test", "192.0.2.13"))
        .await;

    // Act
    let outcomes = app.run_queued_tasks().await;

    // Assert: one attempt, then the request waits PENDING with a due time in the future.
    assert_eq!(outcomes.len(), 1);
    let request = app.request(&id).await;
    assert_eq!(request["status"], "PENDING");
    let due: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(request["next_attempt_at"].clone()).unwrap();
    assert!(
        due > chrono::Utc::now() + chrono::Duration::seconds(20),
        "due {due}"
    );
}

#[tokio::test]
async fn a_request_whose_worker_died_is_claimed_again_after_the_lease_expires() {
    // Arrange: a worker claims the request and dies without a word. The app's own reconciler
    // waits an hour between passes, so the pass below is the one that releases the lease.
    let app = spawn_app_with(|s| s.reconcile_interval_seconds = Duration::from_secs(3600)).await;
    let id = app
        .create(&a_record("www.example.test", "192.0.2.14"))
        .await;
    let request_id: RequestId = id.parse().unwrap();
    let dead = app
        .store
        .claim(Some(request_id), Duration::from_millis(1), no_opening_log())
        .await
        .unwrap()
        .expect("the request is claimable");
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Act
    let released = app.app_reconciler.reconcile_once().await.unwrap();
    app.run_queued_tasks().await;

    // Assert
    assert_eq!(released, 1);
    let request = app.request(&id).await;
    assert_eq!(request["status"], "COMPLETED");
    assert_eq!(request["attempts"], 2);
    assert!(
        log_messages(&request)
            .iter()
            .any(|m| m.contains("lease expired after attempt 1"))
    );
    assert_eq!(ledger_rows(&app, &id).await, 1);
    // The dead worker's late outcome is refused.
    let late = Outcome::Completed {
        applied_at: chrono::Utc::now(),
        verified_at: None,
        rrsets: None,
    };
    assert!(!app.store.finish(&dead, &late, &[]).await.unwrap());
    assert_eq!(ledger_rows(&app, &id).await, 1);
}

#[tokio::test]
async fn the_background_reconciler_recovers_an_expired_lease_by_itself() {
    // Arrange: claim with a short lease in one process, as a worker that then dies.
    let first = spawn_app().await;
    let id = first
        .create(&a_record("www.example.test", "192.0.2.15"))
        .await;
    first
        .store
        .claim(
            Some(id.parse().unwrap()),
            Duration::from_millis(300),
            no_opening_log(),
        )
        .await
        .unwrap()
        .expect("claimable");
    let dir = first.stop().await;

    // Act: a new process with workers and its reconciler.
    let mut settings = test_settings(&dir);
    settings.worker_concurrency = 1;
    let second = spawn_app_on(dir, settings).await;

    // Assert
    let request = second.wait_for_status(&id, RequestStatus::Completed).await;
    assert_eq!(request["attempts"], 2);
    assert_eq!(ledger_rows(&second, &id).await, 1);
}

#[tokio::test]
async fn a_lease_that_expires_after_the_last_attempt_fails_the_request() {
    // Arrange
    let app = spawn_app_with(|s| s.max_attempts = 1).await;
    let id = app
        .create(&a_record("www.example.test", "192.0.2.16"))
        .await;
    app.store
        .claim(
            Some(id.parse().unwrap()),
            Duration::from_millis(1),
            no_opening_log(),
        )
        .await
        .unwrap()
        .expect("claimable");
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Act
    app.app_reconciler.reconcile_once().await.unwrap();

    // Assert
    let request = app.request(&id).await;
    assert_eq!(request["status"], "FAILED");
    assert!(
        request["last_error"]
            .as_str()
            .unwrap()
            .contains("lease expired")
    );
    assert!(app.run_queued_tasks().await.is_empty());
}

#[tokio::test]
async fn a_stale_workers_late_outcome_is_refused_by_the_fencing_token() {
    // Arrange: worker A's lease expires and worker B claims the request.
    let app = spawn_app().await;
    let id: RequestId = app
        .create(&a_record("www.example.test", "192.0.2.17"))
        .await
        .parse()
        .unwrap();
    let stale = app
        .store
        .claim(Some(id), Duration::from_millis(1), no_opening_log())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    app.store.release_expired_leases(5).await.unwrap();
    let fresh = app
        .store
        .claim(Some(id), Duration::from_secs(30), no_opening_log())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stale.token, fresh.token);

    // Act: A reports late, then B reports.
    let failed = Outcome::Failed {
        error: "stale worker".into(),
    };
    let stale_log = app.store.append_log(&stale, &[]).await.unwrap();
    let stale_renew = app
        .store
        .renew_lease(&stale, Duration::from_secs(30))
        .await
        .unwrap();
    let stale_finish = app.store.finish(&stale, &failed, &[]).await.unwrap();
    let completed = Outcome::Completed {
        applied_at: chrono::Utc::now(),
        verified_at: None,
        rrsets: None,
    };
    let fresh_finish = app.store.finish(&fresh, &completed, &[]).await.unwrap();

    // Assert
    assert!(!stale_log && !stale_renew && !stale_finish);
    assert!(fresh_finish);
    let request = app.request(&id.to_string()).await;
    assert_eq!(request["status"], "COMPLETED");
    assert!(
        request["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("lease expired")
    );
    assert_eq!(ledger_rows(&app, &id.to_string()).await, 1);
}

#[tokio::test]
async fn a_request_waits_while_an_older_request_for_the_same_name_is_unfinished() {
    // Arrange
    let app = spawn_app().await;
    let first = app
        .create(&a_record("www.example.test", "192.0.2.18"))
        .await;
    let second = app
        .create(&change("TXT", "WWW.example.test", "hello"))
        .await;
    let other = app
        .create(&a_record("mail.example.test", "192.0.2.19"))
        .await;
    let lease = Duration::from_secs(30);

    // Act
    let a = app
        .store
        .claim(None, lease, no_opening_log())
        .await
        .unwrap()
        .unwrap();
    let b = app
        .store
        .claim(None, lease, no_opening_log())
        .await
        .unwrap()
        .unwrap();
    let blocked = app
        .store
        .claim(Some(second.parse().unwrap()), lease, no_opening_log())
        .await
        .unwrap();
    let nothing = app
        .store
        .claim(None, lease, no_opening_log())
        .await
        .unwrap();
    let done = Outcome::Completed {
        applied_at: chrono::Utc::now(),
        verified_at: None,
        rrsets: None,
    };
    app.store.finish(&a, &done, &[]).await.unwrap();
    let c = app
        .store
        .claim(None, lease, no_opening_log())
        .await
        .unwrap()
        .unwrap();

    // Assert
    assert_eq!(a.request.id.to_string(), first);
    assert_eq!(b.request.id.to_string(), other);
    assert!(blocked.is_none() && nothing.is_none());
    assert_eq!(c.request.id.to_string(), second);
}

#[tokio::test]
async fn requests_left_pending_when_the_process_stopped_are_picked_up_at_the_next_start() {
    // Arrange: a process without workers accepts three requests and stops.
    let first = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            first
                .create(&a_record(&format!("h{i}.example.test"), "192.0.2.20"))
                .await,
        );
    }
    let dir = first.stop().await;

    // Act
    let mut settings = test_settings(&dir);
    settings.worker_concurrency = 2;
    let second = spawn_app_on(dir, settings).await;

    // Assert
    for id in &ids {
        let request = second.wait_for_status(id, RequestStatus::Completed).await;
        assert_eq!(request["attempts"], 1);
    }
}

#[tokio::test]
async fn shutdown_lets_work_in_flight_finish() {
    // Arrange
    let app = spawn_app_with(|s| {
        s.worker_concurrency = 1;
        s.simulated_delay_seconds = Duration::from_millis(500);
    })
    .await;
    let id = app
        .create(&a_record("www.example.test", "192.0.2.21"))
        .await;
    app.wait_for_status(&id, RequestStatus::Processing).await;
    let store = app.store.clone();

    // Act
    app.stop().await;

    // Assert
    let request = store.get(id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(request.status, RequestStatus::Completed);
}

#[tokio::test]
async fn shutdown_past_the_grace_period_releases_unfinished_work() {
    // Arrange
    let app = spawn_app_with(|s| {
        s.worker_concurrency = 1;
        s.simulated_delay_seconds = Duration::from_secs(60);
        s.shutdown_grace_seconds = Duration::from_millis(100);
    })
    .await;
    let id = app
        .create(&a_record("www.example.test", "192.0.2.22"))
        .await;
    app.wait_for_status(&id, RequestStatus::Processing).await;
    let store = app.store.clone();

    // Act
    app.stop().await;

    // Assert: back to PENDING and due at once, with the reason in its log.
    let request = store.get(id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(request.status, RequestStatus::Pending);
    assert!(request.lease_expires_at.is_none());
    let log = request.log_messages.unwrap();
    assert!(
        log.last()
            .unwrap()
            .message
            .contains("stopped before provisioning finished")
    );
}

#[tokio::test]
async fn the_latest_change_sets_the_ttl_of_the_whole_rrset() {
    // Arrange
    let app = spawn_app().await;
    let mut first = a_record("www.example.test", "192.0.2.23");
    first["resource"]["config"] = json!({"ttl": 600});
    let mut second = a_record("www.example.test", "192.0.2.24");
    second["resource"]["config"] = json!({"ttl": 60});
    app.create(&first).await;
    app.create(&second).await;

    // Act
    let outcomes = app.run_queued_tasks().await;

    // Assert
    assert_eq!(outcomes.len(), 2);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, ExecutionOutcome::Processed(_, RequestStatus::Completed)))
    );
    let records: Value = app
        .get("/api/v1/dns/records?domain=www.example.test")
        .await
        .json()
        .await
        .unwrap();
    let ttls: Vec<&Value> = records["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["ttl"])
        .collect();
    assert_eq!(ttls, [&json!(60), &json!(60)]);
}
