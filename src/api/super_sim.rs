//! Twilio Super SIM as the engine sees a SIM API (`docs/providers/twilio-supersim.md`): its
//! `Sim` resource read into the model's terms, the model's change written as its form, and
//! the ICCID → `sid` lookups the writes need, kept for the job in a bounded map.
//!
//! Guarantees: a Super SIM's state is mapped only where the mapping is exact — `new` and
//! `ready` are not active (`available`), `active` is active, `inactive` is active and
//! suspended by the customer, and `scheduled` stays `scheduled` (an update under way, never
//! taken for the state it asked for); a change the Super SIM API has no form for is refused
//! here, before anything is sent; the lookup map never holds more than [`MAX_SIDS`] entries.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Deserialize;

use crate::model::{Sim, SimPatch};

/// Twilio's code for a resource the account has not got.
pub(crate) const NOT_FOUND: i64 = 20404;

/// The state of an update under way, as the model carries it.
pub(crate) const SCHEDULED: &str = "scheduled";

/// Most ICCID → `sid` entries kept (past it the map starts again: a dropped entry costs one
/// lookup, never a wrong id).
pub(crate) const MAX_SIDS: usize = 65_536;

/// The `Sim` resource (the fields simbulk reads).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SuperSim {
    pub(crate) sid: String,
    pub(crate) iccid: String,
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) date_updated: Option<String>,
}

/// A page of `GET /v1/Sims`.
#[derive(Debug, Deserialize)]
pub(crate) struct SuperSimPage {
    pub(crate) sims: Vec<SuperSim>,
}

/// A page of `GET /v1/Sims` with its paging block.
#[derive(Debug, Deserialize)]
pub(crate) struct SuperSimListPage {
    pub(crate) sims: Vec<SuperSim>,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Debug, Deserialize)]
struct Meta {
    #[serde(default)]
    next_page_url: Option<String>,
}

impl SuperSimListPage {
    /// The next page's `PageToken`, from `meta.next_page_url`; none on the last page.
    pub(crate) fn next_token(&self) -> Option<String> {
        let next = self.meta.as_ref()?.next_page_url.as_deref()?;
        url::Url::parse(next)
            .ok()?
            .query_pairs()
            .find(|(k, _)| k == "PageToken")
            .map(|(_, v)| v.into_owned())
            .filter(|t| !t.is_empty())
    }
}

impl SuperSim {
    /// The SIM in the model's terms. Super SIM has no packages, portfolios or operators in
    /// the model's sense: those fields are empty (`0`, `""`), and the actions that need them
    /// are refused before any call (`engine::provider::unsupported`).
    pub(crate) fn to_model(&self) -> Sim {
        let (status, suspended) = match self.status.as_str() {
            "new" | "ready" => ("available", false),
            "active" => ("active", false),
            "inactive" => ("active", true),
            other => (other, false),
        };
        Sim {
            icc_id: self.iccid.clone(),
            sim_id: Some(self.sid.clone()),
            eid: None,
            status: status.to_owned(),
            customer_suspend: suspended,
            admin_suspend: false,
            system_suspend: false,
            package_id: 0,
            portfolio_id: String::new(),
            mno_id: 0,
            imsi: None,
            msisdn: None,
            modified_date: self.date_updated.clone(),
        }
    }
}

/// The `Status` a model change asks for, or why Super SIM cannot take it.
pub(crate) fn form_for(patch: &SimPatch) -> Result<Vec<(&'static str, String)>, &'static str> {
    if patch.package_id.is_some() {
        return Err(NO_PACKAGE);
    }
    if patch.portfolio_id.is_some() {
        return Err(NO_PORTFOLIO);
    }
    let status = match (patch.status.as_deref(), patch.customer_suspend) {
        (Some("available"), _) => return Err(NO_DEACTIVATE),
        (Some("active") | None, Some(true)) => "inactive",
        (Some("active"), _) | (None, Some(false)) => "active",
        (None, None) => return Err("the change is empty"),
        (Some(_), _) => return Err("Super SIM takes only the statuses active and inactive"),
    };
    Ok(vec![("Status", status.to_owned())])
}

pub(crate) const NO_DEACTIVATE: &str =
    "Twilio Super SIM cannot deactivate: a SIM never returns to new; use suspend (status inactive)";
pub(crate) const NO_PACKAGE: &str =
    "set-package is not supported for Twilio Super SIM yet (its Fleets have no package ids)";
pub(crate) const NO_PORTFOLIO: &str = "Twilio Super SIM has no portfolios";
pub(crate) const NO_ATTRIBUTES: &str = "Twilio Super SIM has no attributes";
pub(crate) const NO_PATCH: &str =
    "patch rows are not supported for Twilio Super SIM yet; use activate, suspend or unsuspend";

/// ICCID → `sid`, for the job's writes (bounded: see [`MAX_SIDS`]).
#[derive(Debug, Default)]
pub(crate) struct Sids(Mutex<HashMap<String, String>>);

impl Sids {
    pub(crate) fn get(&self, icc: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(icc)
            .cloned()
    }

    pub(crate) fn put(&self, icc: &str, sid: &str) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_SIDS {
            m.clear();
        }
        m.insert(icc.to_owned(), sid.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(status: &str) -> Sim {
        SuperSim {
            sid: "HS00".into(),
            iccid: "8944500100000000004".into(),
            status: status.into(),
            date_updated: None,
        }
        .to_model()
    }

    #[test]
    fn states_map_only_where_exact() {
        assert_eq!(sim("new").status, "available");
        assert_eq!(sim("ready").status, "available");
        assert_eq!(
            (
                sim("active").status.as_str(),
                sim("active").customer_suspend
            ),
            ("active", false)
        );
        assert_eq!(
            (
                sim("inactive").status.as_str(),
                sim("inactive").customer_suspend
            ),
            ("active", true)
        );
        assert_eq!(sim("scheduled").status, SCHEDULED);
        assert!(!sim("scheduled").is_suspended());
    }

    #[test]
    fn changes_become_a_status_or_are_refused_before_sending() {
        let p = |status: Option<&str>, suspend: Option<bool>| SimPatch {
            status: status.map(str::to_owned),
            customer_suspend: suspend,
            ..SimPatch::default()
        };
        assert_eq!(form_for(&p(Some("active"), None)).unwrap()[0].1, "active");
        assert_eq!(form_for(&p(None, Some(true))).unwrap()[0].1, "inactive");
        assert_eq!(form_for(&p(None, Some(false))).unwrap()[0].1, "active");
        assert!(form_for(&p(Some("available"), None)).is_err());
        let package = SimPatch {
            package_id: Some(20418),
            ..SimPatch::default()
        };
        assert!(form_for(&package).is_err());
    }

    #[test]
    fn the_lookup_map_stays_bounded() {
        let s = Sids::default();
        for i in 0..MAX_SIDS + 10 {
            s.put(&i.to_string(), "HS");
        }
        assert!(s.0.lock().unwrap().len() <= MAX_SIDS);
    }
}
