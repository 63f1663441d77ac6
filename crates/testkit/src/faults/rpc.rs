//! [`Rpc`]: every method of the four gRPC services the testkit serves, from one table.

use std::fmt;

/// Calls `$callback!` with the table of every RPC the server answers, one line each:
///
/// `Variant "GrpcMethod" rust_method(RequestMessage) -> ResponseMessage, collection?, write?;`
///
/// grouped by service (`module::Trait`, `"qdrant.Service"`). The [`Rpc`] enum and the
/// fault-injecting wrapper of every service method (`server::intercept`) are both generated
/// from it, so they cannot drift apart. `coll` marks requests with a `collection_name` field,
/// `none` those without; `write` marks RPCs that change state.
macro_rules! qdrant_rpcs {
    ($callback:ident) => {
        $callback! {
            qdrant_server::Qdrant, "qdrant.Qdrant", Qdrant {
                HealthCheck "HealthCheck" health_check(HealthCheckRequest) -> HealthCheckReply, none, read;
            }
            collections_server::Collections, "qdrant.Collections", Collections {
                GetCollection "Get" get(GetCollectionInfoRequest) -> GetCollectionInfoResponse, coll, read;
                ListCollections "List" list(ListCollectionsRequest) -> ListCollectionsResponse, none, read;
                CreateCollection "Create" create(CreateCollection) -> CollectionOperationResponse, coll, write;
                UpdateCollection "Update" update(UpdateCollection) -> CollectionOperationResponse, coll, write;
                DeleteCollection "Delete" delete(DeleteCollection) -> CollectionOperationResponse, coll, write;
                UpdateAliases "UpdateAliases" update_aliases(ChangeAliases) -> CollectionOperationResponse, none, write;
                ListCollectionAliases "ListCollectionAliases" list_collection_aliases(ListCollectionAliasesRequest) -> ListAliasesResponse, coll, read;
                ListAliases "ListAliases" list_aliases(ListAliasesRequest) -> ListAliasesResponse, none, read;
                CollectionClusterInfo "CollectionClusterInfo" collection_cluster_info(CollectionClusterInfoRequest) -> CollectionClusterInfoResponse, coll, read;
                CollectionExists "CollectionExists" collection_exists(CollectionExistsRequest) -> CollectionExistsResponse, coll, read;
                UpdateCollectionClusterSetup "UpdateCollectionClusterSetup" update_collection_cluster_setup(UpdateCollectionClusterSetupRequest) -> UpdateCollectionClusterSetupResponse, coll, write;
                CreateShardKey "CreateShardKey" create_shard_key(CreateShardKeyRequest) -> CreateShardKeyResponse, coll, write;
                DeleteShardKey "DeleteShardKey" delete_shard_key(DeleteShardKeyRequest) -> DeleteShardKeyResponse, coll, write;
                ListShardKeys "ListShardKeys" list_shard_keys(ListShardKeysRequest) -> ListShardKeysResponse, coll, read;
            }
            points_server::Points, "qdrant.Points", Points {
                Upsert "Upsert" upsert(UpsertPoints) -> PointsOperationResponse, coll, write;
                DeletePoints "Delete" delete(DeletePoints) -> PointsOperationResponse, coll, write;
                GetPoints "Get" get(GetPoints) -> GetResponse, coll, read;
                UpdateVectors "UpdateVectors" update_vectors(UpdatePointVectors) -> PointsOperationResponse, coll, write;
                DeleteVectors "DeleteVectors" delete_vectors(DeletePointVectors) -> PointsOperationResponse, coll, write;
                SetPayload "SetPayload" set_payload(SetPayloadPoints) -> PointsOperationResponse, coll, write;
                OverwritePayload "OverwritePayload" overwrite_payload(SetPayloadPoints) -> PointsOperationResponse, coll, write;
                DeletePayload "DeletePayload" delete_payload(DeletePayloadPoints) -> PointsOperationResponse, coll, write;
                ClearPayload "ClearPayload" clear_payload(ClearPayloadPoints) -> PointsOperationResponse, coll, write;
                CreateFieldIndex "CreateFieldIndex" create_field_index(CreateFieldIndexCollection) -> PointsOperationResponse, coll, write;
                DeleteFieldIndex "DeleteFieldIndex" delete_field_index(DeleteFieldIndexCollection) -> PointsOperationResponse, coll, write;
                CreateVectorName "CreateVectorName" create_vector_name(CreateVectorNameRequest) -> PointsOperationResponse, coll, write;
                DeleteVectorName "DeleteVectorName" delete_vector_name(DeleteVectorNameRequest) -> PointsOperationResponse, coll, write;
                Search "Search" search(SearchPoints) -> SearchResponse, coll, read;
                SearchBatch "SearchBatch" search_batch(SearchBatchPoints) -> SearchBatchResponse, coll, read;
                SearchGroups "SearchGroups" search_groups(SearchPointGroups) -> SearchGroupsResponse, coll, read;
                Scroll "Scroll" scroll(ScrollPoints) -> ScrollResponse, coll, read;
                Recommend "Recommend" recommend(RecommendPoints) -> RecommendResponse, coll, read;
                RecommendBatch "RecommendBatch" recommend_batch(RecommendBatchPoints) -> RecommendBatchResponse, coll, read;
                RecommendGroups "RecommendGroups" recommend_groups(RecommendPointGroups) -> RecommendGroupsResponse, coll, read;
                Discover "Discover" discover(DiscoverPoints) -> DiscoverResponse, coll, read;
                DiscoverBatch "DiscoverBatch" discover_batch(DiscoverBatchPoints) -> DiscoverBatchResponse, coll, read;
                Count "Count" count(CountPoints) -> CountResponse, coll, read;
                UpdateBatch "UpdateBatch" update_batch(UpdateBatchPoints) -> UpdateBatchResponse, coll, write;
                Query "Query" query(QueryPoints) -> QueryResponse, coll, read;
                QueryBatch "QueryBatch" query_batch(QueryBatchPoints) -> QueryBatchResponse, coll, read;
                QueryGroups "QueryGroups" query_groups(QueryPointGroups) -> QueryGroupsResponse, coll, read;
                Facet "Facet" facet(FacetCounts) -> FacetResponse, coll, read;
                SearchMatrixPairs "SearchMatrixPairs" search_matrix_pairs(SearchMatrixPoints) -> SearchMatrixPairsResponse, coll, read;
                SearchMatrixOffsets "SearchMatrixOffsets" search_matrix_offsets(SearchMatrixPoints) -> SearchMatrixOffsetsResponse, coll, read;
            }
            snapshots_server::Snapshots, "qdrant.Snapshots", Snapshots {
                CreateSnapshot "Create" create(CreateSnapshotRequest) -> CreateSnapshotResponse, coll, write;
                ListSnapshots "List" list(ListSnapshotsRequest) -> ListSnapshotsResponse, coll, read;
                DeleteSnapshot "Delete" delete(DeleteSnapshotRequest) -> DeleteSnapshotResponse, coll, write;
                CreateFullSnapshot "CreateFull" create_full(CreateFullSnapshotRequest) -> CreateSnapshotResponse, none, write;
                ListFullSnapshots "ListFull" list_full(ListFullSnapshotsRequest) -> ListSnapshotsResponse, none, read;
                DeleteFullSnapshot "DeleteFull" delete_full(DeleteFullSnapshotRequest) -> DeleteSnapshotResponse, none, write;
            }
        }
    };
}
pub(crate) use qdrant_rpcs;

macro_rules! rpc_enum {
    ($(
        $module:ident :: $trait:ident, $service:literal, $short:ident {
            $( $variant:ident $method:literal $fn:ident ( $req:ident ) -> $resp:ident, $coll:ident, $kind:ident; )*
        }
    )*) => {
        /// One RPC of the gRPC API the [`TestServer`](crate::TestServer) serves: the services
        /// `qdrant.Qdrant`, `qdrant.Collections`, `qdrant.Points` and `qdrant.Snapshots`.
        ///
        /// Variants are named after what they do, since several services share method names
        /// (`Collections/Get` is [`Rpc::GetCollection`], `Points/Get` is [`Rpc::GetPoints`]);
        /// [`service`](Rpc::service) and [`method`](Rpc::method) give the gRPC names, and
        /// `Display` shows `Service/Method` as in `Points/Search`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Rpc {
            $($(
                #[doc = concat!("`", $service, "/", $method, "`.")]
                $variant,
            )*)*
        }

        impl Rpc {
            /// Every RPC, grouped by service in the order of Qdrant's proto files.
            pub const ALL: &'static [Rpc] = &[$($(Rpc::$variant,)*)*];

            /// The fully qualified gRPC service, as in `qdrant.Points`.
            pub const fn service(self) -> &'static str {
                match self {
                    $($(Rpc::$variant => $service,)*)*
                }
            }

            /// The gRPC method name, as in `Search` or `Upsert`.
            pub const fn method(self) -> &'static str {
                match self {
                    $($(Rpc::$variant => $method,)*)*
                }
            }

            /// Whether the RPC changes state (a write: upsert, delete, payload and index
            /// changes, collection and snapshot management). Retrying a write whose answer was
            /// lost may apply it twice.
            pub const fn is_write(self) -> bool {
                match self {
                    $($(Rpc::$variant => rpc_enum!(@write $kind),)*)*
                }
            }

            /// Whether the request message names a collection (`collection_name`).
            pub const fn has_collection(self) -> bool {
                match self {
                    $($(Rpc::$variant => rpc_enum!(@coll $coll),)*)*
                }
            }

            fn short_service(self) -> &'static str {
                match self {
                    $($(Rpc::$variant => stringify!($short),)*)*
                }
            }
        }
    };
    (@write write) => { true };
    (@write read) => { false };
    (@coll coll) => { true };
    (@coll none) => { false };
}

qdrant_rpcs!(rpc_enum);

impl Rpc {
    /// The RPC at a gRPC path such as `/qdrant.Points/Search`, or `None` if the testkit does not
    /// serve that path.
    pub fn from_path(path: &str) -> Option<Rpc> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        Rpc::from_names(service, method)
    }

    /// The RPC of `service` (`qdrant.Points` or just `Points`) and `method` (`Search`).
    pub fn from_names(service: &str, method: &str) -> Option<Rpc> {
        Rpc::ALL.iter().copied().find(|rpc| {
            (rpc.service() == service || rpc.short_service() == service) && rpc.method() == method
        })
    }
}

impl fmt::Display for Rpc {
    /// `Service/Method`, as in `Points/Search`: the form the testkit's own messages use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.short_service(), self.method())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_paths() {
        for &rpc in Rpc::ALL {
            let path = format!("/{}/{}", rpc.service(), rpc.method());
            assert_eq!(Rpc::from_path(&path), Some(rpc), "{path}");
        }
        assert_eq!(Rpc::from_names("Points", "Get"), Some(Rpc::GetPoints));
        assert_eq!(
            Rpc::from_names("qdrant.Collections", "Get"),
            Some(Rpc::GetCollection)
        );
        assert_eq!(Rpc::from_path("/qdrant.Points/Nope"), None);
        assert_eq!(Rpc::Search.to_string(), "Points/Search");
    }

    #[test]
    fn writes_and_collections_are_marked() {
        assert!(Rpc::Upsert.is_write());
        assert!(Rpc::DeleteCollection.is_write());
        assert!(!Rpc::Search.is_write());
        assert!(!Rpc::HealthCheck.has_collection());
        assert!(Rpc::Search.has_collection());
        assert_eq!(Rpc::ALL.len(), 51);
    }
}
