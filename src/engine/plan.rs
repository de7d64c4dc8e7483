//! The planning stage, between the reader and the dispatcher: rows in windows of up to
//! [`WINDOW`] distinct ICCIDs, each window's SIMs read with one list call
//! (`GET /api/v2/sim?iccId=…`), and every row handed on with what was seen of its SIM.
//!
//! Guarantees: windows follow the file's order and hold at most [`WINDOW`] ICCIDs (memory
//! does not grow with the file); a window is read as soon as it is full, the input ends, or
//! no row has come for a moment (no stall at the end of the file); list calls are paced and
//! retried like every other call; a SIM is marked absent only when the provider's answer
//! was complete (every page read) and did not hold it; when the provider cannot list (an
//! error, a filter it ignores, an answer without end) rows go on without a plan and the
//! worker reads each SIM itself; after a stop nothing more is read and rows pass through
//! unplanned. What is seen carries the instant its request left, so the dispatcher can tell
//! a read older than a write to the same SIM (see [`super::carry`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fixedbitset::FixedBitSet;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::Client;
use crate::input::{FileError, Item};
use crate::model::{Attribute, Sim};

use super::reader::Batch;
use super::retry::{GiveUp, RetryPolicy, with_retries};

/// Distinct ICCIDs read by one list call (the contract's limit).
pub(crate) const WINDOW: usize = 100;

/// Pages of one window's answer followed before the answer is deemed endless.
const MAX_PAGES: usize = 20;

/// How long a partial window waits for more rows before it is read.
const LINGER: Duration = Duration::from_millis(20);

/// What is known of a SIM.
#[derive(Debug, Clone)]
pub(crate) enum Known {
    /// The provider's complete answer did not hold it: unknown to this client (6002).
    Absent,
    Sim(Arc<Sim>),
}

/// A SIM's state as seen at `at`, with its attributes when they were read too.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) known: Known,
    pub(crate) attrs: Option<Arc<Vec<Attribute>>>,
    /// When the request that saw it left (or the write that produced it was answered).
    pub(crate) at: Instant,
}

impl Seen {
    pub(crate) fn sim(sim: Sim, at: Instant) -> Self {
        Self {
            known: Known::Sim(Arc::new(sim)),
            attrs: None,
            at,
        }
    }

    /// The SIM, when it is known to exist.
    pub(crate) fn state(&self) -> Option<&Sim> {
        match &self.known {
            Known::Sim(s) => Some(s),
            Known::Absent => None,
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

/// What the planner needs.
pub(crate) struct Planner {
    pub(crate) client: Arc<Client>,
    pub(crate) policy: Arc<RetryPolicy>,
    pub(crate) stop: CancellationToken,
    /// Rows the checkpoint has: not read.
    pub(crate) done: Arc<FixedBitSet>,
    /// Whether to read at all (off: every row passes through unplanned).
    pub(crate) enabled: bool,
    /// Windows read at once: enough for the reads to keep up with the writes (a window
    /// feeds 100 rows, and `concurrency` writes are in flight).
    pub(crate) depth: usize,
}

/// Windows read at once for `concurrency` rows in flight.
pub(crate) fn depth_for(concurrency: usize) -> usize {
    (concurrency.div_ceil(WINDOW) + 2).min(8)
}

/// Starts the planning stage: batches from the reader in, planned batches out.
pub(crate) fn start(p: Planner, input: mpsc::Receiver<Batch>) -> mpsc::Receiver<PlannedBatch> {
    // A window ahead besides the reads in flight: rows are read seconds before their
    // write, not minutes.
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

/// What the planner's loop waits for next.
enum Next {
    Rows(Option<Batch>),
    /// No row came for a moment: read the partial window.
    Lingered,
    Read(Option<PlannedBatch>),
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
        let mut w = Window::default();
        let mut reading: VecDeque<JoinHandle<PlannedBatch>> = VecDeque::new();
        let mut ended = false;
        loop {
            if ended && w.rows.is_empty() && reading.is_empty() {
                return;
            }
            let take = !ended && reading.len() < self.depth;
            let linger = !w.rows.is_empty();
            let next = tokio::select! {
                biased;
                b = async { reading.front_mut().expect("a read").await }, if !reading.is_empty() => {
                    reading.pop_front();
                    Next::Read(b.ok())
                }
                b = input.recv(), if take => Next::Rows(b),
                _ = tokio::time::sleep(LINGER), if take && linger => Next::Lingered,
                // The input ended and every read is out: the last window.
                _ = std::future::ready(()), if ended && reading.is_empty() => Next::Lingered,
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
                Next::Rows(None) => {
                    ended = true;
                    reading.extend(r.spawn_read(&mut w));
                }
                Next::Lingered => reading.extend(r.spawn_read(&mut w)),
                Next::Rows(Some(batch)) => {
                    for item in batch {
                        if let Some(read) = r.add(&mut w, item) {
                            reading.push_back(read);
                        }
                    }
                }
            }
        }
    }
}

impl Reads {
    /// Adds a row to the window; a window that is full (or ends at a file error) goes to be
    /// read.
    fn add(
        &self,
        w: &mut Window,
        item: Result<Item, FileError>,
    ) -> Option<JoinHandle<PlannedBatch>> {
        let key = self.needs_read(&item);
        let mut full = None;
        if let Some((k, _)) = key
            && !w.keys.contains(&k)
            && w.keys.len() == WINDOW
        {
            full = self.spawn_read(w);
        }
        if let Some((k, id)) = key
            && w.keys.insert(k)
        {
            w.ids.push(id.to_owned());
        }
        let failed = item.is_err();
        w.rows.push(item);
        if failed {
            // Nothing follows a file error: read what is there (a full window went before).
            return full.or_else(|| self.spawn_read(w));
        }
        full
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
        if w.rows.is_empty() {
            return None;
        }
        w.keys.clear();
        let ids = std::mem::take(&mut w.ids);
        let rows = std::mem::take(&mut w.rows);
        let r = self.clone();
        // The read's instant is taken here, in file order: later windows never read earlier.
        let at = Instant::now();
        Some(tokio::spawn(async move {
            let seen =
                if r.enabled.load(Ordering::Relaxed) && !ids.is_empty() && !r.stop.is_cancelled() {
                    r.read(&ids).await.map(|m| (m, at))
                } else {
                    None
                };
            rows.into_iter()
                .map(|row| row.map(|item| r.planned(item, seen.as_ref())))
                .collect()
        }))
    }

    /// A row with what its window's read saw of its SIM.
    fn planned(&self, item: Item, seen: Option<&(HashMap<String, Arc<Sim>>, Instant)>) -> Planned {
        let seen = seen.and_then(|(m, at)| {
            let row = item.parsed.as_ref().ok()?;
            if self.done.contains(item.line as usize) {
                return None;
            }
            let known = match m.get(row.iccid.as_str()) {
                Some(s) => Known::Sim(s.clone()),
                None => Known::Absent,
            };
            Some(Seen {
                known,
                attrs: None,
                at: *at,
            })
        });
        Planned { item, seen }
    }

    /// One window's SIMs by ICCID; `None` when the provider could not answer completely
    /// (after an error that will not pass, planning stops for the rest of the job).
    async fn read(&self, ids: &[String]) -> Option<HashMap<String, Arc<Sim>>> {
        match list_sims((&self.client, &self.policy, &self.stop), ids).await {
            Ok(m) => Some(m),
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

/// Every page of the list of `ids` (at most [`WINDOW`]): the SIMs the provider holds, by
/// ICCID. An answer that holds SIMs not asked for, or does not end, is an error: it cannot
/// say which SIMs are absent.
pub(crate) async fn list_sims(
    (c, policy, stop): (&Client, &RetryPolicy, &CancellationToken),
    ids: &[String],
) -> Result<HashMap<String, Arc<Sim>>, GiveUp> {
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut query: Vec<(&str, String)> = ids.iter().map(|i| ("iccId", i.clone())).collect();
    query.push(("pageSize", WINDOW.to_string()));
    let mut found = HashMap::with_capacity(ids.len());
    for _ in 0..MAX_PAGES {
        let page = with_retries(policy, stop, &c.pacer, || c.list_sims(&query)).await?;
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
            _ => return Ok(found),
        }
    }
    Err(GiveUp::Error(crate::api::ApiError::Decode(
        "the list of one window did not end".into(),
    )))
}
