//! Fallbacks: when a read fails with a chosen kind of error — the breaker open, the health
//! gate closed, retries exhausted — answer it from somewhere else, marked.
//!
//! Sources are tried in the order they were added, the first that has an answer wins:
//! - [`stale`](FallbackLayer::stale): the last good answer to the same read, kept by the
//!   [read cache](crate::cache) past its TTL, marked with its age;
//! - [`secondary`](FallbackLayer::secondary): another service (another Qdrant, or a stack
//!   around one);
//! - [`computed`](FallbackLayer::computed): a function of the request and the error;
//! - [`static_response`](FallbackLayer::static_response): a fixed answer per operation (an
//!   empty result list, say).
//!
//! The answer is [`VectorResponse::Fallback`], which carries the source, the kind of error it
//! stands in for and, for a stale answer, its age; the typed [`Client`](crate::Client)'s reads
//! return it as an [`Answer`](crate::Answer) whose [`fallback`](crate::Answer::fallback)
//! marker is set. A caller can always tell a fallback from a fresh answer. If no source has an
//! answer, the original error stands.
//!
//! Only reads fall back (`VectorOp::is_read`): a write answered from a default would be a
//! success that did not happen. Writes degrade into the [write-behind queue](crate::queue).
//!
//! ```no_run
//! use qdrant_tower::cache::{CacheConfig, CacheLayer};
//! use qdrant_tower::fallback::FallbackLayer;
//! use qdrant_tower::qdrant::{SearchPointsBuilder, SearchResponse};
//! use qdrant_tower::{Client, QdrantService, VectorResponse};
//! use tower::ServiceBuilder;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let cache = CacheLayer::new(CacheConfig::new(["docs"]));
//! let fallback = FallbackLayer::new()
//!     .stale(cache.clone())
//!     .static_response(VectorResponse::Search(SearchResponse::default()));
//! let service = ServiceBuilder::new()
//!     .layer(fallback)
//!     .layer(cache)
//!     .service(QdrantService::from_url("http://localhost:6334")?);
//! let hits = Client::new(service)
//!     .search(SearchPointsBuilder::new("docs", vec![0.1, 0.2], 5))
//!     .await?;
//! if let Some(mark) = hits.fallback() {
//!     println!("not fresh: {} answer, Qdrant failed with {}", mark.source, mark.cause);
//! }
//! # Ok(()) }
//! ```
//!
//! # Metrics
//! `qdrant_fallbacks_total{source, cause}` for each fallback answer, and
//! `qdrant_fallback_misses_total{cause}` when no source had one.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use pin_project_lite::pin_project;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

use qdrant_tower_client::{Fallback, FallbackSource, VectorError, VectorRequest, VectorResponse};
use qdrant_tower_layers::{ErrorKind, RequestInfo};

use crate::cache::CacheLayer;

/// A function that may answer a failed read.
pub type ComputeFallback =
    Arc<dyn Fn(&VectorRequest, &VectorError) -> Option<VectorResponse> + Send + Sync>;

/// A service that may answer a failed read.
pub type SecondaryService = BoxCloneSyncService<VectorRequest, VectorResponse, VectorError>;

#[derive(Clone)]
enum Source {
    Static(Arc<HashMap<&'static str, VectorResponse>>),
    Computed(ComputeFallback),
    Stale(CacheLayer),
    Secondary(SecondaryService),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Static(answers) => f
                .debug_tuple("Static")
                .field(&answers.keys().collect::<Vec<_>>())
                .finish(),
            Source::Computed(_) => f.write_str("Computed"),
            Source::Stale(_) => f.write_str("Stale"),
            Source::Secondary(_) => f.write_str("Secondary"),
        }
    }
}

/// Answers failed reads from other sources, marked; see the [module documentation](self).
#[derive(Clone, Debug)]
#[must_use]
pub struct FallbackLayer {
    on: Vec<ErrorKind>,
    sources: Vec<Source>,
}

impl Default for FallbackLayer {
    fn default() -> Self {
        FallbackLayer::new()
    }
}

impl FallbackLayer {
    /// No source yet; falls back on the kinds of [`FallbackLayer::DEFAULT_ON`].
    pub fn new() -> Self {
        FallbackLayer {
            on: Self::DEFAULT_ON.to_vec(),
            sources: Vec::new(),
        }
    }

    /// The kinds a read falls back on by default: a breaker or health gate rejection, and
    /// the transient kinds (which reach the caller when the retries are exhausted or the
    /// deadline leaves no time for another).
    pub const DEFAULT_ON: [ErrorKind; 7] = [
        ErrorKind::CircuitOpen,
        ErrorKind::Unhealthy,
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
        ErrorKind::RateLimited,
    ];

    /// Falls back on these kinds of error only.
    pub fn on(mut self, kinds: impl IntoIterator<Item = ErrorKind>) -> Self {
        self.on = kinds.into_iter().collect();
        self
    }

    /// The kinds it falls back on.
    pub fn kinds(&self) -> &[ErrorKind] {
        &self.on
    }

    /// Answers with `response` the reads of its operation (a `VectorResponse::Search` answers
    /// searches…). Several may be given, one per operation.
    pub fn static_response(mut self, response: VectorResponse) -> Self {
        let operation = response.operation();
        if let Some(Source::Static(answers)) = self
            .sources
            .iter_mut()
            .find(|source| matches!(source, Source::Static(_)))
        {
            Arc::make_mut(answers).insert(operation, response);
        } else {
            self.sources.push(Source::Static(Arc::new(HashMap::from([(
                operation, response,
            )]))));
        }
        self
    }

    /// Answers with what `compute` returns for the failed request and its error (`None`: no
    /// answer, try the next source).
    pub fn computed<F>(mut self, compute: F) -> Self
    where
        F: Fn(&VectorRequest, &VectorError) -> Option<VectorResponse> + Send + Sync + 'static,
    {
        self.sources.push(Source::Computed(Arc::new(compute)));
        self
    }

    /// Answers with the last good answer to the same read that `cache` keeps
    /// ([`CacheConfig::stale_for`](crate::cache::CacheConfig::stale_for)), marked with its
    /// age. Give it the cache layer of the same stack.
    pub fn stale(mut self, cache: CacheLayer) -> Self {
        self.sources.push(Source::Stale(cache));
        self
    }

    /// Sends the failed read to `service` (another Qdrant, or a stack around one); its error
    /// means no answer (try the next source).
    pub fn secondary<S>(mut self, service: S) -> Self
    where
        S: Service<VectorRequest, Response = VectorResponse, Error = VectorError>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.sources
            .push(Source::Secondary(BoxCloneSyncService::new(service)));
        self
    }

    /// The same, with `cache`'s stale answers tried before the other sources.
    pub(crate) fn stale_first(mut self, cache: CacheLayer) -> Self {
        self.sources.insert(0, Source::Stale(cache));
        self
    }

    /// Whether any source was added.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

impl<S> Layer<S> for FallbackLayer {
    type Service = FallbackService<S>;

    fn layer(&self, inner: S) -> FallbackService<S> {
        FallbackService {
            inner,
            shared: (!self.sources.is_empty()).then(|| Arc::new(self.clone())),
        }
    }
}

/// The service of a [`FallbackLayer`] (a pass-through when it has no source).
#[derive(Clone)]
pub struct FallbackService<S> {
    inner: S,
    shared: Option<Arc<FallbackLayer>>,
}

impl<S> FallbackService<S> {
    /// A pass-through: no fallback.
    pub fn none(inner: S) -> Self {
        FallbackService {
            inner,
            shared: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for FallbackService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackService")
            .field("inner", &self.inner)
            .field("fallback", &self.shared)
            .finish()
    }
}

impl<S> Service<VectorRequest> for FallbackService<S>
where
    S: Service<VectorRequest, Response = VectorResponse, Error = VectorError>,
{
    type Response = VectorResponse;
    type Error = VectorError;
    type Future = FallbackFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), VectorError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: VectorRequest) -> Self::Future {
        let kept = match &self.shared {
            Some(shared) if request.is_read() => Some((request.clone(), Arc::clone(shared))),
            _ => None,
        };
        FallbackFuture {
            state: State::Primary {
                inner: self.inner.call(request),
                kept,
            },
        }
    }
}

pin_project! {
    /// The future of a [`FallbackService`] call: the call, then (rarely, boxed) the sources.
    pub struct FallbackFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Primary { #[pin] inner: F, kept: Option<(VectorRequest, Arc<FallbackLayer>)> },
        Sources { sources: BoxFuture<'static, Result<VectorResponse, VectorError>> },
    }
}

impl<F> Future for FallbackFuture<F>
where
    F: Future<Output = Result<VectorResponse, VectorError>>,
{
    type Output = Result<VectorResponse, VectorError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let next = match state.as_mut().project() {
                StateProj::Primary { inner, kept } => match std::task::ready!(inner.poll(cx)) {
                    Err(error) => match kept.take() {
                        Some((request, layer)) if layer.on.contains(&error.kind()) => {
                            State::Sources {
                                sources: Box::pin(answer(layer, request, error)),
                            }
                        }
                        _ => return Poll::Ready(Err(error)),
                    },
                    ok => return Poll::Ready(ok),
                },
                StateProj::Sources { sources } => return sources.as_mut().poll(cx),
            };
            state.set(next);
        }
    }
}

impl<F> fmt::Debug for FallbackFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackFuture").finish_non_exhaustive()
    }
}

/// Tries the sources in order for an answer to `request`, which failed with `error`.
async fn answer(
    layer: Arc<FallbackLayer>,
    request: VectorRequest,
    error: VectorError,
) -> Result<VectorResponse, VectorError> {
    let cause = error.kind();
    for source in &layer.sources {
        let found = match source {
            Source::Static(answers) => answers
                .get(request.operation())
                .map(|response| (response.clone(), FallbackSource::Static, None)),
            Source::Computed(compute) => {
                compute(&request, &error).map(|response| (response, FallbackSource::Computed, None))
            }
            Source::Stale(cache) => cache
                .stale(&request)
                .await
                .map(|(response, age)| (response, FallbackSource::Stale, Some(age))),
            Source::Secondary(service) => match service.clone().oneshot(request.clone()).await {
                Ok(response) => Some((response, FallbackSource::Secondary, None)),
                Err(secondary) => {
                    tracing::debug!(%secondary, "fallback: the secondary service failed too");
                    None
                }
            },
        };
        // An answer of another operation's type would be a wrong answer, not a fallback.
        if let Some((response, source, age)) = found
            && response.operation() == request.operation()
        {
            metrics::counter!("qdrant_fallbacks_total", "source" => source.as_str(), "cause" => cause.as_str())
                .increment(1);
            tracing::info!(
                operation = request.operation(),
                collection = request.collection(),
                %source,
                %cause,
                "answered from a fallback"
            );
            return Ok(VectorResponse::Fallback(Box::new(Fallback::new(
                response, source, cause, age,
            ))));
        }
    }
    metrics::counter!("qdrant_fallback_misses_total", "cause" => cause.as_str()).increment(1);
    Err(error)
}
