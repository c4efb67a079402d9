//! Bodies that are not what the API takes: too large, not JSON, the wrong shape. Each gets a
//! clear JSON error, nothing is stored, and nothing is ever a 500.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn assert_nothing_stored(app: &TestApp) {
    let page: Value = app.get("/api/v1/dns/requests").await.json().await.unwrap();
    assert_eq!(page["items"], json!([]));
}

#[tokio::test]
async fn a_body_over_64_kib_is_refused_with_413() {
    // Arrange
    let app = spawn_app().await;
    let mut body = a_record("www.example.test", "192.0.2.40");
    body["resource"]["comment"] = "x".repeat(70 * 1024).into();

    // Act
    let response = app.post_create(&body).await;

    // Assert
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "payload_too_large");
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn max_body_bytes_sets_the_limit_and_the_413_names_it() {
    // Arrange
    let app = spawn_app_with(|s| s.max_body_bytes = 1000).await;
    let small = a_record("www.example.test", "192.0.2.40");
    let mut large = small.clone();
    large["resource"]["comment"] = "x".repeat(1000).into();

    // Act
    let refused = app.post_create(&large).await;
    let accepted = app.post_create(&small).await;

    // Assert
    assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"], "payload_too_large");
    assert!(
        error["message"].as_str().unwrap().contains("1000 bytes"),
        "{error}"
    );
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn malformed_json_is_a_400_naming_the_problem() {
    // Arrange
    let app = spawn_app().await;

    for body in [r#"{"context": "#, "{} trailing", "not json", ""] {
        // Act
        let response = app.post_raw(body, "application/json").await;

        // Assert
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "body {body:?}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "malformed_json", "body {body:?}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("not valid JSON")
        );
    }
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_a_415() {
    // Arrange
    let app = spawn_app().await;
    let body = a_record("www.example.test", "192.0.2.41").to_string();

    for content_type in ["text/plain", "application/x-www-form-urlencoded", ""] {
        // Act
        let response = app.post_raw(body.clone(), content_type).await;

        // Assert
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "unsupported_media_type");
    }
    let response = app.post_raw(body, "application/json; charset=utf-8").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn odd_bodies_never_produce_a_server_error() {
    // Arrange
    let app = spawn_app().await;
    let deep = "[".repeat(10_000);
    let odd = [
        "null",
        "[]",
        "\"text\"",
        "123",
        r#"{"context": null, "resource": null}"#,
        r#"{"context": [], "resource": {}}"#,
        r#"{"context": {"account_id": 7}}"#,
        r#"{"resource": {"config": {"ttl": 1e400}}}"#,
        r#"{"resource": {"config": {"ttl": 3.5}}}"#,
        r#"{"resource": {"config": {"extra_config": []}}}"#,
        r#"{"context": {"account_id": "a\u0000b"}, "resource": {"record_type": "A", "domain": "\u0000.test", "target": "1.2.3.4"}}"#,
        r#"{"context": {"account_id": "a"}, "resource": {"record_type": "TXT", "domain": "x.example.test", "target": "\ud800"}}"#,
        deep.as_str(),
    ];

    for body in odd {
        // Act
        let response = app.post_raw(body.to_owned(), "application/json").await;

        // Assert
        let status = response.status();
        assert!(
            status.is_client_error(),
            "{status} for {}",
            &body[..body.len().min(80)]
        );
        let error: Value = response.json().await.expect("a JSON error body");
        assert!(error["error"].is_string());
    }
    let bytes = app
        .post_raw(vec![0xff, 0xfe, 0x00], "application/json")
        .await;
    assert_eq!(bytes.status(), StatusCode::BAD_REQUEST);
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let missing = app.get("/api/v1/nope").await;
    let wrong_method = app.get("/api/v1/dns/create").await;

    // Assert
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.json::<Value>().await.unwrap()["error"], "not_found");
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        wrong_method.json::<Value>().await.unwrap()["error"],
        "method_not_allowed"
    );
}
