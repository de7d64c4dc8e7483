//! Every way a job ends, as a state machine: a signal or a deadline in each wait state
//! (retry backoff, the 429 gate, a slow token endpoint, rows parked behind their SIM,
//! activation polling), kill -9 at random moments, halts, a panicking worker, inputs that are
//! pipes or change under the job, and a provider that never recovers. Each ending must lose
//! no row, repeat no effect and say the truth. Timings are liveness bounds only.

use std::collections::HashMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use simbulk::sim::seed::Profile;
use simbulk::sim::{FaultConfig, SimConfig};

use crate::support::*;

/// The request timeout the jobs here run with; a stop must end the process within it plus a
/// few seconds.
const TIMEOUT: &str = "5s";
const STOP_BOUND: Duration = Duration::from_secs(5 + 5);

/// A wait state a running job can be in when the stop comes.
#[derive(Debug, Clone, Copy)]
enum WaitState {
    /// Rows sleeping between retries of a 503 storm.
    Backoff,
    /// Every worker held by the shared 429 gate (`Retry-After: 120`).
    Gate,
    /// A token refresh in flight to an identity provider that takes a minute.
    SlowToken,
    /// Rows parked behind earlier rows of the same SIM.
    Parked,
    /// Activations polled until they come up.
    Polling,
}

struct Scene {
    sim: TestSim,
    job: Job,
    /// Input lines of the job: 2..=last.
    last: u64,
    extra: Vec<&'static str>,
}

fn scene(state: WaitState) -> Scene {
    let cfg = SimConfig::unlimited(3000);
    let (sim, extra): (TestSim, Vec<&'static str>) = match state {
        WaitState::Backoff => (
            TestSim::start(SimConfig {
                faults: FaultConfig {
                    http503: 0.9,
                    ..FaultConfig::default()
                },
                ..cfg
            }),
            vec![],
        ),
        WaitState::Gate => (TestSim::start(cfg), vec![]),
        WaitState::SlowToken => (
            TestSim::start(SimConfig {
                token_ttl: Duration::from_secs(2),
                // 120 rows at 100 ms, 4 at a time: the job outlives its first token.
                faults: FaultConfig {
                    latency: Duration::from_millis(100),
                    ..FaultConfig::default()
                },
                ..cfg
            }),
            vec![],
        ),
        WaitState::Parked => (
            TestSim::start(SimConfig {
                faults: FaultConfig {
                    latency: Duration::from_millis(50),
                    ..FaultConfig::default()
                },
                ..cfg
            }),
            vec![],
        ),
        WaitState::Polling => (
            TestSim::start(SimConfig {
                activation_delay: Duration::from_secs(120),
                ..cfg
            }),
            vec!["--wait-active", "10m"],
        ),
    };
    let (body, last) = match state {
        WaitState::Parked => {
            // Eight SIMs, sixty rows each: most rows wait behind the one running for their SIM
            // (a few seconds of work at the simulator's 50 ms).
            let ids = sim.pick(8, |r, p| p == Profile::Active && acme(r));
            (toggle_body(&ids, 60), 1 + 8 * 60)
        }
        _ => {
            let ids = sim.pick(120, |r, p| p == Profile::Available && acme(r));
            (
                rows_body("iccid,action", &ids, |i| format!("{i},activate")),
                121,
            )
        }
    };
    Scene {
        sim,
        job: Job::new("ending.csv", &body),
        last,
        extra,
    }
}

impl Scene {
    fn start(&self, more: &[&str]) -> Child {
        let mut args = vec!["--concurrency", "4", "--timeout", TIMEOUT, "--resume"];
        args.extend(&self.extra);
        args.extend(more);
        spawn_piped(self.job.command(&self.sim, &args))
    }

    /// Puts the running job into its wait state and returns once it is there (counting from
    /// what the simulator had seen before, so a second run waits for its own requests).
    fn enter(&self, state: WaitState) {
        let s = &self.sim;
        let within = Duration::from_secs(20);
        let requests = s.stats().requests;
        let started = || s.stats().requests > requests + 2;
        match state {
            WaitState::Backoff => {
                let count = || {
                    s.stats()
                        .faults_injected
                        .get("http503")
                        .copied()
                        .unwrap_or(0)
                };
                let before = count();
                wait_for("503 retries", within, || count() >= before + 8);
            }
            WaitState::Gate => {
                wait_for("a first request", within, started);
                s.server().set_faults(FaultConfig {
                    http429: 1.0,
                    throttle_retry_after: 120,
                    ..FaultConfig::default()
                });
                wait_for("a 429", within, || s.stats().too_many_requests >= 1);
            }
            WaitState::SlowToken => {
                wait_for("a first request", within, started);
                s.server().set_faults(FaultConfig {
                    latency: Duration::from_millis(100),
                    token_latency: Duration::from_secs(60),
                    ..FaultConfig::default()
                });
                let before = s.stats().token_requests;
                wait_for("a token refresh in flight", within, || {
                    s.stats().token_requests > before
                });
            }
            WaitState::Parked => {
                let before = s.ledger().len();
                wait_for("some rows done", within, || s.ledger().len() >= before + 10);
            }
            WaitState::Polling => {
                let polls = || {
                    s.stats()
                        .by_route
                        .get("GET /api/v2/sim/{iccId}")
                        .map_or(0, |m| m.values().sum::<u64>())
                };
                let before = polls();
                wait_for("activations polled", within, || polls() >= before + 4);
            }
        }
    }

    /// Takes the faults away so that a resume can finish.
    fn heal(&self) {
        self.sim.server().set_faults(FaultConfig::default());
    }

    fn resume_to_the_end(&self) {
        self.heal();
        // No --wait-active: the polled rows are reconciled (pendingProvision is activated).
        let o = self.job.run(
            &self.sim,
            &["--resume", "--concurrency", "8", "--timeout", TIMEOUT],
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_each_line_once(&self.job, 2, self.last);
        assert_no_repeated_effect_per_row(&self.sim, &self.job);
    }
}

/// Each SIM's ledger holds as many changes of a field as the job has rows changing it.
fn assert_no_repeated_effect_per_row(sim: &TestSim, job: &Job) {
    let mut rows: HashMap<String, usize> = HashMap::new();
    for r in job.results() {
        *rows.entry(r["iccid"].clone()).or_default() += 1;
    }
    let mut effects: HashMap<String, usize> = HashMap::new();
    for e in sim.ledger() {
        if e.client != "system" {
            *effects.entry(e.icc_id.clone()).or_default() += 1;
        }
    }
    for (icc, n) in effects {
        assert!(
            n <= rows.get(&icc).copied().unwrap_or(0),
            "{icc}: {n} changes for {:?} rows",
            rows.get(&icc)
        );
    }
}

fn stop_in(state: WaitState, sig: i32) {
    let sc = scene(state);
    let child = sc.start(&[]);
    sc.enter(state);
    let t = Instant::now();
    signal(&child, sig);
    let (o, _) = exit_within(child, STOP_BOUND);
    assert_eq!(o.status.code(), Some(75), "{state:?}: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("job stopped") && out.contains("--resume"),
        "{state:?}: {out}"
    );
    assert!(!checkpoint_finished(&sc.job), "{state:?}: no end record");
    assert!(t.elapsed() < STOP_BOUND);
    sc.resume_to_the_end();
}

/// Whether the job's checkpoint has its end record.
fn checkpoint_finished(job: &Job) -> bool {
    std::fs::read_to_string(job.path(".checkpoint"))
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("E "))
}

#[test]
fn sigint_in_retry_backoff_exits_75_and_resume_finishes() {
    stop_in(WaitState::Backoff, libc::SIGINT);
}

#[test]
fn sigterm_in_retry_backoff_exits_75_and_resume_finishes() {
    stop_in(WaitState::Backoff, libc::SIGTERM);
}

#[test]
fn sighup_in_the_429_gate_stops_like_sigterm_and_resume_finishes() {
    stop_in(WaitState::Gate, libc::SIGHUP);
}

#[test]
fn sigint_in_the_429_gate_exits_75_and_resume_finishes() {
    stop_in(WaitState::Gate, libc::SIGINT);
}

#[test]
fn sigterm_in_the_429_gate_exits_75_and_resume_finishes() {
    stop_in(WaitState::Gate, libc::SIGTERM);
}

#[test]
fn sigint_during_a_slow_token_refresh_exits_75_and_resume_finishes() {
    stop_in(WaitState::SlowToken, libc::SIGINT);
}

#[test]
fn sigterm_during_a_slow_token_refresh_exits_75_and_resume_finishes() {
    stop_in(WaitState::SlowToken, libc::SIGTERM);
}

#[test]
fn sigint_with_rows_parked_behind_their_sim_exits_75_and_resume_finishes() {
    stop_in(WaitState::Parked, libc::SIGINT);
}

#[test]
fn sigterm_with_rows_parked_behind_their_sim_exits_75_and_resume_finishes() {
    stop_in(WaitState::Parked, libc::SIGTERM);
}

#[test]
fn sigint_while_polling_activations_exits_75_and_resume_finishes() {
    stop_in(WaitState::Polling, libc::SIGINT);
}

#[test]
fn sigterm_while_polling_activations_exits_75_and_resume_finishes() {
    stop_in(WaitState::Polling, libc::SIGTERM);
}

#[test]
fn three_stops_in_a_row_on_one_job_lose_and_repeat_nothing() {
    let sc = scene(WaitState::Backoff);
    let mut before = 0;
    for round in 0..3 {
        let child = sc.start(&[]);
        sc.enter(WaitState::Backoff);
        signal(&child, libc::SIGINT);
        let (o, _) = exit_within(child, STOP_BOUND);
        assert_eq!(o.status.code(), Some(75), "round {round}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("job stopped"));
        let now = sc.job.results().len();
        assert!(now >= before);
        before = now;
    }
    sc.resume_to_the_end();
}

/// The deadline the binary logged ("stopping at …").
fn logged_deadline(stderr: &str) -> jiff::Timestamp {
    let line = stderr
        .lines()
        .find(|l| l.contains("stopping at "))
        .unwrap_or_else(|| panic!("no deadline logged: {stderr}"));
    let at = line
        .split("stopping at ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap();
    at.parse().unwrap_or_else(|e| panic!("{at}: {e}"))
}

fn deadline_in(state: WaitState, flag: &[&str]) {
    let sc = scene(state);
    let child = sc.start(flag);
    sc.enter(state);
    let (o, _) = exit_within(child, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(75), "{state:?}: {}", text(&o));
    let deadline = logged_deadline(&String::from_utf8_lossy(&o.stderr));
    if let Some(last) = sc.sim.stats().last_api_request_at {
        let last: jiff::Timestamp = last.parse().unwrap();
        // Arrival at the simulator follows the start by the loopback's fraction of a ms.
        assert!(
            last <= deadline + jiff::SignedDuration::from_millis(50),
            "{state:?}: a request arrived at {last}, after the deadline {deadline}"
        );
    }
    sc.resume_to_the_end();
}

#[test]
fn max_duration_in_the_429_gate_stops_on_time_and_resume_finishes() {
    deadline_in(WaitState::Gate, &["--max-duration", "3s"]);
}

#[test]
fn max_duration_in_retry_backoff_stops_on_time_and_resume_finishes() {
    deadline_in(WaitState::Backoff, &["--max-duration", "3s"]);
}

#[test]
fn until_while_polling_activations_stops_on_time_and_resume_finishes() {
    let at = jiff::Zoned::now()
        .checked_add(jiff::SignedDuration::from_secs(4))
        .unwrap()
        .strftime("%H:%M:%S")
        .to_string();
    deadline_in(WaitState::Polling, &["--until", &at]);
}

#[test]
fn until_with_rows_parked_stops_on_time_and_resume_finishes() {
    let at = jiff::Zoned::now()
        .checked_add(jiff::SignedDuration::from_secs(3))
        .unwrap()
        .strftime("%H:%M:%S")
        .to_string();
    deadline_in(WaitState::Parked, &["--until", &at]);
}

#[test]
fn kill_9_at_20_seeded_moments_gives_the_outcomes_of_an_uninterrupted_run() {
    let faults = FaultConfig {
        latency: Duration::from_millis(2),
        http503: 0.05,
        apply_then_fail: 0.08,
        drop: 0.02,
        ..FaultConfig::default()
    };
    let make = || {
        TestSim::start(SimConfig {
            faults: faults.clone(),
            ..SimConfig::unlimited(3000)
        })
    };
    let (calm, chaos) = (make(), make());
    // SIMs that need each change: the outcomes must not depend on when the kills came.
    let available = calm.pick(200, |r, p| {
        p == Profile::Available && r.sim.portfolio_id == "pf-acme-eu"
    });
    let suspended = calm.pick(20, |r, p| p == Profile::CustomerSuspended && acme(r));
    let tagged = calm.pick(60, |r, p| {
        p == Profile::Active && acme(r) && r.attributes.iter().any(|a| a.name == "orderId")
    });
    let mut body = String::from("iccid,action,attribute,value\n");
    for (i, id) in available.iter().enumerate() {
        body += &match i % 3 {
            0 => format!("{id},activate,,\n"),
            1 => format!("{id},set-attribute,crash,v{i}\n"),
            _ => format!("{id},set-portfolio,,pf-acme-us\n"),
        };
    }
    for id in &suspended {
        body += &format!("{id},deactivate,,\n");
    }
    for id in &tagged {
        body += &format!("{id},delete-attribute,orderId,\n");
    }
    // Rows already in the requested state: skipped on the plan's read, with no write.
    let in_state = calm.pick(40, |r, p| {
        p == Profile::Active && acme(r) && !tagged.contains(&r.sim.icc_id)
    });
    for (i, id) in in_state.iter().enumerate() {
        body += &if i % 2 == 0 {
            format!("{id},activate,,\n")
        } else {
            format!("{id},delete-attribute,crash,\n")
        };
    }
    let rows = (available.len() + suspended.len() + tagged.len() + in_state.len()) as u64;
    let straight = Job::new("kill.csv", &body);
    let o = straight.run(&calm, &["--rate", "300", "--concurrency", "6"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let killed = Job::new("kill.csv", &body);
    let args = ["--resume", "--rate", "40", "--concurrency", "6"];
    let code = kill_loop(&killed, &chaos, &args, 20, 7);
    assert_eq!(code, Some(1));
    assert_each_line_once(&killed, 2, rows + 1);
    assert_eq!(
        outcomes_by_line(&killed),
        outcomes_by_line(&straight),
        "outcomes row for row"
    );
    assert_no_repeated_effect(&chaos);
}

#[test]
fn kill_9_loop_over_several_rows_per_sim_applies_each_row_once() {
    let s = TestSim::start(SimConfig {
        faults: FaultConfig {
            latency: Duration::from_millis(2),
            apply_then_fail: 0.05,
            drop: 0.02,
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(3000)
    });
    let avail = s.pick(60, |r, p| p == Profile::Available && acme(r));
    let active = s.pick(60, |r, p| p == Profile::Active && acme(r));
    let mut body = String::from("iccid,action,attribute,value\n");
    // Rows of one SIM both next to each other and far apart.
    for id in &avail[..30] {
        body += &format!("{id},activate,,\n{id},deactivate,,\n");
    }
    for id in &active[..30] {
        body += &format!("{id},suspend,,\n");
    }
    for (i, id) in avail[30..].iter().enumerate() {
        body += &format!("{id},set-attribute,twice,a{i}\n{id},set-attribute,twice,b{i}\n");
    }
    for id in &active[..30] {
        body += &format!("{id},unsuspend,,\n");
    }
    for (i, id) in active[30..].iter().enumerate() {
        body += &format!("{id},suspend,,\n{id},unsuspend,,\n{id},set-attribute,third,c{i}\n");
    }
    let rows = body.lines().count() as u64 - 1;
    let job = Job::new("per-sim.csv", &body);
    let code = kill_loop(
        &job,
        &s,
        &["--resume", "--rate", "40", "--concurrency", "8"],
        30,
        11,
    );
    assert_eq!(code, Some(0));
    assert_each_line_once(&job, 2, rows + 1);
    // One ledger effect per row: count the changes per SIM and field.
    let mut effects: HashMap<(String, String), usize> = HashMap::new();
    for e in s.ledger() {
        let what = if e.kind == "sim" {
            e.field.clone()
        } else {
            e.kind.clone()
        };
        *effects.entry((e.icc_id.clone(), what)).or_default() += 1;
    }
    for id in &avail[..30] {
        assert_eq!(effects[&(id.clone(), "status".into())], 2, "{id}");
        assert_eq!(s.sim(id).sim.status, "available");
    }
    for id in &active {
        assert_eq!(effects[&(id.clone(), "customerSuspend".into())], 2, "{id}");
        assert!(!s.sim(id).sim.customer_suspend);
    }
    for (i, id) in avail[30..].iter().enumerate() {
        assert_eq!(effects[&(id.clone(), "attribute.create".into())], 1, "{id}");
        assert_eq!(effects[&(id.clone(), "attribute.update".into())], 1, "{id}");
        let rec = s.sim(id);
        let v: Vec<&str> = rec
            .attributes
            .iter()
            .filter(|a| a.name == "twice")
            .map(|a| a.value.as_str())
            .collect();
        assert_eq!(v, vec![format!("b{i}").as_str()]);
    }
}

#[test]
fn a_403_halt_leaves_its_rows_undone_and_resume_with_the_permission_does_them() {
    let s = TestSim::unlimited(500);
    let ids = s.pick(40, |r, p| p == Profile::Available && acme(r));
    let job = Job::new(
        "perm.csv",
        &rows_body("iccid,action,attribute,value", &ids, |i| {
            format!("{i},set-attribute,site,berlin")
        }),
    );
    // The read-only client may read but not write: every write answers 403.
    let o = job
        .command(&s, &["--concurrency", "4"])
        .env("SIMBULK_CLIENT_ID", "sim-readonly-client")
        .env("SIMBULK_CLIENT_SECRET", "s3cr3t-readonly")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("permission denied (HTTP 403 error 6024")
            && out.contains("iccAttributeCreate")
            && out.contains("run again with --resume")
            && out.contains("rows have no result yet"),
        "{out}"
    );
    assert!(
        job.results().iter().all(|r| r["outcome"] != "failed"),
        "rows that met the 403 are not recorded as failed"
    );
    // The permission fixed (a client that has it), the same job resumes.
    let o = job.run(&s, &["--resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_each_line_once(&job, 2, 41);
    assert_eq!(outcomes(&job.results())["ok"], 40);
}

#[test]
fn halts_name_the_way_out_and_a_halt_on_the_last_row_is_a_completed_job() {
    let s = TestSim::unlimited(3000);
    let ids = s.pick(30, |r, p| {
        p == Profile::Available && r.sim.portfolio_id == "pf-acme-eu"
    });
    let good = s.pick(30, |r, p| {
        p == Profile::Active && acme(r) && !ids.contains(&r.sim.icc_id)
    });
    // A wrong package on every row: halts after 5 with the cause and --restart.
    let wrong = Job::new(
        "wrong.csv",
        &rows_body("iccid,action,value", &ids, |i| {
            format!("{i},set-package,99999")
        }),
    );
    let o = wrong.run(&s, &["--halt-after-same-error", "5", "--concurrency", "1"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("error 16005")
            && out.contains("package id is probably wrong")
            && out.contains("--restart")
            && !out.contains("(request req-"),
        "{out}"
    );
    // The same failure on the job's last rows, with nothing left: completed, exit 1.
    let mut body = String::from("iccid,action,value\n");
    for g in &good[..5] {
        body += &format!("{g},suspend,\n");
    }
    for i in &ids[..5] {
        body += &format!("{i},set-package,99999\n");
    }
    let tail = Job::new("tail.csv", &body);
    let o = tail.run(&s, &["--halt-after-same-error", "5", "--concurrency", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("job completed") && !out.contains("to resume"),
        "{out}"
    );
    assert!(checkpoint_finished(&tail));
}

#[test]
fn tokens_are_attached_after_pacing_so_queued_workers_meet_no_expired_token() {
    let s = TestSim::start(SimConfig {
        token_ttl: Duration::from_secs(3),
        ..SimConfig::unlimited(1000)
    });
    let ids = s.pick(150, |r, p| p == Profile::Active && acme(r));
    let job = Job::new(
        "tokens.csv",
        &rows_body("iccid,action", &ids, |i| format!("{i},activate")),
    );
    let o = job.run(&s, &["--rate", "10", "--concurrency", "8"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let st = s.stats();
    let unauthorized: u64 = st.by_route.values().filter_map(|m| m.get("401")).sum();
    assert!(
        unauthorized <= st.token_requests,
        "{unauthorized} answers of 401 for {} token lifetimes",
        st.token_requests
    );
}

#[test]
fn a_pipe_or_a_fifo_as_input_is_refused_at_once_with_the_fix() {
    let s = TestSim::unlimited(100);
    let ids = s.pick(3, |r, _| acme(r));
    let body = rows_body("iccid,action", &ids, |i| format!("{i},activate"));
    let mut child = simbulk()
        .args(["run", "/dev/stdin", "--base-url", &s.url()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let _ = child.stdin.take().unwrap().write_all(body.as_bytes());
    let (o, _) = exit_within(child, Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("save it to a file first"),
        "{}",
        text(&o)
    );
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.csv");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads the C string we pass.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // No writer ever opens it: an ordinary open would block for ever.
    let child = spawn_piped({
        let mut c = simbulk();
        c.arg("run").arg(&fifo).args(["--base-url", &s.url()]);
        c
    });
    let (o, _) = exit_within(child, Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("pipe or FIFO"));
    assert_eq!(s.stats().requests, 0);
}

#[test]
fn an_input_truncated_during_the_run_is_not_a_finished_job() {
    let s = TestSim::start(SimConfig {
        faults: FaultConfig {
            latency: Duration::from_millis(5),
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(6000)
    });
    let ids = s.pick(3000, |r, _| acme(r));
    assert_eq!(ids.len(), 3000);
    // Wide rows, so the file is far larger than what the reader holds ahead.
    let pad = "x".repeat(400);
    let body = rows_body("iccid,action,note", &ids, |i| format!("{i},activate,{pad}"));
    let job = Job::new("shrinks.csv", &body);
    let child = spawn_piped(job.command(&s, &["--concurrency", "8"]));
    wait_for("some rows done", Duration::from_secs(20), || {
        std::fs::metadata(job.path(".results.csv")).is_ok_and(|m| m.len() > 2000)
    });
    let keep = body.lines().take(1500).map(|l| l.len() + 1).sum::<usize>();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&job.input)
        .unwrap()
        .set_len(keep as u64)
        .unwrap();
    let (o, _) = exit_within(child, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("changed while the job ran"),
        "{}",
        text(&o)
    );
    assert!(!checkpoint_finished(&job));
    assert!(
        job.results()
            .iter()
            .all(|r| r["outcome"] == "ok" || r["outcome"] == "skipped"),
        "no row of the cut file was taken for a row of the job"
    );
    std::fs::write(&job.input, &body).unwrap();
    let o = job.run(&s, &["--resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_each_line_once(&job, 2, 3001);
}

#[test]
fn a_panicking_worker_ends_the_job_with_3_and_the_files_resume() {
    let s = TestSim::unlimited(500);
    let ids = s.pick(40, |r, p| p == Profile::Available && acme(r));
    let job = Job::new(
        "panic.csv",
        &rows_body("iccid,action", &ids, |i| format!("{i},activate")),
    );
    let child = spawn_piped({
        let mut c = job.command(&s, &["--concurrency", "4"]);
        c.env("SIMBULK_TEST_PANIC_AT_LINE", "10");
        c
    });
    let (o, _) = exit_within(child, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("a worker panicked"),
        "{}",
        text(&o)
    );
    assert!(job.results().iter().all(|r| r["line"] != "10"));
    let o = job.run(&s, &["--resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_each_line_once(&job, 2, 41);
    assert_no_repeated_effect(&s);
}

#[test]
fn a_provider_answering_429_for_ever_halts_after_the_stall_timeout() {
    let s = TestSim::start(SimConfig {
        faults: FaultConfig {
            http429: 1.0,
            throttle_retry_after: 1,
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(500)
    });
    let ids = s.pick(20, |r, p| p == Profile::Available && acme(r));
    let job = Job::new(
        "stall.csv",
        &rows_body("iccid,action", &ids, |i| format!("{i},activate")),
    );
    let child = spawn_piped(job.command(&s, &["--stall-timeout", "3s"]));
    let (o, _) = exit_within(child, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("no row finished for 3s") && out.contains("--resume"),
        "{out}"
    );
    assert!(!checkpoint_finished(&job));
}
