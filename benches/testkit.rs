//! The embedded server as a test backend: how long from `TestServer::start()` to its first
//! answer (a health check through `QdrantService`, then a search on a fresh collection), the
//! cost a test pays for its own server. Search latency against the real server on the same
//! data is in the `e2e` bench (its `tonic` rows on both backends).
//!
//! `cargo bench --bench testkit`

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use qdrant_tower::qdrant::{
    CreateCollectionBuilder, Distance, PointStruct, SearchPointsBuilder, UpsertPointsBuilder,
    VectorParamsBuilder,
};
use qdrant_tower::{Client, Payload, QdrantService, VectorRequest};
use qdrant_tower_testkit::TestServer;
use tower::ServiceExt;

fn start(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("testkit");
    group.bench_function("start_to_first_answer", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(timed(iters, |server| async move {
                let service = QdrantService::from_url(server.url()).expect("valid settings");
                service
                    .oneshot(VectorRequest::health_check())
                    .await
                    .expect("an answer");
                server
            }))
        })
    });
    group.bench_function("start_to_first_search", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(timed(iters, |server| async move {
                let client =
                    Client::new(QdrantService::from_url(server.url()).expect("valid settings"));
                client
                    .create_collection(
                        CreateCollectionBuilder::new("docs")
                            .vectors_config(VectorParamsBuilder::new(4, Distance::Cosine)),
                    )
                    .await
                    .expect("collection created");
                let point = PointStruct::new(1, vec![0.1, 0.2, 0.3, 0.4], Payload::new());
                client
                    .upsert(UpsertPointsBuilder::new("docs", vec![point]).wait(true))
                    .await
                    .expect("a point written");
                let hits = client
                    .search(SearchPointsBuilder::new(
                        "docs",
                        vec![0.1, 0.2, 0.3, 0.4],
                        1,
                    ))
                    .await
                    .expect("a search");
                assert_eq!(hits.result.len(), 1);
                server
            }))
        })
    });
    group.finish();
}

/// `iters` times: start a server, run `first` on it; the total time (the servers are stopped
/// outside it).
async fn timed<F, Fut>(iters: u64, first: F) -> Duration
where
    F: Fn(TestServer) -> Fut,
    Fut: std::future::Future<Output = TestServer>,
{
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let started = Instant::now();
        let server = TestServer::start().await.expect("the embedded server");
        let server = first(server).await;
        total += started.elapsed();
        drop(server);
    }
    total
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    targets = start
}
criterion_main!(benches);
