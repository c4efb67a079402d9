//! Change sets against the real BIND: a set of 50 creates with 3 invalid changes (not atomic:
//! the 47 applied and seen by `dig`, the 3 reported by index; atomic: nothing accepted,
//! nothing at the server), an atomic set the server refuses halfway (nothing changed), an
//! atomic delete-A-then-create-CNAME on one name, and an expectation broken by `nsupdate`
//! between a change's plan and its UPDATE (the prerequisite holds it at the server).

use dnsorch::domain::{BeforeAfter, LiveRrset, Operation, RecordConfig, RecordData, RecordType};
use dnsorch::provision::{Fence, PlannedChange, ProvisionError, ZoneRouter};
use dnsorch::zones::Zones;

use super::batching::PolicyBind;
use super::*;

fn create(domain: &str, target: &str) -> Value {
    json!({"action": "create",
           "resource": {"record_type": "A", "domain": domain, "target": target,
                        "config": {"ttl": 120}}})
}

fn set_of(atomic: bool, changes: Vec<Value>) -> Value {
    json!({"context": {"account_id": "acct-cs"}, "atomic": atomic, "changes": changes})
}

/// 50 creates under `run`; changes 7, 23 and 41 are invalid (a bad name, a name in no zone, a
/// bad address).
fn fifty(run: &str) -> (Vec<String>, Vec<Value>) {
    let names: Vec<String> = (0..50)
        .map(|i| format!("h{i}-{run}.example.test"))
        .collect();
    let changes = names
        .iter()
        .enumerate()
        .map(|(i, name)| match i {
            7 => create(&format!("h{i}..{run}.example.test"), "192.0.2.7"),
            23 => create(&format!("h{i}-{run}.nowhere.test"), "192.0.2.23"),
            41 => create(name, "192.0.2.999"),
            _ => create(name, &format!("192.0.2.{}", i + 1)),
        })
        .collect();
    (names, changes)
}

impl App {
    /// Waits until every accepted change of the set in `answer` finished; the set's view.
    async fn set_finished(&self, answer: &Value) -> Value {
        for item in answer["items"].as_array().unwrap() {
            if let Some(id) = item["request_id"].as_str() {
                self.finished(id).await;
            }
        }
        self.client
            .get(format!(
                "{}/api/v1/dns/changes/{}",
                self.address,
                answer["change_set_id"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_creates_with_three_invalid_apply_the_47_and_report_the_3_by_index() {
    // Arrange
    let app = spawn_dns_app().await;
    let port = shared_bind().port;
    let run = unique("cs");
    let (names, changes) = fifty(&run);

    // Act
    let (status, answer) = app.post("changes", &set_of(false, changes)).await;
    let view = app.set_finished(&answer).await;

    // Assert: 202; the three refused by index with their own status; the 47 in BIND.
    assert_eq!(status, 202, "{answer}");
    let refused: Vec<(u64, u64)> = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["error"].is_object())
        .map(|item| {
            (
                item["index"].as_u64().unwrap(),
                item["error"]["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(refused, [(7, 422), (23, 422), (41, 422)], "{answer}");
    assert_eq!(view["status"], "PARTIALLY_FAILED", "{view}");
    assert_eq!(view["counts"], json!({"COMPLETED": 47}), "{view}");
    for (i, name) in names.iter().enumerate() {
        match i {
            7 | 23 | 41 => {}
            _ => assert_eq!(
                dig(port, name, "A"),
                [format!("192.0.2.{}", i + 1)],
                "{name}"
            ),
        }
    }
    assert!(dig(port, &names[41], "A").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_fifty_as_an_atomic_set_accept_nothing_and_change_nothing() {
    // Arrange
    let app = spawn_dns_app().await;
    let port = shared_bind().port;
    let run = unique("ca");
    let (names, changes) = fifty(&run);

    // Act
    let (status, answer) = app.post("changes", &set_of(true, changes)).await;

    // Assert
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["fields"][0]["field"], "atomic", "{answer}");
    let indexes: Vec<u64> = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [7, 23, 41], "{answer}");
    assert!(app.requests_of("acct-cs").await.is_empty());
    for name in [&names[0], &names[1], &names[49]] {
        assert!(dig(port, name, "A").is_empty(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_set_the_server_refuses_halfway_changes_nothing() {
    // Arrange: a BIND that refuses updates under refused.example.test.
    let policy = PolicyBind::start();
    let bind = &policy.bind;
    let app = spawn_app(|dir, settings| {
        settings.dnsorch_config = Some(zones_file(
            dir,
            bind,
            &bind.secret_file,
            &playbook("nsupdate.yml"),
        ));
    })
    .await;
    let run = unique("half");
    let names: Vec<String> = (0..5)
        .map(|i| match i {
            2 => format!("h{i}-{run}.refused.example.test"),
            _ => format!("h{i}-{run}.example.test"),
        })
        .collect();
    let changes = names.iter().map(|n| create(n, "192.0.2.5")).collect();

    // Act
    let (status, answer) = app.post("changes", &set_of(true, changes)).await;
    let view = app.set_finished(&answer).await;

    // Assert: every change failed with the server's answer; none is at the server.
    assert_eq!(status, 202, "{answer}");
    assert_eq!(view["status"], "FAILED", "{view}");
    for item in view["items"].as_array().unwrap() {
        assert_eq!(item["status"], "FAILED", "{view}");
        assert!(
            item["last_error"].as_str().unwrap().contains("REFUSED"),
            "{view}"
        );
    }
    for name in &names {
        assert!(dig(bind.port, name, "A").is_empty(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_set_deletes_a_names_a_and_creates_its_cname_in_one_update() {
    an_atomic_set_deletes_a_names_a_and_creates_its_cname_in_one_update_at(&shared_bind()).await;
}

/// An atomic set at `server`: an A created, another name's A deleted and a CNAME created in
/// its place, all in one UPDATE.
pub(super) async fn an_atomic_set_deletes_a_names_a_and_creates_its_cname_in_one_update_at(
    server: &Server,
) {
    // Arrange: an A at www-<run> made by dnsorch.
    let app = spawn_dns_app_at(server).await;
    let port = server.port;
    let run = unique("cn");
    let name = format!("www-{run}.example.test");
    let target = format!("web-{run}.example.test");
    app.completed(
        "create",
        &body("acct-cs", "A", &name, Some("192.0.2.50"), None),
    )
    .await;
    let changes = vec![
        create(&target, "192.0.2.51"),
        json!({"action": "delete", "resource": {"record_type": "A", "domain": name}}),
        json!({"action": "create", "resource": {"record_type": "CNAME", "domain": name,
               "target": target, "config": {"ttl": 120}}}),
    ];

    // Act
    let (status, answer) = app.post("changes", &set_of(true, changes)).await;
    let view = app.set_finished(&answer).await;

    // Assert: the name is a CNAME, its A gone; one UPDATE applied the whole set.
    assert_eq!(status, 202, "{answer}");
    assert_eq!(view["status"], "COMPLETED", "{view}");
    assert_eq!(dig(port, &name, "CNAME"), [format!("{target}.")]);
    assert_eq!(dig(port, &target, "A"), ["192.0.2.51"]);
    let records = app.records(&name).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["record_type"], "CNAME", "{records:?}");
    let delete = &view["items"][1];
    assert_eq!(delete["before"]["records"], json!(["192.0.2.50"]), "{view}");
    assert_eq!(delete["after"]["records"], json!([]), "{view}");
    let mut lead = None;
    for item in view["items"].as_array().unwrap() {
        let request = app.finished(item["request_id"].as_str().unwrap()).await;
        if request["change_set"]["role"] == "lead" {
            lead = Some(request);
        }
    }
    let lead = lead.expect("the set has a lead");
    assert_eq!(
        log_of(&lead).matches("update sent to").count(),
        1,
        "{}",
        log_of(&lead)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expectation_broken_between_plan_and_update_fails_at_the_server_and_changes_nothing() {
    // Arrange: the RRset as a worker read and planned it, then nsupdate changes it before the
    // UPDATE is sent.
    let bind = shared_bind();
    let dir = TempDir::new().unwrap();
    let zones = Zones::load(Some(&zones_file(
        &dir,
        &bind,
        &bind.secret_file,
        &playbook("nsupdate.yml"),
    )))
    .unwrap();
    let simulated = Arc::new(dnsorch::provision::SimulatedProvisioner::new(
        Duration::ZERO,
        0.0,
    ));
    let router = ZoneRouter::new(&zones, simulated, 16384).unwrap();
    let backend = router
        .backend(Some("example.test"), Some("rfc2136"))
        .unwrap();
    let name = format!("{}.example.test", unique("race"));
    nsupdate(
        &bind,
        "example.test",
        &[format!("update add {name}. 120 A 192.0.2.60")],
    );
    let a = |ip: &str| RecordData::parse(RecordType::A, ip, None).unwrap();
    let read = LiveRrset {
        ttl: 120,
        records: vec![a("192.0.2.60")],
    };
    let change = PlannedChange {
        request_id: dnsorch::domain::RequestId::new(),
        account_id: "acct-cs".into(),
        operation: Operation::Replace,
        record_type: RecordType::A,
        domain: name.clone(),
        records: vec![a("192.0.2.70")],
        config: RecordConfig {
            ttl: 300,
            priority: None,
            extra_config: Default::default(),
        },
        managed: vec![a("192.0.2.60")],
        expect: Some(read.clone()),
        rrsets: Some(BeforeAfter {
            before: read,
            after: LiveRrset {
                ttl: 300,
                records: vec![a("192.0.2.70")],
            },
        }),
        fence: Fence::new(
            Instant::now(),
            Duration::from_secs(30),
            Duration::from_secs(5),
        ),
    };
    nsupdate(
        &bind,
        "example.test",
        &[format!("update add {name}. 120 A 192.0.2.61")],
    );

    // Act
    let applied = backend.apply(&change).await;

    // Assert: the server refused the UPDATE on its prerequisite; nsupdate's RRset stands.
    match applied {
        Err(ProvisionError::Transient(why)) => {
            assert!(why.contains("changed since it was read"), "{why}");
        }
        other => panic!("expected the prerequisite to fail: {other:?}"),
    }
    assert_eq!(dig(bind.port, &name, "A"), ["192.0.2.60", "192.0.2.61"]);
}
