//! `simbulk verify`: after a job (or any time later), every SIM the job touched is read again
//! and compared with what its results say the SIM should be now — each field a row set
//! (`ok`, `skipped` as already so, `pending` activations), the latest row of a SIM winning.
//! A SIM that differs was changed by someone else since, or reverted by the provider.
//!
//! Guarantees: reads only (one list call per 100 SIMs, an attribute list per SIM whose rows
//! set attributes, and a SIM's own GET before it is called gone — a list's silence is not
//! absence); paced and retried like every call, cut by a stop; every difference names the
//! SIM, the field, the value the job left and the value now, and the results line; memory
//! holds one window of SIMs and the SIMs with more than one row (found in a first pass with
//! a Bloom filter of a size set by the file's), not the file; the results file is read twice,
//! streaming, with lines bounded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, Client};
use crate::bloom::Bloom;
use crate::engine::RetryPolicy;
use crate::engine::plan::{Via, WINDOW, confirm_missing, list_sims};
use crate::engine::retry::{GiveUp, with_retries};
use crate::input::{Action, Iccid};
use crate::model::{Sim, SimPatch};
use crate::output::unguarded;

/// Why a verification could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VerifyError {
    #[error(transparent)]
    File(#[from] crate::files::Error),
    #[error("cannot read the results file {}: {source}", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error(
        "{} has no {column} column: it is not a results file of simbulk run",
        path.display()
    )]
    Column { path: PathBuf, column: &'static str },
    #[error("cannot read the SIMs: {0}")]
    Read(ApiError),
    #[error("stopped while verifying")]
    Stopped,
}

impl From<GiveUp> for VerifyError {
    fn from(g: GiveUp) -> Self {
        match g {
            GiveUp::Error(e) | GiveUp::Halting(e) => VerifyError::Read(e),
            GiveUp::Interrupted => VerifyError::Stopped,
        }
    }
}

/// One field of one SIM that is not what the job left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Difference {
    pub(crate) iccid: String,
    /// `status`, `customerSuspend`, `packageId`, `portfolioId` or `attr:NAME`.
    pub(crate) field: String,
    /// What the job left (`(none)`: no such attribute).
    pub(crate) left: String,
    /// What the SIM has now (`(none)`: no such attribute; `(gone)`: no such SIM).
    pub(crate) now: String,
    /// The results line of the row that left it.
    pub(crate) line: u64,
}

/// What a verification found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Verified {
    /// SIMs read and compared.
    pub(crate) sims: u64,
    /// SIMs with at least one difference.
    pub(crate) differ: u64,
    /// Fields that differ.
    pub(crate) differences: u64,
    /// Requests sent.
    pub(crate) requests: u64,
}

/// What the results say one SIM should be now.
#[derive(Debug, Default, Clone)]
struct Expect {
    iccid: String,
    fields: SimPatch,
    /// Attribute name → its value (`None`: absent), with the line that left it.
    attrs: Vec<(String, Option<String>, u64)>,
    /// The line that left each SIM field: status, customerSuspend, packageId, portfolioId.
    lines: [u64; 4],
}

impl Expect {
    /// Takes in one row's action (a later row wins over an earlier one).
    fn add(&mut self, action: &Action, line: u64) {
        match action {
            Action::SetAttribute { name, value } => self.attr(name, Some(value.clone()), line),
            Action::DeleteAttribute { name } => self.attr(name, None, line),
            other => {
                let Some(p) = crate::engine::rules::patch_for(other) else {
                    return;
                };
                if let Some(s) = p.status {
                    self.fields.status = Some(s);
                    self.lines[0] = line;
                }
                if let Some(c) = p.customer_suspend {
                    self.fields.customer_suspend = Some(c);
                    self.lines[1] = line;
                }
                if let Some(k) = p.package_id {
                    self.fields.package_id = Some(k);
                    self.lines[2] = line;
                }
                if let Some(f) = p.portfolio_id {
                    self.fields.portfolio_id = Some(f);
                    self.lines[3] = line;
                }
            }
        }
    }

    fn attr(&mut self, name: &str, value: Option<String>, line: u64) {
        match self.attrs.iter_mut().find(|(n, ..)| n == name) {
            Some(a) => (a.1, a.2) = (value, line),
            None => self.attrs.push((name.to_owned(), value, line)),
        }
    }

    /// The fields of `sim` (with its attributes, when any were set) that are not as left.
    fn compare(
        &self,
        sim: Option<&Sim>,
        attrs: Option<&[crate::model::Attribute]>,
    ) -> Vec<Difference> {
        let d = |field: &str, left: String, now: String, line: u64| Difference {
            iccid: self.iccid.clone(),
            field: field.to_owned(),
            left,
            now,
            line,
        };
        let mut out = Vec::new();
        let f = &self.fields;
        let Some(sim) = sim else {
            let line = self
                .lines
                .iter()
                .chain(self.attrs.iter().map(|a| &a.2))
                .max();
            out.push(d(
                "sim",
                "present".into(),
                "(gone)".into(),
                *line.unwrap_or(&0),
            ));
            return out;
        };
        if let Some(s) = &f.status {
            // An activation the provider is still completing is what the job left.
            let same = sim.status == *s || (s == "active" && sim.status == "pendingProvision");
            if !same {
                out.push(d("status", s.clone(), sim.status.clone(), self.lines[0]));
            }
        }
        if let Some(c) = f.customer_suspend.filter(|c| *c != sim.customer_suspend) {
            out.push(d(
                "customerSuspend",
                c.to_string(),
                sim.customer_suspend.to_string(),
                self.lines[1],
            ));
        }
        if let Some(k) = f.package_id.filter(|k| *k != sim.package_id) {
            out.push(d(
                "packageId",
                k.to_string(),
                sim.package_id.to_string(),
                self.lines[2],
            ));
        }
        if let Some(p) = f.portfolio_id.as_ref().filter(|p| **p != sim.portfolio_id) {
            out.push(d(
                "portfolioId",
                p.clone(),
                sim.portfolio_id.clone(),
                self.lines[3],
            ));
        }
        let live = attrs.unwrap_or_default();
        for (name, want, line) in &self.attrs {
            let now = live
                .iter()
                .find(|a| &a.name == name)
                .map(|a| a.value.clone());
            if &now != want {
                let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
                out.push(d(&format!("attr:{name}"), show(want), show(&now), *line));
            }
        }
        out
    }
}

/// The columns verify reads.
struct Columns {
    line: usize,
    iccid: usize,
    action: usize,
    value: usize,
    attribute: usize,
    outcome: usize,
}

impl Columns {
    fn of(h: &csv::StringRecord, path: &Path) -> Result<Self, VerifyError> {
        let find = |column: &'static str| {
            h.iter()
                .position(|c| c == column)
                .ok_or_else(|| VerifyError::Column {
                    path: path.to_owned(),
                    column,
                })
        };
        Ok(Self {
            line: find("line")?,
            iccid: find("iccid")?,
            action: find("action")?,
            value: find("value")?,
            attribute: find("attribute")?,
            outcome: find("outcome")?,
        })
    }
}

type Results = crate::output::results::ResultsReader;

/// One pass over the results: the reader, its columns, and the file's size.
fn open(path: &Path) -> Result<(Results, Columns, u64), VerifyError> {
    let (mut r, size) = crate::output::results::read_back(path)?;
    let headers = r.headers().map_err(|e| csv_error(path, e))?.clone();
    let cols = Columns::of(&headers, path)?;
    Ok((r, cols, size))
}

fn csv_error(path: &Path, source: csv::Error) -> VerifyError {
    VerifyError::Csv {
        path: path.to_owned(),
        source,
    }
}

/// A row that left a SIM as its action says: its ICCID, the action and its line.
fn touched(rec: &csv::StringRecord, c: &Columns) -> Option<(Iccid, Action, u64)> {
    let cell = |i: usize| unguarded(rec.get(i).unwrap_or(""));
    if !matches!(cell(c.outcome), "ok" | "skipped" | "pending") {
        return None;
    }
    let iccid = Iccid::parse(cell(c.iccid)).ok()?;
    let action = Action::build(cell(c.action), cell(c.value), cell(c.attribute)).ok()?;
    if matches!(action, Action::Blocked(_)) {
        return None;
    }
    let line = cell(c.line).parse().unwrap_or(0);
    Some((iccid, action, line))
}

/// Where verify reads from.
pub(crate) struct Reading<'a> {
    pub(crate) client: &'a Client,
    pub(crate) policy: &'a RetryPolicy,
    pub(crate) stop: &'a CancellationToken,
    pub(crate) concurrency: usize,
}

/// Verifies the SIMs of the results at `path`; every difference goes to `found` as it is
/// known.
pub(crate) async fn verify(
    path: &Path,
    r: &Reading<'_>,
    found: &mut dyn FnMut(&Difference),
) -> Result<Verified, VerifyError> {
    let requests = r.client.pacer.requests();
    // Pass 1: the SIMs with more than one row (and a few the filter mistakes for them).
    let (mut rows, c, size) = open(path)?;
    let mut seen = Bloom::new((size as usize / 40).saturating_mul(16).min(1 << 28), 6);
    let mut repeated: std::collections::HashSet<u128> = std::collections::HashSet::new();
    let mut rec = csv::StringRecord::new();
    while rows.read_record(&mut rec).map_err(|e| csv_error(path, e))? {
        if let Some((icc, ..)) = touched(&rec, &c)
            && seen.insert(icc.key())
        {
            repeated.insert(icc.key());
        }
    }
    drop(seen);
    // Pass 2: windows of SIMs with one row; the others once the file is read.
    let (mut rows, c, _) = open(path)?;
    let mut v = Verified::default();
    let mut window: Vec<Expect> = Vec::with_capacity(WINDOW);
    let mut later: HashMap<u128, Expect> = HashMap::new();
    while rows.read_record(&mut rec).map_err(|e| csv_error(path, e))? {
        let Some((icc, action, line)) = touched(&rec, &c) else {
            continue;
        };
        let e = if repeated.contains(&icc.key()) {
            later.entry(icc.key()).or_insert_with(|| Expect {
                iccid: icc.as_str().to_owned(),
                ..Default::default()
            })
        } else {
            if window.len() == WINDOW {
                check(r, std::mem::take(&mut window), &mut v, found).await?;
            }
            window.push(Expect {
                iccid: icc.as_str().to_owned(),
                ..Default::default()
            });
            window.last_mut().expect("just pushed")
        };
        e.add(&action, line);
    }
    let mut rest: Vec<Expect> = later.into_values().collect();
    rest.sort_by(|a, b| a.iccid.cmp(&b.iccid));
    window.extend(rest);
    for w in window.chunks(WINDOW) {
        check(r, w.to_vec(), &mut v, found).await?;
    }
    v.requests = r.client.pacer.requests() - requests;
    Ok(v)
}

/// Reads one window's SIMs (and the attributes of those whose rows set any) and compares.
async fn check(
    r: &Reading<'_>,
    window: Vec<Expect>,
    v: &mut Verified,
    found: &mut dyn FnMut(&Difference),
) -> Result<(), VerifyError> {
    if window.is_empty() {
        return Ok(());
    }
    let (c, policy, stop) = (r.client, r.policy, r.stop);
    let ids: Vec<String> = window.iter().map(|e| e.iccid.clone()).collect();
    let via = Via {
        client: c,
        policy,
        stop,
    };
    let mut sims = list_sims(via, &ids).await?;
    confirm_missing(via, &ids, &mut sims).await?;
    let with_attrs: Vec<String> = window
        .iter()
        .filter(|e| !e.attrs.is_empty() && sims.contains_key(&e.iccid))
        .map(|e| e.iccid.clone())
        .collect();
    let mut reads = futures::stream::iter(with_attrs)
        .map(|icc| async move {
            with_retries(policy, stop, &c.pacer, || c.list_attributes(&icc))
                .await
                .map(|a| (icc, a.value.data))
        })
        .buffer_unordered(r.concurrency.max(1));
    let mut attrs = HashMap::new();
    while let Some(x) = reads.next().await {
        let (icc, list) = x?;
        attrs.insert(icc, list);
    }
    for e in &window {
        v.sims += 1;
        let diffs = e.compare(
            sims.get(&e.iccid).map(|s| &**s),
            attrs.get(&e.iccid).map(Vec::as_slice),
        );
        if !diffs.is_empty() {
            v.differ += 1;
            v.differences += diffs.len() as u64;
        }
        for d in &diffs {
            found(d);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(status: &str, cs: bool, pkg: i64) -> Sim {
        serde_json::from_value(serde_json::json!({
            "iccId": "8944500990000012342", "status": status, "customerSuspend": cs,
            "adminSuspend": false, "systemSuspend": false, "packageId": pkg,
            "portfolioId": "pf-a", "mnoId": 1
        }))
        .unwrap()
    }

    #[test]
    fn the_latest_row_of_a_field_is_what_the_job_left() {
        let mut e = Expect {
            iccid: "8944500990000012342".into(),
            ..Default::default()
        };
        e.add(&Action::Activate, 2);
        e.add(&Action::SetPackage(7), 3);
        e.add(&Action::Deactivate, 9);
        e.add(
            &Action::SetAttribute {
                name: "site".into(),
                value: "x".into(),
            },
            10,
        );
        e.add(
            &Action::DeleteAttribute {
                name: "site".into(),
            },
            11,
        );
        assert!(
            e.compare(Some(&sim("available", false, 7)), Some(&[]))
                .is_empty()
        );
        let d = e.compare(Some(&sim("active", false, 8)), Some(&[]));
        let fields: Vec<_> = d.iter().map(|d| (d.field.as_str(), d.line)).collect();
        assert_eq!(fields, [("status", 9), ("packageId", 3)]);
        assert_eq!(
            (d[0].left.as_str(), d[0].now.as_str()),
            ("available", "active")
        );
        let gone = e.compare(None, None);
        assert_eq!((gone[0].now.as_str(), gone[0].line), ("(gone)", 11));
        // An activation still completing is what the job left.
        let mut a = Expect::default();
        a.add(&Action::Activate, 2);
        assert!(
            a.compare(Some(&sim("pendingProvision", false, 1)), None)
                .is_empty()
        );
    }
}
