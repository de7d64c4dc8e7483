//! OAuth2 client-credentials tokens: issuing, checking, expiring and revoking them.
//!
//! Guarantees: each token request returns a fresh opaque token; a token is valid until its
//! own expiry or a revocation, whichever comes first; unknown, expired and revoked tokens
//! are indistinguishable to the caller (401).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::Engine;

use super::config::{ClientConfig, Permission};

/// Why a token request was refused (the OAuth2 `error` value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenRefusal {
    InvalidClient,
    InvalidRequest,
    UnsupportedGrantType,
    InvalidScope,
}

impl TokenRefusal {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TokenRefusal::InvalidClient => "invalid_client",
            TokenRefusal::InvalidRequest => "invalid_request",
            TokenRefusal::UnsupportedGrantType => "unsupported_grant_type",
            TokenRefusal::InvalidScope => "invalid_scope",
        }
    }
}

struct TokenInfo {
    client: usize,
    expires: Instant,
}

/// The clients and their live tokens.
pub(crate) struct Auth {
    pub(crate) clients: Vec<ClientConfig>,
    tokens: RwLock<HashMap<String, TokenInfo>>,
    ttl: Duration,
}

impl Auth {
    pub(crate) fn new(clients: Vec<ClientConfig>, ttl: Duration) -> Self {
        Self {
            clients,
            tokens: RwLock::new(HashMap::new()),
            ttl,
        }
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Checks the credentials and grant of a token request; returns the client's index.
    pub(crate) fn authenticate(
        &self,
        authorization: Option<&str>,
        form: &[u8],
    ) -> Result<usize, TokenRefusal> {
        let mut fields: HashMap<String, String> = HashMap::new();
        for (k, v) in form_urlencoded::parse(form) {
            fields.insert(k.into_owned(), v.into_owned());
        }
        let basic = authorization
            .and_then(|h| {
                h.strip_prefix("Basic ")
                    .or_else(|| h.strip_prefix("basic "))
            })
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(i, p)| (i.to_owned(), p.to_owned())));
        let (id, secret) = match basic {
            Some(pair) => pair,
            None => match (fields.get("client_id"), fields.get("client_secret")) {
                (Some(i), Some(s)) => (i.clone(), s.clone()),
                _ => return Err(TokenRefusal::InvalidClient),
            },
        };
        let client = self
            .clients
            .iter()
            .position(|c| c.id == id && constant_time_eq(c.secret.as_bytes(), secret.as_bytes()))
            .ok_or(TokenRefusal::InvalidClient)?;
        match fields.get("grant_type").map(String::as_str) {
            None => return Err(TokenRefusal::InvalidRequest),
            Some("client_credentials") => {}
            Some(_) => return Err(TokenRefusal::UnsupportedGrantType),
        }
        match fields.get("scope").map(String::as_str) {
            None | Some("api/api") => Ok(client),
            Some(_) => Err(TokenRefusal::InvalidScope),
        }
    }

    /// Issues a fresh token for `client`.
    pub(crate) fn issue(&self, client: usize, now: Instant) -> String {
        let token = format!("sim_at_{:032x}", fastrand::u128(..));
        let mut g = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        // Expired tokens are purged here, so the table is bounded by the issue rate times the TTL.
        if g.len() > 1024 {
            g.retain(|_, t| t.expires > now);
        }
        g.insert(
            token.clone(),
            TokenInfo {
                client,
                expires: now + self.ttl,
            },
        );
        token
    }

    /// The client behind an `Authorization: Bearer …` header, if the token is live.
    pub(crate) fn check(&self, authorization: Option<&str>, now: Instant) -> Option<usize> {
        let token = authorization?
            .strip_prefix("Bearer ")
            .or_else(|| authorization?.strip_prefix("bearer "))?
            .trim();
        let g = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        g.get(token).filter(|t| t.expires > now).map(|t| t.client)
    }

    pub(crate) fn has(&self, client: usize, p: Permission) -> bool {
        self.clients[client].permissions.contains(&p)
    }

    /// Revokes every token of one client (or of all clients with `None`).
    pub(crate) fn revoke(&self, client: Option<usize>) -> usize {
        let mut g = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        let before = g.len();
        g.retain(|_, t| client.is_some_and(|c| c != t.client));
        before - g.len()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_clients;

    #[test]
    fn basic_and_form_credentials_both_work_and_scope_is_checked() {
        let a = Auth::new(default_clients(), Duration::from_secs(60));
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("sim-demo-client:s3cr3t-demo")
        );
        assert_eq!(
            a.authenticate(Some(&basic), b"grant_type=client_credentials"),
            Ok(0)
        );
        assert_eq!(
            a.authenticate(
                None,
                b"grant_type=client_credentials&scope=api%2Fapi&client_id=sim-demo-client&client_secret=s3cr3t-demo"
            ),
            Ok(0)
        );
        assert_eq!(
            a.authenticate(Some(&basic), b"grant_type=password"),
            Err(TokenRefusal::UnsupportedGrantType)
        );
        assert_eq!(
            a.authenticate(Some(&basic), b"grant_type=client_credentials&scope=x"),
            Err(TokenRefusal::InvalidScope)
        );
        assert_eq!(
            a.authenticate(
                None,
                b"grant_type=client_credentials&client_id=sim-demo-client&client_secret=no"
            ),
            Err(TokenRefusal::InvalidClient)
        );
    }

    #[test]
    fn tokens_expire_and_revoke() {
        let a = Auth::new(default_clients(), Duration::from_secs(60));
        let now = Instant::now();
        let t = a.issue(0, now);
        let h = format!("Bearer {t}");
        assert_eq!(a.check(Some(&h), now), Some(0));
        assert_eq!(a.check(Some(&h), now + Duration::from_secs(61)), None);
        a.revoke(Some(0));
        assert_eq!(a.check(Some(&h), now), None);
    }
}
