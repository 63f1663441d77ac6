//! The embedded server: [`TestServer`] and its builder, and the gRPC services behind it.
//!
//! `api` holds the state the services share and the health check, `collections` and `points`
//! the two big services, `snapshots` the snapshot service, `convert`, `filter` and `index` the
//! protobuf ↔ engine conversions, and `status` the error → `tonic::Status` mapping.

mod api;
mod auth;
mod collections;
mod conn;
mod convert;
mod filter;
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod index;
mod intercept;
mod plan;
mod points;
mod snapshots;
mod status;
mod validate;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use qdrant_client::qdrant::collections_server::CollectionsServer;
use qdrant_client::qdrant::points_server::PointsServer;
use qdrant_client::qdrant::qdrant_server::QdrantServer;
use qdrant_client::qdrant::snapshots_server::SnapshotsServer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::codec::CompressionEncoding;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use self::api::QdrantApi;
use self::auth::{ApiKey, ApiKeys};
use self::conn::Connections;
pub use self::handle::ServerHandle;
use self::intercept::{Hooks, Intercepted};
use crate::TestkitError;
use crate::faults::{CallLog, FaultPlan, Faults};
use crate::storage::{DataRoot, Storage, StorageSettings};

/// Largest request the server decodes, as Qdrant's default `max_request_size_mb` (32 MiB).
const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;
/// How long [`TestServer::shutdown`] waits for open connections to finish before cutting them.
const GRACEFUL_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A Qdrant-compatible gRPC server running in-process on `127.0.0.1`, backed by qdrant-edge.
///
/// It serves the `qdrant.Qdrant`, `qdrant.Collections`, `qdrant.Points` and `qdrant.Snapshots`
/// services that qdrant-client's generated tonic clients speak, on a free port chosen by the OS
/// (or the [`port`](TestServerBuilder::port) you give). Collections
/// are real: each one is an `EdgeShard` (Qdrant's own storage engine, with WAL, HNSW, payload
/// indexes and filters) in its own directory. RPCs outside the implemented set answer
/// `UNIMPLEMENTED` with a message naming the method.
///
/// Use it wherever a test, an example or a bench needs a Qdrant without Docker. Do not use it
/// as a production database: there is one shard per collection, no replication, and only
/// Qdrant's static [API keys](TestServerBuilder::api_key) for authentication.
///
/// Each server starts, per collection, one search thread pool of
/// [`search_threads`](TestServerBuilder::search_threads) threads (default 1), so many servers can
/// run side by side in one test binary.
///
/// Dropping the server stops it at once; [`shutdown`](TestServer::shutdown) stops it gracefully
/// and flushes every collection to disk first. [`stop`](TestServer::stop) and
/// [`restart`](TestServer::restart) take it down and bring it back on the same address and
/// data, as a restarted Qdrant; [`crash`](TestServer::crash) takes it down as a killed one, and
/// the restart recovers from the WAL. A [`ServerHandle`] ([`handle`](TestServer::handle)) does
/// all of that from other tasks.
///
/// Every call passes through the API key check (when [keys](TestServerBuilder::api_key) are
/// set), fault injection ([`set_faults`](TestServer::set_faults), see [`crate::faults`]) and is
/// recorded in the [`calls`](TestServer::calls) log; with no plan installed that costs an
/// atomic load, a copy of the request and a short lock per call.
///
/// # Example
///
/// ```
/// use qdrant_client::qdrant::HealthCheckRequest;
/// use qdrant_client::qdrant::qdrant_client::QdrantClient;
/// use qdrant_tower_testkit::TestServer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = TestServer::start().await?;
/// let mut client = QdrantClient::connect(server.url()).await?;
/// let reply = client.health_check(HealthCheckRequest {}).await?.into_inner();
/// assert_eq!(reply.title, "qdrant - vector search engine");
/// server.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct TestServer {
    handle: ServerHandle,
}

impl TestServer {
    /// Starts a server with the default settings: a fresh temporary data directory (removed
    /// when the server is gone) and one search thread per collection.
    ///
    /// Must be called within a tokio runtime, which then runs the server.
    pub async fn start() -> Result<Self, TestkitError> {
        Self::builder().start().await
    }

    /// A builder to choose the address, the data directory, the search threads or API keys.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// A cloneable handle to this server, to stop, crash and restart it, read its call log or
    /// change its faults from other tasks. See [`ServerHandle`].
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// The address the server listens on: `127.0.0.1` (unless [`host`](TestServerBuilder::host)
    /// said otherwise) and the port chosen by the OS (or [`port`](TestServerBuilder::port)).
    /// It stays the same across [`stop`](TestServer::stop) and
    /// [`restart`](TestServer::restart).
    pub fn addr(&self) -> SocketAddr {
        self.handle.addr()
    }

    /// The URL to connect a client to, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.handle.url()
    }

    /// The directory the collections are stored in. It stays the same across
    /// [`stop`](TestServer::stop) and [`restart`](TestServer::restart), and a temporary one is
    /// removed only when the `TestServer` (and every [`ServerHandle`]) is dropped.
    pub fn data_dir(&self) -> &Path {
        self.handle.data_dir()
    }

    /// Whether the server is serving: true from the start until [`stop`](TestServer::stop) or
    /// [`crash`](TestServer::crash), and again after [`restart`](TestServer::restart).
    pub fn is_running(&self) -> bool {
        self.handle.is_running()
    }

    /// Installs a fault plan, replacing the current one; its time windows and counters start
    /// now. See [`crate::faults`]. The plan survives [`restart`](TestServer::restart).
    pub fn set_faults(&self, plan: impl Into<FaultPlan>) {
        self.handle.set_faults(plan);
    }

    /// Removes the fault plan: every later call is served normally.
    pub fn clear_faults(&self) {
        self.handle.clear_faults();
    }

    /// A handle to this server's fault plan, to change it from another task (a
    /// [`Scenario`](crate::scenario::Scenario), a background workload…).
    pub fn faults(&self) -> Faults {
        self.handle.faults()
    }

    /// The log of every call that reached this server. A handle: it keeps filling as calls
    /// arrive, across restarts. See [`CallLog`].
    pub fn calls(&self) -> CallLog {
        self.handle.calls()
    }

    /// Tears down every client connection open now, as a server crash or a network cut would;
    /// the calls in flight on them fail as broken connections. Clients may connect again at
    /// once; a call sent on an idle connection before its client noticed the cut fails too.
    /// Returns how many connections there were.
    pub fn drop_connections(&self) -> usize {
        self.handle.drop_connections()
    }

    /// Restores collection `collection` from a collection snapshot file that this testkit made
    /// (`Snapshots/Create`, stored under `<data_dir>/snapshots/<collection>/`), replacing a
    /// collection of that name if there is one; its aliases stay. Qdrant recovers snapshots
    /// through its REST API only (`PUT /collections/{name}/snapshots/recover`), which the testkit
    /// does not serve, hence this method.
    ///
    /// Fails with [`TestkitError::Server`] when the server is stopped or the file is not a
    /// testkit collection snapshot.
    pub async fn recover_snapshot(
        &self,
        collection: &str,
        snapshot: impl AsRef<Path>,
    ) -> Result<(), TestkitError> {
        self.handle.recover_snapshot(collection, snapshot).await
    }

    /// Stops the server gracefully: it stops accepting connections, lets the open ones finish
    /// (for at most 5 s), waits for running optimizations, then flushes every collection's WAL
    /// and segments to disk and closes their files.
    ///
    /// With a persistent [`data_dir`](TestServerBuilder::data_dir), a server started afterwards
    /// on the same directory finds every collection, point and alias again. Flush failures are
    /// logged with `tracing`; they do not stop the shutdown.
    pub async fn shutdown(self) {
        self.handle.stop().await;
    }

    /// Stops the server as [`shutdown`](TestServer::shutdown) does, but keeps its address and
    /// data directory (even a temporary one) for [`restart`](TestServer::restart): clients see
    /// a server going down and, after the restart, coming back with the same data, as with a
    /// restarted Qdrant. The fault plan and the call log are kept too. Stopping a stopped server
    /// does nothing. [`ServerHandle::stop`] does the same from another task.
    pub async fn stop(&mut self) {
        self.handle.stop().await;
    }

    /// Kills the server without a flush, as `kill -9` kills Qdrant; a later
    /// [`restart`](TestServer::restart) recovers every acknowledged write from the WAL. See
    /// [`ServerHandle::crash`].
    pub async fn crash(&mut self) {
        self.handle.crash().await;
    }

    /// Starts the server again on the same address and data directory, reloading every
    /// collection and alias; stops it first if it is running. Fails if the port was taken
    /// in the meantime. [`ServerHandle::restart`] does the same from another task.
    pub async fn restart(&mut self) -> Result<(), TestkitError> {
        self.handle.restart().await
    }
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr())
            .field("data_dir", &self.data_dir())
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl Drop for TestServer {
    /// Stops the server task without waiting for it. The collections are flushed and the
    /// temporary directory removed when the task (and every [`ServerHandle`]) has released them,
    /// so reopen a persistent directory only after [`shutdown`](TestServer::shutdown) or
    /// [`stop`](TestServer::stop).
    fn drop(&mut self) {
        self.handle.shared.abandon();
    }
}

/// Configures and starts a [`TestServer`].
///
/// ```
/// use qdrant_tower_testkit::TestServer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let server = TestServer::builder()
///     .data_dir(dir.path())
///     .search_threads(2)
///     .start()
///     .await?;
/// assert!(server.url().starts_with("http://127.0.0.1:"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TestServerBuilder {
    data_dir: Option<PathBuf>,
    search_threads: usize,
    host: IpAddr,
    port: u16,
    keys: ApiKeys,
    record_calls: bool,
}

impl Default for TestServerBuilder {
    fn default() -> Self {
        Self {
            data_dir: None,
            search_threads: 1,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            keys: ApiKeys::default(),
            record_calls: true,
        }
    }
}

impl TestServerBuilder {
    /// Stores collections in `path` (created if missing) instead of a temporary directory, and
    /// keeps them there: a server started later on the same path loads them again.
    ///
    /// Only one server may use a directory at a time (the engine locks each collection's WAL).
    /// Default: a fresh temporary directory, removed when the server is gone.
    pub fn data_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(path.into());
        self
    }

    /// Threads of each collection's search pool, and of its HNSW index builds unless the
    /// collection's `hnsw_config.max_indexing_threads` says otherwise. `0` counts as `1`.
    ///
    /// Default: 1, so that many servers in one test binary do not start a pool per CPU each.
    pub fn search_threads(mut self, threads: usize) -> Self {
        self.search_threads = threads.max(1);
        self
    }

    /// The port to listen on. Default: `0`, a free port chosen by the OS.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The address to listen on. Default: `127.0.0.1`. Without an
    /// [`api_key`](Self::api_key) anyone who reaches the port may do anything: bind other
    /// interfaces only on a network you trust.
    pub fn host(mut self, host: IpAddr) -> Self {
        self.host = host;
        self
    }

    /// Requires an API key on every call, as Qdrant's `service.api_key` does: calls must carry
    /// `key` in an `api-key` header or as `authorization: Bearer <key>` (the read-only key
    /// works for reads). Answers as Qdrant 1.18 does:
    ///
    /// | The call carries | Answer |
    /// |---|---|
    /// | no key | `UNAUTHENTICATED` "Must provide an API key or an Authorization bearer token" |
    /// | another key | `UNAUTHENTICATED` "Invalid API key or JWT" |
    /// | the [read-only key](Self::read_only_api_key), on a write | `PERMISSION_DENIED` "Forbidden: Global manage access is required" |
    ///
    /// `qdrant.Qdrant/HealthCheck` needs no key. An `api-key` header is used even when an
    /// `authorization` header is there too, and `Bearer` must be spelled so. A point write
    /// (upsert, delete, vectors, payload, batch, create field index) with the read-only key on
    /// a missing collection answers `NOT_FOUND`, as Qdrant looks the collection up first. One
    /// difference: Qdrant validates a request before checking write access, so an invalid
    /// write with the read-only key gets `INVALID_ARGUMENT` there and `PERMISSION_DENIED` here.
    /// Refused calls are recorded in the [`CallLog`] with [`Call::is_denied`](crate::Call::is_denied).
    ///
    /// The server keeps only a SHA-256 digest of the key and compares digests in constant
    /// time; the key never appears in `Debug` output, logs or errors.
    ///
    /// ```
    /// use qdrant_client::qdrant::ListCollectionsRequest;
    /// use qdrant_client::qdrant::collections_client::CollectionsClient;
    /// use qdrant_tower_testkit::TestServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = TestServer::builder().api_key("s3cret").start().await?;
    /// let channel = tonic::transport::Channel::from_shared(server.url())?.connect().await?;
    /// let mut collections = CollectionsClient::new(channel);
    ///
    /// let status = collections.list(ListCollectionsRequest {}).await.unwrap_err();
    /// assert_eq!(status.code(), tonic::Code::Unauthenticated);
    ///
    /// let mut request = tonic::Request::new(ListCollectionsRequest {});
    /// request.metadata_mut().insert("api-key", "s3cret".parse()?);
    /// collections.list(request).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn api_key(mut self, key: impl AsRef<str>) -> Self {
        self.keys.read_write = Some(ApiKey::new(key.as_ref()));
        self
    }

    /// Also accepts `key` for reads only, as Qdrant's `service.read_only_api_key`: reads
    /// pass, writes answer `PERMISSION_DENIED` "Forbidden: Global manage access is required".
    /// Set alone (without [`api_key`](Self::api_key)), every call needs a key and no call may
    /// write, as in Qdrant.
    pub fn read_only_api_key(mut self, key: impl AsRef<str>) -> Self {
        self.keys.read_only = Some(ApiKey::new(key.as_ref()));
        self
    }

    /// Whether calls are recorded in the [`CallLog`]. Default: true. Each entry keeps a copy of
    /// the decoded request; a long-running server (the standalone `serve` binary) turns this
    /// off so that memory does not grow with every call.
    pub fn record_calls(mut self, record: bool) -> Self {
        self.record_calls = record;
        self
    }

    /// Opens the data directory (loading the collections in it), binds the address and starts
    /// serving on the current tokio runtime.
    pub async fn start(self) -> Result<TestServer, TestkitError> {
        let root = match self.data_dir {
            Some(path) => DataRoot::persistent(path),
            None => DataRoot::temporary()?,
        };
        let root = Arc::new(root);
        let settings = StorageSettings {
            search_threads: self.search_threads,
        };
        let hooks = Hooks::new(
            Faults::new(),
            CallLog::new(),
            Arc::new(Connections::default()),
            Arc::new(self.keys),
            self.record_calls,
        );
        let running = serve(
            Arc::clone(&root),
            settings,
            SocketAddr::new(self.host, self.port),
            Arc::new(hooks.renewed()),
        )
        .await?;
        let shared = handle::Shared::new(running.addr, root, settings, hooks, running);
        Ok(TestServer {
            handle: ServerHandle {
                shared: Arc::new(shared),
            },
        })
    }
}

/// A server started by [`serve`].
struct Running {
    addr: SocketAddr,
    storage: Arc<Storage>,
    hooks: Arc<Hooks>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Opens the storage in `root`, binds `addr` and spawns the gRPC server.
async fn serve(
    root: Arc<DataRoot>,
    settings: StorageSettings,
    addr: SocketAddr,
    hooks: Arc<Hooks>,
) -> Result<Running, TestkitError> {
    let data_dir = root.path().to_path_buf();
    let storage = tokio::task::spawn_blocking(move || Storage::open(root, settings))
        .await
        .map_err(|err| TestkitError::Server(format!("opening the storage panicked: {err}")))??;
    let storage = Arc::new(storage);

    let bind_error = |err: std::io::Error| {
        TestkitError::Bind(std::io::Error::new(err.kind(), format!("{addr}: {err}")))
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let connections = Arc::clone(&hooks.connections);
    // Small gRPC frames must not wait for Nagle's algorithm. The server owns its
    // connections (see `conn`), so that a fault can drop one.
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map(move |accepted| accepted.map(|stream| connections.track(stream)));

    let api = Intercepted::new(QdrantApi::new(Arc::clone(&storage)), Arc::clone(&hooks));
    let router = Server::builder()
        .add_service(
            QdrantServer::new(api.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
        )
        .add_service(
            CollectionsServer::new(api.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(
            SnapshotsServer::new(api.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
        )
        .add_service(
            PointsServer::new(api)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(usize::MAX),
        );

    let (shutdown, signal) = oneshot::channel::<()>();
    let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        let _ = signal.await;
    }));
    tracing::debug!(%addr, data_dir = %data_dir.display(), "testkit server started");

    Ok(Running {
        addr,
        storage,
        hooks,
        shutdown,
        task,
    })
}
