//! The circuit breaker's behaviour, seen from outside: what the backend saw, what the caller
//! got, and when, on Tokio's paused clock.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use qdrant_tower_layers::breaker::{
    Breaker, BreakerConfig, BreakerRegistry, BreakerState, CircuitBreaker, CircuitOpen,
    TransitionReason,
};
use qdrant_tower_layers::{Classify, ErrorKind};
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

// ===== a tiny backend =====

#[derive(Debug, Clone, PartialEq)]
enum TestError {
    Backend(ErrorKind),
    Open(CircuitOpen),
}

impl Classify for TestError {
    fn kind(&self) -> ErrorKind {
        match self {
            TestError::Backend(kind) => *kind,
            TestError::Open(open) => open.kind(),
        }
    }
}

impl From<CircuitOpen> for TestError {
    fn from(open: CircuitOpen) -> Self {
        TestError::Open(open)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Reply {
    Ok,
    Err(ErrorKind),
}

const FAIL: Reply = Reply::Err(ErrorKind::Unavailable);

impl Reply {
    fn into_result(self) -> Result<(), TestError> {
        match self {
            Reply::Ok => Ok(()),
            Reply::Err(kind) => Err(TestError::Backend(kind)),
        }
    }
}

/// A reply the test gives later, to keep a call in flight.
#[derive(Clone, Default)]
struct Hold(Arc<Mutex<(Option<Reply>, Option<Waker>)>>);

impl Hold {
    fn release(&self, reply: Reply) {
        let mut slot = self.0.lock().unwrap();
        slot.0 = Some(reply);
        if let Some(waker) = slot.1.take() {
            waker.wake();
        }
    }
}

struct Held(Hold);

impl Future for Held {
    type Output = Result<(), TestError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = (self.0).0.lock().unwrap();
        match slot.0 {
            Some(reply) => Poll::Ready(reply.into_result()),
            None => {
                slot.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

enum Call {
    After(Reply, Duration),
    Held(Hold),
}

/// Counts what reached it.
#[derive(Clone, Default)]
struct Backend {
    calls: Arc<AtomicUsize>,
    polled: Arc<AtomicUsize>,
}

type BoxFut = Pin<Box<dyn Future<Output = Result<(), TestError>> + Send>>;

impl Service<Call> for Backend {
    type Response = ();
    type Error = TestError;
    type Future = BoxFut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), TestError>> {
        self.polled.fetch_add(1, SeqCst);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> BoxFut {
        self.calls.fetch_add(1, SeqCst);
        match call {
            Call::After(reply, delay) => Box::pin(async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                reply.into_result()
            }),
            Call::Held(hold) => Box::pin(Held(hold)),
        }
    }
}

type Svc = CircuitBreaker<Backend>;
type SvcFuture = <Svc as Service<Call>>::Future;

fn setup(config: BreakerConfig) -> (Breaker, Svc, Backend) {
    let breaker = Breaker::new("test", config).unwrap();
    let backend = Backend::default();
    let svc = ServiceBuilder::new()
        .layer(breaker.layer())
        .service(backend.clone());
    (breaker, svc, backend)
}

async fn send(svc: &mut Svc, reply: Reply) -> Result<(), TestError> {
    send_after(svc, reply, Duration::ZERO).await
}

async fn send_after(svc: &mut Svc, reply: Reply, delay: Duration) -> Result<(), TestError> {
    svc.ready().await?.call(Call::After(reply, delay)).await
}

/// Starts a call that stays in flight until its hold is released (or the future dropped).
async fn start_held(svc: &mut Svc) -> (Hold, SvcFuture) {
    let hold = Hold::default();
    let future = svc.ready().await.unwrap().call(Call::Held(hold.clone()));
    (hold, future)
}

fn rejected(result: Result<(), TestError>) -> CircuitOpen {
    match result {
        Err(TestError::Open(open)) => open,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ===== closed → open =====

#[tokio::test(start_paused = true)]
async fn five_consecutive_failures_open_the_breaker_by_default() {
    let (breaker, mut svc, backend) = setup(BreakerConfig::default());
    for _ in 0..4 {
        assert_eq!(
            send(&mut svc, FAIL).await,
            Err(TestError::Backend(ErrorKind::Unavailable))
        );
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    let _ = send(&mut svc, FAIL).await;
    assert_eq!(breaker.state(), BreakerState::Open);

    let open = rejected(send(&mut svc, Reply::Ok).await);
    assert_eq!(&*open.name, "test");
    assert_eq!(open.retry_in, Some(secs(60)));
    assert_eq!(
        backend.calls.load(SeqCst),
        5,
        "the rejected call never reached the backend"
    );
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_failure_streak() {
    let (breaker, mut svc, _) = setup(BreakerConfig::default().with_consecutive_failures(3));
    for _ in 0..10 {
        let _ = send(&mut svc, FAIL).await;
        let _ = send(&mut svc, FAIL).await;
        send(&mut svc, Reply::Ok).await.unwrap();
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.snapshot().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn errors_that_say_nothing_about_backend_health_never_open_it() {
    let (breaker, mut svc, _) = setup(
        BreakerConfig::default()
            .with_consecutive_failures(1)
            .with_failure_rate(0.1)
            .with_minimum_calls(1),
    );
    for kind in [
        ErrorKind::InvalidRequest,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::Unauthenticated,
        ErrorKind::PermissionDenied,
        ErrorKind::RateLimited,
        ErrorKind::Cancelled,
        ErrorKind::InsufficientStorage,
    ] {
        for _ in 0..5 {
            assert_eq!(
                send(&mut svc, Reply::Err(kind)).await,
                Err(TestError::Backend(kind))
            );
        }
    }
    let snap = breaker.snapshot();
    assert_eq!(snap.state, BreakerState::Closed);
    assert_eq!((snap.ignored, snap.failures), (40, 0));
    assert_eq!(
        snap.window.unwrap().calls,
        0,
        "ignored errors stay out of the window"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_predicate_overrides_the_error_kind() {
    let (breaker, mut svc, _) = setup(
        BreakerConfig::default()
            .with_consecutive_failures(2)
            .with_failure_predicate(|e: &dyn Classify| matches!(e.kind(), ErrorKind::RateLimited)),
    );
    for _ in 0..5 {
        let _ = send(&mut svc, FAIL).await; // Unavailable no longer counts
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    let _ = send(&mut svc, Reply::Err(ErrorKind::RateLimited)).await;
    let _ = send(&mut svc, Reply::Err(ErrorKind::RateLimited)).await;
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_waits_for_the_minimum_number_of_calls() {
    let (breaker, mut svc, _) = setup(
        BreakerConfig::default()
            .without_consecutive_failures()
            .with_failure_rate(0.5)
            .with_count_window(10)
            .with_minimum_calls(6),
    );
    for _ in 0..5 {
        let _ = send(&mut svc, FAIL).await; // 5 of 5 failed, but below the minimum
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    send(&mut svc, Reply::Ok).await.unwrap(); // 5 of 6: 83 % ≥ 50 %
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(
        breaker.watch().borrow().reason,
        TransitionReason::FailureRate
    );
}

#[tokio::test(start_paused = true)]
async fn the_count_window_forgets_calls_older_than_its_size() {
    let (breaker, mut svc, _) = setup(
        BreakerConfig::default()
            .without_consecutive_failures()
            .with_failure_rate(0.5)
            .with_count_window(4)
            .with_minimum_calls(4),
    );
    // F F S S: 50 % once the window is full, which opens it; so start with one failure.
    let _ = send(&mut svc, FAIL).await;
    for _ in 0..3 {
        send(&mut svc, Reply::Ok).await.unwrap(); // F S S S: 25 %
    }
    for _ in 0..20 {
        send(&mut svc, Reply::Ok).await.unwrap();
    }
    let _ = send(&mut svc, FAIL).await; // S S S F: 25 %, the first failure slid out
    let window = breaker.snapshot().window.unwrap();
    assert_eq!((window.calls, window.failures), (4, 1));
    assert_eq!(window.failure_rate, 0.25);
    assert_eq!(breaker.state(), BreakerState::Closed);
    let _ = send(&mut svc, FAIL).await; // S S F F: 50 %
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn the_time_window_forgets_failures_older_than_its_length() {
    let (breaker, mut svc, _) = setup(
        BreakerConfig::default()
            .without_consecutive_failures()
            .with_failure_rate(0.5)
            .with_time_window(secs(10), 10)
            .with_minimum_calls(4),
    );
    for _ in 0..3 {
        let _ = send(&mut svc, FAIL).await;
    }
    assert_eq!(breaker.snapshot().window.unwrap().calls, 3);
    advance(secs(11)).await;
    assert_eq!(
        breaker.snapshot().window.unwrap().calls,
        0,
        "the failures expired"
    );
    let _ = send(&mut svc, FAIL).await; // 1 call: below the minimum
    send(&mut svc, Reply::Ok).await.unwrap();
    send(&mut svc, Reply::Ok).await.unwrap();
    send(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(
        breaker.state(),
        BreakerState::Closed,
        "1 of 4 in the window"
    );
    let _ = send(&mut svc, FAIL).await; // 2 of 5 = 40 %
    assert_eq!(breaker.state(), BreakerState::Closed);
    let _ = send(&mut svc, FAIL).await; // 3 of 6 = 50 %
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_are_counted_and_trip_on_their_rate() {
    let (breaker, mut svc, _) = setup(
        BreakerConfig::default()
            .with_slow_calls(ms(500), 0.5)
            .with_count_window(4)
            .with_minimum_calls(4),
    );
    send_after(&mut svc, Reply::Ok, ms(600)).await.unwrap();
    send_after(&mut svc, Reply::Ok, ms(500)).await.unwrap(); // not longer than 500 ms
    send_after(&mut svc, Reply::Ok, ms(10)).await.unwrap();
    assert_eq!(breaker.snapshot().slow_calls, 1);
    assert_eq!(
        breaker.state(),
        BreakerState::Closed,
        "3 calls: below the minimum"
    );
    send_after(&mut svc, Reply::Ok, secs(2)).await.unwrap(); // 2 slow of 4
    let snap = breaker.snapshot();
    assert_eq!(
        (snap.state, snap.slow_calls, snap.successes),
        (BreakerState::Open, 2, 4)
    );
    assert_eq!(
        breaker.watch().borrow().reason,
        TransitionReason::SlowCallRate
    );
}

// ===== open → half-open → closed / open =====

fn quick_trip() -> BreakerConfig {
    BreakerConfig::default()
        .with_consecutive_failures(1)
        .with_open_wait(secs(10))
}

#[tokio::test(start_paused = true)]
async fn rejections_say_how_long_is_left_and_are_not_retryable() {
    let (_, mut svc, _) = setup(quick_trip());
    let _ = send(&mut svc, FAIL).await;
    advance(secs(4)).await;
    let open = rejected(send(&mut svc, Reply::Ok).await);
    assert_eq!(open.retry_in, Some(secs(6)));
    let error = TestError::from(open);
    assert_eq!(error.kind(), ErrorKind::CircuitOpen);
    assert!(!error.kind().is_transient());
    assert!(!error.kind().counts_as_failure());
}

#[tokio::test(start_paused = true)]
async fn after_the_wait_the_next_call_is_a_trial_and_two_successes_close() {
    let (breaker, mut svc, backend) = setup(quick_trip());
    let _ = send(&mut svc, FAIL).await;
    advance(ms(9_999)).await;
    rejected(send(&mut svc, Reply::Ok).await);
    advance(ms(1)).await;
    assert_eq!(
        breaker.state(),
        BreakerState::Open,
        "no timer: the next call moves it"
    );
    send(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert_eq!(breaker.snapshot().half_open_successes, 1);
    send(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(backend.calls.load(SeqCst), 3);
    assert_eq!(
        breaker.watch().borrow().reason,
        TransitionReason::TrialsSucceeded
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_trial_reopens_for_another_full_wait() {
    let (breaker, mut svc, _) = setup(quick_trip());
    let _ = send(&mut svc, FAIL).await;
    advance(secs(10)).await;
    send(&mut svc, Reply::Ok).await.unwrap();
    let _ = send(&mut svc, FAIL).await;
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(
        breaker.watch().borrow().reason,
        TransitionReason::TrialFailed
    );
    assert_eq!(breaker.snapshot().time_until_half_open, Some(secs(10)));
}

#[tokio::test(start_paused = true)]
async fn half_open_lets_k_trials_through_and_rejects_the_rest_without_queueing() {
    let (breaker, mut svc, backend) = setup(quick_trip().with_half_open_trials(3));
    let _ = send(&mut svc, FAIL).await;
    advance(secs(10)).await;
    let mut trials = Vec::new();
    for _ in 0..3 {
        trials.push(start_held(&mut svc).await);
    }
    let before = Instant::now();
    let open = rejected(send(&mut svc, Reply::Ok).await);
    assert_eq!(
        open.retry_in, None,
        "half-open and full: no time to promise"
    );
    assert_eq!(Instant::now(), before, "rejected at once");
    assert_eq!(backend.calls.load(SeqCst), 4);
    assert_eq!(breaker.snapshot().half_open_trials, 3);
    for (hold, future) in trials {
        hold.release(Reply::Ok);
        future.await.unwrap();
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_trial_gives_its_permit_back() {
    let (breaker, mut svc, _) = setup(
        quick_trip()
            .with_half_open_trials(1)
            .with_half_open_successes(1),
    );
    let _ = send(&mut svc, FAIL).await;
    advance(secs(10)).await;
    let (_hold, trial) = start_held(&mut svc).await;
    rejected(send(&mut svc, Reply::Ok).await);
    drop(trial); // the caller gave up
    let snap = breaker.snapshot();
    assert_eq!(
        (snap.state, snap.half_open_trials, snap.cancelled),
        (BreakerState::HalfOpen, 0, 1)
    );
    send(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_permit_taken_by_poll_ready_returns_when_the_service_is_dropped() {
    let (breaker, mut svc, _) = setup(
        quick_trip()
            .with_half_open_trials(1)
            .with_half_open_successes(1),
    );
    let _ = send(&mut svc, FAIL).await;
    advance(secs(10)).await;
    let mut other = svc.clone();
    other.ready().await.unwrap(); // takes the only permit
    assert_eq!(breaker.snapshot().half_open_trials, 1);
    drop(other);
    let snap = breaker.snapshot();
    assert_eq!(
        (snap.half_open_trials, snap.cancelled),
        (0, 0),
        "never sent, so not a cancellation"
    );
    send(&mut svc, Reply::Ok).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_trial_ending_in_an_error_that_does_not_count_gives_its_permit_back() {
    let (breaker, mut svc, _) = setup(
        quick_trip()
            .with_half_open_trials(1)
            .with_half_open_successes(1),
    );
    let _ = send(&mut svc, FAIL).await;
    advance(secs(10)).await;
    let _ = send(&mut svc, Reply::Err(ErrorKind::NotFound)).await;
    assert_eq!(breaker.snapshot().half_open_trials, 0);
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    send(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_slow_trial_reopens_the_breaker() {
    let (breaker, mut svc, _) = setup(quick_trip().with_slow_calls(secs(1), 1.0));
    let _ = send(&mut svc, FAIL).await;
    advance(secs(10)).await;
    send_after(&mut svc, Reply::Ok, secs(2)).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(breaker.watch().borrow().reason, TransitionReason::TrialSlow);
}

#[tokio::test(start_paused = true)]
async fn outcomes_of_calls_admitted_before_a_state_change_are_ignored() {
    let (breaker, mut svc, _) = setup(quick_trip().with_half_open_successes(1));
    let (old_hold, old_call) = start_held(&mut svc).await; // admitted while closed
    let _ = send(&mut svc, FAIL).await;
    advance(secs(10)).await;
    let (trial_hold, trial) = start_held(&mut svc).await;
    old_hold.release(FAIL);
    let _ = old_call.await;
    assert_eq!(
        breaker.state(),
        BreakerState::HalfOpen,
        "a stale failure does not re-open"
    );
    trial_hold.release(Reply::Ok);
    trial.await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(
        breaker.snapshot().failures,
        2,
        "but it is still counted in the figures"
    );
}

#[tokio::test(start_paused = true)]
async fn the_open_wait_grows_on_each_reopening_and_resets_once_closed() {
    let (breaker, mut svc, _) = setup(
        BreakerConfig::default()
            .with_consecutive_failures(1)
            .with_half_open_trials(1)
            .with_half_open_successes(1)
            .with_exponential_open_wait(secs(1), 2.0, secs(5)),
    );
    let _ = send(&mut svc, FAIL).await;
    let mut waits = Vec::new();
    for _ in 0..5 {
        let wait = breaker.snapshot().time_until_half_open.unwrap();
        waits.push(wait.as_secs());
        advance(wait).await;
        let _ = send(&mut svc, FAIL).await; // the trial fails
    }
    assert_eq!(waits, [1, 2, 4, 5, 5]);
    advance(secs(5)).await;
    send(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
    let _ = send(&mut svc, FAIL).await;
    assert_eq!(breaker.snapshot().time_until_half_open, Some(secs(1)));
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_open_waits_below_the_configured_wait() {
    let mut waits = Vec::new();
    for i in 0..40 {
        let breaker = Breaker::new(
            format!("fleet-{i}"),
            quick_trip().with_open_wait(secs(10)).with_jitter(0.5),
        )
        .unwrap();
        let mut svc = breaker.layer().layer(Backend::default());
        let _ = send(&mut svc, FAIL).await;
        waits.push(breaker.snapshot().time_until_half_open.unwrap());
    }
    assert!(
        waits.iter().all(|w| (secs(5)..=secs(10)).contains(w)),
        "{waits:?}"
    );
    waits.sort();
    waits.dedup();
    assert!(waits.len() > 30, "waits should differ: {waits:?}");
}

#[tokio::test(start_paused = true)]
async fn a_timer_can_move_the_breaker_to_half_open_without_a_call() {
    let (breaker, mut svc, _) = setup(quick_trip().with_auto_half_open(true));
    let mut changes = breaker.subscribe();
    let start = Instant::now();
    let _ = send(&mut svc, FAIL).await;
    let opened = changes.recv().await.unwrap();
    assert_eq!(
        (opened.from, opened.to),
        (BreakerState::Closed, BreakerState::Open)
    );
    let half_open = changes.recv().await.unwrap();
    assert_eq!(half_open.to, BreakerState::HalfOpen);
    assert_eq!(half_open.reason, TransitionReason::Timer);
    assert_eq!(half_open.at - start, secs(10));
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn a_health_prober_can_move_an_open_breaker_to_half_open_now() {
    let (breaker, mut svc, _) = setup(quick_trip());
    assert!(!breaker.try_half_open(), "closed: nothing to do");
    let _ = send(&mut svc, FAIL).await;
    assert!(breaker.try_half_open());
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert_eq!(breaker.watch().borrow().reason, TransitionReason::Requested);
    breaker.force_open();
    assert!(!breaker.try_half_open(), "an operator's force-open wins");
}

// ===== manual control =====

#[tokio::test(start_paused = true)]
async fn force_open_rejects_everything_until_reset() {
    let (breaker, mut svc, backend) = setup(BreakerConfig::default());
    breaker.force_open();
    advance(secs(3600)).await;
    let open = rejected(send(&mut svc, Reply::Ok).await);
    assert_eq!(open.retry_in, None);
    assert_eq!(backend.calls.load(SeqCst), 0);
    breaker.reset();
    send(&mut svc, Reply::Ok).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn disabled_lets_everything_through_and_counts_nothing() {
    let (breaker, mut svc, backend) = setup(quick_trip());
    breaker.disable();
    for _ in 0..10 {
        let _ = send(&mut svc, FAIL).await;
    }
    let snap = breaker.snapshot();
    assert_eq!((snap.state, snap.calls), (BreakerState::Disabled, 0));
    assert_eq!(backend.calls.load(SeqCst), 10);
}

#[tokio::test(start_paused = true)]
async fn metrics_only_counts_but_never_opens() {
    let (breaker, mut svc, backend) =
        setup(quick_trip().with_failure_rate(0.5).with_minimum_calls(1));
    breaker.metrics_only();
    for _ in 0..10 {
        let _ = send(&mut svc, FAIL).await;
    }
    let snap = breaker.snapshot();
    assert_eq!(snap.state, BreakerState::MetricsOnly);
    assert_eq!((snap.failures, snap.consecutive_failures), (10, 10));
    assert_eq!(snap.window.unwrap().failure_rate, 1.0);
    assert_eq!(backend.calls.load(SeqCst), 10);
    breaker.reset();
    let _ = send(&mut svc, FAIL).await;
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn reconfiguring_keeps_the_state_and_figures() {
    let (breaker, mut svc, _) = setup(BreakerConfig::default().with_consecutive_failures(5));
    for _ in 0..3 {
        let _ = send(&mut svc, FAIL).await;
    }
    breaker
        .reconfigure(breaker.config().with_consecutive_failures(4))
        .unwrap();
    let snap = breaker.snapshot();
    assert_eq!(
        (snap.state, snap.consecutive_failures, snap.failures),
        (BreakerState::Closed, 3, 3)
    );
    let _ = send(&mut svc, FAIL).await; // the 4th failure meets the new threshold
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(
        breaker
            .reconfigure(BreakerConfig::default().with_half_open_trials(0))
            .unwrap_err()
            .field(),
        "half_open_trials"
    );
    assert_eq!(
        breaker.config().consecutive_failures(),
        Some(4),
        "a bad config changes nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn reconfiguring_with_the_same_window_keeps_its_contents() {
    let config = BreakerConfig::default()
        .with_failure_rate(0.9)
        .with_count_window(10)
        .with_minimum_calls(10);
    let (breaker, mut svc, _) = setup(config.clone());
    for _ in 0..4 {
        let _ = send(&mut svc, FAIL).await;
    }
    breaker
        .reconfigure(config.clone().with_failure_rate(0.5))
        .unwrap();
    assert_eq!(breaker.snapshot().window.unwrap().failures, 4);
    breaker.reconfigure(config.with_count_window(20)).unwrap();
    assert_eq!(
        breaker.snapshot().window.unwrap().calls,
        0,
        "a new shape starts afresh"
    );
}

// ===== poll_ready =====

#[tokio::test(start_paused = true)]
async fn poll_ready_does_not_touch_the_inner_service_when_it_will_reject() {
    let (_, mut svc, backend) = setup(quick_trip());
    let _ = send(&mut svc, FAIL).await;
    let polled = backend.polled.load(SeqCst);
    for _ in 0..5 {
        rejected(send(&mut svc, Reply::Ok).await);
    }
    assert_eq!(backend.polled.load(SeqCst), polled);
}

#[tokio::test(start_paused = true)]
async fn backpressure_holds_poll_ready_until_the_open_wait_ends() {
    let (breaker, mut svc, backend) = setup(quick_trip().with_backpressure(true));
    let start = Instant::now();
    let _ = send(&mut svc, FAIL).await;
    let polled = backend.polled.load(SeqCst);
    assert!(
        tokio::time::timeout(secs(9), svc.ready()).await.is_err(),
        "not ready while open"
    );
    assert_eq!(
        backend.polled.load(SeqCst),
        polled,
        "inner not polled while open"
    );
    svc.ready().await.unwrap();
    assert_eq!(Instant::now() - start, secs(10));
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    svc.call(Call::After(Reply::Ok, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(breaker.snapshot().rejections, 0);
}

#[tokio::test(start_paused = true)]
async fn backpressure_wakes_a_waiter_when_a_trial_permit_comes_back() {
    let (_, mut svc, _) = setup(
        quick_trip()
            .with_backpressure(true)
            .with_half_open_trials(1)
            .with_half_open_successes(1),
    );
    let _ = send(&mut svc, FAIL).await;
    advance(secs(10)).await;
    let (_hold, trial) = start_held(&mut svc).await;
    let mut waiter = svc.clone();
    let waiting = tokio::spawn(async move {
        waiter.ready().await.unwrap();
        waiter.call(Call::After(Reply::Ok, Duration::ZERO)).await
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    drop(trial);
    waiting.await.unwrap().unwrap();
}

// ===== observability =====

#[tokio::test(start_paused = true)]
async fn the_snapshot_reports_figures_and_time_in_each_state() {
    let (breaker, mut svc, _) = setup(quick_trip());
    advance(secs(5)).await;
    send(&mut svc, Reply::Ok).await.unwrap();
    let _ = send(&mut svc, Reply::Err(ErrorKind::NotFound)).await;
    let _ = send(&mut svc, FAIL).await;
    let failed_at = Instant::now();
    advance(secs(3)).await;
    rejected(send(&mut svc, Reply::Ok).await);
    rejected(send(&mut svc, Reply::Ok).await);
    let snap = breaker.snapshot();
    assert_eq!(snap.state, BreakerState::Open);
    assert_eq!(
        (snap.calls, snap.successes, snap.failures, snap.ignored),
        (3, 1, 1, 1)
    );
    assert_eq!(snap.rejections, 2);
    assert_eq!(snap.availability, 3.0 / 5.0);
    assert_eq!(snap.time_in_state.closed, secs(5));
    assert_eq!(snap.time_in_state.open, secs(3));
    assert_eq!(snap.time_until_half_open, Some(secs(7)));
    assert_eq!(snap.last_failure, Some(failed_at));
    assert!(snap.last_success.is_some());
    assert_eq!(snap.transitions, 1);
    assert_eq!(snap.window, None, "no rate policy, no window");
}

#[tokio::test(start_paused = true)]
async fn subscribers_see_every_transition_in_order() {
    let (breaker, mut svc, _) = setup(quick_trip().with_half_open_successes(1));
    let mut changes = breaker.subscribe();
    let mut latest = breaker.watch();
    assert_eq!(latest.borrow_and_update().reason, TransitionReason::Created);
    let _ = send(&mut svc, FAIL).await;
    advance(secs(10)).await;
    send(&mut svc, Reply::Ok).await.unwrap();
    breaker.force_open();
    breaker.reset();
    let mut seen = Vec::new();
    while let Ok(change) = changes.try_recv() {
        seen.push((change.from, change.to, change.reason));
    }
    use BreakerState::*;
    assert_eq!(
        seen,
        [
            (Closed, Open, TransitionReason::ConsecutiveFailures),
            (Open, HalfOpen, TransitionReason::OpenWaitElapsed),
            (HalfOpen, Closed, TransitionReason::TrialsSucceeded),
            (Closed, ForcedOpen, TransitionReason::ForcedOpen),
            (ForcedOpen, Closed, TransitionReason::Reset),
        ]
    );
    assert!(latest.has_changed().unwrap());
    assert_eq!(latest.borrow().reason, TransitionReason::Reset);
}

/// Keeps every tracing event as `field=value` text.
struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(format!("{} ", event.metadata().level()));
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0.trim_end().to_owned());
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Every event of this test binary, captured by one global subscriber. A thread-local
/// subscriber (`set_default`) would race with tests on other threads over tracing's global
/// callsite-interest cache and could miss events under load; a global one cannot.
fn captured() -> &'static Arc<Mutex<Vec<String>>> {
    static EVENTS: std::sync::OnceLock<Arc<Mutex<Vec<String>>>> = std::sync::OnceLock::new();
    EVENTS.get_or_init(|| {
        let events = Arc::new(Mutex::new(Vec::new()));
        tracing::subscriber::set_global_default(Capture(events.clone()))
            .expect("no other global subscriber in this test binary");
        events
    })
}

#[tokio::test(start_paused = true)]
async fn every_transition_is_a_tracing_event_with_name_from_to_and_reason() {
    let events = captured();
    // A name no other test uses, to pick this test's events out of the binary's.
    let breaker = Breaker::new("traced", quick_trip().with_half_open_successes(1)).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(breaker.layer())
        .service(Backend::default());
    let _ = send(&mut svc, FAIL).await;
    breaker.try_half_open();
    send(&mut svc, Reply::Ok).await.unwrap();
    let ours: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|event| event.contains("breaker=traced "))
        .cloned()
        .collect();
    assert_eq!(
        ours,
        [
            "WARN message=circuit breaker state changed breaker=traced from=closed to=open \
             reason=consecutive_failures",
            "INFO message=circuit breaker state changed breaker=traced from=open to=half_open \
             reason=requested",
            "INFO message=circuit breaker state changed breaker=traced from=half_open to=closed \
             reason=trials_succeeded",
        ]
    );
}

/// Records counters and gauges in atomics, keyed by name and labels.
#[derive(Default)]
struct TestRecorder(Mutex<HashMap<String, Arc<AtomicU64>>>);

impl TestRecorder {
    fn slot(&self, key: &metrics::Key) -> Arc<AtomicU64> {
        let mut labels: Vec<_> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let id = format!("{}{{{}}}", key.name(), labels.join(","));
        self.0.lock().unwrap().entry(id).or_default().clone()
    }
    fn get(&self, id: &str) -> u64 {
        self.0.lock().unwrap().get(id).map_or(0, |a| a.load(SeqCst))
    }
}

impl metrics::Recorder for TestRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.slot(key))
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(self.slot(key))
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[tokio::test(start_paused = true)]
async fn metrics_count_calls_rejections_and_transitions_per_breaker() {
    let recorder = TestRecorder::default();
    let breaker = metrics::with_local_recorder(&recorder, || {
        Breaker::new("orders", quick_trip().with_slow_calls(secs(1), 1.0)).unwrap()
    });
    let mut svc = breaker.layer().layer(Backend::default());
    send_after(&mut svc, Reply::Ok, secs(2)).await.unwrap();
    let _ = send(&mut svc, Reply::Err(ErrorKind::NotFound)).await;
    let _ = send(&mut svc, FAIL).await;
    rejected(send(&mut svc, Reply::Ok).await);
    let get = |id: &str| recorder.get(id);
    assert_eq!(
        get("circuit_breaker_calls_total{breaker=orders,outcome=success}"),
        1
    );
    assert_eq!(
        get("circuit_breaker_calls_total{breaker=orders,outcome=ignored}"),
        1
    );
    assert_eq!(
        get("circuit_breaker_calls_total{breaker=orders,outcome=failure}"),
        1
    );
    assert_eq!(get("circuit_breaker_slow_calls_total{breaker=orders}"), 1);
    assert_eq!(get("circuit_breaker_rejections_total{breaker=orders}"), 1);
    assert_eq!(
        get("circuit_breaker_transitions_total{breaker=orders,to=open}"),
        1
    );
    let gauge = |state: &str| {
        f64::from_bits(get(&format!(
            "circuit_breaker_state{{breaker=orders,state={state}}}"
        )))
    };
    assert_eq!((gauge("open"), gauge("closed")), (1.0, 0.0));
}

// ===== error types and registry =====

#[tokio::test(start_paused = true)]
async fn services_erroring_with_box_error_work_behind_the_breaker() {
    let breaker = Breaker::new("boxed", quick_trip()).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(breaker.layer())
        .service(tower::service_fn(|_: ()| async {
            Err::<(), tower::BoxError>("connection refused".into())
        }));
    assert!(svc.ready().await.unwrap().call(()).await.is_err());
    assert_eq!(
        breaker.state(),
        BreakerState::Open,
        "an unknown error counts"
    );
    let error = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(error.downcast_ref::<CircuitOpen>().is_some());
    assert_eq!(error.kind(), ErrorKind::CircuitOpen);
}

#[test]
fn the_registry_creates_lists_resets_and_reconfigures_by_name_and_tag() {
    let registry = BreakerRegistry::new();
    registry
        .set_tag_default(
            "qdrant",
            BreakerConfig::default().with_consecutive_failures(2),
        )
        .unwrap();
    let a = registry.get_or_create("qdrant/a", "qdrant");
    let b = registry.get_or_create("qdrant/b", "qdrant");
    let other = registry.get_or_create("other", "http");
    assert_eq!(a.config().consecutive_failures(), Some(2));
    assert_eq!(other.config().consecutive_failures(), Some(5));
    assert_eq!(a.tag(), Some("qdrant"));
    let names: Vec<_> = registry
        .list()
        .iter()
        .map(|b| b.name().to_owned())
        .collect();
    assert_eq!(names, ["other", "qdrant/a", "qdrant/b"]);

    a.force_open();
    b.force_open();
    assert!((registry.health_score() - 1.0 / 3.0).abs() < 1e-9);
    assert!(registry.reset("qdrant/a"));
    assert!(!registry.reset("missing"));
    assert_eq!(registry.reset_all(), 3);
    assert_eq!(registry.health_score(), 1.0);

    assert_eq!(
        registry
            .reconfigure_tag(
                "qdrant",
                BreakerConfig::default().with_consecutive_failures(7)
            )
            .unwrap(),
        2
    );
    assert_eq!(b.config().consecutive_failures(), Some(7));
    assert_eq!(
        registry
            .get_or_create("qdrant/c", "qdrant")
            .config()
            .consecutive_failures(),
        Some(7)
    );
    assert!(
        registry
            .reconfigure("other", BreakerConfig::default())
            .unwrap()
    );
    assert!(registry.remove("other").is_some());
    assert_eq!(registry.len(), 3);
    assert_eq!(registry.snapshots().len(), 3);
}

// ===== concurrency =====

/// Threads hammer one breaker while a controller cycles it through open → half-open →
/// closed/open. While trial calls are held in flight (and some are cancelled and retried),
/// the backend never has more than K of them at once.
#[test]
fn half_open_never_lets_more_than_k_calls_through_under_contention() {
    const K: usize = 3;
    const THREADS: usize = 4;
    const CYCLES: usize = 40;
    let breaker = Breaker::new(
        "contended",
        BreakerConfig::default()
            .with_consecutive_failures(1)
            .with_half_open_trials(K as u32)
            .with_half_open_successes(K as u32)
            .with_open_wait(secs(3600)),
    )
    .unwrap();

    // 0: hold every call, 1: answer Ok, 2: answer a failure.
    let reply = Arc::new(std::sync::atomic::AtomicU8::new(2));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));

    struct Flight {
        reply: Arc<std::sync::atomic::AtomicU8>,
        in_flight: Arc<AtomicUsize>,
    }
    impl Future for Flight {
        type Output = Result<(), TestError>;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            match self.reply.load(SeqCst) {
                0 => Poll::Pending, // the workers spin, so no waker is needed
                1 => Poll::Ready(Ok(())),
                _ => Poll::Ready(Err(TestError::Backend(ErrorKind::Unavailable))),
            }
        }
    }
    impl Drop for Flight {
        fn drop(&mut self) {
            self.in_flight.fetch_sub(1, SeqCst);
        }
    }

    let make_backend = || {
        let (reply, in_flight, max, measuring) = (
            reply.clone(),
            in_flight.clone(),
            max_in_flight.clone(),
            measuring.clone(),
        );
        tower::service_fn(move |_: ()| {
            let now = in_flight.fetch_add(1, SeqCst) + 1;
            if measuring.load(SeqCst) {
                max.fetch_max(now, SeqCst);
            }
            Flight {
                reply: reply.clone(),
                in_flight: in_flight.clone(),
            }
        })
    };

    let deadline = std::time::Instant::now() + secs(30);
    let spin_until = |what: &str, done: &dyn Fn() -> bool| {
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::yield_now();
        }
    };

    std::thread::scope(|scope| {
        for worker in 0..THREADS {
            let mut svc = breaker.layer().layer(make_backend());
            let stop = stop.clone();
            scope.spawn(move || {
                let waker = Waker::noop();
                let mut cx = Context::from_waker(waker);
                let mut held: Option<(Pin<Box<_>>, u32)> = None;
                let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ worker as u64;
                while !stop.load(SeqCst) {
                    match held.take() {
                        None => {
                            assert!(svc.poll_ready(&mut cx).is_ready());
                            let mut future = Box::pin(svc.call(()));
                            if future.as_mut().poll(&mut cx).is_pending() {
                                held = Some((future, 0));
                            }
                        }
                        Some((mut future, spins)) => {
                            if future.as_mut().poll(&mut cx).is_pending() {
                                rng ^= rng << 13;
                                rng ^= rng >> 7;
                                rng ^= rng << 17;
                                // Now and then the caller gives up on its call.
                                if !rng.is_multiple_of(64) {
                                    held = Some((future, spins + 1));
                                }
                            }
                        }
                    }
                    std::thread::yield_now();
                }
            });
        }

        let mut peak = 0;
        for cycle in 0..CYCLES {
            // Fail everything until the breaker is open and the backend idle.
            reply.store(2, SeqCst);
            spin_until("open and idle", &|| {
                breaker.state() == BreakerState::Open && in_flight.load(SeqCst) == 0
            });
            reply.store(0, SeqCst);
            max_in_flight.store(0, SeqCst);
            measuring.store(true, SeqCst);
            assert!(breaker.try_half_open());
            spin_until("all permits taken", &|| {
                breaker.snapshot().half_open_trials as usize == K
            });
            for _ in 0..200 {
                std::thread::yield_now(); // let cancellations and retries happen
            }
            measuring.store(false, SeqCst);
            let max = max_in_flight.load(SeqCst);
            assert!(
                max <= K,
                "cycle {cycle}: {max} calls in flight in half-open, K = {K}"
            );
            peak = peak.max(max);
            if cycle % 2 == 0 {
                reply.store(1, SeqCst);
                spin_until("closed", &|| breaker.state() == BreakerState::Closed);
            }
        }
        assert_eq!(peak, K, "the workers did reach the limit");
        stop.store(true, SeqCst);
    });
    let snap = breaker.snapshot();
    assert!(snap.cancelled > 0, "some trials were cancelled: {snap:?}");
}

// ===== the model =====

mod model {
    use super::*;
    use proptest::prelude::*;
    use qdrant_tower_layers::breaker::OpenWait;

    #[derive(Debug, Clone)]
    struct Cfg {
        consecutive: Option<u32>,
        failure_rate: Option<f64>,
        slow: Option<(Duration, f64)>,
        window: Win,
        minimum_calls: u32,
        open_wait: OpenWait,
        trials: u32,
        successes: u32,
    }

    #[derive(Debug, Clone, Copy)]
    enum Win {
        Count(u32),
        Time(Duration, u32),
    }

    impl Cfg {
        fn build(&self) -> BreakerConfig {
            let mut c = BreakerConfig::default()
                .without_consecutive_failures()
                .with_minimum_calls(self.minimum_calls)
                .with_half_open_trials(self.trials)
                .with_half_open_successes(self.successes);
            if let Some(n) = self.consecutive {
                c = c.with_consecutive_failures(n);
            }
            if let Some(rate) = self.failure_rate {
                c = c.with_failure_rate(rate);
            }
            if let Some((d, rate)) = self.slow {
                c = c.with_slow_calls(d, rate);
            }
            c = match self.window {
                Win::Count(n) => c.with_count_window(n),
                Win::Time(length, buckets) => c.with_time_window(length, buckets),
            };
            match self.open_wait {
                OpenWait::Fixed(d) => c.with_open_wait(d),
                OpenWait::Exponential {
                    initial,
                    multiplier,
                    max,
                } => c.with_exponential_open_wait(initial, multiplier, max),
            }
        }
        fn uses_window(&self) -> bool {
            self.failure_rate.is_some() || self.slow.is_some()
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Out {
        Ok,
        Fail,
        Ignored,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Start,
        Finish(usize, Out),
        Cancel(usize),
        Advance(u64),
        TryHalfOpen,
        Reset,
        ForceOpen,
    }

    /// A plain reference implementation of the documented behaviour.
    #[derive(Debug, Default)]
    struct Model {
        now: u64, // nanoseconds since the breaker was built
        state: Option<BreakerState>,
        generation: u64,
        streak: u32,
        permits: u32,
        trial_ok: u32,
        open_until: u64,
        reopens: u32,
        events: Vec<(u64, bool, bool)>, // (end time, failure, slow), oldest first
        successes: u64,
        failures: u64,
        ignored: u64,
        cancelled: u64,
        slow: u64,
        rejections: u64,
        transitions: u64,
    }

    #[derive(Debug, Clone, Copy)]
    struct Flight {
        generation: u64,
        trial: bool,
        start: u64,
    }

    impl Model {
        fn state(&self) -> BreakerState {
            self.state.unwrap_or(BreakerState::Closed)
        }

        fn go(&mut self, cfg: &Cfg, to: BreakerState) {
            let from = self.state();
            if to == BreakerState::Open {
                let wait = cfg.open_wait.base(self.reopens);
                self.open_until = self.now + wait.as_nanos() as u64;
                self.reopens += 1;
            }
            if matches!(
                to,
                BreakerState::Closed | BreakerState::Disabled | BreakerState::MetricsOnly
            ) {
                self.reopens = 0;
            }
            if matches!(to, BreakerState::Closed | BreakerState::MetricsOnly) {
                self.events.clear();
            }
            if from != to {
                self.transitions += 1;
            }
            self.state = Some(to);
            self.generation += 1;
            self.streak = 0;
            self.permits = 0;
            self.trial_ok = 0;
        }

        /// The events the window holds now.
        fn window(&self, cfg: &Cfg) -> (u64, u64, u64) {
            let held: Vec<_> = match cfg.window {
                Win::Count(n) => {
                    let skip = self.events.len().saturating_sub(n as usize);
                    self.events[skip..].to_vec()
                }
                Win::Time(length, buckets) => {
                    let width = (length.as_nanos() as u64 / u64::from(buckets)).max(1);
                    let tick = self.now / width;
                    self.events
                        .iter()
                        .copied()
                        .filter(|(at, ..)| at / width + u64::from(buckets) > tick)
                        .collect()
                }
            };
            let calls = held.len() as u64;
            let failures = held.iter().filter(|e| e.1).count() as u64;
            let slow = held.iter().filter(|e| e.2).count() as u64;
            (calls, failures, slow)
        }

        /// Admission: Ok(flight) or Err(retry_in).
        fn start(&mut self, cfg: &Cfg) -> Result<Flight, Option<Duration>> {
            loop {
                match self.state() {
                    BreakerState::Closed | BreakerState::MetricsOnly | BreakerState::Disabled => {
                        return Ok(Flight {
                            generation: self.generation,
                            trial: false,
                            start: self.now,
                        });
                    }
                    BreakerState::ForcedOpen => {
                        self.rejections += 1;
                        return Err(None);
                    }
                    BreakerState::Open => {
                        if self.now < self.open_until {
                            self.rejections += 1;
                            return Err(Some(Duration::from_nanos(self.open_until - self.now)));
                        }
                        self.go(cfg, BreakerState::HalfOpen);
                    }
                    BreakerState::HalfOpen => {
                        if self.permits >= cfg.trials {
                            self.rejections += 1;
                            return Err(None);
                        }
                        self.permits += 1;
                        return Ok(Flight {
                            generation: self.generation,
                            trial: true,
                            start: self.now,
                        });
                    }
                }
            }
        }

        fn finish(&mut self, cfg: &Cfg, flight: Flight, out: Out) {
            let slow = cfg
                .slow
                .is_some_and(|(limit, _)| self.now - flight.start > limit.as_nanos() as u64);
            match out {
                Out::Ok => self.successes += 1,
                Out::Fail => self.failures += 1,
                Out::Ignored => self.ignored += 1,
            }
            if slow {
                self.slow += 1;
            }
            if flight.generation != self.generation {
                return;
            }
            match self.state() {
                BreakerState::HalfOpen if flight.trial => match out {
                    Out::Fail => self.go(cfg, BreakerState::Open),
                    Out::Ok if slow => self.go(cfg, BreakerState::Open),
                    Out::Ignored => self.permits -= 1,
                    Out::Ok => {
                        self.trial_ok += 1;
                        if self.trial_ok >= cfg.successes {
                            self.go(cfg, BreakerState::Closed);
                        }
                    }
                },
                state @ (BreakerState::Closed | BreakerState::MetricsOnly) if !flight.trial => {
                    let trips = state == BreakerState::Closed;
                    match out {
                        Out::Ignored => return,
                        Out::Fail => {
                            self.streak = (self.streak + 1).min(65_535);
                            if trips && cfg.consecutive.is_some_and(|n| self.streak >= n) {
                                self.go(cfg, BreakerState::Open);
                                return;
                            }
                        }
                        Out::Ok => self.streak = 0,
                    }
                    if !cfg.uses_window() {
                        return;
                    }
                    self.events.push((self.now, out == Out::Fail, slow));
                    if !trips {
                        return;
                    }
                    let (calls, failures, slow_calls) = self.window(cfg);
                    if calls < u64::from(cfg.minimum_calls) {
                        return;
                    }
                    let over = |n: u64, limit: f64| n as f64 / calls as f64 >= limit;
                    if cfg.failure_rate.is_some_and(|l| over(failures, l))
                        || cfg.slow.is_some_and(|(_, l)| over(slow_calls, l))
                    {
                        self.go(cfg, BreakerState::Open);
                    }
                }
                _ => {}
            }
        }

        fn cancel(&mut self, flight: Flight) {
            self.cancelled += 1;
            if flight.trial
                && flight.generation == self.generation
                && self.state() == BreakerState::HalfOpen
            {
                self.permits -= 1;
            }
        }
    }

    fn cfg_strategy() -> impl Strategy<Value = Cfg> {
        let window = prop_oneof![
            (1u32..8).prop_map(Win::Count),
            (1u64..6, 1u32..5).prop_map(|(s, b)| Win::Time(secs(s), b)),
        ];
        let open_wait = prop_oneof![
            (1u64..20).prop_map(|m| OpenWait::Fixed(ms(m * 100))),
            (1u64..10).prop_map(|m| OpenWait::Exponential {
                initial: ms(m * 100),
                multiplier: 2.0,
                max: ms(m * 500),
            }),
        ];
        (
            prop_oneof![3 => (1u32..5).prop_map(Some), 1 => Just(None)],
            proptest::option::of(prop_oneof![Just(0.3), Just(0.5), Just(1.0)]),
            proptest::option::of((1u64..20, prop_oneof![Just(0.5), Just(1.0)])),
            window,
            1u32..8,
            open_wait,
            1u32..4,
            1u32..4,
        )
            .prop_map(
                |(consecutive, failure_rate, slow, window, min, open_wait, trials, successes)| {
                    let minimum_calls = match window {
                        Win::Count(n) => min.min(n),
                        Win::Time(..) => min,
                    };
                    Cfg {
                        consecutive,
                        failure_rate,
                        slow: slow.map(|(m, r)| (ms(m * 100), r)),
                        window,
                        minimum_calls,
                        open_wait,
                        trials,
                        successes: successes.min(trials),
                    }
                },
            )
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        let out = prop_oneof![4 => Just(Out::Ok), 5 => Just(Out::Fail), 1 => Just(Out::Ignored)];
        prop_oneof![
            8 => Just(Op::Start),
            7 => (any::<usize>(), out).prop_map(|(i, o)| Op::Finish(i, o)),
            1 => any::<usize>().prop_map(Op::Cancel),
            // Durations on a 100 ms grid, so that boundaries (a call exactly as long as the
            // slow-call threshold, a call exactly at the end of the open wait) come up.
            4 => (0u64..12).prop_map(|n| Op::Advance(n * 100)),
            1 => Just(Op::TryHalfOpen),
            1 => Just(Op::Reset),
            1 => Just(Op::ForceOpen),
        ]
    }

    type Fut = Pin<Box<qdrant_tower_layers::breaker::future::ResponseFuture<Held, TestError>>>;

    /// A backend whose replies the test hands over one by one.
    #[derive(Clone)]
    struct Manual;
    impl Service<Hold> for Manual {
        type Response = ();
        type Error = TestError;
        type Future = Held;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), TestError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, hold: Hold) -> Held {
            Held(hold)
        }
    }

    async fn run(cfg: Cfg, ops: Vec<Op>) -> Result<(), TestCaseError> {
        let breaker = Breaker::new("model", cfg.build()).unwrap();
        let mut svc = breaker.layer().layer(Manual);
        let mut model = Model::default();
        let mut flights: Vec<(Fut, Hold, Flight)> = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Start => {
                    prop_assert!(svc.poll_ready(&mut cx).is_ready());
                    let hold = Hold::default();
                    let mut future = Box::pin(svc.call(hold.clone()));
                    match model.start(&cfg) {
                        Ok(flight) => {
                            prop_assert!(
                                future.as_mut().poll(&mut cx).is_pending(),
                                "step {step}: admitted"
                            );
                            flights.push((future, hold, flight));
                        }
                        Err(retry_in) => match future.as_mut().poll(&mut cx) {
                            Poll::Ready(Err(TestError::Open(open))) => {
                                prop_assert_eq!(open.retry_in, retry_in, "step {}", step)
                            }
                            other => prop_assert!(
                                false,
                                "step {step}: expected a rejection, got {other:?}"
                            ),
                        },
                    }
                }
                Op::Finish(i, out) if !flights.is_empty() => {
                    let (mut future, hold, flight) = flights.remove(i % flights.len());
                    hold.release(match out {
                        Out::Ok => Reply::Ok,
                        Out::Fail => FAIL,
                        Out::Ignored => Reply::Err(ErrorKind::NotFound),
                    });
                    prop_assert!(future.as_mut().poll(&mut cx).is_ready());
                    model.finish(&cfg, flight, out);
                }
                Op::Cancel(i) if !flights.is_empty() => {
                    let (future, _, flight) = flights.remove(i % flights.len());
                    drop(future);
                    model.cancel(flight);
                }
                Op::Finish(..) | Op::Cancel(_) => {}
                Op::Advance(millis) => {
                    advance(ms(millis)).await;
                    model.now += millis * 1_000_000;
                }
                Op::TryHalfOpen => {
                    let expected = model.state() == BreakerState::Open;
                    if expected {
                        model.go(&cfg, BreakerState::HalfOpen);
                    }
                    prop_assert_eq!(breaker.try_half_open(), expected);
                }
                Op::Reset => {
                    breaker.reset();
                    model.go(&cfg, BreakerState::Closed);
                }
                Op::ForceOpen => {
                    breaker.force_open();
                    model.go(&cfg, BreakerState::ForcedOpen);
                }
            }

            let snap = breaker.snapshot();
            let m = &model;
            prop_assert_eq!(snap.state, m.state(), "step {}: {:?}", step, op_name(&snap));
            prop_assert_eq!(
                (
                    snap.successes,
                    snap.failures,
                    snap.ignored,
                    snap.cancelled,
                    snap.slow_calls,
                    snap.rejections
                ),
                (
                    m.successes,
                    m.failures,
                    m.ignored,
                    m.cancelled,
                    m.slow,
                    m.rejections
                ),
                "step {}",
                step
            );
            prop_assert_eq!(snap.transitions, m.transitions, "step {}", step);
            let (streak, permits, trial_ok) = match m.state() {
                BreakerState::HalfOpen => (0, m.permits, m.trial_ok),
                BreakerState::Closed | BreakerState::MetricsOnly => (m.streak, 0, 0),
                _ => (0, 0, 0),
            };
            prop_assert_eq!(
                (
                    snap.consecutive_failures,
                    snap.half_open_trials,
                    snap.half_open_successes
                ),
                (streak, permits, trial_ok),
                "step {}",
                step
            );
            if cfg.uses_window() {
                let w = snap.window.unwrap();
                prop_assert_eq!(
                    (w.calls, w.failures, w.slow_calls),
                    m.window(&cfg),
                    "step {}",
                    step
                );
            }
            let until = (m.state() == BreakerState::Open)
                .then(|| Duration::from_nanos(m.open_until.saturating_sub(m.now)));
            prop_assert_eq!(snap.time_until_half_open, until, "step {}", step);
        }
        Ok(())
    }

    fn op_name(snap: &qdrant_tower_layers::breaker::BreakerSnapshot) -> String {
        format!("{:?}", snap.state)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]
        #[test]
        fn the_breaker_agrees_with_a_reference_model(
            cfg in cfg_strategy(),
            ops in proptest::collection::vec(op_strategy(), 1..80),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            runtime.block_on(run(cfg, ops))?;
        }
    }
}

// ===== breakers keyed per collection =====

mod keyed {
    use super::*;
    use qdrant_tower_layers::RequestInfo;
    use qdrant_tower_layers::breaker::{BreakerKey, KeyedBreakerLayer};

    /// A request for a collection, reading or writing, that the backend answers as told.
    #[derive(Debug, Clone)]
    struct Req {
        collection: &'static str,
        read: bool,
        fail: bool,
    }

    impl RequestInfo for Req {
        fn operation(&self) -> &'static str {
            if self.read { "search" } else { "upsert" }
        }
        fn collection(&self) -> Option<&str> {
            Some(self.collection)
        }
        fn is_idempotent(&self) -> bool {
            true
        }
        fn is_read(&self) -> bool {
            self.read
        }
    }

    fn req(collection: &'static str, read: bool, fail: bool) -> Req {
        Req {
            collection,
            read,
            fail,
        }
    }

    /// Counts the calls that reached it; fails those marked so.
    fn backend(
        calls: Arc<AtomicUsize>,
    ) -> impl Service<Req, Response = (), Error = TestError, Future = impl Send> + Clone {
        tower::service_fn(move |req: Req| {
            calls.fetch_add(1, SeqCst);
            async move {
                if req.fail {
                    Err(TestError::Backend(ErrorKind::Unavailable))
                } else {
                    Ok(())
                }
            }
        })
    }

    fn registry() -> BreakerRegistry {
        let registry = BreakerRegistry::new();
        registry
            .set_tag_default(
                "qdrant",
                BreakerConfig::default()
                    .with_consecutive_failures(3)
                    .with_open_wait(Duration::from_secs(30)),
            )
            .unwrap();
        registry
    }

    async fn send<S: Service<Req, Error = TestError>>(
        svc: &mut S,
        r: Req,
    ) -> Result<(), TestError> {
        svc.ready().await?.call(r).await.map(drop)
    }

    #[tokio::test(start_paused = true)]
    async fn a_sick_collection_opens_its_own_breaker_and_the_others_keep_passing() {
        let calls = Arc::new(AtomicUsize::new(0));
        let registry = registry();
        let mut svc = ServiceBuilder::new()
            .layer(KeyedBreakerLayer::new(
                registry.clone(),
                "qdrant",
                BreakerKey::Collection,
            ))
            .service(backend(calls.clone()));
        for _ in 0..3 {
            assert!(matches!(
                send(&mut svc, req("sick", true, true)).await,
                Err(TestError::Backend(_))
            ));
        }
        let rejected = send(&mut svc, req("sick", true, false)).await;
        assert!(matches!(rejected, Err(TestError::Open(_))), "{rejected:?}");
        assert_eq!(
            calls.load(SeqCst),
            3,
            "the rejection never reached the backend"
        );
        // Another collection, through a clone of the service: its own, closed breaker.
        let mut other = svc.clone();
        for _ in 0..10 {
            send(&mut other, req("healthy", true, false)).await.unwrap();
        }
        let names: Vec<String> = registry
            .list()
            .iter()
            .map(|b| b.name().to_owned())
            .collect();
        assert_eq!(names, ["qdrant/healthy", "qdrant/sick"]);
        assert_eq!(
            registry.get("qdrant/sick").unwrap().state(),
            BreakerState::Open
        );
        assert_eq!(
            registry
                .get("qdrant/sick")
                .unwrap()
                .config()
                .consecutive_failures(),
            Some(3),
            "made with the tag's default configuration"
        );
        // A reset through the registry reaches the service.
        assert!(registry.reset("qdrant/sick"));
        send(&mut svc, req("sick", true, false)).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn failing_writes_do_not_stop_the_reads_of_the_same_collection() {
        let calls = Arc::new(AtomicUsize::new(0));
        let registry = registry();
        let layer =
            KeyedBreakerLayer::new(registry.clone(), "qdrant", BreakerKey::CollectionAndClass);
        let mut svc = layer.layer(backend(calls.clone()));
        for _ in 0..3 {
            let _ = send(&mut svc, req("docs", false, true)).await;
        }
        assert!(matches!(
            send(&mut svc, req("docs", false, false)).await,
            Err(TestError::Open(_))
        ));
        send(&mut svc, req("docs", true, false))
            .await
            .expect("reads have their own breaker");
        assert_eq!(
            registry.get("qdrant/docs/write").unwrap().state(),
            BreakerState::Open
        );
        assert_eq!(
            registry.get("qdrant/docs/read").unwrap().state(),
            BreakerState::Closed
        );
        // Keyed by collection only, the same failures stop the reads too.
        let registry = registry_fresh();
        let mut svc = KeyedBreakerLayer::new(registry, "qdrant", BreakerKey::Collection)
            .layer(backend(calls.clone()));
        for _ in 0..5 {
            let _ = send(&mut svc, req("docs", false, true)).await;
        }
        assert!(matches!(
            send(&mut svc, req("docs", true, false)).await,
            Err(TestError::Open(_))
        ));
    }

    fn registry_fresh() -> BreakerRegistry {
        BreakerRegistry::new()
    }

    #[tokio::test(start_paused = true)]
    async fn keys_past_the_cap_share_one_overflow_breaker() {
        let calls = Arc::new(AtomicUsize::new(0));
        let registry = registry();
        let layer = KeyedBreakerLayer::new(registry.clone(), "qdrant", BreakerKey::Collection)
            .with_max_keys(2);
        let mut svc = layer.layer(backend(calls.clone()));
        for name in ["a", "b", "c", "d", "e"] {
            send(&mut svc, req(name, true, false)).await.unwrap();
        }
        let mut names: Vec<String> = registry
            .list()
            .iter()
            .map(|b| b.name().to_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["qdrant/_overflow", "qdrant/a", "qdrant/b"]);
        assert!(
            layer
                .breaker_for(Some("e"), true)
                .ptr_eq(&layer.breaker_for(Some("c"), true))
        );
        assert!(
            !layer
                .breaker_for(Some("a"), true)
                .ptr_eq(&layer.breaker_for(Some("b"), true))
        );
        assert_eq!(
            registry.get("qdrant/_overflow").unwrap().snapshot().calls,
            3
        );
    }
}
