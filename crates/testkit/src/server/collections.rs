//! `qdrant.Collections`: create, delete, get, list, exists, update, aliases, cluster info and
//! shard keys, with `CreateCollection` → `EdgeConfig`, `UpdateCollection` → shard config and
//! `EdgeShard` → `CollectionInfo` conversions.
//!
//! The cluster RPCs answer as a single-node Qdrant (cluster mode off) does: one local shard,
//! no shard keys, and `INVALID_ARGUMENT` "Bad request: Distributed mode disabled" for changes.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::{Instant, UNIX_EPOCH};

use qdrant_client::qdrant as pb;
use qdrant_client::qdrant::collections_server::Collections;
use qdrant_edge::{
    BinaryQuantizationConfig, BinaryQuantizationEncoding, BinaryQuantizationQueryEncoding,
    CompressionRatio, Distance, EdgeConfig, EdgeOptimizersConfig, EdgeSparseVectorParams,
    EdgeVectorParams, HnswIndexConfig, Memory, Modifier, MultiVectorComparator, MultiVectorConfig,
    PayloadSchemaParams, PayloadSchemaType, ProductQuantizationConfig, QuantizationConfig,
    ScalarQuantizationConfig, ScalarType, TokenizerType, VectorStorageDatatype, WalOptions,
};
use tonic::{Request, Response, Status};

use super::api::QdrantApi;
use super::convert::{json_object_from_pb, json_object_to_pb, memory_from_pb};
use super::status::unsupported;
use super::validate::Validation;
use crate::storage::{
    AliasChange, Collection, CollectionSettings, StorageError, StorageSettings, run_blocking,
};

/// The method name `unsupported` errors of `UpdateCollection` name.
const UPDATE: &str = "Collections/Update";

/// Qdrant's default `optimizers.flush_interval_sec`, reported unless a collection sets its own.
const DEFAULT_FLUSH_INTERVAL_SEC: u64 = 5;

/// WAL segment size of a collection created without `wal_config`. Qdrant's default is 32 MiB;
/// a test server holds many small collections, so it preallocates less.
const DEFAULT_WAL_CAPACITY_MB: u64 = 1;

#[tonic::async_trait]
impl Collections for QdrantApi {
    async fn get(
        &self,
        request: Request<pb::GetCollectionInfoRequest>,
    ) -> Result<Response<pb::GetCollectionInfoResponse>, Status> {
        let started = Instant::now();
        let name = request.into_inner().collection_name;
        let collection = self.storage().get(&name)?;
        let info = run_blocking(move || collection_info(&collection)).await?;
        Ok(Response::new(pb::GetCollectionInfoResponse {
            result: Some(info),
            time: started.elapsed().as_secs_f64(),
        }))
    }

    async fn list(
        &self,
        _request: Request<pb::ListCollectionsRequest>,
    ) -> Result<Response<pb::ListCollectionsResponse>, Status> {
        let started = Instant::now();
        let collections = self
            .storage()
            .names()
            .into_iter()
            .map(|name| pb::CollectionDescription { name })
            .collect();
        Ok(Response::new(pb::ListCollectionsResponse {
            collections,
            time: started.elapsed().as_secs_f64(),
        }))
    }

    async fn create(
        &self,
        request: Request<pb::CreateCollection>,
    ) -> Result<Response<pb::CollectionOperationResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        validate_collection_name(&request.collection_name)?;
        validate_create(&request)?;
        let config = edge_config(&request, self.storage().settings())?;
        let settings = create_settings(&request)?;
        self.storage()
            .create(&request.collection_name, config, settings)
            .await?;
        Ok(Response::new(pb::CollectionOperationResponse {
            result: true,
            time: started.elapsed().as_secs_f64(),
        }))
    }

    async fn update(
        &self,
        request: Request<pb::UpdateCollection>,
    ) -> Result<Response<pb::CollectionOperationResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        validate_collection_name(&request.collection_name)?;
        let name = request.collection_name.clone();
        let update = CollectionUpdate::from_pb(request)?;
        self.storage()
            .update_collection(&name, move |collection| update.apply(collection))
            .await?;
        Ok(Response::new(pb::CollectionOperationResponse {
            result: true,
            time: started.elapsed().as_secs_f64(),
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteCollection>,
    ) -> Result<Response<pb::CollectionOperationResponse>, Status> {
        let started = Instant::now();
        let name = request.into_inner().collection_name;
        let deleted = self.storage().delete(&name).await?;
        Ok(Response::new(pb::CollectionOperationResponse {
            result: deleted,
            time: started.elapsed().as_secs_f64(),
        }))
    }

    async fn update_aliases(
        &self,
        request: Request<pb::ChangeAliases>,
    ) -> Result<Response<pb::CollectionOperationResponse>, Status> {
        use pb::alias_operations::Action;
        let started = Instant::now();
        let changes = request
            .into_inner()
            .actions
            .into_iter()
            .map(|operation| match operation.action {
                Some(Action::CreateAlias(create)) => Ok(AliasChange::Create {
                    collection: create.collection_name,
                    alias: create.alias_name,
                }),
                Some(Action::RenameAlias(rename)) => Ok(AliasChange::Rename {
                    old: rename.old_alias_name,
                    new: rename.new_alias_name,
                }),
                Some(Action::DeleteAlias(delete)) => Ok(AliasChange::Delete {
                    alias: delete.alias_name,
                }),
                None => Err(Status::invalid_argument("Malformed AliasOperation type")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.storage().update_aliases(changes).await?;
        Ok(Response::new(pb::CollectionOperationResponse {
            result: true,
            time: started.elapsed().as_secs_f64(),
        }))
    }

    async fn list_collection_aliases(
        &self,
        request: Request<pb::ListCollectionAliasesRequest>,
    ) -> Result<Response<pb::ListAliasesResponse>, Status> {
        let started = Instant::now();
        let name = request.into_inner().collection_name;
        validate_collection_name(&name)?;
        let aliases = self
            .storage()
            .collection_aliases(&name)
            .into_iter()
            .map(|alias_name| pb::AliasDescription {
                alias_name,
                collection_name: name.clone(),
            })
            .collect();
        Ok(Response::new(pb::ListAliasesResponse {
            aliases,
            time: started.elapsed().as_secs_f64(),
        }))
    }

    async fn list_aliases(
        &self,
        _request: Request<pb::ListAliasesRequest>,
    ) -> Result<Response<pb::ListAliasesResponse>, Status> {
        let started = Instant::now();
        let aliases = self
            .storage()
            .all_aliases()
            .into_iter()
            .map(|(alias_name, collection_name)| pb::AliasDescription {
                alias_name,
                collection_name,
            })
            .collect();
        Ok(Response::new(pb::ListAliasesResponse {
            aliases,
            time: started.elapsed().as_secs_f64(),
        }))
    }

    async fn collection_cluster_info(
        &self,
        request: Request<pb::CollectionClusterInfoRequest>,
    ) -> Result<Response<pb::CollectionClusterInfoResponse>, Status> {
        let started = Instant::now();
        let collection = self.storage().get(&request.into_inner().collection_name)?;
        // Qdrant counts approximately here too.
        let points_count =
            run_blocking(move || Ok(collection.shard().info()?.points_count)).await?;
        Ok(Response::new(pb::CollectionClusterInfoResponse {
            peer_id: self.storage().peer_id(),
            shard_count: 1,
            local_shards: vec![pb::LocalShardInfo {
                shard_id: 0,
                points_count: points_count as u64,
                state: pb::ReplicaState::Active as i32,
                shard_key: None,
            }],
            remote_shards: Vec::new(),
            shard_transfers: Vec::new(),
            resharding_operations: Vec::new(),
            time: started.elapsed().as_secs_f64(),
        }))
    }

    async fn collection_exists(
        &self,
        request: Request<pb::CollectionExistsRequest>,
    ) -> Result<Response<pb::CollectionExistsResponse>, Status> {
        let started = Instant::now();
        let name = request.into_inner().collection_name;
        if name.is_empty() || name.chars().count() > 255 {
            return Err(StorageError::collection_name_length(&name).into());
        }
        let exists = self.storage().exists(&name);
        Ok(Response::new(pb::CollectionExistsResponse {
            result: Some(pb::CollectionExists { exists }),
            time: started.elapsed().as_secs_f64(),
        }))
    }

    async fn update_collection_cluster_setup(
        &self,
        request: Request<pb::UpdateCollectionClusterSetupRequest>,
    ) -> Result<Response<pb::UpdateCollectionClusterSetupResponse>, Status> {
        if request.into_inner().operation.is_none() {
            return Err(Status::invalid_argument("empty operation"));
        }
        Err(StorageError::distributed_mode_disabled().into())
    }

    async fn create_shard_key(
        &self,
        request: Request<pb::CreateShardKeyRequest>,
    ) -> Result<Response<pb::CreateShardKeyResponse>, Status> {
        let Some(request) = request.into_inner().request else {
            return Err(Status::invalid_argument("empty request"));
        };
        check_shard_key(request.shard_key)?;
        Err(StorageError::distributed_mode_disabled().into())
    }

    async fn delete_shard_key(
        &self,
        request: Request<pb::DeleteShardKeyRequest>,
    ) -> Result<Response<pb::DeleteShardKeyResponse>, Status> {
        let Some(request) = request.into_inner().request else {
            return Err(Status::invalid_argument("empty request"));
        };
        check_shard_key(request.shard_key)?;
        Err(StorageError::distributed_mode_disabled().into())
    }

    async fn list_shard_keys(
        &self,
        request: Request<pb::ListShardKeysRequest>,
    ) -> Result<Response<pb::ListShardKeysResponse>, Status> {
        let started = Instant::now();
        // Every collection is auto-sharded: it exists, and has no shard keys.
        self.storage().get(&request.into_inner().collection_name)?;
        Ok(Response::new(pb::ListShardKeysResponse {
            shard_keys: Vec::new(),
            time: started.elapsed().as_secs_f64(),
        }))
    }
}

/// Qdrant's conversion of a shard key request, which runs before the cluster-mode check.
fn check_shard_key(key: Option<pb::ShardKey>) -> Result<(), Status> {
    match key.and_then(|key| key.key) {
        Some(_) => Ok(()),
        None => Err(Status::invalid_argument("Shard key is not specified")),
    }
}

/// Qdrant's collection name rule (`common::validation::validate_collection_name`): 1 to 255
/// characters, none of them reserved by file systems.
pub(super) fn validate_collection_name(name: &str) -> Result<(), StorageError> {
    const FORBIDDEN: [char; 11] = ['<', '>', ':', '"', '/', '\\', '|', '?', '*', '\0', '\u{1F}'];
    if name.is_empty() || name.chars().count() > 255 {
        return Err(StorageError::collection_name_length(name));
    }
    if let Some(bad) = FORBIDDEN.into_iter().find(|c| name.contains(*c)) {
        return Err(StorageError::invalid_argument(format!(
            "Validation error in body: [collection_name: collection name cannot contain \"{bad}\" char]"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reported-only settings and UpdateCollection

/// The settings of a new collection that Qdrant reports but the engine does not keep.
#[allow(deprecated)] // `deprecated_max_optimization_threads` is still sent by older clients.
fn create_settings(request: &pb::CreateCollection) -> Result<CollectionSettings, StorageError> {
    let mut settings = CollectionSettings {
        // Not 0: `validate_create` has checked them.
        replication_factor: request.replication_factor,
        write_consistency_factor: request.write_consistency_factor,
        metadata: json_object_from_pb(request.metadata.clone()),
        ..CollectionSettings::default()
    };
    if let Some(diff) = &request.optimizers_config {
        apply_reported_optimizers(&mut settings, diff);
    }
    Ok(settings)
}

/// Qdrant's request validation of `CreateCollection` (the `range` rules of `lib/api/build.rs`),
/// before anything else, with the broken rules in the message's field order.
pub(super) fn validate_create(request: &pb::CreateCollection) -> Result<(), StorageError> {
    let mut validation = Validation::new();
    hnsw_rules(&mut validation, request.hnsw_config.as_ref());
    if let Some(wal) = &request.wal_config {
        validation
            .min_opt("wal_config.wal_capacity_mb", wal.wal_capacity_mb, 1)
            .min_opt("wal_config.wal_retain_closed", wal.wal_retain_closed, 1);
    }
    optimizer_rules(&mut validation, request.optimizers_config.as_ref());
    validation
        .min_opt("shard_number", request.shard_number.map(u64::from), 1)
        .min_opt(
            "replication_factor",
            request.replication_factor.map(u64::from),
            1,
        )
        .min_opt(
            "write_consistency_factor",
            request.write_consistency_factor.map(u64::from),
            1,
        )
        .finish()
}

/// Qdrant's request validation of `UpdateCollection`, likewise.
fn validate_update(
    optimizers: Option<&pb::OptimizersConfigDiff>,
    params: Option<&pb::CollectionParamsDiff>,
    hnsw: Option<&pb::HnswConfigDiff>,
) -> Result<(), StorageError> {
    let mut validation = Validation::new();
    optimizer_rules(&mut validation, optimizers);
    if let Some(params) = params {
        validation
            .min_opt(
                "params.replication_factor",
                params.replication_factor.map(u64::from),
                1,
            )
            .min_opt(
                "params.write_consistency_factor",
                params.write_consistency_factor.map(u64::from),
                1,
            );
    }
    hnsw_rules(&mut validation, hnsw);
    validation.finish()
}

fn hnsw_rules(validation: &mut Validation, hnsw: Option<&pb::HnswConfigDiff>) {
    if let Some(hnsw) = hnsw {
        validation.min_opt("hnsw_config.ef_construct", hnsw.ef_construct, 4);
    }
}

fn optimizer_rules(validation: &mut Validation, optimizers: Option<&pb::OptimizersConfigDiff>) {
    let Some(optimizers) = optimizers else {
        return;
    };
    if let Some(threshold) = optimizers.deleted_threshold
        && !(0.0..=1.0).contains(&threshold)
    {
        validation.fail_with(
            "optimizers_config.deleted_threshold",
            threshold,
            "must be from 0.0 to 1.0".to_owned(),
        );
    }
    validation
        .min_opt(
            "optimizers_config.vacuum_min_vector_number",
            optimizers.vacuum_min_vector_number,
            100,
        )
        .min_opt(
            "optimizers_config.max_segment_size",
            optimizers.max_segment_size,
            1,
        );
}

#[allow(deprecated)]
fn apply_reported_optimizers(settings: &mut CollectionSettings, diff: &pb::OptimizersConfigDiff) {
    use pb::max_optimization_threads::Variant;
    if let Some(seconds) = diff.flush_interval_sec {
        settings.flush_interval_sec = Some(seconds);
    }
    if let Some(threads) = diff.deprecated_max_optimization_threads {
        settings.max_optimization_threads = Some(threads);
    } else if let Some(threads) = diff.max_optimization_threads {
        settings.max_optimization_threads = match threads.variant {
            Some(Variant::Value(threads)) => Some(threads),
            Some(Variant::Setting(_)) | None => None,
        };
    }
}

/// What an `UpdateCollection` request changes, checked before anything is applied.
///
/// Applied as Qdrant's `TableOfContent::update_collection` does, in its order (optimizers,
/// params, HNSW, vectors, metadata); a failing step keeps the steps before it, as in Qdrant.
/// What the engine can change in place is applied to the shard's config (HNSW, per-vector HNSW,
/// optimizers); replication, fan-out, flush interval, optimizer threads and metadata are kept
/// with the collection and reported back. The rest (payload or vector storage placement,
/// quantization, sparse vectors, strict mode) would need the shard rebuilt: it is refused, with
/// `UNIMPLEMENTED` naming the field, before anything changes.
#[derive(Debug)]
struct CollectionUpdate {
    optimizers: Option<pb::OptimizersConfigDiff>,
    params: Option<pb::CollectionParamsDiff>,
    hnsw: Option<pb::HnswConfigDiff>,
    vectors: Vec<(String, pb::HnswConfigDiff)>,
    metadata: serde_json::Map<String, serde_json::Value>,
}

impl CollectionUpdate {
    #[allow(deprecated)]
    fn from_pb(request: pb::UpdateCollection) -> Result<Self, StorageError> {
        let pb::UpdateCollection {
            collection_name: _,
            optimizers_config,
            timeout: _,
            params,
            hnsw_config,
            vectors_config,
            quantization_config,
            sparse_vectors_config,
            strict_mode_config,
            metadata,
        } = request;

        validate_update(
            optimizers_config.as_ref(),
            params.as_ref(),
            hnsw_config.as_ref(),
        )?;
        if optimizers_config
            .as_ref()
            .is_some_and(|diff| diff.memmap_threshold.is_some())
        {
            return Err(unsupported(UPDATE, "optimizers_config.memmap_threshold"));
        }
        if let Some(params) = &params {
            if params.on_disk_payload.is_some() {
                return Err(unsupported(UPDATE, "params.on_disk_payload"));
            }
            if params.payload.is_some() {
                return Err(unsupported(UPDATE, "params.payload"));
            }
            if params.id_tracker.is_some() {
                return Err(unsupported(UPDATE, "params.id_tracker"));
            }
        }
        let vector_diffs = match vectors_config.and_then(|config| config.config) {
            Some(pb::vectors_config_diff::Config::Params(diff)) => vec![(String::new(), diff)],
            Some(pb::vectors_config_diff::Config::ParamsMap(map)) => map.map.into_iter().collect(),
            None => Vec::new(),
        };
        let mut vectors = Vec::new();
        for (name, diff) in vector_diffs {
            let field = |what: &str| {
                if name.is_empty() {
                    format!("vectors_config.{what}")
                } else {
                    format!("vectors_config.{name}.{what}")
                }
            };
            if diff.quantization_config.is_some() {
                return Err(unsupported(UPDATE, &field("quantization_config")));
            }
            if diff.on_disk.is_some() {
                return Err(unsupported(UPDATE, &field("on_disk")));
            }
            if diff.memory.is_some() {
                return Err(unsupported(UPDATE, &field("memory")));
            }
            if let Some(hnsw) = diff.hnsw_config {
                vectors.push((name, hnsw));
            }
        }
        if quantization_config.is_some() {
            return Err(unsupported(UPDATE, "quantization_config"));
        }
        if sparse_vectors_config.is_some() {
            return Err(unsupported(UPDATE, "sparse_vectors_config"));
        }
        if strict_mode_config.is_some() {
            return Err(unsupported(UPDATE, "strict_mode_config"));
        }
        Ok(Self {
            optimizers: optimizers_config,
            params,
            hnsw: hnsw_config,
            vectors,
            metadata: json_object_from_pb(metadata),
        })
    }

    /// Applies the update. Blocking.
    fn apply(self, collection: &Collection) -> Result<(), StorageError> {
        let shard = collection.shard();
        if let Some(diff) = &self.optimizers {
            let mut optimizers = shard.config().optimizers();
            if let Some(threshold) = diff.deleted_threshold {
                optimizers.deleted_threshold = Some(threshold);
            }
            if let Some(number) = diff.vacuum_min_vector_number {
                optimizers.vacuum_min_vector_number = Some(to_usize(number));
            }
            if let Some(number) = diff.default_segment_number {
                optimizers.default_segment_number = Some(to_usize(number));
            }
            if let Some(size) = diff.max_segment_size {
                optimizers.max_segment_size = Some(to_usize(size));
            }
            if let Some(threshold) = diff.indexing_threshold {
                optimizers.indexing_threshold = Some(to_usize(threshold));
            }
            if let Some(prevent) = diff.prevent_unoptimized {
                optimizers.prevent_unoptimized = Some(prevent);
            }
            shard.set_optimizers_config(optimizers)?;
            collection.update_settings(|settings| apply_reported_optimizers(settings, diff))?;
        }
        if let Some(params) = &self.params {
            collection.update_settings(|settings| {
                if let Some(factor) = params.replication_factor {
                    settings.replication_factor = Some(factor);
                }
                if let Some(factor) = params.write_consistency_factor {
                    settings.write_consistency_factor = Some(factor);
                }
                if let Some(factor) = params.read_fan_out_factor {
                    settings.read_fan_out_factor = Some(factor);
                }
                if let Some(delay) = params.read_fan_out_delay_ms {
                    settings.read_fan_out_delay_ms = Some(delay);
                }
            })?;
        }
        if let Some(diff) = &self.hnsw {
            let mut hnsw = shard.config().hnsw_config();
            apply_hnsw_diff(&mut hnsw, diff);
            shard.set_hnsw_config(hnsw)?;
        }
        if !self.vectors.is_empty() {
            // Every name first, so that an unknown one changes none of them (as Qdrant checks).
            let config = shard.config().clone();
            for (name, _) in &self.vectors {
                if !config.vectors.contains_key(name) {
                    return Err(qdrant_edge::OperationError::vector_name_not_exists(name).into());
                }
            }
            for (name, diff) in &self.vectors {
                let mut hnsw = config.vectors[name]
                    .hnsw_config
                    .unwrap_or_else(|| config.hnsw_config());
                apply_hnsw_diff(&mut hnsw, diff);
                shard.set_vector_hnsw_config(name, hnsw)?;
            }
        }
        if !self.metadata.is_empty() {
            collection.update_settings(|settings| settings.metadata.extend(self.metadata))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// CreateCollection → EdgeConfig

#[allow(deprecated)] // `on_disk` and `always_ram` are deprecated on both sides, yet still honoured.
pub(super) fn edge_config(
    request: &pb::CreateCollection,
    settings: StorageSettings,
) -> Result<EdgeConfig, StorageError> {
    if request.sharding_method == Some(pb::ShardingMethod::Custom as i32) {
        return Err(StorageError::unimplemented(
            "qdrant-tower-testkit does not implement custom sharding yet",
        ));
    }

    let mut hnsw = HnswIndexConfig {
        max_indexing_threads: settings.search_threads,
        ..HnswIndexConfig::default()
    };
    if let Some(diff) = &request.hnsw_config {
        apply_hnsw_diff(&mut hnsw, diff);
    }

    let mut vectors = HashMap::new();
    match request
        .vectors_config
        .as_ref()
        .and_then(|c| c.config.as_ref())
    {
        Some(pb::vectors_config::Config::Params(params)) => {
            vectors.insert(
                String::new(),
                vector_params(params, &hnsw, "vectors_config.config")?,
            );
        }
        Some(pb::vectors_config::Config::ParamsMap(map)) => {
            for (name, params) in &map.map {
                vectors.insert(
                    name.clone(),
                    vector_params(params, &hnsw, "vectors_config.params")?,
                );
            }
        }
        None => {}
    }

    let mut sparse_vectors = HashMap::new();
    if let Some(sparse) = &request.sparse_vectors_config {
        for (name, params) in &sparse.map {
            let index = params.index.unwrap_or_default();
            sparse_vectors.insert(
                name.clone(),
                EdgeSparseVectorParams {
                    full_scan_threshold: index.full_scan_threshold.map(to_usize),
                    on_disk: index.on_disk,
                    memory: memory_from_pb(index.memory),
                    modifier: params.modifier.map(|m| {
                        if m == pb::Modifier::Idf as i32 {
                            Modifier::Idf
                        } else {
                            Modifier::None
                        }
                    }),
                    datatype: index.datatype.map(datatype_from_pb).transpose()?,
                },
            );
        }
    }

    let optimizers = request
        .optimizers_config
        .as_ref()
        .map(|diff| EdgeOptimizersConfig {
            deleted_threshold: diff.deleted_threshold,
            vacuum_min_vector_number: diff.vacuum_min_vector_number.map(to_usize),
            default_segment_number: diff.default_segment_number.map(to_usize),
            max_segment_size: diff.max_segment_size.map(to_usize),
            indexing_threshold: diff.indexing_threshold.map(to_usize),
            prevent_unoptimized: diff.prevent_unoptimized,
        });

    let wal = request.wal_config.unwrap_or_default();
    let wal_options = WalOptions {
        segment_capacity: to_usize(
            wal.wal_capacity_mb
                .unwrap_or(DEFAULT_WAL_CAPACITY_MB)
                .max(1),
        ) * 1024
            * 1024,
        segment_queue_len: wal.wal_segments_ahead.map_or(0, to_usize),
        retain_closed: NonZeroUsize::new(wal.wal_retain_closed.map_or(1, to_usize))
            .unwrap_or(NonZeroUsize::MIN),
    };

    let mut config = EdgeConfig::builder()
        .vectors(vectors)
        .sparse_vectors(sparse_vectors)
        .hnsw_config(hnsw)
        .wal_options(wal_options)
        .max_search_threads(settings.search_threads)
        .build();
    config.on_disk_payload = request.on_disk_payload;
    config.payload_memory = request.payload.and_then(|p| memory_from_pb(p.memory));
    config.optimizers = optimizers;
    config.quantization_config = request
        .quantization_config
        .as_ref()
        .map(quantization_from_pb)
        .transpose()?;
    Ok(config)
}

#[allow(deprecated)]
/// `path` is where Qdrant's request validation says the parameters are.
fn vector_params(
    params: &pb::VectorParams,
    global_hnsw: &HnswIndexConfig,
    path: &str,
) -> Result<EdgeVectorParams, StorageError> {
    if !(1..=65536).contains(&params.size) {
        return Err(StorageError::invalid_argument(format!(
            "Validation error in body: [{path}.size: value {} invalid, must be from 1 to 65536]",
            params.size
        )));
    }
    let distance = match pb::Distance::try_from(params.distance) {
        Ok(pb::Distance::Cosine) => Distance::Cosine,
        Ok(pb::Distance::Euclid) => Distance::Euclid,
        Ok(pb::Distance::Dot) => Distance::Dot,
        Ok(pb::Distance::Manhattan) => Distance::Manhattan,
        Ok(pb::Distance::UnknownDistance) | Err(_) => {
            return Err(StorageError::invalid_argument(
                "Malformed distance parameter: UnknownDistance",
            ));
        }
    };
    Ok(EdgeVectorParams {
        size: to_usize(params.size),
        distance,
        on_disk: params.on_disk,
        memory: memory_from_pb(params.memory),
        multivector_config: params.multivector_config.map(|_| MultiVectorConfig {
            comparator: MultiVectorComparator::MaxSim,
        }),
        datatype: params.datatype.map(datatype_from_pb).transpose()?,
        quantization_config: params
            .quantization_config
            .as_ref()
            .map(quantization_from_pb)
            .transpose()?,
        hnsw_config: params.hnsw_config.as_ref().map(|diff| {
            let mut hnsw = *global_hnsw;
            apply_hnsw_diff(&mut hnsw, diff);
            hnsw
        }),
    })
}

#[allow(deprecated)]
fn apply_hnsw_diff(hnsw: &mut HnswIndexConfig, diff: &pb::HnswConfigDiff) {
    if let Some(m) = diff.m {
        hnsw.m = to_usize(m);
    }
    if let Some(ef) = diff.ef_construct {
        hnsw.ef_construct = to_usize(ef);
    }
    if let Some(threshold) = diff.full_scan_threshold {
        hnsw.full_scan_threshold = to_usize(threshold);
    }
    if let Some(threads) = diff.max_indexing_threads {
        hnsw.max_indexing_threads = to_usize(threads);
    }
    if diff.on_disk.is_some() {
        hnsw.on_disk = diff.on_disk;
    }
    if let Some(memory) = memory_from_pb(diff.memory) {
        hnsw.memory = Some(memory);
    }
    if let Some(payload_m) = diff.payload_m {
        hnsw.payload_m = Some(to_usize(payload_m));
    }
    if diff.inline_storage.is_some() {
        hnsw.inline_storage = diff.inline_storage;
    }
}

#[allow(deprecated)]
fn quantization_from_pb(
    config: &pb::QuantizationConfig,
) -> Result<QuantizationConfig, StorageError> {
    use pb::quantization_config::Quantization as Q;
    match &config.quantization {
        Some(Q::Scalar(scalar)) => Ok(ScalarQuantizationConfig {
            r#type: ScalarType::Int8,
            quantile: scalar.quantile,
            always_ram: scalar.always_ram,
            memory: memory_from_pb(scalar.memory),
        }
        .into()),
        Some(Q::Product(product)) => {
            let compression = match pb::CompressionRatio::try_from(product.compression) {
                Ok(pb::CompressionRatio::X4) => CompressionRatio::X4,
                Ok(pb::CompressionRatio::X8) => CompressionRatio::X8,
                Ok(pb::CompressionRatio::X16) => CompressionRatio::X16,
                Ok(pb::CompressionRatio::X32) => CompressionRatio::X32,
                Ok(pb::CompressionRatio::X64) => CompressionRatio::X64,
                Err(_) => {
                    return Err(StorageError::invalid_argument(
                        "Malformed product quantization compression ratio",
                    ));
                }
            };
            Ok(ProductQuantizationConfig {
                compression,
                always_ram: product.always_ram,
                memory: memory_from_pb(product.memory),
            }
            .into())
        }
        Some(Q::Binary(binary)) => {
            let encoding = binary.encoding.map(|encoding| {
                match pb::BinaryQuantizationEncoding::try_from(encoding) {
                    Ok(pb::BinaryQuantizationEncoding::TwoBits) => {
                        BinaryQuantizationEncoding::TwoBits
                    }
                    Ok(pb::BinaryQuantizationEncoding::OneAndHalfBits) => {
                        BinaryQuantizationEncoding::OneAndHalfBits
                    }
                    Ok(pb::BinaryQuantizationEncoding::OneBit) | Err(_) => {
                        BinaryQuantizationEncoding::OneBit
                    }
                }
            });
            let query_encoding = binary
                .query_encoding
                .and_then(|encoding| encoding.variant)
                .map(
                    |pb::binary_quantization_query_encoding::Variant::Setting(setting)| {
                        use pb::binary_quantization_query_encoding::Setting;
                        match Setting::try_from(setting) {
                            Ok(Setting::Binary) => BinaryQuantizationQueryEncoding::Binary,
                            Ok(Setting::Scalar4Bits) => {
                                BinaryQuantizationQueryEncoding::Scalar4Bits
                            }
                            Ok(Setting::Scalar8Bits) => {
                                BinaryQuantizationQueryEncoding::Scalar8Bits
                            }
                            Ok(Setting::Default) | Err(_) => {
                                BinaryQuantizationQueryEncoding::Default
                            }
                        }
                    },
                );
            Ok(BinaryQuantizationConfig {
                always_ram: binary.always_ram,
                memory: memory_from_pb(binary.memory),
                encoding,
                query_encoding,
            }
            .into())
        }
        Some(Q::Turboquant(_)) => Err(StorageError::unimplemented(
            "qdrant-tower-testkit does not implement TurboQuant quantization yet",
        )),
        None => Err(StorageError::invalid_argument(
            "Malformed quantization config: no quantization set",
        )),
    }
}

fn memory_to_pb(memory: Option<Memory>) -> Option<i32> {
    memory.map(|memory| {
        let memory = match memory {
            Memory::Cold => pb::Memory::Cold,
            Memory::Cached => pb::Memory::Cached,
            Memory::Pinned => pb::Memory::Pinned,
        };
        memory as i32
    })
}

fn datatype_from_pb(datatype: i32) -> Result<VectorStorageDatatype, StorageError> {
    match pb::Datatype::try_from(datatype) {
        Ok(pb::Datatype::Default | pb::Datatype::Float32) => Ok(VectorStorageDatatype::Float32),
        Ok(pb::Datatype::Uint8) => Ok(VectorStorageDatatype::Uint8),
        Ok(pb::Datatype::Float16) => Ok(VectorStorageDatatype::Float16),
        Ok(pb::Datatype::Turbo4) => Ok(VectorStorageDatatype::Turbo4),
        Ok(pb::Datatype::Turbo8) => Ok(VectorStorageDatatype::Turbo8),
        Ok(pb::Datatype::Turbo16) => Ok(VectorStorageDatatype::Turbo16),
        Err(_) => Err(StorageError::invalid_argument(format!(
            "Malformed vector datatype: {datatype}"
        ))),
    }
}

fn datatype_to_pb(datatype: VectorStorageDatatype) -> i32 {
    let datatype = match datatype {
        VectorStorageDatatype::Float32 => pb::Datatype::Float32,
        VectorStorageDatatype::Uint8 => pb::Datatype::Uint8,
        VectorStorageDatatype::Float16 => pb::Datatype::Float16,
        VectorStorageDatatype::Turbo4 => pb::Datatype::Turbo4,
        VectorStorageDatatype::Turbo8 => pb::Datatype::Turbo8,
        VectorStorageDatatype::Turbo16 => pb::Datatype::Turbo16,
    };
    datatype as i32
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

// ---------------------------------------------------------------------------------------------
// EdgeShard → CollectionInfo

/// Builds `CollectionInfo` from the shard's config and statistics. Blocking.
fn collection_info(collection: &Collection) -> Result<pb::CollectionInfo, StorageError> {
    let shard = collection.shard();
    let stats = shard.info()?;
    let config = shard.config().clone();
    let settings = collection.settings();
    let optimizer_error = collection.optimizer_error();

    let status = if optimizer_error.is_some() {
        pb::CollectionStatus::Red
    } else {
        pb::CollectionStatus::Green
    };
    let payload_schema = stats
        .payload_schema
        .into_iter()
        .map(|(key, index)| {
            (
                key.to_string(),
                pb::PayloadSchemaInfo {
                    data_type: payload_schema_type_to_pb(index.data_type) as i32,
                    params: index.params.map(payload_params_to_pb),
                    points: Some(index.points as u64),
                },
            )
        })
        .collect();
    let created_at = collection
        .created_at()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|since| prost_types::Timestamp {
            seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
        });

    Ok(pb::CollectionInfo {
        status: status as i32,
        optimizer_status: Some(pb::OptimizerStatus {
            ok: optimizer_error.is_none(),
            error: optimizer_error.unwrap_or_default(),
        }),
        segments_count: stats.segments_count as u64,
        config: Some(collection_config(&config, settings)),
        payload_schema,
        points_count: Some(stats.points_count as u64),
        indexed_vectors_count: Some(stats.indexed_vectors_count as u64),
        warnings: Vec::new(),
        update_queue: Some(pb::UpdateQueueInfo {
            length: 0,
            deferred_points: None,
        }),
        created_at,
    })
}

#[allow(deprecated)]
fn collection_config(config: &EdgeConfig, settings: CollectionSettings) -> pb::CollectionConfig {
    let global_hnsw = config.hnsw_config();
    let vectors_config = if config.vectors.len() == 1 && config.vectors.contains_key("") {
        Some(pb::vectors_config::Config::Params(vector_params_to_pb(
            &config.vectors[""],
            &global_hnsw,
        )))
    } else if config.vectors.is_empty() {
        // Qdrant reports a collection without dense vectors with an empty map.
        Some(pb::vectors_config::Config::ParamsMap(pb::VectorParamsMap {
            map: HashMap::new(),
        }))
    } else {
        Some(pb::vectors_config::Config::ParamsMap(pb::VectorParamsMap {
            map: config
                .vectors
                .iter()
                .map(|(name, params)| (name.clone(), vector_params_to_pb(params, &global_hnsw)))
                .collect(),
        }))
    };
    let sparse_vectors_config =
        (!config.sparse_vectors.is_empty()).then(|| pb::SparseVectorConfig {
            map: config
                .sparse_vectors
                .iter()
                .map(|(name, params)| {
                    (
                        name.clone(),
                        pb::SparseVectorParams {
                            index: Some(pb::SparseIndexConfig {
                                full_scan_threshold: params.full_scan_threshold.map(|t| t as u64),
                                on_disk: params.on_disk,
                                datatype: params.datatype.map(datatype_to_pb),
                                memory: memory_to_pb(params.memory),
                            }),
                            modifier: params.modifier.map(|modifier| match modifier {
                                Modifier::Idf => pb::Modifier::Idf as i32,
                                Modifier::None => pb::Modifier::None as i32,
                            }),
                        },
                    )
                })
                .collect(),
        });

    let optimizers = config.optimizers();
    let wal = config.wal_options.clone().unwrap_or_default();

    pb::CollectionConfig {
        params: Some(pb::CollectionParams {
            shard_number: 1,
            on_disk_payload: config.on_disk_payload(),
            vectors_config: vectors_config.map(|config| pb::VectorsConfig {
                config: Some(config),
            }),
            replication_factor: Some(settings.replication_factor.unwrap_or(1)),
            write_consistency_factor: Some(settings.write_consistency_factor.unwrap_or(1)),
            read_fan_out_factor: settings.read_fan_out_factor,
            sharding_method: None,
            sparse_vectors_config,
            read_fan_out_delay_ms: settings.read_fan_out_delay_ms,
            payload: config
                .payload_memory
                .map(|memory| pb::PayloadStorageParams {
                    memory: memory_to_pb(Some(memory)),
                }),
            id_tracker: None,
        }),
        hnsw_config: Some(hnsw_to_pb(&global_hnsw)),
        optimizer_config: Some(pb::OptimizersConfigDiff {
            deleted_threshold: Some(optimizers.deleted_threshold.unwrap_or(0.2)),
            vacuum_min_vector_number: Some(
                optimizers.vacuum_min_vector_number.unwrap_or(1000) as u64
            ),
            default_segment_number: Some(optimizers.default_segment_number.unwrap_or(0) as u64),
            max_segment_size: optimizers.max_segment_size.map(|size| size as u64),
            memmap_threshold: None,
            // As set (0 turns indexing off), not as the engine resolves it.
            indexing_threshold: Some(
                optimizers
                    .indexing_threshold
                    .map_or(optimizers.get_indexing_threshold_kb(), |kb| kb) as u64,
            ),
            flush_interval_sec: Some(
                settings
                    .flush_interval_sec
                    .unwrap_or(DEFAULT_FLUSH_INTERVAL_SEC),
            ),
            deprecated_max_optimization_threads: settings.max_optimization_threads,
            max_optimization_threads: Some(pb::MaxOptimizationThreads {
                variant: Some(match settings.max_optimization_threads {
                    Some(threads) => pb::max_optimization_threads::Variant::Value(threads),
                    None => pb::max_optimization_threads::Variant::Setting(
                        pb::max_optimization_threads::Setting::Auto as i32,
                    ),
                }),
            }),
            prevent_unoptimized: optimizers.prevent_unoptimized,
        }),
        wal_config: Some(pb::WalConfigDiff {
            wal_capacity_mb: Some((wal.segment_capacity / (1024 * 1024)) as u64),
            wal_segments_ahead: Some(wal.segment_queue_len as u64),
            wal_retain_closed: Some(wal.retain_closed.get() as u64),
        }),
        quantization_config: config.quantization_config.as_ref().map(quantization_to_pb),
        strict_mode_config: None,
        metadata: json_object_to_pb(settings.metadata),
    }
}

#[allow(deprecated)]
fn vector_params_to_pb(
    params: &EdgeVectorParams,
    global_hnsw: &HnswIndexConfig,
) -> pb::VectorParams {
    let distance = match params.distance {
        Distance::Cosine => pb::Distance::Cosine,
        Distance::Euclid => pb::Distance::Euclid,
        Distance::Dot => pb::Distance::Dot,
        Distance::Manhattan => pb::Distance::Manhattan,
    };
    pb::VectorParams {
        size: params.size as u64,
        distance: distance as i32,
        hnsw_config: params
            .hnsw_config
            .filter(|hnsw| hnsw != global_hnsw)
            .map(|hnsw| hnsw_to_pb(&hnsw)),
        quantization_config: params.quantization_config.as_ref().map(quantization_to_pb),
        on_disk: params.on_disk,
        datatype: params.datatype.map(datatype_to_pb),
        multivector_config: params.multivector_config.map(|_| pb::MultiVectorConfig {
            comparator: pb::MultiVectorComparator::MaxSim as i32,
        }),
        memory: memory_to_pb(params.memory),
    }
}

#[allow(deprecated)]
fn hnsw_to_pb(hnsw: &HnswIndexConfig) -> pb::HnswConfigDiff {
    pb::HnswConfigDiff {
        m: Some(hnsw.m as u64),
        ef_construct: Some(hnsw.ef_construct as u64),
        full_scan_threshold: Some(hnsw.full_scan_threshold as u64),
        max_indexing_threads: Some(hnsw.max_indexing_threads as u64),
        on_disk: hnsw.on_disk,
        payload_m: hnsw.payload_m.map(|m| m as u64),
        inline_storage: hnsw.inline_storage,
        memory: memory_to_pb(hnsw.memory),
    }
}

#[allow(deprecated)]
fn quantization_to_pb(config: &QuantizationConfig) -> pb::QuantizationConfig {
    use pb::quantization_config::Quantization as Q;
    let quantization = match config {
        QuantizationConfig::Scalar(scalar) => Q::Scalar(pb::ScalarQuantization {
            r#type: pb::QuantizationType::Int8 as i32,
            quantile: scalar.scalar.quantile,
            always_ram: scalar.scalar.always_ram,
            memory: memory_to_pb(scalar.scalar.memory),
        }),
        QuantizationConfig::Product(product) => Q::Product(pb::ProductQuantization {
            compression: compression_to_pb(product.product.compression) as i32,
            always_ram: product.product.always_ram,
            memory: memory_to_pb(product.product.memory),
        }),
        QuantizationConfig::Binary(binary) => Q::Binary(pb::BinaryQuantization {
            always_ram: binary.binary.always_ram,
            encoding: binary.binary.encoding.map(|encoding| {
                let encoding = match encoding {
                    BinaryQuantizationEncoding::OneBit => pb::BinaryQuantizationEncoding::OneBit,
                    BinaryQuantizationEncoding::TwoBits => pb::BinaryQuantizationEncoding::TwoBits,
                    BinaryQuantizationEncoding::OneAndHalfBits => {
                        pb::BinaryQuantizationEncoding::OneAndHalfBits
                    }
                };
                encoding as i32
            }),
            query_encoding: binary.binary.query_encoding.map(|encoding| {
                use pb::binary_quantization_query_encoding::{Setting, Variant};
                let setting = match encoding {
                    BinaryQuantizationQueryEncoding::Default => Setting::Default,
                    BinaryQuantizationQueryEncoding::Binary => Setting::Binary,
                    BinaryQuantizationQueryEncoding::Scalar4Bits => Setting::Scalar4Bits,
                    BinaryQuantizationQueryEncoding::Scalar8Bits => Setting::Scalar8Bits,
                };
                pb::BinaryQuantizationQueryEncoding {
                    variant: Some(Variant::Setting(setting as i32)),
                }
            }),
            memory: memory_to_pb(binary.binary.memory),
        }),
        // Never created by this server (TurboQuant is rejected on create); reported as absent.
        QuantizationConfig::Turbo(_) => return pb::QuantizationConfig { quantization: None },
    };
    pb::QuantizationConfig {
        quantization: Some(quantization),
    }
}

fn compression_to_pb(compression: CompressionRatio) -> pb::CompressionRatio {
    match compression {
        CompressionRatio::X4 => pb::CompressionRatio::X4,
        CompressionRatio::X8 => pb::CompressionRatio::X8,
        CompressionRatio::X16 => pb::CompressionRatio::X16,
        CompressionRatio::X32 => pb::CompressionRatio::X32,
        CompressionRatio::X64 => pb::CompressionRatio::X64,
    }
}

/// A payload index's parameters as Qdrant reports them (`lib/api/src/grpc/conversions.rs`).
#[allow(deprecated)] // `on_disk` is deprecated on both sides, yet still reported.
fn payload_params_to_pb(params: PayloadSchemaParams) -> pb::PayloadIndexParams {
    use pb::payload_index_params::IndexParams as P;
    let nested = |nested: Option<qdrant_edge::JsonPath>| nested.map(|path| path.to_string());
    let index_params = match params {
        PayloadSchemaParams::Keyword(p) => P::KeywordIndexParams(pb::KeywordIndexParams {
            is_tenant: p.is_tenant,
            on_disk: p.on_disk,
            enable_hnsw: p.enable_hnsw,
            prefix: p
                .prefix
                .unwrap_or_default()
                .then_some(pb::KeywordPrefixParams {}),
            memory: memory_to_pb(p.memory),
            nested: nested(p.nested),
        }),
        PayloadSchemaParams::Integer(p) => P::IntegerIndexParams(pb::IntegerIndexParams {
            lookup: p.lookup,
            range: p.range,
            is_principal: p.is_principal,
            on_disk: p.on_disk,
            enable_hnsw: p.enable_hnsw,
            memory: memory_to_pb(p.memory),
            nested: nested(p.nested),
        }),
        PayloadSchemaParams::Float(p) => P::FloatIndexParams(pb::FloatIndexParams {
            on_disk: p.on_disk,
            is_principal: p.is_principal,
            enable_hnsw: p.enable_hnsw,
            memory: memory_to_pb(p.memory),
            nested: nested(p.nested),
        }),
        PayloadSchemaParams::Geo(p) => P::GeoIndexParams(pb::GeoIndexParams {
            on_disk: p.on_disk,
            enable_hnsw: p.enable_hnsw,
            memory: memory_to_pb(p.memory),
            nested: nested(p.nested),
        }),
        PayloadSchemaParams::Text(p) => {
            let tokenizer = match p.tokenizer {
                TokenizerType::Prefix => pb::TokenizerType::Prefix,
                TokenizerType::Whitespace => pb::TokenizerType::Whitespace,
                TokenizerType::Word => pb::TokenizerType::Word,
                TokenizerType::Multilingual => pb::TokenizerType::Multilingual,
                TokenizerType::Code => pb::TokenizerType::Code,
            };
            // Stop words, stemmers and scoring are refused when the index is created.
            P::TextIndexParams(pb::TextIndexParams {
                tokenizer: tokenizer as i32,
                lowercase: p.lowercase,
                min_token_len: p.min_token_len.map(|len| len as u64),
                max_token_len: p.max_token_len.map(|len| len as u64),
                on_disk: p.on_disk,
                stopwords: None,
                phrase_matching: p.phrase_matching,
                stemmer: None,
                ascii_folding: p.ascii_folding,
                enable_hnsw: p.enable_hnsw,
                memory: memory_to_pb(p.memory),
                scoring: None,
                nested: nested(p.nested),
            })
        }
        PayloadSchemaParams::Bool(p) => P::BoolIndexParams(pb::BoolIndexParams {
            on_disk: p.on_disk,
            enable_hnsw: p.enable_hnsw,
            memory: memory_to_pb(p.memory),
            nested: nested(p.nested),
        }),
        PayloadSchemaParams::Datetime(p) => P::DatetimeIndexParams(pb::DatetimeIndexParams {
            on_disk: p.on_disk,
            is_principal: p.is_principal,
            enable_hnsw: p.enable_hnsw,
            memory: memory_to_pb(p.memory),
            nested: nested(p.nested),
        }),
        PayloadSchemaParams::Uuid(p) => P::UuidIndexParams(pb::UuidIndexParams {
            is_tenant: p.is_tenant,
            on_disk: p.on_disk,
            enable_hnsw: p.enable_hnsw,
            memory: memory_to_pb(p.memory),
            nested: nested(p.nested),
        }),
    };
    pb::PayloadIndexParams {
        index_params: Some(index_params),
    }
}

pub(crate) fn payload_schema_type_to_pb(schema: PayloadSchemaType) -> pb::PayloadSchemaType {
    match schema {
        PayloadSchemaType::Keyword => pb::PayloadSchemaType::Keyword,
        PayloadSchemaType::Integer => pb::PayloadSchemaType::Integer,
        PayloadSchemaType::Float => pb::PayloadSchemaType::Float,
        PayloadSchemaType::Geo => pb::PayloadSchemaType::Geo,
        PayloadSchemaType::Text => pb::PayloadSchemaType::Text,
        PayloadSchemaType::Bool => pb::PayloadSchemaType::Bool,
        PayloadSchemaType::Datetime => pb::PayloadSchemaType::Datetime,
        PayloadSchemaType::Uuid => pb::PayloadSchemaType::Uuid,
    }
}
