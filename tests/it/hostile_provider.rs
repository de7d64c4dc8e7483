//! A hostile world: a provider that answers endless or huge bodies and odd token replies, a
//! proxy that would capture credentials, local files that are devices, FIFOs, huge or links,
//! arguments out of range, a closed stdout. Each must end in a clear error or a quiet exit,
//! with bounded memory, nothing overwritten and no credential sent where it must not go.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use simbulk::sim::seed::Profile;

use crate::support::*;

/// Peak memory the process may reach whatever the provider sends.
const RSS_BOUND_KIB: i64 = 64 * 1024;

/// Runs `cmd` to its end; returns exit code, stdout, stderr and the program's own peak RSS
/// (KiB), which a debug build reports on request (a fork's `ru_maxrss` would include the
/// test runner's memory at the fork).
fn measured(mut cmd: Command) -> (Option<i32>, String, String, i64) {
    let o = cmd
        .env("SIMBULK_TEST_PEAK_RSS", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let rss = err
        .lines()
        .find_map(|l| l.strip_prefix("simbulk-test-peak-rss-kib "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak reported (killed?): {}", text(&o)));
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        err,
        rss,
    )
}

/// A body that never ends: 64 KiB chunks for ever.
fn endless() -> Body {
    let chunk = bytes::Bytes::from(vec![b'x'; 64 << 10]);
    Body::from_stream(futures::stream::repeat_with(move || {
        Ok::<_, std::io::Error>(chunk.clone())
    }))
}

fn token_ok(reply: impl Into<String>) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        reply.into(),
    )
        .into_response()
}

const SIM_JSON: &str = r#"{"iccId":"8944500990000012342","status":"available","customerSuspend":false,"adminSuspend":false,"systemSuspend":false,"packageId":1,"portfolioId":"p","mnoId":1}"#;

/// The list of the one SIM the hostile providers hold.
fn sim_list_json() -> &'static str {
    const LIST: &str = concat!(
        r#"{"data":[{"iccId":"8944500990000012342","status":"available","customerSuspend":false,"#,
        r#""adminSuspend":false,"systemSuspend":false,"packageId":1,"portfolioId":"p","mnoId":1}]}"#
    );
    LIST
}

fn one_row_job() -> Job {
    Job::new("h.csv", "iccid,action\n8944500990000012342,activate\n")
}

fn job_against(url: &str, job: &Job, extra: &[&str]) -> Command {
    let mut c = simbulk();
    c.arg("run")
        .arg(&job.input)
        .args(["--base-url", url, "--timeout", "3s", "--max-retries", "2"])
        .args(extra);
    c
}

#[test]
fn an_endless_api_body_is_cut_at_its_cap_with_bounded_memory() {
    let s = serve(
        Router::new()
            .route(
                "/oauth2/token",
                post(|| async { token_ok(r#"{"access_token":"t","expires_in":3600}"#) }),
            )
            .route("/api/v2/sim", get(|| async { token_ok(sim_list_json()) }))
            .route(
                "/api/v2/sim/{icc}",
                get(|| async { Response::new(endless()) })
                    .patch(|| async { Response::new(endless()) }),
            )
            .route(
                "/api/v2/sim/{icc}/attribute",
                get(|| async { Response::new(endless()) }).post(|| async {
                    (
                        StatusCode::BAD_REQUEST,
                        [("content-type", "application/json")],
                        r#"{"errorCode":16002,"message":"exists"}"#,
                    )
                }),
            ),
    );
    // A write's 2xx is a success whatever its body: the row is ok, the rest is not read.
    let job = one_row_job();
    let (code, out, err, rss) = measured(job_against(&s.url, &job, &[]));
    assert!(rss < RSS_BOUND_KIB, "peak RSS {rss} KiB\n{out}{err}");
    assert_eq!(code, Some(0), "{out}{err}");
    // A read that never ends fails the row, naming the cap: the attribute list (after the
    // create met 16002), and a SIM's own read when the batch list is not there to plan.
    let job = Job::new(
        "a.csv",
        "iccid,action,attribute,value\n8944500990000012342,set-attribute,a,b\n",
    );
    let (code, out, err, rss) = measured(job_against(&s.url, &job, &["--no-plan"]));
    assert!(rss < RSS_BOUND_KIB, "peak RSS {rss} KiB\n{out}{err}");
    assert_eq!(code, Some(1), "{out}{err}");
    let job = one_row_job();
    let (code, out, err, rss) = measured(job_against(&s.url, &job, &["--no-plan"]));
    assert!(rss < RSS_BOUND_KIB, "peak RSS {rss} KiB\n{out}{err}");
    assert_eq!(code, Some(1), "{out}{err}");
    let results = std::fs::read_to_string(job.path(".results.csv")).unwrap();
    assert!(results.contains("larger than 1024 KiB"), "{results}");
    // The same attribute row with the batch list planning it.
    let job = Job::new(
        "a.csv",
        "iccid,action,attribute,value\n8944500990000012342,set-attribute,a,b\n",
    );
    let (code, out, err, rss) = measured(job_against(&s.url, &job, &[]));
    assert!(rss < RSS_BOUND_KIB, "peak RSS {rss} KiB\n{out}{err}");
    assert_eq!(code, Some(1), "{out}{err}");
    let results = std::fs::read_to_string(job.path(".results.csv")).unwrap();
    assert!(results.contains("larger than 1024 KiB"), "{results}");
}

#[test]
fn an_endless_or_huge_token_body_is_refused_with_bounded_memory() {
    for huge in [true, false] {
        let app = Router::new().route(
            "/oauth2/token",
            post(move || async move {
                if huge {
                    // 200 MB announced up front.
                    Response::builder()
                        .header("content-length", (200u64 << 20).to_string())
                        .body(endless())
                        .unwrap()
                } else {
                    Response::new(endless())
                }
            }),
        );
        let s = serve(app);
        let job = one_row_job();
        let (code, out, err, rss) = measured(job_against(&s.url, &job, &[]));
        assert!(rss < RSS_BOUND_KIB, "peak RSS {rss} KiB (huge {huge})");
        assert_eq!(code, Some(3), "{out}{err}");
        assert!(err.contains("larger than 64 KiB"), "{err}");
    }
}

#[test]
fn odd_token_replies_are_read_as_providers_mean_them() {
    for reply in [
        r#"{"access_token":"t"}"#,
        r#"{"access_token":"t","expires_in":"3600","token_type":"bearer"}"#,
        r#"{"access_token":"t","expires_in":-5}"#,
        r#"{"access_token":"t","expires_in":1e30}"#,
        r#"{"access_token":"t","expires_in":18446744073709551615}"#,
    ] {
        let s = serve(
            Router::new()
                .route(
                    "/oauth2/token",
                    post(move || async move { token_ok(reply) }),
                )
                .route(
                    "/api/v2/sim/{icc}",
                    get(|| async { token_ok(SIM_JSON) }).patch(|| async { token_ok(SIM_JSON) }),
                ),
        );
        let job = one_row_job();
        let o = job_against(&s.url, &job, &[]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{reply}: {}", text(&o));
    }
}

#[test]
fn a_token_body_that_stalls_is_retried_and_named() {
    let calls = Arc::new(Mutex::new(0u32));
    let c2 = calls.clone();
    let s = serve(Router::new().route(
        "/oauth2/token",
        post(move || {
            let calls = c2.clone();
            async move {
                *calls.lock().unwrap() += 1;
                // Headers at once, then a body that never comes.
                Response::new(Body::from_stream(futures::stream::pending::<
                    Result<bytes::Bytes, std::io::Error>,
                >()))
            }
        }),
    ));
    let job = one_row_job();
    let o = job_against(&s.url, &job, &["--timeout", "1s"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(*calls.lock().unwrap() >= 2, "retried");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no response within"), "{err}");
    assert!(!err.contains("not JSON"), "{err}");
}

#[test]
fn redirects_are_never_followed_and_carry_no_credential_away() {
    let elsewhere = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = elsewhere.clone();
    let other = serve(Router::new().fallback(move |req: axum::extract::Request| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(format!("{:?}", req.headers()));
            StatusCode::OK
        }
    }));
    let target = other.url.clone();
    let s = serve(Router::new().fallback(move || {
        let to = format!("{target}/stolen");
        async move { (StatusCode::FOUND, [("location", to)]).into_response() }
    }));
    let job = one_row_job();
    let o = job_against(&s.url, &job, &[]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        elsewhere.lock().unwrap().is_empty(),
        "no request reached the redirect's target"
    );
}

/// A fake proxy: records every byte it is sent, answers nothing, closes.
fn capture_proxy() -> (String, Arc<Mutex<Vec<u8>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 4096];
            if let Ok(n) = c.read(&mut buf) {
                g.lock().unwrap().extend_from_slice(&buf[..n]);
            }
            let _ = c.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
        }
    });
    (url, got)
}

#[test]
fn a_proxy_in_the_environment_never_sees_a_credential() {
    let (proxy, got) = capture_proxy();
    let sim = TestSim::unlimited(200);
    let ids = sim.pick(2, |r, p| p == Profile::Available && acme(r));
    let body = rows_body("iccid,action", &ids, |i| format!("{i},activate"));
    let with_proxy = |c: &mut Command| {
        for k in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
        ] {
            c.env(k, &proxy);
        }
    };
    // Plain http to loopback (the simulator, by address and by name): straight there.
    let port = sim.url().rsplit(':').next().unwrap().to_owned();
    for base in [sim.url(), format!("http://localhost:{port}")] {
        let job = Job::new("p.csv", &body);
        let mut c = simbulk();
        c.arg("run")
            .arg(&job.input)
            .args(["--base-url", &base, "--restart"]);
        with_proxy(&mut c);
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{base}: {}", text(&o));
    }
    assert!(got.lock().unwrap().is_empty(), "nothing went to the proxy");
    // A remote https API with its token endpoint on loopback http: the token request (with
    // the Basic credentials) goes straight to loopback, never through the proxy.
    let job = Job::new("p.csv", &body);
    let mut c = simbulk();
    c.arg("run").arg(&job.input).args([
        "--base-url",
        "https://sim.example.invalid",
        "--token-url",
        &format!("{}/oauth2/token", sim.url()),
        "--timeout",
        "2s",
        "--max-retries",
        "0",
    ]);
    with_proxy(&mut c);
    let o = c.output().unwrap();
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        sim.stats().token_requests >= 1,
        "the token came from loopback"
    );
    let seen = String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
    assert!(
        !seen.contains("Basic ") && !seen.contains("oauth2"),
        "{seen}"
    );
    got.lock().unwrap().clear();
    // https to a remote host: a CONNECT tunnel, so the proxy sees the host, not the secret.
    let job = Job::new("p.csv", &body);
    let mut c = simbulk();
    c.arg("run").arg(&job.input).args([
        "--base-url",
        "https://sim.example.invalid",
        "--timeout",
        "2s",
    ]);
    with_proxy(&mut c);
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let seen = String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
    assert!(
        seen.starts_with("CONNECT sim.example.invalid:443"),
        "{seen}"
    );
    for secret in [SECRET, "authorization", "Authorization", "Basic "] {
        assert!(!seen.contains(secret), "{secret} reached the proxy: {seen}");
    }
}

#[test]
fn device_fifo_folder_and_huge_checkpoints_and_secrets_are_refused_at_once() {
    let sim = TestSim::unlimited(100);
    let ids = sim.pick(2, |r, _| acme(r));
    let job = Job::new(
        "cp.csv",
        &rows_body("iccid,action", &ids, |i| format!("{i},activate")),
    );
    let fifo = job.dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads the C string we pass.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let zeros = job.dir.path().join("zeros.checkpoint");
    std::fs::File::create(&zeros)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let folder = job.dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    for cp in [
        Path::new("/dev/full"),
        Path::new("/dev/zero"),
        &fifo,
        &folder,
        &zeros,
    ] {
        let mut c = job.command(&sim, &["--resume", "--checkpoint"]);
        c.arg(cp);
        let (code, out, err, rss) = measured(c);
        assert_eq!(code, Some(2), "{}: {out}{err}", cp.display());
        assert!(err.contains(&cp.display().to_string()), "{err}");
        assert!(rss < RSS_BOUND_KIB, "{}: peak RSS {rss} KiB", cp.display());
    }
    let mut c = job.command(&sim, &["--client-secret-file", "/dev/zero"]);
    c.env_remove("SIMBULK_CLIENT_SECRET");
    let (code, _, err, rss) = measured(c);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("/dev/zero") && err.contains("not a regular file"),
        "{err}"
    );
    assert!(rss < RSS_BOUND_KIB);
    assert_eq!(sim.stats().requests, 0);
}

fn digest(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_default()
}

#[test]
fn outputs_that_are_the_input_a_link_or_another_runs_are_refused_and_nothing_is_overwritten() {
    let sim = TestSim::unlimited(300);
    let ids = sim.pick(20, |r, p| p == Profile::Available && acme(r));
    let job = Job::new(
        "o.csv",
        &rows_body("iccid,action", &ids, |i| format!("{i},activate")),
    );
    let before = digest(&job.input);
    let results = job.path(".results.csv");
    let link = job.dir.path().join("link.json");
    std::os::unix::fs::symlink(&job.input, &link).unwrap();
    let hard = job.dir.path().join("hard.csv");
    std::fs::hard_link(&job.input, &hard).unwrap();
    std::fs::write(&results, "keep me\n").unwrap();
    for extra in [
        vec!["--summary-json", job.input.to_str().unwrap()],
        vec!["--summary-json", results.to_str().unwrap()],
        vec!["--summary-json", link.to_str().unwrap()],
        vec!["--results", hard.to_str().unwrap()],
    ] {
        let o = job.run(&sim, &extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", text(&o));
        assert_eq!(digest(&job.input), before, "{extra:?}");
        assert_eq!(digest(&results), b"keep me\n", "{extra:?}");
    }
    assert_eq!(sim.stats().requests, 0);
    // Two runs with their own checkpoints but one results file: the second is refused.
    let slow = TestSim::start(simbulk::sim::SimConfig {
        faults: simbulk::sim::FaultConfig {
            latency: Duration::from_millis(50),
            ..Default::default()
        },
        ..simbulk::sim::SimConfig::unlimited(300)
    });
    let first = spawn_piped(job.command(&slow, &["--restart", "--concurrency", "1"]));
    wait_for("the first run's results", Duration::from_secs(20), || {
        digest(&results).len() > 200
    });
    let other = job.dir.path().join("other.checkpoint");
    let o = job.run(
        &slow,
        &["--restart", "--checkpoint", other.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("being written by another simbulk run"),
        "{}",
        text(&o)
    );
    let o = first.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_each_line_once(&job, 2, 21);
}

#[test]
fn restart_makes_the_checkpoint_private_and_the_lock_file_goes_with_the_run() {
    use std::os::unix::fs::PermissionsExt;
    let sim = TestSim::unlimited(100);
    let ids = sim.pick(3, |r, _| acme(r));
    let job = Job::new(
        "m.csv",
        &rows_body("iccid,action", &ids, |i| format!("{i},activate")),
    );
    let cp = job.path(".checkpoint");
    std::fs::write(&cp, "SIMBULK-CHECKPOINT 2 {}\n").unwrap();
    std::fs::set_permissions(&cp, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = job.run(&sim, &["--restart"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mode = std::fs::metadata(&cp).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        !job.path(".checkpoint.lock").exists(),
        "the lock file is removed"
    );
    // A run refused before its outputs leaves no lock file either.
    let o = job
        .command(&sim, &["--restart"])
        .env("SIMBULK_CLIENT_SECRET", "wrong")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(!job.path(".checkpoint.lock").exists());
}

#[test]
fn arguments_out_of_range_or_not_utf8_are_clear_errors_not_panics() {
    use std::os::unix::ffi::OsStrExt;
    let job = one_row_job();
    let bad_name = std::ffi::OsStr::from_bytes(b"caf\xe9.csv");
    for args in [
        vec!["--rate", "1e-20"],
        vec!["--rate", "1e-9"],
        vec!["--max-retries", "99999999999"],
        vec!["--concurrency", "0"],
        vec!["--timeout", "0s"],
        vec!["--max-duration", "1000000y"],
    ] {
        let o = simbulk()
            .arg("run")
            .arg(&job.input)
            .args(["--base-url", "http://127.0.0.1:9"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let o = simbulk()
        .arg("run")
        .arg(bad_name)
        .args(["--base-url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
}

#[test]
fn a_results_file_with_a_huge_line_number_is_reported_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.csv");
    std::fs::write(
        &p,
        "line,iccid,action,value,attribute,outcome\n18446744073709551615,x,activate,,,ok\n99999999999999,x,activate,,,ok\n2,x,activate,,,ok\n",
    )
    .unwrap();
    let (code, out, err, rss) = measured({
        let mut c = simbulk();
        c.arg("report").arg(&p);
        c
    });
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(rss < RSS_BOUND_KIB);
    assert!(out.contains("3"), "{out}");
}

/// Spawns `cmd` with its stdout a pipe whose reader leaves after `lines` lines.
fn reader_leaves_after(mut cmd: Command, lines: usize) -> std::process::Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut b = [0u8; 1];
    while seen.iter().filter(|&&c| c == b'\n').count() < lines && out.read(&mut b).unwrap_or(0) == 1
    {
        seen.push(b[0]);
    }
    drop(out);
    let (o, _) = exit_within(child, Duration::from_secs(60));
    o
}

#[test]
fn a_closed_stdout_ends_quietly_and_the_summary_json_is_still_written() {
    let quiet = |o: &std::process::Output| {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{}",
            text(o)
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let mut demo = simbulk();
    demo.arg("demo").arg("--out").arg(dir.path());
    let o = reader_leaves_after(demo, 1);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    quiet(&o);
    let mut man = simbulk();
    man.arg("man");
    let o = reader_leaves_after(man, 2);
    assert_eq!(o.status.code(), Some(0));
    quiet(&o);
    // `run … | true`: the job does its work, the summary JSON is written, the code is the job's.
    let sim = TestSim::unlimited(300);
    let ids = sim.pick(10, |r, p| p == Profile::Available && acme(r));
    let job = Job::new(
        "t.csv",
        &rows_body("iccid,action", &ids, |i| format!("{i},activate")),
    );
    let j = job.dir.path().join("s.json");
    let o = reader_leaves_after(
        job.command(&sim, &["--summary-json", j.to_str().unwrap()]),
        0,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    quiet(&o);
    assert!(
        std::fs::read_to_string(&j)
            .unwrap()
            .contains("\"completed\"")
    );
    // `export | head`
    let mut export = simbulk();
    export.args([
        "export",
        "--base-url",
        &sim.url(),
        "--rate",
        "0",
        "--page-size",
        "10",
    ]);
    let o = reader_leaves_after(export, 2);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    quiet(&o);
}

#[test]
fn ten_thousand_mangled_iccids_make_a_few_groups_in_the_summary() {
    let sim = TestSim::unlimited(100);
    let mut body = String::from("iccid,action\n");
    for i in 0..10_000u64 {
        // Wrong Luhn digits, wrong lengths and letters, each with its own ICCID.
        body += &match i % 3 {
            0 => format!("89445009900{i:08}1,activate\n"),
            1 => format!("8944{i:08},activate\n"),
            _ => format!("8944X{i:014},activate\n"),
        };
    }
    let job = Job::new("mangled.csv", &body);
    let o = job.run(&sim, &["--halt-after-same-error", "0"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let errors = out
        .lines()
        .skip_while(|l| !l.contains("top errors"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .filter(|l| l.contains(" × "))
        .count();
    assert!((2..=4).contains(&errors), "{out}");
    assert!(out.contains("ICCID not 19 or 20 digits"), "{out}");
}

#[test]
fn the_failures_file_keeps_nuls_latin1_and_crlf_byte_for_byte() {
    let sim = TestSim::unlimited(300);
    let ids = sim.pick(2, |r, p| p == Profile::CustomerSuspended && acme(r));
    let mut body = b"iccid,action,note\r\n".to_vec();
    let bad = b"8944500990000012343,activate,caf\xe9\0x\r\n".to_vec();
    let failing = format!("{},deactivate,\0nul\r\n", ids[0]).into_bytes();
    body.extend_from_slice(&bad);
    body.extend_from_slice(&failing);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("raw.csv");
    std::fs::write(&input, &body).unwrap();
    let o = simbulk()
        .arg("run")
        .arg(&input)
        .args(["--base-url", &sim.url()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let failures = std::fs::read(dir.path().join("raw.failures.csv")).unwrap();
    let mut want = b"iccid,action,note\r\n".to_vec();
    // Completion order may differ: both lines are there, exactly.
    assert!(failures.starts_with(&want));
    want.extend_from_slice(&bad);
    want.extend_from_slice(&failing);
    assert_eq!(failures.len(), want.len());
    for line in [&bad, &failing] {
        assert!(
            failures.windows(line.len()).any(|w| w == line.as_slice()),
            "{:?}",
            String::from_utf8_lossy(&failures)
        );
    }
    let results = std::fs::read_to_string(dir.path().join("raw.results.csv")).unwrap();
    assert!(
        results.contains("caf\\xE9\\x00x") && results.contains("\\x00nul"),
        "{results}"
    );
}

/// An HTTPS server on 127.0.0.1:0 with the test certificate (self-signed, `CA:TRUE`, for
/// `localhost`), answering tokens and SIMs; returns its port.
fn tls_server() -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("selfsigned-cert.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("selfsigned-key.pem")).unwrap();
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    );
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in l.incoming().flatten() {
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                // One request per connection is enough here.
                let mut req = Vec::new();
                let mut b = [0u8; 1];
                while !req.ends_with(b"\r\n\r\n") && tls.read(&mut b).unwrap_or(0) == 1 {
                    req.push(b[0]);
                }
                let head = String::from_utf8_lossy(&req).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                let _ = tls.read_exact(&mut body);
                let reply = if head.starts_with("post /oauth2/token") {
                    r#"{"access_token":"t","expires_in":3600}"#
                } else {
                    SIM_JSON
                };
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    port
}

#[test]
fn a_ca_bundle_trusts_a_self_signed_certificate_that_openssl_marks_as_a_ca() {
    let port = tls_server();
    let base = format!("https://localhost:{port}");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let run = |bundle: Option<&str>| {
        let job = one_row_job();
        let mut c = job_against(&base, &job, &[]);
        if let Some(b) = bundle {
            c.arg("--ca-bundle").arg(fixtures.join(b));
        }
        c.output().unwrap()
    };
    let o = run(None);
    assert_eq!(
        o.status.code(),
        Some(3),
        "not trusted without the bundle: {}",
        text(&o)
    );
    let o = run(Some("other-cert.pem"));
    assert_eq!(
        o.status.code(),
        Some(3),
        "nor with another certificate: {}",
        text(&o)
    );
    let o = run(Some("selfsigned-cert.pem"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_list_that_ignores_its_filter_or_never_ends_leaves_each_row_to_read_its_own_sim() {
    for kind in [
        "other SIMs",
        "pages for ever",
        "endless body",
        "no list at all",
    ] {
        let list = get(move || async move {
            match kind {
                "other SIMs" => token_ok(
                    r#"{"data":[{"iccId":"8944500990000099999","status":"active","customerSuspend":false,"adminSuspend":false,"systemSuspend":false,"packageId":1,"portfolioId":"p","mnoId":1}]}"#,
                ),
                "pages for ever" => token_ok(r#"{"data":[],"nextPageToken":"again"}"#),
                "endless body" => Response::new(endless()),
                _ => StatusCode::NOT_FOUND.into_response(),
            }
        });
        let s = serve(
            Router::new()
                .route(
                    "/oauth2/token",
                    post(|| async { token_ok(r#"{"access_token":"t","expires_in":3600}"#) }),
                )
                .route("/api/v2/sim", list)
                .route(
                    "/api/v2/sim/{icc}",
                    get(|| async { token_ok(SIM_JSON) })
                        .patch(|| async { token_ok(SIM_JSON.replace("available", "active")) }),
                ),
        );
        let job = one_row_job();
        let (code, out, err, rss) = measured(job_against(&s.url, &job, &[]));
        assert!(
            rss < RSS_BOUND_KIB,
            "{kind}: peak RSS {rss} KiB\n{out}{err}"
        );
        assert_eq!(code, Some(0), "{kind}: {out}{err}");
        assert!(err.contains("every row reads its own SIM"), "{kind}: {err}");
        let results = std::fs::read_to_string(job.path(".results.csv")).unwrap();
        assert!(results.contains(",ok,"), "{kind}: {results}");
    }
}
