//! What each of the deadline, attempt-timeout and health-gate layers adds to a call that
//! succeeds at once, and what the whole recommended stack (deadline → retry → health gate →
//! breaker → attempt timeout) adds, against a bare no-op service and against tower-resilience's
//! retry + circuit breaker stack, measured in the same run.
//!
//! Every call is driven by hand (`poll_ready`, `call`, one `poll` with a no-op waker), so the
//! figures hold the middleware's own cost and nothing of an executor.
//!
//! Each layer alone is measured too, with tower's own retry and timeout and tower-resilience's
//! breaker and retry alone, so that every figure has its ratio to the bare service from the
//! same run. After the timings, each service's allocations per call are counted (a counting
//! global allocator, `allocation-counter`) and written next to criterion's results
//! (`<criterion dir>/allocations.json`), where `benches/report.py` reads them for
//! BENCHMARKS.md.
//!
//! Run: `cargo bench -p qdrant-tower-layers --bench stack`

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Mutex;
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

impl std::fmt::Display for E {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// tower's timeout wants an error it can box.
impl std::error::Error for E {}

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

/// Allocations per call, by benchmark name.
static ALLOCATIONS: Mutex<Vec<(String, f64)>> = Mutex::new(Vec::new());

fn bench_one<S, T, Er>(c: &mut Criterion, name: &str, mut svc: S)
where
    S: Service<Search, Response = T, Error = Er>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(drive(&mut svc, &mut cx), "{name}: the call must succeed");
    c.bench_function(name, |b| {
        b.iter(|| black_box(drive(black_box(&mut svc), &mut cx)))
    });
    // After warm-up (lazily built state is there by now): the allocations of 1000 calls.
    const CALLS: u64 = 1000;
    let counted = allocation_counter::measure(|| {
        for _ in 0..CALLS {
            black_box(drive(&mut svc, &mut cx));
        }
    });
    let per_call = counted.count_total as f64 / CALLS as f64;
    ALLOCATIONS
        .lock()
        .unwrap()
        .push((name.to_owned(), per_call));
}

/// Writes the allocation counts where criterion writes its results.
fn write_allocations() {
    let dir = std::env::var_os("CRITERION_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| {
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
                });
            target.join("criterion")
        });
    let counts = ALLOCATIONS.lock().unwrap();
    let body: Vec<String> = counts
        .iter()
        .map(|(name, per_call)| format!("  \"{name}\": {per_call}"))
        .collect();
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("allocations.json");
    if let Err(error) = std::fs::write(&path, format!("{{\n{}\n}}\n", body.join(",\n"))) {
        eprintln!("cannot write {path:?}: {error}");
    }
    for (name, per_call) in counts.iter() {
        println!("allocations per call: {name}: {per_call}");
    }
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
        "stack/retry",
        RetryLayer::new(RetryPolicy::default())
            .unwrap()
            .layer(noop()),
    );
    bench_one(c, "stack/breaker", breaker().layer().layer(noop()));
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
    bench_one(
        c,
        "stack/tower_resilience_retry",
        TrRetry::<Search, (), _>::builder()
            .max_attempts(3)
            .exponential_backoff(Duration::from_millis(100))
            .build()
            .layer(noop()),
    );
    bench_one(
        c,
        "stack/tower_resilience_breaker",
        TrBreaker::builder().build().unwrap().layer(noop()),
    );

    // tower's own: its timeout, and its retry with a fixed number of attempts.
    bench_one(
        c,
        "stack/tower_timeout",
        tower::timeout::TimeoutLayer::new(Duration::from_secs(10)).layer(noop()),
    );
    bench_one(
        c,
        "stack/tower_retry",
        tower::retry::RetryLayer::new(Attempts(3)).layer(noop()),
    );
    write_allocations();
}

/// tower's retry policy in its simplest form: up to `n` attempts on any error, at once.
#[derive(Clone)]
struct Attempts(u32);

impl tower::retry::Policy<Search, (), E> for Attempts {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Search, result: &mut Result<(), E>) -> Option<Self::Future> {
        if result.is_err() && self.0 > 1 {
            self.0 -= 1;
            Some(ready(()))
        } else {
            None
        }
    }

    fn clone_request(&mut self, request: &Search) -> Option<Search> {
        Some(*request)
    }
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
