//! How long to wait before the next attempt after a transient failure.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with jitter: `base * 2^(attempt-1)`, capped at `max`, then a random
/// point in its upper half, so retries of many requests that failed together spread out.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// The wait after attempt number `attempt` (1 for the first) failed.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let full = self.base.saturating_mul(1 << exponent).min(self.max);
        let half = full / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_and_is_capped() {
        let policy = RetryPolicy {
            base: Duration::from_secs(2),
            max: Duration::from_secs(10),
        };
        let first = policy.delay_after(1);
        assert!(
            first >= Duration::from_secs(1) && first <= Duration::from_secs(2),
            "{first:?}"
        );
        let third = policy.delay_after(3);
        assert!(
            third >= Duration::from_secs(4) && third <= Duration::from_secs(8),
            "{third:?}"
        );
        let late = policy.delay_after(40);
        assert!(
            late >= Duration::from_secs(5) && late <= Duration::from_secs(10),
            "{late:?}"
        );
    }
}
