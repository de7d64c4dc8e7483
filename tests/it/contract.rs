//! The simulator against the contract, over real HTTP: endpoints, every business rule (with
//! its status, code, and nothing changed), lifecycle, pagination, tokens, 429s, faults,
//! ledger and stats, malformed requests, and a property test of invariants.

use std::collections::HashSet;
use std::time::Duration;

use proptest::prelude::*;
use reqwest::Method;
use serde_json::Value;
use simbulk::sim::seed::Profile;
use simbulk::sim::{FaultConfig, SimConfig};

use crate::support::*;

fn sim_path(icc: &str) -> String {
    format!("/api/v2/sim/{icc}")
}

fn available_eu(s: &TestSim, n: usize) -> Vec<String> {
    s.pick(n, |r, p| {
        p == Profile::Available && r.sim.portfolio_id == "pf-acme-eu" && r.sim.package_id == 20417
    })
}

#[test]
fn every_endpoint_answers_with_the_contract_shapes_and_a_request_id() {
    let s = TestSim::unlimited(500);
    let api = s.api();
    let icc = available_eu(&s, 1).remove(0);
    s.block(async {
        let r = api.get("/api/v2/sim?pageSize=3").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["data"].as_array().unwrap().len(), 3);
        assert!(r.headers.contains_key("x-request-id"));
        let r = api.get(&sim_path(&icc)).await;
        assert_eq!(
            (r.status, r.body["iccId"].as_str()),
            (200, Some(icc.as_str()))
        );
        let r = api.patch(&sim_path(&icc), r#"{"status":"active"}"#).await;
        assert_eq!((r.status, r.body["status"].as_str()), (200, Some("active")));
        let a = api
            .post(
                &format!("{}/attribute", sim_path(&icc)),
                r#"{"name":"n1","value":"v1"}"#,
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        let id = a.body["iccAttributeId"].as_i64().unwrap();
        let l = api.get(&format!("{}/attribute", sim_path(&icc))).await;
        assert!(
            l.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == "n1")
        );
        let one = api.get(&format!("{}/attribute/{id}", sim_path(&icc))).await;
        assert_eq!(one.body["value"], "v1");
        let p = api
            .patch(
                &format!("{}/attribute/{id}", sim_path(&icc)),
                r#"{"value":"v2"}"#,
            )
            .await;
        assert_eq!(p.body["value"], "v2");
        let d = api
            .delete(&format!("{}/attribute/{id}", sim_path(&icc)))
            .await;
        assert_eq!((d.status, d.body["value"].as_str()), (200, Some("v2")));
        let again = api
            .delete(&format!("{}/attribute/{id}", sim_path(&icc)))
            .await;
        assert_eq!((again.status, again.code()), (404, Some(6002)));
    });
    let kinds: Vec<String> = s.ledger().iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            "sim",
            "attribute.create",
            "attribute.update",
            "attribute.delete"
        ]
    );
}

/// Asserts a refusal and that the SIM did not change.
async fn refused(s: &TestSim, api: &Api, icc: &str, body: &str, status: u16, code: i64) {
    let before = s.sim(icc);
    let ledger = s.ledger().len();
    let r = api.patch(&sim_path(icc), body).await;
    assert_eq!(
        (r.status, r.code()),
        (status, Some(code)),
        "{body} on {icc}: {}",
        r.text
    );
    assert!(r.body["errorTag"].is_string() && r.body["message"].is_string());
    let after = s.sim(icc);
    assert_eq!(before.sim, after.sim, "{body} changed the SIM");
    assert_eq!(s.ledger().len(), ledger);
}

#[test]
fn every_business_rule_fires_with_its_status_and_code_and_changes_nothing() {
    let s = TestSim::start(SimConfig {
        activation_delay: Duration::from_secs(3600),
        ..SimConfig::unlimited(2000)
    });
    let api = s.api();
    let avail = available_eu(&s, 3);
    let active = s
        .pick(1, |r, p| {
            p == Profile::Active && r.sim.portfolio_id == "pf-acme-eu" && r.sim.package_id == 20417
        })
        .remove(0);
    let suspended = s
        .pick(1, |r, p| p == Profile::CustomerSuspended && acme(r))
        .remove(0);
    let admin = s
        .pick(1, |r, p| p == Profile::AdminSuspended && acme(r))
        .remove(0);
    let other_tenant = s
        .pick(1, |r, _| r.sim.portfolio_id == "pf-other-co")
        .remove(0);
    let a = &avail[0];
    s.block(async {
        // 3: permission (the read-only client).
        let ro = Api::new(&s.url(), "sim-readonly-client", "s3cr3t-readonly");
        let r = ro.patch(&sim_path(a), r#"{"status":"active"}"#).await;
        assert_eq!((r.status, r.code()), (403, Some(6024)));
        // 4, 5
        refused(&s, &api, a, "{}", 400, 6017).await;
        let r = api
            .patch("/api/v2/sim/12345", r#"{"status":"active"}"#)
            .await;
        assert_eq!((r.status, r.code()), (400, Some(6014)));
        let r = api
            .patch("/api/v2/sim/8944500990000099990", r#"{"status":"active"}"#)
            .await;
        assert_eq!((r.status, r.code()), (404, Some(6002)));
        let r = api
            .patch(&sim_path(&other_tenant), r#"{"status":"active"}"#)
            .await;
        assert_eq!(
            (r.status, r.code()),
            (404, Some(6002)),
            "outside the sphere is non-existent"
        );
        // 6 to 10
        refused(&s, &api, a, "not json", 400, 6006).await;
        refused(&s, &api, a, "[1,2]", 400, 6006).await;
        refused(&s, &api, a, r#"{"adminSuspend":true}"#, 400, 6014).await;
        refused(&s, &api, a, r#"{"iccId":"1"}"#, 400, 6014).await;
        refused(&s, &api, a, r#"{"colour":"red"}"#, 400, 6014).await;
        refused(&s, &api, a, r#"{"status":true}"#, 400, 6014).await;
        refused(&s, &api, a, r#"{"customerSuspend":"yes"}"#, 400, 6014).await;
        refused(&s, &api, a, r#"{"packageId":"20418"}"#, 400, 6014).await;
        refused(&s, &api, a, r#"{"packageId":null}"#, 400, 16004).await;
        refused(&s, &api, a, r#"{"status":"suspended"}"#, 400, 6048).await;
        // 12, 13
        refused(
            &s,
            &api,
            &suspended,
            r#"{"status":"available"}"#,
            400,
            16000,
        )
        .await;
        refused(&s, &api, &admin, r#"{"status":"available"}"#, 400, 16000).await;
        refused(&s, &api, a, r#"{"status":"available"}"#, 400, 6047).await;
        refused(&s, &api, &active, r#"{"status":"active"}"#, 400, 6047).await;
        // 14, 15
        refused(&s, &api, a, r#"{"customerSuspend":true}"#, 400, 6046).await;
        refused(&s, &api, &active, r#"{"packageId":20418}"#, 400, 6046).await;
        // 16, 17
        refused(&s, &api, a, r#"{"portfolioId":"pf-other-co"}"#, 400, 6026).await;
        refused(&s, &api, a, r#"{"portfolioId":"pf-nowhere"}"#, 400, 6026).await;
        refused(
            &s,
            &api,
            a,
            r#"{"portfolioId":"pf-acme-closed"}"#,
            400,
            16003,
        )
        .await;
        refused(
            &s,
            &api,
            a,
            r#"{"portfolioId":"pf-acme-frozen"}"#,
            400,
            6023,
        )
        .await;
        // 18 to 21
        refused(&s, &api, a, r#"{"packageId":31001}"#, 400, 16005).await;
        refused(&s, &api, a, r#"{"packageId":20420}"#, 400, 16006).await;
        refused(&s, &api, a, r#"{"packageId":20421}"#, 400, 16006).await;
        refused(&s, &api, a, r#"{"packageId":20499}"#, 400, 16007).await;
        refused(&s, &api, a, r#"{"portfolioId":"pf-acme-us"}"#, 400, 16001).await;
        // 11: pendingProvision refuses everything.
        let r = api
            .patch(&sim_path(&avail[1]), r#"{"status":"active"}"#)
            .await;
        assert_eq!(r.body["status"], "pendingProvision");
        refused(&s, &api, &avail[1], r#"{"status":"available"}"#, 400, 6046).await;
    });
}

#[test]
fn every_lifecycle_transition_of_the_table_is_accepted() {
    let s = TestSim::unlimited(1000);
    let api = s.api();
    let avail = available_eu(&s, 3);
    let plus = s
        .pick(1, |r, p| {
            p == Profile::Available
                && r.sim.portfolio_id == "pf-acme-eu"
                && r.sim.package_id == 20418
        })
        .remove(0);
    let a = &plus;
    s.block(async {
        let step = |body: &'static str, icc: String| {
            let api = &api;
            async move {
                let r = api.patch(&sim_path(&icc), body).await;
                assert_eq!(r.status, 200, "{body}: {}", r.text);
                r.body
            }
        };
        assert_eq!(
            step(r#"{"status":"active"}"#, a.clone()).await["status"],
            "active"
        );
        assert_eq!(
            step(r#"{"customerSuspend":true}"#, a.clone()).await["customerSuspend"],
            true
        );
        assert_eq!(
            step(r#"{"customerSuspend":false}"#, a.clone()).await["customerSuspend"],
            false
        );
        assert_eq!(
            step(r#"{"portfolioId":"pf-acme-us"}"#, a.clone()).await["portfolioId"],
            "pf-acme-us"
        );
        assert_eq!(
            step(r#"{"status":"available"}"#, a.clone()).await["status"],
            "available"
        );
        let b = step(r#"{"status":"active","packageId":20533}"#, avail[1].clone()).await;
        assert_eq!(
            (b["status"].as_str(), b["packageId"].as_i64()),
            (Some("active"), Some(20533))
        );
        let c = step(
            r#"{"packageId":31002,"portfolioId":"pf-acme-us"}"#,
            avail[2].clone(),
        )
        .await;
        assert_eq!(
            (c["status"].as_str(), c["portfolioId"].as_str()),
            (Some("available"), Some("pf-acme-us"))
        );
    });
    let admin = s
        .pick(1, |r, p| p == Profile::AdminSuspended && acme(r))
        .remove(0);
    s.block(async {
        let r = api
            .patch(&sim_path(&admin), r#"{"customerSuspend":true}"#)
            .await;
        assert_eq!(
            r.status, 200,
            "an admin-suspended SIM may still get customerSuspend"
        );
    });
}

#[test]
fn pagination_has_no_skips_or_repeats_while_sims_change_underneath() {
    let s = TestSim::unlimited(3000);
    let api = s.api();
    let expected: HashSet<String> = s
        .pick(usize::MAX, |r, p| {
            p == Profile::Available && r.sim.portfolio_id == "pf-acme-eu"
        })
        .into_iter()
        .collect();
    let movers = available_eu(&s, 400);
    let seen = s.block(async {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut page = 0;
        loop {
            let q = match &token {
                Some(t) => format!(
                    "/api/v2/sim?status=available&portfolioId=pf-acme-eu&pageSize=37&pageToken={t}"
                ),
                None => "/api/v2/sim?status=available&portfolioId=pf-acme-eu&pageSize=37".into(),
            };
            let r = api.get(&q).await;
            assert_eq!(r.status, 200, "{}", r.text);
            for sim in r.body["data"].as_array().unwrap() {
                seen.push(sim["iccId"].as_str().unwrap().to_owned());
            }
            // Changes underneath: attributes and suspensions do not change the filter's
            // membership, so every expected SIM must still be listed exactly once.
            for icc in movers.iter().skip(page * 10).take(10) {
                let a = api
                    .post(
                        &format!("{}/attribute", sim_path(icc)),
                        r#"{"name":"batch","value":"x"}"#,
                    )
                    .await;
                assert_eq!(a.status, 200);
            }
            page += 1;
            match r.body["nextPageToken"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        // A token replayed with other filters is refused.
        let r = api.get("/api/v2/sim?status=available&pageSize=2").await;
        let t = r.body["nextPageToken"].as_str().unwrap().to_owned();
        let bad = api
            .get(&format!("/api/v2/sim?status=active&pageToken={t}"))
            .await;
        assert_eq!((bad.status, bad.code()), (400, Some(6014)));
        seen
    });
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no repeats");
    assert_eq!(unique, expected, "no skips");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen, "ordered by iccId");
}

#[test]
fn list_filters_and_malformed_queries() {
    let s = TestSim::unlimited(1000);
    let api = s.api();
    let two = available_eu(&s, 2);
    s.block(async {
        let r = api
            .get(&format!("/api/v2/sim?iccId={}&iccId={}", two[0], two[1]))
            .await;
        assert_eq!(r.body["data"].as_array().unwrap().len(), 2);
        let r = api
            .get("/api/v2/sim?customerSuspend=true&pageSize=1000")
            .await;
        assert!(
            r.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|x| x["customerSuspend"] == true)
        );
        let r = api
            .get("/api/v2/sim?adminSuspend=true&mnoId=234501&pageSize=1000")
            .await;
        assert!(
            r.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|x| x["adminSuspend"] == true && x["mnoId"] == 234501)
        );
        let r = api.get("/api/v2/sim?packageId=31001&pageSize=1000").await;
        assert!(!r.body["data"].as_array().unwrap().is_empty());
        assert!(r.body.get("nextPageToken").is_none());
        let r = api.get("/api/v2/sim?portfolioId=pf-other-co").await;
        assert_eq!(
            r.body["data"].as_array().unwrap().len(),
            0,
            "other tenants are invisible"
        );
        for (q, code) in [
            ("stauts=active", 6054),
            ("pageSize=0", 6014),
            ("pageSize=1001", 6014),
            ("iccId=12", 6014),
            ("mnoId=x", 6014),
            ("adminSuspend=maybe", 6014),
            ("pageToken=garbage", 6014),
        ] {
            let r = api.get(&format!("/api/v2/sim?{q}")).await;
            assert_eq!((r.status, r.code()), (400, Some(code)), "{q}");
        }
        let many: Vec<String> = (0..101)
            .map(|i| format!("iccId={}", simbulk::sim::seed::iccid(1, i)))
            .collect();
        let r = api.get(&format!("/api/v2/sim?{}", many.join("&"))).await;
        assert_eq!((r.status, r.code()), (400, Some(6014)));
    });
}

#[test]
fn malformed_requests_get_the_contracts_4xx_and_never_break_the_server() {
    let s = TestSim::unlimited(200);
    let api = s.api();
    let icc = available_eu(&s, 1).remove(0);
    s.block(async {
        let huge = format!(r#"{{"status":"{}"}}"#, "a".repeat(70 * 1024));
        let r = api.patch(&sim_path(&icc), &huge).await;
        assert_eq!((r.status, r.code()), (413, Some(6014)));
        let r = api
            .post(
                &format!("{}/attribute", sim_path(&icc)),
                r#"{"name":"a","value":"b","extra":1}"#,
            )
            .await;
        assert_eq!((r.status, r.code()), (400, Some(6014)));
        let r = api.get(&format!("{}/attribute/abc", sim_path(&icc))).await;
        assert_eq!((r.status, r.code()), (400, Some(6014)));
        let r = api
            .get(&format!("{}/attribute/999999", sim_path(&icc)))
            .await;
        assert_eq!((r.status, r.code()), (404, Some(6002)));
        let r = api.get("/api/v2/sim/%00%01").await;
        assert_eq!(r.status, 400);
        let r = api.get("/nope").await;
        assert_eq!(r.status, 404);
        let r = api.delete(&sim_path(&icc)).await;
        assert_eq!(r.status, 405);
        assert!(
            r.headers.contains_key("x-request-id"),
            "every response has a request id"
        );
        for body in ["", "{", "null", "\"x\"", "{\"status\":[1]}", "\u{0}\u{1}"] {
            let r = api.patch(&sim_path(&icc), body).await;
            assert_eq!(r.status, 400, "{body:?}");
        }
        // Still serving.
        assert_eq!(api.get(&sim_path(&icc)).await.status, 200);
    });
}

#[test]
fn tokens_expire_are_revoked_and_bad_credentials_are_refused() {
    let s = TestSim::start(SimConfig {
        token_ttl: Duration::from_secs(1),
        ..SimConfig::unlimited(100)
    });
    let api = s.api();
    let icc = s.pick(1, |r, _| acme(r)).remove(0);
    s.block(async {
        assert_eq!(api.get(&sim_path(&icc)).await.status, 200);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = api.get(&sim_path(&icc)).await;
        assert_eq!(
            (r.status, r.body["message"].as_str()),
            (401, Some("Unauthorized"))
        );
    });
    let api = s.api();
    assert!(s.server().revoke_all() >= 1);
    s.block(async {
        assert_eq!(api.get(&sim_path(&icc)).await.status, 401);
        let http = simbulk::api::plain_client().unwrap().build().unwrap();
        let form = |extra: &str| format!("grant_type=client_credentials{extra}");
        for (auth, body, want) in [
            (
                Some(("sim-demo-client", "wrong")),
                form(""),
                "invalid_client",
            ),
            (None, form(""), "invalid_client"),
            (
                Some(("sim-demo-client", SECRET)),
                "grant_type=password".to_owned(),
                "unsupported_grant_type",
            ),
            (
                Some(("sim-demo-client", SECRET)),
                form("&scope=other"),
                "invalid_scope",
            ),
        ] {
            let mut req = http
                .post(format!("{}/oauth2/token", s.url()))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
            if let Some((u, p)) = auth {
                req = req.basic_auth(u, Some(p));
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 400);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"], want);
        }
        let r = http
            .post(format!("{}/oauth2/token", s.url()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "sim-demo-client"),
                ("client_secret", SECRET),
                ("scope", "api/api"),
            ])
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (v["token_type"].as_str(), v["expires_in"].as_u64()),
            (Some("Bearer"), Some(1))
        );
    });
}

#[test]
fn rate_limit_answers_429_with_and_without_retry_after() {
    for header in [true, false] {
        let s = TestSim::start(SimConfig {
            rate_limit_per_second: 5,
            rate_limit_burst: 3,
            retry_after_header: header,
            ..SimConfig::unlimited(50)
        });
        let api = s.api();
        let icc = s.pick(1, |r, _| acme(r)).remove(0);
        let statuses: Vec<(u16, Option<String>, Value)> = s.block(async {
            let mut v = Vec::new();
            for _ in 0..6 {
                let r = api.get(&sim_path(&icc)).await;
                v.push((
                    r.status,
                    r.headers
                        .get("retry-after")
                        .map(|h| h.to_str().unwrap().to_owned()),
                    r.body,
                ));
            }
            v
        });
        let limited: Vec<_> = statuses.iter().filter(|(s, ..)| *s == 429).collect();
        assert!(!limited.is_empty());
        for (_, ra, body) in &limited {
            assert_eq!(body["message"], "Too Many Requests");
            assert_eq!(ra.is_some(), header);
            if let Some(ra) = ra {
                assert!(ra.parse::<u64>().unwrap() >= 1);
            }
        }
        assert!(s.stats().too_many_requests >= limited.len() as u64);
    }
}

#[test]
fn each_fault_kind_is_injected_and_apply_then_fail_leaves_the_change_committed() {
    let s = TestSim::unlimited(300);
    let api = s.api();
    let avail = available_eu(&s, 2);
    for (status, field) in [
        (500, "http500"),
        (502, "http502"),
        (503, "http503"),
        (504, "http504"),
    ] {
        let mut f = FaultConfig::default();
        match field {
            "http500" => f.http500 = 1.0,
            "http502" => f.http502 = 1.0,
            "http503" => f.http503 = 1.0,
            _ => f.http504 = 1.0,
        }
        s.server().set_faults(f);
        let r = s.block(api.get(&sim_path(&avail[0])));
        assert_eq!(r.status, status);
        if status == 502 || status == 504 {
            assert!(r.text.contains("<html>"), "gateways send HTML");
        }
    }
    s.server().set_faults(FaultConfig {
        drop: 1.0,
        ..FaultConfig::default()
    });
    let dropped = s.block(
        api.http
            .get(format!("{}{}", s.url(), sim_path(&avail[0])))
            .bearer_auth(&api.token)
            .send(),
    );
    assert!(dropped.is_err(), "the connection closes without a response");

    s.server().set_faults(FaultConfig {
        apply_then_fail: 1.0,
        after_apply: simbulk::sim::AfterApply::Status,
        ..FaultConfig::default()
    });
    let r = s.block(api.patch(&sim_path(&avail[0]), r#"{"status":"active"}"#));
    assert_eq!(r.status, 503);
    assert_eq!(
        s.sim(&avail[0]).sim.status,
        "active",
        "committed before the failure"
    );
    s.server().set_faults(FaultConfig {
        apply_then_fail: 1.0,
        after_apply: simbulk::sim::AfterApply::Drop,
        ..FaultConfig::default()
    });
    let r = s.block(
        api.http
            .patch(format!("{}{}", s.url(), sim_path(&avail[1])))
            .bearer_auth(&api.token)
            .body(r#"{"status":"active"}"#)
            .send(),
    );
    assert!(r.is_err());
    assert_eq!(s.sim(&avail[1]).sim.status, "active");

    s.server().set_faults(FaultConfig {
        slow: 1.0,
        slow_duration: Duration::from_millis(300),
        ..FaultConfig::default()
    });
    let start = std::time::Instant::now();
    let r = s.block(api.get(&sim_path(&avail[0])));
    assert_eq!(r.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));

    s.server().set_faults(FaultConfig {
        revoke: 1.0,
        ..FaultConfig::default()
    });
    assert_eq!(s.block(api.get(&sim_path(&avail[0]))).status, 200);
    s.server().set_faults(FaultConfig::default());
    assert_eq!(
        s.block(api.get(&sim_path(&avail[0]))).status,
        401,
        "the token was revoked"
    );

    let stats = s.stats();
    for k in [
        "http500",
        "http502",
        "http503",
        "http504",
        "drop",
        "applyThenFail",
        "slow",
        "revoke",
    ] {
        assert!(
            stats.faults_injected.get(k).copied().unwrap_or(0) >= 1,
            "{k}: {:?}",
            stats.faults_injected
        );
    }
    assert_eq!(stats.mutations_applied, 2);
    assert!(stats.by_route.contains_key("PATCH /api/v2/sim/{iccId}"));
    assert!(stats.peak_per_second >= 1);
}

#[test]
fn the_same_seed_injects_the_same_faults() {
    let run = || {
        let s = TestSim::start(SimConfig {
            faults: FaultConfig {
                http503: 0.3,
                ..FaultConfig::default()
            },
            ..SimConfig::unlimited(50)
        });
        let api = s.api();
        let icc = s.pick(1, |r, _| acme(r)).remove(0);
        s.block(async {
            let mut v = Vec::new();
            for _ in 0..40 {
                v.push(api.get(&sim_path(&icc)).await.status);
            }
            v
        })
    };
    assert_eq!(run(), run());
}

#[test]
fn the_state_file_carries_sims_attributes_and_ledger_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestSim::start(SimConfig {
        state_file: Some(dir.path().join("state.json")),
        ..SimConfig::unlimited(100)
    });
    let icc = available_eu(&s, 1).remove(0);
    let api = s.api();
    s.block(api.patch(&sim_path(&icc), r#"{"status":"active"}"#));
    s.block(api.post(
        &format!("{}/attribute", sim_path(&icc)),
        r#"{"name":"k","value":"v"}"#,
    ));
    s.restart();
    assert_eq!(s.sim(&icc).sim.status, "active");
    assert_eq!(s.sim(&icc).attributes.last().unwrap().name, "k");
    assert_eq!(s.ledger().len(), 2);
    let api = s.api();
    let r = s.block(api.post(
        &format!("{}/attribute", sim_path(&icc)),
        r#"{"name":"k2","value":"v"}"#,
    ));
    let ids: HashSet<i64> = s
        .sim(&icc)
        .attributes
        .iter()
        .map(|a| a.icc_attribute_id)
        .collect();
    assert_eq!(
        ids.len(),
        s.sim(&icc).attributes.len(),
        "ids are never reused: {}",
        r.text
    );
}

#[derive(Debug, Clone)]
enum Op {
    Patch(&'static str),
    Create(&'static str, &'static str),
    Rename(usize, &'static str),
    Update(usize, &'static str),
    Delete(usize),
}

fn op() -> impl Strategy<Value = (usize, Op)> {
    let bodies = prop::sample::select(vec![
        r#"{"status":"active"}"#,
        r#"{"status":"available"}"#,
        r#"{"customerSuspend":true}"#,
        r#"{"customerSuspend":false}"#,
        r#"{"packageId":20418}"#,
        r#"{"packageId":20417}"#,
        r#"{"packageId":20533}"#,
        r#"{"portfolioId":"pf-acme-us"}"#,
        r#"{"portfolioId":"pf-acme-eu"}"#,
        r#"{"portfolioId":"pf-acme-us","packageId":31002}"#,
        r#"{"status":"active","packageId":20417}"#,
    ]);
    let names = prop::sample::select(vec!["a", "b", "c"]);
    let values = prop::sample::select(vec!["x", "y"]);
    (
        0usize..4,
        prop_oneof![
            bodies.prop_map(Op::Patch),
            (names.clone(), values.clone()).prop_map(|(n, v)| Op::Create(n, v)),
            (0usize..4, names).prop_map(|(i, n)| Op::Rename(i, n)),
            (0usize..4, values).prop_map(|(i, v)| Op::Update(i, v)),
            (0usize..4).prop_map(Op::Delete),
        ],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn random_call_sequences_keep_the_invariants(ops in proptest::collection::vec(op(), 1..40)) {
        let s = TestSim::unlimited(400);
        let api = s.api();
        let subjects: Vec<String> = {
            let mut v = available_eu(&s, 2);
            v.extend(s.pick(1, |r, p| p == Profile::CustomerSuspended && r.sim.portfolio_id == "pf-acme-eu"));
            v.extend(s.pick(1, |r, p| p == Profile::Active && r.sim.portfolio_id == "pf-acme-eu"));
            v
        };
        let before: Vec<_> = subjects.iter().map(|i| s.sim(i)).collect();
        for (who, op) in &ops {
            let icc = &subjects[*who];
            let prev = s.sim(icc);
            let attr = |i: usize| prev.attributes.get(i % prev.attributes.len().max(1)).map_or(1, |a| a.icc_attribute_id);
            let base = sim_path(icc);
            let r = s.block(async {
                match op {
                    Op::Patch(b) => api.patch(&base, b).await,
                    Op::Create(n, v) => api.post(&format!("{base}/attribute"), &format!(r#"{{"name":"{n}","value":"{v}"}}"#)).await,
                    Op::Rename(i, n) => api.patch(&format!("{base}/attribute/{}", attr(*i)), &format!(r#"{{"name":"{n}"}}"#)).await,
                    Op::Update(i, v) => api.patch(&format!("{base}/attribute/{}", attr(*i)), &format!(r#"{{"value":"{v}"}}"#)).await,
                    Op::Delete(i) => api.send(Method::DELETE, &format!("{base}/attribute/{}", attr(*i)), None).await,
                }
            });
            let now = s.sim(icc);
            // A suspended SIM never changes except customerSuspend.
            if prev.sim.is_suspended() {
                let mut a = prev.sim.clone();
                let mut b = now.sim.clone();
                a.customer_suspend = false; b.customer_suspend = false;
                a.modified_date = None; b.modified_date = None;
                prop_assert_eq!(a, b);
                prop_assert_eq!(&prev.attributes, &now.attributes);
            }
            if r.status != 200 {
                prop_assert_eq!(&prev.sim, &now.sim);
                prop_assert_eq!(&prev.attributes, &now.attributes);
            }
            // Attribute names are unique per SIM.
            let names: HashSet<&str> = now.attributes.iter().map(|a| a.name.as_str()).collect();
            prop_assert_eq!(names.len(), now.attributes.len());
            // The package is linked to the portfolio.
            let linked = simbulk::sim::state::catalogue_packages().into_iter().any(|p| p.id == now.sim.package_id && p.portfolios.contains(&now.sim.portfolio_id.as_str()));
            prop_assert!(linked, "{:?}", now.sim);
        }
        // The ledger replays the seed to the live state.
        for (icc, start) in subjects.iter().zip(before) {
            let mut sim = serde_json::to_value(&start.sim).unwrap();
            let mut attrs: std::collections::BTreeMap<i64, (String, String)> = start.attributes.iter().map(|a| (a.icc_attribute_id, (a.name.clone(), a.value.clone()))).collect();
            for e in s.ledger().iter().filter(|e| &e.icc_id == icc) {
                match e.kind.as_str() {
                    "sim" => { prop_assert_eq!(&sim[&e.field], &e.old); sim[&e.field] = e.new.clone(); }
                    "attribute.create" => { attrs.insert(e.icc_attribute_id.unwrap(), (e.field.clone(), e.new.as_str().unwrap().to_owned())); }
                    "attribute.update" => { attrs.get_mut(&e.icc_attribute_id.unwrap()).unwrap().1 = e.new.as_str().unwrap().to_owned(); }
                    "attribute.rename" => { attrs.get_mut(&e.icc_attribute_id.unwrap()).unwrap().0 = e.new.as_str().unwrap().to_owned(); }
                    "attribute.delete" => { attrs.remove(&e.icc_attribute_id.unwrap()); }
                    k => prop_assert!(false, "unknown ledger kind {}", k),
                }
            }
            let live = s.sim(icc);
            let mut want = serde_json::to_value(&live.sim).unwrap();
            want["modifiedDate"] = Value::Null;
            sim["modifiedDate"] = Value::Null;
            prop_assert_eq!(sim, want);
            let live_attrs: std::collections::BTreeMap<i64, (String, String)> = live.attributes.iter().map(|a| (a.icc_attribute_id, (a.name.clone(), a.value.clone()))).collect();
            prop_assert_eq!(attrs, live_attrs);
        }
    }
}
