//! Property tests of request decoding and validation (the short CI version of the `validate`
//! fuzz target, `fuzz/fuzz_targets/validate.rs`):
//! - any bytes, decoded as any operation, give a message or a `DecodeError`, never a panic; a
//!   decoded message validates to `Ok` or to an `InvalidRequest` error;
//! - generated upserts and searches with NaN, infinite and empty vectors, bad and missing ids,
//!   empty collection names, zero and huge limits are rejected exactly when they break a rule,
//!   with the error naming the field (and point) at fault.

mod prop_common;

use prop_common::*;
use proptest::prelude::*;
use qdrant_tower_client::qdrant::{
    PointId, PointStruct, PointsUpdateOperation, Query, QueryPoints, SearchPoints,
    UpdateBatchPoints, UpsertPoints, Vector, VectorInput,
    point_id::PointIdOptions,
    points_update_operation::{Operation, PointStructList},
    query, vector, vector_input,
    vectors::VectorsOptions,
};
use qdrant_tower_client::{InvalidRequest, Limits, VectorError, VectorOp, VectorRequest};
use qdrant_tower_layers::ErrorKind;

/// Validates `op` and checks the error, if any, is a well-formed invalid request.
fn validate(op: VectorOp, limits: &Limits) -> Result<Result<(), VectorError>, TestCaseError> {
    let operation = op.operation();
    let result = VectorRequest::new(op).validate(limits);
    if let Err(error) = &result {
        prop_assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{}", error);
        prop_assert!(error.invalid_request().is_some(), "{error:?}");
        prop_assert!(!error.maybe_sent());
        let text = error.to_string();
        prop_assert!(text.contains(operation), "{text} does not name {operation}");
        prop_assert!(text.contains("invalid_request"), "{text}");
    }
    Ok(result)
}

fn any_operation() -> impl Strategy<Value = &'static str> {
    prop::sample::select(VectorRequest::OPERATIONS.to_vec())
}

/// Messages worth mutating: encodings of generated writes and searches.
fn encoded_message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        upsert().prop_map(|(_, m)| prost::Message::encode_to_vec(&m)),
        search().prop_map(|m| prost::Message::encode_to_vec(&m)),
        query_points().prop_map(|m| prost::Message::encode_to_vec(&m)),
        update_batch().prop_map(|m| prost::Message::encode_to_vec(&m)),
    ]
}

/// A byte string mutated: bytes overwritten, a tail cut, bytes inserted.
fn mutate(mut bytes: Vec<u8>, edits: Vec<(usize, u8, u8)>) -> Vec<u8> {
    for (at, byte, how) in edits {
        if bytes.is_empty() {
            bytes.push(byte);
            continue;
        }
        let at = at % bytes.len();
        match how % 3 {
            0 => bytes[at] = byte,
            1 => bytes.truncate(at),
            _ => bytes.insert(at, byte),
        }
    }
    bytes
}

fn collection_name() -> impl Strategy<Value = String> {
    prop_oneof![6 => Just("docs".to_owned()), 1 => Just(String::new()), 1 => ".{0,6}"]
}

fn upsert() -> impl Strategy<Value = (usize, UpsertPoints)> {
    (
        collection_name(),
        prop::collection::vec(point(), 0..5),
        0usize..6,
    )
        .prop_map(|(collection_name, points, max_points)| {
            (
                max_points,
                UpsertPoints {
                    collection_name,
                    points,
                    ..Default::default()
                },
            )
        })
}

fn limit() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        1u64..100,
        Just(u64::from(u32::MAX)),
        Just(u64::MAX),
        any::<u64>()
    ]
}

fn search() -> impl Strategy<Value = SearchPoints> {
    (
        collection_name(),
        dense(5),
        limit(),
        prop::option::of(filter()),
    )
        .prop_map(|(collection_name, vector, limit, filter)| SearchPoints {
            collection_name,
            vector,
            limit,
            filter,
            ..Default::default()
        })
}

fn query_points() -> impl Strategy<Value = QueryPoints> {
    let input = prop_oneof![
        dense(4).prop_map(VectorInput::new_dense),
        (
            prop::collection::vec(0u32..8, 0..4),
            prop::collection::vec(component(), 0..4)
        )
            .prop_map(|(i, v)| VectorInput::new_sparse(i, v)),
        prop::collection::vec(dense(3), 0..3).prop_map(VectorInput::new_multi),
        point_id().prop_map(VectorInput::new_id),
    ];
    (
        collection_name(),
        prop::option::of(input),
        prop::option::of(limit()),
    )
        .prop_map(|(collection_name, input, limit)| QueryPoints {
            collection_name,
            query: input.map(Query::new_nearest),
            limit,
            ..Default::default()
        })
}

fn update_batch() -> impl Strategy<Value = UpdateBatchPoints> {
    (
        collection_name(),
        prop::collection::vec(prop::collection::vec(point(), 0..3), 0..3),
    )
        .prop_map(|(collection_name, lists)| UpdateBatchPoints {
            collection_name,
            operations: lists
                .into_iter()
                .map(|points| PointsUpdateOperation {
                    operation: Some(Operation::Upsert(PointStructList {
                        points,
                        ..Default::default()
                    })),
                })
                .collect(),
            ..Default::default()
        })
}

/// What validation must say: the `InvalidRequest` variant and words its text must contain.
#[derive(Debug)]
struct Expected {
    variant: &'static str,
    words: Vec<String>,
}

fn expect(variant: &'static str, words: &[&str]) -> Option<Expected> {
    Some(Expected {
        variant,
        words: words.iter().map(|w| (*w).to_owned()).collect(),
    })
}

fn variant(invalid: &InvalidRequest) -> &'static str {
    match invalid {
        InvalidRequest::EmptyCollectionName { .. } => "EmptyCollectionName",
        InvalidRequest::EmptyVector { .. } => "EmptyVector",
        InvalidRequest::NonFiniteVector { .. } => "NonFiniteVector",
        InvalidRequest::SparseLengthMismatch { .. } => "SparseLengthMismatch",
        InvalidRequest::ZeroLimit { .. } => "ZeroLimit",
        InvalidRequest::MalformedUuid { .. } => "MalformedUuid",
        InvalidRequest::MissingPointId { .. } => "MissingPointId",
        InvalidRequest::TooManyPoints { .. } => "TooManyPoints",
        InvalidRequest::TooLarge { .. } => "TooLarge",
        _ => "other",
    }
}

/// The first rule a dense vector breaks.
fn dense_problem(data: &[f32]) -> Option<(&'static str, String)> {
    if data.is_empty() {
        return Some(("EmptyVector", "empty vector".into()));
    }
    let index = data.iter().position(|x| !x.is_finite())?;
    Some(("NonFiniteVector", format!("at index {index}")))
}

fn sparse_problem(indices: usize, values: &[f32]) -> Option<(&'static str, String)> {
    if indices != values.len() {
        return Some((
            "SparseLengthMismatch",
            format!("{indices} indices but {} values", values.len()),
        ));
    }
    let index = values.iter().position(|x| !x.is_finite())?;
    Some(("NonFiniteVector", format!("at index {index}")))
}

/// The first rule one point vector breaks (documents and the like are the server's).
#[allow(deprecated)]
fn vector_problem(v: &Vector) -> Option<(&'static str, String)> {
    match &v.vector {
        Some(vector::Vector::Dense(d)) => dense_problem(&d.data),
        Some(vector::Vector::Sparse(s)) => sparse_problem(s.indices.len(), &s.values),
        Some(vector::Vector::MultiDense(m)) if m.vectors.is_empty() => {
            Some(("EmptyVector", "empty vector".into()))
        }
        Some(vector::Vector::MultiDense(m)) => {
            m.vectors.iter().find_map(|d| dense_problem(&d.data))
        }
        Some(_) => None,
        None => match &v.indices {
            Some(indices) => sparse_problem(indices.data.len(), &v.data),
            None => dense_problem(&v.data),
        },
    }
}

fn id_text(id: &PointId) -> String {
    match &id.point_id_options {
        Some(PointIdOptions::Num(n)) => n.to_string(),
        Some(PointIdOptions::Uuid(text)) => text.clone(),
        None => "?".into(),
    }
}

/// What validating this upsert must answer, by the documented rules, in their order.
fn upsert_expectation(message: &UpsertPoints, limits: &Limits) -> Option<Expected> {
    if message.collection_name.is_empty() {
        return expect("EmptyCollectionName", &["`collection_name`"]);
    }
    if message.points.len() > limits.max_points {
        let count = message.points.len().to_string();
        return expect("TooManyPoints", &["`points`", &count]);
    }
    for (index, point) in message.points.iter().enumerate() {
        if let Some(expected) = point_expectation(index, point) {
            return Some(expected);
        }
    }
    None
}

fn point_expectation(index: usize, point: &PointStruct) -> Option<Expected> {
    let Some(id) = &point.id else {
        return expect("MissingPointId", &[&format!("point #{index} in `points`")]);
    };
    if let Some(PointIdOptions::Uuid(text)) = &id.point_id_options
        && uuid::Uuid::try_parse(text).is_err()
    {
        return expect("MalformedUuid", &["point id", text]);
    }
    let at = format!("`points[{index}]` (id {})", id_text(id));
    match point
        .vectors
        .as_ref()
        .and_then(|v| v.vectors_options.as_ref())
    {
        Some(VectorsOptions::Vector(v)) => {
            let (variant, words) = vector_problem(v)?;
            expect(variant, &[&at, &words])
        }
        Some(VectorsOptions::Vectors(named)) => named.vectors.iter().find_map(|(name, v)| {
            let (variant, words) = vector_problem(v)?;
            expect(variant, &[&at, &format!("vector `{name}`"), &words])
        }),
        None => None,
    }
}

fn search_expectation(message: &SearchPoints) -> Option<Expected> {
    if message.collection_name.is_empty() {
        return expect("EmptyCollectionName", &["`collection_name`"]);
    }
    if let Some((variant, words)) = dense_problem(&message.vector) {
        return expect(variant, &["`vector`", &words]);
    }
    if message.limit == 0 {
        return expect("ZeroLimit", &["`limit`"]);
    }
    None
}

fn check_expected(
    result: Result<(), VectorError>,
    expected: Option<Expected>,
) -> Result<(), TestCaseError> {
    match (result, expected) {
        (Ok(()), None) => Ok(()),
        (Ok(()), Some(expected)) => Err(TestCaseError::fail(format!(
            "accepted, but expected {expected:?}"
        ))),
        (Err(error), None) => Err(TestCaseError::fail(format!("rejected: {error}"))),
        (Err(error), Some(expected)) => {
            let invalid = error.invalid_request().expect("checked by validate()");
            prop_assert_eq!(variant(invalid), expected.variant, "{}", error);
            let text = error.to_string();
            for word in &expected.words {
                prop_assert!(text.contains(word.as_str()), "{text:?} lacks {word:?}");
            }
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// Any bytes as any operation: a message or a `DecodeError`; a message validates to `Ok`
    /// or an invalid request; decoding its own encoding gives it back.
    #[test]
    fn any_bytes_decode_and_validate_without_panic(
        op in any_operation(),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        match VectorOp::decode(op, &bytes) {
            Ok(message) => {
                prop_assert_eq!(message.operation(), op);
                let again = VectorOp::decode(op, &message.encode_to_vec());
                prop_assert!(again.is_ok(), "its own encoding does not decode: {again:?}");
                let _ = validate(message, &Limits::default())?;
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }

    /// Real messages with a few bytes changed, decoded as any operation.
    #[test]
    fn mutated_messages_decode_and_validate_without_panic(
        op in any_operation(),
        bytes in encoded_message(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..4),
        max_points in 0usize..4,
    ) {
        if let Ok(message) = VectorOp::decode(op, &mutate(bytes, edits)) {
            let _ = validate(message.clone(), &Limits::default())?;
            let _ = validate(message, &Limits { max_points, max_bytes: 64 })?;
        }
    }

    /// Upserts of generated points are rejected exactly when a rule is broken, naming it.
    #[test]
    fn upserts_are_rejected_exactly_when_invalid((max_points, message) in upsert()) {
        let limits = Limits { max_points, ..Limits::default() };
        let expected = upsert_expectation(&message, &limits);
        let result = validate(VectorOp::Upsert(message), &limits)?;
        check_expected(result, expected)?;
    }

    /// Searches: NaN, infinite or empty vectors, zero limits and empty names are rejected
    /// naming the field; any positive limit, however large, is the server's to judge.
    #[test]
    fn searches_are_rejected_exactly_when_invalid(message in search()) {
        let expected = search_expectation(&message);
        let result = validate(VectorOp::Search(message), &Limits::default())?;
        check_expected(result, expected)?;
    }

    /// Queries and update batches validate without panic to `Ok` or an invalid request.
    #[test]
    fn queries_and_batches_validate(query in query_points(), batch in update_batch()) {
        let empty = query.collection_name.is_empty();
        let nearest_problem = match query.query.as_ref().and_then(|q| q.variant.as_ref()) {
            Some(query::Variant::Nearest(VectorInput { variant: Some(vector_input::Variant::Dense(d)) })) => {
                dense_problem(&d.data).is_some()
            }
            _ => false,
        };
        let zero = query.limit == Some(0);
        let result = validate(VectorOp::Query(query), &Limits::default())?;
        if empty || nearest_problem || zero {
            prop_assert!(result.is_err());
        }
        let _ = validate(VectorOp::UpdateBatch(batch), &Limits::default())?;
    }
}

/// Too many points is refused before anything else about them is looked at, naming the list.
#[test]
fn too_many_points_names_the_list() {
    let message = UpsertPoints {
        collection_name: "docs".into(),
        points: vec![PointStruct::default(); 3],
        ..Default::default()
    };
    let limits = Limits {
        max_points: 2,
        ..Limits::default()
    };
    let error = VectorRequest::from(message).validate(&limits).unwrap_err();
    assert!(
        matches!(
            error.invalid_request(),
            Some(InvalidRequest::TooManyPoints {
                points: 3,
                max: 2,
                ..
            })
        ),
        "{error}"
    );
}
