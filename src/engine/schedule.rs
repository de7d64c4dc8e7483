//! The dispatcher's decisions, without I/O: which row starts when, in what order, and when
//! the job stops. [`Schedule::handle`] takes one [`Event`] (rows planned, a worker's end,
//! records out, a signal, the deadline, a tick, the canary's answer) and returns the
//! [`Action`]s it calls for (start a worker, send a record, cut every wait); the async shell
//! in `dispatcher` turns the world into events and carries the actions out.
//!
//! Guarantees (each held by a unit test below, driven event by event): the rows of one ICCID
//! run in file order, never two at once, and the next starts only once the record of the
//! one before it has reached the OS; a row that writes first starts only once its *started*
//! record is out; at most `concurrency` rows run (rows waiting for an activation hold no
//! slot) and at most [`MAX_PARKED`] wait behind busy ICCIDs; rows the checkpoint has done
//! are passed over; `--halt-after-same-error`, `--max-failures`, a row meeting an account
//! error or a panic, and a stall halt; the canary stops taking rows until its answer; on any
//! stop no new row starts, rows not yet started are counted as unrecorded, never recorded;
//! the job is complete only when every row has a record.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fixedbitset::FixedBitSet;

use crate::input::{FileError, Item, Layout, Row};
use crate::output::row::{RowResult, Verdict};

use super::carry::{Carry, Mode, ReadAges};
use super::gate::AfterCanary;
use super::halt::{self, End, Failures, Halt, Streak};
use super::plan::{Planned, PlannedBatch, Seen, Taken};
use super::worker::{self, RowEnd, Unfinished};

/// Rows held back behind a busy ICCID before reading pauses.
pub(crate) const MAX_PARKED: usize = 4096;

/// What the loop leaves behind.
pub(crate) struct Drive {
    pub(crate) end: End,
    /// Rows read (or waiting) that have no record: they are done on resume.
    pub(crate) unrecorded: u64,
    /// This run's failed rows by status and code.
    pub(crate) failures: Failures,
    /// How old the states were that rows were decided on.
    pub(crate) ages: ReadAges,
    /// Time spent waiting for the operator's answer (the canary's question): not the job's.
    pub(crate) asked: Duration,
}

/// What the schedule is built from: the job's settings that decide order and stops.
pub(crate) struct Rules {
    pub(crate) layout: Layout,
    pub(crate) concurrency: usize,
    /// Rows the checkpoint has: passed over.
    pub(crate) done: Arc<FixedBitSet>,
    /// Rows a run that ended without recording them had started to write: read first.
    pub(crate) in_doubt: FixedBitSet,
    pub(crate) mode: Mode,
    /// `--canary N`.
    pub(crate) canary: Option<u64>,
    /// `--max-read-age`.
    pub(crate) max_age: Duration,
    pub(crate) max_failures: Option<super::Threshold>,
    pub(crate) halt_after_same_error: Option<u32>,
    pub(crate) stall_timeout: Duration,
    /// `--wait-active`: rows waiting for an activation (they hold no slot).
    pub(crate) wait: Option<Arc<super::activation::WaitActive>>,
    /// Rows taken from the planner, for its lookahead.
    pub(crate) taken: Arc<Taken>,
}

/// What happened.
#[derive(Debug)]
pub(crate) enum Event {
    /// Rows from the planner.
    Rows(PlannedBatch),
    /// The planner has no more rows.
    InputEnded,
    /// A worker ended.
    Finished { icc: u128, end: RowEnd },
    /// The recorder's records reached the OS up to these sequence numbers.
    Durable { started: u64, finished: u64 },
    /// The recorder failed (or is gone): nothing more can be written.
    RecorderFailed(String),
    /// A stop was asked (the first signal).
    Drain,
    /// The run window closed.
    Deadline,
    /// Time passed; `since_useful`: since the provider last gave a useful answer.
    Tick { since_useful: Duration },
    /// The answer after the canary.
    Canary(AfterCanary),
    /// A row started waiting for its activation: its slot is free.
    SlotFreed,
}

/// What the shell is to do, in order.
#[derive(Debug)]
pub(crate) enum Action {
    /// Start the worker of a row.
    Spawn(Box<Start>),
    /// Send this finished row to the recorder; `seq`: the sequence number the recorder
    /// gives it (the schedule counts as the recorder does).
    Record { row: Box<RowResult>, seq: u64 },
    /// Send the *started* record of the row on `line`, with its sequence number `seq`.
    Started { line: u64, seq: u64 },
    /// Cut every wait of the rows in flight: the job is stopping.
    CutWaits,
}

/// A row to start.
#[derive(Debug)]
pub(crate) struct Start {
    pub(crate) item: Item,
    pub(crate) row: Row,
    /// What the row goes on with (the planner's read or what an earlier row left).
    pub(crate) seen: Option<Seen>,
    /// A run that ended without its record had started to write it: it reads first.
    pub(crate) in_doubt: bool,
    /// Its *started* record is out already.
    pub(crate) started: bool,
}

/// `--canary`: rows still to take before the look, and the canary's size.
struct Canary {
    left: u64,
    rows: u64,
}

/// The state of the dispatcher's decisions.
pub(crate) struct Schedule {
    rules: Rules,
    /// ICCIDs with a row running or a record not yet out, and the rows waiting behind them.
    busy: HashMap<u128, VecDeque<(Item, Row)>>,
    /// Finished rows whose record must reach the OS before their ICCID takes its next row.
    flushing: VecDeque<(u64, u128)>,
    /// Rows whose *started* record must reach the OS before they are spawned.
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
    failures: Failures,
    finished: u64,
    failed: u64,
    last_finish: Instant,
    /// The time of the event being handled.
    now: Instant,
    /// Sequence numbers of the records sent so far (the recorder counts the same way).
    finished_seq: u64,
    started_seq: u64,
}

impl Schedule {
    /// A schedule starting at `now`.
    pub(crate) fn new(rules: Rules, now: Instant) -> Self {
        Self {
            busy: HashMap::new(),
            flushing: VecDeque::new(),
            starting: VecDeque::new(),
            buffer: VecDeque::with_capacity(super::reader::BATCH),
            carry: Carry::new(rules.mode, rules.max_age),
            canary: rules.canary.map(|rows| Canary { left: rows, rows }),
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
            last_finish: now,
            now,
            finished_seq: 0,
            started_seq: 0,
            rules,
        }
    }

    /// Takes one event, at `now`; the actions it calls for, in order.
    pub(crate) fn handle(&mut self, ev: Event, now: Instant) -> Vec<Action> {
        self.now = self.now.max(now);
        let mut out = Vec::new();
        match ev {
            Event::Rows(b) => self.buffer.extend(b),
            Event::InputEnded => self.reading = false,
            Event::Finished { icc, end } => self.finished(icc, end, &mut out),
            Event::Durable { started, finished } => {
                self.launch(started, &mut out);
                self.released(finished, &mut out);
            }
            Event::RecorderFailed(why) => self.stop(End::WriteFailed(why), &mut out),
            Event::Drain if self.taking => {
                self.stop(End::Stopped(halt::SIGNALLED.into()), &mut out)
            }
            Event::Deadline if self.taking => {
                self.stop(End::Stopped(halt::WINDOW_CLOSED.into()), &mut out);
            }
            Event::Drain | Event::Deadline => {}
            Event::Tick { since_useful } => {
                if self.end.is_none() && self.stalled(since_useful) {
                    let stall = self.rules.stall_timeout;
                    self.stop(End::Halted(Halt::Stall(stall)), &mut out);
                }
            }
            Event::Canary(answer) => self.canary_answered(answer, &mut out),
            Event::SlotFreed => {}
        }
        self.dispatch(&mut out);
        out
    }

    /// Whether the shell should take the next batch from the planner.
    pub(crate) fn wants_rows(&self) -> bool {
        self.taking && self.reading && self.buffer.is_empty() && self.room()
    }

    /// Whether rows are still taken (a stop or a halt ends it).
    pub(crate) fn taking(&self) -> bool {
        self.taking
    }

    /// Nothing runs and nothing more will be taken: the loop is over.
    pub(crate) fn over(&self) -> bool {
        self.running == 0
            && (!self.taking || (!self.reading && self.parked == 0 && self.buffer.is_empty()))
    }

    /// When the canary's rows are all taken, done and recorded, time to look: the canary's
    /// size and its failed rows.
    pub(crate) fn canary_due(&self) -> Option<(u64, u64)> {
        let c = self.canary.as_ref()?;
        (self.taking
            && c.left == 0
            && self.running == 0
            && self.flushing.is_empty()
            && self.starting.is_empty())
        .then_some((c.rows, self.failed))
    }

    /// Whether the stop (if any) already ended the job.
    pub(crate) fn stopping(&self) -> bool {
        self.end.is_some()
    }

    /// The loop was aborted: nothing more is awaited.
    pub(crate) fn abort(&mut self) {
        self.end = Some(End::Aborted);
    }

    /// Whether the loop ended in a stop or a halt: one that leaves no row undone is the end
    /// of the job, so the rows left must be known.
    pub(crate) fn ends_in_stop(&self) -> bool {
        matches!(self.end, Some(End::Halted(_) | End::Stopped(_)))
    }

    /// Whether rows may be left after a halt or a stop, as far as the schedule knows
    /// (`None`: only the planner's rows not yet taken can tell).
    pub(crate) fn rows_left(&self) -> Option<bool> {
        let not_done = |b: &Result<Planned, FileError>| match b {
            Ok(p) => !self.rules.done.contains(p.item.line as usize),
            Err(_) => true,
        };
        if self.unrecorded > 0 || self.parked > 0 || self.buffer.iter().any(not_done) {
            return Some(true);
        }
        (!self.reading).then_some(false)
    }

    /// Whether a batch the planner still held has a row not done.
    pub(crate) fn any_not_done(&self, b: &PlannedBatch) -> bool {
        b.iter().any(|p| match p {
            Ok(p) => !self.rules.done.contains(p.item.line as usize),
            Err(_) => true,
        })
    }

    /// How the loop ended; `rows_left`: whether rows are left undone (a stop or halt that
    /// leaves none is the end of the job).
    pub(crate) fn end(mut self, rows_left: bool) -> Drive {
        // Rows still running (an abort, a write failure) or never taken have no record.
        self.unrecorded += (self.running + self.parked) as u64;
        let end = match self.end.take() {
            None => End::Complete,
            Some(e @ (End::Halted(_) | End::Stopped(_))) => {
                if rows_left {
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
            asked: Duration::ZERO,
        }
    }

    /// Rows in flight that are only waiting for an activation (they hold no slot).
    fn waiting(&self) -> usize {
        self.rules
            .wait
            .as_ref()
            .map_or(0, |w| w.waiting.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn room(&self) -> bool {
        self.running - self.waiting().min(self.running) < self.rules.concurrency
            && self.parked < MAX_PARKED
            && self.canary.as_ref().is_none_or(|c| c.left != 0)
    }

    /// Stops taking rows and cuts every wait of the rows in flight.
    fn stop(&mut self, end: End, out: &mut Vec<Action>) {
        self.taking = false;
        out.push(Action::CutWaits);
        self.end.get_or_insert(end);
        // Rows not yet spawned never will be.
        let n = self.starting.len();
        self.starting.clear();
        self.running -= n;
        self.unrecorded += n as u64;
    }

    /// Starts a row: at once when its first call reads; once its *started* record has
    /// reached the OS when its first call is a write.
    fn start(&mut self, item: Item, row: Row, seen: Option<Seen>, out: &mut Vec<Action>) {
        self.running += 1;
        let in_doubt = self.rules.in_doubt.contains(item.line as usize);
        if in_doubt || !worker::writes_first(&row, seen.as_ref(), self.rules.mode) {
            out.push(Action::Spawn(Box::new(Start {
                item,
                row,
                seen,
                in_doubt,
                started: false,
            })));
            return;
        }
        self.started_seq += 1;
        out.push(Action::Started {
            line: item.line,
            seq: self.started_seq,
        });
        self.starting.push_back((self.started_seq, item, row, seen));
    }

    /// Spawns the rows whose *started* records are out (`durable` of them).
    fn launch(&mut self, durable: u64, out: &mut Vec<Action>) {
        while self.starting.front().is_some_and(|(s, ..)| *s <= durable) {
            if let Some((_, item, row, seen)) = self.starting.pop_front() {
                out.push(Action::Spawn(Box::new(Start {
                    item,
                    row,
                    seen,
                    in_doubt: false,
                    started: true,
                })));
            }
        }
    }

    /// Takes buffered rows while there is room.
    fn dispatch(&mut self, out: &mut Vec<Action>) {
        while self.taking && self.room() {
            let Some(next) = self.buffer.pop_front() else {
                break;
            };
            self.rules.taken.take();
            let Planned { mut item, seen } = match next {
                Ok(p) => p,
                Err(e) => {
                    self.reading = false;
                    self.buffer.clear();
                    self.stop(End::ReadFailed(e.to_string()), out);
                    break;
                }
            };
            if self.rules.done.contains(item.line as usize) {
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
                    let r = worker::invalid(item, reason, &self.rules.layout);
                    self.record(r, out);
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
                            self.start(item, row, seen, out);
                        }
                    }
                }
            }
        }
    }

    /// Sends a finished row to the recorder; returns its sequence number.
    fn record(&mut self, r: RowResult, out: &mut Vec<Action>) -> u64 {
        self.finished += 1;
        self.last_finish = self.now;
        if r.verdict == Verdict::Failed {
            self.failed += 1;
            self.failures
                .entry((r.http_status, r.error_code))
                .or_insert_with(|| (0, r.message.clone()))
                .0 += 1;
        }
        let run = self.streak.add(&r);
        let checks = self.end.is_none();
        let halt = match (self.rules.halt_after_same_error, self.rules.max_failures) {
            _ if !checks => None,
            (Some(k), _) if run >= k => Some(Halt::SameError {
                run,
                action: r.action.clone(),
                status: r.http_status,
                code: r.error_code,
                message: r.message.clone(),
            }),
            (_, Some(t)) if t.exceeded(self.failed, self.finished) => Some(Halt::MaxFailures {
                failed: self.failed,
                threshold: t,
            }),
            _ => None,
        };
        self.finished_seq += 1;
        out.push(Action::Record {
            row: Box::new(r),
            seq: self.finished_seq,
        });
        if let Some(h) = halt {
            self.stop(End::Halted(h), out);
        }
        self.finished_seq
    }

    /// A worker ended.
    fn finished(&mut self, icc: u128, end: RowEnd, out: &mut Vec<Action>) {
        self.running -= 1;
        match end {
            RowEnd::Recorded { result, after } => {
                let wrote = !matches!(result.verdict, Verdict::Skipped | Verdict::Invalid);
                self.carry.ended(icc, after, wrote);
                let seq = self.record(*result, out);
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
                    // Stopped while rows are still taken: the journal refused the row's
                    // started record, or the deadline refused a request first. The shell
                    // says which with the event that follows (a recorder failure, the
                    // drain or the deadline); until then, the rows stop.
                    Unfinished::Stopped if self.taking => {
                        self.stop(End::Stopped(halt::WINDOW_CLOSED.into()), out);
                    }
                    Unfinished::Stopped => {}
                    Unfinished::Halting { error, action } => {
                        self.stop(End::Halted(Halt::Account { error, action }), out);
                    }
                    Unfinished::Panicked(m) => self.stop(End::Halted(Halt::Panic(m)), out),
                }
            }
        }
    }

    /// Records have reached the OS up to `durable`: their ICCIDs may take their next rows.
    fn released(&mut self, durable: u64, out: &mut Vec<Action>) {
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
                    self.start(item, row, seen, out);
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

    /// After the canary: on, or a stop.
    fn canary_answered(&mut self, answer: AfterCanary, out: &mut Vec<Action>) {
        let Some(c) = self.canary.take() else { return };
        let (rows, failed) = (c.rows, self.failed);
        match answer {
            AfterCanary::GoOn => {}
            AfterCanary::Failed => self.stop(End::Halted(Halt::Canary { rows, failed }), out),
            AfterCanary::Declined => self.stop(
                End::Stopped(
                    "stopped after the canary at the operator's answer; run again with --resume to go on"
                        .into(),
                ),
                out,
            ),
            AfterCanary::Signalled => self.stop(End::Stopped(halt::SIGNALLED.into()), out),
        }
    }

    /// Rows run, or wait for the planner's reads, and nothing useful comes back.
    fn stalled(&self, since_useful: Duration) -> bool {
        (self.running > 0 || (self.reading && self.buffer.is_empty()))
            && self.now.saturating_duration_since(self.last_finish) >= self.rules.stall_timeout
            && since_useful >= self.rules.stall_timeout
    }
}

#[cfg(test)]
mod tests {
    //! The schedule driven event by event: no sockets, no files, no clock but the instants
    //! the tests hand it.

    use super::*;
    use crate::input::{Action as RowAction, Iccid};

    fn layout() -> Layout {
        Layout {
            delimiter: b',',
            headerless: false,
            header: vec!["iccid".into(), "action".into()],
            iccid: 0,
            action: Some(1),
            value: None,
            attribute: None,
            carried: Vec::new(),
            header_raw: b"iccid,action\n".to_vec(),
        }
    }

    fn rules(concurrency: usize) -> Rules {
        Rules {
            layout: layout(),
            concurrency,
            done: Arc::new(FixedBitSet::new()),
            in_doubt: FixedBitSet::new(),
            mode: Mode::Run,
            canary: None,
            max_age: Duration::from_secs(10),
            max_failures: None,
            halt_after_same_error: None,
            stall_timeout: Duration::from_secs(900),
            wait: None,
            taken: Arc::default(),
        }
    }

    /// ICCID number `n` (19 digits, a valid check digit).
    fn iccid(n: u64) -> String {
        let body = format!("894400000{n:09}");
        let check = crate::input::iccid::luhn_check_digit(&body);
        format!("{body}{check}")
    }

    /// Line `line` (2 is the first after the header): suspend SIM `sim`.
    fn row(line: u64, sim: u64) -> Result<Planned, FileError> {
        let icc = iccid(sim);
        Ok(Planned {
            item: Item {
                line,
                fields: vec![icc.clone(), "suspend".into()],
                raw: format!("{icc},suspend\n").into_bytes(),
                parsed: Ok(Row {
                    iccid: Iccid::parse(&icc).unwrap(),
                    action: RowAction::Suspend,
                }),
            },
            seen: None,
        })
    }

    fn key(sim: u64) -> u128 {
        Iccid::parse(&iccid(sim)).unwrap().key()
    }

    /// The end of the row on `line` of SIM `sim`: ok, or failed with `code`.
    fn ended(line: u64, sim: u64, failed: Option<i64>) -> Event {
        let Ok(p) = row(line, sim) else {
            unreachable!()
        };
        let mut r = worker::invalid(
            p.item,
            crate::input::Invalid::new(crate::input::Reason::NoAction, String::new()),
            &layout(),
        );
        r.verdict = if failed.is_some() {
            Verdict::Failed
        } else {
            Verdict::Ok
        };
        r.error_code = failed;
        r.http_status = failed.map(|_| 400);
        r.message = failed.map_or_else(String::new, |c| format!("error {c}"));
        Event::Finished {
            icc: key(sim),
            end: RowEnd::Recorded {
                result: Box::new(r),
                after: None,
            },
        }
    }

    fn spawned(actions: &[Action]) -> Vec<u64> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Spawn(s) => Some(s.item.line),
                _ => None,
            })
            .collect()
    }

    fn recorded(actions: &[Action]) -> Vec<u64> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Record { row, .. } => Some(row.line),
                _ => None,
            })
            .collect()
    }

    fn cut(actions: &[Action]) -> bool {
        actions.iter().any(|a| matches!(a, Action::CutWaits))
    }

    #[test]
    fn rows_of_one_sim_go_in_file_order_each_after_the_record_before_it_is_out() {
        let t = Instant::now();
        let mut s = Schedule::new(rules(4), t);
        // Lines 2 and 4 are SIM 1, line 3 is SIM 2: 2 and 3 start, 4 waits behind 2.
        let a = s.handle(Event::Rows(vec![row(2, 1), row(3, 2), row(4, 1)]), t);
        assert_eq!(spawned(&a), [2, 3]);
        let a = s.handle(ended(2, 1, None), t);
        assert_eq!(recorded(&a), [2]);
        assert!(spawned(&a).is_empty(), "line 4 waits for line 2's record");
        // Line 2's record (sequence 1) reaches the OS: line 4 starts.
        let a = s.handle(
            Event::Durable {
                started: 0,
                finished: 1,
            },
            t,
        );
        assert_eq!(spawned(&a), [4]);
        let a = s.handle(ended(4, 1, None), t);
        let a2 = s.handle(ended(3, 2, None), t);
        assert_eq!((recorded(&a), recorded(&a2)), (vec![4], vec![3]));
        s.handle(Event::InputEnded, t);
        s.handle(
            Event::Durable {
                started: 0,
                finished: 3,
            },
            t,
        );
        assert!(s.over());
        let d = s.end(false);
        assert_eq!((d.end, d.unrecorded), (End::Complete, 0));
    }

    #[test]
    fn no_more_rows_run_than_the_concurrency_and_a_finished_row_frees_its_slot() {
        let t = Instant::now();
        let mut s = Schedule::new(rules(2), t);
        let a = s.handle(Event::Rows((2..8).map(|l| row(l, l)).collect()), t);
        assert_eq!(spawned(&a), [2, 3]);
        assert!(!s.wants_rows(), "no room: the planner's next batch waits");
        let a = s.handle(ended(3, 3, None), t);
        assert_eq!(spawned(&a), [4], "one slot freed, one row started");
    }

    #[test]
    fn rows_the_checkpoint_has_are_passed_over() {
        let t = Instant::now();
        let mut done = FixedBitSet::with_capacity(10);
        done.insert(3);
        let mut s = Schedule::new(
            Rules {
                done: Arc::new(done),
                ..rules(4)
            },
            t,
        );
        let a = s.handle(Event::Rows(vec![row(2, 1), row(3, 2), row(4, 3)]), t);
        assert_eq!(spawned(&a), [2, 4]);
    }

    #[test]
    fn a_streak_of_the_same_error_halts_and_the_sims_waiting_are_left_undone() {
        let t = Instant::now();
        let mut s = Schedule::new(
            Rules {
                halt_after_same_error: Some(3),
                ..rules(8)
            },
            t,
        );
        // SIMs 1-3 fail the same way; SIM 1 has a second row waiting (line 5).
        s.handle(
            Event::Rows(vec![row(2, 1), row(3, 2), row(4, 3), row(5, 1)]),
            t,
        );
        assert!(!cut(&s.handle(ended(2, 1, Some(6002)), t)));
        assert!(!cut(&s.handle(ended(3, 2, Some(6002)), t)));
        let a = s.handle(ended(4, 3, Some(6002)), t);
        assert_eq!(
            recorded(&a),
            [4],
            "the third failure is recorded, then the halt"
        );
        assert!(cut(&a) && !s.taking());
        // Line 2's record out: its SIM's next row does not start after a halt.
        let a = s.handle(
            Event::Durable {
                started: 0,
                finished: 3,
            },
            t,
        );
        assert!(spawned(&a).is_empty());
        assert!(s.over() && s.ends_in_stop());
        assert_eq!(s.rows_left(), Some(true));
        let d = s.end(true);
        assert!(matches!(d.end, End::Halted(Halt::SameError { run: 3, .. })));
        assert_eq!(d.unrecorded, 1, "line 5 has no record");
        assert_eq!(
            d.failures.get(&(Some(400), Some(6002))).map(|f| f.0),
            Some(3)
        );
    }

    #[test]
    fn a_halt_on_the_last_row_is_a_completed_job() {
        let t = Instant::now();
        let mut s = Schedule::new(
            Rules {
                halt_after_same_error: Some(1),
                ..rules(8)
            },
            t,
        );
        s.handle(Event::Rows(vec![row(2, 1)]), t);
        s.handle(Event::InputEnded, t);
        assert!(cut(&s.handle(ended(2, 1, Some(6002)), t)));
        assert_eq!(s.rows_left(), Some(false));
        assert_eq!(s.end(false).end, End::Complete);
    }

    #[test]
    fn the_canary_takes_its_rows_then_waits_for_the_answer() {
        let t = Instant::now();
        let mut s = Schedule::new(
            Rules {
                canary: Some(2),
                ..rules(8)
            },
            t,
        );
        let a = s.handle(Event::Rows((2..6).map(|l| row(l, l)).collect()), t);
        assert_eq!(spawned(&a), [2, 3], "only the canary's rows");
        s.handle(ended(2, 2, None), t);
        assert_eq!(s.canary_due(), None, "a canary row still runs");
        s.handle(ended(3, 3, Some(6002)), t);
        assert_eq!(s.canary_due(), None, "its records are not out yet");
        s.handle(
            Event::Durable {
                started: 0,
                finished: 2,
            },
            t,
        );
        assert_eq!(s.canary_due(), Some((2, 1)));
        // A failed canary off a terminal halts; nothing more starts.
        let a = s.handle(Event::Canary(AfterCanary::Failed), t);
        assert!(cut(&a) && spawned(&a).is_empty());
        let d = s.end(true);
        assert!(matches!(
            d.end,
            End::Halted(Halt::Canary { rows: 2, failed: 1 })
        ));
    }

    #[test]
    fn after_a_good_canary_the_rest_runs() {
        let t = Instant::now();
        let mut s = Schedule::new(
            Rules {
                canary: Some(1),
                ..rules(8)
            },
            t,
        );
        s.handle(Event::Rows((2..5).map(|l| row(l, l)).collect()), t);
        s.handle(ended(2, 2, None), t);
        s.handle(
            Event::Durable {
                started: 0,
                finished: 1,
            },
            t,
        );
        assert_eq!(s.canary_due(), Some((1, 0)));
        let a = s.handle(Event::Canary(AfterCanary::GoOn), t);
        assert_eq!(spawned(&a), [3, 4]);
        assert_eq!(s.canary_due(), None);
    }

    #[test]
    fn a_stop_with_rows_parked_and_starting_records_none_of_them() {
        let t = Instant::now();
        let mut s = Schedule::new(rules(8), t);
        // Line 2 (SIM 1, in doubt: reads first) runs; line 3 (SIM 1) is parked behind it;
        // line 4 (set-attribute writes first) waits for its started record.
        let mut in_doubt = FixedBitSet::with_capacity(8);
        in_doubt.insert(2);
        s.rules.in_doubt = in_doubt;
        let Ok(mut p) = row(4, 2) else { unreachable!() };
        if let Ok(r) = p.item.parsed.as_mut() {
            r.action = RowAction::SetAttribute {
                name: "a".into(),
                value: "b".into(),
            };
        }
        let a = s.handle(Event::Rows(vec![row(2, 1), row(3, 1), Ok(p)]), t);
        assert_eq!(spawned(&a), [2]);
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::Started { line: 4, .. }))
        );
        let a = s.handle(Event::Drain, t);
        assert!(cut(&a) && !s.taking());
        // The running row ends without an outcome; its parked row goes with it.
        let a = s.handle(
            Event::Finished {
                icc: key(1),
                end: RowEnd::Unfinished(Unfinished::Stopped),
            },
            t,
        );
        assert!(recorded(&a).is_empty());
        // The started record comes out after the stop: the row is not spawned.
        assert!(
            spawned(&s.handle(
                Event::Durable {
                    started: 1,
                    finished: 0
                },
                t
            ))
            .is_empty()
        );
        assert!(s.over());
        let d = s.end(true);
        assert_eq!(d.end, End::Stopped(halt::SIGNALLED.into()));
        assert_eq!(
            d.unrecorded, 3,
            "the stopped row, the parked one, the one not started"
        );
    }

    #[test]
    fn a_provider_that_gives_no_useful_answer_for_the_stall_timeout_halts_the_job() {
        let t = Instant::now();
        let mut s = Schedule::new(
            Rules {
                stall_timeout: Duration::from_secs(60),
                ..rules(8)
            },
            t,
        );
        s.handle(Event::Rows(vec![row(2, 1)]), t);
        let later = t + Duration::from_secs(61);
        // Useful answers came lately (429s would not be): no stall.
        let quiet = Event::Tick {
            since_useful: Duration::from_secs(5),
        };
        assert!(!cut(&s.handle(quiet, later)));
        // Not a row finished nor a useful answer for the whole timeout: halt.
        let a = s.handle(
            Event::Tick {
                since_useful: Duration::from_secs(61),
            },
            later,
        );
        assert!(cut(&a));
        let d = s.end(true);
        assert!(matches!(d.end, End::Halted(Halt::Stall(_))));
    }

    #[test]
    fn a_row_finishing_resets_the_stall_clock() {
        let t = Instant::now();
        let mut s = Schedule::new(
            Rules {
                stall_timeout: Duration::from_secs(60),
                ..rules(8)
            },
            t,
        );
        s.handle(Event::Rows(vec![row(2, 1), row(3, 2)]), t);
        let t50 = t + Duration::from_secs(50);
        s.handle(ended(2, 1, None), t50);
        let tick = |s: u64| Event::Tick {
            since_useful: Duration::from_secs(s),
        };
        assert!(!cut(&s.handle(tick(100), t + Duration::from_secs(100))));
        assert!(cut(&s.handle(tick(111), t + Duration::from_secs(111))));
    }
}
