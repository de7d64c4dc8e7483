//! Handlers of the SIM and attribute endpoints and the token endpoint: each one runs the
//! shared pipeline and applies its rules under the SIM's lock.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::model::{AttributeList, TokenResponse, codes};

use super::config::Permission;
use super::rules::{self, RuleError};

use super::app::*;

pub(super) fn sim_json(rec: &super::state::SimRecord) -> Value {
    serde_json::to_value(&rec.sim).unwrap_or(Value::Null)
}

pub(super) fn attr_id(s: &str) -> Result<i64, RuleError> {
    s.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
        RuleError::new(
            codes::FIELD_REJECTED,
            "Field rejected",
            json!({"field": "iccAttributeId", "value": s.chars().take(32).collect::<String>()}),
        )
    })
}

pub(super) async fn get_sim(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
    Path(icc): Path<String>,
) -> Response {
    app.api(
        "GET /api/v2/sim/{iccId}",
        &headers,
        &kill,
        Permission::IccGet,
        |app, c, rid| Done {
            reply: app.with_sim(c, &icc, rid, |rec, _| Ok(sim_json(rec))),
            mutated: false,
        },
    )
    .await
}

pub(super) async fn patch_sim(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
    Path(icc): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    app.api(
        "PATCH /api/v2/sim/{iccId}",
        &headers,
        &kill,
        Permission::IccUpdate,
        |app, c, rid| {
            let mut mutated = false;
            let reply = app.with_sim(c, &icc, rid, |rec, ctx| {
                let body = body_bytes(body)?;
                let patch = rules::parse_sim_patch(&body)?;
                let changes = rules::apply_sim_patch(rec, &patch, ctx)?;
                mutated = !changes.is_empty();
                app.log_changes(c, &icc, changes, rid, ctx.now_text);
                Ok(sim_json(rec))
            });
            Done { reply, mutated }
        },
    )
    .await
}

pub(super) async fn list_attributes(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
    Path(icc): Path<String>,
) -> Response {
    app.api(
        "GET /api/v2/sim/{iccId}/attribute",
        &headers,
        &kill,
        Permission::IccAttributeGet,
        |app, c, rid| {
            let reply = app.with_sim(c, &icc, rid, |rec, _| {
                let mut data = rec.attributes.clone();
                data.sort_by_key(|a| a.icc_attribute_id);
                Ok(serde_json::to_value(AttributeList { data }).unwrap_or(Value::Null))
            });
            Done {
                reply,
                mutated: false,
            }
        },
    )
    .await
}

pub(super) async fn create_attribute(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
    Path(icc): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    app.api(
        "POST /api/v2/sim/{iccId}/attribute",
        &headers,
        &kill,
        Permission::IccAttributeCreate,
        |app, c, rid| {
            let mut mutated = false;
            let reply = app.with_sim(c, &icc, rid, |rec, ctx| {
                let body = body_bytes(body)?;
                let b = rules::parse_attribute_body(&body, true)?;
                let a = rules::create_attribute(rec, b, ctx)?;
                mutated = true;
                app.log(
                    c,
                    &icc,
                    "attribute.create",
                    &a.name,
                    Value::Null,
                    json!(a.value),
                    Some(a.icc_attribute_id),
                    rid,
                    ctx.now_text,
                );
                Ok(serde_json::to_value(a).unwrap_or(Value::Null))
            });
            Done { reply, mutated }
        },
    )
    .await
}

pub(super) async fn get_attribute(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
    Path((icc, id)): Path<(String, String)>,
) -> Response {
    app.api(
        "GET /api/v2/sim/{iccId}/attribute/{iccAttributeId}",
        &headers,
        &kill,
        Permission::IccAttributeGet,
        |app, c, rid| {
            let reply = app.with_sim(c, &icc, rid, |rec, _| {
                let idx = rules::find_attribute(rec, attr_id(&id)?)?;
                Ok(serde_json::to_value(&rec.attributes[idx]).unwrap_or(Value::Null))
            });
            Done {
                reply,
                mutated: false,
            }
        },
    )
    .await
}

pub(super) async fn patch_attribute(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
    Path((icc, id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    app.api(
        "PATCH /api/v2/sim/{iccId}/attribute/{iccAttributeId}",
        &headers,
        &kill,
        Permission::IccAttributeUpdate,
        |app, c, rid| {
            let mut mutated = false;
            let reply = app.with_sim(c, &icc, rid, |rec, ctx| {
                let id = attr_id(&id)?;
                rules::find_attribute(rec, id)?;
                let body = body_bytes(body)?;
                let b = rules::parse_attribute_body(&body, false)?;
                let (old, new) = rules::update_attribute(rec, id, b, ctx)?;
                if old.name != new.name {
                    mutated = true;
                    app.log(
                        c,
                        &icc,
                        "attribute.rename",
                        &new.name,
                        json!(old.name),
                        json!(new.name),
                        Some(id),
                        rid,
                        ctx.now_text,
                    );
                }
                if old.value != new.value {
                    mutated = true;
                    app.log(
                        c,
                        &icc,
                        "attribute.update",
                        &new.name,
                        json!(old.value),
                        json!(new.value),
                        Some(id),
                        rid,
                        ctx.now_text,
                    );
                }
                Ok(serde_json::to_value(new).unwrap_or(Value::Null))
            });
            Done { reply, mutated }
        },
    )
    .await
}

pub(super) async fn delete_attribute(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
    Path((icc, id)): Path<(String, String)>,
) -> Response {
    app.api(
        "DELETE /api/v2/sim/{iccId}/attribute/{iccAttributeId}",
        &headers,
        &kill,
        Permission::IccAttributeDelete,
        |app, c, rid| {
            let mut mutated = false;
            let reply = app.with_sim(c, &icc, rid, |rec, ctx| {
                let a = rules::delete_attribute(rec, attr_id(&id)?, ctx)?;
                mutated = true;
                app.log(
                    c,
                    &icc,
                    "attribute.delete",
                    &a.name,
                    json!(a.value),
                    Value::Null,
                    Some(a.icc_attribute_id),
                    rid,
                    ctx.now_text,
                );
                Ok(serde_json::to_value(a).unwrap_or(Value::Null))
            });
            Done { reply, mutated }
        },
    )
    .await
}

pub(super) async fn token(
    State(app): AppState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    const ROUTE: &str = "POST /oauth2/token";
    let rid = app.request_id();
    app.stats.token_requests.fetch_add(1, Ordering::Relaxed);
    let latency = app.faults.config().token_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let refuse =
        |status: StatusCode, error: &str| json_response(status, &json!({"error": error}), &rid);
    let Ok(body) = body else {
        return app.finish(
            ROUTE,
            None,
            refuse(StatusCode::BAD_REQUEST, "invalid_request"),
        );
    };
    let authz = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let client = match app.auth.authenticate(authz, &body) {
        Ok(c) => c,
        Err(e) => return app.finish(ROUTE, None, refuse(StatusCode::BAD_REQUEST, e.as_str())),
    };
    if let Err(wait) = app.token_limits[client].check() {
        app.stats.too_many_requests.fetch_add(1, Ordering::Relaxed);
        let ra = app.retry_after(wait);
        return app.finish(
            ROUTE,
            None,
            gateway(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", &rid, ra),
        );
    }
    if app.faults.token_failure() {
        app.stats.fault("tokenFailure");
        return app.finish(ROUTE, None, server_error(503, &rid));
    }
    let access_token = app.auth.issue(client, Instant::now());
    let mut r = json_response(
        StatusCode::OK,
        &TokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in: app.auth.ttl().as_secs(),
        },
        &rid,
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    app.finish(ROUTE, None, r)
}
