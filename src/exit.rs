//! The documented exit codes of `simbulk`, as one type, and the job states they follow from.
//!
//! Guarantees: a code is one of the five of the table; a job's code follows from its state
//! alone ([`JobState::code`]); every error's code is decided in one place
//! (`commands::CliError::exit_code`).

use serde::{Serialize, Serializer};

/// An exit code of the documented table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    /// Every row ok or skipped (already in the requested state).
    Ok = 0,
    /// The job ran to the end; some rows failed or were invalid (see the failures CSV).
    RowsFailed = 1,
    /// Usage or input-file error; nothing was sent.
    Usage = 2,
    /// The job was halted: credentials refused, permission denied, or a failure threshold hit.
    Halted = 3,
    /// Stopped early (signal or deadline); run again with `--resume` to continue.
    Stopped = 75,
}

impl Code {
    /// The code's number.
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The code of `n`, when it is one of the table's.
    pub fn from_number(n: u8) -> Option<Self> {
        [OK, ROWS_FAILED, USAGE, HALTED, STOPPED]
            .into_iter()
            .find(|c| c.number() == n)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.number())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.number())
    }
}

impl From<Code> for std::process::ExitCode {
    fn from(c: Code) -> Self {
        std::process::ExitCode::from(c.number())
    }
}

pub(crate) const OK: Code = Code::Ok;
pub(crate) const ROWS_FAILED: Code = Code::RowsFailed;
pub(crate) const USAGE: Code = Code::Usage;
pub(crate) const HALTED: Code = Code::Halted;
pub(crate) const STOPPED: Code = Code::Stopped;

/// How a job's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Every row has a record.
    Completed,
    /// A signal, the deadline or the operator stopped it; resumable.
    Stopped,
    /// A second signal: rows in flight are done again on resume.
    Aborted,
    /// A halt rule, the account or the outputs ended it; resumable.
    Halted,
}

impl JobState {
    /// The state's name in the summary and the results' report.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Completed => "completed",
            JobState::Stopped => "stopped",
            JobState::Aborted => "aborted",
            JobState::Halted => "halted",
        }
    }

    /// The exit code of a job that ended so; `rows_failed`: a completed job had failed or
    /// invalid rows.
    pub fn code(self, rows_failed: bool) -> Code {
        match self {
            JobState::Completed if rows_failed => ROWS_FAILED,
            JobState::Completed => OK,
            JobState::Stopped | JobState::Aborted => STOPPED,
            JobState::Halted => HALTED,
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for JobState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// The table shown in `--help` and the README.
pub(crate) const TABLE: &str = "\
Exit codes:
  0   every row ok or skipped (already in the requested state)
  1   the job ran to the end; some rows failed or were invalid (see the failures CSV)
  2   usage or input-file error; nothing was sent
  3   the job was halted: credentials refused, permission denied, or a failure threshold hit
  75  stopped early (signal or deadline); run again with --resume to continue";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_tables_and_order_by_gravity() {
        for c in [OK, ROWS_FAILED, USAGE, HALTED, STOPPED] {
            assert_eq!(Code::from_number(c.number()), Some(c));
            assert!(TABLE.contains(&format!("\n  {:<3} ", c.number())));
        }
        assert_eq!(Code::from_number(4), None);
        assert!(OK < ROWS_FAILED && ROWS_FAILED < HALTED && HALTED < STOPPED);
        assert_eq!(JobState::Completed.code(true), ROWS_FAILED);
        assert_eq!(JobState::Aborted.code(false), STOPPED);
    }
}
