//! Real provisioning against a real BIND (`named`, started by `scripts/test.sh` with the zones
//! `example.test` and `other.test` and a TSIG key) and a real `ansible-playbook`: every change
//! is checked with `dig` at the server, independently of dnsorch's own verification. Each test
//! uses owner names of its own, so the tests share the server safely; the test that stops the
//! server starts a private one. The rfc2136 battery (every record type, delete, CNAME
//! conflicts, a wrong key, the TTL) is written once against a [`Server`] and run against BIND
//! here and against Knot DNS in [`knot`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dnsorch::config::Settings;
use dnsorch::startup::Application;
use dnsorch::store::RequestStore;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

#[path = "../support/client.rs"]
mod client;
#[path = "../support/settings.rs"]
mod support_settings;

mod batching;
mod change_sets;
mod fencing;
mod forged;
mod knot;
mod ownership;
mod plan;
mod powerdns;
mod processes;
mod replace;
mod revert;
mod secrets;
mod unknown;
mod webhook;

use client::{client_with, first_run_admin_token};

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with scripts/test.sh"))
}

/// A DNS server taking TSIG-signed updates for `example.test` and `other.test` with the key
/// `dnsorch-test`: its port and key files (the shared BIND or Knot, or a private instance).
struct Server {
    port: u16,
    secret_file: String,
    key_file: String,
}

/// A UDP socket and a TCP listener on the same free loopback port, as a DNS server has. The
/// port the UDP socket got may be taken for TCP by another process: then another is tried.
async fn dns_sockets() -> (tokio::net::UdpSocket, tokio::net::TcpListener) {
    for _ in 0..100 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = udp.local_addr().unwrap();
        match tokio::net::TcpListener::bind(address).await {
            Ok(tcp) => return (udp, tcp),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => panic!("cannot listen on {address}: {e}"),
        }
    }
    panic!("no loopback port free for both UDP and TCP after 100 tries")
}

/// The shared BIND (scripts/lib/bind.sh).
fn shared_bind() -> Server {
    Server {
        port: env("TEST_BIND_PORT").parse().unwrap(),
        secret_file: env("TEST_BIND_SECRET_FILE"),
        key_file: env("TEST_BIND_KEY_FILE"),
    }
}

/// The shared Knot DNS (scripts/lib/knot.sh).
fn shared_knot() -> Server {
    Server {
        port: env("TEST_KNOT_PORT").parse().unwrap(),
        secret_file: env("TEST_KNOT_SECRET_FILE"),
        key_file: env("TEST_KNOT_KEY_FILE"),
    }
}

fn playbook(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("playbooks")
        .join(name)
}

/// A zones file: `example.test` by rfc2136 with the secret in `secret_file`, `other.test` by
/// the ansible playbook `playbook`.
fn zones_file(dir: &TempDir, bind: &Server, secret_file: &str, playbook: &Path) -> PathBuf {
    let port = bind.port;
    let text = format!(
        r#"{rfc2136}
[zones."other.test"]
backend = "ansible"
playbook = "{playbook}"
ansible_playbook = "{program}"
timeout_seconds = 120
verify_server = "127.0.0.1:{port}"
verify_timeout_seconds = 5
vars = {{ dns_server = "127.0.0.1", dns_port = {port}, tsig_key_file = "{key_file}" }}
"#,
        rfc2136 = rfc2136_zone("example.test", port, secret_file),
        playbook = playbook.display(),
        program = env("TEST_ANSIBLE_PLAYBOOK"),
        key_file = bind.key_file,
    );
    let path = dir.path().join("dnsorch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A zones file's table for `zone` by rfc2136 at 127.0.0.1:`port` (verified there too, as a
/// `verify_servers` entry) with the key `dnsorch-test` and its secret in `secret_file`.
fn rfc2136_zone(zone: &str, port: u16, secret_file: &str) -> String {
    format!(
        r#"
[zones."{zone}"]
backend = "rfc2136"
server = "127.0.0.1:{port}"
key_name = "dnsorch-test"
key_algorithm = "hmac-sha256"
key_secret_file = "{secret_file}"
timeout_seconds = 2
verify_timeout_seconds = 5
verify_servers = ["127.0.0.1:{port}"]
"#
    )
}

/// The all-in-one app over the zones file, with background workers.
struct App {
    address: String,
    client: reqwest::Client,
    store: Arc<dyn RequestStore>,
    shutdown: CancellationToken,
    /// The app's run, awaited by [`App::stop`].
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: TempDir,
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn spawn_app(configure: impl FnOnce(&TempDir, &mut Settings)) -> App {
    let dir = TempDir::new().unwrap();
    let mut settings = Settings {
        worker_concurrency: 4,
        max_attempts: 3,
        retry_base_seconds: Duration::from_millis(100),
        retry_max_seconds: Duration::from_millis(300),
        ..support_settings::test_settings(&dir)
    };
    configure(&dir, &mut settings);
    let app = Application::build(settings).await.expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let store = app.store();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    App {
        address,
        client: client_with(&admin_token(&dir)),
        store,
        shutdown,
        running: Some(running),
        _dir: dir,
    }
}

/// The first run's admin token, written beside the database (admins may act for any
/// account, as these tests do).
fn admin_token(dir: &TempDir) -> String {
    first_run_admin_token(dir.path()).expect("the first run wrote dnsorch-admin.token")
}

/// The app over the shared BIND, with its real key.
async fn spawn_dns_app() -> App {
    spawn_dns_app_at(&shared_bind()).await
}

/// The app over `server`, with its real key.
async fn spawn_dns_app_at(server: &Server) -> App {
    spawn_app(|dir, settings| {
        settings.dnsorch_config = Some(zones_file(
            dir,
            server,
            &server.secret_file,
            &playbook("nsupdate.yml"),
        ));
    })
    .await
}

fn body(
    account: &str,
    record_type: &str,
    domain: &str,
    target: Option<&str>,
    priority: Option<u16>,
) -> Value {
    let mut resource = json!({"record_type": record_type, "domain": domain});
    if let Some(target) = target {
        resource["target"] = json!(target);
    }
    resource["config"] = json!({"ttl": 120});
    if let Some(priority) = priority {
        resource["config"]["priority"] = json!(priority);
    }
    json!({"context": {"account_id": account}, "resource": resource})
}

impl App {
    /// Shuts the app down and waits until it has stopped (its work in flight finished, or
    /// released after `SHUTDOWN_GRACE_SECONDS`).
    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.await.unwrap().unwrap();
        }
    }

    async fn post(&self, operation: &str, body: &Value) -> (reqwest::StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/api/v1/dns/{operation}", self.address))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// Posts and waits until the request is COMPLETED or FAILED; returns the request.
    async fn apply(&self, operation: &str, body: &Value) -> Value {
        let (status, request) = self.post(operation, body).await;
        assert_eq!(status, 202, "{request}");
        self.finished(request["request_id"].as_str().unwrap()).await
    }

    /// Posts, waits, and asserts the request COMPLETED; returns it.
    async fn completed(&self, operation: &str, body: &Value) -> Value {
        let request = self.apply(operation, body).await;
        assert_completed(&request);
        request
    }

    async fn finished(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let request: Value = self
                .client
                .get(format!("{}/api/v1/dns/requests/{id}", self.address))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if matches!(request["status"].as_str(), Some("COMPLETED" | "FAILED")) {
                return request;
            }
            assert!(
                Instant::now() < deadline,
                "request {id} did not finish: {request}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn log_of(request: &Value) -> String {
    request["log_messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_completed(request: &Value) {
    assert_eq!(request["status"], "COMPLETED", "{}", log_of(request));
}

/// `dig +norecurse +short` at the server.
fn dig(port: u16, name: &str, record_type: &str) -> Vec<String> {
    let output = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+norecurse",
            "+short",
            "+time=2",
            "+tries=2",
        ])
        .args([name, record_type])
        .output()
        .expect("dig runs (bind9-dnsutils)");
    assert!(output.status.success(), "dig failed: {output:?}");
    let mut lines: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// `dig` with the TTL: the answer lines as `ttl rdata`.
fn dig_ttl(port: u16, name: &str, record_type: &str) -> Vec<String> {
    dig_section(port, name, record_type, "+answer")
}

/// The lines of one section of `dig`'s answer (`+answer`, `+authority`) as `ttl rdata`.
fn dig_section(port: u16, name: &str, record_type: &str, section: &str) -> Vec<String> {
    let output = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+norecurse",
            "+noall",
            section,
        ])
        .args([name, record_type])
        .output()
        .unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            format!("{} {}", fields[1], fields[4..].join(" "))
        })
        .collect()
}

/// A child process killed if the test panics before stopping it.
struct KilledOnDrop(Option<std::process::Child>);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback TCP port free at the time of asking, for a server a test starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Policies for a token of one account: read, create and delete under both zones. A token
/// without policies may change nothing, and a grant that lists no types never covers a
/// zone's apex, NS and CAA records or `_acme-challenge` names, so the tests use names under
/// the apex.
fn zone_policies() -> Value {
    let all = ["read", "create", "delete"];
    json!([
        {"suffix": "example.test", "permissions": all},
        {"suffix": "other.test", "permissions": all},
    ])
}

/// Sends `updates` (nsupdate lines, e.g. `update add …`) to the server `bind` for `zone`,
/// signed with its key: a change made behind dnsorch's back.
fn nsupdate(bind: &Server, zone: &str, updates: &[String]) {
    use std::io::Write as _;
    let mut child = Command::new("nsupdate")
        .args(["-k", &bind.key_file])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nsupdate runs (bind9-dnsutils)");
    let script = format!(
        "server 127.0.0.1 {}\nzone {zone}.\n{}\nsend\n",
        bind.port,
        updates.join("\n")
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "nsupdate failed: {output:?}");
}

impl App {
    /// An `App` sending the secret of a new token for `account` (made with this app's admin
    /// token, with [`zone_policies`]): no admin, so the token's policies and account apply.
    async fn for_account(&self, account: &str) -> Self {
        let (status, token) = self
            .post_json(
                "/api/v1/tokens",
                &json!({"account": account, "name": format!("{account}-token"),
                        "policies": zone_policies()}),
            )
            .await;
        assert_eq!(status, 201, "{token}");
        Self {
            address: self.address.clone(),
            client: client_with(token["secret"].as_str().unwrap()),
            store: self.store.clone(),
            shutdown: CancellationToken::new(),
            running: None,
            _dir: TempDir::new().unwrap(),
        }
    }

    /// The ledger's records at `domain` (all accounts for an admin), as the API lists them.
    async fn records(&self, domain: &str) -> Vec<Value> {
        let (status, page) = self
            .get_text(&format!("/api/v1/dns/records?domain={domain}&limit=500"))
            .await;
        assert_eq!(status, 200, "{page}");
        let page: Value = serde_json::from_str(&page).unwrap();
        page["items"].as_array().unwrap().clone()
    }

    /// Every request recorded for `account` (needs an admin token).
    async fn requests_of(&self, account: &str) -> Vec<Value> {
        let (status, page) = self
            .get_text(&format!(
                "/api/v1/dns/requests?account_id={account}&limit=500"
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        let page: Value = serde_json::from_str(&page).unwrap();
        page["items"].as_array().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_type_is_created_in_bind_and_seen_by_a_query() {
    every_record_type_is_created_and_seen_by_a_query_at(&shared_bind()).await;
}

/// Each record type created at `server` by the rfc2136 backend, verified there (the primary
/// and `verify_servers`), seen by `dig` and held by the ledger. The NS records delegate a
/// name, so the server answers them as a referral (in the authority section).
async fn every_record_type_is_created_and_seen_by_a_query_at(server: &Server) {
    let app = spawn_dns_app_at(server).await;
    let port = server.port;
    let host = unique("t");
    let long_text = "v".repeat(300);
    let cases = [
        (
            "A",
            format!("{host}.example.test"),
            "192.0.2.10",
            None,
            vec!["192.0.2.10".to_owned()],
        ),
        (
            "AAAA",
            format!("{host}.example.test"),
            "2001:db8::10",
            None,
            vec!["2001:db8::10".to_owned()],
        ),
        (
            "CNAME",
            format!("alias-{host}.example.test"),
            "Target.Example.Test",
            None,
            vec!["target.example.test.".to_owned()],
        ),
        (
            "MX",
            format!("{host}.example.test"),
            "mail.example.test",
            Some(10),
            vec!["10 mail.example.test.".to_owned()],
        ),
        (
            "TXT",
            format!("{host}.example.test"),
            long_text.as_str(),
            None,
            vec![format!("\"{}\" \"{}\"", "v".repeat(255), "v".repeat(45))],
        ),
        (
            "SRV",
            format!("_sip._tcp.{host}.example.test"),
            "5 5060 sip.example.test",
            Some(10),
            vec!["10 5 5060 sip.example.test.".to_owned()],
        ),
        (
            "CAA",
            format!("{host}.example.test"),
            "0 issue \"ca.example\"",
            None,
            vec!["0 issue \"ca.example\"".to_owned()],
        ),
        (
            "PTR",
            format!("{host}.example.test"),
            "Host.Example.Test",
            None,
            vec!["host.example.test.".to_owned()],
        ),
        (
            "NS",
            format!("deleg-{host}.example.test"),
            "ns1.elsewhere.example",
            None,
            vec!["120 ns1.elsewhere.example.".to_owned()],
        ),
    ];
    for (record_type, domain, target, priority, expected) in cases {
        let request = app
            .apply(
                "create",
                &body("acct-dns", record_type, &domain, Some(target), priority),
            )
            .await;
        assert_completed(&request);
        assert!(request["verified_at"].is_string(), "{request}");
        assert_eq!(
            (&request["zone"], &request["backend"]),
            (&json!("example.test"), &json!("rfc2136"))
        );
        let log = log_of(&request);
        // The primary, then each verify_servers entry (here the same server again).
        assert!(log.contains("(primary)"), "{log}");
        assert_eq!(
            log.matches(&format!("verified at 127.0.0.1:{port} after"))
                .count(),
            2,
            "{log}"
        );
        let seen = match record_type {
            "NS" => dig_section(port, &domain, record_type, "+authority"),
            _ => dig(port, &domain, record_type),
        };
        let seen: Vec<String> = seen.into_iter().map(|s| s.to_lowercase()).collect();
        assert_eq!(seen, expected, "{record_type} {domain}");
    }
    // The ledger holds each of them.
    let records: Value = app
        .client
        .get(format!(
            "{}/api/v1/dns/records?account_id=acct-dns&limit=100",
            app.address
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let zoned: Value = app
        .client
        .get(format!(
            "{}/api/v1/dns/records?zone=example.test&account_id=acct-dns&limit=100",
            app.address
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(zoned["items"].as_array().unwrap().len() >= 9, "{zoned}");
    let mine = records["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["domain"].as_str().unwrap().contains(&host))
        .count();
    assert_eq!(mine, 9, "{records}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_and_a_whole_rrset_are_deleted_from_bind_and_the_ledger() {
    a_record_and_a_whole_rrset_are_deleted_at(&shared_bind()).await;
}

/// One record of three deleted at `server`, then the whole RRset: `dig` sees each state and
/// the ledger ends empty.
async fn a_record_and_a_whole_rrset_are_deleted_at(server: &Server) {
    let app = spawn_dns_app_at(server).await;
    let port = server.port;
    let domain = format!("{}.example.test", unique("del"));
    for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        app.completed("create", &body("acct-del", "A", &domain, Some(ip), None))
            .await;
    }
    assert_eq!(
        dig(port, &domain, "A"),
        ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    );

    let one = app
        .apply(
            "delete",
            &body("acct-del", "A", &domain, Some("192.0.2.2"), None),
        )
        .await;
    assert_completed(&one);
    assert_eq!(dig(port, &domain, "A"), ["192.0.2.1", "192.0.2.3"]);

    let rrset = app
        .apply("delete", &body("acct-del", "A", &domain, None, None))
        .await;
    assert_completed(&rrset);
    assert!(dig(port, &domain, "A").is_empty());
    let records: Value = app
        .client
        .get(format!(
            "{}/api/v1/dns/records?domain={domain}",
            app.address
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(records["items"].as_array().unwrap().len(), 0, "{records}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_tsig_key_fails_with_notauth_and_is_not_retried() {
    a_wrong_tsig_key_fails_with_notauth_and_is_not_retried_at(&shared_bind()).await;
}

/// An update signed with a wrong secret for the key `server` knows: NOTAUTH (BADSIG), failed
/// at the first attempt, nothing at the server.
async fn a_wrong_tsig_key_fails_with_notauth_and_is_not_retried_at(bind: &Server) {
    let app = spawn_app(|dir, settings| {
        let wrong = dir.path().join("wrong.secret");
        std::fs::write(&wrong, "c29tZSBvdGhlciBzZWNyZXQgb2YgMzIgYnl0ZXMhIQ==\n").unwrap();
        settings.dnsorch_config = Some(zones_file(
            dir,
            bind,
            wrong.to_str().unwrap(),
            &playbook("nsupdate.yml"),
        ));
    })
    .await;
    let domain = format!("{}.example.test", unique("badkey"));
    refused_for_the_key(&app, bind.port, &domain, "BADSIG").await;
}

/// Creates an A at `domain`, which the server at `port` refuses for the key: FAILED at the
/// first attempt with NOTAUTH and the TSIG error `tsig_error` in the log, and nothing at the
/// server. Returns the log.
async fn refused_for_the_key(app: &App, port: u16, domain: &str, tsig_error: &str) -> String {
    let request = app
        .apply(
            "create",
            &body("acct-k", "A", domain, Some("192.0.2.9"), None),
        )
        .await;
    assert_eq!(request["status"], "FAILED", "{request}");
    assert_eq!(request["attempts"], 1, "{request}");
    let log = log_of(&request);
    assert!(log.contains("NOTAUTH"), "{log}");
    assert!(log.to_uppercase().contains(tsig_error), "{log}");
    assert!(dig(port, domain, "A").is_empty());
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cname_conflict_fails_with_a_clear_message() {
    a_cname_conflict_fails_with_a_clear_message_at(&shared_bind()).await;
}

/// A CNAME where an A is, and a TXT where a CNAME is, each fail at `server` with a message
/// that says why, and neither is there.
async fn a_cname_conflict_fails_with_a_clear_message_at(server: &Server) {
    let app = spawn_dns_app_at(server).await;
    let port = server.port;
    let domain = format!("{}.example.test", unique("cn"));
    app.completed(
        "create",
        &body("acct-c", "A", &domain, Some("192.0.2.5"), None),
    )
    .await;

    let cname = app
        .apply(
            "create",
            &body(
                "acct-c",
                "CNAME",
                &domain,
                Some("elsewhere.example.test"),
                None,
            ),
        )
        .await;
    assert_eq!(cname["status"], "FAILED", "{cname}");
    assert!(
        log_of(&cname).contains("a CNAME must be the only record"),
        "{}",
        log_of(&cname)
    );
    assert!(dig(port, &domain, "CNAME").is_empty());

    let alias = format!("{}.example.test", unique("cn"));
    app.completed(
        "create",
        &body("acct-c", "CNAME", &alias, Some("target.example.test"), None),
    )
    .await;
    let txt = app
        .apply(
            "create",
            &body("acct-c", "TXT", &alias, Some("hello"), None),
        )
        .await;
    assert_eq!(txt["status"], "FAILED", "{txt}");
    assert!(log_of(&txt).contains("has a CNAME"), "{}", log_of(&txt));
    // dig shows the CNAME when asked for TXT at an alias; the TXT itself must not be there.
    assert_eq!(dig(port, &alias, "TXT"), ["target.example.test."]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_then_a_delete_posted_back_to_back_leave_the_name_absent() {
    let app = spawn_dns_app().await;
    let port = shared_bind().port;
    let domain = format!("{}.example.test", unique("order"));
    let (created, create) = app
        .post(
            "create",
            &body("acct-o", "A", &domain, Some("192.0.2.77"), None),
        )
        .await;
    let (deleted, delete) = app
        .post(
            "delete",
            &body("acct-o", "A", &domain, Some("192.0.2.77"), None),
        )
        .await;
    assert_eq!((created.as_u16(), deleted.as_u16()), (202, 202));
    let create = app.finished(create["request_id"].as_str().unwrap()).await;
    let delete = app.finished(delete["request_id"].as_str().unwrap()).await;
    assert_completed(&create);
    assert_completed(&delete);
    assert!(dig(port, &domain, "A").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_another_accounts_record_is_refused_at_intake_and_leaves_it() {
    // One owner per RRset: the RRset is the owner's from its first create, so another
    // account's delete (of the record, or of the whole RRset) is refused before anything is
    // stored, even when an admin submits it for that account.
    let app = spawn_dns_app().await;
    let port = shared_bind().port;
    let domain = format!("{}.example.test", unique("own"));
    app.completed(
        "create",
        &body("owner", "A", &domain, Some("192.0.2.40"), None),
    )
    .await;

    for target in [Some("192.0.2.40"), None] {
        let (status, answer) = app
            .post("delete", &body("intruder", "A", &domain, target, None))
            .await;
        assert_eq!(status, 403, "{target:?}: {answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .contains("belongs to another account"),
            "{answer}"
        );
    }
    assert_eq!(dig(port, &domain, "A"), ["192.0.2.40"]);
    assert!(app.requests_of("intruder").await.is_empty());
    let ledger = app.records(&domain).await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0]["account_id"], "owner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rrset_delete_refuses_records_dnsorch_does_not_own() {
    an_rrset_delete_refuses_records_dnsorch_does_not_own_at(&shared_bind()).await;
}

/// A record added at `server` by nsupdate beside dnsorch's: the RRset delete fails naming it
/// (the plan read the RRset at the server) and both records stay.
async fn an_rrset_delete_refuses_records_dnsorch_does_not_own_at(bind: &Server) {
    let app = spawn_dns_app_at(bind).await;
    let domain = format!("{}.example.test", unique("foreign"));
    app.completed(
        "create",
        &body("acct-f", "A", &domain, Some("192.0.2.60"), None),
    )
    .await;
    // A record added behind dnsorch's back.
    nsupdate(
        bind,
        "example.test",
        &[format!("update add {domain}. 120 IN A 192.0.2.61")],
    );

    let rrset = app
        .apply("delete", &body("acct-f", "A", &domain, None, None))
        .await;
    assert_eq!(rrset["status"], "FAILED", "{rrset}");
    assert!(log_of(&rrset).contains("192.0.2.61"), "{}", log_of(&rrset));
    assert_eq!(dig(bind.port, &domain, "A"), ["192.0.2.60", "192.0.2.61"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rrset_ttl_follows_the_latest_change() {
    the_rrset_ttl_follows_the_latest_change_at(&shared_bind()).await;
}

/// A second record with another TTL retimes the whole RRset at `server`.
async fn the_rrset_ttl_follows_the_latest_change_at(server: &Server) {
    let app = spawn_dns_app_at(server).await;
    let port = server.port;
    let domain = format!("{}.example.test", unique("ttl"));
    app.completed(
        "create",
        &body("acct-t", "A", &domain, Some("192.0.2.1"), None),
    )
    .await;
    let mut second = body("acct-t", "A", &domain, Some("192.0.2.2"), None);
    second["resource"]["config"]["ttl"] = json!(600);
    assert_completed(&app.apply("create", &second).await);
    let mut seen = dig_ttl(port, &domain, "A");
    seen.sort();
    assert_eq!(seen, ["600 192.0.2.1", "600 192.0.2.2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_created_again_with_another_ttl_retime_their_rrset_in_bind() {
    records_created_again_with_another_ttl_retime_their_rrset_at(&shared_bind()).await;
}

/// A record already there created again with another TTL, in an RRset of two and as a CNAME:
/// the request completes and the server holds the RRset with the new TTL. (An added record
/// that is already there is ignored, TTL and all, by Knot, RFC 2136 3.4.2.2, where BIND
/// retimes the RRset: the update deletes and adds it again.)
async fn records_created_again_with_another_ttl_retime_their_rrset_at(server: &Server) {
    let app = spawn_dns_app_at(server).await;
    let port = server.port;
    let domain = format!("{}.example.test", unique("again"));
    for ip in ["192.0.2.1", "192.0.2.2"] {
        app.completed("create", &body("acct-t", "A", &domain, Some(ip), None))
            .await;
    }
    let mut again = body("acct-t", "A", &domain, Some("192.0.2.2"), None);
    again["resource"]["config"]["ttl"] = json!(600);
    app.completed("create", &again).await;
    let mut seen = dig_ttl(port, &domain, "A");
    seen.sort();
    assert_eq!(seen, ["600 192.0.2.1", "600 192.0.2.2"]);

    let alias = format!("{}.example.test", unique("again"));
    let target = Some("target.example.test");
    app.completed("create", &body("acct-t", "CNAME", &alias, target, None))
        .await;
    let mut again = body("acct-t", "CNAME", &alias, target, None);
    again["resource"]["config"]["ttl"] = json!(900);
    app.completed("create", &again).await;
    assert_eq!(dig_ttl(port, &alias, "CNAME"), ["900 target.example.test."]);
    let ledger = app.records(&alias).await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0]["ttl"], 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_outside_every_zone_is_refused_at_intake() {
    let app = spawn_dns_app().await;
    let (status, answer) = app
        .post(
            "create",
            &body("acct-z", "A", "www.example.org", Some("192.0.2.1"), None),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer.to_string().contains("resource.domain"), "{answer}");
    assert!(answer.to_string().contains("example.test"), "{answer}");
    assert!(
        app.store
            .list(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_stopped_means_retries_then_failed() {
    // A private BIND, stopped before the request.
    let instance = env("TEST_BIND_INSTANCE");
    let bind_dir = TempDir::new().unwrap();
    let port = free_port();
    let started = Command::new(&instance)
        .args([
            "start",
            bind_dir.path().to_str().unwrap(),
            &port.to_string(),
        ])
        .output()
        .unwrap();
    assert!(started.status.success(), "{started:?}");
    let vars: std::collections::HashMap<String, String> = String::from_utf8(started.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let bind = Server {
        port,
        secret_file: vars["BIND_SECRET_FILE"].clone(),
        key_file: vars["BIND_KEY_FILE"].clone(),
    };
    let app = spawn_app(|dir, settings| {
        settings.dnsorch_config = Some(zones_file(
            dir,
            &bind,
            &bind.secret_file.clone(),
            &playbook("nsupdate.yml"),
        ));
    })
    .await;
    let stopped = Command::new(&instance)
        .args(["stop", bind_dir.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(stopped.success());

    let request = app
        .apply(
            "create",
            &body("acct-s", "A", "down.example.test", Some("192.0.2.8"), None),
        )
        .await;
    assert_eq!(request["status"], "FAILED", "{request}");
    assert_eq!(request["attempts"], 3, "{request}");
    let log = log_of(&request);
    assert_eq!(log.matches("retrying in").count(), 2, "{log}");
    assert!(log.contains("no attempts left"), "{log}");
    assert!(log.contains(&format!("127.0.0.1:{port}")), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ansible_backend_applies_a_record_that_a_query_sees() {
    let app = spawn_dns_app().await;
    let port = shared_bind().port;
    let domain = format!("{}.other.test", unique("pb"));
    // Template syntax in client data stays data.
    let text = "{{ lookup('pipe', 'id') }}";
    let request = app
        .apply("create", &body("acct-a", "TXT", &domain, Some(text), None))
        .await;
    assert_completed(&request);
    assert_eq!(request["backend"], "ansible");
    let log = log_of(&request);
    assert!(log.contains("ansible-playbook"), "{log}");
    assert!(log.contains("verified at 127.0.0.1"), "{log}");
    assert_eq!(dig(port, &domain, "TXT"), [format!("\"{text}\"")]);

    let delete = app
        .apply("delete", &body("acct-a", "TXT", &domain, Some(text), None))
        .await;
    assert_completed(&delete);
    assert!(dig(port, &domain, "TXT").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_playbook_ends_failed_with_its_output_in_the_log() {
    let bind = shared_bind();
    let app = spawn_app(|dir, settings| {
        settings.dnsorch_config = Some(zones_file(
            dir,
            &bind,
            &bind.secret_file,
            &playbook("fail.yml"),
        ));
    })
    .await;
    let domain = format!("{}.other.test", unique("fail"));
    let request = app
        .apply(
            "create",
            &body("acct-a", "A", &domain, Some("192.0.2.3"), None),
        )
        .await;
    assert_eq!(request["status"], "FAILED", "{request}");
    assert_eq!(request["attempts"], 1, "{request}");
    assert!(
        log_of(&request).contains("failed on purpose"),
        "{}",
        log_of(&request)
    );
}

/// An `App` for the `dnsorch run` process serving at `address` from `dir`, sending `token`.
async fn process_app(address: &str, dir: &TempDir, token: &str) -> App {
    App {
        address: format!("http://{address}"),
        client: client_with(token),
        store: Arc::new(
            dnsorch::store::SqliteStore::open(
                &format!("sqlite://{}/dnsorch.db?mode=rwc", dir.path().display()),
                Duration::from_secs(2),
            )
            .await
            .unwrap(),
        ),
        shutdown: CancellationToken::new(),
        running: None,
        _dir: TempDir::new().unwrap(),
    }
}

impl App {
    /// `GET path`: the status and the answer's text.
    async fn get_text(&self, path: &str) -> (reqwest::StatusCode, String) {
        let answer = self
            .client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap();
        (answer.status(), answer.text().await.unwrap())
    }

    /// `POST path` with `body`: the status and the answer as JSON.
    async fn post_json(&self, path: &str, body: &Value) -> (reqwest::StatusCode, Value) {
        let answer = self
            .client
            .post(format!("{}{path}", self.address))
            .json(body)
            .send()
            .await
            .unwrap();
        (answer.status(), answer.json().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_line_or_an_api_answer() {
    // `dnsorch run` as a process logging everything (trace). An API token is created over
    // the API, used for a change through each backend, rotated, and its new secret used for
    // another change and every read endpoint; then the TSIG secret and every token secret
    // are looked for in the logs and in every answer but the one that showed the secret.
    let bind = shared_bind();
    let tsig_secret = std::fs::read_to_string(&bind.secret_file)
        .unwrap()
        .trim()
        .to_owned();
    let dir = TempDir::new().unwrap();
    let zones = zones_file(&dir, &bind, &bind.secret_file, &playbook("nsupdate.yml"));
    // Logs go to a file: a pipe nobody reads fills up and stalls the process.
    let log_path = dir.path().join("dnsorch.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_dnsorch"))
        .arg("run")
        .current_dir(dir.path())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/dnsorch.db?mode=rwc", dir.path().display()),
        )
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("DNSORCH_CONFIG", &zones)
        .env("LOG_LEVEL", "trace")
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let mut child = KilledOnDrop(Some(child));
    // The address it bound (port 0), from its "dnsorch is serving" log line.
    let deadline = Instant::now() + Duration::from_secs(60);
    let address = loop {
        let logs = std::fs::read_to_string(&log_path).unwrap_or_default();
        let serving = logs
            .lines()
            .filter(|l| l.contains("dnsorch is serving"))
            .find_map(|l| serde_json::from_str::<Value>(l).ok());
        if let Some(line) = serving {
            break line["address"].as_str().unwrap().to_owned();
        }
        let exited = child.0.as_mut().unwrap().try_wait().unwrap();
        if exited.is_some() || Instant::now() > deadline {
            let tail: Vec<&str> = logs.lines().rev().take(20).collect();
            panic!("dnsorch run did not start ({exited:?}); its last log lines: {tail:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let admin_secret = admin_token(&dir);
    let admin = process_app(&address, &dir, &admin_secret).await;
    // Every answer except the two that show a token's secret.
    let mut answers = String::new();

    // A token made over the API, used for a change through each backend.
    let (status, created) = admin
        .post_json(
            "/api/v1/tokens",
            &json!({"account": "acct-s", "name": "secret-test", "metrics": true,
                    "policies": zone_policies()}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let first_secret = created["secret"].as_str().unwrap().to_owned();
    let token_id = created["id"].as_str().unwrap().to_owned();
    let user = process_app(&address, &dir, &first_secret).await;
    for zone in ["example.test", "other.test"] {
        let domain = format!("{}.{zone}", unique("sec"));
        let request = user
            .apply(
                "create",
                &body("acct-s", "A", &domain, Some("192.0.2.20"), None),
            )
            .await;
        assert_completed(&request);
        assert_eq!(request["submitted_by"]["token_name"], "secret-test");
        answers.push_str(&request.to_string());
    }

    // Rotated over the API: the old secret is refused, the new one used for everything.
    let (status, rotated) = admin
        .post_json(&format!("/api/v1/tokens/{token_id}/rotate"), &json!({}))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let second_secret = rotated["secret"].as_str().unwrap().to_owned();
    let (refused, answer) = user.get_text("/api/v1/dns/requests").await;
    assert_eq!(refused, 401, "{answer}");
    answers.push_str(&answer);
    let user = process_app(&address, &dir, &second_secret).await;
    let domain = format!("{}.example.test", unique("rot"));
    let request = user
        .apply(
            "create",
            &body("acct-s", "A", &domain, Some("192.0.2.21"), None),
        )
        .await;
    assert_completed(&request);
    answers.push_str(&request.to_string());
    for path in [
        "/api/v1/dns/requests",
        "/api/v1/dns/records",
        "/metrics",
        "/readyz",
        "/openapi.json",
    ] {
        let (status, answer) = user.get_text(path).await;
        assert!(status.is_success(), "{path}: {status} {answer}");
        answers.push_str(&answer);
    }
    for path in [
        "/api/v1/tokens".to_owned(),
        format!("/api/v1/tokens/{token_id}"),
        "/metrics".to_owned(),
    ] {
        let (status, answer) = admin.get_text(&path).await;
        assert!(status.is_success(), "{path}: {status} {answer}");
        answers.push_str(&answer);
    }

    Command::new("kill")
        .args(["-TERM", &child.0.as_ref().unwrap().id().to_string()])
        .status()
        .unwrap();
    let mut stopping = child.0.take().unwrap();
    tokio::task::spawn_blocking(move || stopping.wait().unwrap())
        .await
        .unwrap();
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logs.contains("request accepted"),
        "the logs were not captured"
    );
    assert!(logs.contains("TRACE"), "trace logging was not on");
    assert!(
        answers.contains("secret-test"),
        "the answers were not captured"
    );
    assert!(
        logs.contains(&token_id),
        "the token's creation was not logged"
    );
    for (what, secret) in [
        ("the TSIG secret", &tsig_secret),
        ("the first-run admin token", &admin_secret),
        ("the created token", &first_secret),
        ("the rotated token", &second_secret),
    ] {
        let lines: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains(secret.as_str()))
            .collect();
        assert!(lines.is_empty(), "{what} is in the logs: {lines:#?}");
        assert!(
            !answers.contains(secret.as_str()),
            "{what} is in an API answer"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_share_update_messages_and_a_conflict_fails_alone() {
    // Arrange: a name that already holds an A record, so a CNAME there must fail. Sixteen
    // workers: each create reads the RRset before its update, so with only a few workers the
    // updates could reach the sender one at a time on a busy machine.
    let bind = shared_bind();
    let app = spawn_app(|dir, settings| {
        settings.worker_concurrency = 16;
        settings.dnsorch_config = Some(zones_file(
            dir,
            &bind,
            &bind.secret_file,
            &playbook("nsupdate.yml"),
        ));
    })
    .await;
    let port = bind.port;
    let run = unique("batch");
    let taken = format!("taken-{run}.example.test");
    app.completed(
        "create",
        &body("acct-b", "A", &taken, Some("192.0.2.1"), None),
    )
    .await;

    // Act: 40 creates posted at once, one of them the conflicting CNAME.
    let bodies: Vec<Value> = (0..40)
        .map(|i| {
            if i == 20 {
                body(
                    "acct-b",
                    "CNAME",
                    &taken,
                    Some("elsewhere.example.test"),
                    None,
                )
            } else {
                let domain = format!("h{i}-{run}.example.test");
                body("acct-b", "A", &domain, Some("192.0.2.2"), None)
            }
        })
        .collect();
    let posted = futures::future::join_all(bodies.iter().map(|b| app.post("create", b))).await;
    let ids: Vec<String> = posted
        .into_iter()
        .map(|(status, request)| {
            assert_eq!(status, 202, "{request}");
            request["request_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let mut finished = Vec::new();
    for id in &ids {
        finished.push(app.finished(id).await);
    }

    // Assert: every A record is in BIND, the CNAME alone failed, and updates were shared.
    for (i, request) in finished.iter().enumerate() {
        if i == 20 {
            assert_eq!(request["status"], "FAILED", "{request}");
            assert!(log_of(request).contains("a CNAME must be the only record"));
        } else {
            assert_completed(request);
            assert_eq!(
                dig(port, &format!("h{i}-{run}.example.test"), "A"),
                ["192.0.2.2"]
            );
        }
    }
    assert!(dig(port, &taken, "CNAME").is_empty());
    let shared = finished
        .iter()
        .filter(|r| log_of(r).contains("changes in one message"))
        .count();
    assert!(shared > 0, "no update carried more than one change");
}
