//! The contract's business rules, as pure functions over one SIM's record.
//!
//! Guarantees: rules run in the contract's order and the first failing rule wins; every
//! rule is evaluated against the state *before* the request; a refused request changes
//! nothing; an accepted one returns the list of field changes it made (for the ledger).

mod attribute;
mod patch;

pub(crate) use attribute::{
    create_attribute, delete_attribute, find_attribute, parse_attribute_body, update_attribute,
};
pub(crate) use patch::{apply_sim_patch, parse_sim_patch};

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::model::codes;

use super::state::{SimRecord, World};

/// A refusal: HTTP status plus the contract's `Error` body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RuleError {
    pub(crate) status: u16,
    pub(crate) code: i64,
    pub(crate) tag: &'static str,
    pub(crate) message: String,
    pub(crate) details: Value,
}

impl RuleError {
    pub(crate) fn new(code: i64, message: impl Into<String>, details: Value) -> Self {
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

    pub(crate) fn field(field: &str, reason: &str) -> Self {
        Self::new(
            codes::FIELD_REJECTED,
            "Field rejected",
            json!({"field": field, "reason": reason}),
        )
    }
}

/// One field changed by an accepted request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Change {
    pub(crate) field: &'static str,
    pub(crate) old: Value,
    pub(crate) new: Value,
}

/// The knobs and the caller that rules depend on.
pub(crate) struct Ctx<'a> {
    pub(crate) world: &'a World,
    pub(crate) sphere: &'a str,
    pub(crate) now: Instant,
    pub(crate) now_text: &'a str,
    pub(crate) strict_no_op: bool,
    pub(crate) activation_delay: Duration,
    pub(crate) suspend_settle: Duration,
    pub(crate) attribute_writes_on_suspended: bool,
}

pub(super) fn json_object(body: &[u8]) -> Result<Map<String, Value>, RuleError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(RuleError::new(
            codes::BAD_BODY,
            "The request body must be a JSON object",
            json!({}),
        )),
    }
}

/// Turns a due `pendingProvision` into `active`; returns the change for the ledger.
pub(crate) fn settle(rec: &mut SimRecord, now: Instant, now_text: &str) -> Option<Change> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed;

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
