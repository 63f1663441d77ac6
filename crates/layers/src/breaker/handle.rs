//! The breaker itself: shared state, figures and manual control.

use std::fmt;
use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use super::config::BreakerConfig;
use super::error::ConfigError;
use super::layer::CircuitBreakerLayer;
use super::snapshot::BreakerSnapshot;
use super::state::{BreakerState, Lanes, Shared, StateChange, TransitionReason, lanes_for};

/// A named circuit breaker: the state machine shared by every [`CircuitBreaker`] service
/// built on it, and its control panel.
///
/// Cloning is cheap and shares the state: keep a clone to watch, inspect or steer the breaker
/// while services built from its [`layer`](Breaker::layer) carry the traffic.
///
/// [`CircuitBreaker`]: super::CircuitBreaker
#[derive(Clone)]
pub struct Breaker {
    pub(crate) shared: Arc<Shared>,
    pub(crate) lanes: Lanes,
}

impl Breaker {
    /// Builds a breaker, checking the configuration.
    ///
    /// `metrics` handles are registered now, with the recorder installed at this moment:
    /// install your recorder before building breakers.
    pub fn new(name: impl Into<Arc<str>>, config: BreakerConfig) -> Result<Self, ConfigError> {
        Self::with_tag(name, None, config)
    }

    /// Builds a breaker with the default configuration (5 failures to open, 60 s open,
    /// 3 trials, 2 successes to close).
    pub fn with_defaults(name: impl Into<Arc<str>>) -> Self {
        Self::new(name, BreakerConfig::default()).expect("the default configuration is valid")
    }

    pub(crate) fn with_tag(
        name: impl Into<Arc<str>>,
        tag: Option<Arc<str>>,
        config: BreakerConfig,
    ) -> Result<Self, ConfigError> {
        let shared = Shared::new(name.into(), tag, config)?;
        let lanes = lanes_for(&shared);
        Ok(Breaker { shared, lanes })
    }

    /// A layer whose services all share this breaker.
    pub fn layer(&self) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(self.clone())
    }

    /// The breaker's name, as in metrics, traces and [`CircuitOpen`](super::CircuitOpen).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The service type or tag the breaker was registered under in a
    /// [`BreakerRegistry`](super::BreakerRegistry).
    pub fn tag(&self) -> Option<&str> {
        self.shared.tag.as_deref()
    }

    /// The current state (one atomic load).
    pub fn state(&self) -> BreakerState {
        self.shared.state()
    }

    /// The configuration in force.
    pub fn config(&self) -> BreakerConfig {
        self.shared.config()
    }

    /// Replaces the configuration at run time without losing state: the current state, its
    /// streak and permits, figures and (when its shape is unchanged) the window's contents are
    /// kept. New thresholds apply from the next call; an open period already started keeps
    /// its end. Calls never wait on this: the configuration is swapped atomically.
    pub fn reconfigure(&self, config: BreakerConfig) -> Result<(), ConfigError> {
        self.shared.reconfigure(config)
    }

    /// Closes the breaker and forgets its streak, window and open-wait growth (figures are
    /// kept). Also the way out of forced-open, disabled and metrics-only.
    pub fn reset(&self) {
        self.shared
            .force(BreakerState::Closed, TransitionReason::Reset);
    }

    /// Rejects every call until [`reset`](Self::reset), whatever the backend does.
    pub fn force_open(&self) {
        self.shared
            .force(BreakerState::ForcedOpen, TransitionReason::ForcedOpen);
    }

    /// Lets every call through and counts nothing until [`reset`](Self::reset).
    pub fn disable(&self) {
        self.shared
            .force(BreakerState::Disabled, TransitionReason::Disabled);
    }

    /// Lets every call through and counts as usual, but never opens, until
    /// [`reset`](Self::reset). For trying thresholds out on live traffic.
    pub fn metrics_only(&self) {
        self.shared
            .force(BreakerState::MetricsOnly, TransitionReason::MetricsOnly);
    }

    /// Moves an open breaker to half-open now, without waiting for the end of the open wait.
    /// For a health prober that has seen the backend recover. Returns whether the breaker was
    /// open and moved; any other state is left alone.
    pub fn try_half_open(&self) -> bool {
        self.shared.try_half_open()
    }

    /// The breaker's figures now. Takes the breaker's transition lock briefly; calls do not
    /// wait on it.
    pub fn snapshot(&self) -> BreakerSnapshot {
        self.shared.snapshot(&self.lanes)
    }

    /// Every future state change, in order. A receiver that falls more than 64 changes behind
    /// gets [`RecvError::Lagged`](broadcast::error::RecvError::Lagged) and then the newest.
    pub fn subscribe(&self) -> broadcast::Receiver<StateChange> {
        self.shared.subscribe()
    }

    /// The latest state change (initially a `Closed → Closed` change for
    /// [`TransitionReason::Created`]); `changed().await` waits for the next one.
    pub fn watch(&self) -> watch::Receiver<StateChange> {
        self.shared.watch()
    }

    /// Whether two handles share the same breaker.
    pub fn ptr_eq(&self, other: &Breaker) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}
