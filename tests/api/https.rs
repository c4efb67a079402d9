//! HTTPS on the API (`TLS_CERT_FILE`, `TLS_KEY_FILE`, `TLS_CLIENT_CA_FILE`), with CAs and
//! certificates the tests make with openssl (for the name `localhost`): a client that trusts
//! the CA is served and one that trusts another is refused; plain HTTP to the port is
//! answered 400 naming https; with a client CA, a client without a certificate is refused at
//! the handshake and one with a certificate still needs its token; a changed certificate is
//! used for new connections while open ones stay.

use std::path::Path;
use std::time::Duration;

use dnsorch::api::tls::Acceptor;
use dnsorch::tls::ServerTls;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::certs::{https_client, make_ca, make_client_cert, make_server_cert};
use crate::helpers::{TestApp, first_run_admin_token, spawn_app_with};

/// A CA (`ca`), another CA (`other-ca`), a server certificate for localhost and a client
/// certificate, both from `ca`.
fn certificates() -> TempDir {
    let dir = TempDir::new().unwrap();
    make_ca(dir.path(), "ca");
    make_ca(dir.path(), "other-ca");
    make_server_cert(dir.path(), "ca");
    make_client_cert(dir.path(), "ca");
    dir
}

/// The app over HTTPS with the certificate in `certs` (and with `client_ca`, requiring
/// client certificates), its `https://localhost:<port>` base URL, and the admin token.
async fn spawn_https(
    certs: &Path,
    client_ca: Option<&str>,
    reload: Duration,
) -> (TestApp, String, String) {
    let app = spawn_app_with(|s| {
        s.tls_cert_file = Some(certs.join("server.crt"));
        s.tls_key_file = Some(certs.join("server.key"));
        s.tls_client_ca_file = client_ca.map(|ca| certs.join(ca));
        s.tls_reload_interval_seconds = reload;
    })
    .await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let token = first_run_admin_token(app.dir.path()).unwrap();
    (app, format!("https://localhost:{port}"), token)
}

fn a_record(domain: &str) -> Value {
    json!({
        "context": {"account_id": "acct-1"},
        "resource": {"record_type": "A", "domain": domain, "target": "192.0.2.10"}
    })
}

/// The text of `/metrics`, asked over HTTPS as the admin.
async fn metrics(base: &str, certs: &TempDir, token: &str) -> String {
    let client = https_client(&certs.path().join("ca.pem"), None, Some(token));
    let response = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

/// How many requests are stored, asked over HTTPS as the admin.
async fn stored(base: &str, certs: &TempDir, ca: &str, token: &str) -> usize {
    let identity = Some((certs.path(), "client"));
    let client = https_client(&certs.path().join(ca), identity, Some(token));
    let response = client
        .get(format!("{base}/api/v1/dns/requests?limit=500"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page: Value = response.json().await.unwrap();
    page["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn https_is_served_to_a_client_that_trusts_the_ca_and_refused_by_one_that_trusts_another() {
    // Arrange
    let certs = certificates();
    let (_app, base, token) = spawn_https(certs.path(), None, Duration::from_secs(10)).await;
    let trusting = https_client(&certs.path().join("ca.pem"), None, Some(&token));
    let distrusting = https_client(&certs.path().join("other-ca.pem"), None, Some(&token));

    // Act
    let accepted = trusting
        .post(format!("{base}/api/v1/dns/create"))
        .json(&a_record("tls.example.test"))
        .send()
        .await
        .unwrap();
    let refused = distrusting
        .post(format!("{base}/api/v1/dns/create"))
        .json(&a_record("not-sent.example.test"))
        .send()
        .await;

    // Assert: the first is accepted over TLS; the second never reached the API (the client
    // refused the server's certificate), so only one request is stored.
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let error = refused.expect_err("a client trusting another CA was served");
    assert!(error.is_connect(), "{error:?}");
    assert_eq!(stored(&base, &certs, "ca.pem", &token).await, 1);
    let metrics = metrics(&base, &certs, &token).await;
    assert!(
        metrics.contains(r#"dnsorch_tls_refused_connections_total{reason="handshake"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn plain_http_to_the_https_port_is_answered_400_naming_https_and_nothing_is_stored() {
    // Arrange
    let certs = certificates();
    let (_app, base, token) = spawn_https(certs.path(), None, Duration::from_secs(10)).await;
    let plain = crate::client::client_with(&token);
    let url = base.replacen("https://", "http://", 1);

    // Act
    let response = plain
        .post(format!("{url}/api/v1/dns/create"))
        .json(&a_record("plain.example.test"))
        .send()
        .await
        .expect("plain HTTP gets an answer, not a hang or a reset");

    // Assert
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "https_required", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("https://"),
        "{body}"
    );
    assert_eq!(stored(&base, &certs, "ca.pem", &token).await, 0);
    let metrics = metrics(&base, &certs, &token).await;
    assert!(
        metrics.contains(r#"dnsorch_tls_refused_connections_total{reason="plain_http"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn with_a_client_ca_a_client_needs_a_certificate_and_still_its_token() {
    // Arrange: client certificates from `ca` are required.
    let certs = certificates();
    let (_app, base, token) =
        spawn_https(certs.path(), Some("ca.pem"), Duration::from_secs(10)).await;
    let ca = certs.path().join("ca.pem");
    let without_certificate = https_client(&ca, None, Some(&token));
    let without_token = https_client(&ca, Some((certs.path(), "client")), None);
    let with_both = https_client(&ca, Some((certs.path(), "client")), Some(&token));
    let create = format!("{base}/api/v1/dns/create");

    // Act
    let no_certificate = without_certificate
        .post(&create)
        .json(&a_record("no-cert.example.test"))
        .send()
        .await;
    let no_token = without_token
        .post(&create)
        .json(&a_record("no-token.example.test"))
        .send()
        .await
        .unwrap();
    let both = with_both
        .post(&create)
        .json(&a_record("both.example.test"))
        .send()
        .await
        .unwrap();

    // Assert: refused at the handshake (no HTTP answer at all), then 401 (the certificate is
    // not a credential of its own), then accepted; one request stored.
    assert!(no_certificate.is_err(), "{no_certificate:?}");
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(both.status(), StatusCode::ACCEPTED);
    assert_eq!(stored(&base, &certs, "ca.pem", &token).await, 1);
}

/// Replaces the server certificate and key in `dir` with ones signed by CA `ca`, the key
/// last (so a reload between the two sees a mismatched pair).
fn rotate(dir: &Path, ca: &str) -> TempDir {
    let fresh = TempDir::new().unwrap();
    for file in [format!("{ca}.pem"), format!("{ca}.key")] {
        std::fs::copy(dir.join(&file), fresh.path().join(&file)).unwrap();
    }
    make_server_cert(fresh.path(), ca);
    std::fs::copy(fresh.path().join("server.crt"), dir.join("server.crt")).unwrap();
    fresh
}

#[tokio::test]
async fn a_changed_certificate_serves_new_connections_while_open_connections_stay() {
    // Arrange: a client that trusts `ca` only has an open connection.
    let certs = certificates();
    let (_app, base, token) = spawn_https(certs.path(), None, Duration::from_millis(100)).await;
    let old_ca = https_client(&certs.path().join("ca.pem"), None, Some(&token));
    let first = old_ca.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    first.bytes().await.unwrap();

    // Act: the files change to a certificate from `other-ca`.
    let fresh = rotate(certs.path(), "other-ca");
    std::fs::copy(
        fresh.path().join("server.key"),
        certs.path().join("server.key"),
    )
    .unwrap();

    // Assert: new connections get the new certificate...
    let mut served = false;
    for _ in 0..300 {
        let new_ca = https_client(&certs.path().join("other-ca.pem"), None, Some(&token));
        if new_ca.get(format!("{base}/healthz")).send().await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "the new certificate was never served");
    let again = https_client(&certs.path().join("ca.pem"), None, Some(&token));
    assert!(again.get(format!("{base}/healthz")).send().await.is_err());
    // ... and the open connection still works: a new one would get the new certificate,
    // which this client does not trust.
    let reused = old_ca
        .post(format!("{base}/api/v1/dns/create"))
        .json(&a_record("kept.example.test"))
        .send()
        .await
        .expect("the open connection was dropped");
    assert_eq!(reused.status(), StatusCode::ACCEPTED);
    assert_eq!(stored(&base, &certs, "other-ca.pem", &token).await, 1);
}

#[test]
fn a_reload_keeps_the_current_certificate_until_the_files_make_a_valid_pair() {
    // Arrange
    let certs = certificates();
    let acceptor = Acceptor::new(ServerTls {
        cert_file: certs.path().join("server.crt"),
        key_file: certs.path().join("server.key"),
        client_ca_file: None,
    })
    .unwrap();

    // Act and assert: unchanged files are not a change; a certificate without its key is
    // refused (the current pair stays); with its key it is taken.
    assert!(!acceptor.reload().unwrap());
    let fresh = rotate(certs.path(), "other-ca");
    let mismatched = acceptor.reload().unwrap_err();
    assert!(
        format!("{mismatched:#}").contains("TLS_CERT_FILE and TLS_KEY_FILE"),
        "{mismatched:#}"
    );
    std::fs::copy(
        fresh.path().join("server.key"),
        certs.path().join("server.key"),
    )
    .unwrap();
    assert!(acceptor.reload().unwrap());
    assert!(!acceptor.reload().unwrap());
}
