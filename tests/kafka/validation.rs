//! Control characters over Kafka: a dead letter of kind `invalid` naming the field, nothing
//! stored; and raw input in the log only escaped, also with `LOG_FORMAT=pretty`.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use tempfile::TempDir;

use super::*;

#[tokio::test]
async fn a_message_with_a_control_character_is_an_invalid_dead_letter_naming_the_field() {
    // Arrange
    let topic = create_topic(1);
    let dir = TempDir::new().unwrap();
    let app = spawn_app(&dir, settings(&dir, &topic)).await;
    let producer = producer();
    let resource = |extra: serde_json::Value| {
        let mut message = json!({"context": {"account_id": TRUSTED},
            "resource": {"record_type": "A", "domain": "c.example.test", "target": "192.0.2.9"}});
        for (key, value) in extra.as_object().unwrap() {
            message["resource"][key] = value.clone();
        }
        message.to_string()
    };
    let comment = resource(json!({"comment": "ring\u{7}"}));
    let extra = resource(json!({"config": {"extra_config": {"playbook": "site.yml\nforged"}}}));

    // Act: three bad messages, then a good one.
    produce(&producer, &topic, &comment, None).await;
    produce(&producer, &topic, &extra, None).await;
    produce(
        &producer,
        &topic,
        &a_record("key.example.test"),
        Some("key-1\n"),
    )
    .await;
    produce(&producer, &topic, &a_record("last.example.test"), None).await;

    // Assert
    let letters = read_dead_letters(&topic, 3).await;
    assert_eq!(letters.len(), 3, "{letters:?}");
    let fields = [
        "resource.comment",
        "resource.config.extra_config",
        "header.idempotency-key",
    ];
    for ((_, headers), field) in letters.iter().zip(fields) {
        assert_eq!(
            header(headers, "dnsorch-error-kind"),
            "invalid",
            "{headers:?}"
        );
        let error = header(headers, "dnsorch-error");
        assert!(error.contains(field), "{field} is not named: {error}");
    }
    let domains: Vec<String> = requests_when(&*app.store, 1)
        .await
        .into_iter()
        .map(|r| r.domain)
        .collect();
    assert_eq!(domains, ["last.example.test"]);
}

/// A log line a client would like to add, after a newline of its own.
const FORGED: &str = "2026-12-01T00:00:00.000000Z  INFO dnsorch: forged entry";

#[tokio::test]
async fn raw_input_in_dead_letter_reasons_cannot_forge_a_pretty_log_line() {
    // Arrange: `dnsorch run` with pretty logs into a file, consuming a topic and serving HTTP.
    let topic = create_topic(1);
    let dir = TempDir::new().unwrap();
    let port = free_port();
    let log_path = dir.path().join("dnsorch.log");
    let child = Command::new(env!("CARGO_BIN_EXE_dnsorch"))
        .arg("run")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/dnsorch.db?mode=rwc", dir.path().display()),
        )
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("KAFKA_BROKER_URL", broker())
        .env("KAFKA_DNS_TOPIC", &topic)
        .env(
            "KAFKA_GROUP_ID",
            format!("group_{}", uuid::Uuid::new_v4().simple()),
        )
        .env("KAFKA_TRUSTED_ACCOUNTS", TRUSTED)
        .env("WORKER_CONCURRENCY", "0")
        .env("LOG_FORMAT", "pretty")
        .env("LOG_LEVEL", "info")
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    let forged = format!("\n{FORGED}\n");
    let action = a_record("a.example.test").replacen(
        '{',
        &format!("{{\"action\": {}, ", json!(format!("create{forged}"))),
        1,
    );
    let field = json!({"context": {"account_id": TRUSTED},
        "resource": {format!("colour{forged}"): "red"}})
    .to_string();
    let name = a_record(&format!("www{forged}.example.test"));
    let producer = producer();

    // Act: over Kafka, an action, a field name and a domain name that carry the line; over
    // HTTP, a domain name.
    for message in [&action, &field, &name] {
        produce(&producer, &topic, message, None).await;
    }
    let letters = read_dead_letters(&topic, 3).await;
    assert_eq!(letters.len(), 3, "{letters:?}");
    wait_for(
        "the admin token file",
        Duration::from_secs(30),
        async || first_run_admin_token(dir.path()).is_some(),
    )
    .await;
    let admin = client_with(&first_run_admin_token(dir.path()).unwrap());
    let answer = admin
        .post(format!("http://127.0.0.1:{port}/api/v1/dns/create"))
        .json(&serde_json::from_str::<serde_json::Value>(&name).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    let log = || std::fs::read_to_string(&log_path).unwrap();
    wait_for(
        "three dead letters logged",
        Duration::from_secs(30),
        async || log().matches("message dead-lettered").count() == 3,
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();

    // Assert: the line never begins one of its own, and the reasons show it escaped.
    let log = log();
    let forged_lines: Vec<&str> = log.lines().filter(|l| l.starts_with(FORGED)).collect();
    assert!(forged_lines.is_empty(), "forged lines in the log:\n{log}");
    let escaped = format!("\\n{FORGED}\\n");
    assert_eq!(
        log.matches(&escaped).count(),
        2,
        "the action and the field:\n{log}"
    );
}
