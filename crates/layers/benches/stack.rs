//! What each of the deadline, attempt-timeout and health-gate layers adds to a call that
//! succeeds at once, and what the whole recommended stack (deadline → retry → health gate →
//! breaker → attempt timeout) adds, against a bare no-op service and against tower-resilience's
//! retry + circuit breaker stack, measured in the same run.
//!
//! Every call is driven by hand (`poll_ready`, `call`, one `poll` with a no-op waker), so the
//! figures hold the middleware's own cost and nothing of an executor.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-layers cargo bench -p qdrant-tower-layers --bench stack`

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use qdrant_tower_layers::{
    AttemptTimedOut, AttemptTimeoutLayer, Breaker, BreakerConfig, CircuitOpen, Classify,
    DeadlineExceeded, DeadlineLayer, ErrorKind, HealthCheck, HealthConfig, HealthGateLayer,
    RequestInfo, RetryLayer, RetryPolicy, SharedDuration, Unhealthy,
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder};
use tower_resilience::circuitbreaker::CircuitBreakerLayer as TrBreaker;
use tower_resilience::retry::RetryLayer as TrRetry;

#[derive(Debug, Clone)]
#[allow(dead_code)]
enum E {
    Deadline(DeadlineExceeded),
    Attempt(AttemptTimedOut),
    Unhealthy(Unhealthy),
    Open(CircuitOpen),
}

impl Classify for E {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }
}

macro_rules! from {
    ($($t:ident => $v:ident),*) => {$(impl From<$t> for E { fn from(e: $t) -> Self { E::$v(e) } })*};
}
from!(DeadlineExceeded => Deadline, AttemptTimedOut => Attempt, Unhealthy => Unhealthy, CircuitOpen => Open);

/// A search that can carry its deadline, as `VectorRequest` does.
#[derive(Debug, Clone, Copy)]
struct Search {
    deadline: Option<Instant>,
}

const SEARCH: Search = Search { deadline: None };

impl RequestInfo for Search {
    fn operation(&self) -> &'static str {
        "search"
    }
    fn collection(&self) -> Option<&str> {
        Some("docs")
    }
    fn is_idempotent(&self) -> bool {
        true
    }
    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
    fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }
}

type Noop = tower::util::ServiceFn<fn(Search) -> Ready<Result<(), E>>>;

fn noop() -> Noop {
    tower::service_fn(|_| ready(Ok(())))
}

/// One call: `poll_ready`, `call`, and one `poll`, which must finish it.
#[inline(always)]
fn drive<S, T, Er>(svc: &mut S, cx: &mut Context<'_>) -> bool
where
    S: Service<Search, Response = T, Error = Er>,
{
    if svc.poll_ready(cx).is_pending() {
        unreachable!("every service here is always ready");
    }
    let future = pin!(svc.call(SEARCH));
    match future.poll(cx) {
        Poll::Ready(result) => result.is_ok(),
        Poll::Pending => unreachable!("every call here finishes at once"),
    }
}

fn bench_one<S, T, Er>(c: &mut Criterion, name: &str, mut svc: S)
where
    S: Service<Search, Response = T, Error = Er>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(drive(&mut svc, &mut cx), "{name}: the call must succeed");
    c.bench_function(name, |b| {
        b.iter(|| black_box(drive(black_box(&mut svc), &mut cx)))
    });
}

fn health_check() -> HealthCheck {
    // The prober task never runs (the runtime is not driven): the check stays healthy.
    HealthCheck::spawn(HealthConfig::production(), || async {
        Ok::<(), String>(())
    })
    .unwrap()
}

fn success_path(c: &mut Criterion) {
    // Deadlines and timeouts arm Tokio timers, and the health check spawns its prober: both
    // need a runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let health = health_check();
    let breaker = || Breaker::new("qdrant", BreakerConfig::default()).unwrap();

    bench_one(c, "stack/bare", noop());
    bench_one(
        c,
        "stack/deadline",
        DeadlineLayer::new(Duration::from_secs(30)).layer(noop()),
    );
    bench_one(
        c,
        "stack/attempt_timeout",
        AttemptTimeoutLayer::new(Duration::from_secs(10)).layer(noop()),
    );
    bench_one(
        c,
        "stack/health_gate",
        HealthGateLayer::new(health.clone()).layer(noop()),
    );

    // Ours: the whole recommended stack, with and without the retry budget.
    for (name, policy) in [
        ("stack/full", RetryPolicy::default()),
        (
            "stack/full_without_budget",
            RetryPolicy::default().without_budget(),
        ),
    ] {
        let svc = ServiceBuilder::new()
            .layer(DeadlineLayer::new(Duration::from_secs(30)))
            .layer(RetryLayer::new(policy).unwrap())
            .layer(HealthGateLayer::new(health.clone()))
            .layer(breaker().layer())
            .layer(AttemptTimeoutLayer::new(Duration::from_secs(10)))
            .service(noop());
        bench_one(c, name, svc);
    }

    // The whole stack as `QdrantStack` builds it: reloadable deadline and attempt timeout
    // (shared durations) — what hot reload costs per call.
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::shared(SharedDuration::new(
            Duration::from_secs(30),
        )))
        .layer(RetryLayer::new(RetryPolicy::default()).unwrap())
        .layer(HealthGateLayer::new(health.clone()))
        .layer(breaker().layer())
        .layer(AttemptTimeoutLayer::shared(SharedDuration::new(
            Duration::from_secs(10),
        )))
        .service(noop());
    bench_one(c, "stack/full_reloadable", svc);

    // Ours, retry + breaker only: the like-for-like comparison with tower-resilience.
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::default()).unwrap())
        .layer(breaker().layer())
        .service(noop());
    bench_one(c, "stack/retry_breaker", svc);

    // tower-resilience 0.13: retry (3 attempts, exponential) over its default breaker.
    let svc = ServiceBuilder::new()
        .layer(
            TrRetry::<Search, (), _>::builder()
                .max_attempts(3)
                .exponential_backoff(Duration::from_millis(100))
                .build(),
        )
        .layer(TrBreaker::builder().build().unwrap())
        .service(noop());
    bench_one(c, "stack/tower_resilience_retry_breaker", svc);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = success_path
}
criterion_main!(benches);
