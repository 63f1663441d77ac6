//! Protobuf filters → qdrant-edge filters: must / should / must_not / min_should, field
//! conditions (match, range, datetime range, geo, values count, is_empty, is_null), has_id,
//! has_vector, is_empty, is_null, nested and slice conditions, and nested filters.

use std::num::NonZeroU32;

use qdrant_client::qdrant as pb;
use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::{
    AnyVariants, Condition, DateTimeWrapper, FieldCondition, Filter, GeoBoundingBox, GeoLineString,
    GeoPoint, GeoPolygon, GeoRadius, HasIdCondition, HasVectorCondition, IsEmptyCondition,
    IsNullCondition, Match, MinShould, Nested, NestedCondition, Range, RangeInterface, Slice,
    SliceCondition, ValueVariants, ValuesCount,
};

use super::convert::{json_path, point_id};
use crate::storage::StorageError;

/// Converts an optional filter; `None` stays `None`.
pub(crate) fn filter_opt(filter: Option<pb::Filter>) -> Result<Option<Filter>, StorageError> {
    filter.map(filter_from_pb).transpose()
}

pub(crate) fn filter_from_pb(filter: pb::Filter) -> Result<Filter, StorageError> {
    let pb::Filter {
        should,
        must,
        must_not,
        min_should,
    } = filter;
    Ok(Filter {
        should: conditions(should)?,
        must: conditions(must)?,
        must_not: conditions(must_not)?,
        min_should: min_should
            .map(|min| -> Result<_, StorageError> {
                Ok(MinShould {
                    conditions: conditions(min.conditions)?.unwrap_or_default(),
                    min_count: usize::try_from(min.min_count).unwrap_or(usize::MAX),
                })
            })
            .transpose()?,
    })
}

/// Conditions without a variant are dropped, and an empty list means "no clause", as in
/// Qdrant's gRPC conversion (`conditions_helper_from_grpc`).
fn conditions(list: Vec<pb::Condition>) -> Result<Option<Vec<Condition>>, StorageError> {
    let converted = list
        .into_iter()
        .filter(|condition| condition.condition_one_of.is_some())
        .map(condition_from_pb)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((!converted.is_empty()).then_some(converted))
}

pub(crate) fn condition_from_pb(condition: pb::Condition) -> Result<Condition, StorageError> {
    use pb::condition::ConditionOneOf as C;
    match condition.condition_one_of {
        Some(C::Field(field)) => field_condition(field).map(Condition::Field),
        Some(C::IsEmpty(is_empty)) => Ok(Condition::IsEmpty(IsEmptyCondition::from(json_path(
            &is_empty.key,
        )?))),
        Some(C::IsNull(is_null)) => Ok(Condition::IsNull(IsNullCondition::from(json_path(
            &is_null.key,
        )?))),
        Some(C::HasId(has_id)) => {
            let ids = has_id
                .has_id
                .into_iter()
                .map(point_id)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Condition::HasId(
                ids.into_iter().collect::<HasIdCondition>(),
            ))
        }
        Some(C::HasVector(has_vector)) => Ok(Condition::HasVector(HasVectorCondition::from(
            has_vector.has_vector,
        ))),
        Some(C::Filter(filter)) => filter_from_pb(filter).map(Condition::Filter),
        Some(C::Nested(nested)) => {
            let filter = nested.filter.ok_or_else(|| {
                StorageError::invalid_argument("Nested condition must have a filter")
            })?;
            Ok(Condition::Nested(NestedCondition::new(Nested {
                key: json_path(&nested.key)?,
                filter: filter_from_pb(filter)?,
            })))
        }
        Some(C::Slice(slice)) => {
            let total = NonZeroU32::new(slice.total)
                .ok_or_else(|| StorageError::bad_input("Slice total must be greater than 0"))?;
            if slice.index >= slice.total {
                return Err(StorageError::bad_input(
                    "Slice index must be less than the total number of slices",
                ));
            }
            Ok(Condition::Slice(SliceCondition {
                slice: Slice {
                    total,
                    index: slice.index,
                },
            }))
        }
        None => Err(StorageError::invalid_argument("Malformed Condition type")),
    }
}

fn field_condition(field: pb::FieldCondition) -> Result<FieldCondition, StorageError> {
    let pb::FieldCondition {
        key,
        r#match,
        range,
        geo_bounding_box,
        geo_radius,
        values_count,
        geo_polygon,
        datetime_range,
        is_empty,
        is_null,
    } = field;

    // Both map to the same field; Qdrant takes `range` when both are given.
    let range = match (range, datetime_range) {
        (Some(range), _) => Some(RangeInterface::Float(Range {
            lt: range.lt.map(OrderedFloat),
            gt: range.gt.map(OrderedFloat),
            gte: range.gte.map(OrderedFloat),
            lte: range.lte.map(OrderedFloat),
        })),
        (None, Some(range)) => Some(RangeInterface::DateTime(Range {
            lt: range.lt.map(datetime).transpose()?,
            gt: range.gt.map(datetime).transpose()?,
            gte: range.gte.map(datetime).transpose()?,
            lte: range.lte.map(datetime).transpose()?,
        })),
        (None, None) => None,
    };

    let condition = FieldCondition {
        key: json_path(&key)?,
        r#match: r#match.map(match_from_pb).transpose()?,
        range,
        geo_bounding_box: geo_bounding_box
            .map(|bbox| match (bbox.top_left, bbox.bottom_right) {
                (Some(top_left), Some(bottom_right)) => Ok(GeoBoundingBox {
                    top_left: filter_point(top_left),
                    bottom_right: filter_point(bottom_right),
                }),
                _ => Err(StorageError::invalid_argument(
                    "Malformed GeoBoundingBox type",
                )),
            })
            .transpose()?,
        geo_radius: geo_radius
            .map(|radius| match radius.center {
                Some(center) => Ok(GeoRadius {
                    center: filter_point(center),
                    radius: OrderedFloat(f64::from(radius.radius)),
                }),
                None => Err(StorageError::invalid_argument("Malformed GeoRadius type")),
            })
            .transpose()?,
        geo_polygon: geo_polygon.map(polygon).transpose()?,
        values_count: values_count.map(|count| ValuesCount {
            lt: count.lt.map(to_usize),
            gt: count.gt.map(to_usize),
            gte: count.gte.map(to_usize),
            lte: count.lte.map(to_usize),
        }),
        is_empty,
        is_null,
    };

    let FieldCondition {
        r#match,
        range,
        geo_bounding_box,
        geo_radius,
        geo_polygon,
        values_count,
        is_empty,
        is_null,
        ..
    } = &condition;
    let any_set = r#match.is_some()
        || range.is_some()
        || geo_bounding_box.is_some()
        || geo_radius.is_some()
        || geo_polygon.is_some()
        || values_count.is_some()
        || is_empty.is_some()
        || is_null.is_some();
    if !any_set {
        return Err(StorageError::bad_input(
            "At least one field condition must be specified",
        ));
    }
    Ok(condition)
}

fn match_from_pb(r#match: pb::Match) -> Result<Match, StorageError> {
    use pb::r#match::MatchValue as M;
    let value = r#match
        .match_value
        .ok_or_else(|| StorageError::invalid_argument("Malformed Match condition"))?;
    Ok(match value {
        M::Keyword(keyword) => Match::new_value(ValueVariants::String(keyword)),
        M::Integer(int) => Match::new_value(ValueVariants::Integer(int)),
        M::Boolean(flag) => Match::new_value(ValueVariants::Bool(flag)),
        M::Text(text) => Match::new_text(&text),
        M::Keywords(keywords) => {
            Match::new_any(AnyVariants::Strings(keywords.strings.into_iter().collect()))
        }
        M::Integers(integers) => Match::new_any(AnyVariants::Integers(
            integers.integers.into_iter().collect(),
        )),
        M::ExceptKeywords(keywords) => {
            Match::new_except(AnyVariants::Strings(keywords.strings.into_iter().collect()))
        }
        M::ExceptIntegers(integers) => Match::new_except(AnyVariants::Integers(
            integers.integers.into_iter().collect(),
        )),
        M::Phrase(phrase) => Match::Phrase(qdrant_edge::MatchPhrase { phrase }),
        M::TextAny(text_any) => Match::TextAny(qdrant_edge::MatchTextAny { text_any }),
        M::Prefix(prefix) => Match::new_prefix(&prefix),
        M::Substring(substring) => Match::new_substring(&substring),
    })
}

fn datetime(timestamp: prost_types::Timestamp) -> Result<DateTimeWrapper, StorageError> {
    let micros = timestamp
        .seconds
        .checked_mul(1_000_000)
        .and_then(|micros| micros.checked_add(i64::from(timestamp.nanos) / 1_000));
    micros
        .and_then(DateTimeWrapper::from_timestamp)
        .ok_or_else(|| StorageError::bad_input("Timestamp is out of range"))
}

/// A point of a geo condition, taken as given like Qdrant does: one off the globe matches
/// nothing rather than failing the request.
fn filter_point(point: pb::GeoPoint) -> GeoPoint {
    GeoPoint {
        lon: OrderedFloat(point.lon),
        lat: OrderedFloat(point.lat),
    }
}

pub(crate) fn geo_point(point: Option<pb::GeoPoint>) -> Result<GeoPoint, StorageError> {
    let point = point.ok_or_else(|| StorageError::invalid_argument("Geo point is missing"))?;
    GeoPoint::new(point.lon, point.lat).map_err(|err| StorageError::bad_input(err.to_string()))
}

fn line_string(line: pb::GeoLineString) -> Result<GeoLineString, StorageError> {
    let points = line
        .points
        .into_iter()
        .map(|point| geo_point(Some(point)))
        .collect::<Result<_, _>>()?;
    let line = GeoLineString { points };
    GeoPolygon::validate_line_string(&line)?;
    Ok(line)
}

fn polygon(polygon: pb::GeoPolygon) -> Result<GeoPolygon, StorageError> {
    let exterior = polygon.exterior.ok_or_else(|| {
        StorageError::invalid_argument("Malformed GeoPolygon type - field `exterior` is required")
    })?;
    let interiors = polygon
        .interiors
        .into_iter()
        .map(line_string)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(GeoPolygon {
        exterior: line_string(exterior)?,
        interiors: (!interiors.is_empty()).then_some(interiors),
    })
}

fn to_usize(count: u64) -> usize {
    usize::try_from(count).unwrap_or(usize::MAX)
}
