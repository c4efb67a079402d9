//! Rate limits: a token bucket per non-admin token (`RATE_LIMIT_PER_SECOND`,
//! `RATE_LIMIT_BURST`) and at most `MAX_UNFINISHED_PER_NAME` unfinished requests per account
//! and name. Over either, the answer is a 429 with `Retry-After` and a JSON error, and nothing
//! is stored.

use std::time::Duration;

use dnsorch::domain::RequestStatus;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// A token of `account` that may create and delete anything under example.test.
async fn token_of(app: &TestApp, account: &str) -> String {
    let (_, secret) = app
        .token(&json!({"account": account, "name": format!("{account}-ci"),
                       "policies": [{"suffix": "example.test", "permissions": ["read", "create", "delete"]}]}))
        .await;
    secret
}

/// A create body that leaves the account to the token.
fn body(record_type: &str, domain: &str, target: &str) -> Value {
    json!({"context": {}, "resource": {"record_type": record_type, "domain": domain, "target": target}})
}

async fn create(
    app: &TestApp,
    secret: &str,
    record_type: &str,
    name: &str,
    target: &str,
) -> reqwest::Response {
    let body = body(record_type, name, target);
    app.post_as(secret, "/api/v1/dns/create", &body).await
}

/// Asserts a 429 with a `Retry-After` of at least a second and a JSON `rate_limited` error;
/// gives the wait and the message.
async fn assert_rate_limited(response: reqwest::Response) -> (u64, String) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is whole seconds");
    assert!(retry_after >= 1, "Retry-After: {retry_after}");
    let answer: Value = response.json().await.expect("a JSON error body");
    assert_eq!(answer["error"], "rate_limited", "{answer}");
    (retry_after, answer["message"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_token_over_its_burst_gets_429s_with_retry_after_and_nothing_is_stored() {
    // Arrange: a burst of 3 refilled at one a second; workers on the simulated backend.
    let app = spawn_app_with(|s| {
        s.rate_limit_burst = 3;
        s.rate_limit_per_second = 1;
        s.worker_concurrency = 2;
    })
    .await;
    let secret = token_of(&app, "acct-1").await;
    let other = token_of(&app, "acct-2").await;

    // Act: five creates at once, well inside a second.
    let mut responses = Vec::new();
    for i in 0..5 {
        let name = format!("r{i}.example.test");
        let response = app
            .post_as(
                &secret,
                "/api/v1/dns/create",
                &body("A", &name, "192.0.2.1"),
            )
            .await;
        responses.push(response);
    }

    // Assert: three accepted, then 429s; the accepted ones complete.
    let mut accepted = Vec::new();
    let mut waits = Vec::new();
    for (i, response) in responses.into_iter().enumerate() {
        if i < 3 {
            assert_eq!(response.status(), StatusCode::ACCEPTED, "create {i}");
            let answer: Value = response.json().await.unwrap();
            accepted.push(answer["request_id"].as_str().unwrap().to_owned());
        } else {
            let (wait, message) = assert_rate_limited(response).await;
            assert!(message.contains("rate limit"), "{message}");
            waits.push(wait);
        }
    }
    assert_eq!(app.stored_requests().await, 3);
    for id in &accepted {
        app.wait_for_status(id, RequestStatus::Completed).await;
    }
    // Another token has a bucket of its own.
    let theirs = app
        .post_as(
            &other,
            "/api/v1/dns/create",
            &body("A", "theirs.example.test", "192.0.2.2"),
        )
        .await;
    assert_eq!(theirs.status(), StatusCode::ACCEPTED);
    // After Retry-After, the token may go on.
    tokio::time::sleep(Duration::from_secs(waits[0])).await;
    let again = app
        .post_as(
            &secret,
            "/api/v1/dns/create",
            &body("A", "again.example.test", "192.0.2.3"),
        )
        .await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(app.stored_requests().await, 5);
}

#[tokio::test]
async fn an_admin_token_is_not_limited_by_the_bucket() {
    // Arrange
    let app = spawn_app_with(|s| {
        s.rate_limit_burst = 1;
        s.rate_limit_per_second = 1;
    })
    .await;

    for i in 0..5 {
        // Act
        let name = format!("admin{i}.example.test");
        let response = app.post_create(&a_record(&name, "192.0.2.4")).await;

        // Assert
        assert_eq!(response.status(), StatusCode::ACCEPTED, "create {i}");
    }
    assert_eq!(app.stored_requests().await, 5);
}

#[tokio::test]
async fn an_account_may_have_only_max_unfinished_per_name_requests_for_a_name() {
    // Arrange: no workers, so accepted requests stay PENDING; at most two per account and name.
    let app = spawn_app_with(|s| {
        s.max_unfinished_per_name = 2;
        s.worker_concurrency = 0;
    })
    .await;
    let one = token_of(&app, "acct-1").await;
    let two = token_of(&app, "acct-2").await;
    for target in ["192.0.2.10", "192.0.2.11"] {
        let response = create(&app, &one, "A", "www.example.test", target).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }

    // Act
    let third = create(&app, &one, "A", "www.example.test", "192.0.2.12").await;
    let other_type = create(&app, &one, "TXT", "www.example.test", "same name").await;
    let other_name = create(&app, &one, "A", "mail.example.test", "192.0.2.13").await;
    let other_account = create(&app, &two, "A", "api.example.test", "192.0.2.14").await;
    let other_account_same_name = create(&app, &two, "TXT", "www.example.test", "theirs").await;

    // Assert: the limit counts the account's unfinished requests for the name, of any type.
    let (_, message) = assert_rate_limited(third).await;
    assert!(
        message.contains("www.example.test") && message.contains("MAX_UNFINISHED_PER_NAME"),
        "{message}"
    );
    assert_rate_limited(other_type).await;
    assert_eq!(other_name.status(), StatusCode::ACCEPTED);
    assert_eq!(other_account.status(), StatusCode::ACCEPTED);
    assert_eq!(other_account_same_name.status(), StatusCode::ACCEPTED);
    assert_eq!(app.stored_requests().await, 5);

    // Once the requests have finished, there is room again.
    app.run_queued_tasks().await;
    let later = create(&app, &one, "A", "www.example.test", "192.0.2.12").await;
    assert_eq!(later.status(), StatusCode::ACCEPTED);
    assert_eq!(app.stored_requests().await, 6);
}
