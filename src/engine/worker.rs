//! Doing one row: the API calls an action needs, the retries, and reconcile-before-repeat.
//!
//! Guarantees: a row's first write is sent only after its *started* record reached the OS;
//! after an ambiguous outcome of a write (5xx, timeout, lost connection), and for a row that
//! a crashed run had started, the SIM or its attributes are read before the write is sent
//! again, and a change found in place is recorded `ok`; an attribute is created only after a
//! fresh list shows it absent, so `set-attribute` never creates a duplicate; `6047` (already
//! in the requested state) is `skipped`, not `failed`; a row that reaches no outcome (the
//! job stops, or an error about the account halts it) ends [`RowEnd::Unfinished`] and is
//! done again on resume.

use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, Client};
use crate::input::{Action, Item, Row};
use crate::model::{AttributeCreate, AttributePatch, Sim, SimPatch, codes};

use super::rules::{patch_for, satisfied, sim_status};

use super::recorder::Journaling;
use super::retry::{Attempts, GiveUp, RetryPolicy};
use crate::output::row::{RowResult, Verdict};

/// How a row's worker ended.
#[derive(Debug)]
pub(crate) enum RowEnd {
    /// The row reached an outcome; it goes to the results.
    Recorded(Box<RowResult>),
    /// The row reached no outcome and has no record: it is done again on resume.
    Unfinished(Unfinished),
}

/// Why a row reached no outcome.
#[derive(Debug)]
pub(crate) enum Unfinished {
    /// The job is stopping (signal, deadline, halt).
    Stopped,
    /// An error about the account, not the row: the job halts.
    Halting { error: ApiError, action: String },
    /// The worker panicked (a bug): the job halts.
    Panicked(String),
}

/// How a row's calls ended.
struct Done {
    verdict: Verdict,
    status: Option<u16>,
    message: String,
    sim_status: Option<String>,
}

impl Done {
    fn ok(status: u16, message: &str, sim: Option<&Sim>) -> Self {
        Self {
            verdict: Verdict::Ok,
            status: Some(status),
            message: message.into(),
            sim_status: sim.map(sim_status),
        }
    }

    fn skipped(status: Option<u16>, message: &str) -> Self {
        Self {
            verdict: Verdict::Skipped,
            status,
            message: message.into(),
            sim_status: None,
        }
    }
}

const APPLIED_EARLIER: &str =
    "applied (the answer to an earlier attempt was lost; checked before repeating)";

async fn sim_change(
    c: &Client,
    icc: &str,
    action: &Action,
    patch: &SimPatch,
    a: &mut Attempts<'_>,
) -> Result<Done, GiveUp> {
    loop {
        a.begin()?;
        if a.ambiguous {
            match c.get_sim(icc).await {
                Ok(r) if satisfied(action, &r.value) => {
                    return Ok(Done::ok(r.status, APPLIED_EARLIER, Some(&r.value)));
                }
                Ok(_) => {}
                Err(e) => {
                    a.after(e).await?;
                    continue;
                }
            }
        }
        a.before_write().await?;
        match c.patch_sim(icc, patch).await {
            Ok(r) => return Ok(Done::ok(r.status, "", r.value.as_ref())),
            Err(ApiError::Rejected {
                code: Some(codes::ALREADY_DONE),
                status,
                message,
                ..
            }) => {
                return Ok(Done::skipped(Some(status), &message));
            }
            Err(e) => a.after(e).await?,
        }
    }
}

/// Conflicts (attribute created or removed underneath) tolerated before giving up.
const MAX_CONFLICTS: u32 = 5;

async fn set_attribute(
    c: &Client,
    icc: &str,
    name: &str,
    value: &str,
    a: &mut Attempts<'_>,
) -> Result<Done, GiveUp> {
    let mut conflicts = 0;
    loop {
        a.begin()?;
        let list = match c.list_attributes(icc).await {
            Ok(r) => r.value.data,
            Err(e) => {
                a.after(e).await?;
                continue;
            }
        };
        let result = match list.iter().find(|x| x.name == name) {
            Some(x) if x.value == value => {
                return Ok(if a.ambiguous {
                    Done::ok(200, APPLIED_EARLIER, None)
                } else {
                    Done::skipped(None, "the attribute already has this value")
                });
            }
            Some(x) => {
                a.before_write().await?;
                c.update_attribute(
                    icc,
                    x.icc_attribute_id,
                    &AttributePatch {
                        name: None,
                        value: Some(value.into()),
                    },
                )
                .await
                .map(|r| Done::ok(r.status, "updated", None))
            }
            None => {
                a.before_write().await?;
                c.create_attribute(
                    icc,
                    &AttributeCreate {
                        name: name.into(),
                        value: value.into(),
                    },
                )
                .await
                .map(|r| Done::ok(r.status, "created", None))
            }
        };
        match result {
            Ok(d) => return Ok(d),
            Err(ApiError::Rejected {
                code: Some(codes::DUPLICATE_ATTRIBUTE | codes::NOT_FOUND),
                ..
            }) if conflicts < MAX_CONFLICTS => {
                // Created or removed underneath us (or by our own lost attempt): look again.
                conflicts += 1;
            }
            Err(e) => a.after(e).await?,
        }
    }
}

async fn delete_attribute(
    c: &Client,
    icc: &str,
    name: &str,
    a: &mut Attempts<'_>,
) -> Result<Done, GiveUp> {
    let mut conflicts = 0;
    loop {
        a.begin()?;
        let list = match c.list_attributes(icc).await {
            Ok(r) => r.value.data,
            Err(e) => {
                a.after(e).await?;
                continue;
            }
        };
        let Some(x) = list.iter().find(|x| x.name == name) else {
            return Ok(if a.ambiguous {
                Done::ok(200, APPLIED_EARLIER, None)
            } else {
                Done::skipped(None, "the SIM has no attribute with this name")
            });
        };
        a.before_write().await?;
        match c.delete_attribute(icc, x.icc_attribute_id).await {
            Ok(r) => return Ok(Done::ok(r.status, "deleted", None)),
            Err(ApiError::Rejected {
                code: Some(codes::NOT_FOUND),
                ..
            }) if conflicts < MAX_CONFLICTS => {
                conflicts += 1;
            }
            Err(e) => a.after(e).await?,
        }
    }
}

/// What a worker needs besides its row.
pub(crate) struct Ctx<'a> {
    pub(crate) client: &'a Client,
    pub(crate) policy: &'a RetryPolicy,
    pub(crate) stop: &'a CancellationToken,
    pub(crate) journal: &'a Journaling,
    /// The row's *started* record is already out (the dispatcher sent it).
    pub(crate) started: bool,
    pub(crate) wait: Option<&'a WaitActive>,
}

/// Runs one valid row to its end. `in_doubt`: a run that ended without recording the row had
/// started a write for it.
pub(crate) async fn execute(cx: &Ctx<'_>, item: Item, row: Row, in_doubt: bool) -> RowEnd {
    let (client, policy, stop, wait) = (cx.client, cx.policy, cx.stop, cx.wait);
    #[cfg(debug_assertions)]
    test_fault::maybe_panic(item.line);
    let started = std::time::Instant::now();
    let mut a = Attempts::new(policy, stop)
        .with_budget(&client.pacer)
        .with_journal(cx.journal, item.line, cx.started);
    // A row that was in flight when the previous run stopped may have been applied: look
    // before writing, exactly as after a lost answer.
    a.ambiguous = in_doubt;
    let icc = row.iccid.as_str();
    let done = match &row.action {
        Action::SetAttribute { name, value } => {
            set_attribute(client, icc, name, value, &mut a).await
        }
        Action::DeleteAttribute { name } => delete_attribute(client, icc, name, &mut a).await,
        action => {
            let patch = patch_for(action).unwrap_or_default();
            let done = sim_change(client, icc, action, &patch, &mut a).await;
            match (done, wait) {
                (Ok(d), Some(w)) if d.sim_status.as_deref() == Some("pendingProvision") => {
                    wait_for_active(client, icc, d, w, policy, stop).await
                }
                (other, _) => other,
            }
        }
    };
    let r = RowResult {
        line: item.line,
        iccid: icc.to_owned(),
        action: row.action.kind().name().to_owned(),
        value: row.action.value_text(),
        attribute: row.action.attribute_text().to_owned(),
        verdict: Verdict::Ok,
        http_status: None,
        error_code: None,
        message: String::new(),
        reason: None,
        attempts: a.tries,
        sim_status: None,
        finished_at: SystemTime::now(),
        fields: item.fields,
        raw: item.raw,
        retries: a.retries,
        throttled: a.throttled,
        elapsed: started.elapsed(),
    };
    outcome(r, done)
}

/// The row's end from how its calls ended.
fn outcome(mut r: RowResult, done: Result<Done, GiveUp>) -> RowEnd {
    match done {
        Ok(d) => {
            r.verdict = d.verdict;
            r.http_status = d.status;
            r.message = d.message;
            r.sim_status = d.sim_status;
        }
        Err(GiveUp::Interrupted) => return RowEnd::Unfinished(Unfinished::Stopped),
        Err(GiveUp::Halting(error)) => {
            return RowEnd::Unfinished(Unfinished::Halting {
                error,
                action: r.action,
            });
        }
        Err(GiveUp::Error(e)) => {
            r.verdict = Verdict::Failed;
            r.http_status = e.status();
            r.error_code = e.code();
            r.reason = (r.http_status.is_none() && r.error_code.is_none()).then(|| e.kind());
            r.message = failure_message(&e, r.attempts);
        }
    }
    RowEnd::Recorded(Box::new(r))
}

/// A failed row's message: the API's own words (status and code have their own columns),
/// how many attempts it took, and the request's id for the provider's support.
fn failure_message(e: &ApiError, attempts: u32) -> String {
    let gave_up = if e.retryable() {
        format!("gave up after {attempts} attempts: ")
    } else {
        String::new()
    };
    let what = match e {
        ApiError::Rejected { message, .. } => message.clone(),
        other => other.to_string(),
    };
    match e.request_id() {
        Some(id) => format!("{gave_up}{what} (request {id})"),
        None => format!("{gave_up}{what}"),
    }
}

/// A panic injected on one line, for the tests of the worker supervision (debug builds only).
#[cfg(debug_assertions)]
mod test_fault {
    use std::sync::OnceLock;

    pub(crate) fn maybe_panic(line: u64) {
        static AT: OnceLock<Option<u64>> = OnceLock::new();
        let at = AT.get_or_init(|| {
            std::env::var("SIMBULK_TEST_PANIC_AT_LINE")
                .ok()
                .and_then(|v| v.parse().ok())
        });
        if *at == Some(line) {
            panic!("injected test panic on line {line}");
        }
    }
}

/// `--wait-active`: how long to poll a `pendingProvision` SIM, and the counter that tells the
/// dispatcher a waiting row no longer occupies a concurrency slot.
#[derive(Debug, Default)]
pub(crate) struct WaitActive {
    pub(crate) within: std::time::Duration,
    pub(crate) waiting: std::sync::atomic::AtomicUsize,
    pub(crate) freed: tokio::sync::Notify,
}

/// Polls the SIM (paced, backing off from 1 s to 15 s) until it is active or the time is up.
/// The row stays `ok`; its `sim_status` is the last status seen. A stop while polling leaves
/// the row without an outcome (it is reconciled and polled again on resume).
async fn wait_for_active(
    c: &Client,
    icc: &str,
    mut d: Done,
    w: &WaitActive,
    policy: &RetryPolicy,
    stop: &CancellationToken,
) -> Result<Done, GiveUp> {
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    let started = std::time::Instant::now();
    w.waiting.fetch_add(1, Ordering::SeqCst);
    w.freed.notify_one();
    let mut pause = Duration::from_secs(1);
    let mut last = "pendingProvision".to_owned();
    let mut stopped = false;
    while started.elapsed() < w.within {
        let left = w.within.saturating_sub(started.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(pause.min(left)) => {}
            _ = stop.cancelled() => { stopped = true; break }
        }
        pause = (pause * 2).min(Duration::from_secs(15));
        match crate::engine::retry::with_retries(policy, stop, &c.pacer, || c.get_sim(icc)).await {
            Ok(r) => {
                last = sim_status(&r.value);
                if r.value.status != "pendingProvision" {
                    break;
                }
            }
            Err(GiveUp::Interrupted) => {
                stopped = true;
                break;
            }
            Err(_) => break,
        }
    }
    w.waiting.fetch_sub(1, Ordering::SeqCst);
    if stopped {
        return Err(GiveUp::Interrupted);
    }
    d.message = if last.starts_with("pendingProvision") {
        format!(
            "still pendingProvision after waiting {}s",
            started.elapsed().as_secs()
        )
    } else {
        format!("{last} after {}s", started.elapsed().as_secs())
    };
    d.sim_status = Some(last);
    Ok(d)
}

/// The result of a row that failed validation.
pub(crate) fn invalid(
    item: Item,
    why: crate::input::Invalid,
    layout: &crate::input::Layout,
) -> RowResult {
    RowResult {
        line: item.line,
        iccid: item.cell(Some(layout.iccid)).to_owned(),
        action: item.cell(layout.action).to_owned(),
        value: item.cell(layout.value).to_owned(),
        attribute: item.cell(layout.attribute).to_owned(),
        verdict: Verdict::Invalid,
        http_status: None,
        error_code: None,
        message: why.message,
        reason: Some(why.reason.label()),
        attempts: 0,
        sim_status: None,
        finished_at: SystemTime::now(),
        fields: item.fields,
        raw: item.raw,
        retries: 0,
        throttled: 0,
        elapsed: std::time::Duration::ZERO,
    }
}
