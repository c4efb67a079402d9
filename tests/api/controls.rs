//! Control characters (U+0000-U+001F, U+007F) in any text of a change request, and the size
//! of `extra_config`: a 422 naming the field, and nothing stored.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::validation::Expect::{Rejected, Stored};
use crate::validation::{
    EXTRA, assert_rejected, check, normal, sample, stored, targeting, valid, with,
};

/// NUL, BEL, tab, line feed, carriage return, escape and DEL.
const CONTROLS: [char; 7] = ['\0', '\u{7}', '\t', '\n', '\r', '\u{1b}', '\u{7f}'];

#[tokio::test]
async fn a_control_character_in_any_text_field_is_refused_naming_the_field() {
    // Arrange
    let app = spawn_app().await;
    let mut cases = Vec::new();
    for c in CONTROLS {
        let a = valid("A");
        #[rustfmt::skip]
        let bad = [
            (with(a.clone(), "/context/account_id", json!(format!("acct{c}1"))), &["context.account_id"]),
            (with(a.clone(), "/resource/record_type", json!(format!("A{c}"))), &["resource.record_type"]),
            (with(a.clone(), "/resource/domain", json!(format!("www.example.test{c}"))), &["resource.domain"]),
            (with(a.clone(), "/resource/target", json!(format!("192.0.2.1{c}"))), &["resource.target"]),
            (targeting("SRV", &format!("10{c}5060 sip.example.test")), &["resource.target"]),
            (targeting("CAA", &format!("0 issue \"ca.example.test\"{c}")), &["resource.target"]),
            (with(a.clone(), "/resource/comment", json!(format!("a{c}comment"))), &["resource.comment"]),
            (with(a.clone(), EXTRA, json!({format!("k{c}"): 1})), &["resource.config.extra_config"]),
            (with(a.clone(), EXTRA, json!({"k": format!("v{c}")})), &["resource.config.extra_config"]),
            (with(a.clone(), EXTRA, json!({"k": {"deep": [format!("v{c}")]}})), &["resource.config.extra_config"]),
        ];
        cases.extend(bad.map(|(body, field)| (body, Rejected(field))));
    }
    // Act + Assert: each refused, and nothing stored.
    check(&app, cases).await;
}

#[tokio::test]
async fn an_account_with_a_control_character_is_a_422_for_a_token_of_another_account_too() {
    // Arrange: a non-admin token, for which another account would be a 403 echoing it.
    let app = spawn_app().await;
    let policies = json!([{"suffix": "example.test", "permissions": ["create"]}]);
    let (_, secret) = app
        .token(&json!({"account": "acct-1", "name": "ci", "policies": policies}))
        .await;
    let body = with(valid("A"), "/context/account_id", json!("acct-1\nforged"));

    // Act
    let response = app.post_as(&secret, "/api/v1/dns/create", &body).await;

    // Assert
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert_rejected(
        "account with a newline",
        status,
        &answer,
        &["context.account_id"],
    );
    assert_eq!(app.stored_requests().await, 0);
}

#[tokio::test]
async fn txt_text_carries_a_tab_only_as_a_zone_file_escape() {
    // Arrange
    let app = spawn_app().await;
    let escaped = r"v=spf1\009-all";
    let cases = [
        (
            targeting("TXT", "v=spf1\t-all"),
            Rejected(&["resource.target"]),
        ),
        (
            targeting("TXT", escaped),
            Stored(stored("TXT", sample("TXT").0, escaped)),
        ),
    ];
    // Act + Assert
    check(&app, cases).await;
}

#[tokio::test]
async fn an_idempotency_key_with_a_control_character_is_refused_naming_the_header() {
    // Arrange: a tab is the only control character an HTTP header value may carry.
    let app = spawn_app().await;

    // Act
    let response = app.post_create_with_key(&valid("A"), "key\t1").await;

    // Assert
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert_rejected(
        "key with a tab",
        status,
        &answer,
        &["header.Idempotency-Key"],
    );
    assert_eq!(app.stored_requests().await, 0);
}

#[tokio::test]
async fn extra_config_over_max_extra_config_bytes_is_refused() {
    // Arrange: `{"k":"…"}` is 8 bytes of JSON around its value.
    let app = spawn_app_with(|s| s.max_extra_config_bytes = 64).await;
    let sized = |bytes: usize| json!({"k": "x".repeat(bytes - 8)});
    let expected = with(normal("A"), "/config/extra_config", sized(64));
    let cases = [
        (
            with(valid("A"), EXTRA, sized(65)),
            Rejected(&["resource.config.extra_config"]),
        ),
        (with(valid("A"), EXTRA, sized(64)), Stored(expected)),
    ];
    // Act + Assert
    check(&app, cases).await;
}

#[tokio::test]
async fn the_default_max_extra_config_bytes_is_4096() {
    // Arrange
    let app = spawn_app().await;
    let body = with(valid("A"), EXTRA, json!({"k": "x".repeat(4089)}));

    // Act
    let response = app.post_create(&body).await;

    // Assert
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.stored_requests().await, 0);
}
