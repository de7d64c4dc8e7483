//! The client against a different reading of the contract: a tiny server that answers writes
//! with 201/204 and odd bodies, puts 6047 on a 409, and fails with HTML. The engine must go by
//! the contract's guidance (any 2xx is success; classify by errorCode), not by our simulator.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, patch, post};

use crate::support::*;

const A: &str = "8944500990000012342";
const B: &str = "8944500990000012359";

fn variant(flaky: Arc<AtomicU32>) -> Router {
    Router::new()
        .route("/oauth2/token", post(|| async { ([("content-type", "application/json")], r#"{"access_token":"v_tok","token_type":"bearer","expires_in":3600,"scope":"api/api"}"#) }))
        .route(
            "/api/v2/sim/{icc}",
            patch(move |Path(icc): Path<String>| {
                let flaky = flaky.clone();
                async move {
                    if flaky.fetch_add(1, Ordering::SeqCst) == 0 {
                        return (StatusCode::BAD_GATEWAY, [("content-type", "text/html")], "<html><body>bad gateway</body></html>").into_response();
                    }
                    if icc == B {
                        return (StatusCode::CONFLICT, [("content-type", "application/json")], r#"{"errorCode":6047,"errorTag":"x","message":"already"}"#).into_response();
                    }
                    StatusCode::NO_CONTENT.into_response()
                }
            })
            .get(|Path(icc): Path<String>| async move {
                ([("content-type", "application/json")], format!(r#"{{"iccId":"{icc}","status":"suspended-by-operator","customerSuspend":false,"adminSuspend":false,"systemSuspend":false,"packageId":1,"portfolioId":"p","mnoId":1,"newField":{{"x":1}}}}"#))
            }),
        )
        .route(
            "/api/v2/sim/{icc}/attribute",
            get(|| async { ([("content-type", "application/json")], r#"{"data":[],"total":0}"#) }).post(|| async { (StatusCode::CREATED, "Created") }),
        )
}

#[test]
fn any_2xx_is_success_and_error_codes_decide_not_statuses() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, variant(Arc::new(AtomicU32::new(0)))).await });
    let job = Job::new(
        "v.csv",
        &format!(
            "iccid,action,attribute,value\n{A},activate,,\n{B},activate,,\n{A},set-attribute,k,v\n"
        ),
    );
    let o = simbulk()
        .arg("run")
        .arg(&job.input)
        .args(["--rate", "0", "--base-url", &format!("http://{addr}")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = job.results();
    let line = |l: &str| r.iter().find(|x| x["line"] == l).unwrap();
    assert_eq!(
        (
            line("2")["outcome"].as_str(),
            line("2")["http_status"].as_str()
        ),
        ("ok", "204")
    );
    assert_eq!(
        line("3")["outcome"],
        "skipped",
        "6047 on a 409 is still 'already done'"
    );
    assert_eq!(
        (
            line("4")["outcome"].as_str(),
            line("4")["http_status"].as_str()
        ),
        ("ok", "201")
    );
}
