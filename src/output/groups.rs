//! Failed, invalid and pending rows in groups an operator can act on — one definition for the run's
//! summary, the report and the preview.
//!
//! A group is an outcome (`failed`, `invalid`, or `pending` activations) and then either the API's answer (HTTP
//! status and error code), a transport failure (connection lost, timeout, … after retries),
//! or a validation reason — never a row's own text, so a thousand mangled ICCIDs make one
//! group. Each group keeps its count, the first message (request ids cut off), up to
//! [`SAMPLES`] sample lines with their ICCIDs, and the next step.
//!
//! Guarantees: bounded — past [`MAX_GROUPS`] groups further ones are counted as "other
//! errors"; a sample ICCID is cut to 40 characters.

use std::collections::BTreeMap;

use serde::Serialize;

/// Sample rows kept per group.
pub const SAMPLES: usize = 5;

/// The group of `pending` rows.
const PENDING: &str = "still pendingProvision";

/// The reason of a `blocked` row (a change of `simbulk apply`'s plan that no order allows):
/// its own group, whatever else the row says.
pub(crate) const BLOCKED: &str = "blocked";

/// Distinct groups kept; further ones are counted together.
const MAX_GROUPS: usize = 256;

/// One sample row of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub line: u64,
    pub iccid: String,
}

/// One group of failed or invalid rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorGroup {
    /// `failed`, `invalid`, `pending` or `blocked`.
    pub outcome: String,
    pub http_status: Option<u16>,
    pub error_code: Option<i64>,
    /// A transport failure's kind (`connection lost`, `timeout`, …) or a validation reason.
    pub reason: Option<String>,
    /// The group in words: `HTTP 404 error 6002`, `connection lost`, `ICCID fails the Luhn check`.
    pub label: String,
    /// The first message of the group, request id cut off.
    pub message: String,
    pub count: u64,
    /// Percent of the rows counted (`rows` of [`Groups::top`]).
    pub percent: f64,
    pub samples: Vec<Sample>,
    /// What to do about it.
    pub next_step: String,
}

type Key = (String, Option<u16>, Option<i64>, Option<String>);

/// Groups being counted.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    map: BTreeMap<Key, (u64, String, Vec<Sample>)>,
}

/// A failed or invalid row, as the groups see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Failed<'a> {
    /// `failed`, `invalid` or `pending`.
    pub(crate) outcome: &'a str,
    pub(crate) status: Option<u16>,
    pub(crate) code: Option<i64>,
    /// The group of a failure without a status or a code (or of an invalid row).
    pub(crate) reason: Option<&'a str>,
    pub(crate) message: &'a str,
    pub(crate) line: u64,
    pub(crate) iccid: &'a str,
}

impl Groups {
    /// Counts a failed or invalid row.
    pub(crate) fn add(&mut self, row: Failed<'_>) {
        let Failed {
            outcome,
            status,
            code,
            reason,
            message,
            line,
            iccid,
        } = row;
        // A pending activation is one group, whatever answered it; so is a blocked change.
        let (outcome, status, code, reason) = match (outcome, reason) {
            ("pending", _) => (outcome, None, None, Some(PENDING)),
            (_, Some(BLOCKED)) => (BLOCKED, None, None, Some(BLOCKED)),
            _ => (outcome, status, code, reason),
        };
        // A failure with an HTTP status or a code is grouped by them alone.
        let reason = reason.filter(|_| status.is_none() && code.is_none());
        let mut key: Key = (outcome.to_owned(), status, code, reason.map(str::to_owned));
        if self.map.len() >= MAX_GROUPS && !self.map.contains_key(&key) {
            key = (outcome.to_owned(), None, None, Some("other errors".into()));
        }
        let e = self.map.entry(key).or_insert_with(|| {
            let first = message.split(" (request ").next().unwrap_or("");
            (0, clipped(first, 200), Vec::new())
        });
        e.0 += 1;
        if e.2.len() < SAMPLES {
            e.2.push(Sample {
                line,
                iccid: iccid.chars().take(40).collect(),
            });
        }
    }

    /// The `n` largest groups, with their share of `rows` and the next step; `failures`
    /// names the failures file the steps point at.
    pub(crate) fn top(&self, n: usize, rows: u64, failures: &str) -> Vec<ErrorGroup> {
        self.top_with(
            n,
            rows,
            &Rerun {
                failures,
                flags: "",
                apply: None,
            },
        )
    }

    /// [`Groups::top`], the next steps' commands made by `rerun`, so each runs as printed.
    pub(crate) fn top_with(&self, n: usize, rows: u64, rerun: &Rerun<'_>) -> Vec<ErrorGroup> {
        let mut v: Vec<ErrorGroup> = self
            .map
            .iter()
            .map(
                |((outcome, status, code, reason), (count, message, samples))| ErrorGroup {
                    label: label(*status, *code, reason.as_deref()),
                    next_step: next_step(outcome, *status, *code, rerun),
                    outcome: outcome.clone(),
                    http_status: *status,
                    error_code: *code,
                    reason: reason.clone(),
                    message: message.clone(),
                    count: *count,
                    percent: *count as f64 * 100.0 / rows.max(1) as f64,
                    samples: samples.clone(),
                },
            )
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then(a.label.cmp(&b.label)));
        v.truncate(n);
        v
    }
}

/// A group's name.
pub(crate) fn label(status: Option<u16>, code: Option<i64>, reason: Option<&str>) -> String {
    match (status, code, reason) {
        (Some(s), Some(c), _) => format!("HTTP {s} error {c}"),
        (Some(s), None, _) => format!("HTTP {s}"),
        (None, Some(c), _) => format!("error {c}"),
        (None, None, Some(r)) => r.to_owned(),
        (None, None, None) => "other".into(),
    }
}

/// `text` cut to about `most` characters at a word's end, with `…` when cut.
fn clipped(text: &str, most: usize) -> String {
    if text.chars().count() <= most {
        return text.to_owned();
    }
    let head: String = text.chars().take(most).collect();
    let cut = head
        .rfind(' ')
        .filter(|&i| i > most / 2)
        .unwrap_or(head.len());
    format!("{}…", head[..cut].trim_end_matches([',', ';', ':']))
}

/// What the next steps' commands run again, each shell-quoted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rerun<'a> {
    /// The failures file.
    pub(crate) failures: &'a str,
    /// The job's row defaults as flags (` --action activate`, `summary::rerun_flags`): a
    /// bare list runs again only with them.
    pub(crate) flags: &'a str,
    /// For an apply's plan: the desired-state file (and its ` --sheet`), planned again once
    /// a blocked change is resolved.
    pub(crate) apply: Option<&'a str>,
}

/// What to do about a group.
fn next_step(outcome: &str, status: Option<u16>, code: Option<i64>, r: &Rerun<'_>) -> String {
    let failures = r.failures;
    if outcome == BLOCKED {
        let again = r.apply.map_or_else(
            || "simbulk apply with the desired-state file again".to_owned(),
            // The finished apply keeps its records (renamed) and plans from the fleet as it is.
            |desired| format!("simbulk apply {desired} --restart"),
        );
        return format!(
            "the desired file asks for a change no order allows (each row's message says why; nothing was sent): change the file or the SIM, then plan again: {again}"
        );
    }
    let rerun = format!("simbulk run {failures}{}", r.flags);
    if outcome == "invalid" {
        return format!(
            "fix these rows in {failures} (the message says how), then run it: {rerun}"
        );
    }
    if outcome == "pending" {
        return format!(
            "the activations went through but the SIMs were not active yet: poll them again (no second activation is sent) with simbulk run {failures} --action activate --wait-active 30m"
        );
    }
    match (status, code) {
        (_, Some(6002)) => format!(
            "the provider does not know these ICCIDs (or they are outside your portfolios): check them, then run the corrected rows with {rerun}"
        ),
        (_, Some(16000)) => format!("the SIMs are suspended: unsuspend them, then {rerun}"),
        (_, Some(6046)) => format!(
            "the SIMs' status does not allow the change (an active SIM cannot change package; a pendingProvision SIM takes nothing): change their status first, then {rerun}"
        ),
        (_, Some(16005 | 16006 | 16007 | 16001 | 6026 | 6023 | 16003)) => format!(
            "the package or portfolio does not fit these SIMs: if the value is wrong, fix it and run again with --restart; else {rerun} once the catalogue allows it"
        ),
        (Some(s), _) if s == 429 || s >= 500 => format!(
            "the provider was failing (HTTP {s}): run the failures again once it has recovered: {rerun}"
        ),
        (None, None) => format!(
            "the provider could not be reached or did not answer in time: run the failures again once it works: {rerun}"
        ),
        _ => format!("see the message; fix the cause, then {rerun}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_is_cut_at_a_word_with_an_ellipsis() {
        assert_eq!(clipped("short", 200), "short");
        assert_eq!(clipped("one two, three four", 12), "one two…");
        assert_eq!(clipped("ééééééééééé", 4), "éééé…");
    }

    #[test]
    fn groups_hold_no_row_text_keep_samples_and_stay_bounded() {
        let mut g = Groups::default();
        for i in 0..360 {
            g.add(Failed {
                outcome: "invalid",
                status: None,
                code: None,
                reason: Some("ICCID fails the Luhn check"),
                message: &format!("ICCID \"8944{i}\" fails the Luhn check"),
                line: i + 2,
                iccid: &format!("8944{i}"),
            });
        }
        for i in 0..10 {
            g.add(Failed {
                outcome: "failed",
                status: Some(404),
                code: Some(6002),
                reason: None,
                message: "No such SIM (request r-1)",
                line: 500 + i,
                iccid: "x",
            });
        }
        for i in 0..28 {
            g.add(Failed {
                outcome: "failed",
                status: None,
                code: None,
                reason: Some("connection lost"),
                message: "gave up",
                line: 600 + i,
                iccid: "y",
            });
        }
        let top = g.top(10, 1000, "job.failures.csv");
        assert_eq!(top.len(), 3);
        assert_eq!(
            (top[0].count, top[0].label.as_str()),
            (360, "ICCID fails the Luhn check")
        );
        assert_eq!(top[0].samples.len(), SAMPLES);
        assert_eq!(
            top[0].samples[0],
            Sample {
                line: 2,
                iccid: "89440".into()
            }
        );
        assert!((top[0].percent - 36.0).abs() < 1e-9);
        assert_eq!(top[1].label, "connection lost");
        assert_eq!(top[2].label, "HTTP 404 error 6002");
        assert_eq!(top[2].message, "No such SIM");
        assert!(top[2].next_step.contains("simbulk run job.failures.csv"));
        let mut blocked = Groups::default();
        blocked.add(Failed {
            outcome: "failed",
            status: None,
            code: None,
            reason: Some(BLOCKED),
            message: "blocked: x",
            line: 3,
            iccid: "z",
        });
        let b = &blocked.top(1, 1, "f.csv")[0];
        assert_eq!(
            (b.outcome.as_str(), b.label.as_str()),
            ("blocked", "blocked")
        );
        assert!(b.next_step.contains("no order allows"), "{}", b.next_step);
        let mut many = Groups::default();
        for c in 0..1000 {
            many.add(Failed {
                outcome: "failed",
                status: Some(400),
                code: Some(c),
                reason: None,
                message: "m",
                line: 1,
                iccid: "i",
            });
        }
        assert!(many.map.len() <= MAX_GROUPS + 1);
    }
}
