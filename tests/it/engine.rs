//! The engine end to end: the real binary against the in-process simulator.

use std::collections::HashMap;
use std::time::Duration;

use simbulk::sim::seed::Profile;
use simbulk::sim::{FaultConfig, SimConfig};

use crate::support::*;

fn eu(r: &simbulk::sim::state::SimRecord) -> bool {
    r.sim.portfolio_id == "pf-acme-eu" && r.sim.package_id == 20417
}

#[test]
fn every_action_runs_and_every_input_row_gets_exactly_one_results_row() {
    let s = TestSim::unlimited(2000);
    let mut avail = s.pick(4, |r, p| p == Profile::Available && eu(r));
    avail[2] = s
        .pick(1, |r, p| {
            p == Profile::Available
                && r.sim.portfolio_id == "pf-acme-eu"
                && r.sim.package_id == 20418
        })
        .remove(0);
    let active = s.pick(3, |r, p| p == Profile::Active && eu(r));
    let mut susp = s.pick(1, |r, p| p == Profile::CustomerSuspended && eu(r));
    susp.extend(s.pick(1, |r, p| {
        p == Profile::CustomerSuspended
            && acme(r)
            && r.attributes.iter().any(|a| a.name == "orderId")
    }));
    let tagged = s.pick(1, |r, p| {
        p == Profile::Active
            && eu(r)
            && r.attributes.iter().any(|a| a.name == "friendlyName")
            && !active.contains(&r.sim.icc_id)
    });
    let rows = [
        format!("{},activate,,,PO-1", avail[0]),
        format!("{},ACTIVATE,,,PO-2", active[0]),
        format!("{},deactivate,,,PO-3", active[1]),
        format!("{},suspend,,,PO-4", active[2]),
        format!("{},unsuspend,,,PO-5", susp[0]),
        format!("{},set-package,20533,,PO-6", avail[1]),
        format!("{},change-portfolio,pf-acme-us,,PO-7", avail[2]),
        format!("{},set-attribute,blue,colour,PO-8", avail[3]),
        format!("{},set-attribute,renamed,friendlyName,PO-9", tagged[0]),
        format!("{},delete-attribute,,orderId,PO-10", susp[1]),
        format!("{},delete-attribute,,nothing-here,PO-11", avail[3]),
        "8944500990000012343,activate,,,PO-12".to_string(),
        format!("{},explode,,,PO-13", avail[0]),
        format!("{},set-package,,,PO-14", avail[0]),
        format!("{},set-package,20420,,=HYPERLINK(\"x\")", avail[1]),
    ];
    let job = Job::new(
        "mixed.csv",
        &format!("iccid,action,value,attribute,order\n{}\n", rows.join("\n")),
    );
    let out = job.run(&s, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let results = job.results();
    let mut lines: Vec<u64> = results.iter().map(|r| r["line"].parse().unwrap()).collect();
    lines.sort();
    assert_eq!(
        lines,
        (2..=16).collect::<Vec<u64>>(),
        "one row per input line"
    );
    let by_line: HashMap<u64, &HashMap<String, String>> = results
        .iter()
        .map(|r| (r["line"].parse().unwrap(), r))
        .collect();
    let outcome = |l: u64| by_line[&l]["outcome"].as_str();
    assert_eq!(outcome(2), "ok");
    assert_eq!(by_line[&2]["sim_status"], "active");
    assert_eq!(outcome(3), "skipped", "already active: 6047");
    assert_eq!(by_line[&3]["error_code"], "");
    for l in [4, 5, 6, 7, 8, 9, 10] {
        assert_eq!(outcome(l), "ok", "line {l}: {:?}", by_line[&l]);
    }
    assert_eq!(by_line[&5]["sim_status"], "active+suspended");
    assert_eq!(outcome(11), "failed", "suspended SIM: {:?}", by_line[&11]);
    assert_eq!(by_line[&11]["error_code"], "16000");
    assert_eq!(outcome(12), "skipped");
    for l in [13, 14, 15] {
        assert_eq!(outcome(l), "invalid");
    }
    assert!(by_line[&13]["message"].contains("Luhn"));
    assert!(by_line[&14]["message"].contains("unknown action"));
    assert!(by_line[&15]["message"].contains("--value"));
    assert_eq!(outcome(16), "failed");
    assert_eq!(by_line[&16]["error_code"], "16006");
    assert_eq!(
        by_line[&16]["order"], "'=HYPERLINK(\"x\")",
        "formulas are defused"
    );
    assert_eq!(by_line[&2]["order"], "PO-1", "carried through");
    assert_eq!(s.sim(&avail[1]).sim.package_id, 20533);
    assert_eq!(s.sim(&avail[2]).sim.portfolio_id, "pf-acme-us");
    assert!(
        s.sim(&avail[3])
            .attributes
            .iter()
            .any(|a| a.name == "colour" && a.value == "blue")
    );
    assert!(
        s.sim(&tagged[0])
            .attributes
            .iter()
            .any(|a| a.name == "friendlyName" && a.value == "renamed")
    );
    // The failures file re-runs exactly the failed and invalid rows, in the input's columns.
    let failures = job.failures_text();
    assert!(failures.starts_with("iccid,action,value,attribute,order\n"));
    assert_eq!(failures.lines().count(), 1 + 5, "{failures}");
    assert!(failures.contains("=HYPERLINK"), "kept as in the input");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("16000") && summary.contains("results:"),
        "{summary}"
    );
}

#[test]
fn headerless_lists_semicolons_tabs_and_boms_all_read() {
    let s = TestSim::unlimited(1000);
    let ids = s.pick(6, |r, p| p == Profile::Available && eu(r));
    let bare = Job::new("bare.txt", &format!("{}\r\n{}\r\n", ids[0], ids[1]));
    let o = bare.run(&s, &["--action", "activate"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(outcomes(&bare.results())["ok"], 2);
    let o = bare.run(&s, &["--restart"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a bare list needs --action: {}",
        text(&o)
    );
    let semi = Job::new(
        "semi.csv",
        &format!(
            "\u{feff}ICCID;Action;Note\n{};suspend;x\n{};activate;y\n",
            ids[0], ids[2]
        ),
    );
    let o = semi.run(&s, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        semi.results()
            .iter()
            .map(|r| r["Note"].clone())
            .collect::<Vec<_>>()
            .len(),
        2
    );
    let tab = Job::new(
        "tab.tsv",
        &format!("iccid\tvalue\n{}\t20533\n{}\t20533\n", ids[3], ids[4]),
    );
    let o = tab.run(&s, &["--action", "set-package"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(s.sim(&ids[4]).sim.package_id, 20533);
}

#[test]
fn rows_of_one_sim_run_in_file_order() {
    let s = TestSim::unlimited(2000);
    let ids = s.pick(10, |r, p| p == Profile::Active && eu(r));
    let mut body = toggle_body(&ids, 4);
    for id in &ids[..5] {
        body += &format!("{id},suspend\n");
    }
    let job = Job::new("order.csv", &body);
    let o = job.run(&s, &["--concurrency", "32"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(s.sim(id).sim.customer_suspend, i < 5, "{id}");
        let seq: Vec<bool> = s
            .ledger()
            .iter()
            .filter(|e| &e.icc_id == id)
            .map(|e| e.new.as_bool().unwrap())
            .collect();
        let want: Vec<bool> = [true, false, true, false]
            .into_iter()
            .chain((i < 5).then_some(true))
            .collect();
        assert_eq!(seq, want, "{id}");
    }
}

#[test]
fn a_429_storm_ends_with_every_row_ok_and_the_server_never_sees_more_than_rate_plus_burst() {
    let s = TestSim::start(SimConfig {
        rate_limit_per_second: 40,
        rate_limit_burst: 5,
        ..SimConfig::unlimited(1000)
    });
    let ids = s.pick(180, |r, p| p == Profile::Available && acme(r));
    let job = Job::new("storm.csv", &(ids.join("\n") + "\n"));
    let mut cmd = simbulk();
    cmd.arg("run")
        .arg(&job.input)
        .arg("--base-url")
        .arg(s.url())
        .args([
            "--action",
            "activate",
            "--rate",
            "60",
            "--burst",
            "5",
            "--concurrency",
            "16",
        ]);
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(outcomes(&job.results())["ok"], 180);
    let st = s.stats();
    assert!(st.too_many_requests > 0, "the storm happened");
    assert!(
        st.peak_per_second <= 60 + 5 + 1,
        "peak {} per second: {:?}",
        st.peak_per_second,
        st.per_second
    );
}

#[test]
fn faults_end_with_every_row_ok_and_no_duplicate_attribute() {
    let s = TestSim::start(SimConfig {
        faults: FaultConfig {
            http503: 0.1,
            drop: 0.05,
            apply_then_fail: 0.15,
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(2000)
    });
    let ids = s.pick(120, |r, p| p == Profile::Available && acme(r));
    let mut body = String::from("iccid,action,attribute,value\n");
    for (i, id) in ids.iter().enumerate() {
        body +=
            &format!("{id},set-attribute,tag,t{i}\n{id},activate,,\n{id},set-attribute,tag,u{i}\n");
    }
    let job = Job::new("faults.csv", &body);
    let o = job.run(&s, &["--max-retries", "12"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let results = job.results();
    assert_eq!(results.len(), 360);
    assert_eq!(outcomes(&results)["ok"], 360, "{:?}", outcomes(&results));
    assert_no_repeated_effect(&s);
    let creates = s
        .ledger()
        .iter()
        .filter(|e| e.kind == "attribute.create")
        .count();
    assert_eq!(creates, 120, "one create per SIM");
    assert_active_and_tagged(&s, &ids, "tag", |i| format!("u{i}"));
    assert!(
        s.stats()
            .faults_injected
            .get("applyThenFail")
            .copied()
            .unwrap_or(0)
            > 0
    );
}

#[test]
fn tokens_expiring_every_second_fail_no_row() {
    let s = TestSim::start(SimConfig {
        token_ttl: Duration::from_secs(1),
        faults: FaultConfig {
            latency: Duration::from_millis(5),
            revoke: 0.02,
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(2000)
    });
    let ids = s.pick(300, |r, p| p == Profile::Available && acme(r));
    let job = Job::new("tokens.csv", &(ids.join("\n") + "\n"));
    let o = job.run(
        &s,
        &[
            "--action",
            "activate",
            "--rate",
            "150",
            "--concurrency",
            "8",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(outcomes(&job.results())["ok"], 300);
    assert!(s.stats().token_requests >= 2);
}

#[test]
fn permission_denied_halts_the_job_with_exit_3() {
    let s = TestSim::unlimited(500);
    let ids = s.pick(50, |r, p| p == Profile::Available && acme(r));
    let job = Job::new("ro.csv", &(ids.join("\n") + "\n"));
    let o = job
        .command(&s, &["--action", "activate", "--concurrency", "2"])
        .env("SIMBULK_CLIENT_ID", "sim-readonly-client")
        .env("SIMBULK_CLIENT_SECRET", "s3cr3t-readonly")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("permission"),
        "{}",
        text(&o)
    );
    assert!(job.results().len() < 50, "stopped early");
    assert!(s.ledger().is_empty());
}

#[test]
fn refused_credentials_and_an_unreachable_api_stop_before_anything_is_written() {
    let s = TestSim::unlimited(100);
    let ids = s.pick(3, |r, _| acme(r));
    let job = Job::new("creds.csv", &(ids.join("\n") + "\n"));
    let o = job
        .command(&s, &["--action", "activate"])
        .env("SIMBULK_CLIENT_SECRET", "wrong")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refused the client credentials"));
    assert!(!job.path(".results.csv").exists());
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let o = simbulk()
        .arg("run")
        .arg(&job.input)
        .args([
            "--action",
            "activate",
            "--base-url",
            &url,
            "--timeout",
            "1s",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot reach"),
        "{}",
        text(&o)
    );
    assert!(!job.path(".results.csv").exists() && !job.path(".checkpoint").exists());
}

#[test]
fn re_running_the_failures_file_does_exactly_the_failed_rows() {
    let s = TestSim::unlimited(2000);
    let good = s.pick(5, |r, p| p == Profile::Available && eu(r));
    let susp = s.pick(3, |r, p| p == Profile::CustomerSuspended && eu(r));
    let mut body = String::from("iccid,action,value,ref\n");
    for id in good.iter().chain(&susp) {
        body += &format!("{id},set-portfolio,pf-acme-us,r-{id}\n");
    }
    // set-portfolio to us needs a linked package: 20417 is EU-only, so these fail 16001.
    let job = Job::new("move.csv", &body);
    let o = job.run(&s, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let f = job.failures_text();
    assert_eq!(f.lines().count(), 1 + 8);
    // Fix the cause: move them to a package both portfolios offer, and unsuspend.
    let api = s.api();
    s.block(async {
        for id in &susp {
            api.patch(&format!("/api/v2/sim/{id}"), r#"{"customerSuspend":false}"#)
                .await;
        }
    });
    let fix = Job::new(
        "fix.csv",
        &rows_body("iccid,action,value", &good, |i| {
            format!("{i},set-package,20418")
        }),
    );
    let o = fix.run(&s, &[]);
    assert!(o.status.code().is_some(), "{}", text(&o));
    let rerun = Job::new("move.failures.csv", &f);
    let o = rerun.run(&s, &[]);
    let r = rerun.results();
    assert_eq!(r.len(), 8, "{}", text(&o));
    assert!(
        good.iter()
            .all(|i| s.sim(i).sim.portfolio_id == "pf-acme-us"),
        "{}",
        text(&o)
    );
    assert_eq!(outcomes(&r)["ok"], 5);
    assert_eq!(
        r.iter().filter(|x| x["ref"].starts_with("r-")).count(),
        8,
        "carried columns survive the round trip"
    );
}

#[test]
fn no_secret_or_token_appears_in_any_output_even_at_trace_level() {
    let s = TestSim::start(SimConfig {
        token_ttl: Duration::from_secs(1),
        faults: FaultConfig {
            http503: 0.1,
            drop: 0.05,
            apply_then_fail: 0.05,
            revoke: 0.05,
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(500)
    });
    let ids = s.pick(60, |r, p| p == Profile::Available && acme(r));
    let mut body = String::from("iccid,action,attribute,value\n");
    for id in &ids {
        body += &format!("{id},set-attribute,k,v\n");
    }
    body += "123,activate,,\n";
    let job = Job::new("secret.csv", &body);
    let secret_file = job.dir.path().join("secret.txt");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(
        &secret_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let o = job
        .command(&s, &["-vv", "--log-format", "json"])
        .env_remove("SIMBULK_CLIENT_SECRET")
        .arg("--client-secret-file")
        .arg(&secret_file)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let mut haystacks = vec![
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    ];
    for suffix in [".results.csv", ".failures.csv", ".checkpoint"] {
        haystacks.push(std::fs::read_to_string(job.path(suffix)).unwrap());
    }
    assert!(haystacks[1].len() > 1000, "trace logging produced output");
    for h in &haystacks {
        assert!(!h.contains(SECRET), "the client secret leaked");
        assert!(!h.contains("sim_at_"), "a bearer token leaked");
        assert!(!h.contains(&base64_basic()), "the basic credentials leaked");
    }
}

fn base64_basic() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{SECRET}", simbulk::sim::DEMO_CLIENT_ID))
}

#[test]
fn dry_run_validates_everything_and_sends_nothing() {
    let s = TestSim::unlimited(100);
    let ids = s.pick(2, |r, _| acme(r));
    let job = Job::new(
        "dry.csv",
        &format!(
            "iccid,action,value\n{},activate,\n{},set-package,20533\n123,activate,\n",
            ids[0], ids[1]
        ),
    );
    let o = job.run(&s, &["--dry-run"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("e.g. line 4:") && out.contains("activate") && out.contains("set-package"),
        "{out}"
    );
    let good = Job::new("dry2.csv", &format!("iccid,action\n{},activate\n", ids[0]));
    assert_eq!(good.run(&s, &["--dry-run"]).status.code(), Some(0));
    assert_eq!(s.stats().requests, 0);
    assert!(!job.path(".results.csv").exists());
}

#[test]
fn a_bad_file_stops_before_any_call_with_file_line_and_fix() {
    let s = TestSim::unlimited(100);
    let cases: [(&str, &[u8], &str); 4] = [
        ("nohead.csv", b"sim,action\n1,activate\n", "no iccid column"),
        ("empty.csv", b"", "is empty"),
        ("utf16.csv", b"\xFF\xFEi\x00c\x00", "UTF-16"),
        ("dup.csv", b"iccid,action,ICCID\n", "appears twice"),
    ];
    for (name, bytes, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let o = run_file(&p, &s);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want) && err.contains(name), "{name}: {err}");
    }
    let o = simbulk()
        .args(["run", "/no/such/file.csv", "--base-url"])
        .arg(s.url())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/no/such/file.csv"));
    let job = Job::new("plain.csv", "iccid,action\n");
    let o = simbulk()
        .arg("run")
        .arg(&job.input)
        .args(["--base-url", "http://sim.example.com"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("https"));
    assert_eq!(s.stats().requests, 0);
}

#[test]
fn outputs_that_point_at_the_input_or_at_each_other_are_refused() {
    let s = TestSim::unlimited(100);
    let job = Job::new("paths.csv", "iccid,action\n");
    let input = job.input.to_str().unwrap().to_owned();
    let same = job.dir.path().join("x.csv");
    let same = same.to_str().unwrap();
    for extra in [
        vec!["--results", input.as_str()],
        vec!["--results", same, "--failures", same],
        vec!["--checkpoint", input.as_str()],
    ] {
        let o = job.run(&s, &extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("same file"));
    }
    assert_eq!(
        std::fs::read_to_string(&job.input).unwrap(),
        "iccid,action\n"
    );
}
