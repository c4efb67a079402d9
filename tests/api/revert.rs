//! `expect` (optimistic concurrency) and `POST /api/v1/dns/requests/{id}/revert` on the
//! simulated backend, where the ledger is the live state.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const NAME: &str = "www.example.test";

/// A body for A records at `NAME` with these `targets` and `ttl`.
fn set(targets: &[&str], ttl: u32) -> Value {
    a_set(NAME, targets, ttl)
}

impl TestApp {
    /// POSTs `body` to `path` as the admin: the status and the answer.
    async fn send(&self, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let mut request = self.client.post(format!("{}{path}", self.address));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Submits and applies `body` on `operation`: the request as it ended.
    async fn applied(&self, operation: &str, body: &Value) -> Value {
        let (status, answer) = self
            .send(&format!("/api/v1/dns/{operation}"), Some(body))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        self.run_queued_tasks().await;
        self.request(answer["request_id"].as_str().unwrap()).await
    }

    async fn revert(&self, id: &Value, body: Option<&Value>) -> (StatusCode, Value) {
        let id = id.as_str().unwrap();
        self.send(&format!("/api/v1/dns/requests/{id}/revert"), body)
            .await
    }
}

#[tokio::test]
async fn a_replace_whose_expectation_does_not_hold_fails_with_both_versions_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    app.applied("create", &set(&["192.0.2.1"], 300)).await;
    let expecting = |expect: Value| {
        let mut body = set(&["192.0.2.2"], 600);
        body["expect"] = expect;
        body
    };

    // Act: a stale expectation, then the right one (records in another order do not matter).
    let stale = app
        .applied(
            "replace",
            &expecting(json!({"ttl": 300, "records": ["192.0.2.9"]})),
        )
        .await;
    let after_stale = app.ledger_at(NAME).await;
    let right = app
        .applied(
            "replace",
            &expecting(json!({"ttl": 300, "records": ["192.0.2.1"]})),
        )
        .await;
    let absent = app
        .applied(
            "replace",
            &json!({"resource": {"record_type": "A", "domain": "new.example.test",
                                 "targets": ["192.0.2.3"]}, "expect": null}),
        )
        .await;
    let mut stale_create = set(&["192.0.2.7"], 600);
    stale_create["expect"] = json!(null);
    let create = app.applied("create", &stale_create).await;
    let mut adoption = set(&[], 300);
    adoption["resource"]
        .as_object_mut()
        .unwrap()
        .remove("targets");
    adoption["expect"] = json!(null);
    let (on_adopt, refused) = app.send("/api/v1/dns/adopt", Some(&adoption)).await;

    // Assert
    assert_eq!(stale["status"], "FAILED", "{stale}");
    let log = log_messages(&stale).join("\n");
    assert!(log.contains("expected ttl 300 [192.0.2.9]"), "{log}");
    assert!(log.contains("found ttl 300 [192.0.2.1]"), "{log}");
    assert_eq!(
        stale["expect"],
        json!({"ttl": 300, "records": ["192.0.2.9"]})
    );
    assert_eq!(after_stale, [(300, "192.0.2.1".into())]);
    assert_eq!(right["status"], "COMPLETED", "{right}");
    assert_eq!(app.ledger_at(NAME).await, [(600, "192.0.2.2".into())]);
    assert_eq!(absent["status"], "COMPLETED", "{absent}");
    assert_eq!(absent["expect"], json!({"ttl": 0, "records": []}));
    // A create may expect too: the RRset is not absent, so it fails and adds nothing.
    assert_eq!(create["status"], "FAILED", "{create}");
    assert!(
        log_messages(&create)
            .join("\n")
            .contains("expected nothing"),
        "{create}"
    );
    assert_eq!(app.ledger_at(NAME).await, [(600, "192.0.2.2".into())]);
    assert_eq!(on_adopt, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused["fields"][0]["field"], "expect", "{refused}");
}

#[tokio::test]
async fn a_revert_puts_the_rrset_back_and_is_refused_once_it_changed_again() {
    // Arrange: two records, replaced by one with another TTL.
    let app = spawn_app().await;
    app.applied("create", &set(&["192.0.2.1", "192.0.2.2"], 300))
        .await;
    let replaced = app.applied("replace", &set(&["192.0.2.5"], 600)).await;

    // Act: revert the replace, then try to revert it again (the RRset is no longer its after).
    let (status, revert) = app.revert(&replaced["request_id"], None).await;
    app.run_queued_tasks().await;
    let reverted = app.request(revert["request_id"].as_str().unwrap()).await;
    let (again, refused) = app.revert(&replaced["request_id"], Some(&json!({}))).await;

    // Assert
    assert_eq!(status, StatusCode::ACCEPTED, "{revert}");
    assert_eq!(reverted["operation"], "replace", "{reverted}");
    assert_eq!(reverted["status"], "COMPLETED", "{reverted}");
    assert_eq!(reverted["expect"], replaced["after"], "{reverted}");
    assert_eq!(reverted["after"], replaced["before"], "{reverted}");
    assert_eq!(
        app.ledger_at(NAME).await,
        [(300, "192.0.2.1".into()), (300, "192.0.2.2".into())]
    );
    assert_eq!(again, StatusCode::CONFLICT, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("ttl 300 [192.0.2.1, 192.0.2.2]"),
        "{message}"
    );
}

#[tokio::test]
async fn a_revert_of_a_create_from_nothing_deletes_the_rrset() {
    // Arrange
    let app = spawn_app().await;
    let created = app.applied("create", &set(&["192.0.2.1"], 300)).await;

    // Act
    let (status, revert) = app.revert(&created["request_id"], None).await;
    app.run_queued_tasks().await;

    // Assert
    assert_eq!(status, StatusCode::ACCEPTED, "{revert}");
    let reverted = app.request(revert["request_id"].as_str().unwrap()).await;
    assert_eq!(reverted["operation"], "delete", "{reverted}");
    assert_eq!(reverted["status"], "COMPLETED", "{reverted}");
    assert_eq!(reverted["targets"], json!([]));
    assert!(app.ledger_at(NAME).await.is_empty());
}

#[tokio::test]
async fn only_a_completed_change_of_ones_own_account_can_be_reverted() {
    // Arrange: a failed delete, a pending create, and a token of another account.
    let app = spawn_app().await;
    let failed = app.applied("delete", &set(&["192.0.2.9"], 300)).await;
    let (_, pending) = app
        .send("/api/v1/dns/create", Some(&set(&["192.0.2.1"], 300)))
        .await;
    let (_, stranger) = app
        .token(
            &json!({"account": "acct-2", "name": "stranger", "policies": [
                {"suffix": "example.test", "permissions": ["read", "create", "delete"]}
            ]}),
        )
        .await;
    let stored = app.stored_requests().await;

    // Act
    let (on_failed, failed_answer) = app.revert(&failed["request_id"], None).await;
    let (on_pending, _) = app.revert(&pending["request_id"], None).await;
    let (with_body, body_answer) = app
        .revert(&pending["request_id"], Some(&json!({"why": "x"})))
        .await;
    let theirs = client_with(&stranger)
        .post(format!(
            "{}/api/v1/dns/requests/{}/revert",
            app.address,
            pending["request_id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(on_failed, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        failed_answer["message"]
            .as_str()
            .unwrap()
            .contains("FAILED"),
        "{failed_answer}"
    );
    assert_eq!(on_pending, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(with_body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body_answer["fields"][0]["field"], "body", "{body_answer}");
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.stored_requests().await, stored);
}
