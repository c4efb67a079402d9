//! Helper for `scripts/bench.sh`: produces benchmark messages, and measures the broker's own
//! consume rate with a plain consumer (same client library as dnsorch) that reads a topic and
//! discards it.
//!
//! ```text
//! kafka_bench produce BROKERS TOPIC COUNT [BYTES]  # COUNT create messages, distinct domains
//! kafka_bench drain BROKERS TOPIC COUNT             # time to read COUNT messages from the start
//! ```
//!
//! Without BYTES every message is valid and small. With BYTES every payload is that large:
//! the even ones valid messages padded with white space (JSON that parses, and is recorded,
//! once a consumer takes payloads that large), the odd ones with a comment that long (refused
//! by validation), so a consumer's memory can be measured under a flood of large messages.
//!
//! `produce` gives every message the header `authorization: Bearer <token>` with the token in
//! the environment variable `BENCH_TOKEN` (an API token of the database the consuming dnsorch
//! records into, as `dnsorch token create` prints it); without one it refuses to run, since
//! dnsorch dead-letters such messages unless their account is in `KAFKA_TRUSTED_ACCOUNTS`.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (command, brokers, topic, count, bytes) = match args.as_slice() {
        [_, command, brokers, topic, count] => (command, brokers, topic, count, None),
        [_, command, brokers, topic, count, bytes] if command == "produce" => (
            command,
            brokers,
            topic,
            count,
            Some(bytes.parse::<usize>()?),
        ),
        _ => anyhow::bail!("usage: kafka_bench produce|drain BROKERS TOPIC COUNT [BYTES]"),
    };
    let count: usize = count.parse()?;
    match command.as_str() {
        "produce" => produce(brokers, topic, count, bytes).await,
        "drain" => drain(brokers, topic, count).await,
        other => anyhow::bail!("unknown command {other}"),
    }
}

/// Message `i`: a valid create message, or with `bytes`, a payload of that many bytes (at
/// least the valid message's; even `i`: the valid message padded with spaces; odd `i`: with a
/// comment that long).
fn payload(i: usize, bytes: Option<usize>) -> String {
    let resource = format!(
        r#""resource":{{"record_type":"A","domain":"k{i}.bench.example.test","target":"192.0.2.{}""#,
        i % 254 + 1
    );
    let valid = format!(r#"{{"context":{{"account_id":"bench"}},{resource}}}}}"#);
    let Some(bytes) = bytes else {
        return valid;
    };
    let mut message = if i.is_multiple_of(2) {
        valid
    } else {
        let head = format!(r#"{{"context":{{"account_id":"bench"}},{resource},"comment":""#);
        let comment = bytes.saturating_sub(head.len() + 3);
        format!("{head}{}\"}}}}", "c".repeat(comment))
    };
    let pad = bytes.saturating_sub(message.len());
    message.extend(std::iter::repeat_n(' ', pad));
    message
}

async fn produce(
    brokers: &str,
    topic: &str,
    count: usize,
    bytes: Option<usize>,
) -> anyhow::Result<()> {
    let token = std::env::var("BENCH_TOKEN").unwrap_or_default();
    let token = token.trim();
    if token.is_empty() {
        anyhow::bail!("BENCH_TOKEN is not set: the messages' authorization header needs a token");
    }
    let authorization = format!("Bearer {token}");
    // Large messages: the client's own limit (1,000,000 bytes) raised to take them, and at
    // most 64 MiB of them in flight.
    let max_bytes = bytes
        .map_or(1_000_000, |b| b.saturating_add(64 * 1024))
        .clamp(1_000_000, 1_000_000_000);
    let window = bytes.map_or(1000, |b| (64 << 20) / b.max(1)).clamp(1, 1000);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("message.timeout.ms", "60000")
        .set("message.max.bytes", max_bytes.to_string())
        .create()?;
    let started = Instant::now();
    let mut pending = Vec::with_capacity(window);
    for i in 0..count {
        let payload = payload(i, bytes);
        let key = format!("k{}", i % 64);
        let headers = OwnedHeaders::new().insert(Header {
            key: "authorization",
            value: Some(authorization.as_str()),
        });
        let producer = producer.clone();
        let topic = topic.to_owned();
        pending.push(tokio::spawn(async move {
            producer
                .send(
                    FutureRecord::to(&topic)
                        .payload(&payload)
                        .key(&key)
                        .headers(headers),
                    Duration::from_secs(60),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        }));
        if pending.len() == window {
            for send in pending.drain(..) {
                send.await??;
            }
        }
    }
    for send in pending {
        send.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "PRODUCED messages={count} seconds={seconds:.3} rate={:.1}",
        count as f64 / seconds
    );
    Ok(())
}

async fn drain(brokers: &str, topic: &str, count: usize) -> anyhow::Result<()> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-drain-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut seen = 0;
    let mut started = None;
    while seen < count {
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv()).await??;
        started.get_or_insert_with(Instant::now);
        let _ = message;
        seen += 1;
    }
    let seconds = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    println!(
        "DRAINED messages={seen} seconds={seconds:.3} rate={:.1}",
        seen as f64 / seconds
    );
    Ok(())
}
