//! Generators of structurally arbitrary qdrant-client messages for the property tests
//! (`prop_validate.rs`, `prop_testkit.rs`): ids that are numbers, UUIDs or strings that are
//! not UUIDs, vectors of any shape with NaN and infinities, payloads of any JSON-like value,
//! and filters of every condition kind with out-of-range numbers.

#![allow(dead_code)] // Each test file uses its own share.

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use qdrant_tower_client::qdrant::{
    Condition, DatetimeRange, DenseVector, FieldCondition, Filter, GeoBoundingBox, GeoLineString,
    GeoPoint, GeoPolygon, GeoRadius, MinShould, MultiDenseVector, NestedCondition, PointId,
    PointStruct, Range, SliceCondition, ValuesCount, Vector, Vectors, condition,
    r#match::MatchValue, point_id::PointIdOptions, value::Kind, vectors::VectorsOptions,
};
use qdrant_tower_client::qdrant::{Match, NamedVectors, Value};

/// `n` cases, or `PROPTEST_CASES` when set (for a longer run by hand).
pub fn cases(n: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    ProptestConfig {
        // Findings are kept as named regression tests, not as `*.proptest-regressions` files.
        failure_persistence: None,
        ..ProptestConfig::with_cases(n)
    }
}

/// A vector component: ordinary, zero, extreme, NaN or infinite.
pub fn component() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => -1.0f32..1.0,
        1 => Just(0.0f32),
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(f32::MAX),
        1 => Just(f32::MIN_POSITIVE / 2.0),
        1 => any::<f32>(),
    ]
}

/// Finite components only, mostly.
pub fn finite_component() -> impl Strategy<Value = f32> {
    prop_oneof![8 => -1.0f32..1.0, 1 => Just(0.0f32), 1 => Just(f32::MAX)]
}

/// A dense vector of 0 to `max` components, often `max - 1` finite ones.
pub fn dense(max: usize) -> impl Strategy<Value = Vec<f32>> {
    prop_oneof![
        prop::collection::vec(component(), 0..=max),
        prop::collection::vec(finite_component(), max.saturating_sub(1)),
    ]
}

/// Strings that are not UUIDs (but look like one, or nearly), and valid UUIDs in odd forms.
pub fn uuid_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).simple().to_string()),
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).urn().to_string()),
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).braced().to_string()),
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string().to_uppercase()),
        Just(String::new()),
        Just("not-a-uuid".to_owned()),
        Just("00000000-0000-0000-0000-00000000000".to_owned()),
        Just("00000000-0000-0000-0000-0000000000000".to_owned()),
        Just("g0000000-0000-0000-0000-000000000000".to_owned()),
        "[0-9a-f-]{30,40}",
        ".{0,40}",
    ]
}

/// A point id: a number, a UUID string (valid or not), or no id at all.
pub fn point_id() -> impl Strategy<Value = PointId> {
    prop_oneof![
        8 => prop_oneof![0u64..20, any::<u64>()].prop_map(|n| PointId {
            point_id_options: Some(PointIdOptions::Num(n)),
        }),
        3 => uuid_text().prop_map(|text| PointId {
            point_id_options: Some(PointIdOptions::Uuid(text)),
        }),
        1 => Just(PointId { point_id_options: None }),
    ]
}

/// One vector of any kind and shape: dense, sparse (indices and values of either length,
/// repeated indices), multi-dense (no rows, ragged rows), the old encodings, or nothing.
#[allow(deprecated)]
pub fn vector() -> impl Strategy<Value = Vector> {
    prop_oneof![
        4 => dense(6).prop_map(Vector::new_dense),
        2 => (prop::collection::vec(0u32..8, 0..5), prop::collection::vec(component(), 0..5))
            .prop_map(|(indices, values)| Vector::new_sparse(indices, values)),
        2 => prop::collection::vec(dense(4), 0..3).prop_map(Vector::new_multi),
        // The pre-1.16 encodings: `data` with `indices`, or with `vectors_count`.
        1 => (dense(6), prop::option::of(0u32..4)).prop_map(|(data, count)| Vector {
            data,
            vectors_count: count,
            ..Default::default()
        }),
        1 => (prop::collection::vec(0u32..8, 0..4), dense(4)).prop_map(|(indices, data)| Vector {
            data,
            indices: Some(qdrant_tower_client::qdrant::SparseIndices { data: indices }),
            ..Default::default()
        }),
        1 => Just(Vector::default()),
    ]
}

/// The vector names the test collections have, and some they do not.
pub fn vector_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("s".to_owned()),
        "[a-z]{0,3}",
    ]
}

/// A point's vectors: one unnamed vector, named vectors, or none.
pub fn vectors() -> impl Strategy<Value = Option<Vectors>> {
    prop_oneof![
        // What the test collections take: 4 dimensions unnamed, or `a` with 2 and `b` with
        // rows of 3 (so that the calls get past the first check and into the engine).
        6 => prop::collection::vec(finite_component(), 4).prop_map(|v| Some(Vectors::from(v))),
        4 => (
            prop::collection::vec(finite_component(), 2),
            prop::collection::vec(prop::collection::vec(finite_component(), 3), 1..3),
        )
            .prop_map(|(a, b)| {
                let named: HashMap<String, Vector> =
                    [("a".to_owned(), Vector::new_dense(a)), ("b".to_owned(), Vector::new_multi(b))]
                        .into_iter()
                        .collect();
                Some(Vectors::from(named))
            }),
        4 => vector().prop_map(|v| Some(Vectors { vectors_options: Some(VectorsOptions::Vector(v)) })),
        3 => prop::collection::hash_map(vector_name(), vector(), 0..3).prop_map(|named| {
            Some(Vectors {
                vectors_options: Some(VectorsOptions::Vectors(NamedVectors { vectors: named })),
            })
        }),
        1 => Just(Some(Vectors { vectors_options: None })),
        1 => Just(None),
    ]
}

/// A payload value of any kind, nested, with NaN and infinite doubles.
pub fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Kind::NullValue(0)),
        any::<bool>().prop_map(Kind::BoolValue),
        any::<i64>().prop_map(Kind::IntegerValue),
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            -10.0f64..10.0
        ]
        .prop_map(Kind::DoubleValue),
        ".{0,12}".prop_map(Kind::StringValue),
    ]
    .prop_map(|kind| Value { kind: Some(kind) });
    let leaf = prop_oneof![10 => leaf, 1 => Just(Value { kind: None })];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|values| Value {
                kind: Some(Kind::ListValue(qdrant_tower_client::qdrant::ListValue {
                    values
                })),
            }),
            prop::collection::hash_map(payload_key(), inner, 0..4).prop_map(|fields| Value {
                kind: Some(Kind::StructValue(qdrant_tower_client::qdrant::Struct {
                    fields
                })),
            }),
        ]
    })
}

/// Payload keys and key paths: plain, dotted, with `[]`, empty, or not a path at all.
pub fn payload_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["city", "n", "tags", "a.b", "tags[]", "x[0]", ""]).prop_map(str::to_owned),
        2 => "[a-z.\\[\\]0-9\"$]{0,10}",
        1 => ".{0,8}",
    ]
}

pub fn payload() -> impl Strategy<Value = HashMap<String, Value>> {
    prop::collection::hash_map(payload_key(), value(), 0..4)
}

pub fn point() -> impl Strategy<Value = PointStruct> {
    (
        prop::option::weighted(0.95, point_id()),
        vectors(),
        payload(),
    )
        .prop_map(|(id, vectors, payload)| PointStruct {
            id,
            payload,
            vectors,
        })
}

fn double() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -200.0f64..200.0,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => any::<f64>(),
    ]
}

fn geo_point() -> impl Strategy<Value = GeoPoint> {
    (double(), double()).prop_map(|(lat, lon)| GeoPoint { lat, lon })
}

fn line(max: usize) -> impl Strategy<Value = GeoLineString> {
    prop::collection::vec(geo_point(), 0..=max).prop_map(|points| GeoLineString { points })
}

fn timestamp() -> impl Strategy<Value = qdrant_tower_client::qdrant::Timestamp> {
    (
        prop_oneof![any::<i64>(), -1_000_000_000i64..4_000_000_000],
        any::<i32>(),
    )
        .prop_map(|(seconds, nanos)| qdrant_tower_client::qdrant::Timestamp { seconds, nanos })
}

fn field_condition() -> BoxedStrategy<FieldCondition> {
    let matches = prop_oneof![
        ".{0,8}".prop_map(MatchValue::Keyword),
        any::<i64>().prop_map(MatchValue::Integer),
        any::<bool>().prop_map(MatchValue::Boolean),
        ".{0,8}".prop_map(MatchValue::Text),
        prop::collection::vec(".{0,4}", 0..3).prop_map(|strings| MatchValue::Keywords(
            qdrant_tower_client::qdrant::RepeatedStrings { strings }
        )),
        prop::collection::vec(any::<i64>(), 0..3).prop_map(|integers| MatchValue::Integers(
            qdrant_tower_client::qdrant::RepeatedIntegers { integers }
        )),
    ];
    (
        payload_key(),
        0..9u8,
        matches,
        (
            prop::option::of(double()),
            prop::option::of(double()),
            prop::option::of(double()),
            prop::option::of(double()),
        ),
        (
            geo_point(),
            prop_oneof![-1.0f32..1e7, Just(f32::NAN), any::<f32>()],
        ),
        (line(5), prop::collection::vec(line(4), 0..2)),
        (prop::option::of(timestamp()), prop::option::of(timestamp())),
        (prop::option::of(any::<u64>()), prop::option::of(0u64..5)),
    )
        .prop_map(
            |(
                key,
                kind,
                matches,
                (lt, gt, gte, lte),
                (center, radius),
                (exterior, interiors),
                (from, to),
                (vc_lt, vc_gte),
            )| {
                let mut c = FieldCondition {
                    key,
                    ..Default::default()
                };
                match kind {
                    0 => {
                        c.r#match = Some(Match {
                            match_value: Some(matches),
                        })
                    }
                    1 => c.range = Some(Range { lt, gt, gte, lte }),
                    2 => {
                        c.geo_radius = Some(GeoRadius {
                            center: Some(center),
                            radius,
                        })
                    }
                    3 => {
                        c.geo_bounding_box = Some(GeoBoundingBox {
                            top_left: exterior.points.first().cloned(),
                            bottom_right: exterior.points.last().cloned(),
                        })
                    }
                    4 => {
                        c.geo_polygon = Some(GeoPolygon {
                            exterior: Some(exterior),
                            interiors,
                        })
                    }
                    5 => {
                        c.datetime_range = Some(DatetimeRange {
                            gte: from,
                            lt: to,
                            ..Default::default()
                        })
                    }
                    6 => {
                        c.values_count = Some(ValuesCount {
                            lt: vc_lt,
                            gte: vc_gte,
                            ..Default::default()
                        })
                    }
                    7 => c.is_empty = Some(true),
                    // A field condition with no condition in it.
                    _ => {}
                }
                c
            },
        )
        // Boxed: in debug builds the unboxed value trees of these tuples make stack frames
        // so large that a few levels of nested filters overflow a test thread's stack.
        .boxed()
}

fn leaf_condition() -> BoxedStrategy<Condition> {
    use condition::ConditionOneOf as C;
    prop_oneof![
        6 => field_condition().prop_map(|c| Condition { condition_one_of: Some(C::Field(c)) }),
        1 => prop::collection::vec(point_id(), 0..3).prop_map(|has_id| Condition {
            condition_one_of: Some(C::HasId(qdrant_tower_client::qdrant::HasIdCondition { has_id })),
        }),
        1 => payload_key().prop_map(Condition::is_empty),
        1 => payload_key().prop_map(Condition::is_null),
        1 => vector_name().prop_map(Condition::has_vector),
        // Not `Condition::slice`: it debug-asserts what the server must check itself.
        1 => (0u32..4, 0u32..5).prop_map(|(total, index)| Condition {
            condition_one_of: Some(C::Slice(SliceCondition { total, index })),
        }),
        1 => Just(Condition { condition_one_of: None }),
    ]
    .boxed()
}

/// A filter of any shape: must, should, must not, min should, nested filters and nested
/// conditions, each with any condition.
pub fn filter() -> BoxedStrategy<Filter> {
    use condition::ConditionOneOf as C;
    let conditions = |s: BoxedStrategy<Condition>| prop::collection::vec(s, 0..3);
    let base = conditions(leaf_condition())
        .prop_map(|must| Filter {
            must,
            ..Default::default()
        })
        .boxed();
    base.prop_recursive(2, 12, 3, move |inner| {
        let condition = prop_oneof![
            3 => leaf_condition(),
            1 => inner.clone().prop_map(|f| Condition { condition_one_of: Some(C::Filter(f)) }),
            1 => (payload_key(), inner.clone()).prop_map(|(key, filter)| Condition {
                condition_one_of: Some(C::Nested(NestedCondition { key, filter: Some(filter) })),
            }),
        ]
        .boxed();
        (
            conditions(condition.clone()),
            conditions(condition.clone()),
            conditions(condition.clone()),
            prop::option::of((conditions(condition), prop_oneof![0u64..4, any::<u64>()])),
        )
            .prop_map(|(must, should, must_not, min)| Filter {
                must,
                should,
                must_not,
                min_should: min.map(|(conditions, min_count)| MinShould {
                    conditions,
                    min_count,
                }),
            })
            .boxed()
    })
    .boxed()
}

/// A dense vector as a `DenseVector` message.
pub fn dense_message(max: usize) -> impl Strategy<Value = DenseVector> {
    dense(max).prop_map(|data| DenseVector { data })
}

/// Rows for a multi-dense query vector.
pub fn multi_message() -> impl Strategy<Value = MultiDenseVector> {
    prop::collection::vec(dense_message(4), 0..3).prop_map(|vectors| MultiDenseVector { vectors })
}
