//! `metrics` handles, registered once per breaker so that no call allocates labels.
//!
//! Metric names (all labelled `breaker = <name>`):
//! - `circuit_breaker_calls_total{outcome}`: calls that went through, by outcome
//!   (`success`, `failure`, `ignored`, `cancelled`);
//! - `circuit_breaker_rejections_total`: calls rejected without being sent;
//! - `circuit_breaker_slow_calls_total`: calls slower than the slow-call threshold;
//! - `circuit_breaker_transitions_total{to}`: state changes, by the state entered;
//! - `circuit_breaker_state{state}`: 1 for the current state, 0 for the others.

use std::sync::Arc;

use metrics::{Counter, Gauge, counter, gauge};

use super::state::BreakerState;

pub(crate) struct Metrics {
    pub success: Counter,
    pub failure: Counter,
    pub ignored: Counter,
    pub cancelled: Counter,
    pub rejected: Counter,
    pub slow: Counter,
    transitions: [Counter; BreakerState::ALL.len()],
    state: [Gauge; BreakerState::ALL.len()],
}

impl Metrics {
    /// Registers the handles with the recorder installed now (or a no-op one).
    pub fn register(name: &Arc<str>) -> Self {
        describe();
        let calls = |outcome: &'static str| counter!("circuit_breaker_calls_total", "breaker" => name.clone(), "outcome" => outcome);
        Metrics {
            success: calls("success"),
            failure: calls("failure"),
            ignored: calls("ignored"),
            cancelled: calls("cancelled"),
            rejected: counter!("circuit_breaker_rejections_total", "breaker" => name.clone()),
            slow: counter!("circuit_breaker_slow_calls_total", "breaker" => name.clone()),
            transitions: BreakerState::ALL.map(|to| {
                counter!("circuit_breaker_transitions_total", "breaker" => name.clone(), "to" => to.as_str())
            }),
            state: BreakerState::ALL.map(|state| {
                gauge!("circuit_breaker_state", "breaker" => name.clone(), "state" => state.as_str())
            }),
        }
    }

    pub fn transition(&self, from: BreakerState, to: BreakerState) {
        self.transitions[to as usize].increment(1);
        self.state[from as usize].set(0.0);
        self.state[to as usize].set(1.0);
    }

    pub fn initial(&self, state: BreakerState) {
        for (i, gauge) in self.state.iter().enumerate() {
            gauge.set(if i == state as usize { 1.0 } else { 0.0 });
        }
    }
}

/// Describes the metrics to the current recorder (cheap, and repeated so that a recorder
/// installed after the first breaker still gets the descriptions).
fn describe() {
    {
        metrics::describe_counter!(
            "circuit_breaker_calls_total",
            "Calls a circuit breaker let through, by outcome"
        );
        metrics::describe_counter!(
            "circuit_breaker_rejections_total",
            "Calls a circuit breaker rejected without sending them"
        );
        metrics::describe_counter!(
            "circuit_breaker_slow_calls_total",
            "Calls slower than the breaker's slow-call threshold"
        );
        metrics::describe_counter!(
            "circuit_breaker_transitions_total",
            "Circuit breaker state changes, by the state entered"
        );
        metrics::describe_gauge!(
            "circuit_breaker_state",
            "1 for a circuit breaker's current state, 0 for the others"
        );
    }
}
