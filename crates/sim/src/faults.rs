//! Seeded fault injection: latency, 5xx, dropped connections, slow responses,
//! apply-then-fail and token revocation.
//!
//! Guarantees: every decision comes from one RNG seeded by `--seed`, so a run with the same
//! request order sees the same faults; with every fault at zero no random draw is made.

use std::sync::{Mutex, RwLock};
use std::time::Duration;

use super::config::{AfterApply, FaultConfig};

/// What happens to a request before the rules run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Before {
    Proceed,
    Status(u16),
    Drop,
    /// A 429 with this `Retry-After` in seconds.
    Throttle(u64),
}

/// What happens after a write was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    Answer,
    Status(u16),
    Drop,
}

/// The draws for one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Draw {
    pub(crate) latency: Duration,
    pub(crate) before: Before,
    pub(crate) slow: Option<Duration>,
    pub(crate) after: After,
    pub(crate) revoke: bool,
}

pub(crate) struct Faults {
    config: RwLock<FaultConfig>,
    rng: Mutex<fastrand::Rng>,
}

impl Faults {
    pub(crate) fn new(config: FaultConfig, seed: u64) -> Self {
        Self {
            config: RwLock::new(config),
            rng: Mutex::new(fastrand::Rng::with_seed(seed ^ 0x5eed_fa17)),
        }
    }

    pub(crate) fn config(&self) -> FaultConfig {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How the list misbehaves: its lag, whether it honours one `iccId`, the share it omits.
    pub(crate) fn list(&self) -> (std::time::Duration, bool, f64) {
        let c = self.config.read().unwrap_or_else(|e| e.into_inner());
        (c.list_lag, c.list_first_iccid_only, c.list_omit)
    }

    pub(crate) fn set(&self, c: FaultConfig) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = c;
    }

    /// Whether this token request fails with a 503.
    pub(crate) fn token_failure(&self) -> bool {
        let p = self
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .token_failure;
        p > 0.0 && self.rng.lock().unwrap_or_else(|e| e.into_inner()).f64() < p
    }

    pub(crate) fn draw(&self) -> Draw {
        let c = self.config.read().unwrap_or_else(|e| e.into_inner());
        let mut d = Draw {
            latency: c.latency,
            before: Before::Proceed,
            slow: None,
            after: After::Answer,
            revoke: false,
        };
        if !c.any_random() {
            return d;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        if !c.latency_spread.is_zero() {
            d.latency += c.latency_spread.mul_f64(rng.f64());
        }
        let x = rng.f64();
        let mut edge = 0.0;
        for (p, outcome) in [
            (c.http500, Before::Status(500)),
            (c.http502, Before::Status(502)),
            (c.http503, Before::Status(503)),
            (c.http504, Before::Status(504)),
            (c.drop, Before::Drop),
            (c.http429, Before::Throttle(c.throttle_retry_after)),
        ] {
            edge += p;
            if x < edge {
                d.before = outcome;
                break;
            }
        }
        if rng.f64() < c.slow {
            d.slow = Some(c.slow_duration);
        }
        if rng.f64() < c.apply_then_fail {
            let drop = match c.after_apply {
                AfterApply::Drop => true,
                AfterApply::Status => false,
                AfterApply::Mixed => rng.bool(),
            };
            d.after = if drop {
                After::Drop
            } else {
                After::Status(503)
            };
        }
        d.revoke = rng.f64() < c.revoke;
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        let cfg = FaultConfig {
            http503: 0.3,
            drop: 0.1,
            apply_then_fail: 0.2,
            ..FaultConfig::default()
        };
        let a = Faults::new(cfg.clone(), 9);
        let b = Faults::new(cfg, 9);
        for _ in 0..100 {
            let (x, y) = (a.draw(), b.draw());
            assert_eq!((x.before, x.after), (y.before, y.after));
        }
    }

    #[test]
    fn rates_are_roughly_honoured() {
        let f = Faults::new(
            FaultConfig {
                http503: 0.3,
                ..FaultConfig::default()
            },
            1,
        );
        let n = (0..10_000)
            .filter(|_| f.draw().before == Before::Status(503))
            .count();
        assert!((2_500..3_500).contains(&n), "{n}");
    }
}
