//! The wire format of a change request, shared by HTTP and Kafka intake.
//!
//! This is the original design's body. Fields the validation must report together when
//! missing are `Option`s here, so one 422 can name all of them; unknown fields are refused by
//! serde, with their path.

use serde::{Deserialize, Serialize};

/// `POST /api/v1/dns/create` body.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    /// Who asks (required).
    pub context: Option<ContextBody>,
    /// What to change (required).
    pub resource: Option<ResourceBody>,
}

/// `context`: the requester.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextBody {
    /// The requesting account (required, 1-128 characters). Idempotency keys and record
    /// ownership are scoped to it.
    #[schema(example = "acct-42")]
    pub account_id: Option<String>,
    /// Where the request came from; `api` by default, `kafka` for the consumer.
    #[schema(example = "api")]
    pub source: Option<String>,
}

/// `resource`: the record.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceBody {
    /// A, AAAA, CNAME, MX, TXT, SRV, NS, PTR or CAA (case-insensitive; required).
    #[schema(example = "A")]
    pub record_type: Option<String>,
    /// The owner name, fully qualified; IDN names are converted to A-labels (required).
    #[schema(example = "www.example.test")]
    pub domain: Option<String>,
    /// The record data in the type's text form (required): an address, a host name,
    /// `"<weight> <port> <host>"` for SRV, `<flags> <tag> "<value>"` for CAA, the text for TXT.
    #[schema(example = "192.0.2.10")]
    pub target: Option<String>,
    /// Free text kept with the request and the record.
    pub comment: Option<String>,
    /// TTL, priority and backend extras.
    pub config: Option<ConfigBody>,
}

/// `resource.config`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigBody {
    /// Seconds, 0-2147483647; default 300.
    #[schema(example = 300)]
    pub ttl: Option<i64>,
    /// MX preference or SRV priority, 0-65535: required for MX and SRV, refused otherwise.
    pub priority: Option<i64>,
    /// Up to 32 keys, passed to the backend untouched.
    #[schema(value_type = Object)]
    pub extra_config: Option<serde_json::Map<String, serde_json::Value>>,
}
