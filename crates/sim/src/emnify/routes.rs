//! The emnify mode's HTTP surface: `POST /api/v1/authenticate`, `GET /api/v1/sim` (`q` of
//! `field:criteria` pairs, `page`, `per_page`, paging in `X-Total-*` headers),
//! `GET|PATCH /api/v1/sim/{id}`, `GET|PATCH /api/v1/endpoint/{id}`,
//! `PATCH /api/v2/endpoint/multi` (bulk), `GET /api/v1/tariff_profile`, and the shared
//! `/__sim` surface.
//!
//! Guarantees: every `/api` request but authenticate goes through Bearer auth (401 / 1102)
//! → the rate limit (429 / 1105) → latency → the fault knobs → permission → the change under
//! the world's lock → the ledger → apply-then-fail; refusals have emnify's `error_code`,
//! `error_token`, `message` body (with `errors` for a failed validation); a bulk update
//! while another one runs is 429 / 1105 and changes nothing; nothing a client sends can panic
//! a handler.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Value, json};

use super::{
    Changed, Devices, EmnifySim, Endpoint, EndpointUpdate, MAX_BULK, Refusal, SimStatus, World,
};
use super::{SERVICE_PROFILE, endpoint_status_json};
use crate::admin::*;
use crate::app::{App, AppState, ConnKill, Req, json_response, now_rfc3339};
use crate::config::Permission;

/// Largest bulk body accepted (2,000 endpoints of a few fields each, with room).
const MAX_BULK_BODY: usize = 2 * 1024 * 1024;
/// Most SIMs a list page gives, and its default.
const MAX_PER_PAGE: usize = 2500;
const DEFAULT_PER_PAGE: usize = 2000;

/// The emnify routes and the `/__sim` surface.
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/v1/authenticate", post(authenticate))
        .route("/api/v1/sim", get(list_sims))
        .route("/api/v1/sim/{id}", get(get_sim).patch(patch_sim))
        .route(
            "/api/v1/endpoint/{id}",
            get(get_endpoint).patch(patch_endpoint),
        )
        .route("/api/v2/endpoint/multi", patch(bulk_update))
        .route("/api/v1/tariff_profile", get(tariff_profiles))
        .route("/__sim/stats", get(admin_stats))
        .route("/__sim/ledger", get(admin_ledger))
        .route("/__sim/faults", get(admin_get_faults).put(admin_put_faults))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BULK_BODY))
        .with_state(app)
}

fn refusal(r: &Refusal, rid: &str) -> Response {
    json_response(
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
        &r.body(),
        rid,
    )
}

fn too_many(app: &App, rid: &str) -> Response {
    app.stats.too_many_requests.fetch_add(1, Ordering::Relaxed);
    let mut r = refusal(
        &Refusal::new(429, 1105, "TooManyRequests", "Too many requests"),
        rid,
    );
    if app.cfg.retry_after_header {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(1u64));
    }
    r
}

/// What a handler answers and whether it changed state.
struct Answer {
    reply: Result<Reply, Refusal>,
    mutated: bool,
}

impl Answer {
    /// The answer of a read (nothing changed).
    fn read(reply: Result<Reply, Refusal>) -> Self {
        Self {
            reply,
            mutated: false,
        }
    }
}

enum Reply {
    Json(Value),
    /// A list page: the items and the paging headers' values.
    Page {
        items: Vec<Value>,
        page: usize,
        pages: usize,
        total: usize,
    },
    NoContent,
}

/// What a handler is given besides its request.
struct Call<'a> {
    app: &'a App,
    world: &'a World,
    client: usize,
    rid: &'a str,
}

impl App {
    fn emnify(&self) -> &World {
        self.emnify
            .as_ref()
            .expect("the emnify routes are served only with an emnify world")
    }

    /// The per-request pipeline of every `/api` route but authenticate.
    async fn emnify_api(
        self: &Arc<Self>,
        route: &'static str,
        headers: &HeaderMap,
        kill: &ConnKill,
        permission: Permission,
        handler: impl FnOnce(&Call<'_>) -> Answer,
    ) -> Response {
        let rid = self.request_id();
        let second = Some(self.started.elapsed().as_secs());
        self.stats.arrived(SystemTime::now());
        let draw = self.faults.draw();
        let authz = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(client) = self.auth.check(authz, Instant::now()) else {
            let r = Refusal::new(401, 1102, "InvalidToken", "Invalid or expired auth_token");
            return self.finish(route, second, refusal(&r, &rid));
        };
        if self.api_limits[client].check().is_err() {
            return self.finish(route, second, too_many(self, &rid));
        }
        if !draw.latency.is_zero() {
            tokio::time::sleep(draw.latency).await;
        }
        let req = Req {
            route,
            second,
            kill,
            rid: &rid,
        };
        if let Some(r) = self
            .fault_before(&draw, &req, || too_many(self, &rid))
            .await
        {
            return r;
        }
        if draw.revoke {
            self.stats.fault("revoke");
            self.auth.revoke(Some(client));
        }
        if !self.auth.has(client, permission) {
            let r = Refusal::new(
                403,
                1104,
                "Forbidden",
                "You do not have the necessary permissions to access this entry point.",
            );
            return self.finish(route, second, refusal(&r, &rid));
        }
        let call = Call {
            app: self,
            world: self.emnify(),
            client,
            rid: &rid,
        };
        let done = handler(&call);
        if let Some(r) = self.fault_after(&draw, done.mutated, &req).await {
            return r;
        }
        let resp = match done.reply {
            Ok(Reply::Json(v)) => json_response(StatusCode::OK, &v, &rid),
            Ok(Reply::NoContent) => {
                crate::app::with_request_id(StatusCode::NO_CONTENT.into_response(), &rid)
            }
            Ok(Reply::Page {
                items,
                page,
                pages,
                total,
            }) => {
                let mut r = json_response(StatusCode::OK, &items, &rid);
                let h = r.headers_mut();
                h.insert("x-current-page", HeaderValue::from(page));
                h.insert("x-total-pages", HeaderValue::from(pages));
                h.insert("x-total-count", HeaderValue::from(total));
                r
            }
            Err(r) => refusal(&r, &rid),
        };
        self.finish(route, second, resp)
    }
}

impl Call<'_> {
    fn visible(&self, s: &EmnifySim) -> bool {
        let sphere = &self.app.auth.clients[self.client].portfolio;
        self.app.world.in_sphere(sphere, s.portfolio)
    }

    /// The endpoint's SIM is this client's (an endpoint without a SIM is nobody's).
    fn visible_endpoint(&self, d: &Devices, id: i64) -> bool {
        d.endpoints
            .get(&id)
            .and_then(|e| e.sim)
            .and_then(|s| d.sims.get(&s))
            .is_some_and(|s| self.visible(s))
    }

    /// A SIM's own fields, as the SIM and endpoint answers both show them.
    fn sim_fields(s: &EmnifySim) -> Value {
        json!({
            "id": s.id,
            "iccid": &s.iccid[..s.iccid.len() - 1],
            "iccid_with_luhn": s.iccid,
            "status": s.status.json(),
        })
    }

    /// An endpoint's own fields, as the SIM and endpoint answers both show them.
    fn endpoint_fields(&self, e: &Endpoint) -> Value {
        json!({
            "id": e.id,
            "name": e.name,
            "tags": e.tags,
            "status": endpoint_status_json(e.status),
            "tariff_profile": self.world.tariff_json(e.tariff_profile),
            "service_profile": {"id": SERVICE_PROFILE.0, "name": SERVICE_PROFILE.1},
        })
    }

    /// A SIM with its endpoint.
    fn sim_json(&self, d: &Devices, s: &EmnifySim) -> Value {
        let mut v = Self::sim_fields(s);
        v["endpoint"] = s
            .endpoint
            .and_then(|e| d.endpoints.get(&e))
            .map_or(Value::Null, |e| self.endpoint_fields(e));
        v
    }

    /// An endpoint with its SIM.
    fn endpoint_json(&self, d: &Devices, id: i64) -> Value {
        let Some(e) = d.endpoints.get(&id) else {
            return Value::Null;
        };
        let mut v = self.endpoint_fields(e);
        v["sim"] = e
            .sim
            .and_then(|s| d.sims.get(&s))
            .map_or(Value::Null, Self::sim_fields);
        v
    }

    fn log(&self, changed: Vec<Changed>) {
        let now = now_rfc3339();
        for c in changed {
            self.app.log(
                self.client,
                &c.iccid,
                c.kind,
                c.field,
                c.old,
                c.new,
                None,
                self.rid,
                &now,
            );
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

fn id_of(s: &str, what: &str) -> Result<i64, Refusal> {
    s.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| Refusal::not_found(what, clip(s)))
}

async fn authenticate(State(app): AppState, body: Result<Bytes, BytesRejection>) -> Response {
    let rid = app.request_id();
    let route = "POST /api/v1/authenticate";
    let second = Some(app.started.elapsed().as_secs());
    let invalid = || Refusal::new(401, 1101, "InvalidCredentials", "Invalid credentials");
    let given: Option<String> = body
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("application_token")?.as_str().map(str::to_owned));
    let Some(client) = given.and_then(|t| app.auth.clients.iter().position(|c| c.secret == t))
    else {
        return app.finish(route, second, refusal(&invalid(), &rid));
    };
    if app.token_limits[client].check().is_err() {
        return app.finish(route, second, too_many(&app, &rid));
    }
    app.stats.token_requests.fetch_add(1, Ordering::Relaxed);
    let token = app.auth.issue(client, Instant::now());
    let body = json!({"auth_token": token, "refresh_token": format!("rt_{}", &token[7..])});
    app.finish(route, second, json_response(StatusCode::OK, &body, &rid))
}

/// A list's `q`: `field:criteria` pairs, comma-separated, every one to hold.
fn criteria(q: &str) -> Result<Vec<(String, String)>, Refusal> {
    q.split(',')
        .filter(|c| !c.is_empty())
        .map(|c| {
            let (f, v) = c.split_once(':').ok_or_else(|| invalid_query(c))?;
            match f {
                "iccid" | "iccid_with_luhn" | "status" | "endpoint" => {
                    Ok((f.to_owned(), v.to_owned()))
                }
                _ => Err(invalid_query(c)),
            }
        })
        .collect()
}

fn invalid_query(c: &str) -> Refusal {
    Refusal::new(
        422,
        1301,
        "InvalidQueryCriteria",
        format!("Search criteria {} is invalid", clip(c)),
    )
}

fn matches(s: &EmnifySim, crit: &[(String, String)]) -> bool {
    crit.iter().all(|(f, v)| match f.as_str() {
        "iccid" => s.iccid[..s.iccid.len() - 1] == *v,
        "iccid_with_luhn" => s.iccid == *v,
        "status" => v.parse::<i64>().is_ok_and(|id| id == s.status as i64),
        "endpoint" => v.parse::<i64>().is_ok_and(|id| Some(id) == s.endpoint),
        _ => false,
    })
}

async fn list_sims(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let mut query = String::new();
    let (mut page, mut per_page) = (None, None);
    for (k, v) in form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "q" => query = v.into_owned(),
            "page" => page = Some(v.into_owned()),
            "per_page" => per_page = Some(v.into_owned()),
            _ => {}
        }
    }
    app.emnify_api(
        "GET /api/v1/sim",
        &headers,
        &kill,
        Permission::IccGet,
        |c| {
            let reply = (|| {
                let crit = criteria(&query)?;
                let bad = |what: &str, v: &str| {
                    Refusal::new(
                        422,
                        1403,
                        "InvalidFormat",
                        format!("{what} has invalid format: {}", clip(v)),
                    )
                };
                let per_page = match per_page.as_deref() {
                    None => DEFAULT_PER_PAGE,
                    Some(v) => v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PER_PAGE).contains(n))
                        .ok_or_else(|| bad("per_page (1 to 2500)", v))?,
                };
                let page = match page.as_deref() {
                    None => 1,
                    Some(v) => v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| bad("page", v))?,
                };
                let d = c.world.lock();
                let hits: Vec<&EmnifySim> = match crit.iter().find(|(f, _)| f == "iccid_with_luhn")
                {
                    // A lookup by the full ICCID: at most one SIM.
                    Some((_, icc)) => d
                        .by_iccid
                        .get(icc)
                        .and_then(|id| d.sims.get(id))
                        .into_iter()
                        .filter(|s| c.visible(s) && matches(s, &crit))
                        .collect(),
                    None => d
                        .sims
                        .values()
                        .filter(|s| c.visible(s) && matches(s, &crit))
                        .collect(),
                };
                let total = hits.len();
                let items = hits
                    .iter()
                    .skip((page - 1).saturating_mul(per_page))
                    .take(per_page)
                    .map(|s| c.sim_json(&d, s))
                    .collect();
                Ok(Reply::Page {
                    items,
                    page,
                    pages: total.div_ceil(per_page),
                    total,
                })
            })();
            Answer::read(reply)
        },
    )
    .await
}

async fn get_sim(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    app.emnify_api(
        "GET /api/v1/sim/{id}",
        &headers,
        &kill,
        Permission::IccGet,
        |c| {
            let reply = id_of(&id, "SIM").and_then(|id| {
                let d = c.world.lock();
                d.sims
                    .get(&id)
                    .filter(|s| c.visible(s))
                    .map(|s| Reply::Json(c.sim_json(&d, s)))
                    .ok_or_else(|| Refusal::not_found("SIM", id))
            });
            Answer::read(reply)
        },
    )
    .await
}

fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, Refusal> {
    let failed = |m: &str| Refusal::new(422, 1400, "InputValidationFailed", m);
    let b = body.map_err(|_| failed("The request body could not be read"))?;
    serde_json::from_slice(&b).map_err(|_| failed("The request body is not JSON"))
}

/// `{"id": N}` status objects.
fn status_id(v: &Value, what: &str) -> Result<Option<i64>, Refusal> {
    match v.get("status") {
        None | Some(Value::Null) => Ok(None),
        Some(s) => s
            .get("id")
            .and_then(Value::as_i64)
            .map(Some)
            .ok_or_else(|| {
                Refusal::new(
                    422,
                    1403,
                    "InvalidFormat",
                    format!("{what} - status has invalid format: expecting {{\"id\": number}}"),
                )
            }),
    }
}

async fn patch_sim(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    app.emnify_api(
        "PATCH /api/v1/sim/{id}",
        &headers,
        &kill,
        Permission::IccUpdate,
        |c| {
            let mut mutated = false;
            let reply = (|| {
                let id = id_of(&id, "SIM")?;
                let v = json_body(body)?;
                let to = status_id(&v, "SIM")?
                    .map(|s| {
                        SimStatus::of_id(s).ok_or_else(|| {
                            Refusal::new(
                                422,
                                1401,
                                "InvalidReference",
                                format!("Invalid reference to SIM status with id {s}"),
                            )
                        })
                    })
                    .transpose()?;
                let mut d = c.world.lock();
                if !d.sims.get(&id).is_some_and(|s| c.visible(s)) {
                    return Err(Refusal::not_found("SIM", id));
                }
                if let Some(to) = to {
                    let changed = d.set_sim_status(id, to)?;
                    mutated = !changed.is_empty();
                    c.log(changed);
                }
                Ok(Reply::NoContent)
            })();
            Answer { reply, mutated }
        },
    )
    .await
}

async fn get_endpoint(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    app.emnify_api(
        "GET /api/v1/endpoint/{id}",
        &headers,
        &kill,
        Permission::IccGet,
        |c| {
            let reply = id_of(&id, "Endpoint").and_then(|id| {
                let d = c.world.lock();
                c.visible_endpoint(&d, id)
                    .then(|| Reply::Json(c.endpoint_json(&d, id)))
                    .ok_or_else(|| Refusal::not_found("Endpoint", id))
            });
            Answer::read(reply)
        },
    )
    .await
}

/// One endpoint object of a PATCH (single or bulk); `id` from the path or the object.
fn endpoint_update(v: &Value, id: Option<i64>) -> Result<EndpointUpdate, Refusal> {
    let invalid = |field: &str, expecting: &str| {
        Refusal::new(
            422,
            1403,
            "InvalidFormat",
            format!("Endpoint - {field} has invalid format: expecting {expecting}"),
        )
    };
    if !v.is_object() {
        return Err(invalid("endpoint", "an object"));
    }
    let id = match id {
        Some(id) => id,
        None => v
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| Refusal::new(422, 1402, "Required", "Endpoint - id is required"))?,
    };
    let text = |f: &str| -> Result<Option<String>, Refusal> {
        match v.get(f) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= 1000 => Ok(Some(s.clone())),
            Some(_) => Err(invalid(f, "String")),
        }
    };
    let status = status_id(v, "Endpoint")?;
    if status.is_some_and(|s| !(0..=1).contains(&s)) {
        return Err(invalid("status", "0 (Enabled) or 1 (Disabled)"));
    }
    let tariff_profile = match v.get("tariff_profile") {
        None | Some(Value::Null) => None,
        Some(t) => Some(
            t.get("id")
                .and_then(Value::as_i64)
                .ok_or_else(|| invalid("tariff_profile", "{\"id\": number}"))?,
        ),
    };
    let sim_status = match v.get("sim") {
        None | Some(Value::Null) => None,
        Some(s) => match status_id(s, "SIM")? {
            None => None,
            Some(id) => {
                Some(SimStatus::of_id(id).ok_or_else(|| invalid("sim.status", "0, 1, 2 or 4"))?)
            }
        },
    };
    Ok(EndpointUpdate {
        id,
        name: text("name")?,
        tags: text("tags")?,
        status,
        tariff_profile,
        sim_status,
    })
}

async fn patch_endpoint(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    app.emnify_api(
        "PATCH /api/v1/endpoint/{id}",
        &headers,
        &kill,
        Permission::IccUpdate,
        |c| {
            let mut mutated = false;
            let reply = (|| {
                let id = id_of(&id, "Endpoint")?;
                let u = endpoint_update(&json_body(body)?, Some(id))?;
                let mut d = c.world.lock();
                if !c.visible_endpoint(&d, id) {
                    return Err(Refusal::not_found("Endpoint", id));
                }
                d.check_endpoint(&u, &c.world.tariffs)?;
                let changed = d.apply_endpoint(&u);
                mutated = !changed.is_empty();
                c.log(changed);
                Ok(Reply::NoContent)
            })();
            Answer { reply, mutated }
        },
    )
    .await
}

/// Clears the bulk flag when the bulk request ends, however it ends.
struct BulkRunning<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for BulkRunning<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

async fn bulk_update(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let world = app.emnify();
    // Bulk requests are sent one after another: one while another runs is refused whole.
    if world.bulk_running.swap(true, Ordering::AcqRel) {
        let rid = app.request_id();
        let second = Some(app.started.elapsed().as_secs());
        return app.finish("PATCH /api/v2/endpoint/multi", second, too_many(&app, &rid));
    }
    let _running = BulkRunning(&world.bulk_running);
    app.emnify_api(
        "PATCH /api/v2/endpoint/multi",
        &headers,
        &kill,
        Permission::IccUpdate,
        |c| {
            let mut mutated = false;
            let reply = (|| {
                let v = json_body(body)?;
                let items = v.as_array().ok_or_else(|| {
                    Refusal::new(
                        422,
                        1400,
                        "InputValidationFailed",
                        "The body is a list of endpoints",
                    )
                })?;
                if items.is_empty() || items.len() > MAX_BULK {
                    return Err(Refusal::new(
                        422,
                        1400,
                        "InputValidationFailed",
                        format!(
                            "A bulk update carries 1 to {MAX_BULK} endpoints, not {}",
                            items.len()
                        ),
                    ));
                }
                let mut d = c.world.lock();
                let mut updates = Vec::with_capacity(items.len());
                let mut errors = Vec::new();
                let mut ids = std::collections::HashSet::new();
                for item in items {
                    match endpoint_update(item, None).and_then(|u| {
                        if !ids.insert(u.id) {
                            return Err(Refusal::new(
                                422,
                                1403,
                                "InvalidFormat",
                                format!("Endpoint {} appears twice", u.id),
                            ));
                        }
                        if !c.visible_endpoint(&d, u.id) {
                            return Err(Refusal::not_found("Endpoint", u.id));
                        }
                        d.check_endpoint(&u, &c.world.tariffs).map(|()| u)
                    }) {
                        Ok(u) => updates.push(u),
                        Err(e) => errors.push(e),
                    }
                }
                if !errors.is_empty() {
                    // Checked whole: nothing is applied when any item is refused.
                    let mut r = Refusal::new(
                        422,
                        1400,
                        "InputValidationFailed",
                        format!(
                            "{} of {} endpoints refused; nothing was changed",
                            errors.len(),
                            items.len()
                        ),
                    );
                    r.errors = errors;
                    return Err(r);
                }
                for u in &updates {
                    let changed = d.apply_endpoint(u);
                    mutated |= !changed.is_empty();
                    c.log(changed);
                }
                Ok(Reply::NoContent)
            })();
            Answer { reply, mutated }
        },
    )
    .await
}

async fn tariff_profiles(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
) -> Response {
    app.emnify_api(
        "GET /api/v1/tariff_profile",
        &headers,
        &kill,
        Permission::IccGet,
        |c| {
            let items: Vec<Value> = c
                .world
                .tariffs
                .iter()
                .map(|(id, _)| c.world.tariff_json(*id))
                .collect();
            Answer::read(Ok(Reply::Json(Value::Array(items))))
        },
    )
    .await
}

async fn not_found(State(app): AppState) -> Response {
    let rid = app.request_id();
    refusal(&Refusal::not_found("Resource", "?"), &rid)
}
