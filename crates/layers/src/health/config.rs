//! How often to probe, how long to wait, and how many probes in a row flip the status.

use std::sync::Arc;
use std::time::Duration;

use crate::ConfigError;

/// The configuration of a [`HealthCheck`](super::HealthCheck).
///
/// Built from a profile ([`HealthConfig::production`], the [`Default`], and its siblings) with
/// `with_*` methods. The profiles follow the seeds' health checks:
///
/// | profile | interval | probe timeout | unhealthy after | healthy after |
/// |---|---|---|---|---|
/// | production | 15 s | 5 s | 3 failures | 1 success |
/// | staging | 30 s | 5 s | 3 failures | 1 success |
/// | development | 60 s | 5 s | 3 failures | 1 success |
/// | testing | 5 s | 5 s | 3 failures | 1 success |
///
/// All fail fast while unhealthy (no [wait for recovery](Self::with_wait_for_recovery)).
///
/// ```
/// use std::time::Duration;
/// use qdrant_tower_layers::HealthConfig;
///
/// let config = HealthConfig::production()
///     .with_name("qdrant")
///     .with_interval(Duration::from_secs(5))
///     .with_unhealthy_after(2)
///     .with_wait_for_recovery(Duration::from_millis(500));
/// assert!(config.validate().is_ok());
/// assert!(HealthConfig::default().with_healthy_after(0).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    name: Arc<str>,
    interval: Duration,
    probe_timeout: Duration,
    unhealthy_after: u32,
    healthy_after: u32,
    wait_for_recovery: Option<Duration>,
}

impl HealthConfig {
    fn profile(interval: Duration) -> Self {
        HealthConfig {
            name: Arc::from("default"),
            interval,
            probe_timeout: Duration::from_secs(5),
            unhealthy_after: 3,
            healthy_after: 1,
            wait_for_recovery: None,
        }
    }

    /// Probe every 15 s.
    pub fn production() -> Self {
        Self::profile(Duration::from_secs(15))
    }

    /// Probe every 30 s.
    pub fn staging() -> Self {
        Self::profile(Duration::from_secs(30))
    }

    /// Probe every 60 s.
    pub fn development() -> Self {
        Self::profile(Duration::from_secs(60))
    }

    /// Probe every 5 s.
    pub fn testing() -> Self {
        Self::profile(Duration::from_secs(5))
    }

    /// The name in errors, logs and metric labels. Default: `default`.
    pub fn with_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Time between the starts of two probes (a probe that takes longer delays the next).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How long one probe may take before it counts as failed. Default: 5 s.
    pub fn with_probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// How many failed probes in a row mark a healthy backend unhealthy. Default: 3.
    pub fn with_unhealthy_after(mut self, failures: u32) -> Self {
        self.unhealthy_after = failures;
        self
    }

    /// How many successful probes in a row mark an unhealthy backend healthy. Default: 1.
    pub fn with_healthy_after(mut self, successes: u32) -> Self {
        self.healthy_after = successes;
        self
    }

    /// While unhealthy, let a gate's `poll_ready` wait up to `bound` for a recovery before it
    /// rejects the call. Default: none, the gate rejects at once.
    pub fn with_wait_for_recovery(mut self, bound: Duration) -> Self {
        self.wait_for_recovery = Some(bound);
        self
    }

    /// Reject at once while unhealthy (the default).
    pub fn without_wait_for_recovery(mut self) -> Self {
        self.wait_for_recovery = None;
        self
    }

    /// The name in errors, logs and metric labels.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// Time between the starts of two probes.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How long one probe may take.
    pub fn probe_timeout(&self) -> Duration {
        self.probe_timeout
    }

    /// Failed probes in a row that mark the backend unhealthy.
    pub fn unhealthy_after(&self) -> u32 {
        self.unhealthy_after
    }

    /// Successful probes in a row that mark the backend healthy.
    pub fn healthy_after(&self) -> u32 {
        self.healthy_after
    }

    /// How long a gate waits for a recovery before rejecting, if it waits.
    pub fn wait_for_recovery(&self) -> Option<Duration> {
        self.wait_for_recovery
    }

    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, problem| Err(ConfigError::new("health", field, problem));
        if self.name.is_empty() {
            return bad("name", "must not be empty");
        }
        if self.interval.is_zero() {
            return bad("interval", "must be greater than zero");
        }
        if self.probe_timeout.is_zero() {
            return bad("probe_timeout", "must be greater than zero");
        }
        if self.unhealthy_after == 0 {
            return bad("unhealthy_after", "must be at least 1");
        }
        if self.healthy_after == 0 {
            return bad("healthy_after", "must be at least 1");
        }
        if self.wait_for_recovery.is_some_and(|d| d.is_zero()) {
            return bad(
                "wait_for_recovery",
                "must be greater than zero (use without_wait_for_recovery to fail fast)",
            );
        }
        Ok(())
    }
}

impl Default for HealthConfig {
    /// The production profile.
    fn default() -> Self {
        Self::production()
    }
}
