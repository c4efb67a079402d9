//! Kafka messages to change requests: pure functions, no I/O.
//!
//! A message body has the HTTP body's shape plus an optional top-level `"action"` (`create`
//! by default). The consumer always sets `context.source = "kafka"`. The idempotency key is
//! the message's `idempotency-key` header, else `kafka:<topic>:<partition>:<offset>:<timestamp>`
//! (never the record key: producers use it for partitioning, and distinct changes share it), so
//! a redelivered message records nothing new; a header that is not UTF-8 or holds a control
//! character makes the message invalid. The timestamp (milliseconds, the message's create or
//! log-append time) is part of the key because a position repeats: a topic deleted and created
//! again, or a broker that lost its log, hands out the same offsets to new messages. A message
//! without a timestamp gets `kafka:<topic>:<partition>:<offset>`. The message's token travels in
//! its `authorization` header (`Bearer <token>`), as over HTTP. A payload over `MAX_BODY_BYTES`
//! is refused by its length alone (`check_size`), before anything parses it.

use serde::Deserialize;
use serde_json::Value;

use crate::auth::{AuthFailure, bearer};
use crate::domain::Secret;
use crate::domain::body::{JsonError, from_json};
use crate::domain::{ChangeBody, ContextBody, Operation, ResourceBody, RrsetBody, ValidationError};

/// A message body: the HTTP body's fields plus `action`, parsed in one pass.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    action: Option<Value>,
    context: Option<ContextBody>,
    resource: Option<ResourceBody>,
    #[serde(default, deserialize_with = "crate::domain::body::given")]
    expect: Option<Option<RrsetBody>>,
}

/// Where a message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageOrigin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The message's timestamp (create or log-append time), in milliseconds, when it has one.
    pub timestamp_ms: Option<i64>,
}

/// A message decoded into what intake takes.
#[derive(Debug, Clone)]
pub struct DecodedMessage {
    pub operation: Operation,
    pub body: ChangeBody,
    pub idempotency_key: String,
    /// The bearer token of its `authorization` header, or why there is none.
    pub token: Result<Secret, AuthFailure>,
}

/// Why a message goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadLetterReason {
    /// The payload is over `MAX_BODY_BYTES`; it was not parsed.
    #[error("too large: the payload has {size} bytes, over MAX_BODY_BYTES ({max})")]
    TooLarge { size: usize, max: usize },
    /// The payload is missing or not JSON.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The payload does not match the schema, or fails validation.
    #[error("{0}")]
    Invalid(ValidationError),
    /// The idempotency key was used before for another change.
    #[error("idempotency key already used for request {0} with a different body")]
    KeyReused(String),
    /// No valid token, and not a trusted account.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The token (or the trusted channel) may not do this: another account, a policy, an
    /// RRset another account owns.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Over a rate limit: the token's, or the unfinished requests per name.
    #[error("rate limited: {0}")]
    RateLimited(String),
    /// The database refused to store it (a constraint or trigger, a value it cannot hold),
    /// while it stored the rest of the batch.
    #[error("not recorded: {0}")]
    StoreRejected(String),
}

impl DeadLetterReason {
    /// A short code for the `dnsorch-error-kind` header and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Malformed(_) => "malformed",
            Self::Invalid(_) => "invalid",
            Self::KeyReused(_) => "key_reused",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::RateLimited(_) => "rate_limited",
            Self::StoreRejected(_) => "store_rejected",
        }
    }
}

/// The idempotency key of a message: its header, trimmed, else its position and timestamp.
///
/// # Errors
/// The header is not UTF-8 or holds control characters (it is refused, never replaced by
/// the position: a retry would then record the change again).
pub fn idempotency_key(
    header: Option<&[u8]>,
    origin: &MessageOrigin,
) -> Result<String, ValidationError> {
    let key = match header.map(std::str::from_utf8) {
        None => None,
        Some(Ok(key)) if !key.chars().any(char::is_control) => Some(key.trim()),
        Some(_) => {
            return Err(ValidationError::field(
                "header.idempotency-key",
                "must be UTF-8 without control characters",
            ));
        }
    };
    Ok(key.filter(|k| !k.is_empty()).map_or_else(
        || {
            let position = format!(
                "kafka:{}:{}:{}",
                origin.topic, origin.partition, origin.offset
            );
            match origin.timestamp_ms {
                Some(ms) => format!("{position}:{ms}"),
                None => position,
            }
        },
        str::to_owned,
    ))
}

/// Refuses a payload over `max` bytes, by its length alone.
///
/// # Errors
/// `TooLarge`: the payload has more than `max` bytes.
pub fn check_size(payload: Option<&[u8]>, max: usize) -> Result<(), DeadLetterReason> {
    match payload.map_or(0, <[u8]>::len) {
        size if size > max => Err(DeadLetterReason::TooLarge { size, max }),
        _ => Ok(()),
    }
}

/// Decodes a message payload.
///
/// # Errors
/// Why the message belongs in the dead-letter topic.
pub fn decode(
    payload: Option<&[u8]>,
    key_header: Option<&[u8]>,
    authorization: Option<&[u8]>,
    origin: &MessageOrigin,
) -> Result<DecodedMessage, DeadLetterReason> {
    let payload = payload.ok_or_else(|| DeadLetterReason::Malformed("empty message".into()))?;
    let message: MessageBody = from_json(payload).map_err(|e| match e {
        JsonError::Malformed(m) => DeadLetterReason::Malformed(m),
        JsonError::Invalid(fields) => DeadLetterReason::Invalid(fields),
    })?;
    let operation = match message.action {
        None => Operation::Create,
        Some(Value::String(action)) => action.parse().map_err(|_| {
            DeadLetterReason::Invalid(ValidationError::field(
                "action",
                format!("'{action}' is not a supported action (create, delete or replace)"),
            ))
        })?,
        Some(_) => {
            return Err(DeadLetterReason::Invalid(ValidationError::field(
                "action",
                "must be a string",
            )));
        }
    };
    let mut body = ChangeBody {
        context: message.context,
        resource: message.resource,
        expect: message.expect,
    };
    body.context.get_or_insert_with(Default::default).source = Some("kafka".into());
    Ok(DecodedMessage {
        operation,
        body,
        idempotency_key: idempotency_key(key_header, origin).map_err(DeadLetterReason::Invalid)?,
        token: bearer(authorization),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> MessageOrigin {
        MessageOrigin {
            topic: "dns_requests".into(),
            partition: 2,
            offset: 41,
            timestamp_ms: Some(1_764_633_600_000),
        }
    }

    const VALID: &str = r#"{"context": {"account_id": "a", "source": "api"},
        "resource": {"record_type": "A", "domain": "www.example.test", "target": "192.0.2.1"}}"#;

    #[test]
    fn a_message_becomes_a_create_from_kafka_keyed_by_its_position() {
        let decoded = decode(Some(VALID.as_bytes()), None, None, &origin()).unwrap();
        assert_eq!(decoded.operation, Operation::Create);
        assert_eq!(
            decoded.body.context.unwrap().source.as_deref(),
            Some("kafka")
        );
        assert_eq!(
            decoded.idempotency_key,
            "kafka:dns_requests:2:41:1764633600000"
        );
    }

    #[test]
    fn the_same_position_at_another_time_is_another_key_and_no_timestamp_leaves_it_out() {
        let first = idempotency_key(None, &origin()).unwrap();
        let recreated = MessageOrigin {
            timestamp_ms: Some(1_764_633_600_001),
            ..origin()
        };
        assert_ne!(idempotency_key(None, &recreated).unwrap(), first);
        let untimed = MessageOrigin {
            timestamp_ms: None,
            ..origin()
        };
        assert_eq!(
            idempotency_key(None, &untimed).unwrap(),
            "kafka:dns_requests:2:41"
        );
    }

    #[test]
    fn the_idempotency_key_header_wins_over_the_position() {
        let decoded = decode(Some(VALID.as_bytes()), Some(b"order-7"), None, &origin()).unwrap();
        assert_eq!(decoded.idempotency_key, "order-7");
    }

    #[test]
    fn an_idempotency_key_with_control_characters_is_invalid_naming_the_header() {
        for key in [
            &b"order-7\n"[..],
            b"\torder-7",
            b"or\0der",
            b"order\x7f",
            b"\xff",
        ] {
            let err = decode(Some(VALID.as_bytes()), Some(key), None, &origin()).unwrap_err();
            assert_eq!(err.kind(), "invalid", "{key:?}");
            assert!(err.to_string().contains("header.idempotency-key"), "{err}");
        }
        let decoded = decode(Some(VALID.as_bytes()), Some(b" order-7 "), None, &origin()).unwrap();
        assert_eq!(decoded.idempotency_key, "order-7");
    }

    #[test]
    fn the_authorization_header_carries_the_token() {
        let decoded = decode(
            Some(VALID.as_bytes()),
            None,
            Some(b"Bearer dnsorch_x"),
            &origin(),
        )
        .unwrap();
        assert_eq!(decoded.token.unwrap().expose(), "dnsorch_x");
        let decoded = decode(Some(VALID.as_bytes()), None, None, &origin()).unwrap();
        assert_eq!(decoded.token.unwrap_err(), AuthFailure::Missing);
    }

    #[test]
    fn a_delete_action_decodes_to_a_delete_and_a_replace_to_a_replace() {
        let delete = VALID.replacen('{', r#"{"action": "delete", "#, 1);
        let decoded = decode(Some(delete.as_bytes()), None, None, &origin()).unwrap();
        assert_eq!(decoded.operation, Operation::Delete);
        let replace = VALID.replacen('{', r#"{"action": "replace", "#, 1);
        let decoded = decode(Some(replace.as_bytes()), None, None, &origin()).unwrap();
        assert_eq!(decoded.operation, Operation::Replace);
    }

    #[test]
    fn an_explicit_create_action_is_accepted_and_others_are_refused() {
        let create = VALID.replacen('{', r#"{"action": "create", "#, 1);
        assert!(decode(Some(create.as_bytes()), None, None, &origin()).is_ok());
        let unknown = VALID.replacen('{', r#"{"action": "upsert", "#, 1);
        let err = decode(Some(unknown.as_bytes()), None, None, &origin()).unwrap_err();
        assert_eq!(err.kind(), "invalid");
        assert!(err.to_string().contains("action"), "{err}");
    }

    #[test]
    fn a_payload_over_the_limit_is_too_large_by_its_length_and_one_at_it_passes() {
        let limit = VALID.len();
        assert_eq!(check_size(Some(VALID.as_bytes()), limit), Ok(()));
        assert_eq!(check_size(None, limit), Ok(()));
        let over = format!("{VALID} ");
        let err = check_size(Some(over.as_bytes()), limit).unwrap_err();
        assert_eq!(err.kind(), "too_large");
        assert_eq!(
            err,
            DeadLetterReason::TooLarge {
                size: limit + 1,
                max: limit
            }
        );
        assert!(err.to_string().contains("MAX_BODY_BYTES"), "{err}");
    }

    #[test]
    fn bad_payloads_are_dead_letters_saying_why() {
        let cases: [(Option<&[u8]>, &str); 5] = [
            (None, "malformed"),
            (Some(b"not json"), "malformed"),
            (Some(b"[1, 2]"), "invalid"),
            (Some(br#"{"resource": {"colour": "red"}}"#), "invalid"),
            (Some(br#"{"action": 7}"#), "invalid"),
        ];
        for (payload, kind) in cases {
            let err = decode(payload, None, None, &origin()).unwrap_err();
            assert_eq!(err.kind(), kind, "{payload:?}: {err}");
        }
    }
}
