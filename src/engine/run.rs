//! A job from start to end: check the input and the paths, bind or resume the checkpoint,
//! check the credentials, open the outputs, drive the rows, and sum up.
//!
//! Guarantees: every refusal that can be known before the first call (bad file, dangerous
//! paths, checkpoint in the way or of another job, refused credentials, unreachable API)
//! happens before any row is sent and before any output is touched; the input is opened once
//! and fingerprinted through that handle; the journal's end record is written only when every
//! row has a record and the input still has the size and digest it had at the start.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, Client, Endpoint, Pacer};
use crate::checkpoint::{self, JobIdentity, JobLock};
use crate::exit;
use crate::files::Replace;
use crate::input::reader::InputFile;
use crate::input::{self, Defaults};
use crate::output::progress::Progress;
use crate::output::row::Tally;
use crate::output::summary::{Summary, resume_command};

use super::recorder::{Counts, Recorder, completed_code};
use super::retry::RetryPolicy;
use super::scheduler::{self, Dispatch, Drive, End, Stops};
use super::setup::{self, Bound, Start};
use super::threshold::Threshold;

/// What to do with an existing checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeMode {
    /// Neither `--resume` nor `--restart`: an existing checkpoint is an error.
    Refuse,
    Resume,
    Restart,
}

/// A job, typed and validated.
#[derive(Debug)]
pub struct JobConfig {
    pub input: PathBuf,
    pub defaults: Defaults,
    pub results: PathBuf,
    pub failures: PathBuf,
    pub checkpoint: PathBuf,
    pub resume: ResumeMode,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub burst: NonZeroU32,
    pub retry: RetryPolicy,
    pub max_duration: Option<Duration>,
    /// Wall-clock seconds until `--until`, computed at start.
    pub until: Option<Duration>,
    pub max_failures: Option<Threshold>,
    /// Poll activations that answer `pendingProvision` until active, at most this long.
    pub wait_active: Option<Duration>,
    /// Lower the rate on 429s and raise it again (AIMD); off keeps `rate` fixed.
    pub adaptive_rate: bool,
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
}

impl JobConfig {
    /// A job on `input` with the defaults of `simbulk run`: outputs beside the input, an
    /// existing checkpoint refused, 8 rows in flight at 10 requests per second.
    pub fn new(input: PathBuf) -> Self {
        let (results, failures, checkpoint) = setup::default_paths(&input);
        let rate = Some(10.0);
        Self {
            input,
            defaults: Defaults::default(),
            results,
            failures,
            checkpoint,
            resume: ResumeMode::Refuse,
            concurrency: 8,
            rate,
            burst: crate::api::pace::default_burst(rate),
            retry: RetryPolicy::new(8),
            max_duration: None,
            until: None,
            max_failures: None,
            halt_after_same_error: Some(25),
            adaptive_rate: true,
            wait_active: None,
            sync_every: Duration::from_millis(500),
            stall_timeout: Duration::from_secs(15 * 60),
            summary_json: None,
            args: Vec::new(),
            discard_outputs: false,
        }
    }
}

/// A job that could not run (or not to its end), with its exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Fatal {
    pub code: u8,
    pub message: String,
}

pub(crate) fn usage(message: impl Into<String>) -> Fatal {
    Fatal {
        code: exit::USAGE,
        message: message.into(),
    }
}

/// `--dry-run`: validates every row and reports; sends nothing, writes nothing.
pub fn dry_run(input: &Path, defaults: &Defaults) -> Result<(String, u8), Fatal> {
    let (_, rows) = input::reader::open(input, defaults).map_err(|e| usage(e.to_string()))?;
    let mut per_action: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut invalid = Vec::new();
    let mut n_invalid = 0u64;
    let mut total = 0u64;
    let mut rows = rows;
    for item in rows.by_ref() {
        let item = item.map_err(|e| usage(e.to_string()))?;
        total += 1;
        match &item.parsed {
            Ok(r) => *per_action.entry(r.action.kind().name()).or_default() += 1,
            Err(reason) => {
                n_invalid += 1;
                if invalid.len() < 1000 {
                    invalid.push(format!("  line {}: {reason}", item.line));
                }
            }
        }
    }
    let mut out = format!(
        "dry run of {}: {total} rows, {} valid, {n_invalid} invalid\n",
        input.display(),
        total - n_invalid
    );
    for (a, n) in &per_action {
        out += &format!("  {a:<17} {n}\n");
    }
    if rows.blank > 0 {
        out += &format!("  blank rows skipped: {}\n", rows.blank);
    }
    if !invalid.is_empty() {
        out += "invalid rows:\n";
        out += &invalid.join("\n");
        out.push('\n');
        if n_invalid > invalid.len() as u64 {
            out += &format!("  … and {} more\n", n_invalid - invalid.len() as u64);
        }
    }
    out += "nothing was sent.\n";
    Ok((
        out,
        if n_invalid == 0 {
            exit::OK
        } else {
            exit::ROWS_FAILED
        },
    ))
}

/// The reader thread: rows in batches to the dispatcher; at the end, the blank rows it skipped
/// and what it saw of the input (when it read to the end).
type Reader = std::thread::JoinHandle<(u64, Option<input::limit::Seen>)>;

fn start_reader(
    rows: input::Rows,
    tx: tokio::sync::mpsc::Sender<scheduler::Batch>,
) -> std::io::Result<Reader> {
    std::thread::Builder::new()
        .name("simbulk-reader".into())
        .spawn(move || {
            let mut rows = rows;
            let mut batch = Vec::with_capacity(scheduler::BATCH);
            for item in rows.by_ref() {
                let stop = item.is_err();
                batch.push(item);
                if (batch.len() == scheduler::BATCH || stop)
                    && tx
                        .blocking_send(std::mem::replace(
                            &mut batch,
                            Vec::with_capacity(scheduler::BATCH),
                        ))
                        .is_err()
                {
                    return (rows.blank, None);
                }
                if stop {
                    return (rows.blank, None);
                }
            }
            if !batch.is_empty() && tx.blocking_send(batch).is_err() {
                return (rows.blank, None);
            }
            (rows.blank, rows.seen())
        })
}

/// Runs a job against the API described by `endpoint`.
pub async fn run(
    mut cfg: JobConfig,
    endpoint: Endpoint,
    drain: CancellationToken,
    abort: CancellationToken,
) -> Result<Summary, Fatal> {
    let started = Instant::now();
    let file = InputFile::open(&cfg.input).map_err(|e| usage(e.to_string()))?;
    let mut summary_file = None;
    if cfg.discard_outputs {
        let null = PathBuf::from("/dev/null");
        (cfg.results, cfg.failures, cfg.checkpoint) = (null.clone(), null.clone(), null);
    } else {
        let places = setup::check_paths(&cfg, &file)?;
        if let Some(p) = cfg.summary_json.as_ref().filter(|p| !setup::is_stdout(p)) {
            // Proves the summary can be written before anything is sent.
            summary_file = Some(
                Replace::prepare(p, "--summary-json", &places.except("--summary-json"))
                    .map_err(usage)?,
            );
        }
    }
    let (file, fingerprint) = {
        let stop = drain.clone();
        tokio::task::spawn_blocking(move || {
            let d = checkpoint::fingerprint::digest(file.file(), &|| stop.is_cancelled());
            (file, d)
        })
        .await
        .map_err(|e| usage(e.to_string()))?
    };
    let Some((sha, bytes, lines)) = fingerprint.map_err(|e| {
        usage(format!(
            "cannot read input file {}: {e}",
            cfg.input.display()
        ))
    })?
    else {
        return Err(stopped_early());
    };
    let (layout, rows) =
        input::reader::rows(file, &cfg.defaults, Some(bytes)).map_err(|e| usage(e.to_string()))?;
    let identity = JobIdentity {
        input_sha256: sha,
        input_bytes: bytes,
        action: cfg.defaults.action.clone(),
        value: cfg.defaults.value.clone(),
        attribute: cfg.defaults.attribute.clone(),
    };
    let _lock = if cfg.discard_outputs {
        None
    } else {
        Some(JobLock::acquire(&cfg.checkpoint).map_err(usage)?)
    };
    let start = match setup::bind_checkpoint(&cfg, &identity, lines)? {
        _ if cfg.discard_outputs => Start::fresh(),
        Bound::Run(s) => s,
        Bound::Finished(code, tally) => {
            let mut s = summary(
                &cfg,
                "completed",
                Some(
                    "this job had already finished; nothing to do (use --restart to run it again)"
                        .into(),
                ),
                code,
                tally,
                Tally::default(),
                started,
            );
            s.job_rows_estimate = tally.total();
            write_summary(&s, summary_file);
            return Ok(s);
        }
    };

    let pacer = Arc::new(Pacer::with_adaptation(
        cfg.rate,
        cfg.burst,
        cfg.adaptive_rate,
    ));
    let stop_rows = drain.child_token();
    let deadline = setup::deadline(&cfg);
    let client = Arc::new(
        Client::new(endpoint, pacer.clone(), cfg.concurrency)
            .map_err(usage)?
            .with_stop(stop_rows.clone(), deadline),
    );
    preflight(&client).await?;

    let (results, failures, journal) = setup::open_outputs(&cfg, &layout, &identity, &start)
        .map_err(|e| Fatal {
            code: exit::HALTED,
            message: format!("{e}; fix it and run again with --resume"),
        })?;
    let total = lines.saturating_sub(u64::from(!layout.headerless));
    let progress = Progress::new(total, start.tally.total());
    let mut rec = Recorder::new(
        results,
        failures,
        journal,
        progress,
        start.tally,
        cfg.sync_every,
    )
    .spawn()
    .map_err(|e| usage(format!("cannot start the recorder: {e}")))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<scheduler::Batch>(8);
    let reader =
        start_reader(rows, tx).map_err(|e| usage(format!("cannot start the reader: {e}")))?;
    let drive = scheduler::drive(
        Dispatch {
            client: client.clone(),
            policy: Arc::new(cfg.retry),
            layout,
            concurrency: cfg.concurrency,
            done: start.done,
            in_doubt: start.in_doubt,
            wait: cfg.wait_active.map(|within| {
                Arc::new(super::worker::WaitActive {
                    within,
                    ..Default::default()
                })
            }),
        },
        rx,
        &mut rec,
        Stops {
            drain,
            abort,
            stop_rows,
            deadline,
            max_failures: cfg.max_failures,
            halt_after_same_error: cfg.halt_after_same_error,
            stall_timeout: cfg.stall_timeout,
        },
    )
    .await;
    let (blank, changed) = if drive.end == End::Complete {
        check_input(reader, &identity).await
    } else {
        (0, None)
    };
    let (state, reason, code) = ending(&cfg, &drive, changed);
    let complete = state == "completed";
    let (counts, write_error) = rec.finish(complete).await;
    let (state, reason, code) = match write_error {
        // The end record may be missing: the job is not known to be finished.
        Some(e) if complete => (
            "halted",
            Some(format!(
                "cannot write the outputs: {e}; fix it and run again with --resume"
            )),
            exit::HALTED,
        ),
        _ if complete => (state, reason, completed_code(&counts.job)),
        _ => (state, reason, code),
    };
    let mut s = summary(&cfg, state, reason, code, counts.job, counts.run, started);
    fill(&mut s, &counts);
    s.requests = pacer.requests();
    s.throttled_429 = pacer.throttled_count();
    s.blank_rows_skipped = blank;
    s.first_request_after = pacer
        .first_request()
        .map(|t| t.duration_since(started).as_secs_f64());
    s.job_rows_estimate = total;
    write_summary(&s, summary_file);
    Ok(s)
}

fn stopped_early() -> Fatal {
    Fatal {
        code: exit::STOPPED,
        message: "stopped before the first row; nothing was sent or written".into(),
    }
}

/// Gets the first token: refused credentials or an unreachable API end the run before any
/// output is touched.
async fn preflight(client: &Client) -> Result<(), Fatal> {
    let Err(e) = client.preflight().await else {
        return Ok(());
    };
    Err(match &e {
        ApiError::Interrupted => stopped_early(),
        ApiError::Credentials { .. } => Fatal {
            code: exit::HALTED,
            message: format!("{e}; nothing was sent"),
        },
        _ => Fatal {
            code: exit::HALTED,
            message: format!(
                "cannot reach the SIM API at {}: {e}; nothing was sent and no file was changed. Check --base-url and the network, then run again",
                client.base_url()
            ),
        },
    })
}

/// Joins the reader, which read to the end: the blank rows it skipped, and how the input
/// differs from its fingerprint if it changed during the run.
async fn check_input(reader: Reader, identity: &JobIdentity) -> (u64, Option<String>) {
    let (blank, seen) = tokio::task::spawn_blocking(move || reader.join())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or((0, None));
    let changed = match seen {
        Some(s) if s.sha256 == identity.input_sha256 && s.bytes == identity.input_bytes => None,
        Some(s) if s.bytes != identity.input_bytes => Some(format!(
            "{} bytes at the start, {} bytes now",
            identity.input_bytes, s.bytes
        )),
        _ => Some("same size, different content".to_owned()),
    };
    (blank, changed)
}

/// The state, reason and exit code of a run that ended as `drive` says.
fn ending(
    cfg: &JobConfig,
    drive: &Drive,
    changed: Option<String>,
) -> (&'static str, Option<String>, u8) {
    if let Some(how) = changed {
        return (
            "halted",
            Some(format!(
                "the input file {} changed while the job ran ({how}); no row is lost, but the job is not finished: restore the file and run again with --resume, or run the changed file with --restart",
                cfg.input.display()
            )),
            exit::HALTED,
        );
    }
    match &drive.end {
        End::Complete => ("completed", None, exit::OK),
        End::Stopped(why) => ("stopped", Some(why.clone()), exit::STOPPED),
        End::Aborted => (
            "aborted",
            Some("aborted by a second signal; rows in flight will be done again on resume".into()),
            exit::STOPPED,
        ),
        End::Halted(h) => (
            "halted",
            Some(h.message(&drive.failures, drive.unrecorded)),
            exit::HALTED,
        ),
        End::WriteFailed(why) => (
            "halted",
            Some(format!(
                "cannot write the outputs: {why}; fix it and run again with --resume"
            )),
            exit::HALTED,
        ),
        End::ReadFailed(why) => (
            "halted",
            Some(format!("cannot read the input further: {why}")),
            exit::HALTED,
        ),
    }
}

/// Writes `--summary-json` (prepared at the start, so it cannot fail for want of a folder).
fn write_summary(s: &Summary, file: Option<Replace>) {
    let Some(mut f) = file else {
        return;
    };
    let written = serde_json::to_vec_pretty(s)
        .map_err(std::io::Error::other)
        .and_then(|b| std::io::Write::write_all(f.file(), &b))
        .and_then(|()| f.commit());
    if let Err(e) = written {
        tracing::error!("cannot write --summary-json: {e}");
    }
}

fn fill(s: &mut Summary, c: &Counts) {
    s.by_action = c.by_action.clone();
    s.top_errors = c.top_errors(10);
    s.retries = c.retries;
    s.activations = c.activations;
    s.latency_ms = c
        .latency_ms()
        .map(|(p50, p99, max)| crate::output::summary::Latency { p50, p99, max });
}

fn summary(
    cfg: &JobConfig,
    state: &str,
    reason: Option<String>,
    code: u8,
    job: Tally,
    run: Tally,
    started: Instant,
) -> Summary {
    let elapsed = started.elapsed().as_secs_f64();
    Summary {
        state: state.into(),
        reason,
        exit_code: code,
        input: cfg.input.clone(),
        results: cfg.results.clone(),
        failures: cfg.failures.clone(),
        checkpoint: cfg.checkpoint.clone(),
        job,
        job_rows_estimate: 0,
        this_run: run,
        by_action: BTreeMap::new(),
        top_errors: Vec::new(),
        elapsed_seconds: elapsed,
        rows_per_second: run.total() as f64 / elapsed.max(0.001),
        requests: 0,
        retries: 0,
        throttled_429: 0,
        blank_rows_skipped: 0,
        latency_ms: None,
        first_request_after: None,
        activations: (0, 0),
        resume_command: matches!(code, exit::STOPPED | exit::HALTED)
            .then(|| resume_command(&cfg.args)),
    }
}
