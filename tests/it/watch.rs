//! Watched overnight: the metrics file (parsed with a Prometheus text-format parser, mid-run
//! and at the end, never half-written), and the --on-finish hook for every way a job ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_parse::{Scrape, Value};
use simbulk::sim::seed::Profile;
use simbulk::sim::{FaultConfig, SimConfig};

use crate::support::*;

fn scrape(path: &std::path::Path) -> Option<Scrape> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("a whole, valid file"))
}

fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[test]
fn the_metrics_file_is_always_whole_and_matches_the_summary() {
    let s = TestSim::start(SimConfig {
        faults: FaultConfig {
            http503: 0.05,
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(1000)
    });
    let ids = s.pick(120, |r, p| p == Profile::Available && acme(r));
    let job = Job::new("watched.csv", &(ids.join("\n") + "\n"));
    let metrics = job.dir.path().join("simbulk.prom");
    let json = job.path(".json");
    let child = spawn_piped(job.command(
        &s,
        &[
            "--action",
            "activate",
            "--rate",
            "20",
            "--metrics-file",
            metrics.to_str().unwrap(),
            "--change-ref",
            "CHG-9",
            "--summary-json",
            json.to_str().unwrap(),
        ],
    ));
    // A reader in a loop while the job runs: every read parses.
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (done, metrics) = (done.clone(), metrics.clone());
        std::thread::spawn(move || {
            let mut beats = std::collections::BTreeSet::new();
            while !done.load(Ordering::SeqCst) {
                if let Some(sc) = scrape(&metrics) {
                    let state_running = value(&sc, "simbulk_job_state", &[("state", "running")]);
                    if state_running == Some(1.0) {
                        beats.insert(
                            value(&sc, "simbulk_heartbeat_timestamp_seconds", &[]).unwrap() as u64,
                        );
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            beats
        })
    };
    let (o, _) = exit_within(child, Duration::from_secs(60));
    done.store(true, Ordering::SeqCst);
    let beats = reader.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!beats.is_empty(), "seen while running");
    let sum: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let sc = scrape(&metrics).unwrap();
    let job_label = [("job", "watched.csv"), ("change_ref", "CHG-9")];
    let ok = value(
        &sc,
        "simbulk_rows_total",
        &[
            job_label[0],
            job_label[1],
            ("outcome", "ok"),
            ("action", "activate"),
        ],
    );
    assert_eq!(ok, sum["this_run"]["ok"].as_f64());
    assert_eq!(
        value(&sc, "simbulk_job_rows", &[("outcome", "ok")]),
        Some(120.0)
    );
    let kinds: f64 = ["write", "read", "list"]
        .iter()
        .map(|k| value(&sc, "simbulk_requests_total", &[("kind", k)]).unwrap())
        .sum();
    let c = &sum["calls"];
    assert_eq!(
        kinds,
        c["writes"].as_f64().unwrap() + c["reads"].as_f64().unwrap() + c["lists"].as_f64().unwrap()
    );
    assert_eq!(
        value(&sc, "simbulk_retries_total", &[]),
        sum["retries"].as_f64()
    );
    assert!(value(&sc, "simbulk_responses_total", &[("class", "5xx")]).unwrap() >= 1.0);
    assert_eq!(
        value(&sc, "simbulk_job_state", &[("state", "finished")]),
        Some(1.0)
    );
    assert_eq!(value(&sc, "simbulk_exit_code", &[]), Some(0.0));
    assert_eq!(value(&sc, "simbulk_rows_remaining", &[]), Some(0.0));
    assert_eq!(
        value(&sc, "simbulk_rate_target_requests_per_second", &[]),
        Some(20.0)
    );
    assert!(value(&sc, "simbulk_last_row_timestamp_seconds", &[]).unwrap() > 1.7e9);
    // Types and help as the format wants them.
    let rows = sc
        .samples
        .iter()
        .find(|x| x.metric == "simbulk_rows_total")
        .unwrap();
    assert!(matches!(rows.value, Value::Counter(_)));
    assert!(sc.docs.contains_key("simbulk_rows_total"));
    // No temporary file left beside it.
    let stray: Vec<_> = std::fs::read_dir(job.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".simbulk-metrics")
        })
        .collect();
    assert!(stray.is_empty());
}

/// The hook's log: one line per run, `exit state summary-exists`.
fn hook(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let log = dir.join("hook.log");
    let cmd = format!(
        "printf '%s %s %s\\n' \"$SIMBULK_EXIT_CODE\" \"$SIMBULK_STATE\" \"$( [ -s \"$SIMBULK_SUMMARY_JSON\" ] && echo summary || echo none )\" >> {}",
        log.display()
    );
    (cmd, log)
}

fn lines(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn on_finish_runs_once_for_completed_halted_and_stopped_jobs() {
    let s = TestSim::unlimited(500);
    let ids = s.pick(60, |r, p| p == Profile::Available && acme(r));
    // Completed.
    let job = Job::new("done.csv", &(ids[..5].join("\n") + "\n"));
    let (cmd, log) = hook(job.dir.path());
    let o = job.run(&s, &["--action", "activate", "--on-finish", &cmd]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(lines(&log), ["0 completed summary"]);
    // Halted: permission denied (403).
    let job = Job::new("ro.csv", &(ids[5..10].join("\n") + "\n"));
    let (cmd, log) = hook(job.dir.path());
    let o = job
        .command(&s, &["--action", "activate", "--on-finish", &cmd])
        .env("SIMBULK_CLIENT_ID", "sim-readonly-client")
        .env("SIMBULK_CLIENT_SECRET", "s3cr3t-readonly")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(lines(&log), ["3 halted summary"]);
    // Stopped by SIGINT.
    let job = Job::new("stop.csv", &(ids[10..60].join("\n") + "\n"));
    let (cmd, log) = hook(job.dir.path());
    let child = spawn_piped(job.command(
        &s,
        &["--action", "activate", "--rate", "5", "--on-finish", &cmd],
    ));
    std::thread::sleep(Duration::from_millis(1500));
    signal(&child, libc::SIGINT);
    let (o, _) = exit_within(child, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    assert_eq!(lines(&log), ["75 stopped summary"]);
    // Refused at start (bad credentials): the hook hears it too, without a summary.
    let job = Job::new("bad.csv", &(ids[..2].join("\n") + "\n"));
    let (cmd, log) = hook(job.dir.path());
    let o = job
        .command(&s, &["--action", "activate", "--on-finish", &cmd])
        .env("SIMBULK_CLIENT_SECRET", "wrong")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(lines(&log), ["3 refused none"]);
}

#[test]
fn a_failing_or_hanging_hook_does_not_change_the_result() {
    let s = TestSim::unlimited(300);
    let ids = s.pick(4, |r, p| p == Profile::Available && acme(r));
    let job = Job::new("h.csv", &(ids.join("\n") + "\n"));
    let o = job.run(&s, &["--action", "activate", "--on-finish", "exit 7"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("--on-finish ended with"), "{}", text(&o));
    let t0 = std::time::Instant::now();
    let o = job.run(
        &s,
        &[
            "--action",
            "activate",
            "--restart",
            "--on-finish",
            "sleep 30",
            "--on-finish-timeout",
            "1s",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(t0.elapsed() < Duration::from_secs(15));
    assert!(text(&o).contains("was stopped"), "{}", text(&o));
}
