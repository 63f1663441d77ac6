//! The read cache in front of the ready stack: hits, invalidation by writes through it,
//! single-flight, TTL, bounds, and what it never caches — counted at the embedded server.

use std::time::Duration;

use qdrant_tower::cache::{CacheConfig, CacheLayer};
use qdrant_tower::config::StackConfig;
use qdrant_tower::qdrant::{
    CreateCollectionBuilder, Distance, PointStruct, SearchPointsBuilder, UpsertPointsBuilder,
    VectorParamsBuilder,
};
use qdrant_tower::{Client, ErrorKind, Payload, Profile, QdrantStack};
use qdrant_tower_testkit::TestServer;
use qdrant_tower_testkit::faults::{Fault, FaultRule, Rpc};
use tower::Layer;

use crate::backend::collection_with_a_point;

async fn setup(
    config: CacheConfig,
) -> (
    TestServer,
    CacheLayer,
    Client<qdrant_tower::cache::Cache<qdrant_tower::StackService>>,
) {
    let server = TestServer::start().await.unwrap();
    let mut stack_config = StackConfig::for_profile(Profile::Testing);
    stack_config.endpoints = vec![server.url()];
    let stack = QdrantStack::builder().config(stack_config).build().unwrap();
    let cache = CacheLayer::new(config);
    let client = Client::new(cache.layer(stack.service()));
    for name in ["docs", "other"] {
        collection_with_a_point(&client, name).await;
    }
    (server, cache, client)
}

fn search(collection: &str, x: f32) -> SearchPointsBuilder {
    SearchPointsBuilder::new(collection, vec![x, 1.0], 10)
}

#[tokio::test]
async fn a_repeated_read_is_served_from_the_cache_until_a_write_invalidates_it() {
    let (server, _cache, client) = setup(CacheConfig::new(["docs"])).await;
    let first = client.search(search("docs", 1.0)).await.unwrap();
    let second = client.search(search("docs", 1.0)).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(
        server.calls().count(Rpc::Search, "docs"),
        1,
        "the second was a hit"
    );
    // Another request is another entry.
    client.search(search("docs", 2.0)).await.unwrap();
    assert_eq!(server.calls().count(Rpc::Search, "docs"), 2);

    // A write through the cache: the next read goes to Qdrant and sees it.
    client
        .upsert(
            UpsertPointsBuilder::new(
                "docs",
                vec![PointStruct::new(2, vec![0.0, 1.0], Payload::new())],
            )
            .wait(true),
        )
        .await
        .unwrap();
    let after = client.search(search("docs", 1.0)).await.unwrap();
    assert_eq!(server.calls().count(Rpc::Search, "docs"), 3);
    assert_eq!(
        (first.result.len(), after.result.len()),
        (1, 2),
        "read your write"
    );

    // A collection not listed is never cached; nor is a failed read.
    client.search(search("other", 1.0)).await.unwrap();
    client.search(search("other", 1.0)).await.unwrap();
    assert_eq!(server.calls().count(Rpc::Search, "other"), 2);
    server.set_faults(
        FaultRule::new(Fault::unavailable())
            .rpc(Rpc::Search)
            .first(1),
    );
    let error = client.search(search("docs", 9.0)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    client.search(search("docs", 9.0)).await.unwrap();
    assert_eq!(
        server.calls().count(Rpc::Search, "docs"),
        5,
        "the error was not kept"
    );
}

#[tokio::test]
async fn a_burst_of_identical_reads_costs_one_backend_call() {
    let (server, _cache, client) = setup(CacheConfig::new(["docs"])).await;
    server.set_faults(
        FaultRule::new(Fault::delay(Duration::from_millis(200)))
            .rpc(Rpc::Search)
            .first(1),
    );
    let burst: Vec<_> = (0..10)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.search(search("docs", 1.0)).await })
        })
        .collect();
    for call in burst {
        assert_eq!(call.await.unwrap().unwrap().result.len(), 1);
    }
    assert_eq!(
        server.calls().count(Rpc::Search, "docs"),
        1,
        "single-flight"
    );
}

#[tokio::test]
async fn entries_expire_after_the_ttl_and_stay_within_the_bounds() {
    let (server, cache, client) = setup(
        CacheConfig::new(["docs"])
            .ttl(Duration::from_millis(150))
            .max_entries(3),
    )
    .await;
    client.search(search("docs", 1.0)).await.unwrap();
    client.search(search("docs", 1.0)).await.unwrap();
    assert_eq!(server.calls().count(Rpc::Search, "docs"), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.search(search("docs", 1.0)).await.unwrap();
    assert_eq!(server.calls().count(Rpc::Search, "docs"), 2, "expired");

    for x in 0..10 {
        client
            .search(search("docs", 10.0 + x as f32))
            .await
            .unwrap();
    }
    assert!(cache.entry_count().await <= 3, "at most 3 entries");
}

#[tokio::test]
async fn the_ready_stack_caches_the_collections_its_configuration_lists() {
    let server = TestServer::start().await.unwrap();
    let config = qdrant_tower::config::ConfigLoader::new()
        .profile(Profile::Testing)
        .env_vars([
            ("QDRANT_URL", server.url()),
            ("QDRANT_TOWER__CACHE__COLLECTIONS", "docs".to_owned()),
            ("QDRANT_TOWER__CACHE__TTL", "1m".to_owned()),
        ])
        .load()
        .unwrap();
    assert_eq!(config.cache.collections, ["docs"]);
    let stack = QdrantStack::builder().config(config).build().unwrap();
    let client = stack.client();
    client
        .create_collection(
            CreateCollectionBuilder::new("docs")
                .vectors_config(VectorParamsBuilder::new(2, Distance::Dot)),
        )
        .await
        .unwrap();
    for _ in 0..3 {
        client.search(search("docs", 1.0)).await.unwrap();
    }
    assert_eq!(server.calls().count(Rpc::Search, "docs"), 1);
}
