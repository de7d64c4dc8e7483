//! Requests counted by kind, and how long the API took to answer them.
//!
//! Guarantees: counting is lock-free; answer times go into a fixed-size histogram (1 µs to
//! 1 h, two significant digits), so memory does not grow with requests.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Requests sent, by kind (retries included; token requests apart), and their answer times.
#[derive(Debug)]
pub(crate) struct Calls {
    writes: AtomicU64,
    reads: AtomicU64,
    lists: AtomicU64,
    /// Answers by class: 2xx, 4xx, 5xx, none (the connection failed or timed out).
    classes: [AtomicU64; 4],
    /// From sending a request to its answer's headers, in microseconds (`None` if the
    /// histogram could not be made).
    answers: Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

/// Requests sent, by kind: writes (PATCH, POST, DELETE), single reads (a SIM, a SIM's
/// attributes) and list calls (`GET /api/v2/sim`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct CallCounts {
    pub(crate) writes: u64,
    pub(crate) reads: u64,
    pub(crate) lists: u64,
}

impl Calls {
    pub(crate) fn new() -> Self {
        Self {
            writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            lists: AtomicU64::new(0),
            classes: Default::default(),
            answers: Mutex::new(hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 2).ok()),
        }
    }

    /// Counts a request: a write, a list call, or a read.
    pub(crate) fn count(&self, write: bool, list: bool) {
        let kind = match (write, list) {
            (true, _) => &self.writes,
            (false, true) => &self.lists,
            (false, false) => &self.reads,
        };
        kind.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an answer by its status class (`None`: no answer).
    pub(crate) fn class(&self, status: Option<u16>) {
        let i = match status {
            Some(200..=299) => 0,
            Some(400..=499) => 1,
            Some(500..=599) => 2,
            Some(_) => return,
            None => 3,
        };
        self.classes[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Answers by class: 2xx, 4xx, 5xx, none.
    pub(crate) fn classes(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.classes[i].load(Ordering::Relaxed))
    }

    /// Records one answer's time.
    pub(crate) fn answered(&self, took: Duration) {
        if let Ok(mut h) = self.answers.lock()
            && let Some(h) = h.as_mut()
        {
            h.saturating_record((took.as_micros() as u64).max(1));
        }
    }

    pub(crate) fn counts(&self) -> CallCounts {
        CallCounts {
            writes: self.writes.load(Ordering::Relaxed),
            reads: self.reads.load(Ordering::Relaxed),
            lists: self.lists.load(Ordering::Relaxed),
        }
    }

    /// Answer times: p50, p99 and max in milliseconds; `None` before the first answer.
    pub(crate) fn answer_latency_ms(&self) -> Option<(f64, f64, f64)> {
        let h = self.answers.lock().ok()?;
        let h = h.as_ref().filter(|h| !h.is_empty())?;
        let ms = |us: u64| us as f64 / 1000.0;
        Some((
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_answer_percentiles() {
        let c = Calls::new();
        assert_eq!(c.answer_latency_ms(), None);
        c.count(true, false);
        c.count(false, true);
        c.count(false, false);
        c.count(false, false);
        assert_eq!(
            c.counts(),
            CallCounts {
                writes: 1,
                reads: 2,
                lists: 1
            }
        );
        for ms in 1..=100 {
            c.answered(Duration::from_millis(ms));
        }
        let (p50, p99, max) = c.answer_latency_ms().unwrap();
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        assert!((98.0..=100.5).contains(&p99), "{p99}");
        assert!((99.0..=100.5).contains(&max), "{max}");
    }
}
