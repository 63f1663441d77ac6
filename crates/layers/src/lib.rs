//! Tower middleware that keeps calls to a flaky backend bounded, fair and honest.
//!
//! The crate is generic over any [`tower::Service`](https://docs.rs/tower) whose error
//! implements [`Classify`]: it knows nothing of Qdrant. Every layer decides what to do with a
//! failure from the error's [`ErrorKind`] alone, so one taxonomy, defined here, drives the
//! circuit breaker (what counts as a failure), retry (what is transient, how soon to try
//! again) and the facade's metrics.
//!
//! Requests tell the layers what they are through [`RequestInfo`]: an operation name for
//! metrics and traces, an optional collection (or other resource) name, and whether repeating
//! the request is safe.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod breaker;
mod classify;
pub mod clock;
mod config_error;
pub mod deadline;
pub mod health;
pub mod hedge;
pub mod retry;
mod setting;
pub mod timeout;
mod timer;

pub use breaker::{
    Breaker, BreakerConfig, BreakerKey, BreakerRegistry, CircuitBreaker, CircuitBreakerLayer,
    CircuitOpen, KeyedBreaker, KeyedBreakerLayer,
};
pub use classify::{Classify, ErrorKind, RequestInfo};
pub use config_error::ConfigError;
pub use deadline::{Deadline, DeadlineExceeded, DeadlineLayer};
pub use health::{HealthCheck, HealthConfig, HealthGate, HealthGateLayer, HealthStatus, Unhealthy};
pub use hedge::{Hedge, HedgeConfig, HedgeDelay, HedgeLayer};
pub use retry::{Retry, RetryBudget, RetryLayer, RetryPolicy};
pub use setting::SharedDuration;
pub use timeout::{AttemptTimedOut, AttemptTimeout, AttemptTimeoutLayer};
