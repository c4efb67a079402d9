//! Change sets that are not atomic, on the simulated backend: each change is checked and
//! applied on its own, refused changes are answered by index with the status they would have
//! got alone, and the set's status follows its requests'.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// A create of an A record as a set's change.
fn create_a(domain: &str, ip: &str) -> Value {
    json!({"action": "create", "resource": {"record_type": "A", "domain": domain, "target": ip}})
}

fn set_of(changes: Vec<Value>) -> Value {
    json!({"context": {"account_id": "acct-1"}, "changes": changes})
}

impl TestApp {
    /// POSTs a change set as `client`, with an optional key: the status and the answer.
    async fn post_set_with(
        &self,
        client: &reqwest::Client,
        query: &str,
        body: &Value,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = client
            .post(format!("{}/api/v1/dns/changes{query}", self.address))
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    async fn post_set(&self, body: &Value) -> (StatusCode, Value) {
        self.post_set_with(&self.client, "", body, None).await
    }

    async fn set_view(&self, id: &str) -> Value {
        let response = self.get(&format!("/api/v1/dns/changes/{id}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }
}

#[tokio::test]
async fn valid_changes_are_applied_and_each_refused_one_is_answered_by_index_as_it_would_be_alone()
{
    // Arrange: acct-2 owns other.example.test A, so acct-1's create there is a 403 on its own.
    let app = spawn_app().await;
    let theirs = json!({"context": {"account_id": "acct-2"},
        "resource": {"record_type": "A", "domain": "other.example.test", "target": "192.0.2.99"}});
    app.create(&theirs).await;
    app.run_queued_tasks().await;
    let body = set_of(vec![
        create_a("a.example.test", "192.0.2.1"),
        create_a("bad..name", "192.0.2.2"),
        create_a("b.example.test", "192.0.2.3"),
        create_a("other.example.test", "192.0.2.4"),
        json!({"action": "adopt", "resource": {"record_type": "A", "domain": "c.example.test"}}),
        json!({"action": "create", "resource": {"record_type": "A", "domain": "d.example.test",
               "target": "192.0.2.5", "color": "red"}}),
        create_a("e.example.test", "not-an-address"),
    ]);

    // Act
    let (status, answer) = app.post_set(&body).await;

    // Assert: 202, every change in order; the refused ones with their own status and fields.
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let items = answer["items"].as_array().unwrap();
    assert_eq!(items.len(), 7, "{answer}");
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["index"], i, "{answer}");
    }
    let accepted: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| item["request_id"].is_string())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(accepted, [0, 2], "{answer}");
    assert_eq!(items[0]["status"], "PENDING", "{answer}");
    let error = |i: usize| &items[i]["error"];
    assert_eq!(error(1)["status"], 422, "{answer}");
    assert_eq!(
        error(1)["fields"][0]["field"],
        "resource.domain",
        "{answer}"
    );
    assert_eq!(error(3)["status"], 403, "{answer}");
    assert_eq!(error(3)["error"], "forbidden", "{answer}");
    assert_eq!(error(4)["fields"][0]["field"], "action", "{answer}");
    assert_eq!(error(5)["fields"][0]["field"], "resource.color", "{answer}");
    assert_eq!(
        error(6)["fields"][0]["field"],
        "resource.target",
        "{answer}"
    );
    assert_eq!(answer["status"], "PENDING", "{answer}");
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert_eq!(answer["item_count"], 7, "{answer}");

    // Act: apply.
    app.run_queued_tasks().await;

    // Assert: the two applied, the set partly failed (refused changes count), the ledger.
    let id = answer["change_set_id"].as_str().unwrap();
    let view = app.set_view(id).await;
    assert_eq!(view["status"], "PARTIALLY_FAILED", "{view}");
    assert_eq!(view["items"][0]["status"], "COMPLETED", "{view}");
    assert_eq!(
        view["items"][0]["after"]["records"],
        json!(["192.0.2.1"]),
        "{view}"
    );
    assert_eq!(view["items"][3]["error"]["status"], 403, "{view}");
    assert_eq!(view["counts"], json!({"COMPLETED": 2}), "{view}");
    assert_eq!(
        app.ledger_at("b.example.test").await,
        [(300, "192.0.2.3".into())]
    );
    let request = app
        .request(view["items"][2]["request_id"].as_str().unwrap())
        .await;
    assert_eq!(request["change_set"]["id"], id, "{request}");
    assert_eq!(request["change_set"]["index"], 2, "{request}");
    assert_eq!(request["change_set"]["role"], "item", "{request}");
}

#[tokio::test]
async fn a_set_of_which_nothing_is_valid_is_a_422_naming_each_change_and_stores_nothing() {
    // Arrange
    let app = spawn_app().await;
    let body = set_of(vec![
        create_a("bad..name", "192.0.2.1"),
        json!({"resource": {"record_type": "A", "domain": "a.example.test", "target": "192.0.2.1"}}),
    ]);

    // Act
    let (status, answer) = app.post_set(&body).await;

    // Assert
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"], "validation_failed", "{answer}");
    let fields: Vec<&str> = answer["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["changes[0].resource.domain", "changes[1].action"],
        "{answer}"
    );
    assert_eq!(answer["items"][1]["error"]["status"], 422, "{answer}");
    assert!(answer.get("change_set_id").is_none(), "{answer}");
    assert_eq!(app.stored_requests().await, 0);
    let page: Value = app.get("/api/v1/dns/changes").await.json().await.unwrap();
    assert_eq!(page["items"], json!([]), "{page}");
}

#[tokio::test]
async fn the_changes_list_is_bounded_and_a_set_may_be_larger_than_a_single_request_body() {
    // Arrange: 1000 changes are about 110 KiB, over MAX_BODY_BYTES (64 KiB).
    let app = spawn_app().await;
    let changes = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| create_a(&format!("host-{i}.bulk.example.test"), "192.0.2.1"))
            .collect()
    };
    let full = set_of(changes(1000));
    assert!(full.to_string().len() > 64 * 1024);

    // Act
    let (status, answer) = app.post_set(&full).await;
    let (over_status, over) = app.post_set(&set_of(changes(1001))).await;
    let (empty_status, empty) = app.post_set(&set_of(Vec::new())).await;
    let (missing_status, missing) = app.post_set(&json!({"atomic": false})).await;

    // Assert
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 1000);
    assert_eq!(over_status, StatusCode::UNPROCESSABLE_ENTITY, "{over}");
    assert_eq!(over["fields"][0]["field"], "changes", "{over}");
    assert!(
        over["fields"][0]["message"]
            .as_str()
            .unwrap()
            .contains("1 to 1000"),
        "{over}"
    );
    assert_eq!(empty_status, StatusCode::UNPROCESSABLE_ENTITY, "{empty}");
    assert_eq!(
        missing_status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{missing}"
    );
    assert_eq!(missing["fields"][0]["field"], "changes", "{missing}");
}

#[tokio::test]
async fn a_body_over_the_change_set_limit_is_a_413_and_the_limit_is_a_setting() {
    // Arrange: a limit of 2 KiB.
    let app = spawn_app_with(|s| s.max_change_set_bytes = 2048).await;
    let changes: Vec<Value> = (0..40)
        .map(|i| create_a(&format!("host-{i}.example.test"), "192.0.2.1"))
        .collect();

    // Act
    let (status, answer) = app.post_set(&set_of(changes)).await;

    // Assert
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("2048"),
        "{answer}"
    );
    assert_eq!(app.stored_requests().await, 0);
}

#[tokio::test]
async fn a_set_retried_under_its_key_is_the_same_set_and_another_body_under_it_is_a_409() {
    // Arrange
    let app = spawn_app().await;
    let body = set_of(vec![
        create_a("a.example.test", "192.0.2.1"),
        create_a("bad..name", "192.0.2.2"),
    ]);
    let (status, first) = app
        .post_set_with(&app.client, "", &body, Some("set-1"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");

    // Act
    let (again_status, again) = app
        .post_set_with(&app.client, "", &body, Some("set-1"))
        .await;
    let other = set_of(vec![create_a("b.example.test", "192.0.2.1")]);
    let (other_status, conflict) = app
        .post_set_with(&app.client, "", &other, Some("set-1"))
        .await;

    // Assert
    assert_eq!(again_status, StatusCode::OK, "{again}");
    assert_eq!(again["change_set_id"], first["change_set_id"]);
    assert_eq!(
        again["items"][0]["request_id"],
        first["items"][0]["request_id"]
    );
    assert_eq!(other_status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(app.stored_requests().await, 1);
}

#[tokio::test]
async fn sets_are_listed_newest_first_and_paged_and_another_account_sees_none_of_them() {
    // Arrange: three sets of acct-1, and a token of acct-2.
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (status, answer) = app
            .post_set(&set_of(vec![
                create_a(&format!("n{i}.example.test"), "192.0.2.1"),
                create_a(&format!("m{i}.example.test"), "192.0.2.2"),
            ]))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        ids.push(answer["change_set_id"].as_str().unwrap().to_owned());
    }
    app.run_queued_tasks().await;
    let (_, other) = app
        .token(&json!({"account": "acct-2", "name": "other",
            "policies": [{"suffix": "example.test", "permissions": ["read", "create"]}]}))
        .await;
    let other = client_with(&other);

    // Act
    let first: Value = app
        .get("/api/v1/dns/changes?limit=2")
        .await
        .json()
        .await
        .unwrap();
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = app
        .get(&format!("/api/v1/dns/changes?limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    let theirs: Value = other
        .get(format!("{}/api/v1/dns/changes", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let their_get = other
        .get(format!("{}/api/v1/dns/changes/{}", app.address, ids[0]))
        .send()
        .await
        .unwrap()
        .status();

    // Assert
    let listed: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|s| s["change_set_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [&ids[2], &ids[1], &ids[0]]);
    assert_eq!(first["items"][0]["status"], "COMPLETED", "{first}");
    assert_eq!(
        first["items"][0]["counts"],
        json!({"COMPLETED": 2}),
        "{first}"
    );
    assert!(first["items"][0].get("items").is_none(), "{first}");
    assert!(second["next_cursor"].is_null(), "{second}");
    assert_eq!(theirs["items"], json!([]), "{theirs}");
    assert_eq!(their_get, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_set_whose_every_request_fails_is_failed_and_a_dry_run_plans_each_change() {
    // Arrange: deletes of records the ledger does not hold fail at the worker.
    let app = spawn_app().await;
    app.create(&a_record("kept.example.test", "192.0.2.1"))
        .await;
    app.run_queued_tasks().await;
    let deletes = set_of(vec![
        json!({"action": "delete", "resource": {"record_type": "A",
               "domain": "gone.example.test", "target": "192.0.2.1"}}),
        json!({"action": "delete", "resource": {"record_type": "A",
               "domain": "gone2.example.test", "target": "192.0.2.1"}}),
    ]);
    let plans = set_of(vec![
        create_a("kept.example.test", "192.0.2.2"),
        json!({"action": "replace", "resource": {"record_type": "A",
               "domain": "kept.example.test", "target": "192.0.2.9"},
               "expect": {"ttl": 300, "records": ["192.0.2.7"]}}),
        create_a("bad..name", "192.0.2.2"),
    ]);

    // Act
    let (status, answer) = app.post_set(&deletes).await;
    app.run_queued_tasks().await;
    let (plan_status, plan) = app
        .post_set_with(&app.client, "?dry_run=true", &plans, None)
        .await;

    // Assert
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let view = app
        .set_view(answer["change_set_id"].as_str().unwrap())
        .await;
    assert_eq!(view["status"], "FAILED", "{view}");
    assert!(view["items"][0]["last_error"].is_string(), "{view}");
    assert_eq!(plan_status, StatusCode::OK, "{plan}");
    assert_eq!(plan["dry_run"], true, "{plan}");
    let items = plan["items"].as_array().unwrap();
    assert_eq!(
        items[0]["plan"]["plan"][0]["after"]["records"],
        json!(["192.0.2.1", "192.0.2.2"]),
        "{plan}"
    );
    assert_eq!(
        items[1]["plan"]["plan"][0]["conflicts"][0]["kind"], "unexpected",
        "{plan}"
    );
    assert_eq!(items[2]["error"]["status"], 422, "{plan}");
    assert_eq!(app.stored_requests().await, 3, "the dry run stored nothing");
}
