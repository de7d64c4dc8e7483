//! The dispatcher: takes rows from the reader, skips those the checkpoint says are done,
//! keeps the rows of one ICCID in file order with never two in flight, runs up to
//! `concurrency` rows at once, hands every finished row to the recorder, and decides when the
//! job stops.
//!
//! Guarantees: a row is dispatched only after the record of every earlier row of its ICCID
//! has reached the OS (no crash can make a resume redo an earlier row over a later one's
//! effect); rows waiting behind a busy ICCID are bounded (reading pauses past
//! [`MAX_PARKED`]), so memory does not grow with the file; on a stop (signal, deadline,
//! halt, stall) no new row starts and every wait in the workers is cut; a row that reaches no
//! outcome is counted, never recorded, so the job is not "complete" unless every row has a
//! record; a panicking worker ends the job (exit 3) instead of hanging it; on abort nothing
//! more is awaited.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fixedbitset::FixedBitSet;
use futures::FutureExt;
use tokio::sync::mpsc;

use crate::api::Client;
use crate::input::{FileError, Item, Layout, Row};

use super::carry::{Carry, Mode, ReadAges};
use super::halt::{self, End, Failures, Halt, Stops, Streak};
use super::plan::{Planned, PlannedBatch, Seen, Taken};
use super::recorder::RecorderHandle;
use super::retry::RetryPolicy;
use super::worker::{self, RowEnd, Unfinished};
use crate::output::row::{RowResult, Verdict};

/// Rows held back behind a busy ICCID before reading pauses.
pub(crate) const MAX_PARKED: usize = 4096;

pub(crate) struct Dispatch {
    pub(crate) client: Arc<Client>,
    pub(crate) policy: Arc<RetryPolicy>,
    pub(crate) layout: Layout,
    pub(crate) concurrency: usize,
    pub(crate) done: Arc<FixedBitSet>,
    /// Rows a run that ended without recording them had started to write: they are read
    /// (reconciled) before they are written.
    pub(crate) in_doubt: FixedBitSet,
    /// `--wait-active`.
    pub(crate) wait: Option<Arc<super::activation::WaitActive>>,
    /// A run writes; a preview predicts.
    pub(crate) mode: Mode,
    /// `--canary N`: the first N rows, then a look before the rest.
    pub(crate) canary: Option<u64>,
    pub(crate) odds: Arc<super::calls::CreateOdds>,
    /// `--max-read-age`.
    pub(crate) max_age: Duration,
    /// Rows taken from the planner, for its lookahead.
    pub(crate) taken: Arc<Taken>,
}

/// What the loop leaves behind.
pub(crate) struct Drive {
    pub(crate) end: End,
    /// Rows read (or waiting) that have no record: they are done on resume.
    pub(crate) unrecorded: u64,
    /// This run's failed rows by status and code.
    pub(crate) failures: Failures,
    /// How old the states were that rows were decided on.
    pub(crate) ages: ReadAges,
}

/// Between two progress refreshes and stall checks.
const TICK: Duration = Duration::from_millis(100);

type Finished = (u128, RowEnd);

/// `--canary`: rows still to take before the look, and the canary's size.
struct Canary {
    left: u64,
    rows: u64,
}

/// The state of one run of the loop.
struct Loop<'a> {
    d: &'a Dispatch,
    stops: &'a Stops,
    rec: &'a mut RecorderHandle,
    done_tx: mpsc::Sender<Finished>,
    /// ICCIDs with a row running or a record not yet out, and the rows waiting behind them.
    busy: HashMap<u128, VecDeque<(Item, Row)>>,
    /// Finished rows whose record must reach the OS before their ICCID takes its next row.
    flushing: VecDeque<(u64, u128)>,
    /// Rows whose *started* record must reach the OS before they are spawned (they write
    /// first thing), with its sequence number.
    starting: VecDeque<(u64, Item, Row, Option<Seen>)>,
    buffer: VecDeque<Result<Planned, FileError>>,
    /// What this run's rows left behind, for later rows of their SIMs.
    carry: Carry,
    canary: Option<Canary>,
    running: usize,
    parked: usize,
    reading: bool,
    taking: bool,
    end: Option<End>,
    unrecorded: u64,
    streak: Streak,
    /// Failures of this run by (status, code), for the halt message.
    failures: Failures,
    finished: u64,
    failed: u64,
    last_finish: Instant,
}

impl Loop<'_> {
    /// Rows in flight that are only waiting for an activation (they hold no slot).
    fn waiting(&self) -> usize {
        self.d
            .wait
            .as_ref()
            .map_or(0, |w| w.waiting.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn room(&self) -> bool {
        self.running - self.waiting() < self.d.concurrency
            && self.parked < MAX_PARKED
            && self.canary.as_ref().is_none_or(|c| c.left != 0)
    }

    /// Stops taking rows and cuts every wait of the rows in flight.
    fn stop(&mut self, end: End) {
        self.taking = false;
        self.stops.stop_rows.cancel();
        self.end.get_or_insert(end);
        // Rows not yet spawned never will be.
        let n = self.starting.len();
        self.starting.clear();
        self.running -= n;
        self.unrecorded += n as u64;
    }

    /// Starts a row: at once when its first call reads; once its *started* record has reached
    /// the OS when its first call is a write (the record is sent here, with the others of
    /// this turn, rather than asked for by the worker: one round trip per flush, not per row).
    fn start(&mut self, item: Item, row: Row, seen: Option<Seen>) {
        self.running += 1;
        let in_doubt = self.d.in_doubt.contains(item.line as usize);
        if in_doubt || !worker::writes_first(&row, seen.as_ref(), self.d.mode) {
            self.spawn(item, row, seen, false);
            return;
        }
        let seq = self.rec.started(item.line);
        self.starting.push_back((seq, item, row, seen));
    }

    /// Spawns the rows whose *started* records are out (`durable` of them).
    fn launch(&mut self, durable: u64) {
        while self.starting.front().is_some_and(|(s, ..)| *s <= durable) {
            if let Some((_, item, row, seen)) = self.starting.pop_front() {
                self.spawn(item, row, seen, true);
            }
        }
    }

    /// Spawns the worker of a row counted in `running`; `started`: its *started* record is
    /// already out.
    fn spawn(&mut self, item: Item, row: Row, seen: Option<Seen>, started: bool) {
        let (client, policy, tx, stop, wait) = (
            self.d.client.clone(),
            self.d.policy.clone(),
            self.done_tx.clone(),
            self.stops.stop_rows.clone(),
            self.d.wait.clone(),
        );
        let journal = self.rec.journaling();
        let in_doubt = self.d.in_doubt.contains(item.line as usize);
        let mode = self.d.mode;
        let odds = self.d.odds.clone();
        tokio::spawn(async move {
            let key = row.iccid.key();
            let cx = worker::Ctx {
                client: &client,
                policy: &policy,
                stop: &stop,
                journal: &journal,
                started,
                wait: wait.as_deref(),
                mode,
                odds: &odds,
            };
            // A panic in a worker is a bug; it must end the job, never hang it.
            let end = AssertUnwindSafe(worker::execute(&cx, item, row, seen, in_doubt))
                .catch_unwind()
                .await
                .unwrap_or_else(|p| {
                    RowEnd::Unfinished(Unfinished::Panicked(worker::panic_text(&p)))
                });
            let _ = tx.send((key, end)).await;
        });
    }

    /// Dispatches buffered rows while there is room; `true` when it stopped because this
    /// turn's records fill a message (more can go after it is sent).
    fn dispatch(&mut self) -> bool {
        while self.taking && self.room() {
            if self.rec.outbox_full() {
                return true;
            }
            let Some(next) = self.buffer.pop_front() else {
                break;
            };
            self.d.taken.take();
            let Planned { mut item, seen } = match next {
                Ok(p) => p,
                Err(e) => {
                    self.reading = false;
                    self.buffer.clear();
                    self.stop(End::ReadFailed(e.to_string()));
                    break;
                }
            };
            if self.d.done.contains(item.line as usize) {
                continue;
            }
            if let Some(c) = self.canary.as_mut() {
                c.left -= 1;
            }
            let placeholder = Err(crate::input::Invalid::new(
                crate::input::Reason::NoAction,
                String::new(),
            ));
            match std::mem::replace(&mut item.parsed, placeholder) {
                Err(reason) => {
                    let r = worker::invalid(item, reason, &self.d.layout);
                    self.record(r);
                }
                Ok(row) => {
                    let key = row.iccid.key();
                    match self.busy.get_mut(&key) {
                        // It takes what the running row leaves behind when its turn comes.
                        Some(q) => {
                            q.push_back((item, row));
                            self.parked += 1;
                        }
                        None => {
                            let seen = self.carry.for_row(key, seen);
                            self.busy.insert(key, VecDeque::new());
                            self.start(item, row, seen);
                        }
                    }
                }
            }
        }
        false
    }

    /// Sends a finished row to the recorder; returns its sequence number.
    fn record(&mut self, r: RowResult) -> u64 {
        self.finished += 1;
        self.last_finish = Instant::now();
        if r.verdict == Verdict::Failed {
            self.failed += 1;
            self.failures
                .entry((r.http_status, r.error_code))
                .or_insert_with(|| (0, r.message.clone()))
                .0 += 1;
        }
        let run = self.streak.add(&r);
        let checks = self.end.is_none();
        let action = r.action.clone();
        let (status, code, message) = (r.http_status, r.error_code, r.message.clone());
        let seq = self.rec.finished(r);
        if checks {
            if let Some(k) = self.stops.halt_after_same_error
                && run >= k
            {
                self.stop(End::Halted(Halt::SameError {
                    run,
                    action,
                    status,
                    code,
                    message,
                }));
            } else if let Some(t) = self.stops.max_failures
                && t.exceeded(self.failed, self.finished)
            {
                self.stop(End::Halted(Halt::MaxFailures {
                    failed: self.failed,
                    threshold: t,
                }));
            }
        }
        seq
    }

    /// A worker ended.
    fn finished(&mut self, icc: u128, end: RowEnd) {
        self.running -= 1;
        match end {
            RowEnd::Recorded { result, after } => {
                let wrote = !matches!(result.verdict, Verdict::Skipped | Verdict::Invalid);
                self.carry.ended(icc, after, wrote);
                let seq = self.record(*result);
                self.flushing.push_back((seq, icc));
            }
            RowEnd::Unfinished(why) => {
                self.carry.ended(icc, None, true);
                self.unrecorded += 1;
                // The ICCID's later rows wait for this one: they are not done either.
                if let Some(q) = self.busy.remove(&icc) {
                    self.parked -= q.len();
                    self.unrecorded += q.len() as u64;
                }
                match why {
                    Unfinished::Stopped if self.taking => {
                        // Stopped while the loop still takes rows: the journal refused the
                        // row's started record, or the deadline refused a request before
                        // the timer here fired.
                        let error = self.rec.durable.borrow().error.clone();
                        self.stop(match error {
                            Some(e) => End::WriteFailed(e),
                            None if self.stops.drain.is_cancelled() => {
                                End::Stopped(halt::SIGNALLED.into())
                            }
                            None => End::Stopped(halt::WINDOW_CLOSED.into()),
                        });
                    }
                    Unfinished::Stopped => {}
                    Unfinished::Halting { error, action } => {
                        self.stop(End::Halted(Halt::Account { error, action }));
                    }
                    Unfinished::Panicked(m) => self.stop(End::Halted(Halt::Panic(m))),
                }
            }
        }
    }

    /// Records have reached the OS up to `durable`: their ICCIDs may take their next rows.
    fn released(&mut self, durable: u64) {
        while self.flushing.front().is_some_and(|(s, ..)| *s <= durable) {
            let Some((_, icc)) = self.flushing.pop_front() else {
                break;
            };
            let next = if self.taking {
                self.busy.get_mut(&icc).and_then(VecDeque::pop_front)
            } else {
                None
            };
            match next {
                Some((item, row)) => {
                    self.parked -= 1;
                    // What the row before it left, when it is young enough to decide on.
                    let seen = self.carry.for_row(icc, None);
                    self.start(item, row, seen);
                }
                None => {
                    if let Some(q) = self.busy.remove(&icc) {
                        self.parked -= q.len();
                        self.unrecorded += q.len() as u64;
                    }
                }
            }
        }
    }

    /// Whether rows are left after a halt: a halt on the job's last row is a completed job.
    async fn rows_left(&mut self, input: &mut mpsc::Receiver<PlannedBatch>) -> bool {
        if self.unrecorded > 0 || self.parked > 0 {
            return true;
        }
        let not_done = |b: &Result<Planned, FileError>| match b {
            Ok(p) => !self.d.done.contains(p.item.line as usize),
            Err(_) => true,
        };
        if self.buffer.iter().any(not_done) {
            return true;
        }
        while self.reading {
            match input.recv().await {
                None => self.reading = false,
                Some(b) => {
                    if b.iter().any(not_done) {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// Rows run, or wait for the planner's reads, and nothing useful comes back.
    fn stalled(&self) -> bool {
        (self.running > 0 || (self.reading && self.buffer.is_empty()))
            && self.last_finish.elapsed() >= self.stops.stall_timeout
            && self.d.client.since_useful_answer() >= self.stops.stall_timeout
    }
}

/// Runs the job until the input is exhausted or a stop.
pub(crate) async fn drive(
    d: Dispatch,
    mut input: mpsc::Receiver<PlannedBatch>,
    rec: &mut RecorderHandle,
    stops: Stops,
) -> Drive {
    let (done_tx, mut done_rx) = mpsc::channel::<Finished>(d.concurrency * 2 + 16);
    let mut l = Loop::new(&d, &stops, rec, done_tx);
    l.turns(&mut input, &mut done_rx).await;
    l.end(&mut input).await
}

impl<'a> Loop<'a> {
    fn new(
        d: &'a Dispatch,
        stops: &'a Stops,
        rec: &'a mut RecorderHandle,
        done_tx: mpsc::Sender<Finished>,
    ) -> Self {
        Loop {
            d,
            stops,
            rec,
            done_tx,
            busy: HashMap::new(),
            flushing: VecDeque::new(),
            starting: VecDeque::new(),
            buffer: VecDeque::with_capacity(super::reader::BATCH),
            carry: Carry::new(d.mode, d.max_age),
            canary: d.canary.map(|rows| Canary { left: rows, rows }),
            running: 0,
            parked: 0,
            reading: true,
            taking: true,
            end: None,
            unrecorded: 0,
            streak: Streak::default(),
            failures: Failures::new(),
            finished: 0,
            failed: 0,
            last_finish: Instant::now(),
        }
    }

    /// Sends this turn's records to the recorder, one message per `MAX_BATCH` of them,
    /// dispatching between sends. `false` when the recorder is gone.
    async fn dispatch_and_send(&mut self) -> bool {
        loop {
            let more = self.dispatch();
            if let Err(e) = self.rec.send().await {
                self.stop(End::WriteFailed(e.to_string()));
                return false;
            }
            if !more {
                return true;
            }
        }
    }

    /// The loop: dispatch, then wait for the next event, until nothing runs and nothing more
    /// will be taken.
    async fn turns(
        &mut self,
        input: &mut mpsc::Receiver<PlannedBatch>,
        done_rx: &mut mpsc::Receiver<Finished>,
    ) {
        let (stops, d) = (self.stops, self.d);
        let mut durable = self.rec.durable.clone();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = stops.deadline;
        loop {
            if !self.dispatch_and_send().await {
                return;
            }
            if self.canary_due() {
                self.canary_look().await;
                continue;
            }
            let idle = self.running == 0;
            if idle
                && (!self.taking || (!self.reading && self.parked == 0 && self.buffer.is_empty()))
            {
                return;
            }
            tokio::select! {
                biased;
                _ = stops.abort.cancelled() => {
                    self.end = Some(End::Aborted);
                    return;
                }
                Some((icc, end)) = done_rx.recv() => {
                    self.finished(icc, end);
                    // Every worker that ended meanwhile, in this same turn.
                    while let Ok((icc, end)) = done_rx.try_recv() {
                        self.finished(icc, end);
                    }
                }
                changed = durable.changed() => {
                    let now = durable.borrow_and_update().clone();
                    if !self.out(changed.is_ok(), now) {
                        // Rows still in flight end without an outcome; nothing more is written.
                        return;
                    }
                }
                _ = stops.drain.cancelled(), if self.taking => {
                    self.stop(End::Stopped(halt::SIGNALLED.into()));
                }
                _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if self.taking && deadline.is_some() => {
                    self.stop(End::Stopped(halt::WINDOW_CLOSED.into()));
                }
                batch = input.recv(), if self.taking && self.reading && self.buffer.is_empty() && self.room() => {
                    match batch {
                        None => self.reading = false,
                        Some(b) => self.buffer.extend(b),
                    }
                }
                _ = async { match &d.wait { Some(w) => w.freed.notified().await, None => std::future::pending().await } } => {
                    // A row started waiting for its activation: its slot is free.
                }
                _ = tick.tick() => self.tick(),
            }
        }
    }

    /// The canary's rows are all taken, done and recorded: time to look.
    fn canary_due(&self) -> bool {
        self.taking
            && self.canary.as_ref().is_some_and(|c| c.left == 0)
            && self.running == 0
            && self.flushing.is_empty()
            && self.starting.is_empty()
    }

    /// After the canary: on a terminal, its summary and the question; off one, on only when
    /// none of its rows failed.
    async fn canary_look(&mut self) {
        use super::gate::{AfterCanary, after_canary};
        let Some(c) = self.canary.take() else { return };
        let (rows, failed) = (c.rows, self.failed);
        match after_canary(rows, failed, &self.stops.drain).await {
            AfterCanary::GoOn => {}
            AfterCanary::Failed => self.stop(End::Halted(Halt::Canary { rows, failed })),
            AfterCanary::Declined => self.stop(End::Stopped(
                "stopped after the canary at the operator's answer; run again with --resume to go on"
                    .into(),
            )),
            AfterCanary::Signalled => self.stop(End::Stopped(halt::SIGNALLED.into())),
        }
    }

    /// The recorder says how far its records are out: rows may start, SIMs take their next
    /// rows. `false` when it failed (or is gone).
    fn out(&mut self, alive: bool, now: super::recorder::Durable) -> bool {
        if !alive || now.error.is_some() {
            let why = now
                .error
                .unwrap_or_else(|| super::recorder::RecorderGone.to_string());
            self.stop(End::WriteFailed(why));
            return false;
        }
        self.launch(now.started);
        self.released(now.finished);
        true
    }

    /// Time passes: the progress line, and a provider that does not recover.
    fn tick(&mut self) {
        self.rec
            .tick(self.d.client.pacer.throttled_count(), self.end.is_some());
        if self.end.is_none() && self.stalled() {
            self.stop(End::Halted(Halt::Stall(self.stops.stall_timeout)));
        }
    }

    /// How the loop ended.
    async fn end(mut self, input: &mut mpsc::Receiver<PlannedBatch>) -> Drive {
        // Rows still running (an abort, a write failure) or never taken have no record.
        self.unrecorded += (self.running + self.parked) as u64;
        let end = match self.end.take() {
            None => End::Complete,
            // A stop or a halt that leaves no row undone is the end of the job.
            Some(e @ (End::Halted(_) | End::Stopped(_))) => {
                if self.rows_left(input).await {
                    e
                } else {
                    End::Complete
                }
            }
            Some(other) => other,
        };
        Drive {
            end,
            unrecorded: self.unrecorded,
            failures: self.failures,
            ages: self.carry.ages,
        }
    }
}
