//! The `powerdns` backend: changes through the PowerDNS Authoritative HTTP API, then verified
//! by querying the zone's DNS `server` (and any `verify_servers`) until the answer shows the
//! change or the bound passes.
//!
//! The API changes whole RRsets (`PATCH /api/v1/servers/{server_id}/zones/{zone}` with
//! `changetype` `REPLACE` and every record, or `DELETE`) and has no prerequisites, so a change
//! is a read-modify-write held in order by dnsorch:
//! - The worker planned the change (`PlannedChange::rrsets`) from the RRset this backend read
//!   over the API (`GET …/zones/{zone}?rrset_name=…&rrset_type=…`) and what it makes of it.
//! - Under this zone's lock (one per zone and process), the RRset is read again right before
//!   the write. If it is no longer what the plan read, someone changed it meanwhile: nothing
//!   is written and the attempt fails transiently ("changed since it was read"; the next
//!   attempt reads and plans again), so a record added behind dnsorch's back survives.
//! - The change's fence is checked, then the PATCH writes the plan's new RRset: `REPLACE` with
//!   all its records and its TTL, or `DELETE` when nothing is left. A plan that changes
//!   nothing (a retry after a crash) writes nothing.
//!
//! Two dnsorch processes writing one zone are not serialised with each other by the lock; the
//! read just before the write narrows that window to the PATCH's round trip, which the API
//! cannot close (it has no conditional write).
//!
//! Records go as PowerDNS content, presentation form with absolute names (trailing dots) and
//! TXT as quoted strings ([`crate::domain::RecordData::presentation`]); records read back are
//! parsed by the same rules as DNS answers. Disabled records are not served, so they are not
//! part of the RRset read (a REPLACE drops them).
//!
//! Errors: HTTP 400 and 422 are permanent and carry PowerDNS's `error` text (a CNAME beside
//! other data, a record out of zone, content PowerDNS does not accept); 401 and 403 are a
//! wrong API key (permanent); 404 is a zone (or server id) PowerDNS does not have (permanent);
//! other 4xx are permanent; 5xx, refused connections and timeouts are transient. A change the
//! API accepted that the DNS server does not show within `verify_timeout_seconds` is
//! `Uncertain`: [`Provisioner::observe`] reads the RRset over the API to settle it. The API
//! key is sent as `X-API-Key` (a sensitive header) and is in no message.
//!
//! The server's version is logged once, when the backend first reaches it.

use chrono::Utc;
use hickory_proto::rr::{Name, Record};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Mutex, OnceCell};

use super::dns::{
    Expect, Verification, absolute, change_rdatas, dns_type, observed, parse_rdata, rdata,
    record_data_of,
};
use super::{Applied, Observed, PlannedChange, ProvisionError, Provisioner};
use crate::domain::plan::{describe_rrset, same_rrset};
use crate::domain::{LiveRrset, Operation, RecordType};
use crate::zones::PowerDnsZone;

/// The PowerDNS Authoritative HTTP API of one zone.
pub struct PowerDnsProvisioner {
    zone: Name,
    config: PowerDnsZone,
    client: reqwest::Client,
    /// `…/api/v1/servers/{server_id}`.
    server_url: Url,
    /// `…/api/v1/servers/{server_id}/zones/{zone}.`.
    zone_url: Url,
    /// Holds this zone's read-modify-writes one at a time.
    writing: Mutex<()>,
    /// The server's version, read (and logged) once.
    version: OnceCell<String>,
}

impl std::fmt::Debug for PowerDnsProvisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerDnsProvisioner")
            .field("zone", &self.zone)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// An RRset as the API gives it.
#[derive(Debug, Deserialize)]
struct ApiRrset {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    ttl: u32,
    records: Vec<ApiRecord>,
}

#[derive(Debug, Deserialize)]
struct ApiRecord {
    content: String,
    #[serde(default)]
    disabled: bool,
}

impl PowerDnsProvisioner {
    /// The backend for zone `zone` (no trailing dot).
    ///
    /// # Errors
    /// The zone name is not a DNS name, the API key cannot be a header, or the TLS
    /// configuration (for an `https://` API) cannot be built.
    pub fn new(zone: &str, config: PowerDnsZone) -> anyhow::Result<Self> {
        let zone = absolute(zone).map_err(|e| anyhow::anyhow!("zone name: {e}"))?;
        let mut key = HeaderValue::from_str(&config.api_key.text)
            .map_err(|_| anyhow::anyhow!("the API key is not a valid HTTP header value"))?;
        key.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("X-API-Key", key);
        let tls = crate::tls::client_config(None, "api_url")?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .default_headers(headers)
            .tls_backend_preconfigured(tls)
            .build()?;
        let mut server_url = Url::parse(&config.api_url)?;
        server_url
            .path_segments_mut()
            .map_err(|()| anyhow::anyhow!("api_url cannot have a path"))?
            .clear()
            .extend(["api", "v1", "servers", &config.server_id]);
        let mut zone_url = server_url.clone();
        zone_url
            .path_segments_mut()
            .map_err(|()| anyhow::anyhow!("api_url cannot have a path"))?
            .extend(["zones", &zone.to_ascii()]);
        Ok(Self {
            zone,
            config,
            client,
            server_url,
            zone_url,
            writing: Mutex::new(()),
            version: OnceCell::new(),
        })
    }

    /// One API call: the answer when it is a success, else the classified error.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<serde_json::Value>,
        what: &str,
    ) -> Result<reqwest::Response, ProvisionError> {
        let mut request = self.client.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            ProvisionError::Transient(format!(
                "the PowerDNS API at {} did not answer the {what}: {}",
                self.config.api_url,
                crate::intake::forward::describe(e)
            ))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        Err(self.refused(status, &text, what))
    }

    /// The error for an answer with a status that is not a success.
    fn refused(&self, status: StatusCode, body: &str, what: &str) -> ProvisionError {
        let message = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| body.trim().chars().take(300).collect());
        let code = status.as_u16();
        let api = &self.config.api_url;
        match status {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => ProvisionError::Rejected(
                format!("PowerDNS refused the {what} (HTTP {code}): {message}"),
            ),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ProvisionError::Rejected(format!(
                "PowerDNS at {api} refused the API key (HTTP {code}) for the {what}: check the zone's api_key_env or api_key_file against pdns.conf's api-key"
            )),
            StatusCode::NOT_FOUND => ProvisionError::Rejected(format!(
                "PowerDNS at {api} has no zone {} on server {} (HTTP 404 for the {what}): create the zone there, or check server_id",
                self.zone, self.config.server_id
            )),
            s if s.is_server_error() => ProvisionError::Transient(format!(
                "PowerDNS answered HTTP {code} to the {what}: {message}"
            )),
            _ => ProvisionError::Rejected(format!(
                "PowerDNS answered HTTP {code} to the {what}: {message}"
            )),
        }
    }

    /// Reads the server's version once and logs it; a failure is tried again next time.
    async fn log_version(&self) {
        let read = self
            .version
            .get_or_try_init(|| async {
                let response = self
                    .call(Method::GET, self.server_url.clone(), None, "server read")
                    .await?;
                let server: serde_json::Value = response.json().await.map_err(|e| {
                    ProvisionError::Transient(format!("the server read's answer: {e}"))
                })?;
                let version = server["version"].as_str().unwrap_or("unknown").to_owned();
                tracing::info!(
                    zone = %self.zone,
                    api_url = %self.config.api_url,
                    version = %version,
                    "PowerDNS Authoritative server"
                );
                Ok::<_, ProvisionError>(version)
            })
            .await;
        if let Err(e) = read {
            tracing::debug!(zone = %self.zone, error = %e, "could not read the PowerDNS version");
        }
    }

    /// The owner name of `domain`, which must be in this zone.
    fn name_of(&self, domain: &str) -> Result<Name, ProvisionError> {
        let name = absolute(&domain.to_ascii_lowercase()).map_err(ProvisionError::Rejected)?;
        if !self.zone.zone_of(&name) {
            return Err(ProvisionError::Rejected(format!(
                "{name} is not in zone {}",
                self.zone
            )));
        }
        Ok(name)
    }

    /// The RRset `name`/`record_type` as the API holds it (absent: no records); disabled
    /// records are left out.
    async fn read(
        &self,
        name: &Name,
        record_type: RecordType,
    ) -> Result<LiveRrset, ProvisionError> {
        self.log_version().await;
        let mut url = self.zone_url.clone();
        url.query_pairs_mut()
            .append_pair("rrset_name", &name.to_ascii())
            .append_pair("rrset_type", record_type.as_str());
        let response = self.call(Method::GET, url, None, "RRset read").await?;
        #[derive(Deserialize)]
        struct ZoneAnswer {
            #[serde(default)]
            rrsets: Vec<ApiRrset>,
        }
        let zone: ZoneAnswer = response.json().await.map_err(|e| {
            ProvisionError::Transient(format!("the RRset read's answer did not parse: {e}"))
        })?;
        // The filter is the server's; older servers ignore it and give every RRset.
        let Some(rrset) = zone.rrsets.into_iter().find(|r| {
            r.rtype.eq_ignore_ascii_case(record_type.as_str())
                && absolute(&r.name).is_ok_and(|n| n == *name)
        }) else {
            return Ok(LiveRrset::absent());
        };
        let records = rrset
            .records
            .iter()
            .filter(|r| !r.disabled)
            .map(|r| record_data_of(record_type, &parse_rdata(record_type, &r.content)?))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LiveRrset {
            ttl: if records.is_empty() { 0 } else { rrset.ttl },
            records,
        })
    }

    /// Writes `after` as the whole RRset: REPLACE with its records, or DELETE when it has none.
    async fn write(
        &self,
        name: &Name,
        record_type: RecordType,
        after: &LiveRrset,
    ) -> Result<String, ProvisionError> {
        let owner = name.to_ascii();
        let rrset = if after.records.is_empty() {
            json!({"name": owner, "type": record_type.as_str(), "changetype": "DELETE"})
        } else {
            let records: Vec<serde_json::Value> = after
                .records
                .iter()
                .map(|r| json!({"content": r.presentation(), "disabled": false}))
                .collect();
            json!({"name": owner, "type": record_type.as_str(), "ttl": after.ttl,
                   "changetype": "REPLACE", "records": records})
        };
        self.call(
            Method::PATCH,
            self.zone_url.clone(),
            Some(json!({ "rrsets": [rrset] })),
            "PATCH",
        )
        .await?;
        Ok(if after.records.is_empty() {
            format!("PATCH {}: DELETE {owner} {record_type}", self.zone)
        } else {
            format!(
                "PATCH {}: REPLACE {owner} {record_type} with {}",
                self.zone,
                describe_rrset(after)
            )
        })
    }
}

/// What verification waits for after `change` wrote `after`: a create's records with the
/// RRset's TTL, a replace's RRset exactly, a delete's records (or the RRset) gone.
fn expectation(change: &PlannedChange, after: &LiveRrset) -> Result<Expect, ProvisionError> {
    let rdatas = change_rdatas(change)?;
    Ok(match change.operation {
        Operation::Create => Expect::Present {
            rdatas,
            ttl: after.ttl,
        },
        Operation::Replace => Expect::Exactly {
            rdatas,
            ttl: after.ttl,
        },
        Operation::Delete | Operation::Adopt => Expect::Absent { rdatas },
    })
}

#[async_trait::async_trait]
impl Provisioner for PowerDnsProvisioner {
    fn kind(&self) -> &'static str {
        "powerdns"
    }

    async fn apply(&self, change: &PlannedChange) -> Result<Applied, ProvisionError> {
        if change.operation == Operation::Adopt {
            return Err(ProvisionError::Rejected(
                "an adoption reads the RRset; it applies nothing".into(),
            ));
        }
        let name = self.name_of(&change.domain)?;
        let planned = change
            .rrsets
            .as_ref()
            .ok_or_else(|| ProvisionError::Rejected("the change was not planned".into()))?;
        let expect = expectation(change, &planned.after)?;
        let mut notes = Vec::new();
        {
            let _writing = self.writing.lock().await;
            let live = self.read(&name, change.record_type).await?;
            if !same_rrset(&live, &planned.before) {
                return Err(ProvisionError::Transient(format!(
                    "the {} RRset at {name} changed since it was read (planned against {}, now {}); it is read and planned again",
                    change.record_type,
                    describe_rrset(&planned.before),
                    describe_rrset(&live)
                )));
            }
            if same_rrset(&live, &planned.after) {
                notes.push(format!(
                    "{name} {} is already {}; nothing to write",
                    change.record_type,
                    describe_rrset(&live)
                ));
            } else {
                change.fence.check()?;
                notes.push(
                    self.write(&name, change.record_type, &planned.after)
                        .await?,
                );
            }
        }
        let applied_at = Utc::now();
        let verified_at = Verification {
            primary: &self.config.server,
            others: &self.config.verify_servers,
            bound: self.config.verify_timeout,
            timeout: self.config.timeout,
        }
        .run(&name, dns_type(change.record_type), &expect, &mut notes)
        .await?;
        Ok(Applied {
            applied_at,
            verified_at: Some(verified_at),
            notes,
        })
    }

    async fn read_rrset(
        &self,
        domain: &str,
        record_type: RecordType,
    ) -> Result<Option<LiveRrset>, ProvisionError> {
        let name = self.name_of(domain)?;
        self.read(&name, record_type).await.map(Some)
    }

    async fn observe(&self, change: &PlannedChange) -> Result<Observed, ProvisionError> {
        let name = self.name_of(&change.domain)?;
        let live = self.read(&name, change.record_type).await?;
        let records = live
            .records
            .iter()
            .map(|r| Ok(Record::from_rdata(name.clone(), live.ttl, rdata(r)?)))
            .collect::<Result<Vec<_>, ProvisionError>>()?;
        observed(
            &format!("the PowerDNS API at {}", self.config.api_url),
            change,
            &name,
            &records,
        )
    }
}
