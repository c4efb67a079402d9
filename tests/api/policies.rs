//! Token policies over HTTP: the deciding policy (most suffix labels, typed over untyped at
//! the same suffix) must grant the permission; a broad grant (no types) never changes NS,
//! CAA, apex or `_acme-challenge` records; admins are unrestricted. A refusal is a 403 naming
//! the name, the type and the permission, and stores nothing. One account owns each RRset;
//! only admins adopt one.

use dnsorch::domain::RequestStatus;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const ALL: [&str; 3] = ["read", "create", "delete"];

/// A policy as the token API takes it; no types: a broad grant.
fn policy(suffix: &str, types: &[&str], permissions: &[&str]) -> Value {
    json!({"suffix": suffix, "types": types, "permissions": permissions})
}

/// A token of `account` with `policies`: its secret.
async fn token_with(app: &TestApp, account: &str, policies: Value) -> String {
    let name = format!("{account}-{}", uuid::Uuid::new_v4().simple());
    let (_, secret) = app
        .token(&json!({"account": account, "name": name, "policies": policies}))
        .await;
    secret
}

/// A change body that leaves the account to the token.
fn body(record_type: &str, domain: &str, target: &str) -> Value {
    json!({"context": {}, "resource": {"record_type": record_type, "domain": domain, "target": target}})
}

async fn create_as(app: &TestApp, secret: &str, body: &Value) -> reqwest::Response {
    app.post_as(secret, "/api/v1/dns/create", body).await
}

async fn delete_as(app: &TestApp, secret: &str, body: &Value) -> reqwest::Response {
    app.post_as(secret, "/api/v1/dns/delete", body).await
}

/// Asserts a 202 and gives the request's id.
async fn assert_accepted(response: reqwest::Response, what: &str) -> String {
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{what}: {answer}");
    answer["request_id"].as_str().unwrap().to_owned()
}

/// The words of a message: runs of name characters, so `x.example.test:` is `x.example.test`.
fn words(message: &str) -> Vec<&str> {
    message
        .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        .map(|w| w.trim_end_matches('.'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// Asserts a 403 whose message names `name`, `record_type` and `permission`; the message.
async fn assert_forbidden(
    response: reqwest::Response,
    name: &str,
    record_type: &str,
    permission: &str,
) -> String {
    let what = format!("{permission} {record_type} at {name}");
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "{what}");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "forbidden", "{what}: {answer}");
    let message = answer["message"].as_str().unwrap().to_owned();
    let said = words(&message);
    for part in [name, record_type, permission] {
        assert!(
            said.contains(&part),
            "{what}: '{part}' not named in {message:?}"
        );
    }
    message
}

#[tokio::test]
async fn a_policy_covers_its_suffix_only_on_label_boundaries() {
    // Arrange
    let app = spawn_app().await;
    let secret = token_with(
        &app,
        "acct-1",
        json!([policy("dev.example.test", &[], &ALL)]),
    )
    .await;

    // Act
    let under = create_as(&app, &secret, &body("A", "a.dev.example.test", "192.0.2.1")).await;
    let deeper = create_as(
        &app,
        &secret,
        &body("A", "x.y.dev.example.test", "192.0.2.2"),
    )
    .await;
    let evil = create_as(
        &app,
        &secret,
        &body("A", "evildev.example.test", "192.0.2.3"),
    )
    .await;
    let parent = create_as(&app, &secret, &body("A", "www.example.test", "192.0.2.4")).await;

    // Assert
    assert_accepted(under, "a.dev.example.test").await;
    assert_accepted(deeper, "x.y.dev.example.test").await;
    let message = assert_forbidden(evil, "evildev.example.test", "A", "create").await;
    assert!(message.contains("no policy covers"), "{message}");
    assert_forbidden(parent, "www.example.test", "A", "create").await;
    assert_eq!(app.stored_requests().await, 2);
}

#[tokio::test]
async fn the_deepest_covering_policy_decides_even_when_a_shallower_one_grants_more() {
    // Arrange
    let app = spawn_app().await;
    let secret = token_with(
        &app,
        "acct-1",
        json!([
            policy("example.test", &[], &ALL),
            policy("ro.example.test", &[], &["read"]),
        ]),
    )
    .await;

    // Act
    let shallow = create_as(&app, &secret, &body("A", "x.example.test", "192.0.2.5")).await;
    let deep = create_as(&app, &secret, &body("A", "x.ro.example.test", "192.0.2.6")).await;

    // Assert
    assert_accepted(shallow, "x.example.test").await;
    let message = assert_forbidden(deep, "x.ro.example.test", "A", "create").await;
    assert!(
        message.contains("ro.example.test does not grant"),
        "{message}"
    );
    assert_eq!(app.stored_requests().await, 1);
}

#[tokio::test]
async fn at_the_same_suffix_a_typed_policy_beats_an_untyped_one() {
    // Arrange: one token whose typed policy grants less than its broad one, one whose typed
    // policy grants more.
    let app = spawn_app().await;
    let typed_less = token_with(
        &app,
        "acct-1",
        json!([
            policy("example.test", &[], &ALL),
            policy("example.test", &["TXT"], &["read"]),
        ]),
    )
    .await;
    let typed_more = token_with(
        &app,
        "acct-2",
        json!([
            policy("example.test", &[], &["read"]),
            policy("example.test", &["TXT"], &["read", "create"]),
        ]),
    )
    .await;

    // Act
    let refused_txt = create_as(&app, &typed_less, &body("TXT", "t.example.test", "one")).await;
    let other_type = create_as(&app, &typed_less, &body("A", "t.example.test", "192.0.2.7")).await;
    let allowed_txt = create_as(&app, &typed_more, &body("TXT", "u.example.test", "two")).await;
    let refused_a = create_as(&app, &typed_more, &body("A", "u.example.test", "192.0.2.8")).await;

    // Assert: for TXT the typed policy decides; for A only the broad one covers the name.
    assert_forbidden(refused_txt, "t.example.test", "TXT", "create").await;
    assert_accepted(other_type, "A beside a TXT-only policy").await;
    assert_accepted(allowed_txt, "TXT by the typed policy").await;
    assert_forbidden(refused_a, "u.example.test", "A", "create").await;
    assert_eq!(app.stored_requests().await, 2);
}

#[tokio::test]
async fn a_policy_that_covers_the_name_but_not_the_type_allows_nothing_for_that_type() {
    // Arrange
    let app = spawn_app().await;
    let secret = token_with(
        &app,
        "acct-1",
        json!([policy("example.test", &["TXT"], &ALL)]),
    )
    .await;

    // Act
    let txt = create_as(&app, &secret, &body("TXT", "x.example.test", "hello")).await;
    let a = create_as(&app, &secret, &body("A", "x.example.test", "192.0.2.9")).await;

    // Assert
    assert_accepted(txt, "TXT").await;
    let message = assert_forbidden(a, "x.example.test", "A", "create").await;
    assert!(message.contains("no policy covers"), "{message}");
    assert_eq!(app.stored_requests().await, 1);
}

#[tokio::test]
async fn the_deciding_policy_must_grant_the_permission() {
    // Arrange: a create-only token.
    let app = spawn_app().await;
    let secret = token_with(
        &app,
        "acct-1",
        json!([policy("example.test", &[], &["create"])]),
    )
    .await;
    let record = body("A", "x.example.test", "192.0.2.10");

    // Act
    let created = create_as(&app, &secret, &record).await;
    let deleted = delete_as(&app, &secret, &record).await;

    // Assert
    assert_accepted(created, "create").await;
    let message = assert_forbidden(deleted, "x.example.test", "A", "delete").await;
    assert!(message.contains("does not grant delete"), "{message}");
    assert_eq!(app.stored_requests().await, 1);
}

/// The sensitive records of example.test for a token whose policies end at example.test (so
/// without a zones file, example.test is the apex): what, type, name, target.
const SENSITIVE: [(&str, &str, &str, &str); 5] = [
    ("NS", "NS", "sub.example.test", "ns1.example.test"),
    (
        "CAA",
        "CAA",
        "www.example.test",
        "0 issue \"ca.example.test\"",
    ),
    ("the apex", "A", "example.test", "192.0.2.11"),
    (
        "an _acme-challenge name",
        "TXT",
        "_acme-challenge.x.example.test",
        "challenge-1",
    ),
    (
        "a name under _acme-challenge",
        "TXT",
        "y._acme-challenge.x.example.test",
        "challenge-2",
    ),
];

#[tokio::test]
async fn a_broad_grant_never_changes_sensitive_records() {
    // Arrange
    let app = spawn_app().await;
    let broad = token_with(&app, "acct-1", json!([policy("example.test", &[], &ALL)])).await;

    for (what, record_type, name, target) in SENSITIVE {
        for (path, permission) in [
            ("/api/v1/dns/create", "create"),
            ("/api/v1/dns/delete", "delete"),
        ] {
            // Act
            let response = app
                .post_as(&broad, path, &body(record_type, name, target))
                .await;

            // Assert
            let message = assert_forbidden(response, name, record_type, permission).await;
            assert!(
                message.contains(&format!("need a policy that lists {record_type}")),
                "{what}: {message}"
            );
        }
    }
    // The same grant changes ordinary records.
    let ordinary = create_as(&app, &broad, &body("TXT", "x.example.test", "ordinary")).await;
    assert_accepted(ordinary, "an ordinary TXT record").await;
    assert_eq!(app.stored_requests().await, 1);
}

#[tokio::test]
async fn a_policy_listing_the_type_may_change_sensitive_records() {
    // Arrange
    let app = spawn_app().await;
    let typed = token_with(
        &app,
        "acct-1",
        json!([policy("example.test", &["NS", "CAA", "A", "TXT"], &ALL)]),
    )
    .await;

    for (what, record_type, name, target) in SENSITIVE {
        // Act
        let response = create_as(&app, &typed, &body(record_type, name, target)).await;

        // Assert
        assert_accepted(response, what).await;
    }
    assert_eq!(app.stored_requests().await, SENSITIVE.len());
}

#[tokio::test]
async fn a_typed_policy_for_the_challenge_name_alone_is_enough() {
    // Arrange: what an ACME client's token looks like.
    let app = spawn_app().await;
    let acme = token_with(
        &app,
        "acct-1",
        json!([policy(
            "_acme-challenge.x.example.test",
            &["TXT"],
            &["create", "delete"]
        )]),
    )
    .await;

    // Act
    let challenge = create_as(
        &app,
        &acme,
        &body("TXT", "_acme-challenge.x.example.test", "c"),
    )
    .await;
    let elsewhere = create_as(&app, &acme, &body("TXT", "x.example.test", "c")).await;

    // Assert
    assert_accepted(challenge, "the challenge").await;
    assert_forbidden(elsewhere, "x.example.test", "TXT", "create").await;
    assert_eq!(app.stored_requests().await, 1);
}

/// A zones file in `dir` with example.test on the simulated backend.
fn simulated_zone(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("dnsorch.toml");
    std::fs::write(&path, "[zones.\"example.test\"]\nbackend = \"simulated\"\n").unwrap();
    path
}

#[tokio::test]
async fn the_apex_is_the_zones_files_zone_else_the_deciding_policys_suffix() {
    // Arrange: the same broad policies, without and with a zones file serving example.test.
    let config = tempfile::TempDir::new().unwrap();
    let zones = simulated_zone(config.path());
    let policies = json!([
        policy("example.test", &[], &["create"]),
        policy("dev.example.test", &[], &["create"]),
    ]);
    let without = spawn_app().await;
    let with = spawn_app_with(|s| s.dnsorch_config = Some(zones)).await;
    let plain = token_with(&without, "acct-1", policies.clone()).await;
    let zoned = token_with(&with, "acct-1", policies).await;
    let dev = body("A", "dev.example.test", "192.0.2.12");
    let apex = body("A", "example.test", "192.0.2.13");

    // Act
    let dev_without = create_as(&without, &plain, &dev).await;
    let dev_with = create_as(&with, &zoned, &dev).await;
    let apex_with = create_as(&with, &zoned, &apex).await;

    // Assert: without zones, dev.example.test is the apex of its policy; with them it is
    // a name in example.test, whose apex stays sensitive.
    let message = assert_forbidden(dev_without, "dev.example.test", "A", "create").await;
    assert!(message.contains("zone apex"), "{message}");
    assert_accepted(dev_with, "dev.example.test in zone example.test").await;
    let message = assert_forbidden(apex_with, "example.test", "A", "create").await;
    assert!(message.contains("zone apex"), "{message}");
    assert_eq!(without.stored_requests().await, 0);
    assert_eq!(with.stored_requests().await, 1);
}

#[tokio::test]
async fn a_read_only_token_lists_its_accounts_requests_but_may_not_create() {
    // Arrange: the admin files one request for acct-1 and one for acct-2.
    let app = spawn_app().await;
    let mine = app
        .create(&change("A", "mine.example.test", "192.0.2.14"))
        .await;
    let mut theirs = change("A", "theirs.example.test", "192.0.2.15");
    theirs["context"]["account_id"] = "acct-2".into();
    app.create(&theirs).await;
    let reader = token_with(
        &app,
        "acct-1",
        json!([policy("example.test", &[], &["read"])]),
    )
    .await;

    // Act
    let listed = client_with(&reader)
        .get(format!("{}/api/v1/dns/requests", app.address))
        .send()
        .await
        .unwrap();
    let created = create_as(&app, &reader, &body("A", "new.example.test", "192.0.2.16")).await;

    // Assert
    assert_eq!(listed.status(), StatusCode::OK);
    let listed: Value = listed.json().await.unwrap();
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine.as_str()]);
    assert_forbidden(created, "new.example.test", "A", "create").await;
    assert_eq!(app.stored_requests().await, 2);
}

#[tokio::test]
async fn a_token_without_policies_reads_its_own_account_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let mine = app
        .create(&change("A", "mine.example.test", "192.0.2.17"))
        .await;
    app.run_queued_tasks().await;
    let (_, bare) = app
        .token(&json!({"account": "acct-1", "name": "bare"}))
        .await;
    let record = body("A", "mine.example.test", "192.0.2.17");

    // Act
    let shown = client_with(&bare)
        .get(format!("{}/api/v1/dns/requests/{mine}", app.address))
        .send()
        .await
        .unwrap();
    let created = create_as(&app, &bare, &body("A", "new.example.test", "192.0.2.18")).await;
    let deleted = delete_as(&app, &bare, &record).await;

    // Assert
    assert_eq!(shown.status(), StatusCode::OK);
    assert_forbidden(created, "new.example.test", "A", "create").await;
    assert_forbidden(deleted, "mine.example.test", "A", "delete").await;
    assert_eq!(app.stored_requests().await, 1);
}

#[tokio::test]
async fn an_admin_token_is_not_limited_by_policies() {
    // Arrange: the first-run admin token has no policies.
    let app = spawn_app().await;

    // Act
    let ns = app
        .post_create(&change("NS", "example.test", "ns1.example.test"))
        .await;
    let acme = app
        .post_create(&change("TXT", "_acme-challenge.example.test", "c"))
        .await;

    // Assert
    assert_accepted(ns, "NS at the apex").await;
    assert_accepted(acme, "an _acme-challenge TXT record").await;
    assert_eq!(app.stored_requests().await, 2);
}

/// Asserts a 403 naming the RRset `name type` and not `owner`.
async fn assert_not_owner(response: reqwest::Response, name: &str, record_type: &str, owner: &str) {
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "{name} {record_type}"
    );
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "forbidden", "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{name} {record_type}")) && message.contains("RRset"),
        "{message}"
    );
    assert!(!message.contains(owner), "the owner is named: {message}");
}

#[tokio::test]
async fn another_account_may_not_create_into_or_delete_from_an_owned_rrset() {
    // Arrange: acct-a owns www.example.test A; both tokens may change all of example.test.
    let app = spawn_app().await;
    let policies = json!([policy("example.test", &[], &ALL)]);
    let a = token_with(&app, "acct-a", policies.clone()).await;
    let b = token_with(&app, "acct-b", policies).await;
    let owned = body("A", "www.example.test", "192.0.2.20");
    assert_accepted(create_as(&app, &a, &owned).await, "acct-a's create").await;

    // Act: while acct-a's request is pending, then once it has completed.
    let pending = create_as(&app, &b, &body("A", "www.example.test", "192.0.2.21")).await;
    app.run_queued_tasks().await;
    let into = create_as(&app, &b, &body("A", "www.example.test", "192.0.2.22")).await;
    let from = delete_as(&app, &b, &owned).await;
    let whole = delete_as(
        &app,
        &b,
        &json!({"context": {}, "resource": {"record_type": "A", "domain": "www.example.test"}}),
    )
    .await;
    let other_type = create_as(&app, &b, &body("TXT", "www.example.test", "b's")).await;

    // Assert
    for refused in [pending, into, from, whole] {
        assert_not_owner(refused, "www.example.test", "A", "acct-a").await;
    }
    assert_accepted(other_type, "another type at the same name").await;
    assert_accepted(
        create_as(&app, &a, &body("A", "www.example.test", "192.0.2.23")).await,
        "the owner adds to its RRset",
    )
    .await;
    assert_eq!(app.stored_requests().await, 3);
}

#[tokio::test]
async fn only_an_admin_adopts_and_adoption_moves_the_rrset_to_the_new_owner() {
    // Arrange: acct-a owns www.example.test A, provisioned.
    let app = spawn_app().await;
    let policies = json!([policy("example.test", &[], &ALL)]);
    let a = token_with(&app, "acct-a", policies.clone()).await;
    let b = token_with(&app, "acct-b", policies).await;
    let first = assert_accepted(
        create_as(&app, &a, &body("A", "www.example.test", "192.0.2.30")).await,
        "acct-a's create",
    )
    .await;
    app.run_queued_tasks().await;
    app.wait_for_status(&first, RequestStatus::Completed).await;
    let adoption = json!({"context": {"account_id": "acct-b"},
                          "resource": {"record_type": "A", "domain": "www.example.test"}});

    // Act
    let by_b = app.post_as(&b, "/api/v1/dns/adopt", &adoption).await;
    let by_owner = app
        .post_as(
            &a,
            "/api/v1/dns/adopt",
            &json!({"context": {},
        "resource": {"record_type": "A", "domain": "www.example.test"}}),
        )
        .await;
    let stored_before = app.stored_requests().await;
    let by_admin = app
        .client
        .post(format!("{}/api/v1/dns/adopt", app.address))
        .json(&adoption)
        .send()
        .await
        .unwrap();

    // Assert: non-admins are refused before anything is stored; the admin's adoption
    // completes on the simulated backend and moves the RRset.
    for refused in [by_b, by_owner] {
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let answer: Value = refused.json().await.unwrap();
        assert_eq!(answer["error"], "forbidden", "{answer}");
    }
    assert_eq!(stored_before, 1);
    let adopted = assert_accepted(by_admin, "the admin's adoption").await;
    app.run_queued_tasks().await;
    let done = app
        .wait_for_status(&adopted, RequestStatus::Completed)
        .await;
    assert_eq!(done["account_id"], "acct-b", "{done}");
    let records: Value = app.get("/api/v1/dns/records").await.json().await.unwrap();
    let owners: Vec<&Value> = records["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["account_id"])
        .collect();
    assert_eq!(owners, [&json!("acct-b")], "{records}");
    assert_accepted(
        create_as(&app, &b, &body("A", "www.example.test", "192.0.2.31")).await,
        "the new owner's create",
    )
    .await;
    assert_not_owner(
        create_as(&app, &a, &body("A", "www.example.test", "192.0.2.32")).await,
        "www.example.test",
        "A",
        "acct-b",
    )
    .await;
    assert_not_owner(
        delete_as(&app, &a, &body("A", "www.example.test", "192.0.2.30")).await,
        "www.example.test",
        "A",
        "acct-b",
    )
    .await;
    assert_eq!(app.stored_requests().await, 3);
}
