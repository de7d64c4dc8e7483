//! `simbulk apply`'s plan: a desired-state file read against the live fleet — each window of
//! up to 100 SIMs with one list call, and the attributes of each SIM when the file has
//! attribute columns — and turned into the calls that close the gap ([`super::diff`]),
//! written as a job `simbulk run` takes (the plan), with counts per kind of change.
//!
//! Guarantees: nothing is written to the provider here; reads are paced and retried and a
//! stop ends them; a SIM a list left out is read with its own GET before it is called
//! absent; memory holds one window; the plan file appears whole or not at all; a
//! read-only column whose value is not the SIM's stops the plan (exit 2) naming the column
//! and the line, before any write; every row of the file is accounted for (unchanged,
//! planned, blocked, or invalid with the reason).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, Client};
use crate::input::desired::{Desired, DesiredLayout, desired};
use crate::input::{Defaults, Item};
use crate::model::{Attribute, Sim};

use super::diff::{self, Call};
use super::plan::{Via, WINDOW, confirm_missing, list_sims};
use super::retry::{GiveUp, RetryPolicy, with_retries};

/// The plan file's columns: a `run` job (`iccid,action,value,attribute`) and what it is for.
pub(crate) const PLAN_COLUMNS: [&str; 9] = [
    "iccid",
    "action",
    "value",
    "attribute",
    "sim_line",
    "current",
    "kind",
    "reason",
    "planned_from",
];

/// Kinds of change counted one by one; the rest are summed.
const MAX_KINDS: usize = 128;

/// SIMs that differ, shown by name in a drift check.
const MAX_SHOWN: usize = 50;

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    #[error(transparent)]
    Input(#[from] crate::input::FileError),
    #[error(transparent)]
    Layout(#[from] crate::input::desired::DesiredError),
    #[error(
        "{path}, line {line}: column {column} is read-only (the provider sets it) and the file says {file:?} where the SIM has {live:?}; restore the cell (or empty it) — apply changes only status, customerSuspend, packageId, portfolioId and attr:NAME; nothing was changed"
    )]
    ReadOnly {
        path: String,
        line: u64,
        column: &'static str,
        file: String,
        live: String,
    },
    #[error("cannot read the SIMs to plan: {0}; nothing was changed")]
    Read(ApiError),
    #[error("stopped while planning; nothing was changed")]
    Stopped,
    #[error("cannot write the plan {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<GiveUp> for ApplyError {
    fn from(g: GiveUp) -> Self {
        match g {
            GiveUp::Error(e) | GiveUp::Halting(e) => ApplyError::Read(e),
            GiveUp::Interrupted => ApplyError::Stopped,
        }
    }
}

/// What the plan holds.
#[derive(Debug, Default)]
pub(crate) struct Planned {
    pub(crate) sims: u64,
    pub(crate) unchanged: u64,
    /// SIMs that differ from the file (blocked ones included).
    pub(crate) differing: u64,
    pub(crate) calls: u64,
    pub(crate) blocked: u64,
    pub(crate) invalid: u64,
    /// Changes by kind (`packageId 20417 → 20533`, `unsuspend`, `attr site set`, …).
    pub(crate) by_kind: BTreeMap<String, u64>,
    /// The first SIMs that differ, with their changes (for a drift check).
    pub(crate) shown: Vec<String>,
    /// How old the plan's first read was when the plan was done.
    pub(crate) oldest_read: std::time::Duration,
}

impl Planned {
    fn count(&mut self, kind: &str) {
        if let Some(n) = self.by_kind.get_mut(kind) {
            *n += 1;
        } else if self.by_kind.len() < MAX_KINDS {
            self.by_kind.insert(kind.to_owned(), 1);
        } else {
            *self.by_kind.entry("(other changes)".into()).or_default() += 1;
        }
    }

    /// The plan in words: SIMs, then the changes by kind, largest first.
    pub(crate) fn text(&self) -> String {
        let mut s = format!(
            "plan: {} SIMs: {} unchanged, {} to change ({} calls), {} blocked, {} invalid rows\n",
            self.sims,
            self.unchanged,
            self.differing - self.blocked,
            self.calls,
            self.blocked,
            self.invalid
        );
        s += &format!(
            "  made from reads at most {:.1}s old; the run reads every SIM again before its calls\n",
            self.oldest_read.as_secs_f64()
        );
        let mut v: Vec<_> = self.by_kind.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (k, n) in v {
            s += &format!("  {k}: {} SIMs\n", crate::output::summary::thousands(*n));
        }
        s
    }
}

/// Where the plan reads from.
pub(crate) struct Reading<'a> {
    pub(crate) client: &'a Client,
    pub(crate) policy: &'a RetryPolicy,
    pub(crate) stop: &'a CancellationToken,
    pub(crate) concurrency: usize,
    /// A drift check: read-only differences are differences, not errors.
    pub(crate) check: bool,
}

/// Reads `input` (a desired-state file; a spreadsheet's `sheet`) against the fleet and writes
/// the plan to `out`.
pub(crate) async fn make_plan(
    input: &Path,
    sheet: Option<&str>,
    r: &Reading<'_>,
    out: &mut dyn Write,
) -> Result<Planned, ApplyError> {
    // Rows are read by the job reader (dialects, bounds, lines); each row's action is a
    // placeholder, its cells are the desired state.
    let defaults = Defaults {
        action: Some("blocked".into()),
        value: Some("desired state".into()),
        ..Defaults::default()
    };
    let (layout, rows) = crate::input::open(input, sheet, &defaults)?;
    let dl = DesiredLayout::of(&layout, input)?;
    let mut w = csv::Writer::from_writer(out);
    let write = |e: csv::Error| ApplyError::Write {
        path: input.to_owned(),
        source: e.into(),
    };
    w.write_record(PLAN_COLUMNS).map_err(write)?;
    let mut p = Planned::default();
    let began = std::time::Instant::now();
    let mut window: Vec<Item> = Vec::with_capacity(WINDOW);
    let mut rows = rows;
    loop {
        let next = rows.next().transpose()?;
        let end = next.is_none();
        if let Some(item) = next {
            window.push(item);
        }
        if window.len() == WINDOW || (end && !window.is_empty()) {
            plan_window(input, r, &dl, std::mem::take(&mut window), &mut p, &mut w).await?;
            if p.sims % 10_000 < WINDOW as u64 {
                tracing::info!("planning: {} SIMs read", p.sims);
            }
        }
        if end {
            break;
        }
    }
    w.flush().map_err(|e| write(e.into()))?;
    p.oldest_read = began.elapsed();
    Ok(p)
}

/// Reads one window's SIMs (and attributes) and plans its rows.
async fn plan_window(
    input: &Path,
    r: &Reading<'_>,
    dl: &DesiredLayout,
    window: Vec<Item>,
    p: &mut Planned,
    w: &mut csv::Writer<&mut dyn Write>,
) -> Result<(), ApplyError> {
    let mut unique: Vec<String> = window
        .iter()
        .filter_map(|i| i.parsed.as_ref().ok())
        .map(|row| row.iccid.as_str().to_owned())
        .collect();
    unique.sort();
    unique.dedup();
    let via = Via {
        client: r.client,
        policy: r.policy,
        stop: r.stop,
    };
    let mut sims = if unique.is_empty() {
        HashMap::new()
    } else {
        list_sims(via, &unique).await?
    };
    confirm_missing(via, &unique, &mut sims).await?;
    let attrs = if dl.attrs.is_empty() {
        HashMap::new()
    } else {
        attributes(r, sims.keys().cloned().collect()).await?
    };
    let write = |e: csv::Error| ApplyError::Write {
        path: input.to_owned(),
        source: e.into(),
    };
    for item in window {
        p.sims += 1;
        let Ok(row) = &item.parsed else {
            p.invalid += 1;
            // The run of the plan reports it, with the reason, as an invalid row.
            let iccid = item.fields.first().cloned().unwrap_or_default();
            let why = item.parsed.as_ref().err().map(|e| e.message.clone());
            plan_row(
                w,
                &item,
                &iccid,
                &bad_row(why.unwrap_or_default()),
                "blocked",
                "",
            )
            .map_err(write)?;
            continue;
        };
        let icc = row.iccid.as_str();
        let want = match desired(&item, dl) {
            Ok(d) => d,
            Err(e) => {
                p.invalid += 1;
                plan_row(w, &item, icc, &bad_row(e.message), "blocked", "").map_err(write)?;
                continue;
            }
        };
        let sim = sims.get(icc);
        let calls = match sim {
            None if want.is_empty() => Vec::new(),
            None => vec![absent()],
            Some(sim) => {
                read_only(input, r, &item, sim, &want, p)?;
                diff::plan(sim, attrs.get(icc).map_or(&[][..], Vec::as_slice), &want)
            }
        };
        account(p, icc, &calls);
        let from = sim.map_or_else(String::new, |s| state_text(s));
        for c in &calls {
            let kind = if matches!(c.action, crate::input::Action::Blocked(_)) {
                "blocked"
            } else {
                "change"
            };
            plan_row(w, &item, icc, c, kind, &from).map_err(write)?;
        }
    }
    Ok(())
}

/// A read-only column whose value is not the SIM's: an error, or in a drift check a
/// difference.
fn read_only(
    input: &Path,
    r: &Reading<'_>,
    item: &Item,
    sim: &Sim,
    want: &Desired,
    p: &mut Planned,
) -> Result<(), ApplyError> {
    let Some(ro) = diff::read_only_edit(sim, want) else {
        return Ok(());
    };
    if !r.check {
        return Err(ApplyError::ReadOnly {
            path: input.display().to_string(),
            line: item.line,
            column: ro.column,
            file: ro.file,
            live: ro.live,
        });
    }
    p.count(&format!("{} differs (read-only)", ro.column));
    Ok(())
}

/// The call of a row that cannot be planned: blocked, with the reason.
fn bad_row(why: String) -> Call {
    Call {
        changes: vec!["blocked: invalid row".into()],
        action: crate::input::Action::Blocked(format!("invalid row: {why}")),
        current: String::new(),
    }
}

fn absent() -> Call {
    let why = "no such SIM (its own read answered 6002)";
    Call {
        changes: vec![format!("blocked: {why}")],
        action: crate::input::Action::Blocked(why.into()),
        current: String::new(),
    }
}

/// Counts a SIM's calls and changes.
fn account(p: &mut Planned, icc: &str, calls: &[Call]) {
    if calls.is_empty() {
        p.unchanged += 1;
        return;
    }
    p.differing += 1;
    let blocked = calls
        .iter()
        .any(|c| matches!(c.action, crate::input::Action::Blocked(_)));
    if blocked {
        p.blocked += 1;
    }
    // A blocked change is never sent: it is no call.
    p.calls += calls
        .iter()
        .filter(|c| !matches!(c.action, crate::input::Action::Blocked(_)))
        .count() as u64;
    let mut what = Vec::new();
    for c in calls {
        for k in &c.changes {
            p.count(k);
            what.push(k.clone());
        }
    }
    if p.shown.len() < MAX_SHOWN {
        p.shown.push(format!("{icc}: {}", what.join(", ")));
    }
}

/// The SIM's state a plan was made from, as its `planned_from` column shows it.
fn state_text(s: &Sim) -> String {
    crate::input::action::patch_text(&crate::model::SimPatch {
        status: Some(s.status.clone()),
        customer_suspend: Some(s.customer_suspend),
        package_id: Some(s.package_id),
        portfolio_id: Some(s.portfolio_id.clone()),
    })
}

/// One row of the plan: a call, what it is (`change` or `blocked`) and the state of its SIM
/// the plan was made from.
fn plan_row(
    w: &mut csv::Writer<&mut dyn Write>,
    item: &Item,
    icc: &str,
    c: &Call,
    kind: &str,
    from: &str,
) -> Result<(), csv::Error> {
    let reason = match &c.action {
        crate::input::Action::Blocked(why) => why.as_str(),
        _ => "",
    };
    w.write_record([
        icc,
        c.action.kind().name(),
        &c.action.value_text(),
        c.action.attribute_text(),
        &item.line.to_string(),
        &c.current,
        kind,
        reason,
        from,
    ])
}

/// The attributes of `ids`, read concurrently (paced like every call).
async fn attributes(
    r: &Reading<'_>,
    ids: Vec<String>,
) -> Result<HashMap<String, Vec<Attribute>>, ApplyError> {
    let (c, policy, stop) = (r.client, r.policy, r.stop);
    let reads = futures::stream::iter(ids).map(|icc| async move {
        let got = with_retries(policy, stop, &c.pacer, || c.list_attributes(&icc)).await;
        got.map(|a| (icc, a.value.data))
    });
    let mut out = HashMap::new();
    let mut reads = reads.buffer_unordered(r.concurrency.max(1));
    while let Some(x) = reads.next().await {
        let (icc, list) = x?;
        out.insert(icc, list);
    }
    Ok(out)
}
