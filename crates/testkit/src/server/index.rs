//! Payload index requests (`CreateFieldIndexCollection`) → qdrant-edge index schemas.

use qdrant_client::qdrant as pb;
use qdrant_edge::{
    BoolIndexParams, DatetimeIndexParams, FloatIndexParams, GeoIndexParams, IntegerIndexParams,
    KeywordIndexParams, PayloadFieldSchema, PayloadSchemaParams, PayloadSchemaType,
    TextIndexParams, TokenizerType, UuidIndexParams,
};

use super::convert::{json_path, memory_from_pb};
use crate::storage::StorageError;

/// The schema of a new payload index. `None` when neither a type nor parameters are given: the
/// engine then infers the type from stored values, or answers that it cannot.
pub(crate) fn field_schema(
    field_type: Option<i32>,
    params: Option<pb::PayloadIndexParams>,
) -> Result<Option<PayloadFieldSchema>, StorageError> {
    let field_type = field_type.map(schema_type).transpose()?;
    let Some(params) = params.and_then(|p| p.index_params) else {
        return Ok(field_type.map(PayloadFieldSchema::FieldType));
    };
    let params = schema_params(params)?;
    if let Some(field_type) = field_type
        && field_type != params.kind()
    {
        return Err(StorageError::bad_input(format!(
            "field_type {} does not match the index parameters given ({})",
            field_type.name(),
            params.kind().name()
        )));
    }
    Ok(Some(PayloadFieldSchema::FieldParams(params)))
}

fn schema_type(field_type: i32) -> Result<PayloadSchemaType, StorageError> {
    match pb::FieldType::try_from(field_type) {
        Ok(pb::FieldType::Keyword) => Ok(PayloadSchemaType::Keyword),
        Ok(pb::FieldType::Integer) => Ok(PayloadSchemaType::Integer),
        Ok(pb::FieldType::Float) => Ok(PayloadSchemaType::Float),
        Ok(pb::FieldType::Geo) => Ok(PayloadSchemaType::Geo),
        Ok(pb::FieldType::Text) => Ok(PayloadSchemaType::Text),
        Ok(pb::FieldType::Bool) => Ok(PayloadSchemaType::Bool),
        Ok(pb::FieldType::Datetime) => Ok(PayloadSchemaType::Datetime),
        Ok(pb::FieldType::Uuid) => Ok(PayloadSchemaType::Uuid),
        Err(_) => Err(StorageError::invalid_argument(format!(
            "Unknown field type: {field_type}"
        ))),
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
