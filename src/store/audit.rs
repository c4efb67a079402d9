//! The audit log (`dns_audit`) behind one trait, implemented by both stores.
//!
//! Who created, rotated or revoked a token, who adopted an RRset, and which RRsets the
//! ownership migration merged: each is one entry, stamped with the database's clock and never
//! changed afterwards. An entry is written after the change it describes, not in the same
//! transaction: a change whose entry could not be written stands, and the failure is logged
//! at error level ([`record`]). Details never hold a secret or a digest.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::StoreError;
use super::rows::{Columns, submitter};
use super::tokens::ApiToken;
use crate::domain::{Policy, Submitter};

/// The columns every store reads into an [`AuditEntry`].
pub(super) const AUDIT_COLUMNS: &str = "seq, id, at, action, subject, actor_token_id, \
     actor_name, actor_account, client_addr, details";

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
pub enum AuditAction {
    /// A token was created.
    #[serde(rename = "token.create")]
    TokenCreate,
    /// A token got a new secret.
    #[serde(rename = "token.rotate")]
    TokenRotate,
    /// A token was revoked.
    #[serde(rename = "token.revoke")]
    TokenRevoke,
    /// An account took over an RRset.
    #[serde(rename = "rrset.adopt")]
    RrsetAdopt,
    /// The ownership migration found an RRset held by several accounts and gave it to one.
    #[serde(rename = "rrset.merged")]
    RrsetMerged,
}

impl AuditAction {
    /// Every action, in the order of the documentation.
    pub const ALL: [Self; 5] = [
        Self::TokenCreate,
        Self::TokenRotate,
        Self::TokenRevoke,
        Self::RrsetAdopt,
        Self::RrsetMerged,
    ];

    /// The text stored in `dns_audit.action` (and shown by the API).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenCreate => "token.create",
            Self::TokenRotate => "token.rotate",
            Self::TokenRevoke => "token.revoke",
            Self::RrsetAdopt => "rrset.adopt",
            Self::RrsetMerged => "rrset.merged",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
                format!("'{s}' is not one of {}", all.join(", "))
            })
    }
}

/// An entry as stored, and as admins see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// When it was recorded (the database's clock).
    pub at: DateTime<Utc>,
    pub action: AuditAction,
    /// What it was done to: a token id, or an RRset as `name TYPE`.
    pub subject: String,
    /// Who did it. For the command line and the migration only `token_name` is set (`cli`,
    /// `migration`).
    pub actor: Submitter,
    /// What else is worth knowing, by action (never a secret).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// The insertion order: the order of the log and the pagination cursor.
    #[serde(skip)]
    pub seq: i64,
}

/// An entry to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    pub action: AuditAction,
    pub subject: String,
    pub actor: Submitter,
    /// A JSON object.
    pub details: serde_json::Value,
}

impl NewAuditEntry {
    /// `token.create` of `token`: its name, account, flags and policies (in flag form).
    pub fn token_created(token: &ApiToken, actor: Submitter) -> Self {
        let policies: Vec<String> = token.policies.iter().map(Policy::to_flag).collect();
        Self {
            action: AuditAction::TokenCreate,
            subject: token.id.to_string(),
            actor,
            details: json!({
                "token_name": token.name,
                "account_id": token.account,
                "admin": token.admin,
                "metrics": token.metrics,
                "forwarder": token.forwarder,
                "policies": policies,
            }),
        }
    }

    /// `token.rotate` of `token`.
    pub fn token_rotated(token: &ApiToken, actor: Submitter) -> Self {
        Self::about_token(AuditAction::TokenRotate, token, actor)
    }

    /// `token.revoke` of `token`.
    pub fn token_revoked(token: &ApiToken, actor: Submitter) -> Self {
        Self::about_token(AuditAction::TokenRevoke, token, actor)
    }

    fn about_token(action: AuditAction, token: &ApiToken, actor: Submitter) -> Self {
        Self {
            action,
            subject: token.id.to_string(),
            actor,
            details: json!({"token_name": token.name, "account_id": token.account}),
        }
    }
}

/// Filters for listing entries, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<AuditAction>,
    /// Only entries older than this cursor (a `seq`).
    pub before: Option<i64>,
    pub limit: u32,
}

impl AuditFilter {
    /// The equality conditions as (column, value) pairs.
    pub fn conditions(&self) -> Vec<(&'static str, String)> {
        self.action
            .iter()
            .map(|a| ("action", a.as_str().to_owned()))
            .collect()
    }
}

/// The durable audit log.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an entry, stamped with the database's clock; the entry as stored.
    async fn record_audit(&self, entry: &NewAuditEntry) -> Result<AuditEntry, StoreError>;

    /// Entries, newest first.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError>;
}

/// Records `entry` after the change it describes was made: a failure is logged at error level
/// (the change stands, so the caller's answer does not change).
pub async fn record(store: &dyn AuditStore, entry: NewAuditEntry) {
    if let Err(e) = store.record_audit(&entry).await {
        tracing::error!(
            audit.action = entry.action.as_str(),
            audit.subject = %entry.subject,
            audit.actor = %entry.actor.describe(),
            error.message = %e,
            "the audit entry was not recorded; the change itself was made"
        );
    }
}

/// The JSON text of an entry's details.
pub(super) fn details_json(details: &serde_json::Value) -> String {
    serde_json::to_string(details).expect("a JSON value serialises")
}

/// An entry of `AUDIT_COLUMNS`.
pub(super) fn audit_from_row<R: Columns>(row: &R) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: row.get("seq")?,
        id: row.get("id")?,
        at: row.get("at")?,
        action: row.get("action")?,
        subject: row.get("subject")?,
        actor: submitter(
            row,
            [
                "actor_token_id",
                "actor_name",
                "actor_account",
                "client_addr",
            ],
        )?,
        details: row.json("details")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_through_their_text_and_unknown_ones_are_named() {
        for action in AuditAction::ALL {
            assert_eq!(action.as_str().parse::<AuditAction>(), Ok(action));
            assert_eq!(
                serde_json::to_value(action).unwrap(),
                json!(action.as_str())
            );
        }
        let error = "bogus".parse::<AuditAction>().unwrap_err();
        assert!(
            error.contains("'bogus'") && error.contains("token.create"),
            "{error}"
        );
    }
}
