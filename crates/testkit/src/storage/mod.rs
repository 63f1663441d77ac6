//! Collections on disk: a name → collection map, one `EdgeShard` per collection.
//!
//! This module knows nothing of gRPC. It owns the data directory, creates, loads and deletes
//! collections, and keeps each collection's background optimizer. The map sits behind a
//! `std::sync::RwLock` that is only ever held for a map lookup or insertion, never across an
//! `.await` or an engine call: handlers clone the `Arc<Collection>` out and work on that.
//!
//! Layout of the data directory:
//! ```text
//! <data_dir>/collections/<uuid>/testkit_collection.json   name and creation time
//! <data_dir>/collections/<uuid>/shard/                    the EdgeShard (WAL, segments)
//! ```
//! A directory per collection *instance* (not per name) means a shard that is still draining
//! after its collection was deleted can never touch a new collection of the same name.

mod error;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qdrant_edge::{EdgeConfig, EdgeShard};
use tempfile::TempDir;

pub(crate) use self::error::StorageError;
use crate::TestkitError;

const COLLECTIONS_DIR: &str = "collections";
const META_FILE: &str = "testkit_collection.json";
const SHARD_DIR: &str = "shard";

/// The directory all collections live under. When it is a temporary directory, it is removed
/// once the storage and every collection (including ones still busy in a blocking task) are gone.
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

/// All collections of one server.
#[derive(Debug)]
pub(crate) struct Storage {
    collections: RwLock<BTreeMap<String, Arc<Collection>>>,
    /// Serialises create and delete, which span blocking file-system work between the existence
    /// check and the map update. Reads and point operations never take it.
    lifecycle: tokio::sync::Mutex<()>,
    root: Arc<DataRoot>,
    settings: StorageSettings,
}

impl Storage {
    /// Opens the data directory and loads every collection found in it. Blocking.
    pub(crate) fn open(root: DataRoot, settings: StorageSettings) -> Result<Self, TestkitError> {
        let collections_dir = root.path.join(COLLECTIONS_DIR);
        fs::create_dir_all(&collections_dir).map_err(|source| TestkitError::DataDir {
            path: collections_dir.clone(),
            source,
        })?;
        let root = Arc::new(root);
        let entries = fs::read_dir(&collections_dir).map_err(|source| TestkitError::DataDir {
            path: collections_dir.clone(),
            source,
        })?;

        let mut collections = BTreeMap::new();
        for entry in entries {
            let dir = entry
                .map_err(|source| TestkitError::DataDir {
                    path: collections_dir.clone(),
                    source,
                })?
                .path();
            if !dir.is_dir() {
                continue;
            }
            let Some(meta) = CollectionMeta::read(&dir) else {
                // A create or a delete that did not finish: no collection ever answered from it.
                tracing::warn!(dir = %dir.display(), "removing incomplete collection directory");
                let _ = fs::remove_dir_all(&dir);
                continue;
            };
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
            tracing::debug!(collection = %meta.name, "loaded collection");
            let name = meta.name.clone();
            collections.insert(
                name,
                Arc::new(Collection::new(shard, meta, dir, Arc::clone(&root))),
            );
        }

        Ok(Self {
            collections: RwLock::new(collections),
            lifecycle: tokio::sync::Mutex::new(()),
            root,
            settings,
        })
    }

    pub(crate) fn settings(&self) -> StorageSettings {
        self.settings
    }

    /// The collection named `name`, or Qdrant's "doesn't exist" error.
    pub(crate) fn get(&self, name: &str) -> Result<Arc<Collection>, StorageError> {
        self.read()
            .get(name)
            .cloned()
            .ok_or_else(|| StorageError::collection_not_found(name))
    }

    pub(crate) fn exists(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// Names of all collections, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Creates a collection whose shard is configured by `config`.
    pub(crate) async fn create(&self, name: &str, config: EdgeConfig) -> Result<(), StorageError> {
        let _lifecycle = self.lifecycle.lock().await;
        if self.exists(name) {
            return Err(StorageError::collection_exists(name));
        }
        let dir = self
            .root
            .path
            .join(COLLECTIONS_DIR)
            .join(uuid::Uuid::new_v4().to_string());
        let meta = CollectionMeta {
            name: name.to_owned(),
            created_at: SystemTime::now(),
        };
        let root = Arc::clone(&self.root);
        let collection = run_blocking(move || Collection::create(meta, dir, config, root)).await?;
        self.write().insert(name.to_owned(), Arc::new(collection));
        tracing::debug!(collection = name, "created collection");
        Ok(())
    }

    /// Deletes a collection and its files. `Ok(false)` when there was no such collection, as
    /// Qdrant answers.
    pub(crate) async fn delete(&self, name: &str) -> Result<bool, StorageError> {
        let _lifecycle = self.lifecycle.lock().await;
        let Some(collection) = self.write().remove(name) else {
            return Ok(false);
        };
        collection.closed.store(true, Ordering::Release);
        run_blocking(move || collection.destroy()).await?;
        tracing::debug!(collection = name, "deleted collection");
        Ok(true)
    }

    /// Closes every collection: stops its optimizer, flushes its WAL and segments, and releases
    /// its files (and the WAL lock), so that another server can open the same directory right
    /// after. Requests that still arrive find no collection. Blocking.
    pub(crate) fn close(&self) -> Result<(), StorageError> {
        let collections = std::mem::take(&mut *self.write());
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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Collection>>> {
        self.collections
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Collection>>> {
        self.collections
            .write()
            .unwrap_or_else(PoisonError::into_inner)
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
    last_operation_id: AtomicU64,
    /// Set when the collection is deleted or its server shuts down: no optimization starts.
    closed: AtomicBool,
    optimization_pending: AtomicBool,
    /// Held while the optimizer runs, and by `destroy`, so files are not removed under it.
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

    pub(crate) fn created_at(&self) -> SystemTime {
        self.created_at
    }

    /// A new operation id for an update's `UpdateResult`, increasing per collection.
    pub(crate) fn next_operation_id(&self) -> u64 {
        self.last_operation_id.fetch_add(1, Ordering::Relaxed)
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

/// What the testkit stores next to a shard: the collection's name and creation time.
#[derive(Debug, Clone)]
struct CollectionMeta {
    name: String,
    created_at: SystemTime,
}

impl CollectionMeta {
    fn read(dir: &Path) -> Option<Self> {
        let bytes = fs::read(dir.join(META_FILE)).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let name = value.get("name")?.as_str()?.to_owned();
        let nanos = value
            .get("created_at_unix_nanos")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        Some(Self {
            name,
            created_at: UNIX_EPOCH + Duration::from_nanos(nanos),
        })
    }

    /// Writes the file atomically (temporary file, then rename).
    fn write(&self, dir: &Path) -> io::Result<()> {
        let nanos = self
            .created_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
            });
        let value = serde_json::json!({
            "name": self.name,
            "created_at_unix_nanos": nanos,
        });
        let temp = dir.join(format!("{META_FILE}.tmp"));
        fs::write(&temp, value.to_string())?;
        fs::rename(&temp, dir.join(META_FILE))
    }
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
            DataRoot::temporary().unwrap(),
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
        storage.create("hnsw", config).await.unwrap();
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
