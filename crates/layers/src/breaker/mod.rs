//! Middleware that stops calling a backend that keeps failing, and probes it before trusting it
//! again.
//!
//! A sick backend answered with full traffic stays sick, and every caller waits on its
//! timeouts. A circuit breaker counts the failures that mean the backend itself is unwell and,
//! past a threshold, *opens*: calls fail at once with [`CircuitOpen`] instead of being sent.
//! After a wait it turns *half-open* and lets a few trial calls through; enough successes
//! *close* it again, one failure re-opens it.
//!
//! # What counts
//! Only errors whose [`ErrorKind::counts_as_failure`](crate::ErrorKind::counts_as_failure) is
//! true: connection failures, timeouts, unavailability and internal errors. A bad request, a
//! missing collection, an auth problem, a rate limit or a cancellation says nothing about the
//! backend's health and leaves the breaker alone
//! ([`BreakerConfig::with_failure_predicate`] overrides this).
//!
//! # When it opens
//! On whichever configured policy fires first:
//! - `n` consecutive failures (on by default, `n` = 5);
//! - a failure rate over a window of the last `n` calls or the last `t` (bucketed), once the
//!   window holds a minimum number of calls;
//! - a slow-call rate, a slow call being one longer than a set duration.
//!
//! It stays open for a fixed wait (60 s by default) or one growing with each re-opening up to
//! a cap, optionally shortened by random jitter so a fleet of clients does not probe in
//! lockstep. Then at most `k` trial calls go through (3 by default; the rest are rejected, not
//! queued), `s` successes close it (2 by default) and any counted failure re-opens it. A trial
//! whose caller gives up returns its permit, so the breaker never sticks half-open.
//!
//! Besides these, a breaker can be forced open, disabled, or put in metrics-only mode (count,
//! never open), reset, reconfigured at run time, and moved to half-open at once by a health
//! prober ([`Breaker::try_half_open`]).
//!
//! # The error contract
//! The service keeps its inner service's error type `E`, which must implement [`Classify`] and
//! `From<CircuitOpen>`; a rejection is `E::from(CircuitOpen { name, retry_in })`. It classifies
//! as [`ErrorKind::CircuitOpen`](crate::ErrorKind::CircuitOpen): not retried, not counted, never
//! sent. Services erroring with `tower::BoxError` work too.
//!
//! # Cost
//! In the closed state with the default policy a call costs a few atomic operations, takes no
//! lock, allocates nothing and does not read the clock. A slow-call policy or a time window
//! adds two clock reads per call. A rejection allocates nothing. State changes, window
//! rotation and snapshots take short locks off the call path.
//!
//! # Observability
//! State changes are logged as `tracing` events (breaker, from, to, reason), published to
//! [`Breaker::subscribe`] and [`Breaker::watch`], and counted in `metrics` (see below) along
//! with calls by outcome, rejections and slow calls, all labelled `breaker = <name>`.
//! [`Breaker::snapshot`] gives state, counters, window rates, availability, time in each state
//! and more; a [`BreakerRegistry`] holds named breakers for an admin API.
//!
//! Metrics: `circuit_breaker_calls_total{breaker, outcome}`,
//! `circuit_breaker_rejections_total{breaker}`, `circuit_breaker_slow_calls_total{breaker}`,
//! `circuit_breaker_transitions_total{breaker, to}` and `circuit_breaker_state{breaker, state}`
//! (1 for the current state). Handles are registered when the breaker is built, so install the
//! recorder first.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use qdrant_tower_layers::breaker::{Breaker, BreakerConfig, BreakerState, CircuitOpen};
//! use qdrant_tower_layers::{Classify, ErrorKind};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! #[derive(Debug)]
//! enum AppError {
//!     Unavailable,
//!     Rejected(CircuitOpen),
//! }
//!
//! impl Classify for AppError {
//!     fn kind(&self) -> ErrorKind {
//!         match self {
//!             AppError::Unavailable => ErrorKind::Unavailable,
//!             AppError::Rejected(open) => open.kind(),
//!         }
//!     }
//! }
//!
//! impl From<CircuitOpen> for AppError {
//!     fn from(open: CircuitOpen) -> Self {
//!         AppError::Rejected(open)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), AppError> {
//! let breaker = Breaker::new(
//!     "backend",
//!     BreakerConfig::default()
//!         .with_consecutive_failures(2)
//!         .with_open_wait(Duration::from_secs(30)),
//! )
//! .expect("a valid configuration");
//!
//! let mut service = ServiceBuilder::new()
//!     .layer(breaker.layer())
//!     .service(service_fn(|_request: &str| async { Err::<(), _>(AppError::Unavailable) }));
//!
//! // Two failures in a row open the breaker...
//! for _ in 0..2 {
//!     let result = service.ready().await?.call("ping").await;
//!     assert!(matches!(result, Err(AppError::Unavailable)));
//! }
//! assert_eq!(breaker.state(), BreakerState::Open);
//!
//! // ...and the next call is rejected without reaching the backend.
//! match service.ready().await?.call("ping").await {
//!     Err(AppError::Rejected(open)) => assert!(open.retry_in.is_some()),
//!     other => panic!("expected a rejection, got {other:?}"),
//! }
//! assert_eq!(breaker.snapshot().rejections, 1);
//! # Ok(())
//! # }
//! ```

mod config;
mod error;
pub mod future;
mod handle;
mod keyed;
mod layer;
mod observe;
mod registry;
mod service;
mod snapshot;
mod state;
mod window;

pub use self::config::{BreakerConfig, FailurePredicate, OpenWait, Window};
pub use self::error::{CircuitOpen, ConfigError};
pub use self::handle::Breaker;
pub use self::keyed::{BreakerKey, DEFAULT_MAX_KEYS, KeyedBreaker, KeyedBreakerLayer};
pub use self::layer::CircuitBreakerLayer;
pub use self::registry::BreakerRegistry;
pub use self::service::CircuitBreaker;
pub use self::snapshot::{BreakerSnapshot, TimeInState, WindowSnapshot};
pub use self::state::{BreakerState, StateChange, TransitionReason};

#[cfg(doc)]
use crate::Classify;
