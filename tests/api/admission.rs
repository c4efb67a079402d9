//! Admission control and what `/metrics` reports about it: the deadline for a request head,
//! the concurrency limit, the request timeout, label values from fixed sets, and the status
//! count that is not taken at every scrape.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::*;

/// The longest any raw exchange below may take before the test gives up.
const BOUND: Duration = Duration::from_secs(20);

async fn connect(app: &TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    TcpStream::connect(address).await.unwrap()
}

fn admin_token(app: &TestApp) -> String {
    first_run_admin_token(app.dir.path()).unwrap()
}

/// A create request's head announcing a body of `length` bytes.
fn create_head(app: &TestApp, length: usize) -> String {
    format!(
        "POST /api/v1/dns/create HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n",
        admin_token(app)
    )
}

/// Reads what the server sends until it closes the connection.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

async fn metrics_text(app: &TestApp) -> String {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

#[tokio::test]
async fn a_request_head_sent_one_byte_at_a_time_is_cut_off_at_the_header_deadline() {
    // Arrange
    let app = spawn_app_with(|s| s.header_read_timeout_seconds = Duration::from_secs(1)).await;
    let stream = connect(&app).await;
    let (mut reader, mut writer) = stream.into_split();
    let closed = tokio::spawn(async move {
        let mut sink = Vec::new();
        // EOF or a reset: either way the server let go of the connection.
        let _ = reader.read_to_end(&mut sink).await;
    });
    // At one byte per 200 ms this head takes over 13 s to send, and it never finishes
    // (no blank line), and each byte arrives well within any per-byte timeout.
    let head = b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaa";

    // Act
    let mut sent = 0;
    for byte in head {
        if closed.is_finished() || writer.write_all(&[*byte]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Assert
    assert!(
        sent < head.len(),
        "the server still held the connection after all {sent} bytes"
    );
    tokio::time::timeout(BOUND, closed)
        .await
        .expect("the server closed the connection")
        .unwrap();
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_header_deadline() {
    // Arrange
    let app = spawn_app_with(|s| s.header_read_timeout_seconds = Duration::from_secs(1)).await;
    let mut stream = connect(&app).await;

    // Act
    let answer = read_to_close(&mut stream).await;

    // Assert: closed without a request ever being made.
    assert!(!answer.contains("200 OK"), "{answer}");
}

#[tokio::test]
async fn past_max_concurrent_requests_the_next_is_answered_503_overloaded_at_once() {
    // Arrange: one request at a time, and one held open by a body that never comes.
    let app = spawn_app_with(|s| s.max_concurrent_requests = 1).await;
    let mut held = connect(&app).await;
    held.write_all(create_head(&app, 100).as_bytes())
        .await
        .unwrap();
    held.write_all(b"{\"resource\":").await.unwrap();

    // Act: the second request is refused once the first holds the only place.
    let mut refused = None;
    for _ in 0..100 {
        let response = app.get("/api/v1/dns/requests").await;
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Assert
    let refused = refused.expect("a second request was refused while the first was held");
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(
        refused.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "overloaded");
    // The probes and metrics stay outside the limit, and count the 503.
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    let text = metrics_text(&app).await;
    let line =
        r#"dnsorch_http_requests_total{method="GET",route="/api/v1/dns/requests",status="503"} 1"#;
    assert!(text.contains(line), "no {line} in:\n{text}");
    // Once the first is answered (its body ends: a 400), the place is free again.
    held.write_all(&[b' '; 88]).await.unwrap();
    let answer = read_to_close(&mut held).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(
        app.get("/api/v1/dns/requests").await.status(),
        StatusCode::OK
    );
    assert_eq!(app.stored_requests().await, 0);
}

#[tokio::test]
async fn a_request_not_answered_within_the_timeout_gets_503_timeout_in_json_and_is_counted() {
    // Arrange: a body that stops half-way.
    let app = spawn_app_with(|s| s.request_timeout_seconds = Duration::from_millis(500)).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(create_head(&app, 100).as_bytes())
        .await
        .unwrap();
    stream.write_all(b"{\"resource\":").await.unwrap();

    // Act
    let answer = read_to_close(&mut stream).await;

    // Assert
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"], "timeout");
    let text = metrics_text(&app).await;
    let line =
        r#"dnsorch_http_requests_total{method="POST",route="/api/v1/dns/create",status="503"} 1"#;
    assert!(text.contains(line), "no {line} in:\n{text}");
    assert_eq!(app.stored_requests().await, 0);
}

#[tokio::test]
async fn an_invented_http_method_is_counted_as_other() {
    // Arrange
    let app = spawn_app().await;
    let mut stream = connect(&app).await;

    // Act
    stream
        .write_all(b"FOO123 /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut stream).await;

    // Assert
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    let text = metrics_text(&app).await;
    assert!(!text.contains("FOO123"), "{text}");
    let line = r#"dnsorch_http_requests_total{method="other",route="/healthz",status="405"} 1"#;
    assert!(text.contains(line), "no {line} in:\n{text}");
}

#[tokio::test]
async fn a_stored_source_outside_the_fixed_set_is_counted_as_other() {
    // Arrange: a request whose row holds a source of its own, as older rows may.
    let app = spawn_app().await;
    let id = app
        .create(&a_record("legacy.example.test", "192.0.2.61"))
        .await;
    let url = format!("sqlite://{}/dnsorch.db", app.dir.path().display());
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("update dns_requests set source = 'legacy-import-7' where id = ?")
        .bind(&id)
        .execute(&mut db)
        .await
        .unwrap();

    // Act
    app.run_queued_tasks().await;

    // Assert
    let text = metrics_text(&app).await;
    assert!(!text.contains("legacy-import-7"), "{text}");
    let line = r#"dnsorch_requests_completed_total{record_type="A",source="other"} 1"#;
    assert!(text.contains(line), "no {line} in:\n{text}");
}

#[tokio::test]
async fn two_scrapes_within_the_refresh_interval_share_one_count() {
    // Arrange
    let app =
        spawn_app_with(|s| s.metrics_status_refresh_seconds = Duration::from_secs(3600)).await;
    app.create(&a_record("count1.example.test", "192.0.2.62"))
        .await;
    let first = metrics_text(&app).await;
    app.create(&a_record("count2.example.test", "192.0.2.63"))
        .await;

    // Act
    let second = metrics_text(&app).await;

    // Assert
    assert!(first.contains("dnsorch_queue_depth 1\n"), "{first}");
    assert!(second.contains("dnsorch_queue_depth 1\n"), "{second}");
    assert!(
        second.contains(r#"dnsorch_requests{status="PENDING"} 1"#),
        "{second}"
    );
}

#[tokio::test]
async fn a_scrape_after_the_refresh_interval_counts_again() {
    // Arrange
    let app =
        spawn_app_with(|s| s.metrics_status_refresh_seconds = Duration::from_millis(200)).await;
    app.create(&a_record("recount1.example.test", "192.0.2.64"))
        .await;
    let first = metrics_text(&app).await;
    app.create(&a_record("recount2.example.test", "192.0.2.65"))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Act
    let second = metrics_text(&app).await;

    // Assert
    assert!(first.contains("dnsorch_queue_depth 1\n"), "{first}");
    assert!(second.contains("dnsorch_queue_depth 2\n"), "{second}");
}
