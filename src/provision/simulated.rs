//! The original design's simulated Ansible run: wait, then succeed (or fail at a set rate, or,
//! for fault-injection tests, panic on one name).

use std::time::Duration;

use chrono::Utc;
use rand::Rng;

use super::{Applied, Observed, PlannedChange, ProvisionError, Provisioner};
use crate::domain::{LiveRrset, RecordType};

/// Sleeps for `delay`, then succeeds, or fails transiently with probability `failure_rate`.
#[derive(Debug, Clone)]
pub struct SimulatedProvisioner {
    delay: Duration,
    failure_rate: f64,
    /// `SIMULATED_PANIC_NAME`: a request for this name panics (fault injection for tests).
    panic_name: Option<String>,
}

impl SimulatedProvisioner {
    /// A simulated backend. `failure_rate` is clamped to 0..=1.
    pub fn new(delay: Duration, failure_rate: f64) -> Self {
        Self {
            delay,
            failure_rate: failure_rate.clamp(0.0, 1.0),
            panic_name: None,
        }
    }

    /// The same backend, panicking on a request for `name` (tests of the supervision).
    pub fn panicking_on(mut self, name: Option<String>) -> Self {
        self.panic_name = name;
        self
    }
}

#[async_trait::async_trait]
impl Provisioner for SimulatedProvisioner {
    fn kind(&self) -> &'static str {
        "simulated"
    }

    async fn apply(&self, change: &PlannedChange) -> Result<Applied, ProvisionError> {
        if self.panic_name.as_deref() == Some(change.domain.as_str()) {
            panic!(
                "SIMULATED_PANIC_NAME: the simulated backend panics on {}",
                change.domain
            );
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if self.failure_rate > 0.0 && rand::rng().random_bool(self.failure_rate) {
            return Err(ProvisionError::Transient(
                "simulated Ansible job failed (SIMULATED_FAILURE_RATE)".into(),
            ));
        }
        // The simulation has nothing to query, so it counts as verified when applied.
        let now = Utc::now();
        Ok(Applied {
            applied_at: now,
            verified_at: Some(now),
            notes: vec![format!(
                "simulated Ansible job finished after {:.3}s",
                self.delay.as_secs_f64()
            )],
        })
    }

    /// One simulated job for the whole set: all of it, or (a simulated failure) none.
    async fn apply_set(&self, changes: &[PlannedChange]) -> Result<Applied, ProvisionError> {
        let panicking = changes
            .iter()
            .find(|c| self.panic_name.as_deref() == Some(c.domain.as_str()));
        match panicking.or(changes.first()) {
            Some(change) => self.apply(change).await,
            None => Err(ProvisionError::Rejected("an empty change set".into())),
        }
    }

    /// The simulation's live state is the ledger itself.
    async fn read_rrset(
        &self,
        _domain: &str,
        _record_type: RecordType,
    ) -> Result<Option<LiveRrset>, ProvisionError> {
        Ok(None)
    }

    async fn observe(&self, _change: &PlannedChange) -> Result<Observed, ProvisionError> {
        Err(ProvisionError::Rejected(
            "the simulated backend has no server to ask (and never leaves an outcome unknown)"
                .into(),
        ))
    }
}
