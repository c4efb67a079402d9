//! Answers that are not the server's do not decide a change. A purpose-built peer on 127.0.0.1
//! is the zone's `server`: it relays what dnsorch sends to the real BIND and BIND's answers
//! back, but first forges: to the first UPDATE of a name, over TCP, an answer of one
//! [`Forgery`] kind instead of BIND's; before each answer to a query, over UDP, datagrams that
//! do not answer it. Every change must still reach BIND (checked with `dig`), a forged
//! REFUSED only costing an attempt. The real refusals from BIND (a wrong key; a policy that
//! denies a name) still fail at once: `a_wrong_tsig_key_fails_with_notauth_and_is_not_retried`
//! and the batching tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, TSigResponseContext, TSigner};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

use super::*;

/// An answer the peer sends to an UPDATE instead of BIND's.
#[derive(Debug, Clone, Copy)]
enum Forgery {
    /// REFUSED, signed with another secret under the key's name.
    RefusedSignedWithAnotherSecret,
    /// REFUSED, signed with the real key, one bit of the MAC flipped.
    RefusedWithADamagedMac,
    /// REFUSED without a TSIG record.
    RefusedUnsigned,
    /// NOTAUTH without a TSIG error, one bit of the MAC flipped.
    NotauthWithADamagedMac,
    /// SERVFAIL, signed with another secret.
    ServfailSignedWithAnotherSecret,
    /// REFUSED for the zone `other.test.`, signed with the real key.
    RefusedForAnotherZone,
    /// REFUSED with QR=0 (a query, not a response), signed with the real key.
    RefusedNotAResponse,
    /// SERVFAIL signed with the real key: an answer that is the server's for all dnsorch can
    /// tell, so it counts (transient). Shows that the peer's signatures verify.
    ServfailSignedWithTheKey,
}

/// The forging peer: UDP and TCP on one port of 127.0.0.1.
struct Peer {
    address: SocketAddr,
    /// Messages forged so far (UDP datagrams and TCP answers).
    forged: Arc<AtomicUsize>,
    /// BIND's answers relayed over UDP so far.
    relayed_udp: Arc<AtomicUsize>,
}

/// The state the peer's tasks share.
struct Forger {
    bind: SocketAddr,
    /// The real key and another secret under its name.
    key: TSigner,
    other_key: TSigner,
    /// The forgery for the first UPDATE of each owner name (lower case, absolute); taken out
    /// once sent.
    updates: Mutex<HashMap<String, Forgery>>,
    /// Whether each answer to a query is preceded by mismatched datagrams.
    forge_queries: bool,
    forged: Arc<AtomicUsize>,
    relayed_udp: Arc<AtomicUsize>,
}

impl Peer {
    /// A peer in front of the BIND at `bind` (key `dnsorch-test`, `secret_file`).
    async fn start(bind: &Server, updates: HashMap<String, Forgery>, forge_queries: bool) -> Self {
        let secret = std::fs::read_to_string(&bind.secret_file).unwrap();
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret.trim())
            .unwrap();
        let signer = |secret: Vec<u8>| {
            TSigner::new(
                secret,
                TsigAlgorithm::HmacSha256,
                Name::from_ascii("dnsorch-test.").unwrap(),
                300,
            )
            .unwrap()
        };
        let (udp, tcp) = dns_sockets().await;
        let udp = Arc::new(udp);
        let address = udp.local_addr().unwrap();
        let forger = Arc::new(Forger {
            bind: SocketAddr::from(([127, 0, 0, 1], bind.port)),
            key: signer(secret),
            other_key: signer(b"another secret of thirty-two by!".to_vec()),
            updates: Mutex::new(updates),
            forge_queries,
            forged: Arc::default(),
            relayed_udp: Arc::default(),
        });
        let peer = Self {
            address,
            forged: forger.forged.clone(),
            relayed_udp: forger.relayed_udp.clone(),
        };
        let queries = forger.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0; 65_535];
            while let Ok((n, client)) = udp.recv_from(&mut buffer).await {
                let (forger, udp, query) = (queries.clone(), udp.clone(), buffer[..n].to_vec());
                tokio::spawn(async move { forger.answer_query(&udp, client, &query).await });
            }
        });
        tokio::spawn(async move {
            while let Ok((stream, _)) = tcp.accept().await {
                tokio::spawn(forger.clone().serve_tcp(stream));
            }
        });
        peer
    }

    /// A [`Server`] whose port is the peer's, with the real key files: a zones file made from
    /// it sends the zone's updates and queries (also `verify_servers`) to the peer.
    fn as_bind(&self, real: &Server) -> Server {
        Server {
            port: self.address.port(),
            secret_file: real.secret_file.clone(),
            key_file: real.key_file.clone(),
        }
    }
}

impl Forger {
    /// Sends the datagrams that do not answer `query` (when forging queries), then BIND's
    /// answer with the question's name in upper case (names compare case-insensitively).
    async fn answer_query(&self, udp: &UdpSocket, client: SocketAddr, query: &[u8]) {
        let Ok(asked) = Message::from_vec(query) else {
            return;
        };
        if self.forge_queries {
            for datagram in mismatched_answers(&asked) {
                udp.send_to(&datagram, client).await.unwrap();
                self.forged.fetch_add(1, Ordering::SeqCst);
            }
        }
        let relay = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        relay.connect(self.bind).await.unwrap();
        relay.send(query).await.unwrap();
        let mut buffer = vec![0; 65_535];
        let read = tokio::time::timeout(Duration::from_secs(5), relay.recv(&mut buffer)).await;
        let Ok(Ok(n)) = read else {
            return;
        };
        let mut answer = Message::from_vec(&buffer[..n]).unwrap();
        if self.forge_queries {
            for question in &mut answer.queries {
                question.name = Name::from_ascii(question.name.to_ascii().to_uppercase()).unwrap();
            }
        }
        // Counted first: once dnsorch has the answer, the count holds it.
        self.relayed_udp.fetch_add(1, Ordering::SeqCst);
        udp.send_to(&answer.to_vec().unwrap(), client)
            .await
            .unwrap();
    }

    /// One TCP connection from dnsorch: each UPDATE gets its name's forgery the first time,
    /// else BIND's answer over a connection of its own.
    async fn serve_tcp(self: Arc<Self>, mut client: TcpStream) {
        let mut upstream: Option<TcpStream> = None;
        while let Ok(request) = read_frame(&mut client).await {
            let Ok(update) = Message::from_vec(&request) else {
                return;
            };
            let name = update
                .authorities
                .first()
                .map(|r| r.name.to_ascii().to_lowercase());
            let forgery = name.and_then(|n| self.updates.lock().unwrap().remove(&n));
            let answer = match forgery {
                Some(forgery) => {
                    self.forged.fetch_add(1, Ordering::SeqCst);
                    self.forged_update_answer(forgery, &update)
                }
                None => {
                    if upstream.is_none() {
                        upstream = Some(TcpStream::connect(self.bind).await.unwrap());
                    }
                    let bind = upstream.as_mut().unwrap();
                    write_frame(bind, &request).await.unwrap();
                    read_frame(bind).await.unwrap()
                }
            };
            if write_frame(&mut client, &answer).await.is_err() {
                return;
            }
        }
    }

    fn forged_update_answer(&self, forgery: Forgery, update: &Message) -> Vec<u8> {
        let rcode = match forgery {
            Forgery::NotauthWithADamagedMac => ResponseCode::NotAuth,
            Forgery::ServfailSignedWithAnotherSecret | Forgery::ServfailSignedWithTheKey => {
                ResponseCode::ServFail
            }
            Forgery::RefusedSignedWithAnotherSecret
            | Forgery::RefusedWithADamagedMac
            | Forgery::RefusedUnsigned
            | Forgery::RefusedForAnotherZone
            | Forgery::RefusedNotAResponse => ResponseCode::Refused,
        };
        let id = update.metadata.id;
        let mut answer = Message::new(id, MessageType::Response, OpCode::Update);
        answer.metadata.response_code = rcode;
        answer.add_queries(update.queries.iter().cloned());
        match forgery {
            Forgery::RefusedForAnotherZone => {
                answer.queries[0].name = Name::from_ascii("other.test.").unwrap();
            }
            Forgery::RefusedNotAResponse => answer.metadata.message_type = MessageType::Query,
            _ => {}
        }
        // Signed as a server signs an answer: over the request's MAC and the answer.
        let request_mac = update.signature().unwrap().data.mac.clone();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let unsigned = answer.to_vec().unwrap();
        let sign = |key: &TSigner| {
            TSigResponseContext::new(id, now, key.clone(), request_mac.clone(), None)
                .sign(&unsigned)
                .unwrap()
        };
        match forgery {
            Forgery::RefusedSignedWithAnotherSecret | Forgery::ServfailSignedWithAnotherSecret => {
                answer.set_signature(sign(&self.other_key));
            }
            Forgery::RefusedWithADamagedMac | Forgery::NotauthWithADamagedMac => {
                let mut signature = sign(&self.key);
                signature.data.mac[0] ^= 1;
                answer.set_signature(signature);
            }
            Forgery::RefusedUnsigned => {}
            Forgery::RefusedForAnotherZone
            | Forgery::RefusedNotAResponse
            | Forgery::ServfailSignedWithTheKey => {
                answer.set_signature(sign(&self.key));
            }
        }
        answer.to_vec().unwrap()
    }
}

/// REFUSED datagrams that do not answer `query`: another message id, another question, QR=0,
/// another opcode. Taken for the answer, any of them would fail the request at once.
fn mismatched_answers(query: &Message) -> Vec<Vec<u8>> {
    let refused = |edit: fn(&mut Message)| {
        let mut answer = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        answer.metadata.response_code = ResponseCode::Refused;
        answer.add_queries(query.queries.iter().cloned());
        edit(&mut answer);
        answer.to_vec().unwrap()
    };
    vec![
        refused(|a| a.metadata.id = a.metadata.id.wrapping_add(1)),
        refused(|a| a.queries[0].name = Name::from_ascii("elsewhere.example.test.").unwrap()),
        refused(|a| a.metadata.message_type = MessageType::Query),
        refused(|a| a.metadata.op_code = OpCode::Notify),
    ]
}

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let length = stream.read_u16().await?;
    let mut message = vec![0; usize::from(length)];
    stream.read_exact(&mut message).await?;
    Ok(message)
}

async fn write_frame(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<()> {
    let mut framed = u16::try_from(message.len()).unwrap().to_be_bytes().to_vec();
    framed.extend_from_slice(message);
    stream.write_all(&framed).await
}

/// The app with the zone `example.test` served by `peer`.
async fn app_behind(peer: &Peer, bind: &Server) -> App {
    let bind = peer.as_bind(bind);
    spawn_app(|dir, settings| {
        settings.dnsorch_config = Some(zones_file(
            dir,
            &bind,
            &bind.secret_file,
            &playbook("nsupdate.yml"),
        ));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_answers_to_an_update_cost_an_attempt_and_never_fail_the_change() {
    // Arrange: one name per forgery, and what the first attempt's log must say of it.
    let bind = shared_bind();
    let run = unique("forged");
    let cases = [
        (
            Forgery::RefusedSignedWithAnotherSecret,
            "failed TSIG verification",
        ),
        (Forgery::RefusedWithADamagedMac, "failed TSIG verification"),
        (Forgery::RefusedUnsigned, "is not signed"),
        (Forgery::NotauthWithADamagedMac, "failed TSIG verification"),
        (
            Forgery::ServfailSignedWithAnotherSecret,
            "failed TSIG verification",
        ),
        (
            Forgery::RefusedForAnotherZone,
            "its question is not the request's",
        ),
        (Forgery::RefusedNotAResponse, "it is not a response"),
        (Forgery::ServfailSignedWithTheKey, "): SERVFAIL in"),
    ];
    let name = |i: usize| format!("f{i}-{run}.example.test");
    let updates = cases
        .iter()
        .enumerate()
        .map(|(i, (forgery, _))| (format!("{}.", name(i)), *forgery))
        .collect();
    let peer = Peer::start(&bind, updates, false).await;
    let app = app_behind(&peer, &bind).await;

    // Act: one create per name, one after another (so no two share an UPDATE message).
    let mut finished = Vec::new();
    for i in 0..cases.len() {
        let create = body("acct-forged", "A", &name(i), Some("192.0.2.50"), None);
        finished.push(app.apply("create", &create).await);
    }

    // Assert: each forged answer cost the first attempt (with the reason it was not taken,
    // then a retry: after a check of the server found the change absent, for an untrusted
    // answer, whose change may have been applied), and the second, with BIND's answer,
    // completed; the record is in BIND.
    for (i, ((forgery, reason), request)) in cases.iter().zip(&finished).enumerate() {
        assert_completed(request);
        assert_eq!(request["attempts"], 2, "{forgery:?}: {request}");
        let log = log_of(request);
        let again = match forgery {
            Forgery::ServfailSignedWithTheKey => "retrying in",
            _ => "the change is not in place; applying it again",
        };
        let (Some(said), Some(retrying)) = (log.find(reason), log.find(again)) else {
            panic!("{forgery:?}: the log does not say '{reason}' and '{again}': {log}");
        };
        assert!(said < retrying, "{forgery:?}: {log}");
        assert_eq!(log.matches(again).count(), 1, "{forgery:?}: {log}");
        assert_eq!(dig(bind.port, &name(i), "A"), ["192.0.2.50"], "{forgery:?}");
    }
    assert_eq!(peer.forged.load(Ordering::SeqCst), cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_that_do_not_answer_a_query_are_ignored_and_the_answer_is_taken() {
    // Arrange: before each of BIND's answers, four forged REFUSED datagrams (another id,
    // another question, QR=0, another opcode); BIND's answer has the question in upper case.
    let bind = shared_bind();
    let peer = Peer::start(&bind, HashMap::new(), true).await;
    let app = app_behind(&peer, &bind).await;
    let domain = format!("{}.example.test", unique("mismatch"));

    // Act: a create, which queries before its update and to verify it.
    let request = app
        .apply(
            "create",
            &body("acct-mismatch", "A", &domain, Some("192.0.2.51"), None),
        )
        .await;

    // Assert: completed at the first attempt, every answer taken after the forged datagrams
    // sent before it, and the record is in BIND.
    assert_completed(&request);
    assert_eq!(request["attempts"], 1, "{request}");
    let relayed = peer.relayed_udp.load(Ordering::SeqCst);
    // The read before the update, then the primary's and the verify_servers' verification.
    assert!(relayed >= 3, "{relayed} answers relayed");
    assert_eq!(peer.forged.load(Ordering::SeqCst), 4 * relayed);
    assert!(
        !log_of(&request).contains("REFUSED"),
        "{}",
        log_of(&request)
    );
    assert_eq!(dig(bind.port, &domain, "A"), ["192.0.2.51"]);
}
