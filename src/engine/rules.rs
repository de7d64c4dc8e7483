//! What the client knows of the provider's rules: the call a SIM action makes, whether a
//! SIM already shows what a row asks for, and what the SIM's state predicts for a row.
//!
//! It is the client's reading, used by the worker (to reconcile) and by the preview (to
//! predict); the simulator keeps its own, independent implementation of the contract.
//! Guarantees: a prediction never claims more than the state decides — package and portfolio
//! catalogue rules and the suspend-settle window are the provider's to decide, and such rows
//! are predicted `ok` with a note.

use std::borrow::Cow;

use crate::input::Action;
use crate::model::{Attribute, Sim, SimPatch, codes};
use crate::output::row::Verdict;

/// The SIM's status as the results show it: the lifecycle status, plus the suspension.
pub(crate) fn sim_status(s: &Sim) -> String {
    if s.is_suspended() {
        format!("{}+suspended", s.status)
    } else {
        s.status.clone()
    }
}

/// The PATCH body for a SIM action.
pub(crate) fn patch_for(action: &Action) -> Option<SimPatch> {
    let mut p = SimPatch::default();
    match action {
        Action::Activate => p.status = Some("active".into()),
        Action::Deactivate => p.status = Some("available".into()),
        Action::Suspend => p.customer_suspend = Some(true),
        Action::Unsuspend => p.customer_suspend = Some(false),
        Action::SetPackage(id) => p.package_id = Some(*id),
        Action::SetPortfolio(id) => p.portfolio_id = Some(id.clone()),
        Action::Patch(patch) => return Some(patch.clone()),
        Action::SetAttribute { .. } | Action::DeleteAttribute { .. } | Action::Blocked(_) => {
            return None;
        }
    }
    Some(p)
}

/// Whether `sim` already shows what `action` asks for (an activation that answered
/// `pendingProvision` counts as done).
pub(crate) fn satisfied(action: &Action, sim: &Sim) -> bool {
    let Some(p) = patch_for(action) else {
        return false;
    };
    let status = match p.status.as_deref() {
        None => true,
        Some("active") => sim.status == "active" || sim.status == "pendingProvision",
        Some(s) => sim.status == s,
    };
    status
        && p.customer_suspend.is_none_or(|c| c == sim.customer_suspend)
        && p.package_id.is_none_or(|k| k == sim.package_id)
        && p.portfolio_id
            .as_ref()
            .is_none_or(|f| *f == sim.portfolio_id)
}

/// Why a row whose SIM already shows what it asks for is skipped.
pub(crate) fn skip_reason(action: &Action, sim: &Sim) -> String {
    match action {
        Action::Activate | Action::Deactivate => format!("already {}", sim.status),
        Action::Suspend => "already suspended".into(),
        Action::Unsuspend => "not suspended by the customer".into(),
        Action::SetPackage(p) => format!("already on package {p}"),
        Action::SetPortfolio(f) => format!("already in portfolio {f}"),
        Action::SetAttribute { .. } => "the attribute already has this value".into(),
        Action::DeleteAttribute { .. } => "the SIM has no attribute with this name".into(),
        Action::Patch(_) => "already as requested".into(),
        Action::Blocked(_) => String::new(),
    }
}

/// The value of the field a SIM action changes, as the results' `before` column shows it.
pub(crate) fn field_text(action: &Action, sim: &Sim) -> Option<String> {
    match action {
        Action::Activate | Action::Deactivate => Some(sim.status.clone()),
        Action::Suspend | Action::Unsuspend => Some(sim.customer_suspend.to_string()),
        Action::SetPackage(_) => Some(sim.package_id.to_string()),
        Action::SetPortfolio(_) => Some(sim.portfolio_id.clone()),
        Action::Patch(p) => Some(crate::input::action::patch_text(&SimPatch {
            status: p.status.as_ref().map(|_| sim.status.clone()),
            customer_suspend: p.customer_suspend.map(|_| sim.customer_suspend),
            package_id: p.package_id.map(|_| sim.package_id),
            portfolio_id: p.portfolio_id.as_ref().map(|_| sim.portfolio_id.clone()),
        })),
        Action::SetAttribute { .. } | Action::DeleteAttribute { .. } | Action::Blocked(_) => None,
    }
}

/// The SIM as a SIM action would leave it (for a preview's next row of the same SIM).
pub(crate) fn apply(action: &Action, sim: &Sim) -> Sim {
    let mut s = sim.clone();
    if let Some(p) = patch_for(action) {
        if let Some(st) = p.status {
            s.status = st;
        }
        if let Some(c) = p.customer_suspend {
            s.customer_suspend = c;
        }
        if let Some(k) = p.package_id {
            s.package_id = k;
        }
        if let Some(f) = p.portfolio_id {
            s.portfolio_id = f;
        }
    }
    s
}

/// The attributes as an attribute action would leave them.
pub(crate) fn apply_attrs(action: &Action, attrs: &[Attribute], icc: &str) -> Vec<Attribute> {
    let mut v = attrs.to_vec();
    match action {
        Action::SetAttribute { name, value } => match v.iter_mut().find(|a| &a.name == name) {
            Some(a) => a.value = value.clone(),
            None => v.push(Attribute {
                icc_attribute_id: 0,
                icc_id: icc.to_owned(),
                name: name.clone(),
                value: value.clone(),
                created_date: None,
                modified_date: None,
            }),
        },
        Action::DeleteAttribute { name } => v.retain(|a| &a.name != name),
        _ => {}
    }
    v
}

/// A predicted outcome: verdict, error code, reason (borrowed when it is fixed text, so a
/// prediction that is only compared costs no allocation).
pub(crate) type Prediction = (Verdict, Option<i64>, Cow<'static, str>);

/// Predicts what the API will do with `action` on `sim` (with its attributes for attribute
/// actions), following the contract's rule order.
pub(crate) fn predict(action: &Action, sim: &Sim, attrs: &[Attribute]) -> Prediction {
    let fail = |code: i64, why: &'static str| (Verdict::Failed, Some(code), Cow::Borrowed(why));
    let skip = || (Verdict::Skipped, None, Cow::Owned(skip_reason(action, sim)));
    let ok = |why: &'static str| (Verdict::Ok, None, Cow::Borrowed(why));
    let suspended = sim.is_suspended();
    match action {
        Action::SetAttribute { name, value } => match attrs.iter().find(|a| &a.name == name) {
            Some(a) if &a.value == value => skip(),
            _ if suspended => fail(
                codes::SUSPENDED,
                "the SIM is suspended; attributes cannot be changed",
            ),
            Some(_) => ok("would update the attribute"),
            None => ok("would create the attribute"),
        },
        Action::DeleteAttribute { name } => match attrs.iter().find(|a| &a.name == name) {
            None => skip(),
            Some(_) if suspended => fail(
                codes::SUSPENDED,
                "the SIM is suspended; attributes cannot be changed",
            ),
            Some(_) => ok("would delete the attribute"),
        },
        Action::Blocked(why) => (Verdict::Failed, None, Cow::Owned(format!("blocked: {why}"))),
        // An earlier activation is under way: nothing to send (`--wait-active` polls it).
        Action::Activate if sim.status == "pendingProvision" => skip(),
        _ => patch_for(action)
            .and_then(|p| predict_patch(&p, sim, would(action)))
            .unwrap_or_else(skip),
    }
}

/// What a SIM action that goes through would do, in words.
fn would(action: &Action) -> &'static str {
    match action {
        Action::Activate => "would activate",
        Action::Deactivate => "would deactivate",
        Action::Suspend => "would suspend",
        Action::Unsuspend => {
            "would unsuspend (refused if inside the provider's suspend-settle window)"
        }
        _ => "would change it (package and portfolio links are checked by the provider)",
    }
}

/// Predicts a PATCH of `p` on `sim`, in the contract's rule order (11 to 15; the catalogue's
/// rules are the provider's); `None`: nothing to change (the row is skipped).
fn predict_patch(p: &SimPatch, sim: &Sim, ok_text: &'static str) -> Option<Prediction> {
    let fail = |code: i64, why: &'static str| (Verdict::Failed, Some(code), Cow::Borrowed(why));
    let status_change = p.status.as_ref().is_some_and(|s| *s != sim.status);
    let cs_change = p
        .customer_suspend
        .is_some_and(|c| c != sim.customer_suspend);
    let package_change = p.package_id.is_some_and(|k| k != sim.package_id);
    let other = status_change
        || package_change
        || p.portfolio_id
            .as_ref()
            .is_some_and(|f| *f != sim.portfolio_id);
    let resulting_status = p.status.as_deref().unwrap_or(&sim.status);
    Some(if sim.status == "pendingProvision" {
        fail(codes::WRONG_STATUS, "the SIM is pendingProvision")
    } else if other && sim.is_suspended() {
        fail(codes::SUSPENDED, "the SIM is suspended")
    } else if !other && !cs_change {
        return None;
    } else if cs_change && p.customer_suspend == Some(true) && resulting_status != "active" {
        fail(codes::WRONG_STATUS, "only an active SIM can be suspended")
    } else if package_change && sim.status == "active" {
        fail(
            codes::WRONG_STATUS,
            "the package of an active SIM cannot change",
        )
    } else {
        (Verdict::Ok, None, Cow::Borrowed(ok_text))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sim_action_has_a_patch_that_satisfies_it() {
        let base: Sim = serde_json::from_str(
            r#"{"iccId":"8944500990000012342","status":"available","customerSuspend":false,"adminSuspend":false,"systemSuspend":false,"packageId":1,"portfolioId":"a","mnoId":2}"#,
        )
        .unwrap();
        for a in [
            Action::Activate,
            Action::Deactivate,
            Action::Suspend,
            Action::Unsuspend,
            Action::SetPackage(7),
            Action::SetPortfolio("b".into()),
        ] {
            let p = patch_for(&a).unwrap();
            let mut s = base.clone();
            if let Some(st) = p.status {
                s.status = st;
            }
            if let Some(c) = p.customer_suspend {
                s.customer_suspend = c;
            }
            if let Some(k) = p.package_id {
                s.package_id = k;
            }
            if let Some(f) = p.portfolio_id {
                s.portfolio_id = f;
            }
            assert!(satisfied(&a, &s), "{a:?}");
        }
        assert!(patch_for(&Action::DeleteAttribute { name: "n".into() }).is_none());
    }

    fn sim(status: &str, cs: bool, admin: bool, pkg: i64) -> Sim {
        Sim {
            icc_id: "8944500990000012342".into(),
            sim_id: None,
            eid: None,
            status: status.into(),
            customer_suspend: cs,
            admin_suspend: admin,
            system_suspend: false,
            package_id: pkg,
            portfolio_id: "pf".into(),
            mno_id: 1,
            imsi: None,
            msisdn: None,
            modified_date: None,
        }
    }

    #[test]
    fn predictions_follow_the_rules_the_state_decides() {
        let v = |a: &Action, s: &Sim| predict(a, s, &[]).0;
        let c = |a: &Action, s: &Sim| predict(a, s, &[]).1;
        assert_eq!(
            v(&Action::Activate, &sim("active", false, false, 1)),
            Verdict::Skipped
        );
        assert_eq!(
            v(&Action::Activate, &sim("available", false, false, 1)),
            Verdict::Ok
        );
        assert_eq!(
            c(&Action::Deactivate, &sim("active", true, false, 1)),
            Some(16000)
        );
        assert_eq!(
            c(&Action::SetPackage(2), &sim("active", false, false, 1)),
            Some(6046)
        );
        assert_eq!(
            v(&Action::SetPackage(1), &sim("active", false, false, 1)),
            Verdict::Skipped
        );
        assert_eq!(
            c(&Action::Suspend, &sim("available", false, false, 1)),
            Some(6046)
        );
        // An activation under way is not sent again; anything else is refused.
        assert_eq!(
            v(&Action::Activate, &sim("pendingProvision", false, false, 1)),
            Verdict::Skipped
        );
        assert_eq!(
            c(
                &Action::Deactivate,
                &sim("pendingProvision", false, false, 1)
            ),
            Some(6046)
        );
        assert_eq!(
            v(&Action::Unsuspend, &sim("active", true, true, 1)),
            Verdict::Ok
        );
        let a = Attribute {
            icc_attribute_id: 1,
            icc_id: "x".into(),
            name: "n".into(),
            value: "v".into(),
            created_date: None,
            modified_date: None,
        };
        assert_eq!(
            predict(
                &Action::SetAttribute {
                    name: "n".into(),
                    value: "v".into()
                },
                &sim("active", false, false, 1),
                std::slice::from_ref(&a)
            )
            .0,
            Verdict::Skipped
        );
        assert_eq!(
            predict(
                &Action::DeleteAttribute { name: "n".into() },
                &sim("active", true, false, 1),
                &[a]
            )
            .1,
            Some(16000)
        );
    }
}
