//! Kafka client properties (`KAFKA_PROPERTIES`, `KAFKA_PROPERTY_*`): TLS and SASL_SSL with
//! SCRAM-SHA-512 end to end, and what is refused at start.
//!
//! tansu 0.6.0 takes `--cert` and `--key` but never uses them (its listener is plain TCP), so
//! TLS is terminated by a relay in the test (tokio-rustls on 127.0.0.1, the certificate of a CA
//! the test makes with openssl, for `localhost`) that forwards the bytes to a private tansu
//! whose advertised listener is the relay's port: every connection of a client, bootstrap and
//! broker alike, goes through TLS. tansu's `--authentication` does check SCRAM credentials
//! (PLAIN it does not check), which its CLI creates while it runs without it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use dnsorch::intake::kafka_properties::PropertyVariables;
use tempfile::TempDir;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::*;

use crate::certs::{make_ca, make_server_cert};

/// A TLS-terminating relay on 127.0.0.1 in front of a plain port.
struct TlsRelay {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens on a free port with `server.crt` and `server.key` of `certs`; each connection's
/// handshake done, forwards its bytes to 127.0.0.1:`target` and back.
async fn start_tls_relay(certs: &Path, target: u16) -> TlsRelay {
    let chain = CertificateDer::pem_file_iter(certs.join("server.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(certs.join("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            connections.spawn(async move {
                // A client that does not trust the certificate ends the handshake.
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    TlsRelay { port, task }
}

/// A private tansu reached through a TLS relay only: `localhost:<relay port>`.
struct TlsBroker {
    /// The bootstrap servers of a client: the relay, by the certificate's name.
    brokers: String,
    // Dropped in this order: the broker, then the relay.
    _broker: Reaped,
    _relay: TlsRelay,
}

/// A private tansu in `dir` behind a TLS relay with the certificate in `certs`, holding `topic`
/// (and its dead-letter topic); with `scram_user` (name, password), SCRAM-SHA-512 credentials
/// for it, and tansu then requires authentication.
async fn start_tls_broker(
    dir: &Path,
    certs: &Path,
    topic: &str,
    scram_user: Option<(&str, &str)>,
) -> TlsBroker {
    let plain_port = free_port();
    let plain = format!("127.0.0.1:{plain_port}");
    let relay = start_tls_relay(certs, plain_port).await;
    let brokers = format!("localhost:{}", relay.port);
    // Topics and users are made while tansu needs no authentication (its CLI has none).
    let mut setup = start_broker(dir, plain_port, &format!("tcp://{plain}"), &[]).await;
    create_topic_on(&plain, topic, 1);
    if let Some((user, password)) = scram_user {
        let tansu = std::env::var("TEST_TANSU").unwrap();
        let status = Command::new(tansu)
            .args(["user", "create", user, password, "--mechanism", "scram512"])
            .args(["--broker", &format!("tcp://{plain}")])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "could not create the SCRAM user");
    }
    stop(&mut setup, "-KILL", Duration::from_secs(10)).await;
    let authentication: &[&str] = if scram_user.is_some() {
        &["--authentication"]
    } else {
        &[]
    };
    let broker = start_broker(dir, plain_port, &format!("tcp://{brokers}"), authentication).await;
    TlsBroker {
        brokers,
        _broker: broker,
        _relay: relay,
    }
}

/// Produces a message for `domain` (the trusted account's) through `brokers` with the client
/// `properties`, flushed and closed before returning.
async fn produce_through(brokers: &str, properties: &[(&str, &str)], topic: &str, domain: &str) {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "20000");
    for (name, value) in properties {
        config.set(*name, *value);
    }
    let producer: FutureProducer = config.create().unwrap();
    produce(&producer, topic, &a_record(domain), None).await;
    tokio::task::spawn_blocking(move || drop(producer))
        .await
        .unwrap();
}

/// Properties as `KAFKA_PROPERTY_*` variables.
fn variables(properties: &[(&str, &str)]) -> PropertyVariables {
    PropertyVariables::new(properties.iter().map(|(name, value)| {
        (
            format!(
                "KAFKA_PROPERTY_{}",
                name.to_ascii_uppercase().replace('.', "_")
            ),
            *value,
        )
    }))
}

/// Waits (up to 60 s) until `/readyz` at `address` reports a Kafka error containing `what`:
/// the error.
async fn kafka_error_containing(address: &str, what: &str) -> String {
    let url = format!("{address}/readyz");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready: serde_json::Value = match client::plain_client().get(&url).send().await {
            Ok(response) => response.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        let error = ready["kafka"].as_str().unwrap_or_default();
        if ready["status"] == "degraded" && error.contains(what) {
            return error.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not report a Kafka error with '{what}' within 60 s: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_over_tls_records_what_the_tls_port_carried_and_with_another_ca_records_nothing()
{
    // Arrange: a CA, another CA, a certificate for localhost, and the broker behind TLS with a
    // message that went through the TLS port.
    let certs = TempDir::new().unwrap();
    make_ca(certs.path(), "ca");
    make_ca(certs.path(), "other-ca");
    make_server_cert(certs.path(), "ca");
    let ca = certs.path().join("ca.pem").display().to_string();
    let other_ca = certs.path().join("other-ca.pem").display().to_string();
    let broker_dir = TempDir::new().unwrap();
    let topic = format!("dns_requests_{}", uuid::Uuid::new_v4().simple());
    let broker = start_tls_broker(broker_dir.path(), certs.path(), &topic, None).await;
    let tls = [
        ("security.protocol", "ssl"),
        ("ssl.ca.location", ca.as_str()),
    ];
    produce_through(&broker.brokers, &tls, &topic, "tls.example.test").await;

    // Act: a consumer with the CA, and one with another CA.
    let dir = TempDir::new().unwrap();
    let mut trusting = settings(&dir, &topic);
    trusting.kafka_broker_url = Some(broker.brokers.clone());
    trusting.kafka_property_variables = variables(&tls);
    let app = spawn_app(&dir, trusting).await;
    let recorded = requests_when(&*app.store, 1).await;
    app.stop().await;
    let other_dir = TempDir::new().unwrap();
    let mut distrusting = settings(&other_dir, &topic);
    distrusting.kafka_broker_url = Some(broker.brokers.clone());
    distrusting.kafka_property_variables =
        variables(&[("security.protocol", "ssl"), ("ssl.ca.location", &other_ca)]);
    let other = spawn_app(&other_dir, distrusting).await;
    let error = kafka_error_containing(&other.address, "certificate verify failed").await;

    // Assert: the message over TLS is recorded; with the other CA nothing is, and /readyz
    // says why.
    let domains: Vec<&str> = recorded.iter().map(|r| r.domain.as_str()).collect();
    assert_eq!(domains, ["tls.example.test"]);
    assert!(requests(&*other.store).await.is_empty(), "{error}");
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_protocol_ssl_against_a_plain_port_fails_the_handshake_and_records_nothing() {
    // Arrange: a message on the shared broker, whose port is plain.
    let topic = create_topic(1);
    produce(&producer(), &topic, &a_record("plain.example.test"), None).await;
    let dir = TempDir::new().unwrap();
    let mut over_tls = settings(&dir, &topic);
    over_tls.kafka_property_variables = variables(&[
        ("security.protocol", "ssl"),
        // tansu takes the TLS hello for the start of a request and waits for the rest: the
        // handshake ends at this timeout rather than librdkafka's 30 s.
        ("socket.connection.setup.timeout.ms", "2000"),
    ]);

    // Act
    let app = spawn_app(&dir, over_tls).await;
    let error = kafka_error_containing(&app.address, "SSL_HANDSHAKE").await;

    // Assert: the client spoke TLS (the properties reached it), so nothing was read.
    assert!(requests(&*app.store).await.is_empty(), "{error}");
    app.stop().await;
}

/// `dnsorch run` consuming `topic` from `brokers` with the extra environment `env`, its API on
/// `port`, its output in `dir`/dnsorch.log.
fn spawn_run_with(
    dir: &TempDir,
    brokers: &str,
    port: u16,
    topic: &str,
    env: &[(&str, &str)],
) -> Reaped {
    let group = format!("group_{}", uuid::Uuid::new_v4().simple());
    let log = std::fs::File::create(dir.path().join("dnsorch.log")).unwrap();
    let mut command = run_command(brokers, port, dir, topic, &group);
    command
        .envs(env.iter().copied())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    Reaped(command.spawn().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_with_scram_sha_512_and_the_password_from_the_environment_records_a_message() {
    // Arrange: the broker behind TLS requires authentication; user dnsorch has SCRAM-SHA-512
    // credentials. The consumer's properties are in a file, its password in the environment.
    let certs = TempDir::new().unwrap();
    make_ca(certs.path(), "ca");
    make_server_cert(certs.path(), "ca");
    let ca = certs.path().join("ca.pem").display().to_string();
    let broker_dir = TempDir::new().unwrap();
    let topic = format!("dns_requests_{}", uuid::Uuid::new_v4().simple());
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let broker = start_tls_broker(
        broker_dir.path(),
        certs.path(),
        &topic,
        Some(("dnsorch", &password)),
    )
    .await;
    let sasl = [
        ("security.protocol", "sasl_ssl"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "dnsorch"),
        ("ssl.ca.location", ca.as_str()),
    ];
    let mut with_password = sasl.to_vec();
    with_password.push(("sasl.password", &password));
    produce_through(&broker.brokers, &with_password, &topic, "sasl.example.test").await;
    let properties = certs.path().join("client.properties");
    let lines: String = sasl.iter().map(|(n, v)| format!("{n}={v}\n")).collect();
    std::fs::write(&properties, format!("# dnsorch's Kafka client\n{lines}")).unwrap();
    let properties = properties.display().to_string();

    // Act: one consumer with the password, one with a wrong one.
    let dir = TempDir::new().unwrap();
    let store = store_in(&dir).await;
    let mut consumer = spawn_run_with(
        &dir,
        &broker.brokers,
        free_port(),
        &topic,
        &[
            ("KAFKA_PROPERTIES", &properties),
            ("KAFKA_PROPERTY_SASL_PASSWORD", &password),
        ],
    );
    wait_for_exactly(&store, 1).await;
    stop(&mut consumer, "-TERM", Duration::from_secs(30)).await;
    let wrong_dir = TempDir::new().unwrap();
    let wrong_store = store_in(&wrong_dir).await;
    let wrong_port = free_port();
    let wrong = format!("wrong-{password}");
    let mut refused = spawn_run_with(
        &wrong_dir,
        &broker.brokers,
        wrong_port,
        &topic,
        &[
            ("KAFKA_PROPERTIES", &properties),
            ("KAFKA_PROPERTY_SASL_PASSWORD", &wrong),
            ("LOG_LEVEL", "info"),
        ],
    );
    let error = kafka_error_containing(
        &format!("http://127.0.0.1:{wrong_port}"),
        "SASL SCRAM authentication failed",
    )
    .await;
    stop(&mut refused, "-TERM", Duration::from_secs(30)).await;

    // Assert: the message is recorded by the consumer with the password; the other records
    // nothing, says why, and never shows its password.
    let domains: Vec<String> = requests(&store)
        .await
        .into_iter()
        .map(|r| r.domain)
        .collect();
    assert_eq!(domains, ["sasl.example.test"]);
    assert_eq!(recorded(&wrong_store).await, 0, "{error}");
    assert!(
        !error.contains(&wrong),
        "the password is in /readyz: {error}"
    );
    let log = std::fs::read_to_string(wrong_dir.path().join("dnsorch.log")).unwrap();
    assert!(log.contains("SASL SCRAM authentication failed"), "{log}");
    assert!(!log.contains(&wrong), "the password is in the log:\n{log}");
    drop(broker);
}

/// `dnsorch run` with Kafka settings and `env`, which must stop at start (within 30 s): what
/// it said.
fn refused_at_start(dir: &TempDir, env: &[(&str, &str)]) -> String {
    let output = dir.path().join("refused.log");
    let log = std::fs::File::create(&output).unwrap();
    let mut command = run_command(&broker(), 0, dir, "dns_requests", "group");
    command
        .envs(env.iter().copied())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut child = Reaped(command.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = std::fs::read_to_string(&output).unwrap();
    assert!(
        status.is_some_and(|s| !s.success()),
        "dnsorch did not stop with an error ({status:?}):\n{said}"
    );
    said
}

#[tokio::test]
async fn a_reserved_property_is_refused_at_start_naming_it_and_what_controls_it() {
    // Arrange
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("client.properties");
    std::fs::write(&file, "# offsets\n\nenable.auto.offset.store=true\n").unwrap();
    let file = file.display().to_string();

    // Act
    let by_variable = refused_at_start(&dir, &[("KAFKA_PROPERTY_GROUP_ID", "mine")]);
    let by_file = refused_at_start(&dir, &[("KAFKA_PROPERTIES", &file)]);

    // Assert
    assert!(
        by_variable
            .contains("KAFKA_PROPERTY_GROUP_ID: group.id is set by dnsorch; use KAFKA_GROUP_ID"),
        "{by_variable}"
    );
    assert!(
        by_file.contains(&format!(
            "KAFKA_PROPERTIES {file} line 3: enable.auto.offset.store is set by dnsorch and cannot be changed"
        )),
        "{by_file}"
    );
}

#[tokio::test]
async fn a_property_the_kafka_client_refuses_stops_the_start_naming_it_and_no_secret_is_shown() {
    // Arrange: a Java client's JAAS line (no librdkafka property) holding a password, and a
    // protocol librdkafka does not know, in a file.
    let dir = TempDir::new().unwrap();
    let secret = format!("jaas-{}", uuid::Uuid::new_v4().simple());
    let jaas = format!(
        "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"dnsorch\" password=\"{secret}\";"
    );
    let file = dir.path().join("client.properties");
    std::fs::write(&file, "sasl.username=dnsorch\nsecurity.protocol=tls\n").unwrap();
    let file = file.display().to_string();

    // Act
    let unknown = refused_at_start(&dir, &[("KAFKA_PROPERTY_SASL_JAAS_CONFIG", &jaas)]);
    let bad_value = refused_at_start(&dir, &[("KAFKA_PROPERTIES", &file)]);

    // Assert
    assert!(
        !unknown.contains(&secret),
        "the secret is shown:\n{unknown}"
    );
    assert!(
        unknown
            .contains("KAFKA_PROPERTY_SASL_JAAS_CONFIG: the Kafka client refuses sasl.jaas.config"),
        "{unknown}"
    );
    assert!(
        bad_value.contains(&format!(
            "KAFKA_PROPERTIES {file} line 2: the Kafka client refuses security.protocol"
        )),
        "{bad_value}"
    );
}
