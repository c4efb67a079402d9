//! external-dns's webhook wire format and its meaning for dnsorch (pure).
//!
//! An Endpoint is an RRset: `dnsName` (no trailing dot), `recordType`, `targets` (the records
//! in zone-file form, MX and SRV priority included; TXT in double quotes, as external-dns
//! sends them), `recordTTL` (0: unset). A Changes object holds `create`, `updateOld` /
//! `updateNew` pairs and `delete`, spelt so by external-dns 0.17 and later and `Create`,
//! `UpdateOld`, `UpdateNew`, `Delete` before; both are accepted, and `null` lists are empty.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::request::DEFAULT_TTL;
use crate::domain::zoneform;
use crate::domain::{
    ChangeBody, ConfigBody, Fqdn, NameRules, Operation, RecordData, RecordType, ResourceBody,
};

/// The media type of every answer (external-dns compares it as a string).
pub const MEDIA_TYPE: &str = "application/external.dns.webhook+json;version=1";

/// One RRset as external-dns sees it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub dns_name: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub targets: Vec<String>,
    pub record_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub set_identifier: String,
    /// Seconds; 0 means unset.
    #[serde(default, rename = "recordTTL", skip_serializing_if = "is_zero")]
    pub record_ttl: i64,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub provider_specific: Vec<Property>,
}

/// A `providerSpecific` entry (kept, never interpreted).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Property {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

fn is_zero(ttl: &i64) -> bool {
    *ttl == 0
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `POST /records`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Changes {
    #[serde(default, alias = "Create", deserialize_with = "null_as_empty")]
    pub create: Vec<Endpoint>,
    #[serde(
        default,
        rename = "updateOld",
        alias = "UpdateOld",
        deserialize_with = "null_as_empty"
    )]
    pub update_old: Vec<Endpoint>,
    #[serde(
        default,
        rename = "updateNew",
        alias = "UpdateNew",
        deserialize_with = "null_as_empty"
    )]
    pub update_new: Vec<Endpoint>,
    #[serde(default, alias = "Delete", deserialize_with = "null_as_empty")]
    pub delete: Vec<Endpoint>,
}

impl Changes {
    /// The changes as dnsorch operations, in the order external-dns means them: deletes, the
    /// update pairs (each a replace of the RRset with the new endpoint), then creates.
    pub fn operations(&self) -> Vec<(Operation, &Endpoint)> {
        let deletes = self.delete.iter().map(|e| (Operation::Delete, e));
        let updates = self.update_new.iter().map(|e| (Operation::Replace, e));
        let creates = self.create.iter().map(|e| (Operation::Create, e));
        deletes.chain(updates).chain(creates).collect()
    }
}

/// `GET /`: the names external-dns may ask dnsorch to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainFilter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

/// The record type of an endpoint, if dnsorch manages it.
pub fn record_type(endpoint: &Endpoint) -> Option<RecordType> {
    endpoint.record_type.parse().ok()
}

/// The body of the change `operation` of `endpoint` (its type is one dnsorch manages): the
/// records are the targets in zone-file form, the TTL the endpoint's when set.
pub fn change_body(endpoint: &Endpoint) -> ChangeBody {
    ChangeBody {
        context: None,
        resource: Some(ResourceBody {
            record_type: Some(endpoint.record_type.clone()),
            domain: Some(endpoint.dns_name.clone()),
            target: None,
            targets: Some(endpoint.targets.clone()),
            comment: Some("external-dns".into()),
            config: Some(ConfigBody {
                ttl: (endpoint.record_ttl > 0).then_some(endpoint.record_ttl),
                priority: None,
                extra_config: None,
            }),
        }),
        expect: None,
    }
}

/// A record as `GET /records` shows it: zone-file form, TXT in double quotes (presentation).
pub fn target_of(record: &RecordData) -> String {
    match record {
        RecordData::Txt(_) => record.presentation(),
        _ => zoneform::element(record),
    }
}

/// `POST /adjustendpoints`: each endpoint as `GET /records` will show it once applied (the
/// name canonical, the TTL defaulted, each target in its canonical form); types dnsorch does
/// not manage are dropped. A target that does not parse is left as it is (the change will be
/// refused, and stored as such, when it is applied).
pub fn adjust(endpoints: Vec<Endpoint>) -> Vec<Endpoint> {
    let rules = NameRules {
        underscore: true,
        wildcard: true,
    };
    endpoints
        .into_iter()
        .filter_map(|mut endpoint| {
            let record_type = record_type(&endpoint)?;
            endpoint.record_type = record_type.as_str().to_owned();
            if let Ok(name) = Fqdn::parse(&endpoint.dns_name, rules) {
                endpoint.dns_name = name.to_string();
            }
            if endpoint.record_ttl <= 0 {
                endpoint.record_ttl = i64::from(DEFAULT_TTL);
            }
            endpoint.targets = endpoint
                .targets
                .iter()
                .map(|t| match zoneform::parse(record_type, t) {
                    Ok(record) => target_of(&record),
                    Err(_) => t.clone(),
                })
                .collect();
            Some(endpoint)
        })
        .collect()
}

/// An RRset as an endpoint.
pub fn endpoint_of(
    domain: &str,
    record_type: RecordType,
    ttl: u32,
    records: &[RecordData],
) -> Endpoint {
    Endpoint {
        dns_name: domain.to_owned(),
        targets: records.iter().map(target_of).collect(),
        record_type: record_type.as_str().to_owned(),
        set_identifier: String::new(),
        record_ttl: i64::from(ttl),
        labels: BTreeMap::new(),
        provider_specific: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_of_the_changes_keys_and_null_lists_are_read() {
        let new: Changes = serde_json::from_str(
            r#"{"create": [{"dnsName": "a.example.test", "targets": ["192.0.2.1"], "recordType": "A"}],
                "updateOld": null, "updateNew": [], "delete": null}"#,
        )
        .unwrap();
        let old: Changes = serde_json::from_str(
            r#"{"Create": null, "UpdateOld": [{"dnsName": "b.example.test", "targets": ["192.0.2.1"], "recordType": "A", "recordTTL": 60}],
                "UpdateNew": [{"dnsName": "b.example.test", "targets": ["192.0.2.2"], "recordType": "A", "recordTTL": 60, "labels": null}],
                "Delete": [{"dnsName": "c.example.test", "targets": null, "recordType": "TXT"}]}"#,
        )
        .unwrap();
        assert_eq!(new.create.len(), 1);
        let ops: Vec<(Operation, &str)> = old
            .operations()
            .into_iter()
            .map(|(op, e)| (op, e.dns_name.as_str()))
            .collect();
        assert_eq!(
            ops,
            [
                (Operation::Delete, "c.example.test"),
                (Operation::Replace, "b.example.test")
            ]
        );
    }

    #[test]
    fn adjusting_canonicalises_names_ttls_and_targets_and_drops_unmanaged_types() {
        let endpoints: Vec<Endpoint> = serde_json::from_str(
            r#"[{"dnsName": "WWW.Example.Test.", "targets": ["\"heritage=external-dns,external-dns/owner=k8s\""], "recordType": "TXT"},
                {"dnsName": "m.example.test", "targets": ["10 Mail.Example.Test."], "recordType": "MX", "recordTTL": 60},
                {"dnsName": "n.example.test", "targets": ["x"], "recordType": "NAPTR"}]"#,
        )
        .unwrap();

        let adjusted = adjust(endpoints);

        assert_eq!(adjusted.len(), 2);
        assert_eq!(adjusted[0].dns_name, "www.example.test");
        assert_eq!(adjusted[0].record_ttl, 300);
        assert_eq!(
            adjusted[0].targets,
            ["\"heritage=external-dns,external-dns/owner=k8s\""]
        );
        assert_eq!(adjusted[1].targets, ["10 mail.example.test"]);
        assert_eq!(adjusted[1].record_ttl, 60);
    }
}
