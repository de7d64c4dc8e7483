//! The budget across hosts: the state in Redis, changed by one Lua script per call
//! (`redis.lua`, the algorithm of [`super::state`]), through a connection that reconnects.
//!
//! Guarantees: a call takes one round trip; every call is bounded by a short timeout, so a
//! lost Redis turns into an error the budget answers with a local pace, never a hang.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::state::{Grant, Me, State};
use super::{QuotaError, RedisUrl};

const SCRIPT: &str = include_str!("redis.lua");

/// Longest a Redis call may take.
const TIMEOUT: Duration = Duration::from_millis(1000);

/// One account's state in Redis.
pub(crate) struct RedisStore {
    url: RedisUrl,
    conn: ConnectionManager,
    script: redis::Script,
    key: String,
    account: String,
}

/// The key of `account`'s state.
pub(crate) fn key_for(account: &str) -> String {
    format!("simbulk:budget:{}", super::short_digest(account))
}

impl RedisStore {
    /// Connects to `url` (an unreachable server is an error now).
    pub(crate) async fn connect(url: &RedisUrl, account: &str) -> Result<Self, QuotaError> {
        let err = |source| QuotaError::Redis {
            url: url.clone(),
            source,
        };
        let client = redis::Client::open(url.expose()).map_err(err)?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1);
        let conn =
            tokio::time::timeout(TIMEOUT * 3, client.get_connection_manager_with_config(cfg))
                .await
                .map_err(|_| {
                    err(redis::RedisError::from(std::io::Error::from(
                        std::io::ErrorKind::TimedOut,
                    )))
                })?
                .map_err(err)?;
        Ok(Self {
            url: url.clone(),
            conn,
            script: redis::Script::new(SCRIPT),
            key: key_for(account),
            account: account.to_owned(),
        })
    }

    async fn run(&self, op: &str, me: &Me, retry_after: Option<f64>) -> Result<Grant, QuotaError> {
        self.run_at(op, me, retry_after, None).await
    }

    /// One call of the script; `now` (tests only) replaces the server's clock.
    async fn run_at(
        &self,
        op: &str,
        me: &Me,
        retry_after: Option<f64>,
        now: Option<f64>,
    ) -> Result<Grant, QuotaError> {
        let mut conn = self.conn.clone();
        let mut inv = self.script.key(&self.key);
        inv.arg(op)
            .arg(&me.id)
            .arg(&me.host)
            .arg(me.pid)
            .arg(me.weight)
            .arg(me.rate)
            .arg(me.burst)
            .arg(retry_after.unwrap_or(-1.0))
            .arg(&self.account)
            .arg(now.map_or_else(String::new, |t| format!("{t:.6}")));
        let call = inv.invoke_async::<Vec<i64>>(&mut conn);
        let r = tokio::time::timeout(TIMEOUT, call)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut).into())
            .and_then(|r| r);
        let v = r.map_err(|source| QuotaError::Redis {
            url: self.url.clone(),
            source,
        })?;
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        Ok(Grant {
            wait: at(0) as f64 / 1e6,
            share: at(1) as f64 / 1e6,
            rate: at(2) as f64 / 1e3,
            jobs: usize::try_from(at(3)).unwrap_or(1),
            cut: at(5) != 0,
            asked: at(6) as f64 / 1e3,
        })
    }

    pub(crate) async fn reserve(&self, me: &Me) -> Result<Grant, QuotaError> {
        self.run("reserve", me, None).await
    }

    pub(crate) async fn throttled(
        &self,
        me: &Me,
        retry_after: Option<f64>,
    ) -> Result<(), QuotaError> {
        self.run("throttled", me, retry_after).await.map(|_| ())
    }

    pub(crate) async fn release(&self, me: &Me) -> Result<(), QuotaError> {
        self.run("release", me, None).await.map(|_| ())
    }

    /// Every account's state in this Redis.
    pub(crate) async fn all(&self) -> Result<Vec<State>, QuotaError> {
        let err = |source| QuotaError::Redis {
            url: self.url.clone(),
            source,
        };
        let mut conn = self.conn.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("simbulk:budget:*")
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        let mut out = Vec::new();
        for k in keys.iter().take(1000) {
            let raw: Option<String> = redis::cmd("GET")
                .arg(k)
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            if let Some(s) = raw.and_then(|r| serde_json::from_str(&r).ok()) {
                out.push(s);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same sequence of calls through the Rust state and through the Lua script in a real
    /// Redis gives the same grants: the two implementations of one algorithm do not drift.
    #[test]
    fn the_script_grants_what_the_file_store_grants() {
        if std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must install redis-server (see .ci/run)"
            );
            eprintln!("redis-server not installed: this test did not run");
            return;
        }
        // A Unix socket in a directory of the test's own: no port for another test to take.
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("redis.sock");
        let log = dir.path().join("redis.log");
        let mut child = std::process::Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&sock)
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = RedisUrl::new(format!("redis+unix://{}", sock.display()));
        let store = rt.block_on(async {
            let since = std::time::Instant::now();
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let said = std::fs::read_to_string(&log).unwrap_or_default();
                    panic!("redis-server exited ({status}) before listening:\n{said}");
                }
                if sock.exists()
                    && let Ok(s) = RedisStore::connect(&url, "acct").await
                {
                    return s;
                }
                assert!(
                    since.elapsed() < Duration::from_secs(30),
                    "redis did not listen on {} in 30 s",
                    sock.display()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let me = |id: &str, rate: f64, burst: f64| Me {
            id: id.into(),
            host: "h".into(),
            pid: 1,
            weight: if id == "c" { 2.0 } else { 1.0 },
            rate,
            burst,
        };
        let mut local = State::default();
        let mut rng = fastrand::Rng::with_seed(7);
        let jobs = [me("a", 20.0, 5.0), me("b", 10.0, 1.0), me("c", 50.0, 3.0)];
        let mut t = 1_000_000.0;
        for step in 0..600 {
            t += rng.f64() * 0.05;
            // A job goes quiet for a while now and then (its lease lapses).
            let j = &jobs[if step % 150 < 100 { rng.usize(0..3) } else { 0 }];
            let (want, got) = if step % 97 == 50 {
                let ra = Some(1.0);
                local.throttled(j, ra, t);
                let g = rt
                    .block_on(store.run_at("throttled", j, ra, Some(t)))
                    .unwrap();
                (local.effective(t), g.rate)
            } else {
                let w = local.reserve(j, t);
                let g = rt
                    .block_on(store.run_at("reserve", j, None, Some(t)))
                    .unwrap();
                assert!((w.share - g.share).abs() < 1e-5, "step {step}: {w:?} {g:?}");
                assert_eq!((w.jobs, w.cut), (g.jobs, g.cut), "step {step}: {w:?} {g:?}");
                assert!((w.asked - g.asked).abs() < 1e-2, "step {step}: {w:?} {g:?}");
                assert!((w.wait - g.wait).abs() < 1e-4, "step {step}: {w:?} {g:?}");
                (w.rate, g.rate)
            };
            assert!(
                (want - got).abs() < 1e-2,
                "step {step}: rate {want} vs {got}"
            );
            if step == 320 {
                t += 10.0;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
