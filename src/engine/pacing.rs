//! The one way a command gets its pacer: the rate, burst and 429 behaviour asked for, drawn
//! from the account's shared budget when there is one. `run`, `apply` (its planning reads and
//! its run), `export` and `verify` all build their pacer here, so every call a command makes
//! counts against the same budget as the account's other jobs.
//!
//! Guarantees: a budget that cannot be reached at start is an error before any request; a
//! job is named by what it works on (a checkpoint, a file), so a resumed run — or `apply`'s
//! run after its own planning reads — takes over its lease instead of sharing with a ghost.

use std::num::NonZeroU32;
use std::sync::Arc;

use crate::api::{Endpoint, Pacer};
use crate::quota::{Budget, QuotaConfig, QuotaError};

use super::JobConfig;

/// What a pacer is built from.
#[derive(Debug, Clone)]
pub(crate) struct Pacing {
    /// Requests per second (`None`: no limit).
    pub(crate) rate: Option<f64>,
    pub(crate) burst: NonZeroU32,
    /// Lower the rate on 429s and climb back (off: `--fixed-rate`).
    pub(crate) adaptive: bool,
    /// The account's shared budget to draw from (`None`: pace alone).
    pub(crate) quota: Option<QuotaConfig>,
    /// What the job works on, naming its lease.
    pub(crate) job: String,
}

impl Pacing {
    /// A job's pacing, its lease named by its checkpoint.
    pub(crate) fn of(cfg: &JobConfig) -> Self {
        Self {
            rate: cfg.rate,
            burst: cfg.burst,
            adaptive: cfg.adaptive_rate,
            quota: cfg.quota.clone(),
            job: crate::files::resolve(&cfg.checkpoint).display().to_string(),
        }
    }

    /// The pacing of a command that only reads (`export`, `verify`): `rate` with the default
    /// burst, its lease named by `job`.
    pub(crate) fn reads(rate: Option<f64>, quota: Option<QuotaConfig>, job: String) -> Self {
        Self {
            rate,
            burst: crate::api::pace::default_burst(rate),
            adaptive: true,
            quota,
            job,
        }
    }
}

/// The pacer for `p` against `endpoint`'s account.
pub(crate) async fn pacer(p: &Pacing, endpoint: &Endpoint) -> Result<Pacer, QuotaError> {
    let pacer = Pacer::with_adaptation(p.rate, p.burst, p.adaptive);
    let (Some(rate), Some(q)) = (p.rate, p.quota.as_ref()) else {
        return Ok(pacer);
    };
    let account = q
        .key
        .clone()
        .unwrap_or_else(|| format!("{} {}", endpoint.base_url.as_str(), endpoint.client_id));
    let b = Budget::join(q, (&account, &p.job), rate, f64::from(p.burst.get())).await?;
    Ok(pacer.with_shared(Arc::new(b)))
}

/// Leaves the budget `pacer` draws from, if any: its share goes to the others at once.
pub(crate) async fn leave(pacer: &Pacer) {
    if let Some(b) = pacer.shared() {
        b.leave().await;
    }
}
