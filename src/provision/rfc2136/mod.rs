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
//!   applied, so a retry after a crash succeeds. A record already there at another TTL is
//!   deleted and added again in the same UPDATE: adding it alone is a duplicate, which the
//!   server ignores, TTL and all (RFC 2136 3.4.2.2; Knot does, BIND retimes the RRset anyway).
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

mod sender;
mod set;

use chrono::Utc;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm as HickoryAlgorithm;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType as DnsType, TSigner};
use tokio::sync::{OnceCell, mpsc, oneshot};

use self::sender::{Job, Update};
use super::dns::{
    Expect, Verification, absolute, change_rdatas, dns_type, live_rrset, none_class, observe,
    permanent_rcode, query, rdata, same_data,
};
use super::{Applied, Fence, Observed, PlannedChange, ProvisionError, Provisioner};
use crate::domain::{LiveRrset, Operation, RecordType};
use crate::zones::{Rfc2136Zone, TsigAlgorithm};

/// The TSIG fudge: how far apart our clock and the server's may be, in seconds.
const FUDGE: u16 = 300;

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
        update
            .updates
            .extend(retimed(&name, ttl, &rdatas, change.before()?)?);
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
                // Deleted and added again: added alone, it is a duplicate, ignored TTL and all.
                let mut again = Update::default();
                again.updates.extend(deletions(&name, &rdatas));
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
            update.updates.extend(deletions(&name, &rdatas));
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
        let jobs = self.jobs().await;
        let (reply, answer) = oneshot::channel();
        jobs.send(Job::new(update, fence.clone(), reply))
            .await
            .map_err(|_| ProvisionError::Transient("the update sender stopped".into()))?;
        let (rcode, note) = answer
            .await
            .map_err(|_| ProvisionError::Transient("the update sender stopped".into()))??;
        notes.push(note);
        Ok(rcode)
    }

    /// The queue of this zone's sender task, started on first use.
    async fn jobs(&self) -> &mpsc::Sender<Job> {
        self.sender
            .get_or_init(|| async {
                sender::spawn(
                    self.zone.clone(),
                    self.config.clone(),
                    self.signer.clone(),
                    self.batch_bytes,
                )
            })
            .await
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
        Verification {
            primary: &self.config.server,
            others: &self.config.verify_servers,
            bound: self.config.verify_timeout,
            timeout: self.config.timeout,
        }
        .run(name, dns_type, expect, notes)
        .await
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

/// The updates that delete `rdatas` (RFC 2136 2.5.4: class NONE, TTL 0).
fn deletions<'a>(name: &'a Name, rdatas: &'a [RData]) -> impl Iterator<Item = Record> + 'a {
    rdatas
        .iter()
        .map(move |rdata| none_class(Record::from_rdata(name.clone(), 0, rdata.clone())))
}

/// The deletions of those of `rdatas` that `before` (the RRset as the worker read it) holds
/// at a TTL other than `ttl`, to precede their additions. Added alone, such a record is a
/// duplicate, which RFC 2136 3.4.2.2 has the server ignore: Knot keeps the RRset's TTL then
/// (BIND sets it anyway); deleted and added again in one UPDATE, it takes the new TTL, and with
/// it the whole RRset.
fn retimed(
    name: &Name,
    ttl: u32,
    rdatas: &[RData],
    before: &LiveRrset,
) -> Result<Vec<Record>, ProvisionError> {
    if before.ttl == ttl || before.records.is_empty() {
        return Ok(Vec::new());
    }
    let held = before
        .records
        .iter()
        .map(rdata)
        .collect::<Result<Vec<_>, _>>()?;
    let again: Vec<RData> = rdatas
        .iter()
        .filter(|d| held.iter().any(|h| same_data(h, d)))
        .cloned()
        .collect();
    Ok(deletions(name, &again).collect())
}

/// A replace whose prerequisites failed because the RRset is no longer what the worker read:
/// the next attempt reads it again and plans anew.
fn changed_since_read(name: &Name, change: &PlannedChange) -> ProvisionError {
    ProvisionError::Transient(format!(
        "the {} RRset at {name} changed since it was read; it is read and planned again",
        change.record_type.as_str()
    ))
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

    async fn apply_set(&self, changes: &[PlannedChange]) -> Result<Applied, ProvisionError> {
        self.apply_atomic(changes).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RecordData;

    fn a(ip: &str) -> RData {
        RData::A(hickory_proto::rr::rdata::A(ip.parse().unwrap()))
    }

    fn rrset(ttl: u32, ips: &[&str]) -> LiveRrset {
        LiveRrset {
            ttl,
            records: ips
                .iter()
                .map(|ip| RecordData::A(ip.parse().unwrap()))
                .collect(),
        }
    }

    #[test]
    fn records_already_held_at_another_ttl_are_deleted_before_they_are_added_again() {
        let name = absolute("www.example.test").unwrap();
        let adding = [a("192.0.2.2"), a("192.0.2.3")];
        let held = rrset(120, &["192.0.2.1", "192.0.2.2"]);

        // Another TTL: the one already held is deleted (class NONE), the new one is not.
        let deleted = retimed(&name, 600, &adding, &held).unwrap();
        assert_eq!(deleted.len(), 1, "{deleted:?}");
        assert_eq!(deleted[0].dns_class, DNSClass::NONE);
        assert_eq!((deleted[0].ttl, &deleted[0].data), (0, &a("192.0.2.2")));

        // The same TTL, or an RRset that was absent: nothing to delete.
        assert!(retimed(&name, 120, &adding, &held).unwrap().is_empty());
        assert!(
            retimed(&name, 600, &adding, &LiveRrset::absent())
                .unwrap()
                .is_empty()
        );
    }
}
