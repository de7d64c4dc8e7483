//! One account, one budget: every simbulk job of an account (base URL and client id, or
//! `--quota-key`) draws its requests from one shared rate budget, on one host through a small
//! state file under a file lock, across hosts through Redis (the same algorithm, as one atomic
//! script). See [`state`] for the algorithm: GCRA per job and per account, leases that lapse
//! within seconds of a job's last call (a `kill -9` frees its share by itself), equal shares
//! by default (`--share N` for weights), 429s that pause and slow every job of the account.
//!
//! Guarantees: the sum of the jobs' requests never passes the account's rate (plus its
//! burst); a store that cannot be reached at start is an error, one lost during a job is
//! replaced by a local pace of `rate ÷ jobs seen` with a warning until it answers again; the
//! state holds no secret (host names, pids, counts).

pub(crate) mod file;
pub(crate) mod remote;
pub(crate) mod state;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use state::{Grant, Me, State};

/// Where an account's budget lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A state file in this folder (one host).
    Dir(PathBuf),
    /// A Redis server (`redis://host:port/db`).
    Redis(RedisUrl),
}

/// A Redis URL, whose user and password are never shown: `Display` and `Debug` print
/// `redis://***@host:port/db`, so an error, a log line or a dump of the settings keeps the
/// secret.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL as given.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its secret, for the connection only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for RedisUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Whatever stands before the last `@` of the authority is credentials, and so may the
        // query be (`redis+unix:///path?user=…&pass=…`).
        let (url, query) = match self.0.split_once('?') {
            Some((url, _)) => (url, "?***"),
            None => (self.0.as_str(), ""),
        };
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let end = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let sep = if scheme.is_empty() { "" } else { "://" };
        match authority.rfind('@') {
            Some(at) => write!(f, "{scheme}{sep}***{}{path}{query}", &authority[at..]),
            None => write!(f, "{scheme}{sep}{authority}{path}{query}"),
        }
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// How a job joins its account's budget.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaConfig {
    /// Where the budget lives.
    pub place: Place,
    /// `--quota-key`: the account's name in the budget (default: base URL and client id).
    pub key: Option<String>,
    /// This job's weight (`--share`).
    pub weight: f64,
}

impl QuotaConfig {
    /// The default: this host's folder of budgets, the account named by its base URL and
    /// client id, an equal share.
    pub fn on_this_host() -> Self {
        Self {
            place: Place::Dir(default_dir()),
            key: None,
            weight: 1.0,
        }
    }
}

/// Why the budget cannot be used.
#[expect(
    missing_docs,
    reason = "each variant's #[error] message is its documentation, naming its fields"
)]
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("the shared rate budget in {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the shared rate budget at {url}: {source}; start Redis, fix --quota-url, or leave it out to share on this host only"
    )]
    Redis {
        url: RedisUrl,
        #[source]
        source: redis::RedisError,
    },
}

/// The default folder of local budgets: `$XDG_RUNTIME_DIR/simbulk`, else a private folder
/// under the temporary directory.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("simbulk"),
        // SAFETY: getuid has no preconditions and cannot fail.
        None => std::env::temp_dir().join(format!("simbulk-{}", unsafe { libc::getuid() })),
    }
}

/// The store of a budget.
enum Store {
    File(file::FileStore),
    Redis(remote::RedisStore),
}

/// A job's membership in its account's budget.
pub(crate) struct Budget {
    me: Me,
    store: Store,
    /// The pace used while Redis cannot be reached: the account's rate over the jobs seen.
    fallback: Mutex<Option<State>>,
    last: Mutex<Grant>,
    /// A 429 to report with the next call.
    throttled: Mutex<Option<Option<f64>>>,
}

/// The first 8 bytes of `text`'s SHA-256 in hex: a name for an account's state (a file, a
/// Redis key) or a job's lease that holds nothing of the text itself.
pub(crate) fn short_digest(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> f64 {
    crate::clock::epoch_seconds()
}

impl Budget {
    /// Joins the budget of `cfg.account` asking for `rate` requests per second and `burst`.
    /// `job` names the job (its checkpoint): a resumed run takes over the lease of the run
    /// before it, so a crash and a resume do not leave a ghost sharing the budget.
    pub(crate) async fn join(
        cfg: &QuotaConfig,
        account: &str,
        job: &str,
        rate: f64,
        burst: f64,
    ) -> Result<Self, QuotaError> {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let pid = std::process::id();
        let me = Me {
            id: format!("{host}:{}", short_digest(job)),
            host,
            pid,
            weight: cfg.weight,
            rate,
            burst,
        };
        let store = match &cfg.place {
            Place::Dir(d) => Store::File(file::FileStore::open(d, account)?),
            Place::Redis(url) => Store::Redis(remote::RedisStore::connect(url, account).await?),
        };
        let b = Self {
            me,
            store,
            fallback: Mutex::new(None),
            last: Mutex::new(Grant {
                wait: 0.0,
                share: 1.0,
                rate,
                jobs: 1,
                cut: false,
                asked: rate,
            }),
            throttled: Mutex::new(None),
        };
        // Joining is a first call: it checks the store and shows the others.
        let g = b.call(false).await?;
        let others = g.jobs.saturating_sub(1);
        if others > 0 {
            tracing::info!(
                "sharing the account's rate budget ({:.1}/s) with {others} other job(s): this job's share {:.0} %",
                g.rate,
                g.share * 100.0
            );
        }
        if g.cut && g.rate < rate {
            tracing::warn!(
                "a 429 in the last minutes cut the account's rate budget to {:.1}/s: this job goes by it while it climbs back to {:.1}/s",
                g.rate,
                g.asked
            );
        } else if g.asked < rate {
            tracing::warn!(
                "another job of the account running now asked for {:.1}/s: this job goes by it, not --rate {rate}, while that job runs",
                g.asked
            );
        }
        Ok(b)
    }

    /// One call against the store (a reservation unless `release`), with a pending 429.
    async fn call(&self, release: bool) -> Result<Grant, QuotaError> {
        let report = self
            .throttled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match &self.store {
            Store::File(f) => f.update(|s| {
                let now = now();
                if release {
                    s.release(&self.me.id);
                    return *self.last.lock().unwrap_or_else(|e| e.into_inner());
                }
                if let Some(ra) = report {
                    s.throttled(&self.me, ra, now);
                }
                s.reserve(&self.me, now)
            }),
            Store::Redis(r) => {
                if release {
                    r.release(&self.me).await?;
                    return Ok(*self.last.lock().unwrap_or_else(|e| e.into_inner()));
                }
                if let Some(ra) = report {
                    r.throttled(&self.me, ra).await?;
                }
                r.reserve(&self.me).await
            }
        }
    }

    /// Waits for this job's next request; a store lost mid-job is replaced by a local pace.
    pub(crate) async fn reserve(&self) -> Duration {
        let g = match self.call(false).await {
            Ok(g) => {
                if self
                    .fallback
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .is_some()
                {
                    tracing::warn!("the shared rate budget answers again: this job rejoins it");
                }
                self.note(g);
                g
            }
            Err(e) => self.local(&e),
        };
        Duration::from_secs_f64(g.wait.clamp(0.0, 3600.0))
    }

    /// The local pace while the store is lost: the account's rate over the jobs last seen.
    fn local(&self, e: &QuotaError) -> Grant {
        let last = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut f = self.fallback.lock().unwrap_or_else(|e| e.into_inner());
        let s = f.get_or_insert_with(|| {
            tracing::warn!(
                "{e}; going on alone at {:.2}/s (the account's {:.1}/s over the {} job(s) last seen) until it answers",
                last.rate / last.jobs.max(1) as f64,
                last.rate,
                last.jobs.max(1)
            );
            State::default()
        });
        let jobs = last.jobs.max(1) as f64;
        let me = Me {
            rate: (last.rate / jobs).max(1e-3),
            burst: (self.me.burst / jobs).max(1.0),
            ..self.me.clone()
        };
        s.reserve(&me, now())
    }

    /// Logs a change of the account's rate or of this job's share, once per change.
    fn note(&self, g: Grant) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if (g.rate - last.rate).abs() > last.rate * 0.1 {
            let why = if g.rate < last.rate {
                "a job of the account met a 429"
            } else {
                "no 429 since: climbing back"
            };
            tracing::info!("the account's rate is now {:.1}/s ({why})", g.rate);
        } else if g.jobs != last.jobs {
            tracing::info!(
                "{} job(s) now share the account's {:.1}/s: this job's share {:.0} %",
                g.jobs,
                g.rate,
                g.share * 100.0
            );
        } else {
            last.share = g.share;
            return;
        }
        *last = g;
    }

    /// A 429: reported to every job of the account with the next call.
    pub(crate) fn throttled(&self, retry_after: Option<Duration>) {
        *self.throttled.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(retry_after.map(|d| d.as_secs_f64()));
    }

    /// Leaves the budget: the share goes to the others at once.
    pub(crate) async fn leave(&self) {
        let _ = self.call(true).await;
    }

    /// This job's rate at its last call: the account's rate times its share.
    pub(crate) fn rate_now(&self) -> f64 {
        let g = self.last.lock().unwrap_or_else(|e| e.into_inner());
        g.rate * g.share
    }

    /// This job's share at its last call (0–1).
    pub(crate) fn share(&self) -> f64 {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).share
    }
}

#[cfg(test)]
mod tests {
    use super::RedisUrl;

    /// A Redis URL's credentials never show, wherever they are written.
    #[test]
    fn a_redis_url_shows_no_credentials() {
        for (given, shown) in [
            (
                "redis://:s3cret@db.example:6379/0",
                "redis://***@db.example:6379/0",
            ),
            (
                "rediss://ops:s3cret@db.example/2",
                "rediss://***@db.example/2",
            ),
            ("redis://s3cret@db.example", "redis://***@db.example"),
            (
                "redis+unix:///run/r.sock?db=1&pass=s3cret",
                "redis+unix:///run/r.sock?***",
            ),
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            ("not a url s3cret@x", "***@x"),
        ] {
            let u = RedisUrl::new(given);
            assert_eq!(u.to_string(), shown);
            assert!(!format!("{u:?}").contains("s3cret"), "{u:?}");
            assert_eq!(u.expose(), given);
        }
    }
}
