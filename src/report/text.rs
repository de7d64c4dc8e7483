//! The report as text, for a terminal or a mail.

use std::fmt::Write as _;

use super::{Report, exit_text, minute_text, ms_text, span_text};
use crate::output::summary::thousands;

impl Report {
    pub(crate) fn to_text(&self) -> String {
        let mut s = String::new();
        let o = &self.outcomes;
        let _ = writeln!(s, "simbulk report: {}", self.file.display());
        if let Some((banner, key)) = self.kind_words() {
            let _ = writeln!(s, "  {banner}\n  {key}");
        }
        self.job_text(&mut s);
        let n = |v: u64| format!("{} ({})", thousands(v), self.pct(v));
        let _ = writeln!(
            s,
            "  rows:       {} (ok {}, skipped {}, failed {}, invalid {}{})",
            thousands(self.rows),
            n(o.ok),
            n(o.skipped),
            n(o.failed),
            n(o.invalid),
            if o.pending > 0 {
                format!(", pending {}", n(o.pending))
            } else {
                String::new()
            }
        );
        if self.duplicate_lines > 0 {
            let _ = writeln!(
                s,
                "  warning:    {} input lines appear more than once",
                thousands(self.duplicate_lines)
            );
        }
        self.time_text(&mut s);
        let _ = writeln!(s, "  asked:");
        for (what, n) in &self.changes {
            let _ = writeln!(s, "    {what:<40} {} rows", thousands(*n));
        }
        let _ = writeln!(s, "  by action:");
        for (a, c) in &self.by_action {
            let _ = writeln!(
                s,
                "    {a:<17} ok {:<9} skipped {:<9} failed {:<9} invalid {}",
                thousands(c.ok),
                thousands(c.skipped),
                thousands(c.failed),
                thousands(c.invalid)
            );
        }
        self.errors_text(&mut s);
        let _ = writeln!(
            s,
            "  requests per row: {}; retries (after a 5xx, a timeout or a lost connection): {}",
            self.attempts
                .iter()
                .map(|(a, n)| format!("{a}: {}", thousands(*n)))
                .collect::<Vec<_>>()
                .join(", "),
            thousands(self.repeats)
        );
        let steps = self.next_steps();
        if !steps.is_empty() {
            let _ = writeln!(s, "  next steps:");
            for step in steps {
                let _ = writeln!(s, "    - {step}");
            }
        }
        s
    }

    /// The job: input, change, operator, version, runs, and whether it is complete.
    fn job_text(&self, s: &mut String) {
        let j = match &self.job {
            Ok(j) => j,
            Err(why) => {
                let _ = writeln!(s, "  job:        {why}");
                if !self.change_refs.is_empty() {
                    let refs: Vec<_> = self.change_refs.iter().cloned().collect();
                    let _ = writeln!(s, "  change:     {}", refs.join(", "));
                }
                return;
            }
        };
        let h = &j.header;
        if let Some(i) = &h.input {
            let _ = writeln!(s, "  input:      {}", i.display());
        }
        let _ = writeln!(
            s,
            "  change:     {}   operator: {}   simbulk {}",
            h.change_ref.as_deref().unwrap_or("(none given)"),
            h.operator.as_deref().unwrap_or("?"),
            h.version.as_deref().unwrap_or("?")
        );
        let state = match j.finished {
            Some(c) => format!("complete ({})", exit_text(c)),
            None => "NOT complete: resume it (see next steps)".into(),
        };
        let _ = writeln!(s, "  job:        {state}; {} run(s)", j.runs.len());
        let mut prev_end = None;
        for (i, r) in j.runs.iter().enumerate() {
            let start = r.started_ms.map_or_else(|| "?".into(), ms_text);
            let end = match (r.ended_ms, r.exit_code) {
                (Some(e), Some(c)) => format!("{}, exit {c} ({})", ms_text(e), exit_text(c)),
                _ => "no end recorded (killed, or running)".into(),
            };
            let gap = match (prev_end, r.started_ms) {
                (Some(a), Some(b)) if b > a => format!(" after a pause of {}", span_text(b - a)),
                _ => String::new(),
            };
            let _ = writeln!(s, "    run {}: {start} to {end}{gap}", i + 1);
            if let Some(st) = r.stats {
                let _ = writeln!(
                    s,
                    "           {} requests, {} retries, {} × 429, API answers p50 {:.1} ms, p99 {:.1} ms",
                    thousands(st.requests),
                    thousands(st.retries),
                    thousands(st.throttled),
                    st.api_p50_ms,
                    st.api_p99_ms
                );
            }
            prev_end = r.ended_ms;
        }
    }

    fn time_text(&self, s: &mut String) {
        let (Some(a), Some(b)) = (self.first, self.last) else {
            return;
        };
        let active = self.per_minute.len() as u64;
        let (peak_at, peak) = self
            .per_minute
            .iter()
            .map(|(m, c)| (*m, c.outcomes.total()))
            .max_by_key(|x| x.1)
            .unwrap_or((0, 0));
        let _ = writeln!(
            s,
            "  time:       {} to {} UTC; {} {} with activity; busiest minute {} ({} rows)",
            minute_text(a / 60),
            minute_text(b / 60),
            thousands(active),
            if active == 1 { "minute" } else { "minutes" },
            minute_text(peak_at),
            thousands(peak)
        );
    }

    fn errors_text(&self, s: &mut String) {
        let groups = self.top_errors();
        if groups.is_empty() {
            return;
        }
        let _ = writeln!(s, "  errors:");
        for g in groups.iter().take(20) {
            let samples: Vec<String> = g
                .samples
                .iter()
                .map(|x| format!("{} ({})", x.line, x.iccid))
                .collect();
            let _ = writeln!(
                s,
                "    {:>9} × {}: {} ({:.1} %): {}",
                thousands(g.count),
                g.outcome,
                g.label,
                g.percent,
                g.message
            );
            let _ = writeln!(
                s,
                "                e.g. {}",
                crate::output::summary::lines_text(&samples)
            );
            let _ = writeln!(s, "                next: {}", g.next_step);
        }
    }
}
