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
//!   generic over any tower service.
//!
//! The ready-made stack with profiles, configuration, metrics and an admin API comes in later
//! releases; today you compose the layers yourself with `tower::ServiceBuilder`.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use qdrant_tower::qdrant::SearchPointsBuilder;
//! use qdrant_tower::{QdrantService, VectorResponse};
//! use tower::ServiceExt;
//!
//! let service = QdrantService::from_url("http://localhost:6334")?;
//! let response = service
//!     .oneshot(SearchPointsBuilder::new("docs", vec![0.1, 0.2, 0.3], 5).into())
//!     .await?;
//! if let VectorResponse::Search(found) = response {
//!     println!("{} hits", found.result.len());
//! }
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use qdrant_tower_client as client;
pub use qdrant_tower_layers as layers;

pub use qdrant_tower_client::{
    ChunkOptions, ChunkedUpsert, InvalidRequest, Limits, Payload, QdrantService,
    QdrantServiceBuilder, VectorError, VectorOp, VectorRequest, VectorResponse, qdrant,
    upsert_chunked,
};
pub use qdrant_tower_layers::{Classify, ErrorKind, RequestInfo};

/// The README's Rust examples, compiled as doctests so that the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
