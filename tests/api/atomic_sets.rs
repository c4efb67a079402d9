//! Atomic change sets on the simulated backend: all or nothing at intake, one claim and one
//! outcome for every change, the name as the whole set leaves it for CNAME exclusivity, and
//! per-name order with the requests around it.

use dnsorch::worker::ExecutionOutcome;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

fn change(action: &str, record_type: &str, domain: &str, target: Option<&str>) -> Value {
    let mut resource = json!({"record_type": record_type, "domain": domain});
    if let Some(target) = target {
        resource["target"] = json!(target);
    }
    json!({"action": action, "resource": resource})
}

fn atomic(changes: Vec<Value>) -> Value {
    json!({"context": {"account_id": "acct-1"}, "atomic": true, "changes": changes})
}

impl TestApp {
    async fn post_atomic(&self, body: &Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/api/v1/dns/changes", self.address))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }
}

fn fields(answer: &Value) -> Vec<String> {
    answer["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_atomic_set_with_one_bad_change_is_a_422_naming_atomic_and_stores_nothing() {
    // Arrange
    let app = spawn_app().await;
    let body = atomic(vec![
        change("create", "A", "a.example.test", Some("192.0.2.1")),
        change("create", "A", "b.example.test", Some("not-an-address")),
        change("create", "A", "c.example.test", Some("192.0.2.3")),
    ]);

    // Act
    let (status, answer) = app.post_atomic(&body).await;

    // Assert
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(
        fields(&answer),
        ["atomic", "changes[1].resource.target"],
        "{answer}"
    );
    assert_eq!(answer["items"][0]["index"], 1, "{answer}");
    assert_eq!(app.stored_requests().await, 0);
    assert!(app.ledger_at("a.example.test").await.is_empty());
}

#[tokio::test]
async fn an_atomic_set_is_refused_whole_when_the_store_refuses_one_change_and_claims_nothing() {
    // Arrange: acct-2 owns b.example.test A.
    let app = spawn_app().await;
    let theirs = json!({"context": {"account_id": "acct-2"},
        "resource": {"record_type": "A", "domain": "b.example.test", "target": "192.0.2.99"}});
    app.create(&theirs).await;
    app.run_queued_tasks().await;
    let body = atomic(vec![
        change("create", "A", "a.example.test", Some("192.0.2.1")),
        change("create", "A", "b.example.test", Some("192.0.2.2")),
    ]);

    // Act
    let (status, answer) = app.post_atomic(&body).await;
    let after = json!({"context": {"account_id": "acct-3"},
        "resource": {"record_type": "A", "domain": "a.example.test", "target": "192.0.2.7"}});
    let claimable = app.post_create(&after).await.status();

    // Assert: the 403 in its item, nothing stored, and a.example.test A was not claimed.
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(fields(&answer)[0], "atomic", "{answer}");
    assert_eq!(answer["items"][0]["index"], 1, "{answer}");
    assert_eq!(answer["items"][0]["error"]["status"], 403, "{answer}");
    assert_eq!(
        app.stored_requests().await,
        2,
        "acct-2's request and acct-3's"
    );
    assert_eq!(claimable, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn an_atomic_set_changes_each_rrset_once() {
    // Arrange
    let app = spawn_app().await;
    let body = atomic(vec![
        change("create", "A", "a.example.test", Some("192.0.2.1")),
        change("create", "AAAA", "a.example.test", Some("2001:db8::1")),
        change("create", "A", "a.example.test", Some("192.0.2.2")),
    ]);

    // Act
    let (status, answer) = app.post_atomic(&body).await;

    // Assert
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(fields(&answer), ["atomic", "changes[2]"], "{answer}");
    assert!(
        answer["fields"][1]["message"]
            .as_str()
            .unwrap()
            .contains("as changes[0] does"),
        "{answer}"
    );
    assert_eq!(app.stored_requests().await, 0);
}

#[tokio::test]
async fn an_atomic_set_is_one_claim_and_one_outcome_and_may_turn_an_a_into_a_cname() {
    // Arrange: www holds an A of acct-1.
    let app = spawn_app().await;
    app.create(&a_record("www.example.test", "192.0.2.1")).await;
    app.run_queued_tasks().await;
    let body = atomic(vec![
        change("create", "A", "x.example.test", Some("192.0.2.5")),
        change("delete", "A", "www.example.test", None),
        change(
            "create",
            "CNAME",
            "www.example.test",
            Some("x.example.test"),
        ),
    ]);

    // Act
    let (status, answer) = app.post_atomic(&body).await;
    let outcomes = app.run_queued_tasks().await;

    // Assert: one claim processed the set; every change COMPLETED; the ledger as the set left it.
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["atomic"], true, "{answer}");
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    let view: Value = app
        .get(&format!(
            "/api/v1/dns/changes/{}",
            answer["change_set_id"].as_str().unwrap()
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "COMPLETED", "{view}");
    let roles: Vec<String> = futures_roles(&app, &view).await;
    let mut sorted = roles.clone();
    sorted.sort();
    assert_eq!(sorted, ["lead", "member", "member"], "{roles:?}");
    assert_eq!(
        view["items"][1]["before"]["records"],
        json!(["192.0.2.1"]),
        "{view}"
    );
    assert_eq!(view["items"][1]["after"]["records"], json!([]), "{view}");
    assert!(
        app.ledger_at("www.example.test")
            .await
            .iter()
            .any(|(_, t)| t == "x.example.test")
    );
    assert!(
        !app.ledger_at("www.example.test")
            .await
            .iter()
            .any(|(_, t)| t == "192.0.2.1")
    );
    assert_eq!(
        app.ledger_at("x.example.test").await,
        [(300, "192.0.2.5".into())]
    );
}

/// Each item's request's role in the set, in item order.
async fn futures_roles(app: &TestApp, view: &Value) -> Vec<String> {
    let mut roles = Vec::new();
    for item in view["items"].as_array().unwrap() {
        let request = app.request(item["request_id"].as_str().unwrap()).await;
        roles.push(request["change_set"]["role"].as_str().unwrap().to_owned());
    }
    roles
}

#[tokio::test]
async fn a_conflict_in_one_change_fails_the_whole_atomic_set_and_changes_nothing() {
    // Arrange: www holds an A the set does not delete, so its CNAME conflicts.
    let app = spawn_app().await;
    app.create(&a_record("www.example.test", "192.0.2.1")).await;
    app.run_queued_tasks().await;
    let body = atomic(vec![
        change("create", "A", "x.example.test", Some("192.0.2.5")),
        change(
            "create",
            "CNAME",
            "www.example.test",
            Some("x.example.test"),
        ),
    ]);

    // Act
    let (status, answer) = app.post_atomic(&body).await;
    app.run_queued_tasks().await;

    // Assert
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let view: Value = app
        .get(&format!(
            "/api/v1/dns/changes/{}",
            answer["change_set_id"].as_str().unwrap()
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "FAILED", "{view}");
    for item in view["items"].as_array().unwrap() {
        assert_eq!(item["status"], "FAILED", "{view}");
        assert!(
            item["last_error"]
                .as_str()
                .unwrap()
                .contains("www.example.test CNAME"),
            "{view}"
        );
    }
    assert!(app.ledger_at("x.example.test").await.is_empty());
    assert_eq!(
        app.ledger_at("www.example.test").await,
        [(300, "192.0.2.1".into())]
    );
}

#[tokio::test]
async fn an_atomic_set_waits_for_older_requests_at_each_of_its_names_and_newer_ones_wait_for_it() {
    // Arrange: an older create at b (a member's name), the set (a, b), a newer create at b.
    let app = spawn_app().await;
    let older = app.create(&a_record("b.example.test", "192.0.2.10")).await;
    let body = atomic(vec![
        change("create", "A", "a.example.test", Some("192.0.2.1")),
        change("create", "AAAA", "b.example.test", Some("2001:db8::1")),
    ]);
    let (status, answer) = app.post_atomic(&body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let newer = app.create(&a_record("b.example.test", "192.0.2.11")).await;
    let lead = app.stored_lead(&answer).await;

    // Act: one step at a time.
    let mut order = Vec::new();
    loop {
        match app.worker.try_execute_next().await.unwrap() {
            ExecutionOutcome::Processed(id, _) => order.push(id.to_string()),
            ExecutionOutcome::Idle => break,
            other => panic!("{other:?}"),
        }
    }

    // Assert
    assert_eq!(order, [older, lead, newer]);
}

impl TestApp {
    /// The id of the lead request of the set in `answer`.
    async fn stored_lead(&self, answer: &Value) -> String {
        for item in answer["items"].as_array().unwrap() {
            let id = item["request_id"].as_str().unwrap();
            if self.request(id).await["change_set"]["role"] == "lead" {
                return id.to_owned();
            }
        }
        panic!("no lead in {answer}");
    }
}

#[tokio::test]
async fn an_atomic_set_is_planned_as_one_in_a_dry_run() {
    // Arrange: www holds an A.
    let app = spawn_app().await;
    app.create(&a_record("www.example.test", "192.0.2.1")).await;
    app.run_queued_tasks().await;
    let body = atomic(vec![
        change("delete", "A", "www.example.test", None),
        change(
            "create",
            "CNAME",
            "www.example.test",
            Some("x.example.test"),
        ),
    ]);

    // Act
    let response = app
        .client
        .post(format!("{}/api/v1/dns/changes?dry_run=true", app.address))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let plan: Value = response.json().await.unwrap();

    // Assert: the CNAME does not conflict with the A the set deletes.
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["atomic"], true, "{plan}");
    let cname = &plan["items"][1]["plan"]["plan"][0];
    assert_eq!(cname["conflicts"], json!([]), "{plan}");
    assert_eq!(
        cname["after"]["records"],
        json!(["x.example.test"]),
        "{plan}"
    );
    assert_eq!(app.stored_requests().await, 1);
}
