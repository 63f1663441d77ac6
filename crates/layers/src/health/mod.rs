//! A health gate: a background prober decides whether the backend is healthy, and gates reject
//! calls while it is not.
//!
//! A breaker learns that a backend is down from the calls that fail through it; a health check
//! learns it from a probe of its own (for Qdrant, the gRPC health-check RPC), at an interval,
//! with its own timeout, whether or not traffic flows. [`HealthCheck::spawn`] starts the
//! prober; [`unhealthy_after`](HealthConfig::with_unhealthy_after) failed probes in a row mark
//! the backend unhealthy, [`healthy_after`](HealthConfig::with_healthy_after) successes
//! healthy again. A [`HealthGate`] (built by [`HealthGateLayer`]) in front of the breaker then
//! rejects calls with [`Unhealthy`] without sending them, at once or after waiting in
//! `poll_ready` up to a bound for a recovery.
//!
//! The status is readable and subscribable ([`HealthCheck::status`],
//! [`HealthCheck::subscribe`]) for readiness probes. And a recovery seen by the prober moves
//! [linked](HealthCheck::link_breaker) breakers to half-open at once, so traffic resumes a
//! probe interval after the backend does, not a breaker's open interval after.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::time::Duration;
//! use qdrant_tower_layers::health::{HealthCheck, HealthConfig, HealthGateLayer, HealthStatus, Unhealthy};
//! use qdrant_tower_layers::{Classify, ErrorKind};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let up = Arc::new(AtomicBool::new(true));
//! let probe = {
//!     let up = up.clone();
//!     move || {
//!         let up = up.load(Ordering::SeqCst);
//!         async move { if up { Ok(()) } else { Err("connection refused") } }
//!     }
//! };
//! let config = HealthConfig::testing().with_interval(Duration::from_secs(1)).with_unhealthy_after(2);
//! let check = HealthCheck::spawn(config, probe)?;
//! let mut service = ServiceBuilder::new()
//!     .layer(HealthGateLayer::new(check.clone()))
//!     .service(service_fn(|_: ()| async { Ok::<_, Unhealthy>("hits") }));
//!
//! up.store(false, Ordering::SeqCst);
//! tokio::time::sleep(Duration::from_millis(1500)).await; // two failed probes
//! assert_eq!(check.status(), HealthStatus::Unhealthy);
//! let error = service.ready().await?.call(()).await.unwrap_err();
//! assert_eq!(error.kind(), ErrorKind::Unhealthy);
//!
//! up.store(true, Ordering::SeqCst);
//! assert!(check.wait_healthy(Duration::from_secs(2)).await);
//! assert_eq!(service.ready().await?.call(()).await?, "hits");
//! # Ok(())
//! # }
//! ```

mod check;
mod config;
mod error;
pub mod future;
mod layer;
mod service;

pub use self::check::{HealthCheck, HealthSnapshot, HealthStatus};
pub use self::config::HealthConfig;
pub use self::error::Unhealthy;
pub use self::layer::HealthGateLayer;
pub use self::service::HealthGate;
