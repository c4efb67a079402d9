//! Record types and their data, as the RFCs name them.
//!
//! `RecordData::parse` turns the original body's `target` (plus `config.priority` for MX and
//! SRV) into typed RDATA, and `RecordData::target` gives back the one normalised text form we
//! store and show.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::fqdn::{Fqdn, NameRules};

/// The longest TXT target we accept, in octets (split into 255-octet strings on the wire).
pub const MAX_TXT_LEN: usize = 4000;

/// The record types dnsorch manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
    Mx,
    Txt,
    Srv,
    Ns,
    Ptr,
    Caa,
}

impl RecordType {
    /// Every supported type, in the order error messages list them.
    pub const ALL: [Self; 9] = [
        Self::A,
        Self::Aaaa,
        Self::Cname,
        Self::Mx,
        Self::Txt,
        Self::Srv,
        Self::Ns,
        Self::Ptr,
        Self::Caa,
    ];

    /// The mnemonic, upper-case, as in zone files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Cname => "CNAME",
            Self::Mx => "MX",
            Self::Txt => "TXT",
            Self::Srv => "SRV",
            Self::Ns => "NS",
            Self::Ptr => "PTR",
            Self::Caa => "CAA",
        }
    }

    /// Whether `config.priority` belongs to this type.
    pub fn takes_priority(self) -> bool {
        matches!(self, Self::Mx | Self::Srv)
    }

    /// Of the types `held` at a name, those whose data conflicts with data of this type.
    pub fn exclusive_among(self, held: &[Self]) -> Vec<Self> {
        self.exclusive_with()
            .into_iter()
            .filter(|t| held.contains(t))
            .collect()
    }

    /// The types whose data at the same name conflicts with data of this type (RFC 1034
    /// 3.6.2, RFC 2181 10.1): every other type for a CNAME, the CNAME for any other.
    pub fn exclusive_with(self) -> Vec<Self> {
        match self {
            Self::Cname => Self::ALL
                .into_iter()
                .filter(|t| *t != Self::Cname)
                .collect(),
            Self::A
            | Self::Aaaa
            | Self::Mx
            | Self::Txt
            | Self::Srv
            | Self::Ns
            | Self::Ptr
            | Self::Caa => vec![Self::Cname],
        }
    }

    /// What an owner name of this type may contain. Service-style labels (`_dmarc`,
    /// `_sip._tcp`, DKIM selectors and the CNAMEs that delegate them) need underscores; a
    /// wildcard owner makes no sense for a delegation.
    pub fn owner_rules(self) -> NameRules {
        NameRules {
            underscore: matches!(self, Self::Txt | Self::Srv | Self::Cname),
            wildcard: self != Self::Ns,
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|t| t.as_str()).collect();
                format!(
                    "unsupported record type '{s}'; supported: {}",
                    names.join(", ")
                )
            })
    }
}

/// A CAA property tag (RFC 8659 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaaTag {
    Issue,
    IssueWild,
    Iodef,
}

impl CaaTag {
    fn as_str(self) -> &'static str {
        match self {
            Self::Issue => "issue",
            Self::IssueWild => "issuewild",
            Self::Iodef => "iodef",
        }
    }
}

/// Validated RDATA for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(Fqdn),
    Mx {
        preference: u16,
        exchange: Fqdn,
    },
    Txt(String),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: Fqdn,
    },
    Ns(Fqdn),
    Ptr(Fqdn),
    Caa {
        flags: u8,
        tag: CaaTag,
        value: String,
    },
}

/// An RRset as a server holds it: its TTL and records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRrset {
    pub ttl: u32,
    pub records: Vec<RecordData>,
}

impl LiveRrset {
    /// The absent RRset: no records.
    pub fn absent() -> Self {
        Self {
            ttl: 0,
            records: Vec::new(),
        }
    }
}

/// An RRset before and after a change (an absent RRset has no records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeforeAfter {
    pub before: LiveRrset,
    pub after: LiveRrset,
}

/// Where a bad value came from, so the error names the right field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataError {
    Target(String),
    Priority(String),
}

impl RecordData {
    /// Parses `target` (and `priority` for MX and SRV) for a record of type `record_type`.
    ///
    /// # Errors
    /// Every problem found, each naming whether `target` or `priority` is at fault.
    pub fn parse(
        record_type: RecordType,
        target: &str,
        priority: Option<i64>,
    ) -> Result<Self, Vec<DataError>> {
        let mut errors = Vec::new();
        let priority = match (record_type.takes_priority(), priority) {
            (true, None) => {
                errors.push(DataError::Priority(format!(
                    "is required for {record_type} records"
                )));
                None
            }
            (true, Some(p)) => match u16::try_from(p) {
                Ok(p) => Some(p),
                Err(_) => {
                    errors.push(DataError::Priority(format!("{p} is out of range 0-65535")));
                    None
                }
            },
            (false, Some(_)) => {
                errors.push(DataError::Priority(format!(
                    "is only valid for MX and SRV records, not {record_type}"
                )));
                None
            }
            (false, None) => None,
        };
        let data = parse_target(record_type, target, priority.unwrap_or(0))
            .map_err(|message| errors.push(DataError::Target(message)));
        match data {
            Ok(data) if errors.is_empty() => Ok(data),
            _ => Err(errors),
        }
    }

    /// The record's type.
    pub fn record_type(&self) -> RecordType {
        match self {
            Self::A(_) => RecordType::A,
            Self::Aaaa(_) => RecordType::Aaaa,
            Self::Cname(_) => RecordType::Cname,
            Self::Mx { .. } => RecordType::Mx,
            Self::Txt(_) => RecordType::Txt,
            Self::Srv { .. } => RecordType::Srv,
            Self::Ns(_) => RecordType::Ns,
            Self::Ptr(_) => RecordType::Ptr,
            Self::Caa { .. } => RecordType::Caa,
        }
    }

    /// The MX preference or SRV priority, which the original body carries in `config.priority`.
    pub fn priority(&self) -> Option<u16> {
        match self {
            Self::Mx { preference, .. } => Some(*preference),
            Self::Srv { priority, .. } => Some(*priority),
            _ => None,
        }
    }

    /// The normalised `target` text we store: the body's form, without the priority.
    pub fn target(&self) -> String {
        match self {
            Self::A(ip) => ip.to_string(),
            Self::Aaaa(ip) => ip.to_string(),
            Self::Cname(name) | Self::Ns(name) | Self::Ptr(name) => name.to_string(),
            Self::Mx { exchange, .. } => exchange.to_string(),
            Self::Txt(text) => text.clone(),
            Self::Srv {
                weight,
                port,
                target,
                ..
            } => format!("{weight} {port} {target}"),
            Self::Caa { flags, tag, value } => format!("{flags} {} \"{value}\"", tag.as_str()),
        }
    }
}

impl RecordData {
    /// The RDATA in zone-file presentation form, names absolute (what `nsupdate` and a DNS
    /// library take). TXT data longer than 255 octets becomes several strings; quotes,
    /// backslashes and octets outside printable ASCII are escaped.
    pub fn presentation(&self) -> String {
        match self {
            Self::A(ip) => ip.to_string(),
            Self::Aaaa(ip) => ip.to_string(),
            Self::Cname(name) | Self::Ns(name) | Self::Ptr(name) => format!("{name}."),
            Self::Mx {
                preference,
                exchange,
            } => format!("{preference} {exchange}."),
            Self::Txt(text) => text
                .as_bytes()
                .chunks(255)
                .map(quoted)
                .collect::<Vec<_>>()
                .join(" "),
            Self::Srv {
                priority,
                weight,
                port,
                target,
            } => format!("{priority} {weight} {port} {target}."),
            Self::Caa { flags, tag, value } => {
                format!("{flags} {} {}", tag.as_str(), quoted(value.as_bytes()))
            }
        }
    }
}

/// A presentation-form character string: quoted, with `"`, `\` and non-printable octets
/// escaped.
fn quoted(octets: &[u8]) -> String {
    let mut out = String::with_capacity(octets.len() + 2);
    out.push('"');
    for &octet in octets {
        match octet {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(octet));
            }
            0x20..=0x7e => out.push(char::from(octet)),
            _ => out.push_str(&format!("\\{octet:03}")),
        }
    }
    out.push('"');
    out
}

fn parse_target(
    record_type: RecordType,
    target: &str,
    priority: u16,
) -> Result<RecordData, String> {
    if target.is_empty() {
        return Err("must not be empty".into());
    }
    let host = |s: &str| Fqdn::parse(s, NameRules::HOST).map_err(|e| format!("host name {e}"));
    Ok(match record_type {
        RecordType::A => RecordData::A(
            target
                .parse()
                .map_err(|_| format!("'{target}' is not an IPv4 address"))?,
        ),
        RecordType::Aaaa => RecordData::Aaaa(
            target
                .parse()
                .map_err(|_| format!("'{target}' is not an IPv6 address"))?,
        ),
        RecordType::Cname => RecordData::Cname(
            Fqdn::parse(target, RecordType::Cname.owner_rules().without_wildcard())
                .map_err(|e| format!("canonical name {e}"))?,
        ),
        RecordType::Ns => RecordData::Ns(host(target)?),
        RecordType::Ptr => RecordData::Ptr(host(target)?),
        RecordType::Mx => RecordData::Mx {
            preference: priority,
            exchange: host(target)?,
        },
        RecordType::Txt => RecordData::Txt(parse_txt(target)?),
        RecordType::Srv => parse_srv(target, priority)?,
        RecordType::Caa => parse_caa(target)?,
    })
}

impl NameRules {
    fn without_wildcard(self) -> Self {
        Self {
            wildcard: false,
            ..self
        }
    }
}

fn parse_txt(text: &str) -> Result<String, String> {
    if text.len() > MAX_TXT_LEN {
        return Err(format!(
            "is {} octets long; TXT data may be at most {MAX_TXT_LEN}",
            text.len()
        ));
    }
    if text.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(text.to_owned())
}

/// ```text
/// RFC 2782: _Service._Proto.Name TTL Class SRV Priority Weight Port Target
/// ```
/// The original body puts Priority in `config.priority`, so `target` is "weight port host".
fn parse_srv(target: &str, priority: u16) -> Result<RecordData, String> {
    let shape = || format!("'{target}' is not \"<weight> <port> <host>\"");
    let parts: Vec<&str> = target.split_whitespace().collect();
    let [weight, port, host] = parts[..] else {
        return Err(shape());
    };
    let number = |s: &str, what: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("{what} '{s}' is not a number in 0-65535"))
    };
    Ok(RecordData::Srv {
        priority,
        weight: number(weight, "weight")?,
        port: number(port, "port")?,
        target: Fqdn::parse(host, NameRules::HOST).map_err(|e| format!("host name {e}"))?,
    })
}

/// ```text
/// RFC 8659 section 4.1.1: CAA <flags> <tag> <value>, e.g. 0 issue "letsencrypt.org"
/// ```
fn parse_caa(target: &str) -> Result<RecordData, String> {
    let shape = || {
        format!("'{target}' is not '<flags> <tag> \"<value>\"', e.g. 0 issue \"letsencrypt.org\"")
    };
    let (flags, rest) = target.trim().split_once(' ').ok_or_else(shape)?;
    let (tag, value) = rest.trim_start().split_once(' ').ok_or_else(shape)?;
    let flags: u8 = flags
        .parse()
        .map_err(|_| format!("flags '{flags}' is not a number in 0-255"))?;
    let tag = match tag.to_ascii_lowercase().as_str() {
        "issue" => CaaTag::Issue,
        "issuewild" => CaaTag::IssueWild,
        "iodef" => CaaTag::Iodef,
        _ => return Err(format!("tag '{tag}' is not one of issue, issuewild, iodef")),
    };
    let value = value
        .trim()
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or_else(|| "value must be enclosed in double quotes".to_owned())?;
    if value.contains('"') || value.chars().any(char::is_control) {
        return Err("value must not contain quotes or control characters".into());
    }
    if tag == CaaTag::Iodef
        && !(value.starts_with("mailto:")
            || value.starts_with("https://")
            || value.starts_with("http://"))
    {
        return Err("iodef value must be a mailto:, http:// or https:// URL".into());
    }
    Ok(RecordData::Caa {
        flags,
        tag,
        value: value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_types_are_case_insensitive_and_unknown_ones_list_the_supported() {
        assert_eq!("aaaa".parse::<RecordType>(), Ok(RecordType::Aaaa));
        let err = "SPF".parse::<RecordType>().unwrap_err();
        assert!(
            err.contains("A, AAAA, CNAME, MX, TXT, SRV, NS, PTR, CAA"),
            "{err}"
        );
    }

    #[test]
    fn targets_are_normalised() {
        let srv =
            RecordData::parse(RecordType::Srv, "10  5060 SIP.Example.Test.", Some(5)).unwrap();
        assert_eq!(srv.target(), "10 5060 sip.example.test");
        assert_eq!(srv.priority(), Some(5));
        let caa = RecordData::parse(RecordType::Caa, "0 ISSUE \"letsencrypt.org\"", None).unwrap();
        assert_eq!(caa.target(), "0 issue \"letsencrypt.org\"");
        let aaaa = RecordData::parse(RecordType::Aaaa, "2001:DB8::0001", None).unwrap();
        assert_eq!(aaaa.target(), "2001:db8::1");
    }

    #[test]
    fn priority_is_required_for_mx_and_refused_elsewhere() {
        assert!(RecordData::parse(RecordType::Mx, "mail.example.test", None).is_err());
        assert!(RecordData::parse(RecordType::Mx, "mail.example.test", Some(70000)).is_err());
        assert!(RecordData::parse(RecordType::A, "192.0.2.1", Some(10)).is_err());
    }
}
