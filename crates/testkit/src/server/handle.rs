//! [`ServerHandle`]: a cloneable handle that stops, restarts and crashes a [`TestServer`] from
//! any task, and the server's lifecycle behind it.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::intercept::Hooks;
use super::{GRACEFUL_SHUTDOWN_TIMEOUT, Running, serve};
use crate::TestkitError;
use crate::faults::{CallLog, FaultPlan, Faults};
use crate::storage::{DataRoot, Storage, StorageSettings};

/// A cloneable handle to a [`TestServer`](crate::TestServer): every clone controls the same
/// server, from any task or thread. Get one with
/// [`TestServer::handle`](crate::TestServer::handle).
///
/// It does what the server itself does ([`stop`](Self::stop), [`restart`](Self::restart),
/// [`url`](Self::url), [`calls`](Self::calls), [`set_faults`](Self::set_faults)…) through a
/// shared reference, plus [`crash`](Self::crash), so a background task or a
/// [`Scenario`](crate::scenario::Scenario) step can take the server down and bring it back
/// while the test drives its client. Stops, restarts and crashes from different handles happen
/// one after the other, never interleaved.
///
/// The [`TestServer`](crate::TestServer) stays the owner: dropping it stops the server, and a
/// handle cannot start it again afterwards ([`restart`](Self::restart) fails). A handle keeps
/// the data directory alive while it exists.
///
/// ```
/// use qdrant_client::qdrant::HealthCheckRequest;
/// use qdrant_client::qdrant::qdrant_client::QdrantClient;
/// use qdrant_tower_testkit::TestServer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = TestServer::start().await?;
/// let handle = server.handle();
///
/// // Another task takes the server down and brings it back.
/// tokio::spawn(async move {
///     handle.crash().await;
///     assert!(!handle.is_running());
///     handle.restart().await
/// })
/// .await??;
///
/// assert!(server.is_running());
/// let mut client = QdrantClient::connect(server.url()).await?;
/// client.health_check(HealthCheckRequest {}).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ServerHandle {
    pub(super) shared: Arc<Shared>,
}

/// What every handle shares: the server's fixed settings and its current run.
pub(super) struct Shared {
    pub(super) addr: SocketAddr,
    pub(super) root: Arc<DataRoot>,
    pub(super) settings: StorageSettings,
    /// Fault plan, call log, connections and keys, kept across restarts; each run gets a
    /// [`renewed`](Hooks::renewed) copy with its own shutdown signal.
    pub(super) hooks: Hooks,
    /// Serialises stop, restart and crash, which await.
    transition: tokio::sync::Mutex<()>,
    /// The server while it runs. Never held across an `.await`.
    running: Mutex<Option<Running>>,
    /// Set when the `TestServer` is dropped: nothing may start the server again.
    owner_dropped: AtomicBool,
}

impl Shared {
    pub(super) fn new(
        addr: SocketAddr,
        root: Arc<DataRoot>,
        settings: StorageSettings,
        hooks: Hooks,
        running: Running,
    ) -> Self {
        Shared {
            addr,
            root,
            settings,
            hooks,
            transition: tokio::sync::Mutex::new(()),
            running: Mutex::new(Some(running)),
            owner_dropped: AtomicBool::new(false),
        }
    }

    fn running(&self) -> MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn storage(&self) -> Option<Arc<Storage>> {
        self.running()
            .as_ref()
            .map(|running| Arc::clone(&running.storage))
    }

    /// The `TestServer` is gone: stop the server task without waiting for it. The collections
    /// are flushed when the task has released them.
    pub(super) fn abandon(&self) {
        self.owner_dropped.store(true, Ordering::Release);
        if let Some(running) = self.running().take() {
            running.hooks.close();
            let _ = running.shutdown.send(());
            running.task.abort();
        }
    }

    /// A graceful stop; the caller holds `transition`.
    async fn stop(&self) {
        let Some(running) = self.running().take() else {
            return;
        };
        let Running {
            storage,
            hooks,
            shutdown,
            mut task,
            ..
        } = running;
        // Hung calls would hold their connections open until the drain timeout.
        hooks.close();
        let _ = shutdown.send(());
        match tokio::time::timeout(GRACEFUL_SHUTDOWN_TIMEOUT, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => tracing::warn!(%err, "testkit server stopped with an error"),
            Ok(Err(err)) => tracing::warn!(%err, "testkit server task failed"),
            Err(_) => {
                tracing::warn!("testkit server did not drain in time; closing connections");
                task.abort();
                let _ = task.await;
            }
        }
        // Connections the server did not get to close (a drain cut short) go too.
        self.hooks.connections.kill_all();
        match tokio::task::spawn_blocking(move || storage.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(%err, "flushing collections on shutdown failed"),
            Err(err) => tracing::error!(%err, "closing collections on shutdown panicked"),
        }
    }

    /// A crash; the caller holds `transition`.
    async fn crash(&self) {
        let Some(running) = self.running().take() else {
            return;
        };
        let Running {
            storage,
            hooks,
            shutdown,
            task,
            ..
        } = running;
        // Cut every connection first, so that no answer gets out after the crash instant,
        // then stop accepting: the listener goes with the server task.
        self.hooks.connections.kill_all();
        task.abort();
        let _ = task.await;
        self.hooks.connections.kill_all();
        hooks.close();
        drop(shutdown);
        if let Err(err) = storage.crash().await {
            tracing::error!(%err, "crashing the storage failed");
        }
    }
}

impl ServerHandle {
    /// The address the server listens on; it stays the same across stops, crashes and
    /// restarts.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The URL to connect a client to, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The directory the collections are stored in.
    pub fn data_dir(&self) -> &Path {
        self.shared.root.path()
    }

    /// Whether the server is serving: false from the moment a stop or crash begins until a
    /// restart has finished.
    pub fn is_running(&self) -> bool {
        self.shared.running().is_some()
    }

    /// Installs a fault plan, as [`TestServer::set_faults`](crate::TestServer::set_faults).
    pub fn set_faults(&self, plan: impl Into<FaultPlan>) {
        self.shared.hooks.faults.set(plan);
    }

    /// Removes the fault plan.
    pub fn clear_faults(&self) {
        self.shared.hooks.faults.clear();
    }

    /// The server's fault plan handle.
    pub fn faults(&self) -> Faults {
        self.shared.hooks.faults.clone()
    }

    /// The server's call log, as [`TestServer::calls`](crate::TestServer::calls).
    pub fn calls(&self) -> CallLog {
        self.shared.hooks.calls.clone()
    }

    /// Tears down every open client connection, as
    /// [`TestServer::drop_connections`](crate::TestServer::drop_connections).
    pub fn drop_connections(&self) -> usize {
        self.shared.hooks.connections.kill_all()
    }

    /// Stops the server gracefully and keeps its address and data for a
    /// [`restart`](Self::restart), as [`TestServer::stop`](crate::TestServer::stop): open calls
    /// finish (for at most 5 s), every collection is flushed. Stopping a stopped server does
    /// nothing.
    pub async fn stop(&self) {
        let _transition = self.shared.transition.lock().await;
        self.shared.stop().await;
    }

    /// Kills the server as `kill -9` kills a Qdrant process: every connection is cut at once
    /// (calls in flight fail as broken connections, and no answer leaves after the crash),
    /// the listener closes, and the collections are dropped **without a flush**. The data
    /// directory is left exactly as the crash found it; [`restart`](Self::restart) then
    /// recovers it as Qdrant recovers from a crash, by replaying each collection's WAL over
    /// its last flushed segments. Every write acknowledged before the crash (it was in the WAL
    /// when it was answered) is there after the restart. Crashing a stopped server does
    /// nothing.
    ///
    /// # How the crash is simulated
    ///
    /// A process kill loses what the engine holds in memory but keeps every byte it wrote to
    /// its files (the WAL, the segments' memory maps), since those live in the OS page cache.
    /// The engine cannot simply be left unflushed in-process: `EdgeShard` flushes when it is
    /// dropped, and leaking it instead (`mem::forget`) would keep its WAL lock, so the restart
    /// could not open the collection. So the crash waits until no call or optimizer run is
    /// inside a collection (engine calls are short; a call whose connection was cut cannot
    /// answer anyway), copies the collections' files as they are at that instant (what a
    /// killed process leaves on disk), lets the engine close and flush, then puts the copy
    /// back in place of the flushed files. Nothing of the flush survives, so the restart sees
    /// segments behind the WAL and must replay it. The copy costs time and disk space in
    /// proportion to the data, a few milliseconds for a test's collections.
    ///
    /// ```
    /// use qdrant_client::qdrant::collections_client::CollectionsClient;
    /// use qdrant_client::qdrant::points_client::PointsClient;
    /// use qdrant_client::qdrant::{
    ///     CountPointsBuilder, CreateCollectionBuilder, Distance, PointStruct, UpsertPointsBuilder,
    ///     VectorParamsBuilder,
    /// };
    /// use qdrant_tower_testkit::TestServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = TestServer::start().await?;
    /// let channel = tonic::transport::Channel::from_shared(server.url())?.connect().await?;
    /// CollectionsClient::new(channel.clone())
    ///     .create(
    ///         CreateCollectionBuilder::new("books")
    ///             .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
    ///             .build(),
    ///     )
    ///     .await?;
    /// let point = PointStruct::new(1, vec![1.0, 0.0], [("title", "Dune".into())]);
    /// PointsClient::new(channel)
    ///     .upsert(UpsertPointsBuilder::new("books", vec![point]).wait(true).build())
    ///     .await?;
    ///
    /// let handle = server.handle();
    /// handle.crash().await;
    /// handle.restart().await?;
    ///
    /// // A new connection: the old one died with the server.
    /// let channel = tonic::transport::Channel::from_shared(server.url())?.connect().await?;
    /// let count = PointsClient::new(channel)
    ///     .count(CountPointsBuilder::new("books").exact(true).build())
    ///     .await?
    ///     .into_inner();
    /// assert_eq!(count.result.unwrap().count, 1, "recovered from the WAL");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn crash(&self) {
        let _transition = self.shared.transition.lock().await;
        self.shared.crash().await;
    }

    /// Starts the server again on the same address and data directory, reloading every
    /// collection and alias (replaying WALs after a [`crash`](Self::crash)); stops it
    /// gracefully first if it is running. The fault plan, the call log and the API keys stay.
    ///
    /// Fails if the port was taken in the meantime, or if the
    /// [`TestServer`](crate::TestServer) was dropped.
    pub async fn restart(&self) -> Result<(), TestkitError> {
        let _transition = self.shared.transition.lock().await;
        self.shared.stop().await;
        let dropped = || {
            TestkitError::Server("the TestServer was dropped; it cannot be restarted".to_owned())
        };
        if self.shared.owner_dropped.load(Ordering::Acquire) {
            return Err(dropped());
        }
        let running = serve(
            Arc::clone(&self.shared.root),
            self.shared.settings,
            self.shared.addr,
            Arc::new(self.shared.hooks.renewed()),
        )
        .await?;
        let mut slot = self.shared.running();
        if self.shared.owner_dropped.load(Ordering::Acquire) {
            // The owner went away while the server was starting.
            running.hooks.close();
            running.task.abort();
            return Err(dropped());
        }
        *slot = Some(running);
        Ok(())
    }

    /// Restores collection `collection` from a snapshot file, as
    /// [`TestServer::recover_snapshot`](crate::TestServer::recover_snapshot).
    pub async fn recover_snapshot(
        &self,
        collection: &str,
        snapshot: impl AsRef<Path>,
    ) -> Result<(), TestkitError> {
        let storage = self
            .shared
            .storage()
            .ok_or_else(|| TestkitError::Server("the server is stopped".to_owned()))?;
        storage
            .recover_snapshot(collection, snapshot.as_ref())
            .await
            .map_err(|err| TestkitError::Server(err.to_string()))
    }
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.shared.addr)
            .field("data_dir", &self.shared.root.path())
            .field("running", &self.is_running())
            .field("api_keys", &self.shared.hooks.keys.is_enabled())
            .finish_non_exhaustive()
    }
}
