//! Authentication: every `/api/v1/…` operation needs a valid bearer token, the token decides
//! the account, and reads are scoped to it.

use std::time::Duration;

use dnsorch::domain::TokenId;
use dnsorch::store::{SqliteStore, TokenStore};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// Creates a token over the API as the admin; its id and secret.
async fn token(app: &TestApp, body: Value) -> (String, String) {
    let response = app
        .client
        .post(format!("{}/api/v1/tokens", app.address))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    (
        created["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

/// A plain token of `account`.
async fn token_of(app: &TestApp, account: &str) -> (String, String) {
    token(
        app,
        json!({"account": account, "name": format!("{account}-ci"),
               "policies": [{"suffix": "example.test", "permissions": ["read", "create", "delete"]}]}),
    )
    .await
}

async fn post_as(app: &TestApp, secret: &str, body: &Value) -> reqwest::Response {
    client_with(secret)
        .post(format!("{}/api/v1/dns/create", app.address))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn get_as(app: &TestApp, secret: &str, path: &str) -> reqwest::Response {
    client_with(secret)
        .get(format!("{}{path}", app.address))
        .send()
        .await
        .unwrap()
}

/// How many requests exist, as the admin sees them.
async fn stored_requests(app: &TestApp) -> usize {
    let page: Value = app.get("/api/v1/dns/requests").await.json().await.unwrap();
    page["items"].as_array().unwrap().len()
}

/// Asserts a 401 with a Bearer challenge and a JSON error.
async fn assert_unauthorized(response: reqwest::Response, why: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{why}");
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer"), "{why}: {challenge}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized", "{why}: {body}");
}

/// Polls until `secret` is refused (or the deadline passes).
async fn wait_until_refused(app: &TestApp, secret: &str) -> reqwest::Response {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let response = get_as(app, secret, "/api/v1/dns/requests").await;
        if response.status() == StatusCode::UNAUTHORIZED {
            return response;
        }
        assert!(tokio::time::Instant::now() < deadline, "still accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_api_operation_refuses_a_request_without_a_token_and_declares_bearer() {
    // Arrange
    let app = spawn_app().await;
    let doc: Value = crate::client::plain_client()
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let mut checked = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        for (method, operation) in operations.as_object().unwrap() {
            // Act
            let url = format!(
                "{}{}",
                app.address,
                path.replace("{id}", &TokenId::new().to_string())
            );
            let request = crate::client::plain_client()
                .request(method.to_uppercase().parse().unwrap(), url)
                .header("content-type", "application/json")
                .body(a_record("www.example.test", "192.0.2.1").to_string());
            let response = request.send().await.unwrap();

            // Assert
            assert_unauthorized(response, &format!("{method} {path}")).await;
            assert_eq!(
                operation["security"],
                json!([{"bearer": []}]),
                "{method} {path}"
            );
            assert!(
                operation["responses"]["401"].is_object(),
                "{method} {path} documents 401"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} operations");
    assert_eq!(stored_requests(&app).await, 0);
}

#[tokio::test]
async fn a_made_up_or_malformed_token_is_refused_counted_and_stores_nothing() {
    // Arrange
    let app = spawn_app().await;
    let body = a_record("www.example.test", "192.0.2.2");

    // Act
    let made_up = post_as(
        &app,
        "dnsorch_0000000000000000000000000000000000000000000000",
        &body,
    )
    .await;
    let basic = crate::client::plain_client()
        .post(format!("{}/api/v1/dns/create", app.address))
        .header("authorization", "Basic YWRtaW46YWRtaW4=")
        .json(&body)
        .send()
        .await
        .unwrap();

    // Assert
    assert_unauthorized(made_up, "made-up token").await;
    assert_unauthorized(basic, "Basic credentials").await;
    assert_eq!(stored_requests(&app).await, 0);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for reason in ["unknown", "malformed"] {
        let line = format!("dnsorch_auth_failures_total{{reason=\"{reason}\",via=\"http\"}}");
        assert!(metrics.contains(&line), "{line} missing from /metrics");
    }
}

#[tokio::test]
async fn health_probes_stay_open_and_metrics_need_an_admin_or_metrics_token() {
    // Arrange
    let app = spawn_app().await;
    let (_, plain) = token_of(&app, "acct-1").await;
    let (_, scraper) = token(
        &app,
        json!({"account": "ops", "name": "prometheus", "metrics": true}),
    )
    .await;
    let open = crate::client::plain_client();

    // Act + Assert
    for path in ["/healthz", "/readyz"] {
        let response = open
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let anonymous = open
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_unauthorized(anonymous, "/metrics without a token").await;
    assert_eq!(
        get_as(&app, &plain, "/metrics").await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get_as(&app, &scraper, "/metrics").await.status(),
        StatusCode::OK
    );
    assert_eq!(app.get("/metrics").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn public_metrics_need_no_token() {
    let app = spawn_app_with(|s| s.metrics_public = true).await;
    let response = crate::client::plain_client()
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_token_decides_the_account() {
    // Arrange
    let app = spawn_app().await;
    let (token_id, secret) = token_of(&app, "acct-1").await;
    let mut omitted = a_record("www.example.test", "192.0.2.3");
    omitted["context"] = json!({});
    let mut other = a_record("www.example.test", "192.0.2.4");
    other["context"]["account_id"] = "acct-2".into();
    let mut empty = a_record("www.example.test", "192.0.2.5");
    empty["context"]["account_id"] = "".into();

    // Act
    let own = post_as(&app, &secret, &a_record("www.example.test", "192.0.2.6")).await;
    let filled = post_as(&app, &secret, &omitted).await;
    let mismatch = post_as(&app, &secret, &other).await;
    let blank = post_as(&app, &secret, &empty).await;

    // Assert
    assert_eq!(own.status(), StatusCode::ACCEPTED);
    let own: Value = own.json().await.unwrap();
    assert_eq!(own["account_id"], "acct-1");
    assert_eq!(own["submitted_by"]["token_id"], token_id.as_str());
    assert_eq!(own["submitted_by"]["token_name"], "acct-1-ci");
    assert_eq!(own["submitted_by"]["client_addr"], "127.0.0.1");
    let first_log = own["log_messages"][0]["message"].as_str().unwrap();
    assert!(
        first_log.contains(&format!("token acct-1-ci ({token_id})")),
        "{first_log}"
    );
    assert!(first_log.contains("from 127.0.0.1"), "{first_log}");
    assert_eq!(filled.status(), StatusCode::ACCEPTED);
    assert_eq!(
        filled.json::<Value>().await.unwrap()["account_id"],
        "acct-1"
    );
    assert_eq!(mismatch.status(), StatusCode::FORBIDDEN);
    let refusal: Value = mismatch.json().await.unwrap();
    assert!(
        refusal["message"].as_str().unwrap().contains("acct-2"),
        "{refusal}"
    );
    assert_eq!(blank.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let invalid: Value = blank.json().await.unwrap();
    assert_eq!(invalid["fields"][0]["field"], "context.account_id");
    assert_eq!(stored_requests(&app).await, 2);
}

#[tokio::test]
async fn an_admin_acts_for_a_named_account_and_the_request_records_both() {
    // Arrange
    let app = spawn_app().await;
    let mut body = a_record("www.example.test", "192.0.2.7");
    body["context"]["account_id"] = "acct-9".into();

    // Act
    let id = app.create(&body).await;

    // Assert
    let request = app.request(&id).await;
    assert_eq!(request["account_id"], "acct-9");
    assert_eq!(request["submitted_by"]["account_id"], "admin");
    assert_eq!(request["submitted_by"]["token_name"], "first-run admin");
}

#[tokio::test]
async fn reads_show_only_the_tokens_account() {
    // Arrange: one request and one ledger row for each of two accounts.
    let app = spawn_app().await;
    let (_, one) = token_of(&app, "acct-1").await;
    let (_, two) = token_of(&app, "acct-2").await;
    let mut theirs = a_record("theirs.example.test", "192.0.2.8");
    theirs["context"] = json!({});
    let mine = post_as(&app, &one, &a_record("mine.example.test", "192.0.2.9")).await;
    let mine: Value = mine.json().await.unwrap();
    let theirs: Value = post_as(&app, &two, &theirs).await.json().await.unwrap();
    app.run_queued_tasks().await;
    let their_id = theirs["request_id"].as_str().unwrap();

    // Act
    let direct = get_as(&app, &one, &format!("/api/v1/dns/requests/{their_id}")).await;
    let listed: Value = get_as(&app, &one, "/api/v1/dns/requests")
        .await
        .json()
        .await
        .unwrap();
    let filtered: Value = get_as(&app, &one, "/api/v1/dns/requests?account_id=acct-2")
        .await
        .json()
        .await
        .unwrap();
    let records: Value = get_as(&app, &one, "/api/v1/dns/records")
        .await
        .json()
        .await
        .unwrap();
    let their_records: Value = get_as(&app, &one, "/api/v1/dns/records?account_id=acct-2")
        .await
        .json()
        .await
        .unwrap();

    // Assert
    assert_eq!(direct.status(), StatusCode::NOT_FOUND);
    let not_found = direct.text().await.unwrap();
    assert!(!not_found.contains("theirs"), "{not_found}");
    let ids: Vec<&Value> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["request_id"])
        .collect();
    assert_eq!(ids, [&mine["request_id"]]);
    assert_eq!(filtered["items"], json!([]));
    let names: Vec<&Value> = records["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["domain"])
        .collect();
    assert_eq!(names, [&json!("mine.example.test")]);
    assert_eq!(their_records["items"], json!([]));
    let everything: Value = app.get("/api/v1/dns/records").await.json().await.unwrap();
    assert_eq!(
        everything["items"].as_array().unwrap().len(),
        2,
        "admins see every account"
    );
}

#[tokio::test]
async fn a_revoked_or_rotated_token_is_refused_at_once_by_the_process_that_changed_it() {
    // Arrange
    let app = spawn_app().await;
    let (revoked_id, revoked) = token_of(&app, "acct-1").await;
    let (rotated_id, old) = token_of(&app, "acct-2").await;
    let mut body = a_record("www.example.test", "192.0.2.10");
    body["context"] = json!({});
    assert_eq!(
        post_as(&app, &revoked, &body).await.status(),
        StatusCode::ACCEPTED
    );
    // acct-1 owns www.example.test A now; acct-2 writes an RRset of its own.
    let mut theirs = a_record("two.example.test", "192.0.2.10");
    theirs["context"] = json!({});
    assert_eq!(
        post_as(&app, &old, &theirs).await.status(),
        StatusCode::ACCEPTED
    );

    // Act
    let revoke = app
        .client
        .delete(format!("{}/api/v1/tokens/{revoked_id}", app.address))
        .send()
        .await
        .unwrap();
    let rotate = app
        .client
        .post(format!("{}/api/v1/tokens/{rotated_id}/rotate", app.address))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(revoke.status(), StatusCode::OK);
    assert!(revoke.json::<Value>().await.unwrap()["revoked_at"].is_string());
    assert_eq!(rotate.status(), StatusCode::OK);
    let new = rotate.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new, old);
    assert_unauthorized(post_as(&app, &revoked, &body).await, "revoked").await;
    assert_unauthorized(post_as(&app, &old, &body).await, "rotated away").await;
    assert_eq!(
        post_as(&app, &new, &theirs).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(stored_requests(&app).await, 3);
}

#[tokio::test]
async fn a_revocation_by_another_process_is_seen_within_the_cache_time() {
    // Arrange: a second process's view of the same database file.
    let app = spawn_app().await;
    let (id, secret) = token_of(&app, "acct-1").await;
    assert_eq!(
        get_as(&app, &secret, "/api/v1/dns/requests").await.status(),
        StatusCode::OK
    );
    let url = format!("sqlite://{}/dnsorch.db", app.dir.path().display());
    let other = SqliteStore::open(&url, Duration::from_secs(2))
        .await
        .unwrap();

    // Act
    other.revoke_token(id.parse().unwrap()).await.unwrap();

    // Assert (the test settings cache lookups for 200 ms)
    wait_until_refused(&app, &secret).await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    // Arrange
    let app = spawn_app_with(|s| s.token_cache_seconds = Duration::from_secs(3600)).await;
    let (_, secret) = token(
        &app,
        json!({"account": "acct-1", "name": "brief", "expires_in_seconds": 0.5}),
    )
    .await;

    // Act: expiry is checked on every request, also against a cached token.
    let refused = wait_until_refused(&app, &secret).await;

    // Assert
    assert_unauthorized(refused, "expired").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains(r#"dnsorch_auth_failures_total{reason="expired",via="http"}"#));
}

#[tokio::test]
async fn a_token_works_only_from_its_allowed_subnets() {
    // Arrange
    let app = spawn_app().await;
    let (_, far) = token(
        &app,
        json!({"account": "acct-1", "name": "far", "allowed_subnets": ["10.0.0.0/8"]}),
    )
    .await;
    let (_, near) = token(
        &app,
        json!({"account": "acct-1", "name": "near", "allowed_subnets": ["127.0.0.0/8"],
               "policies": [{"suffix": "example.test", "permissions": ["create"]}]}),
    )
    .await;
    let body = a_record("www.example.test", "192.0.2.11");

    // Act
    let outside = post_as(&app, &far, &body).await;
    let spoofed = client_with(&far)
        .post(format!("{}/api/v1/dns/create", app.address))
        .header("x-forwarded-for", "10.1.2.3")
        .json(&body)
        .send()
        .await
        .unwrap();
    let inside = post_as(&app, &near, &body).await;

    // Assert: X-Forwarded-For counts only from TRUSTED_PROXIES (none here).
    assert_unauthorized(outside, "outside the subnet").await;
    assert_unauthorized(spoofed, "a forwarded-for header from an untrusted peer").await;
    assert_eq!(inside.status(), StatusCode::ACCEPTED);
    assert_eq!(stored_requests(&app).await, 1);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_address_counts() {
    // Arrange
    let app = spawn_app_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let (_, far) = token(
        &app,
        json!({"account": "acct-1", "name": "far", "allowed_subnets": ["10.0.0.0/8"],
               "policies": [{"suffix": "example.test", "permissions": ["create"]}]}),
    )
    .await;

    // Act
    let response = client_with(&far)
        .post(format!("{}/api/v1/dns/create", app.address))
        .header("x-forwarded-for", "10.1.2.3")
        .json(&a_record("www.example.test", "192.0.2.12"))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let request: Value = response.json().await.unwrap();
    assert_eq!(request["submitted_by"]["client_addr"], "10.1.2.3");
}

#[tokio::test]
async fn last_used_is_recorded() {
    // Arrange
    let app = spawn_app().await;
    let (id, secret) = token_of(&app, "acct-1").await;

    // Act
    get_as(&app, &secret, "/api/v1/dns/requests").await;

    // Assert: written in the background.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let shown: Value = app
            .get(&format!("/api/v1/tokens/{id}"))
            .await
            .json()
            .await
            .unwrap();
        if shown["last_used_at"].is_string() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "last_used_at never written: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_forwarder_token_acts_for_the_trusted_accounts_and_vouches_for_kafka() {
    // Arrange
    let app = spawn_app_with(|s| s.kafka_trusted_accounts = vec!["acct-k".into()]).await;
    let (_, forwarder) = token(
        &app,
        json!({"account": "kafka", "name": "consumer", "forwarder": true}),
    )
    .await;
    let (_, plain) = token_of(&app, "acct-1").await;
    let mut trusted = a_record("www.example.test", "192.0.2.20");
    trusted["context"]["account_id"] = "acct-k".into();
    let mut untrusted = a_record("www.example.test", "192.0.2.21");
    untrusted["context"]["account_id"] = "acct-x".into();
    let vouched = |secret: &str, by: &str| {
        client_with(secret)
            .post(format!("{}/api/v1/dns/create", app.address))
            .header("dnsorch-forwarded-by", format!("Bearer {by}"))
            // Another RRset than the trusted account's: acct-k owns www.example.test A.
            .json(&a_record("vouched.example.test", "192.0.2.22"))
            .send()
    };

    // Act
    let for_trusted = post_as(&app, &forwarder, &trusted).await;
    let for_untrusted = post_as(&app, &forwarder, &untrusted).await;
    let own_token_vouched = vouched(&plain, &forwarder).await.unwrap();
    let vouched_by_plain = vouched(&plain, &plain).await.unwrap();

    // Assert
    assert_eq!(for_trusted.status(), StatusCode::ACCEPTED);
    let recorded: Value = for_trusted.json().await.unwrap();
    assert_eq!(
        (&recorded["account_id"], &recorded["source"]),
        (&json!("acct-k"), &json!("kafka"))
    );
    assert_eq!(for_untrusted.status(), StatusCode::FORBIDDEN);
    assert_eq!(own_token_vouched.status(), StatusCode::ACCEPTED);
    let recorded: Value = own_token_vouched.json().await.unwrap();
    assert_eq!(
        (&recorded["account_id"], &recorded["source"]),
        (&json!("acct-1"), &json!("kafka"))
    );
    assert_eq!(recorded["submitted_by"]["token_name"], "acct-1-ci");
    assert_eq!(vouched_by_plain.status(), StatusCode::FORBIDDEN);
    assert_eq!(stored_requests(&app).await, 2);
}

#[tokio::test]
async fn a_forwarder_gets_the_trusted_grant_and_exemption_only_for_the_trusted_accounts() {
    // Arrange: a forwarder without policies, a bucket of one, one trusted account.
    let app = spawn_app_with(|s| {
        s.kafka_trusted_accounts = vec!["acct-k".into()];
        s.rate_limit_burst = 1;
        s.rate_limit_per_second = 1;
    })
    .await;
    let (_, forwarder) = token(
        &app,
        json!({"account": "kafka", "name": "consumer", "forwarder": true}),
    )
    .await;
    let trusted = |i: usize| {
        let mut body = a_record(&format!("t{i}.example.test"), "192.0.2.30");
        body["context"]["account_id"] = "acct-k".into();
        body
    };

    let mut own_body = a_record("own.example.test", "192.0.2.31");
    own_body["context"]["account_id"] = "kafka".into();

    // Act: three trusted messages forwarded at once, then the forwarder for its own account,
    // vouching for itself.
    let mut forwarded = Vec::new();
    for i in 0..3 {
        forwarded.push(post_as(&app, &forwarder, &trusted(i)).await.status());
    }
    let own = client_with(&forwarder)
        .post(format!("{}/api/v1/dns/create", app.address))
        .header("dnsorch-forwarded-by", format!("Bearer {forwarder}"))
        .json(&own_body)
        .send()
        .await
        .unwrap();

    // Assert: trusted messages are not limited by the forwarder's bucket (as consumed
    // directly); its own request has only its own (empty) policies.
    assert_eq!(forwarded, [StatusCode::ACCEPTED; 3]);
    assert_eq!(own.status(), StatusCode::FORBIDDEN);
    let body: Value = own.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no policy covers"),
        "{body}"
    );
    assert_eq!(stored_requests(&app).await, 3);
}
