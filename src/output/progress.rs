//! Progress on a terminal (indicatif) or as a log line every 10 s elsewhere, and the log
//! writer that keeps log lines from tearing the bar.
//!
//! Guarantees: the bar draws only when stderr is a terminal; every log line goes through
//! [`LogWriter`], which suspends the bar while it writes.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::output::row::Tally;

fn active() -> &'static Mutex<Option<ProgressBar>> {
    static BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();
    BAR.get_or_init(|| Mutex::new(None))
}

/// A `tracing` writer to stderr that suspends the progress bar around each line.
#[derive(Clone, Copy, Default)]
pub(crate) struct LogWriter;

pub(crate) struct LogLine;

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = active().lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(b) => b.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine
    }
}

/// Clears the progress line and draws it no more until [`show`]: a question to the
/// operator is not drawn over.
pub(crate) fn hide() {
    if let Some(b) = active().lock().unwrap_or_else(|e| e.into_inner()).as_ref()
        && !b.is_hidden()
    {
        b.set_draw_target(ProgressDrawTarget::hidden());
        // A terminal target leaves its last drawing on screen: the bar's two lines go.
        let _ = std::io::stderr().write_all(b"\r\x1b[2K\x1b[1A\x1b[2K\r");
    }
}

/// Draws the progress line again after [`hide`].
pub(crate) fn show() {
    if let Some(b) = active().lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        b.set_draw_target(ProgressDrawTarget::stderr_with_hz(8));
    }
}

/// `--log-format json`: progress lines carry their numbers as fields (set once, at start).
static JSON: OnceLock<bool> = OnceLock::new();

/// Makes progress lines structured (`--log-format json`).
pub(crate) fn set_json(json: bool) {
    let _ = JSON.set(json);
}

/// Whether logs are JSON.
pub(crate) fn json() -> bool {
    JSON.get().copied().unwrap_or(false)
}

/// Progress of one run.
pub(crate) struct Progress {
    bar: ProgressBar,
    start: Instant,
    last_log: Instant,
    base: u64,
    /// When the run must stop (`--until`, `--max-duration`), as RFC 3339.
    deadline: Option<String>,
}

/// Between two plain-text progress lines.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl Progress {
    /// `total` rows in the job, `done` of them finished before this run.
    pub(crate) fn new(total: u64, done: u64) -> Self {
        let target = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ProgressDrawTarget::stderr_with_hz(8)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total.max(done)), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} rows  {rate}  eta {left}\n  {msg}",
            )
            .map(|s| {
                s.with_key("rate", |st: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&rate_text(st.per_sec()));
                })
                .with_key("left", |st: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&crate::clock::duration_text(st.eta()));
                })
            })
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(done);
        bar.reset_eta();
        if !bar.is_hidden() {
            *active().lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
        }
        Self {
            bar,
            start: Instant::now(),
            last_log: Instant::now(),
            base: done,
            deadline: None,
        }
    }

    /// Shows the run's deadline beside its ETA.
    pub(crate) fn with_deadline(mut self, at: Option<std::time::SystemTime>) -> Self {
        self.deadline = at.map(|t| crate::clock::rfc3339(t, crate::clock::Precision::Seconds));
        self
    }

    /// One more row finished; `tally` covers the whole job.
    pub(crate) fn update(&mut self, tally: &Tally, retries: u64, throttled: u64) {
        self.bar.set_position(tally.total());
        if self.bar.length().is_some_and(|l| tally.total() > l) {
            self.bar.set_length(tally.total());
        }
        let mut msg = format!("{}  retries {retries}  429s {throttled}", tally.text("  "));
        if let Some(d) = &self.deadline {
            msg += &format!("  deadline {d}");
        }
        if !self.bar.is_hidden() {
            self.bar.set_message(msg);
            return;
        }
        if self.last_log.elapsed() < LOG_EVERY {
            return;
        }
        self.last_log = Instant::now();
        let (done, total) = (tally.total(), self.bar.length().unwrap_or(0));
        let rate =
            done.saturating_sub(self.base) as f64 / self.start.elapsed().as_secs_f64().max(0.001);
        let eta = (rate > 0.0).then(|| total.saturating_sub(done) as f64 / rate);
        if json() {
            tracing::info!(
                rows_done = done,
                rows_total = total,
                rows_per_second = rate,
                ok = tally.ok,
                skipped = tally.skipped,
                failed = tally.failed,
                invalid = tally.invalid,
                pending = tally.pending,
                retries,
                throttled_429 = throttled,
                eta_seconds = eta,
                deadline = self.deadline.as_deref(),
                "progress"
            );
        } else {
            let eta = eta.map_or_else(
                || "?".to_owned(),
                |s| crate::clock::duration_text(Duration::from_secs_f64(s.min(1e9))),
            );
            tracing::info!("progress: {done}/{total} rows ({rate:.1} rows/s, eta {eta}); {msg}");
        }
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
        *active().lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
/// A rate as people read it: `4.9/s`, `37/s`, `1,250/s` (`-` before there is one).
pub(crate) fn rate_text(per_second: f64) -> String {
    if !per_second.is_finite() || per_second <= 0.0 {
        return "-".into();
    }
    if per_second < 10.0 {
        return format!("{per_second:.1}/s");
    }
    format!("{}/s", super::summary::thousands(per_second.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_counts_read_as_people_write_them() {
        assert_eq!(rate_text(3.7625), "3.8/s");
        assert_eq!(rate_text(37.4), "37/s");
        assert_eq!(rate_text(1_250.0), "1,250/s");
        assert_eq!(rate_text(0.0), "-");
        assert_eq!(rate_text(f64::NAN), "-");
    }
}
