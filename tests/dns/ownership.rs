//! One owner per RRset, and records made outside dnsorch, against the real BIND: another
//! account's changes to an owned RRset are refused at intake, a race for an unowned RRset
//! leaves one owner, a record added with `nsupdate` stops creates until an admin adopts the
//! RRset, and adoption on an ansible zone needs the zone's `verify_server`. Every outcome is
//! checked at the server with `dig`, and in the ledger.

use super::*;

/// The body of an adoption: like a create's, without target or config.
fn adopt_body(account: &str, record_type: &str, domain: &str) -> Value {
    json!({
        "context": {"account_id": account},
        "resource": {"record_type": record_type, "domain": domain},
    })
}

/// `dig_ttl`, sorted: `ttl rdata` per record.
fn live_with_ttl(port: u16, domain: &str, record_type: &str) -> Vec<String> {
    let mut seen = dig_ttl(port, domain, record_type);
    seen.sort();
    seen
}

/// The ledger's records as `account target ttl`, sorted.
fn ledger_rows(records: &[Value]) -> Vec<String> {
    let mut rows: Vec<String> = records
        .iter()
        .map(|r| format!("{} {} {}", r["account_id"], r["target"], r["ttl"]))
        .collect();
    rows.sort();
    rows
}

fn assert_not_owner(status: reqwest::StatusCode, answer: &Value, what: &str) {
    assert_eq!(status, 403, "{what}: {answer}");
    assert_eq!(answer["error"], "forbidden", "{what}: {answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("belongs to another account")),
        "{what}: {answer}"
    );
}

impl App {
    /// The requests recorded for `account` at `domain` (needs an admin token).
    async fn requests_at(&self, account: &str, domain: &str) -> Vec<Value> {
        self.requests_of(account)
            .await
            .into_iter()
            .filter(|r| r["domain"] == domain)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_account_can_neither_add_to_nor_retime_nor_delete_from_an_owned_rrset() {
    // Arrange: account A owns an RRset of two records (TTL 120), made with its own token.
    let app = spawn_dns_app().await;
    let port = shared_bind().port;
    let (a, b) = (
        app.for_account("acct-own-a").await,
        app.for_account("acct-own-b").await,
    );
    let domain = format!("{}.example.test", unique("owned"));
    for ip in ["192.0.2.50", "192.0.2.51"] {
        a.completed("create", &body("acct-own-a", "A", &domain, Some(ip), None))
            .await;
    }
    let before = live_with_ttl(port, &domain, "A");
    assert_eq!(before, ["120 192.0.2.50", "120 192.0.2.51"]);

    // Act: account B, with a token whose policies allow all of this under example.test.
    let mut retime = body("acct-own-b", "A", &domain, Some("192.0.2.50"), None);
    retime["resource"]["config"]["ttl"] = json!(900);
    let attempts = [
        (
            "add a record",
            "create",
            body("acct-own-b", "A", &domain, Some("192.0.2.52"), None),
        ),
        ("change the TTL", "create", retime),
        (
            "delete a record",
            "delete",
            body("acct-own-b", "A", &domain, Some("192.0.2.50"), None),
        ),
        (
            "delete the RRset",
            "delete",
            body("acct-own-b", "A", &domain, None, None),
        ),
    ];
    for (what, operation, change) in &attempts {
        let (status, answer) = b.post(operation, change).await;
        // Assert: each refused at intake, as not B's RRset (not for want of a policy).
        assert_not_owner(status, &answer, what);
    }
    // B's token does work where no one else owns the RRset.
    let elsewhere = format!("{}.example.test", unique("owned-b"));
    b.completed(
        "create",
        &body("acct-own-b", "A", &elsewhere, Some("192.0.2.53"), None),
    )
    .await;

    // Assert: the server, the ledger and the request list are as A left them.
    assert_eq!(live_with_ttl(port, &domain, "A"), before);
    assert_eq!(
        ledger_rows(&app.records(&domain).await),
        [
            "\"acct-own-a\" \"192.0.2.50\" 120",
            "\"acct-own-a\" \"192.0.2.51\" 120"
        ]
    );
    assert!(app.requests_at("acct-own-b", &domain).await.is_empty());
    assert_eq!(dig(port, &elsewhere, "A"), ["192.0.2.53"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_racing_to_create_one_rrset_leave_exactly_one_owner() {
    // Arrange: two accounts with tokens of their own, and an RRset nobody owns.
    let app = spawn_dns_app().await;
    let port = shared_bind().port;
    let accounts = ["acct-race-a", "acct-race-b"];
    let clients = [
        app.for_account(accounts[0]).await,
        app.for_account(accounts[1]).await,
    ];
    let domain = format!("{}.example.test", unique("race"));
    let ips = |account: usize| -> Vec<String> {
        (1..=3)
            .map(|i| format!("192.0.2.{}", 100 * (account + 1) + i))
            .collect()
    };

    // Act: three creates of each account, interleaved and posted at once.
    let changes: Vec<(usize, Value)> = (0..3)
        .flat_map(|i| [0, 1].map(|account| (account, ips(account)[i].clone())))
        .map(|(account, ip)| {
            let change = body(accounts[account], "A", &domain, Some(&ip), None);
            (account, change)
        })
        .collect();
    let posted = futures::future::join_all(
        changes
            .iter()
            .map(|(account, change)| clients[*account].post("create", change)),
    )
    .await;

    // Assert: one account got every request accepted, the other none.
    let statuses = |account: usize| -> Vec<u16> {
        changes
            .iter()
            .zip(&posted)
            .filter(|((a, _), _)| *a == account)
            .map(|(_, (status, _))| status.as_u16())
            .collect()
    };
    let (winner, loser) = match (statuses(0).as_slice(), statuses(1).as_slice()) {
        ([202, 202, 202], [403, 403, 403]) => (0, 1),
        ([403, 403, 403], [202, 202, 202]) => (1, 0),
        other => panic!("not one owner: {other:?}; {posted:?}"),
    };
    for ((account, _), (status, answer)) in changes.iter().zip(&posted) {
        if *account == loser {
            assert_not_owner(*status, answer, accounts[loser]);
        } else {
            let request = app.finished(answer["request_id"].as_str().unwrap()).await;
            assert_completed(&request);
        }
    }
    assert_eq!(dig(port, &domain, "A"), ips(winner));
    let ledger = app.records(&domain).await;
    assert_eq!(ledger.len(), 3, "{ledger:?}");
    assert!(
        ledger.iter().all(|r| r["account_id"] == accounts[winner]),
        "{ledger:?}"
    );
    assert!(app.requests_at(accounts[loser], &domain).await.is_empty());
    // Still the winner's: the loser's next create is refused too.
    let (status, answer) = clients[loser]
        .post(
            "create",
            &body(accounts[loser], "A", &domain, Some("192.0.2.99"), None),
        )
        .await;
    assert_not_owner(status, &answer, "after the race");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_made_behind_dnsorchs_back_blocks_creates_until_an_admin_adopts_the_rrset() {
    // Arrange: two records added with nsupdate, which dnsorch's ledger does not hold.
    let app = spawn_dns_app().await;
    let bind = shared_bind();
    let account = "acct-adopt";
    let user = app.for_account(account).await;
    let domain = format!("{}.example.test", unique("adopt"));
    nsupdate(
        &bind,
        "example.test",
        &[
            format!("update add {domain}. 300 IN A 192.0.2.70"),
            format!("update add {domain}. 300 IN A 192.0.2.71"),
        ],
    );
    assert_eq!(
        live_with_ttl(bind.port, &domain, "A"),
        ["300 192.0.2.70", "300 192.0.2.71"]
    );

    // Act 1: a create into that RRset.
    let blocked = user
        .apply(
            "create",
            &body(account, "A", &domain, Some("192.0.2.72"), None),
        )
        .await;

    // Assert 1: FAILED at once, naming the unmanaged records; nothing changed at the server.
    assert_eq!(blocked["status"], "FAILED", "{blocked}");
    assert_eq!(blocked["attempts"], 1, "{blocked}");
    let log = log_of(&blocked);
    assert!(log.contains("does not manage"), "{log}");
    assert!(
        log.contains("192.0.2.70") && log.contains("192.0.2.71"),
        "{log}"
    );
    assert_eq!(
        live_with_ttl(bind.port, &domain, "A"),
        ["300 192.0.2.70", "300 192.0.2.71"]
    );
    assert!(app.records(&domain).await.is_empty());

    // Act 2: only an admin may adopt; the admin adopts the RRset for the account.
    let (status, refused) = user.post("adopt", &adopt_body(account, "A", &domain)).await;
    assert_eq!(status, 403, "{refused}");
    let (status, adoption) = app.post("adopt", &adopt_body(account, "A", &domain)).await;
    assert_eq!(status, 202, "{adoption}");
    let adoption = app.finished(adoption["request_id"].as_str().unwrap()).await;

    // Assert 2: the ledger holds the live records, for the adopting account.
    assert_completed(&adoption);
    assert_eq!(
        ledger_rows(&app.records(&domain).await),
        [
            "\"acct-adopt\" \"192.0.2.70\" 300",
            "\"acct-adopt\" \"192.0.2.71\" 300"
        ]
    );
    // The account owns the RRset now: another account's create is refused at intake.
    let other = app.for_account("acct-adopt-other").await;
    let (status, answer) = other
        .post(
            "create",
            &body("acct-adopt-other", "A", &domain, Some("192.0.2.73"), None),
        )
        .await;
    assert_not_owner(status, &answer, "another account after the adoption");

    // Act 3 and assert 3: the account's create completes, and its RRset delete removes
    // everything, the adopted records included.
    user.completed(
        "create",
        &body(account, "A", &domain, Some("192.0.2.72"), None),
    )
    .await;
    assert_eq!(
        live_with_ttl(bind.port, &domain, "A"),
        ["120 192.0.2.70", "120 192.0.2.71", "120 192.0.2.72"]
    );
    assert_eq!(app.records(&domain).await.len(), 3);
    user.completed("delete", &body(account, "A", &domain, None, None))
        .await;
    assert!(dig(bind.port, &domain, "A").is_empty());
    assert!(app.records(&domain).await.is_empty());
}

/// A zones file with only `other.test`, by the ansible playbook, without a verify_server.
fn ansible_zone_without_verify_server(dir: &TempDir, bind: &Server) -> PathBuf {
    let text = format!(
        r#"
[zones."other.test"]
backend = "ansible"
playbook = "{playbook}"
ansible_playbook = "{program}"
timeout_seconds = 120
vars = {{ dns_server = "127.0.0.1", dns_port = {port}, tsig_key_file = "{key_file}" }}
"#,
        playbook = playbook("nsupdate.yml").display(),
        program = env("TEST_ANSIBLE_PLAYBOOK"),
        port = bind.port,
        key_file = bind.key_file,
    );
    let path = dir.path().join("dnsorch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopting_on_an_ansible_zone_without_a_verify_server_is_refused_at_intake() {
    // Arrange: a record made outside dnsorch in other.test, applied by ansible with no
    // server to read the RRset from.
    let bind = shared_bind();
    let app = spawn_app(|dir, settings| {
        settings.dnsorch_config = Some(ansible_zone_without_verify_server(dir, &bind));
    })
    .await;
    let domain = format!("{}.other.test", unique("noverify"));
    nsupdate(
        &bind,
        "other.test",
        &[format!("update add {domain}. 300 IN TXT \"made by hand\"")],
    );

    // Act
    let (status, answer) = app
        .post("adopt", &adopt_body("acct-nv", "TXT", &domain))
        .await;

    // Assert: 422 naming the field and why; nothing stored, the record left alone.
    assert_eq!(status, 422, "{answer}");
    let text = answer.to_string();
    assert!(text.contains("resource.domain"), "{text}");
    assert!(text.contains("verify_server"), "{text}");
    assert!(
        app.store
            .list(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(app.records(&domain).await.is_empty());
    assert_eq!(dig(bind.port, &domain, "TXT"), ["\"made by hand\""]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_an_ansible_zone_with_a_verify_server_adoption_reads_the_rrset_there() {
    // Arrange: other.test is applied by ansible and verified at the shared BIND; a TXT record
    // made outside dnsorch.
    let app = spawn_dns_app().await;
    let bind = shared_bind();
    let account = "acct-pb-adopt";
    let user = app.for_account(account).await;
    let domain = format!("{}.other.test", unique("pbadopt"));
    nsupdate(
        &bind,
        "other.test",
        &[format!("update add {domain}. 300 IN TXT \"made by hand\"")],
    );

    // Act and assert: a create is stopped before the playbook runs, naming the record.
    let blocked = user
        .apply(
            "create",
            &body(account, "TXT", &domain, Some("by dnsorch"), None),
        )
        .await;
    assert_eq!(blocked["status"], "FAILED", "{blocked}");
    assert_eq!(blocked["backend"], "ansible", "{blocked}");
    let log = log_of(&blocked);
    assert!(log.contains("made by hand"), "{log}");
    assert!(!log.contains("ansible-playbook"), "the playbook ran: {log}");
    assert_eq!(dig(bind.port, &domain, "TXT"), ["\"made by hand\""]);

    // The adoption reads the RRset at the verify_server into the ledger.
    let (status, adoption) = app
        .post("adopt", &adopt_body(account, "TXT", &domain))
        .await;
    assert_eq!(status, 202, "{adoption}");
    let adoption = app.finished(adoption["request_id"].as_str().unwrap()).await;
    assert_completed(&adoption);
    assert_eq!(
        ledger_rows(&app.records(&domain).await),
        ["\"acct-pb-adopt\" \"made by hand\" 300"]
    );

    // Now the account's create runs the playbook, and its RRset delete removes both.
    user.completed(
        "create",
        &body(account, "TXT", &domain, Some("by dnsorch"), None),
    )
    .await;
    assert_eq!(
        dig(bind.port, &domain, "TXT"),
        ["\"by dnsorch\"", "\"made by hand\""]
    );
    user.completed("delete", &body(account, "TXT", &domain, None, None))
        .await;
    assert!(dig(bind.port, &domain, "TXT").is_empty());
    assert!(app.records(&domain).await.is_empty());
}
