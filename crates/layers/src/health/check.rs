//! The health check: its status, its prober task, and the breakers it wakes on recovery.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Poll;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tower_service::Service;

use super::HealthConfig;
use crate::{Breaker, ConfigError, RequestInfo};

/// Whether the backend answered its recent probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthStatus {
    /// Healthy: calls pass. A check starts healthy, so that a slow first probe does not
    /// reject the first calls.
    Healthy,
    /// Failed [`unhealthy_after`](HealthConfig::with_unhealthy_after) probes in a row: gates
    /// reject calls (or wait for a recovery).
    Unhealthy,
}

impl HealthStatus {
    /// `true` for [`HealthStatus::Healthy`].
    pub const fn is_healthy(self) -> bool {
        matches!(self, HealthStatus::Healthy)
    }

    /// `healthy` or `unhealthy`, for logs and readiness endpoints.
    pub const fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A health check's figures at one moment, from [`HealthCheck::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthSnapshot {
    /// The current status.
    pub status: HealthStatus,
    /// Failed probes in a row (0 after a success).
    pub consecutive_failures: u32,
    /// Successful probes in a row (0 after a failure).
    pub consecutive_successes: u32,
    /// Probes run since the check started.
    pub probes: u64,
    /// When the status last changed (or the check started).
    pub since: Instant,
    /// Why the latest failed probe failed, if the latest probe failed.
    pub last_error: Option<String>,
}

/// A health check of one backend: a background prober and the status it keeps.
///
/// [`HealthCheck::spawn`] starts the prober, a Tokio task that runs the probe once at once,
/// then every [interval](HealthConfig::with_interval), each bounded by the
/// [probe timeout](HealthConfig::with_probe_timeout). The task ends when the last handle
/// (this type and every [`HealthGate`](super::HealthGate) holding one) is dropped.
///
/// The status is readable ([`status`](Self::status), [`snapshot`](Self::snapshot)) and
/// subscribable ([`subscribe`](Self::subscribe)), for readiness probes. Breakers linked with
/// [`link_breaker`](Self::link_breaker) move to half-open as soon as the prober sees the
/// backend recover, instead of waiting out their open interval.
///
/// # Observability
/// Status changes are `WARN` (unhealthy) and `INFO` (healthy again) `tracing` events;
/// `metrics` records the gauge `health_status{name}` (1 healthy, 0 unhealthy), the histogram
/// `health_probe_duration_seconds{name}`, and counts `health_probes_total{name, outcome}` and
/// `health_rejections_total{name}`. Handles are
/// registered when the check is spawned, so install the recorder first.
#[derive(Clone)]
pub struct HealthCheck {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) config: ArcSwap<HealthConfig>,
    healthy: AtomicBool,
    consecutive_failures: AtomicU32,
    state: Mutex<ProbeState>,
    status: watch::Sender<HealthStatus>,
    breakers: Mutex<Vec<Breaker>>,
    // Dropped with the last handle: ends the prober.
    _stop: oneshot::Sender<()>,
    rejections: metrics::Counter,
    probes_ok: metrics::Counter,
    probes_failed: metrics::Counter,
    status_gauge: metrics::Gauge,
    probe_latency: metrics::Histogram,
}

struct ProbeState {
    consecutive_successes: u32,
    probes: u64,
    since: Instant,
    last_error: Option<String>,
}

impl Shared {
    fn lock_state(&self) -> MutexGuard<'_, ProbeState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[inline]
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn count_rejection(&self) {
        self.rejections.increment(1);
    }

    pub(crate) fn watch(&self) -> watch::Receiver<HealthStatus> {
        self.status.subscribe()
    }

    /// Records one probe's outcome and flips the status when the thresholds say so.
    fn record(&self, outcome: Result<(), String>) {
        let config = self.config.load();
        let name = config.name();
        let mut state = self.lock_state();
        state.probes += 1;
        let healthy = self.is_healthy();
        match outcome {
            Ok(()) => {
                self.probes_ok.increment(1);
                self.consecutive_failures.store(0, Ordering::Relaxed);
                state.consecutive_successes = state.consecutive_successes.saturating_add(1);
                state.last_error = None;
                if !healthy && state.consecutive_successes >= config.healthy_after() {
                    state.since = Instant::now();
                    self.healthy.store(true, Ordering::Release);
                    drop(state);
                    tracing::info!(health_check = name, "backend healthy again");
                    self.publish(HealthStatus::Healthy);
                    let breakers = self
                        .breakers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    for breaker in breakers {
                        if breaker.try_half_open() {
                            tracing::info!(
                                health_check = name,
                                breaker = breaker.name(),
                                "recovery seen: breaker moved to half-open"
                            );
                        }
                    }
                }
            }
            Err(error) => {
                self.probes_failed.increment(1);
                state.consecutive_successes = 0;
                let failures = self
                    .consecutive_failures
                    .load(Ordering::Relaxed)
                    .saturating_add(1);
                self.consecutive_failures.store(failures, Ordering::Relaxed);
                tracing::debug!(health_check = name, failures, %error, "health probe failed");
                state.last_error = Some(error);
                if healthy && failures >= config.unhealthy_after() {
                    state.since = Instant::now();
                    self.healthy.store(false, Ordering::Release);
                    let error = state.last_error.clone();
                    drop(state);
                    tracing::warn!(
                        health_check = name,
                        failures,
                        error = error.as_deref(),
                        "backend unhealthy: gates reject calls"
                    );
                    self.publish(HealthStatus::Unhealthy);
                }
            }
        }
    }

    fn publish(&self, status: HealthStatus) {
        let value = if status.is_healthy() { 1.0 } else { 0.0 };
        self.status_gauge.set(value);
        self.status.send_replace(status);
    }
}

/// Runs `future` until it completes (`Some`) or the last handle is dropped (`None`).
async fn until_stopped<F: Future>(
    stopped: &mut oneshot::Receiver<()>,
    future: F,
) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        if Pin::new(&mut *stopped).poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        future.as_mut().poll(cx).map(Some)
    })
    .await
}

impl HealthCheck {
    /// Starts a health check that runs `probe` in a background task.
    ///
    /// `probe` is called once per probe and returns a future: `Ok(())` is a success, an error
    /// (shown in logs and [`HealthSnapshot::last_error`]) or running past the probe timeout a
    /// failure. The first probe runs at once. Must be called within a Tokio runtime; fails on
    /// a bad `config` (naming the field) or without a runtime.
    pub fn spawn<P, F, E>(config: HealthConfig, mut probe: P) -> Result<HealthCheck, ConfigError>
    where
        P: FnMut() -> F + Send + 'static,
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        HealthCheck::spawn_timed(config, move |_| probe())
    }

    /// [`spawn`](Self::spawn), telling `probe` the probe timeout it runs under.
    fn spawn_timed<P, F, E>(config: HealthConfig, mut probe: P) -> Result<HealthCheck, ConfigError>
    where
        P: FnMut(Duration) -> F + Send + 'static,
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new(
                "health",
                "runtime",
                "a health check must be started within a Tokio runtime",
            )
        })?;
        describe();
        let (stop, mut stopped) = oneshot::channel();
        let (status, _) = watch::channel(HealthStatus::Healthy);
        let shared = Arc::new(Shared {
            rejections: metrics::counter!("health_rejections_total", "name" => config.name().to_owned()),
            probes_ok: metrics::counter!("health_probes_total", "name" => config.name().to_owned(), "outcome" => "ok"),
            probes_failed: metrics::counter!("health_probes_total", "name" => config.name().to_owned(), "outcome" => "failed"),
            status_gauge: metrics::gauge!("health_status", "name" => config.name().to_owned()),
            probe_latency: metrics::histogram!("health_probe_duration_seconds", "name" => config.name().to_owned()),
            config: ArcSwap::from_pointee(config),
            healthy: AtomicBool::new(true),
            consecutive_failures: AtomicU32::new(0),
            state: Mutex::new(ProbeState {
                consecutive_successes: 0,
                probes: 0,
                since: Instant::now(),
                last_error: None,
            }),
            status,
            breakers: Mutex::new(Vec::new()),
            _stop: stop,
        });
        shared.status_gauge.set(1.0);
        let weak: Weak<Shared> = Arc::downgrade(&shared);
        runtime.spawn(async move {
            // Probes start `interval` apart (read before each wait, so a reconfiguration
            // applies from the next one), or at once after a probe that overran it.
            let mut started = Instant::now();
            loop {
                let Some(shared) = weak.upgrade() else { return };
                let timeout = shared.config.load().probe_timeout();
                drop(shared);
                // In a block of its own: the probe's error type need not be `Send`, so it
                // must be gone before the next `await`.
                let probe_started = Instant::now();
                let outcome = {
                    let probed =
                        until_stopped(&mut stopped, tokio::time::timeout(timeout, probe(timeout)))
                            .await;
                    match probed {
                        None => return,
                        Some(Ok(Ok(()))) => Ok(()),
                        Some(Ok(Err(error))) => Err(error.to_string()),
                        Some(Err(_)) => {
                            Err(format!("no answer within the probe timeout of {timeout:?}"))
                        }
                    }
                };
                let Some(shared) = weak.upgrade() else { return };
                shared
                    .probe_latency
                    .record(probe_started.elapsed().as_secs_f64());
                shared.record(outcome);
                let interval = shared.config.load().interval();
                drop(shared);
                let next = started + interval;
                // A probe that overran its interval is followed at once, and the schedule
                // restarts from then (tokio's `MissedTickBehavior::Delay`).
                let overran = next <= Instant::now();
                if until_stopped(&mut stopped, tokio::time::sleep_until(next))
                    .await
                    .is_none()
                {
                    return;
                }
                started = if overran { Instant::now() } else { next };
            }
        });
        Ok(HealthCheck { shared })
    }

    /// Starts a health check whose probe calls `service` with a clone of `request` (waiting
    /// for readiness first): for Qdrant, a `QdrantService` and its health-check request.
    ///
    /// Give it the bare backend service, not the stack with the gate in it: a gate that
    /// rejects its own probes would never see the backend recover.
    pub fn for_service<S, Req>(
        config: HealthConfig,
        service: S,
        request: Req,
    ) -> Result<HealthCheck, ConfigError>
    where
        S: Service<Req> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: fmt::Display + Send,
        Req: RequestInfo + Clone + Send + 'static,
    {
        HealthCheck::spawn_timed(config, move |timeout| {
            let mut service = service.clone();
            let mut request = request.clone();
            // The probe timeout as the request's deadline, so the backend knows it too.
            request.set_deadline(Instant::now() + timeout);
            async move {
                std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
                service.call(request).await.map(drop)
            }
        })
    }

    /// The current status (one atomic load).
    pub fn status(&self) -> HealthStatus {
        if self.shared.is_healthy() {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unhealthy
        }
    }

    /// The status now and every change: `changed().await` waits for the next one.
    pub fn subscribe(&self) -> watch::Receiver<HealthStatus> {
        self.shared.watch()
    }

    /// The check's figures now.
    pub fn snapshot(&self) -> HealthSnapshot {
        let state = self.shared.lock_state();
        HealthSnapshot {
            status: self.status(),
            consecutive_failures: self.shared.consecutive_failures(),
            consecutive_successes: state.consecutive_successes,
            probes: state.probes,
            since: state.since,
            last_error: state.last_error.clone(),
        }
    }

    /// The check's configuration (now).
    pub fn config(&self) -> Arc<HealthConfig> {
        self.shared.config.load_full()
    }

    /// Probes by `config`'s interval, timeout and thresholds from the next probe on (the
    /// name stays: it labels the check's metrics). Fails, changing nothing, on a bad field.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use qdrant_tower_layers::{HealthCheck, HealthConfig};
    ///
    /// let check = HealthCheck::spawn(HealthConfig::production(), || async { Ok::<(), String>(()) })
    ///     .unwrap();
    /// check.reconfigure(HealthConfig::testing()).unwrap();
    /// assert_eq!(check.config().interval(), Duration::from_secs(5));
    /// assert!(check.reconfigure(HealthConfig::testing().with_unhealthy_after(0)).is_err());
    /// # }
    /// ```
    pub fn reconfigure(&self, config: HealthConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let name = self.shared.config.load().name().to_owned();
        self.shared.config.store(Arc::new(config.with_name(name)));
        Ok(())
    }

    /// Moves `breaker` to half-open whenever the prober sees the backend recover, instead of
    /// leaving it open for the rest of its open interval.
    pub fn link_breaker(&self, breaker: Breaker) {
        let mut breakers = self
            .shared
            .breakers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !breakers.iter().any(|b| b.ptr_eq(&breaker)) {
            breakers.push(breaker);
        }
    }

    /// Waits until the backend is healthy, for at most `bound`; returns whether it is.
    pub async fn wait_healthy(&self, bound: Duration) -> bool {
        let mut status = self.subscribe();
        tokio::time::timeout(bound, status.wait_for(|s| s.is_healthy()))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthCheck")
            .field("name", &self.shared.config.load().name())
            .field("status", &self.status())
            .field("consecutive_failures", &self.shared.consecutive_failures())
            .finish_non_exhaustive()
    }
}

/// Describes the health metrics to the installed recorder.
fn describe() {
    metrics::describe_gauge!(
        "health_status",
        "1 while a health check finds its backend healthy, 0 while unhealthy"
    );
    metrics::describe_counter!(
        "health_probes_total",
        "Health probes run, by outcome (ok, failed)"
    );
    metrics::describe_counter!(
        "health_rejections_total",
        "Calls a health gate rejected while its backend was unhealthy"
    );
    metrics::describe_histogram!(
        "health_probe_duration_seconds",
        metrics::Unit::Seconds,
        "How long each health probe took (a timed-out probe counts its timeout)"
    );
}
