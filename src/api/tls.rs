//! HTTPS for the listener (`TLS_CERT_FILE`, `TLS_KEY_FILE`, `TLS_CLIENT_CA_FILE`): the TLS
//! handshake of each connection, a clear answer to plain HTTP, and certificates re-read while
//! the process runs.
//!
//! - Every new connection gets the configuration current when it was accepted; connections
//!   already open keep theirs, so a reload drops none of them.
//! - The files are read again every `TLS_RELOAD_INTERVAL_SECONDS` and on SIGHUP. When their
//!   content changed and they make a valid configuration, it replaces the current one; when
//!   they do not (a key written before its certificate, say), the current one stays and the
//!   error is logged, and the next read tries again.
//! - A connection whose first byte is not a TLS handshake record but a letter (`GET`,
//!   `POST`, …) is plain HTTP: it is answered `400` with a JSON body saying to use
//!   `https://`, then closed. Any other first byte closes the connection.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::tls::{ServerFiles, ServerTls};

/// The first byte of a TLS record that carries a handshake message (a ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

/// The most bytes of a plain-HTTP request read before it is answered.
const PLAIN_HEAD_MAX: usize = 16 * 1024;

/// The answer to plain HTTP on the HTTPS port.
const PLAIN_HTTP_BODY: &str = r#"{"error":"https_required","message":"this port speaks HTTPS: send the request to https:// instead of http://"}"#;

/// The TLS side of the listener: the configuration new connections get.
#[derive(Clone)]
pub struct Acceptor {
    files: ServerTls,
    current: Arc<RwLock<Loaded>>,
}

/// What was last loaded: the files as read, and the configuration they made.
struct Loaded {
    files: ServerFiles,
    config: Arc<ServerConfig>,
}

/// How a connection's opening went.
pub enum Accepted {
    /// A TLS session, ready for HTTP.
    Tls(Box<TlsStream<TcpStream>>),
    /// Plain HTTP: answered 400 and closed.
    PlainHttp,
    /// Neither (or closed before its first byte): closed.
    NotTls,
}

impl Acceptor {
    /// Reads `files` and builds the first configuration.
    ///
    /// # Errors
    /// A file cannot be read, or they do not make a valid configuration.
    pub fn new(files: ServerTls) -> anyhow::Result<Self> {
        let read = files.read()?;
        let config = read.config()?;
        Ok(Self {
            files,
            current: Arc::new(RwLock::new(Loaded {
                files: read,
                config,
            })),
        })
    }

    fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .config
            .clone()
    }

    /// Reads the files again and, when their content changed, replaces the configuration.
    /// Answers whether it was replaced.
    ///
    /// # Errors
    /// A file cannot be read, or the new content does not make a valid configuration (the
    /// current one stays).
    pub fn reload(&self) -> anyhow::Result<bool> {
        let read = self.files.read()?;
        let unchanged = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .files
            == read;
        if unchanged {
            return Ok(false);
        }
        let config = read.config()?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Loaded {
            files: read,
            config,
        };
        Ok(true)
    }

    /// Reloads every `interval` and on SIGHUP until `stop` fires; logs what changed and
    /// what failed.
    pub async fn watch(self, interval: Duration, stop: CancellationToken) {
        let mut hangup = hangup_signal();
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            let trigger = tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => "interval",
                () = next_hangup(&mut hangup) => "SIGHUP",
            };
            let reloaded = self.reload();
            let result = match &reloaded {
                Ok(true) => "reloaded",
                Ok(false) => "unchanged",
                Err(_) => "failed",
            };
            metrics::counter!("dnsorch_tls_reloads_total", "result" => result).increment(1);
            match reloaded {
                Ok(true) => tracing::info!(
                    trigger,
                    cert_file = %self.files.cert_file.display(),
                    "TLS certificate reloaded; new connections use it"
                ),
                Ok(false) if trigger == "SIGHUP" => {
                    tracing::info!("SIGHUP: the TLS files are unchanged");
                }
                Ok(false) => {}
                Err(e) => tracing::error!(
                    trigger,
                    error.message = %format!("{e:#}"),
                    "could not reload the TLS certificate; connections keep the current one"
                ),
            }
        }
    }

    /// Opens a connection: the TLS handshake, or the answer to plain HTTP. The caller bounds
    /// it in time.
    ///
    /// # Errors
    /// The handshake failed (the client does not trust the certificate, has no client
    /// certificate when one is required, …) or the connection broke.
    pub async fn accept(&self, mut stream: TcpStream) -> std::io::Result<Accepted> {
        let mut first = [0u8; 1];
        if stream.peek(&mut first).await? == 0 {
            return Ok(Accepted::NotTls);
        }
        if first[0] == TLS_HANDSHAKE {
            let acceptor = tokio_rustls::TlsAcceptor::from(self.config());
            return Ok(Accepted::Tls(Box::new(acceptor.accept(stream).await?)));
        }
        if first[0].is_ascii_uppercase() {
            answer_plain_http(&mut stream).await?;
            return Ok(Accepted::PlainHttp);
        }
        Ok(Accepted::NotTls)
    }
}

/// Reads the request head (up to `PLAIN_HEAD_MAX`), answers 400 and closes, reading what the
/// client still sends so that the answer is not lost to a reset.
async fn answer_plain_http(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0u8; 4096];
    while head.len() < PLAIN_HEAD_MAX && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..n]);
    }
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{PLAIN_HTTP_BODY}",
        PLAIN_HTTP_BODY.len()
    );
    stream.write_all(answer.as_bytes()).await?;
    stream.shutdown().await?;
    let mut drained = 0;
    while drained < PLAIN_HEAD_MAX {
        match stream.read(&mut buffer).await? {
            0 => break,
            n => drained += n,
        }
    }
    Ok(())
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .inspect_err(|e| tracing::warn!(error.message = %e, "SIGHUP cannot be caught; TLS files are reloaded by interval only"))
        .ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(signal: &mut Hangup) {
    let received = match signal {
        Some(signal) => signal.recv().await.is_some(),
        None => false,
    };
    if !received {
        std::future::pending::<()>().await;
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending().await
}
