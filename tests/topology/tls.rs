//! TLS to PostgreSQL: `sslmode=verify-full` with `sslrootcert` in `DATABASE_URL` against a
//! private server with `ssl=on` and a certificate from a CA the test makes (openssl), for the
//! name `localhost` only. The connection is encrypted and verified; a wrong host name or
//! another CA is refused, and `require` encrypts without verifying. TLS to Redis: `rediss://`
//! with `REDIS_CA_FILE` against redis-server's `--tls-port`, and a client certificate.
//! HTTPS on `serve` and on a worker's operations endpoints, and a certificate replaced and
//! reloaded on SIGHUP.

use std::path::Path;
use std::process::Command;

use dnsorch::domain::RequestId;
use dnsorch::queue::{RedisChannel, RedisTls, TaskChannel};

use super::*;

#[path = "../support/certs.rs"]
mod certs;

use certs::{https_client, make_ca, make_client_cert, make_server_cert};

/// `dnsorch migrate` against `url`: whether it succeeded, and what it said.
fn migrate(dir: &Path, url: &str) -> (bool, String) {
    let env = [
        ("DATABASE_URL", url.to_owned()),
        ("SCHEMA_WAIT_SECONDS", "2".to_owned()),
        ("DB_ACQUIRE_TIMEOUT_SECONDS", "2".to_owned()),
    ];
    let output = Dnsorch::output(dir, &["migrate"], &env);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_is_verified_against_the_ca_and_the_host_name() {
    // Arrange: a CA, another CA, and a server with ssl=on and a certificate for localhost.
    let certs = TempDir::new().unwrap();
    make_ca(certs.path(), "ca");
    make_ca(certs.path(), "other-ca");
    let postgres = PrivatePostgres::start_with(|dir| {
        for file in ["ca.pem", "ca.key"] {
            std::fs::copy(certs.path().join(file), dir.join(file)).unwrap();
        }
        make_server_cert(dir, "ca");
        vec![
            "ssl=on".into(),
            format!("ssl_cert_file={}", dir.join("server.crt").display()),
            format!("ssl_key_file={}", dir.join("server.key").display()),
        ]
    });
    let database = postgres.database().await;
    let name = database.rsplit('/').next().unwrap().to_owned();
    let port = postgres.port();
    let ca = certs.path().join("ca.pem").display().to_string();
    let other_ca = certs.path().join("other-ca.pem").display().to_string();
    let url = |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/{name}?{query}");
    let run = TempDir::new().unwrap();

    // Act and assert: verify-full to the certificate's name, with its CA: migrated, over TLS.
    let verified = url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let (ok, said) = migrate(run.path(), &verified);
    assert!(ok, "verify-full with the right CA and host failed: {said}");
    let pool = PgPool::connect(&verified).await.unwrap();
    let (ssl,): (bool,) =
        sqlx::query_as("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(ssl, "the connection is not encrypted");
    let (migrations,): (i64,) = sqlx::query_as("select count(*) from _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(migrations > 0);
    pool.close().await;

    // A host name the certificate does not carry (the address itself): refused.
    let (ok, said) = migrate(
        run.path(),
        &url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
    );
    assert!(
        !ok,
        "verify-full accepted a certificate for another name: {said}"
    );

    // Another CA: refused, whatever the name.
    let (ok, said) = migrate(
        run.path(),
        &url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={other_ca}"),
        ),
    );
    assert!(
        !ok,
        "verify-full accepted a certificate of another CA: {said}"
    );
    let (ok, said) = migrate(
        run.path(),
        &url(
            "localhost",
            &format!("sslmode=verify-ca&sslrootcert={other_ca}"),
        ),
    );
    assert!(
        !ok,
        "verify-ca accepted a certificate of another CA: {said}"
    );

    // verify-ca checks the CA, not the name; require encrypts without checking either.
    let (ok, said) = migrate(
        run.path(),
        &url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")),
    );
    assert!(ok, "verify-ca with the right CA failed: {said}");
    let required = url("127.0.0.1", "sslmode=require");
    let (ok, said) = migrate(run.path(), &required);
    assert!(ok, "require failed: {said}");
    let pool = PgPool::connect(&required).await.unwrap();
    let (ssl,): (bool,) =
        sqlx::query_as("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(ssl, "sslmode=require did not encrypt");
    pool.close().await;
}

/// A redis-server with a plain port (for the readiness check) and a TLS port with the
/// certificate in `dir` (server.crt, server.key of CA `ca`); killed when dropped.
struct TlsRedis {
    child: std::process::Child,
    tls_port: u16,
}

impl TlsRedis {
    fn start(dir: &Path, require_client_certs: bool) -> Self {
        let (port, tls_port) = (free_port(), free_port());
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--tls-port", &tls_port.to_string()])
            .args([
                "--tls-cert-file",
                &dir.join("server.crt").display().to_string(),
            ])
            .args([
                "--tls-key-file",
                &dir.join("server.key").display().to_string(),
            ])
            .args([
                "--tls-ca-cert-file",
                &dir.join("ca.pem").display().to_string(),
            ])
            .args([
                "--tls-auth-clients",
                if require_client_certs { "yes" } else { "no" },
            ])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--dir", &dir.display().to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "ping"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG");
            if pong {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server with TLS did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, tls_port }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a channel on `url` with `tls` takes an id and delivers it back.
async fn round_trip(url: &str, tls: &RedisTls) -> Result<(), String> {
    let stream = format!("tls_{}", uuid::Uuid::new_v4().simple());
    let channel = RedisChannel::with_tls(url, &stream, Duration::from_secs(60), tls)
        .map_err(|e| e.to_string())?;
    let id = RequestId::new();
    channel.enqueue(id).await.map_err(|e| e.to_string())?;
    let delivery = channel
        .next(Duration::from_millis(500))
        .await
        .map_err(|e| e.to_string())?
        .ok_or("nothing delivered")?;
    assert_eq!(delivery.request_id, id);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_verifies_the_server_and_presents_a_client_certificate_when_asked() {
    // Arrange: a CA with a server certificate for localhost and a client certificate, and
    // another CA; one server that asks for no client certificate, one that requires one.
    let dir = TempDir::new().unwrap();
    make_ca(dir.path(), "ca");
    make_ca(dir.path(), "other-ca");
    make_server_cert(dir.path(), "ca");
    make_client_cert(dir.path(), "ca");
    let path = |file: &str| Some(dir.path().join(file));
    let with_ca = RedisTls {
        ca_file: path("ca.pem"),
        ..RedisTls::default()
    };
    let open = TlsRedis::start(dir.path(), false);
    let url = |host: &str, port: u16| format!("rediss://{host}:{port}/0");

    // Act and assert: verified against the CA, by the certificate's name.
    round_trip(&url("localhost", open.tls_port), &with_ca)
        .await
        .expect("rediss:// with the server's CA");
    let other = RedisTls {
        ca_file: path("other-ca.pem"),
        ..RedisTls::default()
    };
    assert!(
        round_trip(&url("localhost", open.tls_port), &other)
            .await
            .is_err()
    );
    assert!(
        round_trip(&url("localhost", open.tls_port), &RedisTls::default())
            .await
            .is_err(),
        "a certificate of a private CA passed for one of the system's roots"
    );
    assert!(
        round_trip(&url("127.0.0.1", open.tls_port), &with_ca)
            .await
            .is_err(),
        "a certificate for localhost passed for 127.0.0.1"
    );
    // Files for a plain redis:// URL are a mistake, said at once.
    let plain = RedisChannel::with_tls("redis://localhost:1/0", "x", Duration::ZERO, &with_ca);
    assert!(plain.is_err_and(|e| e.to_string().contains("rediss://")));

    // A server that requires a client certificate: refused without one, served with one.
    let strict = TlsRedis::start(dir.path(), true);
    assert!(
        round_trip(&url("localhost", strict.tls_port), &with_ca)
            .await
            .is_err()
    );
    let with_client = RedisTls {
        ca_file: path("ca.pem"),
        client_cert_file: path("client.crt"),
        client_key_file: path("client.key"),
    };
    round_trip(&url("localhost", strict.tls_port), &with_client)
        .await
        .expect("rediss:// with a client certificate");
}

/// Waits until `url` answers `client` with a success, or panics with `log`.
async fn wait_served(client: &reqwest::Client, url: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = client.get(url).send().await;
        if answer.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} not served: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_a_worker_speak_https_and_sighup_reloads_a_replaced_certificate() {
    // Arrange: `serve` and a worker over HTTPS with a certificate from `ca`; the files are
    // read again on SIGHUP only (the interval is an hour).
    let certs = TempDir::new().unwrap();
    for ca in ["ca", "other-ca"] {
        make_ca(certs.path(), ca);
    }
    make_server_cert(certs.path(), "ca");
    let topology = Topology::new(shared_postgres_database().await, None).await;
    let file = |name: &str| certs.path().join(name).display().to_string();
    let ops_port = free_port();
    let env = [
        ("TLS_CERT_FILE", file("server.crt")),
        ("TLS_KEY_FILE", file("server.key")),
        ("TLS_RELOAD_INTERVAL_SECONDS", "3600".to_owned()),
        ("OPS_ADDR", format!("127.0.0.1:{ops_port}")),
    ]
    .into_iter()
    .fold(topology.env.clone(), |env, (k, v)| with(&env, k, &v));
    let api = topology
        .api
        .replacen("http://127.0.0.1", "https://localhost", 1);
    let token = Some(topology.admin_token.as_str());
    let old_ca = https_client(&certs.path().join("ca.pem"), None, token);
    let mut serve = Dnsorch::spawn(topology.dir.path(), &["serve"], &env);
    wait_served(&old_ca, &format!("{api}/healthz"), &serve.log).await;
    let worker = topology.worker(&env, 2);
    wait_served(
        &old_ca,
        &format!("https://localhost:{ops_port}/healthz"),
        &worker.log,
    )
    .await;

    // Act: a request goes through over HTTPS; then the certificate is replaced by one from
    // `other-ca` and `serve` gets SIGHUP.
    let body = json!({
        "context": {"account_id": "acct-1"},
        "resource": {"record_type": "A", "domain": "https.example.test", "target": "192.0.2.81"}
    });
    let accepted = old_ca
        .post(format!("{api}/api/v1/dns/create"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let id = accepted.json::<Value>().await.unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    topology
        .wait_for_completed(1, Duration::from_secs(60))
        .await;
    let fresh = TempDir::new().unwrap();
    for name in ["other-ca.pem", "other-ca.key"] {
        std::fs::copy(certs.path().join(name), fresh.path().join(name)).unwrap();
    }
    make_server_cert(fresh.path(), "other-ca");
    for name in ["server.crt", "server.key"] {
        std::fs::copy(fresh.path().join(name), certs.path().join(name)).unwrap();
    }
    let new_ca = https_client(&certs.path().join("other-ca.pem"), None, token);
    assert!(
        new_ca.get(format!("{api}/healthz")).send().await.is_err(),
        "the new certificate was served before SIGHUP"
    );
    serve.signal("-HUP");

    // Assert: new connections get the new certificate; the open one still serves; the
    // worker (not signalled) still has the old one; the request completed.
    wait_served(&new_ca, &format!("{api}/healthz"), &serve.log).await;
    let status = old_ca
        .get(format!("{api}/api/v1/dns/requests/{id}"))
        .send()
        .await
        .expect("the open connection was dropped by the reload");
    let request: Value = status.json().await.unwrap();
    assert_eq!(request["status"], "COMPLETED", "{request}");
    let fresh_old = https_client(&certs.path().join("ca.pem"), None, token);
    assert!(
        fresh_old
            .get(format!("{api}/healthz"))
            .send()
            .await
            .is_err()
    );
    let worker_health = https_client(&certs.path().join("ca.pem"), None, None)
        .get(format!("https://localhost:{ops_port}/healthz"))
        .send()
        .await
        .unwrap();
    assert!(worker_health.status().is_success());
    let log = std::fs::read_to_string(&serve.log).unwrap();
    assert!(log.contains("TLS certificate reloaded"), "{log}");
    assert!(!serve.has_exited(), "SIGHUP stopped serve");
}
