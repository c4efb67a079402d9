//! The wire format of a change request, shared by HTTP and Kafka intake.
//!
//! This is the original design's body. Fields the validation must report together when
//! missing are `Option`s here, so one 422 can name all of them; unknown fields are refused by
//! serde, with their path.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::validation::ValidationError;

/// `POST /api/v1/dns/create` body.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    /// For whom (optional: the token decides).
    pub context: Option<ContextBody>,
    /// What to change (required).
    pub resource: Option<ResourceBody>,
    /// Optimistic concurrency: the RRset the client believes is current (`null`: absent). If
    /// the live RRset differs when a worker plans the change, the request fails, with both in
    /// its log, and nothing changes. For a create, delete or replace (not an adoption).
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<RrsetBody>)]
    pub expect: Option<Option<RrsetBody>>,
}

/// `expect`: an RRset, its TTL and its records in zone-file form (as `resource.targets`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RrsetBody {
    #[schema(example = 300)]
    pub ttl: i64,
    #[schema(example = json!(["192.0.2.10"]))]
    pub records: Vec<String>,
}

/// A field that was given, as `Some` (its value may be `null`); absent stays `None`.
pub(crate) fn given<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `context`: the account the change is for. Kept for compatibility with the original body:
/// the bearer token decides the account.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextBody {
    /// The account (1-128 characters). Omitted: the token's account. Another account than
    /// the token's is a 403, except for admin tokens, which may act for any account.
    /// Idempotency keys and record ownership are scoped to it.
    #[schema(example = "acct-42")]
    pub account_id: Option<String>,
    /// Accepted and ignored: HTTP requests are recorded as `api`, Kafka messages as `kafka`.
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
    /// One record's data in the type's text form (this or `targets` is required, but for a
    /// delete of the whole RRset): an address, a host name,
    /// `"<weight> <port> <host>"` for SRV, `<flags> <tag> "<value>"` for CAA, the text for TXT.
    #[schema(example = "192.0.2.10")]
    pub target: Option<String>,
    /// The records in zone-file form, instead of `target`: the RDATA after the type, MX and
    /// SRV priority included (`"10 mail.example.test"`, `"10 5 5060 sip.example.test"`).
    /// TXT text is literal unless it begins and ends with `"`, when it is zone-file
    /// presentation (one or more quoted strings, joined). Give `target` or `targets`, not
    /// both. 1-100 records of the RRset, each once (a CNAME has one): added by a create,
    /// removed by a delete, the whole new RRset for a replace.
    #[schema(example = json!(["10 mail.example.test"]))]
    pub targets: Option<Vec<String>>,
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
    /// Up to 32 keys and `MAX_EXTRA_CONFIG_BYTES` (default 4096) of compact JSON, without
    /// control characters in keys or strings; stored and shown as given (no backend reads it).
    #[schema(value_type = Object)]
    pub extra_config: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Why a JSON document could not become a body.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Not JSON at all (or trailing characters after it).
    #[error("{0}")]
    Malformed(String),
    /// JSON of the wrong shape: an unknown field, a wrong type; names the field's path.
    #[error(transparent)]
    Invalid(ValidationError),
}

/// Deserialises a JSON document, naming the field at fault when its shape is wrong.
///
/// # Errors
/// `Malformed` for anything that is not one JSON value, `Invalid` for a wrong shape.
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| (e.path().to_string(), e.into_inner()))
        .and_then(|value| {
            // Trailing characters after the value make the document malformed too.
            deserializer
                .end()
                .map(|()| value)
                .map_err(|e| (".".to_owned(), e))
        });
    parsed.map_err(|(path, error)| match error.classify() {
        serde_json::error::Category::Data => JsonError::Invalid(shape_error(&path, &error)),
        _ => JsonError::Malformed(format!("not valid JSON: {error}")),
    })
}

/// Names the field. For an unknown field the path already ends with the field's name.
fn shape_error(path: &str, error: &serde_json::Error) -> ValidationError {
    let full = error.to_string();
    let message = full
        .rsplit_once(" at line ")
        .map_or(full.as_str(), |(m, _)| m);
    let field = if path == "." { "body" } else { path };
    let message = match message
        .strip_prefix("unknown field `")
        .and_then(|m| m.split_once("`, "))
    {
        Some((_, expected)) => format!("unknown field; {expected}"),
        None => message.to_owned(),
    };
    ValidationError::field(field, message)
}
