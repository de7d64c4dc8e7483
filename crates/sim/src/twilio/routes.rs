//! The Super SIM mode's HTTP surface: `GET /v1/Sims` (filters `Iccid`, `Status`, `Fleet`;
//! `PageSize`, `PageToken`), `GET|POST /v1/Sims/{Sid}` (form-encoded `Status`, `Fleet`,
//! `UniqueName`), `GET /v1/Fleets[/{Sid}]`, and the shared `/__sim` surface.
//!
//! Guarantees: every request goes through Basic auth (Account SID and auth token) → the
//! concurrency limit (429 / 20429) → latency → the rate limit (429 / 20429) → the fault
//! knobs → permission → the update under the SIM's lock → the ledger → apply-then-fail, as
//! the Eseye mode does; every refusal has Twilio's `{code, message, more_info, status}`
//! body; nothing a client sends can panic a handler.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use base64::Engine as _;
use serde_json::{Value, json};

use super::{Refusal, Status, TwilioSim, Update, World, account_sid, apply, settle};
use crate::admin::*;
use crate::app::{App, AppState, ConnKill, MAX_BODY, Req, json_response, now_rfc3339};
use crate::config::Permission;

/// Largest page a list gives (more is 20007).
const MAX_PAGE: usize = 1000;
/// A list's page when `PageSize` is not given.
const DEFAULT_PAGE: usize = 50;

/// The Super SIM routes and the `/__sim` surface.
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/Sims", get(list_sims))
        .route("/v1/Sims/{Sid}", get(fetch_sim).post(update_sim))
        .route("/v1/Fleets", get(list_fleets))
        .route("/v1/Fleets/{Sid}", get(fetch_fleet))
        .route("/__sim/stats", get(admin_stats))
        .route("/__sim/ledger", get(admin_ledger))
        .route("/__sim/faults", get(admin_get_faults).put(admin_put_faults))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// What a handler answers: a status and a body, or a refusal; and whether it changed state.
struct Answer {
    reply: Result<(StatusCode, Value), Refusal>,
    mutated: bool,
}

impl Answer {
    fn read(reply: Result<Value, Refusal>) -> Self {
        Self {
            reply: reply.map(|v| (StatusCode::OK, v)),
            mutated: false,
        }
    }
}

/// What a handler is given besides its request.
struct Call<'a> {
    app: &'a App,
    world: &'a World,
    client: usize,
    rid: &'a str,
    /// `http://HOST` as the request named it, for the URLs in the answers.
    base: String,
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
    refusal(&Refusal::new(429, 20429, "Too many requests"), rid)
}

/// The client a Basic `Authorization` header names: user its Account SID, password its
/// secret (the auth token).
fn basic_client(app: &App, headers: &HeaderMap) -> Option<usize> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    app.auth
        .clients
        .iter()
        .position(|c| account_sid(&c.id) == user && c.secret == password)
}

impl App {
    fn twilio(&self) -> &World {
        self.twilio
            .as_ref()
            .expect("the Super SIM routes are served only with a Super SIM world")
    }

    /// The per-request pipeline of every `/v1` route.
    async fn super_sim(
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
        let Some(client) = basic_client(self, headers) else {
            let r = Refusal::new(401, 20003, "Authenticate");
            return self.finish(route, second, refusal(&r, &rid));
        };
        // The limit is on requests being processed: the latency is part of the processing.
        let world = self.twilio();
        let Some(_in_flight) = world.admit(client, self.cfg.concurrent_limit) else {
            return self.finish(route, second, too_many(self, &rid));
        };
        if !draw.latency.is_zero() {
            tokio::time::sleep(draw.latency).await;
        }
        if self.api_limits[client].check().is_err() {
            return self.finish(route, second, too_many(self, &rid));
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
        if !self.auth.has(client, permission) {
            let r = Refusal::new(403, 20403, "Forbidden: the credential may not do this");
            return self.finish(route, second, refusal(&r, &rid));
        }
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("127.0.0.1");
        let call = Call {
            app: self,
            world,
            client,
            rid: &rid,
            base: format!("http://{host}"),
        };
        let done = handler(&call);
        if let Some(r) = self.fault_after(&draw, done.mutated, &req).await {
            return r;
        }
        let resp = match done.reply {
            Ok((status, v)) => json_response(status, &v, &rid),
            Err(r) => refusal(&r, &rid),
        };
        self.finish(route, second, resp)
    }
}

impl Call<'_> {
    fn sim_json(&self, s: &TwilioSim) -> Value {
        let url = format!("{}/v1/Sims/{}", self.base, s.sid);
        json!({
            "sid": s.sid,
            "unique_name": s.unique_name,
            "account_sid": account_sid(&self.app.auth.clients[self.client].id),
            "iccid": s.iccid,
            "status": s.shown_status(),
            "fleet_sid": s.fleet.map(|i| self.world.fleets[i].sid.clone()),
            "date_created": s.date_created,
            "date_updated": s.date_updated,
            "url": url,
            "links": {
                "billing_periods": format!("{url}/BillingPeriods"),
                "sim_ip_addresses": format!("{url}/IpAddresses"),
            },
        })
    }

    fn visible(&self, s: &TwilioSim) -> bool {
        let sphere = &self.app.auth.clients[self.client].portfolio;
        self.app.world.in_sphere(sphere, s.portfolio)
    }

    fn not_found(&self, key: &str) -> Refusal {
        Refusal::new(
            404,
            20404,
            format!("The requested resource /Sims/{} was not found", clip(key)),
        )
    }

    /// Locks the SIM `key` names (settled first), if this client sees it.
    fn with_sim<R>(
        &self,
        key: &str,
        f: impl FnOnce(&mut TwilioSim, Instant, &str) -> Result<R, Refusal>,
    ) -> Result<R, Refusal> {
        let sid = self.world.resolve(key).ok_or_else(|| self.not_found(key))?;
        let m = self
            .world
            .sims
            .get(&sid)
            .ok_or_else(|| self.not_found(key))?;
        let mut s = self.world.lock(m);
        if !self.visible(&s) {
            return Err(self.not_found(key));
        }
        let (now, now_text) = (Instant::now(), now_rfc3339());
        settle(&mut s, now, &now_text);
        f(&mut s, now, &now_text)
    }

    /// The list's `meta`, Twilio's paging block.
    fn meta(&self, key: &str, path: &str, page: usize, size: usize, next: Option<String>) -> Value {
        let url = |token: Option<&str>| {
            let mut u = format!("{}{path}?PageSize={size}&Page={page}", self.base);
            if let Some(t) = token {
                u += &format!("&PageToken={t}");
            }
            u
        };
        json!({
            "page": page,
            "page_size": size,
            "first_page_url": format!("{}{path}?PageSize={size}&Page=0", self.base),
            "previous_page_url": Value::Null,
            "url": url(None),
            "next_page_url": next.map(|t| {
                format!("{}{path}?PageSize={size}&Page={}&PageToken={t}", self.base, page + 1)
            }),
            "key": key,
        })
    }
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A list's parameters, from the query string.
#[derive(Default)]
struct ListQuery {
    iccid: Option<String>,
    status: Option<String>,
    fleet: Option<String>,
    size: Option<String>,
    page: Option<String>,
    token: Option<String>,
}

impl ListQuery {
    fn parse(q: Option<&str>) -> Self {
        let mut out = Self::default();
        for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
            let slot = match k.as_ref() {
                "Iccid" => &mut out.iccid,
                "Status" => &mut out.status,
                "Fleet" => &mut out.fleet,
                "PageSize" => &mut out.size,
                "Page" => &mut out.page,
                "PageToken" => &mut out.token,
                _ => continue,
            };
            *slot = Some(v.into_owned());
        }
        out
    }

    fn page_size(&self) -> Result<usize, Refusal> {
        let Some(s) = &self.size else {
            return Ok(DEFAULT_PAGE);
        };
        match s.parse::<usize>() {
            Ok(n) if n > MAX_PAGE => Err(Refusal::new(
                400,
                20007,
                format!("Page size too large: at most {MAX_PAGE}"),
            )),
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Refusal::new(
                400,
                20001,
                "PageSize must be a positive number",
            )),
        }
    }
}

async fn list_sims(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let q = ListQuery::parse(q.as_deref());
    app.super_sim("GET /v1/Sims", &headers, &kill, Permission::IccGet, |c| {
        Answer::read(sims_page(c, &q))
    })
    .await
}

fn sims_page(c: &Call<'_>, q: &ListQuery) -> Result<Value, Refusal> {
    let size = q.page_size()?;
    let page = q.page.as_deref().and_then(|p| p.parse().ok()).unwrap_or(0);
    let status = q.status.as_deref();
    if let Some(s) = status
        && Status::settable(s).is_none()
        && !matches!(s, "new" | "scheduled")
    {
        return Err(Refusal::new(
            400,
            20001,
            format!("Status {:?} is not a status", clip(s)),
        ));
    }
    let fleet =
        match &q.fleet {
            Some(f) => Some(c.world.fleet(f).ok_or_else(|| {
                Refusal::new(400, 20001, format!("Fleet {:?} not found", clip(f)))
            })?),
            None => None,
        };
    let after = match q.token.as_deref() {
        Some(t) => Some(
            t.strip_prefix("PA")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| Refusal::new(400, 20001, "PageToken is not a page token"))?,
        ),
        None => None,
    };
    let candidates: Box<dyn Iterator<Item = (&String, &std::sync::Mutex<TwilioSim>)>> = match &q
        .iccid
    {
        // The ICCID filter: zero or one SIM.
        Some(icc) => Box::new(
            c.world
                .by_iccid
                .get(icc)
                .and_then(|sid| c.world.sims.get_key_value(sid))
                .into_iter(),
        ),
        None => match after {
            Some(a) => Box::new(
                c.world
                    .sims
                    .range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            ),
            None => Box::new(c.world.sims.iter()),
        },
    };
    let (now, now_text) = (Instant::now(), now_rfc3339());
    let mut out = Vec::new();
    let mut more = false;
    for (_, m) in candidates {
        let mut s = c.world.lock(m);
        if !c.visible(&s) {
            continue;
        }
        settle(&mut s, now, &now_text);
        if status.is_some_and(|st| st != s.shown_status())
            || fleet.is_some_and(|f| s.fleet != Some(f))
        {
            continue;
        }
        if out.len() == size {
            more = true;
            break;
        }
        out.push(c.sim_json(&s));
    }
    let next = more
        .then(|| {
            out.last()
                .and_then(|v| v["sid"].as_str())
                .map(|s| format!("PA{s}"))
        })
        .flatten();
    Ok(json!({
        "sims": out,
        "meta": c.meta("sims", "/v1/Sims", page, size, next),
    }))
}

async fn fetch_sim(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    app.super_sim(
        "GET /v1/Sims/{Sid}",
        &headers,
        &kill,
        Permission::IccGet,
        |c| Answer::read(c.with_sim(&key, |s, _, _| Ok(c.sim_json(s)))),
    )
    .await
}

/// The update a form asks for; a malformed value is 400 / 20001 (nothing applied).
fn parse_update(world: &World, body: &[u8]) -> Result<Update, Refusal> {
    let bad = |m: String| Refusal::new(400, 20001, m);
    let mut u = Update::default();
    for (k, v) in form_urlencoded::parse(body) {
        match k.as_ref() {
            "Status" => {
                u.status = Some(Status::settable(&v).ok_or_else(|| {
                    bad(format!(
                        "Status {:?} cannot be set: use ready, active or inactive",
                        clip(&v)
                    ))
                })?);
            }
            "Fleet" => {
                u.fleet = Some(
                    world
                        .fleet(&v)
                        .ok_or_else(|| bad(format!("Fleet {:?} not found", clip(&v))))?,
                );
            }
            "UniqueName" => {
                if v.is_empty() || v.len() > 64 || v.starts_with("HS") {
                    return Err(bad(format!("UniqueName {:?} is not allowed", clip(&v))));
                }
                u.unique_name = Some(v.into_owned());
            }
            "AccountSid" => {
                return Err(bad(
                    "moving a Super SIM to another account is not simulated".into(),
                ));
            }
            // Accepted; the simulator does not call back (see the provider's page).
            "CallbackUrl" | "CallbackMethod" => {}
            _ => {}
        }
    }
    Ok(u)
}

async fn update_sim(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let delay = app.cfg.settle_delay;
    app.super_sim(
        "POST /v1/Sims/{Sid}",
        &headers,
        &kill,
        Permission::IccUpdate,
        |c| {
            let mut mutated = false;
            let reply = (|| {
                let body = body
                    .map_err(|_| Refusal::new(400, 20001, "The request body could not be read"))?;
                let u = parse_update(c.world, &body)?;
                c.with_sim(&key, |s, now, now_text| {
                    let changed = apply(s, &u, c.world, now, delay)?;
                    mutated = !changed.is_empty();
                    for ch in changed {
                        c.app.log(
                            c.client, &s.iccid, "sim", ch.field, ch.old, ch.new, None, c.rid,
                            now_text,
                        );
                    }
                    if mutated {
                        s.date_updated = now_text.to_owned();
                    }
                    let status = if s.pending.is_some() && mutated {
                        StatusCode::ACCEPTED
                    } else {
                        StatusCode::OK
                    };
                    Ok((status, c.sim_json(s)))
                })
            })();
            Answer { reply, mutated }
        },
    )
    .await
}

fn fleet_json(c: &Call<'_>, i: usize) -> Value {
    let f = &c.world.fleets[i];
    json!({
        "sid": f.sid,
        "unique_name": f.unique_name,
        "account_sid": account_sid(&c.app.auth.clients[c.client].id),
        "data_enabled": true,
        "url": format!("{}/v1/Fleets/{}", c.base, f.sid),
    })
}

async fn list_fleets(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
) -> Response {
    app.super_sim("GET /v1/Fleets", &headers, &kill, Permission::IccGet, |c| {
        let all: Vec<Value> = (0..c.world.fleets.len())
            .map(|i| fleet_json(c, i))
            .collect();
        let n = all.len();
        Answer::read(Ok(json!({
            "fleets": all,
            "meta": c.meta("fleets", "/v1/Fleets", 0, n.max(1), None),
        })))
    })
    .await
}

async fn fetch_fleet(
    State(app): AppState,
    axum::Extension(kill): axum::Extension<ConnKill>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    app.super_sim(
        "GET /v1/Fleets/{Sid}",
        &headers,
        &kill,
        Permission::IccGet,
        |c| {
            Answer::read(
                c.world
                    .fleet(&key)
                    .map(|i| fleet_json(c, i))
                    .ok_or_else(|| {
                        Refusal::new(
                            404,
                            20404,
                            format!(
                                "The requested resource /Fleets/{} was not found",
                                clip(&key)
                            ),
                        )
                    }),
            )
        },
    )
    .await
}

async fn not_found(State(app): AppState) -> Response {
    let rid = app.request_id();
    refusal(
        &Refusal::new(404, 20404, "The requested resource was not found"),
        &rid,
    )
}
