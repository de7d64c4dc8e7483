//! How the dispatcher's loop ends and when it stops taking rows; why a job halts, and the
//! words that tell the operator the way out.
//!
//! Guarantees: every halt message names the way out that works — `--resume` when only the
//! environment had to be fixed (a permission, the provider's health), `--restart` (or the
//! failures file) when the input or `--value` must change, since `--resume` refuses a changed
//! input — and quotes the error code and the API's message, never one request's id.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::api::ApiError;
use crate::input::ActionKind;
use crate::model::codes;

use super::Threshold;

/// Why the loop ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum End {
    /// Every row was read and has a record.
    Complete,
    /// Stopped taking rows (signal or deadline); rows in flight finished their call.
    Stopped(String),
    /// The job was halted.
    Halted(Halt),
    /// Aborted at once.
    Aborted,
    /// The outputs could not be written.
    WriteFailed(String),
    /// The input could not be read further.
    ReadFailed(String),
}

/// When to stop taking new rows.
pub(crate) struct Stops {
    pub(crate) drain: CancellationToken,
    pub(crate) abort: CancellationToken,
    /// Cancelled to stop the rows: by the drain, a deadline, a halt. The client's stop token.
    pub(crate) stop_rows: CancellationToken,
    pub(crate) deadline: Option<tokio::time::Instant>,
}

/// The reason of a stop by signal.
pub(crate) const SIGNALLED: &str = "interrupted by a signal";
/// The reason of a stop at `--until` / `--max-duration`.
pub(crate) const WINDOW_CLOSED: &str = "the run window closed (--until / --max-duration)";

/// Failures of a run by (HTTP status, error code): count and first message.
pub(crate) type Failures = BTreeMap<(Option<u16>, Option<i64>), (u64, String)>;

/// Why the job halted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Halt {
    /// `--halt-after-same-error`: the last `run` rows failed the same way.
    SameError {
        run: u32,
        action: String,
        status: Option<u16>,
        code: Option<i64>,
        message: String,
    },
    /// `--max-failures`.
    MaxFailures { failed: u64, threshold: Threshold },
    /// The provider refused the account (403, credentials, 401 with fresh tokens); the rows
    /// that met it have no record.
    Account { error: ApiError, action: String },
    /// No row finished and no useful answer came for this long.
    Stall(Duration),
    /// A worker panicked.
    Panic(String),
    /// `--canary`: rows of the canary failed.
    Canary { rows: u64, failed: u64 },
}

/// Consecutive failed rows with the same error: the streak that looks systemic.
#[derive(Default)]
pub(crate) struct Streak {
    key: Option<(Option<u16>, Option<i64>)>,
    len: u32,
}

impl Streak {
    /// Counts a finished row; returns the streak's length when `r` extends it.
    pub(crate) fn add(&mut self, r: &crate::output::row::RowResult) -> u32 {
        use crate::output::row::Verdict;
        match r.verdict {
            Verdict::Failed => {
                let key = Some((r.http_status, r.error_code));
                if self.key == key {
                    self.len += 1;
                } else {
                    self.key = key;
                    self.len = 1;
                }
                self.len
            }
            // Invalid rows say nothing about the API; they neither extend nor break a streak.
            Verdict::Invalid => 0,
            // The provider took the activation: the API works.
            Verdict::Pending => {
                self.len = 0;
                0
            }
            Verdict::Ok | Verdict::Skipped => {
                self.len = 0;
                0
            }
        }
    }
}

fn code_text(status: Option<u16>, code: Option<i64>) -> String {
    match (status, code) {
        (Some(s), Some(c)) => format!("HTTP {s} error {c}"),
        (Some(s), None) => format!("HTTP {s}"),
        (None, Some(c)) => format!("error {c}"),
        (None, None) => "no answer from the API".into(),
    }
}

/// The API's message without the request id it may carry.
fn plain(message: &str) -> &str {
    message.split(" (request ").next().unwrap_or(message)
}

/// What a code usually means for an action, in the operator's words.
pub(crate) fn likely_cause(action: Option<ActionKind>, code: Option<i64>) -> &'static str {
    match code {
        Some(codes::PACKAGE_NOT_LINKED) => {
            "the package id is probably wrong, or the package is not linked to the SIMs' portfolio"
        }
        Some(codes::PACKAGE_NOT_ACTIVE) => "the package is not active at the provider",
        Some(codes::MNO_MISMATCH) => "the package belongs to another operator than the SIMs",
        Some(codes::PACKAGE_UNLINKED_AFTER_MOVE) => {
            "the move leaves the SIMs' package unlinked: give a package of the new portfolio too"
        }
        Some(codes::PORTFOLIO_OUT_OF_SPHERE) => {
            "the portfolio id is probably wrong, or outside this account"
        }
        Some(codes::PORTFOLIO_DELETED | codes::PORTFOLIO_NOT_ACTIVE) => {
            "the target portfolio is closed or not active"
        }
        Some(codes::SUSPENDED) => "the SIMs are suspended: a suspended SIM takes no other change",
        Some(codes::WRONG_STATUS) => match action {
            Some(ActionKind::SetPackage) => {
                "the SIMs are active, and an active SIM's package cannot change"
            }
            Some(ActionKind::Suspend) => "only active SIMs can be suspended",
            Some(ActionKind::Activate | ActionKind::Deactivate) => {
                "the SIMs are still pending provisioning"
            }
            _ => "the SIMs are not in a state that allows this change",
        },
        Some(codes::NOT_FOUND) => {
            "the SIMs are not in this account (another environment or client id?)"
        }
        Some(codes::FIELD_REJECTED) => "the value is not one the API accepts",
        _ => "",
    }
}

/// The permission an action needs, in the contract's names.
fn permission(action: Option<ActionKind>) -> &'static str {
    match action {
        Some(ActionKind::SetAttribute) => "iccAttributeCreate and iccAttributeUpdate",
        Some(ActionKind::DeleteAttribute) => "iccAttributeDelete",
        _ => "iccUpdate",
    }
}

impl Halt {
    /// The halt's message. `failures` are this run's failed rows (also those that finished
    /// after the halt); `unrecorded` the rows that reached no outcome.
    pub(crate) fn message(&self, failures: &Failures, unrecorded: u64) -> String {
        match self {
            Halt::SameError {
                run,
                action,
                status,
                code,
                message,
            } => {
                let total = failures.get(&(*status, *code)).map_or(0, |f| f.0);
                let what = code_text(*status, *code);
                let provider = status.is_none_or(|s| s >= 500);
                if provider {
                    return format!(
                        "the last {run} rows all failed the same way ({what}: {}); {total} rows failed so in this run. The provider kept failing: run again with --resume once it works again",
                        plain(message)
                    );
                }
                let cause = likely_cause(ActionKind::parse(action), *code);
                let cause = if cause.is_empty() {
                    String::new()
                } else {
                    format!(" For {action}, {what} usually means {cause}.")
                };
                format!(
                    "the last {run} rows all failed the same way ({what}: {}); {total} rows failed so in this run. This looks like a mistake in the job rather than a problem of single SIMs.{cause} Fix the input (or --value) and run it again with --restart (rows already done answer skipped), or fix and run the failures file; to go on as it is, raise --halt-after-same-error and run again with --resume",
                    plain(message)
                )
            }
            Halt::MaxFailures { failed, threshold } => {
                let top = failures
                    .iter()
                    .max_by_key(|(_, (n, _))| *n)
                    .map(|((s, c), (n, m))| {
                        format!("; most were {} ({}) × {n}", code_text(*s, *c), plain(m))
                    })
                    .unwrap_or_default();
                format!(
                    "{failed} rows failed, past --max-failures {threshold}{top}. If the input is wrong, fix it and run again with --restart; if the provider or the SIMs were the cause, fix that and run again with --resume (raise --max-failures to go on)"
                )
            }
            Halt::Account { error, action } => {
                let rows =
                    format!("{unrecorded} rows have no result yet and will be done on resume");
                match error {
                    ApiError::Forbidden { .. } => format!(
                        "{error}. The client lacks the permission {action} needs ({}); grant it (or use a client that has it), then run again with --resume: {rows}",
                        permission(ActionKind::parse(action))
                    ),
                    ApiError::Credentials { .. } => format!(
                        "{error}; fix the credentials, then run again with --resume: {rows}"
                    ),
                    _ => format!(
                        "{error}; the API refuses this client's tokens: check its access with the provider, then run again with --resume: {rows}"
                    ),
                }
            }
            Halt::Stall(d) => format!(
                "no row finished for {} and the provider answered only with 429s, 5xx errors or not at all; run again with --resume once it has recovered (--stall-timeout sets how long to wait)",
                crate::clock::duration_text(*d)
            ),
            Halt::Panic(m) => format!(
                "internal error: a worker panicked ({m}); the files are consistent: run again with --resume, and please report this"
            ),
            Halt::Canary { rows, failed } => {
                let top = failures
                    .iter()
                    .max_by_key(|(_, (n, _))| *n)
                    .map(|((s, c), (n, m))| {
                        format!(" (most: {} ({}) × {n})", code_text(*s, *c), plain(m))
                    })
                    .unwrap_or_default();
                format!(
                    "the canary's {rows} rows had {failed} failed{top}; look at the results, fix the cause, then run again with --resume to go on from the row after the canary"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_package_names_the_cause_and_restart() {
        let mut f = Failures::new();
        f.insert((Some(400), Some(16005)), (31, "Package not linked".into()));
        let h = Halt::SameError {
            run: 25,
            action: "set-package".into(),
            status: Some(400),
            code: Some(16005),
            message: "Package not linked (request req-1)".into(),
        };
        let m = h.message(&f, 0);
        assert!(
            m.contains("HTTP 400 error 16005: Package not linked)"),
            "{m}"
        );
        assert!(m.contains("31 rows failed"), "{m}");
        assert!(m.contains("package id is probably wrong"), "{m}");
        assert!(m.contains("--restart") && !m.contains("req-1"), "{m}");
    }

    #[test]
    fn a_provider_outage_and_a_permission_say_resume() {
        let h = Halt::SameError {
            run: 25,
            action: "activate".into(),
            status: None,
            code: None,
            message: "gave up after 9 attempts: connection lost".into(),
        };
        let m = h.message(&Failures::new(), 0);
        assert!(m.contains("--resume") && !m.contains("--restart"), "{m}");
        let h = Halt::Account {
            error: ApiError::Forbidden {
                code: Some(6024),
                message: "not permitted".into(),
                request_id: None,
            },
            action: "delete-attribute".into(),
        };
        let m = h.message(&Failures::new(), 7);
        assert!(
            m.contains("iccAttributeDelete") && m.contains("--resume"),
            "{m}"
        );
        assert!(m.contains("7 rows have no result yet"), "{m}");
    }
}
