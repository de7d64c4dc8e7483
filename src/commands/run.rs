//! `simbulk run`: its flags, the typed job they describe, the run, the summary and the exit
//! code.
//!
//! Guarantees: nothing is sent and no file is touched when the flags are wrong (exit 2).

use std::path::Path;
use std::time::Duration;

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::error::{CliError, Outcome};
use crate::api::Endpoint;
use crate::engine::{self, JobConfig, ResumeMode, RetryPolicy, Threshold};
use crate::exit::{self, Code, JobState};
use crate::input::Defaults;
use crate::output::Summary;

use super::args::{
    ConnectionArgs, SettingsError, endpoint, parse_concurrency, parse_duration, parse_timeout,
};

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The job: a CSV (or a spreadsheet) with an iccid column and usually action, value,
    /// attribute columns (other columns are carried to the results), or a plain list of
    /// ICCIDs with --action.
    pub(crate) input: PathBuf,

    /// The sheet to read when the input is a spreadsheet (.xlsx, .xls, .ods) [default: its
    /// first visible sheet].
    #[arg(long, value_name = "NAME")]
    pub(crate) sheet: Option<String>,

    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,

    /// Action for rows whose action cell is empty (required for a plain list of ICCIDs).
    #[arg(long, value_enum, ignore_case = true, help_heading = "Row defaults")]
    pub(crate) action: Option<super::args::ActionArg>,

    /// Value for rows whose value cell is empty (package id, portfolio id, attribute value).
    #[arg(long, help_heading = "Row defaults")]
    pub(crate) value: Option<String>,

    /// Attribute name for rows whose attribute cell is empty.
    #[arg(long, help_heading = "Row defaults")]
    pub(crate) attribute: Option<String>,

    /// After a completed job, read its SIMs again as `simbulk verify` does (exit 1 if any differ).
    #[arg(long, help_heading = "Outputs")]
    pub(crate) verify: bool,

    /// Read and validate the whole file, print counts per action and every invalid row,
    /// and send nothing. Exit 0 when every row is valid, 1 otherwise.
    #[arg(long)]
    pub(crate) dry_run: bool,

    /// Preview against live state: read the SIMs in batches (one list call per 100 SIMs,
    /// paced) and predict each row's outcome into PATH, with progress, graceful stop and
    /// --resume; no change is sent. The file has the results' columns and `simbulk report`
    /// reads it [default PATH: <input stem>.preview.csv; its failures and checkpoint beside
    /// it]. (Formerly --dry-run --check.)
    #[arg(
        long,
        value_name = "PATH",
        num_args = 0..=1,
        help_heading = "Outputs"
    )]
    pub(crate) preview: Option<Option<PathBuf>>,

    /// The old spelling of --preview (with --dry-run).
    #[arg(long, hide = true, requires = "dry_run")]
    pub(crate) check: bool,

    /// After a change answers that it settles later (an activation's pendingProvision, a
    /// Super SIM's scheduled), poll the SIM (paced, backing off) until it has settled or this
    /// long has passed; a row is ok only once its SIM shows the change.
    #[arg(long, visible_alias = "wait-settled", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) wait_active: Option<Duration>,

    #[command(flatten)]
    pub(crate) job: JobFlags,
}

/// The flags of a job the engine runs, shared by `run` and `apply`: outputs, resume, run
/// windows, pacing and safety.
#[derive(Debug, Clone, Args)]
pub(crate) struct JobFlags {
    /// Results CSV: one row per input row [default: <input stem>.results.csv beside the input].
    #[arg(long, help_heading = "Outputs")]
    pub(crate) results: Option<PathBuf>,

    /// Failures CSV: failed and invalid rows in the input's own columns, ready to re-run
    /// [default: <input stem>.failures.csv].
    #[arg(long, help_heading = "Outputs")]
    pub(crate) failures: Option<PathBuf>,

    /// Checkpoint journal that makes the job resumable [default: <input stem>.checkpoint].
    #[arg(long, help_heading = "Outputs")]
    pub(crate) checkpoint: Option<PathBuf>,

    /// Write the final summary as JSON to this file (for monitoring).
    #[arg(long, help_heading = "Outputs")]
    pub(crate) summary_json: Option<PathBuf>,

    /// Keep the job's numbers in this file in the Prometheus text format (for the node
    /// exporter's textfile collector), replaced whole every 5 s and at the end; it is also
    /// the job's heartbeat.
    #[arg(long, value_name = "PATH", help_heading = "Outputs")]
    pub(crate) metrics_file: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) on_finish: super::hook::OnFinish,

    /// Continue from the checkpoint if there is one (start fresh if there is none), so a
    /// nightly cron line can always say --resume.
    #[arg(long, conflicts_with = "restart", help_heading = "Resume")]
    pub(crate) resume: bool,

    /// Start the job again: an unfinished job's checkpoint and outputs are discarded; a
    /// finished job's are kept, renamed with the time (`<file>.<YYYYmmddTHHMMSSZ>`).
    #[arg(long, help_heading = "Resume")]
    pub(crate) restart: bool,

    /// Stop gracefully at this local time (HH:MM or HH:MM:SS, the next occurrence, in the
    /// machine's time zone or TZ); no request starts after it; exit 75, resumable.
    #[arg(long, value_name = "HH:MM", value_parser = parse_until, help_heading = "Resume")]
    pub(crate) until: Option<Until>,

    /// The change window (local times HH:MM-HH:MM; may span midnight): outside it the run
    /// exits 75 at once, sending nothing; inside it, it stops at the window's end (exit 75,
    /// resumable).
    #[arg(long, value_name = "HH:MM-HH:MM", value_parser = parse_window, help_heading = "Resume")]
    pub(crate) window: Option<Window>,

    /// Stop gracefully after this long (e.g. 4h30m); exit 75, resumable.
    #[arg(long, value_parser = parse_duration, help_heading = "Resume")]
    pub(crate) max_duration: Option<Duration>,

    /// Rows in flight at once (1 to 10000).
    #[arg(long, default_value = "8", value_parser = parse_concurrency, help_heading = "Pacing")]
    pub(crate) concurrency: NonZeroUsize,

    #[command(flatten)]
    pub(crate) pacing: super::args::PacingArgs,

    /// Retries per row after the first attempt, for 5xx, timeouts and connection errors
    /// (0 to 1000).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(0..=1000), help_heading = "Pacing")]
    pub(crate) max_retries: u32,

    /// Timeout of one HTTP request (100ms to 1h).
    #[arg(long, default_value = "30s", value_parser = parse_timeout, help_heading = "Pacing")]
    pub(crate) timeout: Duration,

    /// Halt (exit 3, resumable) when no row has finished for this long and every answer was a
    /// 429, a 5xx or no answer at all: a provider that does not recover. 0s: never.
    #[arg(long, default_value = "15m", value_parser = parse_duration, help_heading = "Pacing")]
    pub(crate) stall_timeout: Duration,

    /// Stop the job (exit 3, resumable) once failed rows pass N, or P% of finished rows
    /// (e.g. 500 or 5%).
    #[arg(long, value_parser = Threshold::parse, help_heading = "Pacing")]
    pub(crate) max_failures: Option<Threshold>,

    /// Halt (exit 3, resumable) when this many rows in a row fail with the same error, as a
    /// wrong package or portfolio id would make every row fail; 0 turns it off. Single
    /// failures (one suspended SIM) never halt.
    #[arg(long, default_value_t = 25, value_name = "K", help_heading = "Pacing")]
    pub(crate) halt_after_same_error: u32,

    /// Run the first N rows (file order), then look: on a terminal their summary and a
    /// question; off one, go on only when none of them failed (else exit 3, resumable).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Safety")]
    pub(crate) canary: Option<u64>,

    /// Ask before a job with more than N rows of deactivate, suspend, set-package,
    /// set-portfolio or delete-attribute; off a terminal such a job needs --yes (else exit 2,
    /// nothing sent).
    #[arg(long, value_name = "N", default_value_t = 100, help_heading = "Safety")]
    pub(crate) confirm_over: u64,

    /// Confirm a destructive job without asking (for scheduled jobs). It never overrides a
    /// failed canary.
    #[arg(long, short = 'y', help_heading = "Safety")]
    pub(crate) yes: bool,

    /// Do not read SIMs in batches before writing: every row reads or writes its own SIM
    /// (for a provider whose list cannot filter by ICCID).
    #[arg(long, help_heading = "Pacing")]
    pub(crate) no_plan: bool,

    /// The oldest read a row may be decided on (skipped, predicted, blocked); an older one
    /// is read again first. Lower it when other clients change the fleet during the job.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION", help_heading = "Pacing")]
    pub(crate) max_read_age: Duration,

    /// The change ticket this job belongs to (e.g. CHG-1234): kept in the checkpoint, a
    /// column of the results, the summary and the report, with the OS user who ran it. A
    /// resume keeps the job's reference unless given a new one.
    #[arg(long, value_name = "TEXT", value_parser = parse_change_ref, help_heading = "Outputs")]
    pub(crate) change_ref: Option<String>,
}

/// A change reference: one line of printable text, at most 200 characters.
fn parse_change_ref(s: &str) -> Result<String, String> {
    if s.trim().is_empty() || s.chars().count() > 200 || s.chars().any(char::is_control) {
        return Err("give one line of text of at most 200 characters, e.g. CHG-1234".into());
    }
    Ok(s.trim().to_owned())
}

/// A local time of day (`--until`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Until {
    pub(crate) hour: i8,
    pub(crate) minute: i8,
    pub(crate) second: i8,
}

/// Parses `HH:MM` or `HH:MM:SS`.
pub(crate) fn parse_until(hhmm: &str) -> Result<Until, String> {
    let bad = || format!("{hhmm:?} is not a local time; give HH:MM, e.g. 05:30");
    let num = |s: &str| -> Result<i8, String> {
        if s.is_empty() || s.len() > 2 {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let parts: Vec<&str> = hhmm.trim().split(':').collect();
    let (hour, minute, second) = match parts.as_slice() {
        [h, m] => (num(h)?, num(m)?, 0),
        [h, m, s] => (num(h)?, num(m)?, num(s)?),
        _ => return Err(bad()),
    };
    if !(0..24).contains(&hour) || !(0..60).contains(&minute) || !(0..60).contains(&second) {
        return Err(bad());
    }
    Ok(Until {
        hour,
        minute,
        second,
    })
}

impl Until {
    /// Time from now until this time of day, today or (when past) tomorrow, in the local time
    /// zone. A time the zone skips (a DST gap) is taken as the next that exists.
    pub(crate) fn time_left(self) -> Duration {
        let now = jiff::Zoned::now();
        let at = now
            .with()
            .hour(self.hour)
            .minute(self.minute)
            .second(self.second)
            .subsec_nanosecond(0)
            .build()
            .ok()
            .and_then(|at| {
                if at <= now {
                    at.tomorrow().ok()
                } else {
                    Some(at)
                }
            });
        at.and_then(|at| Duration::try_from(now.duration_until(&at)).ok())
            .unwrap_or(Duration::ZERO)
    }
}

/// `--window`: a start and an end time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) start: Until,
    pub(crate) end: Until,
}

/// Parses `HH:MM-HH:MM` (seconds allowed).
pub(crate) fn parse_window(s: &str) -> Result<Window, String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not a window; give HH:MM-HH:MM, e.g. 01:00-05:30"))?;
    let w = Window {
        start: parse_until(a)?,
        end: parse_until(b)?,
    };
    if w.start == w.end {
        return Err(format!("{s:?}: a window's start and end differ"));
    }
    Ok(w)
}

impl Window {
    /// Whether now is inside the window: its end comes before its next start.
    pub(crate) fn open(self) -> bool {
        self.end.time_left() < self.start.time_left()
    }
}

/// `--window` closed: says so, and the run ends with exit 75 before anything is sent.
pub(crate) fn outside_window(w: Option<Window>) -> Option<Code> {
    let w = w.filter(|w| !w.open())?;
    let at = |u: Until| format!("{:02}:{:02}", u.hour, u.minute);
    eprintln!(
        "simbulk: outside the change window {}-{} (local time; opens in {}); nothing was sent",
        at(w.start),
        at(w.end),
        crate::clock::duration_text(w.start.time_left())
    );
    Some(exit::STOPPED)
}

/// Builds the job and the endpoint from the flags.
pub(crate) fn configure(
    a: &RunArgs,
    args: Vec<String>,
) -> Result<(JobConfig, Option<Endpoint>), SettingsError> {
    let cfg = JobConfig {
        defaults: Defaults {
            action: a.action.map(|x| x.name().to_owned()),
            value: a.value.clone(),
            attribute: a.attribute.clone(),
            unsupported: crate::engine::provider::unsupported(a.connection.api()),
            attribute_names: crate::engine::provider::attribute_names(a.connection.api()),
        },
        wait_active: a.wait_active,
        api: a.connection.api(),
        sheet: a.sheet.clone(),
        ..job_config(a.input.clone(), &a.job, args)
    };
    let preview = a.check || a.preview.is_some();
    let cfg = if preview { as_preview(cfg, a) } else { cfg };
    if a.dry_run && !preview {
        return Ok((cfg, None));
    }
    Ok((cfg, Some(endpoint(&a.connection, a.job.timeout)?)))
}

/// The job on `input` that `f` describes (outputs beside `input` unless given).
pub(crate) fn job_config(input: PathBuf, f: &JobFlags, args: Vec<String>) -> JobConfig {
    let base = JobConfig::new(input);
    JobConfig {
        results: f.results.clone().unwrap_or(base.results.clone()),
        failures: f.failures.clone().unwrap_or(base.failures.clone()),
        checkpoint: f.checkpoint.clone().unwrap_or(base.checkpoint.clone()),
        resume: if f.resume {
            ResumeMode::Resume
        } else if f.restart {
            ResumeMode::Restart
        } else {
            ResumeMode::Refuse
        },
        concurrency: f.concurrency.get(),
        pacing: f.pacing.pacing(),
        retry: RetryPolicy::new(f.max_retries),
        max_duration: f.max_duration,
        until: [
            f.until.map(Until::time_left),
            f.window.map(|w| w.end.time_left()),
        ]
        .into_iter()
        .flatten()
        .min(),
        max_failures: f.max_failures,
        halt_after_same_error: (f.halt_after_same_error > 0).then_some(f.halt_after_same_error),
        stall_timeout: if f.stall_timeout.is_zero() {
            Duration::MAX
        } else {
            f.stall_timeout
        },
        summary_json: f.summary_json.clone(),
        args,
        plan: !f.no_plan,
        max_read_age: f.max_read_age,
        canary: f.canary,
        confirm_over: Some(f.confirm_over),
        yes: f.yes,
        change_ref: f.change_ref.clone(),
        metrics_file: f.metrics_file.clone(),
        ..base
    }
}

/// The job as a preview: predictions into `--preview` (or `<stem>.preview.csv`), with its
/// failures and checkpoint beside it.
fn as_preview(cfg: JobConfig, a: &RunArgs) -> JobConfig {
    let preview = a
        .preview
        .clone()
        .flatten()
        .unwrap_or_else(|| engine::config::beside(&a.input, ".preview.csv"));
    let (_, failures, checkpoint) = engine::default_paths(&preview);
    JobConfig {
        results: preview,
        failures,
        checkpoint,
        preview: true,
        canary: None,
        confirm_over: None,
        ..cfg
    }
}

/// Prints a summary (the engine wrote `--summary-json` already) and returns the exit code.
/// With `--summary-json -` the JSON goes to standard output and the text to standard error.
/// With `-q` the text is not printed (a cron job mails nothing when all went well); a run
/// that did not complete says so in one line on standard error.
pub(crate) fn report(s: &Summary, json: Option<&Path>) -> Code {
    let to_stdout = json.is_some_and(crate::engine::setup::is_stdout);
    if super::quiet() {
        if s.exit_code != exit::OK {
            let why = s
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            eprintln!("simbulk: job {} (exit {}){why}", s.state, s.exit_code);
        }
    } else if to_stdout {
        eprint!("{}", s.to_text());
    } else {
        crate::output::stdout::print(&s.to_text());
    }
    if to_stdout {
        let json = serde_json::to_string_pretty(s).unwrap_or_default();
        crate::output::stdout::print(&format!("{json}\n"));
    }
    s.exit_code
}

/// `simbulk run`.
pub(crate) async fn run(a: RunArgs) -> Outcome {
    if let Some(code) = outside_window(a.job.window) {
        return Ok(code);
    }
    // An argument need not be UTF-8 (a file name); the resume line shows it as best it can.
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (cfg, endpoint) = configure(&a, args)?;
    let Some(endpoint) = endpoint else {
        let (text, code) = engine::dry_run(&cfg)?;
        crate::output::stdout::print(&text);
        return Ok(code);
    };
    let (drain, abort) = (CancellationToken::new(), CancellationToken::new());
    crate::signal::escalate(drain.clone(), abort.clone());
    // On a worker thread, the dispatcher and the workers wake each other without crossing
    // into the runtime's blocking entry thread.
    let preview = cfg.preview;
    let reads = super::verify::Reads {
        endpoint: &endpoint,
        pacing: cfg.pacing.clone(),
        job: engine::run::lease_name(&cfg),
        concurrency: cfg.concurrency,
        max_retries: cfg.retry.max_retries,
    };
    let job = tokio::spawn(engine::run(cfg, endpoint.clone(), drain.clone(), abort));
    let summary_json = a.job.summary_json.as_deref();
    let ended = match job.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return refused(&a.job, e.into()).await,
        Err(e) => return refused(&a.job, CliError::Crashed(e.to_string())).await,
    };
    let mut code = report(&ended, summary_json);
    if a.verify && !preview && ended.state == JobState::Completed {
        let v = super::verify::after_job(&ended.results, &reads, &drain).await;
        code = code.max(v.unwrap_or_else(|e| {
            super::fatal(&e);
            e.exit_code()
        }));
    }
    super::hook::on_finish(&a.job.on_finish, summary_json, Ok(&ended)).await;
    Ok(code)
}

/// A job the engine refused (or lost): `--on-finish` is told, and the error is the outcome.
pub(crate) async fn refused(f: &JobFlags, e: CliError) -> Outcome {
    super::hook::on_finish(&f.on_finish, f.summary_json.as_deref(), Err(&e)).await;
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engines_defaults_are_the_clis() {
        use clap::Parser as _;
        let cli = crate::commands::Cli::try_parse_from(["simbulk", "run", "job.csv"]).unwrap();
        let crate::commands::Command::Run(a) = cli.command else {
            panic!("not a run");
        };
        let input = PathBuf::from("job.csv");
        let from_flags = job_config(input.clone(), &a.job, Vec::new());
        let engine = JobConfig::new(input);
        assert_eq!(format!("{from_flags:?}"), format!("{engine:?}"));
        // And the read-only commands pace as a job does unless told otherwise.
        let cli = crate::commands::Cli::try_parse_from(["simbulk", "export"]).unwrap();
        let crate::commands::Command::Export(e) = cli.command else {
            panic!("not an export");
        };
        assert_eq!(e.reads.pacing.pacing(), engine.pacing);
    }

    #[test]
    fn until_is_within_a_day() {
        let d = parse_until("00:00").unwrap().time_left();
        assert!(d <= Duration::from_secs(24 * 3600 + 3600));
        assert!(parse_until("23:59:59").is_ok());
        assert!(parse_until("24:00").is_err());
        assert!(parse_until("12:00:60").is_err());
        assert!(parse_until("5").is_err());
        assert!(parse_until("1:2:3:4").is_err());
    }

    #[test]
    fn a_window_is_open_between_its_times_across_midnight_too() {
        let w = parse_window("22:00-04:00").unwrap();
        assert_eq!((w.start.hour, w.end.hour), (22, 4));
        assert!(parse_window("05:00-05:00").is_err());
        assert!(parse_window("05:00").is_err());
        // A window that opened a minute ago and closes in an hour is open; its complement
        // is closed.
        let now = jiff::Zoned::now();
        let t = |z: jiff::Zoned| Until {
            hour: z.hour(),
            minute: z.minute(),
            second: z.second(),
        };
        let ago = t(now
            .checked_sub(jiff::SignedDuration::from_secs(60))
            .unwrap());
        let later = t(now
            .checked_add(jiff::SignedDuration::from_secs(3600))
            .unwrap());
        assert!(
            Window {
                start: ago,
                end: later
            }
            .open()
        );
        assert!(
            !Window {
                start: later,
                end: ago
            }
            .open()
        );
    }
}
