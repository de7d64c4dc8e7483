//! The shared budget's state and its algorithm (GCRA with leases), one implementation for the
//! local file; `redis.lua` runs the same steps inside Redis.
//!
//! An account has a rate and a burst: the smallest that a job **holding a live lease** asked
//! for. Each active job holds a lease that expires [`LEASE_SECONDS`] after its last call, and
//! a weight; its share is its weight over the sum of the weights of the live leases that use
//! theirs (a job none of whose calls waited for its own share in the last [`LEND_AFTER`]
//! seconds lends it, until one of its calls waits again). When a lease
//! lapses its wishes go with it; when the last one lapses the state starts afresh. A call is
//! granted at the earliest time both the job's GCRA (rate × share) and the account's GCRA
//! (the whole rate) allow, and both advance to it: requests go at the times granted, in the
//! order granted, so the account never sees more than its rate and burst. A job holds one
//! reservation at a time (its workers queue for it in the pacer): a job whose many workers
//! each held one far ahead would push the account's time past slots nobody uses, and its
//! share would shrink with its concurrency. A 429 seen by any job pauses every job until its
//! Retry-After and cuts the account's rate to 70 % (at most once a second); the rate climbs
//! back by 5 % of the configured rate each second, and the cut is forgotten once it is back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A lease lasts this long after the job's last call (a killed job frees its share so soon).
pub(crate) const LEASE_SECONDS: f64 = 3.0;

/// A job none of whose calls in this many seconds had to wait for its own share does not use
/// it (it is latency-bound, or waits on something else), and lends it to the jobs that
/// do; its next call that waits takes it back.
pub(crate) const LEND_AFTER: f64 = 1.0;

/// A job's lease.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Lease {
    pub(crate) host: String,
    pub(crate) pid: u32,
    pub(crate) weight: f64,
    /// Seconds since the epoch when the lease lapses.
    pub(crate) expires: f64,
    /// The job's theoretical arrival time (GCRA).
    pub(crate) tat: f64,
    pub(crate) calls: u64,
    pub(crate) throttled: u64,
    /// The rate this job asked for.
    pub(crate) asked: f64,
    /// The burst this job asked for (0 in a state written before it was kept).
    #[serde(default)]
    pub(crate) asked_burst: f64,
    /// When a call of this job last had to wait for the budget (seconds since the epoch).
    #[serde(default)]
    pub(crate) waited_at: f64,
}

/// The state of one account's budget.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct State {
    /// What the budget belongs to (base URL and client id, or `--quota-key`).
    pub(crate) account: String,
    /// Requests per second (the smallest asked) and burst.
    pub(crate) rate: f64,
    pub(crate) burst: f64,
    /// The account's theoretical arrival time.
    pub(crate) tat: f64,
    /// The rate a 429 cut to, and when (`cut_rate` 0: no cut in force).
    pub(crate) cut_rate: f64,
    pub(crate) cut_at: f64,
    /// No job starts a request before this (a 429's Retry-After).
    pub(crate) paused_until: f64,
    pub(crate) jobs: BTreeMap<String, Lease>,
}

/// Who is asking.
#[derive(Debug, Clone)]
pub(crate) struct Me {
    pub(crate) id: String,
    pub(crate) host: String,
    pub(crate) pid: u32,
    pub(crate) weight: f64,
    pub(crate) rate: f64,
    pub(crate) burst: f64,
}

/// What a call was granted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Grant {
    /// Seconds to wait before the request starts.
    pub(crate) wait: f64,
    /// This job's share of the account (0–1).
    pub(crate) share: f64,
    /// The account's rate now (after 429 cuts), requests per second.
    pub(crate) rate: f64,
    /// Active jobs of the account, this one included.
    pub(crate) jobs: usize,
    /// A 429's cut is in force (the rate is below what the live jobs asked for).
    pub(crate) cut: bool,
    /// The smallest rate a live job asked for (the account's rate before any cut).
    pub(crate) asked: f64,
}

impl State {
    /// The account's rate now: the configured rate, or a 429's cut climbing back.
    pub(crate) fn effective(&self, now: f64) -> f64 {
        if self.cut_rate <= 0.0 {
            return self.rate;
        }
        let climbed = self.cut_rate + 0.05 * self.rate * (now - self.cut_at).max(0.0);
        climbed.min(self.rate)
    }

    /// Drops the lapsed leases (the last one gone, the state starts afresh), renews `me`'s,
    /// and sets the rate and burst to the smallest the live jobs ask for.
    fn renew(&mut self, me: &Me, now: f64) {
        self.jobs.retain(|_, l| l.expires >= now);
        if self.jobs.is_empty() {
            let paused_until = self.paused_until;
            *self = State {
                account: std::mem::take(&mut self.account),
                // A provider's Retry-After still holds whoever asks.
                paused_until,
                ..State::default()
            };
        }
        let l = self.jobs.entry(me.id.clone()).or_insert_with(|| Lease {
            host: me.host.clone(),
            pid: me.pid,
            weight: me.weight,
            expires: now,
            tat: now,
            calls: 0,
            throttled: 0,
            asked: me.rate,
            asked_burst: me.burst,
            waited_at: 0.0,
        });
        l.expires = now + LEASE_SECONDS;
        l.weight = me.weight;
        l.pid = me.pid;
        l.asked = me.rate;
        l.asked_burst = me.burst;
        let smallest = |f: fn(&Lease) -> f64| {
            self.jobs
                .values()
                .map(f)
                .filter(|v| *v > 0.0)
                .fold(f64::INFINITY, f64::min)
        };
        self.rate = smallest(|l| l.asked);
        self.burst = smallest(|l| l.asked_burst).min(me.burst);
        // A cut that has climbed back is over.
        if self.cut_rate > 0.0 && self.effective(now) >= self.rate {
            self.cut_rate = 0.0;
        }
    }

    /// Grants `me` one request at `now` (seconds since the epoch).
    pub(crate) fn reserve(&mut self, me: &Me, now: f64) -> Grant {
        self.renew(me, now);
        let rate = self.effective(now).max(1e-6);
        // Shares among the jobs that use theirs: a job whose calls no longer wait for the
        // budget (latency-bound, or waiting on a prompt) lends its share until one waits
        // again, and the account's GCRA still bounds the sum.
        let total: f64 = self
            .jobs
            .iter()
            .filter(|(id, l)| **id == me.id || now - l.waited_at <= LEND_AFTER)
            .map(|(_, l)| l.weight)
            .sum();
        let share = (me.weight / total.max(1e-9)).clamp(0.0, 1.0);
        let job_rate = (rate * share).max(1e-6);
        let job_burst = (self.burst * share).max(1.0);
        let jobs = self.jobs.len();
        let (cut, asked) = (self.cut_rate > 0.0, self.rate);
        let Some(l) = self.jobs.get_mut(&me.id) else {
            return Grant {
                wait: 0.0,
                share,
                rate,
                jobs,
                cut,
                asked,
            };
        };
        // The earliest time both the job's and the account's GCRA allow (a burst of b: b
        // requests at once); both advance to it.
        let own = l.tat - (job_burst - 1.0) / job_rate;
        let t = now
            .max(self.paused_until)
            .max(own)
            .max(self.tat - (self.burst - 1.0).max(0.0) / rate);
        l.tat = l.tat.max(t) + 1.0 / job_rate;
        self.tat = self.tat.max(t) + 1.0 / rate;
        // Its own share held it back: it uses its share.
        if own > now {
            l.waited_at = now;
        }
        l.calls += 1;
        Grant {
            wait: t - now,
            share,
            rate,
            jobs,
            cut,
            asked,
        }
    }

    /// A 429 seen by `me`: every job pauses until its `retry_after` (without one, each job
    /// backs off on its own 429s), and the account's rate is cut to 70 % once a second at
    /// most. Returns the new rate when cut.
    pub(crate) fn throttled(&mut self, me: &Me, retry_after: Option<f64>, now: f64) -> Option<f64> {
        self.renew(me, now);
        if let Some(l) = self.jobs.get_mut(&me.id) {
            l.throttled += 1;
        }
        if let Some(ra) = retry_after {
            self.paused_until = self.paused_until.max(now + ra.min(300.0));
        }
        if now - self.cut_at < 1.0 && self.cut_rate > 0.0 {
            return None;
        }
        let cut = (self.effective(now) * 0.7).max(self.rate * 0.02);
        self.cut_rate = cut;
        self.cut_at = now;
        Some(cut)
    }

    /// `me` is done: its share goes to the others at once.
    pub(crate) fn release(&mut self, id: &str) {
        self.jobs.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(id: &str, rate: f64) -> Me {
        Me {
            id: id.into(),
            host: "h".into(),
            pid: 1,
            weight: 1.0,
            rate,
            burst: 5.0,
        }
    }

    /// Requests each job is granted in `secs` seconds when each asks as fast as it may.
    fn run(state: &mut State, jobs: &[Me], secs: f64) -> Vec<u64> {
        let mut next = vec![0.0f64; jobs.len()];
        let mut n = vec![0u64; jobs.len()];
        let mut starts = Vec::new();
        loop {
            let (i, &t) = next
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .unwrap();
            if t >= secs {
                break;
            }
            let g = state.reserve(&jobs[i], 1000.0 + t);
            let at = t + g.wait;
            if at < secs {
                n[i] += 1;
                starts.push(at);
            }
            next[i] = at;
        }
        // No one-second window sees more than rate + burst.
        starts.sort_by(f64::total_cmp);
        for (k, s) in starts.iter().enumerate() {
            let within = starts[k..].iter().take_while(|x| **x < s + 1.0).count();
            assert!(within as f64 <= 20.0 + 5.0, "{within} in a second");
        }
        n
    }

    #[test]
    fn jobs_share_the_rate_equally_and_never_pass_it_together() {
        let mut s = State::default();
        let jobs = [me("a", 20.0), me("b", 20.0), me("c", 20.0)];
        let n = run(&mut s, &jobs, 30.0);
        let total: u64 = n.iter().sum();
        assert!((560..=630).contains(&total), "{n:?}");
        for x in &n {
            assert!(
                (*x as f64 - total as f64 / 3.0).abs() < total as f64 * 0.05,
                "{n:?}"
            );
        }
    }

    #[test]
    fn the_smallest_rate_wins_a_lapsed_lease_frees_its_share_and_a_429_pauses_everyone() {
        let mut s = State::default();
        s.reserve(&me("a", 20.0), 0.0);
        s.reserve(&me("b", 10.0), 0.0);
        assert_eq!(s.rate, 10.0);
        // Both use their shares (their calls wait): halves.
        for k in 0..40 {
            s.reserve(&me("a", 20.0), 0.01 * f64::from(k));
            s.reserve(&me("b", 10.0), 0.01 * f64::from(k));
        }
        let g = s.reserve(&me("a", 20.0), 0.5);
        assert!((g.share - 0.5).abs() < 1e-9 && g.jobs == 2, "{g:?}");
        // b stops calling: after its lease, a has it all, at the rate it asked for.
        let g = s.reserve(&me("a", 20.0), 0.5 + LEASE_SECONDS + 0.1);
        assert!(
            (g.share - 1.0).abs() < 1e-9 && g.jobs == 1 && g.rate == 20.0,
            "{g:?}"
        );
        let cut = s.throttled(&me("a", 20.0), Some(2.0), 10.0).unwrap();
        assert!((cut - 14.0).abs() < 1e-9);
        assert_eq!(
            s.throttled(&me("a", 20.0), None, 10.5),
            None,
            "once a second"
        );
        let g = s.reserve(&me("a", 20.0), 10.6);
        assert!(g.wait >= 1.39, "paused until the Retry-After: {g:?}");
        assert!(g.cut && s.effective(20.0) > s.effective(11.0) && s.effective(100.0) == 20.0);
        // Climbed back, the cut is forgotten.
        assert!(s.reserve(&me("a", 20.0), 13.0).cut);
        assert!(!s.reserve(&me("a", 20.0), 16.5).cut);
        s.release("a");
        assert!(!s.jobs.contains_key("a"));
    }

    #[test]
    fn a_departed_jobs_wishes_go_with_its_lease() {
        let mut s = State::default();
        // A slow job, then hours later a fast one alone.
        s.reserve(&me("slow", 10.0), 0.0);
        let g = s.reserve(&me("fast", 200.0), 1.0);
        assert_eq!((g.rate, g.asked), (10.0, 10.0));
        let g = s.reserve(&me("fast", 200.0), 1.0 + LEASE_SECONDS + 0.5);
        assert_eq!((g.rate, g.jobs, g.cut), (200.0, 1, false), "{g:?}");
        let g = s.reserve(&me("later", 50.0), 3600.0);
        assert_eq!((g.rate, g.jobs), (50.0, 1), "a fresh state: {g:?}");
        assert_eq!(s.burst, 5.0);
    }

    /// Requests each job is granted in `secs` seconds when each has `workers` workers, each
    /// asking again `latency` after its request started, and — as the pacer has them — each
    /// job's workers taking turns for its one reservation at a time.
    fn run_workers(
        state: &mut State,
        jobs: &[Me],
        workers: usize,
        latency: f64,
        secs: f64,
    ) -> Vec<u64> {
        let mut next: Vec<(usize, f64)> = (0..jobs.len())
            .flat_map(|j| (0..workers).map(move |_| (j, 0.0)))
            .collect();
        let mut n = vec![0u64; jobs.len()];
        let mut turn = vec![0.0f64; jobs.len()];
        let mut starts = Vec::new();
        loop {
            // The next reservation in time: a worker's ask, once its job's turn is free.
            let (k, t) = next
                .iter()
                .enumerate()
                .map(|(k, &(j, asked))| (k, asked.max(turn[j])))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            let j = next[k].0;
            if t >= secs {
                break;
            }
            let g = state.reserve(&jobs[j], 1000.0 + t);
            let at = t + g.wait;
            turn[j] = at;
            if at < secs {
                n[j] += 1;
                starts.push(at);
            }
            next[k] = (j, at + latency);
        }
        starts.sort_by(f64::total_cmp);
        let rate = jobs.iter().map(|m| m.rate).fold(f64::INFINITY, f64::min);
        let burst = jobs.iter().map(|m| m.burst).fold(f64::INFINITY, f64::min);
        for (k, s) in starts.iter().enumerate() {
            let within = starts[k..].iter().take_while(|x| **x < s + 1.0).count();
            assert!(within as f64 <= rate + burst, "{within} in a second");
        }
        n
    }

    #[test]
    fn shares_do_not_shrink_with_concurrency_or_burst() {
        for workers in [1, 8, 64] {
            for burst in [1.0, 5.0] {
                for jobs in [2, 3] {
                    let mut s = State::default();
                    let list: Vec<Me> = (0..jobs)
                        .map(|i| Me {
                            burst,
                            ..me(&format!("j{i}"), 20.0)
                        })
                        .collect();
                    // A latency well under the rate's spacing: the job is rate-bound.
                    let n = run_workers(&mut s, &list, workers, 0.01, 30.0);
                    let total: u64 = n.iter().sum();
                    let share = 20.0 * 30.0 / jobs as f64;
                    for x in &n {
                        assert!(
                            *x as f64 >= 0.9 * share,
                            "{workers} workers, burst {burst}: {n:?}"
                        );
                    }
                    assert!(total as f64 >= 0.9 * 600.0, "{n:?}");
                }
            }
        }
    }

    #[test]
    fn a_job_that_cannot_use_its_share_lends_it_and_takes_it_back_at_once() {
        let jobs = [me("slow", 20.0), me("fast", 20.0)];
        // Sequential reservations of a latency-bound job (one worker, 200 ms answers) and
        // a rate-bound one (8 workers, 10 ms answers).
        let mut s = State::default();
        let (mut next, mut n) = ([0.0f64, 0.0], [0u64, 0]);
        let (mut turn_fast, mut fast_workers) = (0.0f64, vec![0.0f64; 8]);
        loop {
            let fast_at = fast_workers
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min)
                .max(turn_fast);
            let (j, t) = if next[0] <= fast_at {
                (0, next[0])
            } else {
                (1, fast_at)
            };
            if t >= 30.0 {
                break;
            }
            let g = s.reserve(&jobs[j], 1000.0 + t);
            let at = t + g.wait;
            if at < 30.0 {
                n[j] += 1;
            }
            if j == 0 {
                next[0] = at + 0.2;
            } else {
                turn_fast = at;
                let w = fast_workers.iter().position(|x| *x <= t).unwrap_or(0);
                fast_workers[w] = at + 0.01;
            }
        }
        let per = |x: u64| x as f64 / 30.0;
        // The lender still gets its calls (each waits its turn for an account slot).
        assert!(per(n[0]) >= 3.0 && per(n[0]) <= 5.1, "{n:?}");
        assert!(per(n[1]) >= 13.5, "the fast job borrows: {n:?}");
        assert!(per(n[0] + n[1]) <= 20.0 + 5.0 / 30.0 + 0.1, "{n:?}");
        // Both rate-bound: halves again.
        let mut s = State::default();
        let both = run_workers(&mut s, &jobs, 8, 0.01, 20.0);
        assert!(both.iter().all(|x| *x as f64 >= 0.9 * 200.0), "{both:?}");
    }
}
