//! Watching a configuration file and reloading a stack when it changes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::watch;

use super::{ConfigError, ConfigLoader, StackConfig};
use crate::stack::Reloaded;

/// How long the file must stay quiet before it is read.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// The outcome of the reloads a [`ConfigWatcher`] made so far.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ReloadEvent {
    /// How many times the file was read since watching began.
    pub reloads: u64,
    /// The last one's outcome (`None` before the first): what changed, or why the file was
    /// rejected (the running configuration then stays).
    pub outcome: Option<Result<Reloaded, ConfigError>>,
}

/// Reloads a [`QdrantStack`](crate::QdrantStack) when its configuration file changes; made by
/// [`QdrantStack::watch`](crate::QdrantStack::watch). Dropping it stops watching.
///
/// Watches the file's directory (so that an editor's or a deployment's atomic rename is
/// seen) with the platform's notifier, on a thread of its own.
pub struct ConfigWatcher {
    _watcher: notify::RecommendedWatcher,
    events: watch::Receiver<ReloadEvent>,
    path: PathBuf,
}

impl ConfigWatcher {
    pub(crate) fn start<F>(loader: ConfigLoader, apply: F) -> Result<ConfigWatcher, ConfigError>
    where
        F: Fn(StackConfig) -> Result<Reloaded, ConfigError> + Send + 'static,
    {
        let Some(path) = loader.path().map(Path::to_path_buf) else {
            return Err(ConfigError::Read {
                path: PathBuf::new(),
                reason: "the loader has no file to watch (ConfigLoader::file)".to_owned(),
            });
        };
        let unwatchable = |reason: String| ConfigError::Read {
            path: path.clone(),
            reason,
        };
        let file_name = path
            .file_name()
            .ok_or_else(|| unwatchable("not a file name".to_owned()))?
            .to_owned();
        let directory = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let (changed, quiet) = mpsc::channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if matches!(event.kind, EventKind::Access(_)) {
                    return;
                }
                if event
                    .paths
                    .iter()
                    .any(|p| p.file_name() == Some(file_name.as_os_str()))
                {
                    // The reloading thread is gone only when the watcher is being dropped.
                    let _ = changed.send(());
                }
            })
            .map_err(|error| unwatchable(error.to_string()))?;
        watcher
            .watch(&directory, RecursiveMode::NonRecursive)
            .map_err(|error| unwatchable(error.to_string()))?;
        let (publish, events) = watch::channel(ReloadEvent::default());
        let shown = path.clone();
        std::thread::Builder::new()
            .name("qdrant-tower-config".to_owned())
            .spawn(move || {
                while quiet.recv().is_ok() {
                    loop {
                        match quiet.recv_timeout(DEBOUNCE) {
                            Ok(()) => continue,
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    let outcome = loader.load().and_then(&apply);
                    match &outcome {
                        Ok(reloaded) => tracing::info!(
                            file = %shown.display(),
                            applied = ?reloaded.applied,
                            needs_restart = ?reloaded.needs_restart,
                            "qdrant-tower configuration reloaded"
                        ),
                        Err(error) => tracing::warn!(
                            file = %shown.display(),
                            %error,
                            "qdrant-tower configuration rejected; the running one stays"
                        ),
                    }
                    publish.send_modify(|event| {
                        event.reloads += 1;
                        event.outcome = Some(outcome);
                    });
                }
            })
            .map_err(|error| unwatchable(error.to_string()))?;
        Ok(ConfigWatcher {
            _watcher: watcher,
            events,
            path,
        })
    }

    /// The reloads so far, to wait on: `changes().wait_for(|e| e.reloads > n)`.
    pub fn changes(&self) -> watch::Receiver<ReloadEvent> {
        self.events.clone()
    }

    /// The reloads so far.
    pub fn last(&self) -> ReloadEvent {
        self.events.borrow().clone()
    }

    /// The file watched.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigWatcher")
            .field("path", &self.path)
            .field("reloads", &self.events.borrow().reloads)
            .finish_non_exhaustive()
    }
}
