//! librdkafka client properties for every Kafka client dnsorch makes (the intake's consumer
//! and its dead-letter producer): TLS, SASL and the like, which dnsorch passes through.
//!
//! They come from the file `KAFKA_PROPERTIES` (`name=value` lines, like a Kafka
//! `client.properties`) and from the environment variables `KAFKA_PROPERTY_<NAME>`, NAME being
//! the property's name upper case with `_` for `.` (`KAFKA_PROPERTY_SECURITY_PROTOCOL` is
//! `security.protocol`); a variable wins over the file. No command-line flag carries a value.
//!
//! A property dnsorch sets itself ([`RESERVED`]: its guarantees depend on it, or a setting of
//! its own controls it) is refused at start, naming the property and what controls it; so is a
//! property librdkafka refuses (unknown name, bad value), naming it and where it came from.
//!
//! A property is secret when its name contains `password`, `passphrase`, `secret`, `pem` or
//! `jaas`, or it is `sasl.oauthbearer.config` or `sasl.oauthbearer.extensions` ([`is_secret`]).
//! Secret values never appear in an error, a log line or `/readyz`: every text from librdkafka
//! passes through a [`Redactor`] that replaces them, and `Debug` shows no value at all.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The prefix of the property variables.
pub const VARIABLE_PREFIX: &str = "KAFKA_PROPERTY_";

/// What stands in for a secret value in any text dnsorch shows.
pub const REDACTED: &str = "[redacted]";

/// What controls a property dnsorch sets itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// One of dnsorch's settings.
    Setting(&'static str),
    /// dnsorch, always the same, for the reason given.
    Fixed(&'static str),
}

const OFFSETS: &str = "dnsorch stores a message's offset only once it is recorded or dead-lettered, and commits those";

/// The properties dnsorch sets itself (with librdkafka's other names for them), refused from
/// `KAFKA_PROPERTIES` and `KAFKA_PROPERTY_*`.
pub const RESERVED: &[(&str, Control)] = &[
    ("bootstrap.servers", Control::Setting("KAFKA_BROKER_URL")),
    ("metadata.broker.list", Control::Setting("KAFKA_BROKER_URL")),
    ("group.id", Control::Setting("KAFKA_GROUP_ID")),
    ("queued.min.messages", Control::Setting("KAFKA_BATCH_MAX")),
    (
        "queued.max.messages.kbytes",
        Control::Setting("KAFKA_PREFETCH_KBYTES"),
    ),
    ("fetch.max.bytes", Control::Setting("KAFKA_PREFETCH_KBYTES")),
    ("log_level", Control::Setting("LOG_LEVEL")),
    ("enable.auto.commit", Control::Fixed(OFFSETS)),
    ("auto.commit.enable", Control::Fixed(OFFSETS)),
    ("enable.auto.offset.store", Control::Fixed(OFFSETS)),
    ("auto.commit.interval.ms", Control::Fixed(OFFSETS)),
    (
        "auto.offset.reset",
        Control::Fixed("a new consumer group reads the topic from its start (earliest)"),
    ),
    (
        "session.timeout.ms",
        Control::Fixed("a consumer that stops is replaced within 6 s"),
    ),
    (
        "enable.partition.eof",
        Control::Fixed("the end of a partition is no event for the intake"),
    ),
    (
        "message.timeout.ms",
        Control::Fixed("a dead letter is tried for 10 s, then again until the broker takes it"),
    ),
    (
        "delivery.timeout.ms",
        Control::Fixed("a dead letter is tried for 10 s, then again until the broker takes it"),
    ),
    (
        "message.max.bytes",
        Control::Fixed("a dead letter of any size the broker takes is produced"),
    ),
    (
        "acks",
        Control::Fixed("a dead letter counts as produced once all in-sync replicas have it"),
    ),
    (
        "request.required.acks",
        Control::Fixed("a dead letter counts as produced once all in-sync replicas have it"),
    ),
    (
        "enabled_events",
        Control::Fixed("the Kafka client library's own"),
    ),
    (
        "log.queue",
        Control::Fixed("the Kafka client library's own"),
    ),
];

/// What controls `name` when dnsorch sets it itself.
pub fn reserved(name: &str) -> Option<Control> {
    RESERVED
        .iter()
        .find(|(reserved, _)| *reserved == name)
        .map(|(_, control)| *control)
}

/// Whether a property's value is secret, by its name: it contains `password`, `passphrase`,
/// `secret`, `pem` (key material such as `ssl.key.pem`) or `jaas`, or it is
/// `sasl.oauthbearer.config` or `sasl.oauthbearer.extensions`.
pub fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "passphrase", "secret", "pem", "jaas"]
        .iter()
        .any(|word| name.contains(word))
        || matches!(
            name.as_str(),
            "sasl.oauthbearer.config" | "sasl.oauthbearer.extensions"
        )
}

/// The `KAFKA_PROPERTY_*` variables of the environment, as read (checked by
/// [`ClientProperties::load`]). `Debug` shows their names only.
#[derive(Clone, Default)]
pub struct PropertyVariables {
    /// (variable, value), in the order given.
    variables: Vec<(String, String)>,
    /// Variables whose value is not UTF-8.
    not_unicode: Vec<String>,
}

impl PropertyVariables {
    /// These variables (name, value), e.g. `("KAFKA_PROPERTY_SECURITY_PROTOCOL", "ssl")`.
    pub fn new<N: Into<String>, V: Into<String>>(
        variables: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        Self {
            variables: variables
                .into_iter()
                .map(|(name, value)| (name.into(), value.into()))
                .collect(),
            not_unicode: Vec::new(),
        }
    }

    /// Every `KAFKA_PROPERTY_*` variable of this process's environment, by name.
    pub fn from_env() -> Self {
        Self::from_vars(std::env::vars_os())
    }

    fn from_vars(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Self {
        let mut found = Self::default();
        for (name, value) in vars {
            let Some(name) = name.to_str().filter(|n| n.starts_with(VARIABLE_PREFIX)) else {
                continue;
            };
            match value.into_string() {
                Ok(value) => found.variables.push((name.to_owned(), value)),
                Err(_) => found.not_unicode.push(name.to_owned()),
            }
        }
        found.variables.sort();
        found.not_unicode.sort();
        found
    }
}

impl fmt::Debug for PropertyVariables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.variables.iter().map(|(name, _)| name))
            .entries(&self.not_unicode)
            .finish()
    }
}

/// Where a property was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A `KAFKA_PROPERTY_*` variable.
    Variable(String),
    /// A line of the `KAFKA_PROPERTIES` file (from 1).
    File { path: PathBuf, line: usize },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Variable(name) => f.write_str(name),
            Self::File { path, line } => {
                write!(f, "KAFKA_PROPERTIES {} line {line}", path.display())
            }
        }
    }
}

/// Why the properties were refused. No variant holds a secret value.
#[derive(Debug, thiserror::Error)]
pub enum PropertyError {
    #[error("KAFKA_PROPERTIES: cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: not `name=value` (a `#` begins a comment line)")]
    NotAPair { origin: Origin },
    #[error("{origin}: {name} is set again (first at line {first})")]
    Twice {
        origin: Origin,
        name: String,
        first: usize,
    },
    #[error(
        "{variable}: after KAFKA_PROPERTY_ comes the property's name in upper case, `_` for `.` (KAFKA_PROPERTY_SECURITY_PROTOCOL)"
    )]
    VariableName { variable: String },
    #[error("{variable}: the value is not UTF-8")]
    NotUnicode { variable: String },
    #[error("{origin}: {name} is set by dnsorch; use {setting}")]
    ControlledBySetting {
        origin: Origin,
        name: String,
        setting: &'static str,
    },
    #[error("{origin}: {name} is set by dnsorch and cannot be changed: {why}")]
    Fixed {
        origin: Origin,
        name: String,
        why: &'static str,
    },
    /// librdkafka refused it; `reason` is its text with secret values redacted.
    #[error("{origin}: the Kafka client refuses {name}: {reason}")]
    Refused {
        origin: Origin,
        name: String,
        reason: String,
    },
}

/// One property as given.
#[derive(Clone)]
struct Property {
    name: String,
    value: String,
    origin: Origin,
}

/// The client properties given, checked: none is reserved, and (with Kafka built in) librdkafka
/// takes each one. `Debug` shows their names only.
#[derive(Clone, Default)]
pub struct ClientProperties {
    properties: Vec<Property>,
}

impl fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.properties.iter().map(|p| &p.name))
            .finish()
    }
}

impl ClientProperties {
    /// The properties of `file` (`KAFKA_PROPERTIES`) and `variables`, a variable winning over
    /// the file.
    ///
    /// # Errors
    /// The file cannot be read or has a line that is not `name=value`, or sets a name twice; a
    /// variable's name is not a property's; a property is reserved; librdkafka refuses one.
    pub fn load(file: Option<&Path>, variables: &PropertyVariables) -> Result<Self, PropertyError> {
        let mut properties = match file {
            Some(path) => read_file(path)?,
            None => Vec::new(),
        };
        if let Some(variable) = variables.not_unicode.first() {
            return Err(PropertyError::NotUnicode {
                variable: variable.clone(),
            });
        }
        for (variable, value) in &variables.variables {
            let name = property_name(variable)?;
            properties.retain(|p| p.name != name);
            properties.push(Property {
                name,
                value: value.clone(),
                origin: Origin::Variable(variable.clone()),
            });
        }
        let this = Self { properties };
        this.check()?;
        Ok(this)
    }

    /// Whether no property is given.
    pub fn is_empty(&self) -> bool {
        self.properties.is_empty()
    }

    /// The names given, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.properties.iter().map(|p| p.name.as_str())
    }

    /// Replaces the secret values given in a text.
    pub fn redactor(&self) -> Redactor {
        let mut secrets: Vec<String> = self
            .properties
            .iter()
            .filter(|p| is_secret(&p.name) && !p.value.is_empty())
            .map(|p| p.value.clone())
            .collect();
        // The longest first, so that a secret holding another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor(secrets.into())
    }

    fn check(&self) -> Result<(), PropertyError> {
        for property in &self.properties {
            match reserved(&property.name) {
                None => {}
                Some(Control::Setting(setting)) => {
                    return Err(PropertyError::ControlledBySetting {
                        origin: property.origin.clone(),
                        name: property.name.clone(),
                        setting,
                    });
                }
                Some(Control::Fixed(why)) => {
                    return Err(PropertyError::Fixed {
                        origin: property.origin.clone(),
                        name: property.name.clone(),
                        why,
                    });
                }
            }
        }
        #[cfg(feature = "kafka")]
        self.check_with_librdkafka()?;
        Ok(())
    }
}

#[cfg(feature = "kafka")]
impl ClientProperties {
    /// Sets every property on `config` (before the properties dnsorch sets itself).
    pub fn apply(&self, config: &mut rdkafka::ClientConfig) {
        for property in &self.properties {
            config.set(&property.name, &property.value);
        }
    }

    /// Has librdkafka take each property alone: an unknown name or a bad value is refused
    /// here, with librdkafka's reason, secrets redacted (the client crate's own error text
    /// quotes the value).
    fn check_with_librdkafka(&self) -> Result<(), PropertyError> {
        let redactor = self.redactor();
        for property in &self.properties {
            let mut config = rdkafka::ClientConfig::new();
            config.set(&property.name, &property.value);
            let reason = match config.create_native_config() {
                Ok(_) => continue,
                Err(rdkafka::error::KafkaError::ClientConfig(_, reason, _, _)) => reason,
                Err(other) => other.to_string(),
            };
            return Err(PropertyError::Refused {
                origin: property.origin.clone(),
                name: property.name.clone(),
                reason: redactor.redact(&reason).into_owned(),
            });
        }
        Ok(())
    }
}

/// Replaces the secret values of the client properties in texts from librdkafka (its errors
/// and log lines), before they are logged or shown.
#[derive(Clone, Default)]
pub struct Redactor(Arc<[String]>);

impl Redactor {
    /// `text` with every secret value replaced by `[redacted]`.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut text = Cow::Borrowed(text);
        for secret in self.0.iter() {
            if text.contains(secret.as_str()) {
                text = Cow::Owned(text.replace(secret.as_str(), REDACTED));
            }
        }
        text
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.0.len())
    }
}

/// The property a `KAFKA_PROPERTY_*` variable names: `KAFKA_PROPERTY_SSL_CA_LOCATION` is
/// `ssl.ca.location`.
fn property_name(variable: &str) -> Result<String, PropertyError> {
    let rest = variable.strip_prefix(VARIABLE_PREFIX).unwrap_or(variable);
    let valid = !rest.is_empty()
        && !rest.starts_with('_')
        && !rest.ends_with('_')
        && !rest.contains("__")
        && rest
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(PropertyError::VariableName {
            variable: variable.to_owned(),
        });
    }
    Ok(rest.to_ascii_lowercase().replace('_', "."))
}

/// The properties of a `KAFKA_PROPERTIES` file: `name=value` lines (the name and the value
/// trimmed of surrounding whitespace; the value taken literally, `=` included, with no escapes),
/// blank lines and lines beginning with `#` ignored.
fn read_file(path: &Path) -> Result<Vec<Property>, PropertyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PropertyError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    parse_file(path, &text)
}

fn parse_file(path: &Path, text: &str) -> Result<Vec<Property>, PropertyError> {
    let mut properties = Vec::new();
    let mut lines_of: HashMap<String, usize> = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let origin = Origin::File {
            path: path.to_owned(),
            line: index + 1,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(PropertyError::NotAPair { origin });
        };
        let name = name.trim();
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return Err(PropertyError::NotAPair { origin });
        }
        if let Some(&first) = lines_of.get(name) {
            return Err(PropertyError::Twice {
                origin,
                name: name.to_owned(),
                first,
            });
        }
        lines_of.insert(name.to_owned(), index + 1);
        properties.push(Property {
            name: name.to_owned(),
            value: value.trim().to_owned(),
            origin,
        });
    }
    Ok(properties)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<Vec<(String, String)>, PropertyError> {
        parse_file(Path::new("/etc/k.properties"), text)
            .map(|ps| ps.into_iter().map(|p| (p.name, p.value)).collect())
    }

    #[test]
    fn a_file_has_name_value_lines_comments_and_blank_lines() {
        let text = "# TLS\n\n  security.protocol = SASL_SSL \nsasl.password=a=b#c\n";
        assert_eq!(
            file(text).unwrap(),
            [
                ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
                ("sasl.password".to_owned(), "a=b#c".to_owned()),
            ]
        );
    }

    #[test]
    fn a_line_without_equals_is_refused_by_its_line_and_not_quoted() {
        let error = file("a=1\nsasl.password hunter2\n").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("/etc/k.properties line 2"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let error = file("a=1\n\na=2\n").unwrap_err().to_string();
        assert!(
            error.contains("line 3: a is set again (first at line 1)"),
            "{error}"
        );
    }

    #[test]
    fn variable_names_map_to_property_names() {
        assert_eq!(
            property_name("KAFKA_PROPERTY_SECURITY_PROTOCOL").unwrap(),
            "security.protocol"
        );
        assert_eq!(
            property_name("KAFKA_PROPERTY_SASL_OAUTHBEARER_CLIENT_SECRET").unwrap(),
            "sasl.oauthbearer.client.secret"
        );
        for bad in [
            "KAFKA_PROPERTY_",
            "KAFKA_PROPERTY_security_protocol",
            "KAFKA_PROPERTY__SASL",
            "KAFKA_PROPERTY_SASL__PASSWORD",
            "KAFKA_PROPERTY_SASL.PASSWORD",
        ] {
            assert!(property_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_prefixed_variables_are_read_and_a_variable_wins_over_the_file() {
        let variables = PropertyVariables::from_vars([
            ("KAFKA_BROKER_URL".into(), "k:9092".into()),
            ("KAFKA_PROPERTY_CLIENT_ID".into(), "from-env".into()),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.properties");
        std::fs::write(&path, "client.id=from-file\nclient.rack=r1\n").unwrap();
        let properties = ClientProperties::load(Some(&path), &variables).unwrap();
        let given: Vec<(&str, &str)> = properties
            .properties
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(given, [("client.rack", "r1"), ("client.id", "from-env")]);
    }

    #[test]
    fn secret_names_follow_one_rule() {
        for secret in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "ssl.key.pem",
            "ssl.certificate.pem",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.client.credentials.client.secret",
            "sasl.oauthbearer.assertion.private.key.passphrase",
            "sasl.oauthbearer.assertion.private.key.pem",
            "sasl.jaas.config",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.extensions",
        ] {
            assert!(is_secret(secret), "{secret}");
        }
        for plain in [
            "security.protocol",
            "sasl.username",
            "sasl.mechanism",
            "ssl.ca.location",
            "ssl.key.location",
        ] {
            assert!(!is_secret(plain), "{plain}");
        }
    }

    #[test]
    fn the_redactor_replaces_every_secret_value_and_only_those() {
        let properties = ClientProperties {
            properties: [
                ("sasl.username", "alice"),
                ("sasl.password", "pw"),
                ("ssl.key.password", "pw-longer"),
            ]
            .into_iter()
            .map(|(name, value)| Property {
                name: name.to_owned(),
                value: value.to_owned(),
                origin: Origin::Variable(String::new()),
            })
            .collect(),
        };
        let redactor = properties.redactor();
        assert_eq!(
            redactor.redact("alice: pw-longer, then pw"),
            "alice: [redacted], then [redacted]"
        );
        assert_eq!(
            format!("{properties:?}"),
            r#"["sasl.username", "sasl.password", "ssl.key.password"]"#
        );
    }

    #[test]
    fn reserved_properties_are_refused_naming_what_controls_them() {
        let variables = PropertyVariables::new([("KAFKA_PROPERTY_GROUP_ID", "other")]);
        let error = ClientProperties::load(None, &variables)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "KAFKA_PROPERTY_GROUP_ID: group.id is set by dnsorch; use KAFKA_GROUP_ID"
        );
        let variables =
            PropertyVariables::new([("KAFKA_PROPERTY_ENABLE_AUTO_OFFSET_STORE", "true")]);
        let error = ClientProperties::load(None, &variables)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("KAFKA_PROPERTY_ENABLE_AUTO_OFFSET_STORE: enable.auto.offset.store is set by dnsorch and cannot be changed"),
            "{error}"
        );
    }

    #[cfg(feature = "kafka")]
    #[test]
    fn librdkafka_refusals_name_the_property_and_never_quote_a_secret() {
        let variables = PropertyVariables::new([(
            "KAFKA_PROPERTY_SASL_JAAS_CONFIG",
            "org.apache.kafka.common.security.scram.ScramLoginModule required password=\"jaas-pw\";",
        )]);
        let error = ClientProperties::load(None, &variables)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(
                "KAFKA_PROPERTY_SASL_JAAS_CONFIG: the Kafka client refuses sasl.jaas.config"
            ),
            "{error}"
        );
        assert!(!error.contains("jaas-pw"), "{error}");
        let variables = PropertyVariables::new([("KAFKA_PROPERTY_SECURITY_PROTOCOL", "tls")]);
        let error = ClientProperties::load(None, &variables)
            .unwrap_err()
            .to_string();
        assert!(error.contains("security.protocol"), "{error}");
        assert!(
            error.contains("\"tls\""),
            "a value that is not secret is quoted: {error}"
        );
    }
}
