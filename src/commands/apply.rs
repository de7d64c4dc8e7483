//! `simbulk apply FILE`: the fleet as a spreadsheet. The file says what each SIM should be;
//! apply reads the live fleet, plans the calls that close the gap, shows the plan, asks as a
//! destructive `run` does, and runs the plan with the engine (pacing, retries, reconcile,
//! checkpoint, results, failures, undo). `--drift` reports drift without writing.
//!
//! Guarantees: nothing is written before the plan is complete and shown (and confirmed where
//! a `run` would ask); `--plan-only` and `--drift` never write; a plan is reused only by
//! `--resume` together with its checkpoint (and the same desired file: its digest is kept
//! beside the plan) — any other apply reads the fleet and plans afresh; the engine re-reads
//! each SIM before its call (within `--max-read-age`), so a SIM already in its desired state
//! is not touched again; after the run the fleet is read once more and every SIM that still
//! differs from the file (moved by another client during the job, or blocked) is named, and
//! the exit code says so.

use std::path::{Path, PathBuf};

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::args::{ConnectionArgs, endpoint};
use super::error::{CliError, Outcome};
use super::run::{JobFlags, job_config, report};
use crate::api::Endpoint;
use crate::engine::apply::{Planned, Reading, make_plan};
use crate::engine::config::beside;
use crate::engine::provider::{Connect, Pacing, Provider};
use crate::engine::{self, ResumeMode};
use crate::exit::{self, Code, JobState};

#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The desired state: a CSV with an iccid column and any of status, customerSuspend,
    /// packageId, portfolioId and attr:NAME (as `simbulk export` writes them); an empty
    /// cell leaves the field as it is, `(delete)` in an attr: column deletes the attribute.
    pub(crate) input: PathBuf,

    /// The sheet to read when the desired state is a spreadsheet (.xlsx, .xls, .ods)
    /// [default: its first visible sheet].
    #[arg(long, value_name = "NAME")]
    pub(crate) sheet: Option<String>,

    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,

    /// Where the plan goes: one row per call, a job `simbulk run` takes, that `simbulk
    /// report` reads [default: <input stem>.plan.csv].
    #[arg(long, value_name = "PATH", help_heading = "Apply")]
    pub(crate) plan: Option<PathBuf>,

    /// Make and show the plan, change nothing: apply's preview (also spelled --preview and
    /// --dry-run, as in `run`).
    #[arg(long, visible_aliases = ["preview", "dry-run"], help_heading = "Apply")]
    pub(crate) plan_only: bool,

    /// Drift check: report which SIMs differ from the file and how, change nothing; exit 0
    /// when none differ, 1 when some do. (Formerly --check.)
    #[arg(
        long = "drift",
        alias = "check",
        conflicts_with = "plan_only",
        help_heading = "Apply"
    )]
    pub(crate) drift: bool,

    #[command(flatten)]
    pub(crate) job: JobFlags,
}

/// `simbulk apply`.
pub(crate) async fn run(a: ApplyArgs) -> Outcome {
    if let Some(code) = super::run::outside_window(a.job.window) {
        return Ok(code);
    }
    match apply(&a).await {
        Err(e @ CliError::Job(_)) => super::run::refused(&a.job, e).await,
        other => other,
    }
}

/// How apply's reads reach the provider: the endpoint resolved once, the job's pacing, and
/// the job's lease in the shared budget (the planning reads, the run and the check after
/// are one job to the account).
struct Reach<'a> {
    endpoint: &'a Endpoint,
    pacing: Pacing,
    lease: String,
}

impl<'a> Reach<'a> {
    fn of(endpoint: &'a Endpoint, cfg: &engine::JobConfig) -> Self {
        Self {
            endpoint,
            pacing: cfg.pacing.clone(),
            lease: engine::run::lease_name(cfg),
        }
    }
}

async fn apply(a: &ApplyArgs) -> Outcome {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let plan_path = a
        .plan
        .clone()
        .unwrap_or_else(|| beside(&a.input, ".plan.csv"));
    let stamp_path = beside(&plan_path, ".json");
    let mut cfg = job_config(plan_path.clone(), &a.job, args);
    cfg.results = a
        .job
        .results
        .clone()
        .unwrap_or_else(|| beside(&a.input, ".results.csv"));
    cfg.failures = a
        .job
        .failures
        .clone()
        .unwrap_or_else(|| beside(&a.input, ".failures.csv"));
    cfg.checkpoint = a
        .job
        .checkpoint
        .clone()
        .unwrap_or_else(|| beside(&a.input, ".checkpoint"));
    let quote = crate::output::summary::shell_quote;
    let desired = quote(&a.input.display().to_string());
    cfg.apply_again = Some(match &a.sheet {
        Some(sheet) => format!("{desired} --sheet {}", quote(sheet)),
        None => desired,
    });
    if !a.drift && !a.plan_only && cfg.resume == ResumeMode::Refuse && cfg.checkpoint.exists() {
        return Err(CliError::usage(format!(
            "checkpoint {} exists from an earlier apply of this file; add --resume to continue it (the plan is kept), or --restart to plan and apply afresh",
            cfg.checkpoint.display()
        )));
    }
    let endpoint = endpoint(&a.connection, a.job.timeout)?;
    let (drain, abort) = (CancellationToken::new(), CancellationToken::new());
    crate::signal::escalate(drain.clone(), abort.clone());
    let digest = crate::checkpoint::digest_file(&a.input)
        .map(|(sha, _, _)| sha)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", a.input.display())))?;
    // A plan goes only with its checkpoint: without one, the fleet may have moved since.
    let reuse = cfg.resume == ResumeMode::Resume
        && !a.drift
        && cfg.checkpoint.exists()
        && plan_path.exists()
        && std::fs::read_to_string(&stamp_path).is_ok_and(|s| s.contains(&digest));
    if !reuse {
        let out = (!a.drift || a.plan.is_some()).then_some(plan_path.as_path());
        let planned = plan(a, a.drift, &Reach::of(&endpoint, &cfg), out, &drain).await?;
        crate::output::stdout::print(&planned.text());
        if a.drift {
            return Ok(drift(&planned));
        }
        let stamp = format!("{{\"desired_sha256\":\"{digest}\"}}\n");
        std::fs::write(&stamp_path, stamp).map_err(|e| {
            CliError::halted(format_args!("cannot write {}: {e}", stamp_path.display()))
        })?;
        if a.plan_only {
            crate::output::stdout::print(&format!("  plan:      {}\n", plan_path.display()));
            return Ok(if planned.invalid > 0 {
                exit::ROWS_FAILED
            } else {
                exit::OK
            });
        }
        if planned.calls == 0 && planned.blocked == 0 && planned.invalid == 0 {
            crate::output::stdout::print("nothing to change.\n");
            return Ok(exit::OK);
        }
    }
    execute(a, cfg, endpoint, &drain, abort).await
}

/// The engine runs the plan; after a completed run the fleet is checked against the file.
async fn execute(
    a: &ApplyArgs,
    cfg: engine::JobConfig,
    endpoint: crate::api::Endpoint,
    drain: &CancellationToken,
    abort: CancellationToken,
) -> Outcome {
    let summary_json = cfg.summary_json.clone();
    let reach = Reach::of(&endpoint, &cfg);
    let job = tokio::spawn(engine::run(cfg, endpoint.clone(), drain.clone(), abort));
    let s = match job.await {
        Ok(s) => s?,
        Err(e) => return Err(CliError::Crashed(e.to_string())),
    };
    let mut code = report(&s, summary_json.as_deref());
    if s.state == JobState::Completed {
        code = code.max(after_run(a, &reach, drain).await?);
    }
    super::hook::on_finish(&a.job.on_finish, summary_json.as_deref(), Ok(&s)).await;
    Ok(code)
}

/// Reads the fleet and writes the plan to `plan_path` (nowhere when `None`); `check`: a drift
/// check, where read-only differences are differences.
async fn plan(
    a: &ApplyArgs,
    check: bool,
    reach: &Reach<'_>,
    plan_path: Option<&Path>,
    drain: &CancellationToken,
) -> Result<Planned, CliError> {
    // The planning reads draw from the account's budget, under the run's lease.
    let provider = Provider::connect(
        reach.endpoint,
        Connect {
            pacing: &reach.pacing,
            job: reach.lease.clone(),
            concurrency: a.job.concurrency.get(),
            retry: engine::RetryPolicy::new(a.job.max_retries),
            stop: drain.clone(),
            deadline: None,
        },
    )
    .await?;
    let reading = Reading {
        client: &provider.client,
        policy: &provider.retry,
        stop: drain,
        concurrency: a.job.concurrency.get(),
        check,
    };
    let planned = write_plan(a, &reading, plan_path).await;
    provider.leave().await;
    planned
}

/// The plan made from `reading`, written whole to `plan_path` (nowhere when `None`).
async fn write_plan(
    a: &ApplyArgs,
    reading: &Reading<'_>,
    plan_path: Option<&Path>,
) -> Result<Planned, CliError> {
    let Some(plan_path) = plan_path else {
        return Ok(make_plan(&a.input, a.sheet.as_deref(), reading, &mut std::io::sink()).await?);
    };
    let spare: Vec<_> = crate::files::output_place(&a.input, "the desired-state file", true)
        .into_iter()
        .collect();
    let mut out =
        crate::files::Replace::prepare(plan_path, "--plan", &spare).map_err(CliError::usage)?;
    let planned = make_plan(
        &a.input,
        a.sheet.as_deref(),
        reading,
        &mut std::io::BufWriter::new(out.file()),
    )
    .await?;
    out.commit().map_err(|e| {
        CliError::halted(format_args!(
            "cannot write the plan {}: {e}",
            plan_path.display()
        ))
    })?;
    Ok(planned)
}

/// After a completed run: the fleet read once more; every SIM that still differs from the
/// file is named (another client moved it during the job, or its change is blocked), and
/// the exit code is 1 when there are some.
async fn after_run(a: &ApplyArgs, reach: &Reach<'_>, drain: &CancellationToken) -> Outcome {
    let after = plan(a, true, reach, None, drain).await?;
    if after.differing == 0 && after.invalid == 0 {
        crate::output::stdout::print("checked: every SIM is as the file says.\n");
        return Ok(exit::OK);
    }
    crate::output::stdout::print(
        "checked after the run: some SIMs still differ from the file (a blocked change, or another client moved them during the job); run simbulk apply again to re-plan them:\n",
    );
    Ok(drift(&after))
}

/// A drift check's verdict: the SIMs that differ, and the exit code.
fn drift(p: &Planned) -> Code {
    if p.differing == 0 && p.invalid == 0 {
        crate::output::stdout::print("no drift: every SIM is as the file says.\n");
        return exit::OK;
    }
    let mut s = format!("drift: {} SIMs differ from the file", p.differing);
    if p.invalid > 0 {
        s += &format!(", {} rows are invalid", p.invalid);
    }
    s += ":\n";
    for line in &p.shown {
        s += &format!("  {line}\n");
    }
    if p.differing > p.shown.len() as u64 {
        s += &format!("  … and {} more\n", p.differing - p.shown.len() as u64);
    }
    crate::output::stdout::print(&s);
    exit::ROWS_FAILED
}
