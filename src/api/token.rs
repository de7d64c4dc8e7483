//! The bearer-token cache: refresh ahead of expiry, single-flight refresh, and invalidation
//! by generation so that many workers seeing one 401 cause one refresh.
//!
//! Guarantees: at most one token request is in flight at a time; a 401 seen with token
//! generation `g` forces a refresh only if `g` is still the current generation; waiting for
//! another worker's refresh ends at once when the job stops; an expiry of any size is safe
//! (clamped, never an overflow); the token value lives in a `SecretString` and is never
//! formatted.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use secrecy::SecretString;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use super::pace::unless_stopped;

/// Longest lifetime believed: a token reply claiming more is refreshed after a day anyway.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// A live token and its generation.
#[derive(Clone)]
pub(crate) struct Token {
    pub(crate) value: Arc<SecretString>,
    pub(crate) generation: u64,
    expires: Instant,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"[REDACTED]")
            .field("generation", &self.generation)
            .finish()
    }
}

/// Refresh this long before expiry: a tenth of the lifetime, at most a minute.
pub(crate) fn skew(ttl: Duration) -> Duration {
    (ttl / 10).min(Duration::from_secs(60))
}

#[derive(Default)]
pub(crate) struct TokenCache {
    current: RwLock<Option<Token>>,
    refresh: tokio::sync::Mutex<u64>,
}

impl TokenCache {
    fn fresh(&self) -> Option<Token> {
        let g = self.current.read().unwrap_or_else(|e| e.into_inner());
        g.as_ref().filter(|t| Instant::now() < t.expires).cloned()
    }

    /// A live token, fetching one with `fetch` (single flight) when needed.
    /// `fetch` returns the token and its lifetime.
    pub(crate) async fn get<F, Fut>(
        &self,
        fetch: F,
        stop: &CancellationToken,
    ) -> Result<Token, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(SecretString, Duration), ApiError>>,
    {
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let mut generation = unless_stopped(stop, self.refresh.lock())
            .await
            .map_err(|_| ApiError::Interrupted)?;
        // Another worker may have refreshed while this one waited for the lock.
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let (value, ttl) = fetch().await?;
        *generation += 1;
        let ttl = ttl.min(MAX_TTL);
        let t = Token {
            value: Arc::new(value),
            generation: *generation,
            expires: Instant::now() + ttl.saturating_sub(skew(ttl)),
        };
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(t.clone());
        Ok(t)
    }

    /// The API refused token generation `generation`: drop it unless already replaced.
    pub(crate) fn invalidate(&self, generation: u64) {
        let mut g = self.current.write().unwrap_or_else(|e| e.into_inner());
        if g.as_ref().is_some_and(|t| t.generation == generation) {
            *g = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn many_workers_one_refresh() {
        let cache = Arc::new(TokenCache::default());
        let calls = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (cache, calls, stop) = (cache.clone(), calls.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get(
                        || async {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok((SecretString::from("t1"), Duration::from_secs(60)))
                        },
                        &stop,
                    )
                    .await
                    .unwrap()
                    .generation
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 1);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_stale_401_does_not_drop_the_newer_token() {
        let cache = TokenCache::default();
        let stop = CancellationToken::new();
        let f = |v: &'static str| {
            move || async move { Ok((SecretString::from(v), Duration::from_secs(60))) }
        };
        let t1 = cache.get(f("a"), &stop).await.unwrap();
        cache.invalidate(t1.generation);
        let t2 = cache.get(f("b"), &stop).await.unwrap();
        assert_eq!(t2.value.expose_secret(), "b");
        cache.invalidate(t1.generation);
        let t3 = cache.get(f("c"), &stop).await.unwrap();
        assert_eq!(t3.generation, t2.generation);
        assert!(!format!("{t3:?}").contains('b'));
    }

    #[tokio::test]
    async fn a_huge_lifetime_is_clamped_and_waiting_for_a_refresh_ends_on_stop() {
        let cache = Arc::new(TokenCache::default());
        let stop = CancellationToken::new();
        let t = cache
            .get(
                || async { Ok((SecretString::from("x"), Duration::from_secs(u64::MAX))) },
                &stop,
            )
            .await
            .unwrap();
        assert!(t.expires > Instant::now());
        cache.invalidate(t.generation);
        // One worker fetches for ever; another waits for its result; the stop ends both waits.
        let slow = tokio::spawn({
            let (cache, stop) = (cache.clone(), stop.clone());
            async move {
                cache
                    .get(
                        || async {
                            std::future::pending::<()>().await;
                            Ok((SecretString::from("never"), Duration::from_secs(1)))
                        },
                        &stop,
                    )
                    .await
                    .map(|_| ())
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waiter = tokio::spawn({
            let (cache, stop) = (cache.clone(), stop.clone());
            async move {
                cache
                    .get(
                        || async { Ok((SecretString::from("y"), Duration::from_secs(1))) },
                        &stop,
                    )
                    .await
                    .map(|_| ())
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.cancel();
        assert_eq!(waiter.await.unwrap(), Err(ApiError::Interrupted));
        slow.abort();
    }

    #[test]
    fn skew_is_a_tenth_capped_at_a_minute() {
        assert_eq!(skew(Duration::from_secs(3600)), Duration::from_secs(60));
        assert_eq!(skew(Duration::from_secs(10)), Duration::from_secs(1));
    }
}
