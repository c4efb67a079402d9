//! No process of a playbook run outlives it. Ansible runs its tasks in worker processes that
//! start sessions of their own, out of ansible-playbook's process group: when the worker drops
//! the attempt (here an abort at shutdown), they and their children must still die, or a task
//! could apply the change later; and what a finished playbook left running is killed too. The
//! playbook `stray-child.yml` starts a child that, once released, creates a marker file, as a
//! task applying the change late would.

use super::*;

/// The files of the child that `stray-child.yml` starts, in a directory of the test's own
/// (it outlives the app's).
struct ChildFiles {
    _dir: TempDir,
    pid: PathBuf,
    release: PathBuf,
    marker: PathBuf,
}

impl ChildFiles {
    fn new() -> Self {
        let dir = TempDir::new().unwrap();
        Self {
            pid: dir.path().join("child.pid"),
            release: dir.path().join("release"),
            marker: dir.path().join("marker"),
            _dir: dir,
        }
    }

    /// Waits until the child has written its pid.
    async fn child_pid(&self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !self.pid.exists() {
            assert!(Instant::now() < deadline, "the child never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::fs::read_to_string(&self.pid).unwrap().parse().unwrap()
    }

    /// Releases the child, waits 20 times as long as it takes to notice, and says whether it
    /// created the marker.
    async fn marker_after_release(&self) -> bool {
        std::fs::write(&self.release, "").unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.marker.exists()
    }
}

/// A zones file with `stray.test` by the playbook `stray-child.yml`.
fn stray_zones_file(dir: &Path, files: &ChildFiles, background: bool) -> PathBuf {
    let text = format!(
        r#"
[zones."stray.test"]
backend = "ansible"
playbook = "{playbook}"
ansible_playbook = "{program}"
timeout_seconds = 120
vars = {{ pid_file = "{pid}", release_file = "{release}", marker_file = "{marker}", background = {background} }}
"#,
        playbook = playbook("stray-child.yml").display(),
        program = env("TEST_ANSIBLE_PLAYBOOK"),
        pid = files.pid.display(),
        release = files.release.display(),
        marker = files.marker.display(),
    );
    let path = dir.join("dnsorch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Whether the process `pid` has ended (gone, or a zombie), waiting up to 10 s for it.
async fn ended(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return true;
        };
        // `pid (comm) state …`: the state follows the last parenthesis.
        let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
        if state == Some("Z") {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_playbook_run_dropped_at_shutdown_leaves_no_process_to_apply_the_change_later() {
    let files = ChildFiles::new();
    let app = spawn_app(|dir, settings| {
        settings.dnsorch_config = Some(stray_zones_file(dir.path(), &files, false));
        settings.shutdown_grace_seconds = Duration::from_millis(100);
    })
    .await;
    let domain = format!("{}.stray.test", unique("abort"));
    let (status, request) = app
        .post(
            "create",
            &body("acct-s", "A", &domain, Some("192.0.2.7"), None),
        )
        .await;
    assert_eq!(status, 202, "{request}");
    let id = request["request_id"].as_str().unwrap().to_owned();
    // The task waits on the child, in an Ansible worker's session.
    let pid = files.child_pid().await;
    let store = app.store.clone();

    // Past the grace period the worker drops the attempt and releases the request.
    app.stop().await;

    let request = store.get(id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(request.status, dnsorch::domain::RequestStatus::Pending);
    let log = request.log_messages.unwrap();
    assert!(
        log.last()
            .unwrap()
            .message
            .contains("stopped before provisioning finished"),
        "{log:?}"
    );
    assert!(ended(pid).await, "the playbook's child {pid} still runs");
    assert!(
        !files.marker_after_release().await,
        "the dropped run's child went on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_finished_playbook_left_running_is_killed() {
    let files = ChildFiles::new();
    let app = spawn_app(|dir, settings| {
        settings.dnsorch_config = Some(stray_zones_file(dir.path(), &files, true));
    })
    .await;
    let domain = format!("{}.stray.test", unique("left"));
    let request = app
        .apply(
            "create",
            &body("acct-s", "A", &domain, Some("192.0.2.8"), None),
        )
        .await;
    assert_completed(&request);
    let pid = files.child_pid().await;

    assert!(ended(pid).await, "the playbook's child {pid} still runs");
    let log = log_of(&request);
    assert!(log.contains("killed 1 process it left running"), "{log}");
    assert!(
        !files.marker_after_release().await,
        "the finished run's child went on"
    );
}
