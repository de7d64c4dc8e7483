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
    let o = apply(&s, &desired, &["--check"]);
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
            n.strip_suffix(" SIMs")?
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
    let o = apply(&s, &desired, &["--check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
