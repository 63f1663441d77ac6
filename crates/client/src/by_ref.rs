//! The big writes, sent straight from the shared request instead of a deep copy of it.
//!
//! A [`VectorRequest`](crate::VectorRequest) holds its [`VectorOp`] behind an `Arc`, so that
//! the retry layer's copies cost a reference count. The generated tonic clients take their
//! message by value, which would force a deep copy of the message whenever a copy of the
//! request is alive (the retry layer always keeps one). For the messages that carry vectors in
//! bulk this module sends the message by reference instead: the same unary call the generated
//! client makes (`/qdrant.Points/Upsert`…, same compression and size limits, same prost
//! encoding and decoding), through a codec that encodes the message where it lies.
//!
//! Qdrant's server-side `timeout` field cannot be written into a shared message. It is sent
//! after it instead, as a second encoding of the same message type holding only that field:
//! protobuf decodes two concatenated messages as their merge, and the last value of a scalar
//! field wins, so the server reads the bounded timeout and every other field unchanged.

use std::marker::PhantomData;
use std::sync::Arc;

use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{GrpcMethod, Status};

use crate::request::{SharedOp, VectorOp};
use crate::service::CallOptions;

/// A message of type `M`, encoded from the shared operation that holds it.
pub(crate) struct ByRef<M> {
    /// The operation, shared with every other copy of the request.
    pub(crate) op: Arc<SharedOp>,
    /// Where `M` is in `op`.
    pub(crate) message: fn(&VectorOp) -> &M,
    /// Sent after the message: an `M` holding only the bounded server-side timeout.
    pub(crate) patch: Option<M>,
}

impl<M: Message> ByRef<M> {
    /// The message, then the patch: what goes on the wire.
    pub(crate) fn encode(&self, buf: &mut impl prost::bytes::BufMut) {
        // Encoding into a growable buffer cannot run out of space.
        let message = (self.message)(&self.op.op);
        message
            .encode(buf)
            .expect("Message only errors if not enough space");
        if let Some(patch) = &self.patch {
            patch
                .encode(buf)
                .expect("Message only errors if not enough space");
        }
    }
}

/// Encodes a [`ByRef<M>`] and decodes an `R`, both with prost, as the generated clients'
/// codec does.
struct ByRefCodec<M, R>(PhantomData<fn(M) -> R>);

impl<M, R> Codec for ByRefCodec<M, R>
where
    M: Message + Send + Sync + 'static,
    R: Message + Default + Send + 'static,
{
    type Encode = ByRef<M>;
    type Decode = R;
    type Encoder = ByRefEncoder<M>;
    type Decoder = ProstDecoder<R>;

    fn encoder(&mut self) -> Self::Encoder {
        ByRefEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder(PhantomData)
    }
}

struct ByRefEncoder<M>(PhantomData<fn(M)>);

impl<M: Message> Encoder for ByRefEncoder<M> {
    type Item = ByRef<M>;
    type Error = Status;

    fn encode(&mut self, item: ByRef<M>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf);
        Ok(())
    }
}

struct ProstDecoder<R>(PhantomData<fn() -> R>);

impl<R: Message + Default> Decoder for ProstDecoder<R> {
    type Item = R;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
        // As tonic-prost maps a message that does not parse.
        R::decode(buf)
            .map(Some)
            .map_err(|error| Status::internal(error.to_string()))
    }
}

/// Sends `item` as the unary call `/{service}/{method}` over `channel`, with the options and
/// timeout every call carries.
pub(crate) fn unary<M, R>(
    channel: Channel,
    options: &CallOptions,
    item: ByRef<M>,
    timeout: Option<std::time::Duration>,
    (service, method, path): (&'static str, &'static str, &'static str),
) -> impl Future<Output = Result<R, Status>> + Send + 'static
where
    M: Message + Send + Sync + 'static,
    R: Message + Default + Send + Sync + 'static,
{
    // What needs `options` is done now, so the future owns all it uses.
    let mut grpc = options.configure(tonic::client::Grpc::new(channel));
    let mut request = options.request(item, timeout);
    request
        .extensions_mut()
        .insert(GrpcMethod::new(service, method));
    let path = http::uri::PathAndQuery::from_static(path);
    async move {
        grpc.ready()
            .await
            .map_err(|error| Status::unknown(format!("Service was not ready: {error}")))?;
        let response = grpc
            .unary(request, path, ByRefCodec::<M, R>(PhantomData))
            .await?;
        Ok(response.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qdrant_client::qdrant::{
        PointStruct, UpdateBatchPoints, UpdatePointVectors, UpsertPoints, UpsertPointsBuilder,
    };

    fn upsert(op: &VectorOp) -> &UpsertPoints {
        match op {
            VectorOp::Upsert(message) => message,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_patch_sets_the_timeout_and_leaves_every_other_field() {
        let message = UpsertPointsBuilder::new(
            "docs",
            vec![PointStruct::new(7, vec![0.5_f32; 4], [("k", "v".into())])],
        )
        .wait(true)
        .timeout(60)
        .build();
        let op = crate::VectorRequest::new(VectorOp::Upsert(message.clone())).into_shared();
        let encode = |patch| {
            let mut bytes = Vec::new();
            ByRef {
                op: op.clone(),
                message: upsert,
                patch,
            }
            .encode(&mut bytes);
            UpsertPoints::decode(bytes.as_slice()).unwrap()
        };
        assert_eq!(encode(None), message);
        let patch = UpsertPoints {
            timeout: Some(3),
            ..Default::default()
        };
        assert_eq!(
            encode(Some(patch)),
            UpsertPoints {
                timeout: Some(3),
                ..message
            }
        );
    }

    #[test]
    fn a_patch_holds_nothing_but_the_timeout() {
        // Fields at their defaults are not encoded: the patch cannot reset anything.
        let upsert = UpsertPoints {
            timeout: Some(1),
            ..Default::default()
        };
        let vectors = UpdatePointVectors {
            timeout: Some(1),
            ..Default::default()
        };
        let batch = UpdateBatchPoints {
            timeout: Some(1),
            ..Default::default()
        };
        // One key byte, one value byte.
        assert_eq!(
            [
                upsert.encoded_len(),
                vectors.encoded_len(),
                batch.encoded_len()
            ],
            [2, 2, 2]
        );
    }
}
