//! What a call to the SIM API can end in, and what each ending means for a row and a job.
//!
//! Guarantees: classification comes from the `errorCode` where there is one, not from the
//! HTTP status alone; every message taken from the API is cut to [`MAX_MESSAGE`] characters
//! before it reaches logs or results; no variant carries a secret.

use std::time::Duration;

/// Longest API message kept.
pub(crate) const MAX_MESSAGE: usize = 300;

/// Cuts `s` to `MAX_MESSAGE` characters, one line.
pub(crate) fn cut(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE + 1)
        .collect();
    if one_line.chars().count() > MAX_MESSAGE {
        let mut t: String = one_line.chars().take(MAX_MESSAGE - 1).collect();
        t.push('…');
        t
    } else {
        one_line
    }
}

/// A failed call.
#[expect(
    missing_docs,
    reason = "each variant's #[error] message is its documentation, naming its fields"
)]
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// A 4xx with the contract's `Error` body: the API looked at the request and refused it.
    #[error("HTTP {status}{}: {message}", code.map(|c| format!(" error {c}")).unwrap_or_default())]
    Rejected {
        status: u16,
        code: Option<i64>,
        message: String,
        request_id: Option<String>,
    },
    /// 429: nothing was applied.
    #[error("rate limited (HTTP 429)")]
    RateLimited {
        retry_after: Option<Duration>,
        request_id: Option<String>,
    },
    /// 401 again after a fresh token.
    #[error("unauthorized (HTTP 401) even with a fresh token")]
    Unauthorized { request_id: Option<String> },
    /// 403: the client lacks a permission; every further row would fail the same way.
    #[error("permission denied (HTTP 403{}): {message}", code.map(|c| format!(" error {c}")).unwrap_or_default())]
    Forbidden {
        code: Option<i64>,
        message: String,
        request_id: Option<String>,
    },
    /// The token endpoint refused the credentials.
    #[error("{}", credentials_text(error, guessed.as_deref()))]
    Credentials {
        error: String,
        /// The token URL, when it was guessed from the base URL rather than given.
        guessed: Option<String>,
    },
    /// The API itself refused the account's credentials (a provider without a token endpoint:
    /// HTTP Basic on every call).
    #[error(
        "the API refused the account credentials ({error}); check SIMBULK_CLIENT_ID (the account id) and the secret"
    )]
    AccountRefused { error: String },
    /// The provider's API has no way to do this (refused here, before anything is sent).
    #[error("not supported by this provider: {0}")]
    Unsupported(&'static str),
    /// The token endpoint could not be used just now.
    #[error("cannot get a token: {message}")]
    TokenUnavailable { message: String },
    /// A 5xx: the change may or may not have been applied.
    #[error("HTTP {status}: {message}")]
    Server {
        status: u16,
        message: String,
        request_id: Option<String>,
    },
    /// No answer within the timeout: the change may or may not have been applied.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The connection could not be opened: nothing was sent.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection broke after the request was sent: it may have been applied.
    #[error("connection lost: {0}")]
    Transport(String),
    /// A 2xx whose body is not what the contract says.
    #[error("unexpected response body: {0}")]
    Decode(String),
    /// A 2xx whose body is larger than simbulk reads for that kind of answer.
    #[error("the API's answer is larger than {} KiB, the most simbulk reads for it", cap >> 10)]
    TooLarge { cap: usize },
    /// The job is stopping (a signal, the deadline, a halt): the request was not sent.
    #[error("not sent: the job is stopping")]
    Interrupted,
}

/// Why a client cannot be set up: a URL refused, the TLS or HTTP stack, the CA bundle.
#[expect(
    missing_docs,
    reason = "each variant's #[error] message is its documentation, naming its fields"
)]
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{what} {value:?} {reason}")]
    Url {
        what: String,
        value: String,
        reason: String,
    },
    #[error(transparent)]
    CaBundle(#[from] crate::files::Error),
    #[error("--ca-bundle {}: {reason}", path.display())]
    Bundle {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error("cannot set up HTTP: {0}")]
    Http(#[source] reqwest::Error),
}

impl ApiError {
    /// Worth another attempt (after a pause).
    pub(crate) fn retryable(&self) -> bool {
        matches!(
            self,
            ApiError::RateLimited { .. }
                | ApiError::Server { .. }
                | ApiError::Timeout(_)
                | ApiError::Connect(_)
                | ApiError::Transport(_)
                | ApiError::TokenUnavailable { .. }
                | ApiError::Unauthorized { .. }
                | ApiError::TooLarge { .. }
        )
    }

    /// The request may have been applied although no success came back.
    pub(crate) fn ambiguous(&self) -> bool {
        matches!(
            self,
            ApiError::Server { .. } | ApiError::Timeout(_) | ApiError::Transport(_)
        )
    }

    /// Every further row would fail the same way: stop the job.
    pub(crate) fn halts_job(&self) -> bool {
        matches!(
            self,
            ApiError::Forbidden { .. }
                | ApiError::Credentials { .. }
                | ApiError::AccountRefused { .. }
        )
    }

    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            ApiError::Rejected { status, .. } | ApiError::Server { status, .. } => Some(*status),
            ApiError::RateLimited { .. } => Some(429),
            ApiError::Unauthorized { .. } => Some(401),
            ApiError::Forbidden { .. } => Some(403),
            _ => None,
        }
    }

    pub(crate) fn code(&self) -> Option<i64> {
        match self {
            ApiError::Rejected { code, .. } | ApiError::Forbidden { code, .. } => *code,
            _ => None,
        }
    }

    /// The kind of error, as a group's name (no detail of the call in it).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ApiError::Rejected { .. } => "refused by the API",
            ApiError::RateLimited { .. } => "rate limited",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::Forbidden { .. } => "permission denied",
            ApiError::Credentials { .. } | ApiError::AccountRefused { .. } => "credentials refused",
            ApiError::Unsupported(_) => "not supported by the provider",
            ApiError::TokenUnavailable { .. } => "no token from the token endpoint",
            ApiError::Server { .. } => "server error",
            ApiError::Timeout(_) => "no answer within the timeout",
            ApiError::Connect(_) => "cannot connect",
            ApiError::Transport(_) => "connection lost",
            ApiError::Decode(_) => "unexpected answer",
            ApiError::TooLarge { .. } => "answer too large",
            ApiError::Interrupted => "interrupted",
        }
    }

    pub(crate) fn request_id(&self) -> Option<&str> {
        match self {
            ApiError::Rejected { request_id, .. }
            | ApiError::RateLimited { request_id, .. }
            | ApiError::Unauthorized { request_id }
            | ApiError::Forbidden { request_id, .. }
            | ApiError::Server { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }
}

/// Why the token endpoint said no, and what to check.
fn credentials_text(error: &str, guessed: Option<&str>) -> String {
    match guessed {
        Some(url) => format!(
            "the token endpoint {url} answered {error}; that URL was guessed from --base-url (<base-url>/oauth2/token), and a provider's token endpoint is often elsewhere (an identity provider): give --token-url, or --provider eseye --region REGION; if the URL is right, check the client id and secret"
        ),
        None => format!(
            "the token endpoint refused the client credentials ({error}); check SIMBULK_CLIENT_ID and the secret"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_to_one_short_line() {
        let long = "x".repeat(10_000);
        assert_eq!(cut(&long).chars().count(), MAX_MESSAGE);
        assert_eq!(cut("a\nb"), "a b");
    }

    #[test]
    fn classification() {
        let s = ApiError::Server {
            status: 503,
            message: String::new(),
            request_id: None,
        };
        assert!(s.retryable() && s.ambiguous() && !s.halts_job());
        let c = ApiError::Connect("refused".into());
        assert!(c.retryable() && !c.ambiguous());
        let f = ApiError::Forbidden {
            code: Some(6024),
            message: String::new(),
            request_id: None,
        };
        assert!(f.halts_job() && !f.retryable());
        let r = ApiError::Rejected {
            status: 400,
            code: Some(16000),
            message: "m".into(),
            request_id: None,
        };
        assert!(!r.retryable() && !r.halts_job());
        assert_eq!(r.to_string(), "HTTP 400 error 16000: m");
    }
}
