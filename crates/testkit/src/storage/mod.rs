//! Collections on disk: a name → collection map, one `EdgeShard` per collection.
//!
//! This module knows nothing of gRPC. It owns the data directory, creates, loads and deletes
//! collections, and keeps each collection's background optimizer. The map sits behind a
//! `std::sync::RwLock` that is only ever held for a map lookup or insertion, never across an
//! `.await` or an engine call: handlers clone the `Arc<Collection>` out and work on that.
//!
//! Layout of the data directory:
//! ```text
//! <data_dir>/testkit_node.json                            this node's peer id
//! <data_dir>/aliases.json                                 alias → collection name
//! <data_dir>/collections/<uuid>/testkit_collection.json   name, creation time, reported settings
//! <data_dir>/collections/<uuid>/shard/                    the EdgeShard (WAL, segments)
//! <data_dir>/snapshots/<collection>/<name>.snapshot       collection snapshots (+ .checksum)
//! <data_dir>/snapshots/full-snapshot-<date>.snapshot      full snapshots (+ .checksum)
//! ```
//! A directory per collection *instance* (not per name) means a shard that is still draining
//! after its collection was deleted can never touch a new collection of the same name.
//!
//! Aliases sit in the same lock as the collections, so a lookup never sees half an alias change,
//! and [`Storage::get`] resolves them: every RPC that looks a collection up accepts an alias, as
//! Qdrant's `TableOfContent::get_collection` does.

mod aliases;
mod error;
mod meta;
mod snapshots;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread;
use std::time::SystemTime;

use qdrant_edge::{EdgeConfig, EdgeShard};
use tempfile::TempDir;

pub(crate) use self::aliases::AliasChange;
pub(crate) use self::error::StorageError;
pub(crate) use self::meta::CollectionSettings;
use self::meta::{CollectionMeta, META_FILE};
pub(crate) use self::snapshots::SnapshotInfo;
use crate::TestkitError;

const COLLECTIONS_DIR: &str = "collections";
const SHARD_DIR: &str = "shard";

/// The directory all collections live under. When it is a temporary directory, it is removed
/// once the server, the storage and every collection (including ones still busy in a blocking
/// task) are gone.
#[derive(Debug)]
pub(crate) struct DataRoot {
    path: PathBuf,
    _temp: Option<TempDir>,
}

impl DataRoot {
    /// A fresh temporary directory, removed on drop.
    pub(crate) fn temporary() -> Result<Self, TestkitError> {
        let temp = tempfile::Builder::new()
            .prefix("qdrant-tower-testkit-")
            .tempdir()
            .map_err(|source| TestkitError::DataDir {
                path: std::env::temp_dir(),
                source,
            })?;
        Ok(Self {
            path: temp.path().to_path_buf(),
            _temp: Some(temp),
        })
    }

    /// A directory the caller owns; it is kept, and reloaded by the next server started on it.
    pub(crate) fn persistent(path: PathBuf) -> Self {
        Self { path, _temp: None }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Engine settings every collection of one server shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StorageSettings {
    /// Size of each shard's search thread pool (and of its HNSW build when not configured).
    pub(crate) search_threads: usize,
}

/// The collections and aliases, behind one lock.
#[derive(Debug, Default)]
struct State {
    collections: BTreeMap<String, Arc<Collection>>,
    /// Alias → collection name. Every alias points to a collection in `collections`.
    aliases: BTreeMap<String, String>,
}

impl State {
    /// Qdrant's `TableOfContent::resolve_name`: an alias wins over a collection of the same name.
    fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases.get(name).map_or(name, String::as_str)
    }
}

/// All collections of one server.
#[derive(Debug)]
pub(crate) struct Storage {
    state: RwLock<State>,
    /// Serialises create, delete, alias changes, config updates and snapshots, which span
    /// blocking file-system work between their checks and the map update. Reads and point
    /// operations never take it.
    lifecycle: tokio::sync::Mutex<()>,
    root: Arc<DataRoot>,
    settings: StorageSettings,
    peer_id: u64,
}

impl Storage {
    /// Opens the data directory and loads every collection and alias found in it. Blocking.
    pub(crate) fn open(
        root: Arc<DataRoot>,
        settings: StorageSettings,
    ) -> Result<Self, TestkitError> {
        let data_dir_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TestkitError::DataDir { path, source }
        };
        let collections_dir = root.path.join(COLLECTIONS_DIR);
        fs::create_dir_all(&collections_dir).map_err(data_dir_error(&collections_dir))?;
        let snapshots_dir = snapshots::snapshots_dir(&root.path);
        fs::create_dir_all(&snapshots_dir).map_err(data_dir_error(&snapshots_dir))?;
        let peer_id =
            meta::load_or_create_peer_id(&root.path).map_err(data_dir_error(&root.path))?;
        let entries = fs::read_dir(&collections_dir).map_err(data_dir_error(&collections_dir))?;

        let mut collections = BTreeMap::new();
        for entry in entries {
            let dir = entry.map_err(data_dir_error(&collections_dir))?.path();
            if !dir.is_dir() {
                continue;
            }
            let Some(meta) = CollectionMeta::read(&dir) else {
                // A create or a delete that did not finish: no collection ever answered from it.
                tracing::warn!(dir = %dir.display(), "removing incomplete collection directory");
                let _ = fs::remove_dir_all(&dir);
                continue;
            };
            let name = meta.name.clone();
            let collection = Collection::load(meta, dir, settings, Arc::clone(&root))?;
            tracing::debug!(collection = %name, "loaded collection");
            collections.insert(name, Arc::new(collection));
        }

        let mut aliases = aliases::load(&root.path).map_err(data_dir_error(&root.path))?;
        aliases.retain(|alias, collection| {
            let known = collections.contains_key(collection);
            if !known {
                tracing::warn!(%alias, %collection, "dropping alias of a missing collection");
            }
            known
        });

        Ok(Self {
            state: RwLock::new(State {
                collections,
                aliases,
            }),
            lifecycle: tokio::sync::Mutex::new(()),
            root,
            settings,
            peer_id,
        })
    }

    pub(crate) fn settings(&self) -> StorageSettings {
        self.settings
    }

    /// This node's peer id, kept in the data directory.
    pub(crate) fn peer_id(&self) -> u64 {
        self.peer_id
    }

    /// The collection named `name`, or that alias `name` points to, or Qdrant's "doesn't exist"
    /// error.
    pub(crate) fn get(&self, name: &str) -> Result<Arc<Collection>, StorageError> {
        // Every request naming a collection is validated first in Qdrant.
        if name.is_empty() || name.chars().count() > 255 {
            return Err(StorageError::collection_name_length(name));
        }
        let state = self.read();
        let name = state.resolve(name);
        state
            .collections
            .get(name)
            .cloned()
            .ok_or_else(|| StorageError::collection_not_found(name))
    }

    /// Whether `name` is a collection or an alias of one, as Qdrant's `CollectionExists` answers.
    pub(crate) fn exists(&self, name: &str) -> bool {
        let state = self.read();
        state.collections.contains_key(state.resolve(name))
    }

    /// Names of all collections, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        self.read().collections.keys().cloned().collect()
    }

    /// Creates a collection whose shard is configured by `config`.
    pub(crate) async fn create(
        &self,
        name: &str,
        config: EdgeConfig,
        settings: CollectionSettings,
    ) -> Result<(), StorageError> {
        let _lifecycle = self.lifecycle.lock().await;
        {
            let state = self.read();
            if state.collections.contains_key(name) {
                return Err(StorageError::collection_exists(name));
            }
            if state.aliases.contains_key(name) {
                return Err(StorageError::bad_input(format!(
                    "Can't create collection with name {name}. Alias with the same name already exists"
                )));
            }
        }
        let dir = self.new_collection_dir();
        let meta = CollectionMeta {
            name: name.to_owned(),
            created_at: SystemTime::now(),
            settings,
        };
        let root = Arc::clone(&self.root);
        let collection = run_blocking(move || Collection::create(meta, dir, config, root)).await?;
        self.write()
            .collections
            .insert(name.to_owned(), Arc::new(collection));
        tracing::debug!(collection = name, "created collection");
        Ok(())
    }

    /// Deletes a collection, its aliases and its files (not its snapshots, as in Qdrant).
    /// `Ok(false)` when there was no such collection, as Qdrant answers; `name` is not resolved
    /// as an alias.
    pub(crate) async fn delete(&self, name: &str) -> Result<bool, StorageError> {
        let _lifecycle = self.lifecycle.lock().await;
        let (removed, aliases) = {
            let mut state = self.write();
            let before = state.aliases.len();
            state.aliases.retain(|_, collection| collection != name);
            let aliases = (state.aliases.len() != before).then(|| state.aliases.clone());
            (state.collections.remove(name), aliases)
        };
        if let Some(collection) = &removed {
            collection.closed.store(true, Ordering::Release);
        }
        // The files first: a stale alias file only names a missing collection, which the next
        // open drops, while a collection left on disk would come back.
        let destroyed = match removed {
            Some(collection) => run_blocking(move || collection.destroy())
                .await
                .map(|()| true),
            None => Ok(false),
        };
        if let Some(aliases) = aliases {
            self.save_aliases(aliases).await?;
        }
        if destroyed? {
            tracing::debug!(collection = name, "deleted collection");
            return Ok(true);
        }
        Ok(false)
    }

    /// Runs `update` on collection `name` (or the one alias `name` points to) with every other
    /// lifecycle operation held off, then lets the optimizer converge the segments to the new
    /// configuration, as Qdrant recreates its optimizers after an update.
    pub(crate) async fn update_collection<F>(
        &self,
        name: &str,
        update: F,
    ) -> Result<(), StorageError>
    where
        F: FnOnce(&Collection) -> Result<(), StorageError> + Send + 'static,
    {
        let _lifecycle = self.lifecycle.lock().await;
        let collection = self.get(name)?;
        let updated = Arc::clone(&collection);
        run_blocking(move || update(&updated)).await?;
        collection.schedule_optimization();
        Ok(())
    }

    /// Closes every collection: stops its optimizer, flushes its WAL and segments, and releases
    /// its files (and the WAL lock), so that another server can open the same directory right
    /// after. Requests that still arrive find no collection. Blocking.
    pub(crate) fn close(&self) -> Result<(), StorageError> {
        let collections = {
            let mut state = self.write();
            state.aliases.clear();
            std::mem::take(&mut state.collections)
        };
        let mut first_error = None;
        for (name, collection) in collections {
            collection.closed.store(true, Ordering::Release);
            // Waits for a running optimization; queued ones see `closed` and do nothing.
            drop(lock(&collection.optimizer_run));
            if let Err(err) = collection.shard.flush() {
                tracing::error!(collection = %name, %err, "flush failed");
                first_error.get_or_insert(StorageError::from(err));
            }
            release(collection);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Drops every collection as a killed process would: what the engine had written to its
    /// files stays, what a flush would have added does not. Requests that still arrive find no
    /// collection.
    ///
    /// `EdgeShard` flushes when dropped, and must be dropped to release its WAL lock. So this
    /// waits (boundedly) until no request or optimizer run holds a collection, copies the
    /// collections' files as they are (the crash image), drops the shards, which flush into the
    /// live files, and then replaces those with the image.
    pub(crate) async fn crash(self: &Arc<Self>) -> Result<(), StorageError> {
        // No create, delete or snapshot is half done in the image.
        let _lifecycle = self.lifecycle.lock().await;
        let storage = Arc::clone(self);
        run_blocking(move || storage.crash_now()).await
    }

    fn crash_now(&self) -> Result<(), StorageError> {
        let collections = {
            let mut state = self.write();
            state.aliases.clear();
            std::mem::take(&mut state.collections)
        };
        let owned: Vec<Arc<Collection>> = collections.into_values().collect();
        for collection in &owned {
            collection.closed.store(true, Ordering::Release);
            // Queued optimizer runs see `closed`; a running one finishes first.
            drop(lock(&collection.optimizer_run));
            if !wait_until_unshared(collection) {
                tracing::warn!(
                    collection = %collection.name,
                    "collection still in use at the crash; its crash image may be torn"
                );
            }
        }

        let live = self.root.path.join(COLLECTIONS_DIR);
        let image = self
            .root
            .path
            .join(format!(".crash-image-{}", uuid::Uuid::new_v4()));
        let io_error = |what: &str, path: &Path, err: io::Error| {
            StorageError::service_error(format!(
                "crash: failed to {what} {}: {err}",
                path.display()
            ))
        };
        copy_dir(&live, &image).map_err(|err| io_error("copy", &live, err))?;
        // The engine flushes into `live` here; that flush is thrown away below.
        drop(owned);
        fs::remove_dir_all(&live).map_err(|err| io_error("remove", &live, err))?;
        fs::rename(&image, &live).map_err(|err| io_error("restore", &live, err))?;
        Ok(())
    }

    /// A fresh directory for a new collection instance.
    fn new_collection_dir(&self) -> PathBuf {
        self.root
            .path
            .join(COLLECTIONS_DIR)
            .join(uuid::Uuid::new_v4().to_string())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One collection: its shard plus what Qdrant reports about it that the shard does not keep.
#[derive(Debug)]
pub(crate) struct Collection {
    // Declared first so that it is dropped (and flushed) before `_root` can remove the directory.
    shard: EdgeShard,
    name: String,
    dir: PathBuf,
    created_at: SystemTime,
    settings: Mutex<CollectionSettings>,
    last_operation_id: AtomicU64,
    /// Set when the collection is deleted or its server shuts down: no optimization starts.
    closed: AtomicBool,
    optimization_pending: AtomicBool,
    /// Held while the optimizer runs, and by `destroy` and snapshots, so files are not removed
    /// or replaced under them.
    optimizer_run: Mutex<()>,
    optimizer_error: Mutex<Option<String>>,
    _root: Arc<DataRoot>,
}

impl Collection {
    fn new(shard: EdgeShard, meta: CollectionMeta, dir: PathBuf, root: Arc<DataRoot>) -> Self {
        Self {
            shard,
            name: meta.name,
            dir,
            created_at: meta.created_at,
            settings: Mutex::new(meta.settings),
            last_operation_id: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            optimization_pending: AtomicBool::new(false),
            optimizer_run: Mutex::new(()),
            optimizer_error: Mutex::new(None),
            _root: root,
        }
    }

    /// Creates the directory, the shard and, last, the metadata file that marks the collection
    /// complete. Blocking.
    fn create(
        meta: CollectionMeta,
        dir: PathBuf,
        config: EdgeConfig,
        root: Arc<DataRoot>,
    ) -> Result<Self, StorageError> {
        let io_error = |what: &str, err: io::Error| {
            StorageError::service_error(format!("failed to {what} {}: {err}", dir.display()))
        };
        fs::create_dir_all(&dir).map_err(|err| io_error("create", err))?;
        let shard = match EdgeShard::new(&dir.join(SHARD_DIR), config) {
            Ok(shard) => shard,
            Err(err) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(err.into());
            }
        };
        if let Err(err) = meta.write(&dir) {
            drop(shard);
            let _ = fs::remove_dir_all(&dir);
            return Err(io_error("write metadata in", err));
        }
        Ok(Self::new(shard, meta, dir, root))
    }

    /// Opens the shard of a complete collection directory. Blocking.
    fn load(
        meta: CollectionMeta,
        dir: PathBuf,
        settings: StorageSettings,
        root: Arc<DataRoot>,
    ) -> Result<Self, TestkitError> {
        let config = EdgeConfig::builder()
            .max_search_threads(settings.search_threads)
            .build();
        let shard = EdgeShard::load(&dir.join(SHARD_DIR), Some(config)).map_err(|err| {
            TestkitError::LoadCollection {
                name: meta.name.clone(),
                path: dir.clone(),
                message: err.to_string(),
            }
        })?;
        Ok(Self::new(shard, meta, dir, root))
    }

    /// Removes the collection's files once no optimizer runs on them. Blocking.
    fn destroy(self: Arc<Self>) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        {
            let _run = lock(&self.optimizer_run);
            // Without its metadata file the directory is garbage even if removal stops halfway.
            match fs::remove_file(dir.join(META_FILE)) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(StorageError::service_error(format!(
                        "failed to delete collection `{}`: {err}",
                        self.name
                    )));
                }
            }
        }
        // The last owner drops (and flushes) the shard before its files go; a request still in
        // flight keeps its own reference and finishes on open file handles.
        drop(self);
        fs::remove_dir_all(&dir).map_err(|err| {
            StorageError::service_error(format!("failed to delete {}: {err}", dir.display()))
        })
    }

    pub(crate) fn shard(&self) -> &EdgeShard {
        &self.shard
    }

    /// The collection's own name (never an alias).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn created_at(&self) -> SystemTime {
        self.created_at
    }

    /// The settings Qdrant reports that the engine does not keep.
    pub(crate) fn settings(&self) -> CollectionSettings {
        lock(&self.settings).clone()
    }

    /// Changes the reported settings and saves them with the collection. Blocking.
    pub(crate) fn update_settings(
        &self,
        update: impl FnOnce(&mut CollectionSettings),
    ) -> Result<(), StorageError> {
        let mut settings = lock(&self.settings);
        let mut updated = settings.clone();
        update(&mut updated);
        let meta = CollectionMeta {
            name: self.name.clone(),
            created_at: self.created_at,
            settings: updated.clone(),
        };
        meta.write(&self.dir).map_err(|err| {
            StorageError::service_error(format!(
                "failed to save the settings of collection `{}`: {err}",
                self.name
            ))
        })?;
        *settings = updated;
        Ok(())
    }

    /// A new operation id for an update's `UpdateResult`, increasing per collection from 1, as
    /// a new Qdrant collection's first update is operation 1.
    pub(crate) fn next_operation_id(&self) -> u64 {
        self.last_operation_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The last optimizer failure, if the last run failed.
    pub(crate) fn optimizer_error(&self) -> Option<String> {
        lock(&self.optimizer_error).clone()
    }

    /// Runs the shard's optimizers (segment merge, vacuum, HNSW indexing) in the background after
    /// an update, as Qdrant's update worker does. Calls made while a run is pending coalesce.
    /// Must be called from within a tokio runtime.
    pub(crate) fn schedule_optimization(self: &Arc<Self>) {
        if self.closed.load(Ordering::Acquire)
            || self.optimization_pending.swap(true, Ordering::AcqRel)
        {
            return;
        }
        // A queued run must not keep a closed collection (and its WAL lock) alive.
        let collection = Arc::downgrade(self);
        tokio::task::spawn_blocking(move || {
            if let Some(collection) = collection.upgrade() {
                collection.run_optimizer();
            }
        });
    }

    fn run_optimizer(&self) {
        let _run = lock(&self.optimizer_run);
        // Updates from now on schedule a run of their own.
        self.optimization_pending.store(false, Ordering::Release);
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let outcome = self.shard.optimize();
        let mut last_error = lock(&self.optimizer_error);
        match outcome {
            Ok(optimized) => {
                if optimized {
                    tracing::debug!(collection = %self.name, "optimized segments");
                }
                *last_error = None;
            }
            Err(err) => {
                tracing::warn!(collection = %self.name, %err, "optimizer failed");
                *last_error = Some(err.to_string());
            }
        }
    }
}

/// Waits until `collection` is the only reference left (requests and optimizer runs done),
/// for at most 5 s; whether it is.
fn wait_until_unshared(collection: &Arc<Collection>) -> bool {
    const POLL: std::time::Duration = std::time::Duration::from_millis(1);
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
    let started = std::time::Instant::now();
    while Arc::strong_count(collection) > 1 {
        if started.elapsed() >= LIMIT {
            return false;
        }
        thread::sleep(POLL);
    }
    true
}

/// Copies directory `from` to `to` (which must not exist), files and subdirectories, reading
/// each file through the page cache as a process kill would leave it.
fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Drops the last reference to a closed collection, which drops its shard and so releases its
/// files. A request or optimizer run that still holds a reference finishes first; the wait is
/// bounded so that a stuck engine call cannot hang a shutdown.
fn release(mut collection: Arc<Collection>) {
    const POLL: std::time::Duration = std::time::Duration::from_millis(1);
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
    let started = std::time::Instant::now();
    loop {
        match Arc::try_unwrap(collection) {
            Ok(collection) => return drop(collection),
            Err(shared) if started.elapsed() < LIMIT => {
                collection = shared;
                thread::sleep(POLL);
            }
            Err(shared) => {
                tracing::warn!(
                    collection = %shared.name,
                    "collection still in use after shutdown; its files stay open until it is released"
                );
                return;
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs blocking engine work on tokio's blocking pool; a panic becomes a service error.
pub(crate) async fn run_blocking<T, F>(work: F) -> Result<T, StorageError>
where
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| StorageError::service_error(format!("Tokio task join error: {err}")))?
}

#[cfg(test)]
mod tests {
    use qdrant_edge::{
        Distance, EdgeOptimizersConfig, EdgeVectorParams, NamedQuery, PointInsertOperations,
        PointOperations, PointStructPersisted, QueryEnum, QueryRequest, ScoringQuery, SearchParams,
        UpdateOperation, VectorInternal, VectorStructPersisted,
    };

    use super::*;

    /// A deterministic, spread-out vector for point `i`.
    fn vector(i: u64) -> Vec<f32> {
        (0..8_u64)
            .map(|d| {
                let mixed = (i * 8 + d + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                (mixed % 10_007) as f32 / 10_007.0 - 0.5
            })
            .collect()
    }

    #[tokio::test]
    async fn the_optimizer_builds_an_hnsw_index_once_a_segment_passes_the_threshold() {
        let storage = Storage::open(
            Arc::new(DataRoot::temporary().unwrap()),
            StorageSettings { search_threads: 1 },
        )
        .unwrap();
        let mut config = EdgeConfig::builder()
            .vector("", EdgeVectorParams::builder(8, Distance::Euclid).build())
            .max_search_threads(1)
            .build();
        config.optimizers = Some(EdgeOptimizersConfig {
            indexing_threshold: Some(1), // KB: 400 points of 8 floats are well past it.
            ..EdgeOptimizersConfig::default()
        });
        storage
            .create("hnsw", config, CollectionSettings::default())
            .await
            .unwrap();
        let collection = storage.get("hnsw").unwrap();

        let points = (0..400)
            .map(|i| PointStructPersisted {
                id: i.into(),
                vector: VectorStructPersisted::Single(vector(i)),
                payload: None,
            })
            .collect();
        collection
            .shard()
            .update(UpdateOperation::PointOperation(
                PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)),
            ))
            .unwrap();
        assert_eq!(collection.shard().info().unwrap().indexed_vectors_count, 0);

        collection.run_optimizer();
        assert_eq!(collection.optimizer_error(), None);
        let info = collection.shard().info().unwrap();
        assert_eq!(info.points_count, 400);
        assert_eq!(info.indexed_vectors_count, 400);

        // The approximate (HNSW) search finds a stored point as its own nearest neighbour.
        let query = QueryRequest {
            query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
                query: VectorInternal::Dense(vector(123)),
                using: None,
            }))),
            params: Some(SearchParams {
                exact: false,
                ..SearchParams::default()
            }),
            ..QueryRequest::new(1)
        };
        let hits = collection.shard().query(query).unwrap();
        assert_eq!(hits[0].id, 123.into());

        drop(collection);
        storage.close().unwrap();
        assert!(!storage.exists("hnsw"));
    }
}
