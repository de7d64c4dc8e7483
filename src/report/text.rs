//! The report as text, for a terminal or a mail.

use std::fmt::Write as _;

use super::{Report, minute_text};

impl Report {
    pub(crate) fn to_text(&self) -> String {
        let mut s = String::new();
        let o = &self.outcomes;
        let _ = writeln!(s, "simbulk report: {}", self.file.display());
        if self.plan {
            let _ = writeln!(
                s,
                "  a plan of simbulk apply: ok = calls to make, failed = changes blocked"
            );
        }
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
}
