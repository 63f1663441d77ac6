//! `metrics` handles and `tracing` spans, registered once per layer so that no call allocates
//! labels.
//!
//! Metric names:
//! - `retries_total{kind}`: retries made, by the kind of the error that caused them;
//! - `retry_budget_exhausted_total{kind}`: retries the budget refused (the call failed with
//!   its last error instead);
//! - `retry_deadline_exceeded_total`: calls whose deadline passed during an attempt.

use std::time::Duration;

use metrics::{Counter, counter};
use tracing::Span;

use crate::{ErrorKind, RequestInfo};

pub(crate) struct Metrics {
    pub retries: [Counter; ErrorKind::ALL.len()],
    pub budget_exhausted: [Counter; ErrorKind::ALL.len()],
    pub deadline_exceeded: Counter,
}

impl Metrics {
    /// Registers the handles with the recorder installed now (or a no-op one).
    pub fn register() -> Self {
        describe();
        Metrics {
            retries: ErrorKind::ALL.map(|kind| counter!("retries_total", "kind" => kind.as_str())),
            budget_exhausted: ErrorKind::ALL
                .map(|kind| counter!("retry_budget_exhausted_total", "kind" => kind.as_str())),
            deadline_exceeded: counter!("retry_deadline_exceeded_total"),
        }
    }
}

fn describe() {
    metrics::describe_counter!(
        "retries_total",
        "Retries made, by the kind of the error that caused them"
    );
    metrics::describe_counter!(
        "retry_budget_exhausted_total",
        "Retries refused because the retry budget was empty, by error kind"
    );
    metrics::describe_counter!(
        "retry_deadline_exceeded_total",
        "Calls whose total deadline passed while an attempt was in flight"
    );
}

/// The span of one attempt: `retry_attempt{op, collection, attempt, delay_ms, error_kind}`,
/// `error_kind` recorded when the attempt fails.
pub(crate) fn attempt_span<Req: RequestInfo>(request: &Req, attempt: u32, delay: Duration) -> Span {
    tracing::debug_span!(
        "retry_attempt",
        op = request.operation(),
        collection = request.collection(),
        attempt,
        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        error_kind = tracing::field::Empty,
    )
}
