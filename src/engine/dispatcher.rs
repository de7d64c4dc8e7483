//! The dispatcher: the async shell around the [`Schedule`](super::schedule::Schedule). It
//! turns the world into the schedule's events — rows from the planner, workers ending, the
//! recorder's records reaching the OS, signals, the deadline, ticks, the canary's answer —
//! and carries out its actions: spawning workers, sending records, cutting waits.
//!
//! Guarantees (the order, parking, halts, canary, stall and stop rules are the schedule's,
//! and tested there): a panicking worker ends the job (exit 3) instead of hanging it; records
//! go to the recorder in the order the schedule decided, at most `MAX_BATCH` to a message;
//! a failed recorder ends the loop at once (rows in flight end without an outcome); on abort
//! nothing more is awaited.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::mpsc;

use crate::api::Client;

use super::carry::Mode;
use super::halt::Stops;
use super::plan::PlannedBatch;
use super::recorder::RecorderHandle;
use super::retry::RetryPolicy;
use super::schedule::{Action, Event, Rules, Schedule, Start};
use super::worker::{self, RowEnd, Unfinished};

pub(crate) use super::schedule::Drive;

/// What the dispatcher needs: the client its workers call through, their retry policy and
/// create odds, and the rules its schedule decides by.
pub(crate) struct Dispatch {
    pub(crate) client: Arc<Client>,
    pub(crate) policy: Arc<RetryPolicy>,
    pub(crate) odds: Arc<super::calls::CreateOdds>,
    pub(crate) rules: Rules,
}

/// Between two progress refreshes and stall checks.
const TICK: Duration = Duration::from_secs(1);

type Finished = (u128, RowEnd);

/// What the workers the shell spawns share.
struct Workers {
    client: Arc<Client>,
    policy: Arc<RetryPolicy>,
    odds: Arc<super::calls::CreateOdds>,
    mode: Mode,
    wait: Option<Arc<super::activation::WaitActive>>,
}

/// What the shell holds while the loop runs.
struct Shell<'a> {
    d: &'a Workers,
    stops: &'a Stops,
    rec: &'a mut RecorderHandle,
    done_tx: mpsc::Sender<Finished>,
    schedule: Schedule,
    /// Time spent waiting for the operator.
    asked: Duration,
}

/// Runs the job until the input is exhausted or a stop.
pub(crate) async fn drive(
    d: Dispatch,
    mut input: mpsc::Receiver<PlannedBatch>,
    rec: &mut RecorderHandle,
    stops: Stops,
) -> Drive {
    let Dispatch {
        client,
        policy,
        odds,
        rules,
    } = d;
    let (done_tx, mut done_rx) = mpsc::channel::<Finished>(rules.concurrency * 2 + 16);
    let workers = Workers {
        client,
        policy,
        odds,
        mode: rules.mode,
        wait: rules.wait.clone(),
    };
    let schedule = Schedule::new(rules, Instant::now());
    let mut shell = Shell {
        d: &workers,
        stops: &stops,
        rec,
        done_tx,
        schedule,
        asked: Duration::ZERO,
    };
    shell.turns(&mut input, &mut done_rx).await;
    let rows_left = shell.schedule.ends_in_stop() && rows_left(&shell.schedule, &mut input).await;
    let asked = shell.asked;
    Drive {
        asked,
        ..shell.schedule.end(rows_left)
    }
}

/// Whether rows are left after a stop or a halt: those the schedule holds, or the
/// planner's not yet taken.
async fn rows_left(s: &Schedule, input: &mut mpsc::Receiver<PlannedBatch>) -> bool {
    if let Some(known) = s.rows_left() {
        return known;
    }
    while let Some(b) = input.recv().await {
        if s.any_not_done(&b) {
            return true;
        }
    }
    false
}

impl Shell<'_> {
    /// Hands `ev` to the schedule and carries out what it says; `false` when the recorder
    /// is gone.
    async fn handle(&mut self, ev: Event) -> bool {
        let actions = self.schedule.handle(ev, Instant::now());
        self.carry_out(actions).await
    }

    /// Carries out the schedule's actions in order, sending the records a message at a
    /// time; `false` when the recorder is gone.
    async fn carry_out(&mut self, actions: Vec<Action>) -> bool {
        for a in actions {
            match a {
                Action::Spawn(start) => self.spawn(*start),
                Action::Record { row, seq } => {
                    let given = self.rec.finished(*row);
                    debug_assert_eq!(given, seq, "the schedule counts records as the recorder");
                }
                Action::Started { line, seq } => {
                    let given = self.rec.started(line);
                    debug_assert_eq!(given, seq, "the schedule counts records as the recorder");
                }
                Action::CutWaits => self.stops.stop_rows.cancel(),
            }
            if self.rec.outbox_full() && !self.send().await {
                return false;
            }
        }
        self.send().await
    }

    /// Sends this turn's records; `false` (and a stop) when the recorder is gone.
    async fn send(&mut self) -> bool {
        let Err(e) = self.rec.send().await else {
            return true;
        };
        let actions = self
            .schedule
            .handle(Event::RecorderFailed(e.to_string()), Instant::now());
        for a in actions {
            if let Action::CutWaits = a {
                self.stops.stop_rows.cancel();
            }
        }
        false
    }

    /// Spawns the worker of a row.
    fn spawn(&mut self, start: Start) {
        let Start {
            item,
            row,
            seen,
            in_doubt,
            started,
        } = start;
        let (client, policy, tx, stop, wait) = (
            self.d.client.clone(),
            self.d.policy.clone(),
            self.done_tx.clone(),
            self.stops.stop_rows.clone(),
            self.d.wait.clone(),
        );
        let journal = self.rec.journaling();
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

    /// A worker ended. One stopped while rows are still taken was stopped by the journal
    /// refusing its *started* record, the signal or the deadline: the schedule learns which
    /// first.
    async fn worker_ended(&mut self, icc: u128, end: RowEnd) -> bool {
        if matches!(end, RowEnd::Unfinished(Unfinished::Stopped)) && self.schedule.taking() {
            let error = self.rec.durable.borrow().error.clone();
            let cause = match error {
                Some(e) => Event::RecorderFailed(e),
                None if self.stops.drain.is_cancelled() => Event::Drain,
                None => Event::Deadline,
            };
            if !self.handle(cause).await {
                return false;
            }
        }
        self.handle(Event::Finished { icc, end }).await
    }

    /// The loop: wait for the next event, hand it on, until nothing runs and nothing more
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
            if let Some((rows, failed)) = self.schedule.canary_due() {
                let asking = Instant::now();
                let answer = super::gate::after_canary(rows, failed, &stops.drain).await;
                self.asked += asking.elapsed();
                if !self.handle(Event::Canary(answer)).await {
                    return;
                }
                continue;
            }
            if self.schedule.over() {
                return;
            }
            let taking = self.schedule.taking();
            let alive = tokio::select! {
                biased;
                _ = stops.abort.cancelled() => {
                    self.schedule.abort();
                    return;
                }
                Some((icc, end)) = done_rx.recv() => {
                    let mut alive = self.worker_ended(icc, end).await;
                    // Every worker that ended meanwhile, in this same turn.
                    while alive && let Ok((icc, end)) = done_rx.try_recv() {
                        alive = self.worker_ended(icc, end).await;
                    }
                    alive
                }
                changed = durable.changed() => {
                    let now = durable.borrow_and_update().clone();
                    if changed.is_err() || now.error.is_some() {
                        let why = now
                            .error
                            .unwrap_or_else(|| super::recorder::RecorderGone.to_string());
                        let _ = self.handle(Event::RecorderFailed(why)).await;
                        // Rows still in flight end without an outcome; nothing more is written.
                        return;
                    }
                    self.handle(Event::Durable { started: now.started, finished: now.finished }).await
                }
                _ = stops.drain.cancelled(), if taking => self.handle(Event::Drain).await,
                _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if taking && deadline.is_some() => {
                    self.handle(Event::Deadline).await
                }
                batch = input.recv(), if self.schedule.wants_rows() => match batch {
                    None => self.handle(Event::InputEnded).await,
                    Some(b) => self.handle(Event::Rows(b)).await,
                },
                _ = async { match &d.wait { Some(w) => w.freed.notified().await, None => std::future::pending().await } } => {
                    self.handle(Event::SlotFreed).await
                }
                _ = tick.tick() => {
                    self.rec.tick(d.client.pacer.throttled_count(), self.schedule.stopping());
                    let since_useful = d.client.since_useful_answer();
                    self.handle(Event::Tick { since_useful }).await
                }
            };
            if !alive {
                return;
            }
        }
    }
}
