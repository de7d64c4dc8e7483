//! One job file against each provider's simulator (Eseye, Twilio Super SIM, emnify): the
//! same rows — activate, suspend, unsuspend, a package change, an attribute — each done where
//! the provider has a form for it and an invalid row naming the provider where it has not.

use std::time::Duration;

use simbulk::sim::seed::{self, Profile};
use simbulk::sim::{DEMO_CLIENT_ID, Provider, SimConfig};

use crate::support::*;

const SIMS: usize = 400;

/// The job: one SIM of each kind, chosen from the seed (the same ICCIDs in every simulator).
fn one_file() -> String {
    let picked = |want: &dyn Fn(usize, &simbulk::sim::state::SimRecord, Profile) -> bool,
                  taken: &mut Vec<String>| {
        let (_, r, _) = seed::iter(1, SIMS)
            .find(|(i, r, p)| acme(r) && want(*i, r, *p) && !taken.contains(&r.sim.icc_id))
            .expect("the seed has such a SIM");
        taken.push(r.sim.icc_id.clone());
        r.sim.icc_id
    };
    let mut taken = Vec::new();
    // Super SIM's simulator seeds one in ten new SIMs without a Fleet: not those.
    let activate = picked(
        &|i, _, p| p == Profile::Available && i % 10 != 3,
        &mut taken,
    );
    let suspend = picked(&|_, _, p| p == Profile::Active, &mut taken);
    let unsuspend = picked(&|_, _, p| p == Profile::CustomerSuspended, &mut taken);
    let package = picked(
        &|_, r, p| {
            p == Profile::Available
                && r.sim.portfolio_id == "pf-acme-eu"
                && r.sim.package_id == 20417
        },
        &mut taken,
    );
    let attribute = picked(&|_, _, p| p == Profile::Active, &mut taken);
    format!(
        "iccid,action,value,attribute\n{activate},activate,,\n{suspend},suspend,,\n{unsuspend},unsuspend,,\n{package},set-package,20418,\n{attribute},set-attribute,meter-7,friendlyName\n"
    )
}

fn outcomes_of(job: &Job) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = job
        .results()
        .into_iter()
        .map(|r| (r["action"].clone(), r["outcome"].clone()))
        .collect();
    v.sort();
    v
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = v
        .iter()
        .map(|(a, o)| ((*a).to_owned(), (*o).to_owned()))
        .collect();
    v.sort();
    v
}

#[test]
fn one_job_file_runs_against_each_of_the_three_providers() {
    let body = one_file();

    let eseye = TestSim::unlimited(SIMS);
    let job = Job::new("fleet.csv", &body);
    let o = job.run(&eseye, &[]);
    assert_eq!(o.status.code(), Some(0), "eseye: {}", text(&o));
    assert!(
        outcomes_of(&job).iter().all(|(_, o)| o == "ok"),
        "{:?}",
        job.results()
    );

    let twilio = TestSim::start(SimConfig {
        provider: Provider::Twilio,
        settle_delay: Duration::from_millis(200),
        ..SimConfig::unlimited(SIMS)
    });
    let job = Job::new("fleet.csv", &body);
    let o = job
        .command(&twilio, &["--provider", "twilio", "--wait-active", "30s"])
        .env(
            "SIMBULK_CLIENT_ID",
            simbulk::sim::twilio_account_sid(DEMO_CLIENT_ID),
        )
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "twilio: {}", text(&o));
    assert_eq!(
        outcomes_of(&job),
        pairs(&[
            ("activate", "ok"),
            ("suspend", "ok"),
            ("unsuspend", "ok"),
            ("set-package", "invalid"),
            ("set-attribute", "invalid"),
        ])
    );

    let emnify = TestSim::start(SimConfig {
        provider: Provider::Emnify,
        ..SimConfig::unlimited(SIMS)
    });
    let job = Job::new("fleet.csv", &body);
    let o = job.run(&emnify, &["--provider", "emnify"]);
    assert_eq!(o.status.code(), Some(1), "emnify: {}", text(&o));
    assert_eq!(
        outcomes_of(&job),
        pairs(&[
            ("activate", "ok"),
            ("suspend", "ok"),
            ("unsuspend", "ok"),
            ("set-package", "ok"),
            ("set-attribute", "invalid"),
        ])
    );
    // Each provider's simulator applied the rows it took, once each.
    assert_eq!(twilio.ledger().len(), 3);
    assert_eq!(
        emnify.ledger().len(),
        7,
        "3 devices (SIM and endpoint) and a tariff profile"
    );
    let invalid: Vec<String> = job
        .results()
        .into_iter()
        .filter(|r| r["outcome"] == "invalid")
        .map(|r| r["message"].clone())
        .collect();
    assert!(invalid.iter().all(|m| m.contains("emnify")), "{invalid:?}");
}
