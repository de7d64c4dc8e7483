//! `--wait-active`: after an activation answers `pendingProvision`, or any change answers
//! `scheduled` (a provider that settles changes later), the SIM is polled until it has
//! settled or the time is up.
//!
//! Guarantees: a row waiting for its activation holds no concurrency slot; the polls are
//! paced and retried like every call and back off from 1 s to 15 s; a stop while polling
//! leaves the row without an outcome (it is reconciled and polled again on resume).

use tokio_util::sync::CancellationToken;

use crate::api::Client;

use super::calls::Done;
use super::retry::{GiveUp, RetryPolicy};
use super::rules::sim_status;

/// A status (as [`sim_status`] writes it) that is still on its way to another one.
fn still_settling(status: &str) -> bool {
    status.starts_with("pendingProvision") || status.starts_with(crate::api::super_sim::SCHEDULED)
}

/// `--wait-active`: how long to poll a `pendingProvision` SIM, and the counter that tells the
/// dispatcher a waiting row no longer occupies a concurrency slot.
#[derive(Debug, Default)]
pub(crate) struct WaitActive {
    pub(crate) within: std::time::Duration,
    pub(crate) waiting: std::sync::atomic::AtomicUsize,
    pub(crate) freed: tokio::sync::Notify,
}

/// Polls the SIM (paced, backing off from 1 s to 15 s) until it has settled (neither
/// `pendingProvision` nor `scheduled`) or the time is up. A SIM still settling at the end
/// makes the row `pending` (it goes to the failures file, to be polled again); one settled
/// as `action` asks keeps the row's verdict; one settled otherwise fails the row (the change
/// is not in place). Its `sim_status` is the last status seen. A stop while polling leaves
/// the row without an outcome (it is reconciled and polled again on resume).
pub(crate) async fn wait_for_active(
    c: &Client,
    icc: &str,
    mut d: Done,
    w: &WaitActive,
    policy: &RetryPolicy,
    stop: &CancellationToken,
    action: &crate::input::Action,
) -> Result<Done, GiveUp> {
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    let started = std::time::Instant::now();
    w.waiting.fetch_add(1, Ordering::SeqCst);
    w.freed.notify_one();
    let mut pause = Duration::from_secs(1);
    let mut last = d
        .sim_status
        .clone()
        .unwrap_or_else(|| "pendingProvision".to_owned());
    let mut settled_as_asked = true;
    let mut stopped = false;
    while started.elapsed() < w.within {
        let left = w.within.saturating_sub(started.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(pause.min(left)) => {}
            _ = stop.cancelled() => { stopped = true; break }
        }
        pause = (pause * 2).min(Duration::from_secs(15));
        match crate::engine::retry::with_retries(policy, stop, &c.pacer, || c.get_sim(icc)).await {
            Ok(r) => {
                last = sim_status(&r.value);
                if !still_settling(&r.value.status) {
                    settled_as_asked = super::rules::satisfied(action, &r.value);
                    break;
                }
            }
            Err(GiveUp::Interrupted) => {
                stopped = true;
                break;
            }
            Err(_) => break,
        }
    }
    w.waiting.fetch_sub(1, Ordering::SeqCst);
    if stopped {
        return Err(GiveUp::Interrupted);
    }
    let waited = started.elapsed().as_secs_f64();
    d.message = if still_settling(&last) {
        d.verdict = crate::output::row::Verdict::Pending;
        format!(
            "still {last} after waiting {waited:.1}s; poll again: run the failures file with --wait-active"
        )
    } else if !settled_as_asked {
        d.verdict = crate::output::row::Verdict::Failed;
        format!(
            "settled as {last} after {waited:.1}s, not as the row asks: the change is not in place"
        )
    } else {
        format!("{last} after {waited:.1}s")
    };
    d.sim_status = Some(last);
    Ok(d)
}
