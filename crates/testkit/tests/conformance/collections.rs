//! Collections (update, aliases, cluster info, shard keys) and Snapshots, as a single-node
//! Qdrant (cluster mode off, default configuration) answers them; then the testkit's own
//! persistence: stop and restart, servers side by side, snapshot recovery and the `serve`
//! binary.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use qdrant_client::qdrant::alias_operations::Action;
use qdrant_client::qdrant::snapshots_client::SnapshotsClient;
use qdrant_client::qdrant::update_collection_cluster_setup_request::Operation as ClusterOperation;
use qdrant_client::qdrant::{
    AliasDescription, AliasOperations, ChangeAliases, CollectionClusterInfoRequest,
    CollectionParamsDiff, CreateAlias, CreateFullSnapshotRequest, CreateShardKey,
    CreateShardKeyRequest, CreateSnapshotRequest, DeleteAlias, DeleteFullSnapshotRequest,
    DeleteShardKey, DeleteShardKeyRequest, DeleteSnapshotRequest, HnswConfigDiff,
    ListAliasesRequest, ListCollectionAliasesRequest, ListFullSnapshotsRequest,
    ListShardKeysRequest, ListSnapshotsRequest, MoveShard, OptimizersConfigDiff,
    QuantizationConfigDiff, RenameAlias, ReplicaState, ScalarQuantization, ShardKey,
    SnapshotDescription, UpdateCollection, UpdateCollectionClusterSetupRequest, VectorParamsDiff,
    VectorParamsDiffMap, VectorParamsMap, VectorsConfigDiff, quantization_config_diff, shard_key,
    vectors_config, vectors_config_diff,
};

use super::*;

// ---------------------------------------------------------------------------------------------
// Helpers

impl Target {
    fn snapshots(&self) -> SnapshotsClient<Conn> {
        SnapshotsClient::new(self.channel.clone())
    }

    async fn change_aliases(&self, actions: Vec<Action>) -> Result<bool, tonic::Status> {
        let request = ChangeAliases {
            actions: actions
                .into_iter()
                .map(|action| AliasOperations {
                    action: Some(action),
                })
                .collect(),
            timeout: None,
        };
        Ok(self
            .collections()
            .update_aliases(request)
            .await?
            .into_inner()
            .result)
    }

    async fn exists(&self, name: &str) -> bool {
        self.collections()
            .collection_exists(CollectionExistsRequest {
                collection_name: name.to_owned(),
            })
            .await
            .expect("collection exists")
            .into_inner()
            .result
            .expect("exists result")
            .exists
    }

    async fn info(&self, name: &str) -> qdrant_client::qdrant::CollectionInfo {
        self.collections()
            .get(GetCollectionInfoRequest {
                collection_name: name.to_owned(),
            })
            .await
            .expect("get collection")
            .into_inner()
            .result
            .expect("collection info")
    }

    /// Every alias of the server, as (alias, collection) pairs.
    async fn all_aliases(&self) -> BTreeSet<(String, String)> {
        pairs(
            self.collections()
                .list_aliases(ListAliasesRequest {})
                .await
                .expect("list aliases")
                .into_inner()
                .aliases,
        )
    }

    async fn aliases_of(&self, collection: &str) -> BTreeSet<(String, String)> {
        pairs(
            self.collections()
                .list_collection_aliases(ListCollectionAliasesRequest {
                    collection_name: collection.to_owned(),
                })
                .await
                .expect("list collection aliases")
                .into_inner()
                .aliases,
        )
    }

    async fn update(&self, request: UpdateCollection) -> Result<bool, tonic::Status> {
        Ok(self
            .collections()
            .update(request)
            .await?
            .into_inner()
            .result)
    }

    async fn snapshot_names(&self, collection: &str) -> BTreeSet<String> {
        self.snapshots()
            .list(ListSnapshotsRequest {
                collection_name: collection.to_owned(),
            })
            .await
            .expect("list snapshots")
            .into_inner()
            .snapshot_descriptions
            .into_iter()
            .map(|snapshot| snapshot.name)
            .collect()
    }

    async fn full_snapshot_names(&self) -> BTreeSet<String> {
        self.snapshots()
            .list_full(ListFullSnapshotsRequest {})
            .await
            .expect("list full snapshots")
            .into_inner()
            .snapshot_descriptions
            .into_iter()
            .map(|snapshot| snapshot.name)
            .collect()
    }
}

fn pairs(aliases: Vec<AliasDescription>) -> BTreeSet<(String, String)> {
    aliases
        .into_iter()
        .map(|alias| (alias.alias_name, alias.collection_name))
        .collect()
}

fn create_alias(collection: &str, alias: &str) -> Action {
    Action::CreateAlias(CreateAlias {
        collection_name: collection.to_owned(),
        alias_name: alias.to_owned(),
    })
}

fn rename_alias(old: &str, new: &str) -> Action {
    Action::RenameAlias(RenameAlias {
        old_alias_name: old.to_owned(),
        new_alias_name: new.to_owned(),
    })
}

fn delete_alias(alias: &str) -> Action {
    Action::DeleteAlias(DeleteAlias {
        alias_name: alias.to_owned(),
    })
}

#[track_caller]
fn assert_status(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, message: &str) {
    let status = result.expect_err("the request must fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.message(), message);
}

fn points(count: u64) -> Vec<PointStruct> {
    (1..=count)
        .map(|id| PointStruct::new(id, vec![id as f32, 1.0, 0.0, 0.0], Payload::new()))
        .collect()
}

/// A snapshot description looks like Qdrant's: a non-empty file with a SHA-256 checksum.
#[track_caller]
fn assert_snapshot(snapshot: &SnapshotDescription, prefix: &str) {
    assert!(
        snapshot.name.starts_with(prefix) && snapshot.name.ends_with(".snapshot"),
        "snapshot name {}",
        snapshot.name
    );
    assert!(snapshot.size > 0, "{snapshot:?}");
    let checksum = snapshot.checksum.as_deref().expect("a checksum");
    assert_eq!(checksum.len(), 64, "{checksum}");
    assert!(
        checksum.chars().all(|c| c.is_ascii_hexdigit()),
        "{checksum}"
    );
}

// ---------------------------------------------------------------------------------------------
// Aliases

#[tokio::test]
async fn an_alias_stands_for_its_collection_in_every_lookup() {
    let target = Target::new().await;
    let name = target.create_plain("aliased", 4, Distance::Dot).await;
    target.upsert(&name, points(2)).await;
    let alias = unique("alias");

    assert!(
        target
            .change_aliases(vec![create_alias(&name, &alias)])
            .await
            .unwrap()
    );
    assert!(target.exists(&alias).await);
    assert_eq!(target.info(&alias).await.points_count, Some(2));
    assert_eq!(target.count(&alias, None).await, 2);
    target
        .upsert(
            &alias,
            vec![PointStruct::new(3, vec![0.0; 4], Payload::new())],
        )
        .await;
    assert_eq!(target.count(&name, None).await, 3);
    let expected = BTreeSet::from([(alias.clone(), name.clone())]);
    assert_eq!(target.aliases_of(&name).await, expected);
    assert!(target.all_aliases().await.is_superset(&expected));
    // An alias is not a collection: it is not listed, and lists no aliases of its own.
    let listed = target
        .collections()
        .list(ListCollectionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .collections;
    assert!(!listed.iter().any(|c| c.name == alias));
    assert!(target.aliases_of(&alias).await.is_empty());

    let renamed = unique("renamed");
    target
        .change_aliases(vec![rename_alias(&alias, &renamed)])
        .await
        .unwrap();
    assert!(!target.exists(&alias).await);
    assert_eq!(target.count(&renamed, None).await, 3);
    assert_eq!(
        target.aliases_of(&name).await,
        BTreeSet::from([(renamed.clone(), name.clone())])
    );

    target
        .change_aliases(vec![delete_alias(&renamed)])
        .await
        .unwrap();
    assert!(!target.exists(&renamed).await);
    assert!(target.aliases_of(&name).await.is_empty());
    assert!(
        !target
            .all_aliases()
            .await
            .iter()
            .any(|(_, collection)| *collection == name)
    );
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn alias_actions_apply_in_order_and_a_switch_is_seen_at_once() {
    let target = Target::new().await;
    let old = target.create_plain("blue", 4, Distance::Dot).await;
    let new = target.create_plain("green", 4, Distance::Dot).await;
    target.upsert(&new, points(3)).await;
    let alias = unique("live");
    target
        .change_aliases(vec![create_alias(&old, &alias)])
        .await
        .unwrap();
    assert_eq!(target.count(&alias, None).await, 0);

    // The blue/green switch: delete and re-create in one request.
    target
        .change_aliases(vec![delete_alias(&alias), create_alias(&new, &alias)])
        .await
        .unwrap();
    assert_eq!(target.count(&alias, None).await, 3);
    assert!(target.aliases_of(&old).await.is_empty());

    // Creating an existing alias points it elsewhere.
    target
        .change_aliases(vec![create_alias(&old, &alias)])
        .await
        .unwrap();
    assert_eq!(target.count(&alias, None).await, 0);
    assert_eq!(
        target.aliases_of(&old).await,
        BTreeSet::from([(alias.clone(), old.clone())])
    );
    assert!(target.aliases_of(&new).await.is_empty());

    target.drop_collection(&old).await;
    target.drop_collection(&new).await;
}

#[tokio::test]
async fn bad_alias_actions_fail_with_qdrant_wording() {
    let target = Target::new().await;
    let name = target.create_plain("alias_errors", 4, Distance::Dot).await;
    let other = target.create_plain("alias_other", 4, Distance::Dot).await;
    let missing = unique("missing");
    let alias = unique("alias");

    assert_status(
        target
            .change_aliases(vec![create_alias(&missing, &alias)])
            .await,
        Code::NotFound,
        &format!("Not found: Collection `{missing}` doesn't exist!"),
    );
    // An alias of an alias is not allowed: the target must be a collection.
    target
        .change_aliases(vec![create_alias(&name, &alias)])
        .await
        .unwrap();
    let second = unique("alias");
    assert_status(
        target
            .change_aliases(vec![create_alias(&alias, &second)])
            .await,
        Code::NotFound,
        &format!("Not found: Collection `{alias}` doesn't exist!"),
    );
    assert_status(
        target
            .change_aliases(vec![create_alias(&name, &other)])
            .await,
        Code::AlreadyExists,
        &format!("Wrong input: Collection `{other}` already exists!"),
    );
    assert_status(
        target
            .change_aliases(vec![rename_alias(&missing, &second)])
            .await,
        Code::NotFound,
        &format!("Not found: Alias {missing} does not exists!"),
    );
    // Deleting an alias that does not exist succeeds.
    assert!(
        target
            .change_aliases(vec![delete_alias(&missing)])
            .await
            .unwrap()
    );
    assert_status(
        target
            .collections()
            .update_aliases(ChangeAliases {
                actions: vec![AliasOperations { action: None }],
                timeout: None,
            })
            .await,
        Code::InvalidArgument,
        "Malformed AliasOperation type",
    );
    // A collection cannot take an alias's name.
    assert_status(
        target
            .collections()
            .create(
                CreateCollectionBuilder::new(&alias)
                    .vectors_config(VectorParamsBuilder::new(4, Distance::Dot))
                    .build(),
            )
            .await,
        Code::InvalidArgument,
        &format!(
            "Wrong input: Can't create collection with name {alias}. Alias with the same name already exists"
        ),
    );
    // Listing the aliases of a collection that does not exist is not an error.
    assert!(target.aliases_of(&missing).await.is_empty());

    target.drop_collection(&name).await;
    target.drop_collection(&other).await;
}

#[tokio::test]
async fn a_failing_alias_action_keeps_the_actions_before_it() {
    let target = Target::new().await;
    let name = target.create_plain("alias_partial", 4, Distance::Dot).await;
    let first = unique("first");
    let second = unique("second");
    let missing = unique("missing");

    // Qdrant saves each action as it goes: the batch is not rolled back.
    assert_status(
        target
            .change_aliases(vec![
                create_alias(&name, &first),
                create_alias(&missing, &second),
            ])
            .await,
        Code::NotFound,
        &format!("Not found: Collection `{missing}` doesn't exist!"),
    );
    assert!(target.exists(&first).await);
    assert!(!target.exists(&second).await);
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn deleting_a_collection_removes_its_aliases_but_an_alias_deletes_nothing() {
    let target = Target::new().await;
    let name = target.create_plain("alias_owner", 4, Distance::Dot).await;
    let alias = unique("alias");
    target
        .change_aliases(vec![create_alias(&name, &alias)])
        .await
        .unwrap();

    // Delete takes a collection's own name only.
    let deleted = target
        .collections()
        .delete(DeleteCollectionBuilder::new(&alias).build())
        .await
        .unwrap()
        .into_inner();
    assert!(!deleted.result);
    assert!(target.exists(&name).await);
    assert!(target.exists(&alias).await);

    target.drop_collection(&name).await;
    assert!(!target.exists(&alias).await);
    assert!(
        !target
            .all_aliases()
            .await
            .iter()
            .any(|(a, c)| *a == alias || *c == name)
    );
    // The name is free for a new collection, which does not inherit the alias.
    target
        .collections()
        .create(
            CreateCollectionBuilder::new(&name)
                .vectors_config(VectorParamsBuilder::new(4, Distance::Dot))
                .build(),
        )
        .await
        .unwrap();
    assert!(target.aliases_of(&name).await.is_empty());
    assert!(!target.exists(&alias).await);
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Update and info

#[tokio::test]
async fn update_collection_changes_hnsw_optimizers_params_and_metadata() {
    let target = Target::new().await;
    let name = target
        .create(
            "update",
            CreateCollectionBuilder::new("")
                .vectors_config(VectorParamsBuilder::new(4, Distance::Dot))
                .metadata(HashMap::from([("owner".to_owned(), json!("ann"))])),
        )
        .await;
    let before = target.info(&name).await.config.unwrap();
    assert_eq!(
        before.metadata.get("owner").cloned().map(to_json),
        Some(json!("ann"))
    );
    let optimizers = before.optimizer_config.unwrap();
    // Qdrant's defaults.
    assert_eq!(optimizers.indexing_threshold, Some(10_000));
    assert_eq!(optimizers.deleted_threshold, Some(0.2));
    assert_eq!(optimizers.flush_interval_sec, Some(5));
    let hnsw = before.hnsw_config.unwrap();
    assert_eq!((hnsw.m, hnsw.ef_construct), (Some(16), Some(100)));
    let params = before.params.unwrap();
    assert_eq!(params.replication_factor, Some(1));
    assert_eq!(params.shard_number, 1);

    let updated = target
        .update(UpdateCollection {
            collection_name: name.clone(),
            hnsw_config: Some(HnswConfigDiff {
                m: Some(32),
                ef_construct: Some(200),
                ..HnswConfigDiff::default()
            }),
            optimizers_config: Some(OptimizersConfigDiff {
                indexing_threshold: Some(5_000),
                deleted_threshold: Some(0.3),
                flush_interval_sec: Some(7),
                ..OptimizersConfigDiff::default()
            }),
            params: Some(CollectionParamsDiff {
                replication_factor: Some(2),
                ..CollectionParamsDiff::default()
            }),
            metadata: HashMap::from([("team".to_owned(), pb(json!("search")))]),
            ..UpdateCollection::default()
        })
        .await
        .unwrap();
    assert!(updated);

    let after = target.info(&name).await.config.unwrap();
    let hnsw = after.hnsw_config.unwrap();
    assert_eq!((hnsw.m, hnsw.ef_construct), (Some(32), Some(200)));
    assert_eq!(hnsw.full_scan_threshold, Some(10_000), "untouched");
    let optimizers = after.optimizer_config.unwrap();
    assert_eq!(optimizers.indexing_threshold, Some(5_000));
    assert_eq!(optimizers.deleted_threshold, Some(0.3));
    assert_eq!(optimizers.flush_interval_sec, Some(7));
    assert_eq!(optimizers.vacuum_min_vector_number, Some(1000), "untouched");
    assert_eq!(after.params.unwrap().replication_factor, Some(2));
    // Metadata is merged key by key.
    let metadata: BTreeMap<_, _> = after
        .metadata
        .into_iter()
        .map(|(key, value)| (key, to_json(value)))
        .collect();
    assert_eq!(
        metadata,
        BTreeMap::from([
            ("owner".to_owned(), json!("ann")),
            ("team".to_owned(), json!("search")),
        ])
    );

    // Points are still served after the update.
    target.upsert(&name, points(3)).await;
    assert_eq!(target.count(&name, None).await, 3);
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn update_collection_tunes_a_named_vector_and_rejects_unknown_ones() {
    let target = Target::new().await;
    let mut vectors = VectorsConfigBuilder::default();
    vectors.add_named_vector_params("text", VectorParamsBuilder::new(4, Distance::Cosine));
    vectors.add_named_vector_params("image", VectorParamsBuilder::new(2, Distance::Dot));
    let name = target
        .create(
            "update_vectors",
            CreateCollectionBuilder::new("").vectors_config(vectors),
        )
        .await;
    let alias = unique("update_alias");
    target
        .change_aliases(vec![create_alias(&name, &alias)])
        .await
        .unwrap();

    let diff = |vector: &str| UpdateCollection {
        // Through the alias: updates resolve it like every other lookup.
        collection_name: alias.clone(),
        vectors_config: Some(VectorsConfigDiff {
            config: Some(vectors_config_diff::Config::ParamsMap(
                VectorParamsDiffMap {
                    map: HashMap::from([(
                        vector.to_owned(),
                        VectorParamsDiff {
                            hnsw_config: Some(HnswConfigDiff {
                                m: Some(8),
                                ..HnswConfigDiff::default()
                            }),
                            ..VectorParamsDiff::default()
                        },
                    )]),
                },
            )),
        }),
        ..UpdateCollection::default()
    };
    assert!(target.update(diff("image")).await.unwrap());
    let params = target.info(&name).await.config.unwrap().params.unwrap();
    let Some(vectors_config::Config::ParamsMap(VectorParamsMap { map })) =
        params.vectors_config.and_then(|config| config.config)
    else {
        panic!("named vectors expected");
    };
    assert_eq!(map["image"].hnsw_config.and_then(|hnsw| hnsw.m), Some(8));
    assert_eq!(map["text"].hnsw_config, None, "no override of its own");

    assert_status(
        target.update(diff("audio")).await,
        Code::InvalidArgument,
        "Wrong input: Not existing vector name error: audio",
    );
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn update_of_a_missing_collection_is_not_found() {
    let target = Target::new().await;
    let missing = unique("missing");
    assert_status(
        target
            .update(UpdateCollection {
                collection_name: missing.clone(),
                hnsw_config: Some(HnswConfigDiff {
                    m: Some(8),
                    ..HnswConfigDiff::default()
                }),
                ..UpdateCollection::default()
            })
            .await,
        Code::NotFound,
        &format!("Not found: Collection `{missing}` doesn't exist!"),
    );
}

#[tokio::test]
async fn update_refuses_what_the_engine_cannot_change_in_place() {
    let target = Target::new().await;
    if !target.is_testkit() {
        return; // Real Qdrant re-quantizes in the background.
    }
    let name = target
        .create_plain("update_refused", 4, Distance::Dot)
        .await;
    assert_status(
        target
            .update(UpdateCollection {
                collection_name: name.clone(),
                hnsw_config: Some(HnswConfigDiff {
                    m: Some(8),
                    ..HnswConfigDiff::default()
                }),
                quantization_config: Some(QuantizationConfigDiff {
                    quantization: Some(quantization_config_diff::Quantization::Scalar(
                        ScalarQuantization::default(),
                    )),
                }),
                ..UpdateCollection::default()
            })
            .await,
        Code::Unimplemented,
        "qdrant-tower-testkit does not implement quantization_config in Collections/Update yet",
    );
    // Refused as a whole: the HNSW change in the same request was not applied.
    let hnsw = target
        .info(&name)
        .await
        .config
        .unwrap()
        .hnsw_config
        .unwrap();
    assert_eq!(hnsw.m, Some(16));
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn collection_info_reports_payload_indexes_with_their_parameters_and_counts() {
    let target = Target::new().await;
    let name = seed_library(&target, "info_indexes").await;
    let mut points = target.points();
    points
        .create_field_index(
            CreateFieldIndexCollectionBuilder::new(&name, "genre", FieldType::Keyword)
                .wait(true)
                .build(),
        )
        .await
        .unwrap();
    points
        .create_field_index(
            CreateFieldIndexCollectionBuilder::new(&name, "year", FieldType::Integer)
                .field_index_params(
                    qdrant_client::qdrant::IntegerIndexParamsBuilder::new(true, false).build(),
                )
                .wait(true)
                .build(),
        )
        .await
        .unwrap();

    let info = target.info(&name).await;
    assert_eq!(info.points_count, Some(5));
    assert_eq!(info.status, CollectionStatus::Green as i32);
    let genre = &info.payload_schema["genre"];
    assert_eq!(genre.data_type, PayloadSchemaType::Keyword as i32);
    assert_eq!(genre.points, Some(5));
    assert_eq!(genre.params, None, "created from a bare type");
    let year = &info.payload_schema["year"];
    assert_eq!(year.data_type, PayloadSchemaType::Integer as i32);
    assert_eq!(year.points, Some(5));
    let Some(qdrant_client::qdrant::payload_index_params::IndexParams::IntegerIndexParams(params)) =
        year.params.clone().and_then(|p| p.index_params)
    else {
        panic!("integer index params expected, got {:?}", year.params);
    };
    assert_eq!((params.lookup, params.range), (Some(true), Some(false)));
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Cluster info and shard keys: a single node, cluster mode off

#[tokio::test]
async fn cluster_info_reports_one_active_local_shard_with_its_points() {
    let target = Target::new().await;
    let name = target.create_plain("cluster", 4, Distance::Dot).await;
    target.upsert(&name, points(3)).await;

    let info = target
        .collections()
        .collection_cluster_info(CollectionClusterInfoRequest {
            collection_name: name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(info.peer_id, 0);
    assert_eq!(info.shard_count, 1);
    assert_eq!(info.local_shards.len(), 1);
    let shard = &info.local_shards[0];
    assert_eq!(shard.shard_id, 0);
    assert_eq!(shard.points_count, 3);
    assert_eq!(shard.state, ReplicaState::Active as i32);
    assert_eq!(shard.shard_key, None);
    assert!(info.remote_shards.is_empty());
    assert!(info.shard_transfers.is_empty());
    assert!(info.resharding_operations.is_empty());

    let missing = unique("missing");
    assert_status(
        target
            .collections()
            .collection_cluster_info(CollectionClusterInfoRequest {
                collection_name: missing.clone(),
            })
            .await,
        Code::NotFound,
        &format!("Not found: Collection `{missing}` doesn't exist!"),
    );
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn cluster_changes_and_shard_keys_answer_as_a_standalone_qdrant() {
    let target = Target::new().await;
    let name = target.create_plain("standalone", 4, Distance::Dot).await;
    let mut collections = target.collections();
    // Checked before the collection is looked up (`do_update_collection_cluster`).
    const STANDALONE: &str = "Bad request: Distributed mode disabled";

    let keys = collections
        .list_shard_keys(ListShardKeysRequest {
            collection_name: name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(keys.shard_keys.is_empty());

    let key = || ShardKey {
        key: Some(shard_key::Key::Keyword("tenant".to_owned())),
    };
    assert_status(
        collections
            .create_shard_key(CreateShardKeyRequest {
                collection_name: name.clone(),
                request: Some(CreateShardKey {
                    shard_key: Some(key()),
                    ..CreateShardKey::default()
                }),
                timeout: None,
            })
            .await,
        Code::InvalidArgument,
        STANDALONE,
    );
    assert_status(
        collections
            .delete_shard_key(DeleteShardKeyRequest {
                collection_name: name.clone(),
                request: Some(DeleteShardKey {
                    shard_key: Some(key()),
                }),
                timeout: None,
            })
            .await,
        Code::InvalidArgument,
        STANDALONE,
    );
    assert_status(
        collections
            .create_shard_key(CreateShardKeyRequest {
                collection_name: name.clone(),
                request: None,
                timeout: None,
            })
            .await,
        Code::InvalidArgument,
        "empty request",
    );
    assert_status(
        collections
            .update_collection_cluster_setup(UpdateCollectionClusterSetupRequest {
                collection_name: name.clone(),
                timeout: None,
                operation: Some(ClusterOperation::MoveShard(MoveShard {
                    shard_id: 0,
                    from_peer_id: 1,
                    to_peer_id: 2,
                    ..MoveShard::default()
                })),
            })
            .await,
        Code::InvalidArgument,
        STANDALONE,
    );
    assert_status(
        collections
            .update_collection_cluster_setup(UpdateCollectionClusterSetupRequest {
                collection_name: name.clone(),
                timeout: None,
                operation: None,
            })
            .await,
        Code::InvalidArgument,
        "empty operation",
    );
    // Even for a collection that does not exist.
    assert_status(
        collections
            .update_collection_cluster_setup(UpdateCollectionClusterSetupRequest {
                collection_name: unique("missing"),
                timeout: None,
                operation: Some(ClusterOperation::MoveShard(MoveShard {
                    shard_id: 0,
                    from_peer_id: 1,
                    to_peer_id: 2,
                    ..MoveShard::default()
                })),
            })
            .await,
        Code::InvalidArgument,
        STANDALONE,
    );
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Snapshots

#[tokio::test]
async fn collection_snapshots_are_created_listed_and_deleted() {
    let target = Target::new().await;
    let name = target.create_plain("snap", 4, Distance::Dot).await;
    target.upsert(&name, points(4)).await;
    let mut snapshots = target.snapshots();

    let snapshot = snapshots
        .create(CreateSnapshotRequest {
            collection_name: name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .snapshot_description
        .expect("a snapshot description");
    assert_snapshot(&snapshot, &format!("{name}-"));
    assert!(snapshot.creation_time.is_some(), "{snapshot:?}");

    let listed = snapshots
        .list(ListSnapshotsRequest {
            collection_name: name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .snapshot_descriptions;
    let found = listed
        .iter()
        .find(|s| s.name == snapshot.name)
        .expect("the new snapshot is listed");
    assert_eq!(found.size, snapshot.size);
    assert_eq!(found.checksum, snapshot.checksum);

    snapshots
        .delete(DeleteSnapshotRequest {
            collection_name: name.clone(),
            snapshot_name: snapshot.name.clone(),
        })
        .await
        .unwrap();
    assert!(!target.snapshot_names(&name).await.contains(&snapshot.name));
    assert_status(
        snapshots
            .delete(DeleteSnapshotRequest {
                collection_name: name.clone(),
                snapshot_name: snapshot.name.clone(),
            })
            .await,
        Code::NotFound,
        &format!("Not found: Snapshot {} not found", snapshot.name),
    );
    // A name must not reach outside the collection's snapshots.
    assert_status(
        snapshots
            .delete(DeleteSnapshotRequest {
                collection_name: name.clone(),
                snapshot_name: "../x.snapshot".to_owned(),
            })
            .await,
        Code::NotFound,
        "Not found: Snapshot ../x.snapshot not found",
    );
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn snapshots_of_a_missing_collection_are_not_found() {
    let target = Target::new().await;
    let missing = unique("missing");
    let expected = format!("Not found: Collection `{missing}` doesn't exist!");
    let mut snapshots = target.snapshots();
    assert_status(
        snapshots
            .create(CreateSnapshotRequest {
                collection_name: missing.clone(),
            })
            .await,
        Code::NotFound,
        &expected,
    );
    assert_status(
        snapshots
            .list(ListSnapshotsRequest {
                collection_name: missing.clone(),
            })
            .await,
        Code::NotFound,
        &expected,
    );
    assert_status(
        snapshots
            .delete(DeleteSnapshotRequest {
                collection_name: missing.clone(),
                snapshot_name: "x.snapshot".to_owned(),
            })
            .await,
        Code::NotFound,
        &expected,
    );
}

#[tokio::test]
async fn a_snapshot_through_an_alias_is_named_after_the_collection() {
    let target = Target::new().await;
    let name = target.create_plain("snap_alias", 4, Distance::Dot).await;
    let alias = unique("snap_alias");
    target
        .change_aliases(vec![create_alias(&name, &alias)])
        .await
        .unwrap();
    let snapshot = target
        .snapshots()
        .create(CreateSnapshotRequest {
            collection_name: alias.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .snapshot_description
        .unwrap();
    assert_snapshot(&snapshot, &format!("{name}-"));
    assert!(target.snapshot_names(&alias).await.contains(&snapshot.name));
    assert!(target.snapshot_names(&name).await.contains(&snapshot.name));
    target
        .snapshots()
        .delete(DeleteSnapshotRequest {
            collection_name: name.clone(),
            snapshot_name: snapshot.name,
        })
        .await
        .unwrap();
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn full_snapshots_are_created_listed_and_deleted() {
    let _alone = FULL_SNAPSHOT.write().await;
    let target = Target::new().await;
    let name = target.create_plain("full_snap", 4, Distance::Dot).await;
    target.upsert(&name, points(2)).await;
    let mut snapshots = target.snapshots();

    // A full snapshot covers every collection of the server. On a shared real Qdrant, another
    // test may delete one of them meanwhile, and Qdrant then fails the snapshot with that
    // collection's NOT_FOUND, leaving the collection snapshots it had made: remove ours and try
    // again, a few times.
    let mut attempts = 0;
    let snapshot = loop {
        attempts += 1;
        match snapshots.create_full(CreateFullSnapshotRequest {}).await {
            Ok(reply) => break reply.into_inner().snapshot_description.unwrap(),
            Err(status)
                if !target.is_testkit()
                    && attempts < 5
                    && status.code() == Code::NotFound
                    && !status.message().contains(&name) =>
            {
                for left in target.snapshot_names(&name).await {
                    snapshots
                        .delete(DeleteSnapshotRequest {
                            collection_name: name.clone(),
                            snapshot_name: left,
                        })
                        .await
                        .expect("delete a snapshot a failed full snapshot left");
                }
            }
            Err(status) => panic!("full snapshot, attempt {attempts}: {status:?}"),
        }
    };
    assert_snapshot(&snapshot, "full-snapshot-");
    assert!(target.full_snapshot_names().await.contains(&snapshot.name));
    // The collection snapshots it is made of are moved into it: none is left behind.
    assert_eq!(target.snapshot_names(&name).await, BTreeSet::new());

    snapshots
        .delete_full(DeleteFullSnapshotRequest {
            snapshot_name: snapshot.name.clone(),
        })
        .await
        .unwrap();
    assert!(!target.full_snapshot_names().await.contains(&snapshot.name));
    assert_status(
        snapshots
            .delete_full(DeleteFullSnapshotRequest {
                snapshot_name: snapshot.name.clone(),
            })
            .await,
        Code::NotFound,
        &format!("Not found: Snapshot {} not found", snapshot.name),
    );
    target.drop_collection(&name).await;
}

// ---------------------------------------------------------------------------------------------
// Testkit only: snapshot recovery, restarts, servers side by side, the `serve` binary

/// A testkit server on a persistent directory, as a `Target`.
async fn testkit_on(builder: qdrant_tower_testkit::TestServerBuilder) -> Target {
    let server = builder.start().await.expect("test server starts");
    Target {
        channel: connect(server.url()).await,
        server: Some(server),
    }
}

fn real_qdrant() -> bool {
    std::env::var_os("QDRANT_URL").is_some_and(|url| !url.is_empty())
}

#[tokio::test]
async fn a_snapshot_file_restores_a_collection() {
    let target = Target::new().await;
    let Some(server) = &target.server else {
        return; // Qdrant recovers snapshots through its REST API.
    };
    let name = target.create_plain("recover", 4, Distance::Dot).await;
    target.upsert(&name, points(3)).await;
    let alias = unique("recover_alias");
    target
        .change_aliases(vec![create_alias(&name, &alias)])
        .await
        .unwrap();
    let snapshot = target
        .snapshots()
        .create(CreateSnapshotRequest {
            collection_name: name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .snapshot_description
        .unwrap();
    let file = server
        .data_dir()
        .join("snapshots")
        .join(&name)
        .join(&snapshot.name);
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        snapshot.size as u64
    );

    // Into a new collection.
    let copy = unique("recover_copy");
    server.recover_snapshot(&copy, &file).await.unwrap();
    assert_eq!(target.count(&copy, None).await, 3);

    // Over the collection itself: later points are gone, the alias stays.
    target.upsert(&name, points(6)).await;
    assert_eq!(target.count(&alias, None).await, 6);
    server.recover_snapshot(&name, &file).await.unwrap();
    assert_eq!(target.count(&alias, None).await, 3);

    let not_a_snapshot = server.data_dir().join("testkit_node.json");
    let err = server
        .recover_snapshot("other", &not_a_snapshot)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot unpack snapshot"), "{err}");
    assert!(!target.exists("other").await);

    target.drop_collection(&copy).await;
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn stop_and_restart_keep_the_address_the_data_and_the_aliases() {
    if real_qdrant() {
        return;
    }
    let mut server = TestServer::start().await.unwrap();
    let addr = server.addr();
    let target = Target {
        channel: connect(server.url()).await,
        server: None,
    };
    let name = target.create_plain("restart", 4, Distance::Dot).await;
    target.upsert(&name, points(4)).await;
    let alias = unique("restart_alias");
    target
        .change_aliases(vec![create_alias(&name, &alias)])
        .await
        .unwrap();

    server.stop().await;
    assert!(!server.is_running());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    let status = target.count_result(&alias).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    server.restart().await.unwrap();
    assert!(server.is_running());
    assert_eq!(server.addr(), addr);
    let target = Target {
        channel: connect(server.url()).await,
        server: Some(server),
    };
    assert_eq!(target.count(&alias, None).await, 4);
    assert_eq!(
        target.aliases_of(&name).await,
        BTreeSet::from([(alias.clone(), name.clone())])
    );
    // Restarting a running server works too.
    let Target { channel, server } = target;
    let mut server = server.unwrap();
    drop(channel);
    server.restart().await.unwrap();
    let target = Target {
        channel: connect(server.url()).await,
        server: Some(server),
    };
    assert_eq!(target.count(&name, None).await, 4);
    target.drop_collection(&name).await;
}

impl Target {
    async fn count_result(&self, collection: &str) -> Result<u64, tonic::Status> {
        Ok(self
            .points()
            .count(CountPointsBuilder::new(collection).exact(true).build())
            .await?
            .into_inner()
            .result
            .map_or(0, |result| result.count))
    }
}

#[tokio::test]
async fn a_data_dir_and_port_keep_collections_aliases_and_settings_across_servers() {
    if real_qdrant() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = testkit_on(TestServer::builder().data_dir(dir.path())).await;
    let port = target.server.as_ref().unwrap().addr().port();
    let name = target
        .create(
            "persist_settings",
            CreateCollectionBuilder::new("")
                .vectors_config(VectorParamsBuilder::new(4, Distance::Dot))
                .metadata(HashMap::from([("owner".to_owned(), json!("ann"))])),
        )
        .await;
    target.upsert(&name, points(5)).await;
    target
        .update(UpdateCollection {
            collection_name: name.clone(),
            hnsw_config: Some(HnswConfigDiff {
                m: Some(24),
                ..HnswConfigDiff::default()
            }),
            ..UpdateCollection::default()
        })
        .await
        .unwrap();
    let alias = unique("persist_alias");
    target
        .change_aliases(vec![create_alias(&name, &alias)])
        .await
        .unwrap();
    let peer_id = target
        .collections()
        .collection_cluster_info(CollectionClusterInfoRequest {
            collection_name: name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .peer_id;
    let Target { channel, server } = target;
    drop(channel);
    server.unwrap().shutdown().await;

    let target = testkit_on(TestServer::builder().data_dir(dir.path()).port(port)).await;
    assert_eq!(target.server.as_ref().unwrap().addr().port(), port);
    assert_eq!(target.count(&alias, None).await, 5);
    let config = target.info(&alias).await.config.unwrap();
    assert_eq!(config.hnsw_config.unwrap().m, Some(24));
    assert_eq!(
        config.metadata.get("owner").cloned().map(to_json),
        Some(json!("ann"))
    );
    let info = target
        .collections()
        .collection_cluster_info(CollectionClusterInfoRequest {
            collection_name: name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.peer_id, peer_id, "the node keeps its peer id");
    target.drop_collection(&name).await;
}

#[tokio::test]
async fn servers_side_by_side_keep_their_own_collections() {
    if real_qdrant() {
        return;
    }
    let first = testkit_on(TestServer::builder()).await;
    let second = testkit_on(TestServer::builder()).await;
    assert_ne!(
        first.server.as_ref().unwrap().addr(),
        second.server.as_ref().unwrap().addr()
    );
    let name = "shared_name";
    for (target, dim, count) in [(&first, 4, 2), (&second, 2, 5)] {
        target
            .collections()
            .create(
                CreateCollectionBuilder::new(name)
                    .vectors_config(VectorParamsBuilder::new(dim, Distance::Dot))
                    .build(),
            )
            .await
            .unwrap();
        let points = (1..=count)
            .map(|id| PointStruct::new(id, vec![1.0; dim as usize], Payload::new()))
            .collect();
        target.upsert(name, points).await;
    }
    assert_eq!(first.count(name, None).await, 2);
    assert_eq!(second.count(name, None).await, 5);
    first
        .change_aliases(vec![create_alias(name, "only_on_first")])
        .await
        .unwrap();
    assert!(!second.exists("only_on_first").await);

    first.drop_collection(name).await;
    assert!(!first.exists(name).await);
    assert_eq!(second.count(name, None).await, 5);
}

/// The `serve` binary cargo built for this test.
fn serve_binary() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_qdrant-tower-testkit").into()
}

/// The `serve` binary, ended (SIGKILL) if the test fails before it stops it.
struct Serve {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Serve {
    /// Starts `serve --port PORT --data DIR` and waits for the address it prints.
    fn start(dir: &std::path::Path, port: u16) -> (Self, String) {
        let mut child = Command::new(serve_binary())
            .args(["serve", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--data")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the serve binary starts");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut serve = Self { child, lines };
        let line = serve.line_containing("listening on ");
        let url = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .expect("a URL in the listening line")
            .to_owned();
        (serve, url)
    }

    fn line_containing(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(err) => panic!("no line with {needle:?} from serve: {err}"),
            }
        }
    }

    /// Sends `signal` (INT or TERM) to the process this test started, and waits for it to exit.
    fn stop(mut self, signal: &str) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success());
        assert!(self.line_containing("stopped").contains("stopped"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for serve") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test]
async fn the_serve_binary_stops_on_signals_and_restarts_on_its_data() {
    if real_qdrant() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (serve, url) = tokio::task::spawn_blocking(move || Serve::start(&path, 0))
        .await
        .unwrap();
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let target = Target {
        channel: connect(url.clone()).await,
        server: None,
    };
    let name = target.create_plain("serve", 4, Distance::Dot).await;
    target.upsert(&name, points(7)).await;
    target
        .change_aliases(vec![create_alias(&name, "serve_alias")])
        .await
        .unwrap();
    drop(target);
    let status = tokio::task::spawn_blocking(|| serve.stop("INT"))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");

    // Same directory, same port: everything is back.
    let path = dir.path().to_path_buf();
    let (serve, url_again) = tokio::task::spawn_blocking(move || Serve::start(&path, port))
        .await
        .unwrap();
    assert_eq!(url_again, url);
    let target = Target {
        channel: connect(url_again).await,
        server: None,
    };
    assert_eq!(target.count("serve_alias", None).await, 7);
    assert_eq!(target.info(&name).await.points_count, Some(7));
    drop(target);
    let status = tokio::task::spawn_blocking(|| serve.stop("TERM"))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
}
