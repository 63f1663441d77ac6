//! Cheap checks run before a request is sent, so that a mistake costs no round trip and comes
//! back as an error naming the field, not as a server message to decode.

use qdrant_client::qdrant::{
    PointId, PointStruct, PointVectors, PointsSelector, Query, QueryPoints, SearchPoints, Vector,
    VectorInput, Vectors, point_id::PointIdOptions, points_selector::PointsSelectorOneOf,
    points_update_operation::Operation, query, vector, vector_input, vectors::VectorsOptions,
};
use qdrant_tower_layers::RequestInfo;

use crate::error::{InvalidRequest, VectorError};
use crate::request::{VectorOp, VectorRequest};

/// Limits a request must respect before it is sent.
///
/// The defaults match real Qdrant's: its gRPC server accepts messages up to 32 MiB
/// (`service.max_request_size_mb`); 10 000 points per write keeps a single request's work
/// bounded. Larger writes belong in [`upsert_chunked`](crate::upsert_chunked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most points one write (upsert, update vectors, update batch) may carry. Default 10 000.
    pub max_points: usize,
    /// Most bytes a write may encode to. Default 32 MiB; a [`QdrantService`] lowers it to its
    /// max message size if that is smaller.
    ///
    /// [`QdrantService`]: crate::QdrantService
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_points: 10_000,
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

impl VectorRequest {
    /// Checks the request against `limits` and the rules Qdrant would enforce anyway: a
    /// non-empty collection name, non-empty finite vectors, limits above zero, well-formed
    /// UUID ids, and write sizes within `limits`.
    ///
    /// [`QdrantService`](crate::QdrantService) calls this before sending; call it yourself to
    /// check a request early.
    ///
    /// ```
    /// use qdrant_client::qdrant::SearchPointsBuilder;
    /// use qdrant_tower_client::{InvalidRequest, Limits, VectorRequest};
    ///
    /// let request: VectorRequest = SearchPointsBuilder::new("docs", vec![0.5, f32::NAN], 3).into();
    /// let error = request.validate(&Limits::default()).unwrap_err();
    /// assert!(matches!(error.invalid_request(), Some(InvalidRequest::NonFiniteVector { index: 1, .. })));
    /// assert_eq!(
    ///     error.to_string(),
    ///     "search on collection `docs` failed (invalid_request): invalid request: \
    ///      `vector` has non-finite component NaN at index 1",
    /// );
    /// ```
    pub fn validate(&self, limits: &Limits) -> Result<(), VectorError> {
        let operation = self.operation();
        let collection = self.collection();
        let fail = |why| Err(VectorError::invalid(operation, collection, why));
        if collection == Some("") {
            return fail(InvalidRequest::EmptyCollectionName {
                field: "collection_name",
            });
        }
        match self.check(limits) {
            Ok(()) => Ok(()),
            Err(why) => fail(why),
        }
    }

    fn check(&self, limits: &Limits) -> Result<(), InvalidRequest> {
        let operation = self.operation();
        match self.op() {
            VectorOp::Upsert(request) => {
                check_count("points", request.points.len(), limits)?;
                check_points(&request.points)?;
                check_size(operation, request, limits)
            }
            VectorOp::UpdateVectors(request) => {
                check_count("points", request.points.len(), limits)?;
                check_point_vectors(&request.points)?;
                check_size(operation, request, limits)
            }
            VectorOp::UpdateBatch(request) => {
                let mut points = 0;
                for operation in request
                    .operations
                    .iter()
                    .filter_map(|o| o.operation.as_ref())
                {
                    match operation {
                        Operation::Upsert(list) => {
                            points += list.points.len();
                            check_points(&list.points)?;
                        }
                        Operation::UpdateVectors(update) => {
                            points += update.points.len();
                            check_point_vectors(&update.points)?;
                        }
                        Operation::DeletePoints(delete) => check_selector(delete.points.as_ref())?,
                        Operation::ClearPayload(clear) => check_selector(clear.points.as_ref())?,
                        Operation::SetPayload(set) => check_selector(set.points_selector.as_ref())?,
                        Operation::OverwritePayload(set) => {
                            check_selector(set.points_selector.as_ref())?
                        }
                        Operation::DeletePayload(delete) => {
                            check_selector(delete.points_selector.as_ref())?
                        }
                        Operation::DeleteVectors(delete) => {
                            check_selector(delete.points_selector.as_ref())?
                        }
                        _ => {}
                    }
                }
                check_count("operations[].points", points, limits)?;
                check_size(operation, request, limits)
            }
            VectorOp::Delete(request) => check_selector(request.points.as_ref()),
            VectorOp::DeleteVectors(request) => check_selector(request.points_selector.as_ref()),
            VectorOp::SetPayload(request) | VectorOp::OverwritePayload(request) => {
                check_selector(request.points_selector.as_ref())
            }
            VectorOp::DeletePayload(request) => check_selector(request.points_selector.as_ref()),
            VectorOp::ClearPayload(request) => check_selector(request.points.as_ref()),
            VectorOp::Get(request) => check_ids("ids", &request.ids),
            VectorOp::Search(request) => check_search(request),
            VectorOp::SearchBatch(request) => {
                request.search_points.iter().try_for_each(check_search)
            }
            VectorOp::SearchGroups(request) => {
                check_dense("`vector`", &request.vector)?;
                check_limit("limit", u64::from(request.limit))?;
                check_limit("group_size", u64::from(request.group_size))
            }
            VectorOp::Recommend(request) => check_limit("limit", request.limit),
            VectorOp::RecommendGroups(request) => {
                check_limit("limit", u64::from(request.limit))?;
                check_limit("group_size", u64::from(request.group_size))
            }
            VectorOp::Discover(request) => check_limit("limit", request.limit),
            VectorOp::Scroll(request) => match request.limit {
                Some(limit) => check_limit("limit", u64::from(limit)),
                None => Ok(()),
            },
            VectorOp::Query(request) => check_query(request),
            VectorOp::QueryBatch(request) => request.query_points.iter().try_for_each(check_query),
            VectorOp::QueryGroups(request) => {
                check_query_vector(request.query.as_ref())?;
                match request.limit {
                    Some(limit) => check_limit("limit", limit),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

fn check_count(field: &'static str, points: usize, limits: &Limits) -> Result<(), InvalidRequest> {
    if points > limits.max_points {
        return Err(InvalidRequest::TooManyPoints {
            field,
            points,
            max: limits.max_points,
        });
    }
    Ok(())
}

fn check_size(
    operation: &'static str,
    message: &impl prost::Message,
    limits: &Limits,
) -> Result<(), InvalidRequest> {
    let bytes = message.encoded_len();
    if bytes > limits.max_bytes {
        return Err(InvalidRequest::TooLarge {
            operation,
            bytes,
            max: limits.max_bytes,
        });
    }
    Ok(())
}

fn check_limit(field: &'static str, limit: u64) -> Result<(), InvalidRequest> {
    if limit == 0 {
        return Err(InvalidRequest::ZeroLimit { field });
    }
    Ok(())
}

fn check_search(request: &SearchPoints) -> Result<(), InvalidRequest> {
    check_dense("`vector`", &request.vector)?;
    check_limit("limit", request.limit)
}

fn check_query(request: &QueryPoints) -> Result<(), InvalidRequest> {
    check_query_vector(request.query.as_ref())?;
    for prefetch in &request.prefetch {
        check_query_vector(prefetch.query.as_ref())?;
    }
    match request.limit {
        Some(limit) => check_limit("limit", limit),
        None => Ok(()),
    }
}

fn check_query_vector(query: Option<&Query>) -> Result<(), InvalidRequest> {
    if let Some(Query {
        variant:
            Some(query::Variant::Nearest(VectorInput {
                variant: Some(input),
            })),
    }) = query
    {
        let location = "`query` nearest vector";
        match input {
            vector_input::Variant::Dense(dense) => check_dense(location, &dense.data)?,
            vector_input::Variant::Sparse(sparse) => {
                check_sparse(location, &sparse.indices, &sparse.values)?
            }
            vector_input::Variant::MultiDense(multi) => {
                if multi.vectors.is_empty() {
                    return Err(InvalidRequest::EmptyVector {
                        location: location.to_owned(),
                    });
                }
                for dense in &multi.vectors {
                    check_dense(location, &dense.data)?;
                }
            }
            vector_input::Variant::Id(id) => check_id("query nearest id", id)?,
            _ => {}
        }
    }
    Ok(())
}

fn check_points(points: &[PointStruct]) -> Result<(), InvalidRequest> {
    for (index, point) in points.iter().enumerate() {
        let Some(id) = &point.id else {
            return Err(InvalidRequest::MissingPointId {
                field: "points",
                index,
            });
        };
        check_id("point id", id)?;
        check_vectors(index, id, point.vectors.as_ref())?;
    }
    Ok(())
}

fn check_point_vectors(points: &[PointVectors]) -> Result<(), InvalidRequest> {
    for (index, point) in points.iter().enumerate() {
        let Some(id) = &point.id else {
            return Err(InvalidRequest::MissingPointId {
                field: "points",
                index,
            });
        };
        check_id("point id", id)?;
        check_vectors(index, id, point.vectors.as_ref())?;
    }
    Ok(())
}

fn check_vectors(
    index: usize,
    id: &PointId,
    vectors: Option<&Vectors>,
) -> Result<(), InvalidRequest> {
    let where_ = |name: Option<&str>| {
        let id = match &id.point_id_options {
            Some(PointIdOptions::Num(num)) => num.to_string(),
            Some(PointIdOptions::Uuid(uuid)) => uuid.clone(),
            None => "?".to_owned(),
        };
        match name {
            Some(name) => format!("`points[{index}]` (id {id}) vector `{name}`"),
            None => format!("`points[{index}]` (id {id}) vector"),
        }
    };
    match vectors.and_then(|v| v.vectors_options.as_ref()) {
        Some(VectorsOptions::Vector(vector)) => check_vector(vector, || where_(None)),
        Some(VectorsOptions::Vectors(named)) => named
            .vectors
            .iter()
            .try_for_each(|(name, vector)| check_vector(vector, || where_(Some(name)))),
        None => Ok(()),
    }
}

/// Checks a point's vector; `location` is only built when there is something to report.
#[allow(deprecated)] // `data` is Qdrant's older encoding of dense vectors, still accepted.
fn check_vector(vector: &Vector, location: impl Fn() -> String) -> Result<(), InvalidRequest> {
    let with_location = |error: InvalidRequest| relocate(error, location());
    match &vector.vector {
        Some(vector::Vector::Dense(dense)) => check_dense("", &dense.data).map_err(with_location),
        Some(vector::Vector::Sparse(sparse)) => {
            check_sparse("", &sparse.indices, &sparse.values).map_err(with_location)
        }
        Some(vector::Vector::MultiDense(multi)) => {
            if multi.vectors.is_empty() {
                return Err(with_location(InvalidRequest::EmptyVector {
                    location: String::new(),
                }));
            }
            multi
                .vectors
                .iter()
                .try_for_each(|dense| check_dense("", &dense.data))
                .map_err(with_location)
        }
        // Documents, images and objects are embedded by the server.
        Some(_) => Ok(()),
        None => match &vector.indices {
            Some(indices) => check_sparse("", &indices.data, &vector.data).map_err(with_location),
            None => check_dense("", &vector.data).map_err(with_location),
        },
    }
}

fn relocate(error: InvalidRequest, location: String) -> InvalidRequest {
    match error {
        InvalidRequest::EmptyVector { .. } => InvalidRequest::EmptyVector { location },
        InvalidRequest::NonFiniteVector { index, value, .. } => InvalidRequest::NonFiniteVector {
            location,
            index,
            value,
        },
        InvalidRequest::SparseLengthMismatch {
            indices, values, ..
        } => InvalidRequest::SparseLengthMismatch {
            location,
            indices,
            values,
        },
        other => other,
    }
}

fn check_dense(location: &str, data: &[f32]) -> Result<(), InvalidRequest> {
    if data.is_empty() {
        return Err(InvalidRequest::EmptyVector {
            location: location.to_owned(),
        });
    }
    check_finite(location, data)
}

fn check_finite(location: &str, data: &[f32]) -> Result<(), InvalidRequest> {
    match data.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(index) => Err(InvalidRequest::NonFiniteVector {
            location: location.to_owned(),
            index,
            value: data[index],
        }),
    }
}

fn check_sparse(location: &str, indices: &[u32], values: &[f32]) -> Result<(), InvalidRequest> {
    if indices.len() != values.len() {
        return Err(InvalidRequest::SparseLengthMismatch {
            location: location.to_owned(),
            indices: indices.len(),
            values: values.len(),
        });
    }
    // An empty sparse vector is valid: it matches nothing.
    check_finite(location, values)
}

fn check_selector(selector: Option<&PointsSelector>) -> Result<(), InvalidRequest> {
    match selector.and_then(|s| s.points_selector_one_of.as_ref()) {
        Some(PointsSelectorOneOf::Points(list)) => check_ids("points", &list.ids),
        _ => Ok(()),
    }
}

fn check_ids(field: &'static str, ids: &[PointId]) -> Result<(), InvalidRequest> {
    ids.iter().try_for_each(|id| check_id(field, id))
}

fn check_id(field: &'static str, id: &PointId) -> Result<(), InvalidRequest> {
    match &id.point_id_options {
        Some(PointIdOptions::Uuid(value)) => match uuid::Uuid::try_parse(value) {
            Ok(_) => Ok(()),
            Err(error) => Err(InvalidRequest::MalformedUuid {
                field,
                value: value.clone(),
                reason: error.to_string(),
            }),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qdrant_client::qdrant::{
        DeletePointsBuilder, GetPointsBuilder, NamedVectors, PointsIdsList, QueryPointsBuilder,
        ScrollPointsBuilder, SearchPointsBuilder, UpsertPointsBuilder,
    };
    use qdrant_tower_layers::ErrorKind;

    fn invalid(request: impl Into<VectorRequest>) -> InvalidRequest {
        let error = request
            .into()
            .validate(&Limits::default())
            .expect_err("must be rejected");
        assert_eq!(error.kind(), ErrorKind::InvalidRequest);
        assert!(!error.maybe_sent(), "validation happens before sending");
        error
            .invalid_request()
            .cloned()
            .expect("carries the reason")
    }

    fn point(id: impl Into<PointId>, vector: Vec<f32>) -> PointStruct {
        PointStruct::new(id, vector, [("k", "v".into())])
    }

    #[test]
    fn empty_collection_name_is_named() {
        let error = VectorRequest::from(SearchPointsBuilder::new("", vec![1.0], 1))
            .validate(&Limits::default())
            .unwrap_err();
        assert_eq!(
            error.invalid_request(),
            Some(&InvalidRequest::EmptyCollectionName {
                field: "collection_name"
            })
        );
    }

    #[test]
    fn vectors_must_be_non_empty_and_finite() {
        assert_eq!(
            invalid(SearchPointsBuilder::new("c", vec![], 1)),
            InvalidRequest::EmptyVector {
                location: "`vector`".into()
            }
        );
        assert_eq!(
            invalid(UpsertPointsBuilder::new(
                "c",
                vec![point(1, vec![1.0]), point(7, vec![0.0, f32::INFINITY])]
            )),
            InvalidRequest::NonFiniteVector {
                location: "`points[1]` (id 7) vector".into(),
                index: 1,
                value: f32::INFINITY
            }
        );
        let named = PointStruct::new(
            3,
            NamedVectors::default().add_vector("text", vec![f32::NAN]),
            [("k", "v".into())],
        );
        let why = invalid(UpsertPointsBuilder::new("c", vec![named]));
        assert!(
            why.to_string()
                .contains("`points[0]` (id 3) vector `text` has non-finite component NaN"),
            "{why}"
        );
        assert_eq!(
            invalid(QueryPointsBuilder::new("c").query(vec![f32::NEG_INFINITY])),
            InvalidRequest::NonFiniteVector {
                location: "`query` nearest vector".into(),
                index: 0,
                value: f32::NEG_INFINITY
            }
        );
    }

    #[test]
    fn zero_limits_are_rejected() {
        assert_eq!(
            invalid(SearchPointsBuilder::new("c", vec![1.0], 0)),
            InvalidRequest::ZeroLimit { field: "limit" }
        );
        assert_eq!(
            invalid(ScrollPointsBuilder::new("c").limit(0)),
            InvalidRequest::ZeroLimit { field: "limit" }
        );
        assert_eq!(
            invalid(QueryPointsBuilder::new("c").limit(0)),
            InvalidRequest::ZeroLimit { field: "limit" }
        );
    }

    #[test]
    fn malformed_uuids_are_named() {
        let why = invalid(GetPointsBuilder::new(
            "c",
            vec![PointId::from("not-a-uuid")],
        ));
        assert!(matches!(
            &why,
            InvalidRequest::MalformedUuid { field: "ids", value, .. } if value == "not-a-uuid"
        ));
        let why = invalid(DeletePointsBuilder::new("c").points(PointsIdsList {
            ids: vec![PointId::from("1234")],
        }));
        assert!(matches!(
            why,
            InvalidRequest::MalformedUuid {
                field: "points",
                ..
            }
        ));
        assert!(
            VectorRequest::from(GetPointsBuilder::new(
                "c",
                vec![
                    PointId::from("5c56c793-69f3-4fbf-87e6-c4bf54c28c26"),
                    3.into()
                ]
            ))
            .validate(&Limits::default())
            .is_ok()
        );
    }

    #[test]
    fn batches_over_the_limits_are_rejected() {
        let points: Vec<_> = (0..5).map(|i| point(i, vec![1.0; 64])).collect();
        let request = VectorRequest::from(UpsertPointsBuilder::new("c", points));
        let small = Limits {
            max_points: 4,
            ..Limits::default()
        };
        let error = request.validate(&small).unwrap_err();
        assert_eq!(
            error.invalid_request(),
            Some(&InvalidRequest::TooManyPoints {
                field: "points",
                points: 5,
                max: 4
            })
        );
        let tiny = Limits {
            max_bytes: 1024,
            ..Limits::default()
        };
        assert!(matches!(
            request.validate(&tiny).unwrap_err().invalid_request(),
            Some(InvalidRequest::TooLarge { operation: "upsert", max: 1024, bytes }) if *bytes > 1024
        ));
        assert!(request.validate(&Limits::default()).is_ok());
    }
}
