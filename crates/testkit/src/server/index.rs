//! Payload index requests (`CreateFieldIndexCollection`) → qdrant-edge index schemas.

use qdrant_client::qdrant as pb;
use qdrant_edge::{
    BoolIndexParams, DatetimeIndexParams, FloatIndexParams, GeoIndexParams, IntegerIndexParams,
    KeywordIndexParams, PayloadFieldSchema, PayloadSchemaParams, PayloadSchemaType,
    TextIndexParams, TokenizerType, UuidIndexParams,
};

use super::convert::{json_path, memory_from_pb};
use crate::storage::StorageError;

/// The schema of a new payload index, checked as Qdrant's `convert_field_type`
/// (`src/tonic/api/update_common.rs`) checks it: `field_type` is required; with index
/// parameters, they must be of that type. `None` for a `field_type` this API version does not
/// know and no parameters: the engine then infers the type from stored values, or answers that
/// it cannot.
pub(crate) fn field_schema(
    field_type: Option<i32>,
    params: Option<pb::PayloadIndexParams>,
) -> Result<Option<PayloadFieldSchema>, StorageError> {
    let field_type =
        field_type.ok_or_else(|| StorageError::invalid_argument("cannot convert field_type"))?;
    let field_type = pb::FieldType::try_from(field_type).ok();
    match (field_type, params.and_then(|p| p.index_params)) {
        (Some(field_type), Some(params)) => {
            if params_type(&params) != field_type {
                return Err(StorageError::invalid_argument(format!(
                    "field_type ({field_type:?}) and field_index_params do not match"
                )));
            }
            Ok(Some(PayloadFieldSchema::FieldParams(schema_params(
                params,
            )?)))
        }
        (Some(field_type), None) => {
            Ok(Some(PayloadFieldSchema::FieldType(schema_type(field_type))))
        }
        (None, Some(_)) => Err(StorageError::invalid_argument("field type is missing")),
        (None, None) => Ok(None),
    }
}

/// The field type that index parameters are for.
fn params_type(params: &pb::payload_index_params::IndexParams) -> pb::FieldType {
    use pb::payload_index_params::IndexParams as P;
    match params {
        P::KeywordIndexParams(_) => pb::FieldType::Keyword,
        P::IntegerIndexParams(_) => pb::FieldType::Integer,
        P::FloatIndexParams(_) => pb::FieldType::Float,
        P::GeoIndexParams(_) => pb::FieldType::Geo,
        P::TextIndexParams(_) => pb::FieldType::Text,
        P::BoolIndexParams(_) => pb::FieldType::Bool,
        P::DatetimeIndexParams(_) => pb::FieldType::Datetime,
        P::UuidIndexParams(_) => pb::FieldType::Uuid,
    }
}

fn schema_type(field_type: pb::FieldType) -> PayloadSchemaType {
    match field_type {
        pb::FieldType::Keyword => PayloadSchemaType::Keyword,
        pb::FieldType::Integer => PayloadSchemaType::Integer,
        pb::FieldType::Float => PayloadSchemaType::Float,
        pb::FieldType::Geo => PayloadSchemaType::Geo,
        pb::FieldType::Text => PayloadSchemaType::Text,
        pb::FieldType::Bool => PayloadSchemaType::Bool,
        pb::FieldType::Datetime => PayloadSchemaType::Datetime,
        pb::FieldType::Uuid => PayloadSchemaType::Uuid,
    }
}

#[allow(deprecated)] // `on_disk` is deprecated on both sides, yet still honoured.
fn schema_params(
    params: pb::payload_index_params::IndexParams,
) -> Result<PayloadSchemaParams, StorageError> {
    use pb::payload_index_params::IndexParams as P;
    let nested = |nested: Option<String>| nested.as_deref().map(json_path).transpose();
    Ok(match params {
        P::KeywordIndexParams(p) => PayloadSchemaParams::Keyword(KeywordIndexParams {
            is_tenant: p.is_tenant,
            on_disk: p.on_disk,
            memory: memory_from_pb(p.memory),
            enable_hnsw: p.enable_hnsw,
            prefix: p.prefix.map(|_| true),
            nested: nested(p.nested)?,
            ..KeywordIndexParams::default()
        }),
        P::IntegerIndexParams(p) => PayloadSchemaParams::Integer(IntegerIndexParams {
            lookup: p.lookup,
            range: p.range,
            is_principal: p.is_principal,
            on_disk: p.on_disk,
            memory: memory_from_pb(p.memory),
            enable_hnsw: p.enable_hnsw,
            nested: nested(p.nested)?,
            ..IntegerIndexParams::default()
        }),
        P::FloatIndexParams(p) => PayloadSchemaParams::Float(FloatIndexParams {
            is_principal: p.is_principal,
            on_disk: p.on_disk,
            memory: memory_from_pb(p.memory),
            enable_hnsw: p.enable_hnsw,
            nested: nested(p.nested)?,
            ..FloatIndexParams::default()
        }),
        P::GeoIndexParams(p) => PayloadSchemaParams::Geo(GeoIndexParams {
            on_disk: p.on_disk,
            memory: memory_from_pb(p.memory),
            enable_hnsw: p.enable_hnsw,
            nested: nested(p.nested)?,
            ..GeoIndexParams::default()
        }),
        P::BoolIndexParams(p) => PayloadSchemaParams::Bool(BoolIndexParams {
            on_disk: p.on_disk,
            memory: memory_from_pb(p.memory),
            enable_hnsw: p.enable_hnsw,
            nested: nested(p.nested)?,
            ..BoolIndexParams::default()
        }),
        P::DatetimeIndexParams(p) => PayloadSchemaParams::Datetime(DatetimeIndexParams {
            is_principal: p.is_principal,
            on_disk: p.on_disk,
            memory: memory_from_pb(p.memory),
            enable_hnsw: p.enable_hnsw,
            nested: nested(p.nested)?,
            ..DatetimeIndexParams::default()
        }),
        P::UuidIndexParams(p) => PayloadSchemaParams::Uuid(UuidIndexParams {
            is_tenant: p.is_tenant,
            on_disk: p.on_disk,
            memory: memory_from_pb(p.memory),
            enable_hnsw: p.enable_hnsw,
            nested: nested(p.nested)?,
            ..UuidIndexParams::default()
        }),
        P::TextIndexParams(p) => {
            if p.stopwords.is_some() || p.stemmer.is_some() || p.scoring.is_some() {
                return Err(StorageError::unimplemented(
                    "qdrant-tower-testkit does not implement text index stopwords, stemmers or scoring yet",
                ));
            }
            let tokenizer = match pb::TokenizerType::try_from(p.tokenizer) {
                Ok(pb::TokenizerType::Prefix) => TokenizerType::Prefix,
                Ok(pb::TokenizerType::Whitespace) => TokenizerType::Whitespace,
                Ok(pb::TokenizerType::Multilingual) => TokenizerType::Multilingual,
                Ok(pb::TokenizerType::Code) => TokenizerType::Code,
                Ok(pb::TokenizerType::Word | pb::TokenizerType::Unknown) | Err(_) => {
                    TokenizerType::Word
                }
            };
            PayloadSchemaParams::Text(TextIndexParams {
                tokenizer,
                min_token_len: p.min_token_len.map(to_usize),
                max_token_len: p.max_token_len.map(to_usize),
                lowercase: p.lowercase,
                ascii_folding: p.ascii_folding,
                phrase_matching: p.phrase_matching,
                on_disk: p.on_disk,
                memory: memory_from_pb(p.memory),
                enable_hnsw: p.enable_hnsw,
                nested: nested(p.nested)?,
                ..TextIndexParams::default()
            })
        }
    })
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}
