//! `/api/v1/tokens`: only admins manage tokens; secrets are shown once; the last admin token
//! stays.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

async fn call(
    client: &reqwest::Client,
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = client.request(method, format!("{}{path}", app.address));
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// The example token of the issue.
fn ci_token() -> Value {
    json!({"account": "acct-42", "name": "ci",
           "policies": [{"suffix": "example.com", "types": ["TXT"], "permissions": ["read", "create", "delete"]}],
           "expires_in_seconds": 86400, "allowed_subnets": ["10.0.0.0/8"], "admin": false, "metrics": false})
}

#[tokio::test]
async fn an_admin_creates_a_token_and_sees_its_secret_only_in_that_answer() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let created = call(
        &app.client,
        &app,
        Method::POST,
        "/api/v1/tokens",
        Some(ci_token()),
    )
    .await;

    // Assert
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let (id, secret) = (
        created["id"].as_str().unwrap(),
        created["secret"].as_str().unwrap(),
    );
    assert!(
        secret.starts_with("dnsorch_") && secret.len() >= 8 + 32,
        "{secret}"
    );
    assert_eq!(created["account"], "acct-42");
    assert_eq!(
        created["policies"][0],
        json!({"suffix": "example.com", "types": ["TXT"], "permissions": ["read", "create", "delete"]})
    );
    assert_eq!(created["allowed_subnets"], json!(["10.0.0.0/8"]));
    assert!(created["expires_at"].is_string());
    let shown = call(
        &app.client,
        &app,
        Method::GET,
        &format!("/api/v1/tokens/{id}"),
        None,
    )
    .await;
    let listed = call(&app.client, &app, Method::GET, "/api/v1/tokens", None).await;
    let (shown, listed) = (shown.text().await.unwrap(), listed.text().await.unwrap());
    assert!(shown.contains(id) && listed.contains(id));
    for answer in [&shown, &listed] {
        assert!(
            !answer.contains(secret) && !answer.contains("secret") && !answer.contains("digest"),
            "{answer}"
        );
    }
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        2,
        "the first-run admin token and ci"
    );
}

#[tokio::test]
async fn only_admins_manage_tokens() {
    // Arrange
    let app = spawn_app().await;
    let created: Value = call(
        &app.client,
        &app,
        Method::POST,
        "/api/v1/tokens",
        Some(json!({"account": "acct-1", "name": "plain"})),
    )
    .await
    .json()
    .await
    .unwrap();
    let (id, plain) = (
        created["id"].as_str().unwrap(),
        client_with(created["secret"].as_str().unwrap()),
    );
    let calls = [
        (
            Method::POST,
            "/api/v1/tokens".to_owned(),
            Some(json!({"account": "acct-1", "name": "more", "admin": true})),
        ),
        (Method::GET, "/api/v1/tokens".to_owned(), None),
        (Method::GET, format!("/api/v1/tokens/{id}"), None),
        (Method::POST, format!("/api/v1/tokens/{id}/rotate"), None),
        (Method::DELETE, format!("/api/v1/tokens/{id}"), None),
    ];

    for (method, path, body) in calls {
        // Act
        let response = call(&plain, &app, method.clone(), &path, body).await;

        // Assert
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "forbidden");
    }
    // Nothing changed: still two tokens, the plain one still works.
    let listed: Value = call(&app.client, &app, Method::GET, "/api/v1/tokens", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        call(&plain, &app, Method::GET, "/api/v1/dns/requests", None)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn bad_tokens_are_refused_naming_each_bad_field_and_nothing_is_stored() {
    // Arrange
    let app = spawn_app().await;
    let cases = [
        (json!({"name": "x"}), vec!["account"]),
        (json!({"account": "", "name": "x"}), vec!["account"]),
        (
            json!({"account": "a", "name": "x", "policies": [{"suffix": "exa mple.com", "permissions": ["read"]}]}),
            vec!["policies[0].suffix"],
        ),
        (
            json!({"account": "a", "name": "x", "policies": [{"suffix": "example.com", "types": ["SPF"], "permissions": ["fly"]}]}),
            vec!["policies[0].types[0]", "policies[0].permissions[0]"],
        ),
        (
            json!({"account": "a", "name": "x", "policies": [{"suffix": "example.com", "permissions": []}]}),
            vec!["policies[0].permissions"],
        ),
        (
            json!({"account": "a", "name": "x", "policies": [
            {"suffix": "example.com", "types": ["A", "TXT"], "permissions": ["read"]},
            {"suffix": "example.com.", "types": ["txt"], "permissions": ["create"]}]}),
            vec!["policies[1]"],
        ),
        (
            json!({"account": "a", "name": "x", "expires_in_seconds": 0}),
            vec!["expires_in_seconds"],
        ),
        (
            json!({"account": "a", "name": "x", "expires_in_seconds": -3}),
            vec!["expires_in_seconds"],
        ),
        (
            json!({"account": "a", "name": "x", "allowed_subnets": ["10.0.0.0/33"]}),
            vec!["allowed_subnets[0]"],
        ),
    ];

    for (body, fields) in cases {
        // Act
        let response = call(
            &app.client,
            &app,
            Method::POST,
            "/api/v1/tokens",
            Some(body.clone()),
        )
        .await;

        // Assert
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let answer: Value = response.json().await.unwrap();
        let named: Vec<&str> = answer["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert_eq!(named, fields, "{body}: {answer}");
    }
    let listed: Value = call(&app.client, &app, Method::GET, "/api/v1/tokens", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_last_valid_admin_token_cannot_be_revoked() {
    // Arrange
    let app = spawn_app().await;
    let listed: Value = call(&app.client, &app, Method::GET, "/api/v1/tokens", None)
        .await
        .json()
        .await
        .unwrap();
    let first = listed["items"][0]["id"].as_str().unwrap().to_owned();

    // Act
    let refused = call(
        &app.client,
        &app,
        Method::DELETE,
        &format!("/api/v1/tokens/{first}"),
        None,
    )
    .await;

    // Assert
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    assert_eq!(
        call(&app.client, &app, Method::GET, "/api/v1/tokens", None)
            .await
            .status(),
        StatusCode::OK
    );

    // Arrange: a second admin; then the first may go, and the second may not.
    let second: Value = call(
        &app.client,
        &app,
        Method::POST,
        "/api/v1/tokens",
        Some(json!({"account": "admin", "name": "ops", "admin": true})),
    )
    .await
    .json()
    .await
    .unwrap();
    let second_client = client_with(second["secret"].as_str().unwrap());
    let second_id = second["id"].as_str().unwrap();

    // Act + Assert
    let revoked = call(
        &second_client,
        &app,
        Method::DELETE,
        &format!("/api/v1/tokens/{first}"),
        None,
    )
    .await;
    assert_eq!(revoked.status(), StatusCode::OK);
    let last = call(
        &second_client,
        &app,
        Method::DELETE,
        &format!("/api/v1/tokens/{second_id}"),
        None,
    )
    .await;
    assert_eq!(last.status(), StatusCode::CONFLICT);
    let rotate_revoked = call(
        &second_client,
        &app,
        Method::POST,
        &format!("/api/v1/tokens/{first}/rotate"),
        None,
    )
    .await;
    assert_eq!(rotate_revoked.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn an_unknown_token_id_is_a_404() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/tokens/not-a-uuid",
        "/api/v1/tokens/0195f7a0-0000-7000-8000-000000000000",
    ] {
        assert_eq!(
            call(&app.client, &app, Method::GET, path, None)
                .await
                .status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&app.client, &app, Method::DELETE, path, None)
                .await
                .status(),
            StatusCode::NOT_FOUND
        );
    }
}
