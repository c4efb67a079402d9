//! `POST /api/v1/dns/create` and `GET /api/v1/dns/requests/{id}`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_valid_request_is_accepted_with_202_and_a_location() {
    // Arrange
    let app = spawn_app().await;
    let mut body = a_record("www.example.test", "192.0.2.60");
    body["resource"]["comment"] = "web front".into();
    body["resource"]["config"] = json!({"ttl": 120, "extra_config": {"team": "web"}});

    // Act
    let response = app.post_create(&body).await;

    // Assert
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(accepted["status"], "PENDING");
    assert_eq!(accepted["source"], "api");
    assert_eq!(accepted["operation"], "create");
    assert_eq!(accepted["comment"], "web front");
    assert_eq!(
        accepted["config"],
        json!({"ttl": 120, "priority": null, "extra_config": {"team": "web"}})
    );
    let id = accepted["request_id"].as_str().unwrap();
    assert_eq!(location, format!("/api/v1/dns/requests/{id}"));
    // The row was committed before the answer.
    let stored: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(stored["request_id"], id);
    assert_eq!(stored["account_id"], "acct-1");
}

#[tokio::test]
async fn a_given_source_is_ignored_and_http_requests_are_recorded_as_api() {
    // Arrange
    let app = spawn_app().await;
    let mut body = a_record("www.example.test", "192.0.2.61");
    body["context"]["source"] = "kafka".into();
    let mut odd = a_record("www.example.test", "192.0.2.62");
    odd["context"]["source"] = "not a source!".into();

    // Act
    let id = app.create(&body).await;
    let odd_id = app.create(&odd).await;

    // Assert
    assert_eq!(app.request(&id).await["source"], "api");
    assert_eq!(app.request(&odd_id).await["source"], "api");
}

#[tokio::test]
async fn an_unknown_or_malformed_request_id_is_a_404() {
    // Arrange
    let app = spawn_app().await;

    for id in ["0195f7a0-0000-7000-8000-000000000000", "not-a-uuid"] {
        // Act
        let response = app.get(&format!("/api/v1/dns/requests/{id}")).await;

        // Assert
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "not_found");
        assert!(body["message"].as_str().unwrap().contains(id));
    }
}
