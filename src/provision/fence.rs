//! The fence on backend writes: a worker may change DNS only while it is sure its claim holds.
//!
//! The lease token fences database writes (an outcome is written only under the claim's
//! token), but a DNS server knows nothing of leases. A worker whose renewals failed may still
//! be working while the reconciler has returned its request to PENDING and another worker has
//! applied a newer change to the name; an UPDATE sent then would undo that change. So every
//! backend checks the [`Fence`] right before it writes: it holds until the lease's length
//! minus a margin (`LEASE_MARGIN_SECONDS`) after the last renewal that succeeded (or the
//! claim), measured from before that renewal was asked for, so the server's clock can only
//! be later.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::ProvisionError;

/// Until when a claim may still write to DNS; shared by the worker (which extends it at each
/// renewal) and the backend (which checks it).
#[derive(Debug, Clone)]
pub struct Fence {
    /// The claim (or last renewal) was asked for at this instant…
    since: Arc<Mutex<Instant>>,
    /// …and writes may start until this long after it (the lease minus the margin).
    holds_for: Duration,
}

impl Fence {
    /// The fence of a claim asked for at `asked`, under a lease of `lease`, keeping `margin`
    /// in hand for a write in flight and the distance between clocks.
    pub fn new(asked: Instant, lease: Duration, margin: Duration) -> Self {
        Self {
            since: Arc::new(Mutex::new(asked)),
            holds_for: lease.saturating_sub(margin),
        }
    }

    /// A renewal asked for at `asked` succeeded.
    pub fn renewed(&self, asked: Instant) {
        let mut since = self.since.lock().unwrap_or_else(PoisonError::into_inner);
        *since = (*since).max(asked);
    }

    /// Whether a write may start now.
    pub fn holds(&self) -> bool {
        self.since().elapsed() < self.holds_for
    }

    /// Ok when a write may start now; otherwise a transient error saying nothing was sent.
    ///
    /// # Errors
    /// [`ProvisionError::Transient`]: the last successful renewal is too old.
    pub fn check(&self) -> Result<(), ProvisionError> {
        if self.holds() {
            return Ok(());
        }
        Err(ProvisionError::Transient(format!(
            "nothing was sent: the claim was last renewed {:.1}s ago, longer than the lease minus LEASE_MARGIN_SECONDS ({:.1}s), so another worker may hold the request now",
            self.since().elapsed().as_secs_f64(),
            self.holds_for.as_secs_f64()
        )))
    }

    fn since(&self) -> Instant {
        *self.since.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_closes_after_the_lease_minus_the_margin_and_a_renewal_reopens_it() {
        let lease = Duration::from_secs(60);
        let margin = Duration::from_secs(10);
        let asked = Instant::now();
        let fence = Fence::new(asked - Duration::from_secs(51), lease, margin);
        assert!(!fence.holds());
        let error = fence.check().unwrap_err();
        assert!(error.is_transient());
        assert!(error.to_string().contains("nothing was sent"), "{error}");

        fence.renewed(asked);
        assert!(fence.holds());
        assert!(fence.check().is_ok());

        // A renewal that was asked for earlier and answered late does not move it back.
        fence.renewed(asked - Duration::from_secs(55));
        assert!(fence.holds());
    }
}
