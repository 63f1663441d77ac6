//! Reads over three endpoints, one of them slow (20 ms of added latency through a chaos
//! proxy, the others on loopback), hedging off vs on (a hedge after 5 ms), in the same run:
//! `cargo bench --bench hedge`.
//!
//! Criterion gives each variant's median time per read; the bench also prints p50, p99 and
//! the maximum of every read it timed, since a tail is what hedging is for. Round-robin sends
//! a third of first attempts to the slow endpoint, so without hedging p99 is about its 20 ms.

mod common;

use std::time::{Duration, Instant};

use common::percentile;
use criterion::{Criterion, criterion_group, criterion_main};
use qdrant_tower::config::{BalanceSetting, StackConfig};
use qdrant_tower::qdrant::{
    CreateCollectionBuilder, Distance, PointStruct, SearchPointsBuilder, UpsertPointsBuilder,
    VectorParamsBuilder,
};
use qdrant_tower::{Client, Payload, Profile, QdrantService, QdrantStack, StackService};
use qdrant_tower_testkit::{ChaosProxy, Direction, TestServer};

struct Fleet {
    _servers: Vec<TestServer>,
    proxies: Vec<ChaosProxy>,
}

async fn fleet() -> Fleet {
    let mut servers = Vec::new();
    let mut proxies = Vec::new();
    for _ in 0..3 {
        let server = TestServer::start().await.unwrap();
        let direct = Client::new(QdrantService::from_url(server.url()).unwrap());
        direct
            .create_collection(
                CreateCollectionBuilder::new("docs")
                    .vectors_config(VectorParamsBuilder::new(2, Distance::Dot)),
            )
            .await
            .unwrap();
        let points = (0..100u64)
            .map(|id| PointStruct::new(id, vec![1.0, id as f32], Payload::new()))
            .collect::<Vec<_>>();
        direct
            .upsert(UpsertPointsBuilder::new("docs", points).wait(true))
            .await
            .unwrap();
        proxies.push(ChaosProxy::start(server.addr()).await.unwrap());
        servers.push(server);
    }
    proxies[0].latency(
        Direction::Downstream,
        Duration::from_millis(20),
        Duration::ZERO,
    );
    Fleet {
        _servers: servers,
        proxies,
    }
}

fn stack(fleet: &Fleet, hedge: bool) -> Client<StackService> {
    let mut config = StackConfig::for_profile(Profile::Production);
    config.endpoints = fleet.proxies.iter().map(ChaosProxy::url).collect();
    config.balance = Some(BalanceSetting::RoundRobin);
    if hedge {
        config.hedge.operations = vec!["search".into()];
        config.hedge.delay = Some(Duration::from_millis(5));
        config.hedge.budget_percent = 0.5;
    }
    QdrantStack::builder()
        .config(config)
        .build()
        .unwrap()
        .client()
}

fn reads(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fleet = runtime.block_on(fleet());
    let mut group = c.benchmark_group("hedge");
    let mut tails = Vec::new();
    for (name, hedge) in [("off", false), ("on_after_5ms", true)] {
        let client = runtime.block_on(async { stack(&fleet, hedge) });
        let search = SearchPointsBuilder::new("docs", vec![1.0, 0.5], 5);
        let mut timed = Vec::new();
        group.bench_function(format!("search_one_slow_endpoint/{name}"), |b| {
            b.iter(|| {
                let started = Instant::now();
                runtime
                    .block_on(client.search(search.clone()))
                    .expect("a read");
                timed.push(started.elapsed());
            });
        });
        timed.sort();
        tails.push((name, timed));
    }
    group.finish();
    for (name, timed) in &tails {
        println!(
            "hedge {name}: {} reads, p50 {:?}, p99 {:?}, max {:?}",
            timed.len(),
            percentile(timed, 0.5),
            percentile(timed, 0.99),
            timed.last().unwrap()
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    targets = reads
}
criterion_main!(benches);
