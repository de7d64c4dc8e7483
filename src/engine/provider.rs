//! The one way a command reaches a provider: [`Provider::connect`] builds the pacer (drawing
//! from the account's shared budget when there is one), the HTTP client (TLS, proxy rule,
//! token cache), the retry policy, and checks the credentials before anything else is sent.
//! `run` (and preview), `apply` (its planning reads, its run and its check after), `export`
//! and `verify` all connect here, so a flag such as `--burst` or the shared budget reaches
//! every call a command makes.
//!
//! Behind the provider: the operations the engine needs (read a window of SIMs, read one,
//! apply a change, its attributes — the client's typed calls) and what the provider offers
//! ([`Capabilities`]); Eseye's SIM API v2 is the first implementation.
//!
//! Guarantees: a budget that cannot be reached, refused credentials or an unreachable API
//! are errors before any request for a row; a job is named by what it works on (a
//! checkpoint, a file), so a resumed run — or `apply`'s run after its own planning reads —
//! takes over its lease instead of sharing with a ghost; the endpoint (and its secret) is
//! resolved once per process by the caller and only borrowed here.

use std::num::NonZeroU32;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, Client, Endpoint, Pacer, SetupError};
use crate::quota::{Budget, QuotaConfig, QuotaError};

use super::retry::RetryPolicy;

/// How calls are paced: the rate, burst and 429 behaviour asked for, and the account's
/// shared budget to draw from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pacing {
    /// Requests per second (`None`: no limit).
    pub(crate) rate: Option<f64>,
    pub(crate) burst: NonZeroU32,
    /// Lower the rate on 429s and climb back (off: `--fixed-rate`).
    pub(crate) adaptive: bool,
    /// The account's shared budget to draw from (`None`: pace alone).
    pub(crate) quota: Option<QuotaConfig>,
}

impl Default for Pacing {
    /// `simbulk run`'s: 10 requests a second, the default burst, adaptive, drawing from the
    /// account's budget on this host.
    fn default() -> Self {
        Self {
            quota: Some(QuotaConfig::on_this_host()),
            ..Self::alone(Some(10.0))
        }
    }
}

impl Pacing {
    /// `rate` with the default burst, adaptive, outside any shared budget.
    pub(crate) fn alone(rate: Option<f64>) -> Self {
        Self {
            rate,
            burst: crate::api::pace::default_burst(rate),
            adaptive: true,
            quota: None,
        }
    }
}

/// What a provider offers, for the stages that plan around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Capabilities {
    /// Most SIMs one list call can be asked for (by ICCID).
    pub(crate) max_batch_read: usize,
    /// Whether one call can change several SIMs.
    pub(crate) batch_writes: bool,
    /// Whether a change may settle later (an activation answering `pendingProvision`).
    pub(crate) settles_async: bool,
    /// Whether an ICCID must be looked up to the provider's own id before a call.
    pub(crate) needs_id_lookup: bool,
}

impl Capabilities {
    /// Eseye's SIM API v2: lists of up to 100 ICCIDs, one SIM per write, activations that
    /// settle later, ICCIDs as ids.
    pub(crate) const ESEYE_V2: Self = Self {
        max_batch_read: 100,
        batch_writes: false,
        settles_async: true,
        needs_id_lookup: false,
    };

    /// Twilio Super SIM: one SIM per read (its list filters one ICCID), one per write, every
    /// status change settling later (`scheduled`), SIDs looked up from ICCIDs.
    pub(crate) const SUPER_SIM: Self = Self {
        max_batch_read: 1,
        batch_writes: false,
        settles_async: true,
        needs_id_lookup: true,
    };

    /// emnify: one device per read (its list filters one ICCID), endpoint changes in bulk
    /// (2,000 a call), answers that are the change, internal ids looked up from ICCIDs.
    pub(crate) const EMNIFY: Self = Self {
        max_batch_read: 1,
        batch_writes: true,
        settles_async: false,
        needs_id_lookup: true,
    };
}

/// The actions the provider `api` speaks cannot do, each with the reason its rows are
/// invalid (decided when a row is read, before any call).
pub(crate) fn unsupported(api: crate::api::Api) -> Vec<(crate::input::ActionKind, &'static str)> {
    use crate::api::super_sim as s;
    use crate::input::ActionKind as K;
    match api {
        crate::api::Api::EseyeV2 => Vec::new(),
        crate::api::Api::SuperSim => vec![
            (K::Deactivate, s::NO_DEACTIVATE),
            (K::SetPackage, s::NO_PACKAGE),
            (K::SetPortfolio, s::NO_PORTFOLIO),
            (K::SetAttribute, s::NO_ATTRIBUTES),
            (K::DeleteAttribute, s::NO_ATTRIBUTES),
            (K::Patch, s::NO_PATCH),
        ],
        crate::api::Api::Emnify => {
            use crate::api::emnify as e;
            vec![
                (K::Deactivate, e::NO_DEACTIVATE),
                (K::SetPortfolio, e::NO_PORTFOLIO),
                (K::Patch, e::NO_PATCH),
            ]
        }
    }
}

/// The attribute names the provider `api` speaks takes, and why a row naming another is
/// invalid (`None`: any name).
pub(crate) fn attribute_names(
    api: crate::api::Api,
) -> Option<(&'static [&'static str], &'static str)> {
    use crate::api::emnify as e;
    (api == crate::api::Api::Emnify).then_some((&e::ATTRIBUTE_NAMES[..], e::NO_ATTRIBUTES))
}

/// What [`Provider::connect`] needs besides the endpoint.
pub(crate) struct Connect<'a> {
    pub(crate) pacing: &'a Pacing,
    /// What the command works on (a checkpoint, a file): names its lease in the budget.
    pub(crate) job: String,
    /// Requests in flight at once (the connection pool's size).
    pub(crate) concurrency: usize,
    pub(crate) retry: RetryPolicy,
    /// No request starts once this is cancelled, and every wait ends.
    pub(crate) stop: CancellationToken,
    /// No request starts at or after this instant.
    pub(crate) deadline: Option<tokio::time::Instant>,
}

/// A provider, connected: the client every call goes through, its retry policy, what it
/// offers.
pub(crate) struct Provider {
    pub(crate) client: Arc<Client>,
    pub(crate) retry: RetryPolicy,
    pub(crate) caps: Capabilities,
}

/// Why a provider could not be reached.
#[expect(
    missing_docs,
    reason = "each variant's #[error] message is its documentation, naming its fields"
)]
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The account's shared rate budget cannot be reached.
    #[error(transparent)]
    Budget(#[from] QuotaError),
    /// The client cannot be built (a CA bundle, TLS).
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("{0}; nothing was sent")]
    Credentials(#[source] ApiError),
    #[error(
        "cannot reach the SIM API at {base}: {error}; nothing was sent and no file was changed. Check --base-url and the network, then run again"
    )]
    Unreachable {
        base: String,
        #[source]
        error: ApiError,
    },
    #[error("stopped before the first request; nothing was sent")]
    Stopped,
}

impl Provider {
    /// Builds the pacer, the client and the retry policy for `endpoint`, and gets the first
    /// token: refused credentials or an unreachable API end here.
    pub(crate) async fn connect(endpoint: &Endpoint, c: Connect<'_>) -> Result<Self, ConnectError> {
        let pacer = Arc::new(pacer(c.pacing, endpoint, &c.job).await?);
        let client = match Client::new(endpoint.clone(), pacer.clone(), c.concurrency) {
            Ok(client) => client.with_stop(c.stop, c.deadline),
            Err(e) => {
                leave(&pacer).await;
                return Err(e.into());
            }
        };
        let client = Arc::new(client);
        if endpoint.api == crate::api::Api::Emnify {
            // Every row in flight may wait in one batch: the batch is as large as the
            // concurrency lets it be, up to emnify's limit.
            client.start_batches(c.concurrency);
        }
        let p = Self {
            client,
            retry: c.retry,
            caps: match endpoint.api {
                crate::api::Api::EseyeV2 => Capabilities::ESEYE_V2,
                crate::api::Api::SuperSim => Capabilities::SUPER_SIM,
                crate::api::Api::Emnify => Capabilities::EMNIFY,
            },
        };
        if let Err(e) = p.client.preflight().await {
            p.leave().await;
            return Err(match e {
                ApiError::Interrupted => ConnectError::Stopped,
                e @ (ApiError::Credentials { .. } | ApiError::AccountRefused { .. }) => {
                    ConnectError::Credentials(e)
                }
                error => ConnectError::Unreachable {
                    base: endpoint.base_url.to_string(),
                    error,
                },
            });
        }
        Ok(p)
    }

    /// Leaves the budget the provider's pacer draws from, if any: its share goes to the
    /// others at once.
    pub(crate) async fn leave(&self) {
        leave(&self.client.pacer).await;
    }
}

/// The pacer for `p` against `endpoint`'s account, its lease named by `job`.
async fn pacer(p: &Pacing, endpoint: &Endpoint, job: &str) -> Result<Pacer, QuotaError> {
    let pacer = Pacer::with_adaptation(p.rate, p.burst, p.adaptive);
    let (Some(rate), Some(q)) = (p.rate, p.quota.as_ref()) else {
        return Ok(pacer);
    };
    let account = q.key.clone().unwrap_or_else(|| account_of(endpoint));
    let b = Budget::join(q, &account, job, rate, f64::from(p.burst.get())).await?;
    Ok(pacer.with_shared(Arc::new(b)))
}

/// The account an endpoint's calls count against, for the shared budget: the API and the
/// client id; for emnify, whose application token is the only credential, a digest of it
/// (never the token itself).
fn account_of(endpoint: &Endpoint) -> String {
    use secrecy::ExposeSecret as _;
    use sha2::Digest as _;
    let base = endpoint.base_url.as_str();
    match endpoint.api {
        crate::api::Api::Emnify => {
            let d = sha2::Sha256::digest(endpoint.client_secret.expose_secret().as_bytes());
            let short: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!("{base} application-token:{short}")
        }
        _ => format!("{base} {}", endpoint.client_id),
    }
}

/// Leaves the budget `pacer` draws from, if any.
async fn leave(pacer: &Pacer) {
    if let Some(b) = pacer.shared() {
        b.leave().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(api: crate::api::Api, secret: &str) -> Endpoint {
        let url = crate::api::check_url("test", "http://127.0.0.1:1").unwrap();
        Endpoint {
            base_url: url.clone(),
            token_url: url,
            client_id: "client-1".into(),
            client_secret: secrecy::SecretString::from(secret),
            timeout: std::time::Duration::from_secs(1),
            ca_bundle: None,
            wire: Default::default(),
            token_url_guessed: false,
            api,
        }
    }

    #[test]
    fn an_emnify_budget_is_per_application_token_and_never_names_it() {
        let a = account_of(&endpoint(crate::api::Api::Emnify, "token-one"));
        let b = account_of(&endpoint(crate::api::Api::Emnify, "token-two"));
        assert_ne!(a, b, "two organisations, two budgets");
        assert!(!a.contains("token-one"), "{a}");
        assert_eq!(
            a,
            account_of(&endpoint(crate::api::Api::Emnify, "token-one"))
        );
        let e = account_of(&endpoint(crate::api::Api::EseyeV2, "s"));
        assert!(e.ends_with("client-1"), "{e}");
    }

    #[test]
    fn each_provider_refuses_what_it_cannot_do_and_eseye_nothing() {
        use crate::api::Api;
        use crate::input::ActionKind as K;
        assert!(unsupported(Api::EseyeV2).is_empty());
        let kinds = |api| {
            unsupported(api)
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        for api in [Api::SuperSim, Api::Emnify] {
            let k = kinds(api);
            assert!(
                k.contains(&K::Deactivate) && k.contains(&K::SetPortfolio),
                "{api:?}"
            );
            assert!(
                !k.contains(&K::Suspend) && !k.contains(&K::Activate),
                "{api:?}"
            );
        }
        assert!(kinds(Api::SuperSim).contains(&K::SetPackage));
        assert!(!kinds(Api::Emnify).contains(&K::SetPackage));
    }
}
