//! The morning after: error groups in the summary and the report, the report's job context
//! (runs, change reference, operator, next steps) in a real browser, machine-readable
//! summaries, and the planning numbers of a dry run.

use std::collections::HashMap;
use std::time::Duration;

use simbulk::sim::seed::Profile;
use simbulk::sim::{FaultConfig, SimConfig};

use crate::support::*;

/// An ICCID with a wrong check digit.
fn bad_luhn(body: &str) -> String {
    let good = simbulk::input::with_check_digit(body);
    let last = good.as_bytes()[good.len() - 1] - b'0';
    format!("{}{}", &good[..good.len() - 1], (last + 1) % 10)
}

/// Failed and invalid rows of a results file by group, as the results' columns say.
fn groups_in(rows: &[HashMap<String, String>]) -> HashMap<String, u64> {
    let mut g = HashMap::new();
    for r in rows
        .iter()
        .filter(|r| r["outcome"] == "failed" || r["outcome"] == "invalid")
    {
        let key = match (r["http_status"].as_str(), r["error_code"].as_str()) {
            ("", "") => r["reason"].clone(),
            (s, "") => format!("HTTP {s}"),
            (s, c) => format!("HTTP {s} error {c}"),
        };
        *g.entry(key).or_default() += 1;
    }
    g
}

#[test]
fn luhn_unknown_connection_and_503_failures_make_four_groups_in_summary_and_report() {
    let s = TestSim::start(SimConfig {
        faults: FaultConfig {
            http503: 0.15,
            drop: 0.05,
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(3000)
    });
    let good = s.pick(600, |r, p| p == Profile::Available && acme(r));
    let mut body = String::from("iccid,action\n");
    for i in 0..360 {
        body += &format!("{},activate\n", bad_luhn(&format!("894450099{i:09}")));
    }
    for i in 0..10 {
        let unknown = simbulk::input::with_check_digit(&format!("8944500199999{i:05}"));
        body += &format!("{unknown},activate\n");
    }
    for id in &good {
        body += &format!("{id},activate\n");
    }
    let job = Job::new("groups.csv", &body);
    let json = job.dir.path().join("summary.json");
    let o = job.run(
        &s,
        &[
            "--max-retries",
            "0",
            "--halt-after-same-error",
            "0",
            "--no-plan",
            "--summary-json",
            json.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let rows = job.results();
    let expected = groups_in(&rows);
    assert_eq!(expected["ICCID fails the Luhn check"], 360, "{expected:?}");
    assert!(expected.contains_key("HTTP 404 error 6002"), "{expected:?}");
    assert!(expected.contains_key("HTTP 503"), "{expected:?}");
    assert!(expected.contains_key("connection lost"), "{expected:?}");
    assert_eq!(expected.len(), 4, "{expected:?}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let groups = v["top_errors"].as_array().unwrap();
    assert_eq!(groups.len(), 4, "{groups:#?}");
    for g in groups {
        let label = g["label"].as_str().unwrap();
        assert_eq!(g["count"].as_u64(), expected.get(label).copied(), "{label}");
        let samples = g["samples"].as_array().unwrap();
        assert_eq!(samples.len() as u64, g["count"].as_u64().unwrap().min(5));
        // A sample is a row of the group.
        let line = samples[0]["line"].as_u64().unwrap().to_string();
        let row = rows.iter().find(|r| r["line"] == line).unwrap();
        assert_eq!(row["iccid"], samples[0]["iccid"].as_str().unwrap());
        assert!(!g["next_step"].as_str().unwrap().is_empty());
        let outcome = if label.starts_with("ICCID") {
            "invalid"
        } else {
            "failed"
        };
        assert_eq!(
            g["outcome"], outcome,
            "{label}: connection failures are not invalid"
        );
    }
    // The human summary shows the same four groups.
    let out = String::from_utf8_lossy(&o.stdout);
    let listed = out
        .lines()
        .skip_while(|l| !l.contains("top errors"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .filter(|l| l.contains(" × "))
        .count();
    assert_eq!(listed, 4, "{out}");
    assert!(
        out.contains("× invalid: ICCID fails the Luhn check"),
        "{out}"
    );
    // And so does the report, from the results file alone.
    let o = simbulk()
        .arg("report")
        .arg(job.path(".results.csv"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout);
    for (label, n) in &expected {
        let outcome = if label.starts_with("ICCID") {
            "invalid"
        } else {
            "failed"
        };
        assert!(
            t.contains(&format!("{n} × {outcome}: {label} (")),
            "{label} {n}: {t}"
        );
    }
    let listed = t
        .lines()
        .skip_while(|l| !l.starts_with("  errors:"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .filter(|l| l.contains(" × "))
        .count();
    assert_eq!(listed, 4, "{t}");
    // One definition of retries: the results' column adds up to the summary's.
    let retries: u64 = rows
        .iter()
        .map(|r| r["retries"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(retries, v["retries"].as_u64().unwrap());
    assert!(
        t.contains(&format!(
            "retries (after a 5xx, a timeout or a lost connection): {retries}"
        )),
        "{t}"
    );
}

#[test]
fn summary_json_goes_to_stdout_with_dash_and_quiet_prints_nothing() {
    let s = TestSim::unlimited(300);
    let ids = s.pick(5, |r, p| p == Profile::Available && acme(r));
    let job = Job::new("q.csv", &(ids.join("\n") + "\n"));
    let o = job.run(
        &s,
        &["-q", "--action", "activate", "--change-ref", "CHG-77"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(o.stdout.is_empty(), "-q: {}", text(&o));
    assert!(o.stderr.is_empty(), "-q and all well: {}", text(&o));
    let o = job.run(
        &s,
        &[
            "-q",
            "--action",
            "activate",
            "--restart",
            "--summary-json",
            "-",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!job.dir.path().join("-").exists(), "no file named -");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is the JSON");
    // The schema: names and units.
    assert_eq!(v["schema_version"], 2);
    for field in [
        "version",
        "state",
        "exit_code",
        "operator",
        "started_at",
        "finished_at",
        "elapsed_seconds",
        "rows_per_second",
        "first_request_after_seconds",
        "requests",
        "retries",
        "throttled_429",
    ] {
        assert!(!v[field].is_null(), "{field} in {v:#}");
    }
    for l in ["api_latency_ms", "row_time_ms"] {
        for p in ["p50", "p99", "max"] {
            assert!(v[l][p].is_f64(), "{l}.{p}");
        }
    }
    assert!(v["activations"]["active"].is_u64() && v["activations"]["still_pending"].is_u64());
    assert!(v["started_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["job"]["skipped"], 5, "a restart finds them active");
    // The change reference of the first run was restarted away; a resume keeps the job's.
    assert!(v["change_ref"].is_null());
    let rows = job.results();
    assert!(rows.iter().all(|r| r["change_ref"].is_empty()));
}

#[test]
fn skipped_rows_carry_the_providers_code_and_the_sims_status() {
    let s = TestSim::unlimited(300);
    let ids = s.pick(3, |r, p| p == Profile::Active && acme(r));
    let job = Job::new("noop.csv", &(ids.join("\n") + "\n"));
    // Without planning the PATCH goes out and the provider answers 6047.
    let o = job.run(&s, &["--action", "activate", "--no-plan"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for r in job.results() {
        assert_eq!(r["outcome"], "skipped", "{r:?}");
        assert_eq!(r["sim_status"], "active", "{r:?}");
        if !r["http_status"].is_empty() {
            assert_eq!(r["error_code"], "6047", "{r:?}");
        }
    }
}

#[test]
fn dry_run_reports_duplicates_groups_and_an_estimate() {
    let mut body = String::with_capacity(400_100 * 30);
    body += "iccid,action\n";
    for i in 0..400_000u64 {
        body += &simbulk::input::with_check_digit(&format!("89445{i:013}"));
        body += ",set-package\n";
    }
    for i in 0..10u64 {
        body += &simbulk::input::with_check_digit(&format!("89445{:013}", i * 1000));
        body += ",set-package\n";
    }
    let job = Job::new("big.csv", &body);
    let o = simbulk()
        .arg("run")
        .arg(&job.input)
        .args([
            "--dry-run",
            "--value",
            "42",
            "--rate",
            "10",
            "--max-duration",
            "4h",
        ])
        .output()
        .unwrap();
    // The exit code of a dry run with every row valid.
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("400,010 rows, 400,010 valid, 0 invalid"), "{t}");
    assert!(t.contains("repeated ICCIDs: 10 rows"), "{t}");
    assert!(t.contains("(first on line 2)"), "{t}");
    assert!(t.contains("400,010 rows ≈ 404,011 calls"), "{t}");
    assert!(t.contains("at 10/s"), "{t}");
    assert!(!job.path(".results.csv").exists());
    // Invalid rows grouped by reason, exit 1 as a run would.
    let mut bad = String::from("iccid,action\n");
    for i in 0..50 {
        bad += &format!("{},activate\n", bad_luhn(&format!("894450099{i:09}")));
    }
    bad += "89445009900000000x1,activate\n";
    let job = Job::new("bad.csv", &bad);
    let o = simbulk()
        .arg("run")
        .arg(&job.input)
        .args(["--dry-run"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("50 × ICCID fails the Luhn check"), "{t}");
    assert!(t.contains("1 × ICCID has a non-digit"), "{t}");
}

#[test]
fn the_report_of_a_two_run_job_shows_its_runs_change_and_next_steps_in_a_browser() {
    let s = TestSim::start(SimConfig {
        faults: FaultConfig {
            latency: Duration::from_millis(15),
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(2000)
    });
    let good = s.pick(120, |r, p| p == Profile::Available && acme(r));
    let susp = s.pick(10, |r, p| p == Profile::CustomerSuspended && acme(r));
    let mut body = String::from("iccid,action\n");
    for id in &good {
        body += &format!("{id},activate\n");
    }
    for id in &susp {
        body += &format!("{id},deactivate\n");
    }
    let job = Job::new("nights.csv", &body);
    let first = &[
        "--max-duration",
        "400ms",
        "--concurrency",
        "2",
        "--change-ref",
        "CHG-2026-11",
    ];
    let o = job.run(&s, first);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    // Between the nights: the report says the job is not complete and how to go on.
    let o = simbulk()
        .arg("report")
        .arg(job.path(".results.csv"))
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("NOT complete") && t.contains("--resume"), "{t}");
    assert!(t.contains("change:     CHG-2026-11"), "{t}");
    std::thread::sleep(Duration::from_millis(1100));
    let o = job.run(&s, &["--resume"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let rows = job.results();
    assert!(
        rows.iter().all(|r| r["change_ref"] == "CHG-2026-11"),
        "resume keeps it"
    );
    let html = job.dir.path().join("report.html");
    let o = simbulk()
        .arg("report")
        .arg(job.path(".results.csv"))
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(
        t.contains("complete (done, some rows failed); 2 run(s)"),
        "{t}"
    );
    assert!(t.contains("after a pause of"), "{t}");
    let Some(dom) = render(&html) else { return };
    let cell = |id: &str| {
        let at = dom
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("{id}: {dom}"));
        dom[at..].split('<').next().unwrap_or("").to_owned()
    };
    assert!(cell("change").contains("CHG-2026-11"), "{dom}");
    assert!(
        dom.contains("id=\"ok\">120<") && dom.contains("id=\"ok-pct\">92.3 %<"),
        "{dom}"
    );
    assert!(dom.contains("id=\"failed-pct\">7.7 %<"), "{dom}");
    let runs = &dom[dom.find("id=\"runs\"").unwrap()..];
    let runs = &runs[..runs.find("</table>").unwrap()];
    assert_eq!(
        runs.matches("<tr>").count(),
        3,
        "a header and two runs: {runs}"
    );
    assert!(
        runs.contains("75 (stopped") && runs.contains("1 (done, some rows failed)"),
        "{runs}"
    );
    let next = &dom[dom.find("id=\"next\"").unwrap()..];
    assert!(
        next.contains("simbulk run") && next.contains("failures.csv"),
        "{next}"
    );
    assert!(
        dom.contains("16000") && dom.contains("unsuspend them"),
        "the group's next step"
    );
    // The chart is stacked by outcome: failed rows are drawn red, apart from the ok ones.
    assert!(dom.contains("<rect class=\"failed\"") && dom.contains("<rect class=\"ok\""));
    assert!(dom.contains(&format!("simbulk {}", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn an_export_that_gives_up_halfway_leaves_no_file_and_says_where_it_stopped() {
    let s = TestSim::start(SimConfig {
        faults: FaultConfig {
            http503: 0.3,
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(3000)
    });
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet.csv");
    let o = simbulk()
        .args([
            "export",
            "--page-size",
            "10",
            "--rate",
            "0",
            "--max-retries",
            "1",
        ])
        .args(["--base-url", &s.url()])
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(!out.exists(), "no file that looks complete");
    let no_stray = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(no_stray, 0, "no temporary file left behind");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("gave up on page") && err.contains("after 2 attempts"),
        "{err}"
    );
    assert!(err.contains("no output file was written"), "{err}");
}

#[test]
fn a_mistyped_status_warns_and_an_empty_export_says_why() {
    let s = TestSim::unlimited(300);
    let o = simbulk()
        .args(["export", "--status", "availble", "--rate", "0"])
        .args(["--base-url", &s.url()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Did you mean \"available\""), "{err}");
    assert!(
        err.contains("exported 0 SIMs: no SIM matches the filters"),
        "{err}"
    );
    // A known status: no warning.
    let o = simbulk()
        .args(["export", "--status", "active", "--rate", "0"])
        .args(["--base-url", &s.url()])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&o.stderr).contains("not a status"));
}

#[test]
fn fatal_errors_are_json_with_log_format_json() {
    let dir = tempfile::tempdir().unwrap();
    let o = simbulk()
        .args(["--log-format", "json", "run"])
        .arg(dir.path().join("missing.csv"))
        .args(["--base-url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err.lines().last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert_eq!(v["level"], "ERROR");
    assert!(
        v["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("missing.csv"),
        "{v}"
    );
}

#[test]
fn every_next_step_of_a_bare_list_job_runs_as_printed() {
    let sim = TestSim::unlimited(300);
    let mut ids = sim.pick(3, |r, p| p == Profile::Available && acme(r));
    // One the provider does not know (6002), one that fails the Luhn check (invalid).
    ids.push(simbulk::input::with_check_digit("894450019999900001"));
    let mut bad = simbulk::input::with_check_digit("894450019999900002");
    bad.pop();
    bad.push(if bad.ends_with('1') { '2' } else { '1' });
    ids.push(bad);
    let job = Job::new("bare.txt", &(ids.join("\n") + "\n"));
    let summary = job.path(".json");
    let o = job
        .command(
            &sim,
            &[
                "--action",
                "activate",
                "--summary-json",
                summary.to_str().unwrap(),
            ],
        )
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let steps = steps_of(&summary);
    assert_eq!(steps.len(), 2, "{steps:#?}");
    // The report's step too.
    let report = simbulk()
        .arg("report")
        .arg(job.path(".results.csv"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&report.stdout).into_owned();
    let from_report = report
        .lines()
        .find(|l| l.contains("then run it: simbulk run"))
        .unwrap_or_else(|| panic!("{report}"))
        .to_owned();
    for step in steps.iter().chain([&from_report]) {
        let (_, cmd) = step
            .split_once("simbulk run ")
            .unwrap_or_else(|| panic!("no command in {step:?}"));
        let args = shell_words(cmd);
        let o = simbulk()
            .current_dir(job.dir.path())
            .arg("run")
            .args(&args)
            .env("SIMBULK_BASE_URL", sim.url())
            .output()
            .unwrap();
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "{step:?} does not run as printed: {}",
            text(&o)
        );
        // The next hint runs on a clean slate: the re-run's own outputs go.
        for e in std::fs::read_dir(job.dir.path()).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if name.starts_with("bare.failures.") && name != "bare.failures.csv" {
                std::fs::remove_file(job.dir.path().join(name)).unwrap();
            }
        }
    }
}

/// The commands in `steps` (each from its `simbulk ` on), run as printed in `dir` against
/// `sim`: each exits 0 or 1, never 2 (a hint that does not parse, or names a missing file).
fn assert_each_step_runs(dir: &std::path::Path, sim: &TestSim, steps: &[String]) {
    assert!(!steps.is_empty());
    for step in steps {
        let (_, cmd) = step
            .split_once("simbulk ")
            .unwrap_or_else(|| panic!("no command in {step:?}"));
        let o = simbulk()
            .current_dir(dir)
            .args(shell_words(cmd))
            .env("SIMBULK_BASE_URL", sim.url())
            .output()
            .unwrap();
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "{step:?} does not run as printed: {}",
            text(&o)
        );
    }
}

/// The next steps of a summary JSON file.
fn steps_of(summary: &std::path::Path) -> Vec<String> {
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
    s["top_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["next_step"].as_str().unwrap().to_owned())
        .collect()
}

/// The "next:" lines of `simbulk report RESULTS`.
fn report_steps(results: &std::path::Path) -> Vec<String> {
    let o = simbulk().arg("report").arg(results).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("next: ").map(str::to_owned))
        .collect()
}

#[test]
fn the_next_steps_of_pending_and_blocked_rows_run_as_printed() {
    // Pending: activations the provider has not finished when the wait ends.
    let slow = TestSim::start(SimConfig {
        activation_delay: Duration::from_secs(2),
        ..SimConfig::unlimited(300)
    });
    let ids = slow.pick(3, |r, p| p == Profile::Available && acme(r));
    let job = Job::new("slow.txt", &(ids.join("\n") + "\n"));
    let summary = job.path(".json");
    let o = job.run(
        &slow,
        &[
            "--action",
            "activate",
            "--wait-active",
            "200ms",
            "--summary-json",
            summary.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let steps = steps_of(&summary);
    assert!(
        steps.iter().any(|s| s.contains("--wait-active")),
        "{steps:#?}"
    );
    assert_each_step_runs(job.dir.path(), &slow, &steps);
    for id in &ids {
        assert_eq!(
            slow.sim(id).sim.status,
            "active",
            "the hint polled {id} to active"
        );
    }

    // Blocked: a package change an active SIM that stays active cannot take.
    let s = TestSim::unlimited(600);
    let active = s.pick(2, |r, p| {
        p == Profile::Active && acme(r) && r.sim.package_id == 20417
    });
    let dir = tempfile::tempdir().unwrap();
    let desired = dir.path().join("order.csv");
    let body: String = active
        .iter()
        .map(|i| format!("{i},active,20533\n"))
        .collect();
    std::fs::write(&desired, format!("iccid,status,packageId\n{body}")).unwrap();
    let summary = dir.path().join("order.json");
    let o = simbulk()
        .current_dir(dir.path())
        .args([
            "apply",
            "order.csv",
            "--yes",
            "--rate",
            "0",
            "--summary-json",
        ])
        .arg(&summary)
        .args(["--base-url", &s.url()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let mut steps = steps_of(&summary);
    assert!(
        steps.iter().any(|s| s.contains("simbulk apply order.csv")),
        "{steps:#?}"
    );
    steps.extend(report_steps(&dir.path().join("order.results.csv")));
    assert!(
        steps
            .iter()
            .filter(|s| s.contains("simbulk apply order.csv"))
            .count()
            >= 2,
        "the report names the desired file too: {steps:#?}"
    );
    assert_each_step_runs(dir.path(), &s, &steps);
}
