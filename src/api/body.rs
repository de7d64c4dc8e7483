//! Reading what the network sends, within bounds: response bodies up to a cap, and the
//! token endpoint's reply read tolerantly.
//!
//! Guarantees: no body is held past its cap (a `Content-Length` over it is refused before a
//! byte is read; a body that keeps coming is cut at the cap), so a hostile or broken server
//! cannot grow the process's memory; a token reply is accepted in the shapes real identity
//! providers send (`expires_in` absent, a number, a string of digits, out of range) and its
//! lifetime always ends up between [`MIN_TTL`] and [`super::token::MAX_TTL`].

use std::time::Duration;

use bytes::Bytes;

/// Largest answer read for one SIM, one attribute or one SIM's attribute list.
pub(crate) const ANSWER_CAP: usize = 1 << 20;
/// Largest page of `GET /api/v2/sim` read (1,000 SIMs of about 400 bytes: twenty times
/// that).
pub(crate) const PAGE_CAP: usize = 8 << 20;
/// Largest error body read (only its message is used).
pub(crate) const ERROR_CAP: usize = 64 << 10;
/// Largest token reply read.
pub(crate) const TOKEN_CAP: usize = 64 << 10;

/// Lifetime assumed when a token reply gives none (RFC 6749 makes `expires_in` optional) or
/// one that is not a positive number; a 401 refreshes the token sooner if it was shorter.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Shortest lifetime believed.
pub(crate) const MIN_TTL: Duration = Duration::from_secs(1);

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The body is larger than the cap.
    TooLarge(usize),
    /// The connection failed while the body was read (a timeout included).
    Transport(reqwest::Error),
}

/// Reads `resp`'s body, at most `cap` bytes.
pub(crate) async fn read(mut resp: reqwest::Response, cap: usize) -> Result<Bytes, BodyError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(BodyError::TooLarge(cap));
    }
    // The pieces are kept as they come and joined once at the end: no buffer doubles (and
    // copies itself) on the way to the cap.
    let mut pieces: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if len + chunk.len() > cap {
            return Err(BodyError::TooLarge(cap));
        }
        len += chunk.len();
        pieces.push(chunk);
    }
    if pieces.len() == 1 {
        return Ok(pieces.swap_remove(0));
    }
    let mut out = Vec::with_capacity(len);
    for p in &pieces {
        out.extend_from_slice(p);
    }
    Ok(Bytes::from(out))
}

/// Reads at most `cap` bytes of an error body and drops the rest.
pub(crate) async fn read_lossy(resp: reqwest::Response, cap: usize) -> Bytes {
    let mut resp = resp;
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= cap {
            break;
        }
    }
    Bytes::from(out)
}

/// A token endpoint's reply, as read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TokenReply {
    pub(crate) access_token: String,
    pub(crate) ttl: Duration,
}

/// Parses a token reply; the error says what is wrong with it (never the token itself).
pub(crate) fn token_reply(body: &[u8]) -> Result<TokenReply, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the token reply is not JSON".to_owned())?;
    let obj = v
        .as_object()
        .ok_or_else(|| "the token reply is not a JSON object".to_owned())?;
    // OAuth2's `access_token`, or emnify's `auth_token`.
    let access_token = match obj.get("access_token").or_else(|| obj.get("auth_token")) {
        Some(serde_json::Value::String(t)) if !t.trim().is_empty() => t.clone(),
        Some(_) => return Err("the token reply's access_token is not a non-empty string".into()),
        None => return Err("the token reply has no access_token".into()),
    };
    let secs = match obj.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let ttl = match secs {
        Some(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(
            s.clamp(MIN_TTL.as_secs_f64(), super::token::MAX_TTL.as_secs_f64()),
        ),
        _ => DEFAULT_TTL,
    };
    Ok(TokenReply { access_token, ttl })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn token_replies_in_the_shapes_providers_send() {
        let ttl = |b: &str| token_reply(b.as_bytes()).map(|r| r.ttl.as_secs());
        assert_eq!(ttl(r#"{"access_token":"t","expires_in":3600}"#), Ok(3600));
        assert_eq!(ttl(r#"{"access_token":"t","expires_in":"120"}"#), Ok(120));
        assert_eq!(
            ttl(r#"{"access_token":"t"}"#),
            Ok(3600),
            "absent: the default"
        );
        assert_eq!(ttl(r#"{"access_token":"t","expires_in":-5}"#), Ok(3600));
        assert_eq!(ttl(r#"{"access_token":"t","expires_in":1e30}"#), Ok(86_400));
        assert_eq!(
            ttl(r#"{"access_token":"t","expires_in":18446744073709551615}"#),
            Ok(86_400)
        );
        assert_eq!(ttl(r#"{"access_token":"t","expires_in":0.2}"#), Ok(1));
        assert!(ttl(r#"{"access_token":""}"#).is_err());
        assert!(ttl(r#"{"token":"t"}"#).is_err());
        assert!(ttl("[1]").is_err());
        let e = token_reply(b"<html>nope</html>").unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
        let e = token_reply(br#"{"access_token":5}"#).unwrap_err();
        assert!(!e.contains('5'), "the error never quotes the token: {e}");
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            any::<u64>().prop_map(|n| serde_json::json!(n)),
            any::<f64>().prop_map(|n| serde_json::json!(n)),
            ".{0,20}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("access_token".to_owned()),
                        Just("expires_in".to_owned()),
                        Just("token_type".to_owned()),
                        ".{0,8}"
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_token_reply_parses_to_a_bounded_lifetime_or_a_clean_error(v in json_value(), raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            for body in [serde_json::to_vec(&v).unwrap(), raw] {
                if let Ok(r) = token_reply(&body) {
                    prop_assert!(r.ttl >= MIN_TTL && r.ttl <= super::super::token::MAX_TTL);
                    prop_assert!(!r.access_token.trim().is_empty());
                }
            }
        }
    }
}
