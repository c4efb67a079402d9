//! Forward mode to an `https://` API with `API_CA_FILE`: a consumer that trusts another CA
//! posts nothing (each attempt fails at the handshake and is counted), and one that trusts the
//! API's CA, in the same group, then records the message exactly once.

use super::*;

use crate::certs;

#[tokio::test]
async fn forward_mode_posts_over_https_only_to_an_api_whose_certificate_its_ca_signed() {
    // Arrange: an API over HTTPS (a certificate for localhost from `ca`), with a forwarder
    // token; one message for the trusted account on the topic.
    let certs = TempDir::new().unwrap();
    certs::make_ca(certs.path(), "ca");
    certs::make_ca(certs.path(), "other-ca");
    certs::make_server_cert(certs.path(), "ca");
    let topic = create_topic(1);
    let api_dir = TempDir::new().unwrap();
    let forwarder = cli_token(
        &api_dir,
        &["--account", "bridge", "--name", "bridge", "--forwarder"],
    );
    let mut api_settings = settings(&api_dir, "unused");
    api_settings.kafka_broker_url = None;
    api_settings.tls_cert_file = Some(certs.path().join("server.crt"));
    api_settings.tls_key_file = Some(certs.path().join("server.key"));
    let api = spawn_app(&api_dir, api_settings).await;
    let port = api.address.rsplit(':').next().unwrap().to_owned();
    let consumer_dir = TempDir::new().unwrap();
    let token_file = consumer_dir.path().join("api.token");
    std::fs::write(&token_file, format!("{forwarder}\n")).unwrap();
    let group = format!("group_{}", uuid::Uuid::new_v4().simple());
    let forwarding = |ca: &str| {
        let mut s = settings(&consumer_dir, &topic);
        s.kafka_group_id = group.clone();
        s.api_url = Some(format!("https://localhost:{port}/api/v1/dns/create"));
        s.api_ca_file = Some(certs.path().join(ca));
        s.api_token_file = Some(token_file.clone());
        s.worker_concurrency = 0;
        s
    };
    produce_a_records(&producer(), &topic, "tls", 1).await;

    // Act: a consumer that trusts `other-ca` tries until its posts have failed twice.
    let distrusting = spawn_app(&consumer_dir, forwarding("other-ca.pem")).await;
    wait_for("two failed posts", Duration::from_secs(30), async || {
        distrusting
            .counter("dnsorch_kafka_forward_failures_total", &["unreachable"])
            .await
            >= 2.0
    })
    .await;
    let before = requests(&*api.store).await.len();
    distrusting.stop().await;
    // Then one that trusts `ca`, in the same group.
    let trusting = spawn_app(&consumer_dir, forwarding("ca.pem")).await;

    // Assert: nothing reached the API before; the message is then recorded once.
    assert_eq!(before, 0);
    wait_for(
        "the forwarded request",
        Duration::from_secs(30),
        async || requests(&*api.store).await.len() == 1,
    )
    .await;
    trusting.stop().await;
    assert_eq!(requests(&*api.store).await.len(), 1);
}
