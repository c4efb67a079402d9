//! Authentication: from a presented bearer secret to a verified [`Principal`].
//!
//! Secrets are looked up by their SHA-256 digest. Each process caches what a digest names
//! (unknown digests too, so a flood of made-up tokens costs no database reads) for
//! `TOKEN_CACHE_SECONDS`: a revocation or rotation takes effect everywhere within that time.
//! Expiry and allowed subnets are checked on every request, against the cached token.
//! `last_used_at` is written in the background, at most once per interval per token.
//! The HTTP layer (`api::auth`) and the Kafka intake both authenticate through here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::domain::{Principal, Secret, TokenId, TokenSpec};
use crate::store::{ApiToken, StoreError, TokenChange, TokenStore};

/// The header with which forward mode's consumer vouches that a request it posts with a
/// message's own token came from Kafka: `Bearer <a --forwarder token>`.
pub const FORWARDED_BY: &str = "dnsorch-forwarded-by";

/// How long and how much the authenticator caches.
#[derive(Debug, Clone, Copy)]
pub struct AuthConfig {
    /// How long a lookup (found or not) is reused.
    pub cache_for: Duration,
    /// The most digests cached; past it, expired entries are dropped, then the cache is
    /// cleared.
    pub cache_entries: usize,
    /// The shortest time between two writes of a token's `last_used_at`.
    pub last_used_every: Duration,
}

/// Why a presented token was refused: the `reason` label of
/// `dnsorch_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("no bearer token was given")]
    Missing,
    #[error("the Authorization header is not 'Bearer <token>'")]
    Malformed,
    #[error("the token is not known")]
    Unknown,
    #[error("the token was revoked")]
    Revoked,
    #[error("the token has expired")]
    Expired,
    #[error("the token may not be used from this address")]
    Subnet,
}

impl AuthFailure {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Unknown => "unknown",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Subnet => "subnet",
        }
    }

    /// Counts the failure.
    pub fn emit(self, via: &'static str) {
        metrics::counter!("dnsorch_auth_failures_total", "reason" => self.reason(), "via" => via)
            .increment(1);
    }
}

/// Why authentication could not finish.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Refused(#[from] AuthFailure),
    /// The token could not be looked up: the database is unavailable.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Parses `Bearer <secret>` (the scheme is case-insensitive).
///
/// # Errors
/// `Missing` without a value, `Malformed` for any other form.
pub fn bearer(value: Option<&[u8]>) -> Result<Secret, AuthFailure> {
    let value = value.ok_or(AuthFailure::Missing)?;
    let text = std::str::from_utf8(value).map_err(|_| AuthFailure::Malformed)?;
    let (scheme, secret) = text.trim().split_once(' ').ok_or(AuthFailure::Malformed)?;
    let secret = secret.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || secret.is_empty() || secret.len() > 256 {
        return Err(AuthFailure::Malformed);
    }
    Ok(Secret::presented(secret))
}

struct Cached {
    fetched: Instant,
    token: Option<Arc<Known>>,
}

/// A token as looked up, with the principal it stands for (built once per lookup, not per
/// request).
struct Known {
    token: ApiToken,
    principal: Principal,
}

/// Turns secrets into principals, with a per-process cache.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Arc<dyn TokenStore>,
    config: AuthConfig,
    cache: Arc<Mutex<HashMap<[u8; 32], Cached>>>,
    /// When this process last wrote each token's `last_used_at`.
    touched: Arc<Mutex<HashMap<TokenId, Instant>>>,
}

impl Authenticator {
    /// An authenticator over the token store.
    pub fn new(tokens: Arc<dyn TokenStore>, config: AuthConfig) -> Self {
        Self {
            tokens,
            config,
            cache: Arc::default(),
            touched: Arc::default(),
        }
    }

    /// The token store, for managing tokens.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.tokens
    }

    /// Authenticates a secret presented from `client` (`None`: not over a network
    /// connection, e.g. Kafka; a token limited to subnets is then refused).
    ///
    /// # Errors
    /// Why the token was refused, or the database is unavailable.
    pub async fn authenticate(
        &self,
        secret: &Secret,
        client: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let known = self.lookup(secret).await?.ok_or(AuthFailure::Unknown)?;
        let token = &known.token;
        if token.revoked_at.is_some() {
            return Err(AuthFailure::Revoked.into());
        }
        if token.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err(AuthFailure::Expired.into());
        }
        if !token.allowed_subnets.is_empty() {
            let allowed =
                client.is_some_and(|ip| token.allowed_subnets.iter().any(|s| s.contains(ip)));
            if !allowed {
                return Err(AuthFailure::Subnet.into());
            }
        }
        self.touch(token.id);
        Ok(known.principal.clone())
    }

    /// Drops every cached lookup (after this process revoked or rotated a token, so that
    /// it sees the change at once).
    pub fn forget(&self) {
        self.cache.lock().expect("not poisoned").clear();
    }

    async fn lookup(&self, secret: &Secret) -> Result<Option<Arc<Known>>, StoreError> {
        let digest = secret.digest_bytes();
        if let Some(cached) = self.cache.lock().expect("not poisoned").get(&digest)
            && cached.fetched.elapsed() < self.config.cache_for
        {
            return Ok(cached.token.clone());
        }
        let stored = crate::domain::token::hex(&digest);
        let token = self.tokens.token_by_digest(&stored).await?.map(|token| {
            let principal = Principal {
                token_id: Some(token.id),
                name: token.name.clone(),
                account_id: token.account.clone(),
                admin: token.admin,
                metrics: token.metrics,
                forwarder: token.forwarder,
                policies: token.policies.clone().into(),
            };
            Arc::new(Known { token, principal })
        });
        let mut cache = self.cache.lock().expect("not poisoned");
        if cache.len() >= self.config.cache_entries {
            let cache_for = self.config.cache_for;
            cache.retain(|_, c| c.fetched.elapsed() < cache_for);
            if cache.len() >= self.config.cache_entries {
                cache.clear();
            }
        }
        cache.insert(
            digest,
            Cached {
                fetched: Instant::now(),
                token: token.clone(),
            },
        );
        Ok(token)
    }

    /// Writes `last_used_at` in the background, at most once per interval per token.
    fn touch(&self, id: TokenId) {
        {
            let mut touched = self.touched.lock().expect("not poisoned");
            if touched
                .get(&id)
                .is_some_and(|at| at.elapsed() < self.config.last_used_every)
            {
                return;
            }
            if touched.len() >= self.config.cache_entries {
                touched.clear();
            }
            touched.insert(id, Instant::now());
        }
        let (tokens, every) = (self.tokens.clone(), self.config.last_used_every);
        tokio::spawn(async move {
            if let Err(e) = tokens.touch_token(id, every).await {
                tracing::debug!(error.message = %e, token_id = %id, "last_used_at not written");
            }
        });
    }
}

/// Creates a token with a new secret; the secret is returned once and never stored.
///
/// # Errors
/// The database is unavailable.
pub async fn issue(
    tokens: &dyn TokenStore,
    spec: &TokenSpec,
) -> Result<(ApiToken, Secret), StoreError> {
    let secret = Secret::generate();
    let token = tokens.create_token(spec, &secret.digest()).await?;
    Ok((token, secret))
}

/// Gives a token a new secret (the old one stops matching); the secret is returned once.
///
/// # Errors
/// The database is unavailable.
pub async fn rotate(
    tokens: &dyn TokenStore,
    id: TokenId,
) -> Result<(TokenChange, Secret), StoreError> {
    let secret = Secret::generate();
    let change = tokens.rotate_token(id, &secret.digest()).await?;
    Ok((change, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_headers_parse_and_other_forms_are_refused() {
        assert_eq!(bearer(Some(b"Bearer abc")).unwrap().expose(), "abc");
        assert_eq!(bearer(Some(b"bearer  abc ")).unwrap().expose(), "abc");
        assert_eq!(bearer(None).unwrap_err(), AuthFailure::Missing);
        for bad in [&b"Basic abc"[..], b"Bearer", b"Bearer ", b"abc", b"\xff"] {
            assert_eq!(
                bearer(Some(bad)).unwrap_err(),
                AuthFailure::Malformed,
                "{bad:?}"
            );
        }
    }
}
