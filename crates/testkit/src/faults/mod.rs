//! Fault injection inside the [`TestServer`](crate::TestServer): make chosen gRPC calls fail,
//! stall or break their connection the way a real Qdrant under stress does, and see exactly
//! which calls reached the server.
//!
//! A [`FaultPlan`] is an ordered list of [`FaultRule`]s. Each rule matches calls by RPC
//! ([`Rpc`]), collection, time window and an optional predicate over the decoded request
//! ([`FaultRequest`]), picks some of them with a [`Trigger`], and does one [`Fault`] to them (or
//! rate-limits them). Install a plan on a running server with
//! [`TestServer::set_faults`](crate::TestServer::set_faults), change or
//! [`clear`](crate::TestServer::clear_faults) it at any moment, or pass a cloneable
//! [`Faults`] handle ([`TestServer::faults`](crate::TestServer::faults)) to another task or to
//! a [`Scenario`](crate::scenario::Scenario). The server's [`CallLog`]
//! ([`TestServer::calls`](crate::TestServer::calls)) records every call that reached it, faulted
//! or not, as a [`Call`]: its arrival time on tokio's clock, its request and connection ids, the
//! decoded request.
//!
//! | Fault | Constructor | What the client sees |
//! |---|---|---|
//! | unavailable | [`Fault::unavailable`] | `UNAVAILABLE` "Shard temporarily unavailable: …" |
//! | deadline exceeded | [`Fault::deadline_exceeded`] | `DEADLINE_EXCEEDED` "Timeout: …" |
//! | internal | [`Fault::internal`] | `INTERNAL` "Service internal error: …" |
//! | rate limited | [`Fault::rate_limited(d)`](Fault::rate_limited) | `RESOURCE_EXHAUSTED` + `retry-after: ⌈d⌉` (whole seconds) |
//! | disk full | [`Fault::insufficient_storage`] | `RESOURCE_EXHAUSTED` + `qdrant-insufficient-storage: 1` |
//! | bad input | [`Fault::invalid_argument`] | `INVALID_ARGUMENT` "Wrong input: …" |
//! | not found | [`Fault::not_found`] | `NOT_FOUND` "Not found: …" |
//! | forbidden | [`Fault::permission_denied`] | `PERMISSION_DENIED` "Forbidden: …" |
//! | no credentials | [`Fault::unauthenticated`] | `UNAUTHENTICATED` |
//! | any status | [`Fault::status(code, msg)`](Fault::status) + [`with_header`](Fault::with_header) | that status and metadata |
//! | slow server | [`Fault::delay(d)`](Fault::delay), or [`.delayed(d)`](Fault::delayed) on any fault | the normal answer (or the fault), `d` late |
//! | never answer | [`Fault::hang`] | nothing, until the client's timeout |
//! | drop connection | [`Fault::drop_connection`] | a broken connection; every call in flight on it fails |
//! | apply, then fail | [`Fault::apply_then_unavailable`], [`Fault::apply_then_drop`], [`.after_apply()`](Fault::after_apply) on any fault | the write **is** applied, yet the call fails |
//! | strict-mode rate limit | [`FaultRule::rate_limit(n, per)`](FaultRule::rate_limit) | `n` calls per `per` per collection pass, then `RESOURCE_EXHAUSTED` + `retry-after` until the next token |
//!
//! | Trigger / filter | Rule method | Picks |
//! |---|---|---|
//! | always (default) | — | every matching call |
//! | first N | [`first(n)`](FaultRule::first) | matching calls 1..=n |
//! | every Nth | [`every_nth(n)`](FaultRule::every_nth) | calls n, 2n, 3n… |
//! | after N | [`after(n)`](FaultRule::after) | calls n+1, n+2… |
//! | probability | [`probability(p, seed)`](FaultRule::probability) | each call with chance p; the same seed picks the same calls |
//! | time window | [`active_for(d)`](FaultRule::active_for), [`active_after(d)`](FaultRule::active_after), [`active_between(a, b)`](FaultRule::active_between) | calls in that window after the plan was installed (tokio's clock) |
//! | RPC | [`rpc(Rpc::Search)`](FaultRule::rpc), [`writes()`](FaultRule::writes), [`reads()`](FaultRule::reads) | those RPCs |
//! | collection | [`collection("books")`](FaultRule::collection) | calls on that collection |
//! | predicate | [`when(\|call\| …)`](FaultRule::when) | calls it accepts; it sees the decoded request |
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use qdrant_client::qdrant::collections_client::CollectionsClient;
//! use qdrant_client::qdrant::points_client::PointsClient;
//! use qdrant_client::qdrant::{
//!     CreateCollectionBuilder, Distance, GetPointsBuilder, PointId, PointStruct,
//!     UpsertPointsBuilder, VectorParamsBuilder,
//! };
//! use qdrant_tower_testkit::TestServer;
//! use qdrant_tower_testkit::faults::{Fault, FaultPlan, FaultRule, Rpc};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = TestServer::start().await?;
//! let channel = tonic::transport::Channel::from_shared(server.url())?.connect().await?;
//! CollectionsClient::new(channel.clone())
//!     .create(
//!         CreateCollectionBuilder::new("books")
//!             .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
//!             .build(),
//!     )
//!     .await?;
//! let mut points = PointsClient::new(channel);
//!
//! // The first upsert is applied, then answered UNAVAILABLE.
//! server.set_faults(FaultRule::new(Fault::apply_then_unavailable()).rpc(Rpc::Upsert).first(1));
//! let point = PointStruct::new(1, vec![1.0, 0.0], [("title", "Dune".into())]);
//! let upsert = UpsertPointsBuilder::new("books", vec![point]).wait(true).build();
//! let status = points.upsert(upsert).await.unwrap_err();
//! assert_eq!(status.code(), tonic::Code::Unavailable);
//! server.clear_faults();
//!
//! let found = points
//!     .get(GetPointsBuilder::new("books", vec![PointId::from(1)]).build())
//!     .await?;
//! assert_eq!(found.into_inner().result.len(), 1, "the failed upsert was applied");
//! assert_eq!(server.calls().count(Rpc::Upsert, "books"), 1);
//! assert_eq!(server.calls().faulted(Rpc::Upsert, "books"), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # How it hooks in
//!
//! Every gRPC method of the server goes through one wrapper around the handlers (generated from
//! the [`Rpc`] table), which records the call, asks the plan, and acts: a status or a hang
//! skips the handler; a delay sleeps on tokio's clock first; "apply, then fail" runs the
//! handler and throws its answer away. To drop a connection, the server accepts its own TCP
//! connections and registers each under a connection id with a kill switch; the handler kills the
//! caller's, every later read and write on it fails, and hyper closes the socket. The
//! client's calls on that connection fail as a broken connection, which a client cannot tell
//! from a crash after the write: the request may have been applied.
//!
//! Faults act on calls that reached a handler; what happens on the wire before that (refused
//! connections, latency, resets mid-message) is the [`ChaosProxy`](crate::ChaosProxy)'s job.

mod active;
mod calls;
pub(crate) mod plan;
mod rpc;

pub use active::Faults;
pub(crate) use calls::CallRecord;
pub use calls::{Call, CallLog};
pub use plan::{
    Fault, FaultPlan, FaultRequest, FaultRule, INSUFFICIENT_STORAGE_HEADER, RETRY_AFTER_HEADER,
    Trigger, parse_grpc_timeout,
};
pub use rpc::Rpc;
pub(crate) use rpc::qdrant_rpcs;
