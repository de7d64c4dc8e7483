//! The final summary: counts by outcome and action, top errors, speed, and where the files
//! are; as text for people and JSON for monitoring.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::output::row::Tally;

/// How often one error was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorCount {
    pub http_status: Option<u16>,
    pub error_code: Option<i64>,
    /// The group of errors without a status or code (invalid rows, transport failures).
    pub reason: Option<String>,
    /// The first message seen in the group.
    pub message: String,
    pub count: u64,
}

/// How many rows ended one way for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReasonCount {
    pub outcome: String,
    pub reason: String,
    pub count: u64,
}

/// Requests of this run by kind, and per row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Calls {
    /// PATCH, POST and DELETE requests.
    pub writes: u64,
    /// Reads of one SIM or of one SIM's attributes.
    pub reads: u64,
    /// List calls (`GET /api/v2/sim`, up to 100 SIMs each).
    pub lists: u64,
    /// Attempts repeated after a 5xx, a timeout or a lost connection.
    pub retries: u64,
    /// Requests (writes, reads and lists) per row of this run.
    pub per_row: f64,
}

/// The end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// A preview: outcomes are predictions and nothing was changed.
    pub preview: bool,
    /// `completed`, `stopped` (signal or deadline), `halted` or `aborted`.
    pub state: String,
    pub reason: Option<String>,
    pub exit_code: u8,
    pub input: PathBuf,
    pub results: PathBuf,
    pub failures: PathBuf,
    pub checkpoint: PathBuf,
    /// Every row of the job so far, this run and earlier ones.
    pub job: Tally,
    pub job_rows_estimate: u64,
    pub this_run: Tally,
    pub by_action: BTreeMap<String, Tally>,
    pub top_errors: Vec<ErrorCount>,
    /// Rows by outcome and reason (the message without request ids), largest first.
    pub by_reason: Vec<ReasonCount>,
    pub calls: Calls,
    pub elapsed_seconds: f64,
    pub rows_per_second: f64,
    pub requests: u64,
    pub retries: u64,
    pub throttled_429: u64,
    pub blank_rows_skipped: u64,
    /// Row latency in milliseconds: p50, p99, max.
    pub latency_ms: Option<Latency>,
    /// Activations of this run: (ended active, still pendingProvision).
    pub activations: (u64, u64),
    /// Seconds from start to the first request of this run (start-up and resume cost).
    pub first_request_after: Option<f64>,
    pub resume_command: Option<String>,
}

/// Row latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub(crate) fn to_text(&self) -> String {
        let mut s = String::new();
        let reason = self.reason.as_deref().map(|r| format!(": {r}"));
        let what = if self.preview { "preview" } else { "job" };
        let _ = writeln!(
            s,
            "simbulk: {what} {}{}",
            self.state,
            reason.unwrap_or_default()
        );
        if self.preview {
            let _ = writeln!(
                s,
                "  (predictions from each SIM's state; nothing was changed)"
            );
        }
        self.rows_text(&mut s);
        self.reasons_text(&mut s);
        self.errors_text(&mut s);
        self.timing_text(&mut s);
        let _ = writeln!(s, "  results:   {}", self.results.display());
        let _ = writeln!(s, "  failures:  {}", self.failures.display());
        let _ = writeln!(s, "  checkpoint: {}", self.checkpoint.display());
        if let Some(cmd) = &self.resume_command {
            let _ = writeln!(s, "  to resume: {cmd}");
        }
        s
    }

    /// Rows of the job, of this run, and by action.
    fn rows_text(&self, s: &mut String) {
        let counts = |t: &Tally| {
            format!(
                "ok {}, skipped {}, failed {}, invalid {}",
                t.ok, t.skipped, t.failed, t.invalid
            )
        };
        let t = &self.job;
        let _ = writeln!(
            s,
            "  rows:      {} done of ~{}  ({})",
            t.total(),
            self.job_rows_estimate.max(t.total()),
            counts(t)
        );
        if self.this_run.total() != t.total() {
            let r = &self.this_run;
            let _ = writeln!(s, "  this run:  {} rows ({})", r.total(), counts(r));
        }
        for (action, c) in &self.by_action {
            let _ = writeln!(
                s,
                "    {action:<17} ok {:<7} skipped {:<7} failed {:<7} invalid {}",
                c.ok, c.skipped, c.failed, c.invalid
            );
        }
    }

    /// Outcomes by reason: every reason of a preview; the reasons rows were skipped in a run.
    fn reasons_text(&self, s: &mut String) {
        let shown: Vec<_> = self
            .by_reason
            .iter()
            .filter(|r| self.preview || (r.outcome == "skipped" && !r.reason.is_empty()))
            .collect();
        if shown.is_empty() {
            return;
        }
        let _ = writeln!(s, "  by reason:");
        for r in shown {
            let _ = writeln!(s, "    {:>7} × {} {}", r.count, r.outcome, r.reason);
        }
    }

    /// The largest error groups.
    fn errors_text(&self, s: &mut String) {
        if self.top_errors.is_empty() {
            return;
        }
        let _ = writeln!(s, "  top errors:");
        for e in &self.top_errors {
            let code = match (e.http_status, e.error_code, &e.reason) {
                (_, Some(c), _) => format!("error {c}"),
                (Some(h), None, _) => format!("HTTP {h}"),
                (None, None, Some(r)) => r.clone(),
                (None, None, None) => "other".into(),
            };
            let _ = writeln!(s, "    {:>7} × {code}: {}", e.count, e.message);
        }
    }

    /// Time, rate, requests, activations, latency.
    fn timing_text(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "  time:      {:.1}s, {:.1} rows/s, {} requests, {} retries, {} × 429",
            self.elapsed_seconds,
            self.rows_per_second,
            self.requests,
            self.retries,
            self.throttled_429
        );
        let c = &self.calls;
        let _ = writeln!(
            s,
            "  calls:     {:.2} per row ({} writes, {} reads, {} list calls)",
            c.per_row, c.writes, c.reads, c.lists
        );
        if self.activations.1 > 0 {
            let _ = writeln!(
                s,
                "  activations: {} active, {} still pendingProvision",
                self.activations.0, self.activations.1
            );
        }
        if let Some(l) = &self.latency_ms {
            let _ = writeln!(
                s,
                "  latency:   p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                l.p50, l.p99, l.max
            );
        }
        if self.blank_rows_skipped > 0 {
            let _ = writeln!(s, "  blank rows skipped: {}", self.blank_rows_skipped);
        }
    }
}

/// Distinct error groups kept; further ones are counted together.
const MAX_GROUPS: usize = 256;

type GroupKey = (Option<u16>, Option<i64>, Option<&'static str>);

/// Error counts by group — HTTP status and API error code, or a reason for errors that have
/// neither — with the first message of each. Bounded: past [`MAX_GROUPS`] groups, new ones
/// are counted as "other errors".
#[derive(Debug, Default)]
pub(crate) struct ErrorTally {
    map: BTreeMap<GroupKey, (u64, String)>,
}

impl ErrorTally {
    pub(crate) fn add(
        &mut self,
        status: Option<u16>,
        code: Option<i64>,
        reason: Option<&'static str>,
        message: &str,
    ) {
        let mut key = (status, code, reason);
        if self.map.len() >= MAX_GROUPS && !self.map.contains_key(&key) {
            key = (None, None, Some("other errors"));
        }
        let e = self.map.entry(key).or_insert_with(|| {
            (
                0,
                message
                    .split(" (request ")
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect(),
            )
        });
        e.0 += 1;
    }

    /// The `n` largest groups.
    pub(crate) fn top(&self, n: usize) -> Vec<ErrorCount> {
        let mut v: Vec<ErrorCount> = self
            .map
            .iter()
            .map(|((s, c, r), (count, m))| ErrorCount {
                http_status: *s,
                error_code: *c,
                reason: r.map(str::to_owned),
                message: m.clone(),
                count: *count,
            })
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.count));
        v.truncate(n);
        v
    }
}

/// Distinct reasons kept; further ones are counted together.
const MAX_REASONS: usize = 32;

/// Rows by outcome and reason, bounded like [`ErrorTally`]; a reason already counted costs
/// no allocation.
#[derive(Debug, Default)]
pub(crate) struct ReasonTally {
    map: BTreeMap<&'static str, std::collections::HashMap<String, u64>>,
    groups: usize,
}

impl ReasonTally {
    pub(crate) fn add(&mut self, outcome: &'static str, message: &str) {
        let reason = message.split(" (request ").next().unwrap_or("");
        let reason = match reason.char_indices().nth(120) {
            Some((cut, _)) => &reason[..cut],
            None => reason,
        };
        let by = self.map.entry(outcome).or_default();
        if let Some(n) = by.get_mut(reason) {
            *n += 1;
            return;
        }
        let key = if self.groups < MAX_REASONS {
            self.groups += 1;
            reason
        } else {
            "(other reasons)"
        };
        *by.entry(key.to_owned()).or_default() += 1;
    }

    /// The groups, largest first.
    pub(crate) fn all(&self) -> Vec<ReasonCount> {
        let mut v: Vec<ReasonCount> = self
            .map
            .iter()
            .flat_map(|(o, by)| {
                by.iter().map(|(r, n)| ReasonCount {
                    outcome: (*o).to_owned(),
                    reason: r.clone(),
                    count: *n,
                })
            })
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
        v
    }
}

/// Shell-quotes one argument for the "to resume" line.
pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The command line that resumes this job: the same arguments, `--resume`, no `--restart`.
pub(crate) fn resume_command(args: &[String]) -> String {
    let mut out: Vec<String> = args
        .iter()
        .filter(|a| *a != "--restart" && *a != "--resume")
        .map(|a| shell_quote(a))
        .collect();
    out.push("--resume".into());
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_groups_hold_no_row_detail_and_stay_bounded() {
        let mut t = ErrorTally::default();
        for i in 0..100_000u64 {
            let msg = format!("ICCID \"{i:019}\" fails the Luhn check");
            t.add(None, None, Some("ICCID fails the Luhn check"), &msg);
        }
        for code in 0..10_000 {
            t.add(Some(400), Some(code), None, "refused (request req-1)");
        }
        assert!(t.map.len() <= MAX_GROUPS + 1);
        let top = t.top(3);
        assert_eq!(top[0].count, 100_000);
        assert_eq!(top[0].reason.as_deref(), Some("ICCID fails the Luhn check"));
        assert!(
            top.iter()
                .any(|e| e.reason.as_deref() == Some("other errors"))
        );
        assert!(top.iter().all(|e| !e.message.contains("req-1")));
    }

    #[test]
    fn resume_command_adds_resume_and_quotes() {
        let args: Vec<String> = ["simbulk", "run", "my file.csv", "--restart", "--rate", "5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            resume_command(&args),
            "simbulk run 'my file.csv' --rate 5 --resume"
        );
    }
}
