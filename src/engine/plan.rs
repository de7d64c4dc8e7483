//! The planning stage, between the reader and the dispatcher: rows in windows of a bounded
//! number of rows, each window's SIMs read with one list call (`GET /api/v2/sim?iccId=…`)
//! shortly before the window's rows are dispatched, and every row handed on with what was
//! seen of its SIM and when.
//!
//! Guarantees:
//! - **Reads close to their use.** A window is read only when the rows handed on before it
//!   and not yet taken by the dispatcher would last less than a quarter of `--max-read-age`
//!   at the rate rows are taken, and a window holds at most the rows taken in 0.6 of it (and
//!   at most [`WINDOW`]); so a row's read is at most about 0.85 of the bound old when the row
//!   is decided (a read's age counts from when its request left, after pacing; the rate is
//!   measured once the workers are filled). The dispatcher checks every read's age before it decides on it
//!   (see [`super::carry`]): this stage only keeps re-reads rare.
//! - **Memory does not grow with the file.** Windows close by row count — invalid rows,
//!   rows the checkpoint has and repeated ICCIDs count — and at most `depth` windows are
//!   read at once.
//! - **A list's silence is not absence.** A SIM missing from a window's answer goes on
//!   without a plan (the worker reads it with its own GET, whose 404 alone says 6002). A
//!   window answered with clearly fewer SIMs than it asked for (a list that honours one
//!   `iccId`, or leaves SIMs out) turns planning off for the rest of the job, with one
//!   warning: every row reads its own SIM.
//! - When the provider cannot list (an error, a filter it ignores, an answer without end)
//!   rows go on without a plan; after a stop nothing more is read and rows pass through
//!   unplanned. A window is read as soon as it may be and is full, the input ends, or no row
//!   has come for a moment (no stall at the end of the file); list calls are paced and
//!   retried like every other call.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fixedbitset::FixedBitSet;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::Client;
use crate::input::{FileError, Item};
use crate::model::{Attribute, Sim};

use super::reader::Batch;
use super::retry::{GiveUp, RetryPolicy, with_retries};

/// Distinct ICCIDs read by one list call (the provider's largest batch read), and the most
/// rows a window holds.
pub(crate) const WINDOW: usize = super::provider::Capabilities::ESEYE_V2.max_batch_read;

/// Pages of one window's answer followed before the answer is deemed endless.
const MAX_PAGES: usize = 20;

/// How long a partial window waits for more rows before it is read.
const LINGER: Duration = Duration::from_millis(20);

/// Where a state came from: what the dispatcher may believe of it differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A window's list call: a snapshot that may lag writes, this job's own included.
    List,
    /// The SIM's own read (`GET /api/v2/sim/{iccId}`).
    Get,
    /// The answer to this job's write (or the state a row left when it wrote nothing).
    Write,
}

/// A SIM's state as seen at `at`, with its attributes when they were read too.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) sim: Arc<Sim>,
    pub(crate) attrs: Option<Arc<Vec<Attribute>>>,
    /// When the request that saw it left (or the write that produced it was answered).
    pub(crate) at: Instant,
    pub(crate) source: Source,
}

impl Seen {
    pub(crate) fn new(sim: Sim, at: Instant, source: Source) -> Self {
        Self {
            sim: Arc::new(sim),
            attrs: None,
            at,
            source,
        }
    }
}

/// A row on its way to the dispatcher, with what the plan saw of its SIM.
#[derive(Debug)]
pub(crate) struct Planned {
    pub(crate) item: Item,
    pub(crate) seen: Option<Seen>,
}

/// Planned rows, in file order, as the dispatcher takes them.
pub(crate) type PlannedBatch = Vec<Result<Planned, FileError>>;

/// Rows the dispatcher has taken off the planner's hands (every row, whatever becomes of
/// it): the planner reads its next window when few are left.
#[derive(Debug)]
pub(crate) struct Taken {
    n: AtomicU64,
    /// The count at which the planner wants to be woken.
    wake_at: AtomicU64,
    notify: Notify,
}

impl Default for Taken {
    fn default() -> Self {
        Self {
            n: AtomicU64::new(0),
            wake_at: AtomicU64::new(u64::MAX),
            notify: Notify::new(),
        }
    }
}

impl Taken {
    /// The dispatcher took one row.
    pub(crate) fn take(&self) {
        let n = self.n.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.wake_at.load(Ordering::Acquire) {
            self.wake_at.store(u64::MAX, Ordering::Release);
            self.notify.notify_one();
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.n.load(Ordering::Acquire)
    }

    /// Until at least `n` rows are taken.
    async fn until(&self, n: u64) {
        loop {
            let woken = self.notify.notified();
            self.wake_at.store(n, Ordering::Release);
            if self.count() >= n {
                self.wake_at.store(u64::MAX, Ordering::Release);
                return;
            }
            woken.await;
        }
    }
}

/// What the planner needs.
pub(crate) struct Planner {
    pub(crate) client: Arc<Client>,
    pub(crate) policy: Arc<RetryPolicy>,
    pub(crate) stop: CancellationToken,
    /// Rows the checkpoint has: not read.
    pub(crate) done: Arc<FixedBitSet>,
    /// Whether to read at all (off: every row passes through unplanned).
    pub(crate) enabled: bool,
    /// Windows read at once at most.
    pub(crate) depth: usize,
    /// `--max-read-age`: how old a read may be when a row is decided on it.
    pub(crate) max_age: Duration,
    /// What the dispatcher has taken.
    pub(crate) taken: Arc<Taken>,
    /// Rows in flight at once (the dispatcher takes as many at the start).
    pub(crate) concurrency: usize,
}

/// Windows read at once for `concurrency` rows in flight.
pub(crate) fn depth_for(concurrency: usize) -> usize {
    (concurrency.div_ceil(WINDOW) + 2).min(8)
}

/// Starts the planning stage: batches from the reader in, planned batches out.
pub(crate) fn start(p: Planner, input: mpsc::Receiver<Batch>) -> mpsc::Receiver<PlannedBatch> {
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(p.run(input, tx));
    rx
}

/// One window being filled.
#[derive(Default)]
struct Window {
    rows: Vec<Result<Item, FileError>>,
    /// The window's distinct ICCIDs, as keys and as text for the query.
    keys: HashSet<u128>,
    ids: Vec<String>,
    /// Nothing more goes in: it is full, the input ended, a file error ends it, or no row
    /// came for a moment.
    closed: bool,
}

/// What one window's read needs (cheap to clone into its task).
#[derive(Clone)]
struct Reads {
    client: Arc<Client>,
    policy: Arc<RetryPolicy>,
    stop: CancellationToken,
    done: Arc<FixedBitSet>,
    enabled: Arc<AtomicBool>,
}

/// How fast the dispatcher takes rows, and so how large a window may be and how early it
/// is read.
struct Pace {
    max_age: Duration,
    /// Rows the dispatcher takes at once to fill its workers: not a rate, so the measure
    /// starts after them.
    fill: Option<u64>,
    /// The last sample of [`Taken`]: when, and the count then.
    sampled: (Instant, u64),
    /// Rows taken per second, smoothed (`None` until a second has passed).
    measured: Option<f64>,
}

impl Pace {
    fn new(max_age: Duration, fill: u64) -> Self {
        Self {
            max_age,
            fill: Some(fill),
            sampled: (Instant::now(), 0),
            measured: None,
        }
    }

    /// Takes a sample of the dispatcher's count.
    fn sample(&mut self, taken: u64) {
        if let Some(fill) = self.fill {
            if taken < fill {
                return;
            }
            self.fill = None;
            self.sampled = (Instant::now(), taken);
            return;
        }
        let (at, n) = self.sampled;
        let dt = at.elapsed().as_secs_f64();
        if dt >= 1.0 {
            let now = taken.saturating_sub(n) as f64 / dt;
            self.measured = Some(self.measured.map_or(now, |m| 0.5 * m + 0.5 * now));
            self.sampled = (Instant::now(), taken);
        }
    }

    /// Rows taken per second: what was measured (once a second has passed), else the rate
    /// requests may go at (unbounded without a limit). A job slower than its pace (a share of
    /// an account, a slow provider) gets windows its rows use up within the bound. Rows
    /// starved by slow reads do not shrink the windows for long: the lookahead is a time, so
    /// a window that is used up at once makes the measured rate, and the next window, larger.
    fn rows_per_second(&self, pacing: Option<f64>) -> f64 {
        match (self.measured, pacing) {
            (Some(m), _) => m.max(0.1),
            (None, Some(r)) => r,
            (None, None) => f64::INFINITY,
        }
    }

    /// Rows a window holds: those taken in 0.6 of the bound (with the lead, a row's read is
    /// about 0.85 of the bound old when it is decided).
    fn window_rows(&self, rate: f64) -> usize {
        let rows = rate * self.max_age.as_secs_f64() * 0.6;
        if rows.is_finite() {
            (rows as usize).clamp(1, WINDOW)
        } else {
            WINDOW
        }
    }

    /// Rows handed on and not yet taken below which the next window is read: those taken in
    /// a quarter of the bound.
    fn lead_rows(&self, rate: f64) -> u64 {
        let rows = rate * self.max_age.as_secs_f64() / 4.0;
        if rows.is_finite() {
            (rows.ceil() as u64).max(1)
        } else {
            u64::MAX
        }
    }
}

/// What the planner's loop waits for next.
enum Next {
    Rows(Option<Batch>),
    /// No row came for a moment: read the partial window.
    Lingered,
    Read(Option<PlannedBatch>),
    /// The dispatcher has taken enough: the next window may be read.
    Taken,
}

impl Planner {
    async fn run(self, mut input: mpsc::Receiver<Batch>, tx: mpsc::Sender<PlannedBatch>) {
        let r = Reads {
            client: self.client,
            policy: self.policy,
            stop: self.stop,
            done: self.done,
            enabled: Arc::new(AtomicBool::new(self.enabled)),
        };
        let taken = self.taken;
        let mut pace = Pace::new(self.max_age, self.concurrency as u64);
        let mut w = Window::default();
        // Rows of the windows read (or being read): handed on, or about to be.
        let mut handed: u64 = 0;
        let mut queue: VecDeque<Result<Item, FileError>> = VecDeque::new();
        let mut reading: VecDeque<JoinHandle<PlannedBatch>> = VecDeque::new();
        let mut ended = false;
        loop {
            if ended && queue.is_empty() && w.rows.is_empty() && reading.is_empty() {
                return;
            }
            pace.sample(taken.count());
            let rate = pace.rows_per_second(r.client.pacer.pace());
            let limit = pace.window_rows(rate);
            // Rows from the reader go into the window until it closes.
            while !w.closed
                && let Some(item) = queue.pop_front()
            {
                r.add(&mut w, item, limit);
            }
            if ended && queue.is_empty() && !w.rows.is_empty() {
                w.closed = true;
            }
            let planning = r.enabled.load(Ordering::Relaxed) && !r.stop.is_cancelled();
            let ahead = handed.saturating_sub(taken.count());
            let lead = pace.lead_rows(rate);
            let may_read = w.closed && reading.len() < self.depth && (!planning || ahead <= lead);
            if may_read {
                handed += w.rows.len() as u64;
                reading.extend(r.spawn_read(&mut w));
                continue;
            }
            let take = !ended && queue.is_empty() && !w.closed;
            let linger = take && !w.rows.is_empty();
            let wait_taken = w.closed && reading.len() < self.depth && planning;
            let next = tokio::select! {
                biased;
                b = async { reading.front_mut().expect("a read").await }, if !reading.is_empty() => {
                    reading.pop_front();
                    Next::Read(b.ok())
                }
                () = taken.until(handed.saturating_sub(lead)), if wait_taken => Next::Taken,
                () = r.stop.cancelled(), if wait_taken => Next::Taken,
                b = input.recv(), if take => Next::Rows(b),
                () = tokio::time::sleep(LINGER), if linger => Next::Lingered,
            };
            match next {
                Next::Read(Some(batch)) => {
                    if tx.send(batch).await.is_err() {
                        return;
                    }
                }
                // A read's task died (a bug): the job must not pass for complete without
                // its rows, so the input ends here in an error.
                Next::Read(None) => {
                    let bug = FileError::Unreadable {
                        path: "(the planning stage)".into(),
                        source: std::io::Error::other("a read of SIM states panicked"),
                    };
                    let _ = tx.send(vec![Err(bug)]).await;
                    return;
                }
                Next::Rows(None) => ended = true,
                Next::Rows(Some(batch)) => queue.extend(batch),
                Next::Lingered => w.closed = true,
                Next::Taken => {}
            }
        }
    }
}

impl Reads {
    /// Adds a row to the window; the window closes when it holds `limit` rows or
    /// [`WINDOW`] ICCIDs, or at a file error (nothing follows it).
    fn add(&self, w: &mut Window, item: Result<Item, FileError>, limit: usize) {
        if let Some((k, id)) = self.needs_read(&item)
            && w.keys.insert(k)
        {
            w.ids.push(id.to_owned());
        }
        let failed = item.is_err();
        w.rows.push(item);
        w.closed = failed || w.rows.len() >= limit || w.keys.len() >= WINDOW;
    }

    /// The ICCID a row needs read, if any (a valid row the checkpoint does not have).
    fn needs_read<'i>(&self, item: &'i Result<Item, FileError>) -> Option<(u128, &'i str)> {
        let item = item.as_ref().ok()?;
        let row = item.parsed.as_ref().ok()?;
        (!self.done.contains(item.line as usize)).then(|| (row.iccid.key(), row.iccid.as_str()))
    }

    /// Starts the read of the window's SIMs; its task hands back the window's rows with
    /// what was seen.
    fn spawn_read(&self, w: &mut Window) -> Option<JoinHandle<PlannedBatch>> {
        let ids = std::mem::take(&mut w.ids);
        let rows = std::mem::take(&mut w.rows);
        w.keys.clear();
        w.closed = false;
        if rows.is_empty() {
            return None;
        }
        let r = self.clone();
        Some(tokio::spawn(async move {
            let asked = Instant::now();
            let seen =
                if r.enabled.load(Ordering::Relaxed) && !ids.is_empty() && !r.stop.is_cancelled() {
                    r.read(&ids).await
                } else {
                    None
                };
            rows.into_iter()
                .map(|row| {
                    row.map(|item| {
                        let seen = seen
                            .as_ref()
                            .and_then(|(m, sent)| r.seen(&item, m, sent.unwrap_or(asked)));
                        Planned { item, seen }
                    })
                })
                .collect()
        }))
    }

    /// What the window's read saw of a row's SIM: nothing when the list did not hold it
    /// (the worker reads it itself) or the checkpoint has the row.
    fn seen(&self, item: &Item, found: &HashMap<String, Arc<Sim>>, at: Instant) -> Option<Seen> {
        let row = item.parsed.as_ref().ok()?;
        if self.done.contains(item.line as usize) {
            return None;
        }
        let sim = found.get(row.iccid.as_str())?;
        Some(Seen {
            sim: sim.clone(),
            attrs: None,
            at,
            source: Source::List,
        })
    }

    /// One window's SIMs by ICCID; `None` when the provider could not answer completely
    /// (after an error that will not pass, or an answer that leaves out most of what was
    /// asked, planning stops for the rest of the job).
    async fn read(&self, ids: &[String]) -> Option<(HashMap<String, Arc<Sim>>, Option<Instant>)> {
        let via = Via {
            client: &self.client,
            policy: &self.policy,
            stop: &self.stop,
        };
        match list_sims_sent(via, ids).await {
            Ok((m, sent)) if short(m.len(), ids.len()) => {
                if self.enabled.swap(false, Ordering::Relaxed) {
                    tracing::warn!(
                        "the provider's list answered {} of {} SIMs asked for (it may honour only one iccId, or leave out SIMs it has not indexed yet): every row reads its own SIM from now on",
                        m.len(),
                        ids.len()
                    );
                }
                // What it did answer is as good as any list view.
                Some((m, sent))
            }
            Ok(found) => Some(found),
            // Retries ran out, or the job stops or halts: this window goes unplanned.
            Err(GiveUp::Error(e))
                if e.retryable() && !matches!(e, crate::api::ApiError::TooLarge { .. }) =>
            {
                None
            }
            Err(GiveUp::Interrupted | GiveUp::Halting(_)) => None,
            Err(GiveUp::Error(e)) => {
                if self.enabled.swap(false, Ordering::Relaxed) {
                    tracing::warn!(
                        "cannot read SIMs in batches ({e}); every row reads its own SIM from now on"
                    );
                }
                None
            }
        }
    }
}

/// Whether a list's answer of `found` SIMs is clearly short of the `asked` ones: fewer than
/// half of four or more. (A few SIMs unknown to the account are no sign; most of a window
/// missing is a list that does not do what it seems to.)
pub(crate) fn short(found: usize, asked: usize) -> bool {
    asked >= 4 && found * 2 < asked
}

/// How a read goes out: through this client, retried by this policy, until this stop.
#[derive(Clone, Copy)]
pub(crate) struct Via<'a> {
    pub(crate) client: &'a Client,
    pub(crate) policy: &'a RetryPolicy,
    pub(crate) stop: &'a CancellationToken,
}

/// Reads on its own each of `ids` that `found` (a list's answer) does not hold, and adds it:
/// a list's silence is not absence — only the SIM's own GET answering 404 (6002) leaves it
/// out.
pub(crate) async fn confirm_missing(
    via: Via<'_>,
    ids: &[String],
    found: &mut HashMap<String, Arc<Sim>>,
) -> Result<(), GiveUp> {
    let Via {
        client: c,
        policy,
        stop,
    } = via;
    let missing: Vec<&String> = ids.iter().filter(|i| !found.contains_key(*i)).collect();
    for icc in missing {
        match with_retries(policy, stop, &c.pacer, || c.get_sim(icc)).await {
            Ok(got) => {
                found.insert(icc.clone(), Arc::new(got.value));
            }
            Err(GiveUp::Error(e)) if c.is_absent(&e) => {}
            Err(g) => return Err(g),
        }
    }
    Ok(())
}

/// Every page of the list of `ids` (at most [`WINDOW`]): the SIMs the provider holds, by
/// ICCID. An answer that holds SIMs not asked for, or does not end, is an error: it cannot
/// say which SIMs are absent.
pub(crate) async fn list_sims(
    via: Via<'_>,
    ids: &[String],
) -> Result<HashMap<String, Arc<Sim>>, GiveUp> {
    list_sims_sent(via, ids).await.map(|(found, _)| found)
}

/// [`list_sims`], with when its first page's request left (what it says is no older).
pub(crate) async fn list_sims_sent(
    via: Via<'_>,
    ids: &[String],
) -> Result<(HashMap<String, Arc<Sim>>, Option<Instant>), GiveUp> {
    let Via {
        client: c,
        policy,
        stop,
    } = via;
    if !c.lists_by_iccid() {
        // No list by ICCIDs: each SIM is read on its own, absent only when its read says so.
        let mut found = HashMap::with_capacity(ids.len());
        let started = Instant::now();
        confirm_missing(via, ids, &mut found).await?;
        return Ok((found, Some(started)));
    }
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut query: Vec<(&str, String)> = ids.iter().map(|i| ("iccId", i.clone())).collect();
    query.push(("pageSize", WINDOW.to_string()));
    let mut found = HashMap::with_capacity(ids.len());
    let mut first_sent = None;
    for _ in 0..MAX_PAGES {
        let page = with_retries(policy, stop, &c.pacer, || c.list_sims(&query)).await?;
        first_sent.get_or_insert(page.sent);
        for sim in page.value.data {
            if !wanted.contains(sim.icc_id.as_str()) {
                // The filter was ignored: this answer cannot say which SIMs are absent.
                return Err(GiveUp::Error(crate::api::ApiError::Decode(
                    "the list answered SIMs that were not asked for".into(),
                )));
            }
            found
                .entry(sim.icc_id.clone())
                .or_insert_with(|| Arc::new(sim));
        }
        match page.value.next_page_token {
            Some(t) if !t.is_empty() => {
                query.retain(|(k, _)| *k != "pageToken");
                query.push(("pageToken", t));
            }
            _ => return Ok((found, first_sent)),
        }
    }
    Err(GiveUp::Error(crate::api::ApiError::Decode(
        "the list of one window did not end".into(),
    )))
}
