//! A SIM's state carried from row to row: what this run's rows of a SIM left behind goes to
//! the next row of that SIM, and a read older than such a row's end is never used.
//!
//! A window's list call may leave before an earlier row of the same SIM is written (the
//! planner reads ahead): its answer is then stale for the later row. A row parked behind a
//! running row of its SIM takes what that row left behind (the dispatcher hands it on); a
//! row that arrives once its SIM is idle asks this record, which the dispatcher tells every
//! row's end and the state the row left behind (a PATCH answers the SIM after the change; a
//! skipped or refused row leaves the state it saw).
//!
//! Guarantees: in a run, a row goes on with a read that left after every earlier row of its
//! SIM in this run ended, or with the state the latest of them left behind, or with nothing
//! (the worker then reads the SIM itself) — never with an older read; memory is bounded: an
//! end is forgotten once every read still to come is newer (reads reach the dispatcher in
//! file order), and past [`MAX_ENTRIES`] the oldest are forgotten, after which rows whose read
//! is not newer than the last forgotten end go on with nothing. In a preview (nothing is
//! written) a later row goes on with the state its predecessors' predictions left behind,
//! for the last [`MAX_ENTRIES`] SIMs.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::plan::Seen;

/// SIMs whose last row's end is remembered at most.
pub(crate) const MAX_ENTRIES: usize = 65_536;

/// Whether rows write (a run) or only predict (a preview).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Run,
    Preview,
}

/// The state this run's rows left behind, by ICCID.
pub(crate) struct Carry {
    mode: Mode,
    /// ICCID → when its last row ended, and the state it left (`None`: unknown).
    left: HashMap<u128, (Instant, Option<Seen>)>,
    /// Ends in the order they happened, for forgetting.
    order: VecDeque<(Instant, u128)>,
    /// The latest end forgotten for want of room.
    forgot_up_to: Option<Instant>,
    max: usize,
}

impl Carry {
    pub(crate) fn new(mode: Mode) -> Self {
        Self::with_capacity(mode, MAX_ENTRIES)
    }

    fn with_capacity(mode: Mode, max: usize) -> Self {
        Self {
            mode,
            left: HashMap::new(),
            order: VecDeque::new(),
            forgot_up_to: None,
            max,
        }
    }

    /// A row of `icc` ended now, leaving `after` behind.
    pub(crate) fn ended(&mut self, icc: u128, after: Option<Seen>) {
        let now = Instant::now();
        self.left.insert(icc, (now, after));
        self.order.push_back((now, icc));
        while self.order.len() > self.max {
            if let Some((at, icc)) = self.order.pop_front() {
                self.forget(at, icc);
                self.forgot_up_to = Some(self.forgot_up_to.map_or(at, |f| f.max(at)));
            }
        }
    }

    /// Removes `icc`'s entry if it is the one that ended at `at` (not a later one).
    fn forget(&mut self, at: Instant, icc: u128) {
        if self.left.get(&icc).is_some_and(|(t, _)| *t == at) {
            self.left.remove(&icc);
        }
    }

    /// What a new row of `icc` goes on with, given what the planner saw (`seen`).
    pub(crate) fn for_row(&mut self, icc: u128, seen: Option<Seen>) -> Option<Seen> {
        if self.mode == Mode::Preview {
            return match self.left.get(&icc) {
                Some((_, Some(after))) => Some(after.clone()),
                _ => seen,
            };
        }
        if let Some(s) = &seen {
            self.forget_older_than(s.at);
        }
        match (self.left.get(&icc), seen) {
            // A read that left after the last row's end is the freshest there is.
            (Some((ended, _)), Some(s)) if s.at > *ended => Some(s),
            (Some((_, after)), _) => after.clone(),
            (None, Some(s)) if self.forgot_up_to.is_some_and(|f| s.at <= f) => None,
            (None, seen) => seen,
        }
    }

    /// Forgets ends before `read`: every read still to come left after it.
    fn forget_older_than(&mut self, read: Instant) {
        while self.order.front().is_some_and(|(at, _)| *at < read) {
            if let Some((at, icc)) = self.order.pop_front() {
                self.forget(at, icc);
            }
        }
    }

    /// SIMs remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.left.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::Known;

    fn seen(status: &str, at: Instant) -> Seen {
        let sim: crate::model::Sim = serde_json::from_value(serde_json::json!({
            "iccId": "8944500990000012342", "status": status, "customerSuspend": false,
            "adminSuspend": false, "systemSuspend": false, "packageId": 1,
            "portfolioId": "pf", "mnoId": 1
        }))
        .unwrap();
        Seen::sim(sim, at)
    }

    fn status(s: &Option<Seen>) -> Option<String> {
        s.as_ref().and_then(|s| s.state().map(|x| x.status.clone()))
    }

    #[test]
    fn a_read_older_than_the_last_write_gives_way_to_what_the_write_left() {
        let mut c = Carry::new(Mode::Run);
        let t0 = Instant::now();
        let stale = seen("available", t0);
        c.ended(1, Some(seen("active", Instant::now())));
        assert_eq!(status(&c.for_row(1, Some(stale))), Some("active".into()));
        // A read that left after the end is used as it is.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let fresh = seen("available", Instant::now());
        assert_eq!(status(&c.for_row(1, Some(fresh))), Some("available".into()));
        // An end whose state is unknown makes the row read for itself.
        c.ended(2, None);
        assert!(c.for_row(2, Some(seen("active", t0))).is_none());
        // A row without a plan takes what was left behind.
        c.ended(3, Some(seen("active", Instant::now())));
        assert_eq!(status(&c.for_row(3, None)), Some("active".into()));
    }

    #[test]
    fn ends_are_forgotten_once_reads_are_newer_and_past_the_cap() {
        let mut c = Carry::new(Mode::Run);
        for i in 0..1000 {
            c.ended(i, None);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = seen("active", Instant::now());
        assert!(c.for_row(5, Some(later)).is_some());
        assert_eq!(c.len(), 0);

        let mut small = Carry::with_capacity(Mode::Run, 10);
        let old = Instant::now();
        for i in 0..20 {
            small.ended(i, Some(seen("active", Instant::now())));
        }
        assert_eq!(small.len(), 10);
        // "3" was forgotten: its old read cannot be trusted, so the row reads for itself.
        assert!(small.for_row(3, Some(seen("available", old))).is_none());
    }

    #[test]
    fn a_preview_carries_predictions_whatever_the_read() {
        let mut c = Carry::new(Mode::Preview);
        c.ended(1, Some(seen("active", Instant::now())));
        std::thread::sleep(std::time::Duration::from_millis(2));
        let read = seen("available", Instant::now());
        assert_eq!(status(&c.for_row(1, Some(read))), Some("active".into()));
        assert!(matches!(
            c.for_row(4, Some(seen("available", Instant::now())))
                .map(|s| s.known),
            Some(Known::Sim(_))
        ));
    }
}
