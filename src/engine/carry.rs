//! What a row of a SIM is decided on: the state the plan read, the state this run's earlier
//! row of the SIM left behind, or nothing (the worker then reads the SIM with its own GET).
//!
//! The rules (see `docs/design/knowledge.md`):
//! - **A read has an age.** In a run, nothing older than `--max-read-age` decides a row:
//!   an older state goes on as nothing, and the worker reads the SIM again.
//! - **The job's own writes win.** For a SIM an earlier row of this run ended on, the next
//!   row takes what that row left (a write's answer, or the GET it made), never a list view
//!   — a list may show the SIM as it was before the write. For a SIM this run wrote less
//!   than [`LIST_LAG`] ago whose exact state is no longer remembered, a list view goes on as
//!   nothing (the worker reads the SIM itself).
//! - In a preview (nothing is written) a later row goes on with the state its predecessors'
//!   predictions left, whatever its age: a fresh read would not hold those predictions.
//!
//! Guarantees: memory is bounded — exact states for at most [`MAX_ENTRIES`] SIMs, each
//! forgotten [`LIST_LAG`] after its row ended; which SIMs were written in the last
//! [`LIST_LAG`] in a fixed-size filter (a false "written" costs one GET, never a wrong
//! decision).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::plan::{Seen, Source};
use crate::bloom::Bloom;

/// SIMs whose last row's state is remembered at most.
pub(crate) const MAX_ENTRIES: usize = 65_536;

/// How long after this job's write a list view of that SIM is still taken to lag it.
pub(crate) const LIST_LAG: Duration = Duration::from_secs(60);

/// Whether rows write (a run) or only predict (a preview).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Run,
    Preview,
}

/// How old the reads were that rows were decided on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadAges {
    /// The oldest state a row was decided on.
    pub(crate) oldest: Duration,
    /// States that were too old (or a list view of a SIM this job had written) and were
    /// read again by the row itself.
    pub(crate) reread: u64,
}

/// The state this run's rows left behind, by ICCID.
pub(crate) struct Carry {
    mode: Mode,
    max_age: Duration,
    /// ICCID → when its last row ended, and the state it left (`None`: unknown).
    left: HashMap<u128, (Instant, Option<Seen>)>,
    /// Ends in the order they happened, for forgetting.
    order: VecDeque<(Instant, u128)>,
    max: usize,
    /// SIMs written in the last [`LIST_LAG`].
    written: Recent,
    pub(crate) ages: ReadAges,
}

impl Carry {
    pub(crate) fn new(mode: Mode, max_age: Duration) -> Self {
        Self::with_capacity(mode, max_age, MAX_ENTRIES)
    }

    fn with_capacity(mode: Mode, max_age: Duration, max: usize) -> Self {
        Self {
            mode,
            max_age,
            left: HashMap::new(),
            order: VecDeque::new(),
            max,
            written: Recent::new(LIST_LAG),
            ages: ReadAges::default(),
        }
    }

    /// A row of `icc` ended now, leaving `after` behind; `wrote`: it may have changed the
    /// SIM.
    pub(crate) fn ended(&mut self, icc: u128, after: Option<Seen>, wrote: bool) {
        let now = Instant::now();
        if wrote && self.mode == Mode::Run {
            self.written.insert(icc, now);
        }
        self.left.insert(icc, (now, after));
        self.order.push_back((now, icc));
        while let Some(&(at, old)) = self.order.front() {
            if self.order.len() <= self.max && at.elapsed() < LIST_LAG {
                break;
            }
            self.order.pop_front();
            if self.left.get(&old).is_some_and(|(t, _)| *t == at) {
                self.left.remove(&old);
            }
        }
    }

    /// What a new row of `icc` goes on with, given what the planner saw (`seen`).
    pub(crate) fn for_row(&mut self, icc: u128, seen: Option<Seen>) -> Option<Seen> {
        let earlier = self
            .left
            .get(&icc)
            .map(|(ended, after)| (*ended, after.clone()));
        let chosen = match (self.mode, earlier) {
            (Mode::Preview, Some((_, Some(predicted)))) => return Some(predicted),
            (Mode::Preview, _) => seen,
            // A GET that left after the earlier row ended is the freshest there is.
            (Mode::Run, Some((ended, _)))
                if seen
                    .as_ref()
                    .is_some_and(|s| s.source == Source::Get && s.at > ended) =>
            {
                seen
            }
            (Mode::Run, Some((_, after))) => {
                if seen.is_some() && after.is_none() {
                    self.ages.reread += 1;
                }
                after
            }
            (Mode::Run, None) => match seen {
                Some(s) if s.source == Source::List && self.written.maybe(icc) => {
                    self.ages.reread += 1;
                    None
                }
                other => other,
            },
        };
        self.young(chosen)
    }

    /// `seen` when it is young enough to decide on, else nothing (the row reads again).
    fn young(&mut self, seen: Option<Seen>) -> Option<Seen> {
        let s = seen?;
        let age = s.at.elapsed();
        if age > self.max_age {
            self.ages.reread += 1;
            return None;
        }
        self.ages.oldest = self.ages.oldest.max(age);
        Some(s)
    }

    /// SIMs remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.left.len()
    }
}

/// Bits in one generation of [`Recent`] (512 KiB).
const RECENT_BITS: usize = 1 << 22;

/// Generations [`Recent`] keeps: a key is remembered for between `span` and `span` plus a
/// generation.
const GENERATIONS: usize = 4;

/// Which keys were inserted in the last `span` — Bloom filters in generations: no false
/// "no"; a false "yes" (one GET more) about once in a hundred at 10,000 writes a second, and
/// far less at the rates providers allow.
struct Recent {
    gens: Vec<Bloom>,
    /// The generation keys go into now, and when it began.
    current: usize,
    began: Instant,
    each: Duration,
}

impl Recent {
    fn new(span: Duration) -> Self {
        Self {
            gens: Vec::new(),
            current: 0,
            began: Instant::now(),
            each: span / (GENERATIONS as u32 - 1),
        }
    }

    fn rotate(&mut self, now: Instant) {
        if self.gens.is_empty() {
            self.gens = (0..GENERATIONS)
                .map(|_| Bloom::new(RECENT_BITS, 3))
                .collect();
            self.began = now;
        }
        let mut turns = 0;
        while now.duration_since(self.began) >= self.each && turns < GENERATIONS {
            self.current = (self.current + 1) % GENERATIONS;
            self.gens[self.current].clear();
            self.began += self.each;
            turns += 1;
        }
        if turns == GENERATIONS {
            self.began = now;
        }
    }

    fn insert(&mut self, key: u128, now: Instant) {
        self.rotate(now);
        self.gens[self.current].insert(key);
    }

    fn maybe(&mut self, key: u128) -> bool {
        if self.gens.is_empty() {
            return false;
        }
        self.rotate(Instant::now());
        self.gens.iter().any(|g| g.contains(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGE: Duration = Duration::from_secs(10);

    fn seen(status: &str, at: Instant, source: Source) -> Seen {
        let sim: crate::model::Sim = serde_json::from_value(serde_json::json!({
            "iccId": "8944500990000012342", "status": status, "customerSuspend": false,
            "adminSuspend": false, "systemSuspend": false, "packageId": 1,
            "portfolioId": "pf", "mnoId": 1
        }))
        .unwrap();
        Seen::new(sim, at, source)
    }

    fn status(s: &Option<Seen>) -> Option<String> {
        s.as_ref().map(|s| s.sim.status.clone())
    }

    #[test]
    fn a_list_view_never_overrides_what_the_jobs_own_write_left() {
        let mut c = Carry::new(Mode::Run, AGE);
        c.ended(1, Some(seen("active", Instant::now(), Source::Write)), true);
        // A list read that left after the write may still show the SIM as it was.
        let lagging = seen("available", Instant::now(), Source::List);
        assert_eq!(status(&c.for_row(1, Some(lagging))), Some("active".into()));
        // The SIM's own read, started after the write's answer, is believed.
        let got = seen("available", Instant::now(), Source::Get);
        assert_eq!(status(&c.for_row(1, Some(got))), Some("available".into()));
        // An end whose state is unknown makes the row read for itself.
        c.ended(2, None, true);
        let list = seen("active", Instant::now(), Source::List);
        assert!(c.for_row(2, Some(list)).is_none());
        // A row without a plan takes what was left behind.
        c.ended(3, Some(seen("active", Instant::now(), Source::Write)), true);
        assert_eq!(status(&c.for_row(3, None)), Some("active".into()));
        // Only the row with nothing to go on read again.
        assert_eq!(c.ages.reread, 1);
    }

    #[test]
    fn no_state_older_than_the_bound_decides_a_row() {
        let mut c = Carry::new(Mode::Run, Duration::from_millis(30));
        let old = seen("active", Instant::now(), Source::List);
        std::thread::sleep(Duration::from_millis(40));
        assert!(c.for_row(7, Some(old)).is_none());
        // What a write left ages too.
        let left = seen("active", Instant::now(), Source::Write);
        c.ended(8, Some(left), true);
        std::thread::sleep(Duration::from_millis(40));
        assert!(c.for_row(8, None).is_none());
        let fresh = seen("active", Instant::now(), Source::List);
        assert!(c.for_row(9, Some(fresh)).is_some());
        assert_eq!(c.ages.reread, 2);
        assert!(c.ages.oldest < Duration::from_millis(30));
    }

    #[test]
    fn a_written_sim_forgotten_for_room_is_read_again_not_taken_from_a_list() {
        let mut small = Carry::with_capacity(Mode::Run, AGE, 10);
        for i in 0..20 {
            small.ended(i, Some(seen("active", Instant::now(), Source::Write)), true);
        }
        assert_eq!(small.len(), 10);
        let list = seen("available", Instant::now(), Source::List);
        assert!(small.for_row(3, Some(list)).is_none());
        // A SIM this job never wrote takes its list view.
        let list = seen("available", Instant::now(), Source::List);
        assert!(small.for_row(999, Some(list)).is_some());
        // A row that wrote nothing (skipped) leaves its SIM to the lists.
        let mut c = Carry::with_capacity(Mode::Run, AGE, 1);
        c.ended(5, Some(seen("active", Instant::now(), Source::List)), false);
        c.ended(6, None, false);
        let list = seen("available", Instant::now(), Source::List);
        assert!(c.for_row(5, Some(list)).is_some());
    }

    #[test]
    fn the_written_filter_has_no_false_no_and_few_false_yes() {
        let mut r = Recent::new(Duration::from_secs(60));
        let now = Instant::now();
        for k in 0..100_000u128 {
            r.insert(8_944_500_990_000_000_000 + k * 7, now);
        }
        assert!((0..100_000u128).all(|k| r.maybe(8_944_500_990_000_000_000 + k * 7)));
        let false_yes = (0..100_000u128)
            .filter(|k| r.maybe(8_944_500_990_000_000_003 + k * 7))
            .count();
        assert!(false_yes < 1_000, "{false_yes}");
    }

    #[test]
    fn a_preview_carries_predictions_whatever_the_read() {
        let mut c = Carry::new(Mode::Preview, AGE);
        c.ended(1, Some(seen("active", Instant::now(), Source::List)), true);
        let read = seen("available", Instant::now(), Source::List);
        assert_eq!(status(&c.for_row(1, Some(read))), Some("active".into()));
        let other = seen("available", Instant::now(), Source::List);
        assert!(c.for_row(4, Some(other)).is_some());
    }
}
