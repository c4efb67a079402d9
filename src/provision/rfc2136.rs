//! The `rfc2136` backend: DNS UPDATE (RFC 2136) signed with TSIG, sent to the zone's primary,
//! then verified by querying the primary (and any `verify_servers`) until the answer shows
//! the change or the bound passes.
//!
//! The worker has planned each change before [`Provisioner::apply`] (it read the RRset from
//! the primary and refused records dnsorch does not manage); this backend turns the plan into
//! one UPDATE per change:
//! - Create adds the records to their RRset; the RRset's TTL becomes the request's (the server
//!   sets it for the whole RRset). CNAME exclusivity is a prerequisite: a CNAME needs its name
//!   unused, other data needs the name to have no CNAME. Records already there count as
//!   applied, so a retry after a crash succeeds.
//! - Delete removes the records (by RDATA) or the RRset, the latter under the prerequisite that
//!   the RRset is still exactly what the worker read (RFC 2136 2.4.2).
//! - Replace deletes the RRset and adds the records in one UPDATE, under the prerequisite that
//!   the RRset is still what the worker read (or still absent, 2.4.3) and CNAME exclusivity, so
//!   the server applies all of it or nothing; a request's `expect`, checked by the worker
//!   against what it read, is thereby held at the server too (a create or delete with an
//!   `expect` carries the same prerequisite). A failed prerequisite because
//!   the RRset changed meanwhile is transient (the next attempt reads and plans again).
//! - Rcodes: SERVFAIL and refused connections are transient; NOTAUTH (with the TSIG error),
//!   REFUSED, NOTZONE and failed prerequisites are permanent. No answer after the UPDATE was
//!   written, an untrusted answer, or verification that does not see the change is
//!   `Uncertain` (the request becomes UNKNOWN until [`Provisioner::observe`] asks the primary).
//! - Answers are checked before their rcode counts. The answer to an UPDATE must be a
//!   response (QR set) with the update's message id, opcode UPDATE and zone section (or none:
//!   RFC 2136 3.8 lets a server leave the sections out); anything else on the connection means
//!   it is out of sync, so it is dropped and the outcome is unknown. Then its TSIG,
//!   whatever the rcode: a server signs every answer to a request whose TSIG it verified
//!   (RFC 8945 5.3; BIND 9.18 signs its REFUSED, NOTAUTH and NOTZONE too), and answers
//!   unsigned only when it could not verify the request: NOTAUTH with the TSIG error (BADKEY,
//!   BADSIG; BADTIME from servers that do not sign it) in an unsigned TSIG record. So:
//!   - an answer whose MAC verifies against the update's is the server's: its rcode counts
//!     (with a TSIG error in it, such as a signed BADTIME, the key failed: permanent);
//!   - an unsigned NOTAUTH with a TSIG error fails the request at once: the key or the clock
//!     is wrong (RFC 8945 gives no way to authenticate it, and retrying would not help);
//!   - an answer with a MAC that does not verify, or an unsigned answer of any other rcode
//!     (NOERROR, REFUSED, SERVFAIL, NOTAUTH without a TSIG error, ...), is not the server's:
//!     it is not trusted, the connection is dropped and the outcome is unknown (the real
//!     answer was lost), so a forged REFUSED cannot fail a request nor a forged NOERROR or
//!     SERVFAIL pass for the server's.
//! - Verification: queries with RD=0, names compared case-insensitively, TXT strings
//!   concatenated; a create's records must be there with the TTL, a replace's RRset must be
//!   exactly its records with the TTL.
//!
//! Messages are built with hickory-proto and carried over plain sockets here: an update goes
//! over TCP (one connection per server, reused), a verification query over UDP with EDNS,
//! and over TCP when the answer is truncated (answers to queries are matched to them in
//! `dns.rs`). The TSIG secret never leaves the signer.
//! Concurrent changes share UPDATE messages (at most `RFC2136_BATCH_MAX_BYTES` of records
//! each); any answer to a shared message but NOERROR sends its changes again one by one, so
//! one bad change fails alone; a TSIG error fails them all at once. Nothing is sent unless the
//! change's fence holds (see [`super::Fence`]), checked when it is handed to the sender and
//! again when the sender takes it from its queue; a change whose worker stopped waiting is
//! dropped unsent.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage as _};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm as HickoryAlgorithm;
use hickory_proto::rr::{
    DNSClass, Name, RData, Record, RecordType as DnsType, TSigVerifier, TSigner,
};
use hickory_proto::serialize::binary::BinEncodable as _;
use tokio::net::TcpStream;
use tokio::sync::{OnceCell, mpsc, oneshot};

use super::dns::{
    Expect, absolute, change_rdatas, dns_type, exchange_on, live_rrset, mismatch, mnemonic,
    none_class, observe, permanent_rcode, poll, query, rdata, same_data, verify_at,
};
use super::{Applied, Fence, Observed, PlannedChange, ProvisionError, Provisioner};
use crate::domain::{LiveRrset, Operation, RecordType};
use crate::zones::{Rfc2136Zone, TsigAlgorithm};

/// The TSIG fudge: how far apart our clock and the server's may be, in seconds.
const FUDGE: u16 = 300;
/// The most changes sent in one UPDATE message (`RFC2136_BATCH_MAX_BYTES` bounds its size).
const MAX_BATCH: usize = 64;
/// Updates waiting for the sender task.
const QUEUE: usize = 1024;

/// DNS UPDATE with TSIG to one zone's primary.
pub struct Rfc2136Provisioner {
    zone: Name,
    config: Rfc2136Zone,
    signer: TSigner,
    /// The most bytes of records one UPDATE message packs.
    batch_bytes: usize,
    /// The queue of this zone's sender task (started on first use).
    sender: OnceCell<mpsc::Sender<Job>>,
}

impl std::fmt::Debug for Rfc2136Provisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rfc2136Provisioner")
            .field("zone", &self.zone)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Rfc2136Provisioner {
    /// The backend for zone `zone` (no trailing dot), packing at most `batch_bytes` bytes of
    /// records into one UPDATE message.
    ///
    /// # Errors
    /// The zone or key name is not a valid DNS name.
    pub fn new(zone: &str, config: Rfc2136Zone, batch_bytes: usize) -> anyhow::Result<Self> {
        let algorithm = match config.key.algorithm {
            TsigAlgorithm::HmacSha256 => HickoryAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384 => HickoryAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512 => HickoryAlgorithm::HmacSha512,
        };
        let key_name = Name::from_ascii(&config.key.name)?;
        let signer = TSigner::new(config.key.secret.bytes.clone(), algorithm, key_name, FUDGE)
            .map_err(|e| anyhow::anyhow!("TSIG key: {e}"))?;
        Ok(Self {
            zone: absolute(zone).map_err(|e| anyhow::anyhow!("zone name: {e}"))?,
            config,
            signer,
            batch_bytes,
            sender: OnceCell::new(),
        })
    }

    async fn create(&self, change: &PlannedChange) -> Result<Applied, ProvisionError> {
        let (name, dns_type, rdatas) = self.records_of(change)?;
        let ttl = change.config.ttl;
        let mut notes = Vec::new();
        // Records made behind dnsorch's back were refused by the worker's plan, which read
        // the RRset from the primary.
        let mut update = Update::default();
        // CNAME exclusivity (RFC 2136 2.4.5 and 2.4.3): a CNAME needs an unused name; other
        // data needs a name without a CNAME.
        update.prerequisites.push(exclusive(&name, dns_type));
        if change.expect.is_some() {
            // The worker found the RRset as expected: it must still be so at the server.
            update
                .prerequisites
                .extend(as_read(&name, dns_type, change.before()?)?);
        }
        update.updates.extend(additions(&name, ttl, &rdatas));
        match self.send_update(update, &change.fence, &mut notes).await? {
            ResponseCode::NoError => {}
            ResponseCode::NXRRSet => return Err(changed_since_read(&name, change)),
            ResponseCode::YXRRSet if change.expect.is_some() => {
                return Err(self.yxrrset(&name, dns_type, change).await);
            }
            ResponseCode::YXDomain if dns_type == DnsType::CNAME => {
                // In use: by this very CNAME (a retry), or by other data.
                let live = self
                    .query(&self.config.server, &name, DnsType::CNAME)
                    .await?;
                if !live
                    .iter()
                    .any(|r| rdatas.iter().any(|d| same_data(&r.data, d)))
                {
                    return Err(ProvisionError::PrerequisiteFailed(format!(
                        "{name} already has other records (or another CNAME); a CNAME must be the only record at its name"
                    )));
                }
                notes.push(format!("{name} CNAME already present; setting its TTL"));
                let mut again = Update::default();
                again.updates.extend(additions(&name, ttl, &rdatas));
                self.expect_noerror(again, &change.fence, &mut notes)
                    .await?;
            }
            ResponseCode::YXRRSet => {
                return Err(ProvisionError::PrerequisiteFailed(format!(
                    "{name} has a CNAME; no other record can be added at that name"
                )));
            }
            other => return Err(permanent_rcode(other, "update")),
        }
        self.verified(&name, dns_type, &Expect::Present { rdatas, ttl }, notes)
            .await
    }

    async fn delete(&self, change: &PlannedChange) -> Result<Applied, ProvisionError> {
        let (name, dns_type, rdatas) = self.records_of(change)?;
        let mut notes = Vec::new();
        let mut update = Update::default();
        if change.is_whole_rrset() {
            // The whole RRset, as the worker read it (its plan refused records that are not
            // the account's): RFC 2136 2.4.2, it must still be exactly that.
            let before = change.before()?;
            if before.records.is_empty() {
                notes.push(format!(
                    "{name} {} is already absent",
                    change.record_type.as_str()
                ));
            } else {
                update.prerequisites.extend(exactly_as(&name, before)?);
                update.updates.push(rrset_deletion(&name, dns_type));
            }
        } else {
            if change.expect.is_some() {
                update
                    .prerequisites
                    .extend(as_read(&name, dns_type, change.before()?)?);
            }
            for rdata in &rdatas {
                let mut record = Record::from_rdata(name.clone(), 0, rdata.clone());
                record.dns_class = DNSClass::NONE;
                update.updates.push(record);
            }
        }
        if !update.updates.is_empty() {
            match self.send_update(update, &change.fence, &mut notes).await? {
                ResponseCode::NoError => {}
                ResponseCode::NXRRSet | ResponseCode::YXRRSet => {
                    return Err(changed_since_read(&name, change));
                }
                other => return Err(permanent_rcode(other, "update")),
            }
        }
        self.verified(&name, dns_type, &Expect::Absent { rdatas }, notes)
            .await
    }

    /// One UPDATE: the RRset is still what the worker read (RFC 2136 2.4.2; absent: 2.4.3),
    /// CNAME exclusivity, then the RRset deleted and every record added, so the server applies
    /// all of it or nothing.
    async fn replace(&self, change: &PlannedChange) -> Result<Applied, ProvisionError> {
        let (name, dns_type, rdatas) = self.records_of(change)?;
        let ttl = change.config.ttl;
        let before = change.before()?;
        let mut notes = Vec::new();
        let mut update = Update::default();
        update
            .prerequisites
            .extend(as_read(&name, dns_type, before)?);
        if before.records.is_empty() {
            // An RRset that exists cannot share its name with a CNAME (nor a CNAME with
            // anything): the server keeps that, so holding the RRset is enough.
            update.prerequisites.push(exclusive(&name, dns_type));
        }
        update.updates.push(rrset_deletion(&name, dns_type));
        update.updates.extend(additions(&name, ttl, &rdatas));
        match self.send_update(update, &change.fence, &mut notes).await? {
            ResponseCode::NoError => {}
            ResponseCode::YXDomain => {
                return Err(ProvisionError::PrerequisiteFailed(format!(
                    "{name} already has other records; a CNAME must be the only record at its name"
                )));
            }
            ResponseCode::YXRRSet => return Err(self.yxrrset(&name, dns_type, change).await),
            ResponseCode::NXRRSet => return Err(changed_since_read(&name, change)),
            other => return Err(permanent_rcode(other, "update")),
        }
        self.verified(&name, dns_type, &Expect::Exactly { rdatas, ttl }, notes)
            .await
    }

    /// Why an UPDATE holding the RRset as read (absent) and CNAME exclusivity was answered
    /// YXRRSET: the name has a CNAME (permanent), or the RRset appeared since it was read.
    async fn yxrrset(
        &self,
        name: &Name,
        dns_type: DnsType,
        change: &PlannedChange,
    ) -> ProvisionError {
        let cname = match self.query(&self.config.server, name, DnsType::CNAME).await {
            Ok(cname) => cname,
            Err(e) => return e,
        };
        if !cname.is_empty() && dns_type != DnsType::CNAME {
            return ProvisionError::PrerequisiteFailed(format!(
                "{name} has a CNAME; no other record can be added at that name"
            ));
        }
        changed_since_read(name, change)
    }

    /// Verifies `expect` after an accepted update: the applied change's outcome.
    async fn verified(
        &self,
        name: &Name,
        dns_type: DnsType,
        expect: &Expect,
        mut notes: Vec<String>,
    ) -> Result<Applied, ProvisionError> {
        let applied_at = Utc::now();
        let verified_at = self.verify(name, dns_type, expect, &mut notes).await?;
        Ok(Applied {
            applied_at,
            verified_at: Some(verified_at),
            notes,
        })
    }

    /// The owner name, type and records of the change.
    fn records_of(
        &self,
        change: &PlannedChange,
    ) -> Result<(Name, DnsType, Vec<RData>), ProvisionError> {
        let name = absolute(&change.domain).map_err(ProvisionError::Rejected)?;
        if !self.zone.zone_of(&name) {
            return Err(ProvisionError::Rejected(format!(
                "{name} is not in zone {}",
                self.zone
            )));
        }
        Ok((name, dns_type(change.record_type), change_rdatas(change)?))
    }

    /// Sends an update that must succeed as it is.
    async fn expect_noerror(
        &self,
        update: Update,
        fence: &Fence,
        notes: &mut Vec<String>,
    ) -> Result<(), ProvisionError> {
        match self.send_update(update, fence, notes).await? {
            ResponseCode::NoError => Ok(()),
            other => Err(permanent_rcode(other, "update")),
        }
    }

    /// Hands an update to this zone's sender task and waits for the server's answer: the
    /// rcode of a response whose TSIG verified, or a classified error. Nothing is sent unless
    /// `fence` holds, here and again when the sender takes the update from its queue.
    async fn send_update(
        &self,
        update: Update,
        fence: &Fence,
        notes: &mut Vec<String>,
    ) -> Result<ResponseCode, ProvisionError> {
        fence.check()?;
        let jobs = self
            .sender
            .get_or_init(|| async {
                let (jobs, queue) = mpsc::channel(QUEUE);
                let sender = UpdateSender {
                    zone: self.zone.clone(),
                    config: self.config.clone(),
                    signer: self.signer.clone(),
                    batch_bytes: self.batch_bytes,
                    connection: None,
                };
                tokio::spawn(sender.run(queue));
                jobs
            })
            .await;
        let (reply, answer) = oneshot::channel();
        let size = update.encoded_len();
        jobs.send(Job {
            update,
            size,
            fence: fence.clone(),
            reply,
        })
        .await
        .map_err(|_| ProvisionError::Transient("the update sender stopped".into()))?;
        let (rcode, note) = answer
            .await
            .map_err(|_| ProvisionError::Transient("the update sender stopped".into()))??;
        notes.push(note);
        Ok(rcode)
    }

    /// The records of `name`/`dns_type` at `server` (empty for NXDOMAIN or no data).
    async fn query(
        &self,
        server: &str,
        name: &Name,
        dns_type: DnsType,
    ) -> Result<Vec<Record>, ProvisionError> {
        query(server, name, dns_type, self.config.timeout).await
    }

    /// Polls the primary until it shows `expect` (the verification time), then the other
    /// servers, whose results are only logged.
    async fn verify(
        &self,
        name: &Name,
        dns_type: DnsType,
        expect: &Expect,
        notes: &mut Vec<String>,
    ) -> Result<chrono::DateTime<Utc>, ProvisionError> {
        let (bound, timeout) = (self.config.verify_timeout, self.config.timeout);
        let primary =
            verify_at(&self.config.server, name, dns_type, expect, bound, timeout).await?;
        notes.push(format!("{primary} (primary)"));
        let verified_at = Utc::now();
        let others = self.config.verify_servers.iter().map(|server| async move {
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

/// The prerequisite and update sections of one change.
#[derive(Debug, Default, Clone)]
struct Update {
    prerequisites: Vec<Record>,
    updates: Vec<Record>,
}

impl Update {
    /// The bytes its records take in a message, each encoded on its own (so without name
    /// compression between them: never less than they take in the message). A record that
    /// cannot be encoded counts as too large to share a message.
    fn encoded_len(&self) -> usize {
        self.prerequisites
            .iter()
            .chain(&self.updates)
            .map(|r| r.to_bytes().map_or(usize::MAX, |b| b.len()))
            .fold(0, usize::saturating_add)
    }
}

/// What the sender answers for one change: the rcode and the note for the request's log.
type Sent = Result<(ResponseCode, String), ProvisionError>;

struct Job {
    update: Update,
    /// [`Update::encoded_len`].
    size: usize,
    /// The claim's fence, checked again when the job leaves the queue.
    fence: Fence,
    reply: oneshot::Sender<Sent>,
}

impl Job {
    /// A job still to be sent; `None` (after answering it) when its claim may be lost: its
    /// worker stopped waiting (the lease was taken over, the attempt aborted) or its fence
    /// closed while it queued.
    fn take_live(self) -> Option<Self> {
        if self.reply.is_closed() {
            return None;
        }
        if let Err(e) = self.fence.check() {
            let _ = self.reply.send(Err(e));
            return None;
        }
        Some(self)
    }
}

/// What came back for one UPDATE message.
enum Answer {
    /// The server's rcode and the note for the request's log (the answer's TSIG verified).
    Rcode(ResponseCode, String),
    /// No trusted answer (the connection failed; a malformed answer or a message that does
    /// not answer the update; an answer whose TSIG did not verify or that is unsigned), or the
    /// key failed (a TSIG error from the server): the same for every change sent under this
    /// key, so a batch fails at once.
    Failed(ProvisionError),
}

/// One task per zone sends its updates over one kept TCP connection. The changes that queue
/// up while an update is in flight go out together in one UPDATE message (different owner
/// names: a request waits while an older one for its name is unfinished, so a batch never
/// holds two changes of one name), at most [`MAX_BATCH`] of them and `batch_bytes` bytes of
/// records. The server answers for the message as a whole, so any answer but NOERROR (a
/// failed prerequisite, a name or record it refuses, SERVFAIL) sends the changes again one
/// by one, so each gets its own answer; only a failure that would be the same for each (no
/// answer, a TSIG error) fails the batch at once.
struct UpdateSender {
    zone: Name,
    config: Rfc2136Zone,
    signer: TSigner,
    batch_bytes: usize,
    connection: Option<TcpStream>,
}

impl UpdateSender {
    async fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        // A job taken from the queue that did not fit the last batch: it starts the next.
        let mut carried: Option<Job> = None;
        loop {
            let first = match carried.take() {
                Some(job) => job,
                None => match queue.recv().await {
                    Some(job) => job,
                    None => return,
                },
            };
            let Some(first) = first.take_live() else {
                continue;
            };
            let mut bytes = first.size;
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                let Ok(job) = queue.try_recv() else {
                    break;
                };
                let Some(job) = job.take_live() else {
                    continue;
                };
                if bytes.saturating_add(job.size) > self.batch_bytes {
                    carried = Some(job);
                    break;
                }
                bytes += job.size;
                batch.push(job);
            }
            self.send_batch(batch).await;
        }
    }

    async fn send_batch(&mut self, batch: Vec<Job>) {
        if batch.len() == 1 {
            for job in batch {
                let sent = self.send_alone(&job.update).await;
                let _ = job.reply.send(sent);
            }
            return;
        }
        let mut all = Update::default();
        for job in &batch {
            all.prerequisites
                .extend(job.update.prerequisites.iter().cloned());
            all.updates.extend(job.update.updates.iter().cloned());
        }
        match self.send(&all, batch.len()).await {
            Answer::Rcode(ResponseCode::NoError, note) => {
                for job in batch {
                    let _ = job.reply.send(Ok((ResponseCode::NoError, note.clone())));
                }
            }
            // The answer may be one change's fault: find out whose, one by one.
            Answer::Rcode(_, shared) => {
                for job in batch.into_iter().filter_map(Job::take_live) {
                    let sent = self.send_alone(&job.update).await;
                    let _ = job.reply.send(sent_again(&shared, sent));
                }
            }
            Answer::Failed(e) => {
                for job in batch {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Sends one change in a message of its own; classifies the server's answer.
    async fn send_alone(&mut self, update: &Update) -> Sent {
        let (rcode, note) = match self.send(update, 1).await {
            Answer::Rcode(rcode, note) => (rcode, note),
            Answer::Failed(e) => return Err(e),
        };
        match rcode {
            ResponseCode::NotAuth => Err(ProvisionError::Rejected(format!(
                "{note}; the server does not accept TSIG key {} for zone {}",
                self.config.key.name, self.zone
            ))),
            ResponseCode::ServFail => Err(ProvisionError::Transient(note)),
            ResponseCode::Refused | ResponseCode::NotZone => Err(ProvisionError::Rejected(note)),
            _ => Ok((rcode, note)),
        }
    }

    /// Signs and sends one UPDATE holding `changes` changes.
    async fn send(&mut self, update: &Update, changes: usize) -> Answer {
        match self.try_send(update, changes).await {
            Ok(answer) => answer,
            Err(e) => Answer::Failed(e),
        }
    }

    async fn try_send(
        &mut self,
        update: &Update,
        changes: usize,
    ) -> Result<Answer, ProvisionError> {
        let mut message = Message::new(rand::random(), MessageType::Query, OpCode::Update);
        message.metadata.recursion_desired = false;
        let mut zone = Query::new();
        zone.set_name(self.zone.clone())
            .set_query_class(DNSClass::IN)
            .set_query_type(DnsType::SOA);
        message.add_zone(zone);
        message.add_pre_requisites(update.prerequisites.iter().cloned());
        message.add_updates(update.updates.iter().cloned());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let verifier = message
            .finalize(&self.signer, now)
            .map_err(|e| ProvisionError::Rejected(format!("could not sign the update: {e}")))?;
        let request = message
            .to_vec()
            .map_err(|e| ProvisionError::Rejected(format!("could not encode the update: {e}")))?;
        let started = Instant::now();
        let bytes = self.exchange(&request).await?;
        let server = self.config.server.clone();
        let response = match Message::from_vec(&bytes) {
            Ok(response) => response,
            Err(e) => {
                self.connection = None;
                return Err(ProvisionError::Uncertain(format!(
                    "malformed answer from {server}: {e}; the connection is dropped"
                )));
            }
        };
        // Not the answer to this update: the connection is out of sync (or someone else
        // writes on it), so it is not used again.
        if let Some(mismatch) = mismatch(&message, &response) {
            self.connection = None;
            return Err(ProvisionError::Uncertain(format!(
                "{server} sent a message that does not answer the update ({mismatch}); the connection is dropped"
            )));
        }
        let rcode = response.metadata.response_code;
        let tsig_error = response
            .signature()
            .and_then(|s| s.data.error.as_ref().map(|e| format!("{e:?}")));
        let together = if changes > 1 {
            format!(", {changes} changes in one message")
        } else {
            String::new()
        };
        let note = format!(
            "update sent to {server} (key {}{together}): {}{} in {} ms",
            self.config.key.name,
            mnemonic(rcode),
            tsig_error
                .as_ref()
                .map(|e| format!(", TSIG error {e}"))
                .unwrap_or_default(),
            started.elapsed().as_millis()
        );
        let key_refused = || {
            ProvisionError::Rejected(format!(
                "{note}; the server does not accept TSIG key {} for zone {}",
                self.config.key.name, self.zone
            ))
        };
        let Some(verifier) = verifier else {
            return Err(ProvisionError::Rejected("the update was not signed".into()));
        };
        match signed(&response, rcode, verifier, &bytes) {
            Signed::Verified if tsig_error.is_some() => Err(key_refused()),
            Signed::Verified => Ok(Answer::Rcode(rcode, note)),
            Signed::TsigError => Err(key_refused()),
            Signed::BadMac(e) => {
                self.connection = None;
                Err(ProvisionError::Uncertain(format!(
                    "the answer ({}) from {server} failed TSIG verification ({e}): it is not trusted, and the change may be retried",
                    mnemonic(rcode)
                )))
            }
            Signed::Unsigned => {
                self.connection = None;
                Err(ProvisionError::Uncertain(format!(
                    "the answer ({}) from {server} is not signed, though the update was: it is not trusted (a server signs every answer to an update whose signature it verified), and the change may be retried",
                    mnemonic(rcode)
                )))
            }
        }
    }

    /// One exchange over the kept TCP connection to the primary; a broken kept connection is
    /// replaced once. Failing before anything could have reached the server (no connection)
    /// is transient; failing after the update was written, or after a kept connection went
    /// silent with it, is [`ProvisionError::Uncertain`]: the server may have applied it.
    async fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, ProvisionError> {
        let timeout = self.config.timeout;
        let server = self.config.server.clone();
        let no_answer = || {
            ProvisionError::Uncertain(format!(
                "{server}: the update was sent but no answer came within {:.1}s",
                timeout.as_secs_f64()
            ))
        };
        // A kept connection that fails at once was closed by the server, which answers
        // before it closes; one that stays silent may have delivered the update.
        let mut maybe_sent = false;
        if let Some(stream) = self.connection.as_mut() {
            match tokio::time::timeout(timeout, exchange_on(stream, request)).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(_)) => {}
                Err(_) => maybe_sent = true,
            }
            self.connection = None;
        }
        let connect = async {
            let stream = TcpStream::connect(server.as_str()).await?;
            stream.set_nodelay(true)?;
            Ok::<_, std::io::Error>(stream)
        };
        let failed = |e: String| {
            if maybe_sent {
                no_answer()
            } else {
                ProvisionError::Transient(e)
            }
        };
        let mut stream = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(failed(format!("{server}: {e}"))),
            Err(_) => {
                return Err(failed(format!(
                    "{server}: no connection within {:.1}s",
                    timeout.as_secs_f64()
                )));
            }
        };
        match tokio::time::timeout(timeout, exchange_on(&mut stream, request)).await {
            Ok(Ok(answer)) => {
                self.connection = Some(stream);
                Ok(answer)
            }
            Ok(Err(e)) => Err(ProvisionError::Uncertain(format!(
                "{server}: the update was sent but the connection failed before the answer: {e}"
            ))),
            Err(_) => Err(no_answer()),
        }
    }
}

/// The answer to a change sent again alone, after `shared`, the note of the shared message
/// that was not answered NOERROR: both go to the request's log.
fn sent_again(shared: &str, sent: Sent) -> Sent {
    let both = |text: String| format!("{shared}; sent again alone: {text}");
    match sent {
        Ok((rcode, note)) => Ok((rcode, both(note))),
        Err(e) => Err(e.map_text(both)),
    }
}

/// CNAME exclusivity as a prerequisite (RFC 2136 2.4.5 and 2.4.3): a CNAME needs an unused
/// name; other data needs a name without a CNAME.
fn exclusive(name: &Name, dns_type: DnsType) -> Record {
    let other = if dns_type == DnsType::CNAME {
        DnsType::ANY
    } else {
        DnsType::CNAME
    };
    none_class(Record::update0(name.clone(), 0, other))
}

/// The prerequisites that the RRset is exactly `rrset` (RFC 2136 2.4.2: class IN, TTL 0).
fn exactly_as(name: &Name, rrset: &LiveRrset) -> Result<Vec<Record>, ProvisionError> {
    rrset
        .records
        .iter()
        .map(|record| {
            let mut prerequisite = Record::from_rdata(name.clone(), 0, rdata(record)?);
            prerequisite.dns_class = DNSClass::IN;
            Ok(prerequisite)
        })
        .collect()
}

/// The prerequisites that the RRset is still `before` as the worker read it: exactly its
/// records (RFC 2136 2.4.2), or with none, absent (2.4.3).
fn as_read(
    name: &Name,
    dns_type: DnsType,
    before: &LiveRrset,
) -> Result<Vec<Record>, ProvisionError> {
    if before.records.is_empty() {
        return Ok(vec![none_class(Record::update0(name.clone(), 0, dns_type))]);
    }
    exactly_as(name, before)
}

/// The update that deletes the whole RRset (RFC 2136 2.5.2: class ANY).
fn rrset_deletion(name: &Name, dns_type: DnsType) -> Record {
    let mut rrset = Record::update0(name.clone(), 0, dns_type);
    rrset.dns_class = DNSClass::ANY;
    rrset
}

/// The updates that add `rdatas` with `ttl`.
fn additions<'a>(
    name: &'a Name,
    ttl: u32,
    rdatas: &'a [RData],
) -> impl Iterator<Item = Record> + 'a {
    rdatas
        .iter()
        .map(move |rdata| Record::from_rdata(name.clone(), ttl, rdata.clone()))
}

/// A replace whose prerequisites failed because the RRset is no longer what the worker read:
/// the next attempt reads it again and plans anew.
fn changed_since_read(name: &Name, change: &PlannedChange) -> ProvisionError {
    ProvisionError::Transient(format!(
        "the {} RRset at {name} changed since it was read; it is read and planned again",
        change.record_type.as_str()
    ))
}

/// How far an answer to a signed UPDATE is the server's (RFC 8945 5.3).
enum Signed {
    /// Its TSIG verified against the update's MAC.
    Verified,
    /// NOTAUTH with a TSIG error in an unsigned TSIG record: the server could not verify the
    /// update (BADKEY, BADSIG), which RFC 8945 5.3.2 has it answer unsigned.
    TsigError,
    /// It carries a MAC that does not verify (another key, a forged or damaged MAC).
    BadMac(String),
    /// No MAC: no TSIG record, or an unsigned one that is not a NOTAUTH's TSIG error.
    Unsigned,
}

/// Checks the TSIG of `response` (its bytes `bytes`, its rcode `rcode`), whatever the rcode.
fn signed(
    response: &Message,
    rcode: ResponseCode,
    mut verifier: TSigVerifier,
    bytes: &[u8],
) -> Signed {
    let Some(tsig) = response.signature().map(|s| &s.data) else {
        return Signed::Unsigned;
    };
    if !tsig.mac.is_empty() {
        return match verifier.verify(bytes) {
            Ok(_) => Signed::Verified,
            Err(e) => Signed::BadMac(e.to_string()),
        };
    }
    if rcode == ResponseCode::NotAuth && tsig.error.is_some() {
        Signed::TsigError
    } else {
        Signed::Unsigned
    }
}

#[async_trait::async_trait]
impl Provisioner for Rfc2136Provisioner {
    fn kind(&self) -> &'static str {
        "rfc2136"
    }

    async fn apply(&self, change: &PlannedChange) -> Result<Applied, ProvisionError> {
        match change.operation {
            Operation::Create => self.create(change).await,
            Operation::Delete => self.delete(change).await,
            Operation::Replace => self.replace(change).await,
            Operation::Adopt => Err(ProvisionError::Rejected(
                "an adoption reads the RRset; it applies nothing".into(),
            )),
        }
    }

    async fn read_rrset(
        &self,
        domain: &str,
        record_type: RecordType,
    ) -> Result<Option<LiveRrset>, ProvisionError> {
        let name = absolute(domain).map_err(ProvisionError::Rejected)?;
        let live = self
            .query(&self.config.server, &name, dns_type(record_type))
            .await?;
        live_rrset(record_type, &live).map(Some)
    }

    async fn observe(&self, change: &PlannedChange) -> Result<Observed, ProvisionError> {
        observe(&self.config.server, change, self.config.timeout).await
    }
}
