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
        "/api/v1/dns/requests",
        "/api/v1/dns/requests/{id}",
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
