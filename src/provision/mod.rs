//! Provisioning backends: what applies a change to the system authoritative for its zone.
//!
//! The worker sees only the [`Provisioner`] trait. Each backend lives whole in its own file and
//! reports errors as [`ProvisionError`], whose variant says what a retry can do. `simulated`
//! is the original design's stand-in for Ansible and the default; `rfc2136` sends TSIG-signed
//! DNS UPDATEs and verifies them by query; `ansible` runs a playbook; `powerdns` writes RRsets
//! through the PowerDNS Authoritative HTTP API and verifies them by query. [`ZoneRouter`] picks
//! each request's backend by the zone and backend recorded with it at intake.

mod ansible;
mod dns;
mod fence;
mod powerdns;
mod rfc2136;
mod router;
mod simulated;

use chrono::{DateTime, Utc};

use crate::domain::{
    BeforeAfter, LiveRrset, Operation, RecordConfig, RecordData, RecordType, RequestId, zoneform,
};

pub use ansible::AnsibleProvisioner;
pub use fence::Fence;
pub use powerdns::PowerDnsProvisioner;
pub use rfc2136::Rfc2136Provisioner;
pub use router::ZoneRouter;
pub use simulated::SimulatedProvisioner;

/// A change ready to apply: what the request asks, in domain types.
#[derive(Debug, Clone)]
pub struct PlannedChange {
    pub request_id: RequestId,
    pub account_id: String,
    pub operation: Operation,
    pub record_type: RecordType,
    /// The owner name, without the trailing dot.
    pub domain: String,
    /// The records, typed (as the store read them); empty for a delete of the whole RRset
    /// (and an adoption).
    pub records: Vec<RecordData>,
    pub config: RecordConfig,
    /// The records of this RRset that dnsorch's ledger holds (all the owner's: an RRset has
    /// one owner, and the worker has checked it is the requesting account before a delete).
    /// A live record outside this set was made behind dnsorch's back.
    pub managed: Vec<RecordData>,
    /// The RRset the request expects before it (`expect`; no records: absent). The worker
    /// refuses the change when what it read differs; on rfc2136 the UPDATE's prerequisites
    /// that the RRset is still what was read then hold the expectation at the server.
    pub expect: Option<LiveRrset>,
    /// The RRset as the worker read it before applying (from the server, or the ledger where
    /// the ledger is the live state) and what the plan makes of it; set by the worker before
    /// [`Provisioner::apply`], `None` before that (and for an adoption).
    pub rrsets: Option<BeforeAfter>,
    /// Checked right before anything is written to DNS: the worker's claim must still hold.
    pub fence: Fence,
}

impl PlannedChange {
    /// Whether the change is about the whole RRset (a delete without records).
    pub fn is_whole_rrset(&self) -> bool {
        self.records.is_empty()
    }

    /// The RRset before the change, as the worker's plan read it.
    ///
    /// # Errors
    /// The change was not planned (a bug: the worker plans every change it applies).
    pub fn before(&self) -> Result<&LiveRrset, ProvisionError> {
        self.rrsets
            .as_ref()
            .map(|rrsets| &rrsets.before)
            .ok_or_else(|| ProvisionError::Rejected("the change was not planned".into()))
    }

    /// The records in zone-file form, for logs.
    pub fn describe_records(&self) -> String {
        let elements: Vec<String> = self.records.iter().map(zoneform::element).collect();
        elements.join(", ")
    }
}

/// What a backend reports after a successful apply.
#[derive(Debug, Clone)]
pub struct Applied {
    pub applied_at: DateTime<Utc>,
    /// When the change was seen in DNS; `None` when the backend could not verify it.
    pub verified_at: Option<DateTime<Utc>>,
    /// Lines for the request's log (verification results, tool output).
    pub notes: Vec<String>,
}

/// Why an apply failed, and so what a retry can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    /// A timeout, SERVFAIL, refused connection: retry with backoff.
    #[error("transient: {0}")]
    Transient(String),
    /// The server or tool said no (NOTAUTH, REFUSED, a failed playbook): do not retry.
    #[error("rejected: {0}")]
    Rejected(String),
    /// An update prerequisite did not hold (YXRRSET, NXRRSET, CNAME exclusivity).
    #[error("prerequisite failed: {0}")]
    PrerequisiteFailed(String),
    /// The change was sent and may have been applied, but no trustworthy answer says so (a
    /// timeout after sending, an answer that failed TSIG, verification that did not see it):
    /// the request becomes UNKNOWN until a query of the server settles it. Only backends that
    /// can read the server ([`Provisioner::observe`]) report it.
    #[error("outcome unknown: {0}")]
    Uncertain(String),
}

impl ProvisionError {
    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_) | Self::Uncertain(_))
    }

    /// The same kind of error with `more` added to its text.
    pub fn map_text(self, more: impl FnOnce(String) -> String) -> Self {
        match self {
            Self::Transient(e) => Self::Transient(more(e)),
            Self::Rejected(e) => Self::Rejected(more(e)),
            Self::PrerequisiteFailed(e) => Self::PrerequisiteFailed(more(e)),
            Self::Uncertain(e) => Self::Uncertain(more(e)),
        }
    }
}

/// What a query of the server found about a change whose outcome was unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Whether the change is in place (a create's record is there; a delete's is gone).
    pub in_place: bool,
    /// What the server holds, for the request's log.
    pub note: String,
}

/// Applies a planned change to the system that is authoritative for a zone.
#[async_trait::async_trait]
pub trait Provisioner: Send + Sync {
    /// The backend's name, used in logs and metric labels.
    fn kind(&self) -> &'static str;

    /// Applies the change. Applying a change that is already in place succeeds, so a retry
    /// after a crash between apply and commit is safe. Nothing is written to DNS unless the
    /// change's [`Fence`] holds right before the write.
    ///
    /// # Errors
    /// A [`ProvisionError`] saying whether to retry.
    async fn apply(&self, change: &PlannedChange) -> Result<Applied, ProvisionError>;

    /// Applies the changes of an atomic set as one unit: all of them or none. Each change
    /// was planned by the worker (its `rrsets` set); nothing is written to DNS unless the
    /// first change's [`Fence`] (the set's lead's) holds. Backends that apply one change at a
    /// time refuse (intake does not accept atomic sets for their zones).
    ///
    /// # Errors
    /// A [`ProvisionError`] saying whether to retry.
    async fn apply_set(&self, changes: &[PlannedChange]) -> Result<Applied, ProvisionError> {
        let _ = changes;
        Err(ProvisionError::Rejected(format!(
            "the {} backend applies one change at a time, not a set as one",
            self.kind()
        )))
    }

    /// The RRset as the server holds it, for an adoption; `None` when the backend has no live
    /// state apart from dnsorch's ledger (simulated).
    ///
    /// # Errors
    /// The server could not be read, or the backend has no server to read.
    async fn read_rrset(
        &self,
        domain: &str,
        record_type: RecordType,
    ) -> Result<Option<LiveRrset>, ProvisionError>;

    /// Whether `change` is in place at the server, for a request whose outcome is UNKNOWN.
    ///
    /// # Errors
    /// The server could not be read, or the backend has none to read (such a backend never
    /// reports [`ProvisionError::Uncertain`]).
    async fn observe(&self, change: &PlannedChange) -> Result<Observed, ProvisionError>;
}
