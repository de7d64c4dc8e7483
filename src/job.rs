//! `simbulk run`: turns the command line into a typed job, runs it, prints the summary and
//! chooses the exit code.
//!
//! Guarantees: the client secret is read from `SIMBULK_CLIENT_SECRET` or
//! `--client-secret-file` into a `SecretString` and goes nowhere else.

use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::api::{Endpoint, check_url};
use crate::cli::RunArgs;
use crate::engine::{self, Fatal, JobConfig, ResumeMode, RetryPolicy, Threshold};
use crate::exit;
use crate::input::Defaults;
use crate::output::Summary;

/// Time from now until the next local `HH:MM` (or `HH:MM:SS`).
pub fn until_next(hhmm: &str) -> Result<Duration, String> {
    let bad = || format!("--until {hhmm:?}: give a local time as HH:MM, e.g. 05:30");
    let parts: Vec<&str> = hhmm.trim().split(':').collect();
    let num = |s: &str| -> Result<i8, String> {
        if s.is_empty() || s.len() > 2 {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (h, m, sec) = match parts.as_slice() {
        [h, m] => (num(h)?, num(m)?, 0),
        [h, m, s] => (num(h)?, num(m)?, num(s)?),
        _ => return Err(bad()),
    };
    if !(0..24).contains(&h) || !(0..60).contains(&m) || !(0..60).contains(&sec) {
        return Err(bad());
    }
    let now = jiff::Zoned::now();
    let mut at = now
        .with()
        .hour(h)
        .minute(m)
        .second(sec)
        .subsec_nanosecond(0)
        .build()
        .map_err(|e| format!("--until: {e}"))?;
    if at <= now {
        at = at.tomorrow().map_err(|e| format!("--until: {e}"))?;
    }
    let d = now.duration_until(&at);
    Ok(Duration::try_from(d).unwrap_or(Duration::ZERO))
}

/// Longest secret file read.
const MAX_SECRET_FILE: u64 = 64 << 10;

fn read_secret(file: Option<&Path>) -> Result<SecretString, String> {
    if let Some(p) = file {
        let bytes = crate::files::read_regular(p, "--client-secret-file", MAX_SECRET_FILE)?;
        if crate::files::readable_by_others(p) {
            tracing::warn!(
                "--client-secret-file {} can be read by other users; `chmod 600` it",
                p.display()
            );
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("--client-secret-file {} is not UTF-8 text", p.display()))?;
        let first = text.lines().next().unwrap_or("").trim().to_owned();
        if first.is_empty() {
            return Err(format!("--client-secret-file {} is empty", p.display()));
        }
        return Ok(SecretString::from(first));
    }
    match std::env::var("SIMBULK_CLIENT_SECRET") {
        Ok(s) if !s.is_empty() => Ok(SecretString::from(s)),
        _ => Err("no client secret: set SIMBULK_CLIENT_SECRET or pass --client-secret-file".into()),
    }
}

/// The API endpoint the connection flags describe, with the secret read in.
pub fn endpoint(c: &crate::cli::ConnectionArgs, timeout: Duration) -> Result<Endpoint, String> {
    let base = c
        .base_url
        .as_deref()
        .ok_or("no API address: pass --base-url or set SIMBULK_BASE_URL")?;
    let base_url = check_url("--base-url", base)?;
    let token_url = match &c.token_url {
        Some(t) => check_url("--token-url", t)?,
        None => check_url(
            "--token-url",
            &format!("{}/oauth2/token", base.trim_end_matches('/')),
        )?,
    };
    let client_id = c
        .client_id
        .clone()
        .ok_or("no client id: set SIMBULK_CLIENT_ID or pass --client-id")?;
    let client_secret = read_secret(c.client_secret_file.as_deref())?;
    Ok(Endpoint {
        base_url,
        token_url,
        client_id,
        client_secret,
        timeout,
        ca_bundle: c.ca_bundle.clone(),
    })
}

/// Builds the job and the endpoint from the flags.
pub fn configure(a: &RunArgs, args: Vec<String>) -> Result<(JobConfig, Option<Endpoint>), String> {
    let until = a.until.as_deref().map(until_next).transpose()?;
    let max_failures = a
        .max_failures
        .as_deref()
        .map(Threshold::parse)
        .transpose()?;
    let base = JobConfig::new(a.input.clone());
    let cfg = JobConfig {
        defaults: Defaults {
            action: a.action.clone(),
            value: a.value.clone(),
            attribute: a.attribute.clone(),
        },
        results: a.results.clone().unwrap_or(base.results.clone()),
        failures: a.failures.clone().unwrap_or(base.failures.clone()),
        checkpoint: a.checkpoint.clone().unwrap_or(base.checkpoint.clone()),
        resume: if a.resume {
            ResumeMode::Resume
        } else if a.restart {
            ResumeMode::Restart
        } else {
            ResumeMode::Refuse
        },
        concurrency: a.concurrency.get(),
        rate: a.rate.0,
        burst: a
            .burst
            .and_then(std::num::NonZeroU32::new)
            .unwrap_or_else(|| crate::api::pace::default_burst(a.rate.0)),
        retry: RetryPolicy::new(a.max_retries),
        max_duration: a.max_duration,
        until,
        max_failures,
        adaptive_rate: !a.fixed_rate,
        wait_active: a.wait_active,
        halt_after_same_error: (a.halt_after_same_error > 0).then_some(a.halt_after_same_error),
        stall_timeout: if a.stall_timeout.is_zero() {
            Duration::MAX
        } else {
            a.stall_timeout
        },
        summary_json: a.summary_json.clone(),
        args,
        ..base
    };
    if a.dry_run && !a.check {
        return Ok((cfg, None));
    }
    Ok((cfg, Some(endpoint(&a.connection, a.timeout)?)))
}

/// Prints a summary (the engine wrote `--summary-json` already) and returns the exit code.
/// With `--summary-json -` the JSON goes to standard output and the text to standard error.
pub fn report(s: &Summary, json: Option<&Path>) -> u8 {
    if json.is_some_and(crate::engine::setup::is_stdout) {
        eprint!("{}", s.to_text());
        let json = serde_json::to_string_pretty(s).unwrap_or_default();
        crate::output::stdout::print(&format!("{json}\n"));
    } else {
        crate::output::stdout::print(&s.to_text());
    }
    s.exit_code
}

/// `simbulk run`.
pub async fn run_command(a: RunArgs) -> u8 {
    // An argument need not be UTF-8 (a file name); the resume line shows it as best it can.
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (cfg, endpoint) = match configure(&a, args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    if a.check {
        let Some(endpoint) = endpoint else {
            return exit::USAGE;
        };
        let stem = a
            .input
            .file_stem()
            .map_or_else(|| "job".into(), |s| s.to_string_lossy().into_owned());
        let out = a
            .input
            .parent()
            .unwrap_or(Path::new(""))
            .join(format!("{stem}.preview.csv"));
        return match crate::preview::preview(
            &a.input,
            &cfg.defaults,
            &out,
            endpoint,
            cfg.rate,
            cfg.concurrency,
        )
        .await
        {
            Ok((text, code)) => {
                crate::output::stdout::print(&text);
                code
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::USAGE
            }
        };
    }
    let Some(endpoint) = endpoint else {
        return match engine::dry_run(&cfg.input, &cfg.defaults) {
            Ok((text, code)) => {
                crate::output::stdout::print(&text);
                code
            }
            Err(Fatal { code, message }) => {
                eprintln!("error: {message}");
                code
            }
        };
    };
    let (drain, abort) = (CancellationToken::new(), CancellationToken::new());
    crate::signal::escalate(drain.clone(), abort.clone());
    // On a worker thread, the dispatcher and the workers wake each other without crossing
    // into the runtime's blocking entry thread.
    let job = tokio::spawn(engine::run(cfg, endpoint, drain, abort));
    match job.await {
        Ok(Ok(s)) => report(&s, a.summary_json.as_deref()),
        Ok(Err(Fatal { code, message })) => {
            eprintln!("error: {message}");
            code
        }
        Err(e) => {
            eprintln!("error: the job stopped unexpectedly: {e}");
            exit::HALTED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_is_within_a_day() {
        let d = until_next("00:00").unwrap();
        assert!(d <= Duration::from_secs(24 * 3600 + 3600));
        assert!(until_next("23:59:59").is_ok());
        assert!(until_next("24:00").is_err());
        assert!(until_next("12:00:60").is_err());
        assert!(until_next("5").is_err());
        assert!(until_next("1:2:3:4").is_err());
    }
}
