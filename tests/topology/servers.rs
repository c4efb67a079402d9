//! Real servers for the topology tests: the shared PostgreSQL and Redis that
//! `scripts/test.sh` starts (a database and a stream per test), private instances for tests
//! that stop and restart a server, and `dnsorch` processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub(crate) use crate::support::{create_database, shared_postgres_database};

const PGBIN: &str = "/usr/lib/postgresql/15/bin";

/// A free TCP port on loopback (it could be taken again before use, which is unlikely).
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn wait_until(what: &str, bound: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} not ready within {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop_child(child: &mut Child, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The shared Redis.
pub(crate) fn shared_redis_url() -> String {
    std::env::var("TEST_REDIS_URL")
        .expect("TEST_REDIS_URL is not set: run the tests with scripts/test.sh")
}

/// A PostgreSQL of this test's own, which it may stop and start again.
pub(crate) struct PrivatePostgres {
    dir: TempDir,
    port: u16,
    server: Option<Child>,
    /// Extra `-c name=value` server settings.
    settings: Vec<String>,
}

impl PrivatePostgres {
    pub(crate) fn start() -> Self {
        Self::start_with(|_| Vec::new())
    }

    /// Starts a server whose extra settings `settings` makes from its directory (where files
    /// it needs, such as certificates, can be put first; they are given to the server's user).
    pub(crate) fn start_with(settings: impl FnOnce(&Path) -> Vec<String>) -> Self {
        let dir = TempDir::new().unwrap();
        let root = is_root();
        if root {
            Command::new("chmod")
                .args(["755", &dir.path().display().to_string()])
                .status()
                .unwrap();
            Command::new("chown")
                .args(["postgres:", &dir.path().display().to_string()])
                .status()
                .unwrap();
        }
        let data = dir.path().join("data");
        let status = as_postgres(root, &format!("{PGBIN}/initdb"))
            .args([
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-locale",
                "-N",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "initdb failed");
        let settings = settings(dir.path());
        if root {
            Command::new("chown")
                .args(["-R", "postgres:", &dir.path().display().to_string()])
                .status()
                .unwrap();
        }
        let mut postgres = Self {
            dir,
            port: free_port(),
            server: None,
            settings,
        };
        postgres.start_again();
        postgres
    }

    /// Starts the server on the same data and port.
    pub(crate) fn start_again(&mut self) {
        let root = is_root();
        let log =
            std::fs::File::create(self.dir.path().join(format!("pg-{}.log", free_port()))).unwrap();
        let child = as_postgres(root, &format!("{PGBIN}/postgres"))
            .args(["-D", &self.dir.path().join("data").display().to_string()])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-p",
                &self.port.to_string(),
            ])
            .args([
                "-k",
                &self.dir.path().display().to_string(),
                "-c",
                "fsync=off",
            ])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.server = Some(child);
        let port = self.port.to_string();
        wait_until("private PostgreSQL", Duration::from_secs(30), || {
            Command::new(format!("{PGBIN}/pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
                .status()
                .is_ok_and(|s| s.success())
        });
    }

    /// Fast shutdown: clients are disconnected.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.server.take() {
            stop_child(&mut child, "-INT");
        }
    }

    /// The server's port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// A new database on this server.
    pub(crate) async fn database(&self) -> String {
        create_database(&format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.port
        ))
        .await
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn as_postgres(root: bool, program: &str) -> Command {
    if root {
        let mut command = Command::new("setpriv");
        command.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            program,
        ]);
        command
    } else {
        Command::new(program)
    }
}

/// A Redis of this test's own, which it may stop and start again on the same port.
pub(crate) struct PrivateRedis {
    dir: TempDir,
    port: u16,
    server: Option<Child>,
}

impl PrivateRedis {
    pub(crate) fn start() -> Self {
        let mut redis = Self {
            dir: TempDir::new().unwrap(),
            port: free_port(),
            server: None,
        };
        redis.start_again();
        redis
    }

    pub(crate) fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--dir",
                &self.dir.path().display().to_string(),
                "--daemonize",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.server = Some(child);
        let port = self.port.to_string();
        wait_until("private Redis", Duration::from_secs(10), || {
            Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &port, "ping"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
        });
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.server.take() {
            stop_child(&mut child, "-TERM");
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `dnsorch` process; killed when dropped, so a failing test leaves nothing behind.
pub(crate) struct Dnsorch {
    child: Child,
    pub(crate) log: PathBuf,
}

impl Dnsorch {
    /// Starts `dnsorch <args>` with exactly `env` (plus PATH), logging to a file in `dir`.
    pub(crate) fn spawn(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Self {
        let log = dir.join(format!("dnsorch-{}-{}.log", args.join("-"), free_port()));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dnsorch"))
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Self { child, log }
    }

    /// Runs `dnsorch <args>` to the end and returns whether it succeeded.
    pub(crate) fn run_to_end(dir: &Path, args: &[&str], env: &[(&str, String)]) -> bool {
        let mut process = Self::spawn(dir, args, env);
        let status = process.child.wait().unwrap();
        if !status.success() {
            eprintln!(
                "{}",
                std::fs::read_to_string(&process.log).unwrap_or_default()
            );
        }
        status.success()
    }

    /// Runs `dnsorch <args>` to the end with exactly `env` (plus PATH) and returns what it
    /// wrote: `dnsorch token` prints its answer on standard output and its log on standard
    /// error.
    pub(crate) fn output(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_dnsorch"))
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap()
    }

    /// `dnsorch token create <args>` against the database of `env`: the new secret.
    pub(crate) fn create_token(dir: &Path, env: &[(&str, String)], args: &[&str]) -> String {
        let output = Self::output(dir, &[&["token", "create"][..], args].concat(), env);
        assert!(
            output.status.success(),
            "token create failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// Waits for the process to exit by itself.
    pub(crate) fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// Whether the process has exited.
    pub(crate) fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// The address of its "dnsorch is serving" log line, once it has logged one.
    pub(crate) fn serving_address(&self) -> Option<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("dnsorch is serving"))
            .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .and_then(|line| line["address"].as_str().map(str::to_owned))
    }

    /// Sends `signal` (`-HUP`, …) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub(crate) fn kill_hard(&mut self) {
        stop_child(&mut self.child, "-KILL");
    }
}

impl Drop for Dnsorch {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            stop_child(&mut self.child, "-KILL");
        }
    }
}
