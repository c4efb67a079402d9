//! Authentication of HTTP requests: every `/api/v1/…` route sits behind [`require_token`],
//! which turns `Authorization: Bearer <token>` into a [`Caller`] or answers 401 before any
//! handler (or body parsing) runs. `/metrics` checks its own token (admin or `metrics`)
//! unless `METRICS_PUBLIC` is set; `/healthz` and `/readyz` are open.
//!
//! The client address is the socket's peer; `X-Forwarded-For` counts only when the peer is
//! one of `TRUSTED_PROXIES`, and then the right-most address that is not a trusted proxy is
//! the client.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{Access, AppState};
use crate::auth::{AuthError, AuthFailure, FORWARDED_BY, bearer};
use crate::domain::{Actor, Source, Subnet};

/// The authenticated caller of an API request.
#[derive(Debug, Clone)]
pub struct Caller(pub Actor);

impl Caller {
    /// Refuses callers that are not admins.
    ///
    /// # Errors
    /// 403.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.0.principal.admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "only admin tokens may do this (tokens, the audit log, adoptions)".into(),
            ))
        }
    }

    /// The account filter of a list: admins ask for any account (or all), others see only
    /// their own. `None`: the caller asked for another account's rows and sees none.
    pub fn account_scope(&self, asked: Option<String>) -> Option<Option<String>> {
        let principal = &self.0.principal;
        match asked {
            _ if principal.admin => Some(asked),
            None => Some(Some(principal.account_id.clone())),
            Some(account) if account == principal.account_id => Some(Some(account)),
            Some(_) => None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Taken, not cloned: one handler extracts the caller once.
        parts.extensions.remove::<Self>().ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("a route is missing the token layer"))
        })
    }
}

/// The middleware in front of every `/api/v1/…` route.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    match authenticate(&state.access, request.headers(), peer).await {
        Ok(actor) => {
            request.extensions_mut().insert(Caller(actor));
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

/// The middleware in front of the token endpoints, inside [`require_token`]: only admins
/// pass.
pub async fn require_admin(request: Request, next: Next) -> Response {
    match request
        .extensions()
        .get::<Caller>()
        .map(Caller::require_admin)
    {
        Some(Ok(())) => next.run(request).await,
        Some(Err(e)) => e.into_response(),
        None => ApiError::Internal(anyhow::anyhow!("require_admin runs without require_token"))
            .into_response(),
    }
}

/// Authenticates the request's bearer token, as the client at `peer` (after proxies).
///
/// # Errors
/// 401 for a missing or refused token, 503 when the database is unavailable.
pub async fn authenticate(
    access: &Access,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Actor, ApiError> {
    let client = peer.map(|p| client_address(p, headers, &access.trusted_proxies));
    let presented = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let principal = match bearer(presented) {
        Ok(secret) => access.auth.authenticate(&secret, client).await,
        Err(failure) => Err(failure.into()),
    };
    match principal {
        Ok(principal) => Ok(Actor {
            principal,
            source: Source::Api,
            client_addr: client,
        }),
        Err(AuthError::Refused(failure)) => {
            failure.emit("http");
            tracing::info!(reason = failure.reason(), client = ?client, "request refused: {failure}");
            Err(ApiError::Unauthorized(failure))
        }
        Err(AuthError::Store(e)) => Err(e.into()),
    }
}

/// The source to record: `kafka` when the request carries a valid `--forwarder` token in
/// [`FORWARDED_BY`], else `api`.
///
/// # Errors
/// 401 for a refused token there, 403 for one that is not a forwarder.
pub async fn forwarded_source(
    state: &AppState,
    headers: &HeaderMap,
    client: Option<IpAddr>,
) -> Result<Source, ApiError> {
    let Some(value) = headers.get(FORWARDED_BY) else {
        return Ok(Source::Api);
    };
    let principal = match bearer(Some(value.as_bytes())) {
        Ok(secret) => state.access.auth.authenticate(&secret, client).await,
        Err(failure) => Err(failure.into()),
    };
    match principal {
        Ok(principal) if principal.forwarder => Ok(Source::Kafka),
        Ok(_) => Err(ApiError::Forbidden(format!(
            "{FORWARDED_BY} needs a token created with --forwarder"
        ))),
        Err(AuthError::Refused(failure)) => {
            failure.emit("http");
            Err(ApiError::Unauthorized(failure))
        }
        Err(AuthError::Store(e)) => Err(e.into()),
    }
}

/// Checks the token of a `/metrics` scrape: an admin or `metrics` token, unless the
/// metrics are public.
///
/// # Errors
/// 401 or 403.
pub async fn authorize_metrics(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<(), ApiError> {
    if state.access.metrics_public {
        return Ok(());
    }
    let actor = authenticate(&state.access, headers, peer).await?;
    if actor.principal.admin || actor.principal.metrics {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "/metrics needs an admin token or one created with --metrics".into(),
        ))
    }
}

/// The client: the peer, or when the peer is a trusted proxy, the right-most address of
/// `X-Forwarded-For` that is not a trusted proxy.
fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[Subnet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|s| s.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map_while(|hop| hop.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect();
    hops.iter()
        .rev()
        .copied()
        .find(|ip| !is_trusted(*ip))
        .or_else(|| hops.first().copied())
        .unwrap_or(peer)
}

/// Why a 401: the reason, and an RFC 6750 challenge.
pub(super) fn challenge(failure: AuthFailure) -> &'static str {
    match failure {
        AuthFailure::Missing => "Bearer realm=\"dnsorch\"",
        AuthFailure::Malformed => "Bearer realm=\"dnsorch\", error=\"invalid_request\"",
        AuthFailure::Unknown
        | AuthFailure::Revoked
        | AuthFailure::Expired
        | AuthFailure::Subnet => "Bearer realm=\"dnsorch\", error=\"invalid_token\"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let trusted: Vec<Subnet> = vec!["10.0.0.0/8".parse().unwrap()];
        let headers = forwarded("198.51.100.7, 10.0.0.2");
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            client_address(proxy, &headers, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_address(stranger, &headers, &trusted), stranger);
        assert_eq!(client_address(proxy, &HeaderMap::new(), &trusted), proxy);
        // A client cannot hide behind a spoofed left-most entry.
        let spoofed = forwarded("10.9.9.9, 198.51.100.7");
        assert_eq!(
            client_address(proxy, &spoofed, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }
}
