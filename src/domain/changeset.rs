//! Change sets: several changes submitted together, each with its own outcome (or, for an
//! atomic set, one outcome for all). Pure: the wire body, a request's place in its set, and
//! the set's status from its requests'.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body::{ContextBody, ResourceBody, RrsetBody, given};
use super::request::{ChangeRequest, Operation, RequestStatus};

/// The identity of a change set (`dns_change_sets.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, format = Uuid)]
pub struct ChangeSetId(pub Uuid);

/// The namespace of the ids derived from an account and an idempotency key.
const KEYED_SETS: Uuid = Uuid::from_u128(0x6f1c_2a8e_4d3b_4c1e_9a57_d0e3_b2f4_c815);

impl ChangeSetId {
    /// The id of a set: derived from the account and the `Idempotency-Key` when there is one,
    /// so that a retry after a failure between writing its requests and its row names the same
    /// set; otherwise new and time-ordered.
    pub fn for_submission(account_id: &str, idempotency_key: Option<&str>) -> Self {
        match idempotency_key {
            Some(key) => Self(Uuid::new_v5(
                &KEYED_SETS,
                format!("{account_id}\n{key}").as_bytes(),
            )),
            None => Self(Uuid::now_v7()),
        }
    }
}

impl fmt::Display for ChangeSetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ChangeSetId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// What a request is to its set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SetRole {
    /// A change of a set that is not atomic: a request like any other.
    Item,
    /// The request of an atomic set that is claimed, leased and finished for all its changes.
    Lead,
    /// Another change of an atomic set: applied with its lead, never claimed by itself.
    Member,
}

impl SetRole {
    /// The text stored in `dns_requests.set_role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Item => "item",
            Self::Lead => "lead",
            Self::Member => "member",
        }
    }
}

impl FromStr for SetRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "item" => Ok(Self::Item),
            "lead" => Ok(Self::Lead),
            "member" => Ok(Self::Member),
            other => Err(format!("unknown set role '{other}'")),
        }
    }
}

/// A request's place in its change set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SetPlace {
    /// The set.
    pub id: ChangeSetId,
    /// The change's position in the set's `changes`, from 0.
    pub index: u32,
    pub role: SetRole,
}

/// `POST /api/v1/dns/changes` body.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeSetBody {
    /// For whom, for every change (optional: the token decides).
    pub context: Option<ContextBody>,
    /// All or nothing (default false): every change must be valid and in one zone whose
    /// backend applies them at once (rfc2136, in one UPDATE; simulated). The set is then
    /// claimed, applied and finished as one, and may change one name twice (delete its A,
    /// create a CNAME). Not atomic: each change is checked, accepted and applied on its own.
    pub atomic: Option<bool>,
    /// The changes, in order (1 to `MAX_CHANGE_SET_ITEMS`, 1000 by default). Each is parsed
    /// on its own, so a malformed change is reported by its index.
    #[schema(value_type = Vec<ChangeItemBody>)]
    pub changes: Option<Vec<serde_json::Value>>,
}

/// One change of a set.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeItemBody {
    /// `create`, `delete` or `replace`.
    #[schema(example = "create")]
    pub action: Option<String>,
    /// As in a single request's body.
    pub resource: Option<ResourceBody>,
    /// As in a single request's body: the RRset this change expects to be current.
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<RrsetBody>)]
    pub expect: Option<Option<RrsetBody>>,
}

/// The operations a set's change may name.
///
/// # Errors
/// Anything but `create`, `delete` or `replace`, naming the choices.
pub fn action(value: Option<&str>) -> Result<Operation, String> {
    match value {
        Some("create") => Ok(Operation::Create),
        Some("delete") => Ok(Operation::Delete),
        Some("replace") => Ok(Operation::Replace),
        Some(other) => Err(format!("'{other}' is not one of create, delete, replace")),
        None => Err("is required (create, delete or replace)".into()),
    }
}

/// About how many bytes an RFC 2136 UPDATE carrying `changes` takes: each record as an update
/// and once more as a prerequisite (the RRset as read, estimated by the change's own records),
/// a deletion and a prerequisite more per change, each owner name uncompressed, and the
/// header, zone and TSIG. Enough to refuse at intake a set that cannot fit one message; the
/// worker measures the message it builds.
pub fn estimated_update_bytes<'a>(changes: impl Iterator<Item = &'a ChangeRequest>) -> usize {
    const OVERHEAD: usize = 512;
    changes.fold(OVERHEAD, |total, change| {
        let name = change.domain.as_str().len() + 2;
        let records: usize = change
            .records
            .iter()
            .map(|r| 2 * (name + 10 + super::zoneform::element(r).len() + 4))
            .sum();
        total + records + 2 * (name + 10)
    })
}

/// Where a change set is in its life, from its requests' statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SetStatus {
    /// No request of the set has started or finished.
    Pending,
    /// Some have started or finished, and some are not finished.
    Processing,
    /// Every change was accepted and completed.
    Completed,
    /// Every request finished; some completed and some failed or were refused.
    PartiallyFailed,
    /// Every request finished and none completed.
    Failed,
}

impl SetStatus {
    /// The status of a set whose accepted requests are in `statuses` and of which `refused`
    /// changes were refused at intake.
    pub fn of(statuses: &[RequestStatus], refused: usize) -> Self {
        let count = |wanted: RequestStatus| statuses.iter().filter(|s| **s == wanted).count();
        let completed = count(RequestStatus::Completed);
        let finished = completed + count(RequestStatus::Failed);
        if finished == statuses.len() {
            return match completed {
                0 => Self::Failed,
                n if n == statuses.len() && refused == 0 => Self::Completed,
                _ => Self::PartiallyFailed,
            };
        }
        if finished == 0 && count(RequestStatus::Pending) == statuses.len() {
            Self::Pending
        } else {
            Self::Processing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RequestStatus::{Completed, Failed, Pending, Processing, Unknown};

    #[test]
    fn a_set_is_pending_until_a_request_moves_and_finished_only_when_all_are() {
        assert_eq!(SetStatus::of(&[Pending, Pending], 0), SetStatus::Pending);
        assert_eq!(
            SetStatus::of(&[Pending, Processing], 0),
            SetStatus::Processing
        );
        assert_eq!(
            SetStatus::of(&[Completed, Pending], 0),
            SetStatus::Processing
        );
        assert_eq!(
            SetStatus::of(&[Completed, Unknown], 0),
            SetStatus::Processing
        );
        assert_eq!(
            SetStatus::of(&[Completed, Completed], 0),
            SetStatus::Completed
        );
        assert_eq!(
            SetStatus::of(&[Completed, Completed], 1),
            SetStatus::PartiallyFailed
        );
        assert_eq!(
            SetStatus::of(&[Completed, Failed], 0),
            SetStatus::PartiallyFailed
        );
        assert_eq!(SetStatus::of(&[Failed, Failed], 0), SetStatus::Failed);
        assert_eq!(SetStatus::of(&[], 3), SetStatus::Failed);
    }

    #[test]
    fn a_keyed_set_has_one_id_per_account_and_key() {
        let a = ChangeSetId::for_submission("acct", Some("k1"));
        assert_eq!(a, ChangeSetId::for_submission("acct", Some("k1")));
        assert_ne!(a, ChangeSetId::for_submission("other", Some("k1")));
        assert_ne!(a, ChangeSetId::for_submission("acct", Some("k2")));
        assert_ne!(
            ChangeSetId::for_submission("acct", None),
            ChangeSetId::for_submission("acct", None)
        );
    }

    #[test]
    fn an_action_is_one_of_three() {
        assert_eq!(action(Some("replace")), Ok(Operation::Replace));
        assert!(
            action(Some("adopt"))
                .unwrap_err()
                .contains("create, delete, replace")
        );
        assert!(action(None).unwrap_err().contains("required"));
    }
}
