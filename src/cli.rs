//! Command-line surface: clap types, and their conversion into validated configurations.
//!
//! Guarantees: the client secret is never a flag value (it comes from the environment or a
//! file); `http://` is accepted for loopback hosts only; every other value reaches the
//! engine typed (durations, non-zero limits, URLs).

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit;

#[derive(Debug, Parser)]
#[command(
    name = "simbulk",
    version,
    about = "Apply bulk changes to IoT SIM cards through a provider's SIM API: fast, safe, resumable, auditable.",
    after_help = exit::TABLE
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Less output: warnings and errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More output (-v debug, -vv trace). RUST_LOG, when set, wins.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a bulk job: apply every row of INPUT through the SIM API.
    #[command(after_help = exit::TABLE, args_override_self = true)]
    Run(Box<RunArgs>),
    /// Run sample jobs against an embedded simulator, to see simbulk at work.
    Demo(DemoArgs),
    /// Serve the SIM API simulator (for rehearsals, tests and benchmarks).
    Sim(Box<SimArgs>),
    /// Measure the engine against a simulator (rows/s, latency, memory, CPU per row).
    Bench(Box<crate::bench::BenchArgs>),
    /// Summarise a results file: outcomes, errors, throughput over time (text, or --html).
    Report(crate::report::ReportArgs),
    /// List SIMs (with filters) to a CSV that `simbulk run` can take as input.
    Export(Box<crate::export::ExportArgs>),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
}

/// A requests-per-second limit, or no limit (`0` or `unlimited`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(pub Option<f64>);

/// Slowest rate accepted: one request an hour.
pub const MIN_RATE: f64 = 1.0 / 3600.0;
/// Fastest rate accepted (requests per second).
pub const MAX_RATE: f64 = 1_000_000.0;

pub fn parse_rate(s: &str) -> Result<Rate, String> {
    if s.eq_ignore_ascii_case("unlimited") {
        return Ok(Rate(None));
    }
    match s.parse::<f64>() {
        Ok(0.0) => Ok(Rate(None)),
        Ok(r) if (MIN_RATE..=MAX_RATE).contains(&r) => Ok(Rate(Some(r))),
        Ok(r) if r.is_finite() && r > 0.0 => Err(format!(
            "{s:?} is outside the rates simbulk takes: from one request an hour (0.0003) to {MAX_RATE} a second; 0 or unlimited for no limit"
        )),
        _ => Err(format!(
            "{s:?} is not a rate; give requests per second (e.g. 10 or 0.5), or 0 / unlimited for no limit"
        )),
    }
}

/// Longest duration accepted (a hundred years: past it, instants overflow).
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}); write e.g. 30s, 500ms, 2m, 1h30m"))?;
    if d > MAX_DURATION {
        return Err(format!("{s:?} is longer than a hundred years"));
    }
    Ok(d)
}

/// `--timeout`: from 100 ms to an hour.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err(format!(
            "{s:?}: a request timeout is from 100ms to 1h (e.g. 30s)"
        ));
    }
    Ok(d)
}

/// Most rows in flight.
pub const MAX_CONCURRENCY: usize = 10_000;

/// `--concurrency`: from 1 to [`MAX_CONCURRENCY`].
pub fn parse_concurrency(s: &str) -> Result<NonZeroUsize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_CONCURRENCY).contains(n))
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| {
            format!("{s:?}: --concurrency is a whole number from 1 to {MAX_CONCURRENCY}")
        })
}

/// How to reach the API; shared by the commands that call it.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// Base URL of the SIM API, e.g. https://sim.api.example.com (http:// only for loopback).
    #[arg(long, env = "SIMBULK_BASE_URL", help_heading = "Connection")]
    pub base_url: Option<String>,

    /// OAuth2 token endpoint [default: <base-url>/oauth2/token].
    #[arg(long, env = "SIMBULK_TOKEN_URL", help_heading = "Connection")]
    pub token_url: Option<String>,

    /// OAuth2 client id. The secret comes from SIMBULK_CLIENT_SECRET or --client-secret-file,
    /// never from a flag.
    #[arg(long, env = "SIMBULK_CLIENT_ID", help_heading = "Connection")]
    pub client_id: Option<String>,

    /// File holding the OAuth2 client secret (first line), instead of SIMBULK_CLIENT_SECRET.
    #[arg(long, help_heading = "Connection")]
    pub client_secret_file: Option<PathBuf>,

    /// Extra CA certificate bundle (PEM) to trust, for providers behind a private CA.
    #[arg(long, help_heading = "Connection")]
    pub ca_bundle: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job: a CSV with an iccid column and usually action, value, attribute columns
    /// (other columns are carried to the results), or a plain list of ICCIDs with --action.
    pub input: PathBuf,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Results CSV: one row per input row [default: <input stem>.results.csv beside the input].
    #[arg(long, help_heading = "Outputs")]
    pub results: Option<PathBuf>,

    /// Failures CSV: failed and invalid rows in the input's own columns, ready to re-run
    /// [default: <input stem>.failures.csv].
    #[arg(long, help_heading = "Outputs")]
    pub failures: Option<PathBuf>,

    /// Checkpoint journal that makes the job resumable [default: <input stem>.checkpoint].
    #[arg(long, help_heading = "Outputs")]
    pub checkpoint: Option<PathBuf>,

    /// Write the final summary as JSON to this file (for monitoring).
    #[arg(long, help_heading = "Outputs")]
    pub summary_json: Option<PathBuf>,

    /// Continue from the checkpoint if there is one (start fresh if there is none), so a
    /// nightly cron line can always say --resume.
    #[arg(long, conflicts_with = "restart", help_heading = "Resume")]
    pub resume: bool,

    /// Discard an existing checkpoint and its results and start the job again.
    #[arg(long, help_heading = "Resume")]
    pub restart: bool,

    /// Stop gracefully at this local time (HH:MM or HH:MM:SS, the next occurrence, in the
    /// machine's time zone or TZ); no request starts after it; exit 75, resumable.
    #[arg(long, value_name = "HH:MM", help_heading = "Resume")]
    pub until: Option<String>,

    /// Stop gracefully after this long (e.g. 4h30m); exit 75, resumable.
    #[arg(long, value_parser = parse_duration, help_heading = "Resume")]
    pub max_duration: Option<Duration>,

    /// Rows in flight at once (1 to 10000).
    #[arg(long, default_value = "8", value_parser = parse_concurrency, help_heading = "Pacing")]
    pub concurrency: NonZeroUsize,

    /// Requests per second across all workers, retries and token requests included; set it
    /// at or below the provider's limit. 0 or `unlimited` = no client-side limit.
    #[arg(long, default_value = "10", value_parser = parse_rate, help_heading = "Pacing")]
    pub rate: Rate,

    /// Requests that may go at once above the steady rate [default: 1 % of --rate, at least 1].
    /// The small default lets the pacer catch up on timer jitter, so the achieved rate sits on
    /// --rate; no one-second window exceeds --rate + --burst.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000), help_heading = "Pacing")]
    pub burst: Option<u32>,

    /// Keep --rate fixed when the provider answers 429, instead of lowering it and climbing
    /// back (AIMD). Every 429 still pauses all workers until its Retry-After.
    #[arg(long, help_heading = "Pacing")]
    pub fixed_rate: bool,

    /// Retries per row after the first attempt, for 5xx, timeouts and connection errors
    /// (0 to 1000).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(0..=1000), help_heading = "Pacing")]
    pub max_retries: u32,

    /// Timeout of one HTTP request (100ms to 1h).
    #[arg(long, default_value = "30s", value_parser = parse_timeout, help_heading = "Pacing")]
    pub timeout: Duration,

    /// Halt (exit 3, resumable) when no row has finished for this long and every answer was a
    /// 429, a 5xx or no answer at all: a provider that does not recover. 0s: never.
    #[arg(long, default_value = "15m", value_parser = parse_duration, help_heading = "Pacing")]
    pub stall_timeout: Duration,

    /// Stop the job (exit 3, resumable) once failed rows pass N, or P% of finished rows
    /// (e.g. 500 or 5%).
    #[arg(long, help_heading = "Pacing")]
    pub max_failures: Option<String>,

    /// Halt (exit 3, resumable) when this many rows in a row fail with the same error, as a
    /// wrong package or portfolio id would make every row fail; 0 turns it off. Single
    /// failures (one suspended SIM) never halt.
    #[arg(long, default_value_t = 25, value_name = "K", help_heading = "Pacing")]
    pub halt_after_same_error: u32,

    /// Action for rows whose action cell is empty (required for a plain list of ICCIDs).
    #[arg(long, help_heading = "Row defaults")]
    pub action: Option<String>,

    /// Value for rows whose value cell is empty (package id, portfolio id, attribute value).
    #[arg(long, help_heading = "Row defaults")]
    pub value: Option<String>,

    /// Attribute name for rows whose attribute cell is empty.
    #[arg(long, help_heading = "Row defaults")]
    pub attribute: Option<String>,

    /// Read and validate the whole file, print counts per action and every invalid row,
    /// and send nothing. Exit 0 when every row is valid, 1 otherwise.
    #[arg(long)]
    pub dry_run: bool,

    /// With --dry-run: also read each SIM (read-only, paced) and predict each row's outcome
    /// from its live state into <input stem>.preview.csv. No change is sent.
    #[arg(long, requires = "dry_run")]
    pub check: bool,

    /// After an activation answers pendingProvision, poll the SIM (paced, backing off) until
    /// it is active or this long has passed; the results show the final status.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub wait_active: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo writes its results, failures and checkpoint files.
    #[arg(long, default_value = "simbulk-demo")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port. The address is printed on stdout's
    /// first line.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Seed for the SIMs and for every random fault decision.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Number of seeded SIMs (at most ten million).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub sims: u64,

    /// Requests per second per client over /api/v2 (0 = no limit).
    #[arg(long, default_value_t = 10, help_heading = "Limits")]
    pub rate_limit: u32,

    /// Burst of the per-client token bucket.
    #[arg(long, default_value_t = 20, help_heading = "Limits")]
    pub rate_burst: u32,

    /// Token requests per minute per client (0 = no limit).
    #[arg(long, default_value_t = 30, help_heading = "Limits")]
    pub token_per_minute: u32,

    /// Send 429s without a Retry-After header.
    #[arg(long, help_heading = "Limits")]
    pub no_retry_after: bool,

    /// Send Retry-After as an HTTP date instead of whole seconds.
    #[arg(long, help_heading = "Limits")]
    pub retry_after_date: bool,

    /// Token lifetime.
    #[arg(long, default_value = "1h", value_parser = parse_duration, help_heading = "Limits")]
    pub token_ttl: Duration,

    /// Answer 200 (not 400 / 6047) to a PATCH that changes nothing.
    #[arg(long, help_heading = "Behaviour")]
    pub lenient_no_op: bool,

    /// Activations answer pendingProvision and become active after this delay.
    #[arg(long, default_value = "0s", value_parser = parse_duration, help_heading = "Behaviour")]
    pub activation_delay: Duration,

    /// After a suspend, unsuspending is refused (6046) for this long.
    #[arg(long, default_value = "0s", value_parser = parse_duration, help_heading = "Behaviour")]
    pub suspend_settle: Duration,

    /// Allow attribute writes on suspended SIMs (refused with 16000 by default).
    #[arg(long, help_heading = "Behaviour")]
    pub attribute_writes_on_suspended: bool,

    /// Demo client id.
    #[arg(long, default_value = crate::sim::DEMO_CLIENT_ID, help_heading = "Clients")]
    pub client_id: String,

    /// Demo client secret (a simulator credential; printed on start-up).
    #[arg(long, default_value = crate::sim::DEMO_CLIENT_SECRET, help_heading = "Clients")]
    pub client_secret: String,

    /// Another client, as ID:SECRET:PORTFOLIO[:PERMISSION,…] (repeatable).
    #[arg(long = "client", help_heading = "Clients")]
    pub clients: Vec<String>,

    /// Latency added to every /api/v2 response.
    #[arg(long, default_value = "0ms", value_parser = parse_duration, help_heading = "Faults")]
    pub latency: Duration,

    /// Random extra latency, uniform in [0, spread).
    #[arg(long, default_value = "0ms", value_parser = parse_duration, help_heading = "Faults")]
    pub latency_spread: Duration,

    /// Share of requests answered 500.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub http500: f64,
    /// Share of requests answered 502 (HTML body, like a gateway).
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub http502: f64,
    /// Share of requests answered 503.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub http503: f64,
    /// Share of requests answered 504 (HTML body).
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub http504: f64,

    /// Share of requests whose connection is closed without a response, before any change.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub drop: f64,

    /// Share of writes that are applied and then answered 503 or dropped.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub apply_then_fail: f64,

    /// How apply-then-fail answers: mixed, status (503) or drop.
    #[arg(long, default_value = "mixed", help_heading = "Faults")]
    pub after_apply: String,

    /// Share of requests held for --slow-duration before they are processed.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub slow: f64,

    /// How long a slow request is held.
    #[arg(long, default_value = "30s", value_parser = parse_duration, help_heading = "Faults")]
    pub slow_duration: Duration,

    /// Share of requests after which the caller's tokens are revoked.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub revoke: f64,

    /// Revoke every token at this period.
    #[arg(long, value_parser = parse_duration, help_heading = "Faults")]
    pub revoke_every: Option<Duration>,

    /// Share of token requests answered 503.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub token_failure: f64,

    /// Latency added to every token request (a slow identity provider).
    #[arg(long, default_value = "0ms", value_parser = parse_duration, help_heading = "Faults")]
    pub token_latency: Duration,

    /// Share of /api/v2 requests answered 429 whatever the rate (a throttling provider).
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub http429: f64,

    /// Retry-After, in seconds, of the 429s that --http429 injects.
    #[arg(long, default_value_t = 1, help_heading = "Faults")]
    pub throttle_retry_after: u64,

    /// Keep SIMs, attributes and the ledger in this file across restarts.
    #[arg(long)]
    pub state_file: Option<PathBuf>,

    /// Ledger entries kept in memory (about 430 bytes each); older ones are dropped and counted.
    #[arg(long, default_value_t = 2_000_000)]
    pub ledger_limit: usize,
}

impl SimArgs {
    /// The simulator configuration these flags describe.
    pub fn to_config(&self) -> Result<crate::sim::SimConfig, String> {
        use crate::sim::{AfterApply, ClientConfig, FaultConfig, SimConfig};
        let rates = [
            self.http500,
            self.http502,
            self.http503,
            self.http504,
            self.drop,
            self.apply_then_fail,
            self.slow,
            self.revoke,
            self.token_failure,
            self.http429,
        ];
        if rates.iter().any(|r| !(0.0..=1.0).contains(r)) {
            return Err("fault rates are shares between 0 and 1 (e.g. --http503 0.05)".into());
        }
        let after_apply = match self.after_apply.as_str() {
            "mixed" => AfterApply::Mixed,
            "status" => AfterApply::Status,
            "drop" => AfterApply::Drop,
            other => {
                return Err(format!(
                    "--after-apply {other:?}: use mixed, status or drop"
                ));
            }
        };
        let mut clients = crate::sim::config::default_clients();
        clients[0].id = self.client_id.clone();
        clients[0].secret = self.client_secret.clone();
        for c in &self.clients {
            clients.push(ClientConfig::parse(c)?);
        }
        Ok(SimConfig {
            addr: self.addr,
            seed: self.seed,
            sims: self.sims as usize,
            rate_limit_per_second: self.rate_limit,
            rate_limit_burst: self.rate_burst,
            token_endpoint_per_minute: self.token_per_minute,
            retry_after_header: !self.no_retry_after,
            retry_after_http_date: self.retry_after_date,
            token_ttl: self.token_ttl,
            strict_no_op: !self.lenient_no_op,
            activation_delay: self.activation_delay,
            suspend_settle: self.suspend_settle,
            attribute_writes_on_suspended: self.attribute_writes_on_suspended,
            clients,
            faults: FaultConfig {
                latency: self.latency,
                latency_spread: self.latency_spread,
                http500: self.http500,
                http502: self.http502,
                http503: self.http503,
                http504: self.http504,
                drop: self.drop,
                apply_then_fail: self.apply_then_fail,
                after_apply,
                slow: self.slow,
                slow_duration: self.slow_duration,
                revoke: self.revoke,
                revoke_every: self.revoke_every,
                token_failure: self.token_failure,
                http429: self.http429,
                throttle_retry_after: self.throttle_retry_after,
                token_latency: self.token_latency,
            },
            state_file: self.state_file.clone(),
            ledger_limit: self.ledger_limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn rate_accepts_numbers_zero_and_unlimited() {
        assert_eq!(parse_rate("10"), Ok(Rate(Some(10.0))));
        assert_eq!(parse_rate("0"), Ok(Rate(None)));
        assert_eq!(parse_rate("unlimited"), Ok(Rate(None)));
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn numeric_flags_are_range_checked_with_a_message() {
        assert!(
            parse_rate("1e-20")
                .unwrap_err()
                .contains("one request an hour")
        );
        assert!(parse_rate("1e-9").is_err());
        assert!(parse_rate("nan").is_err() && parse_rate("inf").is_err());
        assert!(parse_concurrency("0").unwrap_err().contains("from 1 to"));
        assert!(parse_concurrency("99999999999999999999").is_err());
        assert!(parse_timeout("0s").is_err() && parse_timeout("2h").is_err());
        assert!(parse_duration("1000000y").is_err());
        for bad in [
            ["--max-retries", "4294967295"],
            ["--burst", "0"],
            ["--concurrency", "0"],
        ] {
            let r = Cli::try_parse_from(["simbulk", "run", "x.csv", bad[0], bad[1]]);
            assert!(r.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn there_is_no_flag_for_the_secret() {
        let r = Cli::try_parse_from(["simbulk", "run", "x.csv", "--client-secret", "s"]);
        assert!(r.is_err());
    }
}
