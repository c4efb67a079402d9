//! Picks each request's backend by the zone and backend intake recorded with it (see
//! [`crate::zones`]), never by its name again: a zones file changed since intake cannot send a
//! change to another backend. A request whose recorded zone this process does not configure,
//! or configures with another backend, is refused, saying so. Requests recorded with no zone
//! (intake had no zones: everything simulated) are served only where no zone is configured
//! either.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{PowerDnsProvisioner, ProvisionError, Provisioner, Rfc2136Provisioner};
use crate::zones::{Backend, Zones};

/// One backend per configured zone, or the simulated backend for requests recorded without a
/// zone.
pub struct ZoneRouter {
    /// Zone name → the backend's name as written in the zones file, and the backend.
    zones: BTreeMap<String, (&'static str, Arc<dyn Provisioner>)>,
    /// Serves requests recorded without a zone; `None` when zones are configured.
    unzoned: Option<Arc<dyn Provisioner>>,
}

impl ZoneRouter {
    /// A backend for each zone of `zones`; `simulated` serves `backend = "simulated"` zones,
    /// and, when there are no zones, the requests recorded without one. An rfc2136 zone packs
    /// at most `rfc2136_batch_bytes` bytes of records into one UPDATE message.
    ///
    /// # Errors
    /// A zone's settings cannot make a backend (a bad key name, an API key that cannot be an
    /// HTTP header, say).
    pub fn new(
        zones: &Zones,
        simulated: Arc<dyn Provisioner>,
        rfc2136_batch_bytes: usize,
    ) -> anyhow::Result<Self> {
        let mut configured = BTreeMap::new();
        let secrets = zones.secrets();
        for zone in zones.iter() {
            let backend: Arc<dyn Provisioner> = match &zone.backend {
                Backend::Simulated => simulated.clone(),
                Backend::Rfc2136(config) => Arc::new(Rfc2136Provisioner::new(
                    &zone.name,
                    config.clone(),
                    rfc2136_batch_bytes,
                )?),
                Backend::Ansible(config) => Arc::new(super::AnsibleProvisioner::new(
                    &zone.name,
                    config.clone(),
                    secrets.clone(),
                )),
                Backend::PowerDns(config) => {
                    Arc::new(PowerDnsProvisioner::new(&zone.name, config.clone())?)
                }
            };
            configured.insert(zone.name.clone(), (zone.backend.kind(), backend));
        }
        Ok(Self {
            unzoned: zones.is_empty().then_some(simulated),
            zones: configured,
        })
    }

    /// The backend for a request recorded at intake with `zone` and `backend`.
    ///
    /// # Errors
    /// [`ProvisionError::Rejected`] (not retried) naming what was recorded and what this
    /// process has: no backend recorded, a zone not configured here, a zone configured here
    /// with another backend, or a request recorded without a zone where zones are configured.
    pub fn backend(
        &self,
        zone: Option<&str>,
        backend: Option<&str>,
    ) -> Result<Arc<dyn Provisioner>, ProvisionError> {
        let Some(backend) = backend else {
            return Err(ProvisionError::Rejected(
                "no backend was recorded with this request at intake, and the worker does not guess one".into(),
            ));
        };
        let Some(zone) = zone else {
            return match &self.unzoned {
                Some(simulated) if backend == simulated.kind() => Ok(simulated.clone()),
                Some(_) => Err(ProvisionError::Rejected(format!(
                    "recorded with backend {backend} and no zone, but this process has only the simulated backend (no zones file, DNSORCH_CONFIG)"
                ))),
                None => Err(ProvisionError::Rejected(format!(
                    "recorded with backend {backend} and no zone (intake had no zones file), but this process's zones file (DNSORCH_CONFIG) configures zones: it applies only changes recorded for one of them"
                ))),
            };
        };
        match self.zones.get(zone) {
            Some((kind, provisioner)) if *kind == backend => Ok(provisioner.clone()),
            Some((kind, _)) => Err(ProvisionError::Rejected(format!(
                "recorded for zone {zone} with backend {backend}, but this process's zones file (DNSORCH_CONFIG) configures zone {zone} with backend {kind}"
            ))),
            None => Err(ProvisionError::Rejected(format!(
                "recorded for zone {zone} with backend {backend}, which this process's zones file (DNSORCH_CONFIG) does not configure"
            ))),
        }
    }
}
