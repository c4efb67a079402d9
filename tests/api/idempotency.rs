//! `Idempotency-Key`: scoped to the account; same body replays, another body conflicts, and
//! concurrent duplicates create one row.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

async fn request_count(app: &TestApp) -> usize {
    let page: Value = app.get("/api/v1/dns/requests").await.json().await.unwrap();
    page["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn the_same_key_and_body_return_the_original_request() {
    // Arrange
    let app = spawn_app().await;
    let body = a_record("www.example.test", "192.0.2.30");
    let first = app.post_create_with_key(&body, "key-1").await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();

    // Act: the same change, written differently but equal once normalised.
    let mut again = a_record("WWW.Example.Test.", "192.0.2.30");
    again["resource"]["record_type"] = "a".into();
    let second = app.post_create_with_key(&again, "key-1").await;

    // Assert
    assert_eq!(second.status(), StatusCode::OK);
    let location = second.headers()["location"].to_str().unwrap().to_owned();
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["request_id"], first["request_id"]);
    assert_eq!(
        location,
        format!(
            "/api/v1/dns/requests/{}",
            first["request_id"].as_str().unwrap()
        )
    );
    assert_eq!(second["idempotency_key"], "key-1");
    assert_eq!(request_count(&app).await, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_a_conflict() {
    // Arrange
    let app = spawn_app().await;
    let id = {
        let response = app
            .post_create_with_key(&a_record("www.example.test", "192.0.2.31"), "key-2")
            .await;
        let body: Value = response.json().await.unwrap();
        body["request_id"].as_str().unwrap().to_owned()
    };

    // Act
    let response = app
        .post_create_with_key(&a_record("www.example.test", "192.0.2.32"), "key-2")
        .await;

    // Assert
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "conflict");
    assert_eq!(body["request_id"], id.as_str());
    assert_eq!(request_count(&app).await, 1);
}

#[tokio::test]
async fn keys_are_scoped_to_the_account() {
    // Arrange
    let app = spawn_app().await;
    let body = a_record("www.example.test", "192.0.2.33");
    let mut other_account = a_record("two.example.test", "192.0.2.33");
    other_account["context"]["account_id"] = "acct-2".into();

    // Act
    let first = app.post_create_with_key(&body, "shared-key").await;
    let second = app.post_create_with_key(&other_account, "shared-key").await;

    // Assert
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert_eq!(second.status(), StatusCode::ACCEPTED);
    assert_eq!(request_count(&app).await, 2);
}

#[tokio::test]
async fn identical_requests_sent_at_the_same_moment_create_one_row() {
    // Arrange
    let app = spawn_app().await;
    let body = a_record("www.example.test", "192.0.2.34");

    // Act
    let responses = futures::future::join_all(
        (0..16).map(|_| app.post_create_with_key(&body, "key-concurrent")),
    )
    .await;

    // Assert
    let mut ids = Vec::new();
    let mut created = 0;
    for response in responses {
        match response.status() {
            StatusCode::ACCEPTED => created += 1,
            StatusCode::OK => {}
            other => panic!("unexpected status {other}"),
        }
        let body: Value = response.json().await.unwrap();
        ids.push(body["request_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(created, 1);
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(request_count(&app).await, 1);
}

#[tokio::test]
async fn an_unusable_key_is_rejected_and_nothing_is_stored() {
    // Arrange
    let app = spawn_app().await;
    let body = a_record("www.example.test", "192.0.2.35");

    // Act
    let response = app.post_create_with_key(&body, &"k".repeat(256)).await;

    // Assert
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "header.Idempotency-Key");
    assert_eq!(request_count(&app).await, 0);
}
