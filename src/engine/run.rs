//! A job from start to end: check the input and the paths, bind or resume the checkpoint,
//! check the credentials, open the outputs, drive the rows, and sum up.
//!
//! Guarantees: every refusal that can be known before the first call (bad file, dangerous
//! paths, checkpoint in the way or of another job, refused credentials, unreachable API)
//! happens before any row is sent and before any output is touched; the input is opened once
//! and fingerprinted through that handle; the journal's end record is written only when every
//! row has a record and the input still has the size and digest it had at the start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::api::{Client, Endpoint};
use crate::checkpoint::{self, JobIdentity, JobLock};
use crate::exit::{self, Code, JobState};
use crate::files::Replace;
use crate::input::reader::InputFile;
use crate::input::{self, Layout, Rows};
use crate::output::progress::Progress;
use crate::output::row::Tally;
use crate::output::summary::{Summary, resume_command};

use super::carry::Mode;
use super::config::{Error, JobConfig};
use super::dispatcher::{self, Dispatch, Drive};
use super::halt::{End, Stops};
use super::plan::{self, PlannedBatch, Planner};
use super::provider::{Connect, Provider};
use super::reader;
use super::recorder::{Counts, Recorder, RecorderHandle, rows_failed};
use super::retry::RetryPolicy;
use super::schedule::Rules;
use super::setup::{self, Bound, Start};
use tokio::sync::mpsc::Receiver;

/// What is known of a job before anything is sent.
struct Prepared {
    layout: Layout,
    rows: Rows,
    identity: JobIdentity,
    /// The input's lines (an estimate of its rows, and a bound on its checkpoint).
    lines: u64,
    summary_file: Option<Replace>,
    /// A second pass over the input, for the confirmation's counts (when one may be asked).
    again: Option<Rows>,
}

/// Runs a job against the API described by `endpoint`.
pub async fn run(
    mut cfg: JobConfig,
    endpoint: Endpoint,
    drain: CancellationToken,
    abort: CancellationToken,
) -> Result<Summary, Error> {
    let started = Instant::now();
    let mut p = prepare(&mut cfg, &drain).await?;
    let _lock = match cfg.discard_outputs {
        true => None,
        false => Some(JobLock::acquire(&cfg.checkpoint)?),
    };
    let start = match setup::bind_checkpoint(&cfg, &p.identity, p.lines)? {
        _ if cfg.discard_outputs => Start::fresh(),
        Bound::Run(s) => s,
        Bound::Finished(code, tally) => return Ok(finished_before(&cfg, code, tally, started, p)),
    };
    // A resume without --change-ref keeps the job's.
    if cfg.change_ref.is_none() {
        cfg.change_ref.clone_from(&start.change_ref);
    }
    if let Some(rows) = p.again.take() {
        super::gate::confirm(&cfg, rows, &start.done, &drain).await?;
    }
    let stop_rows = drain.child_token();
    let deadline = setup::deadline(&cfg);
    let provider = Provider::connect(
        &endpoint,
        Connect {
            pacing: &cfg.pacing,
            job: lease_name(&cfg),
            concurrency: cfg.concurrency,
            retry: cfg.retry,
            stop: stop_rows.clone(),
            deadline,
        },
    )
    .await?;
    let client = provider.client.clone();
    let total = p.lines.saturating_sub(u64::from(!p.layout.headerless));
    let mut rec = recorder(&cfg, &p, &client, &start, total)?;
    let (dispatch, planned, reading) =
        stages(&cfg, p.rows, p.layout, start, &provider, &stop_rows)?;
    let stops = Stops {
        drain,
        abort,
        stop_rows,
        deadline,
    };
    let drive = dispatcher::drive(dispatch, planned, &mut rec, stops).await;
    let (blank, changed) = match drive.end {
        End::Complete => reader::check_input(reading, &p.identity).await,
        _ => (0, None),
    };
    let mut s = conclude(&cfg, &drive, changed, rec, &client, started).await;
    s.rate_share = client.pacer.shared().map(|b| b.share());
    provider.leave().await;
    s.blank_rows_skipped = blank;
    s.deadline_at = deadline.map(|d| {
        let left = d.saturating_duration_since(tokio::time::Instant::now());
        crate::clock::rfc3339(
            std::time::SystemTime::now() + left,
            crate::clock::Precision::Seconds,
        )
    });
    s.job_rows_estimate = total;
    write_summary(&s, p.summary_file);
    Ok(s)
}

/// The stages after the recorder: the reader's thread, the planner, and what the
/// dispatcher needs.
fn stages(
    cfg: &JobConfig,
    rows: Rows,
    layout: Layout,
    start: Start,
    provider: &Provider,
    stop_rows: &CancellationToken,
) -> Result<(Dispatch, Receiver<PlannedBatch>, reader::Reader), Error> {
    let client = provider.client.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<reader::Batch>(8);
    let reading = reader::start(rows, tx).map_err(|source| Error::Thread {
        what: "reader",
        source,
    })?;
    let policy = Arc::new(provider.retry);
    let done = Arc::new(start.done);
    let taken = Arc::new(plan::Taken::default());
    let planned = plan::start(
        Planner {
            client: client.clone(),
            // A window that cannot be read soon goes unplanned (its rows read their own SIM,
            // with every retry a row has): planning never holds a failing job back long.
            policy: Arc::new(RetryPolicy::new(provider.retry.max_retries.min(2))),
            stop: stop_rows.clone(),
            done: done.clone(),
            // A provider that reads one SIM per call has nothing to plan with.
            enabled: cfg.plan && provider.caps.max_batch_read > 1,
            depth: plan::depth_for(cfg.concurrency),
            max_age: cfg.max_read_age,
            taken: taken.clone(),
            concurrency: cfg.concurrency,
        },
        rx,
    );
    let dispatch = Dispatch {
        client,
        policy,
        odds: Arc::default(),
        rules: Rules {
            layout,
            concurrency: cfg.concurrency,
            done,
            in_doubt: start.in_doubt,
            mode: if cfg.preview {
                Mode::Preview
            } else {
                Mode::Run
            },
            canary: cfg.canary.filter(|_| !cfg.preview),
            max_age: cfg.max_read_age,
            // A preview's failures are predictions: they are the point, not a reason to halt.
            max_failures: cfg.max_failures.filter(|_| !cfg.preview),
            halt_after_same_error: cfg.halt_after_same_error.filter(|_| !cfg.preview),
            stall_timeout: cfg.stall_timeout,
            wait: cfg.wait_active.map(|within| {
                Arc::new(super::activation::WaitActive {
                    within,
                    ..Default::default()
                })
            }),
            taken,
        },
    };
    Ok((dispatch, planned, reading))
}

/// Everything before the first request: the input opened once, the outputs checked, the
/// summary file prepared, the input fingerprinted (a stop ends this at once), its header read.
async fn prepare(cfg: &mut JobConfig, drain: &CancellationToken) -> Result<Prepared, Error> {
    let file = InputFile::open(&cfg.input, cfg.sheet.as_deref())?;
    let mut summary_file = None;
    if cfg.discard_outputs {
        let null = PathBuf::from("/dev/null");
        (cfg.results, cfg.failures, cfg.checkpoint) = (null.clone(), null.clone(), null);
    } else {
        let places = setup::check_paths(cfg, &file)?;
        if let Some(p) = cfg.summary_json.as_ref().filter(|p| !setup::is_stdout(p)) {
            // Proves the summary can be written before anything is sent.
            let spare = places.except("--summary-json");
            summary_file = Some(Replace::prepare(p, "--summary-json", &spare)?);
        }
    }
    let stop = drain.clone();
    let (file, fingerprint) = tokio::task::spawn_blocking(move || {
        let d = file.source().map(|mut source| {
            checkpoint::fingerprint::digest(&mut source, &|| stop.is_cancelled())
        });
        (file, d)
    })
    .await
    .map_err(|e| Error::Thread {
        what: "fingerprint",
        source: std::io::Error::other(e),
    })?;
    let unreadable = |source| input::FileError::Unreadable {
        path: cfg.input.clone(),
        source,
    };
    let Some((sha, bytes, lines)) = fingerprint?.map_err(unreadable)? else {
        return Err(Error::StoppedEarly);
    };
    let again = match cfg.confirm_over {
        Some(_) if !cfg.yes && !cfg.preview && !cfg.discard_outputs => {
            Some(file.rows_again(&cfg.defaults, bytes)?.1)
        }
        _ => None,
    };
    let (layout, rows) = input::reader::rows(file, &cfg.defaults, Some(bytes))?;
    let identity = JobIdentity {
        input_sha256: sha,
        input_bytes: bytes,
        action: cfg.defaults.action.clone(),
        value: cfg.defaults.value.clone(),
        attribute: cfg.defaults.attribute.clone(),
        preview: cfg.preview,
    };
    Ok(Prepared {
        layout,
        rows,
        identity,
        lines,
        summary_file,
        again,
    })
}

/// The summary of a job whose checkpoint says it had finished.
fn finished_before(
    cfg: &JobConfig,
    code: Code,
    tally: Tally,
    started: Instant,
    p: Prepared,
) -> Summary {
    let reason = "this job had already finished; nothing to do (use --restart to run it again)";
    let mut s = summary(
        cfg,
        JobState::Completed,
        Some(reason.into()),
        code,
        tally,
        Tally::default(),
        started,
    );
    s.job_rows_estimate = tally.total();
    write_summary(&s, p.summary_file);
    s
}

/// The name of a job's lease in the shared budget: its checkpoint, so a resumed run (or
/// `apply`'s run after its planning reads) takes over its own lease.
pub(crate) fn lease_name(cfg: &JobConfig) -> String {
    crate::files::resolve(&cfg.checkpoint).display().to_string()
}

/// Opens the outputs and starts the recorder that owns them.
fn recorder(
    cfg: &JobConfig,
    p: &Prepared,
    client: &Arc<Client>,
    start: &Start,
    total: u64,
) -> Result<RecorderHandle, Error> {
    let (results, failures, journal) =
        setup::open_outputs(cfg, &p.layout, &p.identity, start).map_err(Error::Outputs)?;
    let deadline = cfg
        .stop_within()
        .and_then(|d| std::time::SystemTime::now().checked_add(d));
    let progress = Progress::new(total, start.tally.total()).with_deadline(deadline);
    let metrics = cfg.metrics_file.as_ref().map(|path| {
        let file = crate::output::metrics::MetricsFile::new(
            path.clone(),
            &cfg.input,
            cfg.change_ref.as_deref(),
        );
        let live = live_numbers(client.clone(), cfg.pacing.rate);
        super::recorder::metrics::Sink::new(
            file,
            live,
            total,
            start.tally.total(),
            cfg.stop_within(),
        )
    });
    Recorder::new(
        results,
        failures,
        journal,
        progress,
        start.tally,
        cfg.sync_every,
    )
    .with_metrics(metrics)
    .spawn()
    .map_err(|source| Error::Thread {
        what: "recorder",
        source,
    })
}

/// The client's numbers for the metrics file.
fn live_numbers(
    client: Arc<Client>,
    rate: Option<f64>,
) -> Box<dyn Fn() -> crate::output::metrics::Live + Send> {
    Box::new(move || {
        let c = client.calls();
        let p = &client.pacer;
        crate::output::metrics::Live {
            writes: c.writes,
            reads: c.reads,
            lists: c.lists,
            answers: client.answer_classes(),
            throttled: p.throttled_count(),
            target_rate: rate,
            current_rate: p.rate_now().or(rate),
            share: p.shared().map_or(1.0, |b| b.share()),
            last_success: client.last_success(),
        }
    })
}

/// Ends the run: the recorder's last flush (and the end record of a complete job), and the
/// summary of what happened.
async fn conclude(
    cfg: &JobConfig,
    drive: &Drive,
    changed: Option<String>,
    rec: RecorderHandle,
    client: &Client,
    started: Instant,
) -> Summary {
    let pacer = &client.pacer;
    let api = client.answer_latency_ms();
    let sent = crate::checkpoint::RunStats {
        requests: pacer.requests(),
        api_p50_ms: api.map_or(0.0, |l| l.0),
        api_p99_ms: api.map_or(0.0, |l| l.1),
        ..Default::default()
    };
    let (state, reason) = ending(cfg, drive, changed);
    let complete = state == JobState::Completed;
    // The code of a run that did not complete (a complete one's the recorder counts).
    let (counts, write_error) = rec.finish(complete, state.code(false), sent).await;
    let (state, reason) = match write_error {
        // The end record may be missing: the job is not known to be finished.
        Some(e) if complete => (
            JobState::Halted,
            Some(format!(
                "cannot write the outputs: {e}; fix it and run again with --resume"
            )),
        ),
        _ => (state, reason),
    };
    let code = state.code(rows_failed(&counts.job));
    let mut s = summary(cfg, state, reason, code, counts.job, counts.run, started);
    // The time the operator took to answer is not the job's.
    let working = (s.elapsed_seconds - drive.asked.as_secs_f64()).max(0.001);
    s.rows_per_second = s.this_run.total() as f64 / working;
    fill(&mut s, &counts, cfg);
    s.requests = pacer.requests();
    s.calls = calls_of(&client.calls(), &s);
    s.throttled_429 = pacer.throttled_count();
    s.first_request_after_seconds = pacer
        .first_request()
        .map(|t| t.duration_since(started).as_secs_f64());
    s.api_latency_ms = api.map(latency);
    s.reads.reread = drive.ages.reread;
    s.reads.oldest_seconds =
        (drive.ages.oldest > std::time::Duration::ZERO).then_some(drive.ages.oldest.as_secs_f64());
    s
}

/// The state and reason of a run that ended as `drive` says (its code follows from the
/// state: [`JobState::code`]).
fn ending(cfg: &JobConfig, drive: &Drive, changed: Option<String>) -> (JobState, Option<String>) {
    if let Some(how) = changed {
        let why = format!(
            "the input file {} changed while the job ran ({how}); no row is lost, but the job is not finished: restore the file and run again with --resume, or run the changed file with --restart",
            cfg.input.display()
        );
        return (JobState::Halted, Some(why));
    }
    match &drive.end {
        End::Complete => (JobState::Completed, None),
        End::Stopped(why) => (JobState::Stopped, Some(why.clone())),
        End::Aborted => (
            JobState::Aborted,
            Some("aborted by a second signal; rows in flight will be done again on resume".into()),
        ),
        End::Halted(h) => (
            JobState::Halted,
            Some(h.message(&drive.failures, drive.unrecorded)),
        ),
        End::WriteFailed(why) => (
            JobState::Halted,
            Some(format!(
                "cannot write the outputs: {why}; fix it and run again with --resume"
            )),
        ),
        End::ReadFailed(why) => (
            JobState::Halted,
            Some(format!("cannot read the input further: {why}")),
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

/// Requests of this run by kind, and per row.
fn calls_of(c: &crate::api::CallCounts, s: &Summary) -> crate::output::summary::Calls {
    let sent = c.writes + c.reads + c.lists;
    crate::output::summary::Calls {
        writes: c.writes,
        reads: c.reads,
        lists: c.lists,
        retries: s.retries,
        per_row: sent as f64 / s.this_run.total().max(1) as f64,
    }
}

fn fill(s: &mut Summary, c: &Counts, cfg: &JobConfig) {
    s.by_action = c.by_action.clone();
    s.by_reason = c.reasons.all();
    let failures = crate::output::summary::shell_quote(&s.failures.display().to_string());
    let d = &cfg.defaults;
    let flags = crate::output::summary::rerun_flags(
        d.action.as_deref(),
        d.value.as_deref(),
        d.attribute.as_deref(),
    );
    let rerun = crate::output::groups::Rerun {
        failures: &failures,
        flags: &flags,
        apply: cfg.apply_again.as_deref(),
    };
    s.top_errors = c.top_errors(10, &rerun);
    s.retries = c.retries;
    s.activations = crate::output::summary::Activations {
        active: c.activations.0,
        still_pending: c.activations.1,
    };
    s.row_time_ms = c.latency_ms().map(latency);
}

fn latency((p50, p99, max): (f64, f64, f64)) -> crate::output::summary::Latency {
    crate::output::summary::Latency { p50, p99, max }
}

fn summary(
    cfg: &JobConfig,
    state: JobState,
    reason: Option<String>,
    code: Code,
    job: Tally,
    run: Tally,
    started: Instant,
) -> Summary {
    let elapsed = started.elapsed().as_secs_f64();
    let now = std::time::SystemTime::now();
    let at = |t| crate::clock::rfc3339(t, crate::clock::Precision::Millis);
    Summary {
        schema_version: crate::output::summary::SCHEMA_VERSION,
        version: env!("CARGO_PKG_VERSION").into(),
        change_ref: cfg.change_ref.clone(),
        operator: setup::operator(),
        started_at: at(now - started.elapsed()),
        finished_at: at(now),
        deadline_at: None,
        preview: cfg.preview,
        state,
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
        by_reason: Vec::new(),
        calls: Default::default(),
        reads: crate::output::summary::ReadAges {
            bound_seconds: cfg.max_read_age.as_secs_f64(),
            ..Default::default()
        },
        elapsed_seconds: elapsed,
        rows_per_second: run.total() as f64 / elapsed.max(0.001),
        requests: 0,
        retries: 0,
        throttled_429: 0,
        blank_rows_skipped: 0,
        api_latency_ms: None,
        rate_share: None,
        row_time_ms: None,
        first_request_after_seconds: None,
        activations: Default::default(),
        resume_command: matches!(code, exit::STOPPED | exit::HALTED)
            .then(|| resume_command(&cfg.args)),
    }
}
