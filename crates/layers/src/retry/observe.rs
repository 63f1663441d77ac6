//! `metrics` handles and `tracing` spans, registered once per layer so that no call allocates
//! labels.
//!
//! Metric names:
//! - `retries_total{kind}`: retries made, by the kind of the error that caused them;
//! - `retry_budget_exhausted_total{kind}`: retries the budget refused (the call failed with
//!   its last error instead);
//! - `retry_deadline_exceeded_total`: calls whose deadline passed during an attempt;
//! - `retry_attempts_per_call`: a histogram of the attempts each call made (1: no retry).

use std::time::Duration;

use metrics::{Counter, Histogram, counter, histogram};
use tracing::Span;

use crate::{ErrorKind, RequestInfo};

pub(crate) struct Metrics {
    pub retries: [Counter; ErrorKind::ALL.len()],
    pub budget_exhausted: [Counter; ErrorKind::ALL.len()],
    pub deadline_exceeded: Counter,
    pub attempts: Histogram,
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
            attempts: histogram!("retry_attempts_per_call"),
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
    metrics::describe_histogram!(
        "retry_attempts_per_call",
        "Attempts each call made, the first included"
    );
}

/// The span of one attempt: `attempt{db.operation.name, db.collection.name, attempt,
/// delay_ms, error.type}` (OpenTelemetry's database attribute names), `error.type` recorded
/// when the attempt fails.
pub(crate) fn attempt_span<Req: RequestInfo>(request: &Req, attempt: u32, delay: Duration) -> Span {
    tracing::info_span!(
        "attempt",
        db.operation.name = request.operation(),
        db.collection.name = request.collection(),
        attempt,
        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        error.type = tracing::field::Empty,
    )
}
