//! The operator's world: profiles (file < env < flag), `config show`, secret files and
//! commands, the provider preset and a guessed token URL, a provider that speaks another
//! dialect of the wire (yes/no flags, attribute `key`), usage errors at parse time, help and
//! man pages, and the README's unit files and Dockerfile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Value, json};

use simbulk::sim::seed::Profile;

use crate::support::*;

fn private(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
}

/// A config file with a `sim` profile for `sim`, its secret in a private file.
fn config_for(dir: &std::path::Path, base_url: &str, extra: &str) -> std::path::PathBuf {
    let secret = dir.join("sim.secret");
    private(&secret, &format!("{}\n", simbulk::sim::DEMO_CLIENT_SECRET));
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "default-profile = \"sim\"\n[profiles.sim]\nbase-url = \"{base_url}\"\nclient-id = \"{}\"\nclient-secret-file = \"{}\"\nrate = 0\nconcurrency = 3\n{extra}",
            simbulk::sim::DEMO_CLIENT_ID,
            secret.display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn a_profile_drives_a_job_env_overrides_it_and_a_flag_overrides_env() {
    let s = TestSim::unlimited(500);
    let ids = s.pick(6, |r, p| p == Profile::Available && acme(r));
    let job = Job::new("p.csv", &(ids.join("\n") + "\n"));
    let cfg = config_for(job.dir.path(), &s.url(), "");
    let o = bare()
        .arg("--config")
        .arg(&cfg)
        .args(["run"])
        .arg(&job.input)
        .args(["--action", "activate", "--summary-json", "-", "-q"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(outcomes(&job.results())["ok"], 6);
    // config show: each value with its source; the secret file is named, never read out.
    let show = |env: &[(&str, &str)], flags: &[&str]| {
        let mut c = bare();
        c.arg("--config")
            .arg(&cfg)
            .args(["config", "show"])
            .args(flags);
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let line = |t: &str, key: &str| {
        t.lines()
            .find(|l| l.trim_start().starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("{key}: {t}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let t = show(&[], &[]);
    assert_eq!(line(&t, "concurrency"), "concurrency 3 (profile sim)");
    assert_eq!(line(&t, "max-retries"), "max-retries 8 (default)");
    let t = show(
        &[
            ("SIMBULK_CONCURRENCY", "5"),
            ("SIMBULK_CLIENT_SECRET", "s3cr3t-x"),
        ],
        &[],
    );
    assert_eq!(
        line(&t, "concurrency"),
        "concurrency 5 (env SIMBULK_CONCURRENCY)"
    );
    assert!(
        !t.contains("s3cr3t-x") && t.contains("********"),
        "masked: {t}"
    );
    // Values reach the engine: a bad env value is refused by the same parser as the flag…
    let mut c = bare();
    c.arg("--config")
        .arg(&cfg)
        .arg("run")
        .arg(&job.input)
        .env("SIMBULK_CONCURRENCY", "0");
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // …and a flag wins over it.
    let mut c = bare();
    c.arg("--config")
        .arg(&cfg)
        .arg("run")
        .arg(&job.input)
        .env("SIMBULK_CONCURRENCY", "0");
    let o = c
        .args([
            "--concurrency",
            "2",
            "--action",
            "activate",
            "--restart",
            "-q",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_secret_file_others_can_read_is_refused_and_a_secret_command_works() {
    let s = TestSim::unlimited(300);
    let ids = s.pick(2, |r, p| p == Profile::Available && acme(r));
    let job = Job::new("s.csv", &(ids.join("\n") + "\n"));
    let cfg = config_for(job.dir.path(), &s.url(), "");
    let secret = job.dir.path().join("sim.secret");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let o = bare()
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .arg(&job.input)
        .args(["--action", "activate"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("chmod 600"), "{}", text(&o));
    assert_eq!(s.stats().requests, 0);
    assert!(!job.path(".checkpoint").exists());
    // A command that prints the secret (flag over profile's file).
    let o = bare()
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .arg(&job.input)
        .args(["--action", "activate", "-q"])
        .args([
            "--client-secret-command",
            &format!("printf '%s\\n' {}", simbulk::sim::DEMO_CLIENT_SECRET),
        ])
        .output()
        .unwrap();
    // The flag's command wins over the profile's (unreadable) file.
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = bare()
        .arg("run")
        .arg(&job.input)
        .args([
            "--base-url",
            &s.url(),
            "--client-id",
            simbulk::sim::DEMO_CLIENT_ID,
        ])
        .args(["--action", "activate", "--restart", "-q"])
        .args([
            "--client-secret-command",
            &format!("echo {}", simbulk::sim::DEMO_CLIENT_SECRET),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = bare()
        .arg("run")
        .arg(&job.input)
        .args([
            "--base-url",
            &s.url(),
            "--client-id",
            "x",
            "--action",
            "activate",
        ])
        .args(["--client-secret-command", "echo leaked-words >&2; exit 3"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--client-secret-command: exited"),
        "{}",
        text(&o)
    );
}

#[test]
fn usage_errors_come_before_any_request_or_file() {
    let job = Job::new("u.csv", "8944500990000012342\n");
    let o = bare()
        .arg("run")
        .arg(&job.input)
        .args(["--action", "activte", "--base-url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for a in ["activate", "deactivate", "set-package", "delete-attribute"] {
        assert!(err.contains(a), "{a}: {err}");
    }
    assert!(!job.path(".checkpoint").exists() && !job.path(".results.csv").exists());
    // Every missing setting in one message.
    let o = bare()
        .arg("run")
        .arg(&job.input)
        .args(["--action", "activate"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("API address") && err.contains("client id") && err.contains("client secret"),
        "{err}"
    );
    // Completions know the actions; an unknown profile is a usage error.
    let o = simbulk().args(["completions", "bash"]).output().unwrap();
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("set-package") && t.contains("delete-attribute"));
    let o = bare()
        .args(["--profile", "nope", "--config"])
        .arg(job.dir.path().join("none.toml"))
        .args(["run"])
        .arg(&job.input)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn a_token_url_that_was_only_guessed_says_so_and_the_preset_fills_both() {
    let s = serve(Router::new().route(
        "/oauth2/token",
        post(|| async { (StatusCode::NOT_FOUND, "no such page").into_response() }),
    ));
    let job = Job::new("t.csv", "8944500990000012342\n");
    let o = simbulk()
        .arg("run")
        .arg(&job.input)
        .args(["--action", "activate", "--base-url", &s.url])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("was guessed") && err.contains("--token-url"),
        "{err}"
    );
    let o = bare()
        .args(["config", "show"])
        .env("SIMBULK_PROVIDER", "eseye")
        .env("SIMBULK_REGION", "us-east-1")
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("eseye") && t.contains("us-east-1"), "{t}");
}

/// A provider that writes flags as "yes"/"no" and an attribute's name as `key`, and wants
/// them so in requests; it keeps the bodies it was sent.
#[derive(Default)]
struct Dialect {
    sims: HashMap<String, Value>,
    attrs: HashMap<String, Vec<Value>>,
    next_id: i64,
    bodies: Vec<Value>,
    /// GETs left before a pending activation comes up.
    pending: HashMap<String, u32>,
}

type Shared = Arc<Mutex<Dialect>>;

fn dialect_sim(icc: &str) -> Value {
    json!({"iccId": icc, "status": "available", "customerSuspend": "no", "adminSuspend": "no",
           "systemSuspend": "no", "packageId": 1, "portfolioId": "p", "mnoId": 1})
}

fn ok(v: Value) -> Response {
    ([("content-type", "application/json")], v.to_string()).into_response()
}

fn refuse(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/json")],
        json!({"errorCode": 6014, "errorTag": "invalid_request_error", "message": why}).to_string(),
    )
        .into_response()
}

fn dialect(state: Shared) -> Router {
    let one = |st: &mut Dialect, icc: &str| -> Value {
        if let Some(n) = st.pending.get_mut(icc) {
            if *n == 0 {
                st.pending.remove(icc);
                st.sims.get_mut(icc).unwrap()["status"] = json!("active");
            } else {
                *n -= 1;
            }
        }
        st.sims[icc].clone()
    };
    Router::new()
        .route("/oauth2/token", post(|| async { ok(json!({"access_token": "d", "token_type": "bearer", "expires_in": 3600})) }))
        .route("/api/v2/sim", get(move |State(st): State<Shared>, Query(q): Query<Vec<(String, String)>>| async move {
            let mut st = st.lock().unwrap();
            let want: Vec<String> = q.iter().filter(|(k, _)| k == "iccId").map(|(_, v)| v.clone()).collect();
            let mut ids: Vec<String> = st.sims.keys().cloned().collect();
            ids.sort();
            let data: Vec<Value> = ids.iter().filter(|i| want.is_empty() || want.contains(i)).map(|i| one(&mut st, i)).collect();
            ok(json!({"data": data}))
        }))
        .route("/api/v2/sim/{icc}", get(move |State(st): State<Shared>, Path(icc): Path<String>| async move {
            let mut st = st.lock().unwrap();
            if !st.sims.contains_key(&icc) {
                return (StatusCode::NOT_FOUND, "{}").into_response();
            }
            ok(one(&mut st, &icc))
        }).patch(|State(st): State<Shared>, Path(icc): Path<String>, body: String| async move {
            let mut st = st.lock().unwrap();
            let b: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            st.bodies.push(b.clone());
            let sim = st.sims.get_mut(&icc).unwrap();
            if let Some(cs) = b.get("customerSuspend") {
                if !cs.is_string() {
                    return refuse("customerSuspend is yes or no");
                }
                sim["customerSuspend"] = cs.clone();
            }
            for k in ["packageId", "portfolioId"] {
                if let Some(v) = b.get(k) {
                    sim[k] = v.clone();
                }
            }
            let mut pending = false;
            if let Some(s) = b.get("status").and_then(Value::as_str) {
                pending = s == "active";
                sim["status"] = json!(if pending { "pendingProvision" } else { s });
            }
            let out = sim.clone();
            if pending {
                st.pending.insert(icc, 2);
            }
            ok(out)
        }))
        .route("/api/v2/sim/{icc}/attribute", get(|State(st): State<Shared>, Path(icc): Path<String>| async move {
            let st = st.lock().unwrap();
            ok(json!({"data": st.attrs.get(&icc).cloned().unwrap_or_default()}))
        }).post(|State(st): State<Shared>, Path(icc): Path<String>, body: String| async move {
            let mut st = st.lock().unwrap();
            let b: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            st.bodies.push(b.clone());
            let (Some(k), Some(v)) = (b.get("key"), b.get("value")) else {
                return refuse("an attribute has a key and a value");
            };
            if st.attrs.get(&icc).is_some_and(|l| l.iter().any(|a| &a["key"] == k)) {
                return (StatusCode::BAD_REQUEST, [("content-type", "application/json")],
                        json!({"errorCode": 16002, "errorTag": "invalid_request_error", "message": "exists"}).to_string())
                    .into_response();
            }
            st.next_id += 1;
            let a = json!({"iccAttributeId": st.next_id, "iccId": icc, "key": k, "value": v});
            st.attrs.entry(icc).or_default().push(a.clone());
            ok(a)
        }))
        .route("/api/v2/sim/{icc}/attribute/{id}", patch(|State(st): State<Shared>, Path((icc, id)): Path<(String, i64)>, body: String| async move {
            let mut st = st.lock().unwrap();
            let b: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            st.bodies.push(b.clone());
            if b.get("name").is_some() {
                return refuse("key, not name");
            }
            let list = st.attrs.entry(icc).or_default();
            let a = list.iter_mut().find(|a| a["iccAttributeId"] == id).unwrap();
            if let Some(v) = b.get("value") {
                a["value"] = v.clone();
            }
            ok(a.clone())
        }).delete(|State(st): State<Shared>, Path((icc, id)): Path<(String, i64)>| async move {
            let mut st = st.lock().unwrap();
            st.attrs.entry(icc).or_default().retain(|a| a["iccAttributeId"] != id);
            StatusCode::NO_CONTENT.into_response()
        }))
        .with_state(state)
}

#[test]
fn a_provider_speaking_yes_no_and_key_works_for_export_every_action_preview_and_wait() {
    let ids: Vec<String> = (0..4)
        .map(|i| simbulk::input::with_check_digit(&format!("894450099000001{i:03}")))
        .collect();
    let state: Shared = Arc::new(Mutex::new(Dialect::default()));
    for i in &ids {
        state.lock().unwrap().sims.insert(i.clone(), dialect_sim(i));
    }
    let s = serve(dialect(state.clone()));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!("[profiles.dialect]\nbase-url = \"{}\"\nrate = 0\n[profiles.dialect.wire]\nsuspend = \"yes-no\"\nattribute-name = \"key\"\n", s.url),
    )
    .unwrap();
    let base = || {
        let mut c = simbulk();
        c.arg("--config").arg(&cfg).args(["--profile", "dialect"]);
        c
    };
    // Export reads "no" as false.
    let out = dir.path().join("fleet.csv");
    let o = base().arg("export").arg("-o").arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = read_csv(&out, b',');
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r["customerSuspend"] == "false"));
    // Every action, previewed, then run (activation waited for).
    let mut body = String::from("iccid,action,value,attribute\n");
    let (a, b) = (&ids[0], &ids[1]);
    for (icc, action, value, attr) in [
        (a, "activate", "", ""),
        (a, "suspend", "", ""),
        (a, "unsuspend", "", ""),
        (a, "set-attribute", "v1", "site"),
        (a, "set-attribute", "v2", "site"),
        (a, "delete-attribute", "", "site"),
        (a, "deactivate", "", ""),
        (b, "set-package", "7", ""),
        (b, "set-portfolio", "q", ""),
    ] {
        body += &format!("{icc},{action},{value},{attr}\n");
    }
    let job = Job::new("d.csv", &body);
    let o = base()
        .arg("run")
        .arg(&job.input)
        .args(["--dry-run", "--check", "--yes"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "preview: {}", text(&o));
    assert!(
        state.lock().unwrap().bodies.is_empty(),
        "a preview writes nothing"
    );
    let o = base()
        .arg("run")
        .arg(&job.input)
        .args(["--yes", "--wait-active", "20s"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = job.results();
    assert!(r.iter().all(|x| x["outcome"] == "ok"), "{r:#?}");
    let act = r.iter().find(|x| x["action"] == "activate").unwrap();
    assert_eq!(act["sim_status"], "active", "waited for: {act:?}");
    // The writes were in the provider's forms.
    let st = state.lock().unwrap();
    let sent: Vec<String> = st.bodies.iter().map(Value::to_string).collect();
    assert!(
        sent.iter()
            .any(|b| b.contains(r#""customerSuspend":"yes""#)),
        "{sent:?}"
    );
    assert!(
        sent.iter().any(|b| b.contains(r#""customerSuspend":"no""#)),
        "{sent:?}"
    );
    assert!(
        sent.iter().any(|b| b.contains(r#""key":"site""#)),
        "{sent:?}"
    );
    assert!(
        !sent.iter().any(|b| b.contains("\"name\"")
            || b.contains("\"customerSuspend\":true")
            || b.contains("\"customerSuspend\":false")),
        "{sent:?}"
    );
    assert_eq!(st.sims[b]["packageId"], 7);
    assert!(st.attrs.get(a.as_str()).is_none_or(Vec::is_empty));
}

#[test]
fn man_pages_are_written_per_subcommand_and_render() {
    let dir = tempfile::tempdir().unwrap();
    let o = simbulk()
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let main = std::fs::read_to_string(dir.path().join("simbulk.1")).unwrap();
    for sub in ["run", "apply", "export", "report", "undo", "config", "sim"] {
        let page = dir.path().join(format!("simbulk-{sub}.1"));
        let roff = std::fs::read_to_string(&page).unwrap_or_else(|_| panic!("{sub}"));
        assert!(roff.starts_with(".ie") || roff.contains(".TH"), "{sub}");
        assert!(
            main.contains(&format!("simbulk\\-{sub}(1)")),
            "the main page names {sub}"
        );
    }
    let run = std::fs::read_to_string(dir.path().join("simbulk-run.1")).unwrap();
    assert!(
        run.contains("concurrency") && run.contains("Examples"),
        "run's options and examples"
    );
    // Rendered by man, where it is installed, without warnings.
    if std::process::Command::new("man")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let p = entry.unwrap().path();
            let o = std::process::Command::new("man")
                .args(["--warnings", "-l", "-Tutf8"])
                .arg(&p)
                .env("MANWIDTH", "80")
                .output()
                .unwrap();
            assert!(o.status.success(), "{}: {}", p.display(), text(&o));
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.trim().is_empty(), "{}: {err}", p.display());
        }
    }
}

/// The README's unit files: each `<!-- unit: NAME -->` marker and the `ini` block after it.
fn readme_units() -> Vec<(String, String)> {
    let readme = include_str!("../../README.md");
    let mut units = Vec::new();
    for part in readme.split("<!-- unit: ").skip(1) {
        let (name, rest) = part.split_once(" -->").unwrap();
        let body = rest.split_once("```ini\n").unwrap().1;
        let body = body.split_once("```").unwrap().0;
        units.push((name.to_owned(), body.to_owned()));
    }
    units
}

#[test]
fn the_readme_unit_files_are_valid_and_keep_comments_on_their_own_lines() {
    let units = readme_units();
    let names: Vec<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["simbulk-migration.service", "simbulk-migration.timer"]
    );
    for (name, body) in &units {
        for line in body.lines() {
            // systemd reads an end-of-line comment as part of the value.
            if line.contains('=') && !line.starts_with('#') {
                assert!(
                    !line.contains(" #"),
                    "{name}: comment after a value: {line}"
                );
            }
        }
    }
    let service = &units[0].1;
    assert!(service.contains("--window 01:00-05:30") && service.contains("KillSignal=SIGINT"));
    assert!(service.contains("SuccessExitStatus=1 75"));
    assert!(units[1].1.contains("Persistent=true"));
    // The ExecStart line parses as simbulk's own command line.
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let words: Vec<&str> = exec.split_whitespace().skip(1).collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("migrate-20533.csv"),
        "8944500990000012342\n",
    )
    .unwrap();
    let o = bare()
        .current_dir(dir.path())
        .args(&words)
        .args(["--dry-run", "--action", "activate"])
        .output()
        .unwrap();
    assert!(
        matches!(o.status.code(), Some(0) | Some(75)),
        "{}",
        text(&o)
    );
    // systemd's own check, where it is installed.
    if std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let env = dir.path().join("migration.env");
        std::fs::write(&env, "SIMBULK_PROFILE=prod\n").unwrap();
        let mut paths = Vec::new();
        for (name, body) in &units {
            let body = body
                .replace("/usr/local/bin/simbulk", env!("CARGO_BIN_EXE_simbulk"))
                .replace("/srv/migrations", &dir.path().display().to_string())
                .replace("/etc/simbulk/migration.env", &env.display().to_string());
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            paths.push(p);
        }
        let o = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .args(&paths)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("simbulk-migration"), "{err}");
    }
}

#[test]
fn the_dockerfile_builds_the_binary_alone_for_a_non_root_user() {
    let df = include_str!("../../Dockerfile");
    let stages: Vec<&str> = df.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    assert!(stages[0].contains(" AS build"));
    let runtime = df.split(stages[1]).nth(1).unwrap();
    let copies: Vec<&str> = runtime.lines().filter(|l| l.starts_with("COPY")).collect();
    assert_eq!(
        copies,
        ["COPY --from=build /src/target/release/simbulk /usr/local/bin/simbulk"]
    );
    assert!(runtime.contains("ENTRYPOINT [\"/usr/local/bin/simbulk\"]"));
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "{user}"
    );
    assert!(df.contains("cargo build --release --locked"));
    // What the build needs is in the repository, what it does not is left out.
    let ignore = include_str!("../../.dockerignore");
    assert!(ignore.lines().any(|l| l == "target"));
    assert!(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).exists());
}

#[test]
fn a_run_outside_its_window_sends_nothing_and_exits_75() {
    let s = TestSim::unlimited(100);
    let job = Job::new("w.csv", "8944500990000012342\n");
    // A window that closed a minute ago and opens in two minutes is closed now.
    let now = std::time::SystemTime::now();
    let hm = |t: std::time::SystemTime| {
        let z = jiff::Timestamp::try_from(t)
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::system());
        format!("{:02}:{:02}", z.hour(), z.minute())
    };
    let window = format!(
        "{}-{}",
        hm(now + std::time::Duration::from_secs(120)),
        hm(now - std::time::Duration::from_secs(60))
    );
    let o = job.run(&s, &["--action", "activate", "--window", &window]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    assert!(
        text(&o).contains("outside the change window"),
        "{}",
        text(&o)
    );
    assert_eq!(s.stats().requests, 0);
    assert!(!job.path(".checkpoint").exists());
}

#[test]
fn a_flag_from_the_environment_takes_1_yes_and_true() {
    let job = Job::new("e.csv", "iccid\n8944500990000012342\n");
    for v in ["1", "yes", "true", "on"] {
        let o = bare()
            .arg("run")
            .arg(&job.input)
            .args(["--action", "activate"])
            .env("SIMBULK_DRY_RUN", v)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "SIMBULK_DRY_RUN={v}: {}",
            text(&o)
        );
        assert!(text(&o).contains("nothing was sent"), "{}", text(&o));
    }
    // `0` is off: without a dry run the job needs its connection settings (exit 2).
    let o = bare()
        .arg("run")
        .arg(&job.input)
        .args(["--action", "activate"])
        .env("SIMBULK_DRY_RUN", "0")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("missing settings"), "{}", text(&o));
}

#[test]
fn the_simulator_reads_no_simbulk_variable_not_even_a_global_one() {
    use std::io::BufRead as _;
    let mut child = bare()
        .args(["sim", "--addr", "127.0.0.1:0"])
        .env("SIMBULK_QUIET", "1")
        .env("SIMBULK_LOG_FORMAT", "no-such-format")
        .env("SIMBULK_PROFILE", "no-such-profile")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let out = child.stdout.take().unwrap();
    std::io::BufReader::new(out).read_line(&mut first).unwrap();
    let _ = child.kill();
    let o = child.wait_with_output().unwrap();
    assert!(
        first.starts_with("http://127.0.0.1:"),
        "the simulator did not start: {first:?} {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
