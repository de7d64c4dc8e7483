//! `simbulk sim`: the simulator as a server, for rehearsals, tests and benchmarks; its flags
//! and their conversion into a [`SimConfig`](crate::sim::SimConfig).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::error::{CliError, Outcome};
use crate::exit;

use super::args::parse_duration;

#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Whose API to serve: eseye (the SIM API v2), twilio (Super SIM: Basic auth with the
    /// printed Account SID and auth token, updates that settle after --settle-delay) or
    /// emnify (the client secret is the application token; SIMs, endpoints, bulk updates).
    #[arg(long, default_value = "eseye", value_parser = parse_provider)]
    pub(crate) provider: crate::sim::Provider,

    /// Address to listen on; port 0 picks a free port. The address is printed on stdout's
    /// first line.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) addr: SocketAddr,

    /// Seed for the SIMs and for every random fault decision.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,

    /// Number of seeded SIMs (at most ten million).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub(crate) sims: u64,

    /// Requests per second per client over /api/v2 (0 = no limit).
    #[arg(long, default_value_t = 10, help_heading = "Limits")]
    pub(crate) rate_limit: u32,

    /// Burst of the per-client token bucket.
    #[arg(long, default_value_t = 20, help_heading = "Limits")]
    pub(crate) rate_burst: u32,

    /// Token requests per minute per client (0 = no limit).
    #[arg(long, default_value_t = 30, help_heading = "Limits")]
    pub(crate) token_per_minute: u32,

    /// Send 429s without a Retry-After header.
    #[arg(long, help_heading = "Limits")]
    pub(crate) no_retry_after: bool,

    /// Send Retry-After as an HTTP date instead of whole seconds.
    #[arg(long, help_heading = "Limits")]
    pub(crate) retry_after_date: bool,

    /// Token lifetime.
    #[arg(long, default_value = "1h", value_parser = parse_duration, help_heading = "Limits")]
    pub(crate) token_ttl: Duration,

    /// Answer 200 (not 400 / 6047) to a PATCH that changes nothing.
    #[arg(long, help_heading = "Behaviour")]
    pub(crate) lenient_no_op: bool,

    /// Activations answer pendingProvision and become active after this delay.
    #[arg(long, default_value = "0s", value_parser = parse_duration, help_heading = "Behaviour")]
    pub(crate) activation_delay: Duration,

    /// After a suspend, unsuspending is refused (6046) for this long.
    #[arg(long, default_value = "0s", value_parser = parse_duration, help_heading = "Behaviour")]
    pub(crate) suspend_settle: Duration,

    /// Allow attribute writes on suspended SIMs (refused with 16000 by default).
    #[arg(long, help_heading = "Behaviour")]
    pub(crate) attribute_writes_on_suspended: bool,

    /// Demo client id.
    #[arg(long, default_value = crate::sim::DEMO_CLIENT_ID, help_heading = "Clients")]
    pub(crate) client_id: String,

    /// Demo client secret (a simulator credential; printed on start-up).
    #[arg(long, default_value = crate::sim::DEMO_CLIENT_SECRET, help_heading = "Clients")]
    pub(crate) client_secret: String,

    /// Another client, as ID:SECRET:PORTFOLIO[:PERMISSION,…] (repeatable).
    #[arg(long = "client", help_heading = "Clients")]
    pub(crate) clients: Vec<String>,

    /// Latency added to every /api/v2 response.
    #[arg(long, default_value = "0ms", value_parser = parse_duration, help_heading = "Faults")]
    pub(crate) latency: Duration,

    /// Random extra latency, uniform in [0, spread).
    #[arg(long, default_value = "0ms", value_parser = parse_duration, help_heading = "Faults")]
    pub(crate) latency_spread: Duration,

    /// Share of requests answered 500.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub(crate) http500: f64,
    /// Share of requests answered 502 (HTML body, like a gateway).
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub(crate) http502: f64,
    /// Share of requests answered 503.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub(crate) http503: f64,
    /// Share of requests answered 504 (HTML body).
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub(crate) http504: f64,

    /// Share of requests whose connection is closed without a response, before any change.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub(crate) drop: f64,

    /// Share of writes that are applied and then answered 503 or dropped.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub(crate) apply_then_fail: f64,

    /// How apply-then-fail answers: mixed, status (503) or drop.
    #[arg(long, default_value = "mixed", help_heading = "Faults")]
    pub(crate) after_apply: String,

    /// Share of requests held for --slow-duration before they are processed.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub(crate) slow: f64,

    /// How long a slow request is held.
    #[arg(long, default_value = "30s", value_parser = parse_duration, help_heading = "Faults")]
    pub(crate) slow_duration: Duration,

    /// Share of requests after which the caller's tokens are revoked.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub(crate) revoke: f64,

    /// Revoke every token at this period.
    #[arg(long, value_parser = parse_duration, help_heading = "Faults")]
    pub(crate) revoke_every: Option<Duration>,

    /// Share of token requests answered 503.
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub(crate) token_failure: f64,

    /// Latency added to every token request (a slow identity provider).
    #[arg(long, default_value = "0ms", value_parser = parse_duration, help_heading = "Faults")]
    pub(crate) token_latency: Duration,

    /// The list shows each SIM as it was this long ago (an index that lags writes).
    #[arg(long, default_value = "0ms", value_parser = parse_duration, help_heading = "Lists")]
    pub(crate) list_lag: Duration,

    /// The list honours only the first of repeated iccId values.
    #[arg(long, help_heading = "Lists")]
    pub(crate) list_first_iccid_only: bool,

    /// Share of SIMs the list leaves out (not yet indexed; the same SIMs every time).
    #[arg(long, default_value_t = 0.0, help_heading = "Lists")]
    pub(crate) list_omit: f64,

    /// Share of /api/v2 requests answered 429 whatever the rate (a throttling provider).
    #[arg(long, default_value_t = 0.0, help_heading = "Faults")]
    pub(crate) http429: f64,

    /// Retry-After, in seconds, of the 429s that --http429 injects.
    #[arg(long, default_value_t = 1, help_heading = "Faults")]
    pub(crate) throttle_retry_after: u64,

    /// Super SIM: how long an accepted status or Fleet update shows `scheduled`.
    #[arg(long, default_value = "2s", value_parser = parse_duration, help_heading = "Behaviour")]
    pub(crate) settle_delay: Duration,

    /// Super SIM: requests a client may have in flight at once (more are answered 429 /
    /// 20429); 0 = no limit.
    #[arg(long, default_value_t = 0, help_heading = "Limits")]
    pub(crate) concurrent_limit: usize,

    /// Keep SIMs, attributes and the ledger in this file across restarts.
    #[arg(long)]
    pub(crate) state_file: Option<PathBuf>,

    /// Ledger entries kept in memory (about 430 bytes each); older ones are dropped and counted.
    #[arg(long, default_value_t = 2_000_000)]
    pub(crate) ledger_limit: usize,
}

impl SimArgs {
    /// The simulator configuration these flags describe.
    pub(crate) fn to_config(&self) -> Result<crate::sim::SimConfig, String> {
        use crate::sim::{AfterApply, ClientConfig, FaultConfig, SimConfig};
        let rates = [
            self.http500,
            self.http502,
            self.http503,
            self.http504,
            self.drop,
            self.apply_then_fail,
            self.slow,
            self.revoke,
            self.token_failure,
            self.http429,
        ];
        if rates.iter().any(|r| !(0.0..=1.0).contains(r)) {
            return Err("fault rates are shares between 0 and 1 (e.g. --http503 0.05)".into());
        }
        let after_apply = match self.after_apply.as_str() {
            "mixed" => AfterApply::Mixed,
            "status" => AfterApply::Status,
            "drop" => AfterApply::Drop,
            other => {
                return Err(format!(
                    "--after-apply {other:?}: use mixed, status or drop"
                ));
            }
        };
        let mut clients = crate::sim::default_clients();
        clients[0].id = self.client_id.clone();
        clients[0].secret = self.client_secret.clone();
        for c in &self.clients {
            clients.push(ClientConfig::parse(c)?);
        }
        Ok(SimConfig {
            provider: self.provider,
            addr: self.addr,
            seed: self.seed,
            sims: self.sims as usize,
            rate_limit_per_second: self.rate_limit,
            rate_limit_burst: self.rate_burst,
            token_endpoint_per_minute: self.token_per_minute,
            retry_after_header: !self.no_retry_after,
            retry_after_http_date: self.retry_after_date,
            token_ttl: self.token_ttl,
            strict_no_op: !self.lenient_no_op,
            activation_delay: self.activation_delay,
            suspend_settle: self.suspend_settle,
            attribute_writes_on_suspended: self.attribute_writes_on_suspended,
            clients,
            faults: FaultConfig {
                latency: self.latency,
                latency_spread: self.latency_spread,
                http500: self.http500,
                http502: self.http502,
                http503: self.http503,
                http504: self.http504,
                drop: self.drop,
                apply_then_fail: self.apply_then_fail,
                after_apply,
                slow: self.slow,
                slow_duration: self.slow_duration,
                revoke: self.revoke,
                revoke_every: self.revoke_every,
                token_failure: self.token_failure,
                http429: self.http429,
                throttle_retry_after: self.throttle_retry_after,
                token_latency: self.token_latency,
                list_lag: self.list_lag,
                list_first_iccid_only: self.list_first_iccid_only,
                list_omit: self.list_omit,
            },
            state_file: self.state_file.clone(),
            ledger_limit: self.ledger_limit,
            settle_delay: self.settle_delay,
            concurrent_limit: self.concurrent_limit,
        })
    }
}

fn parse_provider(s: &str) -> Result<crate::sim::Provider, String> {
    crate::sim::Provider::parse(s).ok_or_else(|| format!("{s:?}: use eseye, twilio or emnify"))
}

/// `simbulk sim`: serves the simulator until a signal.
pub(crate) async fn run(args: SimArgs) -> Outcome {
    let cfg = args.to_config().map_err(CliError::usage)?;
    let client = cfg.clients[0].clone();
    let (sims, seed, provider) = (cfg.sims, cfg.seed, cfg.provider);
    let server = crate::sim::SimServer::start(cfg)
        .await
        .map_err(|e| CliError::usage(format_args!("{e:#}")))?;
    let credentials = match provider {
        crate::sim::Provider::Eseye => format!(
            "client id:     {}\nclient secret: {}",
            client.id, client.secret
        ),
        crate::sim::Provider::Twilio => format!(
            "account sid:   {}\nauth token:    {}",
            crate::sim::twilio_account_sid(&client.id),
            client.secret
        ),
        crate::sim::Provider::Emnify => format!("application token: {}", client.secret),
    };
    crate::output::stdout::print(&format!(
        "{}\n{credentials}\nsims: {sims} (seed {seed}); stats at {}/__sim/stats, ledger at {}/__sim/ledger\n",
        server.base_url(),
        server.base_url(),
        server.base_url()
    ));
    crate::signal::first().await;
    tracing::info!("stopping the simulator");
    server
        .stop()
        .await
        .map_err(|e| CliError::halted(format_args!("saving the simulator state failed: {e:#}")))?;
    Ok(exit::OK)
}
