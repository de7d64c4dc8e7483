//! Signal escalation: the first SIGINT, SIGTERM or SIGHUP asks for a graceful stop, the
//! second for an immediate abort.
//!
//! Guarantees: once installed, SIGINT, SIGTERM and SIGHUP (a closed terminal or ssh session)
//! never kill the process outright; the engine decides what each one means, and its files stay
//! consistent either way.

use tokio_util::sync::CancellationToken;

/// Waits for the first SIGINT, SIGTERM or SIGHUP.
pub(crate) async fn first() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Cancels `drain` on the first signal and `abort` on the second.
pub(crate) fn escalate(drain: CancellationToken, abort: CancellationToken) {
    tokio::spawn(async move {
        first().await;
        tracing::warn!(
            "stopping: finishing the rows in flight (press Ctrl-C again to abort at once)"
        );
        drain.cancel();
        first().await;
        tracing::warn!("aborting now");
        abort.cancel();
    });
}
