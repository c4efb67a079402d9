//! `GET /api/v1/dns/requests` and `GET /api/v1/dns/records`: filters, order, cursor paging.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

async fn page(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.unwrap()
}

fn field_of(page: &Value, field: &str) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn requests_are_listed_newest_first_and_paged_by_cursor() {
    // Arrange
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            app.create(&a_record(&format!("h{i}.example.test"), "192.0.2.50"))
                .await,
        );
    }
    ids.reverse();

    // Act
    let mut seen = Vec::new();
    let mut path = "/api/v1/dns/requests?limit=3".to_owned();
    loop {
        let page = page(&app, &path).await;
        assert!(
            page["items"][0].get("log_messages").is_none(),
            "lists leave logs out"
        );
        seen.extend(field_of(&page, "request_id"));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/dns/requests?limit=3&cursor={cursor}"),
            None => break,
        }
    }

    // Assert
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn requests_are_filtered_by_status_account_domain_and_type() {
    // Arrange
    let app = spawn_app().await;
    let done = app
        .create(&a_record("www.example.test", "192.0.2.51"))
        .await;
    app.run_queued_tasks().await;
    let pending = app
        .create(&change("TXT", "www.example.test", "v=spf1 -all"))
        .await;
    let mut other = a_record("mail.example.test", "192.0.2.52");
    other["context"]["account_id"] = "acct-2".into();
    let other = app.create(&other).await;

    // Act
    let completed = page(&app, "/api/v1/dns/requests?status=completed").await;
    let pending_page = page(
        &app,
        "/api/v1/dns/requests?status=PENDING&account_id=acct-1",
    )
    .await;
    let by_account = page(&app, "/api/v1/dns/requests?account_id=acct-2").await;
    let by_domain = page(&app, "/api/v1/dns/requests?domain=WWW.example.test.").await;
    let by_type = page(&app, "/api/v1/dns/requests?record_type=txt&status=&domain=").await;

    // Assert
    assert_eq!(
        field_of(&completed, "request_id"),
        std::slice::from_ref(&done)
    );
    assert_eq!(
        field_of(&pending_page, "request_id"),
        std::slice::from_ref(&pending)
    );
    assert_eq!(field_of(&by_account, "request_id"), [other]);
    assert_eq!(field_of(&by_domain, "request_id"), [pending.clone(), done]);
    assert_eq!(field_of(&by_type, "request_id"), [pending]);
}

#[tokio::test]
async fn bad_list_parameters_are_a_422_naming_each() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app
        .get("/api/v1/dns/requests?status=DONE&limit=0&cursor=abc&record_type=SPF")
        .await;
    let unknown = app.get("/api/v1/dns/requests?colour=red").await;

    // Assert
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    for field in [
        "query.status",
        "query.limit",
        "query.cursor",
        "query.record_type",
    ] {
        assert!(fields.contains(&field), "{field} missing from {body:#}");
    }
    assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = unknown.json().await.unwrap();
    assert!(
        body["fields"][0]["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );
}

#[tokio::test]
async fn the_record_ledger_lists_provisioned_records_with_filters_and_paging() {
    // Arrange
    let app = spawn_app().await;
    for i in 0..4 {
        app.create(&a_record(&format!("h{i}.example.test"), "192.0.2.53"))
            .await;
    }
    let mut mx = change("MX", "example.test", "mail.example.test");
    mx["resource"]["config"] = serde_json::json!({"priority": 10});
    app.create(&mx).await;
    app.create(&a_record("pending.example.test", "192.0.2.54"))
        .await;
    app.run_queued_tasks().await;
    app.create(&a_record("later.example.test", "192.0.2.55"))
        .await;

    // Act
    let first = page(&app, "/api/v1/dns/records?limit=4").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = page(
        &app,
        &format!("/api/v1/dns/records?limit=4&cursor={cursor}"),
    )
    .await;
    let mx_only = page(&app, "/api/v1/dns/records?record_type=MX").await;
    let by_domain = page(&app, "/api/v1/dns/records?domain=h2.example.test").await;

    // Assert: six completed requests, one still pending is not in the ledger.
    assert_eq!(
        first["items"].as_array().unwrap().len() + second["items"].as_array().unwrap().len(),
        6
    );
    assert!(second["next_cursor"].is_null());
    assert_eq!(mx_only["items"][0]["priority"], 10);
    assert_eq!(mx_only["items"][0]["target"], "mail.example.test");
    assert_eq!(field_of(&by_domain, "domain"), ["h2.example.test"]);
}
