//! `resource.targets`: records in zone-file form, MX and SRV priority inline, TXT literal
//! unless quoted. Stored like the same record given as `target` (and `config.priority`), shown
//! as `targets` in every answer, and refused with a 422 naming the element at fault.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::validation::{Expect, check, stored, with};

/// A create body for `record_type` at `domain` with these `targets`.
fn listing(record_type: &str, domain: &str, targets: Value) -> Value {
    json!({
        "context": {"account_id": "acct-1"},
        "resource": {"record_type": record_type, "domain": domain, "targets": targets}
    })
}

/// The stored request, with its `targets`.
fn kept(record_type: &str, domain: &str, target: &str, targets: &[&str]) -> Value {
    with(
        stored(record_type, domain, target),
        "/targets",
        json!(targets),
    )
}

#[tokio::test]
async fn targets_are_stored_as_the_same_records_given_as_target_and_every_answer_shows_them() {
    // Arrange
    let app = spawn_app().await;
    let mx = with(
        change("MX", "example.test", "mail.example.test"),
        "/resource/config/priority",
        json!(10),
    );
    #[rustfmt::skip]
    let cases = [
        (listing("A", "www.example.test", json!(["192.0.2.10"])),
         kept("A", "www.example.test", "192.0.2.10", &["192.0.2.10"])),
        (listing("MX", "example.test", json!(["10 Mail.Example.Test."])),
         kept("MX", "example.test", "mail.example.test", &["10 mail.example.test"])),
        (listing("SRV", "_sip._tcp.example.test", json!(["10 5 5060 sip.example.test"])),
         kept("SRV", "_sip._tcp.example.test", "5 5060 sip.example.test", &["10 5 5060 sip.example.test"])),
        (listing("TXT", "example.test", json!(["v=spf1 -all"])),
         kept("TXT", "example.test", "v=spf1 -all", &["v=spf1 -all"])),
        (listing("TXT", "x.example.test", json!(["\"heritage=external-dns,owner=a\""])),
         kept("TXT", "x.example.test", "heritage=external-dns,owner=a", &["heritage=external-dns,owner=a"])),
        (listing("TXT", "y.example.test", json!(["\"part one \" \"part two\""])),
         kept("TXT", "y.example.test", "part one part two", &["part one part two"])),
        // The original body's form shows its records as targets too.
        (change("A", "a.example.test", "192.0.2.1"),
         kept("A", "a.example.test", "192.0.2.1", &["192.0.2.1"])),
        (mx, kept("MX", "example.test", "mail.example.test", &["10 mail.example.test"])),
    ];

    // Act + Assert
    check(
        &app,
        cases.map(|(body, expected)| (body, Expect::Stored(expected))),
    )
    .await;
}

#[tokio::test]
async fn bad_targets_are_refused_naming_the_field_or_the_element_and_nothing_is_stored() {
    // Arrange
    let app = spawn_app().await;
    let both = with(
        listing("A", "www.example.test", json!(["192.0.2.1"])),
        "/resource/target",
        json!("192.0.2.1"),
    );
    let with_priority = with(
        listing("MX", "example.test", json!(["10 mail.example.test"])),
        "/resource/config/priority",
        json!(10),
    );
    #[rustfmt::skip]
    let many: Vec<String> = (0..101).map(|i| format!("10.0.{}.{}", i / 250, i % 250)).collect();
    let cases: [(Value, &'static [&'static str]); 10] = [
        (both, &["resource.targets"]),
        (
            listing("A", "www.example.test", json!([])),
            &["resource.targets"],
        ),
        (
            listing(
                "A",
                "www.example.test",
                json!(["192.0.2.1", "192.0.2.2", "192.0.2.1"]),
            ),
            &["resource.targets[2]"],
        ),
        (
            listing(
                "CNAME",
                "www.example.test",
                json!(["a.example.test", "b.example.test"]),
            ),
            &["resource.targets"],
        ),
        (
            listing("A", "www.example.test", json!(many)),
            &["resource.targets"],
        ),
        (
            listing("A", "www.example.test", json!(["not-an-address"])),
            &["resource.targets[0]"],
        ),
        (
            listing("MX", "example.test", json!(["mail.example.test"])),
            &["resource.targets[0]"],
        ),
        (
            listing(
                "SRV",
                "_sip._tcp.example.test",
                json!(["10 5060 sip.example.test"]),
            ),
            &["resource.targets[0]"],
        ),
        (
            listing("TXT", "example.test", json!(["line\nbreak"])),
            &["resource.targets[0]"],
        ),
        (with_priority, &["resource.config.priority"]),
    ];

    // Act + Assert
    check(
        &app,
        cases.map(|(body, fields)| (body, Expect::Rejected(fields))),
    )
    .await;
}

#[tokio::test]
async fn targets_and_target_for_the_same_record_are_the_same_request_for_an_idempotency_key() {
    // Arrange
    let app = spawn_app().await;
    let by_target = with(
        change("MX", "example.test", "mail.example.test"),
        "/resource/config/priority",
        json!(10),
    );
    let by_targets = listing("MX", "example.test", json!(["10 mail.example.test"]));

    // Act
    let first = app.post_create_with_key(&by_target, "key-mx").await;
    let again = app.post_create_with_key(&by_targets, "key-mx").await;

    // Assert: the second is the first, not a key reused for another change.
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert_eq!(again.status(), StatusCode::OK);
    let (first, again): (Value, Value) = (first.json().await.unwrap(), again.json().await.unwrap());
    assert_eq!(first["request_id"], again["request_id"]);
}

#[tokio::test]
async fn a_record_created_and_deleted_by_targets_leaves_the_ledger_empty() {
    // Arrange: an MX made through `targets`, applied by the simulated backend.
    let app = spawn_app().await;
    let mx = listing("MX", "example.test", json!(["10 mail.example.test"]));
    app.create(&mx).await;
    app.run_queued_tasks().await;
    let records: Value = app.get("/api/v1/dns/records").await.json().await.unwrap();
    assert_eq!(records["items"].as_array().unwrap().len(), 1, "{records}");

    // Act: the same record deleted through `targets`.
    let deleted = app
        .client
        .post(format!("{}/api/v1/dns/delete", app.address))
        .json(&mx)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    app.run_queued_tasks().await;

    // Assert
    let request: Value = deleted.json().await.unwrap();
    let request = app.request(request["request_id"].as_str().unwrap()).await;
    assert_eq!(request["status"], "COMPLETED", "{request:#}");
    let records: Value = app.get("/api/v1/dns/records").await.json().await.unwrap();
    assert_eq!(records["items"], json!([]), "{records}");
}
