//! Dry runs on the simulated backend, where the ledger is the live state: the plan says it
//! read the ledger, a refused change is refused as a submission would be, and nothing is
//! stored or queued.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn plan(app: &TestApp, operation: &str, body: &Value) -> (StatusCode, Value) {
    let response = app
        .client
        .post(format!(
            "{}/api/v1/dns/{operation}?dry_run=true",
            app.address
        ))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_plan_on_the_simulated_backend_reads_the_ledger_and_stores_nothing() {
    // Arrange: one applied A record.
    let app = spawn_app().await;
    let record = a_record("www.example.test", "192.0.2.1");
    app.create(&record).await;
    app.run_queued_tasks().await;
    let stored = app.stored_requests().await;

    // Act
    let (add_status, add) = plan(&app, "create", &a_record("www.example.test", "192.0.2.2")).await;
    let whole = json!({"context": {"account_id": "acct-1"},
                       "resource": {"record_type": "A", "domain": "www.example.test"}});
    let (_, remove_all) = plan(&app, "delete", &whole).await;
    let (_, absent) = plan(&app, "delete", &a_record("www.example.test", "192.0.2.9")).await;

    // Assert
    assert_eq!(add_status, StatusCode::OK, "{add}");
    let item = &add["plan"][0];
    assert_eq!(item["read_from"], "ledger", "{add}");
    assert_eq!(
        item["before"],
        json!({"ttl": 300, "records": ["192.0.2.1"]}),
        "{add}"
    );
    assert_eq!(
        item["after"],
        json!({"ttl": 300, "records": ["192.0.2.1", "192.0.2.2"]}),
        "{add}"
    );
    assert_eq!(item["conflicts"], json!([]), "{add}");
    assert_eq!(remove_all["plan"][0]["after"], Value::Null, "{remove_all}");
    assert_eq!(
        remove_all["plan"][0]["conflicts"],
        json!([]),
        "{remove_all}"
    );
    assert_eq!(
        absent["plan"][0]["conflicts"][0]["kind"], "absent",
        "{absent}"
    );
    assert_eq!(app.stored_requests().await, stored);
    assert!(
        app.run_queued_tasks().await.is_empty(),
        "a dry run queued work"
    );
}

#[tokio::test]
async fn a_dry_run_is_refused_as_the_submission_would_be() {
    // Arrange: a token that may create only under other.test.
    let app = spawn_app().await;
    let (_, secret) = app
        .token(&json!({"account": "acct-d", "name": "d", "policies": [
            {"suffix": "other.test", "permissions": ["read", "create"]}
        ]}))
        .await;
    let body = json!({"resource": {"record_type": "A", "domain": "www.example.test", "target": "192.0.2.1"}});

    // Act
    let denied = app
        .post_as(&secret, "/api/v1/dns/create?dry_run=true", &body)
        .await;
    let invalid = app
        .post_as(
            &secret,
            "/api/v1/dns/create?dry_run=true",
            &json!({"resource": {"record_type": "A", "domain": "www.other.test", "target": "nope"}}),
        )
        .await;

    // Assert
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.stored_requests().await, 0);
}

#[tokio::test]
async fn a_server_that_cannot_be_read_gives_no_before_and_an_unreadable_conflict() {
    // Arrange: example.test on rfc2136 at a loopback port nothing listens on.
    let dir = tempfile::TempDir::new().unwrap();
    let secret = dir.path().join("tsig.secret");
    std::fs::write(&secret, "c2VjcmV0IG9mIHRoZSB0ZXN0\n").unwrap();
    let zones = dir.path().join("zones.toml");
    std::fs::write(
        &zones,
        format!(
            "[zones.\"example.test\"]\nbackend = \"rfc2136\"\nserver = \"127.0.0.1:9\"\n\
             key_name = \"k\"\nkey_secret_file = \"{}\"\ntimeout_seconds = 1\n",
            secret.display()
        ),
    )
    .unwrap();
    let app = spawn_app_with(|settings| settings.dnsorch_config = Some(zones)).await;

    // Act
    let (status, planned) = plan(&app, "create", &a_record("www.example.test", "192.0.2.1")).await;
    let submitted = app
        .post_create(&a_record("www.example.test", "192.0.2.1"))
        .await;

    // Assert: the plan says it could not read, and is made against the (empty) ledger; an
    // ordinary submission never queries DNS at intake, so it is accepted.
    assert_eq!(status, StatusCode::OK, "{planned}");
    let item = &planned["plan"][0];
    assert_eq!(item["before"], Value::Null, "{planned}");
    assert_eq!(item["read_from"], "server", "{planned}");
    assert_eq!(item["conflicts"][0]["kind"], "unreadable", "{planned}");
    assert_eq!(
        item["after"],
        json!({"ttl": 300, "records": ["192.0.2.1"]}),
        "{planned}"
    );
    assert_eq!(submitted.status(), StatusCode::ACCEPTED);
    assert_eq!(app.stored_requests().await, 1);
}
