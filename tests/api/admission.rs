//! Admission control: the deadline for a request head.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::*;

/// The longest any raw exchange below may take before the test gives up.
const BOUND: Duration = Duration::from_secs(20);

async fn connect(app: &TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    TcpStream::connect(address).await.unwrap()
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
