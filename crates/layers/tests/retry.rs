//! The retry layer's behaviour, seen from outside: what the backend saw, what the caller got,
//! and when, on Tokio's paused clock.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use qdrant_tower_layers::retry::{
    BudgetSettings, DeadlineExceeded, Jitter, KindPolicy, Retry, RetryBudget, RetryLayer,
    RetryPolicy,
};
use qdrant_tower_layers::{Classify, ErrorKind, RequestInfo};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

// ===== a scripted backend =====

#[derive(Debug, Clone, PartialEq)]
enum TestError {
    Backend(Fail),
    Deadline(DeadlineExceeded),
}

/// A failure as the backend reports it, and what the retry layer recorded on it about the
/// whole call when it was the call's final error (`Classify::record_attempts`).
#[derive(Debug, Clone, Copy)]
struct Fail {
    kind: ErrorKind,
    retry_after: Option<Duration>,
    maybe_sent: bool,
    call: Option<Call>,
}

/// `Classify::record_attempts`' arguments.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Call {
    attempts: u32,
    maybe_sent: bool,
}

/// Two failures are the same failure whatever was recorded on them.
impl PartialEq for Fail {
    fn eq(&self, other: &Self) -> bool {
        (self.kind, self.retry_after, self.maybe_sent)
            == (other.kind, other.retry_after, other.maybe_sent)
    }
}

fn fail(kind: ErrorKind) -> Fail {
    Fail {
        kind,
        retry_after: None,
        maybe_sent: true,
        call: None,
    }
}

impl Fail {
    fn after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    fn unsent(mut self) -> Self {
        self.maybe_sent = false;
        self
    }
}

impl Classify for TestError {
    fn kind(&self) -> ErrorKind {
        match self {
            TestError::Backend(f) => f.kind,
            TestError::Deadline(e) => e.kind(),
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            TestError::Backend(f) => f.retry_after,
            TestError::Deadline(_) => None,
        }
    }
    fn maybe_sent(&self) -> bool {
        match self {
            TestError::Backend(f) => f.call.map_or(f.maybe_sent, |call| call.maybe_sent),
            TestError::Deadline(e) => e.maybe_sent(),
        }
    }
    fn record_attempts(&mut self, attempts: u32, maybe_sent: bool) {
        if let TestError::Backend(f) = self {
            f.call = Some(Call {
                attempts,
                maybe_sent,
            });
        }
    }
}

impl TestError {
    /// What the retry layer recorded about the whole call.
    fn call(&self) -> Option<Call> {
        match self {
            TestError::Backend(f) => f.call,
            TestError::Deadline(_) => None,
        }
    }
}

impl From<DeadlineExceeded> for TestError {
    fn from(e: DeadlineExceeded) -> Self {
        TestError::Deadline(e)
    }
}

#[derive(Debug, Clone)]
struct Req {
    op: &'static str,
    idempotent: bool,
}

const SEARCH: Req = Req {
    op: "search",
    idempotent: true,
};
const UPSERT: Req = Req {
    op: "upsert",
    idempotent: false,
};

impl RequestInfo for Req {
    fn operation(&self) -> &'static str {
        self.op
    }
    fn collection(&self) -> Option<&str> {
        Some("docs")
    }
    fn is_idempotent(&self) -> bool {
        self.idempotent
    }
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ok,
    Err(Fail),
}

/// Answers from a script (then repeats `then`), each answer after `latency`; records when each
/// attempt started. Clones share everything, and count themselves.
struct Backend {
    script: Arc<Mutex<VecDeque<Outcome>>>,
    then: Outcome,
    latency: Duration,
    starts: Arc<Mutex<Vec<Instant>>>,
    finished: Arc<AtomicUsize>,
    ready: Arc<AtomicBool>,
    clones: Arc<AtomicUsize>,
}

impl Clone for Backend {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, SeqCst);
        Backend {
            script: self.script.clone(),
            then: self.then,
            latency: self.latency,
            starts: self.starts.clone(),
            finished: self.finished.clone(),
            ready: self.ready.clone(),
            clones: self.clones.clone(),
        }
    }
}

impl Backend {
    fn new(script: impl IntoIterator<Item = Outcome>, then: Outcome) -> Self {
        Backend {
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            then,
            latency: Duration::ZERO,
            starts: Arc::default(),
            finished: Arc::default(),
            ready: Arc::new(AtomicBool::new(true)),
            clones: Arc::default(),
        }
    }

    fn always(f: Fail) -> Self {
        Backend::new([], Outcome::Err(f))
    }

    fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    fn calls(&self) -> usize {
        self.starts.lock().unwrap().len()
    }

    /// Time between consecutive attempt starts.
    fn gaps(&self) -> Vec<Duration> {
        let starts = self.starts.lock().unwrap();
        starts.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

type BoxFut = Pin<Box<dyn Future<Output = Result<(), TestError>> + Send>>;

impl Service<Req> for Backend {
    type Response = ();
    type Error = TestError;
    type Future = BoxFut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), TestError>> {
        // Not ready means never ready (no waker kept): only a deadline ends the wait.
        if self.ready.load(SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, _: Req) -> BoxFut {
        self.starts.lock().unwrap().push(Instant::now());
        let outcome = self.script.lock().unwrap().pop_front().unwrap_or(self.then);
        let (latency, finished) = (self.latency, self.finished.clone());
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            finished.fetch_add(1, SeqCst);
            match outcome {
                Outcome::Ok => Ok(()),
                Outcome::Err(f) => Err(TestError::Backend(f)),
            }
        })
    }
}

fn setup(policy: RetryPolicy, backend: &Backend) -> Retry<Backend> {
    ServiceBuilder::new()
        .layer(RetryLayer::new(policy).unwrap())
        .service(backend.clone())
}

async fn send(svc: &mut Retry<Backend>, req: Req) -> Result<(), TestError> {
    svc.ready().await?.call(req).await
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The default table without jitter or budget, so counts and delays are exact.
fn exact() -> RetryPolicy {
    let mut policy = RetryPolicy::default().without_budget().with_seed(1);
    for kind in ErrorKind::ALL.into_iter().filter(|k| k.is_transient()) {
        let entry = policy.kind(kind).with_jitter(Jitter::None);
        policy = policy.with_kind(kind, entry);
    }
    policy
}

// ===== what is retried, how often =====

#[tokio::test(start_paused = true)]
async fn attempts_per_kind_follow_the_default_table() {
    let expected = [
        (ErrorKind::Connect, 3),
        (ErrorKind::RateLimited, 5),
        (ErrorKind::Unavailable, 3),
        (ErrorKind::Timeout, 2),
        (ErrorKind::Internal, 3),
    ];
    for (kind, attempts) in expected {
        let backend = Backend::always(fail(kind));
        let mut svc = setup(RetryPolicy::default(), &backend);
        assert_eq!(
            send(&mut svc, SEARCH).await,
            Err(TestError::Backend(fail(kind)))
        );
        assert_eq!(backend.calls(), attempts, "{kind}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_configured_entry_replaces_the_default() {
    let backend = Backend::always(fail(ErrorKind::Internal));
    let policy = RetryPolicy::default()
        .with_other_transient(KindPolicy::constant(6, ms(10)))
        .with_kind(ErrorKind::Connect, KindPolicy::never());
    let mut svc = setup(policy.clone(), &backend);
    let _ = send(&mut svc, SEARCH).await;
    assert_eq!(backend.calls(), 6);

    let backend = Backend::always(fail(ErrorKind::Connect));
    let mut svc = setup(policy, &backend);
    let _ = send(&mut svc, SEARCH).await;
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn non_transient_errors_are_never_retried() {
    for kind in ErrorKind::ALL.into_iter().filter(|k| !k.is_transient()) {
        let backend = Backend::always(fail(kind).unsent());
        let mut svc = setup(RetryPolicy::default(), &backend);
        let start = Instant::now();
        assert_eq!(
            send(&mut svc, SEARCH).await,
            Err(TestError::Backend(fail(kind).unsent()))
        );
        assert_eq!(backend.calls(), 1, "{kind}");
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_then_success_returns_the_success() {
    let backend = Backend::new(
        [
            Outcome::Err(fail(ErrorKind::Connect)),
            Outcome::Err(fail(ErrorKind::Unavailable)),
        ],
        Outcome::Ok,
    );
    let mut svc = setup(exact(), &backend);
    let start = Instant::now();
    assert_eq!(send(&mut svc, SEARCH).await, Ok(()));
    assert_eq!(backend.calls(), 3);
    // 100 ms after the Connect failure (its base), then Unavailable's second retry shape: 2 s.
    assert_eq!(backend.gaps(), [ms(100), secs(2)]);
    assert_eq!(start.elapsed(), ms(2100));
}

#[tokio::test(start_paused = true)]
async fn the_predicate_can_veto_a_retry() {
    let policy = RetryPolicy::default().with_predicate(|req, err| {
        req.operation() != "search" || err.kind() != ErrorKind::Internal
    });
    let backend = Backend::always(fail(ErrorKind::Internal));
    let mut svc = setup(policy.clone(), &backend);
    let _ = send(&mut svc, SEARCH).await;
    assert_eq!(backend.calls(), 1);

    let backend = Backend::always(fail(ErrorKind::Unavailable));
    let mut svc = setup(policy, &backend);
    let _ = send(&mut svc, SEARCH).await;
    assert_eq!(backend.calls(), 3);
}

// ===== idempotency =====

#[tokio::test(start_paused = true)]
async fn an_ambiguous_failure_of_a_write_is_returned_not_retried() {
    let backend = Backend::always(fail(ErrorKind::Unavailable));
    let mut svc = setup(RetryPolicy::default(), &backend);
    assert_eq!(
        send(&mut svc, UPSERT).await,
        Err(TestError::Backend(fail(ErrorKind::Unavailable)))
    );
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_write_that_was_never_sent_is_retried() {
    let backend = Backend::always(fail(ErrorKind::Connect).unsent());
    let mut svc = setup(RetryPolicy::default(), &backend);
    let _ = send(&mut svc, UPSERT).await;
    assert_eq!(backend.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_retried_only_for_idempotent_requests() {
    // Even a timeout that claims the request was not sent: a timed-out write may be applied.
    let backend = Backend::always(fail(ErrorKind::Timeout).unsent());
    let mut svc = setup(RetryPolicy::default(), &backend);
    let _ = send(&mut svc, UPSERT).await;
    assert_eq!(backend.calls(), 1);

    let backend = Backend::always(fail(ErrorKind::Timeout));
    let mut svc = setup(RetryPolicy::default(), &backend);
    let _ = send(&mut svc, SEARCH).await;
    assert_eq!(backend.calls(), 2);
}

// ===== delays =====

async fn gaps_of(policy: KindPolicy, seed: u64) -> Vec<Duration> {
    let backend = Backend::always(fail(ErrorKind::Unavailable));
    let policy = RetryPolicy::default()
        .without_budget()
        .with_seed(seed)
        .with_kind(ErrorKind::Unavailable, policy);
    let mut svc = setup(policy, &backend);
    let _ = send(&mut svc, SEARCH).await;
    backend.gaps()
}

#[tokio::test(start_paused = true)]
async fn without_jitter_delays_follow_each_shape_up_to_the_cap() {
    let exp = KindPolicy::exponential(7, ms(100), secs(1)).with_jitter(Jitter::None);
    let lin = KindPolicy::linear(5, ms(100), ms(350)).with_jitter(Jitter::None);
    let con = KindPolicy::constant(4, ms(70)).with_jitter(Jitter::None);
    assert_eq!(
        gaps_of(exp, 0).await,
        [ms(100), ms(200), ms(400), ms(800), secs(1), secs(1)]
    );
    assert_eq!(gaps_of(lin, 0).await, [ms(100), ms(200), ms(300), ms(350)]);
    assert_eq!(gaps_of(con, 0).await, [ms(70); 3]);
}

/// Tokio's timer rounds a sleep up to the next millisecond.
fn within(gap: Duration, low: Duration, high: Duration) -> bool {
    gap >= low && gap <= high + ms(1)
}

#[tokio::test(start_paused = true)]
async fn full_jitter_sleeps_between_zero_and_the_shape() {
    let policy = KindPolicy::exponential(6, ms(100), ms(1000));
    let mut all = Vec::new();
    for seed in 0..40 {
        let gaps = gaps_of(policy, seed).await;
        assert_eq!(gaps.len(), 5);
        for (n, gap) in gaps.iter().enumerate() {
            let shape = policy.shape(n as u32);
            assert!(
                within(*gap, Duration::ZERO, shape),
                "retry {n}: {gap:?} > {shape:?}"
            );
        }
        all.extend(gaps);
    }
    // Spread over the range, not stuck at one end.
    let short = all.iter().filter(|g| **g < ms(50)).count();
    assert!(
        short > 0 && short < all.len() / 2,
        "{short} of {}",
        all.len()
    );
}

#[tokio::test(start_paused = true)]
async fn equal_jitter_sleeps_between_half_the_shape_and_the_shape() {
    let policy = KindPolicy::exponential(6, ms(100), ms(1000)).with_jitter(Jitter::Equal);
    let mut distinct = std::collections::HashSet::new();
    for seed in 0..40 {
        for (n, gap) in gaps_of(policy, seed).await.into_iter().enumerate() {
            let shape = policy.shape(n as u32);
            assert!(
                within(gap, shape / 2, shape),
                "retry {n}: {gap:?} vs {shape:?}"
            );
            distinct.insert(gap);
        }
    }
    assert!(distinct.len() > 20);
}

#[tokio::test(start_paused = true)]
async fn decorrelated_jitter_sleeps_between_base_and_three_times_the_last_delay() {
    let policy = KindPolicy::exponential(8, ms(100), secs(2)).with_jitter(Jitter::Decorrelated);
    for seed in 0..40 {
        let gaps = gaps_of(policy, seed).await;
        let mut previous = ms(100);
        for gap in gaps {
            let high = (previous * 3).min(secs(2));
            assert!(
                within(gap, ms(100), high),
                "{gap:?} outside [100ms, {high:?}]"
            );
            previous = gap;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_replays_the_same_delays() {
    let policy = KindPolicy::exponential(6, ms(100), ms(1000));
    assert_eq!(gaps_of(policy, 7).await, gaps_of(policy, 7).await);
    assert_ne!(gaps_of(policy, 7).await, gaps_of(policy, 8).await);
}

// ===== server pushback =====

#[tokio::test(start_paused = true)]
async fn retry_after_is_a_floor_on_every_delay() {
    let backend = Backend::always(fail(ErrorKind::RateLimited).after(secs(3)));
    let mut svc = setup(exact(), &backend);
    let _ = send(&mut svc, SEARCH).await;
    // Shape 0.5, 1, 2, 4 s; never sooner than 3 s.
    assert_eq!(backend.gaps(), [secs(3), secs(3), secs(3), secs(4)]);

    // With jitter too, and above the kind's cap.
    let backend = Backend::always(fail(ErrorKind::RateLimited).after(secs(45)));
    let mut svc = setup(RetryPolicy::default(), &backend);
    let _ = send(&mut svc, SEARCH).await;
    assert_eq!(backend.calls(), 5);
    assert!(
        backend.gaps().iter().all(|g| *g >= secs(45)),
        "{:?}",
        backend.gaps()
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_past_the_deadline_returns_the_error_at_once() {
    let pushback = fail(ErrorKind::RateLimited).after(secs(10));
    let backend = Backend::always(pushback);
    let mut svc = setup(RetryPolicy::default().with_deadline(secs(5)), &backend);
    let start = Instant::now();
    assert_eq!(
        send(&mut svc, SEARCH).await,
        Err(TestError::Backend(pushback))
    );
    assert_eq!(backend.calls(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

// ===== deadline =====

#[tokio::test(start_paused = true)]
async fn no_attempt_starts_after_the_deadline_and_the_call_returns_by_it() {
    // Each attempt takes 1 s and fails; 500 ms between attempts; 2.2 s in all.
    let backend = Backend::always(fail(ErrorKind::Unavailable)).with_latency(secs(1));
    let policy = exact()
        .with_kind(
            ErrorKind::Unavailable,
            KindPolicy::constant(10, ms(500)).with_jitter(Jitter::None),
        )
        .with_deadline(ms(2200));
    let mut svc = setup(policy, &backend);
    let start = Instant::now();
    let result = send(&mut svc, SEARCH).await;
    assert_eq!(
        start.elapsed(),
        ms(2200),
        "the call returns at its deadline"
    );
    match result {
        Err(TestError::Deadline(e)) => {
            assert_eq!((e.deadline, e.attempts), (ms(2200), Some(2)));
            assert_eq!(e.kind(), ErrorKind::Timeout);
        }
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }
    let starts = backend.starts.lock().unwrap().clone();
    assert_eq!(starts, [start, start + ms(1500)]);
    assert_eq!(
        backend.finished.load(SeqCst),
        1,
        "the attempt in flight at the deadline was dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn a_backoff_that_would_end_past_the_deadline_returns_the_last_error_at_once() {
    let backend = Backend::always(fail(ErrorKind::Unavailable));
    let policy = exact()
        .with_kind(
            ErrorKind::Unavailable,
            KindPolicy::constant(5, ms(400)).with_jitter(Jitter::None),
        )
        .with_deadline(secs(1));
    let mut svc = setup(policy, &backend);
    let start = Instant::now();
    assert_eq!(
        send(&mut svc, SEARCH).await,
        Err(TestError::Backend(fail(ErrorKind::Unavailable)))
    );
    // Attempts at 0, 400 and 800 ms; a fourth at 1200 ms would be past the deadline.
    assert_eq!(backend.calls(), 3);
    assert_eq!(start.elapsed(), ms(800));
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_readiness_but_not_past_the_deadline() {
    let backend = Backend::always(fail(ErrorKind::Unavailable));
    let policy = exact().with_deadline(secs(5));
    let mut svc = setup(policy, &backend);
    svc.ready().await.unwrap();
    backend.ready.store(false, SeqCst);
    let start = Instant::now();
    // Called while ready; the retry, 1 s later, finds the backend not ready.
    let result = svc.call(SEARCH).await;
    assert_eq!(
        result,
        Err(TestError::Backend(fail(ErrorKind::Unavailable)))
    );
    assert_eq!(backend.calls(), 1);
    assert_eq!(start.elapsed(), secs(5));
}

#[tokio::test(start_paused = true)]
async fn only_a_retried_call_clones_the_inner_service_once_for_all_its_retries() {
    let backend = Backend::new(
        [
            Outcome::Ok,
            Outcome::Err(fail(ErrorKind::Unavailable)),
            Outcome::Err(fail(ErrorKind::Unavailable)),
        ],
        Outcome::Ok,
    );
    let mut svc = setup(exact(), &backend);
    let clones = || backend.clones.load(SeqCst);
    let built = clones();
    // Succeeds at once: nothing cloned.
    assert_eq!(send(&mut svc, SEARCH).await, Ok(()));
    assert_eq!((backend.calls(), clones()), (1, built));
    // Fails twice, then succeeds: its two retries run on one clone.
    assert_eq!(send(&mut svc, SEARCH).await, Ok(()));
    assert_eq!((backend.calls(), clones()), (4, built + 1));
    // A clone of the retry service clones the backend once (its own inner service) and
    // shares the spare its retries are cloned from.
    let mut twin = svc.clone();
    assert_eq!(clones(), built + 2);
    assert_eq!(send(&mut twin, SEARCH).await, Ok(()));
    assert_eq!(clones(), built + 2);
}

// ===== budget =====

#[tokio::test(start_paused = true)]
async fn under_total_failure_the_budget_keeps_retries_to_a_fifth_of_traffic_plus_the_floor() {
    let backend = Backend::always(fail(ErrorKind::Unavailable));
    let svc = setup(RetryPolicy::default().with_seed(3), &backend);
    let (rate, seconds) = (50u64, 60u64);
    let requests = rate * seconds;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..requests {
        tokio::time::sleep(Duration::from_millis(1000 / rate)).await;
        let mut svc = svc.clone();
        tasks.push(tokio::spawn(async move { send(&mut svc, SEARCH).await }));
    }
    for task in tasks {
        assert!(task.await.unwrap().is_err());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let settings = BudgetSettings::default();
    let floor = f64::from(settings.min_per_sec);
    let ttl = settings.ttl.as_secs_f64();
    let attempts = backend.calls() as f64;
    let n = requests as f64;
    // The budget starts full (floor * ttl retries), hence the `+ ttl` (see RetryBudget).
    let bound = 1.2 * n + floor * (elapsed + ttl);
    println!("requests {n}, attempts {attempts}, bound {bound:.0}, over {elapsed:.1} s");
    assert!(attempts <= bound, "{attempts} attempts > {bound}");
    assert!(attempts < 1.5 * n, "without a budget it would be 3 × {n}");
    assert!(attempts > n, "some retries were still made");
    assert!(
        svc.budget().unwrap().refusals() > 0,
        "the budget refused retries"
    );
}

#[tokio::test(start_paused = true)]
async fn clones_and_sibling_services_share_one_budget() {
    let backend = Backend::always(fail(ErrorKind::Connect));
    let policy = exact()
        .with_budget(BudgetSettings {
            ttl: secs(1),
            min_per_sec: 3,
            retry_percent: 0.0,
        })
        .with_kind(
            ErrorKind::Connect,
            KindPolicy::constant(2, ms(1)).with_jitter(Jitter::None),
        );
    let layer = RetryLayer::new(policy).unwrap();
    let mut a = layer.layer(backend.clone());
    let mut b = a.clone();
    let mut c = layer.layer(backend.clone());
    for _ in 0..2 {
        let _ = send(&mut a, SEARCH).await;
        let _ = send(&mut b, SEARCH).await;
        let _ = send(&mut c, SEARCH).await;
    }
    // 6 calls, but only 3 retries in the one shared budget.
    assert_eq!(backend.calls(), 9);
    assert_eq!(layer.budget().unwrap().refusals(), 3);
    assert!(a.budget().unwrap().ptr_eq(c.budget().unwrap()));
}

#[tokio::test(start_paused = true)]
async fn one_budget_can_be_shared_by_two_layers() {
    let budget = RetryBudget::new(secs(1), 1, 0.0);
    let backend = Backend::always(fail(ErrorKind::Connect));
    let layer = |p: RetryPolicy| RetryLayer::new(p).unwrap().with_budget(budget.clone());
    let mut a = layer(exact()).layer(backend.clone());
    let mut b = layer(RetryPolicy::default()).layer(backend.clone());
    let _ = send(&mut a, SEARCH).await;
    let _ = send(&mut b, SEARCH).await;
    // One retry in the shared floor: 2 attempts for the first call, 1 for the second.
    assert_eq!(backend.calls(), 2 + 1);
    assert_eq!(budget.refusals(), 2);
}

// ===== editing the table =====

#[tokio::test(start_paused = true)]
async fn one_field_of_one_kind_changes_and_the_rest_of_the_table_stays() {
    let policy = exact().with_attempts(ErrorKind::Unavailable, 4);
    assert_eq!(
        policy.kind(ErrorKind::Connect),
        exact().kind(ErrorKind::Connect)
    );
    let backend = Backend::always(fail(ErrorKind::Unavailable));
    let mut svc = setup(policy, &backend);
    send(&mut svc, SEARCH).await.unwrap_err();
    assert_eq!(backend.calls(), 4);
    // The default row's delays, unjittered: 1 s, 2 s, 4 s.
    assert_eq!(backend.gaps(), [secs(1), secs(2), secs(4)]);

    let policy = exact()
        .with_base_delay(ErrorKind::Unavailable, ms(50))
        .with_max_delay(ErrorKind::Unavailable, ms(80));
    let backend = Backend::always(fail(ErrorKind::Unavailable));
    let mut svc = setup(policy, &backend);
    send(&mut svc, SEARCH).await.unwrap_err();
    assert_eq!(
        backend.gaps(),
        [ms(50), ms(80)],
        "3 attempts as before, new delays"
    );
}

#[tokio::test(start_paused = true)]
async fn a_time_scale_shrinks_every_delay_but_never_the_servers_retry_after() {
    let backend = Backend::always(fail(ErrorKind::Unavailable));
    let mut svc = setup(exact().with_time_scale(0.01), &backend);
    send(&mut svc, SEARCH).await.unwrap_err();
    assert_eq!(backend.gaps(), [ms(10), ms(20)]);

    let pushback = fail(ErrorKind::RateLimited).after(secs(2));
    let backend = Backend::new([Outcome::Err(pushback)], Outcome::Ok);
    let mut svc = setup(exact().with_time_scale(0.01), &backend);
    send(&mut svc, SEARCH).await.unwrap();
    assert_eq!(backend.gaps(), [secs(2)], "the server's word is a floor");

    for factor in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let Err(error) = RetryLayer::new(RetryPolicy::default().with_time_scale(factor)) else {
            panic!("a time scale of {factor} is refused");
        };
        assert_eq!(error.field(), "time_scale", "{factor}");
    }
}

// ===== what the caller learns about the whole call =====

/// A retry rejected without being sent (an open breaker, an unhealthy backend below the retry
/// layer) after an attempt that may have reached the server.
fn sent_then_rejected() -> Backend {
    Backend::new(
        [Outcome::Err(fail(ErrorKind::Unavailable))],
        Outcome::Err(fail(ErrorKind::CircuitOpen).unsent()),
    )
}

#[tokio::test(start_paused = true)]
async fn the_final_error_says_maybe_sent_when_any_attempt_may_have_been_sent() {
    let backend = sent_then_rejected();
    let mut svc = setup(exact(), &backend);
    let err = send(&mut svc, SEARCH).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::CircuitOpen,
        "the last attempt's own error"
    );
    assert_eq!(
        err.call(),
        Some(Call {
            attempts: 2,
            maybe_sent: true
        }),
        "the first attempt reached the server, so the call may have been applied"
    );
    assert!(err.maybe_sent());
}

#[tokio::test(start_paused = true)]
async fn the_final_error_says_not_sent_only_when_no_attempt_was_sent() {
    // A write refused twice before it left, then rejected by the breaker.
    let backend = Backend::new(
        [
            Outcome::Err(fail(ErrorKind::Connect).unsent()),
            Outcome::Err(fail(ErrorKind::Connect).unsent()),
        ],
        Outcome::Err(fail(ErrorKind::CircuitOpen).unsent()),
    );
    let mut svc = setup(exact(), &backend);
    let err = send(&mut svc, UPSERT).await.unwrap_err();
    assert_eq!(
        err.call(),
        Some(Call {
            attempts: 3,
            maybe_sent: false
        })
    );
    assert!(!err.maybe_sent());

    // A single attempt is recorded too: the caller always learns the count.
    let backend = Backend::always(fail(ErrorKind::InvalidRequest));
    let mut svc = setup(exact(), &backend);
    let err = send(&mut svc, SEARCH).await.unwrap_err();
    assert_eq!(
        err.call(),
        Some(Call {
            attempts: 1,
            maybe_sent: true
        })
    );
}

#[tokio::test(start_paused = true)]
async fn tower_retry_with_the_policy_records_the_whole_call_too() {
    let backend = sent_then_rejected();
    let policy = RetryLayer::new(exact()).unwrap().tower_policy();
    let mut svc = tower::retry::Retry::new(policy, backend.clone());
    let err = svc.ready().await.unwrap().call(SEARCH).await.unwrap_err();
    assert_eq!(backend.calls(), 2);
    assert_eq!(
        err.call(),
        Some(Call {
            attempts: 2,
            maybe_sent: true
        })
    );
}

// ===== any error type, observability =====

#[tokio::test(start_paused = true)]
async fn services_erroring_with_box_error_work_behind_retry() {
    let calls = Arc::new(AtomicUsize::new(0));
    let backend = {
        let calls = calls.clone();
        tower::service_fn(move |_: Req| {
            calls.fetch_add(1, SeqCst);
            async { Err::<(), tower::BoxError>("boom".into()) }
        })
    };
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(exact()).unwrap())
        .service(backend);
    let err = svc.ready().await.unwrap().call(SEARCH).await.unwrap_err();
    assert_eq!(err.to_string(), "boom");
    assert_eq!(
        calls.load(SeqCst),
        3,
        "an unknown boxed error is Internal: 3 attempts"
    );

    let hang = tower::service_fn(|_: Req| std::future::pending::<Result<(), tower::BoxError>>());
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(exact().with_deadline(secs(1))).unwrap())
        .service(hang);
    let err = svc.ready().await.unwrap().call(SEARCH).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.is::<DeadlineExceeded>());
}

/// Counts every counter by `name{label=value,…}`.
#[derive(Default)]
struct Counts(Mutex<std::collections::HashMap<String, Arc<std::sync::atomic::AtomicU64>>>);

impl Counts {
    fn get(&self, name: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |c| c.load(SeqCst))
    }
}

impl metrics::Recorder for Counts {
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
        let labels: Vec<_> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        metrics::Counter::from_arc(self.0.lock().unwrap().entry(name).or_default().clone())
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
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
async fn retries_budget_refusals_and_deadlines_are_counted() {
    let counts = Counts::default();
    // Delays of 100 and 200 ms: both retries fall within the budget's 1 s window (a retry a
    // full window after the last one would be paid by the floor again).
    let policy = exact()
        .with_time_scale(0.1)
        .with_budget(BudgetSettings {
            ttl: secs(1),
            min_per_sec: 1,
            retry_percent: 0.0,
        })
        .with_deadline(secs(30));
    let layer = metrics::with_local_recorder(&counts, || RetryLayer::new(policy).unwrap());

    let backend = Backend::always(fail(ErrorKind::Unavailable));
    let mut svc = layer.layer(backend.clone());
    let _ = send(&mut svc, SEARCH).await;
    // One retry from the floor, then the budget refuses the second.
    assert_eq!(backend.calls(), 2);
    assert_eq!(counts.get("retries_total{kind=unavailable}"), 1);
    assert_eq!(
        counts.get("retry_budget_exhausted_total{kind=unavailable}"),
        1
    );
    assert_eq!(layer.budget().unwrap().refusals(), 1);

    let slow = Backend::always(fail(ErrorKind::Unavailable)).with_latency(secs(60));
    let mut svc = layer.layer(slow);
    assert!(matches!(
        send(&mut svc, SEARCH).await,
        Err(TestError::Deadline(_))
    ));
    assert_eq!(counts.get("retry_deadline_exceeded_total{}"), 1);
}
