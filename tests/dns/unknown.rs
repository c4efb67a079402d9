//! Outcome unknown: a change sent whose answer never came is UNKNOWN (not FAILED) until a
//! query of the server settles it: COMPLETED with its ledger row when the change is there,
//! PENDING again (then FAILED when attempts are used up) when it is not.
//!
//! The zone's server is a purpose-built relay on loopback in front of the real BIND: it
//! relays queries (UDP) while they are let through, and UPDATEs (TCP) either to BIND with
//! BIND's answer swallowed (applied, answer lost) or nowhere (never applied, no answer).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

use super::*;

/// What the relay does with an UPDATE.
#[derive(Debug, Clone, Copy)]
enum Updates {
    /// Relays it to BIND, which applies it, and drops BIND's answer.
    ApplyAndSwallowTheAnswer,
    /// Drops it: BIND never sees it.
    Drop,
}

/// The relay: UDP and TCP on one loopback port.
struct Relay {
    port: u16,
    /// Whether queries are relayed (otherwise they go unanswered).
    queries_open: Arc<AtomicBool>,
    /// UPDATE messages received.
    updates: Arc<AtomicUsize>,
}

impl Relay {
    async fn start(bind_port: u16, mode: Updates) -> Self {
        let (udp, tcp) = dns_sockets().await;
        let udp = Arc::new(udp);
        let port = udp.local_addr().unwrap().port();
        let relay = Self {
            port,
            queries_open: Arc::new(AtomicBool::new(true)),
            updates: Arc::new(AtomicUsize::new(0)),
        };
        let open = relay.queries_open.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0; 65_535];
            loop {
                let Ok((n, client)) = udp.recv_from(&mut buffer).await else {
                    return;
                };
                if !open.load(Ordering::SeqCst) {
                    continue;
                }
                let (query, udp) = (buffer[..n].to_vec(), udp.clone());
                tokio::spawn(async move {
                    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                    upstream
                        .send_to(&query, ("127.0.0.1", bind_port))
                        .await
                        .unwrap();
                    let mut answer = vec![0; 65_535];
                    let relayed = tokio::time::timeout(
                        Duration::from_secs(2),
                        upstream.recv_from(&mut answer),
                    );
                    if let Ok(Ok((n, _))) = relayed.await {
                        let _ = udp.send_to(&answer[..n], client).await;
                    }
                });
            }
        });
        let updates = relay.updates.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = tcp.accept().await else {
                    return;
                };
                let updates = updates.clone();
                tokio::spawn(async move {
                    let mut upstream = None;
                    loop {
                        let Ok(length) = client.read_u16().await else {
                            return;
                        };
                        let mut message = vec![0; usize::from(length)];
                        if client.read_exact(&mut message).await.is_err() {
                            return;
                        }
                        updates.fetch_add(1, Ordering::SeqCst);
                        if let Updates::ApplyAndSwallowTheAnswer = mode {
                            if upstream.is_none() {
                                upstream = TcpStream::connect(("127.0.0.1", bind_port)).await.ok();
                            }
                            if let Some(bind) = upstream.as_mut() {
                                let _ = bind.write_u16(length).await;
                                let _ = bind.write_all(&message).await;
                                let length = bind.read_u16().await.unwrap_or(0);
                                let mut answer = vec![0; usize::from(length)];
                                let _ = bind.read_exact(&mut answer).await;
                            }
                        }
                    }
                });
            }
        });
        relay
    }
}

/// The app with `example.test` served through `relay` (UPDATE timeout 2 s).
async fn app_behind(relay: &Relay, max_attempts: u32) -> App {
    let bind = shared_bind();
    let through = Server {
        port: relay.port,
        secret_file: bind.secret_file.clone(),
        key_file: bind.key_file.clone(),
    };
    spawn_app(|dir, settings| {
        settings.max_attempts = max_attempts;
        settings.dnsorch_config = Some(zones_file(
            dir,
            &through,
            &through.secret_file,
            &playbook("nsupdate.yml"),
        ));
    })
    .await
}

impl App {
    /// Polls request `id` until its status is `status`.
    async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, request) = self.get_text(&format!("/api/v1/dns/requests/{id}")).await;
            let request: Value = serde_json::from_str(&request).unwrap();
            if request["status"] == status {
                return request;
            }
            assert!(
                Instant::now() < deadline,
                "request {id} never became {status}: {request}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_applied_whose_answer_was_lost_is_unknown_until_a_query_finds_it_then_completed() {
    // Arrange: BIND applies the UPDATE, its answer never reaches dnsorch.
    let bind = shared_bind();
    let relay = Relay::start(bind.port, Updates::ApplyAndSwallowTheAnswer).await;
    let app = app_behind(&relay, 3).await;
    let name = format!("{}.example.test", unique("lost-answer"));

    // Act: the create; once its UPDATE has gone through, queries go unanswered, so the
    // check cannot tell yet.
    let (status, accepted) = app
        .post(
            "create",
            &body("acct-1", "A", &name, Some("192.0.2.61"), None),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["request_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while relay.updates.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no UPDATE reached the relay");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.queries_open.store(false, Ordering::SeqCst);

    // Assert: UNKNOWN, listed as such and counted; the record is live in BIND.
    let unknown = app.wait_for_status(&id, "UNKNOWN").await;
    assert!(
        log_of(&unknown).contains("outcome unknown"),
        "{}",
        log_of(&unknown)
    );
    let (_, listed) = app
        .get_text("/api/v1/dns/requests?status=UNKNOWN&limit=100")
        .await;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["request_id"].as_str())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(
        metrics.contains("dnsorch_requests{status=\"UNKNOWN\"} 1"),
        "{metrics}"
    );
    assert_eq!(dig(bind.port, &name, "A"), ["192.0.2.61"]);
    assert!(app.records(&name).await.is_empty());

    // Act: the server can be asked again.
    relay.queries_open.store(true, Ordering::SeqCst);

    // Assert: COMPLETED in its one attempt, with its ledger row; sent once.
    let completed = app.finished(&id).await;
    assert_completed(&completed);
    assert_eq!(completed["attempts"], 1, "{}", log_of(&completed));
    assert!(
        log_of(&completed).contains("the change is in place; status COMPLETED"),
        "{}",
        log_of(&completed)
    );
    let records = app.records(&name).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["request_id"], id.as_str());
    assert_eq!(relay.updates.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_never_applied_is_sent_again_and_fails_only_once_a_query_shows_it_absent() {
    // Arrange: UPDATEs vanish; queries reach BIND.
    let bind = shared_bind();
    let relay = Relay::start(bind.port, Updates::Drop).await;
    let app = app_behind(&relay, 2).await;
    let name = format!("{}.example.test", unique("lost-update"));

    // Act
    let finished = app
        .apply(
            "create",
            &body("acct-1", "A", &name, Some("192.0.2.62"), None),
        )
        .await;

    // Assert: each attempt's outcome was unknown and checked; absent after the first, it
    // was sent again; absent after the last, it FAILED. Nothing is live or in the ledger.
    let log = log_of(&finished);
    assert_eq!(finished["status"], "FAILED", "{log}");
    assert_eq!(finished["attempts"], 2, "{log}");
    assert_eq!(
        log.matches("status UNKNOWN until the server is checked")
            .count(),
        2,
        "{log}"
    );
    assert_eq!(log.matches("applying it again").count(), 1, "{log}");
    assert!(
        log.contains("the change is not in place") && log.contains("no attempts left"),
        "{log}"
    );
    assert_eq!(relay.updates.load(Ordering::SeqCst), 2);
    assert!(dig(bind.port, &name, "A").is_empty());
    assert!(app.records(&name).await.is_empty());
}
