//! End to end on loopback: search (top 10 of 10 000 points of 128 dimensions) and upsert
//! (batches of 100, `wait`) through four clients, at concurrency 1 and 64, in the same run:
//!
//! - `tonic`: qdrant-client's generated tonic client on one channel, nothing else — the floor;
//! - `qdrant_client`: qdrant-client's own `Qdrant` client (its compatibility check skipped:
//!   1.20 refuses a 1.18 server);
//! - `service`: this crate's `QdrantService` alone, through the typed `Client`;
//! - `stack`: the ready stack (`QdrantStack`, production profile) through the typed `Client`.
//!
//! The backend is the embedded testkit server, or the real Qdrant at `QDRANT_URL` (and
//! `QDRANT_API_KEY`) when it is set:
//!
//! ```sh
//! cargo bench --bench e2e                                  # the embedded server
//! QDRANT_URL=http://127.0.0.1:6334 cargo bench --bench e2e # a real Qdrant
//! ```
//!
//! To look at one case: `E2E_ONLY=search_c1` (or `upsert_c64`, …) runs only that operation and
//! concurrency, `E2E_CLIENTS=service,tonic` only those clients in that order (to profile one at
//! a time, or to swap their places in the interleaving), `E2E_PASS_ONLY=1` skips criterion's
//! runs and keeps the interleaved pass.
//!
//! Criterion reports the time per call (at concurrency 64: wall time over calls, so its
//! inverse is the throughput); its groups run one client after the other, so a client can meet
//! a server busier than the one before it did (a collection being optimised after upserts).
//! The table the bench prints after criterion comes from an interleaved pass instead: every
//! caller takes the clients in turn, every call is timed, and each client's mean, p50 and p99
//! are over its own calls — so each client's throughput as a share of the bare tonic client's
//! (the ratio of their mean times per call) compares like with like.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::percentile;
use criterion::{Criterion, criterion_group, criterion_main};
use qdrant_client::Qdrant;
use qdrant_client::qdrant::points_client::PointsClient;
use qdrant_tower::qdrant::{
    CreateCollectionBuilder, DeleteCollectionBuilder, Distance, PointStruct, SearchPoints,
    SearchPointsBuilder, UpsertPoints, UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_tower::{Client, Payload, QdrantService, QdrantStack, StackService};
use qdrant_tower_testkit::TestServer;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::transport::Channel;

const DIM: usize = 128;
const POINTS: u64 = 10_000;
const BATCH: u64 = 100;
const QUERIES: usize = 64;
/// The timed pass after criterion, per variant.
const PASS: Duration = Duration::from_secs(2);

/// A deterministic vector for `seed` (an LCG): the same data in every run and backend.
fn vector(seed: u64) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..DIM)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

fn points(first: u64, count: u64) -> Vec<PointStruct> {
    (first..first + count)
        .map(|id| PointStruct::new(id, vector(id), Payload::new()))
        .collect()
}

#[derive(Clone)]
struct ApiKey(Option<AsciiMetadataValue>);

impl Interceptor for ApiKey {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(key) = &self.0 {
            request.metadata_mut().insert("api-key", key.clone());
        }
        Ok(request)
    }
}

type Tonic = PointsClient<tonic::service::interceptor::InterceptedService<Channel, ApiKey>>;

/// One of the four clients under test.
#[derive(Clone)]
enum Under {
    Tonic(Tonic),
    QdrantClient(Arc<Qdrant>),
    Service(Client<QdrantService>),
    Stack(Client<StackService>),
}

impl Under {
    fn name(&self) -> &'static str {
        match self {
            Under::Tonic(_) => "tonic",
            Under::QdrantClient(_) => "qdrant_client",
            Under::Service(_) => "service",
            Under::Stack(_) => "stack",
        }
    }

    // Qdrant deprecates Search for Query; the issue's benchmark is the search.
    #[allow(deprecated)]
    async fn search(&self, request: SearchPoints) {
        let hits = match self {
            Under::Tonic(client) => client
                .clone()
                .search(request)
                .await
                .expect("a search")
                .into_inner()
                .result
                .len(),
            Under::QdrantClient(client) => client
                .search_points(request)
                .await
                .expect("a search")
                .result
                .len(),
            Under::Service(client) => client.search(request).await.expect("a search").result.len(),
            Under::Stack(client) => client.search(request).await.expect("a search").result.len(),
        };
        assert_eq!(hits, 10, "top 10");
    }

    async fn upsert(&self, request: UpsertPoints) {
        match self {
            Under::Tonic(client) => {
                client.clone().upsert(request).await.expect("an upsert");
            }
            Under::QdrantClient(client) => {
                client.upsert_points(request).await.expect("an upsert");
            }
            Under::Service(client) => {
                client.upsert(request).await.expect("an upsert");
            }
            Under::Stack(client) => {
                client.upsert(request).await.expect("an upsert");
            }
        }
    }
}

/// The backend: the embedded server, or the real one at `QDRANT_URL`.
struct Backend {
    url: String,
    key: Option<String>,
    collection: String,
    _server: Option<TestServer>,
}

impl Backend {
    async fn start() -> Backend {
        let key = std::env::var("QDRANT_API_KEY")
            .ok()
            .filter(|k| !k.is_empty());
        let (url, server) = match std::env::var("QDRANT_URL").ok().filter(|u| !u.is_empty()) {
            Some(url) => (url, None),
            None => {
                let server = TestServer::start().await.expect("the embedded server");
                (server.url(), Some(server))
            }
        };
        let backend = Backend {
            url,
            key,
            collection: format!("bench_e2e_{}", std::process::id()),
            _server: server,
        };
        let setup = backend.service();
        setup
            .create_collection(
                CreateCollectionBuilder::new(&backend.collection)
                    .vectors_config(VectorParamsBuilder::new(DIM as u64, Distance::Cosine)),
            )
            .await
            .expect("collection created");
        for first in (0..POINTS).step_by(1000) {
            setup
                .upsert(
                    UpsertPointsBuilder::new(&backend.collection, points(first, 1000)).wait(true),
                )
                .await
                .expect("points written");
        }
        backend
    }

    fn service(&self) -> Client<QdrantService> {
        Client::new(
            QdrantService::builder()
                .endpoint(&self.url)
                .api_key(self.key.clone())
                .build()
                .expect("valid settings"),
        )
    }

    async fn clients(&self) -> Vec<Under> {
        let channel = Channel::from_shared(self.url.clone())
            .expect("a URL")
            .connect()
            .await
            .expect("connected");
        let key = ApiKey(self.key.as_ref().map(|k| k.parse().expect("an ASCII key")));
        let tonic = PointsClient::with_interceptor(channel, key);
        let qdrant = Qdrant::from_url(&self.url)
            .api_key(self.key.clone())
            .skip_compatibility_check()
            .build()
            .expect("qdrant-client builds");
        let stack = QdrantStack::builder()
            .endpoint(&self.url)
            .api_key(self.key.clone())
            .build()
            .expect("the stack builds");
        vec![
            Under::Tonic(tonic),
            Under::QdrantClient(Arc::new(qdrant)),
            Under::Service(self.service()),
            Under::Stack(stack.client()),
        ]
    }
}

#[derive(Clone, Copy)]
enum Op {
    Search,
    Upsert,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Search => "search",
            Op::Upsert => "upsert",
        }
    }

    async fn run(self, under: &Under, collection: &str, n: u64) {
        match self {
            Op::Search => {
                let query = vector(1_000_000 + n % QUERIES as u64);
                under
                    .search(SearchPointsBuilder::new(collection, query, 10).build())
                    .await;
            }
            Op::Upsert => {
                let first = (n * BATCH) % POINTS;
                under
                    .upsert(
                        UpsertPointsBuilder::new(collection, points(first, BATCH))
                            .wait(true)
                            .build(),
                    )
                    .await;
            }
        }
    }
}

/// `calls` calls over `concurrency` tasks; the wall time.
async fn burst(
    under: &Under,
    op: Op,
    collection: &Arc<str>,
    concurrency: u64,
    calls: u64,
) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let under = under.clone();
            let collection = Arc::clone(collection);
            let share = calls / concurrency + u64::from(task < calls % concurrency);
            tokio::spawn(async move {
                for k in 0..share {
                    op.run(&under, &collection, task * 1_000_003 + k).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a caller");
    }
    started.elapsed()
}

/// The clients interleaved: `concurrency` callers for `PASS` per client, each caller taking
/// the clients in turn, every call timed — so every client meets the same server state (a
/// collection being optimised, a warm or cold cache). Per client: (calls, mean, p50, p99).
async fn pass(
    clients: &[Under],
    op: Op,
    collection: &Arc<str>,
    concurrency: u64,
) -> Vec<(usize, Duration, Duration, Duration)> {
    let timings = Arc::new(Mutex::new(vec![Vec::new(); clients.len()]));
    let end = Instant::now() + PASS * clients.len() as u32;
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let clients = clients.to_vec();
            let collection = Arc::clone(collection);
            let timings = Arc::clone(&timings);
            tokio::spawn(async move {
                let mut mine = vec![Vec::new(); clients.len()];
                let mut k = 0;
                while Instant::now() < end {
                    let which = (task + k) as usize % clients.len();
                    let call = Instant::now();
                    op.run(&clients[which], &collection, task * 1_000_003 + k)
                        .await;
                    mine[which].push(call.elapsed());
                    k += 1;
                }
                let mut all = timings.lock().unwrap();
                for (into, from) in all.iter_mut().zip(mine) {
                    into.extend(from);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a caller");
    }
    let mut all = timings.lock().unwrap().clone();
    all.iter_mut()
        .map(|timings| {
            timings.sort();
            let at = |p: f64| percentile(timings, p);
            let mean = timings.iter().sum::<Duration>() / timings.len() as u32;
            (timings.len(), mean, at(0.5), at(0.99))
        })
        .collect()
}

fn e2e(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let backend = runtime.block_on(Backend::start());
    let mut clients = runtime.block_on(backend.clients());
    // `E2E_CLIENTS=tonic,service` keeps only those (to profile one client at a time).
    if let Ok(keep) = std::env::var("E2E_CLIENTS") {
        clients = keep
            .split(',')
            .filter_map(|name| clients.iter().find(|under| under.name() == name.trim()))
            .cloned()
            .collect();
    }
    let collection: Arc<str> = backend.collection.as_str().into();
    let target = if backend._server.is_some() {
        "testkit"
    } else {
        "real"
    };
    let mut rows = Vec::new();
    let only = std::env::var("E2E_ONLY").unwrap_or_default();
    for op in [Op::Search, Op::Upsert] {
        for concurrency in [1u64, 64] {
            if !only.is_empty() && only != format!("{}_c{concurrency}", op.name()) {
                continue;
            }
            let mut group = c.benchmark_group(format!("e2e_{target}_{}_c{concurrency}", op.name()));
            // `E2E_PASS_ONLY=1`: the interleaved pass alone, without criterion's runs.
            let criterion_runs = std::env::var_os("E2E_PASS_ONLY").is_none();
            for under in clients.iter().filter(|_| criterion_runs) {
                group.bench_function(under.name(), |b| {
                    b.iter_custom(|iters| {
                        runtime.block_on(burst(under, op, &collection, concurrency, iters.max(1)))
                    });
                });
            }
            group.finish();
            let timed = runtime.block_on(pass(&clients, op, &collection, concurrency));
            for (under, (calls, mean, p50, p99)) in clients.iter().zip(timed) {
                rows.push((op.name(), concurrency, under.name(), calls, mean, p50, p99));
            }
        }
    }
    runtime.block_on(async {
        let _ = backend
            .service()
            .delete_collection(DeleteCollectionBuilder::new(&backend.collection))
            .await;
    });
    println!(
        "\n| backend | operation | concurrency | client | calls timed | mean | share of tonic's \
         throughput | p50 | p99 |"
    );
    println!("|---|---|---:|---|---:|---:|---:|---:|---:|");
    for &(op, concurrency, name, calls, mean, p50, p99) in &rows {
        let floor = rows
            .iter()
            .find(|r| r.0 == op && r.1 == concurrency && r.2 == "tonic")
            .map_or(mean, |r| r.4);
        println!(
            "| {target} | {op} | {concurrency} | {name} | {calls} | {mean:.1?} | {:.3} | \
             {p50:.1?} | {p99:.1?} |",
            floor.as_secs_f64() / mean.as_secs_f64()
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = e2e
}
criterion_main!(benches);
