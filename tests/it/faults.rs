//! The fault matrix: each fault against a real job, asserting the results and the ledger
//! (every row ends ok/skipped or failed with the true reason; no duplicate effect; no results
//! row missing or doubled), plus halt rules and concurrency soundness.

use std::time::Duration;

use simbulk::sim::seed::Profile;
use simbulk::sim::{FaultConfig, SimConfig};

use crate::support::*;

/// A mixed job over `n` available SIMs: activate, and set an attribute, on each.
fn mixed_job(s: &TestSim, n: usize) -> (Job, Vec<String>) {
    let ids = s.pick(n, |r, p| p == Profile::Available && acme(r));
    let mut body = String::from("iccid,action,attribute,value\n");
    for (i, id) in ids.iter().enumerate() {
        body += &format!("{id},activate,,\n{id},set-attribute,fm,v{i}\n");
    }
    (Job::new("matrix.csv", &body), ids)
}

/// The common assertions of the matrix.
fn assert_clean(s: &TestSim, job: &Job, ids: &[String]) {
    let results = job.results();
    let mut lines: Vec<u64> = results.iter().map(|r| r["line"].parse().unwrap()).collect();
    lines.sort();
    assert_eq!(
        lines,
        (2..2 + 2 * ids.len() as u64).collect::<Vec<_>>(),
        "one results row per input row"
    );
    let o = outcomes(&results);
    assert_eq!(o.get("ok").copied().unwrap_or(0), 2 * ids.len(), "{o:?}");
    assert_no_repeated_effect(s);
    assert_active_and_tagged(s, ids, "fm", |i| format!("v{i}"));
}

fn faulty(f: FaultConfig) -> TestSim {
    TestSim::start(SimConfig {
        faults: f,
        ..SimConfig::unlimited(1500)
    })
}

/// Runs a mixed job of `n` SIMs under `faults` and asserts it ends clean.
fn matrix(faults: FaultConfig, n: usize, extra: &[&str]) {
    let s = faulty(faults);
    let (job, ids) = mixed_job(&s, n);
    let o = job.run(&s, extra);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_clean(&s, &job, &ids);
}

#[test]
fn a_storm_of_30_percent_503s_ends_clean() {
    matrix(
        FaultConfig {
            http503: 0.3,
            ..FaultConfig::default()
        },
        80,
        &["--max-retries", "20"],
    );
}

#[test]
fn gateway_errors_with_html_bodies_and_dropped_connections_end_clean() {
    matrix(
        FaultConfig {
            http502: 0.05,
            http504: 0.05,
            drop: 0.05,
            apply_then_fail: 0.1,
            ..FaultConfig::default()
        },
        80,
        &["--max-retries", "20"],
    );
}

#[test]
fn latency_spikes_past_the_timeout_end_clean() {
    matrix(
        FaultConfig {
            slow: 0.1,
            slow_duration: Duration::from_millis(1500),
            ..FaultConfig::default()
        },
        40,
        &["--timeout", "300ms", "--max-retries", "20"],
    );
}

#[test]
fn storms_of_429_with_and_without_retry_after_and_as_http_dates_end_clean() {
    for (header, date) in [(true, false), (false, false), (true, true)] {
        let s = TestSim::start(SimConfig {
            rate_limit_per_second: 60,
            rate_limit_burst: 5,
            retry_after_header: header,
            retry_after_http_date: date,
            ..SimConfig::unlimited(1500)
        });
        let (job, ids) = mixed_job(&s, 40);
        let o = job.run(&s, &["--rate", "150", "--burst", "5"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "header {header} date {date}: {}",
            text(&o)
        );
        assert!(s.stats().too_many_requests > 0);
        assert_clean(&s, &job, &ids);
    }
}

#[test]
fn a_failing_token_endpoint_and_revoked_tokens_end_clean() {
    let s = TestSim::start(SimConfig {
        token_ttl: Duration::from_secs(1),
        faults: FaultConfig {
            token_failure: 0.4,
            revoke: 0.05,
            latency: Duration::from_millis(3),
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(1500)
    });
    let (job, ids) = mixed_job(&s, 60);
    let o = job.run(&s, &["--rate", "200"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_clean(&s, &job, &ids);
    assert!(
        s.stats()
            .faults_injected
            .get("tokenFailure")
            .copied()
            .unwrap_or(0)
            > 0
    );
}

#[test]
fn a_rate_limited_token_endpoint_is_waited_out() {
    let s = TestSim::start(SimConfig {
        token_endpoint_per_minute: 30,
        ..SimConfig::unlimited(500)
    });
    // Use up the token bucket, so the job's first token request meets a 429.
    for _ in 0..30 {
        let _ = s.api();
    }
    let (job, ids) = mixed_job(&s, 10);
    let o = job.run(&s, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_clean(&s, &job, &ids);
    assert!(
        s.stats().too_many_requests >= 1,
        "the token endpoint answered 429"
    );
}

#[test]
fn the_simulator_restarted_mid_job_with_its_state_file_ends_clean() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestSim::start(SimConfig {
        state_file: Some(dir.path().join("state.json")),
        faults: FaultConfig {
            latency: Duration::from_millis(10),
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(1500)
    });
    let (job, ids) = mixed_job(&s, 60);
    let child = spawn_piped(job.command(&s, &["--concurrency", "4", "--max-retries", "30"]));
    std::thread::sleep(Duration::from_millis(400));
    s.restart();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_clean(&s, &job, &ids);
}

#[test]
fn max_failures_halts_with_3_and_the_job_resumes() {
    let s = TestSim::unlimited(2000);
    let ids = s.pick(40, |r, p| p == Profile::CustomerSuspended && acme(r));
    let job = Job::new(
        "fail.csv",
        &rows_body("iccid,action", &ids, |i| format!("{i},deactivate")),
    );
    let o = job.run(
        &s,
        &[
            "--max-failures",
            "5",
            "--concurrency",
            "1",
            "--halt-after-same-error",
            "0",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("--max-failures") && out.contains("--resume"),
        "{out}"
    );
    assert!(job.results().len() < 40);
    let o = job.run(&s, &["--resume", "--halt-after-same-error", "0"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(job.results().len(), 40);
}

#[test]
fn the_same_error_on_many_rows_in_a_row_halts_but_scattered_errors_do_not() {
    let s = TestSim::unlimited(3000);
    let ids = s.pick(60, |r, p| {
        p == Profile::Available && r.sim.portfolio_id == "pf-acme-eu"
    });
    let wrong = Job::new(
        "wrong.csv",
        &rows_body("iccid,action,value", &ids, |i| {
            format!("{i},set-package,99999")
        }),
    );
    let o = wrong.run(&s, &["--halt-after-same-error", "10", "--concurrency", "2"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("looks like a mistake"));
    assert!(wrong.results().len() < 30);
    // One suspended SIM between good rows never halts.
    let good = s.pick(30, |r, p| {
        p == Profile::Available && acme(r) && !ids.contains(&r.sim.icc_id)
    });
    let susp = s.pick(10, |r, p| p == Profile::CustomerSuspended && acme(r));
    let mut body = String::from("iccid,action\n");
    for (i, g) in good.iter().enumerate() {
        body += &format!("{g},activate\n");
        if i % 3 == 0 {
            body += &format!("{},deactivate\n", susp[i / 3]);
        }
    }
    let mixed = Job::new("scattered.csv", &body);
    let o = mixed.run(&s, &["--halt-after-same-error", "3", "--concurrency", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(mixed.results().len(), 40);
}

#[test]
fn one_token_request_per_revocation_however_many_workers_see_the_401() {
    let s = TestSim::start(SimConfig {
        faults: FaultConfig {
            latency: Duration::from_millis(20),
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(8000)
    });
    let ids = s.pick(3000, |r, p| p == Profile::Available && acme(r));
    let job = Job::new("flight.csv", &(ids.join("\n") + "\n"));
    let child = spawn_piped(job.command(&s, &["--action", "activate", "--concurrency", "48"]));
    std::thread::sleep(Duration::from_millis(300));
    let mut revocations = 0;
    for _ in 0..3 {
        if s.server().revoke_all() > 0 {
            revocations += 1;
        }
        std::thread::sleep(Duration::from_millis(120));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(revocations >= 2);
    assert_eq!(
        s.stats().token_requests,
        1 + revocations,
        "one refresh per revocation"
    );
    assert_eq!(outcomes(&job.results())["ok"], 3000);
}

#[test]
fn per_sim_order_holds_under_retries_and_many_workers() {
    let s = faulty(FaultConfig {
        http503: 0.2,
        apply_then_fail: 0.2,
        drop: 0.05,
        ..FaultConfig::default()
    });
    let ids = s.pick(12, |r, p| p == Profile::Active && acme(r));
    let body = toggle_body(&ids, 6);
    let job = Job::new("order.csv", &body);
    let o = job.run(&s, &["--concurrency", "64", "--max-retries", "30"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for id in &ids {
        let seq: Vec<bool> = s
            .ledger()
            .iter()
            .filter(|e| &e.icc_id == id)
            .map(|e| e.new.as_bool().unwrap())
            .collect();
        assert_eq!(seq, [true, false, true, false, true, false], "{id}");
        assert!(!s.sim(id).sim.customer_suspend);
    }
}

#[cfg(unix)]
#[test]
fn the_checkpoint_is_private_and_output_symlinks_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let s = TestSim::unlimited(200);
    let ids = s.pick(2, |r, _| acme(r));
    let job = Job::new("perm.csv", &(ids.join("\n") + "\n"));
    assert_eq!(
        job.run(&s, &["--action", "activate"]).status.code(),
        Some(0)
    );
    let mode = std::fs::metadata(job.path(".checkpoint"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let target = job.dir.path().join("elsewhere.csv");
    std::fs::write(&target, "keep me").unwrap();
    let link = job.dir.path().join("link.csv");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let o = job.run(
        &s,
        &[
            "--action",
            "activate",
            "--restart",
            "--results",
            link.to_str().unwrap(),
        ],
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("symbolic link"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
}
