//! A point-in-time picture of a breaker, for dashboards, admin APIs and tests.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::state::BreakerState;

/// A breaker's figures at one moment.
///
/// Counters run from the breaker's creation (a reset does not zero them); the window and the
/// streak describe the current state. Figures are read without stopping traffic, so under
/// load they may be a few calls apart from each other.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BreakerSnapshot {
    /// The breaker's name.
    pub name: Arc<str>,
    /// The service type or tag it was registered under, if any.
    pub tag: Option<Arc<str>>,
    /// Its state.
    pub state: BreakerState,
    /// Calls let through that have finished: `successes + failures + ignored + cancelled`.
    /// Calls still in flight and calls made while disabled are not counted.
    pub calls: u64,
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed with an error counting against the breaker.
    pub failures: u64,
    /// Calls that failed with an error that does not count (bad request, not found…).
    pub ignored: u64,
    /// Calls dropped by their caller before they finished.
    pub cancelled: u64,
    /// Calls slower than the slow-call threshold (also counted by outcome above).
    pub slow_calls: u64,
    /// Calls rejected without being sent.
    pub rejections: u64,
    /// The current streak of counted failures (closed and metrics-only states).
    pub consecutive_failures: u32,
    /// Trial permits taken in the current half-open period.
    pub half_open_trials: u32,
    /// Successful trials in the current half-open period.
    pub half_open_successes: u32,
    /// The rate window, when a failure-rate or slow-call policy is on.
    pub window: Option<WindowSnapshot>,
    /// The share of calls not rejected: `calls / (calls + rejections)`, 1 when there were none.
    pub availability: f64,
    /// Time spent in each state since creation, the current one included.
    pub time_in_state: TimeInState,
    /// When open: the time left before trial calls are let through.
    pub time_until_half_open: Option<Duration>,
    /// When the last counted failure ended.
    pub last_failure: Option<Instant>,
    /// When a recent success ended. Exact when a slow-call or time-window policy reads the
    /// clock anyway, and for the first success after a failure; otherwise the closed fast path
    /// samples the clock once every 64 successes, so it may lag by up to 63 successes.
    pub last_success: Option<Instant>,
    /// State changes since creation.
    pub transitions: u64,
    /// When the snapshot was taken.
    pub taken_at: Instant,
}

/// The rate window's contents.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct WindowSnapshot {
    /// Calls in the window (counted outcomes only: success or counted failure).
    pub calls: u64,
    /// Counted failures in the window.
    pub failures: u64,
    /// Slow calls in the window.
    pub slow_calls: u64,
    /// `failures / calls`, 0 for an empty window.
    pub failure_rate: f64,
    /// `slow_calls / calls`, 0 for an empty window.
    pub slow_call_rate: f64,
}

/// Time spent in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimeInState {
    /// In [`BreakerState::Closed`].
    pub closed: Duration,
    /// In [`BreakerState::Open`].
    pub open: Duration,
    /// In [`BreakerState::HalfOpen`].
    pub half_open: Duration,
    /// In [`BreakerState::Disabled`].
    pub disabled: Duration,
    /// In [`BreakerState::ForcedOpen`].
    pub forced_open: Duration,
    /// In [`BreakerState::MetricsOnly`].
    pub metrics_only: Duration,
}

impl TimeInState {
    pub(crate) fn from_array(t: [Duration; 6]) -> Self {
        TimeInState {
            closed: t[0],
            open: t[1],
            half_open: t[2],
            disabled: t[3],
            forced_open: t[4],
            metrics_only: t[5],
        }
    }

    /// The time spent in `state`.
    pub fn get(&self, state: BreakerState) -> Duration {
        match state {
            BreakerState::Closed => self.closed,
            BreakerState::Open => self.open,
            BreakerState::HalfOpen => self.half_open,
            BreakerState::Disabled => self.disabled,
            BreakerState::ForcedOpen => self.forced_open,
            BreakerState::MetricsOnly => self.metrics_only,
        }
    }
}
