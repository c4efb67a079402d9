//! Change sets (`dns_change_sets`) behind one trait, implemented by both stores.
//!
//! A set's changes are requests in `dns_requests` that name it (`change_set_id`,
//! `change_set_index`, `set_role`); the set's row holds who submitted it, whether it is atomic,
//! and the changes intake refused, with the answer each got. Its status is derived from its
//! requests' when it is read (`domain::SetStatus`), so it can never disagree with them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::rows::{Columns, PRINCIPAL_COLUMNS, submitter};
use super::{DnsRequest, StoreError};
use crate::domain::{ChangeSetId, FieldError, RequestId, RequestStatus, Submitter};

/// The columns every store reads into a [`ChangeSet`].
pub(super) const SET_COLUMNS: &str = "seq, id, account_id, atomic, item_count, refused, \
     idempotency_key, fingerprint, source, principal_token_id, principal_name, \
     principal_account, client_addr, created_at";

/// The answer a refused change got, as it would have got it alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemError {
    /// The HTTP status (422 invalid, 403 not allowed, 409 key reused, 429 busy or limited).
    pub status: u16,
    /// The stable code, as in an error answer: `validation_failed`, `forbidden`, …
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
    /// The request an idempotency key already names (409 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
}

/// A change intake refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefusedChange {
    pub index: u32,
    pub error: ItemError,
}

/// A set to record.
#[derive(Debug, Clone)]
pub struct NewChangeSet {
    pub id: ChangeSetId,
    pub account_id: String,
    pub atomic: bool,
    pub item_count: u32,
    pub refused: Vec<RefusedChange>,
    pub idempotency_key: Option<String>,
    pub fingerprint: String,
    pub source: String,
    pub submitter: Submitter,
}

/// A set as recorded.
#[derive(Debug, Clone)]
pub struct ChangeSet {
    pub id: ChangeSetId,
    pub account_id: String,
    pub atomic: bool,
    pub item_count: u32,
    pub refused: Vec<RefusedChange>,
    pub idempotency_key: Option<String>,
    pub fingerprint: String,
    pub source: String,
    pub submitted_by: Submitter,
    pub created_at: DateTime<Utc>,
    /// The paging cursor.
    pub seq: i64,
}

/// Filters for listing sets, newest first.
#[derive(Debug, Clone, Default)]
pub struct SetFilter {
    pub account_id: Option<String>,
    pub before: Option<i64>,
    pub limit: u32,
}

impl SetFilter {
    /// The equality conditions as (column, value) pairs.
    pub fn conditions(&self) -> Vec<(&'static str, String)> {
        self.account_id
            .iter()
            .map(|account| ("account_id", account.clone()))
            .collect()
    }
}

/// How many of a set's requests are in a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetCount {
    /// The set.
    pub set: ChangeSetId,
    pub status: RequestStatus,
    pub count: i64,
}

/// The durable state of change sets.
#[async_trait::async_trait]
pub trait ChangeSetStore: Send + Sync {
    /// Records a set after its requests; a set with this id already recorded (a retry under
    /// the same `Idempotency-Key`) stays as it was. The set as stored.
    async fn record_change_set(&self, set: &NewChangeSet) -> Result<ChangeSet, StoreError>;

    /// One set.
    async fn change_set(&self, id: ChangeSetId) -> Result<Option<ChangeSet>, StoreError>;

    /// A set's requests in the order of its changes, without their logs.
    async fn change_set_requests(&self, id: ChangeSetId) -> Result<Vec<DnsRequest>, StoreError>;

    /// Sets, newest first.
    async fn list_change_sets(&self, filter: &SetFilter) -> Result<Vec<ChangeSet>, StoreError>;

    /// How many requests of each of `sets` are in each status.
    async fn set_counts(&self, sets: &[ChangeSetId]) -> Result<Vec<SetCount>, StoreError>;
}

/// A row of `SET_COLUMNS`.
pub(super) fn set_from_row<R: Columns>(row: &R) -> Result<ChangeSet, StoreError> {
    Ok(ChangeSet {
        seq: row.get("seq")?,
        id: ChangeSetId(row.get("id")?),
        account_id: row.get("account_id")?,
        atomic: row.get("atomic")?,
        item_count: row.get("item_count")?,
        refused: row.json("refused")?,
        idempotency_key: row.get("idempotency_key")?,
        fingerprint: row.get("fingerprint")?,
        source: row.get("source")?,
        submitted_by: submitter(row, PRINCIPAL_COLUMNS)?,
        created_at: row.get("created_at")?,
    })
}

/// A row of `select change_set_id, status, count(*) as n ... group by 1, 2`.
pub(super) fn count_from_row<R: Columns>(row: &R) -> Result<SetCount, StoreError> {
    Ok(SetCount {
        set: ChangeSetId(row.get("change_set_id")?),
        status: row.get("status")?,
        count: row.get("n")?,
    })
}

/// The refused changes as the `refused` column holds them.
pub(super) fn refused_json(refused: &[RefusedChange]) -> String {
    serde_json::to_string(refused).expect("plain data serialises")
}
