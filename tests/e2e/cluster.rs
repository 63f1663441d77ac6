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

/// The node the test freezes and crashes; calls go to node 0.
const VICTIM: usize = 2;

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
    call(&setup, DeleteCollectionBuilder::new(&collection).into())
        .await
        .expect("collection deleted");
}
