//! What a real Qdrant cluster answers when one of its peers is frozen or dead, as the caller of
//! `QdrantService` sees it.
//!
//! These need a real 3-node cluster and the `run-qdrant` directory it was started in, so the
//! test can freeze (SIGSTOP), crash (`run-qdrant kill`) and bring back (`run-qdrant restart`)
//! the node it is told to — the only processes it signals are that cluster's, by the pid files
//! `run-qdrant` wrote. `.ci/run` provides them:
//!
//! ```sh
//! ../shared/qdrant/run-qdrant start /tmp/cl --nodes 3 --api-key KEY
//! QDRANT_CLUSTER_DIR=/tmp/cl QDRANT_RUN_QDRANT=../shared/qdrant/run-qdrant QDRANT_API_KEY=KEY \
//!     cargo test --workspace --test e2e cluster::
//! ```
//!
//! Without `QDRANT_CLUSTER_DIR` the test returns at once, saying so (README lists it).
//!
//! Measured on Qdrant 1.18.3 (and read in its source): the node that received the call answers
//! for its peers. A peer that is down (connection refused) makes reads and writes that touch its
//! shards fail with `INTERNAL` ("Service internal error: 1 of 1 read operations failed: ...
//! Tonic status error ... unavailable"); a frozen peer keeps them waiting until the caller's
//! `grpc-timeout` runs out on the receiving node, which then answers `CANCELLED`
//! "Timeout expired" — a timeout, which the client must count as one.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use qdrant_tower::qdrant::{
    CountPointsBuilder, CreateCollectionBuilder, DeleteCollectionBuilder, Distance, PointStruct,
    SearchPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_tower::{ErrorKind, Payload, QdrantService, VectorError, VectorRequest, VectorResponse};
use tower::ServiceExt;

use crate::backend::client_of;

/// The node the tests freeze and crash; calls go to node 0.
const VICTIM: usize = 2;

/// The tests signal the same node: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cluster {
    dir: PathBuf,
    run_qdrant: PathBuf,
    urls: Vec<String>,
}

impl Cluster {
    fn from_env() -> Option<Cluster> {
        let dir = PathBuf::from(std::env::var_os("QDRANT_CLUSTER_DIR")?);
        let run_qdrant = std::env::var_os("QDRANT_RUN_QDRANT").map_or_else(
            || PathBuf::from("../shared/qdrant/run-qdrant"),
            PathBuf::from,
        );
        let nodes: usize = read(&dir.join("nodes")).parse().expect("a node count");
        let base: u16 = read(&dir.join("base_port")).parse().expect("a base port");
        assert!(
            nodes >= 3,
            "the cluster tests need 3 nodes, {dir:?} has {nodes}"
        );
        let urls = (0..nodes)
            .map(|i| format!("http://127.0.0.1:{}", base + 10 * i as u16))
            .collect();
        Some(Cluster {
            dir,
            run_qdrant,
            urls,
        })
    }

    fn client(&self, node: usize, timeout: Duration) -> QdrantService {
        client_of(&self.urls[node])
            .request_timeout(Some(timeout))
            .build()
            .expect("valid settings")
    }

    fn pid(&self, node: usize) -> String {
        read(&self.dir.join(format!("node{node}/pid")))
    }

    fn signal(&self, node: usize, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid(node)])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} node {node}");
    }

    fn run(&self, action: &str, node: usize) {
        let output = Command::new(&self.run_qdrant)
            .arg(action)
            .arg(&self.dir)
            .arg(node.to_string())
            .output()
            .expect("run-qdrant runs");
        assert!(
            output.status.success(),
            "run-qdrant {action} {node}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Resumes a frozen node however the test ends.
struct Frozen<'a>(&'a Cluster, usize);

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.0.signal(self.1, "-CONT");
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("{path:?}: {error}"))
        .trim()
        .to_owned()
}

fn search(collection: &str) -> VectorRequest {
    SearchPointsBuilder::new(collection, vec![1.0, 0.0], 3).into()
}

async fn call(
    service: &QdrantService,
    request: VectorRequest,
) -> Result<VectorResponse, VectorError> {
    tokio::time::timeout(Duration::from_secs(60), service.clone().oneshot(request))
        .await
        .expect("no call outlives its limit")
}

#[tokio::test]
async fn a_frozen_or_dead_peer_is_a_timeout_or_an_internal_error_never_a_cancellation() {
    let Some(cluster) = Cluster::from_env() else {
        eprintln!("QDRANT_CLUSTER_DIR is unset: no real cluster to test against, skipped");
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let setup = cluster.client(0, Duration::from_secs(30));
    let collection = format!("cluster_{}", std::process::id());
    // Three shards, one replica each: one lives on the victim, and node 0 must ask it.
    call(
        &setup,
        CreateCollectionBuilder::new(&collection)
            .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
            .shard_number(3)
            .replication_factor(1)
            .into(),
    )
    .await
    .expect("collection created");
    let points: Vec<_> = (0..30u64)
        .map(|id| PointStruct::new(id, vec![1.0, id as f32], Payload::new()))
        .collect();
    call(
        &setup,
        UpsertPointsBuilder::new(&collection, points)
            .wait(true)
            .into(),
    )
    .await
    .expect("points written");

    // A frozen peer: the receiving node waits for it until the call's own time runs out.
    let limit = Duration::from_millis(1500);
    let client = cluster.client(0, limit);
    {
        let _frozen = Frozen(&cluster, VICTIM);
        cluster.signal(VICTIM, "-STOP");
        for attempt in 0..3 {
            let started = Instant::now();
            let error = call(&client, search(&collection))
                .await
                .expect_err("a shard is frozen");
            let took = started.elapsed();
            eprintln!(
                "frozen peer, call {attempt}: {error} ({:?}) after {took:?}",
                error.code()
            );
            assert_eq!(
                error.kind(),
                ErrorKind::Timeout,
                "attempt {attempt}: {error}"
            );
            assert!(error.maybe_sent(), "{error}");
            assert!(
                took < limit + Duration::from_millis(500),
                "the call ends at its limit: {took:?}"
            );
        }
    }
    call(&client, search(&collection))
        .await
        .expect("the resumed peer answers again");

    // A dead peer: the receiving node answers at once, INTERNAL, which is transient and
    // counts against a breaker.
    cluster.run("kill", VICTIM);
    let error = call(&client, search(&collection))
        .await
        .expect_err("a shard is down");
    eprintln!("dead peer: {error}");
    assert_eq!(error.kind(), ErrorKind::Internal, "{error}");
    assert!(error.kind().is_transient() && error.kind().counts_as_failure());
    assert!(
        error.message().contains("read operations failed"),
        "Qdrant names the failed read: {error}"
    );

    // Back: every acknowledged point is there.
    cluster.run("restart", VICTIM);
    let deadline = Instant::now() + Duration::from_secs(30);
    let counted = loop {
        match call(
            &setup,
            CountPointsBuilder::new(&collection).exact(true).into(),
        )
        .await
        {
            Ok(VectorResponse::Count(counted)) => break counted,
            Ok(other) => panic!("unexpected answer {other:?}"),
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "the restarted peer serves its shard within 30 s: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(counted.result.map(|r| r.count), Some(30));
    // The restarted peer may still be catching up with consensus: a deletion can then time out
    // waiting for its commit (INTERNAL "Waiting for consensus operation commit failed", seen
    // in CI); it is retried until the cluster agrees, within a minute.
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(error) = call(&setup, DeleteCollectionBuilder::new(&collection).into()).await {
        assert!(
            error.kind().is_transient() && Instant::now() < deadline,
            "collection deleted within a minute of the restart: {error}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What a run under load saw.
#[derive(Default)]
struct Tally {
    calls: u64,
    failures: std::collections::BTreeMap<String, u64>,
    slowest: Duration,
}

impl Tally {
    fn add(&mut self, took: Duration, outcome: Result<(), ErrorKind>) {
        self.calls += 1;
        self.slowest = self.slowest.max(took);
        if let Err(kind) = outcome {
            *self.failures.entry(kind.to_string()).or_default() += 1;
        }
    }

    fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// The ready stack over the three nodes: a node killed with SIGKILL under a steady read and
/// write load is ejected, reads keep succeeding within their deadline on the other nodes,
/// the node comes back and returns to rotation, and no acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_under_load_is_ejected_and_returns_and_no_acknowledged_write_is_lost() {
    use qdrant_tower::QdrantStack;
    use qdrant_tower::config::{BalanceSetting, OutlierSettings, StackConfig};
    use qdrant_tower::qdrant::GetPointsBuilder;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let Some(cluster) = Cluster::from_env() else {
        eprintln!("QDRANT_CLUSTER_DIR is unset: no real cluster to test against, skipped");
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let setup = cluster.client(0, Duration::from_secs(30));
    let collection = format!("cluster_load_{}", std::process::id());
    // Every shard on every node: a read is served by whichever node receives it.
    call(
        &setup,
        CreateCollectionBuilder::new(&collection)
            .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
            .shard_number(3)
            .replication_factor(3)
            .write_consistency_factor(1)
            .into(),
    )
    .await
    .expect("collection created");
    call(
        &setup,
        UpsertPointsBuilder::new(
            &collection,
            vec![PointStruct::new(0, vec![1.0, 0.0], Payload::new())],
        )
        .wait(true)
        .into(),
    )
    .await
    .expect("first point written");

    let mut config = StackConfig::for_profile(qdrant_tower::Profile::Production);
    config.endpoints = cluster.urls.clone();
    config.api_key = std::env::var("QDRANT_API_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .map(qdrant_tower::config::Secret::new);
    config.deadline = Duration::from_secs(5);
    config.attempt_timeout = Duration::from_secs(2);
    config.retry.time_scale = 0.2;
    config.balance = Some(BalanceSetting::RoundRobin);
    let mut outlier = OutlierSettings::default();
    outlier.consecutive_failures = 2;
    outlier.base_ejection = Duration::from_secs(3);
    config.outlier = Some(outlier);
    let stack = QdrantStack::builder().config(config).build().unwrap();
    let client = stack.client();

    let running = Arc::new(AtomicBool::new(true));
    let writer = {
        let (client, running, collection) = (client.clone(), running.clone(), collection.clone());
        tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut acked = Vec::new();
            let mut id = 1u64;
            while running.load(Ordering::Relaxed) {
                let point = PointStruct::new(id, vec![1.0, id as f32], Payload::new());
                let started = Instant::now();
                let outcome = client
                    .upsert(UpsertPointsBuilder::new(&collection, vec![point]).wait(true))
                    .await;
                tally.add(
                    started.elapsed(),
                    outcome.as_ref().map(drop).map_err(|e| e.kind()),
                );
                if outcome.is_ok() {
                    acked.push(id);
                }
                id += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (tally, acked)
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (client, running, collection) =
                (client.clone(), running.clone(), collection.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while running.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let outcome = client
                        .search(SearchPointsBuilder::new(&collection, vec![1.0, 0.0], 3))
                        .await;
                    tally.add(started.elapsed(), outcome.map(drop).map_err(|e| e.kind()));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                tally
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(4)).await;
    let before_kill = stack.pool_stats()[VICTIM].calls;
    cluster.run("kill", VICTIM);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let ejected = stack.pool_stats()[VICTIM].ejections;
    cluster.run("restart", VICTIM);
    let at_restart = stack.pool_stats()[VICTIM].calls;
    tokio::time::sleep(Duration::from_secs(10)).await;
    running.store(false, Ordering::Relaxed);
    let (writes, acked) = writer.await.unwrap();
    let mut reads = Tally::default();
    for reader in readers {
        let tally = reader.await.unwrap();
        reads.calls += tally.calls;
        reads.slowest = reads.slowest.max(tally.slowest);
        for (kind, n) in tally.failures {
            *reads.failures.entry(kind).or_default() += n;
        }
    }
    let stats = stack.pool_stats();

    // Every acknowledged write is there, read through each node once the cluster settled.
    let mut lost = 0;
    let settle = Instant::now() + Duration::from_secs(30);
    for node in 0..cluster.urls.len() {
        let direct = qdrant_tower::Client::new(cluster.client(node, Duration::from_secs(10)));
        loop {
            let mut found = 0u64;
            let mut failed = None;
            for chunk in acked.chunks(500) {
                match direct
                    .get(GetPointsBuilder::new(
                        &collection,
                        chunk.iter().map(|&id| id.into()).collect::<Vec<_>>(),
                    ))
                    .await
                {
                    Ok(got) => found += got.result.len() as u64,
                    Err(error) => failed = Some(error),
                }
            }
            if failed.is_none() && found == acked.len() as u64 || Instant::now() > settle {
                lost = lost.max(acked.len() as u64 - found);
                if let Some(error) = failed {
                    panic!("node {node} cannot be read after recovery: {error}");
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    eprintln!(
        "under load, node {VICTIM} killed and restarted: reads {} calls, failures {:?}, slowest {:?}; \
         writes {} calls ({} acknowledged), failures {:?}, slowest {:?}; lost acknowledged writes: {lost}; \
         node {VICTIM}: ejected {ejected} time(s) while down, calls {before_kill} before the kill, \
         {at_restart} at restart, {} at the end",
        reads.calls,
        reads.failures,
        reads.slowest,
        writes.calls,
        acked.len(),
        writes.failures,
        writes.slowest,
        stats[VICTIM].calls,
    );
    assert_eq!(lost, 0, "no acknowledged write is lost");
    assert_eq!(
        reads.failed(),
        0,
        "reads kept succeeding: {:?}",
        reads.failures
    );
    assert!(
        reads.slowest <= Duration::from_secs(5) && writes.slowest <= Duration::from_secs(6),
        "every call ended within its deadline"
    );
    assert!(ejected >= 1, "the dead node was ejected");
    assert!(
        stats[VICTIM].calls > at_restart,
        "the restarted node is back in rotation"
    );
    assert!(acked.len() > 100, "the load ran: {} writes", acked.len());
    call(&setup, DeleteCollectionBuilder::new(&collection).into())
        .await
        .expect("collection deleted");
}

/// What Qdrant answers when a write cannot reach its `write_consistency_factor` (a replica's
/// node is dead) and a read with `read_consistency = all` cannot reach every replica, as the
/// caller sees it.
#[tokio::test]
async fn consistency_not_reached_is_classified() {
    use qdrant_tower::qdrant::{GetPointsBuilder, ReadConsistencyType};

    let Some(cluster) = Cluster::from_env() else {
        eprintln!("QDRANT_CLUSTER_DIR is unset: no real cluster to test against, skipped");
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let setup = cluster.client(0, Duration::from_secs(30));
    let collection = format!("cluster_consistency_{}", std::process::id());
    call(
        &setup,
        CreateCollectionBuilder::new(&collection)
            .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
            .shard_number(1)
            .replication_factor(3)
            .write_consistency_factor(3)
            .into(),
    )
    .await
    .expect("collection created");
    let point = |id: u64| PointStruct::new(id, vec![1.0, id as f32], Payload::new());
    call(
        &setup,
        UpsertPointsBuilder::new(&collection, vec![point(1)])
            .wait(true)
            .into(),
    )
    .await
    .expect("all three replicas up: written");

    cluster.run("kill", VICTIM);
    let client = cluster.client(0, Duration::from_secs(10));
    let write = call(
        &client,
        UpsertPointsBuilder::new(&collection, vec![point(2)])
            .wait(true)
            .into(),
    )
    .await;
    let read = call(
        &client,
        GetPointsBuilder::new(&collection, vec![1.into()])
            .read_consistency(qdrant_tower::qdrant::read_consistency::Value::Type(
                ReadConsistencyType::All as i32,
            ))
            .into(),
    )
    .await;
    cluster.run("restart", VICTIM);
    eprintln!("write, factor 3 with a replica dead: {write:?}");
    eprintln!("read, consistency all with a replica dead: {read:?}");
    // Measured on 1.18.3: the receiving node answers INTERNAL naming the dead peer, for the
    // write ("Service internal error: … tcp connect error") and for the read ("1 of 3 read
    // operations failed"): transient, and counted against the breaker.
    for (what, outcome) in [("write", write.map(drop)), ("read", read.map(drop))] {
        let error = outcome.expect_err("a replica the call needs is dead");
        assert_eq!(error.kind(), ErrorKind::Internal, "{what}: {error}");
        assert!(error.kind().is_transient() && error.kind().counts_as_failure());
        assert!(
            error.message().contains("Service internal error"),
            "{what}: {error}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while call(&setup, DeleteCollectionBuilder::new(&collection).into())
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the collection can be deleted again"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A 2-node cluster of the test's own (discovery removes a peer, which cannot rejoin): started
/// by `run-qdrant` in a temporary directory, stopped by it however the test ends.
struct OwnCluster {
    run_qdrant: PathBuf,
    dir: tempfile::TempDir,
    base: u16,
    key: String,
}

impl OwnCluster {
    fn start(run_qdrant: &std::path::Path, nodes: u16) -> OwnCluster {
        let key = std::env::var("QDRANT_API_KEY").unwrap_or_default();
        let dir = tempfile::tempdir().expect("a temporary directory");
        // A block of free ports (node i: gRPC P+10i, REST P+10i+1, p2p P+10i+2).
        let base = (0..50)
            .map(|k| 29334 + 100 * k)
            .find(|&base| {
                (0..nodes).all(|i| {
                    (0..3).all(|off| {
                        std::net::TcpListener::bind(("127.0.0.1", base + 10 * i + off)).is_ok()
                    })
                })
            })
            .expect("a free port block");
        let mut command = Command::new(run_qdrant);
        command.arg("start").arg(dir.path().join("c")).args([
            "--nodes",
            &nodes.to_string(),
            "--port",
            &base.to_string(),
        ]);
        if !key.is_empty() {
            command.args(["--api-key", &key]);
        }
        let output = command.output().expect("run-qdrant runs");
        let cluster = OwnCluster {
            run_qdrant: run_qdrant.to_owned(),
            dir,
            base,
            key,
        };
        assert!(
            output.status.success(),
            "run-qdrant start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        cluster
    }

    fn url(&self, node: u16) -> String {
        format!("http://127.0.0.1:{}", self.base + 10 * node)
    }

    /// One REST call to node 0 (plain HTTP/1.1; the test's only use of Qdrant's REST API
    /// besides discovery itself).
    fn rest(&self, method: &str, path: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.base + 1))
            .expect("node 0's REST port answers");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("a read timeout");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\napi-key: {}\r\n\
             Connection: close\r\nContent-Length: 0\r\n\r\n",
            self.key
        )
        .expect("the request is sent");
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .expect("the answer is read");
        answer
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = Command::new(&self.run_qdrant)
            .arg("stop")
            .arg(self.dir.path().join("c"))
            .output();
    }
}

#[tokio::test]
async fn discovery_adds_the_peers_of_a_seed_and_retires_one_that_leaves() {
    use qdrant_tower::client::discovery::Discovery;

    let Some(cluster) = Cluster::from_env() else {
        eprintln!("QDRANT_CLUSTER_DIR is unset: no real cluster to test against, skipped");
        return;
    };
    // Not the shared cluster, but starting two more nodes is load: not beside the timing tests.
    let _turn = ONE_AT_A_TIME.lock().await;
    let own = OwnCluster::start(&cluster.run_qdrant, 2);
    // run-qdrant's ports: REST is gRPC + 1, gRPC is p2p − 2.
    let service = client_of(&own.url(0))
        .discovery(Discovery::new().with_ports(1, -2))
        .build()
        .expect("valid settings");
    let report = service.discover().await.expect("node 0 lists its peers");
    eprintln!("discovery from node 0: {report:?}");
    assert_eq!(report.peers.len(), 2);
    assert_eq!(report.added, [own.url(1)]);
    let stats = service.pool_stats();
    assert_eq!(stats.len(), 2);
    assert!(stats.iter().all(|s| s.peer_id.is_some() && !s.retired));
    assert_ne!(stats[0].peer_id, stats[1].peer_id);
    // The calls spread over both nodes.
    for _ in 0..10 {
        call(&service, VectorRequest::health_check())
            .await
            .expect("both nodes answer");
    }
    let calls: Vec<u64> = service.pool_stats().iter().map(|s| s.calls).collect();
    assert!(calls.iter().all(|&c| c >= 3), "calls per node: {calls:?}");
    // A second round finds nothing new.
    let again = service.discover().await.expect("still listed");
    assert!(
        again.added.is_empty() && again.retired.is_empty(),
        "{again:?}"
    );
    // The ready stack from configuration: its first round runs as it starts.
    let config = qdrant_tower::config::ConfigLoader::new()
        .env_vars([
            ("QDRANT_URL", own.url(0)),
            ("QDRANT_API_KEY", own.key.clone()),
            ("QDRANT_TOWER__DISCOVERY__REST_PORT_OFFSET", "1".to_owned()),
            ("QDRANT_TOWER__DISCOVERY__GRPC_PORT_OFFSET", "-2".to_owned()),
        ])
        .load()
        .expect("a valid configuration");
    let stack = qdrant_tower::QdrantStack::builder()
        .config(config)
        .build()
        .expect("a stack");
    let deadline = Instant::now() + Duration::from_secs(15);
    while stack.pool_stats().len() < 2 {
        assert!(Instant::now() < deadline, "the stack discovers node 1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stack.pool_stats()[1].endpoint, own.url(1));

    // Node 1 leaves the cluster (it holds no shard, so Qdrant lets it go).
    let leaving = stats[1].peer_id.expect("node 1's peer id");
    let answer = own.rest("DELETE", &format!("/cluster/peer/{leaving}"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let report = service.discover().await.expect("node 0 lists its peers");
        if !report.retired.is_empty() || Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("discovery after node 1 left: {report:?}");
    assert_eq!(report.retired, [own.url(1)]);
    assert_eq!(report.peers.len(), 1);
    let before: Vec<u64> = service.pool_stats().iter().map(|s| s.calls).collect();
    for _ in 0..10 {
        call(&service, VectorRequest::health_check())
            .await
            .expect("node 0 answers");
    }
    let stats = service.pool_stats();
    assert!(stats[1].retired && !stats[0].retired);
    assert_eq!(
        stats[1].calls, before[1],
        "no call goes to a retired endpoint"
    );
    assert_eq!(stats[0].calls, before[0] + 10);
    // The removed node may not know it was removed (it can still list both peers): with it
    // as the first seed, node 0's more recent view (a later Raft commit) still decides.
    let stale_first = client_of(&own.url(1))
        .endpoint(own.url(0))
        .discovery(Discovery::new().with_ports(1, -2))
        .build()
        .expect("valid settings");
    let report = stale_first.discover().await.expect("node 0 answers");
    eprintln!("discovery with the removed node first: {report:?}");
    assert_eq!(report.asked, own.url(0));
    assert_eq!(report.retired, [own.url(1)]);
}

#[tokio::test]
async fn discovery_on_a_single_node_changes_nothing() {
    use qdrant_tower::client::discovery::Discovery;

    let Some(url) = std::env::var("QDRANT_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        eprintln!("QDRANT_URL is unset: the testkit has no REST API to list peers, skipped");
        return;
    };
    // .ci/run's single node (run-qdrant) has REST on gRPC + 1; Qdrant's defaults are −1.
    let rest_offset = std::env::var("QDRANT_REST_PORT_OFFSET")
        .ok()
        .and_then(|offset| offset.parse().ok())
        .unwrap_or(1);
    let service = client_of(&url)
        .discovery(Discovery::new().with_ports(rest_offset, -2))
        .build()
        .expect("valid settings");
    let report = service.discover().await.expect("a single node answers");
    assert!(
        report.peers.is_empty() && report.added.is_empty(),
        "{report:?}"
    );
    assert_eq!(service.pool_stats().len(), 1);
}
