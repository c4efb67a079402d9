//! Control characters over Kafka: a dead letter of kind `invalid` naming the field, nothing
//! stored; and raw input in the log only escaped, also with `LOG_FORMAT=pretty`.

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
