//! The simulator's world: portfolios, packages, SIMs and their attributes.
//!
//! Guarantees: the set of SIMs is fixed after start-up (the API cannot create or delete
//! SIMs), so the map is never locked as a whole; each SIM has its own mutex, held only
//! while a rule is evaluated and applied, which makes every update to one SIM an atomic
//! read-modify-write. Attribute ids are unique across the platform and never reused.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::model::{Attribute, Sim};

/// A portfolio's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum PortfolioState {
    Active,
    Suspended,
    Deleted,
}

#[derive(Debug, Clone)]
pub(crate) struct Portfolio {
    pub(crate) id: &'static str,
    pub(crate) parent: Option<&'static str>,
    pub(crate) state: PortfolioState,
}

/// A package's commercial state; only `Active` packages take SIMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PackageStatus {
    /// Open to new SIMs.
    Active,
    /// Not yet open.
    Pending,
    /// Closed for now.
    Suspended,
    /// Kept for the SIMs on it, closed to new ones.
    Legacy,
    /// Not signed by the customer: closed.
    Unsigned,
}

/// A package of the catalogue: what a SIM may be moved to, and from which portfolios.
#[derive(Debug, Clone)]
pub struct Package {
    /// The package id.
    pub id: i64,
    /// Its name.
    pub name: &'static str,
    /// Whether SIMs may move to it.
    pub status: PackageStatus,
    /// Its network operator.
    pub mno_id: i64,
    /// The portfolios whose SIMs may move to it.
    pub portfolios: &'static [&'static str],
}

/// One SIM with everything the rules look at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimRecord {
    /// The SIM as the API shows it.
    pub sim: Sim,
    /// Its attributes.
    pub attributes: Vec<Attribute>,
    /// When a `pendingProvision` SIM becomes `active`.
    #[serde(skip)]
    pub active_at: Option<Instant>,
    /// Until when `customerSuspend: false` is refused (the suspend-settle window).
    #[serde(skip)]
    pub settle_until: Option<Instant>,
    /// Its earlier states, oldest first, each with when it ended (kept only while the list
    /// lags, for what a lagging list shows).
    #[serde(skip)]
    pub history: std::collections::VecDeque<(Instant, Sim)>,
}

/// Earlier states a SIM keeps for a lagging list.
const HISTORY: usize = 16;

impl SimRecord {
    /// Notes that `before` was the SIM's state until now (when it differs from the state now).
    pub(crate) fn changed_from(&mut self, before: Sim, now: Instant) {
        if before != self.sim {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back((now, before));
        }
    }

    /// The SIM as it was `lag` ago (as far as its kept history goes).
    pub(crate) fn as_of(&self, lag: std::time::Duration, now: Instant) -> &Sim {
        let then = now.checked_sub(lag).unwrap_or(now);
        self.history
            .iter()
            .find(|(ended, _)| *ended > then)
            .map_or(&self.sim, |(_, s)| s)
    }
}

/// The static catalogue plus the SIMs.
pub(crate) struct World {
    pub(crate) portfolios: HashMap<&'static str, Portfolio>,
    pub(crate) packages: HashMap<i64, Package>,
    pub(crate) sims: BTreeMap<String, Mutex<SimRecord>>,
    next_attribute_id: AtomicI64,
}

impl World {
    pub(crate) fn new(sims: impl IntoIterator<Item = SimRecord>, next_attribute_id: i64) -> Self {
        Self {
            portfolios: catalogue_portfolios()
                .into_iter()
                .map(|p| (p.id, p))
                .collect(),
            packages: catalogue_packages()
                .into_iter()
                .map(|p| (p.id, p))
                .collect(),
            sims: sims
                .into_iter()
                .map(|r| (r.sim.icc_id.clone(), Mutex::new(r)))
                .collect(),
            next_attribute_id: AtomicI64::new(next_attribute_id),
        }
    }

    pub(crate) fn allocate_attribute_id(&self) -> i64 {
        self.next_attribute_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn next_attribute_id(&self) -> i64 {
        self.next_attribute_id.load(Ordering::Relaxed)
    }

    /// True when `portfolio` is `root` or one of its descendants.
    pub(crate) fn in_sphere(&self, root: &str, portfolio: &str) -> bool {
        let mut cur = Some(portfolio);
        let mut hops = 0;
        while let Some(id) = cur {
            if id == root {
                return true;
            }
            hops += 1;
            if hops > 16 {
                return false;
            }
            cur = self.portfolios.get(id).and_then(|p| p.parent);
        }
        false
    }

    /// Locks one SIM. A poisoned lock is recovered: rules never leave a record half-updated.
    pub(crate) fn lock<'a>(
        &'a self,
        m: &'a Mutex<SimRecord>,
    ) -> std::sync::MutexGuard<'a, SimRecord> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The portfolios every seed has: a tenant `pf-acme` with live, deleted and frozen
/// children, and a second tenant `pf-other-co`.
pub(crate) fn catalogue_portfolios() -> Vec<Portfolio> {
    use PortfolioState::*;
    vec![
        Portfolio {
            id: "pf-acme",
            parent: None,
            state: Active,
        },
        Portfolio {
            id: "pf-acme-eu",
            parent: Some("pf-acme"),
            state: Active,
        },
        Portfolio {
            id: "pf-acme-us",
            parent: Some("pf-acme"),
            state: Active,
        },
        Portfolio {
            id: "pf-acme-closed",
            parent: Some("pf-acme"),
            state: Deleted,
        },
        Portfolio {
            id: "pf-acme-frozen",
            parent: Some("pf-acme"),
            state: Suspended,
        },
        Portfolio {
            id: "pf-other-co",
            parent: None,
            state: Active,
        },
    ]
}

/// UK operator of most seeded SIMs.
pub(crate) const MNO_UK: i64 = 234501;
/// US operator.
pub(crate) const MNO_US: i64 = 310410;

/// Packages chosen so that every package rule can fire on seeded data.
/// The catalogue: id, name, status, operator and the portfolios each package is offered in.
const CATALOGUE: [(i64, &str, PackageStatus, i64, &[&str]); 12] = {
    use PackageStatus::*;
    [
        (20417, "EU Standard", Active, MNO_UK, &["pf-acme-eu"]),
        (
            20418,
            "EU Plus",
            Active,
            MNO_UK,
            &["pf-acme-eu", "pf-acme-us"],
        ),
        (20419, "EU Paused", Suspended, MNO_UK, &["pf-acme-eu"]),
        (20420, "EU Legacy", Legacy, MNO_UK, &["pf-acme-eu"]),
        (20421, "EU Pending", Pending, MNO_UK, &["pf-acme-eu"]),
        (20422, "EU Unsigned", Unsigned, MNO_UK, &["pf-acme-eu"]),
        (20499, "EU on US network", Active, MNO_US, &["pf-acme-eu"]),
        (20533, "EU Next", Active, MNO_UK, &["pf-acme-eu"]),
        (31001, "US Standard", Active, MNO_US, &["pf-acme-us"]),
        (31002, "US Roaming UK", Active, MNO_UK, &["pf-acme-us"]),
        (31003, "US Legacy", Legacy, MNO_US, &["pf-acme-us"]),
        (40001, "Other Co", Active, MNO_UK, &["pf-other-co"]),
    ]
};

/// The simulator's package catalogue.
pub fn catalogue_packages() -> Vec<Package> {
    CATALOGUE
        .iter()
        .map(|&(id, name, status, mno_id, portfolios)| Package {
            id,
            name,
            status,
            mno_id,
            portfolios,
        })
        .collect()
}
