//! Entry points for the `testkit_convert` fuzz target (`fuzz/` in the repository): the
//! protobuf → engine conversions the server runs on a request before it touches a collection,
//! callable without a server, a runtime or a data directory.
//!
//! Not a stable API: hidden from the docs and meant for the fuzz target only. Each function
//! answers `Ok` or the error text the server would send as a gRPC status; a panic is a bug.

use qdrant_client::qdrant as pb;
use qdrant_edge::EdgeConfig;

use super::collections::{edge_config, validate_collection_name, validate_create};
use super::convert::{
    json_object_from_pb, json_object_to_pb, json_path, point_id, vector_input_from_pb,
    with_payload, with_vectors,
};
use super::filter::{filter_from_pb, filter_opt};
use super::index::field_schema;
use super::points::{batch_operation, order_by, query_plan, search_to_query, upsert_operation};
use crate::storage::{StorageError, StorageSettings};

/// A collection's engine configuration, made from a `CreateCollection` the way the server
/// makes it (Qdrant's validation of the request first).
#[derive(Debug)]
pub struct Collection(EdgeConfig);

fn text(error: StorageError) -> String {
    error.to_string()
}

/// The two collections the fuzz target and the property tests check writes and searches
/// against: `dense`, a plain 4-dimensional cosine vector; `named`, named dense (`a`, 2, dot),
/// multi-dense (`b`, rows of 3, Euclid, max-sim) and sparse (`s`) vectors.
pub fn sample_collections() -> [pb::CreateCollection; 2] {
    let dense = pb::CreateCollectionBuilder::new("dense")
        .vectors_config(pb::VectorParamsBuilder::new(4, pb::Distance::Cosine))
        .build();
    let mut vectors = pb::VectorsConfigBuilder::default();
    vectors.add_named_vector_params("a", pb::VectorParamsBuilder::new(2, pb::Distance::Dot));
    vectors.add_named_vector_params(
        "b",
        pb::VectorParamsBuilder::new(3, pb::Distance::Euclid).multivector_config(
            pb::MultiVectorConfig {
                comparator: pb::MultiVectorComparator::MaxSim as i32,
            },
        ),
    );
    let mut sparse = pb::SparseVectorsConfigBuilder::default();
    sparse.add_named_vector_params("s", pb::SparseVectorParamsBuilder::default());
    let named = pb::CreateCollectionBuilder::new("named")
        .vectors_config(vectors)
        .sparse_vectors_config(sparse)
        .build();
    [dense, named]
}

/// `CreateCollection` → the engine's configuration.
pub fn collection(request: &pb::CreateCollection) -> Result<Collection, String> {
    validate_collection_name(&request.collection_name).map_err(text)?;
    validate_create(request).map_err(text)?;
    let settings = StorageSettings { search_threads: 1 };
    edge_config(request, settings).map(Collection).map_err(text)
}

/// The conversions of an upsert: vectors, ids and payloads, checked against `collection`.
pub fn upsert(collection: &Collection, request: pb::UpsertPoints) -> Result<(), String> {
    upsert_operation(
        &collection.0,
        request.points,
        request.update_filter,
        request.update_mode,
    )
    .map(drop)
    .map_err(text)
}

/// The conversions of an update batch, each operation in turn (as the server applies them).
pub fn update_batch(collection: &Collection, request: pb::UpdateBatchPoints) -> Result<(), String> {
    request
        .operations
        .into_iter()
        .try_for_each(|operation| batch_operation(&collection.0, operation).map(drop))
        .map_err(text)
}

/// A search as the query the server runs for it.
pub fn search(collection: &Collection, request: pb::SearchPoints) -> Result<(), String> {
    search_to_query(&collection.0, request)
        .map(drop)
        .map_err(text)
}

/// A universal query as the server's plan (prefetches, fusion, formulas, lookups).
pub fn query(request: pb::QueryPoints) -> Result<(), String> {
    query_plan(request).map(drop).map_err(text)
}

/// A scroll's filter, offset, payload and vector selectors and ordering.
pub fn scroll(request: pb::ScrollPoints) -> Result<(), String> {
    filter_opt(request.filter).map_err(text)?;
    if let Some(offset) = request.offset {
        point_id(offset).map_err(text)?;
    }
    with_payload(request.with_payload, true).map_err(text)?;
    let _ = with_vectors(request.with_vectors);
    if let Some(order) = request.order_by {
        order_by(order).map_err(text)?;
    }
    Ok(())
}

/// A filter of any shape.
pub fn filter(filter: pb::Filter) -> Result<(), String> {
    filter_from_pb(filter).map(drop).map_err(text)
}

/// A query vector.
pub fn vector_input(input: pb::VectorInput) -> Result<(), String> {
    vector_input_from_pb(input).map(drop).map_err(text)
}

/// A payload index's key path and schema.
pub fn field_index(request: pb::CreateFieldIndexCollection) -> Result<(), String> {
    json_path(&request.field_name).map_err(text)?;
    field_schema(request.field_type, request.field_index_params)
        .map(drop)
        .map_err(text)
}

/// A payload to JSON and back: what comes back is what JSON can hold of it.
pub fn payload(
    fields: std::collections::HashMap<String, pb::Value>,
) -> std::collections::HashMap<String, pb::Value> {
    json_object_to_pb(json_object_from_pb(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz target's entry points answer like the server (it is only built by hand).
    #[test]
    fn entry_points_answer_like_the_server() {
        let create = pb::CreateCollection {
            collection_name: "dense".into(),
            vectors_config: Some(pb::VectorsConfig {
                config: Some(pb::vectors_config::Config::Params(pb::VectorParams {
                    size: 2,
                    distance: pb::Distance::Dot as i32,
                    ..Default::default()
                })),
            }),
            ..Default::default()
        };
        let dense = collection(&create).unwrap();
        for sample in sample_collections() {
            collection(&sample).expect("the sample collections are valid");
        }
        assert!(collection(&pb::CreateCollection::default()).is_err());

        let point = |id: pb::PointId, data: Vec<f32>| pb::PointStruct {
            id: Some(id),
            vectors: Some(data.into()),
            ..Default::default()
        };
        let upsert = |points| pb::UpsertPoints {
            collection_name: "dense".into(),
            points,
            ..Default::default()
        };
        assert_eq!(
            super::upsert(&dense, upsert(vec![point(1.into(), vec![0.5, 0.5])])),
            Ok(())
        );
        let error = super::upsert(&dense, upsert(vec![point(1.into(), vec![0.5])])).unwrap_err();
        assert!(error.contains("dimension"), "{error}");
        let bad_uuid = point("not-a-uuid".to_owned().into(), vec![0.5, 0.5]);
        let error = super::upsert(&dense, upsert(vec![bad_uuid])).unwrap_err();
        assert!(error.contains("Unable to parse UUID"), "{error}");

        let slice = pb::Filter::must([pb::Condition {
            condition_one_of: Some(pb::condition::ConditionOneOf::Slice(pb::SliceCondition {
                total: 0,
                index: 0,
            })),
        }]);
        assert!(filter(slice).is_err());
        assert!(field_index(pb::CreateFieldIndexCollection::default()).is_err());
    }
}
