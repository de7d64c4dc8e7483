//! Argument groups and value parsers shared by the commands (connection, pacing values,
//! durations, log format), and the endpoint they describe. Imports no command.
//!
//! Guarantees: the client secret is never a flag value (it comes from the environment or a
//! file, read bounded); `http://` is accepted for loopback hosts only; every numeric value is
//! range-checked here, so it reaches the engine typed and in range.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use secrecy::SecretString;

use crate::api::{Endpoint, check_url};
use crate::engine::provider::Pacing;
use crate::input::ActionKind;

/// Log format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// A requests-per-second limit, or no limit (`0` or `unlimited`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rate(pub Option<f64>);

/// Slowest rate accepted: one request an hour.
pub(crate) const MIN_RATE: f64 = 1.0 / 3600.0;
/// Fastest rate accepted (requests per second).
pub(crate) const MAX_RATE: f64 = 1_000_000.0;

pub(crate) fn parse_rate(s: &str) -> Result<Rate, String> {
    if s.eq_ignore_ascii_case("unlimited") {
        return Ok(Rate(None));
    }
    match s.parse::<f64>() {
        Ok(0.0) => Ok(Rate(None)),
        Ok(r) if (MIN_RATE..=MAX_RATE).contains(&r) => Ok(Rate(Some(r))),
        Ok(r) if r.is_finite() && r > 0.0 => Err(format!(
            "{s:?} is outside the rates simbulk takes: from one request an hour (0.0003) to {MAX_RATE} a second; 0 or unlimited for no limit"
        )),
        _ => Err(format!(
            "{s:?} is not a rate; give requests per second (e.g. 10 or 0.5), or 0 / unlimited for no limit"
        )),
    }
}

/// Longest duration accepted (a hundred years: past it, instants overflow).
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = crate::clock::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}); write e.g. 30s, 500ms, 2m, 1h30m"))?;
    if d > MAX_DURATION {
        return Err(format!("{s:?} is longer than a hundred years"));
    }
    Ok(d)
}

/// `--timeout`: from 100 ms to an hour.
pub(crate) fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err(format!(
            "{s:?}: a request timeout is from 100ms to 1h (e.g. 30s)"
        ));
    }
    Ok(d)
}

/// Most rows in flight.
pub(crate) const MAX_CONCURRENCY: usize = 10_000;

/// `--concurrency`: from 1 to [`MAX_CONCURRENCY`].
pub(crate) fn parse_concurrency(s: &str) -> Result<NonZeroUsize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_CONCURRENCY).contains(n))
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| {
            format!("{s:?}: --concurrency is a whole number from 1 to {MAX_CONCURRENCY}")
        })
}

/// How a command paces its calls: the rate, the burst, the answer to a 429 and the
/// account's shared budget; the same flags for every command that calls the API.
#[derive(Debug, Clone, Args)]
pub(crate) struct PacingArgs {
    /// Requests per second across all workers, retries and token requests included; set it
    /// at or below the provider's limit. 0 or `unlimited` = no client-side limit.
    #[arg(long, default_value = "10", value_parser = parse_rate, help_heading = "Pacing")]
    pub(crate) rate: Rate,

    /// Requests that may go at once above the steady rate [default: 1 % of --rate, at least 1].
    /// The small default lets the pacer catch up on timer jitter, so the achieved rate sits on
    /// --rate; no one-second window exceeds --rate + --burst.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000), help_heading = "Pacing")]
    pub(crate) burst: Option<u32>,

    /// Keep --rate fixed when the provider answers 429, instead of lowering it and climbing
    /// back (AIMD). Every 429 still pauses all workers until its Retry-After.
    #[arg(long, help_heading = "Pacing")]
    pub(crate) fixed_rate: bool,

    #[command(flatten)]
    pub(crate) budget: BudgetArgs,
}

impl PacingArgs {
    /// The pacing these flags ask for.
    pub(crate) fn pacing(&self) -> Pacing {
        Pacing {
            rate: self.rate.0,
            burst: self
                .burst
                .and_then(std::num::NonZeroU32::new)
                .unwrap_or_else(|| crate::api::pace::default_burst(self.rate.0)),
            adaptive: !self.fixed_rate,
            quota: self.budget.quota(),
        }
    }
}

/// How a command that only reads (`export`, `verify`) paces and retries its reads.
#[derive(Debug, Clone, Args)]
pub(crate) struct ReadArgs {
    #[command(flatten)]
    pub(crate) pacing: PacingArgs,
    /// Concurrent reads (1 to 1000).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1000), help_heading = "Pacing")]
    pub(crate) concurrency: u16,
    /// Retries per request after a 5xx, a timeout or a lost connection (0 to 1000).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(0..=1000), help_heading = "Pacing")]
    pub(crate) max_retries: u32,
    /// Timeout of one HTTP request (100ms to 1h).
    #[arg(long, default_value = "30s", value_parser = parse_timeout, help_heading = "Pacing")]
    pub(crate) timeout: Duration,
}

/// The account's shared rate budget; shared by every command that calls the API, so each
/// draws from the same budget as the account's other jobs.
#[derive(Debug, Clone, Args)]
pub(crate) struct BudgetArgs {
    /// This host's shared rate budgets (one per account; unused an hour, removed) [default:
    /// $XDG_RUNTIME_DIR/simbulk, or /tmp/simbulk-UID without XDG_RUNTIME_DIR].
    #[arg(long, value_name = "DIR", help_heading = "Pacing")]
    pub(crate) quota_dir: Option<PathBuf>,

    /// Share the account's rate budget across hosts through Redis (redis://host:port/db).
    #[arg(long, value_name = "URL", help_heading = "Pacing")]
    pub(crate) quota_url: Option<crate::quota::RedisUrl>,

    /// The account's name in the shared budget [default: base URL and client id].
    #[arg(long, value_name = "TEXT", help_heading = "Pacing")]
    pub(crate) quota_key: Option<String>,

    /// This job's weight in the account's budget (jobs share it in proportion; 0.01 to 100).
    #[arg(long, default_value_t = 1.0, value_parser = parse_share, help_heading = "Pacing")]
    pub(crate) share: f64,

    /// Pace this job alone, outside its account's shared budget.
    #[arg(long, help_heading = "Pacing")]
    pub(crate) no_shared_budget: bool,
}

impl BudgetArgs {
    /// The budget to join (`None`: pace alone).
    pub(crate) fn quota(&self) -> Option<crate::quota::QuotaConfig> {
        (!self.no_shared_budget).then(|| crate::quota::QuotaConfig {
            place: match &self.quota_url {
                Some(u) => crate::quota::Place::Redis(u.clone()),
                None => crate::quota::Place::Dir(
                    self.quota_dir
                        .clone()
                        .unwrap_or_else(crate::quota::default_dir),
                ),
            },
            key: self.quota_key.clone(),
            weight: self.share,
        })
    }
}

/// `--share`: a weight from 0.01 to 100.
fn parse_share(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|w| (0.01..=100.0).contains(w))
        .ok_or_else(|| format!("{s:?}: --share is a weight from 0.01 to 100 (1 = an equal share)"))
}

/// How to reach the API; shared by the commands that call it.
#[derive(Debug, Args)]
pub(crate) struct ConnectionArgs {
    /// Base URL of the SIM API, e.g. https://sim.api.example.com (http:// only for loopback)
    /// [default: the --provider's].
    #[arg(long, env = "SIMBULK_BASE_URL", help_heading = "Connection")]
    pub(crate) base_url: Option<String>,

    /// OAuth2 token endpoint [default: the --provider's, else <base-url>/oauth2/token].
    #[arg(long, env = "SIMBULK_TOKEN_URL", help_heading = "Connection")]
    pub(crate) token_url: Option<String>,

    /// A known provider: fills the base URL and the token URL (its identity provider's, in
    /// --region).
    #[arg(long, value_enum, help_heading = "Connection")]
    pub(crate) provider: Option<Provider>,

    /// The provider's region, for its token URL.
    #[arg(long, default_value = "eu-west-1", value_parser = parse_region, help_heading = "Connection")]
    pub(crate) region: String,

    /// OAuth2 client id. The secret comes from SIMBULK_CLIENT_SECRET or --client-secret-file,
    /// never from a flag.
    #[arg(long, env = "SIMBULK_CLIENT_ID", help_heading = "Connection")]
    pub(crate) client_id: Option<String>,

    /// File holding the OAuth2 client secret (first line), instead of SIMBULK_CLIENT_SECRET;
    /// refused when other users can read it (chmod 600).
    #[arg(long, help_heading = "Connection")]
    pub(crate) client_secret_file: Option<PathBuf>,

    /// A command (run with sh -c) that prints the client secret on its first line, e.g.
    /// `pass show simbulk/prod` or `aws secretsmanager get-secret-value …`; it wins over a
    /// secret file.
    #[arg(long, value_name = "COMMAND", help_heading = "Connection")]
    pub(crate) client_secret_command: Option<String>,

    /// How the provider spells customerSuspend in requests: `bool` (the contract) or
    /// `yes-no`. Answers are read in either form.
    #[arg(long, value_enum, default_value = "bool", help_heading = "Connection")]
    pub(crate) wire_suspend: WireSuspend,

    /// The key of an attribute's name in requests: `name` (the contract) or `key`.
    #[arg(long, value_enum, default_value = "name", help_heading = "Connection")]
    pub(crate) wire_attribute_name: WireName,

    /// Extra CA certificate bundle (PEM) to trust, for providers behind a private CA.
    #[arg(long, help_heading = "Connection")]
    pub(crate) ca_bundle: Option<PathBuf>,
}

impl ConnectionArgs {
    /// Whose SIM API these flags reach (known without credentials: a dry run needs it too).
    pub(crate) fn api(&self) -> crate::api::Api {
        match self.provider {
            Some(Provider::Twilio) => crate::api::Api::SuperSim,
            Some(Provider::Emnify) => crate::api::Api::Emnify,
            Some(Provider::Eseye) | None => crate::api::Api::EseyeV2,
        }
    }
}

/// `--action`: the actions a row can name (the input's action cells take the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ActionArg {
    /// status active (pendingProvision first where the provider delays it)
    Activate,
    /// status available
    Deactivate,
    /// customerSuspend true (an active SIM)
    Suspend,
    /// customerSuspend false
    Unsuspend,
    /// packageId = the value (a number)
    #[value(alias = "change-package", alias = "set_package")]
    SetPackage,
    /// portfolioId = the value
    #[value(alias = "change-portfolio", alias = "set_portfolio")]
    SetPortfolio,
    /// attribute (--attribute or the attribute column) = the value; created if absent
    #[value(alias = "set_attribute")]
    SetAttribute,
    /// the attribute removed
    #[value(alias = "delete_attribute")]
    DeleteAttribute,
}

impl ActionArg {
    /// The action it names (whose name is the one definition of the action's spelling).
    pub(crate) fn kind(self) -> ActionKind {
        match self {
            ActionArg::Activate => ActionKind::Activate,
            ActionArg::Deactivate => ActionKind::Deactivate,
            ActionArg::Suspend => ActionKind::Suspend,
            ActionArg::Unsuspend => ActionKind::Unsuspend,
            ActionArg::SetPackage => ActionKind::SetPackage,
            ActionArg::SetPortfolio => ActionKind::SetPortfolio,
            ActionArg::SetAttribute => ActionKind::SetAttribute,
            ActionArg::DeleteAttribute => ActionKind::DeleteAttribute,
        }
    }

    /// The action's name.
    pub(crate) fn name(self) -> &'static str {
        self.kind().name()
    }
}

/// A provider simbulk knows the addresses of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Provider {
    /// Eseye's Infinity SIM API (sim.api.anynetiot.com; tokens from its Cognito domain).
    Eseye,
    /// Twilio Super SIM (supersim.twilio.com): --client-id is the Account SID, the secret its
    /// auth token (HTTP Basic; no token endpoint).
    Twilio,
    /// emnify (cdn.emnify.net): the secret is the application token (no client id needed);
    /// devices' changes go in bulk updates.
    Emnify,
}

impl Provider {
    /// The base URL and the token URL in `region`.
    fn urls(self, region: &str) -> (String, String) {
        match self {
            Provider::Eseye => (
                "https://sim.api.anynetiot.com".into(),
                format!("https://eseye-idp-prod.auth.{region}.amazoncognito.com/oauth2/token"),
            ),
            // No token endpoint: every call carries the account's Basic credentials.
            Provider::Twilio => (
                "https://supersim.twilio.com".into(),
                "https://supersim.twilio.com".into(),
            ),
            Provider::Emnify => (
                "https://cdn.emnify.net".into(),
                "https://cdn.emnify.net/api/v1/authenticate".into(),
            ),
        }
    }
}

/// A cloud region name: lowercase letters, digits and dashes (e.g. eu-west-1).
fn parse_region(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ok.then(|| s.to_owned())
        .ok_or_else(|| format!("{s:?} is not a region name (e.g. eu-west-1)"))
}

/// `--wire-suspend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum WireSuspend {
    Bool,
    YesNo,
}

/// `--wire-attribute-name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum WireName {
    Name,
    Key,
}

/// Longest secret file read.
const MAX_SECRET_FILE: u64 = 64 << 10;

/// Why the connection settings do not describe an endpoint.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SettingsError {
    /// Every missing setting, in one message.
    #[error("missing settings: {}", .0.join("; "))]
    Missing(Vec<&'static str>),
    #[error(transparent)]
    Url(#[from] crate::api::SetupError),
    #[error(transparent)]
    File(#[from] crate::files::Error),
    #[error("--client-secret-file {} {reason}", path.display())]
    Secret { path: PathBuf, reason: &'static str },
    #[error("--client-secret-command: {0}")]
    Command(String),
}

const NO_BASE: &str =
    "the API address (--base-url or SIMBULK_BASE_URL, --provider, or a profile's base-url)";
const NO_ID: &str = "the client id (--client-id or SIMBULK_CLIENT_ID, or a profile's client-id)";
const NO_SECRET: &str =
    "the client secret (SIMBULK_CLIENT_SECRET, --client-secret-file or --client-secret-command)";

/// Longest time a secret command may take.
const SECRET_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The secret, from `--client-secret-file` (a bounded regular file, its first line) or
/// `SIMBULK_CLIENT_SECRET`; `None` when neither gives one.
fn read_secret(file: Option<&Path>) -> Result<Option<SecretString>, SettingsError> {
    let Some(p) = file else {
        return Ok(std::env::var("SIMBULK_CLIENT_SECRET")
            .ok()
            .filter(|s| !s.is_empty())
            .map(SecretString::from));
    };
    let bytes = crate::files::read_regular(p, "--client-secret-file", MAX_SECRET_FILE)?;
    let refuse = |reason| SettingsError::Secret {
        path: p.to_owned(),
        reason,
    };
    if crate::files::readable_by_others(p) {
        return Err(refuse(
            "can be read by other users; make it private first: chmod 600 it",
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| refuse("is not UTF-8 text"))?;
    let first = text.lines().next().unwrap_or("").trim().to_owned();
    if first.is_empty() {
        return Err(refuse("is empty"));
    }
    Ok(Some(SecretString::from(first)))
}

/// The API endpoint the connection flags describe, with the secret read in. Every missing
/// setting is named at once.
pub(crate) fn endpoint(c: &ConnectionArgs, timeout: Duration) -> Result<Endpoint, SettingsError> {
    let preset = c.provider.map(|p| p.urls(&c.region));
    let base = c
        .base_url
        .clone()
        .or_else(|| preset.as_ref().map(|p| p.0.clone()));
    let secret = match &c.client_secret_command {
        Some(cmd) => Some(secret_from_command(cmd)?),
        None => read_secret(c.client_secret_file.as_deref())?,
    };
    // emnify authenticates with the application token alone.
    let client_id = c
        .client_id
        .clone()
        .or_else(|| (c.api() == crate::api::Api::Emnify).then(|| "application-token".to_owned()));
    let (Some(base), Some(client_id), Some(client_secret)) =
        (base.as_deref(), client_id.clone(), secret)
    else {
        let missing = [
            (base.is_none(), NO_BASE),
            (client_id.is_none(), NO_ID),
            (
                c.client_secret_file.is_none()
                    && c.client_secret_command.is_none()
                    && std::env::var("SIMBULK_CLIENT_SECRET").map_or(true, |s| s.is_empty()),
                NO_SECRET,
            ),
        ];
        return Err(SettingsError::Missing(
            missing
                .into_iter()
                .filter(|(m, _)| *m)
                .map(|(_, w)| w)
                .collect(),
        ));
    };
    let base_url = check_url("--base-url", base)?;
    let given = match c.api() {
        // emnify's authenticate is beside its API, wherever --base-url points.
        crate::api::Api::Emnify => c.token_url.clone().or_else(|| {
            Some(format!(
                "{}/api/v1/authenticate",
                base.trim_end_matches('/')
            ))
        }),
        _ => c.token_url.clone().or_else(|| preset.map(|p| p.1)),
    };
    let token_url_guessed = given.is_none();
    let token_url = match given {
        Some(t) => check_url("--token-url", &t)?,
        None => check_url(
            "--token-url",
            &format!("{}/oauth2/token", base.trim_end_matches('/')),
        )?,
    };
    Ok(Endpoint {
        base_url,
        token_url,
        client_id,
        client_secret,
        timeout,
        ca_bundle: c.ca_bundle.clone(),
        wire: crate::api::wire::Wire {
            suspend: match c.wire_suspend {
                WireSuspend::Bool => crate::api::wire::SuspendForm::Bool,
                WireSuspend::YesNo => crate::api::wire::SuspendForm::YesNo,
            },
            attribute_name: match c.wire_attribute_name {
                WireName::Name => crate::api::wire::NameForm::Name,
                WireName::Key => crate::api::wire::NameForm::Key,
            },
        },
        token_url_guessed,
        api: c.api(),
    })
}

/// The secret a command prints on its first line (`sh -c COMMAND`, within
/// [`SECRET_COMMAND_TIMEOUT`], its output bounded); the command's own words never reach a
/// message (they may hold the secret).
fn secret_from_command(cmd: &str) -> Result<SecretString, SettingsError> {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    let fail = |why: String| SettingsError::Command(why);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| fail(format!("cannot start sh: {e}")))?;
    let mut out = Vec::new();
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        if let Some(s) = stdout {
            let _ = s.take(MAX_SECRET_FILE).read_to_end(&mut out);
        }
        out
    });
    let started = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if started.elapsed() > SECRET_COMMAND_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "did not finish within {}s",
                    SECRET_COMMAND_TIMEOUT.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(fail(format!("cannot wait for it: {e}"))),
        }
    };
    let out = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(fail(format!("exited with {status}")));
    }
    let text = String::from_utf8(out).map_err(|_| fail("printed text that is not UTF-8".into()))?;
    let first = text.lines().next().unwrap_or("").trim().to_owned();
    if first.is_empty() {
        return Err(fail("printed nothing".into()));
    }
    Ok(SecretString::from(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_spells_each_action_as_the_input_does() {
        for a in ActionArg::value_variants() {
            let flag = a.to_possible_value().unwrap();
            assert_eq!(flag.get_name(), a.name());
            assert_eq!(ActionKind::parse(flag.get_name()), Some(a.kind()));
        }
    }

    #[test]
    fn rate_accepts_numbers_zero_and_unlimited() {
        assert_eq!(parse_rate("10"), Ok(Rate(Some(10.0))));
        assert_eq!(parse_rate("0"), Ok(Rate(None)));
        assert_eq!(parse_rate("unlimited"), Ok(Rate(None)));
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn numeric_values_are_range_checked_with_a_message() {
        assert!(
            parse_rate("1e-20")
                .unwrap_err()
                .contains("one request an hour")
        );
        assert!(parse_rate("1e-9").is_err());
        assert!(parse_rate("nan").is_err() && parse_rate("inf").is_err());
        assert!(parse_concurrency("0").unwrap_err().contains("from 1 to"));
        assert!(parse_concurrency("99999999999999999999").is_err());
        assert!(parse_timeout("0s").is_err() && parse_timeout("2h").is_err());
        assert!(parse_duration("1000000y").is_err());
    }
}
