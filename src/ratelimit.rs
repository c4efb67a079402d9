//! Per-token rate limits: a token bucket for each API token, in this process.
//!
//! A bucket holds up to `burst` permits and refills at `per_second`; each change request
//! takes one. An empty bucket answers with how long until the next permit, which becomes the
//! 429's `Retry-After`. Buckets live in memory, per process (`RATE_LIMIT_PER_SECOND`,
//! `RATE_LIMIT_BURST`); full buckets are forgotten when the map grows past `max_entries`,
//! since a full bucket is what a new one would be.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::TokenId;

/// The token buckets of one process.
#[derive(Debug)]
pub struct TokenBuckets {
    per_second: f64,
    burst: f64,
    max_entries: usize,
    buckets: Mutex<HashMap<TokenId, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    permits: f64,
    at: Instant,
}

impl TokenBuckets {
    /// Buckets of `burst` permits refilling at `per_second` (both at least 1).
    pub fn new(per_second: u32, burst: u32, max_entries: usize) -> Self {
        Self {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            max_entries: max_entries.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a permit from `token`'s bucket, or says how long until one is there.
    ///
    /// # Errors
    /// The bucket is empty: the wait until the next permit.
    pub fn take(&self, token: TokenId) -> Result<(), Duration> {
        self.take_at(token, Instant::now())
    }

    fn take_at(&self, token: TokenId, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= self.max_entries && !buckets.contains_key(&token) {
            buckets.retain(|_, b| self.refilled(*b, now) < self.burst);
        }
        let bucket = buckets.entry(token).or_insert(Bucket {
            permits: self.burst,
            at: now,
        });
        bucket.permits = self.refilled(*bucket, now);
        bucket.at = now;
        if bucket.permits >= 1.0 {
            bucket.permits -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.permits) / self.per_second,
            ))
        }
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.permits + elapsed * self.per_second).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_bucket_refills_at_the_rate() {
        let buckets = TokenBuckets::new(10, 3, 100);
        let token = TokenId::new();
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(buckets.take_at(token, start), Ok(()));
        }
        let wait = buckets.take_at(token, start).unwrap_err();
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // 100 ms later one permit is back, and only one.
        let later = start + Duration::from_millis(100);
        assert_eq!(buckets.take_at(token, later), Ok(()));
        assert!(buckets.take_at(token, later).is_err());
    }

    #[test]
    fn tokens_have_buckets_of_their_own() {
        let buckets = TokenBuckets::new(1, 1, 100);
        let (a, b) = (TokenId::new(), TokenId::new());
        let now = Instant::now();
        assert_eq!(buckets.take_at(a, now), Ok(()));
        assert!(buckets.take_at(a, now).is_err());
        assert_eq!(buckets.take_at(b, now), Ok(()));
    }

    #[test]
    fn full_buckets_are_forgotten_when_the_map_is_full_but_partial_ones_are_kept() {
        let buckets = TokenBuckets::new(1, 2, 2);
        let (a, b, c) = (TokenId::new(), TokenId::new(), TokenId::new());
        let now = Instant::now();
        assert_eq!(buckets.take_at(a, now), Ok(()));
        assert_eq!(buckets.take_at(b, now), Ok(()));
        // Two seconds on, both are full again and may go; a third token gets a full bucket.
        let later = now + Duration::from_secs(2);
        assert_eq!(buckets.take_at(c, later), Ok(()));
        assert_eq!(buckets.buckets.lock().unwrap().len(), 1);
        // A drained bucket survives a sweep: its debt is not forgiven.
        assert_eq!(buckets.take_at(c, later), Ok(()));
        assert!(buckets.take_at(c, later).is_err());
        assert_eq!(buckets.take_at(a, later), Ok(()));
        assert_eq!(buckets.take_at(b, later), Ok(()));
        assert!(buckets.take_at(c, later).is_err());
    }
}
