//! Durable state: the `dns_requests` and `dns_records` tables behind one trait.
//!
//! The store is the source of truth for a request's life (see ARCHITECTURE.md). Every state
//! change a worker makes is conditional on the lease token it got from its claim, so a worker
//! whose lease was taken over cannot overwrite the newer outcome (fencing). `sqlite/` is the
//! embedded default (with group commit in `sqlite/writer.rs`); a PostgreSQL implementation
//! plugs in behind the same trait.
//!
//! Each store holds only its SQL. What does not depend on the dialect is here once: reading
//! rows into these types (`rows.rs`), what an outcome does to the ledger (`ledger.rs`), the
//! column lists, the paging query and the error mapping.

pub mod audit;
mod ledger;
mod postgres;
mod rows;
pub mod sets;
mod sqlite;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::zoneform::RrsetView;
use crate::domain::{
    BeforeAfter, ChangeRequest, ChangeSetId, LiveRrset, LogEntry, Operation, RecordConfig,
    RecordData, RecordType, RequestId, RequestStatus, SetPlace, Submitter,
};

pub use audit::{AuditAction, AuditEntry, AuditFilter, AuditStore, NewAuditEntry};
pub use postgres::{InsertBatching, PostgresStore, Schema};
pub use sets::{
    ChangeSet, ChangeSetStore, ItemError, NewChangeSet, RefusedChange, SetCount, SetFilter,
};
pub use sqlite::SqliteStore;
pub use tokens::{ApiToken, TokenChange, TokenFilter, TokenStore};

/// The `dns_requests` columns every store reads into a [`DnsRequest`] (without the log).
const REQUEST_COLUMNS: &str = "seq, id, account_id, source, operation, record_type, domain, \
     target, comment, config, status, idempotency_key, fingerprint, attempts, last_error, zone, \
     backend, next_attempt_at, started_at, applied_at, verified_at, finished_at, \
     lease_expires_at, created_at, updated_at, principal_token_id, principal_name, \
     principal_account, client_addr, targets, rrset_before, rrset_after, expect, \
     change_set_id, change_set_index, set_role";

/// The query that lists ledger rows, before its filters.
const SELECT_RECORDS: &str = "select seq, id, request_id, account_id, record_type, domain, \
     target, comment, ttl, priority, zone, provisioned_at from dns_records";

/// The types with ledger rows at a name (both stores).
const SELECT_RECORD_TYPES: &str =
    "select distinct record_type from dns_records where domain = $1 order by record_type";

/// An RRset's owner and ledger rows, oldest first, in one query (both stores): ledger rows
/// exist only in an owned RRset, so the owner row leads; `seq` is null when it has no rows.
const SELECT_RRSET: &str = "select o.account_id as owner, r.seq, r.id, r.request_id, \
     r.account_id, r.record_type, r.domain, r.target, r.comment, r.ttl, r.priority, r.zone, \
     r.provisioned_at from dns_rrsets o left join dns_records r \
     on r.domain = o.domain and r.record_type = o.record_type \
     where o.domain = $1 and o.record_type = $2 order by r.seq";

/// A request as stored, and as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DnsRequest {
    #[serde(rename = "request_id")]
    pub id: RequestId,
    pub status: RequestStatus,
    pub account_id: String,
    pub source: String,
    pub operation: Operation,
    pub record_type: RecordType,
    pub domain: String,
    /// The record as the original body gives it (without the MX or SRV priority, which is in
    /// `config.priority`); empty for a delete of the whole RRset.
    pub target: String,
    /// The records, typed: read once from the row, so nothing after the store parses them.
    /// Shown as `targets`, in zone-file form (priority included) as `resource.targets` takes
    /// them; empty for a delete of the whole RRset or an adoption.
    #[serde(rename = "targets", serialize_with = "zone_form")]
    #[schema(value_type = Vec<String>, example = json!(["10 mail.example.test"]))]
    pub records: Vec<RecordData>,
    pub comment: Option<String>,
    pub config: RecordConfig,
    /// The RRset the request expects to be current (no records: absent); not shown when it
    /// has no expectation.
    #[serde(serialize_with = "rrset_form", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<RrsetView>)]
    pub expect: Option<LiveRrset>,
    /// The RRset before the change was applied; `null` until it is applied, and when a
    /// version of dnsorch that did not record it applied it. No records: it was absent.
    #[serde(serialize_with = "rrset_form")]
    #[schema(value_type = Option<RrsetView>)]
    pub before: Option<LiveRrset>,
    /// The RRset after the change was applied; `null` as for `before`.
    #[serde(serialize_with = "rrset_form")]
    #[schema(value_type = Option<RrsetView>)]
    pub after: Option<LiveRrset>,
    /// How many times a worker has claimed the request.
    pub attempts: u32,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    pub idempotency_key: Option<String>,
    pub zone: Option<String>,
    pub backend: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the request becomes due again (after a transient failure).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub applied_at: Option<DateTime<Utc>>,
    pub verified_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Until when the current worker's claim holds.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Who submitted the request.
    pub submitted_by: Submitter,
    /// The change set it was submitted in; not shown for a request submitted alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_set: Option<SetPlace>,
    /// The request's log; only in the single-request view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_messages: Option<Vec<LogEntry>>,
    /// The digest of the normalised request, for idempotency checks.
    #[serde(skip)]
    pub fingerprint: String,
    /// The insertion order: the order per owner name and the pagination cursor.
    #[serde(skip)]
    pub seq: i64,
}

/// Records as their zone-file form (`targets`).
fn zone_form<S: serde::Serializer>(
    records: &[RecordData],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(records.iter().map(crate::domain::zoneform::element))
}

/// A recorded RRset as its wire form (`before`, `after`).
fn rrset_form<S: serde::Serializer>(
    rrset: &Option<LiveRrset>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match rrset {
        Some(rrset) => serializer.serialize_some(&RrsetView::of(rrset)),
        None => serializer.serialize_none(),
    }
}

/// One RRset's ledger rows (as `RequestStore::rrset` gives them) as an RRset, with their TTL
/// (the RRset's); `None` without rows.
pub fn ledger_rrset(rows: &[DnsRecord]) -> Option<LiveRrset> {
    let first = rows.first()?;
    Some(LiveRrset {
        ttl: first.ttl,
        records: rows.iter().map(|row| row.data.clone()).collect(),
    })
}

/// A row of the provisioned-record ledger.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DnsRecord {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    pub request_id: RequestId,
    pub account_id: String,
    pub record_type: RecordType,
    pub domain: String,
    pub target: String,
    /// The record, typed (read once from the row).
    #[serde(skip)]
    pub data: RecordData,
    pub comment: Option<String>,
    pub ttl: u32,
    pub priority: Option<u16>,
    pub zone: Option<String>,
    pub provisioned_at: DateTime<Utc>,
    #[serde(skip)]
    pub seq: i64,
}

/// What an insert found: the request as a row (`DnsRequest`), or only its id where the caller
/// holds the change already.
#[derive(Debug)]
pub enum Inserted<T = DnsRequest> {
    /// A new row.
    Created(T),
    /// The idempotency key was used before for the same change: that request.
    Existing(T),
    /// The idempotency key was used before for another change.
    KeyReused(RequestId),
    /// The RRset belongs to another account: nothing was stored.
    NotOwner,
    /// The account has `max_unfinished` unfinished requests for the name: nothing was stored.
    Busy,
}

/// Why intake's admission stored nothing (see [`RequestStore::insert`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    NotOwner,
    Busy,
}

/// Why an admission refused, read after it (both stores): the RRset's owner ($1 name, $2 type)
/// and the unfinished requests of account $3 for the name, at most $4 of them counted.
const SELECT_ADMISSION: &str = "select (select account_id from dns_rrsets \
     where domain = $1 and record_type = $2), \
     (select count(*) from (select 1 from dns_requests where domain = $1 and account_id = $3 \
       and status in ('PENDING', 'PROCESSING', 'UNKNOWN') limit $4) unfinished)";

impl Refused {
    /// What `SELECT_ADMISSION` found means for `change`: another account owns the RRset, or
    /// the account is at its limit for the name; `None`: neither, or `change` is an adoption
    /// (subject to neither).
    fn judge(
        change: &ChangeRequest,
        owner: Option<String>,
        unfinished: i64,
        max_unfinished: u32,
    ) -> Option<Self> {
        match change.operation {
            Operation::Adopt => return None,
            Operation::Create | Operation::Delete | Operation::Replace => {}
        }
        match owner {
            Some(owner) if owner != change.account_id => Some(Self::NotOwner),
            _ if unfinished >= i64::from(max_unfinished) => Some(Self::Busy),
            _ => None,
        }
    }
}

impl<T> From<Refused> for Inserted<T> {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::NotOwner => Self::NotOwner,
            Refused::Busy => Self::Busy,
        }
    }
}

impl Inserted {
    /// What finding `existing` under `change`'s idempotency key means: the same change
    /// again, or the key used for another.
    fn for_key(existing: DnsRequest, change: &ChangeRequest) -> Self {
        if existing.fingerprint == change.fingerprint() {
            Self::Existing(existing)
        } else {
            Self::KeyReused(existing.id)
        }
    }

    /// The same answer, naming the request by its id only.
    pub fn id_only(self) -> Inserted<RequestId> {
        match self {
            Self::Created(request) => Inserted::Created(request.id),
            Self::Existing(request) => Inserted::Existing(request.id),
            Self::KeyReused(id) => Inserted::KeyReused(id),
            Self::NotOwner => Inserted::NotOwner,
            Self::Busy => Inserted::Busy,
        }
    }
}

/// A change intake refused, to be recorded FAILED once under its key (the external-dns
/// webhook's: external-dns sends a change again at every sync until it is applied, and finds
/// this request instead of adding rows). The records are not kept (they may not parse): the
/// reason names them.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub account_id: String,
    pub source: String,
    pub operation: Operation,
    pub record_type: RecordType,
    /// The name as given (at most 253 characters are kept).
    pub domain: String,
    pub reason: String,
    pub idempotency_key: String,
    pub submitter: Submitter,
}

impl Refusal {
    /// The name as stored.
    fn stored_domain(&self) -> String {
        self.domain.chars().take(253).collect()
    }

    /// The first log line.
    fn log(&self) -> String {
        let entry = LogEntry::error(format!("refused at intake: {}", self.reason));
        serde_json::to_string(&[entry]).expect("plain data serialises")
    }
}

/// The `config` column of a refusal.
const REFUSAL_CONFIG: &str = r#"{"ttl":300,"priority":null,"extra_config":{}}"#;

/// A worker's hold on a request: the row as claimed and the fencing token.
#[derive(Debug, Clone)]
pub struct Claim {
    pub request: DnsRequest,
    /// Every write under this claim is conditional on this token.
    pub token: Uuid,
}

/// The log lines a claim writes in the same unit as the claim itself (so starting an attempt
/// costs one commit), made from the claimed row.
pub type OpeningLog = Arc<dyn Fn(&DnsRequest) -> Vec<LogEntry> + Send + Sync>;

/// An opening log that writes nothing.
pub fn no_opening_log() -> OpeningLog {
    Arc::new(|_| Vec::new())
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Applied (and verified): COMPLETED, with the ledger row written in the same transaction.
    Completed {
        applied_at: DateTime<Utc>,
        verified_at: Option<DateTime<Utc>>,
        /// The RRset before and after; `None` keeps what an earlier attempt recorded.
        rrsets: Option<BeforeAfter>,
    },
    /// A transient error with attempts left: back to PENDING until `retry_in` has passed.
    Retry { error: String, retry_in: Duration },
    /// A permanent error, or attempts exhausted.
    Failed { error: String },
    /// An adoption read the RRset: COMPLETED, with the ledger set to `live` (or, for a
    /// backend whose live state is the ledger, the ledger's rows given to the account) and
    /// the RRset given to the request's account.
    Adopted {
        at: DateTime<Utc>,
        live: Option<LiveRrset>,
    },
    /// A change was sent but its outcome is not known (or a check of the server could not
    /// tell yet): UNKNOWN, checked again after `retry_in`. `rrsets`: what the change planned,
    /// kept for when a check finds it in place.
    Unknown {
        error: String,
        retry_in: Duration,
        rrsets: Option<BeforeAfter>,
    },
}

/// A member of an atomic set as its lead finishes: the member's request and the RRset before
/// and after its change, as the lead's attempt read and planned it.
#[derive(Debug, Clone)]
pub struct SetMember {
    pub request: DnsRequest,
    pub rrsets: Option<BeforeAfter>,
}

impl SetMember {
    /// The member's share of its lead's outcome: the same outcome with the member's own RRsets,
    /// and the lead's log lines after one that names the lead.
    pub fn outcome(
        &self,
        lead: &DnsRequest,
        outcome: &Outcome,
        entries: &[LogEntry],
    ) -> (Outcome, Vec<LogEntry>) {
        let own = match outcome {
            Outcome::Completed {
                applied_at,
                verified_at,
                rrsets,
            } => Outcome::Completed {
                applied_at: *applied_at,
                verified_at: *verified_at,
                rrsets: rrsets.as_ref().and(self.rrsets.clone()),
            },
            Outcome::Unknown {
                error,
                retry_in,
                rrsets,
            } => Outcome::Unknown {
                error: error.clone(),
                retry_in: *retry_in,
                rrsets: rrsets.as_ref().and(self.rrsets.clone()),
            },
            Outcome::Retry { .. } | Outcome::Failed { .. } | Outcome::Adopted { .. } => {
                outcome.clone()
            }
        };
        let mut log = Vec::with_capacity(entries.len() + 1);
        log.push(LogEntry::info(format!(
            "applied with its atomic change set by the set's lead request {}",
            lead.id
        )));
        log.extend_from_slice(entries);
        (own, log)
    }
}

/// Both RRsets as the JSON the `rrset_before` and `rrset_after` columns hold.
fn rrsets_json(rrsets: &BeforeAfter) -> (String, String) {
    let json = |rrset: &LiveRrset| {
        serde_json::to_string(&RrsetView::of(rrset)).expect("plain data serialises")
    };
    (json(&rrsets.before), json(&rrsets.after))
}

/// The columns an [`Outcome`] writes.
#[derive(Debug, Clone)]
pub struct OutcomeColumns<'a> {
    pub status: &'static str,
    pub last_error: Option<&'a str>,
    /// Due again after this long (PENDING outcomes only).
    pub retry_in: Option<Duration>,
    pub applied_at: Option<DateTime<Utc>>,
    pub verified_at: Option<DateTime<Utc>>,
    /// `rrset_before` and `rrset_after` as JSON; `None` keeps what the row holds.
    pub rrsets: Option<(String, String)>,
}

impl Outcome {
    /// The columns this outcome writes.
    pub fn columns(&self) -> OutcomeColumns<'_> {
        let none = OutcomeColumns {
            status: "PENDING",
            last_error: None,
            retry_in: None,
            applied_at: None,
            verified_at: None,
            rrsets: None,
        };
        match self {
            Self::Completed {
                applied_at,
                verified_at,
                rrsets,
            } => OutcomeColumns {
                status: "COMPLETED",
                applied_at: Some(*applied_at),
                verified_at: *verified_at,
                rrsets: rrsets.as_ref().map(rrsets_json),
                ..none
            },
            Self::Adopted { at, .. } => OutcomeColumns {
                status: "COMPLETED",
                applied_at: Some(*at),
                verified_at: Some(*at),
                ..none
            },
            Self::Retry { error, retry_in } => OutcomeColumns {
                last_error: Some(error),
                retry_in: Some(*retry_in),
                ..none
            },
            Self::Failed { error } => OutcomeColumns {
                status: "FAILED",
                last_error: Some(error),
                ..none
            },
            Self::Unknown {
                error,
                retry_in,
                rrsets,
            } => OutcomeColumns {
                status: "UNKNOWN",
                last_error: Some(error),
                retry_in: Some(*retry_in),
                rrsets: rrsets.as_ref().map(rrsets_json),
                ..none
            },
        }
    }
}

/// Filters for listing requests, newest first.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub status: Option<RequestStatus>,
    pub account_id: Option<String>,
    pub domain: Option<String>,
    pub record_type: Option<RecordType>,
    /// Only rows older than this cursor (a `seq`).
    pub before: Option<i64>,
    pub limit: u32,
}

impl RequestFilter {
    /// The equality conditions as (column, value) pairs.
    pub fn conditions(&self) -> Vec<(&'static str, String)> {
        let optional = [
            ("status", self.status.map(|s| s.as_str().to_owned())),
            ("account_id", self.account_id.clone()),
            ("domain", self.domain.clone()),
            (
                "record_type",
                self.record_type.map(|t| t.as_str().to_owned()),
            ),
        ];
        optional
            .into_iter()
            .filter_map(|(column, value)| value.map(|v| (column, v)))
            .collect()
    }
}

/// Filters for listing ledger rows, newest first.
#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    pub account_id: Option<String>,
    pub domain: Option<String>,
    pub record_type: Option<RecordType>,
    pub zone: Option<String>,
    pub before: Option<i64>,
    pub limit: u32,
}

impl RecordFilter {
    /// The equality conditions as (column, value) pairs.
    pub fn conditions(&self) -> Vec<(&'static str, String)> {
        let optional = [
            ("account_id", self.account_id.clone()),
            ("domain", self.domain.clone()),
            (
                "record_type",
                self.record_type.map(|t| t.as_str().to_owned()),
            ),
            ("zone", self.zone.clone()),
        ];
        optional
            .into_iter()
            .filter_map(|(column, value)| value.map(|v| (column, v)))
            .collect()
    }
}

/// `<select> where <column = value>... and seq < <before> order by seq desc limit <limit>`:
/// the one paging query of both stores.
fn page_query<DB>(
    select: impl Into<String>,
    conditions: Vec<(&'static str, String)>,
    before: Option<i64>,
    limit: u32,
) -> sqlx::QueryBuilder<DB>
where
    DB: sqlx::Database,
    String: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut query = sqlx::QueryBuilder::new(select);
    query.push(" where 1 = 1");
    for (column, value) in conditions {
        query.push(format!(" and {column} = ")).push_bind(value);
    }
    if let Some(before) = before {
        query.push(" and seq < ").push_bind(before);
    }
    query
        .push(" order by seq desc limit ")
        .push_bind(i64::from(limit));
    query
}

/// The migration that gave every RRset one owner and merged duplicate ledger rows.
const OWNERSHIP_MIGRATION: i64 = 20_261_202_000_001;

/// Logs, once when the ownership migration ran, each RRset that held ledger rows of several
/// accounts and was given to the account of its oldest row (also in the audit log).
fn log_merged(merged: &[(String, String)]) {
    for (rrset, details) in merged {
        tracing::warn!(rrset = %rrset, details = %details, "this RRset held ledger rows of several accounts; the migration gave it to the account of its oldest row (audit action rrset.merged)");
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database did not answer in time or refused connections: retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A write could not be committed (disk trouble, or the writer is overloaded): retry later.
    #[error("the write was not committed: {0}")]
    WriteFailed(String),
    /// Anything else.
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
    /// A stored value that does not parse: a bug or a hand-edited row.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether trying again later may succeed: the database did not answer, or could not
    /// commit (`WriteFailed`: the SQLite writer's queue is full or its commit failed). Any
    /// other error is about the request itself, or a bug, and a retry fails the same way.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) | Self::WriteFailed(_) => true,
            Self::Other(_) | Self::Corrupt(_) => false,
        }
    }
}

/// Whether a database error code means "try again", never "your request is wrong": SQLite's
/// SQLITE_BUSY (5), SQLITE_LOCKED (6) and SQLITE_BUSY_SNAPSHOT (517); PostgreSQL's connection
/// exceptions (class 08), insufficient resources (class 53, such as too many connections),
/// shutdown and start-up (57P01-57P03), serialization failures and deadlocks (40001, 40P01).
fn transient_code(code: &str) -> bool {
    matches!(
        code,
        "5" | "6" | "517" | "40001" | "40P01" | "57P01" | "57P02" | "57P03"
    ) || (code.len() == 5 && (code.starts_with("08") || code.starts_with("53")))
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        // A transient code gets the client a 503, not a 500, and Kafka retries its batch.
        let busy = matches!(&error, sqlx::Error::Database(e)
            if e.code().as_deref().is_some_and(transient_code));
        match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Self::Unavailable(error)
            }
            _ if busy => Self::Unavailable(error),
            other => Self::Other(other),
        }
    }
}

/// The durable state of requests and records.
#[async_trait::async_trait]
pub trait RequestStore: Send + Sync {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Records a validated request as PENDING, or finds the request its idempotency key names.
    ///
    /// In the same unit as the insert: a create claims its RRset for the account when no one
    /// owns it, and a create or delete in an RRset another account owns stores nothing
    /// ([`Inserted::NotOwner`]); an account with `max_unfinished` unfinished requests for the
    /// name stores nothing ([`Inserted::Busy`]). An adoption is subject to neither.
    async fn insert(
        &self,
        change: &ChangeRequest,
        max_unfinished: u32,
    ) -> Result<Inserted, StoreError>;

    /// Records several requests in one transaction (all or none), answering for each as
    /// `insert` would but with ids only (the caller holds the changes, and reading the rows
    /// back would cost the database more than writing them); used by batch intake.
    async fn insert_many(
        &self,
        changes: &[ChangeRequest],
        max_unfinished: u32,
    ) -> Result<Vec<Inserted<RequestId>>, StoreError>;

    /// Records an atomic set's requests and then its row, in one transaction, only if every
    /// request is new: when any is not (a key already used, or admission refused it),
    /// nothing is stored. The answers are as `insert_many`'s.
    async fn insert_atomic(
        &self,
        changes: &[ChangeRequest],
        max_unfinished: u32,
        set: &NewChangeSet,
    ) -> Result<Vec<Inserted<RequestId>>, StoreError>;

    /// The members of an atomic set (every request but its lead), in the order of the set's
    /// changes, with their logs.
    async fn set_members(&self, set: ChangeSetId) -> Result<Vec<DnsRequest>, StoreError>;

    /// Records a refused change as a FAILED request, once per (account, key): `true` when it
    /// was new.
    async fn record_refusal(&self, refusal: &Refusal) -> Result<bool, StoreError>;

    /// One request with its log.
    async fn get(&self, id: RequestId) -> Result<Option<DnsRequest>, StoreError>;

    /// Requests, newest first, without their logs.
    async fn list(&self, filter: &RequestFilter) -> Result<Vec<DnsRequest>, StoreError>;

    /// Ledger rows, newest first.
    async fn list_records(&self, filter: &RecordFilter) -> Result<Vec<DnsRecord>, StoreError>;

    /// Every ledger row of one RRset, oldest first, and the account that owns the RRset.
    async fn rrset(
        &self,
        domain: &str,
        record_type: RecordType,
    ) -> Result<(Option<String>, Vec<DnsRecord>), StoreError>;

    /// The types the ledger holds records of at `domain` (for CNAME exclusivity).
    async fn record_types(&self, domain: &str) -> Result<Vec<RecordType>, StoreError>;

    /// Claims a request for `lease`: request `id`, or with `None` the oldest due one. Only a
    /// PENDING, due request with no older unfinished request for the same owner name is
    /// claimed; anything else gives `None`. The `opening` lines are appended with the claim.
    async fn claim(
        &self,
        id: Option<RequestId>,
        lease: Duration,
        opening: OpeningLog,
    ) -> Result<Option<Claim>, StoreError>;

    /// Appends to the log under the claim. `false`: the claim was lost.
    async fn append_log(&self, claim: &Claim, entries: &[LogEntry]) -> Result<bool, StoreError>;

    /// Extends the lease. `false`: the claim was lost.
    async fn renew_lease(&self, claim: &Claim, lease: Duration) -> Result<bool, StoreError>;

    /// Writes the attempt's outcome and log under the claim, in one transaction. `false`: the
    /// claim was lost and nothing was written.
    async fn finish(
        &self,
        claim: &Claim,
        outcome: &Outcome,
        entries: &[LogEntry],
    ) -> Result<bool, StoreError>;

    /// `finish` for the lead of an atomic set, and in the same transaction each member's share
    /// of the outcome (see [`SetMember::outcome`]). `false`: the claim was lost and nothing was
    /// written.
    async fn finish_set(
        &self,
        claim: &Claim,
        outcome: &Outcome,
        entries: &[LogEntry],
        members: &[SetMember],
    ) -> Result<bool, StoreError>;

    /// Returns requests whose lease expired to PENDING (or FAILED once `max_attempts` claims
    /// were made, with the members of an atomic set whose lead it is), and gives their ids.
    async fn release_expired_leases(&self, max_attempts: u32)
    -> Result<Vec<RequestId>, StoreError>;

    /// Stamps `enqueued_at` on up to `limit` due PENDING requests that were never queued or
    /// were queued longer than `older_than` ago (their delivery may be lost), oldest first,
    /// and gives their ids to queue again. Concurrent callers get disjoint sets.
    async fn requeue_due(
        &self,
        older_than: Duration,
        limit: u32,
    ) -> Result<Vec<RequestId>, StoreError>;

    /// How many requests are in each status.
    async fn count_by_status(&self) -> Result<Vec<(RequestStatus, i64)>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::transient_code;

    #[test]
    fn busy_shutdown_and_connection_codes_are_transient_and_constraint_codes_are_not() {
        for code in [
            "5", "517", "08006", "53300", "57P01", "57P03", "40001", "40P01",
        ] {
            assert!(transient_code(code), "{code}");
        }
        for code in ["19", "2067", "23505", "23514", "P0001", "42601", "08"] {
            assert!(!transient_code(code), "{code}");
        }
    }
}
