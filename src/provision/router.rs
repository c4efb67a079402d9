//! Routes each change to the backend of its zone: the longest configured zone that contains
//! the owner name (see [`crate::zones`]). With no zones configured, everything goes to the
//! simulated backend.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Applied, PlannedChange, ProvisionError, Provisioner, Rfc2136Provisioner};
use crate::domain::{LiveRrset, RecordType};
use crate::zones::{Backend, Zones};

/// One backend per configured zone, or the simulated backend for all.
pub struct ZoneRouter {
    zones: Zones,
    backends: BTreeMap<String, Arc<dyn Provisioner>>,
    /// Serves every name when no zone is configured.
    fallback: Arc<dyn Provisioner>,
}

impl ZoneRouter {
    /// A backend for each zone of `zones`; `simulated` serves `backend = "simulated"` zones,
    /// and every name when there are no zones.
    ///
    /// # Errors
    /// A zone's settings cannot make a backend (a bad key name, say).
    pub fn new(zones: &Zones, simulated: Arc<dyn Provisioner>) -> anyhow::Result<Self> {
        let mut backends = BTreeMap::new();
        let secrets = zones.secrets();
        for zone in zones.iter() {
            let backend: Arc<dyn Provisioner> = match &zone.backend {
                Backend::Simulated => simulated.clone(),
                Backend::Rfc2136(config) => {
                    Arc::new(Rfc2136Provisioner::new(&zone.name, config.clone())?)
                }
                Backend::Ansible(config) => Arc::new(super::AnsibleProvisioner::new(
                    &zone.name,
                    config.clone(),
                    secrets.clone(),
                )),
            };
            backends.insert(zone.name.clone(), backend);
        }
        Ok(Self {
            zones: zones.clone(),
            backends,
            fallback: simulated,
        })
    }

    fn route(&self, domain: &str) -> Option<&Arc<dyn Provisioner>> {
        if self.zones.is_empty() {
            return Some(&self.fallback);
        }
        let zone = self.zones.route(domain)?;
        self.backends.get(&zone.name)
    }
}

#[async_trait::async_trait]
impl Provisioner for ZoneRouter {
    fn kind(&self) -> &'static str {
        "zones"
    }

    fn kind_for(&self, domain: &str) -> &'static str {
        self.route(domain).map_or("none", |backend| backend.kind())
    }

    async fn apply(&self, change: &PlannedChange) -> Result<Applied, ProvisionError> {
        match self.route(&change.domain) {
            Some(backend) => backend.apply(change).await,
            None => Err(ProvisionError::Rejected(format!(
                "{} is in no configured zone",
                change.domain
            ))),
        }
    }

    async fn read_rrset(
        &self,
        domain: &str,
        record_type: RecordType,
    ) -> Result<Option<LiveRrset>, ProvisionError> {
        match self.route(domain) {
            Some(backend) => backend.read_rrset(domain, record_type).await,
            None => Err(ProvisionError::Rejected(format!(
                "{domain} is in no configured zone"
            ))),
        }
    }
}
