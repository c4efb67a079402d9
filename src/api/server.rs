//! The HTTP/1.1 server under the router: accepts connections, gives each request head a
//! deadline, and stops gracefully.
//!
//! hyper's `header_read_timeout` is one deadline for the whole head, set when the server starts
//! waiting for it and not moved by the bytes that arrive: a client that never finishes its
//! headers, or sends nothing at all, has its connection closed when it passes, so slow clients
//! cannot hold connections. There is no cap on connections.
//!
//! With TLS (see [`super::tls`]) the handshake, or the answer to plain HTTP, must also end
//! within that time from the accept; the head's deadline starts after it.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::tls::{Accepted, Acceptor};

/// How long the server waits after an accept error that is not about one connection (too many
/// open files, say) before accepting again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `shutdown` fires, then stops accepting, lets every
/// connection finish the request it is answering, and returns. Handlers see the peer's address
/// as `ConnectInfo<SocketAddr>`. With `tls`, every connection is HTTPS.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Acceptor>,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                tracing::warn!(error.message = %e, "could not accept a connection");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move { router.oneshot(request.map(Body::new)).await }
        });
        let (shutdown, tls) = (shutdown.clone(), tls.clone());
        connections.spawn(async move {
            let Some(tls) = tls else {
                return serve_connection(stream, peer, service, header_read_timeout, shutdown)
                    .await;
            };
            let opened = tokio::select! {
                opened = tokio::time::timeout(header_read_timeout, tls.accept(stream)) => opened,
                () = shutdown.cancelled() => return,
            };
            match opened {
                Ok(Ok(Accepted::Tls(stream))) => {
                    serve_connection(*stream, peer, service, header_read_timeout, shutdown).await;
                }
                Ok(Ok(Accepted::PlainHttp)) => refused("plain_http"),
                Ok(Ok(Accepted::NotTls)) => refused("not_tls"),
                Ok(Err(e)) => {
                    refused("handshake");
                    tracing::debug!(peer = %peer, error.message = %e, "TLS handshake failed");
                }
                Err(_) => {
                    refused("timeout");
                    tracing::debug!(peer = %peer, "TLS handshake timed out");
                }
            }
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Counts an HTTPS connection that never got to HTTP.
fn refused(reason: &'static str) {
    metrics::counter!("dnsorch_tls_refused_connections_total", "reason" => reason).increment(1);
}

/// Serves HTTP/1.1 on one connection until it closes, or until `shutdown` fires and the
/// request being answered is finished.
async fn serve_connection<I, S>(
    io: I,
    peer: std::net::SocketAddr,
    service: S,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer, error.message = %e, "connection ended with an error");
    }
}

/// Errors about one connection, which the next accept does not share.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
