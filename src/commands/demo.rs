//! `simbulk demo`: three real jobs (a shipment activation, a package migration, an attribute
//! tagging) against an embedded simulator with realistic latency, faults, a rate limit the
//! run bumps into, and tokens that expire mid-run; then a fourth against a second provider's
//! simulator (Twilio Super SIM, whose changes settle seconds later).
//!
//! Guarantees: the sample files are generated from the simulator's seed by
//! [`sample_files`], and `samples/` holds exactly that output (a test checks it), so the
//! demo's rows always name real SIMs.

use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::error::{CliError, Outcome};
use crate::api::{Endpoint, check_url};
use crate::engine::provider::Pacing;
use crate::engine::{self, JobConfig, ResumeMode};
use crate::exit;
use crate::input::Defaults;
use crate::input::iccid::with_check_digit;
use crate::output::stdout;
use crate::sim::seed::{self, Profile};
use crate::sim::{FaultConfig, SimConfig, SimServer};

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// The folder the demo writes its jobs, results, failures and checkpoints into.
    #[arg(
        long,
        value_name = "DIR",
        alias = "out",
        default_value = "simbulk-demo"
    )]
    pub(crate) dir: PathBuf,

    /// Keep the simulator up after the jobs (until Ctrl-C) and print the command that re-runs
    /// a failures file against it.
    #[arg(long)]
    pub(crate) keep: bool,
}

/// The demo simulator's seed and size.
pub(crate) const DEMO_SEED: u64 = 1;
pub(crate) const DEMO_SIMS: usize = 5000;

/// One demo job: its file name, contents and the flags it runs with.
pub(crate) struct Sample {
    pub(crate) name: &'static str,
    pub(crate) title: &'static str,
    /// What the job shows, its seeded failures named as such.
    pub(crate) shows: &'static str,
    pub(crate) contents: String,
    pub(crate) action: Option<&'static str>,
    /// The provider whose simulator it runs against.
    pub(crate) api: crate::api::Api,
}

fn in_sphere(pf: &str) -> bool {
    pf.starts_with("pf-acme")
}

/// The sample jobs, generated from the demo seed.
pub(crate) fn sample_files() -> Vec<Sample> {
    let sims: Vec<_> = seed::iter(DEMO_SEED, DEMO_SIMS).collect();
    vec![
        Sample {
            name: "shipment-activation.csv",
            title: "Activate a new shipment (a bare list of ICCIDs)",
            shows: "a supplier's list as it arrives; 2 ICCIDs are mistyped on purpose (a digit dropped, a digit wrong): they become invalid rows and the job goes on",
            contents: shipment(&sims),
            action: Some("activate"),
            api: crate::api::Api::EseyeV2,
        },
        Sample {
            name: "package-migration.csv",
            title: "Migrate EU SIMs to package 20533",
            shows: "most SIMs move; failing on purpose: active and suspended SIMs (the provider refuses a package change on them: 6046, 16000), rows naming a package that does not fit them (16005, 16006), and one ICCID the provider does not know (6002)",
            contents: migration(&sims),
            action: None,
            api: crate::api::Api::EseyeV2,
        },
        Sample {
            name: "attribute-tagging.csv",
            title: "Tag meters with friendly names (semicolon-separated)",
            shows: "attribute writes, creates and deletes, already-done rows skipped; failing on purpose: suspended SIMs take no attribute write (16000), and one row lacks its attribute name (invalid)",
            contents: tagging(&sims),
            action: None,
            api: crate::api::Api::EseyeV2,
        },
        Sample {
            name: "super-sim-fleet.csv",
            title: "The same kind of job on a second provider: Twilio Super SIM",
            shows: "suspend, unsuspend and activate through Super SIM's own API; each change answers `scheduled` and a row is ok only once its SIM shows it (--wait-active); deactivate and set-portfolio have no Super SIM form: invalid rows that say so, before any call",
            contents: super_sim_fleet(&sims),
            action: None,
            api: crate::api::Api::SuperSim,
        },
    ]
}

/// A Super SIM job over the first SIMs of the seed: active ones suspended, suspended ones
/// brought back, never-activated ones activated (those the simulator seeds without a Fleet
/// are left out), and two rows Super SIM has no form for.
fn super_sim_fleet(sims: &[Seeded]) -> String {
    let mut out = String::from("iccid,action,value\n");
    let mine = sims
        .iter()
        .filter(|(i, r, _)| *i < 400 && in_sphere(&r.sim.portfolio_id));
    let (mut suspend, mut unsuspend, mut activate) = (0, 0, 0);
    for (i, r, p) in mine {
        let action = match p {
            Profile::Active if suspend < 12 => {
                suspend += 1;
                "suspend"
            }
            Profile::CustomerSuspended if unsuspend < 6 => {
                unsuspend += 1;
                "unsuspend"
            }
            Profile::Available if activate < 12 && i % 10 != 3 => {
                activate += 1;
                "activate"
            }
            _ => continue,
        };
        let _ = writeln!(out, "{},{action},", r.sim.icc_id);
    }
    let _ = writeln!(out, "{},deactivate,", sims[1].1.sim.icc_id);
    let _ = writeln!(out, "{},set-portfolio,pf-acme-us", sims[2].1.sim.icc_id);
    out
}

type Seeded = (usize, crate::sim::state::SimRecord, Profile);

/// A new shipment: a bare list of ICCIDs, as a supplier sends it, with two typos.
fn shipment(sims: &[Seeded]) -> String {
    let mut out = String::new();
    let available = sims.iter().filter(|(i, r, p)| {
        *i < 2500 && *p == Profile::Available && in_sphere(&r.sim.portfolio_id)
    });
    for (n, (_, r, _)) in available.enumerate() {
        if n == 150 {
            // A digit dropped while copying.
            let _ = writeln!(out, "{}", &r.sim.icc_id[..r.sim.icc_id.len() - 2]);
        }
        if n == 600 {
            let mut bad = r.sim.icc_id.clone().into_bytes();
            bad[10] = if bad[10] == b'9' { b'0' } else { bad[10] + 1 };
            let _ = writeln!(out, "{}", String::from_utf8_lossy(&bad));
        }
        let _ = writeln!(out, "{}", r.sim.icc_id);
    }
    out
}

/// A package migration to 20533 in the EU portfolio: available SIMs move; every tenth active
/// or suspended one is there to hit the rules; a few rows name the wrong package.
fn migration(sims: &[Seeded]) -> String {
    let mut out = String::from("iccid,action,value,customer\n");
    let eu = sims
        .iter()
        .filter(|(i, r, _)| (2500..4000).contains(i) && r.sim.portfolio_id == "pf-acme-eu");
    for (n, (i, r, p)) in eu.enumerate() {
        if *p != Profile::Available && n % 10 != 0 {
            continue;
        }
        let value = match n % 97 {
            13 => "20420",
            41 => "31001",
            _ => "20533",
        };
        let _ = writeln!(
            out,
            "{},set-package,{value},Customer {}",
            r.sim.icc_id,
            i % 37
        );
    }
    let _ = writeln!(
        out,
        "{},set-package,20533,Customer X",
        with_check_digit("894450019999999999")
    );
    out
}

/// Tagging meters with friendly names and removing stale order ids.
fn tagging(sims: &[Seeded]) -> String {
    let mut out = String::from("iccid;action;attribute;value;site\n");
    let tag = sims
        .iter()
        .filter(|(i, r, _)| (4000..5000).contains(i) && in_sphere(&r.sim.portfolio_id));
    for (n, (i, r, _)) in tag.enumerate() {
        if n % 8 == 7 {
            let _ = writeln!(
                out,
                "{};delete-attribute;orderId;;Site {}",
                r.sim.icc_id,
                i % 11
            );
        } else {
            let _ = writeln!(
                out,
                "{};set-attribute;friendlyName;meter-{i};Site {}",
                r.sim.icc_id,
                i % 11
            );
        }
    }
    let _ = writeln!(
        out,
        "{};set-attribute;;no-name;Site 0",
        sims[4001].1.sim.icc_id
    );
    out
}

/// The demo client's endpoint on a simulator at `base_url` (the demo and the benchmarks).
pub(crate) fn simulator_endpoint(
    base_url: &str,
    timeout: Duration,
) -> Result<Endpoint, crate::api::SetupError> {
    Ok(Endpoint {
        wire: Default::default(),
        token_url_guessed: false,
        base_url: check_url("the simulator", base_url)?,
        token_url: check_url(
            "the simulator",
            &format!("{}/oauth2/token", base_url.trim_end_matches('/')),
        )?,
        client_id: crate::sim::DEMO_CLIENT_ID.into(),
        client_secret: SecretString::from(crate::sim::DEMO_CLIENT_SECRET),
        timeout,
        ca_bundle: None,
        api: crate::api::Api::EseyeV2,
    })
}

/// The job a sample runs as: the demo's pacing and halts, outputs beside its file, asking
/// nothing (the demo is asked for by its operator, on its own simulators).
fn sample_job(s: &Sample, input: PathBuf) -> JobConfig {
    JobConfig {
        defaults: Defaults {
            action: s.action.map(str::to_owned),
            unsupported: crate::engine::provider::unsupported(s.api),
            attribute_names: crate::engine::provider::attribute_names(s.api),
            ..Defaults::default()
        },
        // Super SIM's changes settle later: its rows wait for them.
        wait_active: (s.api == crate::api::Api::SuperSim).then_some(Duration::from_secs(60)),
        resume: ResumeMode::Restart,
        concurrency: 16,
        pacing: Pacing {
            burst: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
            ..Pacing::alone(Some(200.0))
        },
        halt_after_same_error: Some(50),
        confirm_over: None,
        args: vec!["simbulk".into(), "run".into(), input.display().to_string()],
        ..JobConfig::new(input)
    }
}

/// The demo account's endpoint on a Super SIM simulator at `base_url`.
fn super_sim_endpoint(
    base_url: &str,
    timeout: Duration,
) -> Result<Endpoint, crate::api::SetupError> {
    Ok(Endpoint {
        client_id: crate::sim::twilio_account_sid(crate::sim::DEMO_CLIENT_ID),
        api: crate::api::Api::SuperSim,
        ..simulator_endpoint(base_url, timeout)?
    })
}

/// The second provider's simulator: Super SIM over the same seed, changes settling 2 s
/// later, a little latency and a few 503s.
fn super_sim_config() -> SimConfig {
    SimConfig {
        provider: crate::sim::Provider::Twilio,
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        seed: DEMO_SEED,
        sims: DEMO_SIMS,
        rate_limit_per_second: 100,
        rate_limit_burst: 20,
        concurrent_limit: 25,
        settle_delay: Duration::from_secs(2),
        faults: FaultConfig {
            latency: Duration::from_millis(20),
            latency_spread: Duration::from_millis(10),
            http503: 0.02,
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    }
}

/// The simulator the demo runs against.
pub(crate) fn demo_sim_config() -> SimConfig {
    SimConfig {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        seed: DEMO_SEED,
        sims: DEMO_SIMS,
        rate_limit_per_second: 180,
        rate_limit_burst: 20,
        token_endpoint_per_minute: 60,
        token_ttl: Duration::from_secs(8),
        faults: FaultConfig {
            latency: Duration::from_millis(15),
            latency_spread: Duration::from_millis(10),
            http503: 0.02,
            drop: 0.005,
            apply_then_fail: 0.01,
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    }
}

fn say(s: &str) {
    stdout::print(s);
}

/// `simbulk demo`.
pub(crate) async fn run(a: DemoArgs) -> Outcome {
    demo(&a.dir, a.keep).await
}

async fn demo(out: &Path, keep: bool) -> Outcome {
    std::fs::create_dir_all(out).map_err(|e| {
        CliError::usage(format_args!(
            "cannot make the folder {}: {e}",
            out.display()
        ))
    })?;
    let server = SimServer::start(demo_sim_config())
        .await
        .map_err(anyhow::Error::from)?;
    let super_sim = SimServer::start(super_sim_config())
        .await
        .map_err(anyhow::Error::from)?;
    let drain = CancellationToken::new();
    let abort = CancellationToken::new();
    crate::signal::escalate(drain.clone(), abort.clone());
    // `simbulk demo | head`: once the reader is gone the demo has no one to show, and stops.
    stdout::stop_when_reader_gone(drain.clone());
    say(&format!(
        "simbulk demo: simulator on {} ({DEMO_SIMS} SIMs; 15-25 ms latency, 2% 503s, dropped and apply-then-fail responses, 180 req/s limit, 8 s tokens)\n\n",
        server.base_url()
    ));
    let mut worst = exit::OK;
    for s in sample_files() {
        let input = out.join(s.name);
        std::fs::write(&input, &s.contents)
            .map_err(|e| CliError::halted(format_args!("cannot write {}: {e}", input.display())))?;
        if drain.is_cancelled() {
            break;
        }
        say(&format!("== {} ({})\n   {}\n", s.title, s.name, s.shows));
        let on_super_sim = s.api == crate::api::Api::SuperSim;
        if on_super_sim {
            say(&format!(
                "   (a Super SIM simulator on {}: changes settle 2 s later, 20-30 ms latency, 2% 503s, 25 requests in flight at most)\n",
                super_sim.base_url()
            ));
        }
        let cfg = sample_job(&s, input);
        let endpoint = if on_super_sim {
            super_sim_endpoint(&super_sim.base_url(), Duration::from_secs(5))
        } else {
            simulator_endpoint(&server.base_url(), Duration::from_secs(5))
        }
        .map_err(anyhow::Error::from)?;
        match engine::run(cfg, endpoint, drain.clone(), abort.clone()).await {
            Ok(summary) => {
                say(&summary.to_text());
                worst = worst.max(summary.exit_code);
                if summary.exit_code == exit::STOPPED {
                    break;
                }
            }
            Err(e) => return Err(e.into()),
        }
        say("\n");
    }
    let stats = server.stats();
    say(&format!(
        "simulator: {} requests, {} changes applied, {} × 429, faults injected: {:?}\n",
        stats.requests, stats.mutations_applied, stats.too_many_requests, stats.faults_injected
    ));
    let other = super_sim.stats();
    say(&format!(
        "Super SIM simulator: {} requests, {} changes applied, {} × 429\n",
        other.requests, other.mutations_applied, other.too_many_requests
    ));
    say(&format!("open the results in {}\n", out.display()));
    if keep && !drain.is_cancelled() {
        let failures = out.join("shipment-activation.failures.csv");
        say(&format!(
            "the simulator stays up until Ctrl-C; re-run a failures file against it (the shipment's, fixed or not):\n  SIMBULK_CLIENT_ID={} SIMBULK_CLIENT_SECRET={} simbulk run --base-url {} {} --action activate\n",
            crate::sim::DEMO_CLIENT_ID,
            crate::sim::DEMO_CLIENT_SECRET,
            server.base_url(),
            crate::output::summary::shell_quote(&failures.display().to_string()),
        ));
        drain.cancelled().await;
    } else {
        say("to re-run a failures file, keep the simulator up: simbulk demo --keep\n");
    }
    server.stop().await.map_err(anyhow::Error::from)?;
    super_sim.stop().await.map_err(anyhow::Error::from)?;
    if stdout::closed() {
        // The reader went away (`| head`): a quiet end, like any filter's.
        return Ok(exit::OK);
    }
    // Failed and invalid rows are part of the story the demo tells; the demo itself succeeded.
    Ok(if worst == exit::ROWS_FAILED {
        exit::OK
    } else {
        worst
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_samples_are_what_the_seed_generates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
        for s in sample_files() {
            let committed = std::fs::read_to_string(dir.join(s.name)).unwrap_or_default();
            assert!(
                committed == s.contents,
                "samples/{} is stale; regenerate it with `cargo test -- --ignored write_samples`",
                s.name
            );
        }
    }

    #[test]
    #[ignore = "writes samples/; run by hand after changing the generator"]
    fn write_samples() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
        std::fs::create_dir_all(&dir).unwrap();
        for s in sample_files() {
            std::fs::write(dir.join(s.name), s.contents).unwrap();
        }
    }
}
