//! The powerdns backend against a real PowerDNS Authoritative (`pdns_server` with SQLite and
//! its HTTP API, started by `scripts/test.sh` with the zone `example.test`): changes are seen by
//! `dig` at the server's DNS port; PowerDNS's refusals, a wrong API key and a server that is
//! down fail or retry as they should; a record added through the API between dnsorch's read
//! and its write survives. The test that stops the server starts a private one
//! (`TEST_POWERDNS_INSTANCE`).

use std::collections::HashMap;

use dnsorch::domain::{BeforeAfter, LiveRrset, Operation, RecordConfig, RecordData, RecordType};
use dnsorch::provision::{Fence, PlannedChange, ProvisionError, ZoneRouter};
use dnsorch::zones::Zones;

use super::*;

/// A PowerDNS server: its DNS port, API URL and API key file.
struct Pdns {
    port: u16,
    api_url: String,
    key_file: String,
}

fn shared_pdns() -> Pdns {
    Pdns {
        port: env("TEST_POWERDNS_PORT").parse().unwrap(),
        api_url: env("TEST_POWERDNS_API_URL"),
        key_file: env("TEST_POWERDNS_API_KEY_FILE"),
    }
}

/// A zones file with `example.test` by the powerdns backend, the API key in `key_file`.
fn pdns_zones_file(dir: &Path, pdns: &Pdns, key_file: &str) -> PathBuf {
    let text = format!(
        r#"
[zones."example.test"]
backend = "powerdns"
api_url = "{api_url}"
server_id = "localhost"
api_key_file = "{key_file}"
server = "127.0.0.1:{port}"
timeout_seconds = 2
verify_timeout_seconds = 5
"#,
        api_url = pdns.api_url,
        port = pdns.port,
    );
    let path = dir.join("dnsorch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn spawn_pdns_app(pdns: &Pdns) -> App {
    spawn_app(|dir, settings| {
        settings.dnsorch_config = Some(pdns_zones_file(dir.path(), pdns, &pdns.key_file));
    })
    .await
}

/// The RRset at `name` as PowerDNS's API holds it: `(ttl, contents)`, contents sorted.
async fn api_rrset(pdns: &Pdns, name: &str, record_type: &str) -> Option<(u64, Vec<String>)> {
    let key = std::fs::read_to_string(&pdns.key_file).unwrap();
    let zone: Value = client::plain_client()
        .get(format!(
            "{}/api/v1/servers/localhost/zones/example.test.?rrset_name={name}.&rrset_type={record_type}",
            pdns.api_url
        ))
        .header("X-API-Key", key.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rrset = zone["rrsets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == format!("{name}.") && r["type"] == record_type)?;
    let mut contents: Vec<String> = rrset["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["content"].as_str().unwrap().to_owned())
        .collect();
    contents.sort();
    Some((rrset["ttl"].as_u64().unwrap(), contents))
}

/// Sets the RRset at `name` through PowerDNS's API, behind dnsorch's back.
async fn api_replace(pdns: &Pdns, name: &str, record_type: &str, ttl: u32, contents: &[&str]) {
    let key = std::fs::read_to_string(&pdns.key_file).unwrap();
    let records: Vec<Value> = contents
        .iter()
        .map(|c| json!({"content": c, "disabled": false}))
        .collect();
    let response = client::plain_client()
        .patch(format!(
            "{}/api/v1/servers/localhost/zones/example.test.",
            pdns.api_url
        ))
        .header("X-API-Key", key.trim())
        .json(
            &json!({"rrsets": [{"name": format!("{name}."), "type": record_type, "ttl": ttl,
                                  "changetype": "REPLACE", "records": records}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "{:?}", response.text().await);
}

fn targets(account: &str, record_type: &str, domain: &str, targets: &[&str], ttl: u32) -> Value {
    json!({"context": {"account_id": account},
           "resource": {"record_type": record_type, "domain": domain, "targets": targets,
                        "config": {"ttl": ttl}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_each_kind_are_created_in_powerdns_and_seen_by_dig() {
    // Arrange
    let pdns = shared_pdns();
    let app = spawn_pdns_app(&pdns).await;
    let host = unique("pc");
    let cases = [
        (
            "A",
            format!("{host}.example.test"),
            "192.0.2.10",
            None,
            "192.0.2.10",
        ),
        (
            "TXT",
            format!("{host}.example.test"),
            "v=spf1 \"quoted\" -all",
            None,
            "\"v=spf1 \\\"quoted\\\" -all\"",
        ),
        (
            "MX",
            format!("{host}.example.test"),
            "mail.example.test",
            Some(10),
            "10 mail.example.test.",
        ),
        (
            "CNAME",
            format!("alias-{host}.example.test"),
            "target.example.test",
            None,
            "target.example.test.",
        ),
        (
            "SRV",
            format!("_sip._tcp.{host}.example.test"),
            "5 5060 sip.example.test",
            Some(10),
            "10 5 5060 sip.example.test.",
        ),
    ];

    for (record_type, domain, target, priority, expected) in cases {
        // Act
        let request = app
            .completed(
                "create",
                &body("acct-pdns", record_type, &domain, Some(target), priority),
            )
            .await;

        // Assert: dig at the PowerDNS DNS port sees it; the request was verified there.
        assert_eq!(dig(pdns.port, &domain, record_type), [expected]);
        assert_eq!(
            (&request["zone"], &request["backend"]),
            (&json!("example.test"), &json!("powerdns"))
        );
        assert!(request["verified_at"].is_string(), "{request}");
        let log = log_of(&request);
        assert!(log.contains("PATCH example.test.: REPLACE"), "{log}");
        assert!(
            log.contains(&format!("verified at 127.0.0.1:{}", pdns.port)),
            "{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_is_exactly_the_new_set_with_the_new_ttl_and_deletes_remove_a_record_then_the_rrset()
 {
    // Arrange: three A records.
    let pdns = shared_pdns();
    let app = spawn_pdns_app(&pdns).await;
    let name = format!("{}.example.test", unique("pr"));
    let old = ["192.0.2.1", "192.0.2.2", "192.0.2.3"];
    app.completed("create", &targets("acct-pr", "A", &name, &old, 120))
        .await;
    assert_eq!(
        dig_ttl(pdns.port, &name, "A").len(),
        3,
        "{:?}",
        dig(pdns.port, &name, "A")
    );

    // Act: replace with two others and a new TTL, delete one of them, then the whole RRset.
    let new = ["198.51.100.1", "198.51.100.2"];
    let replaced = app
        .completed("replace", &targets("acct-pr", "A", &name, &new, 900))
        .await;
    let mut after_replace = dig_ttl(pdns.port, &name, "A");
    after_replace.sort();
    let api_after_replace = api_rrset(&pdns, &name, "A").await;
    app.completed("delete", &targets("acct-pr", "A", &name, &new[..1], 900))
        .await;
    let after_one = dig_ttl(pdns.port, &name, "A");
    let gone = app
        .completed("delete", &body("acct-pr", "A", &name, None, None))
        .await;

    // Assert
    assert_eq!(
        after_replace,
        ["900 198.51.100.1", "900 198.51.100.2"],
        "{}",
        log_of(&replaced)
    );
    assert_eq!(
        api_after_replace,
        Some((900, new.map(String::from).to_vec()))
    );
    assert_eq!(after_one, ["900 198.51.100.2"]);
    assert!(dig(pdns.port, &name, "A").is_empty());
    assert_eq!(api_rrset(&pdns, &name, "A").await, None);
    let log = log_of(&gone);
    assert!(log.contains("PATCH example.test.: DELETE"), "{log}");
    assert!(app.records(&name).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cname_beside_other_data_fails_with_powerdns_reason_and_is_not_retried() {
    // Arrange: an A record made through the API, outside dnsorch's ledger.
    let pdns = shared_pdns();
    let app = spawn_pdns_app(&pdns).await;
    let name = format!("{}.example.test", unique("pcn"));
    api_replace(&pdns, &name, "A", 120, &["192.0.2.40"]).await;

    // Act
    let request = app
        .apply(
            "create",
            &body(
                "acct-pcn",
                "CNAME",
                &name,
                Some("target.example.test"),
                None,
            ),
        )
        .await;

    // Assert: PowerDNS's 422 is permanent and its reason is in the request's log.
    assert_eq!(request["status"], "FAILED", "{}", log_of(&request));
    assert_eq!(request["attempts"], 1, "{request}");
    let log = log_of(&request);
    assert!(log.contains("HTTP 422"), "{log}");
    assert!(log.contains("Conflicts with pre-existing RRset"), "{log}");
    assert!(dig(pdns.port, &name, "CNAME").is_empty());
    assert_eq!(dig(pdns.port, &name, "A"), ["192.0.2.40"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_api_key_fails_at_once_and_is_never_in_the_request() {
    // Arrange: a key file with a key PowerDNS does not have.
    let pdns = shared_pdns();
    let inputs = TempDir::new().unwrap();
    let wrong = format!("wrong-key-{}", uuid::Uuid::new_v4().simple());
    let wrong_file = inputs.path().join("wrong.key");
    std::fs::write(&wrong_file, format!("{wrong}\n")).unwrap();
    let app = spawn_app(|dir, settings| {
        settings.dnsorch_config = Some(pdns_zones_file(
            dir.path(),
            &pdns,
            wrong_file.to_str().unwrap(),
        ));
    })
    .await;
    let name = format!("{}.example.test", unique("pk"));

    // Act
    let request = app
        .apply(
            "create",
            &body("acct-pk", "A", &name, Some("192.0.2.41"), None),
        )
        .await;

    // Assert: failed on the first attempt, saying it is the key, and the key is nowhere.
    assert_eq!(request["status"], "FAILED", "{}", log_of(&request));
    assert_eq!(request["attempts"], 1, "{request}");
    let log = log_of(&request);
    assert!(log.contains("refused the API key (HTTP 401)"), "{log}");
    assert!(!request.to_string().contains(&wrong), "{request}");
    let real = std::fs::read_to_string(&pdns.key_file).unwrap();
    assert!(!request.to_string().contains(real.trim()), "{request}");
    assert!(dig(pdns.port, &name, "A").is_empty());
}

/// A private PowerDNS from `TEST_POWERDNS_INSTANCE`, on fixed ports and a directory of its own.
fn start_instance(dir: &Path, port: u16, api_port: u16) -> HashMap<String, String> {
    let started = Command::new(env("TEST_POWERDNS_INSTANCE"))
        .args([
            "start",
            dir.to_str().unwrap(),
            &port.to_string(),
            &api_port.to_string(),
        ])
        .output()
        .unwrap();
    assert!(started.status.success(), "{started:?}");
    String::from_utf8(started.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// Stops the private instance by the PID its start printed (and `DIR/pdns.pid` holds).
fn stop_instance(dir: &Path) {
    let stopped = Command::new(env("TEST_POWERDNS_INSTANCE"))
        .args(["stop", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(stopped.status.success(), "{stopped:?}");
}

/// Stops the private instance when the test ends, however it ends.
struct StoppedOnDrop(PathBuf);

impl Drop for StoppedOnDrop {
    fn drop(&mut self) {
        let _ = Command::new(env("TEST_POWERDNS_INSTANCE"))
            .args(["stop", self.0.to_str().unwrap()])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powerdns_down_is_retried_and_completes_once_it_is_back() {
    // Arrange: a private PowerDNS, and an app with room for retries.
    let pdns_dir = TempDir::new().unwrap();
    let (port, api_port) = (free_port(), free_port());
    let vars = start_instance(pdns_dir.path(), port, api_port);
    let _stop = StoppedOnDrop(pdns_dir.path().to_owned());
    let pdns = Pdns {
        port,
        api_url: vars["POWERDNS_API_URL"].clone(),
        key_file: vars["POWERDNS_API_KEY_FILE"].clone(),
    };
    let app = spawn_app(|dir, settings| {
        settings.dnsorch_config = Some(pdns_zones_file(dir.path(), &pdns, &pdns.key_file));
        settings.max_attempts = 40;
        settings.retry_base_seconds = Duration::from_millis(200);
        settings.retry_max_seconds = Duration::from_millis(500);
    })
    .await;
    let name = format!("{}.example.test", unique("pd"));
    app.completed(
        "create",
        &body("acct-pd", "A", &name, Some("192.0.2.42"), None),
    )
    .await;

    // Act: stop it, ask for another record, wait for a failed attempt, start it again.
    stop_instance(pdns_dir.path());
    let (status, posted) = app
        .post(
            "create",
            &body("acct-pd", "A", &name, Some("192.0.2.43"), None),
        )
        .await;
    assert_eq!(status, 202, "{posted}");
    let id = posted["request_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, text) = app.get_text(&format!("/api/v1/dns/requests/{id}")).await;
        let request: Value = serde_json::from_str(&text).unwrap();
        assert_ne!(request["status"], "FAILED", "{}", log_of(&request));
        if request["attempts"].as_u64().unwrap_or_default() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no retry: {request}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start_instance(pdns_dir.path(), port, api_port);
    let request = app.finished(&id).await;

    // Assert: transient failures while it was down, then COMPLETED; both records are there.
    assert_completed(&request);
    assert!(request["attempts"].as_u64().unwrap() >= 2, "{request}");
    let log = log_of(&request);
    assert!(log.contains("did not answer"), "{log}");
    assert_eq!(dig(port, &name, "A"), ["192.0.2.42", "192.0.2.43"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_added_through_the_api_between_read_and_write_survives() {
    // Arrange: the RRset as a worker read and planned it, then a record added through the API
    // before the write.
    let pdns = shared_pdns();
    let dir = TempDir::new().unwrap();
    let zones = Zones::load(Some(&pdns_zones_file(dir.path(), &pdns, &pdns.key_file))).unwrap();
    let simulated = Arc::new(dnsorch::provision::SimulatedProvisioner::new(
        Duration::ZERO,
        0.0,
    ));
    let router = ZoneRouter::new(&zones, simulated, 16384).unwrap();
    let backend = router
        .backend(Some("example.test"), Some("powerdns"))
        .unwrap();
    let name = format!("{}.example.test", unique("prace"));
    api_replace(&pdns, &name, "A", 120, &["192.0.2.60"]).await;
    let a = |ip: &str| RecordData::parse(RecordType::A, ip, None).unwrap();
    let read = backend
        .read_rrset(&name, RecordType::A)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        read,
        LiveRrset {
            ttl: 120,
            records: vec![a("192.0.2.60")],
        }
    );
    let change = PlannedChange {
        request_id: dnsorch::domain::RequestId::new(),
        account_id: "acct-prace".into(),
        operation: Operation::Create,
        record_type: RecordType::A,
        domain: name.clone(),
        records: vec![a("192.0.2.70")],
        config: RecordConfig {
            ttl: 120,
            priority: None,
            extra_config: Default::default(),
        },
        managed: vec![a("192.0.2.60")],
        expect: None,
        rrsets: Some(BeforeAfter {
            before: read,
            after: LiveRrset {
                ttl: 120,
                records: vec![a("192.0.2.60"), a("192.0.2.70")],
            },
        }),
        fence: Fence::new(
            Instant::now(),
            Duration::from_secs(30),
            Duration::from_secs(5),
        ),
    };
    api_replace(&pdns, &name, "A", 120, &["192.0.2.60", "192.0.2.61"]).await;

    // Act
    let applied = backend.apply(&change).await;

    // Assert: nothing written, a transient error; the added record stands.
    match applied {
        Err(ProvisionError::Transient(why)) => {
            assert!(why.contains("changed since it was read"), "{why}");
        }
        other => panic!("expected the read-modify-write to notice the change: {other:?}"),
    }
    assert_eq!(dig(pdns.port, &name, "A"), ["192.0.2.60", "192.0.2.61"]);
    assert_eq!(
        api_rrset(&pdns, &name, "A").await,
        Some((120, vec!["192.0.2.60".to_owned(), "192.0.2.61".to_owned()]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_set_for_a_powerdns_zone_is_refused_naming_the_backend() {
    // Arrange
    let pdns = shared_pdns();
    let app = spawn_pdns_app(&pdns).await;
    let name = format!("{}.example.test", unique("pat"));
    let create = |ip: &str| {
        json!({"action": "create",
               "resource": {"record_type": "A", "domain": name, "target": ip}})
    };

    // Act
    let (status, answer) = app
        .post_json(
            "/api/v1/dns/changes",
            &json!({"context": {"account_id": "acct-pat"}, "atomic": true,
                    "changes": [create("192.0.2.80"), create("192.0.2.81")]}),
        )
        .await;

    // Assert: a 422 on `atomic` saying the backend applies one change at a time; nothing in DNS.
    assert_eq!(status, 422, "{answer}");
    let atomic = answer["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "atomic")
        .unwrap_or_else(|| panic!("no atomic field: {answer}"));
    let message = atomic["message"].as_str().unwrap();
    assert!(
        message.contains("applied by powerdns, which applies one change at a time"),
        "{message}"
    );
    assert!(dig(pdns.port, &name, "A").is_empty());
}
