//! TLS to PostgreSQL: `sslmode=verify-full` with `sslrootcert` in `DATABASE_URL` against a
//! private server with `ssl=on` and a certificate from a CA the test makes (openssl), for the
//! name `localhost` only. The connection is encrypted and verified; a wrong host name or
//! another CA is refused, and `require` encrypts without verifying.

use std::path::Path;
use std::process::Command;

use super::*;

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
fn make_ca(dir: &Path, name: &str) {
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

/// A server certificate for `localhost` (DNS name only, no IP address) signed by CA `ca`:
/// server.crt and server.key (mode 0600, as PostgreSQL requires).
fn make_server_cert(dir: &Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
    Command::new("chmod")
        .args(["600", &dir.join("server.key").display().to_string()])
        .status()
        .unwrap();
}

/// `dnsorch migrate` against `url`: whether it succeeded, and what it said.
fn migrate(dir: &Path, url: &str) -> (bool, String) {
    let env = [
        ("DATABASE_URL", url.to_owned()),
        ("SCHEMA_WAIT_SECONDS", "2".to_owned()),
        ("DB_ACQUIRE_TIMEOUT_SECONDS", "2".to_owned()),
    ];
    let output = Dnsorch::output(dir, &["migrate"], &env);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_is_verified_against_the_ca_and_the_host_name() {
    // Arrange: a CA, another CA, and a server with ssl=on and a certificate for localhost.
    let certs = TempDir::new().unwrap();
    make_ca(certs.path(), "ca");
    make_ca(certs.path(), "other-ca");
    let postgres = PrivatePostgres::start_with(|dir| {
        for file in ["ca.pem", "ca.key"] {
            std::fs::copy(certs.path().join(file), dir.join(file)).unwrap();
        }
        make_server_cert(dir, "ca");
        vec![
            "ssl=on".into(),
            format!("ssl_cert_file={}", dir.join("server.crt").display()),
            format!("ssl_key_file={}", dir.join("server.key").display()),
        ]
    });
    let database = postgres.database().await;
    let name = database.rsplit('/').next().unwrap().to_owned();
    let port = postgres.port();
    let ca = certs.path().join("ca.pem").display().to_string();
    let other_ca = certs.path().join("other-ca.pem").display().to_string();
    let url = |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/{name}?{query}");
    let run = TempDir::new().unwrap();

    // Act and assert: verify-full to the certificate's name, with its CA: migrated, over TLS.
    let verified = url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let (ok, said) = migrate(run.path(), &verified);
    assert!(ok, "verify-full with the right CA and host failed: {said}");
    let pool = PgPool::connect(&verified).await.unwrap();
    let (ssl,): (bool,) =
        sqlx::query_as("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(ssl, "the connection is not encrypted");
    let (migrations,): (i64,) = sqlx::query_as("select count(*) from _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(migrations > 0);
    pool.close().await;

    // A host name the certificate does not carry (the address itself): refused.
    let (ok, said) = migrate(
        run.path(),
        &url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
    );
    assert!(
        !ok,
        "verify-full accepted a certificate for another name: {said}"
    );

    // Another CA: refused, whatever the name.
    let (ok, said) = migrate(
        run.path(),
        &url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={other_ca}"),
        ),
    );
    assert!(
        !ok,
        "verify-full accepted a certificate of another CA: {said}"
    );
    let (ok, said) = migrate(
        run.path(),
        &url(
            "localhost",
            &format!("sslmode=verify-ca&sslrootcert={other_ca}"),
        ),
    );
    assert!(
        !ok,
        "verify-ca accepted a certificate of another CA: {said}"
    );

    // verify-ca checks the CA, not the name; require encrypts without checking either.
    let (ok, said) = migrate(
        run.path(),
        &url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")),
    );
    assert!(ok, "verify-ca with the right CA failed: {said}");
    let required = url("127.0.0.1", "sslmode=require");
    let (ok, said) = migrate(run.path(), &required);
    assert!(ok, "require failed: {said}");
    let pool = PgPool::connect(&required).await.unwrap();
    let (ssl,): (bool,) =
        sqlx::query_as("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(ssl, "sslmode=require did not encrypt");
    pool.close().await;
}
