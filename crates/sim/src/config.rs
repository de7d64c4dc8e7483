//! The simulator's configuration: the contract's knobs, its clients and its faults.
//!
//! Guarantees: [`SimConfig::default`] is the contract's documented default
//! (`x-simulator-knobs` in `openapi.yaml`), with every fault off.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A permission a client may hold (the contract's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Permission {
    #[serde(rename = "iccGet")]
    /// Read SIMs.
    IccGet,
    #[serde(rename = "iccUpdate")]
    /// Change SIMs.
    IccUpdate,
    #[serde(rename = "iccAttributeGet")]
    /// Read attributes.
    IccAttributeGet,
    #[serde(rename = "iccAttributeCreate")]
    /// Create attributes.
    IccAttributeCreate,
    #[serde(rename = "iccAttributeUpdate")]
    /// Change attributes.
    IccAttributeUpdate,
    #[serde(rename = "iccAttributeDelete")]
    /// Delete attributes.
    IccAttributeDelete,
}

impl Permission {
    pub(crate) const ALL: [Permission; 6] = [
        Permission::IccGet,
        Permission::IccUpdate,
        Permission::IccAttributeGet,
        Permission::IccAttributeCreate,
        Permission::IccAttributeUpdate,
        Permission::IccAttributeDelete,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Permission::IccGet => "iccGet",
            Permission::IccUpdate => "iccUpdate",
            Permission::IccAttributeGet => "iccAttributeGet",
            Permission::IccAttributeCreate => "iccAttributeCreate",
            Permission::IccAttributeUpdate => "iccAttributeUpdate",
            Permission::IccAttributeDelete => "iccAttributeDelete",
        }
    }

    /// The permission of its contract name (`iccGet`, …).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
    }
}

/// One API client (service account) the simulator knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The OAuth2 client id.
    pub id: String,
    /// A simulator's demo credential, printed on start-up by design.
    pub secret: String,
    /// The root of the client's sphere: this portfolio and its children.
    pub portfolio: String,
    /// What the client may do.
    pub permissions: Vec<Permission>,
}

impl ClientConfig {
    /// Parses `ID:SECRET:PORTFOLIO[:PERM,PERM…]` (no permissions = all of them).
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.splitn(4, ':').collect();
        if parts.len() < 3 || parts[..3].iter().any(|p| p.is_empty()) {
            return Err(format!(
                "client {s:?} is not ID:SECRET:PORTFOLIO[:PERMISSION,…]"
            ));
        }
        let permissions = match parts.get(3) {
            None | Some(&"") => Permission::ALL.to_vec(),
            Some(list) => list
                .split(',')
                .map(|p| {
                    Permission::parse(p.trim()).ok_or_else(|| {
                        format!(
                            "unknown permission {p:?}; known: iccGet, iccUpdate, iccAttributeGet, iccAttributeCreate, iccAttributeUpdate, iccAttributeDelete"
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Self {
            id: parts[0].to_owned(),
            secret: parts[1].to_owned(),
            portfolio: parts[2].to_owned(),
            permissions,
        })
    }
}

/// The demo client the README documents.
pub const DEMO_CLIENT_ID: &str = "sim-demo-client";
/// The demo client's secret (a simulator credential, not a real one).
pub const DEMO_CLIENT_SECRET: &str = "s3cr3t-demo";

/// How an apply-then-fail fault reports after committing the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterApply {
    /// A 503 or a dropped connection, half and half.
    #[default]
    Mixed,
    /// Always a 503.
    Status,
    /// Always a dropped connection.
    Drop,
}

/// Fault injection; every rate is a probability per `/api/v2` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FaultConfig {
    /// Added to every `/api/v2` response.
    #[serde(with = "millis")]
    pub latency: Duration,
    /// A uniformly random extra delay in `[0, spread)`.
    #[serde(with = "millis")]
    pub latency_spread: Duration,
    /// Share of `/api/v2` requests answered 500.
    pub http500: f64,
    /// Share answered 502.
    pub http502: f64,
    /// Share answered 503.
    pub http503: f64,
    /// Share answered 504.
    pub http504: f64,
    /// Close the connection without a response, before anything is applied.
    pub drop: f64,
    /// Commit a write, then answer 503 or drop the connection.
    pub apply_then_fail: f64,
    /// How an `apply_then_fail` write fails after it is committed.
    pub after_apply: AfterApply,
    /// Hold the response for `slow_duration` (to go past a client's timeout).
    pub slow: f64,
    #[serde(with = "millis")]
    /// How long a `slow` response is held.
    pub slow_duration: Duration,
    /// Revoke every token of the calling client on this share of requests.
    pub revoke: f64,
    /// Revoke every token of every client at this period.
    #[serde(with = "opt_ms")]
    pub revoke_every: Option<Duration>,
    /// Share of token requests answered 503.
    pub token_failure: f64,
    /// Share of `/api/v2` requests answered 429 whatever the rate (a provider that is
    /// throttling), with `Retry-After: throttle_retry_after` seconds.
    pub http429: f64,
    /// The `Retry-After` seconds of an `http429` answer.
    pub throttle_retry_after: u64,
    /// Added to every token request (a slow identity provider).
    #[serde(with = "millis")]
    pub token_latency: Duration,
    /// The list (`GET /api/v2/sim`) shows each SIM as it was this long ago: a list behind
    /// an index that lags writes (the SIM's own GET and PATCH answers are current).
    #[serde(with = "millis")]
    pub list_lag: Duration,
    /// The list honours only the first of repeated `iccId` values.
    pub list_first_iccid_only: bool,
    /// Share of SIMs the list leaves out whatever the filter (not yet indexed): the same
    /// SIMs on every call, chosen by their ICCID.
    pub list_omit: f64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            latency_spread: Duration::ZERO,
            http500: 0.0,
            http502: 0.0,
            http503: 0.0,
            http504: 0.0,
            drop: 0.0,
            apply_then_fail: 0.0,
            after_apply: AfterApply::Mixed,
            slow: 0.0,
            slow_duration: Duration::from_secs(30),
            revoke: 0.0,
            revoke_every: None,
            token_failure: 0.0,
            http429: 0.0,
            throttle_retry_after: 1,
            token_latency: Duration::ZERO,
            list_lag: Duration::ZERO,
            list_first_iccid_only: false,
            list_omit: 0.0,
        }
    }
}

impl FaultConfig {
    /// True when a request may need a random draw.
    pub(crate) fn any_random(&self) -> bool {
        self.http500
            + self.http502
            + self.http503
            + self.http504
            + self.drop
            + self.slow
            + self.apply_then_fail
            + self.revoke
            + self.token_failure
            + self.http429
            > 0.0
            || !self.latency_spread.is_zero()
    }
}

/// Which provider's API the simulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Provider {
    /// Eseye's Infinity SIM API v2 (`docs/sim-api`).
    #[default]
    Eseye,
    /// Twilio's Super SIM API (`docs/providers/twilio-supersim.md`).
    Twilio,
    /// emnify's REST API (`docs/providers/emnify.md`).
    Emnify,
}

impl Provider {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Eseye => "eseye",
            Provider::Twilio => "twilio",
            Provider::Emnify => "emnify",
        }
    }

    /// The provider of its name (`eseye`, `twilio`, `emnify`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "eseye" => Some(Provider::Eseye),
            "twilio" => Some(Provider::Twilio),
            "emnify" => Some(Provider::Emnify),
            _ => None,
        }
    }
}

/// Everything the simulator needs to start.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Whose API it serves.
    pub provider: Provider,
    /// Where to listen (`127.0.0.1:0`: a free loopback port).
    pub addr: SocketAddr,
    /// The seed of the fleet (the same seed, the same SIMs).
    pub seed: u64,
    /// SIMs in the fleet.
    pub sims: usize,
    /// Requests per second per client over `/api/v2/*`; 0 turns the limit off.
    pub rate_limit_per_second: u32,
    /// Requests a client may send at once above its rate.
    pub rate_limit_burst: u32,
    /// Token requests per minute per client; 0 turns the limit off.
    pub token_endpoint_per_minute: u32,
    /// Send `Retry-After` with a 429.
    pub retry_after_header: bool,
    /// Send `Retry-After` as an HTTP date instead of seconds (as some gateways do).
    pub retry_after_http_date: bool,
    /// How long a token lives.
    pub token_ttl: Duration,
    /// Refuse a change to the state a SIM is already in (as some providers do).
    pub strict_no_op: bool,
    /// How long an activation stays `pendingProvision`.
    pub activation_delay: Duration,
    /// How long after a suspension an unsuspend is refused.
    pub suspend_settle: Duration,
    /// Accept attribute writes on a suspended SIM.
    pub attribute_writes_on_suspended: bool,
    /// The OAuth2 clients the simulator knows.
    pub clients: Vec<ClientConfig>,
    /// The faults it injects.
    pub faults: FaultConfig,
    /// Where the fleet is saved at stop and loaded at start (none: from the seed each time).
    pub state_file: Option<PathBuf>,
    /// Ledger entries kept in memory (the oldest are dropped past it and counted).
    pub ledger_limit: usize,
    /// Super SIM: how long an accepted status or Fleet update shows `scheduled`.
    pub settle_delay: Duration,
    /// Super SIM: requests a client may have in flight at once (more: 429 / 20429); 0 is
    /// no limit.
    pub concurrent_limit: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            provider: Provider::Eseye,
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            seed: 1,
            sims: 10_000,
            rate_limit_per_second: 10,
            rate_limit_burst: 20,
            token_endpoint_per_minute: 30,
            retry_after_header: true,
            retry_after_http_date: false,
            token_ttl: Duration::from_secs(3600),
            strict_no_op: true,
            activation_delay: Duration::ZERO,
            suspend_settle: Duration::ZERO,
            attribute_writes_on_suspended: false,
            clients: default_clients(),
            faults: FaultConfig::default(),
            state_file: None,
            ledger_limit: 2_000_000,
            settle_delay: Duration::from_secs(2),
            concurrent_limit: 0,
        }
    }
}

impl SimConfig {
    /// A configuration for tests and benchmarks: port 0, no limits, no faults.
    pub fn unlimited(sims: usize) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            sims,
            rate_limit_per_second: 0,
            token_endpoint_per_minute: 0,
            ..Self::default()
        }
    }
}

/// The built-in clients: the demo client, a read-only one and one of another tenant.
pub fn default_clients() -> Vec<ClientConfig> {
    vec![
        ClientConfig {
            id: DEMO_CLIENT_ID.into(),
            secret: DEMO_CLIENT_SECRET.into(),
            portfolio: "pf-acme".into(),
            permissions: Permission::ALL.to_vec(),
        },
        ClientConfig {
            id: "sim-readonly-client".into(),
            secret: "s3cr3t-readonly".into(),
            portfolio: "pf-acme".into(),
            permissions: vec![Permission::IccGet, Permission::IccAttributeGet],
        },
        ClientConfig {
            id: "sim-other-client".into(),
            secret: "s3cr3t-other".into(),
            portfolio: "pf-other-co".into(),
            permissions: Permission::ALL.to_vec(),
        },
    ]
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod opt_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_spec_parses_with_and_without_permissions() {
        let c = ClientConfig::parse("a:b:pf-acme").unwrap();
        assert_eq!(c.permissions.len(), 6);
        let c = ClientConfig::parse("a:b:pf-acme:iccGet,iccUpdate").unwrap();
        assert_eq!(
            c.permissions,
            vec![Permission::IccGet, Permission::IccUpdate]
        );
        assert!(ClientConfig::parse("a:b").is_err());
        assert!(ClientConfig::parse("a:b:c:nope").is_err());
    }
}
