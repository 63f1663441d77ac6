//! The testkit's protobuf → engine conversions on arbitrary messages: the first byte picks the
//! message type, the rest is its protobuf encoding; the conversion the server runs for it must
//! answer `Ok` or an error (a gRPC status' text), never panic. Writes and searches are checked
//! against the testkit's two sample collections (`fuzzing::sample_collections`): a plain
//! 4-dimensional vector, or named dense, multi-dense and sparse vectors.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use qdrant_client::qdrant::{
    CreateCollection, CreateFieldIndexCollection, Filter, QueryPoints, ScrollPoints, SearchPoints,
    Struct, UpdateBatchPoints, UpsertPoints, VectorInput,
};
use qdrant_tower_testkit::fuzzing::{self, Collection};

fn collections() -> &'static [Collection; 2] {
    static COLLECTIONS: OnceLock<[Collection; 2]> = OnceLock::new();
    COLLECTIONS.get_or_init(|| {
        fuzzing::sample_collections()
            .map(|create| fuzzing::collection(&create).expect("a valid collection"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let collection = &collections()[usize::from(pick >> 7)];
    // Each result is Ok or an error's text; what matters is that none of this panics.
    let _ = match pick % 10 {
        0 => UpsertPoints::decode(bytes).map(|m| fuzzing::upsert(collection, m)),
        1 => UpdateBatchPoints::decode(bytes).map(|m| fuzzing::update_batch(collection, m)),
        2 => SearchPoints::decode(bytes).map(|m| fuzzing::search(collection, m)),
        3 => QueryPoints::decode(bytes).map(fuzzing::query),
        4 => ScrollPoints::decode(bytes).map(fuzzing::scroll),
        5 => Filter::decode(bytes).map(fuzzing::filter),
        6 => VectorInput::decode(bytes).map(fuzzing::vector_input),
        7 => CreateFieldIndexCollection::decode(bytes).map(fuzzing::field_index),
        8 => CreateCollection::decode(bytes).map(|m| fuzzing::collection(&m).map(drop)),
        _ => Struct::decode(bytes).map(|m| {
            fuzzing::payload(m.fields);
            Ok(())
        }),
    };
});
