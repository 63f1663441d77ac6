//! `qdrant.Points`: upsert, delete, get, vectors and payload updates, payload indexes, search,
//! search batch, scroll, count, query, query batch, facet and update batch.

use std::time::Instant;

use qdrant_client::qdrant as pb;
use qdrant_client::qdrant::points_server::Points;
use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::{
    AcornSearchParams, ConditionalInsertOperation, CountRequest, CreateIndex, DateTimeWrapper,
    DeletePayloadOp, Direction, EdgeConfig, FacetRequest, FacetValue, FieldIndexOperations, Filter,
    Fusion, NamedQuery, OrderBy, OrderByInterface, PayloadOps, PointId, PointIdsList,
    PointInsertOperations, PointOperations, PointStructPersisted, PointVectorsPersisted, Prefetch,
    QuantizationSearchParams, QueryBatchRequest, QueryEnum, QueryRequest, RetrieveRequest, Sample,
    ScoringQuery, ScrollRequest, SearchParams, SetPayloadOp, SparseVector, StartFrom, UpdateMode,
    UpdateOperation, UpdateVectorsOp, VectorInternal, VectorOperations,
};
use tonic::{Request, Response, Status};

use super::api::QdrantApi;
use super::convert::{
    check_point_vectors, check_query_vector, json_path, payload_from_pb, point_id, point_id_to_pb,
    point_ids, record_to_pb, scored_point_to_pb, vector_input_from_pb, vectors_from_pb,
    with_payload, with_vectors,
};
use super::filter::{filter_from_pb, filter_opt};
use super::index::field_schema;
use super::status::{unimplemented, unsupported};
use crate::storage::{Collection, StorageError, run_blocking};

/// Qdrant's default page size for scroll, query and facet.
const DEFAULT_LIMIT: u64 = 10;
/// Qdrant's default `k` of reciprocal rank fusion.
const DEFAULT_RRF_K: usize = 2;

#[tonic::async_trait]
impl Points for QdrantApi {
    async fn upsert(
        &self,
        request: Request<pb::UpsertPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        no_shard_keys(request.shard_key_selector.as_ref())?;
        let collection = self.storage().get(&request.collection_name)?;
        let operation = upsert_operation(
            &collection.shard().config(),
            request.points,
            request.update_filter,
            request.update_mode,
        )?;
        let result = apply(&collection, vec![operation], request.wait).await?;
        Ok(operation_response(result, started))
    }

    async fn delete(
        &self,
        request: Request<pb::DeletePoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        no_shard_keys(request.shard_key_selector.as_ref())?;
        let collection = self.storage().get(&request.collection_name)?;
        let operation = delete_operation(request.points)?;
        let result = apply(&collection, vec![operation], request.wait).await?;
        Ok(operation_response(result, started))
    }

    async fn get(
        &self,
        request: Request<pb::GetPoints>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        no_shard_keys(request.shard_key_selector.as_ref())?;
        let collection = self.storage().get(&request.collection_name)?;
        let retrieve = RetrieveRequest {
            point_ids: point_ids(request.ids)?,
            // Qdrant's retrieve defaults to no payload, unlike scroll.
            with_payload: Some(with_payload(request.with_payload, false)?),
            with_vector: Some(with_vectors(request.with_vectors)),
        };
        let records = run_blocking(move || Ok(collection.shard().retrieve(retrieve)?)).await?;
        Ok(Response::new(pb::GetResponse {
            result: records.into_iter().map(record_to_pb).collect(),
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
    }

    async fn update_vectors(
        &self,
        request: Request<pb::UpdatePointVectors>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        no_shard_keys(request.shard_key_selector.as_ref())?;
        let collection = self.storage().get(&request.collection_name)?;
        let operation = update_vectors_operation(
            &collection.shard().config(),
            request.points,
            request.update_filter,
        )?;
        let result = apply(&collection, vec![operation], request.wait).await?;
        Ok(operation_response(result, started))
    }

    async fn delete_vectors(
        &self,
        request: Request<pb::DeletePointVectors>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        no_shard_keys(request.shard_key_selector.as_ref())?;
        let collection = self.storage().get(&request.collection_name)?;
        let operation = delete_vectors_operation(request.points_selector, request.vectors)?;
        let result = apply(&collection, vec![operation], request.wait).await?;
        Ok(operation_response(result, started))
    }

    async fn set_payload(
        &self,
        request: Request<pb::SetPayloadPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        self.set_or_overwrite_payload(request.into_inner(), false)
            .await
    }

    async fn overwrite_payload(
        &self,
        request: Request<pb::SetPayloadPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        self.set_or_overwrite_payload(request.into_inner(), true)
            .await
    }

    async fn delete_payload(
        &self,
        request: Request<pb::DeletePayloadPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        no_shard_keys(request.shard_key_selector.as_ref())?;
        let collection = self.storage().get(&request.collection_name)?;
        let operation = delete_payload_operation(request.keys, request.points_selector)?;
        let result = apply(&collection, vec![operation], request.wait).await?;
        Ok(operation_response(result, started))
    }

    async fn clear_payload(
        &self,
        request: Request<pb::ClearPayloadPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        no_shard_keys(request.shard_key_selector.as_ref())?;
        let collection = self.storage().get(&request.collection_name)?;
        let operation = clear_payload_operation(request.points)?;
        let result = apply(&collection, vec![operation], request.wait).await?;
        Ok(operation_response(result, started))
    }

    async fn create_field_index(
        &self,
        request: Request<pb::CreateFieldIndexCollection>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let collection = self.storage().get(&request.collection_name)?;
        let operation =
            UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(CreateIndex {
                field_name: json_path(&request.field_name)?,
                field_schema: field_schema(request.field_type, request.field_index_params)?,
            }));
        let result = apply(&collection, vec![operation], request.wait).await?;
        Ok(operation_response(result, started))
    }

    async fn delete_field_index(
        &self,
        request: Request<pb::DeleteFieldIndexCollection>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let collection = self.storage().get(&request.collection_name)?;
        let operation = UpdateOperation::FieldIndexOperation(FieldIndexOperations::DeleteIndex(
            json_path(&request.field_name)?,
        ));
        let result = apply(&collection, vec![operation], request.wait).await?;
        Ok(operation_response(result, started))
    }

    async fn create_vector_name(
        &self,
        _request: Request<pb::CreateVectorNameRequest>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        Err(unimplemented("Points/CreateVectorName"))
    }

    async fn delete_vector_name(
        &self,
        _request: Request<pb::DeleteVectorNameRequest>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        Err(unimplemented("Points/DeleteVectorName"))
    }

    async fn search(
        &self,
        request: Request<pb::SearchPoints>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let collection = self.storage().get(&request.collection_name)?;
        let query = search_to_query(&collection.shard().config(), request)?;
        let points = run_blocking(move || Ok(collection.shard().query(query)?)).await?;
        Ok(Response::new(pb::SearchResponse {
            result: points.into_iter().map(scored_point_to_pb).collect(),
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
    }

    async fn search_batch(
        &self,
        request: Request<pb::SearchBatchPoints>,
    ) -> Result<Response<pb::SearchBatchResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let collection = self.storage().get(&request.collection_name)?;
        let queries = {
            let config = collection.shard().config();
            request
                .search_points
                .into_iter()
                .map(|search| search_to_query(&config, search))
                .collect::<Result<Vec<_>, _>>()?
        };
        let result = run_query_batch(collection, queries).await?;
        Ok(Response::new(pb::SearchBatchResponse {
            result,
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
    }

    async fn search_groups(
        &self,
        _request: Request<pb::SearchPointGroups>,
    ) -> Result<Response<pb::SearchGroupsResponse>, Status> {
        Err(unimplemented("Points/SearchGroups"))
    }

    async fn scroll(
        &self,
        request: Request<pb::ScrollPoints>,
    ) -> Result<Response<pb::ScrollResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        no_shard_keys(request.shard_key_selector.as_ref())?;
        let collection = self.storage().get(&request.collection_name)?;
        let scroll = ScrollRequest {
            offset: request.offset.map(point_id).transpose()?,
            limit: Some(request.limit.map_or(DEFAULT_LIMIT as usize, |l| l as usize)),
            filter: filter_opt(request.filter)?,
            with_payload: Some(with_payload(request.with_payload, true)?),
            with_vector: with_vectors(request.with_vectors),
            order_by: request
                .order_by
                .map(order_by)
                .transpose()?
                .map(OrderByInterface::Struct),
        };
        let (records, next) = run_blocking(move || Ok(collection.shard().scroll(scroll)?)).await?;
        Ok(Response::new(pb::ScrollResponse {
            next_page_offset: next.map(point_id_to_pb),
            result: records.into_iter().map(record_to_pb).collect(),
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
    }

    async fn recommend(
        &self,
        _request: Request<pb::RecommendPoints>,
    ) -> Result<Response<pb::RecommendResponse>, Status> {
        Err(unimplemented("Points/Recommend"))
    }

    async fn recommend_batch(
        &self,
        _request: Request<pb::RecommendBatchPoints>,
    ) -> Result<Response<pb::RecommendBatchResponse>, Status> {
        Err(unimplemented("Points/RecommendBatch"))
    }

    async fn recommend_groups(
        &self,
        _request: Request<pb::RecommendPointGroups>,
    ) -> Result<Response<pb::RecommendGroupsResponse>, Status> {
        Err(unimplemented("Points/RecommendGroups"))
    }

    async fn discover(
        &self,
        _request: Request<pb::DiscoverPoints>,
    ) -> Result<Response<pb::DiscoverResponse>, Status> {
        Err(unimplemented("Points/Discover"))
    }

    async fn discover_batch(
        &self,
        _request: Request<pb::DiscoverBatchPoints>,
    ) -> Result<Response<pb::DiscoverBatchResponse>, Status> {
        Err(unimplemented("Points/DiscoverBatch"))
    }

    async fn count(
        &self,
        request: Request<pb::CountPoints>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        no_shard_keys(request.shard_key_selector.as_ref())?;
        let collection = self.storage().get(&request.collection_name)?;
        let count = CountRequest {
            filter: filter_opt(request.filter)?,
            exact: request.exact.unwrap_or(true),
        };
        let count = run_blocking(move || Ok(collection.shard().count(count)?)).await?;
        Ok(Response::new(pb::CountResponse {
            result: Some(pb::CountResult {
                count: count as u64,
            }),
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
    }

    async fn update_batch(
        &self,
        request: Request<pb::UpdateBatchPoints>,
    ) -> Result<Response<pb::UpdateBatchResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let collection = self.storage().get(&request.collection_name)?;
        let operations = {
            let config = collection.shard().config();
            request
                .operations
                .into_iter()
                .map(|operation| batch_operation(&config, operation))
                .collect::<Result<Vec<_>, _>>()?
        };
        let result = apply(&collection, operations, request.wait).await?;
        Ok(Response::new(pb::UpdateBatchResponse {
            result,
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
    }

    async fn query(
        &self,
        request: Request<pb::QueryPoints>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let collection = self.storage().get(&request.collection_name)?;
        let query = query_request(&collection.shard().config(), request)?;
        let points = run_blocking(move || Ok(collection.shard().query(query)?)).await?;
        Ok(Response::new(pb::QueryResponse {
            result: points.into_iter().map(scored_point_to_pb).collect(),
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
    }

    async fn query_batch(
        &self,
        request: Request<pb::QueryBatchPoints>,
    ) -> Result<Response<pb::QueryBatchResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let collection = self.storage().get(&request.collection_name)?;
        let queries = {
            let config = collection.shard().config();
            request
                .query_points
                .into_iter()
                .map(|query| query_request(&config, query))
                .collect::<Result<Vec<_>, _>>()?
        };
        let result = run_query_batch(collection, queries).await?;
        Ok(Response::new(pb::QueryBatchResponse {
            result,
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
    }

    async fn query_groups(
        &self,
        _request: Request<pb::QueryPointGroups>,
    ) -> Result<Response<pb::QueryGroupsResponse>, Status> {
        Err(unimplemented("Points/QueryGroups"))
    }

    async fn facet(
        &self,
        request: Request<pb::FacetCounts>,
    ) -> Result<Response<pb::FacetResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        no_shard_keys(request.shard_key_selector.as_ref())?;
        let collection = self.storage().get(&request.collection_name)?;
        let facet = FacetRequest {
            key: json_path(&request.key)?,
            limit: request.limit.map_or(DEFAULT_LIMIT as usize, |l| l as usize),
            filter: filter_opt(request.filter)?,
            exact: request.exact.unwrap_or(false),
        };
        let response = run_blocking(move || Ok(collection.shard().facet(facet)?)).await?;
        let hits = response
            .hits
            .into_iter()
            .map(|hit| {
                let variant = match hit.value {
                    FacetValue::Keyword(keyword) => pb::facet_value::Variant::StringValue(keyword),
                    FacetValue::Int(int) => pb::facet_value::Variant::IntegerValue(int),
                    FacetValue::Uuid(uuid) => pb::facet_value::Variant::StringValue(
                        qdrant_edge::external::uuid::Uuid::from_u128(uuid).to_string(),
                    ),
                    FacetValue::Bool(flag) => pb::facet_value::Variant::BoolValue(flag),
                };
                pb::FacetHit {
                    value: Some(pb::FacetValue {
                        variant: Some(variant),
                    }),
                    count: hit.count as u64,
                }
            })
            .collect();
        Ok(Response::new(pb::FacetResponse {
            hits,
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
    }

    async fn search_matrix_pairs(
        &self,
        _request: Request<pb::SearchMatrixPoints>,
    ) -> Result<Response<pb::SearchMatrixPairsResponse>, Status> {
        Err(unimplemented("Points/SearchMatrixPairs"))
    }

    async fn search_matrix_offsets(
        &self,
        _request: Request<pb::SearchMatrixPoints>,
    ) -> Result<Response<pb::SearchMatrixOffsetsResponse>, Status> {
        Err(unimplemented("Points/SearchMatrixOffsets"))
    }
}

impl QdrantApi {
    async fn set_or_overwrite_payload(
        &self,
        request: pb::SetPayloadPoints,
        overwrite: bool,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let started = Instant::now();
        no_shard_keys(request.shard_key_selector.as_ref())?;
        let collection = self.storage().get(&request.collection_name)?;
        let operation = set_payload_operation(
            request.payload,
            request.points_selector,
            request.key,
            overwrite,
        )?;
        let result = apply(&collection, vec![operation], request.wait).await?;
        Ok(operation_response(result, started))
    }
}

// ---------------------------------------------------------------------------------------------
// Applying updates

/// Applies `operations` in order on the blocking pool, then schedules the optimizer. The engine
/// applies synchronously, so `wait` only changes the reported status, as with Qdrant:
/// `Completed` when the caller waited, `Acknowledged` otherwise.
async fn apply(
    collection: &std::sync::Arc<Collection>,
    operations: Vec<UpdateOperation>,
    wait: Option<bool>,
) -> Result<Vec<pb::UpdateResult>, StorageError> {
    let status = if wait.unwrap_or(false) {
        pb::UpdateStatus::Completed
    } else {
        pb::UpdateStatus::Acknowledged
    };
    let worker = std::sync::Arc::clone(collection);
    let ids = run_blocking(move || {
        let mut ids = Vec::with_capacity(operations.len());
        for operation in operations {
            worker.shard().update(operation)?;
            ids.push(worker.next_operation_id());
        }
        Ok(ids)
    })
    .await;
    // Even a failed batch may have applied its first operations.
    collection.schedule_optimization();
    Ok(ids?
        .into_iter()
        .map(|id| pb::UpdateResult {
            operation_id: Some(id),
            status: status as i32,
        })
        .collect())
}

fn operation_response(
    mut results: Vec<pb::UpdateResult>,
    started: Instant,
) -> Response<pb::PointsOperationResponse> {
    Response::new(pb::PointsOperationResponse {
        result: results.pop(),
        time: started.elapsed().as_secs_f64(),
        usage: None,
    })
}

/// The testkit has no custom sharding, so a shard key can only be a mistake; Qdrant refuses it
/// on a collection with automatic sharding too.
fn no_shard_keys(selector: Option<&pb::ShardKeySelector>) -> Result<(), StorageError> {
    match selector {
        Some(selector) if !selector.shard_keys.is_empty() => Err(StorageError::bad_input(
            "Shard key selection is not supported: qdrant-tower-testkit collections use automatic sharding",
        )),
        _ => Ok(()),
    }
}

/// Which points an update targets.
enum Selection {
    Ids(Vec<PointId>),
    Filter(Filter),
}

fn selection(selector: Option<pb::PointsSelector>) -> Result<Selection, StorageError> {
    use pb::points_selector::PointsSelectorOneOf as S;
    match selector.and_then(|s| s.points_selector_one_of) {
        Some(S::Points(list)) => point_ids(list.ids).map(Selection::Ids),
        Some(S::Filter(filter)) => filter_from_pb(filter).map(Selection::Filter),
        None => Err(StorageError::invalid_argument(
            "Either a list of point ids or a filter must be provided",
        )),
    }
}

fn upsert_operation(
    config: &EdgeConfig,
    points: Vec<pb::PointStruct>,
    update_filter: Option<pb::Filter>,
    update_mode: Option<i32>,
) -> Result<UpdateOperation, StorageError> {
    let points = points
        .into_iter()
        .map(|point| {
            let id = point
                .id
                .ok_or_else(|| StorageError::invalid_argument("Point id is missing"))
                .and_then(point_id)?;
            let vectors = point
                .vectors
                .ok_or_else(|| StorageError::invalid_argument("Expected some vectors"))?;
            let vector = vectors_from_pb(vectors)?;
            check_point_vectors(config, &vector)?;
            Ok(PointStructPersisted {
                id,
                vector,
                payload: Some(payload_from_pb(point.payload)),
            })
        })
        .collect::<Result<Vec<_>, StorageError>>()?;
    let insert = PointInsertOperations::PointsList(points);

    let update_mode = update_mode
        .map(|mode| match pb::UpdateMode::try_from(mode) {
            Ok(pb::UpdateMode::Upsert) => Ok(UpdateMode::Upsert),
            Ok(pb::UpdateMode::InsertOnly) => Ok(UpdateMode::InsertOnly),
            Ok(pb::UpdateMode::UpdateOnly) => Ok(UpdateMode::UpdateOnly),
            Err(_) => Err(StorageError::invalid_argument(format!(
                "Unknown update mode: {mode}"
            ))),
        })
        .transpose()?;
    let operation =
        if update_filter.is_some() || update_mode.is_some_and(|mode| mode != UpdateMode::Upsert) {
            PointOperations::UpsertPointsConditional(ConditionalInsertOperation {
                points_op: insert,
                condition: filter_opt(update_filter)?.unwrap_or_default(),
                update_mode,
            })
        } else {
            PointOperations::UpsertPoints(insert)
        };
    Ok(UpdateOperation::PointOperation(operation))
}

fn delete_operation(selector: Option<pb::PointsSelector>) -> Result<UpdateOperation, StorageError> {
    let operation = match selection(selector)? {
        Selection::Ids(ids) => PointOperations::DeletePoints { ids },
        Selection::Filter(filter) => PointOperations::DeletePointsByFilter(filter),
    };
    Ok(UpdateOperation::PointOperation(operation))
}

fn update_vectors_operation(
    config: &EdgeConfig,
    points: Vec<pb::PointVectors>,
    update_filter: Option<pb::Filter>,
) -> Result<UpdateOperation, StorageError> {
    let points = points
        .into_iter()
        .map(|point| {
            let id = point
                .id
                .ok_or_else(|| StorageError::invalid_argument("Point id is missing"))
                .and_then(point_id)?;
            let vectors = point
                .vectors
                .ok_or_else(|| StorageError::invalid_argument("Point vectors are missing"))?;
            let vector = vectors_from_pb(vectors)?;
            check_point_vectors(config, &vector)?;
            Ok(PointVectorsPersisted { id, vector })
        })
        .collect::<Result<Vec<_>, StorageError>>()?;
    Ok(UpdateOperation::VectorOperation(
        VectorOperations::UpdateVectors(UpdateVectorsOp {
            points,
            update_filter: filter_opt(update_filter)?,
        }),
    ))
}

fn delete_vectors_operation(
    selector: Option<pb::PointsSelector>,
    vectors: Option<pb::VectorsSelector>,
) -> Result<UpdateOperation, StorageError> {
    let names = vectors
        .map(|v| v.names)
        .filter(|names| !names.is_empty())
        .ok_or_else(|| StorageError::invalid_argument("Vector names to delete are missing"))?;
    let operation = match selection(selector)? {
        Selection::Ids(ids) => VectorOperations::DeleteVectors(PointIdsList::from(ids), names),
        Selection::Filter(filter) => VectorOperations::DeleteVectorsByFilter(filter, names),
    };
    Ok(UpdateOperation::VectorOperation(operation))
}

fn set_payload_operation(
    payload: std::collections::HashMap<String, pb::Value>,
    selector: Option<pb::PointsSelector>,
    key: Option<String>,
    overwrite: bool,
) -> Result<UpdateOperation, StorageError> {
    let (points, filter) = match selection(selector)? {
        Selection::Ids(ids) => (Some(ids), None),
        Selection::Filter(filter) => (None, Some(filter)),
    };
    let operation = SetPayloadOp {
        payload: payload_from_pb(payload),
        points,
        filter,
        key: key.as_deref().map(json_path).transpose()?,
    };
    Ok(UpdateOperation::PayloadOperation(if overwrite {
        PayloadOps::OverwritePayload(operation)
    } else {
        PayloadOps::SetPayload(operation)
    }))
}

fn delete_payload_operation(
    keys: Vec<String>,
    selector: Option<pb::PointsSelector>,
) -> Result<UpdateOperation, StorageError> {
    let (points, filter) = match selection(selector)? {
        Selection::Ids(ids) => (Some(ids), None),
        Selection::Filter(filter) => (None, Some(filter)),
    };
    Ok(UpdateOperation::PayloadOperation(
        PayloadOps::DeletePayload(DeletePayloadOp {
            keys: keys
                .iter()
                .map(|key| json_path(key))
                .collect::<Result<_, _>>()?,
            points,
            filter,
        }),
    ))
}

fn clear_payload_operation(
    selector: Option<pb::PointsSelector>,
) -> Result<UpdateOperation, StorageError> {
    Ok(UpdateOperation::PayloadOperation(
        match selection(selector)? {
            Selection::Ids(points) => PayloadOps::ClearPayload { points },
            Selection::Filter(filter) => PayloadOps::ClearPayloadByFilter(filter),
        },
    ))
}

#[allow(deprecated)] // The deprecated delete and clear variants are still sent by old clients.
fn batch_operation(
    config: &EdgeConfig,
    operation: pb::PointsUpdateOperation,
) -> Result<UpdateOperation, StorageError> {
    use pb::points_update_operation::Operation as O;
    let operation = operation
        .operation
        .ok_or_else(|| StorageError::invalid_argument("Update operation is missing"))?;
    match operation {
        O::Upsert(list) => {
            no_shard_keys(list.shard_key_selector.as_ref())?;
            upsert_operation(config, list.points, list.update_filter, list.update_mode)
        }
        O::DeleteDeprecated(selector) => delete_operation(Some(selector)),
        O::DeletePoints(delete) => {
            no_shard_keys(delete.shard_key_selector.as_ref())?;
            delete_operation(delete.points)
        }
        O::SetPayload(set) => {
            no_shard_keys(set.shard_key_selector.as_ref())?;
            set_payload_operation(set.payload, set.points_selector, set.key, false)
        }
        O::OverwritePayload(set) => {
            no_shard_keys(set.shard_key_selector.as_ref())?;
            set_payload_operation(set.payload, set.points_selector, set.key, true)
        }
        O::DeletePayload(delete) => {
            no_shard_keys(delete.shard_key_selector.as_ref())?;
            delete_payload_operation(delete.keys, delete.points_selector)
        }
        O::ClearPayloadDeprecated(selector) => clear_payload_operation(Some(selector)),
        O::ClearPayload(clear) => {
            no_shard_keys(clear.shard_key_selector.as_ref())?;
            clear_payload_operation(clear.points)
        }
        O::UpdateVectors(update) => {
            no_shard_keys(update.shard_key_selector.as_ref())?;
            update_vectors_operation(config, update.points, update.update_filter)
        }
        O::DeleteVectors(delete) => {
            no_shard_keys(delete.shard_key_selector.as_ref())?;
            delete_vectors_operation(delete.points_selector, delete.vectors)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reads

async fn run_query_batch(
    collection: std::sync::Arc<Collection>,
    queries: Vec<QueryRequest>,
) -> Result<Vec<pb::BatchResult>, StorageError> {
    let batches = run_blocking(move || {
        Ok(collection
            .shard()
            .query_batch(QueryBatchRequest::new(queries))?)
    })
    .await?;
    Ok(batches
        .into_iter()
        .map(|points| pb::BatchResult {
            result: points.into_iter().map(scored_point_to_pb).collect(),
        })
        .collect())
}

/// A `SearchPoints` as the equivalent nearest-neighbour query, as Qdrant runs it internally.
fn search_to_query(
    config: &EdgeConfig,
    search: pb::SearchPoints,
) -> Result<QueryRequest, StorageError> {
    no_shard_keys(search.shard_key_selector.as_ref())?;
    if search.limit == 0 {
        return Err(StorageError::invalid_argument(
            "Validation error in body: [limit: value 0 invalid, must be 1 or more]",
        ));
    }
    let vector = match search.sparse_indices {
        Some(indices) => SparseVector::new(indices.data, search.vector)
            .map(VectorInternal::Sparse)
            .map_err(|err| StorageError::bad_input(format!("Invalid sparse vector: {err}")))?,
        None => VectorInternal::Dense(search.vector),
    };
    let using = search.vector_name.filter(|name| !name.is_empty());
    check_query_vector(config, using.as_deref().unwrap_or(""), &vector)?;
    Ok(QueryRequest {
        prefetches: Vec::new(),
        query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
            query: vector,
            using,
        }))),
        filter: filter_opt(search.filter)?,
        score_threshold: search.score_threshold,
        limit: search.limit as usize,
        offset: search.offset.unwrap_or(0) as usize,
        params: search_params(search.params)?,
        with_vector: with_vectors(search.with_vectors),
        with_payload: with_payload(search.with_payload, false)?,
    })
}

fn query_request(
    config: &EdgeConfig,
    query: pb::QueryPoints,
) -> Result<QueryRequest, StorageError> {
    no_shard_keys(query.shard_key_selector.as_ref())?;
    if query.lookup_from.is_some() {
        return Err(unsupported("Points/Query", "lookup_from"));
    }
    Ok(QueryRequest {
        prefetches: query
            .prefetch
            .into_iter()
            .map(|prefetch| prefetch_from_pb(config, prefetch))
            .collect::<Result<_, _>>()?,
        query: scoring_query(config, query.query, query.using)?,
        filter: filter_opt(query.filter)?,
        score_threshold: query.score_threshold,
        limit: query.limit.unwrap_or(DEFAULT_LIMIT) as usize,
        offset: query.offset.unwrap_or(0) as usize,
        params: search_params(query.params)?,
        with_vector: with_vectors(query.with_vectors),
        with_payload: with_payload(query.with_payload, false)?,
    })
}

fn prefetch_from_pb(
    config: &EdgeConfig,
    prefetch: pb::PrefetchQuery,
) -> Result<Prefetch, StorageError> {
    if prefetch.lookup_from.is_some() {
        return Err(unsupported("Points/Query", "lookup_from"));
    }
    Ok(Prefetch {
        prefetches: prefetch
            .prefetch
            .into_iter()
            .map(|nested| prefetch_from_pb(config, nested))
            .collect::<Result<_, _>>()?,
        query: scoring_query(config, prefetch.query, prefetch.using)?,
        limit: prefetch.limit.unwrap_or(DEFAULT_LIMIT) as usize,
        params: search_params(prefetch.params)?,
        filter: filter_opt(prefetch.filter)?,
        score_threshold: prefetch.score_threshold,
    })
}

fn scoring_query(
    config: &EdgeConfig,
    query: Option<pb::Query>,
    using: Option<String>,
) -> Result<Option<ScoringQuery>, StorageError> {
    use pb::query::Variant as Q;
    let Some(variant) = query.and_then(|q| q.variant) else {
        return Ok(None);
    };
    let using = using.filter(|name| !name.is_empty());
    let scoring = match variant {
        Q::Nearest(input) => {
            let vector = vector_input_from_pb(input)?;
            check_query_vector(config, using.as_deref().unwrap_or(""), &vector)?;
            ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
                query: vector,
                using,
            }))
        }
        Q::Fusion(fusion) => ScoringQuery::Fusion(match pb::Fusion::try_from(fusion) {
            Ok(pb::Fusion::Rrf) => Fusion::Rrf {
                k: DEFAULT_RRF_K,
                weights: None,
            },
            Ok(pb::Fusion::Dbsf) => Fusion::Dbsf,
            Err(_) => {
                return Err(StorageError::invalid_argument(format!(
                    "Unknown fusion: {fusion}"
                )));
            }
        }),
        Q::Rrf(rrf) => ScoringQuery::Fusion(Fusion::Rrf {
            k: rrf.k.map_or(DEFAULT_RRF_K, |k| k as usize),
            weights: (!rrf.weights.is_empty())
                .then(|| rrf.weights.into_iter().map(OrderedFloat).collect()),
        }),
        Q::OrderBy(order) => ScoringQuery::OrderBy(order_by(order)?),
        Q::Sample(_) => ScoringQuery::Sample(Sample::Random),
        Q::Recommend(_) => return Err(unsupported("Points/Query", "recommend queries")),
        Q::Discover(_) => return Err(unsupported("Points/Query", "discover queries")),
        Q::Context(_) => return Err(unsupported("Points/Query", "context queries")),
        Q::Formula(_) => return Err(unsupported("Points/Query", "formula queries")),
        Q::NearestWithMmr(_) => return Err(unsupported("Points/Query", "MMR queries")),
        Q::RelevanceFeedback(_) => {
            return Err(unsupported("Points/Query", "relevance feedback queries"));
        }
        Q::Text(_) => return Err(unsupported("Points/Query", "text (BM25) queries")),
    };
    Ok(Some(scoring))
}

fn order_by(order: pb::OrderBy) -> Result<OrderBy, StorageError> {
    use pb::start_from::Value as V;
    let direction = match order.direction.map(pb::Direction::try_from) {
        None => None,
        Some(Ok(pb::Direction::Asc)) => Some(Direction::Asc),
        Some(Ok(pb::Direction::Desc)) => Some(Direction::Desc),
        Some(Err(_)) => return Err(StorageError::invalid_argument("Unknown order direction")),
    };
    let start_from = match order.start_from.and_then(|s| s.value) {
        None => None,
        Some(V::Integer(int)) => Some(StartFrom::Integer(int)),
        Some(V::Float(float)) => Some(StartFrom::Float(float)),
        Some(V::Timestamp(timestamp)) => {
            let micros = timestamp
                .seconds
                .checked_mul(1_000_000)
                .and_then(|m| m.checked_add(i64::from(timestamp.nanos) / 1_000));
            Some(StartFrom::Datetime(
                micros
                    .and_then(DateTimeWrapper::from_timestamp)
                    .ok_or_else(|| StorageError::bad_input("Timestamp is out of range"))?,
            ))
        }
        Some(V::Datetime(text)) => Some(StartFrom::Datetime(text.parse().map_err(|_| {
            StorageError::bad_input(format!(
                "'{text}' does not match accepted datetime format (RFC3339)"
            ))
        })?)),
    };
    Ok(OrderBy {
        key: json_path(&order.key)?,
        direction,
        start_from,
    })
}

fn search_params(params: Option<pb::SearchParams>) -> Result<Option<SearchParams>, StorageError> {
    let Some(params) = params else {
        return Ok(None);
    };
    if params.idf.is_some() {
        return Err(unsupported("search params", "idf"));
    }
    Ok(Some(SearchParams {
        hnsw_ef: params.hnsw_ef.map(|ef| ef as usize),
        exact: params.exact.unwrap_or(false),
        quantization: params
            .quantization
            .map(|quantization| QuantizationSearchParams {
                ignore: quantization.ignore.unwrap_or(false),
                rescore: quantization.rescore,
                oversampling: quantization.oversampling,
            }),
        indexed_only: params.indexed_only.unwrap_or(false),
        acorn: params.acorn.map(|acorn| AcornSearchParams {
            enable: acorn.enable.unwrap_or(false),
            max_selectivity: acorn.max_selectivity.map(OrderedFloat),
        }),
        idf: None,
    }))
}
