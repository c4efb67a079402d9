//! `/api/v1/audit`: token changes are recorded with their caller, and only admins read them.

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

/// Creates a token as the admin; the answer (with its secret).
async fn create_token(app: &TestApp, body: Value) -> Value {
    let response = call(&app.client, app, Method::POST, "/api/v1/tokens", Some(body)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

/// The admin's view of one audit page.
async fn audit_page(app: &TestApp, query: &str) -> (String, Value) {
    let response = app.get(&format!("/api/v1/audit{query}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let page = serde_json::from_str(&text).unwrap();
    (text, page)
}

#[tokio::test]
async fn token_changes_are_listed_newest_first_with_their_caller_and_no_secret() {
    // Arrange
    let app = spawn_app().await;
    let listed: Value = app.get("/api/v1/tokens").await.json().await.unwrap();
    let admin_id = listed["items"][0]["id"].as_str().unwrap().to_owned();
    let created = create_token(
        &app,
        json!({"account": "acct-42", "name": "ci", "metrics": true,
               "policies": [{"suffix": "example.com", "types": ["TXT"], "permissions": ["read", "create"]}]}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let rotated: Value = call(
        &app.client,
        &app,
        Method::POST,
        &format!("/api/v1/tokens/{id}/rotate"),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let revoked = call(
        &app.client,
        &app,
        Method::DELETE,
        &format!("/api/v1/tokens/{id}"),
        None,
    )
    .await;
    assert_eq!(revoked.status(), StatusCode::OK);

    // Act
    let (text, page) = audit_page(&app, "").await;

    // Assert
    let items = page["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["token.revoke", "token.rotate", "token.create"],
        "{page:#}"
    );
    for entry in items {
        assert_eq!(entry["subject"], id.as_str(), "{entry}");
        assert_eq!(
            entry["actor"],
            json!({"token_id": admin_id, "token_name": "first-run admin",
                   "account_id": "admin", "client_addr": "127.0.0.1"}),
            "{entry}"
        );
        assert_eq!(entry["details"]["token_name"], "ci", "{entry}");
        assert_eq!(entry["details"]["account_id"], "acct-42", "{entry}");
        assert!(
            entry["id"].is_string() && entry["at"].is_string(),
            "{entry}"
        );
    }
    assert_eq!(
        items[2]["details"],
        json!({"token_name": "ci", "account_id": "acct-42", "admin": false, "metrics": true,
               "forwarder": false, "policies": ["example.com:TXT=read,create"]})
    );
    assert!(page["next_cursor"].is_null());
    for secret in [&created["secret"], &rotated["secret"]] {
        let secret = secret.as_str().unwrap();
        assert!(!text.contains(secret), "{text}");
    }
    for word in ["dnsorch_", "secret", "digest"] {
        assert!(!text.contains(word), "{word} in {text}");
    }
}

#[tokio::test]
async fn the_audit_log_is_paged_and_filtered_by_action() {
    // Arrange
    let app = spawn_app().await;
    for name in ["one", "two", "three"] {
        create_token(&app, json!({"account": "acct-1", "name": name})).await;
    }
    let id = create_token(&app, json!({"account": "acct-1", "name": "four"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    call(
        &app.client,
        &app,
        Method::POST,
        &format!("/api/v1/tokens/{id}/rotate"),
        None,
    )
    .await;

    // Act
    let (_, first) = audit_page(&app, "?limit=3").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = audit_page(&app, &format!("?limit=3&cursor={cursor}")).await;
    let (_, rotations) = audit_page(&app, "?action=token.rotate").await;
    let (_, creations) = audit_page(&app, "?action=token.create&limit=500").await;

    // Assert
    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["action"].as_str().unwrap(),
                    e["details"]["token_name"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        names(&first),
        [
            "token.rotate four",
            "token.create four",
            "token.create three"
        ]
    );
    assert_eq!(names(&second), ["token.create two", "token.create one"]);
    assert!(second["next_cursor"].is_null(), "{second}");
    assert_eq!(names(&rotations), ["token.rotate four"]);
    assert_eq!(creations["items"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn only_admins_read_the_audit_log() {
    // Arrange
    let app = spawn_app().await;
    let plain = create_token(&app, json!({"account": "acct-1", "name": "plain"})).await;
    let plain = client_with(plain["secret"].as_str().unwrap());

    // Act
    let forbidden = call(&plain, &app, Method::GET, "/api/v1/audit", None).await;
    let anonymous = call(
        &crate::client::plain_client(),
        &app,
        Method::GET,
        "/api/v1/audit",
        None,
    )
    .await;

    // Assert
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    let body: Value = forbidden.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized", "{body}");
}

#[tokio::test]
async fn an_unknown_action_is_a_422_naming_the_parameter() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app.get("/api/v1/audit?action=bogus").await;

    // Assert
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["query.action"], "{body}");
    let message = body["fields"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("bogus") && message.contains("token.create"),
        "{body}"
    );
}

#[tokio::test]
async fn the_audit_log_is_documented() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();

    // Assert
    let operation = &spec["paths"]["/api/v1/audit"]["get"];
    for status in ["200", "401", "403", "422"] {
        assert!(
            operation["responses"].get(status).is_some(),
            "{status} missing from {operation:#}"
        );
    }
    assert_eq!(operation["security"], json!([{"bearer": []}]));
    let params: Vec<&str> = operation["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["action", "limit", "cursor"]);
    assert!(spec["components"]["schemas"].get("AuditEntry").is_some());
}
