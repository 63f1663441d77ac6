//! Middleware that bounds each attempt by a timeout, shrunk to the call's deadline.
//!
//! The innermost layer of the recommended stack (deadline → retry → health gate → breaker →
//! attempt timeout → service): each attempt the retry layer makes gets at most the layer's
//! timeout, and never more than the time left before the call's deadline
//! ([`RequestInfo::deadline`](crate::RequestInfo::deadline)). The limit is written back into
//! the request ([`RequestInfo::set_deadline`](crate::RequestInfo::set_deadline)), so the
//! service below hands it to the backend (`QdrantService` sends it as `grpc-timeout` and in the
//! request's `timeout` field) and the server gives up when the client does.
//!
//! An attempt that runs out of time is dropped and fails with [`AttemptTimedOut`], which
//! classifies as [`ErrorKind::Timeout`](crate::ErrorKind::Timeout), exactly like a server-side
//! `DEADLINE_EXCEEDED`: the breaker above counts it, and the retry layer retries it for
//! idempotent requests only. An attempt whose deadline has already passed is not started.
//!
//! Unlike `tower::timeout::Timeout`, the error is the inner service's own type (through
//! `From<AttemptTimedOut>`), not a `BoxError`, and the limit follows the request's deadline.
//!
//! ```
//! use std::time::Duration;
//! use qdrant_tower_layers::timeout::{AttemptTimedOut, AttemptTimeoutLayer};
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
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let slow = service_fn(|_: Search| async {
//!     tokio::time::sleep(Duration::from_secs(3)).await;
//!     Ok::<_, AttemptTimedOut>("hits")
//! });
//! let mut service = ServiceBuilder::new()
//!     .layer(AttemptTimeoutLayer::new(Duration::from_secs(1)))
//!     .service(slow);
//!
//! let error = service.ready().await.unwrap().call(Search).await.unwrap_err();
//! assert_eq!(error.kind(), ErrorKind::Timeout);
//! assert_eq!(error.limit, Duration::from_secs(1));
//! # }
//! ```

mod error;
pub mod future;
mod layer;
mod service;

pub use self::error::AttemptTimedOut;
pub use self::layer::AttemptTimeoutLayer;
pub use self::service::AttemptTimeout;
