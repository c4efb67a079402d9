//! DNS helpers shared by the backends that verify by query: names, RDATA in hickory's form,
//! one query (RD=0, UDP with EDNS, TCP when truncated), and polling a server until it shows a
//! change or a bound passes (RD=0, names compared case-insensitively, TXT strings
//! concatenated, a create's TTL compared too).
//!
//! A message counts as the answer to a query only if it is a response (QR set) with the
//! query's message id, its opcode and its question (names compared case-insensitively), see
//! [`mismatch`]. Over UDP anything else arriving on the query's socket (a stray or forged
//! datagram) is ignored and the read goes on until the timeout, as resolvers do; over TCP
//! there is one answer to read, so a mismatched one is an error. Queries are not signed, so
//! their answers carry no TSIG to verify.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType as DnsType, rdata};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

use super::{Observed, PlannedChange, ProvisionError};
use crate::domain::{LiveRrset, Operation, RecordData, RecordType};

/// The first pause between verification queries; it doubles up to `MAX_POLL`.
const FIRST_POLL: Duration = Duration::from_millis(20);
const MAX_POLL: Duration = Duration::from_millis(500);

/// What verification waits for.
pub(super) enum Expect {
    /// Every one of these records, with the TTL.
    Present { rdatas: Vec<RData>, ttl: u32 },
    /// None of these records; with none listed, the whole RRset is gone.
    Absent { rdatas: Vec<RData> },
    /// Exactly these records, with the TTL (a replace).
    Exactly { rdatas: Vec<RData>, ttl: u32 },
}

impl Expect {
    pub(super) fn holds(&self, records: &[Record]) -> bool {
        let held = |rdata: &RData, ttl: Option<u32>| {
            records
                .iter()
                .any(|r| ttl.is_none_or(|ttl| r.ttl == ttl) && same_data(&r.data, rdata))
        };
        match self {
            Self::Present { rdatas, ttl } => rdatas.iter().all(|d| held(d, Some(*ttl))),
            Self::Absent { rdatas } if rdatas.is_empty() => records.is_empty(),
            Self::Absent { rdatas } => !rdatas.iter().any(|d| held(d, None)),
            Self::Exactly { rdatas, ttl } => exactly(records, rdatas, Some(*ttl)),
        }
    }
}

/// Whether `records` are exactly `rdatas` (and, given one, all with the TTL).
fn exactly(records: &[Record], rdatas: &[RData], ttl: Option<u32>) -> bool {
    records.len() == rdatas.len()
        && records.iter().all(|r| {
            ttl.is_none_or(|ttl| r.ttl == ttl) && rdatas.iter().any(|d| same_data(&r.data, d))
        })
        && rdatas
            .iter()
            .all(|d| records.iter().any(|r| same_data(&r.data, d)))
}

/// Polls `server` (the one that must show the change) until `expect` holds; the note for the
/// request's log, or why not: the change was made (or sent) but is not seen, so its outcome is
/// unknown ([`ProvisionError::Uncertain`]) until a later query settles it.
pub(super) async fn verify_at(
    server: &str,
    name: &Name,
    dns_type: DnsType,
    expect: &Expect,
    bound: Duration,
    timeout: Duration,
) -> Result<String, ProvisionError> {
    let result = poll(server, name, dns_type, expect, bound, timeout).await;
    let note = result.note(server, bound);
    match result {
        Poll::Seen(..) => Ok(note),
        Poll::Mismatch(_) | Poll::Unreachable(_) => Err(ProvisionError::Uncertain(format!(
            "the change was accepted but {note}"
        ))),
    }
}

/// Where and how long a backend verifies a change by query.
pub(super) struct Verification<'a> {
    /// The server that must show the change.
    pub(super) primary: &'a str,
    /// Other servers, whose results are only logged.
    pub(super) others: &'a [String],
    /// How long a server may take to show the change.
    pub(super) bound: Duration,
    /// The bound on one query.
    pub(super) timeout: Duration,
}

impl Verification<'_> {
    /// Polls the primary until it shows `expect` (the verification time; see [`verify_at`]),
    /// then the other servers; a note for each in `notes`.
    pub(super) async fn run(
        &self,
        name: &Name,
        dns_type: DnsType,
        expect: &Expect,
        notes: &mut Vec<String>,
    ) -> Result<chrono::DateTime<chrono::Utc>, ProvisionError> {
        let (bound, timeout) = (self.bound, self.timeout);
        let primary = verify_at(self.primary, name, dns_type, expect, bound, timeout).await?;
        notes.push(format!("{primary} (primary)"));
        let verified_at = chrono::Utc::now();
        let others = self.others.iter().map(|server| async move {
            (
                server,
                poll(server, name, dns_type, expect, bound, timeout).await,
            )
        });
        for (server, result) in futures::future::join_all(others).await {
            notes.push(result.note(server, bound));
        }
        Ok(verified_at)
    }
}

/// The change's records in hickory's form (none for a whole-RRset delete).
///
/// # Errors
/// A record hickory cannot hold (see [`rdata`]).
pub(super) fn change_rdatas(change: &PlannedChange) -> Result<Vec<RData>, ProvisionError> {
    change.records.iter().map(rdata).collect()
}

/// Whether `change` is in place at `server`: one query. A create is in place when its records
/// are there (at any TTL: the RRset's TTL is the last change's); a delete when its records (or
/// RRset) are gone; a replace when the RRset is exactly its records.
///
/// # Errors
/// The server did not answer (transient), or the change's data is invalid.
pub(super) async fn observe(
    server: &str,
    change: &PlannedChange,
    timeout: Duration,
) -> Result<Observed, ProvisionError> {
    let name = absolute(&change.domain).map_err(ProvisionError::Rejected)?;
    let live = query(server, &name, dns_type(change.record_type), timeout).await?;
    observed(server, change, &name, &live)
}

/// Whether `change` is in place, given the records `source` holds at its name and type (see
/// [`observe`]).
///
/// # Errors
/// The change's data is invalid, or it is an adoption.
pub(super) fn observed(
    source: &str,
    change: &PlannedChange,
    name: &Name,
    live: &[Record],
) -> Result<Observed, ProvisionError> {
    let rdatas = change_rdatas(change)?;
    let present = |rdata: &RData| live.iter().any(|r| same_data(&r.data, rdata));
    let in_place = match change.operation {
        Operation::Create => rdatas.iter().all(present),
        Operation::Delete if rdatas.is_empty() => live.is_empty(),
        Operation::Delete => !rdatas.iter().any(present),
        Operation::Replace => exactly(live, &rdatas, None),
        Operation::Adopt => {
            return Err(ProvisionError::Rejected(
                "an adoption has no change to look for".into(),
            ));
        }
    };
    let held: Vec<String> = live.iter().map(|r| r.data.to_string()).collect();
    let note = format!(
        "{source} holds {name} {}: {}",
        change.record_type.as_str(),
        if held.is_empty() {
            "nothing".to_owned()
        } else {
            held.join(", ")
        }
    );
    Ok(Observed { in_place, note })
}

pub(super) enum Poll {
    /// Seen after this many queries and this long.
    Seen(u32, Duration),
    /// The server answered, but never as expected; what it held last.
    Mismatch(String),
    /// The server did not answer; the last error.
    Unreachable(String),
}

impl Poll {
    /// What happened at `server`, for the request's log.
    pub(super) fn note(&self, server: &str, bound: Duration) -> String {
        match self {
            Self::Seen(queries, elapsed) => format!(
                "verified at {server} after {queries} queries, {} ms",
                elapsed.as_millis()
            ),
            Self::Mismatch(found) => format!(
                "{server} does not show the change within {:.1}s (it holds: {found})",
                bound.as_secs_f64()
            ),
            Self::Unreachable(e) => format!("could not verify at {server}: {e}"),
        }
    }
}

/// Queries `server` until `expect` holds or `bound` passes.
pub(super) async fn poll(
    server: &str,
    name: &Name,
    dns_type: DnsType,
    expect: &Expect,
    bound: Duration,
    timeout: Duration,
) -> Poll {
    let started = Instant::now();
    let mut pause = FIRST_POLL;
    let mut queries = 0;
    loop {
        queries += 1;
        let last = match query(server, name, dns_type, timeout).await {
            Ok(records) if expect.holds(&records) => {
                return Poll::Seen(queries, started.elapsed());
            }
            Ok(records) => {
                let found: Vec<String> = records
                    .iter()
                    .map(|r| format!("ttl {} {}", r.ttl, r.data))
                    .collect();
                Poll::Mismatch(if found.is_empty() {
                    "nothing".into()
                } else {
                    found.join(", ")
                })
            }
            Err(e) => Poll::Unreachable(e.to_string()),
        };
        if started.elapsed() + pause > bound {
            return last;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// One query with RD=0: over UDP with EDNS, again over TCP when truncated. Returns the
/// answer's records of `name`/`dns_type`.
pub(super) async fn query(
    server: &str,
    name: &Name,
    dns_type: DnsType,
    timeout: Duration,
) -> Result<Vec<Record>, ProvisionError> {
    let mut message = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = false;
    let mut question = Query::new();
    question
        .set_name(name.clone())
        .set_query_class(DNSClass::IN)
        .set_query_type(dns_type);
    message.add_query(question);
    let mut edns = Edns::new();
    edns.set_max_payload(4096).set_version(0);
    message.set_edns(edns);
    let request = message
        .to_vec()
        .map_err(|e| ProvisionError::Rejected(format!("could not encode a query: {e}")))?;
    let exchange = async {
        let address = resolve(server).await?;
        let bind: SocketAddr = if address.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(bind).await?;
        socket.connect(address).await?;
        socket.send(&request).await?;
        let mut buffer = vec![0; 65_535];
        loop {
            let n = socket.recv(&mut buffer).await?;
            // Anything else on the socket (a stray or forged datagram) is ignored.
            let Ok(answer) = Message::from_vec(&buffer[..n]) else {
                continue;
            };
            if mismatch(&message, &answer).is_some() {
                continue;
            }
            if !answer.metadata.truncation {
                return Ok(answer);
            }
            let mut stream = TcpStream::connect(address).await?;
            let bytes = exchange_on(&mut stream, &request).await?;
            return answer_to(&message, &bytes);
        }
    };
    let answer = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return Err(ProvisionError::Transient(format!("{server}: {e}"))),
        Err(_) => {
            return Err(ProvisionError::Transient(format!(
                "{server}: no answer within {:.1}s",
                timeout.as_secs_f64()
            )));
        }
    };
    match answer.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(records_of(answer, name, dns_type)),
        ResponseCode::ServFail => Err(ProvisionError::Transient(format!(
            "{server} answered SERVFAIL for {name} {dns_type}"
        ))),
        other => Err(permanent_rcode(other, "query")),
    }
}

/// The `dns_type` records at `name` in an answer: its answer section's, or, for NS at a name
/// the zone delegates, the referral's (RFC 1034 4.3.2: the authoritative server answers the
/// delegation's NS in the authority section, not authoritatively, as BIND and Knot both do).
fn records_of(answer: Message, name: &Name, dns_type: DnsType) -> Vec<Record> {
    let at_name = |r: &Record| r.record_type() == dns_type && r.name == *name;
    let answers: Vec<Record> = answer.answers.into_iter().filter(at_name).collect();
    let referral = dns_type == DnsType::NS
        && answers.is_empty()
        && !answer.metadata.authoritative
        && answer.metadata.response_code == ResponseCode::NoError;
    if referral {
        return answer.authorities.into_iter().filter(at_name).collect();
    }
    answers
}

/// `bytes` as the answer to `query`. Over TCP there is one answer to read, so one that does
/// not parse or does not answer the query ([`mismatch`]) is an error, not skipped.
fn answer_to(query: &Message, bytes: &[u8]) -> std::io::Result<Message> {
    let answer = Message::from_vec(bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    if let Some(mismatch) = mismatch(query, &answer) {
        return Err(std::io::Error::other(format!(
            "the message over TCP does not answer the query: {mismatch}"
        )));
    }
    Ok(answer)
}

/// Why a message is not the answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Mismatch {
    /// QR is not set: it is a query, not a response.
    NotAResponse,
    /// Another message id than the request's.
    MessageId { answer: u16, request: u16 },
    /// Another opcode than the request's.
    OpCode { answer: OpCode, request: OpCode },
    /// Another question (zone section for an UPDATE) than the request's.
    Question,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAResponse => f.write_str("it is not a response (QR is not set)"),
            Self::MessageId { answer, request } => {
                write!(f, "it has message id {answer}, not the request's {request}")
            }
            Self::OpCode { answer, request } => {
                write!(f, "it has opcode {answer}, not the request's {request}")
            }
            Self::Question => f.write_str("its question is not the request's"),
        }
    }
}

/// Why `answer` is not the answer to `request`, or `None` when it is: a response (QR set)
/// with the request's message id and opcode, and its question section (the zone section of
/// an UPDATE), names compared case-insensitively. An UPDATE's answer may also leave the zone
/// section out: RFC 2136 3.8 lets a server answer with all section counts zero.
pub(super) fn mismatch(request: &Message, answer: &Message) -> Option<Mismatch> {
    let (ours, theirs) = (&request.metadata, &answer.metadata);
    if theirs.message_type != MessageType::Response {
        return Some(Mismatch::NotAResponse);
    }
    if theirs.id != ours.id {
        return Some(Mismatch::MessageId {
            answer: theirs.id,
            request: ours.id,
        });
    }
    if theirs.op_code != ours.op_code {
        return Some(Mismatch::OpCode {
            answer: theirs.op_code,
            request: ours.op_code,
        });
    }
    let left_out = ours.op_code == OpCode::Update && answer.queries.is_empty();
    // `Name`'s equality ignores ASCII case.
    let same = answer.queries.len() == request.queries.len()
        && answer.queries.iter().zip(&request.queries).all(|(a, q)| {
            a.name() == q.name()
                && a.query_type() == q.query_type()
                && a.query_class() == q.query_class()
        });
    if !(same || left_out) {
        return Some(Mismatch::Question);
    }
    None
}

/// Writes one length-prefixed DNS message on a TCP stream and reads the answer.
pub(super) async fn exchange_on(
    stream: &mut TcpStream,
    request: &[u8],
) -> std::io::Result<Vec<u8>> {
    let length = u16::try_from(request.len()).map_err(std::io::Error::other)?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(request);
    stream.write_all(&framed).await?;
    let length = stream.read_u16().await?;
    let mut answer = vec![0; usize::from(length)];
    stream.read_exact(&mut answer).await?;
    Ok(answer)
}

pub(super) async fn resolve(server: &str) -> std::io::Result<SocketAddr> {
    tokio::net::lookup_host(server)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{server} has no address")))
}

/// A permanent error for an rcode we do not handle otherwise.
pub(super) fn permanent_rcode(rcode: ResponseCode, what: &str) -> ProvisionError {
    ProvisionError::Rejected(format!(
        "the server answered {} to the {what}",
        mnemonic(rcode)
    ))
}

/// The rcode as DNS tools print it (NOERROR, NOTAUTH, ...).
pub(super) fn mnemonic(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        other => format!("rcode {}", u16::from(other)),
    }
}

/// `name` as an absolute DNS name.
pub(super) fn absolute(name: &str) -> Result<Name, String> {
    Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
        .map_err(|e| format!("'{name}' is not a DNS name: {e}"))
}

pub(super) fn none_class(mut record: Record) -> Record {
    record.dns_class = DNSClass::NONE;
    record
}

pub(super) fn dns_type(record_type: RecordType) -> DnsType {
    match record_type {
        RecordType::A => DnsType::A,
        RecordType::Aaaa => DnsType::AAAA,
        RecordType::Cname => DnsType::CNAME,
        RecordType::Mx => DnsType::MX,
        RecordType::Txt => DnsType::TXT,
        RecordType::Srv => DnsType::SRV,
        RecordType::Ns => DnsType::NS,
        RecordType::Ptr => DnsType::PTR,
        RecordType::Caa => DnsType::CAA,
    }
}

/// The RDATA of a stored target, in hickory's form.
pub(super) fn parse_rdata(
    record_type: RecordType,
    presentation: &str,
) -> Result<RData, ProvisionError> {
    RData::try_from_str(dns_type(record_type), presentation).map_err(|e| {
        ProvisionError::Rejected(format!("record data '{presentation}' did not parse: {e}"))
    })
}

/// Whether two RDATA are the same record: names case-insensitively, TXT by the
/// concatenation of its strings.
pub(super) fn same_data(a: &RData, b: &RData) -> bool {
    match (a, b) {
        (RData::TXT(a), RData::TXT(b)) => {
            a.txt_data.iter().flatten().eq(b.txt_data.iter().flatten())
        }
        _ => a == b,
    }
}

/// A typed record in hickory's form, built from its fields (names absolute; TXT in strings of
/// at most 255 octets). CAA alone goes through its presentation form: hickory models CAA
/// values by tag (issuer names and parameters, URLs) and builds them only by parsing.
///
/// # Errors
/// A name hickory refuses, or a CAA value it cannot hold.
pub(super) fn rdata(record: &RecordData) -> Result<RData, ProvisionError> {
    let name = |fqdn: &crate::domain::Fqdn| {
        absolute(fqdn.as_str()).map_err(|e| ProvisionError::Rejected(format!("record data: {e}")))
    };
    Ok(match record {
        RecordData::A(ip) => RData::A(rdata::A(*ip)),
        RecordData::Aaaa(ip) => RData::AAAA(rdata::AAAA(*ip)),
        RecordData::Cname(target) => RData::CNAME(rdata::CNAME(name(target)?)),
        RecordData::Ns(target) => RData::NS(rdata::NS(name(target)?)),
        RecordData::Ptr(target) => RData::PTR(rdata::PTR(name(target)?)),
        RecordData::Mx {
            preference,
            exchange,
        } => RData::MX(rdata::MX::new(*preference, name(exchange)?)),
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(rdata::SRV::new(*priority, *weight, *port, name(target)?)),
        RecordData::Txt(text) if text.is_empty() => RData::TXT(rdata::TXT::from_bytes(vec![&[]])),
        RecordData::Txt(text) => RData::TXT(rdata::TXT::from_bytes(
            text.as_bytes().chunks(255).collect(),
        )),
        RecordData::Caa { .. } => parse_rdata(RecordType::Caa, &record.presentation())?,
    })
}

/// A live RRset as the ledger would hold it.
pub(super) fn live_rrset(
    record_type: RecordType,
    live: &[Record],
) -> Result<LiveRrset, ProvisionError> {
    let ttl = live.iter().map(|r| r.ttl).min().unwrap_or_default();
    let records = live
        .iter()
        .map(|r| record_data_of(record_type, &r.data))
        .collect::<Result<_, _>>()?;
    Ok(LiveRrset { ttl, records })
}

/// A server's RDATA in dnsorch's form (priority split off for MX and SRV, names relative to
/// the root without the trailing dot, TXT strings joined).
pub(super) fn record_data_of(
    record_type: RecordType,
    rdata: &RData,
) -> Result<RecordData, ProvisionError> {
    let name = |n: &Name| n.to_ascii().trim_end_matches('.').to_owned();
    let (target, priority) = match rdata {
        RData::MX(mx) => (name(&mx.exchange), Some(i64::from(mx.preference))),
        RData::SRV(srv) => (
            format!("{} {} {}", srv.weight, srv.port, name(&srv.target)),
            Some(i64::from(srv.priority)),
        ),
        RData::TXT(txt) => {
            let bytes: Vec<u8> = txt.txt_data.iter().flatten().copied().collect();
            (String::from_utf8_lossy(&bytes).into_owned(), None)
        }
        RData::CNAME(n) => (name(&n.0), None),
        RData::NS(n) => (name(&n.0), None),
        RData::PTR(n) => (name(&n.0), None),
        other => (other.to_string(), None),
    };
    RecordData::parse(record_type, &target, priority).map_err(|e| {
        ProvisionError::Rejected(format!(
            "the live record '{rdata}' is not one dnsorch can manage: {e:?}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RecordData;

    #[test]
    fn every_record_type_round_trips_through_presentation_form() {
        let long = "x".repeat(300);
        for (record_type, target, priority) in [
            (RecordType::A, "192.0.2.1", None),
            (RecordType::Aaaa, "2001:db8::1", None),
            (RecordType::Cname, "Target.Example.Test", None),
            (RecordType::Mx, "mail.example.test", Some(10)),
            (RecordType::Txt, "v=spf1 \"quoted\" \\ -all", None),
            (RecordType::Txt, long.as_str(), None),
            (RecordType::Srv, "5 443 svc.example.test", Some(10)),
            (RecordType::Ns, "ns1.example.test", None),
            (RecordType::Ptr, "host.example.test", None),
            (RecordType::Caa, "0 issue \"ca.example\"", None),
        ] {
            let data = RecordData::parse(record_type, target, priority).unwrap();
            let parsed = parse_rdata(record_type, &data.presentation())
                .unwrap_or_else(|e| panic!("{record_type:?} {target}: {e}"));
            let rdata = rdata(&data).unwrap();
            assert!(same_data(&rdata, &parsed), "{record_type:?} {target}");
            assert_eq!(record_data_of(record_type, &rdata).unwrap(), data);
            assert_eq!(rdata.record_type(), dns_type(record_type));
            if let RData::TXT(txt) = &rdata {
                let joined: Vec<u8> = txt.txt_data.iter().flatten().copied().collect();
                assert_eq!(joined, target.as_bytes());
                assert!(txt.txt_data.iter().all(|s| s.len() <= 255));
            }
        }
    }

    #[test]
    fn the_ns_of_a_delegated_name_are_read_from_the_referral() {
        let name = absolute("Sub.Example.Test").unwrap();
        let ns = |owner: &str, host: &str| {
            let host = absolute(host).unwrap();
            Record::from_rdata(absolute(owner).unwrap(), 60, RData::NS(rdata::NS(host)))
        };
        let soa = Record::update0(absolute("example.test").unwrap(), 300, DnsType::SOA);
        let answer = |authoritative: bool, answers: Vec<Record>, authorities: Vec<Record>| {
            let mut message = Message::new(1, MessageType::Response, OpCode::Query);
            message.metadata.authoritative = authoritative;
            message.answers = answers;
            message.authorities = authorities;
            message
        };
        let delegation = vec![ns("sub.example.test", "ns1.elsewhere.example")];

        // A referral: the delegation's NS in the authority section, not authoritative.
        let referral = answer(false, vec![], delegation.clone());
        assert_eq!(records_of(referral.clone(), &name, DnsType::NS), delegation);
        // Only for NS, and only the NS owned by the name asked.
        assert!(records_of(referral, &name, DnsType::A).is_empty());
        let below = absolute("x.sub.example.test").unwrap();
        let deeper = answer(false, vec![], delegation.clone());
        assert!(records_of(deeper, &below, DnsType::NS).is_empty());
        // An authoritative answer's NS are in the answer section; its authority is not read.
        let apex = vec![ns("sub.example.test", "ns1.example.test")];
        let authoritative = answer(true, apex.clone(), delegation.clone());
        assert_eq!(records_of(authoritative, &name, DnsType::NS), apex);
        let nodata = answer(true, vec![], vec![soa]);
        assert!(records_of(nodata, &name, DnsType::NS).is_empty());
    }

    /// A server on 127.0.0.1 that answers every UDP query truncated, and its TCP query with
    /// the message id `id_over_tcp(query id)`. Returns its address.
    async fn truncating_server(id_over_tcp: fn(u16) -> u16) -> String {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(address).await.unwrap();
        let answer = |query: &[u8], truncated: bool, id: fn(u16) -> u16| {
            let query = Message::from_vec(query).unwrap();
            let mut answer =
                Message::new(id(query.metadata.id), MessageType::Response, OpCode::Query);
            answer.metadata.truncation = truncated;
            answer.add_queries(query.queries.iter().cloned());
            answer.to_vec().unwrap()
        };
        tokio::spawn(async move {
            let mut buffer = vec![0; 65_535];
            while let Ok((n, peer)) = udp.recv_from(&mut buffer).await {
                let _ = udp
                    .send_to(&answer(&buffer[..n], true, |id| id), peer)
                    .await;
            }
        });
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let length = stream.read_u16().await.unwrap();
                let mut query = vec![0; usize::from(length)];
                stream.read_exact(&mut query).await.unwrap();
                let bytes = answer(&query, false, id_over_tcp);
                let mut framed = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
                framed.extend_from_slice(&bytes);
                stream.write_all(&framed).await.unwrap();
            }
        });
        address.to_string()
    }

    #[tokio::test]
    async fn a_tcp_answer_with_another_message_id_is_refused() {
        let name = absolute("x.example.test").unwrap();
        let timeout = Duration::from_secs(5);

        let server = truncating_server(|id| id.wrapping_add(1)).await;
        let forged = query(&server, &name, DnsType::A, timeout).await;
        match forged {
            Err(ProvisionError::Transient(e)) => assert!(e.contains("message id"), "{e}"),
            other => panic!("a mismatched TCP answer was accepted: {other:?}"),
        }

        let server = truncating_server(|id| id).await;
        let answered = query(&server, &name, DnsType::A, timeout).await;
        assert_eq!(answered, Ok(Vec::new()));
    }

    #[test]
    fn only_a_response_with_the_id_opcode_and_question_asked_is_the_answer() {
        let name = absolute("Host.Example.Test").unwrap();
        let ask = |op_code| {
            let mut message = Message::new(4242, MessageType::Query, op_code);
            message.add_query(Query::query(name.clone(), DnsType::A));
            message
        };
        let answer = |request: &Message, edit: fn(&mut Message)| {
            let mut answer = request.clone();
            answer.metadata.message_type = MessageType::Response;
            edit(&mut answer);
            mismatch(request, &answer)
        };
        let query = ask(OpCode::Query);
        let update = ask(OpCode::Update);

        assert_eq!(answer(&query, |_| {}), None);
        assert_eq!(
            answer(&query, |a| a.queries[0].name =
                absolute("HOST.EXAMPLE.TEST").unwrap()),
            None
        );
        assert_eq!(
            answer(&query, |a| a.metadata.message_type = MessageType::Query),
            Some(Mismatch::NotAResponse)
        );
        assert_eq!(
            answer(&query, |a| a.metadata.id = 4243),
            Some(Mismatch::MessageId {
                answer: 4243,
                request: 4242
            })
        );
        assert_eq!(
            answer(&query, |a| a.metadata.op_code = OpCode::Notify),
            Some(Mismatch::OpCode {
                answer: OpCode::Notify,
                request: OpCode::Query
            })
        );
        for edit in [
            (|a: &mut Message| a.queries[0].name = absolute("other.example.test").unwrap())
                as fn(&mut Message),
            |a| {
                a.queries[0].set_query_type(DnsType::AAAA);
            },
            |a| {
                a.queries[0].set_query_class(DNSClass::CH);
            },
            |a| a.queries.clear(),
            |a| {
                a.add_query(Query::query(
                    absolute("x.example.test").unwrap(),
                    DnsType::A,
                ));
            },
        ] {
            assert_eq!(answer(&query, edit), Some(Mismatch::Question));
        }
        // RFC 2136 3.8: an UPDATE's answer may leave the zone section out, not change it.
        assert_eq!(answer(&update, |a| a.queries.clear()), None);
        assert_eq!(
            answer(&update, |a| a.queries[0].name =
                absolute("other.test").unwrap()),
            Some(Mismatch::Question)
        );
    }

    #[test]
    fn names_compare_case_insensitively() {
        let a = parse_rdata(RecordType::Cname, "Target.Example.Test.").unwrap();
        let b = parse_rdata(RecordType::Cname, "target.example.test.").unwrap();
        assert!(same_data(&a, &b));
    }
}
