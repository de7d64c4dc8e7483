//! The single owner of every output of a run: results, failures, checkpoint journal,
//! progress and counters. Workers never touch a file.
//!
//! Guarantees: for each finished row the results (and failures) bytes are handed to the
//! operating system before the journal record that vouches for them; durability is batched
//! (`fsync` of results, then failures, then journal, at most every `sync_every`, and at the
//! end), so a crash at any instant leaves a journal whose records all point inside the
//! output files.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::checkpoint::{Journal, Tally};
use crate::output::progress::Progress;
use crate::output::summary::{ErrorCount, ErrorTally};
use crate::output::{FailuresFile, ResultsFile};

use super::outcome::{RowResult, Verdict};

/// Rows buffered before a flush to the OS even if more completions are waiting.
const FLUSH_ROWS: usize = 256;
/// Longest a finished row waits in memory before it is handed to the OS.
const FLUSH_AFTER: Duration = Duration::from_millis(20);

pub struct Recorder {
    results: ResultsFile,
    failures: FailuresFile,
    journal: Journal,
    progress: Progress,
    pub job: Tally,
    pub run: Tally,
    pub by_action: BTreeMap<String, Tally>,
    errors: ErrorTally,
    messages: BTreeMap<(Option<u16>, Option<i64>), String>,
    pub retries: u64,
    pub throttled: u64,
    /// Activations that ended `active` and those still `pendingProvision`.
    pub activations: (u64, u64),
    pending: usize,
    latency: Option<hdrhistogram::Histogram<u64>>,
    last_flush: Instant,
    last_sync: Instant,
    sync_every: Duration,
}

impl Recorder {
    pub fn new(
        results: ResultsFile,
        failures: FailuresFile,
        journal: Journal,
        progress: Progress,
        job: Tally,
        sync_every: Duration,
    ) -> Self {
        Self {
            results,
            failures,
            journal,
            progress,
            job,
            run: Tally::default(),
            by_action: BTreeMap::new(),
            errors: ErrorTally::default(),
            messages: BTreeMap::new(),
            retries: 0,
            throttled: 0,
            activations: (0, 0),
            pending: 0,
            latency: hdrhistogram::Histogram::new_with_bounds(1, 24 * 3600 * 1_000_000, 2).ok(),
            last_flush: Instant::now(),
            last_sync: Instant::now(),
            sync_every,
        }
    }

    /// Records one finished row.
    pub fn record(&mut self, r: &RowResult) -> std::io::Result<()> {
        self.results.write(r)?;
        if r.verdict.is_failure() {
            self.failures.write(r)?;
        }
        let (rl, fl) = (self.results.file().len(), self.failures.file().len());
        self.journal.row(r.line, r.verdict.mark(), rl, fl);
        let m = r.verdict.mark();
        self.job.add(m);
        self.run.add(m);
        let action = if r.verdict == Verdict::Invalid {
            "(invalid)".to_owned()
        } else {
            r.action.clone()
        };
        self.by_action.entry(action).or_default().add(m);
        if r.verdict.is_failure() {
            self.errors.add(r.http_status, r.error_code, &r.message);
            self.messages
                .entry((r.http_status, r.error_code))
                .or_insert_with(|| r.message.clone());
        }
        if r.verdict != Verdict::Invalid
            && let Some(h) = &mut self.latency
        {
            h.saturating_record((r.elapsed.as_micros() as u64).max(1));
        }
        if r.verdict == Verdict::Ok && r.action == "activate" {
            match r.sim_status.as_deref() {
                Some(s) if s.starts_with("pendingProvision") => self.activations.1 += 1,
                Some(_) => self.activations.0 += 1,
                None => {}
            }
        }
        self.retries += u64::from(r.retries);
        self.throttled += u64::from(r.throttled);
        self.pending += 1;
        if self.pending >= FLUSH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Flushes if rows have waited long enough (keeps the redo window after a crash small
    /// without a write per row).
    pub fn flush_if_due(&mut self) -> std::io::Result<()> {
        if self.pending > 0 && self.last_flush.elapsed() >= FLUSH_AFTER {
            self.flush()?;
        }
        Ok(())
    }

    /// Row latency: p50, p99 and max, in milliseconds.
    pub fn latency_ms(&self) -> Option<(f64, f64, f64)> {
        let h = self.latency.as_ref().filter(|h| !h.is_empty())?;
        let ms = |v: u64| v as f64 / 1000.0;
        Some((
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
        ))
    }

    /// Hands buffered rows to the OS (results, failures, then journal) and syncs when due.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.results.file().flush()?;
        self.failures.file().flush()?;
        self.journal.flush()?;
        self.pending = 0;
        self.last_flush = Instant::now();
        if self.last_sync.elapsed() >= self.sync_every {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.results.file().sync()?;
        self.failures.file().sync()?;
        self.journal.sync()?;
        self.last_sync = Instant::now();
        Ok(())
    }

    pub fn tick(&mut self, throttled_now: u64) -> std::io::Result<()> {
        self.flush()?;
        self.progress.update(&self.job, self.retries, throttled_now);
        Ok(())
    }

    /// Flushes and syncs everything; `end` marks the job finished with that exit code.
    pub fn finish(&mut self, end: Option<u8>) -> std::io::Result<()> {
        self.progress.finish();
        self.results.file().flush()?;
        self.failures.file().flush()?;
        if let Some(code) = end {
            self.journal.end(code);
        }
        self.journal.flush()?;
        self.sync()
    }

    pub fn top_errors(&self, n: usize) -> Vec<ErrorCount> {
        self.errors.top(n, &self.messages)
    }
}
