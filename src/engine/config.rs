//! A job, typed: what `simbulk run` (or the demo, or the bench) asks the engine to do, and
//! the ways a job can fail to run (their exit codes: `commands::CliError::exit_code`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::api::SetupError;
use crate::checkpoint::{JournalError, LockError};
use crate::input::{Defaults, FileError};

use super::provider::{ConnectError, Pacing};
use super::retry::RetryPolicy;
use super::threshold::Threshold;

/// What to do with an existing checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeMode {
    /// Neither `--resume` nor `--restart`: an existing checkpoint is an error.
    Refuse,
    /// `--resume`: go on from the checkpoint (or start, without one).
    Resume,
    /// `--restart`: discard the checkpoint and its outputs, start again.
    Restart,
}

/// A job, typed and validated.
#[derive(Debug)]
pub struct JobConfig {
    /// The job's input file.
    pub input: PathBuf,
    /// `--sheet`: the sheet of a spreadsheet input to read (default: its first visible one).
    pub sheet: Option<String>,
    /// An apply's plan: the arguments of `simbulk apply` that plan it again (its desired-state
    /// file, shell-quoted, and its `--sheet`), for the next step of blocked rows.
    pub apply_again: Option<String>,
    /// What fills the cells a row leaves empty (`--action`, `--value`, `--attribute`).
    pub defaults: Defaults,
    /// Whose SIM API the job is for (known without credentials: the dry run's estimate).
    pub api: crate::api::Api,
    /// The results file.
    pub results: PathBuf,
    /// The failures file.
    pub failures: PathBuf,
    /// The checkpoint journal.
    pub checkpoint: PathBuf,
    /// What to do with an existing checkpoint.
    pub resume: ResumeMode,
    /// Rows in flight at once.
    pub concurrency: usize,
    /// Rate, burst, 429 behaviour and the account's shared budget.
    pub(crate) pacing: Pacing,
    /// How rows retry.
    pub retry: RetryPolicy,
    /// `--max-duration`: how long the run may go on.
    pub max_duration: Option<Duration>,
    /// Wall-clock seconds until `--until`, computed at start.
    pub until: Option<Duration>,
    /// `--max-failures`: failed rows that halt the job.
    pub max_failures: Option<Threshold>,
    /// Poll activations that answer `pendingProvision` until active, at most this long.
    pub wait_active: Option<Duration>,
    /// Consecutive rows failing the same way that halt the job.
    pub halt_after_same_error: Option<u32>,
    /// Longest time between two fsyncs of the outputs.
    pub sync_every: Duration,
    /// Halt when no row finished and the provider gave no useful answer for this long.
    pub stall_timeout: Duration,
    /// Where the final summary goes as JSON (`-`: standard output, printed by the caller).
    pub summary_json: Option<PathBuf>,
    /// The command line, for the "to resume" hint.
    pub args: Vec<String>,
    /// Benchmarks only: send results, failures and checkpoint to /dev/null (no lock, no resume).
    pub discard_outputs: bool,
    /// Predict every row from its SIM's state and write the predictions; send no change.
    pub preview: bool,
    /// Read SIMs in batches before writing (one list call per 100 SIMs); off, every row
    /// reads or writes its own SIM.
    pub plan: bool,
    /// `--max-read-age`: the oldest read of a SIM a row may be decided on (skipped,
    /// predicted, blocked); an older one is read again first.
    pub max_read_age: Duration,
    /// `--canary N`: run the first N rows, then look before the rest.
    pub canary: Option<u64>,
    /// Ask before a job with more destructive rows than this (`None`: never ask).
    pub confirm_over: Option<u64>,
    /// `--yes`: the confirmation is given.
    pub yes: bool,
    /// `--change-ref`: the change ticket this job belongs to (kept in the checkpoint, the
    /// results and the summary).
    pub change_ref: Option<String>,
    /// `--metrics-file`: the job's numbers in the Prometheus text format.
    pub metrics_file: Option<PathBuf>,
}

/// `--max-read-age`'s default: long enough that a window of 100 writes is read once at
/// 20 requests a second and of 50 at 10 (1.02 calls per written row), short enough that
/// another client's change is seen within seconds of it.
pub const DEFAULT_MAX_READ_AGE: Duration = Duration::from_secs(10);

impl JobConfig {
    /// How long the run may go on: the nearer of `--max-duration` and `--until`.
    pub(crate) fn stop_within(&self) -> Option<Duration> {
        [self.max_duration, self.until].into_iter().flatten().min()
    }

    /// A job on `input` with the defaults of `simbulk run` (a test in `commands::run` holds
    /// them equal): outputs beside the input, an existing checkpoint refused, 8 rows in
    /// flight at 10 requests per second from the account's budget on this host, a question
    /// before more than 100 destructive rows.
    pub fn new(input: PathBuf) -> Self {
        let (results, failures, checkpoint) = default_paths(&input);
        Self {
            input,
            sheet: None,
            apply_again: None,
            defaults: Defaults::default(),
            results,
            failures,
            checkpoint,
            resume: ResumeMode::Refuse,
            api: crate::api::Api::EseyeV2,
            concurrency: 8,
            pacing: Pacing::default(),
            retry: RetryPolicy::new(8),
            max_duration: None,
            until: None,
            max_failures: None,
            halt_after_same_error: Some(25),
            wait_active: None,
            sync_every: Duration::from_millis(500),
            stall_timeout: Duration::from_secs(15 * 60),
            summary_json: None,
            args: Vec::new(),
            discard_outputs: false,
            preview: false,
            plan: true,
            max_read_age: DEFAULT_MAX_READ_AGE,
            canary: None,
            confirm_over: Some(100),
            yes: false,
            change_ref: None,
            metrics_file: None,
        }
    }
}

/// `<dir>/<stem><suffix>` beside `input` (`job` when it has no stem): the one place a job's
/// outputs are placed by default.
pub(crate) fn beside(input: &Path, suffix: &str) -> PathBuf {
    let stem = input
        .file_stem()
        .map_or_else(|| "job".into(), |s| s.to_string_lossy().into_owned());
    input
        .parent()
        .unwrap_or(Path::new(""))
        .join(format!("{stem}{suffix}"))
}

/// Default output paths beside the input: `<stem>.results.csv`, `<stem>.failures.csv`,
/// `<stem>.checkpoint`.
pub(crate) fn default_paths(input: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        beside(input, ".results.csv"),
        beside(input, ".failures.csv"),
        beside(input, ".checkpoint"),
    )
}

/// Why a job could not run (or not to its end).
#[expect(
    missing_docs,
    reason = "each variant's #[error] message is its documentation, naming its fields"
)]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input file itself is unusable.
    #[error(transparent)]
    Input(#[from] FileError),
    /// An output path, the secret or another file refused.
    #[error(transparent)]
    File(#[from] crate::files::Error),
    #[error(transparent)]
    Checkpoint(#[from] JournalError),
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A checkpoint is there and neither `--resume` nor `--restart` was given.
    #[error(
        "checkpoint {} exists from an earlier run of this job ({rows} rows done); add --resume to continue it, or --restart to discard it and start again",
        checkpoint.display()
    )]
    CheckpointExists { checkpoint: PathBuf, rows: u64 },
    /// The checkpoint is another job's.
    #[error(
        "cannot resume: checkpoint {} belongs to a different job: {}. Restore the original input and options, or use --restart to start this job afresh",
        checkpoint.display(),
        differences.join("; ")
    )]
    OtherJob {
        checkpoint: PathBuf,
        differences: Vec<String>,
    },
    /// The checkpoint wrote other outputs.
    #[error(
        "cannot resume: the checkpoint wrote its results to {} and failures to {}; give the same --results and --failures (or none)",
        results.display(),
        failures.display()
    )]
    OtherOutputs { results: PathBuf, failures: PathBuf },
    #[error(
        "cannot resume: results file {} is missing but the checkpoint says {rows} rows are done; restore it, or use --restart",
        results.display()
    )]
    ResultsMissing { results: PathBuf, rows: u64 },
    /// Two outputs (or an output and the input) are one file.
    #[error("{a} and {b} are the same file ({}); give each output its own path", path.display())]
    SameFile {
        a: &'static str,
        b: &'static str,
        path: PathBuf,
    },
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The provider could not be reached (budget, credentials, network).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// An output could not be opened or written at the start.
    #[error("{0}; fix it and run again with --resume")]
    Outputs(#[source] crate::files::Error),
    #[error("stopped before the first row; nothing was sent or written")]
    StoppedEarly,
    /// A destructive job over `--confirm-over` without a yes.
    #[error(
        "this job would change {total} SIMs with destructive actions (more than --confirm-over {over}):\n{lines}nothing was sent; {how}"
    )]
    NotConfirmed {
        total: u64,
        over: u64,
        lines: String,
        how: &'static str,
    },
    #[error("cannot start the {what}: {source}")]
    Thread {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}
