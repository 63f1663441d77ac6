//! What each server-side fault looks like to a caller of `QdrantService`: the testkit server
//! with a fault plan installed, and the bare client pointed straight at it.
//!
//! Each test states the symptom the retry and breaker layers act on: the `ErrorKind`, the
//! `retry_after` hint, whether the request may have reached the server (`maybe_sent`), and
//! what the server really saw (its call log, the stored points). Network waits are bounded;
//! the only real time spent is a request timeout of a few hundred milliseconds.

use std::future::Future;
use std::time::Duration;

use qdrant_tower::qdrant::{
    CountPointsBuilder, CreateCollectionBuilder, Distance, GetPointsBuilder, PointId, PointStruct,
    SearchPointsBuilder, UpsertPoints, UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_tower::{ErrorKind, Payload, QdrantService, VectorError, VectorRequest, VectorResponse};
use qdrant_tower_testkit::TestServer;
use qdrant_tower_testkit::faults::{Fault, FaultPlan, FaultRule, Rpc};
use tokio::time::Instant;
use tower::ServiceExt;

const COLLECTION: &str = "books";
/// The request timeout where a test is about it.
const SHORT_TIMEOUT: Duration = Duration::from_millis(300);
/// The request timeout where a test is not about it, so a slow machine cannot turn the symptom
/// under test into a timeout.
const LONG_TIMEOUT: Duration = Duration::from_secs(5);

/// A server with an empty 2-dim collection, and a client of it with `timeout` per call.
async fn setup(timeout: Duration) -> (TestServer, QdrantService) {
    let server = TestServer::start().await.expect("testkit server starts");
    let client = QdrantService::builder()
        .endpoint(server.url())
        .request_timeout(Some(timeout))
        .build()
        .expect("valid settings");
    call(
        &client,
        CreateCollectionBuilder::new(COLLECTION)
            .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
            .into(),
    )
    .await
    .expect("collection created");
    server.calls().reset();
    (server, client)
}

/// Sends `request` once, bounded so a bug fails the test instead of stalling it.
async fn call(
    client: &QdrantService,
    request: VectorRequest,
) -> Result<VectorResponse, VectorError> {
    bounded(client.clone().oneshot(request)).await
}

async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("the call ends in time")
}

fn search() -> VectorRequest {
    SearchPointsBuilder::new(COLLECTION, vec![1.0, 0.0], 3).into()
}

fn upsert(id: u64) -> VectorRequest {
    let point = PointStruct::new(id, vec![1.0, 0.0], Payload::new());
    UpsertPointsBuilder::new(COLLECTION, vec![point])
        .wait(true)
        .into()
}

/// Whether point `id` is stored (asked with a fresh client, after the faults are cleared).
async fn stored(server: &TestServer, id: u64) -> bool {
    let client = QdrantService::builder()
        .endpoint(server.url())
        .request_timeout(Some(LONG_TIMEOUT))
        .build()
        .unwrap();
    match call(
        &client,
        GetPointsBuilder::new(COLLECTION, vec![PointId::from(id)]).into(),
    )
    .await
    {
        Ok(VectorResponse::Get(found)) => !found.result.is_empty(),
        other => panic!("get failed: {other:?}"),
    }
}

#[tokio::test]
async fn unavailable_is_an_unavailable_error_the_server_received() {
    let (server, client) = setup(LONG_TIMEOUT).await;
    server.set_faults(FaultRule::new(Fault::unavailable()).rpc(Rpc::Search));
    let error = call(&client, search()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.maybe_sent());
    assert_eq!(error.retry_after(), None);
    assert!(error.message().starts_with("Shard temporarily unavailable"));
    assert_eq!(server.calls().count(Rpc::Search, COLLECTION), 1);
}

#[tokio::test]
async fn retry_after_is_a_rate_limit_with_the_servers_hint() {
    let (server, client) = setup(LONG_TIMEOUT).await;
    server.set_faults(FaultRule::new(Fault::rate_limited(Duration::from_secs(3))));
    let error = call(&client, search()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RateLimited, "{error}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
    assert!(error.kind().is_transient());
}

#[tokio::test]
async fn a_full_disk_is_insufficient_storage_not_a_rate_limit() {
    let (server, client) = setup(LONG_TIMEOUT).await;
    server.set_faults(FaultRule::new(Fault::insufficient_storage()).writes());
    let error = call(&client, upsert(1)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InsufficientStorage, "{error}");
    assert_eq!(error.retry_after(), None);
    assert!(!error.kind().is_transient());
    assert!(call(&client, search()).await.is_ok(), "reads still pass");
}

#[tokio::test]
async fn apply_then_drop_is_an_ambiguous_connect_error_and_the_write_happened() {
    let (server, client) = setup(LONG_TIMEOUT).await;
    server.set_faults(
        FaultRule::new(Fault::apply_then_drop())
            .rpc(Rpc::Upsert)
            .first(1),
    );
    let error = call(&client, upsert(42)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
    assert!(
        error.maybe_sent(),
        "a broken connection cannot prove the write was not applied"
    );
    server.clear_faults();
    assert!(
        stored(&server, 42).await,
        "the write the caller saw fail was applied"
    );
    assert_eq!(server.calls().count(Rpc::Upsert, COLLECTION), 1);
    // The client's channel reconnects on its own.
    assert!(call(&client, upsert(43)).await.is_ok());
}

#[tokio::test]
async fn apply_then_unavailable_is_unavailable_and_the_write_happened() {
    let (server, client) = setup(LONG_TIMEOUT).await;
    server.set_faults(FaultRule::new(Fault::apply_then_unavailable()).rpc(Rpc::Upsert));
    let error = call(&client, upsert(7)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.maybe_sent());
    assert!(stored(&server, 7).await);
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_client_timeout() {
    let (server, client) = setup(SHORT_TIMEOUT).await;
    server.set_faults(FaultRule::new(Fault::hang()).rpc(Rpc::Search));
    let start = Instant::now();
    let error = call(&client, search()).await.unwrap_err();
    let took = start.elapsed();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(error.maybe_sent(), "the server got it");
    assert!(took >= SHORT_TIMEOUT && took < LONG_TIMEOUT, "{took:?}");
    assert_eq!(server.calls().count(Rpc::Search, COLLECTION), 1);
}

#[tokio::test]
async fn a_slow_server_under_the_timeout_answers_late_and_over_it_times_out() {
    let (server, client) = setup(SHORT_TIMEOUT).await;
    server.set_faults(FaultRule::new(Fault::delay(Duration::from_millis(100))).rpc(Rpc::Search));
    let start = Instant::now();
    assert!(call(&client, search()).await.is_ok());
    assert!(start.elapsed() >= Duration::from_millis(100));

    server.set_faults(FaultRule::new(Fault::delay(LONG_TIMEOUT)).rpc(Rpc::Search));
    let error = call(&client, search()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
}

#[tokio::test]
async fn a_rate_limit_turns_calls_past_the_budget_into_rate_limited_errors() {
    let (server, client) = setup(LONG_TIMEOUT).await;
    // 5 counts per 10 s per collection: a token back every 2 s.
    server.set_faults(FaultRule::rate_limit(5, Duration::from_secs(10)).rpc(Rpc::Count));
    let count = || CountPointsBuilder::new(COLLECTION).into();
    for n in 1..=5 {
        assert!(
            call(&client, count()).await.is_ok(),
            "call {n} is within budget"
        );
    }
    let error = call(&client, count()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RateLimited, "{error}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
    assert!(
        call(&client, search()).await.is_ok(),
        "searches are not limited"
    );
    assert_eq!(server.calls().count(Rpc::Count, COLLECTION), 6);
    assert_eq!(server.calls().faulted(Rpc::Count, COLLECTION), 1);
}

#[tokio::test]
async fn the_server_saw_each_attempt_once() {
    let (server, client) = setup(LONG_TIMEOUT).await;
    server.set_faults(
        FaultRule::new(Fault::internal())
            .rpc(Rpc::Search)
            .every_nth(2),
    );
    let mut kinds = Vec::new();
    for _ in 0..4 {
        kinds.push(
            call(&client, search())
                .await
                .err()
                .map(|error| error.kind()),
        );
    }
    assert_eq!(
        kinds,
        [
            None,
            Some(ErrorKind::Internal),
            None,
            Some(ErrorKind::Internal)
        ]
    );
    assert_eq!(
        server.calls().count(Rpc::Search, COLLECTION),
        4,
        "the bare service never retries"
    );
}

#[tokio::test]
async fn every_injected_status_reaches_the_client_as_its_error_kind() {
    bounded(async {
        let (server, client) = setup(LONG_TIMEOUT).await;
        let table = [
            (Fault::deadline_exceeded(), ErrorKind::Timeout),
            (Fault::internal(), ErrorKind::Internal),
            (Fault::invalid_argument(), ErrorKind::InvalidRequest),
            (Fault::not_found(), ErrorKind::NotFound),
            (Fault::permission_denied(), ErrorKind::PermissionDenied),
            (Fault::unauthenticated(), ErrorKind::Unauthenticated),
            (Fault::unavailable(), ErrorKind::Unavailable),
        ];
        let statuses = table.len();
        for (fault, kind) in table {
            let code = fault.code();
            server.set_faults(FaultRule::new(fault).rpc(Rpc::Search));
            let error = call(&client, search()).await.unwrap_err();
            assert_eq!(error.kind(), kind, "{error}");
            assert_eq!(error.code(), code, "the server's code is kept: {error}");
            assert!(error.message().ends_with("injected fault"), "{error}");
            assert!(error.maybe_sent(), "the server answered it: {error}");
            assert_eq!(error.retry_after(), None, "{error}");
        }
        assert_eq!(server.calls().faulted(Rpc::Search, COLLECTION), statuses);
    })
    .await;
}

#[tokio::test]
async fn a_dropped_connection_is_an_ambiguous_connect_error_though_nothing_was_applied() {
    bounded(async {
        let (server, client) = setup(LONG_TIMEOUT).await;
        server.set_faults(
            FaultRule::new(Fault::drop_connection())
                .rpc(Rpc::Upsert)
                .first(1),
        );
        let error = call(&client, upsert(42)).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
        assert!(
            error.maybe_sent(),
            "a broken connection cannot prove the write was not applied"
        );
        server.clear_faults();
        assert!(!stored(&server, 42).await, "this time it was not");
        assert_eq!(server.calls().count(Rpc::Upsert, COLLECTION), 1);
        // The client's channel reconnects on its own.
        assert!(call(&client, upsert(43)).await.is_ok());
        assert!(stored(&server, 43).await);
    })
    .await;
}

#[tokio::test]
async fn a_dropped_connection_fails_every_call_in_flight_on_it() {
    bounded(async {
        let (server, client) = setup(LONG_TIMEOUT).await;
        server.set_faults(
            FaultPlan::new()
                .rule(FaultRule::new(Fault::hang()).rpc(Rpc::Count))
                .rule(FaultRule::new(Fault::drop_connection()).rpc(Rpc::Search)),
        );
        // One connection: the hung count waits on the same one the search breaks.
        let hung = tokio::spawn({
            let client = client.clone();
            async move { call(&client, CountPointsBuilder::new(COLLECTION).into()).await }
        });
        let calls = server.calls();
        while calls.count(Rpc::Count, COLLECTION) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let error = call(&client, search()).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
        let error = hung.await.unwrap().unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::Connect,
            "the hung call fails with the connection, long before its timeout: {error}"
        );
        assert!(error.maybe_sent(), "{error}");
    })
    .await;
}

/// Which of `n` searches failed, and as what.
async fn failures(client: &QdrantService, n: usize) -> Vec<Option<ErrorKind>> {
    let mut failed = Vec::with_capacity(n);
    for _ in 0..n {
        failed.push(call(client, search()).await.err().map(|error| error.kind()));
    }
    failed
}

#[tokio::test]
async fn counting_triggers_fail_exactly_the_calls_they_name() {
    bounded(async {
        let (server, client) = setup(LONG_TIMEOUT).await;
        let down = Some(ErrorKind::Unavailable);
        let cases = [
            (
                "first(2)",
                FaultRule::new(Fault::unavailable()).first(2),
                [down, down, None, None, None, None],
            ),
            (
                "every_nth(3)",
                FaultRule::new(Fault::unavailable()).every_nth(3),
                [None, None, down, None, None, down],
            ),
            (
                "after(4)",
                FaultRule::new(Fault::unavailable()).after(4),
                [None, None, None, None, down, down],
            ),
        ];
        for (name, rule, expected) in cases {
            // Installing a plan starts its counts afresh.
            server.set_faults(rule.rpc(Rpc::Search));
            server.calls().reset();
            assert_eq!(failures(&client, 6).await, expected, "{name}");
            let failed = expected.iter().flatten().count();
            assert_eq!(server.calls().count(Rpc::Search, COLLECTION), 6, "{name}");
            assert_eq!(
                server.calls().faulted(Rpc::Search, COLLECTION),
                failed,
                "{name}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn a_seeded_probability_fails_the_same_calls_in_every_run() {
    bounded(async {
        let (server, client) = setup(LONG_TIMEOUT).await;
        let run = async |seed| {
            server.set_faults(
                FaultRule::new(Fault::internal())
                    .rpc(Rpc::Search)
                    .probability(0.5, seed),
            );
            server.calls().reset();
            let failed: Vec<bool> = failures(&client, 16)
                .await
                .into_iter()
                .map(|kind| {
                    assert!(matches!(kind, None | Some(ErrorKind::Internal)), "{kind:?}");
                    kind.is_some()
                })
                .collect();
            let count = failed.iter().filter(|failed| **failed).count();
            assert_eq!(server.calls().faulted(Rpc::Search, COLLECTION), count);
            failed
        };
        let first = run(7).await;
        assert!(
            first.contains(&true) && first.contains(&false),
            "some calls fail, not all: {first:?}"
        );
        assert_eq!(run(7).await, first, "the same seed fails the same calls");
        assert_ne!(run(8).await, first, "another seed, other calls");
    })
    .await;
}

#[tokio::test]
async fn a_predicate_faults_only_the_requests_whose_content_it_selects() {
    bounded(async {
        let (server, client) = setup(LONG_TIMEOUT).await;
        // A server that refuses batches of more than two points.
        server.set_faults(
            FaultRule::new(Fault::unavailable())
                .rpc(Rpc::Upsert)
                .when(|call| {
                    call.message::<UpsertPoints>()
                        .is_some_and(|upsert| upsert.points.len() > 2)
                }),
        );
        let batch = |ids: std::ops::Range<u64>| -> VectorRequest {
            let points = ids
                .map(|id| PointStruct::new(id, vec![1.0, 0.0], Payload::new()))
                .collect::<Vec<_>>();
            UpsertPointsBuilder::new(COLLECTION, points)
                .wait(true)
                .into()
        };
        assert!(call(&client, batch(1..3)).await.is_ok(), "two points pass");
        let error = call(&client, batch(10..13)).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
        assert!(
            call(&client, batch(3..5)).await.is_ok(),
            "two points pass again"
        );
        assert_eq!(server.calls().count(Rpc::Upsert, COLLECTION), 3);
        assert_eq!(server.calls().faulted(Rpc::Upsert, COLLECTION), 1);

        server.clear_faults();
        for id in [1, 2, 3, 4] {
            assert!(stored(&server, id).await, "point {id}");
        }
        for id in [10, 11, 12] {
            assert!(
                !stored(&server, id).await,
                "point {id} of the refused batch"
            );
        }
    })
    .await;
}
