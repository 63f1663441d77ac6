//! The data path of qdrant-tower: Qdrant's RPCs as one tower request type, one error
//! taxonomy, and [`QdrantService`], the `Service<VectorRequest>` that speaks gRPC to Qdrant.
//!
//! - [`VectorRequest`] / [`VectorResponse`]: every Points, Collections and Snapshots RPC and
//!   the health check ([`VectorOp`]), holding qdrant-client's own messages (build them with its
//!   builders and `.into()`), and the call's optional deadline. Each request tells its
//!   operation, collection, idempotency and deadline through
//!   [`RequestInfo`](qdrant_tower_layers::RequestInfo).
//! - [`VectorError`]: every failure with its [`ErrorKind`](qdrant_tower_layers::ErrorKind),
//!   the operation, collection, gRPC code and message, Qdrant's `retry-after` hint, and
//!   whether the request may have reached the server. It implements
//!   [`Classify`](qdrant_tower_layers::Classify), so the resilience layers can act on it.
//! - [`QdrantService`]: sends each request exactly once over qdrant-client's generated tonic
//!   clients (the big writes by reference, over the same RPCs), after validating it
//!   ([`Limits`]).
//! - [`upsert_chunked`]: a large upsert as bounded-concurrency chunks, none silently lost.
//!
//! This crate decides no policy: it never retries, waits or gives up on its own beyond the
//! request timeout it is configured with. The layers do that.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod by_ref;
mod chunked;
mod degraded;
pub mod discovery;
pub mod endpoints;
mod error;
pub mod log;
mod pool;
mod request;
mod service;
mod validate;

pub use chunked::{
    ChunkOptions, ChunkSuccess, ChunkedUpsert, FailedChunk, QueuedChunk, upsert_chunked,
};
pub use degraded::{Fallback, FallbackSource, Queued};
pub use endpoints::{Balance, OutlierDetection};
pub use error::{INSUFFICIENT_STORAGE_HEADER, InvalidRequest, RETRY_AFTER_HEADER, VectorError};
pub use pool::PoolStats;
pub use request::{DecodeError, VectorOp, VectorRequest, VectorResponse};
pub use service::{ConfigError, QdrantService, QdrantServiceBuilder, ResponseFuture};
pub use validate::Limits;

/// qdrant-client's point payload (build it from a `serde_json` object with `try_from`).
pub use qdrant_client::Payload;
/// qdrant-client's generated messages and builders, re-exported so users need not pin the
/// same version themselves.
pub use qdrant_client::qdrant;
