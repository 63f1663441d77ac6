//! Request decoding and validation on arbitrary bytes: the first byte picks the operation (of
//! `VectorRequest::OPERATIONS`), the rest is its protobuf message. Decoding answers a message or
//! a `DecodeError`; a message validates to `Ok` or an `InvalidRequest` error; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qdrant_tower_client::{Limits, VectorOp, VectorRequest};
use qdrant_tower_layers::ErrorKind;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let operations = VectorRequest::OPERATIONS;
    let operation = operations[usize::from(pick) % operations.len()];
    let Ok(op) = VectorOp::decode(operation, bytes) else {
        return;
    };
    assert_eq!(op.operation(), operation);
    for limits in [
        Limits::default(),
        Limits {
            max_points: 2,
            max_bytes: 64,
        },
    ] {
        if let Err(error) = VectorRequest::new(op.clone()).validate(&limits) {
            assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{error}");
            assert!(error.invalid_request().is_some(), "{error:?}");
            assert!(!error.to_string().is_empty());
        }
    }
});
