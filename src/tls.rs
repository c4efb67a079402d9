//! TLS configurations (rustls with the ring provider) from PEM files: the API's server side
//! (`TLS_CERT_FILE`, `TLS_KEY_FILE`, `TLS_CLIENT_CA_FILE`) and forward mode's client side
//! (`API_CA_FILE`).
//!
//! Files are read into memory first (see [`ServerFiles`]), so that a reloader can compare
//! what it read with what it serves and build a configuration only when something changed.
//! Every error names the setting whose file is at fault; no error shows a file's content.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The only protocol the API speaks, offered in ALPN.
const HTTP_1_1: &[u8] = b"http/1.1";

/// Makes ring the process's default crypto provider, for any client built without a
/// configuration from here (reqwest's own defaults need one). Idempotent.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The crypto provider of every configuration here.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Where the API's certificate, key and (optionally) client CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Set: every client must present a certificate this CA signed.
    pub client_ca_file: Option<PathBuf>,
}

impl ServerTls {
    /// The files of `TLS_CERT_FILE`, `TLS_KEY_FILE` and `TLS_CLIENT_CA_FILE`; `None` when
    /// HTTPS is off.
    ///
    /// # Errors
    /// Only one of the certificate and the key is set, or a client CA without them.
    pub fn from_settings(
        cert_file: Option<&Path>,
        key_file: Option<&Path>,
        client_ca_file: Option<&Path>,
    ) -> anyhow::Result<Option<Self>> {
        match (cert_file, key_file) {
            (Some(cert), Some(key)) => Ok(Some(Self {
                cert_file: cert.to_path_buf(),
                key_file: key.to_path_buf(),
                client_ca_file: client_ca_file.map(Path::to_path_buf),
            })),
            (None, None) if client_ca_file.is_some() => anyhow::bail!(
                "TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE (client certificates are \
                 asked for over HTTPS only)"
            ),
            (None, None) => Ok(None),
            (Some(_), None) | (None, Some(_)) => {
                anyhow::bail!("TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither")
            }
        }
    }

    /// Reads the files (not yet parsed).
    ///
    /// # Errors
    /// A file cannot be read.
    pub fn read(&self) -> anyhow::Result<ServerFiles> {
        Ok(ServerFiles {
            cert: read(&self.cert_file, "TLS_CERT_FILE")?,
            key: read(&self.key_file, "TLS_KEY_FILE")?,
            client_ca: self
                .client_ca_file
                .as_deref()
                .map(|path| read(path, "TLS_CLIENT_CA_FILE"))
                .transpose()?,
        })
    }
}

/// The content of the API's TLS files, as read.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerFiles {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerFiles(<redacted>)")
    }
}

impl ServerFiles {
    /// The server configuration: this certificate chain and key, HTTP/1.1 in ALPN, and with a
    /// client CA, client certificates required and verified against it.
    ///
    /// # Errors
    /// A file holds no certificate or key, the key does not match the certificate, or the CA
    /// holds no usable certificate.
    pub fn config(&self) -> anyhow::Result<Arc<ServerConfig>> {
        let chain = certificates(&self.cert, "TLS_CERT_FILE")?;
        let key = PrivateKeyDer::from_pem_slice(&self.key)
            .map_err(|e| anyhow::anyhow!("TLS_KEY_FILE holds no usable private key (PEM): {e}"))?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("no TLS protocol version is available")?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let roots = roots(ca, "TLS_CLIENT_CA_FILE")?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .context("TLS_CLIENT_CA_FILE cannot verify client certificates")?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .context("TLS_CERT_FILE and TLS_KEY_FILE do not make a usable certificate and key")?;
        config.alpn_protocols = vec![HTTP_1_1.to_vec()];
        Ok(Arc::new(config))
    }
}

/// A client configuration that trusts the CA in `ca_file` (named `setting` in errors) only,
/// or without one, the system's roots.
///
/// # Errors
/// The file cannot be read or holds no certificate, or (without one) the system has no roots.
pub fn client_config(ca_file: Option<&Path>, setting: &str) -> anyhow::Result<ClientConfig> {
    let roots = match ca_file {
        Some(path) => roots(&read(path, setting)?, setting)?,
        None => system_roots()?,
    };
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("no TLS protocol version is available")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The system's trusted roots (`/etc/ssl/certs` on Debian, or `SSL_CERT_FILE`).
fn system_roots() -> anyhow::Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        anyhow::bail!(
            "the system has no trusted root certificates (install ca-certificates, or name a CA file)"
        );
    }
    Ok(roots)
}

/// The bytes of the file a setting names; an error names the setting and the path.
///
/// # Errors
/// The file cannot be read.
pub fn read(path: &Path, setting: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("Failed to read {setting} {}", path.display()))
}

/// Every certificate in a PEM file; at least one.
fn certificates(pem: &[u8], setting: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{setting} is not a PEM file of certificates: {e}"))?;
    if chain.is_empty() {
        anyhow::bail!("{setting} holds no certificate (PEM, `BEGIN CERTIFICATE`)");
    }
    Ok(chain)
}

/// The certificates of a CA file as trust anchors.
fn roots(pem: &[u8], setting: &str) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(pem, setting)? {
        roots.add(certificate).map_err(|e| {
            anyhow::anyhow!("{setting} holds a certificate that cannot be a CA: {e}")
        })?;
    }
    Ok(roots)
}
