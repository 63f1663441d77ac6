//! An embedded, Qdrant-compatible gRPC server for tests, examples and benches.
//!
//! [`TestServer`] runs in-process on `127.0.0.1` and a free port, and answers the gRPC API that
//! qdrant-client's generated tonic clients speak. Behind it is qdrant-edge, Qdrant's own storage
//! engine: a WAL and segments on disk, HNSW (built by the background optimizer once a segment
//! passes the collection's `indexing_threshold`), payload indexes and the full filter language.
//! Errors come back with the codes and messages a real Qdrant sends, such as `NOT_FOUND`
//! "Not found: Collection `books` doesn't exist!".
//!
//! ```
//! use qdrant_client::qdrant::collections_client::CollectionsClient;
//! use qdrant_client::qdrant::points_client::PointsClient;
//! use qdrant_client::qdrant::{
//!     CreateCollectionBuilder, Distance, PointStruct, SearchPointsBuilder, UpsertPointsBuilder,
//!     VectorParamsBuilder,
//! };
//! use qdrant_tower_testkit::TestServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = TestServer::start().await?;
//! let channel = tonic::transport::Channel::from_shared(server.url())?.connect().await?;
//!
//! CollectionsClient::new(channel.clone())
//!     .create(
//!         CreateCollectionBuilder::new("books")
//!             .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
//!             .build(),
//!     )
//!     .await?;
//!
//! let mut points = PointsClient::new(channel);
//! let upsert = UpsertPointsBuilder::new(
//!     "books",
//!     vec![
//!         PointStruct::new(1, vec![1.0, 0.0], [("title", "Dune".into())]),
//!         PointStruct::new(2, vec![0.0, 1.0], [("title", "Emma".into())]),
//!     ],
//! )
//! .wait(true);
//! points.upsert(upsert.build()).await?;
//!
//! let hits = points
//!     .search(SearchPointsBuilder::new("books", vec![0.9, 0.1], 1).build())
//!     .await?
//!     .into_inner()
//!     .result;
//! assert_eq!(hits.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! What is implemented: the health check; collections create, delete, get, list, exists and
//! update (HNSW, per-vector HNSW, optimizers, replication and fan-out settings, metadata),
//! aliases (update, list, list per collection; every lookup by name accepts an alias), cluster
//! info (one local active shard) and shard key listing; snapshots create, list and delete, per
//! collection and full; points upsert, delete, get, update and delete vectors, set, overwrite,
//! delete and clear payload, create and delete payload index, search, search batch, scroll,
//! count, query and query batch (nearest, fusion, order-by and sample queries, with prefetches),
//! facet and update batch. Cluster changes and shard key changes answer `INVALID_ARGUMENT`
//! "Bad request: Distributed mode disabled", as a single-node Qdrant does. Every other RPC
//! answers `UNIMPLEMENTED` with a message naming it.
//!
//! A server keeps its collections, points and aliases in its data directory:
//! [`TestServer::stop`] and [`TestServer::restart`] bring it down and up again on the same
//! address and data, [`TestServer::crash`] kills it without a flush (the restart replays the
//! WAL), a [`ServerHandle`] does all three from other tasks, and a server started on a persistent
//! [`data_dir`](TestServerBuilder::data_dir) finds everything a previous one left. The
//! `qdrant-tower-testkit` binary runs the same server standalone:
//!
//! ```text
//! cargo run -p qdrant-tower-testkit -- serve --port 6334 --data ./qdrant-data
//! ```
//!
//! Inside, `storage` owns the collections (a name → `EdgeShard` map, the aliases, the snapshots
//! and the data directory) and knows nothing of gRPC; `server` holds the tonic services and the
//! protobuf ↔ engine conversions. Every RPC goes through one wrapper in front of the handlers, where
//! [`faults`] injects errors, delays, hangs and dropped connections and records each call
//! ([`TestServer::set_faults`], [`TestServer::calls`]); a [`ChaosProxy`] can sit in front of
//! [`TestServer::addr`] for faults on the wire, and a [`Scenario`] plays both over time.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chaos;
mod error;
pub mod faults;
pub mod scenario;
mod server;
mod storage;

pub use chaos::{ChaosProxy, Direction, DirectionToxics, ProxyStats, Toxics, Traffic};
pub use error::TestkitError;
pub use faults::{Call, CallLog, Fault, FaultPlan, FaultRequest, FaultRule, Faults, Rpc, Trigger};
pub use scenario::{Scenario, Step};
pub use server::{ServerHandle, TestServer, TestServerBuilder};

/// The protobuf → engine conversions without a server, for the `testkit_convert` fuzz target.
/// Not a stable API.
#[doc(hidden)]
pub use server::fuzzing;
