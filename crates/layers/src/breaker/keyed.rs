//! One breaker per key (a collection, or a collection and a read/write class), created on
//! demand from a [`BreakerRegistry`], so that one sick collection does not fail-fast the others.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use tower_layer::Layer;
use tower_service::Service;

use super::error::CircuitOpen;
use super::future::ResponseFuture;
use super::handle::Breaker;
use super::registry::BreakerRegistry;
use crate::{Classify, RequestInfo};

/// How a [`KeyedBreakerLayer`] picks a request's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum BreakerKey {
    /// One breaker per collection ([`RequestInfo::collection`]), named `{prefix}/{collection}`;
    /// requests without a collection share `{prefix}/_none`.
    #[default]
    Collection,
    /// One breaker per collection and class, `{prefix}/{collection}/read` and
    /// `{prefix}/{collection}/write` ([`RequestInfo::is_read`]): failing writes (a full disk, a
    /// stuck optimizer) do not stop the reads of the same collection.
    CollectionAndClass,
}

/// The most keys a [`KeyedBreakerLayer`] makes breakers for by default; see
/// [`KeyedBreakerLayer::with_max_keys`].
pub const DEFAULT_MAX_KEYS: usize = 256;

/// Applies a breaker per key: per collection, or per collection and read/write class.
///
/// Each key's breaker is made on its first request from the [`BreakerRegistry`] (its name
/// `{prefix}/{collection}[/{read|write}]`, its configuration the registry's default for the
/// layer's tag), so an admin API lists, resets and reconfigures them there. Once a key has its
/// breaker, a call looks it up in a copy-on-write map without a lock or an allocation, then
/// takes the breaker's own lock-free path.
///
/// At most [`max_keys`](Self::with_max_keys) keys get breakers of their own (default
/// [`DEFAULT_MAX_KEYS`]); requests for any further key share the breaker
/// `{prefix}/_overflow`, so untrusted collection names cannot grow memory without bound.
///
/// Unlike [`CircuitBreaker`](super::CircuitBreaker), `poll_ready` cannot know the breaker
/// (the key is in the request), so it only forwards to the inner service, and a rejection is
/// decided in `call` (never sent; the error is built with `From<CircuitOpen>`). Backpressure
/// (`with_backpressure`) does not apply here.
///
/// ```
/// use qdrant_tower_layers::breaker::{BreakerConfig, BreakerKey, BreakerRegistry, KeyedBreakerLayer};
///
/// let registry = BreakerRegistry::new();
/// registry.set_tag_default("qdrant", BreakerConfig::default().with_consecutive_failures(3))?;
/// let layer = KeyedBreakerLayer::new(registry.clone(), "qdrant", BreakerKey::Collection);
/// // ServiceBuilder::new().layer(layer).service(qdrant_service)
/// # let _ = layer;
/// # Ok::<(), qdrant_tower_layers::breaker::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct KeyedBreakerLayer {
    set: Arc<KeyedSet>,
}

/// The breakers a keyed layer (and every service it made) shares.
struct KeyedSet {
    registry: BreakerRegistry,
    prefix: Arc<str>,
    key: BreakerKey,
    max_keys: usize,
    /// Per class (0: reads or no class, 1: writes), collection → breaker. Read without a lock;
    /// replaced whole (under `insert`) when a key is added.
    known: [ArcSwap<HashMap<Box<str>, Breaker>>; 2],
    insert: Mutex<()>,
}

impl KeyedBreakerLayer {
    /// Breakers from `registry`, named and tagged `prefix`, keyed by `key`.
    pub fn new(registry: BreakerRegistry, prefix: impl Into<Arc<str>>, key: BreakerKey) -> Self {
        KeyedBreakerLayer {
            set: Arc::new(KeyedSet {
                registry,
                prefix: prefix.into(),
                key,
                max_keys: DEFAULT_MAX_KEYS,
                known: Default::default(),
                insert: Mutex::new(()),
            }),
        }
    }

    /// At most `max_keys` keys get a breaker of their own; the rest share
    /// `{prefix}/_overflow`. Default: [`DEFAULT_MAX_KEYS`].
    pub fn with_max_keys(self, max_keys: usize) -> Self {
        let set = &*self.set;
        KeyedBreakerLayer {
            set: Arc::new(KeyedSet {
                registry: set.registry.clone(),
                prefix: set.prefix.clone(),
                key: set.key,
                max_keys,
                known: Default::default(),
                insert: Mutex::new(()),
            }),
        }
    }

    /// The breaker a request for `collection` (of the read class if `read`) goes through,
    /// made if it is the key's first use. What `call` does, for tests and admin tools.
    pub fn breaker_for(&self, collection: Option<&str>, read: bool) -> Breaker {
        self.set.breaker(collection, read)
    }

    /// The registry the breakers live in.
    pub fn registry(&self) -> &BreakerRegistry {
        &self.set.registry
    }
}

impl KeyedSet {
    fn breaker(&self, collection: Option<&str>, read: bool) -> Breaker {
        let class = usize::from(self.key == BreakerKey::CollectionAndClass && !read);
        let name = collection.unwrap_or("_none");
        if let Some(breaker) = self.known[class].load().get(name) {
            return breaker.clone();
        }
        self.make(class, name)
    }

    /// The slow path: the key's first request.
    #[cold]
    fn make(&self, class: usize, name: &str) -> Breaker {
        let _insert = self.insert.lock().unwrap_or_else(PoisonError::into_inner);
        let known = self.known[class].load();
        if let Some(breaker) = known.get(name) {
            return breaker.clone();
        }
        let keys: usize = self.known.iter().map(|map| map.load().len()).sum();
        let suffix = match (self.key, class) {
            (BreakerKey::Collection, _) => "",
            (_, 0) => "/read",
            _ => "/write",
        };
        let full = if keys >= self.max_keys {
            format!("{}/_overflow", self.prefix)
        } else {
            format!("{}/{name}{suffix}", self.prefix)
        };
        let breaker = self.registry.get_or_create(&full, &self.prefix);
        if keys < self.max_keys {
            let mut next = HashMap::clone(&known);
            next.insert(name.into(), breaker.clone());
            self.known[class].store(Arc::new(next));
        }
        breaker
    }
}

impl<S> Layer<S> for KeyedBreakerLayer {
    type Service = KeyedBreaker<S>;

    fn layer(&self, inner: S) -> KeyedBreaker<S> {
        KeyedBreaker {
            inner,
            set: self.set.clone(),
        }
    }
}

impl fmt::Debug for KeyedBreakerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakerLayer")
            .field("prefix", &self.set.prefix)
            .field("key", &self.set.key)
            .field("max_keys", &self.set.max_keys)
            .finish_non_exhaustive()
    }
}

/// A service gated by one circuit breaker per key; see [`KeyedBreakerLayer`].
///
/// Clones share the breakers.
#[derive(Clone)]
pub struct KeyedBreaker<S> {
    inner: S,
    set: Arc<KeyedSet>,
}

impl<S> KeyedBreaker<S> {
    /// Get a reference to the inner service
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Get a mutable reference to the inner service
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consume `self`, returning the inner service
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for KeyedBreaker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreaker")
            .field("inner", &self.inner)
            .field("prefix", &self.set.prefix)
            .finish_non_exhaustive()
    }
}

impl<S, Req> Service<Req> for KeyedBreaker<S>
where
    S: Service<Req>,
    S::Error: Classify + From<CircuitOpen>,
    Req: RequestInfo,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let breaker = self.set.breaker(request.collection(), request.is_read());
        match breaker.shared.admit(&breaker.lanes) {
            Ok(guard) => ResponseFuture::called(self.inner.call(request), guard),
            Err(open) => {
                breaker.shared.count_rejection(&breaker.lanes);
                ResponseFuture::rejected(S::Error::from(open))
            }
        }
    }
}
