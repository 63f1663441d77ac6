//! `qdrant.Points`, every RPC: upsert, delete, get, vectors and payload updates, payload
//! indexes, named vector creation and deletion, search (single, batch, groups), scroll, count,
//! recommend (single, batch, groups), discover (single, batch), query (single, batch, groups),
//! facet, the distance matrix (pairs and offsets) and update batch.
//!
//! Requests that may name points instead of vectors (recommend, discover, query) go through
//! `plan`, which resolves them as Qdrant's collection layer does before the engine runs them.

use std::time::Instant;

use qdrant_client::qdrant as pb;
use qdrant_client::qdrant::points_server::Points;
use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::{
    AcornSearchParams, ConditionalInsertOperation, CountRequest, CreateIndex, CreateVectorName,
    DateTimeWrapper, DeletePayloadOp, DeleteVectorName, Direction, EdgeConfig, EdgeShardRead,
    FacetRequest, FacetValue, FieldIndexOperations, Filter, GroupRequest, JsonPath, NamedQuery,
    OrderBy, OrderByInterface, PayloadOps, PointId, PointIdsList, PointInsertOperations,
    PointOperations, PointStructPersisted, PointVectorsPersisted, QuantizationSearchParams,
    QueryBatchRequest, QueryEnum, QueryRequest, RetrieveRequest, ScoringQuery, ScrollRequest,
    SearchMatrixRequest, SearchMatrixResponse, SearchParams, SetPayloadOp, SparseVector, StartFrom,
    UpdateMode, UpdateOperation, UpdateVectorsOp, VectorInternal, VectorNameConfig,
    VectorNameOperations, VectorOperations,
};
use tonic::{Request, Response, Status};

use super::api::QdrantApi;
use super::convert::{
    check_point_vectors, check_query_vector, json_path, payload_from_pb, point_id, point_id_to_pb,
    point_ids, record_to_pb, scored_point_to_pb, vectors_from_pb, with_payload, with_vectors,
};
use super::filter::{filter_from_pb, filter_opt};
use super::index::field_schema;
use super::plan::{
    DEFAULT_GROUP_SIZE, DiscoverParts, DiscoverPlan, Plan, QueryParts, QueryPlan, RecommendParts,
    RecommendPlan, Resolver, collection_not_found,
};
use super::status::unsupported;
use super::validate::Validation;
use crate::storage::{Collection, StorageError, run_blocking};

/// Qdrant's default page size for scroll, query and facet.
const DEFAULT_LIMIT: usize = 10;
/// Qdrant's default `sample` of the distance matrix.
const DEFAULT_MATRIX_SAMPLE: usize = 10;
/// Qdrant's default `limit` (neighbours per sample) of the distance matrix.
const DEFAULT_MATRIX_LIMIT: usize = 3;

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
        if request.points.is_empty() {
            return Err(empty_update().into());
        }
        check_no_empty_dense_vector(&request.points)?;
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
        // Qdrant's order: request validation, the schema, then the collection.
        Validation::new()
            .not_empty("field_name", &request.field_name)
            .finish()?;
        let field_schema = field_schema(request.field_type, request.field_index_params)?;
        let field_name = json_path(&request.field_name)?;
        let collection = self.storage().get(&request.collection_name)?;
        let operation =
            UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(CreateIndex {
                field_name,
                field_schema,
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
        request: Request<pb::CreateVectorNameRequest>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let config = vector_name_config(request.vector_config)?;
        check_vector_name(&request.vector_name)?;
        let collection = self.storage().get(&request.collection_name)?;
        check_vector_name_free(&collection.shard().config(), &request.vector_name, &config)?;
        let operation = UpdateOperation::VectorNameOperation(
            VectorNameOperations::CreateVectorName(CreateVectorName {
                vector_name: request.vector_name,
                config,
            }),
        );
        let result = apply(&collection, vec![operation], request.wait).await?;
        Ok(operation_response(result, started))
    }

    async fn delete_vector_name(
        &self,
        request: Request<pb::DeleteVectorNameRequest>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let collection = self.storage().get(&request.collection_name)?;
        let operation = UpdateOperation::VectorNameOperation(
            VectorNameOperations::DeleteVectorName(DeleteVectorName {
                vector_name: request.vector_name,
            }),
        );
        let result = apply(&collection, vec![operation], request.wait).await?;
        Ok(operation_response(result, started))
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
        request: Request<pb::SearchPointGroups>,
    ) -> Result<Response<pb::SearchGroupsResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        Validation::new()
            .not_empty("group_by", &request.group_by)
            .min("group_size", u64::from(request.group_size), 1)
            .min("limit", u64::from(request.limit), 1)
            .finish()?;
        no_shard_keys(request.shard_key_selector.as_ref())?;
        let group_by = json_path(&request.group_by)?;
        let groups = request.limit as usize;
        let group_size = request.group_size as usize;
        let with_lookup = request.with_lookup.clone();
        let collection = self.storage().get(&request.collection_name)?;
        let mut query = search_to_query(
            &collection.shard().config(),
            pb::SearchPoints {
                collection_name: request.collection_name.clone(),
                vector: request.vector,
                filter: request.filter,
                limit: u64::from(request.limit),
                with_payload: request.with_payload,
                params: request.params,
                score_threshold: request.score_threshold,
                offset: None,
                vector_name: request.vector_name,
                with_vectors: request.with_vectors,
                read_consistency: None,
                timeout: None,
                shard_key_selector: None,
                sparse_indices: request.sparse_indices,
            },
        )?;
        query.offset = 0;
        let group = GroupRequest::new(query, group_by, groups, group_size);
        let result = self
            .run_groups(
                &request.collection_name,
                collection,
                GroupSource::Ready(group),
                with_lookup,
            )
            .await?;
        Ok(Response::new(pb::SearchGroupsResponse {
            result: Some(result),
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
    }

    async fn scroll(
        &self,
        request: Request<pb::ScrollPoints>,
    ) -> Result<Response<pb::ScrollResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        Validation::new()
            .min_opt("limit", request.limit.map(u64::from), 1)
            .finish()?;
        no_shard_keys(request.shard_key_selector.as_ref())?;
        let collection = self.storage().get(&request.collection_name)?;
        if request.offset.is_some() && request.order_by.is_some() {
            // Qdrant's wording (`LocalShard::scroll_by`); the engine words it otherwise.
            return Err(StorageError::bad_input(
                "Cannot use an `offset` when using `order_by`. The alternative for paging is to use `order_by.start_from` and a filter to exclude the IDs that you've already seen for the `order_by.start_from` value",
            )
            .into());
        }
        let scroll = ScrollRequest {
            offset: request.offset.map(point_id).transpose()?,
            limit: Some(request.limit.map_or(DEFAULT_LIMIT, |l| l as usize)),
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
        request: Request<pb::RecommendPoints>,
    ) -> Result<Response<pb::RecommendResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let name = request.collection_name.clone();
        let plan = recommend_plan(request)?;
        let mut results = self.run_plans(&name, vec![plan]).await?;
        Ok(Response::new(pb::RecommendResponse {
            result: results.pop().unwrap_or_default(),
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
    }

    async fn recommend_batch(
        &self,
        request: Request<pb::RecommendBatchPoints>,
    ) -> Result<Response<pb::RecommendBatchResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let plans = request
            .recommend_points
            .into_iter()
            .map(recommend_plan)
            .collect::<Result<Vec<_>, _>>()?;
        let results = self.run_plans(&request.collection_name, plans).await?;
        Ok(Response::new(pb::RecommendBatchResponse {
            result: batch_results(results),
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
    }

    async fn recommend_groups(
        &self,
        request: Request<pb::RecommendPointGroups>,
    ) -> Result<Response<pb::RecommendGroupsResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        Validation::new()
            .not_empty("group_by", &request.group_by)
            .min("group_size", u64::from(request.group_size), 1)
            .min("limit", u64::from(request.limit), 1)
            .finish()?;
        no_shard_keys(request.shard_key_selector.as_ref())?;
        let group_by = json_path(&request.group_by)?;
        let name = request.collection_name.clone();
        let with_lookup = request.with_lookup.clone();
        let groups = request.limit as usize;
        let group_size = request.group_size as usize;
        let plan = Plan::Recommend(RecommendPlan::new(RecommendParts {
            positive: request.positive,
            negative: request.negative,
            positive_vectors: request.positive_vectors,
            negative_vectors: request.negative_vectors,
            strategy: request.strategy,
            using: request.using,
            lookup_from: request.lookup_from,
            filter: request.filter,
            params: search_params(request.params)?,
            score_threshold: request.score_threshold,
            limit: groups,
            offset: 0,
            with_payload: with_payload(request.with_payload, false)?,
            with_vector: with_vectors(request.with_vectors),
        })?);
        let collection = self.storage().get(&name)?;
        let result = self
            .run_groups(
                &name,
                collection,
                GroupSource::Plan {
                    plan,
                    group_by,
                    groups,
                    group_size,
                },
                with_lookup,
            )
            .await?;
        Ok(Response::new(pb::RecommendGroupsResponse {
            result: Some(result),
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
    }

    async fn discover(
        &self,
        request: Request<pb::DiscoverPoints>,
    ) -> Result<Response<pb::DiscoverResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        Validation::new().min("limit", request.limit, 1).finish()?;
        let name = request.collection_name.clone();
        let plan = discover_plan(request)?;
        let mut results = self.run_plans(&name, vec![plan]).await?;
        Ok(Response::new(pb::DiscoverResponse {
            result: results.pop().unwrap_or_default(),
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
    }

    async fn discover_batch(
        &self,
        request: Request<pb::DiscoverBatchPoints>,
    ) -> Result<Response<pb::DiscoverBatchResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let mut validation = Validation::new();
        for (i, discover) in request.discover_points.iter().enumerate() {
            validation.min(&format!("discover_points[{i}].limit"), discover.limit, 1);
        }
        validation.finish()?;
        let plans = request
            .discover_points
            .into_iter()
            .map(discover_plan)
            .collect::<Result<Vec<_>, _>>()?;
        let results = self.run_plans(&request.collection_name, plans).await?;
        Ok(Response::new(pb::DiscoverBatchResponse {
            result: batch_results(results),
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
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
        if request.operations.is_empty() {
            // `length(min = 1)`, worded by the validator as for a string.
            return Err(StorageError::invalid_argument(
                "Validation error in body: [operations: value [] invalid, must be at least 1 characters]",
            )
            .into());
        }
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
        let mut validation = Validation::new();
        prefetch_limits(&mut validation, "", &request.prefetch);
        validation.min_opt("limit", request.limit, 1).finish()?;
        let name = request.collection_name.clone();
        let plan = query_plan(request)?;
        let mut results = self.run_plans(&name, vec![plan]).await?;
        Ok(Response::new(pb::QueryResponse {
            result: results.pop().unwrap_or_default(),
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
        let mut validation = Validation::new();
        for (i, query) in request.query_points.iter().enumerate() {
            validation.min_opt(&format!("query_points[{i}].limit"), query.limit, 1);
        }
        validation.finish()?;
        let plans = request
            .query_points
            .into_iter()
            .map(query_plan)
            .collect::<Result<Vec<_>, _>>()?;
        let results = self.run_plans(&request.collection_name, plans).await?;
        Ok(Response::new(pb::QueryBatchResponse {
            result: batch_results(results),
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
    }

    async fn query_groups(
        &self,
        request: Request<pb::QueryPointGroups>,
    ) -> Result<Response<pb::QueryGroupsResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        Validation::new()
            .not_empty("group_by", &request.group_by)
            .min_opt("group_size", request.group_size, 1)
            .min_opt("limit", request.limit, 1)
            .finish()?;
        no_shard_keys(request.shard_key_selector.as_ref())?;
        let group_by = json_path(&request.group_by)?;
        let groups = request.limit.map_or(DEFAULT_LIMIT, |l| l as usize);
        let group_size = request
            .group_size
            .map_or(DEFAULT_GROUP_SIZE, |s| s as usize);
        let name = request.collection_name.clone();
        let with_lookup = request.with_lookup.clone();
        let plan = Plan::Query(QueryPlan::new(QueryParts {
            prefetch: request.prefetch,
            query: request.query,
            using: request.using,
            filter: request.filter,
            params: search_params(request.params)?,
            score_threshold: request.score_threshold,
            limit: groups,
            offset: 0,
            with_payload: with_payload(request.with_payload, false)?,
            with_vector: with_vectors(request.with_vectors),
            lookup_from: request.lookup_from,
        })?);
        let collection = self.storage().get(&name)?;
        let result = self
            .run_groups(
                &name,
                collection,
                GroupSource::Plan {
                    plan,
                    group_by,
                    groups,
                    group_size,
                },
                with_lookup,
            )
            .await?;
        Ok(Response::new(pb::QueryGroupsResponse {
            result: Some(result),
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
    }

    async fn facet(
        &self,
        request: Request<pb::FacetCounts>,
    ) -> Result<Response<pb::FacetResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        no_shard_keys(request.shard_key_selector.as_ref())?;
        let collection = self.storage().get(&request.collection_name)?;
        let key = json_path(&request.key)?;
        if request.limit == Some(0) {
            // Qdrant answers no hits without looking for an index.
            return Ok(Response::new(pb::FacetResponse {
                hits: Vec::new(),
                time: started.elapsed().as_secs_f64(),
                usage: None,
            }));
        }
        let facet = FacetRequest {
            key,
            limit: request.limit.map_or(DEFAULT_LIMIT, |l| l as usize),
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
        request: Request<pb::SearchMatrixPoints>,
    ) -> Result<Response<pb::SearchMatrixPairsResponse>, Status> {
        let started = Instant::now();
        let matrix = self.search_matrix(request.into_inner()).await?;
        let pairs = matrix
            .sample_ids
            .into_iter()
            .zip(matrix.nearests)
            .flat_map(|(a, nearest)| {
                nearest.into_iter().map(move |point| pb::SearchMatrixPair {
                    a: Some(point_id_to_pb(a)),
                    b: Some(point_id_to_pb(point.id)),
                    score: point.score,
                })
            })
            .collect();
        Ok(Response::new(pb::SearchMatrixPairsResponse {
            result: Some(pb::SearchMatrixPairs { pairs }),
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
    }

    async fn search_matrix_offsets(
        &self,
        request: Request<pb::SearchMatrixPoints>,
    ) -> Result<Response<pb::SearchMatrixOffsetsResponse>, Status> {
        let started = Instant::now();
        let matrix = self.search_matrix(request.into_inner()).await?;
        let offset_of: std::collections::HashMap<PointId, u64> = matrix
            .sample_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i as u64))
            .collect();
        let mut result = pb::SearchMatrixOffsets::default();
        for (row, nearest) in matrix.nearests.into_iter().enumerate() {
            for point in nearest {
                result.offsets_row.push(row as u64);
                result.offsets_col.push(offset_of[&point.id]);
                result.scores.push(point.score);
            }
        }
        result.ids = matrix.sample_ids.into_iter().map(point_id_to_pb).collect();
        Ok(Response::new(pb::SearchMatrixOffsetsResponse {
            result: Some(result),
            time: started.elapsed().as_secs_f64(),
            usage: None,
        }))
    }
}

/// What a group request groups: an engine request ready to run, or a plan whose point
/// references still need resolving.
enum GroupSource {
    Ready(GroupRequest),
    Plan {
        plan: Plan,
        group_by: JsonPath,
        groups: usize,
        group_size: usize,
    },
}

impl QdrantApi {
    /// Resolves the point references of `plans` and runs them as one batch on the collection.
    async fn run_plans(
        &self,
        collection_name: &str,
        plans: Vec<Plan>,
    ) -> Result<Vec<Vec<pb::ScoredPoint>>, StorageError> {
        let collection = self.storage().get(collection_name)?;
        let resolver = Resolver::new(self.storage(), collection_name, collection, &plans)?;
        let results = run_blocking(move || {
            let requests = resolver.build(plans)?;
            let runnable: Vec<QueryRequest> = requests.iter().flatten().cloned().collect();
            let mut answers = if runnable.is_empty() {
                Vec::new()
            } else {
                resolver
                    .collection()
                    .shard()
                    .query_batch(QueryBatchRequest::new(runnable))?
            }
            .into_iter();
            Ok(requests
                .iter()
                .map(|request| match request {
                    Some(_) => answers.next().unwrap_or_default(),
                    None => Vec::new(),
                })
                .collect::<Vec<_>>())
        })
        .await?;
        Ok(results
            .into_iter()
            .map(|points| points.into_iter().map(scored_point_to_pb).collect())
            .collect())
    }

    /// Runs a group request, then fills each group's `lookup` from the `with_lookup`
    /// collection, as Qdrant's `GroupBy` does.
    async fn run_groups(
        &self,
        collection_name: &str,
        collection: std::sync::Arc<Collection>,
        source: GroupSource,
        with_lookup: Option<pb::WithLookup>,
    ) -> Result<pb::GroupsResult, StorageError> {
        let resolver = match &source {
            GroupSource::Ready(_) => None,
            GroupSource::Plan { plan, .. } => Some(Resolver::new(
                self.storage(),
                collection_name,
                std::sync::Arc::clone(&collection),
                std::slice::from_ref(plan),
            )?),
        };
        let worker = std::sync::Arc::clone(&collection);
        let groups = run_blocking(move || {
            let request = match source {
                GroupSource::Ready(request) => request,
                GroupSource::Plan {
                    plan,
                    group_by,
                    groups,
                    group_size,
                } => {
                    let resolver = resolver.expect("a resolver for every plan");
                    let query =
                        resolver.build(vec![plan])?.pop().flatten().ok_or_else(|| {
                            StorageError::service_error("a group plan built nothing")
                        })?;
                    GroupRequest::new(query, group_by, groups, group_size)
                }
            };
            Ok(worker.shard().query_groups(request)?)
        })
        .await?;

        let mut lookups = std::collections::HashMap::new();
        if let Some(with_lookup) = with_lookup {
            let lookup = self
                .storage()
                .get(&with_lookup.collection)
                .map_err(|_| collection_not_found(&with_lookup.collection))?;
            let ids: Vec<PointId> = groups
                .iter()
                .filter_map(|group| group_lookup_id(&serde_json::Value::from(group.key.clone())))
                .collect();
            if !ids.is_empty() {
                let retrieve = RetrieveRequest {
                    point_ids: ids,
                    // Qdrant's gRPC `WithLookup` returns the payload unless told otherwise.
                    with_payload: Some(with_payload(with_lookup.with_payload, true)?),
                    with_vector: Some(with_vectors(with_lookup.with_vectors)),
                };
                let records = run_blocking(move || Ok(lookup.shard().retrieve(retrieve)?)).await?;
                lookups = records
                    .into_iter()
                    .map(|record| (record.id, record_to_pb(record)))
                    .collect();
            }
        }

        Ok(pb::GroupsResult {
            groups: groups
                .into_iter()
                .map(|group| {
                    let key = serde_json::Value::from(group.key);
                    pb::PointGroup {
                        lookup: group_lookup_id(&key).and_then(|id| lookups.remove(&id)),
                        id: Some(group_id_to_pb(key)),
                        hits: group.hits.into_iter().map(scored_point_to_pb).collect(),
                    }
                })
                .collect(),
        })
    }

    async fn search_matrix(
        &self,
        request: pb::SearchMatrixPoints,
    ) -> Result<SearchMatrixResponse, StorageError> {
        Validation::new()
            .min_opt("sample", request.sample, 2)
            .min_opt("limit", request.limit, 1)
            .finish()?;
        no_shard_keys(request.shard_key_selector.as_ref())?;
        let matrix = SearchMatrixRequest {
            sample_size: request.sample.map_or(DEFAULT_MATRIX_SAMPLE, |s| s as usize),
            limit_per_sample: request.limit.map_or(DEFAULT_MATRIX_LIMIT, |l| l as usize),
            filter: filter_opt(request.filter)?,
            using: request.using.unwrap_or_default(),
        };
        let collection = self.storage().get(&request.collection_name)?;
        check_vector_exists(&collection.shard().config(), &matrix.using)?;
        run_blocking(move || Ok(collection.shard().search_matrix(matrix)?)).await
    }

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
        // Qdrant answers a point write with a usage that reports nothing (no hardware or
        // inference accounting by default); reads carry none.
        usage: Some(pb::Usage::default()),
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

/// Qdrant's check of an upsert's unnamed dense vectors (the REST schema's, which the gRPC
/// points are converted to): none may be empty.
#[allow(deprecated)] // The pre-1.16 `data` field still carries vectors from older clients.
fn check_no_empty_dense_vector(points: &[pb::PointStruct]) -> Result<(), StorageError> {
    use pb::vector::Vector as V;
    use pb::vectors::VectorsOptions;
    for (i, point) in points.iter().enumerate() {
        let Some(VectorsOptions::Vector(vector)) = point
            .vectors
            .as_ref()
            .and_then(|v| v.vectors_options.as_ref())
        else {
            continue;
        };
        let empty = match &vector.vector {
            Some(V::Dense(dense)) => dense.data.is_empty(),
            Some(_) => false,
            None => vector.data.is_empty() && vector.indices.is_none(),
        };
        if empty {
            return Err(StorageError::bad_input(format!(
                "points[{i}].vector.vector: dense vector must not be empty"
            )));
        }
    }
    Ok(())
}

/// `PrefetchQuery.limit`'s `range(min = 1)`, for each prefetch at any depth, at Qdrant's paths
/// (`prefetch[0].prefetch[1].limit`).
fn prefetch_limits(validation: &mut Validation, path: &str, prefetches: &[pb::PrefetchQuery]) {
    for (i, prefetch) in prefetches.iter().enumerate() {
        let path = format!("{path}prefetch[{i}]");
        prefetch_limits(validation, &format!("{path}."), &prefetch.prefetch);
        validation.min_opt(&format!("{path}.limit"), prefetch.limit, 1);
    }
}

/// Qdrant's answer to an update of no point ids (or no points): it splits the ids by shard and
/// finds no update to run (`Collection::update_from_client`).
fn empty_update() -> StorageError {
    StorageError::bad_request("Empty update request")
}

/// What Qdrant answers when an update has no `points_selector`: `delete` and `clear_payload`
/// say one thing, the payload and vector updates (`extract_points_selector`) another.
const SELECTOR_MISSING: &str = "PointSelector is missing";
const SELECTOR_EXPECTED: &str = "points_selector is expected";

fn selection(
    selector: Option<pb::PointsSelector>,
    missing: &str,
) -> Result<Selection, StorageError> {
    use pb::points_selector::PointsSelectorOneOf as S;
    let Some(selector) = selector else {
        return Err(StorageError::invalid_argument(missing));
    };
    match selector.points_selector_one_of {
        Some(S::Points(list)) if list.ids.is_empty() => Err(empty_update()),
        Some(S::Points(list)) => point_ids(list.ids).map(Selection::Ids),
        Some(S::Filter(filter)) => filter_from_pb(filter).map(Selection::Filter),
        None => Err(StorageError::invalid_argument(
            "Malformed PointsSelector type",
        )),
    }
}

pub(super) fn upsert_operation(
    config: &EdgeConfig,
    points: Vec<pb::PointStruct>,
    update_filter: Option<pb::Filter>,
    update_mode: Option<i32>,
) -> Result<UpdateOperation, StorageError> {
    let points = points
        .into_iter()
        .map(|point| {
            // Qdrant's order (`TryFrom<PointStruct>`): vectors, then the id.
            let vectors = point
                .vectors
                .ok_or_else(|| StorageError::invalid_argument("Expected some vectors"))?;
            let vector = vectors_from_pb(vectors)?;
            let id = point
                .id
                .ok_or_else(|| StorageError::invalid_argument("Empty ID is not allowed"))
                .and_then(point_id)?;
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
    let operation = match selection(selector, SELECTOR_MISSING)? {
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
    if points.is_empty() {
        return Err(empty_update());
    }
    let points = points
        .into_iter()
        .map(|point| {
            let id = point
                .id
                .ok_or_else(|| StorageError::invalid_argument("id is expected"))
                .and_then(point_id)?;
            let vectors = point
                .vectors
                .ok_or_else(|| StorageError::invalid_argument("vectors is expected"))?;
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
    let operation = match selection(selector, SELECTOR_EXPECTED)? {
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
    let (points, filter) = match selection(selector, SELECTOR_EXPECTED)? {
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
    let (points, filter) = match selection(selector, SELECTOR_EXPECTED)? {
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
        match selection(selector, SELECTOR_MISSING)? {
            Selection::Ids(points) => PayloadOps::ClearPayload { points },
            Selection::Filter(filter) => PayloadOps::ClearPayloadByFilter(filter),
        },
    ))
}

#[allow(deprecated)] // The deprecated delete and clear variants are still sent by old clients.
pub(super) fn batch_operation(
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
pub(super) fn search_to_query(
    config: &EdgeConfig,
    search: pb::SearchPoints,
) -> Result<QueryRequest, StorageError> {
    no_shard_keys(search.shard_key_selector.as_ref())?;
    if search.limit == 0 {
        return Err(StorageError::invalid_argument(
            "Validation error in body: [limit: value 0 invalid, must be 1 or larger]",
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

pub(super) fn query_plan(query: pb::QueryPoints) -> Result<Plan, StorageError> {
    no_shard_keys(query.shard_key_selector.as_ref())?;
    Ok(Plan::Query(QueryPlan::new(QueryParts {
        prefetch: query.prefetch,
        query: query.query,
        using: query.using,
        filter: query.filter,
        params: search_params(query.params)?,
        score_threshold: query.score_threshold,
        limit: query.limit.map_or(DEFAULT_LIMIT, |l| l as usize),
        offset: query.offset.unwrap_or(0) as usize,
        with_payload: with_payload(query.with_payload, false)?,
        with_vector: with_vectors(query.with_vectors),
        lookup_from: query.lookup_from,
    })?))
}

fn recommend_plan(request: pb::RecommendPoints) -> Result<Plan, StorageError> {
    no_shard_keys(request.shard_key_selector.as_ref())?;
    Ok(Plan::Recommend(RecommendPlan::new(RecommendParts {
        positive: request.positive,
        negative: request.negative,
        positive_vectors: request.positive_vectors,
        negative_vectors: request.negative_vectors,
        strategy: request.strategy,
        using: request.using,
        lookup_from: request.lookup_from,
        filter: request.filter,
        params: search_params(request.params)?,
        score_threshold: request.score_threshold,
        limit: request.limit as usize,
        offset: request.offset.unwrap_or(0) as usize,
        with_payload: with_payload(request.with_payload, false)?,
        with_vector: with_vectors(request.with_vectors),
    })?))
}

fn discover_plan(request: pb::DiscoverPoints) -> Result<Plan, StorageError> {
    no_shard_keys(request.shard_key_selector.as_ref())?;
    Ok(Plan::Discover(DiscoverPlan::new(DiscoverParts {
        target: request.target,
        context: request.context,
        using: request.using,
        lookup_from: request.lookup_from,
        filter: request.filter,
        params: search_params(request.params)?,
        limit: request.limit as usize,
        offset: request.offset.unwrap_or(0) as usize,
        with_payload: with_payload(request.with_payload, false)?,
        with_vector: with_vectors(request.with_vectors),
    })?))
}

fn batch_results(results: Vec<Vec<pb::ScoredPoint>>) -> Vec<pb::BatchResult> {
    results
        .into_iter()
        .map(|result| pb::BatchResult { result })
        .collect()
}

/// A group key as the id of the point `with_lookup` fetches: an unsigned number or a UUID
/// string, as Qdrant's `PseudoId → PointId` conversion accepts.
fn group_lookup_id(key: &serde_json::Value) -> Option<PointId> {
    match key {
        serde_json::Value::Number(number) => number.as_u64().map(PointId::NumId),
        serde_json::Value::String(text) => qdrant_edge::external::uuid::Uuid::try_parse(text)
            .ok()
            .filter(|uuid| uuid.to_string() == *text)
            .map(PointId::Uuid),
        _ => None,
    }
}

fn group_id_to_pb(key: serde_json::Value) -> pb::GroupId {
    use pb::group_id::Kind;
    let kind = match key {
        serde_json::Value::Number(number) => match number.as_u64() {
            Some(unsigned) => Some(Kind::UnsignedValue(unsigned)),
            None => number.as_i64().map(Kind::IntegerValue),
        },
        serde_json::Value::String(text) => Some(Kind::StringValue(text)),
        _ => None,
    };
    pb::GroupId { kind }
}

/// Qdrant's `CollectionParams::check_vector_exists`, with its wording.
fn check_vector_exists(config: &EdgeConfig, name: &str) -> Result<(), StorageError> {
    if config.vectors.contains_key(name) || config.sparse_vectors.contains_key(name) {
        return Ok(());
    }
    let mut dense: Vec<&String> = config.vectors.keys().collect();
    dense.sort();
    let mut sparse: Vec<&String> = config.sparse_vectors.keys().collect();
    sparse.sort();
    let available: Vec<&str> = dense
        .into_iter()
        .chain(sparse)
        .map(String::as_str)
        .collect();
    Err(StorageError::bad_input(if available.is_empty() {
        "Vectors are not configured in this collection".to_owned()
    } else if available == [""] {
        format!("Vector with name {name} is not configured in this collection")
    } else if name.is_empty() {
        format!(
            "Collection requires specified vector name in the request, available names: {}",
            available.join(", ")
        )
    } else {
        format!(
            "Vector with name `{name}` is not configured in this collection, available names: {}",
            available.join(", ")
        )
    }))
}

/// The configuration of a new named vector. The engine's config types are only reachable
/// through serde, so the request is turned into their JSON form.
fn vector_name_config(
    config: Option<pb::create_vector_name_request::VectorConfig>,
) -> Result<VectorNameConfig, StorageError> {
    use pb::create_vector_name_request::VectorConfig;
    let config = config.ok_or_else(|| {
        StorageError::invalid_argument("vector_config is required (dense_config or sparse_config)")
    })?;
    let datatype = |datatype: Option<i32>| -> Result<serde_json::Value, StorageError> {
        let Some(value) = datatype else {
            return Ok(serde_json::Value::Null);
        };
        Ok(match pb::Datatype::try_from(value) {
            Ok(pb::Datatype::Default) => serde_json::Value::Null,
            Ok(pb::Datatype::Float32) => "float32".into(),
            Ok(pb::Datatype::Float16) => "float16".into(),
            Ok(pb::Datatype::Uint8) => "uint8".into(),
            Ok(pb::Datatype::Turbo4) => "turbo4".into(),
            Ok(pb::Datatype::Turbo8) => "turbo8".into(),
            Ok(pb::Datatype::Turbo16) => "turbo16".into(),
            Err(_) => {
                return Err(StorageError::invalid_argument(format!(
                    "Cannot convert datatype: {value}"
                )));
            }
        })
    };
    let json = match config {
        VectorConfig::DenseConfig(dense) => {
            let distance = match pb::Distance::try_from(dense.distance) {
                Ok(pb::Distance::Cosine) => "Cosine",
                Ok(pb::Distance::Euclid) => "Euclid",
                Ok(pb::Distance::Dot) => "Dot",
                Ok(pb::Distance::Manhattan) => "Manhattan",
                Ok(pb::Distance::UnknownDistance) => {
                    return Err(StorageError::invalid_argument(
                        "Malformed distance parameter: UnknownDistance",
                    ));
                }
                Err(_) => {
                    return Err(StorageError::invalid_argument(format!(
                        "Malformed distance parameter, unexpected value: {}",
                        dense.distance
                    )));
                }
            };
            Validation::new()
                .min("vector_config.size", dense.size, 1)
                .finish()?;
            let multivector = match dense.multivector_config {
                None => serde_json::Value::Null,
                Some(multi) => match pb::MultiVectorComparator::try_from(multi.comparator) {
                    Ok(pb::MultiVectorComparator::MaxSim) => {
                        serde_json::json!({ "comparator": "max_sim" })
                    }
                    Err(_) => {
                        return Err(StorageError::invalid_argument(
                            "Unknown multi vector comparator",
                        ));
                    }
                },
            };
            serde_json::json!({ "dense": {
                "size": dense.size,
                "distance": distance,
                "multivector_config": multivector,
                "datatype": datatype(dense.datatype)?,
            }})
        }
        VectorConfig::SparseConfig(sparse) => {
            let modifier = match sparse.modifier.map(pb::Modifier::try_from) {
                None => serde_json::Value::Null,
                Some(Ok(pb::Modifier::None)) => "none".into(),
                Some(Ok(pb::Modifier::Idf)) => "idf".into(),
                Some(Err(_)) => {
                    return Err(StorageError::invalid_argument(format!(
                        "Cannot convert sparse modifier: {}",
                        sparse.modifier.unwrap_or_default()
                    )));
                }
            };
            serde_json::json!({ "sparse": {
                "modifier": modifier,
                "datatype": datatype(sparse.datatype)?,
            }})
        }
    };
    serde_json::from_value(json).map_err(|err| {
        StorageError::service_error(format!("converting the vector config failed: {err}"))
    })
}

/// Qdrant's `validate_vector_name`: names are path segments in its REST API.
fn check_vector_name(name: &str) -> Result<(), StorageError> {
    let problem = if name.is_empty() {
        Some("vector name cannot be empty")
    } else if name.len() > 255 {
        Some("vector name is too long")
    } else if name.contains(['/', '\\']) || name.chars().any(char::is_control) {
        Some("vector name contains invalid characters")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(StorageError::bad_input(format!(
            "Invalid vector name `{name}`: {problem}"
        ))),
    }
}

/// Qdrant refuses to create a vector whose name is taken by one of another kind or
/// configuration; the same configuration again is a no-op.
fn check_vector_name_free(
    config: &EdgeConfig,
    name: &str,
    requested: &VectorNameConfig,
) -> Result<(), StorageError> {
    let requested = serde_json::to_value(requested).unwrap_or_default();
    if let Some(dense) = requested.get("dense") {
        if let Some(existing) = config.vectors.get(name) {
            let same = serde_json::to_value(existing.size).ok() == dense.get("size").cloned()
                && serde_json::to_value(existing.distance).ok() == dense.get("distance").cloned()
                && serde_json::to_value(existing.multivector_config).ok()
                    == Some(dense.get("multivector_config").cloned().unwrap_or_default())
                && serde_json::to_value(existing.datatype).ok()
                    == Some(dense.get("datatype").cloned().unwrap_or_default());
            if !same {
                return Err(StorageError::bad_input(format!(
                    "Vector `{name}` already exists with a different configuration"
                )));
            }
        } else if config.sparse_vectors.contains_key(name) {
            return Err(StorageError::bad_input(format!(
                "Vector `{name}` already exists as a sparse vector"
            )));
        }
    } else if let Some(sparse) = requested.get("sparse") {
        if let Some(existing) = config.sparse_vectors.get(name) {
            let same = serde_json::to_value(existing.modifier).ok()
                == Some(sparse.get("modifier").cloned().unwrap_or_default())
                && serde_json::to_value(existing.datatype).ok()
                    == Some(sparse.get("datatype").cloned().unwrap_or_default());
            if !same {
                return Err(StorageError::bad_input(format!(
                    "Sparse vector `{name}` already exists with a different configuration"
                )));
            }
        } else if config.vectors.contains_key(name) {
            return Err(StorageError::bad_input(format!(
                "Vector `{name}` already exists as a dense vector"
            )));
        }
    }
    Ok(())
}

pub(crate) fn order_by(order: pb::OrderBy) -> Result<OrderBy, StorageError> {
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

pub(crate) fn search_params(
    params: Option<pb::SearchParams>,
) -> Result<Option<SearchParams>, StorageError> {
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
