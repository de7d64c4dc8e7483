//! Doing one row: in a run, the calls its action needs (see [`super::calls`]); in a
//! preview, the prediction (see [`preview`]); and the row's result either way.
//!
//! Guarantees: a row's first write is sent only after its *started* record reached the OS;
//! a row that reaches no outcome (the job stops, or an error about the account halts it)
//! ends [`RowEnd::Unfinished`] and is done again on resume; a row that predicted a refusal
//! says so in its message, whatever its outcome.

mod preview;

use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, Client};
use crate::input::{Action, Item, Row};

use super::activation::{WaitActive, wait_for_active};
use super::calls::{self, Done, Learned};
use super::carry::Mode;
use super::plan::Seen;
use super::recorder::Journaling;
use super::retry::{Attempts, GiveUp, RetryPolicy};
use crate::output::row::{RowResult, Verdict};

/// How a row's worker ended.
#[derive(Debug)]
pub(crate) enum RowEnd {
    /// The row reached an outcome; it goes to the results. `after`: the SIM's state it
    /// leaves behind, for the next row of the same SIM.
    Recorded {
        result: Box<RowResult>,
        after: Option<Seen>,
    },
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

/// What a worker needs besides its row.
pub(crate) struct Ctx<'a> {
    pub(crate) client: &'a Client,
    pub(crate) policy: &'a RetryPolicy,
    pub(crate) stop: &'a CancellationToken,
    pub(crate) journal: &'a Journaling,
    /// The row's *started* record is already out (the dispatcher sent it).
    pub(crate) started: bool,
    pub(crate) wait: Option<&'a WaitActive>,
    pub(crate) mode: Mode,
    /// How this job's attribute creates fare.
    pub(crate) odds: &'a calls::CreateOdds,
}

/// Whether a row's first call is a write, so its *started* record goes out before it: a SIM
/// action whose state is known and not already what it asks for, or a `set-attribute` (the
/// create goes first). A row in doubt reads first.
pub(crate) fn writes_first(row: &Row, seen: Option<&Seen>, mode: Mode) -> bool {
    if mode == Mode::Preview {
        return false;
    }
    match &row.action {
        Action::DeleteAttribute { .. } | Action::Blocked(_) => false,
        Action::SetAttribute { .. } => true,
        action => {
            seen.is_some_and(|s| super::rules::predict(action, &s.sim, &[]).0 != Verdict::Skipped)
        }
    }
}

/// Runs one valid row to its end, going on from `seen` (the state the plan or the SIM's
/// previous row left). `in_doubt`: a run that ended without recording the row had started a
/// write for it.
pub(crate) async fn execute(
    cx: &Ctx<'_>,
    item: Item,
    row: Row,
    seen: Option<Seen>,
    in_doubt: bool,
) -> RowEnd {
    let (client, policy, stop) = (cx.client, cx.policy, cx.stop);
    #[cfg(debug_assertions)]
    test_fault::maybe_panic(item.line);
    let started = std::time::Instant::now();
    let mut a = Attempts::new(policy, stop)
        .with_budget(&client.pacer)
        .with_journal(cx.journal, item.line, cx.started);
    // A row that was in flight when the previous run stopped may have been applied: look
    // before writing, exactly as after a lost answer.
    a.ambiguous = in_doubt;
    let mut l = Learned::default();
    let done = match cx.mode {
        Mode::Preview => preview::foresee(cx, &row, seen, &mut a, &mut l).await,
        Mode::Run => calls_of(cx, &row, seen, &mut a, &mut l).await,
    };
    let r = RowResult {
        line: item.line,
        iccid: row.iccid.as_str().to_owned(),
        action: row.action.kind().name().to_owned(),
        kind: Some(row.action.kind()),
        value: row.action.value_text(),
        attribute: row.action.attribute_text().to_owned(),
        verdict: Verdict::Ok,
        http_status: None,
        error_code: None,
        message: String::new(),
        reason: matches!(row.action, Action::Blocked(_)).then_some(crate::output::groups::BLOCKED),
        attempts: a.tries,
        sim_status: None,
        before: None,
        finished_at: SystemTime::now(),
        fields: item.fields,
        raw: item.raw,
        retries: a.retries,
        throttled: a.throttled,
        elapsed: started.elapsed(),
    };
    outcome(r, done, l)
}

/// A row's calls in a run.
async fn calls_of(
    cx: &Ctx<'_>,
    row: &Row,
    seen: Option<Seen>,
    a: &mut Attempts<'_>,
    l: &mut Learned,
) -> Result<Done, GiveUp> {
    let (c, icc) = (cx.client, row.iccid.as_str());
    match &row.action {
        Action::SetAttribute { name, value } => {
            let want = calls::Wanted { name, value };
            calls::set_attribute(c, icc, want, seen, a, l, cx.odds).await
        }
        Action::DeleteAttribute { name } => calls::delete_attribute(c, icc, name, seen, a, l).await,
        // A change `apply` found no order for: nothing is sent.
        Action::Blocked(why) => Ok(Done {
            verdict: crate::output::row::Verdict::Failed,
            status: None,
            code: None,
            message: format!("blocked: {why}"),
            sim_status: None,
        }),
        action => {
            let done = calls::sim_change(c, icc, action, seen, a, l).await;
            match (done, cx.wait) {
                // A pending row (another change under way) is left as it is.
                (Ok(d), Some(w)) if d.verdict != Verdict::Pending && settling(&d) => {
                    // What the SIM ends as is the poll's to say.
                    l.after = None;
                    wait_for_active(c, icc, d, w, cx.policy, cx.stop, action).await
                }
                (Ok(d), None)
                    if d.verdict == Verdict::Ok
                        && d.sim_status.as_deref() == Some(crate::api::super_sim::SCHEDULED) =>
                {
                    // Accepted, not done: the row is `ok` only once the SIM shows it.
                    l.after = None;
                    Ok(calls::Done {
                        verdict: Verdict::Pending,
                        message: "scheduled: the provider accepted the change and has not made it yet; run the failures file with --wait-active DURATION to see it settle".into(),
                        ..d
                    })
                }
                (other, _) => other,
            }
        }
    }
}

/// Whether a write's answer (or the state found in doubt) is a change still settling.
fn settling(d: &calls::Done) -> bool {
    matches!(
        d.sim_status.as_deref(),
        Some("pendingProvision" | crate::api::super_sim::SCHEDULED)
    )
}

/// The row's end from how its calls ended and what it learned.
fn outcome(mut r: RowResult, done: Result<Done, GiveUp>, l: Learned) -> RowEnd {
    match done {
        Ok(d) => {
            r.verdict = d.verdict;
            r.http_status = d.status;
            r.error_code = d.code;
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
    if let Some(p) = l.predicted.filter(|_| r.verdict != Verdict::Skipped) {
        let sep = if r.message.is_empty() { "" } else { "; " };
        r.message = format!("{}{sep}the SIM's state predicted: {p}", r.message);
    }
    r.before = l.before;
    RowEnd::Recorded {
        result: Box::new(r),
        after: l.after,
    }
}

/// The message of a worker's panic.
pub(crate) fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a worker panicked".into())
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
        kind: crate::input::ActionKind::parse(item.cell(layout.action)),
        value: item.cell(layout.value).to_owned(),
        attribute: item.cell(layout.attribute).to_owned(),
        verdict: Verdict::Invalid,
        http_status: None,
        error_code: None,
        message: why.message,
        reason: Some(why.reason.label()),
        attempts: 0,
        sim_status: None,
        before: None,
        finished_at: SystemTime::now(),
        fields: item.fields,
        raw: item.raw,
        retries: 0,
        throttled: 0,
        elapsed: std::time::Duration::ZERO,
    }
}
