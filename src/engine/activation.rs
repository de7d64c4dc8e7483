//! `--wait-active`: after an activation answers `pendingProvision`, the SIM is polled until
//! it is active or the time is up.
//!
//! Guarantees: a row waiting for its activation holds no concurrency slot; the polls are
//! paced and retried like every call and back off from 1 s to 15 s; a stop while polling
//! leaves the row without an outcome (it is reconciled and polled again on resume).

use tokio_util::sync::CancellationToken;

use crate::api::Client;

use super::calls::Done;
use super::retry::{GiveUp, RetryPolicy};
use super::rules::sim_status;

/// `--wait-active`: how long to poll a `pendingProvision` SIM, and the counter that tells the
/// dispatcher a waiting row no longer occupies a concurrency slot.
#[derive(Debug, Default)]
pub(crate) struct WaitActive {
    pub(crate) within: std::time::Duration,
    pub(crate) waiting: std::sync::atomic::AtomicUsize,
    pub(crate) freed: tokio::sync::Notify,
}

/// Polls the SIM (paced, backing off from 1 s to 15 s) until it is active or the time is up.
/// A SIM still `pendingProvision` at the end makes the row `pending` (it goes to the
/// failures file, to be polled again); else the row keeps its verdict. Its `sim_status` is
/// the last status seen. A stop while polling leaves
/// the row without an outcome (it is reconciled and polled again on resume).
pub(crate) async fn wait_for_active(
    c: &Client,
    icc: &str,
    mut d: Done,
    w: &WaitActive,
    policy: &RetryPolicy,
    stop: &CancellationToken,
) -> Result<Done, GiveUp> {
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    let started = std::time::Instant::now();
    w.waiting.fetch_add(1, Ordering::SeqCst);
    w.freed.notify_one();
    let mut pause = Duration::from_secs(1);
    let mut last = "pendingProvision".to_owned();
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
                if r.value.status != "pendingProvision" {
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
    d.message = if last.starts_with("pendingProvision") {
        d.verdict = crate::output::row::Verdict::Pending;
        format!(
            "still pendingProvision after waiting {:.1}s; poll again: run the failures file with --wait-active",
            started.elapsed().as_secs_f64()
        )
    } else {
        format!("{last} after {:.1}s", started.elapsed().as_secs_f64())
    };
    d.sim_status = Some(last);
    Ok(d)
}
