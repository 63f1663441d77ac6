//! What the circuit breaker adds to a call, against a bare no-op service and against
//! tower-resilience's circuit breaker, measured in the same run.
//!
//! Every call is driven by hand (`poll_ready`, `call`, one `poll` with a no-op waker), so the
//! figures hold the middleware's own cost and nothing of an executor.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-layers cargo bench -p qdrant-tower-layers --bench breaker`

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Barrier;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use qdrant_tower_layers::breaker::{Breaker, BreakerConfig, BreakerState, CircuitOpen};
use qdrant_tower_layers::{Classify, ErrorKind};
use tower::{Layer, Service};
use tower_resilience::circuitbreaker::CircuitBreakerLayer as TrLayer;

#[derive(Debug)]
enum E {
    Down,
    Open(#[allow(dead_code)] CircuitOpen),
}

impl Classify for E {
    fn kind(&self) -> ErrorKind {
        match self {
            E::Down => ErrorKind::Unavailable,
            E::Open(_) => ErrorKind::CircuitOpen,
        }
    }
}

impl From<CircuitOpen> for E {
    fn from(open: CircuitOpen) -> Self {
        E::Open(open)
    }
}

type Noop = tower::util::ServiceFn<fn(()) -> Ready<Result<(), E>>>;
type Failing = tower::util::ServiceFn<fn(()) -> Ready<Result<(), E>>>;

fn noop() -> Noop {
    tower::service_fn(|()| ready(Ok(())))
}

fn failing() -> Failing {
    tower::service_fn(|()| ready(Err(E::Down)))
}

/// One call: `poll_ready`, `call`, and one `poll`, which must finish it.
#[inline(always)]
fn drive<S, T, Er>(svc: &mut S, cx: &mut Context<'_>) -> bool
where
    S: Service<(), Response = T, Error = Er>,
{
    if svc.poll_ready(cx).is_pending() {
        unreachable!("every service here is always ready");
    }
    let future = pin!(svc.call(()));
    match future.poll(cx) {
        Poll::Ready(result) => result.is_ok(),
        Poll::Pending => unreachable!("every call here finishes at once"),
    }
}

/// One call, polling until it finishes: under contention tower-resilience's call can wait on
/// its mutex, held by the other thread.
#[inline(always)]
fn drive_spin<S, T, Er>(svc: &mut S, cx: &mut Context<'_>) -> bool
where
    S: Service<(), Response = T, Error = Er>,
{
    while svc.poll_ready(cx).is_pending() {
        std::hint::spin_loop();
    }
    let mut future = pin!(svc.call(()));
    loop {
        match future.as_mut().poll(cx) {
            Poll::Ready(result) => return result.is_ok(),
            Poll::Pending => std::hint::spin_loop(),
        }
    }
}

fn bench_single<S, T, Er>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut svc: S,
    expect_ok: bool,
) where
    S: Service<(), Response = T, Error = Er>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(
        drive(&mut svc, &mut cx),
        expect_ok,
        "{name}: unexpected outcome"
    );
    group.bench_function(name, |b| {
        b.iter(|| black_box(drive(black_box(&mut svc), &mut cx)))
    });
}

/// Two threads, each with its own clone of the service (sharing one breaker), each making one
/// call per iteration.
fn bench_contended<S, T, Er>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    svc: S,
) where
    S: Service<(), Response = T, Error = Er> + Clone + Send,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let barrier = Barrier::new(2);
            std::thread::scope(|scope| {
                let threads: Vec<_> = (0..2)
                    .map(|_| {
                        let mut svc = svc.clone();
                        let barrier = &barrier;
                        scope.spawn(move || {
                            let mut cx = Context::from_waker(Waker::noop());
                            barrier.wait();
                            let start = Instant::now();
                            for _ in 0..iters {
                                black_box(drive_spin(&mut svc, &mut cx));
                            }
                            start.elapsed()
                        })
                    })
                    .collect();
                threads
                    .into_iter()
                    .map(|t| t.join().unwrap())
                    .max()
                    .unwrap()
            })
        })
    });
}

fn ours(config: BreakerConfig) -> Breaker {
    Breaker::new("bench", config).unwrap()
}

fn tower_resilience_default() -> TrLayer {
    TrLayer::builder().build().unwrap()
}

fn tower_resilience_consecutive() -> TrLayer {
    TrLayer::builder().consecutive_failures(5).build().unwrap()
}

fn closed(c: &mut Criterion) {
    let mut group = c.benchmark_group("closed");
    bench_single(&mut group, "baseline_noop", noop(), true);
    bench_single(
        &mut group,
        "ours_default",
        ours(BreakerConfig::default()).layer().layer(noop()),
        true,
    );
    bench_single(
        &mut group,
        "ours_count_window_rate",
        ours(
            BreakerConfig::default()
                .with_failure_rate(0.5)
                .with_count_window(100),
        )
        .layer()
        .layer(noop()),
        true,
    );
    bench_single(
        &mut group,
        "ours_time_window_slow_calls",
        ours(
            BreakerConfig::default()
                .with_failure_rate(0.5)
                .with_slow_calls(Duration::from_secs(1), 0.5)
                .with_time_window(Duration::from_secs(10), 10),
        )
        .layer()
        .layer(noop()),
        true,
    );
    bench_single(
        &mut group,
        "tower_resilience_default",
        tower_resilience_default().layer(noop()),
        true,
    );
    bench_single(
        &mut group,
        "tower_resilience_consecutive",
        tower_resilience_consecutive().layer(noop()),
        true,
    );
    group.finish();
}

fn rejection(c: &mut Criterion) {
    let mut group = c.benchmark_group("rejection");
    let open = Duration::from_secs(24 * 3600);

    let tripped = ours(
        BreakerConfig::default()
            .with_consecutive_failures(1)
            .with_open_wait(open),
    );
    let mut svc = tripped.layer().layer(failing());
    drive(&mut svc, &mut Context::from_waker(Waker::noop()));
    assert_eq!(tripped.state(), BreakerState::Open);
    bench_single(&mut group, "ours_open", svc, false);

    let forced = ours(BreakerConfig::default());
    forced.force_open();
    bench_single(
        &mut group,
        "ours_forced_open",
        forced.layer().layer(noop()),
        false,
    );

    let layer = TrLayer::builder()
        .consecutive_failures(1)
        .wait_duration_in_open(open)
        .build()
        .unwrap();
    let mut svc = layer.layer(failing());
    drive(&mut svc, &mut Context::from_waker(Waker::noop()));
    bench_single(&mut group, "tower_resilience_open", svc, false);
    group.finish();
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("contended_2_threads");
    group.throughput(Throughput::Elements(2));
    bench_contended(&mut group, "baseline_noop", noop());
    bench_contended(
        &mut group,
        "ours_default",
        ours(BreakerConfig::default()).layer().layer(noop()),
    );
    bench_contended(
        &mut group,
        "tower_resilience_default",
        tower_resilience_default().layer(noop()),
    );
    group.finish();
}

/// What reading the clock costs, to judge keeping it off the closed path.
fn clock(c: &mut Criterion) {
    let mut group = c.benchmark_group("clock");
    group.bench_function("std_instant_now", |b| b.iter(|| black_box(Instant::now())));
    group.bench_function("tokio_instant_now", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()))
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    group.bench_function("tokio_instant_now_in_runtime", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = closed, rejection, contended, clock
}
criterion_main!(benches);
