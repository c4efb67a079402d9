//! Concurrent rfc2136 changes share UPDATE messages, against the real BIND: a change the
//! server refuses fails alone while the changes it shared a message with complete, and a
//! message holds no more bytes of records than `RFC2136_BATCH_MAX_BYTES`. Every outcome is
//! checked at the server with `dig`.

use super::*;

/// A private BIND whose update-policy denies updates to names under `refused.example.test`
/// (REFUSED for the whole message); stopped when dropped.
pub(super) struct PolicyBind {
    pub(super) bind: Server,
    dir: TempDir,
}

impl PolicyBind {
    pub(super) fn start() -> Self {
        // This worktree's script: the update policy is one of its options.
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bind-instance.sh");
        let dir = TempDir::new().unwrap();
        let port = free_port();
        let started = Command::new(&script)
            .args(["start", dir.path().to_str().unwrap(), &port.to_string()])
            .env(
                "BIND_UPDATE_POLICY",
                "deny dnsorch-test subdomain refused.example.test. ANY; \
                 grant dnsorch-test zonesub ANY;",
            )
            .output()
            .unwrap();
        assert!(started.status.success(), "{started:?}");
        let vars: std::collections::HashMap<String, String> = String::from_utf8(started.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        Self {
            bind: Server {
                port,
                secret_file: vars["BIND_SECRET_FILE"].clone(),
                key_file: vars["BIND_KEY_FILE"].clone(),
            },
            dir,
        }
    }
}

impl Drop for PolicyBind {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bind-instance.sh");
        let _ = Command::new(script)
            .args(["stop", self.dir.path().to_str().unwrap()])
            .status();
    }
}

/// Posts all `bodies` at once and waits until each request is finished; in posting order.
async fn post_all_and_wait(app: &App, bodies: &[Value]) -> Vec<Value> {
    let posted = futures::future::join_all(bodies.iter().map(|b| app.post("create", b))).await;
    let mut finished = Vec::new();
    for (status, request) in posted {
        assert_eq!(status, 202, "{request}");
        finished.push(app.finished(request["request_id"].as_str().unwrap()).await);
    }
    finished
}

/// The change counts of the shared messages a request's log names ("N changes in one
/// message").
fn shared_counts(request: &Value) -> Vec<usize> {
    let log = log_of(request);
    log.match_indices(" changes in one message")
        .map(|(at, _)| {
            let before = &log[..at];
            let start = before
                .rfind(|c: char| !c.is_ascii_digit())
                .map_or(0, |i| i + 1);
            before[start..].parse().unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_server_refuses_fails_alone_and_the_others_in_its_message_complete() {
    // Arrange: sixteen workers, so creates reach the sender together and share messages.
    let policy = PolicyBind::start();
    let bind = &policy.bind;
    let app = spawn_app(|dir, settings| {
        settings.worker_concurrency = 16;
        settings.dnsorch_config = Some(zones_file(
            dir,
            bind,
            &bind.secret_file,
            &playbook("nsupdate.yml"),
        ));
    })
    .await;
    let run = unique("refused");

    // Act: 40 creates posted at once; every fifth is under a name the server refuses.
    let refused = |i: usize| i.is_multiple_of(5);
    let name = |i: usize| {
        if refused(i) {
            format!("h{i}-{run}.refused.example.test")
        } else {
            format!("h{i}-{run}.example.test")
        }
    };
    let bodies: Vec<Value> = (0..40)
        .map(|i| body("acct-r", "A", &name(i), Some("192.0.2.3"), None))
        .collect();
    let finished = post_all_and_wait(&app, &bodies).await;

    // Assert: each refused create failed on its own answer, at its first attempt; every other
    // create is in BIND; and some refused message was sent again change by change.
    for (i, request) in finished.iter().enumerate() {
        if refused(i) {
            assert_eq!(request["status"], "FAILED", "{request}");
            assert_eq!(request["attempts"], 1, "{request}");
            assert!(log_of(request).contains("REFUSED"), "{request}");
            assert!(dig(bind.port, &name(i), "A").is_empty());
        } else {
            assert_completed(request);
            assert_eq!(dig(bind.port, &name(i), "A"), ["192.0.2.3"]);
        }
    }
    let resent = finished
        .iter()
        .filter(|r| log_of(r).contains("sent again alone"))
        .count();
    assert!(
        resent > 0,
        "no shared message was answered other than NOERROR"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_update_message_holds_at_most_the_byte_bound() {
    // Arrange: TXT records of 1000 octets (about 1100 bytes with owner name and
    // prerequisite) and a bound of 2600 bytes: at most two changes per message.
    let bind = shared_bind();
    let app = spawn_app(|dir, settings| {
        settings.worker_concurrency = 16;
        settings.rfc2136_batch_max_bytes = 2600;
        settings.dnsorch_config = Some(zones_file(
            dir,
            &bind,
            &bind.secret_file,
            &playbook("nsupdate.yml"),
        ));
    })
    .await;
    let run = unique("bytes");
    let text = "t".repeat(1000);

    // Act: 30 large TXT creates posted at once.
    let name = |i: usize| format!("t{i}-{run}.example.test");
    let bodies: Vec<Value> = (0..30)
        .map(|i| body("acct-t", "TXT", &name(i), Some(&text), None))
        .collect();
    let finished = post_all_and_wait(&app, &bodies).await;

    // Assert: all are in BIND, and no message carried more than two changes (so 30 changes
    // took at least 15 messages).
    for (i, request) in finished.iter().enumerate() {
        assert_completed(request);
        let live = dig(bind.port, &name(i), "TXT");
        assert_eq!(live.len(), 1, "{live:?}");
        assert_eq!(live[0].replace(['"', ' '], ""), text);
    }
    let most = finished.iter().flat_map(shared_counts).max().unwrap_or(1);
    assert!(most <= 2, "a message carried {most} changes");
}
