//! The binary itself: configuration from `.env` files and the environment, bad values,
//! `migrate`, `dnsorch token`, and the first run's admin token file.

use std::path::Path;
use std::process::{Command, Output};

fn dnsorch(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dnsorch"));
    command.args(args).current_dir(dir);
    for key in [
        "DATABASE_URL",
        "APP_ENV",
        "SIMULATED_DELAY_SECONDS",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "DNSORCH_CONFIG",
        "ALLOW_SIMULATED",
        "KAFKA_BROKER_URL",
        "API_URL",
    ] {
        command.env_remove(key);
    }
    command.envs(env.iter().copied());
    command.output().expect("dnsorch runs")
}

#[test]
fn migrate_creates_the_default_database_and_exits_zero() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();

    // Act
    let output = dnsorch(dir.path(), &["migrate"], &[]);

    // Assert
    assert!(output.status.success(), "{output:?}");
    assert!(dir.path().join("dnsorch.db").exists());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap()).expect("logs are JSON lines");
    assert_eq!(line["message"], "migrations applied");
}

#[test]
fn the_app_env_profile_overrides_dot_env_and_the_real_environment_wins() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "DATABASE_URL=sqlite://base.db?mode=rwc\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".env.uta"),
        "DATABASE_URL=sqlite://uta.db?mode=rwc\n",
    )
    .unwrap();

    // Act
    let base = dnsorch(dir.path(), &["migrate"], &[]);
    let profile = dnsorch(dir.path(), &["migrate"], &[("APP_ENV", "uta")]);
    let real = dnsorch(
        dir.path(),
        &["migrate"],
        &[
            ("APP_ENV", "uta"),
            ("DATABASE_URL", "sqlite://real.db?mode=rwc"),
        ],
    );

    // Assert
    assert!(base.status.success() && profile.status.success() && real.status.success());
    for file in ["base.db", "uta.db", "real.db"] {
        assert!(dir.path().join(file).exists(), "{file} was not created");
    }
}

#[test]
fn a_missing_profile_file_fails_at_start_naming_it() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();

    // Act
    let output = dnsorch(dir.path(), &["migrate"], &[("APP_ENV", "prod")]);

    // Assert
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("APP_ENV") && stderr.contains(".env.prod"),
        "{stderr}"
    );
}

#[test]
fn a_bad_setting_fails_at_start_naming_the_variable() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();

    for (key, value) in [
        ("SIMULATED_DELAY_SECONDS", "soon"),
        ("SIMULATED_FAILURE_RATE", "2"),
        ("MAX_ATTEMPTS", "0"),
        ("BIND_ADDR", "localhost"),
        ("LOG_FORMAT", "xml"),
        ("LEASE_SECONDS", "-1"),
    ] {
        // Act
        let output = dnsorch(dir.path(), &["migrate"], &[(key, value)]);

        // Assert
        assert!(!output.status.success(), "{key}={value} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{key}={value}: {stderr}");
    }
}

#[test]
fn an_unsupported_database_url_fails_at_start_naming_the_variable() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();

    // Act
    let output = dnsorch(dir.path(), &["migrate"], &[("DATABASE_URL", "mysql://x")]);

    // Assert
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("DATABASE_URL"));
}

#[test]
fn serve_worker_and_direct_consume_refuse_to_start_without_zones_or_allow_simulated() {
    // Arrange: no zones file (none named, no dnsorch.toml in the directory), no
    // ALLOW_SIMULATED; nothing listens at these addresses, and nothing needs to.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "# no zones yet\n").unwrap();
    let env = [
        ("DATABASE_URL", "postgres://dnsorch@127.0.0.1:9/none"),
        ("KAFKA_BROKER_URL", "127.0.0.1:9"),
        ("SCHEMA_WAIT_SECONDS", "1"),
        ("DB_ACQUIRE_TIMEOUT_SECONDS", "1"),
    ];
    let with_empty_file = [&env[..], &[("DNSORCH_CONFIG", empty.to_str().unwrap())]].concat();
    let explicitly_off = [&env[..], &[("ALLOW_SIMULATED", "false")]].concat();

    for (role, env) in [
        ("serve", &env[..]),
        ("worker", &env[..]),
        ("consume", &env[..]),
        ("serve", &with_empty_file[..]),
        ("worker", &explicitly_off[..]),
    ] {
        // Act
        let output = dnsorch(dir.path(), &[role], env);

        // Assert: a non-zero exit whose error names both ways to start.
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "{role} started: {stdout}");
        let error = stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|line| line["level"] == "ERROR")
            .unwrap_or_else(|| panic!("{role}: no error logged: {stdout}"));
        let message = error["error.message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("`dnsorch {role}` refuses to start without zones")),
            "{role}: {message}"
        );
        assert!(message.contains("DNSORCH_CONFIG"), "{role}: {message}");
        assert!(
            message.contains("ALLOW_SIMULATED=true"),
            "{role}: {message}"
        );
    }
}

#[tokio::test]
async fn run_serves_completes_a_request_and_exits_zero_on_sigterm() {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;

    // Arrange: the binary on port 0, with a short simulated delay.
    let dir = tempfile::tempdir().unwrap();
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_dnsorch"))
            .arg("run")
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("APP_ENV")
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("SIMULATED_DELAY_SECONDS", "0.3")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut warnings = Vec::new();
    let address = loop {
        let line: serde_json::Value =
            serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if line["level"] == "WARN" {
            warnings.push(line["message"].as_str().unwrap_or_default().to_owned());
        }
        if line["message"] == "dnsorch is serving" {
            break line["address"].as_str().unwrap().to_owned();
        }
    };
    // Without a zones file `run` keeps the simulated default, and says so.
    assert!(
        warnings.iter().any(|w| w.contains("DNSORCH_CONFIG")
            && w.contains("every name goes to the simulated backend")),
        "{warnings:#?}"
    );
    // The first run wrote its admin token before it listened.
    let token = std::fs::read_to_string(dir.path().join("dnsorch-admin.token")).unwrap();
    let client = http();
    let body = serde_json::json!({
        "context": {"account_id": "acct-1"},
        "resource": {"record_type": "A", "domain": "www.example.test", "target": "192.0.2.70"}
    });

    // Act: submit, then SIGTERM while the request is being provisioned.
    let accepted: serde_json::Value = client
        .post(format!("http://{address}/api/v1/dns/create"))
        .bearer_auth(token.trim())
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let status = child.0.wait().unwrap();

    // Assert: a clean exit, and the request in flight was finished, not dropped.
    assert!(killed.success());
    assert!(status.success(), "exit status {status}");
    let url = format!("sqlite://{}/dnsorch.db", dir.path().display());
    let store = dnsorch::store::SqliteStore::open(&url, std::time::Duration::from_secs(2))
        .await
        .unwrap();
    let id = accepted["request_id"].as_str().unwrap().parse().unwrap();
    let request = dnsorch::store::RequestStore::get(&store, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(request.status, dnsorch::domain::RequestStatus::Completed);
}

/// Kills the child if the test ends (or panics) while it still runs, so nothing leaks.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `dnsorch token create <args>` in `dir`, which must succeed: its secret.
fn create_token(dir: &Path, args: &[&str]) -> String {
    let output = dnsorch(dir, &[&["token", "create"][..], args].concat(), &[]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    stdout_of(&output).trim().to_owned()
}

/// `dnsorch token list` in `dir`: its token lines (without the header), split at tabs.
fn token_lines(dir: &Path) -> (String, Vec<Vec<String>>) {
    let output = dnsorch(dir, &["token", "list"], &[]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let stdout = stdout_of(&output);
    let mut lines = stdout.lines();
    assert!(
        lines.next().unwrap().starts_with("id\taccount\tname"),
        "{stdout}"
    );
    let tokens = lines
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    (stdout, tokens)
}

/// The bytes of the SQLite database in `dir` (its main file and write-ahead log).
fn database_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(dir.join("dnsorch.db")).unwrap();
    bytes.extend(std::fs::read(dir.join("dnsorch.db-wal")).unwrap_or_default());
    bytes
}

#[test]
fn token_create_prints_only_the_secret_and_list_and_show_never_do() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();

    // Act
    let created = dnsorch(
        dir.path(),
        &[
            "token",
            "create",
            "--account",
            "acct-1",
            "--name",
            "ci",
            "--policy",
            "example.test=read,create",
            "--expires-in",
            "90d",
            "--allowed-subnet",
            "10.0.0.0/8",
        ],
        &[],
    );
    let (listed, tokens) = token_lines(dir.path());
    let shown = dnsorch(dir.path(), &["token", "show", &tokens[0][0]], &[]);

    // Assert: standard output is the secret alone; the details go to standard error and
    // never name it, and the database holds only its digest.
    assert!(created.status.success(), "{}", stderr_of(&created));
    let stdout = stdout_of(&created);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let secret = lines[0];
    let random = secret
        .strip_prefix("dnsorch_")
        .expect("the dnsorch_ prefix");
    assert_eq!(random.len(), 48, "{secret}");
    assert!(random.chars().all(|c| c.is_ascii_hexdigit()), "{secret}");
    assert!(stderr_of(&created).contains("\"account\": \"acct-1\""));
    assert!(!stderr_of(&created).contains(secret));
    assert_eq!(tokens.len(), 1, "{listed}");
    assert_eq!(tokens[0][1..3], ["acct-1", "ci"]);
    assert!(tokens[0][4].starts_with("example.test="), "{listed}");
    assert_ne!(tokens[0][5], "-", "no expiry listed: {listed}");
    assert!(!listed.contains(secret));
    assert!(shown.status.success(), "{}", stderr_of(&shown));
    let token: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(token["name"], "ci");
    assert_eq!(token["allowed_subnets"], serde_json::json!(["10.0.0.0/8"]));
    assert!(token.get("secret").is_none(), "{token}");
    assert!(!stdout_of(&shown).contains(secret));
    let stored = database_bytes(dir.path());
    assert!(
        !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the secret is in the database"
    );
}

#[test]
fn a_bad_policy_fails_naming_it_and_stores_no_token() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();

    for policy in ["example.test=read,fly", "example.test", "bad..name=read"] {
        // Act
        let output = dnsorch(
            dir.path(),
            &[
                "token",
                "create",
                "--account",
                "acct-1",
                "--name",
                "ci",
                "--policy",
                policy,
            ],
            &[],
        );

        // Assert
        assert!(!output.status.success(), "--policy {policy} was accepted");
        assert_eq!(stdout_of(&output), "", "--policy {policy}");
        let stderr = stderr_of(&output);
        assert!(
            stderr.contains("--policy") && stderr.contains(policy),
            "--policy {policy}: {stderr}"
        );
    }
    assert_eq!(token_lines(dir.path()).1.len(), 0);
}

#[test]
fn the_last_valid_admin_token_cannot_be_revoked_and_list_shows_no_secrets() {
    // Arrange: an admin token and an ordinary one.
    let dir = tempfile::tempdir().unwrap();
    let first = create_token(
        dir.path(),
        &["--account", "admin", "--name", "first-admin", "--admin"],
    );
    let user = create_token(dir.path(), &["--account", "acct-1", "--name", "user"]);
    let id_of = |name: &str| {
        token_lines(dir.path())
            .1
            .into_iter()
            .find(|t| t[2] == name)
            .unwrap()[0]
            .clone()
    };
    let (first_id, user_id) = (id_of("first-admin"), id_of("user"));

    // Act
    let last_admin = dnsorch(dir.path(), &["token", "revoke", &first_id], &[]);
    let ordinary = dnsorch(dir.path(), &["token", "revoke", &user_id], &[]);
    let second = create_token(
        dir.path(),
        &["--account", "admin", "--name", "second-admin", "--admin"],
    );
    let no_longer_last = dnsorch(dir.path(), &["token", "revoke", &first_id], &[]);
    let now_last = dnsorch(
        dir.path(),
        &["token", "revoke", &id_of("second-admin")],
        &[],
    );

    // Assert: refused with a message while it is the last valid admin token, and allowed
    // once another exists.
    assert!(!last_admin.status.success());
    assert!(
        stderr_of(&last_admin).contains("last valid admin token"),
        "{}",
        stderr_of(&last_admin)
    );
    assert!(ordinary.status.success(), "{}", stderr_of(&ordinary));
    assert!(
        no_longer_last.status.success(),
        "{}",
        stderr_of(&no_longer_last)
    );
    assert!(!now_last.status.success());
    assert!(stderr_of(&now_last).contains("last valid admin token"));
    let (listed, tokens) = token_lines(dir.path());
    let revoked: Vec<(&str, bool)> = tokens
        .iter()
        .map(|t| (t[2].as_str(), t[6] != "-"))
        .collect();
    assert_eq!(
        revoked,
        [
            ("second-admin", false),
            ("user", true),
            ("first-admin", true)
        ],
        "{listed}"
    );
    for secret in [&first, &user, &second] {
        assert!(!listed.contains(secret.as_str()), "{listed}");
    }
}

/// An HTTP client (ring installed as the default TLS provider first, which reqwest's own
/// configuration needs).
fn http() -> reqwest::Client {
    dnsorch::tls::install_default_provider();
    reqwest::Client::new()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `dnsorch run` in `dir` on `port`, logging to `log`.
fn spawn_run(dir: &Path, port: u16, log: &Path) -> KillOnDrop {
    let log = std::fs::File::create(log).unwrap();
    KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_dnsorch"))
            .arg("run")
            .current_dir(dir)
            .env_remove("DATABASE_URL")
            .env_remove("APP_ENV")
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("LOG_LEVEL", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// Polls `/readyz` on `port` until it answers at all; then whether `file` existed, checked
/// right after that first answer.
async fn first_answer_finds(port: u16, file: &Path) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if http()
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok()
        {
            return file.exists();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dnsorch run never answered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// SIGTERM, and wait for the exit.
async fn terminate(mut child: KillOnDrop) {
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.0.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

async fn list_requests_status(port: u16, token: Option<&str>) -> reqwest::StatusCode {
    let mut request = http().get(format!("http://127.0.0.1:{port}/api/v1/dns/requests"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn run_writes_an_owner_only_admin_token_file_before_it_answers_and_keeps_it_on_restart() {
    use std::os::unix::fs::PermissionsExt as _;

    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dnsorch-admin.token");
    let port = free_port();

    // Act: a first start on a fresh directory, then a second one.
    let first = spawn_run(dir.path(), port, &dir.path().join("first.log"));
    let there_at_first_answer = first_answer_finds(port, &file).await;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    let written = std::fs::read_to_string(&file).unwrap();
    let secret = written.trim().to_owned();
    let with_token = list_requests_status(port, Some(&secret)).await;
    let without = list_requests_status(port, None).await;
    terminate(first).await;
    let second = spawn_run(dir.path(), port, &dir.path().join("second.log"));
    let there_again = first_answer_finds(port, &file).await;
    let after_restart = list_requests_status(port, Some(&secret)).await;
    terminate(second).await;

    // Assert: there when it first answered, owner-only, one line, working; unchanged by the
    // second start, which made no second admin token; and never in the logs.
    assert!(
        there_at_first_answer,
        "no admin token file when /readyz first answered"
    );
    assert_eq!(mode, 0o600, "mode {mode:o}");
    assert_eq!(written.lines().count(), 1, "{written:?}");
    assert!(secret.starts_with("dnsorch_"), "{secret}");
    assert_eq!(
        (with_token, without),
        (reqwest::StatusCode::OK, reqwest::StatusCode::UNAUTHORIZED)
    );
    assert!(there_again);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);
    assert_eq!(after_restart, reqwest::StatusCode::OK);
    let (_, tokens) = token_lines(dir.path());
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(
        tokens[0][1..4],
        ["admin", "first-run admin", "admin,metrics"]
    );
    let first_log = std::fs::read_to_string(dir.path().join("first.log")).unwrap();
    let second_log = std::fs::read_to_string(dir.path().join("second.log")).unwrap();
    assert!(
        first_log.contains("dnsorch-admin.token"),
        "the first run did not say where the token is: {first_log}"
    );
    assert!(!first_log.contains(&secret) && !second_log.contains(&secret));
}

#[test]
fn a_lease_margin_not_less_than_the_lease_fails_at_start_naming_both() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();

    // Act
    let output = dnsorch(
        dir.path(),
        &["run"],
        &[
            ("LEASE_SECONDS", "10"),
            ("LEASE_MARGIN_SECONDS", "10"),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("OPS_ADDR", "127.0.0.1:0"),
        ],
    );

    // Assert
    assert!(!output.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains("LEASE_MARGIN_SECONDS") && said.contains("LEASE_SECONDS ("),
        "{said}"
    );
}

#[test]
fn a_url_with_a_password_on_the_command_line_is_refused_without_echoing_it() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let secret = "cmdline-secret-4711";

    // Act: the password in a flag, before and after the subcommand, of each URL setting.
    let refused: Vec<Output> = [
        vec![
            "--database-url".to_owned(),
            format!("postgres://u:{secret}@127.0.0.1:1/x"),
            "migrate".to_owned(),
        ],
        vec![
            "serve".to_owned(),
            "--celery-broker-url".to_owned(),
            format!("redis://:{secret}@127.0.0.1:1/0"),
        ],
        vec![
            "consume".to_owned(),
            "--api-url".to_owned(),
            format!("https://u:{secret}@127.0.0.1:1/api/v1/dns/create"),
        ],
        vec![
            "webhook".to_owned(),
            "--webhook-token".to_owned(),
            secret.to_owned(),
        ],
    ]
    .iter()
    .map(|args| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dnsorch(dir.path(), &args, &[])
    })
    .collect();
    // Without a password the flag is fine.
    let plain = dnsorch(
        dir.path(),
        &["--database-url", "sqlite://flag.db?mode=rwc", "migrate"],
        &[],
    );

    // Assert: exit 2, naming the flag and the variable to use, never the password.
    for (output, (flag, variable)) in refused.iter().zip([
        ("--database-url", "DATABASE_URL"),
        ("--celery-broker-url", "CELERY_BROKER_URL"),
        ("--api-url", "API_URL"),
        ("--webhook-token", "WEBHOOK_TOKEN"),
    ]) {
        let said = format!("{}{}", stdout_of(output), stderr_of(output));
        assert_eq!(output.status.code(), Some(2), "{said}");
        assert!(said.contains(flag) && said.contains(variable), "{said}");
        assert!(!said.contains(secret), "{said}");
    }
    assert!(plain.status.success(), "{plain:?}");
}

#[tokio::test]
async fn passwords_in_urls_stay_out_of_help_readyz_and_logs() {
    // Arrange: `run` whose Redis URL (a closed port) and API_URL carry passwords.
    let dir = tempfile::tempdir().unwrap();
    let secret = "url-secret-0815";
    let port = free_port();
    let redis = format!("redis://:{secret}@127.0.0.1:{}/0", free_port());
    let help = dnsorch(
        dir.path(),
        &["--help"],
        &[
            (
                "DATABASE_URL",
                &format!("postgres://u:{secret}@127.0.0.1:1/x"),
            ),
            ("CELERY_BROKER_URL", &redis),
            ("API_URL", &format!("https://u:{secret}@127.0.0.1:1/x")),
        ],
    );
    let log_path = dir.path().join("run.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_dnsorch"))
            .arg("run")
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("APP_ENV")
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("CELERY_BROKER_URL", &redis)
            .env("LOG_LEVEL", "debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

    // Act: /readyz (which pings the channel and logs why it fails) once it answers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let readyz = loop {
        let answer = http()
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await;
        if let Ok(answer) = answer {
            break answer.text().await.unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "run never answered");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    terminate(child).await;

    // Assert: the channel is reported down, and the password is nowhere.
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(readyz.contains("unavailable"), "{readyz}");
    assert!(
        logs.contains("the task channel does not answer"),
        "the failure was not logged: {logs}"
    );
    let help = format!("{}{}", stdout_of(&help), stderr_of(&help));
    assert!(help.contains("DATABASE_URL"), "{help}");
    for (what, text) in [("--help", &help), ("/readyz", &readyz), ("the log", &logs)] {
        assert!(!text.contains(secret), "{what} shows the password: {text}");
    }
}
