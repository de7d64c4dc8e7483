//! Desired state against live state: the calls that take one SIM from what it is to what a
//! desired-state file says, in an order the provider accepts, or why they cannot be made.
//!
//! Guarantees: no call is planned for a field that already has its value (an unchanged SIM
//! costs nothing); a customer suspension that must go is lifted first and one that must come
//! is set last, after the attribute writes (a suspended SIM takes no other change); status,
//! package and portfolio go in one PATCH when they can, and a package change on an active SIM
//! that becomes available goes after the deactivation; a change no order allows (any change
//! to an admin- or system-suspended SIM, a SIM that stays customer-suspended, a package
//! change on a SIM that stays active, a suspension of a SIM that is not active) is planned
//! `blocked` with the reason and never sent.

use crate::input::Action;
use crate::input::desired::Desired;
use crate::model::{Attribute, Sim, SimPatch};

/// One planned call: the action, and what the field holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    pub(crate) action: Action,
    pub(crate) current: String,
    /// The changes it makes, as the plan's counts name them (one per field).
    pub(crate) changes: Vec<String>,
}

/// A read-only column whose value is not the SIM's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadOnly {
    pub(crate) column: &'static str,
    pub(crate) file: String,
    pub(crate) live: String,
}

/// The value of a read-only column as `simbulk export` writes it; `None` for columns that the
/// provider changes by itself (`msisdn` with the status, `modifiedDate` with every change),
/// which are never compared.
fn read_only_value(column: &str, s: &Sim) -> Option<String> {
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    Some(match column {
        "simId" => o(&s.sim_id),
        "eid" => o(&s.eid),
        "adminSuspend" => s.admin_suspend.to_string(),
        "systemSuspend" => s.system_suspend.to_string(),
        "mnoId" => s.mno_id.to_string(),
        "imsi" => o(&s.imsi),
        _ => return None,
    })
}

/// The first read-only column the file gives another value than the SIM has. A suspension
/// the provider set that the file shows and the SIM no longer has was lifted since: the SIM
/// is on its way out of it, which asks for no change.
pub(crate) fn read_only_edit(sim: &Sim, want: &Desired) -> Option<ReadOnly> {
    want.read_only.iter().find_map(|(column, file)| {
        let live = read_only_value(column, sim)?;
        let lifted = matches!(*column, "adminSuspend" | "systemSuspend")
            && file.eq_ignore_ascii_case("true")
            && live == "false";
        (!lifted && !live.eq_ignore_ascii_case(file)).then(|| ReadOnly {
            column,
            file: file.clone(),
            live,
        })
    })
}

fn blocked(why: String) -> Call {
    Call {
        changes: vec![format!("blocked: {why}")],
        action: Action::Blocked(why),
        current: String::new(),
    }
}

/// The calls that take `sim` (with `attrs` when the file has attribute columns) to `want`.
pub(crate) fn plan(sim: &Sim, attrs: &[Attribute], want: &Desired) -> Vec<Call> {
    if sim.status == crate::api::super_sim::SCHEDULED {
        // What it will be is the provider's to say: nothing is planned over a change.
        return vec![blocked(
            "a change of this SIM is under way at the provider (scheduled); run simbulk apply again once it has settled".into(),
        )];
    }
    if want.pending && sim.status == "available" {
        return vec![blocked(
            "the file says pendingProvision, a status the provider sets while an activation is under way, and the SIM is available: write active to activate it".into(),
        )];
    }
    let attr_calls = attribute_calls(attrs, want);
    let f = &want.fields;
    let status_change = f
        .status
        .as_ref()
        .is_some_and(|s| *s != sim.status && !(s == "active" && sim.status == "pendingProvision"));
    let package_change = f.package_id.is_some_and(|k| k != sim.package_id);
    let portfolio_change = f
        .portfolio_id
        .as_ref()
        .is_some_and(|p| *p != sim.portfolio_id);
    let fields_change = status_change || package_change || portfolio_change;
    let cs_now = sim.customer_suspend;
    let cs_want = f.customer_suspend.unwrap_or(cs_now);
    if !fields_change && attr_calls.is_empty() && cs_now == cs_want {
        return Vec::new();
    }
    if sim.admin_suspend || sim.system_suspend {
        let who = if sim.admin_suspend { "admin" } else { "system" };
        return vec![blocked(format!(
            "the SIM is {who}-suspended; the provider accepts no change to it"
        ))];
    }
    if cs_now && cs_want && (fields_change || !attr_calls.is_empty()) {
        return vec![blocked(
            "the SIM stays customer-suspended, and a suspended SIM takes no other change; set customerSuspend false to change it".into(),
        )];
    }
    let mut calls = Vec::new();
    if cs_now && !cs_want {
        calls.push(Call {
            action: Action::Unsuspend,
            current: "true".into(),
            changes: vec!["unsuspend".into()],
        });
    }
    if fields_change {
        if sim.status == "pendingProvision" {
            calls.push(blocked(
                "the SIM is pendingProvision (its activation is under way); apply again once it is active".into(),
            ));
        } else {
            calls.extend(field_calls(
                sim,
                f,
                status_change,
                package_change,
                portfolio_change,
            ));
        }
    }
    calls.extend(attr_calls);
    if !cs_now && cs_want {
        let status_after = if status_change {
            f.status.as_deref()
        } else {
            Some(sim.status.as_str())
        };
        calls.push(if status_after == Some("active") {
            Call {
                action: Action::Suspend,
                current: "false".into(),
                changes: vec!["suspend".into()],
            }
        } else {
            blocked("only an active SIM can be suspended; set status active to suspend it".into())
        });
    }
    calls
}

/// Status, package and portfolio: one PATCH when the provider takes them together; the
/// deactivation first when a SIM that is active must change package.
fn field_calls(
    sim: &Sim,
    f: &SimPatch,
    status_change: bool,
    package_change: bool,
    portfolio_change: bool,
) -> Vec<Call> {
    let mut want = SimPatch {
        status: f.status.clone().filter(|_| status_change),
        customer_suspend: None,
        package_id: f.package_id.filter(|_| package_change),
        portfolio_id: f.portfolio_id.clone().filter(|_| portfolio_change),
    };
    let label = |p: &SimPatch| {
        let mut v = Vec::new();
        if let Some(s) = &p.status {
            v.push(format!("status {} → {s}", sim.status));
        }
        if let Some(k) = p.package_id {
            v.push(format!("packageId {} → {k}", sim.package_id));
        }
        if let Some(pf) = &p.portfolio_id {
            v.push(format!("portfolioId {} → {pf}", sim.portfolio_id));
        }
        v
    };
    let mut calls = Vec::new();
    if package_change && sim.status == "active" {
        if want.status.as_deref() != Some("available") {
            return vec![blocked(format!(
                "the package of an active SIM cannot change (to {}); set status available to move it",
                f.package_id.unwrap_or_default()
            ))];
        }
        // The deactivation first: the package is checked against the status before the call.
        let first = SimPatch {
            status: want.status.take(),
            ..SimPatch::default()
        };
        calls.push(call(sim, first, &label));
    }
    if want != SimPatch::default() {
        calls.push(call(sim, want, &label));
    }
    calls
}

/// The action for `p`: a single-field action where one field changes, else a `patch`.
fn call(sim: &Sim, p: SimPatch, label: &dyn Fn(&SimPatch) -> Vec<String>) -> Call {
    let changes = label(&p);
    let current = super::rules::field_text(&Action::Patch(p.clone()), sim).unwrap_or_default();
    let action = match (&p.status, p.package_id, &p.portfolio_id) {
        (Some(s), None, None) if s == "active" => Action::Activate,
        (Some(_), None, None) => Action::Deactivate,
        (None, Some(k), None) => Action::SetPackage(k),
        (None, None, Some(pf)) => Action::SetPortfolio(pf.clone()),
        _ => Action::Patch(p),
    };
    let current = match current.split_once('=') {
        Some((_, v)) if !current.contains(';') => v.to_owned(),
        _ => current,
    };
    Call {
        action,
        current,
        changes,
    }
}

/// The attribute writes: a set where the value differs, a delete where one must go.
fn attribute_calls(attrs: &[Attribute], want: &Desired) -> Vec<Call> {
    let mut calls = Vec::new();
    for (name, value) in &want.attrs {
        let now = attrs
            .iter()
            .find(|a| &a.name == name)
            .map(|a| a.value.as_str());
        match (value, now) {
            (Some(v), now) if now != Some(v.as_str()) => calls.push(Call {
                action: Action::SetAttribute {
                    name: name.clone(),
                    value: v.clone(),
                },
                current: now.unwrap_or_default().to_owned(),
                changes: vec![format!("attr {name} set")],
            }),
            (None, Some(now)) => calls.push(Call {
                action: Action::DeleteAttribute { name: name.clone() },
                current: now.to_owned(),
                changes: vec![format!("attr {name} delete")],
            }),
            _ => {}
        }
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(status: &str, cs: bool, admin: bool, pkg: i64) -> Sim {
        serde_json::from_value(serde_json::json!({
            "iccId": "8944500990000012342", "status": status, "customerSuspend": cs,
            "adminSuspend": admin, "systemSuspend": false, "packageId": pkg,
            "portfolioId": "pf-a", "mnoId": 1, "imsi": "2345"
        }))
        .unwrap()
    }

    fn want(f: SimPatch, attrs: &[(&str, Option<&str>)]) -> Desired {
        Desired {
            fields: f,
            attrs: attrs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.map(str::to_owned)))
                .collect(),
            read_only: Vec::new(),
            pending: false,
        }
    }

    fn actions(calls: &[Call]) -> Vec<String> {
        calls
            .iter()
            .map(|c| format!("{} {}", c.action.kind().name(), c.action.value_text()))
            .collect()
    }

    #[test]
    fn nothing_is_planned_for_values_already_there() {
        let s = sim("active", false, false, 1);
        let w = want(
            SimPatch {
                status: Some("active".into()),
                customer_suspend: Some(false),
                package_id: Some(1),
                portfolio_id: Some("pf-a".into()),
            },
            &[("site", Some("x"))],
        );
        let attrs = vec![Attribute {
            icc_attribute_id: 1,
            icc_id: s.icc_id.clone(),
            name: "site".into(),
            value: "x".into(),
            created_date: None,
            modified_date: None,
        }];
        assert!(plan(&s, &attrs, &w).is_empty());
    }

    #[test]
    fn a_suspension_is_lifted_first_and_set_last() {
        let lifted = plan(
            &sim("available", true, false, 1),
            &[],
            &want(
                SimPatch {
                    customer_suspend: Some(false),
                    package_id: Some(2),
                    ..SimPatch::default()
                },
                &[],
            ),
        );
        assert_eq!(actions(&lifted), vec!["unsuspend ", "set-package 2"]);
        let set = plan(
            &sim("active", false, false, 1),
            &[],
            &want(
                SimPatch {
                    customer_suspend: Some(true),
                    ..SimPatch::default()
                },
                &[("site", Some("y"))],
            ),
        );
        assert_eq!(actions(&set), vec!["set-attribute y", "suspend "]);
    }

    #[test]
    fn fields_go_together_where_they_can_and_apart_where_they_must() {
        let together = plan(
            &sim("available", false, false, 1),
            &[],
            &want(
                SimPatch {
                    status: Some("active".into()),
                    package_id: Some(2),
                    ..SimPatch::default()
                },
                &[],
            ),
        );
        assert_eq!(actions(&together), vec!["patch status=active;packageId=2"]);
        assert_eq!(together[0].changes.len(), 2);
        assert_eq!(together[0].current, "status=available;packageId=1");
        let apart = plan(
            &sim("active", false, false, 1),
            &[],
            &want(
                SimPatch {
                    status: Some("available".into()),
                    package_id: Some(2),
                    ..SimPatch::default()
                },
                &[],
            ),
        );
        assert_eq!(actions(&apart), vec!["deactivate ", "set-package 2"]);
        assert_eq!(apart[0].current, "active");
    }

    #[test]
    fn what_no_order_allows_is_blocked() {
        let change = |s: &Sim, f: SimPatch| actions(&plan(s, &[], &want(f, &[])));
        let pkg = SimPatch {
            package_id: Some(9),
            ..SimPatch::default()
        };
        assert!(
            change(&sim("active", false, true, 1), pkg.clone())[0]
                .starts_with("blocked the SIM is admin-suspended")
        );
        assert!(
            change(&sim("active", true, false, 1), pkg.clone())[0]
                .starts_with("blocked the SIM stays customer-suspended")
        );
        assert!(
            change(&sim("active", false, false, 1), pkg)[0]
                .starts_with("blocked the package of an active SIM")
        );
        let suspend_available = SimPatch {
            customer_suspend: Some(true),
            ..SimPatch::default()
        };
        assert!(
            change(&sim("available", false, false, 1), suspend_available)[0]
                .starts_with("blocked only an active SIM")
        );
        // Nothing to change: not blocked, even on an admin-suspended SIM.
        assert!(change(&sim("active", false, true, 1), SimPatch::default()).is_empty());
    }

    #[test]
    fn a_read_only_edit_is_found() {
        let s = sim("active", false, false, 1);
        let mut w = want(SimPatch::default(), &[]);
        w.read_only = vec![("imsi", "2345".into()), ("modifiedDate", "x".into())];
        assert_eq!(read_only_edit(&s, &w), None);
        w.read_only.push(("mnoId", "999".into()));
        assert_eq!(read_only_edit(&s, &w).unwrap().column, "mnoId");
    }

    #[test]
    fn pending_provision_in_the_file_asks_nothing_of_a_sim_in_it_or_past_it() {
        let pending = Desired {
            pending: true,
            ..want(SimPatch::default(), &[])
        };
        let mut s = sim("pendingProvision", false, false, 1);
        assert!(plan(&s, &[], &pending).is_empty());
        s.status = "active".into();
        assert!(plan(&s, &[], &pending).is_empty());
        s.status = "available".into();
        let calls = plan(&s, &[], &pending);
        assert!(
            calls.len() == 1 && matches!(calls[0].action, Action::Blocked(_)),
            "{calls:?}"
        );
        // A suspension the provider has lifted since the export asks for nothing.
        let mut lifted = want(SimPatch::default(), &[]);
        lifted.read_only = vec![("adminSuspend", "true".into())];
        assert!(read_only_edit(&sim("active", false, false, 1), &lifted).is_none());
        lifted.read_only = vec![("adminSuspend", "false".into())];
        let suspended = sim("active", false, true, 1);
        assert!(read_only_edit(&suspended, &lifted).is_some());
    }
}
