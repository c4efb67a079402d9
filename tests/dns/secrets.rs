//! Playbook secrets stay secret: a zone's `secret_vars` reach the playbook, but no file on the
//! host holds them while it runs or after it, and the request's log never shows them, even
//! split over two lines of the playbook's output.

use super::*;

/// A zones file with `secret.test` by the playbook `secret-wait.yml`, its `api_token` read
/// from `secret_file`.
fn secret_zones_file(dir: &Path, secret_file: &Path, started: &Path, release: &Path) -> PathBuf {
    let text = format!(
        r#"
[zones."secret.test"]
backend = "ansible"
playbook = "{playbook}"
ansible_playbook = "{program}"
timeout_seconds = 120
vars = {{ started_file = "{started}", release_file = "{release}" }}
secret_vars = {{ api_token = "file:{secret_file}" }}
"#,
        playbook = playbook("secret-wait.yml").display(),
        program = env("TEST_ANSIBLE_PLAYBOOK"),
        started = started.display(),
        release = release.display(),
        secret_file = secret_file.display(),
    );
    let path = dir.join("dnsorch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Every file under `dir` (not following links; skipping `skip` directories and files over
/// 8 MiB) that contains `secret`.
fn files_holding(dir: &Path, secret: &str, skip: &[&str], found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if !skip.iter().any(|s| entry.file_name() == *s) {
                files_holding(&path, secret, skip, found);
            }
        } else if kind.is_file()
            && entry.metadata().is_ok_and(|m| m.len() <= 8 << 20)
            && std::fs::read(&path).is_ok_and(|bytes| {
                bytes
                    .windows(secret.len())
                    .any(|window| window == secret.as_bytes())
            })
        {
            found.push(path);
        }
    }
}

/// The files that hold `secret` where dnsorch or ansible-playbook could have written it: the
/// temporary directory (its files, and its `dnsorch*` directories), the app's directory,
/// the working directory, and Ansible's directories.
fn secret_files(app_dir: &Path, secret: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let temp = std::env::temp_dir();
    for entry in std::fs::read_dir(&temp).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type().unwrap();
        if kind.is_file() || (kind.is_dir() && name.starts_with("dnsorch")) {
            let mut one = Vec::new();
            if kind.is_dir() {
                files_holding(&entry.path(), secret, &[], &mut one);
            } else if std::fs::read(entry.path())
                .is_ok_and(|b| b.windows(secret.len()).any(|w| w == secret.as_bytes()))
            {
                one.push(entry.path());
            }
            found.extend(one);
        }
    }
    files_holding(app_dir, secret, &[], &mut found);
    let cwd = std::env::current_dir().unwrap();
    files_holding(&cwd, secret, &["target", ".git"], &mut found);
    let mut ansible_dirs: Vec<PathBuf> = ["ANSIBLE_HOME", "ANSIBLE_LOCAL_TEMP"]
        .iter()
        .filter_map(|v| std::env::var_os(v).map(PathBuf::from))
        .collect();
    if let Some(home) = std::env::var_os("HOME") {
        ansible_dirs.push(Path::new(&home).join(".ansible"));
    }
    for dir in ansible_dirs {
        files_holding(&dir, secret, &[], &mut found);
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_vars_reach_the_playbook_but_no_file_and_no_log() {
    let inputs = TempDir::new().unwrap();
    let secret = format!("pb-secret-{}", uuid::Uuid::new_v4().simple());
    let secret_file = inputs.path().join("api_token");
    std::fs::write(&secret_file, &secret).unwrap();
    let mut app_dir = PathBuf::new();
    let (mut started, mut release) = (PathBuf::new(), PathBuf::new());
    let app = spawn_app(|dir, settings| {
        app_dir = dir.path().to_owned();
        started = dir.path().join("started");
        release = dir.path().join("release");
        settings.dnsorch_config = Some(secret_zones_file(
            dir.path(),
            &secret_file,
            &started,
            &release,
        ));
    })
    .await;
    let domain = format!("{}.secret.test", unique("sv"));
    let (status, request) = app
        .post(
            "create",
            &body("acct-a", "A", &domain, Some("192.0.2.9"), None),
        )
        .await;
    assert_eq!(status, 202, "{request}");
    let id = request["request_id"].as_str().unwrap().to_owned();

    // While the playbook waits for the release file.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the playbook never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let while_running = secret_files(&app_dir, &secret);
    std::fs::write(&release, "").unwrap();
    let request = app.finished(&id).await;
    assert_completed(&request);
    assert!(
        while_running.is_empty(),
        "files holding the secret while the playbook ran: {while_running:?}"
    );

    let after = secret_files(&app_dir, &secret);
    assert!(
        after.is_empty(),
        "files holding the secret after: {after:?}"
    );
    let log = log_of(&request);
    // The careless task name's two halves are redacted, as one secret.
    assert!(log.contains("Careless name [REDACTED]"), "{log}");
    for part in [&secret[..20], &secret[20..]] {
        assert!(!log.contains(part), "{log}");
        assert!(!request.to_string().contains(part), "{request}");
    }
}
