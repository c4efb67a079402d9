//! The vocabulary of DNS change requests, free of any I/O: names, record data, requests and
//! their validation. Input becomes these types at the edge and is trusted afterwards.

pub mod body;
pub mod changeset;
pub mod fqdn;
pub mod plan;
pub mod policy;
pub mod principal;
pub mod record;
pub mod request;
pub mod token;
pub mod validation;
pub mod zoneform;

pub use body::{ChangeBody, ConfigBody, ContextBody, ResourceBody, RrsetBody};
pub use changeset::{ChangeSetBody, ChangeSetId, SetPlace, SetRole, SetStatus};
pub use fqdn::{Fqdn, NameRules};
pub use policy::{Denial, Sensitive, authorize, deciding};
pub use principal::{Actor, Principal, Source, Submitter};
pub use record::{BeforeAfter, LiveRrset, RecordData, RecordType};
pub use request::{
    ChangeRequest, LogEntry, LogLevel, Operation, RecordConfig, RequestId, RequestStatus,
};
pub use token::{Permission, Policy, Secret, Subnet, TokenId, TokenSpec};
pub use validation::{FieldError, ValidationError, validate};
