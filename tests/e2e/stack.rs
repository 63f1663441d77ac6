//! The resilience layers in front of `QdrantService`, against the embedded server with its
//! fault injection and the chaos proxy: what the backend sees and what the caller gets.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use qdrant_tower::layers::breaker::{Breaker, BreakerConfig, BreakerState};
use qdrant_tower::qdrant::{
    CreateCollectionBuilder, Distance, PointStruct, SearchPointsBuilder, UpsertPointsBuilder,
    VectorParamsBuilder,
};
use qdrant_tower::{ErrorKind, Payload, QdrantService, VectorError, VectorRequest};
use qdrant_tower_testkit::faults::{Fault, FaultRule, Rpc};
use qdrant_tower_testkit::{ChaosProxy, TestServer};
use tokio::sync::broadcast;
use tower::{Service, ServiceBuilder, ServiceExt};

const COLLECTION: &str = "stack";
/// Short enough that the test waits it out for real, well under a second.
const OPEN_WAIT: Duration = Duration::from_millis(300);

fn breaker() -> Breaker {
    Breaker::new(
        "qdrant",
        BreakerConfig::default()
            .with_consecutive_failures(5)
            .with_open_wait(OPEN_WAIT)
            .with_half_open_trials(3)
            .with_half_open_successes(2),
    )
    .expect("a valid configuration")
}

async fn seed(url: &str) {
    let service = QdrantService::from_url(url).unwrap();
    let create = CreateCollectionBuilder::new(COLLECTION)
        .vectors_config(VectorParamsBuilder::new(2, Distance::Dot));
    service.clone().oneshot(create.into()).await.unwrap();
    let point = PointStruct::new(1, vec![1.0, 0.0], Payload::new());
    let upsert = UpsertPointsBuilder::new(COLLECTION, vec![point]).wait(true);
    service.oneshot(upsert.into()).await.unwrap();
}

fn search() -> VectorRequest {
    SearchPointsBuilder::new(COLLECTION, vec![1.0, 0.0], 1).into()
}

async fn call<S>(service: &mut S) -> Result<(), VectorError>
where
    S: Service<VectorRequest, Error = VectorError>,
{
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        service.ready().await?.call(search()).await
    })
    .await
    .expect("no call outlives its deadline");
    outcome.map(drop)
}

fn transitions(
    changes: &mut broadcast::Receiver<qdrant_tower::layers::breaker::StateChange>,
) -> Vec<(BreakerState, BreakerState)> {
    let mut seen = Vec::new();
    while let Ok(change) = changes.try_recv() {
        seen.push((change.from, change.to));
    }
    seen
}

/// Closed → Open after exactly the threshold, rejections that never reach the backend,
/// Half-open after the wait, Closed after the trial successes.
async fn opens_then_recovers<S>(
    service: &mut S,
    breaker: &Breaker,
    backend_calls: impl Fn() -> usize,
    failure: ErrorKind,
    recover: impl AsyncFnOnce(),
) where
    S: Service<VectorRequest, Error = VectorError>,
{
    let mut changes = breaker.subscribe();
    for attempt in 1..=5 {
        let error = call(service).await.expect_err("the backend is down");
        assert_eq!(error.kind(), failure, "attempt {attempt}: {error}");
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(backend_calls(), 5, "the backend saw exactly the threshold");

    for _ in 0..20 {
        let error = call(service).await.expect_err("the breaker is open");
        assert_eq!(error.kind(), ErrorKind::CircuitOpen, "{error}");
        assert!(!error.kind().is_transient());
    }
    assert_eq!(backend_calls(), 5, "rejected calls never reach the backend");

    recover().await;
    tokio::time::sleep(OPEN_WAIT + Duration::from_millis(50)).await;
    call(service).await.expect("the first trial call succeeds");
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    call(service).await.expect("the second trial call succeeds");
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(backend_calls(), 7);
    assert_eq!(
        transitions(&mut changes),
        [
            (BreakerState::Closed, BreakerState::Open),
            (BreakerState::Open, BreakerState::HalfOpen),
            (BreakerState::HalfOpen, BreakerState::Closed),
        ]
    );
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.rejections, 20, "{snapshot:?}");
}

#[tokio::test]
async fn breaker_opens_on_exactly_the_threshold_of_unavailable_answers_and_closes_on_recovery() {
    let server = TestServer::start().await.unwrap();
    seed(&server.url()).await;
    server.calls().reset();
    server.set_faults(FaultRule::new(Fault::unavailable()).rpc(Rpc::Search));

    let breaker = breaker();
    let mut service = ServiceBuilder::new()
        .layer(breaker.layer())
        .service(QdrantService::from_url(server.url()).unwrap());
    let calls = server.calls();
    opens_then_recovers(
        &mut service,
        &breaker,
        || calls.count(Rpc::Search, COLLECTION),
        ErrorKind::Unavailable,
        async || server.clear_faults(),
    )
    .await;
}

#[tokio::test]
async fn breaker_opens_while_the_server_is_unreachable_and_closes_when_it_is_back() {
    let server = TestServer::start().await.unwrap();
    seed(&server.url()).await;
    let proxy = ChaosProxy::start(server.addr()).await.unwrap();
    proxy.refuse(true).await.unwrap();

    // Count what the breaker lets through to the service: with the server unreachable the
    // backend itself sees nothing, so count one layer further in.
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    let breaker = breaker();
    let mut service = ServiceBuilder::new()
        .layer(breaker.layer())
        .map_request(move |request: VectorRequest| {
            counted.fetch_add(1, Ordering::SeqCst);
            request
        })
        .service(
            QdrantService::builder()
                .endpoint(proxy.url())
                .connect_timeout(Duration::from_secs(2))
                .build()
                .unwrap(),
        );
    opens_then_recovers(
        &mut service,
        &breaker,
        || attempts.load(Ordering::SeqCst),
        ErrorKind::Connect,
        async || proxy.refuse(false).await.unwrap(),
    )
    .await;
}

mod retry {
    use super::*;
    use qdrant_tower::layers::retry::{KindPolicy, RetryLayer, RetryPolicy};
    use qdrant_tower::qdrant::GetPointsBuilder;
    use qdrant_tower::{Classify, VectorResponse};

    /// The default table's kinds and attempts, with delays short enough to wait out for real.
    fn fast_policy() -> RetryPolicy {
        let ms = Duration::from_millis;
        RetryPolicy::default()
            .with_kind(
                ErrorKind::Unavailable,
                KindPolicy::exponential(3, ms(10), ms(50)),
            )
            .with_kind(
                ErrorKind::Connect,
                KindPolicy::exponential(3, ms(10), ms(50)),
            )
            .with_seed(7)
    }

    fn service(
        server: &TestServer,
    ) -> impl Service<VectorRequest, Response = VectorResponse, Error = VectorError> + Clone {
        ServiceBuilder::new()
            .layer(RetryLayer::new(fast_policy()).unwrap())
            .service(QdrantService::from_url(server.url()).unwrap())
    }

    #[tokio::test]
    async fn the_backend_sees_exactly_the_attempts_the_policy_allows() {
        let server = TestServer::start().await.unwrap();
        seed(&server.url()).await;
        let mut service = service(&server);

        // Two failures, then the third attempt succeeds: three calls reach the server.
        server.calls().reset();
        server.set_faults(
            FaultRule::new(Fault::unavailable())
                .rpc(Rpc::Search)
                .first(2),
        );
        call(&mut service)
            .await
            .expect("the third attempt succeeds");
        assert_eq!(server.calls().count(Rpc::Search, COLLECTION), 3);

        // Always failing: three attempts (the table's maximum), then the last error.
        server.calls().reset();
        server.set_faults(FaultRule::new(Fault::unavailable()).rpc(Rpc::Search));
        let error = call(&mut service).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
        assert_eq!(server.calls().count(Rpc::Search, COLLECTION), 3);

        // Not transient: one attempt.
        server.calls().reset();
        server.set_faults(FaultRule::new(Fault::invalid_argument()).rpc(Rpc::Search));
        let error = call(&mut service).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{error}");
        assert_eq!(server.calls().count(Rpc::Search, COLLECTION), 1);
    }

    #[tokio::test]
    async fn an_ambiguous_failure_is_retried_only_for_idempotent_requests() {
        let server = TestServer::start().await.unwrap();
        seed(&server.url()).await;
        let service = service(&server);

        // A collection creation (not idempotent) applied, then its connection dropped: the
        // caller gets the ambiguous error and the server saw it once.
        server.set_faults(FaultRule::new(Fault::apply_then_drop()).rpc(Rpc::CreateCollection));
        let create = CreateCollectionBuilder::new("once")
            .vectors_config(VectorParamsBuilder::new(2, Distance::Dot));
        let error = service.clone().oneshot(create.into()).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
        assert!(error.maybe_sent());
        assert_eq!(
            server.calls().count(Rpc::CreateCollection, "once"),
            1,
            "not sent twice"
        );

        // An upsert (idempotent) failing the same way is retried and lands once.
        server.set_faults(
            FaultRule::new(Fault::apply_then_drop())
                .rpc(Rpc::Upsert)
                .first(1),
        );
        let point = PointStruct::new(9, vec![0.0, 1.0], Payload::new());
        let upsert = UpsertPointsBuilder::new(COLLECTION, vec![point]).wait(true);
        service
            .clone()
            .oneshot(upsert.into())
            .await
            .expect("the retry succeeds");
        assert_eq!(
            server.calls().count(Rpc::Upsert, COLLECTION),
            2 + 1,
            "seeding upserted once"
        );
        server.clear_faults();
        let got = service
            .oneshot(GetPointsBuilder::new(COLLECTION, vec![9.into()]).into())
            .await
            .unwrap();
        assert!(matches!(got, VectorResponse::Get(found) if found.result.len() == 1));
    }
}
