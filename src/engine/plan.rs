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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fixedbitset::FixedBitSet;
use tokio::sync::mpsc;
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
}

/// Starts the planning stage: batches from the reader in, planned batches out.
pub(crate) fn start(p: Planner, input: mpsc::Receiver<Batch>) -> mpsc::Receiver<PlannedBatch> {
    // Two windows ahead: rows are read seconds before their write, not minutes.
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(p.run(input, tx));
    rx
}

/// One window being filled.
#[derive(Default)]
struct Window {
    rows: Vec<Result<Item, FileError>>,
    iccids: HashSet<String>,
}

impl Planner {
    async fn run(mut self, mut input: mpsc::Receiver<Batch>, tx: mpsc::Sender<PlannedBatch>) {
        let mut w = Window::default();
        loop {
            let next = if w.rows.is_empty() {
                input.recv().await
            } else {
                match tokio::time::timeout(LINGER, input.recv()).await {
                    Ok(b) => b,
                    Err(_) => {
                        if !self.flush(&mut w, &tx).await {
                            return;
                        }
                        continue;
                    }
                }
            };
            let Some(batch) = next else { break };
            for item in batch {
                let key = self.needs_read(&item);
                if let Some(k) = &key
                    && !w.iccids.contains(k)
                    && w.iccids.len() == WINDOW
                    && !self.flush(&mut w, &tx).await
                {
                    return;
                }
                let failed = item.is_err();
                w.rows.push(item);
                if let Some(k) = key {
                    w.iccids.insert(k);
                }
                if failed && !self.flush(&mut w, &tx).await {
                    return;
                }
            }
        }
        self.flush(&mut w, &tx).await;
    }

    /// The ICCID a row needs read, if any (a valid row the checkpoint does not have).
    fn needs_read(&self, item: &Result<Item, FileError>) -> Option<String> {
        let item = item.as_ref().ok()?;
        let row = item.parsed.as_ref().ok()?;
        (!self.done.contains(item.line as usize)).then(|| row.iccid.as_str().to_owned())
    }

    /// Reads the window's SIMs and hands its rows on; `false` when the dispatcher is gone.
    async fn flush(&mut self, w: &mut Window, tx: &mpsc::Sender<PlannedBatch>) -> bool {
        if w.rows.is_empty() {
            return true;
        }
        let ids: Vec<String> = w.iccids.drain().collect();
        let seen = if self.enabled && !ids.is_empty() && !self.stop.is_cancelled() {
            self.read(&ids).await
        } else {
            None
        };
        let batch = w
            .rows
            .drain(..)
            .map(|r| {
                r.map(|item| {
                    let seen = seen.as_ref().and_then(|(m, at)| {
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
                })
            })
            .collect();
        tx.send(batch).await.is_ok()
    }

    /// One window's SIMs by ICCID, and when the read left; `None` when the provider could
    /// not answer completely (planning then stops for the rest of the job).
    async fn read(&mut self, ids: &[String]) -> Option<(HashMap<String, Arc<Sim>>, Instant)> {
        let at = Instant::now();
        match self.list(ids).await {
            Ok(m) => Some((m, at)),
            // Retries ran out, or the job stops or halts: this window goes unplanned.
            Err(GiveUp::Error(e))
                if e.retryable() && !matches!(e, crate::api::ApiError::TooLarge { .. }) =>
            {
                None
            }
            Err(GiveUp::Interrupted | GiveUp::Halting(_)) => None,
            Err(GiveUp::Error(e)) => {
                tracing::warn!(
                    "cannot read SIMs in batches ({e}); every row reads its own SIM from now on"
                );
                self.enabled = false;
                None
            }
        }
    }

    /// Every page of the list of `ids`.
    async fn list(&self, ids: &[String]) -> Result<HashMap<String, Arc<Sim>>, GiveUp> {
        let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut query: Vec<(&str, String)> = ids.iter().map(|i| ("iccId", i.clone())).collect();
        query.push(("pageSize", WINDOW.to_string()));
        let mut found = HashMap::with_capacity(ids.len());
        let (c, policy, stop) = (&self.client, &self.policy, &self.stop);
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
}
