//! The simulator's Twilio Super SIM mode (`simbulk sim --provider twilio`): the Super SIM
//! API of `docs/providers/twilio-supersim.md` over the same seeded fleet (the same ICCIDs as
//! the Eseye mode, so one job file runs against both), with its ids, lifecycle and
//! asynchronous completion.
//!
//! Guarantees: a SIM is addressed by its `sid` (`HS` + 32 hex digits, stable for a seed and
//! index) or its `unique_name`; a status or Fleet update is accepted as `scheduled` and
//! reaches the requested state `settle_delay` later (settled when the SIM is next looked at,
//! so every answer after that moment shows it), never before; an update while one is
//! scheduled is refused (83009 / 83010) and changes nothing; a SIM never returns to `new`;
//! each accepted change is in the ledger before its answer is sent, once.

pub(crate) mod routes;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::seed::{self, Profile};
use super::state::catalogue_packages;

/// A Super SIM's status as set or settled (`scheduled` is shown while an update runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    New,
    Ready,
    Active,
    Inactive,
}

impl Status {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Ready => "ready",
            Status::Active => "active",
            Status::Inactive => "inactive",
        }
    }

    /// A status an update may ask for (`new` cannot be asked for).
    pub(crate) fn settable(s: &str) -> Option<Status> {
        match s {
            "ready" => Some(Status::Ready),
            "active" => Some(Status::Active),
            "inactive" => Some(Status::Inactive),
            _ => None,
        }
    }

    /// Whether a SIM in `self` may be moved to `to` (`to` differs from `self`). Once out of
    /// `new` a SIM never returns; from `new` it goes to `ready` or `active`, from `ready`
    /// on, and between `active` and `inactive` both ways.
    fn may_become(self, to: Status) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (New, Ready | Active)
                | (Ready, Active | Inactive)
                | (Active, Inactive)
                | (Inactive, Active)
        )
    }
}

/// An update that has been accepted and has not completed yet.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) status: Option<Status>,
    pub(crate) fleet: Option<usize>,
    pub(crate) at: Instant,
}

/// One Super SIM.
#[derive(Debug, Clone)]
pub(crate) struct TwilioSim {
    pub(crate) sid: String,
    pub(crate) iccid: String,
    pub(crate) unique_name: Option<String>,
    /// The Eseye portfolio it was seeded in: which account sees it.
    pub(crate) portfolio: &'static str,
    pub(crate) status: Status,
    /// Index into [`World::fleets`].
    pub(crate) fleet: Option<usize>,
    pub(crate) date_created: String,
    pub(crate) date_updated: String,
    pub(crate) pending: Option<Pending>,
}

impl TwilioSim {
    /// The status the API shows now.
    pub(crate) fn shown_status(&self) -> &'static str {
        if self.pending.is_some() {
            "scheduled"
        } else {
            self.status.name()
        }
    }
}

/// A Fleet: what a SIM's data and network settings come from (the closest thing to an
/// Eseye package).
#[derive(Debug, Clone)]
pub(crate) struct Fleet {
    pub(crate) sid: String,
    pub(crate) unique_name: String,
    /// The Eseye package it stands for (the seed's SIMs on that package are in it).
    pub(crate) package: i64,
}

/// The Super SIM fleet of one simulator.
pub(crate) struct World {
    pub(crate) sims: BTreeMap<String, Mutex<TwilioSim>>,
    pub(crate) by_iccid: HashMap<String, String>,
    pub(crate) by_name: Mutex<HashMap<String, String>>,
    pub(crate) fleets: Vec<Fleet>,
    /// Requests in flight per client (the concurrency limit's count).
    pub(crate) in_flight: Vec<AtomicUsize>,
}

/// The seed's SIMs that start without a Fleet (activating them asks for one: 83007).
fn starts_without_fleet(i: usize) -> bool {
    i % 10 == 3
}

/// `prefix` and 32 hex digits drawn from `key`: a stable Twilio-style SID.
pub(crate) fn sid(prefix: &str, key: &str) -> String {
    let mut out = String::with_capacity(34);
    out.push_str(prefix);
    for salt in 0u8..4 {
        let mut h = crc32fast::Hasher::new();
        h.update(&[salt]);
        h.update(key.as_bytes());
        out.push_str(&format!("{:08x}", h.finalize()));
    }
    out
}

/// The Account SID of a simulator client (what it authenticates with, its auth token being
/// the client's secret).
pub fn account_sid(client_id: &str) -> String {
    sid("AC", client_id)
}

fn slug(name: &str) -> String {
    name.to_ascii_lowercase().replace(' ', "-")
}

impl World {
    /// The seed's SIMs as Super SIMs: never-activated ones `new` (one in seven `ready`),
    /// active ones `active`, suspended ones `inactive`, each in the Fleet of its package.
    pub(crate) fn seeded(seed_value: u64, n: usize, clients: usize) -> Self {
        let fleets: Vec<Fleet> = catalogue_packages()
            .into_iter()
            .map(|p| Fleet {
                sid: sid("HF", &p.id.to_string()),
                unique_name: slug(p.name),
                package: p.id,
            })
            .collect();
        let fleet_of = |package: i64| fleets.iter().position(|f| f.package == package);
        let mut sims = BTreeMap::new();
        let mut by_iccid = HashMap::with_capacity(n);
        for (i, rec, profile) in seed::iter(seed_value, n) {
            let status = match profile {
                Profile::Available if i % 7 == 0 => Status::Ready,
                Profile::Available => Status::New,
                Profile::Active => Status::Active,
                _ => Status::Inactive,
            };
            let fleet = if status == Status::New && starts_without_fleet(i) {
                None
            } else {
                fleet_of(rec.sim.package_id)
            };
            let s = TwilioSim {
                sid: sid("HS", &rec.sim.icc_id),
                iccid: rec.sim.icc_id.clone(),
                unique_name: None,
                portfolio: portfolio_name(&rec.sim.portfolio_id),
                status,
                fleet,
                date_created: rec.sim.modified_date.clone().unwrap_or_default(),
                date_updated: rec.sim.modified_date.clone().unwrap_or_default(),
                pending: None,
            };
            by_iccid.insert(s.iccid.clone(), s.sid.clone());
            sims.insert(s.sid.clone(), Mutex::new(s));
        }
        Self {
            sims,
            by_iccid,
            by_name: Mutex::new(HashMap::new()),
            fleets,
            in_flight: (0..clients).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// The SID a path names: a SID, or a unique name.
    pub(crate) fn resolve(&self, key: &str) -> Option<String> {
        if self.sims.contains_key(key) {
            return Some(key.to_owned());
        }
        self.by_name
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// The Fleet a parameter names: its SID or its unique name.
    pub(crate) fn fleet(&self, key: &str) -> Option<usize> {
        self.fleets
            .iter()
            .position(|f| f.sid == key || f.unique_name == key)
    }

    /// Locks one SIM (a poisoned lock is recovered: updates never leave one half-done).
    pub(crate) fn lock<'a>(
        &'a self,
        m: &'a Mutex<TwilioSim>,
    ) -> std::sync::MutexGuard<'a, TwilioSim> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a request of `client` in flight while the guard lives; `None` when `limit`
    /// (non-zero) are already in flight.
    pub(crate) fn admit(&self, client: usize, limit: usize) -> Option<InFlight<'_>> {
        let n = self.in_flight.get(client)?;
        let now = n.fetch_add(1, Ordering::AcqRel) + 1;
        let guard = InFlight(n);
        (limit == 0 || now <= limit).then_some(guard)
    }
}

/// One request counted in flight.
pub(crate) struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The static portfolio name of a seeded SIM.
fn portfolio_name(p: &str) -> &'static str {
    super::state::catalogue_portfolios()
        .into_iter()
        .find(|q| q.id == p)
        .map_or("pf-acme", |q| q.id)
}

/// An update as asked (form parameters, already checked for shape).
#[derive(Debug, Default)]
pub(crate) struct Update {
    pub(crate) status: Option<Status>,
    pub(crate) fleet: Option<usize>,
    pub(crate) unique_name: Option<String>,
}

/// A refusal in Twilio's error shape.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) code: u32,
    pub(crate) message: String,
}

impl Refusal {
    pub(crate) fn new(status: u16, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn body(&self) -> Value {
        json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status,
        })
    }
}

/// One field an accepted update changes: name, before, after.
#[derive(Debug)]
pub(crate) struct Changed {
    pub(crate) field: &'static str,
    pub(crate) old: Value,
    pub(crate) new: Value,
}

/// Completes a due update.
pub(crate) fn settle(s: &mut TwilioSim, now: Instant, now_text: &str) {
    if let Some(p) = s.pending.as_ref().filter(|p| now >= p.at) {
        if let Some(st) = p.status {
            s.status = st;
        }
        if let Some(f) = p.fleet {
            s.fleet = Some(f);
        }
        s.pending = None;
        s.date_updated = now_text.to_owned();
    }
}

/// Applies `u` to `s` under its lock: what changed (empty: nothing to do), or the refusal.
/// A status or Fleet change is scheduled to complete `delay` from `now`.
pub(crate) fn apply(
    s: &mut TwilioSim,
    u: &Update,
    world: &World,
    now: Instant,
    delay: Duration,
) -> Result<Vec<Changed>, Refusal> {
    // What the SIM is headed for: asking for it again is nothing to do, scheduled or not.
    let (will_status, will_fleet) = match &s.pending {
        Some(p) => (p.status.unwrap_or(s.status), p.fleet.or(s.fleet)),
        None => (s.status, s.fleet),
    };
    let status = u.status.filter(|&st| st != will_status);
    let fleet = u.fleet.filter(|&f| Some(f) != will_fleet);
    if s.pending.is_some() && (status.is_some() || fleet.is_some()) {
        return Err(if fleet.is_some() {
            Refusal::new(
                409,
                83009,
                "Unable to update your Super SIM's Fleet while it is in status scheduled",
            )
        } else {
            Refusal::new(
                409,
                83010,
                "Unable to update your Super SIM to the desired status: an update is in progress",
            )
        });
    }
    if let Some(to) = status {
        if !s.status.may_become(to) {
            return Err(Refusal::new(
                400,
                83010,
                format!(
                    "Unable to update your Super SIM from status {} to {}",
                    s.status.name(),
                    to.name()
                ),
            ));
        }
        if matches!(to, Status::Active | Status::Ready) && s.fleet.is_none() && fleet.is_none() {
            return Err(Refusal::new(
                400,
                83007,
                "Unable to activate your Super SIM as it does not belong to a Fleet",
            ));
        }
    }
    let mut changed = Vec::new();
    if let Some(name) = &u.unique_name
        && s.unique_name.as_deref() != Some(name)
    {
        let mut names = world.by_name.lock().unwrap_or_else(|e| e.into_inner());
        if names.get(name).is_some_and(|other| *other != s.sid) {
            return Err(Refusal::new(
                409,
                20409,
                format!("UniqueName {name:?} is already in use"),
            ));
        }
        if let Some(old) = s.unique_name.take() {
            names.remove(&old);
        }
        names.insert(name.clone(), s.sid.clone());
        changed.push(Changed {
            field: "unique_name",
            old: Value::Null,
            new: json!(name),
        });
        s.unique_name = Some(name.clone());
    }
    if status.is_some() || fleet.is_some() {
        if let Some(to) = status {
            changed.push(Changed {
                field: "status",
                old: json!(s.status.name()),
                new: json!(to.name()),
            });
        }
        if let Some(f) = fleet {
            changed.push(Changed {
                field: "fleet_sid",
                old: json!(s.fleet.map(|i| world.fleets[i].sid.clone())),
                new: json!(world.fleets[f].sid),
            });
        }
        s.pending = Some(Pending {
            status,
            fleet,
            at: now + delay,
        });
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> World {
        World::seeded(1, 200, 3)
    }

    fn one(w: &World, status: Status, with_fleet: bool) -> TwilioSim {
        w.sims
            .values()
            .map(|m| w.lock(m).clone())
            .find(|s| s.status == status && s.fleet.is_some() == with_fleet)
            .expect("the seed has such a SIM")
    }

    #[test]
    fn sids_are_stable_and_shaped_like_twilio_s() {
        let a = sid("HS", "8944501000000000012");
        assert_eq!(a, sid("HS", "8944501000000000012"));
        assert_eq!(a.len(), 34);
        assert!(a[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, sid("HS", "8944501000000000020"));
        assert!(account_sid("sim-demo-client").starts_with("AC"));
    }

    #[test]
    fn an_update_is_scheduled_then_settles_after_the_delay() {
        let w = world();
        let mut s = one(&w, Status::Active, true);
        let t0 = Instant::now();
        let u = Update {
            status: Some(Status::Inactive),
            ..Update::default()
        };
        let ch = apply(&mut s, &u, &w, t0, Duration::from_secs(5)).unwrap();
        assert_eq!(ch.len(), 1);
        assert_eq!(s.shown_status(), "scheduled");
        settle(&mut s, t0 + Duration::from_secs(4), "t");
        assert_eq!(s.shown_status(), "scheduled", "not before the delay");
        // The same update again while scheduled is nothing to do; another one is refused.
        assert!(
            apply(&mut s, &u, &w, t0, Duration::ZERO)
                .unwrap()
                .is_empty()
        );
        let other = Update {
            status: Some(Status::Active),
            ..Update::default()
        };
        assert_eq!(
            apply(&mut s, &other, &w, t0, Duration::ZERO)
                .unwrap_err()
                .code,
            83010
        );
        assert_eq!(s.shown_status(), "scheduled");
        settle(&mut s, t0 + Duration::from_secs(5), "t");
        assert_eq!(s.shown_status(), "inactive");
        // The same status again is nothing to do.
        assert!(
            apply(&mut s, &u, &w, t0, Duration::ZERO)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_lifecycle_refuses_what_the_provider_refuses() {
        let w = world();
        let t = Instant::now();
        let mut new_without_fleet = one(&w, Status::New, false);
        let activate = Update {
            status: Some(Status::Active),
            ..Update::default()
        };
        assert_eq!(
            apply(&mut new_without_fleet, &activate, &w, t, Duration::ZERO)
                .unwrap_err()
                .code,
            83007
        );
        let with_fleet = Update {
            status: Some(Status::Active),
            fleet: Some(0),
            ..Update::default()
        };
        assert!(apply(&mut new_without_fleet, &with_fleet, &w, t, Duration::ZERO).is_ok());
        let mut new = one(&w, Status::New, true);
        let deactivate = Update {
            status: Some(Status::Inactive),
            ..Update::default()
        };
        assert_eq!(
            apply(&mut new, &deactivate, &w, t, Duration::ZERO)
                .unwrap_err()
                .code,
            83010
        );
        let mut active = one(&w, Status::Active, true);
        let ready = Update {
            status: Some(Status::Ready),
            ..Update::default()
        };
        assert_eq!(
            apply(&mut active, &ready, &w, t, Duration::ZERO)
                .unwrap_err()
                .code,
            83010
        );
        assert!(Status::settable("new").is_none());
    }
}
