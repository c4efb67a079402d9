//! API tokens: ids, secrets and their digests, policies, allowed subnets, and the validated
//! description of a new token.
//!
//! A secret is `dnsorch_` followed by 48 hex digits (192 random bits): the prefix lets secret
//! scanners recognise a leaked one. Only its SHA-256 digest is stored. Policies are validated
//! here and stored with the token; what they allow is decided where a change is authorized.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::fqdn::{Fqdn, NameRules};
use super::record::RecordType;
use super::validation::{ValidationError, check_text};

/// The prefix of every secret.
pub const SECRET_PREFIX: &str = "dnsorch_";
/// Random bytes in a secret.
const SECRET_BYTES: usize = 24;
const MAX_ACCOUNT_CHARS: usize = 128;
const MAX_NAME_CHARS: usize = 128;
const MAX_POLICIES: usize = 256;
const MAX_SUBNETS: usize = 64;

/// The identity of a token (`api_tokens.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, format = Uuid)]
pub struct TokenId(pub Uuid);

impl TokenId {
    /// A new, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for TokenId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TokenId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// A token's secret, as given to its holder once. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A new random secret.
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{SECRET_PREFIX}{}", hex(&bytes)))
    }

    /// A secret presented by a client (not checked here: unknown ones simply match nothing).
    pub fn presented(text: &str) -> Self {
        Self(text.to_owned())
    }

    /// The text to hand to the holder.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The stored form: the SHA-256 digest in hex.
    pub fn digest(&self) -> String {
        hex(&self.digest_bytes())
    }

    /// The SHA-256 digest itself (a cache key that costs no allocation).
    pub fn digest_bytes(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(2 * bytes.len());
    for b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    text
}

/// What a policy lets a token do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Read,
    Create,
    Delete,
}

impl FromStr for Permission {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" => Ok(Self::Read),
            "create" => Ok(Self::Create),
            "delete" => Ok(Self::Delete),
            _ => Err(format!(
                "'{s}' is not a permission (read, create or delete)"
            )),
        }
    }
}

/// A policy as given: a name suffix, optionally record types, and permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// The name this policy covers, with everything under it on label boundaries.
    #[schema(example = "example.com")]
    pub suffix: String,
    /// Record types it covers; absent or empty: every type.
    #[serde(default)]
    #[schema(example = json!(["TXT"]))]
    pub types: Vec<String>,
    /// `read`, `create`, `delete`.
    #[schema(example = json!(["read", "create", "delete"]))]
    pub permissions: Vec<String>,
}

impl PolicyBody {
    /// Splits the command line's form `SUFFIX[:TYPE,TYPE…]=PERM,PERM…`; `None` without `=`.
    pub fn from_flag(text: &str) -> Option<Self> {
        let (scope, permissions) = text.split_once('=')?;
        let (suffix, types) = scope.split_once(':').unwrap_or((scope, ""));
        let list = |s: &str| -> Vec<String> {
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        };
        Some(Self {
            suffix: suffix.trim().to_owned(),
            types: list(types),
            permissions: list(permissions),
        })
    }
}

/// A validated policy, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Policy {
    /// The suffix, normalised like owner names (lower case, no trailing dot, A-labels).
    pub suffix: String,
    /// Empty: every type.
    #[schema(value_type = Vec<String>)]
    pub types: Vec<RecordType>,
    pub permissions: Vec<Permission>,
}

impl Policy {
    /// Validates a policy; problems are reported against `field` (e.g. `policies[2]`).
    ///
    /// # Errors
    /// Each bad part, named.
    pub fn parse(body: &PolicyBody, field: &str) -> Result<Self, ValidationError> {
        let mut errors = ValidationError::default();
        let rules = NameRules {
            underscore: true,
            wildcard: false,
        };
        let suffix = Fqdn::parse(&body.suffix, rules)
            .map_err(|e| errors.push(format!("{field}.suffix"), e))
            .ok();
        let mut types = Vec::new();
        for (i, t) in body.types.iter().enumerate() {
            match t.parse::<RecordType>() {
                Ok(t) if !types.contains(&t) => types.push(t),
                Ok(_) => errors.push(
                    format!("{field}.types[{i}]"),
                    format!("'{t}' is listed twice"),
                ),
                Err(e) => errors.push(format!("{field}.types[{i}]"), e),
            }
        }
        let mut permissions = Vec::new();
        for (i, p) in body.permissions.iter().enumerate() {
            match p.parse::<Permission>() {
                Ok(p) if !permissions.contains(&p) => permissions.push(p),
                Ok(_) => errors.push(
                    format!("{field}.permissions[{i}]"),
                    format!("'{p}' is listed twice"),
                ),
                Err(e) => errors.push(format!("{field}.permissions[{i}]"), e),
            }
        }
        if body.permissions.is_empty() {
            errors.push(
                format!("{field}.permissions"),
                "must list at least one permission",
            );
        }
        permissions.sort();
        match suffix {
            Some(suffix) if errors.fields.is_empty() => Ok(Self {
                suffix: suffix.to_string(),
                types,
                permissions,
            }),
            _ => Err(errors),
        }
    }

    /// Parses the command line's form `SUFFIX[:TYPE,TYPE…]=PERM,PERM…`.
    ///
    /// # Errors
    /// The text is not of that form, or a part is invalid.
    pub fn parse_flag(text: &str, field: &str) -> Result<Self, ValidationError> {
        let body = PolicyBody::from_flag(text).ok_or_else(|| {
            ValidationError::field(
                field,
                format!("'{text}' is not SUFFIX[:TYPE,TYPE...]=PERM,PERM..."),
            )
        })?;
        Self::parse(&body, field)
    }

    /// Whether two policies would compete for the same names and types: the same suffix and
    /// either both list no types or their lists share one.
    fn overlaps(&self, other: &Self) -> bool {
        self.suffix == other.suffix
            && (self.types.is_empty() && other.types.is_empty()
                || self.types.iter().any(|t| other.types.contains(t)))
    }

    /// `SUFFIX[:TYPES]=PERMS`, the command line's form.
    pub fn to_flag(&self) -> String {
        let types: Vec<&str> = self.types.iter().map(|t| t.as_str()).collect();
        let permissions: Vec<&str> = self
            .permissions
            .iter()
            .map(|p| match p {
                Permission::Read => "read",
                Permission::Create => "create",
                Permission::Delete => "delete",
            })
            .collect();
        if types.is_empty() {
            format!("{}={}", self.suffix, permissions.join(","))
        } else {
            format!(
                "{}:{}={}",
                self.suffix,
                types.join(","),
                permissions.join(",")
            )
        }
    }
}

/// A client network a token may be used from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "10.0.0.0/8")]
pub struct Subnet(#[serde(with = "subnet_text")] pub ipnet::IpNet);

impl Subnet {
    /// Whether `address` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, address: std::net::IpAddr) -> bool {
        self.0.contains(&address.to_canonical())
    }
}

impl FromStr for Subnet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        // A bare address is a network of one.
        let net = s.parse::<ipnet::IpNet>().or_else(|_| {
            s.parse::<std::net::IpAddr>()
                .map(ipnet::IpNet::from)
                .map_err(|_| {
                    format!("'{s}' is not a CIDR (10.0.0.0/8, 2001:db8::/32) or an address")
                })
        })?;
        Ok(Self(net.trunc()))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

mod subnet_text {
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(net: &ipnet::IpNet, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(net)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ipnet::IpNet, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses a list of subnets, naming each bad one as `field[i]`.
///
/// # Errors
/// Each bad entry.
pub fn parse_subnets(texts: &[String], field: &str) -> Result<Vec<Subnet>, ValidationError> {
    let mut errors = ValidationError::default();
    let mut subnets = Vec::new();
    if texts.len() > MAX_SUBNETS {
        errors.push(field, format!("at most {MAX_SUBNETS} subnets"));
    }
    for (i, text) in texts.iter().enumerate() {
        match text.parse::<Subnet>() {
            Ok(subnet) => subnets.push(subnet),
            Err(e) => errors.push(format!("{field}[{i}]"), e),
        }
    }
    if errors.fields.is_empty() {
        Ok(subnets)
    } else {
        Err(errors)
    }
}

/// What a new token is, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSpec {
    pub account_id: String,
    pub name: String,
    pub policies: Vec<Policy>,
    /// `None`: it does not expire.
    pub expires_in: Option<Duration>,
    pub allowed_subnets: Vec<Subnet>,
    pub admin: bool,
    pub metrics: bool,
    pub forwarder: bool,
}

/// A new token as given over the API or the command line, before validation.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// The account the token acts for (required, 1-128 characters).
    #[schema(example = "acct-42")]
    pub account: Option<String>,
    /// A name for people (required, 1-128 characters); recorded with every request.
    #[schema(example = "ci")]
    pub name: Option<String>,
    #[serde(default)]
    pub policies: Vec<PolicyBody>,
    /// Seconds until the token stops working; absent: never.
    #[schema(example = 86400)]
    pub expires_in_seconds: Option<f64>,
    /// Client networks the token may be used from; empty: any.
    #[serde(default)]
    #[schema(example = json!(["10.0.0.0/8"]))]
    pub allowed_subnets: Vec<String>,
    /// May manage tokens and act for any account.
    #[serde(default)]
    pub admin: bool,
    /// May read `/metrics`.
    #[serde(default)]
    pub metrics: bool,
    /// May forward Kafka messages for the trusted accounts (`KAFKA_TRUSTED_ACCOUNTS`).
    #[serde(default)]
    pub forwarder: bool,
}

impl TokenSpec {
    /// Validates a new token, naming every bad field.
    ///
    /// # Errors
    /// Each bad field; two policies with the same suffix and overlapping types.
    pub fn parse(body: TokenBody) -> Result<Self, ValidationError> {
        let mut errors = ValidationError::default();
        let account_id = check_text(body.account, "account", MAX_ACCOUNT_CHARS, &mut errors);
        let name = check_text(body.name, "name", MAX_NAME_CHARS, &mut errors);
        if body.policies.len() > MAX_POLICIES {
            errors.push("policies", format!("at most {MAX_POLICIES} policies"));
        }
        let mut policies: Vec<Policy> = Vec::new();
        for (i, policy) in body.policies.iter().enumerate() {
            let field = format!("policies[{i}]");
            match Policy::parse(policy, &field) {
                Ok(policy) => {
                    if let Some(j) = policies.iter().position(|p| p.overlaps(&policy)) {
                        errors.push(
                            field,
                            format!(
                                "has the same suffix as policies[{j}] and overlapping types; \
                                 one policy per suffix and type"
                            ),
                        );
                    }
                    policies.push(policy);
                }
                Err(e) => errors.fields.extend(e.fields),
            }
        }
        let expires_in =
            body.expires_in_seconds
                .and_then(|s| match Duration::try_from_secs_f64(s) {
                    Ok(d) if !d.is_zero() && s <= MAX_EXPIRY_SECONDS => Some(d),
                    _ => {
                        errors.push(
                            "expires_in_seconds",
                            format!(
                                "must be a positive number of seconds, at most {MAX_EXPIRY_SECONDS}"
                            ),
                        );
                        None
                    }
                });
        let allowed_subnets = parse_subnets(&body.allowed_subnets, "allowed_subnets")
            .map_err(|e| errors.fields.extend(e.fields))
            .unwrap_or_default();
        match (account_id, name) {
            (Some(account_id), Some(name)) if errors.fields.is_empty() => Ok(Self {
                account_id,
                name,
                policies,
                expires_in,
                allowed_subnets,
                admin: body.admin,
                metrics: body.metrics,
                forwarder: body.forwarder,
            }),
            _ => Err(errors),
        }
    }
}

/// The longest expiry: about 100 years, so that the database's time arithmetic never
/// overflows.
const MAX_EXPIRY_SECONDS: f64 = 100.0 * 366.0 * 86_400.0;

/// Parses a duration such as `90d`, `12h`, `1h30m`, `45s` or a plain number of seconds.
///
/// # Errors
/// Not a positive duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("'{text}' is not a duration (e.g. 3600, 45m, 12h, 90d, 1h30m)");
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(bad);
    }
    let mut total = 0f64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86_400.0,
            'w' => 604_800.0,
            _ => return Err(bad()),
        };
        let value: f64 = number.parse().map_err(|_| bad())?;
        total += value * unit;
        number.clear();
    }
    if !number.is_empty() {
        return Err(bad());
    }
    Duration::try_from_secs_f64(total)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_has_the_prefix_and_192_random_bits_and_its_digest_is_sha256_hex() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert!(a.expose().starts_with("dnsorch_"));
        assert_eq!(a.expose().len(), "dnsorch_".len() + 48);
        assert_ne!(a, b);
        assert_eq!(a.digest().len(), 64);
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn policy_flags_parse_with_and_without_types() {
        let p = Policy::parse_flag("_acme-challenge.Example.com.:txt=create", "--policy").unwrap();
        assert_eq!(p.suffix, "_acme-challenge.example.com");
        assert_eq!(p.types, [RecordType::Txt]);
        assert_eq!(p.permissions, [Permission::Create]);
        let p = Policy::parse_flag("example.com=read,create,delete", "--policy").unwrap();
        assert!(p.types.is_empty());
        assert_eq!(p.to_flag(), "example.com=read,create,delete");
        for bad in [
            "example.com",
            "example.com=fly",
            "exa mple.com=read",
            "example.com:XX=read",
            "example.com=",
        ] {
            assert!(Policy::parse_flag(bad, "--policy").is_err(), "{bad}");
        }
    }

    #[test]
    fn overlapping_policies_are_refused_and_a_typed_one_beside_a_broad_one_is_not() {
        let body = |policies: &[(&str, &[&str])]| TokenBody {
            account: Some("a".into()),
            name: Some("n".into()),
            policies: policies
                .iter()
                .map(|(suffix, types)| PolicyBody {
                    suffix: (*suffix).into(),
                    types: types.iter().map(|t| (*t).into()).collect(),
                    permissions: vec!["read".into()],
                })
                .collect(),
            ..TokenBody::default()
        };
        assert!(TokenSpec::parse(body(&[("example.com", &[]), ("example.com", &["TXT"])])).is_ok());
        let err = TokenSpec::parse(body(&[
            ("example.com", &["A", "TXT"]),
            ("Example.com.", &["txt"]),
        ]))
        .unwrap_err();
        assert_eq!(err.fields[0].field, "policies[1]");
        assert!(TokenSpec::parse(body(&[("example.com", &[]), ("example.com", &[])])).is_err());
    }

    #[test]
    fn durations_take_units_and_plain_seconds() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("0.5s").unwrap(), Duration::from_millis(500));
        for bad in ["0", "-5", "5x", "h", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subnets_are_cidrs_or_addresses_and_mapped_addresses_match_ipv4() {
        let net: Subnet = "10.1.2.3/8".parse().unwrap();
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains("10.200.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let one: Subnet = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!("10.0.0.0/33".parse::<Subnet>().is_err());
    }
}
