//! The `/__sim` introspection surface: stats, ledger, faults, revocation, a SIM as stored,
//! and saving the state file. No auth: it is a simulator's back door for tests.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::config::FaultConfig;

use super::server::*;

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
