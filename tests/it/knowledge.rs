//! Act only on what is known now: no row decided on a read older than `--max-read-age` while
//! another client changes SIMs, the job's own writes over a lagging list, a list's silence
//! confirmed with a GET, and lists that honour one `iccId` or leave SIMs out.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use simbulk::sim::seed::Profile;
use simbulk::sim::{FaultConfig, SimConfig};

use crate::support::*;

fn summary(job: &Job) -> Value {
    serde_json::from_slice(&std::fs::read(job.path(".summary.json")).unwrap()).unwrap()
}

/// Requests the simulator answered, all routes together.
fn requests(s: &TestSim) -> u64 {
    s.stats()
        .by_route
        .iter()
        .filter(|(k, _)| k.contains("/api/v2/"))
        .flat_map(|(_, m)| m.values())
        .sum()
}

fn finished_at(r: &HashMap<String, String>) -> SystemTime {
    let t: jiff::Timestamp = r["finished_at"].parse().unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_millis(t.as_millisecond() as u64)
}

#[test]
fn another_clients_change_is_never_overruled_by_a_read_older_than_the_bound() {
    let s = TestSim::unlimited(4000);
    let writes = s.pick(100, |r, p| p == Profile::Active && acme(r));
    let noops = s.pick(200, |r, p| p == Profile::Active && acme(r))[100..].to_vec();
    // Each write paces the job (10/s); each no-op row between them is decided on a read.
    let mut body = String::from("iccid,action\n");
    for (w, n) in writes.iter().zip(&noops) {
        body += &format!("{w},deactivate\n{n},activate\n");
    }
    let job = Job::new("meddle.csv", &body);
    let summary_path = job.path(".summary.json");
    let mut child = job
        .command(&s, &["--summary-json"])
        .arg(&summary_path)
        .args(["--rate", "10", "--concurrency", "2", "--max-read-age", "2s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Once the job is writing, another client deactivates every SIM the no-op rows ask
    // to be active.
    let t0 = loop {
        if s.ledger().len() >= 10 {
            for n in &noops {
                assert!(
                    s.server()
                        .change_as_other(n, |sim| sim.status = "available".into())
                );
            }
            break SystemTime::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let rows = job.results();
    let bound = Duration::from_secs(2);
    // Slack for the results' millisecond clock and the meddling itself.
    let slack = Duration::from_millis(1500);
    let mut after = 0;
    for r in rows.iter().filter(|r| r["action"] == "activate") {
        let at = finished_at(r);
        if r["outcome"] == "skipped" {
            assert!(
                at <= t0 + bound + slack,
                "line {} skipped on a read older than the bound: {r:?}",
                r["line"]
            );
        }
        if at > t0 + bound + slack {
            after += 1;
            assert_eq!(r["outcome"], "ok", "{r:?}");
            assert_eq!(s.sim(&r["iccid"]).sim.status, "active", "{r:?}");
        }
    }
    assert!(
        after >= 40,
        "only {after} rows were decided after the change"
    );
    let sum = summary(&job);
    assert!(
        sum["reads"]["oldest_seconds"].as_f64().unwrap() <= 2.0,
        "{sum}"
    );
    // Reads are made shortly before their rows: the bound costs few extra calls.
    let reads = sum["calls"]["lists"].as_u64().unwrap() + sum["calls"]["reads"].as_u64().unwrap();
    assert!(reads <= 60, "{sum}");
}

#[test]
fn a_list_that_lags_the_jobs_own_writes_never_overrules_them() {
    let s = TestSim::start(SimConfig {
        faults: FaultConfig {
            list_lag: Duration::from_secs(10),
            ..Default::default()
        },
        ..SimConfig::unlimited(3000)
    });
    let avail = s.pick(60, |r, p| p == Profile::Available && acme(r));
    let active = s.pick(60, |r, p| p == Profile::Active && acme(r));
    // Every SIM's second row comes well after its first, in another window.
    let mut body = String::from("iccid,action\n");
    for a in &avail {
        body += &format!("{a},activate\n");
    }
    for a in &active {
        body += &format!("{a},suspend\n");
    }
    for a in &avail {
        body += &format!("{a},deactivate\n");
    }
    for a in &active {
        body += &format!("{a},unsuspend\n");
    }
    let job = Job::new("lag.csv", &body);
    let o = job.run(&s, &["--concurrency", "4"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = job.results();
    assert_eq!(outcomes(&rows).get("ok"), Some(&240), "{}", text(&o));
    for a in &avail {
        assert_eq!(s.sim(a).sim.status, "available");
    }
    for a in &active {
        assert!(!s.sim(a).sim.customer_suspend);
    }
    assert_eq!(s.ledger().len(), 240);
    assert!(requests(&s) <= 2 * 240 + 10, "{}", requests(&s));
}

#[test]
fn a_list_that_honours_one_iccid_turns_planning_off_with_no_6002_and_no_halt() {
    let s = TestSim::start(SimConfig {
        faults: FaultConfig {
            list_first_iccid_only: true,
            ..Default::default()
        },
        ..SimConfig::unlimited(3000)
    });
    let ids = s.pick(120, |r, p| p == Profile::Active && acme(r));
    let body = ids
        .iter()
        .map(|i| format!("{i},deactivate\n"))
        .collect::<String>();
    let job = Job::new("one.csv", &format!("iccid,action\n{body}"));
    let o = job.run(&s, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = job.results();
    assert_eq!(outcomes(&rows).get("ok"), Some(&120), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.matches("every row reads its own SIM").count(),
        1,
        "{err}"
    );
    assert!(requests(&s) <= 2 * 120 + 10, "{}", requests(&s));
}

#[test]
fn a_list_that_leaves_sims_out_costs_a_get_each_never_a_6002() {
    let s = TestSim::start(SimConfig {
        faults: FaultConfig {
            list_omit: 0.1,
            ..Default::default()
        },
        ..SimConfig::unlimited(3000)
    });
    let ids = s.pick(300, |r, p| p == Profile::Active && acme(r));
    let body = ids
        .iter()
        .map(|i| format!("{i},deactivate\n"))
        .collect::<String>();
    let job = Job::new("omit.csv", &format!("iccid,action\n{body}"));
    let o = job.run(&s, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(outcomes(&job.results()).get("ok"), Some(&300));
    // Writes, a list per window, and a GET for each SIM a list left out.
    let n = requests(&s);
    assert!((300..=300 + 3 + 60).contains(&n), "{n}");
    // A SIM nobody has is still 6002, confirmed by its own GET.
    let (_, past_the_end, _) = simbulk::sim::seed::iter(s.cfg.seed, 3001).last().unwrap();
    let unknown = past_the_end.sim.icc_id;
    let job = Job::new(
        "unknown.csv",
        &format!("iccid,action\n{unknown},deactivate\n"),
    );
    let o = job.run(&s, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(job.results()[0]["error_code"], "6002");
}

#[test]
fn after_kill_9_and_lost_answers_no_before_is_guessed_and_undo_deletes_nothing_that_was_there() {
    let s = TestSim::unlimited(2000);
    let ids = s.pick(60, |r, p| p == Profile::Active && acme(r));
    // The fleet before: SIMs 0..20 and 40..60 have a `site`, 20..40 have none.
    let api = s.api();
    let had: HashMap<String, String> = ids
        .iter()
        .enumerate()
        .filter(|(k, _)| !(20..40).contains(k))
        .map(|(k, i)| (i.clone(), format!("orig-{k}")))
        .collect();
    for i in &ids {
        for a in s.sim(i).attributes.iter().filter(|a| a.name == "site") {
            let path = format!("/api/v2/sim/{i}/attribute/{}", a.icc_attribute_id);
            assert!(s.block(api.delete(&path)).status < 300);
        }
        if let Some(v) = had.get(i) {
            let body = format!("{{\"name\":\"site\",\"value\":\"{v}\"}}");
            assert!(
                s.block(api.post(&format!("/api/v2/sim/{i}/attribute"), &body))
                    .status
                    < 300
            );
        }
    }
    // Answers lost after the change was made, on a quarter of the calls.
    s.server().set_faults(FaultConfig {
        latency: Duration::from_millis(5),
        apply_then_fail: 0.25,
        ..Default::default()
    });
    // Updates, creates, and deletes of what was there.
    let mut body = String::from("iccid,action,value,attribute\n");
    for (k, i) in ids.iter().enumerate() {
        match k {
            0..40 => body += &format!("{i},set-attribute,new,site\n"),
            _ => body += &format!("{i},delete-attribute,,site\n"),
        }
    }
    let job = Job::new("attrs.csv", &body);
    let code = kill_loop(&job, &s, &["--rate", "10", "--resume"], 6, 42);
    assert_eq!(code, Some(0));
    let rows = job.results();
    assert_eq!(rows.len(), 60);
    let mut unknown = Vec::new();
    for r in rows.iter().filter(|r| r["outcome"] == "ok") {
        let icc = &r["iccid"];
        match r["before_state"].as_str() {
            "value" => assert_eq!(Some(&r["before"]), had.get(icc), "{r:?}"),
            "absent" => assert!(!had.contains_key(icc), "{r:?}"),
            "unknown" => unknown.push(r["line"].clone()),
            other => panic!("before_state {other:?}: {r:?}"),
        }
    }
    // Undo writes what it knows and lists every unknown row; its run deletes nothing that
    // existed before the job.
    let results = job.path(".results.csv");
    let o = simbulk()
        .args(["undo", results.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let listed: Vec<String> = if unknown.is_empty() {
        assert!(!job.path(".undo.unknown.csv").exists());
        Vec::new()
    } else {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("left as they are"), "{err}");
        read_csv(&job.path(".undo.unknown.csv"), b',')
            .into_iter()
            .map(|r| r["line"].clone())
            .collect()
    };
    let mut sorted = unknown.clone();
    sorted.sort();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    assert_eq!(listed_sorted, sorted);
    let strict = simbulk()
        .args(["undo", results.to_str().unwrap(), "--strict"])
        .output()
        .unwrap();
    assert_eq!(
        strict.status.code(),
        Some(if unknown.is_empty() { 0 } else { 1 })
    );
    s.server().set_faults(FaultConfig::default());
    let undo_job = job.path(".undo.csv");
    let o = simbulk()
        .args(["run", undo_job.to_str().unwrap(), "--yes", "--rate", "0"])
        .args(["--base-url", &s.url()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let unknown_iccs: Vec<&String> = rows
        .iter()
        .filter(|r| unknown.contains(&r["line"]))
        .map(|r| &r["iccid"])
        .collect();
    for i in &ids {
        let site = s
            .sim(i)
            .attributes
            .into_iter()
            .find(|a| a.name == "site")
            .map(|a| a.value);
        if unknown_iccs.contains(&i) {
            // Left as the job left it.
            continue;
        }
        assert_eq!(site.as_ref(), had.get(i), "{i}");
    }
}

/// Runs `cmd` to its end and returns its exit code and its peak resident memory (the last
/// `VmHWM` read before it exited), in bytes.
fn peak_rss(cmd: &mut std::process::Command) -> (Option<i32>, u64) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_file)
            && let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kb * 1024);
        }
        if let Some(st) = child.try_wait().unwrap() {
            return (st.code(), peak);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn memory_stays_flat_with_invalid_rows_and_on_a_resume_of_mostly_done_rows() {
    const BOUND: u64 = 64 << 20;
    let s = TestSim::unlimited(1000);
    let ids = s.pick(10, |r, p| p == Profile::Active && acme(r));
    // Nearly every row invalid: none needs a read, so none may pile up behind one.
    let mut body = String::from("iccid,action\n");
    for _ in 0..200_000 {
        body += "12345,activate\n";
    }
    for i in &ids {
        body += &format!("{i},suspend\n");
    }
    let job = Job::new("invalid.csv", &body);
    let (code, peak) = peak_rss(&mut job.command(&s, &[]));
    assert_eq!(code, Some(1));
    assert!(peak > 0 && peak < BOUND, "peak {} MiB", peak >> 20);
    assert_eq!(job.results().len(), 200_010);
    // The same rows again as a resume with every row but the last ten done.
    let (code, _) = {
        std::fs::remove_file(job.path(".results.csv")).unwrap();
        std::fs::remove_file(job.path(".failures.csv")).unwrap();
        std::fs::remove_file(job.path(".checkpoint")).unwrap();
        s.server().set_faults(FaultConfig {
            latency: Duration::from_secs(30),
            ..Default::default()
        });
        peak_rss(&mut job.command(
            &s,
            &[
                "--max-duration",
                "3s",
                "--timeout",
                "1s",
                "--max-retries",
                "0",
            ],
        ))
    };
    assert_eq!(code, Some(75));
    s.server().set_faults(FaultConfig::default());
    let (code, peak) = peak_rss(&mut job.command(&s, &["--resume"]));
    assert_eq!(code, Some(1));
    assert!(peak > 0 && peak < BOUND, "peak {} MiB", peak >> 20);
    assert_eq!(job.results().len(), 200_010);
}

#[test]
fn verify_names_exactly_the_sims_another_client_changed_after_the_job() {
    let s = TestSim::unlimited(3000);
    let avail = s.pick(200, |r, p| p == Profile::Available && acme(r));
    let pkg = s.pick(100, |r, p| {
        p == Profile::Available
            && r.sim.portfolio_id == "pf-acme-eu"
            && r.sim.package_id == 20417
            && !avail.contains(&r.sim.icc_id)
    });
    let mut body = String::from("iccid,action,value\n");
    for a in &avail {
        body += &format!("{a},activate,\n");
    }
    for p in &pkg {
        body += &format!("{p},set-package,20533\n");
    }
    let job = Job::new("verify.csv", &body);
    let o = job.run(&s, &["--verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("all 300 SIMs are as the job left them"));
    let results = job.path(".results.csv");
    let verify = |extra: &[&str]| {
        simbulk()
            .args([
                "verify",
                results.to_str().unwrap(),
                "--base-url",
                &s.url(),
                "--rate",
                "0",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let before = requests(&s);
    let o = verify(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // One list call per 100 SIMs (and the token).
    assert!(requests(&s) - before <= 4, "{}", requests(&s) - before);
    // Another client reverts ten activations and five package changes.
    for a in &avail[..10] {
        assert!(
            s.server()
                .change_as_other(a, |sim| sim.status = "available".into())
        );
    }
    for p in &pkg[..5] {
        assert!(s.server().change_as_other(p, |sim| sim.package_id = 20417));
    }
    let o = verify(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("15 of 300 SIMs differ"), "{out}");
    for a in &avail[..10] {
        assert!(
            out.contains(&format!("{a} status: the job left active, now available")),
            "{out}"
        );
    }
    for p in &pkg[..5] {
        assert!(
            out.contains(&format!("{p} packageId: the job left 20533, now 20417")),
            "{out}"
        );
    }
    assert_eq!(
        out.lines().filter(|l| l.starts_with("  ")).count(),
        15,
        "{out}"
    );
    let page = job.path(".verify.html");
    let o = verify(&["--json", "--html", page.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["differ"], 15);
    let listed: Vec<&str> = doc["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["iccid"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = avail[..10]
        .iter()
        .chain(&pkg[..5])
        .map(String::as_str)
        .collect();
    let mut got = listed.clone();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want);
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<tr><td>").count(), 15);
    assert!(html.contains("id=\"verify\""));
}
