//! The retry policy: how many attempts, how long between them, and which errors earn one.
//!
//! Guarantees: delays follow "full jitter" exponential backoff (uniform in
//! `[0, min(cap, base·2^n)]`), so retries from many workers spread out; 429s are paced by
//! the shared gate and have their own, larger budget; a stop cuts every wait short; a row's
//! first write is sent only after its *started* record has reached the OS; an error that is
//! about the account rather than the row (403, refused credentials, 401 with fresh tokens to
//! the end) ends the row without an outcome, so it is done again on resume.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::api::ApiError;

use super::recorder::Journaling;

/// Retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Repeats after 5xx, timeouts and connection errors.
    pub max_retries: u32,
    /// The first backoff's ceiling.
    pub base: Duration,
    /// The largest backoff.
    pub cap: Duration,
    /// 429s one row may meet before it fails.
    pub max_throttled: u32,
}

impl RetryPolicy {
    pub(crate) fn new(max_retries: u32) -> Self {
        Self {
            max_retries,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(20),
            max_throttled: 100.max(max_retries.saturating_mul(10)),
        }
    }

    /// The wait before retry number `n` (1-based).
    pub(crate) fn delay(&self, n: u32) -> Duration {
        let ceiling = self.base.saturating_mul(1u32 << n.min(20)).min(self.cap);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// The attempt bookkeeping of one row.
pub(crate) struct Attempts<'a> {
    policy: &'a RetryPolicy,
    stop: &'a CancellationToken,
    pacer: Option<&'a crate::api::Pacer>,
    /// Where the row's *started* record goes before its first write, and its line.
    journal: Option<(&'a Journaling, u64)>,
    started: bool,
    /// Tries of the row's operation.
    pub(crate) tries: u32,
    pub(crate) retries: u32,
    pub(crate) throttled: u32,
    /// A write may have been applied without our seeing the answer.
    pub(crate) ambiguous: bool,
}

/// Why a row ended without an answer.
#[derive(Debug)]
pub(crate) enum GiveUp {
    /// The error is final (or its retries ran out): the row failed.
    Error(ApiError),
    /// The job is stopping; the row will be done on resume.
    Interrupted,
    /// An error about the account, not the row: the job halts and the row is done again on
    /// resume, once the operator has fixed the cause.
    Halting(ApiError),
}

impl From<ApiError> for GiveUp {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Interrupted => GiveUp::Interrupted,
            e if e.halts_job() => GiveUp::Halting(e),
            e => GiveUp::Error(e),
        }
    }
}

impl<'a> Attempts<'a> {
    pub(crate) fn new(policy: &'a RetryPolicy, stop: &'a CancellationToken) -> Self {
        Self {
            policy,
            stop,
            pacer: None,
            journal: None,
            started: false,
            tries: 0,
            retries: 0,
            throttled: 0,
            ambiguous: false,
        }
    }

    /// Retries then also wait for the pacer's retry budget.
    pub(crate) fn with_budget(mut self, pacer: &'a crate::api::Pacer) -> Self {
        self.pacer = Some(pacer);
        self
    }

    /// Writes record a *started* record for `line` through `journal` first, unless it is
    /// already out (`started`).
    pub(crate) fn with_journal(
        mut self,
        journal: &'a Journaling,
        line: u64,
        started: bool,
    ) -> Self {
        self.journal = Some((journal, line));
        self.started = started;
        self
    }

    /// Call before sending a write: the first time, records the row as started and waits
    /// until that record has reached the OS, so a crash after the write can be reconciled.
    pub(crate) async fn before_write(&mut self) -> Result<(), GiveUp> {
        if !self.started {
            if let Some((j, line)) = self.journal {
                j.started(line, self.stop)
                    .await
                    .map_err(|_| GiveUp::Interrupted)?;
            }
            self.started = true;
        }
        Ok(())
    }

    /// Starts a try, unless the job is stopping.
    pub(crate) fn begin(&mut self) -> Result<(), GiveUp> {
        if self.stop.is_cancelled() {
            return Err(GiveUp::Interrupted);
        }
        self.tries += 1;
        if self.tries == 1
            && let Some(p) = self.pacer
        {
            p.deposit();
        }
        Ok(())
    }

    /// After a failed call: `Ok` once it is time to try again, `Err` when the row ends.
    pub(crate) async fn after(&mut self, e: ApiError) -> Result<(), GiveUp> {
        if e.halts_job() || !e.retryable() {
            return Err(e.into());
        }
        if e.ambiguous() {
            self.ambiguous = true;
        }
        let wait = if matches!(e, ApiError::RateLimited { .. }) {
            self.throttled += 1;
            if self.throttled > self.policy.max_throttled {
                return Err(GiveUp::Error(e));
            }
            // The shared gate does the waiting.
            Duration::ZERO
        } else {
            self.retries += 1;
            if self.retries > self.policy.max_retries {
                // Fresh tokens refused to the end: the account, not this row.
                return Err(if matches!(e, ApiError::Unauthorized { .. }) {
                    GiveUp::Halting(e)
                } else {
                    GiveUp::Error(e)
                });
            }
            tracing::debug!(error = %e, retry = self.retries, "retrying");
            if let Some(p) = self.pacer
                && p.retry_permit(self.stop).await.is_err()
            {
                return Err(GiveUp::Interrupted);
            }
            self.policy.delay(self.retries)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(()),
            _ = self.stop.cancelled() => Err(GiveUp::Interrupted),
        }
    }
}

/// Calls `f` until it succeeds, its error is final, or retries run out (reads: no
/// reconcile needed).
pub(crate) async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    stop: &CancellationToken,
    pacer: &crate::api::Pacer,
    mut f: F,
) -> Result<T, GiveUp>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut a = Attempts::new(policy, stop).with_budget(pacer);
    loop {
        a.begin()?;
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => a.after(e).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_full_jitter_under_the_cap() {
        let p = RetryPolicy::new(5);
        for n in 1..30 {
            let d = p.delay(n);
            assert!(d <= p.cap);
            assert!(d <= p.base * (1 << n.min(20)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_run_out_and_final_errors_end_at_once() {
        let p = RetryPolicy::new(2);
        let stop = CancellationToken::new();
        let mut a = Attempts::new(&p, &stop);
        let s = || ApiError::Server {
            status: 503,
            message: String::new(),
            request_id: None,
        };
        assert!(a.after(s()).await.is_ok());
        assert!(a.after(s()).await.is_ok());
        assert!(matches!(a.after(s()).await, Err(GiveUp::Error(_))));
        assert!(a.ambiguous);
        let mut b = Attempts::new(&p, &stop);
        let r = ApiError::Rejected {
            status: 400,
            code: Some(16000),
            message: String::new(),
            request_id: None,
        };
        assert!(matches!(b.after(r).await, Err(GiveUp::Error(_))));
        stop.cancel();
        assert!(matches!(b.begin(), Err(GiveUp::Interrupted)));
    }
}
