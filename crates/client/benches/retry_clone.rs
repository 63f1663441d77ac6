//! What the retry layer costs on a big write, against the call itself and the request's clone.
//!
//! The retry layer keeps a clone of every request (for a retry) and clones it again for each
//! retry. For a 1,000-point, 384-dimension upsert this measures, in one run:
//! - `upsert_1000x384/bare`: the call on a ready no-op service;
//! - `upsert_1000x384/retry`: the same call through `RetryLayer` with the default policy;
//! - `upsert_1000x384/clone`: `request.clone()` alone (and dropping the clone).
//!
//! Every call is driven by hand (`poll_ready`, `call`, one `poll` with a no-op waker), so the
//! figures hold the middleware's own cost and nothing of an executor. Each call gets a request
//! of its own, deep-copied from the message outside the timed section; dropping it is timed,
//! as it is part of every call.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-check cargo bench -p qdrant-tower-client --bench
//! retry_clone -- --warm-up-time 1 --measurement-time 3`
//!
//! The first run builds every dependency in the bench profile, Qdrant's engine included (the
//! testkit is a dev-dependency of this crate): about 13 minutes on a 2-core machine. The
//! figures and the decision they led to are in ARCHITECTURE.md ("Requests share their body").

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use qdrant_client::qdrant::{
    PointStruct, PointsOperationResponse, UpsertPoints, UpsertPointsBuilder,
};
use qdrant_tower_client::{VectorError, VectorRequest, VectorResponse};
use qdrant_tower_layers::{RetryLayer, RetryPolicy};
use tower::{Layer, Service};

const POINTS: u64 = 1_000;
const DIMENSIONS: usize = 384;

fn upsert() -> UpsertPoints {
    let points: Vec<_> = (0..POINTS)
        .map(|id| {
            let vector: Vec<f32> = (0..DIMENSIONS)
                .map(|i| ((id as usize * DIMENSIONS + i) % 97) as f32 / 97.0)
                .collect();
            PointStruct::new(id, vector, [("n", (id as i64).into())])
        })
        .collect();
    UpsertPointsBuilder::new("docs", points).wait(true).build()
}

type Noop = tower::util::ServiceFn<fn(VectorRequest) -> Ready<Result<VectorResponse, VectorError>>>;

fn noop() -> Noop {
    tower::service_fn(|_| {
        ready(Ok(VectorResponse::Upsert(
            PointsOperationResponse::default(),
        )))
    })
}

/// One call: `poll_ready`, `call`, and one `poll`, which must finish it.
#[inline(always)]
fn drive<S>(svc: &mut S, request: VectorRequest, cx: &mut Context<'_>) -> bool
where
    S: Service<VectorRequest, Response = VectorResponse, Error = VectorError>,
{
    if svc.poll_ready(cx).is_pending() {
        unreachable!("every service here is always ready");
    }
    let future = pin!(svc.call(request));
    match future.poll(cx) {
        Poll::Ready(result) => result.is_ok(),
        Poll::Pending => unreachable!("every call here finishes at once"),
    }
}

fn bench_call<S>(c: &mut Criterion, name: &str, message: &UpsertPoints, mut svc: S)
where
    S: Service<VectorRequest, Response = VectorResponse, Error = VectorError>,
{
    let mut cx = Context::from_waker(Waker::noop());
    let fresh = || VectorRequest::from(message.clone());
    assert!(
        drive(&mut svc, fresh(), &mut cx),
        "{name}: the call must succeed"
    );
    c.bench_function(name, |b| {
        b.iter_batched(
            fresh,
            |request| black_box(drive(black_box(&mut svc), request, &mut cx)),
            BatchSize::LargeInput,
        )
    });
}

fn big_upsert(c: &mut Criterion) {
    // A retry deadline would arm a Tokio timer; keep a runtime entered like the layers' bench.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();

    let message = upsert();
    bench_call(c, "upsert_1000x384/bare", &message, noop());
    let retry = RetryLayer::new(RetryPolicy::default()).unwrap();
    bench_call(c, "upsert_1000x384/retry", &message, retry.layer(noop()));
    let request = VectorRequest::from(message);
    c.bench_function("upsert_1000x384/clone", |b| {
        b.iter(|| black_box(black_box(&request).clone()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = big_upsert
}
criterion_main!(benches);
