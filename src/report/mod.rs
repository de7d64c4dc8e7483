//! `simbulk report <results.csv>`: the morning-after summary of a run (resumed runs
//! included): counts by outcome and action, error codes with their messages, throughput over
//! time, attempts — as text, and as one self-contained HTML page (inline SVG, no scripts, no
//! external assets) that can be opened or mailed.
//!
//! Guarantees: the results file is streamed (memory grows with the number of distinct error
//! codes and minutes of run time, not with rows); every text taken from the file is
//! HTML-escaped.

mod html;
mod text;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fixedbitset::FixedBitSet;

/// Counts by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) ok: u64,
    pub(crate) skipped: u64,
    pub(crate) failed: u64,
    pub(crate) invalid: u64,
}

impl Counts {
    fn add(&mut self, outcome: &str) {
        match outcome {
            "ok" => self.ok += 1,
            "skipped" => self.skipped += 1,
            "failed" => self.failed += 1,
            _ => self.invalid += 1,
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.ok + self.skipped + self.failed + self.invalid
    }
}

/// An error's HTTP status and code (or, for invalid rows, the start of the reason).
pub(crate) type ErrorKey = (String, String);

/// What a results file says.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) file: PathBuf,
    pub(crate) rows: u64,
    pub(crate) outcomes: Counts,
    pub(crate) by_action: BTreeMap<String, Counts>,
    /// (status, code) → (count, first message).
    pub(crate) errors: BTreeMap<ErrorKey, (u64, String)>,
    /// Rows finished per minute (Unix minute).
    pub(crate) per_minute: BTreeMap<u64, u64>,
    pub(crate) attempts: BTreeMap<u32, u64>,
    pub(crate) duplicate_lines: u64,
    /// Rows whose `line` is not a line number simbulk writes.
    pub(crate) bad_lines: u64,
    pub(crate) first: Option<u64>,
    pub(crate) last: Option<u64>,
    /// A plan of `simbulk apply` (one row per call; `ok` counts calls to make, `failed`
    /// blocked changes), not results.
    pub(crate) plan: bool,
}

/// Highest line number followed for duplicates (a bitset of 128 MiB at most).
const MAX_LINE: usize = 1 << 30;
/// Attempts counted one by one; more are counted together.
const MAX_ATTEMPTS: u32 = 1000;
/// Minutes of activity charted (about 139 days).
const MAX_MINUTES: usize = 200_000;

/// The entry for `key`, or for `other` once `map` has `cap` keys: tallies stay bounded
/// whatever the file holds.
fn bump<K: Ord, V: Default>(map: &mut BTreeMap<K, V>, key: K, other: K, cap: usize) -> &mut V {
    let key = if map.len() < cap || map.contains_key(&key) {
        key
    } else {
        other
    };
    map.entry(key).or_default()
}

/// Undoes the results file's spreadsheet guard.
fn unguard(s: &str) -> &str {
    match s.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => s,
    }
}

/// Reads a results file.
/// Why a results file cannot be reported on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReportError {
    #[error(transparent)]
    File(#[from] crate::files::Error),
    #[error("results file {}: {source}", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("{} is not a simbulk results file (no line and outcome columns)", path.display())]
    NotResults { path: PathBuf },
}

/// The columns of a results file that the report reads.
struct Columns {
    line: usize,
    outcome: usize,
    /// A plan: `outcome` is its `kind` column (`change` or `blocked`).
    plan: bool,
    action: Option<usize>,
    status: Option<usize>,
    code: Option<usize>,
    message: Option<usize>,
    attempts: Option<usize>,
    at: Option<usize>,
}

impl Columns {
    fn of(headers: &csv::StringRecord) -> Option<Self> {
        let col = |name: &str| headers.iter().position(|h| h == name);
        if col("outcome").is_none() && col("kind").is_some() && col("sim_line").is_some() {
            return Some(Self {
                line: col("sim_line")?,
                outcome: col("kind")?,
                plan: true,
                action: col("action"),
                status: None,
                code: None,
                message: col("reason"),
                attempts: None,
                at: None,
            });
        }
        Some(Self {
            line: col("line")?,
            outcome: col("outcome")?,
            plan: false,
            action: col("action"),
            status: col("http_status"),
            code: col("error_code"),
            message: col("message"),
            attempts: col("attempts"),
            at: col("finished_at"),
        })
    }
}

/// Reads a results file (streamed, bounded as inputs are).
pub(crate) fn read(path: &Path) -> Result<Report, ReportError> {
    let csv_error = |source| ReportError::Csv {
        path: path.to_owned(),
        source,
    };
    let file = crate::files::open_regular(path, "results file", u64::MAX, true)?;
    // The same bounds as the input's: long lines are cut, a runaway record is an error.
    let tap = crate::input::limit::Limited::new(
        std::io::BufReader::with_capacity(256 * 1024, file),
        std::sync::Arc::new(crate::input::limit::Shared::without_capture()),
    );
    let mut r = csv::ReaderBuilder::new().flexible(true).from_reader(tap);
    let headers = r.headers().map_err(csv_error)?.clone();
    let Some(cols) = Columns::of(&headers) else {
        return Err(ReportError::NotResults {
            path: path.to_owned(),
        });
    };
    let mut rep = Report {
        file: path.to_owned(),
        plan: cols.plan,
        ..Report::default()
    };
    let mut seen = FixedBitSet::new();
    let mut rec = csv::StringRecord::new();
    while r.read_record(&mut rec).map_err(csv_error)? {
        rep.add(&rec, &cols, &mut seen);
    }
    Ok(rep)
}

impl Report {
    /// Counts one results row.
    fn add(&mut self, rec: &csv::StringRecord, cols: &Columns, seen: &mut FixedBitSet) {
        let get = |c: Option<usize>| c.and_then(|i| rec.get(i)).unwrap_or("");
        self.rows += 1;
        // A line past the bound (no job has a billion rows) is not a row of a job: it is
        // counted, not remembered.
        match get(Some(cols.line)).parse::<usize>() {
            // A plan has a row per call: a SIM's line comes back for each of its calls.
            Ok(_) if cols.plan => {}
            Ok(l) if l <= MAX_LINE => {
                if l >= seen.len() {
                    seen.grow((l + 1).max(seen.len() * 2).min(MAX_LINE + 1));
                }
                if seen.put(l) {
                    self.duplicate_lines += 1;
                }
            }
            _ => self.bad_lines += 1,
        }
        let outcome = match get(Some(cols.outcome)) {
            "change" if cols.plan => "ok",
            "blocked" if cols.plan => "failed",
            o => o,
        };
        self.outcomes.add(outcome);
        let action = match outcome {
            "invalid" => "(invalid rows)",
            _ => unguard(get(cols.action)),
        };
        let action = action.chars().take(40).collect();
        bump(&mut self.by_action, action, "(other)".into(), 64).add(outcome);
        if outcome == "failed" || outcome == "invalid" {
            self.add_error(get(cols.status), get(cols.code), unguard(get(cols.message)));
        }
        if let Ok(a) = get(cols.attempts).parse::<u32>() {
            *self.attempts.entry(a.min(MAX_ATTEMPTS)).or_default() += 1;
        }
        self.add_time(get(cols.at));
    }

    fn add_error(&mut self, status: &str, code: &str, msg: &str) {
        let msg = msg.split(" (request ").next().unwrap_or("");
        // Invalid rows have no code: group them by the first words of their reason.
        let key_code = if code.is_empty() && status.is_empty() {
            let first = msg.split([';', '"']).next().unwrap_or("");
            first.trim().chars().take(60).collect()
        } else {
            code.to_owned()
        };
        let other = (String::new(), "(other)".to_owned());
        let e = bump(&mut self.errors, (status.to_owned(), key_code), other, 256);
        if e.1.is_empty() {
            e.1 = msg.chars().take(200).collect();
        }
        e.0 += 1;
    }

    fn add_time(&mut self, at: &str) {
        let Some(t) = crate::clock::parse_rfc3339(at) else {
            return;
        };
        let Ok(d) = t.duration_since(std::time::UNIX_EPOCH) else {
            return;
        };
        let s = d.as_secs();
        if self.per_minute.len() < MAX_MINUTES || self.per_minute.contains_key(&(s / 60)) {
            *self.per_minute.entry(s / 60).or_default() += 1;
        }
        self.first = Some(self.first.map_or(s, |f| f.min(s)));
        self.last = Some(self.last.map_or(s, |l| l.max(s)));
    }
}

fn minute_text(m: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(m * 60);
    let s = crate::clock::rfc3339(t, crate::clock::Precision::Seconds);
    s.get(..16).unwrap_or(&s).replace('T', " ")
}

impl Report {
    fn top_errors(&self) -> Vec<(&ErrorKey, &(u64, String))> {
        let mut v: Vec<_> = self.errors.iter().collect();
        v.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
        v
    }

    /// Rows per bucket for the throughput chart: at most 60 buckets over the run.
    fn throughput_buckets(&self) -> (u64, Vec<(u64, u64)>) {
        let (Some(&first), Some(&last)) = (
            self.per_minute.keys().next(),
            self.per_minute.keys().next_back(),
        ) else {
            return (1, Vec::new());
        };
        let span = last - first + 1;
        let width = span.div_ceil(60).max(1);
        let mut b: Vec<(u64, u64)> = (0..span.div_ceil(width))
            .map(|i| (first + i * width, 0))
            .collect();
        for (m, n) in &self.per_minute {
            b[((m - first) / width) as usize].1 += n;
        }
        (width, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_unguards() {
        assert_eq!(
            html::esc("<script>\"x\" & 'y'"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;"
        );
        assert_eq!(unguard("'=1+1"), "=1+1");
        assert_eq!(unguard("'plain"), "'plain");
    }

    #[test]
    fn reads_a_results_file_and_counts_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        std::fs::write(&p, "line,iccid,action,value,attribute,outcome,http_status,error_code,message,attempts,sim_status,finished_at\n\
2,1,activate,,,ok,200,,,1,active,2026-11-26T21:00:01.000Z\n\
3,1,activate,,,failed,400,16000,The SIM is suspended (request r-1),2,,2026-11-26T21:00:02.000Z\n\
4,1,'=x,,,invalid,,,unknown action \"=x\"; use one of,0,,2026-11-26T21:02:00.000Z\n\
3,1,activate,,,failed,400,16000,The SIM is suspended (request r-2),1,,2026-11-26T21:03:00.000Z\n").unwrap();
        let r = read(&p).unwrap();
        assert_eq!(
            (r.rows, r.outcomes.ok, r.outcomes.failed, r.outcomes.invalid),
            (4, 1, 2, 1)
        );
        assert_eq!(r.duplicate_lines, 1);
        assert_eq!(
            r.errors[&("400".to_owned(), "16000".to_owned())],
            (2, "The SIM is suspended".to_owned())
        );
        assert_eq!(r.per_minute.len(), 3);
        let html = r.to_html();
        assert!(html.contains("id=\"failed\">2<") && !html.contains("<script"));
        assert!(r.to_text().contains("error 16000"));
        assert!(read(Path::new("/no/such")).is_err());
    }
}
