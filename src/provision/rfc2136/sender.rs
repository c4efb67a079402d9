//! The sender of one zone's UPDATE messages: one task per zone, one kept TCP connection to the
//! primary, concurrent changes packed into shared messages, every answer matched to its
//! message and TSIG-verified before its rcode counts (see the parent module's doc for the
//! rules).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage as _};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType as DnsType, TSigVerifier, TSigner};
use hickory_proto::serialize::binary::BinEncodable as _;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::super::dns::{exchange_on, mismatch, mnemonic};
use super::super::{Fence, ProvisionError};
use crate::zones::Rfc2136Zone;

/// The prerequisite and update sections of one change.
#[derive(Debug, Default, Clone)]
pub(super) struct Update {
    pub(super) prerequisites: Vec<Record>,
    pub(super) updates: Vec<Record>,
}

impl Update {
    /// The bytes its records take in a message, each encoded on its own (so without name
    /// compression between them: never less than they take in the message). A record that
    /// cannot be encoded counts as too large to share a message.
    pub(super) fn encoded_len(&self) -> usize {
        self.prerequisites
            .iter()
            .chain(&self.updates)
            .map(|r| r.to_bytes().map_or(usize::MAX, |b| b.len()))
            .fold(0, usize::saturating_add)
    }
}

/// What the sender answers for one change: the rcode and the note for the request's log.
pub(super) type Sent = Result<(ResponseCode, String), ProvisionError>;

/// The most changes sent in one UPDATE message (`RFC2136_BATCH_MAX_BYTES` bounds its size).
const MAX_BATCH: usize = 64;
/// Updates waiting for the sender task.
const QUEUE: usize = 1024;

/// Starts the sender task of a zone: the queue to hand it changes.
pub(super) fn spawn(
    zone: Name,
    config: Rfc2136Zone,
    signer: TSigner,
    batch_bytes: usize,
) -> mpsc::Sender<Job> {
    let (jobs, queue) = mpsc::channel(QUEUE);
    let sender = UpdateSender {
        zone,
        config,
        signer,
        batch_bytes,
        connection: None,
    };
    tokio::spawn(sender.run(queue));
    jobs
}

/// One change handed to the sender, and where its answer goes.
pub(super) struct Job {
    update: Update,
    /// [`Update::encoded_len`].
    size: usize,
    /// The claim's fence, checked again when the job leaves the queue.
    fence: Fence,
    /// Sent in a message of its own, never with other changes (an atomic set: the server's
    /// answer is its own, and it is never sent again piecemeal).
    alone: bool,
    reply: oneshot::Sender<Sent>,
}

impl Job {
    pub(super) fn new(update: Update, fence: Fence, reply: oneshot::Sender<Sent>) -> Self {
        Self {
            size: update.encoded_len(),
            update,
            fence,
            alone: false,
            reply,
        }
    }

    /// A job sent in a message of its own.
    pub(super) fn alone(update: Update, fence: Fence, reply: oneshot::Sender<Sent>) -> Self {
        Self {
            alone: true,
            ..Self::new(update, fence, reply)
        }
    }

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
            let alone = first.alone;
            let mut batch = vec![first];
            while !alone && batch.len() < MAX_BATCH {
                let Ok(job) = queue.try_recv() else {
                    break;
                };
                let Some(job) = job.take_live() else {
                    continue;
                };
                if job.alone || bytes.saturating_add(job.size) > self.batch_bytes {
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
