//! The contract's business rules, as pure functions over one SIM's record.
//!
//! Guarantees: rules run in the contract's order and the first failing rule wins; every
//! rule is evaluated against the state *before* the request; a refused request changes
//! nothing; an accepted one returns the list of field changes it made (for the ledger).

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::model::{Attribute, codes};

use super::state::{PackageStatus, PortfolioState, SimRecord, World};

/// A refusal: HTTP status plus the contract's `Error` body.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    pub status: u16,
    pub code: i64,
    pub tag: &'static str,
    pub message: String,
    pub details: Value,
}

impl RuleError {
    pub fn new(code: i64, message: impl Into<String>, details: Value) -> Self {
        let (status, tag) = match code {
            codes::NOT_FOUND => (404, "not_found"),
            codes::BAD_BODY => (400, "bad_request"),
            codes::PERMISSION => (403, "invalid_request_error"),
            _ => (400, "invalid_request_error"),
        };
        Self {
            status,
            code,
            tag,
            message: message.into(),
            details,
        }
    }

    pub fn field(field: &str, reason: &str) -> Self {
        Self::new(
            codes::FIELD_REJECTED,
            "Field rejected",
            json!({"field": field, "reason": reason}),
        )
    }
}

/// One field changed by an accepted request.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub field: &'static str,
    pub old: Value,
    pub new: Value,
}

/// The knobs and the caller that rules depend on.
pub struct Ctx<'a> {
    pub world: &'a World,
    pub sphere: &'a str,
    pub now: Instant,
    pub now_text: &'a str,
    pub strict_no_op: bool,
    pub activation_delay: Duration,
    pub suspend_settle: Duration,
    pub attribute_writes_on_suspended: bool,
}

/// A SIM PATCH body that passed the shape rules (6 to 10).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimPatchBody {
    pub status: Option<String>,
    pub customer_suspend: Option<bool>,
    pub package_id: Option<i64>,
    pub portfolio_id: Option<String>,
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

fn json_object(body: &[u8]) -> Result<Map<String, Value>, RuleError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(RuleError::new(
            codes::BAD_BODY,
            "The request body must be a JSON object",
            json!({}),
        )),
    }
}

/// Rules 6 to 10 of `PATCH /api/v2/sim/{iccId}`.
pub fn parse_sim_patch(body: &[u8]) -> Result<SimPatchBody, RuleError> {
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

/// Turns a due `pendingProvision` into `active`; returns the change for the ledger.
pub fn settle(rec: &mut SimRecord, now: Instant, now_text: &str) -> Option<Change> {
    match rec.active_at {
        Some(at) if at <= now && rec.sim.status == "pendingProvision" => {
            rec.active_at = None;
            rec.sim.status = "active".into();
            rec.sim.modified_date = Some(now_text.into());
            Some(Change {
                field: "status",
                old: json!("pendingProvision"),
                new: json!("active"),
            })
        }
        _ => None,
    }
}

fn suspended_by(rec: &SimRecord) -> Vec<&'static str> {
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
pub fn apply_sim_patch(
    rec: &mut SimRecord,
    p: &SimPatchBody,
    ctx: &Ctx<'_>,
) -> Result<Vec<Change>, RuleError> {
    let sim = &rec.sim;
    let icc = sim.icc_id.clone();
    let wrong_status = |required: &str, actual: &str| {
        RuleError::new(
            codes::WRONG_STATUS,
            "The SIM's current status does not allow this change",
            json!({"iccId": icc, "required": required, "actual": actual}),
        )
    };
    // 11
    if sim.status == "pendingProvision" {
        return Err(wrong_status("active or available", &sim.status));
    }
    if p.customer_suspend == Some(false) && rec.settle_until.is_some_and(|t| ctx.now < t) {
        return Err(wrong_status("settled suspension", "suspending"));
    }
    let status = p.status.as_ref().filter(|s| **s != sim.status);
    let suspend = p.customer_suspend.filter(|v| *v != sim.customer_suspend);
    let package = p.package_id.filter(|v| *v != sim.package_id);
    let portfolio = p.portfolio_id.as_ref().filter(|v| **v != sim.portfolio_id);
    // 12
    if sim.is_suspended() && (status.is_some() || package.is_some() || portfolio.is_some()) {
        return Err(RuleError::new(
            codes::SUSPENDED,
            "The SIM is suspended; only customerSuspend may be changed",
            json!({"iccId": icc, "suspendedBy": suspended_by(rec)}),
        ));
    }
    // 13
    if status.is_none() && suspend.is_none() && package.is_none() && portfolio.is_none() {
        if ctx.strict_no_op {
            let (field, value) = if let Some(s) = &p.status {
                ("status", json!(s))
            } else if let Some(c) = p.customer_suspend {
                ("customerSuspend", json!(c))
            } else if let Some(k) = p.package_id {
                ("packageId", json!(k))
            } else {
                ("portfolioId", json!(p.portfolio_id))
            };
            return Err(RuleError::new(
                codes::ALREADY_DONE,
                "Nothing to change; the SIM already has the requested values",
                json!({"iccId": icc, "field": field, "value": value}),
            ));
        }
        return Ok(Vec::new());
    }
    let resulting_status = status.unwrap_or(&sim.status).clone();
    // 14
    if p.customer_suspend == Some(true) && resulting_status != "active" {
        return Err(wrong_status("active", &resulting_status));
    }
    // 15
    if package.is_some() && sim.status == "active" {
        return Err(wrong_status("available", &sim.status));
    }
    // 16, 17
    let resulting_portfolio = portfolio.unwrap_or(&sim.portfolio_id).clone();
    if let Some(pf) = portfolio {
        let found = ctx
            .world
            .portfolios
            .get(pf.as_str())
            .filter(|f| ctx.world.in_sphere(ctx.sphere, f.id));
        let Some(f) = found else {
            return Err(RuleError::new(
                codes::PORTFOLIO_OUT_OF_SPHERE,
                "The portfolio is outside the caller's scope",
                json!({"portfolioId": pf}),
            ));
        };
        match f.state {
            PortfolioState::Deleted => {
                return Err(RuleError::new(
                    codes::PORTFOLIO_DELETED,
                    "The target portfolio has been deleted",
                    json!({"portfolioId": pf}),
                ));
            }
            PortfolioState::Suspended => {
                return Err(RuleError::new(
                    codes::PORTFOLIO_NOT_ACTIVE,
                    "The target portfolio is not active",
                    json!({"portfolioId": pf}),
                ));
            }
            PortfolioState::Active => {}
        }
    }
    // 18, 19, 20
    if package.is_some() || portfolio.is_some() {
        if let Some(pid) = p.package_id {
            let Some(pkg) = ctx
                .world
                .packages
                .get(&pid)
                .filter(|k| k.portfolios.contains(&resulting_portfolio.as_str()))
            else {
                return Err(RuleError::new(
                    codes::PACKAGE_NOT_LINKED,
                    "The package is not offered in the SIM's portfolio",
                    json!({"packageId": pid, "portfolioId": resulting_portfolio}),
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
        } else if portfolio.is_some() {
            // 21
            let linked = ctx
                .world
                .packages
                .get(&sim.package_id)
                .is_some_and(|k| k.portfolios.contains(&resulting_portfolio.as_str()));
            if !linked {
                return Err(RuleError::new(
                    codes::PACKAGE_UNLINKED_AFTER_MOVE,
                    "The SIM's package is not offered in the target portfolio; give a packageId",
                    json!({"packageId": sim.package_id, "portfolioId": resulting_portfolio}),
                ));
            }
        }
    }

    let mut changes = Vec::new();
    let sim = &mut rec.sim;
    if let Some(s) = status {
        let new = if s == "active" && !ctx.activation_delay.is_zero() {
            rec.active_at = Some(ctx.now + ctx.activation_delay);
            "pendingProvision"
        } else {
            s.as_str()
        };
        changes.push(Change {
            field: "status",
            old: json!(sim.status),
            new: json!(new),
        });
        sim.status = new.into();
    }
    if let Some(c) = suspend {
        changes.push(Change {
            field: "customerSuspend",
            old: json!(sim.customer_suspend),
            new: json!(c),
        });
        sim.customer_suspend = c;
        if c && !ctx.suspend_settle.is_zero() {
            rec.settle_until = Some(ctx.now + ctx.suspend_settle);
        }
    }
    if let Some(k) = package {
        changes.push(Change {
            field: "packageId",
            old: json!(sim.package_id),
            new: json!(k),
        });
        sim.package_id = k;
    }
    if let Some(f) = portfolio {
        changes.push(Change {
            field: "portfolioId",
            old: json!(sim.portfolio_id),
            new: json!(f),
        });
        sim.portfolio_id = f.clone();
    }
    sim.modified_date = Some(ctx.now_text.into());
    Ok(changes)
}

/// An attribute body that passed the shape rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributeBody {
    pub name: Option<String>,
    pub value: Option<String>,
}

/// Shape rules for attribute bodies; `create` requires both fields, a patch at least one.
pub fn parse_attribute_body(body: &[u8], create: bool) -> Result<AttributeBody, RuleError> {
    let obj = json_object(body)?;
    let mut b = AttributeBody::default();
    for (k, v) in &obj {
        match (k.as_str(), v) {
            ("name", Value::String(s)) => b.name = Some(s.clone()),
            ("value", Value::String(s)) => b.value = Some(s.clone()),
            ("name" | "value", _) => return Err(RuleError::field(k, "must be a string")),
            _ => return Err(RuleError::field(k, "unknown field")),
        }
    }
    if create {
        for (field, v) in [("name", &b.name), ("value", &b.value)] {
            if v.is_none() {
                return Err(RuleError::field(field, "required"));
            }
        }
    } else if obj.is_empty() {
        return Err(RuleError::new(
            codes::EMPTY_BODY,
            "The request changes nothing",
            json!({}),
        ));
    }
    if b.name.as_ref().is_some_and(|n| n.trim().is_empty()) {
        return Err(RuleError::new(
            codes::EMPTY_NAME,
            "Attribute name is empty",
            json!({}),
        ));
    }
    if b.name.as_ref().is_some_and(|n| n.chars().count() > 64) {
        return Err(RuleError::new(
            codes::FIELD_REJECTED,
            "Field rejected",
            json!({"field": "name", "maxLength": 64}),
        ));
    }
    if b.value.as_ref().is_some_and(|v| v.chars().count() > 255) {
        return Err(RuleError::new(
            codes::FIELD_REJECTED,
            "Field rejected",
            json!({"field": "value", "maxLength": 255}),
        ));
    }
    Ok(b)
}

/// The suspension rule for attribute writes.
pub fn check_attribute_write(rec: &SimRecord, ctx: &Ctx<'_>) -> Result<(), RuleError> {
    if rec.sim.is_suspended() && !ctx.attribute_writes_on_suspended {
        return Err(RuleError::new(
            codes::SUSPENDED,
            "The SIM is suspended; attributes cannot be changed",
            json!({"iccId": rec.sim.icc_id, "suspendedBy": suspended_by(rec)}),
        ));
    }
    Ok(())
}

fn duplicate(a: &Attribute) -> RuleError {
    RuleError::new(
        codes::DUPLICATE_ATTRIBUTE,
        "The SIM already has an attribute with this name",
        json!({"name": a.name, "iccAttributeId": a.icc_attribute_id}),
    )
}

/// `POST …/attribute`: creates the attribute unless the name is taken.
pub fn create_attribute(
    rec: &mut SimRecord,
    b: AttributeBody,
    ctx: &Ctx<'_>,
) -> Result<Attribute, RuleError> {
    check_attribute_write(rec, ctx)?;
    let name = b.name.unwrap_or_default();
    if let Some(a) = rec.attributes.iter().find(|a| a.name == name) {
        return Err(duplicate(a));
    }
    let a = Attribute {
        icc_attribute_id: ctx.world.allocate_attribute_id(),
        icc_id: rec.sim.icc_id.clone(),
        name,
        value: b.value.unwrap_or_default(),
        created_date: Some(ctx.now_text.into()),
        modified_date: Some(ctx.now_text.into()),
    };
    rec.attributes.push(a.clone());
    Ok(a)
}

/// `PATCH …/attribute/{id}`: renames and/or sets the value; returns the old and new attribute.
pub fn update_attribute(
    rec: &mut SimRecord,
    id: i64,
    b: AttributeBody,
    ctx: &Ctx<'_>,
) -> Result<(Attribute, Attribute), RuleError> {
    let idx = find_attribute(rec, id)?;
    check_attribute_write(rec, ctx)?;
    if let Some(n) = &b.name
        && let Some(other) = rec
            .attributes
            .iter()
            .find(|a| a.name == *n && a.icc_attribute_id != id)
    {
        return Err(duplicate(other));
    }
    let old = rec.attributes[idx].clone();
    let a = &mut rec.attributes[idx];
    let mut changed = false;
    if let Some(n) = b.name
        && n != a.name
    {
        a.name = n;
        changed = true;
    }
    if let Some(v) = b.value
        && v != a.value
    {
        a.value = v;
        changed = true;
    }
    if changed {
        a.modified_date = Some(ctx.now_text.into());
    }
    Ok((old, a.clone()))
}

/// `DELETE …/attribute/{id}`: removes it and returns it as it was.
pub fn delete_attribute(
    rec: &mut SimRecord,
    id: i64,
    ctx: &Ctx<'_>,
) -> Result<Attribute, RuleError> {
    let idx = find_attribute(rec, id)?;
    check_attribute_write(rec, ctx)?;
    Ok(rec.attributes.remove(idx))
}

/// The index of attribute `id` on this SIM, or 404 / 6002.
pub fn find_attribute(rec: &SimRecord, id: i64) -> Result<usize, RuleError> {
    rec.attributes
        .iter()
        .position(|a| a.icc_attribute_id == id)
        .ok_or_else(|| {
            RuleError::new(
                codes::NOT_FOUND,
                "No such attribute",
                json!({"iccId": rec.sim.icc_id, "iccAttributeId": id}),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::seed;

    fn world() -> World {
        let (sims, next) = seed::generate(1, 0);
        World::new(sims, next)
    }

    fn rec(status: &str, cs: bool, admin: bool, pf: &str, pkg: i64, mno: i64) -> SimRecord {
        let (mut r, _) = seed::sim(1, 0, &mut 1);
        r.sim.status = status.into();
        r.sim.customer_suspend = cs;
        r.sim.admin_suspend = admin;
        r.sim.system_suspend = false;
        r.sim.portfolio_id = pf.into();
        r.sim.package_id = pkg;
        r.sim.mno_id = mno;
        r.attributes.clear();
        r
    }

    fn ctx(w: &World) -> Ctx<'_> {
        Ctx {
            world: w,
            sphere: "pf-acme",
            now: Instant::now(),
            now_text: "2026-01-01T00:00:00Z",
            strict_no_op: true,
            activation_delay: Duration::ZERO,
            suspend_settle: Duration::ZERO,
            attribute_writes_on_suspended: false,
        }
    }

    fn patch(body: &str, r: &mut SimRecord, w: &World) -> Result<Vec<Change>, i64> {
        let p = parse_sim_patch(body.as_bytes()).map_err(|e| e.code)?;
        apply_sim_patch(r, &p, &ctx(w)).map_err(|e| e.code)
    }

    const UK: i64 = super::super::state::MNO_UK;

    #[test]
    fn body_shape_rules_fire_in_order() {
        assert_eq!(parse_sim_patch(b"[1]").unwrap_err().code, 6006);
        assert_eq!(parse_sim_patch(b"nope").unwrap_err().code, 6006);
        assert_eq!(
            parse_sim_patch(br#"{"adminSuspend":true}"#)
                .unwrap_err()
                .code,
            6014
        );
        assert_eq!(parse_sim_patch(br#"{"colour":1}"#).unwrap_err().code, 6014);
        assert_eq!(parse_sim_patch(br#"{"status":1}"#).unwrap_err().code, 6014);
        assert_eq!(
            parse_sim_patch(br#"{"packageId":"1"}"#).unwrap_err().code,
            6014
        );
        assert_eq!(
            parse_sim_patch(br#"{"packageId":null}"#).unwrap_err().code,
            16004
        );
        assert_eq!(parse_sim_patch(b"{}").unwrap_err().code, 6017);
        assert_eq!(
            parse_sim_patch(br#"{"status":"suspended"}"#)
                .unwrap_err()
                .code,
            6048
        );
    }

    #[test]
    fn lifecycle_transitions_follow_the_table() {
        let w = world();
        let mut r = rec("available", false, false, "pf-acme-eu", 20417, UK);
        assert!(patch(r#"{"status":"active"}"#, &mut r, &w).is_ok());
        assert_eq!(r.sim.status, "active");
        assert_eq!(patch(r#"{"status":"active"}"#, &mut r, &w), Err(6047));
        assert!(patch(r#"{"customerSuspend":true}"#, &mut r, &w).is_ok());
        assert_eq!(patch(r#"{"status":"available"}"#, &mut r, &w), Err(16000));
        assert!(patch(r#"{"customerSuspend":false}"#, &mut r, &w).is_ok());
        assert!(patch(r#"{"status":"available"}"#, &mut r, &w).is_ok());
        assert_eq!(patch(r#"{"customerSuspend":true}"#, &mut r, &w), Err(6046));
        assert!(patch(r#"{"status":"active","packageId":20533}"#, &mut r, &w).is_ok());
        assert_eq!(r.sim.package_id, 20533);
    }

    #[test]
    fn package_and_portfolio_rules_fire_with_their_codes() {
        let w = world();
        let avail = || rec("available", false, false, "pf-acme-eu", 20417, UK);
        let active = rec("active", false, false, "pf-acme-eu", 20417, UK);
        assert_eq!(
            patch(r#"{"packageId":20418}"#, &mut active.clone(), &w),
            Err(6046)
        );
        assert_eq!(
            patch(r#"{"portfolioId":"pf-other-co"}"#, &mut avail(), &w),
            Err(6026)
        );
        assert_eq!(
            patch(r#"{"portfolioId":"pf-nowhere"}"#, &mut avail(), &w),
            Err(6026)
        );
        assert_eq!(
            patch(r#"{"portfolioId":"pf-acme-closed"}"#, &mut avail(), &w),
            Err(16003)
        );
        assert_eq!(
            patch(r#"{"portfolioId":"pf-acme-frozen"}"#, &mut avail(), &w),
            Err(6023)
        );
        assert_eq!(
            patch(r#"{"packageId":31001}"#, &mut avail(), &w),
            Err(16005)
        );
        assert_eq!(
            patch(r#"{"packageId":99999}"#, &mut avail(), &w),
            Err(16005)
        );
        assert_eq!(
            patch(r#"{"packageId":20420}"#, &mut avail(), &w),
            Err(16006)
        );
        assert_eq!(
            patch(r#"{"packageId":20499}"#, &mut avail(), &w),
            Err(16007)
        );
        assert_eq!(
            patch(r#"{"portfolioId":"pf-acme-us"}"#, &mut avail(), &w),
            Err(16001)
        );
        let mut moved = avail();
        assert!(
            patch(
                r#"{"portfolioId":"pf-acme-us","packageId":31002}"#,
                &mut moved,
                &w
            )
            .is_ok()
        );
        assert_eq!(
            (moved.sim.portfolio_id.as_str(), moved.sim.package_id),
            ("pf-acme-us", 31002)
        );
        let mut plus = rec("active", false, false, "pf-acme-eu", 20418, UK);
        assert!(patch(r#"{"portfolioId":"pf-acme-us"}"#, &mut plus, &w).is_ok());
    }

    #[test]
    fn a_refused_patch_changes_nothing() {
        let w = world();
        let mut r = rec("active", true, false, "pf-acme-eu", 20417, UK);
        let before = r.sim.clone();
        assert_eq!(
            patch(
                r#"{"status":"available","customerSuspend":false}"#,
                &mut r,
                &w
            ),
            Err(16000)
        );
        assert_eq!(r.sim, before);
    }

    #[test]
    fn pending_provision_refuses_changes_until_it_settles() {
        let w = world();
        let mut c = ctx(&w);
        c.activation_delay = Duration::from_secs(60);
        let mut r = rec("available", false, false, "pf-acme-eu", 20417, UK);
        let p = parse_sim_patch(br#"{"status":"active"}"#).unwrap();
        apply_sim_patch(&mut r, &p, &c).unwrap();
        assert_eq!(r.sim.status, "pendingProvision");
        assert_eq!(apply_sim_patch(&mut r, &p, &c).unwrap_err().code, 6046);
        assert!(settle(&mut r, c.now + Duration::from_secs(61), "t").is_some());
        assert_eq!(r.sim.status, "active");
    }

    #[test]
    fn attribute_rules() {
        let w = world();
        let c = ctx(&w);
        let mut r = rec("active", false, false, "pf-acme-eu", 20417, UK);
        assert_eq!(
            parse_attribute_body(br#"{"name":" ","value":"x"}"#, true)
                .unwrap_err()
                .code,
            6053
        );
        assert_eq!(
            parse_attribute_body(br#"{"name":"a"}"#, true)
                .unwrap_err()
                .code,
            6014
        );
        assert_eq!(
            parse_attribute_body(br#"{"name":"a","value":3}"#, true)
                .unwrap_err()
                .code,
            6014
        );
        assert_eq!(parse_attribute_body(b"{}", false).unwrap_err().code, 6017);
        let long = format!(r#"{{"name":"a","value":"{}"}}"#, "x".repeat(256));
        assert_eq!(
            parse_attribute_body(long.as_bytes(), true)
                .unwrap_err()
                .code,
            6014
        );
        let b = parse_attribute_body(br#"{"name":"n","value":"v"}"#, true).unwrap();
        let a = create_attribute(&mut r, b.clone(), &c).unwrap();
        assert_eq!(create_attribute(&mut r, b, &c).unwrap_err().code, 16002);
        r.sim.customer_suspend = true;
        assert_eq!(
            delete_attribute(&mut r, a.icc_attribute_id, &c)
                .unwrap_err()
                .code,
            16000
        );
        r.sim.customer_suspend = false;
        assert!(delete_attribute(&mut r, a.icc_attribute_id, &c).is_ok());
        assert_eq!(
            delete_attribute(&mut r, a.icc_attribute_id, &c)
                .unwrap_err()
                .code,
            6002
        );
    }
}
