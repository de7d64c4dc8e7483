//! The simulator's emnify mode (`simbulk sim --provider emnify`): the emnify REST API of
//! `docs/providers/emnify.md` over the same seeded fleet (the same ICCIDs as the Eseye mode),
//! a device being two objects — the SIM and its endpoint — each with a status, and endpoint
//! changes in bulk.
//!
//! Guarantees: SIMs and endpoints have stable internal ids (`SIM_BASE + i`,
//! `ENDPOINT_BASE + i`); a SIM moves only along the documented transitions (Issued →
//! Activated or Factory Test, Factory Test → Activated, Activated ⇄ Suspended); a bulk update
//! of up to [`MAX_BULK`] endpoints is checked whole before anything is applied, so it applies
//! every item or none; each applied field is in the ledger once, before the answer is sent.

pub(crate) mod routes;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde_json::{Value, json};

use super::seed::{self, Profile};
use super::state::catalogue_packages;

/// First internal id of a seeded SIM.
pub(crate) const SIM_BASE: i64 = 1_000_000;
/// First internal id of a seeded endpoint.
pub(crate) const ENDPOINT_BASE: i64 = 5_000_000;
/// Most endpoints one bulk update may carry.
pub(crate) const MAX_BULK: usize = 2000;
/// The one service profile of the seeded organisation.
const SERVICE_PROFILE: (i64, &str) = (1, "Default");

/// A SIM's status (emnify's ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SimStatus {
    Issued = 0,
    Activated = 1,
    Suspended = 2,
    FactoryTest = 4,
}

impl SimStatus {
    pub(crate) fn of_id(id: i64) -> Option<Self> {
        match id {
            0 => Some(Self::Issued),
            1 => Some(Self::Activated),
            2 => Some(Self::Suspended),
            4 => Some(Self::FactoryTest),
            _ => None,
        }
    }

    pub(crate) fn description(self) -> &'static str {
        match self {
            Self::Issued => "Issued",
            Self::Activated => "Activated",
            Self::Suspended => "Suspended",
            Self::FactoryTest => "Factory Test",
        }
    }

    /// The documented transitions (`to` differs from `self`).
    fn may_become(self, to: Self) -> bool {
        use SimStatus::*;
        matches!(
            (self, to),
            (Issued, Activated | FactoryTest)
                | (FactoryTest, Activated)
                | (Activated, Suspended)
                | (Suspended, Activated)
        )
    }

    pub(crate) fn json(self) -> Value {
        json!({"id": self as i64, "description": self.description()})
    }
}

/// An endpoint's status: 0 Enabled, 1 Disabled.
pub(crate) fn endpoint_status_json(id: i64) -> Value {
    json!({"id": id, "description": if id == 0 { "Enabled" } else { "Disabled" }})
}

#[derive(Debug, Clone)]
pub(crate) struct EmnifySim {
    pub(crate) id: i64,
    /// The full ICCID, check digit included (`iccid_with_luhn`).
    pub(crate) iccid: String,
    pub(crate) status: SimStatus,
    pub(crate) endpoint: Option<i64>,
    /// The Eseye portfolio it was seeded in: which organisation sees it.
    pub(crate) portfolio: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) tags: String,
    /// 0 Enabled, 1 Disabled.
    pub(crate) status: i64,
    pub(crate) tariff_profile: i64,
    pub(crate) sim: Option<i64>,
}

/// The emnify organisation(s) of one simulator. One lock over SIMs and endpoints: a device's
/// two objects and a bulk update change together or not at all.
pub(crate) struct World {
    pub(crate) inner: Mutex<Devices>,
    /// Tariff profiles: id and name (one per Eseye package of the seed's catalogue).
    pub(crate) tariffs: Vec<(i64, String)>,
    /// A bulk update is being processed (they are to be sent one after another).
    pub(crate) bulk_running: std::sync::atomic::AtomicBool,
}

pub(crate) struct Devices {
    pub(crate) sims: BTreeMap<i64, EmnifySim>,
    pub(crate) endpoints: BTreeMap<i64, Endpoint>,
    pub(crate) by_iccid: HashMap<String, i64>,
}

impl World {
    /// The seed's SIMs: never-activated ones Issued with a Disabled endpoint, active ones
    /// Activated and Enabled, suspended ones Suspended and Disabled; every endpoint on the
    /// tariff profile of its SIM's Eseye package.
    pub(crate) fn seeded(seed_value: u64, n: usize) -> Self {
        let tariffs: Vec<(i64, String)> = catalogue_packages()
            .into_iter()
            .map(|p| (p.id, p.name.to_owned()))
            .collect();
        let mut d = Devices {
            sims: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            by_iccid: HashMap::with_capacity(n),
        };
        for (i, rec, profile) in seed::iter(seed_value, n) {
            let (status, enabled) = match profile {
                Profile::Available => (SimStatus::Issued, false),
                Profile::Active => (SimStatus::Activated, true),
                _ => (SimStatus::Suspended, false),
            };
            let (sim_id, ep_id) = (SIM_BASE + i as i64, ENDPOINT_BASE + i as i64);
            d.sims.insert(
                sim_id,
                EmnifySim {
                    id: sim_id,
                    iccid: rec.sim.icc_id.clone(),
                    status,
                    endpoint: Some(ep_id),
                    portfolio: portfolio_name(&rec.sim.portfolio_id),
                },
            );
            d.endpoints.insert(
                ep_id,
                Endpoint {
                    id: ep_id,
                    name: format!("device-{i}"),
                    tags: String::new(),
                    status: i64::from(!enabled),
                    tariff_profile: rec.sim.package_id,
                    sim: Some(sim_id),
                },
            );
            d.by_iccid.insert(rec.sim.icc_id, sim_id);
        }
        Self {
            inner: Mutex::new(d),
            tariffs,
            bulk_running: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Devices> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn tariff_json(&self, id: i64) -> Value {
        let name = self
            .tariffs
            .iter()
            .find(|(t, _)| *t == id)
            .map_or("", |(_, n)| n.as_str());
        json!({"id": id, "name": name})
    }
}

fn portfolio_name(p: &str) -> &'static str {
    super::state::catalogue_portfolios()
        .into_iter()
        .find(|q| q.id == p)
        .map_or("pf-acme", |q| q.id)
}

/// A refusal in emnify's error shape (`error_code`, `error_token`, `message`, and for a
/// validation failure the embedded `errors`).
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) code: u32,
    pub(crate) token: &'static str,
    pub(crate) message: String,
    pub(crate) errors: Vec<Refusal>,
}

impl Refusal {
    pub(crate) fn new(
        status: u16,
        code: u32,
        token: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            token,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    pub(crate) fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Self::new(
            404,
            1201,
            "NotFound",
            format!("{what} with id {id} not found"),
        )
    }

    pub(crate) fn body(&self) -> Value {
        let mut v = json!({
            "error_code": self.code,
            "error_token": self.token,
            "message": self.message,
        });
        if !self.errors.is_empty() {
            v["errors"] = Value::Array(self.errors.iter().map(Refusal::body).collect());
        }
        v
    }
}

/// One applied field: which object, which field, before, after.
#[derive(Debug)]
pub(crate) struct Changed {
    pub(crate) iccid: String,
    pub(crate) kind: &'static str,
    pub(crate) field: &'static str,
    pub(crate) old: Value,
    pub(crate) new: Value,
}

/// What an endpoint update asks (any field may be absent).
#[derive(Debug, Default, Clone)]
pub(crate) struct EndpointUpdate {
    pub(crate) id: i64,
    pub(crate) name: Option<String>,
    pub(crate) tags: Option<String>,
    pub(crate) status: Option<i64>,
    pub(crate) tariff_profile: Option<i64>,
    /// The status of the endpoint's SIM, changed with it.
    pub(crate) sim_status: Option<SimStatus>,
}

impl Devices {
    /// Checks a SIM status change: `Ok(false)` when the SIM already has it.
    fn check_sim(&self, sim_id: i64, to: SimStatus) -> Result<bool, Refusal> {
        let s = self
            .sims
            .get(&sim_id)
            .ok_or_else(|| Refusal::not_found("SIM", sim_id))?;
        if s.status == to {
            return Ok(false);
        }
        if !s.status.may_become(to) {
            return Err(Refusal::new(
                409,
                1406,
                "NotAllowed",
                format!(
                    "SIM {sim_id}: status {} cannot be changed to {}",
                    s.status.description(),
                    to.description()
                ),
            ));
        }
        Ok(true)
    }

    /// Changes a SIM's status (checked first).
    pub(crate) fn set_sim_status(
        &mut self,
        sim_id: i64,
        to: SimStatus,
    ) -> Result<Vec<Changed>, Refusal> {
        if !self.check_sim(sim_id, to)? {
            return Ok(Vec::new());
        }
        let s = self.sims.get_mut(&sim_id).expect("checked above");
        let ch = Changed {
            iccid: s.iccid.clone(),
            kind: "sim",
            field: "status",
            old: json!(s.status as i64),
            new: json!(to as i64),
        };
        s.status = to;
        Ok(vec![ch])
    }

    /// Checks an endpoint update against the world without applying it.
    pub(crate) fn check_endpoint(
        &self,
        u: &EndpointUpdate,
        tariffs: &[(i64, String)],
    ) -> Result<(), Refusal> {
        let e = self
            .endpoints
            .get(&u.id)
            .ok_or_else(|| Refusal::not_found("Endpoint", u.id))?;
        if let Some(t) = u.tariff_profile
            && !tariffs.iter().any(|(id, _)| *id == t)
        {
            return Err(Refusal::new(
                422,
                1401,
                "InvalidReference",
                format!("Invalid reference to tariff_profile with id {t}"),
            ));
        }
        if let Some(to) = u.sim_status {
            let sim = e.sim.ok_or_else(|| {
                Refusal::new(
                    409,
                    1406,
                    "NotAllowed",
                    format!("Endpoint {} has no SIM", u.id),
                )
            })?;
            self.check_sim(sim, to)?;
        }
        Ok(())
    }

    /// Applies a checked endpoint update: the fields it changed.
    pub(crate) fn apply_endpoint(&mut self, u: &EndpointUpdate) -> Vec<Changed> {
        let mut out = Vec::new();
        let Some(e) = self.endpoints.get_mut(&u.id) else {
            return out;
        };
        let iccid = e
            .sim
            .and_then(|s| self.sims.get(&s))
            .map(|s| s.iccid.clone())
            .unwrap_or_default();
        let mut field = |f: &'static str, old: Value, new: Value| {
            if old != new {
                out.push(Changed {
                    iccid: iccid.clone(),
                    kind: "endpoint",
                    field: f,
                    old,
                    new,
                });
            }
        };
        if let Some(n) = &u.name {
            field("name", json!(e.name), json!(n));
            e.name.clone_from(n);
        }
        if let Some(t) = &u.tags {
            field("tags", json!(e.tags), json!(t));
            e.tags.clone_from(t);
        }
        if let Some(s) = u.status {
            field("status", json!(e.status), json!(s));
            e.status = s;
        }
        if let Some(t) = u.tariff_profile {
            field("tariff_profile", json!(e.tariff_profile), json!(t));
            e.tariff_profile = t;
        }
        let sim = e.sim;
        if let (Some(to), Some(sim)) = (u.sim_status, sim)
            && let Ok(mut ch) = self.set_sim_status(sim, to)
        {
            out.append(&mut ch);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_statuses_move_only_as_documented() {
        use SimStatus::*;
        assert!(Issued.may_become(Activated) && Issued.may_become(FactoryTest));
        assert!(FactoryTest.may_become(Activated) && !FactoryTest.may_become(Suspended));
        assert!(Activated.may_become(Suspended) && Suspended.may_become(Activated));
        assert!(!Activated.may_become(Issued) && !Suspended.may_become(Issued));
        assert!(!Issued.may_become(Suspended));
    }

    #[test]
    fn a_checked_endpoint_update_changes_both_objects_and_names_each_field() {
        let w = World::seeded(1, 50);
        let mut d = w.lock();
        let (&sim_id, s) = d
            .sims
            .iter()
            .find(|(_, s)| s.status == SimStatus::Issued)
            .unwrap();
        let ep = s.endpoint.unwrap();
        let _ = sim_id;
        let u = EndpointUpdate {
            id: ep,
            status: Some(0),
            sim_status: Some(SimStatus::Activated),
            tags: Some("fleet-a".into()),
            ..EndpointUpdate::default()
        };
        d.check_endpoint(&u, &w.tariffs).unwrap();
        let fields: Vec<&str> = d.apply_endpoint(&u).iter().map(|c| c.field).collect();
        assert_eq!(fields, ["tags", "status", "status"]);
        // The same again is nothing.
        assert!(d.apply_endpoint(&u).is_empty());
        let bad = EndpointUpdate {
            id: ep,
            sim_status: Some(SimStatus::Issued),
            ..EndpointUpdate::default()
        };
        assert_eq!(d.check_endpoint(&bad, &w.tariffs).unwrap_err().code, 1406);
        let unknown_tariff = EndpointUpdate {
            id: ep,
            tariff_profile: Some(7),
            ..EndpointUpdate::default()
        };
        assert_eq!(
            d.check_endpoint(&unknown_tariff, &w.tariffs)
                .unwrap_err()
                .code,
            1401
        );
    }
}
