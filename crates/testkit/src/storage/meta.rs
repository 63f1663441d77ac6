//! What the testkit keeps on disk next to the engine's own files: each collection's name,
//! creation time and the settings Qdrant reports but the engine has no use for, and the node's
//! peer id. Small JSON files, each written atomically (temporary file, then rename).

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value as Json, json};

pub(super) const META_FILE: &str = "testkit_collection.json";
const NODE_FILE: &str = "testkit_node.json";

/// Collection settings that Qdrant stores and reports (in `GetCollectionInfo`) but that mean
/// nothing to a single local shard: replication and read fan-out, the optimizer's flush interval
/// and thread limit, and the user's metadata. Accepted on create and update, kept with the
/// collection, reported back.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CollectionSettings {
    pub(crate) replication_factor: Option<u32>,
    pub(crate) write_consistency_factor: Option<u32>,
    pub(crate) read_fan_out_factor: Option<u32>,
    pub(crate) read_fan_out_delay_ms: Option<u64>,
    pub(crate) flush_interval_sec: Option<u64>,
    /// `None` is Qdrant's "auto".
    pub(crate) max_optimization_threads: Option<u64>,
    pub(crate) metadata: Map<String, Json>,
}

impl CollectionSettings {
    fn to_json(&self) -> Json {
        json!({
            "replication_factor": self.replication_factor,
            "write_consistency_factor": self.write_consistency_factor,
            "read_fan_out_factor": self.read_fan_out_factor,
            "read_fan_out_delay_ms": self.read_fan_out_delay_ms,
            "flush_interval_sec": self.flush_interval_sec,
            "max_optimization_threads": self.max_optimization_threads,
            "metadata": self.metadata,
        })
    }

    fn from_json(value: Option<&Json>) -> Self {
        let Some(value) = value else {
            return Self::default();
        };
        let u64_of = |key: &str| value.get(key).and_then(Json::as_u64);
        let u32_of = |key: &str| u64_of(key).and_then(|v| u32::try_from(v).ok());
        Self {
            replication_factor: u32_of("replication_factor"),
            write_consistency_factor: u32_of("write_consistency_factor"),
            read_fan_out_factor: u32_of("read_fan_out_factor"),
            read_fan_out_delay_ms: u64_of("read_fan_out_delay_ms"),
            flush_interval_sec: u64_of("flush_interval_sec"),
            max_optimization_threads: u64_of("max_optimization_threads"),
            metadata: value
                .get("metadata")
                .and_then(Json::as_object)
                .cloned()
                .unwrap_or_default(),
        }
    }
}

/// What the testkit stores next to a shard. Its presence marks the collection directory complete.
#[derive(Debug, Clone)]
pub(super) struct CollectionMeta {
    pub(super) name: String,
    pub(super) created_at: SystemTime,
    pub(super) settings: CollectionSettings,
}

impl CollectionMeta {
    pub(super) fn read(dir: &Path) -> Option<Self> {
        let bytes = fs::read(dir.join(META_FILE)).ok()?;
        let value: Json = serde_json::from_slice(&bytes).ok()?;
        let name = value.get("name")?.as_str()?.to_owned();
        let nanos = value
            .get("created_at_unix_nanos")
            .and_then(Json::as_u64)
            .unwrap_or(0);
        Some(Self {
            name,
            created_at: UNIX_EPOCH + Duration::from_nanos(nanos),
            settings: CollectionSettings::from_json(value.get("settings")),
        })
    }

    pub(super) fn write(&self, dir: &Path) -> io::Result<()> {
        let nanos = self
            .created_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
            });
        let value = json!({
            "name": self.name,
            "created_at_unix_nanos": nanos,
            "settings": self.settings.to_json(),
        });
        write_atomically(&dir.join(META_FILE), value.to_string().as_bytes())
    }
}

/// This node's peer id, as a single-node Qdrant has one: random, chosen when the data directory
/// is first used, kept afterwards. It appears in snapshot names and in `CollectionClusterInfo`.
pub(super) fn load_or_create_peer_id(root: &Path) -> io::Result<u64> {
    let path = root.join(NODE_FILE);
    if let Ok(bytes) = fs::read(&path)
        && let Ok(value) = serde_json::from_slice::<Json>(&bytes)
        && let Some(peer_id) = value.get("peer_id").and_then(Json::as_u64)
    {
        return Ok(peer_id);
    }
    // Qdrant's peer ids stay below 2^53, so they survive JSON clients too.
    let peer_id = (uuid::Uuid::new_v4().as_u64_pair().0 >> 11).max(1);
    write_atomically(&path, json!({ "peer_id": peer_id }).to_string().as_bytes())?;
    Ok(peer_id)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that a reader (or a crash)
/// never sees half a file.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    fs::write(&temp, bytes)?;
    fs::rename(&temp, path)
}
