//! Degraded modes end to end on the embedded server: fallbacks marked on the answer (stale,
//! secondary, computed, static), the write-behind queue (queued in order, replayed when Qdrant
//! is back, full, dead letters, a torn tail), and both seen through the admin API.

use std::time::Duration;

use qdrant_tower::config::StackConfig;
use qdrant_tower::fallback::FallbackLayer;
use qdrant_tower::qdrant::{
    CountPointsBuilder, CountResponse, CountResult, DeletePointsBuilder, GetPointsBuilder,
    PointStruct, PointsIdsList, SearchPointsBuilder, SearchResponse, UpsertPoints,
    UpsertPointsBuilder,
};
use qdrant_tower::{
    ErrorKind, FallbackSource, Payload, Profile, QdrantStack, VectorOp, VectorResponse, Written,
};
use qdrant_tower_testkit::TestServer;
use qdrant_tower_testkit::faults::{Fault, FaultRule, Rpc};
use serde_json::json;

use crate::backend::collection_with_a_point;
use crate::capture::http;

fn config(server: &TestServer) -> StackConfig {
    let mut config = StackConfig::for_profile(Profile::Testing);
    config.endpoints = vec![server.url()];
    config.breaker.open_wait = Duration::from_millis(200);
    config
}

fn search(x: f32) -> SearchPointsBuilder {
    SearchPointsBuilder::new("docs", vec![x, 1.0], 10)
}

fn point(id: u64, n: i64) -> PointStruct {
    PointStruct::new(
        id,
        vec![1.0, id as f32],
        Payload::try_from(json!({ "n": n })).unwrap(),
    )
}

fn payload_n(got: &qdrant_tower::qdrant::GetResponse, id: u64) -> Option<i64> {
    use qdrant_tower::qdrant::point_id::PointIdOptions;
    use qdrant_tower::qdrant::value::Kind;
    got.result
        .iter()
        .find(|p| {
            p.id.as_ref().and_then(|i| i.point_id_options.clone()) == Some(PointIdOptions::Num(id))
        })
        .and_then(|p| match p.payload.get("n")?.kind.as_ref()? {
            Kind::IntegerValue(n) => Some(*n),
            _ => None,
        })
}

/// Upserts the server received carrying point `id` with payload `n`.
fn sent_with(server: &TestServer, id: u64, n: i64) -> usize {
    server.calls().count_where(|call| {
        call.message::<UpsertPoints>().is_some_and(|upsert| {
            upsert.points.iter().any(|p| {
                p.id == Some(id.into())
                    && p.payload.get("n").and_then(|v| v.as_integer()) == Some(n)
            })
        })
    })
}

#[tokio::test]
async fn a_failed_read_is_answered_stale_from_the_cache_marked_with_its_age() {
    let server = TestServer::start().await.unwrap();
    let mut config = config(&server);
    config.cache.collections = vec!["docs".into()];
    config.cache.ttl = Duration::from_millis(100);
    config.fallback.stale = true;
    let stack = QdrantStack::builder().config(config).build().unwrap();
    let client = stack.client();
    collection_with_a_point(&client, "docs").await;

    let fresh = client.search(search(1.0)).await.unwrap();
    assert!(fresh.is_fresh() && fresh.fallback().is_none());
    // Past the TTL the entry is no longer served fresh; Qdrant now fails.
    tokio::time::sleep(Duration::from_millis(250)).await;
    server.set_faults(FaultRule::new(Fault::unavailable()).rpc(Rpc::Search));
    let stale = client.search(search(1.0)).await.unwrap();
    let mark = stale.fallback().expect("marked as a fallback");
    assert_eq!(mark.source, FallbackSource::Stale);
    assert_eq!(mark.cause, ErrorKind::Unavailable);
    assert!(
        mark.age.unwrap() >= Duration::from_millis(250),
        "its age: {:?}",
        mark.age
    );
    assert_eq!(stale.result, fresh.result, "the last good answer");
    assert_eq!(
        server.calls().count(Rpc::Search, "docs"),
        2,
        "Qdrant was asked"
    );

    // Through the untyped service the marker is the response variant itself.
    let raw = stack.client().call(search(1.0)).await.unwrap();
    assert!(!raw.is_fresh());
    assert_eq!(raw.fallback().unwrap().source, FallbackSource::Stale);

    // A read never answered before has no stale answer: the error stands.
    let error = client.search(search(7.0)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    // A kind the fallback is not configured for is not hidden.
    server.set_faults(FaultRule::new(Fault::invalid_argument()).rpc(Rpc::Search));
    let error = client.search(search(1.0)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
}

#[tokio::test]
async fn sources_are_tried_in_order_secondary_computed_static_and_writes_never_fall_back() {
    let prometheus = qdrant_tower::observe::prometheus().unwrap();
    let primary = TestServer::start().await.unwrap();
    let secondary = TestServer::start().await.unwrap();
    let second = QdrantStack::builder()
        .config(config(&secondary))
        .build()
        .unwrap();
    collection_with_a_point(&second.client(), "docs").await;
    let fallback = FallbackLayer::new()
        .secondary(second.service())
        .computed(|request, error| {
            // Counts are estimated as zero while Qdrant is away; nothing else is computed.
            (request.op().operation() == "count").then(|| {
                assert_eq!(error.kind(), ErrorKind::CircuitOpen);
                VectorResponse::Count(CountResponse {
                    result: Some(CountResult { count: 0 }),
                    ..Default::default()
                })
            })
        })
        .static_response(VectorResponse::Search(SearchResponse::default()));
    let stack = QdrantStack::builder()
        .config(config(&primary))
        .fallback(fallback)
        .build()
        .unwrap();
    let client = stack.client();
    collection_with_a_point(&client, "docs").await;

    stack.breaker().force_open();
    let answer = client.search(search(1.0)).await.unwrap();
    let mark = answer.fallback().expect("marked");
    assert_eq!(
        (mark.source, mark.cause),
        (FallbackSource::Secondary, ErrorKind::CircuitOpen)
    );
    assert_eq!(answer.result.len(), 1, "the secondary's point");
    assert_eq!(secondary.calls().count(Rpc::Search, "docs"), 1);
    assert_eq!(primary.calls().count(Rpc::Search, "docs"), 0, "never sent");

    // The secondary fails too: a count is computed, a search gets the static answer.
    secondary.set_faults(FaultRule::new(Fault::unavailable()).reads());
    let counted = client.count(CountPointsBuilder::new("docs")).await.unwrap();
    assert_eq!(
        counted.fallback().map(|m| m.source),
        Some(FallbackSource::Computed)
    );
    assert_eq!(counted.result.unwrap().count, 0);
    let empty = client.search(search(1.0)).await.unwrap();
    assert_eq!(
        empty.fallback().map(|m| m.source),
        Some(FallbackSource::Static)
    );
    assert!(empty.result.is_empty());
    // No source answers a get: the breaker's error stands.
    let error = client
        .get(GetPointsBuilder::new("docs", vec![1.into()]))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CircuitOpen);
    // A write is never answered by a fallback.
    let error = client
        .upsert(UpsertPointsBuilder::new("docs", vec![point(5, 5)]))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CircuitOpen);

    stack.breaker().reset();
    let fresh = client.search(search(1.0)).await.unwrap();
    assert!(fresh.is_fresh());

    // Counted (the recorder is the test binary's: at least ours).
    let text = prometheus.render();
    for (name, labels) in [
        (
            "qdrant_fallbacks_total",
            vec!["source=\"secondary\"", "cause=\"circuit_open\""],
        ),
        (
            "qdrant_fallbacks_total",
            vec!["source=\"computed\"", "cause=\"circuit_open\""],
        ),
        (
            "qdrant_fallbacks_total",
            vec!["source=\"static\"", "cause=\"circuit_open\""],
        ),
        (
            "qdrant_fallback_misses_total",
            vec!["cause=\"circuit_open\""],
        ),
    ] {
        let line = text
            .lines()
            .find(|line| {
                line.starts_with(&format!("{name}{{")) && labels.iter().all(|l| line.contains(l))
            })
            .unwrap_or_else(|| panic!("{name} {labels:?} in\n{text}"));
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value >= 1.0, "{line}");
    }
}

fn queue_config(server: &TestServer, dir: &std::path::Path) -> StackConfig {
    let mut config = config(server);
    config.queue.collections = vec!["docs".into()];
    config.queue.dir = Some(dir.to_owned());
    config.queue.replay_interval = Duration::from_millis(20);
    config
}

/// An embedded server with "docs" (point 1), and the ready stack over it queueing "docs".
async fn queued() -> (
    TestServer,
    tempfile::TempDir,
    QdrantStack,
    qdrant_tower::Client<qdrant_tower::StackService>,
) {
    let server = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stack = QdrantStack::builder()
        .config(queue_config(&server, dir.path()))
        .build()
        .unwrap();
    let client = stack.client();
    collection_with_a_point(&client, "docs").await;
    (server, dir, stack, client)
}

#[tokio::test]
async fn writes_are_queued_while_qdrant_fails_and_replayed_in_order_when_it_is_back() {
    let (server, _dir, stack, client) = queued().await;
    let queue = stack.queue().expect("configured");

    // Applied while Qdrant takes writes.
    let applied = client
        .upsert(UpsertPointsBuilder::new("docs", vec![point(2, 1)]).wait(true))
        .await
        .unwrap();
    assert!(matches!(applied, Written::Applied(_)));

    server.set_faults(FaultRule::new(Fault::unavailable()).writes());
    let first = client
        .upsert(UpsertPointsBuilder::new("docs", vec![point(3, 1)]).wait(true))
        .await
        .unwrap()
        .queued()
        .expect("queued, not applied");
    assert_eq!(first.cause, Some(ErrorKind::Unavailable));
    // Later writes to the collection wait behind it, unsent, in order.
    let second = client
        .upsert(UpsertPointsBuilder::new("docs", vec![point(3, 2)]).wait(true))
        .await
        .unwrap()
        .queued()
        .unwrap();
    let third = client
        .delete(DeletePointsBuilder::new("docs").points(PointsIdsList {
            ids: vec![2.into()],
        }))
        .await
        .unwrap()
        .queued()
        .unwrap();
    assert_eq!(second.cause, None, "queued behind the first");
    assert!(first.seq < second.seq && second.seq < third.seq);
    // (Replay may have tried the first again meanwhile; the ones behind it wait for it.)
    assert_eq!(sent_with(&server, 3, 2), 0, "the second was not sent");
    assert_eq!(
        server.calls().count(Rpc::DeletePoints, "docs"),
        0,
        "nor the third"
    );
    // Bad input is refused at once, never queued.
    let bad = client
        .upsert(UpsertPointsBuilder::new(
            "docs",
            vec![PointStruct::new(9, vec![f32::NAN, 1.0], Payload::new())],
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidRequest);

    // Reads do not see queued writes; the caller may ask for them.
    let got = client
        .get(GetPointsBuilder::new("docs", vec![3.into()]).with_payload(true))
        .await
        .unwrap();
    assert!(got.result.is_empty(), "not in Qdrant yet");
    let pending = queue.pending("docs").unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|(seq, op)| (*seq, op.operation()))
            .collect::<Vec<_>>(),
        vec![
            (first.seq, "upsert"),
            (second.seq, "upsert"),
            (third.seq, "delete")
        ]
    );
    let stats = queue.stats();
    assert_eq!(
        (stats.records, stats.pending.clone()),
        (3, vec![("docs".into(), 3)])
    );
    assert!(stats.waiting_on.is_some(), "replay waits: {stats:?}");

    // Qdrant is back: replay applies them in order.
    server.clear_faults();
    assert!(
        queue.drained(Duration::from_secs(10)).await,
        "{:?}",
        queue.stats()
    );
    let got = client
        .get(GetPointsBuilder::new("docs", vec![2.into(), 3.into()]).with_payload(true))
        .await
        .unwrap();
    assert_eq!(payload_n(&got, 3), Some(2), "the later upsert won");
    assert_eq!(
        payload_n(&got, 2),
        None,
        "the delete applied after the upsert"
    );
    let stats = queue.stats();
    assert_eq!(
        (stats.records, stats.replayed, stats.dead_letters),
        (0, 3, 0)
    );
    // And writes go straight to Qdrant again.
    let direct = client
        .upsert(UpsertPointsBuilder::new("docs", vec![point(4, 1)]).wait(true))
        .await
        .unwrap();
    assert!(matches!(direct, Written::Applied(_)));
}

#[tokio::test]
async fn a_full_queue_refuses_the_write_and_other_collections_are_not_queued() {
    qdrant_tower::observe::prometheus().unwrap();
    let server = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = queue_config(&server, dir.path());
    config.queue.max_records = 2;
    let stack = QdrantStack::builder().config(config).build().unwrap();
    let client = stack.client();
    collection_with_a_point(&client, "docs").await;
    collection_with_a_point(&client, "other").await;
    server.set_faults(FaultRule::new(Fault::unavailable()).writes());
    for id in [10, 11] {
        client
            .upsert(UpsertPointsBuilder::new("docs", vec![point(id, 1)]))
            .await
            .unwrap()
            .queued()
            .unwrap();
    }
    let full = client
        .upsert(UpsertPointsBuilder::new("docs", vec![point(12, 1)]))
        .await
        .unwrap_err();
    assert_eq!(full.kind(), ErrorKind::QueueFull);
    assert!(full.message().contains("queue is full"), "{full}");
    assert_eq!(
        stack.queue().unwrap().len(),
        2,
        "nothing dropped, nothing added"
    );
    // A collection not listed fails as it would without a queue.
    let error = client
        .upsert(UpsertPointsBuilder::new("other", vec![point(10, 1)]))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    server.clear_faults();
    assert!(
        stack
            .queue()
            .unwrap()
            .drained(Duration::from_secs(10))
            .await
    );
    let got = client
        .get(GetPointsBuilder::new(
            "docs",
            vec![10.into(), 11.into(), 12.into()],
        ))
        .await
        .unwrap();
    assert_eq!(
        got.result.len(),
        2,
        "the two acknowledged, not the refused one"
    );
}

#[tokio::test]
async fn a_write_qdrant_rejects_for_good_goes_to_the_dead_letters_seen_in_the_admin_api() {
    let (server, _dir, stack, client) = queued().await;
    server.set_faults(FaultRule::new(Fault::unavailable()).writes());
    // Three dimensions in a two-dimensional collection: only Qdrant knows it is wrong.
    let wrong = PointStruct::new(20, vec![1.0, 2.0, 3.0], Payload::new());
    let rejected = client
        .upsert(UpsertPointsBuilder::new("docs", vec![wrong]))
        .await
        .unwrap()
        .queued()
        .unwrap();
    client
        .upsert(UpsertPointsBuilder::new("docs", vec![point(21, 1)]))
        .await
        .unwrap()
        .queued()
        .unwrap();
    server.clear_faults();
    let queue = stack.queue().unwrap();
    assert!(queue.drained(Duration::from_secs(10)).await);
    let letters = queue.dead_letters().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].seq, rejected.seq);
    assert_eq!(letters[0].kind, "invalid_request");
    assert_eq!(letters[0].collection.as_deref(), Some("docs"));
    let VectorOp::Upsert(kept) = letters[0].request().unwrap() else {
        panic!("the rejected upsert is kept whole")
    };
    assert_eq!(kept.points[0].id, Some(20.into()));
    let got = client
        .get(GetPointsBuilder::new("docs", vec![21.into()]))
        .await
        .unwrap();
    assert_eq!(got.result.len(), 1, "replay went on after the dead letter");

    let addr = crate::admin::serve(stack.admin(qdrant_tower::admin::AdminConfig::default())).await;
    let stats = http(addr, "GET", "/queue", None, "").await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    let stats = stats.json();
    assert_eq!(stats["dead_letters"], 1);
    assert_eq!(stats["replayed"], 1);
    assert_eq!(stats["records"], 0);
    let letters = http(addr, "GET", "/queue/dead-letters", None, "")
        .await
        .json();
    assert_eq!(letters[0]["kind"], "invalid_request");
    assert!(
        letters[0]["error"].as_str().unwrap().contains("dim"),
        "Qdrant's reason: {letters}"
    );
}

#[tokio::test]
async fn a_torn_tail_is_cut_reported_and_not_replayed() {
    let server = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    {
        let stack = QdrantStack::builder()
            .config(queue_config(&server, dir.path()))
            .build()
            .unwrap();
        let client = stack.client();
        collection_with_a_point(&client, "docs").await;
        server.set_faults(FaultRule::new(Fault::unavailable()).writes());
        for id in [30, 31, 32] {
            client
                .upsert(UpsertPointsBuilder::new("docs", vec![point(id, 1)]))
                .await
                .unwrap()
                .queued()
                .unwrap();
        }
    }
    // A crash in the middle of the last append: its record is cut short.
    let log = dir.path().join("queue.log");
    let len = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    server.clear_faults();
    // The first queue lets go of the directory once its replay task sees it dropped.
    let stack = {
        let mut tries = 0;
        loop {
            match QdrantStack::builder()
                .config(queue_config(&server, dir.path()))
                .build()
            {
                Ok(stack) => break stack,
                Err(error) if tries < 100 => {
                    tries += 1;
                    assert!(error.to_string().contains("another"), "{error}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("{error}"),
            }
        }
    };
    let queue = stack.queue().unwrap();
    let damaged = queue.stats().damaged.expect("reported");
    assert!(damaged.2.contains("corrupt"), "{damaged:?}");
    assert!(queue.drained(Duration::from_secs(10)).await);
    let got = stack
        .client()
        .get(GetPointsBuilder::new(
            "docs",
            vec![30.into(), 31.into(), 32.into()],
        ))
        .await
        .unwrap();
    assert_eq!(
        got.result.len(),
        2,
        "the two whole records, not the torn one"
    );
}

#[tokio::test]
async fn one_queue_per_directory() {
    let server = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let _first = QdrantStack::builder()
        .config(queue_config(&server, dir.path()))
        .build()
        .unwrap();
    let second = QdrantStack::builder()
        .config(queue_config(&server, dir.path()))
        .build()
        .unwrap_err();
    assert!(
        second.to_string().contains("another write-behind queue"),
        "{second}"
    );
}

/// The same degraded modes against the backend (the real Qdrant at `QDRANT_URL` in CI) with
/// the outage made by the chaos proxy: a stale answer marked, writes queued while the proxy
/// refuses connections, replayed when it accepts them again, and the write Qdrant itself
/// rejects (a wrong dimension) dead-lettered.
#[tokio::test]
async fn stale_reads_queued_writes_and_dead_letters_against_the_backend_through_the_proxy() {
    use qdrant_tower::qdrant::{CreateCollectionBuilder, Distance, VectorParamsBuilder};
    use qdrant_tower_testkit::ChaosProxy;
    use tower::ServiceExt;

    let backend = crate::backend::Backend::start().await;
    let name = backend.unique("degraded");
    backend
        .direct()
        .oneshot(
            CreateCollectionBuilder::new(&name)
                .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
                .into(),
        )
        .await
        .expect("collection created");
    struct Cleanup<'a>(&'a crate::backend::Backend, String);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            self.0.drop_collections(std::slice::from_ref(&self.1));
        }
    }
    let _cleanup = Cleanup(&backend, name.clone());
    let direct = qdrant_tower::Client::new(backend.direct());
    direct
        .upsert(UpsertPointsBuilder::new(&name, vec![point(1, 1)]).wait(true))
        .await
        .unwrap();
    let proxy = ChaosProxy::start(backend.addr()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = StackConfig::for_profile(Profile::Testing);
    config.endpoints = vec![proxy.url()];
    config.api_key = std::env::var("QDRANT_API_KEY")
        .ok()
        .filter(|key| !key.is_empty())
        .map(qdrant_tower::config::Secret::new);
    config.breaker.open_wait = Duration::from_millis(200);
    config.cache.collections = vec![name.clone()];
    config.cache.ttl = Duration::from_millis(100);
    config.fallback.stale = true;
    config.queue.collections = vec![name.clone()];
    config.queue.dir = Some(dir.path().to_owned());
    config.queue.replay_interval = Duration::from_millis(20);
    let stack = QdrantStack::builder().config(config).build().unwrap();
    let client = stack.client();

    let search = || SearchPointsBuilder::new(&name, vec![1.0, 1.0], 10);
    let fresh = client.search(search()).await.unwrap();
    assert!(fresh.is_fresh());
    tokio::time::sleep(Duration::from_millis(250)).await;

    // Qdrant unreachable.
    proxy.refuse(true).await.unwrap();
    proxy.reset_all().await;
    let stale = client.search(search()).await.unwrap();
    let mark = stale.fallback().expect("a stale answer, marked");
    assert_eq!(mark.source, FallbackSource::Stale);
    assert_eq!(stale.result, fresh.result);
    let queued: Vec<u64> = {
        let mut seqs = Vec::new();
        for points in [
            vec![point(3, 3)],
            vec![PointStruct::new(4, vec![1.0, 2.0, 3.0], Payload::new())],
            vec![point(5, 5)],
        ] {
            let written = client
                .upsert(UpsertPointsBuilder::new(&name, points).wait(true))
                .await
                .unwrap();
            seqs.push(written.queued().expect("queued while Qdrant is away").seq);
        }
        seqs
    };

    // Qdrant reachable again: replay, in order; the wrong one is dead-lettered.
    proxy.refuse(false).await.unwrap();
    let queue = stack.queue().unwrap();
    assert!(
        queue.drained(Duration::from_secs(30)).await,
        "{:?}",
        queue.stats()
    );
    let got = direct
        .get(GetPointsBuilder::new(&name, vec![3.into(), 4.into(), 5.into()]).with_payload(true))
        .await
        .unwrap();
    assert_eq!((payload_n(&got, 3), payload_n(&got, 5)), (Some(3), Some(5)));
    assert_eq!(got.result.len(), 2, "not the rejected point 4");
    let letters = queue.dead_letters().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        (letters[0].seq, letters[0].kind.as_str()),
        (queued[1], "invalid_request")
    );
}

#[tokio::test]
async fn replay_waits_out_refusals_fixed_outside_the_write_rather_than_dead_lettering() {
    let (server, _dir, stack, client) = queued().await;
    server.set_faults(FaultRule::new(Fault::unavailable()).writes());
    client
        .upsert(UpsertPointsBuilder::new("docs", vec![point(40, 1)]))
        .await
        .unwrap()
        .queued()
        .unwrap();
    let queue = stack.queue().unwrap();
    for (fault, kind) in [
        (Fault::unauthenticated(), "unauthenticated"),
        (Fault::insufficient_storage(), "insufficient_storage"),
    ] {
        server.set_faults(FaultRule::new(fault).writes());
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let stats = queue.stats();
                if stats
                    .waiting_on
                    .as_deref()
                    .is_some_and(|w| w.contains(kind))
                {
                    return stats;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("replay tried and waits");
        assert_eq!((waited.records, waited.dead_letters), (1, 0), "{waited:?}");
    }
    server.clear_faults();
    assert!(queue.drained(Duration::from_secs(10)).await);
    assert_eq!(queue.stats().dead_letters, 0);
}
