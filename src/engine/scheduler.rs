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
}

pub struct Dispatch {
    pub client: Arc<Client>,
    pub policy: Arc<RetryPolicy>,
    pub layout: Layout,
    pub concurrency: usize,
    pub done: FixedBitSet,
}

type Done = (String, Option<RowResult>);

/// Runs the job until the input is exhausted or a stop.
pub async fn drive(
    d: Dispatch,
    mut input: mpsc::Receiver<Result<Item, FileError>>,
    rec: &mut Recorder,
    stops: Stops,
) -> End {
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(d.concurrency * 2 + 16);
    // Rows only stop when this token is cancelled: the signal's drain token, or our own
    // halt; workers watch it between attempts.
    let stop_rows = stops.drain.child_token();
    let mut busy: HashMap<String, VecDeque<(Item, Row)>> = HashMap::new();
    let (mut running, mut parked) = (0usize, 0usize);
    let mut reading = true;
    let mut taking = true;
    let mut end: Option<End> = None;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = stops.deadline;

    let spawn = |item: Item, row: Row, running: &mut usize| {
        *running += 1;
        let (client, policy, tx, stop) = (
            d.client.clone(),
            d.policy.clone(),
            done_tx.clone(),
            stop_rows.clone(),
        );
        tokio::spawn(async move {
            let r = worker::execute(&client, &item, &row, &policy, &stop).await;
            let _ = tx.send((row.iccid.as_str().to_owned(), r)).await;
        });
    };

    loop {
        if running == 0 && (!taking || (!reading && parked == 0)) {
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
                if done_rx.is_empty() && let Err(e) = rec.flush() {
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
            item = input.recv(), if taking && reading && running < d.concurrency && parked < MAX_PARKED => {
                match item {
                    None => reading = false,
                    Some(Err(e)) => {
                        reading = false;
                        taking = false;
                        end = Some(End::ReadFailed(e.to_string()));
                    }
                    Some(Ok(item)) => {
                        if d.done.contains(item.line as usize) {
                            continue;
                        }
                        match item.parsed.clone() {
                            Err(reason) => {
                                let r = worker::invalid(&item, &reason, &d.layout);
                                debug_assert_eq!(r.verdict, Verdict::Invalid);
                                if let Err(e) = rec.record(&r) {
                                    end = Some(End::WriteFailed(e.to_string()));
                                    break;
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
                }
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
