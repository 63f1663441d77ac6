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
    use qdrant_tower::VectorResponse;
    use qdrant_tower::layers::retry::{KindPolicy, RetryLayer, RetryPolicy};
    use qdrant_tower::qdrant::GetPointsBuilder;

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

    #[tokio::test]
    async fn a_servers_timeout_expired_is_a_timeout_that_retry_retries_and_the_breaker_counts() {
        let server = TestServer::start().await.unwrap();
        seed(&server.url()).await;
        let breaker = breaker();
        let policy = fast_policy().with_kind(
            ErrorKind::Timeout,
            KindPolicy::constant(2, Duration::from_millis(10)),
        );
        let mut service = ServiceBuilder::new()
            .layer(RetryLayer::new(policy).unwrap())
            .layer(breaker.layer())
            .service(QdrantService::from_url(server.url()).unwrap());
        // What a tonic server (Qdrant, the testkit) answers when the grpc-timeout it was
        // sent runs out while the call is still being worked on.
        server.calls().reset();
        server.set_faults(
            FaultRule::new(Fault::status(tonic::Code::Cancelled, "Timeout expired"))
                .rpc(Rpc::Search),
        );
        let error = call(&mut service).await.unwrap_err();

        assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
        assert_eq!(
            server.calls().count(Rpc::Search, COLLECTION),
            2,
            "a timed-out search is retried (the table's 2 attempts)"
        );
        assert_eq!(error.attempts(), 2, "{error}");
        assert_eq!(
            breaker.snapshot().failures,
            2,
            "each timeout counts against the breaker"
        );
    }

    #[tokio::test]
    async fn a_write_applied_then_rejected_by_the_breaker_on_retry_still_says_maybe_sent() {
        let server = TestServer::start().await.unwrap();
        seed(&server.url()).await;
        // One failure opens the breaker, so the retry of the failed upsert is rejected
        // locally, unsent: the caller's error is the breaker's, yet the first attempt was
        // applied.
        let breaker = Breaker::new(
            "qdrant",
            BreakerConfig::default()
                .with_consecutive_failures(1)
                .with_open_wait(Duration::from_secs(60)),
        )
        .unwrap();
        let service = ServiceBuilder::new()
            .layer(RetryLayer::new(fast_policy()).unwrap())
            .layer(breaker.layer())
            .service(QdrantService::from_url(server.url()).unwrap());
        server.set_faults(
            FaultRule::new(Fault::apply_then_unavailable())
                .rpc(Rpc::Upsert)
                .first(1),
        );
        let point = PointStruct::new(11, vec![0.0, 1.0], Payload::new());
        let upsert = UpsertPointsBuilder::new(COLLECTION, vec![point]).wait(true);
        let error = service.clone().oneshot(upsert.into()).await.unwrap_err();

        assert_eq!(error.kind(), ErrorKind::CircuitOpen, "{error}");
        assert_eq!(error.attempts(), 2, "{error}");
        assert!(
            error.maybe_sent(),
            "the first attempt reached Qdrant, so the call may have been applied: {error}"
        );
        assert!(
            error
                .to_string()
                .contains("2 attempts; may have been applied"),
            "{error}"
        );
        server.clear_faults();
        breaker.reset();
        let got = service
            .oneshot(GetPointsBuilder::new(COLLECTION, vec![11.into()]).into())
            .await
            .unwrap();
        assert!(
            matches!(got, VectorResponse::Get(found) if found.result.len() == 1),
            "and it was applied"
        );
    }
}

/// Deadlines, server pushback, the retry budget and the health gate, over the wire.
mod deadlines_budget_health {
    use super::*;
    use std::sync::Mutex;
    use std::time::Instant;

    use qdrant_tower::layers::health::{HealthCheck, HealthConfig, HealthGateLayer, HealthStatus};
    use qdrant_tower::layers::retry::{Jitter, KindPolicy, RetryLayer, RetryPolicy};
    use qdrant_tower::layers::{AttemptTimeoutLayer, DeadlineLayer};
    use tower::Layer;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test]
    async fn a_rate_limited_call_is_never_retried_sooner_than_retry_after() {
        let server = TestServer::start().await.unwrap();
        seed(&server.url()).await;
        server.calls().reset();
        // Qdrant's rate limiter asks for 1 s (whole seconds); the policy alone would wait 10 ms.
        server.set_faults(
            FaultRule::new(Fault::rate_limited(Duration::from_secs(1)))
                .rpc(Rpc::Search)
                .first(1),
        );
        let policy = RetryPolicy::default().with_kind(
            ErrorKind::RateLimited,
            KindPolicy::constant(5, ms(10)).with_jitter(Jitter::None),
        );
        let mut service = ServiceBuilder::new()
            .layer(RetryLayer::new(policy).unwrap())
            .service(QdrantService::from_url(server.url()).unwrap());
        call(&mut service).await.expect("the retry succeeds");
        let times = server.calls().times(Rpc::Search, COLLECTION);
        assert_eq!(times.len(), 2);
        let gap = times[1] - times[0];
        assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_deadline_ends_the_call_at_once_with_the_servers_error() {
        let server = TestServer::start().await.unwrap();
        seed(&server.url()).await;
        server.calls().reset();
        server.set_faults(
            FaultRule::new(Fault::rate_limited(Duration::from_secs(3))).rpc(Rpc::Search),
        );
        let mut service = ServiceBuilder::new()
            .layer(DeadlineLayer::new(Duration::from_secs(1)))
            .layer(RetryLayer::new(RetryPolicy::default()).unwrap())
            .service(QdrantService::from_url(server.url()).unwrap());
        let start = Instant::now();
        let error = call(&mut service).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::RateLimited, "{error}");
        assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(server.calls().count(Rpc::Search, COLLECTION), 1);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn no_call_outlives_its_deadline_and_each_attempt_tells_the_server_its_time() {
        let server = TestServer::start().await.unwrap();
        seed(&server.url()).await;
        server.calls().reset();
        // The server never answers a search; record the grpc-timeout each attempt carried.
        let received = Arc::new(Mutex::new(Vec::new()));
        let seen = received.clone();
        server.set_faults(
            FaultRule::new(Fault::hang())
                .rpc(Rpc::Search)
                .when(move |call| {
                    let sent = call.grpc_timeout().expect("grpc-timeout is sent");
                    seen.lock().unwrap().push(sent);
                    true
                }),
        );
        let policy = RetryPolicy::default().with_kind(
            ErrorKind::Timeout,
            KindPolicy::constant(5, ms(20)).with_jitter(Jitter::None),
        );
        let deadline = ms(400);
        let mut service = ServiceBuilder::new()
            .layer(DeadlineLayer::new(deadline))
            .layer(RetryLayer::new(policy).unwrap())
            .layer(AttemptTimeoutLayer::new(ms(150)))
            .service(QdrantService::from_url(server.url()).unwrap());
        let start = Instant::now();
        let error = call(&mut service).await.unwrap_err();
        let took = start.elapsed();
        assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
        // Scheduling slack only: the layers cut every attempt, the server never answers.
        assert!(took < deadline + ms(150), "the call took {took:?}");
        let received = received.lock().unwrap().clone();
        // Attempts at ~0, ~170 and ~340 ms: 150, 150, then the ~60 ms left.
        assert!(received.len() >= 2, "{received:?}");
        assert!(received.iter().all(|t| *t <= ms(150)), "{received:?}");
        assert!(
            received.last().unwrap() < &ms(150),
            "the last attempt had less: {received:?}"
        );
        assert_eq!(
            server.calls().count(Rpc::Search, COLLECTION),
            received.len()
        );
    }

    #[tokio::test]
    async fn a_deadline_carried_by_the_request_bounds_the_call_without_a_deadline_layer() {
        let server = TestServer::start().await.unwrap();
        seed(&server.url()).await;
        server.set_faults(FaultRule::new(Fault::hang()).rpc(Rpc::Search));
        let service = ServiceBuilder::new()
            .layer(RetryLayer::new(RetryPolicy::default()).unwrap())
            .service(QdrantService::from_url(server.url()).unwrap());
        let start = Instant::now();
        let error = service
            .oneshot(search().with_timeout(ms(300)))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
        assert!(start.elapsed() < ms(300) + ms(150), "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn under_total_failure_the_budget_holds_attempts_to_a_fifth_more_than_requests_plus_the_floor()
     {
        let server = TestServer::start().await.unwrap();
        seed(&server.url()).await;
        server.calls().reset();
        server.set_faults(FaultRule::new(Fault::unavailable()).rpc(Rpc::Search));
        // The default budget (20 %, a floor of 10 retries/s over a 10 s window); three
        // attempts per request, 1 ms apart, so the test is fast.
        let policy = RetryPolicy::default().with_kind(
            ErrorKind::Unavailable,
            KindPolicy::constant(3, ms(1)).with_jitter(Jitter::None),
        );
        let layer = RetryLayer::new(policy).unwrap();
        let budget = layer.budget().expect("a budget by default").clone();
        let mut service = ServiceBuilder::new()
            .layer(layer)
            .service(QdrantService::from_url(server.url()).unwrap());
        let requests = 200;
        for _ in 0..requests {
            let error = call(&mut service).await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
        }
        let attempts = server.calls().count(Rpc::Search, COLLECTION);
        let floor = 10 * 10;
        let bound = requests * 12 / 10 + floor;
        println!(
            "{requests} requests under total failure: {attempts} attempts (bound {bound}, \
             without a budget {}), {} retries refused by the budget",
            requests * 3,
            budget.refusals()
        );
        assert!(
            attempts <= bound,
            "{attempts} attempts for {requests} requests (bound {bound})"
        );
        assert!(attempts > requests, "some retries were made: {attempts}");
        assert!(budget.refusals() > 0, "the budget refused retries");
        assert!(
            attempts < requests * 3,
            "without a budget: {}",
            requests * 3
        );
    }

    #[tokio::test]
    async fn the_health_gate_rejects_while_qdrant_is_unreachable_and_recovery_reopens_the_breaker()
    {
        let server = TestServer::start().await.unwrap();
        seed(&server.url()).await;
        let proxy = ChaosProxy::start(server.addr()).await.unwrap();
        let backend = QdrantService::builder()
            .endpoint(proxy.url())
            .connect_timeout(ms(200))
            .build()
            .unwrap();
        let config = HealthConfig::testing()
            .with_name("qdrant")
            .with_interval(ms(50))
            .with_probe_timeout(ms(200))
            .with_unhealthy_after(2)
            .with_healthy_after(1);
        let check =
            HealthCheck::for_service(config, backend.clone(), VectorRequest::health_check())
                .unwrap();
        let breaker = Breaker::new(
            "qdrant",
            BreakerConfig::default()
                .with_consecutive_failures(3)
                .with_open_wait(Duration::from_secs(60))
                .with_half_open_successes(1),
        )
        .unwrap();
        check.link_breaker(breaker.clone());
        let mut service = ServiceBuilder::new()
            .layer(HealthGateLayer::new(check.clone()))
            .layer(breaker.layer())
            .service(backend);
        call(&mut service).await.expect("healthy at first");

        // Qdrant becomes unreachable: new connections refused, open ones reset.
        proxy.refuse(true).await.unwrap();
        proxy.reset_all().await;
        let mut status = check.subscribe();
        tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| !s.is_healthy()))
            .await
            .expect("the prober sees the outage")
            .unwrap();
        let error = call(&mut service).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unhealthy, "{error}");
        assert!(!error.maybe_sent());
        assert!(error.to_string().contains("`qdrant`"), "{error}");

        // Calls that reach the breaker by another path (a stack without the gate, sharing the
        // breaker) find Qdrant unreachable and open it.
        let mut ungated = breaker
            .layer()
            .layer(QdrantService::from_url(proxy.url()).unwrap());
        for _ in 0..3 {
            let error = call(&mut ungated).await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
        }
        assert_eq!(breaker.state(), BreakerState::Open);

        proxy.refuse(false).await.unwrap();
        assert!(
            check.wait_healthy(Duration::from_secs(5)).await,
            "{:?}",
            check.snapshot()
        );
        assert_eq!(check.status(), HealthStatus::Healthy);
        assert_eq!(
            breaker.state(),
            BreakerState::HalfOpen,
            "the recovery moved the breaker on at once, not 60 s later"
        );
        call(&mut service).await.expect("the trial call succeeds");
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
