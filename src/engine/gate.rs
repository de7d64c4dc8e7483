//! Asking before acting: the confirmation of a destructive job, and the look after the
//! canary.
//!
//! Guarantees: the rows of a job are counted by destructive action and target before any
//! request (from a second pass over the same open input, within its fingerprinted length);
//! a job with more than `--confirm-over` destructive rows left proceeds only when the
//! operator says yes on a terminal, or `--yes` was given; off a terminal without `--yes` it
//! stops with exit 2 before any request, saying what it would change. The counts are bounded
//! (the largest targets, then one line for the rest).

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};

use fixedbitset::FixedBitSet;

use tokio_util::sync::CancellationToken;

use crate::input::{Action, Rows};

use super::config::{Error, JobConfig};

/// Targets counted one by one; the rest are summed.
const MAX_TARGETS: usize = 64;

/// A destructive job over `--confirm-over`: asks on a terminal; refuses (exit 2) off one
/// without `--yes`. Before any request.
pub(crate) async fn confirm(
    cfg: &JobConfig,
    rows: Rows,
    done: &fixedbitset::FixedBitSet,
    drain: &CancellationToken,
) -> Result<(), Error> {
    let Some(over) = cfg.confirm_over else {
        return Ok(());
    };
    let (done, stop) = (done.clone(), drain.clone());
    let counts = tokio::task::spawn_blocking(move || {
        Destructive::count(rows, &done, &|| stop.is_cancelled())
    })
    .await
    .map_err(|e| Error::Thread {
        what: "count",
        source: std::io::Error::other(e),
    })?;
    if drain.is_cancelled() {
        return Err(Error::StoppedEarly);
    }
    let total = counts.total();
    if total <= over {
        return Ok(());
    }
    let refuse = |how| Error::NotConfirmed {
        total,
        over,
        lines: counts.lines(),
        how,
    };
    if !on_terminal() {
        return Err(refuse("add --yes to confirm (as a scheduled job would)"));
    }
    eprint!(
        "This job changes {total} SIMs with destructive actions:\n{}",
        counts.lines()
    );
    match ask_unless("Proceed?", drain).await {
        Some(true) => Ok(()),
        Some(false) => Err(refuse("the answer was no")),
        None => Err(Error::StoppedEarly),
    }
}

/// The destructive change an action makes, named with its target (`set-package 20533`);
/// `None` for an action that is not destructive.
pub(crate) fn destructive(action: &Action) -> Option<String> {
    match action {
        Action::Deactivate => Some("deactivate".into()),
        Action::Suspend => Some("suspend".into()),
        Action::SetPackage(p) => Some(format!("set-package {p}")),
        Action::SetPortfolio(f) => Some(format!("set-portfolio {f}")),
        Action::DeleteAttribute { name } => Some(format!("delete-attribute {name}")),
        Action::Patch(p)
            if p.status.as_deref() == Some("available")
                || p.customer_suspend == Some(true)
                || p.package_id.is_some()
                || p.portfolio_id.is_some() =>
        {
            Some(format!("patch {}", crate::input::action::patch_text(p)))
        }
        Action::Activate
        | Action::Unsuspend
        | Action::SetAttribute { .. }
        | Action::Patch(_)
        | Action::Blocked(_) => None,
    }
}

/// Destructive rows left to do, by action and target.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Destructive {
    pub(crate) by_target: BTreeMap<String, u64>,
    /// Rows whose target did not fit in the table.
    pub(crate) other: u64,
}

impl Destructive {
    pub(crate) fn total(&self) -> u64 {
        self.by_target.values().sum::<u64>() + self.other
    }

    /// Counts the destructive rows of `rows` that `done` does not hold; `stop` ends it early.
    pub(crate) fn count(rows: Rows, done: &FixedBitSet, stop: &dyn Fn() -> bool) -> Self {
        let mut d = Self::default();
        for item in rows {
            let Ok(item) = item else { break };
            if stop() {
                break;
            }
            let Ok(row) = &item.parsed else { continue };
            if done.contains(item.line as usize) {
                continue;
            }
            let Some(key) = destructive(&row.action) else {
                continue;
            };
            if let Some(n) = d.by_target.get_mut(&key) {
                *n += 1;
            } else if d.by_target.len() < MAX_TARGETS {
                d.by_target.insert(key, 1);
            } else {
                d.other += 1;
            }
        }
        d
    }

    /// The counts as lines (`  set-package 20533: 41,955 SIMs`), largest first.
    pub(crate) fn lines(&self) -> String {
        let mut v: Vec<_> = self.by_target.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut s = String::new();
        for (k, n) in v {
            s += &format!(
                "  {k}: {}\n",
                crate::output::summary::count_of(*n, "SIM", "SIMs")
            );
        }
        if self.other > 0 {
            s += &format!(
                "  (other targets): {}\n",
                crate::output::summary::count_of(self.other, "SIM", "SIMs")
            );
        }
        s
    }
}

/// Whether an operator is there to answer: standard input and standard error are terminals.
pub(crate) fn on_terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Asks `question` on standard error and reads the answer from standard input (blocking):
/// `true` for y or yes.
pub(crate) fn ask(question: &str) -> bool {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    drop(err);
    // An answer, not a file: a few hundred bytes at most.
    let mut line = String::new();
    if std::io::Read::take(std::io::stdin().lock(), 512)
        .read_line(&mut line)
        .is_err()
    {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// What follows the canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterCanary {
    GoOn,
    /// Rows failed and no one is there to decide: the job halts.
    Failed,
    /// The operator said no.
    Declined,
    /// A signal came while asking.
    Signalled,
}

/// The look after the canary's `rows`: on a terminal, their summary and the question; off
/// one, on only when none failed.
pub(crate) async fn after_canary(rows: u64, failed: u64, drain: &CancellationToken) -> AfterCanary {
    if !on_terminal() {
        if failed > 0 {
            return AfterCanary::Failed;
        }
        tracing::info!("canary: {rows} rows, none failed; going on");
        return AfterCanary::GoOn;
    }
    // The question is not drawn over by the progress line.
    crate::output::progress::hide();
    eprintln!("canary: the first {rows} rows are done, {failed} failed (see the results)");
    let q = if failed > 0 {
        "Go on with the remaining rows despite the failures?"
    } else {
        "Go on with the remaining rows?"
    };
    let answer = match ask_unless(q, drain).await {
        Some(true) => AfterCanary::GoOn,
        Some(false) => AfterCanary::Declined,
        None => AfterCanary::Signalled,
    };
    crate::output::progress::show();
    answer
}

/// [`ask`], unless `drain` fires first (`None`). The question is read on a thread of its
/// own: a read of the terminal that never returns must not hold the end of the program.
pub(crate) async fn ask_unless(question: &'static str, drain: &CancellationToken) -> Option<bool> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let asking = std::thread::Builder::new()
        .name("simbulk-ask".into())
        .spawn(move || tx.send(ask(question)));
    if asking.is_err() {
        return Some(false);
    }
    tokio::select! {
        a = rx => Some(a.unwrap_or(false)),
        _ = drain.cancelled() => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destructive_actions_are_named_with_their_target() {
        assert_eq!(
            destructive(&Action::SetPackage(20533)).as_deref(),
            Some("set-package 20533")
        );
        assert_eq!(destructive(&Action::Activate), None);
        assert_eq!(
            destructive(&Action::DeleteAttribute { name: "tag".into() }).as_deref(),
            Some("delete-attribute tag")
        );
    }

    #[test]
    fn counts_read_with_separators_and_stay_bounded() {
        assert_eq!(crate::output::summary::thousands(41955), "41,955");
        assert_eq!(crate::output::summary::thousands(7), "7");
        assert_eq!(crate::output::summary::thousands(1_000_000), "1,000,000");
        let mut d = Destructive::default();
        for i in 0..100 {
            let key = format!("set-package {i}");
            if d.by_target.len() < MAX_TARGETS {
                d.by_target.insert(key, 2);
            } else {
                d.other += 2;
            }
        }
        assert_eq!(d.total(), 200);
        assert!(d.lines().contains("(other targets): 72 SIMs"));
    }
}
