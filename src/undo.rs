//! `simbulk undo`: the inverse of a finished job, from its results file — for every row that
//! changed a SIM (`ok`), the action that puts back the value its field had before (the
//! results' `before` column), written as a job `simbulk run` takes.
//!
//! Guarantees: the rows of each SIM are undone in the reverse of their original order (the
//! whole file is, by line, latest first), so a SIM that went through several changes comes
//! back through them in reverse; an inverse is written only from a known before-state (a
//! value is set back, an absent attribute is deleted) — a row whose before-state is unknown
//! (`before_state` `unknown`, or an empty `before` in a results file older than that column)
//! is never guessed at but listed, every one, in the side file of rows left as they are; a
//! `patch` is restored field by field (a package put back after the deactivation that must
//! precede it); the results file is read twice, streaming, with lines bounded (memory holds
//! a line number and a position per changed row, not the rows); the inverse job is a plain
//! input file with an `undoes_line` column that the run carries to its results.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::input::ActionKind;
use crate::output::row::Before;
use crate::output::unguarded;

/// Why the results cannot be undone.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UndoError {
    #[error(transparent)]
    File(#[from] crate::files::Error),
    #[error("cannot read the results file {}: {source}", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error(
        "{} has no {column} column: it is not a results file of this simbulk (undo needs the `before` column, written since the planning stage)",
        path.display()
    )]
    Column { path: PathBuf, column: &'static str },
    #[error("cannot write the undo job: {0}")]
    Write(#[source] std::io::Error),
}

/// What the inverse job restores.
#[derive(Debug, Default)]
pub(crate) struct Undo {
    /// Rows of the inverse job by action and target.
    pub(crate) by_target: BTreeMap<String, u64>,
    pub(crate) rows: u64,
    /// Changed rows that cannot be undone (before-value unknown), and their first lines.
    pub(crate) unknown: u64,
    pub(crate) unknown_lines: Vec<u64>,
}

/// The columns of the side file that lists the changed rows undo cannot restore.
pub(crate) const UNKNOWN_COLUMNS: [&str; 6] =
    ["line", "iccid", "action", "value", "attribute", "why"];

/// The columns undo reads.
struct Columns {
    line: usize,
    iccid: usize,
    action: usize,
    attribute: usize,
    outcome: usize,
    before: usize,
    value: usize,
    /// `before_state` (absent in results files written before it).
    state: Option<usize>,
}

impl Columns {
    fn of(h: &csv::StringRecord, path: &Path) -> Result<Self, UndoError> {
        let find = |column: &'static str| {
            h.iter()
                .position(|c| c == column)
                .ok_or_else(|| UndoError::Column {
                    path: path.to_owned(),
                    column,
                })
        };
        Ok(Self {
            line: find("line")?,
            iccid: find("iccid")?,
            action: find("action")?,
            attribute: find("attribute")?,
            outcome: find("outcome")?,
            before: find("before")?,
            value: find("value")?,
            state: h.iter().position(|c| c == "before_state"),
        })
    }
}

type Results = crate::output::results::ResultsReader;

fn open(path: &Path) -> Result<(Results, Columns), UndoError> {
    let (mut r, _) = crate::output::results::read_back(path)?;
    let csv = |source| UndoError::Csv {
        path: path.to_owned(),
        source,
    };
    let headers = r.headers().map_err(csv)?.clone();
    let cols = Columns::of(&headers, path)?;
    Ok((r, cols))
}

/// One row of the inverse job.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inverse {
    action: ActionKind,
    value: String,
    attribute: String,
}

impl Inverse {
    fn new(action: ActionKind, value: &str, attribute: &str) -> Self {
        Self {
            action,
            value: value.to_owned(),
            attribute: attribute.to_owned(),
        }
    }
}

/// The inverse of one changed row (one row, or two for a `patch` that must go in order);
/// `None` when the before-state does not say what to put back.
fn inverse(action: Option<ActionKind>, attribute: &str, before: &Before) -> Option<Vec<Inverse>> {
    use ActionKind as K;
    let a = |k: ActionKind, v: &str, n: &str| Some(vec![Inverse::new(k, v, n)]);
    let value = match before {
        Before::Unknown => return None,
        Before::Absent => {
            return (action == Some(K::SetAttribute))
                .then(|| vec![Inverse::new(K::DeleteAttribute, "", attribute)]);
        }
        Before::Value(v) => v.as_str(),
    };
    match action? {
        K::Activate | K::Deactivate => match value {
            "active" => a(K::Activate, "", ""),
            "available" => a(K::Deactivate, "", ""),
            _ => None,
        },
        K::Suspend | K::Unsuspend => match value {
            "true" => a(K::Suspend, "", ""),
            "false" => a(K::Unsuspend, "", ""),
            _ => None,
        },
        K::SetPackage => value
            .parse::<i64>()
            .ok()
            .and_then(|_| a(K::SetPackage, value, "")),
        K::SetPortfolio if !value.is_empty() => a(K::SetPortfolio, value, ""),
        K::SetAttribute | K::DeleteAttribute => a(K::SetAttribute, value, attribute),
        K::Patch => patch_inverse(value),
        K::SetPortfolio | K::Blocked => None,
    }
}

/// A `patch` put back: its before-fields in one PATCH, except a package that goes back with
/// a deactivation — the provider refuses a package change on an active SIM, so the
/// deactivation goes first and the package after it.
fn patch_inverse(before: &str) -> Option<Vec<Inverse>> {
    let mut p = crate::input::action::parse_patch(before).ok()?;
    let text = |p: &crate::model::SimPatch| crate::input::action::patch_text(p);
    let row = |v: String| Inverse::new(ActionKind::Patch, &v, "");
    if p.status.as_deref() == Some("available")
        && let Some(k) = p.package_id.take()
    {
        let package = crate::model::SimPatch {
            package_id: Some(k),
            ..Default::default()
        };
        return Some(vec![row(text(&p)), row(text(&package))]);
    }
    Some(vec![row(text(&p))])
}

/// What a changed row's before-state is, from its cells.
fn before_of(rec: &csv::StringRecord, c: &Columns) -> Before {
    let cell = |i: usize| unguarded(rec.get(i).unwrap_or(""));
    let state = c.state.map_or("", cell);
    Before::from_columns(state, cell(c.before)).unwrap_or(Before::Unknown)
}

/// Writes the inverse job of the results at `path` to `out`, and every changed row it
/// cannot restore to `unknown` (with a header).
pub(crate) fn undo(
    path: &Path,
    out: &mut dyn Write,
    unknown: &mut dyn Write,
) -> Result<Undo, UndoError> {
    let csv = |source| UndoError::Csv {
        path: path.to_owned(),
        source,
    };
    let (mut r, c) = open(path)?;
    // Pass 1: where each changed row is, by line.
    let mut at: Vec<(u64, csv::Position)> = Vec::new();
    let mut rec = csv::StringRecord::new();
    loop {
        let pos = r.position().clone();
        if !r.read_record(&mut rec).map_err(csv)? {
            break;
        }
        // A pending activation was applied too (the SIM is coming up).
        if matches!(rec.get(c.outcome), Some("ok" | "pending")) {
            let line = rec.get(c.line).and_then(|l| l.parse().ok()).unwrap_or(0);
            at.push((line, pos));
        }
    }
    at.sort_by_key(|(line, _)| std::cmp::Reverse(*line));
    // Pass 2: the inverses, latest line first.
    let write = |e: csv::Error| UndoError::Write(e.into());
    let mut w = csv::Writer::from_writer(out);
    let mut left = csv::Writer::from_writer(unknown);
    w.write_record(["iccid", "action", "value", "attribute", "undoes_line"])
        .map_err(write)?;
    left.write_record(UNKNOWN_COLUMNS).map_err(write)?;
    let mut u = Undo::default();
    for (line, pos) in at {
        r.seek(pos).map_err(csv)?;
        if !r.read_record(&mut rec).map_err(csv)? {
            continue;
        }
        let cell = |i: usize| unguarded(rec.get(i).unwrap_or(""));
        let before = before_of(&rec, &c);
        let kind = ActionKind::parse(cell(c.action));
        let Some(rows) = inverse(kind, cell(c.attribute), &before) else {
            u.unknown += 1;
            if u.unknown_lines.len() < 20 {
                u.unknown_lines.push(line);
            }
            let why = match before {
                Before::Unknown => {
                    "the value before is unknown (the change was found in place after a crash or a lost answer)"
                }
                _ => "the value before does not say what to put back",
            };
            let line = line.to_string();
            left.write_record([
                line.as_str(),
                cell(c.iccid),
                cell(c.action),
                cell(c.value),
                cell(c.attribute),
                why,
            ])
            .map_err(write)?;
            continue;
        };
        u.rows += 1;
        for Inverse {
            action,
            value,
            attribute,
        } in rows
        {
            let target = match action {
                ActionKind::SetPackage | ActionKind::SetPortfolio | ActionKind::Patch => {
                    format!("{action} {value}")
                }
                ActionKind::SetAttribute | ActionKind::DeleteAttribute => {
                    format!("{action} {attribute}")
                }
                _ => action.name().to_owned(),
            };
            *u.by_target.entry(target).or_default() += 1;
            let line = line.to_string();
            w.write_record([cell(c.iccid), action.name(), &value, &attribute, &line])
                .map_err(write)?;
        }
    }
    w.flush().map_err(UndoError::Write)?;
    left.flush().map_err(UndoError::Write)?;
    Ok(u)
}

impl Undo {
    /// What the inverse job would restore, in words.
    pub(crate) fn text(&self, results: &Path, job: &str) -> String {
        let mut s = format!(
            "undo of {}: {} rows to restore, in {job}\n",
            results.display(),
            self.rows
        );
        let mut v: Vec<_> = self.by_target.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (k, n) in v {
            s += &format!("  {k}: {n} SIMs\n");
        }
        s
    }

    /// The changed rows left as they are, in words (for standard error), naming the side
    /// file that lists every one.
    pub(crate) fn unknown_text(&self, side: &str) -> Option<String> {
        if self.unknown == 0 {
            return None;
        }
        let lines: Vec<String> = self.unknown_lines.iter().map(u64::to_string).collect();
        let more = if self.unknown > self.unknown_lines.len() as u64 {
            ", …"
        } else {
            ""
        };
        Some(format!(
            "simbulk undo: {} changed rows are left as they are: what they replaced is unknown (a change found in place after a crash or a lost answer), so nothing is guessed; lines {}{more}; every one is listed in {side}\n",
            self.unknown,
            lines.join(", "),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Before {
        Before::Value(s.into())
    }

    #[test]
    fn every_known_change_has_its_inverse_and_an_unknown_one_none() {
        let inv = |a: &str, n: &str, b: Before| {
            inverse(ActionKind::parse(a), n, &b).map(|rows| {
                rows.iter()
                    .map(|x| format!("{}|{}|{}", x.action, x.value, x.attribute))
                    .collect::<Vec<_>>()
                    .join(" / ")
            })
        };
        assert_eq!(inv("activate", "", v("available")).unwrap(), "deactivate||");
        assert_eq!(inv("deactivate", "", v("active")).unwrap(), "activate||");
        assert_eq!(inv("suspend", "", v("false")).unwrap(), "unsuspend||");
        assert_eq!(inv("unsuspend", "", v("true")).unwrap(), "suspend||");
        assert_eq!(
            inv("set-package", "", v("20417")).unwrap(),
            "set-package|20417|"
        );
        assert_eq!(
            inv("set-portfolio", "", v("pf-a")).unwrap(),
            "set-portfolio|pf-a|"
        );
        assert_eq!(
            inv("set-attribute", "tag", Before::Absent).unwrap(),
            "delete-attribute||tag"
        );
        assert_eq!(
            inv("set-attribute", "tag", v("old")).unwrap(),
            "set-attribute|old|tag"
        );
        // An empty value is a value (an attribute that held ""), not an absence.
        assert_eq!(
            inv("set-attribute", "tag", v("")).unwrap(),
            "set-attribute||tag"
        );
        assert_eq!(
            inv("delete-attribute", "tag", v("v")).unwrap(),
            "set-attribute|v|tag"
        );
        assert_eq!(inv("set-attribute", "tag", Before::Unknown), None);
        assert_eq!(inv("delete-attribute", "tag", Before::Unknown), None);
        assert_eq!(inv("activate", "", Before::Unknown), None);
        assert_eq!(inv("set-package", "", v("x")), None);
        assert_eq!(inv("reboot", "", v("x")), None);
        assert_eq!(
            inv("patch", "", v("status=available;packageId=20417")).unwrap(),
            "patch|status=available| / patch|packageId=20417|"
        );
        assert_eq!(
            inv("patch", "", v("status=active;packageId=20417")).unwrap(),
            "patch|status=active;packageId=20417|"
        );
        assert_eq!(inv("patch", "", v("nonsense")), None);
    }

    #[test]
    fn rows_come_back_latest_first_and_unknown_befores_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        std::fs::write(
            &p,
            "line,iccid,action,value,attribute,outcome,before,before_state\n\
             2,111,set-package,7,,ok,5,value\n\
             3,222,activate,,,skipped,active,value\n\
             4,111,set-package,9,,ok,7,value\n\
             5,333,set-attribute,\"'=x\",tag,ok,'=old,value\n\
             6,444,deactivate,,,ok,,unknown\n\
             7,555,set-attribute,x,tag,ok,,absent\n\
             8,666,set-attribute,x,tag,ok,,unknown\n",
        )
        .unwrap();
        let (mut out, mut left) = (Vec::new(), Vec::new());
        let u = undo(&p, &mut out, &mut left).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "iccid,action,value,attribute,undoes_line\n\
             555,delete-attribute,,tag,7\n\
             333,set-attribute,=old,tag,5\n\
             111,set-package,7,,4\n\
             111,set-package,5,,2\n"
        );
        let left = String::from_utf8(left).unwrap();
        assert!(
            left.starts_with("line,iccid,action,value,attribute,why\n8,666,set-attribute,x,tag,")
        );
        assert!(left.contains("\n6,444,deactivate,,,"), "{left}");
        assert_eq!(
            (u.rows, u.unknown, u.unknown_lines.clone()),
            (4, 2, vec![8, 6])
        );
        assert!(u.text(&p, "r.undo.csv").contains("set-package 7: 1 SIMs"));
        assert!(
            u.unknown_text("r.undo.unknown.csv")
                .unwrap()
                .contains("lines 8, 6")
        );
    }

    #[test]
    fn an_empty_before_in_an_older_results_file_is_unknown_never_absent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        std::fs::write(
            &p,
            "line,iccid,action,value,attribute,outcome,before\n\
             2,111,set-attribute,x,tag,ok,\n\
             3,222,set-attribute,x,tag,ok,old\n",
        )
        .unwrap();
        let (mut out, mut left) = (Vec::new(), Vec::new());
        let u = undo(&p, &mut out, &mut left).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "iccid,action,value,attribute,undoes_line\n222,set-attribute,old,tag,3\n"
        );
        assert_eq!((u.rows, u.unknown), (1, 1));
    }
}
