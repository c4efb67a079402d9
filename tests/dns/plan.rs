//! Dry runs (`?dry_run=true`) against the real BIND: the plan reads the primary and reports
//! every kind of conflict a server can show (records made outside dnsorch, another account's
//! RRset, CNAME exclusivity, a delete of something absent), for creates, deletes and replaces,
//! and neither BIND nor the database changes.

use super::*;

impl App {
    /// Posts `body` to `operation` with `?dry_run=true`: the status and the answer.
    async fn plan(&self, operation: &str, body: &Value) -> (reqwest::StatusCode, Value) {
        self.post(&format!("{operation}?dry_run=true"), body).await
    }

    /// How many requests are stored, of every account.
    async fn requests_stored(&self) -> usize {
        let page: Value = self
            .client
            .get(format!("{}/api/v1/dns/requests?limit=500", self.address))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["items"].as_array().unwrap().len()
    }
}

/// The conflict kinds of the plan's only RRset.
fn kinds(plan: &Value) -> Vec<&str> {
    plan["plan"][0]["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_reports_each_conflict_from_the_primary_and_changes_nothing() {
    // Arrange: acct-p's A record, plus one added behind dnsorch's back with nsupdate.
    let app = spawn_dns_app().await;
    let bind = shared_bind();
    let name = format!("{}.example.test", unique("plan"));
    app.completed(
        "create",
        &body("acct-p", "A", &name, Some("192.0.2.5"), None),
    )
    .await;
    nsupdate(
        &bind,
        "example.test",
        &[format!("update add {name}. 120 A 192.0.2.99")],
    );
    let fresh = format!("{}.example.test", unique("plan"));
    let alias = format!("{}.example.test", unique("plan"));
    app.completed(
        "create",
        &body("acct-p", "CNAME", &alias, Some("target.example.test"), None),
    )
    .await;
    let stored_before = app.requests_stored().await;
    let ledger_before = app.records(&name).await;
    let set = |account: &str, domain: &str, targets: &[&str]| {
        json!({"context": {"account_id": account},
               "resource": {"record_type": "A", "domain": domain, "targets": targets,
                            "config": {"ttl": 900}}})
    };

    // Act
    let (status, clean) = app
        .plan(
            "create",
            &body("acct-p", "A", &fresh, Some("192.0.2.7"), None),
        )
        .await;
    let (_, unmanaged) = app
        .plan(
            "create",
            &body("acct-p", "A", &name, Some("192.0.2.6"), None),
        )
        .await;
    let (_, theirs) = app
        .plan(
            "create",
            &body("acct-q", "A", &name, Some("192.0.2.6"), None),
        )
        .await;
    let (_, cname) = app
        .plan(
            "create",
            &body("acct-p", "CNAME", &name, Some("target.example.test"), None),
        )
        .await;
    let (_, at_alias) = app
        .plan(
            "create",
            &body("acct-p", "TXT", &alias, Some("hello"), None),
        )
        .await;
    let (_, absent) = app
        .plan(
            "delete",
            &body("acct-p", "A", &name, Some("192.0.2.77"), None),
        )
        .await;
    let (_, replace_clean) = app
        .plan(
            "replace",
            &set("acct-p", &fresh, &["192.0.2.8", "192.0.2.9"]),
        )
        .await;
    let (_, replace_unmanaged) = app
        .plan("replace", &set("acct-p", &name, &["192.0.2.8"]))
        .await;
    let (_, replace_theirs) = app
        .plan("replace", &set("acct-q", &name, &["192.0.2.8"]))
        .await;

    // Assert: a clean plan, with nothing before and the record after, read from the primary.
    assert_eq!(status, 200, "{clean}");
    assert_eq!(clean["dry_run"], true);
    let item = &clean["plan"][0];
    assert_eq!(
        (&item["domain"], &item["record_type"], &item["read_from"]),
        (&json!(fresh), &json!("A"), &json!("server")),
        "{clean}"
    );
    assert_eq!(item["before"], Value::Null, "{clean}");
    assert_eq!(item["after"], json!({"ttl": 120, "records": ["192.0.2.7"]}));
    assert_eq!(kinds(&clean), Vec::<&str>::new());
    // Each conflict, with the live RRset as before.
    assert_eq!(kinds(&unmanaged), ["unmanaged"], "{unmanaged}");
    let before = &unmanaged["plan"][0]["before"];
    let mut held: Vec<&str> = before["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    held.sort_unstable();
    assert_eq!(held, ["192.0.2.5", "192.0.2.99"], "{unmanaged}");
    assert!(
        unmanaged["plan"][0]["conflicts"][0]["message"]
            .as_str()
            .unwrap()
            .contains("192.0.2.99"),
        "{unmanaged}"
    );
    assert_eq!(
        kinds(&theirs),
        ["owned_by_another_account", "unmanaged"],
        "{theirs}"
    );
    assert!(kinds(&cname).contains(&"cname_exclusive"), "{cname}");
    assert_eq!(kinds(&at_alias), ["cname_exclusive"], "{at_alias}");
    assert_eq!(at_alias["plan"][0]["before"], Value::Null, "{at_alias}");
    assert_eq!(kinds(&absent), ["absent"], "{absent}");
    // A replace: the whole new set after; the records made outside dnsorch, and another
    // account's RRset, in the way.
    assert_eq!(kinds(&replace_clean), Vec::<&str>::new(), "{replace_clean}");
    assert_eq!(
        replace_clean["plan"][0]["after"],
        json!({"ttl": 900, "records": ["192.0.2.8", "192.0.2.9"]})
    );
    assert_eq!(
        kinds(&replace_unmanaged),
        ["unmanaged"],
        "{replace_unmanaged}"
    );
    assert_eq!(
        replace_unmanaged["plan"][0]["before"]["records"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{replace_unmanaged}"
    );
    assert_eq!(
        kinds(&replace_theirs),
        ["owned_by_another_account", "unmanaged"],
        "{replace_theirs}"
    );
    // Nothing changed: BIND holds what it held, and no request was stored.
    let mut live = dig(bind.port, &name, "A");
    live.sort_unstable();
    assert_eq!(live, ["192.0.2.5", "192.0.2.99"]);
    assert!(dig(bind.port, &fresh, "A").is_empty());
    assert!(dig(bind.port, &name, "CNAME").is_empty());
    assert_eq!(dig(bind.port, &alias, "TXT"), ["target.example.test."]);
    assert_eq!(app.requests_stored().await, stored_before);
    assert_eq!(app.records(&name).await, ledger_before);
    assert!(app.records(&fresh).await.is_empty());
}
