//! `simbulk report <results.csv>`: the morning-after summary of a run (resumed runs
//! included): counts by outcome and action, error codes with their messages, throughput over
//! time, attempts — as text, and as one self-contained HTML page (inline SVG, no scripts, no
//! external assets) that can be opened or mailed.
//!
//! Guarantees: the results file is streamed (memory grows with the number of distinct error
//! codes and minutes of run time, not with rows); every text taken from the file is
//! HTML-escaped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use fixedbitset::FixedBitSet;

/// Counts by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub ok: u64,
    pub skipped: u64,
    pub failed: u64,
    pub invalid: u64,
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

    pub fn total(&self) -> u64 {
        self.ok + self.skipped + self.failed + self.invalid
    }
}

/// An error's HTTP status and code (or, for invalid rows, the start of the reason).
pub type ErrorKey = (String, String);

/// What a results file says.
#[derive(Debug, Default)]
pub struct Report {
    pub file: PathBuf,
    pub rows: u64,
    pub outcomes: Counts,
    pub by_action: BTreeMap<String, Counts>,
    /// (status, code) → (count, first message).
    pub errors: BTreeMap<ErrorKey, (u64, String)>,
    /// Rows finished per minute (Unix minute).
    pub per_minute: BTreeMap<u64, u64>,
    pub attempts: BTreeMap<u32, u64>,
    pub duplicate_lines: u64,
    /// Rows whose `line` is not a line number simbulk writes.
    pub bad_lines: u64,
    pub first: Option<u64>,
    pub last: Option<u64>,
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
pub enum ReportError {
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

pub fn read(path: &Path) -> Result<Report, ReportError> {
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
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(c_line), Some(c_outcome)) = (col("line"), col("outcome")) else {
        return Err(ReportError::NotResults {
            path: path.to_owned(),
        });
    };
    let (c_action, c_status, c_code, c_msg, c_attempts, c_at) = (
        col("action"),
        col("http_status"),
        col("error_code"),
        col("message"),
        col("attempts"),
        col("finished_at"),
    );
    let mut rep = Report {
        file: path.to_owned(),
        ..Report::default()
    };
    let mut seen = FixedBitSet::new();
    let mut rec = csv::StringRecord::new();
    loop {
        match r.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(e)),
        }
        let get = |c: Option<usize>| c.and_then(|i| rec.get(i)).unwrap_or("");
        rep.rows += 1;
        // A line past the bound (no job has a billion rows) is not a row of a job: it is
        // counted, not remembered.
        match get(Some(c_line)).parse::<usize>() {
            Ok(l) if l <= MAX_LINE => {
                if l >= seen.len() {
                    seen.grow((l + 1).max(seen.len() * 2).min(MAX_LINE + 1));
                }
                if seen.put(l) {
                    rep.duplicate_lines += 1;
                }
            }
            _ => rep.bad_lines += 1,
        }
        let outcome = get(Some(c_outcome));
        rep.outcomes.add(outcome);
        let action = unguard(get(c_action));
        let action = if outcome == "invalid" {
            "(invalid rows)"
        } else {
            action
        };
        bump(
            &mut rep.by_action,
            action.chars().take(40).collect(),
            "(other)".into(),
            64,
        )
        .add(outcome);
        if outcome == "failed" || outcome == "invalid" {
            let msg = unguard(get(c_msg));
            let msg = msg.split(" (request ").next().unwrap_or("");
            let (status, code) = (get(c_status).to_owned(), get(c_code).to_owned());
            // Invalid rows have no code: group them by the first words of their reason.
            let key_code = if code.is_empty() && status.is_empty() {
                msg.split([';', '"'])
                    .next()
                    .unwrap_or("")
                    .trim()
                    .chars()
                    .take(60)
                    .collect()
            } else {
                code
            };
            let e = bump(
                &mut rep.errors,
                (status, key_code),
                (String::new(), "(other)".into()),
                256,
            );
            if e.1.is_empty() {
                e.1 = msg.chars().take(200).collect();
            }
            e.0 += 1;
        }
        if let Ok(a) = get(c_attempts).parse::<u32>() {
            *rep.attempts.entry(a.min(MAX_ATTEMPTS)).or_default() += 1;
        }
        if let Ok(t) = humantime::parse_rfc3339_weak(get(c_at))
            && let Ok(d) = t.duration_since(std::time::UNIX_EPOCH)
        {
            let s = d.as_secs();
            let slots = rep.per_minute.len();
            if slots < MAX_MINUTES || rep.per_minute.contains_key(&(s / 60)) {
                *rep.per_minute.entry(s / 60).or_default() += 1;
            }
            rep.first = Some(rep.first.map_or(s, |f| f.min(s)));
            rep.last = Some(rep.last.map_or(s, |l| l.max(s)));
        }
    }
    Ok(rep)
}

fn minute_text(m: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(m * 60);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.get(..16).unwrap_or(&s).replace('T', " ")
}

impl Report {
    fn top_errors(&self) -> Vec<(&ErrorKey, &(u64, String))> {
        let mut v: Vec<_> = self.errors.iter().collect();
        v.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
        v
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let o = &self.outcomes;
        let _ = writeln!(s, "simbulk report: {}", self.file.display());
        let _ = writeln!(
            s,
            "  rows:       {} (ok {}, skipped {}, failed {}, invalid {})",
            self.rows, o.ok, o.skipped, o.failed, o.invalid
        );
        if self.duplicate_lines > 0 {
            let _ = writeln!(
                s,
                "  warning:    {} input lines appear more than once",
                self.duplicate_lines
            );
        }
        if let (Some(a), Some(b)) = (self.first, self.last) {
            let peak = self.per_minute.values().copied().max().unwrap_or(0);
            let _ = writeln!(
                s,
                "  time:       {} to {} UTC; {} minutes with activity; busiest minute {} rows ({:.1} rows/s)",
                minute_text(a / 60),
                minute_text(b / 60),
                self.per_minute.len(),
                peak,
                peak as f64 / 60.0
            );
        }
        let _ = writeln!(s, "  by action:");
        for (a, c) in &self.by_action {
            let _ = writeln!(
                s,
                "    {a:<17} ok {:<7} skipped {:<7} failed {:<7} invalid {}",
                c.ok, c.skipped, c.failed, c.invalid
            );
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "  errors:");
            for ((status, code), (n, msg)) in self.top_errors().into_iter().take(20) {
                let what = match (status.as_str(), code.as_str()) {
                    ("", c) => format!("invalid: {c}"),
                    (h, "") => format!("HTTP {h}"),
                    (_, c) => format!("error {c}"),
                };
                let _ = writeln!(s, "    {n:>7} × {what}: {msg}");
            }
        }
        let _ = writeln!(
            s,
            "  attempts:   {}",
            self.attempts
                .iter()
                .map(|(a, n)| format!("{a}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        s
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

    pub fn to_html(&self) -> String {
        let o = &self.outcomes;
        let mut h = String::new();
        let _ = write!(
            h,
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>simbulk report: {}</title>",
            esc(&self.file.display().to_string())
        );
        h += "<style>body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}h1{font-size:20px}h2{font-size:16px;margin-top:1.6em}table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}.ok{fill:#2e7d32;background:#2e7d32}.skipped{fill:#9e9e9e;background:#9e9e9e}.failed{fill:#c62828;background:#c62828}.invalid{fill:#ef6c00;background:#ef6c00}.key{display:inline-block;width:10px;height:10px;margin-right:4px}svg text{font:11px system-ui,sans-serif;fill:#444}</style></head><body>";
        let _ = write!(
            h,
            "<h1>simbulk report</h1><p>{}</p>",
            esc(&self.file.display().to_string())
        );
        let _ = write!(
            h,
            "<h2>Outcomes</h2><p id=\"totals\"><b>{}</b> rows: <span class=\"key ok\"></span>ok <b id=\"ok\">{}</b> &nbsp; <span class=\"key skipped\"></span>skipped <b id=\"skipped\">{}</b> &nbsp; <span class=\"key failed\"></span>failed <b id=\"failed\">{}</b> &nbsp; <span class=\"key invalid\"></span>invalid <b id=\"invalid\">{}</b></p>",
            self.rows, o.ok, o.skipped, o.failed, o.invalid
        );
        // A stacked bar of the outcomes.
        let total = o.total().max(1) as f64;
        h += "<svg width=\"800\" height=\"28\" role=\"img\" aria-label=\"outcomes\">";
        let mut x = 0.0;
        for (class, n) in [
            ("ok", o.ok),
            ("skipped", o.skipped),
            ("failed", o.failed),
            ("invalid", o.invalid),
        ] {
            let w = 800.0 * n as f64 / total;
            if n > 0 {
                let _ = write!(
                    h,
                    "<rect class=\"{class}\" x=\"{x:.1}\" y=\"0\" width=\"{w:.1}\" height=\"28\"><title>{class}: {n}</title></rect>"
                );
            }
            x += w;
        }
        h += "</svg>";
        if self.duplicate_lines > 0 {
            let _ = write!(
                h,
                "<p><b>Warning:</b> {} input lines appear more than once.</p>",
                self.duplicate_lines
            );
        }
        h += "<h2>By action</h2><table><tr><th>action</th><th>ok</th><th>skipped</th><th>failed</th><th>invalid</th></tr>";
        for (a, c) in &self.by_action {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(a),
                c.ok,
                c.skipped,
                c.failed,
                c.invalid
            );
        }
        h += "</table>";
        if !self.errors.is_empty() {
            h += "<h2>Errors</h2><table><tr><th>count</th><th>HTTP</th><th>error code</th><th>message (first seen)</th></tr>";
            for ((status, code), (n, msg)) in self.top_errors().into_iter().take(50) {
                let _ = write!(
                    h,
                    "<tr><td class=\"n\">{n}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(status),
                    esc(code),
                    esc(msg)
                );
            }
            h += "</table>";
        }
        let (width, buckets) = self.throughput_buckets();
        if !buckets.is_empty() {
            let max = buckets.iter().map(|b| b.1).max().unwrap_or(1).max(1);
            let bw = 760.0 / buckets.len() as f64;
            let _ = write!(
                h,
                "<h2>Throughput over time</h2><p>rows finished per {} (UTC); gaps are pauses between runs</p>",
                if width == 1 {
                    "minute".to_owned()
                } else {
                    format!("{width} minutes")
                }
            );
            h += "<svg width=\"820\" height=\"230\" role=\"img\" aria-label=\"throughput\">";
            for (i, (m, n)) in buckets.iter().enumerate() {
                let bh = 180.0 * *n as f64 / max as f64;
                let _ = write!(
                    h,
                    "<rect class=\"ok\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\"><title>{}: {n} rows</title></rect>",
                    40.0 + i as f64 * bw,
                    190.0 - bh,
                    (bw - 1.0).max(1.0),
                    minute_text(*m)
                );
            }
            let _ = write!(
                h,
                "<text x=\"0\" y=\"14\">{max}</text><text x=\"0\" y=\"190\">0</text><text x=\"40\" y=\"210\">{}</text><text x=\"640\" y=\"210\">{}</text></svg>",
                minute_text(buckets[0].0),
                minute_text(buckets[buckets.len() - 1].0)
            );
        }
        if !self.attempts.is_empty() {
            let max = self.attempts.values().copied().max().unwrap_or(1).max(1);
            h += "<h2>Attempts per row</h2><svg width=\"820\" height=\"";
            let _ = write!(
                h,
                "{}\" role=\"img\" aria-label=\"attempts\">",
                22 * self.attempts.len() + 4
            );
            for (i, (a, n)) in self.attempts.iter().enumerate() {
                let w = 600.0 * *n as f64 / max as f64;
                let y = 22 * i;
                let _ = write!(
                    h,
                    "<text x=\"0\" y=\"{}\">{a}</text><rect class=\"skipped\" x=\"40\" y=\"{y}\" width=\"{w:.1}\" height=\"18\"></rect><text x=\"{:.1}\" y=\"{}\">{n}</text>",
                    y + 14,
                    46.0 + w,
                    y + 14
                );
            }
            h += "</svg>";
        }
        h += "<p style=\"color:#888\">Generated by simbulk report.</p></body></html>\n";
        h
    }
}

/// Escapes text for HTML content and attributes.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o += "&amp;",
            '<' => o += "&lt;",
            '>' => o += "&gt;",
            '"' => o += "&quot;",
            '\'' => o += "&#39;",
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_unguards() {
        assert_eq!(
            esc("<script>\"x\" & 'y'"),
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
