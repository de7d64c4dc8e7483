//! Per-client token buckets: one over `/api/v2/*`, one over the token endpoint.
//!
//! Guarantees: over any window of `t` seconds a client gets at most `burst + rate·t` requests
//! through; a refused request is told when to come back (`Retry-After`, whole seconds, ≥ 1).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// A token bucket, or none when the limit is off.
pub(crate) struct Bucket(Option<DefaultDirectRateLimiter>);

impl Bucket {
    pub(crate) fn new(quota: Option<Quota>) -> Self {
        Self(quota.map(RateLimiter::direct))
    }

    pub(crate) fn per_second(rate: u32, burst: u32) -> Self {
        Self::new(NonZeroU32::new(rate).map(|r| {
            Quota::per_second(r)
                .allow_burst(NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN))
        }))
    }

    pub(crate) fn per_minute(rate: u32) -> Self {
        Self::new(NonZeroU32::new(rate).map(Quota::per_minute))
    }

    /// `Ok` when the request may pass, else how long until it could.
    pub(crate) fn check(&self) -> Result<(), Duration> {
        match &self.0 {
            None => Ok(()),
            Some(l) => l
                .check()
                .map_err(|n| n.wait_time_from(DefaultClock::default().now())),
        }
    }
}

/// `Retry-After` in whole seconds for a wait, never 0.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal() {
        let b = Bucket::per_second(10, 5);
        for _ in 0..5 {
            assert!(b.check().is_ok());
        }
        let wait = b.check().unwrap_err();
        assert!(wait <= Duration::from_millis(100));
        assert_eq!(retry_after_secs(wait), 1);
        assert!(Bucket::per_second(0, 0).check().is_ok());
    }
}
