//! Telemetry of every call: a `tracing` span with OpenTelemetry's database attributes, and
//! `metrics` by operation and outcome — the whole call ([`ObserveLayer::calls`], outermost in
//! [`QdrantStack`](crate::QdrantStack)) and each attempt ([`ObserveLayer::attempts`], below the
//! breaker).
//!
//! # Metrics
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `qdrant_requests_total` | counter | `operation`, `outcome`, (`collection`) | calls, by how they ended: `ok`, an error kind (`timeout`, `unavailable`, `circuit_open`, …) or `cancelled` (the caller dropped the call) |
//! | `qdrant_request_duration_seconds` | histogram | `operation`, `outcome`, (`collection`) | whole-call latency, retries and backoffs included |
//! | `qdrant_attempts_total` | counter | `operation`, `outcome`, (`collection`) | attempts sent below the breaker, by outcome |
//! | `qdrant_attempt_duration_seconds` | histogram | `operation`, `outcome`, (`collection`) | each attempt's latency |
//!
//! `collection` is left out unless [`with_collection_labels`](ObserveLayer::with_collection_labels)
//! caps it: collection names come from requests, so an unbounded label would let callers
//! create series without bound. Past the cap, calls are labelled `_other`.
//!
//! Handles are registered on first use of each (operation, outcome) pair and kept in a table,
//! so a call neither allocates labels nor looks up the registry.
//!
//! # Spans
//!
//! One `INFO` span per call, named `qdrant` with `otel.name` = `"{operation} {collection}"`,
//! `otel.kind = "client"`, `db.system.name = "qdrant"`, `db.operation.name`,
//! `db.collection.name`, `qdrant_tower.deadline_ms` (when the request carries one), and on
//! completion `qdrant_tower.outcome`, `qdrant_tower.attempts` and `error.type` (the error kind)
//! with `otel.status_code = "ERROR"`. Each attempt is a child span (`attempt`, from the retry
//! layer). With `tracing-opentelemetry` these become OTLP client spans without configuration.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use metrics::{Counter, Histogram, SharedString};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service};
use tracing::Span;
use tracing::field::Empty;

use qdrant_tower_client::{VectorError, VectorRequest, VectorResponse};
use qdrant_tower_layers::{ErrorKind, RequestInfo};

/// How a call ended, as a label: `ok`, each error kind, `cancelled`.
const OUTCOMES: usize = ErrorKind::ALL.len() + 2;
const OK: usize = 0;
const CANCELLED: usize = OUTCOMES - 1;

fn outcome_name(index: usize) -> &'static str {
    match index {
        OK => "ok",
        CANCELLED => "cancelled",
        kind => ErrorKind::ALL[kind - 1].as_str(),
    }
}

fn outcome_of(result: &Result<VectorResponse, VectorError>) -> usize {
    match result {
        Ok(_) => OK,
        Err(error) => error.kind() as usize + 1,
    }
}

/// What a layer observes: whole calls or single attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Call,
    Attempt,
}

impl Scope {
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Scope::Call => ("qdrant_requests_total", "qdrant_request_duration_seconds"),
            Scope::Attempt => ("qdrant_attempts_total", "qdrant_attempt_duration_seconds"),
        }
    }
}

/// One label set's handles: per operation and outcome, registered on first use.
struct Handles {
    scope: Scope,
    collection: Option<SharedString>,
    cells: Box<[[Cell; OUTCOMES]]>,
}

#[derive(Default)]
struct Cell {
    count: OnceLock<Counter>,
    latency: OnceLock<Histogram>,
}

impl Handles {
    fn new(scope: Scope, collection: Option<SharedString>) -> Arc<Self> {
        let cells = (0..VectorRequest::OPERATIONS.len())
            .map(|_| std::array::from_fn(|_| Cell::default()))
            .collect();
        Arc::new(Handles {
            scope,
            collection,
            cells,
        })
    }

    fn record(&self, op: usize, outcome: usize, seconds: f64) {
        let cell = &self.cells[op][outcome];
        let labels = || {
            let mut labels = vec![
                metrics::Label::new("operation", VectorRequest::OPERATIONS[op]),
                metrics::Label::new("outcome", outcome_name(outcome)),
            ];
            if let Some(collection) = &self.collection {
                labels.push(metrics::Label::new("collection", collection.clone()));
            }
            labels
        };
        let (count, latency) = self.scope.names();
        cell.count
            .get_or_init(|| metrics::counter!(count, labels()))
            .increment(1);
        cell.latency
            .get_or_init(|| metrics::histogram!(latency, labels()))
            .record(seconds);
    }
}

/// The label sets of one layer: one without a collection, or one per collection up to a cap.
struct Labels {
    scope: Scope,
    unlabelled: Arc<Handles>,
    collections: Option<Collections>,
}

struct Collections {
    max: usize,
    known: ArcSwap<HashMap<Box<str>, Arc<Handles>>>,
    insert: Mutex<()>,
    other: Arc<Handles>,
}

impl Labels {
    fn for_collection(&self, collection: Option<&str>) -> Arc<Handles> {
        let (Some(collections), Some(name)) = (&self.collections, collection) else {
            return Arc::clone(&self.unlabelled);
        };
        if let Some(handles) = collections.known.load().get(name) {
            return Arc::clone(handles);
        }
        self.add(collections, name)
    }

    #[cold]
    fn add(&self, collections: &Collections, name: &str) -> Arc<Handles> {
        let _insert = collections
            .insert
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let known = collections.known.load();
        if let Some(handles) = known.get(name) {
            return Arc::clone(handles);
        }
        if known.len() >= collections.max {
            return Arc::clone(&collections.other);
        }
        let handles = Handles::new(self.scope, Some(SharedString::from(name.to_owned())));
        let mut next = HashMap::clone(&known);
        next.insert(name.into(), Arc::clone(&handles));
        collections.known.store(Arc::new(next));
        handles
    }
}

/// Observes the calls (or attempts) of the services it builds: see the
/// [module documentation](self).
///
/// ```
/// use qdrant_tower::observe::ObserveLayer;
/// use qdrant_tower::QdrantService;
/// use tower::ServiceBuilder;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let service = ServiceBuilder::new()
///     .layer(ObserveLayer::calls().with_collection_labels(50))
///     .service(QdrantService::from_url("http://localhost:6334")?);
/// # drop(service); Ok(()) }
/// ```
#[derive(Clone)]
pub struct ObserveLayer {
    labels: Arc<Labels>,
}

impl ObserveLayer {
    /// Whole calls: `qdrant_requests_total`, `qdrant_request_duration_seconds`, and a span
    /// per call.
    pub fn calls() -> Self {
        ObserveLayer::new(Scope::Call)
    }

    /// Single attempts (put it below the retry layer): `qdrant_attempts_total` and
    /// `qdrant_attempt_duration_seconds`; no span (the retry layer makes one per attempt).
    pub fn attempts() -> Self {
        ObserveLayer::new(Scope::Attempt)
    }

    fn new(scope: Scope) -> Self {
        describe();
        ObserveLayer {
            labels: Arc::new(Labels {
                scope,
                unlabelled: Handles::new(scope, None),
                collections: None,
            }),
        }
    }

    /// Labels metrics with the collection too, for the first `max` collections seen; later
    /// ones share the label `_other`. Default: no collection label.
    pub fn with_collection_labels(self, max: usize) -> Self {
        let scope = self.labels.scope;
        ObserveLayer {
            labels: Arc::new(Labels {
                scope,
                unlabelled: Handles::new(scope, None),
                collections: Some(Collections {
                    max,
                    known: ArcSwap::default(),
                    insert: Mutex::new(()),
                    other: Handles::new(scope, Some(SharedString::const_str("_other"))),
                }),
            }),
        }
    }
}

impl fmt::Debug for ObserveLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObserveLayer")
            .field("scope", &self.labels.scope)
            .field(
                "collection_labels",
                &self.labels.collections.as_ref().map(|c| c.max),
            )
            .finish()
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            labels: Arc::clone(&self.labels),
        }
    }
}

/// The service of an [`ObserveLayer`].
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    labels: Arc<Labels>,
}

impl<S: fmt::Debug> fmt::Debug for Observe<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observe")
            .field("inner", &self.inner)
            .field("scope", &self.labels.scope)
            .finish()
    }
}

impl<S> Service<VectorRequest> for Observe<S>
where
    S: Service<VectorRequest, Response = VectorResponse, Error = VectorError>,
{
    type Response = VectorResponse;
    type Error = VectorError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), VectorError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: VectorRequest) -> Self::Future {
        let op = request.op().index();
        let handles = self.labels.for_collection(request.collection());
        let span = match self.labels.scope {
            Scope::Attempt => Span::none(),
            Scope::Call => {
                let operation = request.operation();
                let collection = request.collection();
                let span = tracing::info_span!(
                    "qdrant",
                    otel.name = %OtelName(operation, collection),
                    otel.kind = "client",
                    otel.status_code = Empty,
                    db.system.name = "qdrant",
                    db.operation.name = operation,
                    db.collection.name = collection,
                    qdrant_tower.deadline_ms = Empty,
                    qdrant_tower.outcome = Empty,
                    qdrant_tower.attempts = Empty,
                    error.type = Empty,
                );
                if let Some(deadline) = request.deadline()
                    && !span.is_disabled()
                {
                    let left = deadline.saturating_duration_since(Instant::now());
                    span.record(
                        "qdrant_tower.deadline_ms",
                        u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
                    );
                }
                span
            }
        };
        let inner = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        ResponseFuture {
            inner,
            span,
            started: Instant::now(),
            op,
            handles,
            done: false,
        }
    }
}

/// `"{operation} {collection}"`, OpenTelemetry's span name for a database call.
struct OtelName<'a>(&'static str, Option<&'a str>);

impl fmt::Display for OtelName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(collection) => write!(f, "{} {collection}", self.0),
            None => f.write_str(self.0),
        }
    }
}

pin_project! {
    /// The future of an [`Observe`] call: the inner future, inside the call's span, and the
    /// metrics recorded when it ends (or is dropped: `cancelled`).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        started: Instant,
        op: usize,
        handles: Arc<Handles>,
        done: bool,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.done {
                let seconds = this.started.elapsed().as_secs_f64();
                this.handles.record(*this.op, CANCELLED, seconds);
                this.span.record("qdrant_tower.outcome", "cancelled");
            }
        }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<VectorResponse, VectorError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.enter();
            std::task::ready!(this.inner.poll(cx))
        };
        *this.done = true;
        let outcome = outcome_of(&result);
        this.handles
            .record(*this.op, outcome, this.started.elapsed().as_secs_f64());
        if !this.span.is_disabled() {
            this.span
                .record("qdrant_tower.outcome", outcome_name(outcome));
            if let Err(error) = &result {
                this.span.record("error.type", error.kind().as_str());
                this.span.record("otel.status_code", "ERROR");
                this.span.record("qdrant_tower.attempts", error.attempts());
            }
        }
        Poll::Ready(result)
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("operation", &VectorRequest::OPERATIONS[self.op])
            .finish_non_exhaustive()
    }
}

/// Describes this module's metrics to the installed recorder.
fn describe() {
    metrics::describe_counter!(
        "qdrant_requests_total",
        "Calls to Qdrant through the stack, by operation and outcome"
    );
    metrics::describe_histogram!(
        "qdrant_request_duration_seconds",
        metrics::Unit::Seconds,
        "Whole-call latency, retries and backoffs included, by operation and outcome"
    );
    metrics::describe_counter!(
        "qdrant_attempts_total",
        "Attempts sent to Qdrant below the breaker, by operation and outcome"
    );
    metrics::describe_histogram!(
        "qdrant_attempt_duration_seconds",
        metrics::Unit::Seconds,
        "Latency of each attempt, by operation and outcome"
    );
}

/// The handle of the Prometheus recorder: [`render`](PrometheusHandle::render) gives the text
/// a scrape expects.
#[cfg(feature = "prometheus")]
pub use metrics_exporter_prometheus::PrometheusHandle;

/// Latency buckets (seconds) for every `*_duration_seconds` histogram.
#[cfg(feature = "prometheus")]
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs a Prometheus recorder as the process's `metrics` recorder (latency histograms
/// with [`LATENCY_BUCKETS`]) and returns its handle; later calls return the same handle.
/// Call it before building stacks: metric handles are registered with the recorder
/// installed when they are made. Fails if another recorder was installed first.
///
/// Mount the text wherever you like, e.g. in your own axum app (the admin router's
/// `GET /metrics` does this):
///
/// ```no_run
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let prometheus = qdrant_tower::observe::prometheus()?;
/// let app: axum::Router = axum::Router::new().route(
///     "/metrics",
///     axum::routing::get(move || {
///         let prometheus = prometheus.clone();
///         async move { prometheus.run_upkeep(); prometheus.render() }
///     }),
/// );
/// # drop(app); Ok(()) }
/// ```
#[cfg(feature = "prometheus")]
pub fn prometheus() -> Result<PrometheusHandle, PrometheusError> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("duration_seconds".to_owned()),
                    LATENCY_BUCKETS,
                )
                .map_err(|error| error.to_string())?
                .install_recorder()
                .map_err(|error| error.to_string())
        })
        .clone()
        .map_err(PrometheusError)
}

/// Why [`prometheus`] could not install its recorder (another one was installed first).
#[cfg(feature = "prometheus")]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot install the Prometheus recorder: {0}")]
pub struct PrometheusError(String);
