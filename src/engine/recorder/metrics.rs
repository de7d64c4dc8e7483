//! `--metrics-file` from the engine's side: the recorder owns the rows' numbers, the client
//! the requests'; the recorder writes the file on the dispatcher's tick (every 5 s at most
//! often) and once at the end, off the rows' path.

use std::time::{Duration, Instant};

use crate::output::metrics::{Live, MetricsFile, Snapshot};

use super::Counts;

/// Between two writes of the metrics file (it is also the job's heartbeat).
const EVERY: Duration = Duration::from_secs(5);

/// The metrics file of a run and where its live numbers come from.
pub(crate) struct Sink {
    file: MetricsFile,
    live: Box<dyn Fn() -> Live + Send>,
    rows_total: u64,
    /// When the run must stop (seconds since the epoch).
    deadline: Option<f64>,
    started: Instant,
    /// Rows of the job done before this run.
    base: u64,
    last_row: Option<f64>,
    last_write: Option<Instant>,
    warned: bool,
}

impl Sink {
    pub(crate) fn new(
        file: MetricsFile,
        live: Box<dyn Fn() -> Live + Send>,
        rows_total: u64,
        base: u64,
        deadline: Option<Duration>,
    ) -> Self {
        Self {
            file,
            live,
            rows_total,
            deadline: deadline.map(|d| crate::clock::epoch_seconds() + d.as_secs_f64()),
            started: Instant::now(),
            base,
            last_row: None,
            last_write: None,
            warned: false,
        }
    }

    /// A row finished.
    pub(crate) fn row(&mut self) {
        self.last_row = Some(crate::clock::epoch_seconds());
    }

    /// Writes the file if it is due (`force`: now, the run's end).
    pub(crate) fn write(&mut self, c: &Counts, state: &'static str, exit: Option<u8>, force: bool) {
        if !force && self.last_write.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.last_write = Some(Instant::now());
        let done = c.job.total().saturating_sub(self.base);
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let left = self.rows_total.saturating_sub(c.job.total());
        let s = Snapshot {
            job: c.job,
            by_action: &c.by_action,
            retries: c.retries,
            live: (self.live)(),
            rows_total: self.rows_total,
            eta_seconds: (rate > 0.0 && exit.is_none()).then(|| left as f64 / rate),
            deadline: self.deadline,
            last_row: self.last_row,
            state,
            exit_code: exit,
            now: crate::clock::epoch_seconds(),
        };
        if let Err(e) = self.file.write(&s)
            && !self.warned
        {
            tracing::warn!("cannot write --metrics-file: {e}");
            self.warned = true;
        }
    }
}
