//! Turning a wire body into a `ChangeRequest`, collecting every problem.

use serde::Serialize;

use super::body::{ChangeBody, ConfigBody, RrsetBody};
use super::fqdn::Fqdn;
use super::principal::Submitter;
use super::record::{DataError, LiveRrset, RecordData, RecordType};
use super::request::{ChangeRequest, DEFAULT_TTL, Operation};
use super::zoneform;

const MAX_ACCOUNT_ID_CHARS: usize = 128;
const MAX_SOURCE_CHARS: usize = 64;
const MAX_COMMENT_CHARS: usize = 1024;
const MAX_EXTRA_CONFIG_KEYS: usize = 32;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// The most elements of `resource.targets` that are checked (and named in errors).
const MAX_TARGETS: usize = 100;

/// One bad field and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's path in the body, e.g. `resource.target`.
    pub field: String,
    pub message: String,
}

/// Every problem found in a request; it becomes a 422 (or a dead letter).
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("validation failed: {}", .fields.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; "))]
pub struct ValidationError {
    pub fields: Vec<FieldError>,
}

impl ValidationError {
    /// An error about one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut error = Self::default();
        error.push(field, message);
        error
    }

    /// Adds a problem with `field`.
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.fields.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Validates and normalises a body. No text field may hold control characters (U+0000-U+001F,
/// U+007F-U+009F); `resource.config.extra_config` may be at most `max_extra_config_bytes` as
/// compact JSON (`MAX_EXTRA_CONFIG_BYTES`).
///
/// # Errors
/// A `ValidationError` naming every bad field.
pub fn validate(
    body: ChangeBody,
    operation: Operation,
    idempotency_key: Option<&str>,
    max_extra_config_bytes: usize,
) -> Result<ChangeRequest, ValidationError> {
    let mut errors = ValidationError::default();
    let context = body.context.unwrap_or_default();
    let resource = body.resource.unwrap_or_default();
    let config = resource.config.unwrap_or_default();

    let account_id = check_account_id(context.account_id, &mut errors);
    let source = check_source(context.source, &mut errors);
    let record_type = match resource.record_type {
        None => required(&mut errors, "resource.record_type"),
        Some(t) => without_controls(t, "resource.record_type", &mut errors).and_then(|t| {
            t.parse::<RecordType>()
                .map_err(|e| errors.push("resource.record_type", e))
                .ok()
        }),
    };
    let domain = match (resource.domain, record_type) {
        (None, _) => required(&mut errors, "resource.domain"),
        (Some(d), t) => without_controls(d, "resource.domain", &mut errors)
            .and_then(|d| check_domain(&d, t, &mut errors)),
    };
    let records = check_records(
        operation,
        record_type,
        resource.target,
        resource.targets,
        config.priority,
        &mut errors,
    );
    let ttl = check_ttl(&config, &mut errors);
    let expect = body
        .expect
        .and_then(|expect| check_expect(operation, record_type, expect, &mut errors));
    let comment = resource
        .comment
        .and_then(|c| without_controls(c, "resource.comment", &mut errors))
        .filter(|c| {
            let ok = c.chars().count() <= MAX_COMMENT_CHARS;
            if !ok {
                errors.push(
                    "resource.comment",
                    format!("must be at most {MAX_COMMENT_CHARS} characters"),
                );
            }
            ok
        });
    let extra_config = config.extra_config.unwrap_or_default();
    check_extra_config(&extra_config, max_extra_config_bytes, &mut errors);
    let idempotency_key = idempotency_key.and_then(|k| check_idempotency_key(k, &mut errors));

    match (account_id, domain, record_type, records) {
        (Some(account_id), Some(domain), Some(record_type), Some(records))
            if errors.fields.is_empty() =>
        {
            Ok(ChangeRequest {
                account_id,
                source,
                operation,
                domain,
                record_type,
                records,
                ttl,
                expect,
                comment,
                extra_config,
                idempotency_key,
                zone: None,
                backend: None,
                submitter: Submitter::default(),
                change_set: None,
            })
        }
        _ => Err(errors),
    }
}

fn required<T>(errors: &mut ValidationError, field: &str) -> Option<T> {
    errors.push(field, "is required");
    None
}

/// The text, unless it holds a control character: then the field is refused.
fn without_controls(value: String, field: &str, errors: &mut ValidationError) -> Option<String> {
    if value.chars().any(char::is_control) {
        errors.push(field, CONTROL_CHARACTERS);
        return None;
    }
    Some(value)
}

/// Why a text with a control character is refused.
const CONTROL_CHARACTERS: &str = "must not contain control characters";

/// At most `MAX_EXTRA_CONFIG_KEYS` keys and `max_bytes` of compact JSON; no control character
/// in any key or string value, however deep.
fn check_extra_config(
    extra_config: &serde_json::Map<String, serde_json::Value>,
    max_bytes: usize,
    errors: &mut ValidationError,
) {
    const FIELD: &str = "resource.config.extra_config";
    if extra_config.len() > MAX_EXTRA_CONFIG_KEYS {
        errors.push(
            FIELD,
            format!(
                "has {} keys; at most {MAX_EXTRA_CONFIG_KEYS} are allowed",
                extra_config.len()
            ),
        );
    }
    let bytes = serde_json::to_string(extra_config).map_or(0, |json| json.len());
    if bytes > max_bytes {
        errors.push(
            FIELD,
            format!("is {bytes} bytes as JSON; at most {max_bytes} are allowed"),
        );
    }
    let controlled = extra_config
        .iter()
        .find(|(key, value)| key.chars().any(char::is_control) || holds_controls(value));
    if let Some((key, _)) = controlled {
        errors.push(
            FIELD,
            format!("the key {key:?} or its value holds control characters, which are not allowed"),
        );
    }
}

/// Whether a JSON value holds a control character in a string or a key, however deep.
fn holds_controls(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
        Value::String(text) => text.chars().any(char::is_control),
        Value::Array(items) => items.iter().any(holds_controls),
        Value::Object(entries) => entries
            .iter()
            .any(|(key, value)| key.chars().any(char::is_control) || holds_controls(value)),
    }
}

fn check_account_id(account_id: Option<String>, errors: &mut ValidationError) -> Option<String> {
    check_text(
        account_id,
        "context.account_id",
        MAX_ACCOUNT_ID_CHARS,
        errors,
    )
}

/// A required, non-blank text of at most `max` characters without control characters.
pub(crate) fn check_text(
    value: Option<String>,
    field: &str,
    max: usize,
    errors: &mut ValidationError,
) -> Option<String> {
    let value = value.or_else(|| required(errors, field))?;
    let problem = if value.trim().is_empty() {
        Some("must not be empty".to_owned())
    } else if value.chars().count() > max {
        Some(format!("must be at most {max} characters"))
    } else if value.chars().any(char::is_control) {
        Some(CONTROL_CHARACTERS.to_owned())
    } else {
        None
    };
    match problem {
        Some(message) => {
            errors.push(field, message);
            None
        }
        None => Some(value),
    }
}

fn check_source(source: Option<String>, errors: &mut ValidationError) -> String {
    let source = source.unwrap_or_else(|| "api".to_owned());
    let valid = !source.is_empty()
        && source.len() <= MAX_SOURCE_CHARS
        && source
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        errors.push(
            "context.source",
            format!("must be 1-{MAX_SOURCE_CHARS} letters, digits, '-', '_' or '.'"),
        );
    }
    source
}

fn check_domain(
    domain: &str,
    record_type: Option<RecordType>,
    errors: &mut ValidationError,
) -> Option<Fqdn> {
    // Without a valid type we still check the name, with the most permissive rules, so the
    // client sees every problem at once.
    let rules = record_type.map_or(RecordType::Txt.owner_rules(), RecordType::owner_rules);
    let name = Fqdn::parse(domain, rules)
        .map_err(|e| errors.push("resource.domain", e))
        .ok()?;
    if record_type == Some(RecordType::Srv) {
        let mut labels = name.labels();
        let service_shaped = matches!((labels.next(), labels.next()), (Some(s), Some(p)) if s.starts_with('_') && p.starts_with('_'));
        if !service_shaped {
            errors.push(
                "resource.domain",
                "an SRV owner name must be _service._proto.name (RFC 2782)",
            );
            return None;
        }
    }
    Some(name)
}

/// The records of `target` (with `priority`) or `targets`: none for a delete of the whole
/// RRset or an adoption. `None` when they are refused (the errors say why).
fn check_records(
    operation: Operation,
    record_type: Option<RecordType>,
    target: Option<String>,
    targets: Option<Vec<String>>,
    priority: Option<i64>,
    errors: &mut ValidationError,
) -> Option<Vec<RecordData>> {
    let field = match (&target, &targets) {
        (Some(_), Some(_)) => {
            errors.push(
                "resource.targets",
                "give `target` (one record) or `targets`, not both",
            );
            return None;
        }
        (Some(_), None) => "resource.target",
        (None, Some(_)) => "resource.targets",
        (None, None) => match operation {
            // A delete without records removes the whole RRset; an adoption takes the RRset
            // as the server holds it.
            Operation::Delete => {
                if priority.is_some() {
                    errors.push(
                        "resource.config.priority",
                        "applies only to a delete with a target",
                    );
                }
                return Some(Vec::new());
            }
            Operation::Adopt => return Some(Vec::new()),
            Operation::Create => return required(errors, "resource.target"),
            Operation::Replace => return required(errors, "resource.targets"),
        },
    };
    match operation {
        Operation::Adopt => {
            errors.push(
                field,
                "an adoption takes the whole RRset as the server holds it; give no records",
            );
            None
        }
        Operation::Create | Operation::Delete | Operation::Replace => {
            let record_type = record_type?;
            match (target, targets) {
                (Some(target), _) => without_controls(target, field, errors)
                    .and_then(|t| check_data(record_type, &t, priority, errors))
                    .map(|record| vec![record]),
                (None, Some(targets)) => check_targets(record_type, targets, priority, errors),
                (None, None) => None,
            }
        }
    }
}

/// `resource.targets`: each element a record in zone-file form (see `zoneform`), at least
/// one, each once; a CNAME RRset holds one record (RFC 2181 10.1).
fn check_targets(
    record_type: RecordType,
    targets: Vec<String>,
    priority: Option<i64>,
    errors: &mut ValidationError,
) -> Option<Vec<RecordData>> {
    let before = errors.fields.len();
    if priority.is_some() {
        errors.push(
            "resource.config.priority",
            "with `targets`, each record carries its own priority (\"10 mail.example.test\")",
        );
    }
    match targets.len() {
        0 => errors.push("resource.targets", "must hold a record"),
        n if n > MAX_TARGETS => errors.push(
            "resource.targets",
            format!("holds {n} records; at most {MAX_TARGETS} in one request"),
        ),
        n if n > 1 && record_type == RecordType::Cname => errors.push(
            "resource.targets",
            format!("holds {n} records; a CNAME RRset holds one record (RFC 2181 10.1)"),
        ),
        _ => {}
    }
    let mut records: Vec<RecordData> = Vec::with_capacity(targets.len());
    // Where each of `records` was given.
    let mut given: Vec<usize> = Vec::with_capacity(targets.len());
    for (i, element) in targets.into_iter().enumerate().take(MAX_TARGETS) {
        let field = format!("resource.targets[{i}]");
        let Some(element) = without_controls(element, &field, errors) else {
            continue;
        };
        match zoneform::parse(record_type, &element) {
            Ok(record) => match records.iter().position(|r| *r == record) {
                Some(first) => errors.push(
                    field,
                    format!("is the same record as resource.targets[{}]", given[first]),
                ),
                None => {
                    records.push(record);
                    given.push(i);
                }
            },
            Err(message) => errors.push(field, message),
        }
    }
    (errors.fields.len() == before).then_some(records)
}

fn check_data(
    record_type: RecordType,
    target: &str,
    priority: Option<i64>,
    errors: &mut ValidationError,
) -> Option<RecordData> {
    RecordData::parse(record_type, target, priority)
        .map_err(|problems| {
            for problem in problems {
                match problem {
                    DataError::Target(m) => errors.push("resource.target", m),
                    DataError::Priority(m) => errors.push("resource.config.priority", m),
                }
            }
        })
        .ok()
}

/// `expect`: an RRset of the request's type in zone-file form (`null`, or no records:
/// absent), for a create, delete or replace (an adoption takes the RRset as it is).
fn check_expect(
    operation: Operation,
    record_type: Option<RecordType>,
    expect: Option<RrsetBody>,
    errors: &mut ValidationError,
) -> Option<LiveRrset> {
    match operation {
        Operation::Create | Operation::Delete | Operation::Replace => {}
        Operation::Adopt => {
            errors.push(
                "expect",
                "an adoption takes the RRset as the server holds it; give no expectation",
            );
            return None;
        }
    }
    let Some(expect) = expect else {
        return Some(LiveRrset::absent());
    };
    let before = errors.fields.len();
    let ttl = ttl_in_range(expect.ttl, "expect.ttl", errors).unwrap_or(0);
    let record_type = record_type?;
    let mut held = Vec::with_capacity(expect.records.len());
    for (i, element) in expect.records.into_iter().enumerate().take(MAX_TARGETS) {
        let field = format!("expect.records[{i}]");
        let Some(element) = without_controls(element, &field, errors) else {
            continue;
        };
        match zoneform::parse(record_type, &element) {
            Ok(record) => held.push(record),
            Err(message) => errors.push(field, message),
        }
    }
    (errors.fields.len() == before).then_some(LiveRrset { ttl, records: held })
}

fn check_ttl(config: &ConfigBody, errors: &mut ValidationError) -> u32 {
    config
        .ttl
        .and_then(|ttl| ttl_in_range(ttl, "resource.config.ttl", errors))
        .unwrap_or(DEFAULT_TTL)
}

/// A TTL (RFC 2181 8: 0-2147483647); out of range, an error against `field`.
fn ttl_in_range(ttl: i64, field: &str, errors: &mut ValidationError) -> Option<u32> {
    match u32::try_from(ttl) {
        Ok(ttl) if ttl <= i32::MAX as u32 => Some(ttl),
        _ => {
            errors.push(field, format!("{ttl} is out of range 0-2147483647"));
            None
        }
    }
}

/// Checks an `Idempotency-Key` header on its own (a change set's, from which its changes' keys
/// are derived).
///
/// # Errors
/// Not 1-255 visible ASCII characters, naming the header.
pub fn check_key(key: &str) -> Result<(), ValidationError> {
    let mut errors = ValidationError::default();
    match check_idempotency_key(key, &mut errors) {
        Some(_) => Ok(()),
        None => Err(errors),
    }
}

fn check_idempotency_key(key: &str, errors: &mut ValidationError) -> Option<String> {
    let valid = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && key.bytes().all(|b| b.is_ascii_graphic());
    if !valid {
        errors.push(
            "header.Idempotency-Key",
            format!("must be 1-{MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
        );
        return None;
    }
    Some(key.to_owned())
}
