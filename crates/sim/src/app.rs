//! The simulator's shared state and the per-request pipeline every handler goes through
//! (latency → auth → rate limit → faults → permission → rules → ledger), with the response
//! shapes of the contract.
//!
//! Guarantees: every response carries `X-Request-Id`; gateway errors (401, 429) use the
//! `{"message"}` body and application errors the `Error` body; nothing a client sends can
//! panic a handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::model::{ErrorBody, codes};

use super::auth::Auth;
use super::config::{Permission, SimConfig};
use super::faults::{After, Before, Draw, Faults};
use super::ledger::{Ledger, LedgerEntry, Stats};
use super::limits::{Bucket, retry_after_secs};
use super::rules::{self, Change, Ctx, RuleError};
use super::state::World;

pub(super) type AppState = State<Arc<App>>;

/// Largest request body accepted; larger ones get 413 / 6014.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// The simulator's shared state.
pub(crate) struct App {
    pub(crate) cfg: SimConfig,
    pub(crate) world: World,
    pub(crate) auth: Auth,
    pub(super) api_limits: Vec<Bucket>,
    pub(super) token_limits: Vec<Bucket>,
    pub(crate) faults: Faults,
    pub(crate) ledger: Ledger,
    pub(crate) stats: Stats,
    pub(super) started: Instant,
    pub(super) req_seq: AtomicU64,
    /// The Super SIM fleet, in `--provider twilio` (the Eseye world is then empty).
    pub(crate) twilio: Option<super::twilio::World>,
    /// The emnify organisation(s), in `--provider emnify` (the Eseye world is then empty).
    pub(crate) emnify: Option<super::emnify::World>,
}

/// How a request fares at the gate, before the rules.
enum Gate {
    /// On to the rules, as this client.
    Pass(usize),
    /// Answered at the gate (401, 429, an injected 5xx).
    Answer(Response),
    /// Dropped without an answer.
    Drop,
}

/// A request as the pipeline's answers name it: its route, the second it came in, its
/// connection, its id.
pub(super) struct Req<'a> {
    pub(super) route: &'static str,
    pub(super) second: Option<u64>,
    pub(super) kill: &'a ConnKill,
    pub(super) rid: &'a str,
}

/// Cancelling it closes the request's connection without a response.
#[derive(Clone)]
pub(super) struct ConnKill(pub(super) CancellationToken);

/// What a handler produced: a JSON answer or a refusal, and whether it changed state.
pub(super) struct Done {
    pub(super) reply: Result<Value, RuleError>,
    pub(super) mutated: bool,
}

impl App {
    pub(crate) fn new(cfg: SimConfig, world: World, ledger: Ledger) -> Self {
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
            twilio: (cfg.provider == super::config::Provider::Twilio)
                .then(|| super::twilio::World::seeded(cfg.seed, cfg.sims, n)),
            emnify: (cfg.provider == super::config::Provider::Emnify)
                .then(|| super::emnify::World::seeded(cfg.seed, cfg.sims)),
            world,
            cfg,
        }
    }

    pub(crate) fn stats_report(&self) -> super::ledger::StatsReport {
        self.stats.report(self.started, &self.ledger)
    }

    pub(super) fn request_id(&self) -> String {
        format!(
            "req-{:08x}-{:08x}",
            self.cfg.seed as u32,
            self.req_seq.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub(super) fn ctx<'a>(&'a self, client: usize, now: Instant, now_text: &'a str) -> Ctx<'a> {
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
    pub(super) fn log(
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

    pub(super) fn log_changes(
        &self,
        client: usize,
        icc: &str,
        changes: Vec<Change>,
        rid: &str,
        t: &str,
    ) {
        for c in changes {
            self.log(client, icc, "sim", c.field, c.old, c.new, None, rid, t);
        }
    }

    /// Turns a due `pendingProvision` into `active`, in the ledger as the `system` client.
    pub(super) fn settle(
        &self,
        rec: &mut super::state::SimRecord,
        now: Instant,
        now_text: &str,
        rid: &str,
    ) {
        if let Some(c) = rules::settle(rec, now, now_text) {
            let icc = rec.sim.icc_id.clone();
            self.log(
                usize::MAX,
                &icc,
                "sim",
                c.field,
                c.old,
                c.new,
                None,
                rid,
                now_text,
            );
        }
    }

    /// Locks a SIM visible to `client` and settles a due activation; 6014/6002 otherwise.
    pub(super) fn with_sim<R>(
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
        self.settle(&mut rec, now, &now_text, rid);
        if self.faults.list().0.is_zero() {
            return f(&mut rec, &ctx);
        }
        // A lagging list shows what the SIM was: keep it.
        let before = rec.sim.clone();
        let r = f(&mut rec, &ctx);
        rec.changed_from(before, now);
        r
    }

    /// The per-request pipeline shared by every `/api/v2` route.
    pub(super) async fn api(
        self: &Arc<Self>,
        route: &'static str,
        headers: &HeaderMap,
        kill: &ConnKill,
        permission: Permission,
        handler: impl FnOnce(&Self, usize, &str) -> Done,
    ) -> Response {
        let rid = self.request_id();
        let second = Some(self.started.elapsed().as_secs());
        self.stats.arrived(SystemTime::now());
        let draw = self.faults.draw();
        if !draw.latency.is_zero() {
            tokio::time::sleep(draw.latency).await;
        }
        let client = match self.admit(headers, &draw, &rid) {
            Gate::Pass(c) => c,
            Gate::Answer(r) => return self.finish(route, second, r),
            Gate::Drop => return self.drop_connection(route, second, kill).await,
        };
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
            return self.finish(route, second, rule_error(&e, &rid));
        }
        let done = handler(self, client, &rid);
        let req = Req {
            route,
            second,
            kill,
            rid: &rid,
        };
        if let Some(r) = self.fault_after(&draw, done.mutated, &req).await {
            return r;
        }
        let resp = match done.reply {
            Ok(v) => json_response(StatusCode::OK, &v, &rid),
            Err(e) => rule_error(&e, &rid),
        };
        self.finish(route, second, resp)
    }

    /// Rules 1 and 2 (a live token, the rate limit), then the faults that come before the
    /// rules: the caller's client, or the answer, or a dropped connection.
    fn admit(&self, headers: &HeaderMap, draw: &super::faults::Draw, rid: &str) -> Gate {
        let authz = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(client) = self.auth.check(authz, Instant::now()) else {
            return Gate::Answer(gateway(StatusCode::UNAUTHORIZED, "Unauthorized", rid, None));
        };
        if let Err(wait) = self.api_limits[client].check() {
            self.stats.too_many_requests.fetch_add(1, Ordering::Relaxed);
            let ra = self.retry_after(wait);
            return Gate::Answer(gateway(
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
                rid,
                ra,
            ));
        }
        if draw.revoke {
            self.stats.fault("revoke");
            self.auth.revoke(Some(client));
        }
        match draw.before {
            Before::Proceed => Gate::Pass(client),
            Before::Status(s) => {
                self.stats.fault(fault_name(s));
                Gate::Answer(server_error(s, rid))
            }
            Before::Throttle(secs) => {
                self.stats.fault("http429");
                self.stats.too_many_requests.fetch_add(1, Ordering::Relaxed);
                let ra = self
                    .cfg
                    .retry_after_header
                    .then_some(RetryAfter::Seconds(secs));
                Gate::Answer(gateway(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too Many Requests",
                    rid,
                    ra,
                ))
            }
            Before::Drop => {
                self.stats.fault("drop");
                Gate::Drop
            }
        }
    }

    /// The faults drawn for `req` that come before the rules of every provider's mode but
    /// Eseye's (which answers them in its own gate): a 5xx, a 429 as `throttled` answers
    /// it, a dropped connection, or a slow answer (held here); `None`: on to the rules.
    pub(super) async fn fault_before(
        &self,
        draw: &Draw,
        req: &Req<'_>,
        throttled: impl FnOnce() -> Response,
    ) -> Option<Response> {
        match draw.before {
            Before::Proceed => {}
            Before::Status(s) => {
                self.stats.fault(fault_name(s));
                return Some(self.finish(req.route, req.second, server_error(s, req.rid)));
            }
            Before::Throttle(_) => {
                self.stats.fault("http429");
                return Some(self.finish(req.route, req.second, throttled()));
            }
            Before::Drop => {
                self.stats.fault("drop");
                return Some(self.drop_connection(req.route, req.second, req.kill).await);
            }
        }
        if let Some(d) = draw.slow {
            self.stats.fault("slow");
            tokio::time::sleep(d).await;
        }
        None
    }

    /// Apply-then-fail, after a request that changed something: its 503 or its dropped
    /// connection; `None`: the answer goes out.
    pub(super) async fn fault_after(
        &self,
        draw: &Draw,
        mutated: bool,
        req: &Req<'_>,
    ) -> Option<Response> {
        if !mutated {
            return None;
        }
        match draw.after {
            After::Answer => None,
            After::Status(s) => {
                self.stats.fault("applyThenFail");
                Some(self.finish(req.route, req.second, server_error(s, req.rid)))
            }
            After::Drop => {
                self.stats.fault("applyThenFail");
                Some(self.drop_connection(req.route, req.second, req.kill).await)
            }
        }
    }

    /// Closes the request's connection without a byte of answer.
    pub(super) async fn drop_connection(
        &self,
        route: &'static str,
        second: Option<u64>,
        kill: &ConnKill,
    ) -> Response {
        self.stats.record(route, 0, second);
        kill.0.cancel();
        std::future::pending().await
    }

    pub(super) fn retry_after(&self, wait: std::time::Duration) -> Option<RetryAfter> {
        let secs = retry_after_secs(wait);
        match (self.cfg.retry_after_header, self.cfg.retry_after_http_date) {
            (false, _) => None,
            // An HTTP date has whole-second precision: one more second keeps it from being early.
            (true, true) => Some(RetryAfter::Date(secs + 1)),
            (true, false) => Some(RetryAfter::Seconds(secs)),
        }
    }

    pub(super) fn finish(
        &self,
        route: &'static str,
        second: Option<u64>,
        resp: Response,
    ) -> Response {
        self.stats.record(route, resp.status().as_u16(), second);
        resp
    }
}

pub(super) fn fault_name(status: u16) -> &'static str {
    match status {
        500 => "http500",
        502 => "http502",
        503 => "http503",
        _ => "http504",
    }
}

/// Now as RFC 3339 with seconds, the contract's date format.
pub(crate) fn now_rfc3339() -> String {
    crate::clock::now_rfc3339()
}

pub(super) fn with_request_id(mut r: Response, rid: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(rid) {
        r.headers_mut().insert("x-request-id", v);
    }
    r
}

pub(super) fn json_response(status: StatusCode, v: &impl serde::Serialize, rid: &str) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    with_request_id(r, rid)
}

pub(super) fn gateway(
    status: StatusCode,
    msg: &str,
    rid: &str,
    retry_after: Option<RetryAfter>,
) -> Response {
    let mut r = json_response(status, &json!({"message": msg}), rid);
    match retry_after {
        Some(RetryAfter::Seconds(s)) => {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        Some(RetryAfter::Date(s)) => {
            let when = SystemTime::now() + std::time::Duration::from_secs(s);
            if let Ok(v) = HeaderValue::from_str(&crate::clock::http_date(when)) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        None => {}
    }
    r
}

/// How a 429 says when to come back.
#[derive(Debug, Clone, Copy)]
pub(super) enum RetryAfter {
    Seconds(u64),
    Date(u64),
}

pub(super) fn rule_error(e: &RuleError, rid: &str) -> Response {
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
pub(super) fn server_error(status: u16, rid: &str) -> Response {
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
pub(super) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, RuleError> {
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
