//! `simbulk apply`: export → edit → plan → apply → check, against the simulator's ledger.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use simbulk::sim::{FaultConfig, SimConfig};

use crate::support::*;

/// `simbulk <args…>` against `sim`, fast pacing.
fn sb(sim: &TestSim, args: &[&str]) -> Output {
    simbulk()
        .args(args)
        .args(["--base-url", &sim.url(), "--rate", "0"])
        .output()
        .unwrap()
}

fn export(sim: &TestSim, dir: &Path) -> std::path::PathBuf {
    let out = dir.join("fleet.csv");
    let o = sb(
        sim,
        &[
            "export",
            "--portfolio-id",
            "pf-acme-eu",
            "--with-attributes",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    out
}

type Rows = Vec<HashMap<String, String>>;

fn write_rows(path: &Path, header: &[String], rows: &Rows) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(header).unwrap();
    for r in rows {
        w.write_record(header.iter().map(|h| r[h].as_str()))
            .unwrap();
    }
    w.flush().unwrap();
}

fn header(path: &Path) -> Vec<String> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.headers().unwrap().iter().map(str::to_owned).collect()
}

fn apply(sim: &TestSim, file: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["apply", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    sb(sim, &args)
}

#[test]
fn an_unchanged_export_applies_with_no_write_and_checks_clean() {
    let s = TestSim::unlimited(1500);
    let dir = tempfile::tempdir().unwrap();
    let fleet = export(&s, dir.path());
    let o = apply(&s, &fleet, &["--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("0 to change") && out.contains("nothing to change"),
        "{out}"
    );
    assert!(s.ledger().is_empty());
    // The old spelling of --drift, kept as an alias for one release.
    let o = apply(&s, &fleet, &["--check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// Edits about a tenth of the rows, every writable column among them; returns the number of
/// cells edited.
fn edit(rows: &mut Rows) -> usize {
    let mut cells = 0;
    let mut set = |r: &mut HashMap<String, String>, k: &str, v: &str| {
        r.insert(k.into(), v.into());
        cells += 1;
    };
    let plain =
        |r: &HashMap<String, String>| r["adminSuspend"] == "false" && r["systemSuspend"] == "false";
    for (i, r) in rows.iter_mut().enumerate() {
        if i % 10 != 3 || !plain(r) {
            continue;
        }
        let available = r["status"] == "available";
        let suspended = r["customerSuspend"] == "true";
        match (available, suspended, (i / 10) % 4) {
            (true, _, 0) => set(r, "status", "active"),
            (true, _, 1) if r["packageId"] == "20417" => set(r, "packageId", "20533"),
            (true, _, 2) if r["packageId"] == "20418" => set(r, "portfolioId", "pf-acme-us"),
            (false, false, 0) => set(r, "customerSuspend", "true"),
            (false, true, _) => set(r, "customerSuspend", "false"),
            (false, false, 1) => set(r, "status", "available"),
            _ => {}
        }
        if !r["attr:friendlyName"].is_empty() && (i / 10) % 3 == 0 && r["customerSuspend"] != "true"
        {
            set(r, "attr:friendlyName", "renamed");
        } else if !r["attr:orderId"].is_empty()
            && (i / 10) % 3 == 1
            && r["customerSuspend"] != "true"
        {
            set(r, "attr:orderId", "(delete)");
        } else if (i / 10) % 3 == 2 && r["customerSuspend"] != "true" {
            set(r, "attr:site", "berlin");
        }
    }
    cells
}

#[test]
fn edited_cells_are_exactly_the_writes_and_the_fleet_ends_as_the_file_says() {
    let s = TestSim::unlimited(3000);
    let dir = tempfile::tempdir().unwrap();
    let fleet = export(&s, dir.path());
    let mut h = header(&fleet);
    h.push("attr:site".into());
    let mut rows = read_csv(&fleet, b',');
    for r in rows.iter_mut() {
        r.insert("attr:site".into(), String::new());
    }
    let cells = edit(&mut rows);
    assert!(cells > 100, "{cells} cells edited");
    let desired = dir.path().join("desired.csv");
    write_rows(&desired, &h, &rows);
    let o = apply(&s, &desired, &["--plan-only"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(s.ledger().is_empty(), "the plan writes nothing");
    let o = apply(&s, &desired, &["--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(s.ledger().len(), cells, "one write per edited cell");
    let o = apply(&s, &desired, &["--drift"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn changes_go_in_an_order_the_provider_accepts_and_what_none_allows_is_blocked() {
    use simbulk::sim::seed::Profile;
    let s = TestSim::unlimited(2000);
    let eu = |p: Profile| {
        move |r: &simbulk::sim::state::SimRecord, q: Profile| {
            q == p && r.sim.portfolio_id == "pf-acme-eu" && r.sim.package_id == 20417
        }
    };
    let csusp = s.pick(1, eu(Profile::CustomerSuspended)).remove(0);
    let active = s.pick(1, eu(Profile::Active)).remove(0);
    let admin = s.pick(1, eu(Profile::AdminSuspended)).remove(0);
    let body = format!(
        "iccid,status,customerSuspend,packageId,attr:site\n\
         {csusp},available,false,20533,\n\
         {active},,true,,berlin\n\
         {admin},,,20533,\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let desired = dir.path().join("order.csv");
    std::fs::write(&desired, body).unwrap();
    let o = apply(&s, &desired, &["--yes"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "the blocked SIM fails: {}",
        text(&o)
    );
    let fields = |icc: &str| -> Vec<String> {
        s.ledger()
            .into_iter()
            .filter(|e| e.icc_id == icc)
            .map(|e| e.field)
            .collect()
    };
    assert_eq!(
        fields(&csusp),
        vec!["customerSuspend", "status", "packageId"]
    );
    let r = s.sim(&csusp);
    assert!(!r.sim.customer_suspend && r.sim.package_id == 20533 && r.sim.status == "available");
    let f = fields(&active);
    assert_eq!(
        f.last().map(String::as_str),
        Some("customerSuspend"),
        "{f:?}"
    );
    assert_eq!(f.len(), 2, "{f:?}");
    let r = s.sim(&active);
    assert!(r.sim.customer_suspend && r.attributes.iter().any(|a| a.name == "site"));
    assert!(fields(&admin).is_empty(), "never sent");
    let results = read_csv(&dir.path().join("order.results.csv"), b',');
    assert!(
        results
            .iter()
            .any(|r| r["outcome"] == "failed" && r["message"].contains("admin-suspended"))
    );
}

#[test]
fn a_read_only_column_edited_stops_before_any_write_naming_column_and_line() {
    let s = TestSim::unlimited(1500);
    let dir = tempfile::tempdir().unwrap();
    let fleet = export(&s, dir.path());
    let h = header(&fleet);
    let mut rows = read_csv(&fleet, b',');
    rows[0].insert("status".into(), "active".into());
    rows[4].insert("imsi".into(), "999999999999999".into());
    let desired = dir.path().join("ro.csv");
    write_rows(&desired, &h, &rows);
    let o = apply(&s, &desired, &["--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 6") && err.contains("imsi"), "{err}");
    assert!(s.ledger().is_empty());
}

#[test]
fn plan_counts_equal_the_writes_and_kill_9_then_resume_ends_in_the_desired_state() {
    let faults = FaultConfig {
        latency: Duration::from_millis(5),
        apply_then_fail: 0.05,
        drop: 0.02,
        ..FaultConfig::default()
    };
    let s = TestSim::start(SimConfig {
        faults,
        ..SimConfig::unlimited(3000)
    });
    let dir = tempfile::tempdir().unwrap();
    let fleet = export(&s, dir.path());
    let mut h = header(&fleet);
    h.push("attr:site".into());
    let mut rows = read_csv(&fleet, b',');
    for r in rows.iter_mut() {
        r.insert("attr:site".into(), String::new());
    }
    let cells = edit(&mut rows);
    let desired = dir.path().join("k.csv");
    write_rows(&desired, &h, &rows);
    let o = apply(&s, &desired, &["--plan-only"]);
    let planned: usize = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().rsplit_once(": "))
        .filter_map(|(_, n)| {
            n.strip_suffix(" SIMs")
                .or_else(|| n.strip_suffix(" SIM"))?
                .replace(',', "")
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert_eq!(planned, cells, "{}", text(&o));
    // Killed at seeded moments, resumed each time.
    let mut rng = fastrand::Rng::with_seed(11);
    let started = Instant::now();
    for _ in 0..8 {
        let mut child = simbulk()
            .args(["apply", desired.to_str().unwrap(), "--resume", "--yes"])
            .args(["--base-url", &s.url(), "--rate", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.u64(50..1200)));
        signal(&child, libc::SIGKILL);
        let _ = child.wait();
    }
    let o = apply(&s, &desired, &["--resume", "--yes"]);
    assert!(matches!(o.status.code(), Some(0)), "{}", text(&o));
    assert!(started.elapsed() < Duration::from_secs(120));
    assert_no_repeated_effect(&s);
    assert_eq!(s.ledger().len(), cells, "each edited cell written once");
    let o = apply(&s, &desired, &["--drift"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn undo_of_an_apply_restores_every_field_of_its_patch_rows_as_the_readme_shows() {
    let s = TestSim::unlimited(2000);
    let dir = tempfile::tempdir().unwrap();
    let fleet = export(&s, dir.path());
    let h = header(&fleet);
    let mut rows = read_csv(&fleet, b',');
    let plain = |r: &HashMap<String, String>| {
        r["adminSuspend"] == "false"
            && r["systemSuspend"] == "false"
            && r["customerSuspend"] == "false"
    };
    let mut changed = Vec::new();
    for r in rows.iter_mut().filter(|r| plain(r)) {
        // Multi-field patches both ways: activate onto another package, deactivate and move.
        match (r["status"].as_str(), r["packageId"].as_str()) {
            ("available", "20417") if changed.len() % 2 == 0 => {
                r.insert("status".into(), "active".into());
                r.insert("packageId".into(), "20533".into());
            }
            ("active", "20417") if changed.len() % 2 == 1 => {
                r.insert("status".into(), "available".into());
                r.insert("packageId".into(), "20533".into());
            }
            _ => continue,
        }
        changed.push(r["iccid"].clone());
        if changed.len() == 12 {
            break;
        }
    }
    assert_eq!(changed.len(), 12);
    let before: Vec<_> = changed
        .iter()
        .map(|i| {
            let r = s.sim(i).sim;
            (r.status, r.package_id)
        })
        .collect();
    let desired = dir.path().join("fleet2.csv");
    write_rows(&desired, &h, &rows);
    let o = apply(&s, &desired, &["--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let results = dir.path().join("fleet2.results.csv");
    let patches = read_csv(&results, b',')
        .into_iter()
        .filter(|r| r["action"] == "patch" && r["outcome"] == "ok")
        .count();
    assert!(patches >= 6, "{patches} patch rows");
    // simbulk undo … && simbulk run … --yes
    let o = simbulk()
        .args(["undo", results.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let job = dir.path().join("fleet2.undo.csv");
    let o = sb(&s, &["run", job.to_str().unwrap(), "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for (icc, b) in changed.iter().zip(&before) {
        let r = s.sim(icc).sim;
        assert_eq!(&(r.status, r.package_id), b, "{icc}");
    }
    // Undo of the undo is the apply's end state again.
    let o = simbulk()
        .args([
            "undo",
            dir.path().join("fleet2.undo.results.csv").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = sb(
        &s,
        &[
            "run",
            dir.path().join("fleet2.undo.undo.csv").to_str().unwrap(),
            "--yes",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = apply(&s, &desired, &["--drift"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_plan_made_before_the_fleet_moved_is_not_applied_to_it() {
    use simbulk::sim::seed::Profile;
    let s = TestSim::unlimited(2000);
    let ids = s.pick(20, |r, p| {
        p == Profile::Available && r.sim.portfolio_id == "pf-acme-eu" && r.sim.package_id == 20417
    });
    // The file: all active on 20533.
    let body = ids
        .iter()
        .map(|i| format!("{i},active,20533\n"))
        .collect::<String>();
    let dir = tempfile::tempdir().unwrap();
    let desired = dir.path().join("move.csv");
    std::fs::write(&desired, format!("iccid,status,packageId\n{body}")).unwrap();
    for flags in [&["--yes"][..], &["--yes", "--resume"][..]] {
        let o = apply(&s, &desired, &["--plan-only"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        // The fleet moves: five SIMs go active on their old package (the plan's one-PATCH
        // activation onto 20533 would now be refused), five others are already as the file
        // says, and the rest of the file is undone to where it started.
        for (k, i) in ids.iter().enumerate() {
            let _ = s.server().change_as_other(i, |sim| match k {
                0..5 => sim.status = "active".into(),
                5..10 => {
                    sim.status = "active".into();
                    sim.package_id = 20533;
                }
                _ => {
                    sim.status = "available".into();
                    sim.package_id = 20417;
                }
            });
        }
        let writes = s.ledger().len();
        let o = apply(&s, &desired, flags);
        // The five active SIMs cannot change package while active: blocked, never sent.
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("5 blocked"), "{out}");
        for (k, i) in ids.iter().enumerate() {
            let r = s.sim(i).sim;
            match k {
                0..5 => assert_eq!((r.status.as_str(), r.package_id), ("active", 20417)),
                _ => assert_eq!((r.status.as_str(), r.package_id), ("active", 20533)),
            }
        }
        // No write was refused: every call was planned from the fleet as it is.
        let failed_sent = read_csv(&dir.path().join("move.results.csv"), b',')
            .into_iter()
            .filter(|r| r["outcome"] == "failed" && !r["http_status"].is_empty())
            .count();
        assert_eq!(failed_sent, 0);
        // Ten SIMs, each one PATCH of two fields (the ledger has a line a field).
        assert_eq!(s.ledger().len() - writes, 20, "{flags:?}");
        std::fs::remove_file(dir.path().join("move.checkpoint")).unwrap();
    }
}

#[test]
fn an_unchanged_export_with_pending_activations_applies_with_no_write() {
    use simbulk::sim::seed::Profile;
    let s = TestSim::start(SimConfig {
        activation_delay: Duration::from_secs(4),
        ..SimConfig::unlimited(1500)
    });
    let ids = s.pick(5, |r, p| {
        p == Profile::Available && r.sim.portfolio_id == "pf-acme-eu"
    });
    let job = Job::new(
        "act.csv",
        &format!(
            "iccid,action\n{}",
            ids.iter()
                .map(|i| format!("{i},activate\n"))
                .collect::<String>()
        ),
    );
    let o = job.run(&s, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let dir = tempfile::tempdir().unwrap();
    let fleet = export(&s, dir.path());
    let exported = std::fs::read_to_string(&fleet).unwrap();
    assert_eq!(
        exported.matches("pendingProvision").count(),
        5,
        "{exported}"
    );
    let client_writes = || s.ledger().iter().filter(|e| e.client != "system").count();
    let writes = client_writes();
    let o = apply(&s, &fleet, &["--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = apply(&s, &fleet, &["--drift"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Once they are active (a read settles a due activation), the export still asks for
    // nothing.
    let api = s.api();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ids.iter().any(|i| {
        let r = s.block(api.get(&format!("/api/v2/sim/{i}")));
        r.body["status"] != "active"
    }) {
        assert!(Instant::now() < deadline, "the activations never completed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = apply(&s, &fleet, &["--drift"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(client_writes(), writes);
}

#[test]
fn the_secret_command_runs_once_for_the_plan_the_run_and_the_check_after() {
    let s = TestSim::unlimited(300);
    let dir = tempfile::tempdir().unwrap();
    let fleet = export(&s, dir.path());
    let h = header(&fleet);
    let mut rows = read_csv(&fleet, b',');
    let mut edited = 0;
    for r in rows
        .iter_mut()
        .filter(|r| r["status"] == "available")
        .take(5)
    {
        r.insert("status".into(), "active".into());
        edited += 1;
    }
    assert_eq!(edited, 5);
    let desired = dir.path().join("desired.csv");
    write_rows(&desired, &h, &rows);
    let count = dir.path().join("asked");
    let cmd = format!(
        "echo asked >> {}; printf '%s\\n' {}",
        count.display(),
        simbulk::sim::DEMO_CLIENT_SECRET
    );
    let o = apply(
        &s,
        &desired,
        &["--yes", "--burst", "3", "--client-secret-command", &cmd],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(s.ledger().len(), 5, "{}", text(&o));
    let asked = std::fs::read_to_string(&count).unwrap();
    assert_eq!(asked.lines().count(), 1, "the secret command ran {asked:?}");
}

#[test]
fn apply_dry_run_is_the_plan_only() {
    let s = TestSim::unlimited(200);
    let dir = tempfile::tempdir().unwrap();
    let fleet = export(&s, dir.path());
    let h = header(&fleet);
    let mut rows = read_csv(&fleet, b',');
    if let Some(r) = rows.iter_mut().find(|r| r["status"] == "available") {
        r.insert("status".into(), "active".into());
    }
    let desired = dir.path().join("desired.csv");
    write_rows(&desired, &h, &rows);
    let o = apply(&s, &desired, &["--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(s.ledger().is_empty(), "a dry run writes nothing");
    assert!(dir.path().join("desired.plan.csv").exists(), "{}", text(&o));
    // The plan's report says what it is, and its key.
    let o = simbulk()
        .arg("report")
        .arg(dir.path().join("desired.plan.csv"))
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(
        t.contains("PLAN — nothing was sent") && t.contains("ok = calls to make"),
        "{t}"
    );
}
