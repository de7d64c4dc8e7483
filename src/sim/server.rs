//! HTTP front of the simulator: routes, the per-request pipeline (latency → auth → rate
//! limit → faults → permission → rules → ledger) and the connection loop.
//!
//! Guarantees: every response carries `X-Request-Id`; gateway errors (401, 429) use the
//! `{"message"}` body and application errors the `Error` body; a dropped connection closes
//! the socket without a byte of response; nothing a client sends can panic a handler.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::model::{AttributeList, ErrorBody, SimPage, TokenResponse, codes};

use super::auth::Auth;
use super::config::{FaultConfig, Permission, SimConfig};
use super::faults::{After, Before, Faults};
use super::ledger::{Ledger, LedgerEntry, Stats};
use super::limits::{Bucket, retry_after_secs};
use super::rules::{self, Change, Ctx, RuleError};
use super::state::World;

/// Largest request body accepted; larger ones get 413 / 6014.
pub const MAX_BODY: usize = 64 * 1024;

/// The simulator's shared state.
pub struct App {
    pub(crate) cfg: SimConfig,
    pub world: World,
    pub auth: Auth,
    api_limits: Vec<Bucket>,
    token_limits: Vec<Bucket>,
    pub faults: Faults,
    pub ledger: Ledger,
    pub stats: Stats,
    started: Instant,
    req_seq: AtomicU64,
}

/// Cancelling it closes the request's connection without a response.
#[derive(Clone)]
struct ConnKill(CancellationToken);

/// What a handler produced: a JSON answer or a refusal, and whether it changed state.
struct Done {
    reply: Result<Value, RuleError>,
    mutated: bool,
}

impl App {
    pub fn new(cfg: SimConfig, world: World, ledger: Ledger) -> Self {
        let n = cfg.clients.len();
        Self {
            auth: Auth::new(cfg.clients.clone(), cfg.token_ttl),
            api_limits: (0..n)
                .map(|_| Bucket::per_second(cfg.rate_limit_per_second, cfg.rate_limit_burst))
                .collect(),
            token_limits: (0..n)
                .map(|_| Bucket::per_minute(cfg.token_endpoint_per_minute))
                .collect(),
            faults: Faults::new(cfg.faults.clone(), cfg.seed),
            ledger,
            stats: Stats::default(),
            started: Instant::now(),
            req_seq: AtomicU64::new(0),
            world,
            cfg,
        }
    }

    pub(crate) fn stats_report(&self) -> super::ledger::StatsReport {
        self.stats.report(self.started, &self.ledger)
    }

    fn request_id(&self) -> String {
        format!(
            "req-{:08x}-{:08x}",
            self.cfg.seed as u32,
            self.req_seq.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn ctx<'a>(&'a self, client: usize, now: Instant, now_text: &'a str) -> Ctx<'a> {
        Ctx {
            world: &self.world,
            sphere: &self.auth.clients[client].portfolio,
            now,
            now_text,
            strict_no_op: self.cfg.strict_no_op,
            activation_delay: self.cfg.activation_delay,
            suspend_settle: self.cfg.suspend_settle,
            attribute_writes_on_suspended: self.cfg.attribute_writes_on_suspended,
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one ledger row has this many facts"
    )]
    fn log(
        &self,
        client: usize,
        icc: &str,
        kind: &str,
        field: &str,
        old: Value,
        new: Value,
        attr: Option<i64>,
        rid: &str,
        now_text: &str,
    ) {
        self.stats.mutations.fetch_add(1, Ordering::Relaxed);
        self.ledger.push(LedgerEntry {
            seq: 0,
            at: now_text.into(),
            client: self
                .auth
                .clients
                .get(client)
                .map_or("system", |c| c.id.as_str())
                .into(),
            icc_id: icc.into(),
            kind: kind.into(),
            field: field.into(),
            old,
            new,
            icc_attribute_id: attr,
            request_id: rid.into(),
        });
    }

    fn log_changes(&self, client: usize, icc: &str, changes: Vec<Change>, rid: &str, t: &str) {
        for c in changes {
            self.log(client, icc, "sim", c.field, c.old, c.new, None, rid, t);
        }
    }

    /// Locks a SIM visible to `client` and settles a due activation; 6014/6002 otherwise.
    fn with_sim<R>(
        &self,
        client: usize,
        icc: &str,
        rid: &str,
        f: impl FnOnce(&mut super::state::SimRecord, &Ctx<'_>) -> Result<R, RuleError>,
    ) -> Result<R, RuleError> {
        if !(19..=20).contains(&icc.len()) || !icc.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RuleError::new(
                codes::FIELD_REJECTED,
                "Field rejected",
                json!({"field": "iccId", "value": icc.chars().take(64).collect::<String>()}),
            ));
        }
        let not_found = || RuleError::new(codes::NOT_FOUND, "No such SIM", json!({"iccId": icc}));
        let m = self.world.sims.get(icc).ok_or_else(not_found)?;
        let now = Instant::now();
        let now_text = now_rfc3339();
        let ctx = self.ctx(client, now, &now_text);
        let mut rec = self.world.lock(m);
        if !self.world.in_sphere(ctx.sphere, &rec.sim.portfolio_id) {
            return Err(not_found());
        }
        if let Some(c) = rules::settle(&mut rec, now, &now_text) {
            self.log(
                usize::MAX,
                icc,
                "sim",
                c.field,
                c.old,
                c.new,
                None,
                rid,
                &now_text,
            );
        }
        f(&mut rec, &ctx)
    }

    /// The per-request pipeline shared by every `/api/v2` route.
    async fn api(
        self: &Arc<Self>,
        route: &'static str,
        headers: &HeaderMap,
        kill: &ConnKill,
        permission: Permission,
        handler: impl FnOnce(&Self, usize, &str) -> Done,
    ) -> Response {
        let rid = self.request_id();
        let second = self.started.elapsed().as_secs();
        let draw = self.faults.draw();
        if !draw.latency.is_zero() {
            tokio::time::sleep(draw.latency).await;
        }
        let authz = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(client) = self.auth.check(authz, Instant::now()) else {
            return self.finish(
                route,
                Some(second),
                gateway(StatusCode::UNAUTHORIZED, "Unauthorized", &rid, None),
            );
        };
        if let Err(wait) = self.api_limits[client].check() {
            self.stats.too_many_requests.fetch_add(1, Ordering::Relaxed);
            let ra = self.retry_after(wait);
            return self.finish(
                route,
                Some(second),
                gateway(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", &rid, ra),
            );
        }
        if draw.revoke {
            self.stats.fault("revoke");
            self.auth.revoke(Some(client));
        }
        match draw.before {
            Before::Proceed => {}
            Before::Status(s) => {
                self.stats.fault(fault_name(s));
                return self.finish(route, Some(second), server_error(s, &rid));
            }
            Before::Drop => {
                self.stats.fault("drop");
                self.stats.record(route, 0, Some(second));
                kill.0.cancel();
                return std::future::pending().await;
            }
        }
        if let Some(d) = draw.slow {
            self.stats.fault("slow");
            tokio::time::sleep(d).await;
        }
        if !self.auth.has(client, permission) {
            let e = RuleError::new(
                codes::PERMISSION,
                "The client is not permitted to perform this operation",
                json!({"permission": permission.name()}),
            );
            return self.finish(route, Some(second), rule_error(&e, &rid));
        }
        let done = handler(self, client, &rid);
        if done.mutated {
            match draw.after {
                After::Answer => {}
                After::Status(s) => {
                    self.stats.fault("applyThenFail");
                    return self.finish(route, Some(second), server_error(s, &rid));
                }
                After::Drop => {
                    self.stats.fault("applyThenFail");
                    self.stats.record(route, 0, Some(second));
                    kill.0.cancel();
                    return std::future::pending().await;
                }
            }
        }
        let resp = match done.reply {
            Ok(v) => json_response(StatusCode::OK, &v, &rid),
            Err(e) => rule_error(&e, &rid),
        };
        self.finish(route, Some(second), resp)
    }

    fn retry_after(&self, wait: std::time::Duration) -> Option<RetryAfter> {
        let secs = retry_after_secs(wait);
        match (self.cfg.retry_after_header, self.cfg.retry_after_http_date) {
            (false, _) => None,
            // An HTTP date has whole-second precision: one more second keeps it from being early.
            (true, true) => Some(RetryAfter::Date(secs + 1)),
            (true, false) => Some(RetryAfter::Seconds(secs)),
        }
    }

    fn finish(&self, route: &'static str, second: Option<u64>, resp: Response) -> Response {
        self.stats.record(route, resp.status().as_u16(), second);
        resp
    }
}

fn fault_name(status: u16) -> &'static str {
    match status {
        500 => "http500",
        502 => "http502",
        503 => "http503",
        _ => "http504",
    }
}

/// Now as RFC 3339 with seconds, the contract's date format.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn with_request_id(mut r: Response, rid: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(rid) {
        r.headers_mut().insert("x-request-id", v);
    }
    r
}

fn json_response(status: StatusCode, v: &impl serde::Serialize, rid: &str) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    with_request_id(r, rid)
}

fn gateway(status: StatusCode, msg: &str, rid: &str, retry_after: Option<RetryAfter>) -> Response {
    let mut r = json_response(status, &json!({"message": msg}), rid);
    match retry_after {
        Some(RetryAfter::Seconds(s)) => {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        Some(RetryAfter::Date(s)) => {
            let when = SystemTime::now() + std::time::Duration::from_secs(s);
            if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(when)) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        None => {}
    }
    r
}

/// How a 429 says when to come back.
#[derive(Debug, Clone, Copy)]
enum RetryAfter {
    Seconds(u64),
    Date(u64),
}

fn rule_error(e: &RuleError, rid: &str) -> Response {
    let body = ErrorBody {
        error_code: Some(e.code),
        error_tag: Some(e.tag.into()),
        message: Some(e.message.clone()),
        additional_details: Some(e.details.clone()),
    };
    json_response(
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
        &body,
        rid,
    )
}

/// 500 and 503 answer JSON; 502 and 504 answer a gateway's HTML page, as real ones do.
fn server_error(status: u16, rid: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    match status {
        502 | 504 => {
            let html = format!(
                "<html><head><title>{status}</title></head><body><h1>{}</h1></body></html>",
                code.canonical_reason().unwrap_or("Gateway Error")
            );
            let mut r = (code, html).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            with_request_id(r, rid)
        }
        _ => json_response(
            code,
            &json!({"message": code.canonical_reason().unwrap_or("Server Error")}),
            rid,
        ),
    }
}

/// The body, or a 413 / 400 refusal at the point the contract checks the body (rule 6).
fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, RuleError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            RuleError {
                status: 413,
                ..RuleError::new(
                    codes::FIELD_REJECTED,
                    "Request body too large",
                    json!({"maxBytes": MAX_BODY}),
                )
            }
        } else {
            RuleError::new(
                codes::BAD_BODY,
                "The request body could not be read",
                json!({}),
            )
        }
    })
}

fn sim_json(rec: &super::state::SimRecord) -> Value {
    serde_json::to_value(&rec.sim).unwrap_or(Value::Null)
}

fn attr_id(s: &str) -> Result<i64, RuleError> {
    s.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
        RuleError::new(
            codes::FIELD_REJECTED,
            "Field rejected",
            json!({"field": "iccAttributeId", "value": s.chars().take(32).collect::<String>()}),
        )
    })
}

type AppState = State<Arc<App>>;

async fn get_sim(
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

async fn patch_sim(
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

async fn list_attributes(
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

async fn create_attribute(
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

async fn get_attribute(
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

async fn patch_attribute(
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

async fn delete_attribute(
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

/// The filters of `GET /api/v2/sim`, validated.
#[derive(Debug, Default, Hash)]
struct Filters {
    icc_ids: BTreeSet<String>,
    sim_id: Option<String>,
    mno_id: Option<i64>,
    portfolio_id: Option<String>,
    package_id: Option<i64>,
    status: Option<String>,
    admin: Option<bool>,
    system: Option<bool>,
    customer: Option<bool>,
}

impl Filters {
    fn matches(&self, s: &crate::model::Sim) -> bool {
        self.sim_id
            .as_ref()
            .is_none_or(|v| s.sim_id.as_ref() == Some(v))
            && self.mno_id.is_none_or(|v| s.mno_id == v)
            && self
                .portfolio_id
                .as_ref()
                .is_none_or(|v| s.portfolio_id == *v)
            && self.package_id.is_none_or(|v| s.package_id == v)
            && self.status.as_ref().is_none_or(|v| s.status == *v)
            && self.admin.is_none_or(|v| s.admin_suspend == v)
            && self.system.is_none_or(|v| s.system_suspend == v)
            && self.customer.is_none_or(|v| s.customer_suspend == v)
    }

    fn fingerprint(&self) -> u32 {
        crc32fast::hash(format!("{self:?}").as_bytes())
    }
}

#[derive(serde::Serialize, Deserialize)]
struct PageToken {
    after: String,
    f: u32,
}

fn bad_param(field: &str, value: &str) -> RuleError {
    RuleError::new(
        codes::FIELD_REJECTED,
        "Field rejected",
        json!({"field": field, "value": value.chars().take(64).collect::<String>()}),
    )
}

fn parse_list_query(q: &str) -> Result<(Filters, usize, Option<String>), RuleError> {
    let mut f = Filters::default();
    let mut page_size = 50usize;
    let mut page_token = None;
    let mut icc_count = 0usize;
    let int = |k: &str, v: &str| v.parse::<i64>().map_err(|_| bad_param(k, v));
    let boolean = |k: &str, v: &str| match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad_param(k, v)),
    };
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        let (k, v) = (k.as_ref(), v.as_ref());
        match k {
            "iccId" => {
                if !(19..=20).contains(&v.len()) || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad_param(k, v));
                }
                icc_count += 1;
                f.icc_ids.insert(v.to_owned());
            }
            "simId" => f.sim_id = Some(v.to_owned()),
            "mnoId" => f.mno_id = Some(int(k, v)?),
            "portfolioId" => f.portfolio_id = Some(v.to_owned()),
            "packageId" => f.package_id = Some(int(k, v)?),
            "status" => f.status = Some(v.to_owned()),
            "adminSuspend" => f.admin = Some(boolean(k, v)?),
            "systemSuspend" => f.system = Some(boolean(k, v)?),
            "customerSuspend" => f.customer = Some(boolean(k, v)?),
            "pageSize" => {
                page_size = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| bad_param(k, v))?;
            }
            "pageToken" => page_token = Some(v.to_owned()),
            other => {
                return Err(RuleError::new(
                    codes::UNKNOWN_FILTER,
                    "Unknown filter parameter",
                    json!({"field": other.chars().take(64).collect::<String>()}),
                ));
            }
        }
    }
    if icc_count > 100 {
        return Err(RuleError::new(
            codes::FIELD_REJECTED,
            "Field rejected",
            json!({"field": "iccId", "maxItems": 100}),
        ));
    }
    let after = match page_token {
        None => None,
        Some(t) => {
            let tok: PageToken = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t.as_bytes())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| bad_param("pageToken", &t))?;
            if tok.f != f.fingerprint() {
                return Err(RuleError::new(
                    codes::FIELD_REJECTED,
                    "Field rejected",
                    json!({"field": "pageToken", "reason": "issued for other filters"}),
                ));
            }
            Some(tok.after)
        }
    };
    Ok((f, page_size, after))
}

impl App {
    fn list(&self, client: usize, q: &str, rid: &str) -> Result<Value, RuleError> {
        let (f, page_size, after) = parse_list_query(q)?;
        let sphere = self.auth.clients[client].portfolio.clone();
        let now = Instant::now();
        let now_text = now_rfc3339();
        let lower = after
            .as_ref()
            .map_or(Bound::Unbounded, |a| Bound::Excluded(a.clone()));
        let mut data = Vec::with_capacity(page_size.min(64));
        let mut more = false;
        let mut visit = |icc: &String, m: &std::sync::Mutex<super::state::SimRecord>| -> bool {
            let mut rec = self.world.lock(m);
            if !self.world.in_sphere(&sphere, &rec.sim.portfolio_id) {
                return true;
            }
            if let Some(c) = rules::settle(&mut rec, now, &now_text) {
                self.log(
                    usize::MAX,
                    icc,
                    "sim",
                    c.field,
                    c.old,
                    c.new,
                    None,
                    rid,
                    &now_text,
                );
            }
            if f.matches(&rec.sim) {
                if data.len() == page_size {
                    more = true;
                    return false;
                }
                data.push(rec.sim.clone());
            }
            true
        };
        if f.icc_ids.is_empty() {
            for (icc, m) in self.world.sims.range((lower, Bound::Unbounded)) {
                if !visit(icc, m) {
                    break;
                }
            }
        } else {
            for icc in f.icc_ids.range((lower, Bound::Unbounded)) {
                if let Some(m) = self.world.sims.get(icc)
                    && !visit(icc, m)
                {
                    break;
                }
            }
        }
        let next_page_token = more.then(|| {
            let tok = PageToken {
                after: data.last().map(|s| s.icc_id.clone()).unwrap_or_default(),
                f: f.fingerprint(),
            };
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&tok).unwrap_or_default())
        });
        Ok(serde_json::to_value(SimPage {
            data,
            next_page_token,
        })
        .unwrap_or(Value::Null))
    }
}

async fn list_sims(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    app.api(
        "GET /api/v2/sim",
        &headers,
        &kill,
        Permission::IccGet,
        |app, c, rid| Done {
            reply: app.list(c, q.as_deref().unwrap_or(""), rid),
            mutated: false,
        },
    )
    .await
}

async fn token(
    State(app): AppState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    const ROUTE: &str = "POST /oauth2/token";
    let rid = app.request_id();
    app.stats.token_requests.fetch_add(1, Ordering::Relaxed);
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

#[derive(Deserialize)]
struct LedgerQuery {
    since: Option<u64>,
    #[serde(rename = "iccId")]
    icc_id: Option<String>,
}

async fn admin_stats(State(app): AppState) -> Response {
    json_response(
        StatusCode::OK,
        &app.stats.report(app.started, &app.ledger),
        "admin",
    )
}

async fn admin_ledger(State(app): AppState, Query(q): Query<LedgerQuery>) -> Response {
    let entries = app.ledger.since(q.since.unwrap_or(0), q.icc_id.as_deref());
    json_response(StatusCode::OK, &json!({"data": entries}), "admin")
}

async fn admin_revoke(State(app): AppState) -> Response {
    let n = app.auth.revoke(None);
    json_response(StatusCode::OK, &json!({"revoked": n}), "admin")
}

async fn admin_get_faults(State(app): AppState) -> Response {
    json_response(StatusCode::OK, &app.faults.config(), "admin")
}

async fn admin_put_faults(State(app): AppState, body: Bytes) -> Response {
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

async fn admin_sim(State(app): AppState, Path(icc): Path<String>) -> Response {
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

async fn admin_save(State(app): AppState) -> Response {
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

async fn not_found(State(app): AppState) -> Response {
    let rid = app.request_id();
    gateway(StatusCode::NOT_FOUND, "Not Found", &rid, None)
}

/// All routes of the contract plus the `/__sim` introspection surface.
fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/oauth2/token", post(token))
        .route("/api/v2/sim", get(list_sims))
        .route("/api/v2/sim/{iccId}", get(get_sim).patch(patch_sim))
        .route(
            "/api/v2/sim/{iccId}/attribute",
            get(list_attributes).post(create_attribute),
        )
        .route(
            "/api/v2/sim/{iccId}/attribute/{iccAttributeId}",
            get(get_attribute)
                .patch(patch_attribute)
                .delete(delete_attribute),
        )
        .route("/__sim/stats", get(admin_stats))
        .route("/__sim/ledger", get(admin_ledger))
        .route("/__sim/revoke", post(admin_revoke))
        .route("/__sim/faults", get(admin_get_faults).put(admin_put_faults))
        .route("/__sim/sims/{iccId}", get(admin_sim))
        .route("/__sim/save", post(admin_save))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

async fn method_not_allowed(State(app): AppState) -> Response {
    let rid = app.request_id();
    gateway(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
        &rid,
        None,
    )
}

/// Accepts connections until `shutdown`, serving each on its own task. A connection whose
/// request asks to be dropped is closed at once, without a response.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    use hyper_util::rt::TokioIo;
    use tower::ServiceExt;
    let router = router(app);
    loop {
        let (stream, _peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off, never exit the loop.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let kill = CancellationToken::new();
        let router = router.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let k = kill.clone();
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut req = req.map(axum::body::Body::new);
                    req.extensions_mut().insert(ConnKill(k.clone()));
                    router.clone().oneshot(req)
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = kill.cancelled() => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}
