//! `VectorRequest`, `VectorOp` and `VectorResponse`: every Qdrant RPC as one request type.
//!
//! One table, [`vector_ops!`], lists each RPC once: its request and response messages (qdrant
//! client's own), the generated client method that sends it, its operation name, whether it is
//! idempotent and whether its message has Qdrant's server-side `timeout` field. Everything
//! per-operation (the enums, `From` impls, operation names, the timeout field, the dispatch
//! onto the tonic clients) is generated from that table so that the lists cannot drift apart.
//!
//! # Idempotency, operation by operation
//! A request is idempotent when sending it twice leaves Qdrant as sending it once does. Qdrant
//! point ids are chosen by the client, so every point write addresses fixed ids:
//! - reads (get, search*, scroll, recommend*, discover*, count, query*, facet, search matrix,
//!   collection info/list/exists, aliases and snapshot lists, cluster info, health) change
//!   nothing: idempotent;
//! - upsert, update/delete vectors, set/overwrite/delete/clear payload, delete points (by ids or
//!   filter) and update batch (a sequence of those) converge to the same state however often
//!   they are applied: idempotent (a repeat may overwrite a write made in between by someone
//!   else, as any retried write can);
//! - create/delete field index and update collection set a target state: idempotent;
//! - create collection, create vector name and create shard key fail the second time
//!   (`already exists`), delete collection and delete shard key destroy whatever holds the name
//!   at that moment (possibly a new collection), alias changes include renames, creating a
//!   snapshot makes another snapshot, deleting one fails the second time, and cluster setup
//!   moves shards: not idempotent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use qdrant_client::qdrant::{
    ChangeAliases, ClearPayloadPoints, CollectionClusterInfoRequest, CollectionClusterInfoResponse,
    CollectionExistsRequest, CollectionExistsResponse, CollectionOperationResponse, CountPoints,
    CountResponse, CreateCollection, CreateFieldIndexCollection, CreateFullSnapshotRequest,
    CreateShardKeyRequest, CreateShardKeyResponse, CreateSnapshotRequest, CreateSnapshotResponse,
    CreateVectorNameRequest, DeleteCollection, DeleteFieldIndexCollection,
    DeleteFullSnapshotRequest, DeletePayloadPoints, DeletePointVectors, DeletePoints,
    DeleteShardKeyRequest, DeleteShardKeyResponse, DeleteSnapshotRequest, DeleteSnapshotResponse,
    DeleteVectorNameRequest, DiscoverBatchPoints, DiscoverBatchResponse, DiscoverPoints,
    DiscoverResponse, FacetCounts, FacetResponse, GetCollectionInfoRequest,
    GetCollectionInfoResponse, GetPoints, GetResponse, HealthCheckReply, HealthCheckRequest,
    ListAliasesRequest, ListAliasesResponse, ListCollectionAliasesRequest, ListCollectionsRequest,
    ListCollectionsResponse, ListFullSnapshotsRequest, ListShardKeysRequest, ListShardKeysResponse,
    ListSnapshotsRequest, ListSnapshotsResponse, PointsOperationResponse, QueryBatchPoints,
    QueryBatchResponse, QueryGroupsResponse, QueryPointGroups, QueryPoints, QueryResponse,
    RecommendBatchPoints, RecommendBatchResponse, RecommendGroupsResponse, RecommendPointGroups,
    RecommendPoints, RecommendResponse, ScrollPoints, ScrollResponse, SearchBatchPoints,
    SearchBatchResponse, SearchGroupsResponse, SearchMatrixOffsetsResponse,
    SearchMatrixPairsResponse, SearchMatrixPoints, SearchPointGroups, SearchPoints, SearchResponse,
    SetPayloadPoints, UpdateBatchPoints, UpdateBatchResponse, UpdateCollection,
    UpdateCollectionClusterSetupRequest, UpdateCollectionClusterSetupResponse, UpdatePointVectors,
    UpsertPoints, collections_client::CollectionsClient, points_client::PointsClient,
    qdrant_client::QdrantClient, snapshots_client::SnapshotsClient,
};
use qdrant_tower_layers::RequestInfo;
use tokio::time::Instant;
use tonic::client::Grpc;
use tonic::transport::Channel;

use crate::by_ref::{self, ByRef};
use crate::degraded::{Fallback, Queued};
use crate::service::CallOptions;

/// Generates `VectorOp`, `VectorResponse` and everything per operation from one table.
///
/// Row: `Variant(RequestType) -> ResponseType = client.method, "op_name", idempotent,
/// from|no_from, timeout|no_timeout, |req| collection_expr;` where `timeout` marks the
/// messages that have Qdrant's server-side `timeout` field (whole seconds).
macro_rules! vector_ops {
    ($(
        $(#[$doc:meta])*
        $variant:ident($req:ty) -> $resp:ty = $client:ident . $method:ident,
        $op:literal, $idem:literal, $from:ident, $timeout:ident, |$r:ident| $coll:expr;
    )*) => {
        /// What one call to Qdrant does: qdrant-client's own request message for the RPC.
        ///
        /// A [`VectorRequest`] holds one, with the call's deadline. Build the message with
        /// qdrant-client's builders and convert it with `.into()` (to a `VectorRequest`, or to
        /// a `VectorOp`).
        ///
        /// Two RPCs share a message type with another: use [`VectorOp::OverwritePayload`]
        /// and [`VectorOp::SearchMatrixOffsets`] explicitly (or
        /// [`VectorRequest::overwrite_payload`] and [`VectorRequest::search_matrix_offsets`]);
        /// `From` picks `SetPayload` and `SearchMatrixPairs`.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum VectorOp {
            $(
                $(#[$doc])*
                #[doc = concat!("\n\nRPC `", stringify!($client), ".", stringify!($method),
                    "`, operation name `", $op, "`, idempotent: ", stringify!($idem),
                    ", server-side `timeout` field: ", vector_ops!(@has_timeout $timeout), ".")]
                $variant($req),
            )*
        }

        /// Qdrant's answer to a [`VectorRequest`]: the variant named as its [`VectorOp`],
        /// holding qdrant-client's own response message.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum VectorResponse {
            $(
                #[doc = concat!("Answer to [`VectorOp::", stringify!($variant), "`].")]
                $variant($resp),
            )*
            /// A write the write-behind queue accepted instead of sending it: on disk, not
            /// yet applied (see [`Queued`]).
            Queued(Queued),
            /// An answer given in place of a failed call, marked with its source (see
            /// [`Fallback`]).
            Fallback(Box<Fallback>),
        }

        impl VectorRequest {
            /// Every operation name, in table order (for metrics pre-registration and tests).
            pub const OPERATIONS: &'static [&'static str] = &[$($op),*];
        }

        /// The operations in table order, for [`VectorOp::index`].
        #[allow(dead_code)]
        enum OpIndex { $($variant),* }

        impl VectorOp {
            /// A short, stable name of the operation (`"search"`, `"upsert"`…).
            pub fn operation(&self) -> &'static str {
                match self { $(VectorOp::$variant(_) => $op,)* }
            }

            /// The operation's position in [`VectorRequest::OPERATIONS`]: a dense index for
            /// per-operation tables (metrics handles) without hashing its name.
            ///
            /// ```
            /// use qdrant_tower_client::VectorRequest;
            /// use qdrant_tower_client::qdrant::SearchPointsBuilder;
            /// let request = VectorRequest::from(SearchPointsBuilder::new("docs", vec![1.0], 1));
            /// assert_eq!(VectorRequest::OPERATIONS[request.op().index()], "search");
            /// ```
            pub fn index(&self) -> usize {
                match self { $(VectorOp::$variant(_) => OpIndex::$variant as usize,)* }
            }

            /// The collection the message addresses, if any.
            pub fn collection(&self) -> Option<&str> {
                match self { $(VectorOp::$variant($r) => { let _ = &$r; $coll },)* }
            }

            /// Whether sending the message twice has the same effect as sending it once.
            pub fn is_idempotent(&self) -> bool {
                match self { $(VectorOp::$variant(_) => $idem,)* }
            }

            /// Qdrant's server-side `timeout` field of the message (whole seconds): `None` when
            /// the message has no such field, `Some(value)` when it has.
            pub fn server_timeout(&self) -> Option<Option<u64>> {
                match self { $(VectorOp::$variant(message) => vector_ops!(@get $timeout message),)* }
            }

            /// Bounds the message's server-side `timeout` field by `limit`, rounded up to whole
            /// seconds (at least 1); a smaller value already there is kept. Does nothing to a
            /// message without the field. Returns the value now set, if any.
            pub(crate) fn bound_server_timeout(&mut self, limit: Duration) -> Option<u64> {
                match self { $(VectorOp::$variant(message) => vector_ops!(@bound $timeout message limit),)* }
            }

            /// One message of each kind, every field at its default (for tests).
            #[cfg(test)]
            pub(crate) fn samples() -> Vec<VectorOp> {
                vec![$(VectorOp::$variant(<$req>::default()),)*]
            }
        }

        impl VectorResponse {
            /// The operation name of the request this answers.
            pub fn operation(&self) -> &'static str {
                match self {
                    $(VectorResponse::$variant(_) => $op,)*
                    VectorResponse::Queued(queued) => queued.operation,
                    VectorResponse::Fallback(fallback) => fallback.response.operation(),
                }
            }

            /// The size of the answer's protobuf encoding, in bytes (what a cache weighs it by).
            pub fn encoded_len(&self) -> usize {
                match self {
                    $(VectorResponse::$variant(message) => prost::Message::encoded_len(message),)*
                    VectorResponse::Queued(_) => 0,
                    VectorResponse::Fallback(fallback) => fallback.response.encoded_len(),
                }
            }
        }

        impl VectorOp {
            /// The message's protobuf encoding: a stable key for the request (a cache's), the
            /// same bytes for equal messages.
            pub fn encode_to_vec(&self) -> Vec<u8> {
                match self { $(VectorOp::$variant(message) => prost::Message::encode_to_vec(message),)* }
            }

            /// The message of operation `operation` (a name from
            /// [`VectorRequest::OPERATIONS`]) from its protobuf encoding: the inverse of
            /// [`encode_to_vec`](Self::encode_to_vec) (what the write-behind queue stores).
            ///
            /// ```
            /// use qdrant_tower_client::VectorOp;
            /// use qdrant_tower_client::qdrant::CountPointsBuilder;
            /// let op = VectorOp::from(CountPointsBuilder::new("docs").build());
            /// let back = VectorOp::decode(op.operation(), &op.encode_to_vec()).unwrap();
            /// assert_eq!(back, op);
            /// ```
            pub fn decode(operation: &str, bytes: &[u8]) -> Result<VectorOp, DecodeError> {
                match operation {
                    $($op => <$req as prost::Message>::decode(bytes)
                        .map(VectorOp::$variant)
                        .map_err(|error| DecodeError(format!("a {} message: {error}", $op))),)*
                    other => Err(DecodeError(format!("no operation is named {other:?}"))),
                }
            }
        }

        $( vector_ops!(@from $from $variant $req); )*

        /// Sends `op` over `channel` with the generated tonic client for its service, with
        /// `timeout` as `grpc-timeout`.
        // Qdrant deprecated search, recommend and discover (and their batch and group forms)
        // in favour of query, but still serves them; users who send them get them sent.
        #[allow(deprecated)]
        fn dispatch_owned(
            channel: Channel,
            options: &CallOptions,
            op: VectorOp,
            timeout: Option<Duration>,
        ) -> Dispatch {
            match op {
                $(VectorOp::$variant(message) => {
                    let mut client = vector_ops!(@client $client channel options);
                    let request = options.request(message, timeout);
                    Box::pin(async move {
                        client
                            .$method(request)
                            .await
                            .map(|response| VectorResponse::$variant(response.into_inner().into()))
                    })
                })*
            }
        }
    };

    (@from from $variant:ident $req:ty) => {
        impl From<$req> for VectorOp {
            fn from(message: $req) -> Self {
                VectorOp::$variant(message)
            }
        }
        impl From<$req> for VectorRequest {
            fn from(message: $req) -> Self {
                VectorRequest::new(VectorOp::$variant(message))
            }
        }
    };
    (@from no_from $variant:ident $req:ty) => {};

    (@has_timeout timeout) => { "yes" };
    (@has_timeout no_timeout) => { "no" };
    (@get timeout $message:ident) => { Some($message.timeout) };
    (@get no_timeout $message:ident) => {{ let _ = $message; None }};
    (@bound timeout $message:ident $limit:ident) => {{
        let bounded = bound_seconds($message.timeout, $limit);
        $message.timeout = Some(bounded);
        Some(bounded)
    }};
    (@bound no_timeout $message:ident $limit:ident) => {{ let _ = ($message, $limit); None }};

    (@client points $channel:ident $options:ident) => { $options.configure(PointsClient::new($channel)) };
    (@client collections $channel:ident $options:ident) => { $options.configure(CollectionsClient::new($channel)) };
    (@client snapshots $channel:ident $options:ident) => { $options.configure(SnapshotsClient::new($channel)) };
    (@client qdrant $channel:ident $options:ident) => { $options.configure(QdrantClient::new($channel)) };
}

/// Sends `op` over `channel` with `timeout` as `grpc-timeout` and, when `server_timeout` is
/// set, the message's server-side `timeout` field bounded by it.
///
/// The big writes (upsert, update vectors, update batch: the operations that carry vectors in
/// bulk) go by reference through [`by_ref`], the same RPC without copying the shared message;
/// every other operation is taken out of the `Arc` (copied only if a clone of the request is
/// still alive) and sent by its generated client.
///
/// Each operation's future is boxed on its own, at its own size: one future for all of them
/// is as large as the largest (it was 12.6 KiB in a debug build), and allocating and freeing
/// that much per call made glibc trim and grow its heap around it — page faults that cost a
/// search ~30 µs on loopback (BENCHMARKS.md, section 2).
pub(crate) fn dispatch(
    channel: Channel,
    options: &CallOptions,
    op: Arc<SharedOp>,
    timeout: Option<Duration>,
    server_timeout: Option<Duration>,
) -> Dispatch {
    macro_rules! by_reference {
        ($variant:ident($message:ty), $method:literal) => {{
            fn message(op: &VectorOp) -> &$message {
                match op {
                    VectorOp::$variant(message) => message,
                    _ => unreachable!("matched by dispatch"),
                }
            }
            let patch = server_timeout.map(|limit| {
                let mut patch = <$message>::default();
                patch.timeout = Some(bound_seconds(message(&op.op).timeout, limit));
                patch
            });
            let item = ByRef { op, message, patch };
            let rpc = (
                "qdrant.Points",
                $method,
                concat!("/qdrant.Points/", $method),
            );
            let call = by_ref::unary(channel, options, item, timeout, rpc);
            Box::pin(async move { call.await.map(VectorResponse::$variant) })
        }};
    }
    match op.op {
        VectorOp::Upsert(_) => by_reference!(Upsert(UpsertPoints), "Upsert"),
        VectorOp::UpdateVectors(_) => {
            by_reference!(UpdateVectors(UpdatePointVectors), "UpdateVectors")
        }
        VectorOp::UpdateBatch(_) => by_reference!(UpdateBatch(UpdateBatchPoints), "UpdateBatch"),
        _ => {
            let mut op = Arc::unwrap_or_clone(op).op;
            if let Some(limit) = server_timeout {
                op.bound_server_timeout(limit);
            }
            dispatch_owned(channel, options, op, timeout)
        }
    }
}

/// One call on its way: what [`dispatch`] answers.
pub(crate) type Dispatch = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<VectorResponse, tonic::Status>> + Send>,
>;

impl VectorOp {
    /// Whether the operation only reads: it changes nothing on the server (points,
    /// collections, aliases, snapshots or cluster). Breakers keyed by read/write class use it.
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            VectorOp::Get(_)
                | VectorOp::Search(_)
                | VectorOp::SearchBatch(_)
                | VectorOp::SearchGroups(_)
                | VectorOp::Scroll(_)
                | VectorOp::Recommend(_)
                | VectorOp::RecommendBatch(_)
                | VectorOp::RecommendGroups(_)
                | VectorOp::Discover(_)
                | VectorOp::DiscoverBatch(_)
                | VectorOp::Count(_)
                | VectorOp::Query(_)
                | VectorOp::QueryBatch(_)
                | VectorOp::QueryGroups(_)
                | VectorOp::Facet(_)
                | VectorOp::SearchMatrixPairs(_)
                | VectorOp::SearchMatrixOffsets(_)
                | VectorOp::ListCollections(_)
                | VectorOp::GetCollection(_)
                | VectorOp::CollectionExists(_)
                | VectorOp::ListAliases(_)
                | VectorOp::ListCollectionAliases(_)
                | VectorOp::CollectionClusterInfo(_)
                | VectorOp::ListShardKeys(_)
                | VectorOp::ListSnapshots(_)
                | VectorOp::ListFullSnapshots(_)
                | VectorOp::HealthCheck(_)
        )
    }
}

/// The server-side timeout (whole seconds) for a call with `limit` left: `limit` rounded up,
/// at least 1, or `own` if that is smaller.
pub(crate) fn bound_seconds(own: Option<u64>, limit: Duration) -> u64 {
    let seconds = limit.as_secs() + u64::from(limit.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    match own {
        Some(own) if own < seconds => own,
        _ => seconds,
    }
}

/// Applies the per-client options (compression, message size limits) the same way to every
/// generated client type, and to the bare `Grpc` client that sends the big writes by
/// reference.
macro_rules! impl_configure {
    ($($client:ident),*) => {$(
        impl crate::service::Configure for $client<Channel> {
            fn compressed(self, encoding: tonic::codec::CompressionEncoding) -> Self {
                self.send_compressed(encoding).accept_compressed(encoding)
            }
            fn max_message_size(self, bytes: usize) -> Self {
                self.max_decoding_message_size(bytes).max_encoding_message_size(bytes)
            }
        }
    )*};
}
impl_configure!(
    PointsClient,
    CollectionsClient,
    SnapshotsClient,
    QdrantClient,
    Grpc
);

fn name(collection: &str) -> Option<&str> {
    Some(collection)
}

vector_ops! {
    /// Insert or replace points.
    Upsert(UpsertPoints) -> PointsOperationResponse = points.upsert, "upsert", true, from, timeout, |r| name(&r.collection_name);
    /// Delete points by ids or by filter.
    Delete(DeletePoints) -> PointsOperationResponse = points.delete, "delete", true, from, timeout, |r| name(&r.collection_name);
    /// Retrieve points by ids.
    Get(GetPoints) -> GetResponse = points.get, "get", true, from, timeout, |r| name(&r.collection_name);
    /// Replace named vectors of existing points.
    UpdateVectors(UpdatePointVectors) -> PointsOperationResponse = points.update_vectors, "update_vectors", true, from, timeout, |r| name(&r.collection_name);
    /// Delete named vectors of points.
    DeleteVectors(DeletePointVectors) -> PointsOperationResponse = points.delete_vectors, "delete_vectors", true, from, timeout, |r| name(&r.collection_name);
    /// Merge payload keys into points.
    SetPayload(SetPayloadPoints) -> PointsOperationResponse = points.set_payload, "set_payload", true, from, timeout, |r| name(&r.collection_name);
    /// Replace the whole payload of points.
    OverwritePayload(SetPayloadPoints) -> PointsOperationResponse = points.overwrite_payload, "overwrite_payload", true, no_from, timeout, |r| name(&r.collection_name);
    /// Delete payload keys of points.
    DeletePayload(DeletePayloadPoints) -> PointsOperationResponse = points.delete_payload, "delete_payload", true, from, timeout, |r| name(&r.collection_name);
    /// Remove the whole payload of points.
    ClearPayload(ClearPayloadPoints) -> PointsOperationResponse = points.clear_payload, "clear_payload", true, from, timeout, |r| name(&r.collection_name);
    /// Create a payload index.
    CreateFieldIndex(CreateFieldIndexCollection) -> PointsOperationResponse = points.create_field_index, "create_field_index", true, from, timeout, |r| name(&r.collection_name);
    /// Delete a payload index.
    DeleteFieldIndex(DeleteFieldIndexCollection) -> PointsOperationResponse = points.delete_field_index, "delete_field_index", true, from, timeout, |r| name(&r.collection_name);
    /// Add a named vector to a collection.
    CreateVectorName(CreateVectorNameRequest) -> PointsOperationResponse = points.create_vector_name, "create_vector_name", false, from, timeout, |r| name(&r.collection_name);
    /// Remove a named vector from a collection.
    DeleteVectorName(DeleteVectorNameRequest) -> PointsOperationResponse = points.delete_vector_name, "delete_vector_name", false, from, timeout, |r| name(&r.collection_name);
    /// Nearest-neighbour search.
    Search(SearchPoints) -> SearchResponse = points.search, "search", true, from, timeout, |r| name(&r.collection_name);
    /// Several searches in one call.
    SearchBatch(SearchBatchPoints) -> SearchBatchResponse = points.search_batch, "search_batch", true, from, timeout, |r| name(&r.collection_name);
    /// Search grouped by a payload field.
    SearchGroups(SearchPointGroups) -> SearchGroupsResponse = points.search_groups, "search_groups", true, from, timeout, |r| name(&r.collection_name);
    /// Page through points.
    Scroll(ScrollPoints) -> ScrollResponse = points.scroll, "scroll", true, from, timeout, |r| name(&r.collection_name);
    /// Recommend by positive and negative examples.
    Recommend(RecommendPoints) -> RecommendResponse = points.recommend, "recommend", true, from, timeout, |r| name(&r.collection_name);
    /// Several recommendations in one call.
    RecommendBatch(RecommendBatchPoints) -> RecommendBatchResponse = points.recommend_batch, "recommend_batch", true, from, timeout, |r| name(&r.collection_name);
    /// Recommendations grouped by a payload field.
    RecommendGroups(RecommendPointGroups) -> RecommendGroupsResponse = points.recommend_groups, "recommend_groups", true, from, timeout, |r| name(&r.collection_name);
    /// Discovery search with a target and context pairs.
    Discover(DiscoverPoints) -> DiscoverResponse = points.discover, "discover", true, from, timeout, |r| name(&r.collection_name);
    /// Several discovery searches in one call.
    DiscoverBatch(DiscoverBatchPoints) -> DiscoverBatchResponse = points.discover_batch, "discover_batch", true, from, timeout, |r| name(&r.collection_name);
    /// Count points, optionally matching a filter.
    Count(CountPoints) -> CountResponse = points.count, "count", true, from, timeout, |r| name(&r.collection_name);
    /// Several point writes applied in order.
    UpdateBatch(UpdateBatchPoints) -> UpdateBatchResponse = points.update_batch, "update_batch", true, from, timeout, |r| name(&r.collection_name);
    /// Universal query (nearest, fusion, order-by, …).
    Query(QueryPoints) -> QueryResponse = points.query, "query", true, from, timeout, |r| name(&r.collection_name);
    /// Several queries in one call.
    QueryBatch(QueryBatchPoints) -> QueryBatchResponse = points.query_batch, "query_batch", true, from, timeout, |r| name(&r.collection_name);
    /// Query grouped by a payload field.
    QueryGroups(QueryPointGroups) -> QueryGroupsResponse = points.query_groups, "query_groups", true, from, timeout, |r| name(&r.collection_name);
    /// Count distinct values of a payload field.
    Facet(FacetCounts) -> FacetResponse = points.facet, "facet", true, from, timeout, |r| name(&r.collection_name);
    /// Distance matrix between sampled points, as pairs.
    SearchMatrixPairs(SearchMatrixPoints) -> SearchMatrixPairsResponse = points.search_matrix_pairs, "search_matrix_pairs", true, from, timeout, |r| name(&r.collection_name);
    /// Distance matrix between sampled points, as offsets.
    SearchMatrixOffsets(SearchMatrixPoints) -> SearchMatrixOffsetsResponse = points.search_matrix_offsets, "search_matrix_offsets", true, no_from, timeout, |r| name(&r.collection_name);

    /// Collection information: status, points count, config. (The answer is boxed: it is
    /// five times larger than any other and would make every response that size.)
    GetCollection(GetCollectionInfoRequest) -> Box<GetCollectionInfoResponse> = collections.get, "get_collection", true, from, no_timeout, |r| name(&r.collection_name);
    /// List collections.
    ListCollections(ListCollectionsRequest) -> ListCollectionsResponse = collections.list, "list_collections", true, from, no_timeout, |r| None;
    /// Create a collection.
    CreateCollection(CreateCollection) -> CollectionOperationResponse = collections.create, "create_collection", false, from, timeout, |r| name(&r.collection_name);
    /// Change a collection's parameters.
    UpdateCollection(UpdateCollection) -> CollectionOperationResponse = collections.update, "update_collection", true, from, timeout, |r| name(&r.collection_name);
    /// Delete a collection and its data.
    DeleteCollection(DeleteCollection) -> CollectionOperationResponse = collections.delete, "delete_collection", false, from, timeout, |r| name(&r.collection_name);
    /// Create, rename or delete aliases.
    UpdateAliases(ChangeAliases) -> CollectionOperationResponse = collections.update_aliases, "update_aliases", false, from, timeout, |r| None;
    /// List the aliases of one collection.
    ListCollectionAliases(ListCollectionAliasesRequest) -> ListAliasesResponse = collections.list_collection_aliases, "list_collection_aliases", true, from, no_timeout, |r| name(&r.collection_name);
    /// List all aliases.
    ListAliases(ListAliasesRequest) -> ListAliasesResponse = collections.list_aliases, "list_aliases", true, from, no_timeout, |r| None;
    /// Shard placement of a collection.
    CollectionClusterInfo(CollectionClusterInfoRequest) -> CollectionClusterInfoResponse = collections.collection_cluster_info, "collection_cluster_info", true, from, no_timeout, |r| name(&r.collection_name);
    /// Whether a collection exists.
    CollectionExists(CollectionExistsRequest) -> CollectionExistsResponse = collections.collection_exists, "collection_exists", true, from, no_timeout, |r| name(&r.collection_name);
    /// Move, replicate or drop shards.
    UpdateCollectionClusterSetup(UpdateCollectionClusterSetupRequest) -> UpdateCollectionClusterSetupResponse = collections.update_collection_cluster_setup, "update_collection_cluster_setup", false, from, timeout, |r| name(&r.collection_name);
    /// Create a shard key.
    CreateShardKey(CreateShardKeyRequest) -> CreateShardKeyResponse = collections.create_shard_key, "create_shard_key", false, from, timeout, |r| name(&r.collection_name);
    /// Delete a shard key and its data.
    DeleteShardKey(DeleteShardKeyRequest) -> DeleteShardKeyResponse = collections.delete_shard_key, "delete_shard_key", false, from, timeout, |r| name(&r.collection_name);
    /// List shard keys.
    ListShardKeys(ListShardKeysRequest) -> ListShardKeysResponse = collections.list_shard_keys, "list_shard_keys", true, from, no_timeout, |r| name(&r.collection_name);

    /// Snapshot a collection.
    CreateSnapshot(CreateSnapshotRequest) -> CreateSnapshotResponse = snapshots.create, "create_snapshot", false, from, no_timeout, |r| name(&r.collection_name);
    /// List a collection's snapshots.
    ListSnapshots(ListSnapshotsRequest) -> ListSnapshotsResponse = snapshots.list, "list_snapshots", true, from, no_timeout, |r| name(&r.collection_name);
    /// Delete a collection snapshot.
    DeleteSnapshot(DeleteSnapshotRequest) -> DeleteSnapshotResponse = snapshots.delete, "delete_snapshot", false, from, no_timeout, |r| name(&r.collection_name);
    /// Snapshot the whole storage.
    CreateFullSnapshot(CreateFullSnapshotRequest) -> CreateSnapshotResponse = snapshots.create_full, "create_full_snapshot", false, from, no_timeout, |r| None;
    /// List full-storage snapshots.
    ListFullSnapshots(ListFullSnapshotsRequest) -> ListSnapshotsResponse = snapshots.list_full, "list_full_snapshots", true, from, no_timeout, |r| None;
    /// Delete a full-storage snapshot.
    DeleteFullSnapshot(DeleteFullSnapshotRequest) -> DeleteSnapshotResponse = snapshots.delete_full, "delete_full_snapshot", false, from, no_timeout, |r| None;

    /// Server liveness and version.
    HealthCheck(HealthCheckRequest) -> HealthCheckReply = qdrant.health_check, "health_check", true, from, no_timeout, |r| None;
}

/// `builder.into()` (to a `VectorRequest` or a `VectorOp`) for each of qdrant-client's request
/// builders, through its message.
macro_rules! from_builders {
    ($($builder:ident => $message:ident),* $(,)?) => {$(
        impl From<qdrant_client::qdrant::$builder> for VectorOp {
            fn from(builder: qdrant_client::qdrant::$builder) -> Self {
                VectorOp::from($message::from(builder))
            }
        }
        impl From<qdrant_client::qdrant::$builder> for VectorRequest {
            fn from(builder: qdrant_client::qdrant::$builder) -> Self {
                VectorRequest::from($message::from(builder))
            }
        }
    )*};
}

from_builders! {
    UpsertPointsBuilder => UpsertPoints,
    DeletePointsBuilder => DeletePoints,
    GetPointsBuilder => GetPoints,
    UpdatePointVectorsBuilder => UpdatePointVectors,
    DeletePointVectorsBuilder => DeletePointVectors,
    SetPayloadPointsBuilder => SetPayloadPoints,
    DeletePayloadPointsBuilder => DeletePayloadPoints,
    ClearPayloadPointsBuilder => ClearPayloadPoints,
    CreateFieldIndexCollectionBuilder => CreateFieldIndexCollection,
    DeleteFieldIndexCollectionBuilder => DeleteFieldIndexCollection,
    CreateVectorNameRequestBuilder => CreateVectorNameRequest,
    DeleteVectorNameRequestBuilder => DeleteVectorNameRequest,
    SearchPointsBuilder => SearchPoints,
    SearchBatchPointsBuilder => SearchBatchPoints,
    SearchPointGroupsBuilder => SearchPointGroups,
    ScrollPointsBuilder => ScrollPoints,
    RecommendPointsBuilder => RecommendPoints,
    RecommendBatchPointsBuilder => RecommendBatchPoints,
    RecommendPointGroupsBuilder => RecommendPointGroups,
    DiscoverPointsBuilder => DiscoverPoints,
    DiscoverBatchPointsBuilder => DiscoverBatchPoints,
    CountPointsBuilder => CountPoints,
    UpdateBatchPointsBuilder => UpdateBatchPoints,
    QueryPointsBuilder => QueryPoints,
    QueryBatchPointsBuilder => QueryBatchPoints,
    QueryPointGroupsBuilder => QueryPointGroups,
    FacetCountsBuilder => FacetCounts,
    SearchMatrixPointsBuilder => SearchMatrixPoints,
    CreateCollectionBuilder => CreateCollection,
    UpdateCollectionBuilder => UpdateCollection,
    DeleteCollectionBuilder => DeleteCollection,
    UpdateCollectionClusterSetupRequestBuilder => UpdateCollectionClusterSetupRequest,
    CreateShardKeyRequestBuilder => CreateShardKeyRequest,
    DeleteShardKeyRequestBuilder => DeleteShardKeyRequest,
    DeleteSnapshotRequestBuilder => DeleteSnapshotRequest,
}
/// A stored message that does not decode (see [`VectorOp::decode`]): what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {0}")]
pub struct DecodeError(String);

/// One call to Qdrant: what to do ([`VectorOp`], qdrant-client's own message) and, optionally,
/// by when the whole call must be over.
///
/// Build the message with qdrant-client's builders and convert it with `.into()`:
///
/// ```
/// use std::time::Duration;
/// use qdrant_client::qdrant::SearchPointsBuilder;
/// use qdrant_tower_client::{VectorOp, VectorRequest};
/// use qdrant_tower_layers::RequestInfo;
///
/// let request: VectorRequest = SearchPointsBuilder::new("docs", vec![0.1, 0.2], 5).into();
/// assert_eq!(request.operation(), "search");
/// assert_eq!(request.collection(), Some("docs"));
/// assert!(request.is_idempotent());
/// assert!(matches!(request.op(), VectorOp::Search(search) if search.limit == 5));
///
/// // The same request, which must be answered within 300 ms.
/// let request = request.with_timeout(Duration::from_millis(300));
/// assert!(request.deadline().is_some());
/// ```
///
/// Two RPCs share a message type with another: use [`VectorRequest::overwrite_payload`] and
/// [`VectorRequest::search_matrix_offsets`] (or [`VectorOp::OverwritePayload`] and
/// [`VectorOp::SearchMatrixOffsets`]) explicitly; `From` picks `SetPayload` and
/// `SearchMatrixPairs`.
///
/// # Deadline
/// A request may carry a deadline ([`with_deadline`](Self::with_deadline),
/// [`with_timeout`](Self::with_timeout), or a layer through
/// [`RequestInfo::set_deadline`]). [`QdrantService`](crate::QdrantService) fails a request
/// whose deadline has passed without sending it (an [`ErrorKind::Timeout`] error that was
/// provably not sent), and otherwise bounds the call by the time left: sent to Qdrant as
/// `grpc-timeout` and in the message's own server-side `timeout` field (whole seconds,
/// rounded up, never raised above a value the message already has), and enforced on the
/// client. The deadline is a [`tokio::time::Instant`], so a paused Tokio clock governs it.
///
/// # Clone is cheap
/// The operation is shared, not copied: cloning a request (as the retry layer does for every
/// call, to keep it for a retry) costs a reference count, however many points it carries.
/// [`op_mut`](Self::op_mut) and [`into_op`](Self::into_op) copy the operation only while a
/// clone still shares it. [`QdrantService`](crate::QdrantService) sends the big writes
/// (upsert, update vectors, update batch) straight from the shared operation, without
/// copying them; other operations are copied only if a clone is still alive when they are
/// sent (the retry layer keeps one), which for a search or a read costs little beside the
/// call.
///
/// [`ErrorKind::Timeout`]: qdrant_tower_layers::ErrorKind::Timeout
#[derive(Debug, Clone, PartialEq)]
pub struct VectorRequest {
    op: Arc<SharedOp>,
    deadline: Option<Instant>,
    retry_safe: bool,
}

/// The operation every clone of a request shares, and the endpoints its attempts went to (so
/// that a retry of a read fails over to another endpoint). One allocation, as the operation
/// alone took.
pub(crate) struct SharedOp {
    pub(crate) op: VectorOp,
    /// Endpoints (by index; the first 64) an attempt of this request was sent to.
    pub(crate) tried: AtomicU64,
}

impl Clone for SharedOp {
    fn clone(&self) -> Self {
        SharedOp {
            op: self.op.clone(),
            tried: AtomicU64::new(self.tried.load(Ordering::Relaxed)),
        }
    }
}

impl PartialEq for SharedOp {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op
    }
}

impl std::fmt::Debug for SharedOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.op.fmt(f)
    }
}

impl VectorRequest {
    /// A request for `op`, without a deadline.
    pub fn new(op: VectorOp) -> Self {
        VectorRequest {
            op: Arc::new(SharedOp {
                op,
                tried: AtomicU64::new(0),
            }),
            deadline: None,
            retry_safe: false,
        }
    }

    /// Marks the request safe to retry although its operation is not idempotent, because
    /// the caller handles the repeat's answer: e.g. a create-collection whose retry may
    /// answer `ALREADY_EXISTS` after the first attempt applied (what
    /// `qdrant_tower::Client::with_idempotent_create` does). Retry layers then retry it like
    /// an idempotent request.
    ///
    /// ```
    /// use qdrant_tower_client::VectorRequest;
    /// use qdrant_tower_client::qdrant::CreateCollectionBuilder;
    /// use qdrant_tower_layers::RequestInfo;
    ///
    /// let create = VectorRequest::from(CreateCollectionBuilder::new("docs"));
    /// assert!(!create.is_idempotent());
    /// assert!(create.retry_safe().is_idempotent());
    /// ```
    pub fn retry_safe(mut self) -> Self {
        self.retry_safe = true;
        self
    }

    /// What the request does.
    pub fn op(&self) -> &VectorOp {
        &self.op.op
    }

    /// What the request does, to change it. The operation is copied first if a clone of this
    /// request shares it (clones never see each other's changes).
    pub fn op_mut(&mut self) -> &mut VectorOp {
        &mut Arc::make_mut(&mut self.op).op
    }

    /// The operation, without the deadline; copied only if a clone of this request still
    /// shares it.
    pub fn into_op(self) -> VectorOp {
        Arc::unwrap_or_clone(self.op).op
    }

    /// The operation as shared by every clone of the request.
    pub(crate) fn into_shared(self) -> Arc<SharedOp> {
        self.op
    }

    /// The request, which must be over by `deadline` (replacing any deadline it had).
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The request, which must be over within `timeout` from now (replacing any deadline it
    /// had).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.with_deadline(Instant::now() + timeout)
    }

    /// A request that replaces the whole payload of the selected points
    /// ([`VectorOp::OverwritePayload`]); `From<SetPayloadPoints>` merges instead.
    pub fn overwrite_payload(request: impl Into<SetPayloadPoints>) -> Self {
        VectorRequest::new(VectorOp::OverwritePayload(request.into()))
    }

    /// A distance-matrix request answered as offsets ([`VectorOp::SearchMatrixOffsets`]);
    /// `From<SearchMatrixPoints>` asks for pairs.
    pub fn search_matrix_offsets(request: impl Into<SearchMatrixPoints>) -> Self {
        VectorRequest::new(VectorOp::SearchMatrixOffsets(request.into()))
    }

    /// A health check (liveness and version), the probe a health gate uses.
    pub fn health_check() -> Self {
        VectorRequest::new(VectorOp::HealthCheck(HealthCheckRequest {}))
    }
}

impl From<VectorOp> for VectorRequest {
    fn from(op: VectorOp) -> Self {
        VectorRequest::new(op)
    }
}

impl RequestInfo for VectorRequest {
    fn operation(&self) -> &'static str {
        self.op.op.operation()
    }

    fn collection(&self) -> Option<&str> {
        self.op.op.collection()
    }

    fn is_idempotent(&self) -> bool {
        self.retry_safe || self.op.op.is_idempotent()
    }

    fn is_read(&self) -> bool {
        self.op.op.is_read()
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Replaces the request's deadline (the layers only ever pass an earlier one).
    fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_change_nothing_and_idempotent_writes_are_still_writes() {
        let reads: Vec<_> = VectorOp::samples()
            .into_iter()
            .filter(VectorOp::is_read)
            .map(|op| op.operation())
            .collect();
        assert_eq!(reads.len(), 27, "{reads:?}");
        for op in VectorOp::samples() {
            let name = op.operation();
            let writes = name.starts_with("upsert")
                || name.starts_with("delete")
                || name.starts_with("update")
                || name.starts_with("create")
                || name.starts_with("set_")
                || name.starts_with("overwrite")
                || name.starts_with("clear");
            assert_eq!(op.is_read(), !writes, "{name}");
        }
    }
    use qdrant_client::qdrant::{
        CreateCollectionBuilder, DeleteCollectionBuilder, Distance, PointStruct,
        UpsertPointsBuilder, VectorParamsBuilder,
    };

    #[test]
    fn operation_names_are_unique() {
        let mut names = VectorRequest::OPERATIONS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), VectorRequest::OPERATIONS.len());
        // 30 Points RPCs, 14 Collections, 6 Snapshots, 1 health check.
        assert_eq!(names.len(), 51);
    }

    #[test]
    fn requests_know_their_collection_and_idempotency() {
        let upsert: VectorRequest = UpsertPointsBuilder::new(
            "docs",
            vec![PointStruct::new(1, vec![0.1_f32, 0.2], [("k", "v".into())])],
        )
        .into();
        assert_eq!(
            (
                upsert.operation(),
                upsert.collection(),
                upsert.is_idempotent()
            ),
            ("upsert", Some("docs"), true)
        );

        let create: VectorRequest = CreateCollectionBuilder::new("docs")
            .vectors_config(VectorParamsBuilder::new(2, Distance::Cosine))
            .into();
        assert!(!create.is_idempotent());
        let delete: VectorRequest = DeleteCollectionBuilder::new("docs").into();
        assert!(!delete.is_idempotent());
        assert_eq!(VectorRequest::health_check().collection(), None);
    }

    #[test]
    fn deadlines_are_carried_and_replaced() {
        let request = VectorRequest::health_check();
        assert_eq!(request.deadline(), None);
        let at = Instant::now() + Duration::from_secs(3);
        let mut request = request.with_deadline(at);
        assert_eq!(request.deadline(), Some(at));
        let earlier = at - Duration::from_secs(1);
        request.set_deadline(earlier);
        assert_eq!(request.deadline(), Some(earlier));
        let cloned = request.clone();
        assert_eq!(cloned, request);
        assert_eq!(
            cloned.into_op(),
            VectorOp::HealthCheck(HealthCheckRequest {})
        );
    }

    #[test]
    fn clones_share_the_operation_until_one_changes_it() {
        let points = vec![PointStruct::new(1, vec![0.5_f32; 8], [("k", "v".into())])];
        let original: VectorRequest = UpsertPointsBuilder::new("docs", points).into();
        let mut copy = original.clone();
        assert!(
            Arc::ptr_eq(&original.op, &copy.op),
            "a clone shares the operation"
        );
        let VectorOp::Upsert(upsert) = copy.op_mut() else {
            unreachable!()
        };
        upsert.collection_name = "other".into();
        assert!(!Arc::ptr_eq(&original.op, &copy.op));
        assert_eq!(original.collection(), Some("docs"));
        assert_eq!(copy.collection(), Some("other"));
        // Alone again: `into_op` moves the operation out without copying it.
        assert_eq!(Arc::strong_count(&original.op), 1);
    }

    #[test]
    fn server_timeouts_round_up_and_never_rise() {
        assert_eq!(bound_seconds(None, Duration::from_millis(300)), 1);
        assert_eq!(bound_seconds(None, Duration::ZERO), 1);
        assert_eq!(bound_seconds(None, Duration::from_secs(2)), 2);
        assert_eq!(bound_seconds(None, Duration::from_millis(2001)), 3);
        assert_eq!(bound_seconds(Some(1), Duration::from_millis(2500)), 1);
        assert_eq!(bound_seconds(Some(60), Duration::from_millis(2500)), 3);
    }

    /// Every message type with Qdrant's `timeout` field gets it bounded, the others are left
    /// alone; the count guards the table's `timeout` column against qdrant-client's messages
    /// (35 message types have the field; two of them serve two RPCs each).
    #[test]
    fn every_message_with_a_timeout_field_is_bounded() {
        let mut with_field = 0;
        for mut op in VectorOp::samples() {
            let name = op.operation();
            match op.server_timeout() {
                Some(None) => {
                    with_field += 1;
                    assert_eq!(
                        op.bound_server_timeout(Duration::from_millis(1200)),
                        Some(2)
                    );
                    assert_eq!(op.server_timeout(), Some(Some(2)), "{name}");
                    // A smaller value set by the user stays; a larger one comes down.
                    assert_eq!(op.bound_server_timeout(Duration::from_secs(10)), Some(2));
                    assert_eq!(op.bound_server_timeout(Duration::from_millis(10)), Some(1));
                    assert_eq!(op.server_timeout(), Some(Some(1)), "{name}");
                }
                Some(Some(value)) => panic!("{name}: default timeout {value}"),
                None => {
                    let before = op.clone();
                    assert_eq!(op.bound_server_timeout(Duration::from_secs(1)), None);
                    assert_eq!(op, before, "{name} has no timeout field");
                }
            }
        }
        assert_eq!(with_field, 37);
    }
}
