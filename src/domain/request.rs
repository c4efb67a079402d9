//! A DNS change request: its identity, its life-cycle states, and the validated change it asks for.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::fqdn::Fqdn;
use super::principal::Submitter;
use super::record::{LiveRrset, RecordData, RecordType};

/// The default TTL when the body gives none, as in the original design.
pub const DEFAULT_TTL: u32 = 300;

/// The identity of a request (`dns_requests.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, format = Uuid)]
pub struct RequestId(pub Uuid);

impl RequestId {
    /// A new, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for RequestId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Where a request is in its life (see ARCHITECTURE.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum RequestStatus {
    /// Accepted and waiting for a worker (also between retries).
    Pending,
    /// Claimed by a worker holding a lease.
    Processing,
    /// Applied and recorded in `dns_records`.
    Completed,
    /// Given up: a permanent error, or attempts exhausted.
    Failed,
    /// A change was sent but its outcome is not known (the answer was lost, verification
    /// timed out): not finished; a worker queries the server and makes it COMPLETED, FAILED
    /// or PENDING again. Later requests for the name wait meanwhile.
    Unknown,
}

impl RequestStatus {
    /// Every status, in the order of a request's life.
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Processing,
        Self::Unknown,
        Self::Completed,
        Self::Failed,
    ];

    /// The text stored in `dns_requests.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Processing => "PROCESSING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// Whether the request will change no more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

impl FromStr for RequestStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("'{s}' is not one of PENDING, PROCESSING, COMPLETED, FAILED, UNKNOWN")
            })
    }
}

/// What a request does to its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Add the record to its RRset.
    Create,
    /// Remove the record, or without a target the whole RRset.
    Delete,
    /// Take the RRset as it is live into the ledger, for the request's account (admins).
    Adopt,
    /// Make the RRset exactly the request's records, with its TTL.
    Replace,
}

impl Operation {
    /// The text stored in `dns_requests.operation`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Delete => "delete",
            Self::Adopt => "adopt",
            Self::Replace => "replace",
        }
    }
}

impl FromStr for Operation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "create" => Ok(Self::Create),
            "delete" => Ok(Self::Delete),
            "adopt" => Ok(Self::Adopt),
            "replace" => Ok(Self::Replace),
            other => Err(format!("unknown operation '{other}'")),
        }
    }
}

/// The `config` column: TTL, priority and the backend's extra settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordConfig {
    /// Seconds; the RRset's TTL.
    pub ttl: u32,
    /// MX preference or SRV priority.
    pub priority: Option<u16>,
    /// Stored and shown with the request as given; no backend reads it.
    #[schema(value_type = Object)]
    pub extra_config: serde_json::Map<String, serde_json::Value>,
}

/// A change request after validation: everything in it has been checked and normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRequest {
    pub account_id: String,
    pub source: String,
    pub operation: Operation,
    /// The owner name.
    pub domain: Fqdn,
    pub record_type: RecordType,
    /// The records; empty only for a delete of the whole RRset or an adoption.
    pub records: Vec<RecordData>,
    pub ttl: u32,
    /// The RRset the client expects to be current (no records: absent); the change fails if
    /// the live RRset differs. `None`: no expectation.
    pub expect: Option<LiveRrset>,
    pub comment: Option<String>,
    pub extra_config: serde_json::Map<String, serde_json::Value>,
    /// The client's `Idempotency-Key`, scoped to `account_id`.
    pub idempotency_key: Option<String>,
    /// The configured zone the name belongs to (set by intake from the zones file).
    pub zone: Option<String>,
    /// The backend that will apply the change (set by intake from the zones file).
    pub backend: Option<String>,
    /// Who submitted it (set by intake from the principal).
    pub submitter: Submitter,
    /// The change set it belongs to (set by intake for a change of a set).
    pub change_set: Option<super::changeset::SetPlace>,
}

impl ChangeRequest {
    /// The stored `target`: the record's, or empty for a whole-RRset delete.
    pub fn target(&self) -> String {
        self.records
            .first()
            .map(RecordData::target)
            .unwrap_or_default()
    }

    /// The stored `targets`: every record in zone-file form when there are several; `None`
    /// for one record (or none), which `target` and `config.priority` hold, as they always did.
    pub fn targets(&self) -> Option<Vec<String>> {
        (self.records.len() > 1)
            .then(|| self.records.iter().map(super::zoneform::element).collect())
    }

    /// The `config` column's value.
    pub fn config(&self) -> RecordConfig {
        RecordConfig {
            ttl: self.ttl,
            priority: self.records.first().and_then(RecordData::priority),
            extra_config: self.extra_config.clone(),
        }
    }

    /// A digest of the normalised request (not of the key), so a retried key can be told apart
    /// from a key reused for another change.
    pub fn fingerprint(&self) -> String {
        let mut canonical = serde_json::json!({
            "account_id": self.account_id,
            "source": self.source,
            "operation": self.operation.as_str(),
            "record_type": self.record_type.as_str(),
            "domain": self.domain.as_str(),
            "target": self.target(),
            "comment": self.comment,
            "config": self.config(),
        });
        // Only with several records, so the digest of a one-record change stays what it was.
        if let Some(targets) = self.targets() {
            canonical["targets"] = serde_json::json!(targets);
        }
        if let Some(expect) = &self.expect {
            canonical["expect"] = serde_json::json!(super::zoneform::RrsetView::of(expect));
        }
        super::token::hex(&Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// One entry of a request's `log_messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogEntry {
    pub at: DateTime<Utc>,
    pub level: LogLevel,
    pub message: String,
}

impl LogEntry {
    /// An `info` entry stamped now.
    pub fn info(message: impl Into<String>) -> Self {
        Self::new(LogLevel::Info, message)
    }

    /// The first entry of every request: where it came from and what it asks.
    pub fn accepted(change: &ChangeRequest) -> Self {
        let what = if change.records.is_empty() {
            "(the whole RRset)".to_owned()
        } else {
            let elements: Vec<String> = change
                .records
                .iter()
                .map(super::zoneform::element)
                .collect();
            elements.join(", ")
        };
        Self::info(format!(
            "request accepted from {} by {} for account {}: {} {} {} {what}",
            change.source,
            change.submitter.describe(),
            change.account_id,
            change.operation.as_str(),
            change.record_type,
            change.domain,
        ))
    }

    /// A `warning` entry stamped now.
    pub fn warning(message: impl Into<String>) -> Self {
        Self::new(LogLevel::Warning, message)
    }

    /// An `error` entry stamped now.
    pub fn error(message: impl Into<String>) -> Self {
        Self::new(LogLevel::Error, message)
    }

    fn new(level: LogLevel, message: impl Into<String>) -> Self {
        Self {
            at: Utc::now(),
            level,
            message: message.into(),
        }
    }
}

/// The level of a log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Info,
    Warning,
    Error,
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use crate::domain::{ChangeBody, Operation, validate};

    #[test]
    fn the_fingerprint_digests_the_canonical_json_of_the_change() {
        // Fingerprints stored with earlier requests are compared with new ones, so the
        // canonical form (compact JSON, keys sorted) must not drift.
        let body: ChangeBody = serde_json::from_value(serde_json::json!({
            "context": {"account_id": "acct-1"},
            "resource": {"record_type": "MX", "domain": "Example.TEST.", "target": "mail.example.test",
                         "config": {"ttl": 600, "priority": 10, "extra_config": {"b": 1, "a": "x"}}}
        }))
        .unwrap();
        let change = validate(body, Operation::Create, Some("key-1"), 4096).unwrap();
        let canonical = concat!(
            r#"{"account_id":"acct-1","comment":null,"#,
            r#""config":{"extra_config":{"a":"x","b":1},"priority":10,"ttl":600},"#,
            r#""domain":"example.test","operation":"create","record_type":"MX","#,
            r#""source":"api","target":"mail.example.test"}"#
        );
        let expected: String = Sha256::digest(canonical)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();

        assert_eq!(change.fingerprint(), expected);
    }
}
