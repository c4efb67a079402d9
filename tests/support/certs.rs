//! A certificate authority and certificates made with `openssl` for the TLS tests.
//! Included by the test crates that need it.

use std::path::Path;
use std::process::Command;

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
