//! [`QdrantStack`]: the recommended stack — deadline → retry → health gate → circuit breaker →
//! attempt timeout → [`QdrantService`] — built from a [`Profile`] in a few lines, with a
//! nameable service type and hooks for your own layers.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tower::Layer;
use tower::layer::util::{Identity, Stack};

use qdrant_tower_client::{
    PoolStats, QdrantService, QdrantServiceBuilder, VectorError, VectorRequest, VectorResponse,
};
use qdrant_tower_layers::breaker::{
    Breaker, BreakerConfig, BreakerKey, BreakerRegistry, CircuitBreaker, CircuitOpen, KeyedBreaker,
    KeyedBreakerLayer,
};
use qdrant_tower_layers::health::{
    HealthCheck, HealthConfig, HealthGate, HealthGateLayer, HealthStatus,
};
use qdrant_tower_layers::hedge::{Hedge, HedgeLayer};
use qdrant_tower_layers::retry::{Retry, RetryLayer, RetryPolicy};
use qdrant_tower_layers::{
    AttemptTimeout, AttemptTimeoutLayer, Classify, ConfigError as LayerConfigError, Deadline,
    DeadlineLayer, ErrorKind, RequestInfo, SharedDuration,
};

use crate::Client;
use crate::cache::{Cache, CacheConfig, CacheLayer};
use crate::config::{
    ConfigError, ConfigLoader, ConfigWatcher, InvalidConfig, Keyed, Secret, StackConfig,
};
use crate::fallback::{FallbackLayer, FallbackService};
use crate::observe::{Observe, ObserveLayer};
use crate::queue::{QueueConfig, WriteBehind, WriteBehindHandle, WriteBehindLayer};

/// Where the stack runs; each profile sets the defaults below (every one can be overridden on
/// the builder).
///
/// | | development | staging | production | testing |
/// |---|---|---|---|---|
/// | connections per endpoint | 1 | 2 | 5 | 1 |
/// | attempts per call, at most | 2 | 3 | 5 | 1 |
/// | health probe every | 60 s | 30 s | 15 s | 5 s |
/// | breaker open for | 30 s | 60 s | 60 s | 60 s |
/// | deadline per call | 30 s | 10 s | 10 s | 5 s |
/// | timeout per attempt | 10 s | 5 s | 5 s | 2 s |
///
/// The attempts cap each kind's row of the default retry table (DESIGN.md: `Connect` 3,
/// `RateLimited` 5, `Unavailable` 3, `Timeout` 2, others 3), so production keeps the whole
/// table and testing does not retry. Connection counts are the seeds' minimums (their maximums
/// 5 / 8 / 20 / 2 are for a growing pool, not built yet).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Profile {
    /// A developer's machine: patient timeouts, a short open wait, few retries.
    Development,
    /// A shared pre-production environment.
    Staging,
    /// The default: the full retry table, frequent health probes.
    #[default]
    Production,
    /// Automated tests: fail fast, no retries, frequent probes.
    Testing,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 4] = [
        Profile::Development,
        Profile::Staging,
        Profile::Production,
        Profile::Testing,
    ];

    /// The profile's name (`"development"`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Profile::Development => "development",
            Profile::Staging => "staging",
            Profile::Production => "production",
            Profile::Testing => "testing",
        }
    }

    /// Connections per endpoint.
    pub const fn connections(self) -> usize {
        match self {
            Profile::Development | Profile::Testing => 1,
            Profile::Staging => 2,
            Profile::Production => 5,
        }
    }

    /// The most connections per endpoint the pool grows to under load.
    pub const fn max_connections(self) -> usize {
        match self {
            Profile::Development => 5,
            Profile::Staging => 8,
            Profile::Production => 20,
            Profile::Testing => 2,
        }
    }

    /// The most attempts any call makes.
    pub const fn max_attempts(self) -> u32 {
        match self {
            Profile::Development => 2,
            Profile::Staging => 3,
            Profile::Production => 5,
            Profile::Testing => 1,
        }
    }

    /// The whole call's deadline.
    pub const fn deadline(self) -> Duration {
        match self {
            Profile::Development => Duration::from_secs(30),
            Profile::Staging | Profile::Production => Duration::from_secs(10),
            Profile::Testing => Duration::from_secs(5),
        }
    }

    /// Each attempt's timeout.
    pub const fn attempt_timeout(self) -> Duration {
        match self {
            Profile::Development => Duration::from_secs(10),
            Profile::Staging | Profile::Production => Duration::from_secs(5),
            Profile::Testing => Duration::from_secs(2),
        }
    }

    /// The retry table: the default one, each kind's attempts capped at
    /// [`max_attempts`](Self::max_attempts).
    pub fn retry(self) -> RetryPolicy {
        let cap = self.max_attempts();
        let mut policy = RetryPolicy::default();
        for kind in ErrorKind::ALL
            .into_iter()
            .filter(|kind| kind.is_transient())
        {
            let attempts = policy.kind(kind).max_attempts.min(cap);
            policy = policy.with_attempts(kind, attempts);
        }
        policy
    }

    /// The breaker: DESIGN.md's defaults (5 failures open it, 3 half-open trials, 2 successes
    /// close it), open 30 s in development and 60 s elsewhere.
    pub fn breaker(self) -> BreakerConfig {
        let config = BreakerConfig::default();
        match self {
            Profile::Development => config.with_open_wait(Duration::from_secs(30)),
            _ => config.with_open_wait(Duration::from_secs(60)),
        }
    }

    /// The health check: probes every 60 / 30 / 15 / 5 s, 5 s probe timeout, 3 failures →
    /// unhealthy, 1 success → healthy.
    pub fn health(self) -> HealthConfig {
        match self {
            Profile::Development => HealthConfig::development(),
            Profile::Staging => HealthConfig::staging(),
            Profile::Production => HealthConfig::production(),
            Profile::Testing => HealthConfig::testing(),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The recommended stack's service type over `Inner` (by default [`QdrantService`]): a
/// nameable type to keep in a struct, in axum state or behind `tower::buffer`.
pub type StackService<Inner = QdrantService> = Observe<
    FallbackService<
        Cache<
            WriteBehind<
                Deadline<Retry<Hedge<HealthGate<StackBreaker<Observe<AttemptTimeout<Inner>>>>>>>,
            >,
        >,
    >,
>;

/// The stack's circuit breaker: one [`CircuitBreaker`] for every call, or a [`KeyedBreaker`]
/// with one breaker per collection (and operation class), as
/// [`keyed_breakers`](QdrantStackBuilder::keyed_breakers) chose. You meet it as part of
/// [`StackService`]'s type, which stays the same either way:
///
/// ```no_run
/// use qdrant_tower::layers::BreakerKey;
/// use qdrant_tower::{Client, QdrantStack, StackService};
///
/// struct AppState {
///     qdrant: Client<StackService>, // one breaker or one per collection: the same type
/// }
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let stack = QdrantStack::builder().keyed_breakers(BreakerKey::Collection).build()?;
/// let state = AppState { qdrant: stack.client() };
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct StackBreaker<S> {
    inner: BreakerService<S>,
}

#[derive(Clone, Debug)]
enum BreakerService<S> {
    Single(CircuitBreaker<S>),
    Keyed(KeyedBreaker<S>),
}

impl<S, Req> tower::Service<Req> for StackBreaker<S>
where
    S: tower::Service<Req>,
    S::Error: Classify + From<CircuitOpen>,
    Req: RequestInfo,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = <CircuitBreaker<S> as tower::Service<Req>>::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match &mut self.inner {
            BreakerService::Single(service) => service.poll_ready(cx),
            BreakerService::Keyed(service) => service.poll_ready(cx),
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match &mut self.inner {
            BreakerService::Single(service) => service.call(request),
            BreakerService::Keyed(service) => service.call(request),
        }
    }
}

/// The breakers of a stack: one, or one per key.
#[derive(Clone)]
enum Breakers {
    Single(Breaker, BreakerRegistry),
    Keyed(KeyedBreakerLayer),
}

impl Breakers {
    fn layer<S>(&self, inner: S) -> StackBreaker<S> {
        StackBreaker {
            inner: match self {
                Breakers::Single(breaker, _) => {
                    BreakerService::Single(breaker.layer().layer(inner))
                }
                Breakers::Keyed(layer) => BreakerService::Keyed(layer.layer(inner)),
            },
        }
    }

    fn reconfigure(&self, name: &str, config: BreakerConfig) -> Result<(), LayerConfigError> {
        match self {
            Breakers::Single(breaker, _) => breaker.reconfigure(config),
            Breakers::Keyed(layer) => layer.registry().reconfigure_tag(name, config).map(drop),
        }
    }
}

/// What a running stack can change: shared by the stack's clones and its config watcher.
pub(crate) struct Control {
    retry: RetryLayer,
    deadline: SharedDuration,
    attempt_timeout: SharedDuration,
    breakers: Breakers,
    overrides: Overrides,
    current: Mutex<StackConfig>,
    /// A clone of the bottom service, for its pool's figures.
    pool: QdrantService,
    health: HealthCheck,
    queue: Option<WriteBehindHandle>,
    cache: CacheLayer,
}

impl Control {
    /// Every breaker of the stack.
    pub(crate) fn registry(&self) -> &BreakerRegistry {
        match &self.breakers {
            Breakers::Single(_, registry) => registry,
            Breakers::Keyed(layer) => layer.registry(),
        }
    }

    /// The stack's one breaker, unless keyed.
    pub(crate) fn single_breaker(&self) -> Option<&Breaker> {
        match &self.breakers {
            Breakers::Single(breaker, _) => Some(breaker),
            Breakers::Keyed(_) => None,
        }
    }

    pub(crate) fn health(&self) -> &HealthCheck {
        &self.health
    }

    pub(crate) fn queue(&self) -> Option<&WriteBehindHandle> {
        self.queue.as_ref()
    }

    /// The bottom service, without any layer.
    pub(crate) fn bare(&self) -> QdrantService {
        self.pool.clone()
    }

    pub(crate) fn current(&self) -> StackConfig {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Checks all of `config`, then swaps what can be swapped; nothing changes on an error.
    pub(crate) fn reload(&self, config: StackConfig) -> Result<Reloaded, ConfigError> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let next = self.overrides.apply(config);
        next.validate()?;
        let policy = self.overrides.retry_policy(&next);
        let breaker = self.overrides.breaker_config(&next);
        let invalid = |section: &str, error: LayerConfigError| {
            ConfigError::Invalid(InvalidConfig::from_layer(section, &error))
        };
        policy.validate().map_err(|e| invalid("retry", e))?;
        breaker.validate().map_err(|e| invalid("breaker", e))?;

        let mut applied = Vec::new();
        let mut restart = Vec::new();
        if next.deadline != current.deadline {
            self.deadline.set(next.deadline);
            applied.push("deadline");
        }
        if next.attempt_timeout != current.attempt_timeout {
            self.attempt_timeout.set(next.attempt_timeout);
            applied.push("attempt_timeout");
        }
        if next.retry != current.retry {
            self.retry
                .set_policy(policy)
                .map_err(|e| invalid("retry", e))?;
            applied.push("retry");
        }
        let breaker_fields = |c: &StackConfig| {
            let mut b = c.breaker;
            b.keyed = Keyed::None;
            b
        };
        let health = (next.health != current.health && self.overrides.health.is_none())
            .then(|| next.health_config());
        if let Some(health) = &health {
            health.validate().map_err(|e| invalid("health", e))?;
        }
        if breaker_fields(&next) != breaker_fields(&current) {
            self.breakers
                .reconfigure(&next.name, breaker)
                .map_err(|e| invalid("breaker", e))?;
            applied.push("breaker");
        }
        if let Some(health) = health {
            self.health
                .reconfigure(health)
                .map_err(|e| invalid("health", e))?;
            applied.push("health");
        }
        for (field, changed) in [
            ("endpoints", next.endpoints != current.endpoints),
            ("api_key", next.api_key != current.api_key),
            ("name", next.name != current.name),
            ("connections", next.connections != current.connections),
            ("metrics", next.metrics != current.metrics),
            ("admin", next.admin != current.admin),
            ("cache", next.cache != current.cache),
            ("fallback", next.fallback != current.fallback),
            ("queue", next.queue != current.queue),
            ("balance", next.balance != current.balance),
            ("outlier", next.outlier != current.outlier),
            ("hedge", next.hedge != current.hedge),
            ("discovery", next.discovery != current.discovery),
            ("breaker.keyed", next.breaker.keyed != current.breaker.keyed),
            (
                "idempotent_create",
                next.idempotent_create != current.idempotent_create,
            ),
        ] {
            if changed {
                restart.push(field);
            }
        }
        *current = next;
        Ok(Reloaded {
            applied,
            needs_restart: restart,
        })
    }
}

/// What a [`QdrantStack::reload`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reloaded {
    /// The sections swapped in the running stack: `deadline`, `attempt_timeout`, `retry`,
    /// `breaker` (thresholds and open wait), `health` (probe interval, timeout, thresholds).
    pub applied: Vec<&'static str>,
    /// Changed settings the running stack keeps until it is built again: `endpoints`,
    /// `api_key`, `name`, `connections`, `balance`, `outlier`, `hedge`, `discovery`, `metrics`, `cache`, `fallback`,
    /// `queue`, `admin` (a router is built from it),
    /// `breaker.keyed`; `idempotent_create`
    /// applies to clients made after the reload.
    pub needs_restart: Vec<&'static str>,
}

/// The builder's own settings, which win over a configuration (and over every reload).
#[derive(Clone, Default)]
struct Overrides {
    endpoints: Vec<String>,
    api_key: Option<Option<Secret>>,
    name: Option<String>,
    connections: Option<usize>,
    deadline: Option<Duration>,
    attempt_timeout: Option<Duration>,
    keyed: Option<Keyed>,
    idempotent_create: Option<bool>,
    retry: Option<RetryPolicy>,
    breaker: Option<BreakerConfig>,
    health: Option<HealthConfig>,
}

impl Overrides {
    fn apply(&self, mut config: StackConfig) -> StackConfig {
        if !self.endpoints.is_empty() {
            config.endpoints.clone_from(&self.endpoints);
        }
        if let Some(key) = &self.api_key {
            config.api_key.clone_from(key);
        }
        if let Some(name) = &self.name {
            config.name.clone_from(name);
        }
        if let Some(n) = self.connections {
            config.connections.min = n;
            config.connections.max = n;
        }
        if let Some(deadline) = self.deadline {
            config.deadline = deadline;
        }
        if let Some(timeout) = self.attempt_timeout {
            config.attempt_timeout = timeout;
        }
        if let Some(keyed) = self.keyed {
            config.breaker.keyed = keyed;
        }
        if let Some(on) = self.idempotent_create {
            config.idempotent_create = on;
        }
        config
    }

    fn retry_policy(&self, config: &StackConfig) -> RetryPolicy {
        self.retry.clone().unwrap_or_else(|| config.retry_policy())
    }

    fn breaker_config(&self, config: &StackConfig) -> BreakerConfig {
        self.breaker
            .clone()
            .unwrap_or_else(|| config.breaker_config())
    }
}

/// The recommended stack, built: its service (clone it freely: clones share the breaker,
/// health check and retry budget), a typed [`Client`] over it, the handles of its breakers
/// and health check, and [`reload`](Self::reload) to change its thresholds, timeouts and
/// retry table while it runs.
///
/// ```no_run
/// use qdrant_tower::qdrant::SearchPointsBuilder;
/// use qdrant_tower::{Profile, QdrantStack};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let stack = QdrantStack::builder()
///     .endpoint("http://localhost:6334")
///     .api_key(std::env::var("QDRANT_API_KEY").ok())
///     .profile(Profile::Production)
///     .build()?;
/// let client = stack.client();
/// let hits = client.search(SearchPointsBuilder::new("docs", vec![0.1, 0.2], 5)).await?;
/// println!("{} hits; breaker {:?}, Qdrant {}", hits.result.len(), stack.breaker().state(), stack.health().status());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct QdrantStack<S = StackService> {
    service: S,
    health: HealthCheck,
    pub(crate) control: Arc<Control>,
}

impl QdrantStack {
    /// A builder of the recommended stack, from the production [`Profile`].
    pub fn builder() -> QdrantStackBuilder {
        QdrantStackBuilder::new()
    }
}

impl<S: Clone> QdrantStack<S> {
    /// The stack as a `Service<VectorRequest>`.
    pub fn service(&self) -> S {
        self.service.clone()
    }

    /// A typed client over the stack (creating collections idempotently if the configuration
    /// says `idempotent_create`).
    pub fn client(&self) -> Client<S> {
        let idempotent = self
            .control
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .idempotent_create;
        Client::new(self.service.clone()).with_idempotent_create(idempotent)
    }
}

impl<S> QdrantStack<S> {
    /// The write-behind queue, if the configuration's `[queue]` lists collections: its
    /// state, queued writes and dead letters.
    pub fn queue(&self) -> Option<WriteBehindHandle> {
        self.control.queue.clone()
    }

    /// The stack's read cache (empty unless the configuration's `[cache]` lists
    /// collections).
    pub fn cache(&self) -> &CacheLayer {
        &self.control.cache
    }

    /// The stack's circuit breaker (state, snapshot, reset, force open…). With
    /// [keyed breakers](QdrantStackBuilder::keyed_breakers), the breaker of calls that name
    /// no collection (list collections, health); see [`breaker_for`](Self::breaker_for).
    pub fn breaker(&self) -> Breaker {
        match &self.control.breakers {
            Breakers::Single(breaker, _) => breaker.clone(),
            Breakers::Keyed(layer) => layer.breaker_for(None, true),
        }
    }

    /// The breaker that calls on `collection` go through (its reads' breaker when keyed by
    /// collection and class): the stack's one breaker unless keyed.
    pub fn breaker_for(&self, collection: &str) -> Breaker {
        match &self.control.breakers {
            Breakers::Single(breaker, _) => breaker.clone(),
            Breakers::Keyed(layer) => layer.breaker_for(Some(collection), true),
        }
    }

    /// Every breaker of the stack, by name (`qdrant`, or `qdrant/<collection>[/read|/write]`
    /// when keyed).
    pub fn breakers(&self) -> &BreakerRegistry {
        self.control.registry()
    }

    /// Each endpoint's connections now (open, in flight, grown, shrunk, replaced); see
    /// [`QdrantServiceBuilder::connections`].
    pub fn pool_stats(&self) -> Vec<PoolStats> {
        self.control.pool.pool_stats()
    }

    /// The stack's health check (status, subscribe for readiness probes…).
    pub fn health(&self) -> &HealthCheck {
        &self.health
    }

    /// The profile the stack's configuration came from.
    pub fn profile(&self) -> Profile {
        self.control.current().profile
    }

    /// The configuration the stack runs with now: the last one built or reloaded, with the
    /// builder's settings applied (a retry policy, breaker or health configuration set on
    /// the builder as a whole is not shown in it). The API key shows as `[redacted]`.
    pub fn config(&self) -> StackConfig {
        self.control.current()
    }

    /// Swaps `config`'s deadline, attempt timeout, retry table and breaker thresholds into
    /// the running stack, in every clone of its service: calls that start after see the new
    /// values, calls under way finish under the old deadline and timeouts and take their next
    /// retry decision by the new table. No call fails for it. The builder's own settings
    /// still win.
    ///
    /// `config` is checked whole first: if anything is out of range, nothing changes and the
    /// error names it. The health check's timing and thresholds apply from its next probe.
    /// Settings that need a new stack (endpoints, API key, connections, breaker keying) are
    /// listed in [`Reloaded::needs_restart`], not applied.
    ///
    /// ```no_run
    /// # use qdrant_tower::QdrantStack;
    /// # use qdrant_tower::config::ConfigLoader;
    /// # fn example(stack: QdrantStack) -> Result<(), Box<dyn std::error::Error>> {
    /// let config = ConfigLoader::new().file("qdrant.toml").env().load()?;
    /// let reloaded = stack.reload(config)?;
    /// println!("swapped {:?}; restart for {:?}", reloaded.applied, reloaded.needs_restart);
    /// # Ok(()) }
    /// ```
    pub fn reload(&self, config: StackConfig) -> Result<Reloaded, ConfigError> {
        self.control.reload(config)
    }

    /// Watches `loader`'s file and [reloads](Self::reload) the stack from `loader` whenever
    /// it changes, until the returned watcher is dropped. Changes are debounced (50 ms of
    /// quiet) so a file written in several steps is read once; write it atomically (a rename)
    /// to never read half of it. An invalid file is rejected (logged, and reported by
    /// [`ConfigWatcher::changes`]) and the running configuration stays. The environment is
    /// the one `loader` captured.
    ///
    /// Fails if `loader` has no file or the file's directory cannot be watched.
    ///
    /// ```no_run
    /// # use qdrant_tower::QdrantStack;
    /// # use qdrant_tower::config::ConfigLoader;
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let loader = ConfigLoader::new().file("/etc/my-service/qdrant.toml").env();
    /// let stack = QdrantStack::builder().config(loader.load()?).build()?;
    /// let _watcher = stack.watch(loader)?; // keep it: dropping it stops watching
    /// # Ok(()) }
    /// ```
    pub fn watch(&self, loader: ConfigLoader) -> Result<ConfigWatcher, ConfigError> {
        let control = Arc::clone(&self.control);
        ConfigWatcher::start(loader, move |config| control.reload(config))
    }
}

impl<S> fmt::Debug for QdrantStack<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QdrantStack")
            .field("config", &self.control.current())
            .field("breaker", &self.breaker().state())
            .field("health", &self.health.status())
            .finish_non_exhaustive()
    }
}

/// Builds a [`QdrantStack`]: a [`Profile`]'s defaults or a [`StackConfig`], then whatever
/// you set here (the highest precedence: a setting made here also wins over every
/// [reload](QdrantStack::reload)).
///
/// `Around` is the layer you put around the whole call ([`around_call`](Self::around_call)),
/// `Attempt` the one around each attempt ([`per_attempt`](Self::per_attempt)); both start as
/// [`Identity`].
#[must_use]
pub struct QdrantStackBuilder<Around = Identity, Attempt = Identity> {
    service: QdrantServiceBuilder,
    config: StackConfig,
    overrides: Overrides,
    fallback: Option<FallbackLayer>,
    around: Around,
    attempt: Attempt,
}

impl QdrantStackBuilder {
    fn new() -> Self {
        QdrantStackBuilder {
            service: QdrantService::builder(),
            config: StackConfig::default(),
            overrides: Overrides::default(),
            fallback: None,
            around: Identity::new(),
            attempt: Identity::new(),
        }
    }
}

impl<Around, Attempt> QdrantStackBuilder<Around, Attempt> {
    /// A Qdrant endpoint (gRPC, e.g. `http://localhost:6334`); call again for several, used
    /// round-robin. Replaces the configuration's endpoints.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.overrides.endpoints.push(url.into());
        self
    }

    /// The API key, sent with every call and never shown in `Debug`, logs or errors
    /// (`None`: no key, whatever the configuration says).
    pub fn api_key(mut self, key: Option<impl Into<String>>) -> Self {
        self.overrides.api_key = Some(key.map(Secret::new));
        self
    }

    /// Starts over from `profile`'s defaults (default: production), replacing a
    /// [`config`](Self::config) given before; the other settings made here stay.
    pub fn profile(mut self, profile: Profile) -> Self {
        self.config = StackConfig::for_profile(profile);
        self
    }

    /// Starts from `config` (from a [`ConfigLoader`]: profile, file, environment), replacing
    /// a [`profile`](Self::profile) given before; the other settings made here stay, and win.
    ///
    /// ```no_run
    /// # use qdrant_tower::QdrantStack;
    /// # use qdrant_tower::config::ConfigLoader;
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let stack = QdrantStack::builder()
    ///     .config(ConfigLoader::new().file("qdrant.toml").env().load()?)
    ///     .name("search")
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn config(mut self, config: StackConfig) -> Self {
        self.config = config;
        self
    }

    /// The name of the breaker and health check (in metrics, logs and errors; default
    /// `"qdrant"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.overrides.name = Some(name.into());
        self
    }

    /// A fixed number of connections per endpoint (default: the configuration's pool, from
    /// `connections.min` growing to `connections.max` under load).
    pub fn connections(mut self, connections: usize) -> Self {
        self.overrides.connections = Some(connections);
        self
    }

    /// The whole call's deadline, retries and backoffs included (default: the profile's). A
    /// request's own deadline, if earlier, wins.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.overrides.deadline = Some(deadline);
        self
    }

    /// Each attempt's timeout (default: the profile's); never more than the time left.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.overrides.attempt_timeout = Some(timeout);
        self
    }

    /// The retry policy, whole (default: the configuration's table). Reloads do not change
    /// it.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.overrides.retry = Some(policy);
        self
    }

    /// The breaker's configuration, whole (default: the configuration's). Reloads do not
    /// change it.
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.overrides.breaker = Some(config);
        self
    }

    /// One breaker per collection ([`BreakerKey::Collection`]) or per collection and
    /// read/write class ([`BreakerKey::CollectionAndClass`]), made on demand, instead of one
    /// for the stack: a collection whose calls fail opens its own breaker and the others go
    /// on. Each starts with the stack's breaker configuration; calls that name no collection
    /// share one more. At most [`DEFAULT_MAX_KEYS`] breakers; later collections share an
    /// overflow breaker.
    ///
    /// [`DEFAULT_MAX_KEYS`]: qdrant_tower_layers::breaker::DEFAULT_MAX_KEYS
    ///
    /// ```no_run
    /// # use qdrant_tower::QdrantStack;
    /// # use qdrant_tower::layers::BreakerKey;
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let stack = QdrantStack::builder()
    ///     .keyed_breakers(BreakerKey::Collection)
    ///     .build()?;
    /// println!("{:?}", stack.breaker_for("docs").state());
    /// # Ok(()) }
    /// ```
    pub fn keyed_breakers(mut self, key: BreakerKey) -> Self {
        self.overrides.keyed = Some(match key {
            BreakerKey::CollectionAndClass => Keyed::CollectionAndClass,
            _ => Keyed::Collection,
        });
        self
    }

    /// Whether [`Client::create_collection`] treats an `ALREADY_EXISTS` answered to a retry
    /// as created when the existing collection has the requested configuration (and retries
    /// creates on transient errors for it); see there. Default: the configuration's
    /// `idempotent_create` (off).
    pub fn idempotent_create(mut self, on: bool) -> Self {
        self.overrides.idempotent_create = Some(on);
        self
    }

    /// The health check's configuration, whole (default: the configuration's).
    pub fn health(mut self, config: HealthConfig) -> Self {
        self.overrides.health = Some(config);
        self
    }

    /// Any other [`QdrantService`] setting (TLS, keep-alive, headers, limits…).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use qdrant_tower::QdrantStack;
    /// let builder = QdrantStack::builder()
    ///     .endpoint("https://qdrant.example:6334")
    ///     .configure_service(|service| service.connect_timeout(Duration::from_secs(2)).compression(true));
    /// ```
    pub fn configure_service(
        mut self,
        configure: impl FnOnce(QdrantServiceBuilder) -> QdrantServiceBuilder,
    ) -> Self {
        self.service = configure(self.service);
        self
    }

    /// Adds `layer` around the whole call, outside the deadline: it sees each call once, as the
    /// caller made it (request tagging, per-tenant quotas, your own metrics). Layers added
    /// later go outside those added before.
    pub fn around_call<L>(self, layer: L) -> QdrantStackBuilder<Stack<L, Around>, Attempt> {
        self.with_hooks(|around, attempt| (Stack::new(layer, around), attempt))
    }

    /// Adds `layer` around each attempt, right above [`QdrantService`]: it sees every retry,
    /// with the attempt's own deadline, after the breaker admitted it (per-attempt logging,
    /// request signing, fault injection in tests). Layers added later go outside those added
    /// before.
    pub fn per_attempt<L>(self, layer: L) -> QdrantStackBuilder<Around, Stack<L, Attempt>> {
        self.with_hooks(|around, attempt| (around, Stack::new(layer, attempt)))
    }

    /// The same settings with the hooks `change` makes of the current ones.
    fn with_hooks<A, T>(
        self,
        change: impl FnOnce(Around, Attempt) -> (A, T),
    ) -> QdrantStackBuilder<A, T> {
        let (around, attempt) = change(self.around, self.attempt);
        QdrantStackBuilder {
            service: self.service,
            config: self.config,
            overrides: self.overrides,
            fallback: self.fallback,
            around,
            attempt,
        }
    }

    /// Fallback sources for failed reads — static, computed, a secondary service
    /// ([`FallbackLayer`]) — and the kinds they answer (which replace the configuration's
    /// `fallback.on`). With `fallback.stale` set, the cache's stale answers are tried first.
    ///
    /// ```no_run
    /// use qdrant_tower::fallback::FallbackLayer;
    /// use qdrant_tower::qdrant::SearchResponse;
    /// use qdrant_tower::{QdrantStack, VectorResponse};
    /// # fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let stack = QdrantStack::builder()
    ///     .fallback(FallbackLayer::new().static_response(VectorResponse::Search(SearchResponse::default())))
    ///     .build()?;
    /// # drop(stack); Ok(()) }
    /// ```
    pub fn fallback(mut self, fallback: FallbackLayer) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// Builds the stack. Call it inside a Tokio runtime: the health check's prober starts
    /// here (and stops when the last clone of the stack's service is dropped). Channels
    /// connect lazily, so this succeeds while Qdrant is down.
    ///
    /// Fails with the setting that cannot work, named.
    pub fn build(self) -> Result<QdrantStack<Around::Service>, StackError>
    where
        Attempt: Layer<QdrantService>,
        Attempt::Service: tower::Service<VectorRequest, Response = VectorResponse, Error = VectorError>
            + Clone
            + Send
            + 'static,
        <Attempt::Service as tower::Service<VectorRequest>>::Future: Send + 'static,
        Around: Layer<StackService<Attempt::Service>>,
    {
        let overrides = self.overrides;
        let config = overrides.apply(self.config);
        config.validate()?;
        let mut service = self.service;
        for endpoint in &config.endpoints {
            service = service.endpoint(endpoint.as_str());
        }
        if let Some(balance) = config.balance {
            service = service.balance(balance.into());
        }
        if let Some(outlier) = &config.outlier {
            service = service.outlier_detection(outlier.detection());
        }
        if let Some(discovery) = &config.discovery {
            service = service.discovery(discovery.discovery());
        }
        let qdrant = service
            .api_key(config.api_key.as_ref().map(|key| key.expose().to_owned()))
            .connections(config.connections.min, config.connections.max)
            .grow_at(config.connections.grow_at)
            .idle_timeout(config.connections.idle)
            .build()?;
        let pool = qdrant.clone();
        let name = config.name.as_str();
        let breaker_config = overrides.breaker_config(&config);
        let health = qdrant.health_check(
            overrides
                .health
                .clone()
                .unwrap_or_else(|| config.health_config())
                .with_name(name),
        )?;
        let breakers = match config.breaker.keyed.key() {
            None => {
                let registry = BreakerRegistry::new();
                let breaker = registry.get_or_create_with(name, name, breaker_config)?;
                health.link_breaker(breaker.clone());
                Breakers::Single(breaker, registry)
            }
            Some(key) => {
                let registry = BreakerRegistry::new();
                registry.set_tag_default(name, breaker_config)?;
                Breakers::Keyed(KeyedBreakerLayer::new(registry, name, key))
            }
        };
        let retry = RetryLayer::new(overrides.retry_policy(&config))?;
        let deadline = SharedDuration::new(config.deadline);
        let attempt_timeout = SharedDuration::new(config.attempt_timeout);
        let (calls, attempts) = match config.metrics.collection_labels {
            0 => (ObserveLayer::calls(), ObserveLayer::attempts()),
            max => (
                ObserveLayer::calls().with_collection_labels(max),
                ObserveLayer::attempts().with_collection_labels(max),
            ),
        };
        // Inside out: the user's per-attempt layers over QdrantService, the attempt timeout,
        // attempt metrics, the breaker, the health gate, retry, the deadline, call telemetry.
        let attempt =
            AttemptTimeoutLayer::shared(attempt_timeout.clone()).layer(self.attempt.layer(qdrant));
        let gated =
            HealthGateLayer::new(health.clone()).layer(breakers.layer(attempts.layer(attempt)));
        let cache = CacheLayer::new(
            CacheConfig::new(config.cache.collections.iter().cloned())
                .ttl(config.cache.ttl)
                .max_entries(config.cache.max_entries)
                .max_bytes(config.cache.max_bytes)
                .stale_for(config.cache.stale_for),
        );
        let hedge = match config.hedge.hedge_config()? {
            Some(hedge) => HedgeLayer::new(hedge),
            None => HedgeLayer::none(),
        };
        let below = DeadlineLayer::shared(deadline.clone()).layer(retry.layer(hedge.layer(gated)));
        let (queued, queue) = if config.queue.collections.is_empty() {
            (WriteBehind::none(below), None)
        } else {
            let dir = config.queue.dir.clone().unwrap_or_default();
            let signal = health.clone();
            let layer = WriteBehindLayer::open_with_signal(
                QueueConfig::new(&dir, config.queue.collections.iter().cloned())
                    .max_records(config.queue.max_records)
                    .max_bytes(config.queue.max_bytes)
                    .replay_interval(config.queue.replay_interval),
                below.clone(),
                Arc::new(move || signal.status() == HealthStatus::Healthy),
            )
            .map_err(|error| StackError::Queue {
                dir: dir.display().to_string(),
                reason: error.to_string(),
            })?;
            (layer.layer(below), Some(layer.handle()))
        };
        let mut fallback = match self.fallback {
            Some(layer) => layer,
            None => FallbackLayer::new().on(config.fallback.kinds()?),
        };
        if config.fallback.stale {
            fallback = fallback.stale_first(cache.clone());
        }
        let core = calls.layer(fallback.layer(cache.layer(queued)));
        Ok(QdrantStack {
            service: self.around.layer(core),
            health: health.clone(),
            control: Arc::new(Control {
                retry,
                deadline,
                attempt_timeout,
                breakers,
                overrides,
                current: Mutex::new(config),
                pool,
                health,
                queue,
                cache,
            }),
        })
    }
}

impl<Around, Attempt> fmt::Debug for QdrantStackBuilder<Around, Attempt> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QdrantStackBuilder")
            .field("service", &self.service)
            .field("config", &self.overrides.apply(self.config.clone()))
            .finish_non_exhaustive()
    }
}

/// A [`QdrantStack`] setting that cannot work, naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// A configuration value out of range.
    #[error(transparent)]
    Config(#[from] InvalidConfig),
    /// A [`QdrantService`] setting (endpoint, TLS, limits…).
    #[error(transparent)]
    Service(#[from] qdrant_tower_client::ConfigError),
    /// A layer's setting (retry table, breaker, health check), or no Tokio runtime to run the
    /// health check on.
    #[error(transparent)]
    Layer(#[from] qdrant_tower_layers::ConfigError),
    /// The write-behind queue could not open its log.
    #[error("the write-behind queue in {dir} cannot open: {reason}")]
    Queue {
        /// Its directory.
        dir: String,
        /// What failed.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use qdrant_tower_layers::breaker::OpenWait;

    #[test]
    fn profiles_cap_the_retry_table_and_keep_the_rest_of_each_row() {
        let production = Profile::Production.retry();
        let default = RetryPolicy::default();
        for kind in ErrorKind::ALL
            .into_iter()
            .filter(|kind| kind.is_transient())
        {
            assert_eq!(production.kind(kind), default.kind(kind), "{kind}");
        }
        let staging = Profile::Staging.retry();
        assert_eq!(staging.kind(ErrorKind::RateLimited).max_attempts, 3);
        assert_eq!(staging.kind(ErrorKind::Timeout).max_attempts, 2);
        assert_eq!(
            staging.kind(ErrorKind::RateLimited).base,
            default.kind(ErrorKind::RateLimited).base
        );
        let testing = Profile::Testing.retry();
        for kind in ErrorKind::ALL
            .into_iter()
            .filter(|kind| kind.is_transient())
        {
            assert_eq!(
                testing.kind(kind).max_attempts,
                1,
                "testing never retries {kind}"
            );
        }
    }

    #[test]
    fn profiles_follow_the_seeds_table() {
        let rows: Vec<_> = Profile::ALL
            .iter()
            .map(|p| {
                (
                    p.as_str(),
                    p.connections(),
                    p.max_attempts(),
                    p.health().interval(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("development", 1, 2, Duration::from_secs(60)),
                ("staging", 2, 3, Duration::from_secs(30)),
                ("production", 5, 5, Duration::from_secs(15)),
                ("testing", 1, 1, Duration::from_secs(5)),
            ]
        );
        assert_eq!(
            Profile::Development.breaker().open_wait(),
            OpenWait::Fixed(Duration::from_secs(30))
        );
        for profile in [Profile::Staging, Profile::Production, Profile::Testing] {
            assert_eq!(
                profile.breaker().open_wait(),
                OpenWait::Fixed(Duration::from_secs(60)),
                "{profile}"
            );
        }
        assert_eq!(Profile::default(), Profile::Production);
    }
}
