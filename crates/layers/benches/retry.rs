//! What the retry layer adds to a call that succeeds at once, against a bare no-op service.
//!
//! Every call is driven by hand (`poll_ready`, `call`, one `poll` with a no-op waker), so the
//! figures hold the middleware's own cost and nothing of an executor.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-layers cargo bench -p qdrant-tower-layers --bench retry`

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use qdrant_tower_layers::retry::{DeadlineExceeded, RetryLayer, RetryPolicy};
use qdrant_tower_layers::{Classify, ErrorKind, RequestInfo};
use tower::{Layer, Service};

#[derive(Debug)]
enum E {
    Deadline(#[allow(dead_code)] DeadlineExceeded),
}

impl Classify for E {
    fn kind(&self) -> ErrorKind {
        match self {
            E::Deadline(_) => ErrorKind::Timeout,
        }
    }
}

impl From<DeadlineExceeded> for E {
    fn from(e: DeadlineExceeded) -> Self {
        E::Deadline(e)
    }
}

#[derive(Debug, Clone, Copy)]
struct Search;

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
    let future = pin!(svc.call(Search));
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

fn success_path(c: &mut Criterion) {
    // A deadline arms a Tokio timer, which needs a runtime's time driver.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();

    bench_one(c, "success/bare", noop());
    let default = RetryLayer::new(RetryPolicy::default()).unwrap();
    bench_one(c, "success/retry", default.layer(noop()));
    let no_budget = RetryLayer::new(RetryPolicy::default().without_budget()).unwrap();
    bench_one(c, "success/retry_without_budget", no_budget.layer(noop()));
    let deadline =
        RetryLayer::new(RetryPolicy::default().with_deadline(Duration::from_secs(5))).unwrap();
    bench_one(c, "success/retry_with_deadline", deadline.layer(noop()));
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
