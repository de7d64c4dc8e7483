//! The final summary: counts by outcome and action, top errors, speed, and where the files
//! are; as text for people and JSON for monitoring.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::output::row::Tally;

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

/// How old the SIM states were that rows were decided on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ReadAges {
    /// `--max-read-age`, in seconds.
    pub bound_seconds: f64,
    /// The oldest state a row was decided on, in seconds (`None`: no row was decided on a
    /// read the job had made before it).
    pub oldest_seconds: Option<f64>,
    /// Rows whose state was too old, or a list view of a SIM the job had just written, and
    /// that read their SIM again before deciding.
    pub reread: u64,
}

/// The version of the summary's JSON shape (`schema_version`); it grows when a field changes
/// meaning or goes away, not when one is added.
pub const SCHEMA_VERSION: u32 = 2;

/// The end of a run. As JSON (`--summary-json`) its fields are the README's schema:
/// times are RFC 3339 UTC, durations carry their unit in the name.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The JSON schema's version.
    pub schema_version: u32,
    /// The simbulk version that ran.
    pub version: String,
    /// A preview: outcomes are predictions and nothing was changed.
    pub preview: bool,
    /// `completed`, `stopped` (signal or deadline), `halted` or `aborted`.
    pub state: crate::exit::JobState,
    /// Why the run ended as it did, when it did not complete.
    pub reason: Option<String>,
    /// The exit code (serialised as its number).
    pub exit_code: crate::exit::Code,
    /// `--change-ref` of the job (a resume keeps the first one unless given another).
    pub change_ref: Option<String>,
    /// The OS user who ran this run.
    pub operator: String,
    /// When this run started and ended.
    pub started_at: String,
    /// When this run ended.
    pub finished_at: String,
    /// When the run had to stop (`--until`, `--max-duration`), if it had to.
    pub deadline_at: Option<String>,
    /// The job's input.
    pub input: PathBuf,
    /// The results file.
    pub results: PathBuf,
    /// The failures file.
    pub failures: PathBuf,
    /// The checkpoint.
    pub checkpoint: PathBuf,
    /// Every row of the job so far, this run and earlier ones.
    pub job: Tally,
    /// The job's rows, estimated from its lines.
    pub job_rows_estimate: u64,
    /// The rows this run finished.
    pub this_run: Tally,
    /// This run's rows by action.
    pub by_action: BTreeMap<String, Tally>,
    /// The largest groups of failed and invalid rows, with samples and the next step.
    pub top_errors: Vec<crate::output::groups::ErrorGroup>,
    /// Rows by outcome and reason (the message without request ids), largest first.
    pub by_reason: Vec<ReasonCount>,
    /// This run's requests by kind, and per row.
    pub calls: Calls,
    /// How old the reads were that rows were decided on.
    pub reads: ReadAges,
    /// How long this run took.
    pub elapsed_seconds: f64,
    /// This run's rows per second.
    pub rows_per_second: f64,
    /// Requests of this run, token requests included.
    pub requests: u64,
    /// Attempts repeated after a 5xx, a timeout or a lost connection (429s apart).
    pub retries: u64,
    /// 429 answers (each repeated after its Retry-After).
    pub throttled_429: u64,
    /// Records whose cells were all empty (skipped).
    pub blank_rows_skipped: u64,
    /// How long the API took to answer a request (sent to answer), in milliseconds.
    pub api_latency_ms: Option<Latency>,
    /// A row's time from its first request to its end (pacer waits, retries and polling
    /// included), in milliseconds.
    pub row_time_ms: Option<Latency>,
    /// This job's share (0–1) of its account's shared rate budget at its end (`None`: it
    /// paced alone).
    pub rate_share: Option<f64>,
    /// Activations of this run that ended active, and still pendingProvision.
    pub activations: Activations,
    /// Seconds from start to the first request of this run (start-up and resume cost).
    pub first_request_after_seconds: Option<f64>,
    /// The command that resumes the job, when it is resumable.
    pub resume_command: Option<String>,
}

/// Activations of a run by the status they ended in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Activations {
    pub active: u64,
    pub still_pending: u64,
}

/// Percentiles in milliseconds.
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
        let mut who = format!("  run by:    {}", self.operator);
        if let Some(c) = &self.change_ref {
            who += &format!(", change {c}");
        }
        let _ = writeln!(s, "{who}");
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
        let counts = |t: &Tally| t.text(", ");
        let t = &self.job;
        // A completed job's rows are all there: no estimate beside them.
        let of = if self.state == crate::exit::JobState::Completed {
            String::new()
        } else {
            format!(" of ~{}", thousands(self.job_rows_estimate.max(t.total())))
        };
        let _ = writeln!(
            s,
            "  rows:      {} done{of}  ({})",
            thousands(t.total()),
            counts(t)
        );
        if self.this_run.total() != t.total() {
            let r = &self.this_run;
            let _ = writeln!(s, "  this run:  {} rows ({})", r.total(), counts(r));
        }
        for (action, c) in &self.by_action {
            let mut line = format!(
                "    {action:<17} ok {:<7} skipped {:<7} failed {:<7} invalid {}",
                c.ok, c.skipped, c.failed, c.invalid
            );
            if c.pending > 0 {
                line += &format!("  pending {}", c.pending);
            }
            let _ = writeln!(s, "{line}");
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

    /// The largest error groups: count, share, the API's message, samples, what to do.
    fn errors_text(&self, s: &mut String) {
        if self.top_errors.is_empty() {
            return;
        }
        let _ = writeln!(s, "  top errors:");
        for e in &self.top_errors {
            let what = if e.outcome == "invalid" {
                format!("invalid: {}", e.label)
            } else {
                e.label.clone()
            };
            let _ = writeln!(
                s,
                "    {:>7} × {what} ({:.1} %): {}",
                e.count, e.percent, e.message
            );
            let lines: Vec<String> = e
                .samples
                .iter()
                .map(|x| format!("{} ({})", x.line, x.iccid))
                .collect();
            let _ = writeln!(s, "              e.g. {}", lines_text(&lines));
            let _ = writeln!(s, "              next: {}", e.next_step);
        }
    }

    /// The rows left and the time they take at this run's pace; the deadline that stopped
    /// the run.
    fn left_text(&self, s: &mut String) {
        let left = self.job_rows_estimate.saturating_sub(self.job.total());
        if self.state != crate::exit::JobState::Completed && left > 0 && self.rows_per_second > 0.0
        {
            let eta = std::time::Duration::from_secs_f64(left as f64 / self.rows_per_second);
            let _ = writeln!(
                s,
                "  left:      ~{} rows, about {} at this run's {:.1} rows/s",
                thousands(left),
                crate::clock::duration_text(eta),
                self.rows_per_second
            );
        }
        if let Some(d) = &self.deadline_at {
            let _ = writeln!(s, "  deadline:  {d}");
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
        let _ = writeln!(
            s,
            "  ran:       {} to {}",
            self.started_at, self.finished_at
        );
        self.left_text(s);
        if let Some(share) = self.rate_share.filter(|s| *s < 0.999) {
            let _ = writeln!(
                s,
                "  rate:      {:.0} % of the account's shared budget at the end (other jobs had the rest)",
                share * 100.0
            );
        }
        let c = &self.calls;
        let _ = writeln!(
            s,
            "  calls:     {:.2} per row ({} writes, {} reads, {} list calls)",
            c.per_row, c.writes, c.reads, c.lists
        );
        let r = &self.reads;
        if let Some(oldest) = r.oldest_seconds {
            let _ = writeln!(
                s,
                "  reads:     rows decided on reads at most {oldest:.1}s old (bound {:.0}s); {} read again first",
                r.bound_seconds, r.reread
            );
        }
        if self.activations.still_pending > 0 {
            let _ = writeln!(
                s,
                "  activations: {} active, {} still pendingProvision",
                self.activations.active, self.activations.still_pending
            );
        }
        let ms = |l: &Latency| {
            format!(
                "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                l.p50, l.p99, l.max
            )
        };
        if let Some(l) = &self.api_latency_ms {
            let _ = writeln!(s, "  API answers: {}", ms(l));
        }
        if let Some(l) = &self.row_time_ms {
            let _ = writeln!(s, "  time per row: {} (waits and retries included)", ms(l));
        }
        if self.blank_rows_skipped > 0 {
            let _ = writeln!(s, "  blank rows skipped: {}", self.blank_rows_skipped);
        }
    }
}

/// `line 19`, or `lines 19, 23`: the sample lines of a group, in the right number.
pub(crate) fn lines_text(lines: &[String]) -> String {
    match lines {
        [one] => format!("line {one}"),
        many => format!("lines {}", many.join(", ")),
    }
}

/// `1 SIM`, `2 SIMs`, `1,000 rows`: a count with its noun in the right number.
pub(crate) fn count_of(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

/// `n` with a comma every three digits: `400,010`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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

/// The flags that give a failures file the row defaults its job had (` --action activate`,
/// shell-quoted; empty when the job had none): a bare list of ICCIDs runs again only with
/// its `--action`.
pub(crate) fn rerun_flags(
    action: Option<&str>,
    value: Option<&str>,
    attribute: Option<&str>,
) -> String {
    [
        ("--action", action),
        ("--value", value),
        ("--attribute", attribute),
    ]
    .into_iter()
    .filter_map(|(flag, v)| v.map(|v| format!(" {flag} {}", shell_quote(v))))
    .collect()
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
    fn counts_and_lines_are_in_the_right_number() {
        assert_eq!(count_of(1, "SIM", "SIMs"), "1 SIM");
        assert_eq!(count_of(1_000, "row", "rows"), "1,000 rows");
        assert_eq!(lines_text(&["19".into()]), "line 19");
        assert_eq!(lines_text(&["19".into(), "23".into()]), "lines 19, 23");
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(400_010), "400,010");
        assert_eq!(thousands(12_345_678), "12,345,678");
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
