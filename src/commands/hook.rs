//! `--on-finish COMMAND`: run once when a job ends (completed, stopped, halted, or refused at
//! start), with what happened in its environment.
//!
//! Guarantees: the command runs at most once per run, within `--on-finish-timeout` (then it is
//! killed); its failure is logged and never changes the job's exit code; the environment holds
//! no secret (the job's paths, its state and exit code, the summary's path).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::path::Path;

use clap::Args;

use super::args::parse_duration;
use super::error::CliError;
use crate::output::summary::Summary;

/// `--on-finish` and its time limit.
#[derive(Debug, Clone, Args)]
pub(crate) struct OnFinish {
    /// Run this command (sh -c) once when the job ends, with SIMBULK_EXIT_CODE,
    /// SIMBULK_STATE, SIMBULK_SUMMARY_JSON and the job's paths in its environment; its
    /// failure is logged and never changes the job's exit code.
    #[arg(
        id = "on_finish",
        long = "on-finish",
        value_name = "COMMAND",
        help_heading = "Outputs"
    )]
    pub(crate) command: Option<String>,

    /// Longest time the --on-finish command may take before it is killed.
    #[arg(id = "on_finish_timeout", long = "on-finish-timeout", default_value = "60s", value_parser = parse_duration, help_heading = "Outputs")]
    pub(crate) timeout: Duration,
}

/// How the job ended: its summary, or the error that refused it.
pub(crate) type Ended<'a> = Result<&'a Summary, &'a CliError>;

/// Runs `--on-finish`, if given; `summary_json`: the job's `--summary-json`.
pub(crate) async fn on_finish(f: &OnFinish, summary_json: Option<&Path>, ended: Ended<'_>) {
    let Some(cmd) = &f.command else {
        return;
    };
    let mut c = Command::new("sh");
    c.arg("-c").arg(cmd).stdin(Stdio::null());
    // Its own process group: a time limit stops the command and whatever it started.
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    c.stdout(Stdio::from(std::io::stderr()));
    // Kept until the command has ended.
    let mut _spool = None;
    match ended {
        Ok(s) => {
            let path = match summary_json.filter(|p| !crate::engine::setup::is_stdout(p)) {
                Some(p) => Some(p.to_owned()),
                None => spool(s).map(|t| {
                    let p = t.path().to_owned();
                    _spool = Some(t);
                    p
                }),
            };
            if let Some(p) = path {
                c.env("SIMBULK_SUMMARY_JSON", p);
            }
            c.env("SIMBULK_EXIT_CODE", s.exit_code.to_string())
                .env("SIMBULK_STATE", s.state.name())
                .env("SIMBULK_INPUT", &s.input)
                .env("SIMBULK_RESULTS", &s.results)
                .env("SIMBULK_FAILURES", &s.failures);
            if let Some(r) = &s.change_ref {
                c.env("SIMBULK_CHANGE_REF", r);
            }
        }
        Err(e) => {
            c.env("SIMBULK_EXIT_CODE", e.exit_code().to_string())
                .env("SIMBULK_STATE", "refused")
                .env("SIMBULK_ERROR", e.to_string());
        }
    }
    run(c, f.timeout).await;
}

/// The summary as JSON in a temporary file, for a job without `--summary-json`.
fn spool(s: &Summary) -> Option<tempfile::NamedTempFile> {
    let mut t = tempfile::Builder::new()
        .prefix("simbulk-summary")
        .suffix(".json")
        .tempfile()
        .ok()?;
    serde_json::to_writer_pretty(t.as_file_mut(), s).ok()?;
    Some(t)
}

/// Runs the command to its end, its time limit or a signal (Ctrl-C); says so when it fails.
async fn run(mut c: Command, limit: Duration) {
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => {
            tracing::warn!("--on-finish: cannot start sh: {e}");
            return;
        }
    };
    let started = Instant::now();
    let signalled = tokio_util::sync::CancellationToken::new();
    let listener = {
        let s = signalled.clone();
        tokio::spawn(async move {
            crate::signal::first().await;
            s.cancel();
        })
    };
    let stop = |child: &mut std::process::Child| {
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: signals the hook's own process group, made at spawn.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = child.kill();
        let _ = child.wait();
    };
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => break,
            Ok(Some(st)) => {
                tracing::warn!("--on-finish ended with {st} (the job's exit code stands)");
                break;
            }
            Ok(None) if signalled.is_cancelled() => {
                stop(&mut child);
                tracing::warn!("--on-finish stopped by a signal (the job's exit code stands)");
                break;
            }
            Ok(None) if started.elapsed() >= limit => {
                stop(&mut child);
                tracing::warn!(
                    "--on-finish did not end within {} and was stopped (the job's exit code stands)",
                    crate::clock::duration_text(limit)
                );
                break;
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => {
                tracing::warn!("--on-finish: {e}");
                break;
            }
        }
    }
    listener.abort();
}
