//! What happened to one row — its verdict and every fact the results file shows — and
//! counts of rows by verdict. The engine makes them; the outputs, the checkpoint and the
//! reports read them.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The four outcomes a row can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// The change was applied.
    Ok,
    /// Nothing to do: the SIM already was in the requested state.
    Skipped,
    /// The API refused the change, or retries ran out.
    Failed,
    /// The row itself is malformed; no call was made.
    Invalid,
    /// `--wait-active`: the activation went through, but the SIM was still
    /// `pendingProvision` when the wait ended (poll it again with `run --wait-active`).
    Pending,
}

impl Verdict {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Skipped => "skipped",
            Verdict::Failed => "failed",
            Verdict::Invalid => "invalid",
            Verdict::Pending => "pending",
        }
    }

    /// The verdict an outcome's name (`ok`, `skipped`, …) stands for.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        [
            Verdict::Ok,
            Verdict::Skipped,
            Verdict::Failed,
            Verdict::Invalid,
            Verdict::Pending,
        ]
        .into_iter()
        .find(|v| v.as_str() == name)
    }

    /// Whether the row belongs in the failures file (failed, invalid, and pending rows to
    /// poll again).
    pub(crate) fn is_failure(self) -> bool {
        matches!(self, Verdict::Failed | Verdict::Invalid | Verdict::Pending)
    }
}

/// One finished row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowResult {
    /// The input line the row starts on.
    pub line: u64,
    /// The ICCID cell as the row gave it.
    pub iccid: String,
    /// The action cell as the row gave it (for an invalid row, whatever it said).
    pub action: String,
    /// The action, when the row named one simbulk knows.
    pub kind: Option<crate::input::ActionKind>,
    /// The value the row asked for.
    pub value: String,
    /// The attribute name the row asked for.
    pub attribute: String,
    /// Its outcome.
    pub verdict: Verdict,
    /// The HTTP status of the answer that decided it, if any.
    pub http_status: Option<u16>,
    /// The contract's error code of that answer, if any.
    pub error_code: Option<i64>,
    /// What happened, in words (empty for a plain success).
    pub message: String,
    /// The group of a row that failed without an HTTP status or code, or was invalid: a
    /// reason that holds nothing of the row (for bounded tallies and reports).
    pub reason: Option<&'static str>,
    /// Tries of the row's operation.
    pub attempts: u32,
    /// The SIM's status after the row, when known.
    pub sim_status: Option<String>,
    /// What the row's field held before the change (the results' `before` and
    /// `before_state` columns); `None` when the row never learned it (it failed before its
    /// SIM was read, or was invalid).
    pub before: Option<Before>,
    /// When the row ended.
    pub finished_at: SystemTime,
    /// The input record's cells, for the carried-through columns.
    pub fields: Vec<String>,
    /// The input record's exact bytes, for the failures file.
    pub raw: Vec<u8>,
    /// Attempts repeated after a 5xx, timeout or connection error.
    pub retries: u32,
    /// 429s this row met.
    pub throttled: u32,
    /// From the row's first call to its end (waits for the pacer included).
    pub elapsed: std::time::Duration,
}

/// What a row's field held before the change — three cases that are never confused: a
/// value (a status, `true`/`false` for the customer suspension, a package or portfolio id,
/// an attribute's value, the fields of a `patch`), absent (the attribute did not exist), or
/// unknown (the change was found in place after a crash or a lost answer, so what it
/// replaced was never seen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Before {
    /// The field held this value.
    Value(String),
    /// The attribute did not exist.
    Absent,
    /// Not known: what the change replaced was never seen.
    Unknown,
}

impl Before {
    /// The `before_state` column: `value`, `absent` or `unknown`.
    pub(crate) fn state(&self) -> &'static str {
        match self {
            Before::Value(_) => "value",
            Before::Absent => "absent",
            Before::Unknown => "unknown",
        }
    }

    /// The `before` column: the value, or empty.
    pub(crate) fn value(&self) -> &str {
        match self {
            Before::Value(v) => v,
            Before::Absent | Before::Unknown => "",
        }
    }

    /// Reads the two columns back; an empty state is a results file from before the
    /// column existed, where an empty `before` could mean either absent or unknown — so it
    /// is unknown.
    pub(crate) fn from_columns(state: &str, value: &str) -> Option<Self> {
        match state {
            "value" => Some(Before::Value(value.to_owned())),
            "absent" => Some(Before::Absent),
            "unknown" => Some(Before::Unknown),
            "" if !value.is_empty() => Some(Before::Value(value.to_owned())),
            "" => Some(Before::Unknown),
            _ => None,
        }
    }
}

/// Counts of finished rows by verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Rows done.
    pub ok: u64,
    /// Rows already in the requested state.
    pub skipped: u64,
    /// Rows the API refused, or that gave up.
    pub failed: u64,
    /// Rows the input got wrong.
    pub invalid: u64,
    /// `--wait-active` rows whose SIM was still `pendingProvision` at the end.
    #[serde(default)]
    pub pending: u64,
}

impl Tally {
    pub(crate) fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Ok => self.ok += 1,
            Verdict::Skipped => self.skipped += 1,
            Verdict::Failed => self.failed += 1,
            Verdict::Invalid => self.invalid += 1,
            Verdict::Pending => self.pending += 1,
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.ok + self.skipped + self.failed + self.invalid + self.pending
    }

    /// Rows of one verdict.
    pub(crate) fn of(&self, v: Verdict) -> u64 {
        match v {
            Verdict::Ok => self.ok,
            Verdict::Skipped => self.skipped,
            Verdict::Failed => self.failed,
            Verdict::Invalid => self.invalid,
            Verdict::Pending => self.pending,
        }
    }

    /// Adds `other`'s rows.
    pub(crate) fn absorb(&mut self, other: &Tally) {
        self.ok += other.ok;
        self.skipped += other.skipped;
        self.failed += other.failed;
        self.invalid += other.invalid;
        self.pending += other.pending;
    }

    /// `ok 5, skipped 0, failed 1, invalid 0` (and `pending` when there are some).
    pub(crate) fn text(&self, sep: &str) -> String {
        let mut s = format!(
            "ok {}{sep}skipped {}{sep}failed {}{sep}invalid {}",
            self.ok, self.skipped, self.failed, self.invalid
        );
        if self.pending > 0 {
            s += &format!("{sep}pending {}", self.pending);
        }
        s
    }
}
