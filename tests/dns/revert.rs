//! Revert and history against the real BIND: a revert puts the RRset back as `dig` saw it
//! before the change, is refused once the RRset changed again, and the history lists each
//! change with its principal.

use super::*;

fn set(domain: &str, targets: &[&str], ttl: u32) -> Value {
    json!({"context": {"account_id": "acct-v"},
           "resource": {"record_type": "A", "domain": domain, "targets": targets,
                        "config": {"ttl": ttl}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_restores_the_previous_rrset_and_the_history_lists_each_change() {
    // Arrange: two records, replaced by one with another TTL.
    let app = spawn_dns_app().await;
    let port = shared_bind().port;
    let name = format!("{}.example.test", unique("rv"));
    app.completed("create", &set(&name, &["192.0.2.1", "192.0.2.2"], 120))
        .await;
    let original = dig_ttl(port, &name, "A");
    let replaced = app
        .completed("replace", &set(&name, &["192.0.2.9"], 900))
        .await;
    let id = replaced["request_id"].as_str().unwrap();

    // Act: revert the replace; then try again, now that the RRset is no longer its after.
    let (status, revert) = app.post(&format!("requests/{id}/revert"), &json!({})).await;
    let reverted = app.finished(revert["request_id"].as_str().unwrap()).await;
    let (again, refused) = app.post(&format!("requests/{id}/revert"), &json!({})).await;
    let history: Value = app
        .client
        .get(format!(
            "{}/api/v1/dns/rrsets/{name}/A/history",
            app.address
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Assert
    assert_eq!(status, 202, "{revert}");
    assert_completed(&reverted);
    let mut restored = dig_ttl(port, &name, "A");
    restored.sort();
    let mut original = original;
    original.sort();
    assert_eq!(restored, original);
    assert_eq!(again, 409, "{refused}");
    assert_eq!(app.records(&name).await.len(), 2);
    let operations: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["operation"].as_str().unwrap())
        .collect();
    assert_eq!(operations, ["replace", "replace", "create"], "{history}");
    let principal = &replaced["submitted_by"]["token_name"];
    assert!(principal.is_string(), "{replaced}");
    for item in history["items"].as_array().unwrap() {
        assert_eq!(&item["submitted_by"]["token_name"], principal, "{item}");
    }
    assert_eq!(
        history["items"][0]["after"], replaced["before"],
        "{history}"
    );
}
