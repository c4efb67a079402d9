//! Stored rows into the store's types, once for both stores.
//!
//! Each store says only how its SQL types hold a value ([`Columns`]: PostgreSQL has native
//! UUIDs, `jsonb` and integers of several widths; SQLite keeps UUIDs and JSON as text). What
//! the values mean (ranges, vocabularies, which columns make a request) is decided here. A
//! stored value that does not decode is [`StoreError::Corrupt`] naming its column, never a
//! default in its place.

use std::fmt::Display;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::{Postgres, Sqlite};
use uuid::Uuid;

use super::audit::AuditAction;
use super::{DnsRecord, DnsRequest, StoreError};
use crate::domain::zoneform::{self, RrsetView};
use crate::domain::{
    ChangeSetId, Operation, RecordConfig, RecordData, RecordType, RequestId, RequestStatus,
    SetPlace, SetRole, Submitter, TokenId,
};

/// A type both stores hold the same way, decoded by sqlx as it is (text, flags, times).
pub(super) trait Plain:
    for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Postgres>
    + for<'r> sqlx::Decode<'r, Sqlite>
    + sqlx::Type<Sqlite>
{
}

impl Plain for String {}
impl Plain for bool {}
impl Plain for DateTime<Utc> {}
impl<T: Plain> Plain for Option<T> {}

/// A row's values by column name, as one store's SQL types hold them.
pub(super) trait Columns {
    /// A value both stores hold the same way.
    fn plain<T: Plain>(&self, column: &'static str) -> Result<T, StoreError>;

    /// An integer column, whatever its width.
    fn integer(&self, column: &'static str) -> Result<Option<i64>, StoreError>;

    /// A UUID column.
    fn uuid(&self, column: &'static str) -> Result<Option<Uuid>, StoreError>;

    /// A JSON column, never null.
    fn json<T: DeserializeOwned>(&self, column: &'static str) -> Result<T, StoreError>;

    /// A JSON column that may be null.
    fn json_or_null<T: DeserializeOwned>(
        &self,
        column: &'static str,
    ) -> Result<Option<T>, StoreError>;

    /// The column as `T`.
    fn get<T: Decoded>(&self, column: &'static str) -> Result<T, StoreError>
    where
        Self: Sized,
    {
        T::decode(self, column)
    }
}

/// A store type read from one column.
pub(super) trait Decoded: Sized {
    fn decode<R: Columns>(row: &R, column: &'static str) -> Result<Self, StoreError>;
}

/// The error of a stored value that does not decode.
pub(super) fn corrupt(column: &str, why: impl Display) -> StoreError {
    StoreError::Corrupt(format!("column {column}: {why}"))
}

/// `column` read by sqlx as `T`: a value sqlx cannot decode is corrupt; a missing column or a
/// database failure is what it is.
pub(super) fn decode<'r, R, T>(row: &'r R, column: &'static str) -> Result<T, StoreError>
where
    R: sqlx::Row,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'static str: sqlx::ColumnIndex<R>,
{
    row.try_get(column).map_err(|error| match error {
        sqlx::Error::ColumnDecode { source, .. } => corrupt(column, source),
        other => other.into(),
    })
}

fn required<T>(column: &str, value: Option<T>) -> Result<T, StoreError> {
    value.ok_or_else(|| corrupt(column, "null where a value is required"))
}

fn in_range<T: TryFrom<i64>>(column: &str, value: i64) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| corrupt(column, format!("{value} is out of range")))
}

/// Each type is a `plain` value of its column.
macro_rules! plain {
    ($($t:ty),*) => {$(
        impl Decoded for $t {
            fn decode<R: Columns>(row: &R, column: &'static str) -> Result<Self, StoreError> {
                row.plain(column)
            }
        }
    )*};
}

plain!(
    String,
    Option<String>,
    bool,
    DateTime<Utc>,
    Option<DateTime<Utc>>
);

/// Each type is a closed vocabulary stored as its text.
macro_rules! vocabulary {
    ($($t:ty),*) => {$(
        impl Decoded for $t {
            fn decode<R: Columns>(row: &R, column: &'static str) -> Result<Self, StoreError> {
                let text: String = row.plain(column)?;
                text.parse()
                    .map_err(|_| corrupt(column, format!("unexpected value '{text}'")))
            }
        }
    )*};
}

vocabulary!(RequestStatus, Operation, RecordType, AuditAction);

impl Decoded for i64 {
    fn decode<R: Columns>(row: &R, column: &'static str) -> Result<Self, StoreError> {
        required(column, row.integer(column)?)
    }
}

impl Decoded for u32 {
    fn decode<R: Columns>(row: &R, column: &'static str) -> Result<Self, StoreError> {
        in_range(column, row.get(column)?)
    }
}

impl Decoded for Option<u16> {
    fn decode<R: Columns>(row: &R, column: &'static str) -> Result<Self, StoreError> {
        row.integer(column)?
            .map(|value| in_range(column, value))
            .transpose()
    }
}

impl Decoded for Uuid {
    fn decode<R: Columns>(row: &R, column: &'static str) -> Result<Self, StoreError> {
        required(column, row.uuid(column)?)
    }
}

impl Decoded for RequestId {
    fn decode<R: Columns>(row: &R, column: &'static str) -> Result<Self, StoreError> {
        row.get(column).map(Self)
    }
}

impl Decoded for TokenId {
    fn decode<R: Columns>(row: &R, column: &'static str) -> Result<Self, StoreError> {
        row.get(column).map(Self)
    }
}

impl Decoded for Option<TokenId> {
    fn decode<R: Columns>(row: &R, column: &'static str) -> Result<Self, StoreError> {
        Ok(row.uuid(column)?.map(TokenId))
    }
}

/// A request of `REQUEST_COLUMNS`, with its log when the row has `log_messages` (`with_log`).
pub(super) fn request<R: Columns>(row: &R, with_log: bool) -> Result<DnsRequest, StoreError> {
    let record_type: RecordType = row.get("record_type")?;
    let target: String = row.get("target")?;
    let config: RecordConfig = row.json("config")?;
    // The one parse of a stored record: validated at intake, so a failure is a corrupt row.
    // Several records are in `targets`; one is in `target` and `config.priority`.
    let records = match row.json_or_null::<Vec<String>>("targets")? {
        Some(elements) => elements
            .iter()
            .map(|e| zoneform::parse(record_type, e).map_err(|why| corrupt("targets", why)))
            .collect::<Result<_, _>>()?,
        None if target.is_empty() => Vec::new(),
        None => vec![record_data(record_type, &target, config.priority)?],
    };
    let rrset = |column: &'static str| {
        row.json_or_null::<RrsetView>(column)?
            .map(|view| view.parse(record_type).map_err(|why| corrupt(column, why)))
            .transpose()
    };
    Ok(DnsRequest {
        seq: row.get("seq")?,
        id: row.get("id")?,
        status: row.get("status")?,
        account_id: row.get("account_id")?,
        source: row.get("source")?,
        operation: row.get("operation")?,
        record_type,
        domain: row.get("domain")?,
        target,
        records,
        comment: row.get("comment")?,
        config,
        expect: rrset("expect")?,
        before: rrset("rrset_before")?,
        after: rrset("rrset_after")?,
        attempts: row.get("attempts")?,
        last_error: row.get("last_error")?,
        idempotency_key: row.get("idempotency_key")?,
        fingerprint: row.get("fingerprint")?,
        zone: row.get("zone")?,
        backend: row.get("backend")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        next_attempt_at: row.get("next_attempt_at")?,
        started_at: row.get("started_at")?,
        applied_at: row.get("applied_at")?,
        verified_at: row.get("verified_at")?,
        finished_at: row.get("finished_at")?,
        lease_expires_at: row.get("lease_expires_at")?,
        submitted_by: submitter(row, PRINCIPAL_COLUMNS)?,
        change_set: set_place(row)?,
        log_messages: if with_log {
            Some(row.json("log_messages")?)
        } else {
            None
        },
    })
}

/// A request's place in its change set: all three columns, or none.
fn set_place<R: Columns>(row: &R) -> Result<Option<SetPlace>, StoreError> {
    let Some(id) = row.uuid("change_set_id")? else {
        return Ok(None);
    };
    let index = required("change_set_index", row.integer("change_set_index")?)?;
    let role: Option<String> = row.get("set_role")?;
    let role: SetRole = required("set_role", role)?
        .parse()
        .map_err(|why| corrupt("set_role", why))?;
    Ok(Some(SetPlace {
        id: ChangeSetId(id),
        index: in_range("change_set_index", index)?,
        role,
    }))
}

/// The columns a request or a change set records its submitter in.
pub(super) const PRINCIPAL_COLUMNS: [&str; 4] = [
    "principal_token_id",
    "principal_name",
    "principal_account",
    "client_addr",
];

/// Who submitted a request or made an audited change, from its columns of the token's id,
/// the token's name and account, and the client's address.
pub(super) fn submitter<R: Columns>(
    row: &R,
    [token_id, token_name, account_id, client_addr]: [&'static str; 4],
) -> Result<Submitter, StoreError> {
    Ok(Submitter {
        token_id: row.get(token_id)?,
        token_name: row.get(token_name)?,
        account_id: row.get(account_id)?,
        client_addr: row.get(client_addr)?,
    })
}

/// A ledger row of `SELECT_RECORDS` (or `SELECT_RRSET`).
pub(super) fn record<R: Columns>(row: &R) -> Result<DnsRecord, StoreError> {
    let record_type: RecordType = row.get("record_type")?;
    let target: String = row.get("target")?;
    let priority: Option<u16> = row.get("priority")?;
    Ok(DnsRecord {
        seq: row.get("seq")?,
        id: row.get("id")?,
        request_id: row.get("request_id")?,
        account_id: row.get("account_id")?,
        record_type,
        domain: row.get("domain")?,
        data: record_data(record_type, &target, priority)?,
        target,
        comment: row.get("comment")?,
        ttl: row.get("ttl")?,
        priority,
        zone: row.get("zone")?,
        provisioned_at: row.get("provisioned_at")?,
    })
}

/// A stored record (its `target` and priority), typed.
fn record_data(
    record_type: RecordType,
    target: &str,
    priority: Option<u16>,
) -> Result<RecordData, StoreError> {
    RecordData::parse(record_type, target, priority.map(i64::from)).map_err(|e| {
        corrupt(
            "target",
            format!("{target:?} is not a {record_type} record: {e:?}"),
        )
    })
}

/// The rows of `SELECT_RRSET`: the RRset's owner (none when it has no row) and its ledger
/// rows, oldest first (an owner without rows comes as one row whose `seq` is null).
pub(super) fn rrset<R: Columns>(
    rows: &[R],
) -> Result<(Option<String>, Vec<DnsRecord>), StoreError> {
    let owner = rows.first().map(|row| row.get("owner")).transpose()?;
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        if row.integer("seq")?.is_some() {
            records.push(record(row)?);
        }
    }
    Ok((owner, records))
}

/// A row of `select status, count(*) as n ... group by status`.
pub(super) fn status_count<R: Columns>(row: &R) -> Result<(RequestStatus, i64), StoreError> {
    Ok((row.get("status")?, row.get("n")?))
}
