//! Protobuf (qdrant-client's generated messages) ↔ qdrant-edge conversions for ids, payloads,
//! vectors, selectors and results. Filters live in `filter.rs`, collection configs in
//! `collections.rs`.

use std::collections::HashMap;

use qdrant_client::qdrant as pb;
use qdrant_edge::external::uuid::Uuid;
use qdrant_edge::{
    EdgeConfig, JsonPath, OperationError, Payload, PayloadSelector, PayloadSelectorExclude,
    PayloadSelectorInclude, PointId, Record, ScoredPoint, SparseVector, VectorInternal,
    VectorPersisted, VectorStructInternal, VectorStructPersisted, WithPayloadInterface, WithVector,
};
use serde_json::{Map, Number, Value as Json};

use crate::storage::StorageError;

// ---------------------------------------------------------------------------------------------
// Point ids

pub(crate) fn point_id(id: pb::PointId) -> Result<PointId, StorageError> {
    match id.point_id_options {
        Some(pb::point_id::PointIdOptions::Num(num)) => Ok(PointId::NumId(num)),
        Some(pb::point_id::PointIdOptions::Uuid(text)) => Uuid::parse_str(&text)
            .map(PointId::Uuid)
            .map_err(|_| StorageError::invalid_argument(format!("Unable to parse UUID: {text}"))),
        None => Err(StorageError::invalid_argument("Empty point id")),
    }
}

pub(crate) fn point_ids(ids: Vec<pb::PointId>) -> Result<Vec<PointId>, StorageError> {
    ids.into_iter().map(point_id).collect()
}

pub(crate) fn point_id_to_pb(id: PointId) -> pb::PointId {
    let options = match id {
        PointId::NumId(num) => pb::point_id::PointIdOptions::Num(num),
        PointId::Uuid(uuid) => pb::point_id::PointIdOptions::Uuid(uuid.to_string()),
    };
    pb::PointId {
        point_id_options: Some(options),
    }
}

// ---------------------------------------------------------------------------------------------
// Payload values

/// A protobuf `Value` as JSON. Non-finite doubles have no JSON form and become `null`.
pub(crate) fn json_from_pb(value: pb::Value) -> Json {
    use pb::value::Kind;
    match value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(flag)) => Json::Bool(flag),
        Some(Kind::IntegerValue(int)) => Json::Number(int.into()),
        Some(Kind::DoubleValue(double)) => {
            Number::from_f64(double).map_or(Json::Null, Json::Number)
        }
        Some(Kind::StringValue(text)) => Json::String(text),
        Some(Kind::ListValue(list)) => {
            Json::Array(list.values.into_iter().map(json_from_pb).collect())
        }
        Some(Kind::StructValue(object)) => Json::Object(json_object_from_pb(object.fields)),
    }
}

pub(crate) fn json_object_from_pb(fields: HashMap<String, pb::Value>) -> Map<String, Json> {
    fields
        .into_iter()
        .map(|(key, value)| (key, json_from_pb(value)))
        .collect()
}

pub(crate) fn payload_from_pb(fields: HashMap<String, pb::Value>) -> Payload {
    Payload(json_object_from_pb(fields))
}

/// JSON as a protobuf `Value`: integers that fit `i64` stay integers, as Qdrant sends them.
pub(crate) fn json_to_pb(value: Json) -> pb::Value {
    use pb::value::Kind;
    let kind = match value {
        Json::Null => Kind::NullValue(pb::NullValue::NullValue.into()),
        Json::Bool(flag) => Kind::BoolValue(flag),
        Json::Number(number) => match number.as_i64() {
            Some(int) => Kind::IntegerValue(int),
            None => Kind::DoubleValue(number.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(text) => Kind::StringValue(text),
        Json::Array(values) => Kind::ListValue(pb::ListValue {
            values: values.into_iter().map(json_to_pb).collect(),
        }),
        Json::Object(object) => Kind::StructValue(pb::Struct {
            fields: json_object_to_pb(object),
        }),
    };
    pb::Value { kind: Some(kind) }
}

pub(crate) fn json_object_to_pb(object: Map<String, Json>) -> HashMap<String, pb::Value> {
    object
        .into_iter()
        .map(|(key, value)| (key, json_to_pb(value)))
        .collect()
}

fn payload_to_pb(payload: Option<Payload>) -> HashMap<String, pb::Value> {
    payload.map(|p| json_object_to_pb(p.0)).unwrap_or_default()
}

/// A payload key such as `a.b[].c`.
pub(crate) fn json_path(key: &str) -> Result<JsonPath, StorageError> {
    key.parse()
        .map_err(|()| StorageError::invalid_argument(format!("Invalid json path: '{key}'")))
}

/// A memory placement enum value; unknown values mean "not set".
pub(crate) fn memory_from_pb(memory: Option<i32>) -> Option<qdrant_edge::Memory> {
    match pb::Memory::try_from(memory?) {
        Ok(pb::Memory::Cold) => Some(qdrant_edge::Memory::Cold),
        Ok(pb::Memory::Cached) => Some(qdrant_edge::Memory::Cached),
        Ok(pb::Memory::Pinned) => Some(qdrant_edge::Memory::Pinned),
        Ok(pb::Memory::Unknown) | Err(_) => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Vectors in

/// The vectors of an upserted point.
pub(crate) fn vectors_from_pb(vectors: pb::Vectors) -> Result<VectorStructPersisted, StorageError> {
    match vectors.vectors_options {
        Some(pb::vectors::VectorsOptions::Vector(vector)) => match vector_from_pb(vector)? {
            VectorPersisted::Dense(dense) => Ok(VectorStructPersisted::Single(dense)),
            VectorPersisted::MultiDense(multi) => Ok(VectorStructPersisted::MultiDense(multi)),
            // A sparse vector always has a name; this fails in validation as an unknown name.
            sparse @ VectorPersisted::Sparse(_) => Ok(VectorStructPersisted::Named(
                [(String::new(), sparse)].into_iter().collect(),
            )),
        },
        Some(pb::vectors::VectorsOptions::Vectors(named)) => named
            .vectors
            .into_iter()
            .map(|(name, vector)| Ok((name, vector_from_pb(vector)?)))
            .collect::<Result<_, StorageError>>()
            .map(VectorStructPersisted::Named),
        None => Ok(VectorStructPersisted::Named(HashMap::new())),
    }
}

/// One vector, in the current (`vector` oneof) or the pre-1.16 (`data`/`indices`/
/// `vectors_count`) encoding.
#[allow(deprecated)]
pub(crate) fn vector_from_pb(vector: pb::Vector) -> Result<VectorPersisted, StorageError> {
    use pb::vector::Vector as V;
    match vector.vector {
        Some(V::Dense(dense)) => Ok(VectorPersisted::Dense(dense.data)),
        Some(V::Sparse(sparse)) => sparse_from_parts(sparse.indices, sparse.values),
        Some(V::MultiDense(multi)) => multi_from_rows(multi.vectors.into_iter().map(|v| v.data)),
        Some(V::Document(_) | V::Image(_) | V::Object(_)) => Err(StorageError::invalid_argument(
            "qdrant-tower-testkit has no inference: send vectors, not documents, images or objects",
        )),
        None => {
            if let Some(indices) = vector.indices {
                sparse_from_parts(indices.data, vector.data)
            } else if let Some(count) = vector.vectors_count {
                let count = count as usize;
                if count == 0 || !vector.data.len().is_multiple_of(count) {
                    return Err(StorageError::bad_input(format!(
                        "Malformed multi-vector: {} values do not split into {count} vectors",
                        vector.data.len()
                    )));
                }
                let dim = vector.data.len() / count;
                multi_from_rows(vector.data.chunks(dim).map(<[f32]>::to_vec))
            } else {
                Ok(VectorPersisted::Dense(vector.data))
            }
        }
    }
}

fn sparse_from_parts(indices: Vec<u32>, values: Vec<f32>) -> Result<VectorPersisted, StorageError> {
    SparseVector::new(indices, values)
        .map(VectorPersisted::Sparse)
        .map_err(|err| StorageError::bad_input(format!("Invalid sparse vector: {err}")))
}

fn multi_from_rows(rows: impl Iterator<Item = Vec<f32>>) -> Result<VectorPersisted, StorageError> {
    let rows: Vec<Vec<f32>> = rows.collect();
    if rows.is_empty() {
        return Err(StorageError::bad_input("Multi-vector must not be empty"));
    }
    Ok(VectorPersisted::MultiDense(rows))
}

/// A query vector (`VectorInput` of the query API).
pub(crate) fn vector_input_from_pb(input: pb::VectorInput) -> Result<VectorInternal, StorageError> {
    use pb::vector_input::Variant;
    match input.variant {
        Some(Variant::Dense(dense)) => Ok(VectorInternal::Dense(dense.data)),
        Some(Variant::Sparse(sparse)) => SparseVector::new(sparse.indices, sparse.values)
            .map(VectorInternal::Sparse)
            .map_err(|err| StorageError::bad_input(format!("Invalid sparse vector: {err}"))),
        Some(Variant::MultiDense(multi)) => {
            let rows: Vec<Vec<f32>> = multi.vectors.into_iter().map(|v| v.data).collect();
            qdrant_edge::TypedMultiDenseVector::try_from(rows)
                .map(VectorInternal::MultiDense)
                .map_err(StorageError::from)
        }
        Some(Variant::Id(_)) => Err(StorageError::unimplemented(
            "qdrant-tower-testkit does not implement point ids as query vectors yet",
        )),
        Some(Variant::Document(_) | Variant::Image(_) | Variant::Object(_)) => {
            Err(StorageError::invalid_argument(
                "qdrant-tower-testkit has no inference: query with vectors, not documents, images or objects",
            ))
        }
        None => Err(StorageError::invalid_argument("Query vector is missing")),
    }
}

/// Checks upserted vectors against the collection's vector config, so that a bad point fails the
/// whole request before anything reaches the WAL (Qdrant validates the same way up front).
pub(crate) fn check_point_vectors(
    config: &EdgeConfig,
    vectors: &VectorStructPersisted,
) -> Result<(), StorageError> {
    match vectors {
        VectorStructPersisted::Single(dense) => check_dense(config, "", dense.len()),
        VectorStructPersisted::MultiDense(rows) => check_multi(config, "", rows),
        VectorStructPersisted::Named(named) => {
            named.iter().try_for_each(|(name, vector)| match vector {
                VectorPersisted::Dense(dense) => check_dense(config, name, dense.len()),
                VectorPersisted::MultiDense(rows) => check_multi(config, name, rows),
                VectorPersisted::Sparse(_) => check_sparse(config, name),
            })
        }
    }
}

/// Checks a query vector against the vector it searches.
pub(crate) fn check_query_vector(
    config: &EdgeConfig,
    name: &str,
    vector: &VectorInternal,
) -> Result<(), StorageError> {
    match vector {
        VectorInternal::Dense(dense) => check_dense(config, name, dense.len()),
        VectorInternal::MultiDense(multi) => {
            let params = dense_params(config, name)?;
            if multi.dim != params.size {
                return Err(wrong_dimension(params.size, multi.dim));
            }
            Ok(())
        }
        VectorInternal::Sparse(_) => check_sparse(config, name),
    }
}

fn dense_params<'a>(
    config: &'a EdgeConfig,
    name: &str,
) -> Result<&'a qdrant_edge::EdgeVectorParams, StorageError> {
    match config.vectors.get(name) {
        Some(params) => Ok(params),
        None if config.sparse_vectors.contains_key(name) => {
            Err(StorageError::from(OperationError::WrongSparse))
        }
        None => Err(OperationError::vector_name_not_exists(name).into()),
    }
}

fn check_dense(config: &EdgeConfig, name: &str, len: usize) -> Result<(), StorageError> {
    let params = dense_params(config, name)?;
    if params.multivector_config.is_some() {
        return Err(StorageError::from(OperationError::WrongMulti));
    }
    if len != params.size {
        return Err(wrong_dimension(params.size, len));
    }
    Ok(())
}

fn check_multi(config: &EdgeConfig, name: &str, rows: &[Vec<f32>]) -> Result<(), StorageError> {
    let params = dense_params(config, name)?;
    if params.multivector_config.is_none() {
        return Err(StorageError::from(OperationError::WrongMulti));
    }
    match rows.iter().find(|row| row.len() != params.size) {
        Some(row) => Err(wrong_dimension(params.size, row.len())),
        None => Ok(()),
    }
}

fn check_sparse(config: &EdgeConfig, name: &str) -> Result<(), StorageError> {
    if config.sparse_vectors.contains_key(name) {
        Ok(())
    } else if config.vectors.contains_key(name) {
        Err(StorageError::from(OperationError::WrongSparse))
    } else {
        Err(OperationError::vector_name_not_exists(name).into())
    }
}

fn wrong_dimension(expected_dim: usize, received_dim: usize) -> StorageError {
    OperationError::WrongVectorDimension {
        expected_dim,
        received_dim,
    }
    .into()
}

// ---------------------------------------------------------------------------------------------
// Selectors

/// `with_payload`; `None` takes the endpoint's default (`true` for scroll, `false` for get,
/// search and query, as in Qdrant).
pub(crate) fn with_payload(
    selector: Option<pb::WithPayloadSelector>,
    default: bool,
) -> Result<WithPayloadInterface, StorageError> {
    use pb::with_payload_selector::SelectorOptions;
    let Some(selector) = selector else {
        return Ok(WithPayloadInterface::Bool(default));
    };
    match selector.selector_options {
        None => Err(StorageError::invalid_argument("No PayloadSelector")),
        Some(SelectorOptions::Enable(enable)) => Ok(WithPayloadInterface::Bool(enable)),
        Some(SelectorOptions::Include(include)) => {
            let keys = include
                .fields
                .iter()
                .map(|key| json_path(key))
                .collect::<Result<_, _>>()?;
            Ok(WithPayloadInterface::Selector(PayloadSelector::Include(
                PayloadSelectorInclude::new(keys),
            )))
        }
        Some(SelectorOptions::Exclude(exclude)) => {
            let keys = exclude
                .fields
                .iter()
                .map(|key| json_path(key))
                .collect::<Result<_, _>>()?;
            Ok(WithPayloadInterface::Selector(PayloadSelector::Exclude(
                PayloadSelectorExclude::new(keys),
            )))
        }
    }
}

/// `with_vectors`; `None` means no vectors, as in Qdrant.
pub(crate) fn with_vectors(selector: Option<pb::WithVectorsSelector>) -> WithVector {
    use pb::with_vectors_selector::SelectorOptions;
    match selector.and_then(|s| s.selector_options) {
        None => WithVector::Bool(false),
        Some(SelectorOptions::Enable(enable)) => WithVector::Bool(enable),
        Some(SelectorOptions::Include(include)) => WithVector::Selector(include.names),
    }
}

// ---------------------------------------------------------------------------------------------
// Results out

pub(crate) fn scored_point_to_pb(point: ScoredPoint) -> pb::ScoredPoint {
    pb::ScoredPoint {
        id: Some(point_id_to_pb(point.id)),
        payload: payload_to_pb(point.payload),
        score: point.score,
        version: point.version,
        vectors: point.vector.map(vectors_to_pb),
        shard_key: None,
        order_value: point.order_value.map(order_value_to_pb),
    }
}

pub(crate) fn record_to_pb(record: Record) -> pb::RetrievedPoint {
    pb::RetrievedPoint {
        id: Some(point_id_to_pb(record.id)),
        payload: payload_to_pb(record.payload),
        vectors: record.vector.map(vectors_to_pb),
        shard_key: None,
        order_value: record.order_value.map(order_value_to_pb),
    }
}

fn order_value_to_pb(value: qdrant_edge::OrderValue) -> pb::OrderValue {
    let variant = match value {
        qdrant_edge::OrderValue::Int(int) => pb::order_value::Variant::Int(int),
        qdrant_edge::OrderValue::Float(float) => pb::order_value::Variant::Float(float),
    };
    pb::OrderValue {
        variant: Some(variant),
    }
}

/// A point's vectors; the unnamed default vector is sent as a single vector, as Qdrant does.
fn vectors_to_pb(vectors: VectorStructInternal) -> pb::VectorsOutput {
    use pb::vectors_output::VectorsOptions;
    let options = match vectors {
        VectorStructInternal::Single(dense) => {
            VectorsOptions::Vector(vector_to_pb(VectorInternal::Dense(dense)))
        }
        VectorStructInternal::MultiDense(multi) => {
            VectorsOptions::Vector(vector_to_pb(VectorInternal::MultiDense(multi)))
        }
        VectorStructInternal::Named(mut named) => {
            if named.len() == 1 && named.contains_key("") {
                let vector = named.remove("").expect("checked above");
                VectorsOptions::Vector(vector_to_pb(vector))
            } else {
                VectorsOptions::Vectors(pb::NamedVectorsOutput {
                    vectors: named
                        .into_iter()
                        .map(|(name, vector)| (name, vector_to_pb(vector)))
                        .collect(),
                })
            }
        }
    };
    pb::VectorsOutput {
        vectors_options: Some(options),
    }
}

#[allow(deprecated)]
fn vector_to_pb(vector: VectorInternal) -> pb::VectorOutput {
    use pb::vector_output::Vector as V;
    let vector = match vector {
        VectorInternal::Dense(data) => V::Dense(pb::DenseVector { data }),
        VectorInternal::Sparse(sparse) => V::Sparse(pb::SparseVector {
            values: sparse.values,
            indices: sparse.indices,
        }),
        VectorInternal::MultiDense(multi) => V::MultiDense(pb::MultiDenseVector {
            vectors: multi
                .into_multi_vectors()
                .into_iter()
                .map(|data| pb::DenseVector { data })
                .collect(),
        }),
    };
    pb::VectorOutput {
        data: Vec::new(),
        indices: None,
        vectors_count: None,
        vector: Some(vector),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_payload_round_trips_through_protobuf() {
        let json = serde_json::json!({
            "title": "Dune",
            "year": 1965,
            "rating": 4.5,
            "tags": ["sf", {"deep": [1, null, true]}],
            "meta": {"a": {"b": "c"}},
            "none": null,
            "big": u64::MAX,
        });
        let Json::Object(object) = json.clone() else {
            unreachable!()
        };
        let back = Json::Object(json_object_from_pb(json_object_to_pb(object)));
        // u64::MAX does not fit i64: it travels as a double.
        let mut expected = json;
        expected["big"] = serde_json::json!(u64::MAX as f64);
        assert_eq!(back, expected);
    }

    #[test]
    fn uuid_ids_parse_and_print() {
        let id = pb::PointId {
            point_id_options: Some(pb::point_id::PointIdOptions::Uuid(
                "5c56c793-69f3-4fbf-87e6-c4bf54c28c26".into(),
            )),
        };
        let parsed = point_id(id.clone()).unwrap();
        assert_eq!(point_id_to_pb(parsed), id);
        let bad = pb::PointId {
            point_id_options: Some(pb::point_id::PointIdOptions::Uuid("nope".into())),
        };
        assert!(point_id(bad).is_err());
    }
}
