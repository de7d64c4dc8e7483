//! `PATCH /api/v2/sim/{iccId}`: its body's shape (rules 6 to 10) and the business rules
//! 11 to 21, in the contract's order, then the change.

use serde_json::{Value, json};

use crate::model::codes;

use super::super::state::{PackageStatus, PortfolioState, SimRecord};
use super::{Change, Ctx, RuleError, json_object};

/// A SIM PATCH body that passed the shape rules (6 to 10).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SimPatchBody {
    pub(crate) status: Option<String>,
    pub(crate) customer_suspend: Option<bool>,
    pub(crate) package_id: Option<i64>,
    pub(crate) portfolio_id: Option<String>,
}

const READ_ONLY_SIM_FIELDS: [&str; 9] = [
    "iccId",
    "simId",
    "eid",
    "adminSuspend",
    "systemSuspend",
    "mnoId",
    "imsi",
    "msisdn",
    "modifiedDate",
];

/// Rules 6 to 10 of `PATCH /api/v2/sim/{iccId}`.
pub(crate) fn parse_sim_patch(body: &[u8]) -> Result<SimPatchBody, RuleError> {
    let obj = json_object(body)?;
    let mut p = SimPatchBody::default();
    let mut null_package = false;
    for (k, v) in &obj {
        match (k.as_str(), v) {
            ("status", Value::String(s)) => p.status = Some(s.clone()),
            ("customerSuspend", Value::Bool(b)) => p.customer_suspend = Some(*b),
            ("packageId", Value::Null) => null_package = true,
            ("packageId", Value::Number(n)) if n.as_i64().is_some() => p.package_id = n.as_i64(),
            ("portfolioId", Value::String(s)) => p.portfolio_id = Some(s.clone()),
            ("status" | "customerSuspend" | "packageId" | "portfolioId", _) => {
                return Err(RuleError::field(k, "wrong type"));
            }
            (f, _) if READ_ONLY_SIM_FIELDS.contains(&f) => {
                return Err(RuleError::field(k, "read-only"));
            }
            _ => return Err(RuleError::field(k, "unknown field")),
        }
    }
    if null_package {
        return Err(RuleError::new(
            codes::NULL_PACKAGE,
            "packageId must not be null",
            json!({}),
        ));
    }
    if obj.is_empty() {
        return Err(RuleError::new(
            codes::EMPTY_BODY,
            "The request changes nothing",
            json!({}),
        ));
    }
    if let Some(s) = &p.status
        && s != "active"
        && s != "available"
    {
        return Err(RuleError::new(
            codes::STATUS_NOT_ALLOWED,
            "status must be active or available",
            json!({"field": "status", "value": s, "allowed": ["active", "available"]}),
        ));
    }
    Ok(p)
}

/// Which flags suspend the SIM, for the 16000 error's details.
pub(super) fn suspended_by(rec: &SimRecord) -> Vec<&'static str> {
    let s = &rec.sim;
    [
        (s.customer_suspend, "customer"),
        (s.admin_suspend, "admin"),
        (s.system_suspend, "system"),
    ]
    .into_iter()
    .filter_map(|(on, who)| on.then_some(who))
    .collect()
}

/// Rules 11 to 21 of `PATCH /api/v2/sim/{iccId}`, then the change itself.
pub(crate) fn apply_sim_patch(
    rec: &mut SimRecord,
    p: &SimPatchBody,
    ctx: &Ctx<'_>,
) -> Result<Vec<Change>, RuleError> {
    let Some(w) = check_state(rec, p, ctx)? else {
        return Ok(Vec::new());
    };
    let sim = &rec.sim;
    let resulting_portfolio = w.portfolio.as_deref().unwrap_or(&sim.portfolio_id);
    if let Some(pf) = &w.portfolio {
        check_portfolio(pf, ctx)?;
    }
    if w.package.is_some() || w.portfolio.is_some() {
        check_package(
            sim,
            p.package_id,
            resulting_portfolio,
            w.portfolio.is_some(),
            ctx,
        )?;
    }
    Ok(apply(rec, w, ctx))
}

/// What a request changes (the fields that differ from the SIM's values).
struct Wanted {
    status: Option<String>,
    suspend: Option<bool>,
    package: Option<i64>,
    portfolio: Option<String>,
}

fn wrong_status(icc: &str, required: &str, actual: &str) -> RuleError {
    RuleError::new(
        codes::WRONG_STATUS,
        "The SIM's current status does not allow this change",
        json!({"iccId": icc, "required": required, "actual": actual}),
    )
}

/// Rules 11 to 15: the SIM's state against what is asked. `None`: nothing to change and no
/// strict no-op.
fn check_state(
    rec: &SimRecord,
    p: &SimPatchBody,
    ctx: &Ctx<'_>,
) -> Result<Option<Wanted>, RuleError> {
    let sim = &rec.sim;
    let icc = sim.icc_id.as_str();
    // 11
    if sim.status == "pendingProvision" {
        return Err(wrong_status(icc, "active or available", &sim.status));
    }
    if p.customer_suspend == Some(false) && rec.settle_until.is_some_and(|t| ctx.now < t) {
        return Err(wrong_status(icc, "settled suspension", "suspending"));
    }
    let w = Wanted {
        status: p.status.clone().filter(|s| *s != sim.status),
        suspend: p.customer_suspend.filter(|v| *v != sim.customer_suspend),
        package: p.package_id.filter(|v| *v != sim.package_id),
        portfolio: p.portfolio_id.clone().filter(|v| *v != sim.portfolio_id),
    };
    // 12
    if sim.is_suspended() && (w.status.is_some() || w.package.is_some() || w.portfolio.is_some()) {
        return Err(RuleError::new(
            codes::SUSPENDED,
            "The SIM is suspended; only customerSuspend may be changed",
            json!({"iccId": icc, "suspendedBy": suspended_by(rec)}),
        ));
    }
    // 13
    if w.status.is_none() && w.suspend.is_none() && w.package.is_none() && w.portfolio.is_none() {
        return if ctx.strict_no_op {
            Err(no_op(icc, p))
        } else {
            Ok(None)
        };
    }
    let resulting_status = w.status.as_deref().unwrap_or(&sim.status);
    // 14
    if p.customer_suspend == Some(true) && resulting_status != "active" {
        return Err(wrong_status(icc, "active", resulting_status));
    }
    // 15
    if w.package.is_some() && sim.status == "active" {
        return Err(wrong_status(icc, "available", &sim.status));
    }
    Ok(Some(w))
}

/// Rule 13 in strict mode: every field already has the requested value.
fn no_op(icc: &str, p: &SimPatchBody) -> RuleError {
    let (field, value) = if let Some(s) = &p.status {
        ("status", json!(s))
    } else if let Some(c) = p.customer_suspend {
        ("customerSuspend", json!(c))
    } else if let Some(k) = p.package_id {
        ("packageId", json!(k))
    } else {
        ("portfolioId", json!(p.portfolio_id))
    };
    RuleError::new(
        codes::ALREADY_DONE,
        "Nothing to change; the SIM already has the requested values",
        json!({"iccId": icc, "field": field, "value": value}),
    )
}

/// Rules 16 and 17: the target portfolio exists in the caller's sphere and is active.
fn check_portfolio(pf: &str, ctx: &Ctx<'_>) -> Result<(), RuleError> {
    let found = ctx
        .world
        .portfolios
        .get(pf)
        .filter(|f| ctx.world.in_sphere(ctx.sphere, f.id));
    let Some(f) = found else {
        return Err(RuleError::new(
            codes::PORTFOLIO_OUT_OF_SPHERE,
            "The portfolio is outside the caller's scope",
            json!({"portfolioId": pf}),
        ));
    };
    match f.state {
        PortfolioState::Deleted => Err(RuleError::new(
            codes::PORTFOLIO_DELETED,
            "The target portfolio has been deleted",
            json!({"portfolioId": pf}),
        )),
        PortfolioState::Suspended => Err(RuleError::new(
            codes::PORTFOLIO_NOT_ACTIVE,
            "The target portfolio is not active",
            json!({"portfolioId": pf}),
        )),
        PortfolioState::Active => Ok(()),
    }
}

/// Rules 18 to 21: the package (given, or kept across a portfolio move) is linked to the
/// resulting portfolio, active, and of the SIM's operator.
fn check_package(
    sim: &crate::model::Sim,
    given: Option<i64>,
    portfolio: &str,
    moving: bool,
    ctx: &Ctx<'_>,
) -> Result<(), RuleError> {
    let Some(pid) = given else {
        // 21
        let linked = ctx
            .world
            .packages
            .get(&sim.package_id)
            .is_some_and(|k| k.portfolios.contains(&portfolio));
        if moving && !linked {
            return Err(RuleError::new(
                codes::PACKAGE_UNLINKED_AFTER_MOVE,
                "The SIM's package is not offered in the target portfolio; give a packageId",
                json!({"packageId": sim.package_id, "portfolioId": portfolio}),
            ));
        }
        return Ok(());
    };
    let pkg = ctx
        .world
        .packages
        .get(&pid)
        .filter(|k| k.portfolios.contains(&portfolio));
    let Some(pkg) = pkg else {
        return Err(RuleError::new(
            codes::PACKAGE_NOT_LINKED,
            "The package is not offered in the SIM's portfolio",
            json!({"packageId": pid, "portfolioId": portfolio}),
        ));
    };
    if pkg.status != PackageStatus::Active {
        return Err(RuleError::new(
            codes::PACKAGE_NOT_ACTIVE,
            "The package cannot take SIMs in its current status",
            json!({"packageId": pid, "packageStatus": format!("{:?}", pkg.status).to_lowercase()}),
        ));
    }
    if pkg.mno_id != sim.mno_id {
        return Err(RuleError::new(
            codes::MNO_MISMATCH,
            "The package belongs to a different network operator than the SIM",
            json!({"simMnoId": sim.mno_id, "packageMnoId": pkg.mno_id}),
        ));
    }
    Ok(())
}

/// The accepted change, applied; the list of fields changed, for the ledger.
fn apply(rec: &mut SimRecord, w: Wanted, ctx: &Ctx<'_>) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut change = |field, old: Value, new: Value| changes.push(Change { field, old, new });
    let sim = &mut rec.sim;
    if let Some(s) = w.status {
        let new = if s == "active" && !ctx.activation_delay.is_zero() {
            rec.active_at = Some(ctx.now + ctx.activation_delay);
            "pendingProvision".to_owned()
        } else {
            s
        };
        change("status", json!(sim.status), json!(new));
        sim.status = new;
    }
    if let Some(c) = w.suspend {
        change("customerSuspend", json!(sim.customer_suspend), json!(c));
        sim.customer_suspend = c;
        if c && !ctx.suspend_settle.is_zero() {
            rec.settle_until = Some(ctx.now + ctx.suspend_settle);
        }
    }
    if let Some(k) = w.package {
        change("packageId", json!(sim.package_id), json!(k));
        sim.package_id = k;
    }
    if let Some(f) = w.portfolio {
        change("portfolioId", json!(sim.portfolio_id), json!(f));
        sim.portfolio_id = f;
    }
    sim.modified_date = Some(ctx.now_text.into());
    changes
}
