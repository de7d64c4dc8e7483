//! Spreadsheets as input: an `.xlsx` shipment (ICCIDs as text and as numbers, a lost-digit
//! cell, extra columns, blank rows) runs end to end as its CSV would, its rows numbered as
//! the spreadsheet numbers them, resumable after `kill -9`; `--sheet` picks a sheet; `apply`
//! reads a desired-state spreadsheet.

use std::collections::BTreeMap;
use std::path::Path;

use rust_xlsxwriter::{Format, Workbook, Worksheet};
use simbulk::sim::seed::Profile;

use crate::support::*;

/// One cell of a test sheet.
enum Cell<'a> {
    Text(&'a str),
    Number(f64),
    Bool(bool),
}

/// Writes `rows` (0-based sheet rows; a row absent from the map is left empty) into `sheet`.
fn fill(sheet: &mut Worksheet, rows: &BTreeMap<u32, Vec<Cell<'_>>>) {
    let text = Format::new().set_num_format("@");
    for (r, cells) in rows {
        for (c, cell) in cells.iter().enumerate() {
            let c = u16::try_from(c).unwrap();
            match cell {
                Cell::Text(t) => sheet.write_string_with_format(*r, c, *t, &text),
                Cell::Number(n) => sheet.write_number(*r, c, *n),
                Cell::Bool(b) => sheet.write_boolean(*r, c, *b),
            }
            .unwrap();
        }
    }
}

/// A shipment: header on row 1; `ids` activated from row 2 (as text, one extra column of text
/// and one of numbers); a blank row after the third; the ICCID typed into a number cell, as a
/// spreadsheet keeps it, last. Returns the sheet row (1-based) of each ICCID and the number
/// row's line.
fn shipment(path: &Path, ids: &[String]) -> (BTreeMap<u64, String>, u64) {
    let mut book = Workbook::new();
    let lines = {
        let sheet = book.add_worksheet().set_name("Shipment").unwrap();
        let mut rows = BTreeMap::new();
        rows.insert(
            0,
            vec![
                Cell::Text("ICCID"),
                Cell::Text("action"),
                Cell::Text("site"),
                Cell::Text("qty"),
            ],
        );
        let mut lines = BTreeMap::new();
        let mut r = 1;
        for (i, id) in ids.iter().enumerate() {
            if i == 3 {
                r += 1;
            }
            rows.insert(
                r,
                vec![
                    Cell::Text(id),
                    Cell::Text("activate"),
                    Cell::Text("Depot, north"),
                    Cell::Number(2.0),
                ],
            );
            lines.insert(u64::from(r) + 1, id.clone());
            r += 1;
        }
        // 8931440400012345678 typed into a number cell: the first 15 digits kept.
        rows.insert(
            r,
            vec![
                Cell::Number(8_931_440_400_012_340_000.0),
                Cell::Text("activate"),
                Cell::Text("lost"),
                Cell::Number(1.0),
            ],
        );
        fill(sheet, &rows);
        (lines, u64::from(r) + 1)
    };
    // A second sheet: --sheet picks it; the first visible sheet is the default.
    let other = book.add_worksheet().set_name("Notes").unwrap();
    other.write_string(0, 0, "not a job").unwrap();
    book.save(path).unwrap();
    lines
}

/// `simbulk run PATH --dry-run` (no connection needed).
fn dry_run(path: &Path) -> std::process::Output {
    simbulk()
        .arg("run")
        .arg(path)
        .arg("--dry-run")
        .output()
        .unwrap()
}

#[test]
fn an_xlsx_shipment_runs_end_to_end_and_resumes_after_kill_9() {
    let s = TestSim::unlimited(400);
    let ids = s.pick(60, |r, p| p == Profile::Available && acme(r));
    let job = Job::new("shipment.xlsx", "");
    let (lines, lost) = shipment(&job.input, &ids);
    // A preview of the file first: every row counted, the lost-digit row named by its line.
    let o = dry_run(&job.input);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains(&format!("line {lost}")), "{out}");
    assert!(out.contains("format the iccid column as Text"), "{out}");
    // Killed three times at random moments, then run to its end.
    let code = kill_loop(&job, &s, &["--rate", "30", "--resume"], 3, 25);
    assert_eq!(code, Some(1), "the lost-digit row is invalid");
    let results = job.results();
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &results {
        *seen.entry(r["line"].parse().unwrap()).or_default() += 1;
    }
    let mut want: Vec<u64> = lines.keys().copied().collect();
    want.push(lost);
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        want,
        "one result per sheet row"
    );
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    for r in &results {
        let line: u64 = r["line"].parse().unwrap();
        if line == lost {
            assert_eq!(r["outcome"], "invalid", "{r:?}");
            assert!(r["message"].contains("8.93144040001234E+18"), "{r:?}");
            assert!(
                r["message"].contains("format the iccid column as Text"),
                "{r:?}"
            );
            continue;
        }
        assert_eq!(r["iccid"], lines[&line], "{r:?}");
        assert!(["ok", "skipped"].contains(&r["outcome"].as_str()), "{r:?}");
        // Extra columns are carried: text as written, a whole number without ".0".
        assert_eq!(r["site"], "Depot, north", "{r:?}");
        assert_eq!(r["qty"], "2", "{r:?}");
    }
    for id in &ids {
        assert_ne!(s.sim(id).sim.status, "available", "{id} activated");
    }
    assert_no_repeated_effect(&s);
    // The failures file is a CSV of the sheet's columns, ready to re-run as it is.
    let failures = job.failures_text();
    assert!(
        failures.starts_with("ICCID,action,site,qty\n"),
        "{failures}"
    );
    assert!(
        failures.contains("8.93144040001234E+18,activate,lost,1"),
        "{failures}"
    );
}

#[test]
fn the_sheet_is_the_first_visible_one_or_the_one_named_and_a_wrong_name_lists_them() {
    let s = TestSim::unlimited(200);
    let ids = s.pick(4, |r, p| p == Profile::Available && acme(r));
    let job = Job::new("two.xlsx", "");
    let mut book = Workbook::new();
    let hidden = book.add_worksheet().set_name("Old").unwrap();
    hidden.write_string(0, 0, "nothing here").unwrap();
    hidden.set_hidden(true);
    let mut rows = BTreeMap::new();
    rows.insert(0, vec![Cell::Text("iccid"), Cell::Text("action")]);
    for (i, id) in ids.iter().enumerate() {
        rows.insert(
            u32::try_from(i).unwrap() + 1,
            vec![Cell::Text(id), Cell::Text("activate")],
        );
    }
    let batch = book.add_worksheet().set_name("Batch 7").unwrap();
    fill(batch, &rows);
    // The active sheet cannot be hidden: the second one is the one Excel opens at.
    batch.set_active(true);
    book.save(&job.input).unwrap();

    // A name that is not there: refused before any call, the sheets listed.
    let before = s.stats().requests;
    let o = job.run(&s, &["--sheet", "Batch 8"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no sheet \"Batch 8\""), "{err}");
    assert!(err.contains("\"Old\", \"Batch 7\""), "{err}");
    assert_eq!(s.stats().requests, before);
    // --sheet on a CSV is refused with the fix.
    let csv = Job::new("plain.csv", &format!("iccid,action\n{},activate\n", ids[0]));
    let o = csv.run(&s, &["--sheet", "Batch 7"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("leave --sheet out"), "{}", text(&o));
    assert_eq!(s.stats().requests, before);
    // The hidden first sheet is passed over; a name in another case finds its sheet.
    let o = job.run(&s, &["--sheet", "batch 7"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(outcomes(&job.results())["ok"], 4);
    let o = dry_run(&job.input);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_file_that_only_looks_like_a_spreadsheet_is_refused_with_the_fix() {
    let s = TestSim::unlimited(50);
    let job = Job::new("broken.xlsx", "PK\u{3}\u{4} not really a zip");
    let o = job.run(&s, &["--action", "activate"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not a spreadsheet simbulk can read"), "{err}");
    assert!(err.contains("CSV UTF-8"), "{err}");
    assert_eq!(s.stats().requests, 0);
}

#[test]
fn apply_reads_a_desired_state_spreadsheet() {
    let s = TestSim::unlimited(300);
    let ids = s.pick(5, |r, p| p == Profile::Active && acme(r));
    let job = Job::new("desired.xlsx", "");
    let mut book = Workbook::new();
    let mut rows = BTreeMap::new();
    rows.insert(0, vec![Cell::Text("iccid"), Cell::Text("customerSuspend")]);
    for (i, id) in ids.iter().enumerate() {
        rows.insert(
            u32::try_from(i).unwrap() + 1,
            vec![Cell::Text(id), Cell::Bool(true)],
        );
    }
    fill(book.add_worksheet(), &rows);
    book.save(&job.input).unwrap();
    let o = simbulk()
        .arg("apply")
        .arg(&job.input)
        .args(["--base-url", &s.url(), "--rate", "0", "--yes"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for id in &ids {
        assert!(s.sim(id).sim.customer_suspend, "{id} suspended");
    }
}
