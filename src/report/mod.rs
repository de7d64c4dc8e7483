//! `simbulk report <results.csv>`: the morning-after summary of a run (resumed runs
//! included): counts by outcome and action, error codes with their messages, throughput over
//! time, attempts — as text, and as one self-contained HTML page (inline SVG, no scripts, no
//! external assets) that can be opened or mailed.
//!
//! Guarantees: the results file is streamed (memory grows with the number of distinct error
//! codes and minutes of run time, not with rows); every text taken from the file is
//! HTML-escaped.

mod html;
pub(crate) use html::page;
mod text;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fixedbitset::FixedBitSet;

use crate::output::groups::{ErrorGroup, Groups};
use crate::output::row::{Tally, Verdict};

/// Outcomes in one bucket of time, and the requests repeated there.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Minute {
    pub(crate) outcomes: Tally,
    /// Requests repeated after a 5xx, a timeout or a lost connection (the results' `retries`).
    pub(crate) repeats: u64,
}

/// What the job's checkpoint says of it: who ran it, for which change, its runs.
#[derive(Debug)]
pub(crate) struct JobContext {
    pub(crate) checkpoint: PathBuf,
    pub(crate) header: crate::checkpoint::Header,
    pub(crate) runs: Vec<crate::checkpoint::Run>,
    /// The end record's exit code: the job is complete.
    pub(crate) finished: Option<u8>,
}

/// What a results file says.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) file: PathBuf,
    pub(crate) rows: u64,
    pub(crate) outcomes: Tally,
    pub(crate) by_action: BTreeMap<String, Tally>,
    /// What the rows asked, in words (`set-package 1234`), with their rows.
    pub(crate) changes: BTreeMap<String, u64>,
    /// Failed and invalid rows, grouped.
    pub(crate) groups: Groups,
    /// Rows finished per minute (Unix minute), by outcome.
    pub(crate) per_minute: BTreeMap<u64, Minute>,
    /// Rows finished per second (Unix second), while the job has few seconds of activity
    /// (`None` past [`MAX_SECONDS`]: the chart is drawn from the minutes).
    pub(crate) per_second: Option<BTreeMap<u64, Minute>>,
    pub(crate) attempts: BTreeMap<u32, u64>,
    /// Requests repeated after a 5xx, a timeout or a lost connection, over the file.
    pub(crate) repeats: u64,
    pub(crate) duplicate_lines: u64,
    /// Rows whose `line` is not a line number simbulk writes.
    pub(crate) bad_lines: u64,
    pub(crate) first: Option<u64>,
    pub(crate) last: Option<u64>,
    /// A plan of `simbulk apply` (one row per call; `ok` counts calls to make, `failed`
    /// blocked changes), not results.
    pub(crate) plan: bool,
    /// The change references the rows carry (a few).
    pub(crate) change_refs: std::collections::BTreeSet<String>,
    /// The job's checkpoint, when it is found (or why not).
    pub(crate) job: Result<JobContext, String>,
    /// The failures file the next steps point at.
    pub(crate) failures: String,
    /// Whether that file is there (a plan has none; nor has a results file moved alone).
    pub(crate) failures_exist: bool,
    pub(crate) generated: String,
}

/// Highest line number followed for duplicates (a bitset of 128 MiB at most).
const MAX_LINE: usize = 1 << 30;
/// Attempts counted one by one; more are counted together.
const MAX_ATTEMPTS: u32 = 1000;
/// Minutes of activity charted (about 139 days).
const MAX_MINUTES: usize = 200_000;
/// Seconds of activity followed one by one (a short job's chart is drawn per second).
const MAX_SECONDS: usize = 3_600;
/// Largest checkpoint read for the job's context.
const MAX_CHECKPOINT: u64 = 8 << 30;

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
    iccid: Option<usize>,
    action: Option<usize>,
    value: Option<usize>,
    attribute: Option<usize>,
    status: Option<usize>,
    code: Option<usize>,
    reason: Option<usize>,
    message: Option<usize>,
    attempts: Option<usize>,
    retries: Option<usize>,
    at: Option<usize>,
    change_ref: Option<usize>,
}

impl Columns {
    fn of(headers: &csv::StringRecord) -> Option<Self> {
        let col = |name: &str| headers.iter().position(|h| h == name);
        let plan = col("outcome").is_none() && col("kind").is_some() && col("sim_line").is_some();
        Some(Self {
            line: col(if plan { "sim_line" } else { "line" })?,
            outcome: col(if plan { "kind" } else { "outcome" })?,
            plan,
            iccid: col("iccid"),
            action: col("action"),
            value: col("value"),
            attribute: col("attribute"),
            status: col("http_status"),
            code: col("error_code"),
            // A plan's reason is its message; a results file has both.
            reason: col("reason").filter(|_| !plan),
            message: col(if plan { "reason" } else { "message" }),
            attempts: col("attempts"),
            retries: col("retries"),
            at: col("finished_at"),
            change_ref: col("change_ref"),
        })
    }
}

/// Reads a results file (streamed, bounded as inputs are), and the job's checkpoint:
/// `checkpoint`, or the one beside the results file.
pub(crate) fn read(path: &Path, checkpoint: Option<&Path>) -> Result<Report, ReportError> {
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
    let job = job_context(path, checkpoint);
    let failures = match &job {
        Ok(j) => j.header.failures.clone(),
        Err(_) => beside(path, ".failures.csv"),
    };
    let mut rep = Report {
        file: path.to_owned(),
        rows: 0,
        outcomes: Tally::default(),
        by_action: BTreeMap::new(),
        changes: BTreeMap::new(),
        groups: Groups::default(),
        per_minute: BTreeMap::new(),
        per_second: Some(BTreeMap::new()),
        attempts: BTreeMap::new(),
        repeats: 0,
        duplicate_lines: 0,
        bad_lines: 0,
        first: None,
        last: None,
        plan: cols.plan,
        change_refs: std::collections::BTreeSet::new(),
        job,
        failures: crate::output::summary::shell_quote(&failures.display().to_string()),
        failures_exist: !cols.plan && failures.is_file(),
        generated: crate::clock::rfc3339(
            std::time::SystemTime::now(),
            crate::clock::Precision::Seconds,
        ),
    };
    let mut seen = FixedBitSet::new();
    let mut rec = csv::StringRecord::new();
    while r.read_record(&mut rec).map_err(csv_error)? {
        rep.add(&rec, &cols, &mut seen);
    }
    Ok(rep)
}

/// The file beside the results file `path` named as simbulk names a job's files:
/// `job.results.csv` → `job<suffix>`, `job.preview.csv` → `job.preview<suffix>`.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let stem = name
        .strip_suffix(".results.csv")
        .or_else(|| name.strip_suffix(".csv"))
        .unwrap_or(&name);
    path.with_file_name(format!("{stem}{suffix}"))
}

/// The job's context from its checkpoint, or why there is none.
fn job_context(results: &Path, checkpoint: Option<&Path>) -> Result<JobContext, String> {
    let cp = checkpoint.map_or_else(|| beside(results, ".checkpoint"), Path::to_owned);
    if checkpoint.is_none() && !cp.exists() {
        return Err(format!(
            "no checkpoint at {} (give --checkpoint for the job's runs, operator and change reference)",
            cp.display()
        ));
    }
    let bounds = crate::checkpoint::Bounds {
        max_bytes: MAX_CHECKPOINT,
        ..crate::checkpoint::Bounds::unlimited()
    };
    let rep = crate::checkpoint::replay(&cp, bounds).map_err(|e| e.to_string())?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(&rep.header.results, results) && !same(&cp, &beside(results, ".checkpoint")) {
        return Err(format!(
            "the checkpoint {} belongs to {}, not to this results file",
            cp.display(),
            rep.header.results.display()
        ));
    }
    Ok(JobContext {
        checkpoint: cp,
        header: rep.header,
        runs: rep.runs,
        finished: rep.finished,
    })
}

impl Report {
    /// Tally one results row.
    fn add(&mut self, rec: &csv::StringRecord, cols: &Columns, seen: &mut FixedBitSet) {
        let get = |c: Option<usize>| c.and_then(|i| rec.get(i)).unwrap_or("");
        self.rows += 1;
        // A line past the bound (no job has a billion rows) is not a row of a job: it is
        // counted, not remembered.
        let line = get(Some(cols.line)).parse::<u64>().ok();
        match line.and_then(|l| usize::try_from(l).ok()) {
            // A plan has a row per call: a SIM's line comes back for each of its calls.
            Some(_) if cols.plan => {}
            Some(l) if l <= MAX_LINE => {
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
            o @ ("ok" | "skipped" | "failed" | "pending") => o,
            _ => "invalid",
        };
        let verdict = Verdict::from_name(outcome).unwrap_or(Verdict::Invalid);
        self.outcomes.add(verdict);
        let action: String = match outcome {
            "invalid" => "(invalid rows)".into(),
            _ => unguard(get(cols.action)).chars().take(40).collect(),
        };
        if outcome != "invalid" {
            let what = [
                unguard(get(cols.action)),
                unguard(get(cols.attribute)),
                unguard(get(cols.value)),
            ]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
            let what: String = what.chars().take(80).collect();
            *bump(&mut self.changes, what, "(other changes)".into(), 32) += 1;
        }
        bump(&mut self.by_action, action, "(other)".into(), 64).add(verdict);
        if matches!(outcome, "failed" | "invalid" | "pending") {
            self.add_error(outcome, rec, cols, line.unwrap_or(0));
        }
        if let Ok(a) = get(cols.attempts).parse::<u32>() {
            *self.attempts.entry(a.min(MAX_ATTEMPTS)).or_default() += 1;
        }
        let repeats = get(cols.retries)
            .parse::<u64>()
            .unwrap_or(0)
            .min(u64::from(MAX_ATTEMPTS));
        self.repeats += repeats;
        let cr = unguard(get(cols.change_ref));
        if !cr.is_empty() && self.change_refs.len() < 8 {
            self.change_refs.insert(cr.chars().take(200).collect());
        }
        self.add_time(get(cols.at), outcome, repeats);
    }

    fn add_error(&mut self, outcome: &str, rec: &csv::StringRecord, cols: &Columns, line: u64) {
        let get = |c: Option<usize>| c.and_then(|i| rec.get(i)).unwrap_or("");
        let msg = unguard(get(cols.message));
        let status = get(cols.status).parse::<u16>().ok();
        let code = get(cols.code).parse::<i64>().ok();
        let reason: String = match cols.reason.map(|_| unguard(get(cols.reason))) {
            // A plan's failed rows are its blocked changes (invalid rows among them).
            _ if cols.plan => crate::output::groups::BLOCKED.into(),
            Some(r) if !r.is_empty() => r.chars().take(80).collect(),
            // An older results file, or a plan: the words before the row's own text.
            _ => msg
                .split(['"', ';', ':'])
                .next()
                .unwrap_or("")
                .trim()
                .chars()
                .take(60)
                .collect(),
        };
        let iccid = unguard(get(cols.iccid));
        self.groups.add(crate::output::groups::Failed {
            outcome,
            status,
            code,
            reason: Some(&reason),
            message: msg,
            line,
            iccid,
        });
    }

    fn add_time(&mut self, at: &str, outcome: &str, repeats: u64) {
        let Some(t) = crate::clock::parse_rfc3339(at) else {
            return;
        };
        let Ok(d) = t.duration_since(std::time::UNIX_EPOCH) else {
            return;
        };
        let s = d.as_secs();
        if self.per_minute.len() < MAX_MINUTES || self.per_minute.contains_key(&(s / 60)) {
            let m = self.per_minute.entry(s / 60).or_default();
            m.outcomes
                .add(Verdict::from_name(outcome).unwrap_or(Verdict::Invalid));
            m.repeats += repeats;
        }
        if let Some(seconds) = &mut self.per_second {
            if seconds.len() < MAX_SECONDS || seconds.contains_key(&s) {
                let m = seconds.entry(s).or_default();
                m.outcomes
                    .add(Verdict::from_name(outcome).unwrap_or(Verdict::Invalid));
                m.repeats += repeats;
            } else {
                self.per_second = None;
            }
        }
        self.first = Some(self.first.map_or(s, |f| f.min(s)));
        self.last = Some(self.last.map_or(s, |l| l.max(s)));
    }
}

/// A Unix minute as `2026-11-27 03:00`.
fn minute_text(m: u64) -> String {
    second_text(m * 60, true)
}

/// A Unix second as `2026-11-27 03:00:12`, or cut to its minute when `to_minute`.
fn second_text(s: u64, to_minute: bool) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
    let mut text = crate::clock::rfc3339(t, crate::clock::Precision::Seconds)
        .trim_end_matches('Z')
        .replace('T', " ");
    if to_minute {
        text.truncate(16);
    }
    text
}

/// A time in milliseconds since the epoch, as `2026-11-27 03:00:12 UTC`.
fn ms_text(ms: u64) -> String {
    format!("{} UTC", second_text(ms / 1000, false))
}

/// What an exit code says.
fn exit_text(code: u8) -> &'static str {
    use crate::exit::Code;
    match Code::from_number(code) {
        Some(Code::Ok) => "every row done",
        Some(Code::RowsFailed) => "done, some rows failed",
        Some(Code::Usage) => "refused (usage)",
        Some(Code::Halted) => "halted",
        Some(Code::Stopped) => "stopped (signal or deadline)",
        None => "ended",
    }
}

/// Bucket widths in seconds, per second for a short job to a day for a long one: the chart
/// has at most 72 bars of a round width.
const WIDTHS: [u64; 18] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400,
];
/// Most bars in the throughput chart.
const BARS: u64 = 72;

impl Report {
    fn top_errors(&self) -> Vec<ErrorGroup> {
        self.groups.top_with(
            50,
            self.rows,
            &crate::output::groups::Rerun {
                failures: &self.failures,
                flags: &self.rerun_flags(),
                apply: self
                    .job
                    .as_ref()
                    .ok()
                    .and_then(|j| j.header.apply_again.as_deref()),
            },
        )
    }

    /// The row defaults of the job (from its checkpoint), as flags of a re-run.
    fn rerun_flags(&self) -> String {
        self.job.as_ref().map_or_else(
            |_| String::new(),
            |j| {
                let id = &j.header.job;
                crate::output::summary::rerun_flags(
                    id.action.as_deref(),
                    id.value.as_deref(),
                    id.attribute.as_deref(),
                )
            },
        )
    }

    /// Percent of the rows.
    fn pct(&self, n: u64) -> String {
        format!("{:.1} %", n as f64 * 100.0 / self.rows.max(1) as f64)
    }

    /// Rows per bucket for the throughput chart, as (width in seconds, each bucket's first
    /// Unix second and tally): at most [`BARS`] buckets of a round width that fits the job —
    /// seconds for a job of a minute, hours for a night — from the per-second tallies while
    /// the job has them, else from the minutes.
    fn throughput_buckets(&self) -> (u64, Vec<(u64, Minute)>) {
        let per_second = self.per_second.as_ref().filter(|m| !m.is_empty());
        let (tallies, unit): (Box<dyn Iterator<Item = (u64, &Minute)>>, u64) = match per_second {
            Some(seconds) => (Box::new(seconds.iter().map(|(s, c)| (*s, c))), 1),
            None => (
                Box::new(self.per_minute.iter().map(|(m, c)| (m * 60, c))),
                60,
            ),
        };
        let tallies: Vec<(u64, &Minute)> = tallies.collect();
        let (Some(&(first, _)), Some(&(last, _))) = (tallies.first(), tallies.last()) else {
            return (60, Vec::new());
        };
        let span = last - first + unit;
        let width = WIDTHS
            .into_iter()
            .filter(|w| *w >= unit)
            .find(|w| span.div_ceil(*w) <= BARS)
            .unwrap_or_else(|| span.div_ceil(BARS).next_multiple_of(unit));
        let start = first - first % width;
        let n = (last - start) / width + 1;
        let mut b: Vec<(u64, Minute)> = (0..n)
            .map(|i| (start + i * width, Minute::default()))
            .collect();
        for (at, c) in tallies {
            let slot = &mut b[((at - start) / width) as usize].1;
            slot.outcomes.absorb(&c.outcomes);
            slot.repeats += c.repeats;
        }
        (width, b)
    }

    /// The steps the reader can take, first the job's, then each group's.
    fn next_steps(&self) -> Vec<String> {
        let mut steps = Vec::new();
        if let Ok(j) = &self.job
            && j.finished.is_none()
        {
            let input = j.header.input.as_ref().map_or_else(
                || "INPUT".to_owned(),
                |p| crate::output::summary::shell_quote(&p.display().to_string()),
            );
            steps.push(format!(
                "the job is not complete: continue it with simbulk run {input} --resume --checkpoint {}",
                crate::output::summary::shell_quote(&j.checkpoint.display().to_string())
            ));
        }
        if self.outcomes.failed + self.outcomes.invalid + self.outcomes.pending > 0
            && self.failures_exist
        {
            steps.push(format!(
                "failed, invalid and pending rows are in {} (the input's own columns): fix what each error group says, then run it: simbulk run {}{}",
                self.failures,
                self.failures,
                self.rerun_flags()
            ));
        }
        steps
    }
}

/// An interval in words (`2 h 5 min`).
fn span_text(ms: u64) -> String {
    crate::clock::duration_text(std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A results file of `rows` rows, one finished every `every` seconds from 21:00:00.
    fn timed(dir: &Path, rows: u64, every: u64) -> Report {
        let p = dir.join(format!("t{rows}-{every}.csv"));
        let mut body = String::from("line,iccid,action,outcome,finished_at\n");
        for i in 0..rows {
            let t =
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_726_800 + i * every);
            let at = crate::clock::rfc3339(t, crate::clock::Precision::Millis);
            body += &format!("{},1,activate,ok,{at}\n", i + 2);
        }
        std::fs::write(&p, body).unwrap();
        read(&p, None).unwrap()
    }

    /// The chart's bars fit the job: seconds for an 8-second job, minutes for an hour, hours
    /// for a night, never more than 72 bars.
    #[test]
    fn throughput_buckets_fit_the_job() {
        let dir = tempfile::tempdir().unwrap();
        for (rows, every, width, bars) in [
            (8, 1, 1, 8),
            (90, 1, 2, 45),
            (60, 60, 60, 60),
            (5000, 3, 300, 50),
            (100, 600, 900, 67),
        ] {
            let r = timed(dir.path(), rows, every);
            let (w, b) = r.throughput_buckets();
            assert_eq!((w, b.len()), (width, bars), "{rows} rows every {every} s");
            let charted: u64 = b.iter().map(|x| x.1.outcomes.total()).sum();
            assert_eq!(charted, rows);
        }
        let html = timed(dir.path(), 8, 1).to_html();
        assert!(html.contains("rows finished per second (UTC)"), "{html}");
    }

    /// What the file says is text on the page, never markup.
    #[test]
    fn every_text_from_the_file_is_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hostile.csv");
        std::fs::write(
            &p,
            "line,iccid,action,outcome,http_status,error_code,message,finished_at\n\
2,<i>1</i>,\"<img src=x onerror=alert(1)>\",failed,400,1,\"<script>alert('x')</script> & \"\"q\"\"\",2026-11-26T21:00:01.000Z\n",
        )
        .unwrap();
        let html = read(&p, None).unwrap().to_html();
        assert!(!html.contains("<script") && !html.contains("<img") && !html.contains("<i>"));
        assert!(
            html.contains("&lt;script&gt;alert('x')&lt;/script&gt; &amp; &quot;q&quot;"),
            "{html}"
        );
    }

    #[test]
    fn unguards() {
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
        let r = read(&p, None).unwrap();
        assert_eq!(
            (r.rows, r.outcomes.ok, r.outcomes.failed, r.outcomes.invalid),
            (4, 1, 2, 1)
        );
        assert_eq!(r.duplicate_lines, 1);
        let top = r.top_errors();
        assert_eq!(top.len(), 2);
        assert_eq!(
            (top[0].count, top[0].label.as_str(), top[0].message.as_str()),
            (2, "HTTP 400 error 16000", "The SIM is suspended")
        );
        // An older file without a reason column: the reason's words, not the row's text.
        assert_eq!(
            (top[1].outcome.as_str(), top[1].label.as_str()),
            ("invalid", "unknown action")
        );
        assert!(r.job.is_err());
        assert_eq!(r.per_minute.len(), 3);
        let html = r.to_html();
        assert!(html.contains("id=\"failed\">2<") && !html.contains("<script"));
        assert!(r.to_text().contains("error 16000"));
        assert!(html.contains("id=\"failed-pct\">50.0 %<"), "{html}");
        assert!(read(Path::new("/no/such"), None).is_err());
        // Every outcome reaches the chart, pending rows too.
        let q = dir.path().join("p.csv");
        std::fs::write(
            &q,
            "line,iccid,action,outcome,finished_at\n\
2,1,activate,pending,2026-11-26T21:00:01.000Z\n\
3,1,activate,ok,2026-11-26T21:00:02.000Z\n",
        )
        .unwrap();
        let r = read(&q, None).unwrap();
        let (_, buckets) = r.throughput_buckets();
        let charted: u64 = buckets.iter().map(|b| b.1.outcomes.total()).sum();
        assert_eq!((r.outcomes.pending, charted), (1, 2));
    }
}
