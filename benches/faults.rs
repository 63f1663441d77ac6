//! Under faults, on the embedded server, in the same run:
//!
//! - search at a 10 % error rate (`UNAVAILABLE` on a random tenth of the calls the server
//!   receives, retries included): the ready stack against the bare `QdrantService` — success
//!   rate, p50 and p99;
//! - a full outage: how long the ready stack takes to refuse a call once its breaker is open
//!   (criterion's median), against the bare service's failed call to the same dead server.
//!
//! `cargo bench --bench faults`; the bench prints a Markdown table after criterion's lines.

mod common;

use std::time::{Duration, Instant};

use common::percentile;
use criterion::{Criterion, criterion_group, criterion_main};
use qdrant_tower::layers::breaker::BreakerState;
use qdrant_tower::qdrant::{
    CreateCollectionBuilder, Distance, PointStruct, SearchPointsBuilder, UpsertPointsBuilder,
    VectorParamsBuilder,
};
use qdrant_tower::{Client, ErrorKind, Payload, QdrantService, QdrantStack, StackService};
use qdrant_tower_testkit::TestServer;
use qdrant_tower_testkit::faults::{Fault, FaultPlan, FaultRule, Rpc};

const COLLECTION: &str = "faults";
/// The timed pass per variant: this long, or this many calls, whichever comes first (the
/// stack's retries of `UNAVAILABLE` wait a jittered second: few calls per second).
const PASS: Duration = Duration::from_secs(20);
const PASS_CALLS: usize = 5000;

async fn server() -> TestServer {
    let server = TestServer::start().await.expect("the embedded server");
    let direct = Client::new(QdrantService::from_url(server.url()).expect("valid settings"));
    direct
        .create_collection(
            CreateCollectionBuilder::new(COLLECTION)
                .vectors_config(VectorParamsBuilder::new(4, Distance::Cosine)),
        )
        .await
        .expect("collection created");
    let points = (0..1000u64)
        .map(|id| {
            let x = id as f32 / 1000.0;
            PointStruct::new(id, vec![x, 1.0 - x, 0.5, 0.25], Payload::new())
        })
        .collect::<Vec<_>>();
    direct
        .upsert(UpsertPointsBuilder::new(COLLECTION, points).wait(true))
        .await
        .expect("points written");
    server
}

fn stack(server: &TestServer) -> Client<StackService> {
    QdrantStack::builder()
        .endpoint(server.url())
        .build()
        .expect("the stack builds")
        .client()
}

fn search() -> SearchPointsBuilder {
    SearchPointsBuilder::new(COLLECTION, vec![0.3, 0.7, 0.5, 0.25], 10)
}

/// One caller for `PASS` or `PASS_CALLS`: (calls, successes, p50, p99) of every call.
async fn pass<S>(client: &Client<S>) -> (usize, usize, Duration, Duration)
where
    S: tower::Service<
            qdrant_tower::VectorRequest,
            Response = qdrant_tower::VectorResponse,
            Error = qdrant_tower::VectorError,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let end = Instant::now() + PASS;
    let mut timings = Vec::new();
    let mut ok = 0;
    while Instant::now() < end && timings.len() < PASS_CALLS {
        let started = Instant::now();
        if client.search(search()).await.is_ok() {
            ok += 1;
        }
        timings.push(started.elapsed());
    }
    timings.sort();
    let at = |p: f64| percentile(&timings, p);
    (timings.len(), ok, at(0.5), at(0.99))
}

fn faults(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(server());
    let stack = runtime.block_on(async { stack(&server) });
    let bare = runtime.block_on(async {
        Client::new(QdrantService::from_url(server.url()).expect("valid settings"))
    });
    let mut rows = Vec::new();

    // 10 % of the searches the server receives fail, whichever attempt they are.
    server.set_faults(
        FaultPlan::new().rule(
            FaultRule::new(Fault::unavailable())
                .rpc(Rpc::Search)
                .probability(0.1, 7),
        ),
    );
    let mut group = c.benchmark_group("faults_error_rate_10pct");
    group.bench_function("stack", |b| {
        b.iter(|| runtime.block_on(stack.search(search())).is_ok())
    });
    group.bench_function("service", |b| {
        b.iter(|| runtime.block_on(bare.search(search())).is_ok())
    });
    group.finish();
    for (name, outcome) in [
        ("stack", runtime.block_on(pass(&stack))),
        ("service", runtime.block_on(pass(&bare))),
    ] {
        rows.push(("10 % errors", name, outcome));
    }
    server.clear_faults();

    // A full outage: every search fails until the breaker opens; then a call is refused.
    server.set_faults(FaultPlan::new().rule(FaultRule::new(Fault::unavailable()).rpc(Rpc::Search)));
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while stack_breaker_open(&stack).await.is_none() {
            assert!(Instant::now() < deadline, "the breaker opens in an outage");
        }
    });
    let mut group = c.benchmark_group("faults_outage");
    group.bench_function("stack_rejection", |b| {
        b.iter(|| {
            let error = runtime
                .block_on(stack.search(search()))
                .expect_err("the breaker is open");
            assert_eq!(error.kind(), ErrorKind::CircuitOpen, "{error}");
        })
    });
    group.bench_function("service_failure", |b| {
        b.iter(|| runtime.block_on(bare.search(search())).is_err())
    });
    group.finish();
    for (name, outcome) in [
        ("stack", runtime.block_on(pass(&stack))),
        ("service", runtime.block_on(pass(&bare))),
    ] {
        rows.push(("full outage", name, outcome));
    }
    server.clear_faults();

    println!("\n| faults | client | calls | success rate | p50 | p99 |");
    println!("|---|---|---:|---:|---:|---:|");
    for (faults, name, (calls, ok, p50, p99)) in rows {
        println!(
            "| {faults} | {name} | {calls} | {:.1} % | {p50:.1?} | {p99:.1?} |",
            100.0 * ok as f64 / calls as f64
        );
    }
}

/// Sends one search; `Some` once the stack's breaker refuses it.
async fn stack_breaker_open(stack: &Client<StackService>) -> Option<BreakerState> {
    match stack.search(search()).await {
        Err(error) if error.kind() == ErrorKind::CircuitOpen => Some(BreakerState::Open),
        _ => None,
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = faults
}
criterion_main!(benches);
