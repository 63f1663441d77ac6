//! [`QdrantStack`]: the recommended stack — deadline → retry → health gate → circuit breaker →
//! attempt timeout → [`QdrantService`] — built from a [`Profile`] in a few lines, with a
//! nameable service type and hooks for your own layers.

use std::fmt;
use std::time::Duration;

use tower::Layer;
use tower::layer::util::{Identity, Stack};

use qdrant_tower_client::{
    QdrantService, QdrantServiceBuilder, VectorError, VectorRequest, VectorResponse,
};
use qdrant_tower_layers::breaker::{Breaker, BreakerConfig, CircuitBreaker};
use qdrant_tower_layers::health::{HealthCheck, HealthConfig, HealthGate, HealthGateLayer};
use qdrant_tower_layers::retry::{Retry, RetryLayer, RetryPolicy};
use qdrant_tower_layers::{
    AttemptTimeout, AttemptTimeoutLayer, Deadline, DeadlineLayer, ErrorKind,
};

use crate::Client;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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
pub type StackService<Inner = QdrantService> =
    Deadline<Retry<HealthGate<CircuitBreaker<AttemptTimeout<Inner>>>>>;

/// The recommended stack, built: its service (clone it freely: clones share the breaker,
/// health check and retry budget), a typed [`Client`] over it, and the handles of its breaker
/// and health check.
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
    breaker: Breaker,
    health: HealthCheck,
    profile: Profile,
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

    /// A typed client over the stack.
    pub fn client(&self) -> Client<S> {
        Client::new(self.service.clone())
    }

    /// The stack's circuit breaker (state, snapshot, reset, force open…).
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The stack's health check (status, subscribe for readiness probes…).
    pub fn health(&self) -> &HealthCheck {
        &self.health
    }

    /// The profile the stack was built from.
    pub fn profile(&self) -> Profile {
        self.profile
    }
}

impl<S> fmt::Debug for QdrantStack<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QdrantStack")
            .field("profile", &self.profile)
            .field("breaker", &self.breaker.state())
            .field("health", &self.health.status())
            .finish_non_exhaustive()
    }
}

/// Builds a [`QdrantStack`]: a [`Profile`]'s defaults, then whatever you set.
///
/// `Around` is the layer you put around the whole call ([`around_call`](Self::around_call)),
/// `Attempt` the one around each attempt ([`per_attempt`](Self::per_attempt)); both start as
/// [`Identity`].
#[must_use]
pub struct QdrantStackBuilder<Around = Identity, Attempt = Identity> {
    service: QdrantServiceBuilder,
    profile: Profile,
    name: String,
    connections: Option<usize>,
    deadline: Option<Duration>,
    attempt_timeout: Option<Duration>,
    retry: Option<RetryPolicy>,
    breaker: Option<BreakerConfig>,
    health: Option<HealthConfig>,
    around: Around,
    attempt: Attempt,
}

impl QdrantStackBuilder {
    fn new() -> Self {
        QdrantStackBuilder {
            service: QdrantService::builder(),
            profile: Profile::default(),
            name: "qdrant".to_owned(),
            connections: None,
            deadline: None,
            attempt_timeout: None,
            retry: None,
            breaker: None,
            health: None,
            around: Identity::new(),
            attempt: Identity::new(),
        }
    }
}

impl<Around, Attempt> QdrantStackBuilder<Around, Attempt> {
    /// A Qdrant endpoint (gRPC, e.g. `http://localhost:6334`); call again for several, used
    /// round-robin.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.service = self.service.endpoint(url);
        self
    }

    /// The API key, sent with every call and never shown in `Debug`, logs or errors.
    pub fn api_key(mut self, key: Option<impl Into<String>>) -> Self {
        self.service = self.service.api_key(key);
        self
    }

    /// The profile whose defaults the stack starts from (default: production).
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// The name of the breaker and health check (in metrics, logs and errors; default
    /// `"qdrant"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Connections per endpoint (default: the profile's).
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = Some(connections);
        self
    }

    /// The whole call's deadline, retries and backoffs included (default: the profile's). A
    /// request's own deadline, if earlier, wins.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Each attempt's timeout (default: the profile's); never more than the time left.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// The retry policy (default: the profile's table).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// The breaker's configuration (default: the profile's).
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = Some(config);
        self
    }

    /// The health check's configuration (default: the profile's).
    pub fn health(mut self, config: HealthConfig) -> Self {
        self.health = Some(config);
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
            profile: self.profile,
            name: self.name,
            connections: self.connections,
            deadline: self.deadline,
            attempt_timeout: self.attempt_timeout,
            retry: self.retry,
            breaker: self.breaker,
            health: self.health,
            around,
            attempt,
        }
    }

    /// Builds the stack. Call it inside a Tokio runtime: the health check's prober starts
    /// here (and stops when the last clone of the stack's service is dropped). Channels
    /// connect lazily, so this succeeds while Qdrant is down.
    ///
    /// Fails with the setting that cannot work, named.
    pub fn build(self) -> Result<QdrantStack<Around::Service>, StackError>
    where
        Attempt: Layer<QdrantService>,
        Attempt::Service:
            tower::Service<VectorRequest, Response = VectorResponse, Error = VectorError> + Clone,
        Around: Layer<StackService<Attempt::Service>>,
    {
        let profile = self.profile;
        let qdrant = self
            .service
            .connections_per_endpoint(self.connections.unwrap_or(profile.connections()))
            .build()?;
        let breaker = Breaker::new(
            self.name.as_str(),
            self.breaker.unwrap_or_else(|| profile.breaker()),
        )?;
        let health = qdrant.health_check(
            self.health
                .unwrap_or_else(|| profile.health())
                .with_name(self.name.as_str()),
        )?;
        health.link_breaker(breaker.clone());
        let retry = RetryLayer::new(self.retry.unwrap_or_else(|| profile.retry()))?;
        let core = tower::ServiceBuilder::new()
            .layer(DeadlineLayer::new(
                self.deadline.unwrap_or(profile.deadline()),
            ))
            .layer(retry)
            .layer(HealthGateLayer::new(health.clone()))
            .layer(breaker.layer())
            .layer(AttemptTimeoutLayer::new(
                self.attempt_timeout.unwrap_or(profile.attempt_timeout()),
            ))
            .service(self.attempt.layer(qdrant));
        Ok(QdrantStack {
            service: self.around.layer(core),
            breaker,
            health,
            profile,
        })
    }
}

impl<Around, Attempt> fmt::Debug for QdrantStackBuilder<Around, Attempt> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QdrantStackBuilder")
            .field("service", &self.service)
            .field("profile", &self.profile)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A [`QdrantStack`] setting that cannot work, naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// A [`QdrantService`] setting (endpoint, TLS, limits…).
    #[error(transparent)]
    Service(#[from] qdrant_tower_client::ConfigError),
    /// A layer's setting (retry table, breaker, health check), or no Tokio runtime to run the
    /// health check on.
    #[error(transparent)]
    Layer(#[from] qdrant_tower_layers::ConfigError),
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
