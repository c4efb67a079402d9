//! The fence on DNS writes: a worker whose lease renewals stopped succeeding sends nothing once
//! the last renewal is older than the lease minus the margin, neither a change it was about to
//! send nor one already queued behind another in the zone's sender.
//!
//! The server is a purpose-built peer on loopback: it answers each query only when the test
//! gives it a permit, and counts the UPDATE messages it receives without ever answering them.
//! Renewals are held up by a table lock taken in PostgreSQL by the test.

use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use tokio::io::AsyncReadExt as _;

use tokio::sync::Semaphore;

use super::*;

#[path = "../support/postgres.rs"]
mod postgres;

/// A DNS peer on one loopback port (UDP and TCP).
struct SlowServer {
    port: u16,
    /// Queries received (counted on arrival, before their permit).
    queries: Arc<AtomicUsize>,
    /// UPDATE messages received over TCP (never answered).
    updates: Arc<AtomicUsize>,
    /// One permit answers one query: NOERROR, no records.
    permits: Arc<Semaphore>,
}

impl SlowServer {
    async fn start() -> Self {
        let (udp, tcp) = dns_sockets().await;
        let port = udp.local_addr().unwrap().port();
        let server = Self {
            port,
            queries: Arc::new(AtomicUsize::new(0)),
            updates: Arc::new(AtomicUsize::new(0)),
            permits: Arc::new(Semaphore::new(0)),
        };
        let (queries, permits) = (server.queries.clone(), server.permits.clone());
        let udp = Arc::new(udp);
        tokio::spawn(async move {
            let mut buffer = vec![0; 65_535];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buffer).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buffer[..n]) else {
                    continue;
                };
                queries.fetch_add(1, Ordering::SeqCst);
                let (udp, permits) = (udp.clone(), permits.clone());
                tokio::spawn(async move {
                    permits.acquire().await.unwrap().forget();
                    let mut answer =
                        Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
                    answer.metadata.authoritative = true;
                    answer.metadata.response_code = ResponseCode::NoError;
                    answer.add_queries(query.queries.iter().cloned());
                    let _ = udp.send_to(&answer.to_vec().unwrap(), from).await;
                });
            }
        });
        let updates = server.updates.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = tcp.accept().await else {
                    return;
                };
                let updates = updates.clone();
                tokio::spawn(async move {
                    loop {
                        let Ok(length) = stream.read_u16().await else {
                            return;
                        };
                        let mut message = vec![0; usize::from(length)];
                        if stream.read_exact(&mut message).await.is_err() {
                            return;
                        }
                        updates.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        server
    }

    async fn wait_for_queries(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.queries.load(Ordering::SeqCst) < count {
            assert!(
                Instant::now() < deadline,
                "the server got {} queries, not {count}",
                self.queries.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_for_updates(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.updates.load(Ordering::SeqCst) < count {
            assert!(Instant::now() < deadline, "no UPDATE reached the server");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The app on a PostgreSQL database of its own, its rfc2136 zone `example.test` served by
/// `server`, with a lease of one second (renewed every third of it; the fence holds for three
/// quarters of it after a renewal) and the UPDATE timeout of the zones file (2 s).
async fn app_on(server: &SlowServer) -> (App, String) {
    let database_url = postgres::shared_postgres_database().await;
    let bind = shared_bind();
    let peer = Server {
        port: server.port,
        secret_file: bind.secret_file.clone(),
        key_file: bind.key_file.clone(),
    };
    let dir = TempDir::new().unwrap();
    let settings = Settings {
        database_url: database_url.clone(),
        worker_concurrency: 4,
        max_attempts: 5,
        lease_seconds: Duration::from_secs(1),
        retry_base_seconds: Duration::from_millis(100),
        retry_max_seconds: Duration::from_millis(300),
        dnsorch_config: Some(zones_file(
            &dir,
            &peer,
            &peer.secret_file,
            &playbook("nsupdate.yml"),
        )),
        ..support_settings::test_settings(&dir)
    };
    let app = Application::build(settings).await.expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let store = app.store();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    // On PostgreSQL no first run writes an admin token: make one as an operator would.
    let output = Command::new(env!("CARGO_BIN_EXE_dnsorch"))
        .args([
            "token",
            "create",
            "--account",
            "admin",
            "--name",
            "fencing",
            "--admin",
        ])
        .env("DATABASE_URL", &database_url)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let app = App {
        address,
        client: client_with(&token),
        store,
        shutdown,
        running: Some(running),
        _dir: dir,
    };
    (app, database_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_whose_renewals_stop_sends_no_update_neither_queued_nor_about_to_be_sent() {
    // Arrange: three creates for three names, each claimed and waiting for the answer to the
    // live read that comes before its UPDATE.
    let server = SlowServer::start().await;
    let (app, database_url) = app_on(&server).await;
    let names: Vec<String> = ["queued-a", "queued-b", "late-c"]
        .iter()
        .map(|n| format!("{}.example.test", unique(n)))
        .collect();
    for name in &names {
        let (status, answer) = app
            .post(
                "create",
                &body("acct-1", "A", name, Some("192.0.2.10"), None),
            )
            .await;
        assert_eq!(status, 202, "{answer}");
    }
    server.wait_for_queries(3).await;
    // Renewals now wait behind a lock that conflicts with their UPDATE.
    let db = sqlx::PgPool::connect(&database_url).await.unwrap();
    let mut lock = db.begin().await.unwrap();
    sqlx::query("lock table dns_requests in share mode")
        .execute(&mut *lock)
        .await
        .unwrap();

    // Act: A's read is answered: its UPDATE goes out (its fence is fresh) and is never
    // answered, so B, answered next, queues behind it for the whole UPDATE timeout, while its
    // fence closes. C's read is answered only once its fence has closed.
    server.permits.add_permits(1);
    server.wait_for_updates(1).await;
    let a_sent = Instant::now();
    server.permits.add_permits(1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.permits.add_permits(1);
    // Renewals may succeed again once the lock is gone (the fence then rightly reopens):
    // keep it until well after A's UPDATE timed out and the sender took B from its queue.
    tokio::time::sleep_until((a_sent + Duration::from_millis(3500)).into()).await;
    lock.commit().await.unwrap();
    // Each request's next attempt starts with a new read, unanswered: once the server has had
    // six reads, every first attempt is over.
    server.wait_for_queries(6).await;

    // Assert: A's UPDATE was the only one; B was dropped from the sender's queue and C never
    // handed to it.
    assert_eq!(
        server.updates.load(Ordering::SeqCst),
        1,
        "an UPDATE was sent after the claim's renewals had stopped"
    );
    drop(app);
}
