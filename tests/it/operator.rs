//! Operator features: export, preview against live state, waiting for activation, the
//! morning-after report (text and HTML in a real headless browser), completions and man page.

use std::collections::HashSet;
use std::time::Duration;

use simbulk::sim::seed::Profile;
use simbulk::sim::{FaultConfig, SimConfig};

use crate::support::*;

#[test]
fn export_follows_every_page_with_filters_while_sims_change_and_feeds_run() {
    let s = TestSim::unlimited(3000);
    let expected: HashSet<String> = s
        .pick(usize::MAX, |r, p| {
            p == Profile::Available && r.sim.portfolio_id == "pf-acme-eu"
        })
        .into_iter()
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export.csv");
    let mut export = simbulk();
    export
        .args([
            "export",
            "--status",
            "available",
            "--portfolio-id",
            "pf-acme-eu",
            "--page-size",
            "23",
            "--rate",
            "0",
            "--base-url",
        ])
        .arg(s.url())
        .arg("-o")
        .arg(&out);
    let child = spawn_piped(export);
    // Changes underneath: new attributes on SIMs of the selection.
    let api = s.api();
    s.block(async {
        for icc in expected.iter().take(150) {
            api.post(
                &format!("/api/v2/sim/{icc}/attribute"),
                r#"{"name":"during","value":"export"}"#,
            )
            .await;
        }
    });
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = read_csv(&out, b',');
    let got: Vec<String> = rows.iter().map(|r| r["iccid"].clone()).collect();
    assert_eq!(
        got.iter().cloned().collect::<HashSet<_>>().len(),
        got.len(),
        "no repeats"
    );
    assert_eq!(
        got.iter().cloned().collect::<HashSet<_>>(),
        expected,
        "no skips"
    );
    assert!(
        rows.iter()
            .all(|r| r["status"] == "available" && r["portfolioId"] == "pf-acme-eu")
    );
    assert!(
        s.stats().by_route["GET /api/v2/sim"]["200"] > 10,
        "many pages"
    );
    // The export is a job input as it is.
    let job = Job::new("export.csv", &std::fs::read_to_string(&out).unwrap());
    let o = job.run(
        &s,
        &[
            "--action",
            "set-attribute",
            "--attribute",
            "batch",
            "--value",
            "b1",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(outcomes(&job.results())["ok"], expected.len());
    assert!(
        job.results()
            .iter()
            .all(|r| r["portfolioId"] == "pf-acme-eu"),
        "columns carried through"
    );
}

#[test]
fn export_with_attributes_and_an_iccid_list() {
    let s = TestSim::unlimited(500);
    let ids = s.pick(150, |r, _| acme(r));
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, ids.join("\n") + "\n").unwrap();
    let out = dir.path().join("e.csv");
    let o = simbulk()
        .args(["export", "--with-attributes", "--rate", "0", "--base-url"])
        .arg(s.url())
        .arg("--iccid-file")
        .arg(&list)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = read_csv(&out, b',');
    assert_eq!(
        rows.len(),
        150,
        "150 ICCIDs over two requests of at most 100"
    );
    let tagged: Vec<_> = rows
        .iter()
        .filter(|r| !r["attr:friendlyName"].is_empty())
        .collect();
    assert!(!tagged.is_empty());
    for r in tagged {
        assert_eq!(
            s.sim(&r["iccid"])
                .attributes
                .iter()
                .find(|a| a.name == "friendlyName")
                .unwrap()
                .value,
            r["attr:friendlyName"]
        );
    }
}

#[test]
fn preview_predicts_from_live_state_and_sends_no_write() {
    let s = TestSim::unlimited(2000);
    let avail = s
        .pick(1, |r, p| p == Profile::Available && acme(r))
        .remove(0);
    let active = s.pick(2, |r, p| {
        p == Profile::Active && r.sim.portfolio_id == "pf-acme-eu"
    });
    let susp = s
        .pick(1, |r, p| p == Profile::CustomerSuspended && acme(r))
        .remove(0);
    let unknown = simbulk::input::with_check_digit("894450019999999999");
    let body = format!(
        "iccid,action,value\n{avail},activate,\n{},activate,\n{susp},deactivate,\n{},set-package,20533\n{unknown},activate,\n123,activate,\n",
        active[0], active[1]
    );
    let job = Job::new("plan.csv", &body);
    let o = job.run(&s, &["--preview"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let p = read_csv(&job.path(".preview.csv"), b',');
    let by_line = |l: &str| p.iter().find(|r| r["line"] == l).unwrap().clone();
    assert_eq!(by_line("2")["outcome"], "ok");
    assert_eq!(by_line("3")["outcome"], "skipped");
    assert_eq!(
        (
            by_line("4")["outcome"].as_str(),
            by_line("4")["error_code"].as_str()
        ),
        ("failed", "16000")
    );
    assert_eq!(by_line("5")["error_code"], "6046");
    assert_eq!(by_line("6")["error_code"], "6002");
    assert_eq!(by_line("7")["outcome"], "invalid");
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing was changed"));
    assert!(s.ledger().is_empty(), "no write was sent");
    let st = s.stats();
    assert!(
        st.by_route
            .keys()
            .all(|k| k.starts_with("GET") || k.starts_with("POST /oauth2")),
        "{:?}",
        st.by_route.keys()
    );
}

#[test]
fn wait_active_polls_pending_activations_until_they_come_up() {
    let s = TestSim::start(SimConfig {
        activation_delay: Duration::from_secs(2),
        ..SimConfig::unlimited(1000)
    });
    let ids = s.pick(20, |r, p| p == Profile::Available && acme(r));
    let job = Job::new("ship.csv", &(ids.join("\n") + "\n"));
    let o = job.run(
        &s,
        &[
            "--action",
            "activate",
            "--wait-active",
            "20s",
            "--concurrency",
            "2",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = job.results();
    assert!(r.iter().all(|x| x["sim_status"] == "active"), "{r:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("ok 20"));
    // Waiting rows free their slot: 20 rows, 2 slots, 2 s each would take 20 s otherwise.
    // A SIM still pending when the wait ends is `pending`: exit 1, in the failures file.
    let slow = TestSim::start(SimConfig {
        activation_delay: Duration::from_secs(4),
        ..SimConfig::unlimited(1000)
    });
    let job = Job::new("ship2.csv", &(ids[..5].join("\n") + "\n"));
    let o = job.run(&slow, &["--action", "activate", "--wait-active", "500ms"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r = job.results();
    assert!(
        r.iter()
            .all(|x| x["outcome"] == "pending" && x["sim_status"] == "pendingProvision"),
        "{r:?}"
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("5 still pendingProvision"), "{out}");
    assert!(out.contains("pending 5"), "{out}");
    let failures = job.path(".failures.csv");
    assert_eq!(
        std::fs::read_to_string(&failures).unwrap().lines().count(),
        5
    );
    // The failures file polls them again, and sends no second activation.
    let patches = || {
        slow.stats()
            .by_route
            .get("PATCH /api/v2/sim/{iccId}")
            .map_or(0, |m| m.values().sum::<u64>())
    };
    let writes = patches();
    let again = Job::new(
        "ship2.failures.csv",
        &std::fs::read_to_string(&failures).unwrap(),
    );
    let o = again.run(&slow, &["--action", "activate", "--wait-active", "30s"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = again.results();
    assert!(
        r.iter()
            .all(|x| x["outcome"] == "skipped" && x["sim_status"] == "active"),
        "{r:?}"
    );
    assert_eq!(patches(), writes, "no second activation");
}

#[test]
fn report_summarises_a_resumed_run_in_text_and_in_a_browser() {
    let s = TestSim::start(SimConfig {
        faults: FaultConfig {
            latency: Duration::from_millis(15),
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(2000)
    });
    let good = s.pick(120, |r, p| p == Profile::Available && acme(r));
    let susp = s.pick(10, |r, p| p == Profile::CustomerSuspended && acme(r));
    let mut body = String::from("iccid,action,note\n");
    for id in &good {
        body += &format!("{id},activate,<b>x</b>\n");
    }
    for id in &susp {
        body += &format!("{id},deactivate,=1+1\n");
    }
    body += "42,activate,\n";
    let job = Job::new("night.csv", &body);
    let o = job.run(&s, &["--max-duration", "400ms", "--concurrency", "2"]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    let o = job.run(&s, &["--resume"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
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
        t.contains("rows:       131 (ok 120 (91.6 %), skipped 0 (0.0 %), failed 10 (7.6 %), invalid 1 (0.8 %))"),
        "{t}"
    );
    assert!(t.contains("error 16000"), "{t}");
    assert!(!t.contains("appear more than once"));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("<script") && !page.contains("http://") && !page.contains("https://"),
        "self-contained"
    );
    assert!(page.contains("<svg"));
    // The page as a browser renders it.
    let Some(dom) = render(&html) else { return };
    assert!(
        dom.contains("id=\"ok\">120<")
            && dom.contains("id=\"failed\">10<")
            && dom.contains("id=\"invalid\">1<"),
        "rendered numbers: {}",
        &dom[..dom.len().min(2000)]
    );
    assert!(dom.contains("16000") && dom.contains("Throughput over time"));
}

#[test]
fn completions_and_the_man_page_generate() {
    for shell in ["bash", "zsh", "fish"] {
        let o = simbulk().args(["completions", shell]).output().unwrap();
        assert!(o.status.success());
        let t = String::from_utf8_lossy(&o.stdout);
        assert!(t.contains("simbulk") && t.contains("resume"), "{shell}");
    }
    let o = simbulk().arg("man").output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains(".TH simbulk"));
}

#[test]
fn summary_json_is_written_for_monitoring() {
    let s = TestSim::unlimited(300);
    let ids = s.pick(5, |r, p| p == Profile::Available && acme(r));
    let job = Job::new("mon.csv", &(ids.join("\n") + "\n"));
    let j = job.dir.path().join("summary.json");
    let o = job.run(
        &s,
        &[
            "--action",
            "activate",
            "--summary-json",
            j.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    assert_eq!(v["job"]["ok"], 5);
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["state"], "completed");
}

#[test]
fn the_readme_demo_runs_its_jobs_to_the_end_on_both_providers() {
    let dir = tempfile::tempdir().unwrap();
    let o = simbulk()
        .arg("demo")
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.matches("simbulk: job completed").count(), 4, "{out}");
    for sample in [
        "shipment-activation",
        "package-migration",
        "attribute-tagging",
        "super-sim-fleet",
    ] {
        let results = dir.path().join(format!("{sample}.results.csv"));
        assert!(results.exists(), "{} is missing:\n{out}", results.display());
    }
    // On the second provider every written row is ok only once its SIM showed the change.
    let rows = read_csv(&dir.path().join("super-sim-fleet.results.csv"), b',');
    assert!(rows.iter().any(|r| r["outcome"] == "ok"), "{rows:?}");
    assert!(
        rows.iter()
            .filter(|r| r["outcome"] == "ok")
            .all(|r| r["message"].contains(" after ")),
        "{rows:?}"
    );
}

#[test]
fn the_demo_kept_up_prints_a_re_run_that_runs_as_printed() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let mut demo = simbulk()
        .arg("demo")
        .arg("--dir")
        .arg(dir.path())
        .arg("--keep")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The demo's standard output stays open until the end: a demo whose reader is gone stops.
    let mut lines = std::io::BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let hint = lines
        .by_ref()
        .map_while(Result::ok)
        .inspect(|l| seen.push_str(&format!("{l}\n")))
        .find(|l| l.trim_start().starts_with("SIMBULK_CLIENT_ID="));
    let Some(hint) = hint else {
        let _ = demo.kill();
        panic!("no re-run hint:\n{seen}");
    };
    assert!(
        seen.contains("on purpose"),
        "the seeded failures are named:\n{seen}"
    );
    // `VAR=value … simbulk run ARGS…`, as a shell would run it.
    let words = shell_words(&hint);
    let at = words.iter().position(|w| w == "simbulk").unwrap();
    let mut rerun = bare();
    for kv in &words[..at] {
        let (k, v) = kv.split_once('=').unwrap();
        rerun.env(k, v);
    }
    let o = rerun.args(&words[at + 1..]).output().unwrap();
    let _ = demo.kill();
    let _ = demo.wait();
    drop(lines);
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{hint:?} does not run as printed: {}",
        text(&o)
    );
}

/// `simbulk report FILE --html PAGE`; the page's text.
fn html_report(file: &std::path::Path, page: &std::path::Path) -> String {
    let o = simbulk()
        .arg("report")
        .arg(file)
        .arg("--html")
        .arg(page)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    std::fs::read_to_string(page).unwrap()
}

#[test]
fn preview_and_mostly_failed_pages_say_what_they_are_in_a_browser() {
    let s = TestSim::unlimited(300);
    let ids = s.pick(4, |r, p| p == Profile::Available && acme(r));
    // Most rows name SIMs the provider does not know: the job is mostly failed.
    let mut body = String::from("iccid,action\n");
    for id in &ids {
        body += &format!("{id},activate\n");
    }
    for i in 0..6 {
        let unknown = simbulk::input::with_check_digit(&format!("8944500199999{i:05}"));
        body += &format!("{unknown},activate\n");
    }
    let job = Job::new("most.csv", &body);
    let o = job.run(&s, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let page = html_report(&job.path(".results.csv"), &job.dir.path().join("r.html"));
    assert!(
        page.contains("id=\"state\"><span class=\"key red\">"),
        "a 60 %-failed job is red"
    );
    assert!(
        !page.contains("id=\"banner\""),
        "a run's results have no banner"
    );
    // The same job as a preview: its page opens with what it is, and its key.
    let preview = Job::new("ahead.csv", &body);
    let o = preview.run(&s, &["--preview"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let html = preview.dir.path().join("p.html");
    let page = html_report(&preview.path(".preview.csv"), &html);
    assert!(page.contains("PREVIEW — nothing was sent"), "{page}");
    assert!(page.contains("ok = would change"), "{page}");
    let Some(dom) = render(&html) else { return };
    assert!(
        dom.contains("id=\"banner\">PREVIEW — nothing was sent") && dom.contains("id=\"key\">"),
        "{}",
        &dom[..dom.len().min(2000)]
    );
}
