//! Middleware that bounds a whole call by a deadline, and stamps it on the request so every
//! layer below, and the backend, knows it.
//!
//! The outermost layer of the recommended stack (deadline → retry → health gate → breaker →
//! attempt timeout → service). For each call it settles the deadline: the request's own, if it
//! carries one ([`RequestInfo::deadline`](crate::RequestInfo::deadline)), else now plus the
//! layer's default. It writes that instant into the request
//! ([`RequestInfo::set_deadline`](crate::RequestInfo::set_deadline)), so that
//! - the [retry layer](crate::retry) starts no attempt and sleeps no backoff past it,
//! - the [attempt timeout](crate::timeout) shrinks each attempt to the time left,
//! - `QdrantService` hands the time left to Qdrant (`grpc-timeout` and the request's `timeout`
//!   field), so the server stops work the client no longer waits for,
//!
//! and it enforces it: when the deadline passes with the call in flight, the call is dropped
//! and fails with [`DeadlineExceeded`] (through `From<DeadlineExceeded>` into the inner
//! service's error type). A call whose deadline has already passed is not started at all.
//!
//! ```
//! use std::time::Duration;
//! use qdrant_tower_layers::deadline::{DeadlineExceeded, DeadlineLayer};
//! use qdrant_tower_layers::{Classify, ErrorKind, RequestInfo};
//! use tokio::time::Instant;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! #[derive(Debug, Clone)]
//! struct Search { deadline: Option<Instant> }
//!
//! impl RequestInfo for Search {
//!     fn operation(&self) -> &'static str { "search" }
//!     fn is_idempotent(&self) -> bool { true }
//!     fn deadline(&self) -> Option<Instant> { self.deadline }
//!     fn set_deadline(&mut self, at: Instant) { self.deadline = Some(at) }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // A backend that takes 5 s, and reports the deadline it was given.
//! let backend = service_fn(|request: Search| async move {
//!     let given = request.deadline.expect("the layer stamps the deadline");
//!     tokio::time::sleep(Duration::from_secs(5)).await;
//!     Ok::<_, DeadlineExceeded>(given)
//! });
//! let mut service = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Duration::from_secs(2)))
//!     .service(backend);
//!
//! let start = Instant::now();
//! let error = service.ready().await.unwrap().call(Search { deadline: None }).await.unwrap_err();
//! assert_eq!(error.kind(), ErrorKind::Timeout);
//! assert_eq!(start.elapsed(), Duration::from_secs(2));
//! # }
//! ```

mod error;
pub mod future;
mod layer;
mod service;

pub use self::error::DeadlineExceeded;
pub use self::layer::DeadlineLayer;
pub use self::service::Deadline;
