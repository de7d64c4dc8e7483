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
pub enum PortfolioState {
    Active,
    Suspended,
    Deleted,
}

#[derive(Debug, Clone)]
pub struct Portfolio {
    pub id: &'static str,
    pub parent: Option<&'static str>,
    pub state: PortfolioState,
}

/// A package's commercial state; only `Active` packages take SIMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PackageStatus {
    Active,
    Pending,
    Suspended,
    Legacy,
    Unsigned,
}

#[derive(Debug, Clone)]
pub struct Package {
    pub id: i64,
    pub name: &'static str,
    pub status: PackageStatus,
    pub mno_id: i64,
    pub portfolios: &'static [&'static str],
}

/// One SIM with everything the rules look at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimRecord {
    pub sim: Sim,
    pub attributes: Vec<Attribute>,
    /// When a `pendingProvision` SIM becomes `active`.
    #[serde(skip)]
    pub active_at: Option<Instant>,
    /// Until when `customerSuspend: false` is refused (the suspend-settle window).
    #[serde(skip)]
    pub settle_until: Option<Instant>,
}

/// The static catalogue plus the SIMs.
pub struct World {
    pub portfolios: HashMap<&'static str, Portfolio>,
    pub packages: HashMap<i64, Package>,
    pub sims: BTreeMap<String, Mutex<SimRecord>>,
    next_attribute_id: AtomicI64,
}

impl World {
    pub fn new(sims: impl IntoIterator<Item = SimRecord>, next_attribute_id: i64) -> Self {
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

    pub fn allocate_attribute_id(&self) -> i64 {
        self.next_attribute_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn next_attribute_id(&self) -> i64 {
        self.next_attribute_id.load(Ordering::Relaxed)
    }

    /// True when `portfolio` is `root` or one of its descendants.
    pub fn in_sphere(&self, root: &str, portfolio: &str) -> bool {
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
    pub fn lock<'a>(&'a self, m: &'a Mutex<SimRecord>) -> std::sync::MutexGuard<'a, SimRecord> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The portfolios every seed has: a tenant `pf-acme` with live, deleted and frozen
/// children, and a second tenant `pf-other-co`.
pub fn catalogue_portfolios() -> Vec<Portfolio> {
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
pub const MNO_UK: i64 = 234501;
/// US operator.
pub const MNO_US: i64 = 310410;

/// Packages chosen so that every package rule can fire on seeded data.
pub fn catalogue_packages() -> Vec<Package> {
    use PackageStatus::*;
    vec![
        Package {
            id: 20417,
            name: "EU Standard",
            status: Active,
            mno_id: MNO_UK,
            portfolios: &["pf-acme-eu"],
        },
        Package {
            id: 20418,
            name: "EU Plus",
            status: Active,
            mno_id: MNO_UK,
            portfolios: &["pf-acme-eu", "pf-acme-us"],
        },
        Package {
            id: 20419,
            name: "EU Paused",
            status: Suspended,
            mno_id: MNO_UK,
            portfolios: &["pf-acme-eu"],
        },
        Package {
            id: 20420,
            name: "EU Legacy",
            status: Legacy,
            mno_id: MNO_UK,
            portfolios: &["pf-acme-eu"],
        },
        Package {
            id: 20421,
            name: "EU Pending",
            status: Pending,
            mno_id: MNO_UK,
            portfolios: &["pf-acme-eu"],
        },
        Package {
            id: 20422,
            name: "EU Unsigned",
            status: Unsigned,
            mno_id: MNO_UK,
            portfolios: &["pf-acme-eu"],
        },
        Package {
            id: 20499,
            name: "EU on US network",
            status: Active,
            mno_id: MNO_US,
            portfolios: &["pf-acme-eu"],
        },
        Package {
            id: 20533,
            name: "EU Next",
            status: Active,
            mno_id: MNO_UK,
            portfolios: &["pf-acme-eu"],
        },
        Package {
            id: 31001,
            name: "US Standard",
            status: Active,
            mno_id: MNO_US,
            portfolios: &["pf-acme-us"],
        },
        Package {
            id: 31002,
            name: "US Roaming UK",
            status: Active,
            mno_id: MNO_UK,
            portfolios: &["pf-acme-us"],
        },
        Package {
            id: 31003,
            name: "US Legacy",
            status: Legacy,
            mno_id: MNO_US,
            portfolios: &["pf-acme-us"],
        },
        Package {
            id: 40001,
            name: "Other Co",
            status: Active,
            mno_id: MNO_UK,
            portfolios: &["pf-other-co"],
        },
    ]
}
