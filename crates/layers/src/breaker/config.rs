//! What trips a breaker, how long it stays open and how it recovers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::error::ConfigError;
use crate::Classify;

/// A user rule deciding whether an error counts against the breaker.
///
/// It replaces [`ErrorKind::counts_as_failure`](crate::ErrorKind::counts_as_failure) for
/// every error the inner service returns; `true` means "the backend is sick".
pub type FailurePredicate = Arc<dyn Fn(&dyn Classify) -> bool + Send + Sync>;

/// The calls over which failure and slow-call rates are computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    /// The last `n` calls that completed with a counted outcome.
    ///
    /// Costs one byte per call slot and two atomic operations per call; the clock is not read.
    Count(u32),
    /// The calls that completed within the last `length`, kept in `buckets` equal slices.
    ///
    /// The window slides one bucket at a time, so it covers between `length - length/buckets`
    /// and `length`. Costs a clock read per call.
    Time {
        /// How far back the window reaches.
        length: Duration,
        /// How many slices it is kept in (precision against memory; 10 is a good default).
        buckets: u32,
    },
}

/// How long an open breaker waits before it lets trial calls through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OpenWait {
    /// Always the same wait.
    Fixed(Duration),
    /// `initial` on the first opening, multiplied by `multiplier` each time a half-open trial
    /// fails and the breaker re-opens, never more than `max`. Back to `initial` once closed.
    Exponential {
        /// The first wait.
        initial: Duration,
        /// The growth factor per re-opening (at least 1).
        multiplier: f64,
        /// The cap.
        max: Duration,
    },
}

impl OpenWait {
    /// The wait before jitter after `reopens` consecutive re-openings (0 for the first opening).
    pub fn base(&self, reopens: u32) -> Duration {
        match *self {
            OpenWait::Fixed(wait) => wait,
            OpenWait::Exponential {
                initial,
                multiplier,
                max,
            } => {
                let factor = multiplier.powi(reopens.min(1024) as i32);
                let secs = initial.as_secs_f64() * factor;
                if !secs.is_finite() || secs >= max.as_secs_f64() {
                    max
                } else {
                    Duration::from_secs_f64(secs)
                }
            }
        }
    }
}

/// Configuration of a circuit breaker.
///
/// Built from [`BreakerConfig::default`] with `with_*` methods; each says its default. Trip
/// policies combine: the breaker opens on whichever fires first. Only consecutive failures are
/// on by default, which keeps the closed-state path free of clock reads.
///
/// ```
/// use std::time::Duration;
/// use qdrant_tower_layers::breaker::BreakerConfig;
///
/// let config = BreakerConfig::default()
///     .with_consecutive_failures(10)
///     .with_failure_rate(0.5)
///     .with_time_window(Duration::from_secs(30), 10)
///     .with_minimum_calls(20)
///     .with_slow_calls(Duration::from_secs(2), 0.8)
///     .with_exponential_open_wait(Duration::from_secs(5), 2.0, Duration::from_secs(120))
///     .with_jitter(0.2);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone)]
pub struct BreakerConfig {
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) failure_rate: Option<f64>,
    pub(crate) slow_calls: Option<(Duration, f64)>,
    pub(crate) window: Window,
    pub(crate) minimum_calls: u32,
    pub(crate) open_wait: OpenWait,
    pub(crate) jitter: f64,
    pub(crate) half_open_trials: u32,
    pub(crate) half_open_successes: u32,
    pub(crate) auto_half_open: bool,
    pub(crate) backpressure: bool,
    pub(crate) predicate: Option<FailurePredicate>,
}

/// Counters in the packed state word are 16 bits wide.
pub(crate) const MAX_COUNTER: u32 = u16::MAX as u32;
const MAX_COUNT_WINDOW: u32 = 1 << 20;
const MAX_BUCKETS: u32 = 1024;

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: Some(5),
            failure_rate: None,
            slow_calls: None,
            window: Window::Count(100),
            minimum_calls: 20,
            open_wait: OpenWait::Fixed(Duration::from_secs(60)),
            jitter: 0.0,
            half_open_trials: 3,
            half_open_successes: 2,
            auto_half_open: false,
            backpressure: false,
            predicate: None,
        }
    }
}

impl BreakerConfig {
    /// Open after `n` counted failures in a row (a success resets the streak).
    /// Default: 5. At most 65 535.
    pub fn with_consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = Some(n);
        self
    }

    /// Do not open on consecutive failures (use a rate policy instead).
    /// Default: consecutive failures are on (5).
    pub fn without_consecutive_failures(mut self) -> Self {
        self.consecutive_failures = None;
        self
    }

    /// Open when the share of counted failures in the [window](Self::with_count_window) reaches
    /// `threshold` (in `(0, 1]`), once the window holds the
    /// [minimum number of calls](Self::with_minimum_calls). Default: off.
    pub fn with_failure_rate(mut self, threshold: f64) -> Self {
        self.failure_rate = Some(threshold);
        self
    }

    /// Count calls that take longer than `duration` as slow, and open when the share of slow
    /// calls in the window reaches `rate` (in `(0, 1]`). A slow half-open trial re-opens the
    /// breaker. Turning this on makes every call read the clock twice. Default: off.
    pub fn with_slow_calls(mut self, duration: Duration, rate: f64) -> Self {
        self.slow_calls = Some((duration, rate));
        self
    }

    /// Compute rates over the last `n` calls. Default: a count window of 100 calls (used only
    /// when a failure-rate or slow-call policy is on).
    pub fn with_count_window(mut self, n: u32) -> Self {
        self.window = Window::Count(n);
        self
    }

    /// Compute rates over the calls of the last `length`, kept in `buckets` slices.
    /// Default: a count window of 100 calls.
    pub fn with_time_window(mut self, length: Duration, buckets: u32) -> Self {
        self.window = Window::Time { length, buckets };
        self
    }

    /// Evaluate rates only once the window holds at least `n` calls, so that one failure out
    /// of one call does not open the breaker. Default: 20.
    pub fn with_minimum_calls(mut self, n: u32) -> Self {
        self.minimum_calls = n;
        self
    }

    /// Stay open for `wait` before letting trial calls through. Default: 60 s.
    pub fn with_open_wait(mut self, wait: Duration) -> Self {
        self.open_wait = OpenWait::Fixed(wait);
        self
    }

    /// Stay open for `initial`, then `multiplier` times longer after each failed trial, up to
    /// `max`. Default: a fixed 60 s wait.
    pub fn with_exponential_open_wait(
        mut self,
        initial: Duration,
        multiplier: f64,
        max: Duration,
    ) -> Self {
        self.open_wait = OpenWait::Exponential {
            initial,
            multiplier,
            max,
        };
        self
    }

    /// Shorten each open wait by a random share of up to `fraction` (in `[0, 1)`), so that a
    /// fleet of clients that opened together does not probe together. Default: 0 (no jitter).
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// Let at most `k` trial calls through per half-open period; more are rejected, not
    /// queued. A cancelled trial, or one that ends in an error that does not count, gives its
    /// permit back. Default: 3. At most 65 535.
    pub fn with_half_open_trials(mut self, k: u32) -> Self {
        self.half_open_trials = k;
        self
    }

    /// Close after `s` successful trial calls (at most the number of trials). Default: 2.
    pub fn with_half_open_successes(mut self, s: u32) -> Self {
        self.half_open_successes = s;
        self
    }

    /// Move to half-open by a timer when the open wait ends, instead of on the next call.
    /// Needs a Tokio runtime when the breaker opens (without one it falls back to the next
    /// call). Default: off.
    pub fn with_auto_half_open(mut self, on: bool) -> Self {
        self.auto_half_open = on;
        self
    }

    /// When the breaker would reject, make `poll_ready` return `Pending` (woken when the open
    /// wait ends or the state changes) instead of failing the call fast. For services behind
    /// `tower::buffer` or a balancer, which treat readiness as backpressure. Needs a Tokio
    /// runtime with time enabled. Default: off (fail fast).
    pub fn with_backpressure(mut self, on: bool) -> Self {
        self.backpressure = on;
        self
    }

    /// Decide with `predicate` which errors count against the breaker, instead of
    /// [`ErrorKind::counts_as_failure`](crate::ErrorKind::counts_as_failure).
    /// Default: the error kind decides.
    pub fn with_failure_predicate<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&dyn Classify) -> bool + Send + Sync + 'static,
    {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    /// Go back to letting the error kind decide what counts.
    pub fn without_failure_predicate(mut self) -> Self {
        self.predicate = None;
        self
    }

    /// Consecutive failures that open the breaker, if that policy is on.
    pub fn consecutive_failures(&self) -> Option<u32> {
        self.consecutive_failures
    }

    /// Failure-rate threshold, if that policy is on.
    pub fn failure_rate(&self) -> Option<f64> {
        self.failure_rate
    }

    /// Slow-call duration and rate threshold, if that policy is on.
    pub fn slow_calls(&self) -> Option<(Duration, f64)> {
        self.slow_calls
    }

    /// The window rates are computed over.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Calls the window must hold before rates are evaluated.
    pub fn minimum_calls(&self) -> u32 {
        self.minimum_calls
    }

    /// How long the breaker stays open.
    pub fn open_wait(&self) -> OpenWait {
        self.open_wait
    }

    /// The jitter fraction applied to open waits.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Trial calls allowed per half-open period.
    pub fn half_open_trials(&self) -> u32 {
        self.half_open_trials
    }

    /// Successful trials that close the breaker.
    pub fn half_open_successes(&self) -> u32 {
        self.half_open_successes
    }

    /// Whether a timer moves the breaker to half-open.
    pub fn auto_half_open(&self) -> bool {
        self.auto_half_open
    }

    /// Whether `poll_ready` waits instead of failing fast.
    pub fn backpressure(&self) -> bool {
        self.backpressure
    }

    /// Whether a rate policy (failure or slow-call) needs the window.
    pub(crate) fn uses_window(&self) -> bool {
        self.failure_rate.is_some() || self.slow_calls.is_some()
    }

    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, problem| Err(ConfigError::new("circuit breaker", field, problem));
        if let Some(n) = self.consecutive_failures
            && !(1..=MAX_COUNTER).contains(&n)
        {
            return bad("consecutive_failures", "must be between 1 and 65535");
        }
        if let Some(rate) = self.failure_rate
            && !(rate > 0.0 && rate <= 1.0)
        {
            return bad("failure_rate", "must be in (0, 1]");
        }
        if let Some((duration, rate)) = self.slow_calls {
            if duration.is_zero() {
                return bad("slow_calls.duration", "must be greater than zero");
            }
            if !(rate > 0.0 && rate <= 1.0) {
                return bad("slow_calls.rate", "must be in (0, 1]");
            }
        }
        match self.window {
            Window::Count(n) => {
                if !(1..=MAX_COUNT_WINDOW).contains(&n) {
                    return bad("window", "a count window must hold 1 to 1048576 calls");
                }
                if self.uses_window() && self.minimum_calls > n {
                    return bad(
                        "minimum_calls",
                        "must not exceed the count window's size, or rates are never evaluated",
                    );
                }
            }
            Window::Time { length, buckets } => {
                if !(1..=MAX_BUCKETS).contains(&buckets) {
                    return bad("window", "a time window must have 1 to 1024 buckets");
                }
                if length.as_nanos() < u128::from(buckets) {
                    return bad(
                        "window",
                        "a time window's buckets must be at least 1 ns long",
                    );
                }
            }
        }
        if self.minimum_calls == 0 {
            return bad("minimum_calls", "must be at least 1");
        }
        if let OpenWait::Exponential {
            initial,
            multiplier,
            max,
        } = self.open_wait
        {
            if initial.is_zero() {
                return bad("open_wait.initial", "must be greater than zero");
            }
            if !(multiplier >= 1.0 && multiplier.is_finite()) {
                return bad(
                    "open_wait.multiplier",
                    "must be a finite number of at least 1",
                );
            }
            if max < initial {
                return bad("open_wait.max", "must be at least the initial wait");
            }
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return bad("jitter", "must be in [0, 1)");
        }
        if !(1..=MAX_COUNTER).contains(&self.half_open_trials) {
            return bad("half_open_trials", "must be between 1 and 65535");
        }
        if !(1..=self.half_open_trials).contains(&self.half_open_successes) {
            return bad(
                "half_open_successes",
                "must be between 1 and the number of half-open trials",
            );
        }
        Ok(())
    }
}

impl fmt::Debug for BreakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerConfig")
            .field("consecutive_failures", &self.consecutive_failures)
            .field("failure_rate", &self.failure_rate)
            .field("slow_calls", &self.slow_calls)
            .field("window", &self.window)
            .field("minimum_calls", &self.minimum_calls)
            .field("open_wait", &self.open_wait)
            .field("jitter", &self.jitter)
            .field("half_open_trials", &self.half_open_trials)
            .field("half_open_successes", &self.half_open_successes)
            .field("auto_half_open", &self.auto_half_open)
            .field("backpressure", &self.backpressure)
            .field("predicate", &self.predicate.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design() {
        let c = BreakerConfig::default();
        assert_eq!(c.consecutive_failures(), Some(5));
        assert_eq!(c.half_open_successes(), 2);
        assert_eq!(c.half_open_trials(), 3);
        assert_eq!(c.open_wait(), OpenWait::Fixed(Duration::from_secs(60)));
        assert!(!c.uses_window());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validation_names_the_bad_field() {
        let cases = [
            (
                BreakerConfig::default().with_consecutive_failures(0),
                "consecutive_failures",
            ),
            (
                BreakerConfig::default().with_failure_rate(1.5),
                "failure_rate",
            ),
            (
                BreakerConfig::default()
                    .with_failure_rate(0.5)
                    .with_count_window(10)
                    .with_minimum_calls(11),
                "minimum_calls",
            ),
            (
                BreakerConfig::default().with_half_open_successes(4),
                "half_open_successes",
            ),
            (BreakerConfig::default().with_jitter(1.0), "jitter"),
            (
                BreakerConfig::default().with_exponential_open_wait(
                    Duration::from_secs(2),
                    2.0,
                    Duration::from_secs(1),
                ),
                "open_wait.max",
            ),
            (
                BreakerConfig::default().with_time_window(Duration::from_secs(1), 0),
                "window",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(config.validate().unwrap_err().field(), field);
        }
    }

    #[test]
    fn exponential_wait_grows_to_its_cap() {
        let wait = OpenWait::Exponential {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(10),
        };
        let waits: Vec<_> = (0..6).map(|n| wait.base(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(wait.base(u32::MAX), Duration::from_secs(10));
    }
}
