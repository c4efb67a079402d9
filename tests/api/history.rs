//! `GET /api/v1/dns/rrsets/{name}/{type}/history`: the completed requests of an RRset, newest
//! first, with before, after and the principal, paged and scoped to the token's account.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const HISTORY: &str = "/api/v1/dns/rrsets/www.example.test/A/history";

#[tokio::test]
async fn the_history_lists_each_change_newest_first_with_before_after_and_principal() {
    // Arrange: a token of acct-1 creates, replaces and deletes; a create of another name and
    // a failed delete do not belong in the history.
    let app = spawn_app().await;
    let (_, secret) = app
        .token(&json!({"account": "acct-1", "name": "deployer", "policies": [
            {"suffix": "example.test", "types": ["A"], "permissions": ["read", "create", "delete"]}
        ]}))
        .await;
    let (_, stranger) = app
        .token(
            &json!({"account": "acct-2", "name": "stranger", "policies": [
                {"suffix": "example.test", "permissions": ["read"]}
            ]}),
        )
        .await;
    let resource = |targets: &[&str], ttl: u32| {
        json!({"resource": {"record_type": "A", "domain": "www.example.test",
                            "targets": targets, "config": {"ttl": ttl}}})
    };
    for (path, body) in [
        ("/api/v1/dns/create", resource(&["192.0.2.1"], 300)),
        (
            "/api/v1/dns/replace",
            resource(&["192.0.2.2", "192.0.2.3"], 600),
        ),
        ("/api/v1/dns/delete", resource(&["192.0.2.9"], 600)),
        ("/api/v1/dns/delete", resource(&["192.0.2.2"], 600)),
        (
            "/api/v1/dns/create",
            json!({"resource": {"record_type": "A",
            "domain": "other.example.test", "target": "192.0.2.5"}}),
        ),
    ] {
        let response = app.post_as(&secret, path, &body).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{path}");
        app.run_queued_tasks().await;
    }

    // Act
    let address = app.address.as_str();
    let read = |secret: String, path: String| async move {
        let response = client_with(&secret)
            .get(format!("{address}{path}"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json::<Value>().await.unwrap())
    };
    let (status, history) = read(secret.clone(), HISTORY.into()).await;
    let (_, first_page) = read(secret.clone(), format!("{HISTORY}?limit=2")).await;
    let cursor = first_page["next_cursor"].as_str().unwrap().to_owned();
    let (_, second_page) = read(secret.clone(), format!("{HISTORY}?limit=2&cursor={cursor}")).await;
    let (_, theirs) = read(stranger, HISTORY.into()).await;
    let (bad, refused) = read(
        secret,
        "/api/v1/dns/rrsets/www.example.test/AXFR/history".into(),
    )
    .await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{history}");
    let items = history["items"].as_array().unwrap();
    let operations: Vec<&str> = items
        .iter()
        .map(|i| i["operation"].as_str().unwrap())
        .collect();
    assert_eq!(operations, ["delete", "replace", "create"], "{history}");
    assert_eq!(items[0]["targets"], json!(["192.0.2.2"]));
    assert_eq!(
        items[0]["before"],
        json!({"ttl": 600, "records": ["192.0.2.2", "192.0.2.3"]})
    );
    assert_eq!(
        items[0]["after"],
        json!({"ttl": 600, "records": ["192.0.2.3"]})
    );
    assert_eq!(
        items[1]["before"],
        json!({"ttl": 300, "records": ["192.0.2.1"]})
    );
    assert_eq!(items[2]["before"], json!({"ttl": 0, "records": []}));
    for item in items {
        assert_eq!(item["submitted_by"]["token_name"], "deployer", "{item}");
        assert_eq!(item["account_id"], "acct-1", "{item}");
    }
    let paged: Vec<&Value> = first_page["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second_page["items"].as_array().unwrap())
        .collect();
    assert_eq!(paged, items.iter().collect::<Vec<_>>());
    assert_eq!(second_page["next_cursor"], Value::Null);
    assert_eq!(theirs["items"], json!([]), "{theirs}");
    assert_eq!(bad, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused["fields"][0]["field"], "path.type", "{refused}");
}
