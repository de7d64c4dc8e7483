//! The dispatcher: takes rows from the reader, skips those the checkpoint says are done,
//! keeps the rows of one ICCID in file order with never two in flight, runs up to
//! `concurrency` rows at once, and hands every finished row to the [`Recorder`].
//!
//! Guarantees: a row is dispatched only after every earlier row of its ICCID has been
//! recorded; rows waiting behind a busy ICCID are bounded (reading pauses past
//! [`MAX_PARKED`]), so memory does not grow with the file; on drain (signal, deadline,
//! halt) no new row starts and rows in flight finish their current call; on abort nothing
//! more is awaited.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use fixedbitset::FixedBitSet;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::Client;
use crate::input::{FileError, Item, Layout, Row};

use super::outcome::{RowResult, Verdict};
use super::recorder::Recorder;
use super::retry::RetryPolicy;
use super::worker;

/// Rows held back behind a busy ICCID before reading pauses.
pub const MAX_PARKED: usize = 4096;

/// Why the loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every row was read and finished.
    Complete,
    /// Stopped taking rows (signal or deadline), in-flight rows finished.
    Stopped(String),
    /// The job was halted by an error every row would share.
    Halted(String),
    /// Aborted at once.
    Aborted,
    /// The outputs could not be written.
    WriteFailed(String),
    /// The input could not be read further.
    ReadFailed(String),
}

/// When to stop taking new rows.
pub struct Stops {
    pub drain: CancellationToken,
    pub abort: CancellationToken,
    pub deadline: Option<tokio::time::Instant>,
    /// Failed rows that halt the job (`--max-failures`), as a count or a share.
    pub max_failures: Option<super::Threshold>,
    /// Consecutive rows failing the same way that halt the job (`--halt-after-same-error`).
    pub halt_after_same_error: Option<u32>,
}

pub struct Dispatch {
    pub client: Arc<Client>,
    pub policy: Arc<RetryPolicy>,
    pub layout: Layout,
    pub concurrency: usize,
    pub done: FixedBitSet,
    /// `--wait-active`.
    pub wait: Option<Arc<worker::WaitActive>>,
    /// On resume: rows above no done row, yet below the last one, were in flight when the
    /// previous run stopped; they are reconciled before they are written.
    pub in_doubt_below: u64,
}

type Done = (String, Option<RowResult>);

/// Rows travel from the reader in batches, so the reader and the dispatcher wake each other
/// once per batch rather than once per row.
pub type Batch = Vec<Result<Item, FileError>>;

/// Rows per batch from the reader.
pub const BATCH: usize = 128;

/// Consecutive failed rows with the same error: the streak that looks systemic.
#[derive(Default)]
struct Streak {
    key: Option<(Option<u16>, Option<i64>)>,
    len: u32,
}

impl Streak {
    /// Counts a finished row; returns the streak's length when `r` extends it.
    fn add(&mut self, r: &RowResult) -> u32 {
        match r.verdict {
            Verdict::Failed => {
                let key = Some((r.http_status, r.error_code));
                if self.key == key {
                    self.len += 1;
                } else {
                    self.key = key;
                    self.len = 1;
                }
                self.len
            }
            // Invalid rows say nothing about the API; they neither extend nor break a streak.
            Verdict::Invalid => 0,
            Verdict::Ok | Verdict::Skipped => {
                self.len = 0;
                0
            }
        }
    }
}

/// Rows in flight that are only waiting for an activation (they hold no slot).
fn waiting(d: &Dispatch) -> usize {
    d.wait
        .as_ref()
        .map_or(0, |w| w.waiting.load(std::sync::atomic::Ordering::SeqCst))
}

/// Runs the job until the input is exhausted or a stop.
pub async fn drive(
    d: Dispatch,
    mut input: mpsc::Receiver<Batch>,
    rec: &mut Recorder,
    stops: Stops,
) -> End {
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(d.concurrency * 2 + 16);
    // Rows only stop when this token is cancelled: the signal's drain token, or our own
    // halt; workers watch it between attempts.
    let stop_rows = stops.drain.child_token();
    let mut busy: HashMap<String, VecDeque<(Item, Row)>> = HashMap::new();
    let mut buffer: VecDeque<Result<Item, FileError>> = VecDeque::with_capacity(BATCH);
    let (mut running, mut parked) = (0usize, 0usize);
    let mut reading = true;
    let mut taking = true;
    let mut end: Option<End> = None;
    let mut streak = Streak::default();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = stops.deadline;

    let spawn = |item: Item, row: Row, running: &mut usize| {
        *running += 1;
        let (client, policy, tx, stop, wait) = (
            d.client.clone(),
            d.policy.clone(),
            done_tx.clone(),
            stop_rows.clone(),
            d.wait.clone(),
        );
        let in_doubt = item.line < d.in_doubt_below;
        tokio::spawn(async move {
            let key = row.iccid.as_str().to_owned();
            let r = worker::execute(
                &client,
                item,
                row,
                &policy,
                &stop,
                wait.as_deref(),
                in_doubt,
            )
            .await;
            let _ = tx.send((key, r)).await;
        });
    };

    'outer: loop {
        // Dispatch buffered rows while there is room.
        while taking && running - waiting(&d) < d.concurrency && parked < MAX_PARKED {
            let Some(next) = buffer.pop_front() else {
                break;
            };
            let mut item = match next {
                Ok(item) => item,
                Err(e) => {
                    reading = false;
                    taking = false;
                    buffer.clear();
                    end = Some(End::ReadFailed(e.to_string()));
                    break;
                }
            };
            if d.done.contains(item.line as usize) {
                continue;
            }
            match std::mem::replace(&mut item.parsed, Err(String::new())) {
                Err(reason) => {
                    let r = worker::invalid(item, reason, &d.layout);
                    if let Err(e) = rec.record(&r) {
                        end = Some(End::WriteFailed(e.to_string()));
                        break 'outer;
                    }
                }
                Ok(row) => {
                    let key = row.iccid.as_str().to_owned();
                    match busy.get_mut(&key) {
                        Some(q) => {
                            q.push_back((item, row));
                            parked += 1;
                        }
                        None => {
                            busy.insert(key, VecDeque::new());
                            spawn(item, row, &mut running);
                        }
                    }
                }
            }
        }
        if running == 0 && (!taking || (!reading && parked == 0 && buffer.is_empty())) {
            break;
        }
        tokio::select! {
            biased;
            _ = stops.abort.cancelled() => {
                end = Some(End::Aborted);
                break;
            }
            Some((icc, result)) = done_rx.recv() => {
                running -= 1;
                match result {
                    Some(r) => {
                        if r.halts_job && end.is_none() {
                            end = Some(End::Halted(r.message.clone()));
                            taking = false;
                            stop_rows.cancel();
                        }
                        if let Err(e) = rec.record(&r) {
                            end = Some(End::WriteFailed(e.to_string()));
                            break;
                        }
                        let run = streak.add(&r);
                        if end.is_none() && let Some(k) = stops.halt_after_same_error && run >= k {
                            end = Some(End::Halted(format!(
                                "the last {run} rows all failed the same way ({}); this looks like a mistake in the job (a wrong package or portfolio id?) rather than a problem of single SIMs. Fix the input and run again with --resume, or raise --halt-after-same-error",
                                r.message
                            )));
                            taking = false;
                            stop_rows.cancel();
                        }
                        if end.is_none() && let Some(t) = &stops.max_failures && t.exceeded(rec.run.failed, rec.run.total()) {
                            end = Some(End::Halted(format!("{} rows failed, past --max-failures {}", rec.run.failed, t)));
                            taking = false;
                            stop_rows.cancel();
                        }
                    }
                    None => taking = false,
                }
                // The next row of this ICCID may go now that this one is recorded.
                let next = busy.get_mut(&icc).and_then(VecDeque::pop_front);
                match next {
                    Some((item, row)) if taking => {
                        parked -= 1;
                        spawn(item, row, &mut running);
                    }
                    _ => {
                        busy.remove(&icc);
                    }
                }
                if done_rx.is_empty() && let Err(e) = rec.flush_if_due() {
                    end = Some(End::WriteFailed(e.to_string()));
                    break;
                }
            }
            _ = stops.drain.cancelled(), if taking => {
                taking = false;
                end.get_or_insert(End::Stopped("interrupted by a signal".into()));
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if taking && deadline.is_some() => {
                taking = false;
                stop_rows.cancel();
                end.get_or_insert(End::Stopped("the run window closed (--until / --max-duration)".into()));
            }
            batch = input.recv(), if taking && reading && buffer.is_empty() && running - waiting(&d) < d.concurrency && parked < MAX_PARKED => {
                match batch {
                    None => reading = false,
                    Some(b) => buffer.extend(b),
                }
            }
            _ = async { match &d.wait { Some(w) => w.freed.notified().await, None => std::future::pending().await } } => {
                // A row started waiting for its activation: its slot is free.
            }
            _ = tick.tick() => {
                if let Err(e) = rec.tick(d.client.pacer.throttled_count()) {
                    end = Some(End::WriteFailed(e.to_string()));
                    break;
                }
            }
        }
    }
    end.unwrap_or(End::Complete)
}
