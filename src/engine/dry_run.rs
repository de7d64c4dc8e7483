//! `--dry-run`: every row read and validated, and the numbers to plan the job by: rows per
//! action, invalid rows grouped by reason (with sample lines), ICCIDs with more than one
//! row, and the calls and time the job will take at the given `--rate` (in windows of
//! `--until`/`--max-duration` when one is set). Nothing is sent and nothing is written.
//!
//! Guarantees: streamed, in bounded memory: repeats are looked for among the first
//! [`MAX_DISTINCT`] distinct ICCIDs (about 7 MiB), and the report says how many rows past
//! that bound were not checked; the exit code is that of a run's validation (1 when a row
//! is invalid, else 0).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::exit;
use crate::input::{self, ActionKind};
use crate::output::groups::Groups;
use crate::output::summary::thousands;

use super::config::{Error, JobConfig};

/// First lines of repeated ICCIDs shown.
const REPEATS_SHOWN: usize = 5;

/// Distinct ICCIDs remembered to find repeats (a bound on memory).
pub(crate) const MAX_DISTINCT: usize = 200_000;

/// What a dry run counted.
#[derive(Debug, Default)]
struct Counted {
    total: u64,
    invalid: u64,
    per_action: BTreeMap<&'static str, u64>,
    groups: Groups,
    /// ICCID key → its first line.
    first_line: HashMap<u128, u64>,
    /// Rows whose ICCID came before, and the first few as (line, first line, ICCID).
    repeated: u64,
    repeats: Vec<(u64, u64, String)>,
    /// Rows whose ICCID was not checked for an earlier row: the bound was reached.
    unchecked: u64,
    /// Rows that read the SIM's attributes before their write (delete-attribute).
    list_first: u64,
}

/// `--dry-run`: validates every row and reports; sends nothing, writes nothing.
pub(crate) fn dry_run(cfg: &JobConfig) -> Result<(String, crate::exit::Code), Error> {
    let (_, mut rows) = input::reader::open(&cfg.input, cfg.sheet.as_deref(), &cfg.defaults)?;
    let mut c = Counted::default();
    for item in rows.by_ref() {
        let item = item?;
        c.total += 1;
        match &item.parsed {
            Ok(r) => {
                let kind = r.action.kind();
                *c.per_action.entry(kind.name()).or_default() += 1;
                c.list_first += u64::from(kind == ActionKind::DeleteAttribute);
                let full = c.first_line.len() >= MAX_DISTINCT;
                match c.first_line.entry(r.iccid.key()) {
                    std::collections::hash_map::Entry::Occupied(first) => {
                        c.repeated += 1;
                        if c.repeats.len() < REPEATS_SHOWN {
                            c.repeats
                                .push((item.line, *first.get(), r.iccid.as_str().to_owned()));
                        }
                    }
                    std::collections::hash_map::Entry::Vacant(_) if full => {
                        c.unchecked += 1;
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(item.line);
                    }
                }
            }
            Err(why) => {
                c.invalid += 1;
                let iccid = item.fields.first().map_or("", String::as_str);
                c.groups.add(crate::output::groups::Failed {
                    outcome: "invalid",
                    status: None,
                    code: None,
                    reason: Some(why.reason.label()),
                    message: &why.message,
                    line: item.line,
                    iccid,
                });
            }
        }
    }
    let mut out = c.text(cfg);
    if rows.blank > 0 {
        out += &format!("  blank rows skipped: {}\n", thousands(rows.blank));
    }
    out += "nothing was sent.\n";
    let code = if c.invalid == 0 {
        exit::OK
    } else {
        exit::ROWS_FAILED
    };
    Ok((out, code))
}

impl Counted {
    fn text(&self, cfg: &JobConfig) -> String {
        let valid = self.total - self.invalid;
        let mut out = format!(
            "dry run of {}: {} rows, {} valid, {} invalid\n",
            cfg.input.display(),
            thousands(self.total),
            thousands(valid),
            thousands(self.invalid)
        );
        for (a, n) in &self.per_action {
            out += &format!("  {a:<17} {}\n", thousands(*n));
        }
        let groups = self.groups.top(usize::MAX, self.total, "the input");
        if !groups.is_empty() {
            out += "invalid rows by reason:\n";
            for g in &groups {
                let lines: Vec<String> = g.samples.iter().map(|s| s.line.to_string()).collect();
                out += &format!(
                    "  {:>9} × {} ({:.1} %), e.g. {}: {}\n",
                    thousands(g.count),
                    g.label,
                    g.percent,
                    crate::output::summary::lines_text(&lines),
                    g.message
                );
            }
        }
        if self.repeated > 0 {
            out += &format!(
                "repeated ICCIDs: {} rows name an ICCID an earlier row names (they run after it, in file order); first:\n",
                thousands(self.repeated)
            );
            for (line, first, iccid) in &self.repeats {
                out += &format!("  line {line}: {iccid} (first on line {first})\n");
            }
        }
        if self.unchecked > 0 {
            out += &format!(
                "repeated ICCIDs were looked for among the first {} distinct ICCIDs (a bound on memory): {} later rows with other ICCIDs were not checked\n",
                thousands(MAX_DISTINCT as u64),
                thousands(self.unchecked)
            );
        }
        out += &estimate(cfg, valid, self.list_first);
        out
    }
}

/// The calls of `valid` rows and the time they take at `--rate`: on Eseye one write per
/// row, a read before each of `list_first` rows, and one list call per 100 rows
/// (`--no-plan`: a read per row instead); on Super SIM and emnify a lookup per row, and a
/// write per row (Super SIM) or per batch (emnify); rows found already done cost less.
fn estimate(cfg: &JobConfig, valid: u64, list_first: u64) -> String {
    if valid == 0 {
        return String::new();
    }
    let (reads, writes) = match cfg.api {
        crate::api::Api::EseyeV2 if cfg.plan => (valid.div_ceil(100) + list_first, valid),
        crate::api::Api::EseyeV2 => (valid, valid),
        // One lookup a row (no list by ICCIDs); Super SIM's changes settle later, and the
        // polls of `--wait-active` come on top.
        crate::api::Api::SuperSim => (valid, valid),
        // One lookup a row; the writes in bulk calls as large as the concurrency lets them.
        crate::api::Api::Emnify => (
            valid,
            valid.div_ceil(cfg.concurrency.clamp(1, crate::api::emnify::MAX_BATCH) as u64),
        ),
    };
    let calls = writes + reads;
    let mut out = format!(
        "estimate: {} rows ≈ {} calls at most (rows already in state cost less)",
        thousands(valid),
        thousands(calls)
    );
    match cfg.pacing.rate.filter(|r| *r > 0.0) {
        Some(rate) => {
            let secs = (calls as f64 / rate).ceil();
            let d = Duration::from_secs_f64(secs.min(1e10));
            out += &format!(" ≈ {} at {rate}/s", minutes_text(d));
            let window = cfg.stop_within();
            if let Some(w) = window.filter(|w| !w.is_zero() && *w < d) {
                let n = d.as_secs_f64() / w.as_secs_f64();
                out += &format!(": {} windows of {}", n.ceil(), minutes_text(w));
            }
        }
        None => out += " (no --rate: as fast as the provider answers)",
    }
    out.push('\n');
    out
}

/// A duration to the minute (`11 h 7 min`), or in seconds under a minute.
fn minutes_text(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600).div_ceil(60)) {
        _ if s < 60 => format!("{s} s"),
        (h, 60) => format!("{} h", h + 1),
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_calls_time_and_windows() {
        let mut cfg = JobConfig::new("x.csv".into());
        cfg.pacing.rate = Some(10.0);
        cfg.until = Some(Duration::from_secs(4 * 3600));
        let e = estimate(&cfg, 400_000, 0);
        assert!(e.contains("400,000 rows ≈ 404,000 calls"), "{e}");
        assert!(e.contains("≈ 11 h 14 min at 10/s: 3 windows of 4 h"), "{e}");
        cfg.pacing.rate = None;
        assert!(estimate(&cfg, 5, 0).contains("no --rate"));
        assert_eq!(minutes_text(Duration::from_secs(59)), "59 s");
        assert_eq!(minutes_text(Duration::from_secs(3599)), "1 h");
    }

    #[test]
    fn each_provider_is_estimated_by_its_own_calls() {
        let mut cfg = JobConfig::new("x.csv".into());
        cfg.api = crate::api::Api::SuperSim;
        assert!(
            estimate(&cfg, 1000, 0).contains("1,000 rows ≈ 2,000 calls"),
            "a lookup and a write a row"
        );
        cfg.api = crate::api::Api::Emnify;
        cfg.concurrency = 2000;
        let e = estimate(&cfg, 10_000, 0);
        assert!(
            e.contains("10,000 rows ≈ 10,005 calls"),
            "lookups and 5 bulk calls: {e}"
        );
    }

    #[test]
    fn repeats_are_looked_for_within_a_bound_and_the_rest_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("many.csv");
        let mut body = String::from("iccid,action\n");
        let id = |i: usize| crate::input::iccid::with_check_digit(&format!("893100{i:013}"));
        for i in 0..MAX_DISTINCT + 10 {
            body += &id(i);
            body += ",activate\n";
        }
        // A repeat of the first row, and one of a row past the bound (not found).
        body += &format!("{},activate\n{},activate\n", id(0), id(MAX_DISTINCT + 1));
        std::fs::write(&input, body).unwrap();
        let (text, code) = dry_run(&JobConfig::new(input)).unwrap();
        assert_eq!(code, exit::OK);
        assert!(text.contains("repeated ICCIDs: 1 rows"), "{text}");
        assert!(text.contains("first 200,000 distinct ICCIDs"), "{text}");
        assert!(text.contains(": 11 later rows"), "{text}");
    }
}
