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
use crate::checkpoint::{self, Header, JobIdentity, JobLock, Journal, Tally};
use crate::durable::OpenMode;
use crate::exit;
use crate::input::reader::InputFile;
use crate::input::{self, Defaults};
use crate::output::progress::Progress;
use crate::output::summary::{Summary, resume_command};
use crate::output::{FailuresFile, ResultsFile};

use super::recorder::{Counts, Recorder, completed_code};
use super::retry::RetryPolicy;
use super::scheduler::{self, Dispatch, End, Stops};
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
    /// The command line, for the "to resume" hint.
    pub args: Vec<String>,
    /// Benchmarks only: send results, failures and checkpoint to /dev/null (no lock, no resume).
    pub discard_outputs: bool,
}

impl JobConfig {
    /// A job on `input` with the defaults of `simbulk run`: outputs beside the input, an
    /// existing checkpoint refused, 8 rows in flight at 10 requests per second.
    pub fn new(input: PathBuf) -> Self {
        let (results, failures, checkpoint) = default_paths(&input);
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

fn usage(message: impl Into<String>) -> Fatal {
    Fatal {
        code: exit::USAGE,
        message: message.into(),
    }
}

/// Default output paths beside the input: `<stem>.results.csv`, `<stem>.failures.csv`, `<stem>.checkpoint`.
pub fn default_paths(input: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let stem = input
        .file_stem()
        .map_or_else(|| "job".into(), |s| s.to_string_lossy().into_owned());
    let dir = input.parent().unwrap_or(Path::new(""));
    (
        dir.join(format!("{stem}.results.csv")),
        dir.join(format!("{stem}.failures.csv")),
        dir.join(format!("{stem}.checkpoint")),
    )
}

/// The absolute form of a path that may not exist yet.
fn resolve(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    let name = p.file_name().map(PathBuf::from).unwrap_or_default();
    let parent = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::canonicalize(parent)
        .unwrap_or_else(|_| parent.to_owned())
        .join(name)
}

/// Refuses outputs that point at the input or at each other.
pub fn check_paths(cfg: &JobConfig) -> Result<(), Fatal> {
    let named = [
        ("the input", &cfg.input),
        ("--results", &cfg.results),
        ("--failures", &cfg.failures),
        ("--checkpoint", &cfg.checkpoint),
        (
            "the checkpoint lock",
            &checkpoint::lock::lock_path(&cfg.checkpoint),
        ),
    ];
    let resolved: Vec<PathBuf> = named.iter().map(|(_, p)| resolve(p)).collect();
    for i in 0..named.len() {
        for j in (i + 1)..named.len() {
            if resolved[i] == resolved[j] {
                return Err(usage(format!(
                    "{} and {} are the same file ({}); give each output its own path",
                    named[i].0,
                    named[j].0,
                    resolved[i].display()
                )));
            }
        }
    }
    Ok(())
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

/// Where a resumed job starts.
struct Start {
    done: fixedbitset::FixedBitSet,
    in_doubt: fixedbitset::FixedBitSet,
    tally: Tally,
    outputs: Option<(u64, u64, u64)>,
}

impl Start {
    fn fresh() -> Self {
        Self {
            done: fixedbitset::FixedBitSet::new(),
            in_doubt: fixedbitset::FixedBitSet::new(),
            tally: Tally::default(),
            outputs: None,
        }
    }
}

fn bind_checkpoint(
    cfg: &JobConfig,
    identity: &JobIdentity,
) -> Result<Result<Start, (u8, Tally)>, Fatal> {
    if !cfg.checkpoint.exists() || cfg.resume == ResumeMode::Restart {
        return Ok(Ok(Start::fresh()));
    }
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let peek = checkpoint::replay(&cfg.checkpoint, (u64::MAX, u64::MAX))
        .map_err(|e| usage(e.to_string()))?;
    if cfg.resume == ResumeMode::Refuse {
        return Err(usage(format!(
            "checkpoint {} exists from an earlier run of this job ({} rows done); add --resume to continue it, or --restart to discard it and start again",
            cfg.checkpoint.display(),
            peek.tally.total()
        )));
    }
    let diffs = peek.header.job.differences(identity);
    if !diffs.is_empty() {
        return Err(usage(format!(
            "cannot resume: checkpoint {} belongs to a different job: {}. Restore the original input and options, or use --restart to start this job afresh",
            cfg.checkpoint.display(),
            diffs.join("; ")
        )));
    }
    if resolve(&peek.header.results) != resolve(&cfg.results)
        || resolve(&peek.header.failures) != resolve(&cfg.failures)
    {
        return Err(usage(format!(
            "cannot resume: the checkpoint wrote its results to {} and failures to {}; give the same --results and --failures (or none)",
            peek.header.results.display(),
            peek.header.failures.display()
        )));
    }
    if peek.results_len.is_some() && !cfg.results.exists() {
        return Err(usage(format!(
            "cannot resume: results file {} is missing but the checkpoint says {} rows are done; restore it, or use --restart",
            cfg.results.display(),
            peek.tally.total()
        )));
    }
    let rep = checkpoint::replay(&cfg.checkpoint, (size(&cfg.results), size(&cfg.failures)))
        .map_err(|e| usage(e.to_string()))?;
    if let Some(code) = rep.finished {
        return Ok(Err((code, rep.tally)));
    }
    if rep.dropped_tail {
        tracing::info!("checkpoint: dropped a torn last record; those rows will be done again");
    }
    let in_doubt = rep.in_doubt();
    if in_doubt.count_ones(..) > 0 {
        tracing::info!(
            "checkpoint: {} rows had started a write when the last run ended; they are checked against the live state before anything is sent",
            in_doubt.count_ones(..)
        );
    }
    Ok(Ok(match rep.results_len {
        Some(r) => Start {
            done: rep.done,
            in_doubt,
            tally: rep.tally,
            outputs: Some((r, rep.failures_len, rep.good_bytes)),
        },
        // The headers never reached the files: nothing else did either.
        None => Start::fresh(),
    }))
}

fn open_outputs(
    cfg: &JobConfig,
    layout: &input::Layout,
    identity: &JobIdentity,
    start: &Start,
) -> std::io::Result<(ResultsFile, FailuresFile, Journal)> {
    match start.outputs {
        Some((r, f, j)) => Ok((
            ResultsFile::open(&cfg.results, OpenMode::KeepPrefix(r), layout)?,
            FailuresFile::open(&cfg.failures, OpenMode::KeepPrefix(f), layout)?,
            Journal::resume(&cfg.checkpoint, j)?,
        )),
        None => {
            let mut results = ResultsFile::open(&cfg.results, OpenMode::Truncate, layout)?;
            let mut failures = FailuresFile::open(&cfg.failures, OpenMode::Truncate, layout)?;
            results.file().flush()?;
            failures.file().flush()?;
            let header = Header {
                job: identity.clone(),
                results: cfg.results.clone(),
                failures: cfg.failures.clone(),
                created: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                    .to_string(),
            };
            let mut journal = Journal::create(&cfg.checkpoint, &header)?;
            journal.start(results.file().len(), failures.file().len());
            journal.flush()?;
            Ok((results, failures, journal))
        }
    }
}

/// The job's deadline (`--max-duration`, `--until`), logged as a local time.
fn deadline(cfg: &JobConfig) -> Option<tokio::time::Instant> {
    let within = [cfg.max_duration, cfg.until].into_iter().flatten().min()?;
    let at = std::time::SystemTime::now() + within;
    let local = jiff::Timestamp::try_from(at)
        .ok()
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%dT%H:%M:%S%.3f%:z (%Z)")
                .to_string()
        })
        .unwrap_or_default();
    tracing::info!(
        "stopping at {local} (in {}); no request starts after that",
        humantime::format_duration(Duration::from_secs(within.as_secs()))
    );
    Some(tokio::time::Instant::now() + within)
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
    if cfg.discard_outputs {
        let null = PathBuf::from("/dev/null");
        (cfg.results, cfg.failures, cfg.checkpoint) = (null.clone(), null.clone(), null);
    } else {
        check_paths(&cfg)?;
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
        return Err(Fatal {
            code: exit::STOPPED,
            message: "stopped before the first row; nothing was sent or written".into(),
        });
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
    let bound = if cfg.discard_outputs {
        Ok(Start::fresh())
    } else {
        bind_checkpoint(&cfg, &identity)?
    };
    let start = match bound {
        Ok(s) => s,
        Err((code, tally)) => {
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
            return Ok(s);
        }
    };

    let pacer = Arc::new(Pacer::with_adaptation(
        cfg.rate,
        cfg.burst,
        cfg.adaptive_rate,
    ));
    let base = endpoint.base_url.to_string();
    let stop_rows = drain.child_token();
    let deadline = deadline(&cfg);
    let client = Arc::new(
        Client::new(endpoint, pacer.clone(), cfg.concurrency)
            .map_err(usage)?
            .with_stop(stop_rows.clone(), deadline),
    );
    if let Err(e) = client.preflight().await {
        let (code, message) = match &e {
            ApiError::Interrupted => (
                exit::STOPPED,
                "stopped before the first row; nothing was sent or written".to_owned(),
            ),
            ApiError::Credentials { .. } => (exit::HALTED, format!("{e}; nothing was sent")),
            _ => (
                exit::HALTED,
                format!(
                    "cannot reach the SIM API at {base}: {e}; nothing was sent and no file was changed. Check --base-url and the network, then run again"
                ),
            ),
        };
        return Err(Fatal { code, message });
    }

    let (results, failures, journal) =
        open_outputs(&cfg, &layout, &identity, &start).map_err(|e| Fatal {
            code: exit::HALTED,
            message: format!("cannot write the outputs: {e}; fix it and run again with --resume"),
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
    let mut blank = 0;
    let mut changed = None;
    let mut end = drive.end;
    if end == End::Complete {
        // The reader has read to the end: the input must be what was fingerprinted.
        let (b, seen) = tokio::task::spawn_blocking(move || reader.join())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or((0, None));
        blank = b;
        match seen {
            Some(s) if s.sha256 == identity.input_sha256 && s.bytes == identity.input_bytes => {}
            other => {
                changed = Some(match other {
                    Some(s) if s.bytes != identity.input_bytes => format!(
                        "{} bytes at the start, {} bytes now",
                        identity.input_bytes, s.bytes
                    ),
                    _ => "same size, different content".to_owned(),
                });
                end = End::ReadFailed(String::new());
            }
        }
    }
    let (state, reason, code) = match (&end, &changed) {
        (_, Some(how)) => (
            "halted",
            Some(format!(
                "the input file {} changed while the job ran ({how}); no row is lost, but the job is not finished: restore the file and run again with --resume, or run the changed file with --restart",
                cfg.input.display()
            )),
            exit::HALTED,
        ),
        (End::Complete, None) => ("completed", None, exit::OK),
        (End::Stopped(why), None) => ("stopped", Some(why.clone()), exit::STOPPED),
        (End::Aborted, None) => (
            "aborted",
            Some("aborted by a second signal; rows in flight will be done again on resume".into()),
            exit::STOPPED,
        ),
        (End::Halted(h), None) => (
            "halted",
            Some(h.message(&drive.failures, drive.unrecorded)),
            exit::HALTED,
        ),
        (End::WriteFailed(why), None) => (
            "halted",
            Some(format!(
                "cannot write the outputs: {why}; fix it and run again with --resume"
            )),
            exit::HALTED,
        ),
        (End::ReadFailed(why), None) => (
            "halted",
            Some(format!("cannot read the input further: {why}")),
            exit::HALTED,
        ),
    };
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
    Ok(s)
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
