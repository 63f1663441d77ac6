//! The breaker's call path allocates nothing: closed (success and failure), with a rate window
//! and slow-call policy, and when rejecting. Its own test binary, because it installs a
//! counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use qdrant_tower_layers::breaker::{Breaker, BreakerConfig, BreakerState, CircuitOpen};
use qdrant_tower_layers::{Classify, ErrorKind};
use tower::{Layer, Service};

/// Counts allocations made by threads that opted in, so the test harness's own threads do not
/// disturb the count.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, SeqCst);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread. One measurement at a time: the counter is shared,
/// so two tests measuring at once would count each other's allocations.
fn allocations(f: impl FnOnce()) -> usize {
    static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = MEASURING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = ALLOCATIONS.load(SeqCst);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(SeqCst) - before
}

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

fn drive<S>(svc: &mut S, n: usize) -> (usize, usize)
where
    S: Service<bool, Response = (), Error = E>,
{
    let mut cx = Context::from_waker(Waker::noop());
    let (mut ok, mut err) = (0, 0);
    for i in 0..n {
        assert!(svc.poll_ready(&mut cx).is_ready());
        let future = pin!(svc.call(i % 2 == 0));
        match future.poll(&mut cx) {
            Poll::Ready(Ok(())) => ok += 1,
            Poll::Ready(Err(_)) => err += 1,
            Poll::Pending => unreachable!("the backend answers at once"),
        }
    }
    (ok, err)
}

/// Succeeds, or fails every other call when `flaky`.
fn backend(
    flaky: bool,
) -> impl Service<bool, Response = (), Error = E, Future = Ready<Result<(), E>>> {
    tower::service_fn(move |even: bool| ready(if flaky && even { Err(E::Down) } else { Ok(()) }))
}

#[test]
fn the_call_path_does_not_allocate() {
    // Closed, default policy, successes.
    let breaker = Breaker::with_defaults("alloc");
    let mut svc = breaker.layer().layer(backend(false));
    drive(&mut svc, 100); // warm up thread-locals
    let n = allocations(|| assert_eq!(drive(&mut svc, 10_000), (10_000, 0)));
    assert_eq!(n, 0, "closed successes allocated");

    // Closed, failures that never reach the threshold (every other call fails).
    let mut svc = breaker.layer().layer(backend(true));
    drive(&mut svc, 100);
    let n = allocations(|| assert_eq!(drive(&mut svc, 10_000), (5_000, 5_000)));
    assert_eq!(n, 0, "closed failures allocated");
    assert_eq!(breaker.state(), BreakerState::Closed);

    // Closed with a count window, a failure rate and a slow-call policy.
    let windowed = Breaker::new(
        "alloc-window",
        BreakerConfig::default()
            .with_failure_rate(0.9)
            .with_slow_calls(Duration::from_secs(1), 0.9)
            .with_count_window(100),
    )
    .unwrap();
    let mut svc = windowed.layer().layer(backend(false));
    drive(&mut svc, 100);
    let n = allocations(|| assert_eq!(drive(&mut svc, 10_000), (10_000, 0)));
    assert_eq!(n, 0, "windowed calls allocated");

    // Open: rejections.
    breaker.force_open();
    let mut svc = breaker.layer().layer(backend(false));
    drive(&mut svc, 100);
    let n = allocations(|| assert_eq!(drive(&mut svc, 10_000), (0, 10_000)));
    assert_eq!(n, 0, "rejections allocated");

    // Open after tripping (rejections carry a retry time, which reads the clock).
    let tripped = Breaker::new(
        "alloc-open",
        BreakerConfig::default().with_consecutive_failures(1),
    )
    .unwrap();
    let mut svc = tripped.layer().layer(backend(true));
    drive(&mut svc, 1);
    assert_eq!(tripped.state(), BreakerState::Open);
    drive(&mut svc, 100);
    let n = allocations(|| assert_eq!(drive(&mut svc, 10_000), (0, 10_000)));
    assert_eq!(n, 0, "open rejections allocated");

    // The counter itself works.
    assert!(allocations(|| drop(Box::new(1u8))) > 0);
}

mod whole_stack {
    use super::*;
    use qdrant_tower_layers::{
        AttemptTimedOut, AttemptTimeoutLayer, DeadlineExceeded, DeadlineLayer, HealthCheck,
        HealthConfig, HealthGateLayer, RequestInfo, RetryLayer, RetryPolicy, Unhealthy,
    };
    use tokio::time::Instant;
    use tower::ServiceBuilder;

    #[derive(Debug, Clone, Copy)]
    struct Search {
        deadline: Option<Instant>,
    }

    impl RequestInfo for Search {
        fn operation(&self) -> &'static str {
            "search"
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

    #[derive(Debug)]
    #[allow(dead_code)]
    enum StackError {
        Layer(String),
    }

    impl Classify for StackError {
        fn kind(&self) -> ErrorKind {
            ErrorKind::Internal
        }
    }

    macro_rules! from {
        ($($t:ty),*) => {$(impl From<$t> for StackError {
            fn from(e: $t) -> Self { StackError::Layer(format!("{e:?}")) }
        })*};
    }
    from!(DeadlineExceeded, AttemptTimedOut, Unhealthy, CircuitOpen);

    #[test]
    fn deadline_retry_health_breaker_timeout_allocate_nothing_per_call() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        // The prober never runs (the runtime is not driven): the check stays healthy.
        let health = HealthCheck::spawn(HealthConfig::production(), || async {
            Ok::<(), String>(())
        })
        .unwrap();
        let breaker = Breaker::with_defaults("alloc-stack");
        let mut svc = ServiceBuilder::new()
            .layer(DeadlineLayer::new(Duration::from_secs(30)))
            .layer(RetryLayer::new(RetryPolicy::default()).unwrap())
            .layer(HealthGateLayer::new(health))
            .layer(breaker.layer())
            .layer(AttemptTimeoutLayer::new(Duration::from_secs(10)))
            .service(tower::service_fn(|_: Search| {
                ready(Ok::<_, StackError>(()))
            }));
        let mut cx = Context::from_waker(Waker::noop());
        let mut call = || {
            assert!(svc.poll_ready(&mut cx).is_ready());
            let future = pin!(svc.call(Search { deadline: None }));
            assert!(matches!(future.poll(&mut cx), Poll::Ready(Ok(()))));
        };
        for _ in 0..100 {
            call(); // warm up thread-locals and the budget's slots
        }
        let n = allocations(|| {
            for _ in 0..10_000 {
                call();
            }
        });
        assert_eq!(n, 0, "the stack allocated {n} times in 10,000 calls");
    }
}

/// A request for the collection `docs`; the backend fails it when `fail`.
struct Keyed {
    fail: bool,
}

impl qdrant_tower_layers::RequestInfo for Keyed {
    fn operation(&self) -> &'static str {
        "search"
    }
    fn collection(&self) -> Option<&str> {
        Some("docs")
    }
    fn is_idempotent(&self) -> bool {
        true
    }
}

#[test]
fn a_keyed_breaker_call_does_not_allocate_once_its_key_has_a_breaker() {
    use qdrant_tower_layers::breaker::{BreakerKey, BreakerRegistry, KeyedBreakerLayer};

    let layer = KeyedBreakerLayer::new(BreakerRegistry::new(), "alloc", BreakerKey::Collection);
    let mut svc = layer.layer(tower::service_fn(|request: Keyed| {
        ready(if request.fail { Err(E::Down) } else { Ok(()) })
    }));
    let mut cx = Context::from_waker(Waker::noop());
    let mut drive = |n: usize| {
        let mut ok = 0;
        for i in 0..n {
            assert!(svc.poll_ready(&mut cx).is_ready());
            let future = pin!(svc.call(Keyed { fail: i % 2 == 1 }));
            if let Poll::Ready(Ok(())) = future.poll(&mut cx) {
                ok += 1;
            }
        }
        ok
    };
    drive(100); // the key's breaker is made here, and thread-locals warmed up
    let n = allocations(|| assert_eq!(drive(10_000), 5_000));
    assert_eq!(n, 0, "keyed calls allocated");
}
