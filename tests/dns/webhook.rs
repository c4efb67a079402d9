//! The external-dns webhook provider against the real BIND: a protocol client replays what
//! external-dns does (negotiate, read records, adjust, apply creates with their ownership TXT
//! records, an update pair, a delete), in both spellings of the Changes keys, with `dig` at the
//! server after each step; a refused change is answered 204 and stored once however often it
//! is sent.

use dnsorch::startup::Role;
use dnsorch::webhook::endpoint::MEDIA_TYPE;

use super::*;

/// external-dns's side: the provider's address and a plain client; and the webhook's
/// operations address.
struct ExternalDns {
    base: String,
    client: reqwest::Client,
    ops: String,
}

impl ExternalDns {
    /// A request's answer: status and body, after checking the media type.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("Accept", MEDIA_TYPE);
        if let Some(body) = body {
            request = request
                .header("Content-Type", MEDIA_TYPE)
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        assert_eq!(
            response.headers()["content-type"],
            MEDIA_TYPE,
            "{path}: external-dns compares the media type as a string"
        );
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, body)
    }

    async fn records(&self) -> Vec<Value> {
        let (status, body) = self.call(reqwest::Method::GET, "/records", None).await;
        assert_eq!(status, 200, "{body}");
        let mut records = body.as_array().unwrap().clone();
        records.sort_by_key(|e| format!("{}{}", e["dnsName"], e["recordType"]));
        records
    }

    async fn apply(&self, changes: Value) -> u16 {
        self.call(reqwest::Method::POST, "/records", Some(changes))
            .await
            .0
    }
}

/// The app (with workers) on the shared BIND, a token of `acct-wh` for example.test, and the
/// webhook under that token (its file padded with whitespace) on the same database.
async fn webhook_on_bind() -> (App, ExternalDns, CancellationToken, TempDir) {
    let bind = shared_bind();
    let mut shared: Option<(String, PathBuf)> = None;
    let app = spawn_app(|dir, settings| {
        let zones = zones_file(dir, &bind, &bind.secret_file, &playbook("nsupdate.yml"));
        settings.dnsorch_config = Some(zones.clone());
        shared = Some((settings.database_url.clone(), zones));
    })
    .await;
    let (database_url, zones) = shared.unwrap();
    let (status, token) = app
        .post_json(
            "/api/v1/tokens",
            &json!({"account": "acct-wh", "name": "external-dns", "policies": [
                {"suffix": "example.test", "permissions": ["read", "create", "delete"]}]}),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let dir = TempDir::new().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(
        &token_file,
        format!("\n  {}  \n", token["secret"].as_str().unwrap()),
    )
    .unwrap();
    let settings = Settings {
        database_url,
        dnsorch_config: Some(zones),
        webhook_token_file: Some(token_file),
        ..support_settings::test_settings(&dir)
    };
    let webhook = Application::build_for(settings, Role::Webhook)
        .await
        .expect("the webhook starts");
    let base = format!("http://127.0.0.1:{}", webhook.webhook_port().unwrap());
    let ops = format!("http://127.0.0.1:{}", webhook.port());
    let shutdown = CancellationToken::new();
    tokio::spawn(webhook.run_until_stopped(shutdown.clone()));
    let external_dns = ExternalDns {
        base,
        client: reqwest::Client::new(),
        ops,
    };
    (app, external_dns, shutdown, dir)
}

impl App {
    /// Waits until no request of `account` is unfinished.
    async fn settled(&self, account: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let requests = self.requests_of(account).await;
            let open = requests
                .iter()
                .filter(|r| !matches!(r["status"].as_str(), Some("COMPLETED" | "FAILED")))
                .count();
            if open == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{open} still unfinished: {requests:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn endpoint(name: &str, record_type: &str, targets: &[&str], ttl: i64) -> Value {
    json!({"dnsName": name, "recordType": record_type, "targets": targets, "recordTTL": ttl,
           "labels": {}, "setIdentifier": ""})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_dns_creates_updates_and_deletes_through_the_webhook_into_bind() {
    // Arrange
    let (app, external_dns, shutdown, _dir) = webhook_on_bind().await;
    let port = shared_bind().port;
    let run = unique("wh");
    let name = format!("app-{run}.example.test");
    let owner = format!("a-app-{run}.example.test");
    let txt = "\"heritage=external-dns,external-dns/owner=k8s,external-dns/resource=ingress/default/app\"";

    // Act / Assert: negotiation, and nothing yet.
    let (status, filter) = external_dns.call(reqwest::Method::GET, "/", None).await;
    assert_eq!(status, 200);
    assert_eq!(filter, json!({"include": ["example.test"], "exclude": []}));
    assert!(external_dns.records().await.is_empty());

    // Adjust: canonical names, the default TTL, unmanaged types dropped.
    let (status, adjusted) = external_dns
        .call(
            reqwest::Method::POST,
            "/adjustendpoints",
            Some(json!([
                endpoint(&format!("APP-{run}.Example.Test."), "A", &["192.0.2.80"], 0),
                endpoint(&owner, "TXT", &[txt], 0),
                endpoint(&name, "NAPTR", &["1 1 \"u\" \"\" \"\" ."], 0),
            ])),
        )
        .await;
    assert_eq!(status, 200, "{adjusted}");
    assert_eq!(adjusted.as_array().unwrap().len(), 2, "{adjusted}");
    assert_eq!(adjusted[0]["dnsName"], name.as_str());
    assert_eq!(adjusted[0]["recordTTL"], 300);

    // Create the record and its ownership TXT record (0.17+ spelling).
    let created = external_dns
        .apply(json!({"create": [adjusted[0].clone(), adjusted[1].clone()],
                      "updateOld": null, "updateNew": null, "delete": null}))
        .await;
    assert_eq!(created, 204);
    app.settled("acct-wh").await;
    assert_eq!(dig(port, &name, "A"), ["192.0.2.80"]);
    assert_eq!(dig(port, &owner, "TXT"), [txt]);
    let records = external_dns.records().await;
    assert_eq!(records.len(), 2, "{records:?}");
    let of = |t: &str| records.iter().find(|e| e["recordType"] == t).unwrap()["targets"].clone();
    assert_eq!(of("A"), json!(["192.0.2.80"]), "{records:?}");
    assert_eq!(of("TXT"), json!([txt]), "{records:?}");

    // An update pair (the earlier spelling): a replace of the RRset.
    let updated = external_dns
        .apply(
            json!({"UpdateOld": [endpoint(&name, "A", &["192.0.2.80"], 300)],
                      "UpdateNew": [endpoint(&name, "A", &["192.0.2.81", "192.0.2.82"], 600)]}),
        )
        .await;
    assert_eq!(updated, 204);
    app.settled("acct-wh").await;
    assert_eq!(dig(port, &name, "A"), ["192.0.2.81", "192.0.2.82"]);
    assert_eq!(dig_ttl(port, &name, "A")[0].split(' ').next(), Some("600"));

    // A delete of both.
    let deleted = external_dns
        .apply(
            json!({"Delete": [endpoint(&name, "A", &["192.0.2.81", "192.0.2.82"], 600),
                                 endpoint(&owner, "TXT", &[txt], 300)]}),
        )
        .await;
    assert_eq!(deleted, 204);
    app.settled("acct-wh").await;
    assert!(dig(port, &name, "A").is_empty());
    assert!(dig(port, &owner, "TXT").is_empty());
    assert!(external_dns.records().await.is_empty());
    let requests = app.requests_of("acct-wh").await;
    assert!(
        requests.iter().all(|r| r["source"] == "webhook"),
        "{requests:?}"
    );
    assert!(
        requests.iter().all(|r| r["status"] == "COMPLETED"),
        "{requests:?}"
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_change_is_answered_204_and_stored_once_however_often_it_is_sent() {
    // Arrange: a name the token may not change, and a target that is not an address.
    let (app, external_dns, shutdown, _dir) = webhook_on_bind().await;
    let run = unique("whr");
    let outside = format!("x-{run}.other.test");
    let bad = format!("bad-{run}.example.test");
    let changes = json!({"create": [endpoint(&outside, "A", &["192.0.2.90"], 0),
                                    endpoint(&bad, "A", &["not-an-address"], 0)]});

    // Act: external-dns's next syncs send the same changes again.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(external_dns.apply(changes.clone()).await);
    }

    // Assert
    assert_eq!(statuses, [204, 204, 204]);
    let requests = app.requests_of("acct-wh").await;
    assert_eq!(requests.len(), 2, "{requests:?}");
    for request in &requests {
        assert_eq!(request["status"], "FAILED", "{request}");
        assert_eq!(request["source"], "webhook", "{request}");
    }
    let outside_request = requests
        .iter()
        .find(|r| r["domain"] == outside.as_str())
        .unwrap();
    assert!(
        outside_request["last_error"]
            .as_str()
            .unwrap()
            .contains("create"),
        "{outside_request}"
    );
    let metrics = app
        .client
        .get(format!("{}/metrics", external_dns.ops))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in ["forbidden", "invalid"] {
        let line = format!("dnsorch_webhook_refused_total{{reason=\"{reason}\"}}");
        assert!(metrics.contains(&line), "no {line} in:\n{metrics}");
    }
    shutdown.cancel();
}
