//! The connection pool: grows from min to max under load, shrinks when idle, replaces a
//! failed connection — seen from both ends (the pool's figures and the server's connections).

use std::collections::BTreeSet;
use std::time::Duration;

use qdrant_tower::qdrant::{
    CreateCollectionBuilder, Distance, SearchPointsBuilder, VectorParamsBuilder,
};
use qdrant_tower::{ErrorKind, QdrantService, VectorRequest};
use qdrant_tower_testkit::TestServer;
use qdrant_tower_testkit::faults::{Fault, FaultRule, Rpc};
use tower::ServiceExt;

async fn with_collection(server: &TestServer, service: &QdrantService) {
    let create: VectorRequest = CreateCollectionBuilder::new("docs")
        .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
        .into();
    service.clone().oneshot(create).await.unwrap();
    server.calls().reset();
}

fn search() -> VectorRequest {
    SearchPointsBuilder::new("docs", vec![1.0, 0.0], 1).into()
}

/// Waits (up to 10 s) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 10 s: {what}");
}

#[tokio::test]
async fn the_pool_grows_under_load_and_shrinks_when_idle() {
    let server = TestServer::start().await.unwrap();
    let service = QdrantService::builder()
        .endpoint(server.url())
        .connections(1, 4)
        .grow_at(2)
        .idle_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    with_collection(&server, &service).await;
    assert_eq!(service.pool_stats()[0].connections, 1);

    server.set_faults(FaultRule::new(Fault::delay(Duration::from_millis(400))).rpc(Rpc::Search));
    let calls: Vec<_> = (0..8)
        .map(|_| tokio::spawn(service.clone().oneshot(search())))
        .collect();
    eventually("8 calls in flight", || {
        service.pool_stats()[0].in_flight == 8
    })
    .await;
    let stats = service.pool_stats()[0].clone();
    assert_eq!((stats.connections, stats.grown), (4, 3), "{stats:?}");
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let connections: BTreeSet<u64> = server
        .calls()
        .matching(|call| call.rpc() == Rpc::Search)
        .iter()
        .map(|call| call.connection_id())
        .collect();
    assert_eq!(connections.len(), 4, "the server saw four connections");

    // Idle: one connection closes per idle period, down to the minimum.
    eventually("back to one connection", || {
        service.pool_stats()[0].connections == 1
    })
    .await;
    let stats = service.pool_stats()[0].clone();
    assert_eq!((stats.shrunk, stats.in_flight), (3, 0), "{stats:?}");
    server.clear_faults();
    service.clone().oneshot(search()).await.unwrap();
}

#[tokio::test]
async fn a_failed_connection_is_replaced_by_a_new_one() {
    let server = TestServer::start().await.unwrap();
    let service = QdrantService::builder()
        .endpoint(server.url())
        .build()
        .unwrap();
    with_collection(&server, &service).await;
    service.clone().oneshot(search()).await.unwrap();
    server.set_faults(
        FaultRule::new(Fault::drop_connection())
            .rpc(Rpc::Search)
            .first(1),
    );
    let error = service.clone().oneshot(search()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
    assert_eq!(service.pool_stats()[0].replaced, 1);
    service.clone().oneshot(search()).await.unwrap();
    let searches = server.calls().matching(|call| call.rpc() == Rpc::Search);
    let first = searches.first().unwrap().connection_id();
    let last = searches.last().unwrap().connection_id();
    assert_ne!(first, last, "the last search came on a new connection");
}

#[tokio::test]
async fn bad_pool_settings_are_named() {
    for (builder, field) in [
        (QdrantService::builder().connections(0, 2), "connections"),
        (QdrantService::builder().connections(3, 2), "connections"),
        (QdrantService::builder().grow_at(0), "grow_at"),
        (
            QdrantService::builder().idle_timeout(Duration::ZERO),
            "idle_timeout",
        ),
    ] {
        let error = builder.endpoint("http://127.0.0.1:1").build().unwrap_err();
        assert!(error.to_string().contains(field), "{error}");
    }
}
