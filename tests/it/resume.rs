//! Checkpoint, resume, lock, signals and run windows, with the real binary.

use std::process::Stdio;
use std::time::{Duration, Instant};

use simbulk::sim::seed::Profile;
use simbulk::sim::{FaultConfig, SimConfig};

use crate::support::*;

fn slow_sim(n: usize, latency_ms: u64) -> TestSim {
    TestSim::start(SimConfig {
        faults: FaultConfig {
            latency: Duration::from_millis(latency_ms),
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(n)
    })
}

fn activation_job(s: &TestSim, n: usize) -> (Job, Vec<String>) {
    let ids = s.pick(n, |r, p| p == Profile::Available && acme(r));
    (
        Job::new(
            "job.csv",
            &format!(
                "iccid,action\n{}\n",
                ids.iter()
                    .map(|i| format!("{i},activate"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        ),
        ids,
    )
}

#[test]
fn kill_9_at_random_moments_then_resume_loses_and_repeats_nothing() {
    let s = TestSim::start(SimConfig {
        faults: FaultConfig {
            latency: Duration::from_millis(3),
            http503: 0.05,
            apply_then_fail: 0.08,
            drop: 0.02,
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(3000)
    });
    let ids = s.pick(700, |r, p| p == Profile::Available && acme(r));
    let mut body = String::from("iccid,action,attribute,value\n");
    for (i, id) in ids.iter().enumerate() {
        if i % 2 == 0 {
            body += &format!("{id},activate,,\n");
        } else {
            body += &format!("{id},set-attribute,crash,v{i}\n");
        }
    }
    let job = Job::new("crash.csv", &body);
    let mut rng = fastrand::Rng::with_seed(42);
    let mut kills = 0;
    let mut finished = None;
    for round in 0..200 {
        let mut child = job
            .command(&s, &["--resume", "--rate", "400", "--concurrency", "6"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Some kills land during start-up, most mid-run, some near the end.
        let wait = match round % 4 {
            0 => rng.u64(0..25),
            _ => rng.u64(40..350),
        };
        let deadline = Instant::now() + Duration::from_millis(wait);
        let mut status = None;
        while Instant::now() < deadline {
            if let Some(st) = child.try_wait().unwrap() {
                status = Some(st);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        match status {
            Some(st) => {
                finished = st.code();
                if kills >= 10 {
                    break;
                }
                // Finished before ten kills: start over to reach the count.
                let _ = std::fs::remove_file(job.path(".checkpoint"));
                assert_each_line_once(&job, 2, 701);
                finished = None;
                continue;
            }
            None => {
                signal(&child, libc::SIGKILL);
                let _ = child.wait();
                kills += 1;
            }
        }
    }
    assert!(kills >= 10, "only {kills} kills");
    if finished.is_none() {
        // Killed to the last round: the last resume runs to the end.
        let o = job.run(&s, &["--resume", "--rate", "400", "--concurrency", "6"]);
        finished = o.status.code();
    }
    assert_eq!(finished, Some(0), "the job finished");
    assert_each_line_once(&job, 2, 701);
    assert_eq!(outcomes(&job.results()).get("failed"), None);
    // No duplicate effect: one mutation per SIM and field, whatever the kills.
    assert_no_repeated_effect(&s);
    for (i, id) in ids.iter().enumerate() {
        let rec = s.sim(id);
        if i % 2 == 0 {
            assert_eq!(rec.sim.status, "active");
        } else {
            assert_eq!(
                rec.attributes.iter().filter(|a| a.name == "crash").count(),
                1
            );
        }
    }
}

#[test]
fn an_existing_checkpoint_needs_resume_or_restart_and_a_finished_job_says_so() {
    let s = TestSim::unlimited(500);
    let (job, _) = activation_job(&s, 20);
    assert_eq!(job.run(&s, &[]).status.code(), Some(0));
    let o = job.run(&s, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--resume") && err.contains("--restart"),
        "{err}"
    );
    let o = job.run(&s, &["--resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("already finished"),
        "{}",
        text(&o)
    );
    let requests = s.stats().requests;
    let o = job.run(&s, &["--restart"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        outcomes(&job.results())["skipped"],
        20,
        "restart ran every row again"
    );
    assert!(s.stats().requests > requests);
}

#[test]
fn resume_refuses_an_edited_input_or_changed_options_and_says_what_differs() {
    let s = slow_sim(500, 20);
    let (job, ids) = activation_job(&s, 60);
    let o = job.run(&s, &["--max-duration", "300ms", "--concurrency", "2"]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    let o = job.run(&s, &["--resume", "--value", "x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--value was not given and is now \"x\""),
        "{}",
        text(&o)
    );
    let original = std::fs::read_to_string(&job.input).unwrap();
    std::fs::write(&job.input, original.replace(&ids[5], &ids[6])).unwrap();
    let o = job.run(&s, &["--resume"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("input file changed"),
        "{}",
        text(&o)
    );
    std::fs::write(&job.input, original).unwrap();
    let o = job.run(&s, &["--resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_each_line_once(&job, 2, 61);
}

#[test]
fn max_duration_stops_with_75_and_a_torn_record_is_dropped_on_resume() {
    let s = slow_sim(500, 20);
    let (job, _) = activation_job(&s, 80);
    let o = job.run(&s, &["--max-duration", "400ms", "--concurrency", "2"]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("to resume:") && out.contains("--resume"),
        "{out}"
    );
    let done = job.results().len();
    assert!(done > 0 && done < 80);
    let cp = job.path(".checkpoint");
    let bytes = std::fs::read(&cp).unwrap();
    std::fs::write(&cp, &bytes[..bytes.len() - 5]).unwrap();
    let o = job.run(&s, &["--resume", "--concurrency", "8"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_each_line_once(&job, 2, 81);
}

#[test]
fn an_older_checkpoint_format_is_refused_clearly() {
    let s = TestSim::unlimited(100);
    let (job, _) = activation_job(&s, 3);
    std::fs::write(job.path(".checkpoint"), "SIMBULK-CHECKPOINT 1 {}\n").unwrap();
    let o = job.run(&s, &["--resume"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("format version 1") && err.contains("--restart"),
        "{err}"
    );
    std::fs::write(job.path(".checkpoint"), "something else\n").unwrap();
    let o = job.run(&s, &["--resume"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a simbulk checkpoint"));
}

#[test]
fn a_held_lock_names_its_holder_and_a_stale_one_is_taken_over() {
    let s = TestSim::unlimited(100);
    let (job, _) = activation_job(&s, 3);
    let held = simbulk::checkpoint::JobLock::acquire(&job.path(".checkpoint")).unwrap();
    let o = job.run(&s, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("pid {}", std::process::id())) && err.contains("host"),
        "{err}"
    );
    drop(held);
    std::fs::write(
        job.path(".checkpoint.lock"),
        "pid 999999 on host gone, started yesterday\n",
    )
    .unwrap();
    let o = job.run(&s, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn sigint_drains_and_exits_75_then_resume_finishes() {
    let s = slow_sim(1000, 30);
    let (job, _) = activation_job(&s, 200);
    let child = spawn_piped(job.command(&s, &["--concurrency", "4"]));
    std::thread::sleep(Duration::from_millis(600));
    signal(&child, libc::SIGINT);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("--resume"));
    let o = job.run(&s, &["--resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_each_line_once(&job, 2, 201);
}

#[test]
fn a_second_sigint_aborts_at_once_and_the_files_still_resume() {
    let s = slow_sim(1000, 100);
    let (job, _) = activation_job(&s, 100);
    let mut child = spawn_piped(job.command(&s, &["--concurrency", "8", "--timeout", "120s"]));
    std::thread::sleep(Duration::from_millis(700));
    // From now on every call hangs for a minute: only an abort ends the run soon.
    s.server().set_faults(FaultConfig {
        latency: Duration::from_secs(60),
        ..FaultConfig::default()
    });
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first signal drains: calls in flight are awaited"
    );
    signal(&child, libc::SIGINT);
    // A liveness bound, far below the minute the in-flight calls would take.
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the second signal did not abort");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    s.server().set_faults(FaultConfig::default());
    let o = job.run(&s, &["--resume", "--concurrency", "32"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_each_line_once(&job, 2, 101);
}

#[test]
fn an_unwritable_results_file_is_a_clear_error() {
    let s = TestSim::unlimited(100);
    let (job, _) = activation_job(&s, 3);
    let o = job.run(&s, &["--results", "/dev/full"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No space left"),
        "{}",
        text(&o)
    );
    assert!(s.ledger().is_empty());
}

#[cfg(unix)]
#[test]
fn a_disk_that_fills_up_mid_run_stops_the_job_and_the_files_still_resume() {
    use std::os::unix::process::CommandExt;
    let s = TestSim::unlimited(2000);
    let (job, _) = activation_job(&s, 400);
    let mut cmd = job.command(&s, &["--concurrency", "4"]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // Every file this process writes may grow to 24 KiB: the results file fills first,
            // mid-run, as a full disk would. EFBIG instead of the signal, like ENOSPC.
            let lim = libc::rlimit {
                rlim_cur: 24 * 1024,
                rlim_max: 24 * 1024,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("cannot write the outputs")
            || String::from_utf8_lossy(&o.stderr).contains("cannot write the outputs"),
        "{}",
        text(&o)
    );
    let partial = std::fs::read(job.path(".results.csv")).unwrap().len();
    assert!(partial > 0 && partial <= 24 * 1024);
    let o = job.run(&s, &["--resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_each_line_once(&job, 2, 401);
    // The same lines and outcomes as the job run in one go on an identical simulator.
    let calm = TestSim::unlimited(2000);
    let (straight, _) = activation_job(&calm, 400);
    let o = straight.run(&calm, &["--concurrency", "4"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(outcomes_by_line(&job), outcomes_by_line(&straight));
    assert_no_repeated_effect(&s);
}

#[test]
fn restart_of_a_finished_job_keeps_its_results_renamed_and_starts_afresh() {
    let sim = TestSim::unlimited(300);
    let ids = sim.pick(6, |r, p| p == Profile::Available && acme(r));
    let job = Job::new(
        "r.csv",
        &rows_body("iccid,action", &ids, |i| format!("{i},activate")),
    );
    let o = job.command(&sim, &["-q"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let first = std::fs::read_to_string(job.path(".results.csv")).unwrap();
    let o = job.command(&sim, &["--restart"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let kept: Vec<_> = std::fs::read_dir(job.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("r.results.csv."))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}\n{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(job.dir.path().join(&kept[0])).unwrap(),
        first,
        "the finished job's results are kept as they were"
    );
    assert!(text(&o).contains("kept as"), "{}", text(&o));
    // The new run has its own results: every row again, now already in state.
    let again = job.results();
    assert_eq!(again.len(), 6);
    assert!(again.iter().all(|r| r["outcome"] == "skipped"), "{again:?}");
}
