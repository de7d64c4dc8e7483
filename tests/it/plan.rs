//! Knowing before writing: the planning stage's batch reads, rows skipped without a write,
//! the state carried from row to row, create-first attributes, undo, the preview as the
//! planning stage alone, the canary and the confirmation.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::Value;
use simbulk::sim::seed::Profile;
use simbulk::sim::{FaultConfig, SimConfig};

use crate::support::*;

/// Requests the simulator answered on one route, by status.
fn route(s: &TestSim, key: &str) -> BTreeMap<String, u64> {
    s.stats().by_route.get(key).cloned().unwrap_or_default()
}

fn total(m: &BTreeMap<String, u64>) -> u64 {
    m.values().sum()
}

/// What undo must put back: status, suspension, package, portfolio, attributes by name.
type State = (String, bool, i64, String, BTreeMap<String, String>);

fn state(s: &TestSim, icc: &str) -> State {
    let r = s.sim(icc);
    let attrs = r
        .attributes
        .iter()
        .map(|a| (a.name.clone(), a.value.clone()))
        .collect();
    (
        r.sim.status,
        r.sim.customer_suspend,
        r.sim.package_id,
        r.sim.portfolio_id,
        attrs,
    )
}

fn summary_json(job: &Job) -> Value {
    serde_json::from_slice(&std::fs::read(job.path(".summary.json")).unwrap()).unwrap()
}

#[test]
fn a_job_half_in_state_writes_only_what_changes_and_lists_once_per_hundred() {
    let s = TestSim::unlimited(20_000);
    let avail = s.pick(5000, |r, p| p == Profile::Available && acme(r));
    let active = s.pick(5000, |r, p| p == Profile::Active && acme(r));
    // Interleaved, as a supplier list with some pallets already active would be.
    let mut ids = Vec::new();
    for (a, b) in avail.iter().zip(&active) {
        ids.push(a.clone());
        ids.push(b.clone());
    }
    let job = Job::new("half.csv", &(ids.join("\n") + "\n"));
    let summary = job.path(".summary.json");
    let o = job.run(
        &s,
        &[
            "--action",
            "activate",
            "--summary-json",
            summary.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let patches = route(&s, "PATCH /api/v2/sim/{iccId}");
    assert_eq!(patches.get("200").copied(), Some(5000), "{patches:?}");
    assert_eq!(total(&patches), 5000, "no PATCH answered 6047: {patches:?}");
    let lists = total(&route(&s, "GET /api/v2/sim"));
    assert!((100..=110).contains(&lists), "{lists} list calls");
    // The outcomes of an engine that wrote every row: ok where it changed, skipped where
    // the provider would have answered 6047.
    let by_iccid: HashMap<String, String> = job
        .results()
        .into_iter()
        .map(|r| (r["iccid"].clone(), r["outcome"].clone()))
        .collect();
    for a in &avail {
        assert_eq!(by_iccid[a], "ok", "{a}");
    }
    for a in &active {
        assert_eq!(by_iccid[a], "skipped", "{a}");
    }
    let skipped = job
        .results()
        .into_iter()
        .find(|r| r["outcome"] == "skipped");
    let skipped = skipped.unwrap();
    assert_eq!(
        (skipped["message"].as_str(), skipped["sim_status"].as_str()),
        ("already active", "active")
    );
    let calls = &summary_json(&job)["calls"];
    assert_eq!(calls["writes"], 5000, "{calls}");
    assert!(calls["per_row"].as_f64().unwrap() < 0.52, "{calls}");
}

#[test]
fn a_read_older_than_the_previous_write_of_its_sim_is_not_trusted() {
    // The planner reads the second window while the first is still being written (one row
    // at a time, each slowed): X's rows in the second window were read before X's first
    // row changed it.
    let s = TestSim::start(SimConfig {
        faults: FaultConfig {
            latency: Duration::from_millis(8),
            ..Default::default()
        },
        ..SimConfig::unlimited(2000)
    });
    let others = s.pick(220, |r, p| p == Profile::Available && acme(r));
    let x = s.pick(1, |r, p| {
        p == Profile::Available && acme(r) && !others.contains(&r.sim.icc_id)
    });
    let x = &x[0];
    let mut body = String::from("iccid,action\n");
    for o in &others[..99] {
        body += &format!("{o},activate\n");
    }
    // The last ICCID of the first window, then three more of its rows early in the next.
    body += &format!("{x},activate\n");
    body += &format!("{},activate\n", others[99]);
    body += &format!("{x},deactivate\n{x},activate\n{x},suspend\n");
    for o in &others[100..] {
        body += &format!("{o},activate\n");
    }
    let job = Job::new("stale.csv", &body);
    let o = job.run(&s, &["--concurrency", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let by_line = outcomes_by_line(&job);
    // available → active → available → active → suspended: each row changed the SIM.
    assert_eq!(
        (
            &by_line[&101],
            &by_line[&103],
            &by_line[&104],
            &by_line[&105]
        ),
        (
            &"ok".to_owned(),
            &"ok".to_owned(),
            &"ok".to_owned(),
            &"ok".to_owned()
        ),
        "{by_line:?}"
    );
    let r = s.sim(x);
    assert!(r.sim.status == "active" && r.sim.customer_suspend, "{r:?}");
    assert_eq!(s.ledger().iter().filter(|e| &e.icc_id == x).count(), 4);
}

#[test]
fn set_attribute_on_new_names_costs_one_call_per_row_and_never_creates_twice() {
    let s = TestSim::unlimited(4000);
    let ids = s.pick(1000, |r, p| {
        matches!(p, Profile::Available | Profile::Active) && acme(r)
    });
    let job = Job::new(
        "tag.csv",
        &rows_body("iccid,action,attribute,value", &ids, |i| {
            format!("{i},set-attribute,site,{i}")
        }),
    );
    let o = job.run(&s, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let requests = s.stats().requests;
    assert!(
        requests as f64 <= 1.02 * 1000.0,
        "{requests} requests for 1000 rows"
    );
    // Faults that lose answers after the create was applied, and drop connections.
    let s = TestSim::start(SimConfig {
        faults: FaultConfig {
            apply_then_fail: 0.1,
            drop: 0.05,
            ..Default::default()
        },
        ..SimConfig::unlimited(4000)
    });
    let o = job.run(&s, &["--restart"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(outcomes(&job.results()).get("ok"), Some(&1000));
    assert_active_or_available_and_tagged(&s, &ids);
    let creates: usize = s
        .ledger()
        .iter()
        .filter(|e| e.kind == "attribute.create")
        .count();
    assert_eq!(creates, 1000, "one create per SIM");
}

fn assert_active_or_available_and_tagged(s: &TestSim, ids: &[String]) {
    for id in ids {
        let sites: Vec<String> = s
            .sim(id)
            .attributes
            .into_iter()
            .filter(|a| a.name == "site")
            .map(|a| a.value)
            .collect();
        assert_eq!(sites, vec![id.clone()], "{id}");
    }
}

/// A job with every action, and a SIM that goes through several of them.
fn mixed_job(s: &TestSim) -> (Job, Vec<String>) {
    let pick =
        |n, p: Profile, pf: &'static str| s.pick(n, move |r, q| q == p && r.sim.portfolio_id == pf);
    let avail = pick(40, Profile::Available, "pf-acme-eu");
    let active = pick(20, Profile::Active, "pf-acme-eu");
    let susp = pick(5, Profile::CustomerSuspended, "pf-acme-eu");
    let tagged: Vec<String> = s.pick(10, |r, p| {
        p == Profile::Active
            && r.sim.portfolio_id == "pf-acme-eu"
            && r.attributes.iter().any(|a| a.name == "friendlyName")
            && !active.contains(&r.sim.icc_id)
    });
    let plus: Vec<String> = s.pick(5, |r, p| {
        p == Profile::Available
            && r.sim.package_id == 20418
            && r.sim.portfolio_id == "pf-acme-eu"
            && !avail.contains(&r.sim.icc_id)
    });
    let mut body = String::from("iccid,action,value,attribute\n");
    let mut touched = Vec::new();
    let mut row = |icc: &String, action: &str, value: &str, attribute: &str| {
        body += &format!("{icc},{action},{value},{attribute}\n");
        touched.push(icc.clone());
    };
    for i in &avail[..10] {
        row(i, "activate", "", "");
    }
    for i in &active[..10] {
        row(i, "deactivate", "", "");
    }
    for i in &active[10..20] {
        row(i, "suspend", "", "");
    }
    for i in &susp {
        row(i, "unsuspend", "", "");
    }
    for i in &avail[10..20] {
        row(i, "set-package", "20533", "");
    }
    for i in &plus {
        row(i, "set-portfolio", "pf-acme-us", "");
    }
    for i in &avail[20..30] {
        row(i, "set-attribute", "v-new", "site");
    }
    for i in &tagged[..5] {
        row(i, "set-attribute", "renamed", "friendlyName");
    }
    for i in &tagged[5..] {
        row(i, "delete-attribute", "", "friendlyName");
    }
    // One SIM through several changes: tagged, activated, re-tagged, suspended.
    let x = &avail[30];
    row(x, "set-attribute", "first", "stage");
    row(x, "activate", "", "");
    row(x, "set-attribute", "second", "stage");
    row(x, "suspend", "", "");
    touched.sort();
    touched.dedup();
    (Job::new("mixed.csv", &body), touched)
}

#[test]
fn undo_puts_back_every_field_a_mixed_job_changed() {
    let s = TestSim::unlimited(3000);
    let (job, touched) = mixed_job(&s);
    let before: Vec<State> = touched.iter().map(|i| state(&s, i)).collect();
    let o = job.run(&s, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(outcomes(&job.results()).get("ok").copied().unwrap_or(0) > 60);
    let changed: Vec<State> = touched.iter().map(|i| state(&s, i)).collect();
    assert_ne!(changed, before);
    let results = job.path(".results.csv");
    let o = simbulk()
        .args(["undo", results.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("set-package 20417"), "{said}");
    let undo = Job {
        input: job.path(".undo.csv"),
        dir: tempfile::tempdir().unwrap(),
    };
    let o = simbulk()
        .arg("run")
        .arg(&undo.input)
        .args(["--base-url", &s.url(), "--rate", "0", "--yes"])
        .args(["--results", undo.dir.path().join("u.csv").to_str().unwrap()])
        .args([
            "--failures",
            undo.dir.path().join("f.csv").to_str().unwrap(),
        ])
        .args(["--checkpoint", undo.dir.path().join("c").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let after: Vec<State> = touched.iter().map(|i| state(&s, i)).collect();
    for ((icc, b), a) in touched.iter().zip(&before).zip(&after) {
        assert_eq!(a, b, "{icc}");
    }
}

#[test]
fn the_preview_predicts_what_the_run_does_with_a_list_call_per_hundred_sims() {
    let s = TestSim::unlimited(25_000);
    let eu = |p: Profile| {
        move |r: &simbulk::sim::state::SimRecord, q: Profile| {
            q == p && r.sim.portfolio_id == "pf-acme-eu"
        }
    };
    let avail = s.pick(4000, eu(Profile::Available));
    let active = s.pick(3000, eu(Profile::Active));
    let csusp = s.pick(600, eu(Profile::CustomerSuspended));
    let asusp = s.pick(300, eu(Profile::AdminSuspended));
    let mut body = String::from("iccid,action,value\n");
    let mut n = 0;
    let mut row = |icc: &str, action: &str, value: &str| {
        body += &format!("{icc},{action},{value}\n");
        n += 1;
    };
    for (k, i) in avail.iter().enumerate() {
        match k % 3 {
            0 => row(i, "activate", ""),
            1 => row(i, "set-package", "20533"),
            // Two rows of one SIM: the second is predicted on the first's change.
            _ => {
                row(i, "activate", "");
                row(i, "suspend", "");
            }
        }
    }
    for (k, i) in active.iter().enumerate() {
        match k % 4 {
            0 => row(i, "activate", ""),
            1 => row(i, "deactivate", ""),
            2 => row(i, "set-package", "20533"),
            _ => row(i, "suspend", ""),
        }
    }
    for i in &csusp {
        row(i, "unsuspend", "");
        row(i, "deactivate", "");
    }
    for i in &asusp {
        row(i, "deactivate", "");
        row(i, "unsuspend", "");
        row(i, "suspend", "");
    }
    for k in 0..10 {
        row(
            &simbulk::input::with_check_digit(&format!("89445001999999{k:04}")),
            "activate",
            "",
        );
    }
    assert!(n >= 10_000, "{n} rows");
    let job = Job::new("pv.csv", &body);
    let o = job.run(&s, &["--preview"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let st = s.stats();
    let lists = total(&route(&s, "GET /api/v2/sim"));
    assert!(
        lists as f64 <= (n as f64 / 100.0) * 1.1,
        "{lists} list calls for {n} rows"
    );
    assert_eq!(st.mutations_applied, 0);
    let predicted: BTreeMap<u64, String> = read_csv(&job.path(".preview.csv"), b',')
        .into_iter()
        .map(|r| (r["line"].parse().unwrap(), r["outcome"].clone()))
        .collect();
    assert_eq!(predicted.len(), n);
    // Refused rows of one kind finish together: no halt on their streak.
    let o = job.run(&s, &["--halt-after-same-error", "0"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let real = outcomes_by_line(&job);
    let wrong: Vec<_> = real
        .iter()
        .filter(|(l, o)| predicted.get(l) != Some(o))
        .take(10)
        .map(|(l, o)| format!("line {l}: predicted {:?}, was {o}", predicted.get(l)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn a_stopped_preview_resumes_and_the_report_reads_it() {
    let s = TestSim::unlimited(3000);
    let ids = s.pick(800, |r, p| p == Profile::Active && acme(r));
    let job = Job::new(
        "pvs.csv",
        &rows_body("iccid,action,attribute,value", &ids, |i| {
            format!("{i},set-attribute,site,x")
        }),
    );
    // Attribute rows read one list per SIM: paced, the preview runs long enough to stop.
    let child = spawn_piped(job.command(&s, &["--preview", "--rate", "100"]));
    let preview = job.path(".preview.csv");
    wait_for("preview rows", Duration::from_secs(30), || {
        std::fs::read_to_string(&preview).is_ok_and(|t| t.lines().count() > 50)
    });
    signal(&child, libc::SIGINT);
    let (o, _) = exit_within(child, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    let o = job.run(&s, &["--preview", "--resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = read_csv(&preview, b',');
    assert_eq!(rows.len(), 800);
    let mut lines: Vec<u64> = rows.iter().map(|r| r["line"].parse().unwrap()).collect();
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), 800, "each row once");
    assert_eq!(s.stats().mutations_applied, 0);
    let o = simbulk()
        .args(["report", preview.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("800"));
}

#[test]
fn a_failing_canary_halts_resumably_and_a_clean_one_goes_on() {
    let s = TestSim::unlimited(2000);
    let ids = s.pick(50, |r, p| p == Profile::Available && acme(r));
    let unknown = simbulk::input::with_check_digit("894450019999999999");
    let mut body = format!("iccid,action\n{unknown},activate\n");
    for i in &ids {
        body += &format!("{i},activate\n");
    }
    let job = Job::new("canary.csv", &body);
    let o = job.run(&s, &["--canary", "5", "--concurrency", "2"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("canary"), "{}", text(&o));
    assert_eq!(job.results().len(), 5);
    assert_eq!(s.ledger().len(), 4, "the canary's other rows, and no more");
    let o = job.run(&s, &["--resume"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_each_line_once(&job, 2, 52);
    // A clean canary goes on by itself off a terminal.
    let ids = s.pick(100, |r, p| p == Profile::Active && acme(r));
    let job = Job::new(
        "clean.csv",
        &rows_body("iccid,action", &ids, |i| format!("{i},suspend")),
    );
    let o = job.run(&s, &["--canary", "10"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(outcomes(&job.results()).get("ok"), Some(&100));
}

#[test]
fn a_destructive_job_over_the_threshold_needs_yes_off_a_terminal() {
    let s = TestSim::unlimited(3000);
    let ids = s.pick(150, |r, p| {
        p == Profile::Available && r.sim.portfolio_id == "pf-acme-eu"
    });
    let job = Job::new(
        "d.csv",
        &rows_body("iccid,action,value", &ids, |i| {
            format!("{i},set-package,20533")
        }),
    );
    let bare = || {
        let mut c = simbulk();
        c.arg("run")
            .arg(&job.input)
            .args(["--base-url", &s.url(), "--rate", "0"]);
        c
    };
    let o = bare().output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("set-package 20533: 150 SIMs") && err.contains("--yes"),
        "{err}"
    );
    assert_eq!(s.stats().requests, 0);
    assert_eq!(s.stats().token_requests, 0);
    assert!(s.ledger().is_empty());
    assert!(!job.path(".results.csv").exists());
    // Under the threshold, or with --yes, it runs.
    let o = bare().args(["--confirm-over", "150"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// `--preview` with a PATH writes there, and the old spelling (`--dry-run --check --preview
/// PATH`) is the same preview; neither sends a change.
#[test]
fn the_preview_flag_takes_a_path_and_the_old_spelling_still_works() {
    let s = TestSim::unlimited(300);
    let ids = s.pick(12, |r, p| p == Profile::Available && acme(r));
    let job = Job::new(
        "sp.csv",
        &rows_body("iccid,action", &ids, |i| format!("{i},activate")),
    );
    let new = job.dir.path().join("new.preview.csv");
    let o = job.run(&s, &["--preview", new.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let old = job.dir.path().join("old.preview.csv");
    let o = job.run(
        &s,
        &["--dry-run", "--check", "--preview", old.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for p in [&new, &old] {
        let rows = read_csv(p, b',');
        assert_eq!(rows.len(), 12, "{}", p.display());
        assert!(rows.iter().all(|r| r["outcome"] == "ok"), "{rows:?}");
    }
    assert!(
        !job.path(".preview.csv").exists(),
        "the default file is not written"
    );
    assert_eq!(s.stats().mutations_applied, 0);
}
