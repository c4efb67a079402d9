//! Record sets and replace against the real BIND: several records in one request, MX and SRV
//! through `targets`, a replace seen by `dig` as exactly the new set with the new TTL (by the
//! rfc2136 backend and by the playbook), the refusals a replace meets (another account's RRset,
//! records made outside dnsorch, a CNAME, a broken expectation), and the RRset before and after
//! recorded on every applied request.

use super::*;

/// A body for `record_type` records at `domain` with these `targets` and `ttl`.
fn set(account: &str, record_type: &str, domain: &str, targets: &[&str], ttl: u32) -> Value {
    json!({"context": {"account_id": account},
           "resource": {"record_type": record_type, "domain": domain, "targets": targets,
                        "config": {"ttl": ttl}}})
}

/// `dig`'s answer as sorted `ttl rdata` lines.
fn answer(port: u16, name: &str, record_type: &str) -> Vec<String> {
    let mut lines = dig_ttl(port, name, record_type);
    lines.sort();
    lines
}

/// The records of a `before`/`after`, sorted, and its TTL.
fn held(rrset: &Value) -> (u64, Vec<String>) {
    let mut records: Vec<String> = rrset["records"]
        .as_array()
        .unwrap_or_else(|| panic!("not an RRset: {rrset}"))
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    records.sort();
    (rrset["ttl"].as_u64().unwrap(), records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_of_three_records_is_exactly_the_new_set_with_the_new_ttl_and_records_before_and_after()
 {
    a_replace_of_three_records_is_exactly_the_new_set_at(&shared_bind()).await;
}

/// Three records replaced at `server` by three others with a new TTL in one UPDATE, then two
/// of those deleted: `dig` sees exactly each set, and each request records the RRset before
/// and after it.
pub(super) async fn a_replace_of_three_records_is_exactly_the_new_set_at(server: &Server) {
    // Arrange: three A records in one create.
    let app = spawn_dns_app_at(server).await;
    let port = server.port;
    let name = format!("{}.example.test", unique("rs"));
    let old = ["192.0.2.1", "192.0.2.2", "192.0.2.3"];
    let created = app
        .completed("create", &set("acct-r", "A", &name, &old, 120))
        .await;
    let before_replace = answer(port, &name, "A");

    // Act
    let new = ["198.51.100.1", "198.51.100.2", "198.51.100.3"];
    let replaced = app
        .completed("replace", &set("acct-r", "A", &name, &new, 900))
        .await;
    let deleted = app
        .completed("delete", &set("acct-r", "A", &name, &new[..2], 900))
        .await;

    // Assert: dig saw each state; each request recorded the RRset before and after it.
    assert_eq!(
        before_replace,
        old.iter().map(|ip| format!("120 {ip}")).collect::<Vec<_>>()
    );
    assert_eq!(held(&created["before"]), (0, vec![]));
    assert_eq!(
        held(&created["after"]),
        (120, old.map(String::from).to_vec())
    );
    assert_eq!(held(&replaced["before"]), held(&created["after"]));
    assert_eq!(
        held(&replaced["after"]),
        (900, new.map(String::from).to_vec())
    );
    assert_eq!(held(&deleted["before"]), held(&replaced["after"]));
    assert_eq!(held(&deleted["after"]), (900, vec![new[2].to_owned()]));
    assert_eq!(answer(port, &name, "A"), [format!("900 {}", new[2])]);
    let ledger = app.records(&name).await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0]["target"], new[2]);
    assert_eq!(ledger[0]["ttl"], 900);
    // One UPDATE made the replace: its log has one answer to an update.
    let updates = log_of(&replaced).matches("update sent to").count();
    assert_eq!(updates, 1, "{}", log_of(&replaced));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_is_refused_on_another_accounts_rrset_and_on_one_with_a_record_made_outside() {
    // Arrange: acct-r's RRset, and one of its RRsets where nsupdate added a record.
    let app = spawn_dns_app().await;
    let bind = shared_bind();
    let owned = format!("{}.example.test", unique("rs"));
    app.completed("create", &set("acct-r", "A", &owned, &["192.0.2.10"], 120))
        .await;
    let touched = format!("{}.example.test", unique("rs"));
    app.completed(
        "create",
        &set("acct-r", "A", &touched, &["192.0.2.20"], 120),
    )
    .await;
    nsupdate(
        &bind,
        "example.test",
        &[format!("update add {touched}. 120 A 192.0.2.99")],
    );

    // Act
    let (status, theirs) = app
        .post("replace", &set("acct-s", "A", &owned, &["192.0.2.11"], 300))
        .await;
    let outside = app
        .apply(
            "replace",
            &set("acct-r", "A", &touched, &["192.0.2.21"], 300),
        )
        .await;

    // Assert: nothing changed at the server, nor in the ledger.
    assert_eq!(status, 403, "{theirs}");
    assert!(app.requests_of("acct-s").await.is_empty());
    assert_eq!(dig(bind.port, &owned, "A"), ["192.0.2.10"]);
    assert_eq!(outside["status"], "FAILED", "{outside}");
    assert!(
        log_of(&outside).contains("does not manage"),
        "{}",
        log_of(&outside)
    );
    assert!(
        log_of(&outside).contains("192.0.2.99"),
        "{}",
        log_of(&outside)
    );
    assert_eq!(dig(bind.port, &touched, "A"), ["192.0.2.20", "192.0.2.99"]);
    let ledger = app.records(&touched).await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_and_srv_record_sets_are_made_and_removed_through_targets() {
    // Arrange
    let app = spawn_dns_app().await;
    let port = shared_bind().port;
    let zone_name = format!("{}.example.test", unique("mx"));
    let service = format!("_sip._tcp.{}.example.test", unique("srv"));

    // Act
    app.completed(
        "create",
        &set(
            "acct-r",
            "MX",
            &zone_name,
            &["10 mail.example.test", "20 backup.example.test"],
            300,
        ),
    )
    .await;
    app.completed(
        "create",
        &set(
            "acct-r",
            "SRV",
            &service,
            &["10 5 5060 sip.example.test", "20 0 5060 sip2.example.test"],
            300,
        ),
    )
    .await;
    let mx = dig(port, &zone_name, "MX");
    let srv = dig(port, &service, "SRV");
    app.completed(
        "delete",
        &set("acct-r", "MX", &zone_name, &["20 backup.example.test"], 300),
    )
    .await;

    // Assert
    assert_eq!(mx, ["10 mail.example.test.", "20 backup.example.test."]);
    assert_eq!(
        srv,
        [
            "10 5 5060 sip.example.test.",
            "20 0 5060 sip2.example.test."
        ]
    );
    assert_eq!(dig(port, &zone_name, "MX"), ["10 mail.example.test."]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cname_is_replaced_by_another_and_an_a_cannot_replace_at_a_cname() {
    // Arrange
    let app = spawn_dns_app().await;
    let port = shared_bind().port;
    let alias = format!("{}.example.test", unique("cn"));
    app.completed(
        "create",
        &set("acct-r", "CNAME", &alias, &["one.example.test"], 120),
    )
    .await;

    // Act
    let replaced = app
        .apply(
            "replace",
            &set("acct-r", "CNAME", &alias, &["two.example.test"], 300),
        )
        .await;
    let refused = app
        .apply("replace", &set("acct-r", "A", &alias, &["192.0.2.1"], 300))
        .await;

    // Assert
    assert_completed(&replaced);
    assert_eq!(answer(port, &alias, "CNAME"), ["300 two.example.test."]);
    assert_eq!(refused["status"], "FAILED", "{refused}");
    assert!(
        log_of(&refused).contains("has a CNAME"),
        "{}",
        log_of(&refused)
    );
    assert_eq!(dig(port, &alias, "A"), ["two.example.test."]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expectation_that_nsupdate_broke_fails_the_replace_and_changes_nothing() {
    // Arrange: acct-r's RRset, then a record changed at the server behind dnsorch's back
    // before a replace that expects the RRset as dnsorch made it.
    let app = spawn_dns_app().await;
    let bind = shared_bind();
    let name = format!("{}.example.test", unique("ex"));
    let created = app
        .completed("create", &set("acct-r", "A", &name, &["192.0.2.30"], 120))
        .await;
    nsupdate(
        &bind,
        "example.test",
        &[format!("update add {name}. 120 A 192.0.2.31")],
    );
    let mut body = set("acct-r", "A", &name, &["192.0.2.40"], 300);
    body["expect"] = created["after"].clone();

    // Act
    let replaced = app.apply("replace", &body).await;

    // Assert
    assert_eq!(replaced["status"], "FAILED", "{replaced}");
    assert!(
        log_of(&replaced).contains("not the one expected"),
        "{}",
        log_of(&replaced)
    );
    assert_eq!(dig(bind.port, &name, "A"), ["192.0.2.30", "192.0.2.31"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playbook_makes_and_replaces_a_txt_record_set() {
    // Arrange: two TXT records made through the ansible zone.
    let app = spawn_dns_app().await;
    let port = shared_bind().port;
    let name = format!("{}.other.test", unique("pb"));
    app.completed(
        "create",
        &set("acct-r", "TXT", &name, &["first", "second"], 120),
    )
    .await;
    let made = answer(port, &name, "TXT");

    // Act
    let replaced = app
        .completed(
            "replace",
            &set(
                "acct-r",
                "TXT",
                &name,
                &["third", "\"quoted\" \"parts\""],
                600,
            ),
        )
        .await;

    // Assert
    assert_eq!(made, ["120 \"first\"", "120 \"second\""]);
    // The two quoted parts are one record's text, joined.
    assert_eq!(
        answer(port, &name, "TXT"),
        ["600 \"quotedparts\"", "600 \"third\""]
    );
    assert_eq!(
        held(&replaced["before"]),
        (120, vec!["first".into(), "second".into()])
    );
    assert_eq!(
        held(&replaced["after"]),
        (600, vec!["quotedparts".into(), "third".into()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_and_deletes_that_expect_the_rrset_as_it_is_apply_under_its_prerequisites() {
    // Arrange
    let app = spawn_dns_app().await;
    let port = shared_bind().port;
    let name = format!("{}.example.test", unique("ex"));
    let with_expect = |targets: &[&str], expect: Value| {
        let mut body = set("acct-r", "A", &name, targets, 120);
        body["expect"] = expect;
        body
    };

    // Act: a create that expects nothing there, one that expects it, a delete that expects
    // both records, and a create whose expectation is stale.
    let first = app
        .completed("create", &with_expect(&["192.0.2.1"], Value::Null))
        .await;
    let second = app
        .completed(
            "create",
            &with_expect(&["192.0.2.2"], first["after"].clone()),
        )
        .await;
    let stale = app
        .apply(
            "create",
            &with_expect(&["192.0.2.3"], first["after"].clone()),
        )
        .await;
    app.completed(
        "delete",
        &with_expect(&["192.0.2.1"], second["after"].clone()),
    )
    .await;

    // Assert
    assert_eq!(stale["status"], "FAILED", "{stale}");
    assert_eq!(dig(port, &name, "A"), ["192.0.2.2"]);
}
