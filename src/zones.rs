//! Zone routing: which backend is authoritative for a name, read from a TOML file.
//!
//! The file (`DNSORCH_CONFIG`, else `dnsorch.toml` in the working directory when present)
//! has one `[zones."<name>"]` table per zone, naming its `backend` and that backend's
//! settings; `dnsorch.example.toml` documents every key. At intake the longest zone that
//! contains a name wins, and the request records that zone and its backend (workers apply it
//! there: see `provision::ZoneRouter`). With no file (or no zones) every name goes to the
//! simulated backend, as in the original design, which `serve`, `worker` and direct-mode
//! `consume` accept only with `ALLOW_SIMULATED=true`; with zones, a name in none of them is
//! refused at intake.
//!
//! Unknown keys and missing secrets stop the process at start, naming the key. Secrets (TSIG
//! keys, `secret_vars`, PowerDNS API keys) are read from environment variables or files named in the file, are
//! never part of it, and never appear in `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use serde::Deserialize;

/// The file read when `DNSORCH_CONFIG` is unset, if it exists.
pub const DEFAULT_FILE: &str = "dnsorch.toml";

/// The configured zones, longest name first.
#[derive(Debug, Clone, Default)]
pub struct Zones {
    zones: Vec<Zone>,
}

/// One zone and its backend.
#[derive(Debug, Clone)]
pub struct Zone {
    /// Lower case, no trailing dot.
    pub name: String,
    pub backend: Backend,
}

/// A zone's backend and its settings.
#[derive(Debug, Clone)]
pub enum Backend {
    Simulated,
    Rfc2136(Rfc2136Zone),
    Ansible(AnsibleZone),
    PowerDns(PowerDnsZone),
}

impl Backend {
    /// The backend's name as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Simulated => "simulated",
            Self::Rfc2136(_) => "rfc2136",
            Self::Ansible(_) => "ansible",
            Self::PowerDns(_) => "powerdns",
        }
    }
}

/// Settings of an `rfc2136` zone.
#[derive(Debug, Clone)]
pub struct Rfc2136Zone {
    /// The primary, `host:port`, where updates go and verification starts.
    pub server: String,
    pub key: TsigKey,
    /// Other servers to query after an update; their results are logged, never fatal.
    pub verify_servers: Vec<String>,
    /// The bound on one exchange with a server.
    pub timeout: Duration,
    /// The bound on seeing a change at a server.
    pub verify_timeout: Duration,
}

/// Settings of a `powerdns` zone: changes go through the PowerDNS Authoritative HTTP API.
#[derive(Debug, Clone)]
pub struct PowerDnsZone {
    /// The API's base URL, `http://host:port` (no trailing slash, no path).
    pub api_url: String,
    /// The server id in the API's paths (`localhost` for PowerDNS Authoritative).
    pub server_id: String,
    /// The `X-API-Key`; `Debug` does not print it.
    pub api_key: Secret,
    /// The DNS server, `host:port`, where changes are verified by query.
    pub server: String,
    /// Other servers to query after a change; their results are logged, never fatal.
    pub verify_servers: Vec<String>,
    /// The bound on one API call or DNS query.
    pub timeout: Duration,
    /// The bound on seeing a change at `server`.
    pub verify_timeout: Duration,
}

/// A TSIG key. The secret is not printed by `Debug`.
#[derive(Clone)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: TsigAlgorithm,
    pub secret: Secret,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The TSIG algorithms dnsorch signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TsigAlgorithm {
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    #[serde(rename = "hmac-sha384")]
    HmacSha384,
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

/// Secret bytes, with the text form they were given in (for redaction).
#[derive(Clone)]
pub struct Secret {
    pub bytes: Vec<u8>,
    pub text: String,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Settings of an `ansible` zone.
#[derive(Debug, Clone)]
pub struct AnsibleZone {
    pub playbook: PathBuf,
    /// The `ansible-playbook` program.
    pub program: PathBuf,
    /// Killed (with every process it started) after this long.
    pub timeout: Duration,
    /// Extra variables for every run of this zone (the request's fields are added).
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// Variables whose values are secrets: passed to the playbook, redacted from its output.
    pub secret_vars: BTreeMap<String, Secret>,
    /// A server to verify the change at by DNS query; without one the change is logged as
    /// not verified.
    pub verify_server: Option<String>,
    pub verify_timeout: Duration,
}

impl Zones {
    /// Reads the zones file named by `path`, else `dnsorch.toml` when present, else none.
    ///
    /// # Errors
    /// The named file is missing, is not valid TOML, has an unknown key or a bad value, or a
    /// secret it names is missing.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let (path, required) = match path {
            Some(path) => (path, true),
            None => (Path::new(DEFAULT_FILE), false),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot read DNSORCH_CONFIG file {}", path.display())
                });
            }
        };
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses the text of a zones file.
    ///
    /// # Errors
    /// As [`Zones::load`].
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: FileContents = toml::from_str(text)?;
        let mut zones = Vec::with_capacity(file.zones.len());
        for (name, entry) in file.zones {
            let normalized = name.trim_end_matches('.').to_ascii_lowercase();
            if normalized.is_empty() || !normalized.is_ascii() {
                bail!("zones.\"{name}\": a zone name must be a non-empty ASCII (A-label) name");
            }
            let backend = entry
                .resolve()
                .with_context(|| format!("zones.\"{name}\""))?;
            zones.push(Zone {
                name: normalized,
                backend,
            });
        }
        zones.sort_by(|a, b| b.name.len().cmp(&a.name.len()).then(a.name.cmp(&b.name)));
        Ok(Self { zones })
    }

    /// Whether no zone is configured (everything goes to the simulated backend).
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// The configured zones, longest name first.
    pub fn iter(&self) -> impl Iterator<Item = &Zone> {
        self.zones.iter()
    }

    /// The zone `domain` (lower case, no trailing dot) belongs to: the longest match.
    pub fn route(&self, domain: &str) -> Option<&Zone> {
        self.zones.iter().find(|zone| {
            domain == zone.name
                || domain
                    .strip_suffix(zone.name.as_str())
                    .is_some_and(|head| head.ends_with('.'))
        })
    }

    /// Every secret the zones hold, in the text form they were given (for redaction).
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        for zone in &self.zones {
            match &zone.backend {
                Backend::Simulated => {}
                Backend::Rfc2136(z) => secrets.push(z.key.secret.text.clone()),
                Backend::PowerDns(z) => secrets.push(z.api_key.text.clone()),
                Backend::Ansible(z) => {
                    secrets.extend(z.secret_vars.values().map(|s| s.text.clone()));
                }
            }
        }
        secrets
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContents {
    #[serde(default)]
    zones: BTreeMap<String, ZoneEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
enum ZoneEntry {
    Simulated(SimulatedEntry),
    Rfc2136(Rfc2136Entry),
    Ansible(AnsibleEntry),
    PowerDns(PowerDnsEntry),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimulatedEntry {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rfc2136Entry {
    server: String,
    key_name: String,
    #[serde(default = "default_algorithm")]
    key_algorithm: TsigAlgorithm,
    key_secret_env: Option<String>,
    key_secret_file: Option<PathBuf>,
    #[serde(default)]
    verify_servers: Vec<String>,
    #[serde(default = "default_timeout")]
    timeout_seconds: f64,
    #[serde(default = "default_verify_timeout")]
    verify_timeout_seconds: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnsibleEntry {
    playbook: PathBuf,
    #[serde(default = "default_program")]
    ansible_playbook: PathBuf,
    #[serde(default = "default_ansible_timeout")]
    timeout_seconds: f64,
    #[serde(default)]
    vars: toml::Table,
    /// Variable name → `env:NAME` or `file:PATH`.
    #[serde(default)]
    secret_vars: BTreeMap<String, String>,
    verify_server: Option<String>,
    #[serde(default = "default_verify_timeout")]
    verify_timeout_seconds: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PowerDnsEntry {
    api_url: String,
    #[serde(default = "default_server_id")]
    server_id: String,
    api_key_env: Option<String>,
    api_key_file: Option<PathBuf>,
    server: String,
    #[serde(default)]
    verify_servers: Vec<String>,
    #[serde(default = "default_timeout")]
    timeout_seconds: f64,
    #[serde(default = "default_verify_timeout")]
    verify_timeout_seconds: f64,
}

fn default_server_id() -> String {
    "localhost".into()
}
fn default_algorithm() -> TsigAlgorithm {
    TsigAlgorithm::HmacSha256
}
fn default_timeout() -> f64 {
    5.0
}
fn default_verify_timeout() -> f64 {
    10.0
}
fn default_ansible_timeout() -> f64 {
    300.0
}
fn default_program() -> PathBuf {
    PathBuf::from("ansible-playbook")
}

impl ZoneEntry {
    fn resolve(self) -> anyhow::Result<Backend> {
        Ok(match self {
            Self::Simulated(SimulatedEntry {}) => Backend::Simulated,
            Self::Rfc2136(e) => {
                let secret = env_or_file(
                    ("key_secret_env", e.key_secret_env.as_deref()),
                    ("key_secret_file", e.key_secret_file.as_deref()),
                )?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(secret.text.as_bytes())
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "key secret: not base64 (give the secret as tsig-keygen prints it)"
                        )
                    })?;
                Backend::Rfc2136(Rfc2136Zone {
                    server: with_port(&e.server).context("server")?,
                    key: TsigKey {
                        name: e.key_name,
                        algorithm: e.key_algorithm,
                        secret: Secret {
                            bytes,
                            text: secret.text,
                        },
                    },
                    verify_servers: verify_servers(&e.verify_servers)?,
                    timeout: seconds(e.timeout_seconds).context("timeout_seconds")?,
                    verify_timeout: seconds(e.verify_timeout_seconds)
                        .context("verify_timeout_seconds")?,
                })
            }
            Self::PowerDns(e) => Backend::PowerDns(PowerDnsZone {
                api_url: api_url(&e.api_url).context("api_url")?,
                server_id: match e.server_id.as_str() {
                    "" => bail!("server_id: must not be empty"),
                    id if id.contains('/') => bail!("server_id: '{id}' has a '/'"),
                    id => id.to_owned(),
                },
                api_key: env_or_file(
                    ("api_key_env", e.api_key_env.as_deref()),
                    ("api_key_file", e.api_key_file.as_deref()),
                )?,
                server: with_port(&e.server).context("server")?,
                verify_servers: verify_servers(&e.verify_servers)?,
                timeout: seconds(e.timeout_seconds).context("timeout_seconds")?,
                verify_timeout: seconds(e.verify_timeout_seconds)
                    .context("verify_timeout_seconds")?,
            }),
            Self::Ansible(e) => Backend::Ansible(AnsibleZone {
                playbook: e.playbook,
                program: e.ansible_playbook,
                timeout: seconds(e.timeout_seconds).context("timeout_seconds")?,
                vars: serde_json::to_value(e.vars)?
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                secret_vars: e
                    .secret_vars
                    .into_iter()
                    .map(|(name, source)| {
                        let secret =
                            read_secret(&source).with_context(|| format!("secret_vars.{name}"))?;
                        Ok((name, secret))
                    })
                    .collect::<anyhow::Result<_>>()?,
                verify_server: e
                    .verify_server
                    .as_deref()
                    .map(with_port)
                    .transpose()
                    .context("verify_server")?,
                verify_timeout: seconds(e.verify_timeout_seconds)
                    .context("verify_timeout_seconds")?,
            }),
        })
    }
}

/// The secret from exactly one of an environment variable and a file, each given as (its key in
/// the file, its value).
fn env_or_file(
    (env_key, env): (&str, Option<&str>),
    (file_key, file): (&str, Option<&Path>),
) -> anyhow::Result<Secret> {
    match (env, file) {
        (Some(var), None) => read_secret(&format!("env:{var}")).context(env_key.to_owned()),
        (None, Some(path)) => {
            read_secret(&format!("file:{}", path.display())).context(file_key.to_owned())
        }
        _ => bail!("set exactly one of {env_key} and {file_key}"),
    }
}

/// Each of `verify_servers` as `host:port`.
fn verify_servers(servers: &[String]) -> anyhow::Result<Vec<String>> {
    servers
        .iter()
        .map(|s| with_port(s))
        .collect::<anyhow::Result<_>>()
        .context("verify_servers")
}

/// An HTTP API's base URL: `http://` or `https://`, a host, no path, query or credentials; the
/// trailing slash dropped.
fn api_url(url: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("'{url}': {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("'{url}' is not an http:// or https:// URL");
    }
    if parsed.host().is_none()
        || parsed.path() != "/"
        || parsed.query().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        bail!("'{url}' must be scheme://host[:port] alone (the API's paths are added)");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Reads a secret from `env:NAME` or `file:PATH`; the value is trimmed.
fn read_secret(source: &str) -> anyhow::Result<Secret> {
    let text = if let Some(var) = source.strip_prefix("env:") {
        std::env::var(var).map_err(|_| anyhow::anyhow!("environment variable {var} is not set"))?
    } else if let Some(path) = source.strip_prefix("file:") {
        std::fs::read_to_string(path).with_context(|| format!("cannot read secret file {path}"))?
    } else {
        bail!("a secret source is env:NAME or file:PATH");
    };
    let text = text.trim().to_owned();
    if text.is_empty() {
        bail!("the secret is empty");
    }
    Ok(Secret {
        bytes: text.clone().into_bytes(),
        text,
    })
}

/// `host:port`, adding port 53 when absent.
fn with_port(server: &str) -> anyhow::Result<String> {
    if server.is_empty() {
        bail!("empty server address");
    }
    if server.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(server.to_owned());
    }
    if server.parse::<std::net::IpAddr>().is_ok() {
        return Ok(if server.contains(':') {
            format!("[{server}]:53")
        } else {
            format!("{server}:53")
        });
    }
    match server.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(server.to_owned())
        }
        Some(_) => bail!("'{server}' is not host:port"),
        None => Ok(format!("{server}:53")),
    }
}

fn seconds(value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow::anyhow!("must be a positive number of seconds, not {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_zone_wins_and_names_outside_every_zone_have_none() {
        let zones = Zones::parse(
            r#"
            [zones."example.test"]
            backend = "simulated"
            [zones."Sub.Example.Test."]
            backend = "simulated"
            "#,
        )
        .unwrap();
        assert_eq!(
            zones.route("a.sub.example.test").unwrap().name,
            "sub.example.test"
        );
        assert_eq!(
            zones.route("sub.example.test").unwrap().name,
            "sub.example.test"
        );
        assert_eq!(zones.route("b.example.test").unwrap().name, "example.test");
        assert!(zones.route("badexample.test").is_none());
        assert!(zones.route("example.org").is_none());
    }

    #[test]
    fn unknown_keys_and_missing_secrets_name_the_key() {
        let unknown = Zones::parse(
            "[zones.\"example.test\"]\nbackend = \"rfc2136\"\nserver = \"127.0.0.1\"\nkey_name = \"k\"\nkey_secret_env = \"X\"\nservre = 1\n",
        )
        .unwrap_err();
        assert!(format!("{unknown:#}").contains("servre"), "{unknown:#}");
        let missing = Zones::parse(
            "[zones.\"example.test\"]\nbackend = \"rfc2136\"\nserver = \"127.0.0.1\"\nkey_name = \"k\"\nkey_secret_env = \"DNSORCH_TEST_UNSET_SECRET\"\n",
        )
        .unwrap_err();
        let message = format!("{missing:#}");
        assert!(message.contains("key_secret_env"), "{message}");
        assert!(message.contains("DNSORCH_TEST_UNSET_SECRET"), "{message}");
        let backend = Zones::parse("[zones.\"example.test\"]\nbackend = \"bind\"\n").unwrap_err();
        assert!(format!("{backend:#}").contains("bind"), "{backend:#}");
    }

    #[test]
    fn the_shipped_example_parses() {
        let secret =
            std::env::temp_dir().join(format!("dnsorch-example-{}.secret", uuid::Uuid::new_v4()));
        std::fs::write(&secret, "c2VjcmV0IG9mIHRoZSBleGFtcGxl\n").unwrap();
        let text = include_str!("../dnsorch.example.toml")
            .replace(
                "key_secret_env = \"DNSORCH_TSIG_EXAMPLE_COM\"",
                &format!("key_secret_file = \"{}\"", secret.display()),
            )
            .replace(
                "api_key_env = \"DNSORCH_PDNS_API_KEY\"",
                &format!("api_key_file = \"{}\"", secret.display()),
            );
        let zones = Zones::parse(&text);
        std::fs::remove_file(&secret).unwrap();
        let zones = zones.unwrap();
        let kinds: Vec<&str> = zones.iter().map(|z| z.backend.kind()).collect();
        assert_eq!(kinds.len(), 4);
        assert_eq!(
            zones.route("www.example.info").unwrap().backend.kind(),
            "powerdns"
        );
        assert_eq!(
            zones.route("www.example.com").unwrap().backend.kind(),
            "rfc2136"
        );
        assert_eq!(
            zones.route("a.lab.example.net").unwrap().backend.kind(),
            "ansible"
        );
        assert_eq!(
            zones.route("x.sandbox.example.org").unwrap().backend.kind(),
            "simulated"
        );
        assert!(
            !format!("{zones:?}").contains("c2VjcmV0"),
            "Debug shows no secret"
        );
    }

    #[test]
    fn a_powerdns_zone_reads_its_key_from_a_file_and_never_prints_it() {
        let key = std::env::temp_dir().join(format!("dnsorch-pdns-{}.key", uuid::Uuid::new_v4()));
        std::fs::write(&key, " pdns-key-of-the-test\n").unwrap();
        let zones = Zones::parse(&format!(
            "[zones.\"example.test\"]\nbackend = \"powerdns\"\napi_url = \"http://127.0.0.1:8081/\"\napi_key_file = \"{}\"\nserver = \"127.0.0.1:5300\"\n",
            key.display()
        ));
        std::fs::remove_file(&key).unwrap();
        let zones = zones.unwrap();
        let Backend::PowerDns(zone) = &zones.iter().next().unwrap().backend else {
            panic!("not a powerdns zone");
        };
        assert_eq!(zone.api_url, "http://127.0.0.1:8081");
        assert_eq!(zone.server_id, "localhost");
        assert_eq!(zone.api_key.text, "pdns-key-of-the-test");
        assert_eq!(zones.secrets(), ["pdns-key-of-the-test"]);
        assert!(!format!("{zones:?}").contains("pdns-key-of"), "{zones:?}");

        let both = Zones::parse(
            "[zones.\"example.test\"]\nbackend = \"powerdns\"\napi_url = \"http://127.0.0.1:8081\"\napi_key_env = \"X\"\napi_key_file = \"/k\"\nserver = \"127.0.0.1\"\n",
        )
        .unwrap_err();
        assert!(
            format!("{both:#}").contains("api_key_env and api_key_file"),
            "{both:#}"
        );
        let path = Zones::parse(
            "[zones.\"example.test\"]\nbackend = \"powerdns\"\napi_url = \"http://127.0.0.1:8081/api/v1\"\napi_key_file = \"/k\"\nserver = \"127.0.0.1\"\n",
        )
        .unwrap_err();
        assert!(format!("{path:#}").contains("api_url"), "{path:#}");
    }

    #[test]
    fn servers_get_port_53_unless_given() {
        assert_eq!(with_port("127.0.0.1").unwrap(), "127.0.0.1:53");
        assert_eq!(with_port("127.0.0.1:5353").unwrap(), "127.0.0.1:5353");
        assert_eq!(with_port("::1").unwrap(), "[::1]:53");
        assert_eq!(
            with_port("ns1.example.test").unwrap(),
            "ns1.example.test:53"
        );
        assert!(with_port("ns1:port").is_err());
    }
}
