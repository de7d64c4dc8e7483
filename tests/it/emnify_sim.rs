//! The simulator's emnify mode (`--provider emnify`) over real HTTP, against
//! `docs/providers/emnify.md`: the application token, lookups by `iccid_with_luhn`, the SIM
//! lifecycle's refusals (nothing changed), the bulk endpoint update (a 2,000-device
//! activation in one call, checked whole, one at a time), paging and the error shapes.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use simbulk::sim::seed::Profile;
use simbulk::sim::{FaultConfig, Provider, SimConfig};

use crate::support::*;

fn emnify(cfg: SimConfig) -> TestSim {
    TestSim::start(SimConfig {
        provider: Provider::Emnify,
        ..cfg
    })
}

/// Raw emnify calls with a Bearer `auth_token`.
struct Emnify {
    base: String,
    http: reqwest::Client,
    token: String,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn code(&self) -> Option<i64> {
        self.body["error_code"].as_i64()
    }
}

impl Emnify {
    async fn login(s: &TestSim, application_token: &str) -> Result<Self, Answer> {
        let http = simbulk::api::plain_client().unwrap().build().unwrap();
        let base = s.url();
        let r = http
            .post(format!("{base}/api/v1/authenticate"))
            .json(&json!({ "application_token": application_token }))
            .send()
            .await
            .unwrap();
        let a = Self::answer(r).await;
        match a.body["auth_token"].as_str() {
            Some(t) if a.status == 200 => Ok(Self {
                base,
                http,
                token: t.to_owned(),
            }),
            _ => Err(a),
        }
    }

    async fn answer(r: reqwest::Response) -> Answer {
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        Answer {
            status,
            headers,
            body: r.json().await.unwrap_or(Value::Null),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        Self::answer(r).await
    }

    async fn patch(&self, path: &str, body: Value) -> Answer {
        let r = self
            .http
            .patch(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        Self::answer(r).await
    }

    /// The SIM of a full ICCID (with its check digit), through the list's filter.
    async fn lookup(&self, icc: &str) -> Vec<Value> {
        let a = self
            .get(&format!("/api/v1/sim?q=iccid_with_luhn:{icc}"))
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body.as_array().unwrap().clone()
    }
}

fn acme_of(s: &TestSim, n: usize, profile: Profile) -> Vec<String> {
    s.pick(n, |r, p| acme(r) && p == profile)
}

#[test]
fn the_application_token_gives_an_auth_token_and_nothing_else_gets_in() {
    let s = emnify(SimConfig::unlimited(20));
    s.block(async {
        let refused = Emnify::login(&s, "not-a-token").await.err().unwrap();
        assert_eq!((refused.status, refused.code()), (401, Some(1101)));
        let mut e = Emnify::login(&s, SECRET).await.ok().unwrap();
        assert_eq!(e.get("/api/v1/sim?per_page=5").await.status, 200);
        e.token = "forged".into();
        let a = e.get("/api/v1/sim").await;
        assert_eq!((a.status, a.code()), (401, Some(1102)), "{}", a.body);
    });
}

#[test]
fn a_lookup_by_the_full_iccid_finds_the_sim_and_its_endpoint_and_no_other_organisation_s() {
    let s = emnify(SimConfig::unlimited(200));
    let mine = acme_of(&s, 1, Profile::Active).remove(0);
    let theirs = s
        .pick(1, |r, _| r.sim.portfolio_id == "pf-other-co")
        .remove(0);
    s.block(async {
        let e = Emnify::login(&s, SECRET).await.ok().unwrap();
        let found = e.lookup(&mine).await;
        assert_eq!(found.len(), 1);
        let sim = &found[0];
        assert_eq!(sim["iccid_with_luhn"], mine.as_str());
        assert_eq!(sim["iccid"], &mine[..mine.len() - 1]);
        assert_eq!(sim["status"]["id"], 1);
        assert_eq!(sim["endpoint"]["status"]["id"], 0);
        let ep = sim["endpoint"]["id"].as_i64().unwrap();
        let a = e.get(&format!("/api/v1/endpoint/{ep}")).await;
        assert_eq!(a.body["sim"]["iccid_with_luhn"], mine.as_str());
        assert!(e.lookup(&theirs).await.is_empty());
        let a = e.get("/api/v1/sim?q=colour:blue").await;
        assert_eq!((a.status, a.code()), (422, Some(1301)));
        let a = e.get("/api/v1/sim/999").await;
        assert_eq!((a.status, a.code()), (404, Some(1201)));
    });
}

#[test]
fn a_sim_moves_only_along_the_documented_transitions() {
    let s = emnify(SimConfig::unlimited(100));
    let issued = acme_of(&s, 1, Profile::Available).remove(0);
    s.block(async {
        let e = Emnify::login(&s, SECRET).await.ok().unwrap();
        let id = e.lookup(&issued).await[0]["id"].as_i64().unwrap();
        let path = format!("/api/v1/sim/{id}");
        let a = e.patch(&path, json!({"status": {"id": 2}})).await;
        assert_eq!((a.status, a.code()), (409, Some(1406)), "{}", a.body);
        let a = e.patch(&path, json!({"status": {"id": 9}})).await;
        assert_eq!((a.status, a.code()), (422, Some(1401)), "{}", a.body);
        assert_eq!(
            e.patch(&path, json!({"status": {"id": 1}})).await.status,
            204
        );
        assert_eq!(e.get(&path).await.body["status"]["id"], 1);
        // Back to Issued is never allowed.
        let a = e.patch(&path, json!({"status": {"id": 0}})).await;
        assert_eq!(a.code(), Some(1406));
    });
    let ledger = s.ledger();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(
        (ledger[0].old.clone(), ledger[0].new.clone()),
        (json!(0), json!(1))
    );
}

#[test]
fn two_thousand_devices_activate_in_one_bulk_call_each_changed_once() {
    let s = emnify(SimConfig::unlimited(5000));
    let issued = acme_of(&s, 2000, Profile::Available);
    assert_eq!(issued.len(), 2000);
    s.block(async {
        let e = Emnify::login(&s, SECRET).await.ok().unwrap();
        // The lookups, in pages of 2,500 (not one call per ICCID).
        let want: HashSet<&str> = issued.iter().map(String::as_str).collect();
        let mut endpoints = Vec::new();
        let mut page = 1;
        loop {
            let a = e
                .get(&format!("/api/v1/sim?q=status:0&per_page=2500&page={page}"))
                .await;
            for sim in a.body.as_array().unwrap() {
                if want.contains(sim["iccid_with_luhn"].as_str().unwrap()) {
                    endpoints.push(sim["endpoint"]["id"].as_i64().unwrap());
                }
            }
            let pages: usize = a.headers["x-total-pages"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            if page >= pages {
                break;
            }
            page += 1;
        }
        assert_eq!(endpoints.len(), 2000);
        let body: Vec<Value> = endpoints
            .iter()
            .map(|id| json!({"id": id, "status": {"id": 0}, "sim": {"status": {"id": 1}}}))
            .collect();
        let a = e.patch("/api/v2/endpoint/multi", Value::Array(body)).await;
        assert_eq!(a.status, 204, "{}", a.body);
    });
    let writes = s.stats().by_route["PATCH /api/v2/endpoint/multi"]["204"];
    assert_eq!(writes, 1, "one call for 2,000 devices");
    let ledger = s.ledger();
    assert_eq!(ledger.len(), 4000, "each device's SIM and endpoint, once");
    let devices: HashSet<(&str, &str)> = ledger
        .iter()
        .map(|l| (l.icc_id.as_str(), l.kind.as_str()))
        .collect();
    assert_eq!(devices.len(), 4000);
}

#[test]
fn a_bulk_update_with_one_refused_item_changes_nothing_and_names_it() {
    let s = emnify(SimConfig::unlimited(100));
    let issued = acme_of(&s, 3, Profile::Available);
    s.block(async {
        let e = Emnify::login(&s, SECRET).await.ok().unwrap();
        let mut body = Vec::new();
        for icc in &issued {
            let ep = e.lookup(icc).await[0]["endpoint"]["id"].as_i64().unwrap();
            body.push(json!({"id": ep, "tags": "batch-1", "sim": {"status": {"id": 1}}}));
        }
        // One asks for a transition the SIM cannot make.
        body[1]["sim"]["status"]["id"] = json!(2);
        body.push(json!({"tags": "no id"}));
        let a = e.patch("/api/v2/endpoint/multi", Value::Array(body)).await;
        assert_eq!((a.status, a.code()), (422, Some(1400)), "{}", a.body);
        let errors: Vec<i64> = a.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["error_code"].as_i64().unwrap())
            .collect();
        assert_eq!(errors, [1406, 1402]);
        let too_many: Vec<Value> = (0..2001).map(|i| json!({"id": 5_000_000 + i})).collect();
        let a = e
            .patch("/api/v2/endpoint/multi", Value::Array(too_many))
            .await;
        assert_eq!((a.status, a.code()), (422, Some(1400)));
    });
    assert!(s.ledger().is_empty(), "nothing was applied");
}

#[test]
fn a_second_bulk_update_while_one_runs_is_refused_whole() {
    let s = emnify(SimConfig {
        faults: FaultConfig {
            latency: Duration::from_millis(300),
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(100)
    });
    let issued = acme_of(&s, 2, Profile::Available);
    s.block(async {
        let e = Emnify::login(&s, SECRET).await.ok().unwrap();
        let mut eps = Vec::new();
        for icc in &issued {
            eps.push(e.lookup(icc).await[0]["endpoint"]["id"].as_i64().unwrap());
        }
        let one = |ep: i64| json!([{"id": ep, "tags": "t"}]);
        let (x, y) = tokio::join!(
            e.patch("/api/v2/endpoint/multi", one(eps[0])),
            e.patch("/api/v2/endpoint/multi", one(eps[1]))
        );
        let mut codes = [x.status, y.status];
        codes.sort_unstable();
        assert_eq!(codes, [204, 429]);
        let refused = if x.status == 429 { x } else { y };
        assert_eq!(refused.code(), Some(1105));
    });
    assert_eq!(s.ledger().len(), 1);
}

#[test]
fn pages_of_up_to_2500_cover_the_organisation_once() {
    let s = emnify(SimConfig::unlimited(3000));
    let mine = s.pick(usize::MAX, |r, _| acme(r)).len();
    s.block(async {
        let e = Emnify::login(&s, SECRET).await.ok().unwrap();
        let a = e.get("/api/v1/sim?per_page=2501").await;
        assert_eq!((a.status, a.code()), (422, Some(1403)));
        let mut seen = HashSet::new();
        for page in 1..=2 {
            let a = e
                .get(&format!("/api/v1/sim?per_page=2500&page={page}"))
                .await;
            assert_eq!(
                a.headers["x-total-count"].to_str().unwrap(),
                mine.to_string()
            );
            for sim in a.body.as_array().unwrap() {
                assert!(seen.insert(sim["id"].as_i64().unwrap()));
            }
        }
        assert_eq!(seen.len(), mine);
    });
}

// ---- Jobs against the emnify simulator (`simbulk run --provider emnify`) ----

/// `simbulk run … --provider emnify` (the demo client's secret is its application token).
fn emnify_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["--provider", "emnify"];
    a.extend_from_slice(extra);
    a
}

/// The seed's Issued SIMs of the demo organisation, as a job activating each.
fn activation_job(s: &TestSim, n: usize) -> (Job, Vec<String>) {
    let ids = acme_of(s, n, Profile::Available);
    assert_eq!(ids.len(), n);
    let body = format!(
        "iccid,action\n{}\n",
        ids.iter()
            .map(|i| format!("{i},activate"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    (Job::new("activate.csv", &body), ids)
}

/// Each device's SIM and endpoint changed exactly once, and now Activated and Enabled.
fn each_device_activated_once(s: &TestSim, ids: &[String]) {
    let mut changes: std::collections::HashMap<(String, String), usize> = Default::default();
    for e in s.ledger() {
        *changes
            .entry((e.icc_id.clone(), e.kind.clone()))
            .or_default() += 1;
    }
    for i in ids {
        for kind in ["sim", "endpoint"] {
            assert_eq!(
                changes.get(&(i.clone(), kind.into())),
                Some(&1),
                "{i} {kind}"
            );
        }
    }
    assert_eq!(changes.len(), ids.len() * 2, "nothing else changed");
}

#[test]
fn a_two_thousand_sim_activation_is_one_bulk_call_per_two_thousand_rows_plus_lookups() {
    let s = emnify(SimConfig::unlimited(5000));
    let (job, ids) = activation_job(&s, 2000);
    let o = job.run(&s, &emnify_args(&["--concurrency", "2000"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(outcomes(&job.results()).get("ok"), Some(&2000));
    let stats = s.stats();
    let bulk: u64 = stats.by_route["PATCH /api/v2/endpoint/multi"]
        .values()
        .sum();
    assert!(
        bulk * 100 <= 2000,
        "{bulk} bulk calls for 2,000 rows: more than 0.01 a row"
    );
    assert!(
        !stats.by_route.contains_key("PATCH /api/v1/sim/{id}"),
        "no single-SIM writes: {:?}",
        stats.by_route
    );
    each_device_activated_once(&s, &ids);
}

#[test]
fn a_job_file_runs_against_emnify_with_unsupported_actions_invalid_before_any_call() {
    let s = emnify(SimConfig::unlimited(400));
    let active = acme_of(&s, 3, Profile::Active);
    let suspended = acme_of(&s, 2, Profile::CustomerSuspended);
    let mut body = String::from("iccid,action,value,attribute\n");
    body += &format!(
        "{},suspend,,\n{},set-package,20418,\n",
        active[0], active[1]
    );
    body += &format!(
        "{},unsuspend,,\n{},deactivate,,\n",
        suspended[0], suspended[1]
    );
    body += &format!(
        "{},set-portfolio,pf-acme-us,\n{},set-attribute,x,colour\n",
        active[2], active[2]
    );
    let job = Job::new("mixed.csv", &body);
    let o = job.run(&s, &emnify_args(&[]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let rows = job.results();
    let by = outcomes(&rows);
    assert_eq!(
        (by.get("ok"), by.get("invalid")),
        (Some(&3), Some(&3)),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .filter(|r| r["outcome"] == "invalid")
            .all(|r| r["message"].contains("emnify") && r["attempts"] == "0")
    );
    let fields: std::collections::HashSet<(String, String)> = s
        .ledger()
        .iter()
        .map(|e| (e.icc_id.clone(), e.field.clone()))
        .collect();
    assert!(fields.contains(&(active[1].clone(), "tariff_profile".into())));
    assert!(fields.contains(&(active[0].clone(), "status".into())));
    assert_eq!(
        s.ledger().len(),
        5,
        "suspend and unsuspend: SIM and endpoint; the package: one"
    );
}

#[test]
fn a_kill_9_loop_over_a_bulk_activation_changes_each_device_once() {
    let s = emnify(SimConfig {
        faults: FaultConfig {
            latency: Duration::from_millis(3),
            // Some bulk calls are applied and then answered 503 or dropped: their rows read
            // their devices before anything is sent again.
            apply_then_fail: 0.15,
            drop: 0.02,
            ..FaultConfig::default()
        },
        ..SimConfig::unlimited(2000)
    });
    let (job, ids) = activation_job(&s, 400);
    // Batches of at most 40 (the concurrency), one every ~130 ms: kills land before, during
    // and after bulk calls.
    let code = kill_loop(
        &job,
        &s,
        &emnify_args(&["--resume", "--rate", "300", "--concurrency", "40"]),
        10,
        27,
    );
    assert_eq!(code, Some(0));
    assert_each_line_once(&job, 2, 401);
    each_device_activated_once(&s, &ids);
}

#[test]
fn undo_and_apply_check_round_trip_on_emnify() {
    let s = emnify(SimConfig::unlimited(300));
    let targets = acme_of(&s, 4, Profile::Active);
    let body: String = std::iter::once("iccid,action\n".to_owned())
        .chain(targets.iter().map(|i| format!("{i},suspend\n")))
        .collect();
    let job = Job::new("round.csv", &body);
    let o = job.run(&s, &emnify_args(&[]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let undo = undo_job(&job);
    let o = undo.run(&s, &emnify_args(&[]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(outcomes(&undo.results()).get("ok"), Some(&4));
    // Each device went Suspended and back: its SIM and its endpoint, twice each.
    assert_eq!(s.ledger().len(), 16);
    let check = |want| check_suspension(&s, &targets, want, &["--provider", "emnify"], &[]);
    let same = check(false);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    let differs = check(true);
    assert_eq!(differs.status.code(), Some(1), "{}", text(&differs));
}

#[test]
fn an_export_of_emnify_applies_back_with_no_drift() {
    let s = emnify(SimConfig::unlimited(3000));
    let mine = s.pick(usize::MAX, |r, _| acme(r)).len();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet.csv");
    let o = simbulk()
        .arg("export")
        .args(["--provider", "emnify", "--rate", "0", "--base-url"])
        .arg(s.url())
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = read_csv(&out, b',');
    assert_eq!(
        rows.len(),
        mine,
        "every device of the organisation, in pages"
    );
    assert!(
        rows.iter().all(|r| !r["packageId"].is_empty()),
        "the tariff profile is the package"
    );
    let o = simbulk()
        .arg("apply")
        .arg(&out)
        .args([
            "--check",
            "--provider",
            "emnify",
            "--rate",
            "0",
            "--base-url",
        ])
        .arg(s.url())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn tags_and_name_are_the_attributes_emnify_takes_read_first_and_undone() {
    let s = emnify(SimConfig::unlimited(300));
    let ids = acme_of(&s, 2, Profile::Active);
    let body = format!(
        "iccid,action,value,attribute\n{a},set-attribute,batch-7,tags\n{b},set-attribute,meter-1,name\n{a},set-attribute,blue,colour\n",
        a = ids[0],
        b = ids[1]
    );
    let job = Job::new("tags.csv", &body);
    let o = job.run(&s, &emnify_args(&[]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let rows = job.results();
    assert_eq!(outcomes(&rows).get("ok"), Some(&2), "{rows:?}");
    let name_row = rows.iter().find(|r| r["attribute"] == "name").unwrap();
    assert!(
        name_row["before"].starts_with("device-"),
        "the field's value before is read, not guessed: {name_row:?}"
    );
    let tags_row = rows.iter().find(|r| r["attribute"] == "tags").unwrap();
    assert_eq!(tags_row["before_state"], "absent", "{tags_row:?}");
    // Undo puts both back: the tags emptied, the name restored.
    let undo = undo_job(&job);
    let o = undo.run(&s, &emnify_args(&[]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let last: std::collections::HashMap<String, serde_json::Value> = s
        .ledger()
        .into_iter()
        .map(|e| (format!("{} {}", e.icc_id, e.field), e.new))
        .collect();
    assert_eq!(last[&format!("{} tags", ids[0])], "");
    assert_eq!(
        last[&format!("{} name", ids[1])],
        name_row["before"].as_str()
    );
}

#[test]
fn a_device_another_client_suspended_before_its_row_is_read_fresh_and_skipped() {
    let s = emnify(SimConfig::unlimited(300));
    let targets = acme_of(&s, 3, Profile::Active);
    s.block(async {
        let other = Emnify::login(&s, SECRET).await.ok().unwrap();
        let ep = other.lookup(&targets[0]).await[0]["endpoint"]["id"].clone();
        let a = other
            .patch(
                "/api/v2/endpoint/multi",
                json!([{"id": ep, "status": {"id": 1}, "sim": {"status": {"id": 2}}}]),
            )
            .await;
        assert_eq!(a.status, 204);
    });
    let body: String = std::iter::once("iccid,action\n".to_owned())
        .chain(targets.iter().map(|i| format!("{i},suspend\n")))
        .collect();
    let job = Job::new("fresh.csv", &body);
    let o = job.run(&s, &emnify_args(&[]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = job.results();
    let done = rows.iter().find(|r| r["iccid"] == targets[0]).unwrap();
    assert_eq!(done["outcome"], "skipped", "{done:?}");
    // The other client's two changes and the job's four (two devices, SIM and endpoint).
    assert_eq!(s.ledger().len(), 6);
}
