//! The Redis task channel against a real `redis-server` (started by `scripts/test.sh`, which
//! exports `TEST_REDIS_URL`; each test uses a stream of its own).

use std::time::Duration;

use dnsorch::domain::RequestId;
use dnsorch::queue::{RedisChannel, TaskChannel};

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL")
        .expect("TEST_REDIS_URL is not set: run the tests with scripts/test.sh")
}

fn fresh_stream() -> String {
    format!("test_tasks_{}", uuid::Uuid::new_v4().simple())
}

fn channel(stream: &str, claim_idle: Duration) -> RedisChannel {
    RedisChannel::new(&redis_url(), stream, claim_idle).unwrap()
}

const WAIT: Duration = Duration::from_millis(200);

#[tokio::test]
async fn an_enqueued_id_is_delivered_once_and_acknowledged() {
    // Arrange
    let stream = fresh_stream();
    let producer = channel(&stream, Duration::from_secs(60));
    let consumer = channel(&stream, Duration::from_secs(60));
    let id = RequestId::new();
    assert!(
        consumer.next(WAIT).await.unwrap().is_none(),
        "a new stream is empty"
    );

    // Act
    producer.enqueue(id).await.unwrap();
    let delivery = consumer.next(WAIT).await.unwrap().expect("a delivery");
    consumer.ack(&delivery).await.unwrap();

    // Assert
    assert_eq!(delivery.request_id, id);
    assert!(consumer.next(WAIT).await.unwrap().is_none());
    let other = channel(&stream, Duration::ZERO);
    assert!(
        other.next(WAIT).await.unwrap().is_none(),
        "an acknowledged entry is not taken over"
    );
}

#[tokio::test]
async fn an_entry_left_unacknowledged_by_a_dead_consumer_is_taken_over() {
    // Arrange: a consumer reads an entry and dies before acknowledging it.
    let stream = fresh_stream();
    let dead = channel(&stream, Duration::from_secs(60));
    let id = RequestId::new();
    dead.enqueue(id).await.unwrap();
    assert_eq!(dead.next(WAIT).await.unwrap().unwrap().request_id, id);
    drop(dead);
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Act: another consumer, for which an entry idle 20 ms is abandoned.
    let survivor = channel(&stream, Duration::from_millis(20));
    let delivery = survivor.next(WAIT).await.unwrap();

    // Assert
    assert_eq!(delivery.map(|d| d.request_id), Some(id));
}

#[tokio::test]
async fn consumers_of_one_group_share_the_entries() {
    // Arrange
    let stream = fresh_stream();
    let a = channel(&stream, Duration::from_secs(60));
    let b = channel(&stream, Duration::from_secs(60));
    let ids: Vec<RequestId> = (0..40).map(|_| RequestId::new()).collect();
    for id in &ids {
        a.enqueue(*id).await.unwrap();
    }

    // Act: both read until the stream is drained.
    let mut seen = Vec::new();
    loop {
        let (x, y) = tokio::join!(a.next(WAIT), b.next(WAIT));
        let got: Vec<_> = [x.unwrap(), y.unwrap()].into_iter().flatten().collect();
        if got.is_empty() {
            break;
        }
        for delivery in got {
            seen.push(delivery.request_id);
        }
    }

    // Assert: every id exactly once.
    seen.sort_by_key(|id| id.0);
    let mut expected = ids.clone();
    expected.sort_by_key(|id| id.0);
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_a_hang() {
    // Arrange: nothing listens on this port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let down =
        RedisChannel::new(&format!("redis://127.0.0.1:{port}/0"), "x", Duration::ZERO).unwrap();

    // Act
    let started = std::time::Instant::now();
    let enqueued = down.enqueue(RequestId::new()).await;
    let pinged = down.ping().await;
    let read = down.next(WAIT).await;

    // Assert
    assert!(enqueued.is_err() && pinged.is_err() && read.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}
