//! `simbulk bench`: measures the engine against a simulator and prints rows/s, latency
//! percentiles, retries, 429s, peak memory and CPU time per row.
//!
//! The simulator runs in its own process by default (`simbulk sim`, started here and
//! stopped at the end), so the CPU time and memory reported are the engine's alone;
//! `--in-process` runs it inside this process instead.

use std::io::{BufRead, BufReader, Write};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{self, Header, JobIdentity, Journal};
use crate::engine::provider::Pacing;
use crate::engine::{self, JobConfig, ResumeMode};
use crate::exit;
use crate::output::Summary;
use crate::output::row::Verdict;
use crate::sim::seed::{self, Profile};
use crate::sim::{FaultConfig, SimConfig, SimServer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mix {
    /// `activate` on active SIMs: every call is the same no-op PATCH (compare with wrk/oha).
    Noop,
    /// Suspend, unsuspend and set-attribute rows cycling over active SIMs: real changes.
    Mixed,
    /// Rows whose ICCIDs fail validation, each a different one: no call, every row invalid
    /// (measures that memory does not grow with the invalid rows).
    Invalid,
    /// `suspend` then `unsuspend` passes over active SIMs: one PATCH that changes the SIM per
    /// row (the throughput targets' job).
    Toggle,
    /// `activate` on available SIMs: one change per row.
    Activate,
    /// `set-attribute` of a name the SIMs do not have: one create per row.
    Tag,
    /// `set-attribute` of `friendlyName` (which the SIMs have) to a new value: updates.
    Retag,
    /// `delete-attribute` of `friendlyName`, which the SIMs have.
    Untag,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Rows in the generated job.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) rows: u64,
    /// Keep the job's metrics in this file, as `run --metrics-file` does (to measure its cost).
    #[arg(long, value_name = "PATH")]
    pub(crate) metrics_file: Option<PathBuf>,
    /// The job's actions.
    #[arg(long, value_enum, default_value_t = Mix::Noop)]
    pub(crate) mix: Mix,
    /// Engine concurrency.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Engine rate limit (requests per second); 0 = none.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) rate: f64,
    /// Engine burst [default: as `simbulk run`, 1 % of the rate].
    #[arg(long)]
    pub(crate) burst: Option<u32>,
    /// Seeded SIMs in the simulator.
    #[arg(long, default_value_t = 50_000)]
    pub(crate) sims: usize,
    /// Latency the simulator adds to every call.
    #[arg(long, default_value = "0ms", value_parser = crate::clock::parse_duration)]
    pub(crate) sim_latency: Duration,
    /// The simulator's rate limit per second (0 = none) and burst.
    #[arg(long, default_value_t = 0)]
    pub(crate) sim_rate_limit: u32,
    #[arg(long, default_value_t = 20)]
    pub(crate) sim_burst: u32,
    /// Run the simulator inside this process (CPU and memory then include it).
    #[arg(long, conflicts_with = "sim_url")]
    pub(crate) in_process: bool,
    /// Use a simulator that is already running (e.g. `simbulk sim --rate-limit 0`), so a load
    /// generator and simbulk can be measured against the same server back to back.
    #[arg(long)]
    pub(crate) sim_url: Option<String>,
    /// Keep --rate fixed on 429s (no AIMD), to compare.
    #[arg(long)]
    pub(crate) fixed_rate: bool,
    /// Send results, failures and checkpoint to /dev/null (to measure what durability costs).
    #[arg(long)]
    pub(crate) discard_outputs: bool,
    /// Write a checkpoint saying this many rows are done, then resume (measures resume start-up).
    #[arg(long)]
    pub(crate) resume_from: Option<u64>,
    /// Where to write the job's files [default: a temporary directory].
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
}

/// The generated job's header.
const INPUT_HEADER: &str = "iccid,action,attribute,value";

/// The SIMs a mix's rows cycle over.
fn targets(a: &BenchArgs) -> Vec<String> {
    seed::iter(1, a.sims)
        .filter(|(_, r, p)| {
            let acme = r.sim.portfolio_id.starts_with("pf-acme");
            let named = r.attributes.iter().any(|x| x.name == "friendlyName");
            acme && match a.mix {
                Mix::Activate => *p == Profile::Available,
                Mix::Retag | Mix::Untag => *p == Profile::Active && named,
                _ => *p == Profile::Active,
            }
        })
        .map(|(_, r, _)| r.sim.icc_id)
        .collect()
}

fn generate(path: &Path, a: &BenchArgs) -> std::io::Result<()> {
    let active = targets(a);
    if active.is_empty() {
        return Err(std::io::Error::other(
            "no seeded SIM fits this mix; raise --sims",
        ));
    }
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(f, "{INPUT_HEADER}")?;
    let n = active.len() as u64;
    for i in 0..a.rows {
        let icc = &active[(i % n) as usize];
        match a.mix {
            Mix::Noop => writeln!(f, "{icc},activate,,")?,
            Mix::Mixed => match (i / n) % 3 {
                0 => writeln!(f, "{icc},suspend,,")?,
                1 => writeln!(f, "{icc},unsuspend,,")?,
                _ => writeln!(f, "{icc},set-attribute,bench,v{}", i / n)?,
            },
            Mix::Toggle if (i / n).is_multiple_of(2) => writeln!(f, "{icc},suspend,,")?,
            Mix::Toggle => writeln!(f, "{icc},unsuspend,,")?,
            Mix::Activate => writeln!(f, "{icc},activate,,")?,
            Mix::Tag => writeln!(f, "{icc},set-attribute,bench{},v", i / n)?,
            Mix::Retag => writeln!(f, "{icc},set-attribute,friendlyName,r{i}")?,
            Mix::Untag => writeln!(f, "{icc},delete-attribute,friendlyName,")?,
            // 19 digits that fail the Luhn check, each one different.
            Mix::Invalid => {
                let body = format!("894450{i:012}");
                let bad = (crate::input::iccid::luhn_check_digit(&body) + 1) % 10;
                writeln!(f, "{body}{bad},activate,,")?
            }
        }
    }
    f.flush()
}

/// A checkpoint that says lines `2..=k+1` are done, consistent with header-only outputs.
fn fake_checkpoint(input: &Path, k: u64) -> anyhow::Result<()> {
    let (sha, bytes, _) = checkpoint::digest_file(input)?;
    let (results, failures, cp) = engine::default_paths(input);
    // The header rows a fresh run writes: the results' columns, and the input's own header.
    let results_head = format!("{}\n", crate::output::results::RESULT_COLUMNS.join(","));
    let failures_head = format!("{INPUT_HEADER}\n");
    std::fs::write(&results, &results_head)?;
    std::fs::write(&failures, &failures_head)?;
    let (r_head, f_head) = (results_head.len(), failures_head.len());
    let header = Header {
        job: JobIdentity {
            input_sha256: sha,
            input_bytes: bytes,
            action: None,
            value: None,
            attribute: None,
            preview: false,
        },
        results,
        failures,
        created: "bench".into(),
        input: None,
        change_ref: None,
        operator: None,
        version: None,
        apply_again: None,
    };
    let mut j = Journal::create(&cp, &header)?;
    j.start(r_head as u64, f_head as u64);
    for line in 2..k + 2 {
        j.row(line, Verdict::Ok, r_head as u64, f_head as u64);
        if j.pending() > 1 << 20 {
            j.flush()?;
        }
    }
    j.flush()?;
    Ok(())
}

struct ExternalSim(Child);

impl Drop for ExternalSim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sim_config(a: &BenchArgs) -> SimConfig {
    SimConfig {
        sims: a.sims,
        rate_limit_per_second: a.sim_rate_limit,
        rate_limit_burst: a.sim_burst,
        faults: FaultConfig {
            latency: a.sim_latency,
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(a.sims)
    }
}

fn start_external(a: &BenchArgs) -> anyhow::Result<(ExternalSim, String)> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args([
            "sim",
            "--addr",
            "127.0.0.1:0",
            "--token-per-minute",
            "0",
            "--token-ttl",
            "24h",
        ])
        .args([
            "--sims",
            &a.sims.to_string(),
            "--rate-limit",
            &a.sim_rate_limit.to_string(),
            "--rate-burst",
            &a.sim_burst.to_string(),
        ])
        .args(["--latency", &format!("{}ms", a.sim_latency.as_millis())])
        .arg("-q")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout from the simulator"))?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    Ok((ExternalSim(child), line.trim().to_owned()))
}

/// This process's peak resident memory (`VmHWM`: the program's own, not what a fork
/// inherited), in KiB.
pub(crate) fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn peak_rss_mib() -> Option<f64> {
    peak_rss_kib().map(|k| k as f64 / 1024.0)
}

/// The process's CPU time so far (user and system), in seconds, as `bench` counts it.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass and reads nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// A line to standard output, quiet if it is closed.
macro_rules! say {
    ($($t:tt)*) => {
        crate::output::stdout::print(&format!("{}\n", format_args!($($t)*)))
    };
}

/// `simbulk bench`.
pub(crate) async fn run(a: BenchArgs) -> super::error::Outcome {
    bench(a).await?;
    Ok(exit::OK)
}

async fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let tmp = tempfile_dir(a.dir.as_deref())?;
    let input = tmp.join("bench.csv");
    let t = Instant::now();
    generate(&input, &a)?;
    eprintln!(
        "generated {} rows ({:?} mix) in {:.1}s",
        a.rows,
        a.mix,
        t.elapsed().as_secs_f64()
    );
    let (_external, in_process, url) = if let Some(u) = &a.sim_url {
        (None, None, u.trim_end_matches('/').to_owned())
    } else if a.in_process {
        let s = SimServer::start(sim_config(&a)).await?;
        let url = s.base_url();
        (None, Some(s), url)
    } else {
        let (c, url) = start_external(&a)?;
        (Some(c), None, url)
    };
    let cfg = job(&a, &input)?;
    let endpoint = super::demo::simulator_endpoint(&url, Duration::from_secs(30))?;
    let cpu0 = cpu_seconds();
    let (drain, abort) = (CancellationToken::new(), CancellationToken::new());
    let s = tokio::spawn(engine::run(cfg, endpoint, drain, abort))
        .await?
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    let cpu = cpu_seconds() - cpu0;
    let stats: Option<crate::sim::StatsReport> = match &in_process {
        Some(srv) => Some(srv.stats()),
        None => crate::api::tls::plain_client()?
            .build()?
            .get(format!("{url}/__sim/stats"))
            .send()
            .await?
            .json()
            .await
            .ok(),
    };
    print_results(&a, &s, cpu, stats.as_ref());
    if let Some(srv) = in_process {
        srv.stop().await?;
    }
    if a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

/// The measured job: as `simbulk run` would run it with the bench's flags.
fn job(a: &BenchArgs, input: &Path) -> anyhow::Result<JobConfig> {
    let resume = match a.resume_from {
        Some(k) => {
            fake_checkpoint(input, k)?;
            ResumeMode::Resume
        }
        None => ResumeMode::Restart,
    };
    let rate = (a.rate > 0.0).then_some(a.rate);
    Ok(JobConfig {
        resume,
        concurrency: a.concurrency.max(1),
        pacing: Pacing {
            burst: a
                .burst
                .and_then(NonZeroU32::new)
                .unwrap_or_else(|| crate::api::pace::default_burst(rate)),
            adaptive: !a.fixed_rate,
            ..Pacing::alone(rate)
        },
        halt_after_same_error: None,
        confirm_over: None,
        args: vec!["simbulk".into(), "bench".into()],
        discard_outputs: a.discard_outputs,
        metrics_file: a.metrics_file.clone(),
        ..JobConfig::new(input.to_owned())
    })
}

fn print_results(a: &BenchArgs, s: &Summary, cpu: f64, stats: Option<&crate::sim::StatsReport>) {
    let rows = s.this_run.total().max(1);
    let rate = if a.rate > 0.0 {
        a.rate.to_string()
    } else {
        "unlimited".into()
    };
    let (sim, cpu_of) = if a.in_process {
        ("in process", ", simulator included")
    } else {
        ("in its own process", ", engine only")
    };
    say!(
        "simbulk bench: {rows} rows, mix {:?}, concurrency {}, rate {rate}, simulator {sim} (latency {:?}, limit {}/s burst {})",
        a.mix,
        a.concurrency,
        a.sim_latency,
        a.sim_rate_limit,
        a.sim_burst
    );
    say!("  outcomes:     {}", s.this_run.text(" "));
    say!(
        "  throughput:   {:.0} rows/s over {:.2}s ({} requests)",
        s.rows_per_second,
        s.elapsed_seconds,
        s.requests
    );
    for (what, l) in [
        ("row time:    ", s.row_time_ms),
        ("API answers: ", s.api_latency_ms),
    ] {
        if let Some(l) = l {
            say!(
                "  {what} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                l.p50,
                l.p99,
                l.max
            );
        }
    }
    say!("  retries:      {}, 429s: {}", s.retries, s.throttled_429);
    let c = &s.calls;
    say!(
        "  calls:        {:.3} per row ({} writes, {} reads, {} list calls)",
        c.per_row,
        c.writes,
        c.reads,
        c.lists
    );
    say!(
        "  cpu:          {:.1} µs per row ({cpu:.2}s{cpu_of})",
        cpu * 1e6 / rows as f64
    );
    if let Some(m) = peak_rss_mib() {
        say!("  peak rss:     {m:.1} MiB");
    }
    if let Some(f) = s.first_request_after_seconds {
        say!("  first request after {:.3}s", f);
    }
    if let Some(st) = stats {
        let window: Vec<u64> = st.per_second.iter().copied().filter(|&n| n > 0).collect();
        let steady = match window.len() {
            n if n > 2 => &window[1..n - 1],
            _ => &window[..],
        };
        let mean = steady.iter().sum::<u64>() as f64 / steady.len().max(1) as f64;
        say!(
            "  server:       peak {} req/s in any second, steady mean {:.1} req/s, {} × 429 sent",
            st.peak_per_second,
            mean,
            st.too_many_requests
        );
    }
}

fn tempfile_dir(dir: Option<&Path>) -> std::io::Result<PathBuf> {
    let d = match dir {
        Some(d) => d.to_owned(),
        None => std::env::temp_dir().join(format!("simbulk-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
