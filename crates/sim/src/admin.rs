//! The `/__sim` introspection surface: stats, ledger, faults, revocation, a SIM as stored,
//! a SIM changed as another client would change it, and saving the state file. No auth: it
//! is a simulator's back door for tests.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::config::FaultConfig;

use super::app::*;

#[derive(Deserialize)]
pub(super) struct LedgerQuery {
    since: Option<u64>,
    #[serde(rename = "iccId")]
    icc_id: Option<String>,
}

pub(super) async fn admin_stats(State(app): AppState) -> Response {
    json_response(
        StatusCode::OK,
        &app.stats.report(app.started, &app.ledger),
        "admin",
    )
}

pub(super) async fn admin_ledger(State(app): AppState, Query(q): Query<LedgerQuery>) -> Response {
    let entries = app.ledger.since(q.since.unwrap_or(0), q.icc_id.as_deref());
    json_response(StatusCode::OK, &json!({"data": entries}), "admin")
}

pub(super) async fn admin_revoke(State(app): AppState) -> Response {
    let n = app.auth.revoke(None);
    json_response(StatusCode::OK, &json!({"revoked": n}), "admin")
}

pub(super) async fn admin_get_faults(State(app): AppState) -> Response {
    json_response(StatusCode::OK, &app.faults.config(), "admin")
}

pub(super) async fn admin_put_faults(State(app): AppState, body: Bytes) -> Response {
    match serde_json::from_slice::<FaultConfig>(&body) {
        Ok(c) => {
            app.faults.set(c.clone());
            json_response(StatusCode::OK, &c, "admin")
        }
        Err(e) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({"message": e.to_string()}),
            "admin",
        ),
    }
}

pub(super) async fn admin_sim(State(app): AppState, Path(icc): Path<String>) -> Response {
    match app.world.sims.get(&icc) {
        Some(m) => {
            let rec = app.world.lock(m).clone();
            json_response(
                StatusCode::OK,
                &json!({"sim": rec.sim, "attributes": rec.attributes}),
                "admin",
            )
        }
        None => json_response(
            StatusCode::NOT_FOUND,
            &json!({"message": "Not Found"}),
            "admin",
        ),
    }
}

/// A change another client makes (the portal, another team's job): any of `status`,
/// `customerSuspend`, `packageId`, `portfolioId`, `adminSuspend`, `systemSuspend`, applied
/// without the rules.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct OtherChange {
    status: Option<String>,
    customer_suspend: Option<bool>,
    package_id: Option<i64>,
    portfolio_id: Option<String>,
    admin_suspend: Option<bool>,
    system_suspend: Option<bool>,
}

impl OtherChange {
    fn apply(self, s: &mut crate::model::Sim) {
        if let Some(v) = self.status {
            s.status = v;
        }
        if let Some(v) = self.customer_suspend {
            s.customer_suspend = v;
        }
        if let Some(v) = self.package_id {
            s.package_id = v;
        }
        if let Some(v) = self.portfolio_id {
            s.portfolio_id = v;
        }
        if let Some(v) = self.admin_suspend {
            s.admin_suspend = v;
        }
        if let Some(v) = self.system_suspend {
            s.system_suspend = v;
        }
    }
}

impl App {
    /// Changes a SIM as another client would: no rules, no ledger entry of this tenant's;
    /// `false` when there is no such SIM.
    pub(super) fn change_as_other(
        &self,
        icc: &str,
        f: impl FnOnce(&mut crate::model::Sim),
    ) -> bool {
        let Some(m) = self.world.sims.get(icc) else {
            return false;
        };
        let mut rec = self.world.lock(m);
        let before = rec.sim.clone();
        f(&mut rec.sim);
        rec.sim.modified_date = Some(now_rfc3339());
        rec.changed_from(before, std::time::Instant::now());
        true
    }
}

pub(super) async fn admin_change(
    State(app): AppState,
    Path(icc): Path<String>,
    body: Bytes,
) -> Response {
    let change = match serde_json::from_slice::<OtherChange>(&body) {
        Ok(c) => c,
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({"message": e.to_string()}),
                "admin",
            );
        }
    };
    if app.change_as_other(&icc, |s| change.apply(s)) {
        admin_sim(State(app), Path(icc)).await
    } else {
        json_response(
            StatusCode::NOT_FOUND,
            &json!({"message": "Not Found"}),
            "admin",
        )
    }
}

pub(super) async fn admin_save(State(app): AppState) -> Response {
    match super::persist::save_state(&app) {
        Ok(Some(p)) => json_response(StatusCode::OK, &json!({"saved": p}), "admin"),
        Ok(None) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({"message": "no --state-file"}),
            "admin",
        ),
        Err(e) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"message": e.to_string()}),
            "admin",
        ),
    }
}

pub(super) async fn not_found(State(app): AppState) -> Response {
    let rid = app.request_id();
    gateway(StatusCode::NOT_FOUND, "Not Found", &rid, None)
}
