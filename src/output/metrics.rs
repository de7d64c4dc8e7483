//! `--metrics-file`: the job's numbers in the Prometheus text format, for the node exporter's
//! textfile collector, rewritten every few seconds and at the end (it is also the job's
//! heartbeat: `simbulk_heartbeat_timestamp_seconds`).
//!
//! Guarantees: the file is replaced whole (written beside it, then renamed), so a reader never
//! sees half of it; every label value is escaped as the format requires; names follow the
//! Prometheus conventions (units in the name, `_total` for counters).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::output::row::Tally;

/// Numbers the API client keeps.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Live {
    pub(crate) writes: u64,
    pub(crate) reads: u64,
    pub(crate) lists: u64,
    /// Answers by class: 2xx, 4xx, 5xx, none (transport failures).
    pub(crate) answers: [u64; 4],
    pub(crate) throttled: u64,
    /// The rate the job asked for and the rate it goes at now (requests per second).
    pub(crate) target_rate: Option<f64>,
    pub(crate) current_rate: Option<f64>,
    /// The share of the account's budget (1 when alone).
    pub(crate) share: f64,
    /// When the last call answered without a 429 or 5xx (seconds since the epoch).
    pub(crate) last_success: Option<f64>,
}

/// A job's numbers at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot<'a> {
    pub(crate) job: Tally,
    pub(crate) by_action: &'a BTreeMap<String, Tally>,
    pub(crate) retries: u64,
    pub(crate) live: Live,
    pub(crate) rows_total: u64,
    pub(crate) eta_seconds: Option<f64>,
    pub(crate) deadline: Option<f64>,
    pub(crate) last_row: Option<f64>,
    /// `running`, `stopping`, `finished` or `halted`.
    pub(crate) state: &'static str,
    pub(crate) exit_code: Option<u8>,
    pub(crate) now: f64,
}

/// The metrics file of a job.
#[derive(Debug)]
pub(crate) struct MetricsFile {
    path: PathBuf,
    /// `job="…",change_ref="…"`.
    labels: String,
}

/// A label value as the text format wants it.
fn escape(v: &str) -> String {
    v.chars()
        .take(200)
        .flat_map(|c| match c {
            '\\' => vec!['\\', '\\'],
            '"' => vec!['\\', '"'],
            '\n' => vec!['\\', 'n'],
            c => vec![c],
        })
        .collect()
}

impl MetricsFile {
    pub(crate) fn new(path: PathBuf, input: &Path, change_ref: Option<&str>) -> Self {
        let name = input.file_name().map_or_else(
            || input.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut labels = format!("job=\"{}\"", escape(&name));
        if let Some(c) = change_ref {
            labels += &format!(",change_ref=\"{}\"", escape(c));
        }
        Self { path, labels }
    }

    /// The text of `s`.
    pub(crate) fn render(&self, s: &Snapshot<'_>) -> String {
        let mut t = String::new();
        self.counters(&mut t, s);
        self.gauges(&mut t, s);
        t
    }

    /// One metric: its help, its type, and a line per label set.
    fn metric(&self, t: &mut String, m: Metric<'_>, rows: Vec<(String, f64)>) {
        let Metric { name, kind, help } = m;
        let _ = writeln!(t, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (extra, v) in rows {
            let sep = if extra.is_empty() { "" } else { "," };
            let _ = writeln!(t, "{name}{{{}{sep}{extra}}} {v}", self.labels);
        }
    }

    fn counters(&self, t: &mut String, s: &Snapshot<'_>) {
        let outcomes = |t: &Tally| {
            [
                ("ok", t.ok),
                ("skipped", t.skipped),
                ("failed", t.failed),
                ("invalid", t.invalid),
                ("pending", t.pending),
            ]
        };
        let mut rows = Vec::new();
        for (action, tally) in s.by_action {
            for (o, n) in outcomes(tally) {
                rows.push((
                    format!("outcome=\"{o}\",action=\"{}\"", escape(action)),
                    n as f64,
                ));
            }
        }
        self.metric(
            t,
            Metric {
                name: "simbulk_rows_total",
                kind: "counter",
                help: "Rows finished by this run, by outcome and action.",
            },
            rows,
        );
        let job = outcomes(&s.job)
            .iter()
            .map(|(o, n)| (format!("outcome=\"{o}\""), *n as f64))
            .collect();
        self.metric(
            t,
            Metric {
                name: "simbulk_job_rows",
                kind: "gauge",
                help: "Rows of the whole job finished so far (earlier runs included), by outcome.",
            },
            job,
        );
        self.traffic(t, s);
    }

    /// Requests, answers, 429s and retries.
    fn traffic(&self, t: &mut String, s: &Snapshot<'_>) {
        let lv = &s.live;
        let kinds = [("write", lv.writes), ("read", lv.reads), ("list", lv.lists)]
            .iter()
            .map(|(k, n)| (format!("kind=\"{k}\""), *n as f64))
            .collect();
        self.metric(
            t,
            Metric {
                name: "simbulk_requests_total",
                kind: "counter",
                help: "Requests sent by this run, by kind (retries included, token requests apart).",
            },
            kinds,
        );
        let classes = ["2xx", "4xx", "5xx", "none"]
            .iter()
            .zip(lv.answers)
            .map(|(c, n)| (format!("class=\"{c}\""), n as f64))
            .collect();
        self.metric(
            t,
            Metric {
                name: "simbulk_responses_total",
                kind: "counter",
                help: "Answers by status class (none: the connection failed or timed out).",
            },
            classes,
        );
        self.metric(
            t,
            Metric {
                name: "simbulk_throttled_total",
                kind: "counter",
                help: "429 answers.",
            },
            vec![(String::new(), lv.throttled as f64)],
        );
        self.metric(
            t,
            Metric {
                name: "simbulk_retries_total",
                kind: "counter",
                help: "Requests repeated after a 5xx, a timeout or a lost connection.",
            },
            vec![(String::new(), s.retries as f64)],
        );
    }

    fn gauges(&self, t: &mut String, s: &Snapshot<'_>) {
        let lv = &s.live;
        let left = s.rows_total.saturating_sub(s.job.total()) as f64;
        let gauges: [(&str, &str, Option<f64>); 10] = [
            (
                "simbulk_rate_target_requests_per_second",
                "The rate asked for (--rate).",
                lv.target_rate,
            ),
            (
                "simbulk_rate_current_requests_per_second",
                "The rate the job goes at now (after 429s and the account's share).",
                lv.current_rate,
            ),
            (
                "simbulk_rate_share_ratio",
                "This job's share of its account's rate budget (1: alone).",
                Some(lv.share),
            ),
            (
                "simbulk_rows_remaining",
                "Rows of the job not finished yet (from the input's lines).",
                Some(left),
            ),
            (
                "simbulk_eta_seconds",
                "Time to finish the job at this run's pace.",
                s.eta_seconds,
            ),
            (
                "simbulk_deadline_timestamp_seconds",
                "When --until/--max-duration stops the run.",
                s.deadline,
            ),
            (
                "simbulk_last_row_timestamp_seconds",
                "When the last row finished.",
                s.last_row,
            ),
            (
                "simbulk_last_success_timestamp_seconds",
                "When the last call answered without a 429 or a 5xx.",
                lv.last_success,
            ),
            (
                "simbulk_heartbeat_timestamp_seconds",
                "When this file was written (every 5 s while the job runs).",
                Some(s.now),
            ),
            (
                "simbulk_exit_code",
                "The job's exit code, once it has ended.",
                s.exit_code.map(f64::from),
            ),
        ];
        for (name, help, v) in gauges {
            if let Some(v) = v {
                self.metric(
                    t,
                    Metric {
                        name,
                        kind: "gauge",
                        help,
                    },
                    vec![(String::new(), v)],
                );
            }
        }
        let states = ["running", "stopping", "finished", "halted"]
            .iter()
            .map(|st| {
                (
                    format!("state=\"{st}\""),
                    f64::from(u8::from(*st == s.state)),
                )
            })
            .collect();
        self.metric(
            t,
            Metric {
                name: "simbulk_job_state",
                kind: "gauge",
                help: "The job's state: 1 for the current one.",
            },
            states,
        );
    }

    /// Replaces the file with `s` (a temporary file beside it, renamed over it).
    pub(crate) fn write(&self, s: &Snapshot<'_>) -> std::io::Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".simbulk-metrics")
            .tempfile_in(dir)?;
        tmp.write_all(self.render(s).as_bytes())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
        tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// A metric's name, Prometheus type and help text.
struct Metric<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_metrics_with_escaped_values() {
        let f = MetricsFile::new(
            "m.prom".into(),
            Path::new("/x/night \"1\".csv"),
            Some("CHG-1"),
        );
        let mut by = BTreeMap::new();
        by.insert(
            "activate".to_owned(),
            Tally {
                ok: 3,
                failed: 1,
                ..Tally::default()
            },
        );
        let s = Snapshot {
            job: Tally {
                ok: 5,
                failed: 1,
                ..Tally::default()
            },
            by_action: &by,
            retries: 2,
            live: Live {
                writes: 4,
                share: 1.0,
                ..Live::default()
            },
            rows_total: 10,
            eta_seconds: Some(2.0),
            deadline: None,
            last_row: Some(1.0),
            state: "running",
            exit_code: None,
            now: 5.0,
        };
        let t = f.render(&s);
        assert!(t.contains(r#"simbulk_rows_total{job="night \"1\".csv",change_ref="CHG-1",outcome="ok",action="activate"} 3"#), "{t}");
        assert!(
            t.contains(r#"simbulk_rows_remaining{job="night \"1\".csv",change_ref="CHG-1"} 4"#),
            "{t}"
        );
        assert!(t.contains(r#"state="running"} 1"#) && t.contains(r#"state="halted"} 0"#));
        assert!(
            !t.contains("simbulk_exit_code{"),
            "no exit code while running"
        );
    }
}
