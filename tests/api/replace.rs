//! Record sets on the simulated backend, where the ledger is the live state: several records
//! in one request, `POST /api/v1/dns/replace`, the permissions and ownership a replace needs,
//! its plan, and the RRset before and after that every applied request records.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const NAME: &str = "www.example.test";

/// A body for A records at `NAME` with these `targets` and `ttl`.
fn set(targets: &[&str], ttl: u32) -> Value {
    a_set(NAME, targets, ttl)
}

fn rrset(ttl: u32, records: &[&str]) -> Value {
    json!({"ttl": ttl, "records": records})
}

impl TestApp {
    /// POSTs `body` to `/api/v1/dns/{operation}` as the admin, asserting 202: the request id.
    async fn submit(&self, operation: &str, body: &Value) -> String {
        let response = self
            .client
            .post(format!("{}/api/v1/dns/{operation}", self.address))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "{operation}: {answer}");
        answer["request_id"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn a_replace_makes_the_rrset_exactly_its_records_and_every_request_records_before_and_after()
{
    // Arrange: three records in one create.
    let app = spawn_app().await;
    let created = app
        .submit(
            "create",
            &set(&["192.0.2.1", "192.0.2.2", "192.0.2.3"], 300),
        )
        .await;
    app.run_queued_tasks().await;

    // Act: replace them with two others and a new TTL, then delete one of those.
    let replaced = app
        .submit("replace", &set(&["192.0.2.7", "192.0.2.8"], 600))
        .await;
    app.run_queued_tasks().await;
    let after_replace = app.ledger_at(NAME).await;
    let deleted = app.submit("delete", &set(&["192.0.2.8"], 600)).await;
    app.run_queued_tasks().await;

    // Assert: each request's before and after, and the ledger after each.
    let created = app.request(&created).await;
    assert_eq!(created["status"], "COMPLETED", "{created}");
    assert_eq!(created["before"], rrset(0, &[]), "{created}");
    assert_eq!(
        created["after"],
        rrset(300, &["192.0.2.1", "192.0.2.2", "192.0.2.3"]),
        "{created}"
    );
    let replaced = app.request(&replaced).await;
    assert_eq!(replaced["status"], "COMPLETED", "{replaced}");
    assert_eq!(replaced["operation"], "replace", "{replaced}");
    assert_eq!(
        replaced["targets"],
        json!(["192.0.2.7", "192.0.2.8"]),
        "{replaced}"
    );
    assert_eq!(replaced["before"], created["after"], "{replaced}");
    assert_eq!(
        replaced["after"],
        rrset(600, &["192.0.2.7", "192.0.2.8"]),
        "{replaced}"
    );
    assert_eq!(
        after_replace,
        [(600, "192.0.2.7".into()), (600, "192.0.2.8".into())]
    );
    let deleted = app.request(&deleted).await;
    assert_eq!(deleted["status"], "COMPLETED", "{deleted}");
    assert_eq!(deleted["before"], replaced["after"], "{deleted}");
    assert_eq!(deleted["after"], rrset(600, &["192.0.2.7"]), "{deleted}");
    assert_eq!(app.ledger_at(NAME).await, [(600, "192.0.2.7".into())]);
}

#[tokio::test]
async fn a_replace_needs_create_and_delete_permission_an_rrset_of_its_own_and_records() {
    // Arrange: acct-1's RRset, and tokens of acct-2 with one permission, or both.
    let app = spawn_app().await;
    app.submit("create", &set(&["192.0.2.1"], 300)).await;
    app.run_queued_tasks().await;
    let token = |account: &str, permissions: Value| {
        json!({"account": account, "name": format!("t-{account}-{permissions}"), "policies": [
            {"suffix": "example.test", "types": ["A"], "permissions": permissions}
        ]})
    };
    let (_, create_only) = app.token(&token("acct-2", json!(["create"]))).await;
    let (_, delete_only) = app.token(&token("acct-2", json!(["delete"]))).await;
    let (_, both) = app
        .token(&token("acct-2", json!(["create", "delete"])))
        .await;
    let (_, own) = app
        .token(&token("acct-1", json!(["create", "delete"])))
        .await;
    let theirs =
        json!({"resource": {"record_type": "A", "domain": NAME, "targets": ["192.0.2.9"]}});
    let stored = app.stored_requests().await;

    // Act
    let mut answers = Vec::new();
    for secret in [&create_only, &delete_only, &both] {
        let response = app.post_as(secret, "/api/v1/dns/replace", &theirs).await;
        let status = response.status();
        answers.push((status, response.json::<Value>().await.unwrap()));
    }
    let empty = app
        .post_as(
            &own,
            "/api/v1/dns/replace",
            &json!({"resource": {"record_type": "A", "domain": NAME, "targets": []}}),
        )
        .await;
    let none = app
        .post_as(
            &own,
            "/api/v1/dns/replace",
            &json!({"resource": {"record_type": "A", "domain": NAME}}),
        )
        .await;

    // Assert: each refusal says why, and nothing was stored or changed.
    let message = |i: usize| {
        answers[i].1["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(answers[0].0, StatusCode::FORBIDDEN, "{:?}", answers[0]);
    assert!(message(0).contains("delete"), "{}", message(0));
    assert_eq!(answers[1].0, StatusCode::FORBIDDEN, "{:?}", answers[1]);
    assert!(message(1).contains("create"), "{}", message(1));
    assert_eq!(answers[2].0, StatusCode::FORBIDDEN, "{:?}", answers[2]);
    assert!(
        message(2).contains("belongs to another account"),
        "{}",
        message(2)
    );
    for response in [empty, none] {
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["fields"][0]["field"], "resource.targets", "{error}");
    }
    assert_eq!(app.stored_requests().await, stored);
    assert_eq!(app.ledger_at(NAME).await, [(300, "192.0.2.1".into())]);
}

#[tokio::test]
async fn a_replace_of_an_unowned_rrset_claims_it_for_the_account() {
    // Arrange
    let app = spawn_app().await;
    let (_, other) = app
        .token(&json!({"account": "acct-2", "name": "other", "policies": [
            {"suffix": "example.test", "types": ["A"], "permissions": ["create"]}
        ]}))
        .await;

    // Act: acct-1 replaces an RRset nobody has; acct-2 then tries to add to it.
    let replaced = app.submit("replace", &set(&["192.0.2.5"], 300)).await;
    let intruder = app
        .post_as(
            &other,
            "/api/v1/dns/create",
            &json!({"resource": {"record_type": "A", "domain": NAME, "target": "192.0.2.6"}}),
        )
        .await;
    app.run_queued_tasks().await;

    // Assert
    let replaced = app.request(&replaced).await;
    assert_eq!(replaced["status"], "COMPLETED", "{replaced}");
    assert_eq!(replaced["before"], rrset(0, &[]), "{replaced}");
    assert_eq!(intruder.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.ledger_at(NAME).await, [(300, "192.0.2.5".into())]);
}

#[tokio::test]
async fn a_replace_is_planned_against_the_ledger_and_a_cname_conflict_is_reported() {
    // Arrange: two A records at NAME, and a CNAME at another name.
    let app = spawn_app().await;
    app.submit("create", &set(&["192.0.2.1", "192.0.2.2"], 300))
        .await;
    let alias = json!({"context": {"account_id": "acct-1"},
        "resource": {"record_type": "CNAME", "domain": "alias.example.test",
                     "target": "www.example.test"}});
    app.submit("create", &alias).await;
    app.run_queued_tasks().await;
    let stored = app.stored_requests().await;
    let app = &app;
    let plan = |body: Value| async move {
        let response = app
            .client
            .post(format!("{}/api/v1/dns/replace?dry_run=true", app.address))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()
    };

    // Act
    let planned = plan(set(&["192.0.2.9"], 900)).await;
    let at_alias = plan(json!({"context": {"account_id": "acct-1"},
        "resource": {"record_type": "A", "domain": "alias.example.test",
                     "targets": ["192.0.2.9"]}}))
    .await;

    // Assert
    let item = &planned["plan"][0];
    assert_eq!(planned["dry_run"], true);
    assert_eq!(item["read_from"], "ledger", "{planned}");
    assert_eq!(
        item["before"],
        rrset(300, &["192.0.2.1", "192.0.2.2"]),
        "{planned}"
    );
    assert_eq!(item["after"], rrset(900, &["192.0.2.9"]), "{planned}");
    assert_eq!(item["conflicts"], json!([]), "{planned}");
    assert_eq!(
        at_alias["plan"][0]["conflicts"][0]["kind"], "cname_exclusive",
        "{at_alias}"
    );
    assert_eq!(app.stored_requests().await, stored);
    assert!(app.run_queued_tasks().await.is_empty());
}

#[tokio::test]
async fn an_a_record_at_a_name_with_a_cname_fails_with_the_reason_on_the_simulated_backend() {
    // Arrange
    let app = spawn_app().await;
    let alias = json!({"context": {"account_id": "acct-1"},
        "resource": {"record_type": "CNAME", "domain": NAME, "target": "elsewhere.example.test"}});
    app.submit("create", &alias).await;
    app.run_queued_tasks().await;

    // Act
    let replaced = app.submit("replace", &set(&["192.0.2.1"], 300)).await;
    app.run_queued_tasks().await;

    // Assert: FAILED with the planner's reason; the ledger holds the CNAME alone.
    let replaced = app.request(&replaced).await;
    assert_eq!(replaced["status"], "FAILED", "{replaced}");
    assert!(
        replaced["last_error"]
            .as_str()
            .unwrap()
            .contains("has a CNAME"),
        "{replaced}"
    );
    assert_eq!(replaced["before"], Value::Null, "{replaced}");
    assert_eq!(
        app.ledger_at(NAME).await,
        [(300, "elsewhere.example.test".into())]
    );
}
