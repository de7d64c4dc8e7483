//! The simulator's Super SIM mode (`--provider twilio`) over real HTTP, against
//! `docs/providers/twilio-supersim.md`: Basic auth, ICCID lookups, asynchronous updates that
//! show `scheduled` until they settle, the lifecycle's refusals (nothing changed), paging,
//! the concurrency limit, faults and the ledger.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use simbulk::sim::seed::Profile;
use simbulk::sim::{DEMO_CLIENT_ID, FaultConfig, Provider, SimConfig};

use crate::support::*;

fn twilio(n: usize, settle: Duration) -> TestSim {
    TestSim::start(SimConfig {
        provider: Provider::Twilio,
        settle_delay: settle,
        ..SimConfig::unlimited(n)
    })
}

/// Raw Super SIM calls as `user:password`.
struct Twilio {
    base: String,
    http: reqwest::Client,
    user: String,
    password: String,
}

impl Twilio {
    fn demo(s: &TestSim) -> Self {
        Self::as_user(s, &simbulk::sim::twilio_account_sid(DEMO_CLIENT_ID), SECRET)
    }

    fn as_user(s: &TestSim, user: &str, password: &str) -> Self {
        Self {
            base: s.url(),
            http: simbulk::api::plain_client().unwrap().build().unwrap(),
            user: user.into(),
            password: password.into(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let r = req
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).form(form))
            .await
    }

    /// The SIM of an ICCID, through the list's `Iccid` filter (the lookup).
    async fn by_iccid(&self, icc: &str) -> Vec<Value> {
        let (st, body) = self.get(&format!("/v1/Sims?Iccid={icc}")).await;
        assert_eq!(st, 200, "{body}");
        body["sims"].as_array().unwrap().clone()
    }

    async fn sid(&self, icc: &str) -> String {
        let found = self.by_iccid(icc).await;
        assert_eq!(found.len(), 1, "{icc}: {found:?}");
        found[0]["sid"].as_str().unwrap().to_owned()
    }
}

fn acme_of(s: &TestSim, n: usize, profile: Profile) -> Vec<String> {
    s.pick(n, |r, p| acme(r) && p == profile)
}

#[test]
fn basic_auth_with_the_account_sid_and_token_or_a_20003() {
    let s = twilio(50, Duration::ZERO);
    let icc = acme_of(&s, 1, Profile::Active).remove(0);
    s.block(async {
        let ok = Twilio::demo(&s);
        assert_eq!(ok.by_iccid(&icc).await.len(), 1);
        for (user, password) in [
            (
                simbulk::sim::twilio_account_sid(DEMO_CLIENT_ID).as_str(),
                "wrong",
            ),
            (DEMO_CLIENT_ID, SECRET),
        ] {
            let bad = Twilio::as_user(&s, user, password);
            let (st, body) = bad.get("/v1/Sims").await;
            assert_eq!((st, body["code"].as_i64()), (401, Some(20003)), "{body}");
        }
        let none = ok
            .http
            .get(format!("{}/v1/Sims", ok.base))
            .send()
            .await
            .unwrap();
        assert_eq!(none.status().as_u16(), 401);
    });
}

#[test]
fn an_iccid_finds_zero_or_one_sim_and_another_account_s_sims_are_not_there() {
    let s = twilio(200, Duration::ZERO);
    let mine = acme_of(&s, 1, Profile::Active).remove(0);
    let theirs = s
        .pick(1, |r, _| r.sim.portfolio_id == "pf-other-co")
        .remove(0);
    s.block(async {
        let t = Twilio::demo(&s);
        let found = t.by_iccid(&mine).await;
        assert_eq!(found[0]["iccid"], mine.as_str());
        assert_eq!(found[0]["status"], "active");
        let sid = found[0]["sid"].as_str().unwrap();
        assert!(sid.starts_with("HS") && sid.len() == 34, "{sid}");
        let (st, one) = t.get(&format!("/v1/Sims/{sid}")).await;
        assert_eq!((st, one["iccid"].as_str()), (200, Some(mine.as_str())));
        assert!(t.by_iccid(&theirs).await.is_empty());
        assert!(t.by_iccid("8900000000000000000").await.is_empty());
        let other_sid = simbulk::sim::twilio_account_sid("x");
        let (st, body) = t.get(&format!("/v1/Sims/HS{}", &other_sid[2..])).await;
        assert_eq!((st, body["code"].as_i64()), (404, Some(20404)), "{body}");
    });
}

#[test]
fn an_update_shows_scheduled_until_it_settles_and_is_in_the_ledger_once() {
    let settle = Duration::from_millis(600);
    let s = twilio(100, settle);
    let icc = acme_of(&s, 1, Profile::Active).remove(0);
    s.block(async {
        let t = Twilio::demo(&s);
        let sid = t.sid(&icc).await;
        let path = format!("/v1/Sims/{sid}");
        let sent = Instant::now();
        let (st, body) = t.post(&path, &[("Status", "inactive")]).await;
        assert_eq!(
            (st, body["status"].as_str()),
            (202, Some("scheduled")),
            "{body}"
        );
        // Another change while it runs is refused and changes nothing; the same one again
        // is nothing to do.
        let (st, body) = t.post(&path, &[("Status", "active")]).await;
        assert_eq!((st, body["code"].as_i64()), (409, Some(83010)), "{body}");
        let (st, body) = t.post(&path, &[("Status", "inactive")]).await;
        assert_eq!(
            (st, body["status"].as_str()),
            (200, Some("scheduled")),
            "{body}"
        );
        // Polled until it settles: never before the delay.
        let settled = loop {
            let (_, now) = t.get(&path).await;
            if now["status"] != "scheduled" {
                break now;
            }
            assert!(sent.elapsed() < Duration::from_secs(20), "it never settled");
            tokio::task::yield_now().await;
        };
        assert!(sent.elapsed() >= settle, "settled early");
        assert_eq!(settled["status"], "inactive");
        assert_eq!(s.server().twilio_status(&icc).as_deref(), Some("inactive"));
    });
    let ledger = s.ledger();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(
        (ledger[0].field.as_str(), &ledger[0].old, &ledger[0].new),
        ("status", &Value::from("active"), &Value::from("inactive"))
    );
}

#[test]
fn the_lifecycle_s_refusals_change_nothing() {
    let s = twilio(400, Duration::ZERO);
    let new = acme_of(&s, 40, Profile::Available);
    s.block(async {
        let t = Twilio::demo(&s);
        let mut never_new = None;
        let mut no_fleet = None;
        for icc in &new {
            let found = t.by_iccid(icc).await;
            match (found[0]["status"].as_str(), found[0]["fleet_sid"].is_null()) {
                (Some("new"), true) => no_fleet = no_fleet.or(Some(found[0]["sid"].clone())),
                (Some("new"), false) => never_new = never_new.or(Some(found[0]["sid"].clone())),
                _ => {}
            }
        }
        let (new_sid, bare_sid) = (never_new.unwrap(), no_fleet.unwrap());
        let new_path = format!("/v1/Sims/{}", new_sid.as_str().unwrap());
        let bare_path = format!("/v1/Sims/{}", bare_sid.as_str().unwrap());
        let (st, b) = t.post(&new_path, &[("Status", "inactive")]).await;
        assert_eq!((st, b["code"].as_i64()), (400, Some(83010)), "{b}");
        let (st, b) = t.post(&new_path, &[("Status", "new")]).await;
        assert_eq!((st, b["code"].as_i64()), (400, Some(20001)), "{b}");
        let (st, b) = t.post(&bare_path, &[("Status", "active")]).await;
        assert_eq!((st, b["code"].as_i64()), (400, Some(83007)), "{b}");
        let (st, b) = t.post(&new_path, &[("Fleet", "no-such-fleet")]).await;
        assert_eq!((st, b["code"].as_i64()), (400, Some(20001)), "{b}");
        // With a Fleet, the bare one activates; once active it never goes back to new.
        let (st, b) = t
            .post(&bare_path, &[("Status", "active"), ("Fleet", "eu-plus")])
            .await;
        assert_eq!((st, b["status"].as_str()), (202, Some("scheduled")), "{b}");
        let (_, b) = t.get(&bare_path).await;
        assert_eq!(b["status"], "active");
        let (st, _) = t.post(&bare_path, &[("Status", "ready")]).await;
        assert_eq!(st, 400);
    });
    let ledger = s.ledger();
    let fields: Vec<&str> = ledger.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["status", "fleet_sid"], "only the accepted update");
}

#[test]
fn pages_of_up_to_1000_walk_every_sim_once() {
    let s = twilio(2600, Duration::ZERO);
    let mine = s.pick(usize::MAX, |r, _| acme(r)).len();
    s.block(async {
        let t = Twilio::demo(&s);
        let (st, b) = t.get("/v1/Sims?PageSize=1001").await;
        assert_eq!((st, b["code"].as_i64()), (400, Some(20007)), "{b}");
        let mut seen = HashSet::new();
        let mut next = Some(format!("{}/v1/Sims?PageSize=1000", t.base));
        while let Some(url) = next {
            let path = url.strip_prefix(&t.base).unwrap().to_owned();
            let (st, b) = t.get(&path).await;
            assert_eq!(st, 200, "{b}");
            for sim in b["sims"].as_array().unwrap() {
                assert!(seen.insert(sim["sid"].as_str().unwrap().to_owned()));
            }
            next = b["meta"]["next_page_url"].as_str().map(str::to_owned);
        }
        assert_eq!(seen.len(), mine);
        let (_, b) = t.get("/v1/Sims?Status=inactive&PageSize=1000").await;
        assert!(
            b["sims"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["status"] == "inactive")
        );
    });
}

#[test]
fn past_the_concurrency_limit_a_request_is_refused_with_20429_and_never_processed() {
    let s = TestSim::start(SimConfig {
        provider: Provider::Twilio,
        concurrent_limit: 1,
        faults: FaultConfig {
            latency: Duration::from_millis(300),
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(50)
    });
    let icc = acme_of(&s, 2, Profile::Active);
    s.block(async {
        let t = Twilio::demo(&s);
        let (a, b) = (t.sid(&icc[0]).await, t.sid(&icc[1]).await);
        let (pa, pb) = (format!("/v1/Sims/{a}"), format!("/v1/Sims/{b}"));
        let form = [("Status", "inactive")];
        let (x, y) = tokio::join!(t.post(&pa, &form), t.post(&pb, &form));
        let mut codes = [x.0, y.0];
        codes.sort_unstable();
        assert_eq!(codes, [202, 429], "{x:?} {y:?}");
        let refused = if x.0 == 429 { &x.1 } else { &y.1 };
        assert_eq!(refused["code"], 20429);
    });
    assert_eq!(s.ledger().len(), 1, "the refused update changed nothing");
    assert_eq!(s.stats().too_many_requests, 1);
}

#[test]
fn the_fault_knobs_apply_and_a_state_file_is_refused() {
    let s = TestSim::start(SimConfig {
        provider: Provider::Twilio,
        faults: FaultConfig {
            http503: 1.0,
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(20)
    });
    s.block(async {
        let (st, _) = Twilio::demo(&s).get("/v1/Sims").await;
        assert_eq!(st, 503);
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let refused = rt.block_on(simbulk::sim::SimServer::start(SimConfig {
        provider: Provider::Twilio,
        state_file: Some(std::env::temp_dir().join("never-written.json")),
        ..SimConfig::unlimited(5)
    }));
    assert!(refused.err().unwrap().to_string().contains("--state-file"));
}

// ---- Jobs against the Super SIM simulator (`simbulk run --provider twilio`) ----

/// `simbulk run` against the Super SIM simulator as the demo account (fast pacing).
fn twilio_job(s: &TestSim, job: &Job, extra: &[&str]) -> std::process::Command {
    let mut c = job.command(s, &["--provider", "twilio"]);
    c.env(
        "SIMBULK_CLIENT_ID",
        simbulk::sim::twilio_account_sid(DEMO_CLIENT_ID),
    )
    .args(extra);
    c
}

/// ICCIDs of SIMs the Super SIM simulator shows in `status` (with a Fleet), as the demo
/// account sees them.
fn in_status(s: &TestSim, status: &str, n: usize) -> Vec<String> {
    s.block(async {
        let t = Twilio::demo(s);
        let (_, b) = t
            .get(&format!("/v1/Sims?Status={status}&PageSize=1000"))
            .await;
        b["sims"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| !x["fleet_sid"].is_null())
            .take(n)
            .map(|x| x["iccid"].as_str().unwrap().to_owned())
            .collect()
    })
}

/// A job that suspends 3 active SIMs, unsuspends 2 inactive ones, activates 2 new ones, and
/// asks 4 things Super SIM cannot do; the SIMs each row writes.
fn mixed_job(s: &TestSim) -> (Job, Vec<String>) {
    let (active, inactive, new) = (
        in_status(s, "active", 3),
        in_status(s, "inactive", 2),
        in_status(s, "new", 2),
    );
    let mut body = String::from("iccid,action,value,attribute\n");
    for i in &active {
        body += &format!("{i},suspend,,\n");
    }
    for i in &inactive {
        body += &format!("{i},unsuspend,,\n");
    }
    for i in &new {
        body += &format!("{i},activate,,\n");
    }
    body += &format!("{},deactivate,,\n", active[0]);
    body += &format!("{},set-package,20418,\n", active[1]);
    body += &format!("{},set-portfolio,pf-acme-us,\n", active[2]);
    body += &format!("{},set-attribute,blue,colour\n", inactive[0]);
    let written = [active, inactive, new].concat();
    (Job::new("fleet.csv", &body), written)
}

#[test]
fn a_job_file_runs_against_super_sim_each_row_ok_only_once_its_sim_shows_the_change() {
    let settle = Duration::from_millis(400);
    let s = twilio(400, settle);
    let (job, written) = mixed_job(&s);
    // Without waiting: accepted changes are `pending`, never `ok`.
    let o = twilio_job(&s, &job, &[]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let rows = job.results();
    let by = outcomes(&rows);
    assert_eq!(by.get("pending"), Some(&7), "{rows:?}");
    assert_eq!(by.get("invalid"), Some(&4), "{rows:?}");
    assert!(
        rows.iter()
            .filter(|r| r["outcome"] == "invalid")
            .all(|r| r["message"].contains("Super SIM") && r["attempts"] == "0")
    );
    let ledger = s.ledger();
    assert_eq!(ledger.len(), 7, "one change per written SIM: {ledger:?}");
    let icc: HashSet<&str> = ledger.iter().map(|l| l.icc_id.as_str()).collect();
    assert_eq!(icc, written.iter().map(String::as_str).collect());

    // On a fresh simulator, waiting: each row polls until its SIM shows the change, and is
    // `ok` only then; nothing is sent twice.
    let s = twilio(400, settle);
    let (job, _) = mixed_job(&s);
    let o = twilio_job(&s, &job, &["--wait-active", "30s"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "invalid rows make exit 1: {}",
        text(&o)
    );
    let rows = job.results();
    assert_eq!(outcomes(&rows).get("ok"), Some(&7), "{rows:?}");
    for r in rows.iter().filter(|r| r["outcome"] == "ok") {
        let shown = s.server().twilio_status(&r["iccid"]).unwrap();
        let want = if r["action"] == "suspend" {
            "inactive"
        } else {
            "active"
        };
        assert_eq!(shown, want, "{r:?}");
        let waited: f64 = r["message"]
            .split(" after ")
            .nth(1)
            .and_then(|t| t.trim_end_matches('s').parse().ok())
            .unwrap_or_else(|| panic!("{r:?}"));
        assert!(
            waited >= settle.as_secs_f64() - 0.05,
            "ok before it settled: {r:?}"
        );
    }
    assert_eq!(s.ledger().len(), 7);
}

#[test]
fn a_job_stopped_while_its_changes_are_scheduled_resumes_and_finishes_them_unsent() {
    let s = twilio(400, Duration::from_secs(3));
    let targets = in_status(&s, "active", 6);
    let body: String = std::iter::once("iccid,action\n".to_owned())
        .chain(targets.iter().map(|i| format!("{i},suspend\n")))
        .collect();
    let job = Job::new("stop.csv", &body);
    let child = twilio_job(&s, &job, &["--wait-active", "60s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("every change accepted", Duration::from_secs(20), || {
        s.ledger().len() == targets.len()
    });
    signal(&child, libc::SIGINT);
    let (o, _) = exit_within(child, Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    assert!(
        job.results().iter().all(|r| r["outcome"] != "ok"),
        "nothing is ok while scheduled"
    );
    let o = twilio_job(&s, &job, &["--wait-active", "60s", "--resume"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = job.results();
    assert_eq!(outcomes(&rows).get("ok"), Some(&targets.len()), "{rows:?}");
    assert_eq!(s.ledger().len(), targets.len(), "no change sent twice");
    let posts = s.stats().by_route["POST /v1/Sims/{Sid}"]
        .values()
        .sum::<u64>();
    assert_eq!(posts, targets.len() as u64, "each SIM written once");
    for i in &targets {
        assert_eq!(s.server().twilio_status(i).as_deref(), Some("inactive"));
    }
}

#[test]
fn undo_and_apply_check_round_trip_on_super_sim() {
    let s = twilio(300, Duration::from_millis(200));
    let targets = in_status(&s, "active", 4);
    let body: String = std::iter::once("iccid,action\n".to_owned())
        .chain(targets.iter().map(|i| format!("{i},suspend\n")))
        .collect();
    let job = Job::new("round.csv", &body);
    let o = twilio_job(&s, &job, &["--wait-active", "30s"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Undo writes the inverse job; run against Super SIM it puts every SIM back.
    let undo = undo_job(&job);
    let o = twilio_job(&s, &undo, &["--wait-active", "30s"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for i in &targets {
        assert_eq!(
            s.server().twilio_status(i).as_deref(),
            Some("active"),
            "{i}"
        );
    }
    // apply --check reads each SIM (no list by ICCIDs here): none drifts from "unsuspended",
    // every one from "suspended".
    let account = [(
        "SIMBULK_CLIENT_ID",
        simbulk::sim::twilio_account_sid(DEMO_CLIENT_ID),
    )];
    let check = |want| check_suspension(&s, &targets, want, &["--provider", "twilio"], &account);
    let same = check(false);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    let differs = check(true);
    assert_eq!(differs.status.code(), Some(1), "{}", text(&differs));
    assert!(
        String::from_utf8_lossy(&differs.stdout).contains("4 SIMs differ"),
        "{}",
        text(&differs)
    );
}

#[test]
fn an_export_of_super_sim_applies_back_with_no_drift() {
    let s = twilio(1500, Duration::ZERO);
    let mine = s.pick(usize::MAX, |r, _| acme(r)).len();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet.csv");
    let account = simbulk::sim::twilio_account_sid(DEMO_CLIENT_ID);
    let o = simbulk()
        .arg("export")
        .args(["--provider", "twilio", "--rate", "0", "--base-url"])
        .arg(s.url())
        .arg("-o")
        .arg(&out)
        .env("SIMBULK_CLIENT_ID", &account)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = read_csv(&out, b',');
    assert_eq!(
        rows.len(),
        mine,
        "every SIM of the account, in pages of 1,000"
    );
    assert!(
        rows.iter()
            .all(|r| r["simId"].starts_with("HS") && r["packageId"].is_empty())
    );
    let o = simbulk()
        .arg("apply")
        .arg(&out)
        .args([
            "--check",
            "--provider",
            "twilio",
            "--rate",
            "0",
            "--base-url",
        ])
        .arg(s.url())
        .env("SIMBULK_CLIENT_ID", &account)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no drift"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_sim_another_client_is_changing_is_left_pending_and_nothing_is_sent_over_it() {
    let s = twilio(300, Duration::from_secs(30));
    let targets = in_status(&s, "active", 3);
    // Another client of the account starts a change of the first SIM: it stays scheduled.
    s.block(async {
        let other = Twilio::demo(&s);
        let sid = other.sid(&targets[0]).await;
        let (st, _) = other
            .post(&format!("/v1/Sims/{sid}"), &[("Status", "inactive")])
            .await;
        assert_eq!(st, 202);
    });
    let body: String = std::iter::once("iccid,action\n".to_owned())
        .chain(targets.iter().map(|i| format!("{i},suspend\n")))
        .collect();
    let job = Job::new("busy.csv", &body);
    let o = twilio_job(&s, &job, &[]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let rows = job.results();
    let busy = rows.iter().find(|r| r["iccid"] == targets[0]).unwrap();
    assert_eq!(busy["outcome"], "pending", "{busy:?}");
    assert!(busy["message"].contains("under way"), "{busy:?}");
    assert_eq!(busy["before_state"], "unknown", "{busy:?}");
    let posts: u64 = s.stats().by_route["POST /v1/Sims/{Sid}"].values().sum();
    assert_eq!(
        posts, 3,
        "the other client's and the job's two: none over the busy SIM"
    );
}
