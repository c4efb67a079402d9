//! The `ansible` backend: runs `ansible-playbook <playbook> --extra-vars @<fifo>` for each
//! change, with no shell in between.
//!
//! The variables are the zone's `vars` and `secret_vars` plus the request's fields:
//! `operation` (create, delete or replace), `zone`, `domain`, `record_type`, `rdatas` (every
//! record of the change in presentation form: the records a create adds or a delete removes,
//! none for a whole-RRset delete, the whole new RRset of a replace), `rdata` (the first of
//! them, empty when there is none), `ttl`, `request_id` and `account_id`;
//! `playbooks/nsupdate.yml` shows a playbook that uses them. The variables are YAML with every
//! string marked `!unsafe`, so Ansible never evaluates `{{ }}` in a client's data (a TXT
//! record's text would otherwise be a template, able to run commands). They reach
//! ansible-playbook through a FIFO (mode 0600, in a directory of mode 0700) whose name is
//! removed as soon as ansible-playbook opens it, so no file ever holds them, secrets
//! included. No process of a run outlives it (see [`PlaybookRun`]): when ansible-playbook
//! exits, what it left running is killed, and when the run does not finish (the timeout
//! passed, or the worker dropped the attempt at shutdown or on losing its lease) all of it
//! is, Ansible's workers and their children (`nsupdate`, ssh) too, so none can apply the
//! change later. Exit status 0 is success; the tail of the output goes into the request's
//! log with every known secret redacted, as given or JSON-escaped, also where line breaks split
//! it (redacted before the tail is cut). With a `verify_server`, the change is then verified
//! by DNS query (a replace: exactly its records with the TTL); without one it is logged as not
//! verified. The worker read the RRset before (from the `verify_server`, else the ledger) and
//! refused records dnsorch does not manage; a whole-RRset delete needs a `verify_server`, since
//! the playbook removes whatever the server holds.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use chrono::Utc;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt as _};

use super::dns::{
    Expect, absolute, change_rdatas, dns_type, live_rrset, observe, query, verify_at,
};
use super::{Applied, Observed, PlannedChange, ProvisionError, Provisioner};
use crate::domain::{LiveRrset, Operation, RecordType};
use crate::zones::AnsibleZone;

/// How much of the playbook's output goes into the request's log.
const TAIL_LINES: usize = 20;
/// The most output kept while the playbook runs (per stream).
const KEEP_BYTES: usize = 64 * 1024;
/// The bound on one verification query.
const QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs a playbook for each change of one zone.
#[derive(Debug)]
pub struct AnsibleProvisioner {
    zone: String,
    config: AnsibleZone,
    /// Every secret dnsorch knows of, redacted from the output.
    secrets: Vec<String>,
}

impl AnsibleProvisioner {
    /// The backend for `zone`; `secrets` are redacted from the playbook's output.
    pub fn new(zone: &str, config: AnsibleZone, secrets: Vec<String>) -> Self {
        Self {
            zone: zone.to_owned(),
            config,
            secrets,
        }
    }

    fn variables(&self, change: &PlannedChange) -> Result<serde_json::Value, ProvisionError> {
        let rdatas: Vec<String> = change.records.iter().map(|r| r.presentation()).collect();
        let rdata = rdatas.first().cloned().unwrap_or_default();
        let mut vars = self.config.vars.clone();
        for (name, secret) in &self.config.secret_vars {
            vars.insert(name.clone(), secret.text.clone().into());
        }
        let fields = serde_json::json!({
            "operation": change.operation.as_str(),
            "zone": self.zone,
            "domain": change.domain,
            "record_type": change.record_type.as_str(),
            "rdata": rdata,
            "rdatas": rdatas,
            "ttl": change.config.ttl,
            "request_id": change.request_id.to_string(),
            "account_id": change.account_id,
        });
        if let serde_json::Value::Object(fields) = fields {
            vars.extend(fields);
        }
        Ok(serde_json::Value::Object(vars))
    }

    /// Runs the playbook with `vars` (the YAML text); the log note on success.
    async fn run(&self, vars: String) -> Result<String, ProvisionError> {
        let pipe = VarsPipe::create().map_err(|e| {
            ProvisionError::Transient(format!("could not create the vars pipe: {e}"))
        })?;
        let started = Instant::now();
        let mut command = tokio::process::Command::new(&self.config.program);
        command
            .arg(&self.config.playbook)
            .arg("--extra-vars")
            .arg(format!("@{}", pipe.fifo.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut playbook = PlaybookRun::spawn(command).map_err(|e| {
            ProvisionError::Rejected(format!(
                "could not start {}: {e}",
                self.config.program.display()
            ))
        })?;
        let stdout = tokio::spawn(keep_tail(playbook.child.stdout.take().expect("piped")));
        let stderr = tokio::spawn(keep_tail(playbook.child.stderr.take().expect("piped")));
        let run = async {
            // The variables, unless the playbook exits before it reads them.
            let sent = tokio::select! {
                sent = pipe.send(vars) => Some(sent),
                _ = playbook.wait() => None,
            };
            let status = playbook.wait().await;
            // What the playbook left running may hold its output open: gone first.
            let left = playbook.kill_left_over().await;
            let out = stdout.await.unwrap_or_default();
            let err = stderr.await.unwrap_or_default();
            (sent, out, err, status, left)
        };
        let Ok((sent, out, err, status, left)) =
            tokio::time::timeout(self.config.timeout, run).await
        else {
            // Dropping `playbook` kills ansible-playbook and every process it started.
            let killed = format!(
                "ansible-playbook did not finish within {:.0}s and was killed",
                self.config.timeout.as_secs_f64()
            );
            // It may have changed the zone before it was killed: where a verify_server can
            // tell, the outcome is unknown until it is asked.
            return Err(match self.config.verify_server {
                Some(_) => {
                    ProvisionError::Uncertain(format!("{killed}; it may have applied the change"))
                }
                None => ProvisionError::Transient(killed),
            });
        };
        let status = status.map_err(|e| ProvisionError::Transient(e.to_string()))?;
        let output = output_tail(&out, &err, &self.secrets);
        let sent = match sent {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("the playbook exited before it read them".to_owned()),
        };
        if let (true, Err(e)) = (status.success(), &sent) {
            return Err(ProvisionError::Rejected(format!(
                "could not pass the variables to ansible-playbook: {e}; output ends:\n{output}"
            )));
        }
        let left = match left {
            0 => String::new(),
            1 => "; killed 1 process it left running".to_owned(),
            n => format!("; killed {n} processes it left running"),
        };
        if status.success() {
            Ok(format!(
                "ansible-playbook {} finished in {:.1}s{left}; output ends:\n{output}",
                self.config.playbook.display(),
                started.elapsed().as_secs_f64()
            ))
        } else {
            Err(ProvisionError::Rejected(format!(
                "ansible-playbook {} failed ({status}){left}; output ends:\n{output}",
                self.config.playbook.display()
            )))
        }
    }
}

#[async_trait::async_trait]
impl Provisioner for AnsibleProvisioner {
    fn kind(&self) -> &'static str {
        "ansible"
    }

    async fn apply(&self, change: &PlannedChange) -> Result<Applied, ProvisionError> {
        let name = absolute(&change.domain).map_err(ProvisionError::Rejected)?;
        let rdatas = change_rdatas(change)?;
        let ttl = change.config.ttl;
        // The worker's plan read the RRset (from the verify_server, else the ledger) and
        // refused records dnsorch does not manage. A whole-RRset delete removes whatever the
        // server holds, so it needs a server that was read.
        let expect = match change.operation {
            Operation::Create => Expect::Present { rdatas, ttl },
            Operation::Delete if change.is_whole_rrset() => {
                self.verify_server("a whole-RRset delete")?;
                Expect::Absent { rdatas }
            }
            Operation::Delete => Expect::Absent { rdatas },
            Operation::Replace => Expect::Exactly { rdatas, ttl },
            Operation::Adopt => {
                return Err(ProvisionError::Rejected(
                    "an adoption reads the RRset; it runs no playbook".into(),
                ));
            }
        };
        let vars = unsafe_yaml(&self.variables(change)?);
        change.fence.check()?;
        let mut notes = vec![self.run(vars).await?];
        let applied_at = Utc::now();
        let Some(server) = &self.config.verify_server else {
            notes.push("not verified: the zone names no verify_server".into());
            return Ok(Applied {
                applied_at,
                verified_at: None,
                notes,
            });
        };
        let bound = self.config.verify_timeout;
        notes.push(
            verify_at(
                server,
                &name,
                dns_type(change.record_type),
                &expect,
                bound,
                QUERY_TIMEOUT,
            )
            .await?,
        );
        Ok(Applied {
            applied_at,
            verified_at: Some(Utc::now()),
            notes,
        })
    }

    async fn read_rrset(
        &self,
        domain: &str,
        record_type: RecordType,
    ) -> Result<Option<LiveRrset>, ProvisionError> {
        // Without a server to read, the ledger is all dnsorch knows of the RRset.
        let Some(server) = self.config.verify_server.as_deref() else {
            return Ok(None);
        };
        let name = absolute(domain).map_err(ProvisionError::Rejected)?;
        let live = query(server, &name, dns_type(record_type), QUERY_TIMEOUT).await?;
        live_rrset(record_type, &live).map(Some)
    }

    async fn observe(&self, change: &PlannedChange) -> Result<Observed, ProvisionError> {
        let server = self.verify_server("checking an unknown outcome")?;
        observe(server, change, QUERY_TIMEOUT).await
    }
}

impl AnsibleProvisioner {
    /// The zone's `verify_server`, which `what` needs to read the live RRset.
    fn verify_server(&self, what: &str) -> Result<&str, ProvisionError> {
        self.config.verify_server.as_deref().ok_or_else(|| {
            ProvisionError::Rejected(format!(
                "{what} in zone {} needs the zone's verify_server, to read the live RRset",
                self.zone
            ))
        })
    }
}

/// The environment variable every process of a playbook run inherits, with the run's own value
/// (a new UUID): how the run's processes are found, whatever their session, group or parent.
const RUN_VARIABLE: &str = "DNSORCH_PLAYBOOK_RUN";

/// One run of ansible-playbook and every process it starts, none of which outlives it: they
/// are killed (SIGKILL) when ansible-playbook has exited (what it left running), and when the
/// run is dropped unfinished (past the timeout, or the worker dropped the attempt: an abort at
/// shutdown, a lost lease), so no task can go on to apply the change later.
///
/// They are found two ways. ansible-playbook leads a process group of its own, killed while
/// ansible-playbook is not yet reaped (until then no other group can have its id). But
/// Ansible's worker processes, which run the tasks (modules, `nsupdate`, ssh), each start a
/// session of their own (`setsid`), out of that group; so every process of the run also
/// inherits [`RUN_VARIABLE`], and the processes whose environment holds it (read from /proc,
/// on Linux; compared, never kept) are killed, pass after pass until a pass finds none not
/// yet signalled. A process that drops the variable from its environment, or runs as another
/// user (`become`), is not found.
struct PlaybookRun {
    child: tokio::process::Child,
    /// ansible-playbook's pid: its process group's id.
    group: Option<Pid>,
    /// `RUN_VARIABLE=<the run's id>`, as an entry of /proc/<pid>/environ.
    mark: Vec<u8>,
    stage: Stage,
}

/// How far a [`PlaybookRun`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// ansible-playbook has not been reaped: its pid is still its group's id.
    Running,
    /// ansible-playbook exited and was reaped: its group's id may be another group's now.
    Reaped,
    /// Reaped, and what it left running killed.
    Cleared,
}

impl PlaybookRun {
    /// Starts `command` (ansible-playbook) in a process group of its own, with [`RUN_VARIABLE`].
    fn spawn(mut command: tokio::process::Command) -> std::io::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let child = command
            .env(RUN_VARIABLE, &id)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let group = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw);
        Ok(Self {
            child,
            group,
            mark: format!("{RUN_VARIABLE}={id}").into_bytes(),
            stage: Stage::Running,
        })
    }

    /// Waits for ansible-playbook to exit, and reaps it.
    async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let status = self.child.wait().await?;
        match self.stage {
            Stage::Running => self.stage = Stage::Reaped,
            Stage::Reaped | Stage::Cleared => {}
        }
        Ok(status)
    }

    /// After ansible-playbook exited: kills every process of the run still running; how many.
    async fn kill_left_over(&mut self) -> usize {
        let mark = self.mark.clone();
        // Not run (the runtime is stopping): dropping the run kills them.
        let Ok(killed) = tokio::task::spawn_blocking(move || kill_marked(&mark)).await else {
            return 0;
        };
        match self.stage {
            Stage::Reaped => self.stage = Stage::Cleared,
            // Not reaped: dropping the run still kills the group.
            Stage::Running | Stage::Cleared => {}
        }
        killed
    }
}

impl Drop for PlaybookRun {
    fn drop(&mut self) {
        let killed = match self.stage {
            Stage::Running => {
                if let Some(group) = self.group {
                    let _ = killpg(group, Signal::SIGKILL);
                }
                kill_marked(&self.mark)
            }
            Stage::Reaped => kill_marked(&self.mark),
            Stage::Cleared => 0,
        };
        if killed > 0 {
            tracing::warn!(
                killed,
                "killed the processes of a playbook run that did not finish"
            );
        }
    }
}

/// Sends SIGKILL to every process whose environment holds `mark`, pass after pass until a pass
/// finds none it has not signalled yet (one may have started another meanwhile); how many it
/// killed.
fn kill_marked(mark: &[u8]) -> usize {
    let mut signalled = HashSet::new();
    let mut killed = 0;
    loop {
        let found: Vec<Pid> = marked_processes(mark)
            .into_iter()
            .filter(|pid| !signalled.contains(pid))
            .collect();
        if found.is_empty() {
            return killed;
        }
        for pid in found {
            if kill(pid, Signal::SIGKILL).is_ok() {
                killed += 1;
            }
            signalled.insert(pid);
        }
    }
}

/// The processes (but this one) whose environment, as /proc shows it, holds the entry `mark`;
/// none where there is no /proc. A zombie shows no environment; another user's cannot be read.
fn marked_processes(mark: &[u8]) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id();
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|environ| environ.split(|b| *b == 0).any(|entry| entry == mark))
        })
        .filter_map(|pid| i32::try_from(pid).ok().map(Pid::from_raw))
        .collect()
}

/// The way the extra vars reach ansible-playbook: a FIFO (mode 0600) in a directory of its own
/// (mode 0700) under the temporary directory. Its name is removed as soon as ansible-playbook
/// opens it, before anything is written, so the variables (the secrets among them) are never
/// in a file: they pass through the pipe's buffer only. Removed when dropped, releasing a
/// `send` still waiting for a reader.
struct VarsPipe {
    dir: PathBuf,
    fifo: PathBuf,
}

impl VarsPipe {
    fn create() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("dnsorch-vars-{}", uuid::Uuid::new_v4()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let pipe = Self {
            fifo: dir.join("vars.yml"),
            dir,
        };
        nix::unistd::mkfifo(&pipe.fifo, Mode::S_IRUSR | Mode::S_IWUSR)?;
        Ok(pipe)
    }

    /// Waits until ansible-playbook opens the FIFO, removes its name, and writes `text`.
    async fn send(&self, text: String) -> std::io::Result<()> {
        let fifo = self.fifo.clone();
        // Opening a FIFO to write blocks until a reader opens it.
        let mut file =
            tokio::task::spawn_blocking(move || OpenOptions::new().write(true).open(fifo))
                .await??;
        self.remove_names();
        tokio::task::spawn_blocking(move || file.write_all(text.as_bytes())).await?
    }

    fn remove_names(&self) {
        let _ = std::fs::remove_file(&self.fifo);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl Drop for VarsPipe {
    fn drop(&mut self) {
        // A reader of our own releases a `send` blocked in its open, and is kept open until
        // the name is gone, so no open can block after it.
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&self.fifo);
        self.remove_names();
        drop(reader);
    }
}

/// `vars` (an object) as a YAML mapping whose every string is tagged `!unsafe`, so Ansible
/// takes it as data and never as a template. JSON scalars and strings are valid YAML
/// (flow and double-quoted forms), so each value is written as JSON with the tag in front.
fn unsafe_yaml(vars: &serde_json::Value) -> String {
    fn value(v: &serde_json::Value) -> String {
        match v {
            // Ansible loads `!unsafe ""` as null; an empty string holds no template anyway.
            serde_json::Value::String(s) if !s.is_empty() => format!("!unsafe {v}"),
            serde_json::Value::Array(items) => {
                format!(
                    "[{}]",
                    items.iter().map(value).collect::<Vec<_>>().join(", ")
                )
            }
            serde_json::Value::Object(map) => format!(
                "{{{}}}",
                map.iter()
                    .map(|(k, v)| format!("{}: {}", serde_json::Value::from(k.as_str()), value(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            other => other.to_string(),
        }
    }
    let mut out = String::from("---\n");
    if let serde_json::Value::Object(map) = vars {
        for (key, v) in map {
            out.push_str(&format!(
                "{}: {}\n",
                serde_json::Value::from(key.as_str()),
                value(v)
            ));
        }
    }
    out
}

/// Reads a stream to its end, keeping only its last `KEEP_BYTES`.
async fn keep_tail(mut stream: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buffer = [0; 8192];
    while let Ok(n) = stream.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buffer[..n]);
        if kept.len() > 2 * KEEP_BYTES {
            kept.drain(..kept.len() - KEEP_BYTES);
        }
    }
    kept
}

/// The last `TAIL_LINES` non-empty lines of stdout, then of stderr, with `secrets` redacted
/// first (so a secret that starts above the tail is redacted as a whole).
fn output_tail(stdout: &[u8], stderr: &[u8], secrets: &[String]) -> String {
    let text = format!(
        "{}\n{}",
        redact(&String::from_utf8_lossy(stdout), secrets),
        redact(&String::from_utf8_lossy(stderr), secrets)
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// `text` with every secret replaced by `[REDACTED]`: each secret as given and JSON-escaped
/// (as Ansible prints strings in its results), also where line breaks split it (a wrapped
/// line, a secret printed in parts, a multi-line secret printed otherwise). Line breaks are
/// ignored within a match: in the text, and in the secret.
fn redact(text: &str, secrets: &[String]) -> String {
    let unbroken = |s: &str| -> Vec<char> { s.chars().filter(|c| !is_line_break(*c)).collect() };
    let mut forms: Vec<Vec<char>> = Vec::new();
    for secret in secrets {
        let escaped = serde_json::Value::from(secret.as_str()).to_string();
        let escaped = &escaped[1..escaped.len() - 1];
        for form in [unbroken(secret), unbroken(escaped)] {
            if !form.is_empty() && !forms.contains(&form) {
                forms.push(form);
            }
        }
    }
    let text: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while at < text.len() {
        let longest = forms.iter().filter_map(|f| match_end(&text[at..], f)).max();
        match longest {
            Some(end) => {
                out.push_str("[REDACTED]");
                at += end;
            }
            None => {
                out.push(text[at]);
                at += 1;
            }
        }
    }
    out
}

fn is_line_break(c: char) -> bool {
    c == '\n' || c == '\r'
}

/// Where `form` (no line breaks) ends if `text` starts with it, line breaks between its
/// characters skipped.
fn match_end(text: &[char], form: &[char]) -> Option<usize> {
    let mut at = 0;
    for (i, wanted) in form.iter().enumerate() {
        if i > 0 {
            while text.get(at).copied().is_some_and(is_line_break) {
                at += 1;
            }
        }
        if text.get(at) != Some(wanted) {
            return None;
        }
        at += 1;
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_in_the_vars_file_is_unsafe() {
        let vars = serde_json::json!({
            "rdata": "\"{{ lookup('pipe', 'id') }}\"",
            "ttl": 300,
            "nested": {"list": ["a", 1], "flag": true},
        });
        let yaml = unsafe_yaml(&vars);
        assert!(
            yaml.contains(r#""rdata": !unsafe "\"{{ lookup('pipe', 'id') }}\"""#),
            "{yaml}"
        );
        assert!(yaml.contains(r#""ttl": 300"#), "{yaml}");
        assert!(
            yaml.contains(r#"{"flag": true, "list": [!unsafe "a", 1]}"#),
            "{yaml}"
        );
    }

    fn backend(program: &str) -> AnsibleProvisioner {
        AnsibleProvisioner::new(
            "example.test",
            AnsibleZone {
                playbook: "p.yml".into(),
                program: program.into(),
                timeout: std::time::Duration::from_secs(30),
                vars: serde_json::Map::new(),
                secret_vars: std::collections::BTreeMap::new(),
                verify_server: None,
                verify_timeout: std::time::Duration::from_secs(1),
            },
            Vec::new(),
        )
    }

    #[tokio::test]
    async fn a_program_that_never_reads_the_variables_fails_and_releases_the_pipe() {
        // Neither opens the FIFO: the run ends with the program, not at the timeout, and
        // the runtime's shutdown finds no thread still blocked opening it.
        let error = backend("true").run("---\n".into()).await.unwrap_err();
        assert!(!error.is_transient(), "{error}");
        assert!(
            error.to_string().contains("exited before it read them"),
            "{error}"
        );
        let error = backend("false").run("---\n".into()).await.unwrap_err();
        assert!(!error.is_transient(), "{error}");
        assert!(
            error.to_string().contains("failed (exit status: 1)"),
            "{error}"
        );
    }

    /// Whether the process `pid` has ended (gone, or a zombie), waiting up to 10 s for it.
    async fn ended(pid: &str) -> bool {
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return true;
            };
            if stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn past_the_timeout_a_child_in_a_session_of_its_own_is_killed_too() {
        // A stand-in for ansible-playbook: it reads the variables, then starts a child in a
        // new session (as Ansible's workers do), which creates `marker` once `release`
        // exists, and waits forever.
        let dir = tempfile::TempDir::new().unwrap();
        let [pid, release, marker] = ["child.pid", "release", "marker"].map(|f| dir.path().join(f));
        let script = dir.path().join("playbook.sh");
        std::fs::write(
            &script,
            format!(
                r#"cat "${{2#@}}" > /dev/null
setsid sh -c 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0"; while [ ! -e "$1" ]; do sleep 0.1; done; : > "$2"' '{}' '{}' '{}' &
while [ ! -e '{}' ]; do sleep 0.1; done
sleep 600
"#,
                pid.display(),
                release.display(),
                marker.display(),
                pid.display(),
            ),
        )
        .unwrap();
        let mut backend = backend("sh");
        backend.config.playbook = script;
        backend.config.timeout = std::time::Duration::from_secs(3);

        let error = backend.run("---\n".into()).await.unwrap_err();

        assert!(error.is_transient(), "{error}");
        assert!(error.to_string().contains("did not finish"), "{error}");
        let child = std::fs::read_to_string(&pid).unwrap().trim().to_owned();
        assert!(ended(&child).await, "the child {child} still runs");
        std::fs::write(&release, "").unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        assert!(!marker.exists(), "the timed-out run's child went on");
    }

    #[test]
    fn known_secrets_are_redacted_from_output() {
        let secrets = vec!["c2VjcmV0".to_owned()];
        assert_eq!(redact("key c2VjcmV0 used", &secrets), "key [REDACTED] used");
    }

    #[test]
    fn a_secret_split_over_lines_is_redacted_as_a_whole() {
        let secrets = vec!["pb-secret-0123456789".to_owned()];
        for text in [
            "name pb-secret-01234\n56789 end",
            "name pb-secret-01234\r\n56789 end",
            "name pb-\nsecret-0123\n\n456789 end",
        ] {
            assert_eq!(redact(text, &secrets), "name [REDACTED] end", "{text:?}");
        }
        // Not a match: another character between the parts.
        assert_eq!(
            redact("pb-secret-01234 56789", &secrets),
            "pb-secret-01234 56789"
        );
    }

    #[test]
    fn a_multi_line_secret_is_redacted_as_given_reflowed_and_json_escaped() {
        let secrets = vec!["first line\nsecond \"line\"".to_owned()];
        for text in [
            "a first line\nsecond \"line\" b",
            "a first linesecond \"line\" b",
            r#"a first line\nsecond \"line\" b"#,
            "a first li\nne\\nsecond \\\"line\\\" b",
        ] {
            assert_eq!(redact(text, &secrets), "a [REDACTED] b", "{text:?}");
        }
    }

    #[test]
    fn a_secret_starting_above_the_tail_is_redacted_whole() {
        let secret = "pb-secret-0123456789".to_owned();
        // The secret's first part is one line above the last TAIL_LINES.
        let mut stdout = "x pb-secret-01234\n56789 y\n".to_owned();
        for i in 1..TAIL_LINES {
            stdout.push_str(&format!("line {i}\n"));
        }
        let output = output_tail(stdout.as_bytes(), b"", &[secret]);
        assert!(!output.contains("56789"), "{output}");
        assert_eq!(output.lines().count(), TAIL_LINES, "{output}");
        assert!(output.starts_with("x [REDACTED] y\n"), "{output}");
    }
}
