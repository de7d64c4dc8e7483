//! Pacing shared by every worker: one token bucket (governor) over every HTTP call —
//! retries and token requests included — and one "not before" gate that a 429 moves
//! forward for everybody.
//!
//! Guarantees: with a rate `r` and burst `b`, no window of `t` seconds sees more than
//! `b + r·t` requests start; after a 429 no worker starts a request before the gate
//! (`Retry-After`, or a shared exponential backoff when the header is absent); every wait here
//! (the gate, the bucket, the retry budget) ends at once when the job's stop token is
//! cancelled, with [`Stopped`].
//!
//! Adaptive pacing (AIMD): a 429 also cuts the rate to 70 % (once per second at most, so
//! one burst of 429s counts once); each second's worth of successes adds back 5 % of the
//! configured rate, never above it. When the provider's real limit is below `--rate`, the
//! engine settles just under it and 429s become rare.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// First pause after a 429 without `Retry-After`; doubles on each further one.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest pause after a 429 without `Retry-After`.
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Longest `Retry-After` honoured (a broken header must not park the job for a day).
const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);

/// A wait was cut short because the job is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stopped;

/// Runs `f` unless `stop` is cancelled first.
pub(crate) async fn unless_stopped<F: std::future::Future>(
    stop: &CancellationToken,
    f: F,
) -> Result<F::Output, Stopped> {
    tokio::select! {
        biased;
        _ = stop.cancelled() => Err(Stopped),
        v = f => Ok(v),
    }
}

/// The rate the pacer runs at now, and how it got there.
struct Adaptive {
    configured: f64,
    current: f64,
    successes: u64,
    last_cut: Option<Instant>,
}

/// The shared pacer.
pub(crate) struct Pacer {
    limiter: std::sync::RwLock<Option<Arc<DefaultDirectRateLimiter>>>,
    adaptive: Option<Mutex<Adaptive>>,
    burst: NonZeroU32,
    gate: Mutex<Option<Instant>>,
    consecutive_429: AtomicU32,
    pub(crate) requests: AtomicU64,
    pub(crate) throttled: AtomicU64,
    first_request: std::sync::OnceLock<std::time::Instant>,
    /// Waiters for a cell queue here, first come first served: one sleeper at a time
    /// instead of a herd that wakes together and re-checks.
    turn: tokio::sync::Mutex<()>,
    budget: Mutex<RetryBudget>,
    pub(crate) budget_waits: AtomicU64,
    /// The account's rate budget shared with its other jobs (it replaces the local bucket
    /// and the local AIMD).
    shared: Option<Arc<crate::quota::Budget>>,
    /// `--rate` as asked (`None`: no limit).
    asked: Option<f64>,
}

/// Retries earn their place: each first attempt deposits [`BUDGET_RATIO`] of a retry, and a
/// reserve of [`BUDGET_RESERVE`] retries per second is always there. During an outage the
/// budget runs dry and retries wait for it, so they cannot multiply the load on a provider
/// that is already failing.
struct RetryBudget {
    tokens: f64,
    last: Instant,
}

const BUDGET_RATIO: f64 = 0.2;
const BUDGET_RESERVE: f64 = 10.0;
const BUDGET_MAX: f64 = 500.0;

impl Pacer {
    /// `rate` requests per second (`None` = no limit), `burst` at once (commands build theirs
    /// through `engine::pacing`).
    #[cfg(test)]
    pub(crate) fn new(rate: Option<f64>, burst: NonZeroU32) -> Self {
        Self::with_adaptation(rate, burst, true)
    }

    /// `adaptive: false` keeps the rate fixed whatever the 429s (the gate still applies).
    pub(crate) fn with_adaptation(rate: Option<f64>, burst: NonZeroU32, adaptive: bool) -> Self {
        Self {
            limiter: std::sync::RwLock::new(rate.and_then(|r| limiter(r, burst))),
            adaptive: rate.filter(|_| adaptive).map(|r| {
                Mutex::new(Adaptive {
                    configured: r,
                    current: r,
                    successes: 0,
                    last_cut: None,
                })
            }),
            burst,
            gate: Mutex::new(None),
            consecutive_429: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            first_request: std::sync::OnceLock::new(),
            turn: tokio::sync::Mutex::new(()),
            budget: Mutex::new(RetryBudget {
                tokens: 100.0,
                last: Instant::now(),
            }),
            budget_waits: AtomicU64::new(0),
            shared: None,
            asked: rate,
        }
    }

    /// Paces by the account's shared budget instead of a local bucket.
    pub(crate) fn with_shared(mut self, b: Arc<crate::quota::Budget>) -> Self {
        self.shared = Some(b);
        self.adaptive = None;
        *self.limiter.write().unwrap_or_else(|e| e.into_inner()) = None;
        self
    }

    /// The rate requests go at now (after 429 cuts, and the account's share): `None`
    /// without a limit.
    pub(crate) fn rate_now(&self) -> Option<f64> {
        if let Some(b) = &self.shared {
            return Some(b.rate_now());
        }
        self.adaptive
            .as_ref()
            .map(|a| a.lock().unwrap_or_else(|e| e.into_inner()).current)
    }

    /// The rate requests go at now, or as asked when it does not adapt: `None` without a
    /// limit.
    pub(crate) fn pace(&self) -> Option<f64> {
        self.rate_now().or(self.asked)
    }

    /// The shared budget, if the job draws from one.
    pub(crate) fn shared(&self) -> Option<&Arc<crate::quota::Budget>> {
        self.shared.as_ref()
    }

    fn gate(&self) -> Option<Instant> {
        *self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a request may start, or until `stop`.
    pub(crate) async fn ready(&self, stop: &CancellationToken) -> Result<(), Stopped> {
        loop {
            if stop.is_cancelled() {
                return Err(Stopped);
            }
            if let Some(t) = self.gate()
                && t > Instant::now()
            {
                unless_stopped(stop, tokio::time::sleep_until(t)).await?;
                continue;
            }
            if let Some(b) = &self.shared {
                // One reservation of this job at a time: the others wait their turn here, so
                // the account's slots are taken in the order they are used.
                unless_stopped(stop, async {
                    let _turn = self.turn.lock().await;
                    let wait = b.reserve().await;
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                })
                .await?;
            }
            let l = self
                .limiter
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(l) = l
                && l.check().is_err()
            {
                unless_stopped(stop, async {
                    let _turn = self.turn.lock().await;
                    // The runtime's own timer: governor's `until_ready` waits on a timer
                    // thread of its own, two thread wake-ups more for every paced request.
                    while let Err(not_until) = l.check() {
                        let wait = not_until.wait_time_from(governor::clock::Clock::now(l.clock()));
                        tokio::time::sleep(wait).await;
                    }
                })
                .await?;
            }
            // A 429 may have closed the gate while this worker waited for its cell.
            if self.gate().is_some_and(|t| t > Instant::now()) {
                continue;
            }
            if self.requests.fetch_add(1, Ordering::Relaxed) == 0 {
                let _ = self.first_request.set(std::time::Instant::now());
            }
            return Ok(());
        }
    }

    /// A 429 arrived: close the gate for everyone.
    pub(crate) fn throttled(&self, retry_after: Option<Duration>) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        if let Some(b) = &self.shared {
            b.throttled(retry_after);
        }
        if let Some(a) = &self.adaptive {
            let mut a = a.lock().unwrap_or_else(|e| e.into_inner());
            if a.last_cut
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            {
                a.current = (a.current * 0.7).max(a.configured * 0.02).max(0.2);
                a.successes = 0;
                a.last_cut = Some(Instant::now());
                tracing::info!("a 429: lowering the request rate to {:.1}/s", a.current);
                self.set_rate(a.current);
            }
        }
        let pause = match retry_after {
            Some(d) => d.min(RETRY_AFTER_CAP),
            None => {
                let n = self.consecutive_429.fetch_add(1, Ordering::Relaxed).min(16);
                let full = BACKOFF_BASE.saturating_mul(1 << n).min(BACKOFF_CAP);
                // Half fixed, half random: spreads the restart of many clients.
                full / 2 + full.mul_f64(fastrand::f64() / 2.0)
            }
        };
        let until = Instant::now() + pause;
        let mut g = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none_or(|t| t < until) {
            *g = Some(until);
        }
    }

    /// A request went through: the 429 backoff starts again from its base.
    pub(crate) fn succeeded(&self) {
        if self.consecutive_429.load(Ordering::Relaxed) != 0 {
            self.consecutive_429.store(0, Ordering::Relaxed);
        }
        if let Some(a) = &self.adaptive {
            let mut a = a.lock().unwrap_or_else(|e| e.into_inner());
            if a.current < a.configured {
                a.successes += 1;
                if a.successes as f64 >= a.current {
                    a.successes = 0;
                    a.current = (a.current + a.configured * 0.05).min(a.configured);
                    self.set_rate(a.current);
                }
            }
        }
    }

    fn set_rate(&self, r: f64) {
        *self.limiter.write().unwrap_or_else(|e| e.into_inner()) = limiter(r, self.burst);
    }

    /// The rate the pacer runs at now (`None`: no limit).
    #[cfg(test)]
    fn current_rate(&self) -> Option<f64> {
        self.adaptive
            .as_ref()
            .map(|a| a.lock().unwrap_or_else(|e| e.into_inner()).current)
    }

    /// A row's first attempt: it earns a share of a retry.
    pub(crate) fn deposit(&self) {
        let mut b = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        b.tokens = (b.tokens + BUDGET_RATIO).min(BUDGET_MAX);
    }

    /// Waits until the retry budget allows one more retry, and takes it (or until `stop`).
    pub(crate) async fn retry_permit(&self, stop: &CancellationToken) -> Result<(), Stopped> {
        let mut waited = false;
        loop {
            {
                let mut b = self.budget.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let earned = now.duration_since(b.last).as_secs_f64() * BUDGET_RESERVE;
                b.tokens = (b.tokens + earned).min(BUDGET_MAX);
                b.last = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    return Ok(());
                }
            }
            if !waited {
                waited = true;
                self.budget_waits.fetch_add(1, Ordering::Relaxed);
            }
            unless_stopped(stop, tokio::time::sleep(Duration::from_millis(50))).await?;
        }
    }

    /// When the first request of the run was let through.
    pub(crate) fn first_request(&self) -> Option<std::time::Instant> {
        self.first_request.get().copied()
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn throttled_count(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }
}

/// The default burst: 1 % of the rate, at least 1.
pub(crate) fn default_burst(rate: Option<f64>) -> NonZeroU32 {
    let b = rate.map_or(1.0, |r| (r / 100.0).ceil());
    NonZeroU32::new(b.clamp(1.0, 10_000.0) as u32).unwrap_or(NonZeroU32::MIN)
}

fn limiter(rate: f64, burst: NonZeroU32) -> Option<Arc<DefaultDirectRateLimiter>> {
    // Whatever the caller passes, the period stays between a nanosecond and an hour.
    let period = Duration::try_from_secs_f64(1.0 / rate.clamp(1.0 / 3600.0, 1e9))
        .unwrap_or(Duration::from_secs(3600));
    Quota::with_period(period).map(|q| Arc::new(RateLimiter::direct(q.allow_burst(burst))))
}

/// Parses `Retry-After`: whole seconds or an HTTP-date.
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let when = crate::clock::parse_http_date(v)?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        let later = std::time::SystemTime::now() + Duration::from_secs(30);
        let d = parse_retry_after(&crate::clock::http_date(later)).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_holds_every_worker_until_the_gate_opens() {
        let p = std::sync::Arc::new(Pacer::new(None, NonZeroU32::MIN));
        p.throttled(Some(Duration::from_secs(2)));
        let start = Instant::now();
        let stop = CancellationToken::new();
        let a = tokio::spawn({
            let (p, stop) = (p.clone(), stop.clone());
            async move {
                p.ready(&stop).await.unwrap();
                Instant::now()
            }
        });
        p.ready(&stop).await.unwrap();
        assert!(Instant::now() - start >= Duration::from_secs(2));
        assert!(a.await.unwrap() - start >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_cuts_the_gate_the_bucket_and_the_retry_budget() {
        let p = std::sync::Arc::new(Pacer::new(Some(0.01), NonZeroU32::MIN));
        let stop = CancellationToken::new();
        p.ready(&stop).await.unwrap();
        // The next cell is 100 s away, and a 429 closes the gate for 300 s on top.
        p.throttled(Some(Duration::from_secs(300)));
        let waiting = tokio::spawn({
            let (p, stop) = (p.clone(), stop.clone());
            async move { p.ready(&stop).await }
        });
        let budget = tokio::spawn({
            let (p, stop) = (p.clone(), stop.clone());
            async move {
                // The budget holds 100 and earns 10 a second: 1,000 outlast the test.
                for _ in 0..1000 {
                    p.retry_permit(&stop).await?;
                }
                Ok::<(), Stopped>(())
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = Instant::now();
        stop.cancel();
        assert_eq!(waiting.await.unwrap(), Err(Stopped));
        assert_eq!(budget.await.unwrap(), Err(Stopped));
        assert!(Instant::now() - t < Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_without_retry_after_grows_and_resets() {
        let p = Pacer::new(None, NonZeroU32::MIN);
        p.throttled(None);
        let first = p.gate().unwrap() - Instant::now();
        for _ in 0..4 {
            p.throttled(None);
        }
        let later = p.gate().unwrap() - Instant::now();
        assert!(
            first <= BACKOFF_BASE && later >= BACKOFF_BASE * 4,
            "{first:?} {later:?}"
        );
        p.succeeded();
        assert_eq!(p.consecutive_429.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_retry_budget_runs_dry_and_refills() {
        let p = Pacer::new(None, NonZeroU32::MIN);
        let stop = CancellationToken::new();
        for _ in 0..100 {
            p.retry_permit(&stop).await.unwrap();
        }
        let t = Instant::now();
        p.retry_permit(&stop).await.unwrap();
        assert!(
            Instant::now() - t >= Duration::from_millis(50),
            "the 101st retry waited"
        );
        for _ in 0..60 {
            p.deposit();
        }
        let t = Instant::now();
        for _ in 0..10 {
            p.retry_permit(&stop).await.unwrap();
        }
        assert!(
            Instant::now() - t < Duration::from_millis(50),
            "deposits pay for retries"
        );
        assert_eq!(p.budget_waits.load(Ordering::Relaxed), 1);
        let fixed = Pacer::with_adaptation(Some(10.0), NonZeroU32::MIN, false);
        fixed.throttled(None);
        assert_eq!(fixed.current_rate(), None);
    }

    #[test]
    fn aimd_cuts_once_per_burst_of_429s_and_climbs_back() {
        let p = Pacer::new(Some(100.0), NonZeroU32::MIN);
        p.throttled(Some(Duration::ZERO));
        p.throttled(Some(Duration::ZERO));
        assert_eq!(p.current_rate(), Some(70.0));
        for _ in 0..10_000 {
            p.succeeded();
        }
        assert_eq!(p.current_rate(), Some(100.0));
        assert_eq!(Pacer::new(None, NonZeroU32::MIN).current_rate(), None);
    }
}
