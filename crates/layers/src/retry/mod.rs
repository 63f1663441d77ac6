//! Middleware that retries failed calls, for transient failures only, with backoff, within a
//! budget and a deadline.
//!
//! A retry helps when a failure is brief (a reset connection, a shard moving) and hurts when
//! it is not: a backend that fails every call and sees every call three times fails for
//! longer. So this layer retries only what the error's [`ErrorKind`](crate::ErrorKind) says
//! is transient, spaces attempts with jittered backoff, honours the server's own
//! `retry_after`, never risks applying a write twice, keeps retries a bounded share of the
//! traffic with a [`RetryBudget`], and can bound the whole call by a deadline.
//!
//! # What is retried
//! Per kind, by the [`RetryPolicy`] table (defaults from DESIGN.md: `Connect` 3 attempts,
//! `RateLimited` 5, `Unavailable` 3, `Timeout` 2, `Internal` 3, "attempts" counting the first);
//! see [`RetryPolicy`] for the rules in order. In short:
//! - only [transient](crate::ErrorKind::is_transient) kinds: never a bad request, a missing
//!   collection, an auth failure, a breaker's `CircuitOpen` or a cancellation;
//! - a request that is not [idempotent](crate::RequestInfo::is_idempotent) only when the
//!   error proves it was never sent ([`Classify::maybe_sent`](crate::Classify::maybe_sent)
//!   is `false`), and never after a `Timeout`;
//! - never sooner than the error's [`retry_after`](crate::Classify::retry_after);
//! - only while the budget has a retry to give and the deadline leaves time to wait and try.
//!
//! Whenever it stops retrying, the caller gets the last attempt's own error, except when the
//! deadline passes while an attempt is in flight: that attempt is dropped and the call fails
//! with [`DeadlineExceeded`].
//!
//! # Why not `tower::retry::Retry`
//! DESIGN.md asks for a [`tower::retry::Policy`]; this layer keeps its shape (a policy that
//! decides and a future that runs the phases called → waiting → retrying, as in
//! `tower/src/retry/`) and reuses its budget, but implements the service and future itself,
//! because a `Policy` sees an attempt only once it has finished. It cannot cancel an attempt
//! when the call's deadline passes, nor stop waiting on an inner service that is not ready
//! in time, so it cannot promise that the call returns by its deadline; and it cannot wrap
//! each attempt in a `tracing` span. Per-call state (attempt count, jitter, previous delay)
//! would also have to ride in a per-call clone of the policy.
//!
//! Where a `tower::retry::Policy` is required, [`RetryLayer::tower_policy`] gives this layer's
//! policy, budget and seed as one ([`TowerPolicy`]), with every decision above but those.
//!
//! # The error contract
//! The service keeps its inner service's error type `E`, which must implement
//! [`Classify`](crate::Classify) and `From<DeadlineExceeded>` (a `tower::BoxError` does). The
//! request type must implement [`RequestInfo`](crate::RequestInfo) and `Clone`: the layer
//! keeps a clone to send again. The inner service must be `Clone`: retries run on a clone of
//! it, taken at a call's first retry (not, as in tower's retry, at every call), and each waits
//! for that clone's `poll_ready`.
//!
//! # Observability
//! Each attempt runs in an `INFO` `tracing` span `attempt{db.operation.name,
//! db.collection.name, attempt, delay_ms, error.type}` (OpenTelemetry's attribute names). A
//! retry refused by the budget is a `WARN` event, and `metrics` counts `retries_total{kind}`,
//! `retry_budget_exhausted_total{kind}` and `retry_deadline_exceeded_total`, and records
//! `retry_attempts_per_call` (a histogram). Handles are registered when the layer is built, so install
//! the recorder first. [`RetryBudget::refusals`] counts refusals too.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use qdrant_tower_layers::retry::{DeadlineExceeded, RetryLayer, RetryPolicy};
//! use qdrant_tower_layers::{Classify, ErrorKind, RequestInfo};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! #[derive(Debug, Clone)]
//! struct Search;
//!
//! impl RequestInfo for Search {
//!     fn operation(&self) -> &'static str { "search" }
//!     fn is_idempotent(&self) -> bool { true }
//! }
//!
//! #[derive(Debug)]
//! enum AppError {
//!     Unavailable,
//!     Deadline(DeadlineExceeded),
//! }
//!
//! impl Classify for AppError {
//!     fn kind(&self) -> ErrorKind {
//!         match self {
//!             AppError::Unavailable => ErrorKind::Unavailable,
//!             AppError::Deadline(e) => e.kind(),
//!         }
//!     }
//! }
//!
//! impl From<DeadlineExceeded> for AppError {
//!     fn from(e: DeadlineExceeded) -> Self {
//!         AppError::Deadline(e)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A backend that fails twice, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let backend = {
//!     let calls = calls.clone();
//!     service_fn(move |_: Search| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         async move { if n < 2 { Err(AppError::Unavailable) } else { Ok("hits") } }
//!     })
//! };
//!
//! let layer = RetryLayer::new(RetryPolicy::default().with_deadline(Duration::from_secs(30)))?;
//! let mut service = ServiceBuilder::new().layer(layer).service(backend);
//!
//! let hits = service.ready().await.map_err(|e| format!("{e:?}"))?.call(Search).await;
//! assert_eq!(hits.map_err(|e| format!("{e:?}"))?, "hits");
//! assert_eq!(calls.load(Ordering::SeqCst), 3, "Unavailable is tried 3 times by default");
//! # Ok(())
//! # }
//! ```

mod backoff;
mod budget;
pub mod future;
mod layer;
mod observe;
mod policy;
mod service;
mod tower_policy;

pub use self::backoff::{Backoff, Jitter, KindPolicy, SplitMix64};
pub use self::budget::{BudgetSettings, RetryBudget};
pub use self::layer::RetryLayer;
pub use self::policy::{RetryPolicy, RetryPredicate};
pub use self::service::Retry;
pub use self::tower_policy::TowerPolicy;
pub use crate::ConfigError;
pub use crate::deadline::DeadlineExceeded;
