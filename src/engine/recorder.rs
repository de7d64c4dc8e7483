//! The single owner of every output of a run: results, failures, checkpoint journal,
//! progress and counters, on a thread of its own. Workers and the dispatcher send it events
//! through a bounded channel; nobody else touches a file.
//!
//! Guarantees: for each finished row the results (and failures) bytes are handed to the
//! operating system before the journal record that vouches for them; events are written in
//! the order they arrive and handed to the OS as soon as the inbox is empty, so a row's
//! *started* record reaches the OS before its write is sent, and a finished row's record
//! reaches the OS before the next row of the same SIM is dispatched (the [`Durable`] counts
//! say how far that has got); durability is batched (`fsync` of results, then failures,
//! then journal, at most every `sync_every`, and at the end); after a write error nothing
//! more is written (the journal never gets ahead of the files it counts), and the error is
//! published for the dispatcher.

pub(crate) mod metrics;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{Journal, RunStats};
use crate::output::groups::{ErrorGroup, Failed, Groups};
use crate::output::progress::Progress;
use crate::output::row::Tally;
use crate::output::summary::ReasonTally;
use crate::output::{FailuresFile, ResultsFile};

use crate::exit::{Code, JobState};
use crate::input::ActionKind;
use crate::output::row::{RowResult, Verdict};

/// Events handled before the outputs are handed to the OS even if more are waiting.
const BATCH: usize = 1024;
/// Capacity of the inbox, in messages (back-pressure on the dispatcher and workers).
const INBOX: usize = 64;
/// Most events in one message from the dispatcher: with [`INBOX`], what waits for the
/// recorder is at most 64 × 256 rows, however fast rows are read.
pub(crate) const MAX_BATCH: usize = 256;

/// What the recorder is told.
enum Event {
    /// From the dispatcher: the row will write first thing; counted in [`Durable::started`].
    Started {
        line: u64,
    },
    /// From a worker: a write for this row is about to be sent; `ack` once the record has
    /// reached the OS.
    StartedAck {
        line: u64,
        ack: oneshot::Sender<()>,
    },
    Finished(Box<RowResult>),
    /// Time passes: refresh the progress line and the metrics file, sync if due.
    Tick {
        throttled: u64,
        /// The job is stopping (no row starts any more).
        stopping: bool,
    },
    /// The run is over; `complete`: every row of the job has a record (write the end record).
    Finish {
        complete: bool,
        /// The run's exit code when it is not complete.
        code: Code,
        /// Requests and API answer times of the run (from the client).
        sent: RunStats,
    },
    /// Several events of one turn of the dispatcher, in order (one wake of the recorder).
    Batch(Vec<Event>),
}

/// How far the outputs have reached the OS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Durable {
    /// `Finished` events whose records have reached the OS, counted in sending order.
    pub(crate) finished: u64,
    /// The dispatcher's `Started` events whose records have reached the OS, in sending order.
    pub(crate) started: u64,
    /// The first write error; nothing is written after it.
    pub(crate) error: Option<String>,
}

/// What the recorder counted, handed back when the run is over.
pub(crate) struct Counts {
    pub(crate) job: Tally,
    pub(crate) run: Tally,
    pub(crate) by_action: BTreeMap<String, Tally>,
    errors: Groups,
    pub(crate) reasons: ReasonTally,
    pub(crate) retries: u64,
    pub(crate) throttled: u64,
    /// Activations that ended `active` and those still `pendingProvision`.
    pub(crate) activations: (u64, u64),
    latency: Option<hdrhistogram::Histogram<u64>>,
}

impl Counts {
    /// Row latency: p50, p99 and max, in milliseconds.
    pub(crate) fn latency_ms(&self) -> Option<(f64, f64, f64)> {
        let h = self.latency.as_ref().filter(|h| !h.is_empty())?;
        let ms = |v: u64| v as f64 / 1000.0;
        Some((
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
        ))
    }

    /// The `n` largest groups of failed and invalid rows of this run.
    pub(crate) fn top_errors(
        &self,
        n: usize,
        rerun: &crate::output::groups::Rerun<'_>,
    ) -> Vec<ErrorGroup> {
        self.errors.top_with(n, self.run.total(), rerun)
    }

    fn add(&mut self, r: &RowResult) {
        let m = r.verdict;
        self.job.add(m);
        self.run.add(m);
        let action = if r.verdict == Verdict::Invalid {
            "(invalid)".to_owned()
        } else {
            r.action.clone()
        };
        self.by_action.entry(action).or_default().add(m);
        if r.verdict.is_failure() {
            self.errors.add(Failed {
                outcome: r.verdict.as_str(),
                status: r.http_status,
                code: r.error_code,
                reason: r.reason,
                message: &r.message,
                line: r.line,
                iccid: &r.iccid,
            });
        }
        if r.verdict != Verdict::Invalid {
            self.reasons.add(r.verdict.as_str(), &r.message);
        }
        if r.verdict != Verdict::Invalid
            && let Some(h) = &mut self.latency
        {
            h.saturating_record((r.elapsed.as_micros() as u64).max(1));
        }
        if matches!(r.verdict, Verdict::Ok | Verdict::Pending)
            && r.kind == Some(ActionKind::Activate)
        {
            match r.sim_status.as_deref() {
                Some(s) if s.starts_with("pendingProvision") => self.activations.1 += 1,
                Some(_) => self.activations.0 += 1,
                None => {}
            }
        }
        self.retries += u64::from(r.retries);
        self.throttled += u64::from(r.throttled);
    }
}

/// The recorder's files and counters, before its thread starts.
pub(crate) struct Recorder {
    results: ResultsFile,
    failures: FailuresFile,
    journal: Journal,
    progress: Progress,
    counts: Counts,
    last_sync: Instant,
    sync_every: Duration,
    /// `Finished` events handled, and those whose records have reached the OS.
    finished: u64,
    out: u64,
    /// The same for the dispatcher's `Started` events.
    started: u64,
    started_out: u64,
    acks: Vec<oneshot::Sender<()>>,
    failed: Option<String>,
    durable: watch::Sender<Durable>,
    /// `--metrics-file`.
    metrics: Option<metrics::Sink>,
}

impl Recorder {
    pub(crate) fn new(
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
            counts: Counts {
                job,
                run: Tally::default(),
                by_action: BTreeMap::new(),
                errors: Groups::default(),
                reasons: ReasonTally::default(),
                retries: 0,
                throttled: 0,
                activations: (0, 0),
                latency: hdrhistogram::Histogram::new_with_bounds(1, 24 * 3600 * 1_000_000, 2).ok(),
            },
            last_sync: Instant::now(),
            sync_every,
            finished: 0,
            out: 0,
            started: 0,
            started_out: 0,
            acks: Vec::new(),
            failed: None,
            durable: watch::Sender::new(Durable::default()),
            metrics: None,
        }
    }

    /// Writes `--metrics-file` on each tick and at the end.
    pub(crate) fn with_metrics(mut self, m: Option<metrics::Sink>) -> Self {
        self.metrics = m;
        self
    }

    /// Starts the recorder's thread.
    pub(crate) fn spawn(self) -> std::io::Result<RecorderHandle> {
        let (tx, rx) = mpsc::channel(INBOX);
        let durable = self.durable.subscribe();
        let thread = std::thread::Builder::new()
            .name("simbulk-recorder".into())
            .spawn(move || self.run(rx))?;
        Ok(RecorderHandle {
            tx,
            durable,
            thread: Some(thread),
            sent: 0,
            started_sent: 0,
            outbox: Vec::new(),
        })
    }

    fn run(mut self, mut rx: mpsc::Receiver<Event>) -> Counts {
        // The recorder's files are written here only, never on an async worker thread.
        debug_assert!(tokio::runtime::Handle::try_current().is_err());
        while let Some(first) = rx.blocking_recv() {
            let mut next = Some(first);
            let mut handled = 0;
            while let Some(ev) = next.take() {
                if let Event::Finish {
                    complete,
                    code,
                    sent,
                } = ev
                {
                    self.finish(complete, code, sent);
                    self.publish();
                    return self.counts_out();
                }
                handled += self.handle(ev);
                if handled < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            self.flush();
            self.publish();
        }
        // Every sender is gone without a `Finish`: hand over what was written.
        self.finish(false, crate::exit::HALTED, RunStats::default());
        self.counts_out()
    }

    /// Tells the dispatcher how far the outputs have reached the OS.
    fn publish(&self) {
        let now = Durable {
            finished: self.out,
            started: self.started_out,
            error: self.failed.clone(),
        };
        self.durable.send_if_modified(|d| {
            let changed = *d != now;
            *d = now;
            changed
        });
    }

    fn counts_out(self) -> Counts {
        self.counts
    }

    /// Handles an event; returns how many it was.
    fn handle(&mut self, ev: Event) -> usize {
        match ev {
            Event::Batch(events) => {
                let n = events.len();
                for e in events {
                    self.handle(e);
                }
                return n;
            }
            Event::Started { line } => {
                self.started += 1;
                if self.failed.is_none() {
                    self.journal.started(line);
                }
            }
            Event::StartedAck { line, ack } => {
                if self.failed.is_none() {
                    self.journal.started(line);
                    self.acks.push(ack);
                }
            }
            Event::Finished(r) => {
                self.finished += 1;
                if let Some(m) = &mut self.metrics {
                    m.row();
                }
                if self.failed.is_none()
                    && let Err(e) = self.record(&r)
                {
                    self.fail(e);
                }
            }
            Event::Tick {
                throttled,
                stopping,
            } => {
                self.progress
                    .update(&self.counts.job, self.counts.retries, throttled);
                let state = if stopping { "stopping" } else { "running" };
                if let Some(m) = &mut self.metrics {
                    m.write(&self.counts, state, None, false);
                }
            }
            Event::Finish { .. } => {}
        }
        1
    }

    fn record(&mut self, r: &RowResult) -> std::io::Result<()> {
        self.results.write(r)?;
        if r.verdict.is_failure() {
            self.failures.write(r)?;
        }
        let (rl, fl) = (self.results.file().len(), self.failures.file().len());
        self.journal.row(r.line, r.verdict, rl, fl);
        self.counts.add(r);
        Ok(())
    }

    fn fail(&mut self, e: std::io::Error) {
        tracing::debug!(error = %e, "the outputs cannot be written");
        self.failed = Some(e.to_string());
        // Published before the rows waiting to write learn it from their dropped
        // acknowledgement, so the dispatcher reads the cause when they report.
        self.publish();
        self.acks.clear();
    }

    /// Hands buffered bytes to the OS (results, failures, then journal), syncs when due, and
    /// acknowledges the *started* records that are now out.
    fn flush(&mut self) {
        if self.failed.is_some() {
            return;
        }
        let r = (|| {
            self.results.file().flush()?;
            self.failures.file().flush()?;
            self.journal.flush()?;
            if self.last_sync.elapsed() >= self.sync_every {
                self.sync()?;
            }
            Ok(())
        })();
        match r {
            Ok(()) => {
                self.out = self.finished;
                self.started_out = self.started;
                for ack in self.acks.drain(..) {
                    let _ = ack.send(());
                }
            }
            Err(e) => self.fail(e),
        }
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.results.file().sync()?;
        self.failures.file().sync()?;
        self.journal.sync()?;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn finish(&mut self, complete: bool, code: Code, sent: RunStats) {
        self.progress.finish();
        self.flush();
        if self.failed.is_some() {
            return;
        }
        let done = completed_code(&self.counts.job);
        let stats = RunStats {
            retries: self.counts.retries,
            throttled: self.counts.throttled,
            ..sent
        };
        let end = if complete { done } else { code };
        if let Some(m) = &mut self.metrics {
            let state = if end == crate::exit::HALTED {
                "halted"
            } else {
                "finished"
            };
            m.write(&self.counts, state, Some(end.number()), true);
        }
        self.journal.ran(end.number(), stats);
        if complete {
            self.journal.end(done.number());
        }
        let r = self.journal.flush().and_then(|()| self.sync());
        if let Err(e) = r {
            self.fail(e);
        }
    }
}

/// The dispatcher's side of the recorder.
pub(crate) struct RecorderHandle {
    tx: mpsc::Sender<Event>,
    /// How far the outputs have reached the OS.
    pub(crate) durable: watch::Receiver<Durable>,
    thread: Option<std::thread::JoinHandle<Counts>>,
    sent: u64,
    started_sent: u64,
    /// Events of the dispatcher's current turn.
    outbox: Vec<Event>,
}

/// The recorder stopped (its thread ended or panicked).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the recorder of the outputs stopped")]
pub(crate) struct RecorderGone;

impl RecorderHandle {
    /// The handle workers use to record that they are about to write.
    pub(crate) fn journaling(&self) -> Journaling {
        Journaling {
            tx: self.tx.clone(),
        }
    }

    /// Records a finished row; returns its sequence number (compare with
    /// [`Durable::finished`]). Goes out with [`RecorderHandle::send`].
    pub(crate) fn finished(&mut self, r: RowResult) -> u64 {
        self.outbox.push(Event::Finished(Box::new(r)));
        self.sent += 1;
        self.sent
    }

    /// Records that the row on `line` is about to write; returns its sequence number
    /// (compare with [`Durable::started`]). The row may send its write once that is out.
    /// Goes out with [`RecorderHandle::send`].
    pub(crate) fn started(&mut self, line: u64) -> u64 {
        self.outbox.push(Event::Started { line });
        self.started_sent += 1;
        self.started_sent
    }

    /// Whether this turn's events fill a message.
    pub(crate) fn outbox_full(&self) -> bool {
        self.outbox.len() >= MAX_BATCH
    }

    /// Sends the events of this turn, in order, as one message.
    pub(crate) async fn send(&mut self) -> Result<(), RecorderGone> {
        let ev = match self.outbox.len() {
            0 => return Ok(()),
            1 => self.outbox.pop().map_or(Event::Batch(Vec::new()), |e| e),
            _ => Event::Batch(std::mem::take(&mut self.outbox)),
        };
        self.tx.send(ev).await.map_err(|_| RecorderGone)
    }

    /// Refreshes the progress line (dropped when the inbox is full: the next tick will do).
    pub(crate) fn tick(&self, throttled: u64, stopping: bool) {
        let _ = self.tx.try_send(Event::Tick {
            throttled,
            stopping,
        });
    }

    /// Ends the run: everything is handed to the OS and synced, the end record written when
    /// the job is `complete`; returns the counts, and the write error that stopped the
    /// outputs if one did.
    /// Ends the recorder: the last records, the run's end (with `code` when the job is not
    /// complete), and the end record of a complete job.
    pub(crate) async fn finish(
        mut self,
        complete: bool,
        code: Code,
        sent: RunStats,
    ) -> (Counts, Option<String>) {
        let _ = self.send().await;
        let _ = self
            .tx
            .send(Event::Finish {
                complete,
                code,
                sent,
            })
            .await;
        let durable = self.durable.clone();
        let thread = self.thread.take();
        drop(self);
        let joined = match thread {
            Some(t) => tokio::task::spawn_blocking(move || t.join()).await.ok(),
            None => None,
        };
        let error = durable.borrow().error.clone();
        match joined {
            Some(Ok(c)) => (c, error),
            _ => (
                Counts::empty(),
                Some(error.unwrap_or_else(|| RecorderGone.to_string())),
            ),
        }
    }
}

impl Counts {
    fn empty() -> Self {
        Self {
            job: Tally::default(),
            run: Tally::default(),
            by_action: BTreeMap::new(),
            errors: Groups::default(),
            reasons: ReasonTally::default(),
            retries: 0,
            throttled: 0,
            activations: (0, 0),
            latency: None,
        }
    }
}

/// The exit code of a job whose every row has a record.
pub(crate) fn completed_code(job: &Tally) -> Code {
    JobState::Completed.code(rows_failed(job))
}

/// Whether some of the job's rows failed, are invalid or still pending.
pub(crate) fn rows_failed(job: &Tally) -> bool {
    job.failed + job.invalid + job.pending > 0
}

/// A *started* record did not reach the OS: the job is stopping (or the journal refused it),
/// and the row must not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotOut;

/// A worker's way to the journal.
#[derive(Clone)]
pub(crate) struct Journaling {
    tx: mpsc::Sender<Event>,
}

impl Journaling {
    /// Records that a write for the row on `line` is about to be sent, and waits until that
    /// record has reached the OS. Ends with `Interrupted` if the job stops meanwhile or the
    /// outputs cannot be written.
    pub(crate) async fn started(&self, line: u64, stop: &CancellationToken) -> Result<(), NotOut> {
        let (ack, done) = oneshot::channel();
        let sent = tokio::select! {
            biased;
            _ = stop.cancelled() => return Err(NotOut),
            r = self.tx.send(Event::StartedAck { line, ack }) => r,
        };
        if sent.is_err() {
            return Err(NotOut);
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => Err(NotOut),
            r = done => r.map_err(|_| NotOut),
        }
    }
}
