//! qdrant-tower: calls to the Qdrant vector database that survive a flaky network, an
//! overloaded or restarting server, and bad input.
//!
//! The project is a stack of [tower](https://docs.rs/tower) middleware around
//! [`QdrantService`], a `Service<VectorRequest>` that speaks gRPC to Qdrant through
//! qdrant-client's generated tonic clients. This facade re-exports the pieces:
//!
//! - [`client`]: [`VectorRequest`] ([`VectorOp`] and a deadline), [`VectorResponse`],
//!   [`VectorError`] and [`QdrantService`];
//! - [`layers`]: the error taxonomy ([`ErrorKind`], [`Classify`]) and the resilience layers,
//!   generic over any tower service;
//! - [`QdrantStack`]: the recommended stack (deadline → retry → health gate → circuit breaker
//!   → attempt timeout → [`QdrantService`]) built from a [`Profile`], with a nameable service
//!   type ([`StackService`]) and hooks for your own layers;
//! - [`config`]: the stack's configuration from a profile, a TOML file and the environment,
//!   validated with the key, value and source of each mistake, and reloaded into a running
//!   stack ([`QdrantStack::reload`], [`QdrantStack::watch`]);
//! - [`observe`]: a span per call with OpenTelemetry's database attributes, request and
//!   attempt metrics, and the Prometheus exporter (feature `prometheus`);
//! - `admin` (feature `admin`): the admin API and status page, an axum router to mount
//!   ([`QdrantStack::admin`]);
//! - [`Client`]: typed calls (qdrant-client's messages in, its typed responses out) over the
//!   stack or any `Service<VectorRequest>`.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use qdrant_tower::qdrant::SearchPointsBuilder;
//! use qdrant_tower::QdrantStack;
//!
//! let stack = QdrantStack::builder().endpoint("http://localhost:6334").build()?;
//! let found = stack
//!     .client()
//!     .search(SearchPointsBuilder::new("docs", vec![0.1, 0.2, 0.3], 5))
//!     .await?;
//! println!("{} hits", found.result.len());
//! # Ok(())
//! # }
//! ```
//!
//! Every layer stays usable alone with `tower::ServiceBuilder` (see [`layers`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "admin")]
pub mod admin;
pub mod cache;
pub mod config;
pub mod fallback;
pub mod observe;
pub mod queue;
pub mod saga;
mod stack;
mod typed;

pub use stack::{
    Profile, QdrantStack, QdrantStackBuilder, Reloaded, StackBreaker, StackError, StackService,
};
pub use typed::{Answer, Client, FallbackMark, Written};

pub use qdrant_tower_client as client;
pub use qdrant_tower_layers as layers;

pub use qdrant_tower_client::{
    ChunkOptions, ChunkedUpsert, Fallback, FallbackSource, InvalidRequest, Limits, Payload,
    PoolStats, QdrantService, QdrantServiceBuilder, Queued, VectorError, VectorOp, VectorRequest,
    VectorResponse, qdrant, upsert_chunked,
};
pub use qdrant_tower_layers::{Classify, ErrorKind, RequestInfo};

/// The README's Rust examples, compiled as doctests so that the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
