//! `GET /api/v2/sim`: filters, keyset pagination bound to the filters, and the scan.
//!
//! Guarantees: results are ordered by ICCID and a page token carries the last ICCID plus a
//! fingerprint of the filters, so SIMs changing between pages are neither skipped nor
//! repeated, and a token replayed with other filters is refused (6014).

use std::collections::BTreeSet;
use std::ops::Bound;
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{SimPage, codes};

use super::config::Permission;
use super::rules::RuleError;

use super::app::*;

/// The filters of `GET /api/v2/sim`, validated.
#[derive(Debug, Default, Hash)]
pub(super) struct Filters {
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
    pub(super) fn matches(&self, s: &crate::model::Sim) -> bool {
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

    pub(super) fn fingerprint(&self) -> u32 {
        crc32fast::hash(format!("{self:?}").as_bytes())
    }
}

#[derive(serde::Serialize, Deserialize)]
pub(super) struct PageToken {
    after: String,
    f: u32,
}

pub(super) fn bad_param(field: &str, value: &str) -> RuleError {
    RuleError::new(
        codes::FIELD_REJECTED,
        "Field rejected",
        json!({"field": field, "value": value.chars().take(64).collect::<String>()}),
    )
}

pub(super) fn parse_list_query(q: &str) -> Result<(Filters, usize, Option<String>), RuleError> {
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
    pub(super) fn list(&self, client: usize, q: &str, rid: &str) -> Result<Value, RuleError> {
        let (mut f, page_size, after) = parse_list_query(q)?;
        let (lag, first_only, omit) = self.faults.list();
        if first_only
            && let Some((_, first)) =
                form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "iccId")
        {
            f.icc_ids = BTreeSet::from([first.into_owned()]);
        }
        let sphere = self.auth.clients[client].portfolio.clone();
        let now = Instant::now();
        let now_text = now_rfc3339();
        let lower = after
            .as_ref()
            .map_or(Bound::Unbounded, |a| Bound::Excluded(a.clone()));
        let mut data = Vec::with_capacity(page_size.min(64));
        let mut more = false;
        let mut visit = |m: &std::sync::Mutex<super::state::SimRecord>| -> bool {
            let mut rec = self.world.lock(m);
            if !self.world.in_sphere(&sphere, &rec.sim.portfolio_id) {
                return true;
            }
            self.settle(&mut rec, now, &now_text, rid);
            if omit > 0.0 && omitted(&rec.sim.icc_id, omit) {
                return true;
            }
            let shown = rec.as_of(lag, now);
            if f.matches(shown) {
                if data.len() == page_size {
                    more = true;
                    return false;
                }
                data.push(shown.clone());
            }
            true
        };
        if f.icc_ids.is_empty() {
            for m in self
                .world
                .sims
                .range((lower, Bound::Unbounded))
                .map(|(_, m)| m)
            {
                if !visit(m) {
                    break;
                }
            }
        } else {
            for icc in f.icc_ids.range((lower, Bound::Unbounded)) {
                if let Some(m) = self.world.sims.get(icc)
                    && !visit(m)
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

/// Whether a list that leaves out `share` of the SIMs leaves out this one (the same ones
/// every time).
fn omitted(icc: &str, share: f64) -> bool {
    f64::from(crc32fast::hash(icc.as_bytes()) % 10_000) < share * 10_000.0
}

pub(super) async fn list_sims(
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
