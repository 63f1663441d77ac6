//! A read cache in front of the stack, opt-in per collection: bounded by entries and bytes,
//! entries live for a TTL, writes through the same service invalidate their collection, and a
//! burst of identical reads costs one backend call (single-flight).
//!
//! ```no_run
//! use std::time::Duration;
//! use qdrant_tower::cache::{CacheConfig, CacheLayer};
//! use qdrant_tower::{Client, QdrantService};
//! use tower::Layer;
//!
//! # fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let cache = CacheLayer::new(
//!     CacheConfig::new(["docs", "products"])
//!         .ttl(Duration::from_secs(30))
//!         .max_entries(10_000)
//!         .max_bytes(64 << 20),
//! );
//! let client = Client::new(cache.layer(QdrantService::from_url("http://localhost:6334")?));
//! # drop(client); Ok(()) }
//! ```
//!
//! # What is cached, and consistency
//! Reads (`VectorOp::is_read`: search, query, get, scroll, count, facet, collection info, …) on
//! a listed collection, keyed by the operation and its message's protobuf encoding (equal
//! requests share an entry; a message with map fields may encode its entries in another
//! order, which is a miss, never a wrong hit). Only successful answers are kept. Any other
//! request on a listed collection — a write — invalidates that collection's entries when it
//! starts and again when it ends (whatever its outcome: a failed write may have applied), so a
//! caller reads its own writes through the same cache. Writes made by other processes are seen
//! only when entries expire: the TTL is how stale an answer may be.
//!
//! # Cost
//! Requests that are not cached go straight through (no allocation). A cached read encodes
//! its message (the key), and runs through moka's `try_get_with`, which boxes its future.
//!
//! # Metrics
//! `qdrant_cache_requests_total{result}` — `hit` (answered from the cache, or by another
//! call's load it waited for), `miss` (this call loaded the entry) or `error` (the load failed;
//! nothing is kept) — and `qdrant_cache_invalidations_total`.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{BoxFuture, Either};
use metrics::Counter;
use pin_project_lite::pin_project;
use tower::{Layer, Service, ServiceExt};

use qdrant_tower_client::{VectorError, VectorRequest, VectorResponse};
use qdrant_tower_layers::RequestInfo;

/// What to cache and how much.
#[derive(Clone, Debug)]
#[must_use]
pub struct CacheConfig {
    collections: Vec<String>,
    ttl: Duration,
    max_entries: u64,
    max_bytes: u64,
    stale_for: Duration,
}

impl CacheConfig {
    /// Cache reads of these collections; 30 s TTL, 10 000 entries, 64 MiB.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(collections: I) -> Self {
        CacheConfig {
            collections: collections.into_iter().map(Into::into).collect(),
            ttl: Duration::from_secs(30),
            max_entries: 10_000,
            max_bytes: 64 << 20,
            stale_for: Duration::from_secs(600),
        }
    }

    /// How long the last good answer to a read is kept, past its TTL, for a
    /// [fallback](crate::fallback) to serve as stale (marked with its age) when Qdrant
    /// fails. Default 10 minutes; zero keeps none.
    pub fn stale_for(mut self, keep: Duration) -> Self {
        self.stale_for = keep;
        self
    }

    /// How long an answer is served from the cache.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The most entries kept (least recently and frequently used go first).
    pub fn max_entries(mut self, entries: u64) -> Self {
        self.max_entries = entries.max(1);
        self
    }

    /// The most bytes of answers kept (their protobuf size).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes.max(1);
        self
    }
}

/// An entry's key: the collection's generation (bumped by writes), the operation, and the
/// message's encoding.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    generation: u64,
    op: usize,
    message: Arc<[u8]>,
}

/// One listed collection's generation: writes bump it, so older entries are never looked up
/// again (they expire or are evicted).
struct Generation(AtomicU64);

/// A read's key for stale answers: the operation and the message, any generation.
#[derive(Clone, PartialEq, Eq, Hash)]
struct StaleKey {
    op: usize,
    message: Arc<[u8]>,
}

struct Shared {
    cache: moka::future::Cache<Key, Arc<VectorResponse>>,
    stale: Option<moka::future::Cache<StaleKey, (Arc<VectorResponse>, tokio::time::Instant)>>,
    collections: HashMap<Box<str>, Generation>,
    hits: Counter,
    misses: Counter,
    errors: Counter,
    invalidations: Counter,
}

/// Caches reads of chosen collections in front of a service; see the
/// [module documentation](self).
#[derive(Clone)]
pub struct CacheLayer {
    shared: Arc<Shared>,
}

impl CacheLayer {
    /// A cache by `config`.
    pub fn new(config: CacheConfig) -> Self {
        // Weigh each entry at least bytes/entries, so that the byte bound also bounds the
        // number of entries.
        let floor = (config.max_bytes / config.max_entries).max(1);
        let cache = moka::future::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(move |_key: &Key, value: &Arc<VectorResponse>| {
                let bytes = value.encoded_len() as u64;
                u32::try_from(bytes.max(floor)).unwrap_or(u32::MAX)
            })
            .time_to_live(config.ttl)
            .build();
        let stale = (!config.stale_for.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(config.max_bytes)
                .weigher(
                    move |_key: &StaleKey, (value, _): &(Arc<VectorResponse>, tokio::time::Instant)| {
                        let bytes = value.encoded_len() as u64;
                        u32::try_from(bytes.max(floor)).unwrap_or(u32::MAX)
                    },
                )
                .time_to_live(config.stale_for)
                .build()
        });
        describe();
        CacheLayer {
            shared: Arc::new(Shared {
                cache,
                stale,
                collections: config
                    .collections
                    .into_iter()
                    .map(|name| (name.into_boxed_str(), Generation(AtomicU64::new(0))))
                    .collect(),
                hits: metrics::counter!("qdrant_cache_requests_total", "result" => "hit"),
                misses: metrics::counter!("qdrant_cache_requests_total", "result" => "miss"),
                errors: metrics::counter!("qdrant_cache_requests_total", "result" => "error"),
                invalidations: metrics::counter!("qdrant_cache_invalidations_total"),
            }),
        }
    }

    /// Entries now (after moka's pending housekeeping).
    pub async fn entry_count(&self) -> u64 {
        self.shared.cache.run_pending_tasks().await;
        self.shared.cache.entry_count()
    }

    /// The last good answer to `request` (a read of a listed collection) and its age, kept
    /// for [`CacheConfig::stale_for`] after Qdrant gave it: what a fallback serves, marked
    /// stale. It may predate writes made since (through this cache or not).
    pub async fn stale(&self, request: &VectorRequest) -> Option<(VectorResponse, Duration)> {
        let stale = self.shared.stale.as_ref()?;
        if !request.is_read()
            || !request
                .collection()
                .is_some_and(|name| self.shared.collections.contains_key(name))
        {
            return None;
        }
        let key = StaleKey {
            op: request.op().index(),
            message: request.op().encode_to_vec().into(),
        };
        let (response, at) = stale.get(&key).await?;
        Some((VectorResponse::clone(&response), at.elapsed()))
    }

    /// Drops every entry of `collection` (as a write through the cache does).
    pub fn invalidate(&self, collection: &str) {
        self.shared.invalidate(collection);
    }
}

impl Shared {
    fn invalidate(&self, collection: &str) {
        if let Some(generation) = self.collections.get(collection) {
            generation.0.fetch_add(1, Ordering::AcqRel);
            self.invalidations.increment(1);
        }
    }
}

impl fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayer")
            .field(
                "collections",
                &self.shared.collections.keys().collect::<Vec<_>>(),
            )
            .field("entries", &self.shared.cache.entry_count())
            .finish()
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = Cache<S>;

    fn layer(&self, inner: S) -> Cache<S> {
        Cache {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service of a [`CacheLayer`].
#[derive(Clone)]
pub struct Cache<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for Cache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Service<VectorRequest> for Cache<S>
where
    S: Service<VectorRequest, Response = VectorResponse, Error = VectorError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = VectorResponse;
    type Error = VectorError;
    type Future = Either<Invalidating<S::Future>, Cached>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), VectorError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: VectorRequest) -> Self::Future {
        if self.shared.collections.is_empty() {
            return Either::Left(Invalidating {
                inner: self.inner.call(request),
                collection: None,
            });
        }
        let generation = request
            .collection()
            .and_then(|name| self.shared.collections.get(name));
        let Some(generation) = generation else {
            return Either::Left(Invalidating {
                inner: self.inner.call(request),
                collection: None,
            });
        };
        if !request.is_read() {
            let collection = request.collection().map(Box::<str>::from);
            if let Some(name) = &collection {
                self.shared.invalidate(name);
            }
            return Either::Left(Invalidating {
                inner: self.inner.call(request),
                collection: collection.map(|name| (name, Arc::clone(&self.shared))),
            });
        }
        let message: Arc<[u8]> = request.op().encode_to_vec().into();
        let stale_key = StaleKey {
            op: request.op().index(),
            message: Arc::clone(&message),
        };
        let key = Key {
            generation: generation.0.load(Ordering::Acquire),
            op: request.op().index(),
            message,
        };
        // The service the caller made ready goes to the load; the cache keeps a clone.
        let ready = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, ready);
        let shared = Arc::clone(&self.shared);
        Either::Right(Cached(Box::pin(async move {
            let loaded = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&loaded);
            let answer = shared
                .cache
                .try_get_with(key, async move {
                    flag.store(true, Ordering::Relaxed);
                    ready.oneshot(request).await.map(Arc::new)
                })
                .await;
            match answer {
                Ok(response) => {
                    if loaded.load(Ordering::Relaxed) {
                        shared.misses.increment(1);
                        if let Some(stale) = &shared.stale {
                            stale
                                .insert(
                                    stale_key,
                                    (Arc::clone(&response), tokio::time::Instant::now()),
                                )
                                .await;
                        }
                    } else {
                        shared.hits.increment(1);
                    }
                    Ok(VectorResponse::clone(&response))
                }
                Err(error) => {
                    shared.errors.increment(1);
                    Err(shared_error(&error))
                }
            }
        })))
    }
}

/// A cached read's future: a lookup, or the load it runs or waits for (boxed: moka's
/// single-flight API is async).
pub struct Cached(BoxFuture<'static, Result<VectorResponse, VectorError>>);

impl Future for Cached {
    type Output = Result<VectorResponse, VectorError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for Cached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cached").finish_non_exhaustive()
    }
}

/// The error of a load other calls joined: the same kind, operation, collection, message and
/// hints (the original keeps its source).
fn shared_error(error: &Arc<VectorError>) -> VectorError {
    match Arc::try_unwrap(Arc::clone(error)) {
        Ok(error) => error,
        Err(error) => VectorError::new(error.kind(), error.operation(), error.message())
            .with_collection(error.collection())
            .with_maybe_sent(error.maybe_sent())
            .with_retry_after(error.retry_after()),
    }
}

pin_project! {
    /// A request that is not a cached read: passed through, invalidating its collection again
    /// when it ends if it was a write.
    pub struct Invalidating<F> {
        #[pin]
        inner: F,
        collection: Option<(Box<str>, Arc<Shared>)>,
    }
}

impl<F> Future for Invalidating<F>
where
    F: Future<Output = Result<VectorResponse, VectorError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        if let Some((name, shared)) = this.collection.take() {
            shared.invalidate(&name);
        }
        Poll::Ready(output)
    }
}

impl<F> fmt::Debug for Invalidating<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invalidating").finish_non_exhaustive()
    }
}

fn describe() {
    metrics::describe_counter!(
        "qdrant_cache_requests_total",
        "Cached reads, by result: hit, miss (loaded from Qdrant) or error"
    );
    metrics::describe_counter!(
        "qdrant_cache_invalidations_total",
        "Collection invalidations by writes through the cache"
    );
}
