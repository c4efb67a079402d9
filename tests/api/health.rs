//! Probes, metrics and the API description.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn healthz_and_readyz_answer_200_when_the_database_answers() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let health = app.get("/healthz").await;
    let ready = app.get("/readyz").await;

    // Assert
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["database"], "ok");
}

#[tokio::test]
async fn metrics_count_requests_provisioning_queue_depth_and_http() {
    // Arrange
    let app = spawn_app().await;
    app.create(&change("AAAA", "metrics.example.test", "2001:db8::1"))
        .await;
    app.run_queued_tasks().await;
    app.create(&change("AAAA", "metrics2.example.test", "2001:db8::2"))
        .await;

    // Act
    let response = app.get("/metrics").await;

    // Assert
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for line in [
        r#"dnsorch_requests_accepted_total{record_type="AAAA",source="api"}"#,
        r#"dnsorch_requests_completed_total{record_type="AAAA",source="api"}"#,
        r#"dnsorch_provisioning_duration_seconds_bucket{backend="simulated",outcome="completed""#,
        r#"dnsorch_http_requests_total{method="POST",route="/api/v1/dns/create",status="202"}"#,
        r#"dnsorch_http_request_duration_seconds_bucket{method="POST",route="/api/v1/dns/create""#,
        "dnsorch_queue_depth 1",
        r#"dnsorch_requests{status="COMPLETED"} 1"#,
    ] {
        assert!(text.contains(line), "no {line} in:\n{text}");
    }
}

#[tokio::test]
async fn the_openapi_document_and_the_docs_page_are_served() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    let docs = app.get("/docs/").await;

    // Assert
    for path in [
        "/api/v1/dns/create",
        "/api/v1/dns/replace",
        "/api/v1/dns/requests",
        "/api/v1/dns/requests/{id}",
        "/api/v1/dns/requests/{id}/revert",
        "/api/v1/dns/rrsets/{name}/{type}/history",
        "/api/v1/dns/changes",
        "/api/v1/dns/changes/{id}",
        "/api/v1/dns/records",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"));
    // The record-set fields are described, and every schema referred to is there.
    let schemas = &spec["components"]["schemas"];
    for (schema, field) in [
        ("DnsRequest", "targets"),
        ("DnsRequest", "before"),
        ("DnsRequest", "after"),
        ("DnsRequest", "expect"),
        ("ChangeBody", "expect"),
        ("HistoryEntry", "before"),
        ("ResourceBody", "targets"),
        ("RrsetView", "records"),
        ("DryRun", "plan"),
        ("PlannedRrset", "conflicts"),
        ("ChangeSetBody", "atomic"),
        ("ChangeSetBody", "changes"),
        ("ChangeItemBody", "action"),
        ("ChangeSetView", "items"),
        ("SetItem", "error"),
        ("ItemError", "fields"),
        ("SetRefused", "items"),
        ("SetPlan", "items"),
        ("DnsRequest", "change_set"),
    ] {
        assert!(
            schemas[schema]["properties"].get(field).is_some(),
            "{schema}.{field} missing: {}",
            schemas[schema]
        );
    }
    let text = spec.to_string();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = &reference[..reference.find('"').unwrap()];
        assert!(
            schemas.get(name).is_some(),
            "{name} is referred to but missing"
        );
    }
    let replace = &spec["paths"]["/api/v1/dns/replace"]["post"];
    assert!(replace["responses"]["202"].is_object(), "{replace}");
    assert!(
        replace["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "dry_run"),
        "{replace}"
    );
}

#[tokio::test]
async fn every_operation_that_answers_403_or_429_documents_it() {
    // Arrange: a token of its own account without policies may change nothing and manage
    // nothing, so every operation that can refuse it does.
    let app = spawn_app().await;
    let created: Value = app
        .client
        .post(format!("{}/api/v1/tokens", app.address))
        .json(&serde_json::json!({"account": "acct-1", "name": "bare"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bare = client_with(created["secret"].as_str().unwrap());
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut refused = Vec::new();

    // Act
    for (path, operations) in spec["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        for (method, operation) in operations.as_object().unwrap() {
            let url = format!(
                "{}{}",
                app.address,
                path.replace("{id}", &uuid::Uuid::now_v7().to_string())
            );
            let response = bare
                .request(method.to_uppercase().parse().unwrap(), url)
                .json(&change("A", "www.example.test", "192.0.2.1"))
                .send()
                .await
                .unwrap();
            if response.status() == StatusCode::FORBIDDEN {
                refused.push(format!("{method} {path}"));
                // Assert
                assert!(
                    operation["responses"]["403"].is_object(),
                    "{method} {path} answers 403 and must document it"
                );
            }
        }
    }

    // Assert: the changes are refused by policy, the admin routes by role; the changes can
    // also be rate limited, and say so.
    for expected in [
        "post /api/v1/dns/create",
        "post /api/v1/dns/delete",
        "post /api/v1/dns/replace",
        "post /api/v1/dns/adopt",
        "post /api/v1/tokens",
        "get /api/v1/audit",
    ] {
        assert!(
            refused.iter().any(|r| r == expected),
            "{expected}: {refused:?}"
        );
    }
    for path in ["/api/v1/dns/create", "/api/v1/dns/delete"] {
        let responses = &spec["paths"][path]["post"]["responses"];
        assert!(responses["429"].is_object(), "{path} documents 429");
        assert!(
            responses["429"]["headers"]["Retry-After"].is_object(),
            "{path} documents Retry-After"
        );
    }
}

/// Polls `/readyz` until it answers `status`, and returns its body.
async fn wait_for_readyz(app: &TestApp, status: StatusCode) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let response = app.get("/readyz").await;
        if response.status() == status {
            return response.json().await.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never answered {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_worker_that_panics_is_restarted_with_readyz_503_meanwhile_and_its_request_is_not_lost() {
    // Arrange: one worker; the simulated backend panics on one name.
    let app = spawn_app_with(|s| {
        s.worker_concurrency = 1;
        s.simulated_panic_name = Some("panic.example.test".into());
        s.task_restart_delay_seconds = std::time::Duration::from_secs(1);
        s.lease_seconds = std::time::Duration::from_secs(1);
        s.max_attempts = 2;
    })
    .await;
    let before = wait_for_readyz(&app, StatusCode::OK).await;

    // Act
    let panicking = app
        .create(&a_record("panic.example.test", "192.0.2.1"))
        .await;
    let down = wait_for_readyz(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    let health_down = app.get("/healthz").await;
    let health_down_status = health_down.status();
    let health_down: Value = health_down.json().await.unwrap();
    wait_for_readyz(&app, StatusCode::OK).await;
    let fine = app
        .create(&a_record("fine.example.test", "192.0.2.2"))
        .await;
    app.wait_for_status(&fine, dnsorch::domain::RequestStatus::Completed)
        .await;
    let failed = app
        .wait_for_status(&panicking, dnsorch::domain::RequestStatus::Failed)
        .await;
    let after = wait_for_readyz(&app, StatusCode::OK).await;

    // Assert: the worker was down, then back; each of the two attempts panicked once, and the
    // request failed when its last lease expired instead of staying PROCESSING.
    assert_eq!(before["tasks"]["worker 0"]["state"], "running");
    assert_eq!(before["tasks"]["reconciler"]["state"], "running");
    assert_eq!(down["status"], "unavailable");
    assert_eq!(down["tasks"]["worker 0"]["state"], "restarting");
    assert_eq!(health_down_status, StatusCode::OK);
    assert_eq!(health_down["status"], "degraded");
    assert_eq!(after["status"], "ready");
    assert_eq!(after["tasks"]["worker 0"]["state"], "running");
    assert_eq!(after["tasks"]["worker 0"]["restarts"], 2);
    assert_eq!(failed["attempts"], 2);
    let log = log_messages(&failed);
    assert!(
        log.iter()
            .any(|m| m.contains("lease expired after attempt 1;")),
        "{log:?}"
    );
    assert!(
        log.last()
            .unwrap()
            .contains("lease expired after attempt 2 of 2"),
        "{log:?}"
    );
}

#[tokio::test]
async fn a_panic_in_a_task_that_cannot_be_restarted_stops_the_app_with_an_error() {
    // Arrange: a running app, and no shutdown asked for.
    let dir = tempfile::TempDir::new().unwrap();
    let app = dnsorch::startup::Application::build(test_settings(&dir))
        .await
        .unwrap();
    let supervisor = app.supervisor();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    // Act: a task that cannot be restarted panics.
    supervisor
        .clone()
        .fatal("kafka partition 0".into(), async {
            panic!("injected");
        })
        .await;
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(20), running)
        .await
        .expect("the app stops by itself")
        .unwrap();

    // Assert
    assert!(!shutdown.is_cancelled());
    let error = stopped
        .expect_err("the app stops with an error")
        .to_string();
    assert!(
        error.contains("kafka partition 0") && error.contains("injected"),
        "{error}"
    );
    let tasks = supervisor.report();
    assert_eq!(
        tasks["kafka partition 0"].state,
        dnsorch::supervise::TaskState::Failed
    );
}
