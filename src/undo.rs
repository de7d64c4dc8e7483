//! `simbulk undo`: the inverse of a finished job, from its results file — for every row that
//! changed a SIM (`ok`), the action that puts back the value its field had before (the
//! results' `before` column), written as a job `simbulk run` takes.
//!
//! Guarantees: the rows of each SIM are undone in the reverse of their original order (the
//! whole file is, by line, latest first), so a SIM that went through several changes comes
//! back through them in reverse; a row whose before-value is unknown is not guessed at but
//! counted and named; the results file is read twice, streaming, with lines bounded (memory
//! holds 16 bytes per changed row, not the rows); the inverse job is a plain input file with
//! an `undoes_line` column that the run carries to its results.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::output::unguarded;

/// The longest line of a results file read.
const MAX_LINE: usize = 1 << 20;

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

/// The columns undo reads.
struct Columns {
    line: usize,
    iccid: usize,
    action: usize,
    attribute: usize,
    outcome: usize,
    before: usize,
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
        })
    }
}

/// A reader that refuses a line longer than [`MAX_LINE`] instead of buffering it.
struct LineCap<R> {
    inner: R,
    run: usize,
}

impl<R: Read> Read for LineCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            self.run = if b == b'\n' { 0 } else { self.run + 1 };
            if self.run > MAX_LINE {
                return Err(std::io::Error::other(format!(
                    "a line is longer than {MAX_LINE} bytes"
                )));
            }
        }
        Ok(n)
    }
}

impl<R: std::io::Seek> std::io::Seek for LineCap<R> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.run = 0;
        self.inner.seek(to)
    }
}

type Results = csv::Reader<LineCap<BufReader<File>>>;

fn open(path: &Path) -> Result<(Results, Columns), UndoError> {
    let file = crate::files::open_regular(path, "results file", u64::MAX, true)?;
    let inner = BufReader::with_capacity(256 * 1024, file);
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(LineCap { inner, run: 0 });
    let csv = |source| UndoError::Csv {
        path: path.to_owned(),
        source,
    };
    let headers = r.headers().map_err(csv)?.clone();
    let cols = Columns::of(&headers, path)?;
    Ok((r, cols))
}

/// The inverse of one changed row: action, value, attribute; `None` when the before-value
/// does not say what to put back.
fn inverse(action: &str, attribute: &str, before: &str) -> Option<[String; 3]> {
    let a = |s: &str, v: &str, n: &str| Some([s.to_owned(), v.to_owned(), n.to_owned()]);
    match action {
        "activate" | "deactivate" => match before {
            "active" => a("activate", "", ""),
            "available" => a("deactivate", "", ""),
            _ => None,
        },
        "suspend" | "unsuspend" => match before {
            "true" => a("suspend", "", ""),
            "false" => a("unsuspend", "", ""),
            _ => None,
        },
        "set-package" => before
            .parse::<i64>()
            .ok()
            .and_then(|_| a("set-package", before, "")),
        "set-portfolio" if !before.is_empty() => a("set-portfolio", before, ""),
        "set-attribute" if before.is_empty() => a("delete-attribute", "", attribute),
        "set-attribute" | "delete-attribute" => a("set-attribute", before, attribute),
        _ => None,
    }
}

/// Writes the inverse job of the results at `path` to `out`.
pub(crate) fn undo(path: &Path, out: &mut dyn Write) -> Result<Undo, UndoError> {
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
    let mut w = csv::Writer::from_writer(out);
    let header = ["iccid", "action", "value", "attribute", "undoes_line"];
    w.write_record(header)
        .map_err(|e| UndoError::Write(e.into()))?;
    let mut u = Undo::default();
    for (line, pos) in at {
        r.seek(pos).map_err(csv)?;
        if !r.read_record(&mut rec).map_err(csv)? {
            continue;
        }
        let cell = |i: usize| unguarded(rec.get(i).unwrap_or(""));
        let Some([action, value, attribute]) =
            inverse(cell(c.action), cell(c.attribute), cell(c.before))
        else {
            u.unknown += 1;
            if u.unknown_lines.len() < 20 {
                u.unknown_lines.push(line);
            }
            continue;
        };
        let target = match action.as_str() {
            "set-package" | "set-portfolio" => format!("{action} {value}"),
            "set-attribute" | "delete-attribute" => format!("{action} {attribute}"),
            _ => action.clone(),
        };
        *u.by_target.entry(target).or_default() += 1;
        u.rows += 1;
        let record = [
            cell(c.iccid),
            &action,
            &value,
            &attribute,
            &line.to_string(),
        ];
        w.write_record(record)
            .map_err(|e| UndoError::Write(e.into()))?;
    }
    w.flush().map_err(UndoError::Write)?;
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
        if self.unknown > 0 {
            let lines: Vec<String> = self.unknown_lines.iter().map(u64::to_string).collect();
            s += &format!(
                "  cannot restore {} changed rows whose value before is unknown (a change found in place after a crash or a lost answer), lines {}{}\n",
                self.unknown,
                lines.join(", "),
                if self.unknown > self.unknown_lines.len() as u64 {
                    ", …"
                } else {
                    ""
                }
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_has_its_inverse() {
        let inv = |a: &str, n: &str, b: &str| inverse(a, n, b).map(|x| x.join("|"));
        assert_eq!(inv("activate", "", "available").unwrap(), "deactivate||");
        assert_eq!(inv("deactivate", "", "active").unwrap(), "activate||");
        assert_eq!(inv("suspend", "", "false").unwrap(), "unsuspend||");
        assert_eq!(inv("unsuspend", "", "true").unwrap(), "suspend||");
        assert_eq!(
            inv("set-package", "", "20417").unwrap(),
            "set-package|20417|"
        );
        assert_eq!(
            inv("set-portfolio", "", "pf-a").unwrap(),
            "set-portfolio|pf-a|"
        );
        assert_eq!(
            inv("set-attribute", "tag", "").unwrap(),
            "delete-attribute||tag"
        );
        assert_eq!(
            inv("set-attribute", "tag", "old").unwrap(),
            "set-attribute|old|tag"
        );
        assert_eq!(
            inv("delete-attribute", "tag", "v").unwrap(),
            "set-attribute|v|tag"
        );
        assert_eq!(inv("activate", "", ""), None);
        assert_eq!(inv("set-package", "", "x"), None);
        assert_eq!(inv("reboot", "", "x"), None);
    }

    #[test]
    fn rows_come_back_latest_first_and_unknown_befores_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        std::fs::write(
            &p,
            "line,iccid,action,value,attribute,outcome,before\n\
             2,111,set-package,7,,ok,5\n\
             3,222,activate,,,skipped,active\n\
             4,111,set-package,9,,ok,7\n\
             5,333,set-attribute,\"'=x\",tag,ok,'=old\n\
             6,444,deactivate,,,ok,\n",
        )
        .unwrap();
        let mut out = Vec::new();
        let u = undo(&p, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "iccid,action,value,attribute,undoes_line\n\
             333,set-attribute,=old,tag,5\n\
             111,set-package,7,,4\n\
             111,set-package,5,,2\n"
        );
        assert_eq!(
            (u.rows, u.unknown, u.unknown_lines.clone()),
            (3, 1, vec![6])
        );
        assert!(u.text(&p, "r.undo.csv").contains("set-package 7: 1 SIMs"));
    }
}
