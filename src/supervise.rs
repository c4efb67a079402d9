//! Supervised tasks: a panic in a long-running loop is logged with the task's name, the task
//! is marked down (`/readyz` is 503 meanwhile, `/healthz` reports it), and the task is either
//! restarted after `TASK_RESTART_DELAY_SECONDS` or, where a restart is not safe, the process
//! is stopped with an error (a non-zero exit). No loop can vanish while the process claims to
//! be ready.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// A supervised task's state, as `/healthz` and `/readyz` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// The loop is running.
    Running,
    /// The loop panicked and waits to be started again.
    Restarting,
    /// The loop panicked and cannot be restarted: the process is stopping.
    Failed,
}

/// One task in the health report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TaskReport {
    pub state: TaskState,
    /// How often the task was restarted after a panic.
    pub restarts: u32,
}

/// The registry of supervised tasks, shared with the health endpoints.
#[derive(Debug, Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tasks: Mutex<BTreeMap<String, TaskReport>>,
    restart_delay: Duration,
    /// Fires when a task that cannot be restarted failed.
    failed: CancellationToken,
    /// The first such failure, for the process's exit.
    failure: Mutex<Option<String>>,
}

impl Supervisor {
    /// A registry whose restartable tasks start again `restart_delay` after a panic.
    pub fn new(restart_delay: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                tasks: Mutex::new(BTreeMap::new()),
                restart_delay,
                failed: CancellationToken::new(),
                failure: Mutex::new(None),
            }),
        }
    }

    /// Runs the loop `start` makes until it returns or `stop` fires; after a panic, logs it,
    /// marks the task restarting, and starts a new loop once the restart delay has passed.
    pub async fn restarting<F, Fut>(self, name: String, stop: CancellationToken, mut start: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            self.set(&name, TaskState::Running);
            let Err(panic) = AssertUnwindSafe(start()).catch_unwind().await else {
                return;
            };
            let delay = self.inner.restart_delay;
            tracing::error!(
                task = %name,
                panic = %panic_message(panic.as_ref()),
                restart_in_s = delay.as_secs_f64(),
                "a task panicked; restarting it"
            );
            self.set(&name, TaskState::Restarting);
            self.count_restart(&name);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Runs `task`, which cannot be restarted safely; a panic is logged, the task marked
    /// failed, and the process told to stop ([`Supervisor::failed`]).
    pub async fn fatal(self, name: String, task: impl Future<Output = ()>) {
        self.set(&name, TaskState::Running);
        if let Err(panic) = AssertUnwindSafe(task).catch_unwind().await {
            self.fail(&name, &panic_message(panic.as_ref()));
        }
    }

    /// Marks `name` failed for good: logs why, and fires [`Supervisor::failed`].
    pub fn fail(&self, name: &str, why: &str) {
        tracing::error!(
            task = %name,
            panic = %why,
            "a task that cannot be restarted panicked; the process stops"
        );
        self.set(name, TaskState::Failed);
        self.inner
            .failure
            .lock()
            .expect("not poisoned")
            .get_or_insert_with(|| format!("the task `{name}` panicked: {why}"));
        self.inner.failed.cancel();
    }

    /// Fires once a task that cannot be restarted has failed.
    pub fn failed(&self) -> CancellationToken {
        self.inner.failed.clone()
    }

    /// The first failure of a task that cannot be restarted, if any.
    pub fn failure(&self) -> Option<String> {
        self.inner.failure.lock().expect("not poisoned").clone()
    }

    /// Every task and its state, by name.
    pub fn report(&self) -> BTreeMap<String, TaskReport> {
        self.inner.tasks.lock().expect("not poisoned").clone()
    }

    /// Whether every task is running.
    pub fn all_running(&self) -> bool {
        self.report()
            .values()
            .all(|task| task.state == TaskState::Running)
    }

    /// Whether no task has failed for good.
    pub fn none_failed(&self) -> bool {
        !self.inner.failed.is_cancelled()
    }

    fn set(&self, name: &str, state: TaskState) {
        let mut tasks = self.inner.tasks.lock().expect("not poisoned");
        let task = tasks
            .entry(name.to_owned())
            .or_insert(TaskReport { state, restarts: 0 });
        // A failed task stays failed.
        if task.state != TaskState::Failed {
            task.state = state;
        }
    }

    fn count_restart(&self, name: &str) {
        if let Some(task) = self.inner.tasks.lock().expect("not poisoned").get_mut(name) {
            task.restarts += 1;
        }
    }
}

/// The text of a panic's payload (`panic!` with a message gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Log lines written to a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<serde_json::Value> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect()
        }
    }

    fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(captured.clone())
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        (captured, guard)
    }

    #[tokio::test]
    async fn a_panicking_loop_is_logged_marked_restarting_and_started_again() {
        // Arrange
        let (logs, _guard) = capture();
        let supervisor = Supervisor::new(Duration::from_millis(200));
        let starts = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let release = CancellationToken::new();
        let counted = starts.clone();
        let released = release.clone();
        let task = supervisor
            .clone()
            .restarting("worker 0".into(), stop, move || {
                let start = counted.fetch_add(1, Ordering::SeqCst);
                let released = released.clone();
                async move {
                    assert!(start > 0, "boom in the first loop");
                    released.cancelled().await;
                }
            });
        let task = tokio::spawn(task);

        // Act: the first loop panics at once; the second runs until released.
        while supervisor.report().get("worker 0").map(|t| t.state) != Some(TaskState::Restarting) {
            tokio::task::yield_now().await;
        }
        let while_down = supervisor.all_running();
        while starts.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let after_restart = supervisor.report()["worker 0"];
        release.cancel();
        task.await.unwrap();

        // Assert
        assert!(!while_down);
        assert_eq!(
            after_restart,
            TaskReport {
                state: TaskState::Running,
                restarts: 1
            }
        );
        assert!(supervisor.none_failed());
        let errors: Vec<_> = logs
            .lines()
            .into_iter()
            .filter(|line| line["level"] == "ERROR")
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0]["fields"]["task"], "worker 0");
        assert!(
            errors[0]["fields"]["panic"]
                .as_str()
                .unwrap()
                .contains("boom in the first loop")
        );
    }

    #[tokio::test]
    async fn a_panic_in_a_task_that_cannot_be_restarted_stops_the_process() {
        // Arrange
        let (logs, _guard) = capture();
        let supervisor = Supervisor::new(Duration::ZERO);

        // Act
        supervisor
            .clone()
            .fatal("kafka partition".into(), async { panic!("lost a batch") })
            .await;

        // Assert
        assert!(supervisor.failed().is_cancelled());
        assert!(!supervisor.none_failed() && !supervisor.all_running());
        assert_eq!(
            supervisor.report()["kafka partition"].state,
            TaskState::Failed
        );
        assert!(supervisor.failure().unwrap().contains("lost a batch"));
        let errors = logs
            .lines()
            .into_iter()
            .filter(|line| line["level"] == "ERROR" && line["fields"]["task"] == "kafka partition")
            .count();
        assert_eq!(errors, 1);
    }
}
