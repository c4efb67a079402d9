//! A certificate authority and certificates made with `openssl` for the TLS tests, and an
//! HTTPS client that trusts a CA. Included by the test crates that need them.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Runs openssl with `args` in `dir`; panics with its output if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "openssl {args:?}: {output:?}");
}

/// A CA (`name`.pem, `name`.key) in `dir`.
pub(crate) fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// A key and certificate `name`.key, `name`.crt for `subject`, with the extensions `ext`,
/// signed by CA `ca` in `dir`; the key mode 0600 (as PostgreSQL requires of its own).
fn make_cert(dir: &Path, ca: &str, name: &str, subject: &str, ext: &str) {
    let (key, csr, crt, ext_file) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &key, "-out", &csr,
        ],
    );
    std::fs::write(dir.join(&ext_file), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext_file,
            "-out",
            &crt,
        ],
    );
    Command::new("chmod")
        .args(["600", &dir.join(&key).display().to_string()])
        .status()
        .unwrap();
}

/// A server certificate for `localhost` (DNS name only, no IP address) signed by CA `ca`:
/// server.crt and server.key.
pub(crate) fn make_server_cert(dir: &Path, ca: &str) {
    make_cert(
        dir,
        ca,
        "server",
        "/CN=localhost",
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    );
}

/// A client certificate (client.crt, client.key) signed by CA `ca` in `dir`.
pub(crate) fn make_client_cert(dir: &Path, ca: &str) {
    make_cert(
        dir,
        ca,
        "client",
        "/CN=dnsorch",
        "extendedKeyUsage=clientAuth\n",
    );
}

/// An HTTPS client that trusts the CA in `ca`, presents `identity` (a `name`.crt and
/// `name`.key in `dir`) when given, and sends `token` when given.
pub(crate) fn https_client(
    ca: &Path,
    identity: Option<(&Path, &str)>,
    token: Option<&str>,
) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((dir, name)) => {
            let chain = CertificateDer::pem_file_iter(dir.join(format!("{name}.crt")))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let mut value = format!("Bearer {token}")
            .parse::<reqwest::header::HeaderValue>()
            .unwrap();
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}
