//! emnify as the engine sees a SIM API (`docs/providers/emnify.md`): a device (its SIM and
//! its endpoint) read into the model's terms, the model's change written as one endpoint
//! object of the bulk update (the endpoint's status and its SIM's together), and the batcher
//! that gathers the changes of rows in flight into `PATCH /api/v2/endpoint/multi` calls.
//!
//! Guarantees: the SIM's status decides the model's (Issued and Factory Test are not active,
//! Activated is active, Suspended is active and suspended by the customer); a change emnify
//! has no form for is refused here, before anything is sent; a batch holds at most
//! [`MAX_BATCH`] endpoints, each of a different row, and every row waiting in it gets an
//! answer — within [`MAX_WAIT`] of joining it plus the call — `Ok` when the batch was applied, the refusal of its own endpoint when the batch was
//! refused (a refused batch is split and sent again until the refused endpoints stand alone —
//! emnify checks a batch whole), or the batch's transport error, which leaves the row to
//! reconcile by reading before it repeats anything.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::model::{Sim, SimPatch};

use super::error::ApiError;

/// emnify's code for a resource the organisation has not got (`NotFound`).
pub(crate) const NOT_FOUND: i64 = 1201;

/// Most endpoints one bulk update carries (emnify's documented limit).
pub(crate) const MAX_BATCH: usize = 2000;
/// How long a batch waits for one more row.
pub(crate) const LINGER: Duration = Duration::from_millis(25);
/// The longest a batch's first row waits for the batch to leave.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(2);

/// A device as `GET /api/v1/sim` lists it (the fields simbulk reads).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EmnifySim {
    pub(crate) id: i64,
    pub(crate) iccid_with_luhn: String,
    pub(crate) status: StatusRef,
    #[serde(default)]
    pub(crate) endpoint: Option<EndpointRef>,
}

/// `{"id": N, …}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct StatusRef {
    pub(crate) id: i64,
}

/// The endpoint a SIM is in (the fields simbulk reads).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EndpointRef {
    pub(crate) id: i64,
    #[serde(default)]
    pub(crate) tariff_profile: Option<StatusRef>,
    #[serde(default)]
    pub(crate) tags: Option<String>,
    #[serde(default)]
    pub(crate) name: Option<String>,
}

/// The attributes simbulk writes on emnify: the endpoint's fields of those names, each with
/// a fixed id.
const FIELDS: [(&str, i64); 2] = [("tags", 1), ("name", 2)];

/// The endpoint field an attribute name writes.
pub(crate) fn field(name: &str) -> Option<&'static str> {
    FIELDS.iter().find(|(f, _)| *f == name).map(|(f, _)| *f)
}

/// The endpoint field of an attribute id.
pub(crate) fn field_of_id(id: i64) -> Option<&'static str> {
    FIELDS.iter().find(|(_, i)| *i == id).map(|(f, _)| *f)
}

/// The names emnify takes as attributes.
pub(crate) const ATTRIBUTE_NAMES: [&str; 2] = [FIELDS[0].0, FIELDS[1].0];

/// An endpoint's non-empty `tags` and `name` as the SIM's attributes.
pub(crate) fn attributes(e: &EndpointRef, icc: &str) -> Vec<crate::model::Attribute> {
    FIELDS
        .iter()
        .filter_map(|(f, id)| {
            let v = if *f == "tags" { &e.tags } else { &e.name };
            v.as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| crate::model::Attribute {
                    icc_attribute_id: *id,
                    icc_id: icc.to_owned(),
                    name: (*f).to_owned(),
                    value: v.to_owned(),
                    created_date: None,
                    modified_date: None,
                })
        })
        .collect()
}

impl EmnifySim {
    /// The device in the model's terms; the tariff profile is its package.
    pub(crate) fn to_model(&self) -> Sim {
        let (status, suspended) = match self.status.id {
            1 => ("active", false),
            2 => ("active", true),
            0 | 4 => ("available", false),
            _ => ("unknown", false),
        };
        Sim {
            icc_id: self.iccid_with_luhn.clone(),
            sim_id: Some(self.id.to_string()),
            eid: None,
            status: status.to_owned(),
            customer_suspend: suspended,
            admin_suspend: false,
            system_suspend: false,
            package_id: self
                .endpoint
                .as_ref()
                .and_then(|e| e.tariff_profile.as_ref())
                .map_or(0, |t| t.id),
            portfolio_id: String::new(),
            mno_id: 0,
            imsi: None,
            msisdn: None,
            modified_date: None,
        }
    }
}

pub(crate) const NO_DEACTIVATE: &str =
    "emnify cannot deactivate: a SIM never returns to Issued; use suspend";
pub(crate) const NO_PORTFOLIO: &str = "emnify has no portfolios";
pub(crate) const NO_ATTRIBUTES: &str = "emnify takes two attributes, its endpoint's tags and name: use the attribute name tags or name";
pub(crate) const NO_PATCH: &str =
    "patch rows are not supported for emnify yet; use activate, suspend, unsuspend or set-package";

/// Whether an endpoint as an answer shows it has what `asked` set (its status, its SIM's
/// status, its tariff profile — the fields it shows); `Err` names the first that differs.
pub(crate) fn shows(asked: &Value, shown: &Value) -> Result<(), String> {
    for path in [
        &["status", "id"][..],
        &["sim", "status", "id"],
        &["tariff_profile", "id"],
    ] {
        let at = |v: &Value| path.iter().try_fold(v, |v, k| v.get(*k)).cloned();
        if let (Some(want), Some(got)) = (at(asked), at(shown))
            && want != got
        {
            return Err(format!(
                "the bulk update answered {} {got} where {want} was asked; the change is not in place",
                path[..path.len() - 1].join(".")
            ));
        }
    }
    Ok(())
}

/// The endpoint object a model change becomes (without its `id`), or why emnify cannot take
/// it. A device is kept aligned: Activated with its endpoint Enabled, Suspended with it
/// Disabled.
pub(crate) fn change_for(patch: &SimPatch) -> Result<Value, &'static str> {
    if patch.portfolio_id.is_some() {
        return Err(NO_PORTFOLIO);
    }
    let mut v = json!({});
    match (patch.status.as_deref(), patch.customer_suspend) {
        (Some("available"), _) => return Err(NO_DEACTIVATE),
        (Some("active") | None, Some(true)) => {
            v["status"] = json!({"id": 1});
            v["sim"] = json!({"status": {"id": 2}});
        }
        (Some("active"), _) | (None, Some(false)) => {
            v["status"] = json!({"id": 0});
            v["sim"] = json!({"status": {"id": 1}});
        }
        (None, None) => {}
        (Some(_), _) => return Err("emnify takes only the statuses active and suspended"),
    }
    if let Some(p) = patch.package_id {
        v["tariff_profile"] = json!({"id": p});
    }
    if v.as_object().is_some_and(serde_json::Map::is_empty) {
        return Err("the change is empty");
    }
    Ok(v)
}

/// One row's endpoint change waiting for its batch, and where its answer goes.
struct Waiting {
    item: Value,
    answer: oneshot::Sender<Result<Option<Value>, ApiError>>,
}

/// Sends one bulk update (`items`: endpoint objects with their ids) and classifies the
/// answer: `Ok` with the endpoints the answer shows (none when it has no body), a refusal
/// of the whole (`Rejected`), or a transport error.
pub(crate) type SendBulk = Arc<
    dyn Fn(
            Vec<Value>,
        ) -> std::pin::Pin<Box<dyn Future<Output = Result<Vec<Value>, ApiError>> + Send>>
        + Send
        + Sync,
>;

/// Gathers the changes of rows in flight into bulk updates, one bulk call at a time.
pub(crate) struct Batcher {
    tx: mpsc::Sender<Waiting>,
    /// The task that sends the batches (kept so it ends with the batcher).
    _task: tokio::task::JoinHandle<()>,
}

impl Batcher {
    /// A batcher sending through `send`, batches of at most `max` (≤ [`MAX_BATCH`]).
    pub(crate) fn new(send: SendBulk, max: usize) -> Self {
        let max = max.clamp(1, MAX_BATCH);
        let (tx, rx) = mpsc::channel::<Waiting>(MAX_BATCH);
        let task = tokio::spawn(batches(rx, send, max));
        Self { tx, _task: task }
    }

    /// Joins the next batch with `item` (an endpoint object with its `id`) and waits for the
    /// batch's answer for it: the endpoint as the answer shows it, when it does.
    pub(crate) async fn change(&self, item: Value) -> Result<Option<Value>, ApiError> {
        let (answer, got) = oneshot::channel();
        if self.tx.send(Waiting { item, answer }).await.is_err() {
            return Err(ApiError::Interrupted);
        }
        got.await.unwrap_or(Err(ApiError::Interrupted))
    }
}

/// The batch loop: the first waiting row opens a batch, which takes every row arriving
/// within [`LINGER`] of the last one, up to `max` rows and [`MAX_WAIT`] after the first;
/// sent; answered; the next.
async fn batches(mut rx: mpsc::Receiver<Waiting>, send: SendBulk, max: usize) {
    // One loop, so one bulk call at a time (emnify asks for them one after another).
    while let Some(first) = rx.recv().await {
        let leave = tokio::time::Instant::now() + MAX_WAIT;
        let mut batch = vec![first];
        while batch.len() < max {
            let wait = LINGER.min(leave.saturating_duration_since(tokio::time::Instant::now()));
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(w)) => batch.push(w),
                Ok(None) | Err(_) => break,
            }
        }
        answer(batch, &send).await;
    }
}

/// Sends `batch` and answers each of its rows; a refused batch of more than one is split in
/// halves, each sent again, until every refused row stands alone with its own refusal.
async fn answer(batch: Vec<Waiting>, send: &SendBulk) {
    let mut todo = vec![batch];
    while let Some(b) = todo.pop() {
        let items: Vec<Value> = b.iter().map(|w| w.item.clone()).collect();
        match send(items).await {
            Ok(shown) => {
                for w in b {
                    let mine = shown
                        .iter()
                        .find(|e| e.get("id") == w.item.get("id"))
                        .cloned();
                    let _ = w.answer.send(Ok(mine));
                }
            }
            Err(e @ ApiError::Rejected { .. }) if b.len() > 1 => {
                tracing::debug!(error = %e, rows = b.len(), "a bulk update was refused; sending it in halves");
                let mut b = b;
                let tail = b.split_off(b.len() / 2);
                todo.push(tail);
                todo.push(b);
            }
            Err(e) => {
                for w in b {
                    let _ = w.answer.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn device(status: i64) -> Sim {
        EmnifySim {
            id: 7,
            iccid_with_luhn: "8944500100000000004".into(),
            status: StatusRef { id: status },
            endpoint: Some(EndpointRef {
                id: 9,
                tariff_profile: Some(StatusRef { id: 20417 }),
                tags: Some("fleet-a".into()),
                name: None,
            }),
        }
        .to_model()
    }

    #[test]
    fn a_device_reads_into_the_model_by_its_sim_status() {
        assert_eq!(device(0).status, "available");
        assert_eq!(device(4).status, "available");
        assert!(device(1).status == "active" && !device(1).customer_suspend);
        assert!(device(2).status == "active" && device(2).customer_suspend);
        assert_eq!(device(1).package_id, 20417);
    }

    #[test]
    fn changes_keep_the_sim_and_its_endpoint_aligned() {
        let suspend = SimPatch {
            customer_suspend: Some(true),
            ..SimPatch::default()
        };
        let v = change_for(&suspend).unwrap();
        assert_eq!(
            (
                v["status"]["id"].as_i64(),
                v["sim"]["status"]["id"].as_i64()
            ),
            (Some(1), Some(2))
        );
        let activate = SimPatch {
            status: Some("active".into()),
            ..SimPatch::default()
        };
        let v = change_for(&activate).unwrap();
        assert_eq!(
            (
                v["status"]["id"].as_i64(),
                v["sim"]["status"]["id"].as_i64()
            ),
            (Some(0), Some(1))
        );
        let package = SimPatch {
            package_id: Some(20418),
            ..SimPatch::default()
        };
        assert_eq!(change_for(&package).unwrap()["tariff_profile"]["id"], 20418);
        let deactivate = SimPatch {
            status: Some("available".into()),
            ..SimPatch::default()
        };
        assert!(change_for(&deactivate).is_err());
    }

    #[test]
    fn an_answer_that_shows_another_state_is_not_the_change() {
        let asked = json!({"id": 9, "status": {"id": 0}, "sim": {"status": {"id": 1}}});
        let applied = json!({"id": 9, "status": {"id": 0, "description": "Enabled"}, "sim": {"id": 7, "status": {"id": 1}}});
        assert!(shows(&asked, &applied).is_ok());
        let sim_untouched = json!({"id": 9, "status": {"id": 0}, "sim": {"status": {"id": 0}}});
        assert!(
            shows(&asked, &sim_untouched)
                .unwrap_err()
                .contains("sim.status")
        );
        // An answer that does not show a field says nothing about it.
        assert!(shows(&asked, &json!({"id": 9})).is_ok());
    }

    #[tokio::test]
    async fn a_refused_batch_is_split_until_each_refused_row_has_its_own_answer() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        // The endpoint with id 3 is refused; any batch holding it is refused whole.
        let send: SendBulk = Arc::new(move |items: Vec<Value>| {
            seen.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if items.iter().any(|i| i["id"] == 3) {
                    Err(ApiError::Rejected {
                        status: 422,
                        code: Some(1400),
                        message: "refused".into(),
                        request_id: None,
                    })
                } else {
                    Ok(Vec::new())
                }
            })
        });
        let b = Arc::new(Batcher::new(send, 100));
        let rows: Vec<_> = (0..8)
            .map(|id| {
                let b = b.clone();
                tokio::spawn(async move { (id, b.change(json!({"id": id})).await) })
            })
            .collect();
        for r in rows {
            let (id, got) = r.await.unwrap();
            assert_eq!(got.is_err(), id == 3, "row {id}: {got:?}");
        }
        // One batch of 8, then halves down to the refused row: far fewer than 8 calls each.
        assert!(
            calls.load(Ordering::SeqCst) <= 8,
            "{}",
            calls.load(Ordering::SeqCst)
        );
    }
}
