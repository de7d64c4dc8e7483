//! The SIM API client: typed endpoints over one pooled HTTP client, with the token cache
//! and the shared pacer in front of every call.
//!
//! Guarantees: every HTTP call (token requests included) waits for the pacer; the token is
//! taken after that wait, so a token never expires while its request queues; a 401 leads to
//! one token refresh and one repeat, never a loop; once the stop token is cancelled or the
//! deadline passed, no request starts, every wait ends at once and reads in flight are
//! abandoned (writes in flight run to their answer, bounded by the timeout); responses are
//! classified into [`ApiError`] from the contract's `errorCode`; no token or secret is ever
//! logged.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::model::{
    Attribute, AttributeCreate, AttributeList, AttributePatch, ErrorBody, OAuthError, Sim, SimPage,
    SimPatch,
};

use super::body::{self, BodyError};
use super::calls::{CallCounts, Calls};
use super::error::{ApiError, SetupError, cut};
use super::pace::{Pacer, parse_retry_after, unless_stopped};
use super::token::{Token, TokenCache};

/// How to reach and authenticate with the API (resolved once per process: a clone shares
/// the secret, read once).
#[derive(Clone)]
pub struct Endpoint {
    /// The API's base URL (`https://…`; `http://` only for loopback).
    pub base_url: Url,
    /// The OAuth2 token endpoint.
    pub token_url: Url,
    /// The OAuth2 client id.
    pub client_id: String,
    /// The OAuth2 client secret (never printed: `Debug` redacts it).
    pub client_secret: SecretString,
    /// The timeout of one HTTP request.
    pub timeout: Duration,
    /// An extra CA bundle (PEM) to trust.
    pub ca_bundle: Option<std::path::PathBuf>,
    /// How request bodies are spelled (the contract's form unless a profile says otherwise).
    pub wire: super::wire::Wire,
    /// The token URL was not given but guessed as `<base-url>/oauth2/token`.
    pub token_url_guessed: bool,
    /// Whose SIM API the base URL serves.
    pub api: Api,
}

/// Whose SIM API an endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Api {
    /// Eseye's SIM API v2 (`docs/sim-api`): OAuth2 tokens, ICCIDs as ids.
    #[default]
    EseyeV2,
    /// Twilio Super SIM (`docs/providers/twilio-supersim.md`): HTTP Basic with the Account SID
    /// and auth token, SIMs by `sid`, form bodies, changes that settle later.
    SuperSim,
    /// emnify (`docs/providers/emnify.md`): an application token for an `auth_token`, devices
    /// (a SIM and its endpoint) by internal ids, endpoint changes in bulk.
    Emnify,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url.as_str())
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .finish()
    }
}

/// A successful reply.
#[derive(Debug, Clone)]
pub(crate) struct Reply<T> {
    pub(crate) value: T,
    pub(crate) status: u16,
    /// When the request that got it left (after pacing): what it says of a SIM is no older.
    pub(crate) sent: std::time::Instant,
}

impl<T> Reply<T> {
    /// The same reply (its status, when it left) carrying `f` of its value.
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Reply<U> {
        Reply {
            value: f(self.value),
            status: self.status,
            sent: self.sent,
        }
    }
}

/// Token-endpoint attempts before a row sees `TokenUnavailable`.
const TOKEN_ATTEMPTS: u32 = 4;

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    endpoint: Endpoint,
    tokens: TokenCache,
    pub(crate) pacer: Arc<Pacer>,
    /// Cancelled when the job stops: no request starts after it, and every wait ends.
    stop: CancellationToken,
    /// No request starts at or after this instant (`--until`, `--max-duration`).
    deadline: Option<tokio::time::Instant>,
    born: std::time::Instant,
    /// Milliseconds after `born` of the last answer that was neither 429 nor 5xx.
    last_useful: std::sync::atomic::AtomicU64,
    calls: Calls,
    /// Super SIM: the SIDs of the ICCIDs looked up so far; emnify: their endpoint ids
    /// (bounded).
    sids: super::super_sim::Sids,
    /// emnify: the batcher rows' changes go through (set once connected).
    batcher: std::sync::OnceLock<super::emnify::Batcher>,
}

impl Client {
    pub(crate) fn new(
        endpoint: Endpoint,
        pacer: Arc<Pacer>,
        pool: usize,
    ) -> Result<Self, SetupError> {
        let mut b = reqwest::Client::builder()
            .timeout(endpoint.timeout)
            .connect_timeout(endpoint.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(pool)
            .tcp_nodelay(true)
            .user_agent(concat!("simbulk/", env!("CARGO_PKG_VERSION")));
        // The environment's proxies are applied by this rule, not reqwest's: plain http (a
        // loopback simulator, the only place it is allowed) and loopback never go through a
        // proxy, so no credential travels in clear to a proxy host; an https target goes
        // through HTTPS_PROXY or ALL_PROXY, in a CONNECT tunnel the proxy cannot read.
        b = b.no_proxy();
        if let Some(rule) = super::url::proxy_rule() {
            b = b.proxy(rule);
        }
        b = b.tls_backend_preconfigured(super::tls::config(endpoint.ca_bundle.as_deref())?);
        let http = b.build().map_err(SetupError::Http)?;
        Ok(Self {
            http,
            base: endpoint.base_url.path().trim_end_matches('/').to_owned(),
            endpoint,
            tokens: TokenCache::default(),
            pacer,
            stop: CancellationToken::new(),
            deadline: None,
            born: std::time::Instant::now(),
            last_useful: std::sync::atomic::AtomicU64::new(0),
            calls: Calls::new(),
            sids: super::super_sim::Sids::default(),
            batcher: std::sync::OnceLock::new(),
        })
    }

    /// Stops the client with `stop`, and at `deadline`.
    pub(crate) fn with_stop(
        mut self,
        stop: CancellationToken,
        deadline: Option<tokio::time::Instant>,
    ) -> Self {
        self.stop = stop;
        self.deadline = deadline;
        self
    }

    /// The token that stops this client.
    pub(crate) fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }

    /// How long since the API last gave an answer that was neither a 429 nor a 5xx (or since
    /// the client was made).
    pub(crate) fn since_useful_answer(&self) -> Duration {
        let ms = self.last_useful.load(std::sync::atomic::Ordering::Relaxed);
        self.born
            .elapsed()
            .saturating_sub(Duration::from_millis(ms))
    }

    /// Answers by class: 2xx, 4xx, 5xx, none.
    pub(crate) fn answer_classes(&self) -> [u64; 4] {
        self.calls.classes()
    }

    /// When the API last answered with neither a 429 nor a 5xx (seconds since the epoch).
    pub(crate) fn last_success(&self) -> Option<f64> {
        let ms = self.last_useful.load(std::sync::atomic::Ordering::Relaxed);
        let ago = self.born.elapsed().checked_sub(Duration::from_millis(ms))?;
        let t = std::time::SystemTime::now().checked_sub(ago)?;
        (ms > 0).then(|| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        })
    }

    fn useful_answer(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.last_useful
            .fetch_max(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// `Interrupted` once the job stops or the deadline has come.
    fn may_start(&self) -> Result<(), ApiError> {
        if self.stop.is_cancelled()
            || self
                .deadline
                .is_some_and(|d| tokio::time::Instant::now() >= d)
        {
            return Err(ApiError::Interrupted);
        }
        Ok(())
    }

    async fn paced(&self) -> Result<(), ApiError> {
        self.pacer
            .ready(&self.stop)
            .await
            .map_err(|_| ApiError::Interrupted)?;
        self.may_start()
    }

    async fn fetch_token(&self) -> Result<(SecretString, Duration), ApiError> {
        let mut last = String::new();
        for attempt in 0..TOKEN_ATTEMPTS {
            self.paced().await?;
            // A token request changes nothing: it is abandoned at once when the job stops.
            let request = self.http.post(self.endpoint.token_url.clone());
            let request = match self.endpoint.api {
                // emnify: the application token in a JSON body.
                Api::Emnify => request.json(&serde_json::json!({
                    "application_token": self.endpoint.client_secret.expose_secret()
                })),
                _ => request
                    .basic_auth(
                        &self.endpoint.client_id,
                        Some(self.endpoint.client_secret.expose_secret()),
                    )
                    .form(&[("grant_type", "client_credentials"), ("scope", "api/api")]),
            };
            let r = unless_stopped(&self.stop, request.send())
                .await
                .map_err(|_| ApiError::Interrupted)?;
            let backoff = Duration::from_millis(250 << attempt);
            let wait = match r {
                Ok(resp) if resp.status().is_success() => {
                    let read = unless_stopped(&self.stop, body::read(resp, body::TOKEN_CAP))
                        .await
                        .map_err(|_| ApiError::Interrupted)?;
                    // A reply that cannot be read or understood may be a passing gateway
                    // problem: it is retried like one.
                    last = match read {
                        Ok(bytes) => match body::token_reply(&bytes) {
                            Ok(t) => {
                                tracing::debug!(ttl = ?t.ttl, "got a token");
                                return Ok((SecretString::from(t.access_token), t.ttl));
                            }
                            Err(why) => why,
                        },
                        Err(BodyError::TooLarge(cap)) => {
                            format!("the token reply is larger than {} KiB", cap >> 10)
                        }
                        Err(BodyError::Transport(e)) => {
                            format!("token endpoint: {}", transport(&e, self.endpoint.timeout))
                        }
                    };
                    backoff
                }
                Ok(resp) if resp.status() == StatusCode::TOO_MANY_REQUESTS => {
                    let ra = retry_after(&resp);
                    last = "token endpoint rate limited (HTTP 429)".into();
                    ra.unwrap_or(Duration::from_secs(1 << attempt))
                }
                Ok(resp) if resp.status().is_client_error() => {
                    return Err(self.token_refusal(resp).await);
                }
                Ok(resp) => {
                    last = format!("token endpoint answered HTTP {}", resp.status().as_u16());
                    backoff
                }
                Err(e) => {
                    last = format!("token endpoint: {}", transport(&e, self.endpoint.timeout));
                    backoff
                }
            };
            tracing::warn!(attempt = attempt + 1, "{last}; retrying in {wait:?}");
            unless_stopped(
                &self.stop,
                tokio::time::sleep(wait.min(Duration::from_secs(60))),
            )
            .await
            .map_err(|_| ApiError::Interrupted)?;
        }
        Err(ApiError::TokenUnavailable { message: last })
    }

    /// A 4xx from the token endpoint: the credentials refused, or (an answer that is not
    /// OAuth's from a URL that was only guessed) most likely not the token endpoint at all.
    async fn token_refusal(&self, resp: reqwest::Response) -> ApiError {
        let status = resp.status().as_u16();
        let Ok(bytes) = unless_stopped(&self.stop, body::read_lossy(resp, body::ERROR_CAP)).await
        else {
            return ApiError::Interrupted;
        };
        let body: Option<OAuthError> = serde_json::from_slice(&bytes).ok();
        let guessed = (self.endpoint.token_url_guessed && body.is_none())
            .then(|| self.endpoint.token_url.to_string());
        ApiError::Credentials {
            error: body.map_or_else(|| format!("HTTP {status}"), |b| cut(&b.error)),
            guessed,
        }
    }

    async fn token(&self) -> Result<Token, ApiError> {
        self.tokens.get(|| self.fetch_token(), &self.stop).await
    }

    /// Whether `e` says the SIM is not in the account (the provider's own "not found"), as
    /// opposed to a call that failed.
    pub(crate) fn is_absent(&self, e: &ApiError) -> bool {
        let not_found = match self.endpoint.api {
            Api::EseyeV2 => crate::model::codes::NOT_FOUND,
            Api::SuperSim => super::super_sim::NOT_FOUND,
            Api::Emnify => super::emnify::NOT_FOUND,
        };
        matches!(e, ApiError::Rejected { code: Some(c), .. } if *c == not_found)
    }

    /// Whether a SIM's attributes are fields that always exist (emnify's endpoint `tags` and
    /// `name`): a write to one is read first, so its value before is known.
    pub(crate) fn attributes_are_fields(&self) -> bool {
        self.endpoint.api == Api::Emnify
    }

    /// Whether the API lists SIMs by a filter of ICCIDs (else each is read on its own).
    pub(crate) fn lists_by_iccid(&self) -> bool {
        self.endpoint.api == Api::EseyeV2
    }

    /// Requests sent so far, by kind.
    pub(crate) fn calls(&self) -> CallCounts {
        self.calls.counts()
    }

    /// How long the API took to answer (request sent to answer's headers): p50, p99 and
    /// max in milliseconds; `None` before the first answer.
    pub(crate) fn answer_latency_ms(&self) -> Option<(f64, f64, f64)> {
        self.calls.answer_latency_ms()
    }

    /// Gets a token now: checks the credentials and the connection before a job starts.
    pub(crate) async fn preflight(&self) -> Result<(), ApiError> {
        match self.endpoint.api {
            Api::EseyeV2 | Api::Emnify => self.token().await.map(|_| ()),
            // No token endpoint: one small read checks the account's credentials.
            Api::SuperSim => {
                let q = [("PageSize", "1".to_owned())];
                match self
                    .call::<(), super::super_sim::SuperSimPage>(
                        Method::GET,
                        "/v1/Sims",
                        &q,
                        None,
                        body::PAGE_CAP,
                    )
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(ApiError::Unauthorized { .. }) => Err(ApiError::AccountRefused {
                        error: "HTTP 401".into(),
                    }),
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
        cap: usize,
    ) -> Result<Reply<T>, ApiError> {
        // Only the path changes between calls: cloning the parsed base and setting the path
        // skips parsing (and IDNA-normalising) the host on every request.
        let mut url = self.endpoint.base_url.clone();
        url.set_path(&format!("{}{path}", self.base));
        // Writes accept any 2xx, with any body or none (201, 204, plain text…): their callers
        // ask for an `Option` and get `None` when the body is not the resource.
        let lenient = method != Method::GET;
        let mut refreshed = false;
        loop {
            // Pacing first, the token after: a token taken before a long wait in the queue
            // could expire before its request leaves.
            self.paced().await?;
            let basic = self.endpoint.api == Api::SuperSim;
            let token = if basic {
                None
            } else {
                Some(self.token().await?)
            };
            self.may_start()?;
            let mut req = self.http.request(method.clone(), url.clone());
            req = match &token {
                Some(t) => req.bearer_auth(t.value.expose_secret()),
                None => req.basic_auth(
                    &self.endpoint.client_id,
                    Some(self.endpoint.client_secret.expose_secret()),
                ),
            };
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(b) = body {
                req = match self.endpoint.wire {
                    _ if basic => req.form(b),
                    w if w.is_contract() => req.json(b),
                    w => req.json(&w.shape(serde_json::to_value(b).unwrap_or_default())),
                };
            }
            self.calls.count(lenient, path == "/api/v2/sim");
            let sent = std::time::Instant::now();
            let resp = self.send(req, lenient).await?;
            let status = resp.status();
            if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
                self.useful_answer();
            }
            let request_id = resp
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(cut);
            if status.is_success() {
                self.pacer.succeeded();
                let value = self.success_body(resp, cap, lenient).await?;
                return Ok(Reply {
                    value,
                    status: status.as_u16(),
                    sent,
                });
            }
            match status {
                StatusCode::UNAUTHORIZED if !refreshed && let Some(token) = &token => {
                    tracing::debug!(?request_id, "401: refreshing the token once");
                    self.tokens.invalidate(token.generation);
                    refreshed = true;
                    continue;
                }
                StatusCode::UNAUTHORIZED => return Err(ApiError::Unauthorized { request_id }),
                StatusCode::TOO_MANY_REQUESTS => {
                    let ra = retry_after(&resp);
                    self.pacer.throttled(ra);
                    return Err(ApiError::RateLimited {
                        retry_after: ra,
                        request_id,
                    });
                }
                _ => return Err(self.refusal(resp, request_id).await),
            }
        }
    }

    /// Sends a request. A read is abandoned when the job stops (it changes nothing); a write
    /// in flight runs to its answer, bounded by the timeout, so its row knows what happened.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        write: bool,
    ) -> Result<reqwest::Response, ApiError> {
        let t0 = std::time::Instant::now();
        let sent = if write {
            req.send().await
        } else {
            unless_stopped(&self.stop, req.send())
                .await
                .map_err(|_| ApiError::Interrupted)?
        };
        match &sent {
            Ok(r) => {
                self.calls.answered(t0.elapsed());
                self.calls.class(Some(r.status().as_u16()));
            }
            Err(_) => self.calls.class(None),
        }
        sent.map_err(|e| classify_transport(&e, self.endpoint.timeout))
    }

    /// The body of a 2xx, read within `cap` and decoded; for a write (`lenient`) a body that
    /// is not the resource, or too large, is `null`.
    async fn success_body<T: DeserializeOwned>(
        &self,
        resp: reqwest::Response,
        cap: usize,
        lenient: bool,
    ) -> Result<T, ApiError> {
        let null =
            || serde_json::from_slice(b"null").map_err(|e| ApiError::Decode(cut(&e.to_string())));
        let read = if lenient {
            body::read(resp, cap).await
        } else {
            unless_stopped(&self.stop, body::read(resp, cap))
                .await
                .map_err(|_| ApiError::Interrupted)?
        };
        let bytes = match read {
            Ok(b) => b,
            Err(BodyError::TooLarge(_)) if lenient => return null(),
            Err(BodyError::TooLarge(cap)) => return Err(ApiError::TooLarge { cap }),
            Err(BodyError::Transport(e)) => {
                return Err(classify_transport(&e, self.endpoint.timeout));
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return null();
        }
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(v),
            Err(_) if lenient => null(),
            Err(e) => Err(ApiError::Decode(cut(&e.to_string()))),
        }
    }

    /// Classifies a 4xx or 5xx from its status and the contract's `errorCode`.
    async fn refusal(&self, resp: reqwest::Response, request_id: Option<String>) -> ApiError {
        let status = resp.status();
        let bytes = body::read_lossy(resp, body::ERROR_CAP).await;
        let mut body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        if body.error_code.is_none() && self.endpoint.api != Api::EseyeV2 {
            // Twilio's `{"code", "message", …}`; emnify's `{"error_code", "error_token",
            // "message", "errors"}`, whose one embedded error, when there is one, is the
            // refusal itself.
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let one = v
                .get("errors")
                .and_then(serde_json::Value::as_array)
                .filter(|e| e.len() == 1)
                .map(|e| &e[0]);
            let source = one.unwrap_or(&v);
            body.error_code = ["code", "error_code"]
                .iter()
                .find_map(|k| source.get(*k)?.as_i64());
            if let Some(m) = source.get("message").and_then(serde_json::Value::as_str) {
                body.message = Some(m.to_owned());
            }
        }
        let message = cut(body
            .message
            .as_deref()
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("no message")));
        if status == StatusCode::FORBIDDEN {
            ApiError::Forbidden {
                code: body.error_code,
                message,
                request_id,
            }
        } else if status.is_server_error() {
            ApiError::Server {
                status: status.as_u16(),
                message,
                request_id,
            }
        } else {
            ApiError::Rejected {
                status: status.as_u16(),
                code: body.error_code,
                message,
                request_id,
            }
        }
    }

    pub(crate) async fn get_sim(&self, icc: &str) -> Result<Reply<Sim>, ApiError> {
        match self.endpoint.api {
            Api::SuperSim => return self.super_sim(icc).await,
            Api::Emnify => return self.emnify_device(icc).await,
            Api::EseyeV2 => {}
        }
        self.call::<(), _>(
            Method::GET,
            &format!("/api/v2/sim/{icc}"),
            &[],
            None,
            body::ANSWER_CAP,
        )
        .await
    }

    /// The SIM after the change, when the API sends it back.
    pub(crate) async fn patch_sim(
        &self,
        icc: &str,
        patch: &SimPatch,
    ) -> Result<Reply<Option<Sim>>, ApiError> {
        match self.endpoint.api {
            Api::SuperSim => return self.update_super_sim(icc, patch).await,
            Api::Emnify => return self.update_emnify_device(icc, patch).await,
            Api::EseyeV2 => {}
        }
        self.call(
            Method::PATCH,
            &format!("/api/v2/sim/{icc}"),
            &[],
            Some(patch),
            body::ANSWER_CAP,
        )
        .await
    }

    pub(crate) async fn list_attributes(
        &self,
        icc: &str,
    ) -> Result<Reply<AttributeList>, ApiError> {
        if self.endpoint.api == Api::Emnify {
            return self.emnify_attributes(icc).await;
        }
        self.call::<(), _>(
            Method::GET,
            &format!("/api/v2/sim/{icc}/attribute"),
            &[],
            None,
            body::ANSWER_CAP,
        )
        .await
    }

    pub(crate) async fn create_attribute(
        &self,
        icc: &str,
        body: &AttributeCreate,
    ) -> Result<Reply<Option<Attribute>>, ApiError> {
        if self.endpoint.api == Api::Emnify {
            return self.emnify_set_field(icc, &body.name, &body.value).await;
        }
        self.call(
            Method::POST,
            &format!("/api/v2/sim/{icc}/attribute"),
            &[],
            Some(body),
            body::ANSWER_CAP,
        )
        .await
    }

    pub(crate) async fn update_attribute(
        &self,
        icc: &str,
        id: i64,
        body: &AttributePatch,
    ) -> Result<Reply<Option<Attribute>>, ApiError> {
        if self.endpoint.api == Api::Emnify {
            let name = super::emnify::field_of_id(id)
                .ok_or(ApiError::Unsupported(super::emnify::NO_ATTRIBUTES))?;
            let value = body.value.as_deref().unwrap_or_default();
            return self.emnify_set_field(icc, name, value).await;
        }
        self.call(
            Method::PATCH,
            &format!("/api/v2/sim/{icc}/attribute/{id}"),
            &[],
            Some(body),
            body::ANSWER_CAP,
        )
        .await
    }

    pub(crate) async fn delete_attribute(
        &self,
        icc: &str,
        id: i64,
    ) -> Result<Reply<Option<Attribute>>, ApiError> {
        if self.endpoint.api == Api::Emnify {
            // A field cannot go away: it is emptied.
            let name = super::emnify::field_of_id(id)
                .ok_or(ApiError::Unsupported(super::emnify::NO_ATTRIBUTES))?;
            return self.emnify_set_field(icc, name, "").await;
        }
        self.call::<(), _>(
            Method::DELETE,
            &format!("/api/v2/sim/{icc}/attribute/{id}"),
            &[],
            None,
            body::ANSWER_CAP,
        )
        .await
    }

    /// One page of `GET /api/v2/sim` with the given query pairs.
    pub(crate) async fn list_sims(
        &self,
        query: &[(&str, String)],
    ) -> Result<Reply<SimPage>, ApiError> {
        if self.endpoint.api != Api::EseyeV2 {
            return self.whole_fleet_page(query).await;
        }
        self.call::<(), _>(Method::GET, "/api/v2/sim", query, None, body::PAGE_CAP)
            .await
    }

    /// Super SIM and emnify: a page of the whole fleet, for `export` — `pageSize` and
    /// `pageToken` as the contract's list takes them, translated; any other filter is
    /// refused before anything is sent.
    async fn whole_fleet_page(&self, query: &[(&str, String)]) -> Result<Reply<SimPage>, ApiError> {
        let mut size = 1000u32;
        let mut token = None;
        for (k, v) in query {
            match *k {
                "pageSize" => size = v.parse().unwrap_or(size),
                "pageToken" => token = Some(v.clone()),
                _ => {
                    return Err(ApiError::Unsupported(
                        "this provider's SIMs are listed whole (no filters, no lists by ICCID) for now",
                    ));
                }
            }
        }
        match self.endpoint.api {
            Api::SuperSim => {
                let mut q = vec![("PageSize", size.clamp(1, 1000).to_string())];
                if let Some(t) = token {
                    q.push(("PageToken", t));
                }
                let r = self
                    .call::<(), super::super_sim::SuperSimListPage>(
                        Method::GET,
                        "/v1/Sims",
                        &q,
                        None,
                        body::PAGE_CAP,
                    )
                    .await?;
                Ok(r.map(|page| SimPage {
                    data: page
                        .sims
                        .iter()
                        .map(super::super_sim::SuperSim::to_model)
                        .collect(),
                    next_page_token: page.next_token(),
                }))
            }
            _ => {
                // emnify pages by number (from 1): the token is the next page's number, none
                // once a page comes back short.
                let per_page = size.clamp(1, 2500);
                let page: u64 = token.as_deref().and_then(|t| t.parse().ok()).unwrap_or(1);
                let q = [
                    ("per_page", per_page.to_string()),
                    ("page", page.to_string()),
                ];
                let r = self
                    .call::<(), Vec<super::emnify::EmnifySim>>(
                        Method::GET,
                        "/api/v1/sim",
                        &q,
                        None,
                        body::PAGE_CAP,
                    )
                    .await?;
                let full = r.value.len() == per_page as usize;
                Ok(r.map(|sims| SimPage {
                    data: sims
                        .iter()
                        .map(super::emnify::EmnifySim::to_model)
                        .collect(),
                    next_page_token: full.then(|| (page + 1).to_string()),
                }))
            }
        }
    }

    /// emnify: a device by its full ICCID (`GET /api/v1/sim?q=iccid_with_luhn:`), its
    /// endpoint id kept for the writes. None is a 404 of the lookup.
    async fn emnify_device(&self, icc: &str) -> Result<Reply<Sim>, ApiError> {
        Ok(self.emnify_lookup(icc).await?.map(|s| s.to_model()))
    }

    /// emnify: the device of a full ICCID as listed, and the reply it came in.
    async fn emnify_lookup(&self, icc: &str) -> Result<Reply<super::emnify::EmnifySim>, ApiError> {
        let q = [("q", format!("iccid_with_luhn:{icc}"))];
        let r = self
            .call::<(), Vec<super::emnify::EmnifySim>>(
                Method::GET,
                "/api/v1/sim",
                &q,
                None,
                body::PAGE_CAP,
            )
            .await?;
        let Some(s) = r.value.iter().find(|s| s.iccid_with_luhn == icc).cloned() else {
            return Err(ApiError::Rejected {
                status: 404,
                code: Some(super::emnify::NOT_FOUND),
                message: "no emnify SIM with this ICCID in the organisation (q=iccid_with_luhn: found none)".into(),
                request_id: None,
            });
        };
        if let Some(e) = &s.endpoint {
            self.sids.put(icc, &e.id.to_string());
        }
        Ok(r.map(|_| s))
    }

    /// emnify: a change as one endpoint object of the next bulk update (the batcher gathers
    /// the rows in flight); the endpoint id looked up first when this job has not seen it.
    async fn update_emnify_device(
        &self,
        icc: &str,
        patch: &SimPatch,
    ) -> Result<Reply<Option<Sim>>, ApiError> {
        let item = super::emnify::change_for(patch).map_err(ApiError::Unsupported)?;
        Ok(self.emnify_change(icc, item).await?.map(|()| None))
    }

    /// emnify: `item` (an endpoint object's fields) for the endpoint of `icc`, through the
    /// next bulk update.
    async fn emnify_change(
        &self,
        icc: &str,
        mut item: serde_json::Value,
    ) -> Result<Reply<()>, ApiError> {
        let endpoint = match self.sids.get(icc) {
            Some(id) => id,
            None => {
                self.emnify_device(icc).await?;
                self.sids.get(icc).ok_or(ApiError::Unsupported(
                    "the SIM is in no endpoint: emnify changes a device through its endpoint",
                ))?
            }
        };
        item["id"] = serde_json::json!(endpoint.parse::<i64>().unwrap_or_default());
        let batcher = self
            .batcher
            .get()
            .ok_or(ApiError::Unsupported("the bulk updates are not set up"))?;
        let sent = std::time::Instant::now();
        let shown = batcher.change(item.clone()).await?;
        // An answer that shows the endpoint must show it changed: a success whose state
        // differs is not the change.
        if let Some(e) = &shown {
            super::emnify::shows(&item, e).map_err(|m| ApiError::Decode(cut(&m)))?;
        }
        Ok(Reply {
            value: (),
            status: 204,
            sent,
        })
    }

    /// emnify: the endpoint's `tags` and `name` as the SIM's attributes (ids 1 and 2; an
    /// empty field is no attribute).
    async fn emnify_attributes(&self, icc: &str) -> Result<Reply<AttributeList>, ApiError> {
        Ok(self.emnify_lookup(icc).await?.map(|s| AttributeList {
            data: s
                .endpoint
                .map(|e| super::emnify::attributes(&e, icc))
                .unwrap_or_default(),
        }))
    }

    /// emnify: an attribute written as its endpoint field (`tags` or `name`).
    async fn emnify_set_field(
        &self,
        icc: &str,
        name: &str,
        value: &str,
    ) -> Result<Reply<Option<Attribute>>, ApiError> {
        let field = super::emnify::field(name)
            .ok_or(ApiError::Unsupported(super::emnify::NO_ATTRIBUTES))?;
        Ok(self
            .emnify_change(icc, serde_json::json!({ field: value }))
            .await?
            .map(|()| None))
    }

    /// emnify: one bulk update of endpoints (the batcher's call): the endpoints its answer
    /// shows, when it has a list of them.
    pub(crate) async fn bulk_update(
        &self,
        items: Vec<serde_json::Value>,
    ) -> Result<Vec<serde_json::Value>, ApiError> {
        let r = self
            .call::<_, Option<serde_json::Value>>(
                Method::PATCH,
                "/api/v2/endpoint/multi",
                &[],
                Some(&items),
                body::PAGE_CAP,
            )
            .await?;
        Ok(match r.value {
            Some(serde_json::Value::Array(shown)) => shown,
            _ => Vec::new(),
        })
    }

    /// emnify: sets up the batcher the rows' changes go through, `max` endpoints a call at
    /// most (the client reached through a weak handle: the batcher never keeps it alive).
    pub(crate) fn start_batches(self: &Arc<Self>, max: usize) {
        let weak = Arc::downgrade(self);
        let send: super::emnify::SendBulk = Arc::new(move |items| {
            let weak = weak.clone();
            Box::pin(async move {
                match weak.upgrade() {
                    Some(c) => c.bulk_update(items).await,
                    None => Err(ApiError::Interrupted),
                }
            })
        });
        let _ = self.batcher.set(super::emnify::Batcher::new(send, max));
    }

    /// Super SIM: a SIM by ICCID (`GET /v1/Sims?Iccid=`, zero or one), its SID kept for the
    /// writes. None is a 404 of the lookup: the account has no such SIM.
    async fn super_sim(&self, icc: &str) -> Result<Reply<Sim>, ApiError> {
        let q = [("Iccid", icc.to_owned())];
        let r = self
            .call::<(), super::super_sim::SuperSimPage>(
                Method::GET,
                "/v1/Sims",
                &q,
                None,
                body::PAGE_CAP,
            )
            .await?;
        let Some(s) = r.value.sims.iter().find(|s| s.iccid == icc).cloned() else {
            return Err(ApiError::Rejected {
                status: 404,
                code: Some(super::super_sim::NOT_FOUND),
                message:
                    "no Super SIM with this ICCID in the account (GET /v1/Sims?Iccid= found none)"
                        .into(),
                request_id: None,
            });
        };
        self.sids.put(icc, &s.sid);
        Ok(r.map(|_| s.to_model()))
    }

    /// Super SIM: a change as `POST /v1/Sims/{sid}` with its form; the SID looked up first
    /// when this job has not seen it.
    async fn update_super_sim(
        &self,
        icc: &str,
        patch: &SimPatch,
    ) -> Result<Reply<Option<Sim>>, ApiError> {
        let form = super::super_sim::form_for(patch).map_err(ApiError::Unsupported)?;
        let sid = match self.sids.get(icc) {
            Some(sid) => sid,
            None => {
                let found = self.super_sim(icc).await?;
                found.value.sim_id.unwrap_or_default()
            }
        };
        let r = self
            .call::<_, Option<super::super_sim::SuperSim>>(
                Method::POST,
                &format!("/v1/Sims/{sid}"),
                &[],
                Some(&form),
                body::ANSWER_CAP,
            )
            .await?;
        let asked = form.first().map(|(_, v)| v.as_str());
        Ok(r.map(|answer| {
            answer.map(|mut s| {
                // An accepted change whose answer shows neither it nor `scheduled` is still
                // on its way (Super SIM settles changes later): it is not taken as done.
                if Some(s.status.as_str()) != asked {
                    s.status = super::super_sim::SCHEDULED.to_owned();
                }
                s.to_model()
            })
        }))
    }
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

fn transport(e: &reqwest::Error, timeout: Duration) -> String {
    match classify_transport(e, timeout) {
        ApiError::Timeout(d) => format!("no response within {d:?}"),
        other => other.to_string(),
    }
}

fn classify_transport(e: &reqwest::Error, timeout: Duration) -> ApiError {
    // The error's own text names the URL (no secrets there) and the innermost cause.
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    if e.is_timeout() {
        ApiError::Timeout(timeout)
    } else if e.is_connect() {
        ApiError::Connect(cut(&msg))
    } else {
        ApiError::Transport(cut(&msg))
    }
}
