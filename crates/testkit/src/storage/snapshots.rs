//! Collection and full snapshots, stored where and named as Qdrant names them
//! (`lib/collection/src/collection/snapshots.rs`, `lib/storage/src/content_manager/snapshots`):
//! `<collection>-<peer id>-<YYYY-MM-DD-HH-MM-SS>.snapshot` under `snapshots/<collection>/`, and
//! `full-snapshot-<YYYY-MM-DD-HH-MM-SS>.snapshot` under `snapshots/`, each with a `.checksum`
//! file holding its SHA-256.
//!
//! A collection snapshot is a tar of the collection's directory (its flushed shard, then its
//! metadata file), taken with the optimizer held off. It is the testkit's own format, not
//! Qdrant's: [`Storage::recover_snapshot`] restores it, a real Qdrant cannot, and vice versa.
//! Point updates are not paused while the files are read (they do not go through the storage),
//! so a snapshot taken under concurrent writes is crash-consistent rather than exact: the
//! engine recovers it like a shard after a crash, replaying its WAL.
//!
//! A full snapshot is a tar of one fresh snapshot per collection plus a `config.json` mapping
//! collections to their snapshot and aliases to their collection, as Qdrant's. Like Qdrant
//! (`_do_create_full_snapshot` moves them into the archive), making one leaves no
//! per-collection snapshot behind.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::meta::{CollectionMeta, META_FILE, write_atomically};
use super::{Collection, SHARD_DIR, Storage, StorageError, lock, run_blocking};

const SNAPSHOTS_DIR: &str = "snapshots";
const FULL_SNAPSHOT_PREFIX: &str = "full-snapshot";
const SNAPSHOT_EXTENSION: &str = "snapshot";

/// A stored snapshot, as `SnapshotDescription` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotInfo {
    pub(crate) name: String,
    /// The file's creation (or, where the file system has none, modification) time.
    pub(crate) created: Option<SystemTime>,
    pub(crate) size: u64,
    /// Hex SHA-256 of the file, from its `.checksum` file.
    pub(crate) checksum: Option<String>,
}

pub(super) fn snapshots_dir(root: &Path) -> PathBuf {
    root.join(SNAPSHOTS_DIR)
}

impl Storage {
    fn snapshots_dir(&self) -> PathBuf {
        snapshots_dir(self.root.path())
    }

    /// Snapshots collection `name` (or the one alias `name` points to).
    pub(crate) async fn create_snapshot(&self, name: &str) -> Result<SnapshotInfo, StorageError> {
        let _lifecycle = self.lifecycle.lock().await;
        let collection = self.get(name)?;
        let dir = self.snapshots_dir();
        let peer_id = self.peer_id;
        run_blocking(move || snapshot_collection(&collection, &dir, peer_id)).await
    }

    /// The snapshots of collection `name` (or of the one alias `name` points to), by name.
    pub(crate) async fn list_snapshots(
        &self,
        name: &str,
    ) -> Result<Vec<SnapshotInfo>, StorageError> {
        let collection = self.get(name)?;
        let dir = self.snapshots_dir().join(collection.name());
        run_blocking(move || list(&dir)).await
    }

    /// Deletes snapshot `snapshot` of collection `name` (or of the one alias `name` points to).
    pub(crate) async fn delete_snapshot(
        &self,
        name: &str,
        snapshot: &str,
    ) -> Result<(), StorageError> {
        let collection = self.get(name)?;
        let dir = self.snapshots_dir().join(collection.name());
        let snapshot = snapshot.to_owned();
        run_blocking(move || delete(&dir, &snapshot)).await
    }

    /// Snapshots every collection, then archives those snapshots with the aliases.
    pub(crate) async fn create_full_snapshot(&self) -> Result<SnapshotInfo, StorageError> {
        let _lifecycle = self.lifecycle.lock().await;
        let (collections, aliases) = {
            let state = self.read();
            let collections: Vec<_> = state.collections.values().cloned().collect();
            (collections, state.aliases.clone())
        };
        let dir = self.snapshots_dir();
        let peer_id = self.peer_id;
        run_blocking(move || full_snapshot(&collections, &aliases, &dir, peer_id)).await
    }

    /// The full snapshots, by name.
    pub(crate) async fn list_full_snapshots(&self) -> Result<Vec<SnapshotInfo>, StorageError> {
        let dir = self.snapshots_dir();
        run_blocking(move || list(&dir)).await
    }

    /// Deletes full snapshot `snapshot`.
    pub(crate) async fn delete_full_snapshot(&self, snapshot: &str) -> Result<(), StorageError> {
        let dir = self.snapshots_dir();
        let snapshot = snapshot.to_owned();
        run_blocking(move || delete(&dir, &snapshot)).await
    }

    /// Restores collection `name` from a collection snapshot file made by this testkit, replacing
    /// a collection of that name if there is one (its aliases stay), as Qdrant's recovery does.
    pub(crate) async fn recover_snapshot(
        &self,
        name: &str,
        snapshot: &Path,
    ) -> Result<(), StorageError> {
        let _lifecycle = self.lifecycle.lock().await;
        if self.read().aliases.contains_key(name) {
            return Err(StorageError::bad_input(format!(
                "Can't create collection with name {name}. Alias with the same name already exists"
            )));
        }
        let staging = self
            .root
            .path()
            .join(format!("recover-{}.tmp", uuid::Uuid::new_v4().simple()));
        let target = self.new_collection_dir();
        let snapshot = snapshot.to_path_buf();
        let settings = self.settings;
        let root = Arc::clone(&self.root);
        let owned_name = name.to_owned();
        let collection = run_blocking(move || {
            let unpacked = unpack(&snapshot, &staging, owned_name);
            let collection = unpacked.and_then(|meta| {
                fs::rename(&staging, &target).map_err(|err| {
                    StorageError::service_error(format!(
                        "failed to move the recovered collection into place: {err}"
                    ))
                })?;
                Collection::load(meta, target.clone(), settings, root).map_err(|err| {
                    let _ = fs::remove_dir_all(&target);
                    StorageError::service_error(err.to_string())
                })
            });
            let _ = fs::remove_dir_all(&staging);
            collection
        })
        .await?;

        let replaced = self
            .write()
            .collections
            .insert(name.to_owned(), Arc::new(collection));
        if let Some(old) = replaced {
            old.closed.store(true, std::sync::atomic::Ordering::Release);
            run_blocking(move || old.destroy()).await?;
        }
        tracing::debug!(collection = name, "recovered collection from a snapshot");
        Ok(())
    }
}

/// Writes one snapshot of `collection` under `snapshots/<name>/`. Blocking.
fn snapshot_collection(
    collection: &Collection,
    snapshots: &Path,
    peer_id: u64,
) -> Result<SnapshotInfo, StorageError> {
    let name = format!(
        "{}-{peer_id}-{}.{SNAPSHOT_EXTENSION}",
        collection.name(),
        timestamp()
    );
    let dir = snapshots.join(collection.name());
    let path = dir.join(&name);
    let io_error = io_error(&path);
    fs::create_dir_all(&dir).map_err(&io_error)?;
    let temp = temp_path(&path);
    let written = {
        // No optimization swaps segments while their files are read.
        let _run = lock(&collection.optimizer_run);
        collection.shard().flush()?;
        write_tar(&temp, |tar| {
            tar.append_dir_all(SHARD_DIR, collection.dir.join(SHARD_DIR))?;
            // Last, so that an archive cut short never restores as a complete collection.
            tar.append_path_with_name(collection.dir.join(META_FILE), META_FILE)
        })
    };
    if let Err(err) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_error(err));
    }
    store(&temp, &path)
}

/// Writes a full snapshot: a fresh snapshot of every collection, then the archive, then removes
/// those collection snapshots, whether or not the archive was written. Blocking.
fn full_snapshot(
    collections: &[Arc<Collection>],
    aliases: &BTreeMap<String, String>,
    snapshots: &Path,
    peer_id: u64,
) -> Result<SnapshotInfo, StorageError> {
    let mut parts = Vec::new();
    let archived = archive_collections(collections, aliases, snapshots, peer_id, &mut parts);
    for part in parts {
        let _ = fs::remove_file(checksum_path(&part));
        let _ = fs::remove_file(part);
    }
    archived
}

/// Snapshots every collection, pushing each file to `parts` as it is made, and archives them
/// as a full snapshot. Blocking.
fn archive_collections(
    collections: &[Arc<Collection>],
    aliases: &BTreeMap<String, String>,
    snapshots: &Path,
    peer_id: u64,
    parts: &mut Vec<PathBuf>,
) -> Result<SnapshotInfo, StorageError> {
    let mut mapping = serde_json::Map::new();
    for collection in collections {
        let snapshot = snapshot_collection(collection, snapshots, peer_id)?;
        mapping.insert(collection.name().to_owned(), json!(snapshot.name));
        parts.push(snapshots.join(collection.name()).join(snapshot.name));
    }
    let config = json!({
        "collections_mapping": mapping,
        "collections_aliases": aliases,
    });

    let name = format!(
        "{FULL_SNAPSHOT_PREFIX}-{}.{SNAPSHOT_EXTENSION}",
        timestamp()
    );
    let path = snapshots.join(&name);
    let io_error = io_error(&path);
    let temp = temp_path(&path);
    let written = write_tar(&temp, |tar| {
        for part in parts.iter() {
            let file_name = part.file_name().expect("a snapshot path ends in its name");
            tar.append_path_with_name(part, file_name)?;
        }
        let config = serde_json::to_vec_pretty(&config).map_err(io::Error::other)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(config.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
        );
        header.set_cksum();
        tar.append_data(&mut header, "config.json", config.as_slice())
    });
    if let Err(err) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_error(err));
    }
    store(&temp, &path)
}

/// Writes a tar archive to `path` and syncs it.
fn write_tar(
    path: &Path,
    fill: impl FnOnce(&mut tar::Builder<BufWriter<File>>) -> io::Result<()>,
) -> io::Result<()> {
    let mut tar = tar::Builder::new(BufWriter::new(File::create(path)?));
    // WAL segments are preallocated and mostly holes.
    tar.sparse(true);
    fill(&mut tar)?;
    let file = tar
        .into_inner()?
        .into_inner()
        .map_err(|err| err.into_error())?;
    file.sync_all()
}

/// Moves a finished archive into place, its checksum file first, as Qdrant's snapshot storage
/// does.
fn store(temp: &Path, path: &Path) -> Result<SnapshotInfo, StorageError> {
    let io_error = io_error(path);
    let stored = (|| {
        let checksum = sha256_hex(temp)?;
        write_atomically(&checksum_path(path), checksum.as_bytes())?;
        fs::rename(temp, path)
    })();
    if let Err(err) = stored {
        let _ = fs::remove_file(temp);
        return Err(io_error(err));
    }
    describe(path).map_err(io_error)
}

/// Snapshots in `dir`, by name; none when the directory does not exist yet.
fn list(dir: &Path) -> Result<Vec<SnapshotInfo>, StorageError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(io_error(dir)(err)),
    };
    let mut snapshots = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_error(dir))?.path();
        if !path.is_dir()
            && path
                .extension()
                .is_some_and(|extension| extension == SNAPSHOT_EXTENSION)
        {
            snapshots.push(describe(&path).map_err(io_error(&path))?);
        }
    }
    snapshots.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(snapshots)
}

/// Deletes snapshot `name` from `dir`, with Qdrant's "not found" answers
/// (`SnapshotStorageLocalFS::get_snapshot_path`). Blocking.
fn delete(dir: &Path, name: &str) -> Result<(), StorageError> {
    let not_found = |what: String| StorageError::NotFound {
        description: format!("{what} not found"),
    };
    if Path::new(name).file_name() != Some(name.as_ref()) {
        return Err(not_found(format!("Snapshot {name}")));
    }
    let dir = fs::canonicalize(dir)
        .map_err(|_| not_found(format!("Snapshot directory: {}", dir.display())))?;
    let path =
        fs::canonicalize(dir.join(name)).map_err(|_| not_found(format!("Snapshot {name}")))?;
    if !path.starts_with(&dir) || !path.is_file() {
        return Err(not_found(format!("Snapshot {name}")));
    }
    fs::remove_file(&path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => not_found(format!("Snapshot {name}")),
        _ => io_error(&path)(err),
    })?;
    // Not every snapshot has a checksum file.
    let _ = fs::remove_file(checksum_path(&path));
    Ok(())
}

/// Unpacks a collection snapshot into `staging` and renames the collection in it to `name`.
fn unpack(snapshot: &Path, staging: &Path, name: String) -> Result<CollectionMeta, StorageError> {
    let file = File::open(snapshot).map_err(|err| {
        StorageError::bad_input(format!(
            "cannot read snapshot {}: {err}",
            snapshot.display()
        ))
    })?;
    let mut archive = tar::Archive::new(io::BufReader::new(file));
    archive.unpack(staging).map_err(|err| {
        StorageError::bad_input(format!(
            "cannot unpack snapshot {}: {err}",
            snapshot.display()
        ))
    })?;
    let Some(mut meta) = CollectionMeta::read(staging) else {
        return Err(StorageError::bad_input(format!(
            "{} is not a qdrant-tower-testkit collection snapshot",
            snapshot.display()
        )));
    };
    if !staging.join(SHARD_DIR).is_dir() {
        return Err(StorageError::bad_input(format!(
            "{} is not a qdrant-tower-testkit collection snapshot",
            snapshot.display()
        )));
    }
    meta.name = name;
    meta.write(staging).map_err(io_error(staging))?;
    Ok(meta)
}

fn describe(path: &Path) -> io::Result<SnapshotInfo> {
    let metadata = fs::metadata(path)?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let checksum = fs::read_to_string(checksum_path(path)).ok();
    Ok(SnapshotInfo {
        name,
        created: metadata.created().or_else(|_| metadata.modified()).ok(),
        size: metadata.len(),
        checksum,
    })
}

fn sha256_hex(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    let mut hex = String::with_capacity(64);
    for byte in hasher.finalize().iter() {
        use std::fmt::Write as _;
        let _ = write!(hex, "{byte:02x}");
    }
    Ok(hex)
}

fn checksum_path(path: &Path) -> PathBuf {
    let mut checksum = path.as_os_str().to_owned();
    checksum.push(".checksum");
    PathBuf::from(checksum)
}

/// Where an archive is written before it is moved into place; not listed (wrong extension).
fn temp_path(path: &Path) -> PathBuf {
    path.with_extension("tmp")
}

/// Qdrant's snapshot time stamp: UTC, to the second.
fn timestamp() -> String {
    chrono::Utc::now().format("%Y-%m-%d-%H-%M-%S").to_string()
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> StorageError + '_ {
    move |err| StorageError::service_error(format!("snapshot file {}: {err}", path.display()))
}
