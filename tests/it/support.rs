//! Test support: an in-process simulator on 127.0.0.1:0, a raw HTTP helper, the real
//! binary, and readers for the files a job writes.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use simbulk::sim::seed::{self, Profile};
use simbulk::sim::state::SimRecord;
use simbulk::sim::{LedgerEntry, SimConfig, SimServer, StatsReport};

pub const SECRET: &str = simbulk::sim::DEMO_CLIENT_SECRET;

/// A simulator running on its own runtime, so tests can block on the binary meanwhile.
pub struct TestSim {
    pub rt: tokio::runtime::Runtime,
    server: Option<SimServer>,
    pub cfg: SimConfig,
}

impl TestSim {
    pub fn start(cfg: SimConfig) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(SimServer::start(cfg.clone())).unwrap();
        Self {
            rt,
            server: Some(server),
            cfg,
        }
    }

    /// No limits, no faults, `n` SIMs of seed 1.
    pub fn unlimited(n: usize) -> Self {
        Self::start(SimConfig::unlimited(n))
    }

    pub fn server(&self) -> &SimServer {
        self.server.as_ref().unwrap()
    }

    pub fn url(&self) -> String {
        self.server().base_url()
    }

    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.server().ledger()
    }

    pub fn stats(&self) -> StatsReport {
        self.server().stats()
    }

    pub fn sim(&self, icc: &str) -> SimRecord {
        self.server().sim(icc).unwrap()
    }

    /// Stops the server (saving its state file, if any) and starts it again on the same port.
    pub fn restart(&mut self) {
        let addr = self.server().addr();
        let s = self.server.take().unwrap();
        self.rt.block_on(s.stop()).unwrap();
        let mut cfg = self.cfg.clone();
        cfg.addr = addr;
        self.server = Some(self.rt.block_on(SimServer::start(cfg)).unwrap());
    }

    /// ICCIDs of seeded SIMs that match `pred`, in seed order.
    pub fn pick(&self, n: usize, pred: impl Fn(&SimRecord, Profile) -> bool) -> Vec<String> {
        seed::iter(self.cfg.seed, self.cfg.sims)
            .filter(|(_, r, p)| pred(r, *p))
            .take(n)
            .map(|(_, r, _)| r.sim.icc_id)
            .collect()
    }

    /// Raw HTTP access as the demo client.
    pub fn api(&self) -> Api {
        Api::new(&self.url(), simbulk::sim::DEMO_CLIENT_ID, SECRET)
    }

    /// Runs an async block on the simulator's runtime.
    pub fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

impl Drop for TestSim {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = self.rt.block_on(s.stop());
        }
    }
}

/// Candidates that are in the demo tenant's sphere.
pub fn acme(r: &SimRecord) -> bool {
    r.sim.portfolio_id.starts_with("pf-acme")
}

/// A small raw HTTP client for contract tests.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn code(&self) -> Option<i64> {
        self.body.get("errorCode").and_then(Value::as_i64)
    }
}

impl Api {
    pub fn new(base: &str, id: &str, secret: &str) -> Self {
        let http = simbulk::api::plain_client().unwrap().build().unwrap();
        Self {
            base: base.to_owned(),
            http,
            token: String::new(),
        }
        .with_login(id, secret)
    }

    fn with_login(mut self, id: &str, secret: &str) -> Self {
        let base = self.base.clone();
        let http = self.http.clone();
        let (id, secret) = (id.to_owned(), secret.to_owned());
        let t = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let r = http
                    .post(format!("{base}/oauth2/token"))
                    .basic_auth(id, Some(secret))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await
                    .unwrap();
                let v: Value = r.json().await.unwrap();
                v["access_token"].as_str().unwrap_or_default().to_owned()
            })
        })
        .join()
        .unwrap();
        self.token = t;
        self
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<&str>) -> Resp {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn patch(&self, path: &str, body: &str) -> Resp {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: &str) -> Resp {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(reqwest::Method::DELETE, path, None).await
    }
}

/// The real binary, with a clean environment and the demo client's credentials.
pub fn simbulk() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_simbulk"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SIMBULK_")
            || k == "RUST_LOG"
            || k.ends_with("_proxy")
            || k.ends_with("_PROXY")
        {
            c.env_remove(k);
        }
    }
    c.env("SIMBULK_CLIENT_ID", simbulk::sim::DEMO_CLIENT_ID)
        .env("SIMBULK_CLIENT_SECRET", SECRET);
    c
}

/// `simbulk` without the test's credentials in the environment.
pub fn bare() -> Command {
    let mut c = simbulk();
    c.env_remove("SIMBULK_CLIENT_ID")
        .env_remove("SIMBULK_CLIENT_SECRET");
    c
}

/// A job directory with one input file.
pub struct Job {
    pub dir: tempfile::TempDir,
    pub input: PathBuf,
}

impl Job {
    pub fn new(name: &str, contents: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join(name);
        std::fs::write(&input, contents).unwrap();
        Self { dir, input }
    }

    pub fn path(&self, suffix: &str) -> PathBuf {
        let stem = self
            .input
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        self.dir.path().join(format!("{stem}{suffix}"))
    }

    pub fn results(&self) -> Vec<HashMap<String, String>> {
        read_csv(&self.path(".results.csv"), b',')
    }

    pub fn failures_text(&self) -> String {
        std::fs::read_to_string(self.path(".failures.csv")).unwrap_or_default()
    }

    /// `simbulk run <input> --base-url <sim> …`, fast pacing; destructive jobs confirmed
    /// (`--yes`, as a scheduled job gives it; the confirmation has tests of its own).
    pub fn command(&self, sim: &TestSim, extra: &[&str]) -> Command {
        let mut c = simbulk();
        c.arg("run")
            .arg(&self.input)
            .arg("--base-url")
            .arg(sim.url())
            .args([
                "--rate",
                "0",
                "--concurrency",
                "8",
                "--timeout",
                "5s",
                "--yes",
            ])
            .args(extra);
        c
    }

    pub fn run(&self, sim: &TestSim, extra: &[&str]) -> Output {
        self.command(sim, extra).output().unwrap()
    }
}

pub fn read_csv(path: &Path, delim: u8) -> Vec<HashMap<String, String>> {
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delim)
        .flexible(true)
        .from_path(path)
        .unwrap();
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            headers
                .iter()
                .zip(rec.unwrap().iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Counts of each outcome in a results file.
pub fn outcomes(rows: &[HashMap<String, String>]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in rows {
        *m.entry(r["outcome"].clone()).or_default() += 1;
    }
    m
}

/// A job body that suspends and unsuspends each SIM in turn, `rounds` times (suspend first).
pub fn toggle_body(ids: &[String], rounds: usize) -> String {
    let mut body = String::from("iccid,action\n");
    for round in 0..rounds {
        let action = if round % 2 == 0 {
            "suspend"
        } else {
            "unsuspend"
        };
        for id in ids {
            body += &format!("{id},{action}\n");
        }
    }
    body
}

/// `simbulk run <path> --base-url <sim>` with nothing else.
pub fn run_file(path: &Path, sim: &TestSim) -> Output {
    simbulk()
        .arg("run")
        .arg(path)
        .arg("--base-url")
        .arg(sim.url())
        .output()
        .unwrap()
}

/// The ledger holds at most one change per SIM, kind and field: no effect was repeated.
pub fn assert_no_repeated_effect(sim: &TestSim) {
    let mut effects: HashMap<(String, String, String), usize> = HashMap::new();
    for e in sim.ledger() {
        *effects
            .entry((e.icc_id.clone(), e.kind.clone(), e.field.clone()))
            .or_default() += 1;
    }
    let dup: Vec<_> = effects.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dup.is_empty(), "repeated effects: {dup:?}");
}

/// Every SIM is active and has exactly one attribute `name`, valued `value(i)`.
pub fn assert_active_and_tagged(
    sim: &TestSim,
    ids: &[String],
    name: &str,
    value: impl Fn(usize) -> String,
) {
    for (i, id) in ids.iter().enumerate() {
        let rec = sim.sim(id);
        assert_eq!(rec.sim.status, "active", "{id}");
        let values: Vec<&str> = rec
            .attributes
            .iter()
            .filter(|a| a.name == name)
            .map(|a| a.value.as_str())
            .collect();
        assert_eq!(values, vec![value(i).as_str()], "{id}");
    }
}

/// A CSV body: `header`, then one line per ICCID made by `row`.
pub fn rows_body(header: &str, ids: &[String], row: impl Fn(&str) -> String) -> String {
    let mut body = format!("{header}\n");
    for id in ids {
        body += &row(id);
        body.push('\n');
    }
    body
}

/// Starts a command with stdout and stderr captured, for tests that act while it runs.
pub fn spawn_piped(mut c: Command) -> std::process::Child {
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Every input line from `first` to `last` appears exactly once in the results.
pub fn assert_each_line_once(job: &Job, first: u64, last: u64) {
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for r in job.results() {
        *seen.entry(r["line"].parse().unwrap()).or_default() += 1;
    }
    for l in first..=last {
        assert_eq!(
            seen.get(&l).copied().unwrap_or(0),
            1,
            "line {l} appears {:?} times",
            seen.get(&l)
        );
    }
    assert_eq!(seen.len() as u64, last - first + 1, "no extra lines");
}

/// Sends `sig` to a child process.
pub fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Polls `cond` (every 10 ms) until it holds; panics with `what` after `within`.
pub fn wait_for(what: &str, within: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Waits for a child to exit, at most `within` (a liveness bound); returns its output and
/// how long it took.
pub fn exit_within(
    child: std::process::Child,
    within: std::time::Duration,
) -> (Output, std::time::Duration) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let t = std::time::Instant::now();
    let pid = child.id();
    let exited = std::sync::Arc::new(AtomicBool::new(false));
    let flag = exited.clone();
    std::thread::spawn(move || {
        let end = std::time::Instant::now() + within;
        while std::time::Instant::now() < end {
            if flag.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if !flag.load(Ordering::SeqCst) {
            // SAFETY: a kill of our own child, which has not been reaped yet.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let o = child.wait_with_output().unwrap();
    exited.store(true, Ordering::SeqCst);
    let took = t.elapsed();
    assert!(
        took < within,
        "the process did not exit within {within:?}: {}",
        text(&o)
    );
    (o, took)
}

/// Outcome by input line.
pub fn outcomes_by_line(job: &Job) -> std::collections::BTreeMap<u64, String> {
    job.results()
        .into_iter()
        .map(|r| (r["line"].parse().unwrap(), r["outcome"].clone()))
        .collect()
}

/// A server on 127.0.0.1:0 running `app` on its own runtime, stopped when dropped.
pub struct Server {
    pub url: String,
    _rt: tokio::runtime::Runtime,
}

pub fn serve(app: axum::Router) -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { url, _rt: rt }
}

/// The page as headless Chromium renders it (`None` where chromium is missing off CI).
pub fn render(html: &std::path::Path) -> Option<String> {
    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| {
        std::process::Command::new("which")
            .arg(c)
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install chromium (see .ci/run)"
        );
        eprintln!("chromium not installed: skipping the browser check");
        return None;
    };
    let profile = tempfile::tempdir().unwrap();
    let dom = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    Some(String::from_utf8_lossy(&dom.stdout).into_owned())
}

/// A kill loop: spawns the job with `args` and kills it at seeded moments until `kills` kills
/// happened, then lets a run finish; returns its exit code. The job must be long enough not to
/// finish between kills (a paced rate), since a finished job cannot be killed any more.
pub fn kill_loop(job: &Job, sim: &TestSim, args: &[&str], kills: usize, seed: u64) -> Option<i32> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut done = 0;
    loop {
        let round = done;
        let mut child = job
            .command(sim, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Some kills land during start-up, most mid-run.
        let wait = match round % 4 {
            0 => rng.u64(0..25),
            _ => rng.u64(30..300),
        };
        let deadline = Instant::now() + Duration::from_millis(wait);
        let mut status = None;
        while Instant::now() < deadline || done >= kills {
            if let Some(st) = child.try_wait().unwrap() {
                status = Some(st);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if status.is_none() {
            signal(&child, libc::SIGKILL);
        }
        let st = child.wait().unwrap();
        match status {
            Some(_) if done >= kills => return st.code(),
            Some(_) => panic!("the job finished after only {done} kills ({st}); slow it down"),
            None => done += 1,
        }
    }
}

/// The words of a command as a POSIX shell reads them (plain words and '…' quotes, as the
/// hints write them).
pub fn shell_words(s: &str) -> Vec<String> {
    let (mut words, mut cur, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in s.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// `simbulk apply --check` of a desired-state file giving `customerSuspend` = `suspended`
/// for each of `ids`, against `sim` (with `extra` flags, e.g. a provider, and `env`).
pub fn check_suspension(
    sim: &TestSim,
    ids: &[String],
    suspended: bool,
    extra: &[&str],
    env: &[(&str, String)],
) -> Output {
    let body: String = std::iter::once("iccid,customerSuspend\n".to_owned())
        .chain(ids.iter().map(|i| format!("{i},{suspended}\n")))
        .collect();
    let desired = Job::new("desired.csv", &body);
    let mut c = simbulk();
    c.arg("apply")
        .arg(&desired.input)
        .args(["--check", "--rate", "0", "--base-url"])
        .arg(sim.url())
        .args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// `simbulk undo` of `job`'s results, as a job of its own (`<stem>.undo.csv`).
pub fn undo_job(job: &Job) -> Job {
    let o = simbulk()
        .arg("undo")
        .arg(job.path(".results.csv"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stem = job
        .input
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    Job::new(
        &format!("{stem}.undo.csv"),
        &std::fs::read_to_string(job.path(".undo.csv")).unwrap(),
    )
}
