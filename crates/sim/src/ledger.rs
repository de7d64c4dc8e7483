//! The simulator's memory of what happened: every applied mutation (the ledger) and
//! request counters (the stats), served under `/__sim/` for tests and rehearsals.
//!
//! Guarantees: a mutation is in the ledger before its response is sent, with its field,
//! old and new value, so a test can replay the ledger over the seed and reach the live state,
//! or prove that no attribute was created twice.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One applied change to one field of one SIM or attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    /// Its place in the ledger (from 1).
    pub seq: u64,
    /// When it was applied (RFC 3339).
    pub at: String,
    /// The client that applied it.
    pub client: String,
    /// The SIM's ICCID.
    pub icc_id: String,
    /// `sim`, `attribute.create`, `attribute.update`, `attribute.delete`.
    pub kind: String,
    /// The field changed (`status`, or the attribute's name).
    pub field: String,
    /// Its value before.
    pub old: Value,
    /// Its value after.
    pub new: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The attribute's id, for an attribute change.
    pub icc_attribute_id: Option<i64>,
    /// The id of the request that applied it.
    pub request_id: String,
}

/// The ledger, bounded by `limit` (older entries dropped and counted).
pub(crate) struct Ledger {
    entries: Mutex<std::collections::VecDeque<LedgerEntry>>,
    seq: AtomicU64,
    dropped: AtomicU64,
    limit: usize,
}

impl Ledger {
    pub(crate) fn new(limit: usize, restored: Vec<LedgerEntry>) -> Self {
        let seq = restored.last().map_or(0, |e| e.seq);
        Self {
            entries: Mutex::new(restored.into()),
            seq: AtomicU64::new(seq),
            dropped: AtomicU64::new(0),
            limit,
        }
    }

    /// Appends an entry; its `seq` is assigned here.
    pub(crate) fn push(&self, mut e: LedgerEntry) {
        let mut g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        e.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        g.push_back(e);
        while g.len() > self.limit {
            g.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Entries with `seq > since`, optionally for one ICCID.
    pub(crate) fn since(&self, since: u64, icc_id: Option<&str>) -> Vec<LedgerEntry> {
        let g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        g.iter()
            .filter(|e| e.seq > since && icc_id.is_none_or(|i| e.icc_id == i))
            .cloned()
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Counters behind `GET /__sim/stats`.
#[derive(Default)]
pub(crate) struct Stats {
    inner: Mutex<StatsInner>,
    pub(crate) mutations: AtomicU64,
    pub(crate) too_many_requests: AtomicU64,
    pub(crate) token_requests: AtomicU64,
    pub(crate) faults: Mutex<BTreeMap<&'static str, u64>>,
}

#[derive(Default)]
struct StatsInner {
    by_route: BTreeMap<(&'static str, u16), u64>,
    per_second: BTreeMap<u64, u64>,
    last_arrival: Option<std::time::SystemTime>,
}

/// The JSON shape of `GET /__sim/stats`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsReport {
    /// Milliseconds since start.
    pub uptime_ms: u64,
    /// Requests received.
    pub requests: u64,
    /// `"METHOD route" -> {"status": count}`.
    pub by_route: BTreeMap<String, BTreeMap<String, u64>>,
    /// Requests answered 429.
    pub too_many_requests: u64,
    /// Changes applied (ledger entries, dropped ones included).
    pub mutations_applied: u64,
    /// Token requests received.
    pub token_requests: u64,
    /// Faults injected, by kind.
    pub faults_injected: BTreeMap<String, u64>,
    /// `/api/v2` requests received in each whole second since start (index = second).
    pub per_second: Vec<u64>,
    /// The most `/api/v2` requests in one second.
    pub peak_per_second: u64,
    /// Ledger entries kept.
    pub ledger_entries: usize,
    /// Ledger entries dropped past `ledger_limit`.
    pub ledger_dropped: u64,
    /// When the last `/api/v2` request arrived (RFC 3339, microseconds), if any did.
    #[serde(default)]
    pub last_api_request_at: Option<String>,
}

impl Stats {
    /// Counts one answered request; `api` requests also count toward the per-second series.
    pub(crate) fn record(&self, route: &'static str, status: u16, api_second: Option<u64>) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *g.by_route.entry((route, status)).or_default() += 1;
        if let Some(s) = api_second {
            *g.per_second.entry(s).or_default() += 1;
        }
    }

    /// An `/api/v2` request arrived (before any latency or fault).
    pub(crate) fn arrived(&self, at: std::time::SystemTime) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.last_arrival = Some(g.last_arrival.map_or(at, |t| t.max(at)));
    }

    pub(crate) fn fault(&self, kind: &'static str) {
        *self
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default() += 1;
    }

    pub(crate) fn report(&self, started: Instant, ledger: &Ledger) -> StatsReport {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_route: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let mut requests = 0;
        for ((route, status), n) in &g.by_route {
            requests += n;
            *by_route
                .entry((*route).to_owned())
                .or_default()
                .entry(status.to_string())
                .or_default() += n;
        }
        let last = g.per_second.keys().next_back().copied().unwrap_or(0);
        let per_second: Vec<u64> = if g.per_second.is_empty() {
            Vec::new()
        } else {
            (0..=last)
                .map(|s| g.per_second.get(&s).copied().unwrap_or(0))
                .collect()
        };
        StatsReport {
            uptime_ms: started.elapsed().as_millis() as u64,
            requests,
            by_route,
            too_many_requests: self.too_many_requests.load(Ordering::Relaxed),
            mutations_applied: self.mutations.load(Ordering::Relaxed),
            token_requests: self.token_requests.load(Ordering::Relaxed),
            faults_injected: self
                .faults
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            peak_per_second: per_second.iter().copied().max().unwrap_or(0),
            per_second,
            ledger_entries: ledger.len(),
            ledger_dropped: ledger.dropped(),
            last_api_request_at: g
                .last_arrival
                .map(|t| crate::clock::rfc3339(t, crate::clock::Precision::Micros)),
        }
    }
}
