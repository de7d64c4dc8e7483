//! Snapshots of what the operator reads first: every subcommand's `--help`, and the main
//! refusals. A change of wording shows in review as a changed `.snap` file
//! (`cargo insta review`, or `INSTA_UPDATE=always cargo nextest run` to take them all).

use crate::support::*;

/// `simbulk ARGS…` without credentials or any `SIMBULK_` variable: its standard output and
/// standard error, as one text.
fn words(args: &[&str]) -> String {
    let o = bare().args(args).output().unwrap();
    format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn every_help_page() {
    let pages: [&[&str]; 17] = [
        &["--help"],
        &["run", "--help"],
        &["apply", "--help"],
        &["demo", "--help"],
        &["sim", "--help"],
        &["bench", "--help"],
        &["report", "--help"],
        &["undo", "--help"],
        &["verify", "--help"],
        &["export", "--help"],
        &["quota", "--help"],
        &["quota", "status", "--help"],
        &["config", "--help"],
        &["config", "show", "--help"],
        &["config", "path", "--help"],
        &["completions", "--help"],
        &["man", "--help"],
    ];
    for args in pages {
        let name = format!("help {}", args[..args.len() - 1].join(" "))
            .trim()
            .replace(' ', "_");
        insta::assert_snapshot!(name, words(args));
    }
}

#[test]
fn the_main_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.csv");
    std::fs::write(&job, "iccid\n8944500990000012342\n").unwrap();
    let job = job.to_str().unwrap();
    let cases: [(&str, &[&str]); 4] = [
        (
            "no_connection_settings",
            &["run", job, "--action", "activate"],
        ),
        ("no_action_for_a_bare_list", &["run", job, "--dry-run"]),
        (
            "a_secret_is_never_a_flag",
            &["run", job, "--client-secret", "x"],
        ),
        (
            "a_mistyped_action_flag",
            &["run", job, "--action", "actviate"],
        ),
    ];
    for (name, args) in cases {
        // The temporary folder's name changes from run to run.
        let text = words(args).replace(job, "JOB.csv");
        insta::assert_snapshot!(name, text);
    }
}

/// The dry run's summary of a file with every kind of bad row: counts, reasons with a sample
/// line each, the estimate.
#[test]
fn a_dry_run_summary() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.csv");
    let ok = simbulk::input::with_check_digit("894450099000001234");
    let body = format!(
        "iccid,action,value\n{ok},activate,\n8.93144040001234E+18,activate,\n{ok}5,suspend,\n89445009900000123,set-package,\n{ok},actviate,\n{ok},set-package,abc\n"
    );
    std::fs::write(&job, body).unwrap();
    let job = job.to_str().unwrap();
    let text = words(&["run", job, "--dry-run"]).replace(job, "JOB.csv");
    insta::assert_snapshot!("dry_run_summary", text);
}
